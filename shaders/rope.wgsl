// rope.wgsl: rotary position embeddings. rope_main rotates x [batch, seq, heads, head_dim] by
// its positions (layouts half_split, interleaved, chatglm2d; partial rotary); rope_freqs_main
// writes the frequency table and cos/sin of position x frequency.
//
// Compiled by wgpu (naga) on first use (src/engine/wgpu/rope.rs) and shown in the app next to its
// results. Every engine computes exactly the algorithm in src/ops/rope.rs:
//   * one invocation per pair: it finds the two dims of its pair from the layout (or a pair of
//     dims that partial rotary passes through unchanged), in one fused pass over x;
//   * precise angles: the angle in turns, p * inv_freq / 2pi, from integer arithmetic on a
//     64-bit fixed-point frequency (exact: whole turns overflow away), reduced to a quarter turn
//     q and an f32 remainder r in [-pi/4, pi/4]; then this device's sin and cos of r, swapped by
//     quadrant. Naive angles: sin and cos of the f32 angle f32(p) * f32(inv_freq), as HF does;
//   * y_a = x_a c - x_b s, y_b = x_b c + x_a s in f32, rounded once to the storage type.
// The frequency table comes from the host (computed once in f64, as HF computes inv_freq once):
// 3 words per frequency, the turns' high and low words and the f32 inv_freq's bits.
//
// WGSL's sin and cos are this device's own: the specification only asks for an absolute error of
// 2^-11 on [-pi, pi]. Reducing the angle exactly first means the device's sin and cos only ever
// see |r| <= pi/4; the lesson measures what they do there (and, with naive angles, far outside).
//
// Buffers are array<u32> with one element per word (f32 bits, or f16/bf16 bits in the low half),
// as in softmax.wgsl. The parameters travel in a storage buffer (binding 0) so that both entry
// points share every binding: rope_freqs_main uses bindings 0-3, rope_main 0-5.

@group(0) @binding(0) var<storage, read> params: array<u32>;
@group(0) @binding(1) var<storage, read> src: array<u32>;             // x, or rope_freqs' positions
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;       // y, or [inv_freq, cos, sin]
@group(0) @binding(3) var<storage, read> table: array<u32>;           // 3 words per frequency
@group(0) @binding(4) var<storage, read> positions: array<u32>;       // i32 bits
@group(0) @binding(5) var<storage, read> block_positions: array<u32>; // i32 bits (chatglm2d)

// Indices into params (src/engine/wgpu/rope.rs fills them in this order).
const P_DTYPE: u32 = 0u;      // 0 = f32, 1 = f16, 2 = bf16
const P_PRECISE: u32 = 1u;    // 1 = precise angles, 0 = naive f32 angles
const P_ITEMS: u32 = 2u;      // work items (invocations that do something)
const P_BATCH: u32 = 3u;
const P_SEQ: u32 = 4u;        // positions per sequence in the output
const P_HEADS: u32 = 5u;
const P_HEAD_DIM: u32 = 6u;
const P_X_SEQ: u32 = 7u;      // x's own seq: P_SEQ, or 1 (one vector for every position)
const P_ROT: u32 = 8u;        // rotated dims (per half for chatglm2d)
const P_LAYOUT: u32 = 9u;
const P_POS_ROWS: u32 = 10u;  // 0: no positions (p = s); 1: one row for every batch; else batch
const P_BLOCK_ROWS: u32 = 11u;
const P_N_FREQ: u32 = 12u;    // rope_freqs: frequencies per position
const P_N_POS: u32 = 13u;     // rope_freqs: positions

const LAYOUT_HALF_SPLIT: u32 = 0u;
const LAYOUT_INTERLEAVED: u32 = 1u;
const LAYOUT_CHATGLM2D: u32 = 2u;

const DTYPE_F16: u32 = 1u;
const DTYPE_BF16: u32 = 2u;

