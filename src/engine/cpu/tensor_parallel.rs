//! linear and the tensor-parallel ops on the CPU engine: the rank program of
//! `src/ops/tensor_parallel.rs` executed on `Vec<f32>` buffers, one per rank and role, in f32
//! arithmetic with the same summation orders as the kernels (dot products in order j = 0..in-1,
//! row sums in the 256-lane tree order of [`tp::lane_tree_sum`], all-reduces in rank order).
//! The exps of the cross-entropy are this engine's vectorised `vmath::exp` (within 1 ULP; see
//! `vmath.rs`), and its row maxima and sums of exps run as SIMD loops. Ranks run one after the
//! other; a step with many rows is split over the engine's threads.

use super::{CpuEngine, vmath};
use crate::dtype::DType;
use crate::engine::{EngineError, OpOutput, TimingSource};
use crate::ops::OpRequest;
use crate::ops::tensor_parallel::{self as tp, BufId, Collective, Program, Step, TpOp};
use std::borrow::Cow;
use std::time::Instant;

/// Work (multiply-adds or exps) below which a step runs on the calling thread.
const PARALLEL_FROM: usize = 1 << 16;

/// This engine's registration of the topic.
pub(crate) static TOPIC: super::CpuTopic = super::CpuTopic {
    topic: "tensor_parallel",
    execute: run_request,
};

fn run_request(engine: &CpuEngine, req: &OpRequest) -> Result<OpOutput, EngineError> {
    execute(engine, req, crate::engine::topic_op::<TpOp>(req)?)
}

fn execute(
    engine: &CpuEngine,
    req: &OpRequest,
    op: &TpOp,
) -> Result<OpOutput, EngineError> {
    let start = Instant::now();
    let mut kernel_time = None;
    let ((values, aux), ()) = tp::run_and_assemble(op, req, |program| {
        let outputs = run(engine, program, req.dtype);
        // The time of the op's own program (the unsplit one runs after it).
        kernel_time.get_or_insert(start.elapsed());
        Ok::<_, EngineError>((outputs, ()))
    })?;
    Ok(OpOutput::new(
        req.output_shape(),
        req.dtype,
        values,
        kernel_time.unwrap_or_default(),
        TimingSource::WallClock,
        start.elapsed(),
    )
    .with_aux(aux))
}

/// Execute a program; returns its outputs in order.
fn run(engine: &CpuEngine, program: Program<'_>, dtype: DType) -> Vec<Vec<f32>> {
    let Program {
        buffers,
        steps,
        outputs,
        ..
    } = program;
    let mut bufs: Vec<Cow<'_, [f32]>> = buffers
        .into_iter()
        .map(|b| b.init.unwrap_or_else(|| Cow::Owned(vec![0.0; b.len])))
        .collect();
    let threads = engine.threads();
    for step in &steps {
        exec(step, &mut bufs, dtype, threads);
    }
    outputs
        .iter()
        .map(|o| o.from.collect(|id| &bufs[id][..]))
        .collect()
}

