//! The CPU engine: the same algorithms as the CUDA kernels and WGSL shaders, in f32 arithmetic with
//! results rounded to the op's dtype (f16/bf16 bit for bit as `half` rounds them). It runs on every
//! machine, so a learner without a GPU still sees a real f32 computation next to the f64 reference.
//!
//! What this file computes, per row of the softmax ops (z = x / T in f32):
//! - **stable softmax**: m = max_j z_j; e_j = exp(z_j - m) with this engine's vectorised `exp`
//!   (`vmath.rs`: within 1 ULP of the exact value, against libm's 0.5); s = Σ e_j in
//!   [`vmath::TreeSum`]'s order: lanes of 8 values summed in order, then a pairwise tree (the
//!   shape of a GPU tree reduction, so the rounding errors are of the same size as the kernels');
//!   y_j = e_j · (1 / s), one division per row as in the fast CUDA kernel (at most one rounding
//!   more than e_j / s), rounded to the dtype. With T = 1 the division z = x / 1 is skipped
//!   (exact either way).
//! - **log_softmax**: m and s the same way, then y_j = (z_j - m) - ln s (libm's `ln`, once per row).
//! - **naive softmax** (the "break it" variant) is unchanged from the scalar engine: libm's `exp`,
//!   every intermediate rounded to the dtype, [`pairwise_sum`] (blocks of 8, then halving).
//! - **sigmoid** 1 / (1 + e^-x) for x >= 0 and e^x / (1 + e^x) below; **logsigmoid**
//!   min(x, 0) - ln_1p(e^-|x|); **logit** ln(p / (1 - p)) after the optional clamp: with
//!   `vmath`'s `exp`, `ln` (within 1 ULP) and `ln_1p` (within 2 ULPs).
//!
//! The algorithms are specified in the module comments of `src/ops/logits.rs` and
//! `src/ops/softmax.rs`; later topics have their own file here (`gumbel.rs`, `rope.rs`,
//! `tensor_parallel.rs`) following their `src/ops` file.
//!
//! Speed: rows (or ranges, for the elementwise ops) are split over the machine's threads; each
//! thread computes about 4096 values at a time in a scratch block that stays in L1 and copies it
//! into the output (never zeroed first). The per-value code is branch-free and written over
//! fixed-size chunks, so LLVM vectorises it; `vmath::simd_dispatch!` compiles it for AVX2 as well
//! as the baseline SSE2 and picks at run time. Both give the same bits.

mod gumbel;
mod rope;
mod tensor_parallel;
mod vmath;

use super::{Engine, EngineError, EngineKind, OpOutput, TimingSource};
use crate::dtype::DType;
use crate::ops::{Op, OpRequest};
use std::time::{Duration, Instant};
use vmath::{CHUNK, TILE, TreeSum};

/// Inputs with fewer values than this run on the calling thread.
const PARALLEL_FROM: usize = 1 << 14;

pub struct CpuEngine {
    threads: usize,
}

impl Default for CpuEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuEngine {
    pub fn new() -> Self {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        CpuEngine { threads }
    }
}

impl Engine for CpuEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Cpu
    }

    fn device(&self) -> String {
        format!(
            "{} · {} thread(s) · f32 arithmetic",
            std::env::consts::ARCH,
            self.threads
        )
    }

    fn is_software(&self) -> bool {
        false
    }

    fn supports(&self, _req: &OpRequest) -> Result<(), EngineError> {
        Ok(())
    }

    /// A memcpy of `bytes`, split over the engine's threads as the ops are.
    fn copy_time(&self, bytes: usize) -> Result<Duration, EngineError> {
        let words = bytes.div_ceil(4).max(1);
        let src: Vec<u32> = (0..words as u32).collect();
        // Touch every page of the destination first: the copy, not the page faults, is timed.
        let mut dst = vec![1u32; words];
        let chunk = words.div_ceil(self.threads).max(1 << 14);
        let start = Instant::now();
        std::thread::scope(|s| {
            for (d, from) in dst.chunks_mut(chunk).zip(src.chunks(chunk)) {
                s.spawn(move || d.copy_from_slice(from));
            }
        });
        let elapsed = start.elapsed();
        std::hint::black_box(&dst);
        Ok(elapsed)
    }

    fn execute(&self, req: &OpRequest) -> Result<OpOutput, EngineError> {
        match &req.op {
            Op::Gumbel(op) => return gumbel::execute(self, req, op),
            Op::Rope(op) => return rope::execute(self, req, op),
            Op::TensorParallel(op) => return tensor_parallel::execute(self, req, op),
            _ => {}
        }
        let start = Instant::now();
        let dtype = req.dtype;
        let x = &req.x.data;
        let cols = req.x.cols();
        // Rows are independent: split them over the available threads, unless the input is so
        // small that starting threads would cost more than the work (a lesson cell's few values).
        let threads = if x.len() < PARALLEL_FROM {
            1
        } else {
            self.threads
        };
        // Each thread computes a block at a time in scratch memory that stays in L1/L2: about
        // 4096 values, whole rows for the row-wise ops.
        let block = if req.op.is_elementwise() {
            BLOCK
        } else {
            cols * BLOCK.div_ceil(cols)
        };
        let chunk = x.len().div_ceil(threads).next_multiple_of(block);
        let y = new_output(
            x.len(),
            chunk,
            block,
            || (),
            |_, first, out| {
                let xs = &x[first..first + out.len()];
                run_block(&req.op, dtype, cols, xs, out);
            },
        );
        let elapsed = start.elapsed();
        Ok(OpOutput::new(
            req.x.shape.clone(),
            dtype,
            y,
            elapsed,
            TimingSource::WallClock,
            elapsed,
        ))
    }
}

