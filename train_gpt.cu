// train_gpt.cu: kvgpt's trainer. Trains a GPT with the chosen attention variant and position
// encoding on token shards (by default the bundled Tiny Shakespeare), printing a settings
// table, one line per step, the validation loss every N steps, and a JSONL log.
//
//   make train_gpt && ./train_gpt -a mha -p rope
//   ./train_gpt -h                       # every flag
//   mpirun -np 2 ./train_gpt ...         # data parallel (llmc/distributed.h)
//
// Host code built by the C++ compiler; with nvcc present the CUDA backend (llmc/cuda_backend.cu)
// is linked in and used when a GPU is there (llmc/backend.h), else everything runs on the CPU.
#include <omp.h>
#include <sys/resource.h>
#include <csignal>
#include <new>
#include <stdexcept>
#include <string>
#include "llmc/backend.h"
#include "llmc/cli.h"
#include "llmc/checkpoint.h"
#include "llmc/runinfo.h"
#include "llmc/sample.h"
#include "llmc/tokenizer.h"
#include "llmc/train.h"

struct RunConfig {
    std::string preset = "tiny", attn = "mha", pos = "", device = "auto", matmul = "auto", precision = "bf16", optim = "adamw";
    float peak_tflops = 0.0f;
    std::string train_glob, val_glob, out, resume, init_from, log = "";
    int kv_heads = 0, kv_rank = 0, rope_dim = -1, q_rank = 0, splice_rank = 0, splice_ln = 0;
    int d_model = 0, layers = 0, heads = 0, d_ff = 0, max_seq = 0, parallel = -1, tied = -1;
    float rotary_pct = -1.0f, rope_base = -1.0f, alibi_slope = 0.0f;
    int ckpt_every = 0, patience = 0, sample_every = 0;
    TrainConfig tc;
};

static std::vector<Flag> make_flags(RunConfig& r) {
    TrainConfig& t = r.tc;
    return {
        {"-m", "--model", F_STR, &r.preset, "preset: tiny (CPU default), pythia-14m, pythia-31m, pythia-70m, gpt2-124m"},
        {"-a", "--attn", F_STR, &r.attn, "attention: mha mqa gqa mla mka fmka kvsplice"},
        {"-p", "--pos", F_STR, &r.pos, "position encoding: rope alibi none learned (default: the preset's)"},
        {"-g", "--kv-heads", F_INT, &r.kv_heads, "GQA: number of KV heads G (divides the head count)"},
        {"-k", "--kv-rank", F_INT, &r.kv_rank, "MLA / KVSplice: latent width d_c"},
        {"-r", "--splice-rank", F_INT, &r.splice_rank, "KVSplice: compressed width r"},
        {"", "--rope-dim", F_INT, &r.rope_dim, "MLA: decoupled rope key width d_R"},
        {"", "--q-rank", F_INT, &r.q_rank, "MLA: low-rank query width (0: full rank)"},
        {"", "--splice-ln", F_INT, &r.splice_ln, "KVSplice: LayerNorm on the compressed latent (0/1)"},
        {"", "--rotary-pct", F_FLOAT, &r.rotary_pct, "RoPE: fraction of head dims rotated (preset default)"},
        {"", "--rope-base", F_FLOAT, &r.rope_base, "RoPE: base (10000)"},
        {"", "--alibi-slope", F_FLOAT, &r.alibi_slope, "ALiBi: one slope for all heads (0: geometric per head)"},
        {"", "--d-model", F_INT, &r.d_model, "override the preset's width"},
        {"", "--layers", F_INT, &r.layers, "override the preset's layer count"},
        {"", "--heads", F_INT, &r.heads, "override the preset's head count"},
        {"", "--d-ff", F_INT, &r.d_ff, "override the preset's MLP width"},
        {"", "--max-seq", F_INT, &r.max_seq, "override the learned position table length"},
        {"", "--parallel", F_INT, &r.parallel, "1: parallel residual (Pythia), 0: sequential (GPT-2)"},
        {"", "--tied", F_INT, &r.tied, "1: tie the classifier to the token embedding"},
        {"-i", "--train", F_STR, &r.train_glob, "train shards glob (default: bundled Tiny Shakespeare)"},
        {"-j", "--val", F_STR, &r.val_glob, "val shards glob"},
        {"-b", "--batch", F_INT, &t.B, "micro-batch size B"},
        {"-t", "--seq-len", F_INT, &t.T, "sequence length T"},
        {"-x", "--steps", F_INT, &t.steps, "optimizer steps (0: print the settings table and exit)"},
        {"-A", "--accum", F_INT, &t.accum, "micro-batches accumulated per step"},
        {"-l", "--lr", F_FLOAT, &t.lr, "peak learning rate"},
        {"-u", "--warmup", F_INT, &t.warmup, "linear warmup steps"},
        {"-q", "--lr-min-frac", F_FLOAT, &t.lr_min_frac, "cosine decays to lr * this"},
        {"-c", "--weight-decay", F_FLOAT, &t.weight_decay, "AdamW weight decay (matrices only)"},
        {"", "--clip", F_FLOAT, &t.grad_clip, "clip the global grad norm to this (0: off)"},
        {"", "--beta2", F_FLOAT, &t.beta2, "AdamW beta2"},
        {"", "--optim", F_STR, &r.optim, "adamw, or spam (SPAM: spike-aware clipping and momentum resets, Huang et al. 2025)"},
        {"", "--spam-interval", F_INT, &t.spam_interval, "SPAM: reset the moments every N steps"},
        {"", "--spam-warmup", F_INT, &t.spam_warmup, "SPAM: cosine warmup of the Adam step over N steps after each reset"},
        {"", "--spam-threshold", F_FLOAT, &t.spam_threshold, "SPAM: clip a gradient entry when g^2 > this x its second moment"},
        {"", "--spam-skip", F_INT, &t.spam_skip, "SPAM: no clipping for N steps after the start and each reset (the moment builds up)"},
        {"-n", "--val-every", F_INT, &t.val_every, "validation loss every N steps (0: only at the end)"},
        {"-v", "--val-batches", F_INT, &t.val_batches, "validation batches per evaluation (0: all)"},
        {"-s", "--seed", F_U64, &t.seed, "seed for init and data order"},
        {"-o", "--out", F_STR, &r.out, "checkpoint file written at the end (and every -e steps)"},
        {"-e", "--ckpt-every", F_INT, &r.ckpt_every, "checkpoint every N steps (needs -o)"},
        {"", "--sample-every", F_INT, &r.sample_every, "print a short greedy sample every N steps (0: off)"},
        {"", "--patience", F_INT, &r.patience, "early stop after N evaluations without a better val loss (0: off)"},
        {"", "--resume", F_STR, &r.resume, "resume from this checkpoint (bitwise identical continuation)"},
        {"", "--init-from", F_STR, &r.init_from, "start a new run from this checkpoint's weights (FILE, FILE.best, or scripts/hf_import.py's output): its config defines the model; step 0, fresh optimizer"},
        {"-L", "--log", F_STR, &r.log, "JSONL log file (default: <out>.jsonl, or train_log.jsonl)"},
        {"-d", "--device", F_STR, &r.device, "auto, cpu or cuda"},
        {"", "--matmul", F_STR, &r.matmul, "CPU matmul: auto (OpenBLAS when built with it), blas or builtin"},
        {"", "--precision", F_STR, &r.precision, "CUDA: bf16 (fp32 master weights, grads, moments) or fp32"},
        {"", "--peak-tflops", F_FLOAT, &r.peak_tflops, "CUDA: peak TFLOPS for MFU (0: from the device's datasheet)"},
    };
}

