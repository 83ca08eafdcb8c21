// mka.h: memorized-key attention (MKA): three memory levels mixed per token by a router.
//   level 1, local:     causal attention over the tokens' own K/V (RoPE / ALiBi apply here)
//   level 2, session:   s_t = mean(x_1..x_t), a causal running summary (never future tokens);
//                       one memory item, so its softmax weight is 1 and it yields v = W_V s_t
//                       (computed as the running mean of W_V x_i + b_V, which the shared
//                       projection already holds: the same value, without a second matmul)
//   level 3, long-term: M learned memory slots m_j (N(0,1) init, not zeros); q_t attends over
//                       keys W_K m_j and values W_V m_j (no position: slots are not tokens)
//   router:             r_t = softmax(W_2 gelu(W_1 x_t + b_1) + b_2), 3 weights per token
//   out = W_O (r_t0 y1 + r_t1 y2 + r_t2 y3) + b_O
// Q/K/V of all levels come from one shared projection W_QKV. Level 3 uses q before RoPE.
// Decoding cache: level-1 K/V per token (2*H*hd, as MHA), the running sum and count of
// level 2 (d_model + 1 per sequence), nothing per token for level 3 (its K/V come from weights).
//
// fmka (fast MKA, -a fmka): ONE attention over the router-mixed memory. Every query (t, h) runs a
// single softmax over the union of its local keys, the session key k_s = W_K s_t and the M slot
// keys, with each level's logits shifted by the router logit z_l (no separate normalisation per
// level, no mixing afterwards). Computed exactly by merging the levels' partial softmaxes with
// their log-sum-exps (as flash attention merges tiles): out_h = sum_l w_hl y_hl with
// w_h = softmax_l(z_l + lse_hl), lse_h2 = scale q.k_s (one item), q unrotated for levels 2 and 3.
// Same parameters and the same cache as mka; gradients also flow through each lse.
#pragma once
#include <cmath>
#include "../llmc/matmul.h"
#include "../llmc/ops.h"
#include "attention.h"
#include "core.h"
#include "position.h"

struct MKAAttention : Attention {
    static const int MEM_SLOTS = 16;
    GPTConfig cfg;
    int H, hd, C, D, M, R;  // D = H*hd, M slots, R router hidden width
    Rope rope;
    std::vector<float> slopes;
    AttnCore core;
    size_t w_qkv, b_qkv, w_o, b_o, mem, w_r1, b_r1, w_r2, b_r2;
    float *a_base = nullptr, *s_base = nullptr;
    // saved: qkv raw (N,3D); qk rotated (N,2D); lse (B,H,T); y1,y2,y3,y (N,D);
    // mkv (M,3D) = projected slots; p3 (N,H,M); r1, rg (N,R); rw (N,3)
    float *qkv, *qk, *lse, *y1, *y2, *y3, *y, *mkv, *p3, *r1, *rg, *rw;
    // scratch: dy, dy1 (N,D); dqk (N,2D); dqkv (N,3D); dmkv (M,3D); dp3 (N,H,M); drg, dr1 (N,R); drw (N,3); dmem (M,C)
    float *dy, *dyl, *dqk, *dqkv, *dmkv, *dp3, *drg, *dr1, *drw, *dmem;
    // decode
    KVCache cache;  // level 1's rotated k and v per head (kv_cache.h); presses evict from level 1 only
    std::vector<float> run_sum, dec_mkv, dec_buf;
    std::vector<int> dec_nk;
    int dec_S = 0;
    // fmka: kv2 (N,2D) session key and value; lse2, lse3 (N,H); wts (N,H,3) mixing weights;
    // scratch dkv2 (N,2D), dlse1 (B,H,T), dlse2, dlse3 (N,H)
    bool fast = false;
    float *kv2 = nullptr, *lse2 = nullptr, *lse3 = nullptr, *wts = nullptr, *dkv2 = nullptr, *dlse1 = nullptr, *dlse2 = nullptr, *dlse3 = nullptr;

