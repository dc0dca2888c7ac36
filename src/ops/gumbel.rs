//! Gumbel topic: `gumbel_noise` and `gumbel_softmax`, drawn from one counter-based random number
//! generator (Philox4x32-10) that CUDA (`kernels/gumbel.cu`), WGSL (`shaders/gumbel.wgsl`) and the
//! CPU engine (`engine/cpu/gumbel.rs`, through the functions below) implement identically, so the
//! three engines draw the same sample for the same (seed, offset), bit for bit.
//!
//! # Random bits: Philox4x32-10 (Salmon et al., SC 2011; Random123)
//! [`philox4x32_10`] maps a 128-bit counter and a 64-bit key to 128 random bits (four 32-bit words)
//! in 10 rounds of two 32x32 -> 64-bit multiplications (multipliers 0xD2511F53, 0xCD9E8D57); the key
//! is bumped by the Weyl constants 0x9E3779B9, 0xBB67AE85 between rounds. Nothing is stored between
//! calls: any element's random word can be computed from (key, counter) alone, by any thread, in
//! any order, on any engine. Random123's known-answer vectors (its tests/kat_vectors; docs/numerics.md) prove all three
//! implementations.
//!
//! **Which bits each element uses.** The noise tensor is seen as rows (all axes but the last) of
//! `cols` values. Element (row s, column j) takes word `j % 4` of
//! `philox4x32_10(counter = [j / 4, s, offset_lo, offset_hi], key = [seed_lo, seed_hi])`: one Philox
//! call serves four neighbouring columns. `seed` (the key) picks the stream; `offset` (the last two
//! counter words) picks an independent block of it, as torch's Philox offset advances after each
//! random op. For gumbel_softmax, sample row s = r·draws + d (draw d of logits row r), so
//! `gumbel_softmax(l)` adds exactly `gumbel_noise` of shape [rows·draws, K] with the same seed and
//! offset.
//!
//! # From a word to Gumbel noise, bit-identical everywhere
//! U = (2·(w >> 8) + 1) / 2^25: the top 24 bits of the word, centred in their interval, so
//! U ∈ [2^-25, 1 − 2^-25] lies strictly inside (0, 1) (PyTorch issues #22442, #22586, #101620 were
//! NaNs from U at the boundary). w = 0 gives g = −2.852, w = 0xFFFFFFFF gives g = 17.33, both
//! finite. Then g = −ln(−ln U), the standard Gumbel.
//!
//! f32 logarithms differ between engines (CUDA's logf, WGSL's log on each driver, Rust's libm), and
//! at small τ one ULP of g moves the soft sample by about |g|/τ · 2^-24, more than softmax's 1e-6
//! tolerance. So [`gumbel_from_word`] evaluates −ln(−ln U) in **integer fixed point** (shifts, adds,
//! 32x32-bit products, one 256-entry table; the same steps in all three languages), and every
//! engine gets the same f32 g bit for bit. Both logarithms go through [`ln_q40`]: ln f for f ∈ [1, 2)
//! is −ln r_i + ln(1 + t), with r_i ≈ 1/f from the table (i = the 8 bits after f's leading 1),
//! t = f·r_i − 1 ∈ [0, 2^-8) exact, and ln(1 + t) = t − t²(1/2 − t/3): three `mulhi`, error below
//! 6e-11 ([`RECIP_Q24`] says how the table is chosen; a test regenerates it exactly).
//! 1. E = −ln U. Write U = f·2^-k (f ∈ [1, 2)): E = k·ln 2 − ln f, in Q24.40. Close to U = 1 this
//!    subtraction cancels and E would lose its relative precision, so for V = 1 − U < 2^-8 (V is
//!    exact) E = V·e^φ(V) with the short series φ(V) = V/2 + 5V²/24 + V³/8 ([`phi_q40`]).
//! 2. E = (x/2^31)·2^e·e^φ with x ∈ [2^31, 2^32) (φ = 0 away from U = 1), and
//!    ln E = e·ln 2 + ln(x/2^31) + φ with the same logarithm, in Q.40 (a signed 64-bit integer).
//! 3. g = −ln E: one correctly rounded conversion of that integer to f32 (CUDA `__ll2float_rn`, Rust
//!    `as f32`; WGSL has no 64-bit integers and adds two exact f32 halves, which rounds once too),
//!    then an exact scaling by −2^-40. Over all 2^24 inputs, |g − g_true| ≤ 0.5 ULP(g) + 4.9e-10
//!    (`tests` below); the 4.9e-10 is mostly the truncation of E to the 32 bits of x.
//!
//! Cost: about 57 GPU instructions per value (sm_90 code of the fast kernel's loop: 72.5 per value
//! with Philox, 41 per call for four values, and the load, compare and store), against several
//! hundred for the shift-and-add logarithm it replaced (two loops of 15 x 2 conditional steps).
//! The fast CUDA kernel draws each value's noise in the register where it is used and never
//! stores it.
//!
//! # gumbel_softmax, step by step (every engine)
//! Per sample row s (logits row r = s / draws), with l the logits (stored in the dtype, read as f32):
//! - a_j = f32(l_rj + g_sj): the perturbed logits; m = max_j a_j and k* = the first j with a_j = m.
//!   **k* is the Gumbel-max sample** (argmax of l + g): it is the hard output's hot class, whatever τ.
//! - d_j = max(f32(f32(a_j − m) · (1/τ)), −128), with 1/τ rounded to f32 once (a subtraction then a
//!   multiplication, each correctly rounded on every engine; WGSL's division may be 2.5 ULP off, and
//!   a multiply-then-subtract could be fused on a GPU). d_k* = 0, every d_j ≤ 0, so exp cannot
//!   overflow; e^-128 is already 0 in f32.
//! - soft_j = e^(d_j) / Σ_i e^(d_i) (f32, the sum accumulated in f32), rounded to the dtype: the
//!   soft sample softmax((l + g)/τ).
//! - hard: the main output is one_hot(k*) exactly (1 and 0), and the soft sample travels as the aux
//!   output "soft". This is the forward value of the straight-through estimator
//!   y_hard − stop_grad(y_soft) + y_soft; its gradient is y_soft's. torch takes argmax of y_soft,
//!   which is argmax of l + g: softmax keeps the order and τ > 0 does too.
//! - `return_soft=false` (hard mode only) drops the aux output: like torch's
//!   `F.gumbel_softmax(hard=True)`, the op returns one tensor, so it reads the logits once and writes
//!   the one-hot once (two passes over memory instead of three), and needs no e^d at all. In soft
//!   mode the soft sample is the main output and `return_soft` changes nothing.
//!
//! # The reference, and what the check can and cannot prove
//! - gumbel_noise: g = −ln(−ln U) in f64 from the same U (log1p for U > 1/2), checked with the
//!   storage dtype's tolerance and an absolute floor of 2^-23 (g near 0 is only absolutely
//!   accurate).
//! - gumbel_softmax, soft values: as for softmax's z = x/T, the perturbed logits a and the gaps d are
//!   part of the op's definition, formed in f32 from the f32 noise (that is what torch does:
//!   `(logits + gumbels) / tau` is an f32 tensor). The reference recomputes that noise and those d
//!   (the integer algorithm is exact and shared), then takes exp, the sum and the quotient in f64,
//!   so the soft check is exactly softmax's: rtol 1e-6 (f32) and a floor of 2^-30. The noise itself
//!   is checked against f64 by gumbel_noise.
//! - gumbel_softmax, hard values: the reference one-hot is argmax_j (l_rj + g_sj) **in f64**, g from
//!   the f64 −ln(−ln U), not the engines' f32 rule, so a one-hot row is really compared. The two can
//!   only disagree where the f64 top-two gap is within the f32 rounding of a: below
//!   2^-20·(2 + |l₁| + |g₁| + |l₂| + |g₂|) (|a_f32 − a_f64| ≤ 2^-22·(1 + |l| + |g|) per entry, a factor
//!   two to spare). In such a near-tie row the reference takes the f32 rule's class, and
//!   [`TopicOp::notes`] says how many rows that was (about 5 in a million for logits of order 1).
//!
//! # Errors, decided
//! τ ≤ 0 is an error (torch returns NaN at τ = 0, pytorch/pytorch issue 184031); τ is in [0.01, 100]. Logits must be
//! finite with |l| ≤ 1e30 (NaN and ±inf are errors that name the element: to mask a class, use a large
//! negative logit such as −1e4; beyond 1e30, (a − m)/τ could overflow f32). gumbel_noise ignores the
//! values of x (only its shape matters), so any values, even NaN, are accepted there.

use super::case::{Draw, BenchSpec, Case, Expect, Input};
use super::tolerance::Tolerance;
use super::{
    DTYPE_PARAM, InputDecl, MAX_ELEMENTS, Op, OpDef, OpError, OpKind, OpRequest, ParamKind,
    ParamSpec, ParamValues, Reference, Topic, TopicOp, check_float,
};
use crate::dtype::DType;
use serde::Serialize;