// every flag in its range (non-finite floats are already refused by parse_flags)
static void check_ranges(const RunConfig& r, const std::set<std::string>& given) {
    const TrainConfig& t = r.tc;
    require_int("-b", t.B, 1, 1 << 20);
    require_int("-t", t.T, 1, 1 << 22);
    require_int("-x", t.steps, 0, INT32_MAX);
    require_int("-A", t.accum, 1, 1 << 20);
    require_int("-u", t.warmup, 0, INT32_MAX);
    require_int("-n", t.val_every, 0, INT32_MAX);
    require_int("-v", t.val_batches, 0, INT32_MAX);
    require_int("-e", r.ckpt_every, 0, INT32_MAX);
    require_int("--patience", r.patience, 0, INT32_MAX);
    require_int("--sample-every", r.sample_every, 0, INT32_MAX);
    if (!(t.lr > 0.0f)) fail_hint("e.g. -l 1e-3", "learning rate %g must be positive", t.lr);
    require_float("-q", t.lr_min_frac, 0.0f, 1.0f);
    require_float("-c", t.weight_decay, 0.0f, 1e3f);
    require_float("--clip", t.grad_clip, 0.0f, 1e30f);
    require_float("--beta2", t.beta2, 0.0f, 1.0f, true);
    const int optim = r.optim == "adamw" ? OPT_ADAMW : r.optim == "spam" ? OPT_SPAM : -1;
    if (optim < 0) fail_hint("use --optim adamw or --optim spam", "unknown --optim '%s'", r.optim.c_str());
    require_int("--spam-interval", t.spam_interval, 1, INT32_MAX);
    require_int("--spam-warmup", t.spam_warmup, 0, INT32_MAX);
    require_int("--spam-skip", t.spam_skip, 0, INT32_MAX);
    if (!(t.spam_threshold > 0.0f)) fail_hint("the paper uses 5000", "--spam-threshold %g must be positive", t.spam_threshold);
    if (optim != OPT_SPAM)
        for (const char* f : {"--spam-interval", "--spam-warmup", "--spam-threshold", "--spam-skip"})
            if (given.count(f)) fail_hint("add --optim spam", "%s applies to --optim spam only", f);
    if (given.count("--parallel")) require_int("--parallel", r.parallel, 0, 1);
    if (given.count("--tied")) require_int("--tied", r.tied, 0, 1);
    require_int("--splice-ln", r.splice_ln, 0, 1);
    if (given.count("--rotary-pct")) require_float("--rotary-pct", r.rotary_pct, 0.0f, 1.0f);
    if (given.count("--rope-base") && !(r.rope_base > 1.0f)) fail_hint("the usual base is 10000", "--rope-base %g must be > 1", r.rope_base);
    if (given.count("--alibi-slope")) require_float("--alibi-slope", r.alibi_slope, 0.0f, 1e3f);
    for (const char* f : {"--d-model", "--layers", "--heads", "--d-ff", "--max-seq"}) {
        int v = !strcmp(f, "--d-model") ? r.d_model : !strcmp(f, "--layers") ? r.layers : !strcmp(f, "--heads") ? r.heads : !strcmp(f, "--d-ff") ? r.d_ff : r.max_seq;
        if (given.count(f)) require_int(f, v, 1, 1 << 20);
    }
    if ((long)t.B * t.T > INT32_MAX / 4) fail_hint("use a smaller -b or -t", "B x T = %ld tokens per micro-batch is too large", (long)t.B * t.T);
}

