//! The CPU engine: the same algorithms as the CUDA kernels and WGSL shaders, in f32 arithmetic with
//! results rounded to the op's dtype (f16/bf16 bit for bit as `half` rounds them). It runs on every
//! machine, so a learner without a GPU still sees a real f32 computation next to the f64 reference.
//!
//! Each topic has its own file here (`logits.rs`, `softmax.rs`, `gumbel.rs`, ...) following its
//! `src/ops` file, registered once in [`TOPICS`]; this file holds what they share: the engine, the
//! block-wise output writer ([`new_output`], [`CpuEngine::map_rows`]), the element-wise maps and the
//! pairwise sum. `vmath.rs` has the vectorised exp/ln and the tree sum.
//!
//! Speed: rows (or ranges, for the elementwise ops) are split over the machine's threads; each
//! thread computes about 4096 values at a time in a scratch block that stays in L1 and copies it
//! into the output (never zeroed first). The per-value code is branch-free and written over
//! fixed-size chunks, so LLVM vectorises it; `vmath::simd_dispatch!` compiles it for AVX2 as well
//! as the baseline SSE2 and picks at run time. Both give the same bits.

mod vmath;

use super::{Engine, EngineError, EngineKind, OpOutput, TimingSource};
use crate::dtype::DType;
use crate::ops::OpRequest;
use std::time::{Duration, Instant};
use vmath::CHUNK;

/// A topic the CPU engine runs: the topic's name and the function that runs its ops.
pub(crate) struct CpuTopic {
    pub topic: &'static str,
    pub execute: fn(&CpuEngine, &OpRequest) -> Result<OpOutput, EngineError>,
}

crate::topic_registry! {
    mod {
        logits,
        softmax,
        gumbel,
        rope,
        tensor_parallel,
    }
    /// Every topic this engine runs, one line each.
    static TOPICS: [&'static CpuTopic] = TOPIC;
}

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
        let topic = req.op.kind().topic();
        match TOPICS.iter().find(|t| t.topic == topic) {
            Some(t) => (t.execute)(self, req),
            None => Err(EngineError::Unsupported(format!(
                "the CPU engine has no implementation of {}",
                req.op.kind()
            ))),
        }
    }
}

impl CpuEngine {
    /// Threads this engine may use (topic files split large work over them).
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Run an element-wise or row-wise op whose output has the input's shape: `block(x, y)` fills
    /// `y` from `x` for one block of whole rows (any range, when `elementwise`). Rows are split
    /// over the engine's threads, unless the input is so small that starting threads would cost
    /// more than the work (a lesson cell's few values); each thread computes about 4096 values at
    /// a time in scratch memory that stays in L1/L2.
    pub(crate) fn map_rows(
        &self,
        req: &OpRequest,
        elementwise: bool,
        block: impl Fn(&[f32], &mut [f32]) + Sync,
    ) -> OpOutput {
        let start = Instant::now();
        let x = &req.x.data;
        let cols = req.x.cols();
        let threads = if x.len() < PARALLEL_FROM {
            1
        } else {
            self.threads
        };
        let block_len = if elementwise {
            BLOCK
        } else {
            cols * BLOCK.div_ceil(cols.max(1))
        };
        let chunk = x.len().div_ceil(threads).next_multiple_of(block_len.max(1));
        let y = new_output(
            x.len(),
            chunk,
            block_len,
            || (),
            |_, first, out| block(&x[first..first + out.len()], out),
        );
        let elapsed = start.elapsed();
        OpOutput::new(
            req.x.shape.clone(),
            req.dtype,
            y,
            elapsed,
            TimingSource::WallClock,
            elapsed,
        )
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

/// Values computed at a time in scratch memory (16 KiB of f32, in L1), before they are copied out.
const BLOCK: usize = 4096;

/// y = round(f(x)) elementwise, rounded to `dtype` (bit for bit `DType::round`) in the same loop.
#[inline(always)]
pub(crate) fn map(x: &[f32], y: &mut [f32], dtype: DType, f: impl Fn(f32) -> f32) {
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
pub(crate) fn map_in_place(y: &mut [f32], dtype: DType, f: impl Fn(f32) -> f32) {
    match dtype {
        DType::F32 => y.iter_mut().for_each(|v| *v = f(*v)),
        DType::F16 => y.iter_mut().for_each(|v| *v = vmath::round_f16(f(*v))),
        DType::Bf16 => y.iter_mut().for_each(|v| *v = vmath::round_bf16(f(*v))),
    }
}

/// Sum in a fixed pairwise order: sequential blocks of 8, then pairs of partial sums. (The Gumbel
/// topic's softmax and the naive softmax sum with it; the stable softmax uses
/// [`vmath::TreeSum`], the same shape.)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairwise_sum_matches_exact_for_small_integers() {
        assert_eq!(pairwise_sum((1..=100).map(|v| v as f32)), 5050.0);
        assert_eq!(pairwise_sum(std::iter::empty()), 0.0);
    }
}
