// softmax.cu: softmax (stable or naive, with temperature) and log_softmax, row-wise over the last
// axis, in f32 / f16 / bf16 storage.
//
// Compiled at run time by NVRTC (src/engine/cuda.rs) and shown in the app next to its results.
// Every engine computes exactly the algorithm in src/ops/softmax.rs. Per row, with z_j = x_j / T
// in f32:
//   stable softmax:  m = max_j z_j;  s = sum_j e^(z_j - m);  y_j = e^(z_j - m) / s
//   naive softmax:   the same with m = 0, and every intermediate rounded to the storage type:
//                    e_j = round(e^z_j);  s = round(sum_j e_j);  y_j = round(e_j / s)
//                    In f16, e^z overflows to inf once z > ln(65504) = 11.09 and the row breaks.
//   log_softmax:     y_j = (z_j - m) - ln(s)   (always stable)
// Arithmetic and accumulation are f32 (accurate expf / logf, no fast math, no flush-to-zero); the
// output is rounded to the storage type (round to nearest, ties to even, overflow to inf).
//
// Layout: one block of THREADS threads per row. Each thread walks the row with a stride of
// THREADS (thread t reads columns t, t + 256, t + 512, ...), keeps a private partial result,
// and the block combines the partials with a tree reduction in shared memory. If there are more
// rows than blocks, each block moves on to row + gridDim.x (a grid-stride loop over rows).
//
// NVRTC compiles without the standard headers, so this file defines what it needs itself:
// infinities as bit patterns and the 16-bit conversions (inline PTX for f16, bit arithmetic for
// bf16). 16-bit values travel as `unsigned short` bit patterns.

#define KB_NEG_INF __int_as_float(0xff800000)

// Threads per block. The launch in src/engine/cuda.rs uses the same number; the tree reductions
// below need a power of two.
#define THREADS 256

// Modes: must match the MODE_* constants in src/engine/cuda.rs.
#define MODE_SOFTMAX       0
#define MODE_SOFTMAX_NAIVE 1
#define MODE_LOG_SOFTMAX   2

// ---------------------------------------------------------------------------------------------
// Storage types. Each has a bit type `T`, a `load` that widens to f32 (exact) and a `store` that
// rounds an f32 to the type. `round_to<D>(v)` = store then load: v rounded to D, kept as f32.
// ---------------------------------------------------------------------------------------------

// The storage types F32, F16 and BF16 (load widens to f32, store rounds back) come from
// kernels/dtype.cuh, which is compiled in front of this file.

template <class D>
__device__ __forceinline__ float round_to(float v) {
    return D::load(D::store(v));
}

// ---------------------------------------------------------------------------------------------
// Block-wide reductions. Every thread passes its partial value; every thread gets the result.
// Tree in shared memory: 256 values -> 128 -> 64 -> ... -> 1, halving each round, with a
// barrier between rounds so no thread reads a slot before it is written.
// ---------------------------------------------------------------------------------------------

__device__ float block_max(float v, float* buf) {
    buf[threadIdx.x] = v;
    __syncthreads();
    for (unsigned int half = THREADS / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) buf[threadIdx.x] = fmaxf(buf[threadIdx.x], buf[threadIdx.x + half]);
        __syncthreads();
    }
    float result = buf[0];
    __syncthreads();  // everyone has read buf[0] before the next reduction overwrites it
    return result;
}

__device__ float block_sum(float v, float* buf) {
    buf[threadIdx.x] = v;
    __syncthreads();
    for (unsigned int half = THREADS / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) buf[threadIdx.x] = buf[threadIdx.x] + buf[threadIdx.x + half];
        __syncthreads();
    }
    float result = buf[0];
    __syncthreads();
    return result;
}

// ---------------------------------------------------------------------------------------------
// The kernel. One template, one entry point per dtype.
// ---------------------------------------------------------------------------------------------

