// cuda_ops.cuh: CUDA kernels of the GPU backend, each the twin of a CPU op in ops.h and
// tested against it (test/test_cuda.cu). The CUDA training backend grows here kernel by kernel;
// numbered experimental versions live in dev/cuda/, only the winner comes here.
#pragma once
#include <cuda_runtime.h>
#include "backend.h"
#include "ops.h"

// out = a + b (+ c), all (N); the twin of residual_forward
__global__ void residual_forward_kernel(float* out, const float* a, const float* b, const float* c, long N) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < N) out[i] = c ? a[i] + b[i] + c[i] : a[i] + b[i];
}
static void residual_forward_cuda(float* out, const float* a, const float* b, const float* c, long N) {
    const int block = 256;
    residual_forward_kernel<<<(unsigned)((N + block - 1) / block), block>>>(out, a, b, c, N);
    cudaCheck(cudaGetLastError());
}

// GELU, tanh or erf form; the twin of gelu_forward
__global__ void gelu_forward_kernel(float* out, const float* inp, long N, bool exact) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N) return;
    float x = inp[i];
    out[i] = exact ? 0.5f * x * (1.0f + erff(x * 0.70710678118f))
                   : 0.5f * x * (1.0f + tanhf(GELU_SCALE * (x + 0.044715f * x * x * x)));
}
static void gelu_forward_cuda(float* out, const float* inp, long N, bool exact) {
    const int block = 256;
    gelu_forward_kernel<<<(unsigned)((N + block - 1) / block), block>>>(out, inp, N, exact);
    cudaCheck(cudaGetLastError());
}
