// gumbel.cu: Gumbel noise and Gumbel-softmax samples from the counter-based generator
// Philox4x32-10, in f32 / f16 / bf16 storage.
//
// Compiled at run time by NVRTC (src/engine/cuda/gumbel.rs) and shown in the app next to its
// results. Every engine computes exactly the algorithm in src/ops/gumbel.rs:
//   random bits:  element (row s, column j) takes word j % 4 of philox4x32_10 at
//                 counter = (j / 4, s, offset_lo, offset_hi), key = (seed_lo, seed_hi)
//   noise:        U = (2 (w >> 8) + 1) / 2^25 in (0, 1);  g = -ln(-ln U) in integer fixed point
//                 with a 256-entry logarithm table, the same f32 bits as the WGSL shader and the
//                 CPU (logf is not used: its last bit differs between libraries)
//   sampling:     per sample row s (logits row r = s / draws):
//                 a_j = l_rj + g_sj;  m = max_j a_j;  hot = first j with a_j = m   (Gumbel-max)
//                 d_j = max((a_j - m) * (1/tau), -128);  soft_j = e^(d_j) / sum_i e^(d_i)
//                 hard: y = one_hot(hot), and the soft sample goes to `soft` when asked for
// Compiled with --fmad=false: every product is rounded before it is added, as in the CPU engine.
//
// Entry points:
//   gumbel_{f32,f16,bf16}(..., mode), the simple kernels:
//     MODE_NOISE          one thread per Philox call (4 neighbouring columns of a row)
//     MODE_SOFTMAX_SHORT  rows of K <= SHORT_K: one thread per sample row, a_j kept in an array
//     MODE_SOFTMAX_ROWS   longer rows: one block of THREADS per sample row, tree reductions, a_j
//                         parked in an f32 scratch buffer between the passes
//   gumbel_fast_{f32,f16,bf16}: the fast kernel (one pass over memory), further down
//   philox_kat, gumbel_words: for the tests (raw Philox blocks, the word -> g map)
// The logarithm table (256 pairs (-ln r_i, r_i), src/ops/gumbel.rs) comes from the host as a
// uint2 array: the Rust constants are its only copy.

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
__device__ __forceinline__ uint4 philox(uint4 c, unsigned int k0, unsigned int k1) {
#pragma unroll
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

#define LN2_Q40 762123384786ull   // ln 2 in Q24.40
#define THIRD_Q16 21845u          // 1/3 in Q0.16
#define FIVE_24THS_Q32 894784853u // 5/24 in Q0.32
#define SERIES_BELOW 0x20000u     // V = 1 - U = n / 2^25 with n below this: V < 2^-8

// Where the table lives: global memory (simple kernels) or 16 copies in shared memory (fast).
struct GlobalTable {
    const uint2* t;
    __device__ __forceinline__ uint2 operator[](unsigned int i) const { return __ldg(t + i); }
};

// ln f for f in [1, 2) given in Q1.31, as Q24.40. i = the 8 bits after f's leading 1; the table
// gives (-ln r_i in Q0.32, r_i in Q0.24) with t = f r_i - 1 in [0, 2^-8), exact: f r_i = 1 + t in
// Q.55, and the 2^40 of the 1 falls off the low 32 bits of Q0.40. ln f = -ln r_i + ln(1 + t),
// ln(1 + t) = t - t^2 (1/2 - t/3) (the next term, t^4 / 4, is below 2^-34).
template <class Table>
__device__ __forceinline__ unsigned long long ln_q40(unsigned int f31, const Table& table) {
    uint2 entry = table[(f31 >> 23) - 256u];  // f31 >> 23 is in [256, 512)
    unsigned int t = (unsigned int)(((unsigned long long)f31 * entry.y) >> 15);  // Q0.40
    unsigned int q = 0x00800000u - __umulhi(t, THIRD_Q16);  // 1/2 - t/3 in Q0.24
    unsigned int t2q = __umulhi(t, __umulhi(t, q));         // t (t q): Q0.32, then Q0.40
    return ((unsigned long long)entry.x << 8) + (t - t2q);
}

// phi(V) = ln(-ln(1 - V) / V) = V/2 + 5V^2/24 + V^3/8 (+ less than 2^-35) for V < 2^-8, Q0.40.
__device__ __forceinline__ unsigned int phi_q40(unsigned int v40) {
    unsigned int inner = FIVE_24THS_Q32 + (v40 >> 11);                  // 5/24 + V/8
    return __umulhi(v40, 0x80000000u + (__umulhi(v40, inner) >> 8));  // V (1/2 + V inner)
}

// E = -ln U, then g = -ln E, both logarithms by ln_q40:
//   V = 1 - U < 2^-8:  E = V e^phi(V) with V = n 2^-25 exact (x = n normalised, e its exponent)
//   otherwise:         U = f 2^-k, E = k ln 2 - ln f (Q24.40), normalised to x 2^(e - 31)
//   ln E = e ln 2 + ln(x / 2^31) + phi, a signed 64-bit Q.40 integer; g = -ln E is one correctly
//   rounded conversion to f32 and an exact scaling by -2^-40.
template <class Table>
__device__ __forceinline__ float gumbel_from_word(unsigned int w, const Table& table) {
    unsigned int m = (w >> 7) | 1u;       // U = m / 2^25
    unsigned int n = 0x02000000u - m;     // V = n / 2^25
    unsigned int x, phi = 0u;
    int e;
    if (n < SERIES_BELOW) {
        unsigned int c = __clz(n);
        x = n << c;
        e = 6 - (int)c;
        phi = phi_q40(n << 15);
    } else {
        unsigned int c = __clz(m);
        unsigned long long e40 = (unsigned long long)(c - 6u) * LN2_Q40 - ln_q40(m << c, table);
        unsigned int hi = (unsigned int)(e40 >> 32), cz = __clz(hi);
        x = __funnelshift_l((unsigned int)e40, hi, cz);  // the top 32 bits of e40 << cz
        e = 23 - (int)cz;
    }
    // ln E = e ln 2 + ln(x / 2^31) + phi (two's complement, |ln E| < 18). e ln 2 as one signed
    // 32x32 -> 64-bit product (ln 2 in Q24.40 = 0xB1 * 2^32 + 0x7217F7D2) and one for the top word.
    long long e_ln2 = (long long)e * 0x7217F7D2ll + (long long)((unsigned long long)(e * 0xB1) << 32);
    long long ln_e = e_ln2 + (long long)phi + (long long)ln_q40(x, table);
    return __fmul_rn(__ll2float_rn(ln_e), __int_as_float(0xab800000));  // * -2^-40
}

// The simple kernels call Philox and the noise as functions (one copy of each in the program,
// quick to compile); the fast kernel inlines them where speed matters.
__device__ __noinline__ uint4 philox_call(uint4 c, unsigned int k0, unsigned int k1) {
    return philox(c, k0, k1);
}
__device__ __noinline__ float gumbel_call(unsigned int w, const GlobalTable table) {
    return gumbel_from_word(w, table);
}

// The storage types F32, F16 and BF16 (load widens to f32, store rounds back) come from
// kernels/dtype.cuh, which is compiled in front of this file.

// ---------------------------------------------------------------------------------------------
// The three modes of the simple kernel.
// ---------------------------------------------------------------------------------------------

struct Params {
    unsigned int rows, cols, draws, k0, k1, off0, off1;
    float inv_tau;
    int hard, want_soft;  // want_soft: hard mode also writes the soft sample to `soft`
};

__device__ __forceinline__ float gap(float a, float m, float inv_tau) {
    return fmaxf(__fmul_rn(__fsub_rn(a, m), inv_tau), GAP_FLOOR);
}

// MODE_NOISE: thread t -> Philox call t = (row, group of 4 columns).
template <class D>
__device__ void noise_kernel(typename D::T* y, const GlobalTable& table, const Params& p) {
    unsigned int groups = (p.cols + 3u) / 4u;
    unsigned long long calls = (unsigned long long)p.rows * groups;
    for (unsigned long long t = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
         t < calls; t += (unsigned long long)gridDim.x * blockDim.x) {
        unsigned int row = (unsigned int)(t / groups), group = (unsigned int)(t % groups);
        uint4 w = philox_call(make_uint4(group, row, p.off0, p.off1), p.k0, p.k1);
#pragma unroll 1
        for (unsigned int i = 0; i < 4u; ++i) {
            unsigned int col = group * 4u + i;
            if (col < p.cols)
                y[(unsigned long long)row * p.cols + col] =
                    D::store(gumbel_call(word_of(w, i), table));
        }
    }
}

// MODE_SOFTMAX_SHORT: one thread per sample row; the row's a_j (then e^(d_j)) stay in an array.
template <class D>
__device__ void short_kernel(const typename D::T* x, typename D::T* y, typename D::T* soft,
                             const GlobalTable& table, const Params& p) {
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
            uint4 w = philox_call(make_uint4(group, s, p.off0, p.off1), p.k0, p.k1);
#pragma unroll 1
            for (unsigned int i = 0; i < 4u; ++i) {
                unsigned int j = group * 4u + i;
                if (j < p.cols) {
                    a[j] = __fadd_rn(D::load(l[j]), gumbel_call(word_of(w, i), table));
                    if (a[j] > m) {
                        m = a[j];
                        hot = j;
                    }
                }
            }
        }

        // A hard sample alone needs no exponentials: write the one-hot and go on.
        if (p.hard && !p.want_soft) {
#pragma unroll 1
            for (unsigned int j = 0; j < p.cols; ++j) y[out + j] = D::store(j == hot ? 1.0f : 0.0f);
            continue;
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
// 2 and 3 read it back (the fast kernel keeps a_j in registers instead).
template <class D>
__device__ void rows_kernel(const typename D::T* x, typename D::T* y, typename D::T* soft,
                            float* scratch, const GlobalTable& table, const Params& p) {
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
            uint4 w = philox_call(make_uint4(group, s, p.off0, p.off1), p.k0, p.k1);
#pragma unroll 1
            for (unsigned int i = 0; i < 4u; ++i) {
                unsigned int j = group * 4u + i;
                if (j < p.cols) {
                    float a = __fadd_rn(D::load(l[j]), gumbel_call(word_of(w, i), table));
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

        // A hard sample alone: the one-hot, no exponentials.
        if (p.hard && !p.want_soft) {
            for (unsigned int j = threadIdx.x; j < p.cols; j += THREADS)
                y[out + j] = D::store(j == hot ? 1.0f : 0.0f);
            continue;
        }

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
                              float* scratch, const uint2* ln_table, unsigned int rows,
                              unsigned int cols, unsigned int draws, unsigned int k0,
                              unsigned int k1, unsigned int off0, unsigned int off1,
                              float inv_tau, int hard, int want_soft, int mode) {
    Params p = {rows, cols, draws, k0, k1, off0, off1, inv_tau, hard, want_soft};
    GlobalTable table = {ln_table};
    if (mode == MODE_NOISE) {
        noise_kernel<D>(y, table, p);
    } else if (mode == MODE_SOFTMAX_SHORT) {
        short_kernel<D>(x, y, soft, table, p);
    } else {
        rows_kernel<D>(x, y, soft, scratch, table, p);
    }
}

#define GUMBEL_ENTRY(NAME, D)                                                                   \
    extern "C" __global__ void __launch_bounds__(THREADS)                                       \
        NAME(const D::T* x, D::T* y, D::T* soft, float* scratch, const uint2* ln_table,         \
             unsigned int rows, unsigned int cols, unsigned int draws, unsigned int k0,          \
             unsigned int k1, unsigned int off0, unsigned int off1, float inv_tau, int hard,     \
             int want_soft, int mode) {                                                          \
        gumbel_kernel<D>(x, y, soft, scratch, ln_table, rows, cols, draws, k0, k1, off0, off1, \
                         inv_tau, hard, want_soft, mode);                                       \
    }

GUMBEL_ENTRY(gumbel_f32, F32)
GUMBEL_ENTRY(gumbel_f16, F16)
GUMBEL_ENTRY(gumbel_bf16, BF16)

// =============================================================================================
// The FAST kernel: read the logits once, write each output once, never store the noise.
//
// The simple kernels above make up to three passes over memory and park l + g in a scratch
// buffer. The fast kernel keeps everything on chip:
//
//   * one block per sample row (grid-stride over rows); the host picks the block size, a multiple
//     of 32 up to FAST_THREADS. Thread t owns the Philox groups t, t + blockDim, ...: each group
//     is one Philox call and 4 neighbouring columns, loaded with one 16-byte (f32) or 8-byte
//     (f16/bf16) load when K % 4 == 0;
//   * the logarithm table is copied into shared memory 16 times over: entry i of copy c at
//     [16 i + c]. Lane l reads copy l % 16, so the 16 lanes of a half-warp (which read 8-byte
//     entries in one shared-memory transaction) always hit 16 different bank pairs: no conflicts,
//     whatever the indices;
//   * hard without the soft sample (`want_soft` = 0, what torch's F.gumbel_softmax(hard=True)
//     returns): the row streams through once. Each thread keeps its running (max, first argmax)
//     and writes zeros over its columns as it goes; after the block-wide argmax one thread writes
//     the 1 (the __syncthreads of the reduction orders it after the zeros). No exponential at all;
//   * otherwise each thread keeps its a_j in registers (up to FAST_MAX_GROUPS groups of 4: rows
//     up to FAST_THREADS * FAST_MAX_GROUPS * 4 = 32768 values), then the block-wide argmax,
//     e^(d_j) in place of a_j, the block-wide sum, and the soft sample (and the one-hot) written
//     once. Longer rows run MODE_SOFTMAX_ROWS of the simple kernel.
//
// Why the noise is never stored: Philox is counter-based, so any thread can compute any
// element's random bits from (seed, offset, row, column) alone, in any order; nothing is carried
// from one element to the next. So each element's noise is drawn where it is used and lives in a
// register for a few instructions. Same per-element arithmetic as the simple kernel (the same
// a_j, the same first argmax, d_j, expf and quotient); only the order of the additions in the
// sum differs.
// =============================================================================================

#define FAST_THREADS 1024
#define FAST_MAX_GROUPS 8
#define TABLE_COPIES 16
#define LN_TABLE_LEN 256

// Entry i of the copy this thread reads (copy = lane % 16), at byte 128 i of its column.
struct LaneTable {
    const char* column;  // (const char*)&table_copies[threadIdx.x % 16]
    __device__ __forceinline__ uint2 operator[](unsigned int i) const {
        return *reinterpret_cast<const uint2*>(column + i * (TABLE_COPIES * sizeof(uint2)));
    }
};

// Four neighbouring storage values: one 16-byte (f32) or 8-byte (f16/bf16) access.
template <class D> struct Quad;
template <> struct Quad<F32> {
    typedef uint4 V;
    static __device__ __forceinline__ float get(V v, int i) {
        return __uint_as_float(i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w);
    }
    static __device__ __forceinline__ V put(const float* f) {
        return make_uint4(__float_as_uint(f[0]), __float_as_uint(f[1]), __float_as_uint(f[2]),
                          __float_as_uint(f[3]));
    }
    static __device__ __forceinline__ V zero() { return make_uint4(0u, 0u, 0u, 0u); }
};
template <class D> struct Quad16 {
    typedef uint2 V;
    static __device__ __forceinline__ float get(V v, int i) {
        unsigned int w = i < 2 ? v.x : v.y;
        return D::load((unsigned short)((i & 1) ? (w >> 16) : (w & 0xffffu)));
    }
    static __device__ __forceinline__ V put(const float* f) {
        return make_uint2((unsigned int)D::store(f[0]) | ((unsigned int)D::store(f[1]) << 16),
                          (unsigned int)D::store(f[2]) | ((unsigned int)D::store(f[3]) << 16));
    }
    static __device__ __forceinline__ V zero() { return make_uint2(0u, 0u); }
};
template <> struct Quad<F16> : Quad16<F16> {};
template <> struct Quad<BF16> : Quad16<BF16> {};

// The 4 logits of `group` (columns past K read as 0 and are never used). `vec`: K % 4 == 0, so
// the group is whole and aligned for one vector access.
template <class D>
__device__ __forceinline__ void load_quad(const typename D::T* l, unsigned int group,
                                          unsigned int cols, bool vec, float* out) {
    if (vec) {
        typename Quad<D>::V v = reinterpret_cast<const typename Quad<D>::V*>(l)[group];
#pragma unroll
        for (int i = 0; i < 4; ++i) out[i] = Quad<D>::get(v, i);
    } else {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            unsigned int j = group * 4u + (unsigned int)i;
            out[i] = j < cols ? D::load(l[j]) : 0.0f;
        }
    }
}

template <class D>
__device__ __forceinline__ void store_quad(typename D::T* y, unsigned int group,
                                           unsigned int cols, bool vec, const float* v) {
    if (vec) {
        reinterpret_cast<typename Quad<D>::V*>(y)[group] = Quad<D>::put(v);
    } else {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            unsigned int j = group * 4u + (unsigned int)i;
            if (j < cols) y[j] = D::store(v[i]);
        }
    }
}

// (value, index) pairs: the larger value wins, the smaller index on a tie, so a reduction in any
// order gives the first argmax.
__device__ __forceinline__ void argmax_merge(float& v, unsigned int& i, float v2, unsigned int i2) {
    if (v2 > v || (v2 == v && i2 < i)) {
        v = v2;
        i = i2;
    }
}

// Block-wide argmax and sum: a shuffle butterfly inside each warp (lane l meets lane l ^ 16,
// ^ 8, ... ^ 1, so every lane ends with the warp's result), one slot per warp in shared memory,
// then every warp reduces the slots the same way. Every thread gets the result.
__device__ void block_argmax(float& v, unsigned int& i, float* slot_val, unsigned int* slot_idx) {
#pragma unroll
    for (int o = 16; o > 0; o /= 2)
        argmax_merge(v, i, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, i, o));
    unsigned int lane = threadIdx.x & 31u, warps = blockDim.x >> 5;
    if (lane == 0) {
        slot_val[threadIdx.x >> 5] = v;
        slot_idx[threadIdx.x >> 5] = i;
    }
    __syncthreads();
    v = lane < warps ? slot_val[lane] : KB_LOWEST_F32;
    i = lane < warps ? slot_idx[lane] : 0xffffffffu;
#pragma unroll
    for (int o = 16; o > 0; o /= 2)
        argmax_merge(v, i, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, i, o));
    __syncthreads();  // every warp has read the slots before they are reused
}

