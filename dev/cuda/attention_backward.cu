// attention_backward.cu: causal GQA attention backward (dy, saved lse -> dq, dk, dv in dqkv).
//   v1: naive, one thread per query row: recomputes p, writes dq, scatters dk/dv with atomics
//       (not deterministic: a baseline only, never used for training)
//   v2: three kernels: D = dy.y, dq (warp per query row), dk/dv (warp per key row;
//       deterministic, no atomics); scalar shared loads
//   v3: llmc's kernels: as v2, with 1-4 rows per warp and float4 loads from padded rows
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

// v2: the previous llmc kernel (one warp per query row, scalar shared-memory loads), kept for
// the comparison with the current one (v3)
#define V2_ROWS 8
#define V2_TILE 32
template <typename T, int HD>
__global__ void __launch_bounds__(V2_ROWS * 32) attention_backward_dq_v2(T* dqkv, const T* qkv, const T* dy, const float* lse, const float* D,
                                                                              int Tn, int H, int G, float scale, const float* slopes) {
    constexpr int NL = HD / 32;
    SHARED_ARRAY(float, Ks, [V2_TILE][HD + 1]);
    SHARED_ARRAY(float, Vs, [V2_TILE][HD + 1]);
    SHARED_ARRAY(float, Qs, [V2_ROWS][HD]);
    SHARED_ARRAY(float, dYs, [V2_ROWS][HD]);
    const int b = blockIdx.z, h = blockIdx.y, t0 = blockIdx.x * V2_ROWS;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, t = t0 + warp, g = h / (H / G);
    const long qkv_dim = (long)(H + 2 * G) * HD;
    const T* base = qkv + (long)b * Tn * qkv_dim;
    const float slope = slopes ? slopes[h] : 0.0f;
    float L = 0.0f, Dt = 0.0f, dq[NL];
    for (int i = 0; i < NL; i++) dq[i] = 0.0f;
    if (t < Tn) {
        for (int i = 0; i < NL; i++) {
            Qs[warp][lane + 32 * i] = to_f32(base[(long)t * qkv_dim + h * HD + lane + 32 * i]);
            dYs[warp][lane + 32 * i] = to_f32(dy[((long)b * Tn + t) * H * HD + h * HD + lane + 32 * i]);
        }
        L = lse[((long)b * H + h) * Tn + t];
        Dt = D[((long)b * H + h) * Tn + t];
    }
    const int last = min(Tn - 1, t0 + V2_ROWS - 1);
    for (int j0 = 0; j0 <= last; j0 += V2_TILE) {
        __syncthreads();
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
        if (t < Tn && j0 <= t) {
            const int t2 = j0 + lane;
            float ds = 0.0f;
            if (t2 <= t) {
                float d = 0.0f, dp = 0.0f;
                for (int c = 0; c < HD; c++) {
                    d += Qs[warp][c] * Ks[lane][c];
                    dp += dYs[warp][c] * Vs[lane][c];
                }
                float p = expf(d * scale + (-slope * (float)(t - t2)) - L);
                ds = p * (dp - Dt) * scale;
            }
            for (int j = 0; j < V2_TILE; j++) {
                float dsj = __shfl_sync(FULL_MASK, ds, j);
                for (int i = 0; i < NL; i++) dq[i] += dsj * Ks[j][lane + 32 * i];
            }
        }
    }
    if (t < Tn)
        for (int i = 0; i < NL; i++) dqkv[((long)b * Tn + t) * qkv_dim + h * HD + lane + 32 * i] = from_f32<T>(dq[i]);
}
template <typename T, int HD>
__global__ void __launch_bounds__(V2_ROWS * 32) attention_backward_dkv_v2(T* dqkv, const T* qkv, const T* dy, const float* lse, const float* D,
                                                                               int Tn, int H, int G, float scale, const float* slopes) {
    constexpr int NL = HD / 32;
    SHARED_ARRAY(float, Qs, [V2_TILE][HD + 1]);
    SHARED_ARRAY(float, dYs, [V2_TILE][HD + 1]);
    SHARED_ARRAY(float, Kw, [V2_ROWS][HD]);
    SHARED_ARRAY(float, Vw, [V2_ROWS][HD]);
    SHARED_ARRAY(float, Ls, [V2_TILE]);
    SHARED_ARRAY(float, Ds, [V2_TILE]);
    const int b = blockIdx.z, g = blockIdx.y, k0 = blockIdx.x * V2_ROWS;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, t2 = k0 + warp, group = H / G;
    const long qkv_dim = (long)(H + 2 * G) * HD;
    const T* base = qkv + (long)b * Tn * qkv_dim;
    if (t2 < Tn)
        for (int i = 0; i < NL; i++) {
            Kw[warp][lane + 32 * i] = to_f32(base[(long)t2 * qkv_dim + (H + g) * HD + lane + 32 * i]);
            Vw[warp][lane + 32 * i] = to_f32(base[(long)t2 * qkv_dim + (H + G + g) * HD + lane + 32 * i]);
        }
    float dk[NL], dv[NL];
    for (int i = 0; i < NL; i++) dk[i] = dv[i] = 0.0f;
    for (int h = g * group; h < (g + 1) * group; h++) {
        const float slope = slopes ? slopes[h] : 0.0f;
        for (int j0 = k0 / V2_TILE * V2_TILE; j0 < Tn; j0 += V2_TILE) {
            __syncthreads();
            for (int idx = threadIdx.x; idx < V2_TILE * HD; idx += blockDim.x) {
                int r = idx / HD, c = idx % HD, t = j0 + r;
                float qv = 0.0f, dv_ = 0.0f;
                if (t < Tn) {
                    qv = to_f32(base[(long)t * qkv_dim + h * HD + c]);
                    dv_ = to_f32(dy[((long)b * Tn + t) * H * HD + h * HD + c]);
                }
                Qs[r][c] = qv;
                dYs[r][c] = dv_;
            }
            if (threadIdx.x < V2_TILE) {
                int t = j0 + threadIdx.x;
                Ls[threadIdx.x] = t < Tn ? lse[((long)b * H + h) * Tn + t] : 0.0f;
                Ds[threadIdx.x] = t < Tn ? D[((long)b * H + h) * Tn + t] : 0.0f;
            }
            __syncthreads();
            if (t2 < Tn && j0 + V2_TILE - 1 >= t2) {  // warp-uniform: some query of the tile sees key t2
                const int t = j0 + lane;
                float p = 0.0f, ds = 0.0f;
                if (t >= t2 && t < Tn) {
                    float d = 0.0f, dp = 0.0f;
                    for (int c = 0; c < HD; c++) {
                        d += Qs[lane][c] * Kw[warp][c];
                        dp += dYs[lane][c] * Vw[warp][c];
                    }
                    p = expf(d * scale + (-slope * (float)(t - t2)) - Ls[lane]);
                    ds = p * (dp - Ds[lane]) * scale;
                }
                for (int j = 0; j < V2_TILE; j++) {
                    float pj = __shfl_sync(FULL_MASK, p, j), dsj = __shfl_sync(FULL_MASK, ds, j);
                    for (int i = 0; i < NL; i++) {
                        dv[i] += pj * dYs[j][lane + 32 * i];
                        dk[i] += dsj * Qs[j][lane + 32 * i];
                    }
                }
            }
        }
    }
    if (t2 < Tn)
        for (int i = 0; i < NL; i++) {
            dqkv[((long)b * Tn + t2) * qkv_dim + (H + g) * HD + lane + 32 * i] = from_f32<T>(dk[i]);
            dqkv[((long)b * Tn + t2) * qkv_dim + (H + G + g) * HD + lane + 32 * i] = from_f32<T>(dv[i]);
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
    if (!att_head_dim_ok(hd)) { printf("hd must be 32, 64 or 128\n"); return 1; }
    const float* none = nullptr;
    bf16* dq3;
    cudaCheck(cudaMalloc(&dq3, nq * 2));
    dim3 blk(256), gf(ceil_div(T, att_rows_fwd(hd)), H, B);
    dim3 gq2(ceil_div(T, V2_ROWS), H, B), gk2(ceil_div(T, V2_ROWS), G, B);
    dim3 gq3(ceil_div(T, att_rows_bwd(hd)), H, B), gk3(ceil_div(T, att_rows_bwd(hd)), G, B);
    AttView<const bf16*> q, k, v, nokey{nullptr, 0, 0};
    AttView<bf16*> gq, gk, gv;
    gqa_views<const bf16*>(qkv, H, G, hd, &q, &k, &v);
    gqa_views<bf16*>(dq3, H, G, hd, &gq, &gk, &gv);
    const float* nolse = nullptr;
    float* nopart = nullptr;
    with_head_dim(hd, [&](auto HD) { launch(attention_forward_kernel<bf16, HD.value, 0>, gf, blk, y, lse, q, k, nokey, v, T, H, G, scale, none); });
    auto v1 = [&] {
        cudaCheck(cudaMemsetAsync(dq1, 0, nq * 4, g_stream));
        launch(attention_backward_v1, dim3(ceil_div(nl, 128)), dim3(128), dq1, (const bf16*)qkv, (const bf16*)y, (const bf16*)dy, (const float*)lse, B, T, H, G, hd, scale);
    };
    auto dot = [&] { launch(attention_backward_dot_kernel<bf16>, dim3(ceil_div(nl, 256)), dim3(256), D, (const bf16*)dy, (const bf16*)y, nolse, B, T, H, hd); };
    auto v2 = [&] {
        dot();
        with_head_dim(hd, [&](auto HD) {
            launch(attention_backward_dq_v2<bf16, HD.value>, gq2, blk, dq2, (const bf16*)qkv, (const bf16*)dy, (const float*)lse, (const float*)D, T, H, G, scale, none);
            launch(attention_backward_dkv_v2<bf16, HD.value>, gk2, blk, dq2, (const bf16*)qkv, (const bf16*)dy, (const float*)lse, (const float*)D, T, H, G, scale, none);
        });
    };
    auto v3 = [&] {
        dot();
        with_head_dim(hd, [&](auto HD) {
            launch(attention_backward_dq_kernel<bf16, HD.value, 0>, gq3, blk, gq, q, k, nokey, v, (const bf16*)dy, (const float*)lse, (const float*)D, T, H, G, scale, none);
            launch(attention_backward_dkv_kernel<bf16, HD.value, 0>, gk3, blk, gk, gv, nopart, q, k, nokey, v, (const bf16*)dy, (const float*)lse, (const float*)D, T, H, G, scale, none);
        });
    };
    v1(); v2(); v3();
    cudaCheck(cudaDeviceSynchronize());
    check_same("v2 dq dk dv", to_host(dq2, nq), to_host(dq1, nq), 2e-2f, 2e-2f);
    check_same("v3 dq dk dv", to_host(dq3, nq), to_host(dq1, nq), 2e-2f, 2e-2f);
    double flops = 8.0 * hd * B * H * ((double)T * (T + 1) / 2);
    float t1 = time_ms(v1, 3), t2 = time_ms(v2), t3 = time_ms(v3);
    report("v1 naive (thread per row, atomics)", t1, 0, flops, 0);
    report("v2 3 kernels, deterministic", t2, 0, flops, t1);
    report("v3 llmc (rows per warp, float4)", t3, 0, flops, t1);
    printf("  v3 / v2: %.2fx faster\n", t2 / t3);
    return 0;
}
