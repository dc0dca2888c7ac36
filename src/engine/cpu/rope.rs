//! rope_freqs and rope on the CPU engine: the algorithm of `src/ops/rope.rs` in f32, with Rust's
//! f32 `sin` and `cos` (libm's sinf/cosf) as this engine's sin and cos.
//!
//! Per token, the cos and sin of every frequency are computed once (like the GPU threads of one
//! token, each for its own pair), then every head's pairs are rotated. The rotation is written per
//! layout as loops over contiguous slices (half_split: the two halves of the rotated dims side by
//! side; interleaved: neighbouring pairs; chatglm2d: two half_split halves) that LLVM vectorises,
//! with `vmath`'s rounding to f16/bf16 (the same bits as `half`); a test checks every layout
//! against the pair-by-pair order of `rope::slot`, bit for bit. Tokens are split over the engine's
//! threads for large inputs, each thread writing one token at a time.

use super::{CpuEngine, PARALLEL_FROM, vmath};
use crate::dtype::DType;
use crate::engine::{AuxOutput, EngineError, OpOutput, TimingSource};
use crate::ops::OpRequest;
use crate::ops::rope::{
    self, Freq, Geometry, Layout, RopeOp, by_quadrant, naive_angle, position_of, reduce,
};
use std::time::Instant;

/// This engine's registration of the topic.
pub(crate) static TOPIC: super::CpuTopic = super::CpuTopic {
    topic: "rope",
    execute: run_request,
};

fn run_request(engine: &CpuEngine, req: &OpRequest) -> Result<OpOutput, EngineError> {
    execute(engine, req, crate::engine::topic_op::<RopeOp>(req)?)
}

