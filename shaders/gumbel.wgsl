// gumbel.wgsl: Gumbel noise and Gumbel-softmax samples from the counter-based generator
// Philox4x32-10, with 32-bit integer arithmetic only.
//
// Compiled by wgpu (naga) on first use (src/engine/wgpu/gumbel.rs) and shown in the app next to
// its results. Every engine computes exactly the algorithm in src/ops/gumbel.rs:
//   * random bits: element (row s, column j) takes word j % 4 of
//     philox4x32_10(counter = (j / 4, s, offset_lo, offset_hi), key = (seed_lo, seed_hi)).
//     WGSL has no 64-bit integers, so Philox's 32x32 -> 64-bit products are built from four
//     16x16-bit products (mulhi below).
//   * word -> U = (2 (w >> 8) + 1) / 2^25, strictly inside (0, 1) -> g = -ln(-ln U), evaluated in
//     integer fixed point (shift-and-add logarithm, a short series near U = 1), so g is the same
//     f32 on CUDA, WGSL and the CPU, bit for bit. WGSL's own log is not used: its accuracy differs
//     from driver to driver.
//   * gumbel_softmax, per sample row s (logits row r = s / draws):
//       a_j = l_rj + g_sj;  m = max_j a_j;  hot = first j with a_j = m     (the Gumbel-max sample)
//       d_j = max((a_j - m) * (1/tau), -128)                                  (<= 0, no overflow)
//       soft_j = e^(d_j) / sum_i e^(d_i);  hard: y = one_hot(hot), aux soft = soft
//
// Entry points:
//   gumbel_main            gumbel_noise: one invocation per Philox call (4 neighbouring columns)
//   gumbel_softmax_short   rows of K <= 64: one invocation per sample row, a_j kept in an array
//   gumbel_softmax_rows    longer rows: one workgroup of 256 per sample row, tree reductions
//   philox_kat, gumbel_words   the tests: raw Philox blocks and the word -> g map
//
// Storage: every buffer is an array<u32>, one element per word: an f32 as its bits, an f16 or
// bf16 in the low 16 bits (the conversions are the same as in softmax.wgsl).

// ---------------------------------------------------------------------------------------------
// Bindings. Each entry point uses its own set (the host binds exactly those).
// ---------------------------------------------------------------------------------------------

struct SampleParams {
    rows: u32,      // logits rows
    cols: u32,      // K, classes per row
    draws: u32,     // samples per logits row
    samples: u32,   // rows * draws: output rows
    groups: u32,    // Philox calls per row: ceil(K / 4)
    dtype: u32,     // 0 = f32, 1 = f16, 2 = bf16
    hard: u32,      // 1: y = one-hot, soft sample to `soft`
    inv_tau: f32,   // 1/tau rounded to f32 once, on the host
    key0: u32,      // seed, low 32 bits
    key1: u32,      // seed, high 32 bits
    off0: u32,      // offset, low 32 bits
    off1: u32,      // offset, high 32 bits
}

struct NoiseParams {
    rows: u32,
    cols: u32,
    groups: u32,
    dtype: u32,
    key0: u32,
    key1: u32,
    off0: u32,
    off1: u32,
}

struct TestParams {
    n: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

// gumbel_softmax_short, gumbel_softmax_rows: logits in, samples out.
@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<storage, read_write> soft: array<u32>;
@group(0) @binding(3) var<uniform> sp: SampleParams;

// gumbel_main (gumbel_noise): noise out.
@group(0) @binding(0) var<storage, read_write> noise: array<u32>;
@group(0) @binding(1) var<uniform> np: NoiseParams;

// philox_kat, gumbel_words: src in, dst out.
@group(0) @binding(2) var<uniform> tp: TestParams;

const DTYPE_F16: u32 = 1u;
const DTYPE_BF16: u32 = 2u;

// ---------------------------------------------------------------------------------------------
// step 1: Philox4x32-10 (Salmon et al. 2011; Random123), 32-bit integers only.
// ---------------------------------------------------------------------------------------------

const PHILOX_M0: u32 = 0xD2511F53u;  // round multipliers
const PHILOX_M1: u32 = 0xCD9E8D57u;
const PHILOX_W0: u32 = 0x9E3779B9u;  // Weyl constants: the key schedule
const PHILOX_W1: u32 = 0xBB67AE85u;

// High 32 bits of the 64-bit product a * b, from four 16x16-bit products (each fits 32 bits).
// (The low 32 bits are a * b itself: WGSL's u32 multiplication wraps.)
fn mulhi(a: u32, b: u32) -> u32 {
    let a0 = a & 0xffffu;
    let a1 = a >> 16u;
    let b0 = b & 0xffffu;
    let b1 = b >> 16u;
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    let mid = (p00 >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu); // < 3 * 2^16: no overflow
    return p11 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u);
}

