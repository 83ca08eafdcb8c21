// checkpoint.h: save and load the whole training state (config, parameters, AdamW moments,
// step, data-order RNG, the data it was trained on) so a resumed run continues bitwise
// identically. Written atomically: a temp file beside the target, fsync, then rename, so a crash
// never leaves half a checkpoint, and a failed write removes its temp file.
//
// Nothing in a checkpoint is trusted on load: the header carries a CRC32C of itself and one of
// each payload part (parameters; AdamW moments), every config field is range-checked and the
// derived ones recomputed, and the file size must equal what the config implies, all before
// anything large is allocated. Version 1 files (no checksums) still load, with a warning.
#pragma once
#include <unistd.h>
#include "model.h"

#define CKPT_MAGIC 0x4B56434Bu  // "KVCK"
#define CKPT_VERSION 2
#define CKPT_PATH_CHARS 1024

struct CheckpointHeader {
    uint32_t magic, version, header_bytes, config_bytes;
    GPTConfig config;
    int64_t step;            // optimizer steps completed
    uint64_t data_rng;       // training DataLoader RNG state after those steps
    uint64_t n_floats;       // ParamSet total: the parameters; m and v hold as many each
    uint32_t has_moments;    // 1: m and v follow the parameters
    float best_val_loss;     // for reporting / early stopping (inf: never validated)
    int32_t train_T;         // sequence length it was trained at (the evaluator's default)
    uint32_t crc_params;     // CRC32C of the parameters' bytes
    uint32_t crc_moments;    // CRC32C of m's bytes then v's (0 without moments)
    char train_data[CKPT_PATH_CHARS];  // the shard globs it was trained / validated on (absolute)
    char val_data[CKPT_PATH_CHARS];
    uint32_t ranks;          // data-parallel ranks that trained it (0: unknown, an older file)
    uint32_t accum;          // micro-batches accumulated per rank per step (0: unknown)
    uint32_t optim;          // 1 + OPT_ADAMW / OPT_SPAM (llmc/train.h) that trained it (0: unknown, an older file: AdamW)
    uint32_t spam_interval;  // SPAM's moment-reset interval (0 for AdamW)
    uint32_t reserved[11];
    uint32_t header_crc;     // CRC32C of every byte of the header before this field
};

// version 1 (before checksums), read for compatibility
struct CheckpointHeaderV1 {
    uint32_t magic, version, config_bytes, reserved;
    GPTConfig config;
    int64_t step;
    uint64_t data_rng;
    uint64_t n_floats;
    float best_val_loss;
    int32_t train_T;
    float pad[14];
};

static uint32_t checkpoint_header_crc(const CheckpointHeader& h) { return crc32c_update(0, &h, offsetof(CheckpointHeader, header_crc)); }

// a relative glob made absolute (so --resume and eval_gpt find the data from any directory);
// empty when it does not fit the header
static std::string absolute_glob(const std::string& g) {
    std::string a = g;
    if (!g.empty() && g[0] != '/') {
        char cwd[4096];
        if (getcwd(cwd, sizeof cwd)) a = std::string(cwd) + "/" + g;
    }
    return a.size() < CKPT_PATH_CHARS ? a : std::string();
}

