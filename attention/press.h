// press.h: KV-cache presses (token eviction), one small scoring function each, with kvpress's
// semantics. A press scores every token a layer's cache holds for one sequence; each stream of
// the cache (a KV head of the GQA family or of MKA's level 1; MLA's single latent stream) then
// keeps its n_kept highest-scoring tokens (ties: the later position), compacted in position
// order (kv_cache.h), and the memory can be shrunk to what is kept. n_kept = max(1, floor(T (1 -
// ratio))) for a compression ratio (the fraction removed), or a fixed budget.
//
// Scores of the query heads that read a stream are averaged into the stream's score: a KV group
// for GQA (kvpress's rule); for MLA every head reads the latent, so MLA's one score per token is
// the mean over all heads, each head seeing the token through its own up-projection:
// key_h = [W_UK_h c ; k_R], value_h = W_UV_h c (attention.h: press_key, press_value_norm).
// Attention weights are those the model computes: RoPE keys as cached (no re-rotation), ALiBi
// with the tokens' original distances.
//   random              uniform scores from a seeded generator (per layer, sequence, stream, round)
//   knorm               -||k||, mean over the stream's heads: low-norm keys are kept
//   streaming           the first n_sink = 4 positions, then the most recent ones
//   snapkv              attention of the last window = 64 queries to the keys before the window,
//                       mean over those queries, average-pooled along the keys (kernel 5, zero
//                       padding counted, as torch's avg_pool1d), mean over the stream's heads;
//                       the window's own keys always kept
//   tova                attention of the last query, mean over ALL heads (one score shared by
//                       every stream, as kvpress); the last token always kept
//   h2o                 observed attention: the attention a key received from every query that saw
//                       it (all of the prefill, and every decoded query), divided by their number
//   expected_attention  a Gaussian model of future queries: the mean mu and covariance S of the
//                       un-rotated queries (positions >= n_sink), averaged over the RoPE rotations
//                       of the next 512 positions (R = mean_t R_t; mu <- R mu, S <- R S R^T), score =
//                       softmax_j(s k.mu + s^2 k^T S k / 2) * ||v|| with s the attention scale (and
//                       ALiBi's bias at the next position), mean over the stream's heads; n_sink
//                       first positions always kept. While decoding, the moments run over every
//                       query of the stream so far (kvpress's DecodingPress uses the hidden states
//                       since its last compression, at most 256)
//   keydiff             -cos(k, mean of the normalised keys): keys least like the average are kept
// What a press reads while decoding (recent queries, query moments, accumulated attention) is
// recorded only when press_observe() turned it on for that press.
#pragma once
#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>
#include "../llmc/rng.h"
#include "attention.h"

enum PressKind { PRESS_RANDOM, PRESS_KNORM, PRESS_STREAMING, PRESS_SNAPKV, PRESS_TOVA, PRESS_H2O, PRESS_EXPECTED, PRESS_KEYDIFF, PRESS_COUNT };
static const char* PRESS_NAMES[PRESS_COUNT] = {"random", "knorm", "streaming", "snapkv", "tova", "h2o", "expected_attention", "keydiff"};

struct Press {
    int kind = PRESS_KNORM;
    uint64_t seed = 1;
    int n_sink = 4, window = 64, kernel = 5, n_future = 512;
};
static int press_kind_from_name(const std::string& n) {
    for (int k = 0; k < PRESS_COUNT; k++)
        if (n == PRESS_NAMES[k]) return k;
    return -1;
}
static std::string press_names_list() {
    std::string s;
    for (int k = 0; k < PRESS_COUNT; k++) s += (k ? "," : "") + std::string(PRESS_NAMES[k]);
    return s;
}
// tokens kept of T for a ratio (kvpress: max(1, int(T * (1 - ratio)))) or a budget (when > 0)
static int press_n_kept(int T, double ratio, int budget) {
    if (budget > 0) return std::min(T, budget);
    return std::max(1, (int)(T * (1.0 - ratio)));
}