// ---------------------------------------------------------------------------------------------
// Special values (pos_inf, nan, is_nan, is_inf, sign_bit, POS_INF_BITS, ...) and the f16/bf16 <->
// f32 conversions (f16_to_f32, f32_to_f16, bf16_to_f32, f32_to_bf16) come from shaders/dtype.wgsl,
// which the engine compiles in front of this file.
// ---------------------------------------------------------------------------------------------

// Element i of src, widened to f32.
fn load(i: u32) -> f32 {
    let word = src[i];
    switch params[P_DTYPE] {
        case DTYPE_F16: { return f16_to_f32(word & 0xffffu); }
        case DTYPE_BF16: { return bf16_to_f32(word & 0xffffu); }
        default: { return bitcast<f32>(word); }
    }
}

// v rounded to the storage type, written as element i of dst.
fn store(i: u32, v: f32) {
    switch params[P_DTYPE] {
        case DTYPE_F16: { dst[i] = f32_to_f16(v); }
        case DTYPE_BF16: { dst[i] = f32_to_bf16(v); }
        default: { dst[i] = bitcast<u32>(v); }
    }
}

// ---------------------------------------------------------------------------------------------
// Angles.
// ---------------------------------------------------------------------------------------------

// The high 32 bits of the 64-bit product a * b, from 16-bit halves (WGSL has no 64-bit integers).
fn mul_high(a: u32, b: u32) -> u32 {
    let a0 = a & 0xffffu;
    let a1 = a >> 16u;
    let b0 = b & 0xffffu;
    let b1 = b >> 16u;
    let low = a0 * b0;
    let cross1 = a0 * b1;
    let cross2 = a1 * b0;
    // The bits 16..47 of the sum of the three low products, whose carry reaches the high word.
    let middle = (low >> 16u) + (cross1 & 0xffffu) + (cross2 & 0xffffu);
    return a1 * b1 + (cross1 >> 16u) + (cross2 >> 16u) + (middle >> 16u);
}

// f32(2pi) / 2^27 exactly (bits 0x33490fdb): one unit of the rounded remainder, 4.68e-8 rad.
const TURN_UNIT: f32 = 4.6813379839250047e-8;

// cos and sin of position p times frequency f.
fn cos_sin(p: i32, f: u32) -> vec2<f32> {
    if params[P_PRECISE] == 0u {
        // The naive angle, as HF computes it in f32: one rounded product, then the device's
        // sin and cos of a possibly large argument.
        let angle = f32(p) * bitcast<f32>(table[3u * f + 2u]);
        return vec2<f32>(cos(angle), sin(angle));
    }
    // step 2: the angle in turns. turns = inv_freq / 2pi as a 64-bit fixed-point fraction
    // (hi, lo); t = the top 32 bits of |p| * turns mod 2^64: the angle in 2^-32 turn, exact.
    let hi = table[3u * f];
    let lo = table[3u * f + 1u];
    let u = u32(abs(p));
    var t = u * hi + mul_high(u, lo);
    if p < 0 {
        t = 0u - t;
    }
    // step 3: reduce to an eighth of a turn. q = the nearest quarter turn; the remainder (at most
    // 2^29 units either way) rounded to 2^5 units is an integer below 2^24: exact in f32, and
    // one rounded product turns it into radians, |r| <= pi/4.
    let q = (t + 0x20000000u) >> 30u;
    let rem = bitcast<i32>(t - (q << 30u));
    let r = f32((rem + 16) >> 5u) * TURN_UNIT;
    let c = cos(r);
    let s = sin(r);
    // angle = q * pi/2 + r: a quarter turn swaps cos and sin and negates one (exact).
    switch q & 3u {
        case 1u: { return vec2<f32>(-s, c); }
        case 2u: { return vec2<f32>(-c, -s); }
        case 3u: { return vec2<f32>(s, -c); }
        default: { return vec2<f32>(c, s); }
    }
}

