// mka.cu: MKA's own kernels (attention/mka.h), around the attention core that level 1 shares with
// MHA (benchmarked in attention_forward.cu / attention_backward.cu):
//   level 3, forward: each (token, head) query (unrotated) against M learned slots -> p (N,H,M), y3
//     v1: one thread per (token, head), the slots' keys and values from global memory
//     v2: llmc slots_forward_kernel: one warp per (token, head), lane j scores slot j, the
//         probabilities broadcast by shuffles to the lanes that own the output dims
//   level 2, the causal running mean of the value rows (one thread per (sequence, column), in
//     order; memory-bound): v1 only (it is llmc's running_mean_kernel), GB/s against the bytes
//     it must move
// usage: mka [B T H hd M]   (defaults: GPT-2 124M shapes: B=8 T=1024 H=12 hd=64 M=16)
#include "common.h"

__global__ void slots_forward_v1(float* p3, bf16* y3, const bf16* qkv, const bf16* mkv, int N, int H, int hd, int M, float scale) {
    long w = (long)blockIdx.x * blockDim.x + threadIdx.x;  // (n, h)
    if (w >= (long)N * H) return;
    long n = w / H;
    int h = (int)(w % H), D = H * hd;
    const bf16* q = qkv + n * 3 * D + h * hd;
    float s[32], mx = -INFINITY, sum = 0.0f;
    for (int j = 0; j < M; j++) {
        float d = 0.0f;
        for (int i = 0; i < hd; i++) d += to_f32(q[i]) * to_f32(mkv[(long)j * 3 * D + D + h * hd + i]);
        s[j] = d * scale;
        mx = fmaxf(mx, s[j]);
    }
    for (int j = 0; j < M; j++) { s[j] = expf(s[j] - mx); sum += s[j]; }
    for (int j = 0; j < M; j++) p3[w * M + j] = s[j] / sum;
    for (int i = 0; i < hd; i++) {
        float acc = 0.0f;
        for (int j = 0; j < M; j++) acc += s[j] / sum * to_f32(mkv[(long)j * 3 * D + 2 * D + h * hd + i]);
        y3[n * D + h * hd + i] = from_f32<bf16>(acc);
    }
}

int main(int argc, char** argv) {
    require_gpu("mka");
    int B = arg(argc, argv, 1, 8), T = arg(argc, argv, 2, 1024), H = arg(argc, argv, 3, 12), hd = arg(argc, argv, 4, 64), M = arg(argc, argv, 5, 16);
    printf("B=%d T=%d H=%d hd=%d M=%d (bf16)\n", B, T, H, hd, M);
    if (M < 1 || M > 32 || hd % 32) { printf("M must be 1..32 and hd a multiple of 32\n"); return 1; }
    const int N = B * T, D = H * hd;
    const float scale = 1.0f / sqrtf((float)hd);
    bf16 *qkv = dev_random<bf16>((size_t)N * 3 * D, 1), *mkv = dev_random<bf16>((size_t)M * 3 * D, 2), *y1, *y2, *mean;
    float *p1, *p2;
    cudaCheck(cudaMalloc(&y1, (size_t)N * D * 2)); cudaCheck(cudaMalloc(&y2, (size_t)N * D * 2)); cudaCheck(cudaMalloc(&mean, (size_t)N * D * 2));
    cudaCheck(cudaMalloc(&p1, (size_t)N * H * M * 4)); cudaCheck(cudaMalloc(&p2, (size_t)N * H * M * 4));
    float* nolse = nullptr;
    auto v1 = [&] { launch(slots_forward_v1, dim3(ceil_div((long)N * H, 128)), dim3(128), p1, y1, (const bf16*)qkv, (const bf16*)mkv, N, H, hd, M, scale); };
    auto v2 = [&] {
        launch(slots_forward_kernel<bf16>, dim3(ceil_div((long)N * H * 32, 256)), dim3(256), p2, y2, nolse, (const bf16*)qkv, (const bf16*)mkv, N, H, hd, M, scale);
    };
    v1(); v2();
    cudaCheck(cudaDeviceSynchronize());
    check_same("v2 slots y3", to_host(y2, (size_t)N * D), to_host(y1, (size_t)N * D), 1e-2f, 1e-2f);
    check_same("v2 slots p", to_host(p2, (size_t)N * H * M), to_host(p1, (size_t)N * H * M), 1e-5f, 1e-4f);
    // bytes: q read, y3 written (bf16), p written (fp32), the slots once
    double bytes3 = (double)N * D * 2 * 2 + (double)N * H * M * 4 + (double)M * 2 * D * 2;
    double flops3 = (double)N * H * M * hd * 4;
    float t1 = time_ms(v1), t2 = time_ms(v2);
    printf("level 3 (slots) forward\n");
    report("v1 thread per (token, head)", t1, bytes3, flops3, 0);
    report("v2 llmc warp per (token, head)", t2, bytes3, flops3, t1);
    auto mean1 = [&] {
        launch(running_mean_kernel<bf16>, dim3(ceil_div((long)B * D, 256)), dim3(256), mean, (long)D, (const bf16*)(qkv + 2 * D), 3L * D, B, T, D);
    };
    mean1();
    cudaCheck(cudaDeviceSynchronize());
    {  // against the host: the running mean of the value rows of sequence 0, column 0..D
        std::vector<float> src = to_host(qkv, (size_t)N * 3 * D), got = to_host(mean, (size_t)N * D), want((size_t)N * D);
        for (int b = 0; b < B; b++)
            for (int c = 0; c < D; c++) {
                float acc = 0.0f;
                for (int t = 0; t < T; t++) {
                    acc += src[((size_t)b * T + t) * 3 * D + 2 * D + c];
                    want[((size_t)b * T + t) * D + c] = (float)(bf16)(acc / (t + 1));
                }
            }
        check_same("v1 running mean vs host", got, want, 1e-6f, 1e-6f);
    }
    float tm = time_ms(mean1);
    printf("level 2 (running mean) forward\n");
    report("v1 llmc thread per (sequence, column)", tm, (double)N * D * 2 * 2, 0, 0);
    return 0;
}
