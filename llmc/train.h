// train.h: the training step (gradient accumulation, clipping, AdamW, lr schedule) and the
// validation loss, shared by train_gpt.cu and the tests so the tests exercise the real loop.
#pragma once
#include "dataloader.h"
#include "distributed.h"
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
    // the optimizer: AdamW, or SPAM (Huang et al., "SPAM: Spike-Aware Adam with Momentum Reset",
    // ICLR 2025): moments reset every spam_interval steps, a cosine warmup of the Adam step over
    // spam_warmup steps after each reset, spike-aware clipping at spam_threshold once the second
    // moment has had spam_skip steps to build up (at the start and after each reset)
    int optim = 0;  // OPT_ADAMW or OPT_SPAM
    float spam_threshold = 5000.0f;
    int spam_interval = 1000, spam_warmup = 150, spam_skip = 20;
};
enum { OPT_ADAMW = 0, OPT_SPAM = 1 };
static const char* const OPT_NAMES[2] = {"adamw", "spam"};

// SPAM's controls at 0-based `step`, a function of the step alone (so a resumed run continues
// them exactly): resets at steps interval, 2 interval, ...; the warmup factor rises from 0.01 to
// 1 over the `warmup` steps that start at a reset (none at the very start: the lr warmup is
// there); clipping once `skip` steps have passed since the start or the last reset. Bias
// correction keeps counting the global step, as SPAM's own implementation does.
static OptStep opt_step(const TrainConfig& tc, int step) {
    OptStep o;
    if (tc.optim != OPT_SPAM) return o;
    const int since = step % tc.spam_interval;
    const bool after_reset = step >= tc.spam_interval;
    o.reset = after_reset && since == 0;
    if (since >= tc.spam_skip) o.theta = tc.spam_threshold;
    if (after_reset && since < tc.spam_warmup) o.scale = 0.01f + 0.99f * 0.5f * (1.0f - cosf(3.14159265f * (float)since / (float)tc.spam_warmup));
    return o;
}

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
    model.adamw_update(s.lr, tc.beta1, tc.beta2, tc.eps, tc.weight_decay, step + 1, clip, opt_step(tc, step));
    return s;
}

// ZeRO-1 (data-parallel CPU ranks): the slice [lo, hi) of the parameter vector this rank
// updates, with the summed gradient and the AdamW moments of that slice only. The slices are
// unions of deterministic_sum's chunks, so the ranks together reproduce grad_norm() exactly.
struct ZeroShard {
    size_t lo = 0, hi = 0;
    int chunk_lo = 0, chunk_hi = 0;
    std::vector<int> counts, displs;  // every rank's slice
    std::vector<float> g, m, v;
    void setup(const GPT& model) {
        size_t n = model.ps.total;
        const int R = g_dist.size, C = DETERMINISTIC_SUM_CHUNKS;
        counts.resize(R);
        displs.resize(R);
        for (int r = 0; r < R; r++) {
            size_t a = deterministic_chunk_start(n, C * r / R), b = deterministic_chunk_start(n, C * (r + 1) / R);
            if (b - a > (size_t)INT_MAX) fail("a ZeRO slice of %zu floats is larger than one MPI message takes", b - a);
            displs[r] = (int)a;
            counts[r] = (int)(b - a);
        }
        chunk_lo = C * g_dist.rank / R;
        chunk_hi = C * (g_dist.rank + 1) / R;
        lo = displs[g_dist.rank];
        hi = lo + counts[g_dist.rank];
        g.assign(hi - lo, 0.0f);
        m.assign(hi - lo, 0.0f);
        v.assign(hi - lo, 0.0f);
    }
    // a resumed full state: keep this rank's slice of the moments and free the rest
    void take_moments(GPT& model) {
        if (!model.m) return;
        memcpy(m.data(), model.m + lo, (hi - lo) * sizeof(float));
        memcpy(v.data(), model.v + lo, (hi - lo) * sizeof(float));
        free(model.m);
        free(model.v);
        model.m = model.v = nullptr;
    }
    // every slice into rank 0's model.m / model.v, for a checkpoint (a collective)
    void gather_moments(GPT& model) {
        if (g_dist.rank == 0 && !model.m) { model.m = alloc_floats<float>(model.ps.total); model.v = alloc_floats<float>(model.ps.total); }
        dist_gather_to_root(m.data(), model.m, counts, displs);
        dist_gather_to_root(v.data(), model.v, counts, displs);
    }
};

