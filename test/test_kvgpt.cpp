// test_kvgpt.cpp: the CPU test suite. It #includes the real code (no copies, no mocks).
//  - one op table: every op, every attention variant x position encoding, and the whole model
//    (several block shapes), each checked against central finite differences
//  - causal leak (bitwise) for every attention variant x position encoding
//  - ALiBi slopes and RoPE's relative-position property; preset parameter counts
//  - overfitting one batch; save -> resume is bitwise identical
//  - every bad input gives its documented error (in-process, and through ./train_gpt)
// Usage: test_kvgpt [name-filter]. Ends with "N passed, N failed".
#include <omp.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <fstream>
#include <sstream>
#include "../llmc/checkpoint.h"
#include "../llmc/eval.h"
#include "../llmc/sample.h"
#include "../llmc/tokenizer.h"
#include "../llmc/train.h"
#include "testlib.h"

typedef std::vector<float> Vec;
typedef std::vector<Vec> Vecs;

static Vec randn(size_t n, Rng& rng, float std = 1.0f) {
    Vec v(n);
    for (float& x : v) x = std * rng.normal();
    return v;
}

// ---------------------------------------------------------------------------------------------
// the op table: finite-difference gradient checks

struct GradCase {
    std::string name;
    Vecs in;                                     // differentiable inputs
    std::function<Vec(Vecs&)> fwd;               // outputs
    std::function<Vecs(Vecs&, const Vec&)> bwd;  // d(sum out*dout)/d(in), one Vec per input
    float h = 1e-3f;                             // finite-difference step
    std::vector<std::vector<size_t>> ranges;     // optional, per input: range starts to sample from (model params)
    std::vector<std::string> range_names;        // the last input's ranges by tensor name (model and attention cases)
};

static double dot_d(const Vec& a, const Vec& b) {
    double s = 0.0;
    for (size_t i = 0; i < a.size(); i++) s += (double)a[i] * b[i];
    return s;
}

// NaN-aware maximum: a NaN in either argument is kept (std::max would drop it, and a check
// that compares the result against a tolerance would then pass). Every error accumulation in
// this file goes through it.
static double nan_max(double worst, double e) { return std::isnan(worst) || std::isnan(e) ? NAN : std::max(worst, e); }
// max |a - b| over n elements, NaN when either side holds a NaN or an Inf where the other does not
static double max_abs_diff(const float* a, const float* b, size_t n) {
    double w = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return NAN;
        w = nan_max(w, fabs((double)a[i] - (double)b[i]));
    }
    return w;
}
static double max_abs(const float* a, size_t n) {
    double w = 0.0;
    for (size_t i = 0; i < n; i++) w = nan_max(w, std::isfinite(a[i]) ? fabs((double)a[i]) : NAN);
    return w;
}

// checks up to `samples` elements of each input (per range when given); returns the worst
// error as a fraction of the allowed error (<= 1 passes; NaN when any gradient, analytic or
// numeric, is not finite). The allowed error scales with the largest gradient of the same
// tensor (each range of an input is a tensor), so small-gradient tensors are checked as
// tightly as large ones; a floor covers the finite differences' float rounding.
static double grad_check(GradCase& gc, int samples = 12) {
    Rng rng(7);
    Vec out = gc.fwd(gc.in);
    Vec dout = randn(out.size(), rng);
    Vecs din = gc.bwd(gc.in, dout);
    double worst = 0.0;
    int printed = 0;
    for (size_t i = 0; i < gc.in.size(); i++) {
        Vec& x = gc.in[i];
        std::vector<size_t> starts = i < gc.ranges.size() ? gc.ranges[i] : std::vector<size_t>{0};
        std::vector<size_t> bounds = starts;
        bounds.push_back(x.size());
        for (size_t r = 0; r + 1 < bounds.size(); r++) {
            size_t lo = bounds[r], n = bounds[r + 1] - lo;
            if (n == 0) continue;
            std::vector<size_t> idx;
            for (int s = 0; s < samples && s < (int)n; s++) idx.push_back(lo + (n <= (size_t)samples ? s : rng.below(n)));
            std::vector<double> num(idx.size()), ana(idx.size());
            double scale = 0.0, f0 = 0.0;
            for (size_t j = 0; j < idx.size(); j++) {
                float orig = x[idx[j]];
                x[idx[j]] = orig + gc.h;
                double lp = dot_d(gc.fwd(gc.in), dout);
                x[idx[j]] = orig - gc.h;
                double lm = dot_d(gc.fwd(gc.in), dout);
                x[idx[j]] = orig;
                num[j] = (lp - lm) / (2.0 * gc.h);
                ana[j] = din[i][idx[j]];
                f0 = std::max(f0, std::max(fabs(lp), fabs(lm)));
                scale = nan_max(scale, nan_max(fabs(num[j]), fabs(ana[j])));
            }
            // float rounding of the outputs, magnified by 1/(2h): the noise floor of the numeric side
            double floor = 2e-6 * f0 / gc.h + 1e-6;
            for (size_t j = 0; j < idx.size(); j++) {
                double e;
                if (!std::isfinite(num[j]) || !std::isfinite(ana[j]) || !std::isfinite(scale)) e = NAN;
                else e = fabs(num[j] - ana[j]) / (1e-2 * scale + 3e-2 * fabs(num[j]) + floor);
                if (!(e <= 1.0) && printed++ < 3)
                    printf("    %s: input %zu elem %zu: analytic %.6g vs numeric %.6g\n", gc.name.c_str(), i, idx[j], ana[j], num[j]);
                worst = nan_max(worst, e);
            }
        }
    }
    return worst;
}

static GPTConfig test_config(int attn, int pos, int parallel = 1, int tied = 0, int q_rank = 0, int splice_ln = 0) {
    GPTConfig c;
    config_from_preset(&c, "tiny");
    snprintf(c.preset, sizeof c.preset, "test");
    c.vocab_size = 61;  // padded to 64: the padded columns must stay out of the loss
    c.max_seq_len = 32;
    c.n_layer = 2; c.d_model = 32; c.n_head = 4; c.d_ff = 48;
    c.parallel_residual = parallel; c.tied_embeddings = tied;
    c.attn = attn; c.pos = pos;
    c.rotary_pct = 0.5f;
    c.n_kv_head = attn == ATTN_GQA ? 2 : 0;
    c.tokenizer_id = TOK_NEOX;
    if (is_mla_family(attn)) {
        c.kv_rank = 12;   // rope_dim defaults to head_dim / 2 = 4 under RoPE
        c.q_rank = q_rank;
        if (attn == ATTN_KVSPLICE) { c.splice_rank = 6; c.splice_ln = splice_ln; }
    }
    config_finalize(&c);
    return c;
}

static std::string variant_name(const GPTConfig& c) {
    std::string s = std::string(ATTN_NAMES[c.attn]) + (c.attn == ATTN_GQA ? "(G=" + std::to_string(c.n_kv_head) + ")" : "");
    if (c.q_rank) s += "(q_rank=" + std::to_string(c.q_rank) + ")";
    if (c.splice_ln) s += "(+LN)";
    s += std::string("/") + POS_NAMES[c.pos];
    if (c.alibi_slope > 0) s += "(uniform)";
    return s;
}

// one attention layer on its own: inputs {x, the layer's params}
struct AttentionUnderTest {  // owns the layer and its buffers for the lambdas below
    ParamSet ps;
    std::unique_ptr<Attention> att;
    Vec acts, scratch;
};
static GradCase attention_case(const GPTConfig& cfg, int B, int T) {
    auto u = std::make_shared<AttentionUnderTest>();
    u->att = make_attention(cfg);
    u->att->declare_params(u->ps, 0);
    u->acts.resize(u->att->act_floats(B, T));
    u->scratch.resize(u->att->scratch_floats(B, T));
    u->att->bind(u->acts.data(), u->scratch.data());
    Rng rng(11);
    int C = cfg.d_model;
    GradCase g;
    g.name = "attention " + variant_name(cfg);
    g.in = {randn((size_t)B * T * C, rng), randn(u->ps.total, rng, 0.3f)};
    g.fwd = [=](Vecs& in) {
        Vec out((size_t)B * T * C);
        u->att->forward(in[1].data(), in[0].data(), out.data(), B, T);
        return out;
    };
    g.bwd = [=](Vecs& in, const Vec& dout) {
        Vec out((size_t)B * T * C), dx((size_t)B * T * C), dp(u->ps.total, 0.0f);
        u->att->forward(in[1].data(), in[0].data(), out.data(), B, T);
        u->att->backward(in[1].data(), dp.data(), in[0].data(), dout.data(), dx.data(), B, T);
        return Vecs{dx, dp};
    };
    std::vector<size_t> starts;
    for (const ParamSpec& s : u->ps.specs) { starts.push_back(s.offset); g.range_names.push_back(s.name); }
    g.ranges = {{0}, starts};
    return g;
}

// the whole model: input {params}, output {mean loss}
static GradCase model_case(const GPTConfig& cfg, int B, int T) {
    auto model = std::make_shared<GPT>(cfg);
    // default init with 5x larger N(0, 0.02) tensors (a non-trivial loss surface); the variants'
    // own init (orthogonal splice, N(0,1) memory slots) stays as it is
    Rng init_rng(3);
    model->ps.init(model->params, init_rng);
    for (size_t i = 0; i < model->ps.total; i++) model->params[i] *= 5.0f;
    for (Layer& y : model->layers) y.attn->init_params(model->params, init_rng);
    Rng rng(5);
    std::vector<int> tok((size_t)B * T), tgt((size_t)B * T);
    for (auto& t : tok) t = (int)rng.below(cfg.vocab_size);
    for (auto& t : tgt) t = (int)rng.below(cfg.vocab_size);
    tgt[1] = -1;  // an ignored target
    GradCase g;
    g.name = std::string("model ") + variant_name(cfg) + (cfg.parallel_residual ? " parallel" : " sequential") + (cfg.tied_embeddings ? " tied" : " untied");
    g.in = {Vec(model->params, model->params + model->ps.total)};
    g.h = 1e-2f;
    g.fwd = [=](Vecs& in) {
        memcpy(model->params, in[0].data(), in[0].size() * sizeof(float));
        return Vec{model->forward(tok.data(), tgt.data(), B, T)};
    };
    g.bwd = [=](Vecs& in, const Vec& dout) {
        memcpy(model->params, in[0].data(), in[0].size() * sizeof(float));
        model->zero_grad();
        model->forward(tok.data(), tgt.data(), B, T);
        model->backward(dout[0]);
        return Vecs{Vec(model->grads, model->grads + model->ps.total)};
    };
    std::vector<size_t> starts;
    for (const ParamSpec& s : model->ps.specs) { starts.push_back(s.offset); g.range_names.push_back(s.name); }
    g.ranges = {starts};
    return g;
}

static std::vector<GPTConfig> all_variants() {
    std::vector<GPTConfig> v;
    for (int a : {ATTN_MHA, ATTN_GQA, ATTN_MQA, ATTN_MLA, ATTN_KVSPLICE, ATTN_MKA, ATTN_FMKA})
        for (int p = 0; p < POS_COUNT; p++) v.push_back(test_config(a, p));
    v.push_back(test_config(ATTN_MLA, POS_ROPE, 1, 0, 8));       // low-rank query
    v.push_back(test_config(ATTN_MLA, POS_ALIBI, 1, 0, 8));
    v.push_back(test_config(ATTN_KVSPLICE, POS_ROPE, 1, 0, 0, 1));  // LayerNorm on the splice
    v.push_back(test_config(ATTN_KVSPLICE, POS_NONE, 1, 0, 0, 1));
    GPTConfig u = test_config(ATTN_MHA, POS_ALIBI);
    u.alibi_slope = 0.0625f;
    v.push_back(u);
    return v;
}

static std::vector<GradCase> op_table() {
    std::vector<GradCase> t;
    Rng rng(1);
    // linear layer with every implementation this build has (built-in tiles, OpenBLAS), small
    // (edge tiles only), wide enough for the 4x64 vector tiles, and with a 16-column remainder;
    // 300 x 20 x 600 takes the built-in forward's other transpose (inp^T and the result)
    std::vector<int> impls = {MATMUL_BUILTIN};
    if (matmul_have_blas()) impls.push_back(MATMUL_BLAS);
    for (int impl : impls)
        for (auto shape : std::vector<std::array<int, 3>>{{5, 7, 9}, {8, 66, 70}, {12, 37, 40}, {3, 20, 600}}) {
            int M = shape[0], K = shape[1], N = shape[2];
            GradCase g;
            g.name = std::string("matmul ") + (impl == MATMUL_BLAS ? "blas " : "builtin ") + std::to_string(M) + "x" + std::to_string(K) + "x" + std::to_string(N);
            g.in = {randn((size_t)M * K, rng), randn((size_t)N * K, rng), randn(N, rng)};
            g.fwd = [=](Vecs& in) {
                int saved = matmul_impl();
                matmul_impl() = impl;
                Vec o((size_t)M * N);
                matmul_forward(o.data(), in[0].data(), in[1].data(), in[2].data(), M, K, N);
                matmul_impl() = saved;
                return o;
            };
            g.bwd = [=](Vecs& in, const Vec& d) {
                int saved = matmul_impl();
                matmul_impl() = impl;
                Vecs r = {Vec(in[0].size()), Vec(in[1].size(), 0.0f), Vec(in[2].size(), 0.0f)};
                matmul_backward(r[0].data(), r[1].data(), r[2].data(), d.data(), in[0].data(), in[1].data(), M, K, N);
                matmul_impl() = saved;
                return r;
            };
            t.push_back(g);
        }
    {
        int N = 4, C = 10;
        GradCase g;
        g.name = "layernorm";
        g.in = {randn((size_t)N * C, rng), randn(C, rng), randn(C, rng)};
        g.fwd = [=](Vecs& in) { Vec o(N * C), m(N), s(N); layernorm_forward(o.data(), m.data(), s.data(), in[0].data(), in[1].data(), in[2].data(), N, C); return o; };
        g.bwd = [=](Vecs& in, const Vec& d) {
            Vec o(N * C), m(N), s(N);
            layernorm_forward(o.data(), m.data(), s.data(), in[0].data(), in[1].data(), in[2].data(), N, C);
            Vecs r = {Vec(N * C, 0.0f), Vec(C, 0.0f), Vec(C, 0.0f)};
            layernorm_backward(r[0].data(), r[1].data(), r[2].data(), d.data(), in[0].data(), in[1].data(), m.data(), s.data(), N, C);
            return r;
        };
        t.push_back(g);
    }
    for (bool exact : {false, true}) {
        GradCase g;
        g.name = exact ? "gelu (erf)" : "gelu (tanh)";
        g.in = {randn(20, rng, 2.0f)};
        g.fwd = [=](Vecs& in) { Vec o(20); gelu_forward(o.data(), in[0].data(), 20, exact); return o; };
        g.bwd = [=](Vecs& in, const Vec& d) { Vec r(20); gelu_backward(r.data(), in[0].data(), d.data(), 20, exact); return Vecs{r}; };
        t.push_back(g);
    }
    {
        int B = 2, T = 5, C = 6, V = 11;
        std::vector<int> tok = {3, 1, 3, 10, 0, 3, 3, 7, 2, 1};  // repeats: accumulation must not race
        GradCase g;
        g.name = "encoder (token + learned position)";
        g.in = {randn((size_t)V * C, rng), randn((size_t)T * C, rng)};
        g.fwd = [=](Vecs& in) { Vec o((size_t)B * T * C); encoder_forward(o.data(), tok.data(), in[0].data(), in[1].data(), B, T, C); return o; };
        g.bwd = [=](Vecs& in, const Vec& d) {
            Vecs r = {Vec(in[0].size(), 0.0f), Vec(in[1].size(), 0.0f)};
            encoder_backward(r[0].data(), r[1].data(), d.data(), tok.data(), B, T, C);
            return r;
        };
        t.push_back(g);
    }
    {
        int N = 4, V = 37, Vp = 48;  // V > 16: the vectorised exp and its scalar tail both run
        std::vector<int> tg = {2, -1, 36, 0};
        GradCase g;
        g.name = "softmax cross-entropy (padded vocab, ignored target)";
        g.in = {randn((size_t)N * Vp, rng, 2.0f)};
        g.fwd = [=](Vecs& in) {
            Vec l(N), lse(N);
            crossentropy_forward(l.data(), lse.data(), in[0].data(), tg.data(), N, V, Vp);
            return Vec{(l[0] + l[2] + l[3]) / 3.0f};
        };
        g.bwd = [=](Vecs& in, const Vec& d) {
            Vec lg = in[0], l(N), lse(N);
            crossentropy_forward(l.data(), lse.data(), lg.data(), tg.data(), N, V, Vp);
            crossentropy_backward_inplace(lg.data(), lse.data(), tg.data(), d[0] / 3.0f, N, V, Vp);
            return Vecs{lg};
        };
        t.push_back(g);
    }
    {
        int N = 3, C = 7, stride = 10;  // strided rows: MLA normalises a slice of a wider row
        GradCase g;
        g.name = "rmsnorm (strided input)";
        g.in = {randn((size_t)N * stride, rng), randn(C, rng)};
        g.fwd = [=](Vecs& in) { Vec o(N * C), r(N); rmsnorm_forward(o.data(), r.data(), in[0].data(), stride, in[1].data(), N, C); return o; };
        g.bwd = [=](Vecs& in, const Vec& d) {
            Vec o(N * C), r(N);
            rmsnorm_forward(o.data(), r.data(), in[0].data(), stride, in[1].data(), N, C);
            Vecs out = {Vec(in[0].size(), 0.0f), Vec(C, 0.0f)};
            rmsnorm_backward(out[0].data(), out[1].data(), d.data(), in[0].data(), stride, in[1].data(), r.data(), N, C);
            return out;
        };
        t.push_back(g);
    }
    {
        int T = 5, hd = 8;
        auto rope = std::make_shared<Rope>();
        rope->init(4, 10000.0);
        rope->ensure(T);
        GradCase g;
        g.name = "rope (NeoX, 4 of 8 dims)";
        g.in = {randn((size_t)T * hd, rng)};
        g.fwd = [=](Vecs& in) { Vec o = in[0]; for (int t = 0; t < T; t++) rope->apply(&o[t * hd], t); return o; };
        g.bwd = [=](Vecs&, const Vec& d) { Vec r = d; for (int t = 0; t < T; t++) rope->apply(&r[t * hd], t, true); return Vecs{r}; };
        t.push_back(g);
    }
    for (const GPTConfig& c : all_variants()) t.push_back(attention_case(c, 2, 5));
    for (const GPTConfig& c : all_variants()) t.push_back(model_case(c, 2, 6));
    t.push_back(model_case(test_config(ATTN_MHA, POS_LEARNED, 0, 1), 2, 6));  // GPT-2 block
    t.push_back(model_case(test_config(ATTN_GQA, POS_ROPE, 0, 0), 2, 6));
    t.push_back(model_case(test_config(ATTN_MLA, POS_ROPE, 0, 1), 2, 6));
    t.push_back(model_case(test_config(ATTN_MKA, POS_LEARNED, 0, 1), 2, 6));
    t.push_back(model_case(test_config(ATTN_FMKA, POS_LEARNED, 0, 1), 2, 6));
    return t;
}

// ---------------------------------------------------------------------------------------------
// helpers for data files

static std::string tmpdir() {
    static std::string d;
    if (d.empty()) {
        char tmpl[] = "/tmp/kvgpt_test_XXXXXX";
        d = mkdtemp(tmpl);
    }
    return d;
}

// writes a shard; the overrides corrupt it on purpose
static void write_shard(const std::string& path, const std::vector<int>& tok, int vocab, int tokenizer = TOK_NEOX,
                        int width = 2, uint32_t magic = SHARD_MAGIC, int version = SHARD_VERSION, long cut_bytes = 0) {
    int32_t h[SHARD_HEADER_INTS] = {0};
    h[0] = (int32_t)magic; h[1] = version; h[2] = (int32_t)tok.size(); h[3] = 0; h[4] = width;
    h[5] = tokenizer; h[6] = vocab; h[7] = 0; h[8] = 1;
    std::string bytes((const char*)h, sizeof h);
    for (int t : tok) {
        if (width == 2) { uint16_t v = (uint16_t)t; bytes.append((const char*)&v, 2); }
        else { uint32_t v = (uint32_t)t; bytes.append((const char*)&v, 4); }
    }
    bytes.resize(bytes.size() - cut_bytes);
    FILE* f = fopenCheck(path.c_str(), "wb");
    fwriteCheck(bytes.data(), 1, bytes.size(), f);
    fcloseCheck(f);
}

static std::vector<int> random_tokens(size_t n, int vocab, uint64_t seed) {
    Rng r(seed);
    std::vector<int> t(n);
    for (int& x : t) x = (int)r.below(vocab);
    return t;
}

// ---------------------------------------------------------------------------------------------

