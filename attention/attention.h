// attention.h: the interface every attention variant implements, and the factory.
// A variant owns its parameters (declared into the model's ParamSet), its saved activations
// and its backward scratch. It maps the normalised input x (B,T,C) to out (B,T,C), output
// projection included, and must be causal: out at t depends only on x at positions <= t.
// One file per variant: gqa.h is MHA / MQA / GQA (KV heads shared by index).
#pragma once
#include <memory>
#include "../llmc/config.h"
#include "../llmc/params.h"

struct Attention {
    virtual ~Attention() {}
    // register parameters for layer `layer`
    virtual void declare_params(ParamSet& ps, int layer) = 0;
    // floats of saved activations (kept per layer) and of backward scratch (shared by layers)
    virtual size_t act_floats(int B, int T) const = 0;
    virtual size_t scratch_floats(int B, int T) const = 0;
    virtual void bind(float* acts, float* scratch) = 0;
    // x, out are (B,T,C). forward saves what backward needs in its activations.
    virtual void forward(const float* params, const float* x, float* out, int B, int T) = 0;
    // dx (B,T,C) is overwritten; parameter gradients accumulate into grads
    virtual void backward(const float* params, float* grads, const float* x, const float* dout, float* dx, int B,
                          int T) = 0;
    // KV-cache elements stored per token per layer for incremental decoding
    virtual long kv_elems_per_token() const = 0;
};

static std::unique_ptr<Attention> make_attention(const GPTConfig& cfg);  // attention/all.h
