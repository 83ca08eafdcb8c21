// eval_gpt.cu: kvgpt's evaluator. Loads a checkpoint, refuses to score a model that sees the
// future (the leak guard), then measures:
//   perplexity by protocol   (a) disjoint windows of T, (b) HF-style strided sliding window,
//                            (c) lm-eval WikiText: rolling per document, word / byte PPL, bits/byte
//   position-wise PPL        buckets of positions within the window (default 0-16-32-64-96-T)
//   length extrapolation     PPL at 1x, 2x, 4x, 8x the training length
//   reversal curse           forward vs backward sentence PPL, their ratio and gap
//   Q/K statistics           max / mean / std of q and k after the position encoding, per layer,
//                            per RoPE frequency band (NeoX pairing) and pass-through dims
//   KV-cache memory          per token and for --ctx tokens, measured from the cache buffers
// and writes one JSON file per run (scripts/eval_report.py puts several side by side).
//
//   ./eval_gpt -c model.ckpt.best
//   ./eval_gpt -c model.ckpt.best --protocols disjoint,positions --json out.json
#include <omp.h>
#include <fstream>
#include <sstream>
#include "llmc/backend.h"
#include "llmc/checkpoint.h"
#include "llmc/cli.h"
#include "llmc/dataloader.h"
#include "llmc/eval.h"

struct EvalArgs {
    std::string ckpt, val_glob, wikitext, reversal, json, protocols = "disjoint,sliding,wikitext,positions,extrap,reversal,qk,kv";
    std::string buckets = "0,16,32,64,96", extrap = "1,2,4,8", device = "auto";
    int T = 0, B = 8, window = 0, stride = 0, ctx = 2048, max_windows = 0, max_tokens = 0, wiki_docs = 0;
    bool test_only_leak = false;
};

static std::vector<int> read_all_tokens(const std::string& glob_pattern, const GPTConfig& cfg, int T) {
    DataLoader d;
    d.open(glob_pattern, 1, T, cfg.vocab_size, cfg.tokenizer_id, 1);
    std::vector<int> t;
    for (const Shard& s : d.shards)
        for (long i = 0; i < s.n_tokens; i++) t.push_back(s.token(i));
    return t;
}

static std::vector<WikiDoc> read_wiki_index(const std::string& path) {
    std::ifstream f(path);
    if (!f) fail_hint("make the eval sets with `make data` (or data/eval_sets.py), or pass --wikitext", "cannot open '%s'", path.c_str());
    std::vector<WikiDoc> docs;
    std::string line;
    std::getline(f, line);  // header
    while (std::getline(f, line)) {
        WikiDoc d;
        std::istringstream ss(line);
        if (!(ss >> d.offset >> d.n_tokens >> d.words >> d.bytes)) fail("%s: malformed line '%s'", path.c_str(), line.c_str());
        std::getline(ss, d.title);
        docs.push_back(d);
    }
    return docs;
}

static std::vector<std::pair<std::vector<int>, std::vector<int>>> read_reversal(const std::string& path, int V) {
    std::ifstream f(path);
    if (!f) fail_hint("make the eval sets with `make data` (or data/eval_sets.py), or pass --reversal", "cannot open '%s'", path.c_str());
    std::vector<std::pair<std::vector<int>, std::vector<int>>> out;
    std::string line;
    std::getline(f, line);
    auto ids = [&](const std::string& s) {
        std::vector<int> v;
        std::istringstream ss(s);
        int x;
        while (ss >> x) {
            if (x < 0 || x >= V) fail("%s: token id %d is outside the model's vocab %d", path.c_str(), x, V);
            v.push_back(x);
        }
        return v;
    };
    while (std::getline(f, line)) {
        size_t a = line.find('\t'), b = line.find('\t', a + 1);
        if (a == std::string::npos || b == std::string::npos) fail("%s: malformed line '%s'", path.c_str(), line.c_str());
        out.push_back({ids(line.substr(a + 1, b - a - 1)), ids(line.substr(b + 1))});
    }
    return out;
}

static bool wants(const EvalArgs& a, const char* p) { return ("," + a.protocols + ",").find(std::string(",") + p + ",") != std::string::npos; }

