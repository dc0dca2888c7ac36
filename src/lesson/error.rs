//! Lesson errors: [`LessonError`] (file:line:column and what was expected, as authors and the app's
//! error cards see it) and the position-only [`Fail`] the parser passes around before the file name
//! is known, with the small formatting helpers every message uses.

use super::LessonSource;
use std::fmt;

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

/// A problem inside the parser: a 1-based position in the file and a message; the file name is
/// added by [`super::parse_lesson`].
#[derive(Debug)]
pub(crate) struct Fail {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl Fail {
    pub fn into_error(self, source: &LessonSource) -> LessonError {
        LessonError::new(source, self.line, self.column, self.message)
    }
}

pub(crate) type Res<T> = Result<T, Fail>;

pub(crate) fn fail<T>(line: usize, column: usize, message: impl Into<String>) -> Res<T> {
    Err(Fail {
        line,
        column,
        message: message.into(),
    })
}

/// A number for a message: plain when of ordinary size, in exponent notation otherwise (1e39, 1e-7).
pub(crate) fn num<T: Into<f64> + fmt::Display + fmt::LowerExp + Copy>(x: T) -> String {
    let v: f64 = x.into();
    if v == 0.0 || (1e-5..1e15).contains(&v.abs()) {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

/// The text of a line for a message: trimmed, at most 40 characters.
pub(crate) fn shorten(line: &str) -> String {
    let t = line.trim();
    if t.chars().count() > 40 {
        let mut s: String = t.chars().take(37).collect();
        s.push_str("...");
        s
    } else {
        t.to_string()
    }
}
