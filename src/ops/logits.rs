//! Logits topic: logit (log-odds), sigmoid (its inverse) and logsigmoid, element-wise.
//!
//! The algorithm every engine implements (CUDA `kernels/logits.cu`, WGSL `shaders/logits.wgsl`, CPU
//! `engine/cpu/logits.rs`), in f32 arithmetic on the dtype-rounded input, result rounded to the dtype:
//! - `logit(p)`: with eps, first clamp p to [lo, hi] (lo = f32(eps), hi = 1 - lo in f32, as torch).
//!   Then ln(p / (1 - p)). Edge values are explicit, not left to the hardware: p = 0 -> -inf,
//!   p = 1 -> +inf, p < 0, p > 1 or NaN -> NaN (torch.logit([0, 1, 1.5, -0.1]) = [-inf, inf, nan, nan]).
//! - `sigmoid(x)`: x >= 0: 1 / (1 + e^-x); x < 0: e^x / (1 + e^x). Never evaluates e^(+large), so
//!   nothing overflows; the result underflows to 0 only where the true value is below f32's range.
//! - `logsigmoid(x)` = min(x, 0) - ln(1 + e^-|x|) (log1p where the engine has it). Exact where
//!   log(sigmoid(x)) gives -inf: logsigmoid(-200) = -200.
//!
//! The f64 functions below are the reference: the same formulas in f64, which the edge values of docs/numerics.md
//! test.

use super::case::{Draw, BenchSpec, Case, Expect, Input, SIZES};
use super::tolerance::Tolerance;
use super::{
    DTYPE_PARAM, InputDecl, Op, OpDef, OpError, OpKind, OpRequest, ParamKind, ParamSpec,
    ParamValues, Reference, Topic, TopicOp, check_float,
};
use crate::dtype::DType;
use serde::Serialize;

/// The topic, as listed in [`super::TOPICS`].
pub static TOPIC: LogitsTopic = LogitsTopic;

const X: &[InputDecl] = &[InputDecl::float(
    "x",
    "the input tensor; the op works on each value",
)];

const EPS: ParamSpec = ParamSpec {
    name: "eps",
    kind: ParamKind::Float {
        min: 0.0,
        max: 0.49,
        default: f64::NAN,
        log_scale: false,
        integer: false,
    },
    help: "optional: clamp p to [eps, 1-eps] (bounds rounded to f32, as torch.logit does); absent = no clamp",
};

pub const LOGIT: OpKind = OpKind::new(&OpDef {
    name: "logit",
    topic: "logits",
    summary: "log-odds ln(p/(1-p)) element-wise; optional eps clamps p to [eps, 1-eps]; output shape = x",
    inputs: X,
    params: &[EPS, DTYPE_PARAM],
    draw: Draw::Uniform { lo: 0.0, hi: 1.0 },
});

pub const SIGMOID: OpKind = OpKind::new(&OpDef {
    name: "sigmoid",
    topic: "logits",
    summary: "1/(1+e^-x) element-wise, evaluated without overflow; output shape = x",
    inputs: X,
    params: &[DTYPE_PARAM],
    draw: Draw::LOGITS,
});

pub const LOGSIGMOID: OpKind = OpKind::new(&OpDef {
    name: "logsigmoid",
    topic: "logits",
    summary: "ln(sigmoid(x)) = min(x,0) - ln(1+e^-|x|) element-wise; output shape = x",
    inputs: X,
    params: &[DTYPE_PARAM],
    draw: Draw::LOGITS,
});

/// The element-wise ops of this topic, parameters resolved.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum LogitsOp {
    /// `eps`: clamp p to [lo, hi] with lo = f32(eps), hi = f32(1 - lo), before the log-odds.
    Logit { eps: Option<f64> },
    Sigmoid,
    #[serde(rename = "logsigmoid")]
    LogSigmoid,
}

impl LogitsOp {
    /// For `logit` with eps: the clamp bounds every engine uses, computed in f32 as torch.logit
    /// does (lo = f32(eps), hi = 1 - lo in f32). With eps=1e-6 they give logits in
    /// [-13.8155, 13.8023].
    pub fn logit_bounds(&self) -> Option<(f32, f32)> {
        match *self {
            LogitsOp::Logit { eps: Some(eps) } => {
                let lo = eps as f32;
                Some((lo, 1.0f32 - lo))
            }
            _ => None,
        }
    }
}

/// The topic's registration: its three ops, their parsing and check cases.
pub struct LogitsTopic;

impl Topic for LogitsTopic {
    fn name(&self) -> &'static str {
        "logits"
    }

    fn ops(&self) -> &'static [OpKind] {
        &[LOGIT, SIGMOID, LOGSIGMOID]
    }

    fn parse(&self, kind: OpKind, values: &ParamValues) -> Result<Op, OpError> {
        let op = match kind.name() {
            "logit" => LogitsOp::Logit {
                eps: values.get_float("eps"),
            },
            "sigmoid" => LogitsOp::Sigmoid,
            "logsigmoid" => LogitsOp::LogSigmoid,
            other => return Err(OpError::UnknownOp(other.into())),
        };
        Ok(Op::new(op))
    }

    fn cases(&self, _large: bool) -> Vec<Case> {
        cases()
    }

    fn bench(&self, size: (usize, usize), _gpu: bool) -> Vec<BenchSpec> {
        let (rows, cols) = size;
        [LogitsOp::Sigmoid, LogitsOp::Logit { eps: None }]
            .into_iter()
            .zip([3, 4])
            .map(|(op, seed)| BenchSpec {
                op: Op::new(op),
                dtype: DType::F32,
                shape: vec![rows, cols],
                both_kernels: false,
                seed,
            })
            .collect()
    }
}