    explicit MKAAttention(const GPTConfig& c) : cfg(c) {
        H = c.n_head; hd = c.head_dim; C = c.d_model; D = H * hd; M = MEM_SLOTS; R = std::max(16, C / 4);
        fast = c.attn == ATTN_FMKA;
        rope.init(c.rotary_dim(), c.rope_base);
        if (c.pos == POS_ALIBI) slopes = alibi_slopes(H, c.alibi_slope);
        core.H = H; core.group = 1; core.da = hd; core.db = 0; core.dv = hd;
        core.scale = 1.0f / sqrtf((float)hd);
        core.slopes = slopes.empty() ? nullptr : slopes.data();
    }
    void declare_params(ParamSet& ps, int l) override {
        std::string p = "h" + std::to_string(l) + ".attn.";
        w_qkv = ps.add(p + "w_qkv", 3 * D, C, INIT_NORMAL);
        b_qkv = ps.add(p + "b_qkv", 1, 3 * D, INIT_ZERO);
        mem = ps.add(p + "mem_slots", M, C, INIT_NORMAL);
        w_r1 = ps.add(p + "router.w1", R, C, INIT_NORMAL);
        b_r1 = ps.add(p + "router.b1", 1, R, INIT_ZERO);
        w_r2 = ps.add(p + "router.w2", 3, R, INIT_NORMAL);
        b_r2 = ps.add(p + "router.b2", 1, 3, INIT_ZERO);
        w_o = ps.add(p + "w_o", C, D, INIT_RESID);
        b_o = ps.add(p + "b_o", 1, C, INIT_ZERO);
    }
    void init_params(float* params, Rng& rng) override {
        for (size_t i = 0; i < (size_t)M * C; i++) params[mem + i] = rng.normal();  // slots live in LayerNorm'd input space
    }
    size_t act_floats(int B, int T) const override {
        size_t N = (size_t)B * T;
        return N * (3 * D + 2 * D + 4 * D + H * M + 2 * R + 3) + (size_t)M * 3 * D + (size_t)B * H * T +
               (fast ? N * (2 * D + 5 * H) : 0);
    }
    size_t scratch_floats(int B, int T) const override {
        size_t N = (size_t)B * T;
        return N * (2 * D + 2 * D + 3 * D + H * M + 2 * R + 3) + (size_t)M * 3 * D + (size_t)M * C +
               (fast ? N * (2 * D + 3 * H) : 0);
    }
    void bind(float* acts, float* scratch) override { a_base = acts; s_base = scratch; }
    void carve(int B, int T) {
        size_t N = (size_t)B * T;
        float* p = a_base;
        auto take = [&](size_t n) { float* r = p; p += n; return r; };
        qkv = take(N * 3 * D); qk = take(N * 2 * D); y1 = take(N * D); y2 = take(N * D); y3 = take(N * D); y = take(N * D);
        p3 = take(N * H * M); r1 = take(N * R); rg = take(N * R); rw = take(N * 3); mkv = take((size_t)M * 3 * D);
        lse = take((size_t)B * H * T);
        if (fast) { kv2 = take(N * 2 * D); lse2 = take(N * H); lse3 = take(N * H); wts = take(N * H * 3); }
        p = s_base;
        dy = take(N * D); dyl = take(N * D); dqk = take(N * 2 * D); dqkv = take(N * 3 * D);
        dp3 = take(N * H * M); drg = take(N * R); dr1 = take(N * R); drw = take(N * 3); dmkv = take((size_t)M * 3 * D); dmem = take((size_t)M * C);
        if (fast) { dkv2 = take(N * 2 * D); dlse1 = take(N * H); dlse2 = take(N * H); dlse3 = take(N * H); }
    }
    long kv_elems_per_token() const override { return 2L * D; }
    std::vector<QKView> qk_views() const override {  // level 1's rotated q and k
        return {{"q", qk, 2L * D, hd, H, hd, 0, rope.rot}, {"k", qk + D, 2L * D, hd, H, hd, 0, rope.rot}};
    }

