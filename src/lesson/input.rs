//! A cell's inputs: given values (one row or several, NaN and infinities spelled as strings),
//! seeded random or evenly spaced generated inputs, and shapes; also the values a learner types
//! into a cell, held to the same rules. Every count is checked against [`MAX_CELL_ELEMENTS`] before
//! anything is allocated for it.

use super::body::{Entry, TomlBody, array, count, element_count, entries, finite_number, number};
use super::error::{Fail, Res, num};
use super::{InputSpec, MAX_CELL_ELEMENTS};
use std::ops::Range;
use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

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

pub(crate) fn parse_input(body: &TomlBody, v: &Spanned<DeValue<'_>>) -> Res<InputSpec> {
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

/// A shape: a non-empty list of positive whole numbers.
pub(crate) fn parse_shape(
    body: &TomlBody,
    what: &str,
    v: &Spanned<DeValue<'_>>,
) -> Res<Vec<usize>> {
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