impl TopicOp for LogitsOp {
    fn kind(&self) -> OpKind {
        match self {
            LogitsOp::Logit { .. } => LOGIT,
            LogitsOp::Sigmoid => SIGMOID,
            LogitsOp::LogSigmoid => LOGSIGMOID,
        }
    }

    fn validate(&self) -> Result<(), OpError> {
        match *self {
            LogitsOp::Logit { eps: Some(eps) } => check_float("eps", eps, LOGIT),
            _ => Ok(()),
        }
    }

    fn describe(&self) -> String {
        match self {
            LogitsOp::Logit { eps: Some(e) } => format!("logit eps={e}"),
            LogitsOp::Logit { eps: None } => "logit".into(),
            LogitsOp::Sigmoid => "sigmoid".into(),
            LogitsOp::LogSigmoid => "logsigmoid".into(),
        }
    }

    fn reference(&self, req: &OpRequest) -> Reference {
        let x = req.x.data.iter().map(|&v| v as f64);
        let values = match self {
            LogitsOp::Logit { .. } => {
                let bounds = self.logit_bounds().map(|(lo, hi)| (lo as f64, hi as f64));
                x.map(|p| logit_ref(p, bounds)).collect()
            }
            LogitsOp::Sigmoid => x.map(sigmoid_ref).collect(),
            LogitsOp::LogSigmoid => x.map(logsigmoid_ref).collect(),
        };
        Reference {
            values,
            aux: Vec::new(),
        }
    }

    /// The storage dtype's bounds with the floor f32 arithmetic cannot beat: 2^-30 for sigmoid (a
    /// tiny probability's relative error comes from rounding its exponent's argument), 2^-21 for
    /// the log-valued logit and logsigmoid (a logarithm of a value near 1 is only accurate in
    /// absolute terms on GPUs).
    fn tolerance(&self, dtype: DType) -> Tolerance {
        let floor = match self {
            LogitsOp::Sigmoid => 2f64.powi(-30),
            LogitsOp::Logit { .. } | LogitsOp::LogSigmoid => 2f64.powi(-21),
        };
        Tolerance::for_dtype(dtype).with_floor(floor)
    }

    fn notes(&self, req: &OpRequest) -> Vec<String> {
        let nan = req.x.data.iter().filter(|v| v.is_nan()).count();
        if nan > 0 {
            vec![format!(
                "{nan} NaN input value(s): NaN propagates to the outputs that depend on them"
            )]
        } else {
            Vec::new()
        }
    }
}

/// This topic's cases for `kernelbook check`: each op in every dtype over PyTorch's softmax test
/// sizes (logit on U(0, 1), sigmoid on N(0, 4²), logsigmoid on N(0, 8²)), and the edge values
/// (docs/numerics.md, "Logits").
fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    let mut seed = 1u64;
    let mut next_seed = || {
        seed += 1;
        seed
    };
    let random = [
        (LogitsOp::Logit { eps: None }, "uniform(0,1)"),
        (LogitsOp::Logit { eps: Some(1e-6) }, "uniform(0,1)"),
        (LogitsOp::Sigmoid, "normal(0,4)"),
        (LogitsOp::LogSigmoid, "normal(0,8)"),
    ];
    let row = |v: &[f32]| Input::Rows(vec![v.to_vec()]);
    for dtype in DType::ALL {
        for (op, dist) in &random {
            for (rows, cols) in SIZES {
                let seed = next_seed();
                let input = match op {
                    LogitsOp::Logit { .. } => Input::Uniform {
                        rows,
                        cols,
                        lo: 0.0,
                        hi: 1.0,
                        seed,
                    },
                    LogitsOp::Sigmoid => Input::Normal {
                        rows,
                        cols,
                        scale: 4.0,
                        seed,
                    },
                    LogitsOp::LogSigmoid => Input::Normal {
                        rows,
                        cols,
                        scale: 8.0,
                        seed,
                    },
                };
                out.push(Case::new(
                    format!("{} {dist} {rows}x{cols}", op.describe()),
                    Op::new(op.clone()),
                    dtype,
                    input,
                    Expect::Match,
                ));
            }
        }
        // torch.logit([0, 1, 1.5, -0.1]) = [-inf, inf, nan, nan]; with eps=1e-6 clamped to
        // [-13.8155, 13.8023]; sigmoid(-100) underflows in f32, sigmoid(-20) is 0 in f16;
        // logsigmoid(-200) = -200 where log(sigmoid(-200)) = -inf.
        let edges = [
            (
                "logit edge values",
                LogitsOp::Logit { eps: None },
                row(&[0.0, 1.0, 1.5, -0.1, 0.5, 0.25, f32::NAN]),
            ),
            (
                "logit eps=1e-6 edge values",
                LogitsOp::Logit { eps: Some(1e-6) },
                row(&[0.0, 1.0, 1.5, -0.1, 0.5]),
            ),
            (
                "sigmoid tails",
                LogitsOp::Sigmoid,
                row(&[-100.0, -20.0, 0.0, 20.0, 100.0, f32::NAN]),
            ),
            (
                "logsigmoid tails",
                LogitsOp::LogSigmoid,
                row(&[-200.0, -20.0, 0.0, 30.0, 200.0]),
            ),
        ];
        for (name, op, input) in edges {
            out.push(Case::new(
                name.into(),
                Op::new(op),
                dtype,
                input,
                Expect::Match,
            ));
        }
    }
    out
}

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
        // eps = 1e-6 in fp32: logits clamp to [-13.8155, 13.8023] (torch.logit; docs/numerics.md).
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
