// dtype_emu.h: the F16 storage type of kernels/dtype.cuh for the CPU emulator (tests/cuda_emu).
// dtype.cuh converts with inline PTX `cvt`, which g++ cannot compile; tests/cuda_emu/mod.rs puts
// this struct in its place and keeps the rest of dtype.cuh (F32, BF16, the 16-byte vector
// helpers) as it is. The same interface (`T`, `load`, `store`) in integer arithmetic, with the
// results of the PTX instructions:
//   load  (cvt.f32.f16):    exact, subnormals kept, inf stays inf, NaN stays NaN;
//   store (cvt.rn.f16.f32): round to nearest, ties to even; 65520 and above (in magnitude)
//                           become inf; f32 subnormals and anything up to 2^-25 (a tie
//                           with 0) become +-0;
//                           NaN becomes the canonical f16 NaN 0x7fff, as the hardware does.

struct F16 {
    typedef unsigned short T;
    static __device__ __forceinline__ float load(T h) {
        const unsigned int sign = ((unsigned int)h & 0x8000u) << 16;
        const unsigned int exponent = ((unsigned int)h >> 10) & 0x1fu;
        const unsigned int mantissa = (unsigned int)h & 0x3ffu;
        if (exponent == 0x1fu) return __uint_as_float(sign | 0x7f800000u | (mantissa << 13));
        if (exponent == 0u) {
            // zero or subnormal: mantissa * 2^-24, exact in f32
            const float magnitude = (float)mantissa * __uint_as_float(0x33800000u);
            return sign ? -magnitude : magnitude;
        }
        return __uint_as_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
    }
    static __device__ __forceinline__ T store(float f) {
        const unsigned int u = __float_as_uint(f);
        const unsigned int sign = (u >> 16) & 0x8000u;
        const unsigned int a = u & 0x7fffffffu;
        if (a > 0x7f800000u) return (T)0x7fffu;                    // NaN
        if (a >= 0x477ff000u) return (T)(sign | 0x7c00u);          // >= 65520: inf
        if (a >= 0x38800000u) {
            // normal f16: keep 10 of the 23 mantissa bits, round the other 13 to nearest even
            unsigned int h = ((a >> 23) - 112u) << 10 | ((a >> 13) & 0x3ffu);
            const unsigned int rest = a & 0x1fffu;
            if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // a carry bumps the exponent
            return (T)(sign | h);
        }
        if (a < 0x00800000u) return (T)sign;                       // f32 zero or subnormal
        // subnormal f16: round(a * 2^24) to nearest even, from the 24-bit significand
        const unsigned int significand = (a & 0x7fffffu) | 0x800000u;
        const unsigned int shift = 126u - (a >> 23);               // 14 .. 125
        if (shift > 24u) return (T)sign;                           // below 2^-25: rounds to 0
        unsigned int h = significand >> shift;
        const unsigned int rest = significand & ((1u << shift) - 1u);
        const unsigned int half = 1u << (shift - 1u);
        if (rest > half || (rest == half && (h & 1u))) ++h;
        return (T)(sign | h);
    }
};
