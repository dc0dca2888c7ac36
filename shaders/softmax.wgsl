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
// Special values (pos_inf, nan, is_nan, is_inf, sign_bit, POS_INF_BITS, ...) and the f16/bf16 <->
// f32 conversions (f16_to_f32, f32_to_f16, bf16_to_f32, f32_to_bf16) come from shaders/dtype.wgsl,
// which the engine compiles in front of this file.
// ---------------------------------------------------------------------------------------------

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
