// matmul.cu: the linear layers' GEMM, out (M,N) = inp (M,K) W(N,K)^T + bias, bf16 in/out.
//   v1: naive shared-memory tiled SIMT kernel (16x16 tiles, fp32 accumulation)
//   v2: llmc's gemm (cuBLASLt, tensor cores, bias fused as the epilogue), what trains
// Also the backward's weight-gradient GEMM (fp32 output accumulating with beta = 1) with cuBLASLt.
// usage: matmul [M K N]   (default: B*T = 8192 rows, GPT-2's MLP up-projection 768 -> 3072)
#include "common.h"

#define TILE 16
__global__ void matmul_v1(bf16* out, const bf16* inp, const bf16* w, const bf16* bias, int M, int K, int N) {
    SHARED_ARRAY(float, As, [TILE][TILE + 1]);
    SHARED_ARRAY(float, Ws, [TILE][TILE + 1]);
    int tx = threadIdx.x % TILE, ty = threadIdx.x / TILE;
    int row = blockIdx.y * TILE + ty, col = blockIdx.x * TILE + tx;
    float acc = 0.0f;
    for (int k0 = 0; k0 < K; k0 += TILE) {
        As[ty][tx] = (row < M && k0 + tx < K) ? to_f32(inp[(long)row * K + k0 + tx]) : 0.0f;
        int wr = blockIdx.x * TILE + ty;  // W row = output column
        Ws[ty][tx] = (wr < N && k0 + tx < K) ? to_f32(w[(long)wr * K + k0 + tx]) : 0.0f;
        __syncthreads();
        for (int k = 0; k < TILE; k++) acc += As[ty][k] * Ws[tx][k];
        __syncthreads();
    }
    if (row < M && col < N) out[(long)row * N + col] = from_f32<bf16>(acc + (bias ? to_f32(bias[col]) : 0.0f));
}

int main(int argc, char** argv) {
    require_gpu("matmul");
    int M = arg(argc, argv, 1, 8192), K = arg(argc, argv, 2, 768), N = arg(argc, argv, 3, 3072);
    printf("M=%d K=%d N=%d (bf16 in/out, fp32 accumulation)\n", M, K, N);
    bf16 *inp = dev_random<bf16>((size_t)M * K, 1), *w = dev_random<bf16>((size_t)N * K, 2, 0.05f), *bias = dev_random<bf16>(N, 3);
    bf16 *dout = dev_random<bf16>((size_t)M * N, 4), *o1, *o2;
    float* dw;
    cudaCheck(cudaMalloc(&o1, (size_t)M * N * 2)); cudaCheck(cudaMalloc(&o2, (size_t)M * N * 2)); cudaCheck(cudaMalloc(&dw, (size_t)N * K * 4));
    cudaCheck(cudaMemset(dw, 0, (size_t)N * K * 4));
    auto v1 = [&] { launch(matmul_v1, dim3(ceil_div(N, TILE), ceil_div(M, TILE)), dim3(TILE * TILE), o1, (const bf16*)inp, (const bf16*)w, (const bf16*)bias, M, K, N); };
    auto v2 = [&] { gemm<bf16>(true, false, N, M, K, w, K, inp, K, o2, N, 1, 0.0f, bias); };  // = matmul_forward in cuda_backend.cu
    auto dweight = [&] { gemm<bf16>(false, true, K, N, M, inp, K, dout, N, dw, K, 0, 1.0f, nullptr); };
    v1(); v2();
    check_same("v2 out", to_host(o2, (size_t)M * N), to_host(o1, (size_t)M * N), 2e-2f, 2e-2f);
    double flops = 2.0 * M * K * N;
    float t1 = time_ms(v1, 5), t2 = time_ms(v2), t3 = time_ms(dweight);
    report("v1 naive tiled SIMT", t1, 0, flops, 0);
    report("v2 llmc (cuBLASLt + bias epilogue)", t2, 0, flops, t1);
    report("weight grad (cuBLASLt, fp32 += )", t3, 0, flops, 0);
    return 0;
}
