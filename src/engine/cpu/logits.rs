//! logit, sigmoid and logsigmoid on the CPU engine (`src/ops/logits.rs` has the algorithm): one
//! branch-free f32 function per op, mapped over blocks of the input with this engine's vectorised
//! `exp`, `ln` (within 1 ULP) and `ln_1p` (within 2 ULPs), rounded to the dtype in the same loop:
//! - **sigmoid** 1 / (1 + e^-x) for x >= 0 and e^x / (1 + e^x) below;
//! - **logsigmoid** min(x, 0) - ln_1p(e^-|x|);
//! - **logit** ln(p / (1 - p)) after the optional clamp.

use super::{CpuEngine, CpuTopic, map, vmath};
use crate::dtype::DType;
use crate::engine::{EngineError, OpOutput, topic_op};
use crate::ops::OpRequest;
use crate::ops::logits::LogitsOp;

/// This engine's registration of the topic.
pub(crate) static TOPIC: CpuTopic = CpuTopic {
    topic: "logits",
    execute,
};

fn execute(engine: &CpuEngine, req: &OpRequest) -> Result<OpOutput, EngineError> {
    let op = topic_op::<LogitsOp>(req)?;
    let dtype = req.dtype;
    Ok(engine.map_rows(req, true, |x, y| run_block(op, dtype, x, y)))
}

vmath::simd_dispatch! {
    /// One block of the output (any range of values).
    fn run_block(op: &LogitsOp, dtype: DType, x: &[f32], y: &mut [f32]) {
        match *op {
            LogitsOp::Logit { .. } => {
                let (lo, hi) = op
                    .logit_bounds()
                    .unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
                map(x, y, dtype, |p| logit_f32(p, lo, hi));
            }
            LogitsOp::Sigmoid => map(x, y, dtype, sigmoid_f32),
            LogitsOp::LogSigmoid => map(x, y, dtype, log_sigmoid_f32),
        }
    }
}

/// logit(p) = ln(p / (1 - p)), p first clamped to [lo, hi]. Without branches: p = 0 gives
/// ln(0) = -inf, p = 1 gives ln(inf) = inf, p outside [0, 1] a negative ratio and NaN, NaN NaN.
#[inline(always)]
fn logit_f32(p: f32, lo: f32, hi: f32) -> f32 {
    let p = if p < lo { lo } else { p };
    let p = if p > hi { hi } else { p };
    vmath::ln(p / (1.0 - p))
}

/// 1 / (1 + e^-x) for x >= 0, e^x / (1 + e^x) below: e^-|x| never overflows.
#[inline(always)]
fn sigmoid_f32(x: f32) -> f32 {
    let e = vmath::exp(-x.abs());
    let num = if x >= 0.0 { 1.0 } else { e };
    num / (1.0 + e)
}

/// ln σ(x) = min(x, 0) - ln(1 + e^-|x|).
#[inline(always)]
fn log_sigmoid_f32(x: f32) -> f32 {
    let m = if x < 0.0 { x } else { 0.0 };
    m - vmath::ln_1p(vmath::exp(-x.abs()))
}

#[cfg(test)]
mod tests {
    use crate::dtype::DType;
    use crate::engine::Engine;
    use crate::engine::cpu::CpuEngine;
    use crate::ops::logits::LogitsOp;
    use crate::ops::{Op, OpRequest, Tensor};

    fn run(op: LogitsOp, dtype: DType, x: Vec<f32>) -> Vec<f32> {
        let req = OpRequest::new(Op::new(op), dtype, Tensor::row(x)).unwrap();
        CpuEngine::new().run(&req).unwrap().values
    }

    #[test]
    fn edge_values() {
        let l = run(
            LogitsOp::Logit { eps: None },
            DType::F32,
            vec![0.0, 1.0, 1.5, -0.1],
        );
        assert_eq!(l[0], f32::NEG_INFINITY);
        assert_eq!(l[1], f32::INFINITY);
        assert!(l[2].is_nan() && l[3].is_nan());
        assert_eq!(
            run(LogitsOp::LogSigmoid, DType::F32, vec![-200.0]),
            vec![-200.0]
        );
        assert_eq!(run(LogitsOp::Sigmoid, DType::F16, vec![-20.0]), vec![0.0]);
    }
}
