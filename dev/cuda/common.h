// dev/cuda/common.h: the harness of the kernel microbenchmarks (llm.c's dev/cuda style). Each
// benchmark file holds numbered versions of one kernel; the last version is the one in
// llmc/cuda_kernels.cuh (included, not copied). Every version is checked against version 1 on
// the same inputs before it is timed, and each prints ms, GB/s and/or TFLOPS and its speed
// relative to the baseline measured in the same run.
//   make bench_cuda && dev/cuda/bin/attention_forward [B T H G hd]
// Without a GPU they print that nothing was measured and exit 0. Built with -DKVGPT_CUDA_EMU
// (make bench_cuda_emu) they run on the CPU emulator, where only their checks mean something:
// the test suite runs them that way at small sizes.
#pragma once
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <vector>
#include "../../llmc/cuda_kernels.cuh"
#include "../../llmc/cuda_matmul.cuh"

static void require_gpu(const char* what) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        printf("%s: no CUDA device, nothing measured\n", what);
        exit(0);
    }
    cudaDeviceProp p;
    cudaCheck(cudaGetDeviceProperties(&p, 0));
    printf("%s on %s (sm_%d%d, %d SMs)\n", what, p.name, p.major, p.minor, p.multiProcessorCount);
#ifdef KVGPT_CUDA_EMU
    printf("EMULATOR: the checks below are real; the times are CPU-emulator times, not GPU figures\n");
#endif
    backend_init();
}
// median of `reps` timed runs (after 2 warm-ups), in ms. On the emulator (where only the
// correctness checks mean anything) each version runs once.
static float time_ms(const std::function<void()>& fn, int reps = 20) {
#ifdef KVGPT_CUDA_EMU
    reps = 1;
#endif
    cudaEvent_t a, b;
    cudaCheck(cudaEventCreate(&a));
    cudaCheck(cudaEventCreate(&b));
    for (int i = 0; i < (reps > 1 ? 2 : 0); i++) fn();
    std::vector<float> t(reps);
    for (int i = 0; i < reps; i++) {
        cudaCheck(cudaEventRecord(a, g_stream));
        fn();
        cudaCheck(cudaEventRecord(b, g_stream));
        cudaCheck(cudaEventSynchronize(b));
        cudaCheck(cudaEventElapsedTime(&t[i], a, b));
    }
    std::sort(t.begin(), t.end());
    cudaCheck(cudaEventDestroy(a));
    cudaCheck(cudaEventDestroy(b));
    return t[reps / 2];
}
template <typename T>
static T* dev_random(size_t n, unsigned seed, float scale = 1.0f) {
    std::vector<float> h(n);
    srand(seed);
    for (float& x : h) x = scale * (2.0f * rand() / RAND_MAX - 1.0f);
    std::vector<T> c(n);
    for (size_t i = 0; i < n; i++) c[i] = (T)h[i];
    T* d;
    cudaCheck(cudaMalloc(&d, n * sizeof(T)));
    cudaCheck(cudaMemcpy(d, c.data(), n * sizeof(T), cudaMemcpyHostToDevice));
    return d;
}
template <typename T>
static std::vector<float> to_host(const T* d, size_t n) {
    std::vector<T> c(n);
    cudaCheck(cudaMemcpy(c.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
    std::vector<float> h(n);
    for (size_t i = 0; i < n; i++) h[i] = (float)c[i];
    return h;
}
// max |a - b| / (atol + rtol |b|); > 1 means the version is wrong (the benchmark says so and exits 1)
static void check_same(const char* what, const std::vector<float>& a, const std::vector<float>& b, float atol, float rtol) {
    double worst = 0.0;
    for (size_t i = 0; i < a.size(); i++) {
        double e = fabs((double)a[i] - b[i]) / (atol + rtol * fabs(b[i]));
        if (!(e <= worst)) worst = e;
    }
    printf("  check %-28s worst %.1f%% of allowed\n", what, 100 * worst);
    if (!(worst <= 1.0)) { printf("FAILED: %s differs from version 1\n", what); exit(1); }
}
static void report(const char* version, float ms, double bytes, double flops, float base_ms) {
    printf("  %-34s %9.4f ms", version, ms);
    if (bytes > 0) printf(" | %8.1f GB/s", bytes / ms / 1e6);
    if (flops > 0) printf(" | %7.2f TFLOPS", flops / ms / 1e9);
    if (base_ms > 0) printf(" | %6.2fx vs v1", base_ms / ms);
    printf("\n");
}
static int arg(int argc, char** argv, int i, int def) { return argc > i ? atoi(argv[i]) : def; }
