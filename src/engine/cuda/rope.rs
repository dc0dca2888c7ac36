//! rope_freqs and rope on the CUDA engine: `kernels/rope.cu`, one launch each.
//!
//! The host computes the frequency table once (`ops::rope::table_words`: 3 words per frequency)
//! and uploads it with the input and the positions (as i32); the kernels use a grid-stride loop
//! over the pairs (rope) or the (position, frequency) entries (rope_freqs). f16 and bf16 travel
//! as 16-bit patterns, as in the logits and softmax kernels.

use super::plan::{Arg, Elem, HostData, Limits, Plan, Planned};
use super::{CudaTopic, THREADS};
use crate::dtype::DType;
use crate::engine::{AuxOutput, EngineError, OpOutput, TimingSource, topic_op};
use crate::ops::rope::{self, Freq, Geometry, Layout, RopeOp};
use crate::ops::{KernelVariant, Op, OpRequest, Tensor};
use std::time::Duration;

/// This engine's registration of the topic.
pub(crate) static TOPIC: CudaTopic = CudaTopic {
    topic: "rope",
    source: include_str!("../../../kernels/rope.cu"),
    entry_points: &[],
    has_fast_kernel,
    smoke: super::no_smoke,
    host: plan,
};

/// rope has the fast kernel (`rope_fast_*`, for the geometries it fits); rope_freqs has one.
fn has_fast_kernel(op: &Op) -> bool {
    matches!(op.get::<RopeOp>(), Some(RopeOp::Rope { .. }))
}

/// Threads per block of `rope_fast_*` (`FAST_THREADS` in the kernel file) and the most
/// frequencies its shared table holds (`FAST_MAX_PAIRS`).
pub const FAST_THREADS: u32 = 256;
pub const FAST_MAX_PAIRS: usize = 512;

/// Whether the fast kernel can take this geometry: half_split or interleaved, and every 16-byte
/// chunk inside one half (half_split), whole pairs (interleaved) or the pass-through dims.
pub fn fast_fits(g: &Geometry, dtype: DType) -> bool {
    let per = 16 / dtype.size_bytes();
    let chunked = match g.layout {
        Layout::HalfSplit => (g.rot / 2).is_multiple_of(per),
        Layout::Interleaved => g.rot.is_multiple_of(per),
        Layout::Chatglm2d => false,
    };
    chunked
        && g.head_dim.is_multiple_of(per)
        && (g.head_dim - g.rot).is_multiple_of(per)
        && g.rot / 2 <= FAST_MAX_PAIRS
}

/// Integer inputs (exact integers held as f32, |p| <= 2^24) as i32.
fn int_values(t: &Tensor) -> Vec<i32> {
    t.data.iter().map(|&p| p as i32).collect()
}

/// Most values the kernels index with 32-bit unsigned integers (ops::MAX_ELEMENTS is 2^29).
fn count(n: usize, what: &str) -> Result<u32, EngineError> {
    u32::try_from(n).map_err(|_| {
        EngineError::Unsupported(format!("{n} {what} do not fit the kernels' 32-bit indices"))
    })
}

fn plan(req: &OpRequest, limits: &Limits) -> Result<Planned, EngineError> {
    let op = topic_op::<RopeOp>(req)?;
    match *op {
        RopeOp::RopeFreqs {
            dim,
            theta,
            rotary_fraction,
            ..
        } => plan_freqs(req, op, rope::freq_table(theta, rope::rotated_dims(rotary_fraction, dim)), limits),
        RopeOp::Rope { theta, .. } => {
            let g = rope::geometry(op, req)?;
            let freqs = rope::freq_table(theta, g.rot);
            plan_rope(req, op, &g, &freqs, limits)
        }
    }
}

/// `rope_freqs_*(const int* positions, const unsigned* table, T* inv_freq, T* cos_out, T*
/// sin_out, unsigned n_pos, unsigned n_freq, int precise)`, a grid-stride loop over the (position,
/// frequency) entries: positions holds n_pos values, table 3 * n_freq words, inv_freq n_freq and
/// the tables n_pos * n_freq elements of the kernel's storage type.
fn plan_freqs(
    req: &OpRequest,
    op: &RopeOp,
    freqs: Vec<Freq>,
    limits: &Limits,
) -> Result<Planned, EngineError> {
    let dtype = req.dtype;
    let n_freq = freqs.len();
    let n_pos = req.x.len();
    let items = count(n_pos * n_freq, "table entries")?;
    let n_pos32 = count(n_pos, "positions")?;
    let n_freq32 = count(n_freq, "frequencies")?;
    let mut p = Plan::new("rope");
    let positions = p.upload("the positions", HostData::I32(int_values(&req.x)));
    let table = p.upload("the frequency table", HostData::U32(rope::table_words(&freqs)));
    let inv = p.zeros("inv_freq", Elem::stored(dtype), n_freq);
    let cos = p.zeros("the cos table", Elem::stored(dtype), n_pos * n_freq);
    let sin = p.zeros("the sin table", Elem::stored(dtype), n_pos * n_freq);
    p.launch(
        format!("rope_freqs_{}", dtype.name()),
        limits.grid(items.div_ceil(THREADS) as usize),
        THREADS,
        vec![
            Arg::In(positions),
            Arg::In(table),
            Arg::Out(inv),
            Arg::Out(cos),
            Arg::Out(sin),
            Arg::U32(n_pos32),
            Arg::U32(n_freq32),
            Arg::I32(i32::from(op.precise_angles())),
        ],
    );
    for b in [inv, cos, sin] {
        p.read(b);
    }
    let mut shape = req.x.shape.clone();
    shape.push(n_freq);
    Ok(Planned {
        plan: p,
        decode: Box::new(move |d| {
            let mut out = OpOutput::new(
                vec![n_freq],
                dtype,
                d.stored(inv, dtype, n_freq)?,
                Duration::ZERO,
                TimingSource::CudaEvents,
                Duration::ZERO,
            );
            out.aux = vec![
                AuxOutput {
                    name: "cos".into(),
                    shape: shape.clone(),
                    values: d.stored(cos, dtype, n_pos * n_freq)?,
                },
                AuxOutput {
                    name: "sin".into(),
                    shape,
                    values: d.stored(sin, dtype, n_pos * n_freq)?,
                },
            ];
            Ok(out)
        }),
    })
}

