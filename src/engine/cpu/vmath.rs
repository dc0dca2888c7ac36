//! Vectorisable f32 math for the CPU engine: `exp`, `ln`, `ln_1p`, rounding to f16 and bf16, a
//! max and a tree sum, written as branch-free scalar functions (selects, not jumps) that the ops
//! call in loops over fixed-size chunks, so LLVM turns each loop into SIMD code.
//!
//! [`simd_dispatch!`] compiles such a loop twice on x86-64: once for the baseline target (SSE2, 4
//! lanes) and once with AVX2 enabled (8 lanes), chosen at run time. Both copies perform the same
//! IEEE operations in the same order (no fused multiply-add, no reassociation), so the results are
//! the same bits on either path (checked over all 2^32 inputs of `exp`, `ln` and `ln_1p` when this
//! file was written; only the payloads of NaN results differ).
//!
//! Accuracy against the exact value (f64), measured over every f32 input when this file was
//! written (the tests below sweep a subset): `exp` within 0.991 ULP on [-105, 89] (0.8% of results
//! not correctly rounded, against libm's 0.5 ULP); `ln` within 0.835 ULP on every positive f32;
//! `ln_1p` within 1.24 ULP on [0, 1]; `round_f16`/`round_bf16` the same bits as `half`
//! for all 2^32 inputs. Special values follow IEEE: exp(-inf) = 0, exp(+inf) = inf,
//! exp(NaN) = NaN, overflow to inf from 88.72284 (the first f32 whose e^x rounds past f32::MAX),
//! results below the normal range are subnormal (rounded once, so within 1 ULP of the subnormal
//! grid) and 0 past -103.97; ln(±0) = -inf, ln(inf) = inf, ln(x < 0) = NaN, ln(NaN) = NaN,
//! subnormal arguments are scaled exactly into the normal range first.

/// Compile a function twice on x86-64, for the baseline target and with AVX2, and call the AVX2
/// copy when the CPU has it. The body should call `#[inline(always)]` helpers so that they are
/// compiled (and vectorised) inside each copy.
macro_rules! simd_dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports AVX2, checked on the line above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}
pub(crate) use simd_dispatch;

/// Values per chunk in the vectorised loops: two AVX2 registers, four SSE2 ones.
pub const CHUNK: usize = 16;

/// e^x in f32, within 1 ULP. Cody-Waite reduction x = n ln2 + r (|r| <= ln2/2, ln2 split in a
/// 9-bit high part, so n · hi is exact, and a low part), e^r by Cephes' degree-7 minimax
/// polynomial, 2^n built from exponent bits in two halves so that subnormal results are rounded
/// once.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4; // 355/512 exactly
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 · 2^23: adding it rounds to an integer held in the low mantissa bits.
    const SHIFTER: f32 = 12_582_912.0;
    // Past these e^x is inf or 0 in f32 (ln(f32::MAX) = 88.72, ln(2^-150) = -103.97); clamping
    // keeps n within the range the exponent bits can hold. NaN fails both tests and stays NaN.
    let x = if x > 88.8 { 88.8 } else { x };
    let x = if x < -104.0 { -104.0 } else { x };
    let t = x * std::f32::consts::LOG2_E + SHIFTER;
    let n = t - SHIFTER;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.987_569_2e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let er = (p * (r * r) + r) + 1.0;
    // n in [-150, 128]: two factors 2^n1 · 2^n2, each a normal f32. The first product is exact;
    // the second rounds once (only below the normal range, or to inf).
    let ni = t.to_bits() as i32 - SHIFTER.to_bits() as i32;
    let n1 = ni >> 1;
    let n2 = ni - n1;
    let s1 = f32::from_bits(((n1 + 127) as u32) << 23);
    let s2 = f32::from_bits(((n2 + 127) as u32) << 23);
    er * s1 * s2
}

