// eval.h: what ./eval_gpt measures, as functions the tests call directly.
//  - the leak guard: a cheap causal-leak probe run before any perplexity is printed
//  - perplexity protocols: (a) disjoint windows, (b) HF-style strided sliding window (only the
//    new tokens of each window are scored), (c) lm-eval rolling windows per document with
//    word / byte perplexity and bits per byte
//  - position-wise NLL buckets and the length-extrapolation curve
//  - the reversal curse (Berglund et al.'s answer log-likelihoods), Q/K statistics with RoPE frequency bands, KV-cache memory
// The forward-only protocols take any LM with GPT's cfg, forward(in, targets, B, T), logits and
// losses: the CPU GPT, or the device model (CudaLM, llmc/cuda_model.h) for eval_gpt -d cuda.
// All NLLs are natural-log sums in double; PPL = exp(sum / count). Each long loop reports its
// progress (done / total, tokens/s, ETA) at most every 10 s (runinfo.h's Progress).
#pragma once
#include <cmath>
#include <memory>
#include <string>
#include <vector>
#include "model.h"
#include "runinfo.h"

struct NLL {
    double sum = 0.0;
    long n = 0;
    void add(double x) { sum += x; n++; }
    double mean() const { return n ? sum / n : NAN; }
    double ppl() const { return n ? exp(sum / n) : NAN; }
};

// ---------------------------------------------------------------------------------------------
// leak guard: random tokens; for several cut points, change every token after the cut and
// demand bitwise-identical logits up to the cut. Returns true when the model is causal. The cut
// points sit on both sides of the attention core's 64-key block edges, so T > 128 crosses two.
template <class LM>
static bool leak_check(LM& m, int T, uint64_t seed, std::string* why) {
    Rng rng(seed);
    int V = m.cfg.vocab_size, Vp = m.cfg.padded_vocab_size;
    std::vector<int> tok(T), t2(T);
    for (int& t : tok) t = (int)rng.below(V);
    m.forward(tok.data(), nullptr, 1, T);
    std::vector<float> ref(m.logits, m.logits + (size_t)T * Vp);
    for (int cut : {0, T / 3, T / 2, 63, 64, 127, 128, T - 2}) {
        if (cut < 0 || cut >= T - 1) continue;
        t2 = tok;
        for (int t = cut + 1; t < T; t++) t2[t] = (tok[t] + 1 + (int)rng.below(V - 1)) % V;
        m.forward(t2.data(), nullptr, 1, T);
        if (memcmp(ref.data(), m.logits, sizeof(float) * (size_t)(cut + 1) * Vp) != 0) {
            if (why) *why = "logits at positions <= " + std::to_string(cut) + " changed when only tokens after it changed";
            return false;
        }
    }
    return true;
}

// ---------------------------------------------------------------------------------------------
// (a) disjoint windows: inputs toks[s .. s+T), targets toks[s+1 .. s+T], s = 0, T, 2T, ...
// per_pos (T entries, optional) collects the NLL at each position in the window.
template <class LM>
static NLL ppl_disjoint(LM& m, const std::vector<int>& toks, int T, int B, long max_windows, std::vector<NLL>* per_pos) {
    NLL r;
    if (per_pos) per_pos->assign(T, NLL());
    long n_win = ((long)toks.size() - 1) / T;
    if (max_windows > 0) n_win = std::min(n_win, max_windows);
    std::vector<int> in((size_t)B * T), tg((size_t)B * T);
    Progress prog;
    prog.begin("disjoint", "windows", n_win);
    for (long w0 = 0; w0 < n_win; w0 += B) {
        int nb = (int)std::min<long>(B, n_win - w0);
        for (int b = 0; b < nb; b++)
            for (int t = 0; t < T; t++) {
                in[(size_t)b * T + t] = toks[(size_t)(w0 + b) * T + t];
                tg[(size_t)b * T + t] = toks[(size_t)(w0 + b) * T + t + 1];
            }
        m.forward(in.data(), tg.data(), nb, T);
        for (int b = 0; b < nb; b++)
            for (int t = 0; t < T; t++) {
                double l = m.losses[(size_t)b * T + t];
                r.add(l);
                if (per_pos) (*per_pos)[t].add(l);
            }
        prog.update(w0 + nb, (double)r.n);
    }
    return r;
}

