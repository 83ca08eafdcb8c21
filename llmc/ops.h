// ops.h: the CPU forward and backward of every non-attention layer, side by side (fp32, OpenMP).
// Shapes in comments: B batch, T time, C channels, V vocab, Vp vocab padded to a multiple of 64.
// Parallel loops give each output element to one thread with a fixed summation order, so the
// results are bitwise reproducible and independent of OMP_NUM_THREADS. (With --matmul blas the
// linear layers are reproducible at a fixed thread count only: each thread's sgemm gets a column
// slice whose width depends on the count, and OpenBLAS may block a narrower slice differently.)
#pragma once
#include <algorithm>
#include <cmath>
#include "matmul.h"
#include "profile.h"
#include "utils.h"

// ---------------------------------------------------------------------------------------------
// token (+ learned position) embedding
// out is (B,T,C); inp is (B,T) token ids; wte is (Vp,C); wpe is (maxT,C) or null
static void encoder_forward(float* out, const int* inp, const float* wte, const float* wpe, int B, int T, int C) {
    #pragma omp parallel for schedule(static)
    for (int bt = 0; bt < B * T; bt++) {
        const float* e = wte + (long)inp[bt] * C;
        const float* p = wpe ? wpe + (long)(bt % T) * C : nullptr;
        float* o = out + (long)bt * C;
        for (int c = 0; c < C; c++) o[c] = p ? e[c] + p[c] : e[c];
    }
}

// dwte and dwpe accumulate. Parallel over channels so repeated tokens never race.
static void encoder_backward(float* dwte, float* dwpe, const float* dout, const int* inp, int B, int T, int C) {
    #pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < C; c0 += 16) {
        int c1 = std::min(C, c0 + 16);
        for (int bt = 0; bt < B * T; bt++) {
            const float* d = dout + (long)bt * C;
            float* w = dwte + (long)inp[bt] * C;
            for (int c = c0; c < c1; c++) w[c] += d[c];
            if (dwpe) {
                float* p = dwpe + (long)(bt % T) * C;
                for (int c = c0; c < c1; c++) p[c] += d[c];
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// LayerNorm. out, inp are (N,C) with N = B*T rows; mean, rstd are (N) saved for backward
static void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                              const float* bias, int N, int C) {
    ProfScope prof(PROF_NORM);
    const float eps = 1e-5f;
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        const float* x = inp + (long)i * C;
        float m = 0.0f;
        for (int c = 0; c < C; c++) m += x[c];
        m /= C;
        float v = 0.0f;
        for (int c = 0; c < C; c++) v += (x[c] - m) * (x[c] - m);
        v /= C;
        float s = 1.0f / sqrtf(v + eps);
        float* o = out + (long)i * C;
        for (int c = 0; c < C; c++) o[c] = (x[c] - m) * s * weight[c] + bias[c];
        mean[i] = m;
        rstd[i] = s;
    }
}

// dinp accumulates (it is the residual stream's gradient); dweight, dbias accumulate
static void layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                               const float* weight, const float* mean, const float* rstd, int N, int C) {
    ProfScope prof(PROF_NORM);
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        const float* d = dout + (long)i * C;
        const float* x = inp + (long)i * C;
        float m = mean[i], s = rstd[i];
        float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
        for (int c = 0; c < C; c++) {
            float dn = weight[c] * d[c];
            dnorm_mean += dn;
            dnorm_norm_mean += dn * (x[c] - m) * s;
        }
        dnorm_mean /= C;
        dnorm_norm_mean /= C;
        float* di = dinp + (long)i * C;
        for (int c = 0; c < C; c++) {
            float norm = (x[c] - m) * s;
            di[c] += (weight[c] * d[c] - dnorm_mean - norm * dnorm_norm_mean) * s;
        }
    }
    // parameter grads: parallel over channel blocks, rows summed in order
    #pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < C; c0 += 16) {
        int c1 = std::min(C, c0 + 16);
        for (int i = 0; i < N; i++) {
            const float* d = dout + (long)i * C;
            const float* x = inp + (long)i * C;
            for (int c = c0; c < c1; c++) {
                dbias[c] += d[c];
                dweight[c] += (x[c] - mean[i]) * rstd[i] * d[c];
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// GELU: tanh approximation (GPT-2) or exact erf form (Pythia / GPT-NeoX). out, inp are (N)
#define GELU_SCALE 0.7978845608028654f  // sqrt(2/pi)
static void gelu_forward(float* out, const float* inp, long N, bool exact) {
    #pragma omp parallel for schedule(static)
    for (long i = 0; i < N; i++) {
        float x = inp[i];
        out[i] = exact ? 0.5f * x * (1.0f + erff(x * 0.70710678118f))
                       : 0.5f * x * (1.0f + tanhf(GELU_SCALE * (x + 0.044715f * x * x * x)));
    }
}

static void gelu_backward(float* dinp, const float* inp, const float* dout, long N, bool exact) {
    #pragma omp parallel for schedule(static)
    for (long i = 0; i < N; i++) {
        float x = inp[i], g;
        if (exact) {
            g = 0.5f * (1.0f + erff(x * 0.70710678118f)) + x * 0.3989422804f * expf(-0.5f * x * x);
        } else {
            float u = GELU_SCALE * (x + 0.044715f * x * x * x);
            float th = tanhf(u), sech2 = 1.0f - th * th;
            g = 0.5f * (1.0f + th) + 0.5f * x * sech2 * GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
        }
        dinp[i] = g * dout[i];
    }
}

// ---------------------------------------------------------------------------------------------
// out = a + b (+ c), all (N)
static void residual_forward(float* out, const float* a, const float* b, const float* c, long N) {
    #pragma omp parallel for schedule(static)
    for (long i = 0; i < N; i++) out[i] = c ? a[i] + b[i] + c[i] : a[i] + b[i];
}

// ---------------------------------------------------------------------------------------------
// softmax + cross-entropy over the real vocab V of padded logits (N,Vp); targets (N), a target
// < 0 is ignored. losses (N) gets -log p(target) and lse (N) the row's log-sum-exp, so that the
// fused backward needs one exp per logit: logits are overwritten by dlogits = dloss *
// (softmax - onehot), and the padded columns get 0. exp is vectorised (exp16 below).

typedef int v16i __attribute__((vector_size(64), aligned(4)));
// exp of 16 floats: e^x = 2^n e^f with n = round(x log2 e) and f = x - n ln 2 (Cody-Waite: ln 2 in
// two parts, so f is exact enough even for |x| ~ 87), |f| <= ln2/2, e^f by its degree-7 Taylor
// polynomial (truncation < 1e-8); inputs clamped to exp's float range
static inline v16f exp16(v16f x) {
    const v16f lo = (v16f){} - 87.3f, hi = (v16f){} + 88.0f;
    x = x < lo ? lo : x;
    x = x > hi ? hi : x;
    v16f n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest
    v16f f = (x - n * 0.693145751953125f) - n * 1.42860682030941723e-6f;
    v16f p = 1.0f + f * (1.0f + f * (0.5f + f * (1.0f / 6 + f * (1.0f / 24 + f * (1.0f / 120 + f * (1.0f / 720 + f * (1.0f / 5040)))))));
    v16i e = (__builtin_convertvector(n, v16i) + 127) << 23;
    v16f scale;
    memcpy(&scale, &e, sizeof(scale));
    return p * scale;
}

static inline float row_max(const float* l, int V) {
    v16f m = (v16f){} - INFINITY;
    int v = 0;
    for (; v + 16 <= V; v += 16) {
        v16f x = *(const v16f*)(l + v);
        m = x > m ? x : m;
    }
    float mx = -INFINITY;
    for (int j = 0; j < 16; j++) mx = fmaxf(mx, m[j]);
    for (; v < V; v++) mx = fmaxf(mx, l[v]);
    return mx;
}

static void crossentropy_forward(float* losses, float* lse, const float* logits, const int* targets, int N, int V, int Vp) {
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        const float* l = logits + (long)i * Vp;
        float mx = row_max(l, V);
        v16f acc = {};
        int v = 0;
        for (; v + 16 <= V; v += 16) acc += exp16(*(const v16f*)(l + v) - mx);
        double s = 0.0;
        for (int j = 0; j < 16; j++) s += acc[j];
        for (; v < V; v++) s += expf(l[v] - mx);
        lse[i] = (float)(log(s) + mx);
        losses[i] = targets[i] < 0 ? 0.0f : lse[i] - l[targets[i]];
    }
}

static void crossentropy_backward_inplace(float* logits, const float* lse, const int* targets, float dloss, int N, int V, int Vp) {
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        float* l = logits + (long)i * Vp;
        if (targets[i] < 0) { memset(l, 0, Vp * sizeof(float)); continue; }
        float m = lse[i];
        int v = 0;
        for (; v + 16 <= V; v += 16) *(v16f*)(l + v) = dloss * exp16(*(v16f*)(l + v) - m);
        for (; v < V; v++) l[v] = dloss * expf(l[v] - m);
        l[targets[i]] -= dloss;
        for (v = V; v < Vp; v++) l[v] = 0.0f;
    }
}

