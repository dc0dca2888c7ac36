//! A whole lesson file: the size limit, the front matter, the steps from the Markdown outline
//! (`markdown.rs`), and each fenced block handed to the module that knows its kind.

use super::body::TomlBody;
use super::cell::parse_cell;
use super::de::{Int, Text};
use super::error::{Res, fail};
use super::kernel::parse_kernel;
use super::markdown::{BLOCK_KINDS, Fence, Item, RawStep, outline};
use super::predict::parse_predict;
use super::slide::parse_slide;
use super::{Answer, Block, Lesson, LessonError, LessonSource, MAX_LESSON_BYTES, Step, Truth};
use crate::ops::OpKind;
use serde::Deserialize;

/// Parse one lesson file. `source` says where the text came from (it names the file in errors and
/// is kept in the [`Lesson`]).
pub fn parse_lesson(text: &str, source: LessonSource) -> Result<Lesson, LessonError> {
    match parse_document(text) {
        Ok((front, steps)) => Ok(Lesson {
            id: front.id,
            order: front.order,
            title: front.title,
            summary: front.summary,
            source,
            steps,
        }),
        Err(f) => Err(f.into_error(&source)),
    }
}

struct FrontMatter {
    id: String,
    order: i64,
    title: String,
    summary: String,
}

/// The front matter's keys, all required.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "front matter")]
struct FrontBody {
    id: LessonId,
    order: Int,
    title: Text,
    summary: Text,
}

fn parse_document(text: &str) -> Res<(FrontMatter, Vec<Step>)> {
    if text.len() > MAX_LESSON_BYTES {
        return fail(
            0,
            0,
            format!(
                "the file is {} bytes; a lesson may be at most 1 MiB ({MAX_LESSON_BYTES} bytes)",
                text.len()
            ),
        );
    }
    let outline = outline(text)?;
    let (front_lines, first_line) = &outline.front;
    let body = TomlBody::new(front_lines, *first_line);
    let front = parse_front_matter(&body, outline.front_open)?;
    let mut steps = Vec::new();
    for (i, raw) in outline.steps.iter().enumerate() {
        // The last step is cut short when the outline stopped at a problem.
        let complete = outline.problem.is_none() || i + 1 < outline.steps.len();
        steps.push(parse_step(raw, complete)?);
    }
    if let Some(problem) = outline.problem {
        return Err(problem);
    }
    Ok((front, steps))
}

/// One step: its blocks in order, its slide, and the rules about its question and slide.
/// `complete` is false for a step the outline cut short (its cell may come after the problem).
fn parse_step(raw: &RawStep<'_>, complete: bool) -> Res<Step> {
    let mut step = Step {
        title: raw.title.to_string(),
        line: raw.line,
        blocks: Vec::new(),
        slide: None,
    };
    // Lines of the step's predict and slide blocks, for the one-of-each rule.
    let mut predict_at: Option<(usize, usize)> = None;
    let mut slide_line = None;
    for item in &raw.items {
        let fence = match item {
            Item::Prose(text) => {
                step.blocks.push(Block::Prose(text.clone()));
                continue;
            }
            Item::Fence(fence) => fence,
        };
        match parse_block(fence)? {
            Parsed::Block(block) => {
                if let Block::Predict(p) = block.as_ref() {
                    if let Some((first, _)) = predict_at {
                        return fail(
                            p.line,
                            fence.col,
                            format!(
                                "predict: a step asks one question, and this one already has one on line {first} (start a new step with '## ' for the next question)"
                            ),
                        );
                    }
                    predict_at = Some((p.line, fence.col));
                }
                step.blocks.push(*block);
            }
            Parsed::Slide(text) => {
                if let Some(first) = slide_line {
                    return fail(
                        fence.line,
                        fence.col,
                        format!(
                            "slide: a step has one slide, and this one already has one on line {first}"
                        ),
                    );
                }
                slide_line = Some(fence.line);
                step.slide = Some(text);
            }
            Parsed::Nothing => {}
        }
    }
    if complete
        && let (Some(p), Some((line, col))) = (step.predict(), predict_at)
        && matches!(&p.answer, Answer::Number(n) if matches!(n.truth, Truth::Cell(_)))
        && step.cells().next().is_none()
    {
        return fail(
            line,
            col,
            "predict: answer_from reads the step's cell, but this step has no cell (add one, or give a fixed answer = NUMBER)",
        );
    }
    Ok(step)
}

/// A lesson id: one or more of a-z, 0-9, '_', '-'.
struct LessonId(String);

