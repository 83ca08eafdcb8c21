// eval_gpt.cu: kvgpt's evaluator. Loads a checkpoint, refuses to score a model that sees the
// future (the leak guard), then measures:
//   perplexity by protocol   (a) disjoint windows of T, (b) HF-style strided sliding window,
//                            (c) lm-eval WikiText: rolling per document, word / byte PPL, bits/byte
//   position-wise PPL        buckets of positions within the window (default 0-16-32-64-96-T)
//   length extrapolation     PPL at 1x, 2x, 4x, 8x the training length
//   reversal curse           answer log-likelihood, trained vs held-out facts, forward and reversed
//                            (Berglund et al.; data/eval_sets.py reversal documents the recipe)
//   Q/K statistics           max / mean / std of q and k after the position encoding, per layer,
//                            per RoPE frequency band (NeoX pairing) and pass-through dims
//   KV-cache memory          per token and for --ctx tokens, measured from the cache buffers
//   KV-cache presses         (--press, attention/press.h) token eviction measured so the compression
//                            reaches the scored tokens: prefill -> compress -> continue, decode-time
//                            eviction at a budget, and the earlier work's naive protocol (the pitfall)
// and writes one JSON file per run (scripts/eval_report.py puts several side by side). A section
// that fails (a missing eval set, a length the model cannot run) is reported as an error in the
// JSON and the others still run; the JSON is written whole at the end (temp file + rename), so it
// is always valid, and the exit code is 1 when any section failed.
//
//   ./eval_gpt -c model.ckpt.best
//   ./eval_gpt -c model.ckpt.best --protocols disjoint,positions --json out.json
//   ./eval_gpt -c model.ckpt.best --press snapkv,knorm --ratio 0.5,0.9 --press-data data/eval/gpt-neox-20b/book_eval
#include <omp.h>
#include <fstream>
#include <functional>
#include <new>
#include <sstream>
#include "llmc/backend.h"
#include "llmc/checkpoint.h"
#include "llmc/cli.h"
#include "llmc/dataloader.h"
#include "llmc/eval.h"
#include "llmc/runinfo.h"

struct EvalArgs {
    std::string ckpt, val_glob, wikitext, reversal, json, protocols = "disjoint,sliding,wikitext,positions,extrap,reversal,qk,kv";
    std::string buckets = "0,16,32,64,96", extrap = "1,2,4,8", device = "auto", precision = "fp32";
    std::string press, ratios = "0.25,0.5,0.75,0.9", budgets, press_protocols = "prefill,decode", press_data;
    int T = 0, B = 8, window = 0, stride = 0, ctx = 0, max_windows = 0, max_tokens = 0, wiki_docs = 0;
    int press_P = 0, press_N = 0, stream_len = 0, press_batch = 8, slack = 0, press_samples = 0;
    uint64_t press_seed = 1;
    bool test_only_leak = false;
};

static std::vector<int> read_all_tokens(const std::string& glob_pattern, const GPTConfig& cfg, int T, int* eos = nullptr) {
    DataLoader d;
    d.open(glob_pattern, 1, T, cfg.vocab_size, cfg.tokenizer_id, 1);
    std::vector<int> t;
    for (const Shard& s : d.shards)
        for (long i = 0; i < s.n_tokens; i++) t.push_back(s.token(i));
    if (eos) *eos = d.eos_id;
    return t;
}

static std::vector<WikiDoc> read_wiki_index(const std::string& path, long n_tokens) {
    const char* hint = "make the eval sets with `make data` (or data/eval_sets.py), or pass --wikitext";
    require_regular_file(path.c_str(), "WikiText index", hint);
    std::ifstream f(path);
    if (!f) fail_hint(hint, "cannot open '%s'", path.c_str());
    std::vector<WikiDoc> docs;
    std::string line;
    std::getline(f, line);  // header
    while (std::getline(f, line)) {
        WikiDoc d;
        std::istringstream ss(line);
        if (!(ss >> d.offset >> d.n_tokens >> d.words >> d.bytes) || d.offset < 0 || d.n_tokens < 1 || d.words < 1 || d.bytes < 1 ||
            d.offset + d.n_tokens > n_tokens)
            fail_hint(hint, "%s: malformed or out-of-range line '%s'", path.c_str(), line.c_str());
        std::getline(ss, d.title);
        docs.push_back(d);
    }
    return docs;
}

static std::vector<ReversalFact> read_reversal(const std::string& path, int V) {
    const char* hint = "make the set with `python3 data/eval_sets.py reversal --tokenizer TOK`, or pass --reversal";
    require_regular_file(path.c_str(), "reversal set", hint);
    std::ifstream f(path);
    if (!f) fail_hint(hint, "cannot open '%s'", path.c_str());
    std::vector<ReversalFact> out;
    std::string line;
    std::getline(f, line);
    if (line.rfind("split\trelation\tforward_prompt_ids", 0) != 0)
        fail_hint(hint, "%s is not a reversal set of this version (header '%s'): the earlier format compared two templates' PPL",
                  path.c_str(), line.c_str());
    auto ids = [&](const std::string& s) {
        std::vector<int> v;
        std::istringstream ss(s);
        long x;
        while (ss >> x) {
            if (x < 0 || x >= V) fail_hint(hint, "%s: token id %ld is outside the model's vocab %d", path.c_str(), x, V);
            v.push_back((int)x);
        }
        if (v.empty()) fail_hint(hint, "%s: an empty token list in '%s'", path.c_str(), line.c_str());
        return v;
    };
    while (std::getline(f, line)) {
        std::vector<std::string> col;
        std::istringstream ss(line);
        std::string c;
        while (std::getline(ss, c, '\t')) col.push_back(c);
        if (col.size() != 6 || (col[0] != "trained" && col[0] != "heldout")) fail_hint(hint, "%s: malformed line '%s'", path.c_str(), line.c_str());
        out.push_back({col[0] == "trained", col[1], ids(col[2]), ids(col[3]), ids(col[4]), ids(col[5])});
    }
    return out;
}

