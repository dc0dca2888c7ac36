//! Rotary position embeddings (RoPE) topic: `rope_freqs` (the frequency table and the cos/sin of
//! position x frequency) and `rope` (rotate q or k by their positions), with HF Llama/GPT-NeoX's
//! half-split layout, GPT-J's interleaved layout and ChatGLM-6B's 2D layout, and partial rotary.
//!
//! # The math (docs/numerics.md, Rotary position embeddings)
//! With d rotated dims, pair i (i < d/2) turns by the angle θ = p · inv_freq_i at position p, where
//! inv_freq_i = theta^(-2i/d) (a geometric series from 1 down to nearly 1/theta). A pair (a, b)
//! becomes (a cos θ − b sin θ, b cos θ + a sin θ): a rotation, so norms are preserved and
//! <R_m q, R_n k> depends only on m − n. Which dims form pair i is the layout:
//! - `half_split` (HF Llama `rotate_half`, GPT-NeoX): (i, i + d/2).
//! - `interleaved` (GPT-J `rotate_every_two`, fastllm): (2i, 2i + 1). The same rotation after a
//!   fixed permutation of dims: interleaved dim 2i is half-split dim i, 2i + 1 is i + d/2.
//! - `chatglm2d` (ChatGLM-6B): the first half of the head is rotated by `positions`, the second
//!   half by `block_positions`, each half half-split within itself (head 128: pairs (i, i + 32)
//!   and (64 + i, 96 + i)), with the frequencies of a 64-dim rotary embedding.
//!
//! Partial rotary (GPT-NeoX `rotary_pct`): only the first d = rotated dims of the head turn, the
//! rest pass through bit for bit. d is the largest even number <= rotary_fraction x head_dim
//! (NeoX's `int(head_dim * rotary_pct)`, which must be even there); for `chatglm2d` the fraction
//! applies to each half: d = largest even number <= rotary_fraction x head_dim / 2, the first d
//! dims of each half turn.
//!
//! # The algorithm every engine implements (CPU `engine/cpu/rope.rs`, CUDA `kernels/rope.cu`,
//! WGSL `shaders/rope.wgsl`)
//! The frequency table is computed once on the host in f64 (as HF computes `inv_freq` once at
//! load) and every engine receives it as words: [`Freq::turns`] and [`Freq::inv_freq_f32`].
//! Then, one thread per pair:
//! - **precise angles** (default): the angle in turns, p · inv_freq / 2π, is formed with integer
//!   arithmetic: inv_freq / 2π as a 64-bit fixed-point fraction of a turn times the integer
//!   position, modulo 2^64 (whole turns overflow away, which is exactly the reduction modulo 2π we
//!   want). The top 32 bits are the angle in units of 2^-32 turn (1.5e-9 rad); they are split
//!   into a quadrant and a remainder in [−1/8, 1/8] turn, converted to an f32 angle r in
//!   [−π/4, π/4] with one rounded product ([`reduce`]); the engine's own sin and cos of r are
//!   swapped and negated by quadrant ([`by_quadrant`]). Integer arithmetic is exact on every
//!   engine, so all engines form the same r, bit for bit, within 7.5e-8 rad of the true angle at
//!   every |p| <= 2^24; their angle errors differ only by their sin and cos (measured in the
//!   lesson).
//! - **naive angles** (`precise_angles = false`, what HF does in f32): θ = f32(p) · f32(inv_freq)
//!   rounded to f32, then sin/cos of θ. f32(inv_freq) and the product are each rounded, so θ is
//!   off by up to about p · 2^-24 rad: its error in cos is 1.1e-4 at position
//!   2048, 4.8e-4 at 8192, 1.9e-3 at 32768. And the engine's sin/cos must reduce the large
//!   argument itself.
//! - the pair: y_a = x_a c − x_b s, y_b = x_b c + x_a s in f32 (two rounded products, one rounded
//!   sum each, no fused multiply-add), rounded once to the storage dtype. Pass-through elements
//!   are copied as stored bits.
//!
//! The reference is the exact math in f64: θ = p · theta^(-2i/d) in f64, f64 sin and cos (with
//! their own exact argument reduction), and the f64 rotation of the dtype-rounded input. Naive
//! angles are checked against the same truth, which is how their error shows up as a failure.

use super::case::{Draw, BenchSpec, Case, Expect, Input};
use super::tolerance::Tolerance;
use super::{
    AuxReference, DTYPE_PARAM, InputDecl, MAX_ELEMENTS, Op, OpDef, OpError, OpKind, OpRequest,
    ParamKind, ParamSpec, ParamValues, Reference, Tensor, Topic, TopicOp, check_float,
};
use crate::dtype::DType;
use serde::Serialize;
use std::f64::consts::TAU;

/// HF's default `rope_theta`.
pub const DEFAULT_THETA: f64 = 10000.0;
/// The head size most models use (Llama, NeoX, ChatGLM-6B): `rope_freqs`'s default `dim`.
pub const DEFAULT_DIM: usize = 128;

/// Which dims form a rotating pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Layout {
    /// Pairs (i, i + d/2): HF Llama `rotate_half`, GPT-NeoX.
    #[serde(rename = "half_split")]
    HalfSplit,
    /// Pairs (2i, 2i + 1): GPT-J `rotate_every_two`, fastllm.
    #[serde(rename = "interleaved")]
    Interleaved,
    /// ChatGLM-6B: two half-split halves, turned by `positions` and `block_positions`.
    #[serde(rename = "chatglm2d")]
    Chatglm2d,
}

impl Layout {
    pub const ALL: [Layout; 3] = [Layout::HalfSplit, Layout::Interleaved, Layout::Chatglm2d];

    pub fn name(self) -> &'static str {
        match self {
            Layout::HalfSplit => "half_split",
            Layout::Interleaved => "interleaved",
            Layout::Chatglm2d => "chatglm2d",
        }
    }

    pub fn from_name(name: &str) -> Option<Layout> {
        Layout::ALL.into_iter().find(|l| l.name() == name)
    }

    /// The number the kernels use (`LAYOUT_*` in rope.cu and rope.wgsl).
    pub fn code(self) -> u32 {
        match self {
            Layout::HalfSplit => 0,
            Layout::Interleaved => 1,
            Layout::Chatglm2d => 2,
        }
    }
}

/// The two ops of this topic, with their parameters.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum RopeOp {
    /// The frequency table of a head of `dim` dims and cos/sin of p · inv_freq for every position
    /// p of the input.
    RopeFreqs {
        dim: usize,
        theta: f64,
        rotary_fraction: f64,
        precise_angles: bool,
    },
    /// Rotate x [batch, seq, heads, head_dim] by its positions.
    Rope {
        layout: Layout,
        theta: f64,
        rotary_fraction: f64,
        precise_angles: bool,
    },
}

impl RopeOp {
    pub fn theta(&self) -> f64 {
        match self {
            RopeOp::RopeFreqs { theta, .. } | RopeOp::Rope { theta, .. } => *theta,
        }
    }

    pub fn rotary_fraction(&self) -> f64 {
        match self {
            RopeOp::RopeFreqs {
                rotary_fraction, ..
            }
            | RopeOp::Rope {
                rotary_fraction, ..
            } => *rotary_fraction,
        }
    }