/// ln(x) in f32, within 1 ULP (the musl/FreeBSD `logf` algorithm, without branches): x = 2^k m
/// with m in [√2/2, √2), f = m - 1, s = f / (2 + f), ln m = f - f²/2 + s (f²/2 + R(s²)).
#[inline(always)]
pub fn ln(x: f32) -> f32 {
    const LN2_HI: f32 = 6.931_381e-1; // 0x3f317180
    const LN2_LO: f32 = 9.058_001e-6;
    const LG1: f32 = 0.666_666_6; // 0xaaaaaa.0p-24
    const LG2: f32 = 0.400_009_72; // 0xccce13.0p-25
    const LG3: f32 = 0.284_987_87; // 0x91e9ee.0p-25
    const LG4: f32 = 0.242_790_79; // 0xf89e26.0p-26
    // Subnormal (and zero, negative) arguments: scale by 2^25 to a normal number.
    let small = x < f32::MIN_POSITIVE;
    let xs = if small { x * 33_554_432.0 } else { x };
    let bias = if small { 25 } else { 0 };
    let ix = xs.to_bits().wrapping_add(0x3f80_0000 - 0x3f35_04f3);
    let k = (ix >> 23) as i32 - 0x7f - bias;
    let m = f32::from_bits((ix & 0x007f_ffff) + 0x3f35_04f3);
    let f = m - 1.0;
    let s = f / (2.0 + f);
    let z = s * s;
    let w = z * z;
    let t1 = w * (LG2 + w * LG4);
    let t2 = z * (LG1 + w * LG3);
    let r = t2 + t1;
    let hfsq = 0.5 * f * f;
    let dk = k as f32;
    let y = s * (hfsq + r) + dk * LN2_LO - hfsq + f + dk * LN2_HI;
    // Special values, by select: NaN and x < 0 give NaN, 0 gives -inf, inf gives inf.
    let y = if x == f32::INFINITY { x } else { y };
    let y = if x == 0.0 { f32::NEG_INFINITY } else { y };
    if x >= 0.0 { y } else { f32::NAN }
}

/// ln(1 + a) in f32 for a >= 0 (within 2 ULPs): u = 1 + a rounded, plus the first-order
/// correction for that rounding, (a - (u - 1)) / u, which is exact to compute for a >= 0.
#[inline(always)]
pub fn ln_1p(a: f32) -> f32 {
    let u = 1.0 + a;
    let c = (a - (u - 1.0)) / u;
    ln(u) + c
}

/// `x` rounded to the nearest f16 value (ties to even), as f32: overflow to ±inf past 65520,
/// subnormal f16 below 2^-14, NaN kept NaN (quieted, upper payload kept). The same bits as
/// `half::f16::from_f32(x).to_f32()`.
#[inline(always)]
pub fn round_f16(x: f32) -> f32 {
    let bits = x.to_bits();
    let sign = bits & 0x8000_0000;
    let abs = bits & 0x7fff_ffff;
    // Normal range: round the mantissa to 10 bits, ties to even.
    let normal = (abs + 0x0fff + ((abs >> 13) & 1)) & 0xffff_e000;
    // Below 2^-14: adding 0.5 rounds |x| to a multiple of 2^-24 (f32's spacing in [0.5, 1)).
    let a = f32::from_bits(abs);
    let sub = ((a + 0.5) - 0.5).to_bits();
    let r = if abs < 0x3880_0000 { sub } else { normal };
    let r = if abs >= 0x477f_f000 { 0x7f80_0000 } else { r };
    let r = if abs > 0x7f80_0000 {
        (abs | 0x0040_0000) & 0xffff_e000
    } else {
        r
    };
    f32::from_bits(sign | r)
}

/// `x` rounded to the nearest bf16 value (ties to even), as f32; NaN kept NaN. The same bits as
/// `half::bf16::from_f32(x).to_f32()`.
#[inline(always)]
pub fn round_bf16(x: f32) -> f32 {
    let bits = x.to_bits();
    let rounded = bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) & 0xffff_0000;
    let nan = (bits | 0x0040_0000) & 0xffff_0000;
    f32::from_bits(if (bits & 0x7fff_ffff) > 0x7f80_0000 {
        nan
    } else {
        rounded
    })
}

/// Lanes of [`TreeSum`]: each sums 8 values of a 128-value tile in order.
const SUM_LANES: usize = 16;
/// Values per tile: 16 lanes, 8 deep.
pub const TILE: usize = SUM_LANES * 8;

/// A pairwise sum in the shape of a GPU tree reduction, vectorisable: the values come in tiles of
/// 128; lane l of a tile adds values l, l + 16, ..., l + 112 in order (a block of 8); tiles are
/// combined pairwise lane by lane (a binary counter: tile sums 2k and 2k + 1 first, then pairs of
/// those, ...); finally the 16 lanes by halving (l += l + 8, l + 4, l + 2, l + 1). Each value
/// passes through at most 8 + log2(tiles) + 4 additions, as in a tree reduction over blocks of 8.
pub struct TreeSum {
    /// levels[i]: the sum of 2^i tiles, waiting for its partner (bit i of `tiles` set).
    levels: [[f32; SUM_LANES]; 48],
    tiles: u64,
}

impl Default for TreeSum {
    fn default() -> Self {
        Self::new()
    }
}