static void register_tests() {
    add_test("op table: finite-difference gradients", [] {
        for (GradCase& g : op_table()) {
            double w = grad_check(g);
            CHECK(w <= 1.0, "%s: worst error %.1f%% of the allowed error", g.name.c_str(), 100 * w);
            printf("    %-62s worst %5.1f%% of allowed\n", g.name.c_str(), 100 * w);
        }
    });

    add_test("the checks can fail: NaN, Inf and halved gradients are caught (self-test)", [] {
        // the comparison helpers: a NaN or an Inf on either side must not compare as small
        CHECK(!(nan_max(0.5, NAN) <= 1.0) && !(nan_max(NAN, 0.5) <= 1.0), "nan_max drops a NaN");
        Vec a = {1.0f, 2.0f, 3.0f};
        for (float bad : {NAN, INFINITY, -INFINITY}) {
            Vec b = a;
            b[1] = bad;
            CHECK(!(max_abs_diff(a.data(), b.data(), 3) <= 1e-3) && !(max_abs_diff(b.data(), a.data(), 3) <= 1e-3), "max_abs_diff misses %g", bad);
            CHECK(!(max_abs(b.data(), 3) < 1e30), "max_abs misses %g", bad);
        }
        // the gradient check: corrupt the analytic gradient of one tensor and watch it fail
        struct Inject { GPTConfig cfg; bool whole_model; const char* tensor; float value; bool halve; };
        GPTConfig mla = test_config(ATTN_MLA, POS_ROPE), mka = test_config(ATTN_MKA, POS_ROPE), mha = test_config(ATTN_MHA, POS_ROPE);
        GPTConfig gpt2 = test_config(ATTN_MHA, POS_LEARNED, 0, 1);
        std::vector<Inject> cases = {
            {mla, false, "kv_norm", NAN, false}, {mla, false, "kv_norm", INFINITY, false},
            {mla, true, "h1.attn.kv_norm", NAN, false}, {mla, true, "h0.attn.kv_norm", INFINITY, false},
            {mka, false, "w_qkv", NAN, false}, {mka, true, "h0.attn.w_qkv", INFINITY, false},
            {mha, true, "h0.attn.w_qkv", NAN, false}, {mha, true, "h1.attn.w_qkv", INFINITY, false},
            {mha, true, "h0.ln1.b", 0, true}, {mha, true, "h1.ln2.b", 0, true}, {mha, true, "lnf.b", 0, true},
            {mha, true, "h0.mlp.fc_b", 0, true}, {mha, true, "h1.mlp.proj_b", 0, true}, {gpt2, true, "h0.ln1.b", 0, true},
            {gpt2, true, "h1.mlp.proj_b", 0, true}, {mha, true, "h0.attn.b_o", 0, true},
        };
        for (const Inject& c : cases) {
            GradCase g = c.whole_model ? model_case(c.cfg, 2, 6) : attention_case(c.cfg, 2, 5);
            size_t last = g.in.size() - 1, start = 0, end = 0;
            bool found = false;
            for (size_t r = 0; r < g.range_names.size(); r++)
                if (g.range_names[r].find(c.tensor) != std::string::npos) {
                    start = g.ranges[last][r];
                    end = r + 1 < g.ranges[last].size() ? g.ranges[last][r + 1] : g.in[last].size();
                    found = true;
                    break;
                }
            CHECK(found, "no tensor '%s'", c.tensor);
            auto bwd = g.bwd;
            g.bwd = [=](Vecs& in, const Vec& d) {
                Vecs r = bwd(in, d);
                for (size_t i = start; i < end; i++) r[last][i] = c.halve ? 0.5f * r[last][i] : c.value;
                return r;
            };
            printf("    %s %s: %s injected in %s ->\n", c.whole_model ? "model" : "attention", variant_name(c.cfg).c_str(),
                   c.halve ? "halved gradient" : c.value != c.value ? "NaN" : "Inf", c.tensor);
            double w = grad_check(g);
            CHECK(!(w <= 1.0), "%s: the gradient check passed a corrupted '%s' (worst %.2f)", variant_name(c.cfg).c_str(), c.tensor, w);
        }
    });

    add_test("causal leak: later tokens never change earlier logits (bitwise)", [] {
        std::vector<int> impls = {MATMUL_BUILTIN};
        if (matmul_have_blas()) impls.push_back(MATMUL_BLAS);
        int saved = matmul_impl();
        // T = 150 crosses two of the attention core's 64-key blocks; cuts on both sides of each edge
        for (int impl : impls)
        for (int T : {12, 150})
        for (GPTConfig cfg : all_variants()) {
            matmul_impl() = impl;
            cfg.max_seq_len = std::max(cfg.max_seq_len, T);
            GPT m(cfg);
            m.init_weights(9);
            int B = 2, Vp = cfg.padded_vocab_size;
            std::vector<int> tok = random_tokens((size_t)B * T, cfg.vocab_size, 4);
            m.forward(tok.data(), nullptr, B, T);
            Vec ref(m.logits, m.logits + (size_t)B * T * Vp);
            for (int cut : T == 12 ? std::vector<int>{0, 3, 7, 10} : std::vector<int>{0, 63, 64, 100, 127, 128, 148}) {
                std::vector<int> t2 = tok;
                for (int b = 0; b < B; b++)
                    for (int t = cut + 1; t < T; t++) t2[b * T + t] = (tok[b * T + t] + 1 + t) % cfg.vocab_size;
                m.forward(t2.data(), nullptr, B, T);
                for (int b = 0; b < B; b++) {
                    const float* a = &ref[(size_t)b * T * Vp];
                    const float* c = m.logits + (size_t)b * T * Vp;
                    CHECK(memcmp(a, c, sizeof(float) * (cut + 1) * Vp) == 0, "%s: logits at <= %d changed when tokens after it changed",
                          variant_name(cfg).c_str(), cut);
                    // and the probe is not blind: the changed position's own logits did change
                    CHECK(memcmp(a + (size_t)(cut + 1) * Vp, c + (size_t)(cut + 1) * Vp, sizeof(float) * Vp) != 0,
                          "%s: changing token %d did not change its logits", variant_name(cfg).c_str(), cut + 1);
                }
            }
        }
        matmul_impl() = saved;
    });

    // the flash-style CPU attention core itself, at the head widths the models use (the variant
    // tests above run it at head dim 8 only), against a float64 softmax attention written out
    add_test("attention core vs a float64 reference: forward, lse, backward at head dims 8-128, T = 150", [] {
        struct Case { int H, group, da, db, dv; bool alibi, dlse; };
        const Case cases[] = {{2, 1, 8, 0, 8, false, false}, {2, 1, 16, 0, 16, true, false}, {4, 2, 32, 0, 32, false, true},
                              {2, 1, 64, 0, 64, true, false}, {3, 3, 64, 0, 64, false, false}, {1, 1, 128, 0, 128, false, true},
                              {2, 1, 48, 0, 48, false, false}, {2, 1, 64, 32, 64, true, true}, {2, 1, 32, 16, 32, false, false},
                              {2, 1, 12, 4, 20, true, false}};
        const int B = 2, T = 150;
        for (const Case& c : cases) {
            const int G = c.H / c.group, dq_w = c.da + c.db;
            AttnCore core;
            core.H = c.H; core.group = c.group; core.da = c.da; core.db = c.db; core.dv = c.dv;
            core.scale = 1.0f / sqrtf((float)dq_w);
            std::vector<float> slopes = alibi_slopes(c.H, 0.0f);
            core.slopes = c.alibi ? slopes.data() : nullptr;
            Rng rng(5 + c.da + c.db + c.H);
            Vec q = randn((size_t)B * T * c.H * dq_w, rng), ka = randn((size_t)B * T * G * c.da, rng), kb = randn((size_t)B * T * std::max(1, c.db), rng),
                v = randn((size_t)B * T * G * c.dv, rng), dy = randn((size_t)B * T * c.H * c.dv, rng), dl = randn((size_t)B * c.H * T, rng);
            Vec y((size_t)B * T * c.H * c.dv), lse((size_t)B * c.H * T), dq(q.size(), 7.0f), dka(ka.size()), dkb(kb.size()), dv(v.size());
            StridedTensor Q{q.data(), (long)c.H * dq_w, dq_w}, KA{ka.data(), (long)G * c.da, c.da}, KB{kb.data(), c.db, 0},
                V{v.data(), (long)G * c.dv, c.dv}, Y{y.data(), (long)c.H * c.dv, c.dv}, DY{dy.data(), (long)c.H * c.dv, c.dv};
            core.forward(B, T, Q, KA, c.db ? KB : StridedTensor{nullptr, 0, 0}, V, lse.data(), Y);
            core.backward(B, T, Q, KA, c.db ? KB : StridedTensor{nullptr, 0, 0}, V, lse.data(), Y, DY, {dq.data(), (long)c.H * dq_w, dq_w},
                          {dka.data(), (long)G * c.da, c.da}, {dkb.data(), c.db, 0}, {dv.data(), (long)G * c.dv, c.dv}, c.dlse ? dl.data() : nullptr);
            // reference: the loss sum(dy . y) + sum(dlse . lse), differentiated by hand in float64
            std::vector<double> rdq(q.size(), 0.0), rdka(ka.size(), 0.0), rdkb(kb.size(), 0.0), rdv(v.size(), 0.0);
            double ey = 0, sy = 0, el = 0, eg = 0, sg = 0;
            for (int b = 0; b < B; b++)
                for (int h = 0; h < c.H; h++) {
                    const int g = h / c.group;
                    for (int t = 0; t < T; t++) {
                        const float* qv = &q[(((size_t)b * T + t) * c.H + h) * dq_w];
                        std::vector<double> sc(t + 1), p(t + 1);
                        double mx = -1e300, sum = 0;
                        for (int j = 0; j <= t; j++) {
                            const float* k1 = &ka[(((size_t)b * T + j) * G + g) * c.da];
                            const float* k2 = &kb[((size_t)b * T + j) * std::max(1, c.db)];
                            double d = 0;
                            for (int i = 0; i < c.da; i++) d += (double)qv[i] * k1[i];
                            for (int i = 0; i < c.db; i++) d += (double)qv[c.da + i] * k2[i];
                            sc[j] = d * core.scale - (c.alibi ? (double)slopes[h] * (t - j) : 0.0);
                            mx = std::max(mx, sc[j]);
                        }
                        for (int j = 0; j <= t; j++) sum += (p[j] = exp(sc[j] - mx));
                        for (int j = 0; j <= t; j++) p[j] /= sum;
                        el = nan_max(el, fabs(mx + log(sum) - lse[((size_t)b * c.H + h) * T + t]));
                        const float* dyv = &dy[(((size_t)b * T + t) * c.H + h) * c.dv];
                        std::vector<double> yr(c.dv, 0.0), dp(t + 1, 0.0);
                        double yd = 0;
                        for (int j = 0; j <= t; j++) {
                            const float* vv = &v[(((size_t)b * T + j) * G + g) * c.dv];
                            for (int i = 0; i < c.dv; i++) { yr[i] += p[j] * vv[i]; dp[j] += (double)dyv[i] * vv[i]; }
                        }
                        for (int i = 0; i < c.dv; i++) {
                            yd += (double)dyv[i] * yr[i];
                            ey = nan_max(ey, fabs(yr[i] - y[(((size_t)b * T + t) * c.H + h) * c.dv + i]));
                            sy = std::max(sy, fabs(yr[i]));
                        }
                        const double dlse = c.dlse ? dl[((size_t)b * c.H + h) * T + t] : 0.0;
                        for (int j = 0; j <= t; j++) {
                            const double ds = (p[j] * (dp[j] - yd) + dlse * p[j]) * core.scale;
                            const float* k1 = &ka[(((size_t)b * T + j) * G + g) * c.da];
                            const float* k2 = &kb[((size_t)b * T + j) * std::max(1, c.db)];
                            for (int i = 0; i < c.da; i++) {
                                rdq[(((size_t)b * T + t) * c.H + h) * dq_w + i] += ds * k1[i];
                                rdka[(((size_t)b * T + j) * G + g) * c.da + i] += ds * qv[i];
                            }
                            for (int i = 0; i < c.db; i++) {
                                rdq[(((size_t)b * T + t) * c.H + h) * dq_w + c.da + i] += ds * k2[i];
                                rdkb[((size_t)b * T + j) * c.db + i] += ds * qv[c.da + i];
                            }
                            for (int i = 0; i < c.dv; i++) rdv[(((size_t)b * T + j) * G + g) * c.dv + i] += p[j] * dyv[i];
                        }
                    }
                }
            auto cmp = [&](const Vec& got, const std::vector<double>& want, size_t n) {
                for (size_t i = 0; i < n; i++) { eg = nan_max(eg, fabs(got[i] - want[i])); sg = std::max(sg, fabs(want[i])); }
            };
            cmp(dq, rdq, dq.size());
            cmp(dka, rdka, dka.size());
            if (c.db) cmp(dkb, rdkb, (size_t)B * T * c.db);
            cmp(dv, rdv, dv.size());
            char name[96];
            snprintf(name, sizeof name, "H=%d group=%d da=%d db=%d dv=%d%s%s", c.H, c.group, c.da, c.db, c.dv, c.alibi ? " alibi" : "",
                     c.dlse ? " dlse" : "");
            CHECK(ey <= 2e-5 * (1 + sy) && el <= 2e-5 && eg <= 2e-5 * (1 + sg), "%s: y err %.3g (scale %.3g), lse err %.3g, grad err %.3g (scale %.3g)",
                  name, ey, sy, el, eg, sg);
            printf("    %-40s y %.1e  lse %.1e  grads %.1e (of %.1f)\n", name, ey, el, eg, sg);
        }
    });

    add_test("decode's 16-key scores (dot16, reduce16; dot4h4k) == dot4 / dot4x2 / dot16 bitwise", [] {
        Rng rng(31);
        int cases = 0;
        for (int na : {16, 64, 128})
            for (int nb : {0, 16, 32}) {
                Vec q = randn(na + nb, rng), keys = randn((size_t)16 * na, rng), kb = randn((size_t)16 * std::max(nb, 1), rng);
                const float* pa[16];
                const float* pb[16];
                for (int j = 0; j < 16; j++) { pa[j] = &keys[(size_t)j * na]; pb[j] = &kb[(size_t)j * nb]; }
                float got[16], want[16];
                for (int j = 0; j < 16; j++) got[j] = NAN;
                const v16f r = AttnCore::dot16(q.data(), pa, na, pb, nb);
                for (int l = 0; l < 16; l++) got[AttnCore::reduce16_key(l)] = r[l];
                for (int j = 0; j < 16; j += 4) {
                    if (nb) AttnCore::dot4x2(q.data(), pa[j], pa[j + 1], pa[j + 2], pa[j + 3], na, q.data() + na, pb[j], pb[j + 1], pb[j + 2], pb[j + 3], nb, want + j);
                    else AttnCore::dot4(q.data(), pa[j], pa[j + 1], pa[j + 2], pa[j + 3], na, want + j);
                }
                for (int j = 0; j < 16; j++)
                    CHECK(memcmp(&got[j], &want[j], sizeof(float)) == 0, "na %d nb %d key %d: dot16 %.9g, dot4 %.9g", na, nb, j, got[j], want[j]);
                cases++;
            }
        for (int trial = 0; trial < 64; trial++) {  // hmax16 == the scalar max, whichever lane holds it (-inf included)
            v16f v;
            for (int l = 0; l < 16; l++) v[l] = (trial % 4 == 0 && l != trial % 16) ? -INFINITY : (float)rng.normal();
            float want = -INFINITY;
            for (int l = 0; l < 16; l++) want = fmaxf(want, v[l]);
            CHECK(AttnCore::hmax16(v) == want, "trial %d: hmax16 %.9g, max %.9g", trial, AttnCore::hmax16(v), want);
        }
        for (int na : {16, 64, 128})  // four heads at once (dot4h4k) == dot16 per head, bitwise
            for (int nb : {0, 32}) {
                Vec q = randn((size_t)4 * (na + nb), rng), keys = randn((size_t)4 * na, rng), kb = randn((size_t)4 * std::max(nb, 1), rng);
                const float* qv[4];
                const float* pa[16];
                const float* pb[16];
                for (int h = 0; h < 4; h++) qv[h] = &q[(size_t)h * (na + nb)];
                for (int j = 0; j < 16; j++) { pa[j] = &keys[(size_t)(j % 4) * na]; pb[j] = &kb[(size_t)(j % 4) * nb]; }
                const v16f r = AttnCore::dot4h4k(qv, pa, na, pb, nb);
                for (int h = 0; h < 4; h++) {
                    const v16f w = AttnCore::dot16(qv[h], pa, na, pb, nb);  // lane l: key reduce16_key(l) % 4
                    for (int l = 0; l < 16; l++) {
                        const int j = AttnCore::reduce16_key(l) % 4;
                        const float got = r[4 * h + j], want = w[l];
                        CHECK(memcmp(&got, &want, sizeof(float)) == 0, "na %d nb %d head %d key %d: dot4h4k %.9g, dot16 %.9g", na, nb, h, j, got, want);
                    }
                }
                cases++;
            }
        for (int l = 0; l < 16; l++)
            CHECK(AttnCore::reduce16_acc(l) == AttnCore::reduce16_key(l), "lane %d: reduce16_acc %d, reduce16_key %d", l, AttnCore::reduce16_acc(l),
                  AttnCore::reduce16_key(l));
        std::vector<bool> seen(16, false);
        for (int l = 0; l < 16; l++) {
            int k = AttnCore::reduce16_key(l);
            CHECK(k >= 0 && k < 16 && !seen[k], "reduce16's lane %d maps to key %d twice or out of range", l, k);
            if (k >= 0 && k < 16) seen[k] = true;
        }
        printf("    %d shapes, 16 keys each: identical bits; decode uses dot16: %s\n", cases, AttnCore::DEC_DOT16 ? "yes (AVX-512)" : "no (AVX2 build)");
    });

    add_test("KV cache buffers: rows on 64-byte boundaries; a buffer of 2 MB or more on a 2 MB boundary (2 MB pages), sized to its rows", [] {
        const size_t MB2 = (size_t)1 << 21;
        KVCache small;
        small.init(1, 3, 5, 24, 8, 24);  // a few KB each
        for (const avec<float>* buf : {&small.a, &small.b, &small.v})
            CHECK((uintptr_t)buf->data() % 64 == 0, "a small buffer at %p is not on a cache line", (const void*)buf->data());
        KVCache big;
        big.init(2, 4, 2049, 64, 32, 64);  // a: 8 MB + 2 KB, b: 4 MB + 1 KB, v as a
        for (const avec<float>* buf : {&big.a, &big.b, &big.v}) {
            CHECK(buf->size() * sizeof(float) >= MB2, "test setup: a buffer of %zu B", buf->size() * sizeof(float));
            CHECK((uintptr_t)buf->data() % MB2 == 0, "a %zu-byte buffer at %p is not on a 2 MB boundary", buf->size() * sizeof(float),
                  (const void*)buf->data());
        }
        CHECK(big.bytes() == sizeof(float) * big.floats_per_token() * 2 * 2049, "the cache reports %zu B", big.bytes());
        big.resize(3000);  // a resize lands on a 2 MB boundary too
        CHECK((uintptr_t)big.a.data() % MB2 == 0, "after a resize the keys are not on a 2 MB boundary");
    });

    add_test("decode attention (KVCache::attend) == a naive double-precision softmax, at shapes that take the 16-key path", [] {
        // the model tests' heads are too narrow for dot16 (da % 16 != 0), so the kernel is checked
        // here at real widths: MHA, MQA (one KV head for 8 query heads), a group of 3 heads per KV
        // head, MLA's split key with the latent as the value, and a width that takes the 4-key path;
        // odd heads' queries 30x larger than even ones'; key counts that cross the
        // 16-key blocks, the 32-key tiles and the chunks (256 keys; 512 past 2048 keys; 1024 past
        // 4096); ALiBi with slots whose tokens are not at their slot index (a pressed cache); 5 rows
        // of different lengths in one call
        struct Case { const char* name; int H, heads, da, db, dv; };
        const Case cases[] = {{"mha 64", 4, 4, 64, 0, 64}, {"mqa 64", 8, 1, 64, 0, 64}, {"gqa 32", 8, 2, 32, 0, 32},
                              {"gqa 64, 3 heads per KV head", 6, 2, 64, 0, 64},
                              {"mla 64+16, v = latent", 8, 1, 64, 16, 0}, {"odd 24 (4-key path)", 4, 2, 24, 0, 24}};
        Rng rng(77);
        int checked = 0;
        for (const Case& c : cases)
            for (bool alibi : {false, true})
                for (bool pressed : {false, true}) {
                    const int nk[5] = {1, 300, 531, 2500, 4200}, n = 5, dq = c.da + c.db, dv = c.dv ? c.dv : c.da, cap = 4210;
                    KVCache kv;
                    kv.init(n, c.heads, cap, c.da, c.db, c.dv);
                    for (auto& x : kv.a) x = rng.normal();
                    for (auto& x : kv.b) x = rng.normal();
                    for (auto& x : kv.v) x = rng.normal();
                    for (int s = 0; s < n; s++) {
                        kv.len[s] = nk[s];
                        for (int h = 0; h < c.heads; h++)
                            for (int j = 0, p = 0; j < cap; j++, p += pressed ? 1 + (j * 7 + h) % 3 : 1) kv.pos[kv.off(s, h, j)] = p;
                    }
                    std::vector<float> slopes(c.H);
                    for (int h = 0; h < c.H; h++) slopes[h] = 0.05f * (h + 1);
                    AttnCore core;
                    core.H = c.H; core.group = c.H / c.heads; core.da = c.da; core.db = c.db; core.dv = dv;
                    core.scale = 1.0f / sqrtf((float)dq);
                    core.slopes = alibi ? slopes.data() : nullptr;
                    Vec q = randn((size_t)n * c.H * dq, rng);
                    // odd heads' queries 30x larger (scores ~100 apart from their pair's): a kernel
                    // that softmaxes one head with another's maximum overflows or underflows exp
                    for (int i = 0; i < n; i++)
                        for (int h = 1; h < c.H; h += 2)
                            for (int k = 0; k < dq; k++) q[((size_t)i * c.H + h) * dq + k] *= 30.0f;
                    std::vector<float> y((size_t)n * c.H * dv, NAN), lse((size_t)n * c.H, NAN);
                    int seq[5] = {0, 1, 2, 3, 4}, qpos[5];
                    for (int i = 0; i < n; i++) qpos[i] = kv.slot_pos(i, 0, nk[i] - 1) + (pressed ? 2 : 0);
                    kv.attend(core, n, seq, qpos, nk, q.data(), (long)c.H * dq, dq, y.data(), (long)c.H * dv, dv, lse.data());
                    double worst = 0, worst_lse = 0;
                    for (int i = 0; i < n; i++)
                        for (int h = 0; h < c.H; h++) {
                            const int g = h / core.group;
                            const float* qv = &q[((size_t)i * c.H + h) * dq];
                            std::vector<double> sc(nk[i]), want(dv, 0.0);
                            double m = -1e300, l = 0;
                            for (int j = 0; j < nk[i]; j++) {
                                double d = 0;
                                for (int k = 0; k < c.da; k++) d += (double)qv[k] * kv.ka(i, g, j)[k];
                                for (int k = 0; k < c.db; k++) d += (double)qv[c.da + k] * kv.kb(i, 0, j)[k];
                                sc[j] = d / sqrt((double)dq) - (alibi ? (double)slopes[h] * (qpos[i] - kv.slot_pos(i, g, j)) : 0.0);
                                m = std::max(m, sc[j]);
                            }
                            for (int j = 0; j < nk[i]; j++) {
                                const double p = exp(sc[j] - m);
                                l += p;
                                for (int k = 0; k < dv; k++) want[k] += p * kv.val(i, g, j)[k];
                            }
                            for (int k = 0; k < dv; k++) {
                                const double e = fabs(y[((size_t)i * c.H + h) * dv + k] - want[k] / l);
                                worst = std::isnan(e) ? INFINITY : std::max(worst, e);
                            }
                            const double el = fabs(lse[(size_t)i * c.H + h] - (m + log(l)));
                            worst_lse = std::isnan(el) ? INFINITY : std::max(worst_lse, el);
                        }
                    CHECK(worst <= 2e-5 && worst_lse <= 2e-5, "%s%s%s: y off by %.3g, lse by %.3g", c.name, alibi ? " alibi" : "",
                          pressed ? " pressed" : "", worst, worst_lse);
                    checked++;
                }
        printf("    %d cases (6 shapes x ALiBi x pressed slots; rows of 1, 300, 531, 2500 and 4200 keys): within 2e-5 of the reference\n", checked);
    });

    add_test("decode with the KV cache == full forward (every variant; MLA decodes in absorbed form)", [] {
        for (int T : {10, 150})  // 150: decode and the flash-style forward both cross 64-key blocks
        for (GPTConfig cfg : all_variants()) {
            cfg.max_seq_len = std::max(cfg.max_seq_len, T);
            int C = cfg.d_model, Vp = cfg.padded_vocab_size;
            // the attention layer alone: naive full-sequence forward vs step-by-step decode
            AttentionUnderTest u;
            u.att = make_attention(cfg);
            u.att->declare_params(u.ps, 0);
            u.acts.resize(u.att->act_floats(1, T));
            u.scratch.resize(u.att->scratch_floats(1, T));
            u.att->bind(u.acts.data(), u.scratch.data());
            Rng rng(21);
            Vec params = randn(u.ps.total, rng, 0.3f), x = randn((size_t)T * C, rng), full((size_t)T * C), step(C);
            u.att->init_params(params.data(), rng);
            u.att->forward(params.data(), x.data(), full.data(), 1, T);
            u.att->decode_begin(params.data(), 1, T);
            double worst = 0.0, ref = 0.0;
            for (int t = 0; t < T; t++) {
                int seq0 = 0;
                u.att->decode_step(params.data(), &x[(size_t)t * C], &seq0, &t, 1, step.data());
                worst = nan_max(worst, max_abs_diff(step.data(), &full[(size_t)t * C], C));
                ref = nan_max(ref, max_abs(&full[(size_t)t * C], C));
            }
            CHECK(worst <= 1e-4 * (1.0 + ref), "%s attention: decode differs from the full forward by %.3g (scale %.3g)",
                  variant_name(cfg).c_str(), worst, ref);
            // the whole model
            GPT m(cfg);
            m.init_weights(17);
            for (size_t i = 0; i < m.ps.total; i++) m.params[i] *= 3.0f;
            std::vector<int> tok = random_tokens(T, cfg.vocab_size, 6);
            m.forward(tok.data(), nullptr, 1, T);
            Vec logits(m.logits, m.logits + (size_t)T * Vp);
            m.decode_begin(T);
            double mw = 0.0, mref = 0.0;
            for (int t = 0; t < T; t++) {
                const float* lg = m.decode_step(tok[t], t);
                mw = nan_max(mw, max_abs_diff(lg, &logits[(size_t)t * Vp], cfg.vocab_size));
                mref = nan_max(mref, max_abs(&logits[(size_t)t * Vp], cfg.vocab_size));
            }
            CHECK(mw <= 1e-4 * (1.0 + mref), "%s model: decoded logits differ by %.3g (scale %.3g)", variant_name(cfg).c_str(), mw, mref);
            printf("    T=%-3d %-34s attention max|diff| %.2e, model logits max|diff| %.2e\n", T, variant_name(cfg).c_str(), worst, mw);
        }
    });

    add_test("inference: batched prefill + decode == full forward (every variant, prompt 70 -> 150 tokens)", [] {
        for (GPTConfig cfg : all_variants()) {
            cfg.max_seq_len = 160;
            GPT m(cfg);
            m.init_weights(17);
            for (size_t i = 0; i < m.ps.total; i++) m.params[i] *= 3.0f;
            const int P = 70, T = 150, Vp = cfg.padded_vocab_size, V = cfg.vocab_size;
            std::vector<int> tok = random_tokens(T, V, 6);
            m.forward(tok.data(), nullptr, 1, T);
            Vec full(m.logits, m.logits + (size_t)T * Vp);
            double ref = max_abs(full.data(), full.size());
            // one prefill call for the prompt (all its rows' logits), then one token per call
            m.decode_begin(1, T);
            std::vector<int> seq(P, 0);
            const float* lg = m.decode(tok.data(), seq.data(), P);
            double w = 0.0;
            for (int t = 0; t < P; t++) w = nan_max(w, max_abs_diff(lg + (size_t)t * Vp, &full[(size_t)t * Vp], V));
            for (int t = P; t < T; t++) {
                int s0 = 0;
                lg = m.decode(&tok[t], &s0, 1);
                w = nan_max(w, max_abs_diff(lg, &full[(size_t)t * Vp], V));
            }
            CHECK(w <= 1e-4 * (1.0 + ref), "%s: prefill + decode logits differ from the forward by %.3g (scale %.3g)", variant_name(cfg).c_str(), w, ref);
            CHECK(m.decode_len(0) == T, "sequence length %d", m.decode_len(0));
            // want: only the prompt's last row gets logits, and they are the same
            m.decode_begin(1, T);
            std::vector<char> want(P, 0);
            want[P - 1] = 1;
            lg = m.decode(tok.data(), seq.data(), P, (const bool*)want.data());
            double wl = max_abs_diff(lg, &full[(size_t)(P - 1) * Vp], V);
            CHECK(wl <= 1e-4 * (1.0 + ref), "%s: last-row logits differ by %.3g", variant_name(cfg).c_str(), wl);
            printf("    %-34s prefill %d + decode to %d: max|diff| %.2e (scale %.2e)\n", variant_name(cfg).c_str(), P, T, w, ref);
        }
    });

    add_test("inference: a batch of 3 prompts of different lengths == each alone; the cache bytes match the formula", [] {
        for (GPTConfig cfg : all_variants()) {
            cfg.max_seq_len = 160;
            GPT m(cfg);
            m.init_weights(23);
            for (size_t i = 0; i < m.ps.total; i++) m.params[i] *= 3.0f;
            const int Vp = cfg.padded_vocab_size, V = cfg.vocab_size, steps = 12;
            const int plen[3] = {5, 70, 33};
            std::vector<std::vector<int>> toks;
            for (int b = 0; b < 3; b++) toks.push_back(random_tokens(plen[b] + steps, V, 100 + b));
            // alone: prefill, then the continuation token by token
            std::vector<Vec> alone(3);
            for (int b = 0; b < 3; b++) {
                m.decode_begin(1, 160);
                std::vector<int> s(plen[b], 0);
                const float* lg = m.decode(toks[b].data(), s.data(), plen[b]);
                alone[b].insert(alone[b].end(), lg + (size_t)(plen[b] - 1) * Vp, lg + (size_t)plen[b] * Vp);
                for (int k = 0; k < steps; k++) {
                    int s0 = 0;
                    lg = m.decode(&toks[b][plen[b] + k], &s0, 1);
                    alone[b].insert(alone[b].end(), lg, lg + Vp);
                }
            }
            // together: all three prompts in one prefill call, then 3 rows per call
            m.decode_begin(3, 160);
            CHECK(m.kv_cache_floats_per_token() == (size_t)m.kv_elems_per_token_layer() * cfg.n_layer, "%s: cache holds %zu floats per token per sequence",
                  variant_name(cfg).c_str(), m.kv_cache_floats_per_token());
            std::vector<int> rt, rs;
            std::vector<char> want;
            for (int b = 0; b < 3; b++)
                for (int t = 0; t < plen[b]; t++) { rt.push_back(toks[b][t]); rs.push_back(b); want.push_back(t == plen[b] - 1); }
            const float* lg = m.decode(rt.data(), rs.data(), (int)rt.size(), (const bool*)want.data());
            double w = 0.0, ref = 0.0;
            for (int b = 0; b < 3; b++) w = nan_max(w, max_abs_diff(lg + (size_t)b * Vp, alone[b].data(), V));
            for (int k = 0; k < steps; k++) {
                int t3[3], s3[3] = {0, 1, 2};
                for (int b = 0; b < 3; b++) t3[b] = toks[b][plen[b] + k];
                lg = m.decode(t3, s3, 3);
                for (int b = 0; b < 3; b++) {
                    w = nan_max(w, max_abs_diff(lg + (size_t)b * Vp, &alone[b][(size_t)(k + 1) * Vp], V));
                    ref = nan_max(ref, max_abs(lg + (size_t)b * Vp, V));
                }
            }
            CHECK(w <= 1e-4 * (1.0 + ref), "%s: the batch of 3 differs from each alone by %.3g", variant_name(cfg).c_str(), w);
        }
    });

    add_test("sampling: greedy, temperature, top-k and top-p against a brute-force reference; seeded draws reproduce", [] {
        Rng rng(3);
        for (int trial = 0; trial < 200; trial++) {
            int V = 2 + (int)rng.below(40);
            Vec lg = randn(V, rng, 2.0f);
            if (trial % 7 == 0) lg[1] = lg[0];  // ties go to the lower id
            SampleConfig c;
            c.temperature = trial % 5 == 0 ? 0.0f : 0.3f + 1.5f * rng.uniform();
            c.top_k = trial % 3 == 0 ? 0 : 1 + (int)rng.below(V + 3);
            c.top_p = trial % 4 == 0 ? 1.0f : 0.05f + 0.95f * rng.uniform();
            // brute force: every token's probability after each filter, the HF way
            std::vector<double> pr(V, 0.0);
            if (c.temperature == 0.0f) {
                int best = 0;
                for (int v = 1; v < V; v++) if (lg[v] > lg[best]) best = v;
                pr[best] = 1.0;
            } else {
                std::vector<bool> in(V, true);
                if (c.top_k > 0 && c.top_k < V)
                    for (int v = 0; v < V; v++) {  // in the top k: fewer than k tokens rank above it
                        int above = 0;
                        for (int u = 0; u < V; u++) above += lg[u] > lg[v] || (lg[u] == lg[v] && u < v);
                        in[v] = above < c.top_k;
                    }
                double z = 0;
                for (int v = 0; v < V; v++) if (in[v]) z += exp((double)lg[v] / c.temperature);
                std::vector<double> q(V, 0.0);
                for (int v = 0; v < V; v++) if (in[v]) q[v] = exp((double)lg[v] / c.temperature) / z;
                if (c.top_p < 1.0f)
                    for (int v = 0; v < V; v++) {  // kept when the tokens ranked above it hold less than top_p
                        if (!in[v]) continue;
                        double above = 0;
                        for (int u = 0; u < V; u++) if (in[u] && (lg[u] > lg[v] || (lg[u] == lg[v] && u < v))) above += q[u];
                        if (above >= c.top_p) in[v] = false;
                    }
                z = 0;
                for (int v = 0; v < V; v++) if (in[v]) z += q[v];
                for (int v = 0; v < V; v++) pr[v] = in[v] ? q[v] / z : 0.0;
            }
            std::vector<double> got(V, 0.0);
            for (auto& x : next_token_distribution(lg.data(), V, c)) got[x.first] = x.second;
            double e = 0;
            for (int v = 0; v < V; v++) e = nan_max(e, fabs(got[v] - pr[v]));
            CHECK(e < 1e-9, "trial %d (V %d, T %.2f, k %d, p %.2f): distributions differ by %.3g", trial, V, c.temperature, c.top_k, c.top_p, e);
        }
        // draws follow the distribution, and a seed reproduces them
        Vec lg = {1.0f, 0.0f, 2.0f, -1.0f, 0.5f};
        SampleConfig c;
        c.temperature = 0.9f;
        c.top_k = 4;
        std::vector<std::pair<int, double>> d = next_token_distribution(lg.data(), 5, c);
        Rng a(42), b(42);
        std::vector<int> count(5, 0);
        const int N = 40000;
        bool same = true;
        for (int i = 0; i < N; i++) {
            int x = sample_token(lg.data(), 5, c, a);
            same = same && x == sample_token(lg.data(), 5, c, b);
            count[x]++;
        }
        CHECK(same, "the same seed must give the same draws");
        CHECK(count[3] == 0, "token 3 is outside the top 4 but was drawn %d times", count[3]);
        for (auto& x : d)
            CHECK(fabs(count[x.first] / (double)N - x.second) < 0.01, "token %d drawn %.4f of the time, p = %.4f", x.first, count[x.first] / (double)N, x.second);
        SampleConfig bad;
        bad.temperature = -1;
        CHECK(expect_exit_error([&] { sample_config_check(bad); }, "--temperature -1 must be >= 0"), "negative temperature");
        bad = SampleConfig();
        bad.top_p = 0;
        CHECK(expect_exit_error([&] { sample_config_check(bad); }, "--top-p 0 must be in (0, 1]"), "top-p 0");
    });

    add_test("tokenizer (C++): ids == the golden HF ids for both vocabularies; decode inverts encode", [] {
        JsonValue g = parse_json_file("test/golden/tokenizer_golden.json", "");
        const JsonValue* texts = g.get("texts");
        CHECK(texts && texts->arr.size() == 281, "golden texts");
        if (!texts) return;
        for (int tid : {TOK_NEOX, TOK_GPT2}) {
            Tokenizer t;
            t.load(tid, "data/tokenizers");
            CHECK(t.eos_id == tokenizer_eos(tid) && t.vocab_size == (tid == TOK_NEOX ? 50277 : 50257), "%s: eos %d vocab %d", tokenizer_name(tid), t.eos_id, t.vocab_size);
            const JsonValue* ids = g.get(tokenizer_name(tid));
            int bad = 0;
            for (size_t i = 0; i < texts->arr.size(); i++) {
                const std::string& text = texts->arr[i].str;
                std::vector<int> want, got = t.encode(text);
                for (const JsonValue& v : ids->arr[i].arr) want.push_back((int)v.num);
                if (got != want && bad++ < 3) printf("    %s: text %zu '%s' encodes differently\n", tokenizer_name(tid), i, text.substr(0, 60).c_str());
                // decoding gives the text back (NeoX: its NFC form)
                std::vector<uint32_t> cps;
                utf8_decode(text, &cps);
                std::string back = t.decode_bytes(want), norm = tid == TOK_NEOX ? utf8_encode(nfc(cps)) : text;
                if (back != norm && bad++ < 3) printf("    %s: text %zu does not decode back\n", tokenizer_name(tid), i);
            }
            CHECK(bad == 0, "%s: %d of %zu golden texts differ", tokenizer_name(tid), bad, texts->arr.size());
        }
        Tokenizer t;
        t.load(TOK_NEOX, "data/tokenizers");
        CHECK(expect_exit_error([&] { t.encode(std::string("ok \xC3\x28 bad")); }, "not valid UTF-8"), "invalid UTF-8");
        CHECK(expect_exit_error([&] { Tokenizer x; x.load(TOK_GPT2, "/nonexistent"); }, "tokenizer file"), "missing files");
    });

    add_test("NFC (C++) == Python's unicodedata.normalize on 400 random strings of combining marks, Hangul, precomposed letters", [] {
        std::string out;
        std::string py =
            "import json, random, unicodedata\n"
            "r = random.Random(5)\n"
            "pool = [chr(c) for c in list(range(0x41, 0x7b)) + list(range(0xc0, 0x180)) + list(range(0x300, 0x370)) + list(range(0x1100, 0x1113))"
            " + list(range(0x1161, 0x1176)) + list(range(0x11a8, 0x11c3)) + [0xac00, 0xac01, 0xd7a3, 0x1e0a, 0x1e9b, 0x212b, 0x2126, 0xf900, 0x0344,"
            " 0x0f73, 0x0f75, 0x0f81, 0x09cb, 0x09be, 0x09c7, 0x0b47, 0x0b3e, 0x1025, 0x102e, 0x3099, 0x304b, 0x1d15e, 0x1d165]]\n"
            "xs = [''.join(r.choice(pool) for _ in range(r.randint(1, 12))) for _ in range(400)]\n"
            "print(json.dumps([[x, unicodedata.normalize('NFC', x)] for x in xs]))\n";
        std::string path = tmpdir() + "/nfc.py";
        FILE* f = fopenCheck(path.c_str(), "w");
        fputs(py.c_str(), f);
        fcloseCheck(f);
        int rc = run_command("python3 " + path + " > " + tmpdir() + "/nfc.json", &out);
        CHECK(rc == 0, "python3: %s", out.c_str());
        if (rc != 0) return;
        JsonValue j = parse_json_file(tmpdir() + "/nfc.json", "");
        int bad = 0;
        for (const JsonValue& pair : j.arr) {
            std::vector<uint32_t> in;
            utf8_decode(pair.arr[0].str, &in);
            if (utf8_encode(nfc(in)) != pair.arr[1].str && bad++ < 3) {
                printf("    NFC differs for:");
                for (uint32_t c : in) printf(" %04X", c);
                printf("\n");
            }
        }
        CHECK(bad == 0 && j.arr.size() == 400, "%d of %zu strings normalise differently", bad, j.arr.size());
    });

    add_test("token stream: a UTF-8 character split across tokens is printed once complete; bad bytes are U+FFFD", [] {
        TokenStream ts;
        std::string e = "\xE2\x82\xAC";  // the euro sign, 3 bytes
        std::string a = ts.push("x" + e.substr(0, 1)), b = ts.push(e.substr(1, 1)), c = ts.push(e.substr(2) + "y");
        CHECK(a == "x" && b == "" && c == e + "y", "got '%s' '%s' '%s'", a.c_str(), b.c_str(), c.c_str());
        TokenStream t2;
        std::string d = t2.push("\xFFok\xC3");
        std::string f = t2.push("", true);
        CHECK(d == "\xEF\xBF\xBDok" && f == "\xEF\xBF\xBD", "invalid bytes: '%s' '%s'", d.c_str(), f.c_str());
        Tokenizer t;
        t.load(TOK_GPT2, "data/tokenizers");
        std::vector<int> ids = t.encode("caf\xC3\xA9 \xF0\x9F\x98\x80!");  // the emoji spans several byte-level tokens
        TokenStream s3;
        std::string all;
        for (int id : ids) {
            std::string piece = s3.push(t.decode_bytes({id}));
            std::vector<uint32_t> cps;
            CHECK(utf8_decode(piece, &cps), "a streamed piece is not whole UTF-8");
            all += piece;
        }
        all += s3.push("", true);
        CHECK(all == "caf\xC3\xA9 \xF0\x9F\x98\x80!" && ids.size() > 4, "streamed '%s' (%zu tokens)", all.c_str(), ids.size());
    });

    add_test("GQA / MQA == MHA with the K/V weights duplicated per group (independent check)", [] {
        // query head h reads KV head h / (H/G): an MHA whose head h has the K/V rows of GQA's
        // group h / (H/G) must give the same logits. The MHA side shares no index mapping with
        // GQA's (it reads head h's own rows), so a wrong mapping, a wrong group size or a
        // copied-instead-of-shared K/V shows up as a difference.
        for (int pos = 0; pos < POS_COUNT; pos++)
            for (int G : {1, 2}) {
                GPTConfig gc = test_config(G == 1 ? ATTN_MQA : ATTN_GQA, pos), mc = test_config(ATTN_MHA, pos);
                gc.max_seq_len = mc.max_seq_len = 80;
                if (G != 1) gc.n_kv_head = G;
                GPT g(gc), m(mc);
                g.init_weights(5);
                for (size_t i = 0; i < g.ps.total; i++) g.params[i] *= 4.0f;  // away from the near-uniform init
                const int H = gc.n_head, hd = gc.head_dim, C = gc.d_model, per = H / gc.n_kv_head;
                for (const ParamSpec& ms : m.ps.specs) {
                    const ParamSpec* gs = nullptr;
                    for (const ParamSpec& x : g.ps.specs)
                        if (x.name == ms.name) gs = &x;
                    CHECK(gs != nullptr, "GQA has no tensor %s", ms.name.c_str());
                    if (!gs) continue;
                    bool w = ms.name.find("attn.w_qkv") != std::string::npos, b = ms.name.find("attn.b_qkv") != std::string::npos;
                    if (!w && !b) {
                        CHECK(gs->n == ms.n, "%s sizes differ", ms.name.c_str());
                        memcpy(m.params + ms.offset, g.params + gs->offset, ms.n * sizeof(float));
                        continue;
                    }
                    int cols = w ? C : 1;  // rows: q (H heads), then k (H), then v (H); GQA: q (H), k (G), v (G)
                    for (int part = 0; part < 3; part++)
                        for (int h = 0; h < H; h++) {
                            int gh = part == 0 ? h : h / per;
                            size_t src = ((size_t)(part == 0 ? 0 : H + (part - 1) * gc.n_kv_head) + gh) * hd * cols;
                            size_t dst = ((size_t)part * H + h) * hd * cols;
                            memcpy(m.params + ms.offset + dst, g.params + gs->offset + src, (size_t)hd * cols * sizeof(float));
                        }
                }
                int B = 2, T = 70;  // > 64: the attention core's key blocks
                std::vector<int> tok = random_tokens((size_t)B * T, gc.vocab_size, 2);
                g.forward(tok.data(), nullptr, B, T);
                Vec lg(g.logits, g.logits + (size_t)B * T * gc.padded_vocab_size);
                m.forward(tok.data(), nullptr, B, T);
                double d = max_abs_diff(lg.data(), m.logits, lg.size()), ref = max_abs(lg.data(), lg.size());
                CHECK(d <= 1e-5 * (1.0 + ref), "%s vs MHA with duplicated K/V: logits differ by %.3g (scale %.3g)", variant_name(gc).c_str(), d, ref);
                printf("    %-14s vs MHA(K/V duplicated): max|diff| %.2e of %.2e\n", variant_name(gc).c_str(), d, ref);
            }
    });

    add_test("KV-cache elements: formula == printed == measured cache buffers", [] {
        for (const GPTConfig& cfg : all_variants()) {
            long H = cfg.n_head, hd = cfg.head_dim, dR = cfg.pos == POS_ROPE ? cfg.rope_dim : 0, want = 0;
            switch (cfg.attn) {
                case ATTN_MHA: case ATTN_MKA: case ATTN_FMKA: want = 2 * H * hd; break;
                case ATTN_GQA: want = 2L * cfg.n_kv_head * hd; break;
                case ATTN_MQA: want = 2 * hd; break;
                case ATTN_MLA: want = cfg.kv_rank + dR; break;
                case ATTN_KVSPLICE: want = cfg.splice_rank + dR; break;
            }
            GPT m(cfg);
            m.decode_begin(16);
            CHECK(m.kv_elems_per_token_layer() == want, "%s: formula %ld, variant says %ld", variant_name(cfg).c_str(), want, m.kv_elems_per_token_layer());
            CHECK(m.kv_cache_floats_per_token() == (size_t)want * cfg.n_layer, "%s: cache buffers hold %zu floats/token, formula %ld",
                  variant_name(cfg).c_str(), m.kv_cache_floats_per_token(), want * cfg.n_layer);
        }
        // the issue's reference figures: Pythia-70m MHA 1024 per layer; MLA k=128 without rope key 128 (87.5% less)
        GPTConfig p;
        config_from_preset(&p, "pythia-70m");
        config_finalize(&p);
        CHECK(GPT(p).kv_elems_per_token_layer() == 1024, "pythia-70m MHA");
        p.attn = ATTN_MLA; p.kv_rank = 128; p.pos = POS_ALIBI; p.rope_dim = -1;
        config_finalize(&p);
        CHECK(GPT(p).kv_elems_per_token_layer() == 128, "pythia-70m MLA k=128 alibi");
    });

    add_test("every variant learns on the bundled data (short run, loss falls)", [] {
        const char* train = "data/tinyshakespeare/gpt-neox-20b/train_*.bin";
        const char* val = "data/tinyshakespeare/gpt-neox-20b/val_*.bin";
        for (int a : {ATTN_MHA, ATTN_GQA, ATTN_MQA, ATTN_MLA, ATTN_KVSPLICE, ATTN_MKA, ATTN_FMKA}) {
            GPTConfig cfg;
            config_from_preset(&cfg, "tiny");
            cfg.d_model = 64; cfg.n_layer = 2; cfg.n_head = 4; cfg.d_ff = 128; cfg.attn = a;
            cfg.n_kv_head = a == ATTN_GQA ? 2 : 0;
            if (is_mla_family(a)) cfg.kv_rank = 32;
            config_finalize(&cfg);
            TrainConfig tc;
            tc.B = 4; tc.T = 32; tc.steps = 40; tc.warmup = 5; tc.lr = 3e-3f;
            GPT m(cfg);
            m.init_weights(tc.seed);
            DataLoader tr, va;
            tr.open(train, tc.B, tc.T, cfg.vocab_size, cfg.tokenizer_id, tc.seed);
            va.open(val, tc.B, tc.T, cfg.vocab_size, cfg.tokenizer_id, tc.seed);
            float v0 = val_loss(m, va, 4);
            for (int s = 0; s < tc.steps; s++) train_step(m, tr, tc, s);
            float v1 = val_loss(m, va, 4);
            CHECK(v1 < v0 - 2.0f, "%s: val loss %.3f -> %.3f did not fall", ATTN_NAMES[a], v0, v1);
            printf("    %-9s val loss %.3f -> %.3f\n", ATTN_NAMES[a], v0, v1);
        }
    });

    // ---- evaluation (llmc/eval.h): every protocol against an independent reference ----
    add_test("eval protocols == hand-computed references (disjoint, sliding, lm-eval rolling)", [] {
        GPTConfig cfg = test_config(ATTN_GQA, POS_ALIBI);
        GPT m(cfg);
        m.init_weights(4);
        for (size_t i = 0; i < m.ps.total; i++) m.params[i] *= 4.0f;
        const int V = cfg.vocab_size, Vp = cfg.padded_vocab_size;
        std::vector<int> toks = random_tokens(101, V, 77);
        // reference NLL of target `tg` at row `row` of the last forward, from the logits, in double
        auto ref_nll = [&](int row, int tg) {
            const float* l = m.logits + (size_t)row * Vp;
            double mx = -1e30, s = 0.0;
            for (int v = 0; v < V; v++) mx = std::max(mx, (double)l[v]);
            for (int v = 0; v < V; v++) s += exp(l[v] - mx);
            return log(s) + mx - l[tg];
        };
        auto close = [](double a, double b) { return fabs(a - b) <= 1e-5 * (1.0 + fabs(b)); };
        // (a) disjoint windows of 8: windows start at 0, 8, ..., 88 (12 windows, 96 targets)
        int T = 8;
        std::vector<NLL> per_pos;
        NLL a = ppl_disjoint(m, toks, T, 3, 0, &per_pos);
        double ra = 0.0;
        std::vector<double> rpos(T, 0.0);
        for (int w = 0; w * T + T < (int)toks.size(); w++) {
            m.forward(&toks[w * T], nullptr, 1, T);
            for (int t = 0; t < T; t++) {
                double x = ref_nll(t, toks[w * T + t + 1]);
                ra += x;
                rpos[t] += x;
            }
        }
        CHECK(a.n == 96 && close(a.sum, ra), "disjoint: %ld tokens, %.9g vs reference %.9g", a.n, a.sum, ra);
        for (int t = 0; t < T; t++) CHECK(per_pos[t].n == 12 && close(per_pos[t].sum, rpos[t]), "position %d", t);
        // (b) sliding window 12, stride 5: each target j scored once, in the first window holding it as new
        int W = 12, S = 5, N = (int)toks.size();
        NLL b = ppl_sliding(m, toks, W, S, 0);
        double rb = 0.0;
        int rn = 0, prev_end = 0;
        for (int begin = 0; prev_end < N - 1; begin += S) {
            int end = std::min(begin + W, N - 1);
            m.forward(&toks[begin], nullptr, 1, end - begin);
            for (int j = std::max(prev_end + 1, begin + 1); j <= end; j++) { rb += ref_nll(j - 1 - begin, toks[j]); rn++; }
            prev_end = end;
        }
        CHECK(b.n == N - 1 && rn == N - 1 && close(b.sum, rb), "sliding: %ld/%d tokens, %.9g vs %.9g", b.n, rn, b.sum, rb);
        // (c) lm-eval rolling windows (get_rolling_token_windows with context_len 1), eos = 0
        for (int n : {5, 12, 13, 30}) {
            W = 12;
            NLL c = ppl_rolling_document(m, toks.data(), n, W, 0);
            double rc = 0.0;
            long cnt = 0;
            // first window: [eos] + doc[0 .. first-1) predicts doc[0 .. first)
            int first = std::min(W, n);
            std::vector<int> in = {0};
            for (int i = 0; i < first - 1; i++) in.push_back(toks[i]);
            m.forward(in.data(), nullptr, 1, (int)in.size());
            for (int i = 0; i < first; i++) { rc += ref_nll(i, toks[i]); cnt++; }
            for (int predicted = first; predicted < n;) {
                int pred = std::min(W, n - predicted), end = predicted + pred;
                // context doc[end - W - 1 .. end - 1), the continuation is its last `pred` targets
                int start = end - W - 1;
                m.forward(&toks[start], nullptr, 1, W);
                for (int i = 0; i < pred; i++) { rc += ref_nll(W - pred + i, toks[end - pred + i]); cnt++; }
                predicted = end;
            }
            CHECK(c.n == n && cnt == n && close(c.sum, rc), "rolling n=%d: %ld tokens, %.9g vs %.9g", n, c.n, c.sum, rc);
        }
        // word / byte perplexity arithmetic over two documents
        std::vector<WikiDoc> docs = {{0, 30, 20, 100, "a"}, {30, 13, 7, 51, "b"}};
        WikiResult w = ppl_wikitext(m, toks, docs, 12, 0, 0);
        double s0 = ppl_rolling_document(m, toks.data(), 30, 12, 0).sum + ppl_rolling_document(m, toks.data() + 30, 13, 12, 0).sum;
        CHECK(close(w.tokens.sum, s0) && w.words == 27 && w.bytes == 151, "wikitext sums");
        CHECK(close(w.word_ppl(), exp(s0 / 27)) && close(w.byte_ppl(), exp(s0 / 151)) && close(w.bits_per_byte(), s0 / 151 / log(2.0)), "word/byte ppl");
        // reversal: the answer's log-likelihood given [eos] + prompt (eos 50256: not 0)
        std::vector<int> prompt = {5, 9, 2}, answer = {44, 7};
        double ll = answer_loglik(m, prompt, answer, 3);
        std::vector<int> in2 = {3, 5, 9, 2, 44};
        m.forward(in2.data(), nullptr, 1, 5);
        double rs = -ref_nll(3, 44) - ref_nll(4, 7);
        CHECK(close(ll, rs), "answer log-likelihood %.9g vs %.9g", ll, rs);
        // margins against the other answers of the same relation and half, brute force
        std::vector<ReversalFact> facts = {{true, "r", {5, 9}, {44}, {7, 8}, {12, 3}}, {true, "r", {6}, {45, 2}, {7}, {13}},
                                           {true, "r", {1, 2}, {46}, {9}, {14, 15}}, {true, "other", {3}, {47}, {4}, {16}},
                                           {false, "r", {5}, {48}, {8}, {17}}, {false, "r", {6, 6}, {49}, {9, 9}, {18}}};
        ReversalResult rr = reversal_eval(m, facts, 3);
        for (int dir = 0; dir < 2; dir++)
            for (int half = 0; half < 2; half++) {
                double ll = 0, margin = 0, acc = 0;
                int n = 0;
                for (size_t i = 0; i < facts.size(); i++) {
                    const ReversalFact& f = facts[i];
                    if ((int)f.trained != half) continue;
                    auto L = [&](const ReversalFact& g) { return answer_loglik(m, dir ? f.rev_prompt : f.fwd_prompt, dir ? g.rev_answer : g.fwd_answer, 3); };
                    double c = L(f), o = 0;
                    int k = 0;
                    bool top = true;
                    for (size_t j = 0; j < facts.size(); j++)
                        if (j != i && facts[j].trained == f.trained && facts[j].relation == f.relation) { double l = L(facts[j]); o += l; k++; top = top && c > l; }
                    ll += c; margin += k ? c - o / k : 0; acc += top; n++;
                }
                const ReversalScore& sc = (dir ? rr.rev : rr.fwd)[half];
                CHECK(sc.n == n && close(sc.ll, ll / n) && close(sc.margin, margin / n) && close(sc.accuracy, acc / n),
                      "reversal dir %d half %d: n %d/%d ll %.6g/%.6g margin %.6g/%.6g acc %.3g/%.3g", dir, half, sc.n, n, sc.ll, ll / n,
                      sc.margin, margin / n, sc.accuracy, acc / n);
            }
        CHECK(close(rr.rev_gain(), rr.rev[1].margin - rr.rev[0].margin), "gain");
    });

    add_test("eval: position buckets, RoPE bands (NeoX), the leak guard catches a leaking model", [] {
        std::vector<int> e = {0, 16, 32, 64, 96};
        int want[][2] = {{0, 0}, {15, 0}, {16, 1}, {31, 1}, {32, 2}, {63, 2}, {64, 3}, {95, 3}, {96, 4}, {127, 4}};
        for (auto& w : want) CHECK(bucket_of(e, w[0]) == w[1], "position %d -> bucket %d, want %d", w[0], bucket_of(e, w[0]), w[1]);
        CHECK(bucket_of({8, 16}, 3) == -1, "before the first edge");
        std::vector<NLL> per(128);
        for (int t = 0; t < 128; t++) per[t].add(t);
        std::vector<NLL> bk = bucketize(per, e);
        CHECK(bk[0].n == 16 && bk[4].n == 32 && bk[2].sum == (32 + 63) * 32 / 2, "bucketize");
        // r = 16: high-frequency dims {0..3} u {8..11}, low {4..7} u {12..15}; the rest pass through
        for (int d = 0; d < 24; d++) {
            Band want_b = d >= 16 ? BAND_PASS : ((d % 8) < 4 ? BAND_HIGH : BAND_LOW);
            CHECK(rope_band(d, 0, 16) == want_b, "dim %d band %d, want %d", d, rope_band(d, 0, 16), want_b);
        }
        CHECK(rope_band(3, 8, 16) == BAND_PASS && rope_band(8, 8, 16) == BAND_HIGH && rope_band(12, 8, 16) == BAND_LOW, "offset segment (MLA)");
        for (int T : {16, 150})
        for (GPTConfig cfg : all_variants()) {
            cfg.max_seq_len = std::max(cfg.max_seq_len, T);
            GPT m(cfg);
            m.init_weights(2);
            std::string why;
            CHECK(leak_check(m, T, 1, &why), "%s: a causal model failed the leak guard: %s", variant_name(cfg).c_str(), why.c_str());
            g_test_only_future_leak = 1;
            bool caught = !leak_check(m, T, 1, &why);
            g_test_only_future_leak = 0;
            CHECK(caught, "%s: the leak guard missed a model that sees one token ahead", variant_name(cfg).c_str());
        }
    });

    add_test("built-in matmul == OpenBLAS on model-like shapes (when built with it)", [] {
        if (!matmul_have_blas()) { printf("    no OpenBLAS in this build\n"); g_skip_current = true; return; }
        Rng rng(12);
        for (auto s : std::vector<std::array<int, 3>>{{64, 128, 384}, {256, 96, 1000}, {7, 33, 65}, {1, 64, 300}}) {
            int M = s[0], K = s[1], N = s[2];
            Vec a = randn((size_t)M * K, rng), w = randn((size_t)N * K, rng), b = randn(N, rng), d = randn((size_t)M * N, rng);
            Vec out[2], dI[2], dW[2], dB[2];
            for (int impl : {MATMUL_BUILTIN, MATMUL_BLAS}) {
                int saved = matmul_impl();
                matmul_impl() = impl;
                out[impl].resize((size_t)M * N); dI[impl].resize((size_t)M * K);
                dW[impl].assign((size_t)N * K, 0.0f); dB[impl].assign(N, 0.0f);
                matmul_forward(out[impl].data(), a.data(), w.data(), b.data(), M, K, N);
                matmul_backward(dI[impl].data(), dW[impl].data(), dB[impl].data(), d.data(), a.data(), w.data(), M, K, N);
                matmul_impl() = saved;
            }
            auto maxrel = [](const Vec& x, const Vec& y) { return max_abs_diff(x.data(), y.data(), x.size()) / (max_abs(y.data(), y.size()) + 1e-30); };
            double e = nan_max(nan_max(maxrel(out[0], out[1]), maxrel(dI[0], dI[1])), nan_max(maxrel(dW[0], dW[1]), maxrel(dB[0], dB[1])));
            CHECK(e < 1e-5, "%dx%dx%d: built-in and OpenBLAS differ by %.3g (relative to the largest value)", M, K, N, e);
        }
    });

    add_test("decode's few-rows matmul (M = 1..8), (N,K) and packed: == a double-precision reference, and each row == that row alone, bitwise", [] {
        // M <= FEW_ROWS_MAX takes matmul_forward_few_rows whatever --matmul says, or, inside a
        // DecodePackScope, the packed 48-column panels; N not a multiple of the 4-row weight blocks
        // nor of the panels (a zero-padded last panel), K with and without a tail past the 16-lane
        // steps, and N small enough that the prefetch address is clamped
        Rng rng(21);
        int cases = 0;
        for (int packed = 0; packed < 2; packed++)
        for (auto s : std::vector<std::array<int, 2>>{{37, 3}, {48, 131}, {2050, 9}, {512, 70}, {16, 1}, {64, 97}}) {
            int K = s[0], N = s[1];
            DecodePacks packs;
            for (int M = 1; M <= FEW_ROWS_MAX; M++) {
                DecodePackScope scope(packed ? &packs : nullptr);
                packs.clear();  // a new w each M: the pack must be made again
                Vec a = randn((size_t)M * K, rng), w = randn((size_t)N * K, rng), b = randn(N, rng);
                Vec out((size_t)M * N), one(N);
                matmul_forward(out.data(), a.data(), w.data(), b.data(), M, K, N);
                double worst = 0.0;
                for (int m = 0; m < M; m++) {
                    matmul_forward(one.data(), a.data() + (size_t)m * K, w.data(), b.data(), 1, K, N);
                    for (int n = 0; n < N; n++) {
                        double ref = b[n], mag = std::fabs(b[n]);
                        for (int k = 0; k < K; k++) {
                            ref += (double)a[(size_t)m * K + k] * w[(size_t)n * K + k];
                            mag += std::fabs((double)a[(size_t)m * K + k] * w[(size_t)n * K + k]);
                        }
                        float got = out[(size_t)m * N + n];
                        double e = std::fabs(got - ref) / (mag + 1e-30);
                        worst = std::isfinite(got) ? std::max(worst, e) : INFINITY;
                        CHECK(memcmp(&got, &one[n], 4) == 0, "M %d K %d N %d: row %d col %d is %.9g in the batch, %.9g alone", M, K, N, m, n, got, one[n]);
                    }
                }
                CHECK(worst < 1e-6, "%s M %d K %d N %d: off the double reference by %.3g (relative to the sum of |products|)",
                      packed ? "packed" : "(N,K)", M, K, N, worst);
                CHECK(packed ? packs.packs.size() == 1 : packs.packs.empty(), "%zu packs made", packs.packs.size());
                cases++;
            }
        }
        printf("    %d cases: within 1e-6 of the reference, every row bitwise the row alone\n", cases);
    });

    add_test("a decode step's linear weights, as matmul_forward reads them, are all in decode_weight_floats (bench_decode's bound)", [] {
        for (int attn = 0; attn < ATTN_COUNT; attn++)
            for (int B : {1, 3}) {
                GPTConfig cfg = test_config(attn, POS_ROPE);
                GPT m(cfg);
                m.init_weights(3);
                m.decode_begin(B, 8);
                std::vector<int> tok(B), seq(B);
                for (int s = 0; s < B; s++) { m.decode_pretend_held(s, 5); tok[s] = s + 1; seq[s] = s; }
                m.decode(tok.data(), seq.data(), B);  // packs the weights (decode_weight_floats counts MLA's derived ones after this)
                g_prof.reset();
                m.decode(tok.data(), seq.data(), B);
                // what decode_weight_floats counts beyond the matmuls' weights and biases: the
                // LayerNorms, the token's embedding row; MLA's absorbed W_UK (its own loop) and
                // norms; MKA's projected memory slots (computed at decode_begin)
                const double C = cfg.d_model;
                double other = 3 * C + cfg.n_layer * 4 * C;
                for (const Layer& y : m.layers) {
                    if (auto* a = dynamic_cast<const MLAAttention*>(y.attn.get())) other += a->w_uk_abs.size() + cfg.kv_rank;
                    if (auto* a = dynamic_cast<const MKAAttention*>(y.attn.get())) other += a->dec_mkv.size();
                }
                const double read = g_prof.weight_floats, counted = (double)m.decode_weight_floats() - other;
                CHECK(read > 0 && read <= counted && read >= 0.97 * counted,
                      "%s, batch %d: matmul_forward read %.0f weight floats in one step, decode_weight_floats counts %.0f for them",
                      ATTN_NAMES[attn], B, read, counted);
            }
    });

    add_test("a decode step's counted multiply-adds (llmc/profile.h, bench_decode's FMA floor) == the shapes' count", [] {
        for (int attn : {ATTN_MHA, ATTN_GQA, ATTN_MLA}) {
            GPTConfig cfg = test_config(attn, POS_ROPE);
            cfg.max_seq_len = 200;
            GPT m(cfg);
            m.init_weights(3);
            const int B = 3, L = 70;  // 70 held keys: past the 64-key blocks
            m.decode_begin(B, L + 1);
            std::vector<int> tok(B), seq(B);
            for (int s = 0; s < B; s++) { m.decode_pretend_held(s, L); tok[s] = s + 1; seq[s] = s; }
            g_prof.reset();
            m.decode(tok.data(), seq.data(), B);
            const double C = cfg.d_model, F = cfg.d_ff, H = cfg.n_head, hd = cfg.head_dim, nl = cfg.n_layer, nk = L + 1;
            // every query head scores each held key and its own, and sums their values
            const double per_key = is_mla_family(attn) ? 2.0 * cfg.kv_rank + cfg.rope_dim : 2.0 * hd;
            const double want_attn = B * nl * H * nk * per_key;
            CHECK(g_prof.macs[PROF_ATTENTION] == want_attn, "%s: attention counted %.0f multiply-adds, the shapes give %.0f", ATTN_NAMES[attn],
                  g_prof.macs[PROF_ATTENTION], want_attn);
            if (attn != ATTN_MLA) {  // the linear layers: q, k, v (k and v for the KV heads only), out, the MLP, the classifier
                const double kv = attn == ATTN_GQA ? cfg.n_kv_head * hd : C;
                const double want_lin = B * (nl * (C * (C + 2 * kv) + C * C + 2 * C * F) + C * cfg.padded_vocab_size);
                CHECK(g_prof.macs[PROF_MATMUL] == want_lin, "%s: the linear layers counted %.0f multiply-adds, the shapes give %.0f",
                      ATTN_NAMES[attn], g_prof.macs[PROF_MATMUL], want_lin);
            }
        }
    });

    add_test("decoding's packed weights: kept across decode_begin while their weights are unchanged, redone when one float changes, used only inside decode", [] {
        GPTConfig cfg = test_config(ATTN_MLA, POS_ROPE);  // MLA: its absorbed W_O.W_UV is packed too
        cfg.max_seq_len = 32;
        GPT m(cfg);
        m.init_weights(5);
        const int T = 6, Vp = cfg.padded_vocab_size, V = cfg.vocab_size;
        std::vector<int> tok = random_tokens(T, V, 9);
        auto decode_last = [&] {  // prefill T-1 tokens, decode the last one alone (the few-rows path)
            m.decode_begin(1, T);
            std::vector<int> s(T - 1, 0);
            m.decode(tok.data(), s.data(), T - 1);
            int s0 = 0;
            const float* lg = m.decode(&tok[T - 1], &s0, 1);
            return Vec(lg, lg + V);
        };
        auto forward_last = [&] {
            m.forward(tok.data(), nullptr, 1, T);
            return Vec(m.logits + (size_t)(T - 1) * Vp, m.logits + (size_t)(T - 1) * Vp + V);
        };
        Vec d0 = decode_last();
        CHECK(!m.dec_packs.packs.empty(), "a decode step made no packs");
        CHECK(active_decode_packs() == nullptr, "the packs are still in use after decode returned");
        // unchanged weights: the packs of the parameters survive decode_begin (the same buffers)
        std::map<const float*, const float*> before;
        for (auto& kv : m.dec_packs.packs) before[std::get<0>(kv.first)] = kv.second.data;
        Vec d0b = decode_last();
        size_t kept = 0;
        for (auto& kv : m.dec_packs.packs) kept += before.count(std::get<0>(kv.first)) && before[std::get<0>(kv.first)] == kv.second.data;
        CHECK(kept > 0 && kept + cfg.n_layer >= m.dec_packs.packs.size(), "%zu of %zu packs kept across decode_begin with the same weights", kept,
              m.dec_packs.packs.size());
        CHECK(memcmp(d0.data(), d0b.data(), V * sizeof(float)) == 0, "the same weights decoded differently the second time");
        // one float of the classifier changed: its pack must be redone, and the logit moves
        m.params[m.w_out + (size_t)3 * cfg.d_model] += 1.0f;  // row 3: token 3's logit
        Vec d0c = decode_last();
        m.forward(tok.data(), nullptr, 1, T);
        CHECK(std::fabs(d0c[3] - m.logits[(size_t)(T - 1) * Vp + 3]) <= 1e-4 * (1.0 + std::fabs(d0c[3])) && d0c[3] != d0b[3],
              "one classifier weight changed: decoded logit %.6g, forward %.6g, before %.6g (a stale pack)", d0c[3], m.logits[(size_t)(T - 1) * Vp + 3], d0b[3]);
        // change every weight: a forward of T <= 8 rows (the few-rows path) outside decode must
        // see the new weights, and so must the next decode after decode_begin
        for (size_t i = 0; i < m.ps.total; i++) m.params[i] *= 1.5f;
        Vec f1 = forward_last(), d1 = decode_last();
        double ref = max_abs(f1.data(), f1.size());
        CHECK(max_abs_diff(d1.data(), f1.data(), V) <= 1e-4 * (1.0 + ref), "decode after new weights differs from the forward by %.3g: a stale pack",
              max_abs_diff(d1.data(), f1.data(), V));
        CHECK(max_abs_diff(d0.data(), d1.data(), V) > 1e-3 * (1.0 + ref), "the weights changed and the decoded logits did not");
        printf("    %zu packs, %.1f MB; new weights seen by the forward and the next decode (diff %.2e)\n", m.dec_packs.packs.size(),
               m.dec_packs.floats() * 4e-6, max_abs_diff(d1.data(), f1.data(), V));
    });

    add_test("--matmul auto passes over OpenBLAS cores older than the CPU (Prescott on an AVX2 CPU)", [] {
        CHECK(!blas_core_fits("Prescott", true), "OpenBLAS's SSE3 kernels on an AVX2 CPU must not be chosen");
        CHECK(!blas_core_fits("Sandybridge", true), "AVX without FMA on an AVX2 CPU must not be chosen");
        CHECK(blas_core_fits("SkylakeX", true) && blas_core_fits("HASWELL", true) && blas_core_fits("Zen", true),
              "OpenBLAS's AVX2 / AVX-512 kernels must be chosen (whatever the case of the name)");
        CHECK(blas_core_fits("Prescott", false), "a CPU without AVX2 has nothing better than OpenBLAS's SSE kernels");
        printf("    this machine: OpenBLAS core '%s', fits: %s; linear layers: %s\n", blas_core_name().c_str(),
               blas_core_fits_cpu() ? "yes" : "no", matmul_desc());
    });

    add_test("exp16 (the vectorised exp) matches expf to 3e-7 relative", [] {
        double worst = 0.0;
        for (float x0 = -90.0f; x0 < 90.0f; x0 += 0.37f) {
            v16f x;
            for (int j = 0; j < 16; j++) x[j] = x0 + 0.0231f * j;
            v16f y = exp16(x);
            for (int j = 0; j < 16; j++) {
                double ref = exp((double)std::min(88.0f, std::max(-87.3f, x[j])));
                worst = nan_max(worst, std::isfinite(y[j]) ? fabs(y[j] - ref) / ref : NAN);
            }
        }
        CHECK(worst < 3e-7, "worst relative error %.3g", worst);
        printf("    worst relative error %.2e\n", worst);
    });

    add_test("alibi slopes match the paper (8, 12, 16, 6 heads) and the bias falls with distance", [] {
        auto near = [](const std::vector<float>& a, const std::vector<double>& b) {
            if (a.size() != b.size()) return false;
            for (size_t i = 0; i < a.size(); i++)
                if (fabs(a[i] - b[i]) > 1e-6 * b[i]) return false;
            return true;
        };
        // Press et al.: 2^(-8/n * i) for n a power of two; else the 2^floor(log2 n) slopes then every other slope of 2x that
        std::vector<double> s8 = {0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625, 0.0078125, 0.00390625};
        std::vector<double> s12 = {0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625, 0.0078125, 0.00390625,
                                   0.7071067811865476, 0.35355339059327373, 0.17677669529663687, 0.08838834764831843};
        std::vector<double> s16;
        for (int i = 1; i <= 16; i++) s16.push_back(pow(2.0, -0.5 * i));
        std::vector<double> s6 = {0.25, 0.0625, 0.015625, 0.00390625, 0.5, 0.125};
        CHECK(near(alibi_slopes(8, 0), s8), "8 heads");
        CHECK(near(alibi_slopes(12, 0), s12), "12 heads");
        CHECK(near(alibi_slopes(16, 0), s16), "16 heads");
        CHECK(near(alibi_slopes(6, 0), s6), "6 heads");
        CHECK(near(alibi_slopes(4, 0.0625f), {0.0625, 0.0625, 0.0625, 0.0625}), "uniform slope");
        GQAAttention att(test_config(ATTN_MHA, POS_ALIBI));
        for (int h = 0; h < 4; h++)
            for (int t = 0; t < 10; t++) {
                CHECK(att.core.bias(h, t, t) == 0.0f, "bias at distance 0 must be 0");
                for (int t2 = 1; t2 <= t; t2++)
                    CHECK(att.core.bias(h, t, t2 - 1) < att.core.bias(h, t, t2) && att.core.bias(h, t, t2) <= 0.0f, "head %d: bias must be <= 0 and fall with distance", h);
            }
    });

    add_test("rope: q(m+s).k(n+s) == q(m).k(n), pass-through dims untouched", [] {
        Rope r;
        r.init(16, 10000.0);
        r.ensure(300);
        Rng rng(2);
        for (int trial = 0; trial < 20; trial++) {
            Vec q = randn(24, rng), k = randn(24, rng);
            int m = (int)rng.below(100), n = (int)rng.below(100), s = (int)rng.below(150);
            auto score = [&](int a, int b) {
                Vec qa = q, kb = k;
                r.apply(qa.data(), a);
                r.apply(kb.data(), b);
                return dot_d(qa, kb);
            };
            double d0 = score(m, n), d1 = score(m + s, n + s);
            CHECK(fabs(d0 - d1) < 1e-4 * (1 + fabs(d0)), "m=%d n=%d s=%d: %.7f vs %.7f", m, n, s, d0, d1);
            Vec q2 = q;
            r.apply(q2.data(), m + 1);
            CHECK(memcmp(&q2[16], &q[16], 8 * sizeof(float)) == 0, "dims past rot must pass through");
        }
        // NeoX pairing: dim i pairs with i + rot/2, so a vector in dims {0, 8} rotates within them
        Vec e(24, 0.0f);
        e[0] = 1.0f;
        r.apply(e.data(), 1);
        CHECK(fabs(e[0] - cos(1.0)) < 1e-6 && fabs(e[8] - sin(1.0)) < 1e-6 && e[1] == 0.0f, "rotate-half layout");
    });

    add_test("preset parameter counts (pythia-14m, pythia-31m, pythia-70m, gpt2-124m)", [] {
        GPTConfig c;
        // Pythia's published non-embedding counts (1,189,888 and 4,739,072) plus two 50304-row tables
        config_from_preset(&c, "pythia-14m");
        config_finalize(&c);
        size_t n14 = GPT(c).num_parameters();
        CHECK(n14 == 1189888 + 2 * 50304 * 128, "pythia-14m has %zu parameters, expected 14,067,712", n14);
        config_from_preset(&c, "pythia-31m");
        config_finalize(&c);
        size_t n31 = GPT(c).num_parameters();
        CHECK(n31 == 4739072 + 2 * 50304 * 256, "pythia-31m has %zu parameters, expected 30,494,720", n31);
        config_from_preset(&c, "pythia-70m");
        config_finalize(&c);
        size_t n = GPT(c).num_parameters();
        CHECK(n == 70426624, "pythia-70m has %zu parameters, expected 70,426,624", n);
        config_from_preset(&c, "gpt2-124m");
        config_finalize(&c);
        n = GPT(c).num_parameters();
        CHECK(n == 124439808, "gpt2-124m has %zu parameters, expected 124,439,808", n);
        CHECK(c.padded_vocab_size == 50304, "gpt2 vocab pads to 50304, got %d", c.padded_vocab_size);
    });

    add_test("overfit one batch to loss < 0.1", [] {
        GPTConfig cfg = test_config(ATTN_MHA, POS_ROPE);
        GPT m(cfg);
        m.init_weights(1);
        int B = 2, T = 16;
        std::vector<int> tok = random_tokens((size_t)B * (T + 1), cfg.vocab_size, 8), in, tg;
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) { in.push_back(tok[b * (T + 1) + t]); tg.push_back(tok[b * (T + 1) + t + 1]); }
        float first = 0, loss = 0;
        for (int step = 0; step < 400; step++) {
            m.zero_grad();
            loss = m.forward(in.data(), tg.data(), B, T);
            if (step == 0) first = loss;
            if (loss < 0.1f) break;
            m.backward();
            m.adamw_update(1e-2f, 0.9f, 0.999f, 1e-8f, 0.0f, step + 1);
        }
        CHECK(loss < 0.1f, "loss went from %.3f to %.3f", first, loss);
        printf("    loss %.3f -> %.4f\n", first, loss);
    });

    // SPAM (--optim spam) against an independent double-precision reference of the paper's
    // update (the schedule recomputed here, not taken from opt_step): resets every 8 steps, a
    // cosine warmup of 3 steps after each, spike clipping at 2 x v after 2 steps; gradients with
    // planted spikes. AdamW (the defaults) is checked the same way.
    add_test("SPAM and AdamW updates vs a float64 reference (resets, warmup, spike clipping)", [] {
        GPTConfig cfg = test_config(ATTN_MHA, POS_ROPE);
        for (int spam = 0; spam < 2; spam++) {
            GPT m(cfg);
            m.init_weights(2);
            const size_t n = m.ps.total;
            TrainConfig tc;
            tc.optim = spam ? OPT_SPAM : OPT_ADAMW;
            tc.spam_interval = 8; tc.spam_warmup = 3; tc.spam_skip = 2; tc.spam_threshold = 2.0f;
            const double lr = 1e-2, b1 = 0.9, b2 = 0.95, eps = 1e-8, wd = 0.1, gs = 0.5;
            std::vector<double> p(m.params, m.params + n), mm(n, 0.0), vv(n, 0.0);
            Rng r(7);
            long clipped = 0, resets = 0;
            for (int step = 0; step < 25; step++) {
                for (size_t i = 0; i < n; i++) {
                    double g = r.normal() * 0.01;
                    if ((i * 7 + step) % 97 == 0) g *= 300.0;  // a spike
                    m.grads[i] = (float)g;
                }
                m.adamw_update((float)lr, (float)b1, (float)b2, (float)eps, (float)wd, step + 1, (float)gs, opt_step(tc, step));
                const int since = step % 8;
                const bool reset = spam && step >= 8 && since == 0, clip = spam && since >= 2;
                const double scale = spam && step >= 8 && since < 3 ? 0.01 + 0.99 * 0.5 * (1.0 - cos(M_PI * since / 3.0)) : 1.0;
                resets += reset;
                const double bc1 = 1.0 - pow(b1, step + 1), bc2 = 1.0 - pow(b2, step + 1);
                for (const ParamSpec& sp : m.ps.specs)
                    for (size_t i = sp.offset; i < sp.offset + sp.n; i++) {
                        double g = (double)m.grads[i] * gs, m0 = reset ? 0.0 : mm[i], v0 = reset ? 0.0 : vv[i];
                        if (clip && g * g > 2.0 * v0) { g = (g < 0 ? -1.0 : 1.0) * sqrt(2.0 * v0); clipped++; }
                        mm[i] = b1 * m0 + (1 - b1) * g;
                        vv[i] = b2 * v0 + (1 - b2) * g * g;
                        p[i] -= lr * (scale * (mm[i] / bc1) / (sqrt(vv[i] / bc2) + eps) + (sp.decay ? wd : 0.0) * p[i]);
                    }
            }
            double worst = 0.0;
            for (size_t i = 0; i < n; i++) {
                double e = fabs(m.params[i] - p[i]) / (1e-6 + 1e-4 * fabs(p[i]));
                if (!(e <= worst)) worst = e;
            }
            printf("    %s: worst %.1f%% of allowed; %ld clipped entries, %ld resets\n", spam ? "spam" : "adamw", 100 * worst, clipped, resets);
            CHECK(worst <= 1.0, "%s: parameters differ from the reference (%.1f%% of allowed)", spam ? "spam" : "adamw", 100 * worst);
            if (spam) CHECK(clipped > 100 && resets == 3, "the test must exercise clipping and resets (%ld, %ld)", clipped, resets);
        }
    });

    add_test("save -> resume is bitwise identical, and written atomically", [] {
        std::string shard = tmpdir() + "/resume_train_000.bin", ck = tmpdir() + "/resume.ckpt";
        write_shard(shard, random_tokens(600, 61, 3), 61);
        GPTConfig cfg = test_config(ATTN_GQA, POS_ALIBI);
        TrainConfig tc;
        tc.B = 2; tc.T = 8; tc.steps = 6; tc.warmup = 2; tc.lr = 1e-2f;
        GPT a(cfg);
        a.init_weights(tc.seed);
        DataLoader da;
        da.open(shard, tc.B, tc.T, cfg.vocab_size, cfg.tokenizer_id, tc.seed);
        for (int s = 0; s < tc.steps; s++) train_step(a, da, tc, s);

        GPT b(cfg);
        b.init_weights(tc.seed);
        DataLoader db;
        db.open(shard, tc.B, tc.T, cfg.vocab_size, cfg.tokenizer_id, tc.seed);
        for (int s = 0; s < 3; s++) train_step(b, db, tc, s);
        checkpoint_save(ck.c_str(), b, 3, db.rng.state, 1.0f);
        struct stat st;
        CHECK(stat((ck + ".tmp").c_str(), &st) != 0, "the temp file must be renamed away");

        GPT c(cfg);
        c.init_weights(999);  // different init: everything must come from the checkpoint
        DataLoader dc;
        dc.open(shard, tc.B, tc.T, cfg.vocab_size, cfg.tokenizer_id, 4242);
        CheckpointHeader h = checkpoint_load(ck.c_str(), c);
        dc.rng.state = h.data_rng;
        CHECK(h.step == 3, "step %ld", (long)h.step);
        for (int s = (int)h.step; s < tc.steps; s++) train_step(c, dc, tc, s);
        size_t n = a.ps.total * sizeof(float);
        CHECK(memcmp(a.params, c.params, n) == 0, "parameters differ after resume");
        CHECK(memcmp(a.m, c.m, n) == 0 && memcmp(a.v, c.v, n) == 0, "AdamW moments differ after resume");
        CHECK(da.rng.state == dc.rng.state, "data order differs after resume");
        CHECK(memcmp(a.params, b.params, n) != 0, "sanity: the first half alone must differ");
    });

    add_test("data-parallel slices: rank r of N loads micro-batch r of what one process draws for N", [] {
        std::string shard = tmpdir() + "/slices_train_000.bin";
        write_shard(shard, random_tokens(900, 61, 4), 61);
        const int B = 3, T = 8, N = 3;
        DataLoader whole;  // the reference: one loader drawing N*B windows at once
        whole.open(shard, B * N, T, 61, TOK_NEOX, 7);
        std::vector<DataLoader> ranks(N);
        for (int r = 0; r < N; r++) ranks[r].open(shard, B, T, 61, TOK_NEOX, 7);
        for (int step = 0; step < 4; step++) {
            whole.next_random_batch();
            for (int r = 0; r < N; r++) {
                ranks[r].next_random_batch(r, N);
                CHECK(memcmp(ranks[r].inputs.data(), whole.inputs.data() + (size_t)r * B * T, sizeof(int) * B * T) == 0 &&
                          memcmp(ranks[r].targets.data(), whole.targets.data() + (size_t)r * B * T, sizeof(int) * B * T) == 0,
                      "step %d: rank %d's windows are not micro-batch %d of the whole draw", step, r, r);
                CHECK(ranks[r].rng.state == whole.rng.state, "step %d: rank %d's RNG is out of step", step, r);
            }
        }
        CHECK(memcmp(ranks[0].inputs.data(), ranks[1].inputs.data(), sizeof(int) * B * T) != 0, "sanity: ranks 0 and 1 got the same windows");
    });

    add_test("a build without MPI refuses to run as one of several ranks", [] {
#ifdef KVGPT_MPI
        printf("    (this build has MPI: test/test_distributed.py covers it)\n");
#else
        std::string out;
        CHECK(expect_exit_error([] {
                  setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
                  int argc = 1;
                  char* args[] = {(char*)"train_gpt", nullptr};
                  char** argv = args;
                  dist_init(&argc, &argv);
              }, "launched as one of 2 ranks, but it was built without MPI", &out),
              "output: %s", out.c_str());
        CHECK(out.find("HINT: install an MPI") != std::string::npos, "no hint: %s", out.c_str());
        unsetenv("OMPI_COMM_WORLD_SIZE");
        CHECK(launcher_world_size() == 1 && !launched_by_mpi(), "no launcher here, yet one is seen");
        Dist& d = dist_init(nullptr, nullptr);
        CHECK(!d.on && d.size == 1 && d.rank == 0, "a plain run must be one rank with the data-parallel path off");
#endif
    });

    add_test("bad shards give clear errors", [] {
        std::string d = tmpdir();
        std::vector<int> tok = random_tokens(100, 61, 1);
        struct Bad { const char* name; std::function<void()> make; const char* needle; };
        std::vector<Bad> bad = {
            {"magic", [&] { write_shard(d + "/b.bin", tok, 61, TOK_NEOX, 2, 0x12345678); }, "bad magic"},
            {"version", [&] { write_shard(d + "/b.bin", tok, 61, TOK_NEOX, 2, SHARD_MAGIC, 7); }, "has version 7"},
            {"truncated", [&] { write_shard(d + "/b.bin", tok, 61, TOK_NEOX, 2, SHARD_MAGIC, 1, 3); }, "truncated"},
            {"header only half", [&] { write_shard(d + "/b.bin", {}, 61, TOK_NEOX, 2, SHARD_MAGIC, 1, 600); }, "shorter than its 1024-byte header"},
            {"width", [&] { write_shard(d + "/b.bin", tok, 61, TOK_NEOX, 3); }, "token width 3"},
            {"token >= vocab", [&] { std::vector<int> t = tok; t[50] = 61; write_shard(d + "/b.bin", t, 61); }, "token id 61 at index 50"},
            {"tokenizer", [&] { write_shard(d + "/b.bin", tok, 61, TOK_GPT2); }, "made with tokenizer 'gpt2' but the model uses 'gpt-neox-20b'"},
            {"vocab > model", [&] { write_shard(d + "/b.bin", tok, 70000, TOK_NEOX, 4); }, "larger than the model's 61"},
        };
        for (Bad& b : bad) {
            b.make();
            bool ok = expect_exit_error([&] { shard_open(d + "/b.bin", 61, TOK_NEOX); }, b.needle);
            CHECK(ok, "bad shard (%s) must give '%s'", b.name, b.needle);
        }
        write_shard(d + "/ok.bin", tok, 61, TOK_NEOX, 4);  // uint32 tokens read back the same
        Shard s = shard_open(d + "/ok.bin", 61, TOK_NEOX);
        bool same = s.n_tokens == 100;
        for (int i = 0; i < 100 && same; i++) same = s.token(i) == tok[i];
        CHECK(same, "uint32 shard round trip");
        CHECK(expect_exit_error([&] { DataLoader l; l.open(d + "/nothing_*.bin", 1, 8, 61, 1, 1); }, "no token shards match"), "missing glob");
        CHECK(expect_exit_error([&] { DataLoader l; l.open(d + "/ok.bin", 1, 200, 61, 1, 1); }, "fewer than one window"), "short shard");
    });

    add_test("bad checkpoints, bad token ids and out-of-memory give clear errors", [] {
        std::string d = tmpdir();
        FILE* f = fopenCheck((d + "/junk.ckpt").c_str(), "wb");
        std::string junk(4000, 'x');
        fwriteCheck(junk.data(), 1, junk.size(), f);
        fcloseCheck(f);
        CHECK(expect_exit_error([&] { checkpoint_read_header((d + "/junk.ckpt").c_str()); }, "not a kvgpt checkpoint"), "junk checkpoint");
        GPTConfig cfg = test_config(ATTN_MHA, POS_ROPE);
        GPT m(cfg);
        std::string ck = d + "/t.ckpt";
        checkpoint_save(ck.c_str(), m, 1, 1, 0.0f);
        truncate(ck.c_str(), 5000);
        CHECK(expect_exit_error([&] { GPT m2(cfg); checkpoint_load(ck.c_str(), m2); }, "its header implies"), "truncated checkpoint");
        GPTConfig other = test_config(ATTN_MQA, POS_ROPE);
        checkpoint_save(ck.c_str(), m, 1, 1, 0.0f);
        CHECK(expect_exit_error([&] { GPT m2(other); checkpoint_load(ck.c_str(), m2); }, "does not match"), "mismatched checkpoint");
        CHECK(expect_exit_error([&] { std::vector<int> t(4, 61); m.forward(t.data(), nullptr, 1, 4); }, "outside the vocab"), "token id >= vocab at forward");
        CHECK(expect_exit_error([] { mallocCheck((size_t)1 << 60); }, "out of memory"), "out of memory");
        CHECK(expect_exit_error([] { mallocCheck((size_t)sysconf(_SC_PHYS_PAGES) * sysconf(_SC_PAGESIZE) + 4096); }, "out of memory"),
              "more than the physical memory is refused before it is touched");
    });

    add_test("CRC32C: the standard check value and incremental updates", [] {
        CHECK(crc32c_update(0, "123456789", 9) == 0xE3069283u, "crc32c('123456789') = 0x%08x, want 0xE3069283", crc32c_update(0, "123456789", 9));
        std::string s(1000, '\0');
        for (size_t i = 0; i < s.size(); i++) s[i] = (char)(i * 7 + 3);
        uint32_t whole = crc32c_update(0, s.data(), s.size()), parts = crc32c_update(crc32c_update(0, s.data(), 333), s.data() + 333, 667);
        CHECK(whole == parts, "incremental %08x vs whole %08x", parts, whole);
        CHECK(crc32c_update(0, "", 0) == 0, "empty input");
    });

    add_test("checkpoints: corrupt payloads, edited or impossible headers, v1 files, failed writes", [] {
        std::string d = tmpdir(), ck = d + "/c.ckpt";
        GPTConfig cfg = test_config(ATTN_MLA, POS_ROPE);
        GPT m(cfg);
        m.init_weights(3);
        checkpoint_save(ck.c_str(), m, 7, 99, 2.5f, 16, "data/x_*.bin", "/abs/val_*.bin");
        std::string good;
        {
            FILE* f = fopenCheck(ck.c_str(), "rb");
            fseeko(f, 0, SEEK_END);
            good.resize(ftello(f));
            fseeko(f, 0, SEEK_SET);
            freadCheck(&good[0], 1, good.size(), f);
            fclose(f);
        }
        auto put = [&](const std::string& bytes) {
            FILE* f = fopenCheck(ck.c_str(), "wb");
            fwriteCheck(bytes.data(), 1, bytes.size(), f);
            fcloseCheck(f);
        };
        auto load = [&] {
            CheckpointHeader h = checkpoint_read_header(ck.c_str());
            GPT x(h.config);
            checkpoint_load(ck.c_str(), x);
        };
        CheckpointHeader h0 = checkpoint_read_header(ck.c_str());
        CHECK(h0.step == 7 && h0.data_rng == 99 && h0.train_T == 16 && std::string(h0.val_data) == "/abs/val_*.bin" &&
                  std::string(h0.train_data).find("/data/x_*.bin") != std::string::npos && h0.train_data[0] == '/',
              "header round trip (train data '%s')", h0.train_data);
        const size_t H = sizeof(CheckpointHeader), P = m.ps.total * sizeof(float);
        float nan = NAN;
        struct Bad { const char* name; std::function<std::string()> make; const char* needle; };
        std::vector<Bad> bad = {
            {"NaN in the parameters", [&] { std::string b = good; memcpy(&b[H + 40 * 4], &nan, 4); return b; }, "parameters fail their checksum"},
            {"a flipped bit in the parameters", [&] { std::string b = good; b[H + P / 2] ^= 0x10; return b; }, "parameters fail their checksum"},
            {"4 KB of garbage in the moments", [&] { std::string b = good; for (size_t i = 0; i < 4096; i++) b[H + P + 100 + i] = (char)(i * 31); return b; }, "moments fail their checksum"},
            {"a flipped bit in the config (pos)", [&] { std::string b = good; CheckpointHeader h; memcpy(&h, b.data(), H); h.config.pos ^= 1; memcpy(&b[0], &h, H); return b; }, "header checksum mismatch"},
            {"rotary_pct edited", [&] { std::string b = good; CheckpointHeader h; memcpy(&h, b.data(), H); h.config.rotary_pct = 0.75f; memcpy(&b[0], &h, H); return b; }, "header checksum mismatch"},
            {"parallel residual edited", [&] { std::string b = good; CheckpointHeader h; memcpy(&h, b.data(), H); h.config.parallel_residual = 0; memcpy(&b[0], &h, H); return b; }, "header checksum mismatch"},
            {"appended bytes", [&] { return good + "xx"; }, "its header implies"},
            {"truncated payload", [&] { return good.substr(0, good.size() - 4); }, "its header implies"},
            {"truncated header", [&] { return good.substr(0, 100); }, "shorter than its"},
            {"version 9", [&] { std::string b = good; b[4] = 9; return b; }, "has version 9"},
        };
        // impossible values with a recomputed header checksum: the field checks must catch them
        auto edit = [&](std::function<void(CheckpointHeader&)> f) {
            return [=] { std::string b = good; CheckpointHeader h; memcpy(&h, b.data(), H); f(h); h.header_crc = checkpoint_header_crc(h); memcpy(&b[0], &h, H); return b; };
        };
        bad.push_back({"n_kv_head = 0", edit([](CheckpointHeader& h) { h.config.n_kv_head = 0; }), "n_kv_head = 0 is out of range"});
        bad.push_back({"negative vocab", edit([](CheckpointHeader& h) { h.config.vocab_size = -5; }), "vocab_size = -5 is out of range"});
        bad.push_back({"n_layer = -1", edit([](CheckpointHeader& h) { h.config.n_layer = -1; }), "n_layer = -1 is out of range"});
        bad.push_back({"n_layer = 1e8", edit([](CheckpointHeader& h) { h.config.n_layer = 100000000; }), "n_layer = 1e+08 is out of range"});
        bad.push_back({"d_model 20x (a 20 GB model)", edit([](CheckpointHeader& h) { h.config.d_model *= 20; h.config.head_dim *= 20; }), "floats per tensor set"});
        bad.push_back({"a derived field", edit([](CheckpointHeader& h) { h.config.padded_vocab_size += 64; }), "derived config fields"});
        bad.push_back({"pos out of range", edit([](CheckpointHeader& h) { h.config.pos = 9; }), "pos = 9 is out of range"});
        bad.push_back({"NaN rope base", edit([](CheckpointHeader& h) { h.config.rope_base = NAN; }), "rope_base = nan is out of range"});
        bad.push_back({"negative step", edit([](CheckpointHeader& h) { h.step = -3; }), "header fields out of range"});
        for (Bad& b : bad) {
            put(b.make());
            CHECK(expect_exit_error(load, b.needle), "%s must give '%s'", b.name, b.needle);
        }
        // a version 1 file (no checksums) still loads, with a warning
        {
            CheckpointHeaderV1 o;
            memset(&o, 0, sizeof o);
            o.magic = CKPT_MAGIC; o.version = 1; o.config_bytes = sizeof(GPTConfig); o.config = cfg; o.step = 4; o.data_rng = 5;
            o.n_floats = m.ps.total; o.best_val_loss = 3.0f; o.train_T = 8;
            put(std::string((const char*)&o, sizeof o) + good.substr(H));
            std::string out;
            bool ok = expect_exit_error([&] { load(); printf("LOADED\n"); exit(3); }, "LOADED", &out);
            CHECK(ok && out.find("version 1: it has no checksums") != std::string::npos, "v1 checkpoint: %s", out.c_str());
            GPT x(cfg);
            CheckpointHeader h = checkpoint_load(ck.c_str(), x);
            CHECK(h.step == 4 && memcmp(x.params, m.params, P) == 0, "v1 parameters");
        }
        // a failed write (file size limit) removes its temp file and keeps the earlier checkpoint
        put(good);
        CHECK(expect_exit_error([&] {
                  struct rlimit rl = {4096, 4096};
                  signal(SIGXFSZ, SIG_IGN);
                  setrlimit(RLIMIT_FSIZE, &rl);
                  checkpoint_save(ck.c_str(), m, 8, 1, 1.0f);
              }, "cannot write checkpoint"), "a failed write is an error");
        struct stat st;
        CHECK(stat((ck + ".tmp").c_str(), &st) != 0, "the temp file of a failed write must be removed");
        CHECK(checkpoint_read_header(ck.c_str()).step == 7, "the earlier checkpoint must be intact");
        // a diverged model is never written
        m.params[5] = INFINITY;
        CHECK(expect_exit_error([&] { checkpoint_save(ck.c_str(), m, 9, 1, 1.0f); }, "refusing to write a checkpoint of a diverged model"), "inf params");
        CHECK(checkpoint_read_header(ck.c_str()).step == 7, "the earlier checkpoint must be intact");
        // a FIFO or a directory is refused (a FIFO would block the open forever)
        std::string fifo = d + "/fifo.ckpt";
        mkfifo(fifo.c_str(), 0600);
        CHECK(expect_exit_error([&] { alarm(10); checkpoint_read_header(fifo.c_str()); }, "FIFO"), "FIFO checkpoint");
        CHECK(expect_exit_error([&] { alarm(10); checkpoint_read_header(d.c_str()); }, "is a directory"), "directory checkpoint");
    });

    add_test("shards: a count near 2^62 does not wrap the size check; FIFOs and directories are refused", [] {
        std::string d = tmpdir(), p = d + "/huge.bin";
        std::vector<int> tok = random_tokens(64, 61, 2);
        write_shard(p, tok, 61, TOK_NEOX, 4);
        // n_tokens = 2^62 + 64 with width 4: n * 4 wraps around to 256, the real payload's bytes
        FILE* f = fopenCheck(p.c_str(), "r+b");
        int32_t lo = 64, hi = 1 << 30;
        fseeko(f, 8, SEEK_SET);
        fwriteCheck(&lo, 4, 1, f);
        fwriteCheck(&hi, 4, 1, f);
        fcloseCheck(f);
        CHECK(expect_exit_error([&] { shard_open(p, 61, TOK_NEOX); }, "truncated or corrupt"), "2^62 token count");
        std::string fifo = d + "/fifo_000.bin";
        mkfifo(fifo.c_str(), 0600);
        CHECK(expect_exit_error([&] { alarm(10); shard_open(fifo, 61, TOK_NEOX); }, "FIFO"), "FIFO shard");
        CHECK(expect_exit_error([&] { alarm(10); DataLoader l; l.open(d + "/fifo_*.bin", 1, 8, 61, 1, 1); }, "FIFO"), "FIFO through a glob");
        mkdir((d + "/dir_000.bin").c_str(), 0700);
        CHECK(expect_exit_error([&] { DataLoader l; l.open(d + "/dir_*.bin", 1, 8, 61, 1, 1); }, "is a directory"), "directory shard");
        CHECK(expect_exit_error([&] { DataLoader l; l.open("", 1, 8, 61, 1, 1); }, "empty"), "empty glob");
        // several globs joined by commas: a mixture, each shard once
        write_shard(d + "/mixa_000.bin", random_tokens(50, 61, 3), 61);
        write_shard(d + "/mixb_000.bin", random_tokens(70, 61, 4), 61);
        DataLoader l;
        l.open(d + "/mixa_*.bin," + d + "/mixb_*.bin", 1, 8, 61, TOK_NEOX, 1);
        CHECK(l.shards.size() == 2 && l.total_tokens == 120, "mixture: %zu shards, %ld tokens", l.shards.size(), l.total_tokens);
        CHECK(expect_exit_error([&] { DataLoader x; x.open(d + "/mixa_*.bin," + d + "/mix*_000.bin", 1, 8, 61, 1, 1); }, "matched twice"), "duplicate shard");
    });

    add_test("fuzz: mutated shard and checkpoint headers give a clean error or a correct run, never a signal", [] {
        std::string d = tmpdir(), sp = d + "/fuzz.bin", cp = d + "/fuzz.ckpt";
        std::vector<int> tok = random_tokens(300, 61, 5);
        write_shard(sp, tok, 61, TOK_NEOX, 2);
        std::string shard2 = read_file_text(sp, "test output", "");
        write_shard(sp, tok, 61, TOK_NEOX, 4);
        std::string shard4 = read_file_text(sp, "test output", "");
        GPTConfig cfg = test_config(ATTN_GQA, POS_ALIBI);
        GPT m(cfg);
        m.init_weights(1);
        checkpoint_save(cp.c_str(), m, 3, 4, 1.0f, 8);
        const std::string ckpt0 = read_file_text(cp, "test output", "");
        Rng rng(2024);
        const int64_t interesting[] = {0, 1, -1, 2, 3, 4, 7, 61, 62, 255, 1024, 65535, INT32_MAX, INT32_MIN, (int64_t)1 << 31};
        int runs = 0, clean_errors = 0, ok_runs = 0;
        auto mutate = [&](std::string b, size_t header, bool is_ckpt) {
            int kind = (int)rng.below(5);
            if (kind == 0) {  // one 32-bit header field set to an interesting value
                size_t at = 4 * rng.below(header / 4);
                int32_t v = (int32_t)interesting[rng.below(sizeof interesting / sizeof interesting[0])];
                memcpy(&b[at], &v, 4);
            } else if (kind == 1) {  // bit flips in the header
                for (int k = 0; k < 1 + (int)rng.below(4); k++) b[rng.below(header)] ^= (char)(1 << rng.below(8));
            } else if (kind == 2) {  // truncation
                b.resize(rng.below(b.size()));
            } else if (kind == 3) {  // a random 64-bit token count (shard) / float count (checkpoint)
                uint64_t v = ((uint64_t)rng.below(1u << 31) << 33) ^ rng.below(1u << 31);
                if (rng.below(2)) v = ((uint64_t)1 << (60 + rng.below(4))) + rng.below(64);
                int32_t width;
                memcpy(&width, &b[16], 4);
                if (!is_ckpt && width == 4 && rng.below(2)) v = ((uint64_t)1 << 62) + 300;  // 4 * v wraps around to the real 1200 bytes
                memcpy(&b[is_ckpt ? offsetof(CheckpointHeader, n_floats) : 8], &v, 8);
            } else {  // garbage in the payload
                for (int k = 0; k < 16; k++) b[header + rng.below(b.size() - header)] = (char)rng.below(256);
            }
            if (is_ckpt && b.size() >= sizeof(CheckpointHeader) && rng.below(2)) {  // often with a valid header checksum
                CheckpointHeader h;
                memcpy(&h, b.data(), sizeof h);
                h.header_crc = checkpoint_header_crc(h);
                memcpy(&b[0], &h, sizeof h);
            }
            return b;
        };
        auto run_one = [&](const std::string& path, const std::string& bytes, std::function<void()> use) {
            FILE* f = fopenCheck(path.c_str(), "wb");
            fwriteCheck(bytes.data(), 1, bytes.size(), f);
            fcloseCheck(f);
            std::string out;
            int st = run_forked(use, &out, 20);  // a hang is a failure too (SIGALRM)
            runs++;
            bool clean = WIFEXITED(st) && WEXITSTATUS(st) == 1 && out.find("Error: ") != std::string::npos;
            bool ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
            clean_errors += clean;
            ok_runs += ok;
            CHECK(clean || ok, "%s: status %d (signal %d), output: %s", path.c_str(), st, WIFSIGNALED(st) ? WTERMSIG(st) : 0, out.c_str());
        };
        for (int i = 0; i < 200; i++)
            run_one(sp, mutate(i % 2 ? shard4 : shard2, SHARD_HEADER_INTS * 4, false), [&] {
                DataLoader l;
                l.open(sp, 2, 8, 61, TOK_NEOX, 1);
                struct stat st;
                stat(sp.c_str(), &st);  // a run that succeeds must have read exactly what the file holds
                if ((uint64_t)l.shards[0].n_tokens * l.shards[0].width + SHARD_HEADER_INTS * 4 != (uint64_t)st.st_size) exit(2);
                for (int k = 0; k < 20; k++) l.next_random_batch();
                long s = 0;
                for (int x : l.inputs) s += x;
                if (s < 0) exit(2);
            });
        for (int i = 0; i < 200; i++)
            run_one(cp, mutate(ckpt0, sizeof(CheckpointHeader), true), [&] {
                CheckpointHeader h = checkpoint_read_header(cp.c_str());
                GPT x(h.config);
                checkpoint_load(cp.c_str(), x);
            });
        printf("    %d mutated files: %d clean errors, %d correct runs, %d other\n", runs, clean_errors, ok_runs, runs - clean_errors - ok_runs);
    });
}

