// model.h: the GPT (CPU backend, fp32): parameters, forward, backward, and the AdamW update.
// Pre-LayerNorm blocks, sequential (GPT-2) or parallel (Pythia / GPT-J) residual; attention is
// any variant from attention/; logits over a vocab padded to a multiple of 64 (the padded
// columns are never scored). Each layer's forward and backward sit side by side below.
#pragma once
#include <memory>
#include "../attention/all.h"
#include "config.h"
#include "matmul.h"
#include "ops.h"
#include "params.h"

struct Layer {
    size_t ln1_w, ln1_b, ln2_w, ln2_b, fc_w, fc_b, proj_w, proj_b;
    std::unique_ptr<Attention> attn;
    // saved activations, (B,T,C) unless noted
    float *ln1, *ln1_mean, *ln1_rstd, *attn_out, *mid, *ln2, *ln2_mean, *ln2_rstd, *fch, *fch_gelu, *mlp_out;
};

// one optimizer step's SPAM controls (llmc/train.h: opt_step); the defaults are plain AdamW
struct OptStep {
    float theta = 0.0f;  // spike threshold: clip g^2 > theta * v (0: off)
    float scale = 1.0f;  // the Adam step's post-reset warmup factor
    int reset = 0;       // the moments restart from 0 at this step
};

// the checks every decode() call makes (the CPU caches' here, the device's in llmc/cuda_model.h):
// each row's sequence exists and its token is in the vocab, learned positions do not run past
// their table, and every sequence's cache (held(s) of `slots` tokens) has room. Returns the
// number of rows whose logits are wanted.
template <class Held>
static int decode_check_rows(const GPTConfig& cfg, const std::vector<int>& len, Held held, int slots, const int* tokens, const int* seq, int n,
                             const bool* want, const char* full_hint) {
    int n_out = 0;
    std::vector<int> rows(len.size(), 0);
    for (int i = 0; i < n; i++) {
        if (seq[i] < 0 || seq[i] >= (int)len.size()) fail("decode: sequence %d is not one of the %zu sequences of decode_begin", seq[i], len.size());
        if (tokens[i] < 0 || tokens[i] >= cfg.vocab_size) fail("decode: token id %d is outside the vocab [0, %d)", tokens[i], cfg.vocab_size);
        n_out += !want || want[i];
        rows[seq[i]]++;
    }
    for (int s = 0; s < (int)len.size(); s++) {
        if (!rows[s]) continue;
        if (cfg.pos == POS_LEARNED && len[s] + rows[s] > cfg.max_seq_len)
            fail_hint("learned positions end at the table's length: generate fewer tokens or use a shorter prompt",
                      "decode: sequence %d would reach position %d; the learned position table ends at %d", s, len[s] + rows[s] - 1, cfg.max_seq_len);
        if (held(s) + rows[s] > slots)
            fail_hint(full_hint, "decode: sequence %d is full (%d tokens held, %d more given, the cache holds %d)", s, held(s), rows[s], slots);
    }
    return n_out;
}

struct GPT {
    GPTConfig cfg;
    ParamSet ps;
    float* params = nullptr;
    float* grads = nullptr;
    size_t wte, wpe = 0, lnf_w, lnf_b, w_out;  // w_out == wte when tied
    std::vector<Layer> layers;
    // activations, allocated for (Bmax, Tmax) and reused
    int B = 0, T = 0, Bmax = 0, Tmax = 0;
    float* act_mem = nullptr;
    std::vector<float*> resid;  // resid[l] is the input of layer l, resid[L] the last output; (B,T,C)
    float *lnf, *lnf_mean, *lnf_rstd, *logits, *losses, *lse;
    float *d_a, *d_b, *d_ln1, *d_ln2, *d_fch, *d_fch_gelu, *attn_scratch;
    int *inputs = nullptr, *targets = nullptr;
    float mean_loss = NAN;
    // AdamW state
    float *m = nullptr, *v = nullptr;