// Ten rounds; the key is bumped between rounds. Round: two 32x32 -> 64-bit products, the high
// halves XOR-ed with the other two words and the key, the words permuted.
fn philox(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    var c = counter;
    var k = key;
    for (var round = 0u; round < 10u; round++) {
        if round > 0u {
            k = k + vec2<u32>(PHILOX_W0, PHILOX_W1);
        }
        let hi0 = mulhi(PHILOX_M0, c.x);
        let lo0 = PHILOX_M0 * c.x;
        let hi1 = mulhi(PHILOX_M1, c.z);
        let lo1 = PHILOX_M1 * c.z;
        c = vec4<u32>(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
    }
    return c;
}

// ---------------------------------------------------------------------------------------------
// step 2: word -> Gumbel noise g = -ln(-ln U), in integer fixed point (bit-identical to
// gumbel_from_word in src/ops/gumbel.rs and kernels/gumbel.cu).
// ---------------------------------------------------------------------------------------------

const LN2_Q32: u32 = 0xB17217F8u; // ln 2 in Q0.32

// ln f for f in [1, 2) given in Q1.31, as Q0.32. Shift-and-add: while f (1 - 2^-k) stays >= 1,
// multiply by it (a shift and a subtraction) and add -ln(1 - 2^-k), at most twice per k; ln of
// what remains, 1 + r with r < 2^-16, is r. The constants are -ln(1 - 2^-k) in Q0.32 (the same
// table as LN_TABLE in src/ops/gumbel.rs), written out step by step: constant shifts, and no
// indexing into a constant array (naga and lavapipe copy such an array on every lookup: 7x slower).
// x and the running sum travel together as a vec2.
fn ln_step(xs: vec2<u32>, k: u32, ln_factor: u32) -> vec2<u32> {
    let t = xs.x - ((xs.x >> k) + ((xs.x >> (k - 1u)) & 1u));
    if t >= 0x80000000u {
        return vec2<u32>(t, xs.y + ln_factor);
    }
    return xs;
}

fn ln_q32(f31: u32) -> u32 {
    var xs = vec2<u32>(f31, 0u);
    xs = ln_step(ln_step(xs, 2u, 1235585093u), 2u, 1235585093u);
    xs = ln_step(ln_step(xs, 3u, 573512964u), 3u, 573512964u);
    xs = ln_step(ln_step(xs, 4u, 277190838u), 4u, 277190838u);
    xs = ln_step(ln_step(xs, 5u, 136359621u), 5u, 136359621u);
    xs = ln_step(ln_step(xs, 6u, 67638678u), 6u, 67638678u);
    xs = ln_step(ln_step(xs, 7u, 33686191u), 7u, 33686191u);
    xs = ln_step(ln_step(xs, 8u, 16810070u), 8u, 16810070u);
    xs = ln_step(ln_step(xs, 9u, 8396811u), 9u, 8396811u);
    xs = ln_step(ln_step(xs, 10u, 4196353u), 10u, 4196353u);
    xs = ln_step(ln_step(xs, 11u, 2097664u), 11u, 2097664u);
    xs = ln_step(ln_step(xs, 12u, 1048704u), 12u, 1048704u);
    xs = ln_step(ln_step(xs, 13u, 524320u), 13u, 524320u);
    xs = ln_step(ln_step(xs, 14u, 262152u), 14u, 262152u);
    xs = ln_step(ln_step(xs, 15u, 131074u), 15u, 131074u);
    xs = ln_step(ln_step(xs, 16u, 65537u), 16u, 65537u);
    return xs.y + ((xs.x - 0x80000000u) << 1u);
}

// A positive number as mant * 2^(exp - 31), mant in [2^31, 2^32).
struct Scaled {
    mant: u32,
    exp: i32,
}

// E = -ln U for U = m / 2^25, m = 2 (w >> 8) + 1.
fn neg_ln_uniform(w: u32) -> Scaled {
    let m = ((w >> 8u) << 1u) | 1u;
    if m < 0x01800000u {
        // U < 3/4: U = f 2^(b - 26), b = bit length of m: E = (26 - b) ln 2 - ln f (Q32.32).
        let b = 32u - countLeadingZeros(m);
        let l = ln_q32(m << (32u - b));
        let n = 26u - b;
        let hi = mulhi(n, LN2_Q32) - select(0u, 1u, n * LN2_Q32 < l);
        let lo = n * LN2_Q32 - l;
        if hi > 0u {
            let c = countLeadingZeros(hi);
            return Scaled((hi << c) | (lo >> (32u - c)), 31 - i32(c));
        }
        let c = countLeadingZeros(lo);
        return Scaled(lo << c, -1 - i32(c));
    }
    // U >= 3/4: V = 1 - U = n / 2^25 exactly; E = V (1 + V T), T = sum_{i<14} V^i/(i + 2).
    let n = 0x02000000u - m;
    let v = n << 7u; // V in Q0.32
    // Horner, innermost first: the constants are 1/(i + 2) in Q0.32, i = 13 down to 0.
    var t = 286331153u; // 1/15
    t = 306783378u + mulhi(t, v); // 1/14
    t = 330382100u + mulhi(t, v); // 1/13
    t = 357913941u + mulhi(t, v); // 1/12
    t = 390451572u + mulhi(t, v); // 1/11
    t = 429496730u + mulhi(t, v); // 1/10
    t = 477218588u + mulhi(t, v); // 1/9
    t = 536870912u + mulhi(t, v); // 1/8
    t = 613566757u + mulhi(t, v); // 1/7
    t = 715827883u + mulhi(t, v); // 1/6
    t = 858993459u + mulhi(t, v); // 1/5
    t = 1073741824u + mulhi(t, v); // 1/4
    t = 1431655765u + mulhi(t, v); // 1/3
    t = 2147483648u + mulhi(t, v); // 1/2
    let s = 0x80000000u + (mulhi(v, t) >> 1u); // 1 + V T in Q1.31
    let c = countLeadingZeros(n);
    let hi = mulhi(n << c, s);
    let lo = (n << c) * s;
    if hi >= 0x80000000u {
        return Scaled(hi, 7 - i32(c));
    }
    return Scaled((hi << 1u) | (lo >> 31u), 6 - i32(c));
}

// g = -ln E = -(e ln 2 + ln M), as a sign and a Q32.32 magnitude, then to f32: the Q6.26 value
// hi * 2^16 + lo is rounded once by an exact-operand addition, and scaled by 2^-26 exactly.
fn gumbel_from_word(w: u32) -> f32 {
    let e = neg_ln_uniform(w);
    let l = ln_q32(e.mant);
    var hi: u32;
    var lo: u32;
    var negative: bool;
    if e.exp >= 0 {
        let n = u32(e.exp);
        lo = n * LN2_Q32 + l;
        hi = mulhi(n, LN2_Q32) + select(0u, 1u, lo < l);
        negative = true; // E >= 1: g <= 0
    } else {
        let n = u32(-e.exp);
        hi = mulhi(n, LN2_Q32) - select(0u, 1u, n * LN2_Q32 < l);
        lo = n * LN2_Q32 - l;
        negative = false;
    }
    let q = (hi << 26u) + (lo >> 6u) + ((lo >> 5u) & 1u);
    let magnitude = (f32(q >> 16u) * 65536.0 + f32(q & 0xffffu)) * bitcast<f32>(0x32800000u);
    return select(magnitude, -magnitude, negative);
}

// ---------------------------------------------------------------------------------------------
// Special values (pos_inf, nan, is_nan, is_inf, sign_bit, POS_INF_BITS, ...) and the f16/bf16 <->
// f32 conversions (f16_to_f32, f32_to_f16, bf16_to_f32, f32_to_bf16) come from shaders/dtype.wgsl,
// which the engine compiles in front of this file.
// ---------------------------------------------------------------------------------------------

// A storage word back to f32 / an f32 rounded to the storage type, as a word.
fn decode(word: u32, dtype: u32) -> f32 {
    switch dtype {
        case DTYPE_F16: { return f16_to_f32(word & 0xffffu); }
        case DTYPE_BF16: { return bf16_to_f32(word & 0xffffu); }
        default: { return bitcast<f32>(word); }
    }
}

fn encode(v: f32, dtype: u32) -> u32 {
    switch dtype {
        case DTYPE_F16: { return f32_to_f16(v); }
        case DTYPE_BF16: { return f32_to_bf16(v); }
        default: { return bitcast<u32>(v); }
    }
}

// ---------------------------------------------------------------------------------------------
// gumbel_noise: one invocation per Philox call, i.e. per 4 neighbouring columns of a row.
// ---------------------------------------------------------------------------------------------

const WORKGROUP_SIZE: u32 = 256u;

// A dispatch has at most 65535 workgroups per dimension: larger grids are 2D and flattened here.
fn flat_workgroup(workgroup: vec3<u32>, workgroups: vec3<u32>) -> u32 {
    return workgroup.y * workgroups.x + workgroup.x;
}

@compute @workgroup_size(256)
fn gumbel_main(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) workgroups: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let id = flat_workgroup(workgroup, workgroups) * WORKGROUP_SIZE + lane;
    if id >= np.rows * np.groups {
        return;
    }
    let row = id / np.groups;
    let group = id % np.groups;
    let words = philox(vec4<u32>(group, row, np.off0, np.off1), vec2<u32>(np.key0, np.key1));
    for (var i = 0u; i < 4u; i++) {
        let col = group * 4u + i;
        if col < np.cols {
            noise[row * np.cols + col] = encode(gumbel_from_word(words[i]), np.dtype);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// gumbel_softmax, short rows: one invocation per sample row.
// ---------------------------------------------------------------------------------------------

// Rows up to this many classes take the short path (the host uses the same number).
const SHORT_K: u32 = 64u;

// The lowest finite f32: the max starts here (every a_j is finite: |l| <= 1e30, |g| < 18).
const LOWEST_F32: f32 = -3.4028234663852886e38;

// e^-128 is 0 in f32: the gaps are clamped there, so exp never sees a huge argument.
const GAP_FLOOR: f32 = -128.0;

// a_j = l_j + g_j for column j of sample row s (logits row base lbase), from a Philox block.
fn perturbed(lbase: u32, j: u32, word: u32) -> f32 {
    return decode(src[lbase + j], sp.dtype) + gumbel_from_word(word);
}

fn gap(a: f32, m: f32) -> f32 {
    return max((a - m) * sp.inv_tau, GAP_FLOOR);
}

@compute @workgroup_size(256)
fn gumbel_softmax_short(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) workgroups: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let s = flat_workgroup(workgroup, workgroups) * WORKGROUP_SIZE + lane;
    if s >= sp.samples {
        return;
    }
    let lbase = (s / sp.draws) * sp.cols; // logits row r = s / draws
    let obase = s * sp.cols;
    let key = vec2<u32>(sp.key0, sp.key1);
    var a: array<f32, SHORT_K>;

    // step 3: perturb and take the max: a_j = l_j + g_j, m = max_j a_j, hot = the first argmax
    // (the Gumbel-max sample).
    var m = LOWEST_F32;
    var hot = 0u;
    for (var group = 0u; group < sp.groups; group++) {
        let words = philox(vec4<u32>(group, s, sp.off0, sp.off1), key);
        for (var i = 0u; i < 4u; i++) {
            let j = group * 4u + i;
            if j < sp.cols {
                a[j] = perturbed(lbase, j, words[i]);
                if a[j] > m {
                    m = a[j];
                    hot = j;
                }
            }
        }
    }

    // step 4: sum the exponentials of the gaps d_j = (a_j - m) / tau <= 0 (e^0 = 1 for the max).
    var total = 0.0;
    for (var j = 0u; j < sp.cols; j++) {
        a[j] = exp(gap(a[j], m));
        total += a[j];
    }

    // step 5: normalise and write: soft_j = e^(d_j) / total; hard: the one-hot of hot.
    for (var j = 0u; j < sp.cols; j++) {
        let y = encode(a[j] / total, sp.dtype);
        if sp.hard == 1u {
            soft[obase + j] = y;
            dst[obase + j] = encode(select(0.0, 1.0, j == hot), sp.dtype);
        } else {
            dst[obase + j] = y;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// gumbel_softmax, long rows: one workgroup per sample row. Lane t takes the Philox groups
// t, t + 256, ... (4 columns each). The noise is drawn once: pass 1 parks a_j in the output
// buffer (as f32 bits) and passes 2 and 3 read it back. A counter-based generator could instead
// regenerate the noise in every pass (it keeps no state), but -ln(-ln U) in integer arithmetic
// costs more than a write and a read of one word.
// ---------------------------------------------------------------------------------------------

var<workgroup> red_val: array<f32, WORKGROUP_SIZE>;
var<workgroup> red_idx: array<u32, WORKGROUP_SIZE>;

struct ArgMax {
    value: f32,
    index: u32,
}

// Tree reduction of (value, index): the larger value wins, the smaller index on a tie, so the
// result is the first argmax of the row whatever the lane order.
fn workgroup_argmax(lane: u32, value: f32, index: u32) -> ArgMax {
    red_val[lane] = value;
    red_idx[lane] = index;
    workgroupBarrier();
    for (var stride = WORKGROUP_SIZE / 2u; stride > 0u; stride = stride / 2u) {
        if lane < stride {
            let v = red_val[lane + stride];
            let i = red_idx[lane + stride];
            if v > red_val[lane] || (v == red_val[lane] && i < red_idx[lane]) {
                red_val[lane] = v;
                red_idx[lane] = i;
            }
        }
        workgroupBarrier();
    }
    let result = ArgMax(red_val[0], red_idx[0]);
    workgroupBarrier();
    return result;
}

fn workgroup_sum(lane: u32, value: f32) -> f32 {
    red_val[lane] = value;
    workgroupBarrier();
    for (var stride = WORKGROUP_SIZE / 2u; stride > 0u; stride = stride / 2u) {
        if lane < stride {
            red_val[lane] = red_val[lane] + red_val[lane + stride];
        }
        workgroupBarrier();
    }
    let result = red_val[0];
    workgroupBarrier();
    return result;
}

@compute @workgroup_size(256)
fn gumbel_softmax_rows(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) workgroups: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let s = flat_workgroup(workgroup, workgroups);
    if s >= sp.samples {
        return; // the whole workgroup leaves together
    }
    let lbase = (s / sp.draws) * sp.cols;
    let obase = s * sp.cols;
    let key = vec2<u32>(sp.key0, sp.key1);

    // step 3: perturb (a_j parked in dst) and max-reduce with the argmax.
    var m = LOWEST_F32;
    var hot = 0xffffffffu;
    for (var group = lane; group < sp.groups; group += WORKGROUP_SIZE) {
        let words = philox(vec4<u32>(group, s, sp.off0, sp.off1), key);
        for (var i = 0u; i < 4u; i++) {
            let j = group * 4u + i;
            if j < sp.cols {
                let a = perturbed(lbase, j, words[i]);
                dst[obase + j] = bitcast<u32>(a);
                if a > m {
                    m = a;
                    hot = j;
                }
            }
        }
    }
    let best = workgroup_argmax(lane, m, hot);

    // step 4: sum-reduce e^(d_j). Each lane reads back only the a_j it wrote.
    var part = 0.0;
    for (var group = lane; group < sp.groups; group += WORKGROUP_SIZE) {
        for (var j = group * 4u; j < min(group * 4u + 4u, sp.cols); j++) {
            part += exp(gap(bitcast<f32>(dst[obase + j]), best.value));
        }
    }
    let total = workgroup_sum(lane, part);

    // step 5: normalise and write (over the parked a_j).
    for (var group = lane; group < sp.groups; group += WORKGROUP_SIZE) {
        for (var j = group * 4u; j < min(group * 4u + 4u, sp.cols); j++) {
            let e = exp(gap(bitcast<f32>(dst[obase + j]), best.value));
            let y = encode(e / total, sp.dtype);
            if sp.hard == 1u {
                soft[obase + j] = y;
                dst[obase + j] = encode(select(0.0, 1.0, j == best.index), sp.dtype);
            } else {
                dst[obase + j] = y;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Test entry points: Random123's known-answer vectors and the word -> g map, checked bit for bit
// against the Rust implementation (tests/gumbel.rs).
// ---------------------------------------------------------------------------------------------

// src holds n blocks of (counter[4], key[2]); dst gets n blocks of 4 output words.
@compute @workgroup_size(64)
fn philox_kat(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if i >= tp.n {
        return;
    }
    let c = vec4<u32>(src[6u * i], src[6u * i + 1u], src[6u * i + 2u], src[6u * i + 3u]);
    let k = vec2<u32>(src[6u * i + 4u], src[6u * i + 5u]);
    let out = philox(c, k);
    for (var j = 0u; j < 4u; j++) {
        dst[4u * i + j] = out[j];
    }
}

// src holds n words; dst gets the bits of g = gumbel_from_word(word) for each (rows of 256 x
// workgroups in a 2D grid for large n).
@compute @workgroup_size(256)
fn gumbel_words(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) workgroups: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let i = flat_workgroup(workgroup, workgroups) * WORKGROUP_SIZE + lane;
    if i >= tp.n {
        return;
    }
    dst[i] = bitcast<u32>(gumbel_from_word(src[i]));
}
