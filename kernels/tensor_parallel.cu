// tensor_parallel.cu: the tensor-parallel lesson's kernels: a tiled GEMM (linear, and every rank's
// share of a column- or row-parallel linear), the vocab-parallel embedding's masked lookup, the
// four steps of the vocab-parallel cross-entropy, and the collectives (all-reduce, all-gather)
// written as plain kernels over the ranks' buffers.
//
// Compiled at run time by NVRTC (src/engine/cuda/tensor_parallel.rs) and shown in the app next to
// its results. The host turns a request into a rank program (src/ops/tensor_parallel.rs): buffers
// owned by ranks 0..k-1, and steps. Each rank's compute runs on its own CUDA stream; before a
// collective the host joins the ranks' streams (events) into the main stream, which runs it:
//   all-reduce  = reduce_copy (rank 0's buffer into its result), reduce_accumulate for ranks
//                 1..k-1 in order (sum, or max ignoring NaN), reduce_copy to every other rank;
//   all-gather  = gather_columns, once per (destination rank, source rank).
// On several GPUs these would be NCCL calls (ncclAllReduce, ncclAllGather) moving bytes over
// NVLink; everything else stays the same.
//
// Storage: inputs and finished outputs in f32 / f16 / bf16 (16-bit values as unsigned short bit
// patterns); partial sums and collective buffers in f32; ids as unsigned int. Arithmetic is f32,
// with NVRTC's accurate options (no fused multiply-add: the dot products round every product and
// every sum, as the CPU engine does). NVRTC has no standard headers, so infinities are bit
// patterns and the 16-bit conversions are written out (the same as in softmax.cu).

#define KB_NEG_INF __int_as_float(0xff800000)
#define KB_NEG_ZERO __int_as_float(0x80000000)

// Threads per block of the one-dimensional kernels (the row reductions need a power of two),
// and the GEMM's tile edge: a block of TILE x TILE = 256 threads computes a TILE x TILE tile of y.
#define THREADS 256
#define TILE 16

// ---------------------------------------------------------------------------------------------
// Storage types: a bit type `T`, `load` widens to f32 (exact), `store` rounds an f32 to the type.
// ---------------------------------------------------------------------------------------------

// The storage types F32, F16 and BF16 (load widens to f32, store rounds back) come from
// kernels/dtype.cuh, which is compiled in front of this file.

// ---------------------------------------------------------------------------------------------
// linear: y[i, o] = sum_j x[i, j] w[o, j] (+ b[o]), one TILE x TILE tile of y per block.
// x [rows, inner], w [out, inner] (as torch.nn.Linear stores it), b [out] in the storage type;
// y [rows, out] in f32. Every rank of a column- or row-parallel layer runs this on its shards.
// ---------------------------------------------------------------------------------------------

template <class D>
__device__ void linear_tiled(const typename D::T* x, const typename D::T* w,
                             const typename D::T* b, float* y, unsigned int rows,
                             unsigned int inner, unsigned int out, int has_bias) {
    // The tiles in shared memory: x_tile[r][c] = x[tile row r, j = t + c] and
    // w_tile[o][c] = w[tile output o, j = t + c]. The extra column keeps the threads of a warp,
    // which read w_tile[threadIdx.x][c], in different shared-memory banks.
    __shared__ float x_tile[TILE][TILE + 1];
    __shared__ float w_tile[TILE][TILE + 1];
    const unsigned int i = blockIdx.y * TILE + threadIdx.y;      // this thread's row of y
    const unsigned int o = blockIdx.x * TILE + threadIdx.x;      // this thread's column of y
    const unsigned int w_row = blockIdx.x * TILE + threadIdx.y;  // the row of w it loads
    float acc = 0.0f;
    for (unsigned int t = 0; t < inner; t += TILE) {
        // step 1: load a tile of x and of w into shared memory, one value each per thread (zero
        // outside the matrices), then wait until the whole tile is there.
        const unsigned int j = t + threadIdx.x;
        x_tile[threadIdx.y][threadIdx.x] =
            (i < rows && j < inner) ? D::load(x[(unsigned long long)i * inner + j]) : 0.0f;
        w_tile[threadIdx.y][threadIdx.x] =
            (w_row < out && j < inner) ? D::load(w[(unsigned long long)w_row * inner + j]) : 0.0f;
        __syncthreads();
        // step 2: multiply-accumulate across the tile, in order of j (16 products read from
        // shared memory instead of 32 reads from global memory), then wait before the next tile
        // overwrites it.
        const unsigned int width = (inner - t < TILE) ? inner - t : TILE;
        for (unsigned int c = 0; c < width; ++c) {
            acc = acc + x_tile[threadIdx.y][c] * w_tile[threadIdx.x][c];
        }
        __syncthreads();
    }
    // step 3: add the bias, write y (f32: the rank's partial result or output columns).
    if (i < rows && o < out) {
        float v = acc;
        if (has_bias) v = v + D::load(b[o]);
        y[(unsigned long long)i * out + o] = v;
    }
}