    pub fn precise_angles(&self) -> bool {
        match self {
            RopeOp::RopeFreqs { precise_angles, .. } | RopeOp::Rope { precise_angles, .. } => {
                *precise_angles
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Parameters and inputs.
// ------------------------------------------------------------------------------------------------

const THETA: ParamSpec = ParamSpec {
    name: "theta",
    kind: ParamKind::Float {
        min: 2.0,
        max: 1e8,
        default: DEFAULT_THETA,
        log_scale: true,
        integer: false,
    },
    help: "the base: inv_freq_i = theta^(-2i/d), from 1 down to nearly 1/theta (Llama 2: 10000, Llama 3: 500000)",
};

const ROTARY_FRACTION: ParamSpec = ParamSpec {
    name: "rotary_fraction",
    kind: ParamKind::Float {
        min: 0.0,
        max: 1.0,
        default: 1.0,
        log_scale: false,
        integer: false,
    },
    help: "share of the head's dims that rotate (GPT-NeoX rotary_pct): the largest even number <= fraction x head_dim (chatglm2d: x head_dim/2, in each half); the rest pass through unchanged",
};

const PRECISE_ANGLES: ParamSpec = ParamSpec {
    name: "precise_angles",
    kind: ParamKind::Bool { default: true },
    help: "true: p·inv_freq reduced modulo a turn exactly (fixed-point turns, integer arithmetic) before sin/cos, ~1e-7 rad at any position; false: HF-style f32 angle f32(p·inv_freq), off by up to half an ulp of the angle (1.2e-4 rad at 2048, 2e-3 at 32768)",
};

const DIM: ParamSpec = ParamSpec {
    name: "dim",
    kind: ParamKind::Float {
        min: 2.0,
        max: 4096.0,
        default: DEFAULT_DIM as f64,
        log_scale: false,
        integer: true,
    },
    help: "head_dim of the model; the table has one frequency per rotated pair",
};

const LAYOUT: ParamSpec = ParamSpec {
    name: "layout",
    kind: ParamKind::Choice {
        choices: &["half_split", "interleaved", "chatglm2d"],
        default: "half_split",
    },
    help: "which dims pair up: half_split (i, i+d/2) as HF Llama/GPT-NeoX; interleaved (2i, 2i+1) as GPT-J; chatglm2d: ChatGLM-6B's two half-split halves, turned by positions and block_positions",
};

const FREQS_INPUTS: &[InputDecl] = &[InputDecl {
    name: "positions",
    int: true,
    optional: false,
    generated: false,
    help: "integer positions p (any shape); the aux outputs hold cos and sin of p·inv_freq_i for each",
}];

const ROPE_INPUTS: &[InputDecl] = &[
    InputDecl::float(
        "x",
        "queries or keys [batch, seq, heads, head_dim] (HF's q is [batch, heads, seq, head_dim]: transpose(1, 2) first); seq 1 broadcasts to every position given",
    ),
    InputDecl {
        name: "positions",
        int: true,
        optional: true,
        generated: false,
        help: "position ids [batch, seq], [1, seq] or [seq] (integers, may be negative); default 0..seq-1",
    },
    InputDecl {
        name: "block_positions",
        int: true,
        optional: true,
        generated: false,
        help: "chatglm2d only (required there): ChatGLM-6B's block position ids [batch, seq], turning the second half of each head",
    },
];

pub const ROPE_FREQS: OpKind = OpKind::new(&OpDef {
    name: "rope_freqs",
    topic: "rope",
    summary: "inv_freq_i = theta^(-2i/d) for the d rotated dims of a head of `dim` dims, plus aux cos and sin of p·inv_freq_i for every position p given; output shape = [d/2], aux shape = positions.shape + [d/2]",
    inputs: FREQS_INPUTS,
    params: &[DIM, THETA, ROTARY_FRACTION, PRECISE_ANGLES, DTYPE_PARAM],
    draw: Draw::LOGITS,
});

pub const ROPE: OpKind = OpKind::new(&OpDef {
    name: "rope",
    topic: "rope",
    summary: "rotates each pair of head dims of x [batch, seq, heads, head_dim] by position·inv_freq_i (layout half_split, interleaved or chatglm2d; partial rotary passes the rest through); positions [batch, seq] default 0..seq-1; output shape = x (x with seq 1 is rotated to every position given)",
    inputs: ROPE_INPUTS,
    params: &[LAYOUT, THETA, ROTARY_FRACTION, PRECISE_ANGLES, DTYPE_PARAM],
    draw: Draw::LOGITS,
});

/// The topic, as listed in [`super::TOPICS`].
pub static TOPIC: RopeTopic = RopeTopic;

/// The topic's registration: its two ops, their parsing, check cases and bench cases.
pub struct RopeTopic;

impl Topic for RopeTopic {
    fn name(&self) -> &'static str {
        "rope"
    }

    fn ops(&self) -> &'static [OpKind] {
        &[ROPE_FREQS, ROPE]
    }

    fn parse(&self, kind: OpKind, values: &ParamValues) -> Result<Op, OpError> {
        parse(kind, values).map(Op::new)
    }

    fn cases(&self, large: bool) -> Vec<Case> {
        suite_cases(large)
    }

    /// q and k of Llama-7B, [8, 4096, 32, 128] f16, as one batch of 16 on a hardware GPU (HF applies
    /// rope to both), [1, 256, 32, 128] elsewhere; both kernels.
    fn bench(&self, _size: (usize, usize), gpu: bool) -> Vec<BenchSpec> {
        let shape = if gpu {
            vec![16, 4096, 32, 128]
        } else {
            vec![1, 256, 32, 128]
        };
        BenchSpec::parsed(
            "rope",
            &[("layout", "half_split"), ("dtype", "f16")],
            shape,
            true,
            6,
        )
        .into_iter()
        .collect()
    }
}

/// Resolve parsed `key=value` parameters into an op.
pub fn parse(kind: OpKind, values: &ParamValues) -> Result<RopeOp, OpError> {
    let theta = values.get_float("theta").unwrap_or(DEFAULT_THETA);
    let rotary_fraction = values.get_float("rotary_fraction").unwrap_or(1.0);
    let precise_angles = values.get_bool("precise_angles").unwrap_or(true);
    match kind.name() {
        "rope_freqs" => {
            let dim = values.get_float("dim").unwrap_or(DEFAULT_DIM as f64);
            check_float("dim", dim, kind)?;
            Ok(RopeOp::RopeFreqs {
                dim: dim as usize,
                theta,
                rotary_fraction,
                precise_angles,
            })
        }
        "rope" => {
            let name = values.get_choice("layout").unwrap_or("half_split");
            let layout = Layout::from_name(name).ok_or_else(|| OpError::BadParam {
                name: "layout".into(),
                reason: format!("'{name}' is not one of half_split, interleaved, chatglm2d"),
            })?;
            Ok(RopeOp::Rope {
                layout,
                theta,
                rotary_fraction,
                precise_angles,
            })
        }
        other => Err(OpError::UnknownOp(other.into())),
    }
}

// ------------------------------------------------------------------------------------------------
// Frequencies and angles: the algorithm every engine implements.
// ------------------------------------------------------------------------------------------------

/// Rotated dims out of `dims`: the largest even number <= fraction x dims (GPT-NeoX
/// `int(head_dim * rotary_pct)`, rounded down to even). 0 means nothing rotates (an error).
pub fn rotated_dims(fraction: f64, dims: usize) -> usize {
    let d = (fraction * dims as f64).floor();
    if d.is_nan() || d < 0.0 {
        return 0;
    }
    (d as usize).min(dims) & !1
}

/// inv_freq_i = theta^(-2i/d) for a rotary embedding of `d` dims, in f64.
pub fn inv_freq(theta: f64, d: usize, i: usize) -> f64 {
    theta.powf(-((2 * i) as f64) / d as f64)
}

/// One entry of the frequency table every engine receives.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Freq {
    /// theta^(-2i/d) in f64 (the reference's value).
    pub inv_freq: f64,
    /// inv_freq rounded to f32: rope_freqs's main output, and the factor of the naive f32 angle.
    pub inv_freq_f32: f32,
    /// inv_freq / 2π as a 64-bit fixed-point fraction of a turn: the angle of position p in turns
    /// is p · turns / 2^64 (mod 1). Its rounding (and f64's) add at most 3e-9 rad up to |p| = 2^24.
    pub turns: u64,
}

impl Freq {
    pub fn new(inv_freq: f64) -> Freq {
        Freq {
            inv_freq,
            inv_freq_f32: inv_freq as f32,
            turns: (inv_freq / TAU * 2f64.powi(64)).round() as u64,
        }
    }

