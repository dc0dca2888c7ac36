// logits.wgsl: logit, sigmoid and logsigmoid, element-wise, in f32 / f16 / bf16 storage.
//
// Compiled by wgpu (naga) at start-up (src/engine/wgpu.rs) and shown in the app next to its results.
// Every engine computes exactly the algorithm in src/ops/logits.rs:
//   * values are loaded from their storage type (f32, f16 or bf16) and widened to f32 (exact);
//   * all arithmetic is f32;
//   * the result is rounded back to the storage type (round to nearest, ties to even; too large
//     becomes +-inf; NaN stays NaN).
//
// One invocation handles one element of a flat index i in [0, n).
//
// Two WGSL facts shape this file:
//   1. WGSL lets an implementation assume that no infinity or NaN ever appears in f32 arithmetic
//      (results that would be inf or NaN are "indeterminate"). So special values are made from
//      their bit patterns with bitcast, tested through their bits, and handled before any
//      arithmetic touches them: nothing here relies on max(), min() or a comparison passing a NaN
//      along.
//   2. WGSL storage buffers hold 32-bit words, and pack2x16float's result is indeterminate for
//      values outside f16's range (exactly the values this app is about). So the f16 and bf16
//      conversions are written out with integer arithmetic.
//
// Storage: every buffer is an array<u32> with one element per word. An f32 is stored as its bits;
// an f16 or bf16 sits in the low 16 bits of its word. Simple and race-free, at the price of twice
// the memory traffic a packed 16-bit layout would need.

// ---------------------------------------------------------------------------------------------
// Inputs, outputs and parameters (filled in by src/engine/wgpu.rs).
// ---------------------------------------------------------------------------------------------

struct Params {
    dtype: u32,        // storage type: 0 = f32, 1 = f16, 2 = bf16
    op: u32,           // 0 = logit, 1 = sigmoid, 2 = logsigmoid
    rows: u32,         // (unused here: element-wise)
    cols: u32,         // (unused here: element-wise)
    n: u32,            // number of elements
    temperature: f32,  // (unused here)
    clamp: u32,        // logit only: 1 = clamp p to [lo, hi] first
    lo: f32,           // f32(eps)
    hi: f32,           // 1 - lo, computed in f32 (as torch.logit does)
    stable: u32,       // (unused here)
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<storage, read> x: array<u32>;
@group(0) @binding(1) var<storage, read_write> y: array<u32>;
@group(0) @binding(2) var<uniform> params: Params;

const DTYPE_F16: u32 = 1u;
const DTYPE_BF16: u32 = 2u;

const OP_LOGIT: u32 = 0u;
const OP_SIGMOID: u32 = 1u;

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

// ---------------------------------------------------------------------------------------------
// The three functions, in f32.
// ---------------------------------------------------------------------------------------------

// logit(p) = ln(p / (1 - p)), the log-odds. With params.clamp, p is first clamped to [lo, hi].
// Edge values are explicit rather than left to the hardware:
// p = 0 -> -inf, p = 1 -> +inf, p < 0, p > 1 or NaN -> NaN.
fn logit(p_in: f32) -> f32 {
    if is_nan(p_in) {
        return nan(); // NaN in, NaN out (the clamp would hide it)
    }
    var p = p_in;
    if params.clamp == 1u {
        if is_inf(p) {
            p = select(params.hi, params.lo, sign_bit(p)); // -inf -> lo, +inf -> hi
        } else if p < params.lo {
            p = params.lo;
        } else if p > params.hi {
            p = params.hi;
        }
    }
    if is_inf(p) || p < 0.0 || p > 1.0 {
        return nan(); // not a probability
    }
    if p == 0.0 {
        return neg_inf();
    }
    if p == 1.0 {
        return pos_inf();
    }
    return log(p / (1.0 - p));
}

// sigmoid(x) = 1 / (1 + e^-x), evaluated so that e^(+large) is never formed:
// for x < 0 the equivalent e^x / (1 + e^x) only exponentiates a negative number.
fn sigmoid(v: f32) -> f32 {
    if is_nan(v) {
        return nan();
    }
    if is_inf(v) {
        return select(1.0, 0.0, sign_bit(v)); // sigmoid(-inf) = 0, sigmoid(+inf) = 1
    }
    if v >= 0.0 {
        return 1.0 / (1.0 + exp(-v));
    }
    let e = exp(v);
    return e / (1.0 + e);
}

// ln(1 + t) for t = e^-|x| in (0, 1]. WGSL has no log1p, and log(1.0 + t) is a poor substitute:
//   * rounding 1 + t to f32 throws away t's low bits: up to 2^-17 relative error near t = 2^-7;
//   * WGSL only promises log(u) within 2^-21 *absolute* for u in [0.5, 2], which is a large relative
//     error when log(u) itself is small (lavapipe measures 1.2e-7, i.e. 1.5e-5 relative at t = 2^-7).
// So: ln(1 + t) = 2 atanh(s) with s = t / (2 + t), in (0, 1/3], and atanh's series
// s + s^3/3 + s^5/5 + ... is summed to s^15 (the next term is below 2^-29 of the sum). Only a
// division and a polynomial: accurate to a few ULP on any device, for tiny and large t alike.
fn log_one_plus(t: f32) -> f32 {
    let s = t / (2.0 + t);
    let w = s * s;
    let series = 1.0 + w * (1.0 / 3.0 + w * (1.0 / 5.0 + w * (1.0 / 7.0 + w * (1.0 / 9.0
        + w * (1.0 / 11.0 + w * (1.0 / 13.0 + w * (1.0 / 15.0)))))));
    return 2.0 * s * series;
}

// logsigmoid(x) = ln(sigmoid(x)) = min(x, 0) - ln(1 + e^-|x|).
// Nothing underflows: logsigmoid(-200) = -200, where log(sigmoid(-200)) would give -inf.
fn logsigmoid(v: f32) -> f32 {
    if is_nan(v) {
        return nan();
    }
    if is_inf(v) {
        return select(0.0, neg_inf(), sign_bit(v)); // logsigmoid(-inf) = -inf, logsigmoid(+inf) = 0
    }
    let t = exp(-abs(v)); // in (0, 1]; 0 once |v| > 104 (then the log term is 0 anyway)
    return min(v, 0.0) - log_one_plus(t);
}

// ---------------------------------------------------------------------------------------------
// The entry point: load, compute in f32, store rounded.
// ---------------------------------------------------------------------------------------------

// 256 invocations per workgroup. A dispatch has at most 65535 workgroups per dimension, so for
// more than 65535 * 256 elements the host launches a 2D grid of workgroups and each invocation
// flattens its position into one index.
@compute @workgroup_size(256)
fn logits_main(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) workgroups: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let i = (workgroup.y * workgroups.x + workgroup.x) * 256u + lane;
    if i >= params.n {
        return; // the last workgroup may run past the end
    }
    let v = load(i); // widen to f32 (exact)
    var r: f32;
    switch params.op {
        case OP_LOGIT: { r = logit(v); }
        case OP_SIGMOID: { r = sigmoid(v); }
        default: { r = logsigmoid(v); }
    }
    store(i, r); // round once, to the storage type
}
