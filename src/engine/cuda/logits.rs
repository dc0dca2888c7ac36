//! logit, sigmoid and logsigmoid on the CUDA engine: `kernels/logits.cu`, one launch of
//! `logits_{f32,f16,bf16}` with the op chosen by an argument (the kernel's `OP_*` defines), a
//! grid-stride loop over the values.

use super::plan::{Arg, Elem, HostData, Limits, Plan, Planned};
use super::{CudaTopic, MAX_KERNEL_ELEMENTS, THREADS, one_kernel};
use crate::engine::{EngineError, OpOutput, TimingSource, topic_op};
use crate::ops::logits::LogitsOp;
use crate::ops::{KernelVariant, Op, OpRequest};
use std::time::Duration;

/// This engine's registration of the topic.
pub(crate) static TOPIC: CudaTopic = CudaTopic {
    topic: "logits",
    source: include_str!("../../../kernels/logits.cu"),
    entry_points: &["logits_f32", "logits_f16", "logits_bf16"],
    has_fast_kernel: one_kernel,
    smoke,
    host: plan,
};

/// Op ids of `kernels/logits.cu` (its `OP_*` defines).
pub const OP_LOGIT: i32 = 0;
pub const OP_SIGMOID: i32 = 1;
pub const OP_LOGSIGMOID: i32 = 2;

/// sigmoid(0) = 0.5 exactly.
fn smoke() -> Vec<(Op, KernelVariant)> {
    vec![(Op::new(LogitsOp::Sigmoid), KernelVariant::Simple)]
}

/// `logits_<dtype>(const T* x, T* y, unsigned n, int op, int clamp, float lo, float hi)` over the
/// request's values: one thread per value, up to the grid limit.
fn plan(req: &OpRequest, limits: &Limits) -> Result<Planned, EngineError> {
    let op = topic_op::<LogitsOp>(req)?;
    let n = req.x.len();
    if n > MAX_KERNEL_ELEMENTS {
        return Err(EngineError::Unsupported(format!(
            "{n} elements is beyond the kernels' 32-bit indexing (at most {MAX_KERNEL_ELEMENTS})"
        )));
    }
    let dtype = req.dtype;
    let op_id = match op {
        LogitsOp::Logit { .. } => OP_LOGIT,
        LogitsOp::Sigmoid => OP_SIGMOID,
        LogitsOp::LogSigmoid => OP_LOGSIGMOID,
    };
    let (clamp, lo, hi) = match op.logit_bounds() {
        Some((lo, hi)) => (1, lo, hi),
        None => (0, 0.0, 1.0),
    };
    let mut p = Plan::new("logits");
    let x = p.upload("x", HostData::stored(dtype, &req.x.data));
    let y = p.zeros("y", Elem::stored(dtype), n);
    p.launch(
        format!("logits_{}", dtype.name()),
        limits.grid(n.div_ceil(THREADS as usize)),
        THREADS,
        vec![
            Arg::In(x),
            Arg::Out(y),
            Arg::U32(n as u32),
            Arg::I32(op_id),
            Arg::I32(clamp),
            Arg::F32(lo),
            Arg::F32(hi),
        ],
    );
    p.read(y);
    let shape = req.x.shape.clone();
    Ok(Planned {
        plan: p,
        decode: Box::new(move |d| {
            Ok(OpOutput::new(
                shape,
                dtype,
                d.stored(y, dtype, n)?,
                Duration::ZERO,
                TimingSource::CudaEvents,
                Duration::ZERO,
            ))
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_ids_match_the_kernel_defines() {
        for (name, value) in [
            ("OP_LOGIT", OP_LOGIT),
            ("OP_SIGMOID", OP_SIGMOID),
            ("OP_LOGSIGMOID", OP_LOGSIGMOID),
        ] {
            assert!(
                TOPIC.source.lines().any(|l| l.starts_with("#define")
                    && l.split_whitespace()
                        .eq(["#define", name, &value.to_string()])),
                "logits.cu: #define {name} {value}"
            );
        }
    }
}
