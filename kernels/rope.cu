// rope.cu: rotary position embeddings. rope_* rotates x [batch, seq, heads, head_dim] by its
// positions (layouts half_split, interleaved, chatglm2d; partial rotary); rope_freqs_* writes the
// frequency table and cos/sin of position x frequency. f32 / f16 / bf16 storage.
//
// Compiled at run time by NVRTC (src/engine/cuda/rope.rs) and shown in the app next to its results.
// Every engine computes exactly the algorithm in src/ops/rope.rs:
//   * one thread per pair: it finds the two dims of its pair from the layout (or a pair of dims
//     that partial rotary passes through unchanged), in one fused pass over x;
//   * precise angles: the angle in turns, p * inv_freq / 2pi, from integer arithmetic on a
//     64-bit fixed-point frequency (exact: whole turns overflow away), reduced to a quarter turn
//     q and an f32 remainder r in [-pi/4, pi/4]; then sincosf of r, swapped by quadrant.
//     Naive angles: sincosf of the f32 angle f32(p) * f32(inv_freq), as HF does;
//   * y_a = x_a c - x_b s, y_b = x_b c + x_a s in f32 (no fused multiply-add: --fmad=false),
//     rounded once to the storage type.
// The frequency table comes from the host (computed once in f64, as HF computes inv_freq once):
// 3 words per frequency, the turns' high and low words and the f32 inv_freq's bits.
//
// Layout: a grid-stride loop over pairs, THREADS threads per block. 16-bit values travel as
// unsigned short bit patterns; the storage types are the same as in softmax.cu.

#define THREADS 256

// Layouts: must match ops::rope::Layout::code.
#define LAYOUT_HALF_SPLIT  0
#define LAYOUT_INTERLEAVED 1
#define LAYOUT_CHATGLM2D   2

// f32(2pi) / 2^27 (bits 0x33490fdb): one unit of the rounded remainder, 4.68e-8 rad.
#define TURN_UNIT __int_as_float(0x33490fdb)

// ---------------------------------------------------------------------------------------------
// Storage types: a bit type `T`, a `load` that widens to f32 (exact) and a `store` that rounds
// an f32 to the type. The same as softmax.cu.
// ---------------------------------------------------------------------------------------------

// The storage types F32, F16 and BF16 (load widens to f32, store rounds back) come from
// kernels/dtype.cuh, which is compiled in front of this file.

// ---------------------------------------------------------------------------------------------
// Angles.
// ---------------------------------------------------------------------------------------------

// cos and sin of position p times frequency f of the table.
__device__ __forceinline__ void cos_sin(int p, const unsigned int* table, unsigned int f,
                                        int precise, float* c, float* s) {
    if (!precise) {
        // The naive angle, as HF computes it in f32: one rounded product, then sin and cos of a
        // possibly large argument (CUDA's accurate sincosf reduces it itself).
        float angle = (float)p * __uint_as_float(table[3 * f + 2]);
        sincosf(angle, s, c);
        return;
    }
    // step 2: the angle in turns. turns = inv_freq / 2pi as a 64-bit fixed-point fraction
    // (hi, lo); t = the top 32 bits of |p| * turns mod 2^64: the angle in 2^-32 turn, exact.
    unsigned int hi = table[3 * f];
    unsigned int lo = table[3 * f + 1];
    unsigned int u = (unsigned int)(p < 0 ? -p : p);
    unsigned int t = u * hi + __umulhi(u, lo);
    if (p < 0) t = 0u - t;
    // step 3: reduce to an eighth of a turn. q = the nearest quarter turn; the remainder (at most
    // 2^29 units either way) rounded to 2^5 units is an integer below 2^24: exact in f32, and
    // one rounded product turns it into radians, |r| <= pi/4.
    unsigned int q = (t + 0x20000000u) >> 30;
    int rem = (int)(t - (q << 30));
    float r = (float)((rem + 16) >> 5) * TURN_UNIT;
    float sr, cr;
    sincosf(r, &sr, &cr);
    // angle = q * pi/2 + r: a quarter turn swaps cos and sin and negates one (exact).
    switch (q & 3u) {
        case 1: *c = -sr; *s = cr; break;
        case 2: *c = -cr; *s = -sr; break;
        case 3: *c = sr; *s = -cr; break;
        default: *c = cr; *s = sr; break;
    }
}

