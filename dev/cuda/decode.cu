// decode.cu: one decoding step's attention over a full KV cache (memory-bound: the cache is read
// once per step), for the GQA family and for absorbed MLA (every head reads the one latent cache),
// against the copy bandwidth measured in the same run (a device-to-device cudaMemcpy).
//   v1: naive, one thread per (sequence, head): the whole cache row by row, two passes
//   v2: llmc decode_attention_kernel + decode_combine_kernel: split-K ("flash-decoding"), one
//       warp per (sequence, head, split of 256 keys), 32-key tiles staged in shared memory
// GB/s counts the cache bytes a step must read (K and V, or the latent + rope key).
// usage: decode [B ctx H G hd L dR]   (defaults: batch 8 at 8k context, Pythia-70m's attention
//        (H=8, G=8, hd=64), MLA latent L=128 with a 32-wide rope key)
#include "common.h"

// out (B, H, dv) fp32; cache_k (B, ctx, G, dk), cache_v (B, ctx, G, dv), or with v_in_k the key's
// first dv dims; q (B, H, dk)
__global__ void decode_v1(float* out, const bf16* q, const bf16* ck, const bf16* cv, int B, int ctx, int H, int G, int dk, int dv, int v_in_k,
                          float scale) {
    long w = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (w >= (long)B * H) return;
    int b = (int)(w / H), h = (int)(w % H), g = h / (H / G);
    const bf16* qv = q + w * dk;
    auto key = [&](int j) { return ck + (((long)b * ctx + j) * G + g) * dk; };
    auto val = [&](int j) { return v_in_k ? key(j) : cv + (((long)b * ctx + j) * G + g) * dv; };
    float m = -INFINITY, l = 0.0f;
    for (int j = 0; j < ctx; j++) {
        float s = 0.0f;
        for (int c = 0; c < dk; c++) s += to_f32(qv[c]) * to_f32(key(j)[c]);
        m = fmaxf(m, s * scale);
    }
    float* o = out + w * dv;
    for (int c = 0; c < dv; c++) o[c] = 0.0f;
    for (int j = 0; j < ctx; j++) {
        float s = 0.0f;
        for (int c = 0; c < dk; c++) s += to_f32(qv[c]) * to_f32(key(j)[c]);
        float p = expf(s * scale - m);
        l += p;
        for (int c = 0; c < dv; c++) o[c] += p * to_f32(val(j)[c]);
    }
    for (int c = 0; c < dv; c++) o[c] /= l;
}

