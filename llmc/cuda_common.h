// cuda_common.h: what every CUDA file of kvgpt shares: the CUDA headers (or, with
// KVGPT_CUDA_EMU, the CPU emulator of cuda_emu.h), cudaCheck, the kernel launcher, bf16/fp32
// conversions and warp/block reductions. Kernels written against this header run unchanged on a
// GPU (nvcc) and in the emulator (g++), which is how CI tests them without a GPU.
#pragma once
#include <cstdio>
#include <cstdlib>
#include <tuple>
#include <utility>
#ifdef KVGPT_CUDA_EMU
#include "cuda_emu.h"
#define SHARED_ARRAY(type, name, dims)                                         \
    typedef type name##_type dims;                                             \
    static emu::GuardedShared<name##_type> name##_box;                         \
    static emu::SharedRegistrar name##_reg(#name, name##_box);                 \
    name##_type& name = name##_box.arr
#else
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#define SHARED_ARRAY(type, name, dims) __shared__ __align__(16) type name dims
#endif

typedef __nv_bfloat16 bf16;

// NVTX ranges (header-only NVTX3, nothing to link) so nsys timelines show the model's phases:
// NvtxRange r("forward");  no-op on the emulator
#ifdef KVGPT_CUDA_EMU
struct NvtxRange {
    explicit NvtxRange(const char*) {}
};
#else
#include <nvtx3/nvToolsExt.h>
struct NvtxRange {
    explicit NvtxRange(const char* name) { nvtxRangePushA(name); }
    ~NvtxRange() { nvtxRangePop(); }
};
#endif

static void cuda_check(cudaError_t e, const char* file, int line) {
    if (e != cudaSuccess) {
        fprintf(stderr, "Error: CUDA error %d (%s)\n  at %s:%d\n", (int)e, cudaGetErrorString(e), file, line);
        if (e == cudaErrorMemoryAllocation)
            fprintf(stderr, "HINT: out of GPU memory: lower the micro-batch (-b) or the sequence length (-t) and raise -A\n");
        exit(1);
    }
}
#define cudaCheck(e) cuda_check((e), __FILE__, __LINE__)
extern cudaStream_t g_stream;  // the one stream every kernel runs on (cuda_matmul.cuh)
#ifndef KVGPT_CUDA_EMU

template <size_t... I, typename Tuple>
static void launch_tuple(const void* kernel, dim3 grid, dim3 block, Tuple& t, std::index_sequence<I...>) {
    void* args[] = {(void*)&std::get<I>(t)..., nullptr};
    cudaCheck(cudaLaunchKernel(kernel, grid, block, args, 0, g_stream));
}
#endif

// kernels launched and GEMMs called so far (dev/bench_decode -d cuda: the calls one decode step
// makes, each of which costs the host a launch however little work it does)
static long g_device_calls = 0;

// launch(kernel, grid, block, args...): converts the arguments to the kernel's parameter types,
// then launches on the GPU, or runs every thread in the emulator
template <typename... KArgs, typename... Args>
static void launch(void (*kernel)(KArgs...), dim3 grid, dim3 block, Args... args) {
    g_device_calls++;
    std::tuple<KArgs...> t(args...);
#ifdef KVGPT_CUDA_EMU
    emu::run_or_record([=]() mutable { emu::launch(grid, block, [&] { std::apply(kernel, t); }); });
#else
    launch_tuple((const void*)kernel, grid, block, t, std::index_sequence_for<KArgs...>{});
#endif
}

static inline unsigned ceil_div(long a, long b) { return (unsigned)((a + b - 1) / b); }

// conversions between the storage type (float or bf16) and fp32 arithmetic
__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(bf16 x) { return __bfloat162float(x); }
template <typename T> __device__ __forceinline__ T from_f32(float x);
template <> __device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ bf16 from_f32<bf16>(float x) { return __float2bfloat16(x); }

#define FULL_MASK 0xffffffffu
// butterfly reductions: every lane gets the result; fixed order, so deterministic
template <typename F>
__device__ __forceinline__ F warp_sum(F v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, o));
    return v;
}