// the mean of a step's micro-batch losses, micro-batch a*N + r filled in by rank r of N (0
// elsewhere): summed across the ranks (one contributor per entry: exact), a non-finite one
// reported by every rank, then added in the order one process would add them
static float ranks_mean_loss(std::vector<double>& losses, int step, const char* hint) {
    dist_sum(losses.data(), losses.size());
    double loss = 0.0;
    for (size_t k = 0; k < losses.size(); k++) {
        if (!std::isfinite(losses[k]))
            fail_hint(hint, "loss is %f at step %d (micro-batch %zu, on rank %zu): training diverged", losses[k], step + 1, k, k % g_dist.size);
        loss += losses[k];
    }
    return (float)(loss / losses.size());
}

// the data-parallel step: rank r of N trains micro-batches r, r + N, ... of the N x accum that a
// single process with accum N x A would train (the same windows), then the ranks sum the
// gradients, each updates its ZeRO-1 slice, and they share the updated parameters. Equal to that
// single process up to the order in which gradient contributions are added (see README); the
// loss, the gradient norm and the clip are computed in exactly its order.
static StepStats train_step_dp(GPT& model, DataLoader& train, const TrainConfig& tc, int step, ZeroShard& z) {
    const int R = g_dist.size, rank = g_dist.rank;
    model.zero_grad();
    std::vector<double> losses((size_t)tc.accum * R, 0.0);
    for (int a = 0; a < tc.accum; a++) {
        train.next_random_batch(rank, R);
        float l = model.forward(train.inputs.data(), train.targets.data(), tc.B, tc.T);
        losses[(size_t)a * R + rank] = l;
        if (!std::isfinite(l)) break;  // reported below, by every rank, once they have all heard
        model.backward(1.0f / ((float)tc.accum * R));
    }
    StepStats s;
    s.loss = ranks_mean_loss(losses, step, "lower the learning rate (-l), raise warmup (-u), or check the data");
    {
        ProfScope prof(PROF_OPTIMIZER);
        dist_reduce_scatter(model.grads, z.g.data(), z.counts);
        // grad_norm()'s chunks: this rank's from its slice, the others' from theirs, added in order
        std::vector<double> part(DETERMINISTIC_SUM_CHUNKS, 0.0);
        const size_t n = model.ps.total;
        #pragma omp parallel for schedule(static)
        for (int c = z.chunk_lo; c < z.chunk_hi; c++)
            part[c] = deterministic_chunk_sum(n, c, [&](size_t i) { return (double)z.g[i - z.lo] * z.g[i - z.lo]; });
        dist_sum(part.data(), part.size());
        double sq = 0.0;
        for (double p : part) sq += p;
        s.grad_norm = (float)sqrt(sq);
    }
    if (!std::isfinite(s.grad_norm))
        fail_hint("lower the learning rate (-l) or the clip (--clip)", "gradient norm is %f at step %d", s.grad_norm, step + 1);
    float clip = (tc.grad_clip > 0.0f && s.grad_norm > tc.grad_clip) ? tc.grad_clip / s.grad_norm : 1.0f;
    s.lr = lr_at(tc, step);
    model.adamw_update_range(z.lo, z.hi, z.g.data(), z.m.data(), z.v.data(), s.lr, tc.beta1, tc.beta2, tc.eps, tc.weight_decay, step + 1,
                             clip, opt_step(tc, step));
    {
        ProfScope prof(PROF_OPTIMIZER);
        dist_allgather(model.params, z.counts, z.displs);
    }
    return s;
}

// mean of batch_loss() over up to max_batches disjoint validation windows (all of them if
// max_batches <= 0); batch_loss scores the batch now in val.inputs / val.targets. Data-parallel
// ranks score every N-th batch each and sum the losses in order: the same figure as one process.
template <typename F>
static inline float mean_val_loss(DataLoader& val, int max_batches, F batch_loss) {
    val.reset();
    std::vector<double> losses;
    while ((max_batches <= 0 || (int)losses.size() < max_batches) && val.next_sequential_batch())
        losses.push_back((int)losses.size() % g_dist.size == g_dist.rank ? batch_loss() : 0.0);
    val.reset();
    dist_sum(losses.data(), losses.size());
    double s = 0.0;
    for (double l : losses) s += l;
    return losses.empty() ? NAN : (float)(s / losses.size());
}
static inline float val_loss(GPT& model, DataLoader& val, int max_batches) {
    return mean_val_loss(val, max_batches, [&] { return model.forward(val.inputs.data(), val.targets.data(), val.B, val.T); });
}