// turn on (for this press) the recording a layer's cache needs; call after decode_begin
static void press_observe(const Press& p, Attention& a) {
    KVCache& c = a.kv_cache();
    int off = 0;
    const Rope* r = a.decode_rope(&off);
    int window = p.kind == PRESS_SNAPKV ? p.window : p.kind == PRESS_TOVA ? 1 : 0;
    c.obs_skip = p.n_sink;
    c.observe(window, p.kind == PRESS_EXPECTED, p.kind == PRESS_H2O, a.decode_core().H, r, off);
}

// softmax over the slots of stream g that query qv (head h, position qp) can see (pos <= qp): probs
// (len) get the weights, 0 for slots after the query
static void press_attention(const AttnCore& core, const KVCache& c, int s, int g, int h, const float* qv, int qp, std::vector<double>& probs) {
    const int n = c.len[s];
    probs.assign(n, 0.0);
    double m = -INFINITY;
    for (int j = 0; j < n; j++) {
        if (c.slot_pos(s, g, j) > qp) continue;
        probs[j] = core.score(qv, c.ka(s, g, j), c.wb ? c.kb(s, g, j) : nullptr) + core.bias(h, qp, c.slot_pos(s, g, j));
        m = std::max(m, probs[j]);
    }
    double z = 0.0;
    for (int j = 0; j < n; j++)
        if (c.slot_pos(s, g, j) <= qp) z += (probs[j] = exp(probs[j] - m));
    for (int j = 0; j < n; j++) probs[j] /= z;
}