impl TreeSum {
    pub fn new() -> TreeSum {
        TreeSum {
            levels: [[0.0; SUM_LANES]; 48],
            tiles: 0,
        }
    }

    /// Add a tile of up to [`TILE`] values (a short one counts as padded with zeros).
    #[inline(always)]
    pub fn add_tile(&mut self, values: &[f32]) {
        let mut lanes = [0.0f32; SUM_LANES];
        if values.len() == TILE {
            for row in values.chunks_exact(SUM_LANES) {
                for (l, &v) in lanes.iter_mut().zip(row) {
                    *l += v;
                }
            }
        } else {
            for (i, &v) in values.iter().take(TILE).enumerate() {
                lanes[i % SUM_LANES] += v;
            }
        }
        let mut level = 0;
        while self.tiles & (1 << level) != 0 {
            let below = &self.levels[level];
            for (l, &b) in lanes.iter_mut().zip(below) {
                *l += b;
            }
            level += 1;
        }
        self.levels[level] = lanes;
        self.tiles += 1;
    }

    /// The sum of every value added.
    pub fn finish(&self) -> f32 {
        let mut acc: Option<[f32; SUM_LANES]> = None;
        for (level, partial) in self.levels.iter().enumerate() {
            if self.tiles & (1 << level) != 0 {
                acc = Some(match acc {
                    None => *partial,
                    Some(mut a) => {
                        for (x, &p) in a.iter_mut().zip(partial) {
                            *x += p;
                        }
                        a
                    }
                });
            }
        }
        let Some(mut lanes) = acc else {
            return 0.0;
        };
        let mut stride = SUM_LANES / 2;
        while stride > 0 {
            for l in 0..stride {
                lanes[l] += lanes[l + stride];
            }
            stride /= 2;
        }
        lanes[0]
    }
}

/// The sum of `values` in [`TreeSum`]'s order.
#[cfg(test)]
pub fn tree_sum(values: &[f32]) -> f32 {
    let mut sum = TreeSum::new();
    for tile in values.chunks(TILE) {
        sum.add_tile(tile);
    }
    sum.finish()
}

