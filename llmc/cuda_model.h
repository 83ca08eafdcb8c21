// cuda_model.h: the host side of the CUDA backend (compiled by the C++ compiler, like all host
// code). It describes the CPU GPT's layout to the device model (cuda_backend.h), and runs the
// same training step and validation loss as llmc/train.h on the device. The CPU GPT stays the
// owner of the configuration and of the checkpoint format: device state is copied into it
// before a checkpoint or a best-weights snapshot, and out of it on resume.
#pragma once
#include "../attention/gqa.h"
#include "../attention/mka.h"
#include "../attention/mla.h"
#include "cuda_backend.h"
#include "train.h"

// can the CUDA backend train this configuration? *why says what is missing
static bool cuda_supports(const GPTConfig& c, std::string* why) {
    const bool mla = c.attn == ATTN_MLA || c.attn == ATTN_KVSPLICE;
    const int db = mla ? c.rope_dim : 0;
    if (!cuda_attention_dims_supported(c.head_dim, db)) {
        *why = "the CUDA attention kernel takes head dims 32, 64 and 128";
        if (mla) *why += " and MLA rope keys (--rope-dim) of 0, 16, 32 or 64 (64 only at head dim 32)";
        *why += "; this model has head dim " + std::to_string(c.head_dim) + (mla ? " and --rope-dim " + std::to_string(db) : std::string());
        return false;
    }
    return true;
}

// the device description of `model` for sequences up to Tmax
static CudaModelSpec cuda_spec_from(GPT& model, int Tmax) {
    const GPTConfig& c = model.cfg;
    CudaModelSpec s;
    s.V = c.vocab_size; s.Vp = c.padded_vocab_size; s.C = c.d_model; s.F = c.d_ff; s.L = c.n_layer;
    s.H = c.n_head; s.G = c.n_kv_head; s.hd = c.head_dim;
    s.parallel_residual = c.parallel_residual; s.gelu_exact = c.gelu_exact;
    s.learned_pos = c.pos == POS_LEARNED; s.max_seq_len = c.max_seq_len;
    s.dc = s.dR = s.qr = s.splice_r = s.splice_ln = 0;
    s.mka_fast = s.mka_slots = s.mka_router = 0;
    s.n_params = (long)model.ps.total;
    s.wte = (long)model.wte; s.wpe = (long)model.wpe; s.lnf_w = (long)model.lnf_w; s.lnf_b = (long)model.lnf_b; s.w_out = (long)model.w_out;
    Rope* rope = nullptr;  // the layers' rope and core are configured alike: take layer 0's
    const AttnCore* core = nullptr;
    const std::vector<float>* slopes = nullptr;
    for (Layer& y : model.layers) {
        CudaAttnOffsets ao;
        if (GQAAttention* a = dynamic_cast<GQAAttention*>(y.attn.get())) {
            s.attn = CUDA_ATTN_GQA;
            ao.w_qkv = (long)a->w_qkv; ao.b_qkv = (long)a->b_qkv; ao.w_o = (long)a->w_o; ao.b_o = (long)a->b_o;
            rope = &a->rope; core = &a->core; slopes = &a->slopes;
        } else if (MLAAttention* m = dynamic_cast<MLAAttention*>(y.attn.get())) {
            s.attn = CUDA_ATTN_MLA;
            s.dc = m->dc; s.dR = m->dR; s.qr = m->qr;
            s.splice_r = m->splice_on ? m->splice.r : 0; s.splice_ln = m->splice_on ? m->splice.ln : 0;
            ao.w_dkv = (long)m->w_dkv; ao.kv_norm = (long)m->kv_norm; ao.w_ukv = (long)m->w_ukv;
            if (m->qr) { ao.w_dq = (long)m->w_dq; ao.q_norm = (long)m->q_norm; ao.w_uq = (long)m->w_uq; }
            else ao.w_q = (long)m->w_q;
            if (m->splice_on) {
                ao.sp_wc = (long)m->splice.w_c; ao.sp_we = (long)m->splice.w_e;
                if (m->splice.ln) { ao.sp_ln_w = (long)m->splice.ln_w; ao.sp_ln_b = (long)m->splice.ln_b; }
            }
            ao.w_o = (long)m->w_o; ao.b_o = (long)m->b_o;
            rope = &m->rope; core = &m->core; slopes = &m->slopes;
        } else if (MKAAttention* k = dynamic_cast<MKAAttention*>(y.attn.get())) {
            s.attn = CUDA_ATTN_MKA;
            s.mka_fast = k->fast; s.mka_slots = k->M; s.mka_router = k->R;
            ao.w_qkv = (long)k->w_qkv; ao.b_qkv = (long)k->b_qkv; ao.w_o = (long)k->w_o; ao.b_o = (long)k->b_o;
            ao.mem = (long)k->mem; ao.w_r1 = (long)k->w_r1; ao.b_r1 = (long)k->b_r1; ao.w_r2 = (long)k->w_r2; ao.b_r2 = (long)k->b_r2;
            rope = &k->rope; core = &k->core; slopes = &k->slopes;
        } else {
            fail("internal: the CUDA backend got an attention layer it does not implement");
        }
        s.layers.push_back({(long)y.ln1_w, (long)y.ln1_b, (long)y.ln2_w, (long)y.ln2_b, (long)y.fc_w, (long)y.fc_b, (long)y.proj_w,
                            (long)y.proj_b, ao});
    }
    s.scale = core->scale;
    s.rot = rope->rot;
    s.rope_T = 0;
    if (s.rot) {  // the CPU's own tables, so both backends rotate by the same float values
        rope->ensure(Tmax);
        s.rope_T = rope->max_t;
        s.rope_cos = rope->cos_t;
        s.rope_sin = rope->sin_t;
    }
    s.slopes = *slopes;
    for (const ParamSpec& p : model.ps.specs) s.tensors.push_back({(long)p.offset, (long)p.n, p.decay ? 1 : 0});
    return s;
}

