// dataloader.h: kvgpt token shards (format in data/shards.py and README) and batch loading.
// Shards are mmap'd (64-bit offsets) and fully validated when opened: magic, version, size,
// token width, tokenizer, and that every token id is below the vocab. Training batches are
// random windows drawn by a seeded RNG whose state goes into checkpoints (deterministic order,
// bitwise resume); validation batches are disjoint windows read in order from the start.
#pragma once
#include <fcntl.h>
#include <glob.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <string>
#include <vector>
#include "config.h"
#include "rng.h"
#include "utils.h"

#define SHARD_MAGIC 0x4B564750
#define SHARD_VERSION 1
#define SHARD_HEADER_INTS 256

struct Shard {
    std::string path;
    void* map = nullptr;
    size_t map_len = 0;
    const uint8_t* tokens = nullptr;
    long n_tokens = 0;
    int width = 2, tokenizer_id = 0, vocab_size = 0, eos_id = 0, n_docs = 0;
    int token(long i) const { return width == 2 ? ((const uint16_t*)tokens)[i] : (int)((const uint32_t*)tokens)[i]; }
};

// opens and validates one shard; model_vocab/model_tokenizer <= 0 skip those checks
static Shard shard_open(const std::string& path, int model_vocab, int model_tokenizer) {
    Shard s;
    s.path = path;
    require_regular_file(path.c_str(), "shard", "check the -i / -j paths: they name token shards (.bin files)");
    int fd = open(path.c_str(), O_RDONLY | O_NONBLOCK);  // O_NONBLOCK: a FIFO swapped in after the check cannot hang us
    if (fd < 0) fail_hint("check the -i / -j paths", "cannot open shard '%s': %s", path.c_str(), strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) fail("cannot stat shard '%s': %s", path.c_str(), strerror(errno));
    if (!S_ISREG(st.st_mode)) fail_hint("check the -i / -j paths", "shard '%s' is not a regular file", path.c_str());
    size_t len = (size_t)st.st_size;
    const char* remake = "re-create it with the data/ prep scripts (e.g. python3 data/tinyshakespeare.py)";
    if (len < SHARD_HEADER_INTS * 4)
        fail_hint(remake, "shard '%s' is %zu bytes, shorter than its 1024-byte header (truncated?)", path.c_str(), len);
    s.map = mmap(nullptr, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (s.map == MAP_FAILED) fail("cannot mmap shard '%s': %s", path.c_str(), strerror(errno));
    s.map_len = len;
    const int32_t* h = (const int32_t*)s.map;
    if ((uint32_t)h[0] != SHARD_MAGIC)
        fail_hint(remake, "shard '%s' has bad magic 0x%08x (expected 0x%08x): not a kvgpt token shard", path.c_str(),
                  (uint32_t)h[0], SHARD_MAGIC);
    if (h[1] != SHARD_VERSION)
        fail_hint(remake, "shard '%s' has version %d; this build reads version %d", path.c_str(), h[1], SHARD_VERSION);
    uint64_t n_tokens = (uint64_t)(uint32_t)h[2] | ((uint64_t)(uint32_t)h[3] << 32);
    s.width = h[4];
    s.tokenizer_id = h[5];
    s.vocab_size = h[6];
    s.eos_id = h[7];
    s.n_docs = h[8];
    if (s.width != 2 && s.width != 4) fail_hint(remake, "shard '%s' has token width %d (must be 2 or 4)", path.c_str(), s.width);
    // overflow-safe: a count near 2^62 must not wrap around to the file's size
    uint64_t payload = 0;
    if (!mul_fits(n_tokens, (uint64_t)s.width, &payload) || payload != len - SHARD_HEADER_INTS * 4)
        fail_hint(remake, "shard '%s' is truncated or corrupt: header says %llu tokens of %d bytes, file has %zu bytes after the header",
                  path.c_str(), (unsigned long long)n_tokens, s.width, len - SHARD_HEADER_INTS * 4);
    s.n_tokens = (long)n_tokens;
    if (s.tokenizer_id < 0 || s.tokenizer_id > TOK_GPT2 || s.vocab_size < 1 || s.eos_id < 0 || s.eos_id >= s.vocab_size || s.n_docs < 0)
        fail_hint(remake, "shard '%s' has a corrupt header (tokenizer %d, vocab %d, eos %d, docs %d)", path.c_str(), s.tokenizer_id,
                  s.vocab_size, s.eos_id, s.n_docs);
    if (model_tokenizer > 0 && s.tokenizer_id != model_tokenizer)
        fail_hint("use data made with the model's tokenizer, or another preset (-m)",
                  "shard '%s' was made with tokenizer '%s' but the model uses '%s'", path.c_str(),
                  tokenizer_name(s.tokenizer_id), tokenizer_name(model_tokenizer));
    if (model_vocab > 0 && s.vocab_size > model_vocab)
        fail_hint("use data made with the model's tokenizer, or a model with a larger vocab",
                  "shard '%s' has vocab %d, larger than the model's %d: the tokenizer does not match the model",
                  path.c_str(), s.vocab_size, model_vocab);
    s.tokens = (const uint8_t*)s.map + SHARD_HEADER_INTS * 4;
    for (long i = 0; i < s.n_tokens; i++) {
        int t = s.token(i);
        if (t >= s.vocab_size)
            fail_hint(remake, "shard '%s': token id %d at index %ld is >= the vocab size %d", path.c_str(), t, i, s.vocab_size);
    }
    return s;
}

struct DataLoader {
    std::vector<Shard> shards;
    long total_tokens = 0;
    int tokenizer_id = 0, vocab_size = 0, eos_id = 0;  // eos_id: the end-of-text id the shards were made with
    int B = 0, T = 0;
    std::vector<int> inputs, targets;  // (B,T)
    Rng rng;                            // training order
    size_t seq_shard = 0;               // validation cursor
    long seq_pos = 0;

    // pattern: one glob ("data/x/train_*.bin") or several joined by commas (a mixture: windows are
    // drawn uniformly over all of their tokens); shards are sorted by name within each glob
    void open(const std::string& pattern, int B_, int T_, int model_vocab, int model_tokenizer, uint64_t seed) {
        B = B_;
        T = T_;
        if (pattern.empty()) fail_hint("pass the shards' glob with -i / -j", "the data path is empty");
        std::vector<std::string> paths;
        for (const std::string& one : split_list(pattern)) {
            if (one.empty()) fail_hint("separate globs with single commas", "data path '%s' has an empty glob", pattern.c_str());
            glob_t g;
            int rc = glob(one.c_str(), 0, nullptr, &g);
            if (rc != 0 || g.gl_pathc == 0) {
                globfree(&g);
                fail_hint("the default data paths are relative to the repository root: run from there (or `make data` to rebuild the "
                          "bundled shards), or pass the shards' glob (-i/-j)",
                          "no token shards match '%s'", one.c_str());
            }
            for (size_t k = 0; k < g.gl_pathc; k++) {
                for (const std::string& q : paths)
                    if (same_file(q, g.gl_pathv[k])) fail_hint("each shard may appear once", "shard '%s' is matched twice by '%s'", g.gl_pathv[k], pattern.c_str());
                paths.push_back(g.gl_pathv[k]);
            }
            globfree(&g);
        }
        for (size_t i = 0; i < paths.size(); i++) {
            shards.push_back(shard_open(paths[i], model_vocab, model_tokenizer));
            const Shard& s = shards.back();
            if (i > 0 && s.tokenizer_id != shards[0].tokenizer_id)
                fail("shards '%s' and '%s' use different tokenizers", shards[0].path.c_str(), s.path.c_str());
            if (s.n_tokens < T + 1)
                fail_hint("use a shorter -t, or bigger shards", "shard '%s' has %ld tokens, fewer than one window of T+1 = %d",
                          s.path.c_str(), s.n_tokens, T + 1);
            total_tokens += s.n_tokens;
            vocab_size = std::max(vocab_size, s.vocab_size);
        }
        tokenizer_id = shards[0].tokenizer_id;
        eos_id = shards[0].eos_id;
        inputs.assign((size_t)B * T, 0);
        targets.assign((size_t)B * T, 0);
        rng.seed_with(seed);
    }
    ~DataLoader() {
        for (Shard& s : shards) munmap(s.map, s.map_len);
    }
    void load_window(int b, const Shard& s, long pos) {
        for (int t = 0; t < T; t++) {
            inputs[(size_t)b * T + t] = s.token(pos + t);
            targets[(size_t)b * T + t] = s.token(pos + t + 1);
        }
    }
    // training: B windows at uniformly random offsets over all shards. Data-parallel ranks each
    // pass their rank as `part` of `parts`: every rank draws all parts x B windows (so the RNG
    // stays in step everywhere) and loads only its own B, the ones a single process would train
    // as micro-batch `part` of those `parts`
    void next_random_batch(int part = 0, int parts = 1) {
        long windows = 0;
        for (const Shard& s : shards) windows += s.n_tokens - T;
        for (int b = 0; b < B * parts; b++) {
            long r = (long)rng.below((uint64_t)windows);
            if (b / B != part) continue;
            size_t i = 0;
            while (r >= shards[i].n_tokens - T) r -= shards[i++].n_tokens - T;
            load_window(b % B, shards[i], r);
        }
    }
    // validation: disjoint windows in order; returns false (and rewinds) when a full batch no longer fits
    void reset() { seq_shard = 0; seq_pos = 0; }
    bool next_sequential_batch() {
        for (int b = 0; b < B; b++) {
            while (seq_shard < shards.size() && seq_pos + T + 1 > shards[seq_shard].n_tokens) { seq_shard++; seq_pos = 0; }
            if (seq_shard >= shards.size()) { reset(); return false; }
            load_window(b, shards[seq_shard], seq_pos);
            seq_pos += T;
        }
        return true;
    }
};
