// bench_cpu.cpp: CPU backend benchmark. Prints, all measured in this process:
//   - the machine's fp32 FMA peak (a register-only FMA loop on every OpenMP thread)
//   - matmul GFLOP/s of the built-in kernel and of OpenBLAS (when linked) on the model's shapes,
//     and their ratio
//   - per preset x attention variant: median ms per training step (forward, backward, AdamW),
//     tokens/s, achieved GFLOP/s (6 * params * tokens per step) as % of the FMA peak (also with
//     the lookup-only tables left out of the params), and the
//     per-op breakdown (matmul, attention, norm, classifier, optimizer, other)
// A benchmark, not a test: nothing here fails on speed.
//
//   make bench && ./dev/bench_cpu                   # GPT-2-124M and Pythia-70m, B=4 T=64
//   ./dev/bench_cpu --steps 5 --only gpt2-124m --matmul builtin
#include <omp.h>
#include <algorithm>
#include "../llmc/cli.h"
#include "../llmc/train.h"
#include "peaks.h"

static double time_matmul(int M, int K, int N, int reps) {
    std::vector<float> a((size_t)M * K, 0.5f), w((size_t)N * K, 0.25f), o((size_t)M * N), dI((size_t)M * K), dW((size_t)N * K, 0.0f);
    matmul_forward(o.data(), a.data(), w.data(), nullptr, M, K, N);  // warm up
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now_seconds();
        matmul_forward(o.data(), a.data(), w.data(), nullptr, M, K, N);
        matmul_backward(dI.data(), dW.data(), nullptr, o.data(), a.data(), w.data(), M, K, N);
        best = std::min(best, now_seconds() - t0);
    }
    return 3.0 * 2.0 * M * K * N / best / 1e9;  // forward + the two backward products
}

