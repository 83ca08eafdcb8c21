// profile.h: a per-op time breakdown (matmul, attention, norm, classifier, optimizer) for the
// benchmarks. Scopes nest; the outermost one gets the time, so the classifier's matmul counts as
// classifier and attention's projections (called outside its core) as matmul.
// Beside the times, the multiply-adds the kernels were asked for (counted by each kernel from its
// shapes, per op whatever scope encloses it): dev/bench_decode holds a step to the FMA peak with them.
#pragma once
#include "utils.h"

enum ProfOp { PROF_MATMUL, PROF_ATTENTION, PROF_NORM, PROF_CLASSIFIER, PROF_OPTIMIZER, PROF_COUNT };
static const char* const PROF_NAMES[PROF_COUNT] = {"matmul", "attention", "norm", "classifier", "optimizer"};

struct Profiler {
    double seconds[PROF_COUNT] = {0};
    double macs[PROF_COUNT] = {0};
    double weight_floats = 0;  // the weights (and biases) matmul_forward read, each call's whole matrix
    int depth = 0;
    void reset() {
        for (double& s : seconds) s = 0;
        for (double& m : macs) m = 0;
        weight_floats = 0;
    }
    double total_macs() const {
        double t = 0;
        for (double m : macs) t += m;
        return t;
    }
};
static Profiler g_prof;
// called outside parallel regions: the counts are plain sums
static inline void prof_macs(int op, double n) { g_prof.macs[op] += n; }

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
