// mla.h: DeepSeek-V2/V3 multi-head latent attention (MLA), and MLA+KVSplice (kvsplice.h).
//
//   [c_KV | k_R] = W_DKV x           latent d_c (-k) and the decoupled rope key d_R (--rope-dim)
//   c = RMSNorm(c_KV)                the latent; KVSplice: c <- W_e LN?(W_c c), r values (-r)
//   [k_nope_h | v_h] = W_UKV_h c     per-head key ("nope" part) and value, hd each
//   q_h = [q_nope_h | q_rope_h] = W_Q x, or W_UQ RMSNorm(W_DQ x) with --q-rank
//   k_R and q_rope_h are rotated by RoPE (k_R is one key shared by all heads)
//   score = (q_nope_h . k_nope_h + q_rope_h . k_R) / sqrt(hd + d_R)   (+ ALiBi bias)
// With ALiBi, learned or no position encoding, d_R = 0 and the latent is all that is cached.
// KV cache per token per layer: d_c + d_R values (KVSplice: r + d_R), nothing per head.
//
// Training runs the naive form above. Decoding runs the absorbed form: W_UK_h is folded into
// the query (q_abs_h = W_UK_h^T q_nope_h scores the cached latent directly) and W_UV_h into the
// output projection (W_O_h W_UV_h, applied to the attention-weighted latent), so the cache is
// never expanded per head. Tests check that the two forms agree.
#pragma once
#include <cmath>
#include "../llmc/matmul.h"
#include "../llmc/ops.h"
#include "attention.h"
#include "core.h"
#include "kvsplice.h"
#include "position.h"

struct MLAAttention : Attention {
    GPTConfig cfg;
    int H, hd, C, dc, dR, qr;  // heads, head dim (nope and v), model width, latent, rope key, q rank
    int L;                     // cached latent width: dc, or r with KVSplice
    bool splice_on;
    Splice splice;
    Rope rope;
    std::vector<float> slopes;
    AttnCore core;
    size_t w_dkv, kv_norm, w_ukv, w_q = 0, w_dq = 0, q_norm = 0, w_uq = 0, w_o, b_o;
    float *a_base = nullptr, *s_base = nullptr;
    int qdim() const { return H * (hd + dR); }
    // saved activations
    float *dkv, *cn, *rrms, *kv, *cq, *cqn, *qrrms, *qf, *lse, *y;
    Splice::Acts sp;
    // scratch
    float *dy, *dqf, *dkvb, *ddkv, *dlat, *dcn, *dcqn, *dcq, *dsplice;
    // decode: the cached latent (L) and rope key (dR) of each held token, one stream per
    // sequence (kv_cache.h); the absorbed weights
    KVCache cache;
    std::vector<float> w_uk_abs, w_ov, dec_buf, w_uv_abs;
    std::vector<int> dec_nk;
    AttnCore dec_core;

