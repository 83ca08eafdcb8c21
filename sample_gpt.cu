// sample_gpt.cu: kvgpt's generator. Loads a checkpoint, prefills the prompt into the KV cache in
// one batched call, then decodes token by token (several samples together as one batch),
// streaming the text as it is generated; at the end it prints what prefill and decode cost and
// the KV-cache bytes held, measured from the cache buffers, next to MHA of the same shape.
//
//   make sample_gpt && ./sample_gpt -c model.ckpt.best --prompt "ROMEO:" -n 200
//   ./sample_gpt -c model.ckpt.best --prompt-file p.txt --num-samples 4 --top-p 0.9 --seed 7
//   ./sample_gpt -c model.ckpt.best --prompt-ids 0,510,1722 --greedy
//
// With --press NAME --budget N the cache is held at N tokens (+ --slack) while generating:
// whenever a sample's cache is full, the press (attention/press.h) evicts it back to N tokens, so
// a long generation runs in bounded memory (the decode-time eviction of ./eval_gpt --press).
//   ./sample_gpt -c model.ckpt.best --prompt "ROMEO:" -n 2000 --press snapkv --budget 256
//
// Sampling follows Hugging Face's generate(): temperature, then top-k, then top-p (nucleus);
// --greedy (or --temperature 0) takes the argmax. Prompts are tokenized by llmc/tokenizer.h,
// which gives the ids data/tokenizer.py gives. Runs on the CPU backend, or with -d cuda (-d auto
// when a GPU is there and no press is asked for) with the KV caches on the GPU: the decode
// kernels of llmc/cuda_backend.cu (split-K over the cache; MLA in the absorbed form).
#include <omp.h>
#include <new>
#include "llmc/backend.h"
#include "llmc/checkpoint.h"
#include "llmc/model.h"
#include "llmc/cli.h"
#include "llmc/sample.h"
#include "llmc/tokenizer.h"

struct SampleArgs {
    std::string ckpt, prompt, prompt_file, prompt_ids, tokenizer_dir, tokenizer, device = "auto", press, precision = "bf16";
    int n = 256, num_samples = 1, ctx = 0, budget = 0, slack = 0;
    uint64_t seed = 1;
    bool stop_at_eos = false, print_ids = false;
    SampleConfig sc;
};

// the caches generation runs on: the CPU GPT's, or the device's (CudaDecoder, llmc/cuda_model.h)
struct Generator {
    GPT& m;
#ifdef KVGPT_CUDA_BACKEND
    std::unique_ptr<CudaDecoder> gpu;
#endif
    bool on_gpu() const {
#ifdef KVGPT_CUDA_BACKEND
        return gpu != nullptr;
#else
        return false;
#endif
    }
    void begin(int n_seq, int ctx) {
#ifdef KVGPT_CUDA_BACKEND
        if (gpu) return gpu->decode_begin(n_seq, ctx);
#endif
        m.decode_begin(n_seq, ctx);
    }
    const float* decode(const int* tokens, const int* seq, int n, const bool* want = nullptr) {
#ifdef KVGPT_CUDA_BACKEND
        if (gpu) return gpu->decode(tokens, seq, n, want);
#endif
        return m.decode(tokens, seq, n, want);
    }
    // greedy decoding: each wanted row's most likely token into ids (on the device only the ids
    // come back to the host, not the rows of logits: 200 KB a row at a 50k vocab)
    void decode_greedy(const int* tokens, const int* seq, int n, const bool* want, int* ids) {
#ifdef KVGPT_CUDA_BACKEND
        if (gpu) {
            gpu->decode(tokens, seq, n, want, ids);
            return;
        }
#endif
        const float* lg = m.decode(tokens, seq, n, want);
        for (int i = 0, k = 0; i < n; i++)
            if (!want || want[i]) {
                ids[k] = argmax_token(lg + (size_t)k * m.cfg.padded_vocab_size, m.cfg.vocab_size);
                k++;
            }
    }
    int held(int s) {
#ifdef KVGPT_CUDA_BACKEND
        if (gpu) return gpu->decode_held(s);
#endif
        return m.decode_held(s);
    }
    // bytes of the caches per held token (every layer) and per sequence, from the buffers
    double bytes_per_token() {
#ifdef KVGPT_CUDA_BACKEND
        if (gpu) return (double)gpu->cache_bytes_per_token();
#endif
        return 4.0 * m.kv_cache_floats_per_token();
    }
    double bytes_fixed() {
#ifdef KVGPT_CUDA_BACKEND
        if (gpu) return (double)gpu->cache_bytes_fixed();
#endif
        return 4.0 * m.kv_cache_floats_fixed();
    }
};

