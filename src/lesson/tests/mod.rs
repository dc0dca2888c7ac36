//! Unit tests of the lesson parser, by subject, with the helpers they share: a valid lesson that
//! uses every block kind, and assertions that an error lands on an exact line and column.

mod cell;
mod document;
mod fuzz;
mod input;
mod kernel;
mod load;
mod predict;
mod slide;

use super::*;

/// A lesson that uses every block kind, every control kind and two input forms.
const VALID: &str = r#"+++
id = "demo"
order = 7
title = "Demo"
summary = "A lesson for the tests"
+++

## Why subtract the max?
Some *prose*.

```cell softmax
title = "Temperature"
input = [2.0, 1.0, 0.1, -1.0]
temperature = { min = 0.05, max = 10.0, default = 1.0 }
stable = { default = false }
dtype = { choices = ["f32", "f16"], default = "f16" }
show = ["bars", "table", "check"]
```

More prose.

```kernel
topic = "softmax"
marks = ["stable softmax", "log_softmax"]
```

```predict
question = "Which token is most likely?"
choices = ["a", "b", "c"]
answer = 2
explain = "Because."
```

```notes
Ask the room.
```

## Curves
```cell logit
input = { linspace = [0.0, 1.0], count = 11 }
```
"#;

/// Front matter and one step heading: lines 1-8. A block's fence opens on line 9 and its body
/// starts on line 10.
const FRONT: &str = "+++\nid = \"t\"\norder = 1\ntitle = \"T\"\nsummary = \"S\"\n+++\n\n## Step\n";

fn parse(text: &str) -> Result<Lesson, LessonError> {
    parse_lesson(text, LessonSource::Builtin("t.md"))
}

fn lesson(rest: &str) -> String {
    format!("{FRONT}{rest}")
}

fn block(info: &str, body: &str) -> String {
    lesson(&format!("```{info}\n{body}\n```\n"))
}

#[track_caller]
fn assert_err(text: &str, line: usize, column: usize, phrase: &str) {
    match parse(text) {
        Ok(_) => panic!("expected an error containing '{phrase}' for:\n{text}"),
        Err(e) => assert!(
            e.line == line && e.column == column && e.message.contains(phrase),
            "expected {line}:{column} '{phrase}', got '{e}' for:\n{text}"
        ),
    }
}

/// An error in the body of a block: `body_line` is 1-based within the body.
#[track_caller]
fn assert_block_err(info: &str, body: &str, body_line: usize, column: usize, phrase: &str) {
    assert_err(&block(info, body), 9 + body_line, column, phrase);
}

#[track_caller]
fn cell(op: &str, body: &str) -> CellSpec {
    let text = block(&format!("cell {op}"), body);
    match parse(&text) {
        Ok(l) => l.steps[0].cells().next().expect("a cell").clone(),
        Err(e) => panic!("{e}\n{text}"),
    }
}

#[track_caller]
fn input(body: &str) -> InputSpec {
    cell("sigmoid", body).input
}