// A token's position: given (one row for every batch, or one per batch), or its index s.
fn position_of(rows: u32, from_block: bool, b: u32, s: u32) -> i32 {
    if rows == 0u {
        return i32(s);
    }
    let row = select(b, 0u, rows == 1u);
    let i = row * params[P_SEQ] + s;
    if from_block {
        return bitcast<i32>(block_positions[i]);
    }
    return bitcast<i32>(positions[i]);
}

// ---------------------------------------------------------------------------------------------
// rope_main: one invocation per pair.
// ---------------------------------------------------------------------------------------------

const WORKGROUP_SIZE: u32 = 256u;

// A dispatch has at most 65535 workgroups per dimension, so the host may launch a 2D grid; each
// invocation flattens its position into a work item.
fn work_item(workgroup: vec3<u32>, workgroups: vec3<u32>, lane: u32) -> u32 {
    return (workgroup.y * workgroups.x + workgroup.x) * WORKGROUP_SIZE + lane;
}

@compute @workgroup_size(256)
fn rope_main(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) workgroups: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let item = work_item(workgroup, workgroups, lane);
    if item >= params[P_ITEMS] {
        return;
    }
    let head_dim = params[P_HEAD_DIM];
    let heads = params[P_HEADS];
    let seq = params[P_SEQ];
    let rot = params[P_ROT];
    let pairs = rot / 2u;

    // step 1: which pair. Item -> (token b, s; head h; slot j of head_dim / 2 in the head).
    let slots = head_dim / 2u;
    let j = item % slots;
    let token_head = item / slots;
    let h = token_head % heads;
    let token = token_head / heads;
    let s = token % seq;
    let b = token / seq;
    let sx = select(s, 0u, params[P_X_SEQ] == 1u);
    let x_base = ((b * params[P_X_SEQ] + sx) * heads + h) * head_dim;
    let y_base = (token * heads + h) * head_dim;

    // The slot's two dims: half_split (i, i + d/2), interleaved (2i, 2i + 1); chatglm2d splits
    // the head into two halves, each half-split, the second turned by the block position.
    // Slots past the rotated pairs copy two pass-through dims.
    var base = 0u;
    var l = j;
    var from_block = false;
    if params[P_LAYOUT] == LAYOUT_CHATGLM2D && j >= slots / 2u {
        base = head_dim / 2u;
        l = j - slots / 2u;
        from_block = true;
    }
    if l >= pairs {
        // Partial rotary: these dims pass through as stored, bit for bit.
        let a = base + rot + 2u * (l - pairs);
        dst[y_base + a] = src[x_base + a];
        dst[y_base + a + 1u] = src[x_base + a + 1u];
        return;
    }
    var a = base + l;
    var bb = base + l + pairs;
    if params[P_LAYOUT] == LAYOUT_INTERLEAVED {
        a = 2u * l;
        bb = 2u * l + 1u;
    }
    let rows = select(params[P_POS_ROWS], params[P_BLOCK_ROWS], from_block);
    let p = position_of(rows, from_block, b, s);
    let cs = cos_sin(p, l);

    // step 4: rotate the pair, in f32, each result rounded once to the storage type.
    let xa = load(x_base + a);
    let xb = load(x_base + bb);
    store(y_base + a, xa * cs.x - xb * cs.y);
    store(y_base + bb, xb * cs.x + xa * cs.y);
}

// ---------------------------------------------------------------------------------------------
// rope_freqs_main: one invocation per (position, frequency).
// ---------------------------------------------------------------------------------------------

@compute @workgroup_size(256)
fn rope_freqs_main(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) workgroups: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let item = work_item(workgroup, workgroups, lane);
    if item >= params[P_ITEMS] {
        return;
    }
    let n_freq = params[P_N_FREQ];
    let table_len = params[P_N_POS] * n_freq;
    let f = item % n_freq;
    let n = item / n_freq;
    if n == 0u {
        store(f, bitcast<f32>(table[3u * f + 2u])); // inv_freq, once
    }
    let cs = cos_sin(bitcast<i32>(src[n]), f);
    store(n_freq + item, cs.x);
    store(n_freq + table_len + item, cs.y);
}