    // allocate = false builds the parameter layout only (ps.total without the buffers): how a
    // checkpoint's size is checked against its config before anything large is allocated
    explicit GPT(const GPTConfig& c, bool allocate = true) : cfg(c) {
        int C = cfg.d_model, L = cfg.n_layer;
        ps.n_layer = L;
        wte = ps.add("wte", cfg.padded_vocab_size, C, INIT_NORMAL, cfg.vocab_size);
        if (cfg.pos == POS_LEARNED) wpe = ps.add("wpe", cfg.max_seq_len, C, INIT_NORMAL);
        layers.resize(L);
        for (int l = 0; l < L; l++) {
            Layer& y = layers[l];
            std::string p = "h" + std::to_string(l) + ".";
            y.ln1_w = ps.add(p + "ln1.w", 1, C, INIT_ONE);
            y.ln1_b = ps.add(p + "ln1.b", 1, C, INIT_ZERO);
            y.attn = make_attention(cfg);
            y.attn->declare_params(ps, l);
            y.ln2_w = ps.add(p + "ln2.w", 1, C, INIT_ONE);
            y.ln2_b = ps.add(p + "ln2.b", 1, C, INIT_ZERO);
            y.fc_w = ps.add(p + "mlp.fc_w", cfg.d_ff, C, INIT_NORMAL);
            y.fc_b = ps.add(p + "mlp.fc_b", 1, cfg.d_ff, INIT_ZERO);
            y.proj_w = ps.add(p + "mlp.proj_w", C, cfg.d_ff, INIT_RESID);
            y.proj_b = ps.add(p + "mlp.proj_b", 1, C, INIT_ZERO);
        }
        lnf_w = ps.add("lnf.w", 1, C, INIT_ONE);
        lnf_b = ps.add("lnf.b", 1, C, INIT_ZERO);
        w_out = cfg.tied_embeddings ? wte : ps.add("w_out", cfg.padded_vocab_size, C, INIT_NORMAL, cfg.vocab_size);
        if (!allocate) return;
        params = alloc_floats<float>(ps.total);
        grads = alloc_floats<float>(ps.total);
    }
    ~GPT() { free(params); free(grads); free(act_mem); free(inputs); free(targets); free(m); free(v); }

    void init_weights(uint64_t seed) {
        Rng rng(seed);
        ps.init(params, rng);
        for (Layer& y : layers) y.attn->init_params(params, rng);
    }
    size_t num_parameters() const { return ps.counted(); }
    long kv_elems_per_token_layer() const { return layers[0].attn->kv_elems_per_token(); }

    // (re)allocate activations when a larger batch or sequence arrives
    void ensure_acts(int B_, int T_) {
        if (B_ <= Bmax && T_ <= Tmax && act_mem) return;
        Bmax = std::max(B_, Bmax);
        Tmax = std::max(T_, Tmax);
        size_t BT = (size_t)Bmax * Tmax, C = cfg.d_model, F = cfg.d_ff, L = cfg.n_layer;
        size_t attn_acts = layers[0].attn->act_floats(Bmax, Tmax), attn_scr = layers[0].attn->scratch_floats(Bmax, Tmax);
        size_t per_layer = 5 * BT * C + 4 * BT + 2 * BT * F + attn_acts;
        size_t total = (L + 1) * BT * C + L * per_layer + (BT * C + 2 * BT) + BT * cfg.padded_vocab_size + 2 * BT +
                       (4 * BT * C + 2 * BT * F) + attn_scr;
        free(act_mem);
        act_mem = alloc_floats<float>(total);
        float* p = act_mem;
        auto take = [&](size_t n) { float* r = p; p += n; return r; };
        attn_scratch = take(attn_scr);  // backward scratch, shared by all layers' attention
        resid.resize(L + 1);
        for (size_t l = 0; l <= L; l++) resid[l] = take(BT * C);
        for (size_t l = 0; l < L; l++) {
            Layer& y = layers[l];
            y.ln1 = take(BT * C); y.ln1_mean = take(BT); y.ln1_rstd = take(BT);
            y.attn_out = take(BT * C); y.mid = take(BT * C);
            y.ln2 = take(BT * C); y.ln2_mean = take(BT); y.ln2_rstd = take(BT);
            y.fch = take(BT * F); y.fch_gelu = take(BT * F); y.mlp_out = take(BT * C);
            y.attn->bind(take(attn_acts), attn_scratch);
        }
        lnf = take(BT * C); lnf_mean = take(BT); lnf_rstd = take(BT);
        logits = take(BT * cfg.padded_vocab_size);
        losses = take(BT);
        lse = take(BT);
        d_a = take(BT * C); d_b = take(BT * C); d_ln1 = take(BT * C); d_ln2 = take(BT * C);
        d_fch = take(BT * F); d_fch_gelu = take(BT * F);
        if ((size_t)(p - act_mem) != total) fail("internal: activation layout mismatch (%zu vs %zu)", (size_t)(p - act_mem), total);
        free(inputs); free(targets);
        inputs = (int*)mallocCheck(BT * sizeof(int));
        targets = (int*)mallocCheck(BT * sizeof(int));
    }