#define LINEAR_ENTRY(NAME, D)                                                                  \
    extern "C" __global__ void __launch_bounds__(TILE * TILE)                                 \
    NAME(const D::T* x, const D::T* w, const D::T* b, float* y, unsigned int rows,            \
         unsigned int inner, unsigned int out, int has_bias) {                                 \
        linear_tiled<D>(x, w, b, y, rows, inner, out, has_bias);                               \
    }
LINEAR_ENTRY(linear_tiled_f32, F32)
LINEAR_ENTRY(linear_tiled_f16, F16)
LINEAR_ENTRY(linear_tiled_bf16, BF16)

// ---------------------------------------------------------------------------------------------
// vocab-parallel embedding, one rank: y[i, :] = table[ids[i] - start, :] when the rank owns the id
// (start <= id < start + count), else a row of -0.0, the exact identity of the all-reduce's
// addition (-0 + x = x for every x, signed zeros included).
// ---------------------------------------------------------------------------------------------

template <class D>
__device__ void embed_masked(const unsigned int* ids, const typename D::T* table, float* y,
                             unsigned int n, unsigned int h, unsigned int start,
                             unsigned int count) {
    const unsigned long long total = (unsigned long long)n * h;
    for (unsigned long long idx = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
         idx < total; idx += (unsigned long long)gridDim.x * blockDim.x) {
        const unsigned long long i = idx / h;
        const unsigned long long c = idx % h;
        const unsigned int id = ids[i];
        // embedding: mask the ids this rank does not own (their rows stay -0.0).
        if (id >= start && id < start + count) {
            y[idx] = D::load(table[(unsigned long long)(id - start) * h + c]);
        } else {
            y[idx] = KB_NEG_ZERO;
        }
    }
}

#define EMBED_ENTRY(NAME, D)                                                                   \
    extern "C" __global__ void __launch_bounds__(THREADS)                                     \
    NAME(const unsigned int* ids, const D::T* table, float* y, unsigned int n, unsigned int h, \
         unsigned int start, unsigned int count) {                                             \
        embed_masked<D>(ids, table, y, n, h, start, count);                                    \
    }
EMBED_ENTRY(embed_masked_f32, F32)
EMBED_ENTRY(embed_masked_f16, F16)
EMBED_ENTRY(embed_masked_bf16, BF16)

// ---------------------------------------------------------------------------------------------
// vocab-parallel cross-entropy, one rank's columns [start, start + cols) of the logits [rows, V].
// Row reductions: one block per row; each thread walks the row with a stride of THREADS, then a
// tree in shared memory (256 -> 128 -> ... -> 1) combines the partials. The CPU engine sums in
// exactly this order (lane_tree_sum in src/ops/tensor_parallel.rs).
// ---------------------------------------------------------------------------------------------

template <class D>
__device__ void ce_local_max(const typename D::T* x, float* out, unsigned int rows,
                             unsigned int cols) {
    __shared__ float buf[THREADS];
    for (unsigned int row = blockIdx.x; row < rows; row += gridDim.x) {
        const typename D::T* xr = x + (unsigned long long)row * cols;
        // cross-entropy 1: local max over this rank's logits (fmaxf ignores NaN).
        float m = KB_NEG_INF;
        for (unsigned int j = threadIdx.x; j < cols; j += THREADS) m = fmaxf(m, D::load(xr[j]));
        buf[threadIdx.x] = m;
        __syncthreads();
        for (unsigned int half = THREADS / 2; half > 0; half /= 2) {
            if (threadIdx.x < half) buf[threadIdx.x] = fmaxf(buf[threadIdx.x], buf[threadIdx.x + half]);
            __syncthreads();
        }
        if (threadIdx.x == 0) out[row] = buf[0];
        __syncthreads();  // buf[0] is read before the next row overwrites it
    }
}

