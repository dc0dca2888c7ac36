//! Logits topic: logit (log-odds), sigmoid (its inverse) and logsigmoid, element-wise.
//!
//! The algorithm every engine implements (CUDA `kernels/logits.cu`, WGSL `shaders/logits.wgsl`, CPU
//! `engine/cpu/mod.rs`), in f32 arithmetic on the dtype-rounded input, result rounded to the dtype:
//! - `logit(p)`: with eps, first clamp p to [lo, hi] (lo = f32(eps), hi = 1 - lo in f32, as torch).
//!   Then ln(p / (1 - p)). Edge values are explicit, not left to the hardware: p = 0 -> -inf,
//!   p = 1 -> +inf, p < 0, p > 1 or NaN -> NaN (torch.logit([0, 1, 1.5, -0.1]) = [-inf, inf, nan, nan]).
//! - `sigmoid(x)`: x >= 0: 1 / (1 + e^-x); x < 0: e^x / (1 + e^x). Never evaluates e^(+large), so
//!   nothing overflows; the result underflows to 0 only where the true value is below f32's range.
//! - `logsigmoid(x)` = min(x, 0) - ln(1 + e^-|x|) (log1p where the engine has it). Exact where
//!   log(sigmoid(x)) gives -inf: logsigmoid(-200) = -200.
//!
//! The f64 functions below are the reference: the same formulas in f64, which REFERENCE.md's values
//! test.

/// logit(p) = ln(p / (1 - p)) in f64; `bounds` = the (lo, hi) clamp when eps is given.
pub fn logit_ref(p: f64, bounds: Option<(f64, f64)>) -> f64 {
    if p.is_nan() {
        return f64::NAN;
    }
    let p = match bounds {
        Some((lo, hi)) => p.clamp(lo, hi),
        None => p,
    };
    if !(0.0..=1.0).contains(&p) {
        f64::NAN
    } else if p == 0.0 {
        f64::NEG_INFINITY
    } else if p == 1.0 {
        f64::INFINITY
    } else {
        (p / (1.0 - p)).ln()
    }
}

/// sigmoid(x) = 1 / (1 + e^-x) in f64, written so that e^(+large) is never formed.
pub fn sigmoid_ref(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// logsigmoid(x) = min(x, 0) - ln(1 + e^-|x|) in f64.
pub fn logsigmoid_ref(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    x.min(0.0) - (-x.abs()).exp().ln_1p()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn logit_edge_values_match_torch() {
        // torch.logit([0, 1, 1.5, -0.1]) = [-inf, inf, nan, nan]
        assert_eq!(logit_ref(0.0, None), f64::NEG_INFINITY);
        assert_eq!(logit_ref(1.0, None), f64::INFINITY);
        assert!(logit_ref(1.5, None).is_nan());
        assert!(logit_ref(-0.1, None).is_nan());
        assert!(logit_ref(f64::NAN, None).is_nan());
        assert_eq!(logit_ref(0.5, None), 0.0);
    }

    #[test]
    fn logit_with_eps_clamps_to_published_range() {
        // eps = 1e-6 in fp32: logits clamp to [-13.8155, 13.8023] (REFERENCE.md).
        let lo = 1e-6f32;
        let hi = 1.0f32 - lo;
        let b = Some((lo as f64, hi as f64));
        assert!(close(logit_ref(0.0, b), -13.8155, 1e-4));
        assert!(close(logit_ref(1.0, b), 13.8023, 1e-4));
        assert!(
            close(logit_ref(1.5, b), 13.8023, 1e-4),
            "clamped from above"
        );
        assert!(
            close(logit_ref(-0.1, b), -13.8155, 1e-4),
            "clamped from below"
        );
    }

    #[test]
    fn sigmoid_inverts_logit() {
        for p in [1e-9, 0.001, 0.25, 0.5, 0.9, 0.999999] {
            assert!(
                close(sigmoid_ref(logit_ref(p, None)), p, 1e-15 + 1e-12 * p),
                "p = {p}"
            );
        }
    }

    #[test]
    fn sigmoid_tails() {
        // True sigmoid(-100) = 3.72e-44 (fp32 torch returns 0: 1/(1+exp(100)) with exp(100) = inf).
        assert!(close(sigmoid_ref(-100.0), 3.720075976020836e-44, 1e-57));
        assert_eq!(sigmoid_ref(800.0), 1.0);
        assert!(sigmoid_ref(-800.0) == 0.0); // below f64's range: an honest underflow
        // fp16 sigmoid(-20) = 0: the true 2.06e-9 is below half of f16's smallest subnormal (2^-25).
        assert!(crate::dtype::DType::F16.round_f64(sigmoid_ref(-20.0)) == 0.0);
    }

    #[test]
    fn logsigmoid_is_exact_where_log_sigmoid_underflows() {
        // logsigmoid(-200) = -200 while log(sigmoid(-200)) = -inf in fp32.
        assert_eq!(logsigmoid_ref(-200.0), -200.0);
        assert_eq!(
            ((sigmoid_ref(-200.0) as f32) as f64).ln(),
            f64::NEG_INFINITY
        );
        assert!(close(logsigmoid_ref(0.0), -std::f64::consts::LN_2, 1e-15));
        assert!(close(logsigmoid_ref(30.0), -9.357622968840175e-14, 1e-26));
        for x in [-50.0, -3.0, -0.1, 0.7, 12.0] {
            assert!(
                close(
                    logsigmoid_ref(x),
                    sigmoid_ref(x).ln(),
                    1e-13 * (1.0 + x.abs())
                ),
                "x = {x}"
            );
        }
    }
}
