// bench_attend.cpp: the decode attention kernel alone (KVCache::attend -> AttnCore::decode_rows,
// attention/core.h), the part of a decode step that reads the KV cache. A benchmark, not a test.
// Per variant (Pythia-70m's head shapes by default: 8 query heads of 64 dims), two placements:
//   - "L2": one sequence of --l2-keys keys on one thread, repeated: the cache stays in the core's
//     L2, so the time is the kernel's instructions alone
//   - "memory": --layers x --batch sequences of --context keys each (what one decode step of
//     the model attends to), on every thread, each call reading the whole cache from memory
// It prints ns per (query head, key) and the kernel's share of the FMA peak measured in the same
// run (the vector multiply-adds a (head, key) pair needs: its key's and its value's floats / 16),
// and for the memory rows the cache's GB/s against the host's read bandwidth measured just before
// and just after the row (the higher; dev/peaks.h), so a row says whether it waits on memory or
// on instructions. Each figure is the best of --reps calls. The cache holds random numbers (the
// work does not depend on them).
//
//   make dev/bench_attend && ./dev/bench_attend
//   ./dev/bench_attend --variants mqa,mla --context 8192 --batch 8 --reps 10
#include <omp.h>
#include <algorithm>
#include "../attention/kv_cache.h"
#include "../llmc/cli.h"
#include "../llmc/rng.h"
#include "peaks.h"

struct Shape {
    const char* name;
    int kv_heads, wa, wb, wv;  // the cache's streams, as the variant's attention/*.h sets them (wv 0: the value is part a)
};