int main(int argc, char** argv) {
    setvbuf(stdout, nullptr, _IOLBF, 0);
    EvalArgs a;
    std::vector<Flag> flags = {
        {"-c", "--ckpt", F_STR, &a.ckpt, "checkpoint to evaluate (train_gpt -o writes FILE and FILE.best)"},
        {"-j", "--val", F_STR, &a.val_glob, "validation shards glob (default: the bundled Tiny Shakespeare val shard)"},
        {"-t", "--seq-len", F_INT, &a.T, "evaluation length T (default: the training length)"},
        {"-b", "--batch", F_INT, &a.B, "windows per forward for the disjoint protocol"},
        {"", "--window", F_INT, &a.window, "sliding window length (default T)"},
        {"", "--stride", F_INT, &a.stride, "sliding window stride (default T/2)"},
        {"", "--max-windows", F_INT, &a.max_windows, "cap on disjoint windows per measurement (0: all)"},
        {"", "--max-tokens", F_INT, &a.max_tokens, "cap on tokens for the sliding window (0: all)"},
        {"", "--wikitext", F_STR, &a.wikitext, "WikiText eval set prefix (default data/eval/<tokenizer>/wikitext_eval)"},
        {"", "--wiki-docs", F_INT, &a.wiki_docs, "evaluate only the first N WikiText documents (0: all)"},
        {"", "--reversal", F_STR, &a.reversal, "reversal-curse set (default data/eval/<tokenizer>/reversal.tsv)"},
        {"", "--buckets", F_STR, &a.buckets, "position bucket edges"},
        {"", "--extrap", F_STR, &a.extrap, "evaluation lengths as multiples of T"},
        {"", "--ctx", F_INT, &a.ctx, "context length for the KV-cache memory figure"},
        {"", "--protocols", F_STR, &a.protocols, "which measurements: disjoint,sliding,wikitext,positions,extrap,reversal,qk,kv"},
        {"", "--json", F_STR, &a.json, "JSON output (default <ckpt>.eval.json)"},
        {"-d", "--device", F_STR, &a.device, "auto or cpu (evaluation runs on the CPU backend)"},
        {"", "--test-only-leak", F_BOOL, &a.test_only_leak, "TEST ONLY: make attention see one future token (the leak guard must refuse)"},
    };
    parse_flags(argc, argv, flags, "./eval_gpt", "./eval_gpt -c model.ckpt.best");
    if (a.ckpt.empty()) fail_hint("pass -c FILE (train_gpt -o FILE writes FILE and FILE.best)", "no checkpoint given");
    choose_eval_backend(a.device.c_str());
    CheckpointHeader h = checkpoint_read_header(a.ckpt.c_str());
    GPTConfig cfg = h.config;
    GPT model(cfg);
    int64_t ckpt_step = 0;  // the parameters only: the evaluator never needs the AdamW moments
    if (!checkpoint_read_params(a.ckpt.c_str(), model, model.params, &ckpt_step))
        fail_hint("the file is truncated; use another checkpoint", "cannot read the parameters of '%s'", a.ckpt.c_str());
    if (a.test_only_leak) g_test_only_future_leak = 1;
    int T = a.T ? a.T : (h.train_T > 0 ? h.train_T : 128);
    config_validate(&cfg, T);
    std::string tok = tokenizer_name(cfg.tokenizer_id);
    if (a.val_glob.empty()) a.val_glob = "data/tinyshakespeare/" + tok + "/val_*.bin";
    if (a.wikitext.empty()) a.wikitext = "data/eval/" + tok + "/wikitext_eval";
    if (a.reversal.empty()) a.reversal = "data/eval/" + tok + "/reversal.tsv";
    if (a.json.empty()) a.json = a.ckpt + ".eval.json";
    int W = a.window ? a.window : T, S = a.stride ? a.stride : std::max(1, T / 2);
    if (S < 1 || S > W) fail_hint("use 1 <= --stride <= --window", "stride %d does not fit window %d", S, W);
    std::vector<int> edges = parse_int_list(a.buckets, "--buckets"), mult = parse_int_list(a.extrap, "--extrap");
    for (size_t i = 1; i < edges.size(); i++)
        if (edges[i] <= edges[i - 1]) fail_hint("e.g. --buckets 0,16,32,64,96", "--buckets must increase");

    printf("checkpoint %s: %s, %s/%s, %zu parameters, step %ld, trained at T=%d\n", a.ckpt.c_str(), cfg.preset, ATTN_NAMES[cfg.attn],
           POS_NAMES[cfg.pos], model.num_parameters(), (long)h.step, h.train_T);
    printf("backend: cpu (fp32, OpenMP), %d threads\n", omp_get_max_threads());

    // the leak guard comes first: no perplexity is printed for a model that sees the future
    std::string why;
    if (!leak_check(model, std::min(T, 64), 12345, &why))
        fail_hint("this model sees the future: its perplexities would be meaningless; fix the attention mask",
                  "leak guard: %s", why.c_str());
    printf("leak guard: passed (later tokens never change earlier logits)\n");

    FILE* js = fopenCheck(a.json.c_str(), "w");
    fprintf(js, "{\n\"checkpoint\": \"%s\", \"preset\": \"%s\", \"attn\": \"%s\", \"pos\": \"%s\", \"params\": %zu, \"step\": %ld, \"train_T\": %d, \"eval_T\": %d,\n",
            a.ckpt.c_str(), cfg.preset, ATTN_NAMES[cfg.attn], POS_NAMES[cfg.pos], model.num_parameters(), (long)h.step, h.train_T, T);
    fprintf(js, "\"kv_elems_per_token_layer\": %ld, \"kv_mha_per_layer\": %ld, \"leak_guard\": \"passed\"", model.kv_elems_per_token_layer(),
            2L * cfg.n_head * cfg.head_dim);
    std::vector<int> val;
    auto need_val = [&]() {
        if (val.empty()) val = read_all_tokens(a.val_glob, cfg, T);
    };

    if (wants(a, "disjoint") || wants(a, "positions")) {
        need_val();
        std::vector<NLL> per_pos;
        NLL r = ppl_disjoint(model, val, T, a.B, a.max_windows, &per_pos);
        printf("\n[a] disjoint windows of %d: PPL %.3f (loss %.4f over %ld tokens)\n", T, r.ppl(), r.mean(), r.n);
        fprintf(js, ",\n\"disjoint\": {\"T\": %d, \"ppl\": %.6f, \"loss\": %.6f, \"tokens\": %ld}", T, r.ppl(), r.mean(), r.n);
        if (wants(a, "positions")) {
            std::vector<NLL> b = bucketize(per_pos, edges);
            printf("\nposition-wise PPL (window %d)\n| positions | tokens | PPL |\n|---|---|---|\n", T);
            fprintf(js, ",\n\"positions\": [");
            for (size_t i = 0; i < b.size(); i++) {
                int lo = edges[i], hi = i + 1 < edges.size() ? edges[i + 1] : T;
                if (lo >= T) break;
                printf("| %d-%d | %ld | %.3f |\n", lo, std::min(hi, T), b[i].n, b[i].ppl());
                fprintf(js, "%s{\"from\": %d, \"to\": %d, \"tokens\": %ld, \"ppl\": %.6f}", i ? ", " : "", lo, std::min(hi, T), b[i].n, b[i].ppl());
            }
            fprintf(js, "]");
        }
    }
    if (wants(a, "sliding")) {
        need_val();
        NLL r = ppl_sliding(model, val, W, S, a.max_tokens);
        printf("\n[b] sliding window %d, stride %d: PPL %.3f (loss %.4f over %ld tokens)\n", W, S, r.ppl(), r.mean(), r.n);
        fprintf(js, ",\n\"sliding\": {\"window\": %d, \"stride\": %d, \"ppl\": %.6f, \"loss\": %.6f, \"tokens\": %ld}", W, S, r.ppl(), r.mean(), r.n);
    }
    if (wants(a, "wikitext")) {
        std::vector<WikiDoc> docs = read_wiki_index(a.wikitext + ".tsv");
        std::vector<int> wt = read_all_tokens(a.wikitext + ".bin", cfg, 1);
        WikiResult r = ppl_wikitext(model, wt, docs, T, 0, a.wiki_docs);
        printf("\n[c] lm-eval WikiText (rolling windows of %d, %s docs): word PPL %.3f, byte PPL %.4f, bits/byte %.4f, token PPL %.3f\n", T,
               a.wiki_docs ? std::to_string(a.wiki_docs).c_str() : "all", r.word_ppl(), r.byte_ppl(), r.bits_per_byte(), r.tokens.ppl());
        fprintf(js, ",\n\"wikitext\": {\"window\": %d, \"docs\": %zu, \"word_ppl\": %.6f, \"byte_ppl\": %.6f, \"bits_per_byte\": %.6f, \"token_ppl\": %.6f, \"words\": %ld, \"bytes\": %ld, \"tokens\": %ld}",
                T, a.wiki_docs ? std::min<size_t>(a.wiki_docs, docs.size()) : docs.size(), r.word_ppl(), r.byte_ppl(), r.bits_per_byte(), r.tokens.ppl(), r.words, r.bytes, r.tokens.n);
    }
    if (wants(a, "extrap")) {
        need_val();
        printf("\nlength extrapolation (disjoint windows, trained at T=%d)\n| eval length | PPL | tokens |\n|---|---|---|\n", h.train_T ? h.train_T : T);
        fprintf(js, ",\n\"extrapolation\": [");
        bool first = true;
        for (int m : mult) {
            int L = (h.train_T ? h.train_T : T) * m;
            if (cfg.pos == POS_LEARNED && L > cfg.max_seq_len) {
                printf("| %d | n/a (learned positions end at %d) | |\n", L, cfg.max_seq_len);
                continue;
            }
            if ((long)val.size() < L + 1) { printf("| %d | n/a (val set too short) | |\n", L); continue; }
            // the same number of tokens at every length: --max-windows counts windows of T
            long wins = a.max_windows ? std::max(1L, (long)a.max_windows * T / L) : 0;
            NLL r = ppl_disjoint(model, val, L, 1, wins, nullptr);
            printf("| %d | %.3f | %ld |\n", L, r.ppl(), r.n);
            fprintf(js, "%s{\"length\": %d, \"ppl\": %.6f, \"tokens\": %ld}", first ? "" : ", ", L, r.ppl(), r.n);
            first = false;
        }
        fprintf(js, "]");
    }
    if (wants(a, "reversal")) {
        auto facts = read_reversal(a.reversal, cfg.vocab_size);
        ReversalResult r = reversal_eval(model, facts, 0);
        printf("\nreversal curse (%d facts): forward PPL %.2f, backward PPL %.2f, ratio %.3f, gap %.2f\n", r.n, r.fwd_ppl, r.bwd_ppl,
               r.bwd_ppl / r.fwd_ppl, r.bwd_ppl - r.fwd_ppl);
        fprintf(js, ",\n\"reversal\": {\"facts\": %d, \"forward_ppl\": %.6f, \"backward_ppl\": %.6f, \"ratio\": %.6f, \"gap\": %.6f, \"forward_loss\": %.6f, \"backward_loss\": %.6f}",
                r.n, r.fwd_ppl, r.bwd_ppl, r.bwd_ppl / r.fwd_ppl, r.bwd_ppl - r.fwd_ppl, r.fwd_nll, r.bwd_nll);
    }
    if (wants(a, "qk")) {
        need_val();
        int n = std::min<int>(T, (int)val.size() - 1);
        model.forward(val.data(), nullptr, 1, n);
        printf("\nQ/K statistics after the position encoding (%d tokens)\n", n);
        printf("| layer.view | max|x| | mean|x| | std | high-band mean|x| | low-band mean|x| | pass-through mean|x| | low/high |\n|---|---|---|---|---|---|---|---|\n");
        fprintf(js, ",\n\"qk\": [");
        bool first = true;
        for (int l = 0; l < cfg.n_layer; l++)
            for (const QKView& v : model.layers[l].attn->qk_views()) {
                QKStats s = qk_stats(v, 1, n, "L" + std::to_string(l) + "." + v.name);
                double hi = s.band[BAND_HIGH].mean_abs(), lo = s.band[BAND_LOW].mean_abs();
                printf("| %s | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f |\n", s.layer_view.c_str(), s.all.max_abs, s.all.mean_abs(), s.all.std(), hi, lo,
                       s.band[BAND_PASS].mean_abs(), lo / hi);
                auto num = [](double x) { return std::isnan(x) ? std::string("null") : std::to_string(x); };  // empty band: null
                fprintf(js, "%s{\"name\": \"%s\", \"rot\": %d, \"max_abs\": %.6f, \"mean_abs\": %.6f, \"std\": %.6f, \"high_mean_abs\": %s, \"low_mean_abs\": %s, \"pass_mean_abs\": %s, \"dim_max\": [",
                        first ? "" : ", ", s.layer_view.c_str(), v.rot, s.all.max_abs, s.all.mean_abs(), s.all.std(), num(hi).c_str(),
                        num(lo).c_str(), num(s.band[BAND_PASS].mean_abs()).c_str());
                for (size_t d = 0; d < s.dim_max.size(); d++) fprintf(js, "%s%.5f", d ? ", " : "", s.dim_max[d]);
                fprintf(js, "]}");
                first = false;
            }
        fprintf(js, "]");
    }
    if (wants(a, "kv")) {
        KVMemory k = kv_memory(model, a.ctx);
        printf("\nKV cache (measured from the cache buffers): %zu floats/token (all layers) = %zu B fp32, %zu B bf16; %d tokens: %.2f MiB fp32\n",
               k.floats_per_token, 4 * k.floats_per_token, 2 * k.floats_per_token, a.ctx, k.bytes_fp32(a.ctx) / 1048576.0);
        fprintf(js, ",\n\"kv_cache\": {\"floats_per_token\": %zu, \"fixed_floats\": %zu, \"ctx\": %d, \"bytes_fp32\": %.0f, \"bytes_bf16\": %.0f}",
                k.floats_per_token, k.fixed_floats, a.ctx, k.bytes_fp32(a.ctx), k.bytes_fp32(a.ctx) / 2);
    }
    fprintf(js, "\n}\n");
    fcloseCheck(js);
    printf("\nwrote %s\n", a.json.c_str());
    return 0;
}