// ---------------------------------------------------------------------------------------------
// RMSNorm (MLA's latent norm): out (N,C) = inp * rsqrt(mean(inp^2) + eps) * weight. The input
// rows may be strided (a slice of a wider row); rrms (N) is saved for backward.
static void rmsnorm_forward(float* out, float* rrms, const float* inp, long in_stride, const float* weight, int N, int C) {
    ProfScope prof(PROF_NORM);
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        const float* x = inp + (long)i * in_stride;
        float ss = 0.0f;
        for (int c = 0; c < C; c++) ss += x[c] * x[c];
        float r = 1.0f / sqrtf(ss / C + 1e-6f);
        float* o = out + (long)i * C;
        for (int c = 0; c < C; c++) o[c] = x[c] * r * weight[c];
        rrms[i] = r;
    }
}

// dinp (strided like inp) is overwritten; dweight accumulates
static void rmsnorm_backward(float* dinp, float* dweight, const float* dout, const float* inp, long in_stride,
                             const float* weight, const float* rrms, int N, int C) {
    ProfScope prof(PROF_NORM);
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        const float* x = inp + (long)i * in_stride;
        const float* d = dout + (long)i * C;
        float r = rrms[i], dot = 0.0f;
        for (int c = 0; c < C; c++) dot += d[c] * weight[c] * x[c];
        float k = dot * r * r * r / C;
        float* di = dinp + (long)i * in_stride;
        for (int c = 0; c < C; c++) di[c] = d[c] * weight[c] * r - x[c] * k;
    }
    #pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < C; c0 += 16) {
        int c1 = std::min(C, c0 + 16);
        for (int i = 0; i < N; i++) {
            const float* x = inp + (long)i * in_stride;
            const float* d = dout + (long)i * C;
            for (int c = c0; c < c1; c++) dweight[c] += d[c] * x[c] * rrms[i];
        }
    }
}
