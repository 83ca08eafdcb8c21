// params.h: a registry of named parameter tensors laid out in one contiguous buffer.
// Layers (and attention variants) declare their tensors here and keep the offsets; the model,
// the optimizer and checkpoints then work on the flat buffer without knowing the layers.
#pragma once
#include <cmath>
#include <string>
#include <vector>
#include "rng.h"
#include "utils.h"

enum InitKind { INIT_NORMAL, INIT_RESID, INIT_ZERO, INIT_ONE };

struct ParamSpec {
    std::string name;
    size_t offset, n;
    size_t n_counted;  // elements counted as parameters (a padded vocab's extra rows are not)
    int init;
    bool decay;        // weight decay applies to matrices only
};

struct ParamSet {
    std::vector<ParamSpec> specs;
    size_t total = 0;
    int n_layer = 1;  // for INIT_RESID scaling
    // rows x cols tensor; counted_rows < rows for the padded vocab. Returns its offset.
    size_t add(const std::string& name, int rows, int cols, int init, int counted_rows = -1) {
        ParamSpec s;
        s.name = name;
        s.offset = total;
        s.n = (size_t)rows * cols;
        s.n_counted = (size_t)(counted_rows < 0 ? rows : counted_rows) * cols;
        s.init = init;
        s.decay = rows > 1 && cols > 1;
        specs.push_back(s);
        total += (s.n + 15) / 16 * 16;  // keep every tensor 64-byte aligned
        return s.offset;
    }
    size_t counted() const {
        size_t c = 0;
        for (const ParamSpec& s : specs) c += s.n_counted;
        return c;
    }
    // GPT-2 init: N(0, 0.02), residual projections N(0, 0.02/sqrt(2L)), biases 0, norms 1.
    void init(float* p, Rng& rng) const {
        for (const ParamSpec& s : specs) {
            float* w = p + s.offset;
            float std = s.init == INIT_RESID ? 0.02f / sqrtf(2.0f * n_layer) : 0.02f;
            for (size_t i = 0; i < s.n; i++) {
                if (s.init == INIT_ZERO) w[i] = 0.0f;
                else if (s.init == INIT_ONE) w[i] = 1.0f;
                else w[i] = i < s.n_counted ? std * rng.normal() : 0.0f;
            }
        }
    }
};
