// backend.h: picks the compute backend. The CPU backend (fp32, OpenMP) always exists and is the
// reference. The CUDA backend (llmc/cuda_backend.cu, built by nvcc when it is found; KVGPT_CUDA)
// trains every attention variant (mha, mqa, gqa, mla, kvsplice, mka, fmka) with every position
// encoding at the head dims its attention kernels exist for; `-d auto` uses it when a GPU is
// present and the model is one it supports, and says in one line why not otherwise.
// The host code is always compiled by the C++ compiler.
#pragma once
#include <string>
#include "config.h"
#include "train.h"
#include "utils.h"
#if defined(KVGPT_CUDA) || defined(KVGPT_CUDA_EMU)
#define KVGPT_CUDA_BACKEND 1  // the CUDA backend is linked in (on a GPU, or on the emulator in tests)
#include "cuda_model.h"
#endif

enum Backend { BACKEND_CPU, BACKEND_CUDA };

// --precision of the CUDA backend: 1 for bf16, 0 for fp32 (CudaPrecision); anything else is an error
static int parse_precision(const std::string& p) {
    if (p == "bf16") return 1;
    if (p == "fp32") return 0;
    fail_hint("use --precision bf16 or fp32", "unknown --precision '%s'", p.c_str());
}

// number of usable CUDA devices; *why explains a zero, *name is device 0's name
static int cuda_probe(std::string* why, std::string* name) {
#ifdef KVGPT_CUDA_BACKEND
    return kvgpt_cuda_probe(why, name);
#else
    *why = "this binary was built without nvcc";
    (void)name;
    return 0;
#endif
}

// resolves -d auto|cpu|cuda for training `cfg`; *device_name gets the GPU's name
// (the one-line note goes to `note`: stdout, or stderr where stdout is the program's output)
static Backend choose_backend(const char* want, const GPTConfig& cfg, std::string* desc, std::string* device_name, FILE* note = stdout) {
    std::string why, name, unsupported;
    if (strcmp(want, "cpu") == 0) { *desc = "cpu (forced by -d cpu)"; return BACKEND_CPU; }
    if (strcmp(want, "cuda") != 0 && strcmp(want, "auto") != 0)
        fail_hint("use -d auto, -d cpu or -d cuda", "unknown device '%s'", want);
    int n = cuda_probe(&why, &name);
    bool ok = n > 0;
#ifdef KVGPT_CUDA_BACKEND
    if (ok && !cuda_supports(cfg, &unsupported)) ok = false;
#else
    (void)cfg;
#endif
    if (strcmp(want, "cuda") == 0) {
        if (n == 0) fail_hint("run on a machine with an NVIDIA GPU, or use -d cpu", "-d cuda asked for, but no CUDA device: %s", why.c_str());
        if (!ok) fail_hint("use -d cpu for this model", "-d cuda: %s", unsupported.c_str());
    }
    if (n == 0) fprintf(note, "no CUDA device found (%s): using the CPU backend\n", why.c_str());
    else if (!ok) fprintf(note, "CUDA device '%s' found, but %s: using the CPU backend\n", name.c_str(), unsupported.c_str());
    if (!ok) { *desc = "cpu (fp32, OpenMP)"; return BACKEND_CPU; }
    *device_name = name;
    *desc = "cuda: " + name;
    return BACKEND_CUDA;
}

// the evaluator's forward-only protocols (llmc/eval.h) on the chosen backend: run(f) calls f
// with the CPU GPT or with the device model (fp32 by default, so its numbers are the CPU's
// within rounding). Protocols that read the CPU caches or activations (presses, KV memory, Q/K
// statistics) always get the CPU GPT.
struct EvalRunner {
    GPT& model;
#ifdef KVGPT_CUDA_BACKEND
    std::unique_ptr<CudaLM> dev;
#endif
    EvalRunner(GPT& m, Backend b, int precision, int B, int T) : model(m) {
#ifdef KVGPT_CUDA_BACKEND
        if (b == BACKEND_CUDA) dev.reset(new CudaLM(m, precision, B, T));
#else
        (void)b; (void)precision; (void)B; (void)T;
#endif
    }
    template <class F>
    auto run(F f) {
#ifdef KVGPT_CUDA_BACKEND
        if (dev) return f(*dev);
#endif
        return f(model);
    }
};

// runs training steps and validation on the chosen backend, over the CPU GPT `model`, which
// keeps the configuration and the checkpoint state (pull() copies the device state into it)
// (data-parallel ranks: the CPU path keeps its ZeRO-1 slice here; the CUDA trainer all-reduces)
struct BackendRunner {
    GPT& model;
    ZeroShard zero;  // CPU data-parallel ranks only
#ifdef KVGPT_CUDA_BACKEND
    std::unique_ptr<CudaTrainer> gpu;
#endif
    BackendRunner(GPT& m, Backend b, int precision, int B, int T) : model(m) {
#ifdef KVGPT_CUDA_BACKEND
        if (b == BACKEND_CUDA) {
            dist_init_device();
            gpu.reset(new CudaTrainer(m, precision, B, T));
        }
#else
        (void)precision; (void)B; (void)T;
#endif
        if (b == BACKEND_CPU && g_dist.on) {
            zero.setup(m);
            zero.take_moments(m);
        }
    }
    StepStats step(DataLoader& train, const TrainConfig& tc, int step) {
#ifdef KVGPT_CUDA_BACKEND
        if (gpu) return gpu->step(train, tc, step);
#endif
        if (g_dist.on) return train_step_dp(model, train, tc, step, zero);
        return train_step(model, train, tc, step);
    }
    float val(DataLoader& val, int max_batches) {
#ifdef KVGPT_CUDA_BACKEND
        if (gpu) return gpu->val_loss(val, max_batches);
#endif
        return val_loss(model, val, max_batches);
    }
    // device (or the ranks' ZeRO slices) -> model.params, model.m, model.v, for a checkpoint
    // that rank 0 writes; every rank calls it (a collective), and the replicas are checked equal
    void pull() {
#ifdef KVGPT_CUDA_BACKEND
        if (gpu) gpu->pull();
#endif
        if (g_dist.on && !zero.counts.empty()) zero.gather_moments(model);
        dist_check_replicas(model.params, model.ps.total, "before writing a checkpoint");
    }
    void pull_params() {  // device -> model.params (for a best-weights snapshot)
#ifdef KVGPT_CUDA_BACKEND
        if (gpu) gpu->dev->get_params(model.params);
#endif
    }
    void push_params() {  // model.params -> device
#ifdef KVGPT_CUDA_BACKEND
        if (gpu) gpu->dev->set_params(model.params);
#endif
    }
    std::string memory_report() const {
#ifdef KVGPT_CUDA_BACKEND
        if (gpu) return gpu->dev->memory_report();
#endif
        return "";
    }
    size_t device_bytes() const {  // 0 on the CPU
#ifdef KVGPT_CUDA_BACKEND
        if (gpu) return gpu->dev->device_bytes();
#endif
        return 0;
    }
};