static const char* PROTOCOLS[] = {"disjoint", "sliding", "wikitext", "positions", "extrap", "reversal", "qk", "kv", "press"};
static bool wants(const EvalArgs& a, const char* p) { return ("," + a.protocols + ",").find(std::string(",") + p + ",") != std::string::npos; }

// a JSON number; NaN and Inf (not JSON) become null
static std::string jnum(double x) {
    if (!std::isfinite(x)) return "null";
    char b[40];
    snprintf(b, sizeof b, "%.6f", x);
    return b;
}
static std::string fmt(const char* f, ...) {
    char b[4096];
    va_list ap;
    va_start(ap, f);
    vsnprintf(b, sizeof b, f, ap);
    va_end(ap);
    return b;
}

static int eval_main(int argc, char** argv) {
    setvbuf(stdout, nullptr, _IOLBF, 0);
    EvalArgs a;
    std::vector<Flag> flags = {
        {"-c", "--ckpt", F_STR, &a.ckpt, "checkpoint to evaluate (train_gpt -o writes FILE and FILE.best)"},
        {"-j", "--val", F_STR, &a.val_glob, "validation shards glob (default: the checkpoint's, else the bundled Tiny Shakespeare val shard)"},
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
        {"", "--ctx", F_INT, &a.ctx, "context length for the KV-cache memory figure (default 2048, or the learned table's length)"},
        {"", "--protocols", F_STR, &a.protocols, "which measurements: disjoint,sliding,wikitext,positions,extrap,reversal,qk,kv,press (default: all but press; only press when --press is given)"},
        {"", "--press", F_STR, &a.press, "KV-cache presses to measure: a comma list of random,knorm,streaming,snapkv,tova,h2o,expected_attention,keydiff, all, or none (the baseline only)"},
        {"", "--ratio", F_STR, &a.ratios, "press compression ratios (the fraction of the cache removed), a comma list in [0, 1)"},
        {"", "--budget", F_STR, &a.budgets, "press token budgets (tokens kept), a comma list; instead of --ratio unless both are given"},
        {"", "--press-protocols", F_STR, &a.press_protocols, "prefill (compress a prefilled context, score what follows), decode (evict while streaming), naive (the pitfall)"},
        {"", "--press-data", F_STR, &a.press_data, "eval sets for the presses: comma list of PREFIX (PREFIX.bin + its document index PREFIX.tsv) or of shards (a .bin file or glob: one document); default data/eval/<tokenizer>/wikitext_eval"},
        {"", "--press-context", F_INT, &a.press_P, "prefill protocol: context tokens P (default 3T/4)"},
        {"", "--press-continue", F_INT, &a.press_N, "prefill protocol: scored continuation tokens N (default T/4)"},
        {"", "--stream-len", F_INT, &a.stream_len, "decode protocol: tokens per stream S (default T)"},
        {"", "--press-batch", F_INT, &a.press_batch, "decode protocol: streams decoded together"},
        {"", "--slack", F_INT, &a.slack, "decode protocol: tokens past the budget before the press runs again (0: budget/16)"},
        {"", "--press-samples", F_INT, &a.press_samples, "cap on samples (prefill) or streams (decode) per protocol, evenly spread over the sets (0: all)"},
        {"", "--press-seed", F_U64, &a.press_seed, "seed of the random press"},
        {"", "--json", F_STR, &a.json, "JSON output (default <ckpt>.eval.json)"},
        {"-d", "--device", F_STR, &a.device, "auto, cpu or cuda: the forward-only protocols (leak guard, disjoint, positions, sliding, wikitext, extrap, reversal) run there; qk, kv and the presses read the CPU model's caches and activations and always run on the CPU"},
        {"", "--precision", F_STR, &a.precision, "CUDA: fp32 (the CPU's numbers within rounding) or bf16"},
        {"", "--test-only-leak", F_BOOL, &a.test_only_leak, "TEST ONLY: make attention see one future token (the leak guard must refuse)"},
    };
    std::set<std::string> given = parse_flags(argc, argv, flags, "./eval_gpt", "./eval_gpt -c model.ckpt.best");
    if (a.ckpt.empty()) fail_hint("pass -c FILE (train_gpt -o writes FILE and FILE.best)", "no checkpoint given");
    require_int("-b", a.B, 1, 1 << 16);
    require_int("-t", a.T, 0, 1 << 22);
    require_int("--window", a.window, 0, 1 << 22);
    require_int("--stride", a.stride, 0, 1 << 22);
    require_int("--max-windows", a.max_windows, 0, INT32_MAX);
    require_int("--max-tokens", a.max_tokens, 0, INT32_MAX);
    require_int("--wiki-docs", a.wiki_docs, 0, INT32_MAX);
    require_int("--ctx", a.ctx, 0, 1 << 24);
    require_int("--press-context", a.press_P, 0, 1 << 22);
    require_int("--press-continue", a.press_N, 0, 1 << 22);
    require_int("--stream-len", a.stream_len, 0, 1 << 22);
    require_int("--press-batch", a.press_batch, 1, 4096);
    require_int("--slack", a.slack, 0, 1 << 22);
    require_int("--press-samples", a.press_samples, 0, INT32_MAX);
    if (given.count("--press") && !given.count("--protocols")) a.protocols = "press";
    if (wants(a, "press") && a.press.empty()) a.press = "all";
    // the presses, ratios and budgets: checked before anything is loaded
    std::vector<int> press_kinds;  // -1: the baseline (no press)
    std::vector<double> press_ratios;
    std::vector<int> press_budgets;
    if (wants(a, "press")) {
        for (const std::string& n : split_list(a.press)) {
            if (n == "all") { for (int k = 0; k < PRESS_COUNT; k++) press_kinds.push_back(k); continue; }
            if (n == "none") continue;
            int k = press_kind_from_name(n);
            if (k < 0) fail_hint(("--press takes a comma list of " + press_names_list() + ", all or none").c_str(), "unknown press '%s'", n.c_str());
            press_kinds.push_back(k);
        }
        if (!given.count("--budget") || given.count("--ratio"))
            for (const std::string& x : split_list(a.ratios)) {
                char* end = nullptr;
                double r = strtod(x.c_str(), &end);
                if (end == x.c_str() || *end || !std::isfinite(r)) fail_hint("e.g. --ratio 0.25,0.5", "--ratio '%s' is not a number", x.c_str());
                if (r < 0.0 || r >= 1.0)
                    fail_hint("a compression ratio is the fraction of the cache removed: 0 <= ratio < 1 (0.5 keeps half)", "--ratio %g is out of range [0, 1)", r);
                press_ratios.push_back(r);
            }
        if (!a.budgets.empty())
            for (int b : parse_int_list(a.budgets, "--budget")) {
                if (b < 1) fail_hint("a budget is the number of tokens each layer keeps: at least 1", "--budget %d is out of range", b);
                press_budgets.push_back(b);
            }
        for (const std::string& p : split_list(a.press_protocols))
            if (p != "prefill" && p != "decode" && p != "naive")
                fail_hint("--press-protocols takes a comma list of prefill, decode, naive", "unknown press protocol '%s'", p.c_str());
    }
    for (const std::string& p : split_list(a.protocols)) {
        bool known = false;
        for (const char* q : PROTOCOLS) known |= p == q;
        if (!known)
            fail_hint("--protocols takes a comma-separated subset of disjoint,sliding,wikitext,positions,extrap,reversal,qk,kv,press",
                      "unknown protocol '%s'", p.c_str());
    }
    CheckpointHeader h = checkpoint_read_header(a.ckpt.c_str());
    GPTConfig cfg = h.config;
    GPT model(cfg);
    int64_t ckpt_step = 0;  // the parameters only: the evaluator never needs the AdamW moments
    if (!checkpoint_read_params(a.ckpt.c_str(), model, model.params, &ckpt_step))
        fail_hint("the file is truncated; use another checkpoint", "cannot read the parameters of '%s'", a.ckpt.c_str());
    if (a.test_only_leak) g_test_only_future_leak = 1;
    int T = a.T ? a.T : (h.train_T > 0 ? h.train_T : 128);
    config_validate(&cfg, T);
    // --test-only-leak makes the CPU core see the future; the device kernels have no such switch
    std::string backend_desc, device_name;
    Backend backend = choose_backend(a.test_only_leak && a.device == "auto" ? "cpu" : a.device.c_str(), cfg, &backend_desc, &device_name);
    if (a.test_only_leak && backend == BACKEND_CUDA) fail_hint("drop -d cuda", "--test-only-leak works on the CPU backend only");
    int precision = parse_precision(a.precision);
    EvalRunner ev(model, backend, precision, a.B, T);
    std::string tok = tokenizer_name(cfg.tokenizer_id);
    bool val_from_ckpt = a.val_glob.empty() && h.val_data[0];
    if (a.val_glob.empty()) a.val_glob = h.val_data[0] ? std::string(h.val_data) : "data/tinyshakespeare/" + tok + "/val_*.bin";
    if (a.wikitext.empty()) a.wikitext = "data/eval/" + tok + "/wikitext_eval";
    if (a.reversal.empty()) a.reversal = "data/eval/" + tok + "/reversal.tsv";
    if (a.press_data.empty()) a.press_data = "data/eval/" + tok + "/wikitext_eval";
    if (a.json.empty()) a.json = a.ckpt + ".eval.json";
    if (same_file(a.json, a.ckpt)) fail_hint("pass another --json path", "--json names the checkpoint '%s'", a.ckpt.c_str());
    {  // rerunning part of an evaluation never overwrites a fuller result: when the JSON there holds
       // a measurement this run does not make, this run's goes beside it (FILE.2.json, FILE.3.json, ...)
        std::ifstream old(a.json);
        std::string text((std::istreambuf_iterator<char>(old)), std::istreambuf_iterator<char>());
        std::string lost;
        const char* keys[][2] = {{"disjoint", "disjoint"}, {"positions", "positions"}, {"sliding", "sliding"}, {"wikitext", "wikitext"},
                                 {"extrap", "extrapolation"}, {"reversal", "reversal"}, {"qk", "qk"}, {"kv", "kv_cache"}, {"press", "press"}};
        for (auto& k : keys)
            if (!wants(a, k[0]) && text.find(fmt("\n\"%s\": ", k[1])) != std::string::npos) lost += (lost.empty() ? "" : ",") + std::string(k[0]);
        if (!lost.empty()) {
            std::string base = a.json.size() > 5 && a.json.compare(a.json.size() - 5, 5, ".json") == 0 ? a.json.substr(0, a.json.size() - 5) : a.json;
            std::string next;
            for (int i = 2;; i++)
                if (access((next = fmt("%s.%d.json", base.c_str(), i)).c_str(), F_OK) != 0) break;
            printf("note: %s holds %s, which this run does not measure: writing %s instead (nothing is overwritten)\n", a.json.c_str(),
                   lost.c_str(), next.c_str());
            a.json = next;
        }
    }
    if (!dir_writable(a.json)) fail_hint("create the directory, or pick a writable --json path", "--json '%s' cannot be written", a.json.c_str());
    int W = a.window ? a.window : T, S = a.stride ? a.stride : std::max(1, T / 2);
    if (S < 1 || S > W) fail_hint("use 1 <= --stride <= --window", "stride %d does not fit window %d", S, W);
    std::vector<int> edges = parse_int_list(a.buckets, "--buckets"), mult = parse_int_list(a.extrap, "--extrap");
    if (edges.empty() || edges[0] < 0) fail_hint("e.g. --buckets 0,16,32,64,96", "--buckets must start at a position >= 0");
    for (size_t i = 1; i < edges.size(); i++)
        if (edges[i] <= edges[i - 1]) fail_hint("e.g. --buckets 0,16,32,64,96", "--buckets must increase");
    for (int m : mult)
        if (m < 1 || m > 1024) fail_hint("e.g. --extrap 1,2,4,8", "--extrap multiple %d must be in [1, 1024]", m);
    int eos = tokenizer_eos(cfg.tokenizer_id);
    int ctx = a.ctx ? a.ctx : (cfg.pos == POS_LEARNED ? std::min(2048, cfg.max_seq_len) : 2048);

    printf("checkpoint %s: %s, %s/%s, %zu parameters, step %ld, trained at T=%d\n", a.ckpt.c_str(), cfg.preset, ATTN_NAMES[cfg.attn],
           POS_NAMES[cfg.pos], model.num_parameters(), (long)h.step, h.train_T);
    if (backend == BACKEND_CUDA)
        printf("backend: %s (%s) for the forward-only protocols; cpu (fp32, OpenMP, %d threads) for qk, kv and the presses; validation data %s%s\n",
               backend_desc.c_str(), a.precision.c_str(), omp_get_max_threads(), a.val_glob.c_str(), val_from_ckpt ? " (the checkpoint's)" : "");
    else
        printf("backend: cpu (fp32, OpenMP), %d threads; validation data %s%s\n", omp_get_max_threads(), a.val_glob.c_str(),
               val_from_ckpt ? " (the checkpoint's)" : "");

    std::string js = "{\n" + fmt("\"checkpoint\": %s, \"preset\": %s, \"attn\": \"%s\", \"pos\": \"%s\", \"params\": %zu, \"step\": %ld, \"train_T\": %d, \"eval_T\": %d,\n",
                                 json_escape(a.ckpt).c_str(), json_escape(cfg.preset).c_str(), ATTN_NAMES[cfg.attn], POS_NAMES[cfg.pos],
                                 model.num_parameters(), (long)h.step, h.train_T, T);
    js += fmt("\"val_data\": %s, \"eos_id\": %d, \"kv_elems_per_token_layer\": %ld, \"kv_mha_per_layer\": %ld", json_escape(a.val_glob).c_str(), eos,
              model.kv_elems_per_token_layer(), 2L * cfg.n_head * cfg.head_dim);
    // what was measured on and what was capped, beside every figure (scripts/eval_report.py prints them)
    js += fmt(",\n\"data\": {\"val\": %s, \"wikitext\": %s, \"reversal\": %s, \"press\": %s, \"train\": %s}", json_escape(a.val_glob).c_str(),
              json_escape(a.wikitext).c_str(), json_escape(a.reversal).c_str(), json_escape(a.press_data).c_str(), json_escape(h.train_data).c_str());
    js += fmt(",\n\"caps\": {\"max_windows\": %d, \"max_tokens\": %d, \"wiki_docs\": %d, \"press_samples\": %d}", a.max_windows, a.max_tokens,
              a.wiki_docs, a.press_samples);
    js += fmt(",\n\"backend\": %s", json_escape(backend == BACKEND_CUDA ? backend_desc + " (" + a.precision + ") for the forward-only protocols, cpu for qk, kv, presses" : std::string("cpu (fp32)")).c_str());
    js += ",\n\"config\": " + config_json(cfg) + ",\n\"run\": " + run_metadata_json(argc, argv, flags, "");
    auto write_json = [&]() {
        std::string tmp = a.json + ".tmp";
        FILE* f = fopenCheck(tmp.c_str(), "w");
        fwriteCheck(js.data(), 1, js.size(), f);
        fwriteCheck("\n}\n", 1, 3, f);
        fcloseCheck(f);
        if (rename(tmp.c_str(), a.json.c_str()) != 0) fail("cannot rename '%s' to '%s': %s", tmp.c_str(), a.json.c_str(), strerror(errno));
    };

    // the leak guard comes first: no perplexity is printed for a model that sees the future. It
    // runs past two of the attention core's 64-key blocks (and as far as learned positions go).
    int guard_T = std::min(256, cfg.pos == POS_LEARNED ? cfg.max_seq_len : 256);
    std::string why;
    // on the device it guards the device's numbers, and the CPU model's (qk, kv, presses) too
    bool causal = ev.run([&](auto& m) { return leak_check(m, guard_T, 12345, &why); });
    if (causal && backend == BACKEND_CUDA) causal = leak_check(model, guard_T, 12345, &why);
    if (!causal) {
        js += fmt(", \"leak_guard\": \"failed\", \"leak_guard_T\": %d, \"error\": %s", guard_T, json_escape("leak guard: " + why).c_str());
        write_json();
        fail_hint("this model sees the future: its perplexities would be meaningless; fix the attention mask",
                  "leak guard: %s", why.c_str());
    }
    printf("leak guard: passed at T=%d (later tokens never change earlier logits)\n", guard_T);
    js += fmt(", \"leak_guard\": \"passed\", \"leak_guard_T\": %d", guard_T);

    std::vector<int> val;
    auto need_val = [&]() {
        if (val.empty()) {
            int val_eos = -1;
            val = read_all_tokens(a.val_glob, cfg, T, &val_eos);
            if (cfg.tokenizer_id == TOK_UNKNOWN) eos = val_eos;
        }
    };
    // one measurement: its failure is printed and recorded, and the next one runs
    int failed_sections = 0;
    auto section = [&](const char* name, const std::function<void()>& body) {
        size_t mark = js.size();
        g_fail_throws++;
        try {
            body();
        } catch (const KvgptError& e) {
            js.resize(mark);
            js += fmt(",\n\"%s\": {\"error\": %s}", name, json_escape(e.message + (e.hint.empty() ? "" : " (HINT: " + e.hint + ")")).c_str());
            fprintf(stderr, "Error: section %s: %s\n", name, e.message.c_str());
            if (!e.hint.empty()) fprintf(stderr, "HINT: %s\n", e.hint.c_str());
            failed_sections++;
        }
        g_fail_throws--;
    };

    if (wants(a, "disjoint") || wants(a, "positions")) section(wants(a, "disjoint") ? "disjoint" : "positions", [&] {
        need_val();
        std::vector<NLL> per_pos;
        NLL r = ev.run([&](auto& m) { return ppl_disjoint(m, val, T, a.B, a.max_windows, &per_pos); });
        if (r.n == 0) fail_hint("lower -t, or pass a larger validation set with -j", "the validation data (%zu tokens) holds no window of T+1 = %d", val.size(), T + 1);
        printf("\n[a] disjoint windows of %d: PPL %.3f (loss %.4f over %ld tokens)\n", T, r.ppl(), r.mean(), r.n);
        js += fmt(",\n\"disjoint\": {\"T\": %d, \"ppl\": %s, \"loss\": %s, \"tokens\": %ld, \"max_windows\": %d}", T, jnum(r.ppl()).c_str(),
                  jnum(r.mean()).c_str(), r.n, a.max_windows);
        if (wants(a, "positions")) {
            std::vector<NLL> b = bucketize(per_pos, edges);
            printf("\nposition-wise PPL (window %d)\n| positions | tokens | PPL |\n|---|---|---|\n", T);
            js += ",\n\"positions\": [";
            for (size_t i = 0; i < b.size(); i++) {
                int lo = edges[i], hi = i + 1 < edges.size() ? edges[i + 1] : T;
                if (lo >= T) break;
                printf("| %d-%d | %ld | %.3f |\n", lo, std::min(hi, T), b[i].n, b[i].ppl());
                js += fmt("%s{\"from\": %d, \"to\": %d, \"tokens\": %ld, \"ppl\": %s}", i ? ", " : "", lo, std::min(hi, T), b[i].n, jnum(b[i].ppl()).c_str());
            }
            js += "]";
        }
    });
    if (wants(a, "sliding")) section("sliding", [&] {
        need_val();
        if ((long)val.size() < 2) fail("the validation data holds no target");
        NLL r = ev.run([&](auto& m) { return ppl_sliding(m, val, W, S, a.max_tokens); });
        printf("\n[b] sliding window %d, stride %d: PPL %.3f (loss %.4f over %ld tokens)\n", W, S, r.ppl(), r.mean(), r.n);
        js += fmt(",\n\"sliding\": {\"window\": %d, \"stride\": %d, \"ppl\": %s, \"loss\": %s, \"tokens\": %ld, \"max_tokens\": %d}", W, S,
                  jnum(r.ppl()).c_str(), jnum(r.mean()).c_str(), r.n, a.max_tokens);
    });
    if (wants(a, "wikitext")) section("wikitext", [&] {
        int wiki_eos = -1;
        std::vector<int> wt = read_all_tokens(a.wikitext + ".bin", cfg, 1, &wiki_eos);
        std::vector<WikiDoc> docs = read_wiki_index(a.wikitext + ".tsv", (long)wt.size());
        if (cfg.tokenizer_id != TOK_UNKNOWN && wiki_eos != eos)
            fail_hint("re-create the eval set with data/eval_sets.py", "%s.bin was made with end-of-text id %d; the %s tokenizer's is %d",
                      a.wikitext.c_str(), wiki_eos, tok.c_str(), eos);
        WikiResult r = ev.run([&](auto& m) { return ppl_wikitext(m, wt, docs, T, wiki_eos, a.wiki_docs); });
        printf("\n[c] lm-eval WikiText (rolling windows of %d, %s docs, end-of-text %d as first context): word PPL %.3f, byte PPL %.4f, bits/byte %.4f, token PPL %.3f\n", T,
               a.wiki_docs ? std::to_string(a.wiki_docs).c_str() : "all", wiki_eos, r.word_ppl(), r.byte_ppl(), r.bits_per_byte(), r.tokens.ppl());
        js += fmt(",\n\"wikitext\": {\"window\": %d, \"docs\": %zu, \"docs_total\": %zu, \"eos_id\": %d, \"word_ppl\": %s, \"byte_ppl\": %s, \"bits_per_byte\": %s, \"token_ppl\": %s, \"words\": %ld, \"bytes\": %ld, \"tokens\": %ld}",
                  T, a.wiki_docs ? std::min<size_t>(a.wiki_docs, docs.size()) : docs.size(), docs.size(), wiki_eos, jnum(r.word_ppl()).c_str(),
                  jnum(r.byte_ppl()).c_str(), jnum(r.bits_per_byte()).c_str(), jnum(r.tokens.ppl()).c_str(), r.words, r.bytes, r.tokens.n);
    });
    if (wants(a, "extrap")) section("extrapolation", [&] {
        need_val();
        int T0 = h.train_T ? h.train_T : T;
        printf("\nlength extrapolation (disjoint windows, trained at T=%d)\n| eval length | PPL | tokens |\n|---|---|---|\n", T0);
        js += ",\n\"extrapolation\": [";
        bool first = true;
        for (int m : mult) {
            long Ll = (long)T0 * m;
            std::string skip;
            if (cfg.pos == POS_LEARNED && Ll > cfg.max_seq_len) skip = "learned positions end at " + std::to_string(cfg.max_seq_len);
            else if ((long)val.size() < Ll + 1) skip = "val set too short";
            else if (Ll > (1 << 22)) skip = "too long";
            if (!skip.empty()) {
                printf("| %ld | n/a (%s) | |\n", Ll, skip.c_str());
                js += fmt("%s{\"length\": %ld, \"ppl\": null, \"skipped\": %s}", first ? "" : ", ", Ll, json_escape(skip).c_str());
                first = false;
                continue;
            }
            int L = (int)Ll;
            // the same number of tokens at every length: --max-windows counts windows of T
            long wins = a.max_windows ? std::max(1L, (long)a.max_windows * T / L) : 0;
            NLL r = ev.run([&](auto& m) { return ppl_disjoint(m, val, L, 1, wins, nullptr); });
            printf("| %d | %.3f | %ld |\n", L, r.ppl(), r.n);
            js += fmt("%s{\"length\": %d, \"ppl\": %s, \"tokens\": %ld}", first ? "" : ", ", L, jnum(r.ppl()).c_str(), r.n);
            first = false;
        }
        js += "]";
    });
    if (wants(a, "reversal")) section("reversal", [&] {
        if (eos < 0) need_val();  // an unknown vocabulary: the end-of-text id of its shards
        std::vector<ReversalFact> facts = read_reversal(a.reversal, cfg.vocab_size);
        for (const ReversalFact& f : facts) {
            size_t n = 1 + std::max(f.fwd_prompt.size() + f.fwd_answer.size(), f.rev_prompt.size() + f.rev_answer.size());
            if (cfg.pos == POS_LEARNED && (long)n > cfg.max_seq_len) fail("a reversal prompt (%zu tokens) is longer than the learned position table", n);
        }
        ReversalResult r = ev.run([&](auto& m) { return reversal_eval(m, facts, eos); });
        printf("\nreversal curse (Berglund et al.): log-likelihood of the correct answer, and its margin over the other answers of the\n"
               "same relation in the same half (entities seen as often); accuracy: the correct answer beats them all\n");
        printf("| direction | trained: LL | trained: margin | trained: accuracy | held-out: margin | held-out: accuracy | gain (margin) |\n"
               "|---|---|---|---|---|---|---|\n");
        const ReversalScore* rows[2][2] = {{&r.fwd[1], &r.fwd[0]}, {&r.rev[1], &r.rev[0]}};
        for (int dir = 0; dir < 2; dir++)
            printf("| %s | %.3f | %+.3f | %.0f%% | %+.3f | %.0f%% | %+.3f |\n", dir ? "reversed" : "forward (as trained)", rows[dir][0]->ll,
                   rows[dir][0]->margin, 100 * rows[dir][0]->accuracy, rows[dir][1]->margin, 100 * rows[dir][1]->accuracy,
                   dir ? r.rev_gain() : r.fwd_gain());
        printf("(%d trained, %d held-out facts. The curse: a large forward gain with a reversed gain near 0. The trained facts' forward\n"
               " sentences must be in the training data: data/eval_sets.py reversal, scripts/reversal_recipe.sh)\n", r.fwd[1].n, r.fwd[0].n);
        auto score = [&](const ReversalScore& x) {
            return fmt("{\"facts\": %d, \"ll\": %s, \"margin\": %s, \"accuracy\": %s}", x.n, jnum(x.ll).c_str(), jnum(x.margin).c_str(), jnum(x.accuracy).c_str());
        };
        js += fmt(",\n\"reversal\": {\"set\": %s, \"eos_id\": %d, \"forward\": {\"trained\": %s, \"heldout\": %s, \"gain\": %s}, "
                  "\"reversed\": {\"trained\": %s, \"heldout\": %s, \"gain\": %s}}",
                  json_escape(a.reversal).c_str(), eos, score(r.fwd[1]).c_str(), score(r.fwd[0]).c_str(), jnum(r.fwd_gain()).c_str(),
                  score(r.rev[1]).c_str(), score(r.rev[0]).c_str(), jnum(r.rev_gain()).c_str());
    });
    if (wants(a, "qk")) section("qk", [&] {
        need_val();
        int n = std::min<int>(T, (int)val.size() - 1);
        if (n < 1) fail("the validation data is empty");
        model.forward(val.data(), nullptr, 1, n);
        printf("\nQ/K statistics after the position encoding (%d tokens)\n", n);
        printf("| layer.view | max|x| | mean|x| | std | high-band mean|x| | low-band mean|x| | pass-through mean|x| | low/high |\n|---|---|---|---|---|---|---|---|\n");
        js += ",\n\"qk\": [";
        bool first = true;
        for (int l = 0; l < cfg.n_layer; l++)
            for (const QKView& v : model.layers[l].attn->qk_views()) {
                QKStats s = qk_stats(v, 1, n, "L" + std::to_string(l) + "." + v.name);
                double hi = s.band[BAND_HIGH].mean_abs(), lo = s.band[BAND_LOW].mean_abs();
                auto cell = [](double x) { return std::isfinite(x) ? fmt("%.3f", x) : std::string("n/a"); };  // an empty band: n/a, as the report
                printf("| %s | %.3f | %.3f | %.3f | %s | %s | %s | %s |\n", s.layer_view.c_str(), s.all.max_abs, s.all.mean_abs(), s.all.std(),
                       cell(hi).c_str(), cell(lo).c_str(), cell(s.band[BAND_PASS].mean_abs()).c_str(), cell(lo / hi).c_str());
                js += fmt("%s{\"name\": \"%s\", \"rot\": %d, \"max_abs\": %s, \"mean_abs\": %s, \"std\": %s, \"high_mean_abs\": %s, \"low_mean_abs\": %s, \"pass_mean_abs\": %s, \"dim_max\": [",
                          first ? "" : ", ", s.layer_view.c_str(), v.rot, jnum(s.all.max_abs).c_str(), jnum(s.all.mean_abs()).c_str(), jnum(s.all.std()).c_str(),
                          jnum(hi).c_str(), jnum(lo).c_str(), jnum(s.band[BAND_PASS].mean_abs()).c_str());
                for (size_t d = 0; d < s.dim_max.size(); d++) js += (d ? ", " : "") + jnum(s.dim_max[d]);
                js += "]}";
                first = false;
            }
        js += "]";
    });
    if (wants(a, "press")) section("press", [&] {
        // the documents of every set, each a (pointer, length) into its token array
        std::vector<std::vector<int>> set_tokens;
        std::vector<PressDoc> docs;
        std::vector<std::string> sets = split_list(a.press_data);
        std::string sets_js;
        long doc_tokens = 0;
        set_tokens.reserve(sets.size());
        for (const std::string& pre : sets) {
            // PREFIX: PREFIX.bin with its document index PREFIX.tsv; a .bin file or glob: one document
            const bool whole = pre.size() > 4 && pre.compare(pre.size() - 4, 4, ".bin") == 0;
            set_tokens.push_back(read_all_tokens(whole ? pre : pre + ".bin", cfg, 1));
            std::vector<WikiDoc> idx = whole ? std::vector<WikiDoc>{{0, (long)set_tokens.back().size(), 0, 0, pre}}
                                             : read_wiki_index(pre + ".tsv", (long)set_tokens.back().size());
            for (const WikiDoc& d : idx) docs.push_back({set_tokens.back().data() + d.offset, d.n_tokens});
            for (const WikiDoc& d : idx) doc_tokens += d.n_tokens;
            sets_js += fmt("%s{\"prefix\": %s, \"documents\": %zu, \"tokens\": %zu}", sets_js.empty() ? "" : ", ", json_escape(pre).c_str(), idx.size(),
                           set_tokens.back().size());
        }
        model.decode_begin(1, 1);  // the cache's bytes per token, measured from its buffers
        const int P = a.press_P ? a.press_P : std::max(1, 3 * T / 4), N = a.press_N ? a.press_N : std::max(1, T / 4), S = a.stream_len ? a.stream_len : T;
        if (cfg.pos == POS_LEARNED && (P + N > cfg.max_seq_len || S > cfg.max_seq_len))
            fail_hint("lower --press-context / --press-continue / --stream-len", "a piece of %d tokens is past the learned position table (%d)",
                      std::max(P + N, S), cfg.max_seq_len);
        printf("\nKV-cache presses on %s (%zu documents, %ld tokens); KV cache %zu B/token fp32 measured from the buffers\n", a.press_data.c_str(),
               docs.size(), doc_tokens, 4 * model.kv_cache_floats_per_token());
        js += fmt(",\n\"press\": {\"sets\": [%s], \"documents\": %zu, \"kv_bytes_per_token\": %zu, \"max_samples\": %d, \"seed\": %llu", sets_js.c_str(),
                  docs.size(), 4 * model.kv_cache_floats_per_token(), a.press_samples, (unsigned long long)a.press_seed);
        struct Setting { const Press* press; double ratio; int budget; };
        std::vector<Press> presses;
        presses.reserve(press_kinds.size());
        for (int k : press_kinds) { Press p; p.kind = k; p.seed = a.press_seed; presses.push_back(p); }
        for (const std::string& proto : split_list(a.press_protocols)) {
            std::vector<Setting> runs = {{nullptr, 0.0, 0}};
            for (const Press& p : presses) {
                for (double r : press_ratios) runs.push_back({&p, r, 0});
                for (int b : press_budgets) runs.push_back({&p, 0.0, b});
            }
            const bool pf = proto != "decode";
            printf("\n[%s] %s\n", proto.c_str(),
                   proto == "prefill" ? fmt("prefill %d tokens, compress, score the next %d decoded against the compressed cache", P, N).c_str()
                   : proto == "decode" ? fmt("streams of %d tokens decoded token by token (%d at once), the cache held at budget + slack", S, a.press_batch).c_str()
                                       : fmt("NAIVE: score the %d prefilled tokens themselves, compress afterwards: equal to the baseline by construction", P).c_str());
            printf("| press | ratio | budget | PPL | vs baseline | tokens held | of | KV bytes (%s) | B held per context token | ms/token |\n|---|---|---|---|---|---|---|---|---|---|\n",
                   pf ? "after compression" : "allocated: budget + slack");
            js += fmt(",\n\"%s\": {\"P\": %d, \"N\": %d, \"S\": %d, \"batch\": %d, \"slack\": %d, \"runs\": [", proto.c_str(), P, N, S, a.press_batch, a.slack);
            double base_ppl = NAN;
            for (size_t i = 0; i < runs.size(); i++) {
                const Setting& u = runs[i];
                PressResult r = pf ? press_prefill_eval(model, docs, P, N, u.press, u.ratio, u.budget, a.press_samples, proto == "naive")
                                   : press_decode_eval(model, docs, S, a.press_batch, u.press, u.ratio, u.budget, a.slack, a.press_samples);
                if (i == 0) base_ppl = r.nll.ppl();
                const char* name = u.press ? PRESS_NAMES[u.press->kind] : "none (full cache)";
                const double per_ctx = r.bytes_per_context_token;
                printf("| %s | %s | %s | %.3f | %+.2f%% | %.1f | %.1f | %zu | %.0f | %s |\n", name, u.budget ? "-" : fmt("%.2f", u.ratio).c_str(),
                       u.budget ? std::to_string(u.budget).c_str() : "-", r.nll.ppl(), 100.0 * (r.nll.ppl() / base_ppl - 1.0), r.held_tokens,
                       r.context_tokens, r.kv_bytes, per_ctx, std::isfinite(r.ms_per_token()) ? fmt("%.3f", r.ms_per_token()).c_str() : "-");
                js += fmt("%s\n  {\"press\": %s, \"ratio\": %s, \"budget\": %s, \"ppl\": %s, \"loss\": %s, \"tokens\": %ld, \"samples\": %ld, \"held_tokens\": %s, "
                          "\"context_tokens\": %s, \"kv_bytes\": %zu, \"kv_bytes_full\": %zu, \"kv_bytes_per_context_token\": %s, \"ms_per_token\": %s, \"compress_ms\": %s}",
                          i ? "," : "", u.press ? json_escape(PRESS_NAMES[u.press->kind]).c_str() : "null", u.press && !u.budget ? jnum(u.ratio).c_str() : "null",
                          u.budget ? std::to_string(u.budget).c_str() : "null", jnum(r.nll.ppl()).c_str(), jnum(r.nll.mean()).c_str(), r.nll.n, r.samples,
                          jnum(r.held_tokens).c_str(), jnum(r.context_tokens).c_str(), r.kv_bytes, r.kv_bytes_full, jnum(per_ctx).c_str(),
                          jnum(r.ms_per_token()).c_str(), jnum(r.compress_ms).c_str());
            }
            js += "]}";
        }
        js += "}";
    });
    if (wants(a, "kv")) section("kv_cache", [&] {
        if (cfg.pos == POS_LEARNED && ctx > cfg.max_seq_len)
            fail_hint("lower --ctx", "--ctx %d is past the learned position table (%d)", ctx, cfg.max_seq_len);
        KVMemory k = kv_memory(model, ctx);
        printf("\nKV cache (measured from the cache buffers): %zu floats/token (all layers) = %zu B fp32, %zu B bf16; %d tokens: %.2f MiB fp32\n",
               k.floats_per_token, 4 * k.floats_per_token, 2 * k.floats_per_token, ctx, k.bytes_fp32(ctx) / 1048576.0);
        js += fmt(",\n\"kv_cache\": {\"floats_per_token\": %zu, \"fixed_floats\": %zu, \"ctx\": %d, \"bytes_fp32\": %.0f, \"bytes_bf16\": %.0f}",
                  k.floats_per_token, k.fixed_floats, ctx, k.bytes_fp32(ctx), k.bytes_fp32(ctx) / 2);
    });
    js += fmt(",\n\"failed_sections\": %d", failed_sections);
    write_json();
    printf("\nwrote %s%s\n", a.json.c_str(), failed_sections ? fmt(" (%d section(s) failed: see their \"error\")", failed_sections).c_str() : "");
    return failed_sections ? 1 : 0;
}

int main(int argc, char** argv) {
    omp_polite_spin(argv);  // llmc/utils.h: spin-waiting threads that yield their cores to other programs
    try {
        return eval_main(argc, argv);
    } catch (const std::bad_alloc&) {
        fail_hint("use a shorter -t, fewer windows per forward (-b), or a machine with more memory", "out of memory (a host allocation failed)");
    }
}