    /// The three words a kernel reads per frequency: turns (high word, low word) and the f32
    /// inv_freq's bits.
    pub fn words(&self) -> [u32; 3] {
        [
            (self.turns >> 32) as u32,
            self.turns as u32,
            self.inv_freq_f32.to_bits(),
        ]
    }
}

/// The frequencies of a rotary embedding of `d` rotated dims (d/2 pairs).
pub fn freq_table(theta: f64, d: usize) -> Vec<Freq> {
    (0..d / 2)
        .map(|i| Freq::new(inv_freq(theta, d, i)))
        .collect()
}

/// The table as kernel words: 3 per frequency (see [`Freq::words`]).
pub fn table_words(freqs: &[Freq]) -> Vec<u32> {
    freqs.iter().flat_map(Freq::words).collect()
}

/// 2π / 2^27 in f32 (bits 0x33490fdb): one unit of the remainder after rounding away its low 5
/// bits. It is f32(2π) / 2^27 exactly, 2.8e-8 relative from the true value.
pub const TURN_UNIT: f32 = (TAU / 134_217_728.0) as f32;

/// Precise angles, steps 2 and 3 of the kernels: the angle p · inv_freq reduced exactly.
///
/// `t` = the top 32 bits of |p| · turns mod 2^64 (integer arithmetic, exact), negated for p < 0:
/// the angle in units of 2^-32 turn. The nearest quarter turn `q` is split off; the remainder,
/// in [−2^29, 2^29] units (an eighth of a turn either way), is rounded to a multiple of 2^5 units
/// (an integer below 2^24 in magnitude, so its conversion to f32 is exact) and multiplied by
/// [`TURN_UNIT`]: one rounded f32 product, so every engine forms the same r bit for bit. Returns
/// (q in 0..4, r) with |r| <= π/4; the angle is q · π/2 + r, off by at most 2.3e-8 (the rounding
/// to 2^-27 turn) + 3e-8 (the product) + 2.2e-8 (the constant) = 7.5e-8 rad.
pub fn reduce(p: i32, turns: u64) -> (u32, f32) {
    let u = p.unsigned_abs();
    let hi = (turns >> 32) as u32;
    let lo = turns as u32;
    // t = (u · turns) >> 32, mod 2^32: u·hi mod 2^32 plus the high word of u·lo.
    let mut t = u
        .wrapping_mul(hi)
        .wrapping_add(((u as u64 * lo as u64) >> 32) as u32);
    if p < 0 {
        t = t.wrapping_neg();
    }
    let q = t.wrapping_add(1 << 29) >> 30;
    let rem = t.wrapping_sub(q << 30) as i32;
    let r = ((rem + 16) >> 5) as f32 * TURN_UNIT;
    (q & 3, r)
}

/// cos and sin of q · π/2 + r from c = cos r and s = sin r (swaps and negations: exact).
pub fn by_quadrant(q: u32, c: f32, s: f32) -> (f32, f32) {
    match q & 3 {
        0 => (c, s),
        1 => (-s, c),
        2 => (-c, -s),
        _ => (s, -c),
    }
}

/// The naive (HF-style f32) angle: f32(p) · f32(inv_freq), rounded once.
pub fn naive_angle(p: i32, freq: &Freq) -> f32 {
    p as f32 * freq.inv_freq_f32
}

/// The exact angle p · inv_freq in f64 (what the reference and the angle-error view use).
pub fn exact_angle(p: i64, freq: &Freq) -> f64 {
    p as f64 * freq.inv_freq
}

/// The difference between two angles, wrapped into [−π, π].
pub fn angle_difference(a: f64, b: f64) -> f64 {
    let d = (a - b).rem_euclid(TAU);
    if d > std::f64::consts::PI { d - TAU } else { d }
}

// ------------------------------------------------------------------------------------------------
// Shapes: which pair each thread handles.
// ------------------------------------------------------------------------------------------------

/// What one work item (a pair's worth of a head: 2 elements) does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    /// Rotate elements `a` and `b` (offsets in the head) by frequency `freq`, at the token's
    /// position (`block = false`) or its block position (chatglm2d's second half).
    Rotate {
        a: usize,
        b: usize,
        freq: usize,
        block: bool,
    },
    /// Copy elements `a` and `a + 1` unchanged (partial rotary's pass-through dims).
    Pass { a: usize },
}

/// Slot `j` (0 <= j < head_dim / 2) of a head: step 1 of the kernels. `rot` is the number of
/// rotated dims (per half for chatglm2d).
pub fn slot(layout: Layout, head_dim: usize, rot: usize, j: usize) -> Slot {
    match layout {
        Layout::HalfSplit | Layout::Interleaved => {
            let pairs = rot / 2;
            if j < pairs {
                let (a, b) = if layout == Layout::HalfSplit {
                    (j, j + pairs)
                } else {
                    (2 * j, 2 * j + 1)
                };
                Slot::Rotate {
                    a,
                    b,
                    freq: j,
                    block: false,
                }
            } else {
                Slot::Pass {
                    a: rot + 2 * (j - pairs),
                }
            }
        }
        Layout::Chatglm2d => {
            let half = head_dim / 2;
            let (base, l) = if j < half / 2 {
                (0, j)
            } else {
                (half, j - half / 2)
            };
            let pairs = rot / 2;
            if l < pairs {
                Slot::Rotate {
                    a: base + l,
                    b: base + l + pairs,
                    freq: l,
                    block: base > 0,
                }
            } else {
                Slot::Pass {
                    a: base + rot + 2 * (l - pairs),
                }
            }
        }
    }
}

/// Where a token's position comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PosSource {
    /// Not given: position = the token's index s.
    Default,
    /// A tensor [rows, seq] (rows = 1 broadcasts over the batch) or [seq] (rows = 1).
    Given { rows: usize },
}

/// The shapes of a rope request, resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub batch: usize,
    /// Positions per sequence in the output.
    pub seq: usize,
    pub heads: usize,
    pub head_dim: usize,
    /// x's own seq: `seq`, or 1 (x is the same at every position).
    pub x_seq: usize,
    /// Rotated dims (per half for chatglm2d).
    pub rot: usize,
    pub layout: Layout,
    pub positions: PosSource,
    /// chatglm2d's block positions (`Default` elsewhere, never read).
    pub block: PosSource,
}