// A token's position: given (rows = 1: one row for every batch; else one per batch), or its
// index s (rows = 0).
__device__ __forceinline__ int position_of(const int* positions, unsigned int rows,
                                           unsigned int seq, unsigned int b, unsigned int s) {
    if (rows == 0) return (int)s;
    unsigned int row = rows == 1 ? 0 : b;
    return positions[row * seq + s];
}

// ---------------------------------------------------------------------------------------------
// rope: one thread per pair.
// ---------------------------------------------------------------------------------------------

template <class D>
__device__ void rope_kernel(const typename D::T* x, typename D::T* y, const int* positions,
                            const int* block_positions, const unsigned int* table,
                            unsigned int items, unsigned int seq, unsigned int heads,
                            unsigned int head_dim, unsigned int x_seq, unsigned int rot, int layout,
                            unsigned int pos_rows, unsigned int block_rows, int precise) {
    const unsigned int pairs = rot / 2;
    const unsigned int slots = head_dim / 2;
    for (unsigned int item = blockIdx.x * blockDim.x + threadIdx.x; item < items;
         item += gridDim.x * blockDim.x) {
        // step 1: which pair. Item -> (token b, s; head h; slot j of head_dim / 2 in the head).
        unsigned int j = item % slots;
        unsigned int token_head = item / slots;
        unsigned int h = token_head % heads;
        unsigned int token = token_head / heads;
        unsigned int s = token % seq;
        unsigned int b = token / seq;
        unsigned int sx = x_seq == 1 ? 0 : s;
        unsigned long long x_base = ((unsigned long long)(b * x_seq + sx) * heads + h) * head_dim;
        unsigned long long y_base = ((unsigned long long)token * heads + h) * head_dim;

        // The slot's two dims: half_split (i, i + d/2), interleaved (2i, 2i + 1); chatglm2d
        // splits the head into two halves, each half-split, the second turned by the block
        // position. Slots past the rotated pairs copy two pass-through dims.
        unsigned int base = 0, l = j;
        bool from_block = false;
        if (layout == LAYOUT_CHATGLM2D && j >= slots / 2) {
            base = head_dim / 2;
            l = j - slots / 2;
            from_block = true;
        }
        if (l >= pairs) {
            // Partial rotary: these dims pass through as stored, bit for bit.
            unsigned int a = base + rot + 2 * (l - pairs);
            y[y_base + a] = x[x_base + a];
            y[y_base + a + 1] = x[x_base + a + 1];
            continue;
        }
        unsigned int a = base + l, bb = base + l + pairs;
        if (layout == LAYOUT_INTERLEAVED) {
            a = 2 * l;
            bb = 2 * l + 1;
        }
        int p = from_block ? position_of(block_positions, block_rows, seq, b, s)
                           : position_of(positions, pos_rows, seq, b, s);
        float c, sn;
        cos_sin(p, table, l, precise, &c, &sn);

        // step 4: rotate the pair, in f32, each result rounded once to the storage type.
        float xa = D::load(x[x_base + a]);
        float xb = D::load(x[x_base + bb]);
        y[y_base + a] = D::store(xa * c - xb * sn);
        y[y_base + bb] = D::store(xb * c + xa * sn);
    }
}

extern "C" __global__ void __launch_bounds__(THREADS)
rope_f32(const float* x, float* y, const int* positions, const int* block_positions,
    const unsigned int* table, unsigned int items, unsigned int seq, unsigned int heads,
    unsigned int head_dim, unsigned int x_seq, unsigned int rot, int layout,
    unsigned int pos_rows, unsigned int block_rows, int precise) {
    rope_kernel<F32>(x, y, positions, block_positions, table, items, seq, heads, head_dim, x_seq,
                     rot, layout, pos_rows, block_rows, precise);
}

extern "C" __global__ void __launch_bounds__(THREADS)
rope_f16(const unsigned short* x, unsigned short* y, const int* positions,
    const int* block_positions, const unsigned int* table, unsigned int items, unsigned int seq,
    unsigned int heads, unsigned int head_dim, unsigned int x_seq, unsigned int rot, int layout,
    unsigned int pos_rows, unsigned int block_rows, int precise) {
    rope_kernel<F16>(x, y, positions, block_positions, table, items, seq, heads, head_dim, x_seq,
                     rot, layout, pos_rows, block_rows, precise);
}

extern "C" __global__ void __launch_bounds__(THREADS)
rope_bf16(const unsigned short* x, unsigned short* y, const int* positions,
    const int* block_positions, const unsigned int* table, unsigned int items, unsigned int seq,
    unsigned int heads, unsigned int head_dim, unsigned int x_seq, unsigned int rot, int layout,
    unsigned int pos_rows, unsigned int block_rows, int precise) {
    rope_kernel<BF16>(x, y, positions, block_positions, table, items, seq, heads, head_dim, x_seq,
                     rot, layout, pos_rows, block_rows, precise);
}