// --resume / --init-from: the checkpoint defines the model; a model-shape flag that says otherwise
// is an error
static void check_resume_flags(const RunConfig& r, const std::set<std::string>& given, const GPTConfig& c, const char* path,
                               const char* how) {
    auto clash = [&](const char* flag, const std::string& want, const std::string& have) {
        fail_hint("drop the model-shape flags (the checkpoint defines the model), or train a new model from scratch",
                  "%s %s: %s %s contradicts the checkpoint, which has %s", how, path, flag, want.c_str(), have.c_str());
    };
    auto num = [](double x) { char b[32]; snprintf(b, sizeof b, "%g", x); return std::string(b); };
    auto cmp_i = [&](const char* flag, int want, int have) { if (given.count(flag) && want != have) clash(flag, num(want), num(have)); };
    auto cmp_f = [&](const char* flag, float want, float have) { if (given.count(flag) && want != have) clash(flag, num(want), num(have)); };
    if (given.count("--model") && r.preset != c.preset) {  // a preset names a shape: an imported model of that shape matches it
        GPTConfig p;
        bool same = config_from_preset(&p, r.preset.c_str()) && p.n_layer == c.n_layer && p.d_model == c.d_model && p.n_head == c.n_head &&
                    p.d_ff == c.d_ff && p.vocab_size == c.vocab_size && p.parallel_residual == c.parallel_residual &&
                    p.tied_embeddings == c.tied_embeddings && p.gelu_exact == c.gelu_exact && p.tokenizer_id == c.tokenizer_id;
        if (!same) clash("-m", r.preset, c.preset);
    }
    if (given.count("--attn") && r.attn != ATTN_NAMES[c.attn]) clash("-a", r.attn, ATTN_NAMES[c.attn]);
    if (given.count("--pos") && r.pos != POS_NAMES[c.pos]) clash("-p", r.pos, POS_NAMES[c.pos]);
    cmp_i("--kv-heads", r.kv_heads, c.n_kv_head);
    cmp_i("--kv-rank", r.kv_rank, c.kv_rank);
    cmp_i("--splice-rank", r.splice_rank, c.splice_rank);
    cmp_i("--rope-dim", r.rope_dim, c.rope_dim);
    cmp_i("--q-rank", r.q_rank, c.q_rank);
    cmp_i("--splice-ln", r.splice_ln, c.splice_ln);
    cmp_i("--d-model", r.d_model, c.d_model);
    cmp_i("--layers", r.layers, c.n_layer);
    cmp_i("--heads", r.heads, c.n_head);
    cmp_i("--d-ff", r.d_ff, c.d_ff);
    cmp_i("--max-seq", r.max_seq, c.max_seq_len);
    cmp_i("--parallel", r.parallel, c.parallel_residual);
    cmp_i("--tied", r.tied, c.tied_embeddings);
    cmp_f("--rotary-pct", r.rotary_pct, c.rotary_pct);
    cmp_f("--rope-base", r.rope_base, c.rope_base);
    cmp_f("--alibi-slope", r.alibi_slope, c.alibi_slope);
}

// SIGINT / SIGTERM: finish the current step, write the checkpoint and .best, then exit; a second
// signal ends the process at once (the handler restores the default)
static volatile sig_atomic_t g_stop_signal = 0;
static void on_stop_signal(int sig) {
    g_stop_signal = sig;
    signal(sig, SIG_DFL);
}

static int train_main(int argc, char** argv);
int main(int argc, char** argv) {
    omp_polite_spin(argv);  // llmc/utils.h: spin-waiting threads that yield their cores to other programs
    try {
        return train_main(argc, argv);
    } catch (const std::bad_alloc&) {
        fail_hint("use a smaller model, micro-batch (-b) or sequence length (-t)", "out of memory (a host allocation failed)");
    } catch (const std::length_error&) {
        fail_hint("use a smaller model, micro-batch (-b) or sequence length (-t)", "out of memory (a buffer size is too large)");
    }
}

// the model config from the preset plus overrides; every bad combination fails with a hint
static GPTConfig build_config(const RunConfig& r) {
    GPTConfig c;
    if (!config_from_preset(&c, r.preset.c_str()))
        fail_hint("presets: tiny, pythia-14m, pythia-31m, pythia-70m, gpt2-124m", "unknown model preset '%s'", r.preset.c_str());
    int a = parse_name(r.attn.c_str(), ATTN_NAMES, ATTN_COUNT);
    if (a < 0) fail_hint("-a takes mha, mqa, gqa, mla, mka, fmka or kvsplice", "unknown attention variant '%s'", r.attn.c_str());
    c.attn = a;
    if (!r.pos.empty()) {
        int p = parse_name(r.pos.c_str(), POS_NAMES, POS_COUNT);
        if (p < 0) fail_hint("-p takes rope, alibi, none or learned", "unknown position encoding '%s'", r.pos.c_str());
        c.pos = p;
    }
    if (r.d_model) c.d_model = r.d_model;
    if (r.layers) c.n_layer = r.layers;
    if (r.heads) c.n_head = r.heads;
    if (r.d_ff) c.d_ff = r.d_ff;
    if (r.max_seq) c.max_seq_len = r.max_seq;
    if (r.parallel >= 0) c.parallel_residual = r.parallel;
    if (r.tied >= 0) c.tied_embeddings = r.tied;
    if (r.rotary_pct >= 0.0f) c.rotary_pct = r.rotary_pct;
    if (r.rope_base >= 0.0f) c.rope_base = r.rope_base;
    c.alibi_slope = r.alibi_slope;
    if (r.alibi_slope != 0.0f && c.pos != POS_ALIBI) fail_hint("add -p alibi", "--alibi-slope given but the position encoding is %s", POS_NAMES[c.pos]);
    if (r.kv_heads && c.attn != ATTN_GQA) fail_hint("use -a gqa -g G", "-g (KV heads) applies to -a gqa only, not -a %s", ATTN_NAMES[c.attn]);
    if (c.attn == ATTN_GQA) {
        if (!r.kv_heads) fail_hint("e.g. -a gqa -g 2", "-a gqa needs the number of KV heads (-g)");
        c.n_kv_head = r.kv_heads;
    }
    c.kv_rank = r.kv_rank;
    if (r.rope_dim >= 0) c.rope_dim = r.rope_dim;
    c.q_rank = r.q_rank;
    c.splice_rank = r.splice_rank;
    c.splice_ln = r.splice_ln;
    config_finalize(&c);
    return c;
}

// CPU seconds this process has used (all threads, user + system): per step, it shows threads
// spinning or waiting when other programs share the cores
static double cpu_seconds() {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_utime.tv_sec + u.ru_utime.tv_usec * 1e-6 + u.ru_stime.tv_sec + u.ru_stime.tv_usec * 1e-6;
}
static double peak_rss_mib() {  // Linux reports ru_maxrss in KiB
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_maxrss / 1024.0;
}