// (b) HF-style strided sliding window of W tokens moved by S: every target is scored once, in
// the first window that contains it as a new token, so all but the first W have >= W - S context.
template <class LM>
static NLL ppl_sliding(LM& m, const std::vector<int>& toks, int W, int S, long max_tokens) {
    NLL r;
    long N = (long)toks.size();
    if (max_tokens > 0) N = std::min(N, max_tokens + 1);
    long scored_end = 0;  // targets with index < scored_end (token index, >= 1) are done
    std::vector<int> in(W), tg(W);
    Progress prog;
    prog.begin("sliding", "targets", N - 1);
    for (long begin = 0; scored_end < N - 1; begin += S) {
        long end = std::min(begin + W, N - 1);  // inputs [begin, end), targets [begin+1, end]
        int len = (int)(end - begin);
        for (int t = 0; t < len; t++) {
            in[t] = toks[begin + t];
            long target_index = begin + t + 1;
            tg[t] = target_index > scored_end ? toks[target_index] : -1;  // only the new tokens
        }
        m.forward(in.data(), tg.data(), 1, len);
        for (int t = 0; t < len; t++)
            if (tg[t] >= 0) r.add(m.losses[t]);
        scored_end = end;
        prog.update(scored_end, (double)r.n);
        if (end >= N - 1) break;
    }
    return r;
}

// (c) lm-eval rolling windows over one document of n tokens, with end-of-text as the first
// context: window 1 predicts doc[0 .. W) from [eos] + doc[0 .. W-1); later windows predict the
// next up to W tokens, each from the W tokens before it (disjoint predictions, full context).
template <class LM>
static NLL ppl_rolling_document(LM& m, const int* doc, long n, int W, int eos) {
    NLL r;
    std::vector<int> in(W), tg(W);
    long predicted = 0;
    while (predicted < n) {
        long pred = std::min<long>(W, n - predicted);
        long win_end = predicted + pred;               // predict doc[predicted .. win_end)
        long ctx_start = std::max<long>(-1, win_end - W - 1);  // -1 stands for the eos prefix
        int len = (int)(win_end - 1 - ctx_start);      // inputs doc[ctx_start .. win_end-1)
        for (int t = 0; t < len; t++) {
            long i = ctx_start + t;
            in[t] = i < 0 ? eos : doc[i];
            long target_index = i + 1;
            tg[t] = target_index >= predicted ? doc[target_index] : -1;
        }
        m.forward(in.data(), tg.data(), 1, len);
        for (int t = 0; t < len; t++)
            if (tg[t] >= 0) r.add(m.losses[t]);
        predicted = win_end;
    }
    return r;
}

struct WikiDoc {
    long offset, n_tokens, words, bytes;
    std::string title;
};
struct WikiResult {
    NLL tokens;
    long words = 0, bytes = 0;
    double word_ppl() const { return exp(tokens.sum / words); }
    double byte_ppl() const { return exp(tokens.sum / bytes); }
    double bits_per_byte() const { return tokens.sum / bytes / log(2.0); }
};
template <class LM>
static WikiResult ppl_wikitext(LM& m, const std::vector<int>& toks, const std::vector<WikiDoc>& docs, int W, int eos, int max_docs) {
    WikiResult r;
    int n = 0;
    Progress prog;
    prog.begin("wikitext", "documents", max_docs > 0 ? std::min<long>(max_docs, (long)docs.size()) : (long)docs.size());
    for (const WikiDoc& d : docs) {
        if (max_docs > 0 && n >= max_docs) break;
        n++;
        NLL x = ppl_rolling_document(m, toks.data() + d.offset, d.n_tokens, W, eos);
        r.tokens.sum += x.sum;
        r.tokens.n += x.n;
        r.words += d.words;
        r.bytes += d.bytes;
        prog.update(n, (double)r.tokens.n);
    }
    return r;
}

