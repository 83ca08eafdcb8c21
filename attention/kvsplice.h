// kvsplice.h: KVSplice, a learned low-rank compression of MLA's latent (used by mla.h).
//   z = W_c c (d_c -> r), optional LayerNorm (--splice-ln), cached; c' = W_e z (r -> d_c)
// c' replaces the latent everywhere after it, in training exactly as in inference (an earlier
// implementation bypassed the splice in training, so it never learned). Init: W_c with
// orthonormal rows, W_e = W_c^T, so at step 0 c' is c projected onto an r-dim subspace.
#pragma once
#include <cmath>
#include <string>
#include "../llmc/matmul.h"
#include "../llmc/ops.h"
#include "../llmc/params.h"

struct Splice {
    int dc = 0, r = 0, ln = 0;
    size_t w_c = 0, w_e = 0, ln_w = 0, ln_b = 0;

    void declare(ParamSet& ps, const std::string& p) {
        w_c = ps.add(p + "splice.w_c", r, dc, INIT_NORMAL);
        w_e = ps.add(p + "splice.w_e", dc, r, INIT_NORMAL);
        if (ln) {
            ln_w = ps.add(p + "splice.ln_w", 1, r, INIT_ONE);
            ln_b = ps.add(p + "splice.ln_b", 1, r, INIT_ZERO);
        }
    }
    // orthonormal rows for W_c by Gram-Schmidt on Gaussian rows; W_e = W_c^T
    void init(float* params, Rng& rng) const {
        std::vector<double> q((size_t)r * dc);
        for (int i = 0; i < r; i++) {
            double* v = &q[(size_t)i * dc];
            for (int attempt = 0;; attempt++) {
                for (int c = 0; c < dc; c++) v[c] = rng.normal();
                for (int j = 0; j < i; j++) {
                    const double* u = &q[(size_t)j * dc];
                    double d = 0.0;
                    for (int c = 0; c < dc; c++) d += v[c] * u[c];
                    for (int c = 0; c < dc; c++) v[c] -= d * u[c];
                }
                double n = 0.0;
                for (int c = 0; c < dc; c++) n += v[c] * v[c];
                n = sqrt(n);
                if (n > 1e-6 || attempt > 10) {
                    for (int c = 0; c < dc; c++) v[c] /= n;
                    break;
                }
            }
        }
        for (int i = 0; i < r; i++)
            for (int c = 0; c < dc; c++) {
                params[w_c + (size_t)i * dc + c] = (float)q[(size_t)i * dc + c];
                params[w_e + (size_t)c * r + i] = (float)q[(size_t)i * dc + c];
            }
    }
    // floats of saved activations per token: z, zl, mean, rstd, and the expanded latent
    size_t act_per_token() const { return 2 * (size_t)r + 2 + dc; }
    size_t scratch_per_token() const { return 2 * (size_t)r; }

    struct Acts {
        float *z, *zl, *mean, *rstd, *expanded;
    };
    Acts carve(float* p, size_t N) const {
        Acts a;
        a.z = p; a.zl = a.z + N * r; a.mean = a.zl + N * r; a.rstd = a.mean + N; a.expanded = a.rstd + N;
        return a;
    }
    // compress: c (N, dc) -> zl (N, r); the value that is cached
    void compress(const float* params, const float* c, Acts& a, int N) const {
        matmul_forward(a.z, c, params + w_c, nullptr, N, dc, r);
        if (ln) layernorm_forward(a.zl, a.mean, a.rstd, a.z, params + ln_w, params + ln_b, N, r);
        else memcpy(a.zl, a.z, sizeof(float) * N * r);
    }
    // expand: zl (N, r) -> out (N, dc)
    void expand(const float* params, const float* zl, float* out, int N) const { matmul_forward(out, zl, params + w_e, nullptr, N, r, dc); }
    void forward(const float* params, const float* c, Acts& a, int N) const {
        compress(params, c, a, N);
        expand(params, a.zl, a.expanded, N);
    }
    // dout (N, dc) is the gradient of the expanded latent; dc_out (N, dc) is overwritten
    void backward(const float* params, float* grads, const float* dout, const float* c, const Acts& a, float* scratch,
                  float* dc_out, int N) const {
        float* dzl = scratch;
        float* dz = scratch + (size_t)N * r;
        matmul_backward(dzl, grads + w_e, nullptr, dout, a.zl, params + w_e, N, r, dc);
        if (ln) {
            memset(dz, 0, sizeof(float) * N * r);
            layernorm_backward(dz, grads + ln_w, grads + ln_b, dzl, a.z, params + ln_w, a.mean, a.rstd, N, r);
        } else {
            memcpy(dz, dzl, sizeof(float) * N * r);
        }
        matmul_backward(dc_out, grads + w_c, nullptr, dz, c, params + w_c, N, dc, r);
    }
};
