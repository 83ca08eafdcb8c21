// kv_cache.h: the decode-time KV cache every attention variant keeps, built so tokens can be
// evicted from it (attention/press.h) and the memory really freed.
// A cache holds n_seq sequences; each has `heads` independent streams (the GQA family: one per
// KV head; MLA: one, the latent; MKA: level 1's heads), and every stream of a sequence holds the
// same number of slots, len[s] (kvpress's rule: each KV head keeps as many tokens; which tokens
// may differ per head). A slot holds one token's key (part a per stream, part b: MLA's rope key),
// its value (or none: MLA's value is the latent, part a) and the position the token had, so a RoPE
// key keeps the rotation it was cached with and ALiBi scores the original distance.
// Slots stay in position order (appended in order, compacted in order by keep()), and with no
// eviction slot j holds position j: decoding is then bitwise what it was without eviction.
// The press observation state (what the scoring functions read: recent queries, query moments,
// accumulated attention) lives here too, recorded by attend() only when a press asks for it.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>
#include "../llmc/utils.h"
#include "core.h"
#include "position.h"

struct KVCache {
    int n_seq = 0, heads = 0, cap = 0;  // sequences; streams per sequence; slots per stream
    int wa = 0, wb = 0, wv = 0;          // floats per slot: key part a, key part b, value (0: the value is part a)
    avec<float> a, b, v;                 // (n_seq, heads, cap, w), 64-byte aligned (llmc/utils.h)
    std::vector<int> pos;                // (n_seq, heads, cap): the position of each slot's token
    std::vector<int> len;                // slots held per sequence (every stream holds as many)

    // ---- press observation (filled by attend() while obs_* are set; press.h reads it) ----
    int obs_window = 0;         // keep the scoring-form queries of the last obs_window rows per sequence
    bool obs_stats = false;     // accumulate the mean and covariance of the un-rotated queries (rows at pos >= obs_skip)
    bool obs_attn = false;      // accumulate every slot's attention (mean over the query heads of its stream)
    int obs_skip = 4;           // rows before this position stay out of the query moments (attention sinks)
    const Rope* rope = nullptr; // the rotation applied to dims [rot_off, rot_off + rope->rot) of a query
    int rot_off = 0;
    int qH = 0, dq = 0;         // query heads, and floats per query head in scoring form (wa + wb)
    std::vector<float> qwin;    // (n_seq, obs_window, qH, dq) ring of recent queries
    std::vector<int> qwin_pos, qwin_n;  // (n_seq, obs_window) their positions; rows recorded per sequence
    std::vector<double> qsum, qcov;     // (n_seq, qH, dq) and (n_seq, qH, dq, dq): sums of q and q q^T
    std::vector<long> qcnt;             // (n_seq) rows in the sums
    std::vector<float> attn_sum;        // (n_seq, heads, cap) accumulated attention
    std::vector<int> last_pos;          // (n_seq) position of the last row attended

    void init(int n_seq_, int heads_, int cap_, int wa_, int wb_, int wv_) {
        n_seq = n_seq_; heads = heads_; wa = wa_; wb = wb_; wv = wv_;
        cap = 0;
        a.clear(); b.clear(); v.clear(); pos.clear(); attn_sum.clear();
        len.assign(n_seq, 0);
        last_pos.assign(n_seq, -1);
        obs_window = 0; obs_stats = obs_attn = false;
        qwin.clear(); qwin_pos.clear(); qwin_n.assign(n_seq, 0); qsum.clear(); qcov.clear(); qcnt.assign(n_seq, 0);
        resize(cap_);
    }
    long off(int s, int h, int j) const { return ((long)s * heads + h) * cap + j; }
    float* ka(int s, int h, int j) { return a.data() + off(s, h, j) * wa; }
    float* kb(int s, int h, int j) { return b.data() + off(s, h, j) * wb; }
    float* val(int s, int h, int j) { return wv ? v.data() + off(s, h, j) * wv : ka(s, h, j); }
    const float* ka(int s, int h, int j) const { return a.data() + off(s, h, j) * wa; }
    const float* kb(int s, int h, int j) const { return b.data() + off(s, h, j) * wb; }
    const float* val(int s, int h, int j) const { return wv ? v.data() + off(s, h, j) * wv : ka(s, h, j); }
    int slot_pos(int s, int h, int j) const { return pos[off(s, h, j)]; }
    size_t floats_per_token() const { return (size_t)heads * (wa + wb + wv); }
    // bytes of the K/V buffers as allocated (what the cache really holds), and of the position index
    size_t bytes() const { return sizeof(float) * (a.capacity() + b.capacity() + v.capacity()); }
    size_t index_bytes() const { return sizeof(int) * pos.capacity(); }

