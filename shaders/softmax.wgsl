// softmax.wgsl: softmax (stable or naive, with temperature) and log_softmax, row by row, in
// f32 / f16 / bf16 storage.
//
// Compiled by wgpu (naga) at start-up (src/engine/wgpu.rs) and shown in the app next to its results.
// Every engine computes exactly the algorithm in src/ops/softmax.rs, per row, with z_j = x_j / T in
// f32:
//   * stable softmax: m = max_j z_j; s = sum_j e^(z_j - m) (f32); y_j = e^(z_j - m) / s.
//   * naive softmax (the "break it" variant): every intermediate lives in the storage type:
//     e_j = round(e^z_j); s = round(sum_j e_j) (summed in f32, rounded once); y_j = round(e_j / s).
//     In f16, e^z overflows to inf once z > 11.09, s becomes inf, and the row turns into NaN
//     (inf / inf) and zeros (finite / inf): that is the lesson.
//   * log_softmax (always stable): y_j = (z_j - m) - ln(s).
// A row holding a NaN or +inf, or only -inf values, is NaN (as in torch).
//
// One workgroup of 256 invocations handles one row: each invocation walks the row with a stride of
// 256 (lane, lane + 256, ...), then the workgroup combines the 256 partial results with a tree
// reduction in workgroup memory (256 -> 128 -> ... -> 1).
//
// As in logits.wgsl: WGSL lets an implementation assume no inf or NaN ever appears in f32
// arithmetic, so special values are made from bits, tested through bits and handled before any
// arithmetic; f16 and bf16 are converted with integer arithmetic; every buffer is an array<u32>,
// an f32 stored as its bits and an f16 or bf16 in the low 16 bits of its word (simple and
// race-free; a packed layout would halve the memory traffic).

// ---------------------------------------------------------------------------------------------
// Inputs, outputs and parameters (filled in by src/engine/wgpu.rs).
// ---------------------------------------------------------------------------------------------