// ------------------------------------------------------------------------------------------------
// Philox4x32-10.
// ------------------------------------------------------------------------------------------------

/// Round multipliers (Random123 PHILOX_M4x32_0, PHILOX_M4x32_1).
pub const PHILOX_M0: u32 = 0xD251_1F53;
pub const PHILOX_M1: u32 = 0xCD9E_8D57;
/// Key schedule: the Weyl constants added to the key between rounds (PHILOX_W32_0, PHILOX_W32_1).
pub const PHILOX_W0: u32 = 0x9E37_79B9;
pub const PHILOX_W1: u32 = 0xBB67_AE85;

/// Random123's known-answer vectors (kat_vectors, philox4x32 with 10 rounds): counter, key, output.
pub const PHILOX_KAT: [([u32; 4], [u32; 2], [u32; 4]); 3] = [
    (
        [0, 0, 0, 0],
        [0, 0],
        [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8],
    ),
    (
        [0xffff_ffff; 4],
        [0xffff_ffff; 2],
        [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd],
    ),
    (
        [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
        [0xa409_3822, 0x299f_31d0],
        [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1],
    ),
];

/// The high and low halves of the 64-bit product a·b (CUDA: `__umulhi` and `a * b`; WGSL: four
/// 16x16-bit products).
pub fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let p = u64::from(a) * u64::from(b);
    ((p >> 32) as u32, p as u32)
}

fn philox_round(c: [u32; 4], k: [u32; 2]) -> [u32; 4] {
    let (hi0, lo0) = mulhilo(PHILOX_M0, c[0]);
    let (hi1, lo1) = mulhilo(PHILOX_M1, c[2]);
    [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0]
}

/// Philox4x32-10 as in Random123: ten rounds, the key bumped by the Weyl constants between them.
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = counter;
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k = [k[0].wrapping_add(PHILOX_W0), k[1].wrapping_add(PHILOX_W1)];
        }
        c = philox_round(c, k);
    }
    c
}

/// The Philox key of a seed: its low and high 32 bits.
pub fn key_of(seed: u64) -> [u32; 2] {
    [seed as u32, (seed >> 32) as u32]
}

/// The counter of column group `group` (= column / 4) of sample row `row`, at `offset`.
pub fn counter(group: u32, row: u32, offset: u64) -> [u32; 4] {
    [group, row, offset as u32, (offset >> 32) as u32]
}

// ------------------------------------------------------------------------------------------------
// Word -> uniform -> Gumbel.
// ------------------------------------------------------------------------------------------------

/// U = (2·(w >> 8) + 1) / 2^25, strictly inside (0, 1), exact in f64.
pub fn uniform_f64(w: u32) -> f64 {
    f64::from(((w >> 8) << 1) | 1) * 2f64.powi(-25)
}

/// The reference noise: −ln(−ln U) in f64 (−ln U through log1p where U > 1/2, so it keeps its
/// relative precision as U approaches 1).
pub fn gumbel_f64(w: u32) -> f64 {
    let m = ((w >> 8) << 1) | 1;
    let e = if m < 1 << 24 {
        -(f64::from(m) * 2f64.powi(-25)).ln()
    } else {
        let v = f64::from((1u32 << 25) - m) * 2f64.powi(-25);
        -(-v).ln_1p()
    };
    -e.ln()
}

/// ln 2 in Q24.40, rounded (ln 2 · 2^40 = 762123384785.9…).
pub const LN2_Q40: u64 = 762_123_384_786;

/// 1/3 in Q0.16, rounded: t/3 in Q0.24 is one `mulhi` of t in Q0.40 by it.
pub const THIRD_Q16: u32 = 21_845;

/// 5/24 in Q0.32, rounded: the second coefficient of φ(V) (see [`phi_q40`]).
pub const FIVE_24THS_Q32: u32 = 894_784_853;

/// n = 2^25 − m below this (V = 1 − U < 2^-8): −ln U comes from the series φ(V) instead of the
/// logarithm table, which cannot keep −ln U's relative precision there.
pub const SERIES_BELOW: u32 = 1 << 17;

/// Intervals of the logarithm table: f ∈ [1, 2) in 256 pieces [1 + i/256, 1 + (i + 1)/256).
pub const LN_TABLE_LEN: usize = 256;

/// r_i in Q0.24 for each interval i of the logarithm table: close to 1/(1 + i/256), such that
/// t = f·r_i − 1 ∈ [0, 2^-8) for every f of the interval, and picked (among the values that do that)
/// for an r_i whose −ln r_i is closest to a multiple of 2^-32 ([`NEG_LN_RECIP_Q32`] is then
/// accurate to about 2^-40 instead of 2^-33). Generated and checked by the tests below.
pub const RECIP_Q24: [u32; LN_TABLE_LEN] = [
    16777216, 16711936, 16647571, 16583254, 16519439, 16456765, 16393077, 16330773, 16269630,
    16207842, 16146511, 16087497, 16028629, 15968848, 15910441, 15850793, 15791918, 15733340,
    15677046, 15620272, 15563941, 15507047, 15453035, 15395509, 15340760, 15288306, 15234651,
    15177738, 15124779, 15070810, 15018264, 14969571, 14916165, 14862437, 14816101, 14761793,
    14711673, 14658937, 14613541, 14559908, 14517526, 14461314, 14415367, 14365268, 14319607,
    14270006, 14226191, 14181601, 14133478, 14083041, 14043889, 13998514, 13950526, 13901764,
    13862495, 13812433, 13769738, 13727238, 13678567, 13644626, 13595273, 13555428, 13508112,
    13471469, 13424227, 13384687, 13347796, 13300467, 13263811, 13215963, 13176435, 13137541,
    13099821, 13059662, 13018738, 12987015, 12947968, 12901204, 12865170, 12828028, 12792346,
    12754082, 12708702, 12679489, 12637215, 12604845, 12568658, 12531687, 12492703, 12454763,
    12414031, 12388440, 12351988, 12310645, 12273982, 12246407, 12203975, 12172138, 12135979,
    12109980, 12073465, 12036632, 11999651, 11965526, 11935068, 11909499, 11875243, 11841095,
    11803335, 11768702, 11743399, 11708517, 11681691, 11651823, 11614108, 11577703, 11550332,
    11525459, 11484711, 11466798, 11435112, 11397432, 11371567, 11334353, 11316267, 11285333,
    11252843, 11221245, 11185647, 11161125, 11131823, 11108888, 11072356, 11053129, 11012960,
    10993034, 10963386, 10935474, 10903185, 10875209, 10848709, 10830622, 10802732, 10771272,
    10750107, 10718626, 10690355, 10669313, 10635424, 10618824, 10586436, 10560352, 10529763,
    10512719, 10489967, 10463680, 10434496, 10401401, 10386344, 10359018, 10337753, 10304833,
    10286697, 10258051, 10231175, 10209732, 10180751, 10155743, 10132121, 10119440, 10090323,
    10064841, 10035038, 10024164, 9992019, 9978249, 9946705, 9922284, 9901987, 9876577, 9851110,
    9833337, 9813225, 9784735, 9776411, 9748308, 9732251, 9695426, 9677797, 9652305, 9642479,
    9609719, 9596898, 9566395, 9558442, 9530817, 9512897, 9497194, 9464365, 9454225, 9433727,
    9407355, 9390510, 9357921, 9352250, 9320770, 9298202, 9285712, 9267751, 9250547, 9229797,
    9211228, 9178437, 9170161, 9150477, 9133716, 9108662, 9080308, 9067294, 9043162, 9032796,
    9006772, 8999269, 8980959, 8955828, 8938816, 8925746, 8903265, 8876050, 8871845, 8850925,
    8832499, 8808325, 8790880, 8772797, 8754026, 8739641, 8727307, 8709200, 8687600, 8667272,
    8647468, 8640105, 8620985, 8600892, 8587067, 8556340, 8552221, 8532366, 8509336, 8489368,
    8471445, 8469667, 8453321, 8429407, 8413584,
];

