// cuda_backend.cu: kvgpt's CUDA backend for every attention variant (MHA, MQA, GQA: DevGQA; MLA
// and KVSplice: DevMLA; MKA and fmka: DevMKA) with RoPE, ALiBi, learned or no positions: the
// model's forward and backward on the device, AdamW, the global grad norm, decoding with device
// KV caches (split-K over the cache; MLA in the absorbed form), and the single kernels wrapped
// for tests (API in cuda_backend.h).
// Built two ways:
//   nvcc (sm_80, sm_90)        -> build/cuda_backend.o, linked into train_gpt, eval_gpt, sample_gpt, test/test_cuda;
//                                 matmuls by cuBLASLt (bias fused as the epilogue)
//   g++ -DKVGPT_CUDA_EMU       -> build/cuda_backend_emu.o, the same kernels on the CPU emulator
//                                 (cuda_emu.h), matmuls by a plain CPU GEMM; CI tests it this way
// Precision (template T): bf16 or fp32 copies of the parameters and activations; fp32 master
// weights, parameter gradients (cuBLASLt accumulates into fp32 with beta = 1), Adam moments,
// LayerNorm statistics, loss and log-sum-exp. Each layer's forward and backward mirror GPT in
// llmc/model.h line by line, which is the reference they are tested against.
#include <algorithm>
#include <map>
#include <memory>
#include <tuple>
#include <time.h>
#include <unistd.h>
#include <string>
#include <vector>
#include "cuda_backend.h"
#include "cuda_kernels.cuh"
#include "cuda_matmul.cuh"

// ---- device memory, on the CUDA runtime (which the emulator, cuda_emu.h, stands in for) ------
const char* cuda_backend_kind() {
#ifdef KVGPT_CUDA_EMU
    return "CPU emulator";
#else
    return "CUDA";
#endif
}
int kvgpt_cuda_probe(std::string* why, std::string* name) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        // without any NVIDIA driver the runtime reports an "insufficient" driver: say it plainly
        if ((e == cudaErrorInsufficientDriver || e == cudaErrorNoDevice) && access("/dev/nvidiactl", F_OK) != 0)
            *why = "no NVIDIA GPU or driver on this machine";
        else
            *why = std::string("cudaGetDeviceCount: ") + cudaGetErrorString(e) + " (error " + std::to_string((int)e) + ")";
        cudaGetLastError();  // clear the sticky error
        return 0;
    }
    if (n == 0) { *why = "no CUDA devices"; return 0; }
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, 0) == cudaSuccess) *name = p.name;
    return n;
}
static void* dev_alloc(size_t bytes) {
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b);
        char msg[256];
        snprintf(msg, sizeof msg, "cudaMalloc of %.1f MiB failed (%s); %.1f of %.1f MiB free", bytes / 1048576.0, cudaGetErrorString(e),
                 free_b / 1048576.0, total_b / 1048576.0);
        backend_fail("lower the micro-batch (-b) or the sequence length (-t) and raise -A to keep the tokens per step", msg);
    }
    return p;
}
static void dev_free(void* p) { cudaCheck(cudaFree(p)); }
static void h2d(void* d, const void* h, size_t bytes) { cudaCheck(cudaMemcpyAsync(d, h, bytes, cudaMemcpyHostToDevice, g_stream)); cudaCheck(cudaStreamSynchronize(g_stream)); }
static void d2h(void* h, const void* d, size_t bytes) { cudaCheck(cudaMemcpyAsync(h, d, bytes, cudaMemcpyDeviceToHost, g_stream)); cudaCheck(cudaStreamSynchronize(g_stream)); }
static void d2d(void* d, const void* s, size_t bytes) { cudaCheck(cudaMemcpyAsync(d, s, bytes, cudaMemcpyDeviceToDevice, g_stream)); }
static void dev_zero(void* d, size_t bytes) { cudaCheck(cudaMemsetAsync(d, 0, bytes, g_stream)); }
static void dev_sync() { cudaCheck(cudaStreamSynchronize(g_stream)); }
static void* host_pinned_alloc(size_t bytes) {
    void* p = nullptr;
    cudaCheck(cudaMallocHost(&p, bytes ? bytes : 1));
    return p;
}
static void host_pinned_free(void* p) { cudaCheck(cudaFreeHost(p)); }
// marks when the last upload from a pinned staging buffer has been read by the device, so the
// host can refill the buffer without draining the stream
struct UploadFence {
    cudaEvent_t e = nullptr;
    void record() {
        if (!e) cudaCheck(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
        cudaCheck(cudaEventRecord(e, g_stream));
    }
    void wait() {
        if (e) cudaCheck(cudaEventSynchronize(e));
    }
    ~UploadFence() {
        if (e) cudaCheck(cudaEventDestroy(e));
    }
};
static void h2d_async(void* d, const void* h, size_t bytes) { cudaCheck(cudaMemcpyAsync(d, h, bytes, cudaMemcpyHostToDevice, g_stream)); }

// ---- the layers: the twins of llmc/ops.h, on device pointers -------------------------------
// scratch for the column sums' partials; sized by the model (or a test) before use, so a
// training step never allocates
static float* g_colsum_scratch = nullptr;
static size_t g_colsum_floats = 0;
static int colsum_chunks(int N) { return std::max(1, std::min(32, N / 256)); }
static void colsum_reserve(int N, int C) {
    size_t need = 2 * (size_t)colsum_chunks(N) * C;
    if (need <= g_colsum_floats) return;
    if (g_colsum_scratch) { dev_sync(); dev_free(g_colsum_scratch); }
    g_colsum_scratch = (float*)dev_alloc(need * 4);
    g_colsum_floats = need;
}
// dcol (C) += column sums of dout (N,C) [MODE 0]; or LayerNorm's dbias -> dcol, dweight -> dcol2 [MODE 1]
// MODE 2: RMSNorm's dweight -> dcol2 (x rows in_row apart)
template <typename T, int MODE>
static void column_sums(float* dcol, float* dcol2, const T* dout, const T* inp, long in_row, const float* mean, const float* rstd, int N, int C) {
    int chunks = colsum_chunks(N);
    colsum_reserve(N, C);
    float *part = g_colsum_scratch, *part2 = g_colsum_scratch + (size_t)chunks * C;
    launch(column_sum_partial_kernel<T, MODE>, dim3(ceil_div(C, 32), chunks), dim3(256), part, part2, dout, inp, in_row, mean, rstd, N, C);
    launch(column_sum_final_kernel, dim3(ceil_div(C, 256)), dim3(256), MODE == 2 ? (float*)nullptr : dcol, MODE >= 1 ? dcol2 : (float*)nullptr, (const float*)part,
           (const float*)part2, chunks, C);
}
// out (M,N) = inp (M,K) W(N,K)^T + bias. Column-major, out^T (N,M) = W (as K x N, transposed) inp^T
template <typename T>
static void matmul_forward(T* out, const T* inp, const T* w, const T* bias, int M, int K, int N) {
    gemm<T>(true, false, N, M, K, w, K, inp, K, out, N, DType<T>::id, 0.0f, bias);
}
// dinp (M,K) = dout W (overwritten, or added to with acc_dinp); dw (N,K) += dout^T inp in fp32;
// dbias (N) += column sums
template <typename T>
static void matmul_backward(T* dinp, float* dw, float* dbias, const T* dout, const T* inp, const T* w, int M, int K, int N,
                            bool acc_dinp = false) {
    if (dinp) gemm<T>(false, false, K, M, N, w, K, dout, N, dinp, K, DType<T>::id, acc_dinp ? 1.0f : 0.0f, nullptr);
    if (dw) gemm<T>(false, true, K, N, M, inp, K, dout, N, dw, K, 0, 1.0f, nullptr);
    if (dbias) column_sums<T, 0>(dbias, nullptr, dout, nullptr, 0, nullptr, nullptr, M, N);
}
template <typename T>
static void layernorm_forward(T* out, float* mean, float* rstd, const T* inp, const T* w, const T* b, int N, int C) {
    launch(layernorm_forward_kernel<T>, dim3(ceil_div(N, 8)), dim3(256), out, mean, rstd, inp, w, b, N, C);
}
// dinp += ; dw, db += (fp32)
template <typename T>
static void layernorm_backward(T* dinp, float* dw, float* db, const T* dout, const T* inp, const T* w, const float* mean, const float* rstd,
                               int N, int C) {
    launch(layernorm_backward_dinp_kernel<T>, dim3(ceil_div(N, 8)), dim3(256), dinp, dout, inp, w, mean, rstd, N, C);
    column_sums<T, 1>(db, dw, dout, inp, C, mean, rstd, N, C);
}
// RMSNorm of the first C of each row of inp (rows in_row apart): out (N,C), rrms (N) fp32
template <typename T>
static void rmsnorm_forward(T* out, float* rrms, const T* inp, long in_row, const T* w, int N, int C) {
    launch(rmsnorm_forward_kernel<T>, dim3(ceil_div(N, 8)), dim3(256), out, rrms, inp, in_row, w, N, C);
}
// dinp (rows in_row apart) overwritten; dw += (fp32)
template <typename T>
static void rmsnorm_backward(T* dinp, float* dw, const T* dout, const T* inp, long in_row, const T* w, const float* rrms, int N, int C) {
    launch(rmsnorm_backward_dinp_kernel<T>, dim3(ceil_div(N, 8)), dim3(256), dinp, dout, inp, in_row, w, rrms, N, C);
    column_sums<T, 2>(nullptr, dw, dout, inp, in_row, nullptr, rrms, N, C);
}
// res = a + b (+ c); ln = LayerNorm(res)
template <typename T>
static void residual_layernorm_forward(T* res, T* ln, float* mean, float* rstd, const T* a, const T* b, const T* c, const T* w, const T* bias,
                                       int N, int C) {
    launch(residual_layernorm_forward_kernel<T>, dim3(ceil_div(N, 8)), dim3(256), res, ln, mean, rstd, a, b, c, w, bias, N, C);
}
template <typename T>
static void gelu_forward(T* out, const T* inp, long N, bool exact) {
    launch(gelu_forward_kernel<T>, dim3(ceil_div(N, 256)), dim3(256), out, inp, N, (int)exact);
}
template <typename T>
static void gelu_backward(T* dinp, const T* inp, const T* dout, long N, bool exact) {
    launch(gelu_backward_kernel<T>, dim3(ceil_div(N, 256)), dim3(256), dinp, inp, dout, N, (int)exact);
}
template <typename T>
static void residual_forward(T* out, const T* a, const T* b, const T* c, long N) {
    launch(residual_forward_kernel<T>, dim3(ceil_div(N, 256)), dim3(256), out, a, b, c, N);
}
template <typename T>
static void encoder_forward(T* out, const int* inp, const T* wte, const T* wpe, int B, int Tn, int C, const int* pos = nullptr) {
    launch(encoder_forward_kernel<T>, dim3(ceil_div((long)B * Tn * C, 256)), dim3(256), out, inp, wte, wpe, B * Tn, Tn, C, pos);
}
template <typename T>
static void encoder_backward(float* dwte, float* dwpe, const T* dout, const int* inp, int B, int Tn, int C) {
    launch(encoder_backward_wte_kernel<T>, dim3(ceil_div(C, 128), 32), dim3(128), dwte, dout, inp, B * Tn, C);
    if (dwpe) launch(encoder_backward_wpe_kernel<T>, dim3(ceil_div((long)Tn * C, 256)), dim3(256), dwpe, dout, B, Tn, C);
}
template <typename T>
static void crossentropy_forward(float* losses, float* lse, const T* logits, const int* targets, int N, int V, int Vp) {
    launch(crossentropy_forward_kernel<T>, dim3(N), dim3(256), losses, lse, logits, targets, V, Vp);
}
template <typename T>
static void crossentropy_backward(T* logits, const float* lse, const int* targets, float dloss, int N, int V, int Vp) {
    launch(crossentropy_backward_kernel<T>, dim3(N), dim3(256), logits, lse, targets, dloss, V, Vp);
}
template <typename T>
static void rope_apply(T* buf, long row, long head, int heads, int B, int Tn, int rot, const float* cos_t, const float* sin_t, bool inverse,
                       const int* pos = nullptr) {
    if (rot == 0) return;
    launch(rope_kernel<T>, dim3(ceil_div((long)B * Tn * heads * (rot / 2), 256)), dim3(256), buf, row, head, heads, B * Tn, Tn, rot, cos_t,
           sin_t, (int)inverse, pos);
}

bool cuda_attention_dims_supported(int da, int db) { return att_dims_ok(da, db); }

// The device's memory bandwidth, for dev/bench_decode's bound on a GPU: decoding only reads, so
// the bound is a read (every thread sums float4s over a grid-stride loop), with a STREAM-style
// copy (cudaMemcpy device to device; read + write bytes) printed beside it. Host-timed around a
// sync, best of 5 after a warm-up, on a buffer of `bytes` zeroed first.
__global__ void read_probe_kernel(float* out, const float4* p, long n) {
    float s = 0.0f;
    for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
        const float4 v = p[i];
        s += (v.x + v.y) + (v.z + v.w);
    }
    if (s == 1.5f) out[0] = s;  // never true on zeros, but the loads cannot be dropped
}
__global__ void empty_kernel() {}
long cuda_device_calls() { return g_device_calls; }
// the best of `reps` runs of run(), each host-timed from its start to a sync, after one untimed run
template <class F>
static double best_seconds(int reps, F run) {
    run();
    dev_sync();
    double t = 1e30;
    for (int r = 0; r < reps; r++) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        run();
        dev_sync();
        clock_gettime(CLOCK_MONOTONIC, &b);
        t = std::min(t, (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec));
    }
    return t;
}
double cuda_launch_us() {
    backend_init();
    const int n = strcmp(cuda_backend_kind(), "CUDA") == 0 ? 2000 : 50;
    return 1e6 * best_seconds(3, [&] { for (int i = 0; i < n; i++) launch(empty_kernel, dim3(1), dim3(32)); }) / n;
}
void cuda_bandwidth_gbs(size_t bytes, double* read_gbs, double* copy_gbs) {
    backend_init();
    bytes = std::max<size_t>(bytes / 32 * 32, 64);
    char* buf = (char*)dev_alloc(bytes);
    float* out = (float*)dev_alloc(4);
    dev_zero(buf, bytes);
    const long n = (long)(bytes / 16);
    const int blocks = (int)std::min<long>(2048, ceil_div(n, 256L));
    *read_gbs = (double)bytes / best_seconds(5, [&] { launch(read_probe_kernel, dim3(blocks), dim3(256), out, (const float4*)buf, n); }) / 1e9;
    const size_t half = bytes / 2 / 16 * 16;
    *copy_gbs = 2.0 * (double)half / best_seconds(5, [&] { d2d(buf + half, buf, half); }) / 1e9;
    dev_sync();
    dev_free(out);
    dev_free(buf);
}
// the attention core's shape: H query heads over G KV heads, per-head key width da (== the value
// width), shared key width db, score scale, ALiBi slopes (device, H) or null
struct AttDims {
    int H, G, da, db;
    float scale;
    const float* slopes;
};
static void check_att_dims(int da, int db) {
    if (!att_dims_ok(da, db)) {
        char msg[200];
        snprintf(msg, sizeof msg, "the CUDA attention kernel takes head dims 32, 64, 128 with a shared rope key of 0, 16, 32 or 64 (64 only at head dim 32), not %d + %d", da, db);
        backend_fail("change --heads so that d_model / heads is 32, 64 or 128 (MLA: --rope-dim 32), or use -d cpu", msg);
    }
}
template <typename T>
static AttView<const T*> cview(AttView<T*> v) { return {v.p, v.row, v.head}; }
// y (B,Tn,H*da) and lse (B,H,Tn) from views of q, the per-head key, the shared key, the value
template <typename T>
static void attention_forward(T* y, float* lse, AttView<const T*> q, AttView<const T*> ka, AttView<const T*> kb, AttView<const T*> v, int B,
                              int Tn, const AttDims& a) {
    check_att_dims(a.da, a.db);
    dim3 grid(ceil_div(Tn, att_rows_fwd(a.da)), a.H, B), block(ATT_WARPS * 32);
    with_att_dims(a.da, a.db, [&](auto DA, auto DB) {
        launch(attention_forward_kernel<T, DA.value, DB.value>, grid, block, y, lse, q, ka, kb, v, Tn, a.H, a.G, a.scale, a.slopes);
    });
}
// dq, dka, dv (views) and dkb (B*Tn rows of db, dkb_row apart) are overwritten. Scratch: D (B,H,Tn)
// and, when db > 0, dkb_part (B*Tn*G*db) fp32. dlse (B,H,Tn) is a gradient at lse, or null.
template <typename T>
static void attention_backward(AttView<T*> dq, AttView<T*> dka, T* dkb, long dkb_row, AttView<T*> dv, float* D, float* dkb_part,
                               AttView<const T*> q, AttView<const T*> ka, AttView<const T*> kb, AttView<const T*> v, const T* y, const T* dy,
                               const float* lse, const float* dlse, int B, int Tn, const AttDims& a) {
    check_att_dims(a.da, a.db);
    launch(attention_backward_dot_kernel<T>, dim3(ceil_div((long)B * a.H * Tn, 256)), dim3(256), D, dy, y, dlse, B, Tn, a.H, a.da);
    dim3 gq(ceil_div(Tn, att_rows_bwd(a.da)), a.H, B), gk(ceil_div(Tn, att_rows_bwd(a.da)), a.G, B), block(ATT_WARPS * 32);
    with_att_dims(a.da, a.db, [&](auto DA, auto DB) {
        launch(attention_backward_dq_kernel<T, DA.value, DB.value>, gq, block, dq, q, ka, kb, v, dy, lse, (const float*)D, Tn, a.H, a.G, a.scale,
               a.slopes);
        launch(attention_backward_dkv_kernel<T, DA.value, DB.value>, gk, block, dka, dv, dkb_part, q, ka, kb, v, dy, lse, (const float*)D, Tn,
               a.H, a.G, a.scale, a.slopes);
    });
    if (a.db)
        launch(attention_shared_key_sum_kernel<T>, dim3(ceil_div((long)B * Tn * a.db, 256)), dim3(256), dkb, dkb_row, (const float*)dkb_part,
               B * Tn, a.G, a.db);
}
// decoding (decode_attention_kernel): n query rows (q: rows q_row apart, heads q_head apart, da+db
// each) against the cache views; out (n rows, out_row apart, dv per head); lse (H, n) or null.
// part, part_ml: scratch for n * H * splits partials (dv floats, and 2, each).
struct DecodeDims {
    int H, group, da, db, dv;
    float scale;
    const float* slopes;
    bool v_in_k;  // absorbed MLA: the value is the key's first dv dims
};
static const int DECODE_KMAX_GQA = 128, DECODE_KMAX_MLA = 320, DECODE_VMAX_MLA = 256;
template <typename T>
static void decode_attention(T* out, long out_row, float* lse, float* part, float* part_ml, const T* q, long q_row, long q_head,
                             CacheView<const T*> ka, CacheView<const T*> kb, CacheView<const T*> v, const int* seq, const int* pos, int n,
                             int nk_max, int chunk, const DecodeDims& d) {
    const int splits = std::max(1, (int)ceil_div(nk_max, chunk));
    dim3 grid(n, d.H, splits);
    if (d.v_in_k)
        launch(decode_attention_kernel<T, DECODE_KMAX_MLA, DECODE_VMAX_MLA, true>, grid, dim3(32), part, part_ml, q, q_row, q_head, ka, kb, v, seq,
               pos, d.H, d.group, d.da, d.db, d.dv, d.scale, d.slopes, chunk, splits);
    else
        launch(decode_attention_kernel<T, DECODE_KMAX_GQA, DECODE_KMAX_GQA, false>, grid, dim3(32), part, part_ml, q, q_row, q_head, ka, kb, v,
               seq, pos, d.H, d.group, d.da, d.db, d.dv, d.scale, d.slopes, chunk, splits);
    launch(decode_combine_kernel<T>, dim3(ceil_div((long)n * d.H * 32, 256)), dim3(256), out, out_row, lse, (const float*)part,
           (const float*)part_ml, n, d.H, d.dv, splits);
}
template <typename T>
static void cache_append(T* dst, long seq_stride, long tok_stride, const T* src, long src_row, int width, const int* seq, const int* pos, int n,
                         T* dst2 = nullptr, const T* src2 = nullptr, long src2_row = 0, int width2 = 0) {
    launch(cache_append_kernel<T>, dim3(ceil_div((long)n * (width + width2), 256)), dim3(256), dst, seq_stride, tok_stride, src, src_row, width,
           seq, pos, n, dst2, src2, src2_row, width2);
}
// what every layer's decoding shares: the rows' sequences and positions (device), the split-K
// scratch, the key chunk per split
struct DecodeShared {
    const int *seq = nullptr, *pos = nullptr;
    int n = 0, nk_max = 0, chunk = 256;
    float *part = nullptr, *part_ml = nullptr;
};