template <class D>
__device__ void ce_predicted(const typename D::T* x, const unsigned int* targets,
                             const float* max, float* out, unsigned int rows, unsigned int cols,
                             unsigned int start) {
    for (unsigned int row = blockIdx.x * blockDim.x + threadIdx.x; row < rows;
         row += gridDim.x * blockDim.x) {
        // cross-entropy 2: the predicted logit x[t] - max, from the rank that owns the target
        // (0 elsewhere, so the all-reduce SUM delivers it to every rank).
        const unsigned int t = targets[row];
        float p = 0.0f;
        if (t >= start && t < start + cols) {
            p = D::load(x[(unsigned long long)row * cols + (t - start)]) - max[row];
        }
        out[row] = p;
    }
}

template <class D>
__device__ void ce_sum_exp(const typename D::T* x, const float* max, float* out,
                           unsigned int rows, unsigned int cols) {
    __shared__ float buf[THREADS];
    for (unsigned int row = blockIdx.x; row < rows; row += gridDim.x) {
        const typename D::T* xr = x + (unsigned long long)row * cols;
        const float m = max[row];
        // cross-entropy 3: local sum of e^(x - max) over this rank's logits, accumulated in f32.
        float acc = 0.0f;
        for (unsigned int j = threadIdx.x; j < cols; j += THREADS) acc += expf(D::load(xr[j]) - m);
        buf[threadIdx.x] = acc;
        __syncthreads();
        for (unsigned int half = THREADS / 2; half > 0; half /= 2) {
            if (threadIdx.x < half) buf[threadIdx.x] = buf[threadIdx.x] + buf[threadIdx.x + half];
            __syncthreads();
        }
        if (threadIdx.x == 0) out[row] = buf[0];
        __syncthreads();
    }
}

#define CE_ENTRIES(SUFFIX, D)                                                                  \
    extern "C" __global__ void __launch_bounds__(THREADS)                                     \
    ce_local_max_##SUFFIX(const D::T* x, float* out, unsigned int rows, unsigned int cols) {   \
        ce_local_max<D>(x, out, rows, cols);                                                   \
    }                                                                                          \
    extern "C" __global__ void __launch_bounds__(THREADS)                                     \
    ce_predicted_##SUFFIX(const D::T* x, const unsigned int* targets, const float* max,       \
                          float* out, unsigned int rows, unsigned int cols,                    \
                          unsigned int start) {                                                \
        ce_predicted<D>(x, targets, max, out, rows, cols, start);                              \
    }                                                                                          \
    extern "C" __global__ void __launch_bounds__(THREADS)                                     \
    ce_sum_exp_##SUFFIX(const D::T* x, const float* max, float* out, unsigned int rows,       \
                        unsigned int cols) {                                                   \
        ce_sum_exp<D>(x, max, out, rows, cols);                                                \
    }
CE_ENTRIES(f32, F32)
CE_ENTRIES(f16, F16)
CE_ENTRIES(bf16, BF16)

extern "C" __global__ void __launch_bounds__(THREADS)
ce_loss(const float* sum_exp, const float* predicted, float* out, unsigned int rows) {
    for (unsigned int row = blockIdx.x * blockDim.x + threadIdx.x; row < rows;
         row += gridDim.x * blockDim.x) {
        // cross-entropy 4: loss = ln(sum_exp) - predicted, from the all-reduced values.
        out[row] = logf(sum_exp[row]) - predicted[row];
    }
}

// ---------------------------------------------------------------------------------------------
// The FAST cross-entropy for one rank (k = 1): the four steps above fused into one kernel that
// reads each logit once. The four-step version reads the logits twice (max, then sum-exp) and
// launches four kernels; this one keeps an ONLINE max and sum (Milakov & Gimelshein 2018): per
// thread a running max m and s = sum of e^(x - m), rescaled by e^(m_old - m_new) when the max
// grows, over 16-byte vectors (4 f32 or 8 f16/bf16 logits per load); then the threads' (m, s)
// pairs are merged (warp shuffles, then shared memory), thread 0 reads the target's logit and
// writes the row's max, predicted logit x[t] - max, sum-exp and loss = ln(sum) - predicted.
// One block of CE_THREADS per row; blocks are small so several rows are in flight per SM.
// Results: the same steps as the four kernels up to the order of the additions in the sum.
// A NaN logit makes the sum NaN; +inf makes it NaN (inf - inf); an all -inf row gives NaN, as
// in the four-step version.
// ---------------------------------------------------------------------------------------------

