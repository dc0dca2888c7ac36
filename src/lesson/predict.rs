//! The `predict` block: a question the learner answers before the step's cell shows its results.
//! Either choices with the number of the right one, or a number: fixed (`answer = 7.39`) or read
//! from the live cell (`answer_from = "reference[1, 3]"`), scored within a tolerance. Also the small
//! data-only language of `answer_from` (parsed here, read from a cell's results by
//! [`CellValue::read`]) and the scoring of a typed number ([`NumberAnswer::score`]).

use super::body::{TomlBody, array, count, finite_number, get, key_span, nonempty_string};
use super::de::{Finite, Present, Text};
use super::error::{Fail, Res, num};
use super::{
    Answer, CellOutput, CellValue, NumberAnswer, NumberTolerance, OutputSource, PredictSpec, Stat,
    Truth,
};
use crate::compare::Comparison;
use crate::engine::EngineKind;
use serde::Deserialize;
use std::fmt;
use std::ops::Range;
use toml::Spanned;
use toml::de::DeTable;

/// Most characters of a `unit`.
pub const MAX_UNIT_CHARS: usize = 24;
/// Most characters of an `answer_from` selector.
pub const MAX_SELECTOR_CHARS: usize = 80;
/// The loosest relative tolerance (100 %); looser questions use a factor.
pub const MAX_RELATIVE: f64 = 1.0;
/// The loosest factor: within 1000 times either way.
pub const MAX_FACTOR: f64 = 1000.0;

/// What the error for a missing answer says a predict block needs.
const SHAPES: &str = "choices = [..] with answer = the number of the right one, or a numeric answer = NUMBER or answer_from = \"..\" with a tolerance";

/// The keys of a `predict` block.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "")]
struct PredictBody {
    question: Option<Text>,
    choices: Option<Present>,
    answer: Option<Present>,
    answer_from: Option<Spanned<String>>,
    tolerance: Option<Present>,
    unit: Option<Spanned<Text>>,
    explain: Option<Text>,
}

/// The keys of a tolerance.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "")]
struct ToleranceBody {
    relative: Option<Finite>,
    absolute: Option<Finite>,
    factor: Option<Finite>,
}

pub(crate) fn parse_predict(
    (line, col): (usize, usize),
    body: &TomlBody,
    table: &DeTable<'_>,
) -> Res<PredictSpec> {
    let keys: PredictBody = body.read(table, "predict", (line, col))?;
    let missing = |key: &str, what: &str| Fail {
        line,
        column: col,
        message: format!("predict: missing '{key}' ({what})"),
    };
    let Some(Text(question)) = keys.question else {
        return Err(missing(
            "question",
            &format!("a predict block needs a question, an explain, and {SHAPES}"),
        ));
    };
    let answer_value = keys.answer.and(get(table, "answer"));
    let answer = match (keys.choices, get(table, "choices")) {
        (Some(Present), Some(choices)) => {
            // Keys that only numeric questions take.
            for key in ["answer_from", "tolerance", "unit"] {
                if get(table, key).is_some() {
                    return body.fail(
                        &key_span(table, key, 0..0),
                        format!(
                            "predict: '{key}' is for numeric answers; a question with choices takes answer = the number of the right choice"
                        ),
                    );
                }
            }
            let Some(answer) = answer_value else {
                return Err(missing(
                    "answer",
                    "expected answer = the number of the right choice, counting from 1",
                ));
            };
            parse_choices(body, choices, answer)?
        }
        _ => {
            let number = match (answer_value, &keys.answer_from) {
                (Some(_), Some(from)) => {
                    return body.fail(
                        &key_span(table, "answer_from", from.span()),
                        "predict: give answer = NUMBER or answer_from = \"..\", not both",
                    );
                }
                (Some(v), None) => Truth::Fixed(finite_number(body, "predict: answer", v)?),
                (None, Some(from)) => Truth::Cell(parse_selector(body, from)?),
                (None, None) => {
                    return Err(missing("answer", &format!("expected {SHAPES}")));
                }
            };
            let Some(tolerance) = keys.tolerance.and(get(table, "tolerance")) else {
                if matches!(number, Truth::Fixed(_))
                    && keys.answer_from.is_none()
                    && keys.unit.is_none()
                {
                    // Most likely a question with choices whose choices were forgotten.
                    return Err(missing(
                        "choices",
                        "a question with choices needs choices = [..]; a numeric answer needs a tolerance such as tolerance = { relative = 0.05 }",
                    ));
                }
                return Err(missing(
                    "tolerance",
                    "expected tolerance = { relative = 0.05 }, { absolute = 0.5 } or { factor = 10 }",
                ));
            };
            let unit = match keys.unit {
                Some(u) => Some(parse_unit(body, u)?),
                None => None,
            };
            Answer::Number(NumberAnswer {
                truth: number,
                tolerance: parse_tolerance(body, tolerance)?,
                unit,
            })
        }
    };
    let Some(Text(explain)) = keys.explain else {
        return Err(missing(
            "explain",
            "the explanation shown once the learner has answered",
        ));
    };
    Ok(PredictSpec {
        line,
        question,
        answer,
        explain,
    })
}

