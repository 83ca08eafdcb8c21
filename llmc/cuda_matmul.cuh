// cuda_matmul.cuh: the GEMM every linear layer uses: cuBLASLt on the GPU (bias fused as the
// epilogue; bf16 or fp32 inputs, fp32 compute, fp32 or bf16 output; an fp32 output accumulates
// with beta = 1, which keeps weight gradients in fp32), a plain CPU loop in the emulator. Also
// the one stream and the backend's start-up. Shared by llmc/cuda_backend.cu and dev/cuda/, so
// the benchmarks measure what trains. Include it in one translation unit per program.
#pragma once
#include <array>
#include <map>
#include <string>
#include "cuda_common.h"
#ifndef KVGPT_CUDA_EMU
#include <cublasLt.h>
#endif
cudaStream_t g_stream = 0;

[[noreturn]] static void backend_fail(const char* hint, const std::string& msg) {
    fprintf(stderr, "Error: %s\n", msg.c_str());
    if (hint) fprintf(stderr, "HINT: %s\n", hint);
    exit(1);
}

#ifndef KVGPT_CUDA_EMU
static void cublas_check(cublasStatus_t s, const char* file, int line) {
    if (s != CUBLAS_STATUS_SUCCESS) {
        fprintf(stderr, "Error: cuBLAS error %d\n  at %s:%d\n", (int)s, file, line);
        exit(1);
    }
}
#define cublasCheck(s) cublas_check((s), __FILE__, __LINE__)
static cublasLtHandle_t g_lt = nullptr;
static void* g_lt_workspace = nullptr;
static const size_t LT_WORKSPACE = 32u << 20;
static void backend_init() {
    if (g_lt) return;
    cudaCheck(cudaSetDevice(0));
    cudaCheck(cudaStreamCreate(&g_stream));
    cublasCheck(cublasLtCreate(&g_lt));
    cudaCheck(cudaMalloc(&g_lt_workspace, LT_WORKSPACE));
}
#else
static void backend_init() {}
#endif

template <typename T> struct DType;
template <> struct DType<float> { static const int id = 0; };
template <> struct DType<bf16> { static const int id = 1; };

// Column-major GEMM (cuBLAS convention): D (m,n) = op(A) op(B) [+ beta D] [+ bias (m) per column].
// A, B are T; D is float (dtype 0) or bf16 (dtype 1); bias has D's type. Row-major callers swap
// operands (see matmul_forward / matmul_backward below).
template <typename T>
static void gemm(bool ta, bool tb, int m, int n, int k, const T* A, int lda, const T* B, int ldb, void* D, int ldd, int d_dtype, float beta,
                 const void* bias) {
    g_device_calls++;
#ifdef KVGPT_CUDA_EMU
    emu::run_or_record([=] {  // (recorded while a stream is captured into a graph, as cuBLASLt's kernels are)
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            float acc = 0.0f;
            for (int p = 0; p < k; p++) {
                float a = to_f32(ta ? A[p + (long)i * lda] : A[i + (long)p * lda]);
                float b = to_f32(tb ? B[j + (long)p * ldb] : B[p + (long)j * ldb]);
                acc += a * b;
            }
            long o = i + (long)j * ldd;
            if (d_dtype == 0) {
                float* d = (float*)D;
                if (bias) acc += ((const float*)bias)[i];
                d[o] = beta != 0.0f ? acc + beta * d[o] : acc;
            } else {
                bf16* d = (bf16*)D;
                if (bias) acc += to_f32(((const bf16*)bias)[i]);
                d[o] = from_f32<bf16>(beta != 0.0f ? acc + beta * to_f32(d[o]) : acc);
            }
        }
    });
#else
    // A plan per call shape: the descriptors and cuBLASLt's choice of algorithm, made on the shape's
    // first call and kept. A decode step makes the same few dozen small GEMMs every step; made
    // afresh, each paid four descriptor creations and a heuristic query on the host between two
    // launches. Only the bias pointer changes from call to call (a host-side attribute, read at
    // the launch, so a graph captures the pointer of its own call).
    struct LtPlan {
        cublasLtMatmulDesc_t op;
        cublasLtMatrixLayout_t la, lb, ld;
        cublasLtMatmulAlgo_t algo;
    };
    static std::map<std::array<long, 11>, LtPlan> plans;
    const std::array<long, 11> key = {ta, tb, m, n, k, lda, ldb, ldd, DType<T>::id, d_dtype, bias != nullptr};
    auto it = plans.find(key);
    if (it == plans.end()) {
        LtPlan p;
        cudaDataType_t ab = DType<T>::id == 1 ? CUDA_R_16BF : CUDA_R_32F, dt = d_dtype == 1 ? CUDA_R_16BF : CUDA_R_32F;
        cublasCheck(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
        cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
        cublasCheck(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof(opa)));
        cublasCheck(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof(opb)));
        if (bias) {
            cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
            cublasCheck(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)));
            cublasCheck(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
        }
        cublasCheck(cublasLtMatrixLayoutCreate(&p.la, ab, ta ? k : m, ta ? m : k, lda));
        cublasCheck(cublasLtMatrixLayoutCreate(&p.lb, ab, tb ? n : k, tb ? k : n, ldb));
        cublasCheck(cublasLtMatrixLayoutCreate(&p.ld, dt, m, n, ldd));
        cublasLtMatmulPreference_t pref;
        cublasCheck(cublasLtMatmulPreferenceCreate(&pref));
        size_t ws = LT_WORKSPACE;
        cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)));
        cublasLtMatmulHeuristicResult_t heur;
        int found = 0;
        cublasCheck(cublasLtMatmulAlgoGetHeuristic(g_lt, p.op, p.la, p.lb, p.ld, p.ld, pref, 1, &heur, &found));
        cublasCheck(cublasLtMatmulPreferenceDestroy(pref));
        if (found == 0) {
            char msg[200];
            snprintf(msg, sizeof msg, "cuBLASLt has no algorithm for m=%d n=%d k=%d (ta=%d tb=%d, bias=%d)", m, n, k, ta, tb, bias != nullptr);
            backend_fail("model widths that are multiples of 8 (16 bytes of bf16) always work", msg);
        }
        p.algo = heur.algo;
        it = plans.emplace(key, p).first;
    }
    const LtPlan& p = it->second;
    if (bias) cublasCheck(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
    float alpha = 1.0f;
    cublasCheck(cublasLtMatmul(g_lt, p.op, &alpha, A, p.la, B, p.lb, &beta, D, p.ld, D, p.ld, &p.algo, g_lt_workspace, LT_WORKSPACE, g_stream));
#endif
}

