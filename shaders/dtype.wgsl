// dtype.wgsl: special f32 values by their bits, and f16 / bf16 <-> f32 with integer arithmetic.
//
// Every shader needs these, and WGSL has no #include: the engine compiles this file in front of
// each topic's shader (`kernelbook::sources::wgsl_program`), so they are written once.
//
// Two WGSL facts shape them:
//   1. WGSL lets an implementation assume that no infinity or NaN ever appears in f32 arithmetic
//      (results that would be inf or NaN are "indeterminate"). So special values are made from
//      their bit patterns with bitcast and tested through their bits.
//   2. pack2x16float's result is indeterminate for values outside f16's range (exactly the values
//      this app is about), so the f16 and bf16 conversions are written out with integer arithmetic:
//      round to nearest, ties to even; too large becomes +-inf; NaN stays NaN.

// ---------------------------------------------------------------------------------------------
// Special values, by their bits.
// ---------------------------------------------------------------------------------------------

const POS_INF_BITS: u32 = 0x7f800000u;
const NEG_INF_BITS: u32 = 0xff800000u;
const NAN_BITS: u32 = 0x7fc00000u;

fn pos_inf() -> f32 { return bitcast<f32>(POS_INF_BITS); }
fn neg_inf() -> f32 { return bitcast<f32>(NEG_INF_BITS); }
fn nan() -> f32 { return bitcast<f32>(NAN_BITS); }

// NaN: all exponent bits set and a non-zero mantissa.
fn is_nan(v: f32) -> bool { return (bitcast<u32>(v) & 0x7fffffffu) > POS_INF_BITS; }
// +inf or -inf: all exponent bits set and a zero mantissa.
fn is_inf(v: f32) -> bool { return (bitcast<u32>(v) & 0x7fffffffu) == POS_INF_BITS; }
// The sign bit (true for -0 and -inf too): used where a comparison with inf would be indeterminate.
fn sign_bit(v: f32) -> bool { return (bitcast<u32>(v) >> 31u) == 1u; }

// ---------------------------------------------------------------------------------------------
// f16 and bf16 <-> f32, with integer arithmetic.
// ---------------------------------------------------------------------------------------------

// IEEE half (1 sign, 5 exponent, 10 mantissa bits) to f32. Exact: every f16 is an f32.
fn f16_to_f32(h: u32) -> f32 {
    let sign = (h & 0x8000u) << 16u;
    let exponent = (h >> 10u) & 0x1fu;
    let mantissa = h & 0x3ffu;
    if exponent == 0x1fu {
        // inf (mantissa 0) or NaN (payload kept, moved to the top of the f32 mantissa)
        return bitcast<f32>(sign | POS_INF_BITS | (mantissa << 13u));
    }
    if exponent == 0u {
        if mantissa == 0u {
            return bitcast<f32>(sign); // +-0
        }
        // Subnormal: mantissa * 2^-24. Its leading 1 is bit p (0..9), so the value is
        // 1.xxx * 2^(p - 24): a normal f32 with biased exponent p - 24 + 127.
        let p = 31u - countLeadingZeros(mantissa);
        let f32_mantissa = (mantissa << (23u - p)) & 0x7fffffu;
        return bitcast<f32>(sign | ((p + 103u) << 23u) | f32_mantissa);
    }
    // Normal: rebias the exponent (15 -> 127) and widen the mantissa (10 -> 23 bits).
    return bitcast<f32>(sign | ((exponent + 112u) << 23u) | (mantissa << 13u));
}

// f32 to IEEE half bits, round to nearest, ties to even. |v| >= 65520 becomes inf, values below
// half of the smallest subnormal (2^-25) become +-0, NaN stays NaN.
fn f32_to_f16(v: f32) -> u32 {
    let bits = bitcast<u32>(v);
    let sign = (bits >> 16u) & 0x8000u;
    let exponent = (bits >> 23u) & 0xffu;
    let mantissa = bits & 0x7fffffu;
    if exponent == 0xffu {
        if mantissa != 0u {
            return sign | 0x7e00u | (mantissa >> 13u); // NaN: set the quiet bit so it stays NaN
        }
        return sign | 0x7c00u; // +-inf
    }
    let e = i32(exponent) - 127; // unbiased exponent: |v| = 1.m * 2^e
    if e > 15 {
        return sign | 0x7c00u; // beyond 65504 and its rounding range: overflow to inf
    }
    if e >= -14 {
        // Normal f16: keep the top 10 mantissa bits, round on the 13 dropped ones.
        var h = (u32(e + 15) << 10u) | (mantissa >> 13u);
        let dropped = mantissa & 0x1fffu;
        if dropped > 0x1000u || (dropped == 0x1000u && (h & 1u) == 1u) {
            h = h + 1u; // a carry may ripple into the exponent: up to 0x7c00 = inf, as it should
        }
        return sign | h;
    }
    if e < -25 {
        return sign; // below 2^-25: rounds to zero (f32 subnormals land here too)
    }
    // Subnormal f16: count units of 2^-24. |v| = significand * 2^(e - 23) with the hidden bit
    // restored, so the count is significand >> shift with shift = -(e + 1), in 14..24.
    let significand = mantissa | 0x800000u;
    let shift = u32(-(e + 1));
    var h = significand >> shift;
    let dropped = significand & ((1u << shift) - 1u);
    let half = 1u << (shift - 1u);
    if dropped > half || (dropped == half && (h & 1u) == 1u) {
        h = h + 1u; // may become 0x400, the smallest normal: also correct
    }
    return sign | h;
}

// bfloat16 (the top 16 bits of an f32) to f32: append 16 zero bits. Exact.
fn bf16_to_f32(b: u32) -> f32 {
    return bitcast<f32>(b << 16u);
}

// f32 to bfloat16 bits, round to nearest, ties to even; NaN stays NaN.
fn f32_to_bf16(v: f32) -> u32 {
    let bits = bitcast<u32>(v);
    if (bits & 0x7fffffffu) > POS_INF_BITS {
        return (bits >> 16u) | 0x0040u; // NaN: keep sign and top payload, force the quiet bit
    }
    // Add 0x7fff plus the lowest kept bit, then truncate: ties go to the even neighbour. A carry
    // out of the mantissa bumps the exponent; past the largest bf16 it gives inf.
    let lowest_kept = (bits >> 16u) & 1u;
    return (bits + 0x7fffu + lowest_kept) >> 16u;
}
