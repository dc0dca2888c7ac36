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
//     integer fixed point (a 256-entry logarithm table, a short series near U = 1; 64-bit values
//     as (lo, hi) pairs of u32), so g is the same f32 on CUDA, WGSL and the CPU, bit for bit.
//     WGSL's own log is not used: its accuracy differs from driver to driver.
//   * gumbel_softmax, per sample row s (logits row r = s / draws):
//       a_j = l_rj + g_sj;  m = max_j a_j;  hot = first j with a_j = m     (the Gumbel-max sample)
//       d_j = max((a_j - m) * (1/tau), -128)                                  (<= 0, no overflow)
//       soft_j = e^(d_j) / sum_i e^(d_i);  hard: y = one_hot(hot), aux soft = soft when asked for
//
// Entry points:
//   gumbel_main            gumbel_noise: one invocation per Philox call (4 neighbouring columns)
//   gumbel_softmax_short   rows of K <= 64: one invocation per sample row, a_j kept in an array
//   gumbel_softmax_rows    longer rows: one workgroup of 256 per sample row, tree reductions
//   philox_kat, gumbel_words   the tests: raw Philox blocks and the word -> g map
//
// Storage: every buffer is an array<u32>, one element per word: an f32 as its bits, an f16 or
// bf16 in the low 16 bits (the conversions are the same as in softmax.wgsl). The logarithm table
// (256 pairs (-ln r_i, r_i), src/ops/gumbel.rs) comes from the host at binding 0 of every entry
// point that draws noise: the Rust constants are its only copy.

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
    hard: u32,      // 1: y = one-hot
    inv_tau: f32,   // 1/tau rounded to f32 once, on the host
    key0: u32,      // seed, low 32 bits
    key1: u32,      // seed, high 32 bits
    off0: u32,      // offset, low 32 bits
    off1: u32,      // offset, high 32 bits
    want_soft: u32, // hard mode: 1 = also write the soft sample to `soft` (return_soft)
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

// Every entry point that draws noise: the logarithm table, (-ln r_i in Q0.32, r_i in Q0.24).
@group(0) @binding(0) var<storage, read> ln_table: array<vec2<u32>>;

// gumbel_softmax_short, gumbel_softmax_rows: logits in, samples out.
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;
@group(0) @binding(3) var<storage, read_write> soft: array<u32>;
@group(0) @binding(4) var<uniform> sp: SampleParams;

// gumbel_main (gumbel_noise): noise out.
@group(0) @binding(1) var<storage, read_write> noise: array<u32>;
@group(0) @binding(2) var<uniform> np: NoiseParams;

// gumbel_words: src in, dst out.
@group(0) @binding(3) var<uniform> tp: TestParams;

// philox_kat (draws no noise, so no table): blocks in, words out.
@group(0) @binding(0) var<storage, read> kat_in: array<u32>;
@group(0) @binding(1) var<storage, read_write> kat_out: array<u32>;
@group(0) @binding(2) var<uniform> kp: TestParams;

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

const LN2_LO: u32 = 0x7217F7D2u;       // ln 2 in Q24.40: 0xB1_7217F7D2 as (lo, hi)
const LN2_HI: u32 = 0xB1u;
const THIRD_Q16: u32 = 21845u;         // 1/3 in Q0.16
const FIVE_24THS_Q32: u32 = 894784853u; // 5/24 in Q0.32
const SERIES_BELOW: u32 = 0x20000u;    // V = 1 - U = n / 2^25 with n below this: V < 2^-8
const MINUS_32_LN2_LO: u32 = 0xBD0105C0u; // -32 ln 2 in Q24.40, two's complement (lo, hi)
const MINUS_32_LN2_HI: u32 = 0xFFFFE9D1u;

// 64-bit integers as vec2(lo, hi), two's complement.
fn add64(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    let lo = a.x + b.x;
    return vec2<u32>(lo, a.y + b.y + select(0u, 1u, lo < a.x));
}

fn sub64(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    return vec2<u32>(a.x - b.x, a.y - b.y - select(0u, 1u, a.x < b.x));
}

// k ln 2 in Q24.40 for a small k.
fn times_ln2(k: u32) -> vec2<u32> {
    return vec2<u32>(k * LN2_LO, mulhi(k, LN2_LO) + k * LN2_HI);
}

// ln f for f in [1, 2) given in Q1.31, as Q24.40. i = the 8 bits after f's leading 1; the table
// gives (-ln r_i, r_i) with t = f r_i - 1 in [0, 2^-8), exact: f r_i = 1 + t in Q.55 (a 64-bit
// product), and the 2^40 of the 1 falls off the low 32 bits of t in Q0.40.
// ln f = -ln r_i + ln(1 + t), ln(1 + t) = t - t^2 (1/2 - t/3) (the next term is below 2^-34).
fn ln_q40(f31: u32) -> vec2<u32> {
    let entry = ln_table[(f31 >> 23u) - 256u];
    let t = ((f31 * entry.y) >> 15u) | (mulhi(f31, entry.y) << 17u); // Q0.40
    let q = 0x00800000u - mulhi(t, THIRD_Q16);                      // 1/2 - t/3 in Q0.24
    let t2q = mulhi(t, mulhi(t, q));                                 // t (t q) in Q0.40
    return add64(vec2<u32>(entry.x << 8u, entry.x >> 24u), vec2<u32>(t - t2q, 0u));
}

