// bench_decode.cpp: inference benchmark of the CPU backend. Prints, all measured in this process:
//   - the machine's memory bandwidth: read (a vectorised sum over 1 GiB on every thread: decoding
//     only reads, so this is the bound it is measured against) and a STREAM-style copy
//   - per shape x attention variant (random weights): prefill tokens/s (one batched call at each
//     prompt length, batch 1), and decode ms per step and tokens/s at each context and batch,
//     with the bytes one step must read (the weights it uses + every sequence's cache) and that
//     step's time at the read bandwidth measured just before and just after the row (the higher),
//     as % of the bound (100% = bandwidth-bound), and the mean time per step in attention and in
//     the linear layers (llmc/profile.h)
//   - the fp32 FMA peak of every thread (dev/peaks.h; measured at the start and again after
//     every row, the highest so far used), and per row the multiply-adds one step asks for
//     (counted by the kernels, llmc/profile.h) at that peak: the FMA floor. A step cannot beat
//     either floor, so its roofline bound is the larger of the two; a row whose FMA floor is the
//     larger is compute-bound on this host (small caches read by many heads at batch 8: MLA's
//     latent, scored and summed by every query head)
// Decoding at context L is timed with the cache marked as holding L tokens (its contents do
// not change the work), so long contexts need no long prefill.
//   - decode with a pressed cache: a real prompt of L tokens prefilled, the cache compressed by the
//     knorm press (attention/press.h) at each ratio and shrunk to what is kept, then decode ms per
//     step (batch 1) against the full cache's, measured in the same run. A benchmark, not a test.
//
// With -d cuda the decode table is measured on the GPU instead (llmc/cuda_backend.cu's decode
// kernels, through the CudaDecoder that ./sample_gpt -d cuda uses; --precision bf16 or fp32), against
// the device memory's read bandwidth measured in the same run (a sum over 1 GiB). A step's bytes
// are the weights the CPU's decode reads (the same absorbed MLA matrices) at the device's element
// size, plus the device caches as allocated. Each step is timed on the host up to its logits there,
// as ./sample_gpt sees it. No FMA floor there (decoding these shapes is far from a GPU's peak);
// a launch floor instead: a step calls a few kernels and GEMMs per layer, each a launch of a
// few microseconds however small, and at Pythia-70m's size the bytes take tens of microseconds.
// So each row is also timed with the steps replayed from CUDA graphs (one launch per step), A/B
// in the same process.
//
//   make dev/bench_decode && ./dev/bench_decode
//   ./dev/bench_decode --shapes pythia-70m --variants mha,mla --contexts 8192 --batches 1,8
//   ./dev/bench_decode -d cuda --precision bf16 --press-ratios none
#include <omp.h>
#include <algorithm>
#include "../llmc/backend.h"
#include "../llmc/cli.h"
#include "../llmc/model.h"
#include "peaks.h"

static bool variant_config(GPTConfig* c, const std::string& shape, const std::string& v) {
    if (!config_from_preset(c, shape.c_str())) fail_hint("shapes: pythia-70m, gpt2-124m, tiny", "unknown shape '%s'", shape.c_str());
    if (c->pos == POS_LEARNED) { c->pos = POS_ROPE; c->rotary_pct = 1.0f; }  // GPT-2's shape, but contexts past its 1024-row table
    c->max_seq_len = 1 << 20;
    int a = parse_name(v.c_str(), ATTN_NAMES, ATTN_COUNT);
    if (a < 0) fail_hint("variants: mha gqa mqa mla kvsplice mka fmka", "unknown variant '%s'", v.c_str());
    c->attn = a;
    if (a == ATTN_GQA) c->n_kv_head = c->n_head / 4;
    if (is_mla_family(a)) c->kv_rank = 128;
    if (a == ATTN_KVSPLICE) c->splice_rank = 64;
    config_finalize(c);
    return true;
}

