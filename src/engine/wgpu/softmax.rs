//! softmax and log_softmax on the wgpu engine: `shaders/softmax.wgsl`, with two kernels chosen by
//! [`OpRequest::kernel`]: the simple one (`softmax_main`: one workgroup per row, three passes over
//! it; the naive softmax always runs it) and the fast one (`softmax_fast`: online max and sum, two
//! passes, vec4 loads, a limited number of workgroups looping over rows; its buffers are padded to
//! a multiple of 4 words).

use super::rowwise::{RowParams, RowPlan};
use super::{WgpuEngine, WgpuTopic};
use crate::engine::{EngineError, OpOutput, topic_op};
use crate::ops::softmax::{SoftmaxOp, runs_fast_kernel};
use crate::ops::{KernelVariant, Op, OpRequest};

/// This engine's registration of the topic.
pub(crate) static TOPIC: WgpuTopic = WgpuTopic {
    topic: "softmax",
    source: include_str!("../../../shaders/softmax.wgsl"),
    probe_entries: &[SOFTMAX_ENTRY, SOFTMAX_FAST_ENTRY],
    has_fast_kernel,
    supports,
    execute,
};

/// The simple softmax kernel: one workgroup per row, three passes over it (and naive softmax).
const SOFTMAX_ENTRY: &str = "softmax_main";
/// The fast softmax kernel: online max and sum, vec4 loads, a row loop (stable softmax and
/// log_softmax).
const SOFTMAX_FAST_ENTRY: &str = "softmax_fast";

/// The fast softmax keeps at most about this many bytes of rows in flight (workgroups x row
/// bytes), so that its second read of each row comes from the GPU's L2 cache (about 50 MB on an
/// H100 or H200) rather than from memory. One workgroup per row keeps far more in flight on a large GPU:
/// an H200 holds 8 workgroups of 256 on each of its 132 SMs, 1056 rows of 128 KB ([4096, 32000]
/// f32) = 135 MB, and every re-read misses. A guess from that arithmetic, to be measured on the GPU
/// (`KERNELBOOK_WGPU_SOFTMAX_WORKGROUPS` overrides the result).
const FAST_SOFTMAX_BYTES_IN_FLIGHT: u64 = 32 << 20;

/// The fast softmax never launches fewer workgroups than this (unless there are fewer rows): with
/// very long rows, the cache budget above would leave most of the GPU idle.
const FAST_SOFTMAX_MIN_WORKGROUPS: u32 = 256;

/// Environment variable that sets the fast softmax's workgroup count for tuning runs on a GPU
/// (0: one per row, up to the dispatch limit); unset, [`fast_softmax_workgroups`] chooses.
pub const FAST_SOFTMAX_WORKGROUPS_ENV: &str = "KERNELBOOK_WGPU_SOFTMAX_WORKGROUPS";

/// Stable softmax and log_softmax have the fast kernel; the naive softmax always runs the simple
/// one (its overflow is the lesson).
fn has_fast_kernel(op: &Op) -> bool {
    op.get::<SoftmaxOp>()
        .is_some_and(|op| runs_fast_kernel(op, KernelVariant::Fast))
}

fn supports(engine: &WgpuEngine, req: &OpRequest) -> Result<(), EngineError> {
    if req.x.is_empty() {
        return Ok(());
    }
    engine.row_plan(req, false).map(drop)
}

fn execute(engine: &WgpuEngine, req: &OpRequest) -> Result<OpOutput, EngineError> {
    let op = topic_op::<SoftmaxOp>(req)?;
    let plan = engine.row_plan(req, false)?;
    let params = params(op, req, &plan);
    if runs_fast_kernel(op, req.kernel) {
        // The fast kernel reads and writes through vec4 views: both buffers are padded to a
        // multiple of 4 words (the padding is never read as data nor returned).
        let workgroups = match fast_softmax_workgroups_override()? {
            Some(0) => plan.rows.min(engine.max_workgroups()),
            Some(w) => w.min(plan.rows).min(engine.max_workgroups()),
            None => fast_softmax_workgroups(plan.rows, plan.cols, engine.max_workgroups()),
        };
        let padded = plan.n.next_multiple_of(4);
        engine.run_rows(
            "softmax",
            SOFTMAX_FAST_ENTRY,
            req,
            padded,
            &params,
            (workgroups.max(1), 1),
        )
    } else {
        engine.run_rows("softmax", SOFTMAX_ENTRY, req, plan.n, &params, plan.grid)
    }
}