// ---- device buffers -------------------------------------------------------------------------
// one allocation carved into named, 256-byte aligned pieces (names feed the memory report);
// want() reserves a piece for a pointer that fill() sets once the allocation exists
struct Arena {
    struct Piece { std::string name; size_t bytes; };
    std::vector<Piece> pieces;
    std::vector<std::pair<size_t, void**>> slots;
    size_t total = 0;
    size_t reserve(const std::string& name, size_t bytes) {
        size_t off = total;
        pieces.push_back({name, bytes});
        total += (bytes + 255) / 256 * 256;
        return off;
    }
    template <typename P>
    void want(const std::string& name, size_t bytes, P** slot) {
        slots.push_back({reserve(name, bytes), (void**)slot});
    }
    void fill(char* base) {
        for (auto& s : slots) *s.second = base + s.first;
    }
};

// ---- the attention variants on the device ---------------------------------------------------
// Each maps the layer's normalised input x (B,Tn,C) to its output out (B,Tn,C), output projection
// included, mirroring its CPU twin in attention/ line by line (the reference it is tested against).
// Activations saved for backward are per layer; backward scratch is reserved once (layer 0) and
// shared by every layer.
template <typename T>
struct DevAttn {
    const CudaModelSpec& s;
    const CudaAttnOffsets off;  // this layer's attention parameters
    const float *rope_cos, *rope_sin, *slopes;  // device tables, shared by the layers
    DevAttn(const CudaModelSpec& spec, const CudaAttnOffsets& o_, const float* rc, const float* rs, const float* sl)
        : s(spec), off(o_), rope_cos(rc), rope_sin(rs), slopes(sl) {}
    virtual ~DevAttn() { dec_free(); }
    // reserve this layer's activations (prefix "layer l "), and the shared scratch when `scratch`
    virtual void reserve(Arena& A, const std::string& prefix, size_t BT, size_t BHT, bool scratch) = 0;
    virtual void share_scratch(const DevAttn* first) = 0;  // layers > 0: use layer 0's scratch
    virtual void forward(const T* P, const T* x, T* out, int B, int Tn) = 0;
    // dx (B,Tn,C) is overwritten; parameter gradients accumulate into G
    virtual void backward(const T* P, float* G, const T* x, const T* dout, T* dx, int B, int Tn) = 0;
    virtual size_t widest_column_sum() const = 0;  // the widest (N, C) a bias / norm gradient sums over
    // decoding with a device KV cache (slot j holds position j: the device has no presses).
    // decode_begin allocates the cache for n_seq sequences of max_T tokens (and what the absorbed
    // form needs); decode runs the d.n rows of x (d.n <= the rows the forward was sized for), each
    // appending its keys and values first, then attending to its sequence up to itself.
    virtual void decode_begin(const T* P, int n_seq, int max_T, int rows) = 0;
    virtual void decode(const T* P, const T* x, T* out, const DecodeShared& d) = 0;
    virtual int decode_value_width() const = 0;   // dv of the decode attention (the split scratch's width)
    virtual size_t cache_bytes_per_token() const = 0;  // per sequence, measured from the allocation's layout
    virtual size_t cache_bytes_fixed() const { return 0; }  // per sequence, whatever its length
    std::vector<void*> dec_mem;  // the decode allocations, freed by the next decode_begin and at the end
    int dec_T = 0;
    void* dec_alloc(size_t bytes) {
        dec_mem.push_back(dev_alloc(bytes));
        return dec_mem.back();
    }
    void dec_free() {
        for (void* p : dec_mem) dev_free(p);
        dec_mem.clear();
    }
};

// MHA / GQA / MQA (attention/gqa.h): fused qkv projection, RoPE on q and k, the core, output projection
template <typename T>
struct DevGQA : DevAttn<T> {
    using DevAttn<T>::DevAttn;
    int H = this->s.H, G = this->s.G, hd = this->s.hd, C = this->s.C, Q = (H + 2 * G) * hd;
    T *qkv, *y;  // saved: qkv (B,Tn,Q) with q and k rotated; y (B,Tn,H*hd); lse (B,H,Tn)
    float* lse;
    struct Scratch { T *dy, *dqkv; float* D; } sc;
    void reserve(Arena& A, const std::string& p, size_t BT, size_t BHT, bool scratch) override {
        A.want(p + "qkv", BT * Q * sizeof(T), &qkv);
        A.want(p + "attention y", BT * H * hd * sizeof(T), &y);
        A.want(p + "attention lse (fp32)", BHT * 4, &lse);
        if (!scratch) return;
        A.want("d attention y", BT * H * hd * sizeof(T), &sc.dy);
        A.want("d qkv", BT * Q * sizeof(T), &sc.dqkv);
        A.want("attention D (fp32)", BHT * 4, &sc.D);
    }
    void share_scratch(const DevAttn<T>* f) override { sc = static_cast<const DevGQA*>(f)->sc; }
    size_t widest_column_sum() const override { return std::max(Q, C); }
    AttDims dims() const { return {H, G, hd, 0, this->s.scale, this->slopes}; }
    void forward(const T* P, const T* x, T* out, int B, int Tn) override {
        const int BT = B * Tn;
        matmul_forward<T>(qkv, x, P + this->off.w_qkv, P + this->off.b_qkv, BT, C, Q);
        rope_apply<T>(qkv, Q, hd, H + G, B, Tn, this->s.rot, this->rope_cos, this->rope_sin, false);
        AttView<const T*> q, k, v;
        gqa_views<const T*>(qkv, H, G, hd, &q, &k, &v);
        attention_forward<T>(y, lse, q, k, {nullptr, 0, 0}, v, B, Tn, dims());
        matmul_forward<T>(out, y, P + this->off.w_o, P + this->off.b_o, BT, H * hd, C);
    }
    void backward(const T* P, float* Gr, const T* x, const T* dout, T* dx, int B, int Tn) override {
        const int BT = B * Tn;
        matmul_backward<T>(sc.dy, Gr + this->off.w_o, Gr + this->off.b_o, dout, y, P + this->off.w_o, BT, H * hd, C);
        AttView<const T*> q, k, v;
        AttView<T*> dq, dk, dv;
        gqa_views<const T*>(qkv, H, G, hd, &q, &k, &v);
        gqa_views<T*>(sc.dqkv, H, G, hd, &dq, &dk, &dv);
        attention_backward<T>(dq, dk, nullptr, 0, dv, sc.D, nullptr, q, k, {nullptr, 0, 0}, v, y, sc.dy, lse, nullptr, B, Tn, dims());
        rope_apply<T>(sc.dqkv, Q, hd, H + G, B, Tn, this->s.rot, this->rope_cos, this->rope_sin, true);
        matmul_backward<T>(dx, Gr + this->off.w_qkv, Gr + this->off.b_qkv, sc.dqkv, x, P + this->off.w_qkv, BT, C, Q);
    }
    // decoding: the cache holds each token's rotated k and its v, (S, max_T, G, hd) each
    T *cache_k = nullptr, *cache_v = nullptr;
    void decode_begin(const T*, int n_seq, int max_T, int) override {
        this->dec_free();
        this->dec_T = max_T;
        cache_k = (T*)this->dec_alloc((size_t)n_seq * max_T * G * hd * sizeof(T));
        cache_v = (T*)this->dec_alloc((size_t)n_seq * max_T * G * hd * sizeof(T));
    }
    int decode_value_width() const override { return hd; }
    size_t cache_bytes_per_token() const override { return 2 * (size_t)G * hd * sizeof(T); }
    void decode(const T* P, const T* x, T* out, const DecodeShared& d) override {
        const int n = d.n;
        const long seq_stride = (long)this->dec_T * G * hd;
        matmul_forward<T>(qkv, x, P + this->off.w_qkv, P + this->off.b_qkv, n, C, Q);
        rope_apply<T>(qkv, Q, hd, H + G, 1, n, this->s.rot, this->rope_cos, this->rope_sin, false, d.pos);
        cache_append<T>(cache_k, seq_stride, (long)G * hd, qkv + H * hd, Q, G * hd, d.seq, d.pos, n, cache_v, qkv + (H + G) * hd, Q, G * hd);
        decode_attention<T>(y, (long)H * hd, nullptr, d.part, d.part_ml, qkv, Q, hd, {cache_k, seq_stride, (long)G * hd, hd}, {nullptr, 0, 0, 0},
                            {cache_v, seq_stride, (long)G * hd, hd}, d.seq, d.pos, n, d.nk_max, d.chunk,
                            {H, H / G, hd, 0, hd, this->s.scale, this->slopes, false});
        matmul_forward<T>(out, y, P + this->off.w_o, P + this->off.b_o, n, H * hd, C);
    }
};