// every shape x variant of the flags, in table order, with its configuration
struct Variant {
    std::string shape, name;
    GPTConfig cfg;
};
static std::vector<Variant> variants_of(const std::string& shapes, const std::string& variants) {
    std::vector<Variant> out;
    for (const std::string& shape : split_list(shapes))
        for (const std::string& v : split_list(variants)) {
            out.push_back({shape, v, GPTConfig()});
            variant_config(&out.back().cfg, shape, v);
        }
    return out;
}
// f(shape, variant, model, rng) for every shape x variant: the model with random weights (seed 1),
// and a random source for its rows
template <class F>
static void each_model(const std::string& shapes, const std::string& variants, uint64_t rng_seed, F f) {
    for (const Variant& v : variants_of(shapes, variants)) {
        GPT m(v.cfg);
        m.init_weights(1);
        Rng rng(rng_seed);
        f(v.shape, v.name, m, rng);
    }
}
// one token decoded in a one-slot cache, its seconds (the first call's setup, kept out of the table)
template <class Decoder>
static double first_token(Decoder& d) {
    d.decode_begin(1, 1);
    int t0 = 0, s0 = 0;
    const double t = now_seconds();
    d.decode(&t0, &s0, 1);
    return now_seconds() - t;
}
// prefill tokens/s of random prompts of each length (batch 1, one call, the last row's logits),
// as "P: tokens/s, ..."; on the CPU GPT or the device's CudaDecoder (the same decode API)
template <class Decoder>
static std::string prefill_speeds(Decoder& d, const std::vector<int>& pfs, int vocab, Rng& rng) {
    std::string out;
    for (int P : pfs) {
        std::vector<int> tok(P), seq(P, 0);
        for (int& t : tok) t = (int)rng.below(vocab);
        std::vector<char> want(P, 0);
        want[P - 1] = 1;
        d.decode_begin(1, P);
        const double t0 = now_seconds();
        d.decode(tok.data(), seq.data(), P, (const bool*)want.data());
        const double dt = now_seconds() - t0;
        char b[64];
        snprintf(b, sizeof b, "%s%d: %.0f", out.empty() ? "" : ", ", P, P / dt);
        out += b;
    }
    return out;
}