impl Geometry {
    /// The rows code the GPU kernels take for a positions source (CUDA and WGSL alike): 0 = none
    /// (p = s), else its row count (1, broadcast over the batch, or the batch).
    pub fn rows_code(&self, source: PosSource) -> u32 {
        match source {
            PosSource::Default => 0,
            PosSource::Given { rows: 1 } => 1,
            PosSource::Given { .. } => self.batch.max(1) as u32,
        }
    }

    /// Frequencies in the table: rot / 2.
    pub fn n_freq(&self) -> usize {
        self.rot / 2
    }

    /// Output values: batch · seq · heads · head_dim.
    pub fn out_len(&self) -> usize {
        self.batch * self.seq * self.heads * self.head_dim
    }

    pub fn out_shape(&self) -> Vec<usize> {
        vec![self.batch, self.seq, self.heads, self.head_dim]
    }

    /// Offset of head h of token (b, s) in x.
    pub fn x_offset(&self, b: usize, s: usize, h: usize) -> usize {
        let sx = if self.x_seq == 1 { 0 } else { s };
        ((b * self.x_seq + sx) * self.heads + h) * self.head_dim
    }

    /// Offset of head h of token (b, s) in the output.
    pub fn y_offset(&self, b: usize, s: usize, h: usize) -> usize {
        ((b * self.seq + s) * self.heads + h) * self.head_dim
    }
}

/// Position of token (b, s) from a positions tensor (or s when there is none).
pub fn position_of(
    source: PosSource,
    tensor: Option<&Tensor>,
    seq: usize,
    b: usize,
    s: usize,
) -> i32 {
    match (source, tensor) {
        (PosSource::Given { rows }, Some(t)) => {
            let row = if rows == 1 { 0 } else { b };
            t.data[row * seq + s] as i32
        }
        _ => s as i32,
    }
}

/// Check a positions input against x: [seq] or [rows, seq] with rows 1 or batch.
fn positions_shape(name: &str, t: &Tensor, batch: usize) -> Result<(usize, PosSource), OpError> {
    let bad = |reason: String| OpError::BadInput {
        name: name.into(),
        reason,
    };
    match t.shape.as_slice() {
        [seq] => Ok((*seq, PosSource::Given { rows: 1 })),
        [rows, seq] if *rows == batch || *rows == 1 => Ok((*seq, PosSource::Given { rows: *rows })),
        [rows, _] => Err(bad(format!(
            "shape {:?} has {rows} rows but x has batch {batch}: give [batch, seq] = [{batch}, seq], [1, seq] or [seq]",
            t.shape
        ))),
        _ => Err(bad(format!(
            "shape {:?}: expected [batch, seq], [1, seq] or [seq]",
            t.shape
        ))),
    }
}

/// Resolve and check the shapes of a rope request (x, positions, block_positions).
pub fn geometry(op: &RopeOp, req: &OpRequest) -> Result<Geometry, OpError> {
    let RopeOp::Rope {
        layout,
        rotary_fraction,
        ..
    } = *op
    else {
        return Err(OpError::BadInput {
            name: "x".into(),
            reason: "rope_freqs has no head geometry".into(),
        });
    };
    let bad_x = |reason: String| OpError::BadInput {
        name: "x".into(),
        reason,
    };
    let [batch, x_seq, heads, head_dim] = *req.x.shape.as_slice() else {
        return Err(bad_x(format!(
            "shape {:?}: expected 4 axes [batch, seq, heads, head_dim] (HF's q and k are [batch, heads, seq, head_dim]: transpose(1, 2) first)",
            req.x.shape
        )));
    };
    if head_dim % 2 == 1 {
        return Err(bad_x(format!(
            "head_dim {head_dim} is odd: RoPE rotates pairs of dims, so head_dim must be even"
        )));
    }
    if layout == Layout::Chatglm2d && head_dim % 4 != 0 {
        return Err(bad_x(format!(
            "head_dim {head_dim}: chatglm2d splits each head into two halves of pairs, so head_dim must be a multiple of 4"
        )));
    }
    let span = if layout == Layout::Chatglm2d {
        head_dim / 2
    } else {
        head_dim
    };
    let rot = rotated_dims(rotary_fraction, span);
    if rot < 2 && head_dim > 0 {
        return Err(OpError::BadParam {
            name: "rotary_fraction".into(),
            reason: format!(
                "{rotary_fraction} x {span} dims{} rotates no pair: raise it to at least {}",
                if layout == Layout::Chatglm2d {
                    " (each half of the head)"
                } else {
                    ""
                },
                crate::format::format_value(2.0 / span as f64)
            ),
        });
    }
    let positions = req.input("positions");
    let block = req.input("block_positions");
    match (layout, block) {
        (Layout::Chatglm2d, None) => {
            return Err(OpError::BadInput {
                name: "block_positions".into(),
                reason: "layout chatglm2d needs block_positions [batch, seq] (ChatGLM-6B's second position id, which turns the second half of each head)".into(),
            });
        }
        (Layout::HalfSplit | Layout::Interleaved, Some(_)) => {
            return Err(OpError::BadInput {
                name: "block_positions".into(),
                reason: format!(
                    "only layout chatglm2d uses block_positions; layout {} takes positions only",
                    layout.name()
                ),
            });
        }
        _ => {}
    }
    let mut seq = x_seq;
    let mut pos_source = PosSource::Default;
    let mut block_source = PosSource::Default;
    let mut given_seq: Option<(usize, &str)> = None;
    for (name, tensor, source) in [
        ("positions", positions, &mut pos_source),
        ("block_positions", block, &mut block_source),
    ] {
        let Some(t) = tensor else { continue };
        let (s, src) = positions_shape(name, t, batch)?;
        if let Some((other, other_name)) = given_seq
            && other != s
        {
            return Err(OpError::BadInput {
                name: name.into(),
                reason: format!(
                    "{s} positions per sequence but {other_name} has {other}: they must match"
                ),
            });
        }
        if x_seq != 1 && s != x_seq {
            return Err(OpError::BadInput {
                name: name.into(),
                reason: format!(
                    "shape {:?} gives {s} positions per sequence but x has seq {x_seq} (shape {:?}): they must match (or x has seq 1 to rotate one vector to every position)",
                    t.shape, req.x.shape
                ),
            });
        }
        given_seq = Some((s, name));
        seq = s;
        *source = src;
    }
    let g = Geometry {
        batch,
        seq,
        heads,
        head_dim,
        x_seq,
        rot,
        layout,
        positions: pos_source,
        block: block_source,
    };
    let out = [batch, seq, heads, head_dim]
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d));
    match out {
        Some(n) if n <= MAX_ELEMENTS => Ok(g),
        _ => Err(bad_x(format!(
            "the output [{batch}, {seq}, {heads}, {head_dim}] is more than the limit of {MAX_ELEMENTS} (2^29) values"
        ))),
    }
}

// ------------------------------------------------------------------------------------------------
// The op.
// ------------------------------------------------------------------------------------------------

impl TopicOp for RopeOp {
    fn kind(&self) -> OpKind {
        match self {
            RopeOp::RopeFreqs { .. } => ROPE_FREQS,
            RopeOp::Rope { .. } => ROPE,
        }
    }

