//! gumbel_noise and gumbel_softmax on the CPU engine: the steps of `src/ops/gumbel.rs` in f32, with
//! the same Philox4x32-10 and the same integer-exact word -> Gumbel map as the CUDA kernel and the
//! WGSL shader (they are the functions in `ops::gumbel`), so the noise, the perturbed logits
//! a = l + g, the Gumbel-max choice and the gaps d are the same bits as on the GPUs. Only e^d, the
//! row sum (pairwise, [`super::pairwise_sum`]) and the quotient are this engine's own f32
//! arithmetic (skipped altogether for a hard sample without `return_soft`). Sample rows are split
//! over the engine's threads when there are many.

use super::CpuEngine;
use crate::dtype::DType;
use crate::engine::{AuxOutput, EngineError, OpOutput, TimingSource};
use crate::ops::OpRequest;
use crate::ops::gumbel::{self as gm, GumbelOp};
use std::time::Instant;

/// Output values below which the work stays on the calling thread.
const PARALLEL_FROM: usize = 1 << 15;

pub(super) fn execute(
    engine: &CpuEngine,
    req: &OpRequest,
    op: &GumbelOp,
) -> Result<OpOutput, EngineError> {
    let start = Instant::now();
    let shape = req.output_shape();
    let cols = req.x.cols();
    let n: usize = shape.iter().product();
    let threads = if n < PARALLEL_FROM {
        1
    } else {
        engine.threads().max(1)
    };
    let samples = n.checked_div(cols).unwrap_or(0);
    let per = samples.div_ceil(threads).max(1);
    let key = gm::key_of(op.seed());
    let offset = op.offset();
    let dtype = req.dtype;
    let mut out = OpOutput::new(
        shape.clone(),
        dtype,
        Vec::new(),
        Default::default(),
        TimingSource::WallClock,
        Default::default(),
    );
    match *op {
        GumbelOp::GumbelNoise { .. } => {
            let mut y = vec![0.0f32; n];
            if cols > 0 {
                std::thread::scope(|scope| {
                    for (chunk, ys) in y.chunks_mut(per * cols).enumerate() {
                        scope.spawn(move || {
                            for (i, row) in ys.chunks_mut(cols).enumerate() {
                                gm::noise_row(key, offset, (chunk * per + i) as u32, row);
                                for v in row.iter_mut() {
                                    *v = dtype.round(*v);
                                }
                            }
                        });
                    }
                });
            }
            out.values = y;
        }
        GumbelOp::GumbelSoftmax {
            tau, hard, draws, ..
        } => {
            let inv_tau = gm::inv_tau_f32(tau);
            let keep_soft = op.soft_aux();
            let mut y = vec![0.0f32; n];
            let mut soft = vec![0.0f32; if keep_soft { n } else { 0 }];
            if cols > 0 {
                let logits = &req.x.data;
                std::thread::scope(|scope| {
                    let soft_chunks: Box<dyn Iterator<Item = &mut [f32]>> = if keep_soft {
                        Box::new(soft.chunks_mut(per * cols))
                    } else {
                        Box::new(std::iter::repeat_with(|| &mut [][..]))
                    };
                    for (chunk, (ys, ss)) in y.chunks_mut(per * cols).zip(soft_chunks).enumerate() {
                        scope.spawn(move || {
                            let mut g = vec![0.0f32; cols];
                            let mut a = vec![0.0f32; cols];
                            for (i, yr) in ys.chunks_mut(cols).enumerate() {
                                let s = chunk * per + i;
                                let r = s / draws;
                                gm::noise_row(key, offset, s as u32, &mut g);
                                let l = &logits[r * cols..(r + 1) * cols];
                                let mode = match (hard, keep_soft) {
                                    (false, _) => Sample::Soft,
                                    (true, true) => {
                                        Sample::HardWithSoft(&mut ss[i * cols..(i + 1) * cols])
                                    }
                                    (true, false) => Sample::Hard,
                                };
                                sample_row(l, &g, &mut a, inv_tau, dtype, yr, mode);
                            }
                        });
                    }
                });
            }
            out.values = y;
            if keep_soft {
                out.aux.push(AuxOutput {
                    name: gm::SOFT_AUX.into(),
                    shape,
                    values: soft,
                });
            }
        }
    }
    let elapsed = start.elapsed();
    out.kernel_time = elapsed;
    out.total_time = elapsed;
    Ok(out)
}

/// What one sample writes.
enum Sample<'a> {
    /// The soft sample, to `y`.
    Soft,
    /// The one-hot to `y`, and the soft sample to this aux row.
    HardWithSoft(&'a mut [f32]),
    /// The one-hot alone (return_soft=false): no e^d at all.
    Hard,
}

/// One sample: a = l + g and the Gumbel-max class, then e^d / Σ e^d where a soft sample is wanted.
fn sample_row(
    logits: &[f32],
    noise: &[f32],
    a: &mut [f32],
    inv_tau: f32,
    dtype: DType,
    y: &mut [f32],
    mode: Sample,
) {
    let (m, hot) = gm::perturb_row(logits, noise, a);
    let soft = |v: f32, s: f32| dtype.round(gm::gap(v, m, inv_tau).exp() / s);
    let one_hot = |j: usize| if j == hot { 1.0 } else { 0.0 };
    let sum = || super::pairwise_sum(a.iter().map(|&v| gm::gap(v, m, inv_tau).exp()));
    match mode {
        Sample::Hard => {
            for (j, o) in y.iter_mut().enumerate() {
                *o = one_hot(j);
            }
        }
        Sample::Soft => {
            let s = sum();
            for (o, &v) in y.iter_mut().zip(a.iter()) {
                *o = soft(v, s);
            }
        }
        Sample::HardWithSoft(soft_row) => {
            let s = sum();
            for (j, ((o, so), &v)) in y
                .iter_mut()
                .zip(soft_row.iter_mut())
                .zip(a.iter())
                .enumerate()
            {
                *so = soft(v, s);
                *o = one_hot(j);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::check::check_output;
    use crate::dtype::DType;
    use crate::engine::Engine;
    use crate::engine::cpu::CpuEngine;
    use crate::ops::gumbel::GumbelOp;
    use crate::ops::{Op, OpRequest, Tensor};

    #[test]
    fn cpu_matches_the_reference_in_every_dtype() {
        let engine = CpuEngine::new();
        let x =
            Tensor::matrix(3, 5, (0..15).map(|i| (i % 7) as f32 * 0.7 - 2.0).collect()).unwrap();
        for dtype in DType::ALL {
            for op in [
                GumbelOp::GumbelNoise { seed: 3, offset: 9 },
                GumbelOp::GumbelSoftmax {
                    tau: 0.1,
                    hard: true,
                    return_soft: true,
                    seed: 3,
                    offset: 0,
                    draws: 2000,
                },
                GumbelOp::GumbelSoftmax {
                    tau: 0.3,
                    hard: true,
                    return_soft: false,
                    seed: 5,
                    offset: 2,
                    draws: 11,
                },
                GumbelOp::GumbelSoftmax {
                    tau: 10.0,
                    hard: false,
                    return_soft: true,
                    seed: 4,
                    offset: 1,
                    draws: 7,
                },
            ] {
                let req = OpRequest::new(Op::Gumbel(op), dtype, x.clone()).unwrap();
                let out = engine.run(&req).unwrap();
                let report = check_output(&req, &req.reference_full(), &out);
                assert!(report.passed, "{} {dtype}: {report}", req.op.describe());
            }
        }
    }
}
