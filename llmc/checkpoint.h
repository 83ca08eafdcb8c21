// checkpoint.h: save and load the whole training state (config, parameters, AdamW moments,
// step, data-order RNG) so a resumed run continues bitwise identically. Written atomically:
// a temp file beside the target, fsync, then rename, so a crash never leaves half a checkpoint.
#pragma once
#include <unistd.h>
#include "model.h"

#define CKPT_MAGIC 0x4B56434Bu  // "KVCK"
#define CKPT_VERSION 1

struct CheckpointHeader {
    uint32_t magic, version, config_bytes, reserved;
    GPTConfig config;
    int64_t step;            // optimizer steps completed
    uint64_t data_rng;       // training DataLoader RNG state after those steps
    uint64_t n_floats;       // ParamSet total (params, then m, then v)
    float best_val_loss;     // for reporting / early stopping
    int32_t train_T;         // sequence length it was trained at (the evaluator's default)
    float pad[14];
};

static void checkpoint_save(const char* path, GPT& model, int64_t step, uint64_t data_rng, float best_val, int train_T = 0) {
    CheckpointHeader h;
    memset(&h, 0, sizeof(h));
    h.magic = CKPT_MAGIC;
    h.version = CKPT_VERSION;
    h.config_bytes = sizeof(GPTConfig);
    h.config = model.cfg;
    h.step = step;
    h.data_rng = data_rng;
    h.n_floats = model.ps.total;
    h.best_val_loss = best_val;
    h.train_T = train_T;
    if (!model.m) { model.m = alloc_floats<float>(model.ps.total); model.v = alloc_floats<float>(model.ps.total); }
    std::string tmp = std::string(path) + ".tmp";
    FILE* f = fopenCheck(tmp.c_str(), "wb");
    fwriteCheck(&h, sizeof(h), 1, f);
    fwriteCheck(model.params, sizeof(float), model.ps.total, f);
    fwriteCheck(model.m, sizeof(float), model.ps.total, f);
    fwriteCheck(model.v, sizeof(float), model.ps.total, f);
    if (fflush(f) != 0 || fsync(fileno(f)) != 0) fail("cannot flush checkpoint '%s': %s", tmp.c_str(), strerror(errno));
    fcloseCheck(f);
    if (rename(tmp.c_str(), path) != 0) fail("cannot rename '%s' to '%s': %s", tmp.c_str(), path, strerror(errno));
}

// reads just the header (to build the model with the stored config)
static CheckpointHeader checkpoint_read_header(const char* path) {
    CheckpointHeader h;
    FILE* f = fopenCheck(path, "rb");
    if (fread(&h, sizeof(h), 1, f) != 1) fail_hint("the file is truncated; use another checkpoint", "checkpoint '%s' is shorter than its header", path);
    fclose(f);
    if (h.magic != CKPT_MAGIC) fail_hint("pass a file written by ./train_gpt -o", "'%s' is not a kvgpt checkpoint (bad magic 0x%08x)", path, h.magic);
    if (h.version != CKPT_VERSION || h.config_bytes != sizeof(GPTConfig))
        fail_hint("re-train with this build, or use the build that wrote it", "checkpoint '%s' has version %u (config %u bytes); this build reads version %d (%zu bytes)",
                  path, h.version, h.config_bytes, CKPT_VERSION, sizeof(GPTConfig));
    return h;
}

static CheckpointHeader checkpoint_load(const char* path, GPT& model) {
    CheckpointHeader h = checkpoint_read_header(path);
    if (h.n_floats != model.ps.total || memcmp(&h.config, &model.cfg, sizeof(GPTConfig)) != 0)
        fail_hint("build the model from the checkpoint's own config", "checkpoint '%s' does not match this model's shape", path);
    FILE* f = fopenCheck(path, "rb");
    fseeko(f, sizeof(h), SEEK_SET);
    if (!model.m) { model.m = alloc_floats<float>(model.ps.total); model.v = alloc_floats<float>(model.ps.total); }
    freadCheck(model.params, sizeof(float), model.ps.total, f);
    freadCheck(model.m, sizeof(float), model.ps.total, f);
    freadCheck(model.v, sizeof(float), model.ps.total, f);
    fclose(f);
    return h;
}

// the parameters alone of a checkpoint written for this model (e.g. FILE.best on resume);
// false when the file is missing or belongs to another model
// out holds ps.total floats
static bool checkpoint_read_params(const char* path, const GPT& model, float* out, int64_t* step) {
    FILE* f = fopen(path, "rb");
    if (!f) return false;
    CheckpointHeader h;
    bool ok = fread(&h, sizeof(h), 1, f) == 1 && h.magic == CKPT_MAGIC && h.version == CKPT_VERSION &&
              h.n_floats == model.ps.total && memcmp(&h.config, &model.cfg, sizeof(GPTConfig)) == 0;
    if (ok) {
        ok = fread(out, sizeof(float), model.ps.total, f) == model.ps.total;
        *step = h.step;
    }
    fclose(f);
    return ok;
}