/// `choices = [..]` (2 to 6 distinct strings) and `answer` = the number of the right one.
fn parse_choices(
    body: &TomlBody,
    value: &Spanned<toml::de::DeValue<'_>>,
    answer: &Spanned<toml::de::DeValue<'_>>,
) -> Res<Answer> {
    let a = array(body, "predict: choices", "a list of 2 to 6 strings", value)?;
    if a.len() < 2 || a.len() > 6 {
        return body.fail(
            &value.span(),
            format!("predict: expected 2 to 6 choices, found {}", a.len()),
        );
    }
    let mut choices: Vec<String> = Vec::new();
    for item in a.iter() {
        let s = nonempty_string(body, "predict: choices", item)?;
        if choices.contains(&s) {
            return body.fail(
                &item.span(),
                format!("predict: choice '{s}' is listed twice"),
            );
        }
        choices.push(s);
    }
    let n = count(body, "predict: answer", 1, answer)?;
    let Some(right) = usize::try_from(n - 1).ok().filter(|&i| i < choices.len()) else {
        return body.fail(
            &answer.span(),
            format!(
                "predict: answer {n} is out of range (expected 1 to {}, the number of the right choice)",
                choices.len()
            ),
        );
    };
    Ok(Answer::Choice { choices, right })
}

fn parse_unit(body: &TomlBody, unit: Spanned<Text>) -> Res<String> {
    let span = unit.span();
    let Text(u) = unit.into_inner();
    let u = u.trim().to_string();
    if u.chars().count() > MAX_UNIT_CHARS || u.contains('\n') {
        return body.fail(
            &span,
            format!("predict: unit: at most {MAX_UNIT_CHARS} characters on one line (a unit such as \"bytes\" or \"ms\")"),
        );
    }
    Ok(u)
}

/// `tolerance = { relative = R, absolute = A }` (either or both) or `{ factor = F }`.
fn parse_tolerance(body: &TomlBody, v: &Spanned<toml::de::DeValue<'_>>) -> Res<NumberTolerance> {
    let toml::de::DeValue::Table(t) = v.get_ref() else {
        return body.fail(
            &v.span(),
            format!(
                "predict: tolerance: expected a table such as {{ relative = 0.05 }}, {{ absolute = 0.5 }} or {{ factor = 10 }}, found {}",
                v.get_ref().type_str()
            ),
        );
    };
    let keys: ToleranceBody = body.read_value(v, "predict: tolerance")?;
    let at = |key: &str| key_span(t, key, v.span());
    if let Some(Finite(f)) = keys.factor {
        if keys.relative.is_some() || keys.absolute.is_some() {
            return body.fail(
                &at("factor"),
                "predict: tolerance: a factor stands alone (within a factor of N either way); leave out relative and absolute",
            );
        }
        if !(f > 1.0 && f <= MAX_FACTOR) {
            return body.fail(
                &at("factor"),
                format!(
                    "predict: tolerance: factor = {} must be > 1 and at most {}",
                    num(f),
                    num(MAX_FACTOR)
                ),
            );
        }
        return Ok(NumberTolerance::Factor(f));
    }
    if keys.relative.is_none() && keys.absolute.is_none() {
        return body.fail(
            &v.span(),
            "predict: tolerance: needs relative, absolute (or both), or factor",
        );
    }
    if let Some(Finite(r)) = keys.relative
        && !(r > 0.0 && r <= MAX_RELATIVE)
    {
        return body.fail(
            &at("relative"),
            format!(
                "predict: tolerance: relative = {} must be > 0 and at most {} (100 %); for orders of magnitude use factor",
                num(r),
                num(MAX_RELATIVE)
            ),
        );
    }
    if let Some(Finite(a)) = keys.absolute
        && a <= 0.0
    {
        return body.fail(
            &at("absolute"),
            format!("predict: tolerance: absolute = {} must be > 0", num(a)),
        );
    }
    Ok(NumberTolerance::Within {
        relative: keys.relative.map_or(0.0, |f| f.0),
        absolute: keys.absolute.map_or(0.0, |f| f.0),
    })
}