impl CpuEngine {
    /// Threads this engine may use (topic files split large work over them).
    pub fn threads(&self) -> usize {
        self.threads
    }
}

/// Run `work(i, chunk)` for each chunk of `y` (`chunk_len` values; the last may be shorter): the
/// last chunk on the calling thread, the others on scoped threads, one each.
pub(crate) fn for_each_chunk<T: Send>(
    y: &mut [T],
    chunk_len: usize,
    work: impl Fn(usize, &mut [T]) + Sync,
) {
    let chunk_len = chunk_len.max(1);
    if y.len() <= chunk_len {
        if !y.is_empty() {
            work(0, y);
        }
        return;
    }
    std::thread::scope(|s| {
        let work = &work;
        let mut chunks = y.chunks_mut(chunk_len).enumerate();
        let last = chunks.next_back();
        for (i, ys) in chunks {
            s.spawn(move || work(i, ys));
        }
        if let Some((i, ys)) = last {
            work(i, ys);
        }
    });
}

/// A new output of `len` values, computed block by block: each thread takes `chunk_len` values
/// (a multiple of `block_len`), makes its scratch state with `init`, and for each block of
/// `block_len` values (the last may be shorter) calls `work(state, first, block)` with the index
/// of the block's first value and a scratch block to fill, then copies the block into the output.
///
/// The output is never zeroed (`vec![0.0; len]` would be a whole extra pass over memory): every
/// value is copied from an initialised block, and the blocks of the chunks tile `0..len`.
pub(crate) fn new_output<S>(
    len: usize,
    chunk_len: usize,
    block_len: usize,
    init: impl Fn() -> S + Sync,
    work: impl Fn(&mut S, usize, &mut [f32]) + Sync,
) -> Vec<f32> {
    let block_len = block_len.max(1);
    let chunk_len = chunk_len.max(1).next_multiple_of(block_len);
    let mut y = Vec::with_capacity(len);
    for_each_chunk(&mut y.spare_capacity_mut()[..len], chunk_len, |c, out| {
        let mut state = init();
        let mut block = vec![0.0f32; block_len.min(out.len())];
        for (b, dst) in out.chunks_mut(block_len).enumerate() {
            let block = &mut block[..dst.len()];
            work(&mut state, c * chunk_len + b * block_len, block);
            dst.write_copy_of_slice(block);
        }
    });
    // SAFETY: `for_each_chunk` gave every value of `0..len` to exactly one chunk, and the chunk's
    // loop wrote every one of its values (`write_copy_of_slice` of a block of the same length).
    unsafe { y.set_len(len) };
    y
}