#define CE_THREADS 512
#define CE_WARPS (CE_THREADS / 32)
#define KB_POS_INF __int_as_float(0x7f800000)
#define KB_NAN __int_as_float(0x7fffffff)

// Add n values to the running (m, s).
__device__ __forceinline__ void ce_online(const float* z, int n, float& m, float& s) {
    float mv = KB_NEG_INF;
    for (int i = 0; i < n; ++i) mv = fmaxf(mv, z[i]);  // fmaxf ignores NaN
    if (mv > m) {
        s = mv == KB_POS_INF ? KB_NAN : s * expf(m - mv);  // m = -inf: s * 0
        m = mv;
    }
    if (m == KB_NEG_INF) {
        // Only -inf (adds nothing) or NaN (poisons the sum) so far.
        for (int i = 0; i < n; ++i)
            if (z[i] != z[i]) s = KB_NAN;
        return;
    }
    float add = 0.0f;
    for (int i = 0; i < n; ++i) add += expf(z[i] - m);
    s += add;
}

// Merge (m2, s2) into (m, s): both sums rescaled to the larger max. m = -inf holds nothing
// (s = 0) or a NaN (s = NaN), and s * 0 keeps it.
__device__ __forceinline__ void ce_merge(float m2, float s2, float& m, float& s) {
    float mm = fmaxf(m, m2);
    float a = m == KB_NEG_INF ? s * 0.0f : s * expf(m - mm);
    float b = m2 == KB_NEG_INF ? s2 * 0.0f : s2 * expf(m2 - mm);
    m = mm;
    s = a + b;
}

__device__ __forceinline__ void ce_merge_warp(float& m, float& s) {
#pragma unroll
    for (int o = 16; o > 0; o /= 2) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, o);
        float s2 = __shfl_xor_sync(0xffffffffu, s, o);
        ce_merge(m2, s2, m, s);
    }
}

template <class D>
__device__ void ce_fused(const typename D::T* x, const unsigned int* targets, typename D::T* loss,
                         float* max_out, float* predicted_out, float* sum_out, unsigned int rows,
                         unsigned int cols) {
    __shared__ float slot_m[CE_WARPS], slot_s[CE_WARPS];
    const unsigned int PER = 16 / sizeof(typename D::T);
    const bool vec = cols % PER == 0 && ((unsigned long long)x % 16ull) == 0;
    for (unsigned int row = blockIdx.x; row < rows; row += gridDim.x) {
        const typename D::T* xr = x + (unsigned long long)row * cols;

        // steps 1 and 3 in one read: the running max and sum-exp.
        float m = KB_NEG_INF, s = 0.0f;
        if (vec) {
            // Unrolled so that several independent 16-byte loads are in flight per thread.
#pragma unroll 4
            for (unsigned int k = threadIdx.x; k < cols / PER; k += CE_THREADS) {
                uint4 v = reinterpret_cast<const uint4*>(xr)[k];
                float z[16 / sizeof(typename D::T)];
#pragma unroll
                for (unsigned int i = 0; i < PER; ++i) z[i] = unpack(D(), v, i);
                ce_online(z, PER, m, s);
            }
        } else {
            for (unsigned int j = threadIdx.x; j < cols; j += CE_THREADS) {
                float z = D::load(xr[j]);
                ce_online(&z, 1, m, s);
            }
        }
        ce_merge_warp(m, s);
        if ((threadIdx.x & 31u) == 0) {
            slot_m[threadIdx.x >> 5] = m;
            slot_s[threadIdx.x >> 5] = s;
        }
        __syncthreads();
        if (threadIdx.x < 32) {
            m = threadIdx.x < CE_WARPS ? slot_m[threadIdx.x] : KB_NEG_INF;
            s = threadIdx.x < CE_WARPS ? slot_s[threadIdx.x] : 0.0f;
            ce_merge_warp(m, s);
            if (threadIdx.x == 0) {
                if (m == KB_NEG_INF) s = KB_NAN;  // all -inf: e^(-inf - -inf) in the four steps
                // steps 2 and 4: the predicted logit and the loss.
                float p = D::load(xr[targets[row]]) - m;
                max_out[row] = m;
                predicted_out[row] = p;
                sum_out[row] = s;
                loss[row] = D::store(logf(s) - p);
            }
        }
        __syncthreads();  // the slots are read before the next row writes them
    }
}