// MLA and MLA+KVSplice (attention/mla.h, kvsplice.h), training in the expanded form:
//   [c_KV | k_R] = W_DKV x; c = RMSNorm(c_KV) (KVSplice: c <- W_e LN?(W_c c)); [k_nope_h | v_h] = W_UKV_h c
//   q_h = [q_nope_h | q_rope_h] = W_Q x (or W_UQ RMSNorm(W_DQ x)); RoPE on k_R and q_rope_h
//   the core with the split key: per-head k_nope (hd) + the shared k_R (dR), values hd
template <typename T>
struct DevMLA : DevAttn<T> {
    using DevAttn<T>::DevAttn;
    int H = this->s.H, hd = this->s.hd, C = this->s.C, dc = this->s.dc, dR = this->s.dR, qr = this->s.qr, r = this->s.splice_r;
    int qdim = H * (hd + dR), KV = H * 2 * hd, W = dc + dR;
    // saved: dkv (N,W) with k_R rotated; cn (N,dc); cq, cqn (N,qr); qf (N,qdim) rotated;
    // y (N,H*hd); splice z, zl (N,r), expanded (N,dc); fp32 rrms, qrrms, splice mean/rstd (N), lse.
    // Not saved: the up-projection kv = [k_nope_h | v_h] (N, 2*H*hd), as large as MHA's K and V:
    // it lives in one buffer all layers share, written by each layer's forward and recomputed
    // from the saved latent in its backward (one N x dc x 2*H*hd matmul, ~4% of a Pythia-shaped
    // layer's training FLOPs at dc = C/4), as production MLA trainers do
    T *dkv, *cn, *cq = nullptr, *cqn = nullptr, *qf, *y, *z = nullptr, *zl = nullptr, *expanded = nullptr;
    float *rrms, *qrrms = nullptr, *sp_mean = nullptr, *sp_rstd = nullptr, *lse;
    struct Scratch {
        T *kv, *dy, *dqf, *dkvb, *ddkv, *dlat, *dcn, *dcqn, *dcq, *dzl, *dz;
        float *D, *dkb_part;
    } sc{};
    void reserve(Arena& A, const std::string& p, size_t N, size_t BHT, bool scratch) override {
        const size_t e = sizeof(T);
        A.want(p + "mla dkv", N * W * e, &dkv);
        A.want(p + "mla latent", N * dc * e, &cn);
        A.want(p + "mla q", N * qdim * e, &qf);
        A.want(p + "attention y", N * H * hd * e, &y);
        A.want(p + "norm stats (fp32)", N * 4, &rrms);
        A.want(p + "attention lse (fp32)", BHT * 4, &lse);
        if (qr) {
            A.want(p + "mla q down-projection", N * qr * e, &cq);
            A.want(p + "mla q down-projection", N * qr * e, &cqn);
            A.want(p + "norm stats (fp32)", N * 4, &qrrms);
        }
        if (r) {
            A.want(p + "kvsplice z", N * r * e, &z);
            if (this->s.splice_ln) A.want(p + "kvsplice z", N * r * e, &zl);
            A.want(p + "kvsplice expanded latent", N * dc * e, &expanded);
            A.want(p + "norm stats (fp32)", N * 4, &sp_mean);
            A.want(p + "norm stats (fp32)", N * 4, &sp_rstd);
        }
        if (!scratch) return;
        A.want("mla kv (recomputed in backward)", N * KV * e, &sc.kv);
        A.want("d attention y", N * H * hd * e, &sc.dy);
        A.want("d mla q", N * qdim * e, &sc.dqf);
        A.want("d mla kv", N * KV * e, &sc.dkvb);
        A.want("d mla dkv", N * W * e, &sc.ddkv);
        A.want("d mla latent", N * dc * e, &sc.dlat);
        if (r) A.want("d mla latent", N * dc * e, &sc.dcn);
        if (qr) { A.want("d mla q down-projection", N * qr * e, &sc.dcqn); A.want("d mla q down-projection", N * qr * e, &sc.dcq); }
        if (r) { A.want("d kvsplice z", N * r * e, &sc.dzl); A.want("d kvsplice z", N * r * e, &sc.dz); }
        A.want("attention D (fp32)", BHT * 4, &sc.D);
        if (dR) A.want("d rope key per head (fp32)", N * H * dR * 4, &sc.dkb_part);
    }
    void share_scratch(const DevAttn<T>* f) override { sc = static_cast<const DevMLA*>(f)->sc; }
    size_t widest_column_sum() const override { return std::max(std::max(C, W), std::max(dc, qr)); }
    AttDims dims() const { return {H, H, hd, dR, this->s.scale, this->slopes}; }
    const T* latent() const { return r ? expanded : cn; }
    const T* cached() const { return this->s.splice_ln ? zl : z; }  // KVSplice's compressed latent
    // the rows' down-projection dkv = [c_KV | k_R] = W_DKV x (k_R not yet rotated), the latent
    // cn = RMSNorm(c_KV), and KVSplice's compressed latent z (LayerNorm'd into zl)
    void latents(const T* P, const T* x, int n) {
        const CudaAttnOffsets& w = this->off;
        matmul_forward<T>(dkv, x, P + w.w_dkv, nullptr, n, C, W);
        rmsnorm_forward<T>(cn, rrms, dkv, W, P + w.kv_norm, n, dc);
        if (r) {
            matmul_forward<T>(z, cn, P + w.sp_wc, nullptr, n, dc, r);
            if (this->s.splice_ln) layernorm_forward<T>(zl, sp_mean, sp_rstd, z, P + w.sp_ln_w, P + w.sp_ln_b, n, r);
        }
    }
    // the rows' queries qf (n, H*(hd+dR)) = W_Q x, or W_UQ RMSNorm(W_DQ x); not yet rotated
    void queries(const T* P, const T* x, int n) {
        const CudaAttnOffsets& w = this->off;
        if (qr) {
            matmul_forward<T>(cq, x, P + w.w_dq, nullptr, n, C, qr);
            rmsnorm_forward<T>(cqn, qrrms, cq, qr, P + w.q_norm, n, qr);
            matmul_forward<T>(qf, cqn, P + w.w_uq, nullptr, n, qr, qdim);
        } else {
            matmul_forward<T>(qf, x, P + w.w_q, nullptr, n, C, qdim);
        }
    }
    void forward(const T* P, const T* x, T* out, int B, int Tn) override {
        const int N = B * Tn;
        const CudaAttnOffsets& w = this->off;
        latents(P, x, N);
        rope_apply<T>(dkv + dc, W, 0, 1, B, Tn, dR, this->rope_cos, this->rope_sin, false);  // the shared rope key
        if (r) matmul_forward<T>(expanded, cached(), P + w.sp_we, nullptr, N, r, dc);
        T* kv = sc.kv;
        matmul_forward<T>(kv, latent(), P + w.w_ukv, nullptr, N, dc, KV);
        queries(P, x, N);
        rope_apply<T>(qf + hd, qdim, hd + dR, H, B, Tn, dR, this->rope_cos, this->rope_sin, false);  // each head's q_rope part
        attention_forward<T>(y, lse, {qf, qdim, hd + dR}, {kv, KV, 2 * hd}, {dkv + dc, W, 0}, {kv + hd, KV, 2 * hd}, B, Tn, dims());
        matmul_forward<T>(out, y, P + w.w_o, P + w.b_o, N, H * hd, C);
    }
    void backward(const T* P, float* Gr, const T* x, const T* dout, T* dx, int B, int Tn) override {
        const int N = B * Tn;
        const CudaAttnOffsets& w = this->off;
        matmul_backward<T>(sc.dy, Gr + w.w_o, Gr + w.b_o, dout, y, P + w.w_o, N, H * hd, C);
        T* kv = sc.kv;
        matmul_forward<T>(kv, latent(), P + w.w_ukv, nullptr, N, dc, KV);  // recomputed (the same bits as the forward's)
        attention_backward<T>({sc.dqf, qdim, hd + dR}, {sc.dkvb, KV, 2 * hd}, sc.ddkv + dc, W, {sc.dkvb + hd, KV, 2 * hd}, sc.D, sc.dkb_part,
                              {qf, qdim, hd + dR}, {kv, KV, 2 * hd}, {dkv + dc, W, 0}, {kv + hd, KV, 2 * hd}, y, sc.dy, lse, nullptr, B, Tn,
                              dims());
        rope_apply<T>(sc.dqf + hd, qdim, hd + dR, H, B, Tn, dR, this->rope_cos, this->rope_sin, true);
        rope_apply<T>(sc.ddkv + dc, W, 0, 1, B, Tn, dR, this->rope_cos, this->rope_sin, true);
        // the query path writes dx, the kv path adds to it
        if (qr) {
            matmul_backward<T>(sc.dcqn, Gr + w.w_uq, nullptr, sc.dqf, cqn, P + w.w_uq, N, qr, qdim);
            rmsnorm_backward<T>(sc.dcq, Gr + w.q_norm, sc.dcqn, cq, qr, P + w.q_norm, qrrms, N, qr);
            matmul_backward<T>(dx, Gr + w.w_dq, nullptr, sc.dcq, x, P + w.w_dq, N, C, qr);
        } else {
            matmul_backward<T>(dx, Gr + w.w_q, nullptr, sc.dqf, x, P + w.w_q, N, C, qdim);
        }
        matmul_backward<T>(sc.dlat, Gr + w.w_ukv, nullptr, sc.dkvb, latent(), P + w.w_ukv, N, dc, KV);
        const T* dcn = sc.dlat;
        if (r) {
            matmul_backward<T>(sc.dzl, Gr + w.sp_we, nullptr, sc.dlat, cached(), P + w.sp_we, N, r, dc);
            const T* dz = sc.dzl;
            if (this->s.splice_ln) {
                dev_zero(sc.dz, (size_t)N * r * sizeof(T));
                layernorm_backward<T>(sc.dz, Gr + w.sp_ln_w, Gr + w.sp_ln_b, sc.dzl, z, P + w.sp_ln_w, sp_mean, sp_rstd, N, r);
                dz = sc.dz;
            }
            matmul_backward<T>(sc.dcn, Gr + w.sp_wc, nullptr, dz, cn, P + w.sp_wc, N, dc, r);
            dcn = sc.dcn;
        }
        rmsnorm_backward<T>(sc.ddkv, Gr + w.kv_norm, dcn, dkv, W, P + w.kv_norm, rrms, N, dc);
        matmul_backward<T>(dx, Gr + w.w_dkv, nullptr, sc.ddkv, x, P + w.w_dkv, N, C, W, true);
    }
    // decoding in the absorbed form (attention/mla.h): the cache holds each token's latent (L =
    // dc, or r with KVSplice) and rotated rope key, (S, max_T, L + dR); W_UK_h is folded into the
    // query (q_abs_h = W_UK_h^T q_nope_h, L wide) and W_UV_h into the output projection (W_OV =
    // W_O_h W_UV_h), so every head attends to the one shared latent and nothing is expanded
    int Lc = r ? r : dc;
    T *cache = nullptr, *up = nullptr, *w_ov = nullptr, *qa = nullptr, *ctx = nullptr;
    void decode_begin(const T* P, int n_seq, int max_T, int rows_) override {
        const CudaAttnOffsets& w = this->off;
        if (Lc > DECODE_VMAX_MLA || Lc + dR > DECODE_KMAX_MLA) {
            char msg[160];
            snprintf(msg, sizeof msg, "the CUDA absorbed-MLA decode kernel takes a cached latent of <= %d and latent + rope key <= %d; this model has %d + %d",
                     DECODE_VMAX_MLA, DECODE_KMAX_MLA, Lc, dR);
            backend_fail("decode on the CPU (-d cpu)", msg);
        }
        this->dec_free();
        this->dec_T = max_T;
        const size_t e = sizeof(T), rows = (size_t)rows_;
        cache = (T*)this->dec_alloc((size_t)n_seq * max_T * (Lc + dR) * e);
        // per head K_h (hd x L) and V_h (hd x L), rows h*2hd and h*2hd + hd of up (H*2hd, L):
        // W_UKV itself, or with KVSplice W_UKV W_e
        if (r) {
            up = (T*)this->dec_alloc((size_t)H * 2 * hd * Lc * e);
            gemm<T>(false, false, Lc, H * 2 * hd, dc, P + w.sp_we, Lc, P + w.w_ukv, dc, up, Lc, DType<T>::id, 0.0f, nullptr);
        } else {
            up = (T*)(P + w.w_ukv);
        }
        // W_OV[:, h*L + j] = sum_i W_O[:, h*hd + i] V_h[i, j]
        w_ov = (T*)this->dec_alloc((size_t)C * H * Lc * e);
        for (int h = 0; h < H; h++)
            gemm<T>(false, false, Lc, C, hd, up + ((size_t)h * 2 * hd + hd) * Lc, Lc, P + w.w_o + (size_t)h * hd, H * hd, w_ov + (size_t)h * Lc,
                    H * Lc, DType<T>::id, 0.0f, nullptr);
        qa = (T*)this->dec_alloc(rows * H * (Lc + dR) * e);
        ctx = (T*)this->dec_alloc(rows * H * Lc * e);
    }
    int decode_value_width() const override { return Lc; }
    size_t cache_bytes_per_token() const override { return (size_t)(Lc + dR) * sizeof(T); }
    void decode(const T* P, const T* x, T* out, const DecodeShared& d) override {
        const int n = d.n, A = Lc + dR;
        const CudaAttnOffsets& w = this->off;
        const long seq_stride = (long)this->dec_T * A;
        latents(P, x, n);
        rope_apply<T>(dkv + dc, W, 0, 1, 1, n, dR, this->rope_cos, this->rope_sin, false, d.pos);
        cache_append<T>(cache, seq_stride, A, r ? cached() : cn, Lc, Lc, d.seq, d.pos, n, cache + Lc, dkv + dc, W, dR);  // latent | rope key
        queries(P, x, n);
        rope_apply<T>(qf + hd, qdim, hd + dR, H, 1, n, dR, this->rope_cos, this->rope_sin, false, d.pos);
        // the absorbed query, every head: [W_UK_h^T q_nope_h (L) | q_rope_h (dR)]
        launch(absorb_query_kernel<T>, dim3(H, n), dim3(128), qa, (const T*)up, (const T*)qf, (long)qdim, H, hd, dR, Lc);
        decode_attention<T>(ctx, (long)H * Lc, nullptr, d.part, d.part_ml, qa, (long)H * A, A, {cache, seq_stride, A, 0}, {cache + Lc, seq_stride, A, 0},
                            {cache, seq_stride, A, 0}, d.seq, d.pos, n, d.nk_max, d.chunk, {H, H, Lc, dR, Lc, this->s.scale, this->slopes, true});
        matmul_forward<T>(out, ctx, w_ov, P + w.b_o, n, H * Lc, C);
    }
};