// ---------------------------------------------------------------------------------------------
// rope_freqs: one thread per (position, frequency).
// ---------------------------------------------------------------------------------------------

template <class D>
__device__ void rope_freqs_kernel(const int* positions, const unsigned int* table,
                                  typename D::T* inv_freq, typename D::T* cos_out,
                                  typename D::T* sin_out, unsigned int n_pos, unsigned int n_freq,
                                  int precise) {
    unsigned int items = n_pos * n_freq;
    for (unsigned int item = blockIdx.x * blockDim.x + threadIdx.x; item < items;
         item += gridDim.x * blockDim.x) {
        unsigned int f = item % n_freq;
        unsigned int n = item / n_freq;
        if (n == 0) inv_freq[f] = D::store(__uint_as_float(table[3 * f + 2]));
        float c, s;
        cos_sin(positions[n], table, f, precise, &c, &s);
        cos_out[item] = D::store(c);
        sin_out[item] = D::store(s);
    }
}

extern "C" __global__ void __launch_bounds__(THREADS)
rope_freqs_f32(const int* positions, const unsigned int* table, float* inv_freq,
    float* cos_out, float* sin_out, unsigned int n_pos, unsigned int n_freq, int precise) {
    rope_freqs_kernel<F32>(positions, table, inv_freq, cos_out, sin_out, n_pos, n_freq, precise);
}

extern "C" __global__ void __launch_bounds__(THREADS)
rope_freqs_f16(const int* positions, const unsigned int* table, unsigned short* inv_freq,
    unsigned short* cos_out, unsigned short* sin_out, unsigned int n_pos, unsigned int n_freq,
    int precise) {
    rope_freqs_kernel<F16>(positions, table, inv_freq, cos_out, sin_out, n_pos, n_freq, precise);
}

extern "C" __global__ void __launch_bounds__(THREADS)
rope_freqs_bf16(const int* positions, const unsigned int* table, unsigned short* inv_freq,
    unsigned short* cos_out, unsigned short* sin_out, unsigned int n_pos, unsigned int n_freq,
    int precise) {
    rope_freqs_kernel<BF16>(positions, table, inv_freq, cos_out, sin_out, n_pos, n_freq, precise);
}

// =============================================================================================
// The FAST rope kernel: angles once per token, 16-byte vectors.
//
// The simple kernel above computes cos and sin for every pair of every head, although the angle
// depends only on the token's position and the pair's frequency: with 32 heads, 31 of every 32
// sincosf calls repeat one already made. It also moves 2-byte values one at a time.
// The fast kernel gives a block one token (b, s) at a time:
//   step 1: threads 0 .. pairs-1 compute cos and sin of the token's position for one frequency
//           each (the same cos_sin as above, so the same bits) into shared memory;
//   step 2: every thread takes 16-byte chunks of the token's heads (4 f32 or 8 f16/bf16 values):
//           half_split: chunk c of the first half and chunk c of the second half, which hold
//           the two dims of the same pairs; interleaved: one chunk holds whole (2i, 2i+1) pairs;
//           pass-through dims (partial rotary) are copied as whole chunks, bit for bit;
//   step 3: rotate in f32 exactly as the simple kernel does (y_a = x_a c - x_b s,
//           y_b = x_b c + x_a s, no fused multiply-add) and store 16 bytes at a time.
// Every value is read once and written once, and each element's result is bit-identical to the
// simple kernel's. The host runs it for the half_split and interleaved layouts when the chunks
// line up (rot / 2, head_dim and the pass-through dims are multiples of the chunk); chatglm2d and
// ragged shapes run the simple kernel.
// =============================================================================================

#define FAST_THREADS 256
#define FAST_MAX_PAIRS 512  // frequencies per token held in shared memory (head_dim <= 1024)

