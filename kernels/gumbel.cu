// gumbel.cu: Gumbel noise and Gumbel-softmax samples from the counter-based generator
// Philox4x32-10, in f32 / f16 / bf16 storage.
//
// Compiled at run time by NVRTC (src/engine/cuda/gumbel.rs) and shown in the app next to its
// results. Every engine computes exactly the algorithm in src/ops/gumbel.rs:
//   random bits:  element (row s, column j) takes word j % 4 of philox4x32_10 at
//                 counter = (j / 4, s, offset_lo, offset_hi), key = (seed_lo, seed_hi)
//   noise:        U = (2 (w >> 8) + 1) / 2^25 in (0, 1);  g = -ln(-ln U) in integer fixed point,
//                 the same f32 bits as the WGSL shader and the CPU (logf is not used: its last bit
//                 differs between libraries)
//   sampling:     per sample row s (logits row r = s / draws):
//                 a_j = l_rj + g_sj;  m = max_j a_j;  hot = first j with a_j = m   (Gumbel-max)
//                 d_j = max((a_j - m) * (1/tau), -128);  soft_j = e^(d_j) / sum_i e^(d_i)
//                 hard: y = one_hot(hot), and the soft sample goes to `soft`
// Compiled with --fmad=false: every product is rounded before it is added, as in the CPU engine.
//
// Entry points: gumbel_{f32,f16,bf16}(..., mode) with
//   MODE_NOISE          one thread per Philox call (4 neighbouring columns of a row)
//   MODE_SOFTMAX_SHORT  rows of K <= SHORT_K: one thread per sample row, a_j kept in an array
//   MODE_SOFTMAX_ROWS   longer rows: one block of THREADS per sample row, tree reductions, a_j
//                       parked in an f32 scratch buffer between the passes
// and, for the tests, philox_kat (raw Philox blocks) and gumbel_words (the word -> g map).

#define THREADS 256
#define SHORT_K 64

// Modes: must match the MODE_* constants in src/engine/cuda/gumbel.rs.
#define MODE_NOISE         0
#define MODE_SOFTMAX_SHORT 1
#define MODE_SOFTMAX_ROWS  2

#define KB_LOWEST_F32 (-3.4028234663852886e38f)
#define GAP_FLOOR (-128.0f)

// ---------------------------------------------------------------------------------------------
// step 1: Philox4x32-10 (Salmon et al. 2011; Random123).
// ---------------------------------------------------------------------------------------------

#define PHILOX_M0 0xD2511F53u  // round multipliers
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u  // Weyl constants: the key schedule
#define PHILOX_W1 0xBB67AE85u