    fn validate(&self) -> Result<(), OpError> {
        let kind = self.kind();
        check_float("theta", self.theta(), kind)?;
        let fraction = self.rotary_fraction();
        check_float("rotary_fraction", fraction, kind)?;
        if fraction <= 0.0 {
            return Err(OpError::BadParam {
                name: "rotary_fraction".into(),
                reason: "must be > 0: at least one pair of dims has to rotate".into(),
            });
        }
        if let RopeOp::RopeFreqs { dim, .. } = *self {
            check_float("dim", dim as f64, kind)?;
            if rotated_dims(fraction, dim) < 2 {
                return Err(OpError::BadParam {
                    name: "rotary_fraction".into(),
                    reason: format!(
                        "{fraction} x dim {dim} rotates no pair of dims: raise it to at least {}",
                        crate::format::format_value(2.0 / dim as f64)
                    ),
                });
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        let angles = if self.precise_angles() {
            "precise angles"
        } else {
            "naive f32 angles"
        };
        match self {
            RopeOp::RopeFreqs {
                dim,
                theta,
                rotary_fraction,
                ..
            } => format!(
                "rope_freqs dim={dim} theta={theta} rotary_fraction={rotary_fraction} {angles}"
            ),
            RopeOp::Rope {
                layout,
                theta,
                rotary_fraction,
                ..
            } => format!(
                "rope layout={} theta={theta} rotary_fraction={rotary_fraction} {angles}",
                layout.name()
            ),
        }
    }

    fn check_inputs(&self, req: &OpRequest) -> Result<(), OpError> {
        match self {
            RopeOp::RopeFreqs {
                dim,
                rotary_fraction,
                ..
            } => {
                let n_freq = rotated_dims(*rotary_fraction, *dim) / 2;
                if req.x.len().saturating_mul(n_freq) > MAX_ELEMENTS {
                    return Err(OpError::BadInput {
                        name: "positions".into(),
                        reason: format!(
                            "{} positions x {n_freq} frequencies is more than the limit of {MAX_ELEMENTS} (2^29) table entries",
                            req.x.len()
                        ),
                    });
                }
                Ok(())
            }
            RopeOp::Rope { .. } => geometry(self, req).map(drop),
        }
    }

    fn output_shape(&self, req: &OpRequest) -> Vec<usize> {
        match self {
            RopeOp::RopeFreqs {
                dim,
                rotary_fraction,
                ..
            } => vec![rotated_dims(*rotary_fraction, *dim) / 2],
            RopeOp::Rope { .. } => match geometry(self, req) {
                Ok(g) => g.out_shape(),
                Err(_) => req.x.shape.clone(),
            },
        }
    }

    fn reference(&self, req: &OpRequest) -> Reference {
        match self {
            RopeOp::RopeFreqs {
                dim,
                theta,
                rotary_fraction,
                ..
            } => {
                let freqs = freq_table(*theta, rotated_dims(*rotary_fraction, *dim));
                let n = freqs.len();
                let mut cos = Vec::with_capacity(req.x.len() * n);
                let mut sin = Vec::with_capacity(req.x.len() * n);
                for &p in &req.x.data {
                    for f in &freqs {
                        let a = exact_angle(p as i64, f);
                        cos.push(a.cos());
                        sin.push(a.sin());
                    }
                }
                let mut shape = req.x.shape.clone();
                shape.push(n);
                Reference {
                    values: freqs.iter().map(|f| f.inv_freq).collect(),
                    aux: vec![
                        AuxReference {
                            name: "cos".into(),
                            shape: shape.clone(),
                            values: cos,
                        },
                        AuxReference {
                            name: "sin".into(),
                            shape,
                            values: sin,
                        },
                    ],
                }
            }
            RopeOp::Rope { theta, .. } => {
                let Ok(g) = geometry(self, req) else {
                    return Reference {
                        values: vec![f64::NAN; req.x.len()],
                        aux: Vec::new(),
                    };
                };
                Reference {
                    values: rope_reference(&g, *theta, req),
                    aux: Vec::new(),
                }
            }
        }
    }

    /// Tolerance, derived (precise angles; f32 arithmetic):
    /// - angle: r is off by at most 7.5e-8 rad ([`reduce`]). An engine's sin and cos of
    ///   |r| <= π/4 add 1-2 ulp of a value <= 1 where they are accurate (libm, CUDA's sinf/cosf,
    ///   lavapipe: <= 1.2e-7), up to 2^-20.9 = 5.1e-7 where a Vulkan driver maps WGSL's sin/cos to
    ///   the hardware approximation (PTX sin.approx's bound; WGSL only promises 2^-11). So
    ///   |δc|, |δs| <= 2e-7, or 6e-7 on such drivers.
    /// - rope: y_a = x_a c − x_b s: |δy_a| <= (|x_a| + |x_b|)(|δc| + 2^-24) + |y_a| 2^-24, about
    ///   3.7e-7 ρ (1e-6 ρ on approximate sin/cos) with ρ the pair's norm. Relative to y that is
    ///   fine except where the rotation makes y_a nearly 0 (x_a c ≈ x_b s, a cancellation), so
    ///   the f32 bound rtol 1e-6 needs an absolute floor: 2^-18 = 3.8e-6 covers pair norms up to
    ///   10 (3.8 on approximate sin/cos): activations of order 1, as in the suite and the lessons
    ///   (the largest pair norm of 6.7e7 normal(0, 1) pairs is about 6). Larger inputs need a floor
    ///   scaled with ρ. The same floor applies in f16 and bf16, where the result is rounded once
    ///   more (1 ULP of the dtype).
    /// - rope_freqs: cos and sin are at most 1, so |δ| <= 6e-7 absolute on every engine: a floor
    ///   of 2^-20 (9.5e-7) on top of rtol 1e-6 (near the zeros of cos and sin only the absolute
    ///   bound means anything). inv_freq is the f32 rounding of the f64 value (0.5 ULP).
    ///
    /// Naive angles are held to the same bounds: their error grows with the position (about
    /// p · 2^-24 rad), and the check fails once that error times the pair's norm passes the floor.
    fn tolerance(&self, dtype: DType) -> Tolerance {
        let floor = match self {
            RopeOp::RopeFreqs { .. } => 2f64.powi(-20),
            RopeOp::Rope { .. } => 2f64.powi(-18),
        };
        Tolerance::for_dtype(dtype).with_floor(floor)
    }

    fn notes(&self, req: &OpRequest) -> Vec<String> {
        let mut notes = Vec::new();
        let max_pos = match self {
            RopeOp::RopeFreqs { .. } => req.x.data.iter().fold(0f32, |m, p| m.max(p.abs())),
            RopeOp::Rope { .. } => {
                let mut m = ["positions", "block_positions"]
                    .iter()
                    .filter_map(|n| req.input(n))
                    .flat_map(|t| t.data.iter())
                    .fold(0f32, |m, p| m.max(p.abs()));
                if req.input("positions").is_none() && req.x.shape.len() == 4 {
                    m = m.max(req.x.shape[1].saturating_sub(1) as f32);
                }
                let nan = req.x.data.iter().filter(|v| v.is_nan()).count();
                let inf = req.x.data.iter().filter(|v| v.is_infinite()).count();
                if nan + inf > 0 {
                    notes.push(format!(
                        "{nan} NaN and {inf} infinite input value(s): they spread to both outputs of their pair (inf · 0 and inf − inf are NaN); pass-through dims keep them as they are"
                    ));
                }
                if let Ok(g) = geometry(self, req)
                    && g.x_seq == 1
                    && g.seq > 1
                {
                    notes.push(format!(
                        "x has seq 1: the same vector is rotated to each of the {} positions",
                        g.seq
                    ));
                }
                m
            }
        };
        if !self.precise_angles() && max_pos >= 16.0 {
            notes.push(format!(
                "naive f32 angles at positions up to {max_pos}: f32(inv_freq) and the product p·inv_freq are each rounded to f32, so the angle is off by up to about p · 2^-24 = {} rad; precise_angles = true avoids it",
                crate::format::format_value(max_pos as f64 * 2f64.powi(-24))
            ));
        }
        notes
    }
}

/// The f64 rope of a request with resolved geometry.
fn rope_reference(g: &Geometry, theta: f64, req: &OpRequest) -> Vec<f64> {
    let freqs = freq_table(theta, g.rot);
    let positions = req.input("positions");
    let block = req.input("block_positions");
    let mut out = vec![0.0f64; g.out_len()];
    let mut cs = vec![(0.0f64, 0.0f64); freqs.len()];
    let mut cs_block = vec![(0.0f64, 0.0f64); freqs.len()];
    let x = &req.x.data;
    for b in 0..g.batch {
        for s in 0..g.seq {
            let p = position_of(g.positions, positions, g.seq, b, s);
            for (c, f) in cs.iter_mut().zip(&freqs) {
                let a = exact_angle(p as i64, f);
                *c = (a.cos(), a.sin());
            }
            if g.layout == Layout::Chatglm2d {
                let pb = position_of(g.block, block, g.seq, b, s);
                for (c, f) in cs_block.iter_mut().zip(&freqs) {
                    let a = exact_angle(pb as i64, f);
                    *c = (a.cos(), a.sin());
                }
            }
            for h in 0..g.heads {
                let xo = g.x_offset(b, s, h);
                let yo = g.y_offset(b, s, h);
                for j in 0..g.head_dim / 2 {
                    match slot(g.layout, g.head_dim, g.rot, j) {
                        Slot::Rotate {
                            a,
                            b: bb,
                            freq,
                            block,
                        } => {
                            let (c, sn) = if block { cs_block[freq] } else { cs[freq] };
                            let (xa, xb) = (x[xo + a] as f64, x[xo + bb] as f64);
                            out[yo + a] = xa * c - xb * sn;
                            out[yo + bb] = xb * c + xa * sn;
                        }
                        Slot::Pass { a } => {
                            out[yo + a] = x[xo + a] as f64;
                            out[yo + a + 1] = x[xo + a + 1] as f64;
                        }
                    }
                }
            }
        }
    }
    out
}

// ------------------------------------------------------------------------------------------------
// The check suite.
// ------------------------------------------------------------------------------------------------

fn positions_tensor(shape: Vec<usize>, values: Vec<f32>) -> Tensor {
    Tensor {
        shape,
        data: values,
    }
}

/// Seeded integer positions in [0, max] (a cheap LCG: the suite must be reproducible).
fn random_positions(n: usize, max: u32, seed: u64) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) % (max as u64 + 1)) as f32
        })
        .collect()
}

