// core.h: the causal softmax-attention core every variant builds on (fp32, CPU).
// Scores of query head h at time t against key t2 <= t:
//     s = scale * (q[h][0:da] . ka[h/group][0:da] + q[h][da:da+db] . kb[0:db]) - slope_h * (t - t2)
// ka is per KV head, shared by `group` query heads by index (GQA/MQA; MHA: group 1); kb is an
// optional key part shared by all heads (MLA's decoupled rope key). Values are per KV head.
// Every tensor is addressed as base + (b*T + t) * row_stride + head * head_stride, so q, k, v can
// live inside one fused projection output without copies. Forward and backward are flash-style:
// only the per-row log-sum-exp (B,H,T) is saved, never a (T,T) matrix.
// The forward of row t reads only keys <= t.
#pragma once
#include <algorithm>
#include <cmath>
#include <vector>
#include "../llmc/matmul.h"
#include "../llmc/utils.h"

// TEST ONLY: when > 0, the forward also attends to this many future tokens. It exists so the tests
// can prove that the leak guard (llmc/eval.h) catches a model that sees the future. Never set it
// anywhere else.
static int g_test_only_future_leak = 0;

struct StridedTensor {
    float* p;
    long row, head;  // floats between tokens, between heads
    float* at(int b, int T, int t, int h) const { return p + ((long)b * T + t) * row + (long)h * head; }
};

struct AttnCore {
    int H = 1, group = 1;      // query heads; query heads per KV head
    int da = 0, db = 0, dv = 0;
    float scale = 1.0f;
    const float* slopes = nullptr;  // ALiBi (H) or null

    // ALiBi's additive score bias of query (h, t) for key t2 <= t: 0 at distance 0, then falling
    inline float bias(int h, int t, int t2) const { return slopes ? -slopes[h] * (float)(t - t2) : 0.0f; }

    inline float score(const float* qv, const float* k1, const float* k2) const {
        float s = dotf(qv, k1, da);
        if (db) s += dotf(qv + da, k2, db);
        return s * scale;
    }