#define CE_FUSED_ENTRY(NAME, D)                                                                 \
    extern "C" __global__ void __launch_bounds__(CE_THREADS)                                   \
        NAME(const D::T* x, const unsigned int* targets, D::T* loss, float* max_out,            \
             float* predicted_out, float* sum_out, unsigned int rows, unsigned int cols) {      \
        ce_fused<D>(x, targets, loss, max_out, predicted_out, sum_out, rows, cols);             \
    }
CE_FUSED_ENTRY(ce_fused_f32, F32)
CE_FUSED_ENTRY(ce_fused_f16, F16)
CE_FUSED_ENTRY(ce_fused_bf16, BF16)

// ---------------------------------------------------------------------------------------------
// Collectives over f32 buffers, one launch per pair of buffers.
// ---------------------------------------------------------------------------------------------

extern "C" __global__ void __launch_bounds__(THREADS)
reduce_copy(const float* src, float* dst, unsigned int n) {
    for (unsigned int idx = blockIdx.x * blockDim.x + threadIdx.x; idx < n;
         idx += gridDim.x * blockDim.x) {
        // all-reduce: copy rank 0's buffer into its result; afterwards, broadcast the result to
        // the other ranks (the same copy, another pair of buffers).
        dst[idx] = src[idx];
    }
}

// op: 0 = sum, 1 = max (fmaxf: NaN ignored).
extern "C" __global__ void __launch_bounds__(THREADS)
reduce_accumulate(const float* src, float* acc, unsigned int n, int op) {
    for (unsigned int idx = blockIdx.x * blockDim.x + threadIdx.x; idx < n;
         idx += gridDim.x * blockDim.x) {
        // all-reduce: fold one more rank's buffer into the result (ranks 1, 2, ..., k-1 in order).
        acc[idx] = (op == 1) ? fmaxf(acc[idx], src[idx]) : acc[idx] + src[idx];
    }
}

extern "C" __global__ void __launch_bounds__(THREADS)
gather_columns(const float* src, float* dst, unsigned int rows, unsigned int chunk,
               unsigned int ranks, unsigned int rank) {
    const unsigned long long total = (unsigned long long)rows * chunk;
    for (unsigned long long idx = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
         idx < total; idx += (unsigned long long)gridDim.x * blockDim.x) {
        // all-gather: shard `rank` [rows, chunk] into its columns of a full [rows, ranks * chunk].
        const unsigned long long i = idx / chunk;
        const unsigned long long c = idx % chunk;
        dst[i * ranks * chunk + (unsigned long long)rank * chunk + c] = src[idx];
    }
}

// ---------------------------------------------------------------------------------------------
// The output stage of every op (the entry points named after this file, one per storage type):
// an f32 buffer, plus a bias added once where the op has one, rounded to the storage type. Every
// output and auxiliary output of a rank program ends here.
// ---------------------------------------------------------------------------------------------

template <class D>
__device__ void finish(const float* src, const typename D::T* bias, typename D::T* dst,
                       unsigned int n, unsigned int cols, int has_bias) {
    for (unsigned int idx = blockIdx.x * blockDim.x + threadIdx.x; idx < n;
         idx += gridDim.x * blockDim.x) {
        float v = src[idx];
        if (has_bias) v = v + D::load(bias[idx % cols]);
        dst[idx] = D::store(v);
    }
}

#define FINISH_ENTRY(NAME, D)                                                                  \
    extern "C" __global__ void __launch_bounds__(THREADS)                                     \
    NAME(const float* src, const D::T* bias, D::T* dst, unsigned int n, unsigned int cols,     \
         int has_bias) {                                                                       \
        finish<D>(src, bias, dst, n, cols, has_bias);                                          \
    }
FINISH_ENTRY(tensor_parallel_f32, F32)
FINISH_ENTRY(tensor_parallel_f16, F16)
FINISH_ENTRY(tensor_parallel_bf16, BF16)
