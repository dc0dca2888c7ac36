//! The parser never panics: arbitrary text and bytes, lesson-like text made of the format's own
//! pieces, and the built-in lessons mutated at random.

use super::*;
use proptest::prelude::*;

// ---- never panic -------------------------------------------------------------------------

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
];

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
                Block::Predict(p) => assert!(p.answer < p.choices.len()),
                Block::Prose(s) | Block::Notes(s) => assert!(!s.trim().is_empty()),
                Block::Kernel(_) => {}
            }
        }
    }
}

proptest! {
    // PROPTEST_CASES=100000 for a longer run.
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(512)
    ))]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC*") {
        if let Ok(l) = parse(&text) { check_invariants(&l); }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(l) = parse(&text) { check_invariants(&l); }
    }

    #[test]
    fn lesson_like_text_never_panics(picks in proptest::collection::vec(0..PIECES.len(), 0..120)) {
        let text: String = picks.iter().map(|&i| PIECES[i]).collect();
        if let Ok(l) = parse(&text) { check_invariants(&l); }
        let text = format!("{FRONT}{text}");
        if let Ok(l) = parse(&text) { check_invariants(&l); }
    }

    #[test]
    fn mutated_lesson_never_panics(
        base in 0..=crate::lesson::BUILTIN.len(),
        edits in proptest::collection::vec((0u8..6, any::<usize>(), any::<usize>(), "\\PC{0,12}"), 1..8)
    ) {
        // The test lesson or one of the built-in lessons.
        let text = crate::lesson::BUILTIN.get(base).map_or(VALID, |(_, t)| *t);
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        let mut bytes = Vec::new();
        for (kind, a, b, payload) in &edits {
            match kind {
                0 if !lines.is_empty() => { lines.remove(a % lines.len()); }
                1 if !lines.is_empty() => { let l = lines[a % lines.len()].clone(); lines.insert(b % lines.len(), l); }
                2 => { let at = a % (lines.len() + 1); lines.insert(at, payload.clone()); }
                3 if !lines.is_empty() => { let i = a % lines.len(); let j = b % lines.len(); lines.swap(i, j); }
                _ => bytes.push((*a, *b, payload.clone())),
            }
        }
        let mut text = lines.join("\n").into_bytes();
        for (a, b, payload) in bytes {
            if text.is_empty() { break; }
            let at = a % text.len();
            if b % 2 == 0 {
                let end = (at + b % 5).min(text.len());
                text.drain(at..end);
            } else {
                text.splice(at..at, payload.into_bytes());
            }
        }
        let text = String::from_utf8_lossy(&text);
        if let Ok(l) = parse(&text) { check_invariants(&l); }
    }
}