#ifdef KVGPT_CUDA_BACKEND
// the decode table on the GPU (see the top of this file); the same shapes, variants, contexts,
// batches and prompt lengths as the CPU table
static void bench_device(const std::string& shapes, const std::string& variants, const std::vector<int>& ctxs, const std::vector<int>& bs,
                         const std::vector<int>& pfs, int steps, int precision) {
    // 1 GiB on a GPU; the emulator (tests) runs it on the CPU, one fiber per CUDA thread: 1 MiB
    const size_t probe = strcmp(cuda_backend_kind(), "CUDA") == 0 ? (size_t)1 << 30 : (size_t)1 << 20;
    double bw = 0, copy = 0;
    cuda_bandwidth_gbs(probe, &bw, &copy);
    double launch_us = cuda_launch_us();
    const double elem = precision == CUDA_BF16 ? 2.0 : 4.0;  // bytes per weight and per cached value
    printf("device memory bandwidth (%s): read %.1f GB/s (a sum over %.0f MiB), STREAM copy %.1f GB/s (read + write)\n", cuda_backend_kind(), bw,
           probe / 1048576.0, copy);
    printf("one launch of an empty kernel, back to back: %.2f us\n", launch_us);
    printf("%s weights, activations and caches; each row's bound: its bytes at that read bandwidth (the highest measured so\n"
           "far: before the table and after each shape); its launch floor: the kernels and GEMMs one step calls, counted, at one\n"
           "empty launch each (the lowest measured so far); roofline: the larger of the two\n\n", CUDA_PRECISION_NAMES[precision]);
    printf("each step brings its logits to the host (pinned memory), as sampling needs; the last four columns: the same steps\n"
           "replayed from CUDA graphs (CudaGPT::decode_graphs; one launch per step), then also with the argmax taken on the device\n"
           "(greedy decoding: token ids to the host, not logits)\n\n");
    printf("| shape | variant | precision | KV bytes/token | prefill tokens/s (prompt: speed) | context | batch | decode ms/step | tokens/s | MB read/step (weights + cache) | bound ms | %% of bound | device calls/step | launch floor ms | %% of roofline | as graphs: ms/step | as graphs: %% of bound | graphs + argmax: ms/step | graphs + argmax: %% of bound |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    double bw_lo = bw, bw_hi = bw;
    const int ctx_max = *std::max_element(ctxs.begin(), ctxs.end()), pf_max = pfs.empty() ? 1 : *std::max_element(pfs.begin(), pfs.end());
    each_model(shapes, variants, 2, [&](const std::string& shape, const std::string& v, GPT& m, Rng& rng) {
            CudaDecoder dec(m, precision, std::max(ctx_max + steps + 2, pf_max));
            first_token(dec);  // untimed: the device's first calls set up their kernels and cuBLASLt plans
            const std::string pre = prefill_speeds(dec, pfs, m.cfg.vocab_size, rng);
            for (int L : ctxs)
                for (int B : bs) {
                    dec.decode_begin(B, L + steps + 2);
                    std::vector<int> tok(B), seq(B);
                    for (int s = 0; s < B; s++) { tok[s] = (int)rng.below(m.cfg.vocab_size); seq[s] = s; }
                    // the median step from context L: launched kernel by kernel, or replayed from graphs
                    // (the first step captures them); with argmax, only each row's most likely token
                    // comes back; *calls, when given, gets the device calls per timed step
                    std::vector<int> ids(B);
                    auto median_step = [&](bool graphs, bool argmax, double* calls) {
                        dec.decode_graphs(graphs);
                        for (int s = 0; s < B; s++) dec.decode_pretend_held(s, L);
                        dec.decode(tok.data(), seq.data(), B, nullptr, argmax ? ids.data() : nullptr);  // warm-up
                        std::vector<double> ts;
                        const long calls0 = cuda_device_calls();
                        for (int k = 0; k < steps; k++) {
                            double t0 = now_seconds();
                            dec.decode(tok.data(), seq.data(), B, nullptr, argmax ? ids.data() : nullptr);
                            ts.push_back(now_seconds() - t0);
                        }
                        if (calls) *calls = (double)(cuda_device_calls() - calls0) / steps;
                        dec.decode_graphs(false);
                        std::sort(ts.begin(), ts.end());
                        return ts[ts.size() / 2];
                    };
                    double calls;
                    const double dt = median_step(false, false, &calls), dt_graph = median_step(true, false, nullptr),
                                 dt_argmax = median_step(true, true, nullptr);
                    const double launch_floor = calls * launch_us * 1e-6;
                    const double bytes = elem * (double)m.decode_weight_floats() +
                                         (double)B * ((double)dec.cache_bytes_per_token() * (L + 1) + (double)dec.cache_bytes_fixed());
                    const double bound = bytes / (bw_hi * 1e9);
                    printf("| %s | %s | %s | %zu | %s | %d | %d | %.3f | %.0f | %.1f | %.3f | %.0f%% | %.0f | %.3f | %.0f%%%s | %.3f | %.0f%% | %.3f | %.0f%% |\n",
                           shape.c_str(), v.c_str(), CUDA_PRECISION_NAMES[precision], dec.cache_bytes_per_token(), pre.c_str(), L, B, 1000 * dt,
                           B / dt, bytes / 1e6, 1000 * bound, 100 * bound / dt, calls, 1000 * launch_floor,
                           100 * std::max(bound, launch_floor) / dt, launch_floor > bound ? " (launches)" : "", 1000 * dt_graph,
                           100 * bound / dt_graph, 1000 * dt_argmax, 100 * bound / dt_argmax);
                }
            double r = 0, cp = 0;
            cuda_bandwidth_gbs(probe, &r, &cp);
            launch_us = std::min(launch_us, cuda_launch_us());
            bw_lo = std::min(bw_lo, r);
            bw_hi = std::max(bw_hi, r);
        });
    printf("\ndevice read bandwidth over the run: %.1f to %.1f GB/s (each row used the highest measured before it); one empty launch: %.2f us at best\n",
           bw_lo, bw_hi, launch_us);
}
#endif

int main(int argc, char** argv) {
    omp_polite_spin(argv);  // llmc/utils.h: spin-waiting threads that yield their cores to other programs
    setvbuf(stdout, nullptr, _IOLBF, 0);
    std::string shapes = "pythia-70m,gpt2-124m", variants = "mha,gqa,mqa,mla,kvsplice,mka,fmka", contexts = "512,2048,8192",
                batches = "1,8", prefills = "512,2048", press_ratios = "0.5,0.75,0.9", press_contexts = "2048";
    std::string device = "cpu", precision = "bf16";
    int steps = 3;
    std::vector<Flag> flags = {
        {"-d", "--device", F_STR, &device, "cpu, or cuda: the decode table on the GPU (no pressed-cache table there)"},
        {"", "--precision", F_STR, &precision, "with -d cuda: bf16 (weights, activations and caches) or fp32"},
        {"", "--shapes", F_STR, &shapes, "presets whose shapes are benchmarked (gpt2-124m runs with RoPE: its learned table ends at 1024)"},
        {"", "--variants", F_STR, &variants, "attention variants (gqa: H/4 KV heads; mla, kvsplice: d_c 128, kvsplice r 64)"},
        {"", "--contexts", F_STR, &contexts, "decode contexts (tokens already in each sequence's cache)"},
        {"", "--batches", F_STR, &batches, "decode batch sizes (sequences decoded together)"},
        {"", "--prefills", F_STR, &prefills, "prompt lengths for the prefill measurement (batch 1)"},
        {"", "--press-ratios", F_STR, &press_ratios, "compression ratios of the pressed-cache table (none: no such table)"},
        {"", "--press-contexts", F_STR, &press_contexts, "prompt lengths of the pressed-cache table (each is really prefilled)"},
        {"", "--steps", F_INT, &steps, "timed decode steps per point (after one warm-up step); the median is printed"},
    };
    std::set<std::string> given = parse_flags(argc, argv, flags, "./dev/bench_decode", "./dev/bench_decode --shapes pythia-70m --contexts 8192");
    require_int("--steps", steps, 1, 1000);
    std::vector<int> ctxs = parse_int_list(contexts, "--contexts"), bs = parse_int_list(batches, "--batches"), pfs = parse_int_list(prefills, "--prefills");
    const int prec = parse_precision(precision);
    if (device == "cpu" && given.count("--precision")) fail_hint("add -d cuda, or drop --precision (the CPU decodes in fp32)", "--precision applies with -d cuda");
    if (device != "cpu") {
        if (device != "cuda") fail_hint("use -d cpu or -d cuda", "unknown device '%s'", device.c_str());
        if ((given.count("--press-ratios") && press_ratios != "none") || given.count("--press-contexts"))
            fail_hint("drop --press-ratios / --press-contexts, or use -d cpu", "the pressed-cache table runs on the CPU only (the presses read the CPU caches)");
        std::string desc, name;  // every model the table will run: a device there, and one that runs it
        for (const Variant& v : variants_of(shapes, variants)) choose_backend("cuda", v.cfg, &desc, &name);
#ifdef KVGPT_CUDA_BACKEND
        printf("device: %s\n", name.c_str());
        bench_device(shapes, variants, ctxs, bs, pfs, steps, prec);
#endif
        return 0;
    }
    double copy = stream_copy_gbs(), bw = stream_read_gbs(), fma = fma_peak_gflops() / 2;  // G multiply-adds per s
    printf("memory bandwidth (%d threads): read %.1f GB/s (a sum over 1 GiB), STREAM copy %.1f GB/s (read + write)\n",
           omp_get_max_threads(), bw, copy);
    printf("fp32 FMA peak (%d threads): %.1f G multiply-adds/s (%.1f GFLOP/s)\n", omp_get_max_threads(), fma, 2 * fma);
    printf("each row's bound: its bytes at the read bandwidth measured just before and just after it, the higher of the two;\n"
           "its FMA floor: the multiply-adds the kernels were asked for at the highest FMA peak measured so far (again after\n"
           "every row); roofline: the larger of the two\n\n");
    printf("| shape | variant | KV floats/token | prefill tokens/s (prompt: speed) | context | batch | decode ms/step | tokens/s | MB read/step (weights + cache) | read GB/s before, after | bound ms | %% of bound | G multiply-adds/step | FMA floor ms | %% of roofline | attention ms (mean) | linear ms (mean) |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    double bw_lo = bw, bw_hi = bw, fma_lo = fma;
    std::vector<std::string> pack_notes;
    each_model(shapes, variants, 2, [&](const std::string& shape, const std::string& v, GPT& m, Rng& rng) {
            {  // one token first, outside the table: decoding packs the linear weights on first use
               // (llmc/matmul.h), a one-time setup like loading them, printed after the table
                const double t = first_token(m);
                char b[160];
                snprintf(b, sizeof b, "%s %s: %.0f ms for %.0f MB", shape.c_str(), v.c_str(), 1000 * t, m.dec_packs.floats() * 4e-6);
                pack_notes.push_back(b);
            }
            const std::string pre = prefill_speeds(m, pfs, m.cfg.vocab_size, rng);
            for (int L : ctxs)
                for (int B : bs) {
                    const double bw_before = stream_read_gbs(3);
                    m.decode_begin(B, L + steps + 2);
                    for (int s = 0; s < B; s++) m.decode_pretend_held(s, L);  // the cache "holds" L tokens per sequence
                    std::vector<int> tok(B), seq(B);
                    for (int s = 0; s < B; s++) { tok[s] = (int)rng.below(m.cfg.vocab_size); seq[s] = s; }
                    m.decode(tok.data(), seq.data(), B);  // warm-up
                    std::vector<double> ts;
                    g_prof.reset();
                    for (int k = 0; k < steps; k++) {
                        double t0 = now_seconds();
                        m.decode(tok.data(), seq.data(), B);
                        ts.push_back(now_seconds() - t0);
                    }
                    const double bw_after = stream_read_gbs(3), bw_row = std::max(bw_before, bw_after);
                    bw_lo = std::min({bw_lo, bw_before, bw_after});
                    bw_hi = std::max({bw_hi, bw_before, bw_after});
                    std::sort(ts.begin(), ts.end());
                    double dt = ts[ts.size() / 2];
                    size_t fixed = m.kv_cache_floats_fixed();
                    double bytes = 4.0 * ((double)m.decode_weight_floats() + (double)B * ((double)m.kv_cache_floats_per_token() * (L + 1) + fixed));
                    double bound = bytes / (bw_row * 1e9);
                    const double fma_now = fma_peak_gflops() / 2;  // the other tenants share the FMA units too
                    fma_lo = std::min(fma_lo, fma_now);
                    fma = std::max(fma, fma_now);
                    const double macs = g_prof.total_macs() / steps, fma_floor = macs / (fma * 1e9);
                    printf("| %s | %s | %zu | %s | %d | %d | %.2f | %.0f | %.1f | %.1f, %.1f | %.2f | %.0f%% | %.3f | %.2f | %.0f%%%s | %.2f | %.2f |\n",
                           shape.c_str(), v.c_str(), m.kv_cache_floats_per_token(), pre.c_str(), L, B, 1000 * dt, B / dt, bytes / 1e6, bw_before,
                           bw_after, 1000 * bound, 100 * bound / dt, macs / 1e9, 1000 * fma_floor, 100 * std::max(bound, fma_floor) / dt,
                           fma_floor > bound ? " (FMA)" : "", 1000 * g_prof.seconds[PROF_ATTENTION] / steps,
                           1000 * (g_prof.seconds[PROF_MATMUL] + g_prof.seconds[PROF_CLASSIFIER]) / steps);
                }
        });
    printf("\nread bandwidth over the run: %.1f to %.1f GB/s; FMA peak %.1f to %.1f G multiply-adds/s (each row used the highest so far)\n",
           bw_lo, bw_hi, fma_lo, fma);
    printf("\npacking the weights for decoding (first decode step after loading; includes the first step itself):\n");
    for (const std::string& n : pack_notes) printf("- %s\n", n.c_str());
    if (press_ratios == "none") return 0;
    std::vector<double> ratios = {0.0};
    for (const std::string& r : split_list(press_ratios)) ratios.push_back(atof(r.c_str()));
    printf("\ndecode with a pressed cache (knorm; batch 1; the prompt really prefilled, the cache compressed and shrunk to what it keeps)\n\n");
    printf("| shape | variant | prompt | ratio | tokens held | KV MB held | decode ms/step | vs full cache |\n|---|---|---|---|---|---|---|---|\n");
    each_model(shapes, variants, 3, [&](const std::string& shape, const std::string& v, GPT& m, Rng& rng) {
            for (int L : parse_int_list(press_contexts, "--press-contexts")) {
                std::vector<int> tok(L), seq(L, 0);
                for (int& t : tok) t = (int)rng.below(m.cfg.vocab_size);
                std::vector<char> none(L, 0);
                double full_ms = 0;
                for (double r : ratios) {
                    Press p;  // knorm: its scoring is cheap, and what is kept does not change the work
                    m.decode_begin(1, L);
                    m.decode(tok.data(), seq.data(), L, (const bool*)none.data());
                    const int n_kept = press_n_kept(L, r, 0);
                    if (n_kept < L) m.decode_compress(p, 0, n_kept);
                    m.decode_reserve(m.decode_held(0) + steps + 2);
                    int s0 = 0, t1 = tok[L - 1];
                    m.decode(&t1, &s0, 1);  // warm-up
                    std::vector<double> ts;
                    for (int k = 0; k < steps; k++) {
                        double t0 = now_seconds();
                        m.decode(&t1, &s0, 1);
                        ts.push_back(now_seconds() - t0);
                    }
                    std::sort(ts.begin(), ts.end());
                    double ms = 1000 * ts[ts.size() / 2];
                    if (r == 0.0) full_ms = ms;
                    printf("| %s | %s | %d | %.2f | %d | %.2f | %.3f | %.2fx |\n", shape.c_str(), v.c_str(), L, r, m.decode_held(0),
                           m.kv_cache_bytes() / 1e6, ms, ms / full_ms);
                }
            }
        });
    return 0;
}
