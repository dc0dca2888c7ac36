//! The Markdown layer of a lesson file: the `+++` front matter, then the block structure that
//! `pulldown-cmark` finds (step headings and fenced blocks at the top level, everything else prose),
//! with byte offsets turned into 1-based lines and columns. What the blocks mean is decided in
//! `document.rs`; this module only says where they are.
//!
//! The parse uses the same CommonMark extensions as the app's Markdown viewer, so what the parser
//! calls a heading or a fence is what an author sees rendered as one.

use super::error::{Fail, Res, fail, shorten};
use pulldown_cmark::{CodeBlockKind, Event, HeadingLevel, Options, Parser, Tag};

/// The block kinds a fence may name (`cell OP`, ...), in the order error messages list them.
pub(crate) const BLOCK_KINDS: &str = "cell OP, kernel, predict, notes, slide";

/// The first info words that name a lesson block.
const KIND_WORDS: [&str; 5] = ["cell", "kernel", "predict", "notes", "slide"];

/// The extensions the app's Markdown viewer (egui_commonmark) enables.
fn options() -> Options {
    Options::ENABLE_TABLES
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_DEFINITION_LIST
}

// ---------------------------------------------------------------------------------------------
// Positions.
// ---------------------------------------------------------------------------------------------

/// The longest prefix of `s` of at most `byte` bytes that ends on a character boundary.
pub(crate) fn prefix(s: &str, byte: usize) -> &str {
    let mut end = byte.min(s.len());
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

/// 1-based column (in characters, a tab counting as one) of byte offset `byte` of `line`.
pub(crate) fn column(line: &str, byte: usize) -> usize {
    prefix(line, byte).chars().count() + 1
}

pub(crate) fn is_blank(line: &str) -> bool {
    line.chars().all(char::is_whitespace)
}

/// Width of the leading spaces and tabs (a tab moves to the next multiple of 4, as in CommonMark)
/// and their length in bytes.
fn indentation(line: &str) -> (usize, usize) {
    let mut width = 0;
    let mut bytes = 0;
    for b in line.bytes() {
        match b {
            b' ' => width += 1,
            b'\t' => width += 4 - width % 4,
            _ => break,
        }
        bytes += 1;
    }
    (width, bytes)
}

/// Column of the first non-blank character (1 for a blank line).
pub(crate) fn first_column(line: &str) -> usize {
    let lead = line.len() - line.trim_start().len();
    column(line, lead)
}

/// Remove up to `width` columns of leading spaces and tabs (a Markdown body under an indented fence).
fn dedent(line: &str, width: usize) -> &str {
    let mut w = 0;
    let mut bytes = 0;
    for b in line.bytes() {
        let next = match b {
            b' ' => w + 1,
            b'\t' => w + 4 - w % 4,
            _ => break,
        };
        if next > width {
            break;
        }
        w = next;
        bytes += 1;
    }
    line.get(bytes..).unwrap_or(line)
}

/// `lines` without leading and trailing blank lines, joined; `None` when all are blank.
pub(crate) fn join_trimmed(lines: &[&str]) -> Option<String> {
    let start = lines.iter().position(|l| !is_blank(l))?;
    let end = lines.iter().rposition(|l| !is_blank(l))?;
    lines.get(start..=end).map(|ls| ls.join("\n"))
}

/// Whitespace-separated words of `s` with their byte offsets.
fn words(s: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in s.char_indices() {
        if c.is_whitespace() {
            if let Some(st) = start.take() {
                out.push((st, s.get(st..i).unwrap_or("")));
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(st) = start {
        out.push((st, s.get(st..).unwrap_or("")));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The outline of a lesson file.
// ---------------------------------------------------------------------------------------------

/// A lesson file cut into its parts; every position is a 1-based file line.
pub(crate) struct Outline<'t> {
    /// The front matter's TOML lines (between the `+++` lines) and the line the first is on.
    pub front: (Vec<&'t str>, usize),
    /// Line and column of the opening `+++` (errors about the front matter as a whole).
    pub front_open: (usize, usize),
    /// The steps up to the first problem in the Markdown structure.
    pub steps: Vec<RawStep<'t>>,
    /// The first problem in the Markdown structure after the front matter, if any: reported after
    /// the front matter and the blocks before it have been checked, so that the first error in
    /// the file is the one an author sees.
    pub problem: Option<Fail>,
}

/// A `## ` heading and what follows it up to the next one.
pub(crate) struct RawStep<'t> {
    pub title: &'t str,
    pub line: usize,
    pub items: Vec<Item<'t>>,
}

pub(crate) enum Item<'t> {
    /// Markdown between blocks, blank edge lines trimmed.
    Prose(String),
    Fence(Fence<'t>),
}

/// A top-level fenced block: where it is, its info string's words and its body lines.
pub(crate) struct Fence<'t> {
    pub line: usize,
    /// Column of the first fence character.
    pub col: usize,
    /// The fence characters as written (for messages).
    pub marker: &'t str,
    /// Indentation width of the fence (removed from the lines of a Markdown body).
    pub indent: usize,
    /// The info string's words with their 1-based columns.
    pub info: Vec<(usize, &'t str)>,
    /// The lines between the opening and the closing fence, as written.
    pub body: Vec<&'t str>,
}

impl Fence<'_> {
    /// The body as Markdown: the fence's indentation removed, blank edges trimmed.
    pub fn markdown_body(&self) -> Option<String> {
        let lines: Vec<&str> = self.body.iter().map(|l| dedent(l, self.indent)).collect();
        join_trimmed(&lines)
    }
}

/// An opening code fence line: 3 or more backticks or tildes, indented at most 3 spaces.
struct FenceLine<'a> {
    ch: u8,
    len: usize,
    indent: usize,
    /// Byte offset of the first fence character.
    start: usize,
    marker: &'a str,
    /// The info string (untrimmed) and its byte offset in the line.
    info: &'a str,
    info_start: usize,
}

fn fence_line(line: &str) -> Option<FenceLine<'_>> {
    let (indent, start) = indentation(line);
    if indent > 3 {
        return None;
    }
    let rest = line.get(start..)?;
    let ch = *rest.as_bytes().first()?;
    if ch != b'`' && ch != b'~' {
        return None;
    }
    let len = rest.bytes().take_while(|&b| b == ch).count();
    if len < 3 {
        return None;
    }
    Some(FenceLine {
        ch,
        len,
        indent,
        start,
        marker: rest.get(..len)?,
        info: rest.get(len..)?,
        info_start: start + len,
    })
}

/// Whether `line` closes `fence`: the same character, at least as many, nothing after but blanks.
fn closes(line: &str, fence: &FenceLine<'_>) -> bool {
    let (indent, start) = indentation(line);
    if indent > 3 {
        return false;
    }
    let Some(rest) = line.get(start..) else {
        return false;
    };
    let len = rest.bytes().take_while(|&b| b == fence.ch).count();
    len >= fence.len
        && rest
            .get(len..)
            .is_some_and(|r| r.bytes().all(|b| b == b' ' || b == b'\t'))
}

/// An ATX heading line: (level, title, column of the first `#`). The optional closing run of `#`
/// is dropped.
fn atx_heading(line: &str) -> Option<(usize, &str, usize)> {
    let (width, start) = indentation(line);
    if width > 3 {
        return None;
    }
    let rest = line.get(start..)?;
    let level = rest.bytes().take_while(|&b| b == b'#').count();
    if level == 0 || level > 6 {
        return None;
    }
    let after = rest.get(level..)?;
    if !(after.is_empty() || after.starts_with(' ') || after.starts_with('\t')) {
        return None;
    }
    let title = after.trim_matches([' ', '\t']);
    let without_closing = title.trim_end_matches('#');
    let title = if without_closing.is_empty() {
        ""
    } else if without_closing.ends_with([' ', '\t']) {
        without_closing.trim_end_matches([' ', '\t'])
    } else {
        title
    };
    Some((level, title, column(line, start)))
}

/// What starts on a line at the top level of the document.
enum Mark<'t> {
    /// An ATX heading of a level, spanning one line.
    Heading(usize),
    /// The underline of a setext heading (`===` or `---` under text) of a level.
    Underline(usize),
    /// A fenced block up to the line of its closing fence (`None`: never closed).
    Fence(FenceLine<'t>, Option<usize>),
    /// A fence of a lesson block kind inside a list or a quote (an error: it would silently be
    /// read as prose).
    Nested(String),
}

/// The top-level headings and fences of `text` (the file after the front matter, starting at the
/// line with index `first`), keyed by their line index in `lines`, in line order.
fn marks<'t>(
    text: &str,
    lines: &[&'t str],
    line_starts: &[usize],
    first: usize,
) -> Vec<(usize, Mark<'t>)> {
    let base = line_starts.get(first).copied().unwrap_or(text.len());
    let body = text.get(base..).unwrap_or("");
    let line_of = |offset: usize| -> usize {
        let at = base + offset;
        line_starts
            .partition_point(|&s| s <= at)
            .saturating_sub(1)
            .max(first)
    };
    // The last line a block's byte range covers (its range ends after the newline, if any).
    let last_line_of = |range: &std::ops::Range<usize>| -> usize {
        line_of(range.end.saturating_sub(1).max(range.start))
    };
    let mut out = Vec::new();
    let mut depth = 0usize;
    for (event, range) in Parser::new_ext(body, options()).into_offset_iter() {
        match event {
            Event::Start(tag) => {
                if depth == 0 {
                    let first_line = line_of(range.start);
                    match &tag {
                        Tag::Heading { level, .. } => {
                            let level = heading_level(*level);
                            let line = lines.get(first_line).copied().unwrap_or("");
                            if atx_heading(line).is_some() {
                                out.push((first_line, Mark::Heading(level)));
                            } else {
                                out.push((last_line_of(&range), Mark::Underline(level)));
                            }
                        }
                        Tag::CodeBlock(CodeBlockKind::Fenced(_)) => {
                            let line = lines.get(first_line).copied().unwrap_or("");
                            if let Some(fence) = fence_line(line) {
                                let last = last_line_of(&range);
                                let closed = (last > first_line
                                    && lines.get(last).is_some_and(|l| closes(l, &fence)))
                                .then_some(last);
                                out.push((first_line, Mark::Fence(fence, closed)));
                            }
                        }
                        _ => {}
                    }
                } else if let Tag::CodeBlock(CodeBlockKind::Fenced(info)) = &tag {
                    let kind = info.split_whitespace().next().unwrap_or("");
                    if KIND_WORDS.contains(&kind) {
                        out.push((line_of(range.start), Mark::Nested(kind.to_string())));
                    }
                }
                depth += 1;
            }
            Event::End(_) => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    out
}

fn heading_level(level: HeadingLevel) -> usize {
    match level {
        HeadingLevel::H1 => 1,
        HeadingLevel::H2 => 2,
        HeadingLevel::H3 => 3,
        HeadingLevel::H4 => 4,
        HeadingLevel::H5 => 5,
        HeadingLevel::H6 => 6,
    }
}

/// Cut a lesson file into front matter and steps. `text` is the whole file, at most
/// `MAX_LESSON_BYTES` long (checked by the caller).
pub(crate) fn outline(text: &str) -> Res<Outline<'_>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut line_starts = vec![0];
    line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();

    // Front matter: the first non-blank line is `+++`, up to the next `+++` line.
    let Some(open) = lines.iter().position(|l| !is_blank(l)) else {
        return fail(
            1,
            1,
            "the file is empty (expected TOML front matter between '+++' lines, then '## ' steps)",
        );
    };
    let open_text = lines.get(open).copied().unwrap_or("");
    let front_open = (open + 1, first_column(open_text));
    if open_text.trim() != "+++" {
        return fail(
            front_open.0,
            front_open.1,
            format!(
                "expected '+++' to open the TOML front matter (id, order, title, summary), found '{}'",
                shorten(open_text)
            ),
        );
    }
    let Some(close) = lines
        .iter()
        .enumerate()
        .skip(open + 1)
        .find(|(_, l)| l.trim() == "+++")
        .map(|(i, _)| i)
    else {
        return fail(
            front_open.0,
            front_open.1,
            "front matter opened here is never closed (expected a '+++' line after it)",
        );
    };
    let front = (lines.get(open + 1..close).unwrap_or(&[]).to_vec(), open + 2);

    let marks = marks(text, &lines, &line_starts, close + 1);
    let mut steps: Vec<RawStep<'_>> = Vec::new();
    let problem = scan(&lines, close + 1, marks, &mut steps).err();
    Ok(Outline {
        front,
        front_open,
        steps,
        problem,
    })
}

/// Read the lines from index `first` on into `steps`, following `marks`; stops at the first problem.
fn scan<'t>(
    lines: &[&'t str],
    first: usize,
    marks: Vec<(usize, Mark<'t>)>,
    steps: &mut Vec<RawStep<'t>>,
) -> Res<()> {
    let mut marks = marks.into_iter().peekable();
    let mut prose: Vec<&str> = Vec::new();
    let mut i = first;
    while let Some(&line) = lines.get(i) {
        let no = i + 1;
        // Marks come in line order; one that starts here decides what this line is.
        while marks.peek().is_some_and(|(at, _)| *at < i) {
            marks.next();
        }
        let mark = marks.next_if(|(at, _)| *at == i).map(|(_, m)| m);
        match mark {
            Some(Mark::Heading(1)) => {
                let col = atx_heading(line).map_or(1, |(_, _, c)| c);
                return fail(
                    no,
                    col,
                    "'# ' (h1) headings are not allowed: the lesson title comes from the front matter (use '## ' to start a step)",
                );
            }
            Some(Mark::Heading(2)) => {
                let (_, title, col) = atx_heading(line).unwrap_or((2, "", first_column(line)));
                if let Some(step) = steps.last_mut() {
                    flush_prose(&mut prose, step);
                }
                if title.is_empty() {
                    return fail(
                        no,
                        col,
                        "a step heading needs a title (expected '## Title')",
                    );
                }
                steps.push(RawStep {
                    title,
                    line: no,
                    items: Vec::new(),
                });
                i += 1;
                continue;
            }
            Some(Mark::Nested(kind)) => {
                return fail(
                    no,
                    first_column(line),
                    format!(
                        "this '{kind}' block is inside a list or a quote, where it would be read as prose; start its fence outside the list or quote (no indentation under a list item)"
                    ),
                );
            }
            Some(Mark::Underline(level @ (1 | 2))) => {
                let (sign, what) = if level == 1 {
                    ('=', "an h1 heading, which lessons do not use")
                } else {
                    ('-', "an h2 heading, but steps start with '## Title'")
                };
                return fail(
                    no,
                    first_column(line),
                    format!(
                        "a line of '{sign}' under text makes {what} (use '## ' to start a step, or put a blank line before the '{sign}' line)"
                    ),
                );
            }
            _ => {}
        }
        let Some(step) = steps.last_mut() else {
            if is_blank(line) {
                i += 1;
                continue;
            }
            return fail(
                no,
                first_column(line),
                format!(
                    "expected a '## ' step heading: only blank lines may come between the front matter and the first step (found '{}')",
                    shorten(line)
                ),
            );
        };
        if let Some(Mark::Fence(fence, closed)) = mark {
            let Some(end) = closed else {
                return fail(
                    no,
                    column(line, fence.start),
                    format!(
                        "unclosed {} fence opened here (expected a closing line of {} or more '{}')",
                        fence.marker, fence.len, fence.ch as char
                    ),
                );
            };
            flush_prose(&mut prose, step);
            let info = words(fence.info)
                .into_iter()
                .map(|(off, w)| (column(line, fence.info_start + off), w))
                .collect();
            step.items.push(Item::Fence(Fence {
                line: no,
                col: column(line, fence.start),
                marker: fence.marker,
                indent: fence.indent,
                info,
                body: lines.get(i + 1..end).unwrap_or(&[]).to_vec(),
            }));
            i = end + 1;
            continue;
        }
        prose.push(line);
        i += 1;
    }
    if let Some(step) = steps.last_mut() {
        flush_prose(&mut prose, step);
    }
    if steps.is_empty() {
        return fail(
            first,
            1,
            "the lesson has no steps (expected at least one '## ' heading after the front matter)",
        );
    }
    Ok(())
}

fn flush_prose(prose: &mut Vec<&str>, step: &mut RawStep<'_>) {
    if let Some(text) = join_trimmed(prose) {
        step.items.push(Item::Prose(text));
    }
    prose.clear();
}

/// The byte range of the first top-level paragraph of the Markdown `md`, if it has one.
pub(crate) fn first_paragraph(md: &str) -> Option<std::ops::Range<usize>> {
    let mut depth = 0usize;
    for (event, range) in Parser::new_ext(md, options()).into_offset_iter() {
        match event {
            Event::Start(Tag::Paragraph) if depth == 0 => return Some(range),
            Event::Start(_) => depth += 1,
            Event::End(_) => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}