int main(int argc, char** argv) {
    require_gpu("decode");
    int B = arg(argc, argv, 1, 8), ctx = arg(argc, argv, 2, 8192), H = arg(argc, argv, 3, 8), G = arg(argc, argv, 4, 8), hd = arg(argc, argv, 5, 64),
        L = arg(argc, argv, 6, 128), dR = arg(argc, argv, 7, 32);
    printf("B=%d ctx=%d H=%d G=%d hd=%d | MLA L=%d dR=%d (bf16)\n", B, ctx, H, G, hd, L, dR);
    if (hd > 128 || L > 256 || L + dR > 320) { printf("hd <= 128, L <= 256, L + dR <= 320\n"); return 1; }
    // the copy bound of this device, measured now
    size_t cbytes = (size_t)256 << 20;
#ifdef KVGPT_CUDA_EMU
    cbytes = 1 << 20;
#endif
    char *c1, *c2;
    cudaCheck(cudaMalloc(&c1, cbytes)); cudaCheck(cudaMalloc(&c2, cbytes));
    float tc = time_ms([&] { cudaCheck(cudaMemcpyAsync(c2, c1, cbytes, cudaMemcpyDeviceToDevice, g_stream)); });
    const double bw = 2.0 * cbytes / tc / 1e6;  // read + write
    printf("device-to-device copy: %.1f GB/s (read + write)\n", bw);
    cudaCheck(cudaFree(c1)); cudaCheck(cudaFree(c2));
    const float* none = nullptr;
    std::vector<int> hs(B), hp(B, ctx - 1);
    for (int b = 0; b < B; b++) hs[b] = b;
    int *seq, *pos;
    cudaCheck(cudaMalloc(&seq, B * 4)); cudaCheck(cudaMalloc(&pos, B * 4));
    cudaCheck(cudaMemcpy(seq, hs.data(), B * 4, cudaMemcpyHostToDevice)); cudaCheck(cudaMemcpy(pos, hp.data(), B * 4, cudaMemcpyHostToDevice));
    const int chunk = 256, splits = (ctx + chunk - 1) / chunk;
    for (int mla = 0; mla < 2; mla++) {
        const int dk = mla ? L + dR : hd, dv = mla ? L : hd, Gk = mla ? 1 : G;
        const float scale = 1.0f / sqrtf((float)(mla ? hd + dR : hd));
        size_t nk = (size_t)B * ctx * Gk * dk, nv = mla ? 0 : (size_t)B * ctx * Gk * dv;
        bf16 *q = dev_random<bf16>((size_t)B * H * dk, 1), *ck = dev_random<bf16>(nk, 2), *cv = mla ? ck : dev_random<bf16>(nv, 3), *o2;
        float *o1, *part, *ml;
        cudaCheck(cudaMalloc(&o1, (size_t)B * H * dv * 4)); cudaCheck(cudaMalloc(&o2, (size_t)B * H * dv * 2));
        cudaCheck(cudaMalloc(&part, (size_t)B * H * splits * dv * 4)); cudaCheck(cudaMalloc(&ml, (size_t)B * H * splits * 2 * 4));
        const double bytes = 2.0 * (nk + nv);
        auto v1 = [&] { launch(decode_v1, dim3(ceil_div((long)B * H, 64)), dim3(64), o1, (const bf16*)q, (const bf16*)ck, (const bf16*)cv, B, ctx, H, Gk, dk, dv, mla, scale); };
        CacheView<const bf16*> ka{ck, (long)ctx * Gk * dk, (long)Gk * dk, mla ? 0 : dk}, kb{ck + (mla ? L : 0), (long)ctx * dk, dk, 0},
            vv{cv, (long)ctx * Gk * (mla ? dk : dv), (long)Gk * (mla ? dk : dv), mla ? 0 : dv};
        float* nolse = nullptr;
        auto v2 = [&] {
            dim3 grid(B, H, splits);
            if (mla)
                launch(decode_attention_kernel<bf16, 320, 256, true>, grid, dim3(32), part, ml, (const bf16*)q, (long)H * dk, (long)dk, ka, kb, vv,
                       (const int*)seq, (const int*)pos, H, H, L, dR, dv, scale, none, chunk, splits);
            else
                launch(decode_attention_kernel<bf16, 128, 128, false>, grid, dim3(32), part, ml, (const bf16*)q, (long)H * dk, (long)dk, ka, kb, vv,
                       (const int*)seq, (const int*)pos, H, H / G, hd, 0, dv, scale, none, chunk, splits);
            launch(decode_combine_kernel<bf16>, dim3(ceil_div((long)B * H * 32, 256)), dim3(256), o2, (long)H * dv, nolse, (const float*)part,
                   (const float*)ml, B, H, dv, splits);
        };
        v1(); v2();
        cudaCheck(cudaDeviceSynchronize());
        check_same(mla ? "v2 absorbed MLA out" : "v2 GQA out", to_host(o2, (size_t)B * H * dv), to_host(o1, (size_t)B * H * dv), 1e-2f, 1e-2f);
        float t1 = time_ms(v1, 3), t2 = time_ms(v2);
        printf("%s: %.1f MB of cache per step\n", mla ? "absorbed MLA (latent + rope key, shared by every head)" : "GQA family (K and V per KV head)", bytes / 1e6);
        report("v1 naive (thread per sequence, head)", t1, bytes, 0, 0);
        report("v2 llmc split-K", t2, bytes, 0, t1);
        printf("  v2: %.0f%% of the measured copy bandwidth\n", 100.0 * bytes / t2 / 1e6 / bw);
        cudaCheck(cudaFree(q)); cudaCheck(cudaFree(ck)); if (!mla) cudaCheck(cudaFree(cv));
        cudaCheck(cudaFree(o1)); cudaCheck(cudaFree(o2)); cudaCheck(cudaFree(part)); cudaCheck(cudaFree(ml));
    }
    return 0;
}
