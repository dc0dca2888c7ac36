//! softmax and log_softmax on the CPU engine (`src/ops/softmax.rs` has the algorithm), per row with
//! z = x / T in f32:
//! - **stable softmax**: m = max_j z_j; e_j = exp(z_j - m) with this engine's vectorised `exp`
//!   (`vmath.rs`: within 1 ULP of the exact value, against libm's 0.5); s = Σ e_j in
//!   [`TreeSum`]'s order: lanes of 8 values summed in order, then a pairwise tree (the shape of a
//!   GPU tree reduction, so the rounding errors are of the same size as the kernels');
//!   y_j = e_j · (1 / s), one division per row as in the fast CUDA kernel (at most one rounding
//!   more than e_j / s), rounded to the dtype. With T = 1 the division z = x / 1 is skipped
//!   (exact either way).
//! - **log_softmax**: m and s the same way, then y_j = (z_j - m) - ln s (libm's `ln`, once per row).
//! - **naive softmax** (the "break it" variant): libm's `exp`, every intermediate rounded to the
//!   dtype, [`pairwise_sum`] (blocks of 8, then halving).

use super::vmath::{self, TILE, TreeSum};
use super::{CpuEngine, CpuTopic, map, map_in_place, pairwise_sum};
use crate::dtype::DType;
use crate::engine::{EngineError, OpOutput, topic_op};
use crate::ops::OpRequest;
use crate::ops::softmax::SoftmaxOp;

/// This engine's registration of the topic.
pub(crate) static TOPIC: CpuTopic = CpuTopic {
    topic: "softmax",
    execute,
};

fn execute(engine: &CpuEngine, req: &OpRequest) -> Result<OpOutput, EngineError> {
    let op = topic_op::<SoftmaxOp>(req)?;
    let (dtype, cols) = (req.dtype, req.x.cols());
    Ok(engine.map_rows(req, false, |x, y| run_block(op, dtype, cols, x, y)))
}

vmath::simd_dispatch! {
    /// One block of the output: whole rows.
    fn run_block(op: &SoftmaxOp, dtype: DType, cols: usize, x: &[f32], y: &mut [f32]) {
        match *op {
            SoftmaxOp::Softmax {
                temperature,
                stable,
            } => {
                let t = temperature as f32;
                for (row, out) in x.chunks(cols).zip(y.chunks_mut(cols)) {
                    if stable {
                        softmax_stable_row(row, t, dtype, out);
                    } else {
                        softmax_naive_row(row, t, dtype, out);
                    }
                }
            }
            SoftmaxOp::LogSoftmax { temperature } => {
                let t = temperature as f32;
                for (row, out) in x.chunks(cols).zip(y.chunks_mut(cols)) {
                    log_softmax_row(row, t, dtype, out);
                }
            }
        }
    }
}

/// m = max_j z_j of z = x / T, leaving z in `out` (with T = 1, z is x itself and `out` is not
/// touched: x / 1 = x exactly).
#[inline(always)]
fn scaled_max(row: &[f32], t: f32, out: &mut [f32]) -> f32 {
    if t == 1.0 {
        return vmath::max(row);
    }
    for (o, &v) in out.iter_mut().zip(row) {
        *o = v / t;
    }
    vmath::max(out)
}

/// Stable softmax of one row: z = x / T and its max m; e = e^(z - m) tile by tile, written into
/// `out` and summed ([`vmath::TreeSum`]); then y = e · (1 / s) (one division per row, as the fast
/// CUDA kernel does: at most one more rounding than e / s), rounded to the dtype.
#[inline(always)]
fn softmax_stable_row(row: &[f32], t: f32, dtype: DType, out: &mut [f32]) {
    let m = scaled_max(row, t, out);
    let mut sum = TreeSum::new();
    if t == 1.0 {
        for (z, e) in row.chunks(TILE).zip(out.chunks_mut(TILE)) {
            for (e, &z) in e.iter_mut().zip(z) {
                *e = vmath::exp(z - m);
            }
            sum.add_tile(e);
        }
    } else {
        for tile in out.chunks_mut(TILE) {
            for v in tile.iter_mut() {
                *v = vmath::exp(*v - m);
            }
            sum.add_tile(tile);
        }
    }
    let inv_s = 1.0 / sum.finish();
    map_in_place(out, dtype, |e| e * inv_s);
}

/// The "break it" variant, as before this engine was vectorised: libm's exp and every
/// intermediate in the storage dtype (this is what overflows in f16).
fn softmax_naive_row(row: &[f32], t: f32, dtype: DType, out: &mut [f32]) {
    let s = dtype.round(pairwise_sum(
        row.iter().map(|&v| dtype.round((v / t).exp())),
    ));
    for (o, &v) in out.iter_mut().zip(row) {
        *o = dtype.round(dtype.round((v / t).exp()) / s);
    }
}

/// log_softmax of one row: z, m and s as for softmax (the e^(z - m) only summed, a tile at a
/// time), then y = (z - m) - ln s (libm's ln, once per row), rounded to the dtype.
#[inline(always)]
fn log_softmax_row(row: &[f32], t: f32, dtype: DType, out: &mut [f32]) {
    let m = scaled_max(row, t, out);
    let z_all: &[f32] = if t == 1.0 { row } else { out };
    let mut sum = TreeSum::new();
    let mut e = [0.0f32; TILE];
    for z in z_all.chunks(TILE) {
        let e = &mut e[..z.len()];
        for (e, &z) in e.iter_mut().zip(z) {
            *e = vmath::exp(z - m);
        }
        sum.add_tile(e);
    }
    let ls = sum.finish().ln();
    if t == 1.0 {
        map(row, out, dtype, |z| (z - m) - ls);
    } else {
        map_in_place(out, dtype, |z| (z - m) - ls);
    }
}

#[cfg(test)]
mod tests {
    use crate::dtype::DType;
    use crate::engine::Engine;
    use crate::engine::cpu::CpuEngine;
    use crate::ops::softmax::SoftmaxOp;
    use crate::ops::{Op, OpRequest, Tensor};

    fn run(op: SoftmaxOp, dtype: DType, x: Vec<f32>) -> Vec<f32> {
        let req = OpRequest::new(Op::new(op), dtype, Tensor::row(x)).unwrap();
        CpuEngine::new().run(&req).unwrap().values
    }

    fn softmax(stable: bool) -> SoftmaxOp {
        SoftmaxOp::Softmax {
            temperature: 1.0,
            stable,
        }
    }

    #[test]
    fn naive_f16_overflows_past_11_09() {
        let ok = run(softmax(false), DType::F16, vec![11.0, 0.0]);
        assert!(ok.iter().all(|v| v.is_finite()), "{ok:?}");
        let broken = run(softmax(false), DType::F16, vec![11.2, 0.0]);
        assert!(broken[0].is_nan(), "inf / inf: {broken:?}");
        assert_eq!(broken[1], 0.0, "finite / inf: {broken:?}");
        let stable = run(softmax(true), DType::F16, vec![11.2, 0.0]);
        assert!(stable.iter().all(|v| v.is_finite()), "{stable:?}");
    }

    #[test]
    fn naive_sum_overflows_once_logsumexp_passes_11_09() {
        // Each e^10.5 = 36316 fits f16, but two of them (72631) do not.
        let y = run(softmax(false), DType::F16, vec![10.5, 10.5]);
        assert_eq!(y, vec![0.0, 0.0], "36316 / inf = 0");
    }
}
