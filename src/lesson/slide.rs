//! What a step shows as a slide in classroom mode: a `slide` block when the step has one (at most
//! [`SLIDE_MAX_CHARS`] characters on [`SLIDE_MAX_LINES`] lines), else the first paragraph of the
//! prose before the step's question, cut at a sentence to fit. The rest of the prose is for the
//! presenter ([`Step::presenter_prose`]).

use super::error::{Res, fail};
use super::markdown::{Fence, first_paragraph};
use super::{Block, Step};

/// Most characters of slide text (about three lines at a projector's text size).
pub const SLIDE_MAX_CHARS: usize = 280;
/// Most lines in a `slide` block.
pub const SLIDE_MAX_LINES: usize = 4;

/// A `slide` block's Markdown body, within the limits.
pub(crate) fn parse_slide(fence: &Fence<'_>) -> Res<String> {
    let at = (fence.line, fence.col);
    let Some(text) = fence.markdown_body() else {
        return fail(
            at.0,
            at.1,
            "slide: the block is empty (write the slide's text, or leave the block out to show the step's first paragraph)",
        );
    };
    let chars = text.chars().count();
    let lines = text.lines().count();
    if chars > SLIDE_MAX_CHARS || lines > SLIDE_MAX_LINES {
        return fail(
            at.0,
            at.1,
            format!(
                "slide: {chars} characters on {lines} lines; a slide holds at most {SLIDE_MAX_CHARS} characters on {SLIDE_MAX_LINES} lines (the rest belongs in the prose or the notes)"
            ),
        );
    }
    Ok(text)
}

/// `text` cut to at most `max` characters: after the last sentence that fits, or at a word
/// with an ellipsis. Returns the text and whether it was cut.
fn fit(text: &str, max: usize) -> (String, bool) {
    if text.chars().count() <= max {
        return (text.to_string(), false);
    }
    let head: String = text.chars().take(max).collect();
    // The last sentence end that leaves a useful slide (a third of the room or more): '.', '?'
    // or '!', a space, and a capital (or emphasis, or code) starting the next sentence, so that
    // "et al. (2017)" is not an end.
    let sentence = head
        .char_indices()
        .filter(|&(i, c)| {
            let mut next = head.get(i + 1..).unwrap_or("").chars();
            matches!(c, '.' | '?' | '!')
                && next.next() == Some(' ')
                && next
                    .next()
                    .is_some_and(|n| n.is_uppercase() || n == '*' || n == '`')
        })
        .map(|(i, _)| i + 1)
        .rfind(|&end| {
            head.get(..end)
                .is_some_and(|h| h.chars().count() >= max / 3)
        });
    if let Some(end) = sentence {
        return (head.get(..end).unwrap_or(&head).to_string(), true);
    }
    let word_end = head
        .char_indices()
        .filter(|(_, c)| c.is_whitespace())
        .map(|(i, _)| i)
        .next_back()
        .unwrap_or(head.len());
    let mut cut = head.get(..word_end).unwrap_or(&head).trim_end().to_string();
    cut.push('…');
    (cut, true)
}

/// The first paragraph of the first prose block in `blocks`: (block index, byte range, text
/// with its lines joined).
fn first_prose_paragraph(blocks: &[Block]) -> Option<(usize, std::ops::Range<usize>, String)> {
    blocks.iter().enumerate().find_map(|(i, b)| match b {
        Block::Prose(md) => {
            let range = first_paragraph(md)?;
            let text = md
                .get(range.clone())?
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            Some((i, range, text))
        }
        _ => None,
    })
}

impl Step {
    /// The text of this step's slide (Markdown): its `slide` block, else the first paragraph of
    /// the prose before its question, cut to [`SLIDE_MAX_CHARS`] at a sentence (or a word, with
    /// an ellipsis). Empty when the step has neither.
    pub fn slide_text(&self) -> String {
        if let Some(s) = &self.slide {
            return s.clone();
        }
        first_prose_paragraph(self.before_predict())
            .map(|(_, _, text)| fit(&text, SLIDE_MAX_CHARS).0)
            .unwrap_or_default()
    }

    /// The prose that is not on the slide, for the presenter (Markdown, in reading order,
    /// revealed prose included): every prose block, less the paragraph the slide shows when it
    /// shows all of it.
    pub fn presenter_prose(&self) -> Vec<String> {
        let on_slide = match &self.slide {
            Some(_) => None,
            None => first_prose_paragraph(self.before_predict())
                .filter(|(_, _, text)| !fit(text, SLIDE_MAX_CHARS).1),
        };
        self.blocks
            .iter()
            .enumerate()
            .filter_map(|(i, b)| {
                let Block::Prose(md) = b else { return None };
                let text = match &on_slide {
                    Some((at, range, _)) if *at == i => {
                        let before = md.get(..range.start).unwrap_or("");
                        let after = md.get(range.end..).unwrap_or("");
                        format!("{}\n\n{}", before.trim(), after.trim())
                            .trim()
                            .to_string()
                    }
                    _ => md.clone(),
                };
                (!text.is_empty()).then_some(text)
            })
            .collect()
    }
}
