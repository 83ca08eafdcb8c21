// elementwise.cu: the memory-bound kernels (GELU forward/backward, residual add, the grad
// norm), each against the device's copy bandwidth (cudaMemcpy of the same bytes, measured in the
// same run): a ratio near 1 means the kernel runs at the memory's speed.
// usage: elementwise [n]   (default: 8192 x 3072, GPT-2's MLP activation)
#include "common.h"

int main(int argc, char** argv) {
    require_gpu("elementwise");
    long n = (long)arg(argc, argv, 1, 8192 * 3072);
    printf("n=%ld (bf16 activations, fp32 gradients for the norm)\n", n);
    bf16 *a = dev_random<bf16>(n, 1), *b = dev_random<bf16>(n, 2), *o;
    float* g = dev_random<float>(n, 3);
    double* part;
    float* norm;
    cudaCheck(cudaMalloc(&o, n * 2)); cudaCheck(cudaMalloc(&part, NORM_BLOCKS * 8)); cudaCheck(cudaMalloc(&norm, 4));
    float tcopy = time_ms([&] { cudaCheck(cudaMemcpyAsync(o, a, n * 2, cudaMemcpyDeviceToDevice, g_stream)); });
    report("cudaMemcpy (read + write bf16)", tcopy, 4.0 * n, 0, 0);
    struct K { const char* name; double bytes; std::function<void()> fn; };
    K ks[] = {
        {"gelu forward (erf)", 4.0 * n, [&] { launch(gelu_forward_kernel<bf16>, dim3(ceil_div(n, 256)), dim3(256), o, (const bf16*)a, n, 1); }},
        {"gelu backward (erf)", 6.0 * n, [&] { launch(gelu_backward_kernel<bf16>, dim3(ceil_div(n, 256)), dim3(256), o, (const bf16*)a, (const bf16*)b, n, 1); }},
        {"residual a + b", 6.0 * n, [&] { launch(residual_forward_kernel<bf16>, dim3(ceil_div(n, 256)), dim3(256), o, (const bf16*)a, (const bf16*)b, (const bf16*)nullptr, n); }},
        {"grad norm (fp32, 2 stages)", 4.0 * n, [&] {
             launch(grad_norm_partial_kernel, dim3(NORM_BLOCKS), dim3(256), part, (const float*)g, n);
             launch(grad_norm_final_kernel, dim3(1), dim3(256), norm, (const double*)part, NORM_BLOCKS);
         }},
    };
    double copy_gbs = 4.0 * n / tcopy / 1e6;
    for (K& k : ks) {
        float t = time_ms(k.fn);
        printf("  %-34s %9.4f ms | %8.1f GB/s | %.2f of copy bandwidth\n", k.name, t, k.bytes / t / 1e6, k.bytes / t / 1e6 / copy_gbs);
    }
    return 0;
}
