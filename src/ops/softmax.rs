//! Softmax topic: softmax (stable or naive, with temperature) and log_softmax, row-wise over the last
//! axis.
//!
//! The algorithm every engine implements (CUDA `kernels/softmax.cu`, WGSL `shaders/softmax.wgsl`,
//! CPU `engine/cpu/softmax.rs`), per row, with z_j = x_j / T computed in f32:
//! - **stable softmax**: m = max_j z_j; s = sum_j e^(z_j - m) (f32 accumulation); y_j = e^(z_j - m) / s.
//! - **naive softmax** (the "break it" variant): every intermediate lives in the storage dtype:
//!   e_j = round(e^(z_j)); s = round(sum_j e_j) (summed in f32, rounded once); y_j = round(e_j / s).
//!   In f16, e^z overflows to inf once z > ln(65504) = 11.09 and the row becomes inf/inf = NaN; it
//!   flushes to 0 below -17.33; the sum alone overflows once logsumexp > 11.09. In f32 and bf16 the
//!   limit is 88.72.
//! - **log_softmax** (always stable): y_j = (z_j - m) - ln(s).
//!
//! Outputs are rounded to the dtype. A row containing +inf is NaN (inf - inf); an all -inf row is NaN
//! (0/0), as in torch: the op's notes say so rather than hiding it. T <= 0 is rejected by
//! `validate` (torch returns NaN at T = 0).
//!
//! The reference below is the exact math in f64 (always max-subtracted, so it never overflows): the
//! naive variant is checked against the true answer, which is how its overflow shows up as a failure.
//! The scaled logits z = x / T are part of the op's definition and are formed in f32 (as
//! `torch.softmax(x / T)` forms x / T as its own f32 tensor); the reference takes that same f32 z and
//! continues in f64. Without this, a small T would amplify z's own rounding (|z| 2^-24) into relative
//! errors far above 1e-6 that no f32 kernel could avoid.

use super::case::{Draw, BenchSpec, Case, Expect, Input, LARGE, SIZES};
use super::tolerance::Tolerance;
use super::{
    DTYPE_PARAM, InputDecl, Op, OpDef, OpError, OpKind, OpRequest, ParamKind, ParamSpec,
    ParamValues, Reference, Topic, TopicOp, check_float,
};
use crate::dtype::DType;
use crate::ops::KernelVariant;
use serde::Serialize;

/// The topic, as listed in [`super::TOPICS`].
pub static TOPIC: SoftmaxTopic = SoftmaxTopic;

const X: &[InputDecl] = &[InputDecl::float(
    "x",
    "the logits; the op works along the last axis (each row on its own)",
)];

const TEMPERATURE: ParamSpec = ParamSpec {
    name: "temperature",
    kind: ParamKind::Float {
        min: 1e-3,
        max: 1e3,
        default: 1.0,
        log_scale: true,
        integer: false,
    },
    help: "divides the logits before softmax; must be > 0 (T -> 0 approaches argmax, T -> inf uniform)",
};

const STABLE: ParamSpec = ParamSpec {
    name: "stable",
    kind: ParamKind::Bool { default: true },
    help: "subtract the row max before exp (true) or exponentiate directly (false: overflows)",
};

pub const SOFTMAX: OpKind = OpKind::new(&OpDef {
    name: "softmax",
    topic: "softmax",
    summary: "row-wise e^(x/T) / sum e^(x/T) over the last axis, stable (max-subtracted) or naive; output shape = x",
    inputs: X,
    params: &[TEMPERATURE, STABLE, DTYPE_PARAM],
    draw: Draw::LOGITS,
});

pub const LOG_SOFTMAX: OpKind = OpKind::new(&OpDef {
    name: "log_softmax",
    topic: "softmax",
    summary: "row-wise x/T - max - ln(sum e^(x/T - max)) over the last axis; output shape = x",
    inputs: X,
    params: &[TEMPERATURE, DTYPE_PARAM],
    draw: Draw::LOGITS,
});

/// The row-wise ops of this topic, parameters resolved.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum SoftmaxOp {
    Softmax { temperature: f64, stable: bool },
    LogSoftmax { temperature: f64 },
}

