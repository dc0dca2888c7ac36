//! The check suite behind `kernelbook check` and the engine tests: every op x dtype over PyTorch's
//! test sizes, REFERENCE.md's edge values, and the "break it" cases where the naive softmax must
//! really overflow. Inputs are generated on demand from a seed, so the large GPU case
//! (4096 x 32000) costs memory only while it runs.

use crate::check::{self, CheckReport};
use crate::dtype::DType;
use crate::engine::{Engine, EngineError, EngineKind};
use crate::ops::{KernelVariant, Op, OpKind, OpRequest, Reference, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal, Uniform};
use serde::Serialize;
use std::time::Duration;

/// PyTorch's softmax test sizes (REFERENCE.md), all run on every engine.
pub const SIZES: [(usize, usize); 5] = [(0, 10), (10, 0), (31, 20), (33, 2049), (16, 30576)];
/// The size real GPUs are also checked at (too slow for a software adapter).
pub const LARGE: (usize, usize) = (4096, 32000);

/// What a case expects of an engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// Within tolerance of the f64 reference.
    Match,
    /// Must *not* match: the naive softmax overflowing (inf/NaN, or a sum that overflowed to inf).
    Breaks,
}

/// How a case's input is made.
#[derive(Clone, Debug)]
pub enum Input {
    /// Seeded random values: `Normal(0, scale)` or `Uniform(lo, hi)`.
    Normal {
        rows: usize,
        cols: usize,
        scale: f32,
        seed: u64,
    },
    Uniform {
        rows: usize,
        cols: usize,
        lo: f32,
        hi: f32,
        seed: u64,
    },
    /// Given values, one row per inner vector.
    Rows(Vec<Vec<f32>>),
}

impl Input {
    pub fn shape(&self) -> (usize, usize) {
        match self {
            Input::Normal { rows, cols, .. } | Input::Uniform { rows, cols, .. } => (*rows, *cols),
            Input::Rows(r) => (r.len(), r.first().map_or(0, |v| v.len())),
        }
    }

    pub fn tensor(&self) -> Tensor {
        let (rows, cols) = self.shape();
        let data: Vec<f32> = match self {
            Input::Normal { scale, seed, .. } => {
                let mut rng = StdRng::seed_from_u64(*seed);
                let normal = Normal::new(0.0f32, *scale)
                    .unwrap_or_else(|_| Normal::new(0.0, 1.0).expect("valid"));
                (0..rows * cols).map(|_| normal.sample(&mut rng)).collect()
            }
            Input::Uniform { lo, hi, seed, .. } => {
                let mut rng = StdRng::seed_from_u64(*seed);
                let uniform = Uniform::new(*lo, *hi)
                    .unwrap_or_else(|_| Uniform::new(0.0, 1.0).expect("valid"));
                (0..rows * cols).map(|_| uniform.sample(&mut rng)).collect()
            }
            Input::Rows(r) => r.iter().flatten().copied().collect(),
        };
        Tensor {
            shape: vec![rows, cols],
            data,
        }
    }
}

/// One check: an op, a dtype, an input and what to expect.
#[derive(Clone, Debug)]
pub struct Case {
    pub name: String,
    pub op: Op,
    pub dtype: DType,
    pub input: Input,
    pub expect: Expect,
    /// Only for engines on real GPU hardware (the 4096 x 32000 size).
    pub large: bool,
    /// The primary input's shape when it is not `[rows, cols]` (e.g. rope's 4-D
    /// `[batch, seq, heads, head_dim]`); must hold the same number of values.
    pub shape: Option<Vec<usize>>,
    /// The op's other inputs, by name (weights, ids, positions).
    pub extra: Vec<(String, Tensor)>,
}

impl Case {
    /// A case with one `[rows, cols]` input.
    pub fn new(name: String, op: Op, dtype: DType, input: Input, expect: Expect) -> Case {
        Case {
            name,
            op,
            dtype,
            input,
            expect,
            large: false,
            shape: None,
            extra: Vec::new(),
        }
    }

    pub fn request(&self) -> Result<OpRequest, String> {
        let mut x = self.input.tensor();
        if let Some(shape) = &self.shape {
            x = Tensor::new(shape.clone(), x.data).map_err(|e| e.to_string())?;
        }
        OpRequest::with_inputs(self.op.clone(), self.dtype, x, self.extra.clone())
            .map_err(|e| e.to_string())
    }
}

