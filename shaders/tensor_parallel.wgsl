// tensor_parallel.wgsl: the tensor-parallel lesson's kernels: a tiled GEMM (linear, and every
// rank's share of a column- or row-parallel linear), the vocab-parallel embedding's masked lookup,
// the four steps of the vocab-parallel cross-entropy, and the collectives (all-reduce, all-gather)
// written as plain dispatches over the ranks' buffers.
//
// Compiled by wgpu (naga) on first use (src/engine/wgpu/tensor_parallel.rs) and shown in the app
// next to its results. The host turns a request into a rank program (src/ops/tensor_parallel.rs):
// buffers owned by ranks 0..k-1, and steps. Each step here is one dispatch; a rank's dispatch only
// binds that rank's buffers, and only the collectives bind several ranks' buffers at once:
//   all-reduce  = reduce_copy (rank 0's buffer into its result), reduce_accumulate for ranks
//                 1..k-1 in order (sum, or max ignoring NaN), reduce_copy to every other rank;
//   all-gather  = gather_columns, once per (destination rank, source rank).
// On a real multi-GPU system these would be NCCL calls moving bytes between devices.
//
// Storage: every buffer is an array<u32>, one element per word. Inputs and finished outputs are in
// the request's dtype (f32 bits, or f16/bf16 in the low 16 bits; `dtype` in the parameters);
// intermediate buffers (partial sums, collective buffers) are f32; ids are u32. All arithmetic is
// f32. WGSL lets an implementation assume no inf or NaN in f32 arithmetic, so the cross-entropy
// steps handle those values through their bits, as softmax.wgsl does; the GEMM and the sums do not
// (on an adapter that does not follow IEEE, a non-finite input may give another non-finite result).

// ---------------------------------------------------------------------------------------------
// Special values (pos_inf, nan, is_nan, is_inf, sign_bit, POS_INF_BITS, ...) and the f16/bf16 <->
// f32 conversions (f16_to_f32, f32_to_f16, bf16_to_f32, f32_to_bf16) come from shaders/dtype.wgsl,
// which the engine compiles in front of this file.
// ---------------------------------------------------------------------------------------------


const DTYPE_F16: u32 = 1u;
const DTYPE_BF16: u32 = 2u;

// A value of the storage dtype (one word) widened to f32. Exact.
fn widen(word: u32, dtype: u32) -> f32 {
    switch dtype {
        case DTYPE_F16: { return f16_to_f32(word & 0xffffu); }
        case DTYPE_BF16: { return bf16_to_f32(word & 0xffffu); }
        default: { return bitcast<f32>(word); }
    }
}

// An f32 rounded to the storage dtype (round to nearest even), as one word.
fn narrow(v: f32, dtype: u32) -> u32 {
    switch dtype {
        case DTYPE_F16: { return f32_to_f16(v); }
        case DTYPE_BF16: { return f32_to_bf16(v); }
        default: { return bitcast<u32>(v); }
    }
}

const NEG_ZERO_BITS: u32 = 0x80000000u;

// The largest finite f32 below zero: where a max over finite values starts.
const LOWEST_F32: f32 = -3.4028234663852886e38;

// Invocations per workgroup for the one-dimensional kernels, and the tile edge of the GEMM
// (16 x 16 = 256 invocations).
const LANES: u32 = 256u;
const TILE: u32 = 16u;

// A dispatch has at most 65535 workgroups per dimension: the host spreads larger ones over a 2D
// grid, and each workgroup flattens its position back into one number.
fn flat_group(group: vec3<u32>, groups: vec3<u32>) -> u32 {
    return group.y * groups.x + group.x;
}

// ---------------------------------------------------------------------------------------------
// linear: y[i, o] = sum_j x[i, j] w[o, j] (+ b[o]), a 16 x 16 tile of y per workgroup.
// x [rows, inner] and w [out, inner] (as torch.nn.Linear stores it) and b [out] in the storage
// dtype; y [rows, out] in f32. Every rank of a column- or row-parallel layer runs this on its own
// shards.
// ---------------------------------------------------------------------------------------------