/// One launch of `rope_*` (a grid-stride loop over the pairs) or, with the fast kernel when the
/// geometry fits it ([`fast_fits`]: every 16-byte chunk the kernel moves lies inside one head),
/// `rope_fast_*` (one block per token, angles once per token, 16-byte chunks):
///
/// `rope_*(const T* x, T* y, const int* positions, const int* block_positions, const unsigned*
/// table, unsigned items, unsigned seq, unsigned heads, unsigned head_dim, unsigned x_seq,
/// unsigned rot, int layout, unsigned pos_rows, unsigned block_rows, int precise)` and
/// `rope_fast_*(const T* x, T* y, const int* positions, const unsigned* table, unsigned tokens,
/// unsigned seq, unsigned heads, unsigned head_dim, unsigned x_seq, unsigned rot, int layout,
/// unsigned pos_rows, int precise)`; x holds batch * x_seq * heads * head_dim elements and y
/// batch * seq * heads * head_dim, the positions batch * seq (or seq, or one unused value when
/// rows is 0), the table 3 words per frequency.
fn plan_rope(
    req: &OpRequest,
    op: &RopeOp,
    g: &Geometry,
    freqs: &[Freq],
    limits: &Limits,
) -> Result<Planned, EngineError> {
    let dtype = req.dtype;
    let fast = req.kernel == KernelVariant::Fast && fast_fits(g, dtype);
    let positions = req
        .input("positions")
        .map(int_values)
        .unwrap_or_else(|| vec![0]);
    let block = req
        .input("block_positions")
        .map(int_values)
        .unwrap_or_else(|| vec![0]);
    let items = count(g.batch * g.seq * g.heads * (g.head_dim / 2), "pairs")?;
    count(g.out_len().max(req.x.len()), "elements")?;
    let seq = count(g.seq, "positions per sequence")?;
    let heads = count(g.heads, "heads")?;
    let head_dim = count(g.head_dim, "head dims")?;
    let x_seq = count(g.x_seq, "positions per sequence")?;
    let rot = count(g.rot, "rotated dims")?;
    let layout = g.layout.code() as i32;
    let pos_rows = g.rows_code(g.positions);
    let block_rows = g.rows_code(g.block);
    let precise = i32::from(op.precise_angles());
    let tokens = count(g.batch * g.seq, "tokens")?;
    let out_len = g.out_len();
    let mut p = Plan::new("rope");
    let x = p.upload("x", HostData::stored(dtype, &req.x.data));
    let y = p.zeros("y", Elem::stored(dtype), out_len);
    let pos = p.upload("the positions", HostData::I32(positions));
    let blk = p.upload("the block positions", HostData::I32(block));
    let table = p.upload("the frequency table", HostData::U32(rope::table_words(freqs)));
    if fast {
        p.launch(
            format!("rope_fast_{}", dtype.name()),
            limits.grid(tokens as usize),
            FAST_THREADS,
            vec![
                Arg::In(x),
                Arg::Out(y),
                Arg::In(pos),
                Arg::In(table),
                Arg::U32(tokens),
                Arg::U32(seq),
                Arg::U32(heads),
                Arg::U32(head_dim),
                Arg::U32(x_seq),
                Arg::U32(rot),
                Arg::I32(layout),
                Arg::U32(pos_rows),
                Arg::I32(precise),
            ],
        );
    } else {
        p.launch(
            format!("rope_{}", dtype.name()),
            limits.grid(items.div_ceil(THREADS) as usize),
            THREADS,
            vec![
                Arg::In(x),
                Arg::Out(y),
                Arg::In(pos),
                Arg::In(blk),
                Arg::In(table),
                Arg::U32(items),
                Arg::U32(seq),
                Arg::U32(heads),
                Arg::U32(head_dim),
                Arg::U32(x_seq),
                Arg::U32(rot),
                Arg::I32(layout),
                Arg::U32(pos_rows),
                Arg::U32(block_rows),
                Arg::I32(precise),
            ],
        );
    }
    p.read(y);
    let shape = g.out_shape();
    Ok(Planned {
        plan: p,
        decode: Box::new(move |d| {
            Ok(OpOutput::new(
                shape,
                dtype,
                d.stored(y, dtype, out_len)?,
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
            ("THREADS", THREADS as usize),
            ("FAST_THREADS", FAST_THREADS as usize),
            ("FAST_MAX_PAIRS", FAST_MAX_PAIRS),
            ("LAYOUT_HALF_SPLIT", Layout::HalfSplit.code() as usize),
            ("LAYOUT_INTERLEAVED", Layout::Interleaved.code() as usize),
            ("LAYOUT_CHATGLM2D", Layout::Chatglm2d.code() as usize),
        ] {
            assert!(
                TOPIC.source.lines().any(|l| l
                    .split_whitespace()
                    .take(3)
                    .eq(["#define", name, &value.to_string()])),
                "rope.cu: #define {name} {value}"
            );
        }
    }
}