// with_moments = false writes the parameters alone (FILE.best: what evaluation and sampling read,
// a third of the size); such a file cannot be resumed from
static void checkpoint_save(const char* path, GPT& model, int64_t step, uint64_t data_rng, float best_val, int train_T = 0,
                            const std::string& train_data = "", const std::string& val_data = "", bool with_moments = true,
                            int ranks = 0, int accum = 0, int optim = -1, int spam_interval = 0) {
    size_t n = model.ps.total;
    for (size_t i = 0; i < n; i++)
        if (!std::isfinite(model.params[i]))
            fail_hint("lower the learning rate (-l) and resume from an earlier checkpoint",
                      "parameter %zu is %g: refusing to write a checkpoint of a diverged model to '%s' (any earlier file there is kept)",
                      i, model.params[i], path);
    CheckpointHeader h;
    memset(&h, 0, sizeof(h));
    h.magic = CKPT_MAGIC;
    h.version = CKPT_VERSION;
    h.header_bytes = sizeof(CheckpointHeader);
    h.config_bytes = sizeof(GPTConfig);
    h.config = model.cfg;
    h.step = step;
    h.data_rng = data_rng;
    h.n_floats = n;
    h.has_moments = with_moments ? 1 : 0;
    h.best_val_loss = best_val;
    h.train_T = train_T;
    h.ranks = (uint32_t)ranks;
    h.accum = (uint32_t)accum;
    h.optim = (uint32_t)(optim + 1);
    h.spam_interval = (uint32_t)spam_interval;
    if (with_moments && !model.m) { model.m = alloc_floats<float>(n); model.v = alloc_floats<float>(n); }
    h.crc_params = crc32c_update(0, model.params, n * sizeof(float));
    h.crc_moments = with_moments ? crc32c_update(crc32c_update(0, model.m, n * sizeof(float)), model.v, n * sizeof(float)) : 0;
    snprintf(h.train_data, sizeof h.train_data, "%s", absolute_glob(train_data).c_str());
    snprintf(h.val_data, sizeof h.val_data, "%s", absolute_glob(val_data).c_str());
    h.header_crc = checkpoint_header_crc(h);

    std::string tmp = std::string(path) + ".tmp";
    FILE* f = fopen(tmp.c_str(), "wb");
    if (!f) fail_hint("check that the directory of -o exists and is writable", "cannot write checkpoint '%s': %s", tmp.c_str(), strerror(errno));
    bool ok = fwrite(&h, sizeof(h), 1, f) == 1 && fwrite(model.params, sizeof(float), n, f) == n &&
              (!with_moments || (fwrite(model.m, sizeof(float), n, f) == n && fwrite(model.v, sizeof(float), n, f) == n)) && fflush(f) == 0 &&
              fsync(fileno(f)) == 0;
    int err = errno;
    if (fclose(f) != 0 && ok) { ok = false; err = errno; }
    if (!ok) {
        unlink(tmp.c_str());  // never leave half a checkpoint behind
        fail_hint("is the disk full? (the previous checkpoint, if any, is untouched)", "cannot write checkpoint '%s': %s", path, strerror(err));
    }
    if (rename(tmp.c_str(), path) != 0) {
        err = errno;
        unlink(tmp.c_str());
        fail("cannot rename '%s' to '%s': %s", tmp.c_str(), path, strerror(err));
    }
}

// every stored config field in range and consistent, before anything is allocated from it
static void checkpoint_validate_config(const GPTConfig& c, const char* path) {
    const char* hint = "the checkpoint is corrupt or was written by another program; use another checkpoint";
    if (!memchr(c.preset, 0, sizeof c.preset)) fail_hint(hint, "checkpoint '%s': the preset name is not terminated", path);
    auto field = [&](const char* name, double v, double lo, double hi) {
        if (!(v >= lo && v <= hi)) fail_hint(hint, "checkpoint '%s': config field %s = %g is out of range [%g, %g]", path, name, v, lo, hi);
    };
    field("attn", c.attn, 0, ATTN_COUNT - 1);
    field("pos", c.pos, 0, POS_COUNT - 1);
    field("vocab_size", c.vocab_size, 2, 1 << 24);
    field("padded_vocab_size", c.padded_vocab_size, 2, 1 << 24);
    field("max_seq_len", c.max_seq_len, 1, 1 << 22);
    field("n_layer", c.n_layer, 1, 1024);
    field("n_head", c.n_head, 1, 1024);
    field("d_model", c.d_model, 1, 1 << 16);
    field("d_ff", c.d_ff, 1, 1 << 18);
    field("head_dim", c.head_dim, 1, 1 << 16);
    field("parallel_residual", c.parallel_residual, 0, 1);
    field("tied_embeddings", c.tied_embeddings, 0, 1);
    field("gelu_exact", c.gelu_exact, 0, 1);
    field("tokenizer_id", c.tokenizer_id, 0, 2);
    field("rotary_pct", c.rotary_pct, 0, 1);
    field("rope_base", c.rope_base, 0, 1e9);
    field("alibi_slope", c.alibi_slope, 0, 1e3);
    field("n_kv_head", c.n_kv_head, 1, c.n_head);
    field("kv_rank", c.kv_rank, 0, c.d_model);
    field("rope_dim", c.rope_dim, 0, 1 << 16);
    field("q_rank", c.q_rank, 0, c.d_model);
    field("splice_rank", c.splice_rank, 0, std::max(0, c.kv_rank));
    field("splice_ln", c.splice_ln, 0, 1);
    GPTConfig derived = c;
    config_finalize(&derived);
    if (memcmp(&derived, &c, sizeof c) != 0)
        fail_hint(hint, "checkpoint '%s': the derived config fields (padded vocab, head dim, KV heads, ranks) do not follow from the others", path);
    config_validate(&c, 1);
}