// the device twin of train_step / val_loss (llmc/train.h)
struct CudaTrainer {
    GPT& host;
    CudaGPT* dev;
    CudaTrainer(GPT& model, int precision, int Bmax, int Tmax) : host(model) {
        dev = cuda_gpt_create(cuda_spec_from(model, Tmax), precision, Bmax, Tmax);
        dev->set_params(model.params);
        dev->set_moments(model.m, model.v);  // null (fresh run): zeros
    }
    ~CudaTrainer() { delete dev; }

    StepStats step(DataLoader& train, const TrainConfig& tc, int step) {
        // the whole step is queued without waiting for the device; the host reads the losses and
        // the norm once, at the end (a NaN is then reported for the step it happened in)
        // data-parallel ranks (llmc/distributed.h) train their micro-batches of the N x accum,
        // then NCCL sums the gradients and every rank runs the same AdamW on the same sums
        const int R = g_dist.size, rank = g_dist.rank;
        dev->zero_grad();
        for (int a = 0; a < tc.accum; a++) {
            train.next_random_batch(rank, R);
            dev->forward(train.inputs.data(), train.targets.data(), tc.B, tc.T);
            dev->backward(1.0f / ((float)tc.accum * R));
        }
        dist_sum_device(dev->device_grads(), host.ps.total, dev->device_stream());
        StepStats s;
        s.lr = lr_at(tc, step);
        dev->grad_norm();  // the clip factor is computed from it on the device: no host round trip
        float bc1 = 1.0f - powf(tc.beta1, (float)(step + 1)), bc2 = 1.0f - powf(tc.beta2, (float)(step + 1));
        const OptStep o = opt_step(tc, step);
        dev->adamw(s.lr, tc.beta1, tc.beta2, tc.eps, tc.weight_decay, bc1, bc2, tc.grad_clip, 1.0f, o.theta, o.scale, o.reset);
        std::vector<float> mine(tc.accum);
        dev->read_losses(mine.data(), tc.accum);
        std::vector<double> losses((size_t)tc.accum * R, 0.0);  // in the order one process would add them
        for (int a = 0; a < tc.accum; a++) losses[(size_t)a * R + rank] = mine[a];
        s.loss = ranks_mean_loss(losses, step, "lower the learning rate (-l), raise warmup (-u), or check the data; checkpoints on disk are from before this step");
        s.grad_norm = dev->read_grad_norm();
        if (!std::isfinite(s.grad_norm))
            fail_hint("lower the learning rate (-l) or the clip (--clip); checkpoints on disk are from before this step",
                      "gradient norm is %f at step %d", s.grad_norm, step + 1);
        return s;
    }
    float val_loss(DataLoader& val, int max_batches) {
        return mean_val_loss(val, max_batches, [&] {
            dev->forward(val.inputs.data(), val.targets.data(), val.B, val.T);
            return dev->mean_loss();
        });
    }
    // device -> host model (parameters and AdamW moments), before checkpoints and snapshots
    void pull() {
        dev->get_params(host.params);
        if (!host.m) { host.m = alloc_floats<float>(host.ps.total); host.v = alloc_floats<float>(host.ps.total); }
        dev->get_moments(host.m, host.v);
    }
};