    // level 3 for one token: q (D, unrotated) against projected slots mkv (M,3D) -> p (H,M), y (D),
    // and each head's log-sum-exp of the scores into lse_out (H) when given
    void slots_attend(const float* q, const float* mkv_, float* p, float* yv, float* lse_out = nullptr) const {
        const float scale = core.scale;  // 1/sqrt(hd), as level 1
        for (int h = 0; h < H; h++) {
            float mx = -INFINITY;
            for (int j = 0; j < M; j++) {
                const float* k = mkv_ + (size_t)j * 3 * D + D + h * hd;
                p[h * M + j] = dotf(q + h * hd, k, hd) * scale;  // vectorised: a scalar sum here was a chain of adds
                mx = fmaxf(mx, p[h * M + j]);
            }
            float sum = 0.0f;
            for (int j = 0; j < M; j++) { p[h * M + j] = expf(p[h * M + j] - mx); sum += p[h * M + j]; }
            if (lse_out) lse_out[h] = mx + logf(sum);
            for (int i = 0; i < hd; i++) yv[h * hd + i] = 0.0f;
            for (int j = 0; j < M; j++) {
                p[h * M + j] /= sum;
                const float* v = mkv_ + (size_t)j * 3 * D + 2 * D + h * hd;
                for (int i = 0; i < hd; i++) yv[h * hd + i] += p[h * M + j] * v[i];
            }
        }
    }
    // fmka: one token's mixing weights w (H,3) = softmax_l(z_l + lse_hl) and its output y (D)
    void fast_mix(const float* z, const float* l1, long l1_stride, const float* l2, const float* l3, const float* ya, const float* yb,
                  const float* yc, float* w, float* yv) const {
        for (int h = 0; h < H; h++) {
            float a[3] = {z[0] + l1[h * l1_stride], z[1] + l2[h], z[2] + l3[h]};
            softmax3(a, w + h * 3);
            for (int i = 0; i < hd; i++) {
                int k = h * hd + i;
                yv[k] = w[h * 3] * ya[k] + w[h * 3 + 1] * yb[k] + w[h * 3 + 2] * yc[k];
            }
        }
    }
    static void softmax3(const float* l, float* r) {
        float mx = fmaxf(l[0], fmaxf(l[1], l[2]));
        float e0 = expf(l[0] - mx), e1 = expf(l[1] - mx), e2 = expf(l[2] - mx), inv = 1.0f / (e0 + e1 + e2);
        r[0] = e0 * inv; r[1] = e1 * inv; r[2] = e2 * inv;
    }

