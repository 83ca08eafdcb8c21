// backend.h: picks the compute backend. The CPU backend (fp32, OpenMP) always exists and is the
// reference; CUDA kernels live in llmc/cuda_ops.cu, built by nvcc when it is found and linked in
// (KVGPT_CUDA). The host code is always compiled by the C++ compiler.
// Without a GPU, or in a build without nvcc, the run says so once and uses the CPU.
#pragma once
#include <string>
#include "utils.h"
#ifdef KVGPT_CUDA
#include "cuda_ops.h"
#endif

enum Backend { BACKEND_CPU, BACKEND_CUDA };

// number of usable CUDA devices; *why explains a zero, *name is device 0's name
static int cuda_probe(std::string* why, std::string* name) {
#ifdef KVGPT_CUDA
    return kvgpt_cuda_probe(why, name);
#else
    *why = "this binary was built without nvcc";
    (void)name;
    return 0;
#endif
}

// resolves -d auto|cpu|cuda to a backend, printing the one line about a missing GPU
static Backend choose_backend(const char* want, std::string* desc) {
    std::string why, name;
    if (strcmp(want, "cpu") == 0) { *desc = "cpu (forced by -d cpu)"; return BACKEND_CPU; }
    if (strcmp(want, "cuda") != 0 && strcmp(want, "auto") != 0)
        fail_hint("use -d auto, -d cpu or -d cuda", "unknown device '%s'", want);
    int n = cuda_probe(&why, &name);
    if (strcmp(want, "cuda") == 0) {
        if (n == 0) fail_hint("run on a machine with an NVIDIA GPU, or use -d cpu", "-d cuda asked for, but no CUDA device: %s", why.c_str());
        fail_hint("use -d cpu (or -d auto) for now", "CUDA device '%s' found, but the CUDA training backend is not implemented yet", name.c_str());
    }
    if (n == 0) {
        printf("no CUDA device found (%s): using the CPU backend\n", why.c_str());
    } else {
        printf("CUDA device '%s' found, but the CUDA training backend is not implemented yet: using the CPU backend\n", name.c_str());
    }
    *desc = "cpu (fp32, OpenMP)";
    return BACKEND_CPU;
}
