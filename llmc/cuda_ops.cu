// cuda_ops.cu: the CUDA side of kvgpt, compiled by nvcc into its own object (build/cuda_ops.o)
// and linked into the g++-built programs with the static CUDA runtime. Each kernel is the twin
// of a CPU op in ops.h and is tested against it (test/test_cuda.cpp). The CUDA training backend
// grows here kernel by kernel; numbered experimental versions belong in dev/cuda/.
// Only plain pointers cross the boundary (declarations in cuda_ops.h), so the host code never
// needs nvcc.
#include <cuda_runtime.h>
#include <cstdio>
#include <cstdlib>
#include <string>
#include "cuda_ops.h"

static void cuda_check(cudaError_t e, const char* file, int line) {
    if (e != cudaSuccess) {
        fprintf(stderr, "Error: CUDA error %d (%s)\n  at %s:%d\n", (int)e, cudaGetErrorString(e), file, line);
        exit(1);
    }
}
#define cudaCheck(e) cuda_check((e), __FILE__, __LINE__)

int kvgpt_cuda_probe(std::string* why, std::string* name) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        *why = std::string("cudaGetDeviceCount: ") + cudaGetErrorString(e) + " (error " + std::to_string((int)e) + ")";
        cudaGetLastError();  // clear the sticky error
        return 0;
    }
    if (n == 0) { *why = "no CUDA devices"; return 0; }
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, 0) == cudaSuccess) *name = p.name;
    return n;
}

float* kvgpt_cuda_upload(const float* host, long n) {
    float* d = nullptr;
    cudaCheck(cudaMalloc(&d, n * sizeof(float)));
    if (host) cudaCheck(cudaMemcpy(d, host, n * sizeof(float), cudaMemcpyHostToDevice));
    return d;
}
void kvgpt_cuda_download(float* host, const float* dev, long n) { cudaCheck(cudaMemcpy(host, dev, n * sizeof(float), cudaMemcpyDeviceToHost)); }
void kvgpt_cuda_free(float* dev) { cudaCheck(cudaFree(dev)); }

// out = a + b (+ c), all (N); the twin of residual_forward
__global__ void residual_forward_kernel(float* out, const float* a, const float* b, const float* c, long N) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < N) out[i] = c ? a[i] + b[i] + c[i] : a[i] + b[i];
}
void residual_forward_cuda(float* out, const float* a, const float* b, const float* c, long N) {
    const int block = 256;
    residual_forward_kernel<<<(unsigned)((N + block - 1) / block), block>>>(out, a, b, c, N);
    cudaCheck(cudaGetLastError());
    cudaCheck(cudaDeviceSynchronize());
}

// GELU, tanh or erf form; the twin of gelu_forward
__global__ void gelu_forward_kernel(float* out, const float* inp, long N, bool exact) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N) return;
    float x = inp[i];
    out[i] = exact ? 0.5f * x * (1.0f + erff(x * 0.70710678118f))
                   : 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}
void gelu_forward_cuda(float* out, const float* inp, long N, bool exact) {
    const int block = 256;
    gelu_forward_kernel<<<(unsigned)((N + block - 1) / block), block>>>(out, inp, N, exact);
    cudaCheck(cudaGetLastError());
    cudaCheck(cudaDeviceSynchronize());
}