    // inputs, targets are (B,T) token ids (copied in); targets may be null (no loss).
    // Returns the mean loss over targets >= 0, or NAN without targets. logits stay in this->logits.
    float forward(const int* in, const int* tg, int B_, int T_) {
        config_validate(&cfg, T_);
        ensure_acts(B_, T_);
        B = B_; T = T_;
        const int C = cfg.d_model, F = cfg.d_ff, V = cfg.vocab_size, Vp = cfg.padded_vocab_size, BT = B * T;
        for (int i = 0; i < BT; i++) {
            if (in[i] < 0 || in[i] >= V)
                fail_hint("the data was made with another tokenizer, or is corrupt", "input token id %d at position %d is outside the vocab [0, %d)", in[i], i, V);
            inputs[i] = in[i];
            targets[i] = tg ? tg[i] : -1;
        }
        const float* P = params;
        encoder_forward(resid[0], inputs, P + wte, cfg.pos == POS_LEARNED ? P + wpe : nullptr, B, T, C);
        for (int l = 0; l < cfg.n_layer; l++) {
            Layer& y = layers[l];
            float* x = resid[l];
            layernorm_forward(y.ln1, y.ln1_mean, y.ln1_rstd, x, P + y.ln1_w, P + y.ln1_b, BT, C);
            y.attn->forward(P, y.ln1, y.attn_out, B, T);
            // the MLP reads ln2 of x (parallel) or of x + attn (sequential)
            const float* mlp_in = x;
            if (!cfg.parallel_residual) {
                residual_forward(y.mid, x, y.attn_out, nullptr, (long)BT * C);
                mlp_in = y.mid;
            }
            layernorm_forward(y.ln2, y.ln2_mean, y.ln2_rstd, mlp_in, P + y.ln2_w, P + y.ln2_b, BT, C);
            matmul_forward(y.fch, y.ln2, P + y.fc_w, P + y.fc_b, BT, C, F);
            gelu_forward(y.fch_gelu, y.fch, (long)BT * F, cfg.gelu_exact);
            matmul_forward(y.mlp_out, y.fch_gelu, P + y.proj_w, P + y.proj_b, BT, F, C);
            if (cfg.parallel_residual) residual_forward(resid[l + 1], x, y.attn_out, y.mlp_out, (long)BT * C);
            else residual_forward(resid[l + 1], y.mid, y.mlp_out, nullptr, (long)BT * C);
        }
        layernorm_forward(lnf, lnf_mean, lnf_rstd, resid[cfg.n_layer], P + lnf_w, P + lnf_b, BT, C);
        ProfScope prof(PROF_CLASSIFIER);
        matmul_forward(logits, lnf, P + w_out, nullptr, BT, C, Vp);
        if (!tg) return mean_loss = NAN;
        crossentropy_forward(losses, lse, logits, targets, BT, V, Vp);
        double s = 0.0;
        int n = 0;
        for (int i = 0; i < BT; i++)
            if (targets[i] >= 0) { s += losses[i]; n++; }
        return mean_loss = n ? (float)(s / n) : NAN;
    }

    void zero_grad() { memset(grads, 0, ps.total * sizeof(float)); }

