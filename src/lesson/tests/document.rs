//! The document layer: front matter, steps, fences, prose, and where their errors point.

use super::*;

#[test]
fn parses_the_valid_lesson() {
    let l = parse(VALID).unwrap();
    assert_eq!(
        (l.id.as_str(), l.order, l.title.as_str()),
        ("demo", 7, "Demo")
    );
    assert_eq!(l.summary, "A lesson for the tests");
    assert_eq!(l.source, LessonSource::Builtin("t.md"));
    assert_eq!(l.steps.len(), 2);
    let s = &l.steps[0];
    assert_eq!((s.title.as_str(), s.line), ("Why subtract the max?", 8));
    assert_eq!(s.blocks.len(), 6);
    assert_eq!(s.blocks[0], Block::Prose("Some *prose*.".into()));
    assert_eq!(s.blocks[2], Block::Prose("More prose.".into()));
    assert_eq!(s.notes(), vec!["Ask the room."]);

    let c = s.cells().next().unwrap();
    assert_eq!((c.line, c.op), (11, crate::ops::softmax::SOFTMAX));
    assert_eq!(c.title.as_deref(), Some("Temperature"));
    assert_eq!(c.input, InputSpec::Values(vec![vec![2.0, 1.0, 0.1, -1.0]]));
    assert_eq!(c.show, vec![View::Bars, View::Table, View::Check]);
    let names: Vec<&str> = c.params.iter().map(|p| p.name).collect();
    assert_eq!(names, ["temperature", "stable", "dtype"]);
    assert_eq!(
        c.param("temperature").unwrap(),
        &ParamControl {
            name: "temperature",
            default: ParamValue::Float(1.0),
            control: Control::Slider {
                min: 0.05,
                max: 10.0,
                log: true
            },
        }
    );
    assert_eq!(c.param("stable").unwrap().default, ParamValue::Bool(false));
    assert_eq!(c.param("stable").unwrap().control, Control::Toggle);
    assert_eq!(
        c.param("dtype").unwrap().default,
        ParamValue::Choice("f16".into())
    );
    assert_eq!(
        c.param("dtype").unwrap().control,
        Control::Choice {
            choices: vec!["f32".into(), "f16".into()]
        }
    );

    assert_eq!(
        s.blocks[3],
        Block::Kernel(KernelSpec {
            line: 22,
            topic: "softmax".into(),
            marks: vec!["stable softmax".into(), "log_softmax".into()],
            cuda_marks: vec![],
            wgsl_marks: vec![],
        })
    );
    let Block::Predict(p) = &s.blocks[4] else {
        panic!("{:?}", s.blocks[4])
    };
    let Answer::Choice { choices, right } = &p.answer else {
        panic!("{p:?}")
    };
    assert_eq!((p.line, *right, choices.len()), (27, 1, 3));
    assert_eq!(p.question, "Which token is most likely?");
    assert_eq!(p.explain, "Because.");

    let c = l.steps[1].cells().next().unwrap();
    assert_eq!(
        c.input,
        InputSpec::Linspace {
            from: 0.0,
            to: 1.0,
            count: 11
        }
    );
    assert_eq!(c.show, vec![View::Bars, View::Check]);
    assert_eq!(c.param("eps").unwrap().default, ParamValue::Absent);
    assert_eq!(c.param("eps").unwrap().control, Control::Fixed);
    assert_eq!(
        c.param("dtype").unwrap().default,
        ParamValue::Choice("f32".into())
    );
}

#[test]
fn crlf_bom_and_tabs_parse_like_lf() {
    let crlf = format!("\u{feff}{}", VALID.replace('\n', "\r\n"));
    assert_eq!(parse(&crlf).unwrap(), parse(VALID).unwrap());
    let tabs = VALID
        .replace("## Curves", "##\tCurves")
        .replace("input = {", "input\t=\t{");
    assert_eq!(parse(&tabs).unwrap(), parse(VALID).unwrap());
    // Errors in a CRLF file point at the same place.
    let text = block("cell softmax", "input = [1.0]\ntemprature = 1.0").replace('\n', "\r\n");
    assert_err(&text, 11, 1, "'temprature' is not a parameter");
    let text = block("cell softmax", "input = [1.0,").replace('\n', "\r\n");
    assert!(parse(&text).unwrap_err().line == 10);
}

