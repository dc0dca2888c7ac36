//! The parser never panics, and every error it gives points inside the file: arbitrary text and
//! bytes, lesson-like text made of the format's own pieces, the built-in lessons mutated at random,
//! and extremes (deep nesting, huge numbers, unterminated fences, long lines). The proptests below
//! run a fixed number of cases; [`fuzz_for_a_bounded_time`] keeps generating cases of every kind
//! for about 30 s (`KERNELBOOK_FUZZ_SECONDS` to change it).

use super::*;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use std::time::{Duration, Instant};

/// Pieces that make arbitrary text look like a lesson, so random inputs reach deep paths.
const PIECES: &[&str] = &[
    "+++",
    "\n",
    "\r\n",
    "## ",
    "# ",
    "```",
    "````",
    "~~~",
    "cell softmax",
    "cell logit",
    "kernel",
    "predict",
    "notes",
    "input = [",
    "]",
    "[",
    "{",
    "}",
    "=",
    "1.0",
    "-1",
    "\"nan\"",
    "\"",
    "x",
    "temperature = { min = 0.1, max = 2, default = 1 }",
    "dtype = { choices = [\"f16\", \"bf16\"] }",
    "id = \"a\"\norder = 1\ntitle = \"T\"\nsummary = \"S\"\n",
    "topic = \"softmax\"",
    "marks = [\"",
    "answer = ",
    "choices = [\"a\", \"b\"]",
    "normal = 1e9",
    "rows = 99999999999",
    "count = ",
    "\t",
    " ",
    "é",
    "\u{feff}",
    "==",
    "[[",
    "]]",
    ",",
    "stable = {}",
    "show = [\"bars\"]",
    "0x7f",
    "1e400",
    "inf",
    "nan",
    "slide",
    "```slide\nA slide.\n```\n",
    "answer_from = \"reference[1, 2]\"",
    "answer_from = \"nonfinite(cpu)\"",
    "answer_from = \"max_abs_error(reference)\"",
    "tolerance = { relative = 0.1 }",
    "tolerance = { factor = 10 }",
    "unit = \"bytes\"",
    "answer = 7.39",
    "1e308",
    "99999999999999999999999",
    "-0x8000000000000001",
    "> ",
    "- ",
    "1. ",
    "---",
    "<div>",
    "\u{0}",
    "\u{fffd}",
    "\\u00e9",
];

/// A lesson that uses the format's newer blocks (slides, numeric questions), for the mutator.
const RICH: &str = r#"+++
id = "rich"
order = 8
title = "Rich"
summary = "Slides and numbers"
+++

## How much more likely?
The setup, before the question.

```slide
Exponentiate, then normalise.
```

```predict
question = "How many times more likely is the third token?"
answer_from = "reference[1, 3]"
tolerance = { relative = 0.05, absolute = 0.01 }
unit = "times"
explain = "e squared."
```

```cell softmax
input = [1.0, 2.0, 3.0]
show = ["bars", "check"]
```

The answer, revealed.

```notes
Notes.
```
"#;

fn check_invariants(l: &Lesson) {
    assert!(!l.steps.is_empty());
    for step in &l.steps {
        for b in &step.blocks {
            match b {
                Block::Cell(c) => {
                    assert_eq!(c.params.len(), c.op.params().len());
                    assert!(!c.show.is_empty());
                    let n = match &c.input {
                        InputSpec::Values(rows) => rows.iter().map(Vec::len).sum(),
                        InputSpec::Normal { rows, cols, .. }
                        | InputSpec::Uniform { rows, cols, .. } => rows * cols,
                        InputSpec::Linspace { count, .. } => *count,
                    };
                    assert!((1..=MAX_CELL_ELEMENTS).contains(&n));
                }
                Block::Predict(p) => match &p.answer {
                    Answer::Choice { choices, right } => assert!(*right < choices.len()),
                    Answer::Number(n) => {
                        if let Truth::Fixed(v) = n.truth {
                            assert!(v.is_finite());
                        }
                        match n.tolerance {
                            NumberTolerance::Within { relative, absolute } => assert!(
                                (0.0..=MAX_RELATIVE).contains(&relative)
                                    && absolute >= 0.0
                                    && absolute.is_finite()
                                    && relative + absolute > 0.0
                            ),
                            NumberTolerance::Factor(f) => assert!(f > 1.0 && f <= MAX_FACTOR),
                        }
                    }
                },
                Block::Prose(s) | Block::Notes(s) => assert!(!s.trim().is_empty()),
                Block::Kernel(_) => {}
            }
        }
        assert!(
            step.blocks
                .iter()
                .filter(|b| matches!(b, Block::Predict(_)))
                .count()
                <= 1
        );
        assert!(step.slide_text().chars().count() <= SLIDE_MAX_CHARS + 1);
        let _ = step.presenter_prose();
    }
    let _ = l.warnings();
}