// MKA and fmka (attention/mka.h): three memory levels from one shared projection W_QKV, mixed by
// a router. Level 1: causal attention over the tokens' rotated q, k and their v; level 2: the
// causal running mean of qkv's rows (mka: the value; fmka: key and value, scored by the
// unrotated q); level 3: the unrotated q over M learned slots projected by W_QKV. mka mixes the
// levels' outputs by softmax(router); fmka by softmax(router + each level's lse), per head.
template <typename T>
struct DevMKA : DevAttn<T> {
    using DevAttn<T>::DevAttn;
    int H = this->s.H, hd = this->s.hd, C = this->s.C, D = H * hd, M = this->s.mka_slots, R = this->s.mka_router;
    bool fast = this->s.mka_fast != 0;
    // saved: qkv (N,3D) raw; qk (N,2D) rotated; y1, y2, y3, y (N,D); mkv (M,3D); r1, rg (N,R); z (N,3);
    // fp32: lse (B,H,T), p3 (N,H,M), wts (mka (N,3), fmka (N,H,3)); fmka: kv2 (N,2D), lse2, lse3 (N,H)
    T *qkv, *qk, *y1, *y2, *y3, *y, *mkv, *r1, *rg, *z, *kv2 = nullptr;
    float *lse, *p3, *wts, *lse2 = nullptr, *lse3 = nullptr;
    struct Scratch {
        T *dy, *dyl, *dqk, *dqkv, *dmkv, *drg, *dr1, *dz_t, *dkv2;
        float *D, *dsc3, *dz, *dlse1, *dlse2, *dlse3;
    } sc{};
    void reserve(Arena& A, const std::string& p, size_t N, size_t BHT, bool scratch) override {
        const size_t e = sizeof(T);
        A.want(p + "mka qkv", N * 3 * D * e, &qkv);
        A.want(p + "mka rotated qk", N * 2 * D * e, &qk);
        for (T** q : {&y1, &y2, &y3, &y}) A.want(p + "mka level outputs", N * D * e, q);
        A.want(p + "mka slots", (size_t)M * 3 * D * e, &mkv);
        A.want(p + "mka router", N * R * e, &r1);
        A.want(p + "mka router", N * R * e, &rg);
        A.want(p + "mka router", N * 3 * e, &z);
        A.want(p + "attention lse (fp32)", BHT * 4, &lse);
        A.want(p + "mka slot probabilities (fp32)", N * H * M * 4, &p3);
        A.want(p + "mka mixing weights (fp32)", N * (fast ? H : 1) * 3 * 4, &wts);
        if (fast) {
            A.want(p + "fmka session key, value", N * 2 * D * e, &kv2);
            A.want(p + "fmka level lse (fp32)", N * H * 4, &lse2);
            A.want(p + "fmka level lse (fp32)", N * H * 4, &lse3);
        }
        if (!scratch) return;
        A.want("d attention y", N * D * e, &sc.dy);
        A.want("d mka level", N * D * e, &sc.dyl);
        A.want("d mka rotated qk", N * 2 * D * e, &sc.dqk);
        A.want("d mka qkv", N * 3 * D * e, &sc.dqkv);
        A.want("d mka slots", (size_t)M * 3 * D * e, &sc.dmkv);
        A.want("d mka router", N * R * e, &sc.drg);
        A.want("d mka router", N * R * e, &sc.dr1);
        A.want("d mka router", N * 3 * e, &sc.dz_t);
        A.want("attention D (fp32)", BHT * 4, &sc.D);
        A.want("d mka slot scores (fp32)", N * H * M * 4, &sc.dsc3);
        A.want("d mka router (fp32)", N * 3 * 4, &sc.dz);
        if (fast) {
            A.want("d fmka session key, value", N * 2 * D * e, &sc.dkv2);
            A.want("d fmka level lse (fp32)", BHT * 4, &sc.dlse1);
            A.want("d fmka level lse (fp32)", N * H * 4, &sc.dlse2);
            A.want("d fmka level lse (fp32)", N * H * 4, &sc.dlse3);
        }
    }
    void share_scratch(const DevAttn<T>* f) override { sc = static_cast<const DevMKA*>(f)->sc; }
    size_t widest_column_sum() const override { return std::max(3 * D, std::max(C, R)); }
    AttDims dims() const { return {H, H, hd, 0, this->s.scale, this->slopes}; }
    static unsigned blocks(long n) { return ceil_div(n, 256); }
    void forward(const T* P, const T* x, T* out, int B, int Tn) override {
        const int N = B * Tn;
        const CudaAttnOffsets& w = this->off;
        matmul_forward<T>(qkv, x, P + w.w_qkv, P + w.b_qkv, N, C, 3 * D);
        launch(copy_cols_kernel<T>, dim3(blocks((long)N * 2 * D)), dim3(256), qk, 2L * D, (const T*)qkv, 3L * D, N, 2 * D, 0);
        rope_apply<T>(qk, 2 * D, hd, 2 * H, B, Tn, this->s.rot, this->rope_cos, this->rope_sin, false);  // level 3 keeps q unrotated
        attention_forward<T>(y1, lse, {qk, 2L * D, hd}, {qk + D, 2L * D, hd}, {nullptr, 0, 0}, {qkv + 2 * D, 3L * D, hd}, B, Tn, dims());
        if (fast) {  // level 2: the running means of the key and value rows; the session key scored by the unrotated q
            launch(running_mean_kernel<T>, dim3(blocks((long)B * 2 * D)), dim3(256), kv2, 2L * D, (const T*)(qkv + D), 3L * D, B, Tn, 2 * D);
            launch(copy_cols_kernel<T>, dim3(blocks((long)N * D)), dim3(256), y2, (long)D, (const T*)(kv2 + D), 2L * D, N, D, 0);
            launch(session_score_kernel<T>, dim3(blocks((long)N * H * 32)), dim3(256), lse2, (const T*)qkv, (const T*)kv2, N, H, hd, this->s.scale);
        } else {
            launch(running_mean_kernel<T>, dim3(blocks((long)B * D)), dim3(256), y2, (long)D, (const T*)(qkv + 2 * D), 3L * D, B, Tn, D);
        }
        matmul_forward<T>(mkv, P + w.mem, P + w.w_qkv, P + w.b_qkv, M, C, 3 * D);
        launch(slots_forward_kernel<T>, dim3(blocks((long)N * H * 32)), dim3(256), p3, y3, fast ? lse3 : (float*)nullptr, (const T*)qkv,
               (const T*)mkv, N, H, hd, M, this->s.scale);
        matmul_forward<T>(r1, x, P + w.w_r1, P + w.b_r1, N, C, R);
        gelu_forward<T>(rg, r1, (long)N * R, true);
        matmul_forward<T>(z, rg, P + w.w_r2, P + w.b_r2, N, R, 3);
        launch(mka_mix_kernel<T>, dim3(blocks((long)N * H)), dim3(256), y, wts, (const T*)z, (const T*)y1, (const T*)y2, (const T*)y3,
               (const float*)lse, (const float*)lse2, (const float*)lse3, B, Tn, H, hd, (int)fast);
        matmul_forward<T>(out, y, P + w.w_o, P + w.b_o, N, D, C);
    }
    void backward(const T* P, float* Gr, const T* x, const T* dout, T* dx, int B, int Tn) override {
        const int N = B * Tn;
        const CudaAttnOffsets& w = this->off;
        const float scale = this->s.scale;
        matmul_backward<T>(sc.dy, Gr + w.w_o, Gr + w.b_o, dout, y, P + w.w_o, N, D, C);
        // the router (and fmka's lse gradients), then its MLP: dx starts here
        launch(mka_mix_backward_kernel<T>, dim3(blocks(N)), dim3(256), sc.dz, sc.dlse1, sc.dlse2, sc.dlse3, (const float*)wts,
               (const T*)sc.dy, (const T*)y1, (const T*)y2, (const T*)y3, B, Tn, H, hd, (int)fast);
        launch(convert_kernel<T>, dim3(blocks((long)N * 3)), dim3(256), sc.dz_t, (const float*)sc.dz, (long)N * 3);
        matmul_backward<T>(sc.drg, Gr + w.w_r2, Gr + w.b_r2, sc.dz_t, rg, P + w.w_r2, N, R, 3);
        gelu_backward<T>(sc.dr1, r1, sc.drg, (long)N * R, true);
        matmul_backward<T>(dx, Gr + w.w_r1, Gr + w.b_r1, sc.dr1, x, P + w.w_r1, N, C, R);
        auto scaled_dy = [&](int l) {
            launch(mka_scaled_dy_kernel<T>, dim3(blocks((long)N * D)), dim3(256), sc.dyl, (const T*)sc.dy, (const float*)wts, N, H, hd, l, (int)fast);
        };
        // level 1: dq, dk into dqk (then un-rotated into dqkv's q, k parts), dv into dqkv's v part
        scaled_dy(0);
        attention_backward<T>({sc.dqk, 2L * D, hd}, {sc.dqk + D, 2L * D, hd}, nullptr, 0, {sc.dqkv + 2 * D, 3L * D, hd}, sc.D, nullptr,
                              {qk, 2L * D, hd}, {qk + D, 2L * D, hd}, {nullptr, 0, 0}, {qkv + 2 * D, 3L * D, hd}, y1, sc.dyl, lse,
                              fast ? sc.dlse1 : nullptr, B, Tn, dims());
        rope_apply<T>(sc.dqk, 2 * D, hd, 2 * H, B, Tn, this->s.rot, this->rope_cos, this->rope_sin, true);
        launch(copy_cols_kernel<T>, dim3(blocks((long)N * 2 * D)), dim3(256), sc.dqkv, 3L * D, (const T*)sc.dqk, 2L * D, N, 2 * D, 0);
        // level 2: the running mean back to qkv's rows
        scaled_dy(1);
        if (fast) {
            launch(session_backward_kernel<T>, dim3(blocks((long)N * D)), dim3(256), sc.dkv2, sc.dqkv, (const T*)qkv, (const T*)kv2, (const T*)sc.dyl,
                   (const float*)sc.dlse2, N, H, hd, scale);
            launch(running_mean_backward_kernel<T>, dim3(blocks((long)B * 2 * D)), dim3(256), sc.dqkv + D, 3L * D, (const T*)sc.dkv2, 2L * D, B,
                   Tn, 2 * D);
        } else {
            launch(running_mean_backward_kernel<T>, dim3(blocks((long)B * D)), dim3(256), sc.dqkv + 2 * D, 3L * D, (const T*)sc.dyl, (long)D, B,
                   Tn, D);
        }
        // level 3: the slots' softmax back to the unrotated q and to the projected slots
        scaled_dy(2);
        launch(slots_backward_dq_kernel<T>, dim3(blocks((long)N * H * 32)), dim3(256), sc.dsc3, sc.dqkv, (const float*)p3, (const T*)sc.dyl,
               (const T*)mkv, fast ? (const float*)sc.dlse3 : (const float*)nullptr, N, H, hd, M, scale);
        launch(slots_backward_dkv_kernel<T>, dim3(blocks((long)M * D)), dim3(256), sc.dmkv, (const float*)sc.dsc3, (const float*)p3,
               (const T*)qkv, (const T*)sc.dyl, N, H, hd, M);
        // the slots' gradient straight into the fp32 grads of mem (M,C) += dmkv W_QKV, and W_QKV's from both
        matmul_backward<T>(nullptr, Gr + w.w_qkv, Gr + w.b_qkv, sc.dmkv, P + w.mem, P + w.w_qkv, M, C, 3 * D);
        gemm<T>(false, false, C, M, 3 * D, P + w.w_qkv, C, sc.dmkv, 3 * D, Gr + w.mem, C, 0, 1.0f, nullptr);
        matmul_backward<T>(dx, Gr + w.w_qkv, Gr + w.b_qkv, sc.dqkv, x, P + w.w_qkv, N, C, 3 * D, true);
    }
    // decoding: level 1's rotated k and v per token, (S, max_T, D) each; level 2's running sums
    // (mka: of the value rows, fmka: of the key and value rows) per sequence, fp32; level 3's
    // projected slots once
    T *cache_k = nullptr, *cache_v = nullptr;
    float* state = nullptr;
    int state_w() const { return fast ? 2 * D : D; }
    void decode_begin(const T* P, int n_seq, int max_T, int rows_) override {
        const CudaAttnOffsets& w = this->off;
        this->dec_free();
        this->dec_T = max_T;
        cache_k = (T*)this->dec_alloc((size_t)n_seq * max_T * D * sizeof(T));
        cache_v = (T*)this->dec_alloc((size_t)n_seq * max_T * D * sizeof(T));
        state = (float*)this->dec_alloc((size_t)n_seq * state_w() * 4);
        dev_zero(state, (size_t)n_seq * state_w() * 4);
        matmul_forward<T>(mkv, P + w.mem, P + w.w_qkv, P + w.b_qkv, M, C, 3 * D);
    }
    int decode_value_width() const override { return hd; }
    size_t cache_bytes_per_token() const override { return 2 * (size_t)D * sizeof(T); }
    size_t cache_bytes_fixed() const override { return (size_t)state_w() * 4; }
    void decode(const T* P, const T* x, T* out, const DecodeShared& d) override {
        const int n = d.n;
        const CudaAttnOffsets& w = this->off;
        const long seq_stride = (long)this->dec_T * D;
        matmul_forward<T>(qkv, x, P + w.w_qkv, P + w.b_qkv, n, C, 3 * D);
        launch(copy_cols_kernel<T>, dim3(blocks((long)n * 2 * D)), dim3(256), qk, 2L * D, (const T*)qkv, 3L * D, n, 2 * D, 0);
        rope_apply<T>(qk, 2 * D, hd, 2 * H, 1, n, this->s.rot, this->rope_cos, this->rope_sin, false, d.pos);
        cache_append<T>(cache_k, seq_stride, D, qk + D, 2L * D, D, d.seq, d.pos, n, cache_v, qkv + 2 * D, 3L * D, D);
        decode_attention<T>(y1, (long)D, lse, d.part, d.part_ml, qk, 2L * D, hd, {cache_k, seq_stride, D, hd}, {nullptr, 0, 0, 0},
                            {cache_v, seq_stride, D, hd}, d.seq, d.pos, n, d.nk_max, d.chunk, {H, 1, hd, 0, hd, this->s.scale, this->slopes, false});
        if (fast) {
            launch(decode_running_mean_kernel<T>, dim3(blocks(2 * D)), dim3(256), kv2, 2L * D, state, (const T*)(qkv + D), 3L * D, d.seq, d.pos, n, 2 * D);
            launch(copy_cols_kernel<T>, dim3(blocks((long)n * D)), dim3(256), y2, (long)D, (const T*)(kv2 + D), 2L * D, n, D, 0);
            launch(session_score_kernel<T>, dim3(blocks((long)n * H * 32)), dim3(256), lse2, (const T*)qkv, (const T*)kv2, n, H, hd, this->s.scale);
        } else {
            launch(decode_running_mean_kernel<T>, dim3(blocks(D)), dim3(256), y2, (long)D, state, (const T*)(qkv + 2 * D), 3L * D, d.seq, d.pos, n, D);
        }
        launch(slots_forward_kernel<T>, dim3(blocks((long)n * H * 32)), dim3(256), p3, y3, fast ? lse3 : (float*)nullptr, (const T*)qkv,
               (const T*)mkv, n, H, hd, M, this->s.scale);
        matmul_forward<T>(r1, x, P + w.w_r1, P + w.b_r1, n, C, R);
        gelu_forward<T>(rg, r1, (long)n * R, true);
        matmul_forward<T>(z, rg, P + w.w_r2, P + w.b_r2, n, R, 3);
        launch(mka_mix_kernel<T>, dim3(blocks((long)n * H)), dim3(256), y, wts, (const T*)z, (const T*)y1, (const T*)y2, (const T*)y3,
               (const float*)lse, (const float*)lse2, (const float*)lse3, 1, n, H, hd, (int)fast);
        matmul_forward<T>(out, y, P + w.w_o, P + w.b_o, n, D, C);
    }
};

