//! The check: how far an engine's result is from the f64 reference, and whether that is within the
//! tolerance for the op and dtype.
//!
//! Per element, with `ref` the f64 reference and `got` the engine's value (representable in the dtype):
//! - a NaN reference needs a NaN; an infinite reference (or one that rounds to infinity in the
//!   dtype) needs the same infinity; a finite reference with a non-finite result is a failure (that
//!   is how the naive softmax's overflow shows up);
//! - otherwise the element passes when `|got - ref| <= atol + rtol * |ref|` **or** `got` is within
//!   `max_ulp` units in the last place of `ref` rounded to the dtype (a faithfully rounded f16/bf16
//!   result is always accepted).
//!
//! Tolerances (docs/numerics.md): f32 rtol 1e-6; f16 |d| <= 2^-11 |ref| + 2^-24; bf16 |d| <= 2^-8 |ref|.
//! Each op adds the absolute floor that its f32 arithmetic cannot beat: 2^-30 for probabilities
//! (softmax, sigmoid: a tiny p whose relative error comes from rounding its exponent's argument),
//! 2^-21 for log-valued ops (log_softmax, logsigmoid, logit: a logarithm of a value near 1 is only
//! accurate in absolute terms on GPUs). The naive softmax in f16/bf16 keeps its intermediates in
//! the storage dtype, so its result carries three roundings: its tolerance is rtol 4u and 2 ULPs.
//! The reported max rel error and max ULP are taken over the elements where the relative bound is
//! the one that applies (|ref| >= atol / rtol, and a normal number of the dtype, as docs/numerics.md
//! defines rel): near zero a relative error means nothing (log_softmax of a row's dominant entry is
//! about -1e-9; 1e-15 off is "100% relative" and 10^8 ULPs) and max abs tells the story there.

use crate::dtype::DType;
use crate::engine::OpOutput;
pub use crate::ops::tolerance::Tolerance;
use crate::ops::{OpRequest, Reference};
use serde::Serialize;
use std::fmt;

/// The comparison of one result against the reference.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CheckReport {
    pub dtype: DType,
    pub elements: usize,
    /// Largest |got - ref| over elements where both are finite.
    pub max_abs: f64,
    /// Largest |got - ref| / |ref| where the relative bound applies (see the module comment).
    pub max_rel: f64,
    /// Largest ULP distance (in the dtype), over the same elements as `max_rel`.
    pub max_ulp: u64,
    pub nan_got: usize,
    pub inf_got: usize,
    pub nan_ref: usize,
    pub inf_ref: usize,
    /// Elements outside the tolerance (including non-finite where the reference is finite).
    pub failures: usize,
    /// The element furthest outside (or closest to) its tolerance: (flat index, got, ref).
    pub worst: Option<(usize, f32, f64)>,
    pub tolerance: Tolerance,
    pub passed: bool,
}

/// Compare `got` (an engine's output for `req`) with `reference` (`req.reference()`).
pub fn check(req: &OpRequest, reference: &[f64], got: &[f32]) -> CheckReport {
    compare(req.op.tolerance(req.dtype), req.dtype, reference, got)
}

/// Compare an engine's whole output for `req` (main values, then each auxiliary output the
/// reference has, matched by name) with the reference. A missing or misshapen auxiliary output is a
/// failure.
pub fn check_output(req: &OpRequest, reference: &Reference, out: &OpOutput) -> CheckReport {
    if reference.aux.is_empty() {
        return check(req, &reference.values, &out.values);
    }
    let mut want = reference.values.clone();
    let mut got = out.values.clone();
    for aux in &reference.aux {
        want.extend_from_slice(&aux.values);
        match out.aux.iter().find(|a| a.name == aux.name) {
            Some(a) => got.extend_from_slice(&a.values),
            None => got.extend(std::iter::repeat_n(f32::NAN, aux.values.len() + 1)),
        }
    }
    compare(req.op.tolerance(req.dtype), req.dtype, &want, &got)
}

