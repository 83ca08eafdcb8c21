// peaks.h: the host's memory bandwidth and fp32 FMA peak, measured by the benchmarks in the same
// run as the figures they hold against them (dev/bench_cpu, dev/bench_decode, dev/bench_attend).
#pragma once
#include <omp.h>
#include <algorithm>
#include "../llmc/utils.h"

// The probes' buffers are allocated as the data they bound is: on 2 MB pages where the kernel
// gives them (avec, llmc/utils.h), as the KV cache and the packed decode weights are (on 4 KB
// pages the same sum read 43-76 GB/s, on 2 MB pages 61-81, more in 15 of 20 interleaved pairs:
// docs/benchmarks.md, "Decode, eighth round").
// Their buffers (1 GiB) are far past the last-level cache; a decode step's weights and cache are
// not always: this VM's L3 kept up 150 GB/s to 64 MB and 110 GB/s at 128 MB, so a step whose
// bytes are a few hundred MB finds part of them in L3 from the step before, and can come close
// to its bound or pass it (docs/benchmarks.md, "Decode, eighth round").

// read bandwidth: a vectorised sum over 1 GiB on every thread (decoding only reads weights and
// cache, so this is its bound); the best of `reps`. The buffer is kept for the run: the table
// measures it again around every row, because this host's bandwidth drifts by up to 2x within
// minutes (docs/benchmarks.md), and a row is held to the bandwidth measured next to it.
static double stream_read_gbs(int reps = 5) {
    const size_t n = (size_t)256 << 20;  // floats: 1 GiB
    static float* a = nullptr;
    if (!a) {
        a = (new avec<float>(n))->data();  // kept for the run
        #pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) a[i] = (float)(i & 1023);
    }
    double best = 1e30;
    float sink = 0.0f;
    for (int r = 0; r < reps; r++) {
        double t0 = now_seconds();
        float tot = 0.0f;
        #pragma omp parallel reduction(+ : tot)
        {
            v16f acc[4] = {};
            #pragma omp for schedule(static)
            for (size_t i = 0; i < n; i += 64)
                for (int k = 0; k < 4; k++) acc[k] += *(const v16f*)(a + i + 16 * k);
            tot += hsum16(acc[0] + acc[1] + acc[2] + acc[3]);
        }
        best = std::min(best, now_seconds() - t0);
        sink += tot;
    }
    if (sink == 1.0f) printf(" ");
    return n * sizeof(float) / best / 1e9;
}
static double stream_copy_gbs() {
    const size_t n = (size_t)128 << 20;  // floats: 512 MiB per array
    avec<float> av(n), bv(n);
    float *a = av.data(), *b = bv.data();
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) a[i] = (float)(i & 1023);
    double best = 1e30;
    for (int r = 0; r < 5; r++) {
        double t0 = now_seconds();
        #pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) b[i] = a[i];
        best = std::min(best, now_seconds() - t0);
        if (b[n / 2 + r] < 0) printf(" ");
    }
    return 2.0 * n * sizeof(float) / best / 1e9;
}

// fp32 FMA peak: 12 independent accumulator chains per thread, enough to cover FMA latency;
// the best of 3 runs
static double fma_peak_once() {
    const long iters = 20000000;
    double t0 = now_seconds();
    float sink = 0.0f;
    #pragma omp parallel reduction(+ : sink)
    {
        v16f acc[12];
        for (int i = 0; i < 12; i++) acc[i] = (v16f){} + (float)(omp_get_thread_num() + i) * 1e-3f;
        v16f a = (v16f){} + 0.999999f, b = (v16f){} + 1e-7f;
        for (long it = 0; it < iters; it++) {
            #pragma GCC unroll 32
            for (int i = 0; i < 12; i++) acc[i] = acc[i] * a + b;  // unrolled: the accumulators stay in registers
        }
        for (int i = 0; i < 12; i++)
            for (int j = 0; j < 16; j++) sink += acc[i][j];
    }
    double dt = now_seconds() - t0;
    if (sink == 12345.0f) printf(" ");  // keep the loop alive
    return 2.0 * 16 * 12 * iters * omp_get_max_threads() / dt / 1e9;
}
static double fma_peak_gflops() { return std::max(fma_peak_once(), std::max(fma_peak_once(), fma_peak_once())); }
