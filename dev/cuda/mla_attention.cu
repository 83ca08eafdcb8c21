// mla_attention.cu: MLA's training attention in the expanded form: per head a key of hd "nope"
// dims (up-projected from the latent) plus dR rope dims shared by every head (k_R), values of hd.
// q (B,T,H,hd+dR); kv (B,T,H,2hd): k_nope then v per head, as W_UKV's output; k_R inside the
// down-projection's rows (B,T,dc+dR). y (B,T,H,hd), lse (B,H,T).
//   v1: naive, one thread per query row, three passes over the keys in global memory (forward);
//       one thread per query row with atomics for dk / dv / dk_R (backward, not deterministic)
//   v2: llmc's kernels (attention_forward_kernel / attention_backward_* with DB = dR): the split
//       key staged as two tiles, the shared part's gradient summed over heads in a second pass
// FLOPs counted per (query, key <= query) pair: forward 2(hd+dR) + 2hd; backward 3 x 2(hd+dR)
// (scores again, dq, dk) + 2 x 2hd (dp, dv).
// usage: mla_attention [B T H hd dR dc]   (defaults: GPT-2 124M shapes with MLA: B=8 T=1024 H=12
//        hd=64 dR=32 dc=192)
#include "common.h"

__global__ void mla_forward_v1(bf16* y, float* lse, const bf16* q, const bf16* kv, const bf16* dkv, int B, int Tn, int H, int hd, int dR,
                               int W, float scale) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;  // (b, h, t)
    if (i >= (long)B * H * Tn) return;
    int t = (int)(i % Tn), h = (int)((i / Tn) % H), b = (int)(i / ((long)Tn * H)), dc = W - dR;
    const bf16* qv = q + ((long)b * Tn + t) * H * (hd + dR) + h * (hd + dR);
    auto score = [&](int t2) {
        const bf16* k = kv + ((long)b * Tn + t2) * H * 2 * hd + h * 2 * hd;
        const bf16* kr = dkv + ((long)b * Tn + t2) * W + dc;
        float s = 0.0f;
        for (int c = 0; c < hd; c++) s += to_f32(qv[c]) * to_f32(k[c]);
        for (int c = 0; c < dR; c++) s += to_f32(qv[hd + c]) * to_f32(kr[c]);
        return s * scale;
    };
    float m = -INFINITY, l = 0.0f;
    for (int t2 = 0; t2 <= t; t2++) m = fmaxf(m, score(t2));
    for (int t2 = 0; t2 <= t; t2++) l += expf(score(t2) - m);
    bf16* yo = y + ((long)b * Tn + t) * H * hd + h * hd;
    for (int c = 0; c < hd; c++) {
        float acc = 0.0f;
        for (int t2 = 0; t2 <= t; t2++) acc += expf(score(t2) - m) * to_f32(kv[((long)b * Tn + t2) * H * 2 * hd + h * 2 * hd + hd + c]);
        yo[c] = from_f32<bf16>(acc / l);
    }
    lse[i] = m + logf(l);
}
// dq (B,T,H,hd+dR), dkv (B,T,H,2hd), dkr (B,T,dR), fp32, zeroed by the caller
__global__ void mla_backward_v1(float* dq, float* dkvb, float* dkr, const bf16* q, const bf16* kv, const bf16* dkv, const bf16* y, const bf16* dy,
                                const float* lse, int B, int Tn, int H, int hd, int dR, int W, float scale) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long)B * H * Tn) return;
    int t = (int)(i % Tn), h = (int)((i / Tn) % H), b = (int)(i / ((long)Tn * H)), dc = W - dR, qw = hd + dR;
    const bf16* qv = q + ((long)b * Tn + t) * H * qw + h * qw;
    const bf16* dyv = dy + ((long)b * Tn + t) * H * hd + h * hd;
    const bf16* yv = y + ((long)b * Tn + t) * H * hd + h * hd;
    float D = 0.0f;
    for (int c = 0; c < hd; c++) D += to_f32(dyv[c]) * to_f32(yv[c]);
    float* dqv = dq + ((long)b * Tn + t) * H * qw + h * qw;
    for (int t2 = 0; t2 <= t; t2++) {
        const bf16* k = kv + ((long)b * Tn + t2) * H * 2 * hd + h * 2 * hd;
        const bf16* kr = dkv + ((long)b * Tn + t2) * W + dc;
        float s = 0.0f, dp = 0.0f;
        for (int c = 0; c < hd; c++) { s += to_f32(qv[c]) * to_f32(k[c]); dp += to_f32(dyv[c]) * to_f32(k[hd + c]); }
        for (int c = 0; c < dR; c++) s += to_f32(qv[hd + c]) * to_f32(kr[c]);
        float p = expf(s * scale - lse[i]), ds = p * (dp - D) * scale;
        float* dk = dkvb + ((long)b * Tn + t2) * H * 2 * hd + h * 2 * hd;
        float* dr = dkr + ((long)b * Tn + t2) * dR;
        for (int c = 0; c < hd; c++) {
            dqv[c] += ds * to_f32(k[c]);
            atomicAdd(&dk[c], ds * to_f32(qv[c]));
            atomicAdd(&dk[hd + c], p * to_f32(dyv[c]));
        }
        for (int c = 0; c < dR; c++) {
            dqv[hd + c] += ds * to_f32(kr[c]);
            atomicAdd(&dr[c], ds * to_f32(qv[hd + c]));
        }
    }
}