/// The whole suite. `large` adds the 4096 x 32000 softmax cases.
pub fn cases(large: bool) -> Vec<Case> {
    let mut out = Vec::new();
    let ops_random: [(Op, &str); 6] = [
        (Op::Logit { eps: None }, "uniform(0,1)"),
        (Op::Logit { eps: Some(1e-6) }, "uniform(0,1)"),
        (Op::Sigmoid, "normal(0,4)"),
        (Op::LogSigmoid, "normal(0,8)"),
        (
            Op::Softmax {
                temperature: 1.0,
                stable: true,
            },
            "normal(0,3)",
        ),
        (Op::LogSoftmax { temperature: 1.0 }, "normal(0,3)"),
    ];
    let mut seed = 1u64;
    let mut next_seed = || {
        seed += 1;
        seed
    };
    for dtype in DType::ALL {
        for (op, dist) in &ops_random {
            for (rows, cols) in SIZES {
                let input = match op.kind() {
                    OpKind::Logit => Input::Uniform {
                        rows,
                        cols,
                        lo: 0.0,
                        hi: 1.0,
                        seed: next_seed(),
                    },
                    OpKind::Sigmoid => Input::Normal {
                        rows,
                        cols,
                        scale: 4.0,
                        seed: next_seed(),
                    },
                    OpKind::LogSigmoid => Input::Normal {
                        rows,
                        cols,
                        scale: 8.0,
                        seed: next_seed(),
                    },
                    _ => Input::Normal {
                        rows,
                        cols,
                        scale: 3.0,
                        seed: next_seed(),
                    },
                };
                out.push(case(
                    format!("{} {dist} {rows}x{cols}", op.describe()),
                    op.clone(),
                    dtype,
                    input,
                    Expect::Match,
                ));
            }
        }
        // Naive softmax where it is safe: small logits (|x| of order 0.5, sums far below 65504).
        for (rows, cols) in SIZES {
            let op = Op::Softmax {
                temperature: 1.0,
                stable: false,
            };
            let input = Input::Normal {
                rows,
                cols,
                scale: 0.5,
                seed: next_seed(),
            };
            out.push(case(
                format!("{} normal(0,0.5) {rows}x{cols}", op.describe()),
                op,
                dtype,
                input,
                Expect::Match,
            ));
        }
        // Temperature from near 0 to large, on both row-wise ops.
        for t in [0.05, 0.5, 2.0, 10.0] {
            for op in [
                Op::Softmax {
                    temperature: t,
                    stable: true,
                },
                Op::LogSoftmax { temperature: t },
            ] {
                let input = Input::Normal {
                    rows: 31,
                    cols: 20,
                    scale: 3.0,
                    seed: next_seed(),
                };
                out.push(case(
                    format!("{} normal(0,3) 31x20", op.describe()),
                    op,
                    dtype,
                    input,
                    Expect::Match,
                ));
            }
        }
        out.extend(edge_cases(dtype));
        if large {
            for op in [
                Op::Softmax {
                    temperature: 1.0,
                    stable: true,
                },
                Op::LogSoftmax { temperature: 1.0 },
            ] {
                let (rows, cols) = LARGE;
                let input = Input::Normal {
                    rows,
                    cols,
                    scale: 3.0,
                    seed: next_seed(),
                };
                let mut c = case(
                    format!("{} normal(0,3) {rows}x{cols}", op.describe()),
                    op,
                    dtype,
                    input,
                    Expect::Match,
                );
                c.large = true;
                out.push(c);
            }
        }
    }
    // Each later topic lists its own cases next to its ops.
    out.extend(crate::ops::gumbel::suite_cases(large));
    out.extend(crate::ops::rope::suite_cases(large));
    out.extend(crate::ops::tensor_parallel::suite_cases(large));
    out
}

fn case(name: String, op: Op, dtype: DType, input: Input, expect: Expect) -> Case {
    Case::new(name, op, dtype, input, expect)
}