static int sample_main(int argc, char** argv) {
    setvbuf(stdout, nullptr, _IOFBF, 1 << 16);
    SampleArgs a;
    a.sc.temperature = 0.8f;
    a.sc.top_k = 50;
    std::vector<Flag> flags = {
        {"-c", "--ckpt", F_STR, &a.ckpt, "checkpoint (train_gpt -o FILE writes FILE and FILE.best)"},
        {"", "--prompt", F_STR, &a.prompt, "prompt text (default: the end-of-text token alone, i.e. unconditional)"},
        {"", "--prompt-file", F_STR, &a.prompt_file, "read the prompt from this file"},
        {"", "--prompt-ids", F_STR, &a.prompt_ids, "the prompt as token ids, e.g. 0,510,1722"},
        {"-n", "--max-new-tokens", F_INT, &a.n, "tokens to generate per sample"},
        {"", "--temperature", F_FLOAT, &a.sc.temperature, "softmax temperature (0: greedy)"},
        {"", "--top-k", F_INT, &a.sc.top_k, "keep the k most likely tokens (0: off)"},
        {"", "--top-p", F_FLOAT, &a.sc.top_p, "nucleus: keep the most likely tokens up to this probability (1: off)"},
        {"", "--greedy", F_BOOL, &a.sc.greedy, "always take the most likely token"},
        {"-s", "--seed", F_U64, &a.seed, "seed of the draws"},
        {"", "--num-samples", F_INT, &a.num_samples, "samples, decoded together as one batch (1 streams; more print one after another)"},
        {"", "--stop-at-eos", F_BOOL, &a.stop_at_eos, "end a sample at the end-of-text token"},
        {"", "--print-ids", F_BOOL, &a.print_ids, "also print each sample's generated token ids (to stderr)"},
        {"", "--ctx", F_INT, &a.ctx, "KV-cache context to allocate (default: prompt + -n, at most a learned table's length)"},
        {"", "--press", F_STR, &a.press, "hold the cache at --budget tokens with this press while generating (random,knorm,streaming,snapkv,tova,h2o,expected_attention,keydiff)"},
        {"", "--budget", F_INT, &a.budget, "with --press: tokens each sample's cache keeps"},
        {"", "--slack", F_INT, &a.slack, "with --press: tokens past the budget before the press runs again (0: budget/16)"},
        {"", "--tokenizer", F_STR, &a.tokenizer, "expect this tokenizer (gpt-neox-20b or gpt2); a checkpoint of another is an error"},
        {"", "--tokenizer-dir", F_STR, &a.tokenizer_dir, "the vendored tokenizer files (default data/tokenizers)"},
        {"-d", "--device", F_STR, &a.device, "auto, cpu or cuda (the caches on the GPU; the presses run on the CPU: auto picks the CPU with --press)"},
        {"", "--precision", F_STR, &a.precision, "CUDA: bf16 (parameters, activations and cache) or fp32"},
    };
    std::set<std::string> given = parse_flags(argc, argv, flags, "./sample_gpt", "./sample_gpt -c model.ckpt.best --prompt \"ROMEO:\" -n 200");
    if (a.ckpt.empty()) fail_hint("pass -c FILE (train_gpt -o FILE writes FILE and FILE.best)", "no checkpoint given");
    require_int("-n", a.n, 0, 1 << 24);
    require_int("--num-samples", a.num_samples, 1, 4096);
    require_int("--ctx", a.ctx, 0, 1 << 24);
    require_int("--slack", a.slack, 0, 1 << 24);
    sample_config_check(a.sc);
    if (a.sc.greedy && (given.count("--top-k") || given.count("--top-p") || (given.count("--temperature") && a.sc.temperature != 0.0f)))
        fail_hint("drop --greedy to sample with them, or drop them", "--greedy takes the most likely token: --temperature, --top-k and --top-p do not apply");
    Press press;
    const bool pressed = !a.press.empty();
    if (pressed) {
        press.kind = press_kind_from_name(a.press);
        press.seed = a.seed;
        if (press.kind < 0) fail_hint(("--press takes one of " + press_names_list()).c_str(), "unknown press '%s'", a.press.c_str());
        if (!given.count("--budget")) fail_hint("e.g. --press snapkv --budget 256", "--press needs --budget (the tokens each sample's cache keeps)");
        require_int("--budget", a.budget, 1, 1 << 24);
        if (given.count("--ctx")) fail_hint("drop --ctx: with a press the cache holds --budget + --slack tokens", "--ctx and --press are alternatives");
    } else if (given.count("--budget") || given.count("--slack")) {
        fail_hint("add --press NAME (e.g. --press snapkv)", "--budget and --slack apply with --press");
    }
    int n_prompt_flags = given.count("--prompt") + given.count("--prompt-file") + given.count("--prompt-ids");
    if (n_prompt_flags > 1) fail_hint("give one of them", "--prompt, --prompt-file and --prompt-ids are alternatives");
    if (a.device == "cuda" && pressed) fail_hint("use -d cpu (or auto) with --press", "the presses run on the CPU backend's caches");
    const int precision = parse_precision(a.precision);

    CheckpointHeader h = checkpoint_read_header(a.ckpt.c_str());
    GPTConfig cfg = h.config;
    GPT model(cfg);
    int64_t step = 0;
    if (!checkpoint_read_params(a.ckpt.c_str(), model, model.params, &step)) fail("cannot read the parameters of '%s'", a.ckpt.c_str());
    if (!a.tokenizer.empty()) {
        int want = !strcmp(a.tokenizer.c_str(), "gpt-neox-20b") ? TOK_NEOX : !strcmp(a.tokenizer.c_str(), "gpt2") ? TOK_GPT2 : -1;
        if (want < 0) fail_hint("--tokenizer takes gpt-neox-20b or gpt2", "unknown tokenizer '%s'", a.tokenizer.c_str());
        if (want != cfg.tokenizer_id)
            fail_hint("use a checkpoint trained with that tokenizer, or drop --tokenizer", "checkpoint '%s' uses the %s tokenizer, not %s",
                      a.ckpt.c_str(), tokenizer_name(cfg.tokenizer_id), a.tokenizer.c_str());
    }
    Tokenizer tok;
    tok.load(cfg.tokenizer_id, find_tokenizer_dir(a.tokenizer_dir, argv[0]));
    if (tok.vocab_size > cfg.vocab_size)
        fail_hint("the checkpoint and the tokenizer do not belong together", "the %s tokenizer has %d ids, the model only %d", tokenizer_name(cfg.tokenizer_id),
                  tok.vocab_size, cfg.vocab_size);

    std::vector<int> prompt;
    if (given.count("--prompt-ids")) {
        prompt = parse_int_list(a.prompt_ids, "--prompt-ids");
        for (int id : prompt)
            if (id < 0 || id >= cfg.vocab_size) fail_hint("ids come from the model's tokenizer", "--prompt-ids: id %d is outside the vocab [0, %d)", id, cfg.vocab_size);
    } else {
        std::string text = a.prompt;
        if (given.count("--prompt-file")) text = read_file_text(a.prompt_file, "prompt file", "check the --prompt-file path");
        if (n_prompt_flags == 0) prompt = {tok.eos_id};
        else prompt = tok.encode(text);
        if (prompt.empty()) fail_hint("give a prompt with at least one token (no prompt at all starts from end-of-text)", "the prompt is empty");
    }
    const int P = (int)prompt.size(), N = a.num_samples;
    int ctx = a.ctx ? a.ctx : P + a.n;
    const int slack = pressed ? (a.slack ? a.slack : std::max(1, a.budget / 16)) : 0;
    if (pressed) ctx = a.budget + slack;  // slots: positions go on past it
    if (cfg.pos == POS_LEARNED) {
        if (P >= cfg.max_seq_len)
            fail_hint("use a shorter prompt", "the prompt has %d tokens; learned positions end at %d", P, cfg.max_seq_len);
        ctx = std::min(ctx, cfg.max_seq_len);
    }
    if (P > ctx && !pressed) fail_hint("raise --ctx or shorten the prompt", "the prompt (%d tokens) is longer than the context --ctx %d", P, ctx);
    // the backend: the presses need the CPU caches, so -d auto picks the CPU with one; notes go to
    // stderr (stdout is the text)
    std::string backend_desc, device_name;
    Backend backend = choose_backend(pressed && a.device == "auto" ? "cpu" : a.device.c_str(), cfg, &backend_desc, &device_name, stderr);
    Generator gen{model};
#ifdef KVGPT_CUDA_BACKEND
    if (backend == BACKEND_CUDA) gen.gpu.reset(new CudaDecoder(model, precision, ctx));
#else
    (void)backend;
#endif
    // A warm-up token in a one-slot cache, then the real start: the first decode call packs the
    // linear weights for few-row decoding (llmc/matmul.h; ~100-300 ms for pythia-70m), a cost
    // that would otherwise land in the prefill or the first decode step and make their tokens/s
    // wrong. decode_begin resets every cache and state and keeps the packs (the packs do not
    // depend on the batch or the context, so the warm-up's cache is the smallest there is).
    double warm_t0 = now_seconds();
    gen.begin(1, 1);
    {
        const int tok0 = prompt[0], seq0 = 0;
        gen.decode(&tok0, &seq0, 1);
    }
    gen.begin(N, ctx);
    const double warm_s = now_seconds() - warm_t0;
    if (pressed) model.decode_press(press);
    long compressions = 0;
    double compress_s = 0.0;
    auto make_room = [&](int b) {  // a full cache goes back to the budget
        if (!pressed || gen.held(b) < ctx) return;
        double c0 = now_seconds();
        model.decode_compress(press, b, a.budget);
        compress_s += now_seconds() - c0;
        compressions++;
    };

    fprintf(stderr, "%s: %s, %s/%s, %zu parameters, step %ld; prompt %d tokens, %d sample(s) of up to %d tokens, context %d; backend %s%s\n",
            a.ckpt.c_str(), cfg.preset, ATTN_NAMES[cfg.attn], POS_NAMES[cfg.pos], model.num_parameters(), (long)step, P, N, a.n, ctx, backend_desc.c_str(),
            gen.on_gpu() ? (" (" + a.precision + ")").c_str() : "");
    // the prompt as text, then the continuation
    TokenStream stream0;
    if (N == 1) {
        fputs(stream0.push(tok.decode_bytes(prompt)).c_str(), stdout);
        fflush(stdout);
    }

    // prefill: every sample's copy of the prompt in one call; only the last rows need logits. With
    // a press, a prompt longer than the cache goes in pieces that fill it, the press between them.
    // greedy (--greedy or --temperature 0): the next tokens come back as ids (on the device, the
    // argmax is taken there), not as rows of logits
    const bool greedy = greedy_sampling(a.sc);
    std::vector<int> ids(N);
    double t0 = now_seconds();
    const float* lg = nullptr;
    for (int p0 = 0; p0 < P;) {
        for (int b = 0; b < N; b++) make_room(b);
        const int piece = std::min(P - p0, ctx - gen.held(0));
        std::vector<int> rows, rseq;
        std::vector<char> want;
        for (int b = 0; b < N; b++)
            for (int t = p0; t < p0 + piece; t++) { rows.push_back(prompt[t]); rseq.push_back(b); want.push_back(t == P - 1); }
        if (greedy) gen.decode_greedy(rows.data(), rseq.data(), (int)rows.size(), (const bool*)want.data(), ids.data());
        else lg = gen.decode(rows.data(), rseq.data(), (int)rows.size(), (const bool*)want.data());
        p0 += piece;
    }
    double prefill_s = now_seconds() - t0;

    Rng rng(a.seed);
    std::vector<std::vector<int>> out(N);
    std::vector<float> logits(greedy ? 0 : (size_t)N * cfg.padded_vocab_size);
    if (!greedy) memcpy(logits.data(), lg, sizeof(float) * logits.size());
    std::vector<int> alive(N);
    for (int b = 0; b < N; b++) alive[b] = b;
    double decode_s = 0.0;
    long decode_steps = 0, decoded_tokens = 0;
    std::string stop_reason;
    for (int i = 0; i < a.n && !alive.empty(); i++) {
        std::vector<int> still, feed;
        for (size_t k = 0; k < alive.size(); k++) {
            int b = alive[k];
            int t = greedy ? ids[k] : sample_token(&logits[k * cfg.padded_vocab_size], cfg.vocab_size, a.sc, rng);
            if (a.stop_at_eos && t == tok.eos_id) continue;
            out[b].push_back(t);
            if (N == 1) {
                fputs(stream0.push(tok.decode_bytes({t})).c_str(), stdout);
                fflush(stdout);
            }
            if (i + 1 < a.n) { still.push_back(b); feed.push_back(t); }
        }
        alive = still;
        if (alive.empty()) break;
        for (int b : alive) make_room(b);
        if (gen.held(alive[0]) >= ctx) {
            stop_reason = cfg.pos == POS_LEARNED && ctx == cfg.max_seq_len
                              ? "learned positions end at " + std::to_string(cfg.max_seq_len) + ": generation stopped at the end of the table"
                              : "the context (--ctx " + std::to_string(ctx) + ") is full";
            break;
        }
        double t1 = now_seconds();
        if (greedy) gen.decode_greedy(feed.data(), alive.data(), (int)alive.size(), nullptr, ids.data());
        else lg = gen.decode(feed.data(), alive.data(), (int)alive.size());
        decode_s += now_seconds() - t1;
        decode_steps++;
        decoded_tokens += (long)alive.size();
        if (!greedy) memcpy(logits.data(), lg, sizeof(float) * alive.size() * cfg.padded_vocab_size);
    }
    if (N == 1) {
        fputs(stream0.push("", true).c_str(), stdout);
        fputs("\n", stdout);
    } else {
        for (int b = 0; b < N; b++) {
            TokenStream s;
            std::vector<int> all = prompt;
            all.insert(all.end(), out[b].begin(), out[b].end());
            printf("--- sample %d ---\n%s%s\n", b + 1, s.push(tok.decode_bytes(all)).c_str(), s.push("", true).c_str());
        }
    }
    fflush(stdout);

    if (a.print_ids)
        for (int b = 0; b < N; b++) {
            fprintf(stderr, "ids %d:", b + 1);
            for (int t : out[b]) fprintf(stderr, " %d", t);
            fprintf(stderr, "\n");
        }
    // what it cost, and the cache it held (measured from the buffers)
    long held = 0;
    for (int b = 0; b < N; b++) held += gen.held(b);
    const double elem = gen.on_gpu() && a.precision == "bf16" ? 2.0 : 4.0;  // bytes per cached value
    const double per_tok = gen.bytes_per_token(), fixed = gen.bytes_fixed();
    double bytes = per_tok * held + fixed * N, mha = elem * 2.0 * cfg.n_head * cfg.head_dim * cfg.n_layer * held;
    double alloc = per_tok * ctx * N + fixed * N;
    char packed[96] = "";
    if (!gen.on_gpu()) snprintf(packed, sizeof packed, ", the linear weights packed for decoding (%.1f MB)", 4e-6 * model.dec_packs.floats());
    fprintf(stderr, "\nsetup: %.1f ms (caches allocated, one warm-up token%s; not in the figures below)\n", 1000 * warm_s, packed);
    fprintf(stderr, "prompt: %d tokens x %d sample(s); prefill %.1f ms (%.0f tokens/s)\n", P, N, 1000 * prefill_s, P * N / std::max(prefill_s, 1e-9));
    if (decode_steps)
        fprintf(stderr, "decode: %ld steps, %.2f ms per step, %.0f tokens/s (batch %d)\n", decode_steps, 1000 * decode_s / decode_steps,
                decoded_tokens / std::max(decode_s, 1e-9), N);
    fprintf(stderr, "KV cache held: %ld tokens, %.1f KiB %s (%.0f values/token over %d layers%s); MHA of this shape: %.1f KiB (%.1fx); allocated %.1f KiB\n",
            held, bytes / 1024, elem == 2.0 ? "bf16" : "fp32", per_tok / elem, cfg.n_layer,
            fixed > 0 ? (", + " + std::to_string((long)(fixed / 4)) + " fp32 per sequence").c_str() : "", mha / 1024, bytes > 0 ? mha / bytes : 0.0,
            alloc / 1024);
    if (pressed)
        fprintf(stderr, "press %s: the cache held at %d + %d tokens per sample; %ld compression(s), %.1f ms in all; positions reached %d\n", a.press.c_str(),
                a.budget, slack, compressions, 1000 * compress_s, model.decode_len(0));
    if (!stop_reason.empty()) fail_hint(cfg.pos == POS_LEARNED ? "learned positions cannot go past their table: use -n or a shorter prompt" : "raise --ctx",
                                        "%s", stop_reason.c_str());
    return 0;
}

int main(int argc, char** argv) {
    omp_polite_spin(argv);  // llmc/utils.h: spin-waiting threads that yield their cores to other programs
    try {
        return sample_main(argc, argv);
    } catch (const std::bad_alloc&) {
        fail_hint("use fewer samples, a shorter context or a smaller model", "out of memory (a host allocation failed)");
    }
}
