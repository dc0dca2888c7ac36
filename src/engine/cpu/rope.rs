//! rope_freqs and rope on the CPU engine: the algorithm of `src/ops/rope.rs` in f32, with Rust's
//! f32 `sin` and `cos` (libm's sinf/cosf) as this engine's sin and cos.
//!
//! Per token, the cos and sin of every frequency are computed once (like the GPU threads of one
//! token, each for its own pair), then every head's pairs are rotated. Tokens are split over the
//! engine's threads for large inputs.

use super::{CpuEngine, PARALLEL_FROM};
use crate::dtype::DType;
use crate::engine::{AuxOutput, EngineError, OpOutput, TimingSource};
use crate::ops::OpRequest;
use crate::ops::rope::{
    self, Freq, Geometry, Layout, RopeOp, Slot, by_quadrant, naive_angle, position_of, reduce,
};
use std::time::Instant;

pub(super) fn execute(
    engine: &CpuEngine,
    req: &OpRequest,
    op: &RopeOp,
) -> Result<OpOutput, EngineError> {
    let start = Instant::now();
    let dtype = req.dtype;
    let precise = op.precise_angles();
    let mut out = match *op {
        RopeOp::RopeFreqs {
            dim,
            theta,
            rotary_fraction,
            ..
        } => {
            let freqs = rope::freq_table(theta, rope::rotated_dims(rotary_fraction, dim));
            let n = freqs.len();
            let mut cos = Vec::with_capacity(req.x.len() * n);
            let mut sin = Vec::with_capacity(req.x.len() * n);
            for &p in &req.x.data {
                for f in &freqs {
                    let (c, s) = cos_sin(p as i32, f, precise);
                    cos.push(dtype.round(c));
                    sin.push(dtype.round(s));
                }
            }
            let mut shape = req.x.shape.clone();
            shape.push(n);
            let mut out = OpOutput::new(
                vec![n],
                dtype,
                freqs.iter().map(|f| dtype.round(f.inv_freq_f32)).collect(),
                Default::default(),
                TimingSource::WallClock,
                Default::default(),
            );
            out.aux = vec![
                AuxOutput {
                    name: "cos".into(),
                    shape: shape.clone(),
                    values: cos,
                },
                AuxOutput {
                    name: "sin".into(),
                    shape,
                    values: sin,
                },
            ];
            out
        }
        RopeOp::Rope { theta, .. } => {
            let g = rope::geometry(op, req)?;
            let freqs = rope::freq_table(theta, g.rot);
            let values = rotate(engine, req, &g, &freqs, precise);
            OpOutput::new(
                g.out_shape(),
                dtype,
                values,
                Default::default(),
                TimingSource::WallClock,
                Default::default(),
            )
        }
    };
    let elapsed = start.elapsed();
    out.kernel_time = elapsed;
    out.total_time = elapsed;
    Ok(out)
}

/// cos and sin of p · inv_freq: precise (reduced exactly, then sin/cos of |r| <= π/4) or naive
/// (sin/cos of the f32 angle).
fn cos_sin(p: i32, f: &Freq, precise: bool) -> (f32, f32) {
    if precise {
        let (q, r) = reduce(p, f.turns);
        by_quadrant(q, r.cos(), r.sin())
    } else {
        let a = naive_angle(p, f);
        (a.cos(), a.sin())
    }
}

