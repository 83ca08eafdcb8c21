// sample.h: choosing the next token from logits, as Hugging Face's generate() does:
// temperature, then top-k, then top-p (nucleus), then a draw from what is left, renormalised;
// greedy (or temperature 0) is the argmax, lowest id on ties. next_token_distribution gives the
// exact probabilities a draw uses, so the tests check them against a brute-force reference.
#pragma once
#include <algorithm>
#include <cmath>
#include <vector>
#include "rng.h"
#include "utils.h"

struct SampleConfig {
    float temperature = 1.0f;  // > 0; 0 means greedy
    int top_k = 0;             // 0: off
    float top_p = 1.0f;        // (0, 1]; 1: off
    bool greedy = false;
};

static void sample_config_check(const SampleConfig& c) {
    if (!(c.temperature >= 0.0f) || !std::isfinite(c.temperature)) fail_hint("e.g. --temperature 0.8 (0: greedy)", "--temperature %g must be >= 0", c.temperature);
    if (c.top_k < 0) fail_hint("e.g. --top-k 50 (0: off)", "--top-k %d must be >= 0", c.top_k);
    if (!(c.top_p > 0.0f && c.top_p <= 1.0f)) fail_hint("e.g. --top-p 0.95 (1: off)", "--top-p %g must be in (0, 1]", c.top_p);
}

// greedy (--greedy, or --temperature 0): the argmax, no draw
static bool greedy_sampling(const SampleConfig& c) { return c.greedy || c.temperature == 0.0f; }
static int argmax_token(const float* logits, int V) {
    int best = 0;
    for (int v = 1; v < V; v++)
        if (logits[v] > logits[best]) best = v;
    return best;
}

// the (token, probability) pairs a draw picks from, most likely first; their probabilities sum to 1
static std::vector<std::pair<int, double>> next_token_distribution(const float* logits, int V, const SampleConfig& c) {
    std::vector<std::pair<int, double>> p;
    if (greedy_sampling(c)) {
        p.push_back({argmax_token(logits, V), 1.0});
        return p;
    }
    std::vector<int> order(V);
    for (int v = 0; v < V; v++) order[v] = v;
    int keep = c.top_k > 0 ? std::min(c.top_k, V) : V;
    auto by_logit = [&](int a, int b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
    std::partial_sort(order.begin(), order.begin() + keep, order.end(), by_logit);
    double mx = logits[order[0]] / (double)c.temperature, sum = 0.0;
    for (int i = 0; i < keep; i++) {
        double e = exp(logits[order[i]] / (double)c.temperature - mx);
        p.push_back({order[i], e});
        sum += e;
    }
    for (auto& x : p) x.second /= sum;
    if (c.top_p < 1.0f) {  // the smallest prefix whose probability reaches top_p (at least one token)
        double cum = 0.0;
        size_t n = 0;
        while (n < p.size() && (n == 0 || cum < c.top_p)) cum += p[n++].second;
        p.resize(n);
        for (auto& x : p) x.second /= cum;
    }
    return p;
}

static int sample_token(const float* logits, int V, const SampleConfig& c, Rng& rng) {
    std::vector<std::pair<int, double>> p = next_token_distribution(logits, V, c);
    if (p.size() == 1) return p[0].first;
    double u = (double)rng.uniform(), cum = 0.0;
    for (const auto& x : p) {
        cum += x.second;
        if (u < cum) return x.first;
    }
    return p.back().first;
}