// ---------------------------------------------------------------------------------------------
// answer_from: what to read from the cell.
// ---------------------------------------------------------------------------------------------

const STATS: [(&str, Stat); 8] = [
    ("max", Stat::Max),
    ("min", Stat::Min),
    ("sum", Stat::Sum),
    ("nonfinite", Stat::NonFinite),
    ("max_abs_error", Stat::MaxAbsError),
    ("max_rel_error", Stat::MaxRelError),
    ("max_ulp", Stat::MaxUlp),
    ("failures", Stat::Failures),
];

const FORMS: &str = "reference[ROW, COL], ENGINE[..], reference.AUX[..], or a function of an output: max, min, sum, nonfinite (of reference or an engine), max_abs_error, max_rel_error, max_ulp, failures (of an engine); engines: cuda, wgpu, cpu";

impl Stat {
    pub fn name(self) -> &'static str {
        STATS
            .iter()
            .find(|(_, s)| *s == self)
            .map_or("?", |(n, _)| n)
    }

    /// Whether it reads an engine's check against the reference (and so needs an engine).
    pub fn is_check(self) -> bool {
        matches!(
            self,
            Stat::MaxAbsError | Stat::MaxRelError | Stat::MaxUlp | Stat::Failures
        )
    }
}

impl fmt::Display for CellOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.source {
            OutputSource::Reference => f.write_str("reference")?,
            OutputSource::Engine(kind) => f.write_str(kind.name())?,
        }
        match &self.aux {
            Some(name) => write!(f, ".{name}"),
            None => Ok(()),
        }
    }
}

/// As written in a lesson (indices 1-based): `reference[2, 3]`, `nonfinite(wgpu)`.
impl fmt::Display for CellValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CellValue::At { output, index } => {
                let index: Vec<String> = index.iter().map(|i| (i + 1).to_string()).collect();
                write!(f, "{output}[{}]", index.join(", "))
            }
            CellValue::Stat { stat, output } => write!(f, "{}({output})", stat.name()),
        }
    }
}

/// A token of a selector: its text and its character offset.
struct Tok<'s> {
    text: &'s str,
    at: usize,
}

fn tokens(s: &str) -> Result<Vec<Tok<'_>>, (usize, String)> {
    let mut out = Vec::new();
    let mut chars = s.char_indices().peekable();
    let mut n = 0usize;
    while let Some((i, c)) = chars.next() {
        let at = n;
        n += 1;
        if c.is_whitespace() {
            continue;
        }
        let mut end = i + c.len_utf8();
        if c.is_ascii_alphanumeric() || c == '_' {
            while let Some(&(j, d)) = chars.peek() {
                if !(d.is_ascii_alphanumeric() || d == '_') {
                    break;
                }
                end = j + d.len_utf8();
                chars.next();
                n += 1;
            }
        } else if !"[](),.".contains(c) {
            return Err((at, format!("unexpected '{c}'")));
        }
        out.push(Tok {
            text: s.get(i..end).unwrap_or(""),
            at,
        });
    }
    Ok(out)
}