// through the real binary: bad flags, divergence, and the README's commands

// ---------------------------------------------------------------------------------------------
// presses (attention/press.h) and their protocols (llmc/eval.h)
// the reference view of one layer after a full forward of one sequence: per query head h and
// position t the query, key and value that head uses, in the model's own basis (MLA: expanded,
// never the absorbed form the cache and the presses use), taken from the forward's saved tensors
struct RefLayer {
    int H = 0, G = 0, group = 0, dk = 0, dv = 0, rot_off = 0, rot = 0, T = 0;
    double scale = 1, base = 10000;
    const float* slopes = nullptr;
    std::vector<float> Q, K, V;  // (H, T, dk), (H, T, dk), (H, T, dv)
    const float* q(int h, int t) const { return &Q[((size_t)h * T + t) * dk]; }
    const float* k(int h, int t) const { return &K[((size_t)h * T + t) * dk]; }
    const float* v(int h, int t) const { return &V[((size_t)h * T + t) * dv]; }
};
static RefLayer ref_layer(Attention* a, const GPTConfig& c, int T) {
    RefLayer r;
    r.T = T; r.H = c.n_head; r.base = c.rope_base;
    const int H = c.n_head, hd = c.head_dim;
    auto fill = [&](int dk, int dv) { r.dk = dk; r.dv = dv; r.Q.resize((size_t)H * T * dk); r.K.resize((size_t)H * T * dk); r.V.resize((size_t)H * T * dv); };
    if (auto* g = dynamic_cast<GQAAttention*>(a)) {
        r.G = g->G; r.group = H / g->G; r.scale = 1.0 / sqrt((double)hd); r.rot = g->rope.rot; r.slopes = g->slopes.empty() ? nullptr : g->slopes.data();
        fill(hd, hd);
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++) {
                const float* row = g->qkv + (size_t)t * g->qkv_dim;
                memcpy(&r.Q[((size_t)h * T + t) * hd], row + h * hd, sizeof(float) * hd);
                memcpy(&r.K[((size_t)h * T + t) * hd], row + (H + h / r.group) * hd, sizeof(float) * hd);
                memcpy(&r.V[((size_t)h * T + t) * hd], row + (H + g->G + h / r.group) * hd, sizeof(float) * hd);
            }
    } else if (auto* m = dynamic_cast<MLAAttention*>(a)) {
        const int dR = m->dR, dk = hd + dR;
        r.G = 1; r.group = H; r.scale = 1.0 / sqrt((double)dk); r.rot = dR; r.rot_off = hd; r.slopes = m->slopes.empty() ? nullptr : m->slopes.data();
        fill(dk, hd);
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++) {
                memcpy(&r.Q[((size_t)h * T + t) * dk], m->qf + (size_t)t * m->qdim() + h * dk, sizeof(float) * dk);
                const float* kvr = m->kv + (size_t)t * H * 2 * hd + h * 2 * hd;  // [k_nope_h | v_h]
                memcpy(&r.K[((size_t)h * T + t) * dk], kvr, sizeof(float) * hd);
                if (dR) memcpy(&r.K[((size_t)h * T + t) * dk + hd], m->dkv + (size_t)t * (m->dc + dR) + m->dc, sizeof(float) * dR);
                memcpy(&r.V[((size_t)h * T + t) * hd], kvr + hd, sizeof(float) * hd);
            }
    } else if (auto* k = dynamic_cast<MKAAttention*>(a)) {
        const int D = k->D;
        r.G = H; r.group = 1; r.scale = 1.0 / sqrt((double)hd); r.rot = k->rope.rot; r.slopes = k->slopes.empty() ? nullptr : k->slopes.data();
        fill(hd, hd);
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++) {
                memcpy(&r.Q[((size_t)h * T + t) * hd], k->qk + (size_t)t * 2 * D + h * hd, sizeof(float) * hd);
                memcpy(&r.K[((size_t)h * T + t) * hd], k->qk + (size_t)t * 2 * D + D + h * hd, sizeof(float) * hd);
                memcpy(&r.V[((size_t)h * T + t) * hd], k->qkv + (size_t)t * 3 * D + 2 * D + h * hd, sizeof(float) * hd);
            }
    }
    return r;
}
// attention of query (h, t) over keys j <= t, in double, from the reference tensors
static std::vector<double> ref_attention(const RefLayer& r, int h, int t) {
    std::vector<double> p(r.T, 0.0);
    double m = -INFINITY, z = 0.0;
    for (int j = 0; j <= t; j++) {
        double s = 0.0;
        for (int d = 0; d < r.dk; d++) s += (double)r.q(h, t)[d] * r.k(h, j)[d];
        p[j] = s * r.scale - (r.slopes ? r.slopes[h] * (double)(t - j) : 0.0);
        m = std::max(m, p[j]);
    }
    for (int j = 0; j <= t; j++) z += (p[j] = exp(p[j] - m));
    for (int j = 0; j <= t; j++) p[j] /= z;
    return p;
}
static double norm_d(const float* x, int n) {
    double s = 0.0;
    for (int i = 0; i < n; i++) s += (double)x[i] * x[i];
    return sqrt(s);
}
// the reference scores (G, T) of a press with every one of the T tokens held
static std::vector<double> ref_press_scores(const RefLayer& r, const Press& p) {
    const int T = r.T, G = r.G, gr = r.group;
    std::vector<double> sc((size_t)G * T, 0.0);
    auto S = [&](int g, int j) -> double& { return sc[(size_t)g * T + j]; };
    for (int g = 0; g < G; g++)
        for (int hh = 0; hh < gr; hh++) {
            const int h = g * gr + hh;
            if (p.kind == PRESS_KNORM)
                for (int j = 0; j < T; j++) S(g, j) -= norm_d(r.k(h, j), r.dk) / gr;
            if (p.kind == PRESS_KEYDIFF) {
                std::vector<double> an(r.dk, 0.0);
                for (int j = 0; j < T; j++)
                    for (int d = 0; d < r.dk; d++) an[d] += r.k(h, j)[d] / norm_d(r.k(h, j), r.dk) / T;
                for (int j = 0; j < T; j++) {
                    double dot = 0.0, na = 0.0;
                    for (int d = 0; d < r.dk; d++) { dot += r.k(h, j)[d] * an[d]; na += an[d] * an[d]; }
                    S(g, j) -= dot / (norm_d(r.k(h, j), r.dk) * sqrt(na)) / gr;
                }
            }
            if (p.kind == PRESS_SNAPKV) {
                std::vector<double> mean(T, 0.0);
                for (int t = T - p.window; t < T; t++) {
                    std::vector<double> a = ref_attention(r, h, t);
                    for (int j = 0; j < T - p.window; j++) mean[j] += a[j] / p.window;
                }
                for (int j = 0; j < T - p.window; j++) {
                    double x = 0.0;
                    for (int d = -2; d <= 2; d++)
                        if (j + d >= 0 && j + d < T - p.window) x += mean[j + d];
                    S(g, j) += x / 5 / gr;
                }
            }
            if (p.kind == PRESS_H2O)
                for (int t = 0; t < T; t++) {
                    std::vector<double> a = ref_attention(r, h, t);
                    for (int j = 0; j <= t; j++) S(g, j) += a[j] / (T - j) / gr;
                }
            if (p.kind == PRESS_EXPECTED) {
                // the un-rotated queries of positions >= 4 (NeoX pairs, angle t * base^(-2i/rot))
                const int dk = r.dk, half = r.rot / 2;
                std::vector<double> mu(dk, 0.0), cov((size_t)dk * dk, 0.0), u(dk);
                int n = 0;
                for (int t = p.n_sink; t < T; t++, n++) {
                    for (int d = 0; d < dk; d++) u[d] = r.q(h, t)[d];
                    for (int i = 0; i < half; i++) {
                        double th = t * pow(r.base, -2.0 * i / r.rot), x1 = u[r.rot_off + i], x2 = u[r.rot_off + i + half];
                        u[r.rot_off + i] = x1 * cos(th) + x2 * sin(th);
                        u[r.rot_off + i + half] = x2 * cos(th) - x1 * sin(th);
                    }
                    for (int x = 0; x < dk; x++) { mu[x] += u[x]; for (int y = 0; y < dk; y++) cov[(size_t)x * dk + y] += u[x] * u[y]; }
                }
                for (int x = 0; x < dk; x++) mu[x] /= n;
                for (int x = 0; x < dk; x++)
                    for (int y = 0; y < dk; y++) cov[(size_t)x * dk + y] = cov[(size_t)x * dk + y] / n - mu[x] * mu[y];
                // the mean rotation over the next 512 positions as a dense matrix: mu' = R mu, S' = R S R^T
                std::vector<double> R((size_t)dk * dk, 0.0), RS((size_t)dk * dk, 0.0), S2((size_t)dk * dk, 0.0), m2(dk, 0.0);
                for (int d = 0; d < dk; d++) R[(size_t)d * dk + d] = 1.0;
                for (int i = 0; i < half; i++) {
                    double cb = 0, sb = 0;
                    for (int t = T; t < T + 512; t++) { double th = t * pow(r.base, -2.0 * i / r.rot); cb += cos(th) / 512; sb += sin(th) / 512; }
                    int a = r.rot_off + i, b = r.rot_off + i + half;
                    R[(size_t)a * dk + a] = cb; R[(size_t)a * dk + b] = -sb; R[(size_t)b * dk + a] = sb; R[(size_t)b * dk + b] = cb;
                }
                for (int x = 0; x < dk; x++)
                    for (int y = 0; y < dk; y++) { m2[x] += R[(size_t)x * dk + y] * mu[y]; for (int z = 0; z < dk; z++) RS[(size_t)x * dk + y] += R[(size_t)x * dk + z] * cov[(size_t)z * dk + y]; }
                for (int x = 0; x < dk; x++)
                    for (int y = 0; y < dk; y++)
                        for (int z = 0; z < dk; z++) S2[(size_t)x * dk + y] += RS[(size_t)x * dk + z] * R[(size_t)y * dk + z];
                std::vector<double> zj(T, -INFINITY);
                double mx = -INFINITY, tot = 0.0;
                for (int j = p.n_sink; j < T; j++) {
                    double lin = 0, quad = 0;
                    for (int x = 0; x < dk; x++) {
                        lin += m2[x] * r.k(h, j)[x];
                        for (int y = 0; y < dk; y++) quad += r.k(h, j)[x] * S2[(size_t)x * dk + y] * r.k(h, j)[y];
                    }
                    zj[j] = r.scale * lin + 0.5 * r.scale * r.scale * quad - (r.slopes ? r.slopes[h] * (double)(T - j) : 0.0);
                    mx = std::max(mx, zj[j]);
                }
                for (int j = p.n_sink; j < T; j++) tot += (zj[j] = exp(zj[j] - mx));
                for (int j = p.n_sink; j < T; j++) S(g, j) += zj[j] / tot * norm_d(r.v(h, j), r.dv) / gr;
            }
        }
    for (int g = 0; g < G; g++)
        for (int j = 0; j < T; j++) {
            if (p.kind == PRESS_STREAMING) S(g, j) = j < p.n_sink ? INFINITY : j;
            if (p.kind == PRESS_SNAPKV && j >= T - p.window) S(g, j) = INFINITY;
            if (p.kind == PRESS_EXPECTED && j < p.n_sink) S(g, j) = INFINITY;
        }
    if (p.kind == PRESS_TOVA) {
        std::vector<double> mean(T, 0.0);
        for (int h = 0; h < r.H; h++) {
            std::vector<double> a = ref_attention(r, h, T - 1);
            for (int j = 0; j < T; j++) mean[j] += a[j] / r.H;
        }
        for (int g = 0; g < G; g++)
            for (int j = 0; j < T; j++) S(g, j) = j == T - 1 ? INFINITY : mean[j];
    }
    return sc;
}

