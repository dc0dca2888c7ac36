//! A block's TOML body: parsing it with the `toml` crate's spanned tables, turning byte spans back
//! into file lines and columns, and typed access to single values with precise messages ("input:
//! expected a number, found boolean") for the values whose rules a derived struct cannot say.

use super::MAX_CELL_ELEMENTS;
use super::de::{self, DeError};
use super::error::{Fail, Res, fail, num};
use super::markdown::prefix;
use std::ops::Range;
use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

/// A TOML body and the file line its first line is on.
pub(crate) struct TomlBody {
    pub text: String,
    pub first_line: usize,
}

/// A key of a table with its span, and its value.
pub(crate) type Entry<'t, 'i> = (&'t str, Range<usize>, &'t Spanned<DeValue<'i>>);

impl TomlBody {
    pub fn new(lines: &[&str], first_line: usize) -> Self {
        TomlBody {
            text: lines.join("\n"),
            first_line,
        }
    }

    /// File line and column of a byte offset in the body.
    pub fn pos(&self, offset: usize) -> (usize, usize) {
        let before = prefix(&self.text, offset);
        let line = before.matches('\n').count();
        let line_start = before.rfind('\n').map_or(0, |p| p + 1);
        let col = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
        (self.first_line + line, col)
    }

    pub fn fail<T>(&self, span: &Range<usize>, message: impl Into<String>) -> Res<T> {
        let (line, column) = self.pos(span.start);
        fail(line, column, message)
    }

    /// Parse the body; a syntax error points at the offending text in the file, or at the block
    /// (`at`) when the parser gives no position.
    pub fn parse(&self, what: &str, at: (usize, usize)) -> Res<DeTable<'_>> {
        match DeTable::parse(&self.text) {
            Ok(table) => Ok(table.into_inner()),
            Err(e) => {
                let (line, column) = e.span().map_or(at, |span| self.pos(span.start));
                let message = e.message().trim().replace('\n', " ");
                fail(line, column, format!("{what}: invalid TOML: {message}"))
            }
        }
    }

    /// A derive error as a file position: its span, or the block (`at`) for the body as a whole.
    pub fn locate(&self, e: DeError, at: (usize, usize)) -> Fail {
        let (line, column) = e.span.map_or(at, |span| self.pos(span.start));
        Fail {
            line,
            column,
            message: e.message,
        }
    }

    /// The root table read as `T` (see `de.rs`); errors about the body as a whole point at `at`.
    pub fn read<'t, T: serde::Deserialize<'t>>(
        &self,
        table: &'t DeTable<'_>,
        path: &str,
        at: (usize, usize),
    ) -> Res<T> {
        de::from_table(table, path).map_err(|e| self.locate(e, at))
    }

    /// One value read as `T`; `path` names it in messages.
    pub fn read_value<'t, T: serde::Deserialize<'t>>(
        &self,
        value: &'t Spanned<DeValue<'_>>,
        path: &str,
    ) -> Res<T> {
        let at = self.pos(value.span().start);
        de::from_value(value, path).map_err(|e| self.locate(e, at))
    }
}

/// The entries of a table in the order they are written.
pub(crate) fn entries<'t, 'i>(table: &'t DeTable<'i>) -> Vec<Entry<'t, 'i>> {
    let mut out: Vec<Entry<'t, 'i>> = table
        .iter()
        .map(|(k, v)| (&**k.get_ref(), k.span(), v))
        .collect();
    out.sort_by_key(|(_, span, _)| span.start);
    out
}

/// The value of `key` in `table`, if present.
pub(crate) fn get<'t, 'i>(table: &'t DeTable<'i>, key: &str) -> Option<&'t Spanned<DeValue<'i>>> {
    table
        .iter()
        .find(|(k, _)| k.get_ref().as_ref() == key)
        .map(|(_, v)| v)
}

pub(crate) fn integer(v: &DeValue<'_>) -> Option<i64> {
    match v {
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix()).ok(),
        _ => None,
    }
}

pub(crate) fn number(v: &DeValue<'_>) -> Option<f64> {
    match v {
        DeValue::Integer(_) => integer(v).map(|n| n as f64),
        DeValue::Float(f) => f.as_str().parse::<f64>().ok(),
        _ => None,
    }
}

/// A finite number (an integer or a float).
pub(crate) fn finite_number(body: &TomlBody, what: &str, v: &Spanned<DeValue<'_>>) -> Res<f64> {
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

pub(crate) fn string<'t>(body: &TomlBody, what: &str, v: &'t Spanned<DeValue<'_>>) -> Res<&'t str> {
    match v.get_ref() {
        DeValue::String(s) => Ok(s),
        other => body.fail(
            &v.span(),
            format!("{what}: expected a string, found {}", other.type_str()),
        ),
    }
}

pub(crate) fn nonempty_string(
    body: &TomlBody,
    what: &str,
    v: &Spanned<DeValue<'_>>,
) -> Res<String> {
    let s = string(body, what, v)?;
    if s.trim().is_empty() {
        return body.fail(&v.span(), format!("{what}: must not be empty"));
    }
    Ok(s.to_string())
}

pub(crate) fn array<'t, 'i>(
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
pub(crate) fn count(body: &TomlBody, what: &str, min: i64, v: &Spanned<DeValue<'_>>) -> Res<i64> {
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
pub(crate) fn element_count(body: &TomlBody, what: &str, v: &Spanned<DeValue<'_>>) -> Res<usize> {
    let n = count(body, what, 1, v)?;
    match usize::try_from(n) {
        Ok(n) if n <= MAX_CELL_ELEMENTS => Ok(n),
        _ => body.fail(
            &v.span(),
            format!("{what}: {n} is more than the limit of {MAX_CELL_ELEMENTS} values in one cell"),
        ),
    }
}

/// The span of `key` in `table` (where the key is written), or `fallback` when it is absent.
pub(crate) fn key_span(table: &DeTable<'_>, key: &str, fallback: Range<usize>) -> Range<usize> {
    table
        .iter()
        .find(|(k, _)| k.get_ref().as_ref() == key)
        .map_or(fallback, |(k, _)| k.span())
}