template <class D>
__device__ void softmax_kernel(const typename D::T* x, typename D::T* y, unsigned int rows,
                               unsigned int cols, float temperature, int mode) {
    __shared__ float buf[THREADS];
    const bool naive = (mode == MODE_SOFTMAX_NAIVE);

    for (unsigned int row = blockIdx.x; row < rows; row += gridDim.x) {
        const typename D::T* xr = x + (unsigned long long)row * cols;
        typename D::T* yr = y + (unsigned long long)row * cols;

        // step 1: max-reduce. m = max_j z_j. Subtracting m makes every exponent <= 0, so e^(z - m)
        // is at most 1 and cannot overflow. The naive variant skips this (m = 0).
        float m = 0.0f;
        if (!naive) {
            float part = KB_NEG_INF;
            for (unsigned int j = threadIdx.x; j < cols; j += THREADS) {
                part = fmaxf(part, D::load(xr[j]) / temperature);
            }
            m = block_max(part, buf);
        }

        // step 2: sum-reduce. s = sum_j e^(z_j - m), accumulated in f32. Naive: each e^z_j is
        // rounded to the storage type first (in f16 this is where inf appears), and so is s.
        float part = 0.0f;
        for (unsigned int j = threadIdx.x; j < cols; j += THREADS) {
            float e = expf(D::load(xr[j]) / temperature - m);
            if (naive) e = round_to<D>(e);
            part += e;
        }
        float s = block_sum(part, buf);
        if (naive) s = round_to<D>(s);

        // step 3: normalise. softmax: y_j = e^(z_j - m) / s;  log_softmax: y_j = (z_j - m) - ln(s).
        // Each output is rounded once, to the storage type.
        if (mode == MODE_LOG_SOFTMAX) {
            float log_s = logf(s);
            for (unsigned int j = threadIdx.x; j < cols; j += THREADS) {
                float z = D::load(xr[j]) / temperature;
                yr[j] = D::store((z - m) - log_s);
            }
        } else {
            for (unsigned int j = threadIdx.x; j < cols; j += THREADS) {
                float e = expf(D::load(xr[j]) / temperature - m);
                if (naive) e = round_to<D>(e);
                yr[j] = D::store(e / s);
            }
        }
    }
}

extern "C" __global__ void __launch_bounds__(THREADS)
softmax_f32(const float* x, float* y, unsigned int rows, unsigned int cols, float temperature,
            int mode) {
    softmax_kernel<F32>(x, y, rows, cols, temperature, mode);
}

extern "C" __global__ void __launch_bounds__(THREADS)
softmax_f16(const unsigned short* x, unsigned short* y, unsigned int rows, unsigned int cols,
            float temperature, int mode) {
    softmax_kernel<F16>(x, y, rows, cols, temperature, mode);
}

extern "C" __global__ void __launch_bounds__(THREADS)
softmax_bf16(const unsigned short* x, unsigned short* y, unsigned int rows, unsigned int cols,
             float temperature, int mode) {
    softmax_kernel<BF16>(x, y, rows, cols, temperature, mode);
}

// =============================================================================================
// The FAST kernel: read the row once, write it once.
//
// A softmax row has to be read at least once and written once, so a device-to-device copy of the
// same bytes is the ceiling. The simple kernel above reads the row three times (max, sum,
// normalise). The fast kernel keeps the row on chip instead:
//
//   * one block of FAST_THREADS = 1024 threads per row;
//   * each thread loads up to 32 values of the row into registers, with 16-byte vector loads
//     (4 f32 or 8 f16/bf16 values per load) when the row length allows, so x is read exactly once;
//   * the max and the sum are reduced with warp shuffles (32 lanes exchange registers directly),
//     then across the 32 warps through 32 slots of shared memory;
//   * e^(z - m) is computed once, from the registers, and y is written once.
//
// Rows longer than 32 x 1024 = 32768 values do not fit the registers. For them the kernel uses
// ONLINE SOFTMAX (Milakov & Gimelshein 2018): pass 1 keeps a running max m and a sum s relative
// to it (when the max grows, s is rescaled by e^(m_old - m_new)), merges the threads' (m, s)
// pairs, and pass 2 reads the row again and writes it: two reads, one write.
//
// Same algorithm as the simple kernel (z = x / T correctly rounded to f32, expf, f32 sums, the
// output rounded once to the storage type), with two differences in rounding: the additions in s
// come in another order, and y = e * (1 / s) (one division per row instead of one per element:
// at most one more rounding, far inside the check's tolerance). NaN, +inf and all -inf rows give NaN, as in the simple kernel and the reference.
// The naive (unstable) mode is a teaching demo and always runs the simple kernel.
// =============================================================================================

