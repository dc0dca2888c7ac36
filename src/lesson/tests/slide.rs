//! Slides and the reveal: a step's slide text (its `slide` block or its first paragraph, cut to
//! fit), the presenter's share of the prose, what comes before and after the question, and the
//! warning for a question placed after its cell.

use super::*;

const QUESTION: &str =
    "```predict\nquestion = \"Q?\"\nchoices = [\"a\", \"b\"]\nanswer = 1\nexplain = \"E\"\n```\n";
const CELL: &str = "```cell softmax\ninput = [1.0, 2.0]\n```\n";

#[test]
fn the_question_divides_a_step() {
    let text = lesson(&format!(
        "Setup.\n\n{QUESTION}\n{CELL}\nThe answer.\n\n```notes\nN\n```\n"
    ));
    let l = parse(&text).unwrap();
    let s = &l.steps[0];
    assert_eq!(s.predict_index(), Some(1));
    assert_eq!(s.predict().map(|p| p.question.as_str()), Some("Q?"));
    assert_eq!(s.before_predict(), &[Block::Prose("Setup.".into())]);
    assert_eq!(s.revealed().len(), 3);
    assert!(matches!(s.revealed()[0], Block::Cell(_)));
    assert_eq!(s.revealed()[1], Block::Prose("The answer.".into()));
    assert!(!s.is_revealed(0) && !s.is_revealed(1) && s.is_revealed(2) && s.is_revealed(3));
    assert!(l.warnings().is_empty(), "{:?}", l.warnings());
    // A step without a question: everything comes before it, nothing is revealed.
    let l = parse(&lesson("Text.\n")).unwrap();
    let s = &l.steps[0];
    assert_eq!(
        (s.predict(), s.before_predict().len(), s.revealed().len()),
        (None, 1, 0)
    );
    assert!(!s.is_revealed(0));
}

#[test]
fn a_question_after_its_cell_is_a_warning() {
    // The question opens on line 13, after the cell on line 9.
    let l = parse(&lesson(&format!("{CELL}\n{QUESTION}"))).unwrap();
    let w = l.warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!((w[0].line, w[0].column), (13, 1));
    assert_eq!(w[0].file, "lessons/t.md");
    assert!(
        w[0].message
            .contains("the question comes after the step's cell (line 9); put it before the cell"),
        "{}",
        w[0]
    );
}

#[test]
fn an_explicit_slide() {
    let text = lesson(&format!(
        "First paragraph.\n\nSecond.\n\n```slide\nSoftmax turns **scores** into probabilities.\n```\n{QUESTION}Revealed.\n"
    ));
    let l = parse(&text).unwrap();
    let s = &l.steps[0];
    assert_eq!(
        s.slide.as_deref(),
        Some("Softmax turns **scores** into probabilities.")
    );
    assert_eq!(
        s.slide_text(),
        "Softmax turns **scores** into probabilities."
    );
    // The slide block is not a block of the notebook page; all prose goes to the presenter.
    assert_eq!(s.blocks.len(), 3);
    assert_eq!(
        s.presenter_prose(),
        vec![
            "First paragraph.\n\nSecond.".to_string(),
            "Revealed.".into()
        ]
    );
}

#[test]
fn the_first_paragraph_as_slide() {
    let text = lesson(&format!(
        "### A subheading\n\nThe first\nparagraph, on two lines.\n\nSecond.\n\n{QUESTION}The answer.\n"
    ));
    let s = parse(&text).unwrap().steps.remove(0);
    assert_eq!(s.slide, None);
    assert_eq!(s.slide_text(), "The first paragraph, on two lines.");
    assert_eq!(
        s.presenter_prose(),
        vec![
            "### A subheading\n\nSecond.".to_string(),
            "The answer.".into()
        ]
    );
    // Only prose before the question can be a slide: it must not give the answer away.
    let s = parse(&lesson(&format!("{QUESTION}The answer.\n")))
        .unwrap()
        .steps
        .remove(0);
    assert_eq!(s.slide_text(), "");
    assert_eq!(s.presenter_prose(), vec!["The answer.".to_string()]);
}

#[test]
fn a_long_first_paragraph_is_cut_to_fit() {
    let sentence = "Softmax turns a row of scores into a distribution. ";
    let long = sentence.repeat(8);
    let s = parse(&lesson(&format!("{long}\n")))
        .unwrap()
        .steps
        .remove(0);
    let slide = s.slide_text();
    assert!(slide.chars().count() <= SLIDE_MAX_CHARS, "{slide}");
    assert!(
        slide.ends_with("distribution."),
        "cut after a sentence: {slide}"
    );
    assert_eq!(slide, sentence.repeat(5).trim_end());
    // The presenter keeps the whole paragraph, since the slide shows only part of it.
    assert_eq!(s.presenter_prose(), vec![long.clone()]);
    // No sentence end: cut at a word, with an ellipsis.
    let words = "word ".repeat(100);
    let s = parse(&lesson(&format!("{words}\n")))
        .unwrap()
        .steps
        .remove(0);
    let slide = s.slide_text();
    assert!(slide.ends_with("word…"), "{slide}");
    assert!(slide.chars().count() <= SLIDE_MAX_CHARS + 1, "{slide}");
    // "et al. (2017)" does not end a sentence.
    let text = format!("As Jang et al. (2017) show, {}", "word ".repeat(100));
    let s = parse(&lesson(&format!("{text}\n")))
        .unwrap()
        .steps
        .remove(0);
    assert!(s.slide_text().ends_with("word…"), "{}", s.slide_text());
}

#[test]
fn slide_errors() {
    assert_err(
        &lesson("```slide\n\n```\n"),
        9,
        1,
        "slide: the block is empty",
    );
    assert_err(
        &lesson(&format!(
            "```slide\n{}\n```\n",
            "x".repeat(SLIDE_MAX_CHARS + 1)
        )),
        9,
        1,
        "slide: 281 characters on 1 lines; a slide holds at most 280 characters on 4 lines",
    );
    assert_err(
        &lesson("  ```slide\n  1\n  2\n  3\n  4\n  5\n  ```\n"),
        9,
        3,
        "slide: 9 characters on 5 lines",
    );
    assert_err(
        &lesson("```slide\nA\n```\n```slide\nB\n```\n"),
        12,
        1,
        "slide: a step has one slide, and this one already has one on line 9",
    );
    assert_err(
        &lesson("```slide big\nA\n```\n"),
        9,
        10,
        "unexpected 'big' after 'slide'",
    );
}