static std::string human(double x) {
    char b[32];
    if (x >= 1e9) snprintf(b, sizeof b, "%.2fB", x / 1e9);
    else if (x >= 1e6) snprintf(b, sizeof b, "%.2fM", x / 1e6);
    else if (x >= 1e3) snprintf(b, sizeof b, "%.1fK", x / 1e3);
    else snprintf(b, sizeof b, "%.0f", x);
    return b;
}

static int train_main(int argc, char** argv) {
    const Dist& dist = dist_init(&argc, &argv);  // first: under mpirun every rank is one of these
    setvbuf(stdout, nullptr, _IOLBF, 0);
    RunConfig r;
    std::vector<Flag> flags = make_flags(r);
    std::set<std::string> given = parse_flags(argc, argv, flags, "./train_gpt", "./train_gpt -a mla -k 128 -p alibi");
    TrainConfig& tc = r.tc;
    check_ranges(r, given);
    r.tc.optim = r.optim == "spam" ? OPT_SPAM : OPT_ADAMW;
    matmul_select(r.matmul, "install libopenblas-dev and rebuild");
    if (r.matmul == "auto" && matmul_have_blas() && !blas_core_fits_cpu())
        printf("note: OpenBLAS chose its %s kernels for this CPU (it does not know the model), slower than the built-in "
               "kernel, which the linear layers use instead\nHINT: OPENBLAS_CORETYPE=SkylakeX (or Haswell) ./train_gpt --matmul blas ... "
               "runs OpenBLAS with the right kernels\n", blas_core_name().c_str());

    GPTConfig cfg;
    CheckpointHeader resume_h;
    if (!r.resume.empty() && !r.init_from.empty())
        fail_hint("--resume continues a run (weights, optimizer, data order); --init-from starts a new run from weights: pick one",
                  "--resume and --init-from were both given");
    if (!r.resume.empty()) {
        resume_h = checkpoint_read_header(r.resume.c_str());
        cfg = resume_h.config;  // the checkpoint defines the model
        check_resume_flags(r, given, cfg, r.resume.c_str(), "--resume");
        // and the data: the same shards unless -i / -j say otherwise
        if (r.train_glob.empty() && resume_h.train_data[0]) r.train_glob = resume_h.train_data;
        if (r.val_glob.empty() && resume_h.val_data[0]) r.val_glob = resume_h.val_data;
        // the optimizer state continues only under the optimizer that made it
        char hint[96];
        if (resume_h.optim && resume_h.optim <= 2 && (int)resume_h.optim - 1 != tc.optim) {
            snprintf(hint, sizeof hint, "pass --optim %s to continue the run as it was trained", OPT_NAMES[resume_h.optim - 1]);
            fail_hint(hint, "checkpoint '%s' was trained with --optim %s, this run asks for %s", r.resume.c_str(), OPT_NAMES[resume_h.optim - 1],
                      OPT_NAMES[tc.optim]);
        }
        if (tc.optim == OPT_SPAM && resume_h.spam_interval && (int)resume_h.spam_interval != tc.spam_interval) {
            snprintf(hint, sizeof hint, "pass --spam-interval %u to continue the run as it was trained", resume_h.spam_interval);
            fail_hint(hint, "checkpoint '%s' reset SPAM's moments every %u steps, this run every %d", r.resume.c_str(), resume_h.spam_interval,
                      tc.spam_interval);
        }
        if (resume_h.train_T > 0 && resume_h.train_T != tc.T)
            printf("note: -t %d differs from the checkpoint's T=%d: the continuation is not the run it would have been\n", tc.T, resume_h.train_T);
    } else if (!r.init_from.empty()) {
        cfg = checkpoint_read_header(r.init_from.c_str()).config;  // the weights define the model
        check_resume_flags(r, given, cfg, r.init_from.c_str(), "--init-from");
    } else {
        cfg = build_config(r);
    }
    if (r.ckpt_every && r.out.empty()) fail_hint("add -o ckpt.bin", "-e (checkpoint every N steps) needs -o");
    config_validate(&cfg, tc.T);
    std::string backend_desc, device_name;
    Backend backend = choose_backend(r.device.c_str(), cfg, &backend_desc, &device_name);
    int precision = parse_precision(r.precision);

    std::string data_dir = std::string("data/tinyshakespeare/") + tokenizer_name(cfg.tokenizer_id) + "/";
    if (r.train_glob.empty()) r.train_glob = data_dir + "train_*.bin";
    if (r.val_glob.empty()) r.val_glob = data_dir + "val_*.bin";
    DataLoader train, val;
    train.open(r.train_glob, tc.B, tc.T, cfg.vocab_size, cfg.tokenizer_id, tc.seed);
    val.open(r.val_glob, tc.B, tc.T, cfg.vocab_size, cfg.tokenizer_id, tc.seed);
    if (!val.next_sequential_batch())  // else every validation loss would be NaN
        fail_hint("lower -b or -t, or pass a larger validation set with -j",
                  "the validation data (%ld tokens) holds no batch of B=%d windows of T+1=%d tokens", (long)val.total_tokens, tc.B, tc.T + 1);
    val.reset();
    // data-parallel ranks must run the same command on the same data, or their sums mean nothing
    {
        std::string cmd;
        for (int i = 1; i < argc; i++) cmd += std::string(argv[i]) + '\0';
        if (!dist_all_equal(crc32c_update(0, cmd.data(), cmd.size())))
            fail_hint("launch every rank with the same command line (mpirun does this)", "the ranks were started with different arguments");
        const std::string data = std::to_string(train.total_tokens) + "/" + std::to_string(val.total_tokens) + "/" + std::to_string(train.shards.size());
        if (!dist_all_equal(crc32c_update(0, data.data(), data.size())))
            fail_hint("give every node the same shards at the same paths (a shared file system, or copies)",
                      "the ranks see different data: here %s has %ld tokens in %zu shards", r.train_glob.c_str(), (long)train.total_tokens,
                      train.shards.size());
    }
    const long step_tokens = (long)tc.B * tc.T * tc.accum * dist.size;  // every rank's micro-batches

    // outputs: never an input (a shard, the resumed checkpoint's .best), never a file that is not
    // ours, and writable now rather than after the whole run
    if (r.log.empty()) r.log = r.out.empty() ? "train_log.jsonl" : r.out + ".jsonl";
    {
        std::vector<std::string> inputs;
        for (const DataLoader* d : {&train, &val})
            for (const Shard& s : d->shards) inputs.push_back(s.path);
        std::vector<std::pair<const char*, std::string>> outputs = {{"-L", r.log}};
        if (!r.out.empty()) {
            outputs.push_back({"-o", r.out});
            outputs.push_back({"-o (its .best)", r.out + ".best"});
            if (same_file(r.out, r.log)) fail_hint("give the log another name", "-o and -L name the same file '%s'", r.out.c_str());
        }
        if (!r.init_from.empty()) inputs.push_back(r.init_from);
        if (!r.resume.empty()) {
            inputs.push_back(r.resume + ".best");  // read at the start of the run, written at its end under -o's name only
            if (!r.out.empty() && same_file(r.log, r.resume)) fail_hint("give the log another name", "-L names the checkpoint being resumed");
        }
        for (auto& o : outputs) {
            for (const std::string& in : inputs)
                if (same_file(o.second, in) && !(o.first[1] == 'o' && !r.resume.empty() && same_file(r.out, r.resume)))
                    fail_hint("write outputs to new paths; inputs are never overwritten", "%s '%s' is an input of this run (%s)", o.first,
                              o.second.c_str(), in.c_str());
            if (!dir_writable(o.second))
                fail_hint("create the directory, or pick a writable path", "%s '%s': its directory does not exist or is not writable", o.first, o.second.c_str());
            struct stat st;
            if (o.first[1] == 'o' && stat(o.second.c_str(), &st) == 0) {
                FILE* f = fopen(o.second.c_str(), "rb");
                uint32_t magic = 0;
                bool ours = S_ISREG(st.st_mode) && f && fread(&magic, 4, 1, f) == 1 && magic == CKPT_MAGIC;
                if (f) fclose(f);
                if (!ours) fail_hint("pick another -o; only kvgpt checkpoints are overwritten", "-o '%s' exists and is not a kvgpt checkpoint", o.second.c_str());
            }
        }
    }

    GPT model(cfg);
    model.init_weights(tc.seed);
    int start_step = 0;
    float best_val = INFINITY;
    if (!r.init_from.empty()) {  // the weights only: AdamW's moments start at zero, the step at 0
        int64_t from_step = 0;
        if (!checkpoint_read_params(r.init_from.c_str(), model, model.params, &from_step))
            fail_hint("the file is truncated; use another checkpoint", "cannot read the parameters of '%s'", r.init_from.c_str());
        printf("initialised from %s (its step %lld); fresh optimizer state\n", r.init_from.c_str(), (long long)from_step);
    }
    if (!r.resume.empty()) {
        CheckpointHeader h = checkpoint_load(r.resume.c_str(), model);
        start_step = (int)h.step;
        train.rng.state = h.data_rng;
        best_val = h.best_val_loss;
        if (start_step >= tc.steps) fail_hint("raise -x above the checkpoint's step", "checkpoint is at step %d, already >= -x %d", start_step, tc.steps);
        // the data order follows the micro-batches per step (ranks x accum); the ZeRO slices follow the ranks
        long was = (long)h.ranks * h.accum, now = (long)dist.size * tc.accum;
        if (h.ranks && was != now)
            printf("note: the checkpoint was trained with %u rank(s) x accum %u = %ld micro-batches per step; this run takes %d x %d = %ld: "
                   "the batch changes, so the continuation is not the run it would have been%s\n",
                   h.ranks, h.accum, was, dist.size, tc.accum, now, was % dist.size == 0 ? (" (-A " + std::to_string(was / dist.size) + " keeps it)").c_str() : "");
        else if (h.ranks && (int)h.ranks != dist.size)
            printf("note: the checkpoint was trained on %u rank(s), this run has %d: the optimizer state is resharded and the batch and "
                   "data order continue unchanged; the gradients are summed in another order, so the run matches the %u-rank one "
                   "within float rounding, not bitwise\n", h.ranks, dist.size, h.ranks);
    }

    long kv_layer = model.kv_elems_per_token_layer();
    long kv_mha = 2L * cfg.n_head * cfg.head_dim;
    // 6 FLOPs per matmul weight per token (forward + backward); lookup-only tables (an untied
    // input embedding, learned positions) do no matmul work, attention scores add the second term
    double matmul_params = (double)model.num_parameters() - (cfg.tied_embeddings ? 0.0 : (double)cfg.vocab_size * cfg.d_model) -
                           (cfg.pos == POS_LEARNED ? (double)cfg.max_seq_len * cfg.d_model : 0.0);
    double flops_per_token = 6.0 * matmul_params;
    flops_per_token += 6.0 * cfg.n_layer * cfg.n_head * cfg.head_dim * tc.T;  // QK^T and AV, fwd+bwd, causal half x2
    char buf[256];
    // the settings table: rows collected, then printed as wide as the longest value needs
    std::vector<std::pair<std::string, std::string>> rows;
    auto row = [&](const char* k, const std::string& v) { rows.push_back({k, v}); };
    row("model preset", cfg.preset);
    if (!r.init_from.empty()) row("initial weights", r.init_from);
    if (is_mla_family(cfg.attn))
        snprintf(buf, sizeof buf, "%s, d_c=%d d_R=%d q_rank=%d%s", ATTN_NAMES[cfg.attn], cfg.kv_rank, cfg.rope_dim, cfg.q_rank,
                 cfg.attn == ATTN_KVSPLICE ? (", r=" + std::to_string(cfg.splice_rank) + (cfg.splice_ln ? " +LN" : "")).c_str() : "");
    else if (cfg.attn == ATTN_MKA) snprintf(buf, sizeof buf, "mka, 3 levels, %d memory slots", MKAAttention::MEM_SLOTS);
    else if (cfg.attn == ATTN_FMKA) snprintf(buf, sizeof buf, "fmka, one softmax over 3 levels, %d slots", MKAAttention::MEM_SLOTS);
    else snprintf(buf, sizeof buf, "%s, G=%d KV heads", ATTN_NAMES[cfg.attn], cfg.n_kv_head);
    row("attention", buf);
    if (cfg.pos == POS_ROPE && is_mla_family(cfg.attn)) snprintf(buf, sizeof buf, "rope (NeoX, decoupled key d_R=%d, base %g)", cfg.rope_dim, cfg.rope_base);
    else if (cfg.pos == POS_ROPE) snprintf(buf, sizeof buf, "rope (NeoX, %d of %d dims, base %g)", cfg.rotary_dim(), cfg.head_dim, cfg.rope_base);
    else if (cfg.pos == POS_ALIBI) snprintf(buf, sizeof buf, "alibi (%s)", cfg.alibi_slope > 0 ? "uniform slope" : "geometric slopes");
    else snprintf(buf, sizeof buf, "%s", POS_NAMES[cfg.pos]);
    row("position encoding", buf);
    snprintf(buf, sizeof buf, "L=%d d=%d H=%d hd=%d ff=%d", cfg.n_layer, cfg.d_model, cfg.n_head, cfg.head_dim, cfg.d_ff); row("shape", buf);
    snprintf(buf, sizeof buf, "%s residual, %s embeddings, %s GELU", cfg.parallel_residual ? "parallel" : "sequential",
             cfg.tied_embeddings ? "tied" : "untied", cfg.gelu_exact ? "erf" : "tanh"); row("block", buf);
    snprintf(buf, sizeof buf, "%d (padded %d), %s", cfg.vocab_size, cfg.padded_vocab_size, tokenizer_name(cfg.tokenizer_id)); row("vocab", buf);
    snprintf(buf, sizeof buf, "%zu (%s)", model.num_parameters(), human((double)model.num_parameters()).c_str()); row("parameters", buf);
    snprintf(buf, sizeof buf, "%ld /layer, %ld total", kv_layer, kv_layer * cfg.n_layer); row("KV cache elems/token", buf);
    snprintf(buf, sizeof buf, "fp32 %ld /layer, %ld total; bf16 %ld, %ld", 4 * kv_layer, 4 * kv_layer * cfg.n_layer, 2 * kv_layer,
             2 * kv_layer * cfg.n_layer);
    row("KV cache bytes/token", buf);
    snprintf(buf, sizeof buf, "%.1f%% vs MHA (%ld elems/layer)", 100.0 * (1.0 - (double)kv_layer / kv_mha), kv_mha); row("KV reduction", buf);
    snprintf(buf, sizeof buf, "%s (%zu shards, %s tokens)", r.train_glob.c_str(), train.shards.size(), human((double)train.total_tokens).c_str()); row("train data", buf);
    snprintf(buf, sizeof buf, "%s (%zu shards, %s tokens)", r.val_glob.c_str(), val.shards.size(), human((double)val.total_tokens).c_str()); row("val data", buf);
    if (dist.on) snprintf(buf, sizeof buf, "B=%d T=%d accum=%d x %d ranks (%ld tokens/step)", tc.B, tc.T, tc.accum, dist.size, step_tokens);
    else snprintf(buf, sizeof buf, "B=%d T=%d accum=%d (%ld tokens/step)", tc.B, tc.T, tc.accum, step_tokens);
    row("batch", buf);
    snprintf(buf, sizeof buf, "%d (from %d)", tc.steps, start_step); row("steps", buf);
    snprintf(buf, sizeof buf, "%.2e, warmup %d, cosine to %.2e", tc.lr, tc.warmup, tc.lr * tc.lr_min_frac); row("lr schedule", buf);
    if (tc.optim == OPT_SPAM)
        snprintf(buf, sizeof buf, "SPAM b=(%.2f,%.3f) wd=%.2f clip=%.1f reset/%d warm %d thr %g skip %d", tc.beta1, tc.beta2, tc.weight_decay,
                 tc.grad_clip, tc.spam_interval, tc.spam_warmup, tc.spam_threshold, tc.spam_skip);
    else
        snprintf(buf, sizeof buf, "AdamW b=(%.2f,%.3f) wd=%.2f clip=%.1f", tc.beta1, tc.beta2, tc.weight_decay, tc.grad_clip);
    row("optimizer", buf);
    snprintf(buf, sizeof buf, "%s, %s", tc.val_every ? ("every " + std::to_string(tc.val_every) + " steps").c_str() : "at the start and the end",
             tc.val_batches ? (std::to_string(tc.val_batches) + " batches").c_str() : "all batches");
    row("validation", buf);
    if (backend == BACKEND_CUDA) {
        row("backend", backend_desc);
        row("precision", precision ? "bf16 (fp32 master, grads, moments)" : "fp32");
    } else {
        snprintf(buf, sizeof buf, "%s, %d threads", backend_desc.c_str(), omp_get_max_threads()); row("backend", buf);
        row("matmul", matmul_desc());
    }
    if (dist.on) {
        snprintf(buf, sizeof buf, "%d ranks, %d on this node; %s", dist.size, dist.local_size,
                 backend == BACKEND_CUDA ? "gradients all-reduced on the GPUs, AdamW on every rank"
                                         : "MPI; ZeRO-1 (each rank holds 1/N of the AdamW state)");
        row("data parallel", buf);
    }
    row("seed", std::to_string(tc.seed));
    row("log", r.log);
    if (!r.out.empty()) row("checkpoint", r.out);
    // values wider than 72 characters (long paths) continue on the next rows, so the box stays a box
    const size_t wrap = 72;
    size_t width = 44;
    for (auto& kv : rows) width = std::max(width, std::min(wrap, kv.second.size()));
    std::string rule = "+--------------------------+" + std::string(width + 2, '-') + "+";
    printf("%s\n", rule.c_str());
    for (auto& kv : rows)
        for (size_t at = 0; at == 0 || at < kv.second.size(); at += wrap)
            printf("| %-24s | %-*s |\n", at ? "" : kv.first.c_str(), (int)width, kv.second.substr(at, wrap).c_str());
    printf("%s\n", rule.c_str());
    if (tc.steps == 0) { printf("-x 0: settings only, nothing trained\n"); return 0; }
    FILE* logf = fopenCheck(dist.rank == 0 ? r.log.c_str() : "/dev/null", start_step ? "a" : "w");  // rank 0 logs
    BackendRunner run(model, backend, precision, tc.B, tc.T);
    if (dist.on) printf("data parallel: %d ranks, gradients over %s\n", dist.size, dist.transport);
    double peak_tflops = 0.0;
#ifdef KVGPT_CUDA_BACKEND
    if (backend == BACKEND_CUDA) {
        printf("%s", run.memory_report().c_str());
        peak_tflops = r.peak_tflops > 0 ? r.peak_tflops : cuda_peak_tflops(device_name, precision);
        if (peak_tflops > 0) printf("MFU against %.1f TFLOPS (%s)\n", peak_tflops, r.peak_tflops > 0 ? "--peak-tflops" : "datasheet, dense");
        else printf("MFU: unknown device '%s'; pass --peak-tflops to see it\n", device_name.c_str());
    }
#endif
    // the first event says everything needed to reproduce the run: command, resolved flags, code, data, machine
    fprintf(logf, "{\"event\":\"start\",\"preset\":%s,\"attn\":\"%s\",\"pos\":\"%s\",\"params\":%zu,\"kv_elems_per_token_layer\":%ld,\"kv_mha_per_layer\":%ld,\"B\":%d,\"T\":%d,\"accum\":%d,\"steps\":%d,\"start_step\":%d,"
            "\"ranks\":%d,\"tokens_per_step\":%ld,\"train_data\":%s,\"train_tokens\":%ld,\"train_shards\":%zu,\"val_data\":%s,\"val_tokens\":%ld,\"val_shards\":%zu,"
            "\"init_from\":%s,\"resume\":%s,\"backend\":%s,\"config\":%s,\"run\":%s}\n",
            json_escape(cfg.preset).c_str(), ATTN_NAMES[cfg.attn], POS_NAMES[cfg.pos], model.num_parameters(), kv_layer, kv_mha, tc.B, tc.T, tc.accum,
            tc.steps, start_step, dist.size, step_tokens, json_escape(r.train_glob).c_str(), (long)train.total_tokens, train.shards.size(),
            json_escape(r.val_glob).c_str(), (long)val.total_tokens, val.shards.size(), r.init_from.empty() ? "null" : json_escape(r.init_from).c_str(),
            r.resume.empty() ? "null" : json_escape(r.resume).c_str(), json_escape(backend == BACKEND_CUDA ? backend_desc : "cpu").c_str(),
            config_json(cfg).c_str(), run_metadata_json(argc, argv, flags, backend == BACKEND_CUDA ? device_name : "").c_str());
    fflush(logf);

    // validation with best-weight tracking and early stopping (--patience evaluations without improvement)
    std::vector<float> best_params;
    int best_step = -1, evals_without_gain = 0, last_val_step = -1;
    int64_t resumed_best_step = -1;
    if (!r.resume.empty()) {  // the best weights from before the resume stay the reference
        best_params.resize(model.ps.total);
        if (checkpoint_read_params((r.resume + ".best").c_str(), model, best_params.data(), &resumed_best_step)) {
            best_step = (int)resumed_best_step;
            printf("best weights so far: %s.best (step %d, val loss %.4f)\n", r.resume.c_str(), best_step, best_val);
        } else {
            best_params.clear();
        }
    }
    double t_start = now_seconds();  // elapsed times and ETAs count from here
    auto do_val = [&](int step) {
        double t0 = now_seconds();
        float vl = run.val(val, tc.val_batches);
        last_val_step = step;
        if (vl < best_val) {
            best_val = vl;
            best_step = step;
            run.pull_params();
            best_params.assign(model.params, model.params + model.ps.total);
            evals_without_gain = 0;
        } else {
            evals_without_gain++;
        }
        if (!std::isfinite(vl))
            fail_hint("lower the learning rate (-l), raise warmup (-u), or check the validation data",
                      "validation loss is %f at step %d: training diverged (no checkpoint written for it)", vl, step);
        printf("val loss %.4f (step %d, %.0f ms)\n", vl, step, 1000 * (now_seconds() - t0));
        fprintf(logf, "{\"step\":%d,\"val_loss\":%.6f,\"tokens\":%ld,\"elapsed_s\":%.2f}\n", step, vl, (long)step * step_tokens,
                now_seconds() - t_start);
        fflush(logf);
    };
    // --sample-every: a short greedy continuation of the end-of-text token, as llm.c prints
    Tokenizer tok;
    if (r.sample_every && dist.rank == 0) tok.load(cfg.tokenizer_id, find_tokenizer_dir("", argv[0]));
    auto print_sample = [&](int at_step) {
        const int n = std::min(64, cfg.pos == POS_LEARNED ? cfg.max_seq_len - 1 : 64);
        run.pull_params();
        model.decode_begin(1, n + 1);
        int t = tok.eos_id, s0 = 0;
        std::vector<int> ids;
        for (int i = 0; i < n; i++) {
            t = argmax_token(model.decode(&t, &s0, 1), cfg.vocab_size);
            ids.push_back(t);
        }
        model.dec_packs.clear();  // training goes on: the packed copy of the weights would only hold memory
        TokenStream ts;
        printf("--- sample at step %d (greedy, %d tokens from end-of-text) ---\n%s%s\n---\n", at_step, n, ts.push(tok.decode_bytes(ids)).c_str(),
               ts.push("", true).c_str());
    };
    int step = start_step;
    signal(SIGINT, on_stop_signal);
    signal(SIGTERM, on_stop_signal);
    for (; step < tc.steps; step++) {
        if (dist_max(g_stop_signal)) {  // every rank stops at the same step (mpirun passes the signal on to them all)
            if (!g_stop_signal) g_stop_signal = SIGTERM;
            break;
        }
        if (step == start_step || (tc.val_every > 0 && step % tc.val_every == 0)) {
            do_val(step);
            if (r.patience > 0 && evals_without_gain >= r.patience) {
                printf("early stop at step %d: val loss has not improved for %d evaluations (best %.4f at step %d)\n", step,
                       r.patience, best_val, best_step);
                break;
            }
        }
        double t0 = now_seconds(), c0 = cpu_seconds();
        StepStats s = run.step(train, tc, step);
        double ms = 1000 * (now_seconds() - t0), cpu_ms = 1000 * (cpu_seconds() - c0);
        double tok_s = step_tokens / (ms / 1000);
        char mfu[32] = "";
        double mfu_pct = peak_tflops > 0 ? 100.0 * flops_per_token * tok_s / (peak_tflops * 1e12) : -1.0;
        if (mfu_pct >= 0) snprintf(mfu, sizeof mfu, " | mfu %.1f%%", mfu_pct);
        double elapsed = now_seconds() - t_start, eta = elapsed / (step + 1 - start_step) * (tc.steps - step - 1);
        printf("step %5d/%d | loss %.4f | lr %.2e | norm %.4f | %.1f ms | %.0f tok/s%s | %s, ETA %s\n", step + 1, tc.steps, s.loss, s.lr,
               s.grad_norm, ms, tok_s, mfu, human_duration(elapsed).c_str(), human_duration(eta).c_str());
        fprintf(logf, "{\"step\":%d,\"loss\":%.6f,\"lr\":%.6e,\"grad_norm\":%.6f,\"ms\":%.2f,\"cpu_ms\":%.2f,\"tok_s\":%.1f,\"tokens\":%ld,\"elapsed_s\":%.2f%s}\n", step + 1,
                s.loss, s.lr, s.grad_norm, ms, cpu_ms, tok_s, (long)(step + 1) * step_tokens, elapsed,
                mfu_pct >= 0 ? (",\"mfu\":" + std::to_string(mfu_pct / 100.0)).c_str() : "");
        if (r.sample_every && (step + 1) % r.sample_every == 0 && dist.rank == 0) print_sample(step + 1);
        if (r.ckpt_every && (step + 1) % r.ckpt_every == 0 && step + 1 < tc.steps) {
            run.pull();
            if (dist.rank == 0)
                checkpoint_save(r.out.c_str(), model, step + 1, train.rng.state, best_val, tc.T, r.train_glob, r.val_glob, true, dist.size, tc.accum, tc.optim, tc.optim == OPT_SPAM ? tc.spam_interval : 0);
            printf("checkpoint: %s (step %d)\n", r.out.c_str(), step + 1);
        }
    }
    int stop_sig = g_stop_signal;
    if (stop_sig) {
        printf("%s at step %d: %s\n", stop_sig == SIGINT ? "interrupted (SIGINT)" : "terminated (SIGTERM)", step,
               r.out.empty() ? "no -o given, nothing saved" : "writing the checkpoint and the best weights, then exiting");
        fprintf(logf, "{\"event\":\"interrupted\",\"signal\":%d,\"step\":%d}\n", stop_sig, step);
        fflush(logf);
    } else if (last_val_step != step) {
        do_val(step);
    }
    double total = now_seconds() - t_start;
    printf("done: %d steps in %.1f s (%.0f tok/s overall, ~%.1f GFLOP/s)\n", step - start_step, total,
           (double)(step - start_step) * step_tokens / total, flops_per_token * (step - start_step) * step_tokens / total / 1e9);
    run.pull();
    if (!r.out.empty()) {  // the latest state, to resume from
        if (dist.rank == 0)
            checkpoint_save(r.out.c_str(), model, step, train.rng.state, best_val, tc.T, r.train_glob, r.val_glob, true, dist.size, tc.accum, tc.optim, tc.optim == OPT_SPAM ? tc.spam_interval : 0);
        printf("checkpoint: %s (step %d)\n", r.out.c_str(), step);
    }
    // the final evaluation uses the best weights seen, not the last (which may be worse)
    int final_step = step;
    if (best_step >= 0 && best_step != step) {
        memcpy(model.params, best_params.data(), sizeof(float) * model.ps.total);
        final_step = best_step;
        run.push_params();
        printf("restored the best weights (step %d) for the final evaluation\n", best_step);
    }
    if (!r.out.empty()) {
        std::string best_path = r.out + ".best";
        // step = the weights' step; weights only (a third of the size): evaluation and sampling need no moments
        if (dist.rank == 0)
            checkpoint_save(best_path.c_str(), model, final_step, train.rng.state, best_val, tc.T, r.train_glob, r.val_glob, false, dist.size, tc.accum, tc.optim, tc.optim == OPT_SPAM ? tc.spam_interval : 0);
        printf("best weights: %s (step %d; weights only, no optimizer state; evaluate this one)\n", best_path.c_str(), final_step);
    }
    if (stop_sig) {
        fclose(logf);
        return 128 + stop_sig;
    }
    float final_val = run.val(val, tc.val_batches);
    printf("final val loss %.4f (weights of step %d)\n", final_val, final_step);
    // memory, measured: this process's peak resident set (each run is its own process, so no
    // counter carries over from another variant) and the device buffers allocated for training
    double peak_host_mib = peak_rss_mib(), dev_mib = run.device_bytes() / 1048576.0;
    printf("peak memory: host %.1f MiB resident (getrusage)%s\n", peak_host_mib,
           dev_mib > 0 ? (", device " + std::to_string((int)std::lround(dev_mib)) + " MiB allocated").c_str() : "");
    fprintf(logf, "{\"event\":\"end\",\"steps\":%d,\"seconds\":%.2f,\"best_val_loss\":%.6f,\"final_val_loss\":%.6f,\"final_weights_step\":%d,"
            "\"peak_host_mib\":%.1f,\"device_mib\":%.1f}\n", step, total, best_val, final_val, final_step, peak_host_mib, dev_mib);
    fclose(logf);
    return 0;
}