// reads and checks the header: checksum, config, and the file size the config implies
static CheckpointHeader checkpoint_read_header(const char* path) {
    const char* hint_other = "pass a file written by ./train_gpt -o";
    require_regular_file(path, "checkpoint", hint_other);
    FILE* f = fopenCheck(path, "rb");
    CheckpointHeader h;
    memset(&h, 0, sizeof h);
    size_t got = fread(&h, 1, sizeof h, f);
    fseeko(f, 0, SEEK_END);
    uint64_t file_bytes = (uint64_t)ftello(f);
    fclose(f);
    if (got < 8) fail_hint(hint_other, "checkpoint '%s' is %zu bytes: not a kvgpt checkpoint", path, got);
    if (h.magic != CKPT_MAGIC) fail_hint(hint_other, "'%s' is not a kvgpt checkpoint (bad magic 0x%08x)", path, h.magic);
    if (h.version == 1) {
        CheckpointHeaderV1 o;
        memcpy(&o, &h, sizeof o);
        if (got < sizeof o || o.config_bytes != sizeof(GPTConfig)) fail_hint("the file is truncated; use another checkpoint", "checkpoint '%s' (version 1) is shorter than its header", path);
        fprintf(stderr, "warning: checkpoint '%s' is version 1: it has no checksums, so its contents are not verified\n", path);
        memset(&h, 0, sizeof h);
        h.magic = o.magic; h.version = 1; h.header_bytes = sizeof o; h.config_bytes = o.config_bytes;
        h.config = o.config; h.step = o.step; h.data_rng = o.data_rng; h.n_floats = o.n_floats; h.has_moments = 1;
        h.best_val_loss = o.best_val_loss; h.train_T = o.train_T;
    } else if (h.version == CKPT_VERSION) {
        if (got < sizeof h) fail_hint("the file is truncated; use another checkpoint", "checkpoint '%s' is %zu bytes, shorter than its %zu-byte header", path, got, sizeof h);
        if (h.header_bytes != sizeof h || h.config_bytes != sizeof(GPTConfig) || h.header_crc != checkpoint_header_crc(h))
            fail_hint("the file is corrupt (flipped bits, an overwritten header); use another checkpoint", "checkpoint '%s': header checksum mismatch", path);
    } else {
        fail_hint("use the kvgpt build that wrote it, or re-train with this one", "checkpoint '%s' has version %u; this build reads versions 1 and %d",
                  path, h.version, CKPT_VERSION);
    }
    checkpoint_validate_config(h.config, path);
    const char* corrupt = "the file is truncated or corrupt; use another checkpoint";
    if (h.step < 0 || h.train_T < 0 || h.has_moments > 1 || std::isnan(h.best_val_loss) ||
        !memchr(h.train_data, 0, sizeof h.train_data) || !memchr(h.val_data, 0, sizeof h.val_data))
        fail_hint(corrupt, "checkpoint '%s': header fields out of range (step %lld, train_T %d)", path, (long long)h.step, h.train_T);
    size_t want_floats = GPT(h.config, false).ps.total;
    if (h.n_floats != want_floats)
        fail_hint(corrupt, "checkpoint '%s' stores %llu floats per tensor set; its config implies %zu", path, (unsigned long long)h.n_floats, want_floats);
    uint64_t payload = 0;
    if (!mul_fits(h.n_floats, (h.has_moments ? 3 : 1) * sizeof(float), &payload) || payload + h.header_bytes != file_bytes)
        fail_hint(corrupt, "checkpoint '%s' is %llu bytes; its header implies %llu", path, (unsigned long long)file_bytes,
                  (unsigned long long)(payload + h.header_bytes));
    return h;
}

