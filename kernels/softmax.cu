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
