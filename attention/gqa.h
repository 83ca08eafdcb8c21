// gqa.h: the GQA family of attention: MHA (G = H), GQA (G groups), MQA (G = 1).
// Query head h reads KV head h / (H/G): K/V are shared by index, never copied.
// Position encodings: RoPE (partial, NeoX layout) rotates q and k; ALiBi adds a per-head
// linear distance bias to the scores; learned positions live in the embedding; none is none.
// KV cache per token per layer: 2 * G * head_dim elements (the rotated k, and v).
#pragma once
#include <cmath>
#include "../llmc/matmul.h"
#include "attention.h"
#include "position.h"

struct GQAAttention : Attention {
    GPTConfig cfg;
    int H, G, hd, C, qkv_dim;
    float scale;
    Rope rope;
    std::vector<float> slopes;  // ALiBi, (H)
    size_t w_qkv, b_qkv, w_o, b_o;
    // saved activations
    float *qkv, *q, *k, *att, *y;  // (B,T,qkv_dim) (B,T,H,hd) (B,T,G,hd) (B,H,T,T) (B,T,H*hd)
    // backward scratch
    float *dy, *dqkv;             // (B,T,H*hd) (B,T,qkv_dim)
    int Bmax = 0, Tmax = 0;

    explicit GQAAttention(const GPTConfig& c) : cfg(c) {
        H = c.n_head;
        G = c.n_kv_head;
        hd = c.head_dim;
        C = c.d_model;
        qkv_dim = (H + 2 * G) * hd;
        scale = 1.0f / sqrtf((float)hd);
        rope.init(c.rotary_dim(), c.rope_base);
        if (c.pos == POS_ALIBI) slopes = alibi_slopes(H, c.alibi_slope);
    }
    void declare_params(ParamSet& ps, int l) override {
        std::string p = "h" + std::to_string(l) + ".attn.";
        w_qkv = ps.add(p + "w_qkv", qkv_dim, C, INIT_NORMAL);
        b_qkv = ps.add(p + "b_qkv", 1, qkv_dim, INIT_ZERO);
        w_o = ps.add(p + "w_o", C, H * hd, INIT_RESID);
        b_o = ps.add(p + "b_o", 1, C, INIT_ZERO);
    }
    size_t act_floats(int B, int T) const override {
        return (size_t)B * T * (qkv_dim + H * hd + G * hd + H * hd) + (size_t)B * H * T * T;
    }
    size_t scratch_floats(int B, int T) const override { return (size_t)B * T * (H * hd + qkv_dim); }
    void bind(float* acts, float* scratch) override { a_base = acts; s_base = scratch; }
    float *a_base = nullptr, *s_base = nullptr;
    void carve(int B, int T) {  // lay out the buffers for this (B,T)
        size_t BT = (size_t)B * T;
        qkv = a_base;
        q = qkv + BT * qkv_dim;
        k = q + BT * H * hd;
        y = k + BT * G * hd;
        att = y + BT * H * hd;
        dy = s_base;
        dqkv = dy + BT * H * hd;
    }
    long kv_elems_per_token() const override { return 2L * G * hd; }

    // biased, scaled score of query (h,t) against key t2
    inline float bias(int h, int t, int t2) const { return slopes.empty() ? 0.0f : -slopes[h] * (float)(t - t2); }

