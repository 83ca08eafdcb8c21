// config.h: the model configuration, its presets, the names of the attention variants and
// position encodings, and the checks that turn a bad flag combination into a clear error.
// GPTConfig is plain data (fixed-size fields) so a checkpoint can store it verbatim.
#pragma once
#include <algorithm>
#include <cmath>
#include "utils.h"

enum AttnKind { ATTN_MHA, ATTN_MQA, ATTN_GQA, ATTN_MLA, ATTN_MKA, ATTN_FMKA, ATTN_KVSPLICE, ATTN_COUNT };
enum PosKind { POS_ROPE, POS_ALIBI, POS_NONE, POS_LEARNED, POS_COUNT };
static const char* ATTN_NAMES[ATTN_COUNT] = {"mha", "mqa", "gqa", "mla", "mka", "fmka", "kvsplice"};
static const char* POS_NAMES[POS_COUNT] = {"rope", "alibi", "none", "learned"};
enum TokenizerId { TOK_UNKNOWN = 0, TOK_NEOX = 1, TOK_GPT2 = 2 };
static inline const char* tokenizer_name(int id) {
    return id == TOK_NEOX ? "gpt-neox-20b" : id == TOK_GPT2 ? "gpt2" : "unknown";
}
// the end-of-text id (<|endoftext|>) of each vocabulary; -1 when unknown (then the shards' own)
static inline int tokenizer_eos(int id) { return id == TOK_NEOX ? 0 : id == TOK_GPT2 ? 50256 : -1; }

struct GPTConfig {
    char preset[32];
    int vocab_size;         // logits the model scores (the tokenizer's ids are all below it)
    int padded_vocab_size;  // rows allocated: vocab_size rounded up to a multiple of 64
    int max_seq_len;        // rows of the learned position table; the longest T for POS_LEARNED
    int n_layer, n_head, d_model, d_ff, head_dim;
    int parallel_residual;  // 1: x + attn(ln1(x)) + mlp(ln2(x)) (Pythia/GPT-J); 0: GPT-2 sequential
    int tied_embeddings;    // 1: the classifier reuses wte
    int gelu_exact;         // 1: erf GELU (Pythia), 0: tanh approximation (GPT-2)
    int tokenizer_id;       // TokenizerId the vocab belongs to
    int attn, pos;          // AttnKind, PosKind
    float rotary_pct, rope_base, alibi_slope;  // alibi_slope 0: the paper's geometric slopes
    int n_kv_head;          // GQA groups G (MHA: n_head, MQA: 1)
    int kv_rank, rope_dim, q_rank, splice_rank, splice_ln;  // MLA / KVSplice (attention/)
    int rotary_dim() const {  // NeoX: the first rotary_pct of each head's dims are rotated
        return pos == POS_ROPE ? ((int)lrintf(head_dim * rotary_pct)) & ~1 : 0;
    }
};

static inline int parse_name(const char* s, const char* const* names, int n) {
    for (int i = 0; i < n; i++)
        if (strcmp(s, names[i]) == 0) return i;
    return -1;
}

// fills cfg from a preset; returns false for an unknown name
static bool config_from_preset(GPTConfig* cfg, const char* name) {
    GPTConfig c;
    memset(&c, 0, sizeof(c));
    snprintf(c.preset, sizeof(c.preset), "%s", name);
    c.rope_base = 10000.0f;
    if (strcmp(name, "tiny") == 0) {  // a scaled-down Pythia: the CPU default
        c.vocab_size = 50304; c.max_seq_len = 1024; c.n_layer = 4; c.d_model = 128; c.n_head = 4; c.d_ff = 512;
        c.parallel_residual = 1; c.tied_embeddings = 0; c.gelu_exact = 1; c.tokenizer_id = TOK_NEOX;
        c.pos = POS_ROPE; c.rotary_pct = 0.25f;
    } else if (strcmp(name, "pythia-14m") == 0 || strcmp(name, "pythia-31m") == 0) {  // EleutherAI's smallest Pythias
        bool w = name[7] == '3';
        c.vocab_size = 50304; c.max_seq_len = 2048; c.n_layer = 6; c.d_model = w ? 256 : 128; c.n_head = w ? 8 : 4; c.d_ff = w ? 1024 : 512;
        c.parallel_residual = 1; c.tied_embeddings = 0; c.gelu_exact = 1; c.tokenizer_id = TOK_NEOX;
        c.pos = POS_ROPE; c.rotary_pct = 0.25f;
    } else if (strcmp(name, "pythia-70m") == 0) {
        c.vocab_size = 50304; c.max_seq_len = 2048; c.n_layer = 6; c.d_model = 512; c.n_head = 8; c.d_ff = 2048;
        c.parallel_residual = 1; c.tied_embeddings = 0; c.gelu_exact = 1; c.tokenizer_id = TOK_NEOX;
        c.pos = POS_ROPE; c.rotary_pct = 0.25f;
    } else if (strcmp(name, "gpt2-124m") == 0) {
        c.vocab_size = 50257; c.max_seq_len = 1024; c.n_layer = 12; c.d_model = 768; c.n_head = 12; c.d_ff = 3072;
        c.parallel_residual = 0; c.tied_embeddings = 1; c.gelu_exact = 0; c.tokenizer_id = TOK_GPT2;
        c.pos = POS_LEARNED; c.rotary_pct = 1.0f;
    } else {
        return false;
    }
    c.attn = ATTN_MHA;
    c.rope_dim = -1;  // MLA: resolved by config_finalize
    *cfg = c;
    return true;
}