    // accumulates grad_scale * d(mean loss)/d(params) into grads (grad_scale = 1/accum_steps).
    // Destroys the logits (they become dlogits in place).
    void backward(float grad_scale = 1.0f) {
        const int C = cfg.d_model, F = cfg.d_ff, V = cfg.vocab_size, Vp = cfg.padded_vocab_size, BT = B * T;
        const float* P = params;
        float* Gr = grads;
        int n = 0;
        for (int i = 0; i < BT; i++) n += targets[i] >= 0;
        if (n == 0) fail("backward() without targets: call forward() with targets first");
        float* dres = d_a;  // gradient of the residual stream, (B,T,C)
        float* dnext = d_b;
        {
            ProfScope prof(PROF_CLASSIFIER);
            crossentropy_backward_inplace(logits, lse, targets, grad_scale / n, BT, V, Vp);
            matmul_backward(d_ln1, Gr + w_out, nullptr, logits, lnf, P + w_out, BT, C, Vp);
        }
        memset(dres, 0, sizeof(float) * BT * C);
        layernorm_backward(dres, Gr + lnf_w, Gr + lnf_b, d_ln1, resid[cfg.n_layer], P + lnf_w, lnf_mean, lnf_rstd, BT, C);
        for (int l = cfg.n_layer - 1; l >= 0; l--) {
            Layer& y = layers[l];
            float* x = resid[l];
            // MLP: out += proj(gelu(fc(ln2(mlp_in))))
            matmul_backward(d_fch_gelu, Gr + y.proj_w, Gr + y.proj_b, dres, y.fch_gelu, P + y.proj_w, BT, F, C);
            gelu_backward(d_fch, y.fch, d_fch_gelu, (long)BT * F, cfg.gelu_exact);
            matmul_backward(d_ln2, Gr + y.fc_w, Gr + y.fc_b, d_fch, y.ln2, P + y.fc_w, BT, C, F);
            memcpy(dnext, dres, sizeof(float) * BT * C);  // identity path of the residual
            if (cfg.parallel_residual) {
                layernorm_backward(dnext, Gr + y.ln2_w, Gr + y.ln2_b, d_ln2, x, P + y.ln2_w, y.ln2_mean, y.ln2_rstd, BT, C);
                y.attn->backward(P, Gr, y.ln1, dres, d_ln1, B, T);
            } else {
                // dres becomes d(mid) = dres + LN2'(d_ln2); attention sees d(mid)
                layernorm_backward(dnext, Gr + y.ln2_w, Gr + y.ln2_b, d_ln2, y.mid, P + y.ln2_w, y.ln2_mean, y.ln2_rstd, BT, C);
                y.attn->backward(P, Gr, y.ln1, dnext, d_ln1, B, T);
            }
            layernorm_backward(dnext, Gr + y.ln1_w, Gr + y.ln1_b, d_ln1, x, P + y.ln1_w, y.ln1_mean, y.ln1_rstd, BT, C);
            std::swap(dres, dnext);
        }
        encoder_backward(Gr + wte, cfg.pos == POS_LEARNED ? Gr + wpe : nullptr, dres, inputs, B, T, C);
    }