impl SoftmaxOp {
    pub fn temperature(&self) -> f64 {
        match *self {
            SoftmaxOp::Softmax { temperature, .. } | SoftmaxOp::LogSoftmax { temperature } => {
                temperature
            }
        }
    }

    /// The naive (not max-subtracted) softmax: the "break it" variant.
    pub fn is_naive(&self) -> bool {
        matches!(self, SoftmaxOp::Softmax { stable: false, .. })
    }

    /// Stable softmax at T = 1.
    pub fn softmax() -> Op {
        Op::new(SoftmaxOp::Softmax {
            temperature: 1.0,
            stable: true,
        })
    }
}

/// The topic's registration: its two ops, their parsing, check cases and bench cases.
pub struct SoftmaxTopic;

impl Topic for SoftmaxTopic {
    fn name(&self) -> &'static str {
        "softmax"
    }

    fn ops(&self) -> &'static [OpKind] {
        &[SOFTMAX, LOG_SOFTMAX]
    }

    fn parse(&self, kind: OpKind, values: &ParamValues) -> Result<Op, OpError> {
        let temperature = values.get_float("temperature").unwrap_or(1.0);
        let op = match kind.name() {
            "softmax" => SoftmaxOp::Softmax {
                temperature,
                stable: values.get_bool("stable").unwrap_or(true),
            },
            "log_softmax" => SoftmaxOp::LogSoftmax { temperature },
            other => return Err(OpError::UnknownOp(other.into())),
        };
        Ok(Op::new(op))
    }

    fn cases(&self, large: bool) -> Vec<Case> {
        cases(large)
    }

    /// Softmax in every dtype and log_softmax in f32, each with both kernels: the fast kernel is
    /// what is compared with torch, the simple one shows what it gains.
    fn bench(&self, size: (usize, usize), _gpu: bool) -> Vec<BenchSpec> {
        let (rows, cols) = size;
        let spec = |op: SoftmaxOp, dtype, seed| BenchSpec {
            op: Op::new(op),
            dtype,
            shape: vec![rows, cols],
            both_kernels: true,
            seed,
        };
        let mut out: Vec<BenchSpec> = DType::ALL
            .into_iter()
            .map(|dtype| {
                let op = SoftmaxOp::Softmax {
                    temperature: 1.0,
                    stable: true,
                };
                spec(op, dtype, 1)
            })
            .collect();
        out.push(spec(
            SoftmaxOp::LogSoftmax { temperature: 1.0 },
            DType::F32,
            2,
        ));
        out
    }
}

impl TopicOp for SoftmaxOp {
    fn kind(&self) -> OpKind {
        match self {
            SoftmaxOp::Softmax { .. } => SOFTMAX,
            SoftmaxOp::LogSoftmax { .. } => LOG_SOFTMAX,
        }
    }

    fn validate(&self) -> Result<(), OpError> {
        let temperature = self.temperature();
        if temperature.is_finite() && temperature <= 0.0 {
            return Err(OpError::BadParam {
                name: "temperature".into(),
                reason: format!(
                    "must be > 0 (got {}): dividing by T = 0 is undefined; as T -> 0 softmax approaches a one-hot argmax",
                    super::fmt_number(temperature)
                ),
            });
        }
        check_float("temperature", temperature, self.kind())
    }

    fn describe(&self) -> String {
        match *self {
            SoftmaxOp::Softmax {
                temperature,
                stable,
            } => format!(
                "softmax T={temperature} {}",
                if stable { "stable" } else { "naive" }
            ),
            SoftmaxOp::LogSoftmax { temperature } => format!("log_softmax T={temperature}"),
        }
    }

    fn reference(&self, req: &OpRequest) -> Reference {
        let x: Vec<f64> = req.x.data.iter().map(|&v| v as f64).collect();
        let cols = req.x.cols();
        let t = self.temperature();
        let values = match self {
            SoftmaxOp::Softmax { .. } => {
                rows_ref(&x, cols, |row, out| softmax_row_ref(row, t, out))
            }
            SoftmaxOp::LogSoftmax { .. } => {
                rows_ref(&x, cols, |row, out| log_softmax_row_ref(row, t, out))
            }
        };
        Reference {
            values,
            aux: Vec::new(),
        }
    }

