// emu.h: runs CUDA kernels on the CPU, so their logic (indexing, reductions, barriers, warp
// shuffles, edge cases) is tested on machines without a GPU. tests/cuda_emu/mod.rs compiles
//   emu.h + dtype_emu.h + kernels/<topic>.cu (with __shared__ declarations rewritten) + a driver
// as one C++20 program with g++ (-O1 -ffp-contract=off: no fused multiply-add, as kernelbook's
// NVRTC builds use --fmad=false) and runs it on a script of buffers and launches.
//
// Execution model:
// * the blocks of a grid run one after another; the threads of a block are FIBERS on one OS
//   thread (a stack switch of the callee-saved registers, in assembly on x86-64 and aarch64,
//   ucontext elsewhere), switched only at __syncthreads and warp intrinsics. So `__shared__`
//   variables are plain statics (one per template instantiation, as on the GPU), atomics are
//   plain read-modify-writes, and threadIdx / blockIdx are globals set on every switch;
// * a fiber runs until it blocks; the order the scheduler visits fibers is a parameter
//   (forward, reverse, seeded shuffle; the last two also run the blocks in reverse order). A
//   kernel whose result depends on that order has a race between two barriers (or between
//   blocks); the tests run kernels under several orders and require the same bits;
// * __syncthreads waits for every thread of the block that has not exited (as on sm_70+);
// * a warp is 32 consecutive linear thread ids. Warp intrinsics (__shfl_*_sync, __ballot_sync,
//   __any_sync, __all_sync, __syncwarp, __reduce_*_sync) wait for every lane of their mask and
//   follow PTX shfl.sync's lane arithmetic (width, clamping). Errors, not hangs: a mask lane that
//   exited, lanes disagreeing on the intrinsic or the mask, a source lane outside the mask, and
//   a block where nothing can run any more (divergent barriers) abort with the waiting threads.
//   __activemask waits for every lane that has not exited (converged code);
// * shared memory is filled with 0xff bytes (NaN as f32) at the start of every block, so a read
//   before a write shows up; global buffers are allocated 256-byte aligned like cudaMalloc;
// * the tests build with AddressSanitizer and UBSan when available: out-of-bounds reads and
//   writes, misaligned vector accesses (a fault on the GPU), shifts past the word size and
//   float-to-int overflow are reported with the kernel, block and thread.
//
// Arithmetic is IEEE f32 as on the GPU without fast math (no flush-to-zero). Library functions
// (expf, logf, sinf, ...) are glibc's, which are at least as accurate as CUDA's (CUDA's expf has
// 2 ulp, glibc's < 1 ulp): results can differ from a GPU in the last bit there, which the tests'
// tolerances allow. The approximate intrinsics are modelled on their main error source:
// __expf(x) = exp2f(x * log2(e) rounded to f32), __logf(x) = log2f(x) * ln(2) rounded;
// __sinf / __cosf / __tanf / __fdividef are the accurate functions. fmaxf / fminf follow PTX
// max.f32 / min.f32: a NaN operand is ignored, and -0 < +0.

#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <bit>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <functional>
#include <limits>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define KB_ASAN 1
#else
#define KB_ASAN 0
#endif
// mod.rs defines KB_SANITIZE=1 when it builds with -fsanitize (the runtime's death callback
// then names the kernel, block and thread of a report).
#ifndef KB_SANITIZE
#define KB_SANITIZE 0
#endif
#if KB_SANITIZE
#include <sanitizer/common_interface_defs.h>
#endif

// ---------------------------------------------------------------------------------------------
// Qualifiers.
// ---------------------------------------------------------------------------------------------

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define __align__(n) __attribute__((aligned(n)))
#define __constant__ static
// mod.rs rewrites each `__shared__ T name[...];` to `static T name[...];` plus a registration
// (KB_SHARED_REGISTER) that lets the runtime poison it at every block start. This definition
// covers any declaration the rewrite did not recognise: still a static, just not poisoned.
#define __shared__ static
#define __managed__

// ---------------------------------------------------------------------------------------------
// Built-in types and the thread coordinates.
// ---------------------------------------------------------------------------------------------

struct uint3 {
    unsigned int x, y, z;
};
struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1)
        : x(x_), y(y_), z(z_) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};

// Vector types with CUDA's alignment (a misaligned access through them is a UBSan error here and
// a fault on the GPU).
#define KB_VEC2(NAME, T, ALIGN)                                                               \
    struct __attribute__((aligned(ALIGN))) NAME {                                             \
        T x, y;                                                                               \
    };                                                                                        \
    static inline NAME make_##NAME(T x, T y) { return NAME{x, y}; }
#define KB_VEC3(NAME, T)                                                                      \
    struct NAME {                                                                             \
        T x, y, z;                                                                            \
    };                                                                                        \
    static inline NAME make_##NAME(T x, T y, T z) { return NAME{x, y, z}; }
#define KB_VEC4(NAME, T, ALIGN)                                                               \
    struct __attribute__((aligned(ALIGN))) NAME {                                             \
        T x, y, z, w;                                                                         \
    };                                                                                        \
    static inline NAME make_##NAME(T x, T y, T z, T w) { return NAME{x, y, z, w}; }

KB_VEC2(uint2, unsigned int, 8)
KB_VEC2(int2, int, 8)
KB_VEC2(float2, float, 8)
KB_VEC2(ushort2, unsigned short, 4)
KB_VEC2(short2, short, 4)
KB_VEC2(uchar2, unsigned char, 2)
KB_VEC2(ulonglong2, unsigned long long, 16)
KB_VEC2(longlong2, long long, 16)
KB_VEC2(double2, double, 16)
KB_VEC3(int3, int)
KB_VEC3(float3, float)
KB_VEC4(uint4, unsigned int, 16)
KB_VEC4(int4, int, 16)
KB_VEC4(float4, float, 16)
KB_VEC4(ushort4, unsigned short, 8)
KB_VEC4(short4, short, 8)
KB_VEC4(uchar4, unsigned char, 4)
static inline uint3 make_uint3(unsigned int x, unsigned int y, unsigned int z) {
    return uint3{x, y, z};
}

// Set by the scheduler before a fiber runs (constant for the fiber's life, so a value the
// compiler keeps in a register across a switch is still right).
static uint3 threadIdx;
static uint3 blockIdx;
static dim3 blockDim;
static dim3 gridDim;
static const int warpSize = 32;

// ---------------------------------------------------------------------------------------------
// Runtime state and error reporting.
// ---------------------------------------------------------------------------------------------

enum KbState { KB_READY, KB_AT_BARRIER, KB_AT_WARP, KB_DONE };