    void forward(const float* params, const float* x, float* out, int B, int T) override {
        carve(B, T);
        rope.ensure(T);
        int N = B * T;
        matmul_forward(qkv, x, params + w_qkv, params + b_qkv, N, C, 3 * D);
        #pragma omp parallel for schedule(static)
        for (int bt = 0; bt < N; bt++) memcpy(qk + (size_t)bt * 2 * D, qkv + (size_t)bt * 3 * D, sizeof(float) * 2 * D);
        rope.apply_rows(qk, 2 * D, hd, 2 * H, B, T, false);  // level 1's q and k; level 3 keeps qkv's q unrotated
        // level 1
        core.forward(B, T, {qk, 2 * D, hd}, {qk + D, 2 * D, hd}, {nullptr, 0, 0}, {qkv + 2 * D, 3 * D, hd}, lse, {y1, D, hd});
        // level 2: W s_t + b with s_t the causal running mean of x is the running mean of
        // W x_i + b, qkv's rows: its V part (mka), its unrotated K and V parts (fmka), summed in order
        const int l2_off = fast ? D : 2 * D, l2_w = fast ? 2 * D : D;
        float* l2 = fast ? kv2 : y2;
        #pragma omp parallel for schedule(static)
        for (int b = 0; b < B; b++) {
            static thread_local std::vector<float> acc;  // allocated once per thread, not per step
            acc.assign(l2_w, 0.0f);
            for (int t = 0; t < T; t++) {
                const float* src = qkv + ((size_t)b * T + t) * 3 * D + l2_off;
                float* dst = l2 + ((size_t)b * T + t) * l2_w;
                for (int c = 0; c < l2_w; c++) { acc[c] += src[c]; dst[c] = acc[c] / (t + 1); }
            }
        }
        if (fast) {  // y2 is the session value; the session key gets its single score (q unrotated)
            #pragma omp parallel for schedule(static)
            for (int bt = 0; bt < N; bt++) {
                memcpy(y2 + (size_t)bt * D, kv2 + (size_t)bt * 2 * D + D, sizeof(float) * D);
                for (int h = 0; h < H; h++)
                    lse2[(size_t)bt * H + h] = core.scale * dotf(qkv + (size_t)bt * 3 * D + h * hd, kv2 + (size_t)bt * 2 * D + h * hd, hd);
            }
        }
        // level 3
        matmul_forward(mkv, params + mem, params + w_qkv, params + b_qkv, M, C, 3 * D);
        #pragma omp parallel for schedule(static)
        for (int bt = 0; bt < N; bt++)
            slots_attend(qkv + (size_t)bt * 3 * D, mkv, p3 + (size_t)bt * H * M, y3 + (size_t)bt * D, fast ? lse3 + (size_t)bt * H : nullptr);
        // router and mix
        matmul_forward(r1, x, params + w_r1, params + b_r1, N, C, R);
        gelu_forward(rg, r1, (long)N * R, true);
        matmul_forward(rw, rg, params + w_r2, params + b_r2, N, R, 3);
        #pragma omp parallel for schedule(static)
        for (int bt = 0; bt < N; bt++) {
            float* r = rw + (size_t)bt * 3;
            size_t o = (size_t)bt * D;
            if (fast) {  // rw keeps the router logits z
                int b = bt / T, t = bt % T;
                fast_mix(r, lse + (size_t)b * H * T + t, T, lse2 + (size_t)bt * H, lse3 + (size_t)bt * H, y1 + o, y2 + o, y3 + o,
                         wts + (size_t)bt * H * 3, y + o);
                continue;
            }
            softmax3(r, r);
            for (int i = 0; i < D; i++) y[o + i] = r[0] * y1[o + i] + r[1] * y2[o + i] + r[2] * y3[o + i];
        }
        matmul_forward(out, y, params + w_o, params + b_o, N, D, C);
    }