    // ---- inference with each layer's KV cache: n_seq sequences, batched prefill and decode ----
    // decode_begin allocates the caches once, for n_seq sequences of up to max_T held tokens. decode()
    // feeds n tokens: tokens[i] goes to sequence seq[i] at that sequence's next position (rows of
    // one sequence in order), so a whole prompt is prefilled by one call and B sequences decode
    // together with one row each. Long calls run in chunks of DECODE_CHUNK rows (exact: the rows
    // of a sequence stay in order). It returns the logits (Vp per row) of the rows with want[i]
    // set (every row when want is null), in row order.
    // A press (attention/press.h) evicts tokens: decode_press() starts recording what it reads,
    // decode_compress() makes every layer keep n_kept tokens of a sequence, decode_reserve()
    // reallocates the caches to what is held (the memory is freed). A sequence's length (its next
    // position) then exceeds what it holds: decode_len() vs decode_held().
    static const int DECODE_CHUNK = 256;
    std::vector<float> dec_buf, dec_logits;
    DecodePacks dec_packs;     // the linear weights packed for few-row decoding (llmc/matmul.h), checked at decode_begin
    std::vector<int> dec_len;  // tokens fed per sequence: the next position
    int dec_T = 0;             // slots per sequence in every layer's cache
    uint64_t press_round = 0;  // compressions so far (seeds the random press)
    void decode_begin(int n_seq, int max_T) {
        if (n_seq < 1) fail("decode_begin: %d sequences", n_seq);
        if (max_T < 1) fail("decode_begin: %d slots", max_T);
        config_validate(&cfg, std::min(max_T, cfg.pos == POS_LEARNED ? cfg.max_seq_len : max_T));
        for (Layer& y : layers) y.attn->decode_begin(params, n_seq, max_T);
        dec_packs.revalidate(params, params + ps.total);  // the weights may have changed since the last decode (training, an import)
        dec_len.assign(n_seq, 0);
        dec_T = max_T;
        press_round = 0;
    }
    void decode_begin(int max_T) { decode_begin(1, max_T); }
    int decode_len(int s) const { return dec_len[s]; }
    int decode_held(int s) { return layers[0].attn->kv_cache().len[s]; }
    void decode_press(const Press& p) {
        for (Layer& y : layers) press_observe(p, *y.attn);
    }
    void decode_compress(const Press& p, int s, int n_kept) {
        press_round++;
        for (int l = 0; l < cfg.n_layer; l++) press_compress_layer(p, *layers[l].attn, l, s, n_kept, press_round);
    }
    void decode_reserve(int slots) {
        for (int s = 0; s < (int)dec_len.size(); s++)
            if (decode_held(s) > slots) fail("internal: decode_reserve(%d) below the %d tokens sequence %d holds", slots, decode_held(s), s);
        for (Layer& y : layers) y.attn->kv_cache().resize(slots);
        dec_T = slots;
    }
    // bytes of the K/V buffers as allocated (every layer, every sequence), per-sequence state included
    size_t kv_cache_bytes() {
        size_t b = 0;
        for (Layer& y : layers) b += y.attn->kv_cache().bytes();
        return b + sizeof(float) * kv_cache_floats_fixed() * dec_len.size();
    }
    // TEST / BENCHMARK ONLY: sequence s holds L tokens (positions 0..L-1) of whatever the buffers hold
    void decode_pretend_held(int s, int L) {
        for (Layer& y : layers) {
            KVCache& c = y.attn->kv_cache();
            while (c.len[s] < L) c.append(s, c.len[s]);
        }
        dec_len[s] = L;
    }
    const float* decode(const int* tokens, const int* seq, int n, const bool* want = nullptr) {
        const int n_out = decode_check_rows(cfg, dec_len, [&](int s) { return decode_held(s); }, dec_T, tokens, seq, n, want,
                                            "call decode_begin with a larger context (or evict tokens with a press)");
        dec_logits.resize((size_t)std::max(1, n_out) * cfg.padded_vocab_size);
        float* lg_out = dec_logits.data();
        for (int c0 = 0; c0 < n; c0 += DECODE_CHUNK) {
            int m = std::min(DECODE_CHUNK, n - c0);
            std::vector<int> pos(m);
            for (int i = 0; i < m; i++) pos[i] = dec_len[seq[c0 + i]]++;
            int kept = 0;
            for (int i = 0; i < m; i++) kept += !want || want[c0 + i];
            decode_chunk(tokens + c0, seq + c0, pos.data(), m, want ? want + c0 : nullptr, kept, lg_out);
            lg_out += (size_t)kept * cfg.padded_vocab_size;
        }
        return dec_logits.data();
    }
    // one sequence, one token at position t (== the tokens fed so far); its logits
    const float* decode_step(int token, int t) {
        if (dec_len.empty() || t != dec_len[0]) fail("decode_step: position %d is not the next one (%d)", t, dec_len.empty() ? -1 : dec_len[0]);
        int s = 0;
        return decode(&token, &s, 1);
    }
    void decode_chunk(const int* tokens, const int* seq, const int* pos, int n, const bool* want, int n_out, float* logits_out) {
        const int C = cfg.d_model, F = cfg.d_ff, Vp = cfg.padded_vocab_size;
        const float* P = params;
        DecodePackScope packed(&dec_packs);
        dec_buf.resize((size_t)n * (8 * C + 2 * F + 4));
        float* p = dec_buf.data();
        auto take = [&](size_t k) { float* r = p; p += (size_t)n * k; return r; };
        float *x = take(C), *ln1 = take(C), *a = take(C), *mid = take(C), *ln2 = take(C), *h = take(F), *g = take(F), *mm = take(C),
              *lnf_ = take(C), *stats = take(4);
        for (int i = 0; i < n; i++)
            for (int c = 0; c < C; c++)
                x[(size_t)i * C + c] = P[wte + (size_t)tokens[i] * C + c] + (cfg.pos == POS_LEARNED ? P[wpe + (size_t)pos[i] * C + c] : 0.0f);
        for (int l = 0; l < cfg.n_layer; l++) {
            Layer& y = layers[l];
            layernorm_forward(ln1, stats, stats + n, x, P + y.ln1_w, P + y.ln1_b, n, C);
            y.attn->decode_step(P, ln1, seq, pos, n, a);
            const float* mlp_in = x;
            if (!cfg.parallel_residual) {
                residual_forward(mid, x, a, nullptr, (long)n * C);
                mlp_in = mid;
            }
            layernorm_forward(ln2, stats + 2 * n, stats + 3 * n, mlp_in, P + y.ln2_w, P + y.ln2_b, n, C);
            matmul_forward(h, ln2, P + y.fc_w, P + y.fc_b, n, C, F);
            gelu_forward(g, h, (long)n * F, cfg.gelu_exact);
            matmul_forward(mm, g, P + y.proj_w, P + y.proj_b, n, F, C);
            if (cfg.parallel_residual) residual_forward(x, x, a, mm, (long)n * C);
            else residual_forward(x, mid, mm, nullptr, (long)n * C);
        }
        // the classifier only for the rows whose logits are wanted (a prompt needs its last row's)
        int k = 0;
        for (int i = 0; i < n; i++)
            if (!want || want[i]) memmove(x + (size_t)k++ * C, x + (size_t)i * C, sizeof(float) * C);
        if (n_out == 0) return;
        layernorm_forward(lnf_, stats, stats + n, x, P + lnf_w, P + lnf_b, n_out, C);
        matmul_forward(logits_out, lnf_, P + w_out, nullptr, n_out, C, Vp);
    }
    // floats of weights one decode() chunk reads (after decode_begin): every layer's, the final
    // LayerNorm and the classifier; the token (and position) embedding rows are one row each
    size_t decode_weight_floats() const {
        size_t C = cfg.d_model, F = cfg.d_ff, n = 2 * C + (size_t)cfg.padded_vocab_size * C + C * (cfg.pos == POS_LEARNED ? 2 : 1);
        for (const Layer& y : layers) n += y.attn->decode_weight_floats() + 4 * C + 2 * C * F + F + C;
        return n;
    }
    // KV-cache floats per token over all layers, measured from the cache buffers (after decode_begin)
    size_t kv_cache_floats_per_token() {
        size_t n = 0;
        for (Layer& y : layers) n += y.attn->cache_floats_per_token();
        return n;
    }
    // floats the caches hold per sequence whatever its length (MKA's running sums), all layers
    size_t kv_cache_floats_fixed() const {
        size_t n = 0;
        for (const Layer& y : layers) n += y.attn->cache_floats_fixed();
        return n;
    }