/// Parse a selector; an error gives the character offset it is about.
fn selector(s: &str) -> Result<CellValue, (usize, String)> {
    if s.chars().count() > MAX_SELECTOR_CHARS {
        return Err((0, format!("longer than {MAX_SELECTOR_CHARS} characters")));
    }
    let toks = tokens(s)?;
    let end = s.chars().count();
    let mut pos = 0usize;
    let peek = |pos: usize| toks.get(pos);
    let expect = |pos: usize, want: &str| -> Result<(), (usize, String)> {
        match toks.get(pos) {
            Some(t) if t.text == want => Ok(()),
            Some(t) => Err((t.at, format!("expected '{want}', found '{}'", t.text))),
            None => Err((end, format!("expected '{want}' at the end"))),
        }
    };
    // An output: reference | ENGINE, optionally .AUX
    let output = |pos: &mut usize| -> Result<CellOutput, (usize, String)> {
        let Some(t) = toks.get(*pos) else {
            return Err((end, format!("expected an output: {FORMS}")));
        };
        let source = match t.text {
            "reference" => OutputSource::Reference,
            name => match EngineKind::ALL.into_iter().find(|k| k.name() == name) {
                Some(kind) => OutputSource::Engine(kind),
                None => {
                    return Err((
                        t.at,
                        format!("'{name}' is not an output (expected {FORMS})"),
                    ));
                }
            },
        };
        *pos += 1;
        let mut aux = None;
        if toks.get(*pos).is_some_and(|t| t.text == ".") {
            *pos += 1;
            match toks.get(*pos) {
                Some(t) if t.text.starts_with(|c: char| c.is_ascii_alphabetic()) => {
                    aux = Some(t.text.to_string());
                    *pos += 1;
                }
                Some(t) => {
                    return Err((
                        t.at,
                        format!(
                            "expected the name of an auxiliary output after '.', found '{}'",
                            t.text
                        ),
                    ));
                }
                None => {
                    return Err((
                        end,
                        "expected the name of an auxiliary output after '.'".into(),
                    ));
                }
            }
        }
        Ok(CellOutput { source, aux })
    };
    let Some(first) = peek(0) else {
        return Err((0, format!("empty (expected {FORMS})")));
    };
    let value = if let Some(&(_, stat)) = STATS.iter().find(|(n, _)| *n == first.text)
        && peek(1).is_some_and(|t| t.text == "(")
    {
        pos = 2;
        let out_at = peek(pos).map_or(end, |t| t.at);
        let out = output(&mut pos)?;
        expect(pos, ")")?;
        pos += 1;
        if stat.is_check() {
            if out.source == OutputSource::Reference {
                return Err((
                    out_at,
                    format!(
                        "{}() compares an engine with the reference: give an engine (cuda, wgpu or cpu)",
                        stat.name()
                    ),
                ));
            }
            if out.aux.is_some() {
                return Err((
                    out_at,
                    format!(
                        "{}() reads the engine's whole check: give just the engine",
                        stat.name()
                    ),
                ));
            }
        }
        CellValue::Stat { stat, output: out }
    } else {
        let out = output(&mut pos)?;
        expect(pos, "[")?;
        pos += 1;
        let mut index = Vec::new();
        loop {
            let Some(t) = peek(pos) else {
                return Err((end, "expected an index, then ']'".into()));
            };
            let i = match t.text.parse::<usize>() {
                Ok(i) if (1..=crate::ops::MAX_ELEMENTS).contains(&i) => i - 1,
                _ => {
                    return Err((
                        t.at,
                        format!(
                            "expected an index counted from 1 (1, 2, ...), found '{}'",
                            t.text
                        ),
                    ));
                }
            };
            index.push(i);
            if index.len() > 8 {
                return Err((t.at, "at most 8 indices".into()));
            }
            pos += 1;
            match peek(pos) {
                Some(t) if t.text == "," => pos += 1,
                Some(t) if t.text == "]" => {
                    pos += 1;
                    break;
                }
                Some(t) => return Err((t.at, format!("expected ',' or ']', found '{}'", t.text))),
                None => return Err((end, "expected ']' at the end".into())),
            }
        }
        CellValue::At { output: out, index }
    };
    if let Some(t) = peek(pos) {
        return Err((t.at, format!("unexpected '{}' after the selector", t.text)));
    }
    Ok(value)
}

