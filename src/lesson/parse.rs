//! The lesson-file parser: Markdown with `+++` TOML front matter, one `## ` heading per step, and
//! fenced blocks (`cell OP`, `kernel`, `predict`, `notes`) whose bodies are TOML (Markdown for
//! `notes`). The format and its rules are described in the module comment of `src/lesson/mod.rs`.
//!
//! The parser never panics and never trusts sizes from the file: a file over 1 MiB is refused, a
//! cell over [`MAX_CELL_ELEMENTS`] values is refused before anything is allocated for it. The first
//! problem found is returned as a [`LessonError`] with the file, the 1-based line and column (in
//! characters, a tab counting as one) and what was expected. TOML bodies are parsed with the `toml`
//! crate's spanned tables, so errors inside a block point at the key or value that is wrong.

use super::{
    Block, CellSpec, Control, InputSpec, KernelSetting, KernelSpec, Lesson, LessonSource,
    MAX_CELL_ELEMENTS, ParamControl, ParamValue, PredictSpec, RooflineSpec, Step, View,
};
use crate::ops::{KernelVariant, OpKind, ParamKind, ParamSpec};
use std::fmt;
use std::ops::Range;
use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

/// Largest lesson file accepted, in bytes.
use super::MAX_LESSON_BYTES;
use super::{ExtraInput, SweepSpec};

/// The views a cell shows when its `show` key is absent.
const DEFAULT_SHOW: [View; 2] = [View::Bars, View::Check];

/// Why a lesson could not be loaded: `file:line:column: message`. Line and column are 1-based; a
/// line of 0 means the whole file (it cannot be read, it is too large, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LessonError {
    /// How the file is named to the author (`lessons/02-softmax.md` or the path given).
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl LessonError {
    pub fn new(
        source: &LessonSource,
        line: usize,
        column: usize,
        message: impl Into<String>,
    ) -> Self {
        LessonError {
            file: source.display_name(),
            line,
            column,
            message: message.into(),
        }
    }
}

impl fmt::Display for LessonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (0, _) => write!(f, "{}: {}", self.file, self.message),
            (line, 0) => write!(f, "{}:{line}: {}", self.file, self.message),
            (line, column) => write!(f, "{}:{line}:{column}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for LessonError {}

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
        Err(f) => Err(LessonError::new(&source, f.line, f.column, f.message)),
    }
}

// ---------------------------------------------------------------------------------------------
// Errors inside the parser: a position and a message; the file name is added at the end.
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct Fail {
    line: usize,
    column: usize,
    message: String,
}

type Res<T> = Result<T, Fail>;

fn fail<T>(line: usize, column: usize, message: impl Into<String>) -> Res<T> {
    Err(Fail {
        line,
        column,
        message: message.into(),
    })
}

// ---------------------------------------------------------------------------------------------
// Lines, indentation, headings and fences (the Markdown layer).
// ---------------------------------------------------------------------------------------------

