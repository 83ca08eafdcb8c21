// train.h: the training step (gradient accumulation, clipping, AdamW, lr schedule) and the
// validation loss, shared by train_gpt.cu and the tests so the tests exercise the real loop.
#pragma once
#include "dataloader.h"
#include "model.h"

struct TrainConfig {
    int B = 8, T = 128;           // micro-batch, sequence length
    int steps = 200;              // optimizer steps
    int accum = 1;                // micro-batches per optimizer step
    float lr = 2e-3f, lr_min_frac = 0.1f;
    int warmup = 20;
    float weight_decay = 0.1f, grad_clip = 1.0f, beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f;
    int val_every = 50, val_batches = 10;
    uint64_t seed = 1337;
};

// linear warmup to lr, then cosine decay to lr * lr_min_frac at the last step
static float lr_at(const TrainConfig& tc, int step) {
    if (step < tc.warmup) return tc.lr * (step + 1) / tc.warmup;
    if (tc.steps <= tc.warmup) return tc.lr;
    float p = (float)(step - tc.warmup) / (float)std::max(1, tc.steps - 1 - tc.warmup);
    p = std::min(1.0f, p);
    float min_lr = tc.lr * tc.lr_min_frac;
    return min_lr + 0.5f * (1.0f + cosf(3.14159265f * p)) * (tc.lr - min_lr);
}

struct StepStats {
    float loss, lr, grad_norm;
};

// one optimizer step (0-based `step`): accum micro-batches, clip, AdamW
static StepStats train_step(GPT& model, DataLoader& train, const TrainConfig& tc, int step) {
    model.zero_grad();
    double loss = 0.0;
    for (int a = 0; a < tc.accum; a++) {
        train.next_random_batch();
        float l = model.forward(train.inputs.data(), train.targets.data(), tc.B, tc.T);
        if (!std::isfinite(l))
            fail_hint("lower the learning rate (-l), raise warmup (-u), or check the data",
                      "loss is %f at step %d: training diverged", l, step + 1);
        loss += l;
        model.backward(1.0f / tc.accum);
    }
    StepStats s;
    s.loss = (float)(loss / tc.accum);
    s.grad_norm = model.grad_norm();
    if (!std::isfinite(s.grad_norm))
        fail_hint("lower the learning rate (-l) or the clip (--clip)", "gradient norm is %f at step %d", s.grad_norm, step + 1);
    float clip = (tc.grad_clip > 0.0f && s.grad_norm > tc.grad_clip) ? tc.grad_clip / s.grad_norm : 1.0f;
    s.lr = lr_at(tc, step);
    model.adamw_update(s.lr, tc.beta1, tc.beta2, tc.eps, tc.weight_decay, step + 1, clip);
    return s;
}

// mean of batch_loss() over up to max_batches disjoint validation windows (all of them if
// max_batches <= 0); batch_loss scores the batch now in val.inputs / val.targets
template <typename F>
static inline float mean_val_loss(DataLoader& val, int max_batches, F batch_loss) {
    val.reset();
    double s = 0.0;
    int n = 0;
    while ((max_batches <= 0 || n < max_batches) && val.next_sequential_batch()) {
        s += batch_loss();
        n++;
    }
    val.reset();
    return n ? (float)(s / n) : NAN;
}
static inline float val_loss(GPT& model, DataLoader& val, int max_batches) {
    return mean_val_loss(val, max_batches, [&] { return model.forward(val.inputs.data(), val.targets.data(), val.B, val.T); });
}