/// Take a buffer out to write it (the steps never read and write the same buffer).
fn take(bufs: &mut [Cow<'_, [f32]>], id: BufId) -> Vec<f32> {
    std::mem::replace(&mut bufs[id], Cow::Owned(Vec::new())).into_owned()
}

/// Fill `out` (rows of `row_len` values) with `f(row, out_row)`, over threads when the work is
/// large.
fn rows_parallel(
    out: &mut [f32],
    row_len: usize,
    work_per_row: usize,
    threads: usize,
    f: impl Fn(usize, &mut [f32]) + Sync,
) {
    if row_len == 0 {
        return;
    }
    let rows = out.len() / row_len;
    let threads = if rows * work_per_row < PARALLEL_FROM {
        1
    } else {
        threads.max(1)
    };
    let per = rows.div_ceil(threads).max(1);
    super::for_each_chunk(out, per * row_len, |c, chunk| {
        for (d, o) in chunk.chunks_mut(row_len).enumerate() {
            f(c * per + d, o);
        }
    });
}

vmath::simd_dispatch! {
    /// The largest value of a row (NaN skipped, as `f32::max` does), vectorised.
    fn row_max(row: &[f32]) -> f32 {
        vmath::max(row)
    }
}

vmath::simd_dispatch! {
    /// Σ_j e^(row_j - m) in [`tp::lane_tree_sum`]'s order, vectorised: lane l of [`tp::LANES`]
    /// adds values l, l + 256, ... in order from 0.0, which is a running sum of whole 256-value
    /// chunks lane by lane; then the same tree over the lanes.
    fn sum_exp(row: &[f32], m: f32) -> f32 {
        let mut lanes = [0.0f32; tp::LANES];
        for chunk in row.chunks(tp::LANES) {
            for (lane, &v) in lanes.iter_mut().zip(chunk) {
                *lane += vmath::exp(v - m);
            }
        }
        let mut stride = tp::LANES / 2;
        while stride > 0 {
            for l in 0..stride {
                lanes[l] += lanes[l + stride];
            }
            stride /= 2;
        }
        lanes[0]
    }
}

fn exec(step: &Step, bufs: &mut [Cow<'_, [f32]>], dtype: DType, threads: usize) {
    match *step {
        Step::Linear {
            x,
            w,
            b,
            y,
            inner,
            out,
            ..
        } => {
            let mut yv = take(bufs, y);
            let (xv, wv) = (&bufs[x], &bufs[w]);
            let bv = b.map(|b| &bufs[b]);
            rows_parallel(&mut yv, out, out * inner, threads, |i, yrow| {
                let xr = &xv[i * inner..(i + 1) * inner];
                for (o, yo) in yrow.iter_mut().enumerate() {
                    let wr = &wv[o * inner..(o + 1) * inner];
                    // In order, one rounding per product and per addition (no fused multiply-add),
                    // as the tiled kernels do.
                    let mut acc = 0.0f32;
                    for (a, c) in xr.iter().zip(wr) {
                        acc += a * c;
                    }
                    *yo = match bv {
                        Some(bv) => acc + bv[o],
                        None => acc,
                    };
                }
            });
            bufs[y] = Cow::Owned(yv);
        }
        Step::EmbedMasked {
            ids,
            table,
            y,
            h,
            start,
            count,
            ..
        } => {
            let mut yv = take(bufs, y);
            let (iv, tv) = (&bufs[ids], &bufs[table]);
            for (i, row) in yv.chunks_mut(h.max(1)).enumerate() {
                let id = iv[i] as usize;
                if (start..start + count).contains(&id) {
                    let local = id - start;
                    row.copy_from_slice(&tv[local * h..(local + 1) * h]);
                } else {
                    // -0.0: the exact identity of the all-reduce's addition.
                    row.fill(-0.0);
                }
            }
            bufs[y] = Cow::Owned(yv);
        }
        Step::LocalMax { x, out, cols, .. } => {
            let mut ov = take(bufs, out);
            let xv = &bufs[x];
            rows_parallel(&mut ov, 1, cols, threads, |i, m| {
                m[0] = row_max(&xv[i * cols..(i + 1) * cols]);
            });
            bufs[out] = Cow::Owned(ov);
        }
        Step::Predicted {
            x,
            targets,
            max,
            out,
            cols,
            start,
            ..
        } => {
            let mut ov = take(bufs, out);
            let (xv, tv, mv) = (&bufs[x], &bufs[targets], &bufs[max]);
            for (i, p) in ov.iter_mut().enumerate() {
                let t = tv[i] as usize;
                *p = if (start..start + cols).contains(&t) {
                    xv[i * cols + (t - start)] - mv[i]
                } else {
                    0.0
                };
            }
            bufs[out] = Cow::Owned(ov);
        }
        Step::SumExp {
            x, max, out, cols, ..
        } => {
            let mut ov = take(bufs, out);
            let (xv, mv) = (&bufs[x], &bufs[max]);
            rows_parallel(&mut ov, 1, cols, threads, |i, s| {
                s[0] = sum_exp(&xv[i * cols..(i + 1) * cols], mv[i]);
            });
            bufs[out] = Cow::Owned(ov);
        }
        Step::Loss {
            sum_exp,
            predicted,
            out,
            ..
        } => {
            let mut ov = take(bufs, out);
            let (sv, pv) = (&bufs[sum_exp], &bufs[predicted]);
            for (i, l) in ov.iter_mut().enumerate() {
                *l = sv[i].ln() - pv[i];
            }
            bufs[out] = Cow::Owned(ov);
        }
        Step::Collective {
            collective,
            ref inputs,
            ref outputs,
        } => match collective {
            Collective::AllReduce { op, .. } => {
                // Reduce into rank 0's output in rank order, then broadcast.
                let mut acc = bufs[inputs[0]].to_vec();
                for &src in &inputs[1..] {
                    for (a, &v) in acc.iter_mut().zip(bufs[src].iter()) {
                        *a = op.apply(*a, v);
                    }
                }
                for &dst in &outputs[1..] {
                    bufs[dst] = Cow::Owned(acc.clone());
                }
                bufs[outputs[0]] = Cow::Owned(acc);
            }
            Collective::AllGather { rows, chunk } => {
                let k = inputs.len();
                let mut full = vec![0.0f32; rows * chunk * k];
                for (s, &src) in inputs.iter().enumerate() {
                    let shard = &bufs[src];
                    for i in 0..rows {
                        full[i * chunk * k + s * chunk..i * chunk * k + (s + 1) * chunk]
                            .copy_from_slice(&shard[i * chunk..(i + 1) * chunk]);
                    }
                }
                for &dst in &outputs[1..] {
                    bufs[dst] = Cow::Owned(full.clone());
                }
                bufs[outputs[0]] = Cow::Owned(full);
            }
        },
        Step::Finish {
            src,
            bias,
            dst,
            cols,
            ..
        } => {
            let mut dv = take(bufs, dst);
            let sv = &bufs[src];
            match bias {
                Some(b) => {
                    let bv = &bufs[b];
                    for (i, (d, &s)) in dv.iter_mut().zip(sv.iter()).enumerate() {
                        *d = dtype.round(s + bv[i % cols]);
                    }
                }
                None => {
                    for (d, &s) in dv.iter_mut().zip(sv.iter()) {
                        *d = dtype.round(s);
                    }
                }
            }
            bufs[dst] = Cow::Owned(dv);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Engine;
    use crate::ops::{Op, Tensor};

    fn run_op(op: TpOp, x: Tensor, extra: Vec<(String, Tensor)>) -> OpOutput {
        let req = OpRequest::with_inputs(Op::new(op), DType::F32, x, extra).unwrap();
        CpuEngine::new().run(&req).unwrap()
    }

    #[test]
    fn sum_exp_adds_in_the_kernels_lane_order() {
        // Bit for bit the sum of tp::lane_tree_sum (the CUDA and WGSL order), at lengths around
        // the 256 lanes, with values whose sums round differently in other orders.
        for len in [0usize, 1, 255, 256, 257, 1000, 50304] {
            let row: Vec<f32> = (0..len)
                .map(|j| ((j * 7919) % 1009) as f32 * 0.013 - 6.5)
                .collect();
            let m = 0.37;
            let want = tp::lane_tree_sum(len, |j| vmath::exp(row[j] - m));
            assert_eq!(sum_exp(&row, m).to_bits(), want.to_bits(), "len {len}");
        }
        assert_eq!(row_max(&[1.0, f32::NAN, 3.0, -2.0]), 3.0);
    }

    #[test]
    fn linear_matches_a_hand_computed_product() {
        // x = [[1, 2]], w = [[3, 4], [5, 6]], b = [0.5, -1]: y = [11.5, 16].
        let out = run_op(
            TpOp::Linear,
            Tensor::row(vec![1.0, 2.0]),
            vec![
                (
                    "w".into(),
                    Tensor::matrix(2, 2, vec![3.0, 4.0, 5.0, 6.0]).unwrap(),
                ),
                ("b".into(), Tensor::row(vec![0.5, -1.0])),
            ],
        );
        assert_eq!(out.values, vec![11.5, 16.0]);
        assert!(out.aux.is_empty());
    }

    #[test]
    fn row_parallel_adds_the_bias_once() {
        let x = Tensor::row(vec![1.0, 2.0, 3.0, 4.0]);
        let w = Tensor::matrix(1, 4, vec![1.0; 4]).unwrap();
        let out = run_op(
            TpOp::RowParallelLinear { ranks: 4 },
            x,
            vec![("w".into(), w), ("b".into(), Tensor::row(vec![100.0]))],
        );
        assert_eq!(out.values, vec![110.0]);
        let partials = out.aux("partials").unwrap();
        assert_eq!(partials.shape, vec![4, 1, 1]);
        assert_eq!(partials.values, vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(out.aux("unsplit").unwrap().values, vec![110.0]);
    }

    #[test]
    fn embedding_is_bit_identical_even_for_negative_zero() {
        let table = Tensor::matrix(4, 2, vec![1.0, -0.0, 2.0, 3.0, -0.0, 5.0, 6.0, 7.0]).unwrap();
        let ids = Tensor {
            shape: vec![4],
            data: vec![3.0, 2.0, 0.0, 1.0],
        };
        let out = run_op(
            TpOp::VocabParallelEmbedding { ranks: 4 },
            ids,
            vec![("table".into(), table.clone())],
        );
        let plain: Vec<f32> = [3, 2, 0, 1]
            .iter()
            .flat_map(|&i: &usize| table.data[i * 2..i * 2 + 2].to_vec())
            .collect();
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&out.values), bits(&plain));
    }
}