__device__ float block_sum(float v, float* slots) {
#pragma unroll
    for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
    unsigned int lane = threadIdx.x & 31u;
    if (lane == 0) slots[threadIdx.x >> 5] = v;
    __syncthreads();
    v = lane < (blockDim.x >> 5) ? slots[lane] : 0.0f;
#pragma unroll
    for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads();
    return v;
}

// Hard sample alone: one streaming pass over the row, any K. `vec`: K % 4 == 0 (whole groups,
// aligned vector accesses), a template parameter so that this loop carries no check for it.
template <class D, bool vec>
__device__ void fast_hard_row(const typename D::T* l, typename D::T* y, unsigned int s,
                              const LaneTable& table, const Params& p, float* slot_val,
                              unsigned int* slot_idx) {
    const unsigned int groups = (p.cols + 3u) / 4u;
    const float zeros[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    float m = KB_LOWEST_F32;
    unsigned int hot = 0xffffffffu;
    for (unsigned int group = threadIdx.x; group < groups; group += blockDim.x) {
        float lq[4];
        load_quad<D>(l, group, p.cols, vec, lq);
        store_quad<D>(y, group, p.cols, vec, zeros);
        uint4 w = philox(make_uint4(group, s, p.off0, p.off1), p.k0, p.k1);
#pragma unroll
        for (unsigned int i = 0; i < 4u; ++i) {
            unsigned int j = group * 4u + i;  // past K (only in the last group): drawn, not used
            float a = __fadd_rn(lq[i], gumbel_from_word(word_of(w, i), table));
            if ((vec || j < p.cols) && a > m) {
                m = a;
                hot = j;
            }
        }
    }
    block_argmax(m, hot, slot_val, slot_idx);
    if (threadIdx.x == 0 && hot < p.cols) y[hot] = D::store(1.0f);
}

// The soft path keeps its a_j in registers, so its loop over groups is unrolled; the work on one
// group is a function, called FAST_MAX_GROUPS times per step (one copy of the code each, quick to
// compile). Columns past K hold a_j = -inf (e^(d_j) = 0) and are never written.

// step 3 (fast) for one group: the 4 a_j = l_j + g_j.
template <class D>
__device__ __noinline__ float4 perturb_group(const typename D::T* l, unsigned int group,
                                             unsigned int s, bool vec, const LaneTable table,
                                             unsigned int cols, unsigned int k0, unsigned int k1,
                                             unsigned int off0, unsigned int off1) {
    float lq[4], a[4];
    load_quad<D>(l, group, cols, vec, lq);
    uint4 w = philox(make_uint4(group, s, off0, off1), k0, k1);
#pragma unroll
    for (unsigned int i = 0; i < 4u; ++i) {
        a[i] = group * 4u + i < cols ? __fadd_rn(lq[i], gumbel_from_word(word_of(w, i), table))
                                     : __int_as_float(0xff800000);
    }
    return make_float4(a[0], a[1], a[2], a[3]);
}

// step 4 (fast) for one group: e^(d_j), d_j = max((a_j - m) / tau, -128) (0 for -inf).
__device__ __noinline__ float4 exp_group(float4 a, float m, float inv_tau) {
    return make_float4(expf(gap(a.x, m, inv_tau)), expf(gap(a.y, m, inv_tau)),
                       expf(gap(a.z, m, inv_tau)), expf(gap(a.w, m, inv_tau)));
}

// step 5 (fast) for one group: the soft values e^(d_j) / total to `soft_out` (when write_soft)
// and the one-hot of `hot` to `one_hot_out` (when hard).
template <class D>
__device__ __noinline__ void write_group(typename D::T* soft_out, typename D::T* one_hot_out,
                                         unsigned int group, unsigned int cols, bool vec,
                                         float4 e, float total, unsigned int hot, bool write_soft,
                                         bool hard) {
    float v[4] = {e.x / total, e.y / total, e.z / total, e.w / total}, one_hot[4];
#pragma unroll
    for (unsigned int i = 0; i < 4u; ++i) one_hot[i] = group * 4u + i == hot ? 1.0f : 0.0f;
    if (write_soft) store_quad<D>(soft_out, group, cols, vec, v);
    if (hard) store_quad<D>(one_hot_out, group, cols, vec, one_hot);
}

// The soft sample (and, when hard, the one-hot): a_j in registers, up to FAST_MAX_GROUPS groups
// per thread (the host launches enough threads: groups <= FAST_MAX_GROUPS * blockDim.x).
template <class D>
__device__ void fast_soft_row(const typename D::T* l, typename D::T* y, typename D::T* soft,
                              unsigned int s, bool vec, const LaneTable& table, const Params& p,
                              float* slot_val, unsigned int* slot_idx) {
    const unsigned int groups = (p.cols + 3u) / 4u;
    float4 a[FAST_MAX_GROUPS];

    // step 3 (fast): perturb and take the thread's max and first argmax.
    float m = KB_LOWEST_F32;
    unsigned int hot = 0xffffffffu;
#pragma unroll
    for (int k = 0; k < FAST_MAX_GROUPS; ++k) {
        unsigned int group = threadIdx.x + (unsigned int)k * blockDim.x;
        if (group < groups) {
            a[k] = perturb_group<D>(l, group, s, vec, table, p.cols, p.k0, p.k1, p.off0, p.off1);
            const float v[4] = {a[k].x, a[k].y, a[k].z, a[k].w};
#pragma unroll
            for (unsigned int i = 0; i < 4u; ++i) {
                if (v[i] > m) {  // -inf past K never wins
                    m = v[i];
                    hot = group * 4u + i;
                }
            }
        }
    }
    block_argmax(m, hot, slot_val, slot_idx);

    // step 4 (fast): e^(d_j) in place of a_j, summed.
    float part = 0.0f;
#pragma unroll
    for (int k = 0; k < FAST_MAX_GROUPS; ++k) {
        if (threadIdx.x + (unsigned int)k * blockDim.x < groups) {
            a[k] = exp_group(a[k], m, p.inv_tau);
            part += a[k].x;
            part += a[k].y;
            part += a[k].z;
            part += a[k].w;
        }
    }
    const float total = block_sum(part, slot_val);

    // step 5 (fast): write the soft sample (to y in soft mode) and the one-hot, once.
    typename D::T* soft_out = p.hard ? soft : y;
    const bool write_soft = !p.hard || p.want_soft;
#pragma unroll
    for (int k = 0; k < FAST_MAX_GROUPS; ++k) {
        unsigned int group = threadIdx.x + (unsigned int)k * blockDim.x;
        if (group < groups)
            write_group<D>(soft_out, y, group, p.cols, vec, a[k], total, hot, write_soft, p.hard != 0);
    }
}

// Hard mode without the soft sample streams (any K); everything else keeps the row in registers.
template <class D>
__device__ void gumbel_fast_kernel(const typename D::T* x, typename D::T* y, typename D::T* soft,
                                   const uint2* ln_table, const Params& p) {
    __shared__ uint2 table_copies[LN_TABLE_LEN * TABLE_COPIES];
    __shared__ float slot_val[FAST_THREADS / 32];
    __shared__ unsigned int slot_idx[FAST_THREADS / 32];
    for (unsigned int i = threadIdx.x; i < LN_TABLE_LEN * TABLE_COPIES; i += blockDim.x)
        table_copies[i] = __ldg(ln_table + i / TABLE_COPIES);
    __syncthreads();
    const LaneTable table = {reinterpret_cast<const char*>(table_copies + threadIdx.x % TABLE_COPIES)};
    const bool vec = p.cols % 4u == 0u;
    const bool stream = p.hard && !p.want_soft;
    const unsigned int samples = p.rows * p.draws;
    for (unsigned int s = blockIdx.x; s < samples; s += gridDim.x) {
        const typename D::T* l = x + (unsigned long long)(s / p.draws) * p.cols;
        unsigned long long out = (unsigned long long)s * p.cols;
        if (stream && vec) {
            fast_hard_row<D, true>(l, y + out, s, table, p, slot_val, slot_idx);
        } else if (stream) {
            fast_hard_row<D, false>(l, y + out, s, table, p, slot_val, slot_idx);
        } else {
            fast_soft_row<D>(l, y + out, soft + out, s, vec, table, p, slot_val, slot_idx);
        }
    }
}

#define GUMBEL_FAST_ENTRY(NAME, D)                                                              \
    extern "C" __global__ void __launch_bounds__(FAST_THREADS)                                  \
        NAME(const D::T* x, D::T* y, D::T* soft, const uint2* ln_table, unsigned int rows,      \
             unsigned int cols, unsigned int draws, unsigned int k0, unsigned int k1,           \
             unsigned int off0, unsigned int off1, float inv_tau, int hard, int want_soft) {    \
        Params p = {rows, cols, draws, k0, k1, off0, off1, inv_tau, hard, want_soft};          \
        gumbel_fast_kernel<D>(x, y, soft, ln_table, p);                                         \
    }

GUMBEL_FAST_ENTRY(gumbel_fast_f32, F32)
GUMBEL_FAST_ENTRY(gumbel_fast_f16, F16)
GUMBEL_FAST_ENTRY(gumbel_fast_bf16, BF16)

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
extern "C" __global__ void gumbel_words(const unsigned int* words, float* g, const uint2* ln_table,
                                        unsigned int n) {
    GlobalTable table = {ln_table};
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        g[i] = gumbel_from_word(words[i], table);
}