// ---------------------------------------------------------------------------------------------
// position buckets: edges e0 < e1 < ... ; bucket i holds positions [e_i, e_{i+1}), the last
// bucket runs to T. Returns the bucket of a position, or -1 before the first edge.
static int bucket_of(const std::vector<int>& edges, int pos) {
    int b = -1;
    for (size_t i = 0; i < edges.size(); i++)
        if (pos >= edges[i]) b = (int)i;
    return b;
}
static std::vector<NLL> bucketize(const std::vector<NLL>& per_pos, const std::vector<int>& edges) {
    std::vector<NLL> out(edges.size());
    for (int t = 0; t < (int)per_pos.size(); t++) {
        int b = bucket_of(edges, t);
        if (b < 0) continue;
        out[b].sum += per_pos[t].sum;
        out[b].n += per_pos[t].n;
    }
    return out;
}

// ---------------------------------------------------------------------------------------------
// reversal curse, as Berglund et al. measure it: the log-likelihood of the correct answer
// entity given a prompt, against the same for the other answers of its relation in its own half
// (entities the model saw as often: an unseen entity would lose anyway, so comparing with
// held-out facts' answers alone measures exposure, not knowledge). margin = LL(correct) - the
// mean LL of those distractors; accuracy = the share of facts whose correct answer beats every
// distractor. For the trained facts (forward sentences in the training data) and the held-out
// ones, forward and reversed: the forward gain (trained - held-out margin) shows the facts were
// learned; the reversed gain is the curse's measure (about 0 when the model cannot reverse).
struct ReversalFact {
    bool trained;
    std::string relation;
    std::vector<int> fwd_prompt, fwd_answer, rev_prompt, rev_answer;
};
// log p(answer | [eos] + prompt), natural log, summed over the answer's tokens
template <class LM>
static double answer_loglik(LM& m, const std::vector<int>& prompt, const std::vector<int>& answer, int eos) {
    std::vector<int> in = {eos}, tg;
    in.insert(in.end(), prompt.begin(), prompt.end());
    in.insert(in.end(), answer.begin(), answer.end() - 1);
    tg.assign(in.size(), -1);
    for (size_t i = 0; i < answer.size(); i++) tg[prompt.size() + i] = answer[i];
    m.forward(in.data(), tg.data(), 1, (int)in.size());
    double s = 0.0;
    for (size_t i = 0; i < answer.size(); i++) s -= m.losses[prompt.size() + i];
    return s;
}
struct ReversalScore {  // one half (trained or held-out) in one direction; means over its facts
    int n = 0;
    double ll = 0, margin = 0, accuracy = 0;
};
struct ReversalResult {
    ReversalScore fwd[2], rev[2];  // [1]: trained, [0]: held out
    double fwd_gain() const { return fwd[1].margin - fwd[0].margin; }
    double rev_gain() const { return rev[1].margin - rev[0].margin; }
};
template <class LM>
static ReversalResult reversal_eval(LM& m, const std::vector<ReversalFact>& facts, int eos) {
    ReversalResult r;
    for (int dir = 0; dir < 2; dir++)
        for (size_t i = 0; i < facts.size(); i++) {
            const ReversalFact& f = facts[i];
            const std::vector<int>& prompt = dir ? f.rev_prompt : f.fwd_prompt;
            double correct = answer_loglik(m, prompt, dir ? f.rev_answer : f.fwd_answer, eos), others = 0.0;
            int n_other = 0;
            bool best = true;
            for (size_t j = 0; j < facts.size(); j++) {
                const ReversalFact& g = facts[j];
                if (j == i || g.trained != f.trained || g.relation != f.relation) continue;
                double l = answer_loglik(m, prompt, dir ? g.rev_answer : g.fwd_answer, eos);
                others += l;
                n_other++;
                best &= correct > l;
            }
            ReversalScore& s = (dir ? r.rev : r.fwd)[f.trained ? 1 : 0];
            s.ll += correct;
            s.margin += n_other ? correct - others / n_other : 0.0;
            s.accuracy += best ? 1.0 : 0.0;
            s.n++;
        }
    for (ReversalScore* s : {&r.fwd[0], &r.fwd[1], &r.rev[0], &r.rev[1]})
        if (s->n) { s->ll /= s->n; s->margin /= s->n; s->accuracy /= s->n; }
        else s->ll = s->margin = s->accuracy = NAN;
    return r;
}

