// cuda_emu.h: runs kvgpt's CUDA kernels on the CPU, so the GPU code is exercised (and tested
// against the CPU backend) on machines without a GPU, CI included. It is a test device, not a
// backend: one OS thread, every CUDA thread a fiber (ucontext) with its own stack, blocks run
// one after another. It models exactly what the kernels in cuda_kernels.cuh use:
//   threadIdx / blockIdx / blockDim / gridDim, __syncthreads, __syncwarp, __shfl_xor_sync,
//   __shfl_sync, __shfl_down_sync, static __shared__ arrays (one copy per block, filled with NaN
//   before each block so a read of unwritten shared memory poisons the result), bf16.
// Shuffles and barriers must be reached by every live thread of the warp / block, as CUDA
// requires; if they are not (divergent barrier), the emulator stops with "deadlock" instead of
// guessing. Threads run in a fixed order (reversed in odd blocks, to expose missing barriers in
// either direction), so results are deterministic.
// What it cannot check: timing, real memory-model races between blocks, tensor cores, cuBLAS
// (the backend calls a plain CPU GEMM in its place, see cuda_backend.cu).
#pragma once
#include <setjmp.h>
#include <ucontext.h>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <algorithm>
#include <vector>
using std::max;
using std::min;

struct alignas(16) float4 {
    float x, y, z, w;
};
struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __launch_bounds__(...)