    void backward(const float* params, float* grads, const float* x, const float* dout, float* dx, int B, int T) override {
        carve(B, T);
        int N = B * T;
        matmul_backward(dy, grads + w_o, grads + b_o, dout, y, params + w_o, N, D, C);
        // router: dr_l = dy . y_l, softmax backward to the logits. fmka: per head, the weights
        // w = softmax(z + lse) give da = w (d - w.d), which reaches both z (summed over heads) and
        // each level's lse
        #pragma omp parallel for schedule(static)
        for (int bt = 0; bt < N; bt++) {
            if (fast) {
                int b = bt / T, t = bt % T;
                float dz[3] = {0, 0, 0};
                for (int h = 0; h < H; h++) {
                    const float* w = wts + ((size_t)bt * H + h) * 3;
                    size_t k0 = (size_t)bt * D + h * hd;
                    float d[3] = {dotf(dy + k0, y1 + k0, hd), dotf(dy + k0, y2 + k0, hd), dotf(dy + k0, y3 + k0, hd)};
                    float dot = w[0] * d[0] + w[1] * d[1] + w[2] * d[2];
                    float da[3];
                    for (int l = 0; l < 3; l++) { da[l] = w[l] * (d[l] - dot); dz[l] += da[l]; }
                    dlse1[((size_t)b * H + h) * T + t] = da[0];
                    dlse2[(size_t)bt * H + h] = da[1];
                    dlse3[(size_t)bt * H + h] = da[2];
                }
                for (int l = 0; l < 3; l++) drw[(size_t)bt * 3 + l] = dz[l];
                continue;
            }
            const float* r = rw + (size_t)bt * 3;
            float d[3] = {0, 0, 0};
            for (int i = 0; i < D; i++) {
                size_t k = (size_t)bt * D + i;
                d[0] += dy[k] * y1[k]; d[1] += dy[k] * y2[k]; d[2] += dy[k] * y3[k];
            }
            float dot = r[0] * d[0] + r[1] * d[1] + r[2] * d[2];
            for (int l = 0; l < 3; l++) drw[(size_t)bt * 3 + l] = r[l] * (d[l] - dot);
        }
        matmul_backward(drg, grads + w_r2, grads + b_r2, drw, rg, params + w_r2, N, R, 3);
        gelu_backward(dr1, r1, drg, (long)N * R, true);
        matmul_backward(dx, grads + w_r1, grads + b_r1, dr1, x, params + w_r1, N, C, R);
        memset(dqkv, 0, sizeof(float) * N * 3 * D);
        // level 1 (dy scaled by its router weight)
        auto scaled_dy = [&](int l) {  // dy of level l: times its router weight (fmka: the head's weight)
            #pragma omp parallel for schedule(static)
            for (int bt = 0; bt < N; bt++)
                for (int i = 0; i < D; i++)
                    dyl[(size_t)bt * D + i] = (fast ? wts[((size_t)bt * H + i / hd) * 3 + l] : rw[(size_t)bt * 3 + l]) * dy[(size_t)bt * D + i];
        };
        scaled_dy(0);
        memset(dqk, 0, sizeof(float) * N * 2 * D);
        core.backward(B, T, {qk, 2 * D, hd}, {qk + D, 2 * D, hd}, {nullptr, 0, 0}, {qkv + 2 * D, 3 * D, hd}, lse, {y1, D, hd}, {dyl, D, hd},
                      {dqk, 2 * D, hd}, {dqk + D, 2 * D, hd}, {nullptr, 0, 0}, {dqkv + 2 * D, 3 * D, hd}, fast ? dlse1 : nullptr);
        rope.apply_rows(dqk, 2 * D, hd, 2 * H, B, T, true);
        #pragma omp parallel for schedule(static)
        for (int bt = 0; bt < N; bt++)
            for (int i = 0; i < 2 * D; i++) dqkv[(size_t)bt * 3 * D + i] += dqk[(size_t)bt * 2 * D + i];
        // level 2: the running mean back to qkv's rows (a reverse cumulative sum); W_V (and W_K
        // for fmka) and x get it through the shared projection's backward below
        scaled_dy(1);
        if (fast) {  // v_s gets dyl; k_s and the (unrotated) q get the session score's gradient
            #pragma omp parallel for schedule(static)
            for (int bt = 0; bt < N; bt++) {
                float* dk = dkv2 + (size_t)bt * 2 * D;
                const float* q = qkv + (size_t)bt * 3 * D;
                const float* k = kv2 + (size_t)bt * 2 * D;
                float* dq = dqkv + (size_t)bt * 3 * D;
                for (int h = 0; h < H; h++) {
                    float g = dlse2[(size_t)bt * H + h] * core.scale;  // d(score) = d lse2 for a single item
                    for (int i = 0; i < hd; i++) {
                        dk[h * hd + i] = g * q[h * hd + i];
                        dq[h * hd + i] += g * k[h * hd + i];
                    }
                }
                memcpy(dk + D, dyl + (size_t)bt * D, sizeof(float) * D);
            }
        }
        {
            const int l2_off = fast ? D : 2 * D, l2_w = fast ? 2 * D : D;
            const float* dl2 = fast ? dkv2 : dyl;
            #pragma omp parallel for schedule(static)
            for (int b = 0; b < B; b++) {
                static thread_local std::vector<float> acc;
                acc.assign(l2_w, 0.0f);
                for (int t = T - 1; t >= 0; t--) {
                    const float* src = dl2 + ((size_t)b * T + t) * l2_w;
                    float* dst = dqkv + ((size_t)b * T + t) * 3 * D + l2_off;
                    for (int c = 0; c < l2_w; c++) { acc[c] += src[c] / (t + 1); dst[c] += acc[c]; }
                }
            }
        }
        // level 3: softmax over slots; gradients to q (unrotated) and to the projected slots
        scaled_dy(2);
        const float scale = core.scale;  // 1/sqrt(hd), as level 1
        #pragma omp parallel for schedule(static)
        for (int bt = 0; bt < N; bt++)
            for (int h = 0; h < H; h++) {
                const float* p = p3 + ((size_t)bt * H + h) * M;
                const float* dyv = dyl + (size_t)bt * D + h * hd;
                float dp[MEM_SLOTS], dot = 0.0f;
                for (int j = 0; j < M; j++) {
                    const float* v = mkv + (size_t)j * 3 * D + 2 * D + h * hd;
                    const float d = dotf(dyv, v, hd);
                    dp[j] = d;
                    dot += p[j] * d;
                }
                float* dq = dqkv + (size_t)bt * 3 * D + h * hd;
                float g3 = fast ? dlse3[(size_t)bt * H + h] : 0.0f;  // fmka: gradient at this head's slot lse
                for (int j = 0; j < M; j++) {
                    float dsc = p[j] * (dp[j] - dot + g3) * scale;
                    dp3[((size_t)bt * H + h) * M + j] = dsc;
                    const float* k = mkv + (size_t)j * 3 * D + D + h * hd;
                    for (int i = 0; i < hd; i++) dq[i] += dsc * k[i];
                }
            }
        memset(dmkv, 0, sizeof(float) * M * 3 * D);
        #pragma omp parallel for collapse(2) schedule(static)
        for (int j = 0; j < M; j++)
            for (int h = 0; h < H; h++) {
                float* dk = dmkv + (size_t)j * 3 * D + D + h * hd;
                float* dv = dmkv + (size_t)j * 3 * D + 2 * D + h * hd;
                for (int bt = 0; bt < N; bt++) {
                    float dsc = dp3[((size_t)bt * H + h) * M + j], p = p3[((size_t)bt * H + h) * M + j];
                    const float* q = qkv + (size_t)bt * 3 * D + h * hd;
                    const float* dyv = dyl + (size_t)bt * D + h * hd;
                    for (int i = 0; i < hd; i++) { dk[i] += dsc * q[i]; dv[i] += p * dyv[i]; }
                }
            }
        matmul_backward(dmem, grads + w_qkv, grads + b_qkv, dmkv, params + mem, params + w_qkv, M, C, 3 * D);
        add_to(grads + mem, dmem, (long)M * C);
        matmul_backward(dx, grads + w_qkv, grads + b_qkv, dqkv, x, params + w_qkv, N, C, 3 * D, true);
    }
    static void add_to(float* a, const float* b, long n) {
        for (long i = 0; i < n; i++) a[i] += b[i];
    }