static void register_press_tests() {
    // a model with peaked attention (3x the init scale), and a token sequence
    auto press_model = [](GPTConfig cfg, int T) {
        cfg.max_seq_len = std::max(cfg.max_seq_len, T + 8);
        auto m = std::make_shared<GPT>(cfg);
        m->init_weights(31);
        for (size_t i = 0; i < m->ps.total; i++) m->params[i] *= 3.0f;
        return m;
    };
    std::vector<GPTConfig> variants;
    for (int a : {ATTN_MHA, ATTN_GQA, ATTN_MQA, ATTN_MLA, ATTN_KVSPLICE, ATTN_MKA, ATTN_FMKA})
        for (int p : {POS_ROPE, POS_ALIBI}) variants.push_back(test_config(a, p));
    variants.push_back(test_config(ATTN_MHA, POS_NONE));
    variants.push_back(test_config(ATTN_MLA, POS_LEARNED));

    add_test("presses: each press keeps the positions a brute-force reference from the full forward keeps (every variant, rope and alibi)", [=] {
        const int T = 40;
        for (const GPTConfig& cfg : variants) {
            auto m = press_model(cfg, T);
            std::vector<int> tok = random_tokens(T, cfg.vocab_size, 7);
            m->forward(tok.data(), nullptr, 1, T);
            std::vector<RefLayer> ref;
            for (Layer& y : m->layers) ref.push_back(ref_layer(y.attn.get(), m->cfg, T));
            std::string report;
            for (int kind = 0; kind < PRESS_COUNT; kind++) {
                if (kind == PRESS_RANDOM) continue;  // no reference: tested below
                Press p;
                p.kind = kind;
                p.window = 8;  // a window well inside the 40 tokens
                const int n_kept = press_n_kept(T, 0.5, 0);
                m->decode_begin(1, T);
                m->decode_press(p);
                std::vector<int> seq(T, 0);
                m->decode(tok.data(), seq.data(), T);
                m->decode_compress(p, 0, n_kept);
                int worst_sym = 0, near = 0;
                for (int l = 0; l < cfg.n_layer; l++) {
                    KVCache& c = m->layers[l].attn->kv_cache();
                    CHECK(c.len[0] == n_kept, "%s %s: layer %d holds %d tokens, not %d", variant_name(cfg).c_str(), PRESS_NAMES[kind], l, c.len[0], n_kept);
                    std::vector<double> rs = ref_press_scores(ref[l], p);
                    for (int g = 0; g < c.heads; g++) {
                        std::vector<double> row(rs.begin() + (size_t)g * T, rs.begin() + (size_t)(g + 1) * T), sorted = row;
                        std::sort(sorted.begin(), sorted.end(), std::greater<double>());
                        const double kth = sorted[n_kept - 1];
                        double scale = 0.0;
                        for (double x : row)
                            if (std::isfinite(x)) scale = std::max(scale, fabs(x));
                        const double tol = 1e-4 * scale + 1e-12;
                        std::vector<bool> kept(T, false);
                        for (int j = 0; j < n_kept; j++) kept[c.slot_pos(0, g, j)] = true;
                        int sym = 0;
                        for (int j = 0; j < T; j++) {
                            const bool ref_keeps = row[j] > kth;  // a tie at kth may go either way
                            if (kept[j] && !(row[j] >= kth - tol)) sym = 1000;  // kept a clearly lower-scored token
                            if (!kept[j] && !(row[j] <= kth + tol)) sym = 1000;  // dropped a clearly higher-scored one
                            if (kept[j] != ref_keeps && row[j] != kth) { sym++; near++; }
                        }
                        worst_sym = std::max(worst_sym, sym);
                    }
                }
                CHECK(worst_sym <= 2, "%s %s: the kept set differs from the reference's beyond near-ties (%d)", variant_name(cfg).c_str(), PRESS_NAMES[kind], worst_sym);
                report += std::string(" ") + PRESS_NAMES[kind] + (near ? "(" + std::to_string(near) + " near-ties)" : "");
            }
            printf("    %-20s ok:%s\n", variant_name(cfg).c_str(), report.c_str());
        }
    });

    add_test("presses: decoding after eviction == attention over the kept tokens at their original positions (GQA family, MLA; rope, alibi)", [=] {
        const int T = 150;  // crosses 64-key blocks and a 256-key chunk boundary is not needed: kept = 75
        for (int attn : {ATTN_MHA, ATTN_GQA, ATTN_MQA, ATTN_MLA, ATTN_KVSPLICE})
            for (int pos : {POS_ROPE, POS_ALIBI, POS_NONE}) {
                GPTConfig cfg = test_config(attn, pos);
                cfg.max_seq_len = T + 1;
                const int C = cfg.d_model, H = cfg.n_head, hd = cfg.head_dim;
                AttentionUnderTest u;
                u.att = make_attention(cfg);
                u.att->declare_params(u.ps, 0);
                u.acts.resize(u.att->act_floats(1, T + 1));
                u.scratch.resize(u.att->scratch_floats(1, T + 1));
                u.att->bind(u.acts.data(), u.scratch.data());
                Rng rng(41);
                Vec params = randn(u.ps.total, rng, 0.3f), x = randn((size_t)(T + 1) * C, rng), full((size_t)(T + 1) * C), out(C);
                u.att->init_params(params.data(), rng);
                // decode T tokens, keep a random half per stream (different tokens per head), decode one more
                u.att->decode_begin(params.data(), 1, T + 1);
                std::vector<int> seq(T, 0), ps(T);
                for (int t = 0; t < T; t++) ps[t] = t;
                u.att->decode_step(params.data(), x.data(), seq.data(), ps.data(), T, full.data());
                KVCache& c = u.att->kv_cache();
                const int n_kept = T / 2;
                std::vector<int> kept;
                std::vector<std::vector<bool>> keep_mask(c.heads, std::vector<bool>(T + 1, false));
                for (int g = 0; g < c.heads; g++) {
                    std::vector<int> idx(T);
                    std::iota(idx.begin(), idx.end(), 0);
                    for (int i = T - 1; i > 0; i--) std::swap(idx[i], idx[rng.below(i + 1)]);
                    std::sort(idx.begin(), idx.begin() + n_kept);
                    kept.insert(kept.end(), idx.begin(), idx.begin() + n_kept);
                    for (int i = 0; i < n_kept; i++) keep_mask[g][idx[i]] = true;
                    keep_mask[g][T] = true;  // the new token sees itself
                }
                c.keep(0, kept, n_kept);
                c.resize(n_kept + 1);
                int s0 = 0, pT = T;
                u.att->decode_step(params.data(), &x[(size_t)T * C], &s0, &pT, 1, out.data());
                // the reference: the full forward's q, k, v; attention of the last query over the kept tokens
                u.att->forward(params.data(), x.data(), full.data(), 1, T + 1);
                RefLayer r = ref_layer(u.att.get(), cfg, T + 1);
                std::vector<double> y((size_t)H * hd, 0.0);
                for (int h = 0; h < H; h++) {
                    const int g = h / r.group;
                    std::vector<double> sc(T + 1, -INFINITY);
                    double m = -INFINITY, z = 0.0;
                    for (int j = 0; j <= T; j++) {
                        if (!keep_mask[g][j]) continue;
                        double d = 0.0;
                        for (int k = 0; k < r.dk; k++) d += (double)r.q(h, T)[k] * r.k(h, j)[k];
                        sc[j] = d * r.scale - (r.slopes ? r.slopes[h] * (double)(T - j) : 0.0);
                        m = std::max(m, sc[j]);
                    }
                    for (int j = 0; j <= T; j++)
                        if (keep_mask[g][j]) z += (sc[j] = exp(sc[j] - m));
                    for (int j = 0; j <= T; j++)
                        if (keep_mask[g][j])
                            for (int k = 0; k < hd; k++) y[(size_t)h * hd + k] += sc[j] / z * r.v(h, j)[k];
                }
                size_t w_o = 0, b_o = 0;
                if (auto* a = dynamic_cast<GQAAttention*>(u.att.get())) { w_o = a->w_o; b_o = a->b_o; }
                if (auto* a = dynamic_cast<MLAAttention*>(u.att.get())) { w_o = a->w_o; b_o = a->b_o; }
                double worst = 0.0, scale = 0.0;
                for (int o = 0; o < C; o++) {
                    double ref = params[b_o + o];
                    for (int k = 0; k < H * hd; k++) ref += (double)params[w_o + (size_t)o * H * hd + k] * y[k];
                    worst = nan_max(worst, fabs(ref - out[o]));
                    scale = std::max(scale, fabs(ref));
                }
                CHECK(worst <= 1e-4 * (1.0 + scale), "%s: decoding after eviction differs from the reference by %.3g (scale %.3g)", variant_name(cfg).c_str(), worst, scale);
                CHECK(c.bytes() == sizeof(float) * c.floats_per_token() * (n_kept + 1), "%s: %zu B for %d tokens", variant_name(cfg).c_str(), c.bytes(), n_kept + 1);
            }
    });

    add_test("presses: random is seeded (same seed same tokens, another seed others); each stream keeps n_kept in position order", [=] {
        const int T = 40;
        auto m = press_model(test_config(ATTN_GQA, POS_ROPE), T);
        std::vector<int> tok = random_tokens(T, m->cfg.vocab_size, 3);
        auto kept = [&](uint64_t seed) {
            Press p;
            p.kind = PRESS_RANDOM;
            p.seed = seed;
            m->decode_begin(1, T);
            std::vector<int> seq(T, 0);
            m->decode(tok.data(), seq.data(), T);
            m->decode_compress(p, 0, 13);
            std::vector<int> out;
            for (Layer& y : m->layers) {
                KVCache& c = y.attn->kv_cache();
                for (int g = 0; g < c.heads; g++)
                    for (int j = 0; j < c.len[0]; j++) {
                        out.push_back(c.slot_pos(0, g, j));
                        CHECK(j == 0 || c.slot_pos(0, g, j) > c.slot_pos(0, g, j - 1), "positions out of order");
                    }
            }
            return out;
        };
        std::vector<int> a = kept(1), b = kept(1), c = kept(2);
        CHECK(a.size() == (size_t)13 * 2 * 2, "%zu kept", a.size());
        CHECK(a == b, "the same seed kept other tokens");
        CHECK(a != c, "another seed kept the same tokens");
    });

    // documents of random tokens (and the model that reads them)
    auto docs_of = [](const std::vector<int>& toks, long len) {
        std::vector<PressDoc> d;
        for (long o = 0; o + len <= (long)toks.size(); o += len) d.push_back({toks.data() + o, len});
        return d;
    };
    add_test("presses: ratio 0 and a budget >= the context are bitwise the no-press result (every variant, prefill and decode protocols)", [=] {
        const int P = 20, N = 8, S = 28;
        for (const GPTConfig& cfg : variants) {
            auto m = press_model(cfg, 32);
            std::vector<int> toks = random_tokens(4 * 40, cfg.vocab_size, 5);
            std::vector<PressDoc> docs = docs_of(toks, 40);
            PressResult a0 = press_prefill_eval(*m, docs, P, N, nullptr, 0, 0, 0, false), b0 = press_decode_eval(*m, docs, S, 3, nullptr, 0, 0, 0, 0);
            CHECK(a0.nll.n == 4 * N && b0.nll.n == 4 * S && std::isfinite(a0.nll.sum), "%s: %ld and %ld tokens scored", variant_name(cfg).c_str(), a0.nll.n, b0.nll.n);
            for (int kind = 0; kind < PRESS_COUNT; kind++) {
                Press p;
                p.kind = kind;
                p.window = 8;
                PressResult a1 = press_prefill_eval(*m, docs, P, N, &p, 0.0, 0, 0, false), a2 = press_prefill_eval(*m, docs, P, N, &p, 0.5, P, 0, false);
                PressResult b1 = press_decode_eval(*m, docs, S, 3, &p, 0.0, 0, 0, 0), b2 = press_decode_eval(*m, docs, S, 3, &p, 0.0, S + 5, 0, 0);
                CHECK(a1.nll.sum == a0.nll.sum && a2.nll.sum == a0.nll.sum, "%s %s prefill: %.17g %.17g vs %.17g", variant_name(cfg).c_str(), PRESS_NAMES[kind],
                      a1.nll.sum, a2.nll.sum, a0.nll.sum);
                CHECK(b1.nll.sum == b0.nll.sum && b2.nll.sum == b0.nll.sum, "%s %s decode: %.17g %.17g vs %.17g", variant_name(cfg).c_str(), PRESS_NAMES[kind],
                      b1.nll.sum, b2.nll.sum, b0.nll.sum);
            }
        }
    });

    add_test("presses on a trained model: naive == baseline bitwise, prefill-compress-continue at 0.5 differs; the buffers really shrink", [=] {
        // train a small model on sequences that repeat with period 5 (each its own 5 tokens):
        // predicting the repeats needs attention, so what a press evicts shows in the loss. (The
        // test-sized MLA, a 12-wide latent with a 4-wide rope key, does not learn it in 300 steps;
        // its presses are checked against the brute-force reference above.)
        for (int attn : {ATTN_MHA, ATTN_MKA}) {
            GPTConfig cfg = test_config(attn, POS_ROPE);
            cfg.max_seq_len = 64;
            cfg.rotary_pct = 1.0f;  // every dim rotated: fixed-offset attention is easy to learn
            config_finalize(&cfg);
            GPT m(cfg);
            m.init_weights(1);
            Rng rng(9);
            const int B = 8, T = 48, V = cfg.vocab_size;
            auto periodic = [&](int n) {
                std::vector<int> base(5), out(n);
                for (int& b : base) b = (int)rng.below(V);
                for (int i = 0; i < n; i++) out[i] = base[i % 5];
                return out;
            };
            std::vector<int> in((size_t)B * T), tg((size_t)B * T);
            float loss = 0;
            for (int step = 1; step <= 300; step++) {
                for (int b = 0; b < B; b++) {
                    std::vector<int> x = periodic(T + 1);
                    for (int t = 0; t < T; t++) { in[(size_t)b * T + t] = x[t]; tg[(size_t)b * T + t] = x[t + 1]; }
                }
                m.zero_grad();
                loss = m.forward(in.data(), tg.data(), B, T);
                m.backward();
                m.adamw_update(1e-2f, 0.9f, 0.95f, 1e-8f, 0.0f, step);
            }
            std::vector<int> toks;
            for (int d = 0; d < 6; d++) { std::vector<int> x = periodic(41); toks.insert(toks.end(), x.begin(), x.end()); }
            std::vector<PressDoc> docs = docs_of(toks, 41);
            const int P = 30, N = 10;
            PressResult base = press_prefill_eval(m, docs, P, N, nullptr, 0, 0, 0, false), naive0 = press_prefill_eval(m, docs, P, N, nullptr, 0, 0, 0, true);
            printf("    %s trained to loss %.3f; prefill protocol PPL %.3f; naive PPL %.3f\n", ATTN_NAMES[attn], loss, base.nll.ppl(), naive0.nll.ppl());
            CHECK(loss < 2.0f, "%s: the model did not learn the repeats (loss %.3f; a uniform guess: %.3f)", ATTN_NAMES[attn], loss, log((double)V));
            m.decode_begin(1, 1);
            const size_t per_tok = kv_bytes_per_token(m), fixed = kv_bytes_fixed(m);
            CHECK(base.kv_bytes == per_tok * P + fixed, "%s: the full cache holds %zu B, not %zu", ATTN_NAMES[attn], base.kv_bytes, per_tok * P + fixed);
            for (int kind = 0; kind < PRESS_COUNT; kind++) {
                Press p;
                p.kind = kind;
                p.window = 8;
                PressResult naive = press_prefill_eval(m, docs, P, N, &p, 0.5, 0, 0, true), a = press_prefill_eval(m, docs, P, N, &p, 0.5, 0, 0, false);
                PressResult b = press_decode_eval(m, docs, 40, 3, &p, 0.5, 0, 4, 0);
                printf("      %-18s naive %.3f | prefill-compress-continue %.3f | decode-time eviction %.3f (held %.1f of %.1f)\n", PRESS_NAMES[kind],
                       naive.nll.ppl(), a.nll.ppl(), b.nll.ppl(), b.held_tokens, b.context_tokens);
                CHECK(naive.nll.sum == naive0.nll.sum, "%s %s: the naive protocol changed (%.17g vs %.17g): it must not see the press", ATTN_NAMES[attn],
                      PRESS_NAMES[kind], naive.nll.sum, naive0.nll.sum);
                CHECK(a.nll.sum != base.nll.sum && std::isfinite(a.nll.sum), "%s %s: compression at 0.5 left the scored tokens unchanged", ATTN_NAMES[attn], PRESS_NAMES[kind]);
                CHECK(a.held_tokens == P / 2 && a.kv_bytes == per_tok * (P / 2) + fixed, "%s %s: %.1f tokens held in %zu B; %d tokens take %zu B", ATTN_NAMES[attn],
                      PRESS_NAMES[kind], a.held_tokens, a.kv_bytes, P / 2, per_tok * (P / 2) + fixed);
                CHECK(b.kv_bytes == per_tok * (20 + 4) + fixed && b.held_tokens <= 24 && b.held_tokens > 10, "%s %s decode: %zu B allocated, %.1f held",
                      ATTN_NAMES[attn], PRESS_NAMES[kind], b.kv_bytes, b.held_tokens);
            }
        }
    });

    add_test("presses: documents shorter than a sample, and a press without its observation, are clear errors", [=] {
        auto m = press_model(test_config(ATTN_MHA, POS_ROPE), 32);
        std::vector<int> toks = random_tokens(30, m->cfg.vocab_size, 1);
        std::vector<PressDoc> docs = docs_of(toks, 30);
        Press p;
        std::string out;
        int st = run_forked([&] { press_prefill_eval(*m, docs, 25, 10, &p, 0.5, 0, 0, false); }, &out);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1 && out.find("no document holds P + N + 1 = 36 tokens") != std::string::npos, "%s", out.c_str());
        st = run_forked([&] { press_decode_eval(*m, docs, 40, 2, &p, 0.5, 0, 0, 0); }, &out);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1 && out.find("no document holds S + 1 = 41 tokens") != std::string::npos, "%s", out.c_str());
        Press s;
        s.kind = PRESS_SNAPKV;
        m->decode_begin(1, 20);
        std::vector<int> seq(10, 0);
        m->decode(toks.data(), seq.data(), 10);  // OpenMP here, not after the fork
        st = run_forked([&] { m->decode_compress(s, 0, 5); }, &out);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 1 && out.find("snapkv has no recorded queries") != std::string::npos, "%s", out.c_str());
    });
}