template <typename T>
struct DevModel : CudaGPT {
    CudaModelSpec s;
    int Bmax, Tmax, B = 0, Tn = 0;
    long n;  // floats in the flat parameter buffer
    float *master = nullptr, *grads = nullptr, *m = nullptr, *v = nullptr;
    T* params = nullptr;  // the T copy (== master when T is float)
    long *d_offsets = nullptr, *d_sizes = nullptr;
    int* d_decay = nullptr;
    float *rope_cos = nullptr, *rope_sin = nullptr, *slopes = nullptr;
    double* norm_partial = nullptr;
    float *norm = nullptr, *loss_slots = nullptr;
    static const int LOSS_SLOTS = 4096;  // mean losses of the forwards since zero_grad(), read once per step
    int next_slot = 0, last_slot = -1;
    int *stage_in = nullptr, *stage_tg = nullptr;  // pinned host staging for the token ids
    UploadFence upload;
    int *inputs = nullptr, *targets = nullptr;
    bool have_targets = false;
    int n_targets = 0;
    // activations
    struct LayerActs {
        T *ln1, *attn_out, *mid, *ln2, *fch, *fch_gelu, *mlp_out;
        float *ln1_mean, *ln1_rstd, *ln2_mean, *ln2_rstd;
    };
    std::vector<LayerActs> acts;
    std::vector<std::unique_ptr<DevAttn<T>>> attn;  // each layer's attention, with its own saved activations
    std::vector<T*> resid;
    T *lnf, *logits, *d_a, *d_b, *d_ln1, *d_ln2, *d_fch, *d_fch_gelu;
    float *lnf_mean, *lnf_rstd, *losses, *ce_lse;
    Arena params_arena, act_arena;
    char *params_mem = nullptr, *act_mem = nullptr;

    DevModel(const CudaModelSpec& spec, int Bmax_, int Tmax_) : s(spec), Bmax(Bmax_), Tmax(Tmax_), n(spec.n_params) {
        backend_init();
        check_att_dims(s.hd, s.attn == CUDA_ATTN_MLA ? s.dR : 0);
        if (s.attn == CUDA_ATTN_MKA && (s.mka_slots < 1 || s.mka_slots > 32))
            backend_fail(nullptr, "internal: the CUDA MKA kernels take 1 to 32 memory slots (one warp lane each)");
        if (s.rot && s.rope_T < Tmax) backend_fail(nullptr, "internal: RoPE tables shorter than Tmax");
        // parameters, gradients, optimizer state, small fp32 things
        Arena& P = params_arena;
        size_t o_master = P.reserve("master weights (fp32)", n * 4), o_grads = P.reserve("gradients (fp32)", n * 4),
               o_m = P.reserve("AdamW m (fp32)", n * 4), o_v = P.reserve("AdamW v (fp32)", n * 4);
        size_t o_params = DType<T>::id == 1 ? P.reserve("parameters (bf16 copy)", n * sizeof(T)) : 0;
        size_t nt = s.tensors.size();
        size_t o_off = P.reserve("tensor table", nt * 8), o_sz = P.reserve("tensor sizes", nt * 8), o_dec = P.reserve("decay flags", nt * 4);
        int half = s.rot / 2;
        size_t o_cos = P.reserve("rope cos", (size_t)s.rope_T * half * 4 + 4), o_sin = P.reserve("rope sin", (size_t)s.rope_T * half * 4 + 4);
        size_t o_sl = P.reserve("alibi slopes", s.H * 4);
        size_t o_np = P.reserve("norm partials", NORM_BLOCKS * 8), o_norm = P.reserve("norm, losses", 4 + LOSS_SLOTS * 4);
        size_t o_in = P.reserve("inputs", (size_t)Bmax * Tmax * 4), o_tg = P.reserve("targets", (size_t)Bmax * Tmax * 4);
        params_mem = (char*)dev_alloc(P.total);
        char* b = params_mem;
        master = (float*)(b + o_master); grads = (float*)(b + o_grads); m = (float*)(b + o_m); v = (float*)(b + o_v);
        params = DType<T>::id == 1 ? (T*)(b + o_params) : (T*)master;
        d_offsets = (long*)(b + o_off); d_sizes = (long*)(b + o_sz); d_decay = (int*)(b + o_dec);
        rope_cos = (float*)(b + o_cos); rope_sin = (float*)(b + o_sin);
        slopes = s.slopes.empty() ? nullptr : (float*)(b + o_sl);
        norm_partial = (double*)(b + o_np); norm = (float*)(b + o_norm); loss_slots = norm + 1;
        stage_in = (int*)host_pinned_alloc((size_t)Bmax * Tmax * 4);
        stage_tg = (int*)host_pinned_alloc((size_t)Bmax * Tmax * 4);
        inputs = (int*)(b + o_in); targets = (int*)(b + o_tg);
        std::vector<long> offs(nt), szs(nt);
        std::vector<int> dec(nt);
        for (size_t i = 0; i < nt; i++) { offs[i] = s.tensors[i].offset; szs[i] = s.tensors[i].n; dec[i] = s.tensors[i].decay; }
        h2d(d_offsets, offs.data(), nt * 8);
        h2d(d_sizes, szs.data(), nt * 8);
        h2d(d_decay, dec.data(), nt * 4);
        if (s.rot) { h2d(rope_cos, s.rope_cos.data(), s.rope_cos.size() * 4); h2d(rope_sin, s.rope_sin.data(), s.rope_sin.size() * 4); }
        if (slopes) h2d(slopes, s.slopes.data(), s.H * 4);
        dev_zero(grads, n * 4);
        dev_zero(m, n * 4);
        dev_zero(v, n * 4);
        dev_zero(norm, 4 + LOSS_SLOTS * 4);
        // activations for (Bmax, Tmax)
        Arena& A = act_arena;
        size_t BT = (size_t)Bmax * Tmax, C = s.C, F = s.F, L = s.L;
        std::vector<size_t> o_res(L + 1);
        for (size_t l = 0; l <= L; l++) o_res[l] = A.reserve("residual stream " + std::to_string(l), BT * C * sizeof(T));
        struct LO { size_t ln1, attn_out, mid, ln2, fch, fch_gelu, mlp_out, st; };
        std::vector<LO> lo(L);
        for (size_t l = 0; l < L; l++) {
            std::string p = "layer " + std::to_string(l) + " ";
            lo[l].ln1 = A.reserve(p + "ln1", BT * C * sizeof(T));
            lo[l].attn_out = A.reserve(p + "attention out", BT * C * sizeof(T));
            lo[l].mid = A.reserve(p + "mid", s.parallel_residual ? 0 : BT * C * sizeof(T));
            lo[l].ln2 = A.reserve(p + "ln2", BT * C * sizeof(T));
            lo[l].fch = A.reserve(p + "fc", BT * F * sizeof(T));
            lo[l].fch_gelu = A.reserve(p + "gelu", BT * F * sizeof(T));
            lo[l].mlp_out = A.reserve(p + "mlp out", BT * C * sizeof(T));
            lo[l].st = A.reserve(p + "LN stats (fp32)", 4 * BT * 4);
            const CudaAttnOffsets& ao = s.layers[l].attn;
            if (s.attn == CUDA_ATTN_MLA) attn.emplace_back(new DevMLA<T>(s, ao, rope_cos, rope_sin, slopes));
            else if (s.attn == CUDA_ATTN_MKA) attn.emplace_back(new DevMKA<T>(s, ao, rope_cos, rope_sin, slopes));
            else attn.emplace_back(new DevGQA<T>(s, ao, rope_cos, rope_sin, slopes));
            attn[l]->reserve(A, p, BT, (size_t)Bmax * s.H * Tmax, l == 0);
        }
        size_t o_lnf = A.reserve("lnf", BT * C * sizeof(T)), o_lnfst = A.reserve("lnf stats (fp32)", 2 * BT * 4);
        size_t o_logits = A.reserve("logits / dlogits", BT * s.Vp * sizeof(T));
        size_t o_losses = A.reserve("losses, lse (fp32)", 2 * BT * 4);
        size_t o_da = A.reserve("d residual a", BT * C * sizeof(T)), o_db = A.reserve("d residual b", BT * C * sizeof(T));
        size_t o_dln1 = A.reserve("d ln1", BT * C * sizeof(T)), o_dln2 = A.reserve("d ln2", BT * C * sizeof(T));
        size_t o_dfch = A.reserve("d fc", BT * F * sizeof(T)), o_dfg = A.reserve("d gelu", BT * F * sizeof(T));
        act_mem = (char*)dev_alloc(A.total);
        A.fill(act_mem);
        for (size_t l = 1; l < L; l++) attn[l]->share_scratch(attn[0].get());
        colsum_reserve(Bmax * Tmax, (int)std::max(std::max(C, F), attn[0]->widest_column_sum()));
        char* a = act_mem;
        resid.resize(L + 1);
        for (size_t l = 0; l <= L; l++) resid[l] = (T*)(a + o_res[l]);
        acts.resize(L);
        for (size_t l = 0; l < L; l++) {
            LayerActs& y = acts[l];
            y.ln1 = (T*)(a + lo[l].ln1); y.attn_out = (T*)(a + lo[l].attn_out);
            y.mid = (T*)(a + lo[l].mid); y.ln2 = (T*)(a + lo[l].ln2); y.fch = (T*)(a + lo[l].fch); y.fch_gelu = (T*)(a + lo[l].fch_gelu);
            y.mlp_out = (T*)(a + lo[l].mlp_out);
            float* st = (float*)(a + lo[l].st);
            y.ln1_mean = st; y.ln1_rstd = st + BT; y.ln2_mean = st + 2 * BT; y.ln2_rstd = st + 3 * BT;
        }
        lnf = (T*)(a + o_lnf); lnf_mean = (float*)(a + o_lnfst); lnf_rstd = lnf_mean + BT;
        logits = (T*)(a + o_logits); losses = (float*)(a + o_losses); ce_lse = losses + BT;
        d_a = (T*)(a + o_da); d_b = (T*)(a + o_db); d_ln1 = (T*)(a + o_dln1); d_ln2 = (T*)(a + o_dln2);
        d_fch = (T*)(a + o_dfch); d_fch_gelu = (T*)(a + o_dfg);
        dev_sync();
    }
    ~DevModel() override {
        dev_sync();
        decode_free();
        if (logits_f32) dev_free(logits_f32);
        if (dec_logits_host) host_pinned_free(dec_logits_host);
        dev_free(params_mem);
        dev_free(act_mem);
        host_pinned_free(stage_in);
        host_pinned_free(stage_tg);
    }