#define FAST_THREADS 1024
#define FAST_WARPS (FAST_THREADS / 32)
#define FAST_MAX_ITEMS 32  // values per thread held in registers: rows up to 32768
#define KB_POS_INF __int_as_float(0x7f800000)
#define KB_NAN __int_as_float(0x7fffffff)

// 16-byte vectors (`unpack`, `pack`: 4 f32 or 8 f16/bf16 values per uint4) come from
// kernels/dtype.cuh.

// Block-wide max and sum for FAST_THREADS threads: a shuffle tree inside each warp (lane l takes
// lane l ^ 16, ^ 8, ... ^ 1), one slot per warp in shared memory, then every warp reduces the 32
// slots the same way. Every thread gets the result. `R` is MaxOf or SumOf.
struct MaxOf {
    static __device__ __forceinline__ float apply(float a, float b) { return fmaxf(a, b); }
};
struct SumOf {
    static __device__ __forceinline__ float apply(float a, float b) { return a + b; }
};
template <class R>
__device__ __forceinline__ float warp_reduce(float v) {
#pragma unroll
    for (int o = 16; o > 0; o /= 2) v = R::apply(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
template <class R>
__device__ float fast_block_reduce(float v, float* slots) {
    v = warp_reduce<R>(v);
    if ((threadIdx.x & 31u) == 0) slots[threadIdx.x >> 5] = v;
    __syncthreads();
    v = warp_reduce<R>(slots[threadIdx.x & 31u]);
    __syncthreads();  // every warp has read the slots before they are reused
    return v;
}

// z = x / T, correctly rounded to f32 as the simple kernel's IEEE division gives it, without a
// division per element: the double product x * (1/T) is within 2^-52 (relative) of x / T, and
// the exact quotient of two floats is either representable (T a power of two) or at least
// ~2^-49 away from every rounding boundary of f32, so rounding the double to f32 gives f32(x / T).
// T = 1 skips it (x / 1 = x). `inv_t` is 1.0 / (double)T, computed once.
__device__ __forceinline__ float scaled(float x, float temperature, double inv_t) {
    return temperature == 1.0f ? x : (float)((double)x * inv_t);
}

// One row held in registers: ITEMS values per thread. VEC: thread t holds the 16-byte vectors
// t, t + 1024, ... (each 16 / sizeof(T) neighbouring columns); otherwise the columns
// t, t + 1024, ... one by one. Both read each column exactly once, coalesced.
template <class D, int ITEMS, bool VEC>
__device__ void fast_row_registers(const typename D::T* xr, typename D::T* yr, unsigned int cols,
                                   float temperature, double inv_t, int mode, float* slots) {
    const int PER = VEC ? (int)(16 / sizeof(typename D::T)) : 1;  // values per load
    const int LOADS = ITEMS / PER;
    float z[ITEMS];

    // step 1: load the row once (z = x / T) and reduce the max.
    float part = KB_NEG_INF;
#pragma unroll
    for (int k = 0; k < LOADS; ++k) {
        unsigned int first = (threadIdx.x + (unsigned int)k * FAST_THREADS) * PER;
        if (first < cols) {
            if (VEC) {
                uint4 v = reinterpret_cast<const uint4*>(xr)[first / PER];
#pragma unroll
                for (int i = 0; i < PER; ++i) z[k * PER + i] = scaled(unpack(D(), v, i), temperature, inv_t);
            } else {
                z[k] = scaled(D::load(xr[first]), temperature, inv_t);
            }
#pragma unroll
            for (int i = 0; i < PER; ++i) part = fmaxf(part, z[k * PER + i]);
        }
    }
    const float m = fast_block_reduce<MaxOf>(part, slots);

    // step 2: e^(z - m) from the registers, summed in f32. softmax keeps e in place of z;
    // log_softmax keeps z and needs only the sum.
    part = 0.0f;
#pragma unroll
    for (int k = 0; k < LOADS; ++k) {
        unsigned int first = (threadIdx.x + (unsigned int)k * FAST_THREADS) * PER;
        if (first < cols) {
#pragma unroll
            for (int i = 0; i < PER; ++i) {
                float e = expf(z[k * PER + i] - m);
                if (mode != MODE_LOG_SOFTMAX) z[k * PER + i] = e;
                part += e;
            }
        }
    }
    const float s = fast_block_reduce<SumOf>(part, slots);

    // step 3: write the row once. softmax: y = e * (1 / s), one division per row (at most one
    // more rounding than e / s: well inside the check's tolerance); log_softmax: y = (z - m) - ln s.
    const float log_s = logf(s), inv_s = 1.0f / s;
#pragma unroll
    for (int k = 0; k < LOADS; ++k) {
        unsigned int first = (threadIdx.x + (unsigned int)k * FAST_THREADS) * PER;
        if (first < cols) {
            float out[PER];
#pragma unroll
            for (int i = 0; i < PER; ++i)
                out[i] = mode == MODE_LOG_SOFTMAX ? (z[k * PER + i] - m) - log_s : z[k * PER + i] * inv_s;
            if (VEC) {
                reinterpret_cast<uint4*>(yr)[first / PER] = pack(D(), out);
            } else {
                yr[first] = D::store(out[0]);
            }
        }
    }
}

// Online softmax state: running max m and sum s of e^(z - m). -inf values add nothing; a +inf or
// NaN value makes s NaN (the row is NaN in the reference); a row of only -inf keeps m = -inf and
// s = 0, and pass 2 then computes e^(-inf - -inf) = NaN, as the simple kernel does.
__device__ __forceinline__ void online_add(float z, float& m, float& s) {
    if (z > m) {
        s = z == KB_POS_INF ? KB_NAN : s * expf(m - z) + 1.0f;
        m = z;
    } else if (z != KB_NEG_INF) {
        s += expf(z - m);  // z NaN: NaN
    }
}

// Merge two online states: both sums rescaled to the larger max. A state with m = -inf holds no
// values (s = 0) or a NaN (s = NaN); s * 0 keeps that NaN.
__device__ __forceinline__ void online_merge(float m2, float s2, float& m, float& s) {
    float mm = fmaxf(m, m2);
    float a = m == KB_NEG_INF ? s * 0.0f : s * expf(m - mm);
    float b = m2 == KB_NEG_INF ? s2 * 0.0f : s2 * expf(m2 - mm);
    m = mm;
    s = a + b;
}

// Rows longer than the registers hold: online softmax, two reads and one write.
template <class D, bool VEC>
__device__ void fast_row_online(const typename D::T* xr, typename D::T* yr, unsigned int cols,
                                float temperature, double inv_t, int mode, float* slots) {
    const unsigned int PER = VEC ? 16 / sizeof(typename D::T) : 1;
    const unsigned int loads = cols / PER;

    // pass 1: running (m, s) per thread, then merged across the block.
    float m = KB_NEG_INF, s = 0.0f;
    for (unsigned int k = threadIdx.x; k < loads; k += FAST_THREADS) {
        if (VEC) {
            uint4 v = reinterpret_cast<const uint4*>(xr)[k];
#pragma unroll
            for (unsigned int i = 0; i < PER; ++i) online_add(scaled(unpack(D(), v, i), temperature, inv_t), m, s);
        } else {
            online_add(scaled(D::load(xr[k]), temperature, inv_t), m, s);
        }
    }
    // Merge inside the warp by shuffles, then the 32 warp states through shared memory.
#pragma unroll
    for (int o = 16; o > 0; o /= 2) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, o);
        float s2 = __shfl_xor_sync(0xffffffffu, s, o);
        online_merge(m2, s2, m, s);
    }
    if ((threadIdx.x & 31u) == 0) {
        slots[threadIdx.x >> 5] = m;
        slots[FAST_WARPS + (threadIdx.x >> 5)] = s;
    }
    __syncthreads();
    m = slots[threadIdx.x & 31u];
    s = slots[FAST_WARPS + (threadIdx.x & 31u)];
#pragma unroll
    for (int o = 16; o > 0; o /= 2) {
        float m2 = __shfl_xor_sync(0xffffffffu, m, o);
        float s2 = __shfl_xor_sync(0xffffffffu, s, o);
        online_merge(m2, s2, m, s);
    }
    __syncthreads();

    // pass 2: read again, write once.
    const float log_s = logf(s), inv_s = 1.0f / s;
    for (unsigned int k = threadIdx.x; k < loads; k += FAST_THREADS) {
        if (VEC) {
            uint4 v = reinterpret_cast<const uint4*>(xr)[k];
            float out[16 / sizeof(typename D::T)];
#pragma unroll
            for (unsigned int i = 0; i < PER; ++i) {
                float z = scaled(unpack(D(), v, i), temperature, inv_t);
                out[i] = mode == MODE_LOG_SOFTMAX ? (z - m) - log_s : expf(z - m) * inv_s;
            }
            reinterpret_cast<uint4*>(yr)[k] = pack(D(), out);
        } else {
            float z = scaled(D::load(xr[k]), temperature, inv_t);
            yr[k] = D::store(mode == MODE_LOG_SOFTMAX ? (z - m) - log_s : expf(z - m) * inv_s);
        }
    }
}

