// attention_forward.cu: causal GQA attention forward (qkv fused (B,T,(H+2G)hd) -> y, lse).
//   v1: naive, one thread per query row, three passes over the keys in global memory
//   v2: one warp per query row, 32-key K/V tiles in shared memory, online softmax, only the
//       log-sum-exp saved; scalar shared loads (2 per FMA in the score loop)
//   v3: llmc attention_forward_kernel: as v2, but 2-4 query rows per warp and float4 loads from
//       rows padded to hd + 4, so each shared read serves several rows
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

// v2: the previous llmc kernel (one warp per query row, scalar shared-memory loads), kept for
// the comparison with the current one (v3)
#define V2_ROWS 8
#define V2_TILE 32
template <typename T, int HD>
__global__ void __launch_bounds__(V2_ROWS * 32) attention_forward_v2(T* y, float* lse, const T* qkv, int Tn, int H, int G, float scale,
                                                                          const float* slopes) {
    constexpr int NL = HD / 32;
    SHARED_ARRAY(float, Ks, [V2_TILE][HD + 1]);
    SHARED_ARRAY(float, Vs, [V2_TILE][HD + 1]);
    SHARED_ARRAY(float, Qs, [V2_ROWS][HD]);
    const int b = blockIdx.z, h = blockIdx.y, t0 = blockIdx.x * V2_ROWS;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, t = t0 + warp, g = h / (H / G);
    const long qkv_dim = (long)(H + 2 * G) * HD;
    const T* base = qkv + (long)b * Tn * qkv_dim;
    const float slope = slopes ? slopes[h] : 0.0f;
    if (t < Tn)
        for (int i = 0; i < NL; i++) Qs[warp][lane + 32 * i] = to_f32(base[(long)t * qkv_dim + h * HD + lane + 32 * i]);
    float m = -INFINITY, l = 0.0f, acc[NL];
    for (int i = 0; i < NL; i++) acc[i] = 0.0f;
    const int last = min(Tn - 1, t0 + V2_ROWS - 1);
    for (int j0 = 0; j0 <= last; j0 += V2_TILE) {
        __syncthreads();  // the previous tile is consumed
        for (int idx = threadIdx.x; idx < V2_TILE * HD; idx += blockDim.x) {
            int r = idx / HD, c = idx % HD, t2 = j0 + r;
            float kv = 0.0f, vv = 0.0f;
            if (t2 < Tn) {
                kv = to_f32(base[(long)t2 * qkv_dim + (H + g) * HD + c]);
                vv = to_f32(base[(long)t2 * qkv_dim + (H + G + g) * HD + c]);
            }
            Ks[r][c] = kv;
            Vs[r][c] = vv;
        }
        __syncthreads();
        if (t < Tn && j0 <= t) {  // warp-uniform
            const int t2 = j0 + lane;
            float s = -INFINITY;
            if (t2 <= t) {
                float d = 0.0f;
                for (int c = 0; c < HD; c++) d += Qs[warp][c] * Ks[lane][c];
                s = d * scale + (-slope * (float)(t - t2));
            }
            float m_new = fmaxf(m, warp_max(s)), corr = expf(m - m_new);
            float p = t2 <= t ? expf(s - m_new) : 0.0f;
            l = l * corr + warp_sum(p);
            for (int i = 0; i < NL; i++) acc[i] *= corr;
            for (int j = 0; j < V2_TILE; j++) {
                float pj = __shfl_sync(FULL_MASK, p, j);
                for (int i = 0; i < NL; i++) acc[i] += pj * Vs[j][lane + 32 * i];
            }
            m = m_new;
        }
    }
    if (t < Tn) {
        float inv = 1.0f / l;
        T* yo = y + ((long)b * Tn + t) * H * HD + h * HD;
        for (int i = 0; i < NL; i++) yo[lane + 32 * i] = from_f32<T>(acc[i] * inv);
        if (lane == 0) lse[((long)b * H + h) * Tn + t] = m + logf(l);
    }
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
    if (!att_head_dim_ok(hd)) { printf("hd must be 32, 64 or 128\n"); return 1; }
    bf16* y3;
    float* l3;
    cudaCheck(cudaMalloc(&y3, ny * 2)); cudaCheck(cudaMalloc(&l3, nl * 4));
    const float* none = nullptr;
    dim3 grid2(ceil_div(T, V2_ROWS), H, B), grid3(ceil_div(T, att_rows_fwd(hd)), H, B), blk(256);
    auto v2 = [&] {
        with_head_dim(hd, [&](auto HD) { launch(attention_forward_v2<bf16, HD.value>, grid2, blk, y2, l2, (const bf16*)qkv, T, H, G, scale, none); });
    };
    AttView<const bf16*> q, k, v, nokey{nullptr, 0, 0};
    gqa_views<const bf16*>(qkv, H, G, hd, &q, &k, &v);
    auto v3 = [&] {
        with_head_dim(hd, [&](auto HD) { launch(attention_forward_kernel<bf16, HD.value, 0>, grid3, blk, y3, l3, q, k, nokey, v, T, H, G, scale, none); });
    };
    v1(); v2(); v3();
    cudaCheck(cudaDeviceSynchronize());
    check_same("v2 y", to_host(y2, ny), to_host(y1, ny), 1e-2f, 1e-2f);
    check_same("v2 lse", to_host(l2, nl), to_host(l1, nl), 1e-4f, 1e-4f);
    check_same("v3 y", to_host(y3, ny), to_host(y1, ny), 1e-2f, 1e-2f);
    check_same("v3 lse", to_host(l3, nl), to_host(l1, nl), 1e-4f, 1e-4f);
    float t1 = time_ms(v1, 5), t2 = time_ms(v2), t3 = time_ms(v3);
    report("v1 naive (thread per row)", t1, 0, flops, 0);
    report("v2 warp per row, tiled", t2, 0, flops, t1);
    report("v3 llmc (rows per warp, float4)", t3, 0, flops, t1);
    printf("  v3 / v2: %.2fx faster\n", t2 / t3);
    return 0;
}