/// `text` for a failure message: the start of it, and where the whole of it was saved.
fn shown(text: &str) -> String {
    let path = std::env::temp_dir().join("kernelbook-lesson-fuzz-failure.md");
    let saved = std::fs::write(&path, text).is_ok();
    let head: String = text.chars().take(600).collect();
    format!(
        "{head:?}{} ({} bytes{})",
        if head.len() < text.len() { "..." } else { "" },
        text.len(),
        if saved {
            format!(", saved in {}", path.display())
        } else {
            String::new()
        }
    )
}

/// Parse `text`: no panic (the input is shown if there is one), an error position inside the
/// file (a line that exists, a column at most one past its end; line 0 only for a file over the
/// size limit), and a sound lesson otherwise.
fn check(text: &str) {
    let parsed = std::panic::catch_unwind(|| parse(text))
        .unwrap_or_else(|_| panic!("the parser panicked on {}", shown(text)));
    match parsed {
        Ok(l) => check_invariants(&l),
        Err(e) if e.line == 0 => assert!(
            text.len() > MAX_LESSON_BYTES && e.column == 0,
            "a whole-file error for a file within the limit: {e} for {}",
            shown(text)
        ),
        Err(e) => {
            let body = text.strip_prefix('\u{feff}').unwrap_or(text);
            let lines: Vec<&str> = body
                .split('\n')
                .map(|l| l.strip_suffix('\r').unwrap_or(l))
                .collect();
            let line = e.line.checked_sub(1).and_then(|i| lines.get(i));
            let fits = line.is_some_and(|l| e.column >= 1 && e.column <= l.chars().count() + 1);
            assert!(
                fits,
                "error outside the file: {e} ({} lines) for {}",
                lines.len(),
                shown(text)
            );
        }
    }
}

fn arbitrary_text() -> impl Strategy<Value = String> {
    "\\PC*"
}

/// Bytes that are mostly not UTF-8, read as a lesson is when decoded leniently.
fn arbitrary_bytes() -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<u8>(), 0..400)
        .prop_map(|b| String::from_utf8_lossy(&b).into_owned())
}

fn lesson_like() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec(0..PIECES.len(), 0..120),
        any::<bool>(),
    )
        .prop_map(|(picks, front)| {
            let text: String = picks.iter().map(|&i| PIECES[i]).collect();
            if front {
                format!("{FRONT}{text}")
            } else {
                text
            }
        })
}

/// The test lessons or a built-in one, with lines removed, copied, inserted and swapped, and
/// bytes cut out or spliced in (possibly in the middle of a character).
fn mutated() -> impl Strategy<Value = String> {
    (
        0..crate::lesson::BUILTIN.len() + 2,
        proptest::collection::vec((0u8..6, any::<usize>(), any::<usize>(), "\\PC{0,12}"), 1..8),
    )
        .prop_map(|(base, edits)| {
            let text = match base {
                0 => VALID,
                1 => RICH,
                n => crate::lesson::BUILTIN.get(n - 2).map_or(VALID, |(_, t)| *t),
            };
            let mut lines: Vec<String> = text.lines().map(String::from).collect();
            let mut bytes = Vec::new();
            for (kind, a, b, payload) in &edits {
                match kind {
                    0 if !lines.is_empty() => {
                        lines.remove(a % lines.len());
                    }
                    1 if !lines.is_empty() => {
                        let l = lines[a % lines.len()].clone();
                        lines.insert(b % lines.len(), l);
                    }
                    2 => {
                        let at = a % (lines.len() + 1);
                        lines.insert(at, payload.clone());
                    }
                    3 if !lines.is_empty() => {
                        let i = a % lines.len();
                        let j = b % lines.len();
                        lines.swap(i, j);
                    }
                    _ => bytes.push((*a, *b, payload.clone())),
                }
            }
            let mut text = lines.join("\n").into_bytes();
            for (a, b, payload) in bytes {
                if text.is_empty() {
                    break;
                }
                let at = a % text.len();
                if b % 2 == 0 {
                    let end = (at + b % 5).min(text.len());
                    text.drain(at..end);
                } else {
                    text.splice(at..at, payload.into_bytes());
                }
            }
            String::from_utf8_lossy(&text).into_owned()
        })
}