// ---------------------------------------------------------------------------------------------
// Q/K statistics. RoPE bands for the NeoX layout: rotated dim j (j < rot) has frequency index
// j mod rot/2 (dims j and j + rot/2 rotate together); the faster half of the frequencies
// (index < rot/4) is "high", the rest "low". Dims outside the rotated segment pass through.
enum Band { BAND_HIGH, BAND_LOW, BAND_PASS };
static Band rope_band(int dim_in_head, int rot_off, int rot) {
    int j = dim_in_head - rot_off;
    if (rot == 0 || j < 0 || j >= rot) return BAND_PASS;
    int freq = j % (rot / 2);
    return freq < rot / 4 ? BAND_HIGH : BAND_LOW;
}

struct AbsStats {
    double max_abs = 0, sum_abs = 0, sum = 0, sum_sq = 0;
    long n = 0;
    void add(float x) {
        double a = fabs(x);
        max_abs = std::max(max_abs, a);
        sum_abs += a; sum += x; sum_sq += (double)x * x; n++;
    }
    void merge(const AbsStats& o) {
        max_abs = std::max(max_abs, o.max_abs);
        sum_abs += o.sum_abs; sum += o.sum; sum_sq += o.sum_sq; n += o.n;
    }
    double mean_abs() const { return n ? sum_abs / n : NAN; }
    double std() const { return n ? sqrt(std::max(0.0, sum_sq / n - (sum / n) * (sum / n))) : NAN; }
};
struct QKStats {
    std::string layer_view;  // e.g. "L0.q"
    AbsStats all, band[3];
    std::vector<double> dim_max;  // per dimension within a head: max |x| over tokens and heads
};
static QKStats qk_stats(const QKView& v, int B, int T, const std::string& name) {
    QKStats s;
    s.layer_view = name;
    s.dim_max.assign(v.dim, 0.0);
    for (long bt = 0; bt < (long)B * T; bt++)
        for (int h = 0; h < v.heads; h++) {
            const float* x = v.p + bt * v.row + h * v.head;
            for (int d = 0; d < v.dim; d++) {
                s.all.add(x[d]);
                s.band[rope_band(d, v.rot_off, v.rot)].add(x[d]);
                s.dim_max[d] = std::max(s.dim_max[d], (double)fabs(x[d]));
            }
        }
    return s;
}

// KV-cache memory measured from the real cache buffers for a context of ctx tokens
struct KVMemory {
    size_t floats_per_token = 0, fixed_floats = 0;
    double bytes_fp32(long ctx) const { return 4.0 * ((double)floats_per_token * ctx + fixed_floats); }
};
static KVMemory kv_memory(GPT& m, int ctx) {
    m.decode_begin(ctx);
    KVMemory k;
    k.floats_per_token = m.kv_cache_floats_per_token();
    k.fixed_floats = m.kv_cache_floats_fixed();
    return k;
}