/// Compare values of `dtype` against an f64 reference with a tolerance.
pub fn compare(tolerance: Tolerance, dtype: DType, reference: &[f64], got: &[f32]) -> CheckReport {
    // Below this magnitude the absolute floor dominates and relative figures are not reported.
    // Capped at 1: an op with a large absolute floor (rope's 2^-18 for values that cancel) still
    // reports the relative error of its values of order one.
    let rel_from = dtype
        .min_positive_normal()
        .max((tolerance.atol / tolerance.rtol).min(1.0));
    let mut r = CheckReport {
        dtype,
        elements: reference.len(),
        max_abs: 0.0,
        max_rel: 0.0,
        max_ulp: 0,
        nan_got: 0,
        inf_got: 0,
        nan_ref: 0,
        inf_ref: 0,
        failures: 0,
        worst: None,
        tolerance,
        passed: true,
    };
    if reference.len() != got.len() {
        r.failures = reference.len().max(got.len());
        r.passed = false;
        return r;
    }
    // Badness: how many tolerances away the element is (infinite for a class mismatch).
    let mut worst_badness = -1.0f64;
    for (i, (&want, &g)) in reference.iter().zip(got).enumerate() {
        let g64 = g as f64;
        r.nan_got += g.is_nan() as usize;
        r.inf_got += g.is_infinite() as usize;
        r.nan_ref += want.is_nan() as usize;
        r.inf_ref += want.is_infinite() as usize;
        let want_in_dtype = dtype.round_f64(want);
        let badness =
            if want.is_nan() || g.is_nan() || want_in_dtype.is_infinite() || g.is_infinite() {
                let same_class = (want.is_nan() && g.is_nan())
                    || (want_in_dtype.is_infinite() && want_in_dtype == g64);
                if same_class { 0.0 } else { f64::INFINITY }
            } else {
                let d = (g64 - want).abs();
                r.max_abs = r.max_abs.max(d);
                let ulp = dtype.ulp_distance(g64, want).unwrap_or(u64::MAX);
                if want.abs() >= rel_from {
                    r.max_rel = r.max_rel.max(d / want.abs());
                    r.max_ulp = r.max_ulp.max(ulp);
                }
                let allowed = tolerance.atol + tolerance.rtol * want.abs();
                if ulp <= tolerance.max_ulp {
                    0.0
                } else if allowed > 0.0 {
                    d / allowed
                } else if d == 0.0 {
                    0.0
                } else {
                    f64::INFINITY
                }
            };
        if badness > 1.0 {
            r.failures += 1;
        }
        if badness > worst_badness {
            worst_badness = badness;
            r.worst = Some((i, g, want));
        }
    }
    r.passed = r.failures == 0;
    r
}

/// Compact number formatting for tables: 3 significant digits, exponent when small or large.
pub fn fmt_sci(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.is_nan() || v.is_infinite() {
        format!("{v}")
    } else if (1e-3..1e4).contains(&v.abs()) {
        format!("{:.3}", v)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    } else {
        format!("{v:.2e}")
    }
}

