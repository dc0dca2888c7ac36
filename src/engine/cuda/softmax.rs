//! softmax and log_softmax on the CUDA engine: `kernels/softmax.cu`, one block per row (a
//! grid-stride loop over rows beyond the grid), with the mode chosen by an argument (the kernel's
//! `MODE_*` defines). Two kernels, chosen by [`OpRequest::kernel`]: the simple one
//! (`softmax_<dtype>`: three passes over the row; the naive softmax always runs it) and the fast one
//! (`softmax_fast_<dtype>`: the row held in registers, read once and written once; online softmax
//! past 32768 values).

use super::plan::{Arg, Elem, HostData, Limits, Plan, Planned};
use super::{CudaTopic, MAX_KERNEL_ELEMENTS, THREADS};
use crate::engine::{EngineError, OpOutput, TimingSource, topic_op};
use crate::ops::softmax::{SoftmaxOp, runs_fast_kernel};
use crate::ops::{KernelVariant, Op, OpRequest};
use std::time::Duration;

/// This engine's registration of the topic.
pub(crate) static TOPIC: CudaTopic = CudaTopic {
    topic: "softmax",
    source: include_str!("../../../kernels/softmax.cu"),
    entry_points: &[
        "softmax_f32",
        "softmax_f16",
        "softmax_bf16",
        "softmax_fast_f32",
        "softmax_fast_f16",
        "softmax_fast_bf16",
    ],
    has_fast_kernel,
    smoke,
    host: plan,
};

/// Modes of `kernels/softmax.cu` (its `MODE_*` defines).
pub const MODE_SOFTMAX: i32 = 0;
pub const MODE_SOFTMAX_NAIVE: i32 = 1;
pub const MODE_LOG_SOFTMAX: i32 = 2;

/// Threads per block of the fast kernel (`FAST_THREADS` in `kernels/softmax.cu`): one block holds
/// a whole row in registers, up to `FAST_MAX_ITEMS` = 32 values per thread.
pub const FAST_THREADS: u32 = 1024;

/// Stable softmax and log_softmax have the fast kernel; the naive softmax always runs the simple
/// one (its overflow is the lesson).
fn has_fast_kernel(op: &Op) -> bool {
    op.get::<SoftmaxOp>()
        .is_some_and(|op| runs_fast_kernel(op, KernelVariant::Fast))
}

/// softmax([0, 0]) = [0.5, 0.5] exactly, with both kernels.
fn smoke() -> Vec<(Op, KernelVariant)> {
    KernelVariant::ALL
        .into_iter()
        .map(|k| (SoftmaxOp::softmax(), k))
        .collect()
}

/// `softmax_<dtype>(const T* x, T* y, unsigned rows, unsigned cols, float temperature, int mode)`
/// (the fast kernel has the same parameters): one block per row.
fn plan(req: &OpRequest, limits: &Limits) -> Result<Planned, EngineError> {
    let op = topic_op::<SoftmaxOp>(req)?;
    let (n, rows, cols) = (req.x.len(), req.x.rows(), req.x.cols());
    if n > MAX_KERNEL_ELEMENTS || rows > MAX_KERNEL_ELEMENTS || cols > MAX_KERNEL_ELEMENTS {
        return Err(EngineError::Unsupported(format!(
            "{n} elements ({rows} rows of {cols}) is beyond the kernels' 32-bit indexing (at most {MAX_KERNEL_ELEMENTS})"
        )));
    }
    let dtype = req.dtype;
    let mode = match op {
        SoftmaxOp::Softmax { stable: true, .. } => MODE_SOFTMAX,
        SoftmaxOp::Softmax { stable: false, .. } => MODE_SOFTMAX_NAIVE,
        SoftmaxOp::LogSoftmax { .. } => MODE_LOG_SOFTMAX,
    };
    let (entry, threads) = if runs_fast_kernel(op, req.kernel) {
        (format!("softmax_fast_{}", dtype.name()), FAST_THREADS)
    } else {
        (format!("softmax_{}", dtype.name()), THREADS)
    };
    let mut p = Plan::new("softmax");
    let x = p.upload("x", HostData::stored(dtype, &req.x.data));
    let y = p.zeros("y", Elem::stored(dtype), n);
    p.launch(
        entry,
        limits.grid(rows),
        threads,
        vec![
            Arg::In(x),
            Arg::Out(y),
            Arg::U32(rows as u32),
            Arg::U32(cols as u32),
            // T as f32, as the algorithm says.
            Arg::F32(op.temperature() as f32),
            Arg::I32(mode),
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
    fn constants_match_the_kernel_defines() {
        for (name, value) in [
            ("MODE_SOFTMAX", MODE_SOFTMAX),
            ("MODE_SOFTMAX_NAIVE", MODE_SOFTMAX_NAIVE),
            ("MODE_LOG_SOFTMAX", MODE_LOG_SOFTMAX),
            ("THREADS", THREADS as i32),
            ("FAST_THREADS", FAST_THREADS as i32),
        ] {
            assert!(
                TOPIC.source.lines().any(|l| l.starts_with("#define")
                    && l.split_whitespace()
                        .eq(["#define", name, &value.to_string()])),
                "softmax.cu: #define {name} {value}"
            );
        }
    }
}
