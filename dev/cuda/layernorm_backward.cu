// layernorm_backward.cu: LayerNorm backward: the input gradient (warp per row) and the
// parameter gradients, which are column sums over all B*T rows (deterministic, no atomics).
//   v1: column sums in one stage: a block per 32 columns walks every row (C/32 blocks only:
//       24 for GPT-2's C = 768, on a GPU with 100+ SMs)
//   v2: llmc's two stages: blocks over (32 columns x row chunk) write partials, then one thread
//       per column adds the chunks in order
// usage: layernorm_backward [N C]   (default 8192 x 768)
#include "common.h"

__global__ void ln_param_grads_v1(float* dbias, float* dweight, const bf16* dout, const bf16* inp, const float* mean, const float* rstd, int N, int C) {
    SHARED_ARRAY(float, part, [8][32]);
    SHARED_ARRAY(float, part2, [8][32]);
    int c = blockIdx.x * 32 + threadIdx.x % 32, stripe = threadIdx.x / 32;
    float s = 0.0f, s2 = 0.0f;
    if (c < C)
        for (int i = stripe; i < N; i += 8) {
            float d = to_f32(dout[(long)i * C + c]);
            s += d;
            s2 += (to_f32(inp[(long)i * C + c]) - mean[i]) * rstd[i] * d;
        }
    part[stripe][threadIdx.x % 32] = s;
    part2[stripe][threadIdx.x % 32] = s2;
    __syncthreads();
    if (stripe == 0 && c < C) {
        float a = 0.0f, b = 0.0f;
        for (int k = 0; k < 8; k++) { a += part[k][threadIdx.x]; b += part2[k][threadIdx.x]; }
        dbias[c] += a;
        dweight[c] += b;
    }
}

int main(int argc, char** argv) {
    require_gpu("layernorm_backward");
    int N = arg(argc, argv, 1, 8192), C = arg(argc, argv, 2, 768);
    printf("N=%d C=%d (bf16 activations, fp32 parameter grads)\n", N, C);
    size_t n = (size_t)N * C;
    bf16 *x = dev_random<bf16>(n, 1), *d = dev_random<bf16>(n, 2), *w = dev_random<bf16>(C, 3), *b = dev_random<bf16>(C, 4), *o, *dinp;
    float *m, *r, *db1, *dw1, *db2, *dw2, *part;
    cudaCheck(cudaMalloc(&o, n * 2)); cudaCheck(cudaMalloc(&dinp, n * 2));
    cudaCheck(cudaMalloc(&m, N * 4)); cudaCheck(cudaMalloc(&r, N * 4));
    for (float** p : {&db1, &dw1, &db2, &dw2}) { cudaCheck(cudaMalloc(p, C * 4)); cudaCheck(cudaMemset(*p, 0, C * 4)); }
    const int chunks = 32;
    cudaCheck(cudaMalloc(&part, 2 * (size_t)chunks * C * 4));
    launch(layernorm_forward_kernel<bf16>, dim3(ceil_div(N, 8)), dim3(256), o, m, r, (const bf16*)x, (const bf16*)w, (const bf16*)b, N, C);
    auto v1 = [&] { launch(ln_param_grads_v1, dim3(ceil_div(C, 32)), dim3(256), db1, dw1, (const bf16*)d, (const bf16*)x, (const float*)m, (const float*)r, N, C); };
    auto v2 = [&] {
        launch(column_sum_partial_kernel<bf16, 1>, dim3(ceil_div(C, 32), chunks), dim3(256), part, part + (size_t)chunks * C, (const bf16*)d,
               (const bf16*)x, (long)C, (const float*)m, (const float*)r, N, C);
        launch(column_sum_final_kernel, dim3(ceil_div(C, 256)), dim3(256), db2, dw2, (const float*)part, (const float*)part + (size_t)chunks * C,
               chunks, C);
    };
    auto dx = [&] { launch(layernorm_backward_dinp_kernel<bf16>, dim3(ceil_div(N, 8)), dim3(256), dinp, (const bf16*)d, (const bf16*)x, (const bf16*)w, (const float*)m, (const float*)r, N, C); };
    v1(); v2();
    check_same("v2 dbias", to_host(db2, C), to_host(db1, C), 1e-3f, 1e-4f);
    check_same("v2 dweight", to_host(dw2, C), to_host(dw1, C), 1e-3f, 1e-4f);
    double bytes = 2.0 * n * 2;  // read dout and inp
    float t1 = time_ms(v1), t2 = time_ms(v2), t3 = time_ms(dx);
    report("v1 param grads, one stage", t1, bytes, 0, 0);
    report("v2 llmc param grads, two stages", t2, bytes, 0, t1);
    report("input gradient (warp per row)", t3, 4.0 * n * 2, 0, 0);
    return 0;
}
