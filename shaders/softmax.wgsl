// softmax.wgsl: softmax (stable or naive, with temperature) and log_softmax, row by row, in
// f32 / f16 / bf16 storage: a simple three-pass shader and a fast two-pass one.
//
// Compiled by wgpu (naga) at start-up (src/engine/wgpu/mod.rs) and shown in the app next to its
// results. Every engine computes exactly the algorithm in src/ops/softmax.rs, per row, with
// z_j = x_j / T in f32:
//   * stable softmax: m = max_j z_j; s = sum_j e^(z_j - m) (f32); y_j = e^(z_j - m) / s.
//   * naive softmax (the "break it" variant): every intermediate lives in the storage type:
//     e_j = round(e^z_j); s = round(sum_j e_j) (summed in f32, rounded once); y_j = round(e_j / s).
//     In f16, e^z overflows to inf once z > 11.09, s becomes inf, and the row turns into NaN
//     (inf / inf) and zeros (finite / inf): that is the lesson.
//   * log_softmax (always stable): y_j = (z_j - m) - ln(s).
// A row holding a NaN or +inf, or only -inf values, is NaN (as in torch).
//
// Two kernels compute it (the app's "simple" and "fast"; the host picks the entry point):
//
// softmax_main, the simple kernel (and the only one for naive softmax). One workgroup of 256
// invocations handles one row: each invocation walks the row with a stride of 256 (lane,
// lane + 256, ...), then the workgroup combines the 256 partial results with a tree reduction in
// workgroup memory (256 -> 128 -> ... -> 1). It reads the row three times, once per step: the max,
// the sum, then the normalised output. Per f32 element that is 3 reads + 1 write = 16 bytes of
// memory traffic, where 8 (one read, one write) would do.
//
// softmax_fast, the fast kernel: the same result in two passes over the row.
//   fast pass 1, online max and sum (Milakov & Gimelshein, 2018): each invocation keeps a running
//     max m and a running sum s = sum e^(z - m) over its columns. When a value above m arrives,
//     the sum so far is rescaled to the new max, s <- s e^(m_old - m_new), then the new terms are
//     added. The workgroup then merges its 256 pairs (m_i, s_i): M = max_i m_i, and
//     S = sum_i s_i e^(m_i - M), which is exactly sum_j e^(z_j - M). One read of the row gives
//     both numbers the simple kernel needs two reads for.
//   fast pass 2, normalise: read the row again and write e^(z_j - M) / S (or z_j - M - ln S).
// That is 2 reads + 1 write = 12 bytes per f32 element. Three more things cut the time further:
//   * each invocation loads four neighbouring elements at once (one 16-byte vec4<u32> load in
//     place of four 4-byte ones) and issues four such loads before it uses the first, so 64 bytes
//     per invocation are on their way from memory together (a GPU hides memory's latency by
//     having many loads in flight);
//   * the host launches a limited number of workgroups and each loops over rows (row, row +
//     workgroups, ...), so that the rows being worked on at once fit the GPU's L2 cache (how many:
//     src/engine/wgpu/mod.rs): pass 2 can then re-read its row from the cache, and memory sees
//     close to the minimal 8 bytes per element. With one workgroup per row, a large GPU works on
//     over a thousand rows at once, and a row is long gone from the cache when it is read again;
//   * a row whose length is not a multiple of 4 (so its vec4s do not line up with the buffer's)
//     has up to 3 elements before its first whole vec4 and up to 3 after its last: six
//     invocations take one of those "edge" elements each, reading and writing single words
//     (a neighbouring row may own the rest of that vec4).
// Both kernels accumulate in f32 and round each output once to the storage type; they differ in
// the order of the additions and in the rescaling, so they agree to within the check's tolerance,
// not bit for bit.
//
// As in logits.wgsl: WGSL lets an implementation assume no inf or NaN ever appears in f32
// arithmetic, so special values are made from bits, tested through bits and handled before any
// arithmetic; f16 and bf16 are converted with integer arithmetic; every buffer is an array<u32>,
// an f32 stored as its bits and an f16 or bf16 in the low 16 bits of its word (simple and
// race-free; a packed layout would halve the memory traffic). The fast kernel views the same
// buffers as array<vec4<u32>>: four words per load.

// ---------------------------------------------------------------------------------------------
// Inputs, outputs and parameters (filled in by src/engine/wgpu/mod.rs).
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

// A stored word widened to f32.
fn widen(word: u32) -> f32 {
    switch params.dtype {
        case DTYPE_F16: { return f16_to_f32(word & 0xffffu); }
        case DTYPE_BF16: { return bf16_to_f32(word & 0xffffu); }
        default: { return bitcast<f32>(word); }
    }
}

// v rounded to the storage type, as the word that stores it.
fn narrow(v: f32) -> u32 {
    switch params.dtype {
        case DTYPE_F16: { return f32_to_f16(v); }
        case DTYPE_BF16: { return f32_to_bf16(v); }
        default: { return bitcast<u32>(v); }
    }
}