/// REFERENCE.md's edge values and the overflow demonstrations.
fn edge_cases(dtype: DType) -> Vec<Case> {
    let ninf = f32::NEG_INFINITY;
    let row = |v: &[f32]| Input::Rows(vec![v.to_vec()]);
    let mut v = vec![
        // torch.logit([0, 1, 1.5, -0.1]) = [-inf, inf, nan, nan]; with eps=1e-6 clamped to [-13.8155, 13.8023].
        case(
            "logit edge values".into(),
            Op::Logit { eps: None },
            dtype,
            row(&[0.0, 1.0, 1.5, -0.1, 0.5, 0.25, f32::NAN]),
            Expect::Match,
        ),
        case(
            "logit eps=1e-6 edge values".into(),
            Op::Logit { eps: Some(1e-6) },
            dtype,
            row(&[0.0, 1.0, 1.5, -0.1, 0.5]),
            Expect::Match,
        ),
        // sigmoid(-100) underflows in fp32, sigmoid(-20) is 0 in fp16.
        case(
            "sigmoid tails".into(),
            Op::Sigmoid,
            dtype,
            row(&[-100.0, -20.0, 0.0, 20.0, 100.0, f32::NAN]),
            Expect::Match,
        ),
        // logsigmoid(-200) = -200 where log(sigmoid(-200)) = -inf.
        case(
            "logsigmoid tails".into(),
            Op::LogSigmoid,
            dtype,
            row(&[-200.0, -20.0, 0.0, 30.0, 200.0]),
            Expect::Match,
        ),
        // Undefined rows: all -inf (0/0) and a +inf logit (inf - inf) are NaN, as in torch; NaN propagates.
        case(
            "softmax undefined rows".into(),
            Op::Softmax {
                temperature: 1.0,
                stable: true,
            },
            dtype,
            Input::Rows(vec![
                vec![ninf, ninf, ninf],
                vec![f32::INFINITY, 1.0, 0.0],
                vec![f32::NAN, 1.0, 0.0],
                vec![ninf, 0.0, 1.0],
            ]),
            Expect::Match,
        ),
    ];
    // test_log_softmax_big: a shift of 1e7 (f32) or 1.5e3 (f16) to integer logits below 100 changes nothing.
    let shift = match dtype {
        DType::F32 => Some(1e7f32),
        DType::F16 => Some(1.5e3),
        DType::Bf16 => None, // bf16 has 8 significant bits: 1.5e3 + 99 is not representable.
    };
    if let Some(shift) = shift {
        let ints: Vec<f32> = (0..10).map(|i| (i * 11) as f32 + shift).collect();
        v.push(case(
            format!("log_softmax big shift +{shift}"),
            Op::LogSoftmax { temperature: 1.0 },
            dtype,
            row(&ints),
            Expect::Match,
        ));
    }
    // Break it: the naive softmax overflows where the stable one does not.
    let limit = if dtype == DType::F16 { 11.09f32 } else { 88.72 };
    let over = [limit + 1.0, 0.0, -1.0, 2.0];
    let naive = |t: f64| Op::Softmax {
        temperature: t,
        stable: false,
    };
    let stable = Op::Softmax {
        temperature: 1.0,
        stable: true,
    };
    v.push(case(
        format!("naive softmax max(x) = {} > {limit}", over[0]),
        naive(1.0),
        dtype,
        row(&over),
        Expect::Breaks,
    ));
    v.push(case(
        format!("stable softmax max(x) = {}", over[0]),
        stable.clone(),
        dtype,
        row(&over),
        Expect::Match,
    ));
    let half = [over[0] / 2.0, 0.0, 1.0];
    v.push(case(
        format!("naive softmax T=0.5, max(x)/T = {}", over[0]),
        naive(0.5),
        dtype,
        row(&half),
        Expect::Breaks,
    ));
    if dtype == DType::F16 {
        // Each e^10.5 = 36316 fits f16, their sum 72631 does not: the sum alone overflows.
        v.push(case(
            "naive softmax f16 sum overflow [10.5, 10.5]".into(),
            naive(1.0),
            dtype,
            row(&[10.5, 10.5]),
            Expect::Breaks,
        ));
        v.push(case(
            "stable softmax [10.5, 10.5]".into(),
            stable,
            dtype,
            row(&[10.5, 10.5]),
            Expect::Match,
        ));
    }
    v
}