    // reallocates every buffer for new_cap slots per stream (>= every len): shrinking frees memory
    void resize(int new_cap) {
        for (int s = 0; s < n_seq; s++)
            if (len[s] > new_cap) fail("internal: KV cache resize to %d slots below the %d held", new_cap, len[s]);
        auto move = [&](avec<float>& buf, int w) {
            avec<float> nb((size_t)n_seq * heads * new_cap * w, 0.0f);
            for (int s = 0; s < n_seq; s++)
                for (int h = 0; h < heads; h++)
                    if (len[s] && w) memcpy(&nb[(((size_t)s * heads + h) * new_cap) * w], &buf[(size_t)off(s, h, 0) * w], sizeof(float) * len[s] * w);
            buf.swap(nb);  // the old buffer is freed here
        };
        move(a, wa);
        move(b, wb);
        move(v, wv);
        std::vector<int> np((size_t)n_seq * heads * new_cap, 0);
        std::vector<float> ns(obs_attn ? np.size() : 0, 0.0f);
        for (int s = 0; s < n_seq; s++)
            for (int h = 0; h < heads; h++)
                for (int j = 0; j < len[s]; j++) {
                    np[((size_t)s * heads + h) * new_cap + j] = pos[off(s, h, j)];
                    if (obs_attn && !attn_sum.empty()) ns[((size_t)s * heads + h) * new_cap + j] = attn_sum[off(s, h, j)];
                }
        pos.swap(np);
        attn_sum.swap(ns);
        cap = new_cap;
    }

    // a token at position p joins sequence s; returns its slot (the same in every stream)
    int append(int s, int p) {
        if (len[s] >= cap) fail("internal: KV cache of sequence %d is full (%d slots)", s, cap);
        int j = len[s]++;
        for (int h = 0; h < heads; h++) {
            pos[off(s, h, j)] = p;
            if (obs_attn) attn_sum[off(s, h, j)] = 0.0f;
        }
        return j;
    }

    // stream h of sequence s keeps the slots kept[h * n_kept .. (h + 1) * n_kept), each list
    // ascending; they move to the front in order, so positions stay sorted
    void keep(int s, const std::vector<int>& kept, int n_kept) {
        for (int h = 0; h < heads; h++) {
            const int* k = &kept[(size_t)h * n_kept];
            for (int i = 0; i < n_kept; i++) {
                const int j = k[i];
                if (j < 0 || j >= len[s] || (i && j <= k[i - 1])) fail("internal: press kept slot %d out of order or range", j);
                if (j == i) continue;
                memcpy(ka(s, h, i), ka(s, h, j), sizeof(float) * wa);
                if (wb) memcpy(kb(s, h, i), kb(s, h, j), sizeof(float) * wb);
                if (wv) memcpy(val(s, h, i), val(s, h, j), sizeof(float) * wv);
                pos[off(s, h, i)] = pos[off(s, h, j)];
                if (obs_attn) attn_sum[off(s, h, i)] = attn_sum[off(s, h, j)];
            }
        }
        len[s] = n_kept;
    }

    // starts (or stops) recording what a press reads; qH query heads, the scoring query's rotated dims
    void observe(int window, bool stats, bool attn, int qH_, const Rope* r, int r_off) {
        obs_window = window; obs_stats = stats; obs_attn = attn; qH = qH_; dq = wa + wb; rope = r; rot_off = r_off;
        qwin.assign((size_t)n_seq * window * qH * dq, 0.0f);
        qwin_pos.assign((size_t)n_seq * window, -1);
        qwin_n.assign(n_seq, 0);
        qsum.assign(stats ? (size_t)n_seq * qH * dq : 0, 0.0);
        qcov.assign(stats ? (size_t)n_seq * qH * dq * dq : 0, 0.0);
        qcnt.assign(n_seq, 0);
        attn_sum.assign(attn ? (size_t)n_seq * heads * cap : 0, 0.0f);
    }
    // the k-th most recent recorded query of sequence s (k = 0: the last), head h, and its position
    const float* recent_query(int s, int k, int h, int* p) const {
        int n = qwin_n[s], idx = ((n - 1 - k) % obs_window + obs_window) % obs_window;
        *p = qwin_pos[(size_t)s * obs_window + idx];
        return &qwin[(((size_t)s * obs_window + idx) * qH + h) * dq];
    }
    int recent_queries(int s) const { return std::min(qwin_n[s], obs_window); }