    /// The storage dtype's bounds with an absolute floor of 2^-30 for probabilities (a tiny p's
    /// relative error comes from rounding its exponent's argument) and 2^-21 for log_softmax (a
    /// logarithm near 1 is only accurate in absolute terms on GPUs). The naive softmax in f16/bf16
    /// keeps its intermediates in the storage dtype, so its result carries three roundings: rtol
    /// 4u and 2 ULPs.
    fn tolerance(&self, dtype: DType) -> Tolerance {
        let floor = match self {
            SoftmaxOp::Softmax { .. } => 2f64.powi(-30),
            SoftmaxOp::LogSoftmax { .. } => 2f64.powi(-21),
        };
        let t = Tolerance::for_dtype(dtype).with_floor(floor);
        if self.is_naive() && dtype != DType::F32 {
            Tolerance {
                rtol: 4.0 * dtype.unit_roundoff(),
                max_ulp: 2,
                ..t
            }
        } else {
            t
        }
    }

    fn notes(&self, req: &OpRequest) -> Vec<String> {
        let mut notes = Vec::new();
        let nan = req.x.data.iter().filter(|v| v.is_nan()).count();
        let inf = req.x.data.iter().filter(|v| v.is_infinite()).count();
        if nan > 0 {
            notes.push(format!(
                "{nan} NaN input value(s): NaN propagates to the outputs that depend on them"
            ));
        }
        if inf > 0 {
            notes.push(format!(
                "{inf} infinite input value(s): a +inf logit makes its row NaN (inf - inf); -inf logits get probability 0"
            ));
        }
        if req.x.cols() > 0 {
            let all_neg_inf = req
                .x
                .data
                .chunks(req.x.cols())
                .filter(|row| row.iter().all(|&v| v == f32::NEG_INFINITY))
                .count();
            if all_neg_inf > 0 {
                notes.push(format!(
                    "{all_neg_inf} row(s) are all -inf: softmax is 0/0 there, so those rows are NaN (as in torch)"
                ));
            }
        }
        notes
    }
}

/// This topic's cases for `kernelbook check`: both ops in every dtype over PyTorch's test sizes,
/// the naive softmax where it is safe, temperatures from 0.05 to 10, the edge values and the
/// "break it" cases where the naive softmax must really overflow; `large` adds [4096, 32000].
fn cases(large: bool) -> Vec<Case> {
    let mut out = Vec::new();
    let mut seed = 100u64;
    let mut next_seed = || {
        seed += 1;
        seed
    };
    let normal = |rows, cols, scale, seed| Input::Normal {
        rows,
        cols,
        scale,
        seed,
    };
    let stable = |temperature| SoftmaxOp::Softmax {
        temperature,
        stable: true,
    };
    let naive = |temperature| SoftmaxOp::Softmax {
        temperature,
        stable: false,
    };
    let case = |name: String, op: SoftmaxOp, dtype, input, expect| {
        Case::new(name, Op::new(op), dtype, input, expect)
    };
    for dtype in DType::ALL {
        for op in [stable(1.0), SoftmaxOp::LogSoftmax { temperature: 1.0 }] {
            for (rows, cols) in SIZES {
                let name = format!("{} normal(0,3) {rows}x{cols}", op.describe());
                let input = normal(rows, cols, 3.0, next_seed());
                out.push(case(name, op.clone(), dtype, input, Expect::Match));
            }
        }
        // Naive softmax where it is safe: small logits (|x| of order 0.5, sums far below 65504).
        for (rows, cols) in SIZES {
            let op = naive(1.0);
            let name = format!("{} normal(0,0.5) {rows}x{cols}", op.describe());
            let input = normal(rows, cols, 0.5, next_seed());
            out.push(case(name, op, dtype, input, Expect::Match));
        }
        // Temperature from near 0 to large, on both ops.
        for t in [0.05, 0.5, 2.0, 10.0] {
            for op in [stable(t), SoftmaxOp::LogSoftmax { temperature: t }] {
                let name = format!("{} normal(0,3) 31x20", op.describe());
                let input = normal(31, 20, 3.0, next_seed());
                out.push(case(name, op, dtype, input, Expect::Match));
            }
        }
        out.extend(edge_cases(dtype));
        if large {
            for op in [stable(1.0), SoftmaxOp::LogSoftmax { temperature: 1.0 }] {
                let (rows, cols) = LARGE;
                let name = format!("{} normal(0,3) {rows}x{cols}", op.describe());
                let input = normal(rows, cols, 3.0, next_seed());
                let mut c = case(name, op, dtype, input, Expect::Match);
                c.large = true;
                out.push(c);
            }
        }
    }
    out
}