namespace emu {
enum { RUNNABLE, AT_BLOCK_BARRIER, AT_WARP_BARRIER, DONE };
// a fiber is created once with makecontext/setcontext (which cost system calls) and then parks
// at the start of its loop (start_jb); every block restarts it there, and every switch is
// _setjmp/_longjmp, which unlike swapcontext do not save the signal mask
struct Fiber {
    ucontext_t ctx;
    jmp_buf jb, start_jb;
    bool started, created = false;
    dim3 idx;
    int state;
    std::vector<char> stack;
};
struct State {
    dim3 grid, block, block_idx;
    std::vector<Fiber> fibers;
    int cur = 0, n = 0;
    jmp_buf sched;
    std::function<void()> body;
    std::vector<uint64_t> slots[2];  // shuffle exchange, one per thread; double-buffered (see emu_exchange)
    std::vector<int> parity;         // per thread: which slot buffer its next shuffle uses
    struct SharedRegion {
        const char* name;
        void* p;
        size_t n;
        uint32_t *lo, *hi;  // guard zones around the array
    };
    std::vector<SharedRegion> shared_regions;
};
static State& st() {
    static State s;
    return s;
}
static inline void yield_with(int state) {
    State& s = st();
    Fiber& f = s.fibers[s.cur];
    f.state = state;
    if (_setjmp(f.jb) == 0) _longjmp(s.sched, 1);
}
// runs on the fiber's own stack for the fiber's whole life: park, then one body per block
static void fiber_entry() {
    if (_setjmp(st().fibers[st().cur].start_jb) == 0) _longjmp(st().sched, 1);
    for (;;) {
        st().body();
        st().fibers[st().cur].state = DONE;
        if (_setjmp(st().fibers[st().cur].start_jb) == 0) _longjmp(st().sched, 1);
    }
}
static inline void resume(int i) {
    State& s = st();
    Fiber& f = s.fibers[i];
    s.cur = i;
    if (_setjmp(s.sched) == 0) {
        if (f.started) _longjmp(f.jb, 1);
        f.started = true;
        _longjmp(f.start_jb, 1);
    }
}
// a new fiber: its context on its own stack, run once until it parks
static void create_fiber(int i, size_t stack_bytes) {
    static ucontext_t proto;
    static bool have_proto = false;
    if (!have_proto) { getcontext(&proto); have_proto = true; }
    State& s = st();
    Fiber& f = s.fibers[i];
    f.stack.resize(stack_bytes);
    f.ctx = proto;  // a copy of one getcontext instead of a system call per fiber
    f.ctx.uc_stack.ss_sp = f.stack.data();
    f.ctx.uc_stack.ss_size = stack_bytes;
    f.ctx.uc_link = nullptr;
    makecontext(&f.ctx, fiber_entry, 0);
    s.cur = i;
    if (_setjmp(s.sched) == 0) setcontext(&f.ctx);
    f.created = true;
}
// static __shared__ arrays register here (SHARED_ARRAY) so each block starts with NaN poison
static const int GUARD_WORDS = 64;
static const uint32_t GUARD = 0x5AFE600Du;
static inline void poison_shared() {
    for (auto& r : st().shared_regions) {
        memset(r.p, 0xff, r.n);
        for (int i = 0; i < GUARD_WORDS; i++) r.lo[i] = r.hi[i] = GUARD;
    }
}
// after each block: a write past either end of a shared array lands in its guard zone
static inline void check_shared_guards(dim3 b) {
    for (auto& r : st().shared_regions)
        for (int i = 0; i < GUARD_WORDS; i++)
            if (r.lo[i] != GUARD || r.hi[i] != GUARD) {
                fprintf(stderr, "emulator: out-of-bounds write %s shared array '%s' in block (%u,%u,%u)\n", r.lo[i] != GUARD ? "before" : "past",
                        r.name, b.x, b.y, b.z);
                exit(1);
            }
}

// runs body once per thread of every block of grid
static void launch(dim3 grid, dim3 block, std::function<void()> body) {
    State& s = st();
    s.grid = grid;
    s.block = block;
    s.body = body;
    s.n = (int)(block.x * block.y * block.z);
    if (s.n % 32 != 0 || s.n > 1024) {
        fprintf(stderr, "emulator: block of %d threads (kvgpt kernels use whole warps, at most 1024)\n", s.n);
        exit(1);
    }
    s.fibers.resize(s.n);
    s.slots[0].assign(s.n, 0);
    s.slots[1].assign(s.n, 0);
    const size_t STACK = 64 * 1024;
    for (int i = 0; i < s.n; i++)
        if (!s.fibers[i].created) create_fiber(i, STACK);
    for (unsigned bz = 0; bz < grid.z; bz++)
        for (unsigned by = 0; by < grid.y; by++)
            for (unsigned bx = 0; bx < grid.x; bx++) {
                s.block_idx = dim3(bx, by, bz);
                s.parity.assign(s.n, 0);
                poison_shared();
                for (int i = 0; i < s.n; i++) {
                    Fiber& f = s.fibers[i];
                    f.idx = dim3(i % block.x, (i / block.x) % block.y, i / (block.x * block.y));
                    f.state = RUNNABLE;
                    f.started = false;
                }
                // odd blocks run their threads in reverse order: a missing barrier between a write
                // and a read of shared memory then shows up (as NaN poison or a wrong result) whichever
                // of the two threads comes first
                const bool reverse = ((bz * grid.y + by) * grid.x + bx) % 2 == 1;
                for (;;) {
                    for (int k = 0; k < s.n; k++) {
                        int i = reverse ? s.n - 1 - k : k;
                        if (s.fibers[i].state == RUNNABLE) resume(i);
                    }
                    // everyone is done or waiting: release whole warps at a warp barrier first,
                    // then the block barrier once every live thread has reached it
                    bool released = false, all_done = true, all_at_block = true;
                    for (int w = 0; w < s.n / 32; w++) {
                        bool any = false, all = true;
                        for (int l = 0; l < 32; l++) {
                            int st_ = s.fibers[w * 32 + l].state;
                            if (st_ == AT_WARP_BARRIER) any = true;
                            else if (st_ != DONE) all = false;
                        }
                        if (any && all) {
                            for (int l = 0; l < 32; l++)
                                if (s.fibers[w * 32 + l].state == AT_WARP_BARRIER) s.fibers[w * 32 + l].state = RUNNABLE;
                            released = true;
                        }
                    }
                    if (released) continue;
                    for (int i = 0; i < s.n; i++) {
                        if (s.fibers[i].state != DONE) all_done = false;
                        if (s.fibers[i].state != DONE && s.fibers[i].state != AT_BLOCK_BARRIER) all_at_block = false;
                    }
                    if (all_done) {
                        check_shared_guards(s.block_idx);
                        break;
                    }
                    if (all_at_block) {
                        for (int i = 0; i < s.n; i++)
                            if (s.fibers[i].state == AT_BLOCK_BARRIER) s.fibers[i].state = RUNNABLE;
                        continue;
                    }
                    fprintf(stderr, "emulator: deadlock in block (%u,%u,%u): threads wait at different barriers "
                                    "(a __syncthreads or shuffle not reached by every thread)\n", bx, by, bz);
                    exit(1);
                }
            }
}
// a static __shared__ array with guard zones on both sides (SHARED_ARRAY in cuda_common.h)
template <typename A>
struct GuardedShared {
    uint32_t lo[GUARD_WORDS];
    alignas(16) A arr;
    uint32_t hi[GUARD_WORDS];
};
struct SharedRegistrar {
    template <typename A>
    SharedRegistrar(const char* name, GuardedShared<A>& g) {
        st().shared_regions.push_back({name, &g.arr, sizeof(A), g.lo, g.hi});
        memset(&g.arr, 0xff, sizeof(A));
        for (int i = 0; i < GUARD_WORDS; i++) g.lo[i] = g.hi[i] = GUARD;
    }
};
}  // namespace emu

