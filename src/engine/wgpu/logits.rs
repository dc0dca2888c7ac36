//! logit, sigmoid and logsigmoid on the wgpu engine: `shaders/logits.wgsl`, one invocation per
//! element (`logits_main`), the op chosen by the uniform's `op` field.

use super::rowwise::RowParams;
use super::{WgpuEngine, WgpuTopic, one_kernel};
use crate::engine::{EngineError, OpOutput, topic_op};
use crate::ops::OpRequest;
use crate::ops::logits::LogitsOp;

/// This engine's registration of the topic.
pub(crate) static TOPIC: WgpuTopic = WgpuTopic {
    topic: "logits",
    source: include_str!("../../../shaders/logits.wgsl"),
    probe_entries: &[ENTRY],
    has_fast_kernel: one_kernel,
    supports,
    execute,
};

/// The shader's entry point.
const ENTRY: &str = "logits_main";

fn supports(engine: &WgpuEngine, req: &OpRequest) -> Result<(), EngineError> {
    if req.x.is_empty() {
        return Ok(());
    }
    engine.row_plan(req, true).map(drop)
}

fn execute(engine: &WgpuEngine, req: &OpRequest) -> Result<OpOutput, EngineError> {
    let op = topic_op::<LogitsOp>(req)?;
    let plan = engine.row_plan(req, true)?;
    engine.run_rows("logits", ENTRY, req, plan.n, &params(op, req, &plan), plan.grid)
}

/// The uniform for `op`: 0 logit (with the clamp bounds when eps is given), 1 sigmoid, 2
/// logsigmoid.
fn params(op: &LogitsOp, req: &OpRequest, plan: &super::rowwise::RowPlan) -> RowParams {
    let mut p = RowParams::new(req.dtype, plan);
    match op {
        LogitsOp::Logit { .. } => {
            p.op = 0;
            if let Some((lo, hi)) = op.logit_bounds() {
                (p.clamp, p.lo, p.hi) = (1, lo, hi);
            }
        }
        LogitsOp::Sigmoid => p.op = 1,
        LogitsOp::LogSigmoid => p.op = 2,
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;
    use crate::engine::wgpu::rowwise::RowPlan;
    use crate::ops::{Op, Tensor};

    #[test]
    fn logit_params_carry_the_f32_clamp() {
        let op = LogitsOp::Logit { eps: Some(1e-6) };
        let req = OpRequest::new(Op::new(op.clone()), DType::F16, Tensor::row(vec![0.5])).unwrap();
        let plan = RowPlan {
            rows: 1,
            cols: 1,
            n: 1,
            grid: (1, 1),
        };
        let p = params(&op, &req, &plan);
        assert_eq!((p.dtype, p.op, p.clamp), (1, 0, 1));
        assert_eq!((p.lo, p.hi), (1e-6f32, 1.0 - 1e-6f32));
    }
}