/// The longest prefix of `s` of at most `byte` bytes that ends on a character boundary.
fn prefix(s: &str, byte: usize) -> &str {
    let mut end = byte.min(s.len());
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

/// 1-based column (in characters) of byte offset `byte` of `line`.
fn column(line: &str, byte: usize) -> usize {
    prefix(line, byte).chars().count() + 1
}

/// A number for a message: plain when of ordinary size, in exponent notation otherwise (1e39, 1e-7).
fn num<T: Into<f64> + fmt::Display + fmt::LowerExp + Copy>(x: T) -> String {
    let v: f64 = x.into();
    if v == 0.0 || (1e-5..1e15).contains(&v.abs()) {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

fn is_blank(line: &str) -> bool {
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
fn first_column(line: &str) -> usize {
    let lead = line.len() - line.trim_start().len();
    column(line, lead)
}

/// The text of a line for a message: trimmed, at most 40 characters.
fn shorten(line: &str) -> String {
    let t = line.trim();
    if t.chars().count() > 40 {
        let mut s: String = t.chars().take(37).collect();
        s.push_str("...");
        s
    } else {
        t.to_string()
    }
}

/// An ATX heading: (level, title, column of the first `#`). At most 3 spaces of indentation, 1-6
/// `#`, then a space, a tab or the end of the line; an optional closing run of `#` is dropped.
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

/// A line of `=` that would turn the paragraph line above it into an h1 (a setext heading).
fn is_setext_h1_underline(line: &str) -> bool {
    let (width, start) = indentation(line);
    width <= 3
        && line.get(start..).is_some_and(|rest| {
            let t = rest.trim_end_matches([' ', '\t']);
            !t.is_empty() && t.bytes().all(|b| b == b'=')
        })
}

/// A line that can be the last line of a paragraph (so a `=` line under it makes a heading): not
/// blank, not a list item, a quote, a heading, a table row, HTML or indented code.
fn is_paragraph_line(line: &str) -> bool {
    let (width, start) = indentation(line);
    let Some(rest) = line.get(start..) else {
        return false;
    };
    if width > 3 || is_blank(rest) {
        return false;
    }
    if rest.starts_with(['>', '#', '|', '<']) {
        return false;
    }
    if ["- ", "* ", "+ ", "-\t", "*\t", "+\t"]
        .iter()
        .any(|m| rest.starts_with(m))
        || matches!(rest, "-" | "*" | "+")
    {
        return false;
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0
        && rest
            .get(digits..)
            .is_some_and(|r| r.starts_with(['.', ')']))
    {
        return false;
    }
    true
}

/// An opening code fence: 3 or more backticks or tildes, indented at most 3 spaces.
struct Fence<'a> {
    /// The whole line (for columns).
    line: &'a str,
    ch: u8,
    len: usize,
    /// Indentation width of the fence (removed from the lines of a Markdown body).
    indent: usize,
    /// 1-based column of the first fence character.
    col: usize,
    /// The fence characters as written (for messages).
    marker: &'a str,
    /// The info string, trimmed, and its byte offset in `line`.
    info: &'a str,
    info_start: usize,
}

fn open_fence(line: &str) -> Option<Fence<'_>> {
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
    let info_raw = rest.get(len..)?;
    // A backtick fence's info string cannot hold a backtick (that is inline code, not a fence).
    if ch == b'`' && info_raw.contains('`') {
        return None;
    }
    let lead = info_raw.len() - info_raw.trim_start().len();
    Some(Fence {
        line,
        ch,
        len,
        indent,
        col: column(line, start),
        marker: rest.get(..len)?,
        info: info_raw.trim(),
        info_start: start + len + lead,
    })
}

/// Whether `line` closes `fence`: the same character, at least as many, nothing after but blanks.
fn closes(line: &str, fence: &Fence<'_>) -> bool {
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

/// `lines` without leading and trailing blank lines, joined; `None` when all are blank.
fn join_trimmed(lines: &[&str]) -> Option<String> {
    let start = lines.iter().position(|l| !is_blank(l))?;
    let end = lines.iter().rposition(|l| !is_blank(l))?;
    lines.get(start..=end).map(|ls| ls.join("\n"))
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

// ---------------------------------------------------------------------------------------------
// The document: front matter, steps, prose and blocks.
// ---------------------------------------------------------------------------------------------

struct FrontMatter {
    id: String,
    order: i64,
    title: String,
    summary: String,
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
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
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
    if open_text.trim() != "+++" {
        return fail(
            open + 1,
            first_column(open_text),
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
            open + 1,
            first_column(open_text),
            "front matter opened here is never closed (expected a '+++' line after it)",
        );
    };
    let body = TomlBody::new(lines.get(open + 1..close).unwrap_or(&[]), open + 2);
    let front = parse_front_matter(&body, open + 1, first_column(open_text))?;

    // Steps.
    let mut steps: Vec<Step> = Vec::new();
    let mut prose: Vec<&str> = Vec::new();
    let mut prev_paragraph = false;
    let mut i = close + 1;
    while let Some(&line) = lines.get(i) {
        let no = i + 1;
        if let Some((level, title, col)) = atx_heading(line) {
            if level == 1 {
                return fail(
                    no,
                    col,
                    "'# ' (h1) headings are not allowed: the lesson title comes from the front matter (use '## ' to start a step)",
                );
            }
            if level == 2 {
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
                steps.push(Step {
                    title: title.to_string(),
                    line: no,
                    blocks: Vec::new(),
                });
                prev_paragraph = false;
                i += 1;
                continue;
            }
        }
        if prev_paragraph && is_setext_h1_underline(line) {
            return fail(
                no,
                first_column(line),
                "a line of '=' under text makes an h1 heading, which lessons do not use (use '## ' to start a step, or put a blank line before the '=' line)",
            );
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
        if let Some(fence) = open_fence(line) {
            let Some(end) = lines
                .iter()
                .enumerate()
                .skip(i + 1)
                .find(|(_, l)| closes(l, &fence))
                .map(|(k, _)| k)
            else {
                return fail(
                    no,
                    fence.col,
                    format!(
                        "unclosed {} fence opened here (expected a closing line of {} or more '{}')",
                        fence.marker, fence.len, fence.ch as char
                    ),
                );
            };
            flush_prose(&mut prose, step);
            let body = lines.get(i + 1..end).unwrap_or(&[]);
            if let Some(block) = parse_block(&fence, no, body)? {
                step.blocks.push(block);
            }
            prev_paragraph = false;
            i = end + 1;
            continue;
        }
        prose.push(line);
        prev_paragraph = is_paragraph_line(line);
        i += 1;
    }
    if let Some(step) = steps.last_mut() {
        flush_prose(&mut prose, step);
    }
    if steps.is_empty() {
        return fail(
            close + 1,
            1,
            "the lesson has no steps (expected at least one '## ' heading after the front matter)",
        );
    }
    Ok((front, steps))
}

fn flush_prose(prose: &mut Vec<&str>, step: &mut Step) {
    if let Some(text) = join_trimmed(prose) {
        step.blocks.push(Block::Prose(text));
    }
    prose.clear();
}

/// One fenced block; `None` for a block that adds nothing (empty notes).
fn parse_block(fence: &Fence<'_>, line: usize, body_lines: &[&str]) -> Res<Option<Block>> {
    let info_words = words(fence.info);
    let col_of = |offset: usize| column(fence.line, fence.info_start + offset);
    let Some(&(_, kind)) = info_words.first() else {
        return fail(
            line,
            fence.col,
            format!(
                "a fenced block needs a kind after {} (expected one of: cell OP, kernel, predict, notes)",
                fence.marker
            ),
        );
    };
    let extra = |from: usize| -> Res<()> {
        let Some(&(off, word)) = info_words.get(from) else {
            return Ok(());
        };
        let before: Vec<&str> = info_words.iter().take(from).map(|(_, w)| *w).collect();
        let before = before.join(" ");
        fail(
            line,
            col_of(off),
            format!(
                "unexpected '{word}' after '{before}' (expected just {}{before})",
                fence.marker
            ),
        )
    };
    match kind {
        "cell" => {
            let Some(&(op_off, op_name)) = info_words.get(1) else {
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
                    col_of(op_off),
                    format!("unknown op '{op_name}' (expected one of: {})", op_names()),
                );
            };
            extra(2)?;
            let body = TomlBody::new(body_lines, line + 1);
            let what = format!("cell '{op}'");
            let table = body.parse(&what, line, fence.col)?;
            Ok(Some(Block::Cell(parse_cell(
                op, line, fence.col, &body, &table,
            )?)))
        }
        "kernel" => {
            extra(1)?;
            let body = TomlBody::new(body_lines, line + 1);
            let table = body.parse("kernel", line, fence.col)?;
            Ok(Some(Block::Kernel(parse_kernel(
                line, fence.col, &body, &table,
            )?)))
        }
        "predict" => {
            extra(1)?;
            let body = TomlBody::new(body_lines, line + 1);
            let table = body.parse("predict", line, fence.col)?;
            Ok(Some(Block::Predict(parse_predict(
                line, fence.col, &body, &table,
            )?)))
        }
        "notes" => {
            extra(1)?;
            let dedented: Vec<&str> = body_lines.iter().map(|l| dedent(l, fence.indent)).collect();
            Ok(join_trimmed(&dedented).map(Block::Notes))
        }
        other => fail(
            line,
            col_of(0),
            format!(
                "unknown block kind '{other}' (expected one of: cell OP, kernel, predict, notes)"
            ),
        ),
    }
}

fn op_names() -> String {
    OpKind::all()
        .map(|k| k.name())
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------------------------
// TOML bodies: spans back to file positions, and typed access with precise messages.
// ---------------------------------------------------------------------------------------------

/// A TOML body and the file line its first line is on.
struct TomlBody {
    text: String,
    first_line: usize,
}

/// A key of a table with its span, and its value.
type Entry<'t, 'i> = (&'t str, Range<usize>, &'t Spanned<DeValue<'i>>);

impl TomlBody {
    fn new(lines: &[&str], first_line: usize) -> Self {
        TomlBody {
            text: lines.join("\n"),
            first_line,
        }
    }

    /// File line and column of a byte offset in the body.
    fn pos(&self, offset: usize) -> (usize, usize) {
        let before = prefix(&self.text, offset);
        let line = before.matches('\n').count();
        let line_start = before.rfind('\n').map_or(0, |p| p + 1);
        let col = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
        (self.first_line + line, col)
    }

    fn fail<T>(&self, span: &Range<usize>, message: impl Into<String>) -> Res<T> {
        let (line, column) = self.pos(span.start);
        fail(line, column, message)
    }

    /// Parse the body; a syntax error points at the offending text in the file.
    fn parse(&self, what: &str, fence_line: usize, fence_col: usize) -> Res<DeTable<'_>> {
        match DeTable::parse(&self.text) {
            Ok(table) => Ok(table.into_inner()),
            Err(e) => {
                let (line, column) = match e.span() {
                    Some(span) => self.pos(span.start),
                    None => (fence_line, fence_col),
                };
                let message = e.message().trim().replace('\n', " ");
                fail(line, column, format!("{what}: invalid TOML: {message}"))
            }
        }
    }
}

/// The entries of a table in the order they are written.
fn entries<'t, 'i>(table: &'t DeTable<'i>) -> Vec<Entry<'t, 'i>> {
    let mut out: Vec<Entry<'t, 'i>> = table
        .iter()
        .map(|(k, v)| (&**k.get_ref(), k.span(), v))
        .collect();
    out.sort_by_key(|(_, span, _)| span.start);
    out
}

fn integer(v: &DeValue<'_>) -> Option<i64> {
    match v {
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok(),
        _ => None,
    }
}

fn number(v: &DeValue<'_>) -> Option<f64> {
    match v {
        DeValue::Integer(_) => integer(v).map(|n| n as f64),
        DeValue::Float(f) => f.as_str().parse::<f64>().ok(),
        _ => None,
    }
}

/// A finite number (an integer or a float).
fn finite_number(body: &TomlBody, what: &str, v: &Spanned<DeValue<'_>>) -> Res<f64> {
    match number(v.get_ref()) {
        Some(x) if x.is_finite() => Ok(x),
        Some(x) => body.fail(
            &v.span(),
            format!("{what}: expected a finite number, found {}", num(x)),
        ),
        None => body.fail(
            &v.span(),
            format!(
                "{what}: expected a number, found {}",
                v.get_ref().type_str()
            ),
        ),
    }
}

fn boolean(body: &TomlBody, what: &str, v: &Spanned<DeValue<'_>>) -> Res<bool> {
    match v.get_ref() {
        DeValue::Boolean(b) => Ok(*b),
        other => body.fail(
            &v.span(),
            format!("{what}: expected true or false, found {}", other.type_str()),
        ),
    }
}

fn string<'t>(body: &TomlBody, what: &str, v: &'t Spanned<DeValue<'_>>) -> Res<&'t str> {
    match v.get_ref() {
        DeValue::String(s) => Ok(s),
        other => body.fail(
            &v.span(),
            format!("{what}: expected a string, found {}", other.type_str()),
        ),
    }
}

fn nonempty_string(body: &TomlBody, what: &str, v: &Spanned<DeValue<'_>>) -> Res<String> {
    let s = string(body, what, v)?;
    if s.trim().is_empty() {
        return body.fail(&v.span(), format!("{what}: must not be empty"));
    }
    Ok(s.to_string())
}

fn array<'t, 'i>(
    body: &TomlBody,
    what: &str,
    expected: &str,
    v: &'t Spanned<DeValue<'i>>,
) -> Res<&'t DeArray<'i>> {
    match v.get_ref() {
        DeValue::Array(a) => Ok(a),
        other => body.fail(
            &v.span(),
            format!("{what}: expected {expected}, found {}", other.type_str()),
        ),
    }
}

/// A whole number at least `min`.
fn count(body: &TomlBody, what: &str, min: i64, v: &Spanned<DeValue<'_>>) -> Res<i64> {
    match (v.get_ref(), integer(v.get_ref())) {
        (_, Some(n)) if n >= min => Ok(n),
        (_, Some(n)) => body.fail(
            &v.span(),
            format!("{what}: must be at least {min} (got {n})"),
        ),
        (DeValue::Integer(i), None) => {
            body.fail(&v.span(), format!("{what}: {} is too large", i.as_str()))
        }
        (other, None) => body.fail(
            &v.span(),
            format!(
                "{what}: expected a whole number, found {}",
                other.type_str()
            ),
        ),
    }
}

/// A count of values in a cell: at least 1, at most [`MAX_CELL_ELEMENTS`].
fn element_count(body: &TomlBody, what: &str, v: &Spanned<DeValue<'_>>) -> Res<usize> {
    let n = count(body, what, 1, v)?;
    match usize::try_from(n) {
        Ok(n) if n <= MAX_CELL_ELEMENTS => Ok(n),
        _ => body.fail(
            &v.span(),
            format!("{what}: {n} is more than the limit of {MAX_CELL_ELEMENTS} values in one cell"),
        ),
    }
}

fn unknown_key<T>(
    body: &TomlBody,
    what: &str,
    key: &str,
    span: &Range<usize>,
    expected: &[&str],
) -> Res<T> {
    body.fail(
        span,
        format!(
            "{what}: unknown key '{key}' (expected one of: {})",
            expected.join(", ")
        ),
    )
}

// ---------------------------------------------------------------------------------------------
// Front matter.
// ---------------------------------------------------------------------------------------------

const FRONT_KEYS: [&str; 4] = ["id", "order", "title", "summary"];

fn parse_front_matter(body: &TomlBody, open_line: usize, open_col: usize) -> Res<FrontMatter> {
    let table = body.parse("front matter", open_line, open_col)?;
    let mut id = None;
    let mut order = None;
    let mut title = None;
    let mut summary = None;
    for (key, span, value) in entries(&table) {
        match key {
            "id" => {
                let s = string(body, "id", value)?;
                let ok = !s.is_empty()
                    && s.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                    });
                if !ok {
                    return body.fail(
                        &value.span(),
                        format!("id: '{s}' is not a valid id (expected one or more of a-z, 0-9, '_', '-')"),
                    );
                }
                id = Some(s.to_string());
            }
            "order" => {
                order = Some(match (value.get_ref(), integer(value.get_ref())) {
                    (_, Some(n)) => n,
                    (DeValue::Integer(i), None) => {
                        return body
                            .fail(&value.span(), format!("order: {} is too large", i.as_str()));
                    }
                    (other, None) => {
                        return body.fail(
                            &value.span(),
                            format!("order: expected an integer, found {}", other.type_str()),
                        );
                    }
                });
            }
            "title" => title = Some(nonempty_string(body, "title", value)?),
            "summary" => summary = Some(nonempty_string(body, "summary", value)?),
            _ => return unknown_key(body, "front matter", key, &span, &FRONT_KEYS),
        }
    }
    let missing = |key: &str| {
        fail(
            open_line,
            open_col,
            format!(
                "front matter: missing '{key}' (expected all of: {})",
                FRONT_KEYS.join(", ")
            ),
        )
    };
    let Some(id) = id else { return missing("id") };
    let Some(order) = order else {
        return missing("order");
    };
    let Some(title) = title else {
        return missing("title");
    };
    let Some(summary) = summary else {
        return missing("summary");
    };
    Ok(FrontMatter {
        id,
        order,
        title,
        summary,
    })
}

// ---------------------------------------------------------------------------------------------
// Cells.
// ---------------------------------------------------------------------------------------------

fn parse_cell(
    op: OpKind,
    line: usize,
    col: usize,
    body: &TomlBody,
    table: &DeTable<'_>,
) -> Res<CellSpec> {
    let specs = op.params();
    let decls = op.inputs();
    let mut allowed = vec![
        "title", "input", "show", "shape", "sweep", "kernel", "roofline",
    ];
    if decls.len() > 1 {
        allowed.extend(["inputs", "shapes"]);
    }
    allowed.extend(specs.iter().map(|s| s.name));
    let mut title = None;
    let mut input = None;
    let mut show = None;
    let mut shape: Option<(Vec<usize>, Range<usize>)> = None;
    let mut sweep: Option<(SweepSpec, Range<usize>)> = None;
    let mut kernel: Option<KernelSetting> = None;
    let mut roofline: Option<(&Spanned<DeValue<'_>>, Range<usize>)> = None;
    let mut extra: Vec<(String, InputSpec, Range<usize>)> = Vec::new();
    let mut shapes: Vec<(String, Vec<usize>, Range<usize>)> = Vec::new();
    let mut given: Vec<Option<ParamControl>> = vec![None; specs.len()];
    for (key, span, value) in entries(table) {
        match key {
            "title" => title = Some(nonempty_string(body, "title", value)?),
            "input" => input = Some(parse_input(body, value)?),
            "show" => show = Some(parse_show(op, body, value)?),
            "shape" => shape = Some((parse_shape(body, "shape", value)?, value.span())),
            "sweep" => sweep = Some((parse_sweep(op, body, value)?, value.span())),
            "kernel" => kernel = Some(parse_kernel_setting(body, value)?),
            "roofline" => roofline = Some((value, span)),
            "inputs" | "shapes" if decls.len() > 1 => {
                let DeValue::Table(t) = value.get_ref() else {
                    return body.fail(
                        &value.span(),
                        format!(
                            "{key}: expected a table by input name, e.g. {key} = {{ {} = ... }}",
                            decls[1].name
                        ),
                    );
                };
                for (name, name_span, item) in entries(t) {
                    if !decls[1..].iter().any(|d| d.name == name) {
                        return body.fail(
                            &name_span,
                            format!(
                                "{key}: '{name}' is not an input of {op} (its other inputs: {})",
                                decls[1..]
                                    .iter()
                                    .map(|d| d.name)
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        );
                    }
                    if key == "inputs" {
                        extra.push((name.to_string(), parse_input(body, item)?, name_span));
                    } else {
                        let dims = parse_shape(body, &format!("shapes.{name}"), item)?;
                        shapes.push((name.to_string(), dims, item.span()));
                    }
                }
            }
            _ => {
                let slot = specs
                    .iter()
                    .zip(given.iter_mut())
                    .find(|(s, _)| s.name == key);
                let Some((spec, slot)) = slot else {
                    return body.fail(
                        &span,
                        format!(
                            "cell '{op}': '{key}' is not a parameter of {op} (expected one of: {})",
                            allowed.join(", ")
                        ),
                    );
                };
                *slot = Some(parse_param(op, spec, body, value)?);
            }
        }
    }
    let Some(input) = input else {
        return fail(
            line,
            col,
            format!(
                "cell '{op}': missing 'input' (expected input = [values] for one row, [[..], [..]] for several, or a table with normal, uniform or linspace)"
            ),
        );
    };
    let params: Vec<ParamControl> = specs
        .iter()
        .zip(given)
        .map(|(spec, g)| {
            g.unwrap_or_else(|| ParamControl {
                name: spec.name,
                default: op_default(spec),
                control: Control::Fixed,
            })
        })
        .collect();
    if let Some((dims, span)) = &shape {
        check_shape_holds(body, "shape", dims, input.len(), span)?;
    }
    if let Some((sw, span)) = &sweep {
        let control = params
            .iter()
            .find(|p| p.name == sw.param)
            .map(|p| p.control.clone());
        let Some(Control::Slider { min, max, .. }) = control else {
            return body.fail(
                span,
                format!(
                    "sweep: {} is not a slider in this cell (give it {{ min, max, default }} first)",
                    sw.param
                ),
            );
        };
        for (what, v) in [("from", sw.from), ("to", sw.to)] {
            if v < min || v > max {
                return body.fail(
                    span,
                    format!(
                        "sweep: {what} = {} is outside the {} slider's range [{}, {}]",
                        num(v),
                        sw.param,
                        num(min),
                        num(max)
                    ),
                );
            }
        }
    }
    for (name, dims, span) in &shapes {
        let Some((_, spec, _)) = extra.iter().find(|(n, _, _)| n == name) else {
            return body.fail(
                span,
                format!("shapes.{name}: there is no inputs.{name} to reshape"),
            );
        };
        check_shape_holds(body, &format!("shapes.{name}"), dims, spec.len(), span)?;
    }
    for decl in &decls[1..] {
        if !decl.optional && !extra.iter().any(|(n, _, _)| n == decl.name) {
            return fail(
                line,
                col,
                format!("cell '{op}': missing inputs.{} ({})", decl.name, decl.help),
            );
        }
    }
    let extra = extra
        .into_iter()
        .map(|(name, spec, _)| {
            let dims = shapes
                .iter()
                .find(|(n, _, _)| *n == name)
                .map(|(_, d, _)| d.clone());
            ExtraInput {
                name,
                input: spec,
                shape: dims,
            }
        })
        .collect();
    let show = show.unwrap_or_else(|| DEFAULT_SHOW.to_vec());
    let roofline = match roofline {
        Some((_, key_span)) if !show.contains(&View::Roofline) => {
            return body.fail(
                &key_span,
                "roofline: this cell does not show the roofline view (add \"roofline\" to show)",
            );
        }
        Some((value, _)) => Some(parse_roofline(op, kernel.as_ref(), body, value)?),
        None if show.contains(&View::Roofline) => Some(RooflineSpec {
            size: None,
            kernels: default_roofline_kernels(kernel.as_ref()),
        }),
        None => None,
    };
    Ok(CellSpec {
        line,
        op,
        title,
        input,
        shape: shape.map(|(d, _)| d),
        sweep: sweep.map(|(s, _)| s),
        extra,
        params,
        show,
        kernel,
        roofline,
    })
}

const KERNEL_NAMES: &str = "simple, fast";

/// "simple" or "fast", or an error at the value naming both.
fn kernel_variant(body: &TomlBody, what: &str, v: &Spanned<DeValue<'_>>) -> Res<KernelVariant> {
    let s = string(body, what, v)?;
    KernelVariant::from_name(s).or_else(|_| {
        body.fail(
            &v.span(),
            format!("{what}: '{s}' is not a kernel (expected one of: {KERNEL_NAMES})"),
        )
    })
}

/// A list of distinct kernels: `what = ["simple", "fast"]`, at least `min` of them.
fn kernel_list(
    body: &TomlBody,
    what: &str,
    min: usize,
    v: &Spanned<DeValue<'_>>,
) -> Res<Vec<KernelVariant>> {
    let a = array(
        body,
        what,
        "a list of kernels such as [\"simple\", \"fast\"]",
        v,
    )?;
    let mut list = Vec::new();
    for item in a.iter() {
        let k = kernel_variant(body, what, item)?;
        if list.contains(&k) {
            return body.fail(&item.span(), format!("{what}: '{k}' is listed twice"));
        }
        list.push(k);
    }
    if list.len() < min {
        return body.fail(
            &v.span(),
            format!("{what}: expected at least {min} of: {KERNEL_NAMES}"),
        );
    }
    Ok(list)
}

/// `kernel = "simple"` (fixed) or `kernel = { choices = ["simple", "fast"], default = "simple" }`.
fn parse_kernel_setting(body: &TomlBody, v: &Spanned<DeValue<'_>>) -> Res<KernelSetting> {
    match v.get_ref() {
        DeValue::String(_) => Ok(KernelSetting {
            default: kernel_variant(body, "kernel", v)?,
            choices: Vec::new(),
        }),
        DeValue::Table(t) => {
            let mut choices = None;
            let mut default = None;
            for (key, span, item) in entries(t) {
                match key {
                    "choices" => choices = Some(kernel_list(body, "kernel: choices", 2, item)?),
                    "default" => {
                        default = Some((kernel_variant(body, "kernel: default", item)?, item))
                    }
                    _ => {
                        return unknown_key(
                            body,
                            "kernel: choice",
                            key,
                            &span,
                            &["choices", "default"],
                        );
                    }
                }
            }
            let Some(choices) = choices else {
                return body.fail(
                    &v.span(),
                    "kernel: a choice needs choices (expected { choices = [\"simple\", \"fast\"], default = \"simple\" })",
                );
            };
            let default = match default {
                Some((d, _)) if choices.contains(&d) => d,
                Some((d, item)) => {
                    return body.fail(
                        &item.span(),
                        format!("kernel: default '{d}' is not one of the choices"),
                    );
                }
                None if choices.contains(&KernelVariant::default()) => KernelVariant::default(),
                None => choices[0],
            };
            Ok(KernelSetting { default, choices })
        }
        other => body.fail(
            &v.span(),
            format!(
                "kernel: expected \"simple\", \"fast\" or a choice {{ choices = [..], default = .. }}, found {}",
                other.type_str()
            ),
        ),
    }
}

/// The kernels a roofline measures when the lesson does not list them: the cell's choices, its
/// fixed kernel, or the default one.
fn default_roofline_kernels(kernel: Option<&KernelSetting>) -> Vec<KernelVariant> {
    match kernel {
        Some(k) if !k.choices.is_empty() => k.choices.clone(),
        Some(k) => vec![k.default],
        None => vec![KernelVariant::default()],
    }
}

/// `roofline = { size = [4096, 32000], kernels = ["simple", "fast"] }`, both keys optional.
fn parse_roofline(
    op: OpKind,
    kernel: Option<&KernelSetting>,
    body: &TomlBody,
    v: &Spanned<DeValue<'_>>,
) -> Res<RooflineSpec> {
    const KEYS: [&str; 2] = ["size", "kernels"];
    let DeValue::Table(t) = v.get_ref() else {
        return body.fail(
            &v.span(),
            format!(
                "roofline: expected {{ size = [4096, 32000], kernels = [\"simple\", \"fast\"] }}, found {}",
                v.get_ref().type_str()
            ),
        );
    };
    let mut spec = RooflineSpec {
        size: None,
        kernels: default_roofline_kernels(kernel),
    };
    for (key, span, item) in entries(t) {
        match key {
            "size" => {
                let dims = parse_shape(body, "roofline: size", item)?;
                let total = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
                if total.is_none_or(|n| n > crate::ops::MAX_ELEMENTS) {
                    return body.fail(
                        &item.span(),
                        format!(
                            "roofline: size {dims:?} holds more than the limit of {} values (2^29)",
                            crate::ops::MAX_ELEMENTS
                        ),
                    );
                }
                if let Err(why) = RooflineSpec::check_size(op) {
                    return body.fail(&span, format!("roofline: size: {why}"));
                }
                spec.size = Some(dims);
            }
            "kernels" => spec.kernels = kernel_list(body, "roofline: kernels", 1, item)?,
            _ => return unknown_key(body, "roofline", key, &span, &KEYS),
        }
    }
    Ok(spec)
}

/// `sweep = { param = "temperature", from = 10.0, to = 0.05, seconds = 8.0 }`.
fn parse_sweep(op: OpKind, body: &TomlBody, v: &Spanned<DeValue<'_>>) -> Res<SweepSpec> {
    const KEYS: [&str; 4] = ["param", "from", "to", "seconds"];
    let DeValue::Table(t) = v.get_ref() else {
        return body.fail(
            &v.span(),
            "sweep: expected { param = \"temperature\", from = 10.0, to = 0.05, seconds = 8.0 }",
        );
    };
    let (mut param, mut from, mut to, mut seconds) = (None, None, None, None);
    for (key, span, item) in entries(t) {
        match key {
            "param" => {
                let name = string(body, "sweep: param", item)?;
                let Some(spec) = op.params().iter().find(|s| s.name == name) else {
                    return body.fail(
                        &item.span(),
                        format!("sweep: {op} has no parameter '{name}'"),
                    );
                };
                param = Some(spec.name);
            }
            "from" => from = Some(finite_number(body, "sweep: from", item)?),
            "to" => to = Some(finite_number(body, "sweep: to", item)?),
            "seconds" => {
                let s = finite_number(body, "sweep: seconds", item)?;
                if !(s > 0.0 && s <= 600.0) {
                    return body.fail(
                        &item.span(),
                        format!("sweep: seconds = {} must be in (0, 600]", num(s)),
                    );
                }
                seconds = Some(s);
            }
            _ => return unknown_key(body, "sweep", key, &span, &KEYS),
        }
    }
    match (param, from, to, seconds) {
        (Some(param), Some(from), Some(to), Some(seconds)) => Ok(SweepSpec {
            param,
            from,
            to,
            seconds,
        }),
        _ => body.fail(
            &v.span(),
            format!("sweep: needs all of {}", KEYS.join(", ")),
        ),
    }
}

/// A shape: a non-empty list of positive whole numbers.
fn parse_shape(body: &TomlBody, what: &str, v: &Spanned<DeValue<'_>>) -> Res<Vec<usize>> {
    let a = array(body, what, "a list of sizes such as [1, 8, 2, 16]", v)?;
    if a.is_empty() || a.len() > 8 {
        return body.fail(&v.span(), format!("{what}: expected 1 to 8 sizes"));
    }
    let mut dims = Vec::new();
    for item in a.iter() {
        match item.get_ref() {
            DeValue::Integer(i) => match i.as_str().parse::<usize>() {
                Ok(d) if d > 0 => dims.push(d),
                _ => {
                    return body.fail(
                        &item.span(),
                        format!("{what}: sizes are whole numbers >= 1"),
                    );
                }
            },
            other => {
                return body.fail(
                    &item.span(),
                    format!(
                        "{what}: sizes are whole numbers >= 1, found {}",
                        other.type_str()
                    ),
                );
            }
        }
    }
    Ok(dims)
}

fn check_shape_holds(
    body: &TomlBody,
    what: &str,
    dims: &[usize],
    count: usize,
    span: &Range<usize>,
) -> Res<()> {
    let holds = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if holds != Some(count) {
        return body.fail(
            span,
            format!(
                "{what}: {dims:?} holds {} values but the input has {count}",
                holds.map_or("too many".to_string(), |h| h.to_string())
            ),
        );
    }
    Ok(())
}

/// The op's own default for a parameter (an absent optional float is `Absent`).
fn op_default(spec: &ParamSpec) -> ParamValue {
    match spec.kind {
        ParamKind::Float { default, .. } if default.is_nan() => ParamValue::Absent,
        ParamKind::Float { default, .. } => ParamValue::Float(default),
        ParamKind::Bool { default } => ParamValue::Bool(default),
        ParamKind::Choice { default, .. } => ParamValue::Choice(default.to_string()),
    }
}

fn parse_show(op: OpKind, body: &TomlBody, v: &Spanned<DeValue<'_>>) -> Res<Vec<View>> {
    let names = View::GENERIC
        .into_iter()
        .map(View::name)
        .chain(
            crate::views::all()
                .filter(|t| t.ops.contains(&op))
                .map(|t| t.name),
        )
        .collect::<Vec<_>>()
        .join(", ");
    let a = array(
        body,
        "show",
        &format!("a list of views such as [\"bars\", \"check\"] (views: {names})"),
        v,
    )?;
    if a.is_empty() {
        return body.fail(
            &v.span(),
            format!("show: the list is empty (expected at least one of: {names})"),
        );
    }
    let mut views = Vec::new();
    for item in a.iter() {
        let s = string(body, "show", item)?;
        let Some(view) = View::from_name(s) else {
            return body.fail(
                &item.span(),
                format!("show: unknown view '{s}' (expected one of: {names})"),
            );
        };
        if views.contains(&view) {
            return body.fail(&item.span(), format!("show: '{s}' is listed twice"));
        }
        if let View::Topic(name) = view
            && crate::views::find(name).is_some_and(|t| !t.ops.contains(&op))
        {
            return body.fail(
                &item.span(),
                format!("show: view '{s}' does not apply to {op} (views for {op}: {names})"),
            );
        }
        views.push(view);
    }
    Ok(views)
}

fn parse_param(
    op: OpKind,
    spec: &ParamSpec,
    body: &TomlBody,
    v: &Spanned<DeValue<'_>>,
) -> Res<ParamControl> {
    let name = spec.name;
    let fixed = |default| {
        Ok(ParamControl {
            name,
            default,
            control: Control::Fixed,
        })
    };
    match (spec.kind, v.get_ref()) {
        (
            ParamKind::Float {
                min, max, integer, ..
            },
            DeValue::Integer(_) | DeValue::Float(_),
        ) => {
            let x = finite_number(body, name, v)?;
            if integer && x.fract() != 0.0 {
                return body.fail(
                    &v.span(),
                    format!("{name}: {} is not a whole number", num(x)),
                );
            }
            if x < min || x > max {
                return body.fail(
                    &v.span(),
                    format!(
                        "{name}: {} is outside the range {op} accepts [{}, {}]",
                        num(x),
                        num(min),
                        num(max)
                    ),
                );
            }
            fixed(ParamValue::Float(x))
        }
        (
            ParamKind::Float {
                min,
                max,
                default,
                log_scale,
                ..
            },
            DeValue::Table(t),
        ) => {
            parse_slider(op, name, (min, max, default, log_scale), body, v, t)
        }
        (ParamKind::Float { .. }, other) => body.fail(
            &v.span(),
            format!(
                "{name}: expected a number or a slider {{ min, max, default, log }}, found {}",
                other.type_str()
            ),
        ),
        (ParamKind::Bool { .. }, DeValue::Boolean(b)) => fixed(ParamValue::Bool(*b)),
        (ParamKind::Bool { default }, DeValue::Table(t)) => {
            let mut value = default;
            for (key, span, item) in entries(t) {
                match key {
                    "default" => value = boolean(body, &format!("{name}: default"), item)?,
                    _ => return unknown_key(body, &format!("{name}: toggle"), key, &span, &["default"]),
                }
            }
            Ok(ParamControl {
                name,
                default: ParamValue::Bool(value),
                control: Control::Toggle,
            })
        }
        (ParamKind::Bool { .. }, other) => body.fail(
            &v.span(),
            format!(
                "{name}: expected true, false or a toggle {{ default = true }}, found {}",
                other.type_str()
            ),
        ),
        (ParamKind::Choice { choices, .. }, DeValue::String(s)) => {
            if !choices.contains(&&**s) {
                return body.fail(
                    &v.span(),
                    format!("{name}: '{s}' is not a choice of {op} (expected one of: {})", choices.join(", ")),
                );
            }
            fixed(ParamValue::Choice(s.to_string()))
        }
        (ParamKind::Choice { choices, default }, DeValue::Table(t)) => {
            parse_choice(op, name, choices, default, body, v, t)
        }
        (ParamKind::Choice { .. }, other) => body.fail(
            &v.span(),
            format!(
                "{name}: expected a string or a choice {{ choices = [..], default = .. }}, found {}",
                other.type_str()
            ),
        ),
    }
}

/// A slider `{ min, max, default, log }` inside the op's bounds `(min, max, default, log_scale)`.
fn parse_slider(
    op: OpKind,
    name: &'static str,
    (op_min, op_max, op_default, log_hint): (f64, f64, f64, bool),
    body: &TomlBody,
    v: &Spanned<DeValue<'_>>,
    t: &DeTable<'_>,
) -> Res<ParamControl> {
    const KEYS: [&str; 4] = ["min", "max", "default", "log"];
    let mut min = None;
    let mut max = None;
    let mut default = None;
    let mut log = None;
    for (key, span, item) in entries(t) {
        match key {
            "min" => min = Some((finite_number(body, &format!("{name}: min"), item)?, span)),
            "max" => max = Some((finite_number(body, &format!("{name}: max"), item)?, span)),
            "default" => {
                default = Some((
                    finite_number(body, &format!("{name}: default"), item)?,
                    span,
                ));
            }
            "log" => log = Some(boolean(body, &format!("{name}: log"), item)?),
            _ => return unknown_key(body, &format!("{name}: slider"), key, &span, &KEYS),
        }
    }
    let Some((lo, lo_span)) = min else {
        return body.fail(
            &v.span(),
            format!("{name}: a slider needs min (expected {{ min, max, default, log }})"),
        );
    };
    let Some((hi, hi_span)) = max else {
        return body.fail(
            &v.span(),
            format!("{name}: a slider needs max (expected {{ min, max, default, log }})"),
        );
    };
    if lo >= hi {
        return body.fail(
            &lo_span,
            format!("{name}: min {} must be < max {}", num(lo), num(hi)),
        );
    }
    let log_on = log.unwrap_or(log_hint);
    if log_on && lo <= 0.0 {
        let hint = if log.is_none() {
            format!(" (the {name} slider is logarithmic unless log = false)")
        } else {
            String::new()
        };
        return body.fail(
            &lo_span,
            format!("{name}: min {} must be > 0 for a log slider{hint}", num(lo)),
        );
    }
    if lo < op_min {
        return body.fail(
            &lo_span,
            format!(
                "{name}: min {} is below the smallest value {op} accepts ({})",
                num(lo),
                num(op_min)
            ),
        );
    }
    if hi > op_max {
        return body.fail(
            &hi_span,
            format!(
                "{name}: max {} is above the largest value {op} accepts ({})",
                num(hi),
                num(op_max)
            ),
        );
    }
    let value = match default {
        Some((d, span)) => {
            if d < lo || d > hi {
                return body.fail(
                    &span,
                    format!(
                        "{name}: default {} must lie between min {} and max {}",
                        num(d),
                        num(lo),
                        num(hi)
                    ),
                );
            }
            d
        }
        None if op_default.is_finite() && lo <= op_default && op_default <= hi => op_default,
        None => {
            return body.fail(
                &v.span(),
                format!(
                    "{name}: the slider needs a default (expected default = a value between {} and {})",
                    num(lo),
                    num(hi)
                ),
            );
        }
    };
    Ok(ParamControl {
        name,
        default: ParamValue::Float(value),
        control: Control::Slider {
            min: lo,
            max: hi,
            log: log_on,
        },
    })
}

/// A choice `{ choices = [..], default = .. }` among the op's choices.
fn parse_choice(
    op: OpKind,
    name: &'static str,
    op_choices: &[&str],
    op_default: &str,
    body: &TomlBody,
    v: &Spanned<DeValue<'_>>,
    t: &DeTable<'_>,
) -> Res<ParamControl> {
    let mut choices: Option<Vec<String>> = None;
    let mut default = None;
    for (key, span, item) in entries(t) {
        match key {
            "choices" => {
                let what = format!("{name}: choices");
                let a = array(body, &what, "a list of strings", item)?;
                let mut list: Vec<String> = Vec::new();
                for c in a.iter() {
                    let s = string(body, &what, c)?;
                    if !op_choices.contains(&s) {
                        return body.fail(
                            &c.span(),
                            format!(
                                "{name}: '{s}' is not a choice of {op} (expected a subset of: {})",
                                op_choices.join(", ")
                            ),
                        );
                    }
                    if list.iter().any(|l| l == s) {
                        return body.fail(&c.span(), format!("{name}: '{s}' is listed twice"));
                    }
                    list.push(s.to_string());
                }
                if list.len() < 2 {
                    let fix = match list.first() {
                        Some(only) => format!("; to fix it, write {name} = \"{only}\""),
                        None => String::new(),
                    };
                    return body.fail(
                        &item.span(),
                        format!("{name}: a choice needs at least 2 options{fix}"),
                    );
                }
                choices = Some(list);
            }
            "default" => default = Some((string(body, &format!("{name}: default"), item)?, span)),
            _ => {
                return unknown_key(
                    body,
                    &format!("{name}: choice"),
                    key,
                    &span,
                    &["choices", "default"],
                );
            }
        }
    }
    let Some(choices) = choices else {
        return body.fail(
            &v.span(),
            format!("{name}: a choice needs choices (expected {{ choices = [..], default = .. }})"),
        );
    };
    let value = match default {
        Some((d, span)) => {
            if !choices.iter().any(|c| c == d) {
                return body.fail(
                    &span,
                    format!(
                        "{name}: default '{d}' is not one of the choices (expected one of: {})",
                        choices.join(", ")
                    ),
                );
            }
            d.to_string()
        }
        None if choices.iter().any(|c| c == op_default) => op_default.to_string(),
        None => {
            return body.fail(
                &v.span(),
                format!(
                    "{name}: the choice needs a default (expected default = one of: {})",
                    choices.join(", ")
                ),
            );
        }
    };
    Ok(ParamControl {
        name,
        default: ParamValue::Choice(value),
        control: Control::Choice { choices },
    })
}

// ---------------------------------------------------------------------------------------------
// Inputs.
// ---------------------------------------------------------------------------------------------

/// Values a learner types into a cell's input field (`[2.0, 1.0]`, `[[1, 2], [3, 4]]`), held to the
/// same rules as a lesson's `input = [...]`; TOML's `nan`, `inf`, `-inf` are accepted too. An error
/// says what is wrong and at which character of the typed text.
pub fn parse_typed_values(text: &str) -> Result<Vec<Vec<f32>>, String> {
    const KEY: &str = "v = ";
    let body = TomlBody {
        text: format!("{KEY}{text}"),
        first_line: 1,
    };
    let at = |fail: Fail| {
        let message = fail
            .message
            .strip_prefix("input: ")
            .unwrap_or(&fail.message)
            .to_string();
        format!(
            "{message} (at character {})",
            fail.column.saturating_sub(KEY.len()).max(1)
        )
    };
    let table = match DeTable::parse(&body.text) {
        Ok(t) => t.into_inner(),
        Err(e) => {
            return Err(format!(
                "not a list of numbers: {}",
                e.message().trim().replace('\n', " ")
            ));
        }
    };
    let Some((_, v)) = table.iter().next() else {
        return Err("expected a list of numbers".into());
    };
    let DeValue::Array(a) = v.get_ref() else {
        return Err(format!(
            "expected a list of numbers, found {}",
            v.get_ref().type_str()
        ));
    };
    match parse_values(&body, v, a, Literals::Accepted).map_err(at)? {
        InputSpec::Values(rows) => Ok(rows),
        _ => Err("expected a list of numbers".into()),
    }
}

fn parse_input(body: &TomlBody, v: &Spanned<DeValue<'_>>) -> Res<InputSpec> {
    match v.get_ref() {
        DeValue::Array(a) => parse_values(body, v, a, Literals::Refused),
        DeValue::Table(t) => parse_generated(body, v, t),
        other => body.fail(
            &v.span(),
            format!(
                "input: expected values [1.0, 2.0], rows [[1.0, 2.0], [3.0, 4.0]] or a table with normal, uniform or linspace, found {}",
                other.type_str()
            ),
        ),
    }
}

fn too_many<T>(body: &TomlBody, span: &Range<usize>) -> Res<T> {
    body.fail(
        span,
        format!("input: more than {MAX_CELL_ELEMENTS} values (the limit for one cell)"),
    )
}

/// Whether TOML's own `nan`/`inf` literals count as input values. A lesson spells them as strings
/// (so an author's typo such as `inf` for a variable name cannot pass); a learner typing into a cell
/// may write them either way.
#[derive(Clone, Copy, PartialEq)]
enum Literals {
    Refused,
    Accepted,
}

fn parse_values(
    body: &TomlBody,
    v: &Spanned<DeValue<'_>>,
    a: &DeArray<'_>,
    literals: Literals,
) -> Res<InputSpec> {
    if a.is_empty() {
        return body.fail(
            &v.span(),
            "input: the list is empty (expected at least one value)",
        );
    }
    let nested = a.iter().filter(|e| e.get_ref().is_array()).count();
    if nested == 0 {
        if a.len() > MAX_CELL_ELEMENTS {
            return too_many(body, &v.span());
        }
        let row = a
            .iter()
            .map(|x| input_value(body, x, literals))
            .collect::<Res<Vec<f32>>>()?;
        return Ok(InputSpec::Values(vec![row]));
    }
    let mut rows: Vec<Vec<f32>> = Vec::new();
    let mut total = 0usize;
    let mut width = None;
    for (i, item) in a.iter().enumerate() {
        let DeValue::Array(row) = item.get_ref() else {
            return body.fail(
                &item.span(),
                "input: mixes values and rows (expected all values [1.0, 2.0] or all rows [[1.0, 2.0], [3.0, 4.0]])",
            );
        };
        if row.is_empty() {
            return body.fail(&item.span(), format!("input: row {} is empty", i + 1));
        }
        if let Some(w) = width
            && row.len() != w
        {
            return body.fail(
                &item.span(),
                format!(
                    "input: row {} has {} values but row 1 has {w} (rows must be of equal length)",
                    i + 1,
                    row.len()
                ),
            );
        }
        width = Some(row.len());
        total = total.saturating_add(row.len());
        if total > MAX_CELL_ELEMENTS {
            return too_many(body, &v.span());
        }
        rows.push(
            row.iter()
                .map(|x| input_value(body, x, literals))
                .collect::<Res<Vec<f32>>>()?,
        );
    }
    Ok(InputSpec::Values(rows))
}

/// One input value: a number that fits an f32, or "nan", "inf", "-inf".
fn input_value(body: &TomlBody, v: &Spanned<DeValue<'_>>, literals: Literals) -> Res<f32> {
    const SPECIAL: &str = "write NaN and infinities as the strings \"nan\", \"inf\", \"-inf\"";
    match v.get_ref() {
        DeValue::String(s) => match &**s {
            "nan" => Ok(f32::NAN),
            "inf" | "+inf" => Ok(f32::INFINITY),
            "-inf" => Ok(f32::NEG_INFINITY),
            _ => body.fail(
                &v.span(),
                format!("input: '{s}' is not a number ({SPECIAL})"),
            ),
        },
        DeValue::Integer(_) | DeValue::Float(_) => match number(v.get_ref()) {
            Some(x) if x.is_finite() => {
                let f = x as f32;
                if f.is_finite() {
                    Ok(f)
                } else {
                    body.fail(
                        &v.span(),
                        format!(
                            "input: {} is too large for f32 (largest finite: {}; {SPECIAL})",
                            num(x),
                            num(f32::MAX)
                        ),
                    )
                }
            }
            Some(x) if literals == Literals::Accepted => Ok(x as f32),
            Some(x) => body.fail(&v.span(), format!("input: found {}; {SPECIAL}", num(x))),
            None => body.fail(&v.span(), "input: not a number that fits an f64"),
        },
        other => body.fail(
            &v.span(),
            format!(
                "input: expected a number, found {} ({SPECIAL})",
                other.type_str()
            ),
        ),
    }
}

/// A finite number that is also finite as an f32.
fn f32_number(body: &TomlBody, what: &str, v: &Spanned<DeValue<'_>>) -> Res<f32> {
    let x = finite_number(body, what, v)?;
    let f = x as f32;
    if !f.is_finite() {
        return body.fail(
            &v.span(),
            format!("{what}: {} is too large for f32", num(x)),
        );
    }
    Ok(f)
}

/// `[a, b]`: two numbers that fit an f32.
fn pair(body: &TomlBody, what: &str, v: &Spanned<DeValue<'_>>) -> Res<(f32, f32)> {
    let a = array(body, what, "two numbers [A, B]", v)?;
    match &**a {
        [x, y] => Ok((f32_number(body, what, x)?, f32_number(body, what, y)?)),
        _ => body.fail(
            &v.span(),
            format!(
                "{what}: expected two numbers [A, B], found {} values",
                a.len()
            ),
        ),
    }
}

fn parse_generated(body: &TomlBody, v: &Spanned<DeValue<'_>>, t: &DeTable<'_>) -> Res<InputSpec> {
    const FORMS: [&str; 3] = ["normal", "uniform", "linspace"];
    let all = entries(t);
    let forms: Vec<&Entry<'_, '_>> = all.iter().filter(|(k, _, _)| FORMS.contains(k)).collect();
    let form = match forms.as_slice() {
        [] => {
            return body.fail(
                &v.span(),
                "input: a table input needs one of normal = SCALE, uniform = [LO, HI], linspace = [FROM, TO]",
            );
        }
        [one] => *one,
        [_, second, ..] => {
            return body.fail(
                &second.1,
                "input: give only one of normal, uniform, linspace",
            );
        }
    };
    let (form_name, _, form_value) = form;
    let allowed: &[&str] = match *form_name {
        "linspace" => &["linspace", "count"],
        "normal" => &["normal", "rows", "cols", "seed"],
        _ => &["uniform", "rows", "cols", "seed"],
    };
    let mut rows = None;
    let mut cols = None;
    let mut seed = None;
    let mut count = None;
    for (key, span, item) in &all {
        if !allowed.contains(key) {
            return body.fail(
                span,
                format!(
                    "input: '{key}' does not belong in a {form_name} input (expected: {})",
                    allowed.join(", ")
                ),
            );
        }
        match *key {
            "rows" => rows = Some(element_count(body, "input: rows", item)?),
            "cols" => cols = Some(element_count(body, "input: cols", item)?),
            "count" => count = Some(element_count(body, "input: count", item)?),
            "seed" => seed = Some(count_u64(body, item)?),
            _ => {}
        }
    }
    if *form_name == "linspace" {
        let (from, to) = pair(body, "input: linspace", form_value)?;
        let Some(count) = count else {
            return body.fail(
                &v.span(),
                "input: a linspace input needs count (how many values, at least 1)",
            );
        };
        return Ok(InputSpec::Linspace { from, to, count });
    }
    let rows = rows.unwrap_or(1);
    let Some(cols) = cols else {
        return body.fail(
            &v.span(),
            format!(
                "input: a {form_name} input needs cols (the number of values per row, at least 1)"
            ),
        );
    };
    match rows.checked_mul(cols) {
        Some(n) if n <= MAX_CELL_ELEMENTS => {}
        _ => {
            return body.fail(
                &v.span(),
                format!("input: {rows} x {cols} values is more than the limit of {MAX_CELL_ELEMENTS} for one cell"),
            );
        }
    }
    let seed = seed.unwrap_or(0);
    if *form_name == "normal" {
        let scale = f32_number(body, "input: normal", form_value)?;
        if scale <= 0.0 {
            return body.fail(
                &form_value.span(),
                format!(
                    "input: normal = {} must be > 0 (it is the standard deviation)",
                    num(scale)
                ),
            );
        }
        Ok(InputSpec::Normal {
            scale,
            rows,
            cols,
            seed,
        })
    } else {
        let (lo, hi) = pair(body, "input: uniform", form_value)?;
        if lo >= hi || !(hi - lo).is_finite() {
            return body.fail(
                &form_value.span(),
                format!(
                    "input: uniform = [{}, {}] needs LO < HI with a finite width",
                    num(lo),
                    num(hi)
                ),
            );
        }
        Ok(InputSpec::Uniform {
            lo,
            hi,
            rows,
            cols,
            seed,
        })
    }
}

fn count_u64(body: &TomlBody, v: &Spanned<DeValue<'_>>) -> Res<u64> {
    let n = count(body, "input: seed", 0, v)?;
    u64::try_from(n).or_else(|_| body.fail(&v.span(), "input: seed must be >= 0"))
}

// ---------------------------------------------------------------------------------------------
// Kernel and predict blocks.
// ---------------------------------------------------------------------------------------------

/// Topics with both a CUDA and a WGSL source.
fn kernel_topics() -> Vec<&'static str> {
    crate::sources::cuda_files()
        .map(|(t, _, _)| t)
        .filter(|t| crate::sources::wgsl(t).is_some())
        .collect()
}

fn parse_kernel(line: usize, col: usize, body: &TomlBody, table: &DeTable<'_>) -> Res<KernelSpec> {
    const KEYS: [&str; 4] = ["topic", "marks", "cuda_marks", "wgsl_marks"];
    let mut topic = None;
    let mut mark_values = Vec::new();
    for (key, span, value) in entries(table) {
        match key {
            "topic" => {
                let t = string(body, "kernel: topic", value)?;
                if !kernel_topics().contains(&t) {
                    return body.fail(
                        &value.span(),
                        format!(
                            "kernel: unknown topic '{t}' (expected one of: {})",
                            kernel_topics().join(", ")
                        ),
                    );
                }
                topic = Some(t.to_string());
            }
            "marks" | "cuda_marks" | "wgsl_marks" => mark_values.push((key, value)),
            _ => return unknown_key(body, "kernel", key, &span, &KEYS),
        }
    }
    let Some(topic) = topic else {
        return fail(
            line,
            col,
            format!(
                "kernel: missing 'topic' (expected topic = one of: {})",
                kernel_topics().join(", ")
            ),
        );
    };
    let mut spec = KernelSpec {
        line,
        topic,
        marks: Vec::new(),
        cuda_marks: Vec::new(),
        wgsl_marks: Vec::new(),
    };
    if mark_values.is_empty() {
        return Ok(spec);
    }
    let topic_files = |t: &str| {
        let cu = crate::sources::cuda(t).map(|s| (format!("kernels/{t}.cu"), s));
        let wgsl = crate::sources::wgsl(t).map(|s| (format!("shaders/{t}.wgsl"), s));
        (cu, wgsl)
    };
    let (Some((cu_file, cu)), Some((wgsl_file, wgsl))) = topic_files(&spec.topic) else {
        return fail(
            line,
            col,
            format!("kernel: no sources for topic '{}'", spec.topic),
        );
    };
    for (key, value) in mark_values {
        let what = format!("kernel: {key}");
        let a = array(
            body,
            &what,
            "a list of strings found in the kernel sources",
            value,
        )?;
        let mut marks = Vec::new();
        for item in a.iter() {
            let mark = string(body, &what, item)?;
            if mark.trim().is_empty() {
                return body.fail(&item.span(), "kernel: a mark must not be empty");
            }
            let in_cu = cu.lines().any(|l| l.contains(mark));
            let in_wgsl = wgsl.lines().any(|l| l.contains(mark));
            let missing = match (key, in_cu, in_wgsl) {
                ("cuda_marks", false, _) => Some(cu_file.to_string()),
                ("wgsl_marks", _, false) => Some(wgsl_file.to_string()),
                ("marks", false, false) => Some(format!("{cu_file} or {wgsl_file}")),
                ("marks", false, true) => Some(format!(
                    "{cu_file} (it is in {wgsl_file}; a mark must be in both, or in wgsl_marks)"
                )),
                ("marks", true, false) => Some(format!(
                    "{wgsl_file} (it is in {cu_file}; a mark must be in both, or in cuda_marks)"
                )),
                _ => None,
            };
            if let Some(where_) = missing {
                return body.fail(
                    &item.span(),
                    format!("kernel: mark '{mark}' is not found on any line of {where_}"),
                );
            }
            marks.push(mark.to_string());
        }
        match key {
            "cuda_marks" => spec.cuda_marks = marks,
            "wgsl_marks" => spec.wgsl_marks = marks,
            _ => spec.marks = marks,
        }
    }
    Ok(spec)
}

fn parse_predict(
    line: usize,
    col: usize,
    body: &TomlBody,
    table: &DeTable<'_>,
) -> Res<PredictSpec> {
    const KEYS: [&str; 4] = ["question", "choices", "answer", "explain"];
    let mut question = None;
    let mut choices: Option<(Vec<String>, Range<usize>)> = None;
    let mut answer = None;
    let mut explain = None;
    for (key, span, value) in entries(table) {
        match key {
            "question" => question = Some(nonempty_string(body, "predict: question", value)?),
            "explain" => explain = Some(nonempty_string(body, "predict: explain", value)?),
            "answer" => answer = Some((count(body, "predict: answer", 1, value)?, value.span())),
            "choices" => {
                let a = array(body, "predict: choices", "a list of 2 to 6 strings", value)?;
                if a.len() < 2 || a.len() > 6 {
                    return body.fail(
                        &value.span(),
                        format!("predict: expected 2 to 6 choices, found {}", a.len()),
                    );
                }
                let mut list: Vec<String> = Vec::new();
                for item in a.iter() {
                    let s = nonempty_string(body, "predict: choices", item)?;
                    if list.contains(&s) {
                        return body.fail(
                            &item.span(),
                            format!("predict: choice '{s}' is listed twice"),
                        );
                    }
                    list.push(s);
                }
                choices = Some((list, value.span()));
            }
            _ => return unknown_key(body, "predict", key, &span, &KEYS),
        }
    }
    let missing = |key: &str| {
        fail(
            line,
            col,
            format!(
                "predict: missing '{key}' (expected all of: {})",
                KEYS.join(", ")
            ),
        )
    };
    let Some(question) = question else {
        return missing("question");
    };
    let Some((choices, _)) = choices else {
        return missing("choices");
    };
    let Some((answer, answer_span)) = answer else {
        return missing("answer");
    };
    let Some(explain) = explain else {
        return missing("explain");
    };
    let index = usize::try_from(answer - 1)
        .ok()
        .filter(|&i| i < choices.len());
    let Some(index) = index else {
        return body.fail(
            &answer_span,
            format!(
                "predict: answer {answer} is out of range (expected 1 to {}, the number of the right choice)",
                choices.len()
            ),
        );
    };
    Ok(PredictSpec {
        line,
        question,
        choices,
        answer: index,
        explain,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
    const FRONT: &str =
        "+++\nid = \"t\"\norder = 1\ntitle = \"T\"\nsummary = \"S\"\n+++\n\n## Step\n";

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

    // ---- happy paths -------------------------------------------------------------------------

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
        assert_eq!((p.line, p.answer, p.choices.len()), (27, 1, 3));
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
    fn every_input_form() {
        assert_eq!(
            input("input = [1, -2.5, 1_000.5]"),
            InputSpec::Values(vec![vec![1.0, -2.5, 1000.5]])
        );
        assert_eq!(
            input("input = [[1.0, 2.0], [3.0, 4.0]]"),
            InputSpec::Values(vec![vec![1.0, 2.0], vec![3.0, 4.0]])
        );
        let InputSpec::Values(v) = input(r#"input = ["nan", "inf", "-inf", "+inf", 0.0]"#) else {
            panic!()
        };
        assert!(v[0][0].is_nan());
        assert_eq!(
            &v[0][1..],
            &[f32::INFINITY, f32::NEG_INFINITY, f32::INFINITY, 0.0]
        );
        assert_eq!(
            input("input = { normal = 3.0, rows = 4, cols = 16, seed = 7 }"),
            InputSpec::Normal {
                scale: 3.0,
                rows: 4,
                cols: 16,
                seed: 7
            }
        );
        assert_eq!(
            input("input = { uniform = [0, 1.0], cols = 12 }"),
            InputSpec::Uniform {
                lo: 0.0,
                hi: 1.0,
                rows: 1,
                cols: 12,
                seed: 0
            }
        );
        assert_eq!(
            input("input = { linspace = [-10.0, 10.0], count = 201 }"),
            InputSpec::Linspace {
                from: -10.0,
                to: 10.0,
                count: 201
            }
        );
        assert_eq!(
            input("[input]\nlinspace = [1, 1]\ncount = 1"),
            InputSpec::Linspace {
                from: 1.0,
                to: 1.0,
                count: 1
            }
        );
    }

    #[test]
    fn every_control_kind_and_defaults() {
        // Unmentioned: fixed at the op default.
        let c = cell("softmax", "input = [1.0]");
        assert_eq!(
            c.params,
            vec![
                ParamControl {
                    name: "temperature",
                    default: ParamValue::Float(1.0),
                    control: Control::Fixed
                },
                ParamControl {
                    name: "stable",
                    default: ParamValue::Bool(true),
                    control: Control::Fixed
                },
                ParamControl {
                    name: "dtype",
                    default: ParamValue::Choice("f32".into()),
                    control: Control::Fixed
                },
            ]
        );
        assert_eq!(c.title, None);
        // Plain values fix a parameter.
        let c = cell(
            "softmax",
            "input = [1.0]\ntemperature = 0.5\nstable = false\ndtype = \"bf16\"",
        );
        assert_eq!(
            c.param("temperature").unwrap().default,
            ParamValue::Float(0.5)
        );
        assert_eq!(c.param("stable").unwrap().default, ParamValue::Bool(false));
        assert_eq!(
            c.param("dtype").unwrap().default,
            ParamValue::Choice("bf16".into())
        );
        assert!(c.params.iter().all(|p| p.control == Control::Fixed));
        // Slider log follows the op's hint unless given; default falls back to the op's.
        let c = cell(
            "log_softmax",
            "input = [1.0]\ntemperature = { min = 0.5, max = 2 }",
        );
        assert_eq!(
            c.param("temperature").unwrap().control,
            Control::Slider {
                min: 0.5,
                max: 2.0,
                log: true
            }
        );
        assert_eq!(
            c.param("temperature").unwrap().default,
            ParamValue::Float(1.0)
        );
        let c = cell(
            "softmax",
            "input = [1.0]\ntemperature = { min = 0.5, max = 2, default = 1.5, log = false }",
        );
        assert_eq!(
            c.param("temperature").unwrap().control,
            Control::Slider {
                min: 0.5,
                max: 2.0,
                log: false
            }
        );
        let c = cell(
            "logit",
            "input = [0.5]\neps = { min = 0, max = 0.1, default = 0.01 }",
        );
        assert_eq!(
            c.param("eps").unwrap(),
            &ParamControl {
                name: "eps",
                default: ParamValue::Float(0.01),
                control: Control::Slider {
                    min: 0.0,
                    max: 0.1,
                    log: false
                },
            }
        );
        let c = cell("logit", "input = [0.5]\neps = 1e-6");
        assert_eq!(c.param("eps").unwrap().default, ParamValue::Float(1e-6));
        // A toggle without a default starts at the op's; a choice too when the op's is offered.
        let c = cell(
            "softmax",
            "input = [1.0]\nstable = {}\ndtype = { choices = [\"f32\", \"bf16\"] }",
        );
        assert_eq!(c.param("stable").unwrap().default, ParamValue::Bool(true));
        assert_eq!(c.param("stable").unwrap().control, Control::Toggle);
        assert_eq!(
            c.param("dtype").unwrap().default,
            ParamValue::Choice("f32".into())
        );
        // Dotted keys are TOML too.
        let c = cell(
            "softmax",
            "input = [1.0]\ntemperature.min = 0.5\ntemperature.max = 4.0",
        );
        assert_eq!(
            c.param("temperature").unwrap().control,
            Control::Slider {
                min: 0.5,
                max: 4.0,
                log: true
            }
        );
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
            "unknown block kind 'python' (expected one of: cell OP, kernel, predict, notes)",
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

    // ---- cell errors -------------------------------------------------------------------------

    #[test]
    fn sweeps_shapes_and_extra_inputs() {
        let c = cell(
            "softmax",
            "input = [1.0, 2.0, 3.0, 4.0]\nshape = [2, 2]\ntemperature = { min = 0.05, max = 10.0 }\nsweep = { param = \"temperature\", from = 10.0, to = 0.05, seconds = 8.0 }",
        );
        let sweep = c.sweep.clone().expect("a sweep");
        assert_eq!(
            (sweep.param, sweep.from, sweep.to, sweep.seconds),
            ("temperature", 10.0, 0.05, 8.0)
        );
        assert!(
            (sweep.value_at(0.5, true) - (10.0f64 * 0.05).sqrt()).abs() < 1e-12,
            "log-spaced"
        );
        assert_eq!(sweep.value_at(0.5, false), 5.025);
        assert_eq!(c.shape, Some(vec![2, 2]));
        assert_block_err(
            "cell softmax",
            "input = [1.0]\nsweep = { param = \"temperature\", from = 10.0, to = 0.05, seconds = 8.0 }",
            2,
            9,
            "sweep: temperature is not a slider in this cell",
        );
        assert_block_err(
            "cell softmax",
            "input = [1.0]\ntemperature = { min = 0.5, max = 2.0 }\nsweep = { param = \"temperature\", from = 10.0, to = 0.5, seconds = 8.0 }",
            3,
            9,
            "sweep: from = 10 is outside the temperature slider's range [0.5, 2]",
        );
        assert_block_err(
            "cell softmax",
            "input = [1.0]\ntemperature = { min = 0.5, max = 2.0 }\nsweep = { param = \"temperature\", from = 1.0, to = 0.5, seconds = 0.0 }",
            3,
            66,
            "seconds = 0 must be in (0, 600]",
        );
        assert_block_err(
            "cell softmax",
            "input = [1.0]\nsweep = { param = \"heat\", from = 1.0, to = 0.5, seconds = 1.0 }",
            2,
            19,
            "sweep: softmax has no parameter 'heat'",
        );
        assert_block_err(
            "cell softmax",
            "input = [1.0, 2.0, 3.0]\nshape = [2, 2]",
            2,
            9,
            "shape: [2, 2] holds 4 values but the input has 3",
        );
        assert_block_err(
            "cell softmax",
            "input = [1.0]\nshape = [0]",
            2,
            10,
            "shape: sizes are whole numbers >= 1",
        );
        assert_block_err(
            "cell softmax",
            "input = [1.0]\ninputs = { w = [1.0] }",
            2,
            1,
            "'inputs' is not a parameter of softmax",
        );
    }

    #[test]
    fn cell_key_errors() {
        assert_block_err(
            "cell softmax",
            "input = [1.0]\ntemprature = 1.0",
            2,
            1,
            "cell 'softmax': 'temprature' is not a parameter of softmax (expected one of: title, input, show, shape, sweep, kernel, roofline, temperature, stable, dtype)",
        );
        assert_block_err(
            "cell sigmoid",
            "input = [1.0]\n  [x]",
            2,
            4,
            "'x' is not a parameter of sigmoid (expected one of: title, input, show, shape, sweep, kernel, roofline, dtype)",
        );
        assert_err(
            &block("cell softmax", "title = \"x\""),
            9,
            1,
            "cell 'softmax': missing 'input'",
        );
        assert_err(
            &lesson("  ```cell softmax\n  ```\n"),
            9,
            3,
            "missing 'input'",
        );
        assert_block_err(
            "cell softmax",
            "input = [1.0]\ntitle = 3",
            2,
            9,
            "title: expected a string, found integer",
        );
        assert_block_err(
            "cell softmax",
            "input = [1.0]\ntitle = \"\"",
            2,
            9,
            "title: must not be empty",
        );
        // TOML syntax errors point into the body.
        let e = parse(&block("cell softmax", "input = [1.0]\ntemperature = = 2")).unwrap_err();
        assert_eq!(e.line, 11, "{e}");
        assert!(
            e.column >= 14 && e.message.starts_with("cell 'softmax': invalid TOML:"),
            "{e}"
        );
        let e = parse(&block("cell softmax", "input = [1.0]\ninput = [2.0]")).unwrap_err();
        assert_eq!((e.line, e.column), (11, 1), "{e}");
    }

    #[test]
    fn show_errors() {
        let c = |s: &str| format!("input = [1.0]\nshow = {s}");
        assert_block_err(
            "cell softmax",
            &c("\"bars\""),
            2,
            8,
            "show: expected a list of views",
        );
        assert_block_err("cell softmax", &c("[]"), 2, 8, "show: the list is empty");
        assert_block_err(
            "cell softmax",
            &c("[\"bars\", \"bar\"]"),
            2,
            17,
            "show: unknown view 'bar' (expected one of: bars, line, heatmap, table, check, roofline)",
        );
        assert_block_err(
            "cell softmax",
            &c("[\"line\", \"line\"]"),
            2,
            17,
            "show: 'line' is listed twice",
        );
        assert_block_err(
            "cell softmax",
            &c("[1]"),
            2,
            9,
            "show: expected a string, found integer",
        );
    }

    #[test]
    fn kernel_and_roofline_keys() {
        use crate::ops::KernelVariant::{Fast, Simple};
        // No kernel key: none set, no roofline.
        let c = cell("softmax", "input = [1.0]");
        assert_eq!((c.kernel.clone(), c.roofline.clone()), (None, None));
        // A fixed kernel.
        let c = cell("softmax", "input = [1.0]\nkernel = \"simple\"");
        assert_eq!(
            c.kernel,
            Some(KernelSetting {
                default: Simple,
                choices: vec![]
            })
        );
        // A choice; the default is the one written, else fast.
        let c = cell(
            "softmax",
            "input = [1.0]\nkernel = { choices = [\"simple\", \"fast\"], default = \"simple\" }",
        );
        let k = c.kernel.clone().unwrap();
        assert_eq!((k.default, k.choices), (Simple, vec![Simple, Fast]));
        let c = cell(
            "softmax",
            "input = [1.0]\nkernel = { choices = [\"simple\", \"fast\"] }",
        );
        assert_eq!(c.kernel.unwrap().default, Fast);
        // The roofline view without a roofline key measures the cell's kernels at its own input.
        let c = cell(
            "softmax",
            "input = [1.0]\nkernel = { choices = [\"simple\", \"fast\"] }\nshow = [\"roofline\", \"check\"]",
        );
        assert_eq!(c.show, vec![View::Roofline, View::Check]);
        assert_eq!(
            c.roofline,
            Some(RooflineSpec {
                size: None,
                kernels: vec![Simple, Fast]
            })
        );
        let c = cell(
            "softmax",
            "input = [1.0]\nkernel = \"simple\"\nshow = [\"roofline\"]",
        );
        assert_eq!(c.roofline.unwrap().kernels, vec![Simple]);
        let c = cell("sigmoid", "input = [1.0]\nshow = [\"roofline\"]");
        assert_eq!(c.roofline.unwrap().kernels, vec![Fast]);
        // Both keys given.
        let c = cell(
            "softmax",
            "input = [1.0]\nshow = [\"roofline\"]\nroofline = { size = [4096, 32000], kernels = [\"fast\", \"simple\"] }",
        );
        assert_eq!(
            c.roofline,
            Some(RooflineSpec {
                size: Some(vec![4096, 32000]),
                kernels: vec![Fast, Simple]
            })
        );
        // Cross-entropy's targets are made up at the size measured.
        let c = cell(
            "vocab_parallel_cross_entropy",
            "input = [[1.0, 2.0]]\ninputs = { targets = [1] }\nshow = [\"roofline\"]\nroofline = { size = [4096, 50304] }",
        );
        assert_eq!(c.roofline.unwrap().size, Some(vec![4096, 50304]));
    }

    #[test]
    fn small_roofline_shapes_keep_the_row() {
        let small = RooflineSpec::small_shape;
        assert_eq!(small(&[4096, 32000]), vec![32, 32000]);
        assert_eq!(small(&[16, 4096, 32, 128]), vec![1, 256, 32, 128]);
        assert_eq!(small(&[8192, 50304]), vec![16, 50304]);
        assert_eq!(small(&[8, 600]), vec![8, 600], "small shapes stay");
        assert_eq!(small(&[1 << 22]), vec![1 << 22], "a lone row is kept");
        assert_eq!(small(&[3, 1 << 22]), vec![1, 1 << 22]);
        for shape in [
            vec![4096, 32000],
            vec![16, 4096, 32, 128],
            vec![100, 100, 100],
        ] {
            let n: usize = small(&shape).iter().product();
            assert!(n <= RooflineSpec::SMALL_ELEMENTS, "{shape:?}");
        }
    }

    #[test]
    fn kernel_and_roofline_errors() {
        let c = |s: &str| format!("input = [1.0]\n{s}");
        assert_block_err(
            "cell softmax",
            &c("kernel = \"turbo\""),
            2,
            10,
            "kernel: 'turbo' is not a kernel (expected one of: simple, fast)",
        );
        assert_block_err(
            "cell softmax",
            &c("kernel = 1"),
            2,
            10,
            "kernel: expected \"simple\", \"fast\" or a choice",
        );
        assert_block_err(
            "cell softmax",
            &c("kernel = { choices = [\"simple\"] }"),
            2,
            22,
            "kernel: choices: expected at least 2 of: simple, fast",
        );
        assert_block_err(
            "cell softmax",
            &c("kernel = { choices = [\"simple\", \"simple\"] }"),
            2,
            33,
            "kernel: choices: 'simple' is listed twice",
        );
        assert_block_err(
            "cell softmax",
            &c("kernel = { choices = [\"simple\", \"fastest\"] }"),
            2,
            33,
            "kernel: choices: 'fastest' is not a kernel",
        );
        assert_block_err(
            "cell softmax",
            &c("kernel = { default = \"simple\" }"),
            2,
            10,
            "kernel: a choice needs choices",
        );
        assert_block_err(
            "cell softmax",
            &c("kernel = { choices = [\"simple\", \"fast\"], options = 1 }"),
            2,
            42,
            "kernel: choice: unknown key 'options' (expected one of: choices, default)",
        );
        // A roofline key on a cell that does not show the view.
        assert_block_err(
            "cell softmax",
            &c("roofline = { size = [4, 8] }"),
            2,
            1,
            "roofline: this cell does not show the roofline view (add \"roofline\" to show)",
        );
        let r = |s: &str| format!("input = [1.0]\nshow = [\"roofline\"]\n{s}");
        assert_block_err(
            "cell softmax",
            &r("roofline = [4, 8]"),
            3,
            12,
            "roofline: expected { size = [4096, 32000], kernels = [\"simple\", \"fast\"] }, found array",
        );
        assert_block_err(
            "cell softmax",
            &r("roofline = { sizes = [4, 8] }"),
            3,
            14,
            "roofline: unknown key 'sizes' (expected one of: size, kernels)",
        );
        assert_block_err(
            "cell softmax",
            &r("roofline = { size = [4, 0] }"),
            3,
            25,
            "roofline: size: sizes are whole numbers >= 1",
        );
        assert_block_err(
            "cell softmax",
            &r("roofline = { size = [65536, 65536] }"),
            3,
            21,
            "roofline: size [65536, 65536] holds more than the limit of 536870912 values (2^29)",
        );
        assert_block_err(
            "cell softmax",
            &r("roofline = { kernels = [] }"),
            3,
            24,
            "roofline: kernels: expected at least 1 of: simple, fast",
        );
        assert_block_err(
            "cell softmax",
            &r("roofline = { kernels = [\"fast\", \"slow\"] }"),
            3,
            33,
            "roofline: kernels: 'slow' is not a kernel (expected one of: simple, fast)",
        );
        // Ops whose other inputs cannot be made up at another size.
        assert_block_err(
            "cell linear",
            "input = [[1.0, 2.0]]\ninputs = { w = [[1.0, 2.0]] }\nshow = [\"roofline\"]\nroofline = { size = [4096, 4096] }",
            4,
            14,
            "roofline: size: linear needs its input 'w' at the size measured",
        );
        assert_block_err(
            "cell rope_freqs",
            "input = [1.0]\nshow = [\"roofline\"]\nroofline = { size = [4096] }",
            3,
            14,
            "input 'positions' holds integers",
        );
    }

    #[test]
    fn float_param_errors() {
        let c = |s: &str| format!("input = [1.0]\ntemperature = {s}");
        assert_block_err(
            "cell softmax",
            &c("\"hot\""),
            2,
            15,
            "temperature: expected a number or a slider { min, max, default, log }, found string",
        );
        assert_block_err(
            "cell softmax",
            &c("0"),
            2,
            15,
            "temperature: 0 is outside the range softmax accepts [0.001, 1000]",
        );
        assert_block_err(
            "cell softmax",
            &c("nan"),
            2,
            15,
            "temperature: expected a finite number, found NaN",
        );
        assert_block_err(
            "cell softmax",
            &c("{ min = 0.1, max = 2, step = 1 }"),
            2,
            37,
            "temperature: slider: unknown key 'step' (expected one of: min, max, default, log)",
        );
        assert_block_err(
            "cell softmax",
            &c("{ max = 2 }"),
            2,
            15,
            "temperature: a slider needs min",
        );
        assert_block_err(
            "cell softmax",
            &c("{ min = 0.1 }"),
            2,
            15,
            "temperature: a slider needs max",
        );
        assert_block_err(
            "cell softmax",
            &c("{ min = 2, max = 2 }"),
            2,
            17,
            "temperature: min 2 must be < max 2",
        );
        assert_block_err(
            "cell softmax",
            &c("{ min = 0, max = 2, log = true }"),
            2,
            17,
            "temperature: min 0 must be > 0 for a log slider",
        );
        assert_block_err(
            "cell softmax",
            &c("{ min = 0, max = 2 }"),
            2,
            17,
            "min 0 must be > 0 for a log slider (the temperature slider is logarithmic unless log = false)",
        );
        assert_block_err(
            "cell softmax",
            &c("{ min = 0, max = 2, log = false }"),
            2,
            17,
            "temperature: min 0 is below the smallest value softmax accepts (0.001)",
        );
        assert_block_err(
            "cell softmax",
            &c("{ min = 1, max = 2000 }"),
            2,
            26,
            "temperature: max 2000 is above the largest value softmax accepts (1000)",
        );
        assert_block_err(
            "cell softmax",
            &c("{ min = 1, max = 2, default = 3 }"),
            2,
            35,
            "temperature: default 3 must lie between min 1 and max 2",
        );
        assert_block_err(
            "cell softmax",
            &c("{ min = 2, max = 3 }"),
            2,
            15,
            "temperature: the slider needs a default (expected default = a value between 2 and 3)",
        );
        assert_block_err(
            "cell logit",
            "input = [1.0]\neps = { min = 0, max = 0.1 }",
            2,
            7,
            "eps: the slider needs a default",
        );
        assert_block_err(
            "cell softmax",
            &c("{ min = \"a\", max = 3 }"),
            2,
            23,
            "temperature: min: expected a number, found string",
        );
        assert_block_err(
            "cell softmax",
            &c("{ min = 1, max = inf }"),
            2,
            32,
            "temperature: max: expected a finite number, found inf",
        );
        assert_block_err(
            "cell softmax",
            &c("{ min = 1, max = 3, log = 1 }"),
            2,
            41,
            "temperature: log: expected true or false, found integer",
        );
        assert_block_err(
            "cell logit",
            "input = [1.0]\neps = 0.5",
            2,
            7,
            "eps: 0.5 is outside the range logit accepts [0, 0.49]",
        );
    }

    #[test]
    fn bool_and_choice_param_errors() {
        let c = |k: &str, s: &str| format!("input = [1.0]\n{k} = {s}");
        assert_block_err(
            "cell softmax",
            &c("stable", "1"),
            2,
            10,
            "stable: expected true, false or a toggle { default = true }, found integer",
        );
        assert_block_err(
            "cell softmax",
            &c("stable", "{ on = true }"),
            2,
            12,
            "stable: toggle: unknown key 'on' (expected one of: default)",
        );
        assert_block_err(
            "cell softmax",
            &c("stable", "{ default = \"yes\" }"),
            2,
            22,
            "stable: default: expected true or false, found string",
        );
        assert_block_err(
            "cell softmax",
            &c("dtype", "\"f64\""),
            2,
            9,
            "dtype: 'f64' is not a choice of softmax (expected one of: f32, f16, bf16)",
        );
        assert_block_err(
            "cell softmax",
            &c("dtype", "16"),
            2,
            9,
            "dtype: expected a string or a choice { choices = [..], default = .. }, found integer",
        );
        assert_block_err(
            "cell softmax",
            &c("dtype", "{ options = [] }"),
            2,
            11,
            "dtype: choice: unknown key 'options' (expected one of: choices, default)",
        );
        assert_block_err(
            "cell softmax",
            &c("dtype", "{ default = \"f16\" }"),
            2,
            9,
            "dtype: a choice needs choices",
        );
        assert_block_err(
            "cell softmax",
            &c("dtype", "{ choices = \"f16\" }"),
            2,
            21,
            "dtype: choices: expected a list of strings, found string",
        );
        assert_block_err(
            "cell softmax",
            &c("dtype", "{ choices = [\"f16\", 1] }"),
            2,
            29,
            "dtype: choices: expected a string, found integer",
        );
        assert_block_err(
            "cell softmax",
            &c("dtype", "{ choices = [\"f16\", \"fp8\"] }"),
            2,
            29,
            "dtype: 'fp8' is not a choice of softmax (expected a subset of: f32, f16, bf16)",
        );
        assert_block_err(
            "cell softmax",
            &c("dtype", "{ choices = [\"f16\", \"f16\"] }"),
            2,
            29,
            "dtype: 'f16' is listed twice",
        );
        assert_block_err(
            "cell softmax",
            &c("dtype", "{ choices = [\"f16\"] }"),
            2,
            21,
            "dtype: a choice needs at least 2 options; to fix it, write dtype = \"f16\"",
        );
        assert_block_err(
            "cell softmax",
            &c(
                "dtype",
                "{ choices = [\"f16\", \"f32\"], default = \"bf16\" }",
            ),
            2,
            37,
            "dtype: default 'bf16' is not one of the choices (expected one of: f16, f32)",
        );
        assert_block_err(
            "cell softmax",
            &c("dtype", "{ choices = [\"f16\", \"bf16\"] }"),
            2,
            9,
            "dtype: the choice needs a default (expected default = one of: f16, bf16)",
        );
        assert_block_err(
            "cell softmax",
            &c("dtype", "{ choices = [\"f16\", \"f32\"], default = 1 }"),
            2,
            47,
            "dtype: default: expected a string, found integer",
        );
    }

    #[test]
    fn value_input_errors() {
        let c = |s: &str| format!("input = {s}");
        assert_block_err("cell sigmoid", "", 0, 1, "missing 'input'");
        assert_block_err(
            "cell sigmoid",
            &c("\"1, 2\""),
            1,
            9,
            "input: expected values [1.0, 2.0], rows [[1.0, 2.0], [3.0, 4.0]] or a table",
        );
        assert_block_err("cell sigmoid", &c("[]"), 1, 9, "input: the list is empty");
        assert_block_err(
            "cell sigmoid",
            &c("[[1.0], 2.0]"),
            1,
            17,
            "input: mixes values and rows",
        );
        assert_block_err(
            "cell sigmoid",
            &c("[[1.0], []]"),
            1,
            17,
            "input: row 2 is empty",
        );
        assert_block_err(
            "cell sigmoid",
            &c("[[1.0, 2.0],\n  [3.0]]"),
            2,
            3,
            "input: row 2 has 1 values but row 1 has 2 (rows must be of equal length)",
        );
        assert_block_err(
            "cell sigmoid",
            &c("[1.0, \"big\"]"),
            1,
            15,
            "input: 'big' is not a number (write NaN and infinities as the strings \"nan\", \"inf\", \"-inf\")",
        );
        assert_block_err(
            "cell sigmoid",
            &c("[1.0, inf]"),
            1,
            15,
            "input: found inf; write NaN and infinities as the strings",
        );
        assert_block_err(
            "cell sigmoid",
            &c("[nan]"),
            1,
            10,
            "input: found NaN; write NaN",
        );
        assert_block_err(
            "cell sigmoid",
            &c("[1e39]"),
            1,
            10,
            "input: 1e39 is too large for f32",
        );
        assert_block_err(
            "cell sigmoid",
            &c("[[[1.0]]]"),
            1,
            11,
            "input: expected a number, found array",
        );
        assert_block_err(
            "cell sigmoid",
            &c("[true]"),
            1,
            10,
            "input: expected a number, found boolean",
        );
    }

    #[test]
    fn too_many_values() {
        // A 1 MiB file cannot hold more than MAX_CELL_ELEMENTS values, so call the cell parser
        // directly with a larger body.
        let n = MAX_CELL_ELEMENTS + 1;
        let half = vec!["0"; n / 2 + 1].join(",");
        for text in [
            format!("input = [{}]", vec!["0"; n].join(",")),
            format!("input = [[{half}], [{half}]]"),
        ] {
            let body = TomlBody::new(&[text.as_str()], 10);
            let table = body.parse("cell", 9, 1).unwrap();
            let e = parse_cell(crate::ops::logits::SIGMOID, 9, 1, &body, &table).unwrap_err();
            assert_eq!((e.line, e.column), (10, 9));
            assert!(
                e.message.contains("more than 1048576 values"),
                "{}",
                e.message
            );
        }
    }

    #[test]
    fn generated_input_errors() {
        let c = |s: &str| format!("input = {{ {s} }}");
        assert_block_err(
            "cell sigmoid",
            &c("rows = 1"),
            1,
            9,
            "input: a table input needs one of normal = SCALE, uniform = [LO, HI], linspace = [FROM, TO]",
        );
        assert_block_err(
            "cell sigmoid",
            &c("normal = 1.0, linspace = [0, 1], cols = 2"),
            1,
            25,
            "input: give only one of normal, uniform, linspace",
        );
        assert_block_err(
            "cell sigmoid",
            &c("normal = 1.0, count = 3"),
            1,
            25,
            "input: 'count' does not belong in a normal input (expected: normal, rows, cols, seed)",
        );
        assert_block_err(
            "cell sigmoid",
            &c("linspace = [0, 1], cols = 3"),
            1,
            30,
            "input: 'cols' does not belong in a linspace input (expected: linspace, count)",
        );
        assert_block_err(
            "cell sigmoid",
            &c("normal = 1.0, rows = 0, cols = 2"),
            1,
            32,
            "input: rows: must be at least 1 (got 0)",
        );
        assert_block_err(
            "cell sigmoid",
            &c("normal = 1.0, cols = 2.5"),
            1,
            32,
            "input: cols: expected a whole number, found float",
        );
        assert_block_err(
            "cell sigmoid",
            &c("normal = 1.0"),
            1,
            9,
            "input: a normal input needs cols",
        );
        assert_block_err(
            "cell sigmoid",
            &c("uniform = [0, 1], rows = 2"),
            1,
            9,
            "input: a uniform input needs cols",
        );
        assert_block_err(
            "cell sigmoid",
            &c("linspace = [0, 1]"),
            1,
            9,
            "input: a linspace input needs count",
        );
        assert_block_err(
            "cell sigmoid",
            &c("linspace = [0, 1], count = 0"),
            1,
            38,
            "input: count: must be at least 1 (got 0)",
        );
        assert_block_err(
            "cell sigmoid",
            &c("linspace = [0, 1], count = 1048577"),
            1,
            38,
            "input: count: 1048577 is more than the limit of 1048576 values in one cell",
        );
        assert_block_err(
            "cell sigmoid",
            &c("normal = 1.0, rows = 1024, cols = 1025"),
            1,
            9,
            "input: 1024 x 1025 values is more than the limit of 1048576",
        );
        assert_block_err(
            "cell sigmoid",
            &c("normal = 1.0, rows = 1000000, cols = 1000000"),
            1,
            9,
            "input: 1000000 x 1000000 values is more than the limit",
        );
        assert_block_err(
            "cell sigmoid",
            &c("normal = 1.0, rows = 2000000, cols = 1"),
            1,
            32,
            "input: rows: 2000000 is more than the limit of 1048576 values in one cell",
        );
        assert_block_err(
            "cell sigmoid",
            &c("normal = 1.0, cols = 2, seed = -1"),
            1,
            42,
            "input: seed: must be at least 0 (got -1)",
        );
        assert_block_err(
            "cell sigmoid",
            &c("normal = 0, cols = 2"),
            1,
            20,
            "input: normal = 0 must be > 0",
        );
        assert_block_err(
            "cell sigmoid",
            &c("normal = -2, cols = 2"),
            1,
            20,
            "must be > 0 (it is the standard deviation)",
        );
        assert_block_err(
            "cell sigmoid",
            &c("normal = \"3\", cols = 2"),
            1,
            20,
            "input: normal: expected a number, found string",
        );
        assert_block_err(
            "cell sigmoid",
            &c("normal = 1e39, cols = 2"),
            1,
            20,
            "input: normal: 1e39 is too large for f32",
        );
        assert_block_err(
            "cell sigmoid",
            &c("uniform = [1, 0], cols = 2"),
            1,
            21,
            "input: uniform = [1, 0] needs LO < HI with a finite width",
        );
        assert_block_err(
            "cell sigmoid",
            &c("uniform = [-3e38, 3e38], cols = 2"),
            1,
            21,
            "needs LO < HI with a finite width",
        );
        assert_block_err(
            "cell sigmoid",
            &c("uniform = [0, 1, 2], cols = 2"),
            1,
            21,
            "input: uniform: expected two numbers [A, B], found 3 values",
        );
        assert_block_err(
            "cell sigmoid",
            &c("uniform = 1, cols = 2"),
            1,
            21,
            "input: uniform: expected two numbers [A, B], found integer",
        );
        assert_block_err(
            "cell sigmoid",
            &c("linspace = [0, nan], count = 2"),
            1,
            26,
            "input: linspace: expected a finite number, found NaN",
        );
    }

    // ---- kernel and predict errors -----------------------------------------------------------

    #[test]
    fn kernel_errors() {
        assert_block_err(
            "kernel",
            "topic = \"softmax\"\nmark = []",
            2,
            1,
            "kernel: unknown key 'mark' (expected one of: topic, marks, cuda_marks, wgsl_marks)",
        );
        assert_block_err(
            "kernel",
            "marks = []",
            0,
            1,
            "kernel: missing 'topic' (expected topic = one of: logits, softmax, gumbel, rope, tensor_parallel)",
        );
        assert_block_err(
            "kernel",
            "topic = \"sofmax\"",
            1,
            9,
            "kernel: unknown topic 'sofmax' (expected one of: logits, softmax, gumbel, rope, tensor_parallel)",
        );
        assert_block_err(
            "kernel",
            "topic = 1",
            1,
            9,
            "kernel: topic: expected a string, found integer",
        );
        assert_block_err(
            "kernel",
            "topic = \"softmax\"\nmarks = \"max\"",
            2,
            9,
            "kernel: marks: expected a list of strings",
        );
        assert_block_err(
            "kernel",
            "topic = \"softmax\"\nmarks = [1]",
            2,
            10,
            "kernel: marks: expected a string, found integer",
        );
        assert_block_err(
            "kernel",
            "topic = \"softmax\"\nmarks = [\" \"]",
            2,
            10,
            "kernel: a mark must not be empty",
        );
        assert_block_err(
            "kernel",
            "topic = \"softmax\"\nmarks = [\"no such text 42\"]",
            2,
            10,
            "kernel: mark 'no such text 42' is not found on any line of kernels/softmax.cu or shaders/softmax.wgsl",
        );
        assert_block_err(
            "kernel",
            "topic = \"softmax\"\nmarks = [\"__global__\"]",
            2,
            10,
            "is not found on any line of shaders/softmax.wgsl (it is in kernels/softmax.cu; a mark must be in both, or in cuda_marks)",
        );
        assert_block_err(
            "kernel",
            "topic = \"softmax\"\nmarks = [\"@compute\"]",
            2,
            10,
            "is not found on any line of kernels/softmax.cu (it is in shaders/softmax.wgsl",
        );
        // The order of keys does not matter.
        let l = parse(&block(
            "kernel",
            "marks = [\"log_softmax\"]\ntopic = \"softmax\"",
        ))
        .unwrap();
        assert_eq!(l.steps[0].blocks.len(), 1);
        // Marks for one language are looked for in that language's source only.
        let l = parse(&block(
            "kernel",
            "topic = \"softmax\"\ncuda_marks = [\"__global__\"]\nwgsl_marks = [\"@compute\"]",
        ))
        .unwrap();
        let Block::Kernel(k) = &l.steps[0].blocks[0] else {
            panic!("{:?}", l.steps[0].blocks)
        };
        assert_eq!(
            (k.marks.len(), k.cuda_marks.clone(), k.wgsl_marks.clone()),
            (
                0,
                vec!["__global__".to_string()],
                vec!["@compute".to_string()]
            )
        );
        assert_eq!(k.all_marks(), vec!["__global__", "@compute"]);
        assert_block_err(
            "kernel",
            "topic = \"softmax\"\ncuda_marks = [\"@compute\"]",
            2,
            15,
            "kernel: mark '@compute' is not found on any line of kernels/softmax.cu",
        );
        assert_block_err(
            "kernel",
            "topic = \"softmax\"\nwgsl_marks = [\"__global__\"]",
            2,
            15,
            "kernel: mark '__global__' is not found on any line of shaders/softmax.wgsl",
        );
        assert_block_err(
            "kernel",
            "topic = \"softmax\"\nwgsl_marks = \"x\"",
            2,
            14,
            "kernel: wgsl_marks: expected a list of strings",
        );
    }

    #[test]
    fn predict_errors() {
        let p = |q: &str, c: &str, a: &str, e: &str| {
            format!("question = {q}\nchoices = {c}\nanswer = {a}\nexplain = {e}")
        };
        let good = p("\"Q?\"", "[\"a\", \"b\"]", "2", "\"E\"");
        let Block::Predict(spec) = &parse(&block("predict", &good)).unwrap().steps[0].blocks[0]
        else {
            panic!()
        };
        assert_eq!((spec.line, spec.answer), (9, 1));
        assert_block_err(
            "predict",
            &format!("{good}\nhint = \"h\""),
            5,
            1,
            "predict: unknown key 'hint' (expected one of: question, choices, answer, explain)",
        );
        assert_block_err(
            "predict",
            "choices = [\"a\", \"b\"]\nanswer = 1\nexplain = \"E\"",
            0,
            1,
            "predict: missing 'question'",
        );
        assert_block_err(
            "predict",
            "question = \"Q\"\nanswer = 1\nexplain = \"E\"",
            0,
            1,
            "predict: missing 'choices'",
        );
        assert_block_err(
            "predict",
            "question = \"Q\"\nchoices = [\"a\", \"b\"]\nexplain = \"E\"",
            0,
            1,
            "predict: missing 'answer'",
        );
        assert_block_err(
            "predict",
            "question = \"Q\"\nchoices = [\"a\", \"b\"]\nanswer = 1",
            0,
            1,
            "predict: missing 'explain'",
        );
        assert_block_err(
            "predict",
            &p("\"\"", "[\"a\", \"b\"]", "1", "\"E\""),
            1,
            12,
            "predict: question: must not be empty",
        );
        assert_block_err(
            "predict",
            &p("\"Q\"", "[\"a\"]", "1", "\"E\""),
            2,
            11,
            "predict: expected 2 to 6 choices, found 1",
        );
        assert_block_err(
            "predict",
            &p(
                "\"Q\"",
                "[\"1\", \"2\", \"3\", \"4\", \"5\", \"6\", \"7\"]",
                "1",
                "\"E\"",
            ),
            2,
            11,
            "predict: expected 2 to 6 choices, found 7",
        );
        assert_block_err(
            "predict",
            &p("\"Q\"", "\"a, b\"", "1", "\"E\""),
            2,
            11,
            "predict: choices: expected a list of 2 to 6 strings, found string",
        );
        assert_block_err(
            "predict",
            &p("\"Q\"", "[\"a\", \"a\"]", "1", "\"E\""),
            2,
            17,
            "predict: choice 'a' is listed twice",
        );
        assert_block_err(
            "predict",
            &p("\"Q\"", "[\"a\", 2]", "1", "\"E\""),
            2,
            17,
            "predict: choices: expected a string, found integer",
        );
        assert_block_err(
            "predict",
            &p("\"Q\"", "[\"a\", \"b\"]", "3", "\"E\""),
            3,
            10,
            "predict: answer 3 is out of range (expected 1 to 2, the number of the right choice)",
        );
        assert_block_err(
            "predict",
            &p("\"Q\"", "[\"a\", \"b\"]", "0", "\"E\""),
            3,
            10,
            "predict: answer: must be at least 1 (got 0)",
        );
        assert_block_err(
            "predict",
            &p("\"Q\"", "[\"a\", \"b\"]", "\"1\"", "\"E\""),
            3,
            10,
            "predict: answer: expected a whole number, found string",
        );
        assert_block_err(
            "predict",
            &p("\"Q\"", "[\"a\", \"b\"]", "1", "false"),
            4,
            11,
            "predict: explain: expected a string, found boolean",
        );
    }

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

    #[test]
    fn typed_values_follow_the_lesson_rules() {
        assert_eq!(
            parse_typed_values("[1, 2.5]").unwrap(),
            vec![vec![1.0, 2.5]]
        );
        let v = parse_typed_values("[nan, \"inf\", -inf]").unwrap();
        assert!(v[0][0].is_nan() && v[0][1] == f32::INFINITY && v[0][2] == f32::NEG_INFINITY);
        let e = parse_typed_values("[[1, 2], [3]]").unwrap_err();
        assert!(
            e.contains("row 2 has 1 values") && e.contains("at character 10"),
            "{e}"
        );
        assert!(
            parse_typed_values("[1e39]")
                .unwrap_err()
                .contains("too large for f32")
        );
        assert!(
            parse_typed_values("[1, [2]]")
                .unwrap_err()
                .contains("mixes values and rows")
        );
        assert!(
            parse_typed_values("[1,")
                .unwrap_err()
                .starts_with("not a list of numbers")
        );
    }
}
