// logits.cu: logit, sigmoid and logsigmoid, element-wise, in f32 / f16 / bf16 storage.
//
// Compiled at run time by NVRTC (src/engine/cuda.rs) and shown in the app next to its results.
// Every engine computes exactly the algorithm in src/ops/logits.rs:
//   * values are loaded from their storage type (f32, f16 or bf16) and widened to f32;
//   * all arithmetic is f32, with accurate expf / logf / log1pf (no fast math, no flush-to-zero);
//   * the result is rounded back to the storage type (round to nearest, ties to even; too large
//     becomes +-inf; NaN stays NaN).
//
// One thread handles one element; a grid-stride loop lets any grid size cover any n.
//
// NVRTC compiles without the standard headers, so this file defines what it needs itself:
// infinities and NaN as bit patterns, and the 16-bit conversions (inline PTX for f16, bit
// arithmetic for bf16). 16-bit values travel as `unsigned short` bit patterns.

#define KB_POS_INF __int_as_float(0x7f800000)
#define KB_NEG_INF __int_as_float(0xff800000)
#define KB_NAN     __int_as_float(0x7fffffff)

// Op ids: must match the OP_* constants in src/engine/cuda.rs.
#define OP_LOGIT      0
#define OP_SIGMOID    1
#define OP_LOGSIGMOID 2

// ---------------------------------------------------------------------------------------------
// Storage types. Each has a bit type `T`, a `load` that widens to f32 (exact) and a `store` that
// rounds an f32 to the type.
// ---------------------------------------------------------------------------------------------

// The storage types F32, F16 and BF16 (load widens to f32, store rounds back) come from
// kernels/dtype.cuh, which is compiled in front of this file.

// ---------------------------------------------------------------------------------------------
// The three functions, in f32.
// ---------------------------------------------------------------------------------------------

// logit(p) = ln(p / (1 - p)), the log-odds. `clamp` != 0: clamp p to [lo, hi] first
// (lo = f32(eps), hi = 1 - lo, computed on the host as torch.logit does).
// Edge values are explicit rather than left to the hardware:
// p = 0 -> -inf, p = 1 -> +inf, p < 0, p > 1 or NaN -> NaN.
__device__ float logit_f(float p, int clamp, float lo, float hi) {
    if (p != p) return KB_NAN;                      // NaN in, NaN out (the clamp would hide it)
    if (clamp) p = fminf(fmaxf(p, lo), hi);
    if (p < 0.0f || p > 1.0f) return KB_NAN;        // not a probability
    if (p == 0.0f) return KB_NEG_INF;
    if (p == 1.0f) return KB_POS_INF;
    return logf(p / (1.0f - p));
}

// sigmoid(x) = 1 / (1 + e^-x), evaluated so that e^(+large) is never formed:
// for x < 0 the equivalent e^x / (1 + e^x) only exponentiates a negative number.
__device__ float sigmoid_f(float x) {
    if (x >= 0.0f) {
        return 1.0f / (1.0f + expf(-x));
    }
    float e = expf(x);                              // NaN also lands here and stays NaN
    return e / (1.0f + e);
}

// logsigmoid(x) = ln(sigmoid(x)) = min(x, 0) - ln(1 + e^-|x|).
// log1pf keeps ln(1 + tiny) accurate, and nothing underflows: logsigmoid(-200) = -200, where
// logf(sigmoid(-200)) would give -inf.
__device__ float logsigmoid_f(float x) {
    if (x != x) return KB_NAN;                      // fminf would turn NaN into 0
    return fminf(x, 0.0f) - log1pf(expf(-fabsf(x)));
}

// ---------------------------------------------------------------------------------------------
// The kernel: load, compute in f32, store rounded. One template, one entry point per dtype.
// ---------------------------------------------------------------------------------------------

template <class D>
__device__ void logits_kernel(const typename D::T* x, typename D::T* y, unsigned int n, int op,
                              int clamp, float lo, float hi) {
    unsigned int stride = gridDim.x * blockDim.x;
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        float v = D::load(x[i]);                    // widen to f32 (exact)
        float r;
        if (op == OP_LOGIT) {
            r = logit_f(v, clamp, lo, hi);
        } else if (op == OP_SIGMOID) {
            r = sigmoid_f(v);
        } else {
            r = logsigmoid_f(v);
        }
        y[i] = D::store(r);                         // round once, to the storage type
    }
}

extern "C" __global__ void logits_f32(const float* x, float* y, unsigned int n, int op, int clamp,
                                      float lo, float hi) {
    logits_kernel<F32>(x, y, n, op, clamp, lo, hi);
}

extern "C" __global__ void logits_f16(const unsigned short* x, unsigned short* y, unsigned int n,
                                      int op, int clamp, float lo, float hi) {
    logits_kernel<F16>(x, y, n, op, clamp, lo, hi);
}

extern "C" __global__ void logits_bf16(const unsigned short* x, unsigned short* y, unsigned int n,
                                       int op, int clamp, float lo, float hi) {
    logits_kernel<BF16>(x, y, n, op, clamp, lo, hi);
}