    explicit MLAAttention(const GPTConfig& c) : cfg(c) {
        H = c.n_head; hd = c.head_dim; C = c.d_model; dc = c.kv_rank; qr = c.q_rank;
        dR = c.pos == POS_ROPE ? c.rope_dim : 0;
        splice_on = c.attn == ATTN_KVSPLICE;
        splice.dc = dc; splice.r = c.splice_rank; splice.ln = c.splice_ln;
        L = splice_on ? splice.r : dc;
        rope.init(dR, c.rope_base);
        if (c.pos == POS_ALIBI) slopes = alibi_slopes(H, c.alibi_slope);
        core.H = H; core.group = 1; core.da = hd; core.db = dR; core.dv = hd;
        core.scale = 1.0f / sqrtf((float)(hd + dR));
        core.slopes = slopes.empty() ? nullptr : slopes.data();
        dec_core = core;
        dec_core.group = H;  // the cached latent is one "KV head" shared by every query head
        dec_core.da = L; dec_core.dv = L;
    }
    void declare_params(ParamSet& ps, int l) override {
        std::string p = "h" + std::to_string(l) + ".attn.";
        w_dkv = ps.add(p + "w_dkv", dc + dR, C, INIT_NORMAL);
        kv_norm = ps.add(p + "kv_norm", 1, dc, INIT_ONE);
        if (splice_on) splice.declare(ps, p);
        w_ukv = ps.add(p + "w_ukv", H * 2 * hd, dc, INIT_NORMAL);
        if (qr) {
            w_dq = ps.add(p + "w_dq", qr, C, INIT_NORMAL);
            q_norm = ps.add(p + "q_norm", 1, qr, INIT_ONE);
            w_uq = ps.add(p + "w_uq", qdim(), qr, INIT_NORMAL);
        } else {
            w_q = ps.add(p + "w_q", qdim(), C, INIT_NORMAL);
        }
        w_o = ps.add(p + "w_o", C, H * hd, INIT_RESID);
        b_o = ps.add(p + "b_o", 1, C, INIT_ZERO);
    }
    void init_params(float* params, Rng& rng) override {
        if (splice_on) splice.init(params, rng);
    }
    size_t per_token_acts() const {
        return (dc + dR) + dc + 1 + H * 2 * hd + (qr ? 2 * qr + 1 : 0) + qdim() + H * hd + (splice_on ? splice.act_per_token() : 0);
    }
    size_t act_floats(int B, int T) const override { return (size_t)B * T * per_token_acts() + (size_t)B * H * T; }
    size_t scratch_floats(int B, int T) const override {
        return (size_t)B * T * (H * hd + qdim() + H * 2 * hd + (dc + dR) + 2 * dc + (qr ? 2 * qr : 0) + (splice_on ? splice.scratch_per_token() : 0));
    }
    void bind(float* acts, float* scratch) override { a_base = acts; s_base = scratch; }
    void carve(int B, int T) {
        size_t N = (size_t)B * T;
        float* p = a_base;
        auto take = [&](size_t n) { float* r = p; p += n; return r; };
        dkv = take(N * (dc + dR)); cn = take(N * dc); rrms = take(N); kv = take(N * H * 2 * hd);
        if (qr) { cq = take(N * qr); cqn = take(N * qr); qrrms = take(N); }
        qf = take(N * qdim()); y = take(N * H * hd);
        if (splice_on) sp = splice.carve(take(N * splice.act_per_token()), N);
        lse = take((size_t)B * H * T);
        p = s_base;
        dy = take(N * H * hd); dqf = take(N * qdim()); dkvb = take(N * H * 2 * hd); ddkv = take(N * (dc + dR));
        dlat = take(N * dc); dcn = take(N * dc);
        if (qr) { dcqn = take(N * qr); dcq = take(N * qr); }
        if (splice_on) dsplice = take(N * splice.scratch_per_token());
    }
    long kv_elems_per_token() const override { return (long)L + dR; }
    std::vector<QKView> qk_views() const override {
        std::vector<QKView> v = {{"q", qf, qdim(), hd + dR, H, hd + dR, hd, dR}, {"k_nope", kv, H * 2L * hd, 2L * hd, H, hd, 0, 0}};
        if (dR) v.push_back({"k_rope", dkv + dc, dc + dR, 0, 1, dR, 0, dR});
        return v;
    }
    const float* latent() const { return splice_on ? sp.expanded : cn; }

    void forward(const float* params, const float* x, float* out, int B, int T) override {
        carve(B, T);
        rope.ensure(T);
        int N = B * T;
        matmul_forward(dkv, x, params + w_dkv, nullptr, N, C, dc + dR);
        rmsnorm_forward(cn, rrms, dkv, dc + dR, params + kv_norm, N, dc);
        rope.apply_rows(dkv + dc, dc + dR, 0, 1, B, T, false);  // the shared rope key
        if (splice_on) splice.forward(params, cn, sp, N);
        matmul_forward(kv, latent(), params + w_ukv, nullptr, N, dc, H * 2 * hd);
        if (qr) {
            matmul_forward(cq, x, params + w_dq, nullptr, N, C, qr);
            rmsnorm_forward(cqn, qrrms, cq, qr, params + q_norm, N, qr);
            matmul_forward(qf, cqn, params + w_uq, nullptr, N, qr, qdim());
        } else {
            matmul_forward(qf, x, params + w_q, nullptr, N, C, qdim());
        }
        rope.apply_rows(qf + hd, qdim(), hd + dR, H, B, T, false);  // each head's q_rope part
        core.forward(B, T, {qf, qdim(), hd + dR}, {kv, H * 2 * hd, 2 * hd}, {dkv + dc, dc + dR, 0},
                     {kv + hd, H * 2 * hd, 2 * hd}, lse, {y, H * hd, hd});
        matmul_forward(out, y, params + w_o, params + b_o, N, H * hd, C);
    }