// n floats at the current position of f into out; their CRC32C must match (version >= 2)
static void checkpoint_read_part(FILE* f, float* out, size_t n, const char* path, const char* what) {
    if (fread(out, sizeof(float), n, f) != n)
        fail_hint("the file is truncated; use another checkpoint", "checkpoint '%s': short read of the %s", path, what);
}
static void checkpoint_check_params(const CheckpointHeader& h, const float* p, size_t n, const char* path) {
    if (h.version >= 2 && crc32c_update(0, p, n * sizeof(float)) != h.crc_params)
        fail_hint("the file is corrupt (flipped bits, overwritten data); use another checkpoint", "checkpoint '%s': the parameters fail their checksum", path);
    for (size_t i = 0; i < n; i++)
        if (!std::isfinite(p[i]))
            fail_hint("it was written by a diverged run; use an earlier checkpoint", "checkpoint '%s': parameter %zu is %g", path, i, p[i]);
}

static CheckpointHeader checkpoint_load(const char* path, GPT& model) {
    CheckpointHeader h = checkpoint_read_header(path);
    if (h.n_floats != model.ps.total || memcmp(&h.config, &model.cfg, sizeof(GPTConfig)) != 0)
        fail_hint("build the model from the checkpoint's own config", "checkpoint '%s' does not match this model's shape", path);
    if (!h.has_moments)
        fail_hint("resume from the run's latest checkpoint (-o FILE), not FILE.best", "checkpoint '%s' holds weights only (no optimizer state): it cannot be resumed", path);
    size_t n = model.ps.total;
    FILE* f = fopenCheck(path, "rb");
    fseeko(f, h.header_bytes, SEEK_SET);
    if (!model.m) { model.m = alloc_floats<float>(n); model.v = alloc_floats<float>(n); }
    checkpoint_read_part(f, model.params, n, path, "parameters");
    checkpoint_read_part(f, model.m, n, path, "AdamW first moments");
    checkpoint_read_part(f, model.v, n, path, "AdamW second moments");
    fclose(f);
    checkpoint_check_params(h, model.params, n, path);
    if (h.version >= 2 && crc32c_update(crc32c_update(0, model.m, n * sizeof(float)), model.v, n * sizeof(float)) != h.crc_moments)
        fail_hint("the file is corrupt; use another checkpoint", "checkpoint '%s': the AdamW moments fail their checksum", path);
    return h;
}

// the parameters alone of a checkpoint (e.g. FILE.best on resume, or for the evaluator), checked
// like checkpoint_load. false when the file is missing or belongs to another model; out holds
// ps.total floats
static bool checkpoint_read_params(const char* path, const GPT& model, float* out, int64_t* step) {
    if (access(path, F_OK) != 0) return false;
    CheckpointHeader h = checkpoint_read_header(path);
    if (h.n_floats != model.ps.total || memcmp(&h.config, &model.cfg, sizeof(GPTConfig)) != 0) return false;
    FILE* f = fopenCheck(path, "rb");
    fseeko(f, h.header_bytes, SEEK_SET);
    checkpoint_read_part(f, out, model.ps.total, path, "parameters");
    fclose(f);
    checkpoint_check_params(h, out, model.ps.total, path);
    *step = h.step;
    return true;
}
