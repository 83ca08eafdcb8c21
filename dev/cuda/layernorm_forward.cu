// layernorm_forward.cu: LayerNorm forward over (N,C) rows, bf16 in/out, fp32 statistics.
//   v1: naive, one thread per row (three passes, uncoalesced across the warp)
//   v2: llmc layernorm_forward_kernel: one warp per row, coalesced, butterfly reductions
//   v3: llmc residual_layernorm_forward_kernel: the residual add fused in (compared against
//       residual_forward + v2, which reads and writes the stream one more time)
// usage: layernorm_forward [N C]   (default: B*T = 8192 rows of GPT-2's C = 768)
#include "common.h"

__global__ void layernorm_forward_v1(bf16* out, float* mean, float* rstd, const bf16* inp, const bf16* w, const bf16* b, int N, int C) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N) return;
    const bf16* x = inp + (long)i * C;
    float m = 0.0f, v = 0.0f;
    for (int c = 0; c < C; c++) m += to_f32(x[c]);
    m /= C;
    for (int c = 0; c < C; c++) v += (to_f32(x[c]) - m) * (to_f32(x[c]) - m);
    float r = rsqrtf(v / C + 1e-5f);
    for (int c = 0; c < C; c++) out[(long)i * C + c] = from_f32<bf16>((to_f32(x[c]) - m) * r * to_f32(w[c]) + to_f32(b[c]));
    mean[i] = m;
    rstd[i] = r;
}

int main(int argc, char** argv) {
    require_gpu("layernorm_forward");
    int N = arg(argc, argv, 1, 8192), C = arg(argc, argv, 2, 768);
    printf("N=%d C=%d (bf16)\n", N, C);
    size_t n = (size_t)N * C;
    bf16 *x = dev_random<bf16>(n, 1, 3.0f), *r2 = dev_random<bf16>(n, 2), *w = dev_random<bf16>(C, 3), *b = dev_random<bf16>(C, 4);
    bf16 *o1, *o2, *o3, *res;
    float *m, *s;
    cudaCheck(cudaMalloc(&o1, n * 2)); cudaCheck(cudaMalloc(&o2, n * 2)); cudaCheck(cudaMalloc(&o3, n * 2)); cudaCheck(cudaMalloc(&res, n * 2));
    cudaCheck(cudaMalloc(&m, N * 4)); cudaCheck(cudaMalloc(&s, N * 4));
    auto v1 = [&] { launch(layernorm_forward_v1, dim3(ceil_div(N, 128)), dim3(128), o1, m, s, (const bf16*)x, (const bf16*)w, (const bf16*)b, N, C); };
    auto v2 = [&] { launch(layernorm_forward_kernel<bf16>, dim3(ceil_div(N, 8)), dim3(256), o2, m, s, (const bf16*)x, (const bf16*)w, (const bf16*)b, N, C); };
    auto unfused = [&] {
        launch(residual_forward_kernel<bf16>, dim3(ceil_div(n, 256)), dim3(256), res, (const bf16*)x, (const bf16*)r2, (const bf16*)nullptr, (long)n);
        launch(layernorm_forward_kernel<bf16>, dim3(ceil_div(N, 8)), dim3(256), o2, m, s, (const bf16*)res, (const bf16*)w, (const bf16*)b, N, C);
    };
    auto v3 = [&] {
        launch(residual_layernorm_forward_kernel<bf16>, dim3(ceil_div(N, 8)), dim3(256), res, o3, m, s, (const bf16*)x, (const bf16*)r2,
               (const bf16*)nullptr, (const bf16*)w, (const bf16*)b, N, C);
    };
    v1(); v2();
    check_same("v2 out", to_host(o2, n), to_host(o1, n), 1e-2f, 1e-2f);
    unfused(); v3();
    check_same("v3 (fused) out", to_host(o3, n), to_host(o2, n), 1e-2f, 1e-2f);
    double bytes = 2.0 * n * 2;  // read x, write out (bf16)
    float t1 = time_ms(v1), t2 = time_ms(v2), tu = time_ms(unfused), t3 = time_ms(v3);
    report("v1 naive (thread per row)", t1, bytes, 0, 0);
    report("v2 llmc (warp per row)", t2, bytes, 0, t1);
    report("residual + v2 (unfused)", tu, 5.0 * n * 2, 0, 0);
    report("v3 llmc fused residual+LN", t3, 4.0 * n * 2, 0, 0);
    printf("  fused / unfused: %.2fx faster\n", tu / t3);
    return 0;
}