    void forward(const float* params, const float* x, float* out, int B, int T) override {
        carve(B, T);
        rope.ensure(T);
        matmul_forward(qkv, x, params + w_qkv, params + b_qkv, B * T, C, qkv_dim);
        // split heads and rotate q, k
        #pragma omp parallel for schedule(static)
        for (int bt = 0; bt < B * T; bt++) {
            int t = bt % T;
            const float* src = qkv + (size_t)bt * qkv_dim;
            memcpy(q + (size_t)bt * H * hd, src, sizeof(float) * H * hd);
            memcpy(k + (size_t)bt * G * hd, src + H * hd, sizeof(float) * G * hd);
            if (rope.rot) {
                for (int h = 0; h < H; h++) rope.apply(q + ((size_t)bt * H + h) * hd, t);
                for (int g = 0; g < G; g++) rope.apply(k + ((size_t)bt * G + g) * hd, t);
            }
        }
        const int group = H / G;
        #pragma omp parallel for collapse(2) schedule(static)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++) {
                int g = h / group;
                for (int t = 0; t < T; t++) {
                    const float* qv = q + (((size_t)b * T + t) * H + h) * hd;
                    float* a = att + (((size_t)b * H + h) * T + t) * T;
                    float mx = -INFINITY;
                    for (int t2 = 0; t2 <= t; t2++) {
                        const float* kv = k + (((size_t)b * T + t2) * G + g) * hd;
                        float s = 0.0f;
                        for (int i = 0; i < hd; i++) s += qv[i] * kv[i];
                        s = s * scale + bias(h, t, t2);
                        a[t2] = s;
                        mx = fmaxf(mx, s);
                    }
                    float sum = 0.0f;
                    for (int t2 = 0; t2 <= t; t2++) {
                        a[t2] = expf(a[t2] - mx);
                        sum += a[t2];
                    }
                    float inv = 1.0f / sum;
                    float* yv = y + ((size_t)b * T + t) * H * hd + h * hd;
                    for (int i = 0; i < hd; i++) yv[i] = 0.0f;
                    for (int t2 = 0; t2 <= t; t2++) {
                        a[t2] *= inv;
                        const float* vv = qkv + ((size_t)b * T + t2) * qkv_dim + (H + G + g) * hd;
                        for (int i = 0; i < hd; i++) yv[i] += a[t2] * vv[i];
                    }
                }
            }
        matmul_forward(out, y, params + w_o, params + b_o, B * T, H * hd, C);
    }

    void backward(const float* params, float* grads, const float* x, const float* dout, float* dx, int B,
                  int T) override {
        carve(B, T);
        matmul_backward(dy, grads + w_o, grads + b_o, dout, y, params + w_o, B * T, H * hd, C);
        memset(dqkv, 0, sizeof(float) * B * T * qkv_dim);
        const int group = H / G;
        // one thread per (b, kv head): the heads sharing K/V accumulate dk, dv in a fixed order
        #pragma omp parallel for collapse(2) schedule(static)
        for (int b = 0; b < B; b++)
            for (int g = 0; g < G; g++) {
                std::vector<float> datt(T);
                for (int h = g * group; h < (g + 1) * group; h++)
                    for (int t = 0; t < T; t++) {
                        const float* a = att + (((size_t)b * H + h) * T + t) * T;
                        const float* dyv = dy + ((size_t)b * T + t) * H * hd + h * hd;
                        const float* qv = q + (((size_t)b * T + t) * H + h) * hd;
                        float* dq = dqkv + ((size_t)b * T + t) * qkv_dim + h * hd;
                        float dot_sum = 0.0f;
                        for (int t2 = 0; t2 <= t; t2++) {
                            const float* vv = qkv + ((size_t)b * T + t2) * qkv_dim + (H + G + g) * hd;
                            float* dv = dqkv + ((size_t)b * T + t2) * qkv_dim + (H + G + g) * hd;
                            float d = 0.0f;
                            for (int i = 0; i < hd; i++) {
                                d += dyv[i] * vv[i];
                                dv[i] += a[t2] * dyv[i];
                            }
                            datt[t2] = d;
                            dot_sum += a[t2] * d;
                        }
                        for (int t2 = 0; t2 <= t; t2++) {
                            float ds = a[t2] * (datt[t2] - dot_sum) * scale;  // d(score before scaling)
                            const float* kv = k + (((size_t)b * T + t2) * G + g) * hd;
                            float* dk = dqkv + ((size_t)b * T + t2) * qkv_dim + (H + g) * hd;
                            for (int i = 0; i < hd; i++) {
                                dq[i] += ds * kv[i];
                                dk[i] += ds * qv[i];
                            }
                        }
                    }
            }
        if (rope.rot) {  // gradients flow back through the rotation by rotating the other way
            #pragma omp parallel for schedule(static)
            for (int bt = 0; bt < B * T; bt++) {
                int t = bt % T;
                float* d = dqkv + (size_t)bt * qkv_dim;
                for (int h = 0; h < H + G; h++) rope.apply(d + h * hd, t, true);
            }
        }
        matmul_backward(dx, grads + w_qkv, grads + b_qkv, dqkv, x, params + w_qkv, B * T, C, qkv_dim);
    }
};
