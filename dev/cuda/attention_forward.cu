// attention_forward.cu: causal GQA attention forward (qkv fused (B,T,(H+2G)hd) -> y, lse).
//   v1: naive, one thread per query row, three passes over the keys in global memory
//   v2: llmc attention_forward_kernel: one warp per row, 32-key K/V tiles in shared memory,
//       online softmax, only the log-sum-exp saved
// FLOPs counted: 4 hd per (query, key <= query) pair (QK^T and PV).
// usage: attention_forward [B T H G hd]   (defaults: GPT-2 124M shapes, B=8 T=1024 H=12 G=12 hd=64)
#include "common.h"

__global__ void attention_forward_v1(bf16* y, float* lse, const bf16* qkv, int B, int Tn, int H, int G, int hd, float scale) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;  // (b, h, t)
    if (i >= (long)B * H * Tn) return;
    int t = (int)(i % Tn), h = (int)((i / Tn) % H), b = (int)(i / ((long)Tn * H)), g = h / (H / G);
    long row = (long)(H + 2 * G) * hd;
    const bf16* q = qkv + ((long)b * Tn + t) * row + h * hd;
    auto score = [&](int t2) {
        const bf16* k = qkv + ((long)b * Tn + t2) * row + (H + g) * hd;
        float s = 0.0f;
        for (int c = 0; c < hd; c++) s += to_f32(q[c]) * to_f32(k[c]);
        return s * scale;
    };
    float m = -INFINITY, l = 0.0f;
    for (int t2 = 0; t2 <= t; t2++) m = fmaxf(m, score(t2));
    for (int t2 = 0; t2 <= t; t2++) l += expf(score(t2) - m);
    bf16* yo = y + ((long)b * Tn + t) * H * hd + h * hd;
    for (int c = 0; c < hd; c++) {
        float acc = 0.0f;
        for (int t2 = 0; t2 <= t; t2++) acc += expf(score(t2) - m) * to_f32(qkv[((long)b * Tn + t2) * row + (H + G + g) * hd + c]);
        yo[c] = from_f32<bf16>(acc / l);
    }
    lse[i] = m + logf(l);
}

int main(int argc, char** argv) {
    require_gpu("attention_forward");
    int B = arg(argc, argv, 1, 8), T = arg(argc, argv, 2, 1024), H = arg(argc, argv, 3, 12), G = arg(argc, argv, 4, 12), hd = arg(argc, argv, 5, 64);
    printf("B=%d T=%d H=%d G=%d hd=%d (bf16)\n", B, T, H, G, hd);
    float scale = 1.0f / sqrtf((float)hd);
    size_t nq = (size_t)B * T * (H + 2 * G) * hd, ny = (size_t)B * T * H * hd, nl = (size_t)B * H * T;
    bf16* qkv = dev_random<bf16>(nq, 1);
    bf16 *y1, *y2;
    float *l1, *l2;
    cudaCheck(cudaMalloc(&y1, ny * 2)); cudaCheck(cudaMalloc(&y2, ny * 2));
    cudaCheck(cudaMalloc(&l1, nl * 4)); cudaCheck(cudaMalloc(&l2, nl * 4));
    double flops = 4.0 * hd * B * H * ((double)T * (T + 1) / 2);
    auto v1 = [&] { launch(attention_forward_v1, dim3(ceil_div(nl, 128)), dim3(128), y1, l1, (const bf16*)qkv, B, T, H, G, hd, scale); };
    dim3 grid(ceil_div(T, ATT_ROWS), H, B);
    auto v2 = [&] {
        if (hd == 64) launch(attention_forward_kernel<bf16, 64>, grid, dim3(ATT_ROWS * 32), y2, l2, (const bf16*)qkv, T, H, G, scale, (const float*)nullptr);
        else if (hd == 128) launch(attention_forward_kernel<bf16, 128>, grid, dim3(ATT_ROWS * 32), y2, l2, (const bf16*)qkv, T, H, G, scale, (const float*)nullptr);
        else launch(attention_forward_kernel<bf16, 32>, grid, dim3(ATT_ROWS * 32), y2, l2, (const bf16*)qkv, T, H, G, scale, (const float*)nullptr);
    };
    v1(); v2();
    cudaCheck(cudaDeviceSynchronize());
    check_same("v2 y", to_host(y2, ny), to_host(y1, ny), 1e-2f, 1e-2f);
    check_same("v2 lse", to_host(l2, nl), to_host(l1, nl), 1e-4f, 1e-4f);
    float t1 = time_ms(v1, 5), t2 = time_ms(v2);
    report("v1 naive (thread per row)", t1, 0, flops, 0);
    report("v2 llmc (warp per row, tiled)", t2, 0, flops, t1);
    return 0;
}
