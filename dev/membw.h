// membw.h: the host's memory bandwidth, measured by the benchmarks in the same run as the
// figures they hold against it (dev/bench_decode, dev/bench_attend).
#pragma once
#include <omp.h>
#include <algorithm>
#include "../llmc/utils.h"

// read bandwidth: a vectorised sum over 1 GiB on every thread (decoding only reads weights and
// cache, so this is its bound); the best of `reps`. The buffer is kept for the run: the table
// measures it again around every row, because this host's bandwidth drifts by up to 2x within
// minutes (docs/benchmarks.md), and a row is held to the bandwidth measured next to it.
static double stream_read_gbs(int reps = 5) {
    const size_t n = (size_t)256 << 20;  // floats: 1 GiB
    static float* a = nullptr;
    if (!a) {
        a = alloc_floats<float>(n);
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
    float* a = alloc_floats<float>(n);
    float* b = alloc_floats<float>(n);
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
    free(a);
    free(b);
    return 2.0 * n * sizeof(float) / best / 1e9;
}