/// One extreme: `kind` picks what, `n` how much of it.
fn extreme(kind: u8, n: usize) -> String {
    let cell = |body: String| lesson(&format!("```cell softmax\n{body}\n```\n"));
    match kind % 12 {
        // Deep Markdown nesting: quotes, lists, emphasis, links.
        0 => lesson(&format!("{}text\n", "> ".repeat(n))),
        1 => lesson(
            &(0..n.min(700))
                .map(|i| format!("{}- x\n", "  ".repeat(i)))
                .collect::<String>(),
        ),
        2 => lesson(&format!("{}x{}\n", "*[".repeat(n), "]*".repeat(n))),
        // Deep TOML nesting in a cell and in the front matter.
        3 => cell(format!("input = {}1.0{}", "[".repeat(n), "]".repeat(n))),
        4 => cell(format!("input = {}", "{ a = ".repeat(n))),
        5 => format!("+++\nid = {}\n+++\n## S\n", "[".repeat(n)),
        // Huge and tiny numbers.
        6 => cell(format!(
            "input = [{}, 1e-400, 1e400, {}.5]",
            "9".repeat(n),
            "1".repeat(n)
        )),
        7 => cell(format!(
            "input = {{ normal = 1e38, rows = {}, cols = {} }}\ntemperature = 1{}",
            "9".repeat(n.min(40)),
            n,
            "0".repeat(n.min(400))
        )),
        // Unterminated fences of every kind, and fences with long runs.
        8 => lesson(&format!(
            "{}cell softmax\ninput = [1.0]\n",
            "`".repeat(3 + n % 50)
        )),
        9 => lesson(&format!("~~~notes\n{}\n", "```\n".repeat(n.min(5000)))),
        // A long line, a long heading, many steps.
        10 => lesson(&format!("{}\n## {}\n", "x".repeat(n * 5), "y".repeat(n))),
        _ => format!("{}{}", FRONT, "## S\n".repeat(n)),
    }
}

fn extremes() -> impl Strategy<Value = String> {
    (any::<u8>(), 0usize..20_000).prop_map(|(kind, n)| extreme(kind, n))
}

proptest! {
    // PROPTEST_CASES=100000 for a longer run.
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(512)
    ))]

    #[test]
    fn arbitrary_text_never_panics(text in arbitrary_text()) {
        check(&text);
    }

    #[test]
    fn arbitrary_bytes_never_panic(text in arbitrary_bytes()) {
        check(&text);
    }

    #[test]
    fn lesson_like_text_never_panics(text in lesson_like()) {
        check(&text);
    }

    #[test]
    fn mutated_lesson_never_panics(text in mutated()) {
        check(&text);
    }
}

#[test]
fn extremes_at_their_largest() {
    for kind in 0..12 {
        let start = Instant::now();
        let text = extreme(kind, 100_000);
        assert!(
            text.len() <= MAX_LESSON_BYTES,
            "kind {kind}: {} bytes",
            text.len()
        );
        check(&text);
        let took = start.elapsed();
        assert!(took < Duration::from_secs(10), "kind {kind} took {took:?}");
    }
}

/// Every kind of case above, generated until the time is up.
#[test]
fn fuzz_for_a_bounded_time() {
    let seconds: f64 = std::env::var("KERNELBOOK_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30.0);
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let cases = prop_oneof![
        arbitrary_text(),
        arbitrary_bytes(),
        lesson_like(),
        mutated(),
        mutated(),
        extremes(),
    ];
    let mut runner = TestRunner::default();
    let mut n = 0usize;
    while n == 0 || Instant::now() < deadline {
        let text = cases
            .new_tree(&mut runner)
            .map(|tree| tree.current())
            .unwrap_or_default();
        check(&text);
        n += 1;
    }
    eprintln!("fuzz_for_a_bounded_time: {n} lessons in {seconds} s");
}
