// classifier.cu: the fused classifier: softmax + cross-entropy forward (loss, lse) and the
// in-place dlogits backward over a padded vocab, bf16 logits.
//   v1: naive, one thread per row for both passes
//   v2: llmc crossentropy_forward_kernel + crossentropy_backward_kernel: a 256-thread block per row
// usage: classifier [N V]   (default: 8192 rows of GPT-2's 50257 vocab, padded to 50304)
#include "common.h"

__global__ void classifier_v1(bf16* logits, float* losses, const int* targets, float dloss, int N, int V, int Vp) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N) return;
    bf16* l = logits + (long)i * Vp;
    float m = -INFINITY, s = 0.0f;
    for (int v = 0; v < V; v++) m = fmaxf(m, to_f32(l[v]));
    for (int v = 0; v < V; v++) s += expf(to_f32(l[v]) - m);
    float z = logf(s) + m;
    losses[i] = z - to_f32(l[targets[i]]);
    for (int v = 0; v < Vp; v++) l[v] = from_f32<bf16>(v < V ? dloss * (expf(to_f32(l[v]) - z) - (v == targets[i] ? 1.0f : 0.0f)) : 0.0f);
}

int main(int argc, char** argv) {
    require_gpu("classifier");
    int N = arg(argc, argv, 1, 8192), V = arg(argc, argv, 2, 50257), Vp = (V + 63) / 64 * 64;
    printf("N=%d V=%d Vp=%d (bf16 logits)\n", N, V, Vp);
    size_t n = (size_t)N * Vp;
    bf16 *src = dev_random<bf16>(n, 1, 4.0f), *l1, *l2;
    cudaCheck(cudaMalloc(&l1, n * 2)); cudaCheck(cudaMalloc(&l2, n * 2));
    std::vector<int> th(N);
    for (int i = 0; i < N; i++) th[i] = (i * 7919) % V;
    int* tg;
    cudaCheck(cudaMalloc(&tg, N * 4));
    cudaCheck(cudaMemcpy(tg, th.data(), N * 4, cudaMemcpyHostToDevice));
    float *loss1, *loss2, *lse;
    cudaCheck(cudaMalloc(&loss1, N * 4)); cudaCheck(cudaMalloc(&loss2, N * 4)); cudaCheck(cudaMalloc(&lse, N * 4));
    float dloss = 1.0f / N;
    auto v1 = [&] {
        cudaCheck(cudaMemcpyAsync(l1, src, n * 2, cudaMemcpyDeviceToDevice, g_stream));
        launch(classifier_v1, dim3(ceil_div(N, 128)), dim3(128), l1, loss1, (const int*)tg, dloss, N, V, Vp);
    };
    auto v2 = [&] {
        cudaCheck(cudaMemcpyAsync(l2, src, n * 2, cudaMemcpyDeviceToDevice, g_stream));
        launch(crossentropy_forward_kernel<bf16>, dim3(N), dim3(256), loss2, lse, (const bf16*)l2, (const int*)tg, V, Vp);
        launch(crossentropy_backward_kernel<bf16>, dim3(N), dim3(256), l2, (const float*)lse, (const int*)tg, dloss, V, Vp);
    };
    auto copy_only = [&] { cudaCheck(cudaMemcpyAsync(l2, src, n * 2, cudaMemcpyDeviceToDevice, g_stream)); };
    v1(); v2();
    check_same("v2 losses", to_host(loss2, N), to_host(loss1, N), 1e-4f, 1e-4f);
    check_same("v2 dlogits", to_host(l2, n), to_host(l1, n), 1e-7f, 1e-2f);
    float tc = time_ms(copy_only), t1 = time_ms(v1, 3) - tc, t2 = time_ms(v2) - tc;  // the refill copy is not the kernel's
    double bytes = 3.0 * n * 2;  // read twice (forward, backward), write once
    report("v1 naive (thread per row)", t1, bytes, 0, 0);
    report("v2 llmc (block per row)", t2, bytes, 0, t1);
    return 0;
}