fn rope_case(
    name: String,
    op: RopeOp,
    dtype: DType,
    shape: [usize; 4],
    seed: u64,
    extra: Vec<(String, Tensor)>,
) -> Case {
    let n: usize = shape.iter().product();
    let mut c = Case::new(
        name,
        Op::new(op),
        dtype,
        Input::Normal {
            rows: 1,
            cols: n,
            scale: 1.0,
            seed,
        },
        Expect::Match,
    );
    c.shape = Some(shape.to_vec());
    c.extra = extra;
    c
}

/// This topic's cases for `kernelbook check`: both ops, every layout and dtype, partial rotary,
/// broadcast x, default and given positions up to 2^24, the naive angles breaking at long
/// positions; `large` adds f16 [8, 4096, 32, 128] (Llama-7B's q for 8 sequences of 4096).
pub fn suite_cases(large: bool) -> Vec<Case> {
    let mut out = Vec::new();
    let rope = |layout, rotary_fraction, precise_angles| RopeOp::Rope {
        layout,
        theta: DEFAULT_THETA,
        rotary_fraction,
        precise_angles,
    };
    let mut seed = 7000u64;
    let mut next = || {
        seed += 1;
        seed
    };
    for dtype in DType::ALL {
        // rope_freqs: HF's head 128 over short and long positions, partial and a large theta.
        let long: Vec<f32> = [
            0.0, 1.0, 2.0, 100.0, 2048.0, 8192.0, 32768.0, 1e6, 16777215.0,
        ]
        .into_iter()
        .chain((0..55).map(|i| i as f32 * 37.0))
        .collect();
        for (dim, theta, fraction) in [(128, DEFAULT_THETA, 1.0), (64, 5e5, 0.5), (2, 10.0, 1.0)] {
            let op = RopeOp::RopeFreqs {
                dim,
                theta,
                rotary_fraction: fraction,
                precise_angles: true,
            };
            let mut c = Case::new(
                format!("{} positions 0..2^24", op.describe()),
                Op::new(op),
                dtype,
                Input::Rows(vec![long.clone()]),
                Expect::Match,
            );
            c.shape = Some(vec![long.len()]);
            out.push(c);
        }
        for layout in Layout::ALL {
            for (fraction, shape) in [
                (1.0, [2, 16, 3, 32]),
                (0.5, [1, 8, 2, 24]),
                (1.0, [1, 1, 1, 4]),
            ] {
                if layout == Layout::Chatglm2d && shape[3] % 4 != 0 {
                    continue;
                }
                let op = rope(layout, fraction, true);
                let [b, s, _, _] = shape;
                let mut extra = Vec::new();
                let given = shape != [1, 8, 2, 24]; // one shape uses the default positions 0..seq-1
                if given || layout == Layout::Chatglm2d {
                    extra.push((
                        "positions".to_string(),
                        positions_tensor(vec![b, s], random_positions(b * s, 8192, next())),
                    ));
                }
                if layout == Layout::Chatglm2d {
                    extra.push((
                        "block_positions".to_string(),
                        positions_tensor(vec![b, s], random_positions(b * s, 64, next())),
                    ));
                }
                out.push(rope_case(
                    format!("{} {shape:?}", op.describe()),
                    op,
                    dtype,
                    shape,
                    next(),
                    extra,
                ));
            }
        }
        // One vector rotated to many positions (x has seq 1), positions up to 2^24 and negative.
        let op = rope(Layout::HalfSplit, 1.0, true);
        let far: Vec<f32> = [
            -16777216.0,
            -5.0,
            0.0,
            1.0,
            4095.0,
            8191.0,
            65536.0,
            16777215.0,
        ]
        .into_iter()
        .collect();
        out.push(rope_case(
            format!("{} x seq 1 at positions -2^24..2^24", op.describe()),
            op,
            dtype,
            [1, 1, 2, 64],
            next(),
            vec![("positions".into(), positions_tensor(vec![8], far))],
        ));
    }
    // Break it: naive f32 angles at long positions miss the reference (4.9e-4 rad at 8192).
    let long: Vec<f32> = (0..32).map(|i| 8192.0 + 1024.0 * i as f32).collect();
    let op = RopeOp::RopeFreqs {
        dim: 128,
        theta: DEFAULT_THETA,
        rotary_fraction: 1.0,
        precise_angles: false,
    };
    let mut c = Case::new(
        format!("{} positions 8192..40960", op.describe()),
        Op::new(op),
        DType::F32,
        Input::Rows(vec![long.clone()]),
        Expect::Breaks,
    );
    c.shape = Some(vec![long.len()]);
    out.push(c);
    let op = rope(Layout::HalfSplit, 1.0, false);
    out.push({
        let mut c = rope_case(
            format!("{} positions 8192..", op.describe()),
            op,
            DType::F32,
            [1, 32, 2, 64],
            next(),
            vec![("positions".into(), positions_tensor(vec![1, 32], long))],
        );
        c.expect = Expect::Breaks;
        c
    });
    // Naive angles where they are still fine: positions 0..3 (the angle is off by at most
    // 3.6e-7 rad there).
    let op = rope(Layout::Interleaved, 1.0, false);
    out.push(rope_case(
        format!("{} positions 0..3", op.describe()),
        op,
        DType::F32,
        [2, 4, 2, 16],
        next(),
        Vec::new(),
    ));
    if large {
        for layout in [Layout::HalfSplit, Layout::Interleaved] {
            let op = rope(layout, 1.0, true);
            let mut c = rope_case(
                format!("{} [8, 4096, 32, 128]", op.describe()),
                op,
                DType::F16,
                [8, 4096, 32, 128],
                next(),
                Vec::new(),
            );
            c.large = true;
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::Op;

    fn rope_req(
        op: RopeOp,
        dtype: DType,
        x: Tensor,
        extra: Vec<(&str, Tensor)>,
    ) -> Result<OpRequest, OpError> {
        OpRequest::with_inputs(
            Op::new(op),
            dtype,
            x,
            extra.into_iter().map(|(n, t)| (n.to_string(), t)).collect(),
        )
    }

    fn op(layout: Layout, fraction: f64) -> RopeOp {
        RopeOp::Rope {
            layout,
            theta: DEFAULT_THETA,
            rotary_fraction: fraction,
            precise_angles: true,
        }
    }

    #[test]
    fn inv_freq_matches_hf_for_head_128() {
        // HF tests/utils/test_modeling_rope_utils.py::test_default_rope_numerically.
        let f = freq_table(DEFAULT_THETA, 128);
        assert_eq!(f.len(), 64);
        assert_eq!(f[0].inv_freq, 1.0);
        assert!((f[1].inv_freq - 0.86596).abs() < 5e-6, "{}", f[1].inv_freq);
        assert!(
            (f[63].inv_freq - 1.1548e-4).abs() < 5e-9,
            "{}",
            f[63].inv_freq
        );
        // A geometric series: every ratio is theta^(-2/d).
        let ratio = DEFAULT_THETA.powf(-2.0 / 128.0);
        for w in f.windows(2) {
            assert!((w[1].inv_freq / w[0].inv_freq - ratio).abs() < 1e-14);
        }
    }

    #[test]
    fn rotated_dims_follow_neox_rounded_to_even() {
        assert_eq!(rotated_dims(1.0, 128), 128);
        assert_eq!(rotated_dims(0.25, 128), 32); // GPT-NeoX-20B rotary_pct
        assert_eq!(rotated_dims(0.2, 16), 2); // int(3.2) = 3, rounded down to 2
        assert_eq!(rotated_dims(0.29, 100), 28); // int(28.999999999999996) as in Python
        assert_eq!(rotated_dims(0.01, 16), 0);
    }

    #[test]
    fn reduce_is_exact_to_a_few_ulps_at_every_position() {
        let freqs = freq_table(DEFAULT_THETA, 128);
        let mut worst = 0.0f64;
        for &p in &[
            0i32,
            1,
            2,
            3,
            7,
            100,
            2047,
            2048,
            8191,
            8192,
            32768,
            1 << 20,
            (1 << 24) - 1,
            1 << 24,
            -1,
            -8192,
            -(1 << 24),
        ] {
            for f in &freqs {
                let (q, r) = reduce(p, f.turns);
                assert!(
                    (-std::f32::consts::FRAC_PI_4..std::f32::consts::FRAC_PI_4 + 1e-7).contains(&r),
                    "p {p}: r = {r}"
                );
                let got = q as f64 * std::f64::consts::FRAC_PI_2 + r as f64;
                let err = angle_difference(got, exact_angle(p as i64, f)).abs();
                worst = worst.max(err);
            }
        }
        // The rounding to 2^-27 turn, the product's rounding and the constant: <= 7.5e-8 rad.
        assert!(worst < 7.5e-8, "worst reduced-angle error {worst:e} rad");
        assert_eq!(TURN_UNIT.to_bits(), 0x33490fdb);
    }

    #[test]
    fn naive_angle_error_matches_published_figures() {
        // docs/numerics.md: the fp32 angle's error in cos is ~1.1e-4 at position 2048, 4.8e-4 at 8192,
        // 1.9e-3 at 32768. The naive angle f32(p) * f32(inv_freq) has two roundings (inv_freq,
        // the product), so near position p its error is up to about p * 2^-24. Worst over the 64
        // pairs of head 128 and 32 positions from p0:
        let freqs = freq_table(DEFAULT_THETA, 128);
        for (p0, published) in [(2048, 1.1e-4), (8192, 4.8e-4), (32768, 1.9e-3)] {
            let worst = (p0..p0 + 32)
                .flat_map(|p| freqs.iter().map(move |f| (p, f)))
                .map(|(p, f)| {
                    ((naive_angle(p, f) as f64).cos() - exact_angle(p as i64, f).cos()).abs()
                })
                .fold(0.0, f64::max);
            assert!(
                worst > 0.5 * published && worst < 2.0 * published,
                "p {p0}: worst cos error {worst:e}, published {published:e}"
            );
            // And the precise angles stay at f32's own rounding there.
            let precise = (p0..p0 + 32)
                .flat_map(|p| freqs.iter().map(move |f| (p, f)))
                .map(|(p, f)| {
                    let (q, r) = reduce(p, f.turns);
                    let (c, _) = by_quadrant(q, r.cos(), r.sin());
                    (c as f64 - exact_angle(p as i64, f).cos()).abs()
                })
                .fold(0.0, f64::max);
            assert!(precise < 2e-7, "p {p0}: precise cos error {precise:e}");
        }
    }

    #[test]
    fn quadrants_rotate_by_quarter_turns() {
        let (c, s) = (0.6f32, 0.8f32);
        assert_eq!(by_quadrant(0, c, s), (c, s));
        assert_eq!(by_quadrant(1, c, s), (-s, c));
        assert_eq!(by_quadrant(2, c, s), (-c, -s));
        assert_eq!(by_quadrant(3, c, s), (s, -c));
    }

    #[test]
    fn slots_pair_up_as_the_layouts_say() {
        let pairs =
            |layout, d, rot| -> Vec<Slot> { (0..d / 2).map(|j| slot(layout, d, rot, j)).collect() };
        let r = |a, b, freq, block| Slot::Rotate { a, b, freq, block };
        assert_eq!(
            pairs(Layout::HalfSplit, 8, 8),
            vec![
                r(0, 4, 0, false),
                r(1, 5, 1, false),
                r(2, 6, 2, false),
                r(3, 7, 3, false)
            ]
        );
        assert_eq!(
            pairs(Layout::Interleaved, 8, 8),
            vec![
                r(0, 1, 0, false),
                r(2, 3, 1, false),
                r(4, 5, 2, false),
                r(6, 7, 3, false)
            ]
        );
        // Partial: rot 4 of 8: pairs (0, 2), (1, 3), then dims 4..8 pass through.
        assert_eq!(
            pairs(Layout::HalfSplit, 8, 4),
            vec![
                r(0, 2, 0, false),
                r(1, 3, 1, false),
                Slot::Pass { a: 4 },
                Slot::Pass { a: 6 }
            ]
        );
        // ChatGLM-6B head 128: pairs (i, i + 32) by position, (64 + i, 96 + i) by block position.
        let glm = pairs(Layout::Chatglm2d, 128, 64);
        assert_eq!(glm[0], r(0, 32, 0, false));
        assert_eq!(glm[31], r(31, 63, 31, false));
        assert_eq!(glm[32], r(64, 96, 0, true));
        assert_eq!(glm[63], r(95, 127, 31, true));
        // Every element of the head is covered exactly once, in every layout and fraction.
        for layout in Layout::ALL {
            for (d, rot) in [(16, 16), (16, 8), (16, 2), (24, 12), (24, 6)] {
                let rot = if layout == Layout::Chatglm2d {
                    (rot / 2) & !1
                } else {
                    rot
                };
                if rot < 2 {
                    continue;
                }
                let mut seen = vec![0; d];
                for s in pairs(layout, d, rot) {
                    match s {
                        Slot::Rotate { a, b, .. } => {
                            seen[a] += 1;
                            seen[b] += 1;
                        }
                        Slot::Pass { a } => {
                            seen[a] += 1;
                            seen[a + 1] += 1;
                        }
                    }
                }
                assert!(
                    seen.iter().all(|&n| n == 1),
                    "{layout:?} d {d} rot {rot}: {seen:?}"
                );
            }
        }
    }

    #[test]
    fn bad_shapes_get_clear_errors() {
        let x = |shape: Vec<usize>| {
            let n = shape.iter().product();
            Tensor::new(shape, vec![0.5; n]).unwrap()
        };
        let pos = |shape: Vec<usize>| {
            let n = shape.iter().product();
            Tensor::new(shape, (0..n).map(|v| v as f32).collect()).unwrap()
        };
        let err = |r: Result<OpRequest, OpError>| r.unwrap_err().to_string();
        let e = err(rope_req(
            op(Layout::HalfSplit, 1.0),
            DType::F32,
            x(vec![1, 2, 1, 7]),
            vec![],
        ));
        assert!(e.contains("head_dim 7 is odd"), "{e}");
        let e = err(rope_req(
            op(Layout::HalfSplit, 1.0),
            DType::F32,
            x(vec![2, 8]),
            vec![],
        ));
        assert!(
            e.contains("expected 4 axes [batch, seq, heads, head_dim]"),
            "{e}"
        );
        let e = err(rope_req(
            op(Layout::HalfSplit, 1.0),
            DType::F32,
            x(vec![1, 4, 1, 8]),
            vec![("positions", pos(vec![1, 5]))],
        ));
        assert!(
            e.contains("input positions") && e.contains("5 positions per sequence but x has seq 4"),
            "{e}"
        );
        let e = err(rope_req(
            op(Layout::HalfSplit, 1.0),
            DType::F32,
            x(vec![2, 4, 1, 8]),
            vec![("positions", pos(vec![3, 4]))],
        ));
        assert!(e.contains("3 rows but x has batch 2"), "{e}");
        let e = err(rope_req(
            op(Layout::Chatglm2d, 1.0),
            DType::F32,
            x(vec![1, 4, 1, 8]),
            vec![],
        ));
        assert!(
            e.contains("input block_positions") && e.contains("chatglm2d needs block_positions"),
            "{e}"
        );
        let e = err(rope_req(
            op(Layout::Interleaved, 1.0),
            DType::F32,
            x(vec![1, 4, 1, 8]),
            vec![("block_positions", pos(vec![1, 4]))],
        ));
        assert!(
            e.contains("only layout chatglm2d uses block_positions"),
            "{e}"
        );
        let e = err(rope_req(
            op(Layout::Chatglm2d, 1.0),
            DType::F32,
            x(vec![1, 4, 1, 6]),
            vec![("block_positions", pos(vec![1, 4]))],
        ));
        assert!(e.contains("multiple of 4"), "{e}");
        let e = err(rope_req(
            op(Layout::HalfSplit, 0.1),
            DType::F32,
            x(vec![1, 4, 1, 8]),
            vec![],
        ));
        assert!(
            e.contains("rotary_fraction") && e.contains("rotates no pair"),
            "{e}"
        );
        let e = err(rope_req(
            op(Layout::HalfSplit, 1.0),
            DType::F32,
            x(vec![1, 4, 1, 8]),
            vec![(
                "positions",
                Tensor::new(vec![4], vec![0.0, 1.5, 2.0, 3.0]).unwrap(),
            )],
        ));
        assert!(e.contains("holds integers"), "{e}");
        // Broadcasting x with seq 1 over many positions is allowed, and so is [seq] for positions.
        let r = rope_req(
            op(Layout::HalfSplit, 1.0),
            DType::F32,
            x(vec![2, 1, 1, 8]),
            vec![("positions", pos(vec![5]))],
        )
        .unwrap();
        assert_eq!(r.output_shape(), vec![2, 5, 1, 8]);
        let e = Op::parse("rope", &[("rotary_fraction".into(), "0".into())])
            .unwrap_err()
            .to_string();
        assert!(e.contains("must be > 0"), "{e}");
        let e = Op::parse("rope_freqs", &[("dim".into(), "12.5".into())])
            .unwrap_err()
            .to_string();
        assert!(e.contains("whole number"), "{e}");
        let e = Op::parse("rope", &[("layout".into(), "neox".into())])
            .unwrap_err()
            .to_string();
        assert!(e.contains("half_split, interleaved, chatglm2d"), "{e}");
    }

    #[test]
    fn reference_rotates_and_passes_through() {
        let x = Tensor::new(
            vec![1, 3, 1, 6],
            (0..18).map(|v| v as f32 * 0.25 - 2.0).collect(),
        )
        .unwrap();
        let req = rope_req(op(Layout::HalfSplit, 0.7), DType::F32, x.clone(), vec![]).unwrap();
        let y = req.reference();
        // rot = int(4.2) = 4: pairs (0, 2) and (1, 3); dims 4, 5 pass through.
        let f = freq_table(DEFAULT_THETA, 4);
        for s in 0..3 {
            let o = s * 6;
            for (a, b, i) in [(0, 2, 0), (1, 3, 1)] {
                let th = s as f64 * f[i].inv_freq;
                let (xa, xb) = (x.data[o + a] as f64, x.data[o + b] as f64);
                assert!((y[o + a] - (xa * th.cos() - xb * th.sin())).abs() < 1e-15);
                assert!((y[o + b] - (xb * th.cos() + xa * th.sin())).abs() < 1e-15);
            }
            assert_eq!(y[o + 4], x.data[o + 4] as f64);
            assert_eq!(y[o + 5], x.data[o + 5] as f64);
            // Norm of the head preserved.
            let n = |v: &[f64]| v.iter().map(|a| a * a).sum::<f64>();
            let xs: Vec<f64> = x.data[o..o + 6].iter().map(|&v| v as f64).collect();
            assert!((n(&y[o..o + 6]) - n(&xs)).abs() < 1e-12);
        }
    }

    #[test]
    fn suite_cases_are_valid_requests() {
        for c in suite_cases(false) {
            c.request().unwrap_or_else(|e| panic!("{}: {e}", c.name));
        }
        assert!(suite_cases(true).iter().any(|c| c.large));
        assert!(!suite_cases(false).iter().any(|c| c.large));
    }
}