fn execute(
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

/// Per-thread scratch: the cos and sin of every frequency at this token's position (and at its
/// block position, for chatglm2d).
struct Angles {
    cos: Vec<f32>,
    sin: Vec<f32>,
    block_cos: Vec<f32>,
    block_sin: Vec<f32>,
}

/// The whole rope: tokens split over threads, one token (all its heads, contiguous in the
/// output) at a time.
fn rotate(
    engine: &CpuEngine,
    req: &OpRequest,
    g: &Geometry,
    freqs: &[Freq],
    precise: bool,
) -> Vec<f32> {
    let token_len = g.heads * g.head_dim;
    let tokens = g.batch * g.seq;
    if token_len == 0 || tokens == 0 {
        return vec![0.0f32; g.out_len()];
    }
    let threads = if g.out_len() < PARALLEL_FROM {
        1
    } else {
        engine.threads().max(1)
    };
    let per_thread = tokens.div_ceil(threads).max(1);
    let n = freqs.len();
    super::new_output(
        g.out_len(),
        per_thread * token_len,
        token_len,
        || Angles {
            cos: vec![0.0; n],
            sin: vec![0.0; n],
            block_cos: vec![0.0; n],
            block_sin: vec![0.0; n],
        },
        |angles, first, y| {
            let t = first / token_len;
            token(req, g, freqs, precise, t / g.seq, t % g.seq, angles, y);
        },
    )
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
    angles: &mut Angles,
    y: &mut [f32],
) {
    let p = position_of(g.positions, req.input("positions"), g.seq, b, s);
    for ((c, sn), f) in angles.cos.iter_mut().zip(&mut angles.sin).zip(freqs) {
        (*c, *sn) = cos_sin(p, f, precise);
    }
    if g.layout == Layout::Chatglm2d {
        let pb = position_of(g.block, req.input("block_positions"), g.seq, b, s);
        for ((c, sn), f) in angles
            .block_cos
            .iter_mut()
            .zip(&mut angles.block_sin)
            .zip(freqs)
        {
            (*c, *sn) = cos_sin(pb, f, precise);
        }
    }
    let x = &req.x.data;
    let x = &x[g.x_offset(b, s, 0)..g.x_offset(b, s, 0) + g.heads * g.head_dim];
    rotate_heads(req.dtype, g, angles, x, y);
}

vmath::simd_dispatch! {
    /// Rotate every head of one token: `x` and `y` hold its heads one after the other.
    fn rotate_heads(dtype: DType, g: &Geometry, angles: &Angles, x: &[f32], y: &mut [f32]) {
        match dtype {
            DType::F32 => rotate_heads_with(g, angles, x, y, |v| v),
            DType::F16 => rotate_heads_with(g, angles, x, y, vmath::round_f16),
            DType::Bf16 => rotate_heads_with(g, angles, x, y, vmath::round_bf16),
        }
    }
}

/// [`rotate_heads`] with the dtype's rounding. The pairs follow [`rope::slot`] (tested below,
/// value for value): half_split pairs (j, j + rot/2), interleaved (2j, 2j + 1), chatglm2d two
/// half_split halves; the dims past the rotated ones are copied.
#[inline(always)]
fn rotate_heads_with(
    g: &Geometry,
    angles: &Angles,
    x: &[f32],
    y: &mut [f32],
    round: impl Fn(f32) -> f32 + Copy,
) {
    let (hd, rot) = (g.head_dim, g.rot);
    let pairs = rot / 2;
    let (c, s) = (&angles.cos[..pairs], &angles.sin[..pairs]);
    for (xh, yh) in x.chunks_exact(hd).zip(y.chunks_exact_mut(hd)) {
        match g.layout {
            Layout::HalfSplit => {
                rotate_half_split(&xh[..rot], &mut yh[..rot], c, s, round);
                yh[rot..].copy_from_slice(&xh[rot..]);
            }
            Layout::Interleaved => {
                let pairs_x = xh[..rot].chunks_exact(2);
                let pairs_y = yh[..rot].chunks_exact_mut(2);
                for ((py, px), (&c, &s)) in pairs_y.zip(pairs_x).zip(c.iter().zip(s)) {
                    py[0] = round(px[0] * c - px[1] * s);
                    py[1] = round(px[1] * c + px[0] * s);
                }
                yh[rot..].copy_from_slice(&xh[rot..]);
            }
            Layout::Chatglm2d => {
                let half = hd / 2;
                let (bc, bs) = (&angles.block_cos[..pairs], &angles.block_sin[..pairs]);
                for (base, c, s) in [(0, c, s), (half, bc, bs)] {
                    let (xq, yq) = (&xh[base..base + half], &mut yh[base..base + half]);
                    rotate_half_split(&xq[..rot], &mut yq[..rot], c, s, round);
                    yq[rot..].copy_from_slice(&xq[rot..]);
                }
            }
        }
    }
}

/// Pairs (j, j + n/2) of `x` (n values) turned by (c_j, s_j): y_a = x_a c − x_b s,
/// y_b = x_b c + x_a s, each rounded.
#[inline(always)]
fn rotate_half_split(x: &[f32], y: &mut [f32], c: &[f32], s: &[f32], round: impl Fn(f32) -> f32) {
    let pairs = x.len() / 2;
    let (xa, xb) = x.split_at(pairs);
    let (ya, yb) = y.split_at_mut(pairs);
    for j in 0..pairs.min(c.len()).min(s.len()).min(xb.len()).min(yb.len()) {
        let (a, b, c, s) = (xa[j], xb[j], c[j], s[j]);
        ya[j] = round(a * c - b * s);
        yb[j] = round(b * c + a * s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Engine;
    use crate::ops::rope::Slot;
    use crate::ops::{Op, Tensor};

    /// The rope as the CPU engine first computed it: every pair from [`rope::slot`], one at a
    /// time, with libm's sin and cos. The vectorised loops must give the same bits.
    fn by_slots(req: &OpRequest, g: &Geometry, freqs: &[Freq], precise: bool) -> Vec<f32> {
        let x = &req.x.data;
        let mut y = vec![0.0f32; g.out_len()];
        for b in 0..g.batch {
            for s in 0..g.seq {
                let p = position_of(g.positions, req.input("positions"), g.seq, b, s);
                let pb = position_of(g.block, req.input("block_positions"), g.seq, b, s);
                for h in 0..g.heads {
                    let (xo, yo) = (g.x_offset(b, s, h), g.y_offset(b, s, h));
                    for j in 0..g.head_dim / 2 {
                        match rope::slot(g.layout, g.head_dim, g.rot, j) {
                            Slot::Rotate {
                                a,
                                b: bb,
                                freq,
                                block,
                            } => {
                                let pos = if block { pb } else { p };
                                let (c, sn) = cos_sin(pos, &freqs[freq], precise);
                                let (xa, xb) = (x[xo + a], x[xo + bb]);
                                y[yo + a] = req.dtype.round(xa * c - xb * sn);
                                y[yo + bb] = req.dtype.round(xb * c + xa * sn);
                            }
                            Slot::Pass { a } => {
                                y[yo + a] = x[xo + a];
                                y[yo + a + 1] = x[xo + a + 1];
                            }
                        }
                    }
                }
            }
        }
        y
    }

    #[test]
    fn vectorised_rotation_matches_the_slot_by_slot_one_bit_for_bit() {
        let engine = CpuEngine::new();
        for layout in Layout::ALL {
            for fraction in [1.0, 0.5, 0.25] {
                for dtype in [DType::F32, DType::F16, DType::Bf16] {
                    for precise in [true, false] {
                        let op = RopeOp::Rope {
                            layout,
                            theta: rope::DEFAULT_THETA,
                            rotary_fraction: fraction,
                            precise_angles: precise,
                        };
                        // Large enough to be split over threads.
                        let shape = vec![2, 91, 4, 48];
                        let n: usize = shape.iter().product();
                        let x = Tensor::new(
                            shape,
                            (0..n)
                                .map(|i| ((i * 7919) % 997) as f32 / 97.0 - 5.0)
                                .collect(),
                        )
                        .unwrap();
                        let mut extra = Vec::new();
                        if layout == Layout::Chatglm2d {
                            let blocks = (0..91).map(|s| (s % 5) as f32).collect();
                            extra.push((
                                "block_positions".to_string(),
                                Tensor::new(vec![1, 91], blocks).unwrap(),
                            ));
                        }
                        let req =
                            OpRequest::with_inputs(Op::new(op.clone()), dtype, x, extra).unwrap();
                        let g = rope::geometry(&op, &req).unwrap();
                        let freqs = rope::freq_table(rope::DEFAULT_THETA, g.rot);
                        let want = by_slots(&req, &g, &freqs, precise);
                        let got = engine.run(&req).unwrap().values;
                        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                        assert!(
                            bits(&got) == bits(&want),
                            "{layout:?} fraction {fraction} {dtype} precise {precise}"
                        );
                    }
                }
            }
        }
    }

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
            let req = OpRequest::with_inputs(Op::new(op), DType::F32, x, extra).unwrap();
            let out = engine.run(&req).unwrap();
            let report = crate::check::check_output(&req, &req.reference_full(), &out);
            assert!(report.passed, "{layout:?}: {report}");
        }
    }
}