/// Edge values (docs/numerics.md, "Softmax") and the overflow demonstrations.
fn edge_cases(dtype: DType) -> Vec<Case> {
    let ninf = f32::NEG_INFINITY;
    let row = |v: &[f32]| Input::Rows(vec![v.to_vec()]);
    let case = |name: String, op: SoftmaxOp, input, expect| {
        Case::new(name, Op::new(op), dtype, input, expect)
    };
    let naive = |temperature| SoftmaxOp::Softmax {
        temperature,
        stable: false,
    };
    let stable = SoftmaxOp::Softmax {
        temperature: 1.0,
        stable: true,
    };
    // Undefined rows: all -inf (0/0) and a +inf logit (inf - inf) are NaN, as in torch; NaN
    // propagates.
    let mut v = vec![case(
        "softmax undefined rows".into(),
        stable.clone(),
        Input::Rows(vec![
            vec![ninf, ninf, ninf],
            vec![f32::INFINITY, 1.0, 0.0],
            vec![f32::NAN, 1.0, 0.0],
            vec![ninf, 0.0, 1.0],
        ]),
        Expect::Match,
    )];
    // test_log_softmax_big: a shift of 1e7 (f32) or 1.5e3 (f16) to integer logits below 100
    // changes nothing.
    let shift = match dtype {
        DType::F32 => Some(1e7f32),
        DType::F16 => Some(1.5e3),
        DType::Bf16 => None, // bf16 has 8 significant bits: 1.5e3 + 99 is not representable.
    };
    if let Some(shift) = shift {
        let ints: Vec<f32> = (0..10).map(|i| (i * 11) as f32 + shift).collect();
        v.push(case(
            format!("log_softmax big shift +{shift}"),
            SoftmaxOp::LogSoftmax { temperature: 1.0 },
            row(&ints),
            Expect::Match,
        ));
    }
    // Break it: the naive softmax overflows where the stable one does not.
    let limit = if dtype == DType::F16 { 11.09f32 } else { 88.72 };
    let over = [limit + 1.0, 0.0, -1.0, 2.0];
    v.push(case(
        format!("naive softmax max(x) = {} > {limit}", over[0]),
        naive(1.0),
        row(&over),
        Expect::Breaks,
    ));
    v.push(case(
        format!("stable softmax max(x) = {}", over[0]),
        stable.clone(),
        row(&over),
        Expect::Match,
    ));
    let half = [over[0] / 2.0, 0.0, 1.0];
    v.push(case(
        format!("naive softmax T=0.5, max(x)/T = {}", over[0]),
        naive(0.5),
        row(&half),
        Expect::Breaks,
    ));
    if dtype == DType::F16 {
        // Each e^10.5 = 36316 fits f16, their sum 72631 does not: the sum alone overflows.
        v.push(case(
            "naive softmax f16 sum overflow [10.5, 10.5]".into(),
            naive(1.0),
            row(&[10.5, 10.5]),
            Expect::Breaks,
        ));
        v.push(case(
            "stable softmax [10.5, 10.5]".into(),
            stable,
            row(&[10.5, 10.5]),
            Expect::Match,
        ));
    }
    v
}

