// position.h: the position encodings attention variants share.
//  RoPE: GPT-NeoX "rotate half" layout on the first rot dims of a head: dims i and i + rot/2
//        (i < rot/2) form one pair with frequency base^(-2i/rot); the rest pass through.
//  ALiBi: bias -slope_h * (t_q - t_k) on the score; the paper's geometric slopes
//        2^(-8(i+1)/n) for n a power of two, and for other n the slopes of the largest power of
//        two below n followed by every other slope of twice that (Press et al., 2022), or one
//        uniform slope for all heads.
#pragma once
#include <cmath>
#include <vector>

struct Rope {
    int rot = 0;       // rotated dims per head (even); 0 disables
    double base = 10000.0;
    int max_t = 0;     // positions tabulated so far
    std::vector<float> cos_t, sin_t;  // (max_t, rot/2)
    void init(int rot_dims, double b) { rot = rot_dims; base = b; max_t = 0; cos_t.clear(); sin_t.clear(); }
    // grow the tables to cover positions [0, T); call outside parallel regions
    void ensure(int T) {
        if (rot == 0 || T <= max_t) return;
        int half = rot / 2;
        cos_t.resize((size_t)T * half);
        sin_t.resize((size_t)T * half);
        for (int t = max_t; t < T; t++)
            for (int i = 0; i < half; i++) {
                double ang = t * pow(base, -2.0 * i / rot);
                cos_t[(size_t)t * half + i] = (float)cos(ang);
                sin_t[(size_t)t * half + i] = (float)sin(ang);
            }
        max_t = T;
    }
    // rotate one head vector x (hd) at position t by +theta (forward) or -theta (inverse, which is
    // also the backward of the forward rotation since the rotation is orthogonal)
    inline void apply(float* x, int t, bool inverse = false) const {
        int half = rot / 2;
        const float* c = &cos_t[(size_t)t * half];
        const float* s = &sin_t[(size_t)t * half];
        for (int i = 0; i < half; i++) {
            float x1 = x[i], x2 = x[i + half], si = inverse ? -s[i] : s[i];
            x[i] = x1 * c[i] - x2 * si;
            x[i + half] = x2 * c[i] + x1 * si;
        }
    }
    // rotate `heads` vectors of every token: B*T rows `row` floats apart, the vectors `head`
    // floats apart from buf; token bt sits at position bt % T
    void apply_rows(float* buf, long row, long head, int heads, int B, int T, bool inverse) const {
        if (rot == 0) return;
        #pragma omp parallel for schedule(static)
        for (int bt = 0; bt < B * T; bt++)
            for (int h = 0; h < heads; h++) apply(buf + (long)bt * row + (long)h * head, bt % T, inverse);
    }
};

static std::vector<float> alibi_slopes(int n_head, float uniform_slope) {
    std::vector<float> s(n_head);
    if (uniform_slope > 0.0f) {
        for (int h = 0; h < n_head; h++) s[h] = uniform_slope;
        return s;
    }
    auto pow2_slopes = [](int n) {
        std::vector<float> r(n);
        for (int i = 0; i < n; i++) r[i] = (float)pow(2.0, -8.0 * (i + 1) / n);
        return r;
    };
    int p = 1;
    while (p * 2 <= n_head) p *= 2;
    std::vector<float> a = pow2_slopes(p);
    std::vector<float> b = pow2_slopes(2 * p);
    for (int h = 0; h < n_head; h++) s[h] = h < p ? a[h] : b[2 * (h - p)];
    return s;
}