struct LinearParams {
    dtype: u32,
    rows: u32,     // rows of x and y
    inner: u32,    // the contracted length (in, or in/k on a row-parallel rank)
    out: u32,      // columns of y (out, or out/k on a column-parallel rank)
    has_bias: u32, // 1: add b[o]
}

@group(0) @binding(0) var<storage, read> lin_x: array<u32>;
@group(0) @binding(1) var<storage, read> lin_w: array<u32>;
@group(0) @binding(2) var<storage, read> lin_b: array<u32>;
@group(0) @binding(3) var<storage, read_write> lin_y: array<u32>;
@group(0) @binding(4) var<uniform> lin: LinearParams;

// The tiles in workgroup memory: x_tile[r][c] = x[tile row r, j = t + c] and
// w_tile[o][c] = w[tile output o, j = t + c]. The extra column keeps neighbouring invocations,
// which read w_tile[local.x][c], in different memory banks on GPUs that have them.
var<workgroup> x_tile: array<array<f32, 17>, 16>;
var<workgroup> w_tile: array<array<f32, 17>, 16>;

@compute @workgroup_size(16, 16)
fn linear_tiled(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_id) local: vec3<u32>,
) {
    let i = group.y * TILE + local.y;     // this invocation's row of y
    let o = group.x * TILE + local.x;     // this invocation's column of y
    let w_row = group.x * TILE + local.y; // the row of w this invocation loads
    var acc = 0.0;
    for (var t = 0u; t < lin.inner; t += TILE) {
        // step 1: load a tile of x and of w into workgroup memory, one value each per invocation
        // (zero outside the matrices), then wait until the whole tile is there.
        let j = t + local.x;
        var xv = 0.0;
        if i < lin.rows && j < lin.inner {
            xv = widen(lin_x[i * lin.inner + j], lin.dtype);
        }
        x_tile[local.y][local.x] = xv;
        var wv = 0.0;
        if w_row < lin.out && j < lin.inner {
            wv = widen(lin_w[w_row * lin.inner + j], lin.dtype);
        }
        w_tile[local.y][local.x] = wv;
        workgroupBarrier();
        // step 2: multiply-accumulate across the tile, in order of j (16 products read from
        // workgroup memory instead of 32 reads from storage), then wait before the next tile
        // overwrites it.
        let width = min(TILE, lin.inner - t);
        for (var c = 0u; c < width; c++) {
            acc = acc + x_tile[local.y][c] * w_tile[local.x][c];
        }
        workgroupBarrier();
    }
    // step 3: add the bias, write y (f32: the rank's partial result or output columns).
    if i < lin.rows && o < lin.out {
        var v = acc;
        if lin.has_bias == 1u {
            v = v + widen(lin_b[o], lin.dtype);
        }
        lin_y[i * lin.out + o] = bitcast<u32>(v);
    }
}

// ---------------------------------------------------------------------------------------------
// vocab-parallel embedding, one rank: y[i, :] = table[ids[i] - start, :] when the rank owns the
// id (start <= id < start + count), else a row of -0.0, the exact identity of the all-reduce's
// addition (-0 + x = x for every x, signed zeros included).
// ---------------------------------------------------------------------------------------------

struct EmbedParams {
    dtype: u32,
    n: u32,     // number of ids
    h: u32,     // row length
    start: u32, // first id this rank owns
    count: u32, // ids it owns (V / k)
}

@group(0) @binding(0) var<storage, read> emb_ids: array<u32>;
@group(0) @binding(1) var<storage, read> emb_table: array<u32>;
@group(0) @binding(2) var<storage, read_write> emb_y: array<u32>;
@group(0) @binding(3) var<uniform> emb: EmbedParams;

@compute @workgroup_size(256)
fn embed_masked(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let idx = flat_group(group, groups) * LANES + lane;
    if idx >= emb.n * emb.h {
        return;
    }
    let i = idx / emb.h;
    let c = idx % emb.h;
    let id = emb_ids[i];
    // embedding: mask the ids this rank does not own (their rows stay -0.0).
    if id >= emb.start && id < emb.start + emb.count {
        let word = emb_table[(id - emb.start) * emb.h + c];
        if emb.dtype == 0u {
            emb_y[idx] = word; // f32: the bits themselves
        } else {
            emb_y[idx] = bitcast<u32>(widen(word, emb.dtype));
        }
    } else {
        emb_y[idx] = NEG_ZERO_BITS;
    }
}