// A fiber's saved context. kb_switch(save, to) stores the callee-saved registers on the current
// stack, the stack pointer in *save, and resumes the context whose stack pointer is `to`: a few
// nanoseconds, where swapcontext makes a system call (signal mask) and, under AddressSanitizer,
// clears the shadow of the whole target stack. Other architectures (or -DKB_UCONTEXT) use
// ucontext.
#if defined(__x86_64__) && !defined(KB_UCONTEXT)
#define KB_ASM_SWITCH 1
extern "C" void kb_switch(void** save, void* to);
asm(R"(
    .text
    .globl kb_switch
    .type kb_switch, @function
kb_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size kb_switch, .-kb_switch
)");
#elif defined(__aarch64__) && !defined(KB_UCONTEXT)
#define KB_ASM_SWITCH 1
extern "C" void kb_switch(void** save, void* to);
asm(R"(
    .text
    .globl kb_switch
    .type kb_switch, %function
kb_switch:
    sub sp, sp, #176
    stp x19, x20, [sp, #0]
    stp x21, x22, [sp, #16]
    stp x23, x24, [sp, #32]
    stp x25, x26, [sp, #48]
    stp x27, x28, [sp, #64]
    stp x29, x30, [sp, #80]
    stp d8, d9, [sp, #96]
    stp d10, d11, [sp, #112]
    stp d12, d13, [sp, #128]
    stp d14, d15, [sp, #144]
    mov x9, sp
    str x9, [x0]
    mov sp, x1
    ldp x19, x20, [sp, #0]
    ldp x21, x22, [sp, #16]
    ldp x23, x24, [sp, #32]
    ldp x25, x26, [sp, #48]
    ldp x27, x28, [sp, #64]
    ldp x29, x30, [sp, #80]
    ldp d8, d9, [sp, #96]
    ldp d10, d11, [sp, #112]
    ldp d12, d13, [sp, #128]
    ldp d14, d15, [sp, #144]
    add sp, sp, #176
    ret
    .size kb_switch, .-kb_switch
)");
#else
#define KB_ASM_SWITCH 0
#endif

enum KbWarpOp {
    KB_W_SHFL_IDX,
    KB_W_SHFL_UP,
    KB_W_SHFL_DOWN,
    KB_W_SHFL_XOR,
    KB_W_BALLOT,
    KB_W_ANY,
    KB_W_ALL,
    KB_W_SYNCWARP,
    KB_W_REDUCE_ADD,
    KB_W_REDUCE_MIN_U,
    KB_W_REDUCE_MAX_U,
    KB_W_REDUCE_MIN_I,
    KB_W_REDUCE_MAX_I,
    KB_W_REDUCE_AND,
    KB_W_REDUCE_OR,
    KB_W_REDUCE_XOR,
    KB_W_MATCH_ANY,
};

static const char* kb_warp_op_name(int op) {
    switch (op) {
        case KB_W_SHFL_IDX: return "__shfl_sync";
        case KB_W_SHFL_UP: return "__shfl_up_sync";
        case KB_W_SHFL_DOWN: return "__shfl_down_sync";
        case KB_W_SHFL_XOR: return "__shfl_xor_sync";
        case KB_W_BALLOT: return "__ballot_sync";
        case KB_W_ANY: return "__any_sync";
        case KB_W_ALL: return "__all_sync";
        case KB_W_SYNCWARP: return "__syncwarp";
        case KB_W_REDUCE_ADD: return "__reduce_add_sync";
        case KB_W_REDUCE_MIN_U: return "__reduce_min_sync(unsigned)";
        case KB_W_REDUCE_MAX_U: return "__reduce_max_sync(unsigned)";
        case KB_W_REDUCE_MIN_I: return "__reduce_min_sync(int)";
        case KB_W_REDUCE_MAX_I: return "__reduce_max_sync(int)";
        case KB_W_REDUCE_AND: return "__reduce_and_sync";
        case KB_W_REDUCE_OR: return "__reduce_or_sync";
        case KB_W_REDUCE_XOR: return "__reduce_xor_sync";
        case KB_W_MATCH_ANY: return "__match_any_sync";
    }
    return "?";
}

enum KbBarrierOp { KB_B_SYNC, KB_B_COUNT, KB_B_AND, KB_B_OR };

struct KbFiber {
#if KB_ASM_SWITCH
    void* sp = nullptr;
#else
    ucontext_t ctx;
#endif
    char* stack = nullptr;  // usable stack (above the guard page)
    size_t stack_size = 0;
    void* fake_stack = nullptr;  // AddressSanitizer's per-fiber state
    uint3 tid{0, 0, 0};
    unsigned int linear = 0;
    KbState state = KB_DONE;
    // The barrier or warp intrinsic this fiber waits in, and what it brought.
    int op = 0;
    unsigned int mask = 0;
    uint64_t value = 0;
    int arg = 0;
    int width = 32;
    uint64_t result = 0;
};

// Lanes of one warp waiting in the same warp intrinsic with the same mask.
struct KbWarpGroup {
    unsigned int mask;
    int op;
    unsigned int arrived;
};

struct KbRuntime {
    const char* entry = "(no kernel)";
    std::vector<KbFiber> fibers;
    unsigned int threads = 0;  // threads in the current block
    unsigned int live = 0;     // not exited
    unsigned int at_barrier = 0;
    int barrier_op = KB_B_SYNC;
    int current = -1;  // fiber running, -1: the scheduler
#if KB_ASM_SWITCH
    void* sched_sp = nullptr;
#else
    ucontext_t sched;
#endif
    const void* sched_stack_bottom = nullptr;
    size_t sched_stack_size = 0;
    std::function<void()> body;
    // The current pass over the block's threads: order[pos] runs; a blocking thread hands over
    // to the next runnable one after it, the last one back to the scheduler.
    std::vector<unsigned int> order;
    unsigned int pos = 0;
    // Per warp: the warp intrinsics some lanes wait in (one group per mask), the exited lanes.
    std::vector<std::vector<struct KbWarpGroup>> warp_groups;
    std::vector<unsigned int> warp_exited;
    // Scheduling order: 0 forward, 1 reverse, 2 seeded shuffle.
    int schedule = 0;
    uint64_t seed = 1;
    uint64_t switches = 0;
    size_t dynamic_shared_bytes = 0;
};
static KbRuntime kb_rt;

static void kb_print_context(FILE* out) {
    fprintf(out, "  in kernel %s, grid (%u, %u, %u) x block (%u, %u, %u)", kb_rt.entry, gridDim.x,
            gridDim.y, gridDim.z, blockDim.x, blockDim.y, blockDim.z);
    if (kb_rt.current >= 0) {
        fprintf(out, ", block (%u, %u, %u), thread (%u, %u, %u)\n", blockIdx.x, blockIdx.y,
                blockIdx.z, threadIdx.x, threadIdx.y, threadIdx.z);
    } else {
        fprintf(out, "\n");
    }
}

[[noreturn]] __attribute__((format(printf, 1, 2))) static void kb_fail(const char* fmt, ...) {
    fflush(stdout);
    fprintf(stderr, "cuda-emu error: ");
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
    kb_print_context(stderr);
    fflush(stderr);
    _exit(86);
}

// Sanitizer reports end here; say which kernel, block and thread was running.
[[maybe_unused]] static void kb_death_callback() { kb_print_context(stderr); }

static void kb_signal_handler(int sig) {
    const char* what = sig == SIGSEGV ? "SIGSEGV (invalid memory access)"
                       : sig == SIGBUS ? "SIGBUS (misaligned or invalid access)"
                       : sig == SIGFPE ? "SIGFPE (integer division by zero?)"
                       : sig == SIGABRT ? "abort (a sanitizer report above?)"
                                        : "a signal";
    fprintf(stderr, "cuda-emu error: %s\n", what);
    kb_print_context(stderr);
    _exit(87);
}

// ---------------------------------------------------------------------------------------------
// Shared memory: registered statics, poisoned at every block start.
// ---------------------------------------------------------------------------------------------

struct KbSharedRegion {
    void* p;
    size_t n;
};
static std::vector<KbSharedRegion>& kb_shared_regions() {
    static std::vector<KbSharedRegion> regions;
    return regions;
}

// Writes byte by byte without instrumentation: the region may end in a sanitizer red zone.
__attribute__((no_sanitize_address, noinline)) static void kb_poison(void* p, size_t n) {
    volatile unsigned char* b = (volatile unsigned char*)p;
    for (size_t i = 0; i < n; ++i) b[i] = 0xff;
}

struct KbSharedReg {
    KbSharedReg(void* p, size_t n) {
        kb_shared_regions().push_back({p, n});
        kb_poison(p, n);
    }
};
#define KB_CAT2(a, b) a##b
#define KB_CAT(a, b) KB_CAT2(a, b)
#define KB_SHARED_REGISTER(name) \
    static KbSharedReg KB_CAT(kb_shared_reg_, __COUNTER__)((void*)&(name), sizeof(name));

// Dynamic shared memory (`extern __shared__ T name[];`, rewritten by mod.rs to a pointer here).
alignas(256) static unsigned char kb_dynamic_shared[232448];

static void kb_poison_shared() {
    for (const KbSharedRegion& r : kb_shared_regions()) kb_poison(r.p, r.n);
    kb_poison(kb_dynamic_shared, kb_rt.dynamic_shared_bytes);
}

// ---------------------------------------------------------------------------------------------
// Fibers and the scheduler.
// ---------------------------------------------------------------------------------------------

#if KB_ASAN
#define KB_STACK_BYTES (512u << 10)
#else
#define KB_STACK_BYTES (256u << 10)
#endif

// Switch from the running fiber (or the scheduler, current = -1) to fiber `to` (or the
// scheduler, to = -1). A dying fiber's context is not saved.
static void kb_transfer(int to, bool dying) {
    const int from = kb_rt.current;
    ++kb_rt.switches;
#if KB_ASAN
    void* fake = nullptr;
    void** fake_save = dying ? nullptr : from >= 0 ? &kb_rt.fibers[from].fake_stack : &fake;
    if (to >= 0) {
        __sanitizer_start_switch_fiber(fake_save, kb_rt.fibers[to].stack,
                                       kb_rt.fibers[to].stack_size);
    } else {
        __sanitizer_start_switch_fiber(fake_save, kb_rt.sched_stack_bottom, kb_rt.sched_stack_size);
    }
#endif
    kb_rt.current = to;
    if (to >= 0) threadIdx = kb_rt.fibers[to].tid;
#if KB_ASM_SWITCH
    void* discard = nullptr;
    void** save = dying ? &discard : from >= 0 ? &kb_rt.fibers[from].sp : &kb_rt.sched_sp;
    kb_switch(save, to >= 0 ? kb_rt.fibers[to].sp : kb_rt.sched_sp);
#else
    ucontext_t* target = to >= 0 ? &kb_rt.fibers[to].ctx : &kb_rt.sched;
    if (dying) {
        setcontext(target);
    } else {
        swapcontext(from >= 0 ? &kb_rt.fibers[from].ctx : &kb_rt.sched, target);
    }
#endif
    // Resumed: whoever switched here set kb_rt.current and threadIdx.
#if KB_ASAN
    __sanitizer_finish_switch_fiber(from >= 0 ? kb_rt.fibers[from].fake_stack : fake, nullptr,
                                    nullptr);
#endif
}

// The running fiber blocks (or has finished): hand over to the next runnable fiber of this pass,
// or to the scheduler at the end of the pass.
static void kb_yield(bool dying) {
    const unsigned int n = (unsigned int)kb_rt.order.size();
    for (unsigned int k = kb_rt.pos + 1; k < n; ++k) {
        const unsigned int i = kb_rt.order[k];
        if (kb_rt.fibers[i].state == KB_READY) {
            kb_rt.pos = k;
            kb_transfer((int)i, dying);
            return;
        }
    }
    kb_transfer(-1, dying);
}

static void kb_block_barrier_release() {
    // Every live thread is at the barrier: compute the result and let them all go on.
    uint64_t count = 0;
    for (unsigned int i = 0; i < kb_rt.threads; ++i) {
        KbFiber& f = kb_rt.fibers[i];
        if (f.state == KB_AT_BARRIER && f.value) ++count;
    }
    uint64_t result = 0;
    switch (kb_rt.barrier_op) {
        case KB_B_COUNT: result = count; break;
        case KB_B_AND: result = count == kb_rt.at_barrier; break;
        case KB_B_OR: result = count > 0; break;
        default: break;
    }
    for (unsigned int i = 0; i < kb_rt.threads; ++i) {
        KbFiber& f = kb_rt.fibers[i];
        if (f.state == KB_AT_BARRIER) {
            f.state = KB_READY;
            f.result = result;
        }
    }
    kb_rt.at_barrier = 0;
}

// A fiber's first function: the kernel body, then exit. Never returns.
static void kb_fiber_main() {
#if KB_ASAN
    __sanitizer_finish_switch_fiber(nullptr, nullptr, nullptr);
#endif
    kb_rt.body();
    KbFiber& f = kb_rt.fibers[kb_rt.current];
    f.state = KB_DONE;
    --kb_rt.live;
    // Lanes waiting for this one in a warp intrinsic would wait forever: undefined on the GPU.
    const unsigned int warp = f.linear / 32u, lane = f.linear % 32u;
    kb_rt.warp_exited[warp] |= 1u << lane;
    for (const KbWarpGroup& g : kb_rt.warp_groups[warp])
        if (g.mask >> lane & 1u)
            kb_fail("lane %u exits while other lanes of its warp wait for it in %s (mask "
                    "0x%08x): undefined on the GPU",
                    lane, kb_warp_op_name(g.op), g.mask);
    if (kb_rt.at_barrier > 0 && kb_rt.at_barrier == kb_rt.live) kb_block_barrier_release();
    kb_yield(true);
}

static char* kb_alloc_stack(size_t bytes) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    void* p = mmap(nullptr, bytes + page, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) kb_fail("cannot map a fiber stack of %zu bytes", bytes);
    mprotect(p, page, PROT_NONE);  // a stack overflow faults instead of corrupting its neighbour
    return (char*)p + page;
}

static const char* kb_state_name(const KbFiber& f) {
    switch (f.state) {
        case KB_READY: return "runnable";
        case KB_AT_BARRIER: return "__syncthreads";
        case KB_AT_WARP: return kb_warp_op_name(f.op);
        case KB_DONE: return "exited";
    }
    return "?";
}

// Nothing can run but not every thread has finished: list who waits where, and stop.
[[noreturn]] static void kb_deadlock() {
    fflush(stdout);
    fprintf(stderr,
            "cuda-emu error: the block cannot finish: threads wait in barriers or warp "
            "intrinsics that the other threads never reach (divergent control flow)\n");
    kb_rt.current = -1;
    kb_print_context(stderr);
    fprintf(stderr, "  block (%u, %u, %u):\n", blockIdx.x, blockIdx.y, blockIdx.z);
    unsigned int i = 0;
    while (i < kb_rt.threads) {
        const KbFiber& a = kb_rt.fibers[i];
        unsigned int j = i + 1;
        while (j < kb_rt.threads) {
            const KbFiber& b = kb_rt.fibers[j];
            if (b.state != a.state || (a.state == KB_AT_WARP && (b.op != a.op || b.mask != a.mask)))
                break;
            ++j;
        }
        if (a.state == KB_AT_WARP) {
            fprintf(stderr, "    threads %u-%u: %s (mask 0x%08x)\n", i, j - 1, kb_state_name(a),
                    a.mask);
        } else {
            fprintf(stderr, "    threads %u-%u: %s\n", i, j - 1, kb_state_name(a));
        }
        i = j;
    }
    fflush(stderr);
    _exit(88);
}

static uint64_t kb_next_random(uint64_t& s) {
    // splitmix64
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// Run one block to completion: every thread a fiber, switched at barriers.
static void kb_run_block(uint3 block) {
    blockIdx = block;
    const unsigned int n = blockDim.x * blockDim.y * blockDim.z;
    if (kb_rt.fibers.size() < n) kb_rt.fibers.resize(n);
    kb_rt.threads = n;
    kb_rt.live = n;
    kb_rt.at_barrier = 0;
    kb_poison_shared();
    for (unsigned int i = 0; i < n; ++i) {
        KbFiber& f = kb_rt.fibers[i];
        if (!f.stack) {
            f.stack = kb_alloc_stack(KB_STACK_BYTES);
            f.stack_size = KB_STACK_BYTES;
        }
        f.linear = i;
        f.tid = uint3{i % blockDim.x, (i / blockDim.x) % blockDim.y, i / (blockDim.x * blockDim.y)};
        f.state = KB_READY;
        f.fake_stack = nullptr;
#if KB_ASM_SWITCH
        // A stack that kb_switch "returns" into kb_fiber_main from: the saved registers (zero),
        // kb_fiber_main's address, and a null return address for kb_fiber_main itself.
        uintptr_t top = ((uintptr_t)(f.stack + f.stack_size)) & ~(uintptr_t)15;
#if defined(__x86_64__)
        void** sp = (void**)top;
        *--sp = nullptr;
        *--sp = (void*)&kb_fiber_main;
        for (int r = 0; r < 6; ++r) *--sp = nullptr;
        f.sp = sp;
#else
        void** sp = (void**)(top - 176);
        memset(sp, 0, 176);
        sp[11] = (void*)&kb_fiber_main;  // x30, the link register
        f.sp = sp;
#endif
#else
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = f.stack;
        f.ctx.uc_stack.ss_size = f.stack_size;
        f.ctx.uc_link = nullptr;
        makecontext(&f.ctx, (void (*)())kb_fiber_main, 0);
#endif
    }
    const unsigned int warps = (n + 31u) / 32u;
    kb_rt.warp_groups.assign(warps, {});
    kb_rt.warp_exited.assign(warps, 0u);
    std::vector<unsigned int>& order = kb_rt.order;
    order.resize(n);
    for (unsigned int i = 0; i < n; ++i) order[i] = kb_rt.schedule == 1 ? n - 1 - i : i;
    uint64_t rng = kb_rt.seed ^ ((uint64_t)block.x << 32) ^ ((uint64_t)block.y << 16) ^ block.z;
    for (;;) {
        if (kb_rt.schedule == 2) {
            for (unsigned int i = n; i > 1; --i) {
                unsigned int j = (unsigned int)(kb_next_random(rng) % i);
                std::swap(order[i - 1], order[j]);
            }
        }
        // One pass: the first runnable fiber; the others follow by kb_yield.
        unsigned int k = 0;
        while (k < n && kb_rt.fibers[order[k]].state != KB_READY) ++k;
        if (k == n) break;
        kb_rt.pos = k;
        kb_transfer((int)order[k], false);
    }
    if (kb_rt.live > 0) kb_deadlock();
}

// Block the running fiber until a barrier releases it.
static void kb_wait() {
    KbFiber& f = kb_rt.fibers[kb_rt.current];
    while (f.state != KB_READY) kb_yield(false);
}

static KbFiber& kb_self() {
    if (kb_rt.current < 0) kb_fail("a device function was called outside a kernel launch");
    return kb_rt.fibers[kb_rt.current];
}

// ---------------------------------------------------------------------------------------------
// Block barriers.
// ---------------------------------------------------------------------------------------------

static uint64_t kb_block_barrier(int op, int predicate) {
    KbFiber& f = kb_self();
    if (kb_rt.at_barrier == 0) {
        kb_rt.barrier_op = op;
    } else if (kb_rt.barrier_op != op) {
        kb_fail("threads of one block meet in different barrier kinds (__syncthreads vs "
                "__syncthreads_count/and/or)");
    }
    f.state = KB_AT_BARRIER;
    f.value = predicate != 0;
    ++kb_rt.at_barrier;
    if (kb_rt.at_barrier == kb_rt.live) {
        kb_block_barrier_release();
    } else {
        kb_wait();
    }
    return f.result;
}

static inline void __syncthreads() { kb_block_barrier(KB_B_SYNC, 0); }
static inline int __syncthreads_count(int p) { return (int)kb_block_barrier(KB_B_COUNT, p); }
static inline int __syncthreads_and(int p) { return (int)kb_block_barrier(KB_B_AND, p); }
static inline int __syncthreads_or(int p) { return (int)kb_block_barrier(KB_B_OR, p); }
static inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline void __threadfence_system() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

// ---------------------------------------------------------------------------------------------
// Warp intrinsics.
// ---------------------------------------------------------------------------------------------

// Lanes of this fiber's warp that exist in the block (a last, partial warp has fewer).
static unsigned int kb_warp_existing(unsigned int warp) {
    unsigned int first = warp * 32u;
    unsigned int count = kb_rt.threads - first < 32u ? kb_rt.threads - first : 32u;
    return count == 32u ? 0xffffffffu : ((1u << count) - 1u);
}

// PTX shfl.sync: the source lane for `lane`, or `lane` itself when the source is out of range.
static unsigned int kb_shfl_source(int op, unsigned int lane, unsigned int b, int width) {
    const unsigned int segmask = (unsigned int)(32 - width) & 0x1fu;  // c[12:8]
    const unsigned int clamp = op == KB_W_SHFL_UP ? 0u : 0x1fu;       // c[4:0]
    const unsigned int max_lane = (lane & segmask) | (clamp & ~segmask);
    const unsigned int min_lane = lane & segmask;
    unsigned int j = lane;
    bool in_range = true;
    switch (op) {
        case KB_W_SHFL_UP:
            j = lane - b;
            in_range = (int)j >= (int)max_lane;  // PTX: pval = (j >= maxLane) for .up
            break;
        case KB_W_SHFL_DOWN:
            j = lane + b;
            in_range = j <= max_lane;
            break;
        case KB_W_SHFL_XOR:
            j = lane ^ b;
            in_range = j <= max_lane;
            break;
        default:  // idx
            j = min_lane | (b & 0x1fu & ~segmask);
            in_range = j <= max_lane;
            break;
    }
    (void)min_lane;
    return in_range ? (j & 31u) : lane;
}

// Complete a warp intrinsic once every lane of the mask has arrived.
static void kb_warp_complete(unsigned int warp, unsigned int mask, int op) {
    KbFiber* lanes = &kb_rt.fibers[warp * 32u];
    switch (op) {
        case KB_W_SHFL_IDX:
        case KB_W_SHFL_UP:
        case KB_W_SHFL_DOWN:
        case KB_W_SHFL_XOR:
            for (unsigned int l = 0; l < 32u; ++l) {
                if (!(mask >> l & 1u)) continue;
                KbFiber& f = lanes[l];
                unsigned int src = kb_shfl_source(op, l, (unsigned int)f.arg, f.width);
                if (!(mask >> src & 1u)) {
                    kb_rt.current = (int)f.linear;
                    threadIdx = f.tid;
                    kb_fail("%s: lane %u reads lane %u, which is not in the mask 0x%08x "
                            "(undefined on the GPU)",
                            kb_warp_op_name(op), l, src, mask);
                }
                f.result = lanes[src].value;
            }
            break;
        default: {
            uint64_t ballot = 0, sum = 0, band = ~0ull, bor = 0, bxor = 0;
            uint32_t umin = 0xffffffffu, umax = 0;
            int32_t imin = 0x7fffffff, imax = (int32_t)0x80000000;
            for (unsigned int l = 0; l < 32u; ++l) {
                if (!(mask >> l & 1u)) continue;
                const KbFiber& f = lanes[l];
                const uint32_t v = (uint32_t)f.value;
                if (v) ballot |= 1ull << l;
                sum += v;
                band &= v;
                bor |= v;
                bxor ^= v;
                umin = v < umin ? v : umin;
                umax = v > umax ? v : umax;
                imin = (int32_t)v < imin ? (int32_t)v : imin;
                imax = (int32_t)v > imax ? (int32_t)v : imax;
            }
            for (unsigned int l = 0; l < 32u; ++l) {
                if (!(mask >> l & 1u)) continue;
                KbFiber& f = lanes[l];
                uint64_t r = 0;
                switch (op) {
                    case KB_W_BALLOT: r = ballot; break;
                    case KB_W_ANY: r = ballot != 0; break;
                    case KB_W_ALL: r = ballot == mask; break;
                    case KB_W_REDUCE_ADD: r = (uint32_t)sum; break;
                    case KB_W_REDUCE_MIN_U: r = umin; break;
                    case KB_W_REDUCE_MAX_U: r = umax; break;
                    case KB_W_REDUCE_MIN_I: r = (uint32_t)imin; break;
                    case KB_W_REDUCE_MAX_I: r = (uint32_t)imax; break;
                    case KB_W_REDUCE_AND: r = (uint32_t)band; break;
                    case KB_W_REDUCE_OR: r = (uint32_t)bor; break;
                    case KB_W_REDUCE_XOR: r = (uint32_t)bxor; break;
                    case KB_W_MATCH_ANY: {
                        uint32_t same = 0;
                        for (unsigned int k = 0; k < 32u; ++k)
                            if ((mask >> k & 1u) && lanes[k].value == f.value) same |= 1u << k;
                        r = same;
                        break;
                    }
                    default: break;  // __syncwarp
                }
                f.result = r;
            }
            break;
        }
    }
    for (unsigned int l = 0; l < 32u; ++l)
        if (mask >> l & 1u) lanes[l].state = KB_READY;
}

static uint64_t kb_warp_op(int op, unsigned int mask, uint64_t value, int arg, int width) {
    KbFiber& f = kb_self();
    const unsigned int warp = f.linear / 32u, lane = f.linear % 32u;
    if (width <= 0 || width > 32 || (width & (width - 1)) != 0)
        kb_fail("%s: width %d is not a power of two in [1, 32]", kb_warp_op_name(op), width);
    if (!(mask >> lane & 1u))
        kb_fail("%s: the calling lane %u is not in its mask 0x%08x", kb_warp_op_name(op), lane,
                mask);
    // Lanes that do not exist (a partial last warp) are inactive, as on the GPU: drop them.
    mask &= kb_warp_existing(warp);
    if (mask & kb_rt.warp_exited[warp])
        kb_fail("%s with mask 0x%08x: lane %u has exited (undefined on the GPU)",
                kb_warp_op_name(op), mask, __builtin_ctz(mask & kb_rt.warp_exited[warp]));
    f.state = KB_AT_WARP;
    f.op = op;
    f.mask = mask;
    f.value = value;
    f.arg = arg;
    f.width = width;
    // Join the lanes waiting with the same mask, or start a group.
    std::vector<KbWarpGroup>& groups = kb_rt.warp_groups[warp];
    size_t g = 0;
    while (g < groups.size() && groups[g].mask != mask) {
        if (groups[g].mask & mask)
            kb_fail("lanes of warp %u meet in warp intrinsics with different masks: %s (mask "
                    "0x%08x) and %s (mask 0x%08x)",
                    warp, kb_warp_op_name(op), mask, kb_warp_op_name(groups[g].op),
                    groups[g].mask);
        ++g;
    }
    if (g == groups.size()) {
        groups.push_back(KbWarpGroup{mask, op, 0u});
    } else if (groups[g].op != op) {
        kb_fail("lanes of warp %u meet in different warp intrinsics: %s and %s (mask 0x%08x)",
                warp, kb_warp_op_name(op), kb_warp_op_name(groups[g].op), mask);
    }
    if (++groups[g].arrived == (unsigned int)__builtin_popcount(mask)) {
        groups.erase(groups.begin() + (std::ptrdiff_t)g);
        kb_warp_complete(warp, mask, op);
        threadIdx = f.tid;
        kb_rt.current = (int)f.linear;
    } else {
        kb_wait();
    }
    return f.result;
}

template <class T>
static inline uint64_t kb_bits_of(T v) {
    static_assert(sizeof(T) <= 8, "warp shuffles move at most 8 bytes");
    uint64_t b = 0;
    memcpy(&b, &v, sizeof(T));
    return b;
}
template <class T>
static inline T kb_from_bits(uint64_t b) {
    T v;
    memcpy(&v, &b, sizeof(T));
    return v;
}

template <class T>
static inline T __shfl_sync(unsigned int mask, T v, int src, int width = 32) {
    return kb_from_bits<T>(kb_warp_op(KB_W_SHFL_IDX, mask, kb_bits_of(v), src, width));
}
template <class T>
static inline T __shfl_up_sync(unsigned int mask, T v, unsigned int delta, int width = 32) {
    return kb_from_bits<T>(kb_warp_op(KB_W_SHFL_UP, mask, kb_bits_of(v), (int)delta, width));
}
template <class T>
static inline T __shfl_down_sync(unsigned int mask, T v, unsigned int delta, int width = 32) {
    return kb_from_bits<T>(kb_warp_op(KB_W_SHFL_DOWN, mask, kb_bits_of(v), (int)delta, width));
}
template <class T>
static inline T __shfl_xor_sync(unsigned int mask, T v, int lane_mask, int width = 32) {
    return kb_from_bits<T>(kb_warp_op(KB_W_SHFL_XOR, mask, kb_bits_of(v), lane_mask, width));
}
static inline unsigned int __ballot_sync(unsigned int mask, int p) {
    return (unsigned int)kb_warp_op(KB_W_BALLOT, mask, p != 0, 0, 32);
}
static inline int __any_sync(unsigned int mask, int p) {
    return (int)kb_warp_op(KB_W_ANY, mask, p != 0, 0, 32);
}
static inline int __all_sync(unsigned int mask, int p) {
    return (int)kb_warp_op(KB_W_ALL, mask, p != 0, 0, 32);
}
static inline void __syncwarp(unsigned int mask = 0xffffffffu) {
    kb_warp_op(KB_W_SYNCWARP, mask, 0, 0, 32);
}
static inline unsigned int __reduce_add_sync(unsigned int mask, unsigned int v) {
    return (unsigned int)kb_warp_op(KB_W_REDUCE_ADD, mask, v, 0, 32);
}
static inline int __reduce_add_sync(unsigned int mask, int v) {
    return (int)kb_warp_op(KB_W_REDUCE_ADD, mask, (uint32_t)v, 0, 32);
}
static inline unsigned int __reduce_min_sync(unsigned int mask, unsigned int v) {
    return (unsigned int)kb_warp_op(KB_W_REDUCE_MIN_U, mask, v, 0, 32);
}
static inline unsigned int __reduce_max_sync(unsigned int mask, unsigned int v) {
    return (unsigned int)kb_warp_op(KB_W_REDUCE_MAX_U, mask, v, 0, 32);
}
static inline int __reduce_min_sync(unsigned int mask, int v) {
    return (int)kb_warp_op(KB_W_REDUCE_MIN_I, mask, (uint32_t)v, 0, 32);
}
static inline int __reduce_max_sync(unsigned int mask, int v) {
    return (int)kb_warp_op(KB_W_REDUCE_MAX_I, mask, (uint32_t)v, 0, 32);
}
static inline unsigned int __reduce_and_sync(unsigned int mask, unsigned int v) {
    return (unsigned int)kb_warp_op(KB_W_REDUCE_AND, mask, v, 0, 32);
}
static inline unsigned int __reduce_or_sync(unsigned int mask, unsigned int v) {
    return (unsigned int)kb_warp_op(KB_W_REDUCE_OR, mask, v, 0, 32);
}
static inline unsigned int __reduce_xor_sync(unsigned int mask, unsigned int v) {
    return (unsigned int)kb_warp_op(KB_W_REDUCE_XOR, mask, v, 0, 32);
}
template <class T>
static inline unsigned int __match_any_sync(unsigned int mask, T v) {
    return (unsigned int)kb_warp_op(KB_W_MATCH_ANY, mask, kb_bits_of(v), 0, 32);
}
// The lanes of this warp that are active. On the GPU that is the lanes converged at this point,
// which the hardware decides; here __activemask waits for every lane of the warp that has not
// exited (and returns them), so it must be called by all of them, as converged code does.
static inline unsigned int __activemask() {
    KbFiber& f = kb_self();
    unsigned int warp = f.linear / 32u, m = 0;
    for (unsigned int l = 0; l < 32u && warp * 32u + l < kb_rt.threads; ++l)
        if (kb_rt.fibers[warp * 32u + l].state != KB_DONE) m |= 1u << l;
    kb_warp_op(KB_W_SYNCWARP, m, 0, 0, 32);
    return m;
}
static inline unsigned int __lanemask_lt() {
    return (1u << (kb_self().linear % 32u)) - 1u;
}

// ---------------------------------------------------------------------------------------------
// Bits and integer intrinsics.
// ---------------------------------------------------------------------------------------------

static constexpr float __int_as_float(int v) { return std::bit_cast<float>(v); }
static constexpr int __float_as_int(float v) { return std::bit_cast<int>(v); }
static constexpr float __uint_as_float(unsigned int v) { return std::bit_cast<float>(v); }
static constexpr unsigned int __float_as_uint(float v) { return std::bit_cast<unsigned int>(v); }
static constexpr double __longlong_as_double(long long v) { return std::bit_cast<double>(v); }
static constexpr long long __double_as_longlong(double v) { return std::bit_cast<long long>(v); }
static inline int __double2hiint(double d) { return (int)(__double_as_longlong(d) >> 32); }
static inline int __double2loint(double d) { return (int)__double_as_longlong(d); }
static inline double __hiloint2double(int hi, int lo) {
    return __longlong_as_double((long long)(((unsigned long long)(unsigned int)hi << 32) |
                                            (unsigned int)lo));
}

static inline unsigned int __umulhi(unsigned int a, unsigned int b) {
    return (unsigned int)(((unsigned long long)a * b) >> 32);
}
static inline int __mulhi(int a, int b) { return (int)(((long long)a * b) >> 32); }
static inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
    return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}
static inline long long __mul64hi(long long a, long long b) {
    return (long long)(((__int128)a * b) >> 64);
}
static inline int __mul24(int a, int b) { return (a << 8 >> 8) * (b << 8 >> 8); }
static inline unsigned int __umul24(unsigned int a, unsigned int b) {
    return (a & 0xffffffu) * (b & 0xffffffu);
}
static inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned int)x); }
static inline int __clzll(long long x) {
    return x == 0 ? 64 : __builtin_clzll((unsigned long long)x);
}
static inline int __popc(unsigned int x) { return __builtin_popcount(x); }
static inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
static inline int __ffs(int x) { return __builtin_ffs(x); }
static inline int __ffsll(long long x) { return __builtin_ffsll(x); }
static inline unsigned int __brev(unsigned int x) {
    x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
    x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
    x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
    x = ((x >> 8) & 0x00ff00ffu) | ((x & 0x00ff00ffu) << 8);
    return (x >> 16) | (x << 16);
}
static inline unsigned int __byte_perm(unsigned int x, unsigned int y, unsigned int s) {
    unsigned long long v = ((unsigned long long)y << 32) | x;
    unsigned int r = 0;
    for (int i = 0; i < 4; ++i) {
        unsigned int sel = (s >> (4 * i)) & 7u;
        r |= (unsigned int)((v >> (8 * sel)) & 0xffu) << (8 * i);
    }
    return r;
}
// Funnel shifts: the shift is taken mod 32 (the .wrap forms) or clamped to 32 (.clamp).
static inline unsigned int __funnelshift_l(unsigned int lo, unsigned int hi, unsigned int s) {
    unsigned long long v = ((unsigned long long)hi << 32) | lo;
    return (unsigned int)((v << (s & 31u)) >> 32);
}
static inline unsigned int __funnelshift_r(unsigned int lo, unsigned int hi, unsigned int s) {
    unsigned long long v = ((unsigned long long)hi << 32) | lo;
    return (unsigned int)(v >> (s & 31u));
}
static inline unsigned int __funnelshift_lc(unsigned int lo, unsigned int hi, unsigned int s) {
    unsigned long long v = ((unsigned long long)hi << 32) | lo;
    return (unsigned int)((v << (s > 32u ? 32u : s)) >> 32);
}
static inline unsigned int __funnelshift_rc(unsigned int lo, unsigned int hi, unsigned int s) {
    unsigned long long v = ((unsigned long long)hi << 32) | lo;
    return (unsigned int)(v >> (s > 32u ? 32u : s));
}
static inline unsigned int __sad(int a, int b, unsigned int c) {
    return c + (unsigned int)(a > b ? a - b : b - a);
}
static inline int __hadd(int a, int b) { return (int)(((long long)a + b) >> 1); }
static inline unsigned int __uhadd(unsigned int a, unsigned int b) {
    return (unsigned int)(((unsigned long long)a + b) >> 1);
}

// min / max for the integer and float types (CUDA's overloads; mixed signed / unsigned int
// compares as unsigned, as CUDA's math_functions.hpp does).
#define KB_MINMAX(T)                                                                          \
    static inline T min(T a, T b) { return a < b ? a : b; }                                   \
    static inline T max(T a, T b) { return a > b ? a : b; }
KB_MINMAX(int)
KB_MINMAX(unsigned int)
KB_MINMAX(long)
KB_MINMAX(unsigned long)
KB_MINMAX(long long)
KB_MINMAX(unsigned long long)
static inline unsigned int min(int a, unsigned int b) { return min((unsigned int)a, b); }
static inline unsigned int min(unsigned int a, int b) { return min(a, (unsigned int)b); }
static inline unsigned int max(int a, unsigned int b) { return max((unsigned int)a, b); }
static inline unsigned int max(unsigned int a, int b) { return max(a, (unsigned int)b); }
static inline unsigned long long min(long long a, unsigned long long b) {
    return min((unsigned long long)a, b);
}
static inline unsigned long long min(unsigned long long a, long long b) {
    return min(a, (unsigned long long)b);
}
static inline unsigned long long max(long long a, unsigned long long b) {
    return max((unsigned long long)a, b);
}
static inline unsigned long long max(unsigned long long a, long long b) {
    return max(a, (unsigned long long)b);
}
static inline unsigned int umin(unsigned int a, unsigned int b) { return min(a, b); }
static inline unsigned int umax(unsigned int a, unsigned int b) { return max(a, b); }

// ---------------------------------------------------------------------------------------------
// Floating point.
// ---------------------------------------------------------------------------------------------

static constexpr float KB_CANONICAL_NAN = std::bit_cast<float>(0x7fffffffu);

// PTX max.f32 / min.f32: NaN operands are ignored (both NaN: canonical NaN); -0 < +0.
static inline float kb_fmaxf(float a, float b) {
    if (a != a) return b != b ? KB_CANONICAL_NAN : b;
    if (b != b) return a;
    if (a == 0.0f && b == 0.0f) return std::signbit(a) ? b : a;
    return a > b ? a : b;
}
static inline float kb_fminf(float a, float b) {
    if (a != a) return b != b ? KB_CANONICAL_NAN : b;
    if (b != b) return a;
    if (a == 0.0f && b == 0.0f) return std::signbit(a) ? a : b;
    return a < b ? a : b;
}
static inline double kb_fmax(double a, double b) {
    if (a != a) return b;
    if (b != b) return a;
    if (a == 0.0 && b == 0.0) return std::signbit(a) ? b : a;
    return a > b ? a : b;
}
static inline double kb_fmin(double a, double b) {
    if (a != a) return b;
    if (b != b) return a;
    if (a == 0.0 && b == 0.0) return std::signbit(a) ? a : b;
    return a < b ? a : b;
}
#define fmaxf kb_fmaxf
#define fminf kb_fminf
#define fmax kb_fmax
#define fmin kb_fmin
static inline float min(float a, float b) { return kb_fminf(a, b); }
static inline float max(float a, float b) { return kb_fmaxf(a, b); }
static inline double min(double a, double b) { return kb_fmin(a, b); }
static inline double max(double a, double b) { return kb_fmax(a, b); }

// Correctly rounded arithmetic (plain operators are, with -ffp-contract=off).
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline float __frcp_rn(float a) { return 1.0f / a; }
static inline float __fsqrt_rn(float a) { return sqrtf(a); }
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
static inline double __dadd_rn(double a, double b) { return a + b; }
static inline double __dmul_rn(double a, double b) { return a * b; }
static inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
static inline float __saturatef(float x) {
    return x != x ? 0.0f : x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x;
}
// CUDA functions that glibc lacks or declares itself (__expf, __logf, exp10f, ... are glibc
// internals): defined as kb_* and mapped by macros, so they never clash with a declaration.
static inline float kb_fdividef(float a, float b) { return a / b; }
static inline float kb_rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline double kb_rsqrt(double x) { return 1.0 / sqrt(x); }
static inline float kb_rcbrtf(float x) { return 1.0f / cbrtf(x); }
static inline float kb_exp10f(float x) { return powf(10.0f, x); }
static inline float kb_sinpif(float x) { return (float)sin(M_PI * (double)x); }
static inline float kb_cospif(float x) { return (float)cos(M_PI * (double)x); }
static inline void kb_sincospif(float x, float* s, float* c) {
    *s = kb_sinpif(x);
    *c = kb_cospif(x);
}
// The approximate intrinsics: see the file comment.
static inline float kb_approx_expf(float x) { return exp2f(x * 1.44269504088896340736f); }
static inline float kb_approx_exp10f(float x) { return exp2f(x * 3.32192809488736234787f); }
static inline float kb_approx_logf(float x) { return log2f(x) * 0.693147180559945309417f; }
static inline float kb_approx_log2f(float x) { return log2f(x); }
static inline float kb_approx_log10f(float x) { return log2f(x) * 0.301029995663981195214f; }
static inline float kb_approx_powf(float x, float y) { return exp2f(y * log2f(x)); }
static inline float kb_approx_sinf(float x) { return sinf(x); }
static inline float kb_approx_cosf(float x) { return cosf(x); }
static inline float kb_approx_tanf(float x) { return tanf(x); }
static inline void kb_approx_sincosf(float x, float* s, float* c) { sincosf(x, s, c); }
#define __fdividef kb_fdividef
#define fdividef kb_fdividef
#define rsqrtf kb_rsqrtf
#define rsqrt kb_rsqrt
#define rcbrtf kb_rcbrtf
#define exp10f kb_exp10f
#define sinpif kb_sinpif
#define cospif kb_cospif
#define sincospif kb_sincospif
#define __expf kb_approx_expf
#define __exp10f kb_approx_exp10f
#define __logf kb_approx_logf
#define __log2f kb_approx_log2f
#define __log10f kb_approx_log10f
#define __powf kb_approx_powf
#define __sinf kb_approx_sinf
#define __cosf kb_approx_cosf
#define __tanf kb_approx_tanf
#define __sincosf kb_approx_sincosf

// Conversions with an explicit rounding: NaN gives 0 and out-of-range values saturate (cvt's
// .sat behaviour for the integer destinations).
template <class I>
static inline I kb_float_to_int(double r) {
    if (r != r) return 0;
    if (r <= (double)std::numeric_limits<I>::min()) return std::numeric_limits<I>::min();
    if (r >= (double)std::numeric_limits<I>::max()) return std::numeric_limits<I>::max();
    return (I)r;
}
static inline int __float2int_rn(float x) { return kb_float_to_int<int>(nearbyint((double)x)); }
static inline int __float2int_rz(float x) { return kb_float_to_int<int>(trunc((double)x)); }
static inline int __float2int_rd(float x) { return kb_float_to_int<int>(floor((double)x)); }
static inline int __float2int_ru(float x) { return kb_float_to_int<int>(ceil((double)x)); }
static inline unsigned int __float2uint_rn(float x) {
    return kb_float_to_int<unsigned int>(nearbyint((double)x));
}
static inline unsigned int __float2uint_rz(float x) {
    return kb_float_to_int<unsigned int>(trunc((double)x));
}
static inline unsigned int __float2uint_rd(float x) {
    return kb_float_to_int<unsigned int>(floor((double)x));
}
static inline unsigned int __float2uint_ru(float x) {
    return kb_float_to_int<unsigned int>(ceil((double)x));
}
static inline long long __float2ll_rn(float x) {
    return kb_float_to_int<long long>(nearbyint((double)x));
}
static inline long long __float2ll_rz(float x) {
    return kb_float_to_int<long long>(trunc((double)x));
}
static inline float __int2float_rn(int x) { return (float)x; }
static inline float __uint2float_rn(unsigned int x) { return (float)x; }
static inline float __ll2float_rn(long long x) { return (float)x; }
static inline float __ull2float_rn(unsigned long long x) { return (float)x; }
static inline float __double2float_rn(double x) { return (float)x; }
static inline int __double2int_rn(double x) { return kb_float_to_int<int>(nearbyint(x)); }

// ---------------------------------------------------------------------------------------------
// Memory: loads and stores with cache hints, atomics (plain read-modify-writes: the fibers of a
// block never run at the same time).
// ---------------------------------------------------------------------------------------------

template <class T>
static inline T __ldg(const T* p) {
    return *p;
}
template <class T>
static inline T __ldcg(const T* p) {
    return *p;
}
template <class T>
static inline T __ldca(const T* p) {
    return *p;
}
template <class T>
static inline T __ldcs(const T* p) {
    return *p;
}
template <class T>
static inline T __ldlu(const T* p) {
    return *p;
}
template <class T>
static inline T __ldcv(const T* p) {
    return *p;
}
template <class T>
static inline void __stcg(T* p, T v) {
    *p = v;
}
template <class T>
static inline void __stcs(T* p, T v) {
    *p = v;
}
template <class T>
static inline void __stwb(T* p, T v) {
    *p = v;
}
template <class T>
static inline void __stwt(T* p, T v) {
    *p = v;
}

template <class T>
static inline T atomicAdd(T* p, T v) {
    T old = *p;
    *p = old + v;
    return old;
}
template <class T>
static inline T atomicSub(T* p, T v) {
    T old = *p;
    *p = old - v;
    return old;
}
template <class T>
static inline T atomicExch(T* p, T v) {
    T old = *p;
    *p = v;
    return old;
}
template <class T>
static inline T atomicMin(T* p, T v) {
    static_assert(std::is_integral_v<T>, "atomicMin on integers");
    T old = *p;
    *p = v < old ? v : old;
    return old;
}
template <class T>
static inline T atomicMax(T* p, T v) {
    static_assert(std::is_integral_v<T>, "atomicMax on integers");
    T old = *p;
    *p = v > old ? v : old;
    return old;
}
template <class T>
static inline T atomicCAS(T* p, T compare, T v) {
    T old = *p;
    if (old == compare) *p = v;
    return old;
}
template <class T>
static inline T atomicAnd(T* p, T v) {
    T old = *p;
    *p = old & v;
    return old;
}
template <class T>
static inline T atomicOr(T* p, T v) {
    T old = *p;
    *p = old | v;
    return old;
}
template <class T>
static inline T atomicXor(T* p, T v) {
    T old = *p;
    *p = old ^ v;
    return old;
}
static inline unsigned int atomicInc(unsigned int* p, unsigned int limit) {
    unsigned int old = *p;
    *p = old >= limit ? 0u : old + 1u;
    return old;
}
static inline unsigned int atomicDec(unsigned int* p, unsigned int limit) {
    unsigned int old = *p;
    *p = (old == 0u || old > limit) ? limit : old - 1u;
    return old;
}

static inline long long clock64() {
    return std::chrono::steady_clock::now().time_since_epoch().count();
}
#define __nanosleep(ns) ((void)(ns))

// ---------------------------------------------------------------------------------------------
// The driver: buffers and launches from a script, every buffer written back at the end.
// ---------------------------------------------------------------------------------------------

enum KbArgKind { KB_ARG_BUF, KB_ARG_U32, KB_ARG_I32, KB_ARG_F32, KB_ARG_U64, KB_ARG_I64 };
enum KbElem { KB_ELEM_F32, KB_ELEM_U16, KB_ELEM_U32, KB_ELEM_I32, KB_ELEM_U8 };

static const char* kb_elem_name(int e) {
    switch (e) {
        case KB_ELEM_F32: return "f32";
        case KB_ELEM_U16: return "u16";
        case KB_ELEM_U32: return "u32";
        case KB_ELEM_I32: return "i32";
        case KB_ELEM_U8: return "u8";
    }
    return "?";
}

struct KbBuffer {
    int elem = KB_ELEM_U8;
    size_t bytes = 0;
    unsigned char* data = nullptr;
};

// What the host says a kernel does with a buffer argument. cudarc orders work on different
// streams by it (a reader waits for the last writer, a writer for the readers), so it must match
// the parameter: read-only for a `const T*`, written for a `T*`.
enum KbAccess { KB_ACCESS_ANY, KB_ACCESS_READ, KB_ACCESS_WRITE };

struct KbArg {
    int kind = KB_ARG_U32;
    uint64_t bits = 0;  // scalars; the buffer index for KB_ARG_BUF
    int access = KB_ACCESS_ANY;  // for KB_ARG_BUF
};

struct KbLaunch {
    std::string entry;
    dim3 grid, block;
    size_t shared_bytes = 0;
    std::vector<KbArg> args;
};

static std::vector<KbBuffer> kb_buffers;

template <class T>
struct KbTypeName {
    static constexpr const char* name = "(another type)";
};
#define KB_TYPE_NAME(T)                                \
    template <>                                        \
    struct KbTypeName<T> {                             \
        static constexpr const char* name = #T;        \
    };
KB_TYPE_NAME(float)
KB_TYPE_NAME(int)
KB_TYPE_NAME(unsigned int)
KB_TYPE_NAME(long long)
KB_TYPE_NAME(unsigned long long)
KB_TYPE_NAME(unsigned short)
KB_TYPE_NAME(const float*)
KB_TYPE_NAME(float*)
KB_TYPE_NAME(const unsigned short*)
KB_TYPE_NAME(unsigned short*)
KB_TYPE_NAME(const unsigned int*)
KB_TYPE_NAME(unsigned int*)
KB_TYPE_NAME(const int*)
KB_TYPE_NAME(int*)

static const char* kb_arg_kind_name(int k) {
    switch (k) {
        case KB_ARG_BUF: return "a buffer";
        case KB_ARG_U32: return "u32";
        case KB_ARG_I32: return "i32";
        case KB_ARG_F32: return "f32";
        case KB_ARG_U64: return "u64";
        case KB_ARG_I64: return "i64";
    }
    return "?";
}

// The element type a pointer parameter expects, or -1 for any (void*, vector types, structs).
template <class P>
static constexpr int kb_elem_of() {
    using E = std::remove_cv_t<std::remove_pointer_t<P>>;
    if constexpr (std::is_same_v<E, float>) return KB_ELEM_F32;
    else if constexpr (std::is_same_v<E, unsigned short>) return KB_ELEM_U16;
    else if constexpr (std::is_same_v<E, unsigned int>) return KB_ELEM_U32;
    else if constexpr (std::is_same_v<E, int>) return KB_ELEM_I32;
    else return -1;
}

template <class T>
static T kb_convert(const KbArg& a, size_t index, const char* entry) {
    auto mismatch = [&](const char* want) {
        kb_fail("%s: argument %zu is %s (%s) but the launch passes %s", entry, index, want,
                KbTypeName<T>::name, kb_arg_kind_name(a.kind));
    };
    if constexpr (std::is_pointer_v<T>) {
        if (a.kind != KB_ARG_BUF) mismatch("a pointer");
        if (a.bits >= kb_buffers.size()) kb_fail("%s: argument %zu: no buffer %llu", entry, index,
                                                 (unsigned long long)a.bits);
        const KbBuffer& b = kb_buffers[a.bits];
        constexpr int want = kb_elem_of<T>();
        if (want >= 0 && b.elem != want)
            kb_fail("%s: argument %zu is %s but the launch passes a buffer of %s", entry, index,
                    KbTypeName<T>::name, kb_elem_name(b.elem));
        constexpr bool read_only = std::is_const_v<std::remove_pointer_t<T>>;
        if (a.access == KB_ACCESS_READ && !read_only)
            kb_fail("%s: argument %zu is %s, which the kernel may write, but the launch passes it "
                    "as read-only", entry, index, KbTypeName<T>::name);
        if (a.access == KB_ACCESS_WRITE && read_only)
            kb_fail("%s: argument %zu is %s, which the kernel only reads, but the launch passes it "
                    "as written", entry, index, KbTypeName<T>::name);
        return reinterpret_cast<T>(b.data);
    } else if constexpr (std::is_same_v<T, float>) {
        if (a.kind != KB_ARG_F32) mismatch("f32");
        return std::bit_cast<float>((uint32_t)a.bits);
    } else if constexpr (std::is_same_v<T, int>) {
        if (a.kind != KB_ARG_I32) mismatch("i32");
        return (int)(uint32_t)a.bits;
    } else if constexpr (std::is_same_v<T, unsigned int>) {
        if (a.kind != KB_ARG_U32) mismatch("u32");
        return (unsigned int)a.bits;
    } else if constexpr (std::is_same_v<T, unsigned long long> ||
                         std::is_same_v<T, unsigned long>) {
        if (a.kind != KB_ARG_U64) mismatch("u64");
        return (T)a.bits;
    } else if constexpr (std::is_same_v<T, long long> || std::is_same_v<T, long>) {
        if (a.kind != KB_ARG_I64) mismatch("i64");
        return (T)a.bits;
    } else {
        static_assert(sizeof(T) == 0, "cuda-emu: unsupported kernel parameter type");
    }
}

static void kb_run_grid(const char* entry, const KbLaunch& l, std::function<void()> body) {
    kb_rt.entry = entry;
    gridDim = l.grid;
    blockDim = l.block;
    kb_rt.body = std::move(body);
    kb_rt.dynamic_shared_bytes = l.shared_bytes;
    // Blocks one after another: in order, or (reverse and shuffle schedules) in reverse order,
    // so results that depend on which block runs first show up too.
    const unsigned long long blocks = (unsigned long long)l.grid.x * l.grid.y * l.grid.z;
    for (unsigned long long k = 0; k < blocks; ++k) {
        const unsigned long long b = kb_rt.schedule == 0 ? k : blocks - 1 - k;
        kb_run_block(uint3{(unsigned int)(b % l.grid.x), (unsigned int)(b / l.grid.x % l.grid.y),
                           (unsigned int)(b / ((unsigned long long)l.grid.x * l.grid.y))});
    }
    kb_rt.body = nullptr;
}

template <class... A, size_t... I>
static void kb_call_with(const char* entry, void (*f)(A...), const KbLaunch& l,
                         std::index_sequence<I...>) {
    std::tuple<A...> args{kb_convert<A>(l.args[I], I, entry)...};
    kb_run_grid(entry, l, [f, &args] { std::apply(f, args); });
}

template <class... A>
static void kb_call(const char* entry, void (*f)(A...), const KbLaunch& l) {
    if (l.args.size() != sizeof...(A))
        kb_fail("%s takes %zu arguments but the launch passes %zu", entry, sizeof...(A),
                l.args.size());
    kb_call_with(entry, f, l, std::index_sequence_for<A...>{});
}

struct KbEntry {
    const char* name;
    void (*invoke)(const char* name, const KbLaunch& l);
    unsigned int max_threads;  // __launch_bounds__, 0 when none
};

#define KB_ENTRY(NAME, BOUND)                                                                 \
    KbEntry {                                                                                 \
        #NAME, [](const char* n, const KbLaunch& l) { kb_call(n, &NAME, l); }, (BOUND)       \
    }

static void kb_check_config(const KbLaunch& l, const KbEntry& e) {
    const unsigned long long threads = (unsigned long long)l.block.x * l.block.y * l.block.z;
    if (l.grid.x == 0 || l.grid.y == 0 || l.grid.z == 0 || threads == 0)
        kb_fail("%s: launch with an empty grid or block (invalid configuration on the GPU)",
                l.entry.c_str());
    if (l.block.x > 1024 || l.block.y > 1024 || l.block.z > 64 || threads > 1024)
        kb_fail("%s: block (%u, %u, %u) is beyond CUDA's limits (1024 threads, z <= 64)",
                l.entry.c_str(), l.block.x, l.block.y, l.block.z);
    if (l.grid.x > 2147483647u || l.grid.y > 65535u || l.grid.z > 65535u)
        kb_fail("%s: grid (%u, %u, %u) is beyond CUDA's limits", l.entry.c_str(), l.grid.x,
                l.grid.y, l.grid.z);
    if (e.max_threads && threads > e.max_threads)
        kb_fail("%s: launched with %llu threads per block but declared "
                "__launch_bounds__(%u): the launch fails on the GPU",
                l.entry.c_str(), threads, e.max_threads);
    if (l.shared_bytes > sizeof(kb_dynamic_shared))
        kb_fail("%s: %zu bytes of dynamic shared memory is beyond the device's 227 KiB",
                l.entry.c_str(), l.shared_bytes);
}

static std::vector<unsigned char> kb_read_file(const std::string& path) {
    FILE* f = fopen(path.c_str(), "rb");
    if (!f) kb_fail("cannot open %s", path.c_str());
    std::vector<unsigned char> data;
    unsigned char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) data.insert(data.end(), chunk, chunk + n);
    fclose(f);
    return data;
}

// Script (one item per line, whitespace-separated):
//   schedule <forward|reverse|shuffle> <seed>
//   buffer <elem> <bytes> <file|->          (- : zero-filled)
//   launch <entry> <gx> <gy> <gz> <bx> <by> <bz> <shared bytes> <n> <arg>...
//     arg: b<buffer> | u<u32> | i<i32> | f<f32 bits, hex> | U<u64> | I<i64>
static int kb_main(int argc, char** argv, const KbEntry* entries, size_t n_entries) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s <script> <output dir>\n", argv[0]);
        return 2;
    }
#if KB_SANITIZE
    __sanitizer_set_death_callback(kb_death_callback);
#endif
#if KB_ASAN
    {
        // The scheduler runs on the main thread's stack: AddressSanitizer needs its bounds.
        pthread_attr_t attr;
        void* addr = nullptr;
        size_t size = 0;
        if (pthread_getattr_np(pthread_self(), &attr) == 0) {
            pthread_attr_getstack(&attr, &addr, &size);
            pthread_attr_destroy(&attr);
        }
        kb_rt.sched_stack_bottom = addr;
        kb_rt.sched_stack_size = size;
    }
#endif
    {
        // Faults (without AddressSanitizer, which reports them itself) and aborts (UBSan ends
        // with abort()) print the kernel, block and thread that was running.
        static char alt[1 << 16];
        stack_t ss{};
        ss.ss_sp = alt;
        ss.ss_size = sizeof alt;
        sigaltstack(&ss, nullptr);
        struct sigaction sa {};
        sa.sa_handler = kb_signal_handler;
        sa.sa_flags = SA_ONSTACK;
        sigaction(SIGABRT, &sa, nullptr);
        if (!KB_ASAN) {
            sigaction(SIGSEGV, &sa, nullptr);
            sigaction(SIGBUS, &sa, nullptr);
            sigaction(SIGFPE, &sa, nullptr);
        }
    }
    std::vector<unsigned char> text = kb_read_file(argv[1]);
    text.push_back(0);
    std::vector<KbLaunch> launches;
    char* save = nullptr;
    for (char* line = strtok_r((char*)text.data(), "\n", &save); line;
         line = strtok_r(nullptr, "\n", &save)) {
        std::vector<std::string> tok;
        char* s2 = nullptr;
        for (char* t = strtok_r(line, " \t\r", &s2); t; t = strtok_r(nullptr, " \t\r", &s2))
            tok.push_back(t);
        if (tok.empty()) continue;
        if (tok[0] == "schedule" && tok.size() == 3) {
            kb_rt.schedule = tok[1] == "reverse" ? 1 : tok[1] == "shuffle" ? 2 : 0;
            kb_rt.seed = strtoull(tok[2].c_str(), nullptr, 10);
        } else if (tok[0] == "buffer" && tok.size() == 4) {
            KbBuffer b;
            b.elem = atoi(tok[1].c_str());
            b.bytes = strtoull(tok[2].c_str(), nullptr, 10);
            // 256-byte aligned like cudaMalloc; the sanitizer still sees the exact size.
            void* p = nullptr;
            if (posix_memalign(&p, 256, b.bytes ? b.bytes : 1) != 0) kb_fail("out of memory");
            b.data = (unsigned char*)p;
            memset(b.data, 0, b.bytes);
            if (tok[3] != "-") {
                std::vector<unsigned char> init = kb_read_file(tok[3]);
                if (init.size() != b.bytes)
                    kb_fail("buffer file %s holds %zu bytes, expected %zu", tok[3].c_str(),
                            init.size(), b.bytes);
                memcpy(b.data, init.data(), b.bytes);
            }
            kb_buffers.push_back(b);
        } else if (tok[0] == "launch" && tok.size() >= 10) {
            KbLaunch l;
            l.entry = tok[1];
            l.grid = dim3((unsigned)strtoul(tok[2].c_str(), nullptr, 10),
                          (unsigned)strtoul(tok[3].c_str(), nullptr, 10),
                          (unsigned)strtoul(tok[4].c_str(), nullptr, 10));
            l.block = dim3((unsigned)strtoul(tok[5].c_str(), nullptr, 10),
                           (unsigned)strtoul(tok[6].c_str(), nullptr, 10),
                           (unsigned)strtoul(tok[7].c_str(), nullptr, 10));
            l.shared_bytes = strtoull(tok[8].c_str(), nullptr, 10);
            size_t n = strtoull(tok[9].c_str(), nullptr, 10);
            if (tok.size() != 10 + n) kb_fail("script: launch %s: bad argument count", tok[1].c_str());
            for (size_t i = 0; i < n; ++i) {
                const std::string& a = tok[10 + i];
                KbArg arg;
                const char* v = a.c_str() + 1;
                switch (a[0]) {
                    case 'b': arg.kind = KB_ARG_BUF; arg.bits = strtoull(v, nullptr, 10); break;
                    case 'r':
                        arg.kind = KB_ARG_BUF; arg.access = KB_ACCESS_READ;
                        arg.bits = strtoull(v, nullptr, 10); break;
                    case 'w':
                        arg.kind = KB_ARG_BUF; arg.access = KB_ACCESS_WRITE;
                        arg.bits = strtoull(v, nullptr, 10); break;
                    case 'u': arg.kind = KB_ARG_U32; arg.bits = strtoull(v, nullptr, 10); break;
                    case 'i': arg.kind = KB_ARG_I32; arg.bits = (uint32_t)strtol(v, nullptr, 10); break;
                    case 'f': arg.kind = KB_ARG_F32; arg.bits = strtoull(v, nullptr, 16); break;
                    case 'U': arg.kind = KB_ARG_U64; arg.bits = strtoull(v, nullptr, 10); break;
                    case 'I': arg.kind = KB_ARG_I64; arg.bits = (uint64_t)strtoll(v, nullptr, 10); break;
                    default: kb_fail("script: bad argument %s", a.c_str());
                }
                l.args.push_back(arg);
            }
            launches.push_back(l);
        } else {
            kb_fail("script: cannot read the line starting with '%s'", tok[0].c_str());
        }
    }
    for (const KbLaunch& l : launches) {
        const KbEntry* e = nullptr;
        for (size_t i = 0; i < n_entries; ++i)
            if (l.entry == entries[i].name) e = &entries[i];
        if (!e) kb_fail("no extern \"C\" kernel named %s in this file", l.entry.c_str());
        kb_check_config(l, *e);
        e->invoke(e->name, l);
    }
    for (size_t i = 0; i < kb_buffers.size(); ++i) {
        std::string path = std::string(argv[2]) + "/" + std::to_string(i) + ".bin";
        FILE* f = fopen(path.c_str(), "wb");
        if (!f || fwrite(kb_buffers[i].data, 1, kb_buffers[i].bytes, f) != kb_buffers[i].bytes)
            kb_fail("cannot write %s", path.c_str());
        fclose(f);
    }
    printf("cuda-emu: %zu launches, %llu fiber switches\n", launches.size(),
           (unsigned long long)kb_rt.switches);
    return 0;
}
