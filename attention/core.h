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
#include <immintrin.h>
#include <type_traits>
#include <algorithm>
#include <cmath>
#include <vector>
#include "../llmc/matmul.h"
#include "../llmc/ops.h"
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

    // scores of query row qv (head h, position t) against keys b0 <= t2 < b1, into s[t2 - b0]:
    // 4 keys per pass, so each q load serves 4 dot products (the last pass repeats its last key)
    template <typename KA, typename KB>
    inline void block_scores(const float* qv, int h, int t, int b0, int b1, KA ka_at, KB kb_at, float* s) const {
        for (int t2 = b0; t2 < b1; t2 += 4) {
            const int u1 = std::min(t2 + 1, b1 - 1), u2 = std::min(t2 + 2, b1 - 1), u3 = std::min(t2 + 3, b1 - 1);
            float s4[4];
            if (db) dot4x2(qv, ka_at(t2), ka_at(u1), ka_at(u2), ka_at(u3), da, qv + da, kb_at(t2), kb_at(u1), kb_at(u2), kb_at(u3), db, s4);
            else dot4(qv, ka_at(t2), ka_at(u1), ka_at(u2), ka_at(u3), da, s4);
            for (int j = 0; j < 4 && t2 + j < b1; j++) s[t2 + j - b0] = s4[j] * scale + bias(h, t, t2 + j);
        }
    }
    // s[j] = exp(s[j] - m) for j < n, 16 at a time; returns their sum
    static inline float block_exp(float* s, int n, float m) {
        float l = 0.0f;
        int j = 0;
        for (; j + 16 <= n; j += 16) {
            v16f e = exp16(*(v16f*)&s[j] - m);
            *(v16f*)&s[j] = e;
            l += hsum16(e);
        }
        for (; j < n; j++) { s[j] = expf(s[j] - m); l += s[j]; }
        return l;
    }
    // acc (dim floats) = corr * acc + sum over b0 <= t2 < b1 of w[t2 - b0] * row(t2): in registers
    // for the usual widths
    template <typename RF>
    static inline void accumulate_rows(int b0, int b1, const float* w, float corr, RF row, float* acc, int dim) {
        switch (dim) {
            case 16: accumulate_tile<1>(b0, b1, w, corr, row, acc); return;
            case 32: accumulate_tile<2>(b0, b1, w, corr, row, acc); return;
            case 48: accumulate_tile<3>(b0, b1, w, corr, row, acc); return;
            case 64: accumulate_tile<4>(b0, b1, w, corr, row, acc); return;
            case 96: accumulate_tile<6>(b0, b1, w, corr, row, acc); return;
            case 128: accumulate_tile<8>(b0, b1, w, corr, row, acc); return;
        }
        for (int k = 0; k < dim; k++) acc[k] *= corr;
        for (int t2 = b0; t2 < b1; t2++) {
            const float x = w[t2 - b0];
            const float* r = row(t2);
            for (int k = 0; k < dim; k++) acc[k] += x * r[k];
        }
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
                const int g = h / group;
                auto ka_at = [&](int t2) { return (const float*)ka.at(b, T, t2, g); };
                auto kb_at = [&](int t2) { return (const float*)(db ? kb.at(b, T, t2, 0) : nullptr); };
                auto v_at = [&](int t2) { return (const float*)v.at(b, T, t2, g); };
                float s[BLK];
                for (int t = 0; t < T; t++) {
                    const float* qv = q.at(b, T, t, h);
                    float* yv = y.at(b, T, t, h);
                    for (int i = 0; i < dv; i++) yv[i] = 0.0f;
                    float m = -INFINITY, l = 0.0f;
                    const int last = std::min(T - 1, t + g_test_only_future_leak);
                    for (int j0 = 0; j0 <= last; j0 += BLK) {
                        const int j1 = std::min(last + 1, j0 + BLK);
                        block_scores(qv, h, t, j0, j1, ka_at, kb_at, s);
                        float bm = -INFINITY;
                        for (int j = 0; j < j1 - j0; j++) bm = fmaxf(bm, s[j]);
                        const float m_new = fmaxf(m, bm), corr = expf(m - m_new);
                        l = l * corr + block_exp(s, j1 - j0, m_new);
                        accumulate_rows(j0, j1, s, corr, v_at, yv, dv);
                        m = m_new;
                    }
                    const float inv = 1.0f / l;
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
    // One thread owns every head that shares a key (a KV group, or the whole batch row when kb
    // is shared), so no races and a fixed summation order. Keys go in blocks: their scores, p
    // and dp = dy . v four keys at a time, dq summed in registers over the block.
    void backward(int B, int T, StridedTensor q, StridedTensor ka, StridedTensor kb, StridedTensor v, const float* lse,
                  StridedTensor y, StridedTensor dy, StridedTensor dq, StridedTensor dka, StridedTensor dkb, StridedTensor dval,
                  const float* dlse = nullptr) const {
        const int BLK = 64;
        ProfScope prof(PROF_ATTENTION);
        int units = db ? 1 : H / group;
        #pragma omp parallel for collapse(2) schedule(static)
        for (int b = 0; b < B; b++)
            for (int u = 0; u < units; u++) {
                int h0 = db ? 0 : u * group, h1 = db ? H : (u + 1) * group;
                for (int h = h0; h < h1; h++) {
                    const int g = h / group;
                    auto ka_at = [&](int t2) { return (const float*)ka.at(b, T, t2, g); };
                    auto kb_at = [&](int t2) { return (const float*)(db ? kb.at(b, T, t2, 0) : nullptr); };
                    auto v_at = [&](int t2) { return (const float*)v.at(b, T, t2, g); };
                    // query rows go 4 at a time (rows t0 .. t0+R-1), so each key's dk and dv rows are
                    // read and written once per 4 rows; a row's keys past its own position get p = 0
                    const int RB = 4;
                    float p[RB][BLK], ds[RB][BLK];
                    for (int t0 = 0; t0 < T; t0 += RB) {
                        const int R = std::min(RB, T - t0), tmax = t0 + R - 1;
                        const float *dyv[RB], *qv[RB];
                        float* dqv[RB];
                        float D[RB], L[RB];
                        for (int r = 0; r < RB; r++) {
                            const int t = t0 + std::min(r, R - 1);  // rows past the end repeat the last one, weighted 0
                            dyv[r] = dy.at(b, T, t, h);
                            qv[r] = q.at(b, T, t, h);
                            dqv[r] = dq.at(b, T, t, h);
                            D[r] = dotf(dyv[r], y.at(b, T, t, h), dv);
                            L[r] = lse[((long)b * H + h) * T + t];
                            if (dlse) D[r] -= dlse[((long)b * H + h) * T + t];
                        }
                        for (int r = 0; r < R; r++)
                            for (int i = 0; i < da + db; i++) dqv[r][i] = 0.0f;
                        for (int j0 = 0; j0 <= tmax; j0 += BLK) {
                            const int j1 = std::min(tmax + 1, j0 + BLK), n = j1 - j0;
                            for (int r = 0; r < RB; r++) {
                                const int t = t0 + r, jr = std::min(j1, t + 1);  // row r's keys in this block: [j0, jr)
                                if (r >= R || jr <= j0) {
                                    for (int j = 0; j < n; j++) p[r][j] = ds[r][j] = 0.0f;
                                    continue;
                                }
                                block_scores(qv[r], h, t, j0, jr, ka_at, kb_at, p[r]);
                                block_exp(p[r], jr - j0, L[r]);
                                for (int t2 = j0; t2 < jr; t2 += 4) {  // dp = dy . v, 4 keys at a time
                                    const int u1 = std::min(t2 + 1, jr - 1), u2 = std::min(t2 + 2, jr - 1), u3 = std::min(t2 + 3, jr - 1);
                                    float dp4[4];
                                    dot4(dyv[r], v_at(t2), v_at(u1), v_at(u2), v_at(u3), dv, dp4);
                                    for (int j = 0; j < 4 && t2 + j < jr; j++) ds[r][t2 + j - j0] = p[r][t2 + j - j0] * (dp4[j] - D[r]) * scale;
                                }
                                for (int j = jr - j0; j < n; j++) p[r][j] = ds[r][j] = 0.0f;
                                accumulate_rows(j0, jr, ds[r], 1.0f, ka_at, dqv[r], da);
                                if (db) accumulate_rows(j0, jr, ds[r], 1.0f, kb_at, dqv[r] + da, db);
                            }
                            for (int t2 = j0; t2 < j1; t2++) {
                                const int j = t2 - j0;
                                axpy4(dka.at(b, T, t2, g), ds[0][j], ds[1][j], ds[2][j], ds[3][j], qv, 0, da);
                                if (db) axpy4(dkb.at(b, T, t2, 0), ds[0][j], ds[1][j], ds[2][j], ds[3][j], qv, da, db);
                                axpy4(dval.at(b, T, t2, g), p[0][j], p[1][j], p[2][j], p[3][j], dyv, 0, dv);
                            }
                        }
                    }
                }
            }
    }
    // y[0:n] += a0 x[0][off:] + a1 x[1][off:] + a2 x[2][off:] + a3 x[3][off:], y read and written once
    static inline void axpy4(float* y, float a0, float a1, float a2, float a3, const float* const* x, int off, int n) {
        const float *x0 = x[0] + off, *x1 = x[1] + off, *x2 = x[2] + off, *x3 = x[3] + off;
        int i = 0;
        for (; i + 16 <= n; i += 16)
            *(v16f*)(y + i) += ((a0 * *(const v16f*)(x0 + i) + a1 * *(const v16f*)(x1 + i)) +
                                (a2 * *(const v16f*)(x2 + i) + a3 * *(const v16f*)(x3 + i)));
        for (; i < n; i++) y[i] += (a0 * x0[i] + a1 * x1[i]) + (a2 * x2[i] + a3 * x3[i]);
    }

    // acc (16 NV floats, or dv) = corr * acc + sum over keys b0 <= t2 < b1 of p[t2 - b0] * v(t2),
    // the output row held in registers for the usual widths
    template <int NV, typename VF>
    static inline void accumulate_tile(int b0, int b1, const float* p, float corr, VF v, float* acc_mem) {
        v16f a[NV];
        for (int k = 0; k < NV; k++) a[k] = corr * *(const v16f*)(acc_mem + 16 * k);
        for (int t2 = b0; t2 < b1; t2++) {
            const float w = p[t2 - b0];
            const float* vv = v(t2);
            for (int k = 0; k < NV; k++) a[k] += w * *(const v16f*)(vv + 16 * k);
        }
        for (int k = 0; k < NV; k++) *(v16f*)(acc_mem + 16 * k) = a[k];
    }

    // A run of cache rows to prefetch, key by key (its key rows, then its value row: up to 3
    // streams), asked for a few rows at a time, in order: ask_until(r) asks for every cache line
    // of the rows not yet asked for below row r. Prefetch hints: no fault, no effect on results.
    // Counted, not listed (a list of the lines' addresses, written per tile and read back, showed
    // as 1/5 of the kernel's time under perf), and by rows, not lines (a cursor stepped line by
    // line, row / stream / line, cost 0.6 ns per (head, key) of MQA's 4.8 with the cache in L2).
    // Asked into L2 (prefetcht1), not L1: an L1 prefetch holds one of L1's few miss buffers until
    // its line comes, which capped the lines in flight; into L2, 8k keys from memory, both threads,
    // MQA 1.17x, GQA 1.29x, MLA 1.25x faster (docs/benchmarks.md, "Decode, seventh round"), and
    // the loads that follow find their lines 14 cycles away instead of hundreds.
    struct RowPrefetch {
        const char* base[3];
        long stride[3];      // bytes from one row to the next
        int per_row[3];      // lines per row
        int n = 0, total = 0;  // streams; rows (set by the caller)
        int row = 0;           // the next row to ask for
        void add(const float* row0, long row_floats, int floats) {
            base[n] = (const char*)row0;
            stride[n] = row_floats * (long)sizeof(float);
            per_row[n++] = (floats * (int)sizeof(float) + 63) / 64;
        }
        void ask_until(int end) {  // rows [row, end)
            for (end = std::min(total, end); row < end; row++)
                for (int i = 0; i < n; i++) {
                    const char* p = base[i] + row * stride[i];
                    for (int l = 0; l < per_row[i]; l++) __builtin_prefetch(p + 64 * l, 0, 2);
                }
        }
        int remaining() const { return total - row; }
    };

    // the same for HB heads that share the tile's value rows (a KV head's group): head h's
    // acc_mem[h] = corr[h] * acc_mem[h] + sum over keys t < n of p[h][t] * pv[t], each value row
    // loaded once for all HB heads (NV + 1 loads per HB x NV FMAs instead of NV + 1 per NV). Each
    // head's vectors get the same FMAs in the same order as accumulate_tile: the same bits
    // pf, when given, holds rows to ask for meanwhile (the rest of the next tile's), spread evenly
    // over the keys, so the loads in flight overlap the FMAs instead of waiting in a burst.
    template <int NV, int HB>
    static inline void accumulate_tile_heads(int n, const float* const* p, const float* corr, const float* const* pv, float* const* acc_mem,
                                             RowPrefetch* pf = nullptr) {
        v16f a[HB][NV];
        for (int h = 0; h < HB; h++)
            for (int k = 0; k < NV; k++) a[h][k] = corr[h] * *(const v16f*)(acc_mem[h] + 16 * k);
        const int pf0 = pf ? pf->row : 0, pf_n = pf ? pf->remaining() : 0;  // spread evenly over the keys
        for (int t = 0; t < n; t++) {
            if (pf) pf->ask_until(pf0 + (t + 1) * pf_n / n);
            v16f vr[NV];
            for (int k = 0; k < NV; k++) vr[k] = *(const v16f*)(pv[t] + 16 * k);
            for (int h = 0; h < HB; h++) {
                const float w = p[h][t];
                for (int k = 0; k < NV; k++) a[h][k] += w * vr[k];
            }
        }
        for (int h = 0; h < HB; h++)
            for (int k = 0; k < NV; k++) *(v16f*)(acc_mem[h] + 16 * k) = a[h][k];
    }
    // heads [0, nh) of a group: in blocks that fill 16 accumulator vectors, then one at a time
    // (the first block also asks for pf's rows, see accumulate_tile_heads; where no block is
    // taken they are asked for at once)
    static inline void accumulate_group(int nh, int n, const float* const* p, const float* corr, const float* const* pv, float* const* acc_mem,
                                        int dim, RowPrefetch* pf = nullptr) {
        int h = 0;
        auto blocks = [&](auto nv, auto hb) {
            for (; h + hb.value <= nh; h += hb.value)
                accumulate_tile_heads<decltype(nv)::value, decltype(hb)::value>(n, p + h, corr + h, pv, acc_mem + h, h ? nullptr : pf);
        };
        using I1 = std::integral_constant<int, 1>;
        using I2 = std::integral_constant<int, 2>;
        using I4 = std::integral_constant<int, 4>;
        using I8 = std::integral_constant<int, 8>;
        switch (dim) {  // 16 / NV heads per block (64 floats: 4 heads, the latent's 128: 2)
            case 16: blocks(I1(), I8()); break;
            case 32: blocks(I2(), I8()); break;
            case 64: blocks(I4(), I4()); break;
            case 128: blocks(I8(), I2()); break;
        }
        if (h == 0 && pf) pf->ask_until(pf->total);
        for (; h < nh; h++) accumulate_rows(0, n, p[h], corr[h], [&](int t) { return pv[t]; }, acc_mem[h], dim);
    }

    // q . k over n floats for 4 keys at once, each sum in hsum16's fixed order (decoding's scores)
    static inline void dot4(const float* q, const float* k0, const float* k1, const float* k2, const float* k3, int n, float* out) {
        v16f a0 = {}, a1 = {}, a2 = {}, a3 = {};
        int i = 0;
        for (; i + 16 <= n; i += 16) {
            v16f qv = *(const v16f*)(q + i);
            a0 += qv * *(const v16f*)(k0 + i);
            a1 += qv * *(const v16f*)(k1 + i);
            a2 += qv * *(const v16f*)(k2 + i);
            a3 += qv * *(const v16f*)(k3 + i);
        }
        out[0] = hsum16(a0); out[1] = hsum16(a1); out[2] = hsum16(a2); out[3] = hsum16(a3);
        for (; i < n; i++) { out[0] += q[i] * k0[i]; out[1] += q[i] * k1[i]; out[2] += q[i] * k2[i]; out[3] += q[i] * k3[i]; }
    }

    // the same for a key in two parts (MLA: the latent, then the shared rope key): q[0:na] . a_j +
    // q2[0:nb] . b_j, one accumulator chain and one horizontal sum per key
    static inline void dot4x2(const float* q, const float* a0, const float* a1, const float* a2, const float* a3, int na, const float* q2,
                              const float* b0, const float* b1, const float* b2, const float* b3, int nb, float* out) {
        v16f c0 = {}, c1 = {}, c2 = {}, c3 = {};
        int i = 0;
        for (; i + 16 <= na; i += 16) {
            v16f qv = *(const v16f*)(q + i);
            c0 += qv * *(const v16f*)(a0 + i); c1 += qv * *(const v16f*)(a1 + i);
            c2 += qv * *(const v16f*)(a2 + i); c3 += qv * *(const v16f*)(a3 + i);
        }
        int k = 0;
        for (; k + 16 <= nb; k += 16) {
            v16f qv = *(const v16f*)(q2 + k);
            c0 += qv * *(const v16f*)(b0 + k); c1 += qv * *(const v16f*)(b1 + k);
            c2 += qv * *(const v16f*)(b2 + k); c3 += qv * *(const v16f*)(b3 + k);
        }
        out[0] = hsum16(c0); out[1] = hsum16(c1); out[2] = hsum16(c2); out[3] = hsum16(c3);
        for (; i < na; i++) { out[0] += q[i] * a0[i]; out[1] += q[i] * a1[i]; out[2] += q[i] * a2[i]; out[3] += q[i] * a3[i]; }
        for (; k < nb; k++) { out[0] += q2[k] * b0[k]; out[1] += q2[k] * b1[k]; out[2] += q2[k] * b2[k]; out[3] += q2[k] * b3[k]; }
    }

    // 16 keys' 16-lane partial dot products a[0..15] -> the 16 dot products in one vector, each
    // summed in exactly hsum16's tree (lanes i + 8, then i + 4, then i + 2, then i + 1), so the same
    // bits as 16 hsum16 calls in 45 vector ops instead of about 110: level by level, each pair of
    // vectors is halved and the halves joined. Lane l of the result holds key reduce16_key(l).
    static inline v16f reduce16(const v16f* a) {
        v16f r[8], s[4], t[2];
        for (int p = 0; p < 8; p++)
            r[p] = __builtin_shufflevector(a[2 * p], a[2 * p + 1], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
                   __builtin_shufflevector(a[2 * p], a[2 * p + 1], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
        for (int p = 0; p < 4; p++)
            s[p] = __builtin_shufflevector(r[2 * p], r[2 * p + 1], 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27) +
                   __builtin_shufflevector(r[2 * p], r[2 * p + 1], 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
        for (int p = 0; p < 2; p++)
            t[p] = __builtin_shufflevector(s[2 * p], s[2 * p + 1], 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29) +
                   __builtin_shufflevector(s[2 * p], s[2 * p + 1], 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31);
        return __builtin_shufflevector(t[0], t[1], 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30) +
               __builtin_shufflevector(t[0], t[1], 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    }
    // which key each lane of reduce16's result holds: found once by reducing key j's lanes set to
    // (j + 1) / 16, whose sums are exact
    static inline int reduce16_key(int lane) {
        static const std::vector<int> keys = [] {
            v16f a[16];
            for (int j = 0; j < 16; j++)
                for (int l = 0; l < 16; l++) a[j][l] = (float)(j + 1) / 16.0f;
            v16f r = reduce16(a);
            std::vector<int> k(16);
            for (int l = 0; l < 16; l++) k[l] = (int)r[l] - 1;
            return k;
        }();
        return keys[lane];
    }
    // scores of query qv against 16 keys (key j: pa[j][0:da] scored by qv[0:da], then pb[j][0:db]
    // by qv[da:da+db], one accumulator chain per key as dot4 / dot4x2 keep it), returned in one
    // vector whose lane l holds key reduce16_key(l)'s score: a caller that puts the key it wants in
    // lane l at pa[reduce16_key(l)] gets them in order, no scatter. da and db multiples of 16.
    // 16 accumulators + the q and key vectors: AVX-512's 32 registers
    static inline v16f dot16(const float* qv, const float* const* pa, int na, const float* const* pb, int nb) {
        v16f acc[16];
        for (int j = 0; j < 16; j++) acc[j] = (v16f){};
        for (int i = 0; i < na; i += 16) {
            const v16f q = *(const v16f*)(qv + i);
            for (int j = 0; j < 16; j++) acc[j] += q * *(const v16f*)(pa[j] + i);
        }
        for (int i = 0; i < nb; i += 16) {
            const v16f q = *(const v16f*)(qv + na + i);
            for (int j = 0; j < 16; j++) acc[j] += q * *(const v16f*)(pb[j] + i);
        }
        return reduce16(acc);
    }
    // reduce16 puts accumulator reduce16_key(l) in lane l: within each half, the bit reversal
    // of the lane's low 3 bits (the tree halves the vectors level by level). The same map as
    // reduce16_key's, at compile time (the test suite checks that the two agree).
    static constexpr int reduce16_acc(int lane) { return (lane & 8) | ((lane & 1) << 2) | (lane & 2) | ((lane & 4) >> 2); }
    // scores of 4 query heads (qv[h]) against 4 keys (key j: pa[j][0:na], then pb[j][0:nb]), lane
    // 4h + j of the result: each (head, key) pair gets dot16's FMAs in dot16's order and its
    // reduction, so the same bits. A key vector is loaded once for the 4 heads and a query vector
    // once for the 4 keys: 8 loads per 16 FMAs, where dot16 (one head at a time) takes 17 and its
    // 16 key pointers spill the general registers. 16 accumulators + 8 loaded vectors.
    static inline v16f dot4h4k(const float* const* qv, const float* const* pa, int na, const float* const* pb, int nb) {
        v16f acc[16];
        for (int j = 0; j < 16; j++) acc[j] = (v16f){};
        auto part = [&](const float* q0p, const float* q1p, const float* q2p, const float* q3p, const float* const* kp, int n) {
            const float *k0p = kp[0], *k1p = kp[1], *k2p = kp[2], *k3p = kp[3];
            for (int i = 0; i < n; i += 16) {
                v16f q0 = *(const v16f*)(q0p + i), q1 = *(const v16f*)(q1p + i), q2 = *(const v16f*)(q2p + i), q3 = *(const v16f*)(q3p + i);
                v16f k0 = *(const v16f*)(k0p + i), k1 = *(const v16f*)(k1p + i), k2 = *(const v16f*)(k2p + i), k3 = *(const v16f*)(k3p + i);
#if defined(__AVX512F__)
                // values the compiler cannot see into: it would otherwise load each again for
                // every FMA that uses it (32 loads per 16 FMAs, measured slower than dot16)
                asm("" : "+v"(q0), "+v"(q1), "+v"(q2), "+v"(q3), "+v"(k0), "+v"(k1), "+v"(k2), "+v"(k3));
#endif
                const v16f qh[4] = {q0, q1, q2, q3}, kj[4] = {k0, k1, k2, k3};
                for (int h = 0; h < 4; h++)
                    for (int j = 0; j < 4; j++) acc[reduce16_acc(4 * h + j)] += qh[h] * kj[j];
            }
        };
        part(qv[0], qv[1], qv[2], qv[3], pa, na);
        if (nb) part(qv[0] + na, qv[1] + na, qv[2] + na, qv[3] + na, pb, nb);
        return reduce16(acc);
    }
    // r[c] holds (head h, key 4c + j) in lane 4h + j; head h's 16 keys in order go to out[h]
    // (a 4 x 4 transpose of 128-bit blocks)
    static inline void heads_by_key(const v16f* r, v16f* out) {
        const v16f t0 = __builtin_shufflevector(r[0], r[1], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
        const v16f t1 = __builtin_shufflevector(r[0], r[1], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
        const v16f t2 = __builtin_shufflevector(r[2], r[3], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
        const v16f t3 = __builtin_shufflevector(r[2], r[3], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
        out[0] = __builtin_shufflevector(t0, t2, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27);
        out[1] = __builtin_shufflevector(t0, t2, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
        out[2] = __builtin_shufflevector(t1, t3, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27);
        out[3] = __builtin_shufflevector(t1, t3, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
    }
    // a scaled and biased score vector, s * scale + bias, as one FMA whatever the compiler would
    // fuse: left to itself it fuses either product (ALiBi's bias is slope * distance) depending on
    // the code around it, and the scoring paths must round alike
    static inline v16f scale_bias(v16f s, float scale, v16f bias) {
#if defined(__AVX512F__)
        return (v16f)_mm512_fmadd_ps((__m512)s, _mm512_set1_ps(scale), (__m512)bias);
#else
        v16f r;
        for (int l = 0; l < 16; l++) r[l] = fmaf(s[l], scale, bias[l]);
        return r;
#endif
    }
    // the largest lane, in a 4-level tree (a NaN lane may or may not win: a NaN score poisons the
    // softmax sum either way)
    static inline float hmax16(v16f v) {
        v16f s = __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7);
        v = s > v ? s : v;
        s = __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11);
        v = s > v ? s : v;
        s = __builtin_shufflevector(v, v, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
        v = s > v ? s : v;
        s = __builtin_shufflevector(v, v, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14);
        v = s > v ? s : v;
        return v[0];
    }
#if defined(__AVX512F__)
    static const bool DEC_DOT16 = true;
#else
    static const bool DEC_DOT16 = false;  // 16 accumulators would spill AVX2's 16 registers
#endif

    // decoding: n query rows, row i at position pos[i] of its own sequence, against the cache
    // of that sequence, which holds nkeys[i] slots for it: q rows (H heads of q_head floats) q_row
    // floats apart; stream_a(i, g), stream_b(i), stream_v(i, g) give slot 0 of row i's key /
    // value streams (KV head g), whose slot j < nkeys[i] is a_row, b_row, v_row floats further on,
    // and key_pos(i, j, g) the position of the token in that slot
    // (slot j holds position j until a press evicts tokens; ALiBi scores the true distance).
    // y (n, H, dv) rows y_row apart, heads y_head apart; lse_out (n, H), when given, gets each
    // head's log-sum-exp.
    // Split-K flash-decoding: the keys of a row are cut into chunks (dec_chunk); each (row, KV
    // head, chunk) is one work item, so one sequence at long context uses every core. An item walks
    // its keys in tiles of DEC_TILE, and every query head of the KV head's group (all heads for MLA's
    // latent) scores the tile while it is in L1: the cache is read from memory once per step,
    // not once per head. Each item keeps an online softmax (max, sum, weighted values) per head;
    // the chunks are merged by their maxima. A row's chunking depends on its own key count only,
    // so results do not depend on the thread count, nor a row's on the other rows of the call.
    // Chunks of 256 keys up to 2048 keys (8 chunks or more per KV head, so one sequence keeps
    // every core busy), then 512, then 1024 past 4096 keys: each chunk starts its streams cold,
    // and at 8k keys 1024-key chunks made the attention 1.03-1.1x faster than 256-key ones.
    // The items are dealt to the threads in contiguous runs (schedule static), so a thread walks
    // a sequence's chunks in order and the hardware prefetcher's streams carry on across them
    // (dealt one at a time, the two threads leapfrogged each other's chunks: 1.2-1.3x slower at
    // 8k, batch 8; docs/benchmarks.md, "Decode, fourth round").
    static const int DEC_TILE = 32;
    static inline int dec_chunk(int nkeys) {
        int c = 256;
        while (c < 1024 && nkeys > 8 * c) c *= 2;
        return c;
    }
    template <typename KA, typename KB, typename VV, typename KP>
    void decode_rows(int n, const int* pos, const int* nkeys, const float* q, long q_row, long q_head, KA stream_a, long a_row, KB stream_b, long b_row,
                     VV stream_v, long v_row, KP key_pos, float* y, long y_row, long y_head, float* lse_out = nullptr) const {
        ProfScope prof(PROF_ATTENTION);
        const int G = H / group, part_floats = dv + 2;
        std::vector<long> base(n + 1, 0);  // first work item of row i
        for (int i = 0; i < n; i++) {
            base[i + 1] = base[i] + (long)G * ((nkeys[i] - 1) / dec_chunk(nkeys[i]) + 1);
            prof_macs(PROF_ATTENTION, (double)H * nkeys[i] * (da + db + dv));  // every head: each key's score and weighted value
        }
        std::vector<float> part((size_t)base[n] * group * part_floats);
        int key_lane[16];  // dot16's lane that scores the j-th key of a 16-key block
        for (int l = 0; l < 16; l++) key_lane[reduce16_key(l)] = l;
        // work item it: its row i, KV head g, and keys [k0, k1)
        struct Item { int i, g, k0, k1; };
        auto item = [&](long it) {
            Item e;
            e.i = (int)(std::upper_bound(base.begin(), base.end(), it) - base.begin()) - 1;
            const int chunk = dec_chunk(nkeys[e.i]), nc = (nkeys[e.i] - 1) / chunk + 1;
            e.g = (int)((it - base[e.i]) / nc);
            e.k0 = (int)((it - base[e.i]) % nc) * chunk;
            e.k1 = std::min(nkeys[e.i], e.k0 + chunk);
            return e;
        };
        // an item's cache rows [p0, p1) to prefetch, key by key: its key rows (both parts), then its value row
        auto item_rows = [&](const Item& e, int p0, int p1) {
            RowPrefetch l;
            const float* a0 = stream_a(e.i, e.g);
            const float* v0 = stream_v(e.i, e.g);
            l.add(a0 + (long)p0 * a_row, a_row, da);
            if (db) l.add(stream_b(e.i) + (long)p0 * b_row, b_row, db);
            if (v0 != a0) l.add(v0 + (long)p0 * v_row, v_row, dv);
            l.total = std::max(0, p1 - p0);
            return l;
        };
        #pragma omp parallel
        {
            long warmed = -1;  // the item whose first tile this thread asked for during the item before it
            // per head of the group: the tile's scores (then probabilities), its softmax correction,
            // its tile maximum, where its weighted values accumulate (the item's part)
            std::vector<float> hsc((size_t)group * DEC_TILE), hcorr(group), hbm(group);
            std::vector<const float*> hp(group);
            std::vector<float*> hacc(group);
            for (int hh = 0; hh < group; hh++) hp[hh] = &hsc[(size_t)hh * DEC_TILE];
            #pragma omp for schedule(static)
            for (long it = 0; it < base[n]; it++) {
                const Item e = item(it);
                const int i = e.i, g = e.g, t = pos[i], k0 = e.k0, k1 = e.k1;
                float* pp = &part[(size_t)it * group * part_floats];
                for (int hh = 0; hh < group; hh++) {
                    float* ph = pp + (size_t)hh * part_floats;
                    ph[0] = -INFINITY;
                    ph[1] = 0.0f;
                    for (int k = 0; k < dv; k++) ph[2 + k] = 0.0f;
                }
                for (int hh = 0; hh < group; hh++) hacc[hh] = pp + (size_t)hh * part_floats + 2;
                // row j of this item's streams, by pointer arithmetic from their slot 0
                const float* const a0 = stream_a(i, g);
                const float* const b0p = db ? stream_b(i) : nullptr;
                const float* const v0 = stream_v(i, g);
                auto ka = [=](int j) { return a0 + (long)j * a_row; };
                auto kb = [=](int j) { return b0p + (long)j * b_row; };
                auto kv = [=](int j) { return v0 + (long)j * v_row; };
                // Software prefetch: an item's first tile is asked for during the last tile of the
                // item before it (or at once, where this thread did not run that item); every later tile's
                // are asked for while the tile before it is worked on, a row or two at a time spread
                // evenly over that work (3/4 of them before the heads' 16-key score blocks, the rest
                // among the value loop's keys; into L2, see RowPrefetch), so the loads in flight
                // overlap the FMAs instead of waiting in a burst: a burst at the tile's start keeps the
                // core waiting on it, and nothing is in flight while the tile's FMAs run (the memory
                // time and the compute time add up).
                // Measured on the 2-core AMD EPYC, attention alone at 8k (docs/benchmarks.md): batch 8
                // MQA 1.2x, GQA 1.2x, MHA 1.15x, MLA 1.1x faster than asking in the value loop alone
                // (MQA, GQA) or in a burst (MLA, MHA); with none at all, one thread read MHA's cache
                // at 13 GB/s, the scores waiting on one key's lines at a time. Asking for the next
                // item's first tile instead of starting each item cold: 1.07-1.14x at 2k keys, 1.0-1.08x
                // at 8k (bench_attend, medians of 6 interleaved rounds, docs/benchmarks.md ninth round).
                auto rows = [&](int p0, int p1) { return item_rows(e, p0, p1); };
                const bool by16 = DEC_DOT16 && da % 16 == 0 && db % 16 == 0;
                const int h4 = by16 ? group / 4 * 4 : 0;  // heads scored four at a time, the rest one at a time
                for (int b0 = k0; b0 < k1; b0 += DEC_TILE) {
                    const int b1 = std::min(k1, b0 + DEC_TILE);
                    if (b0 == k0 && warmed != it) {
                        RowPrefetch first = rows(b0, b1);
                        first.ask_until(first.total);
                    }
                    // the next tile's rows; during an item's last tile, the next item's first tile
                    // (this thread's next, but at the end of its run of items: they are dealt in
                    // contiguous runs)
                    RowPrefetch pf;
                    if (b1 < k1) {
                        pf = rows(b1, std::min(k1, b1 + DEC_TILE));
                    } else if (it + 1 < base[n]) {
                        const Item nx = item(it + 1);
                        pf = item_rows(nx, nx.k0, std::min(nx.k1, nx.k0 + DEC_TILE));
                        warmed = it + 1;
                    }
                    // rows asked for in the score loop (by16 only: spread evenly over the heads' 16-key
                    // blocks, by four keys)
                    const int n_score = by16 ? pf.total * 3 / 4 : 0, blocks = group * ((b1 - b0 + 15) / 16);
                    int block_at = 0;  // (head, 16-key block) pairs begun
                    // the biases of head h for the tile's keys j0 .. j0 + 15 (past b1: its last key's)
                    auto bias16 = [&](int h, int j0) {
                        v16f bv = {};
                        if (slopes)
                            for (int l = 0; l < 16; l++) bv[l] = bias(h, t, key_pos(i, std::min(b0 + j0 + l, b1 - 1), g));
                        return bv;
                    };
                    // the tile's key rows, fetched once for all heads of the group (the last 16-key
                    // block repeats the tile's last key)
                    const float* pa[DEC_TILE];
                    const float* pb[DEC_TILE];
                    const float* pv[DEC_TILE];  // the tile's value rows, found once for all heads
                    for (int j = 0; j < b1 - b0; j++) pv[j] = kv(b0 + j);
                    // in dot16's lane order (its lane l scores key b0 + j0 + l), filled in the order
                    // stored: the compiler made the permuted stores an AVX-512 scatter, slow on AMD
                    if (by16 && h4 < group)
                        for (int j0 = 0; j0 < DEC_TILE; j0 += 16)
                            for (int j = 0; j < 16; j++) {
                                const int t2 = std::min(b0 + j0 + key_lane[j], b1 - 1);
                                pa[j0 + j] = ka(t2);
                                pb[j0 + j] = db ? kb(t2) : nullptr;
                            }
                    // the group's heads four at a time (dot4h4k): their scores, scaled and biased,
                    // into hsc, and each head's tile maximum into hbm
                    for (int h0 = 0; h0 < h4; h0 += 4) {
                        const float* qh[4];
                        for (int c = 0; c < 4; c++) qh[c] = q + i * q_row + (g * group + h0 + c) * q_head;
                        v16f mv[4];
                        for (int c = 0; c < 4; c++) mv[c] = (v16f){} - INFINITY;
                        for (int j0 = 0; j0 < b1 - b0; j0 += 16) {
                            v16f r[4], s4[4];
                            for (int c = 0; c < 4; c++) {  // keys j0 + 4c .. + 3 (past b1: the tile's last key again)
                                pf.ask_until(++block_at * n_score / blocks);
                                const float* ka4[4];
                                const float* kb4[4];
                                for (int j = 0; j < 4; j++) {
                                    const int t2 = std::min(b0 + j0 + 4 * c + j, b1 - 1);
                                    ka4[j] = ka(t2);
                                    kb4[j] = db ? kb(t2) : nullptr;
                                }
                                r[c] = dot4h4k(qh, ka4, da, kb4, db);
                            }
                            heads_by_key(r, s4);
                            for (int c = 0; c < 4; c++) {
                                const v16f sv = scale_bias(s4[c], scale, bias16(g * group + h0 + c, j0));
                                *(v16f*)(&hsc[(size_t)(h0 + c) * DEC_TILE] + j0) = sv;
                                mv[c] = sv > mv[c] ? sv : mv[c];
                            }
                        }
                        for (int c = 0; c < 4; c++) hbm[h0 + c] = hmax16(mv[c]);
                    }
                    for (int hh = 0; hh < group; hh++) {
                        const int h = g * group + hh;
                        const float* qv = q + i * q_row + h * q_head;
                        float* ph = pp + (size_t)hh * part_floats;
                        float* sc = &hsc[(size_t)hh * DEC_TILE];
                        float bm = -INFINITY;
                        int t2 = b0;
                        if (hh < h4) {
                            bm = hbm[hh];
                            t2 = b1;
                        } else if (by16) {  // scores, scale, bias and the tile's max in vectors (lanes past b1 repeat its last key)
                            v16f mv = (v16f){} - INFINITY;
                            for (int j0 = 0; j0 < b1 - b0; j0 += 16) {
                                pf.ask_until(++block_at * n_score / blocks);
                                const v16f s = scale_bias(dot16(qv, pa + j0, da, pb + j0, db), scale, bias16(h, j0));
                                *(v16f*)(sc + j0) = s;
                                mv = s > mv ? s : mv;
                            }
                            bm = hmax16(mv);
                            t2 = b1;
                        }
                        for (; t2 < b1; t2 += 4) {  // 4 keys at a time (the last block repeats its last key)
                            const int u1 = std::min(t2 + 1, b1 - 1), u2 = std::min(t2 + 2, b1 - 1), u3 = std::min(t2 + 3, b1 - 1);
                            float s4[4];
                            if (db) dot4x2(qv, ka(t2), ka(u1), ka(u2), ka(u3), da, qv + da,
                                           kb(t2), kb(u1), kb(u2), kb(u3), db, s4);
                            else dot4(qv, ka(t2), ka(u1), ka(u2), ka(u3), da, s4);
                            for (int j = 0; j < 4 && t2 + j < b1; j++) {
                                sc[t2 + j - b0] = s4[j] * scale + (slopes ? bias(h, t, key_pos(i, t2 + j, g)) : 0.0f);
                                bm = fmaxf(bm, sc[t2 + j - b0]);
                            }
                        }
                        // fmaxf(ph[0], bm) inline (a libm call otherwise, NaN rules kept), and no
                        // expf where the maximum did not move, which is most tiles: expf(0) is 1 exactly
                        const float m_new = (bm > ph[0] || ph[0] != ph[0]) ? bm : ph[0];
                        const float corr = m_new == ph[0] ? 1.0f : expf(ph[0] - m_new);
                        ph[1] = ph[1] * corr + block_exp(sc, b1 - b0, m_new);
                        ph[0] = m_new;
                        hcorr[hh] = corr;
                    }
                    // the weighted values of every head of the group, each value row loaded once per
                    // block of heads (MQA's batch-8 attention ~1.2x on the 2-core AMD EPYC)
                    accumulate_group(group, b1 - b0, hp.data(), hcorr.data(), pv, hacc.data(), dv, &pf);
                }
            }
        }
        // merge each head's chunks by their maxima
        #pragma omp parallel for collapse(2) schedule(static)
        for (int i = 0; i < n; i++)
            for (int h = 0; h < H; h++) {
                const int nc = (nkeys[i] - 1) / dec_chunk(nkeys[i]) + 1, g = h / group, hh = h % group;
                auto chunk = [&](int c) { return &part[((size_t)(base[i] + (long)g * nc + c) * group + hh) * part_floats]; };
                float M = -INFINITY;
                for (int c = 0; c < nc; c++) M = fmaxf(M, chunk(c)[0]);
                float l = 0.0f;
                float* yv = y + i * y_row + h * y_head;
                for (int k = 0; k < dv; k++) yv[k] = 0.0f;
                for (int c = 0; c < nc; c++) {
                    const float* ph = chunk(c);
                    const float w = expf(ph[0] - M);
                    l += ph[1] * w;
                    for (int k = 0; k < dv; k++) yv[k] += w * ph[2 + k];
                }
                const float inv = 1.0f / l;
                for (int k = 0; k < dv; k++) yv[k] *= inv;
                if (lse_out) lse_out[(long)i * H + h] = M + logf(l);
            }
    }
};