static void register_cli_tests(const std::string& bin) {
    add_test("train_gpt: bad flags and combinations give clear errors", [bin] {
        std::string small = " --d-model 32 --layers 1 --heads 2 -b 1 -t 16 -x 2 -n 0 -v 1 -L /dev/null";
        struct Case { std::string args; const char* needle; };
        std::vector<Case> cases = {
            {"--bogus 1", "unknown flag '--bogus'"},
            {"-b", "needs a value"},
            {"-b x12", "not a valid number"},
            {"-a foo", "unknown attention variant 'foo'"},
            {"-p sinusoid", "unknown position encoding 'sinusoid'"},
            {"-m gpt5", "unknown model preset"},
            {"-a mla -k 300", "-k 300 is larger than d_model 128"},
            {"-a mla -k -5", "-k -5 must be positive"},
            {"-a kvsplice -k 64 -r 65", "-r 65 is out of range for -k 64"},
            {"-a mla -k 64 -p alibi --rope-dim 16", "--rope-dim 16 needs -p rope"},
            {"-a mla -k 64 -p rope --rope-dim 5", "must be even"},
            {"-a mha -k 64", "apply to -a mla and -a kvsplice"},
            {"-a mla -k 64 -r 8", "apply to -a kvsplice"},
            {"--heads 5", "not divisible by 5 heads"},
            {"-a gqa -g 3", "does not divide 4 query heads"},
            {"-a gqa", "needs the number of KV heads"},
            {"--optim adam", "unknown --optim 'adam'"},
            {"--spam-interval 5", "--spam-interval applies to --optim spam only"},
            {"--optim spam --spam-interval 0", "--spam-interval 0 is out of range"},
            {"--optim spam --spam-threshold 0", "--spam-threshold 0 must be positive"},
            {"-a mha -g 2", "applies to -a gqa only"},
            {"-p learned -t 2000", "exceeds the learned position table"},
            {"-p rope --rotary-pct 0.01", "needs at least 2"},
            {"-p rope --alibi-slope 0.1", "--alibi-slope given but"},
            {"-m gpt2-124m -i 'data/tinyshakespeare/gpt-neox-20b/train_*.bin'" + small, "made with tokenizer 'gpt-neox-20b' but the model uses 'gpt2'"},
            {"-i '/nonexistent/train_*.bin'", "no token shards match"},
            {"-d cuda", "-d cuda"},
            {"-e 5", "needs -o"},
            {"-b 16 -t 2048 -x 1", "holds no batch of B=16 windows"},
            {"-l 1e30 -x 20" + small, "diverged"},
            {"-l 1e30 -n 1 -x 5 --d-model 32 --layers 1 --heads 2 -b 1 -t 16 -v 1", "validation loss is"},
            {"-l inf", "'inf' is not a finite number"},
            {"-p alibi --alibi-slope nan", "'nan' is not a finite number"},
            {"--rope-base inf", "'inf' is not a finite number"},
            {"--rope-base 0.5", "--rope-base 0.5 must be > 1"},
            {"-q -0.5", "-q -0.5 is out of range"},
            {"--beta2 1", "--beta2 1 is out of range"},
            {"-c -1", "-c -1 is out of range"},
            {"--clip -1", "--clip -1 is out of range"},
            {"--parallel 5", "--parallel 5 is out of range"},
            {"--tied 9", "--tied 9 is out of range"},
            {"--splice-ln 2", "--splice-ln 2 is out of range"},
            {"-b 0", "-b 0 is out of range"},
            {"-t -5", "-t -5 is out of range"},
            {"-b 99999999999", "not a valid number"},
            {"-s -1", "not a valid number"},
            {"-b 1000000 -t 100000", "too large"},
            {"-t 4000000", "fewer than one window"},
            {"-i ''", "the value is empty"},
            {"--resume ''", "the value is empty"},
            {"-o ''", "the value is empty"},
            {"-o data/tinyshakespeare/gpt-neox-20b/train_000000.bin", "is an input of this run"},
            {"-L data/tinyshakespeare/gpt-neox-20b/val_000000.bin", "is an input of this run"},
            {"-o /nonexistent_dir/x.ckpt -L /tmp/x.jsonl", "its directory does not exist"},
            {"-o README.md", "exists and is not a kvgpt checkpoint"},
            {"-o /tmp/kvgpt_same.ckpt -L /tmp/kvgpt_same.ckpt", "-o and -L name the same file"},
            {"-i data", "is a directory"},
        };
        for (const Case& c : cases) {
            std::string out;
            // -x 0 first: a case that wrongly passes validation prints its settings and stops
            bool own_log = c.args.find("-L ") != std::string::npos;
            int rc = run_command(bin + " -x 0 " + (own_log ? "" : "-L /dev/null ") + c.args, &out);
            bool ok = rc != 0 && out.find(c.needle) != std::string::npos && out.find("Error:") != std::string::npos;
            CHECK(ok, "'%s' should fail with '%s'; rc %d, output tail: %s", c.args.c_str(), c.needle, rc,
                  out.substr(out.size() > 400 ? out.size() - 400 : 0).c_str());
        }
    });

    add_test("train_gpt: a batch that does not fit in memory is the documented out-of-memory error", [bin] {
        std::string out;
        // 1.5 GB of address space: the 40 x 512 x 50304 logits alone need 4 GB
        int rc = run_command("bash -c 'ulimit -v 1500000; " + bin + " -b 40 -t 512 --d-model 32 --layers 1 --heads 2 -x 1 -v 1 -n 0 -L /dev/null'", &out);
        CHECK(rc == 1 && out.find("Error: out of memory") != std::string::npos && out.find("HINT: use a smaller model, micro-batch (-b)") != std::string::npos,
              "rc %d: %s", rc, out.substr(out.size() > 600 ? out.size() - 600 : 0).c_str());
    });

    add_test("train_gpt: the settings table prints the KV-cache formula (Pythia-70m MLA k=128 vs MHA)", [bin] {
        std::string out;
        int rc = run_command(bin + " -m pythia-70m -a mla -k 128 -p alibi -x 0 -L /dev/null", &out);
        // MHA: 2 * 8 heads * 64 = 1024 per layer; MLA without a rope key caches d_c = 128 (87.5% less)
        const char* want[] = {"| KV cache elems/token     | 128 /layer, 768 total", "fp32 512 /layer, 3072 total; bf16 256, 1536",
                              "87.5% vs MHA (1024 elems/layer)", "mla, d_c=128 d_R=0"};
        for (const char* w : want) CHECK(rc == 0 && out.find(w) != std::string::npos, "missing '%s': %s", w, out.c_str());
        rc = run_command(bin + " -m pythia-70m -a gqa -g 2 -p rope -x 0 -L /dev/null", &out);
        CHECK(rc == 0 && out.find("256 /layer, 1536 total") != std::string::npos && out.find("75.0% vs MHA") != std::string::npos,
              "gqa G=2: %s", out.c_str());
    });

    add_test("train_gpt --optim spam: resumes bitwise, and a checkpoint resumes only under its optimizer", [bin] {
        std::string a = tmpdir() + "/spam_a.ckpt", b = tmpdir() + "/spam_b.ckpt", out;
        std::string base = bin + " --d-model 32 --layers 1 --heads 2 -b 2 -t 32 -n 0 -v 1 -L /dev/null --optim spam --spam-warmup 2 --spam-skip 1";
        std::string common = base + " --spam-interval 3";
        int rc = run_command(common + " -x 7 -o " + a, &out);
        CHECK(rc == 0 && out.find("| optimizer                | SPAM") != std::string::npos, "straight: rc %d %s", rc, out.c_str());
        rc = run_command(common + " -x 4 -o " + b, &out);
        CHECK(rc == 0, "first part: rc %d %s", rc, out.c_str());
        rc = run_command(common + " -x 7 --resume " + b + " -o " + b, &out);
        CHECK(rc == 0, "resume: rc %d %s", rc, out.c_str());
        rc = run_command("cmp " + a + " " + b, &out);
        CHECK(rc == 0, "the resumed SPAM run differs from the straight one: %s", out.c_str());
        rc = run_command(bin + " --d-model 32 --layers 1 --heads 2 -b 2 -t 32 -n 0 -v 1 -L /dev/null -x 8 --resume " + a + " -o " + a, &out);
        CHECK(rc == 1 && out.find("was trained with --optim spam, this run asks for adamw") != std::string::npos &&
                  out.find("HINT: pass --optim spam") != std::string::npos, "adamw resuming a spam checkpoint: rc %d %s", rc, out.c_str());
        rc = run_command(base + " -x 8 --spam-interval 5 --resume " + a + " -o " + a, &out);
        CHECK(rc == 1 && out.find("reset SPAM's moments every 3 steps, this run every 5") != std::string::npos, "another interval: rc %d %s", rc, out.c_str());
    });

    add_test("train_gpt: trains on bundled data, checkpoints, resumes", [bin] {
        std::string ck = tmpdir() + "/cli.ckpt";
        std::string small = " --d-model 32 --layers 1 --heads 2 -b 2 -t 32 -n 2 -v 1 -o " + ck;
        std::string out;
        int rc = run_command(bin + small + " -x 3", &out);
        CHECK(rc == 0, "rc %d: %s", rc, out.c_str());
        CHECK(out.find("step     3/3 | loss") != std::string::npos && out.find("val loss") != std::string::npos &&
              out.find("tok/s") != std::string::npos && out.find("| parameters") != std::string::npos, "progress lines: %s", out.c_str());
        CHECK(out.find("using the CPU backend") != std::string::npos, "backend line missing: %s", out.c_str());
        rc = run_command(bin + small + " -x 5 --resume " + ck, &out);
        CHECK(rc == 0 && out.find("step     4/5") != std::string::npos && out.find("step     1/") == std::string::npos,
              "resume must continue at step 4: rc %d %s", rc, out.c_str());
        std::string log;
        run_command("cat " + ck + ".jsonl", &log);
        // early stopping: train on a 10-token loop, validate on Shakespeare; val only gets worse,
        // so training stops after --patience evaluations and the step-0 weights are restored
        std::string loop = tmpdir() + "/loop_train.bin";
        std::vector<int> toks(4000);
        for (size_t i = 0; i < toks.size(); i++) toks[i] = 100 + (int)(i % 10);
        write_shard(loop, toks, 50277);
        rc = run_command(bin + " --d-model 32 --layers 1 --heads 2 -b 2 -t 32 -x 60 -n 3 -v 2 -l 1e-2 --patience 2 -L /dev/null -o " +
                             ck + " -i " + loop, &out);
        float best = 0, final_loss = -1;
        int best_step = -1, final_step = -2;
        size_t es = out.find("early stop at step"), fin = out.find("final val loss");
        if (es != std::string::npos) sscanf(strstr(out.c_str() + es, "(best"), "(best %f at step %d)", &best, &best_step);
        if (fin != std::string::npos) sscanf(out.c_str() + fin, "final val loss %f (weights of step %d)", &final_loss, &final_step);
        CHECK(rc == 0 && es != std::string::npos && out.find("restored the best weights") != std::string::npos &&
                  best_step >= 0 && final_step == best_step && fabsf(final_loss - best) < 1e-4f,
              "early stopping must restore the best weights for the final evaluation: rc %d %s", rc, out.c_str());
        CHECK(log.find("\"grad_norm\"") != std::string::npos && log.find("\"val_loss\"") != std::string::npos, "JSONL log: %s", log.c_str());
    });
}