// ---------------------------------------------------------------------------------------------
// vocab-parallel cross-entropy, one rank's columns [start, start + cols) of the logits [rows, V].
// ---------------------------------------------------------------------------------------------

struct RowParams {
    dtype: u32,
    rows: u32,
    cols: u32,  // columns this rank holds (V / k)
    start: u32, // the first of them, as a column of the full logits
}

// What a row holds, OR-ed together by the workgroup.
const SAW_NAN: u32 = 1u;
const SAW_POS_INF: u32 = 2u;
const SAW_FINITE: u32 = 4u;

var<workgroup> partial: array<f32, 256>;
var<workgroup> row_flags: atomic<u32>;

// The bits' view of the usual comparisons: NaN and the infinities decided before any arithmetic.
fn flags_of(v: f32) -> u32 {
    if is_nan(v) {
        return SAW_NAN;
    }
    if is_inf(v) {
        return select(SAW_POS_INF, 0u, sign_bit(v)); // -inf never wins a max: nothing to flag
    }
    return SAW_FINITE;
}

// max(a, b) ignoring NaN (IEEE maxNum, CUDA's fmaxf), with the infinities decided by their bits.
fn max_ignoring_nan(a: f32, b: f32) -> f32 {
    if is_nan(b) {
        return a;
    }
    if is_nan(a) {
        return b;
    }
    if is_inf(a) {
        return select(a, b, sign_bit(a)); // +inf wins, -inf loses
    }
    if is_inf(b) {
        return select(b, a, sign_bit(b));
    }
    return max(a, b);
}

// x - m for a logit x and a row max m, with IEEE's answers for the special values made explicit:
// inf - inf = NaN, finite - inf = -inf.
fn shifted(v: f32, m: f32) -> f32 {
    if is_nan(v) || is_nan(m) {
        return nan();
    }
    if is_inf(m) {
        if is_inf(v) && sign_bit(v) == sign_bit(m) {
            return nan();
        }
        return neg_inf();
    }
    if is_inf(v) {
        return v;
    }
    return v - m;
}

// e^z for z <= 0, NaN or -inf (what shifted() returns).
fn exp_shifted(z: f32) -> f32 {
    if is_nan(z) {
        return nan();
    }
    if is_inf(z) {
        return select(pos_inf(), 0.0, sign_bit(z));
    }
    return exp(z);
}

@group(0) @binding(0) var<storage, read> lmax_x: array<u32>;
@group(0) @binding(1) var<storage, read_write> lmax_out: array<u32>;
@group(0) @binding(2) var<uniform> lmax: RowParams;

// One workgroup per row: the lanes walk the row with a stride of 256, then a tree combines them.
@compute @workgroup_size(256)
fn ce_local_max(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let row = flat_group(group, groups);
    if row >= lmax.rows {
        return; // the whole workgroup leaves together
    }
    if lane == 0u {
        atomicStore(&row_flags, 0u);
    }
    workgroupBarrier();
    // cross-entropy 1: local max over this rank's logits (NaN ignored; +inf and all -inf rows
    // handled through the flags).
    var m = LOWEST_F32;
    var flags = 0u;
    for (var j = lane; j < lmax.cols; j += LANES) {
        let v = widen(lmax_x[row * lmax.cols + j], lmax.dtype);
        let f = flags_of(v);
        flags |= f;
        if f == SAW_FINITE {
            m = max(m, v);
        }
    }
    atomicOr(&row_flags, flags);
    partial[lane] = m;
    workgroupBarrier();
    for (var stride = LANES / 2u; stride > 0u; stride = stride / 2u) {
        if lane < stride {
            partial[lane] = max(partial[lane], partial[lane + stride]);
        }
        workgroupBarrier();
    }
    if lane == 0u {
        let seen = atomicLoad(&row_flags);
        var result = partial[0];
        if (seen & SAW_POS_INF) != 0u {
            result = pos_inf();
        } else if (seen & SAW_FINITE) == 0u {
            result = neg_inf(); // only -inf (and NaN, which a max ignores)
        }
        lmax_out[row] = bitcast<u32>(result);
    }
}

