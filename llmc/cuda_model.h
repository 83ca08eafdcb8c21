// cuda_model.h: the host side of the CUDA backend (compiled by the C++ compiler, like all host
// code). It describes the CPU GPT's layout to the device model (cuda_backend.h), and runs the
// same training step and validation loss as llmc/train.h on the device. The CPU GPT stays the
// owner of the configuration and of the checkpoint format: device state is copied into it
// before a checkpoint or a best-weights snapshot, and out of it on resume.
#pragma once
#include "../attention/gqa.h"
#include "cuda_backend.h"
#include "train.h"

// can the CUDA backend train this configuration? *why says what is missing
static bool cuda_supports(const GPTConfig& c, std::string* why) {
    if (c.attn != ATTN_MHA && c.attn != ATTN_MQA && c.attn != ATTN_GQA) {
        *why = std::string("the CUDA backend implements the GQA family (mha, mqa, gqa); -a ") + ATTN_NAMES[c.attn] + " runs on the CPU";
        return false;
    }
    if (!cuda_head_dim_supported(c.head_dim)) {
        *why = "the CUDA attention kernel takes head dims 32, 64 and 128; this model has " + std::to_string(c.head_dim);
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
    s.n_params = (long)model.ps.total;
    s.wte = (long)model.wte; s.wpe = (long)model.wpe; s.lnf_w = (long)model.lnf_w; s.lnf_b = (long)model.lnf_b; s.w_out = (long)model.w_out;
    for (Layer& y : model.layers) {
        GQAAttention* a = dynamic_cast<GQAAttention*>(y.attn.get());
        if (!a) fail("internal: the CUDA backend got a non-GQA attention layer");
        s.layers.push_back({(long)y.ln1_w, (long)y.ln1_b, (long)a->w_qkv, (long)a->b_qkv, (long)a->w_o, (long)a->b_o, (long)y.ln2_w,
                            (long)y.ln2_b, (long)y.fc_w, (long)y.fc_b, (long)y.proj_w, (long)y.proj_b});
    }
    GQAAttention* a0 = dynamic_cast<GQAAttention*>(model.layers[0].attn.get());
    s.scale = a0->core.scale;
    s.rot = a0->rope.rot;
    s.rope_T = 0;
    if (s.rot) {  // the CPU's own tables, so both backends rotate by the same float values
        a0->rope.ensure(Tmax);
        s.rope_T = a0->rope.max_t;
        s.rope_cos = a0->rope.cos_t;
        s.rope_sin = a0->rope.sin_t;
    }
    s.slopes = a0->slopes;
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
        dev->adamw(s.lr, tc.beta1, tc.beta2, tc.eps, tc.weight_decay, bc1, bc2, tc.grad_clip, 1.0f);
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

// peak dense TFLOPS for MFU, by device name and precision (vendor datasheets); 0 = unknown
static double cuda_peak_tflops(const std::string& name, int precision) {
    struct P { const char* key; double bf16, fp32; };
    static const P table[] = {{"H200", 989.4, 66.9}, {"H100 PCIe", 756.0, 51.2}, {"H100", 989.4, 66.9}, {"A100", 312.0, 19.5},
                              {"L40S", 362.1, 91.6}, {"L4", 121.0, 30.3}, {"A10G", 70.0, 31.2}, {"RTX 4090", 165.2, 82.6}};
    for (const P& p : table)
        if (name.find(p.key) != std::string::npos) return precision == CUDA_BF16 ? p.bf16 : p.fp32;
    return 0.0;
}