/// `answer_from = "..."`, with errors at the character of the string they are about.
fn parse_selector(body: &TomlBody, from: &Spanned<String>) -> Res<CellValue> {
    let text = from.get_ref();
    selector(text).or_else(|(at, why)| {
        let span = char_span(body, from.span(), text, at);
        body.fail(&span, format!("predict: answer_from: {why}"))
    })
}

/// The span in the body of character `at` of the string value `text` written at `span`: exact
/// when the string is written without escapes, else the string's start.
fn char_span(body: &TomlBody, span: Range<usize>, text: &str, at: usize) -> Range<usize> {
    let raw = body.text.get(span.clone()).unwrap_or("");
    let quoted = raw.len() == text.len() + 2
        && (raw.starts_with('"') || raw.starts_with('\''))
        && raw.get(1..raw.len() - 1) == Some(text);
    if !quoted {
        return span;
    }
    let byte = text.char_indices().nth(at).map_or(text.len(), |(b, _)| b);
    let start = span.start + 1 + byte;
    start..start
}

// ---------------------------------------------------------------------------------------------
// Reading a cell's results, and scoring a typed number.
// ---------------------------------------------------------------------------------------------

/// One output of a comparison: its shape and values.
fn output_values(c: &Comparison, output: &CellOutput) -> Result<(Vec<usize>, Vec<f64>), String> {
    match (&output.source, &output.aux) {
        (OutputSource::Reference, None) => Ok((c.request.output_shape(), c.reference.clone())),
        (OutputSource::Reference, Some(name)) => c
            .reference_aux
            .iter()
            .find(|a| &a.name == name)
            .map(|a| (a.shape.clone(), a.values.clone()))
            .ok_or_else(|| no_aux(name, c.reference_aux.iter().map(|a| a.name.as_str()))),
        (OutputSource::Engine(kind), aux) => {
            let (out, _) = engine_result(c, *kind)?;
            let as_f64 = |v: &[f32]| v.iter().map(|&x| f64::from(x)).collect();
            match aux {
                None => Ok((out.shape.clone(), as_f64(&out.values))),
                Some(name) => out
                    .aux
                    .iter()
                    .find(|a| &a.name == name)
                    .map(|a| (a.shape.clone(), as_f64(&a.values)))
                    .ok_or_else(|| no_aux(name, out.aux.iter().map(|a| a.name.as_str()))),
            }
        }
    }
}

fn no_aux<'a>(name: &str, have: impl Iterator<Item = &'a str>) -> String {
    let have: Vec<&str> = have.collect();
    if have.is_empty() {
        format!("this cell has no auxiliary output '{name}' (it has none)")
    } else {
        format!(
            "this cell has no auxiliary output '{name}' (it has: {})",
            have.join(", ")
        )
    }
}

fn engine_result(
    c: &Comparison,
    kind: EngineKind,
) -> Result<(&crate::engine::OpOutput, &crate::check::CheckReport), String> {
    match c.run(kind).map(|r| &r.result) {
        Some(Ok((out, report))) => Ok((out, report)),
        Some(Err(e)) => Err(format!(
            "the {} engine has no result here: {e}",
            kind.name()
        )),
        None => Err(format!("the {} engine did not run", kind.name())),
    }
}