static void register_resume_cli_tests(const std::string& bin) {
    add_test("train_gpt --resume: contradicting flags refused, the checkpoint's data reused, no file of the user's touched", [bin] {
        std::string d = tmpdir(), ck = d + "/r.ckpt", tr = d + "/own_train_000.bin", va = d + "/own_val_000.bin";
        write_shard(tr, random_tokens(3000, 50277, 1), 50277);
        write_shard(va, random_tokens(1000, 50277, 2), 50277);
        std::string small = " --d-model 32 --layers 1 --heads 2 -b 2 -t 16 -n 0 -v 1 -o " + ck;
        std::string out;
        int rc = run_command(bin + small + " -x 2 -i " + tr + " -j " + va, &out);
        CHECK(rc == 0, "training failed: %s", out.c_str());
        for (const char* bad : {"-a mla -k 64", "-m gpt2-124m", "--d-model 64", "-p alibi", "--layers 2", "--rotary-pct 0.5"}) {
            rc = run_command(bin + " -x 4 --resume " + ck + " -o " + ck + " " + bad, &out);
            CHECK(rc != 0 && out.find("contradicts the checkpoint") != std::string::npos, "'%s' must be refused: rc %d %s", bad, rc, out.c_str());
        }
        // the same values are not a contradiction; without -i / -j the run continues on its own data
        rc = run_command(bin + small + " -x 4 --resume " + ck, &out);
        CHECK(rc == 0 && out.find(tr) != std::string::npos && out.find(va) != std::string::npos && out.find("step     3/4") != std::string::npos,
              "resume must reuse the checkpoint's data: rc %d %s", rc, out.c_str());
        std::string ev = bin.substr(0, bin.rfind('/') + 1) + "eval_gpt";
        rc = run_command(ev + " -c " + ck + ".best --protocols disjoint --max-windows 2 --json " + d + "/r.json", &out);
        CHECK(rc == 0 && out.find(va) != std::string::npos && out.find("(the checkpoint's)") != std::string::npos,
              "eval_gpt must default to the checkpoint's validation data: rc %d %s", rc, out.c_str());
        // FILE.best holds the weights alone (a third of the full checkpoint) and cannot be resumed
        struct stat full, best;
        stat(ck.c_str(), &full);
        stat((ck + ".best").c_str(), &best);
        CHECK(best.st_size == (off_t)sizeof(CheckpointHeader) + (full.st_size - (off_t)sizeof(CheckpointHeader)) / 3, "sizes: .best %ld, full %ld",
              (long)best.st_size, (long)full.st_size);
        rc = run_command(bin + small + " -x 6 --resume " + ck + ".best", &out);
        CHECK(rc == 1 && out.find("holds weights only (no optimizer state)") != std::string::npos, "resume from .best: rc %d %s", rc, out.c_str());
        // -x 0 never truncates an existing log
        std::string before = read_file_text(ck + ".jsonl", "test output", "");
        rc = run_command(bin + small + " -x 0", &out);
        CHECK(rc == 0 && read_file_text(ck + ".jsonl", "test output", "") == before && !before.empty(), "-x 0 changed the log");
    });

    add_test("train_gpt: SIGINT and SIGTERM write the checkpoint and .best, and the run resumes from them", [bin] {
        for (const char* sig : {"INT", "TERM"}) {
            std::string d = tmpdir(), ck = d + "/sig" + sig + ".ckpt", log = d + "/sig" + sig + ".out";
            std::string cmd = bin + " --d-model 32 --layers 1 --heads 2 -b 2 -t 16 -n 5 -v 1 -x 1000000 -o " + ck;
            // start it, wait for 12 step lines, signal it, and wait for it (all bounded in time)
            std::string script = "(" + cmd + " > " + log + " 2>&1 & p=$!; for i in $(seq 1 600); do [ $(grep -c '^step' " + log +
                                 " 2>/dev/null || echo 0) -ge 12 ] && break; sleep 0.05; done; kill -" + sig + " $p; wait $p; echo rc=$?)";
            std::string out, sh = d + "/sig" + sig + ".sh";
            FILE* f = fopenCheck(sh.c_str(), "w");
            fprintf(f, "%s\n", script.c_str());
            fcloseCheck(f);
            run_command("timeout 120 bash " + sh, &out);
            std::string o = read_file_text(log, "test output", "");
            int want = 128 + (sig[0] == 'I' ? SIGINT : SIGTERM);
            CHECK(out.find("rc=" + std::to_string(want)) != std::string::npos, "SIG%s: exit status (want %d): %s", sig, want, out.c_str());
            CHECK(o.find("writing the checkpoint and the best weights") != std::string::npos, "SIG%s output: %s", sig, o.c_str());
            struct stat st;
            CHECK(stat(ck.c_str(), &st) == 0 && stat((ck + ".best").c_str(), &st) == 0 && stat((ck + ".tmp").c_str(), &st) != 0,
                  "SIG%s: checkpoint and .best must exist, the temp file must not", sig);
            if (stat(ck.c_str(), &st) != 0) continue;
            CheckpointHeader h = checkpoint_read_header(ck.c_str());
            CHECK(h.step >= 12 && h.step < 1000000, "SIG%s: checkpoint at step %ld", sig, (long)h.step);
            int rc = run_command(bin + " --d-model 32 --layers 1 --heads 2 -b 2 -t 16 -n 5 -v 1 -o " + ck + " --resume " + ck + " -x " +
                                     std::to_string(h.step + 2), &out);
            char want_line[32];
            snprintf(want_line, sizeof want_line, "step %5d/", (int)h.step + 1);
            CHECK(rc == 0 && out.find(want_line) != std::string::npos,
                  "SIG%s: resume from step %ld: rc %d %s", sig, (long)h.step, rc, out.c_str());
        }
    });
}

