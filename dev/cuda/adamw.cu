// adamw.cu: the AdamW update over every parameter tensor (fp32 master, grads, m, v; bf16 copy).
//   v1: one launch per tensor, clip factor passed from the host (needs the norm on the host first)
//   v2: llmc adamw_kernel: one launch for all tensors (blockIdx.y = tensor), the clip factor read
//       from the device's grad norm, so the step never waits for the host
// usage: adamw [n_tensors floats_per_tensor]   (default: 150 tensors of 830K floats ~ GPT-2 124M)
#include "common.h"

__global__ void adamw_v1(float* p, bf16* pc, const float* g, float* m, float* v, long n, float scale, float lr, float b1, float b2, float eps,
                         float wd, float bc1, float bc2) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float gi = g[i] * scale;
    m[i] = b1 * m[i] + (1.0f - b1) * gi;
    v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
    p[i] -= lr * ((m[i] / bc1) / (sqrtf(v[i] / bc2) + eps) + wd * p[i]);
    pc[i] = from_f32<bf16>(p[i]);
}

int main(int argc, char** argv) {
    require_gpu("adamw");
    int nt = arg(argc, argv, 1, 150);
    long per = arg(argc, argv, 2, 830000), n = nt * per;
    printf("%d tensors x %ld floats = %.1fM parameters\n", nt, per, n / 1e6);
    float *p = dev_random<float>(n, 1), *g = dev_random<float>(n, 2), *m, *v, *norm;
    bf16* pc;
    cudaCheck(cudaMalloc(&m, n * 4)); cudaCheck(cudaMalloc(&v, n * 4)); cudaCheck(cudaMalloc(&pc, n * 2)); cudaCheck(cudaMalloc(&norm, 4));
    cudaCheck(cudaMemset(m, 0, n * 4)); cudaCheck(cudaMemset(v, 0, n * 4));
    float one = 0.5f;  // norm below the clip: factor 1
    cudaCheck(cudaMemcpy(norm, &one, 4, cudaMemcpyHostToDevice));
    std::vector<long> off(nt), sz(nt);
    std::vector<int> dec(nt);
    for (int i = 0; i < nt; i++) { off[i] = i * per; sz[i] = per; dec[i] = i % 2; }
    long *doff, *dsz;
    int* ddec;
    cudaCheck(cudaMalloc(&doff, nt * 8)); cudaCheck(cudaMalloc(&dsz, nt * 8)); cudaCheck(cudaMalloc(&ddec, nt * 4));
    cudaCheck(cudaMemcpy(doff, off.data(), nt * 8, cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(dsz, sz.data(), nt * 8, cudaMemcpyHostToDevice));
    cudaCheck(cudaMemcpy(ddec, dec.data(), nt * 4, cudaMemcpyHostToDevice));
    auto v1 = [&] {
        for (int i = 0; i < nt; i++)
            launch(adamw_v1, dim3(ceil_div(per, 256)), dim3(256), p + off[i], pc + off[i], (const float*)g + off[i], m + off[i], v + off[i], per, 1.0f,
                   1e-4f, 0.9f, 0.95f, 1e-8f, dec[i] ? 0.1f : 0.0f, 0.1f, 0.05f);
    };
    auto v2 = [&] {
        launch(adamw_kernel<bf16>, dim3(64, nt), dim3(256), p, pc, (const float*)g, m, v, (const long*)doff, (const long*)dsz, (const int*)ddec,
               (const float*)norm, 1.0f, 1.0f, 1e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.1f, 0.05f, 0.0f, 1.0f, 0);
    };
    // same start state for both, then compare the updated weights
    float* p0 = dev_random<float>(n, 1);
    v1();
    std::vector<float> r1 = to_host(p, n);
    cudaCheck(cudaMemcpy(p, p0, n * 4, cudaMemcpyDeviceToDevice)); cudaCheck(cudaMemset(m, 0, n * 4)); cudaCheck(cudaMemset(v, 0, n * 4));
    v2();
    check_same("v2 weights", to_host(p, n), r1, 1e-6f, 1e-5f);
    double bytes = (double)n * (4 * 4 + 3 * 4 + 2);  // read p g m v, write p m v + bf16 copy
    float t1 = time_ms(v1), t2 = time_ms(v2);
    report("v1 launch per tensor", t1, bytes, 0, 0);
    report("v2 llmc one launch, device clip", t2, bytes, 0, t1);
    return 0;
}