vmath::simd_dispatch! {
    /// One block of the output: whole rows for the row-wise ops, any range for the elementwise ones.
    fn run_block(op: &Op, dtype: DType, cols: usize, x: &[f32], y: &mut [f32]) {
        match *op {
            Op::Gumbel(_) | Op::Rope(_) | Op::TensorParallel(_) => {
                unreachable!("topic ops run in their own file")
            }
            Op::Logit { .. } => {
                let (lo, hi) = op
                    .logit_bounds()
                    .unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
                map(x, y, dtype, |p| logit_f32(p, lo, hi));
            }
            Op::Sigmoid => map(x, y, dtype, sigmoid_f32),
            Op::LogSigmoid => map(x, y, dtype, log_sigmoid_f32),
            Op::Softmax {
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
            Op::LogSoftmax { temperature } => {
                let t = temperature as f32;
                for (row, out) in x.chunks(cols).zip(y.chunks_mut(cols)) {
                    log_softmax_row(row, t, dtype, out);
                }
            }
        }
    }
}

/// Values computed at a time in scratch memory (16 KiB of f32, in L1), before they are copied out.
const BLOCK: usize = 4096;

/// y = round(f(x)) elementwise, rounded to `dtype` (bit for bit `DType::round`) in the same loop.
#[inline(always)]
fn map(x: &[f32], y: &mut [f32], dtype: DType, f: impl Fn(f32) -> f32) {
    match dtype {
        DType::F32 => map_with(x, y, f),
        DType::F16 => map_with(x, y, |v| vmath::round_f16(f(v))),
        DType::Bf16 => map_with(x, y, |v| vmath::round_bf16(f(v))),
    }
}

/// y = f(x) elementwise, in chunks that LLVM vectorises.
#[inline(always)]
fn map_with(x: &[f32], y: &mut [f32], f: impl Fn(f32) -> f32) {
    let mut xs = x.chunks_exact(CHUNK);
    let mut ys = y.chunks_exact_mut(CHUNK);
    for (xc, yc) in (&mut xs).zip(&mut ys) {
        for (o, &v) in yc.iter_mut().zip(xc) {
            *o = f(v);
        }
    }
    for (o, &v) in ys.into_remainder().iter_mut().zip(xs.remainder()) {
        *o = f(v);
    }
}

/// y = round(f(y)) in place.
#[inline(always)]
fn map_in_place(y: &mut [f32], dtype: DType, f: impl Fn(f32) -> f32) {
    match dtype {
        DType::F32 => y.iter_mut().for_each(|v| *v = f(*v)),
        DType::F16 => y.iter_mut().for_each(|v| *v = vmath::round_f16(f(*v))),
        DType::Bf16 => y.iter_mut().for_each(|v| *v = vmath::round_bf16(f(*v))),
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

/// Sum in a fixed pairwise order: sequential blocks of 8, then pairs of partial sums. (The Gumbel
/// topic's softmax sums with it; the ops of this file use [`vmath::TreeSum`], the same shape.)
pub(crate) fn pairwise_sum(values: impl Iterator<Item = f32>) -> f32 {
    let mut partials: Vec<f32> = Vec::new();
    let mut acc = 0.0f32;
    let mut n = 0;
    for v in values {
        acc += v;
        n += 1;
        if n == 8 {
            partials.push(acc);
            acc = 0.0;
            n = 0;
        }
    }
    if n > 0 {
        partials.push(acc);
    }
    while partials.len() > 1 {
        partials = partials.chunks(2).map(|p| p.iter().sum()).collect();
    }
    partials.first().copied().unwrap_or(0.0)
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
    use super::*;
    use crate::ops::Tensor;

    fn run(op: Op, dtype: DType, x: Vec<f32>) -> Vec<f32> {
        let req = OpRequest::new(op, dtype, Tensor::row(x)).unwrap();
        CpuEngine::new().run(&req).unwrap().values
    }

    #[test]
    fn pairwise_sum_matches_exact_for_small_integers() {
        assert_eq!(pairwise_sum((1..=100).map(|v| v as f32)), 5050.0);
        assert_eq!(pairwise_sum(std::iter::empty()), 0.0);
    }

    #[test]
    fn naive_f16_overflows_past_11_09() {
        let sm = Op::Softmax {
            temperature: 1.0,
            stable: false,
        };
        let ok = run(sm.clone(), DType::F16, vec![11.0, 0.0]);
        assert!(ok.iter().all(|v| v.is_finite()), "{ok:?}");
        let broken = run(sm, DType::F16, vec![11.2, 0.0]);
        assert!(broken[0].is_nan(), "inf / inf: {broken:?}");
        assert_eq!(broken[1], 0.0, "finite / inf: {broken:?}");
        let stable = run(
            Op::Softmax {
                temperature: 1.0,
                stable: true,
            },
            DType::F16,
            vec![11.2, 0.0],
        );
        assert!(stable.iter().all(|v| v.is_finite()), "{stable:?}");
    }

    #[test]
    fn naive_sum_overflows_once_logsumexp_passes_11_09() {
        // Each e^10.5 = 36316 fits f16, but two of them (72631) do not.
        let y = run(
            Op::Softmax {
                temperature: 1.0,
                stable: false,
            },
            DType::F16,
            vec![10.5, 10.5],
        );
        assert_eq!(y, vec![0.0, 0.0], "36316 / inf = 0");
    }

    #[test]
    fn edge_values() {
        let l = run(
            Op::Logit { eps: None },
            DType::F32,
            vec![0.0, 1.0, 1.5, -0.1],
        );
        assert_eq!(l[0], f32::NEG_INFINITY);
        assert_eq!(l[1], f32::INFINITY);
        assert!(l[2].is_nan() && l[3].is_nan());
        assert_eq!(run(Op::LogSigmoid, DType::F32, vec![-200.0]), vec![-200.0]);
        assert_eq!(run(Op::Sigmoid, DType::F16, vec![-20.0]), vec![0.0]);
    }
}
