//! gumbel_noise and gumbel_softmax on the CPU engine: the steps of `src/ops/gumbel.rs` in f32, with
//! the same Philox4x32-10 and the same integer-exact word -> Gumbel map as the CUDA kernel and the
//! WGSL shader (they are the functions in `ops::gumbel`), so the noise, the perturbed logits
//! a = l + g, the Gumbel-max choice and the gaps d are the same bits as on the GPUs. Only e^d, the
//! row sum (pairwise, [`super::pairwise_sum`]) and the quotient are this engine's own f32
//! arithmetic (skipped altogether for a hard sample without `return_soft`). Sample rows are split
//! over the engine's threads when there are many. On AVX2 CPUs Philox and the word -> Gumbel map
//! run eight lanes at a time (`avx2` below), the same integer steps, so the same bits (a test
//! compares them over every uniform).

use super::CpuEngine;
use crate::dtype::DType;
use crate::engine::{AuxOutput, EngineError, OpOutput, TimingSource};
use crate::ops::OpRequest;
use crate::ops::gumbel::{self as gm, GumbelOp};
use std::time::Instant;

/// Output values below which the work stays on the calling thread.
const PARALLEL_FROM: usize = 1 << 15;

/// This engine's registration of the topic.
pub(crate) static TOPIC: super::CpuTopic = super::CpuTopic {
    topic: "gumbel",
    execute: run_request,
};

fn run_request(engine: &CpuEngine, req: &OpRequest) -> Result<OpOutput, EngineError> {
    execute(engine, req, crate::engine::topic_op::<GumbelOp>(req)?)
}

fn execute(
    engine: &CpuEngine,
    req: &OpRequest,
    op: &GumbelOp,
) -> Result<OpOutput, EngineError> {
    let start = Instant::now();
    let shape = req.output_shape();
    let cols = req.x.cols();
    let n: usize = shape.iter().product();
    let threads = if n < PARALLEL_FROM {
        1
    } else {
        engine.threads().max(1)
    };
    let samples = n.checked_div(cols).unwrap_or(0);
    let per = samples.div_ceil(threads).max(1);
    let key = gm::key_of(op.seed());
    let offset = op.offset();
    let dtype = req.dtype;
    let mut out = OpOutput::new(
        shape.clone(),
        dtype,
        Vec::new(),
        Default::default(),
        TimingSource::WallClock,
        Default::default(),
    );
    match *op {
        GumbelOp::GumbelNoise { .. } => {
            let mut y = vec![0.0f32; n];
            if cols > 0 {
                std::thread::scope(|scope| {
                    for (chunk, ys) in y.chunks_mut(per * cols).enumerate() {
                        scope.spawn(move || {
                            let mut words = vec![0u32; cols];
                            for (i, row) in ys.chunks_mut(cols).enumerate() {
                                let s = (chunk * per + i) as u32;
                                noise_row(key, offset, s, &mut words, row);
                                for v in row.iter_mut() {
                                    *v = dtype.round(*v);
                                }
                            }
                        });
                    }
                });
            }
            out.values = y;
        }
        GumbelOp::GumbelSoftmax {
            tau, hard, draws, ..
        } => {
            let inv_tau = gm::inv_tau_f32(tau);
            let keep_soft = op.soft_aux();
            let mut y = vec![0.0f32; n];
            let mut soft = vec![0.0f32; if keep_soft { n } else { 0 }];
            if cols > 0 {
                let logits = &req.x.data;
                std::thread::scope(|scope| {
                    let soft_chunks: Box<dyn Iterator<Item = &mut [f32]>> = if keep_soft {
                        Box::new(soft.chunks_mut(per * cols))
                    } else {
                        Box::new(std::iter::repeat_with(|| &mut [][..]))
                    };
                    for (chunk, (ys, ss)) in y.chunks_mut(per * cols).zip(soft_chunks).enumerate() {
                        scope.spawn(move || {
                            let mut g = vec![0.0f32; cols];
                            let mut a = vec![0.0f32; cols];
                            let mut words = vec![0u32; cols];
                            for (i, yr) in ys.chunks_mut(cols).enumerate() {
                                let s = chunk * per + i;
                                let r = s / draws;
                                noise_row(key, offset, s as u32, &mut words, &mut g);
                                let l = &logits[r * cols..(r + 1) * cols];
                                let mode = match (hard, keep_soft) {
                                    (false, _) => Sample::Soft,
                                    (true, true) => {
                                        Sample::HardWithSoft(&mut ss[i * cols..(i + 1) * cols])
                                    }
                                    (true, false) => Sample::Hard,
                                };
                                sample_row(l, &g, &mut a, inv_tau, dtype, yr, mode);
                            }
                        });
                    }
                });
            }
            out.values = y;
            if keep_soft {
                out.aux.push(AuxOutput {
                    name: gm::SOFT_AUX.into(),
                    shape,
                    values: soft,
                });
            }
        }
    }
    let elapsed = start.elapsed();
    out.kernel_time = elapsed;
    out.total_time = elapsed;
    Ok(out)
}