    // ---- decoding ----
    void decode_begin(const float* params, int n_seq, int max_T) override {
        rope.ensure(max_T);
        dec_S = n_seq;
        cache.init(n_seq, H, max_T, hd, 0, hd);
        run_sum.assign((size_t)n_seq * (C + 1), 0.0f);  // per sequence: the sum of x, then the count
        dec_mkv.resize((size_t)M * 3 * D);
        matmul_forward(dec_mkv.data(), params + mem, params + w_qkv, params + b_qkv, M, C, 3 * D);
    }
    // level 2 projects the running mean through W_V (mka) or W_K, W_V (fmka) in a call of its own:
    // those rows of W_QKV are read a second time each step (their own packed copy)
    size_t decode_weight_floats() const override {
        const size_t level2 = (size_t)(fast ? 2 : 1) * D * (C + 1);
        return (size_t)3 * D * C + 3 * D + level2 + dec_mkv.size() + (size_t)R * C + R + 3 * R + 3 + (size_t)C * D + C;
    }
    KVCache& kv_cache() override { return cache; }
    const AttnCore& decode_core() const override { return core; }
    const Rope* decode_rope(int* rot_off) const override { *rot_off = 0; return &rope; }
    size_t cache_floats_fixed() const override { return dec_S ? run_sum.size() / dec_S : 0; }
    void decode_step(const float* params, const float* x, const int* seq, const int* pos, int n, float* out) override {
        const size_t per_row = 3 * D + D * 4 + C + H * M + 2 * R + 3 + 2 * D + 6 * H;
        dec_buf.resize((size_t)n * per_row);
        float* p = dec_buf.data();
        auto take = [&](size_t k) { float* r = p; p += (size_t)n * k; return r; };
        float *q3 = take(3 * D), *ya = take(D), *yb = take(D), *yc = take(D), *ym = take(D), *sv = take(C), *pp = take(H * M),
              *h1 = take(R), *h2 = take(R), *rl = take(3), *kvs = take(2 * D), *l1 = take(H), *l2 = take(H), *l3 = take(H), *w = take(3 * H);
        matmul_forward(q3, x, params + w_qkv, params + b_qkv, n, C, 3 * D);
        prof_macs(PROF_ATTENTION, (double)n * H * M * 2 * hd);  // level 3: every slot's score and weighted value
        #pragma omp parallel for schedule(static)
        for (int i = 0; i < n; i++)  // level 3 with the unrotated q
            slots_attend(q3 + (size_t)i * 3 * D, dec_mkv.data(), pp + (size_t)i * H * M, yc + (size_t)i * D, l3 + (size_t)i * H);
        // level 2 (before q is rotated: fmka scores the session key with the unrotated q); the
        // running sums advance row by row, so the rows of one sequence see their own prefixes
        for (int i = 0; i < n; i++) {
            float* rs = &run_sum[(size_t)seq[i] * (C + 1)];
            rs[C] += 1.0f;
            for (int c = 0; c < C; c++) { rs[c] += x[(size_t)i * C + c]; sv[(size_t)i * C + c] = rs[c] / rs[C]; }
        }
        if (!fast) {
            matmul_forward(yb, sv, params + w_qkv + (size_t)2 * D * C, params + b_qkv + 2 * D, n, C, D);
        } else {
            matmul_forward(kvs, sv, params + w_qkv + (size_t)D * C, params + b_qkv + D, n, C, 2 * D);
            for (int i = 0; i < n; i++) {
                memcpy(yb + (size_t)i * D, kvs + (size_t)i * 2 * D + D, sizeof(float) * D);
                for (int h = 0; h < H; h++) l2[(size_t)i * H + h] = core.scale * dotf(q3 + (size_t)i * 3 * D + h * hd, kvs + (size_t)i * 2 * D + h * hd, hd);
            }
        }
        // level 1's cache is (seq, head, slot, hd), as the GQA family's: one head's keys contiguous
        rope.ensure(1 + *std::max_element(pos, pos + n));
        dec_nk.resize(n);
        for (int i = 0; i < n; i++) {
            float* r = q3 + (size_t)i * 3 * D;
            if (rope.rot)
                for (int h = 0; h < 2 * H; h++) rope.apply(r + h * hd, pos[i]);
            const int j = cache.append(seq[i], pos[i]);
            for (int h = 0; h < H; h++) {
                memcpy(cache.ka(seq[i], h, j), r + D + h * hd, sizeof(float) * hd);
                memcpy(cache.val(seq[i], h, j), r + 2 * D + h * hd, sizeof(float) * hd);
            }
            dec_nk[i] = j + 1;
        }
        cache.attend(core, n, seq, pos, dec_nk.data(), q3, 3L * D, hd, ya, D, hd, l1);
        matmul_forward(h1, x, params + w_r1, params + b_r1, n, C, R);
        gelu_forward(h2, h1, (long)n * R, true);
        matmul_forward(rl, h2, params + w_r2, params + b_r2, n, R, 3);
        for (int i = 0; i < n; i++) {
            float *z = rl + (size_t)i * 3, *a = ya + (size_t)i * D, *b = yb + (size_t)i * D, *c = yc + (size_t)i * D, *m = ym + (size_t)i * D;
            if (fast) {
                fast_mix(z, l1 + (size_t)i * H, 1, l2 + (size_t)i * H, l3 + (size_t)i * H, a, b, c, w + (size_t)i * 3 * H, m);
            } else {
                softmax3(z, z);
                for (int k = 0; k < D; k++) m[k] = z[0] * a[k] + z[1] * b[k] + z[2] * c[k];
            }
        }
        matmul_forward(out, ym, params + w_o, params + b_o, n, D, C);
    }
};