    // Row i (sequence seq[i], position qpos[i], its own token already appended at slot
    // nkeys[i] - 1) attends to slots [0, nkeys[i]) of its sequence: q rows in scoring form (qH
    // heads of wa + wb floats: part a scores ka, part b scores kb), y (n, qH, dv) out.
    void attend(const AttnCore& core, int n, const int* seq, const int* qpos, const int* nkeys, const float* q, long q_row, long q_head,
                float* y, long y_row, long y_head, float* lse_out = nullptr) {
        std::vector<float> lse_own;
        if (obs_attn && !lse_out) { lse_own.resize((size_t)n * core.H); lse_out = lse_own.data(); }
        const KVCache* c = this;
        core.decode_rows(n, qpos, nkeys, q, q_row, q_head, [=](int i, int g) { return c->ka(seq[i], g, 0); }, wa,
                         [=](int i) { return c->kb(seq[i], 0, 0); }, wb, [=](int i, int g) { return c->val(seq[i], g, 0); }, wv ? wv : wa,
                         [=](int i, int j, int g) { return c->slot_pos(seq[i], g, j); }, y, y_row, y_head, lse_out);
        if (obs_window || obs_stats || obs_attn) record(core, n, seq, qpos, nkeys, q, q_row, q_head, lse_out);
    }

    void record(const AttnCore& core, int n, const int* seq, const int* qpos, const int* nkeys, const float* q, long q_row, long q_head,
                const float* lse) {
        std::vector<float> u(dq);
        for (int i = 0; i < n; i++) {
            const int s = seq[i];
            last_pos[s] = qpos[i];
            if (obs_window) {
                int idx = qwin_n[s]++ % obs_window;
                qwin_pos[(size_t)s * obs_window + idx] = qpos[i];
                for (int h = 0; h < qH; h++) memcpy(&qwin[(((size_t)s * obs_window + idx) * qH + h) * dq], q + i * q_row + h * q_head, sizeof(float) * dq);
            }
            if (obs_stats && qpos[i] >= obs_skip) {
                qcnt[s]++;
                for (int h = 0; h < qH; h++) {
                    memcpy(u.data(), q + i * q_row + h * q_head, sizeof(float) * dq);
                    if (rope && rope->rot) rope->apply(u.data() + rot_off, qpos[i], true);  // back to the un-rotated query
                    double* ms = &qsum[((size_t)s * qH + h) * dq];
                    double* cv = &qcov[((size_t)s * qH + h) * dq * dq];
                    #pragma omp parallel for schedule(static) if (dq >= 64)
                    for (int x = 0; x < dq; x++) {
                        ms[x] += u[x];
                        for (int z = 0; z < dq; z++) cv[(size_t)x * dq + z] += (double)u[x] * u[z];
                    }
                }
            }
            if (obs_attn) {  // h2o: every held slot gets this row's attention, p = exp(score - lse)
                const int group = core.group, nk = nkeys[i];
                #pragma omp parallel for schedule(static)
                for (int j = 0; j < nk; j++)
                    for (int g = 0; g < heads; g++) {
                        float acc = 0.0f;
                        for (int hh = 0; hh < group; hh++) {
                            const int h = g * group + hh;
                            const float* qv = q + i * q_row + h * q_head;
                            float sc = core.score(qv, ka(s, g, j), wb ? kb(s, g, j) : nullptr) + core.bias(h, qpos[i], slot_pos(s, g, j));
                            acc += expf(sc - lse[(long)i * core.H + h]);
                        }
                        attn_sum[off(s, g, j)] += acc / group;
                    }
            }
        }
    }
};
