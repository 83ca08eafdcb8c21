// attention.h: the interface every attention variant implements, and the factory.
// A variant owns its parameters (declared into the model's ParamSet), its saved activations,
// its backward scratch and its KV cache. It maps the normalised input x (B,T,C) to out (B,T,C),
// output projection included, and must be causal: out at t depends only on x at positions <= t.
// One file per variant: gqa.h (MHA / MQA / GQA), mla.h (MLA, and MLA+KVSplice with
// kvsplice.h), mka.h (memorized-key attention). core.h is the shared softmax-attention core.
#pragma once
#include <memory>
#include <string>
#include <vector>
#include "../llmc/config.h"
#include "../llmc/params.h"
#include "kv_cache.h"

// where the queries / keys of the last forward live, after the position encoding: `heads` vectors
// of `dim` per token; dims [rot_off, rot_off + rot) are RoPE-rotated (NeoX pairs i, i + rot/2)
struct QKView {
    std::string name;
    const float* p;
    long row, head;
    int heads, dim, rot_off, rot;
};

struct Attention {
    virtual ~Attention() {}
    // register parameters for layer `layer`
    virtual void declare_params(ParamSet& ps, int layer) = 0;
    // initialisation beyond ParamSet's defaults (e.g. orthogonal matrices); after ps.init
    virtual void init_params(float* /*params*/, Rng& /*rng*/) {}
    // floats of saved activations (kept per layer) and of backward scratch (shared by layers)
    virtual size_t act_floats(int B, int T) const = 0;
    virtual size_t scratch_floats(int B, int T) const = 0;
    virtual void bind(float* acts, float* scratch) = 0;
    // x, out are (B,T,C). forward saves what backward needs in its activations.
    virtual void forward(const float* params, const float* x, float* out, int B, int T) = 0;
    // dx (B,T,C) is overwritten; parameter gradients accumulate into grads
    virtual void backward(const float* params, float* grads, const float* x, const float* dout, float* dx, int B,
                          int T) = 0;
    // KV-cache elements per token per layer, by formula
    virtual long kv_elems_per_token() const = 0;
    // incremental decoding of n_seq sequences at once with the KV cache (kv_cache.h). decode_begin
    // sizes the cache for n_seq sequences of up to max_T held tokens each, allocated once (and
    // prepares any absorbed weights). decode_step takes n rows x (n, C): row i is the token of
    // sequence seq[i] at position pos[i]; the rows of one sequence are consecutive positions in
    // order. Every row's keys and values are appended first, then row i attends to what its
    // sequence holds up to itself, so one call prefills a whole prompt (n = its length) and B
    // sequences decode together (n = B, one row each). Writes out (n, C). Positions are not
    // slots: after a press evicted tokens (press.h), a sequence holds fewer tokens than its length.
    virtual void decode_begin(const float* params, int n_seq, int max_T) = 0;
    virtual void decode_step(const float* params, const float* x, const int* seq, const int* pos, int n, float* out) = 0;
    virtual KVCache& kv_cache() = 0;
    // the attention core that scores the cache (MLA: the absorbed form's, every head reading the
    // latent), and where RoPE sits in its scoring-form queries (for the press statistics)
    virtual const AttnCore& decode_core() const = 0;
    virtual const Rope* decode_rope(int* rot_off) const = 0;
    // floats per token per sequence the cache buffers really hold (measured, to check against the formula)
    size_t cache_floats_per_token() { return kv_cache().floats_per_token(); }
    // floats the cache holds per sequence regardless of length (e.g. MKA's running sum)
    virtual size_t cache_floats_fixed() const { return 0; }
    // floats of weights one decode_step reads, whatever n is (after decode_begin; MLA: the
    // absorbed matrices it decodes with): with the cache, the bytes a decoded token must move
    virtual size_t decode_weight_floats() const = 0;
    // presses (press.h) that read keys or values see, for query head h, the key it scores and the
    // value it reads for slot j of sequence s, in the model's own basis: the cached rows by
    // default; MLA up-projects the latent per head (W_UK_h c + the rope key; W_UV_h c)
    virtual int press_key_dim() { KVCache& c = kv_cache(); return c.wa + c.wb; }
    virtual void press_key(int h, int s, int j, float* out) {
        KVCache& c = kv_cache();
        int g = h / decode_core().group;
        memcpy(out, c.ka(s, g, j), sizeof(float) * c.wa);
        if (c.wb) memcpy(out + c.wa, c.kb(s, g, j), sizeof(float) * c.wb);
    }
    virtual float press_value_norm(int h, int s, int j) {
        KVCache& c = kv_cache();
        const float* v = c.val(s, h / decode_core().group, j);
        double n = 0.0;
        for (int k = 0; k < (c.wv ? c.wv : c.wa); k++) n += (double)v[k] * v[k];
        return (float)sqrt(n);
    }
    // the queries and keys of the last forward (for Q/K statistics)
    virtual std::vector<QKView> qk_views() const = 0;
};

static std::unique_ptr<Attention> make_attention(const GPTConfig& cfg);  // attention/all.h