int main(int argc, char** argv) {
    omp_polite_spin(argv);  // llmc/utils.h: spin-waiting threads that yield their cores to other programs
    setvbuf(stdout, nullptr, _IOLBF, 0);
    int steps = 5, B = 4, T = 64;
    std::string only, mm = "auto", variants = "mha,gqa,mqa,mla,kvsplice,mka";
    std::vector<Flag> flags = {
        {"-x", "--steps", F_INT, &steps, "timed steps per configuration (median reported; one warm-up step first)"},
        {"-b", "--batch", F_INT, &B, "micro-batch B"},
        {"-t", "--seq-len", F_INT, &T, "sequence length T"},
        {"", "--only", F_STR, &only, "only this preset (tiny, pythia-70m, gpt2-124m)"},
        {"", "--variants", F_STR, &variants, "attention variants for Pythia-70m (comma-separated)"},
        {"", "--matmul", F_STR, &mm, "auto, builtin or blas"},
    };
    parse_flags(argc, argv, flags, "./dev/bench_cpu", "./dev/bench_cpu --steps 5");
    matmul_select(mm, "install libopenblas-dev and rebuild (make bench)");

    int threads = omp_get_max_threads();
    double peak = fma_peak_gflops();
    printf("machine: %d OpenMP threads; measured fp32 FMA peak %.1f GFLOP/s\n", threads, peak);
    printf("matmul for the models: %s\n\n", matmul_desc());

    // matmul shapes of GPT-2-124M at B=4, T=64 (M = 256 rows)
    printf("| matmul M x K x N (fwd + bwd) | built-in GFLOP/s | OpenBLAS GFLOP/s | BLAS / built-in |\n|---|---|---|---|\n");
    int saved = matmul_impl();
    int shapes[][3] = {{256, 768, 2304}, {256, 768, 768}, {256, 768, 3072}, {256, 3072, 768}, {256, 768, 50304}};
    for (auto& s : shapes) {
        matmul_impl() = MATMUL_BUILTIN;
        double g0 = time_matmul(s[0], s[1], s[2], 3);
        double g1 = 0.0;
        if (matmul_have_blas()) { matmul_impl() = MATMUL_BLAS; g1 = time_matmul(s[0], s[1], s[2], 3); }
        if (g1 > 0) printf("| %d x %d x %d | %.1f | %.1f | %.2fx |\n", s[0], s[1], s[2], g0, g1, g1 / g0);
        else printf("| %d x %d x %d | %.1f | (not built) | |\n", s[0], s[1], s[2], g0);
    }
    matmul_impl() = saved;

    struct Conf { std::string preset; int attn; };
    std::vector<Conf> confs;
    if (only.empty() || only == "gpt2-124m") confs.push_back({"gpt2-124m", ATTN_MHA});
    if (only.empty() || only == "pythia-70m")
        for (int a : std::vector<int>{ATTN_MHA, ATTN_GQA, ATTN_MQA, ATTN_MLA, ATTN_KVSPLICE, ATTN_MKA, ATTN_FMKA})
            if (("," + variants + ",").find(std::string(",") + ATTN_NAMES[a] + ",") != std::string::npos) confs.push_back({"pythia-70m", a});
    if (only == "tiny") confs.push_back({"tiny", ATTN_MHA});

    printf("\n| preset | attention | params | ms/step (median) | tokens/s | GFLOP/s (6N) | %% of FMA peak | %% of peak, lookups excluded |");
    for (int o = 0; o < PROF_COUNT; o++) printf(" %s |", PROF_NAMES[o]);
    printf(" other |\n|---|---|---|---|---|---|---|---|");
    for (int o = 0; o <= PROF_COUNT; o++) printf("---|");
    printf("\n");
    for (const Conf& c : confs) {
        GPTConfig cfg;
        config_from_preset(&cfg, c.preset.c_str());
        cfg.attn = c.attn;
        if (c.attn == ATTN_GQA) cfg.n_kv_head = 2;
        if (is_mla_family(c.attn)) cfg.kv_rank = cfg.d_model / 4;
        config_finalize(&cfg);
        GPT model(cfg);
        model.init_weights(1);
        Rng rng(3);
        std::vector<int> in((size_t)B * T), tg((size_t)B * T);
        for (auto& x : in) x = (int)rng.below(cfg.vocab_size);
        for (auto& x : tg) x = (int)rng.below(cfg.vocab_size);
        std::vector<double> ms;
        double op_sum[PROF_COUNT] = {0};
        for (int s = 0; s <= steps; s++) {
            g_prof.reset();
            double t0 = now_seconds();
            model.zero_grad();
            model.forward(in.data(), tg.data(), B, T);
            model.backward();
            float n = model.grad_norm();
            model.adamw_update(1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, s + 1, n > 1.0f ? 1.0f / n : 1.0f);
            double dt = now_seconds() - t0;
            if (s == 0) continue;  // warm-up
            ms.push_back(1000 * dt);
            for (int o = 0; o < PROF_COUNT; o++) op_sum[o] += g_prof.seconds[o];
        }
        std::sort(ms.begin(), ms.end());
        double med = ms[ms.size() / 2];
        double flop = 6.0 * model.num_parameters() * B * T;
        double gf = flop / (med / 1000) / 1e9;
        // an untied input embedding and a learned position table are lookups, not matmuls
        double lookups = (cfg.tied_embeddings ? 0.0 : (double)cfg.vocab_size * cfg.d_model) +
                         (cfg.pos == POS_LEARNED ? (double)cfg.max_seq_len * cfg.d_model : 0.0);
        double gf_mm = 6.0 * (model.num_parameters() - lookups) * B * T / (med / 1000) / 1e9;
        printf("| %s | %s | %.1fM | %.0f | %.0f | %.1f | %.1f%% | %.1f%% |", c.preset.c_str(), ATTN_NAMES[c.attn], model.num_parameters() / 1e6, med,
               B * T / (med / 1000), gf, 100 * gf / peak, 100 * gf_mm / peak);
        double mean_ms = 0;
        for (double x : ms) mean_ms += x;
        mean_ms /= ms.size();
        double accounted = 0;
        for (int o = 0; o < PROF_COUNT; o++) {
            double x = 1000 * op_sum[o] / ms.size();
            accounted += x;
            printf(" %.0f |", x);
        }
        printf(" %.0f |\n", std::max(0.0, mean_ms - accounted));
    }
    printf("\n(B=%d, T=%d, fp32, AdamW; per-op columns are mean ms per step; 'other' = embedding, GELU, residuals, RoPE, bookkeeping)\n", B, T);
    return 0;
}