/// The uniform for `op`: 0 softmax (stable or naive), 1 log_softmax (always stable), and T.
fn params(op: &SoftmaxOp, req: &OpRequest, plan: &RowPlan) -> RowParams {
    let mut p = RowParams::new(req.dtype, plan);
    match *op {
        SoftmaxOp::Softmax {
            temperature,
            stable,
        } => {
            (p.op, p.temperature, p.stable) = (0, temperature as f32, stable as u32);
        }
        SoftmaxOp::LogSoftmax { temperature } => {
            (p.op, p.temperature, p.stable) = (1, temperature as f32, 1);
        }
    }
    p
}

/// Workgroups for the fast softmax (each loops over rows): enough that the rows in flight stay
/// within [`FAST_SOFTMAX_BYTES_IN_FLIGHT`], at least [`FAST_SOFTMAX_MIN_WORKGROUPS`], at most one
/// per row and at most `max_workgroups` (the dispatch limit per dimension).
fn fast_softmax_workgroups(rows: u32, cols: u32, max_workgroups: u32) -> u32 {
    let row_bytes = u64::from(cols).max(1) * 4; // one 32-bit word per element
    let budget =
        (FAST_SOFTMAX_BYTES_IN_FLIGHT / row_bytes).max(u64::from(FAST_SOFTMAX_MIN_WORKGROUPS));
    budget
        .min(u64::from(rows))
        .min(u64::from(max_workgroups))
        .max(1) as u32
}

/// [`FAST_SOFTMAX_WORKGROUPS_ENV`], if set; a value that is not a count is an error, not ignored.
fn fast_softmax_workgroups_override() -> Result<Option<u32>, EngineError> {
    match std::env::var(FAST_SOFTMAX_WORKGROUPS_ENV) {
        Err(_) => Ok(None),
        Ok(v) if v.trim().is_empty() => Ok(None), // set but empty: the rule, as when unset
        Ok(v) => v.trim().parse().map(Some).map_err(|_| {
            EngineError::Failed(format!(
                "{FAST_SOFTMAX_WORKGROUPS_ENV}={v:?} is not a workgroup count (0 = one per row)"
            ))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;
    use crate::ops::Tensor;

    #[test]
    fn log_softmax_params() {
        let op = SoftmaxOp::LogSoftmax { temperature: 0.05 };
        let req = OpRequest::new(Op::new(op.clone()), DType::Bf16, Tensor::row(vec![0.5])).unwrap();
        let plan = RowPlan {
            rows: 1,
            cols: 1,
            n: 1,
            grid: (1, 1),
        };
        let p = params(&op, &req, &plan);
        assert_eq!((p.dtype, p.op, p.stable, p.temperature), (2, 1, 1, 0.05f32));
    }

    #[test]
    fn fast_softmax_keeps_the_rows_in_flight_within_the_cache_budget() {
        // [4096, 32000] f32: 128 000-byte rows, 32 MiB / 128 000 = 262 workgroups.
        assert_eq!(fast_softmax_workgroups(4096, 32000, 65535), 262);
        // Longer rows: never fewer than 256 workgroups (nor more than rows).
        assert_eq!(fast_softmax_workgroups(4096, 1 << 20, 65535), 256);
        assert_eq!(fast_softmax_workgroups(100, 1 << 20, 65535), 100);
        // Short rows: one workgroup per row, up to the dispatch limit.
        assert_eq!(fast_softmax_workgroups(4096, 1000, 65535), 4096);
        assert_eq!(fast_softmax_workgroups(70_000, 3, 65535), 65535);
        assert_eq!(fast_softmax_workgroups(0, 0, 65535), 1);
    }

    #[test]
    fn naive_softmax_never_runs_the_fast_kernel() {
        let softmax = |stable| SoftmaxOp::Softmax {
            temperature: 1.0,
            stable,
        };
        let log_softmax = SoftmaxOp::LogSoftmax { temperature: 2.0 };
        let cases = [
            (softmax(true), KernelVariant::Fast, true),
            (softmax(true), KernelVariant::Simple, false),
            (softmax(false), KernelVariant::Fast, false),
            (log_softmax.clone(), KernelVariant::Fast, true),
            (log_softmax, KernelVariant::Simple, false),
        ];
        for (op, kernel, fast) in cases {
            assert_eq!(runs_fast_kernel(&op, kernel), fast, "{op:?} {kernel}");
            assert_eq!(has_fast_kernel(&Op::new(op.clone())), !op.is_naive());
        }
    }
}