// ---------------------------------------------------------------------------------------------
// KV-cache presses (attention/press.h), measured so that compression reaches the scored tokens.
//  prefill  (a) per sample: prefill a context of P tokens, compress its cache, then decode the
//           next N tokens one at a time against the compressed cache (their own K/V appended
//           uncompressed) and score the N tokens after them. The first continuation target
//           (predicted by the context's last row, which saw the full cache) is not scored.
//  decode   (b) streams of S tokens decoded token by token, B streams at once, every token
//           scored; a stream's cache holds at most budget + slack tokens: when it is full, the
//           press brings it back to budget.
//  naive    (c) the earlier work's protocol: score the prefilled window itself, compress after.
//           Every logit saw the full cache, so its PPL equals the baseline for every press and
//           ratio by construction; it is kept only to show the pitfall.
// A sample (or stream) is a disjoint piece of one document: documents shorter than a piece are
// skipped. press == nullptr, or a ratio of 0, or a budget no smaller than the context: no press.
struct PressDoc {
    const int* tok;
    long n;
};
struct PressResult {
    NLL nll;
    long samples = 0;
    double held_tokens = 0;      // context tokens held after compression (a, c), mean held while decoding (b)
    double context_tokens = 0;   // what the full cache would hold: P (a, c); the mean position (b)
    size_t kv_bytes = 0;         // the cache buffers as allocated: after compression, before the continuation (a, c); the peak (b)
    size_t kv_bytes_full = 0;    // the same for the uncompressed cache
    double decode_ms = 0;        // decoding the scored tokens (b: compression included)
    long decode_tokens = 0;
    double compress_ms = 0;
    double bytes_per_context_token = 0;  // KV bytes held per token of context: kv_bytes / P (a, c); mean held bytes / mean position (b)
    double ms_per_token() const { return decode_tokens ? decode_ms / decode_tokens : NAN; }
};
// -log softmax(logits)[target] over the real vocab, in double
static double token_nll(const float* lg, int V, int target) {
    double m = -INFINITY;
    for (int v = 0; v < V; v++) m = std::max(m, (double)lg[v]);
    double z = 0.0;
    for (int v = 0; v < V; v++) z += exp((double)lg[v] - m);
    return m + log(z) - lg[target];
}
static double now_ms() { return 1e3 * now_seconds(); }
// the pieces of `len` tokens (plus the one target after them) the documents hold; with
// max_samples > 0 at most that many, evenly spread over all of them (every set is represented)
static std::vector<std::pair<int, long>> press_pieces(const std::vector<PressDoc>& docs, long len, long max_samples) {
    std::vector<std::pair<int, long>> all;
    for (int d = 0; d < (int)docs.size(); d++)
        for (long o = 0; o + len + 1 <= docs[d].n; o += len) all.push_back({d, o});
    if (max_samples <= 0 || (long)all.size() <= max_samples) return all;
    std::vector<std::pair<int, long>> out;
    for (long i = 0; i < max_samples; i++) out.push_back(all[(size_t)(i * (long)all.size() / max_samples)]);
    return out;
}
// bytes one token takes in the caches of every layer, and the per-sequence fixed part (after decode_begin)
static size_t kv_bytes_per_token(GPT& m) { return sizeof(float) * m.kv_cache_floats_per_token(); }
static size_t kv_bytes_fixed(GPT& m) { return sizeof(float) * m.kv_cache_floats_fixed(); }
// (a) prefill -> compress -> continue, and (c) naive when `naive` is set
static PressResult press_prefill_eval(GPT& m, const std::vector<PressDoc>& docs, int P, int N, const Press* press, double ratio, int budget,
                                      long max_samples, bool naive) {
    PressResult r;
    const int V = m.cfg.vocab_size, Vp = m.cfg.padded_vocab_size;
    auto pieces = press_pieces(docs, (long)P + N, max_samples);
    if (pieces.empty())
        fail_hint("lower --press-context / --press-continue, or pass longer documents with --press-data", "no document holds P + N + 1 = %d tokens", P + N + 1);
    const int n_kept = press ? press_n_kept(P, ratio, budget) : P;
    const bool compress = press && n_kept < P;
    std::vector<int> seq(P, 0);
    std::unique_ptr<bool[]> none(new bool[P]());  // the context's logits are not needed (protocol a)
    Progress prog;
    prog.begin(std::string("press prefill ") + (press ? PRESS_NAMES[press->kind] : "baseline"), "samples", (long)pieces.size());
    long done = 0;
    for (auto [d, o] : pieces) {
        prog.update(done++, (double)(r.context_tokens + r.decode_tokens));
        const int* t = docs[d].tok + o;
        m.decode_begin(1, P + N);
        if (compress) m.decode_press(*press);
        r.kv_bytes_full += kv_bytes_per_token(m) * P + kv_bytes_fixed(m);
        const float* lg = m.decode(t, seq.data(), P, naive ? nullptr : none.get());
        if (naive)  // every logit saw the whole window: a press applied after this changes nothing scored
            for (int i = 0; i < P; i++) r.nll.add(token_nll(lg + (size_t)i * Vp, V, t[i + 1]));
        if (compress) {
            double t0 = now_ms();
            m.decode_compress(*press, 0, n_kept);
            r.compress_ms += now_ms() - t0;
            for (Layer& y : m.layers) y.attn->kv_cache().observe(0, false, false, 0, nullptr, 0);  // nothing more to record
        }
        m.decode_reserve(m.decode_held(0));  // the buffers shrink to what is held: that is the memory measured
        r.kv_bytes += m.kv_cache_bytes();
        r.held_tokens += m.decode_held(0);
        r.context_tokens += P;
        r.samples++;
        if (naive) continue;
        m.decode_reserve(m.decode_held(0) + N);
        const int s0 = 0;
        double t0 = now_ms();
        for (int i = 0; i < N; i++) {  // row i predicts t[P + i + 1], against the compressed context
            lg = m.decode(t + P + i, &s0, 1);
            r.nll.add(token_nll(lg, V, t[P + i + 1]));
        }
        r.decode_ms += now_ms() - t0;
        r.decode_tokens += N;
    }
    prog.update(done, (double)(r.context_tokens + r.decode_tokens));
    r.held_tokens /= r.samples; r.context_tokens /= r.samples; r.kv_bytes /= r.samples; r.kv_bytes_full /= r.samples;
    r.bytes_per_context_token = r.kv_bytes / r.context_tokens;
    return r;
}