    void backward(const float* params, float* grads, const float* x, const float* dout, float* dx, int B, int T) override {
        carve(B, T);
        int N = B * T;
        matmul_backward(dy, grads + w_o, grads + b_o, dout, y, params + w_o, N, H * hd, C);
        memset(dkvb, 0, sizeof(float) * N * H * 2 * hd);
        memset(ddkv, 0, sizeof(float) * N * (dc + dR));
        core.backward(B, T, {qf, qdim(), hd + dR}, {kv, H * 2 * hd, 2 * hd}, {dkv + dc, dc + dR, 0},
                      {kv + hd, H * 2 * hd, 2 * hd}, lse, {y, H * hd, hd}, {dy, H * hd, hd}, {dqf, qdim(), hd + dR},
                      {dkvb, H * 2 * hd, 2 * hd}, {ddkv + dc, dc + dR, 0}, {dkvb + hd, H * 2 * hd, 2 * hd});
        rope.apply_rows(dqf + hd, qdim(), hd + dR, H, B, T, true);
        rope.apply_rows(ddkv + dc, dc + dR, 0, 1, B, T, true);
        // query path writes dx, the kv path accumulates into it
        if (qr) {
            matmul_backward(dcqn, grads + w_uq, nullptr, dqf, cqn, params + w_uq, N, qr, qdim());
            rmsnorm_backward(dcq, grads + q_norm, dcqn, cq, qr, params + q_norm, qrrms, N, qr);
            matmul_backward(dx, grads + w_dq, nullptr, dcq, x, params + w_dq, N, C, qr);
        } else {
            matmul_backward(dx, grads + w_q, nullptr, dqf, x, params + w_q, N, C, qdim());
        }
        matmul_backward(dlat, grads + w_ukv, nullptr, dkvb, latent(), params + w_ukv, N, dc, H * 2 * hd);
        const float* dcn_ = dlat;
        if (splice_on) {
            splice.backward(params, grads, dlat, cn, sp, dsplice, dcn, N);
            dcn_ = dcn;
        }
        rmsnorm_backward(ddkv, grads + kv_norm, dcn_, dkv, dc + dR, params + kv_norm, rrms, N, dc);
        matmul_backward(dx, grads + w_dkv, nullptr, ddkv, x, params + w_dkv, N, C, dc + dR, true);
    }

    // ---- decoding, absorbed form ----
    void decode_begin(const float* params, int n_seq, int max_T) override {
        rope.ensure(max_T);
        cache.init(n_seq, 1, max_T, L, dR, 0);  // the value is the latent itself
        // per head: K_h = W_UK_h (hd x dc), V_h = W_UV_h; with KVSplice both times W_e (dc x r)
        std::vector<float> up((size_t)H * 2 * hd * L);
        if (splice_on) {
            const float* we = params + splice.w_e;  // (dc, r)
            for (int i = 0; i < H * 2 * hd; i++)
                for (int j = 0; j < L; j++) {
                    float s = 0.0f;
                    for (int c = 0; c < dc; c++) s += params[w_ukv + (size_t)i * dc + c] * we[(size_t)c * L + j];
                    up[(size_t)i * L + j] = s;
                }
        } else {
            memcpy(up.data(), params + w_ukv, sizeof(float) * up.size());
        }
        // W_UK folded into the query: keep K_h, (H, hd, L)
        w_uk_abs.resize((size_t)H * hd * L);
        for (int h = 0; h < H; h++)
            memcpy(&w_uk_abs[(size_t)h * hd * L], &up[(size_t)h * 2 * hd * L], sizeof(float) * hd * L);
        // and V_h, (H, hd, L): only the presses read it (per-head value norms)
        w_uv_abs.resize((size_t)H * hd * L);
        for (int h = 0; h < H; h++)
            memcpy(&w_uv_abs[(size_t)h * hd * L], &up[((size_t)h * 2 * hd + hd) * L], sizeof(float) * hd * L);
        // W_UV folded into the output: W_OV[:, h*L + j] = sum_i W_O[:, h*hd + i] V_h[i, j]
        w_ov.assign((size_t)C * H * L, 0.0f);
        for (int o = 0; o < C; o++)
            for (int h = 0; h < H; h++)
                for (int i = 0; i < hd; i++) {
                    float wo = params[w_o + (size_t)o * H * hd + h * hd + i];
                    const float* v = &up[((size_t)h * 2 * hd + hd + i) * L];
                    float* dst = &w_ov[(size_t)o * H * L + h * L];
                    for (int j = 0; j < L; j++) dst[j] += wo * v[j];
                }
    }
    size_t decode_weight_floats() const override {
        size_t q = qr ? (size_t)qr * C + qr + (size_t)qdim() * qr : (size_t)qdim() * C;
        size_t sp_w = splice_on ? (size_t)splice.r * dc + (splice.ln ? 2 * splice.r : 0) : 0;
        return (size_t)(dc + dR) * C + dc + sp_w + q + w_uk_abs.size() + w_ov.size() + C;
    }
    KVCache& kv_cache() override { return cache; }
    const AttnCore& decode_core() const override { return dec_core; }
    const Rope* decode_rope(int* rot_off) const override { *rot_off = L; return &rope; }  // scoring query: [q_abs (L) | q_rope (dR)]
    // the presses' per-head view of a cached token: key [W_UK_h c ; k_R] (hd + dR), value W_UV_h c
    int press_key_dim() override { return hd + dR; }
    void press_key(int h, int s, int j, float* out) override {
        const float* c = cache.ka(s, 0, j);
        for (int k = 0; k < hd; k++) out[k] = dotf(&w_uk_abs[((size_t)h * hd + k) * L], c, L);
        if (dR) memcpy(out + hd, cache.kb(s, 0, j), sizeof(float) * dR);
    }
    float press_value_norm(int h, int s, int j) override {
        const float* c = cache.ka(s, 0, j);
        double n = 0.0;
        for (int k = 0; k < hd; k++) {
            double x = dotf(&w_uv_abs[((size_t)h * hd + k) * L], c, L);
            n += x * x;
        }
        return (float)sqrt(n);
    }