// A row that fits the registers (<= 32 x 1024 values) is read once; a longer one goes online.
template <class D, bool VEC>
__device__ void fast_row(const typename D::T* xr, typename D::T* yr, unsigned int cols,
                         float temperature, double inv_t, int mode, float* slots) {
    if (cols <= (unsigned int)FAST_MAX_ITEMS * FAST_THREADS)
        fast_row_registers<D, FAST_MAX_ITEMS, VEC>(xr, yr, cols, temperature, inv_t, mode, slots);
    else
        fast_row_online<D, VEC>(xr, yr, cols, temperature, inv_t, mode, slots);
}

template <class D>
__device__ void softmax_fast_kernel(const typename D::T* x, typename D::T* y, unsigned int rows,
                                    unsigned int cols, float temperature, int mode) {
    __shared__ float slots[2 * FAST_WARPS];
    const unsigned int PER = 16 / sizeof(typename D::T);
    // 16-byte vectors need every row to start on a 16-byte boundary: the buffers do (device
    // allocations are 256-byte aligned), and each row does when cols is a multiple of PER.
    const bool vec = cols % PER == 0 &&
                     ((unsigned long long)x % 16ull) == 0 && ((unsigned long long)y % 16ull) == 0;
    const double inv_t = 1.0 / (double)temperature;
    for (unsigned int row = blockIdx.x; row < rows; row += gridDim.x) {
        const typename D::T* xr = x + (unsigned long long)row * cols;
        typename D::T* yr = y + (unsigned long long)row * cols;
        if (vec)
            fast_row<D, true>(xr, yr, cols, temperature, inv_t, mode, slots);
        else
            fast_row<D, false>(xr, yr, cols, temperature, inv_t, mode, slots);
    }
}

extern "C" __global__ void __launch_bounds__(FAST_THREADS, 1)
softmax_fast_f32(const float* x, float* y, unsigned int rows, unsigned int cols,
                 float temperature, int mode) {
    softmax_fast_kernel<F32>(x, y, rows, cols, temperature, mode);
}

extern "C" __global__ void __launch_bounds__(FAST_THREADS, 1)
softmax_fast_f16(const unsigned short* x, unsigned short* y, unsigned int rows, unsigned int cols,
                 float temperature, int mode) {
    softmax_fast_kernel<F16>(x, y, rows, cols, temperature, mode);
}

extern "C" __global__ void __launch_bounds__(FAST_THREADS, 1)
softmax_fast_bf16(const unsigned short* x, unsigned short* y, unsigned int rows,
                  unsigned int cols, float temperature, int mode) {
    softmax_fast_kernel<BF16>(x, y, rows, cols, temperature, mode);
}
