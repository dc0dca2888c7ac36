// dtype.cuh: the three storage types every kernel is written for, compiled in front of each
// kernels/<topic>.cu (`kernelbook::sources::cuda_program`), since NVRTC has no standard headers and
// each file would otherwise carry its own copy.
//
// A storage type `D` has a bit type `D::T`; `D::load` widens a stored value to f32 (exact) and
// `D::store` rounds an f32 to the type (round to nearest, ties to even; too large becomes +-inf;
// NaN stays NaN).

struct F32 {
    typedef float T;
    static __device__ __forceinline__ float load(T v) { return v; }
    static __device__ __forceinline__ T store(float f) { return f; }
};

// IEEE half: 1 sign, 5 exponent, 10 mantissa bits. The PTX `cvt` instructions do the work:
// `cvt.f32.f16` widens exactly (subnormals kept), `cvt.rn.f16.f32` rounds to nearest even and
// overflows to inf above 65504 (65520 and up).
struct F16 {
    typedef unsigned short T;
    static __device__ __forceinline__ float load(T h) {
        float f;
        asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
        return f;
    }
    static __device__ __forceinline__ T store(float f) {
        unsigned short h;
        asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
        return h;
    }
};

// bfloat16: the top 16 bits of an f32 (same 8-bit exponent, 7 mantissa bits).
struct BF16 {
    typedef unsigned short T;
    static __device__ __forceinline__ float load(T b) {
        return __uint_as_float(((unsigned int)b) << 16);  // exact: append 16 zero bits
    }
    static __device__ __forceinline__ T store(float f) {
        unsigned int u = __float_as_uint(f);
        if ((u & 0x7fffffffu) > 0x7f800000u) {
            // NaN: keep the sign and top mantissa bits, force the quiet bit so it stays NaN.
            return (unsigned short)((u >> 16) | 0x0040u);
        }
        // Round to nearest, ties to even: add 0x7fff plus the lowest kept bit, then truncate.
        // A carry out of the mantissa bumps the exponent; past the largest bf16 it gives inf.
        unsigned int lsb = (u >> 16) & 1u;
        u += 0x7fffu + lsb;
        return (unsigned short)(u >> 16);
    }
};

// 16-byte vectors, for kernels that load and store 16 bytes per access (4 f32 or 8 f16/bf16
// values in a uint4, lowest address first). `unpack(D(), v, i)` widens value i to f32;
// `pack(D(), f)` rounds 16 / sizeof(D::T) f32 values to D and packs them.
__device__ __forceinline__ float unpack(F32, uint4 v, int i) {
    unsigned int w = i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w;
    return __uint_as_float(w);
}
template <class D>
__device__ __forceinline__ float unpack(D, uint4 v, int i) {
    unsigned int w = (i >> 1) == 0 ? v.x : (i >> 1) == 1 ? v.y : (i >> 1) == 2 ? v.z : v.w;
    return D::load((unsigned short)((i & 1) ? (w >> 16) : (w & 0xffffu)));
}
__device__ __forceinline__ uint4 pack(F32, const float* f) {
    return make_uint4(__float_as_uint(f[0]), __float_as_uint(f[1]), __float_as_uint(f[2]),
                      __float_as_uint(f[3]));
}
template <class D>
__device__ __forceinline__ uint4 pack(D, const float* f) {
    unsigned int w[4];
#pragma unroll
    for (int k = 0; k < 4; ++k)
        w[k] = (unsigned int)D::store(f[2 * k]) | ((unsigned int)D::store(f[2 * k + 1]) << 16);
    return make_uint4(w[0], w[1], w[2], w[3]);
}
