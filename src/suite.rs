//! The check suite behind `kernelbook check` and the engine tests: every topic's cases (every op x
//! dtype over PyTorch's test sizes, the documented edge values, the "break it" cases that must
//! really fail), run on an engine and checked against the f64 reference. The cases themselves live
//! with their topics (`src/ops/<topic>.rs`); inputs are generated on demand from a seed, so a large
//! GPU case costs memory only while it runs.

use crate::check::{self, CheckReport};
use crate::dtype::DType;
use crate::engine::{Engine, EngineError, EngineKind};
pub use crate::ops::case::{Case, Expect, Input, LARGE, SIZES};
use crate::ops::{KernelVariant, OpKind, OpRequest, Reference};
use serde::Serialize;
use std::time::Duration;

/// Every topic's cases, in the order of the topic table. `large` adds the sizes only real GPUs are
/// checked at (4096 x 32000 and the like).
pub fn cases(large: bool) -> Vec<Case> {
    crate::ops::TOPICS
        .iter()
        .flat_map(|topic| topic.cases(large))
        .collect()
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
    fn suite_covers_every_op_in_every_dtype() {
        let all = cases(false);
        for kind in OpKind::all() {
            for dtype in DType::ALL {
                assert!(
                    all.iter().any(|c| c.op.kind() == kind && c.dtype == dtype),
                    "{kind} {dtype}: no case in the suite"
                );
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
