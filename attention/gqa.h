// gqa.h: the GQA family of attention: MHA (G = H), GQA (G groups), MQA (G = 1).
// Query head h reads KV head h / (H/G): K/V are shared by index, never copied.
// Position encodings: RoPE (partial, NeoX layout) rotates q and k; ALiBi adds a per-head
// linear distance bias to the scores; learned positions live in the embedding; none is none.
// KV cache per token per layer: 2 * G * head_dim elements (the rotated k, and v).
#pragma once
#include <cmath>
#include "../llmc/matmul.h"
#include "attention.h"
#include "core.h"
#include "position.h"

struct GQAAttention : Attention {
    GPTConfig cfg;
    int H, G, hd, C, qkv_dim;
    Rope rope;
    std::vector<float> slopes;  // ALiBi, (H)
    AttnCore core;
    size_t w_qkv, b_qkv, w_o, b_o;
    float *a_base = nullptr, *s_base = nullptr;
    // saved: qkv (B,T,qkv_dim) with q and k rotated in place; lse (B,H,T); y (B,T,H*hd)
    float *qkv, *lse, *y;
    // scratch: dy (B,T,H*hd), dqkv (B,T,qkv_dim)
    float *dy, *dqkv;
    // decode cache: per KV head, the rotated k and v of each held token (kv_cache.h)
    KVCache cache;
    std::vector<float> dec_qkv, dec_y;
    std::vector<int> dec_nk;

    explicit GQAAttention(const GPTConfig& c) : cfg(c) {
        H = c.n_head;
        G = c.n_kv_head;
        hd = c.head_dim;
        C = c.d_model;
        qkv_dim = (H + 2 * G) * hd;
        rope.init(c.rotary_dim(), c.rope_base);
        if (c.pos == POS_ALIBI) slopes = alibi_slopes(H, c.alibi_slope);
        core.H = H; core.group = H / G; core.da = hd; core.db = 0; core.dv = hd;
        core.scale = 1.0f / sqrtf((float)hd);
        core.slopes = slopes.empty() ? nullptr : slopes.data();
    }
    void declare_params(ParamSet& ps, int l) override {
        std::string p = "h" + std::to_string(l) + ".attn.";
        w_qkv = ps.add(p + "w_qkv", qkv_dim, C, INIT_NORMAL);
        b_qkv = ps.add(p + "b_qkv", 1, qkv_dim, INIT_ZERO);
        w_o = ps.add(p + "w_o", C, H * hd, INIT_RESID);
        b_o = ps.add(p + "b_o", 1, C, INIT_ZERO);
    }
    size_t act_floats(int B, int T) const override { return (size_t)B * T * (qkv_dim + H * hd) + (size_t)B * H * T; }
    size_t scratch_floats(int B, int T) const override { return (size_t)B * T * (H * hd + qkv_dim); }
    void bind(float* acts, float* scratch) override { a_base = acts; s_base = scratch; }
    void carve(int B, int T) {
        size_t BT = (size_t)B * T;
        qkv = a_base;
        y = qkv + BT * qkv_dim;
        lse = y + BT * H * hd;
        dy = s_base;
        dqkv = dy + BT * H * hd;
    }
    long kv_elems_per_token() const override { return 2L * G * hd; }
    std::vector<QKView> qk_views() const override {
        return {{"q", qkv, qkv_dim, hd, H, hd, 0, rope.rot}, {"k", qkv + H * hd, qkv_dim, hd, G, hd, 0, rope.rot}};
    }
    // views into a fused (.., qkv_dim) buffer
    StridedTensor Q(float* p) const { return {p, qkv_dim, hd}; }
    StridedTensor K(float* p) const { return {p + H * hd, qkv_dim, hd}; }
    StridedTensor V(float* p) const { return {p + (H + G) * hd, qkv_dim, hd}; }

    void forward(const float* params, const float* x, float* out, int B, int T) override {
        carve(B, T);
        rope.ensure(T);
        matmul_forward(qkv, x, params + w_qkv, params + b_qkv, B * T, C, qkv_dim);
        rope.apply_rows(qkv, qkv_dim, hd, H + G, B, T, false);  // q and k heads
        core.forward(B, T, Q(qkv), K(qkv), {nullptr, 0, 0}, V(qkv), lse, {y, H * hd, hd});
        matmul_forward(out, y, params + w_o, params + b_o, B * T, H * hd, C);
    }

    void backward(const float* params, float* grads, const float* x, const float* dout, float* dx, int B, int T) override {
        carve(B, T);
        matmul_backward(dy, grads + w_o, grads + b_o, dout, y, params + w_o, B * T, H * hd, C);
        memset(dqkv, 0, sizeof(float) * B * T * qkv_dim);
        core.backward(B, T, Q(qkv), K(qkv), {nullptr, 0, 0}, V(qkv), lse, {y, H * hd, hd}, {dy, H * hd, hd}, Q(dqkv), K(dqkv),
                      {nullptr, 0, 0}, V(dqkv));
        rope.apply_rows(dqkv, qkv_dim, hd, H + G, B, T, true);  // the gradient goes back through the rotation by rotating the other way
        matmul_backward(dx, grads + w_qkv, grads + b_qkv, dqkv, x, params + w_qkv, B * T, C, qkv_dim);
    }

    void decode_begin(const float*, int n_seq, int max_T) override {
        rope.ensure(max_T);
        cache.init(n_seq, G, max_T, hd, 0, hd);
    }
    KVCache& kv_cache() override { return cache; }
    const AttnCore& decode_core() const override { return core; }
    const Rope* decode_rope(int* rot_off) const override { *rot_off = 0; return &rope; }
    size_t decode_weight_floats() const override { return (size_t)qkv_dim * C + qkv_dim + (size_t)C * H * hd + C; }
    void decode_step(const float* params, const float* x, const int* seq, const int* pos, int n, float* out) override {
        dec_qkv.resize((size_t)n * qkv_dim);
        dec_y.resize((size_t)n * H * hd);
        dec_nk.resize(n);
        float* qkv1 = dec_qkv.data();
        matmul_forward(qkv1, x, params + w_qkv, params + b_qkv, n, C, qkv_dim);
        rope.ensure(1 + *std::max_element(pos, pos + n));
        // the cache is (seq, KV head, slot, hd): one head's keys are contiguous, so a decode work
        // item streams them (no page-crossing stride between consecutive keys)
        for (int i = 0; i < n; i++) {
            float* r = qkv1 + (size_t)i * qkv_dim;
            if (rope.rot)
                for (int h = 0; h < H + G; h++) rope.apply(r + h * hd, pos[i]);
            const int j = cache.append(seq[i], pos[i]);
            for (int g = 0; g < G; g++) {
                memcpy(cache.ka(seq[i], g, j), r + (H + g) * hd, sizeof(float) * hd);
                memcpy(cache.val(seq[i], g, j), r + (H + G + g) * hd, sizeof(float) * hd);
            }
            dec_nk[i] = j + 1;
        }
        cache.attend(core, n, seq, pos, dec_nk.data(), qkv1, qkv_dim, hd, dec_y.data(), (long)H * hd, hd);
        matmul_forward(out, dec_y.data(), params + w_o, params + b_o, n, H * hd, C);
    }
};
