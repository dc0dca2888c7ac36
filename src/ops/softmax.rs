//! Softmax topic: softmax (stable or naive, with temperature) and log_softmax, row-wise over the last
//! axis.
//!
//! The algorithm every engine implements (CUDA `kernels/softmax.cu`, WGSL `shaders/softmax.wgsl`,
//! CPU `engine/cpu/mod.rs`), per row, with z_j = x_j / T computed in f32:
//! - **stable softmax**: m = max_j z_j; s = sum_j e^(z_j - m) (f32 accumulation); y_j = e^(z_j - m) / s.
//! - **naive softmax** (the "break it" variant): every intermediate lives in the storage dtype:
//!   e_j = round(e^(z_j)); s = round(sum_j e_j) (summed in f32, rounded once); y_j = round(e_j / s).
//!   In f16, e^z overflows to inf once z > ln(65504) = 11.09 and the row becomes inf/inf = NaN; it
//!   flushes to 0 below -17.33; the sum alone overflows once logsumexp > 11.09. In f32 and bf16 the
//!   limit is 88.72.
//! - **log_softmax** (always stable): y_j = (z_j - m) - ln(s).
//!
//! Outputs are rounded to the dtype. A row containing +inf is NaN (inf - inf); an all -inf row is NaN
//! (0/0), as in torch: `OpRequest::notes` says so rather than hiding it. T <= 0 is rejected by
//! `Op::validate` (torch returns NaN at T = 0).
//!
//! The reference below is the exact math in f64 (always max-subtracted, so it never overflows): the
//! naive variant is checked against the true answer, which is how its overflow shows up as a failure.
//! The scaled logits z = x / T are part of the op's definition and are formed in f32 (as
//! `torch.softmax(x / T)` forms x / T as its own f32 tensor); the reference takes that same f32 z and
//! continues in f64. Without this, a small T would amplify z's own rounding (|z| 2^-24) into relative
//! errors far above 1e-6 that no f32 kernel could avoid.

/// Apply `f` to each row of `x` (`cols` per row) and collect the outputs.
pub fn rows_ref(x: &[f64], cols: usize, mut f: impl FnMut(&[f64], &mut [f64])) -> Vec<f64> {
    let mut out = vec![0.0; x.len()];
    if cols == 0 {
        return out;
    }
    for (row, o) in x.chunks(cols).zip(out.chunks_mut(cols)) {
        f(row, o);
    }
    out
}

/// z = x / T as the engines form it: f32 division of the f32 input by f32(T).
pub fn scaled_logit(x: f64, temperature: f64) -> f64 {
    (x as f32 / temperature as f32) as f64
}

/// softmax(x / T) of one row in f64.
pub fn softmax_row_ref(row: &[f64], temperature: f64, out: &mut [f64]) {
    let z = |v: f64| scaled_logit(v, temperature);
    let m = row.iter().map(|&v| z(v)).fold(f64::NEG_INFINITY, f64::max);
    let has_nan = row.iter().any(|v| v.is_nan());
    let mut s = 0.0;
    for (o, &v) in out.iter_mut().zip(row) {
        *o = (z(v) - m).exp();
        s += *o;
    }
    for o in out.iter_mut() {
        *o = if has_nan { f64::NAN } else { *o / s };
    }
}

/// log_softmax(x / T) of one row in f64.
pub fn log_softmax_row_ref(row: &[f64], temperature: f64, out: &mut [f64]) {
    let z = |v: f64| scaled_logit(v, temperature);
    let m = row.iter().map(|&v| z(v)).fold(f64::NEG_INFINITY, f64::max);
    let has_nan = row.iter().any(|v| v.is_nan());
    let s: f64 = row.iter().map(|&v| (z(v) - m).exp()).sum();
    let ls = s.ln();
    for (o, &v) in out.iter_mut().zip(row) {
        *o = if has_nan { f64::NAN } else { (z(v) - m) - ls };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn softmax(row: &[f64], t: f64) -> Vec<f64> {
        let mut o = vec![0.0; row.len()];
        softmax_row_ref(row, t, &mut o);
        o
    }

    fn log_softmax(row: &[f64], t: f64) -> Vec<f64> {
        let mut o = vec![0.0; row.len()];
        log_softmax_row_ref(row, t, &mut o);
        o
    }

    #[test]
    fn known_values() {
        // softmax([1, 2, 3]) = [0.09003057, 0.24472847, 0.66524096]
        let y = softmax(&[1.0, 2.0, 3.0], 1.0);
        for (a, b) in y
            .iter()
            .zip([0.09003057317038046, 0.24472847105479764, 0.6652409557748219])
        {
            assert!((a - b).abs() < 1e-15);
        }
        // log_softmax([0, 0]) = [-ln 2, -ln 2]
        for v in log_softmax(&[0.0, 0.0], 1.0) {
            assert!((v + std::f64::consts::LN_2).abs() < 1e-15);
        }
    }

    #[test]
    fn temperature_limits() {
        let row = [2.0, 1.0, 0.1, -1.0];
        let cold = softmax(&row, 0.01);
        assert!(
            (cold[0] - 1.0).abs() < 1e-30 && cold[1] < 1e-40,
            "T -> 0 is argmax: {cold:?}"
        );
        let hot = softmax(&row, 1e6);
        assert!(
            hot.iter().all(|&p| (p - 0.25).abs() < 1e-6),
            "T -> inf is uniform: {hot:?}"
        );
        // Temperature never changes the argmax.
        for t in [0.05, 0.5, 1.0, 3.0, 10.0] {
            let y = softmax(&row, t);
            let am = (0..4).max_by(|&a, &b| y[a].total_cmp(&y[b])).unwrap();
            assert_eq!(am, 0, "T = {t}");
        }
    }

    #[test]
    fn big_shift_is_harmless_in_the_reference() {
        // PyTorch test_log_softmax_big: adding 1e7 to integer logits below 100 leaves log_softmax unchanged.
        let row: Vec<f64> = (0..10).map(|i| (i * 9) as f64).collect();
        let shifted: Vec<f64> = row.iter().map(|v| v + 1e7).collect();
        for (a, b) in log_softmax(&row, 1.0)
            .iter()
            .zip(log_softmax(&shifted, 1.0))
        {
            assert!((a - b).abs() < 1e-9);
        }
    }

    #[test]
    fn undefined_rows_are_nan_like_torch() {
        let ninf = f64::NEG_INFINITY;
        assert!(softmax(&[ninf, ninf], 1.0).iter().all(|v| v.is_nan()));
        assert!(
            softmax(&[f64::INFINITY, 1.0], 1.0)
                .iter()
                .all(|v| v.is_nan())
        );
        assert!(softmax(&[f64::NAN, 1.0], 1.0).iter().all(|v| v.is_nan()));
        assert_eq!(softmax(&[ninf, 0.0], 1.0), vec![0.0, 1.0]);
    }

    #[test]
    fn empty_rows() {
        assert!(rows_ref(&[], 0, |_, _| unreachable!()).is_empty());
        assert!(rows_ref(&[], 10, |_, _| unreachable!()).is_empty());
    }
}