    void decode_step(const float* params, const float* x, const int* seq, const int* pos, int n, float* out) override {
        // scratch per row: dkv1 (dc+dR), c (dc), rms (1), q (qdim), cq, cqn (qr), rms (1), qa (H*(L+dR)), ctx (H*L), splice acts
        const size_t per_row = (dc + dR) + dc + 1 + qdim() + 2 * qr + 1 + H * (L + dR) + H * L + splice.act_per_token();
        dec_buf.resize((size_t)n * per_row + 4);
        float* p = dec_buf.data();
        auto take = [&](size_t k) { float* r = p; p += (size_t)n * k; return r; };
        float *dkv1 = take(dc + dR), *c1 = take(dc), *r1 = take(1), *q1 = take(qdim()), *cq1 = take(qr), *cqn1 = take(qr),
              *qr1 = take(1), *qa = take(H * (L + dR)), *ctx = take(H * L);
        matmul_forward(dkv1, x, params + w_dkv, nullptr, n, C, dc + dR);
        rmsnorm_forward(c1, r1, dkv1, dc + dR, params + kv_norm, n, dc);
        const float* lat_rows = c1;
        if (splice_on) {
            Splice::Acts a = splice.carve(take(splice.act_per_token()), n);
            splice.compress(params, c1, a, n);
            lat_rows = a.zl;
        }
        rope.ensure(1 + *std::max_element(pos, pos + n));
        dec_nk.resize(n);
        for (int i = 0; i < n; i++) {
            float* kr = dkv1 + (size_t)i * (dc + dR) + dc;
            if (dR) rope.apply(kr, pos[i]);
            const int j = cache.append(seq[i], pos[i]);
            memcpy(cache.ka(seq[i], 0, j), lat_rows + (size_t)i * L, sizeof(float) * L);
            if (dR) memcpy(cache.kb(seq[i], 0, j), kr, sizeof(float) * dR);
            dec_nk[i] = j + 1;
        }
        if (qr) {
            matmul_forward(cq1, x, params + w_dq, nullptr, n, C, qr);
            rmsnorm_forward(cqn1, qr1, cq1, qr, params + q_norm, n, qr);
            matmul_forward(q1, cqn1, params + w_uq, nullptr, n, qr, qdim());
        } else {
            matmul_forward(q1, x, params + w_q, nullptr, n, C, qdim());
        }
        // absorbed query per head: [q_abs = W_UK_h^T q_nope (L) | q_rope (dR)]
        prof_macs(PROF_MATMUL, (double)n * H * hd * L);  // a matmul done by the loop below: counted with the linear layers
        #pragma omp parallel for collapse(2) schedule(static)
        for (int i = 0; i < n; i++)
            for (int h = 0; h < H; h++) {
                float* qh = q1 + (size_t)i * qdim() + h * (hd + dR);
                if (dR) rope.apply(qh + hd, pos[i]);
                float* a = qa + ((size_t)i * H + h) * (L + dR);
                for (int j = 0; j < L; j++) a[j] = 0.0f;
                for (int k = 0; k < hd; k++) {
                    const float* w = &w_uk_abs[((size_t)h * hd + k) * L];
                    for (int j = 0; j < L; j++) a[j] += qh[k] * w[j];
                }
                for (int k = 0; k < dR; k++) a[L + k] = qh[hd + k];
            }
        cache.attend(dec_core, n, seq, pos, dec_nk.data(), qa, (long)H * (L + dR), L + dR, ctx, (long)H * L, L);
        matmul_forward(out, ctx, w_ov.data(), params + b_o, n, H * L, C);
    }
};