impl CheckReport {
    /// One short line for a narrow column read from the back of a room: the verdict, then the
    /// largest ULP distance when it passed, or how many values are off (and how many are NaN or
    /// inf) when it failed. The full report is the `Display` form.
    pub fn short(&self) -> String {
        if self.passed {
            return format!("PASS · max {} ULP", self.max_ulp);
        }
        let mut s = format!("FAIL · {} of {} off", self.failures, self.elements);
        if self.nan_got > 0 {
            s.push_str(&format!(" · {} NaN", self.nan_got));
        }
        if self.inf_got > 0 {
            s.push_str(&format!(" · {} inf", self.inf_got));
        }
        s
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = if self.passed { "PASS" } else { "FAIL" };
        write!(
            f,
            "{mark} max abs {} · max rel {} · max {} ULP ({})",
            fmt_sci(self.max_abs),
            fmt_sci(self.max_rel),
            self.max_ulp,
            self.dtype
        )?;
        if self.nan_got + self.inf_got > 0 {
            write!(f, " · got {} NaN, {} inf", self.nan_got, self.inf_got)?;
        }
        if !self.passed {
            write!(
                f,
                " · {} of {} outside tolerance",
                self.failures, self.elements
            )?;
            if let Some((i, got, want)) = self.worst {
                write!(f, " (worst at {i}: got {got:e}, want {want:e})")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The absolute floors of probability-valued and log-valued ops.
    const PROBABILITY: f64 = 1.0 / 1_073_741_824.0; // 2^-30
    const LOG_VALUED: f64 = 1.0 / 2_097_152.0; // 2^-21

    fn compare(floor: f64, dtype: DType, reference: &[f64], got: &[f32]) -> CheckReport {
        super::compare(
            Tolerance::for_dtype(dtype).with_floor(floor),
            dtype,
            reference,
            got,
        )
    }

    #[test]
    fn the_short_form_says_the_verdict_and_how_far_off() {
        let pass = compare(PROBABILITY, DType::F32, &[0.25, 0.75], &[0.25, 0.75]);
        assert_eq!(pass.short(), "PASS · max 0 ULP");
        let fail = compare(
            PROBABILITY,
            DType::F32,
            &[0.25, 0.75, 0.0],
            &[f32::NAN, 0.5, f32::INFINITY],
        );
        assert!(!fail.passed);
        assert_eq!(fail.short(), "FAIL · 3 of 3 off · 1 NaN · 1 inf");
    }

    #[test]
    fn exact_match_passes() {
        let r = compare(PROBABILITY, DType::F32, &[0.25, 0.75], &[0.25, 0.75]);
        assert!(r.passed);
        assert_eq!((r.max_abs, r.max_rel, r.max_ulp), (0.0, 0.0, 0));
    }

    #[test]
    fn f32_relative_tolerance_is_1e6() {
        let want = 0.5f64;
        let inside = (want * (1.0 + 0.9e-6)) as f32;
        let outside = (want * (1.0 + 3e-6)) as f32;
        assert!(compare(PROBABILITY, DType::F32, &[want], &[inside]).passed);
        let r = compare(PROBABILITY, DType::F32, &[want], &[outside]);
        assert!(!r.passed);
        assert_eq!(r.failures, 1);
        assert!(r.to_string().starts_with("FAIL"), "{r}");
    }

    #[test]
    fn f16_accepts_faithful_rounding_only() {
        // 1 + 2^-10 is the next f16 after 1: one ULP away is accepted, two are not.
        let want = 1.0 + 2f64.powi(-12);
        assert!(compare(PROBABILITY, DType::F16, &[want], &[1.0]).passed);
        assert!(compare(PROBABILITY, DType::F16, &[want], &[1.0 + 2f32.powi(-10)]).passed);
        assert!(
            !compare(
                PROBABILITY,
                DType::F16,
                &[want],
                &[1.0 + 2.0 * 2f32.powi(-10)]
            )
            .passed
        );
    }

    #[test]
    fn non_finite_classes_must_match() {
        let nan = f64::NAN;
        let inf = f64::INFINITY;
        assert!(
            compare(
                LOG_VALUED,
                DType::F32,
                &[nan, inf, -inf],
                &[f32::NAN, f32::INFINITY, f32::NEG_INFINITY]
            )
            .passed
        );
        let r = compare(LOG_VALUED, DType::F32, &[inf], &[f32::NEG_INFINITY]);
        assert!(!r.passed);
        // The naive f16 softmax: the reference is finite, the engine overflowed.
        let r = compare(PROBABILITY, DType::F16, &[0.5, 0.5], &[f32::NAN, f32::NAN]);
        assert!(!r.passed);
        assert_eq!((r.nan_got, r.failures), (2, 2));
        assert!(r.to_string().contains("2 NaN"), "{r}");
    }

    #[test]
    fn reference_beyond_dtype_range_accepts_infinity() {
        // A true value of 1e5 is +inf in f16.
        assert!(compare(LOG_VALUED, DType::F16, &[1e5], &[f32::INFINITY]).passed);
    }

    #[test]
    fn tiny_probabilities_use_the_absolute_floor() {
        // sigmoid(-100): true 3.7e-44, fp32 torch gives 0. Within 2^-30 absolute.
        let r = compare(PROBABILITY, DType::F32, &[3.720075976020836e-44], &[0.0]);
        assert!(r.passed, "{r}");
        assert_eq!(
            r.max_rel, 0.0,
            "3.7e-44 is subnormal in f32, so it is left out of max rel"
        );
    }

    #[test]
    fn length_mismatch_fails() {
        assert!(!compare(PROBABILITY, DType::F32, &[1.0], &[]).passed);
    }
}