// (b) decode-time eviction: streams of S tokens, B at a time, token by token; a stream's cache
// holds at most budget + slack tokens (budget = the press's n_kept of S)
static PressResult press_decode_eval(GPT& m, const std::vector<PressDoc>& docs, int S, int B, const Press* press, double ratio, int budget,
                                     int slack, long max_samples) {
    PressResult r;
    const int V = m.cfg.vocab_size, Vp = m.cfg.padded_vocab_size;
    auto pieces = press_pieces(docs, S, max_samples);
    if (pieces.empty()) fail_hint("lower --stream-len, or pass longer documents with --press-data", "no document holds S + 1 = %d tokens", S + 1);
    const int keep = press ? press_n_kept(S, ratio, budget) : S;
    const bool evict = press && keep < S;
    if (slack <= 0) slack = std::max(1, keep / 16);
    const int cap = evict ? std::min(S, keep + slack) : S;
    double held_sum = 0.0, pos_sum = 0.0;
    Progress prog;
    prog.begin(std::string("press decode ") + (press ? PRESS_NAMES[press->kind] : "baseline"), "streams", (long)pieces.size());
    for (size_t p0 = 0; p0 < pieces.size(); p0 += B) {
        const int nb = (int)std::min<size_t>(B, pieces.size() - p0);
        m.decode_begin(nb, cap);
        if (evict) m.decode_press(*press);
        r.kv_bytes += m.kv_cache_bytes();  // allocated for nb streams of cap tokens: the peak
        r.kv_bytes_full += (kv_bytes_per_token(m) * S + kv_bytes_fixed(m)) * nb;
        std::vector<int> tok(nb), seq(nb);
        for (int b = 0; b < nb; b++) seq[b] = b;
        for (int t = 0; t < S; t++) {
            double t0 = now_ms();
            for (int b = 0; b < nb; b++)
                if (evict && m.decode_held(b) == cap) {
                    double c0 = now_ms();
                    m.decode_compress(*press, b, keep);
                    r.compress_ms += now_ms() - c0;
                }
            for (int b = 0; b < nb; b++) tok[b] = docs[pieces[p0 + b].first].tok[pieces[p0 + b].second + t];
            const float* lg = m.decode(tok.data(), seq.data(), nb);
            r.decode_ms += now_ms() - t0;
            r.decode_tokens += nb;
            for (int b = 0; b < nb; b++) {
                r.nll.add(token_nll(lg + (size_t)b * Vp, V, docs[pieces[p0 + b].first].tok[pieces[p0 + b].second + t + 1]));
                held_sum += m.decode_held(b);
                pos_sum += t + 1;
            }
        }
        r.samples += nb;
        prog.update(r.samples, (double)r.decode_tokens);
    }
    r.held_tokens = held_sum / r.nll.n;
    r.context_tokens = pos_sum / r.nll.n;
    r.kv_bytes /= r.samples; r.kv_bytes_full /= r.samples;
    r.bytes_per_context_token = r.held_tokens * kv_bytes_per_token(m) / r.context_tokens;
    return r;
}