// scores (heads, len) of sequence s in one layer; higher is kept
static void press_scores(const Press& p, Attention& a, int layer, int s, uint64_t round, std::vector<float>& sc) {
    KVCache& c = a.kv_cache();
    const AttnCore& core = a.decode_core();
    const int n = c.len[s], G = c.heads, group = core.group, H = core.H;
    sc.assign((size_t)G * n, 0.0f);
    auto S = [&](int g, int j) -> float& { return sc[(size_t)g * n + j]; };
    std::vector<double> pr;
    switch (p.kind) {
        case PRESS_RANDOM: {
            Rng rng(p.seed * 0x9E3779B97F4A7C15ULL ^ ((uint64_t)layer << 40) ^ ((uint64_t)s << 20) ^ round);
            for (float& x : sc) x = (float)rng.uniform();
            break;
        }
        case PRESS_STREAMING:
            for (int g = 0; g < G; g++)
                for (int j = 0; j < n; j++) S(g, j) = c.slot_pos(s, g, j) < p.n_sink ? INFINITY : (float)c.slot_pos(s, g, j);
            break;
        case PRESS_KNORM:
        case PRESS_KEYDIFF: {
            const int dk = a.press_key_dim();
            std::vector<float> keys((size_t)n * dk);
            for (int g = 0; g < G; g++)
                for (int hh = 0; hh < group; hh++) {
                    const int h = g * group + hh;
                    for (int j = 0; j < n; j++) a.press_key(h, s, j, &keys[(size_t)j * dk]);
                    std::vector<double> norm(n), anchor(dk, 0.0);
                    for (int j = 0; j < n; j++) {
                        double q = 0.0;
                        for (int k = 0; k < dk; k++) q += (double)keys[(size_t)j * dk + k] * keys[(size_t)j * dk + k];
                        norm[j] = sqrt(q);
                        for (int k = 0; k < dk; k++) anchor[k] += keys[(size_t)j * dk + k] / std::max(norm[j], 1e-12) / n;
                    }
                    double an = 0.0;
                    for (int k = 0; k < dk; k++) an += anchor[k] * anchor[k];
                    an = sqrt(an);
                    for (int j = 0; j < n; j++) {
                        double x = -norm[j];
                        if (p.kind == PRESS_KEYDIFF) {
                            double d = 0.0;
                            for (int k = 0; k < dk; k++) d += keys[(size_t)j * dk + k] * anchor[k];
                            x = -d / std::max(norm[j] * an, 1e-12);
                        }
                        S(g, j) += (float)(x / group);
                    }
                }
            break;
        }
        case PRESS_SNAPKV: {
            const int W = std::min(p.window, c.recent_queries(s));
            if (W < 1) fail("internal: snapkv has no recorded queries (press_observe was not called)");
            int pw0 = 0;
            c.recent_query(s, W - 1, 0, &pw0);  // the window's first position
            for (int g = 0; g < G; g++) {
                std::vector<double> mean(n, 0.0);
                int nwg = 0;  // slots before the window (a prefix: slots are in position order)
                while (nwg < n && c.slot_pos(s, g, nwg) < pw0) nwg++;
                for (int hh = 0; hh < group; hh++)
                    for (int k = 0; k < W; k++) {
                        int qp = 0;
                        const float* qv = c.recent_query(s, k, g * group + hh, &qp);
                        press_attention(core, c, s, g, g * group + hh, qv, qp, pr);
                        for (int j = 0; j < nwg; j++) mean[j] += pr[j] / ((double)W * group);
                    }
                const int r = p.kernel / 2;
                for (int j = 0; j < n; j++) {
                    if (j >= nwg) { S(g, j) = INFINITY; continue; }
                    double x = 0.0;
                    for (int d = -r; d <= r; d++)
                        if (j + d >= 0 && j + d < nwg) x += mean[j + d];
                    S(g, j) = (float)(x / p.kernel);
                }
            }
            break;
        }
        case PRESS_TOVA: {
            if (c.recent_queries(s) < 1) fail("internal: tova has no recorded query (press_observe was not called)");
            std::vector<double> mean(n, 0.0);
            int qp = 0;
            for (int h = 0; h < H; h++) {  // every stream holds the same tokens unless a per-head press ran before
                const float* qv = c.recent_query(s, 0, h, &qp);
                press_attention(core, c, s, h / group, h, qv, qp, pr);
                for (int j = 0; j < n; j++) mean[j] += pr[j] / H;
            }
            for (int g = 0; g < G; g++)
                for (int j = 0; j < n; j++) S(g, j) = c.slot_pos(s, g, j) == qp ? INFINITY : (float)mean[j];
            break;
        }
        case PRESS_H2O:
            if (c.attn_sum.empty()) fail("internal: h2o has no observed attention (press_observe was not called)");
            for (int g = 0; g < G; g++)
                for (int j = 0; j < n; j++) S(g, j) = c.attn_sum[c.off(s, g, j)] / (float)(c.last_pos[s] - c.slot_pos(s, g, j) + 1);
            break;
        case PRESS_EXPECTED: {
            if (c.qcnt[s] < 1) fail_hint("prefill more than n_sink = 4 tokens before compressing", "expected_attention has no query statistics");
            const int dq = c.dq, T0 = c.last_pos[s] + 1;
            const Rope* rope = c.rope;
            // the mean rotation of the next n_future positions, per NeoX pair
            const int half = rope ? rope->rot / 2 : 0;
            std::vector<double> cbar(half, 0.0), sbar(half, 0.0);
            for (int i = 0; i < half; i++) {
                double th = pow(rope->base, -2.0 * i / rope->rot);
                for (int t = T0; t < T0 + p.n_future; t++) { cbar[i] += cos(t * th) / p.n_future; sbar[i] += sin(t * th) / p.n_future; }
            }
            auto rotate = [&](double* x, long stride) {  // x <- R x along dims rot_off.., elements `stride` apart
                for (int i = 0; i < half; i++) {
                    double& x1 = x[(long)(c.rot_off + i) * stride];
                    double& x2 = x[(long)(c.rot_off + i + half) * stride];
                    double a1 = x1, a2 = x2;
                    x1 = cbar[i] * a1 - sbar[i] * a2;
                    x2 = sbar[i] * a1 + cbar[i] * a2;
                }
            };
            std::vector<double> mu(dq), cov((size_t)dq * dq), z(n), kk(dq);
            const double sc1 = core.scale, sc2 = (double)core.scale * core.scale;
            for (int g = 0; g < G; g++)
                for (int hh = 0; hh < group; hh++) {
                    const int h = g * group + hh;
                    const double cnt = (double)c.qcnt[s];
                    for (int x = 0; x < dq; x++) mu[x] = c.qsum[((size_t)s * H + h) * dq + x] / cnt;
                    for (int x = 0; x < dq; x++)
                        for (int y = 0; y < dq; y++) cov[(size_t)x * dq + y] = c.qcov[(((size_t)s * H + h) * dq + x) * dq + y] / cnt - mu[x] * mu[y];
                    rotate(mu.data(), 1);
                    for (int y = 0; y < dq; y++) rotate(&cov[y], dq);           // R S: each column
                    for (int x = 0; x < dq; x++) rotate(&cov[(size_t)x * dq], 1);  // (R S) R^T: each row
                    double m = -INFINITY;
                    for (int j = 0; j < n; j++) {
                        if (c.slot_pos(s, g, j) < p.n_sink) continue;
                        for (int k = 0; k < c.wa; k++) kk[k] = c.ka(s, g, j)[k];
                        for (int k = 0; k < c.wb; k++) kk[c.wa + k] = c.kb(s, g, j)[k];
                        double lin = 0.0, quad = 0.0;
                        for (int x = 0; x < dq; x++) {
                            lin += mu[x] * kk[x];
                            double r = 0.0;
                            for (int y = 0; y < dq; y++) r += cov[(size_t)x * dq + y] * kk[y];
                            quad += kk[x] * r;
                        }
                        z[j] = sc1 * lin + 0.5 * sc2 * quad + core.bias(h, T0, c.slot_pos(s, g, j));
                        m = std::max(m, z[j]);
                    }
                    double tot = 0.0;
                    for (int j = 0; j < n; j++)
                        if (c.slot_pos(s, g, j) >= p.n_sink) tot += (z[j] = exp(z[j] - m));
                    for (int j = 0; j < n; j++)
                        if (c.slot_pos(s, g, j) >= p.n_sink) S(g, j) += (float)(z[j] / tot * a.press_value_norm(h, s, j) / group);
                }
            for (int g = 0; g < G; g++)
                for (int j = 0; j < n; j++)
                    if (c.slot_pos(s, g, j) < p.n_sink) S(g, j) = INFINITY;
            break;
        }
        default: fail("internal: press kind %d", p.kind);
    }
    for (float x : sc)
        if (std::isnan(x)) fail_hint("the model's cache holds non-finite values", "press %s produced a NaN score", PRESS_NAMES[p.kind]);
}