    float* device_grads() override { return grads; }
    void* device_stream() override { return (void*)(intptr_t)g_stream; }
    std::string memory_report() const override {
        std::string r;
        char line[160];
        auto add = [&](const Arena& ar, const char* what) {
            // group the per-layer and per-stream pieces by name without their index
            std::vector<std::pair<std::string, size_t>> groups;
            for (const Arena::Piece& p : ar.pieces) {
                std::string key = p.name;
                if (key.rfind("layer ", 0) == 0) key = "per layer: " + key.substr(key.find(' ', 6) + 1);
                if (key.rfind("residual stream", 0) == 0) key = "residual streams";
                auto it = std::find_if(groups.begin(), groups.end(), [&](const std::pair<std::string, size_t>& g) { return g.first == key; });
                if (it == groups.end()) groups.push_back({key, p.bytes});
                else it->second += p.bytes;
            }
            snprintf(line, sizeof line, "%s: %.1f MiB\n", what, ar.total / 1048576.0);
            r += line;
            for (auto& g : groups)
                if (g.second >= 1048576 / 10) {
                    snprintf(line, sizeof line, "  %-36s %10.1f MiB\n", g.first.c_str(), g.second / 1048576.0);
                    r += line;
                }
        };
        add(params_arena, "parameters and optimizer");
        add(act_arena, "activations and scratch");
        return r;
    }
    size_t device_bytes() const override { return params_arena.total + act_arena.total; }

    void set_params(const float* host) override {
        h2d(master, host, n * 4);
        if (DType<T>::id == 1) launch(convert_kernel<T>, dim3(ceil_div(n, 256)), dim3(256), params, (const float*)master, n);
        dev_sync();
    }
    void get_params(float* host) override { d2h(host, master, n * 4); }
    void set_moments(const float* hm, const float* hv) override {
        if (hm) h2d(m, hm, n * 4); else dev_zero(m, n * 4);
        if (hv) h2d(v, hv, n * 4); else dev_zero(v, n * 4);
        dev_sync();
    }
    void get_moments(float* hm, float* hv) override { d2h(hm, m, n * 4); d2h(hv, v, n * 4); }
    void get_grads(float* host) override { d2h(host, grads, n * 4); }

    void forward(const int* in, const int* tg, int B_, int T_) override {
        if (B_ > Bmax || T_ > Tmax) backend_fail(nullptr, "internal: batch larger than the device model was sized for");
        NvtxRange range("forward");
        B = B_; Tn = T_;
        const int C = s.C, F = s.F, BT = B * Tn;
        // upload through pinned staging, without draining the stream: only the previous upload
        // (queued at the start of the previous forward) must have finished reading the staging
        upload.wait();
        for (int i = 0; i < BT; i++) {  // as GPT::forward: an id past the vocab would read outside wte
            if (in[i] < 0 || in[i] >= s.V) {
                char msg[160];
                snprintf(msg, sizeof msg, "input token id %d at position %d is outside the vocab [0, %d)", in[i], i, s.V);
                backend_fail("the data was made with another tokenizer, or is corrupt", msg);
            }
            stage_in[i] = in[i];
        }
        h2d_async(inputs, stage_in, (size_t)BT * 4);
        have_targets = tg != nullptr;
        n_targets = 0;  // the loss is the mean over targets >= 0; backward scales by their count
        if (tg) {
            for (int i = 0; i < BT; i++) n_targets += tg[i] >= 0;
            memcpy(stage_tg, tg, (size_t)BT * 4);
            h2d_async(targets, stage_tg, (size_t)BT * 4);
        }
        upload.record();
        const T* P = params;
        encoder_forward<T>(resid[0], inputs, P + s.wte, s.learned_pos ? P + s.wpe : nullptr, B, Tn, C);
        layernorm_forward<T>(acts[0].ln1, acts[0].ln1_mean, acts[0].ln1_rstd, resid[0], P + s.layers[0].ln1_w, P + s.layers[0].ln1_b, BT, C);
        for (int l = 0; l < s.L; l++) {
            NvtxRange layer_range("layer");
            const CudaLayerOffsets& o = s.layers[l];
            LayerActs& y = acts[l];
            T* x = resid[l];  // y.ln1 = LN1(x) was computed with the residual that made x
            attn[l]->forward(P, y.ln1, y.attn_out, B, Tn);
            if (s.parallel_residual)  // the MLP reads LN2(x)
                layernorm_forward<T>(y.ln2, y.ln2_mean, y.ln2_rstd, x, P + o.ln2_w, P + o.ln2_b, BT, C);
            else  // the MLP reads LN2(mid), mid = x + attn
                residual_layernorm_forward<T>(y.mid, y.ln2, y.ln2_mean, y.ln2_rstd, x, y.attn_out, nullptr, P + o.ln2_w, P + o.ln2_b, BT, C);
            matmul_forward<T>(y.fch, y.ln2, P + o.fc_w, P + o.fc_b, BT, C, F);
            gelu_forward<T>(y.fch_gelu, y.fch, (long)BT * F, s.gelu_exact);
            matmul_forward<T>(y.mlp_out, y.fch_gelu, P + o.proj_w, P + o.proj_b, BT, F, C);
            // the block's output residual, fused with the next LayerNorm (next layer's LN1, or LNf)
            bool last = l == s.L - 1;
            T* ln_next = last ? lnf : acts[l + 1].ln1;
            float* mean_next = last ? lnf_mean : acts[l + 1].ln1_mean;
            float* rstd_next = last ? lnf_rstd : acts[l + 1].ln1_rstd;
            const T* w_next = P + (last ? s.lnf_w : s.layers[l + 1].ln1_w);
            const T* b_next = P + (last ? s.lnf_b : s.layers[l + 1].ln1_b);
            if (s.parallel_residual)
                residual_layernorm_forward<T>(resid[l + 1], ln_next, mean_next, rstd_next, x, y.attn_out, y.mlp_out, w_next, b_next, BT, C);
            else
                residual_layernorm_forward<T>(resid[l + 1], ln_next, mean_next, rstd_next, y.mid, y.mlp_out, nullptr, w_next, b_next, BT, C);
        }
        matmul_forward<T>(logits, lnf, P + s.w_out, nullptr, BT, C, s.Vp);
        if (tg) {
            crossentropy_forward<T>(losses, ce_lse, logits, targets, BT, s.V, s.Vp);
            if (next_slot >= LOSS_SLOTS) backend_fail("use at most 4096 micro-batches per step (-A)", "too many forwards between zero_grad() calls");
            last_slot = next_slot++;
            launch(mean_loss_kernel, dim3(1), dim3(256), loss_slots + last_slot, (const float*)losses, (const int*)targets, BT);
        }
    }
    float mean_loss() override {
        if (!have_targets || last_slot < 0) return NAN;
        float l;
        d2h(&l, loss_slots + last_slot, 4);
        return l;
    }
    void read_losses(float* host, int n) override {
        if (n > next_slot) backend_fail(nullptr, "internal: read_losses asked for more losses than forwards since zero_grad()");
        d2h(host, loss_slots, (size_t)n * 4);
    }
    void get_logits(float* host) override { logits_to_host((long)B * Tn, host); }
    // the fp32 logits of the first `rows` rows to the host; bf16 ones are converted on the device
    // first, into a scratch kept between calls (decoding calls this every step)
    float* logits_f32 = nullptr;
    size_t logits_f32_n = 0;
    void logits_to_host(long rows, float* host) {
        const long N = rows * s.Vp;
        if (DType<T>::id == 0) { d2h(host, logits, N * 4); return; }
        if ((size_t)N > logits_f32_n) {
            if (logits_f32) { dev_sync(); dev_free(logits_f32); }
            logits_f32 = (float*)dev_alloc(N * 4);
            logits_f32_n = N;
        }
        launch(to_float_kernel<T>, dim3(ceil_div(N, 256)), dim3(256), logits_f32, (const T*)logits, N);
        d2h(host, logits_f32, N * 4);
    }
    void get_token_losses(float* host) override {
        if (!have_targets) backend_fail(nullptr, "internal: get_token_losses() after a forward without targets");
        d2h(host, losses, (size_t)B * Tn * 4);
    }
    void zero_grad() override {
        dev_zero(grads, n * 4);
        next_slot = 0;
        last_slot = -1;
    }