/// Whether `kernel` differs from the other variant for `op` on a GPU engine: the naive softmax
/// always runs the simple kernel (its overflow is the lesson).
pub fn runs_fast_kernel(op: &SoftmaxOp, kernel: KernelVariant) -> bool {
    kernel == KernelVariant::Fast && !op.is_naive()
}

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
    use crate::ops::Tensor;

    #[test]
    fn cases_cover_every_pytorch_size_in_every_dtype() {
        let all = TOPIC.cases(false);
        for kind in [SOFTMAX, LOG_SOFTMAX] {
            for dtype in DType::ALL {
                for (rows, cols) in SIZES {
                    assert!(
                        all.iter().any(|c| c.op.kind() == kind
                            && c.dtype == dtype
                            && c.input.shape() == (rows, cols)),
                        "{kind} {dtype} {rows}x{cols} missing"
                    );
                }
            }
        }
    }

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

    fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_softmax_params() {
        let (op, dt) = Op::parse(
            "softmax",
            &kv(&[
                ("temperature", "0.5"),
                ("stable", "false"),
                ("dtype", "f16"),
            ]),
        )
        .unwrap();
        assert_eq!(
            op,
            Op::new(SoftmaxOp::Softmax {
                temperature: 0.5,
                stable: false
            })
        );
        assert_eq!(dt, DType::F16);
    }

    #[test]
    fn rejects_bad_params_with_reasons() {
        let e = Op::parse("softmax", &kv(&[("temperature", "0")])).unwrap_err();
        assert!(e.to_string().contains("must be > 0"), "{e}");
        let e = Op::parse("softmax", &kv(&[("temperature", "-1")])).unwrap_err();
        assert!(e.to_string().contains("must be > 0"), "{e}");
        let e = Op::parse("softmax", &kv(&[("temperature", "nan")])).unwrap_err();
        assert!(e.to_string().contains("finite"), "{e}");
        let e = Op::parse("softmax", &kv(&[("temp", "1")])).unwrap_err();
        assert!(e.to_string().contains("no parameter 'temp'"), "{e}");
        let e = Op::parse("softmax", &kv(&[("stable", "maybe")])).unwrap_err();
        assert!(e.to_string().contains("not true or false"), "{e}");
        let e = Op::parse("softmax", &kv(&[("dtype", "f64")])).unwrap_err();
        assert!(e.to_string().contains("f32, f16, bf16"), "{e}");
        let e = Op::parse("logit", &kv(&[("eps", "0.7")])).unwrap_err();
        assert!(e.to_string().contains("outside"), "{e}");
        let e = Op::parse("softmaxx", &[]).unwrap_err();
        assert!(e.to_string().contains("unknown op 'softmaxx'"), "{e}");
    }

    #[test]
    fn request_rounds_input_to_dtype_and_checks_shape() {
        let x = Tensor::row(vec![1.0 + 1.0 / 4096.0]);
        let r = OpRequest::new(Op::new(crate::ops::logits::LogitsOp::Sigmoid), DType::F16, x).unwrap();
        assert_eq!(r.x.data[0], 1.0);
        assert!(Tensor::matrix(2, 3, vec![0.0; 5]).is_err());
        assert!(
            OpRequest::new(
                Op::new(crate::ops::logits::LogitsOp::Sigmoid),
                DType::F32,
                Tensor {
                    shape: vec![],
                    data: vec![1.0]
                }
            )
            .is_err()
        );
    }

    #[test]
    fn notes_name_undefined_rows() {
        let x = Tensor::matrix(
            2,
            2,
            vec![f32::NEG_INFINITY, f32::NEG_INFINITY, 1.0, f32::NAN],
        )
        .unwrap();
        let r = OpRequest::new(
            SoftmaxOp::softmax(),
            DType::F32,
            x,
        )
        .unwrap();
        let notes = r.notes().join("\n");
        assert!(notes.contains("1 row(s) are all -inf"), "{notes}");
        assert!(notes.contains("1 NaN input"), "{notes}");
    }

    #[test]
    fn logit_bounds_match_torch_f32() {
        let (lo, hi) = crate::ops::logits::LogitsOp::Logit { eps: Some(1e-6) }
            .logit_bounds()
            .unwrap();
        let l = |p: f32| ((p as f64) / (1.0 - p as f64)).ln();
        assert!((l(lo) - -13.8155).abs() < 1e-4, "{}", l(lo));
        assert!((l(hi) - 13.8023).abs() < 1e-4, "{}", l(hi));
    }
}