static void register_eval_cli_tests(const std::string& bin) {
    add_test("eval_gpt: bad flags are errors; a learned-position model evaluates with the defaults; a failing section spares the others", [bin] {
        std::string d = tmpdir(), ck = d + "/learned.ckpt";
        std::string train = bin.substr(0, bin.rfind('/') + 1) + "train_gpt";
        std::string out;
        int rc = run_command(train + " -p learned --d-model 32 --layers 1 --heads 2 -b 2 -t 32 -x 2 -n 0 -v 1 -L /dev/null -o " + ck, &out);
        CHECK(rc == 0, "training failed: %s", out.c_str());
        std::string caps = " --wiki-docs 1 --max-windows 2 --max-tokens 100 --json " + d + "/l.json";
        struct Case { std::string args; const char* needle; };
        for (const Case& c : std::vector<Case>{{"-b 0", "-b 0 is out of range"}, {"-b -1", "-b -1 is out of range"},
                                               {"--extrap 0", "--extrap multiple 0"}, {"--extrap -1", "--extrap multiple -1"},
                                               {"--extrap 1,x", "not a list of integers"}, {"--protocols foo", "unknown protocol 'foo'"},
                                               {"--protocols disjoint,", "unknown protocol ''"}, {"--ctx -5", "--ctx -5 is out of range"},
                                               {"--buckets -4,8", "must start at a position >= 0"}, {"-t -1", "-t -1 is out of range"},
                                               {"--json " + ck, "names the checkpoint"}, {"-j ''", "the value is empty"}}) {
            rc = run_command(bin + " -c " + ck + caps + " " + c.args, &out);
            CHECK(rc == 1 && out.find(c.needle) != std::string::npos && out.find("Error:") != std::string::npos, "'%s': rc %d %s", c.args.c_str(), rc, out.c_str());
        }
        auto json_ok = [&](const std::string& path, const char* key) {
            std::string js;
            int r = run_command("python3 -c \"import json; d=json.load(open('" + path + "')); print(sorted(d)); print(d['" + key + "'])\"", &js);
            return r == 0 ? js : std::string("INVALID ") + js;
        };
        rc = run_command(bin + " -c " + ck + caps, &out);  // --ctx defaults to the learned table's 1024, not 2048
        std::string js = json_ok(d + "/l.json", "kv_cache");
        CHECK(rc == 0 && js.find("'ctx': 1024") != std::string::npos && js.find("INVALID") == std::string::npos, "learned defaults: rc %d %s %s", rc, out.c_str(), js.c_str());
        rc = run_command(bin + " -c " + ck + caps + " --reversal " + d + "/missing.tsv --ctx 4096", &out);
        js = json_ok(d + "/l.json", "reversal");
        CHECK(rc == 1 && js.find("INVALID") == std::string::npos && js.find("'error'") != std::string::npos && js.find("'wikitext'") != std::string::npos &&
                  js.find("'qk'") != std::string::npos && out.find("section reversal") != std::string::npos && out.find("section kv_cache") != std::string::npos,
              "a failing section must not abort the others: rc %d %s %s", rc, out.c_str(), js.c_str());
    });

    add_test("eval_gpt --press: every protocol writes its table and JSON; bad press flags are clear errors", [bin] {
        std::string d = tmpdir(), ck = d + "/press.ckpt";
        std::string train = bin.substr(0, bin.rfind('/') + 1) + "train_gpt";
        std::string out;
        int rc = run_command(train + " --d-model 32 --layers 1 --heads 2 -b 2 -t 32 -x 3 -n 0 -v 1 -L /dev/null -o " + ck, &out);
        CHECK(rc == 0, "training failed: %s", out.c_str());
        std::string base = bin + " -c " + ck + " --press-samples 2 --json " + d + "/p.json";
        rc = run_command(base + " --press knorm,streaming --ratio 0.5 --budget 10 --press-protocols prefill,decode,naive"
                         " --press-data data/eval/gpt-neox-20b/wikitext_eval,data/eval/gpt-neox-20b/book_eval", &out);
        for (const char* want : {"[prefill] prefill 24 tokens", "[decode] streams of 32 tokens", "[naive] NAIVE", "| none (full cache) |", "| knorm | 0.50 | - |",
                                 "| streaming | - | 10 |", "leak guard: passed"})
            CHECK(rc == 0 && out.find(want) != std::string::npos, "missing '%s' (rc %d): %s", want, rc, out.c_str());
        std::string js;
        rc = run_command("python3 -c \"import json; p=json.load(open('" + d + "/p.json'))['press']; "
                         "print(len(p['prefill']['runs']), len(p['decode']['runs']), len(p['naive']['runs']), p['prefill']['runs'][1]['held_tokens'], "
                         "p['naive']['runs'][0]['ppl'] == p['naive']['runs'][2]['ppl'])\"", &js);
        CHECK(rc == 0 && js.find("5 5 5 12.0 True") != std::string::npos, "JSON: %s", js.c_str());
        struct Case { std::string args; const char* needle; };
        for (const Case& c : std::vector<Case>{{"--press foo", "unknown press 'foo'"}, {"--press knorm --ratio 1", "--ratio 1 is out of range [0, 1)"},
                                               {"--press knorm --ratio -0.1", "--ratio -0.1 is out of range"}, {"--press knorm --ratio x", "'x' is not a number"},
                                               {"--press knorm --budget 0", "--budget 0 is out of range"}, {"--press knorm --press-protocols fast", "unknown press protocol 'fast'"},
                                               {"--press knorm --press-context 100000 --press-data data/eval/gpt-neox-20b/reversal_train_000000.bin", "no document holds P + N + 1"},
                                               {"--press knorm --press-data /nonexistent/x", "/nonexistent/x.bin"}}) {
            rc = run_command(base + " " + c.args, &out);
            CHECK(rc == 1 && out.find(c.needle) != std::string::npos && out.find("Error:") != std::string::npos, "'%s': rc %d %s", c.args.c_str(), rc, out.c_str());
        }
    });

    add_test("eval_gpt: end-of-text is the tokenizer's (gpt2: 50256), taken from the eval shards", [bin] {
        std::string d = tmpdir(), ck = d + "/g2.ckpt";
        std::string train = bin.substr(0, bin.rfind('/') + 1) + "train_gpt";
        std::string out;
        int rc = run_command(train + " -m gpt2-124m --d-model 32 --layers 1 --heads 2 -b 2 -t 32 -x 3 -n 0 -v 1 -l 3e-3 -L /dev/null -o " + ck, &out);
        CHECK(rc == 0, "training failed: %s", out.c_str());
        rc = run_command(bin + " -c " + ck + " --protocols wikitext,reversal --wiki-docs 2 --json " + d + "/g2.json", &out);
        std::string js = read_file_text(d + "/g2.json", "test output", "");
        CHECK(rc == 0 && js.find("\"eos_id\": 50256") != std::string::npos && out.find("end-of-text 50256") != std::string::npos, "rc %d %s %s", rc, out.c_str(), js.c_str());
        // the printed WikiText figure is the one computed with 50256 as the first context, not with 0 ("!")
        CheckpointHeader h = checkpoint_read_header(ck.c_str());
        GPT m(h.config);
        int64_t step;
        checkpoint_read_params(ck.c_str(), m, m.params, &step);
        Shard s = shard_open("data/eval/gpt2/wikitext_eval.bin", m.cfg.vocab_size, TOK_GPT2);
        CHECK(s.eos_id == 50256, "the gpt2 WikiText shard's eos is %d", s.eos_id);
        std::vector<int> toks;
        for (long i = 0; i < s.n_tokens; i++) toks.push_back(s.token(i));
        munmap(s.map, s.map_len);
        std::vector<WikiDoc> docs;
        std::ifstream f("data/eval/gpt2/wikitext_eval.tsv");
        std::string line;
        std::getline(f, line);
        for (int i = 0; i < 2 && std::getline(f, line); i++) {
            WikiDoc w;
            sscanf(line.c_str(), "%ld %ld %ld %ld", &w.offset, &w.n_tokens, &w.words, &w.bytes);
            docs.push_back(w);
        }
        double want = ppl_wikitext(m, toks, docs, 32, 50256, 0).tokens.ppl(), wrong = ppl_wikitext(m, toks, docs, 32, 0, 0).tokens.ppl();
        double got = -1;
        size_t at = js.find("\"token_ppl\": ");
        if (at != std::string::npos) got = atof(js.c_str() + at + 13);
        CHECK(fabs(got - want) <= 1e-4 * want && fabs(want - wrong) > 1e-6 * want, "token PPL %.6f, with eos 50256 %.6f, with 0 %.6f", got, want, wrong);
    });


    add_test("eval_gpt: every section on a fresh checkpoint, JSON output, the leak guard refuses", [bin] {
        std::string d = tmpdir(), ck = d + "/ev.ckpt";
        std::string train = bin.substr(0, bin.rfind('/') + 1) + "train_gpt";
        std::string out;
        int rc = run_command(train + " --d-model 32 --layers 1 --heads 2 -b 2 -t 32 -x 4 -n 0 -v 1 -L /dev/null -o " + ck, &out);
        CHECK(rc == 0, "training failed: %s", out.c_str());
        std::string caps = " --wiki-docs 1 --max-windows 4 --max-tokens 300 --extrap 1,2 --json " + d + "/ev.json";
        rc = run_command(bin + " -c " + ck + ".best" + caps, &out);
        const char* sections[] = {"leak guard: passed", "[a] disjoint windows of 32", "position-wise PPL", "[b] sliding window 32, stride 16",
                                  "[c] lm-eval WikiText", "word PPL", "bits/byte", "length extrapolation", "| 64 |", "reversal curse (Berglund", "31 trained, 30 held-out facts",
                                  "Q/K statistics", "| L0.q |", "KV cache (measured"};
        for (const char* sct : sections) CHECK(rc == 0 && out.find(sct) != std::string::npos, "missing '%s' (rc %d): %s", sct, rc, out.c_str());
        std::string js;
        rc = run_command("python3 -c \"import json,sys; d=json.load(open('" + d + "/ev.json')); print(sorted(d))\"", &js);
        CHECK(rc == 0 && js.find("'reversal'") != std::string::npos && js.find("'wikitext'") != std::string::npos, "JSON: %s", js.c_str());
        rc = run_command(bin + " -c " + ck + ".best --test-only-leak" + caps, &out);
        CHECK(rc != 0 && out.find("leak guard:") != std::string::npos && out.find("PPL") == std::string::npos,
              "a leaking model must be refused before any PPL: rc %d %s", rc, out.c_str());
    });
}