    void backward(float grad_scale) override {
        if (!have_targets || n_targets == 0) backend_fail(nullptr, "backward() without targets: call forward() with targets first");
        const int C = s.C, F = s.F, BT = B * Tn;
        NvtxRange range("backward");
        const T* P = params;
        float* Gr = grads;
        T* dres = d_a;
        T* dnext = d_b;
        crossentropy_backward<T>(logits, ce_lse, targets, grad_scale / n_targets, BT, s.V, s.Vp);
        matmul_backward<T>(d_ln1, Gr + s.w_out, nullptr, logits, lnf, P + s.w_out, BT, C, s.Vp);
        dev_zero(dres, (size_t)BT * C * sizeof(T));
        layernorm_backward<T>(dres, Gr + s.lnf_w, Gr + s.lnf_b, d_ln1, resid[s.L], P + s.lnf_w, lnf_mean, lnf_rstd, BT, C);
        for (int l = s.L - 1; l >= 0; l--) {
            NvtxRange layer_range("layer backward");
            const CudaLayerOffsets& o = s.layers[l];
            LayerActs& y = acts[l];
            T* x = resid[l];
            matmul_backward<T>(d_fch_gelu, Gr + o.proj_w, Gr + o.proj_b, dres, y.fch_gelu, P + o.proj_w, BT, F, C);
            gelu_backward<T>(d_fch, y.fch, d_fch_gelu, (long)BT * F, s.gelu_exact);
            matmul_backward<T>(d_ln2, Gr + o.fc_w, Gr + o.fc_b, d_fch, y.ln2, P + o.fc_w, BT, C, F);
            d2d(dnext, dres, (size_t)BT * C * sizeof(T));  // identity path of the residual
            const T* attn_dout;
            if (s.parallel_residual) {
                layernorm_backward<T>(dnext, Gr + o.ln2_w, Gr + o.ln2_b, d_ln2, x, P + o.ln2_w, y.ln2_mean, y.ln2_rstd, BT, C);
                attn_dout = dres;
            } else {  // dnext becomes d(mid) = dres + LN2'(d_ln2); attention sees d(mid)
                layernorm_backward<T>(dnext, Gr + o.ln2_w, Gr + o.ln2_b, d_ln2, y.mid, P + o.ln2_w, y.ln2_mean, y.ln2_rstd, BT, C);
                attn_dout = dnext;
            }
            attn[l]->backward(P, Gr, y.ln1, attn_dout, d_ln1, B, Tn);
            layernorm_backward<T>(dnext, Gr + o.ln1_w, Gr + o.ln1_b, d_ln1, x, P + o.ln1_w, y.ln1_mean, y.ln1_rstd, BT, C);
            std::swap(dres, dnext);
        }
        encoder_backward<T>(Gr + s.wte, s.learned_pos ? Gr + s.wpe : nullptr, dres, inputs, B, Tn, C);
    }
    // ---- decoding (the twin of GPT::decode_chunk, llmc/model.h) ----
    DecodeShared dec;
    int dec_rows = 0, dec_seqs = 0, dec_maxT = 0;
    std::vector<void*> dec_mem;
    // a step's n rows in one device buffer, filled by one copy (dec_host staged): tokens [0, n),
    // sequences [n, 2n), positions [2n, 3n), then the rows whose logits are wanted
    int* dec_rowbuf = nullptr;
    std::vector<int> dec_host;
    int* dec_argmax = nullptr;  // the rows' argmax (greedy decoding)
    // decode steps as CUDA graphs (decode_graphs(true)): a step's kernels and GEMMs captured once
    // per (rows, rows with logits, key splits) and replayed, one launch per step instead of a few
    // per layer. Every argument they take is then fixed: the rows' tokens, sequences and positions
    // are read from device buffers filled before the launch, and the key count only sets the
    // splits (the kernels bound each row by its own position). The caches of decode_begin are
    // baked in, so decode_begin drops the graphs.
    bool use_graphs = false;
    std::map<std::tuple<int, int, int>, cudaGraphExec_t> graphs;
    void drop_graphs() {
        for (auto& g : graphs) cudaCheck(cudaGraphExecDestroy(g.second));
        graphs.clear();
    }
    void decode_free() {
        drop_graphs();
        for (void* p : dec_mem) dev_free(p);
        dec_mem.clear();
    }
    void decode_graphs(bool on) override { use_graphs = on; }
    void decode_begin(int n_seq, int max_T, int chunk) override {
        dev_sync();
        decode_free();
        dec_rows = Bmax * Tmax;
        dec_seqs = n_seq;
        dec_maxT = max_T;
        if (s.learned_pos && max_T > s.max_seq_len) backend_fail(nullptr, "internal: decode context past the learned position table");
        if (s.rot && s.rope_T < max_T) backend_fail(nullptr, "internal: RoPE tables shorter than the decode context");
        int dv = 0;
        for (auto& a : attn) {
            a->decode_begin(params, n_seq, max_T, dec_rows);
            dv = std::max(dv, a->decode_value_width());
        }
        dec.chunk = std::max(32, chunk);
        const size_t splits = ceil_div(max_T, dec.chunk), parts = (size_t)dec_rows * s.H * splits;
        auto take = [&](size_t bytes) { dec_mem.push_back(dev_alloc(bytes)); return dec_mem.back(); };
        dec.part = (float*)take(parts * dv * 4);
        dec.part_ml = (float*)take(parts * 2 * 4);
        dec_rowbuf = (int*)take((size_t)dec_rows * 4 * 4);
        dec_argmax = (int*)take((size_t)dec_rows * 4);
        dec_host.resize((size_t)dec_rows * 4);
        dev_sync();
    }
    size_t cache_bytes_per_token() const override {
        size_t b = 0;
        for (auto& a : attn) b += a->cache_bytes_per_token();
        return b;
    }
    size_t cache_bytes_fixed() const override {
        size_t b = 0;
        for (auto& a : attn) b += a->cache_bytes_fixed();
        return b;
    }
    // the logits of a decode step land in pinned host memory: a copy from the device into pageable
    // memory goes through a driver buffer, and a step's logits (8 rows of a 50k vocab: 1.6 MB) are
    // as many bytes as a small model's cache
    float* dec_logits_host = nullptr;
    size_t dec_logits_host_n = 0;
    const float* decode(const int* tokens, const int* seq, const int* pos, int n, const int* out_rows, int n_out, int* argmax) override {
        if (dec.part == nullptr) backend_fail(nullptr, "internal: decode() before decode_begin()");
        if (n < 1 || n > dec_rows || n_out > n) backend_fail(nullptr, "internal: decode() with more rows than the device model was sized for");
        int nk_max = 0;
        for (int i = 0; i < n; i++) {
            if (tokens[i] < 0 || tokens[i] >= s.V) backend_fail("the prompt was made with another tokenizer", "decode: token id outside the vocab");
            if (seq[i] < 0 || seq[i] >= dec_seqs || pos[i] < 0 || pos[i] >= dec_maxT)
                backend_fail(nullptr, "internal: decode() row outside the sequences or the context of decode_begin()");
            nk_max = std::max(nk_max, pos[i] + 1);
        }
        NvtxRange range("decode");
        // one copy (and sync) for the step's rows instead of four: at decode sizes each costs about
        // as much as a layer's kernels. Laid out by n and n_out, which key the graphs, so a graph
        // replays with the pointers of the step it was captured from.
        int* h = dec_host.data();
        memcpy(h, tokens, (size_t)n * 4);
        memcpy(h + n, seq, (size_t)n * 4);
        memcpy(h + 2 * n, pos, (size_t)n * 4);
        if (n_out) memcpy(h + 3 * n, out_rows, (size_t)n_out * 4);
        dec.seq = dec_rowbuf + n;
        dec.pos = dec_rowbuf + 2 * n;
        h2d(dec_rowbuf, h, (size_t)(3 * n + n_out) * 4);
        dec.n = n;
        dec.nk_max = nk_max;
        const std::tuple<int, int, int> key(n, n_out, (int)ceil_div(nk_max, dec.chunk));
        auto g = use_graphs ? graphs.find(key) : graphs.end();
        if (g != graphs.end()) {
            cudaCheck(cudaGraphLaunch(g->second, g_stream));
        } else {
            decode_rows(n, n_out);
            if (use_graphs) {  // captured after a run, not instead of one: that run loaded every kernel
                // it uses (modules load lazily, which a capture must not trigger); a capture runs nothing
                cudaGraph_t graph;
                cudaCheck(cudaStreamBeginCapture(g_stream, cudaStreamCaptureModeThreadLocal));
                decode_rows(n, n_out);
                cudaCheck(cudaStreamEndCapture(g_stream, &graph));
                cudaGraphExec_t exec;
                cudaCheck(cudaGraphInstantiate(&exec, graph, 0));
                cudaCheck(cudaGraphDestroy(graph));
                graphs.emplace(key, exec);
            }
        }
        if (n_out == 0) return nullptr;
        if (argmax) {
            launch(argmax_rows_kernel<T>, dim3(n_out), dim3(256), dec_argmax, (const T*)logits, s.V, (long)s.Vp);
            d2h(argmax, dec_argmax, (size_t)n_out * 4);
            return nullptr;
        }
        if ((size_t)n_out * s.Vp > dec_logits_host_n) {
            if (dec_logits_host) host_pinned_free(dec_logits_host);
            dec_logits_host_n = (size_t)n_out * s.Vp;
            dec_logits_host = (float*)host_pinned_alloc(dec_logits_host_n * 4);
        }
        logits_to_host(n_out, dec_logits_host);
        return dec_logits_host;
    }
    // the device work of a decode step (dec and the row buffers set): every layer, then the
    // classifier for the rows whose logits are wanted; no host copy or sync (it may be captured)
    void decode_rows(int n, int n_out) {
        const int C = s.C, F = s.F;
        const T* P = params;
        // scratch: the forward's buffers (sized for Bmax*Tmax rows >= n)
        T *x = resid[0], *mid = resid[1], *ln1 = acts[0].ln1, *a = acts[0].attn_out, *ln2 = acts[0].ln2, *h = acts[0].fch,
          *g = acts[0].fch_gelu, *mm = acts[0].mlp_out;
        float *m1 = acts[0].ln1_mean, *r1 = acts[0].ln1_rstd, *m2 = acts[0].ln2_mean, *r2 = acts[0].ln2_rstd;
        // each residual fused with the LayerNorm that reads it, as in forward() (the same bits as a
        // residual then a LayerNorm, one launch instead of two: at decode sizes a launch costs more
        // than its work)
        encoder_forward<T>(x, dec_rowbuf, P + s.wte, s.learned_pos ? P + s.wpe : nullptr, 1, n, C, dec.pos);  // tokens: the buffer's first n
        layernorm_forward<T>(ln1, m1, r1, x, P + s.layers[0].ln1_w, P + s.layers[0].ln1_b, n, C);
        for (int l = 0; l < s.L; l++) {
            const CudaLayerOffsets& o = s.layers[l];
            attn[l]->decode(P, ln1, a, dec);  // ln1 = LN1(x), made with the residual that made x
            if (s.parallel_residual) layernorm_forward<T>(ln2, m2, r2, x, P + o.ln2_w, P + o.ln2_b, n, C);
            else residual_layernorm_forward<T>(mid, ln2, m2, r2, x, a, nullptr, P + o.ln2_w, P + o.ln2_b, n, C);  // mid = x + attn
            matmul_forward<T>(h, ln2, P + o.fc_w, P + o.fc_b, n, C, F);
            gelu_forward<T>(g, h, (long)n * F, s.gelu_exact);
            matmul_forward<T>(mm, g, P + o.proj_w, P + o.proj_b, n, F, C);
            // the block's output, x + attn + mlp (parallel) or mid + mlp, into x (in place: each
            // element is read, then written, by one thread), with the next layer's LN1 of it; after
            // the last layer, LNf runs on the wanted rows only
            const T* ra = s.parallel_residual ? x : mid;
            const T* rb = s.parallel_residual ? a : mm;
            const T* rc = s.parallel_residual ? mm : nullptr;
            if (l + 1 < s.L)
                residual_layernorm_forward<T>(x, ln1, m1, r1, ra, rb, rc, P + s.layers[l + 1].ln1_w, P + s.layers[l + 1].ln1_b, n, C);
            else
                residual_forward<T>(x, ra, rb, rc, (long)n * C);
        }
        if (n_out == 0) return;
        // the classifier only for the rows whose logits are wanted (a prompt needs its last row's)
        launch(gather_rows_kernel<T>, dim3(ceil_div((long)n_out * C, 256)), dim3(256), ln2, (const T*)x, (const int*)(dec_rowbuf + 3 * n), n_out, C);
        layernorm_forward<T>(lnf, lnf_mean, lnf_rstd, ln2, P + s.lnf_w, P + s.lnf_b, n_out, C);
        matmul_forward<T>(logits, lnf, P + s.w_out, nullptr, n_out, C, s.Vp);
    }

    void grad_norm() override {
        NvtxRange range("grad norm");
        launch(grad_norm_partial_kernel, dim3(NORM_BLOCKS), dim3(256), norm_partial, (const float*)grads, n);
        launch(grad_norm_final_kernel, dim3(1), dim3(256), norm, (const double*)norm_partial, NORM_BLOCKS);
    }
    float read_grad_norm() override {
        float x;
        d2h(&x, norm, 4);
        return x;
    }
    void adamw(float lr, float beta1, float beta2, float eps, float weight_decay, float bc1, float bc2, float clip, float grad_scale, float theta,
               float scale, int reset) override {
        NvtxRange range("adamw");
        launch(adamw_kernel<T>, dim3(64, (unsigned)s.tensors.size()), dim3(256), master, DType<T>::id == 1 ? params : (T*)nullptr,
               (const float*)grads, m, v, (const long*)d_offsets, (const long*)d_sizes, (const int*)d_decay, (const float*)norm, clip,
               grad_scale, lr, beta1, beta2, eps, weight_decay, bc1, bc2, theta, scale, reset);
    }
};

CudaGPT* cuda_gpt_create(const CudaModelSpec& spec, int precision, int Bmax, int Tmax) {
    if (precision == CUDA_BF16) return new DevModel<bf16>(spec, Bmax, Tmax);
    return new DevModel<float>(spec, Bmax, Tmax);
}

// ---- single kernels on host buffers (tests, benchmarks) -------------------------------------
template <typename X>
struct DevBuf {  // a device copy of host data in the storage type X (float, bf16, int)
    X* p = nullptr;
    size_t n = 0;
    DevBuf(const float* host, size_t n_) : n(n_) {
        p = (X*)dev_alloc(n * sizeof(X));
        if (!host) return;
        std::vector<X> tmp(n);
        for (size_t i = 0; i < n; i++) tmp[i] = from_host(host[i]);
        h2d(p, tmp.data(), n * sizeof(X));
    }
    static X from_host(float f) {
        X x;
        if (sizeof(X) == 4) { memcpy(&x, &f, 4); return x; }
        float r = round_bf16(f);
        uint32_t u;
        memcpy(&u, &r, 4);
        uint16_t h = (uint16_t)(u >> 16);
        memcpy(&x, &h, 2);
        return x;
    }
    void to_host(float* host) const {
        dev_sync();
        std::vector<X> tmp(n);
        d2h(tmp.data(), p, n * sizeof(X));
        for (size_t i = 0; i < n; i++) {
            if (sizeof(X) == 4) { memcpy(&host[i], &tmp[i], 4); continue; }
            uint16_t h;
            memcpy(&h, &tmp[i], 2);
            uint32_t u = (uint32_t)h << 16;
            memcpy(&host[i], &u, 4);
        }
    }
    DevBuf(const DevBuf&) = delete;
    ~DevBuf() { dev_free(p); }
};
struct DevInts {
    int* p;
    DevInts(const int* host, size_t n) {
        p = (int*)dev_alloc(n * 4);
        h2d(p, host, n * 4);
    }
    ~DevInts() { dev_free(p); }
};
#define WITH_PRECISION(prec, ...)  \
    do {                            \
        backend_init();             \
        if ((prec) == CUDA_BF16) {  \
            typedef bf16 X;         \
            __VA_ARGS__;            \
        } else {                    \
            typedef float X;        \
            __VA_ARGS__;            \
        }                           \
    } while (0)

