// runinfo.h: what a run records about itself, so a figure can always be traced to the exact
// command, code, data and machine that produced it: the JSON object "run" that train_gpt's first
// JSONL event and every eval_gpt JSON carry.
//   {"argv": [...], "flags": {"--lr": 0.0003, ...every flag, resolved...}, "git": {"commit": ..., "dirty": ...},
//    "host": {"cpu": ..., "cores": N, "threads": N, "gpu": ..., "OMP_WAIT_POLICY": ..., "GOMP_SPINCOUNT": ...},
//    "started": "2026-12-02T04:20:00Z"}
// The git fields come from the tree the binary was built in (the code that ran), null outside git.
#pragma once
#include <omp.h>
#include <time.h>
#include <unistd.h>
#include <string>
#include <vector>
#include "cli.h"
#include "config.h"

// the first line a shell command prints (empty on failure); for git and nothing user-controlled
static std::string command_line_output(const std::string& cmd) {
    FILE* p = popen((cmd + " 2>/dev/null").c_str(), "r");
    if (!p) return "";
    char buf[512];
    std::string out;
    if (fgets(buf, sizeof buf, p)) out = buf;
    pclose(p);
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
    return out;
}

static std::string shell_quote(const std::string& s) {
    std::string o = "'";
    for (char c : s) o += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return o + "'";
}

static std::string cpu_model_name() {
    FILE* f = fopen("/proc/cpuinfo", "r");
    if (!f) return "unknown";
    char line[512];
    std::string name = "unknown";
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10)) {
            const char* c = strchr(line, ':');
            if (c) { name = c + 1; while (!name.empty() && (name[0] == ' ' || name[0] == '\t')) name.erase(0, 1); }
            while (!name.empty() && name.back() == '\n') name.pop_back();
            break;
        }
    fclose(f);
    return name;
}

// every field of the model config, resolved (ranks, rotary dims, KV heads: what the model is)
static std::string config_json(const GPTConfig& c) {
    char b[1024];
    snprintf(b, sizeof b,
             "{\"preset\": %s, \"attn\": \"%s\", \"pos\": \"%s\", \"vocab_size\": %d, \"padded_vocab_size\": %d, \"max_seq_len\": %d, "
             "\"n_layer\": %d, \"n_head\": %d, \"d_model\": %d, \"d_ff\": %d, \"head_dim\": %d, \"parallel_residual\": %d, \"tied_embeddings\": %d, "
             "\"gelu_exact\": %d, \"tokenizer\": \"%s\", \"rotary_pct\": %s, \"rotary_dim\": %d, \"rope_base\": %s, \"alibi_slope\": %s, "
             "\"n_kv_head\": %d, \"kv_rank\": %d, \"rope_dim\": %d, \"q_rank\": %d, \"splice_rank\": %d, \"splice_ln\": %d}",
             json_escape(c.preset).c_str(), ATTN_NAMES[c.attn], POS_NAMES[c.pos], c.vocab_size, c.padded_vocab_size, c.max_seq_len, c.n_layer,
             c.n_head, c.d_model, c.d_ff, c.head_dim, c.parallel_residual, c.tied_embeddings, c.gelu_exact, tokenizer_name(c.tokenizer_id),
             float_json(c.rotary_pct).c_str(), c.rotary_dim(), float_json(c.rope_base).c_str(), float_json(c.alibi_slope).c_str(), c.n_kv_head,
             c.kv_rank, c.rope_dim, c.q_rank, c.splice_rank, c.splice_ln);
    return b;
}

// gpu: the device the run used ("" for none)
static std::string run_metadata_json(int argc, char** argv, const std::vector<Flag>& flags, const std::string& gpu) {
    std::string js = "{\"argv\": [";
    for (int i = 0; i < argc; i++) js += (i ? ", " : "") + json_escape(argv[i]);
    js += "], \"flags\": {";
    for (size_t i = 0; i < flags.size(); i++) js += (i ? ", " : "") + json_escape(flags[i].longname) + ": " + flag_value_json(flags[i]);
    js += "}, \"git\": ";
    std::string dir = argv[0];
    size_t slash = dir.rfind('/');
    dir = slash == std::string::npos ? "." : dir.substr(0, slash);
    std::string commit = command_line_output("git -C " + shell_quote(dir) + " rev-parse HEAD");
    if (commit.size() == 40) {
        // tracked files changed since that commit: the code that ran is not exactly the commit
        bool dirty = !command_line_output("git -C " + shell_quote(dir) + " status --porcelain --untracked-files=no").empty();
        js += "{\"commit\": " + json_escape(commit) + ", \"dirty\": " + (dirty ? "true" : "false") + "}";
    } else {
        js += "null";
    }
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    js += ", \"host\": {\"name\": " + json_escape(host) + ", \"cpu\": " + json_escape(cpu_model_name()) +
          ", \"cores\": " + std::to_string(sysconf(_SC_NPROCESSORS_ONLN)) + ", \"threads\": " + std::to_string(omp_get_max_threads()) +
          ", \"gpu\": " + (gpu.empty() ? "null" : json_escape(gpu));
    for (const char* k : {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"}) {  // how idle threads wait (utils.h: omp_polite_spin)
        const char* v = getenv(k);
        js += std::string(", \"") + k + "\": " + (v ? json_escape(v) : "null");
    }
    js += "}";
    char when[32];
    time_t now = time(nullptr);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    js += ", \"started\": \"" + std::string(when) + "\"}";
    return js;
}

// "1h02m", "3m05s", "12s": for elapsed times and ETAs
static std::string human_duration(double s) {
    char b[32];
    if (!(s >= 0) || s > 1e8) return "?";
    long t = lrint(s);
    if (t >= 3600) snprintf(b, sizeof b, "%ldh%02ldm", t / 3600, (t % 3600) / 60);
    else if (t >= 60) snprintf(b, sizeof b, "%ldm%02lds", t / 60, t % 60);
    else snprintf(b, sizeof b, "%lds", t);
    return b;
}

// progress inside a long loop: at most one line every `every` seconds (and the last one), with the
// rate and the ETA: "  sliding: 120/400 windows | 5.1K tok/s | 12s, ETA 28s"
struct Progress {
    std::string what, unit;
    long total = 0;
    double t0 = 0, last = 0, every = 10.0;
    void begin(const std::string& w, const std::string& u, long n) { what = w; unit = u; total = n; t0 = last = now_seconds(); }
    void update(long done, double tokens) {
        double t = now_seconds();
        if (t - last < every && done < total) return;
        if (done >= total && t - t0 < every) return;  // a quick loop prints nothing
        last = t;
        double el = t - t0, eta = done > 0 ? el * (double)(total - done) / done : -1;
        printf("  %s: %ld/%ld %s | %.0f tok/s | %s, ETA %s\n", what.c_str(), done, total, unit.c_str(), el > 0 ? tokens / el : 0.0,
               human_duration(el).c_str(), done >= total ? "0s" : human_duration(eta).c_str());
        fflush(stdout);
    }
};