#[test]
fn markdown_layer() {
    // Longer and tilde fences hold shorter ones; closing fences may be longer.
    let text = lesson("````notes\n```cell nope\n```\n`````\n~~~notes\nx\n~~~~\n");
    let l = parse(&text).unwrap();
    assert_eq!(l.steps[0].notes(), vec!["```cell nope\n```", "x"]);
    // Notes under an indented fence lose that indentation; empty notes are dropped.
    let l = parse(&lesson(
        "  ```notes\n    indented\n  two\n  ```\n```notes\n\n```\n",
    ))
    .unwrap();
    assert_eq!(
        l.steps[0].blocks,
        vec![Block::Notes("  indented\ntwo".into())]
    );
    // A backtick fence whose info string holds a backtick is inline code, i.e. prose.
    let l = parse(&lesson("```a`b```\n")).unwrap();
    assert_eq!(l.steps[0].blocks, vec![Block::Prose("```a`b```".into())]);
    // Closing #s are dropped from headings; ### stays in prose; blank edges are trimmed.
    let l = parse(&format!(
        "{}\n\n## Two ##\n\n\n### Sub\ntext  \n\n",
        FRONT.trim_end()
    ))
    .unwrap();
    assert_eq!(l.steps[1].title, "Two");
    assert_eq!(l.steps[1].line, 10);
    assert_eq!(l.steps[0].blocks, vec![]);
    assert_eq!(
        l.steps[1].blocks,
        vec![Block::Prose("### Sub\ntext  ".into())]
    );
    // '#hashtag' and 4-space-indented '# x' are not headings; '===' after a blank line is not h1.
    let l = parse(&lesson("#hashtag\n\n    # code\n\n===\n")).unwrap();
    assert_eq!(l.steps[0].blocks.len(), 1);
    // Blank lines before the front matter are fine.
    assert!(parse(&format!("\n\n{VALID}")).is_ok());
}

#[test]
fn error_display() {
    let src = LessonSource::Builtin("02-softmax.md");
    let e = LessonError::new(&src, 41, 1, "boom");
    assert_eq!(e.to_string(), "lessons/02-softmax.md:41:1: boom");
    assert_eq!(
        LessonError::new(&src, 0, 0, "gone").to_string(),
        "lessons/02-softmax.md: gone"
    );
    assert_eq!(
        LessonError::new(&src, 3, 0, "x").to_string(),
        "lessons/02-softmax.md:3: x"
    );
    let e = LessonError::new(
        &LessonSource::File("/tmp/a.md".into()),
        2,
        5,
        String::from("y"),
    );
    assert_eq!(e.file, "/tmp/a.md");
    let _: &dyn std::error::Error = &e;
}

// ---- document errors ---------------------------------------------------------------------

#[test]
fn document_errors() {
    assert_err(&"x".repeat(MAX_LESSON_BYTES + 1), 0, 0, "at most 1 MiB");
    assert_err("", 1, 1, "the file is empty");
    assert_err("\n  \n\t\n", 1, 1, "the file is empty");
    assert_err(
        "## Step\n",
        1,
        1,
        "expected '+++' to open the TOML front matter",
    );
    assert_err("\n  title\n", 2, 3, "expected '+++'");
    assert_err(
        "+++\nid = \"x\"\n",
        1,
        1,
        "front matter opened here is never closed",
    );
    assert_err(
        FRONT.trim_end_matches("## Step\n"),
        6,
        1,
        "the lesson has no steps",
    );
    assert_err(
        &FRONT.replace("\n## Step", "\nintro\n## Step"),
        8,
        1,
        "only blank lines may come between",
    );
    assert_err(
        &FRONT.replace("\n## Step", "\n```notes\nx\n```\n## Step"),
        8,
        1,
        "expected a '## ' step heading",
    );
    assert_err(
        &lesson("text\n# Title\n"),
        10,
        1,
        "'# ' (h1) headings are not allowed",
    );
    assert_err(
        &FRONT.replace("## Step", "# Step"),
        8,
        1,
        "(h1) headings are not allowed",
    );
    assert_err(&lesson("  #\n"), 9, 3, "(h1) headings are not allowed");
    assert_err(&lesson("A title\n=====\n"), 10, 1, "makes an h1 heading");
    assert_err(&lesson("##   \n"), 9, 1, "a step heading needs a title");
    assert_err(&lesson("## ##\n"), 9, 1, "a step heading needs a title");
}

#[test]
fn fence_errors() {
    assert_err(
        &lesson("text\n```notes\nnever closed\n"),
        10,
        1,
        "unclosed ``` fence opened here",
    );
    assert_err(
        &lesson("  ~~~~notes\nx\n~~~\n```\n"),
        9,
        3,
        "unclosed ~~~~ fence opened here (expected a closing line of 4 or more '~')",
    );
    assert_err(&lesson("```notes\nx\n~~~\n"), 9, 1, "unclosed ``` fence");
    assert_err(
        &lesson("```\nx\n```\n"),
        9,
        1,
        "a fenced block needs a kind after ```",
    );
    assert_err(
        &lesson("``` python\nx\n```\n"),
        9,
        5,
        "unknown block kind 'python' (expected one of: cell OP, kernel, predict, notes, slide)",
    );
    assert_err(
        &lesson("```cell\nx\n```\n"),
        9,
        1,
        "a cell needs an op: ```cell OP (expected one of: logit, sigmoid",
    );
    assert_err(
        &lesson("```cell  sofmax\nx\n```\n"),
        9,
        10,
        "unknown op 'sofmax' (expected one of: logit,",
    );
    assert_err(
        &lesson("```cell softmax extra\nx\n```\n"),
        9,
        17,
        "unexpected 'extra' after 'cell softmax'",
    );
    assert_err(
        &lesson("```kernel softmax\nx\n```\n"),
        9,
        11,
        "unexpected 'softmax' after 'kernel'",
    );
    assert_err(&lesson("```predict x\n```\n"), 9, 12, "unexpected 'x'");
    assert_err(&lesson("```notes x\n```\n"), 9, 10, "unexpected 'x'");
}