    // global L2 norm of the gradient, summed in a thread-count-independent order
    float grad_norm() const {
        ProfScope prof(PROF_OPTIMIZER);
        return (float)sqrt(deterministic_sum(ps.total, [&](size_t i) { return (double)grads[i] * grads[i]; }));
    }

    // AdamW with bias correction; decoupled weight decay on matrices only; t counts from 1.
    // With SPAM's controls for this step (llmc/train.h: opt_step) it is SPAM: the moments start
    // from 0 on a reset step, a gradient entry with g^2 > theta v is clipped to sign(g) sqrt(theta v),
    // and the Adam step (not the decay) is scaled by the post-reset warmup
    void adamw_update(float lr, float beta1, float beta2, float eps, float weight_decay, int t, float grad_scale = 1.0f,
                      OptStep o = OptStep()) {
        if (!m) { m = alloc_floats<float>(ps.total); v = alloc_floats<float>(ps.total); }
        adamw_update_range(0, ps.total, grads, m, v, lr, beta1, beta2, eps, weight_decay, t, grad_scale, o);
    }
    // the same update of params[lo, hi) only, from gradients and moments that hold just that
    // range (g[0] is element lo): a ZeRO-1 rank's slice (llmc/train.h: train_step_dp)
    void adamw_update_range(size_t lo, size_t hi, const float* g_lo, float* m_lo, float* v_lo, float lr, float beta1, float beta2,
                            float eps, float weight_decay, int t, float grad_scale, OptStep o = OptStep()) {
        ProfScope prof(PROF_OPTIMIZER);
        float bc1 = 1.0f - powf(beta1, (float)t), bc2 = 1.0f - powf(beta2, (float)t);
        for (const ParamSpec& s : ps.specs) {
            size_t a = std::max(lo, s.offset), b = std::min(hi, s.offset + s.n);
            if (a >= b) continue;
            float wd = s.decay ? weight_decay : 0.0f;
            float* p = params + a;
            const float* g = g_lo + (a - lo);
            float* mm = m_lo + (a - lo);
            float* vv = v_lo + (a - lo);
            #pragma omp parallel for schedule(static)
            for (size_t i = 0; i < b - a; i++) {
                float gi = g[i] * grad_scale;
                const float mp = o.reset ? 0.0f : mm[i], vp = o.reset ? 0.0f : vv[i];
                if (o.theta > 0.0f && gi * gi > o.theta * vp) gi = copysignf(sqrtf(o.theta * vp), gi);  // SPAM's spike clip
                mm[i] = beta1 * mp + (1.0f - beta1) * gi;
                vv[i] = beta2 * vp + (1.0f - beta2) * gi * gi;
                float mhat = mm[i] / bc1, vhat = vv[i] / bc2;
                p[i] -= lr * (o.scale * (mhat / (sqrtf(vhat) + eps)) + wd * p[i]);
            }
        }
    }
};