// the model on the device behind the interface the evaluator's forward-only protocols use
// (llmc/eval.h: cfg, forward, logits, losses), for eval_gpt -d cuda. A forward with targets
// fetches only the per-token losses; one without them fetches the logits.
// The device model is sized for the largest forward seen so far and rebuilt when one is larger.
struct CudaLM {
    GPTConfig cfg;
    GPT& host;
    int precision;
    CudaGPT* dev = nullptr;
    int Bmax = 0, Tmax = 0;
    std::vector<float> logits_buf, losses_buf;
    float *logits = nullptr, *losses = nullptr;
    CudaLM(GPT& model, int precision_, int B, int T) : cfg(model.cfg), host(model), precision(precision_) { ensure(B, T); }
    ~CudaLM() { delete dev; }
    void ensure(int B, int T) {
        if (dev && B <= Bmax && T <= Tmax) return;
        delete dev;
        Bmax = std::max(B, Bmax); Tmax = std::max(T, Tmax);
        dev = cuda_gpt_create(cuda_spec_from(host, Tmax), precision, Bmax, Tmax);
        dev->set_params(host.params);
    }
    float forward(const int* in, const int* tg, int B, int T) {
        ensure(B, T);
        dev->forward(in, tg, B, T);
        if (tg) {
            losses_buf.resize((size_t)B * T);
            dev->get_token_losses(losses_buf.data());
            losses = losses_buf.data();
            return dev->mean_loss();
        }
        logits_buf.resize((size_t)B * T * cfg.padded_vocab_size);
        dev->get_logits(logits_buf.data());
        logits = logits_buf.data();
        return NAN;
    }
};

