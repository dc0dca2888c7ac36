//! A whole lesson file: the size limit, the front matter, the steps from the Markdown outline
//! (`markdown.rs`), and each fenced block handed to the module that knows its kind.

use super::blocks::{parse_kernel, parse_predict};
use super::body::TomlBody;
use super::cell::parse_cell;
use super::de::{Int, Text};
use super::error::{Res, fail};
use super::markdown::{BLOCK_KINDS, Fence, Item, outline};
use super::{Block, Lesson, LessonError, LessonSource, MAX_LESSON_BYTES, Step};
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
    for raw in &outline.steps {
        let mut step = Step {
            title: raw.title.to_string(),
            line: raw.line,
            blocks: Vec::new(),
        };
        for item in &raw.items {
            match item {
                Item::Prose(text) => step.blocks.push(Block::Prose(text.clone())),
                Item::Fence(fence) => {
                    if let Some(block) = parse_block(fence)? {
                        step.blocks.push(block);
                    }
                }
            }
        }
        steps.push(step);
    }
    if let Some(problem) = outline.problem {
        return Err(problem);
    }
    Ok((front, steps))
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

/// One fenced block; `None` for a block that adds nothing (empty notes).
fn parse_block(fence: &Fence<'_>) -> Res<Option<Block>> {
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
            Ok(Some(Block::Cell(parse_cell(op, at, &body, &table)?)))
        }
        "kernel" => {
            extra(1)?;
            let body = body();
            let table = body.parse("kernel", at)?;
            Ok(Some(Block::Kernel(parse_kernel(at, &body, &table)?)))
        }
        "predict" => {
            extra(1)?;
            let body = body();
            let table = body.parse("predict", at)?;
            Ok(Some(Block::Predict(parse_predict(at, &body, &table)?)))
        }
        "notes" => {
            extra(1)?;
            Ok(fence.markdown_body().map(Block::Notes))
        }
        other => fail(
            line,
            fence.info.first().map_or(fence.col, |(c, _)| *c),
            format!("unknown block kind '{other}' (expected one of: {BLOCK_KINDS})"),
        ),
    }
}

pub(crate) fn op_names() -> String {
    OpKind::ALL
        .iter()
        .map(|k| k.name())
        .collect::<Vec<_>>()
        .join(", ")
}