int main(int argc, char** argv) {
    require_gpu("mla_attention");
    int B = arg(argc, argv, 1, 8), T = arg(argc, argv, 2, 1024), H = arg(argc, argv, 3, 12), hd = arg(argc, argv, 4, 64), dR = arg(argc, argv, 5, 32),
        dc = arg(argc, argv, 6, 192);
    printf("B=%d T=%d H=%d hd=%d dR=%d dc=%d (bf16)\n", B, T, H, hd, dR, dc);
    if (!att_dims_ok(hd, dR)) { printf("hd must be 32, 64 or 128 and dR 0, 16, 32 (or 64 at hd 32)\n"); return 1; }
    const int qw = hd + dR, W = dc + dR;
    const float scale = 1.0f / sqrtf((float)qw);
    size_t N = (size_t)B * T, nq = N * H * qw, nkv = N * H * 2 * hd, ndkv = N * W, ny = N * H * hd, nl = (size_t)B * H * T;
    bf16 *q = dev_random<bf16>(nq, 1), *kv = dev_random<bf16>(nkv, 2), *dkv = dev_random<bf16>(ndkv, 3), *dy = dev_random<bf16>(ny, 4);
    bf16 *y1, *y2, *gq, *gkv, *gdkv;
    float *l1, *l2, *D, *part, *fq, *fkv, *fkr;
    cudaCheck(cudaMalloc(&y1, ny * 2)); cudaCheck(cudaMalloc(&y2, ny * 2));
    cudaCheck(cudaMalloc(&l1, nl * 4)); cudaCheck(cudaMalloc(&l2, nl * 4)); cudaCheck(cudaMalloc(&D, nl * 4));
    cudaCheck(cudaMalloc(&part, N * H * std::max(dR, 1) * 4));
    cudaCheck(cudaMalloc(&gq, nq * 2)); cudaCheck(cudaMalloc(&gkv, nkv * 2)); cudaCheck(cudaMalloc(&gdkv, ndkv * 2));
    cudaCheck(cudaMalloc(&fq, nq * 4)); cudaCheck(cudaMalloc(&fkv, nkv * 4)); cudaCheck(cudaMalloc(&fkr, N * std::max(dR, 1) * 4));
    const double pairs = (double)B * H * ((double)T * (T + 1) / 2);
    const double f_fwd = pairs * (2.0 * qw + 2.0 * hd), f_bwd = pairs * (3 * 2.0 * qw + 2 * 2.0 * hd);
    const float* none = nullptr;
    AttView<const bf16*> Q{q, (long)H * qw, qw}, KA{kv, (long)H * 2 * hd, 2 * hd}, KB{dkv + dc, W, 0}, V{kv + hd, (long)H * 2 * hd, 2 * hd};
    AttView<bf16*> dQ{gq, (long)H * qw, qw}, dKA{gkv, (long)H * 2 * hd, 2 * hd}, dV{gkv + hd, (long)H * 2 * hd, 2 * hd};
    dim3 blk(256), gf(ceil_div(T, att_rows_fwd(hd)), H, B), gq2(ceil_div(T, att_rows_bwd(hd)), H, B), gk2(ceil_div(T, att_rows_bwd(hd)), H, B);
    auto fwd1 = [&] { launch(mla_forward_v1, dim3(ceil_div(nl, 128)), dim3(128), y1, l1, (const bf16*)q, (const bf16*)kv, (const bf16*)dkv, B, T, H, hd, dR, W, scale); };
    auto fwd2 = [&] {
        with_att_dims(hd, dR, [&](auto DA, auto DB) {
            launch(attention_forward_kernel<bf16, DA.value, DB.value>, gf, blk, y2, l2, Q, KA, KB, V, T, H, H, scale, none);
        });
    };
    fwd1(); fwd2();
    cudaCheck(cudaDeviceSynchronize());
    check_same("v2 forward y", to_host(y2, ny), to_host(y1, ny), 1e-2f, 1e-2f);
    check_same("v2 forward lse", to_host(l2, nl), to_host(l1, nl), 1e-4f, 1e-4f);
    float t1 = time_ms(fwd1, 3), t2 = time_ms(fwd2);
    printf("forward (%.1f GFLOP)\n", f_fwd / 1e9);
    report("v1 naive (thread per row)", t1, 0, f_fwd, 0);
    report("v2 llmc split-key kernel", t2, 0, f_fwd, t1);

    auto bwd1 = [&] {
        cudaCheck(cudaMemsetAsync(fq, 0, nq * 4, g_stream));
        cudaCheck(cudaMemsetAsync(fkv, 0, nkv * 4, g_stream));
        cudaCheck(cudaMemsetAsync(fkr, 0, N * std::max(dR, 1) * 4, g_stream));
        launch(mla_backward_v1, dim3(ceil_div(nl, 128)), dim3(128), fq, fkv, fkr, (const bf16*)q, (const bf16*)kv, (const bf16*)dkv,
               (const bf16*)y2, (const bf16*)dy, (const float*)l2, B, T, H, hd, dR, W, scale);
    };
    const float* nolse = nullptr;
    auto bwd2 = [&] {
        launch(attention_backward_dot_kernel<bf16>, dim3(ceil_div(nl, 256)), dim3(256), D, (const bf16*)dy, (const bf16*)y2, nolse, B, T, H, hd);
        with_att_dims(hd, dR, [&](auto DA, auto DB) {
            launch(attention_backward_dq_kernel<bf16, DA.value, DB.value>, gq2, blk, dQ, Q, KA, KB, V, (const bf16*)dy, (const float*)l2,
                   (const float*)D, T, H, H, scale, none);
            launch(attention_backward_dkv_kernel<bf16, DA.value, DB.value>, gk2, blk, dKA, dV, part, Q, KA, KB, V, (const bf16*)dy,
                   (const float*)l2, (const float*)D, T, H, H, scale, none);
        });
        if (dR) launch(attention_shared_key_sum_kernel<bf16>, dim3(ceil_div((long)N * dR, 256)), dim3(256), gdkv + dc, (long)W, (const float*)part, (int)N, H, dR);
    };
    bwd1(); bwd2();
    cudaCheck(cudaDeviceSynchronize());
    check_same("v2 backward dq", to_host(gq, nq), to_host(fq, nq), 2e-2f, 2e-2f);
    check_same("v2 backward dk_nope, dv", to_host(gkv, nkv), to_host(fkv, nkv), 2e-2f, 2e-2f);
    if (dR) {
        std::vector<float> a = to_host(gdkv, ndkv), b = to_host(fkr, N * dR), a2(N * dR);
        for (size_t n = 0; n < N; n++)
            for (int c = 0; c < dR; c++) a2[n * dR + c] = a[n * W + dc + c];
        check_same("v2 backward dk_rope (shared)", a2, b, 2e-2f, 2e-2f);
    }
    float b1 = time_ms(bwd1, 3), b2 = time_ms(bwd2);
    printf("backward (%.1f GFLOP)\n", f_bwd / 1e9);
    report("v1 naive (thread per row, atomics)", b1, 0, f_bwd, 0);
    report("v2 llmc split-key kernels", b2, 0, f_bwd, b1);
    return 0;
}