struct Params {
    dtype: u32,        // storage type: 0 = f32, 1 = f16, 2 = bf16
    op: u32,           // 0 = softmax, 1 = log_softmax
    rows: u32,         // number of rows
    cols: u32,         // row length (the last axis)
    n: u32,            // rows * cols
    temperature: f32,  // T > 0, as f32
    clamp: u32,        // (unused here)
    lo: f32,           // (unused here)
    hi: f32,           // (unused here)
    stable: u32,       // softmax only: 1 = subtract the row max first, 0 = naive
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<storage, read> x: array<u32>;
@group(0) @binding(1) var<storage, read_write> y: array<u32>;
@group(0) @binding(2) var<uniform> params: Params;

const DTYPE_F16: u32 = 1u;
const DTYPE_BF16: u32 = 2u;

const OP_LOG_SOFTMAX: u32 = 1u;

// ---------------------------------------------------------------------------------------------
// The same helpers as in logits.wgsl (WGSL has no #include).
// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// Special values, by their bits.
// ---------------------------------------------------------------------------------------------

const POS_INF_BITS: u32 = 0x7f800000u;
const NEG_INF_BITS: u32 = 0xff800000u;
const NAN_BITS: u32 = 0x7fc00000u;

fn pos_inf() -> f32 { return bitcast<f32>(POS_INF_BITS); }
fn neg_inf() -> f32 { return bitcast<f32>(NEG_INF_BITS); }
fn nan() -> f32 { return bitcast<f32>(NAN_BITS); }

// NaN: all exponent bits set and a non-zero mantissa.
fn is_nan(v: f32) -> bool { return (bitcast<u32>(v) & 0x7fffffffu) > POS_INF_BITS; }
// +inf or -inf: all exponent bits set and a zero mantissa.
fn is_inf(v: f32) -> bool { return (bitcast<u32>(v) & 0x7fffffffu) == POS_INF_BITS; }
// The sign bit (true for -0 and -inf too): used where a comparison with inf would be indeterminate.
fn sign_bit(v: f32) -> bool { return (bitcast<u32>(v) >> 31u) == 1u; }

// ---------------------------------------------------------------------------------------------
// f16 and bf16 <-> f32, with integer arithmetic.
// ---------------------------------------------------------------------------------------------

// IEEE half (1 sign, 5 exponent, 10 mantissa bits) to f32. Exact: every f16 is an f32.
fn f16_to_f32(h: u32) -> f32 {
    let sign = (h & 0x8000u) << 16u;
    let exponent = (h >> 10u) & 0x1fu;
    let mantissa = h & 0x3ffu;
    if exponent == 0x1fu {
        // inf (mantissa 0) or NaN (payload kept, moved to the top of the f32 mantissa)
        return bitcast<f32>(sign | POS_INF_BITS | (mantissa << 13u));
    }
    if exponent == 0u {
        if mantissa == 0u {
            return bitcast<f32>(sign); // +-0
        }
        // Subnormal: mantissa * 2^-24. Its leading 1 is bit p (0..9), so the value is
        // 1.xxx * 2^(p - 24): a normal f32 with biased exponent p - 24 + 127.
        let p = 31u - countLeadingZeros(mantissa);
        let f32_mantissa = (mantissa << (23u - p)) & 0x7fffffu;
        return bitcast<f32>(sign | ((p + 103u) << 23u) | f32_mantissa);
    }
    // Normal: rebias the exponent (15 -> 127) and widen the mantissa (10 -> 23 bits).
    return bitcast<f32>(sign | ((exponent + 112u) << 23u) | (mantissa << 13u));
}

// f32 to IEEE half bits, round to nearest, ties to even. |v| >= 65520 becomes inf, values below
// half of the smallest subnormal (2^-25) become +-0, NaN stays NaN.
fn f32_to_f16(v: f32) -> u32 {
    let bits = bitcast<u32>(v);
    let sign = (bits >> 16u) & 0x8000u;
    let exponent = (bits >> 23u) & 0xffu;
    let mantissa = bits & 0x7fffffu;
    if exponent == 0xffu {
        if mantissa != 0u {
            return sign | 0x7e00u | (mantissa >> 13u); // NaN: set the quiet bit so it stays NaN
        }
        return sign | 0x7c00u; // +-inf
    }
    let e = i32(exponent) - 127; // unbiased exponent: |v| = 1.m * 2^e
    if e > 15 {
        return sign | 0x7c00u; // beyond 65504 and its rounding range: overflow to inf
    }
    if e >= -14 {
        // Normal f16: keep the top 10 mantissa bits, round on the 13 dropped ones.
        var h = (u32(e + 15) << 10u) | (mantissa >> 13u);
        let dropped = mantissa & 0x1fffu;
        if dropped > 0x1000u || (dropped == 0x1000u && (h & 1u) == 1u) {
            h = h + 1u; // a carry may ripple into the exponent: up to 0x7c00 = inf, as it should
        }
        return sign | h;
    }
    if e < -25 {
        return sign; // below 2^-25: rounds to zero (f32 subnormals land here too)
    }
    // Subnormal f16: count units of 2^-24. |v| = significand * 2^(e - 23) with the hidden bit
    // restored, so the count is significand >> shift with shift = -(e + 1), in 14..24.
    let significand = mantissa | 0x800000u;
    let shift = u32(-(e + 1));
    var h = significand >> shift;
    let dropped = significand & ((1u << shift) - 1u);
    let half = 1u << (shift - 1u);
    if dropped > half || (dropped == half && (h & 1u) == 1u) {
        h = h + 1u; // may become 0x400, the smallest normal: also correct
    }
    return sign | h;
}

// bfloat16 (the top 16 bits of an f32) to f32: append 16 zero bits. Exact.
fn bf16_to_f32(b: u32) -> f32 {
    return bitcast<f32>(b << 16u);
}

// f32 to bfloat16 bits, round to nearest, ties to even; NaN stays NaN.
fn f32_to_bf16(v: f32) -> u32 {
    let bits = bitcast<u32>(v);
    if (bits & 0x7fffffffu) > POS_INF_BITS {
        return (bits >> 16u) | 0x0040u; // NaN: keep sign and top payload, force the quiet bit
    }
    // Add 0x7fff plus the lowest kept bit, then truncate: ties go to the even neighbour. A carry
    // out of the mantissa bumps the exponent; past the largest bf16 it gives inf.
    let lowest_kept = (bits >> 16u) & 1u;
    return (bits + 0x7fffu + lowest_kept) >> 16u;
}

// Read element i and widen it to f32.
fn load(i: u32) -> f32 {
    let word = x[i];
    switch params.dtype {
        case DTYPE_F16: { return f16_to_f32(word & 0xffffu); }
        case DTYPE_BF16: { return bf16_to_f32(word & 0xffffu); }
        default: { return bitcast<f32>(word); }
    }
}

// Round v to the storage type and write it as element i.
fn store(i: u32, v: f32) {
    switch params.dtype {
        case DTYPE_F16: { y[i] = f32_to_f16(v); }
        case DTYPE_BF16: { y[i] = f32_to_bf16(v); }
        default: { y[i] = bitcast<u32>(v); }
    }
}


// Round v to the storage type and widen it back: the value the storage type would hold.
fn round_to_storage(v: f32) -> f32 {
    switch params.dtype {
        case DTYPE_F16: { return f16_to_f32(f32_to_f16(v)); }
        case DTYPE_BF16: { return bf16_to_f32(f32_to_bf16(v)); }
        default: { return v; }
    }
}

// ---------------------------------------------------------------------------------------------
// Row helpers.
// ---------------------------------------------------------------------------------------------

const WORKGROUP_SIZE: u32 = 256u;

// The lowest finite f32 (-3.4028235e38): the starting point of the max, so no -inf is ever compared.
const LOWEST_F32: f32 = -3.4028234663852886e38;

// The smallest f32 z whose e^z exceeds the largest f32 (ln(3.4028235e38) = 88.7228391).
const EXP_OVERFLOW: f32 = 88.72283935546875;

// What a row holds, as bits OR-ed together by every invocation.
const SAW_NAN: u32 = 1u;      // some z is NaN
const SAW_POS_INF: u32 = 2u;  // some z is +inf
const SAW_FINITE: u32 = 4u;   // some z is finite (a row of only -inf has none)
const SAW_EXP_INF: u32 = 8u;  // naive: some e_j = round(e^z_j) is inf

// Workgroup memory: one partial result per invocation, and the row's flags.
var<workgroup> partial: array<f32, WORKGROUP_SIZE>;
var<workgroup> row_flags: atomic<u32>;

// z = x / T for element i. NaN and +-inf pass through unchanged (inf / T = inf for T > 0).
fn scaled_logit(i: u32) -> f32 {
    let v = load(i);
    if is_nan(v) || is_inf(v) {
        return v;
    }
    return v / params.temperature;
}

// The class of z as a SAW_* flag.
fn classify(z: f32) -> u32 {
    if is_nan(z) {
        return SAW_NAN;
    }
    if is_inf(z) {
        return select(SAW_POS_INF, 0u, sign_bit(z)); // -inf contributes e^-inf = 0: nothing to flag
    }
    return SAW_FINITE;
}

// e^z, with the cases WGSL leaves indeterminate made explicit: e^-inf = 0, e^+inf = inf, and
// e^z = inf once z >= EXP_OVERFLOW.
fn exp_or_inf(z: f32) -> f32 {
    if is_nan(z) {
        return nan();
    }
    if is_inf(z) {
        return select(pos_inf(), 0.0, sign_bit(z));
    }
    if z >= EXP_OVERFLOW {
        return pos_inf();
    }
    return exp(z);
}

// Tree reduction: every invocation brings `value`, every invocation gets the max of all 256.
// Each round, the lower half combines its entry with one from the upper half: 128, 64, ..., 1.
fn workgroup_max(lane: u32, value: f32) -> f32 {
    partial[lane] = value;
    workgroupBarrier();
    for (var stride = WORKGROUP_SIZE / 2u; stride > 0u; stride = stride / 2u) {
        if lane < stride {
            partial[lane] = max(partial[lane], partial[lane + stride]);
        }
        workgroupBarrier();
    }
    let result = partial[0];
    workgroupBarrier(); // everyone has read partial[0] before the next reduction overwrites it
    return result;
}

// The same tree, adding.
fn workgroup_sum(lane: u32, value: f32) -> f32 {
    partial[lane] = value;
    workgroupBarrier();
    for (var stride = WORKGROUP_SIZE / 2u; stride > 0u; stride = stride / 2u) {
        if lane < stride {
            partial[lane] = partial[lane] + partial[lane + stride];
        }
        workgroupBarrier();
    }
    let result = partial[0];
    workgroupBarrier();
    return result;
}

// ---------------------------------------------------------------------------------------------
// Stable softmax and log_softmax: three passes over the row.
// ---------------------------------------------------------------------------------------------

fn stable_row(lane: u32, base: u32, cols: u32) {
    // step 1: max-reduce. m = max_j z_j over the finite z (NaN and +inf are flagged instead:
    // they make the row NaN; -inf never wins a max and contributes e^-inf = 0).
    var local_max = LOWEST_F32;
    var flags = 0u;
    for (var j = lane; j < cols; j += WORKGROUP_SIZE) {
        let z = scaled_logit(base + j);
        let z_class = classify(z);
        flags |= z_class;
        if z_class == SAW_FINITE {
            local_max = max(local_max, z);
        }
    }
    atomicOr(&row_flags, flags);
    let m = workgroup_max(lane, local_max);

    // step 2: sum-reduce. s = sum_j e^(z_j - m), accumulated in f32. Every exponent is <= 0, so
    // nothing overflows, and the max element contributes e^0 = 1, so s >= 1.
    var local_sum = 0.0;
    for (var j = lane; j < cols; j += WORKGROUP_SIZE) {
        let z = scaled_logit(base + j);
        if classify(z) == SAW_FINITE {
            local_sum += exp(z - m);
        }
    }
    let s = workgroup_sum(lane, local_sum);

    // step 3: normalise and write. softmax: y_j = e^(z_j - m) / s; log_softmax:
    // y_j = (z_j - m) - ln(s). Each result is rounded once, to the storage type.
    let seen = atomicLoad(&row_flags);
    let undefined = (seen & (SAW_NAN | SAW_POS_INF)) != 0u || (seen & SAW_FINITE) == 0u;
    let log_s = log(s);
    for (var j = lane; j < cols; j += WORKGROUP_SIZE) {
        let z = scaled_logit(base + j);
        var result: f32;
        if undefined {
            result = nan(); // NaN or +inf in the row (inf - inf), or all -inf (0 / 0)
        } else if classify(z) != SAW_FINITE {
            result = select(0.0, neg_inf(), params.op == OP_LOG_SOFTMAX); // z = -inf: y = 0, log y = -inf
        } else if params.op == OP_LOG_SOFTMAX {
            result = (z - m) - log_s;
        } else {
            result = exp(z - m) / s;
        }
        store(base + j, result);
    }
}

// ---------------------------------------------------------------------------------------------
// Naive softmax: no max subtraction, every intermediate rounded to the storage type.
// ---------------------------------------------------------------------------------------------

// e_j / s with IEEE's answers for the special cases, made explicit.
fn naive_divide(e: f32, s: f32) -> f32 {
    if is_nan(s) {
        return nan();
    }
    if is_inf(s) {
        return select(0.0, nan(), is_inf(e)); // finite / inf = 0, inf / inf = NaN
    }
    if s == 0.0 {
        return nan(); // every e_j underflowed to 0: 0 / 0
    }
    return e / s;
}

fn naive_row(lane: u32, base: u32, cols: u32) {
    // step 1: sum-reduce of e_j = round(e^z_j). In f16, e^z > 65504 (z > 11.09) rounds to inf,
    // and below z = -17.33 to 0. An inf e_j is flagged rather than added.
    var local_sum = 0.0;
    var flags = 0u;
    for (var j = lane; j < cols; j += WORKGROUP_SIZE) {
        let z = scaled_logit(base + j);
        flags |= classify(z);
        let e = round_to_storage(exp_or_inf(z));
        if is_inf(e) {
            flags |= SAW_EXP_INF;
        } else if !is_nan(e) {
            local_sum += e;
        }
    }
    atomicOr(&row_flags, flags);
    let total = workgroup_sum(lane, local_sum);

    // step 2: s = round(sum): inf if any e_j is inf, or if the sum itself is too large for the
    // storage type (in f16, once it passes 65504). (In f32 a sum of finite e_j can itself pass
    // 3.4e38: that inf comes from the hardware's IEEE addition.)
    let seen = atomicLoad(&row_flags);
    var s: f32;
    if (seen & SAW_NAN) != 0u {
        s = nan();
    } else if (seen & SAW_EXP_INF) != 0u {
        s = pos_inf();
    } else {
        s = round_to_storage(total);
    }

    // step 3: normalise and write. y_j = round(e_j / s): once s is inf, every finite e_j gives 0
    // and every inf e_j gives inf / inf = NaN.
    for (var j = lane; j < cols; j += WORKGROUP_SIZE) {
        let e = round_to_storage(exp_or_inf(scaled_logit(base + j)));
        store(base + j, naive_divide(e, s));
    }
}

// ---------------------------------------------------------------------------------------------
// The entry point: one workgroup per row.
// ---------------------------------------------------------------------------------------------

// A dispatch has at most 65535 workgroups per dimension, so for more rows the host launches a 2D
// grid of workgroups and each workgroup flattens its position into a row number.
@compute @workgroup_size(256)
fn softmax_main(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) workgroups: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let row = workgroup.y * workgroups.x + workgroup.x;
    if row >= params.rows {
        return; // the last line of a 2D grid may run past the end (the whole workgroup leaves)
    }
    if lane == 0u {
        atomicStore(&row_flags, 0u);
    }
    workgroupBarrier(); // the flags are cleared before anyone sets one

    let cols = params.cols;
    let base = row * cols; // index of the row's first element
    if params.op == OP_LOG_SOFTMAX || params.stable == 1u {
        stable_row(lane, base, cols);
    } else {
        naive_row(lane, base, cols);
    }
}