// phi(V) = ln(-ln(1 - V) / V) = V/2 + 5V^2/24 + V^3/8 (+ less than 2^-35) for V < 2^-8, Q0.40.
fn phi_q40(v40: u32) -> u32 {
    let inner = FIVE_24THS_Q32 + (v40 >> 11u);                 // 5/24 + V/8
    return mulhi(v40, 0x80000000u + (mulhi(v40, inner) >> 8u)); // V (1/2 + V inner)
}

// E = -ln U, then g = -ln E, both logarithms by ln_q40:
//   V = 1 - U < 2^-8:  E = V e^phi(V) with V = n 2^-25 exact (x = n normalised, e its exponent)
//   otherwise:         U = f 2^-k, E = k ln 2 - ln f (Q24.40), normalised to x 2^(e - 31)
//   ln E = e ln 2 + ln(x / 2^31) + phi, a signed 64-bit Q.40 value; g = -ln E, rounded to f32
//   once: hi * 2^23 + lo, both exact in f32, add with one rounding; the scaling is exact.
fn gumbel_from_word(w: u32) -> f32 {
    let m = (w >> 7u) | 1u;   // U = m / 2^25
    let n = 0x02000000u - m; // V = n / 2^25
    var x: u32;
    var e32: u32; // e + 32 (>= 0): ln E starts at -32 ln 2 (+ phi), then e32 ln 2 is added
    var ln_e = vec2<u32>(MINUS_32_LN2_LO, MINUS_32_LN2_HI);
    if n < SERIES_BELOW {
        let c = countLeadingZeros(n);
        x = n << c;
        e32 = 38u - c;
        ln_e = add64(ln_e, vec2<u32>(phi_q40(n << 15u), 0u));
    } else {
        let c = countLeadingZeros(m);
        let e40 = sub64(times_ln2(c - 6u), ln_q40(m << c));
        let cz = countLeadingZeros(e40.y); // 19..31: E >= 2^-8, so e40 >= 2^32
        x = (e40.y << cz) | (e40.x >> (32u - cz));
        e32 = 55u - cz;
    }
    ln_e = add64(add64(ln_e, times_ln2(e32)), ln_q40(x));
    let hi = bitcast<i32>((ln_e.x >> 23u) | (ln_e.y << 9u)); // ln_e >> 23: |hi| < 2^22
    let lo = ln_e.x & 0x7fffffu;
    let hi_f = bitcast<f32>(0x4b400000u + bitcast<u32>(hi)) - 12582912.0; // exact
    let lo_f = bitcast<f32>(0x4b000000u | lo) - 8388608.0;                 // exact
    return (hi_f * 8388608.0 + lo_f) * bitcast<f32>(0xab800000u);          // * -2^-40
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

    // A hard sample alone needs no exponentials: write the one-hot and stop.
    if sp.hard == 1u && sp.want_soft == 0u {
        for (var j = 0u; j < sp.cols; j++) {
            dst[obase + j] = encode(select(0.0, 1.0, j == hot), sp.dtype);
        }
        return;
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
// buffer (as f32 bits) and passes 2 and 3 read it back. (A counter-based generator keeps no state,
// so a kernel could as well redraw the noise in every pass; the fast CUDA kernel keeps a_j in
// registers instead.)
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

    // A hard sample alone: the one-hot over the parked a_j, no exponentials.
    if sp.hard == 1u && sp.want_soft == 0u {
        for (var group = lane; group < sp.groups; group += WORKGROUP_SIZE) {
            for (var j = group * 4u; j < min(group * 4u + 4u, sp.cols); j++) {
                dst[obase + j] = encode(select(0.0, 1.0, j == best.index), sp.dtype);
            }
        }
        return;
    }

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

// kat_in holds n blocks of (counter[4], key[2]); kat_out gets n blocks of 4 output words.
@compute @workgroup_size(64)
fn philox_kat(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if i >= kp.n {
        return;
    }
    let c = vec4<u32>(kat_in[6u * i], kat_in[6u * i + 1u], kat_in[6u * i + 2u], kat_in[6u * i + 3u]);
    let k = vec2<u32>(kat_in[6u * i + 4u], kat_in[6u * i + 5u]);
    let out = philox(c, k);
    for (var j = 0u; j < 4u; j++) {
        kat_out[4u * i + j] = out[j];
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