@group(0) @binding(0) var<storage, read> pred_x: array<u32>;
@group(0) @binding(1) var<storage, read> pred_targets: array<u32>;
@group(0) @binding(2) var<storage, read> pred_max: array<u32>;
@group(0) @binding(3) var<storage, read_write> pred_out: array<u32>;
@group(0) @binding(4) var<uniform> pred: RowParams;

// One invocation per row.
@compute @workgroup_size(256)
fn ce_predicted(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let row = flat_group(group, groups) * LANES + lane;
    if row >= pred.rows {
        return;
    }
    // cross-entropy 2: the predicted logit x[t] - max, from the rank that owns the target
    // (0 elsewhere, so the all-reduce SUM delivers it to every rank).
    let t = pred_targets[row];
    var p = 0.0;
    if t >= pred.start && t < pred.start + pred.cols {
        let v = widen(pred_x[row * pred.cols + (t - pred.start)], pred.dtype);
        p = shifted(v, bitcast<f32>(pred_max[row]));
    }
    pred_out[row] = bitcast<u32>(p);
}

@group(0) @binding(0) var<storage, read> sexp_x: array<u32>;
@group(0) @binding(1) var<storage, read> sexp_max: array<u32>;
@group(0) @binding(2) var<storage, read_write> sexp_out: array<u32>;
@group(0) @binding(3) var<uniform> sexp: RowParams;

// One workgroup per row, summing in the order the CPU engine reproduces (lane_tree_sum).
@compute @workgroup_size(256)
fn ce_sum_exp(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let row = flat_group(group, groups);
    if row >= sexp.rows {
        return;
    }
    if lane == 0u {
        atomicStore(&row_flags, 0u);
    }
    workgroupBarrier();
    // cross-entropy 3: local sum of e^(x - max) over this rank's logits, accumulated in f32.
    let m = bitcast<f32>(sexp_max[row]);
    var acc = 0.0;
    var flags = 0u;
    for (var j = lane; j < sexp.cols; j += LANES) {
        let e = exp_shifted(shifted(widen(sexp_x[row * sexp.cols + j], sexp.dtype), m));
        if is_nan(e) {
            flags |= SAW_NAN;
        } else {
            acc = acc + e;
        }
    }
    atomicOr(&row_flags, flags);
    partial[lane] = acc;
    workgroupBarrier();
    for (var stride = LANES / 2u; stride > 0u; stride = stride / 2u) {
        if lane < stride {
            partial[lane] = partial[lane] + partial[lane + stride];
        }
        workgroupBarrier();
    }
    if lane == 0u {
        let nan_seen = (atomicLoad(&row_flags) & SAW_NAN) != 0u;
        sexp_out[row] = bitcast<u32>(select(partial[0], nan(), nan_seen));
    }
}

@group(0) @binding(0) var<storage, read> loss_sum_exp: array<u32>;
@group(0) @binding(1) var<storage, read> loss_predicted: array<u32>;
@group(0) @binding(2) var<storage, read_write> loss_out: array<u32>;
@group(0) @binding(3) var<uniform> loss: RowParams;

// One invocation per row.
@compute @workgroup_size(256)
fn ce_loss(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let row = flat_group(group, groups) * LANES + lane;
    if row >= loss.rows {
        return;
    }
    // cross-entropy 4: loss = ln(sum_exp) - predicted, from the all-reduced values.
    let s = bitcast<f32>(loss_sum_exp[row]);
    let p = bitcast<f32>(loss_predicted[row]);
    var result: f32;
    if is_nan(s) || is_nan(p) {
        result = nan();
    } else if is_inf(p) {
        result = select(neg_inf(), pos_inf(), sign_bit(p)); // the target's logit was -inf
    } else {
        result = log(s) - p;
    }
    loss_out[row] = bitcast<u32>(result);
}