int main(int argc, char** argv) {
    omp_polite_spin(argv);
    setvbuf(stdout, nullptr, _IOLBF, 0);
    std::string variants = "mha,gqa,mqa,mla,kvsplice";
    int heads = 8, head_dim = 64, context = 8192, batch = 8, layers = 6, l2_keys = 1024, reps = 8;
    std::vector<Flag> flags = {
        {"", "--variants", F_STR, &variants, "mha, gqa (heads/4 KV heads), mqa, mla (latent 128 + rope 32), kvsplice (latent 64 + rope 32)"},
        {"", "--heads", F_INT, &heads, "query heads"},
        {"", "--head-dim", F_INT, &head_dim, "floats per head (MHA / GQA / MQA keys and values)"},
        {"", "--context", F_INT, &context, "keys per sequence in the memory placement"},
        {"", "--batch", F_INT, &batch, "sequences decoded together"},
        {"", "--layers", F_INT, &layers, "layers (each its own cache)"},
        {"", "--l2-keys", F_INT, &l2_keys, "keys of the one sequence in the L2 placement (0: no L2 rows)"},
        {"", "--reps", F_INT, &reps, "calls per figure; the best is printed"},
    };
    parse_flags(argc, argv, flags, "./dev/bench_attend", "./dev/bench_attend --variants mqa,mla --context 8192 --batch 8");
    require_int("--heads", heads, 4, 256);
    if (heads % 4) fail_hint("use a multiple of 4", "--heads %d: GQA's groups need heads divisible by 4", heads);
    require_int("--head-dim", head_dim, 1, 1024);
    require_int("--context", context, 1, 1 << 20);
    require_int("--batch", batch, 1, 1024);
    require_int("--layers", layers, 1, 1024);
    require_int("--l2-keys", l2_keys, 0, 1 << 20);
    require_int("--reps", reps, 1, 100000);
    // one core's vector FMAs (16 floats) per ns: the FMA peak of every thread (dev/peaks.h), per thread
    const double fma_rate = fma_peak_gflops() / (2.0 * 16 * omp_get_max_threads());
    printf("one core: %.2f vector FMAs per ns (%.1f GFLOP/s fp32, measured here); %d threads\n", fma_rate, fma_rate * 2 * 16, omp_get_max_threads());
    printf("per (head, key): ns of one thread (memory rows: the wall time x the threads); FMA floor = the pair's vector FMAs at that rate\n\n");
    printf("| variant | cache floats per key (per KV head) | placement | keys x sequences | ns per (head, key), one thread | FMA floor ns | %% of FMA peak | call ms | cache GB/s | host read GB/s before, after | %% of read bandwidth |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (const std::string& v : split_list(variants)) {
        Shape s;
        if (v == "mha") s = {"mha", heads, head_dim, 0, head_dim};
        else if (v == "gqa") s = {"gqa", heads / 4, head_dim, 0, head_dim};
        else if (v == "mqa") s = {"mqa", 1, head_dim, 0, head_dim};
        else if (v == "mla") s = {"mla", 1, 128, 32, 0};
        else if (v == "kvsplice") s = {"kvsplice", 1, 64, 32, 0};
        else fail_hint("variants: mha gqa mqa mla kvsplice", "unknown variant '%s'", v.c_str());
        AttnCore core;
        core.H = heads;
        core.group = heads / s.kv_heads;
        core.da = s.wa;
        core.db = s.wb;
        core.dv = s.wv ? s.wv : s.wa;
        core.scale = 1.0f / sqrtf((float)(s.wa + s.wb));
        const int dq = s.wa + s.wb, floats = s.wa + s.wb + s.wv;
        const double fmas = (double)(dq + core.dv) / 16;  // vector FMAs per (head, key): its score and its weighted value
        for (int place = 0; place < 2; place++) {
            const bool l2 = place == 0;
            if (l2 && !l2_keys) continue;
            const int nseq = l2 ? 1 : layers * batch, nk = l2 ? l2_keys : context;
            KVCache c;
            c.init(nseq, s.kv_heads, nk, s.wa, s.wb, s.wv);
            Rng rng(7);
            for (auto* buf : {&c.a, &c.b, &c.v})
                for (auto& x : *buf) x = rng.uniform() - 0.5f;
            for (int q = 0; q < nseq; q++) {
                c.len[q] = nk;
                for (int g = 0; g < s.kv_heads; g++)
                    for (int j = 0; j < nk; j++) c.pos[c.off(q, g, j)] = j;
            }
            // one query row per sequence (as many rows as layers x batch: each layer's call is
            // batch rows, and the layers' calls are alike)
            std::vector<float> qv((size_t)nseq * heads * dq), y((size_t)nseq * heads * core.dv);
            for (auto& x : qv) x = rng.uniform() - 0.5f;
            std::vector<int> seq(nseq), qpos(nseq, nk - 1), nkeys(nseq, nk);
            for (int q = 0; q < nseq; q++) seq[q] = q;
            const int threads = l2 ? 1 : omp_get_max_threads(), saved = omp_get_max_threads();
            omp_set_num_threads(threads);
            const double bw0 = l2 ? 0 : stream_read_gbs(3);
            double best = 1e30;
            for (int r = 0; r < reps + 1; r++) {  // the first call warms up (and, in L2, loads the cache)
                double t0 = now_seconds();
                c.attend(core, nseq, seq.data(), qpos.data(), nkeys.data(), qv.data(), (long)heads * dq, dq, y.data(), (long)heads * core.dv, core.dv);
                if (r) best = std::min(best, now_seconds() - t0);
            }
            omp_set_num_threads(saved);
            const double bw1 = l2 ? 0 : stream_read_gbs(3);
            for (float x : y)
                if (!std::isfinite(x)) fail("internal: bench_attend's output is not finite");
            const double pairs = (double)nseq * heads * nk, ns = best * 1e9 * threads / pairs, floor_ns = fmas / fma_rate;
            const double bytes = (double)nseq * s.kv_heads * nk * floats * sizeof(float);
            char bw[64] = "-", share[16] = "-";
            if (!l2) {
                snprintf(bw, sizeof bw, "%.1f, %.1f", bw0, bw1);
                snprintf(share, sizeof share, "%.0f%%", 100.0 * bytes / best / 1e9 / std::max(bw0, bw1));
            }
            printf("| %s | %d | %s | %d x %d | %.2f | %.2f | %.0f%% | %.3f | %.1f | %s | %s |\n", s.name, floats, l2 ? "L2, 1 thread" : "memory, all threads",
                   nk, nseq, ns, floor_ns, 100.0 * floor_ns / ns, best * 1e3, bytes / best / 1e9, bw, share);
        }
    }
    return 0;
}