#define threadIdx (emu::st().fibers[emu::st().cur].idx)
#define blockIdx (emu::st().block_idx)
#define blockDim (emu::st().block)
#define gridDim (emu::st().grid)
// SHARED_ARRAY (cuda_common.h) makes a static __shared__ array one static copy, reused by each
// block in turn (blocks never overlap here), and registers it to be poisoned before each block

static inline void __syncthreads() { emu::yield_with(emu::AT_BLOCK_BARRIER); }
static inline void __syncwarp(unsigned = 0xffffffffu) { emu::yield_with(emu::AT_WARP_BARRIER); }

template <typename T, typename F>
static inline T emu_exchange(T v, F src) {
    static_assert(sizeof(T) <= 8, "shuffle of at most 8 bytes");
    // one warp barrier per shuffle: shuffle k uses buffer k % 2, and a lane can only write buffer
    // k % 2 again (shuffle k + 2) after every lane passed barrier k + 1, i.e. finished reading k
    emu::State& s = emu::st();
    int me = s.cur, lane = me % 32, base = me - lane, par = s.parity[me];
    s.parity[me] ^= 1;
    uint64_t bits = 0;
    memcpy(&bits, &v, sizeof(T));
    s.slots[par][me] = bits;
    __syncwarp();
    T r;
    uint64_t got = s.slots[par][base + src(lane)];
    memcpy(&r, &got, sizeof(T));
    return r;
}
template <typename T> static inline T __shfl_xor_sync(unsigned, T v, int m) { return emu_exchange(v, [m](int l) { return l ^ m; }); }
template <typename T> static inline T __shfl_sync(unsigned, T v, int src) { return emu_exchange(v, [src](int) { return src & 31; }); }
template <typename T> static inline T __shfl_down_sync(unsigned, T v, int d) { return emu_exchange(v, [d](int l) { return l + d < 32 ? l + d : l; }); }

// bf16 with round-to-nearest-even, like __float2bfloat16 (and, like cuda_bf16.h's type,
// constructible from and convertible to float)
struct __nv_bfloat16;
static inline __nv_bfloat16 __float2bfloat16(float f);
static inline float __bfloat162float(__nv_bfloat16 b);
struct __nv_bfloat16 {
    uint16_t x;
    __nv_bfloat16() = default;
    explicit __nv_bfloat16(float f);
    explicit operator float() const;
};
static inline __nv_bfloat16 __float2bfloat16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    __nv_bfloat16 b;
    if ((u & 0x7fffffffu) > 0x7f800000u) { b.x = (uint16_t)((u >> 16) | 0x40); return b; }  // NaN stays NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    b.x = (uint16_t)(u >> 16);
    return b;
}
static inline float __bfloat162float(__nv_bfloat16 b) {
    uint32_t u = (uint32_t)b.x << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

inline __nv_bfloat16::__nv_bfloat16(float f) { x = __float2bfloat16(f).x; }
inline __nv_bfloat16::operator float() const { return __bfloat162float(*this); }
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline float atomicAdd(float* p, float v) {  // one OS thread: nothing can interleave
    float old = *p;
    *p = old + v;
    return old;
}

// ---- the CUDA runtime calls the backend and the dev/cuda benchmarks make, on host memory ----
// Copies are synchronous, so streams and events have nothing to wait for; device memory is
// NaN-poisoned, so a read of an unwritten buffer shows up in the results. (Event times are CPU
// times: the benchmarks' timings mean nothing here, only their checks.)
typedef int cudaError_t;
typedef int cudaStream_t;
typedef int cudaMemcpyKind;
enum { cudaEventDisableTiming = 2 };
enum { cudaSuccess = 0, cudaErrorMemoryAllocation = 2, cudaErrorInsufficientDriver = 35, cudaErrorNoDevice = 100, cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2, cudaMemcpyDeviceToDevice = 3 };
struct cudaDeviceProp {
    char name[256];
    int major, minor, multiProcessorCount;
};
typedef struct EmuEvent* cudaEvent_t;
struct EmuEvent {
    double t;
};
static inline const char* cudaGetErrorString(cudaError_t) { return "emulator error"; }
template <typename P>
static inline cudaError_t cudaMalloc(P** p, size_t n) {
    *p = (P*)malloc(n ? n : 1);
    if (*p) memset(*p, 0xff, n);  // NaN poison, as the backend's allocations
    return *p ? cudaSuccess : 2;
}
static inline cudaError_t cudaFree(void* p) { free(p); return cudaSuccess; }
template <typename P>
static inline cudaError_t cudaMallocHost(P** p, size_t n) { return cudaMalloc(p, n); }
static inline cudaError_t cudaFreeHost(void* p) { free(p); return cudaSuccess; }
static inline cudaError_t cudaMemGetInfo(size_t* free_b, size_t* total_b) { *free_b = *total_b = 0; return cudaSuccess; }
static inline cudaError_t cudaGetLastError() { return cudaSuccess; }
static inline cudaError_t cudaSetDevice(int) { return cudaSuccess; }
static inline cudaError_t cudaStreamCreate(cudaStream_t* s) { *s = 0; return cudaSuccess; }

// CUDA graphs, modelled: while a stream is captured, kernels, GEMMs, device-to-device copies and
// memsets are recorded (their arguments copied) instead of run, and a launch of the graph runs
// them in order. What CUDA refuses during a capture fails here too (a sync, a copy to or from the
// host, a second capture), so a captured region that would not capture on a GPU fails the tests.
enum { cudaErrorStreamCaptureUnsupported = 900, cudaErrorStreamCaptureInvalidated = 901 };
typedef int cudaStreamCaptureMode;
enum { cudaStreamCaptureModeGlobal = 0, cudaStreamCaptureModeThreadLocal = 1, cudaStreamCaptureModeRelaxed = 2 };
struct EmuGraph {
    std::vector<std::function<void()>> ops;
};
typedef EmuGraph* cudaGraph_t;
typedef EmuGraph* cudaGraphExec_t;
namespace emu {
struct Capture {
    bool on = false;
    std::vector<std::function<void()>> ops;
};
static Capture& capture() {
    static Capture c;
    return c;
}
// runs op now, or records it while a capture is on
static inline void run_or_record(std::function<void()> op) {
    if (capture().on) capture().ops.push_back(std::move(op));
    else op();
}
}  // namespace emu
static inline cudaError_t cudaStreamBeginCapture(cudaStream_t, cudaStreamCaptureMode) {
    if (emu::capture().on) return cudaErrorStreamCaptureUnsupported;
    emu::capture().on = true;
    emu::capture().ops.clear();
    return cudaSuccess;
}
static inline cudaError_t cudaStreamEndCapture(cudaStream_t, cudaGraph_t* g) {
    if (!emu::capture().on) return cudaErrorStreamCaptureInvalidated;
    *g = new EmuGraph{std::move(emu::capture().ops)};
    emu::capture() = emu::Capture();
    return cudaSuccess;
}
static inline cudaError_t cudaGraphInstantiate(cudaGraphExec_t* e, cudaGraph_t g, unsigned long long = 0) {
    *e = new EmuGraph(*g);
    return cudaSuccess;
}
static inline cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t) {
    if (emu::capture().on) return cudaErrorStreamCaptureUnsupported;
    for (auto& op : e->ops) op();
    return cudaSuccess;
}
static inline cudaError_t cudaGraphDestroy(cudaGraph_t g) { delete g; return cudaSuccess; }
static inline cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e) { delete e; return cudaSuccess; }

static inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return emu::capture().on ? (cudaError_t)cudaErrorStreamCaptureUnsupported : (cudaError_t)cudaSuccess; }
static inline cudaError_t cudaMemcpy(void* d, const void* s, size_t n, int) {
    if (emu::capture().on) return cudaErrorStreamCaptureUnsupported;
    memmove(d, s, n);
    return cudaSuccess;
}
static inline cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t n, int kind, cudaStream_t = 0) {
    if (emu::capture().on && kind != cudaMemcpyDeviceToDevice) return cudaErrorStreamCaptureUnsupported;  // host memory in a graph
    emu::run_or_record([=] { memmove(d, s, n); });
    return cudaSuccess;
}
static inline cudaError_t cudaMemset(void* d, int v, size_t n) {
    if (emu::capture().on) return cudaErrorStreamCaptureUnsupported;
    memset(d, v, n);
    return cudaSuccess;
}
static inline cudaError_t cudaMemsetAsync(void* d, int v, size_t n, cudaStream_t = 0) {
    emu::run_or_record([=] { memset(d, v, n); });
    return cudaSuccess;
}
static inline cudaError_t cudaDeviceSynchronize() { return emu::capture().on ? (cudaError_t)cudaErrorStreamCaptureUnsupported : (cudaError_t)cudaSuccess; }
static inline cudaError_t cudaGetDeviceCount(int* n) { *n = 1; return cudaSuccess; }
static inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int) {
    snprintf(p->name, sizeof p->name, "kvgpt CUDA emulator (CPU)");
    p->major = p->minor = 0;
    p->multiProcessorCount = 1;
    return cudaSuccess;
}
static inline double emu_now() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}
static inline cudaError_t cudaEventCreate(cudaEvent_t* e) { *e = new EmuEvent{0.0}; return cudaSuccess; }
static inline cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, int) { return cudaEventCreate(e); }
static inline cudaError_t cudaEventDestroy(cudaEvent_t e) { delete e; return cudaSuccess; }
static inline cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t = 0) { e->t = emu_now(); return cudaSuccess; }
static inline cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
static inline cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) { *ms = (float)(1000.0 * (b->t - a->t)); return cudaSuccess; }
