// profile.h: a per-op time breakdown (matmul, attention, norm, classifier, optimizer) for the
// benchmarks. Scopes nest; the outermost one gets the time, so the classifier's matmul counts as
// classifier and attention's projections (called outside its core) as matmul.
#pragma once
#include "utils.h"

enum ProfOp { PROF_MATMUL, PROF_ATTENTION, PROF_NORM, PROF_CLASSIFIER, PROF_OPTIMIZER, PROF_COUNT };
static const char* const PROF_NAMES[PROF_COUNT] = {"matmul", "attention", "norm", "classifier", "optimizer"};

struct Profiler {
    double seconds[PROF_COUNT] = {0};
    int depth = 0;
    void reset() {
        for (double& s : seconds) s = 0;
    }
};
static Profiler g_prof;

struct ProfScope {
    int op;
    double t0;
    bool outer;
    explicit ProfScope(int op_) : op(op_), t0(0), outer(g_prof.depth == 0) {
        g_prof.depth++;
        if (outer) t0 = now_seconds();
    }
    ~ProfScope() {
        g_prof.depth--;
        if (outer) g_prof.seconds[op] += now_seconds() - t0;
    }
};