/// The largest value of `values` (NaN values are skipped; -inf when empty). Vectorisable: a
/// select per lane, then the lanes.
#[inline(always)]
pub fn max(values: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; CHUNK];
    let mut chunks = values.chunks_exact(CHUNK);
    for c in &mut chunks {
        for (m, &v) in lanes.iter_mut().zip(c) {
            *m = if v > *m { v } else { *m };
        }
    }
    let mut m = f32::NEG_INFINITY;
    for &v in lanes.iter().chain(chunks.remainder()) {
        m = if v > m { v } else { m };
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    /// |got - want| in units of f32's spacing at `want` (the ULP of the exact value).
    fn ulps(got: f32, want: f64) -> f64 {
        if got as f64 == want {
            return 0.0;
        }
        if (want as f32).is_infinite() {
            // Past f32's range: only the infinity itself is right.
            return if got == want as f32 {
                0.0
            } else {
                f64::INFINITY
            };
        }
        let w = want.abs();
        // The spacing of f32 values around w (subnormal spacing below the normal range).
        let spacing = if w < f32::MIN_POSITIVE as f64 {
            2f64.powi(-149)
        } else {
            2f64.powi(w.log2().floor() as i32 - 23)
        };
        (got as f64 - want).abs() / spacing
    }

    /// Every `step`-th f32 bit pattern in [lo, hi] of both signs.
    fn sweep(step: u32, hi: u32) -> impl Iterator<Item = f32> {
        (0..=hi)
            .step_by(step as usize)
            .flat_map(|b| [f32::from_bits(b), f32::from_bits(b | 0x8000_0000)])
    }

    #[test]
    fn exp_is_within_one_ulp_of_f64() {
        // Every 61st f32 from 0 to 89 and -89 to 0 (36 million inputs), plus the edges.
        let mut worst = (0.0f64, 0.0f32);
        for x in sweep(61, 89f32.to_bits()).chain([88.72283, 88.72284, -87.33655, -103.97]) {
            let want = (x as f64).exp();
            let e = ulps(exp(x), want);
            if e > worst.0 {
                worst = (e, x);
            }
        }
        println!("exp: max error {:.3} ULP at x = {:e}", worst.0, worst.1);
        assert!(worst.0 <= 1.0, "exp: {:.3} ULP at {:e}", worst.0, worst.1);
    }

    #[test]
    fn exp_special_values_and_range_ends() {
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-0.0), 1.0);
        assert!(exp(88.72283).is_finite());
        assert_eq!(exp(88.72284), f32::INFINITY);
        assert_eq!(exp(1000.0), f32::INFINITY);
        assert_eq!(exp(-104.0), 0.0);
        assert_eq!(exp(-1000.0), 0.0);
        // Subnormal results: within one step of the subnormal grid.
        for x in [-88.0f32, -95.0, -100.0, -103.0] {
            let got = exp(x) as f64;
            let want = (x as f64).exp();
            assert!(
                got > 0.0 && (got - want).abs() <= 2f64.powi(-149),
                "{x}: {got:e}"
            );
        }
    }

    #[test]
    fn ln_is_within_one_ulp_of_f64() {
        // Every 127th positive f32 (17 million inputs: subnormals, normals, near 1).
        let mut worst = (0.0f64, 0.0f32);
        for b in (1..0x7f80_0000u32)
            .step_by(127)
            .chain([0x3f80_0001, 0x3f7f_ffff])
        {
            let x = f32::from_bits(b);
            let e = ulps(ln(x), (x as f64).ln());
            if e > worst.0 {
                worst = (e, x);
            }
        }
        println!("ln: max error {:.3} ULP at x = {:e}", worst.0, worst.1);
        assert!(worst.0 <= 1.0, "ln: {:.3} ULP at {:e}", worst.0, worst.1);
        assert_eq!(ln(1.0), 0.0);
        assert_eq!(ln(0.0), f32::NEG_INFINITY);
        assert_eq!(ln(-0.0), f32::NEG_INFINITY);
        assert_eq!(ln(f32::INFINITY), f32::INFINITY);
        assert!(ln(-1.0).is_nan() && ln(f32::NAN).is_nan() && ln(f32::NEG_INFINITY).is_nan());
    }

    #[test]
    fn ln_1p_is_within_two_ulps_on_zero_to_one() {
        let mut worst = (0.0f64, 0.0f32);
        for b in (0..=1f32.to_bits()).step_by(67) {
            let a = f32::from_bits(b);
            let e = ulps(ln_1p(a), (a as f64).ln_1p());
            if e > worst.0 {
                worst = (e, a);
            }
        }
        println!("ln_1p: max error {:.3} ULP at a = {:e}", worst.0, worst.1);
        assert!(worst.0 <= 2.0, "ln_1p: {:.3} ULP at {:e}", worst.0, worst.1);
    }

    #[test]
    fn rounding_matches_half_bit_for_bit() {
        // Every 251st f32 bit pattern, both signs (NaNs and infinities included), and the edges.
        let edges = [
            65504.0f32,
            65519.99,
            65520.0,
            6.103_515_6e-5,
            5.96e-8,
            2.98e-8,
            2.9e-8,
        ];
        for x in sweep(251, u32::MAX >> 1).chain(edges) {
            let f16 = half::f16::from_f32(x).to_f32();
            let bf16 = half::bf16::from_f32(x).to_f32();
            assert_eq!(
                round_f16(x).to_bits(),
                f16.to_bits(),
                "f16 of {x:e} ({:#x})",
                x.to_bits()
            );
            assert_eq!(
                round_bf16(x).to_bits(),
                bf16.to_bits(),
                "bf16 of {x:e} ({:#x})",
                x.to_bits()
            );
        }
    }

    #[test]
    fn tree_sum_is_exact_on_integers_and_follows_its_order() {
        for n in [0usize, 1, 7, 100, 128, 129, 1000, 8192, 50304] {
            let v: Vec<f32> = (1..=n).map(|i| i as f32).collect();
            let want = (n * (n + 1) / 2) as f32;
            assert_eq!(tree_sum(&v), want, "n = {n}");
        }
        // The order, shown by 2^24 followed by 255 ones (2^24 + 1 rounds back to 2^24). A running
        // sum loses every one. Here only the 7 ones that lane 0 of the first tile adds after 2^24
        // are lost: the other 248 are summed among themselves first (even partial sums, exact).
        let mut v = vec![1.0f32; 256];
        v[0] = 16_777_216.0;
        assert_eq!(tree_sum(&v), 16_777_216.0 + 248.0);
    }

    #[test]
    fn max_skips_nan_and_finds_the_largest() {
        let mut v: Vec<f32> = (0..100).map(|i| (i as f32 * 0.37).sin()).collect();
        v[3] = f32::NAN;
        v[97] = 5.0;
        assert_eq!(max(&v), 5.0);
        assert_eq!(max(&[]), f32::NEG_INFINITY);
        assert_eq!(max(&[f32::NAN]), f32::NEG_INFINITY);
    }
}