static inline bool is_mla_family(int a) { return a == ATTN_MLA || a == ATTN_KVSPLICE; }

// derived fields and defaults; call after every override. Explicit values are kept (and
// checked by config_validate), only unset ones (0, or -1 for rope_dim) get defaults.
static void config_finalize(GPTConfig* c) {
    c->padded_vocab_size = (c->vocab_size + 63) / 64 * 64;
    c->head_dim = c->n_head > 0 ? c->d_model / c->n_head : 0;
    if (c->attn == ATTN_MHA || c->attn == ATTN_MKA || c->attn == ATTN_FMKA) c->n_kv_head = c->n_head;
    if (c->attn == ATTN_MQA) c->n_kv_head = 1;
    if (is_mla_family(c->attn)) {
        c->n_kv_head = c->n_head;
        if (c->kv_rank == 0) c->kv_rank = c->d_model / 4;
        if (c->rope_dim < 0) c->rope_dim = c->pos == POS_ROPE ? (c->head_dim / 2) & ~1 : 0;
        if (c->attn == ATTN_KVSPLICE && c->splice_rank == 0) c->splice_rank = std::max(1, c->kv_rank / 2);
    } else if (c->rope_dim < 0) {
        c->rope_dim = 0;
    }
}


// every bad combination is a clear error with a hint; T is the sequence length to be run
static void config_validate(const GPTConfig* c, int T) {
    if (c->n_layer < 1 || c->d_model < 1 || c->n_head < 1 || c->d_ff < 1 || c->vocab_size < 2)
        fail_hint("check --layers/--d-model/--heads/--d-ff", "model sizes must be positive (layers %d, d_model %d, heads %d, d_ff %d, vocab %d)",
                  c->n_layer, c->d_model, c->n_head, c->d_ff, c->vocab_size);
    if (c->d_model % c->n_head != 0)
        fail_hint("pick a head count that divides d_model", "d_model %d is not divisible by %d heads", c->d_model, c->n_head);
    if (c->attn < 0 || c->attn >= ATTN_COUNT) fail("internal: attention kind %d out of range", c->attn);
    if (c->attn == ATTN_GQA) {
        if (c->n_kv_head < 1 || c->n_head % c->n_kv_head != 0)
            fail_hint("-g must divide the head count, e.g. -g 2 with 8 heads", "GQA with %d KV heads does not divide %d query heads",
                      c->n_kv_head, c->n_head);
    }
    if (is_mla_family(c->attn)) {
        if (c->kv_rank > c->d_model)
            fail_hint("the latent must be narrower than the model: 1 <= -k <= d_model", "-k %d is larger than d_model %d", c->kv_rank, c->d_model);
        if (c->kv_rank < 1) fail_hint("e.g. -k 128", "-k %d must be positive", c->kv_rank);
        if (c->pos == POS_ROPE && (c->rope_dim < 2 || c->rope_dim % 2))
            fail_hint("use an even --rope-dim such as head_dim/2", "MLA rope key width --rope-dim %d must be even and >= 2", c->rope_dim);
        if (c->pos != POS_ROPE && c->rope_dim != 0)
            fail_hint("drop --rope-dim, or use -p rope", "--rope-dim %d needs -p rope (with %s the latent is all that is cached)", c->rope_dim, POS_NAMES[c->pos]);
        if (c->q_rank < 0 || c->q_rank > c->d_model)
            fail_hint("0 (full rank) <= --q-rank <= d_model", "--q-rank %d is out of range for d_model %d", c->q_rank, c->d_model);
    } else if (c->kv_rank || c->q_rank || c->rope_dim > 0) {
        fail_hint("-k, --q-rank and --rope-dim apply to -a mla and -a kvsplice", "-k/--q-rank/--rope-dim given for -a %s", ATTN_NAMES[c->attn]);
    }
    if (c->attn == ATTN_KVSPLICE) {
        if (c->splice_rank < 1 || c->splice_rank > c->kv_rank)
            fail_hint("the splice compresses the latent: 1 <= -r <= -k", "-r %d is out of range for -k %d", c->splice_rank, c->kv_rank);
    } else if (c->splice_rank || c->splice_ln) {
        fail_hint("-r and --splice-ln apply to -a kvsplice", "-r/--splice-ln given for -a %s", ATTN_NAMES[c->attn]);
    }
    if (c->pos == POS_ROPE && !is_mla_family(c->attn)) {
        if (!(c->rotary_pct > 0.0f && c->rotary_pct <= 1.0f))
            fail_hint("use --rotary-pct in (0, 1]", "rotary_pct %g is out of range", c->rotary_pct);
        if (c->rotary_dim() < 2)
            fail_hint("raise --rotary-pct or the head dim", "RoPE would rotate %d of %d head dims; it needs at least 2",
                      c->rotary_dim(), c->head_dim);
        if (!(c->rope_base > 1.0f)) fail_hint("the usual base is 10000", "rope base %g must be > 1", c->rope_base);
    }
    if (c->alibi_slope < 0.0f) fail_hint("use a positive slope such as 0.0625", "--alibi-slope %g must be >= 0", c->alibi_slope);
    if (T < 1) fail_hint("use -t 64 or more", "sequence length %d must be positive", T);
    if (c->pos == POS_LEARNED && T > c->max_seq_len)
        fail_hint("learned positions exist only up to max_seq_len: lower -t, or raise --max-seq",
                  "sequence length %d exceeds the learned position table (%d)", T, c->max_seq_len);
}