// ---- front matter errors -----------------------------------------------------------------

fn front(id: &str, order: &str, title: &str, summary: &str, extra: &str) -> String {
    format!(
        "+++\nid = {id}\norder = {order}\ntitle = {title}\nsummary = {summary}\n{extra}+++\n\n## S\n"
    )
}

#[test]
fn front_matter_errors() {
    assert!(parse(&front("\"a-b_9\"", "-3", "\"T\"", "\"S\"", "")).is_ok());
    assert_err(
        &front("\"x\"", "1", "\"T\"", "\"S\"", "author = \"me\"\n"),
        6,
        1,
        "front matter: unknown key 'author' (expected one of: id, order, title, summary)",
    );
    assert_err(
        &front("\"x\"", "1", "\"T\"", "\"S\"", "[extra]\n"),
        6,
        2,
        "unknown key 'extra'",
    );
    assert_err(
        "+++\nid = \"x\"\norder = 1\ntitle = \"T\"\n+++\n## S\n",
        1,
        1,
        "front matter: missing 'summary'",
    );
    assert_err("+++\n+++\n## S\n", 1, 1, "missing 'id'");
    assert_err(
        &front("\"Soft Max\"", "1", "\"T\"", "\"S\"", ""),
        2,
        6,
        "id: 'Soft Max' is not a valid id (expected one or more of a-z, 0-9",
    );
    assert_err(
        &front("\"\"", "1", "\"T\"", "\"S\"", ""),
        2,
        6,
        "is not a valid id",
    );
    assert_err(
        &front("3", "1", "\"T\"", "\"S\"", ""),
        2,
        6,
        "id: expected a string, found integer",
    );
    assert_err(
        &front("\"x\"", "1.5", "\"T\"", "\"S\"", ""),
        3,
        9,
        "order: expected an integer, found float",
    );
    assert_err(
        &front("\"x\"", "1", "\" \"", "\"S\"", ""),
        4,
        9,
        "title: must not be empty",
    );
    assert_err(
        &front("\"x\"", "1", "\"T\"", "[]", ""),
        5,
        11,
        "summary: expected a string, found array",
    );
    // TOML syntax: the position in the file.
    let e = parse(&front("\"x\"", "1", "\"T\"", "\"S\"", "oops\n")).unwrap_err();
    assert_eq!(e.line, 6, "{e}");
    assert!(e.message.starts_with("front matter: invalid TOML:"), "{e}");
    let e = parse(&front("\"x", "1", "\"T\"", "\"S\"", "")).unwrap_err();
    assert_eq!(e.line, 2, "{e}");
    assert!(e.column >= 6, "{e}");
    let e = parse(&front("\"x\"", "1", "\"T\"", "\"S\"", "id = \"y\"\n")).unwrap_err();
    assert_eq!((e.line, e.column), (6, 1), "{e}");
}

#[test]
fn what_a_renderer_reads_as_structure() {
    // A line of '-' under text is an h2 in CommonMark, not a rule: it would look like a step.
    assert_err(
        &lesson("Some text\n---\n"),
        10,
        1,
        "a line of '-' under text makes an h2 heading, but steps start with '## Title'",
    );
    // After a blank line it is a rule, and prose.
    let l = parse(&lesson("Some text\n\n---\n")).unwrap();
    assert_eq!(
        l.steps[0].blocks,
        vec![Block::Prose("Some text\n\n---".into())]
    );
    // A lesson block inside a list or a quote would be rendered as code: refused.
    assert_err(
        &lesson("- item\n\n  ```cell softmax\n  input = [1.0]\n  ```\n"),
        11,
        3,
        "this 'cell' block is inside a list or a quote, where it would be read as prose",
    );
    assert_err(
        &lesson("> ```notes\n> x\n> ```\n"),
        9,
        1,
        "this 'notes' block is inside a list or a quote",
    );
    // Other code in a list is prose; so are headings inside a list, a quote or an HTML block.
    let text = "- item\n\n  ```python\n  x = 1\n  ```\n\n> ## Quoted\n\n<div>\n## In HTML\n</div>";
    let l = parse(&lesson(&format!("{text}\n"))).unwrap();
    assert_eq!(l.steps.len(), 1);
    assert_eq!(l.steps[0].blocks, vec![Block::Prose(text.into())]);
    // A heading indented under a list item belongs to the item.
    let l = parse(&lesson("- item\n  ## not a step\n")).unwrap();
    assert_eq!(l.steps.len(), 1);
}

#[test]
fn markdown_errors_come_in_file_order() {
    // A broken front matter is reported before a fence left open further down ...
    let text = format!("{}```notes\n", FRONT.replace("order = 1", "order = \"1\""));
    assert_err(&text, 3, 9, "order: expected an integer, found string");
    // ... and a broken block before an h1 further down.
    assert_err(
        &lesson("```cell softmax\ninput = [\n```\n# Title\n"),
        10,
        10,
        "cell 'softmax': invalid TOML",
    );
}