// ---------------------------------------------------------------------------------------------
// Collectives over f32 buffers, one dispatch per pair of buffers.
// ---------------------------------------------------------------------------------------------

struct CopyParams {
    len: u32,
}

@group(0) @binding(0) var<storage, read> copy_src: array<u32>;
@group(0) @binding(1) var<storage, read_write> copy_dst: array<u32>;
@group(0) @binding(2) var<uniform> cpy: CopyParams;

@compute @workgroup_size(256)
fn reduce_copy(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let idx = flat_group(group, groups) * LANES + lane;
    // all-reduce: copy rank 0's buffer into its result; afterwards, broadcast the result to the
    // other ranks (the same copy, another pair of buffers).
    if idx < cpy.len {
        copy_dst[idx] = copy_src[idx];
    }
}

struct ReduceParams {
    len: u32,
    op: u32, // 0 = sum, 1 = max (ignoring NaN)
}

@group(0) @binding(0) var<storage, read> red_src: array<u32>;
@group(0) @binding(1) var<storage, read_write> red_acc: array<u32>;
@group(0) @binding(2) var<uniform> red: ReduceParams;

@compute @workgroup_size(256)
fn reduce_accumulate(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let idx = flat_group(group, groups) * LANES + lane;
    if idx >= red.len {
        return;
    }
    // all-reduce: fold one more rank's buffer into the result (ranks 1, 2, ..., k-1 in order).
    let a = bitcast<f32>(red_acc[idx]);
    let v = bitcast<f32>(red_src[idx]);
    var r: f32;
    if red.op == 1u {
        r = max_ignoring_nan(a, v);
    } else {
        r = a + v;
    }
    red_acc[idx] = bitcast<u32>(r);
}

struct GatherParams {
    rows: u32,
    chunk: u32, // columns per shard
    ranks: u32,
    rank: u32,  // which shard: its columns land at rank * chunk
}

@group(0) @binding(0) var<storage, read> gat_src: array<u32>;
@group(0) @binding(1) var<storage, read_write> gat_dst: array<u32>;
@group(0) @binding(2) var<uniform> gat: GatherParams;

@compute @workgroup_size(256)
fn gather_columns(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let idx = flat_group(group, groups) * LANES + lane;
    if idx >= gat.rows * gat.chunk {
        return;
    }
    // all-gather: shard `rank` [rows, chunk] into its columns of a full [rows, ranks * chunk].
    let i = idx / gat.chunk;
    let c = idx % gat.chunk;
    gat_dst[i * gat.ranks * gat.chunk + gat.rank * gat.chunk + c] = gat_src[idx];
}

// ---------------------------------------------------------------------------------------------
// The output stage of every op (the entry point named after this file): an f32 buffer, plus a
// bias added once where the op has one, rounded to the storage dtype. Every output and auxiliary
// output of a rank program ends here.
// ---------------------------------------------------------------------------------------------

struct FinishParams {
    dtype: u32,
    len: u32,
    cols: u32,     // the bias repeats every `cols` values
    has_bias: u32,
}

@group(0) @binding(0) var<storage, read> fin_src: array<u32>;
@group(0) @binding(1) var<storage, read> fin_bias: array<u32>;
@group(0) @binding(2) var<storage, read_write> fin_dst: array<u32>;
@group(0) @binding(3) var<uniform> fin: FinishParams;

@compute @workgroup_size(256)
fn tensor_parallel_main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let idx = flat_group(group, groups) * LANES + lane;
    if idx >= fin.len {
        return;
    }
    let v = bitcast<f32>(fin_src[idx]);
    if fin.has_bias == 1u {
        fin_dst[idx] = narrow(v + widen(fin_bias[idx % fin.cols], fin.dtype), fin.dtype);
    } else if fin.dtype == 0u {
        fin_dst[idx] = fin_src[idx]; // f32: the bits themselves
    } else {
        fin_dst[idx] = narrow(v, fin.dtype);
    }
}