static void register_sample_cli_tests(const std::string& bin) {
    add_test("train_gpt --sample-every prints a greedy sample during training", [bin] {
        std::string train = bin.substr(0, bin.rfind('/') + 1) + "train_gpt", out;
        int rc = run_command(train + " --d-model 32 --layers 1 --heads 2 -b 2 -t 16 -x 4 -n 0 -v 1 --sample-every 2 -L /dev/null", &out);
        CHECK(rc == 0 && out.find("--- sample at step 2 (greedy, 64 tokens") != std::string::npos && out.find("--- sample at step 4") != std::string::npos,
              "rc %d: %s", rc, out.c_str());
        rc = run_command(train + " -p learned --max-seq 20 --d-model 32 --layers 1 --heads 2 -b 2 -t 16 -x 2 -n 0 -v 1 --sample-every 1 -L /dev/null", &out);
        CHECK(rc == 0 && out.find("(greedy, 19 tokens") != std::string::npos, "a learned table shorter than the sample: rc %d %s", rc, out.c_str());
    });

    add_test("sample_gpt: greedy == the argmax of a full forward re-run at every step; seeds reproduce; batches; bad input", [bin] {
        std::string d = tmpdir(), ck = d + "/s.ckpt", cl = d + "/sl.ckpt";
        std::string train = bin.substr(0, bin.rfind('/') + 1) + "train_gpt";
        std::string out;
        // 2 steps: near the random init, whose greedy continuations vary (a trained tiny model repeats one token)
        int rc = run_command(train + " -a mla -k 16 -p alibi --d-model 32 --layers 2 --heads 2 -b 2 -t 32 -x 2 -n 0 -v 1 -L /dev/null -o " + ck, &out);
        CHECK(rc == 0, "training failed: %s", out.c_str());
        auto ids_of = [](const std::string& o, int k) {
            std::vector<int> v;
            size_t at = o.find("ids " + std::to_string(k) + ":");
            if (at == std::string::npos) return v;
            size_t from = at + 5 + std::to_string(k).size();  // past "ids K:"
            std::istringstream ss(o.substr(from, o.find('\n', at) - from));
            int x;
            while (ss >> x) v.push_back(x);
            return v;
        };
        rc = run_command(bin + " -c " + ck + " --prompt 'ROMEO: my lord' -n 40 --greedy --print-ids", &out);
        std::vector<int> gen = ids_of(out, 1);
        // the first call's costs (packing the weights) are reported apart, not in the prefill's or decode's figures
        CHECK(rc == 0 && gen.size() == 40 && out.find("prefill") != std::string::npos && out.find("ms per step") != std::string::npos &&
                  out.find("setup: ") != std::string::npos && out.find("the linear weights packed for decoding (") != std::string::npos &&
                  out.find("KV cache held: ") != std::string::npos && out.find("MHA of this shape") != std::string::npos,
              "rc %d: %s", rc, out.c_str());
        // the same continuation from full forwards: the argmax of the last row, step after step
        CheckpointHeader h = checkpoint_read_header(ck.c_str());
        GPT m(h.config);
        int64_t st;
        checkpoint_read_params(ck.c_str(), m, m.params, &st);
        Tokenizer tk;
        tk.load(h.config.tokenizer_id, "data/tokenizers");
        std::vector<int> seq = tk.encode("ROMEO: my lord");
        bool same = gen.size() == 40;
        for (size_t i = 0; i < gen.size() && same; i++) {
            m.forward(seq.data(), nullptr, 1, (int)seq.size());
            int want = argmax_token(m.logits + (seq.size() - 1) * h.config.padded_vocab_size, h.config.vocab_size);
            same = want == gen[i];
            if (!same) printf("    step %zu: sample_gpt %d, full forward %d\n", i, gen[i], want);
            seq.push_back(want);
        }
        CHECK(same, "greedy generation must equal the argmax of full forwards");
        // seeded draws reproduce; another seed differs; 3 greedy samples in one batch == the single one
        std::string o1, o2, o3, o4;
        run_command(bin + " -c " + ck + " --prompt 'ROMEO:' -n 30 --seed 7 --print-ids", &o1);
        run_command(bin + " -c " + ck + " --prompt 'ROMEO:' -n 30 --seed 7 --print-ids", &o2);
        run_command(bin + " -c " + ck + " --prompt 'ROMEO:' -n 30 --seed 8 --print-ids --temperature 1.5 --top-k 0", &o3);
        CHECK(!ids_of(o1, 1).empty() && ids_of(o1, 1) == ids_of(o2, 1) && ids_of(o1, 1) != ids_of(o3, 1), "seeded sampling: %s | %s", o1.c_str(), o3.c_str());
        rc = run_command(bin + " -c " + ck + " --prompt 'ROMEO: my lord' -n 40 --greedy --print-ids --num-samples 3", &o4);
        CHECK(rc == 0 && ids_of(o4, 1) == gen && ids_of(o4, 2) == gen && ids_of(o4, 3) == gen && o4.find("--- sample 3 ---") != std::string::npos,
              "a batch of 3 greedy samples: %s", o4.c_str());
        rc = run_command(bin + " -c " + ck + " --prompt-ids 0,510,1722 -n 5 --stop-at-eos", &out);
        CHECK(rc == 0, "--prompt-ids: %s", out.c_str());
        // learned positions stop with a clear error at the end of their table
        rc = run_command(train + " -p learned --max-seq 40 --d-model 32 --layers 1 --heads 2 -b 2 -t 32 -x 2 -n 0 -v 1 -L /dev/null -o " + cl, &out);
        CHECK(rc == 0, "training failed: %s", out.c_str());
        rc = run_command(bin + " -c " + cl + " --prompt 'ROMEO:' -n 100 --print-ids", &out);
        CHECK(rc == 1 && out.find("learned positions end at 40") != std::string::npos && ids_of(out, 1).size() == 40 - 4 + 1,  // the prompt is 4 tokens
              "learned table end: rc %d %s", rc, out.c_str());
        struct Case { std::string args; const char* needle; };
        for (const Case& c : std::vector<Case>{{"--prompt ''", "the value is empty"}, {"-n -1", "-n -1 is out of range"},
                                               {"--temperature -0.5", "--temperature -0.5 must be >= 0"}, {"--top-p 1.5", "--top-p 1.5 must be in (0, 1]"},
                                               {"--top-k -2", "--top-k -2 must be >= 0"}, {"--tokenizer gpt2", "uses the gpt-neox-20b tokenizer, not gpt2"},
                                               {"--prompt 'a long prompt for a tiny context' --ctx 3", "longer than the context"},
                                               {"--prompt-ids 1,99999999", "outside the vocab"}, {"--prompt x --prompt-ids 1", "alternatives"},
                                               {"--prompt-file /nonexistent.txt", "cannot open"}, {"--num-samples 0", "--num-samples 0 is out of range"},
                                               {"--greedy --top-k 5", "do not apply"}, {"--greedy --temperature 0.7", "do not apply"},
                                               {"-d tpu", "unknown device 'tpu'"}, {"--press foo --budget 4", "unknown press 'foo'"},
                                               {"--press knorm", "--press needs --budget"}, {"--budget 8", "apply with --press"},
                                               {"--press knorm --budget 8 --ctx 30", "alternatives"}, {"--press knorm --budget 0", "--budget 0 is out of range"}}) {
            rc = run_command(bin + " -c " + ck + " " + c.args, &out);
            CHECK(rc == 1 && out.find(c.needle) != std::string::npos && out.find("Error:") != std::string::npos, "'%s': rc %d %s", c.args.c_str(), rc, out.c_str());
        }
        rc = run_command(bin + " -c " + cl + " --prompt-ids " + [] { std::string s = "1"; for (int i = 0; i < 45; i++) s += ",1"; return s; }(), &out);
        CHECK(rc == 1 && out.find("learned positions end at 40") != std::string::npos, "a prompt past the learned table: %s", out.c_str());
        // with a press the cache stays at its budget: a 40-token prompt and 60 new tokens in 16 + 1 slots
        std::string ids40 = "1";
        for (int i = 0; i < 39; i++) ids40 += "," + std::to_string(100 + 37 * i % 900);
        rc = run_command(bin + " -c " + ck + " --prompt-ids " + ids40 + " -n 60 --greedy --print-ids --press snapkv --budget 16", &out);
        CHECK(rc == 0 && ids_of(out, 1).size() == 60 && out.find("press snapkv: the cache held at 16 + 1 tokens") != std::string::npos &&
                  out.find("KV cache held: 17 tokens") != std::string::npos && out.find("positions reached 99") != std::string::npos,  // 40 + 59 fed (the last token is not)
              "a pressed generation: rc %d %s", rc, out.c_str());
        // a budget the generation never reaches changes nothing
        rc = run_command(bin + " -c " + ck + " --prompt 'ROMEO: my lord' -n 40 --greedy --print-ids --press h2o --budget 200", &o4);
        CHECK(rc == 0 && ids_of(o4, 1) == gen && o4.find("0 compression(s)") != std::string::npos, "an unreached budget: %s", o4.c_str());
    });
}

int main(int argc, char** argv) {
    setvbuf(stdout, nullptr, _IOLBF, 0);
    const char* filter = argc > 1 ? argv[1] : "";
    const char* bin = getenv("KVGPT_TRAIN_BIN");
    register_tests();
    register_press_tests();
    register_cli_tests(bin ? bin : "./train_gpt");
    register_resume_cli_tests(bin ? bin : "./train_gpt");
    const char* ebin = getenv("KVGPT_EVAL_BIN");
    register_eval_cli_tests(ebin ? ebin : "./eval_gpt");
    const char* sbin = getenv("KVGPT_SAMPLE_BIN");
    register_sample_cli_tests(sbin ? sbin : "./sample_gpt");
    printf("kvgpt CPU tests (%d OpenMP threads)\n", omp_get_max_threads());
    int failed = run_tests(filter);
    run_command("rm -rf " + tmpdir(), nullptr);  // the shards, checkpoints and logs the tests wrote
    return failed ? 1 : 0;
}