impl CellValue {
    /// The value this selector names in a cell's results: a finite number, or why there is none
    /// (an engine absent here, an index outside the output, a value that is NaN or infinite).
    pub fn read(&self, c: &Comparison) -> Result<f64, String> {
        let v = match self {
            CellValue::At { output, index } => {
                let (shape, values) = output_values(c, output)?;
                if index.len() != shape.len() {
                    return Err(format!(
                        "{self} gives {} indices but {output} has {} axes (shape {shape:?})",
                        index.len(),
                        shape.len()
                    ));
                }
                let mut flat = 0usize;
                for (&i, &d) in index.iter().zip(&shape) {
                    if i >= d {
                        return Err(format!(
                            "{self} is outside {output}, whose shape is {shape:?}"
                        ));
                    }
                    flat = flat * d + i;
                }
                values
                    .get(flat)
                    .copied()
                    .ok_or_else(|| format!("{self} is outside {output}"))?
            }
            CellValue::Stat { stat, output } if stat.is_check() => {
                let OutputSource::Engine(kind) = output.source else {
                    return Err(format!("{self} needs an engine"));
                };
                let (_, report) = engine_result(c, kind)?;
                match stat {
                    Stat::MaxAbsError => report.max_abs,
                    Stat::MaxRelError => report.max_rel,
                    Stat::MaxUlp => report.max_ulp as f64,
                    _ => report.failures as f64,
                }
            }
            CellValue::Stat { stat, output } => {
                let (_, values) = output_values(c, output)?;
                match stat {
                    Stat::NonFinite => values.iter().filter(|v| !v.is_finite()).count() as f64,
                    Stat::Sum => values.iter().sum(),
                    Stat::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                    _ => values.iter().copied().fold(f64::INFINITY, f64::min),
                }
            }
        };
        if v.is_finite() {
            Ok(v)
        } else {
            Err(format!("{self} is {}, which cannot be scored", num(v)))
        }
    }
}

/// How a typed number compared with the right one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Score {
    pub accepted: bool,
    pub given: f64,
    pub truth: f64,
}

impl NumberAnswer {
    /// Score `given` against `truth` (the fixed answer, or what the cell computed).
    pub fn score(&self, given: f64, truth: f64) -> Score {
        Score {
            accepted: given.is_finite() && self.tolerance.accepts(given, truth),
            given,
            truth,
        }
    }

    /// The right answer when it is fixed; `None` when it is read from the cell.
    pub fn fixed(&self) -> Option<f64> {
        match self.truth {
            Truth::Fixed(v) => Some(v),
            Truth::Cell(_) => None,
        }
    }
}

impl NumberTolerance {
    pub fn accepts(&self, given: f64, truth: f64) -> bool {
        match *self {
            NumberTolerance::Within { relative, absolute } => {
                (given - truth).abs() <= absolute + relative * truth.abs()
            }
            NumberTolerance::Factor(f) => {
                given != 0.0
                    && truth != 0.0
                    && given.signum() == truth.signum()
                    && (given / truth).max(truth / given) <= f
            }
        }
    }
}

impl fmt::Display for NumberTolerance {
    /// In words: "within 5 % or 0.5", "within a factor of 10".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            NumberTolerance::Within { relative, absolute } => {
                let parts: Vec<String> = [
                    // Rounded so that 0.05 reads as 5 %, not 5.000000000000001 %.
                    (relative > 0.0).then(|| format!("{} %", num((relative * 1e8).round() / 1e6))),
                    (absolute > 0.0).then(|| num(absolute)),
                ]
                .into_iter()
                .flatten()
                .collect();
                write!(f, "within {}", parts.join(" + "))
            }
            NumberTolerance::Factor(x) => write!(f, "within a factor of {}", num(x)),
        }
    }
}

impl Score {
    /// How far off the learner was, in words: "exact", "0.12 too high (1.6 %)", "3.2 times too
    /// low".
    pub fn how_far(&self) -> String {
        let (g, t) = (self.given, self.truth);
        if !g.is_finite() {
            return "not a number".into();
        }
        if g == t {
            return "exact".into();
        }
        let side = if g > t { "high" } else { "low" };
        if t != 0.0 && g != 0.0 && g.signum() == t.signum() {
            let ratio = (g / t).max(t / g);
            if ratio >= 2.0 {
                return format!("{} times too {side}", short(ratio));
            }
            let pct = ((g - t) / t).abs() * 100.0;
            return format!("{} too {side} ({} %)", short((g - t).abs()), short(pct));
        }
        format!("{} too {side}", short((g - t).abs()))
    }
}

/// A number with 2 significant digits for a sentence.
fn short(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return num(x);
    }
    let digits = (2 - 1 - x.abs().log10().floor() as i32).max(0) as usize;
    if (1e-4..1e6).contains(&x.abs()) {
        format!("{x:.digits$}")
    } else {
        format!("{x:.1e}")
    }
}