/// −ln r_i in Q0.32, rounded (see [`RECIP_Q24`]). Generated and checked by the tests below.
pub const NEG_LN_RECIP_Q32: [u32; LN_TABLE_LEN] = [
    0, 16744277, 33318018, 49943531, 66503131, 82829031, 99482884, 115837559, 131948249, 148290516,
    164573639, 180300103, 196045241, 212093865, 227831759, 243963784, 259946390, 275907616,
    291302597, 306884938, 322401768, 338130791, 353116540, 369134967, 384435810, 399146571,
    414246465, 430321477, 445333920, 460686847, 475687879, 489635870, 504986154, 520484548,
    533895705, 549667710, 564275016, 579698573, 593019925, 608811835, 621332158, 637994592,
    651662439, 666615117, 680288711, 695191668, 708399335, 721882449, 736481519, 751836035,
    763793022, 777692281, 792441059, 807479780, 819629154, 835167759, 848464303, 861741127,
    876996331, 887666794, 903229976, 915836140, 930854196, 942520840, 957608983, 970278137,
    982132310, 997388593, 1009241836, 1024763556, 1037628745, 1050325312, 1062674593, 1075861530,
    1089341451, 1099819849, 1112752629, 1128292784, 1140305724, 1152723313, 1164686692, 1177552894,
    1192861968, 1202746007, 1217089550, 1228105146, 1240453216, 1253105580, 1266487336, 1279550882,
    1293620142, 1302483174, 1315139403, 1329539082, 1342349242, 1352009266, 1366916537, 1378135631,
    1390913407, 1400124418, 1413094518, 1426217373, 1439433419, 1451664988, 1462611677, 1471822837,
    1484194508, 1496562745, 1510280826, 1522901518, 1532145745, 1544922284, 1554774000, 1565769528,
    1579694166, 1593178099, 1603343909, 1612602856, 1627814522, 1634518723, 1646403358, 1660579134,
    1670337084, 1684415620, 1691274487, 1703031230, 1715414094, 1727491333, 1741138239, 1750564319,
    1761854993, 1770713083, 1784860521, 1792325158, 1807962250, 1815740271, 1827339363, 1838287987,
    1850988428, 1862022857, 1872501325, 1879667883, 1890742144, 1903268309, 1911716003, 1924311992,
    1935655184, 1944117369, 1957781210, 1964490125, 1977610031, 1988205492, 2000664300, 2007621981,
    2016927375, 2027703720, 2039699447, 2053343406, 2059565277, 2070880032, 2079705806, 2093404714,
    2100970305, 2112947450, 2124214992, 2133226042, 2145434927, 2155998065, 2165999686, 2171378480,
    2183754345, 2194614531, 2207351225, 2212007789, 2225802811, 2231725787, 2245324871, 2255882776,
    2264677549, 2275713252, 2286802235, 2294558051, 2303351489, 2315838881, 2319494220, 2331858193,
    2338938514, 2355220683, 2363037245, 2374365418, 2378739901, 2393356753, 2399090796, 2412763759,
    2416335855, 2428766778, 2436849848, 2443945436, 2458817591, 2463421631, 2472743793, 2484767195,
    2492464744, 2507396002, 2509999587, 2524480983, 2534892822, 2540666003, 2548981640, 2556961924,
    2566606832, 2575256381, 2590573291, 2594447718, 2603676891, 2611551230, 2623348615, 2636739104,
    2642899115, 2654345123, 2659271184, 2671663089, 2675242459, 2683989943, 2696025197, 2704191440,
    2710475975, 2721307222, 2734455943, 2736491152, 2746630736, 2755581389, 2767352563, 2775867235,
    2784711160, 2793910872, 2800974356, 2807039999, 2815960249, 2826625583, 2836687096, 2846511970,
    2850170534, 2859685554, 2869707553, 2876616801, 2892012994, 2894081078, 2904063949, 2915672315,
    2925762725, 2934839970, 2935741499, 2944038563, 2956206018, 2964275759,
];

/// The logarithm table as the GPU engines upload it: word pair i is (−ln r_i, r_i) (a `uint2` in
/// CUDA, a `vec2<u32>` in WGSL).
pub fn ln_table_words() -> Vec<u32> {
    NEG_LN_RECIP_Q32
        .iter()
        .zip(&RECIP_Q24)
        .flat_map(|(&neg_ln_r, &r)| [neg_ln_r, r])
        .collect()
}

/// ln f for f ∈ [1, 2) given in Q1.31 (2^31 ≤ f31), as Q24.40 (a u64).
///
/// i = the 8 bits of f after the leading 1; t = f·r_i − 1 ∈ [0, 2^-8), exact to 2^-40 (one 32x32-bit
/// product: f·r_i = 1 + t in Q.55, and the 2^40 of the 1 falls off the low 32 bits of Q.40);
/// ln f = −ln r_i + ln(1 + t) with ln(1 + t) = t − t²(1/2 − t/3) (the next term, t⁴/4, is below
/// 2^-34). Three `mulhi` in all.
pub fn ln_q40(f31: u32) -> u64 {
    let i = ((f31 >> 23) & 0xff) as usize;
    let t = ((u64::from(f31) * u64::from(RECIP_Q24[i])) >> 15) as u32; // Q0.40
    let q = (1 << 23) - mulhi(t, THIRD_Q16); // 1/2 − t/3 in Q0.24
    let t2q = mulhi(t, mulhi(t, q)); // t·(t·q): Q0.32, then Q0.40
    (u64::from(NEG_LN_RECIP_Q32[i]) << 8) + u64::from(t - t2q)
}

/// φ(V) = ln(−ln(1 − V)/V) = V/2 + 5V²/24 + V³/8 + … for V < 2^-8 given in Q0.40, as Q0.40. The
/// next term, 251V⁴/2880, is below 2^-35. So −ln U = V·e^φ(V) keeps its relative precision
/// however close U is to 1.
pub fn phi_q40(v40: u32) -> u32 {
    let inner = FIVE_24THS_Q32 + (v40 >> 11); // 5/24 + V/8 in Q0.32
    let half_plus = (1 << 31) + (mulhi(v40, inner) >> 8); // 1/2 + V·inner in Q0.32
    mulhi(v40, half_plus)
}

/// The high 32 bits of a·b.
fn mulhi(a: u32, b: u32) -> u32 {
    mulhilo(a, b).0
}

/// −2^-40 in f32: scales a Q.40 value and flips its sign (exact).
pub const NEG_2_POW_M40: f32 = f32::from_bits(0xab80_0000);

/// Gumbel noise g = −ln(−ln U) for the word `w`, in integer fixed point: the same bits on every
/// engine (see the module comment). Over all 2^24 uniforms, |g − g_true| ≤ 0.5 ULP + 4.9e-10.
pub fn gumbel_from_word(w: u32) -> f32 {
    let m = (w >> 7) | 1; // U = m / 2^25 = (2·(w >> 8) + 1) / 2^25
    let n = (1 << 25) - m; // V = 1 − U = n / 2^25, exact
    // E = −ln U = (x/2^31)·2^e·e^φ, x ∈ [2^31, 2^32) (φ = 0 but close to U = 1).
    let (x, e, phi) = if n < SERIES_BELOW {
        // V < 2^-8: E = V·e^φ(V), and V = n·2^-25 is exact: x = n normalised.
        let c = n.leading_zeros();
        (n << c, 6 - c as i32, phi_q40(n << 15))
    } else {
        // U = f·2^-k with f ∈ [1, 2): E = k·ln 2 − ln f (Q24.40; E ≥ V ≥ 2^-8), normalised.
        let c = m.leading_zeros();
        let e40 = u64::from(c - 6) * LN2_Q40 - ln_q40(m << c);
        let cz = ((e40 >> 32) as u32).leading_zeros();
        (((e40 << cz) >> 32) as u32, 23 - cz as i32, 0)
    };
    // ln E = e·ln 2 + ln(x/2^31) + φ in Q.40 (signed; |ln E| < 18), and g = −ln E: one correctly
    // rounded conversion to f32, then an exact scaling.
    let ln_e = i64::from(e) * LN2_Q40 as i64 + i64::from(phi) + ln_q40(x) as i64;
    ln_e as f32 * NEG_2_POW_M40
}

/// The noise of one sample row: element j from word j % 4 of Philox at counter
/// (j / 4, row, offset).
pub fn noise_row(key: [u32; 2], offset: u64, row: u32, out: &mut [f32]) {
    for (group, chunk) in out.chunks_mut(4).enumerate() {
        let words = philox4x32_10(counter(group as u32, row, offset), key);
        for (o, &w) in chunk.iter_mut().zip(&words) {
            *o = gumbel_from_word(w);
        }
    }
}

/// The same row of f64 reference noise.
pub fn noise_row_f64(key: [u32; 2], offset: u64, row: u32, out: &mut [f64]) {
    for (group, chunk) in out.chunks_mut(4).enumerate() {
        let words = philox4x32_10(counter(group as u32, row, offset), key);
        for (o, &w) in chunk.iter_mut().zip(&words) {
            *o = gumbel_f64(w);
        }
    }
}

// ------------------------------------------------------------------------------------------------
// The f32 steps of gumbel_softmax that every engine shares.
// ------------------------------------------------------------------------------------------------

/// 1/τ rounded to f32 once: the factor every engine multiplies the gaps by.
pub fn inv_tau_f32(tau: f64) -> f32 {
    (1.0 / tau) as f32
}

/// Lower clamp of the gaps d_j: e^-128 is 0 in f32.
pub const GAP_FLOOR: f32 = -128.0;

