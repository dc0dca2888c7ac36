//! Numbers written for people: the non-finite values by name ([`Special`]) and finite ones with a
//! fixed number of significant digits ([`format_significant`], [`format_value`]). A leaf module:
//! every layer uses it (the ops' notes, the check's reports, charts, the UI), and it imports nothing
//! of the crate.

use serde::Serialize;
use std::fmt;

/// A value that is not a finite number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Special {
    Nan,
    PosInf,
    NegInf,
}

impl Special {
    /// `None` for a finite value.
    pub fn of(v: f64) -> Option<Special> {
        if v.is_nan() {
            Some(Special::Nan)
        } else if v == f64::INFINITY {
            Some(Special::PosInf)
        } else if v == f64::NEG_INFINITY {
            Some(Special::NegInf)
        } else {
            None
        }
    }

    /// The label a chart shows for it: "NaN", "+inf" or "-inf".
    pub fn label(self) -> &'static str {
        match self {
            Special::Nan => "NaN",
            Special::PosInf => "+inf",
            Special::NegInf => "-inf",
        }
    }
}

impl fmt::Display for Special {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A value written for a chart label: "NaN", "+inf", "-inf", or the number with 4 significant
/// digits (scientific notation outside 1e-3..1e5).
pub fn format_value(v: f64) -> String {
    format_significant(v, 4)
}

/// A value with `digits` significant digits: "NaN", "+inf", "-inf", and scientific notation
/// outside 1e-3..10^(digits+1). Tables use 7 (what an f32 holds), chart labels 4.
pub fn format_significant(v: f64, digits: usize) -> String {
    if let Some(special) = Special::of(v) {
        return special.label().to_owned();
    }
    if v == 0.0 {
        return "0".to_owned();
    }
    let digits = digits.clamp(1, 17);
    let magnitude = v.abs();
    if !(1e-3..10f64.powi(digits as i32 + 1)).contains(&magnitude) {
        return format!("{v:.prec$e}", prec = digits - 1);
    }
    let decimals = (digits as i32 - 1 - magnitude.log10().floor() as i32).clamp(0, 16) as usize;
    let text = format!("{v:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// A number as a message shows it: the shortest form that reads back as the same value, in
/// scientific notation when very large or small (`1e300`, not 301 digits).
pub fn fmt_number(v: f64) -> String {
    if v == 0.0 || !v.is_finite() || (1e-4..1e16).contains(&v.abs()) {
        format!("{v}")
    } else {
        format!("{v:e}")
    }
}