template <class D>
__device__ void rope_fast_kernel(const typename D::T* x, typename D::T* y, const int* positions,
                                 const unsigned int* table, unsigned int tokens, unsigned int seq,
                                 unsigned int heads, unsigned int head_dim, unsigned int x_seq,
                                 unsigned int rot, int layout, unsigned int pos_rows, int precise) {
    __shared__ float cos_t[FAST_MAX_PAIRS];
    __shared__ float sin_t[FAST_MAX_PAIRS];
    const unsigned int PER = 16 / sizeof(typename D::T);
    const unsigned int pairs = rot / 2;
    // Chunks per head: rotated ones (half_split: each covers PER pairs, split over both halves;
    // interleaved: PER / 2 pairs) and pass-through ones.
    const unsigned int rotate_chunks = layout == LAYOUT_HALF_SPLIT ? pairs / PER : rot / PER;
    const unsigned int chunks = rotate_chunks + (head_dim - rot) / PER;
    for (unsigned int token = blockIdx.x; token < tokens; token += gridDim.x) {
        unsigned int s = token % seq, b = token / seq;
        unsigned int sx = x_seq == 1 ? 0 : s;
        const typename D::T* xt = x + (unsigned long long)(b * x_seq + sx) * heads * head_dim;
        typename D::T* yt = y + (unsigned long long)token * heads * head_dim;

        // step 1: the token's cos and sin, one frequency per thread.
        int p = position_of(positions, pos_rows, seq, b, s);
        __syncthreads();  // the previous token's angles have been used
        for (unsigned int f = threadIdx.x; f < pairs; f += blockDim.x)
            cos_sin(p, table, f, precise, &cos_t[f], &sin_t[f]);
        __syncthreads();

        // step 2 and 3: 16-byte chunks of every head.
        for (unsigned int item = threadIdx.x; item < heads * chunks; item += blockDim.x) {
            unsigned int h = item / chunks, c = item % chunks;
            const typename D::T* xh = xt + h * head_dim;
            typename D::T* yh = yt + h * head_dim;
            if (c >= rotate_chunks) {
                // Partial rotary: pass-through dims, copied as stored.
                unsigned int at = rot + (c - rotate_chunks) * PER;
                reinterpret_cast<uint4*>(yh + at)[0] = reinterpret_cast<const uint4*>(xh + at)[0];
                continue;
            }
            float out_a[16 / sizeof(typename D::T)], out_b[16 / sizeof(typename D::T)];
            if (layout == LAYOUT_HALF_SPLIT) {
                // dims c*PER + i (a) and pairs + c*PER + i (b) form pair c*PER + i.
                unsigned int at = c * PER;
                uint4 va = reinterpret_cast<const uint4*>(xh + at)[0];
                uint4 vb = reinterpret_cast<const uint4*>(xh + pairs + at)[0];
#pragma unroll
                for (unsigned int i = 0; i < PER; ++i) {
                    float xa = unpack(D(), va, i), xb = unpack(D(), vb, i);
                    float cs = cos_t[at + i], sn = sin_t[at + i];
                    out_a[i] = xa * cs - xb * sn;
                    out_b[i] = xb * cs + xa * sn;
                }
                reinterpret_cast<uint4*>(yh + at)[0] = pack(D(), out_a);
                reinterpret_cast<uint4*>(yh + pairs + at)[0] = pack(D(), out_b);
            } else {
                // interleaved: dims (2l, 2l + 1) form pair l; one chunk holds PER / 2 pairs.
                unsigned int at = c * PER;
                uint4 v = reinterpret_cast<const uint4*>(xh + at)[0];
#pragma unroll
                for (unsigned int i = 0; i < PER; i += 2) {
                    float xa = unpack(D(), v, i), xb = unpack(D(), v, i + 1);
                    unsigned int l = (at + i) / 2;
                    float cs = cos_t[l], sn = sin_t[l];
                    out_a[i] = xa * cs - xb * sn;
                    out_a[i + 1] = xb * cs + xa * sn;
                }
                reinterpret_cast<uint4*>(yh + at)[0] = pack(D(), out_a);
            }
        }
    }
}

#define ROPE_FAST_ENTRY(NAME, D)                                                                \
    extern "C" __global__ void __launch_bounds__(FAST_THREADS)                                  \
        NAME(const D::T* x, D::T* y, const int* positions, const unsigned int* table,           \
             unsigned int tokens, unsigned int seq, unsigned int heads, unsigned int head_dim,   \
             unsigned int x_seq, unsigned int rot, int layout, unsigned int pos_rows,            \
             int precise) {                                                                      \
        rope_fast_kernel<D>(x, y, positions, table, tokens, seq, heads, head_dim, x_seq, rot,    \
                            layout, pos_rows, precise);                                          \
    }

ROPE_FAST_ENTRY(rope_fast_f32, F32)
ROPE_FAST_ENTRY(rope_fast_f16, F16)
ROPE_FAST_ENTRY(rope_fast_bf16, BF16)