// Ten rounds; the key is bumped between rounds. Round: two 32x32 -> 64-bit products
// (__umulhi gives the high half), the high halves XOR-ed with the other words and the key.
__device__ __noinline__ uint4 philox(uint4 c, unsigned int k0, unsigned int k1) {
    for (int round = 0; round < 10; ++round) {
        if (round > 0) {
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        unsigned int hi0 = __umulhi(PHILOX_M0, c.x), lo0 = PHILOX_M0 * c.x;
        unsigned int hi1 = __umulhi(PHILOX_M1, c.z), lo1 = PHILOX_M1 * c.z;
        c = make_uint4(hi1 ^ c.y ^ k0, lo1, hi0 ^ c.w ^ k1, lo0);
    }
    return c;
}

__device__ __forceinline__ unsigned int word_of(uint4 w, unsigned int i) {
    return i == 0 ? w.x : i == 1 ? w.y : i == 2 ? w.z : w.w;
}

// ---------------------------------------------------------------------------------------------
// step 2: word -> Gumbel noise g = -ln(-ln U), in integer fixed point (bit-identical to
// gumbel_from_word in src/ops/gumbel.rs and shaders/gumbel.wgsl).
// ---------------------------------------------------------------------------------------------

#define LN2_Q32 0xB17217F8u  // ln 2 in Q0.32

// -ln(1 - 2^-k) in Q0.32 for k = 2..16.
__constant__ unsigned int LN_TABLE[15] = {
    1235585093u, 573512964u, 277190838u, 136359621u, 67638678u, 33686191u, 16810070u,
    8396811u, 4196353u, 2097664u, 1048704u, 524320u, 262152u, 131074u, 65537u};

// 1/(i + 2) in Q0.32 for i = 0..13: -ln(1 - V) = V + V^2 sum_i V^i/(i + 2).
__constant__ unsigned int SERIES[14] = {
    2147483648u, 1431655765u, 1073741824u, 858993459u, 715827883u, 613566757u, 536870912u,
    477218588u, 429496730u, 390451572u, 357913941u, 330382100u, 306783378u, 286331153u};

// ln f for f in [1, 2) given in Q1.31, as Q0.32: shift-and-add (multiply by 1 - 2^-k while the
// product stays >= 1, add -ln(1 - 2^-k)); ln of the remaining 1 + r, r < 2^-16, is r.
__device__ __noinline__ unsigned int ln_q32(unsigned int x) {
    unsigned int acc = 0u;
#pragma unroll 1
    for (unsigned int k = 2u; k <= 16u; ++k) {
#pragma unroll
        for (int rep = 0; rep < 2; ++rep) {
            unsigned int t = x - ((x >> k) + ((x >> (k - 1u)) & 1u));
            if (t >= 0x80000000u) {
                x = t;
                acc += LN_TABLE[k - 2u];
            }
        }
    }
    return acc + ((x - 0x80000000u) << 1);
}

// E = -ln U for U = m / 2^25, m = 2 (w >> 8) + 1, as mant * 2^(exp - 31), mant in [2^31, 2^32).
__device__ void neg_ln_uniform(unsigned int w, unsigned int* mant, int* exponent) {
    unsigned int m = ((w >> 8) << 1) | 1u;
    if (m < 0x01800000u) {
        // U < 3/4: U = f 2^(b - 26), b = bit length of m: E = (26 - b) ln 2 - ln f (Q32.32).
        unsigned int b = 32u - __clz(m);
        unsigned int l = ln_q32(m << (32u - b));
        unsigned int n = 26u - b;
        unsigned int hi = __umulhi(n, LN2_Q32) - ((n * LN2_Q32 < l) ? 1u : 0u);
        unsigned int lo = n * LN2_Q32 - l;
        if (hi > 0u) {
            unsigned int c = __clz(hi);
            *mant = (hi << c) | (lo >> (32u - c));
            *exponent = 31 - (int)c;
        } else {
            unsigned int c = __clz(lo);
            *mant = lo << c;
            *exponent = -1 - (int)c;
        }
        return;
    }
    // U >= 3/4: V = 1 - U = n / 2^25 exactly; E = V (1 + V T), T = sum_{i<14} V^i/(i + 2).
    unsigned int n = 0x02000000u - m;
    unsigned int v = n << 7;  // V in Q0.32
    unsigned int t = SERIES[13];
#pragma unroll
    for (int i = 12; i >= 0; --i) t = SERIES[i] + __umulhi(t, v);
    unsigned int s = 0x80000000u + (__umulhi(v, t) >> 1);  // 1 + V T in Q1.31
    unsigned int c = __clz(n);
    unsigned int hi = __umulhi(n << c, s);
    unsigned int lo = (n << c) * s;
    if (hi >= 0x80000000u) {
        *mant = hi;
        *exponent = 7 - (int)c;
    } else {
        *mant = (hi << 1) | (lo >> 31);
        *exponent = 6 - (int)c;
    }
}

// g = -ln E = -(e ln 2 + ln M): a sign and a Q32.32 magnitude, then to f32: the Q6.26 value
// hi * 2^16 + lo is rounded once by an addition of exact operands, and scaled by 2^-26 exactly.
__device__ __noinline__ float gumbel_from_word(unsigned int w) {
    unsigned int mant;
    int e;
    neg_ln_uniform(w, &mant, &e);
    unsigned int l = ln_q32(mant);
    unsigned int hi, lo;
    bool negative;
    if (e >= 0) {
        unsigned int n = (unsigned int)e;
        lo = n * LN2_Q32 + l;
        hi = __umulhi(n, LN2_Q32) + ((lo < l) ? 1u : 0u);
        negative = true;  // E >= 1: g <= 0
    } else {
        unsigned int n = (unsigned int)(-e);
        hi = __umulhi(n, LN2_Q32) - ((n * LN2_Q32 < l) ? 1u : 0u);
        lo = n * LN2_Q32 - l;
        negative = false;
    }
    unsigned int q = (hi << 26) + (lo >> 6) + ((lo >> 5) & 1u);
    float magnitude = __fadd_rn(__fmul_rn((float)(q >> 16), 65536.0f), (float)(q & 0xffffu));
    magnitude = __fmul_rn(magnitude, __int_as_float(0x32800000));  // 2^-26
    return negative ? -magnitude : magnitude;
}

// ---------------------------------------------------------------------------------------------
// Storage types (as in softmax.cu): a bit type T, load widens to f32, store rounds to T.
// ---------------------------------------------------------------------------------------------

// The storage types F32, F16 and BF16 (load widens to f32, store rounds back) come from
// kernels/dtype.cuh, which is compiled in front of this file.

// ---------------------------------------------------------------------------------------------
// The three modes.
// ---------------------------------------------------------------------------------------------

struct Params {
    unsigned int rows, cols, draws, k0, k1, off0, off1;
    float inv_tau;
    int hard;
};

__device__ __forceinline__ float gap(float a, float m, float inv_tau) {
    return fmaxf(__fmul_rn(__fsub_rn(a, m), inv_tau), GAP_FLOOR);
}

// MODE_NOISE: thread t -> Philox call t = (row, group of 4 columns).
template <class D>
__device__ void noise_kernel(typename D::T* y, const Params& p) {
    unsigned int groups = (p.cols + 3u) / 4u;
    unsigned long long calls = (unsigned long long)p.rows * groups;
    for (unsigned long long t = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
         t < calls; t += (unsigned long long)gridDim.x * blockDim.x) {
        unsigned int row = (unsigned int)(t / groups), group = (unsigned int)(t % groups);
        uint4 w = philox(make_uint4(group, row, p.off0, p.off1), p.k0, p.k1);
#pragma unroll 1
        for (unsigned int i = 0; i < 4u; ++i) {
            unsigned int col = group * 4u + i;
            if (col < p.cols)
                y[(unsigned long long)row * p.cols + col] =
                    D::store(gumbel_from_word(word_of(w, i)));
        }
    }
}

// MODE_SOFTMAX_SHORT: one thread per sample row; the row's a_j (then e^(d_j)) stay in an array.
template <class D>
__device__ void short_kernel(const typename D::T* x, typename D::T* y, typename D::T* soft,
                             const Params& p) {
    unsigned int samples = p.rows * p.draws, groups = (p.cols + 3u) / 4u;
    for (unsigned int s = blockIdx.x * blockDim.x + threadIdx.x; s < samples;
         s += gridDim.x * blockDim.x) {
        const typename D::T* l = x + (unsigned long long)(s / p.draws) * p.cols;
        unsigned long long out = (unsigned long long)s * p.cols;
        float a[SHORT_K];

        // step 3: perturb and take the max: a_j = l_j + g_j, m = max, hot = the first argmax
        // (the Gumbel-max sample).
        float m = KB_LOWEST_F32;
        unsigned int hot = 0;
        for (unsigned int group = 0; group < groups; ++group) {
            uint4 w = philox(make_uint4(group, s, p.off0, p.off1), p.k0, p.k1);
#pragma unroll 1
            for (unsigned int i = 0; i < 4u; ++i) {
                unsigned int j = group * 4u + i;
                if (j < p.cols) {
                    a[j] = __fadd_rn(D::load(l[j]), gumbel_from_word(word_of(w, i)));
                    if (a[j] > m) {
                        m = a[j];
                        hot = j;
                    }
                }
            }
        }

        // step 4: sum the exponentials of the gaps d_j = (a_j - m) / tau <= 0.
        float total = 0.0f;
#pragma unroll 1
        for (unsigned int j = 0; j < p.cols; ++j) {
            a[j] = expf(gap(a[j], m, p.inv_tau));
            total += a[j];
        }

        // step 5: normalise and write: soft_j = e^(d_j) / total; hard: the one-hot of hot.
#pragma unroll 1
        for (unsigned int j = 0; j < p.cols; ++j) {
            typename D::T v = D::store(a[j] / total);
            if (p.hard) {
                soft[out + j] = v;
                y[out + j] = D::store(j == hot ? 1.0f : 0.0f);
            } else {
                y[out + j] = v;
            }
        }
    }
}

// MODE_SOFTMAX_ROWS: one block per sample row. Thread t takes the Philox groups t, t + THREADS,
// ... (4 columns each). The noise is drawn once: pass 1 parks a_j in `scratch` (f32) and passes
// 2 and 3 read it back. A counter-based generator could regenerate the noise in every pass (it
// keeps no state), but -ln(-ln U) in integer arithmetic costs more than a write and a read.
template <class D>
__device__ void rows_kernel(const typename D::T* x, typename D::T* y, typename D::T* soft,
                            float* scratch, const Params& p) {
    __shared__ float val[THREADS];
    __shared__ unsigned int idx[THREADS];
    unsigned int samples = p.rows * p.draws, groups = (p.cols + 3u) / 4u;
    for (unsigned int s = blockIdx.x; s < samples; s += gridDim.x) {
        const typename D::T* l = x + (unsigned long long)(s / p.draws) * p.cols;
        unsigned long long out = (unsigned long long)s * p.cols;
        float* a_row = scratch + out;

        // step 3: perturb (a_j parked in scratch) and max-reduce with the argmax (ties to the
        // smaller index).
        float m = KB_LOWEST_F32;
        unsigned int hot = 0xffffffffu;
        for (unsigned int group = threadIdx.x; group < groups; group += THREADS) {
            uint4 w = philox(make_uint4(group, s, p.off0, p.off1), p.k0, p.k1);
#pragma unroll 1
            for (unsigned int i = 0; i < 4u; ++i) {
                unsigned int j = group * 4u + i;
                if (j < p.cols) {
                    float a = __fadd_rn(D::load(l[j]), gumbel_from_word(word_of(w, i)));
                    a_row[j] = a;
                    if (a > m) {
                        m = a;
                        hot = j;
                    }
                }
            }
        }
        val[threadIdx.x] = m;
        idx[threadIdx.x] = hot;
        __syncthreads();
        for (unsigned int half = THREADS / 2; half > 0; half /= 2) {
            if (threadIdx.x < half) {
                float v = val[threadIdx.x + half];
                unsigned int i = idx[threadIdx.x + half];
                if (v > val[threadIdx.x] || (v == val[threadIdx.x] && i < idx[threadIdx.x])) {
                    val[threadIdx.x] = v;
                    idx[threadIdx.x] = i;
                }
            }
            __syncthreads();
        }
        m = val[0];
        hot = idx[0];
        __syncthreads();

        // step 4: sum-reduce e^(d_j). Each thread reads back only the a_j it wrote.
        float part = 0.0f;
        for (unsigned int group = threadIdx.x; group < groups; group += THREADS) {
#pragma unroll 1
            for (unsigned int j = group * 4u; j < min(group * 4u + 4u, p.cols); ++j)
                part += expf(gap(a_row[j], m, p.inv_tau));
        }
        val[threadIdx.x] = part;
        __syncthreads();
        for (unsigned int half = THREADS / 2; half > 0; half /= 2) {
            if (threadIdx.x < half) val[threadIdx.x] = val[threadIdx.x] + val[threadIdx.x + half];
            __syncthreads();
        }
        float total = val[0];
        __syncthreads();

        // step 5: normalise and write.
        for (unsigned int group = threadIdx.x; group < groups; group += THREADS) {
#pragma unroll 1
            for (unsigned int j = group * 4u; j < min(group * 4u + 4u, p.cols); ++j) {
                typename D::T v = D::store(expf(gap(a_row[j], m, p.inv_tau)) / total);
                if (p.hard) {
                    soft[out + j] = v;
                    y[out + j] = D::store(j == hot ? 1.0f : 0.0f);
                } else {
                    y[out + j] = v;
                }
            }
        }
    }
}

template <class D>
__device__ void gumbel_kernel(const typename D::T* x, typename D::T* y, typename D::T* soft,
                              float* scratch, unsigned int rows, unsigned int cols,
                              unsigned int draws, unsigned int k0, unsigned int k1,
                              unsigned int off0, unsigned int off1, float inv_tau, int hard,
                              int mode) {
    Params p = {rows, cols, draws, k0, k1, off0, off1, inv_tau, hard};
    if (mode == MODE_NOISE) {
        noise_kernel<D>(y, p);
    } else if (mode == MODE_SOFTMAX_SHORT) {
        short_kernel<D>(x, y, soft, p);
    } else {
        rows_kernel<D>(x, y, soft, scratch, p);
    }
}

#define GUMBEL_ENTRY(NAME, D)                                                                   \
    extern "C" __global__ void __launch_bounds__(THREADS)                                       \
        NAME(const D::T* x, D::T* y, D::T* soft, float* scratch, unsigned int rows,             \
             unsigned int cols, unsigned int draws, unsigned int k0, unsigned int k1,           \
             unsigned int off0, unsigned int off1, float inv_tau, int hard, int mode) {         \
        gumbel_kernel<D>(x, y, soft, scratch, rows, cols, draws, k0, k1, off0, off1, inv_tau,  \
                         hard, mode);                                                           \
    }

GUMBEL_ENTRY(gumbel_f32, F32)
GUMBEL_ENTRY(gumbel_f16, F16)
GUMBEL_ENTRY(gumbel_bf16, BF16)

// ---------------------------------------------------------------------------------------------
// Test entry points: Random123's known-answer vectors and the word -> g map, checked bit for bit
// against the Rust implementation (tests/gumbel.rs).
// ---------------------------------------------------------------------------------------------

// in: n blocks of (counter[4], key[2]); out: n blocks of 4 words.
extern "C" __global__ void philox_kat(const unsigned int* in, unsigned int* out, unsigned int n) {
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const unsigned int* b = in + 6u * i;
    uint4 w = philox(make_uint4(b[0], b[1], b[2], b[3]), b[4], b[5]);
    out[4u * i] = w.x;
    out[4u * i + 1u] = w.y;
    out[4u * i + 2u] = w.z;
    out[4u * i + 3u] = w.w;
}

// words: n Philox words; g: gumbel_from_word of each.
extern "C" __global__ void gumbel_words(const unsigned int* words, float* g, unsigned int n) {
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        g[i] = gumbel_from_word(words[i]);
}