/// The outcome of one case on one engine.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// Ran and met the expectation.
    Pass { report: CheckReport },
    /// Ran and did not meet the expectation.
    Fail { report: CheckReport },
    /// The engine is absent or cannot run this case here (not a failure).
    Skipped { reason: String },
    /// The engine tried and failed, or the case itself is invalid.
    Error { message: String },
}

#[derive(Clone, Debug, Serialize)]
pub struct CaseResult {
    pub case: String,
    pub op: OpKind,
    pub engine: EngineKind,
    pub dtype: DType,
    /// The primary input's shape (e.g. `[rows, cols]`, or rope's `[batch, seq, heads, head_dim]`).
    pub shape: Vec<usize>,
    /// The kernel variant the GPU engine ran (`None`: the CPU, or an op with one kernel).
    pub kernel: Option<KernelVariant>,
    pub expect: Expect,
    #[serde(serialize_with = "us")]
    pub kernel_time: Duration,
    #[serde(flatten)]
    pub outcome: Outcome,
}

fn us<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1e6)
}

impl CaseResult {
    pub fn is_failure(&self) -> bool {
        matches!(self.outcome, Outcome::Fail { .. } | Outcome::Error { .. })
    }
}

/// The requests to check `req` with on `engine`: once per kernel variant when the engine has a
/// simple and a fast kernel for the op ([`EngineKind::has_kernel_variants`]); otherwise `req`
/// alone.
pub fn kernel_variants(engine: &dyn Engine, req: &OpRequest) -> Vec<OpRequest> {
    if engine.kind().has_kernel_variants(&req.op) {
        KernelVariant::ALL
            .into_iter()
            .map(|k| req.clone().with_kernel(k))
            .collect()
    } else {
        vec![req.clone()]
    }
}

/// Run one case on one engine against a reference computed once by the caller.
pub fn run_case(
    engine: &dyn Engine,
    case: &Case,
    req: &OpRequest,
    reference: &Reference,
) -> CaseResult {
    let variants = engine.kind().has_kernel_variants(&req.op);
    let mut result = CaseResult {
        case: case.name.clone(),
        kernel: variants.then_some(req.kernel),
        op: case.op.kind(),
        engine: engine.kind(),
        dtype: case.dtype,
        shape: req.x.shape.clone(),
        expect: case.expect,
        kernel_time: Duration::ZERO,
        outcome: Outcome::Skipped {
            reason: String::new(),
        },
    };
    result.outcome = match engine.run(req) {
        Ok(out) => {
            result.kernel_time = out.kernel_time;
            let report = check::check_output(req, reference, &out);
            let met = match case.expect {
                Expect::Match => report.passed,
                Expect::Breaks => !report.passed,
            };
            if met {
                Outcome::Pass { report }
            } else {
                Outcome::Fail { report }
            }
        }
        Err(EngineError::Unavailable(reason)) | Err(EngineError::Unsupported(reason)) => {
            Outcome::Skipped { reason }
        }
        Err(e) => Outcome::Error {
            message: e.to_string(),
        },
    };
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suite_covers_every_op_dtype_and_size() {
        let all = cases(false);
        // Every op has cases; the logits and softmax ops at every PyTorch size and dtype (later
        // topics pick shapes that fit their inputs, in their own files).
        for kind in OpKind::ALL {
            assert!(
                all.iter().any(|c| c.op.kind() == kind),
                "{kind}: no case in the suite"
            );
        }
        for kind in OpKind::ALL
            .into_iter()
            .filter(|k| ["logits", "softmax"].contains(&k.topic()))
        {
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
        assert!(all.iter().any(|c| c.expect == Expect::Breaks));
        assert!(!all.iter().any(|c| c.large));
        assert!(
            cases(true)
                .iter()
                .any(|c| c.large && c.input.shape() == LARGE)
        );
    }

    #[test]
    fn inputs_are_reproducible() {
        let a = Input::Normal {
            rows: 2,
            cols: 3,
            scale: 1.0,
            seed: 7,
        }
        .tensor();
        let b = Input::Normal {
            rows: 2,
            cols: 3,
            scale: 1.0,
            seed: 7,
        }
        .tensor();
        assert_eq!(a, b);
        assert_eq!(a.shape, vec![2, 3]);
    }
}