namespace cuda_op {
void encoder_forward(int prec, float* out, const int* inp, const float* wte, const float* wpe, int B, int T, int C, int Vp, int maxT) {
    WITH_PRECISION(prec, {
        DevInts di(inp, (size_t)B * T);
        DevBuf<X> dw(wte, (size_t)Vp * C), dp(wpe, wpe ? (size_t)maxT * C : 1), o(nullptr, (size_t)B * T * C);
        ::encoder_forward<X>(o.p, di.p, dw.p, wpe ? dp.p : nullptr, B, T, C);
        o.to_host(out);
    });
}
void encoder_backward(int prec, float* dwte, float* dwpe, const float* dout, const int* inp, int B, int T, int C, int Vp, int maxT) {
    WITH_PRECISION(prec, {
        DevInts di(inp, (size_t)B * T);
        DevBuf<X> dd(dout, (size_t)B * T * C);
        DevBuf<float> gw(dwte, (size_t)Vp * C), gp(dwpe, dwpe ? (size_t)maxT * C : 1);
        ::encoder_backward<X>(gw.p, dwpe ? gp.p : nullptr, dd.p, di.p, B, T, C);
        gw.to_host(dwte);
        if (dwpe) gp.to_host(dwpe);
    });
}
void layernorm_forward(int prec, float* out, float* mean, float* rstd, const float* inp, const float* w, const float* b, int N, int C) {
    WITH_PRECISION(prec, {
        DevBuf<X> di(inp, (size_t)N * C), dw(w, C), db(b, C), o(nullptr, (size_t)N * C);
        DevBuf<float> dm(nullptr, N), dr(nullptr, N);
        ::layernorm_forward<X>(o.p, dm.p, dr.p, di.p, dw.p, db.p, N, C);
        o.to_host(out);
        dm.to_host(mean);
        dr.to_host(rstd);
    });
}
void layernorm_backward(int prec, float* dinp, float* dw, float* db, const float* dout, const float* inp, const float* w, const float* mean,
                        const float* rstd, int N, int C) {
    WITH_PRECISION(prec, {
        DevBuf<X> dd(dout, (size_t)N * C), di(inp, (size_t)N * C), ww(w, C), gi(dinp, (size_t)N * C);
        DevBuf<float> dm(mean, N), dr(rstd, N), gw(dw, C), gb(db, C);
        ::layernorm_backward<X>(gi.p, gw.p, gb.p, dd.p, di.p, ww.p, dm.p, dr.p, N, C);
        gi.to_host(dinp);
        gw.to_host(dw);
        gb.to_host(db);
    });
}
void matmul_forward(int prec, float* out, const float* inp, const float* w, const float* bias, int M, int K, int N) {
    WITH_PRECISION(prec, {
        DevBuf<X> di(inp, (size_t)M * K), dw(w, (size_t)N * K), dbias(bias, bias ? N : 1), o(nullptr, (size_t)M * N);
        ::matmul_forward<X>(o.p, di.p, dw.p, bias ? dbias.p : nullptr, M, K, N);
        o.to_host(out);
    });
}
void matmul_backward(int prec, float* dinp, float* dw, float* dbias, const float* dout, const float* inp, const float* w, int M, int K, int N) {
    WITH_PRECISION(prec, {
        DevBuf<X> dd(dout, (size_t)M * N), di(inp, (size_t)M * K), ww(w, (size_t)N * K), gi(nullptr, (size_t)M * K);
        DevBuf<float> gw(dw, (size_t)N * K), gb(dbias, dbias ? N : 1);
        ::matmul_backward<X>(gi.p, gw.p, dbias ? gb.p : nullptr, dd.p, di.p, ww.p, M, K, N);
        gi.to_host(dinp);
        gw.to_host(dw);
        if (dbias) gb.to_host(dbias);
    });
}
void residual_layernorm_forward(int prec, float* res, float* ln, float* mean, float* rstd, const float* a, const float* b, const float* c,
                                const float* w, const float* bias, int N, int C) {
    WITH_PRECISION(prec, {
        size_t n = (size_t)N * C;
        DevBuf<X> da(a, n), db(b, n), dc(c, c ? n : 1), dw(w, C), dbias(bias, C), dres(nullptr, n), dln(nullptr, n);
        DevBuf<float> dm(nullptr, N), dr(nullptr, N);
        ::residual_layernorm_forward<X>(dres.p, dln.p, dm.p, dr.p, da.p, db.p, c ? dc.p : nullptr, dw.p, dbias.p, N, C);
        dres.to_host(res);
        dln.to_host(ln);
        dm.to_host(mean);
        dr.to_host(rstd);
    });
}
void gelu_forward(int prec, float* out, const float* inp, long N, bool exact) {
    WITH_PRECISION(prec, {
        DevBuf<X> di(inp, N), o(nullptr, N);
        ::gelu_forward<X>(o.p, di.p, N, exact);
        o.to_host(out);
    });
}
void gelu_backward(int prec, float* dinp, const float* inp, const float* dout, long N, bool exact) {
    WITH_PRECISION(prec, {
        DevBuf<X> di(inp, N), dd(dout, N), o(nullptr, N);
        ::gelu_backward<X>(o.p, di.p, dd.p, N, exact);
        o.to_host(dinp);
    });
}
void residual_forward(int prec, float* out, const float* a, const float* b, const float* c, long N) {
    WITH_PRECISION(prec, {
        DevBuf<X> da(a, N), db(b, N), dc(c, c ? N : 1), o(nullptr, N);
        ::residual_forward<X>(o.p, da.p, db.p, c ? dc.p : nullptr, N);
        o.to_host(out);
    });
}
void crossentropy_forward(int prec, float* losses, float* lse, const float* logits, const int* targets, int N, int V, int Vp) {
    WITH_PRECISION(prec, {
        DevBuf<X> dl(logits, (size_t)N * Vp);
        DevInts dt(targets, N);
        DevBuf<float> lo(nullptr, N), ls(nullptr, N);
        ::crossentropy_forward<X>(lo.p, ls.p, dl.p, dt.p, N, V, Vp);
        lo.to_host(losses);
        ls.to_host(lse);
    });
}
void crossentropy_backward(int prec, float* logits, const float* lse, const int* targets, float dloss, int N, int V, int Vp) {
    WITH_PRECISION(prec, {
        DevBuf<X> dl(logits, (size_t)N * Vp);
        DevInts dt(targets, N);
        DevBuf<float> ls(lse, N);
        ::crossentropy_backward<X>(dl.p, ls.p, dt.p, dloss, N, V, Vp);
        dl.to_host(logits);
    });
}
void rope(int prec, float* buf, long row, long head, int heads, int B, int T, int rot, const float* cos_t, const float* sin_t, int table_T,
          bool inverse) {
    WITH_PRECISION(prec, {
        DevBuf<X> db(buf, (size_t)B * T * row);
        DevBuf<float> dc(cos_t, (size_t)table_T * (rot / 2)), ds(sin_t, (size_t)table_T * (rot / 2));
        ::rope_apply<X>(db.p, row, head, heads, B, T, rot, dc.p, ds.p, inverse);
        db.to_host(buf);
    });
}
void attention_forward(int prec, float* y, float* lse, const float* qkv, int B, int T, int H, int G, int hd, float scale, const float* slopes) {
    WITH_PRECISION(prec, {
        DevBuf<X> dq(qkv, (size_t)B * T * (H + 2 * G) * hd), dy(nullptr, (size_t)B * T * H * hd);
        DevBuf<float> dl(nullptr, (size_t)B * H * T), dsl(slopes, slopes ? H : 1);
        AttView<const X*> q, k, v;
        gqa_views<const X*>(dq.p, H, G, hd, &q, &k, &v);
        ::attention_forward<X>(dy.p, dl.p, q, k, {nullptr, 0, 0}, v, B, T, {H, G, hd, 0, scale, slopes ? dsl.p : nullptr});
        dy.to_host(y);
        dl.to_host(lse);
    });
}
void attention_backward(int prec, float* dqkv, const float* qkv, const float* y, const float* dy, const float* lse, int B, int T, int H, int G,
                        int hd, float scale, const float* slopes) {
    WITH_PRECISION(prec, {
        size_t nq = (size_t)B * T * (H + 2 * G) * hd, ny = (size_t)B * T * H * hd;
        DevBuf<X> dq(qkv, nq), dyy(y, ny), ddy(dy, ny), out(nullptr, nq);
        DevBuf<float> dl(lse, (size_t)B * H * T), dD(nullptr, (size_t)B * H * T), dsl(slopes, slopes ? H : 1);
        AttView<const X*> q, k, v;
        AttView<X*> gq, gk, gv;
        gqa_views<const X*>(dq.p, H, G, hd, &q, &k, &v);
        gqa_views<X*>(out.p, H, G, hd, &gq, &gk, &gv);
        ::attention_backward<X>(gq, gk, nullptr, 0, gv, dD.p, nullptr, q, k, {nullptr, 0, 0}, v, dyy.p, ddy.p, dl.p, nullptr, B, T,
                                {H, G, hd, 0, scale, slopes ? dsl.p : nullptr});
        out.to_host(dqkv);
    });
}
void attention_split_forward(int prec, float* y, float* lse, const float* q, const float* ka, const float* kb, const float* v, int B, int T,
                             int H, int G, int da, int db, float scale, const float* slopes) {
    WITH_PRECISION(prec, {
        size_t N = (size_t)B * T;
        DevBuf<X> dq(q, N * H * (da + db)), dka(ka, N * G * da), dkb(kb, db ? N * db : 1), dv(v, N * G * da), dy(nullptr, N * H * da);
        DevBuf<float> dl(nullptr, (size_t)B * H * T), dsl(slopes, slopes ? H : 1);
        ::attention_forward<X>(dy.p, dl.p, {dq.p, (long)H * (da + db), da + db}, {dka.p, (long)G * da, da}, {dkb.p, db, 0},
                               {dv.p, (long)G * da, da}, B, T, {H, G, da, db, scale, slopes ? dsl.p : nullptr});
        dy.to_host(y);
        dl.to_host(lse);
    });
}
void attention_split_backward(int prec, float* dq, float* dka, float* dkb, float* dv, const float* q, const float* ka, const float* kb,
                              const float* v, const float* y, const float* dy, const float* lse, const float* dlse, int B, int T, int H,
                              int G, int da, int db, float scale, const float* slopes) {
    WITH_PRECISION(prec, {
        size_t N = (size_t)B * T, BHT = (size_t)B * H * T;
        DevBuf<X> hq(q, N * H * (da + db)), hka(ka, N * G * da), hkb(kb, db ? N * db : 1), hv(v, N * G * da), hy(y, N * H * da),
            hdy(dy, N * H * da);
        DevBuf<X> gq(nullptr, N * H * (da + db)), gka(nullptr, N * G * da), gkb(nullptr, db ? N * db : 1), gv(nullptr, N * G * da);
        DevBuf<float> dl(lse, BHT), ddl(dlse, dlse ? BHT : 1), dD(nullptr, BHT), part(nullptr, db ? N * G * db : 1), dsl(slopes, slopes ? H : 1);
        ::attention_backward<X>({gq.p, (long)H * (da + db), da + db}, {gka.p, (long)G * da, da}, gkb.p, db, {gv.p, (long)G * da, da}, dD.p,
                                part.p, {hq.p, (long)H * (da + db), da + db}, {hka.p, (long)G * da, da}, {hkb.p, db, 0},
                                {hv.p, (long)G * da, da}, hy.p, hdy.p, dl.p, dlse ? ddl.p : nullptr, B, T,
                                {H, G, da, db, scale, slopes ? dsl.p : nullptr});
        gq.to_host(dq);
        gka.to_host(dka);
        if (db) gkb.to_host(dkb);
        gv.to_host(dv);
    });
}
void rmsnorm_forward(int prec, float* out, float* rrms, const float* inp, long in_row, const float* w, int N, int C) {
    WITH_PRECISION(prec, {
        DevBuf<X> di(inp, (size_t)N * in_row), dw(w, C), o(nullptr, (size_t)N * C);
        DevBuf<float> dr(nullptr, N);
        ::rmsnorm_forward<X>(o.p, dr.p, di.p, in_row, dw.p, N, C);
        o.to_host(out);
        dr.to_host(rrms);
    });
}
void rmsnorm_backward(int prec, float* dinp, float* dw, const float* dout, const float* inp, long in_row, const float* w, const float* rrms,
                      int N, int C) {
    WITH_PRECISION(prec, {
        DevBuf<X> dd(dout, (size_t)N * C), di(inp, (size_t)N * in_row), ww(w, C), gi(dinp, (size_t)N * in_row);
        DevBuf<float> dr(rrms, N), gw(dw, C);
        ::rmsnorm_backward<X>(gi.p, gw.p, dd.p, di.p, in_row, ww.p, dr.p, N, C);
        gi.to_host(dinp);
        gw.to_host(dw);
    });
}
void argmax_rows(int prec, int* out, const float* x, int rows, int V, int row) {
    WITH_PRECISION(prec, {
        DevBuf<X> dx(x, (size_t)rows * row);
        DevBuf<int> o(nullptr, rows);
        launch(argmax_rows_kernel<X>, dim3(rows), dim3(256), o.p, (const X*)dx.p, V, (long)row);
        d2h(out, o.p, (size_t)rows * 4);
    });
}
}  // namespace cuda_op