    // Flash-style forward: each query row runs an online softmax over blocks of keys, so no
    // (T,T) matrix is ever kept; it saves only the log-sum-exp of each row, lse (B,H,T).
    void forward(int B, int T, StridedTensor q, StridedTensor ka, StridedTensor kb, StridedTensor v, float* lse,
                 StridedTensor y) const {
        const int BLK = 64;
        ProfScope prof(PROF_ATTENTION);
        #pragma omp parallel for collapse(2) schedule(static)
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++) {
                int g = h / group;
                float s[BLK];
                for (int t = 0; t < T; t++) {
                    const float* qv = q.at(b, T, t, h);
                    float* yv = y.at(b, T, t, h);
                    for (int i = 0; i < dv; i++) yv[i] = 0.0f;
                    float m = -INFINITY, l = 0.0f;
                    const int last = std::min(T - 1, t + g_test_only_future_leak);
                    for (int j0 = 0; j0 <= last; j0 += BLK) {
                        int j1 = std::min(last + 1, j0 + BLK);
                        float bm = -INFINITY;
                        for (int t2 = j0; t2 < j1; t2++) {
                            s[t2 - j0] = score(qv, ka.at(b, T, t2, g), db ? kb.at(b, T, t2, 0) : nullptr) + bias(h, t, t2);
                            bm = fmaxf(bm, s[t2 - j0]);
                        }
                        float m_new = fmaxf(m, bm), corr = expf(m - m_new);
                        l *= corr;
                        for (int i = 0; i < dv; i++) yv[i] *= corr;
                        for (int t2 = j0; t2 < j1; t2++) {
                            float p = expf(s[t2 - j0] - m_new);
                            l += p;
                            const float* vv = v.at(b, T, t2, g);
                            for (int i = 0; i < dv; i++) yv[i] += p * vv[i];
                        }
                        m = m_new;
                    }
                    float inv = 1.0f / l;
                    for (int i = 0; i < dv; i++) yv[i] *= inv;
                    lse[((long)b * H + h) * T + t] = m + logf(l);
                }
            }
    }

    // Backward from the saved lse: probabilities are recomputed, p = exp(score - lse), and
    // sum_t2 p dp = dy . y gives the softmax correction without a (T,T) buffer.
    // dq is overwritten; dka, dkb, dval accumulate (callers zero them). dlse (B,H,T), when given,
    // is a gradient arriving at the saved lse itself (fmka mixes levels by it): since
    // d lse / d s = p, it adds p * dlse to each score's gradient, i.e. D becomes D - dlse.
    // One thread owns every head
    // that shares a key (a KV group, or the whole batch row when kb is shared), so no races and
    // a fixed summation order.
    void backward(int B, int T, StridedTensor q, StridedTensor ka, StridedTensor kb, StridedTensor v, const float* lse,
                  StridedTensor y, StridedTensor dy, StridedTensor dq, StridedTensor dka, StridedTensor dkb, StridedTensor dval,
                  const float* dlse = nullptr) const {
        ProfScope prof(PROF_ATTENTION);
        int units = db ? 1 : H / group;
        #pragma omp parallel for collapse(2) schedule(static)
        for (int b = 0; b < B; b++)
            for (int u = 0; u < units; u++) {
                int h0 = db ? 0 : u * group, h1 = db ? H : (u + 1) * group;
                for (int h = h0; h < h1; h++) {
                    int g = h / group;
                    for (int t = 0; t < T; t++) {
                        const float* dyv = dy.at(b, T, t, h);
                        const float* qv = q.at(b, T, t, h);
                        float* dqv = dq.at(b, T, t, h);
                        for (int i = 0; i < da + db; i++) dqv[i] = 0.0f;
                        float D = dotf(dyv, y.at(b, T, t, h), dv), L = lse[((long)b * H + h) * T + t];
                        if (dlse) D -= dlse[((long)b * H + h) * T + t];
                        for (int t2 = 0; t2 <= t; t2++) {
                            const float* k1 = ka.at(b, T, t2, g);
                            const float* k2 = db ? kb.at(b, T, t2, 0) : nullptr;
                            float p = expf(score(qv, k1, k2) + bias(h, t, t2) - L);
                            const float* vv = v.at(b, T, t2, g);
                            float* dvv = dval.at(b, T, t2, g);
                            float dp = dotf(dyv, vv, dv);
                            for (int i = 0; i < dv; i++) dvv[i] += p * dyv[i];
                            float ds = p * (dp - D) * scale;
                            float* dk1 = dka.at(b, T, t2, g);
                            for (int i = 0; i < da; i++) {
                                dqv[i] += ds * k1[i];
                                dk1[i] += ds * qv[i];
                            }
                            if (db) {
                                float* dk2 = dkb.at(b, T, t2, 0);
                                for (int i = 0; i < db; i++) {
                                    dqv[da + i] += ds * k2[i];
                                    dk2[i] += ds * qv[da + i];
                                }
                            }
                        }
                    }
                }
            }
    }

    // decoding: n query rows, row i at position pos[i] of its own sequence, against the cache
    // of that sequence: q rows (H heads of q_head floats) q_row floats apart; cache_a(i, t2, g),
    // cache_b(i, t2), cache_v(i, t2, g) give row i's key / value rows for positions t2 <= pos[i].
    // y (n, H, dv) rows y_row apart, heads y_head apart; lse_out (n, H), when given, gets each
    // head's log-sum-exp. Parallel over (row, head): one row at long context uses every core.
    template <typename KA, typename KB, typename VV>
    void decode_rows(int n, const int* pos, const float* q, long q_row, long q_head, KA cache_a, KB cache_b, VV cache_v, float* y,
                     long y_row, long y_head, float* lse_out = nullptr) const {
        ProfScope prof(PROF_ATTENTION);
        #pragma omp parallel
        {
            std::vector<float> sc;
            #pragma omp for collapse(2) schedule(dynamic, 1)
            for (int i = 0; i < n; i++)
                for (int h = 0; h < H; h++) {
                    const int t = pos[i], g = h / group;
                    sc.resize(t + 1);
                    const float* qv = q + i * q_row + h * q_head;
                    float mx = -INFINITY;
                    for (int t2 = 0; t2 <= t; t2++) {
                        float s = score(qv, cache_a(i, t2, g), db ? cache_b(i, t2) : nullptr) + bias(h, t, t2);
                        sc[t2] = s;
                        mx = fmaxf(mx, s);
                    }
                    float sum = 0.0f;
                    for (int t2 = 0; t2 <= t; t2++) { sc[t2] = expf(sc[t2] - mx); sum += sc[t2]; }
                    if (lse_out) lse_out[(long)i * H + h] = mx + logf(sum);
                    float* yv = y + i * y_row + h * y_head;
                    for (int k = 0; k < dv; k++) yv[k] = 0.0f;
                    const float inv = 1.0f / sum;
                    for (int t2 = 0; t2 <= t; t2++) {
                        const float a = sc[t2] * inv;
                        const float* vv = cache_v(i, t2, g);
                        for (int k = 0; k < dv; k++) yv[k] += a * vv[k];
                    }
                }
        }
    }
};
