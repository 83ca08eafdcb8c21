// attention_backward.cu: causal GQA attention backward (dy, saved lse -> dq, dk, dv in dqkv).
//   v1: naive, one thread per query row: recomputes p, writes dq, scatters dk/dv with atomics
//       (not deterministic: a baseline only, never used for training)
//   v2: llmc's three kernels: D = dy.y, dq (warp per query row), dk/dv (warp per key row,
//       deterministic, no atomics)
// FLOPs counted: 8 hd per (query, key <= query) pair (QK^T, dP = dY V^T, dQ, dK; dV shares P).
// usage: attention_backward [B T H G hd]
#include "common.h"

__global__ void attention_backward_v1(float* dqkv, const bf16* qkv, const bf16* y, const bf16* dy, const float* lse, int B, int Tn, int H, int G,
                                      int hd, float scale) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long)B * H * Tn) return;
    int t = (int)(i % Tn), h = (int)((i / Tn) % H), b = (int)(i / ((long)Tn * H)), g = h / (H / G);
    long row = (long)(H + 2 * G) * hd;
    const bf16* q = qkv + ((long)b * Tn + t) * row + h * hd;
    const bf16* dyv = dy + ((long)b * Tn + t) * H * hd + h * hd;
    const bf16* yv = y + ((long)b * Tn + t) * H * hd + h * hd;
    float D = 0.0f;
    for (int c = 0; c < hd; c++) D += to_f32(dyv[c]) * to_f32(yv[c]);
    float* dq = dqkv + ((long)b * Tn + t) * row + h * hd;
    for (int t2 = 0; t2 <= t; t2++) {
        const bf16* k = qkv + ((long)b * Tn + t2) * row + (H + g) * hd;
        const bf16* v = qkv + ((long)b * Tn + t2) * row + (H + G + g) * hd;
        float s = 0.0f, dp = 0.0f;
        for (int c = 0; c < hd; c++) { s += to_f32(q[c]) * to_f32(k[c]); dp += to_f32(dyv[c]) * to_f32(v[c]); }
        float p = expf(s * scale - lse[i]), ds = p * (dp - D) * scale;
        float* dk = dqkv + ((long)b * Tn + t2) * row + (H + g) * hd;
        float* dv = dqkv + ((long)b * Tn + t2) * row + (H + G + g) * hd;
        for (int c = 0; c < hd; c++) {
            dq[c] += ds * to_f32(k[c]);
            atomicAdd(&dk[c], ds * to_f32(q[c]));
            atomicAdd(&dv[c], p * to_f32(dyv[c]));
        }
    }
}

int main(int argc, char** argv) {
    require_gpu("attention_backward");
    int B = arg(argc, argv, 1, 8), T = arg(argc, argv, 2, 1024), H = arg(argc, argv, 3, 12), G = arg(argc, argv, 4, 12), hd = arg(argc, argv, 5, 64);
    printf("B=%d T=%d H=%d G=%d hd=%d (bf16)\n", B, T, H, G, hd);
    float scale = 1.0f / sqrtf((float)hd);
    size_t nq = (size_t)B * T * (H + 2 * G) * hd, ny = (size_t)B * T * H * hd, nl = (size_t)B * H * T;
    bf16 *qkv = dev_random<bf16>(nq, 1), *dy = dev_random<bf16>(ny, 2), *y, *dq2;
    float *lse, *D, *dq1;
    cudaCheck(cudaMalloc(&y, ny * 2)); cudaCheck(cudaMalloc(&lse, nl * 4)); cudaCheck(cudaMalloc(&D, nl * 4));
    cudaCheck(cudaMalloc(&dq1, nq * 4)); cudaCheck(cudaMalloc(&dq2, nq * 2));
    dim3 grid_q(ceil_div(T, ATT_ROWS), H, B), grid_k(ceil_div(T, ATT_ROWS), G, B), blk(ATT_ROWS * 32);
    auto fwd = [&] {
        if (hd == 64) launch(attention_forward_kernel<bf16, 64>, grid_q, blk, y, lse, (const bf16*)qkv, T, H, G, scale, (const float*)nullptr);
        else launch(attention_forward_kernel<bf16, 128>, grid_q, blk, y, lse, (const bf16*)qkv, T, H, G, scale, (const float*)nullptr);
    };
    if (hd != 64 && hd != 128) { printf("this benchmark takes hd 64 or 128\n"); return 1; }
    fwd();
    auto v1 = [&] {
        cudaCheck(cudaMemsetAsync(dq1, 0, nq * 4, g_stream));
        launch(attention_backward_v1, dim3(ceil_div(nl, 128)), dim3(128), dq1, (const bf16*)qkv, (const bf16*)y, (const bf16*)dy, (const float*)lse, B, T, H, G, hd, scale);
    };
    auto v2 = [&] {
        launch(attention_backward_dot_kernel<bf16>, dim3(ceil_div(nl, 256)), dim3(256), D, (const bf16*)dy, (const bf16*)y, B, T, H, hd);
        if (hd == 64) {
            launch(attention_backward_dq_kernel<bf16, 64>, grid_q, blk, dq2, (const bf16*)qkv, (const bf16*)dy, (const float*)lse, (const float*)D, T, H, G, scale, (const float*)nullptr);
            launch(attention_backward_dkv_kernel<bf16, 64>, grid_k, blk, dq2, (const bf16*)qkv, (const bf16*)dy, (const float*)lse, (const float*)D, T, H, G, scale, (const float*)nullptr);
        } else {
            launch(attention_backward_dq_kernel<bf16, 128>, grid_q, blk, dq2, (const bf16*)qkv, (const bf16*)dy, (const float*)lse, (const float*)D, T, H, G, scale, (const float*)nullptr);
            launch(attention_backward_dkv_kernel<bf16, 128>, grid_k, blk, dq2, (const bf16*)qkv, (const bf16*)dy, (const float*)lse, (const float*)D, T, H, G, scale, (const float*)nullptr);
        }
    };
    v1(); v2();
    cudaCheck(cudaDeviceSynchronize());
    check_same("v2 dq dk dv", to_host(dq2, nq), to_host(dq1, nq), 2e-2f, 2e-2f);
    double flops = 8.0 * hd * B * H * ((double)T * (T + 1) / 2);
    float t1 = time_ms(v1, 3), t2 = time_ms(v2);
    report("v1 naive (thread per row, atomics)", t1, 0, flops, 0);
    report("v2 llmc (3 kernels, deterministic)", t2, 0, flops, t1);
    return 0;
}