/// a_j = f32(l_j + g_j); returns (m = max a, k* = the first j with a_j = m): the Gumbel-max sample.
pub fn perturb_row(logits: &[f32], noise: &[f32], a: &mut [f32]) -> (f32, usize) {
    let mut m = f32::NEG_INFINITY;
    let mut arg = 0;
    for (j, ((o, &l), &g)) in a.iter_mut().zip(logits).zip(noise).enumerate() {
        *o = l + g;
        if *o > m {
            m = *o;
            arg = j;
        }
    }
    (m, arg)
}

/// d = max(f32(f32(a − m)·inv_tau), −128).
pub fn gap(a: f32, m: f32, inv_tau: f32) -> f32 {
    ((a - m) * inv_tau).max(GAP_FLOOR)
}

// ------------------------------------------------------------------------------------------------
// Statistics for the lesson's views and the tests.
// ------------------------------------------------------------------------------------------------

/// softmax of one row in f64.
pub fn softmax_f64(row: &[f64]) -> Vec<f64> {
    let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = row.iter().map(|&v| (v - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.into_iter().map(|v| v / s).collect()
}

/// Pearson's chi-square statistic of observed `counts` against probabilities `probs`:
/// Σ_j (O_j − N p_j)² / (N p_j) over the classes with p_j > 0. A count in a class of probability 0
/// makes it infinite.
pub fn chi_square(counts: &[u64], probs: &[f64]) -> f64 {
    let n: u64 = counts.iter().sum();
    let n = n as f64;
    counts
        .iter()
        .zip(probs)
        .map(|(&o, &p)| {
            let expected = n * p;
            if expected > 0.0 {
                (o as f64 - expected).powi(2) / expected
            } else if o > 0 {
                f64::INFINITY
            } else {
                0.0
            }
        })
        .sum()
}

/// The 0.999 quantile of the chi-square distribution with `dof` degrees of freedom: tabulated for
/// 1..=30 (13.82 for 2, 18.47 for 4), Wilson–Hilferty above (within 0.1% there).
pub fn chi_square_critical_999(dof: usize) -> f64 {
    const TABLE: [f64; 30] = [
        10.828, 13.816, 16.266, 18.467, 20.515, 22.458, 24.322, 26.124, 27.877, 29.588, 31.264,
        32.909, 34.528, 36.123, 37.697, 39.252, 40.790, 42.312, 43.820, 45.315, 46.797, 48.268,
        49.728, 51.179, 52.620, 54.052, 55.476, 56.892, 58.301, 59.703,
    ];
    match dof {
        0 => 0.0,
        1..=30 => TABLE[dof - 1],
        _ => {
            // x = k (1 − 2/(9k) + z √(2/(9k)))³ with z = Φ^-1(0.999) = 3.090232.
            let k = dof as f64;
            let h = 2.0 / (9.0 * k);
            k * (1.0 - h + 3.090_232 * h.sqrt()).powi(3)
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Parameters, inputs, the op.
// ------------------------------------------------------------------------------------------------

/// Largest seed and offset: whole numbers an f64 parameter holds exactly.
pub const MAX_SEED: f64 = 9_007_199_254_740_991.0; // 2^53 − 1
/// Most samples per logits row.
pub const MAX_DRAWS: usize = 1_000_000;
/// Largest logit magnitude: beyond it (a − m)/τ could overflow f32.
pub const MAX_LOGIT: f32 = 1e30;
/// Absolute floor of gumbel_noise's check: near g = 0 a relative bound means nothing (the integer
/// algorithm's g is within 0.5 ULP + 4.9e-10 everywhere).
pub const NOISE_FLOOR: f64 = 1.0 / 8_388_608.0; // 2^-23
/// Absolute floor of gumbel_softmax's check (softmax's floor for probabilities).
pub const SOFTMAX_FLOOR: f64 = 1.0 / 1_073_741_824.0; // 2^-30

const SEED: ParamSpec = ParamSpec {
    name: "seed",
    kind: ParamKind::Float {
        min: 0.0,
        max: MAX_SEED,
        default: 0.0,
        log_scale: false,
        integer: true,
    },
    help: "the Philox key (low and high 32 bits): the same seed and offset give the same noise on every engine",
};

const OFFSET: ParamSpec = ParamSpec {
    name: "offset",
    kind: ParamKind::Float {
        min: 0.0,
        max: MAX_SEED,
        default: 0.0,
        log_scale: false,
        integer: true,
    },
    help: "counter words 2 and 3 of Philox: each offset is an independent block of noise for the same seed (torch advances its Philox offset after every random op)",
};

const TAU: ParamSpec = ParamSpec {
    name: "tau",
    kind: ParamKind::Float {
        min: 0.01,
        max: 100.0,
        default: 1.0,
        log_scale: true,
        integer: false,
    },
    help: "temperature τ > 0 of the relaxation softmax((l + g)/τ): τ -> 0 makes soft samples one-hot, large τ flattens them; the argmax (the hard sample) does not depend on τ",
};

const HARD: ParamSpec = ParamSpec {
    name: "hard",
    kind: ParamKind::Bool { default: false },
    help: "output the one-hot of argmax(l + g) (the straight-through forward value) and keep the soft sample as the aux output 'soft'",
};

const RETURN_SOFT: ParamSpec = ParamSpec {
    name: "return_soft",
    kind: ParamKind::Bool { default: true },
    help: "hard mode: also return the soft sample as aux output 'soft' (false: the one-hot alone, as torch's F.gumbel_softmax(hard=True) returns; soft mode: the soft sample is the main output and this changes nothing)",
};

const DRAWS: ParamSpec = ParamSpec {
    name: "draws",
    kind: ParamKind::Float {
        min: 1.0,
        max: MAX_DRAWS as f64,
        default: 1.0,
        log_scale: true,
        integer: true,
    },
    help: "samples per logits row: the output has rows·draws rows of K; draw d of row r is output row r·draws + d",
};

const NOISE_INPUTS: &[InputDecl] = &[InputDecl::float(
    "x",
    "any tensor: only its shape is used (its values are ignored); the noise has the same shape",
)];

const LOGITS_INPUTS: &[InputDecl] = &[InputDecl::float(
    "x",
    "logits [rows, K]: K classes per row (all axes but the last are rows); finite, |l| <= 1e30",
)];

pub const GUMBEL_NOISE: OpKind = OpKind::new(&OpDef {
    name: "gumbel_noise",
    topic: "gumbel",
    summary: "Gumbel noise g = -ln(-ln U) from Philox4x32-10 (seed, offset), the same bits on every engine; x's values are ignored; output shape = x",
    inputs: NOISE_INPUTS,
    params: &[SEED, OFFSET, DTYPE_PARAM],
    draw: Draw::LOGITS,
});

pub const GUMBEL_SOFTMAX: OpKind = OpKind::new(&OpDef {
    name: "gumbel_softmax",
    topic: "gumbel",
    summary: "softmax((l + g)/tau) for logits x [rows, K], Gumbel noise g; hard: one-hot of argmax(l + g), soft sample as aux 'soft'; output shape = [rows*draws, K]",
    inputs: LOGITS_INPUTS,
    params: &[TAU, HARD, RETURN_SOFT, SEED, OFFSET, DRAWS, DTYPE_PARAM],
    draw: Draw::LOGITS,
});

/// The topic, as listed in [`super::TOPICS`].
pub static TOPIC: GumbelTopic = GumbelTopic;

/// The topic's registration: its two ops, their parsing, check cases and bench cases.
pub struct GumbelTopic;

impl Topic for GumbelTopic {
    fn name(&self) -> &'static str {
        "gumbel"
    }

    fn ops(&self) -> &'static [OpKind] {
        &[GUMBEL_NOISE, GUMBEL_SOFTMAX]
    }

    fn parse(&self, kind: OpKind, values: &ParamValues) -> Result<Op, OpError> {
        parse(kind, values).map(Op::new)
    }

    fn cases(&self, large: bool) -> Vec<Case> {
        suite_cases(large)
    }

    /// A hard sample without the soft one (`return_soft=false`), as torch's
    /// `F.gumbel_softmax(hard=True)` returns one tensor, with both kernels.
    fn bench(&self, size: (usize, usize), _gpu: bool) -> Vec<BenchSpec> {
        let (rows, cols) = size;
        BenchSpec::parsed(
            "gumbel_softmax",
            &[("tau", "0.5"), ("hard", "true"), ("return_soft", "false")],
            vec![rows, cols],
            true,
            5,
        )
        .into_iter()
        .collect()
    }
}

/// Resolve parsed `key=value` parameters into an op.
pub fn parse(kind: OpKind, values: &ParamValues) -> Result<GumbelOp, OpError> {
    let whole = |name: &'static str, default: f64| -> Result<u64, OpError> {
        let v = values.get_float(name).unwrap_or(default);
        check_float(name, v, kind)?;
        Ok(v as u64)
    };
    match kind.name() {
        "gumbel_noise" => Ok(GumbelOp::GumbelNoise {
            seed: whole("seed", 0.0)?,
            offset: whole("offset", 0.0)?,
        }),
        "gumbel_softmax" => {
            let tau = values.get_float("tau").unwrap_or(1.0);
            check_tau(tau)?;
            Ok(GumbelOp::GumbelSoftmax {
                tau,
                hard: values.get_bool("hard").unwrap_or(false),
                return_soft: values.get_bool("return_soft").unwrap_or(true),
                seed: whole("seed", 0.0)?,
                offset: whole("offset", 0.0)?,
                draws: whole("draws", 1.0)? as usize,
            })
        }
        other => Err(OpError::UnknownOp(other.into())),
    }
}

fn check_tau(tau: f64) -> Result<(), OpError> {
    if tau.is_finite() && tau <= 0.0 {
        return Err(OpError::BadParam {
            name: "tau".into(),
            reason: format!(
                "must be > 0 (got {}): softmax((l + g)/tau) divides by tau (torch returns NaN at tau = 0); as tau -> 0 the soft sample approaches the one-hot hard sample",
                super::fmt_number(tau)
            ),
        });
    }
    check_float("tau", tau, GUMBEL_SOFTMAX)
}

/// The ops of this topic, parameters resolved.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum GumbelOp {
    /// Gumbel noise with x's shape.
    GumbelNoise { seed: u64, offset: u64 },
    /// `draws` samples of softmax((l + g)/τ) per logits row; `hard`: one-hot main output, and the
    /// soft sample as aux "soft" unless `return_soft` is false (no effect in soft mode).
    GumbelSoftmax {
        tau: f64,
        hard: bool,
        return_soft: bool,
        seed: u64,
        offset: u64,
        draws: usize,
    },
}

impl GumbelOp {
    pub fn seed(&self) -> u64 {
        match *self {
            GumbelOp::GumbelNoise { seed, .. } | GumbelOp::GumbelSoftmax { seed, .. } => seed,
        }
    }

    pub fn offset(&self) -> u64 {
        match *self {
            GumbelOp::GumbelNoise { offset, .. } | GumbelOp::GumbelSoftmax { offset, .. } => offset,
        }
    }

    /// Samples per logits row (1 for the noise).
    pub fn draws(&self) -> usize {
        match *self {
            GumbelOp::GumbelNoise { .. } => 1,
            GumbelOp::GumbelSoftmax { draws, .. } => draws,
        }
    }

    /// Whether the main output is the one-hot.
    pub fn hard(&self) -> bool {
        matches!(self, GumbelOp::GumbelSoftmax { hard: true, .. })
    }

    /// Whether the op returns the soft sample as the aux output "soft": hard mode with
    /// `return_soft` (in soft mode the soft sample is the main output).
    pub fn soft_aux(&self) -> bool {
        matches!(
            self,
            GumbelOp::GumbelSoftmax {
                hard: true,
                return_soft: true,
                ..
            }
        )
    }
}

/// Name of gumbel_softmax's aux output in hard mode.
pub const SOFT_AUX: &str = "soft";

/// The f64 reference of one sample row of gumbel_softmax: the hot class and whether it was a
/// near tie (the soft values go to `soft`).
struct RowRef {
    near_tie: bool,
    hot: usize,
}

fn softmax_row_reference(
    logits: &[f32],
    noise32: &[f32],
    noise64: &[f64],
    inv_tau: f32,
    soft: &mut [f64],
) -> RowRef {
    let k = logits.len();
    let mut a = vec![0.0f32; k];
    let (m, hot32) = perturb_row(logits, noise32, &mut a);
    // Soft: e^d / Σ e^d in f64, d as the engines form it.
    let mut s = 0.0f64;
    for (o, &aj) in soft.iter_mut().zip(&a) {
        *o = f64::from(gap(aj, m, inv_tau)).exp();
        s += *o;
    }
    for o in soft.iter_mut() {
        *o /= s;
    }
    if noise64.is_empty() {
        // Soft mode: no class is compared.
        return RowRef {
            near_tie: false,
            hot: hot32,
        };
    }
    // Hard: argmax of l + g in f64, and the top-two gap.
    let a64 = |j: usize| f64::from(logits[j]) + noise64[j];
    let mut first = 0;
    for j in 1..k {
        if a64(j) > a64(first) {
            first = j;
        }
    }
    let mut second: Option<usize> = None;
    for j in 0..k {
        if j != first && second.is_none_or(|s| a64(j) > a64(s)) {
            second = Some(j);
        }
    }
    let near_tie = second.is_some_and(|s| {
        let bound = 2f64.powi(-20)
            * (2.0
                + f64::from(logits[first]).abs()
                + noise64[first].abs()
                + f64::from(logits[s]).abs()
                + noise64[s].abs());
        a64(first) - a64(s) <= bound
    });
    RowRef {
        near_tie,
        hot: if near_tie { hot32 } else { first },
    }
}

/// What the reference computes for a gumbel_softmax request: soft values, hot classes, near ties.
struct SoftmaxReference {
    soft: Vec<f64>,
    hot: Vec<usize>,
    near_ties: usize,
}

/// `hard`: also the f64 Gumbel-max classes (the soft values alone need only the f32 noise).
fn softmax_reference(
    req: &OpRequest,
    tau: f64,
    seed: u64,
    offset: u64,
    draws: usize,
    hard: bool,
) -> SoftmaxReference {
    let k = req.x.cols();
    let rows = req.x.rows();
    let samples = rows * draws;
    if k == 0 || samples == 0 {
        return SoftmaxReference {
            soft: Vec::new(),
            hot: Vec::new(),
            near_ties: 0,
        };
    }
    let key = key_of(seed);
    let inv_tau = inv_tau_f32(tau);
    let mut soft = vec![0.0f64; samples * k];
    let mut hot = vec![0usize; samples];
    let threads = if samples * k < 1 << 15 {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    };
    let per = samples.div_ceil(threads).max(1);
    let near: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = soft
            .chunks_mut(per * k)
            .zip(hot.chunks_mut(per))
            .enumerate()
            .map(|(chunk, (soft, hot))| {
                let logits = &req.x.data;
                scope.spawn(move || {
                    let mut g32 = vec![0.0f32; k];
                    let mut g64 = vec![0.0f64; if hard { k } else { 0 }];
                    let mut near = 0;
                    for (i, (out, h)) in soft.chunks_mut(k).zip(hot.iter_mut()).enumerate() {
                        let s = chunk * per + i;
                        let r = s / draws;
                        noise_row(key, offset, s as u32, &mut g32);
                        if hard {
                            noise_row_f64(key, offset, s as u32, &mut g64);
                        }
                        let row = softmax_row_reference(
                            &logits[r * k..(r + 1) * k],
                            &g32,
                            &g64,
                            inv_tau,
                            out,
                        );
                        *h = row.hot;
                        near += usize::from(row.near_tie);
                    }
                    near
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    SoftmaxReference {
        soft,
        hot,
        near_ties: near,
    }
}

fn noise_reference(req: &OpRequest, seed: u64, offset: u64) -> Vec<f64> {
    let cols = req.x.cols();
    let mut out = vec![0.0f64; req.x.len()];
    if cols == 0 {
        return out;
    }
    let key = key_of(seed);
    for (s, row) in out.chunks_mut(cols).enumerate() {
        noise_row_f64(key, offset, s as u32, row);
    }
    out
}

impl TopicOp for GumbelOp {
    fn kind(&self) -> OpKind {
        match self {
            GumbelOp::GumbelNoise { .. } => GUMBEL_NOISE,
            GumbelOp::GumbelSoftmax { .. } => GUMBEL_SOFTMAX,
        }
    }

    fn validate(&self) -> Result<(), OpError> {
        let kind = self.kind();
        let whole = |name: &str, v: u64| {
            if v as f64 > MAX_SEED {
                Err(OpError::BadParam {
                    name: name.into(),
                    reason: format!("{v} is outside [0, {MAX_SEED}] (2^53 - 1)"),
                })
            } else {
                check_float(name, v as f64, kind)
            }
        };
        whole("seed", self.seed())?;
        whole("offset", self.offset())?;
        if let GumbelOp::GumbelSoftmax { tau, draws, .. } = *self {
            check_tau(tau)?;
            check_float("draws", draws as f64, kind)?;
        }
        Ok(())
    }

    fn describe(&self) -> String {
        match *self {
            GumbelOp::GumbelNoise { seed, offset } => {
                format!("gumbel_noise seed={seed} offset={offset}")
            }
            GumbelOp::GumbelSoftmax {
                tau,
                hard,
                return_soft,
                seed,
                offset,
                draws,
            } => format!(
                "gumbel_softmax tau={tau} {} seed={seed} offset={offset} draws={draws}",
                match (hard, return_soft) {
                    (false, _) => "soft",
                    (true, true) => "hard",
                    (true, false) => "hard return_soft=false",
                }
            ),
        }
    }

    fn check_inputs(&self, req: &OpRequest) -> Result<(), OpError> {
        let GumbelOp::GumbelSoftmax { draws, .. } = *self else {
            // The noise takes x's shape; rows and columns fit the counter's 32-bit words because
            // the request holds at most 2^28 elements.
            return Ok(());
        };
        let bad = |reason: String| OpError::BadInput {
            name: "x".into(),
            reason,
        };
        let rows = req.x.rows();
        let k = req.x.cols();
        let samples = rows.checked_mul(draws).filter(|&s| s <= MAX_ELEMENTS);
        let total = samples.and_then(|s| s.checked_mul(k));
        match total {
            Some(n) if n <= MAX_ELEMENTS => {}
            _ => {
                return Err(bad(format!(
                    "{rows} row(s) x {draws} draws x {k} classes is more than the limit of {MAX_ELEMENTS} (2^28) output values"
                )));
            }
        }
        if let Some((i, v)) = req
            .x
            .data
            .iter()
            .enumerate()
            .find(|(_, v)| !v.is_finite() || v.abs() > MAX_LOGIT)
        {
            let (r, j) = (i / k.max(1), i % k.max(1));
            let why = if v.is_nan() {
                "NaN has no order, so argmax(l + g) is undefined".to_string()
            } else if v.is_infinite() {
                format!(
                    "{v} makes l + g infinite; to mask a class give it a large negative finite logit such as -1e4 (its probability underflows to 0)"
                )
            } else {
                format!("beyond ±{MAX_LOGIT:e}, (l + g - max)/tau could overflow f32")
            };
            return Err(bad(format!(
                "logit {j} of row {r} is {v}: gumbel_softmax needs finite logits with |l| <= 1e30 ({why})"
            )));
        }
        Ok(())
    }

    fn output_shape(&self, req: &OpRequest) -> Vec<usize> {
        match *self {
            GumbelOp::GumbelNoise { .. } => req.x.shape.clone(),
            GumbelOp::GumbelSoftmax { draws, .. } => {
                vec![req.x.rows().saturating_mul(draws), req.x.cols()]
            }
        }
    }

    fn reference(&self, req: &OpRequest) -> Reference {
        match *self {
            GumbelOp::GumbelNoise { seed, offset } => Reference {
                values: noise_reference(req, seed, offset),
                aux: Vec::new(),
            },
            GumbelOp::GumbelSoftmax {
                tau,
                hard,
                seed,
                offset,
                draws,
                ..
            } => {
                let r = softmax_reference(req, tau, seed, offset, draws, hard);
                if !hard {
                    return Reference {
                        values: r.soft,
                        aux: Vec::new(),
                    };
                }
                let k = req.x.cols();
                let mut one_hot = vec![0.0f64; r.soft.len()];
                for (row, &h) in one_hot.chunks_mut(k.max(1)).zip(&r.hot) {
                    row[h] = 1.0;
                }
                let aux = if self.soft_aux() {
                    vec![super::AuxReference {
                        name: SOFT_AUX.into(),
                        shape: self.output_shape(req),
                        values: r.soft,
                    }]
                } else {
                    Vec::new()
                };
                Reference {
                    values: one_hot,
                    aux,
                }
            }
        }
    }

    fn tolerance(&self, dtype: DType) -> Tolerance {
        match self {
            GumbelOp::GumbelNoise { .. } => Tolerance::for_dtype(dtype).with_floor(NOISE_FLOOR),
            GumbelOp::GumbelSoftmax { .. } => Tolerance::for_dtype(dtype).with_floor(SOFTMAX_FLOOR),
        }
    }

    fn notes(&self, req: &OpRequest) -> Vec<String> {
        match *self {
            GumbelOp::GumbelNoise { .. } => Vec::new(),
            GumbelOp::GumbelSoftmax { hard: false, .. } => Vec::new(),
            GumbelOp::GumbelSoftmax {
                tau,
                seed,
                offset,
                draws,
                ..
            } => {
                // Only a hard sample compares a class; the soft values use the shared f32 gaps.
                let near = softmax_reference(req, tau, seed, offset, draws, true).near_ties;
                if near == 0 {
                    return Vec::new();
                }
                let total = req.x.rows() * draws;
                let what = if near == 1 {
                    "draw is a near-tie: its"
                } else {
                    "draws are near-ties: their"
                };
                vec![format!(
                    "{near} of {total} {what} two largest l + g differ by less than f32 resolves (2^-20 of their size), so there the reference's one-hot takes the class the engines' f32 argmax picks (about 5 draws in a million)"
                )]
            }
        }
    }
}

/// This topic's cases for `kernelbook check`: every dtype, soft and hard, short rows (one thread per
/// sample) and long rows (one workgroup per sample), τ from 0.1 to 10, a few seeds and offsets; edge
/// rows (K = 1, equal logits, masked-like −1e4, large logits). `large`: [4096, 32000] on real GPUs.
pub fn suite_cases(large: bool) -> Vec<Case> {
    let mut out = Vec::new();
    let mut seed = 700u64;
    let mut next = || {
        seed += 1;
        seed
    };
    for dtype in DType::ALL {
        for (rows, cols) in [(0, 10), (10, 0), (31, 20), (33, 2049), (3, 7)] {
            let op = GumbelOp::GumbelNoise {
                seed: next(),
                offset: 0,
            };
            out.push(case(
                op,
                dtype,
                Input::Normal {
                    rows,
                    cols,
                    scale: 1.0,
                    seed: 1,
                },
            ));
        }
        out.push(case(
            GumbelOp::GumbelNoise {
                seed: u64::from(u32::MAX) + 5,
                offset: 1 << 40,
            },
            dtype,
            Input::Normal {
                rows: 4,
                cols: 33,
                scale: 1.0,
                seed: 1,
            },
        ));
        // (τ, hard, return_soft, rows, K, draws). The K cover every path of the GPU kernels: one
        // thread per sample row (K <= 64), one workgroup per row, the fast CUDA kernel with 1, 2, 4
        // and 8 groups of 4 values per thread (K up to 32768, with and without 16-byte loads) and
        // its streaming hard-only variant, and the simple kernel beyond 32768.
        for (tau, hard, return_soft, rows, cols, draws) in [
            (0.1, true, true, 3, 5, 300),
            (1.0, true, true, 2, 5, 500),
            (10.0, false, true, 2, 5, 200),
            (1.0, false, true, 31, 20, 3),
            (0.5, true, true, 4, 64, 4),
            (0.5, true, false, 4, 64, 4),
            (0.5, true, true, 5, 65, 3),
            (1.0, false, true, 3, 2049, 2),
            (1.0, true, false, 3, 2049, 2),
            (0.1, true, true, 2, 1000, 2),
            (0.2, true, false, 2, 1000, 3),
            (1.0, false, true, 2, 5000, 2),
            (0.5, true, true, 1, 12001, 2),
            (1.0, false, true, 1, 30000, 2),
            (1.0, true, true, 1, 40000, 1),
            (1.0, true, false, 1, 40000, 2),
            (1.0, false, true, 0, 10, 3),
            (1.0, true, true, 10, 0, 3),
        ] {
            let op = GumbelOp::GumbelSoftmax {
                tau,
                hard,
                return_soft,
                seed: next(),
                offset: if hard { 3 } else { 0 },
                draws,
            };
            out.push(case(
                op,
                dtype,
                Input::Normal {
                    rows,
                    cols,
                    scale: 2.0,
                    seed: next(),
                },
            ));
        }
        for hard in [false, true] {
            let op = GumbelOp::GumbelSoftmax {
                tau: 0.5,
                hard,
                return_soft: true,
                seed: next(),
                offset: 0,
                draws: 40,
            };
            let rows = vec![
                vec![0.0; 4],
                vec![3.0, 3.0, -1e4, 0.0],
                vec![1e4, -1e4, 9999.0, 0.0],
                vec![-3.0, 50.0, 49.0, -60000.0],
            ];
            out.push(case(op.clone(), dtype, Input::Rows(rows)));
            out.push(case(op, dtype, Input::Rows(vec![vec![1.5]])));
        }
        if large {
            let (rows, cols) = super::case::LARGE;
            for op in [
                GumbelOp::GumbelNoise {
                    seed: next(),
                    offset: 0,
                },
                // What `kernelbook bench` times and torch's F.gumbel_softmax(hard=True) returns.
                GumbelOp::GumbelSoftmax {
                    tau: 0.5,
                    hard: true,
                    return_soft: false,
                    seed: next(),
                    offset: 0,
                    draws: 1,
                },
            ] {
                let mut c = case(
                    op,
                    dtype,
                    Input::Normal {
                        rows,
                        cols,
                        scale: 3.0,
                        seed: next(),
                    },
                );
                c.large = true;
                out.push(c);
            }
        }
    }
    out
}

fn case(op: GumbelOp, dtype: DType, input: Input) -> Case {
    let (rows, cols) = input.shape();
    let shape = match &input {
        Input::Rows(_) => "rows".to_string(),
        _ => format!("{rows}x{cols}"),
    };
    Case::new(
        format!("{} {shape}", op.describe()),
        Op::new(op),
        dtype,
        input,
        Expect::Match,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{Op, Tensor};

    #[test]
    fn philox_matches_random123_known_answers() {
        for (ctr, key, want) in PHILOX_KAT {
            assert_eq!(
                philox4x32_10(ctr, key),
                want,
                "ctr {ctr:08x?} key {key:08x?}"
            );
        }
    }

    #[test]
    fn mulhilo_is_the_64_bit_product() {
        assert_eq!(mulhilo(0xffff_ffff, 0xffff_ffff), (0xffff_fffe, 1));
        assert_eq!(mulhilo(PHILOX_M0, 0), (0, 0));
        assert_eq!(mulhilo(1 << 31, 4), (2, 0));
    }

    /// −ln(num/2^24) in Q0.62 for num ∈ (2^23, 2^24], as 2·atanh(z) with
    /// z = (2^24 − num)/(2^24 + num) ≤ 1/3, in integer fixed point: a few units of 2^-62 off, and the
    /// same on every platform (f64's ln may differ in its last bit between libraries).
    fn neg_ln_q62(num: u64) -> u128 {
        let one = 1u128 << 24;
        let num = u128::from(num);
        atanh_q62(((one - num) << 62) / (one + num)) * 2
    }

    /// atanh(z) = z + z³/3 + z⁵/5 + … for z ≤ 1/3 in Q0.62.
    fn atanh_q62(z: u128) -> u128 {
        let z2 = (z * z) >> 62;
        let (mut term, mut sum, mut k) = (z, 0u128, 1u128);
        while term > 0 {
            sum += term / k;
            term = (term * z2) >> 62;
            k += 2;
        }
        sum
    }

    /// The logarithm table by the rule [`RECIP_Q24`] states: for each interval i, every R (r =
    /// R/2^24) with f·r − 1 ∈ [0, 2^-8) in Q0.40 for the interval's first and last f31, keeping the
    /// one whose −ln r is nearest to a multiple of 2^-32 (the smaller R on a tie). Returns
    /// (R, −ln r rounded to Q0.32, its rounding error in units of 2^-62).
    fn generate_ln_table() -> Vec<(u32, u32, u128)> {
        let grid = 1u128 << 30; // 2^-32 in Q0.62
        (0..LN_TABLE_LEN as u64)
            .map(|i| {
                let f_first = (1u64 << 31) + (i << 23);
                let f_last = f_first + (1 << 23) - 1;
                let r_min = (1u64 << 55).div_ceil(f_first); // t >= 0 at the first f
                let r_max = ((1u64 << 55) + (1 << 47) - 1) / f_last; // t < 2^-8 at the last f
                let mut best: Option<(u32, u32, u128)> = None;
                for r in r_min..=r_max {
                    let v = neg_ln_q62(r);
                    let below = v % grid;
                    let (q, err) = if below <= grid / 2 {
                        (v / grid, below)
                    } else {
                        (v / grid + 1, grid - below)
                    };
                    if best.is_none_or(|b| err < b.2) {
                        best = Some((r as u32, q as u32, err));
                    }
                }
                best.expect("every interval has a valid r")
            })
            .collect()
    }

    #[test]
    fn constants_are_the_rounded_values() {
        assert_eq!(
            u128::from(LN2_Q40),
            (atanh_q62((1 << 62) / 3) * 2 + (1 << 21)) >> 22
        );
        assert_eq!(THIRD_Q16, ((1u32 << 16) + 1) / 3); // 21845.33 -> 21845
        assert_eq!(FIVE_24THS_Q32, ((5u64 << 32) as f64 / 24.0).round() as u32);
        assert_eq!(NEG_2_POW_M40, -(2f32.powi(-40)));
        assert_eq!(SERIES_BELOW, 1 << (25 - 8)); // n < 2^17 <=> V < 2^-8
    }

    /// The committed logarithm table is the one the rule generates; −ln r_i is within 2^-35 of its
    /// Q0.32 value everywhere and within 2^-39 for all but the first few intervals (where r_i has
    /// little room to choose from); every t = f·r_i − 1 of the interval lies in [0, 2^-8).
    #[test]
    fn ln_table_is_generated_by_its_rule() {
        let generated = generate_ln_table();
        let recip: Vec<u32> = generated.iter().map(|g| g.0).collect();
        let neg_ln: Vec<u32> = generated.iter().map(|g| g.1).collect();
        if recip != RECIP_Q24 || neg_ln != NEG_LN_RECIP_Q32 {
            let rows = |v: &[u32]| {
                v.chunks(8)
                    .map(|c| {
                        format!(
                            "    {},",
                            c.iter()
                                .map(|x| x.to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            panic!(
                "the committed table differs from the generated one:\nRECIP_Q24:\n{}\nNEG_LN_RECIP_Q32:\n{}",
                rows(&recip),
                rows(&neg_ln)
            );
        }
        let unit = 2f64.powi(-62);
        let worst = generated.iter().map(|g| g.2).max().unwrap_or(0) as f64 * unit;
        let worst_after_8 = generated[8..].iter().map(|g| g.2).max().unwrap_or(0) as f64 * unit;
        println!("table: worst error {worst:e}, after interval 8 {worst_after_8:e}");
        assert!(worst < 2f64.powi(-35), "{worst:e}");
        assert!(worst_after_8 < 2f64.powi(-39), "{worst_after_8:e}");
        for (i, &r) in RECIP_Q24.iter().enumerate() {
            let first = (1u64 << 31) + ((i as u64) << 23);
            let last = first + (1 << 23) - 1;
            assert!(first * u64::from(r) >= 1 << 55, "t < 0 at interval {i}");
            assert!(
                (last * u64::from(r)) >> 15 < (1 << 40) + (1 << 32),
                "t >= 2^-8 at interval {i}"
            );
        }
        let words = ln_table_words();
        assert_eq!(words.len(), 2 * LN_TABLE_LEN);
        assert_eq!((words[2], words[3]), (NEG_LN_RECIP_Q32[1], RECIP_Q24[1]));
    }

    /// ln_q40 on 2^24 values of f ∈ [1, 2) (every 128th Q1.31 value, plus low bits): within 6e-11
    /// of ln f (the Taylor remainder t⁴/4 < 2^-34 = 5.8e-11 where t approaches 2^-8, plus a little).
    #[test]
    fn fixed_point_log_is_accurate_to_6e_11() {
        let mut worst = 0.0f64;
        for k in 0..(1u32 << 24) {
            let f31 = (1 << 31) | (k << 7) | (k & 0x7f);
            let f = f64::from(f31) * 2f64.powi(-31);
            let got = ln_q40(f31) as f64 * 2f64.powi(-40);
            worst = worst.max((got - f.ln()).abs());
        }
        println!("max |ln_q40 - ln| = {worst:e}");
        assert!(worst < 6e-11, "max |ln_q40 - ln| = {worst:e}");
    }

    /// φ(V) for every V = n·2^-25 below 2^-8: within 2.5e-11 of ln(−ln(1 − V)/V).
    #[test]
    fn series_near_one_is_accurate() {
        let mut worst = 0.0f64;
        for n in 1..SERIES_BELOW {
            let v = f64::from(n) * 2f64.powi(-25);
            let want = (-(-v).ln_1p() / v).ln();
            let got = f64::from(phi_q40(n << 15)) * 2f64.powi(-40);
            worst = worst.max((got - want).abs());
        }
        println!("max |phi_q40 - phi| = {worst:e}");
        assert!(worst < 2.5e-11, "{worst:e}");
    }

    /// Every one of the 2^24 possible uniforms: g is within 0.5 ULP + 5e-10 of −ln(−ln U) in f64,
    /// finite at both ends (measured: 0.5 ULP + 4.91e-10, at g = −0.00196).
    #[test]
    fn gumbel_from_word_is_accurate_for_every_uniform() {
        let mut worst_abs = 0.0f64;
        let mut worst_excess = 0.0f64; // |error| - half an ULP of the result, in absolute terms
        for k in 0..(1u32 << 24) {
            let w = k << 8;
            let got = gumbel_from_word(w);
            assert!(got.is_finite(), "w = {w:#x}");
            let want = gumbel_f64(w);
            let err = (f64::from(got) - want).abs();
            worst_abs = worst_abs.max(err);
            let half_ulp = f64::from(got.abs()).max(f64::MIN_POSITIVE) * 2f64.powi(-24);
            worst_excess = worst_excess.max(err - half_ulp);
        }
        println!("max abs error {worst_abs:e}, max beyond half an ULP {worst_excess:e}");
        assert!(worst_abs < 1e-6, "max abs error {worst_abs:e}");
        assert!(
            worst_excess < 5e-10,
            "error beyond half an ULP: {worst_excess:e}"
        );
    }

    #[test]
    fn extreme_words_give_finite_noise() {
        let lo = gumbel_from_word(0);
        let hi = gumbel_from_word(u32::MAX);
        assert!(
            (f64::from(lo) - -(25.0 * std::f64::consts::LN_2).ln()).abs() < 1e-6,
            "{lo}"
        );
        assert!(
            (f64::from(hi) - 25.0 * std::f64::consts::LN_2).abs() < 1e-5,
            "{hi}"
        );
        assert!((uniform_f64(0) - 2f64.powi(-25)).abs() == 0.0);
        assert!((uniform_f64(u32::MAX) - (1.0 - 2f64.powi(-25))).abs() == 0.0);
        assert!(gumbel_f64(0).is_finite() && gumbel_f64(u32::MAX).is_finite());
        // The low 8 bits are not used.
        assert_eq!(gumbel_from_word(0x1234_56ff), gumbel_from_word(0x1234_5600));
    }

    #[test]
    fn noise_has_the_gumbel_mean_and_variance() {
        let n = 1 << 20;
        let mut g = vec![0.0f32; n];
        noise_row(key_of(42), 0, 0, &mut g);
        let mean = g.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
        let var = g
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n as f64;
        // Euler–Mascheroni 0.5772, π²/6 = 1.6449; standard errors 1.3e-3 and 3e-3.
        assert!((mean - 0.577_215_7).abs() < 6e-3, "mean {mean}");
        assert!((var - 1.644_934).abs() < 1.5e-2, "variance {var}");
    }

    #[test]
    fn critical_values() {
        assert!((chi_square_critical_999(2) - 13.82).abs() < 0.01);
        assert!((chi_square_critical_999(4) - 18.47).abs() < 0.01);
        assert!((chi_square_critical_999(20) - 45.315).abs() < 1e-3);
        // Wilson–Hilferty beyond the table: chi2_{0.999}(50) = 86.661, (100) = 149.449.
        assert!((chi_square_critical_999(50) - 86.661).abs() / 86.661 < 1e-3);
        assert!((chi_square_critical_999(100) - 149.449).abs() / 149.449 < 1e-3);
        assert_eq!(chi_square(&[50, 50], &[0.5, 0.5]), 0.0);
        assert!((chi_square(&[60, 40], &[0.5, 0.5]) - 4.0).abs() < 1e-12);
        assert!(chi_square(&[1, 9], &[0.0, 1.0]).is_infinite());
    }

    fn softmax_req(x: Tensor, tau: f64, hard: bool, draws: usize) -> OpRequest {
        OpRequest::new(
            Op::new(GumbelOp::GumbelSoftmax {
                tau,
                hard,
                return_soft: true,
                seed: 7,
                offset: 0,
                draws,
            }),
            DType::F32,
            x,
        )
        .unwrap()
    }

    #[test]
    fn reference_hard_is_one_hot_and_soft_sums_to_one() {
        let req = softmax_req(Tensor::row(vec![2.0, 1.0, 0.1, -1.0]), 0.5, true, 50);
        assert_eq!(req.output_shape(), vec![50, 4]);
        let r = req.reference_full();
        assert_eq!(r.aux.len(), 1);
        assert_eq!(r.aux[0].name, SOFT_AUX);
        for (hard, soft) in r.values.chunks(4).zip(r.aux[0].values.chunks(4)) {
            assert_eq!(hard.iter().filter(|&&v| v == 1.0).count(), 1);
            assert_eq!(hard.iter().filter(|&&v| v == 0.0).count(), 3);
            assert!((soft.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            let top = (0..4).max_by(|&a, &b| soft[a].total_cmp(&soft[b])).unwrap();
            assert_eq!(hard[top], 1.0);
        }
    }

    #[test]
    fn hard_sample_does_not_depend_on_tau() {
        let x = Tensor::row(vec![0.5, 0.0, -0.5, 1.0, 0.2]);
        let at = |tau| softmax_req(x.clone(), tau, true, 200).reference();
        let base = at(1.0);
        for tau in [0.01, 0.1, 10.0, 100.0] {
            assert_eq!(at(tau), base, "tau = {tau}");
        }
    }

    #[test]
    fn softmax_noise_is_gumbel_noise_of_the_output_shape() {
        let x = Tensor::matrix(2, 3, vec![0.0; 6]).unwrap();
        let noise = OpRequest::new(
            Op::new(GumbelOp::GumbelNoise { seed: 7, offset: 0 }),
            DType::F32,
            Tensor::matrix(8, 3, vec![0.0; 24]).unwrap(),
        )
        .unwrap()
        .reference();
        // With equal logits the hot class of each sample is the argmax of its noise row.
        let hard = softmax_req(x, 1.0, true, 4).reference();
        for (g, h) in noise.chunks(3).zip(hard.chunks(3)) {
            let top = (0..3).max_by(|&a, &b| g[a].total_cmp(&g[b])).unwrap();
            assert_eq!(h[top], 1.0);
        }
    }

    #[test]
    fn bad_params_and_inputs_are_clear_errors() {
        let p = |kv: &[(&str, &str)]| {
            Op::parse(
                "gumbel_softmax",
                &kv.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<Vec<_>>(),
            )
        };
        for tau in ["0", "-1"] {
            let e = p(&[("tau", tau)]).unwrap_err().to_string();
            assert!(e.contains("must be > 0") && e.contains("NaN"), "{e}");
        }
        assert!(
            p(&[("tau", "nan")])
                .unwrap_err()
                .to_string()
                .contains("finite")
        );
        assert!(
            p(&[("tau", "1000")])
                .unwrap_err()
                .to_string()
                .contains("outside")
        );
        assert!(
            p(&[("draws", "0")])
                .unwrap_err()
                .to_string()
                .contains("outside")
        );
        assert!(
            p(&[("draws", "2.5")])
                .unwrap_err()
                .to_string()
                .contains("whole")
        );
        assert!(
            p(&[("seed", "-1")])
                .unwrap_err()
                .to_string()
                .contains("outside")
        );
        let (op, _) = p(&[
            ("tau", "0.5"),
            ("hard", "true"),
            ("seed", "9"),
            ("draws", "3"),
        ])
        .unwrap();
        assert_eq!(
            op,
            Op::new(GumbelOp::GumbelSoftmax {
                tau: 0.5,
                hard: true,
                return_soft: true,
                seed: 9,
                offset: 0,
                draws: 3
            })
        );
        let bad = GumbelOp::GumbelSoftmax {
            tau: 0.0,
            hard: false,
            return_soft: true,
            seed: 0,
            offset: 0,
            draws: 1,
        };
        assert!(bad.validate().is_err());
        for v in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 2e30] {
            let e = OpRequest::new(
                Op::new(GumbelOp::GumbelSoftmax {
                    tau: 1.0,
                    hard: false,
                    return_soft: true,
                    seed: 0,
                    offset: 0,
                    draws: 1,
                }),
                DType::F32,
                Tensor::matrix(2, 2, vec![0.0, 1.0, v, 0.0]).unwrap(),
            )
            .unwrap_err()
            .to_string();
            assert!(
                e.contains("logit 0 of row 1") && e.contains("finite"),
                "{e}"
            );
        }
        // Too many output values.
        let e = OpRequest::new(
            Op::new(GumbelOp::GumbelSoftmax {
                tau: 1.0,
                hard: false,
                return_soft: true,
                seed: 0,
                offset: 0,
                draws: MAX_DRAWS,
            }),
            DType::F32,
            Tensor::matrix(1, 1000, vec![0.0; 1000]).unwrap(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("limit"), "{e}");
        // The noise ignores x's values.
        assert!(
            OpRequest::new(
                Op::new(GumbelOp::GumbelNoise { seed: 0, offset: 0 }),
                DType::F32,
                Tensor::row(vec![f32::NAN, f32::INFINITY]),
            )
            .is_ok()
        );
    }

    #[test]
    fn suite_cases_are_valid_requests() {
        for c in suite_cases(false) {
            c.request().unwrap_or_else(|e| panic!("{}: {e}", c.name));
        }
        assert!(suite_cases(false).iter().all(|c| !c.large));
        let large: Vec<Case> = suite_cases(true).into_iter().filter(|c| c.large).collect();
        assert_eq!(large.len(), 6);
        assert!(large.iter().all(|c| c.input.shape() == crate::suite::LARGE));
    }
}