/// What one sample writes.
enum Sample<'a> {
    /// The soft sample, to `y`.
    Soft,
    /// The one-hot to `y`, and the soft sample to this aux row.
    HardWithSoft(&'a mut [f32]),
    /// The one-hot alone (return_soft=false): no e^d at all.
    Hard,
}

/// One sample: a = l + g and the Gumbel-max class, then e^d / Σ e^d where a soft sample is wanted.
fn sample_row(
    logits: &[f32],
    noise: &[f32],
    a: &mut [f32],
    inv_tau: f32,
    dtype: DType,
    y: &mut [f32],
    mode: Sample,
) {
    let (m, hot) = gm::perturb_row(logits, noise, a);
    let soft = |v: f32, s: f32| dtype.round(gm::gap(v, m, inv_tau).exp() / s);
    let one_hot = |j: usize| if j == hot { 1.0 } else { 0.0 };
    let sum = || super::pairwise_sum(a.iter().map(|&v| gm::gap(v, m, inv_tau).exp()));
    match mode {
        Sample::Hard => {
            for (j, o) in y.iter_mut().enumerate() {
                *o = one_hot(j);
            }
        }
        Sample::Soft => {
            let s = sum();
            for (o, &v) in y.iter_mut().zip(a.iter()) {
                *o = soft(v, s);
            }
        }
        Sample::HardWithSoft(soft_row) => {
            let s = sum();
            for (j, ((o, so), &v)) in y
                .iter_mut()
                .zip(soft_row.iter_mut())
                .zip(a.iter())
                .enumerate()
            {
                *so = soft(v, s);
                *o = one_hot(j);
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// The noise, eight words at a time.
// ------------------------------------------------------------------------------------------------

/// The noise of one sample row, as [`gm::noise_row`] computes it (the same bits), with the
/// word -> Gumbel map eight words at a time on AVX2 CPUs. `words` is scratch of the row's length.
fn noise_row(key: [u32; 2], offset: u64, row: u32, words: &mut [u32], out: &mut [f32]) {
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        for (batch, chunk) in words.chunks_exact_mut(32).enumerate() {
            let chunk: &mut [u32; 32] = chunk.try_into().expect("chunks of 32");
            // SAFETY: the CPU supports AVX2, checked above.
            unsafe { avx2::philox_words(key, offset, row, 8 * batch as u32, chunk) };
        }
        done = words.len() / 32 * 32;
    }
    for (i, chunk) in words[done..].chunks_mut(4).enumerate() {
        let group = (done / 4 + i) as u32;
        let w = gm::philox4x32_10(gm::counter(group, row, offset), key);
        chunk.copy_from_slice(&w[..chunk.len()]);
    }
    gumbel_from_words(words, out);
}

/// `out[i] = gm::gumbel_from_word(words[i])`, eight at a time where the CPU has AVX2.
fn gumbel_from_words(words: &[u32], out: &mut [f32]) {
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        for (w, o) in words.chunks_exact(8).zip(out.chunks_exact_mut(8)) {
            let w: &[u32; 8] = w.try_into().expect("chunks of 8");
            let o: &mut [f32; 8] = o.try_into().expect("chunks of 8");
            // SAFETY: the CPU supports AVX2, checked above.
            unsafe { avx2::gumbel_from_words(w, o) };
        }
        done = words.len() / 8 * 8;
    }
    for (o, &w) in out[done..].iter_mut().zip(&words[done..]) {
        *o = gm::gumbel_from_word(w);
    }
}

/// [`gm::gumbel_from_word`] in eight AVX2 lanes, step for step: the same integer arithmetic
/// (32x32-bit products from `vpmuludq` on the even and odd lanes, the logarithm table read by
/// gathers, leading zeros from the exponent of an exact float conversion) and the same one
/// rounding of the Q.40 logarithm to f32 (through f64, exact below 2^51, then `vcvtpd2ps`). Both
/// paths of the scalar branch are computed and the lane's one is selected.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use crate::ops::gumbel as gm;
    use std::arch::x86_64::*;

    /// 1.5 · 2^52 as bits and as a double: adding an integer |v| < 2^51 to the bits gives the
    /// double 1.5 · 2^52 + v exactly.
    const MAGIC_BITS: i64 = 0x4338_0000_0000_0000;
    const MAGIC: f64 = 6_755_399_441_055_744.0;

    #[inline]
    #[target_feature(enable = "avx2")]
    fn splat(v: u32) -> __m256i {
        _mm256_set1_epi32(v as i32)
    }

    /// Leading zeros of each lane, for 1 <= v < 2^25 (other lanes get a value that is not used):
    /// v with bit 0 cleared has at most 24 significant bits, so its float conversion is exact and
    /// its exponent is floor(log2 v).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn leading_zeros(v: __m256i) -> __m256i {
        let exact = _mm256_max_epu32(_mm256_andnot_si256(splat(1), v), splat(1));
        let bits = _mm256_castps_si256(_mm256_cvtepi32_ps(exact));
        let log2 = _mm256_sub_epi32(_mm256_srli_epi32::<23>(bits), splat(127));
        _mm256_sub_epi32(splat(31), log2)
    }

    /// The even and odd lanes as four u64 each.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn widen(v: __m256i) -> (__m256i, __m256i) {
        (
            _mm256_and_si256(v, _mm256_set1_epi64x(0xffff_ffff)),
            _mm256_srli_epi64::<32>(v),
        )
    }

    /// The high 32 bits of each u64 of `widen`'s two halves, back in eight lanes.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn high_halves(even: __m256i, odd: __m256i) -> __m256i {
        _mm256_blend_epi32::<0b1010_1010>(_mm256_srli_epi64::<32>(even), odd)
    }

    /// ((a · b) >> S) as u32 per lane, with the full 64-bit product (S <= 32).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn mul_shr<const S: i32>(a: __m256i, b: __m256i) -> __m256i {
        let even = _mm256_srli_epi64::<S>(_mm256_mul_epu32(a, b));
        let odd = _mm256_srli_epi64::<S>(_mm256_mul_epu32(
            _mm256_srli_epi64::<32>(a),
            _mm256_srli_epi64::<32>(b),
        ));
        _mm256_blend_epi32::<0b1010_1010>(even, _mm256_slli_epi64::<32>(odd))
    }

    /// The high 32 bits of a · b per lane.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn mulhi(a: __m256i, b: __m256i) -> __m256i {
        mul_shr::<32>(a, b)
    }

    /// k · ln 2 in Q.40 as u64 (even and odd lanes), for 0 <= k < 2^8.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn times_ln2(k: __m256i) -> (__m256i, __m256i) {
        let lo = _mm256_set1_epi64x((gm::LN2_Q40 & 0xffff_ffff) as i64);
        let hi = _mm256_set1_epi64x((gm::LN2_Q40 >> 32) as i64);
        let (ke, ko) = widen(k);
        let mul = |k: __m256i| {
            _mm256_add_epi64(
                _mm256_mul_epu32(k, lo),
                _mm256_slli_epi64::<32>(_mm256_mul_epu32(k, hi)),
            )
        };
        (mul(ke), mul(ko))
    }

    /// [`gm::ln_q40`]: ln f in Q24.40 (even and odd lanes) for f in Q1.31.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn ln_q40(f31: __m256i) -> (__m256i, __m256i) {
        let i = _mm256_and_si256(_mm256_srli_epi32::<23>(f31), splat(0xff));
        // SAFETY (both gathers): i <= 255 indexes the 256-entry tables.
        let r = unsafe { _mm256_i32gather_epi32::<4>(gm::RECIP_Q24.as_ptr().cast(), i) };
        let neg_ln_r =
            unsafe { _mm256_i32gather_epi32::<4>(gm::NEG_LN_RECIP_Q32.as_ptr().cast(), i) };
        let t = mul_shr::<15>(f31, r);
        let q = _mm256_sub_epi32(splat(1 << 23), mulhi(t, splat(gm::THIRD_Q16)));
        let low = _mm256_sub_epi32(t, mulhi(t, mulhi(t, q)));
        let (ne, no) = widen(neg_ln_r);
        let (le, lo) = widen(low);
        (
            _mm256_add_epi64(_mm256_slli_epi64::<8>(ne), le),
            _mm256_add_epi64(_mm256_slli_epi64::<8>(no), lo),
        )
    }

    /// Signed Q.40 (|v| < 2^51) to f32 with one rounding, times −2^-40: four lanes.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn to_noise(v: __m256i) -> __m128 {
        let d = _mm256_sub_pd(
            _mm256_castsi256_pd(_mm256_add_epi64(v, _mm256_set1_epi64x(MAGIC_BITS))),
            _mm256_set1_pd(MAGIC),
        );
        _mm_mul_ps(_mm256_cvtpd_ps(d), _mm_set1_ps(gm::NEG_2_POW_M40))
    }

    /// [`gm::philox4x32_10`] for the eight counters of column groups `first..first + 8` of
    /// sample row `row`: words 4·(group − first) + j of `out` are word j of each group.
    #[target_feature(enable = "avx2")]
    pub fn philox_words(key: [u32; 2], offset: u64, row: u32, first: u32, out: &mut [u32; 32]) {
        let mut c = [
            _mm256_add_epi32(splat(first), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)),
            splat(row),
            splat(offset as u32),
            splat((offset >> 32) as u32),
        ];
        let mut k = key;
        let (m0, m1) = (splat(gm::PHILOX_M0), splat(gm::PHILOX_M1));
        for round in 0..10 {
            if round > 0 {
                k = [
                    k[0].wrapping_add(gm::PHILOX_W0),
                    k[1].wrapping_add(gm::PHILOX_W1),
                ];
            }
            let (hi0, lo0) = (mulhi(m0, c[0]), _mm256_mullo_epi32(m0, c[0]));
            let (hi1, lo1) = (mulhi(m1, c[2]), _mm256_mullo_epi32(m1, c[2]));
            c = [
                _mm256_xor_si256(_mm256_xor_si256(hi1, c[1]), splat(k[0])),
                lo1,
                _mm256_xor_si256(_mm256_xor_si256(hi0, c[3]), splat(k[1])),
                lo0,
            ];
        }
        let mut lanes = [[0u32; 8]; 4];
        for (lane, v) in lanes.iter_mut().zip(c) {
            // SAFETY: an unaligned 32-byte store into eight u32.
            unsafe { _mm256_storeu_si256(lane.as_mut_ptr().cast(), v) };
        }
        for g in 0..8 {
            for j in 0..4 {
                out[4 * g + j] = lanes[j][g];
            }
        }
    }

    #[target_feature(enable = "avx2")]
    pub fn gumbel_from_words(words: &[u32; 8], out: &mut [f32; 8]) {
        // SAFETY: an unaligned 32-byte load of eight u32.
        let w = unsafe { _mm256_loadu_si256(words.as_ptr().cast()) };
        let m = _mm256_or_si256(_mm256_srli_epi32::<7>(w), splat(1));
        let n = _mm256_sub_epi32(splat(1 << 25), m);
        let series = _mm256_cmpgt_epi32(splat(gm::SERIES_BELOW), n);

        // U = f·2^-k: E = k·ln 2 − ln f, normalised to x·2^(e − 31).
        let c = leading_zeros(m);
        let (ln_e, ln_o) = ln_q40(_mm256_sllv_epi32(m, c));
        let (k_e, k_o) = times_ln2(_mm256_sub_epi32(c, splat(6)));
        let (e40_e, e40_o) = (_mm256_sub_epi64(k_e, ln_e), _mm256_sub_epi64(k_o, ln_o));
        let cz = leading_zeros(high_halves(e40_e, e40_o));
        let (cz_e, cz_o) = widen(cz);
        let x_table = high_halves(
            _mm256_sllv_epi64(e40_e, cz_e),
            _mm256_sllv_epi64(e40_o, cz_o),
        );
        let e_table = _mm256_sub_epi32(splat(23), cz);

        // V < 2^-8: E = V·e^φ(V), V = n·2^-25 normalised.
        let c1 = leading_zeros(n);
        let x_series = _mm256_sllv_epi32(n, c1);
        let e_series = _mm256_sub_epi32(splat(6), c1);
        let v40 = _mm256_slli_epi32::<15>(n);
        let inner = _mm256_add_epi32(splat(gm::FIVE_24THS_Q32), _mm256_srli_epi32::<11>(v40));
        let half_plus = _mm256_add_epi32(splat(1 << 31), _mm256_srli_epi32::<8>(mulhi(v40, inner)));
        let phi = _mm256_and_si256(mulhi(v40, half_plus), series);

        let x = _mm256_blendv_epi8(x_table, x_series, series);
        let e = _mm256_blendv_epi8(e_table, e_series, series);

        // ln E = e·ln 2 + φ + ln(x/2^31), with e·ln 2 = (e + 32)·ln 2 − 32·ln 2 (e >= −25).
        let (lx_e, lx_o) = ln_q40(x);
        let (a_e, a_o) = times_ln2(_mm256_add_epi32(e, splat(32)));
        let (p_e, p_o) = widen(phi);
        let bias = _mm256_set1_epi64x(32 * gm::LN2_Q40 as i64);
        let sum = |a: __m256i, p: __m256i, l: __m256i| {
            _mm256_sub_epi64(_mm256_add_epi64(_mm256_add_epi64(a, p), l), bias)
        };
        let g_even = to_noise(sum(a_e, p_e, lx_e));
        let g_odd = to_noise(sum(a_o, p_o, lx_o));
        // SAFETY: two unaligned 16-byte stores into the eight floats of `out`.
        unsafe {
            _mm_storeu_ps(out.as_mut_ptr(), _mm_unpacklo_ps(g_even, g_odd));
            _mm_storeu_ps(out.as_mut_ptr().add(4), _mm_unpackhi_ps(g_even, g_odd));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::check::check_output;
    use crate::dtype::DType;
    use crate::engine::Engine;
    use crate::engine::cpu::CpuEngine;
    use crate::ops::gumbel as gm;
    use crate::ops::gumbel::GumbelOp;
    use crate::ops::{Op, OpRequest, Tensor};

    /// The eight-lane noise is the scalar function's bits for every uniform (U depends on w >> 7
    /// only: 2^25 words cover them all, 2^24 distinct m), on both paths of its branch; and whole
    /// rows, with the eight-lane Philox, are the shared `noise_row`'s bits.
    #[test]
    fn the_eight_lane_noise_is_the_scalar_noise_for_every_uniform() {
        let words: Vec<u32> = (0..1u32 << 25).map(|k| k << 7 | (k & 0x7f)).collect();
        let mut fast = vec![0.0f32; words.len()];
        super::gumbel_from_words(&words, &mut fast);
        let differ = words
            .iter()
            .zip(&fast)
            .filter(|&(&w, g)| gm::gumbel_from_word(w).to_bits() != g.to_bits())
            .count();
        assert_eq!(differ, 0, "words whose noise differs");
        // Whole rows, Philox included: lengths that end on the scalar paths (not a multiple of 32
        // words or of 8), a 64-bit offset and key, and a row number past 2^31.
        for (cols, key, offset, row) in [
            (13, [7, 9], 3, 5),
            (32, [0, 0], 0, 0),
            (1000, [u32::MAX, 1], u64::MAX - 1, 1 << 31 | 3),
            (8192, [0x243f_6a88, 0x85a3_08d3], 1 << 40, 77),
        ] {
            let mut got = vec![0.0f32; cols];
            let mut scratch = vec![0u32; cols];
            super::noise_row(key, offset, row, &mut scratch, &mut got);
            let mut want = vec![0.0f32; cols];
            gm::noise_row(key, offset, row, &mut want);
            assert!(
                got.iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "row of {cols}"
            );
        }
    }

    #[test]
    fn cpu_matches_the_reference_in_every_dtype() {
        let engine = CpuEngine::new();
        let x =
            Tensor::matrix(3, 5, (0..15).map(|i| (i % 7) as f32 * 0.7 - 2.0).collect()).unwrap();
        for dtype in DType::ALL {
            for op in [
                GumbelOp::GumbelNoise { seed: 3, offset: 9 },
                GumbelOp::GumbelSoftmax {
                    tau: 0.1,
                    hard: true,
                    return_soft: true,
                    seed: 3,
                    offset: 0,
                    draws: 2000,
                },
                GumbelOp::GumbelSoftmax {
                    tau: 0.3,
                    hard: true,
                    return_soft: false,
                    seed: 5,
                    offset: 2,
                    draws: 11,
                },
                GumbelOp::GumbelSoftmax {
                    tau: 10.0,
                    hard: false,
                    return_soft: true,
                    seed: 4,
                    offset: 1,
                    draws: 7,
                },
            ] {
                let req = OpRequest::new(Op::new(op), dtype, x.clone()).unwrap();
                let out = engine.run(&req).unwrap();
                let report = check_output(&req, &req.reference_full(), &out);
                assert!(report.passed, "{} {dtype}: {report}", req.op.describe());
            }
        }
    }
}