impl<'de> Deserialize<'de> for LessonId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let id = String::deserialize(d)?;
        let ok = !id.is_empty()
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !ok {
            return Err(serde::de::Error::custom(format!(
                "'{id}' is not a valid id (expected one or more of a-z, 0-9, '_', '-')"
            )));
        }
        Ok(LessonId(id))
    }
}

fn parse_front_matter(body: &TomlBody, open: (usize, usize)) -> Res<FrontMatter> {
    let table = body.parse("front matter", open)?;
    let front: FrontBody = body.read(&table, "", open)?;
    Ok(FrontMatter {
        id: front.id.0,
        order: front.order.0,
        title: front.title.0,
        summary: front.summary.0,
    })
}

/// What a fenced block adds to its step.
enum Parsed {
    /// Boxed: a cell is large next to the other variants.
    Block(Box<Block>),
    Slide(String),
    /// Nothing (empty notes).
    Nothing,
}

/// One fenced block.
fn parse_block(fence: &Fence<'_>) -> Res<Parsed> {
    let line = fence.line;
    let at = (line, fence.col);
    let Some(&(_, kind)) = fence.info.first() else {
        return fail(
            line,
            fence.col,
            format!(
                "a fenced block needs a kind after {} (expected one of: {BLOCK_KINDS})",
                fence.marker
            ),
        );
    };
    // Nothing may follow the words a kind takes.
    let extra = |from: usize| -> Res<()> {
        let Some(&(col, word)) = fence.info.get(from) else {
            return Ok(());
        };
        let before: Vec<&str> = fence.info.iter().take(from).map(|(_, w)| *w).collect();
        let before = before.join(" ");
        fail(
            line,
            col,
            format!(
                "unexpected '{word}' after '{before}' (expected just {}{before})",
                fence.marker
            ),
        )
    };
    let body = || TomlBody::new(&fence.body, line + 1);
    match kind {
        "cell" => {
            let Some(&(op_col, op_name)) = fence.info.get(1) else {
                return fail(
                    line,
                    fence.col,
                    format!(
                        "a cell needs an op: {}cell OP (expected one of: {})",
                        fence.marker,
                        op_names()
                    ),
                );
            };
            let Ok(op) = OpKind::from_name(op_name) else {
                return fail(
                    line,
                    op_col,
                    format!("unknown op '{op_name}' (expected one of: {})", op_names()),
                );
            };
            extra(2)?;
            let body = body();
            let table = body.parse(&format!("cell '{op}'"), at)?;
            Ok(Parsed::Block(Box::new(Block::Cell(parse_cell(
                op, at, &body, &table,
            )?))))
        }
        "kernel" => {
            extra(1)?;
            let body = body();
            let table = body.parse("kernel", at)?;
            Ok(Parsed::Block(Box::new(Block::Kernel(parse_kernel(
                at, &body, &table,
            )?))))
        }
        "predict" => {
            extra(1)?;
            let body = body();
            let table = body.parse("predict", at)?;
            Ok(Parsed::Block(Box::new(Block::Predict(parse_predict(
                at, &body, &table,
            )?))))
        }
        "notes" => {
            extra(1)?;
            Ok(fence.markdown_body().map_or(Parsed::Nothing, |n| {
                Parsed::Block(Box::new(Block::Notes(n)))
            }))
        }
        "slide" => {
            extra(1)?;
            Ok(Parsed::Slide(parse_slide(fence)?))
        }
        other => fail(
            line,
            fence.info.first().map_or(fence.col, |(c, _)| *c),
            format!("unknown block kind '{other}' (expected one of: {BLOCK_KINDS})"),
        ),
    }
}

pub(crate) fn op_names() -> String {
    OpKind::all()
        .map(|k| k.name())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Lesson {
    /// Places where the lesson breaks a rule of "predict, then reveal" that the parser does not
    /// enforce (so that older lessons still load): a question that comes after the step's cell,
    /// whose results the learner would see before answering. Each is a [`LessonError`] with the
    /// question's position.
    pub fn warnings(&self) -> Vec<LessonError> {
        let mut out = Vec::new();
        for step in &self.steps {
            let (Some(p), Some(at)) = (step.predict(), step.predict_index()) else {
                continue;
            };
            let first_cell = step.blocks.iter().take(at).find_map(|b| match b {
                Block::Cell(c) => Some(c.line),
                _ => None,
            });
            if let Some(cell_line) = first_cell {
                out.push(LessonError::new(
                    &self.source,
                    p.line,
                    1,
                    format!(
                        "predict: the question comes after the step's cell (line {cell_line}); put it before the cell, so that the learner answers before the results show"
                    ),
                ));
            }
        }
        out
    }
}