// per stream, the n_kept highest scores (ties: the later position first), ascending slot order
static std::vector<int> press_select(const std::vector<float>& sc, const KVCache& c, int s, int n_kept) {
    const int n = c.len[s];
    std::vector<int> kept((size_t)c.heads * n_kept), idx(n);
    for (int g = 0; g < c.heads; g++) {
        std::iota(idx.begin(), idx.end(), 0);
        const float* x = &sc[(size_t)g * n];
        std::partial_sort(idx.begin(), idx.begin() + n_kept, idx.end(), [&](int i, int j) {
            if (x[i] != x[j]) return x[i] > x[j];
            return c.slot_pos(s, g, i) > c.slot_pos(s, g, j);
        });
        std::sort(idx.begin(), idx.begin() + n_kept);
        std::copy(idx.begin(), idx.begin() + n_kept, kept.begin() + (size_t)g * n_kept);
    }
    return kept;
}

// one layer keeps n_kept of the tokens it holds for sequence s (nothing happens when it holds
// no more than that)
static void press_compress_layer(const Press& p, Attention& a, int layer, int s, int n_kept, uint64_t round) {
    KVCache& c = a.kv_cache();
    if (n_kept >= c.len[s]) return;
    if (n_kept < 1) fail("internal: press keeps %d tokens", n_kept);
    std::vector<float> sc;
    press_scores(p, a, layer, s, round, sc);
    c.keep(s, press_select(sc, c, s, n_kept), n_kept);
}