// Read element i and widen it to f32.
fn load(i: u32) -> f32 {
    return widen(x[i]);
}

// Round v to the storage type and write it as element i.
fn store(i: u32, v: f32) {
    y[i] = narrow(v);
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

// z = x / T. NaN and +-inf pass through unchanged (inf / T = inf for T > 0).
fn scale(v: f32) -> f32 {
    if is_nan(v) || is_inf(v) {
        return v;
    }
    return v / params.temperature;
}

// z = x / T for element i.
fn scaled_logit(i: u32) -> f32 {
    return scale(load(i));
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

// =============================================================================================
// The fast kernel: stable softmax and log_softmax in two passes over the row (see the header).
// =============================================================================================

// The same buffers as x and y, four words at a time. The host pads both to a multiple of 4 words,
// so every element lies in some vec4.
@group(0) @binding(0) var<storage, read> x4: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> y4: array<vec4<u32>>;

// e^d is 0 in f32 for every d <= -104 (e^-104 = 6.8e-46 is below half the smallest subnormal,
// 2^-150 = 7.0e-46).
const EXP_UNDERFLOW: f32 = -104.0;

// e^d for d <= 0. d = z - m may have overflowed to -inf (z near the lowest f32, m near the
// largest), which WGSL arithmetic need not handle; clamping first gives the same 0.
fn exp_nonpositive(d: f32) -> f32 {
    return exp(max(d, EXP_UNDERFLOW));
}

fn exp_nonpositive4(d: vec4<f32>) -> vec4<f32> {
    return exp(max(d, vec4(EXP_UNDERFLOW)));
}

// Element i, through the vec4 view.
fn load_word(i: u32) -> u32 {
    return x4[i / 4u][i % 4u];
}

fn widen4(w: vec4<u32>) -> vec4<f32> {
    return vec4(widen(w.x), widen(w.y), widen(w.z), widen(w.w));
}

fn narrow4(v: vec4<f32>) -> vec4<u32> {
    return vec4(narrow(v.x), narrow(v.y), narrow(v.z), narrow(v.w));
}

// z = x / T for four elements; NaN and +-inf pass through unchanged, as in `scale`.
fn scale4(v: vec4<f32>) -> vec4<f32> {
    let special = (bitcast<vec4<u32>>(v) & vec4(0x7fffffffu)) >= vec4(POS_INF_BITS);
    return select(v / params.temperature, v, special);
}

// No NaN and no inf among the four: the common case, computed as a vector.
fn all_finite(z: vec4<f32>) -> bool {
    return all((bitcast<vec4<u32>>(z) & vec4(0x7fffffffu)) < vec4(POS_INF_BITS));
}

// Where a row lies in memory, in elements [base, end), and its whole vec4s [first4, end4), as vec4
// indices. `head` elements come before the first whole vec4, `edges` is head + those after the last.
struct RowSpan {
    base: u32,
    first4: u32,
    end4: u32,
    head: u32,
    edges: u32,
}

fn row_span(row: u32) -> RowSpan {
    let base = row * params.cols;
    let end = base + params.cols;
    let body_start = min((base + 3u) / 4u * 4u, end); // where the first whole vec4 starts
    let body_end = max(end / 4u * 4u, body_start);    // where the last whole vec4 ends
    let head = body_start - base;
    return RowSpan(base, body_start / 4u, body_end / 4u, head, head + (end - body_end));
}

// The k-th edge element (k < span.edges): first the head, then the elements after the last vec4.
fn edge_index(span: RowSpan, k: u32) -> u32 {
    return select(span.end4 * 4u + (k - span.head), span.base + k, k < span.head);
}

// An invocation's running max and sum over the columns it has seen: s = sum e^(z - m).
struct Running {
    m: f32,
    s: f32,
    flags: u32, // SAW_* bits
}

// Add one z to the running (m, s).
fn running_add(r: ptr<function, Running>, z: f32) {
    let z_class = classify(z);
    (*r).flags |= z_class;
    if z_class != SAW_FINITE {
        return; // NaN and +inf are flagged (the row is NaN); -inf adds e^-inf = 0
    }
    if z > (*r).m {
        (*r).s *= exp_nonpositive((*r).m - z); // the sum so far, relative to the new max
        (*r).m = z;
    }
    (*r).s += exp_nonpositive(z - (*r).m);
}

// Add four z at once: one rescale (to the largest of the four) and four exponentials.
fn running_add4(r: ptr<function, Running>, z: vec4<f32>) {
    if !all_finite(z) {
        for (var k = 0u; k < 4u; k++) {
            running_add(r, z[k]);
        }
        return;
    }
    (*r).flags |= SAW_FINITE;
    let top = max(max(z.x, z.y), max(z.z, z.w));
    if top > (*r).m {
        (*r).s *= exp_nonpositive((*r).m - top);
        (*r).m = top;
    }
    let e = exp_nonpositive4(z - (*r).m);
    (*r).s += (e.x + e.y) + (e.z + e.w);
}

// What the second pass needs to know about a row.
struct RowStats {
    m: f32,
    s: f32,
    log_s: f32,
    undefined: bool, // NaN or +inf in the row, or only -inf: every output is NaN
}

// One output from its z (fast pass 2), for softmax or log_softmax.
fn normalised(z: f32, row: RowStats) -> f32 {
    if row.undefined {
        return nan();
    }
    if classify(z) != SAW_FINITE {
        return select(0.0, neg_inf(), params.op == OP_LOG_SOFTMAX); // z = -inf: y = 0, log y = -inf
    }
    if params.op == OP_LOG_SOFTMAX {
        return (z - row.m) - row.log_s;
    }
    return exp_nonpositive(z - row.m) / row.s;
}

fn normalised4(z: vec4<f32>, row: RowStats) -> vec4<f32> {
    if row.undefined || !all_finite(z) {
        return vec4(normalised(z.x, row), normalised(z.y, row), normalised(z.z, row),
                    normalised(z.w, row));
    }
    if params.op == OP_LOG_SOFTMAX {
        return (z - row.m) - row.log_s;
    }
    return exp_nonpositive4(z - row.m) / row.s;
}

fn fast_row(lane: u32, span: RowSpan) {
    // fast pass 1: online max and sum. Each invocation folds its columns into a running (m, s):
    // first its edge element, if it has one, then its vec4s lane, lane + 256, lane + 512, ...
    var r = Running(LOWEST_F32, 0.0, 0u);
    if lane < span.edges {
        running_add(&r, scale(widen(load_word(edge_index(span, lane)))));
    }
    // Whole groups of four vec4s: the four loads are all issued before the first value is used.
    var t = span.first4 + lane;
    for (; t + 3u * WORKGROUP_SIZE < span.end4; t += 4u * WORKGROUP_SIZE) {
        let w0 = x4[t];
        let w1 = x4[t + WORKGROUP_SIZE];
        let w2 = x4[t + 2u * WORKGROUP_SIZE];
        let w3 = x4[t + 3u * WORKGROUP_SIZE];
        running_add4(&r, scale4(widen4(w0)));
        running_add4(&r, scale4(widen4(w1)));
        running_add4(&r, scale4(widen4(w2)));
        running_add4(&r, scale4(widen4(w3)));
    }
    for (; t < span.end4; t += WORKGROUP_SIZE) { // the last 0 to 3 vec4s
        running_add4(&r, scale4(widen4(x4[t])));
    }
    // Merge the 256 running pairs: M = max_i m_i, S = sum_i s_i e^(m_i - M). An invocation that
    // saw no finite value has s_i = 0 and adds nothing.
    atomicOr(&row_flags, r.flags);
    let m = workgroup_max(lane, r.m);
    let s = workgroup_sum(lane, r.s * exp_nonpositive(r.m - m));
    let seen = atomicLoad(&row_flags);
    let row = RowStats(
        m,
        s,
        log(s),
        (seen & (SAW_NAN | SAW_POS_INF)) != 0u || (seen & SAW_FINITE) == 0u,
    );

    // fast pass 2: normalise and store, walking the row as pass 1 did: y_j = e^(z_j - M) / S, or
    // (z_j - M) - ln S for log_softmax, each rounded once to the storage type.
    if lane < span.edges {
        let i = edge_index(span, lane);
        y4[i / 4u][i % 4u] = narrow(normalised(scale(widen(load_word(i))), row));
    }
    t = span.first4 + lane;
    for (; t + 3u * WORKGROUP_SIZE < span.end4; t += 4u * WORKGROUP_SIZE) {
        let w0 = x4[t];
        let w1 = x4[t + WORKGROUP_SIZE];
        let w2 = x4[t + 2u * WORKGROUP_SIZE];
        let w3 = x4[t + 3u * WORKGROUP_SIZE];
        y4[t] = narrow4(normalised4(scale4(widen4(w0)), row));
        y4[t + WORKGROUP_SIZE] = narrow4(normalised4(scale4(widen4(w1)), row));
        y4[t + 2u * WORKGROUP_SIZE] = narrow4(normalised4(scale4(widen4(w2)), row));
        y4[t + 3u * WORKGROUP_SIZE] = narrow4(normalised4(scale4(widen4(w3)), row));
    }
    for (; t < span.end4; t += WORKGROUP_SIZE) {
        y4[t] = narrow4(normalised4(scale4(widen4(x4[t])), row));
    }
}

// The fast entry point: the host launches at most as many workgroups as rows (how many: see
// src/engine/wgpu/mod.rs), and each workgroup takes rows workgroup, workgroup + workgroups, ...
// Stable softmax and log_softmax only: naive softmax always runs softmax_main.
@compute @workgroup_size(256)
fn softmax_fast(
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) workgroups: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    for (var row = workgroup.x; row < params.rows; row += workgroups.x) {
        workgroupBarrier(); // everyone has read the previous row's flags
        if lane == 0u {
            atomicStore(&row_flags, 0u);
        }
        workgroupBarrier(); // the flags are cleared before anyone sets one
        fast_row(lane, row_span(row));
    }
}