/// The whole rope: tokens split over threads (each token's output is contiguous).
fn rotate(
    engine: &CpuEngine,
    req: &OpRequest,
    g: &Geometry,
    freqs: &[Freq],
    precise: bool,
) -> Vec<f32> {
    let mut y = vec![0.0f32; g.out_len()];
    let token_len = g.heads * g.head_dim;
    let tokens = g.batch * g.seq;
    if token_len == 0 || tokens == 0 {
        return y;
    }
    let threads = if y.len() < PARALLEL_FROM {
        1
    } else {
        engine.threads().max(1)
    };
    let per_thread = tokens.div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        for (chunk, ys) in y.chunks_mut(per_thread * token_len).enumerate() {
            let first = chunk * per_thread;
            let mut work = move || {
                let mut cs = vec![(0.0f32, 0.0f32); freqs.len()];
                let mut cs_block = vec![(0.0f32, 0.0f32); freqs.len()];
                for (k, yt) in ys.chunks_mut(token_len).enumerate() {
                    let t = first + k;
                    token(
                        req,
                        g,
                        freqs,
                        precise,
                        t / g.seq,
                        t % g.seq,
                        &mut cs,
                        &mut cs_block,
                        yt,
                    );
                }
            };
            if threads == 1 {
                work();
            } else {
                scope.spawn(work);
            }
        }
    });
    y
}

/// One token (b, s): its angles, then every head's pairs.
#[allow(clippy::too_many_arguments)]
fn token(
    req: &OpRequest,
    g: &Geometry,
    freqs: &[Freq],
    precise: bool,
    b: usize,
    s: usize,
    cs: &mut [(f32, f32)],
    cs_block: &mut [(f32, f32)],
    y: &mut [f32],
) {
    let dtype: DType = req.dtype;
    let x = &req.x.data;
    let p = position_of(g.positions, req.input("positions"), g.seq, b, s);
    for (c, f) in cs.iter_mut().zip(freqs) {
        *c = cos_sin(p, f, precise);
    }
    if g.layout == Layout::Chatglm2d {
        let pb = position_of(g.block, req.input("block_positions"), g.seq, b, s);
        for (c, f) in cs_block.iter_mut().zip(freqs) {
            *c = cos_sin(pb, f, precise);
        }
    }
    for h in 0..g.heads {
        let xo = g.x_offset(b, s, h);
        let yo = h * g.head_dim;
        for j in 0..g.head_dim / 2 {
            match rope::slot(g.layout, g.head_dim, g.rot, j) {
                Slot::Rotate {
                    a,
                    b: bb,
                    freq,
                    block,
                } => {
                    let (c, sn) = if block { cs_block[freq] } else { cs[freq] };
                    let (xa, xb) = (x[xo + a], x[xo + bb]);
                    y[yo + a] = dtype.round(xa * c - xb * sn);
                    y[yo + bb] = dtype.round(xb * c + xa * sn);
                }
                Slot::Pass { a } => {
                    y[yo + a] = x[xo + a];
                    y[yo + a + 1] = x[xo + a + 1];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Engine;
    use crate::ops::{Op, Tensor};

    #[test]
    fn cpu_matches_the_reference_in_every_layout() {
        let engine = CpuEngine::new();
        for layout in Layout::ALL {
            let op = RopeOp::Rope {
                layout,
                theta: rope::DEFAULT_THETA,
                rotary_fraction: 1.0,
                precise_angles: true,
            };
            let n = 2 * 5 * 3 * 16;
            let x = Tensor::new(
                vec![2, 5, 3, 16],
                (0..n)
                    .map(|i| ((i * 7919) % 97) as f32 / 48.0 - 1.0)
                    .collect(),
            )
            .unwrap();
            let mut extra = vec![(
                "positions".to_string(),
                Tensor::new(
                    vec![2, 5],
                    vec![0., 1., 2., 3., 4., 100., 2048., 8192., 1e6, -7.],
                )
                .unwrap(),
            )];
            if layout == Layout::Chatglm2d {
                extra.push((
                    "block_positions".into(),
                    Tensor::new(vec![1, 5], vec![0., 0., 1., 2., 3.]).unwrap(),
                ));
            }
            let req = OpRequest::with_inputs(Op::Rope(op), DType::F32, x, extra).unwrap();
            let out = engine.run(&req).unwrap();
            let report = crate::check::check_output(&req, &req.reference_full(), &out);
            assert!(report.passed, "{layout:?}: {report}");
        }
    }
}