// generation on the device: the subset of GPT's decode API (llmc/model.h) that sample_gpt uses,
// with the caches on the GPU (llmc/cuda_backend.cu: decode kernels per variant; no presses).
// Rows go to the device in chunks of at most ROWS (exact: a sequence's rows stay in order).
struct CudaDecoder {
    static const int ROWS = 256;
    GPTConfig cfg;
    CudaGPT* dev;
    int precision, chunk;
    std::vector<int> dec_len;
    int dec_T = 0;
    std::vector<float> dec_logits;
    CudaDecoder(GPT& model, int precision_, int max_T, int chunk_ = 256) : cfg(model.cfg), precision(precision_), chunk(chunk_) {
        dev = cuda_gpt_create(cuda_spec_from(model, std::max(max_T, ROWS)), precision, 1, ROWS);
        dev->set_params(model.params);
    }
    ~CudaDecoder() { delete dev; }
    void decode_begin(int n_seq, int max_T) {
        if (n_seq < 1 || max_T < 1) fail("decode_begin: %d sequences of %d tokens", n_seq, max_T);
        config_validate(&cfg, std::min(max_T, cfg.pos == POS_LEARNED ? cfg.max_seq_len : max_T));
        dev->decode_begin(n_seq, max_T, chunk);
        dec_len.assign(n_seq, 0);
        dec_T = max_T;
    }
    int decode_held(int s) const { return dec_len[s]; }  // slot = position on the device: a sequence holds its whole length
    void decode_graphs(bool on) { dev->decode_graphs(on); }  // replay steps from CUDA graphs (CudaGPT::decode_graphs)
    // benchmarks (dev/bench_decode -d cuda): sequence s "holds" L tokens, whatever its cache slots
    // contain, so a decode step at context L is timed without an L-token prefill (the contents do
    // not change the work)
    void decode_pretend_held(int s, int L) {
        if (s < 0 || s >= (int)dec_len.size() || L < 0 || L >= dec_T) fail("decode_pretend_held: sequence %d, %d tokens (context %d)", s, L, dec_T);
        dec_len[s] = L;
    }
    // bytes of the device caches per token (every layer) and per sequence, as allocated
    size_t cache_bytes_per_token() const { return dev->cache_bytes_per_token(); }
    size_t cache_bytes_fixed() const { return dev->cache_bytes_fixed(); }
    // given argmax (greedy decoding): the wanted rows' most likely tokens there, the logits left on
    // the device (only the ids cross to the host), and null returned
    const float* decode(const int* tokens, const int* seq, int n, const bool* want = nullptr, int* argmax = nullptr) {
        const int n_out = decode_check_rows(cfg, dec_len, [&](int s) { return dec_len[s]; }, dec_T, tokens, seq, n, want,
                                            "call decode_begin with a larger context");
        // one device call (a decode step): its logits where the device model left them (pinned
        // memory, no copy); more (a long prefill): each call's appended here
        const size_t Vp = cfg.padded_vocab_size;
        if (!argmax) dec_logits.resize((size_t)std::max(1, n_out) * Vp);
        float* out = argmax ? nullptr : dec_logits.data();
        const float* lg = nullptr;
        for (int c0 = 0; c0 < n; c0 += ROWS) {
            const int m = std::min(ROWS, n - c0);
            std::vector<int> pos(m), keep;
            for (int i = 0; i < m; i++) {
                pos[i] = dec_len[seq[c0 + i]]++;
                if (!want || want[c0 + i]) keep.push_back(i);
            }
            if (argmax) {
                dev->decode(tokens + c0, seq + c0, pos.data(), m, keep.data(), (int)keep.size(), argmax);
                argmax += keep.size();
                continue;
            }
            lg = dev->decode(tokens + c0, seq + c0, pos.data(), m, keep.data(), (int)keep.size());
            if (n > ROWS && !keep.empty()) memcpy(out, lg, sizeof(float) * keep.size() * Vp);
            out += keep.size() * Vp;
        }
        if (argmax) return nullptr;
        return n <= ROWS && lg ? lg : dec_logits.data();
    }
};

// peak dense TFLOPS for MFU, by device name and precision (vendor datasheets); 0 = unknown
static double cuda_peak_tflops(const std::string& name, int precision) {
    struct P { const char* key; double bf16, fp32; };
    static const P table[] = {{"H200", 989.4, 66.9}, {"H100 PCIe", 756.0, 51.2}, {"H100", 989.4, 66.9}, {"A100", 312.0, 19.5},
                              {"L40S", 362.1, 91.6}, {"L4", 121.0, 30.3}, {"A10G", 70.0, 31.2}, {"RTX 4090", 165.2, 82.6}};
    for (const P& p : table)
        if (name.find(p.key) != std::string::npos) return precision == CUDA_BF16 ? p.bf16 : p.fp32;
    return 0.0;
}
