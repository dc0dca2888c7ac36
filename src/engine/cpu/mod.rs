//! The CPU engine: the same algorithms as the CUDA kernels and WGSL shaders, in f32 arithmetic with
//! results rounded to the op's dtype (f16/bf16 through `half`). It runs on every machine, so a
//! learner without a GPU still sees a real f32 computation next to the f64 reference.
//!
//! Sums use a fixed pairwise order (blocks of 8, then halving), the shape of a GPU tree reduction,
//! so the rounding errors are of the same size as the kernels'. The algorithms are specified in the
//! module comments of `src/ops/logits.rs` and `src/ops/softmax.rs`; later topics have their own
//! file here (`gumbel.rs`, `rope.rs`, `tensor_parallel.rs`) following their `src/ops` file.

mod gumbel;
mod rope;
mod tensor_parallel;

use super::{Engine, EngineError, EngineKind, OpOutput, TimingSource};
use crate::dtype::DType;
use crate::ops::{Op, OpRequest};
use std::time::{Duration, Instant};

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
        let mut y = vec![0.0f32; x.len()];
        let cols = req.x.cols();
        // Rows are independent: split them over the available threads, unless the input is so
        // small that starting threads would cost more than the work (a lesson cell's few values).
        let threads = if x.len() < PARALLEL_FROM {
            1
        } else {
            self.threads
        };
        let rows_per_chunk = req.x.rows().div_ceil(threads).max(1);
        let chunk = if req.op.is_elementwise() {
            x.len().div_ceil(threads).max(1)
        } else {
            rows_per_chunk * cols
        };
        if threads == 1 {
            run_chunk(&req.op, dtype, cols, x, &mut y);
        } else {
            std::thread::scope(|s| {
                for (xs, ys) in x.chunks(chunk).zip(y.chunks_mut(chunk)) {
                    let op = &req.op;
                    s.spawn(move || run_chunk(op, dtype, cols, xs, ys));
                }
            });
        }
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

fn run_chunk(op: &Op, dtype: DType, cols: usize, x: &[f32], y: &mut [f32]) {
    match *op {
        Op::Gumbel(_) | Op::Rope(_) | Op::TensorParallel(_) => {
            unreachable!("topic ops run in their own file")
        }
        Op::Logit { .. } => {
            let bounds = op.logit_bounds();
            for (o, &p) in y.iter_mut().zip(x) {
                *o = dtype.round(logit_f32(p, bounds));
            }
        }
        Op::Sigmoid => {
            for (o, &v) in y.iter_mut().zip(x) {
                *o = dtype.round(sigmoid_f32(v));
            }
        }
        Op::LogSigmoid => {
            for (o, &v) in y.iter_mut().zip(x) {
                *o = dtype.round(v.min(0.0) - (-v.abs()).exp().ln_1p());
            }
        }
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

fn logit_f32(p: f32, bounds: Option<(f32, f32)>) -> f32 {
    if p.is_nan() {
        return f32::NAN;
    }
    let p = match bounds {
        Some((lo, hi)) => p.clamp(lo, hi),
        None => p,
    };
    if !(0.0..=1.0).contains(&p) {
        f32::NAN
    } else if p == 0.0 {
        f32::NEG_INFINITY
    } else if p == 1.0 {
        f32::INFINITY
    } else {
        (p / (1.0 - p)).ln()
    }
}

fn sigmoid_f32(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Sum in a fixed pairwise order: sequential blocks of 8, then pairs of partial sums.
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

fn row_max(row: &[f32], t: f32) -> f32 {
    row.iter().map(|&v| v / t).fold(f32::NEG_INFINITY, f32::max)
}

pub(crate) fn softmax_stable_row(row: &[f32], t: f32, dtype: DType, out: &mut [f32]) {
    let m = row_max(row, t);
    let s = pairwise_sum(row.iter().map(|&v| (v / t - m).exp()));
    for (o, &v) in out.iter_mut().zip(row) {
        *o = dtype.round((v / t - m).exp() / s);
    }
}

fn softmax_naive_row(row: &[f32], t: f32, dtype: DType, out: &mut [f32]) {
    // Every intermediate in the storage dtype: this is what overflows in f16.
    let s = dtype.round(pairwise_sum(
        row.iter().map(|&v| dtype.round((v / t).exp())),
    ));
    for (o, &v) in out.iter_mut().zip(row) {
        *o = dtype.round(dtype.round((v / t).exp()) / s);
    }
}

fn log_softmax_row(row: &[f32], t: f32, dtype: DType, out: &mut [f32]) {
    let m = row_max(row, t);
    let ls = pairwise_sum(row.iter().map(|&v| (v / t - m).exp())).ln();
    for (o, &v) in out.iter_mut().zip(row) {
        *o = dtype.round((v / t - m) - ls);
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
