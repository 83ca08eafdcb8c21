// cuda_backend.cu: kvgpt's CUDA training backend for the GQA family (MHA, MQA, GQA) with RoPE,
// ALiBi, learned or no positions: the model's forward and backward on the device, AdamW, the
// global grad norm, and the single kernels wrapped for tests (API in cuda_backend.h).
// Built two ways:
//   nvcc (sm_80, sm_90)        -> build/cuda_backend.o, linked into train_gpt and test/test_cuda;
//                                 matmuls by cuBLASLt (bias fused as the epilogue)
//   g++ -DKVGPT_CUDA_EMU       -> build/cuda_backend_emu.o, the same kernels on the CPU emulator
//                                 (cuda_emu.h), matmuls by a plain CPU GEMM; CI tests it this way
// Precision (template T): bf16 or fp32 copies of the parameters and activations; fp32 master
// weights, parameter gradients (cuBLASLt accumulates into fp32 with beta = 1), Adam moments,
// LayerNorm statistics, loss and log-sum-exp. Each layer's forward and backward mirror GPT in
// llmc/model.h line by line, which is the reference they are tested against.
#include <algorithm>
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
template <typename T, int MODE>
static void column_sums(float* dcol, float* dcol2, const T* dout, const T* inp, const float* mean, const float* rstd, int N, int C) {
    int chunks = colsum_chunks(N);
    colsum_reserve(N, C);
    float *part = g_colsum_scratch, *part2 = g_colsum_scratch + (size_t)chunks * C;
    launch(column_sum_partial_kernel<T, MODE>, dim3(ceil_div(C, 32), chunks), dim3(256), part, part2, dout, inp, mean, rstd, N, C);
    launch(column_sum_final_kernel, dim3(ceil_div(C, 256)), dim3(256), dcol, MODE == 1 ? dcol2 : (float*)nullptr, (const float*)part,
           (const float*)part2, chunks, C);
}
// out (M,N) = inp (M,K) W(N,K)^T + bias. Column-major, out^T (N,M) = W (as K x N, transposed) inp^T
template <typename T>
static void matmul_forward(T* out, const T* inp, const T* w, const T* bias, int M, int K, int N) {
    gemm<T>(true, false, N, M, K, w, K, inp, K, out, N, DType<T>::id, 0.0f, bias);
}
// dinp (M,K) = dout W (overwritten); dw (N,K) += dout^T inp in fp32; dbias (N) += column sums
template <typename T>
static void matmul_backward(T* dinp, float* dw, float* dbias, const T* dout, const T* inp, const T* w, int M, int K, int N) {
    if (dinp) gemm<T>(false, false, K, M, N, w, K, dout, N, dinp, K, DType<T>::id, 0.0f, nullptr);
    if (dw) gemm<T>(false, true, K, N, M, inp, K, dout, N, dw, K, 0, 1.0f, nullptr);
    if (dbias) column_sums<T, 0>(dbias, nullptr, dout, nullptr, nullptr, nullptr, M, N);
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
    column_sums<T, 1>(db, dw, dout, inp, mean, rstd, N, C);
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
static void encoder_forward(T* out, const int* inp, const T* wte, const T* wpe, int B, int Tn, int C) {
    launch(encoder_forward_kernel<T>, dim3(ceil_div((long)B * Tn * C, 256)), dim3(256), out, inp, wte, wpe, B * Tn, Tn, C);
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
static void rope_apply(T* buf, long row, long head, int heads, int B, int Tn, int rot, const float* cos_t, const float* sin_t, bool inverse) {
    if (rot == 0) return;
    launch(rope_kernel<T>, dim3(ceil_div((long)B * Tn * heads * (rot / 2), 256)), dim3(256), buf, row, head, heads, B * Tn, Tn, rot, cos_t,
           sin_t, (int)inverse);
}

bool cuda_head_dim_supported(int hd) { return att_head_dim_ok(hd); }
static void check_head_dim(int hd) {
    if (!att_head_dim_ok(hd)) {
        char msg[160];
        snprintf(msg, sizeof msg, "the CUDA attention kernel supports head dims 32, 64 and 128, not %d", hd);
        backend_fail("change --heads so that d_model / heads is 32, 64 or 128, or use -d cpu", msg);
    }
}
// y (B,Tn,H*hd), lse (B,H,Tn) from the rotated fused qkv
template <typename T>
static void attention_forward(T* y, float* lse, const T* qkv, int B, int Tn, int H, int G, int hd, float scale, const float* slopes) {
    check_head_dim(hd);
    dim3 grid(ceil_div(Tn, att_rows_fwd(hd)), H, B), block(ATT_WARPS * 32);
    with_head_dim(hd, [&](auto HD) { launch(attention_forward_kernel<T, HD.value>, grid, block, y, lse, qkv, Tn, H, G, scale, slopes); });
}
// dqkv (B,Tn,(H+2G)hd) is overwritten; D (B,H,Tn) is scratch
template <typename T>
static void attention_backward(T* dqkv, float* D, const T* qkv, const T* y, const T* dy, const float* lse, int B, int Tn, int H, int G, int hd,
                               float scale, const float* slopes) {
    check_head_dim(hd);
    launch(attention_backward_dot_kernel<T>, dim3(ceil_div((long)B * H * Tn, 256)), dim3(256), D, dy, y, B, Tn, H, hd);
    dim3 gq(ceil_div(Tn, att_rows_bwd(hd)), H, B), gk(ceil_div(Tn, att_rows_bwd(hd)), G, B), block(ATT_WARPS * 32);
    with_head_dim(hd, [&](auto HD) {
        launch(attention_backward_dq_kernel<T, HD.value>, gq, block, dqkv, qkv, dy, lse, D, Tn, H, G, scale, slopes);
        launch(attention_backward_dkv_kernel<T, HD.value>, gk, block, dqkv, qkv, dy, lse, D, Tn, H, G, scale, slopes);
    });
}

// ---- device buffers -------------------------------------------------------------------------
// one allocation carved into named, 256-byte aligned pieces (names feed the memory report)
struct Arena {
    struct Piece { std::string name; size_t bytes; };
    std::vector<Piece> pieces;
    size_t total = 0;
    size_t reserve(const std::string& name, size_t bytes) {
        size_t off = total;
        pieces.push_back({name, bytes});
        total += (bytes + 255) / 256 * 256;
        return off;
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
        T *ln1, *qkv, *atty, *attn_out, *mid, *ln2, *fch, *fch_gelu, *mlp_out;
        float *ln1_mean, *ln1_rstd, *ln2_mean, *ln2_rstd, *lse;
    };
    std::vector<LayerActs> acts;
    std::vector<T*> resid;
    T *lnf, *logits, *d_a, *d_b, *d_ln1, *d_ln2, *d_fch, *d_fch_gelu, *d_y, *d_qkv;
    float *lnf_mean, *lnf_rstd, *losses, *ce_lse, *att_D;
    Arena params_arena, act_arena;
    char *params_mem = nullptr, *act_mem = nullptr;

    DevModel(const CudaModelSpec& spec, int Bmax_, int Tmax_) : s(spec), Bmax(Bmax_), Tmax(Tmax_), n(spec.n_params) {
        backend_init();
        check_head_dim(s.hd);
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
        size_t BT = (size_t)Bmax * Tmax, C = s.C, F = s.F, Q = (size_t)(s.H + 2 * s.G) * s.hd, HD = (size_t)s.H * s.hd, L = s.L;
        std::vector<size_t> o_res(L + 1);
        for (size_t l = 0; l <= L; l++) o_res[l] = A.reserve("residual stream " + std::to_string(l), BT * C * sizeof(T));
        struct LO { size_t ln1, qkv, atty, attn_out, mid, ln2, fch, fch_gelu, mlp_out, st, lse; };
        std::vector<LO> lo(L);
        for (size_t l = 0; l < L; l++) {
            std::string p = "layer " + std::to_string(l) + " ";
            lo[l].ln1 = A.reserve(p + "ln1", BT * C * sizeof(T));
            lo[l].qkv = A.reserve(p + "qkv", BT * Q * sizeof(T));
            lo[l].atty = A.reserve(p + "attention y", BT * HD * sizeof(T));
            lo[l].attn_out = A.reserve(p + "attention out", BT * C * sizeof(T));
            lo[l].mid = A.reserve(p + "mid", s.parallel_residual ? 0 : BT * C * sizeof(T));
            lo[l].ln2 = A.reserve(p + "ln2", BT * C * sizeof(T));
            lo[l].fch = A.reserve(p + "fc", BT * F * sizeof(T));
            lo[l].fch_gelu = A.reserve(p + "gelu", BT * F * sizeof(T));
            lo[l].mlp_out = A.reserve(p + "mlp out", BT * C * sizeof(T));
            lo[l].st = A.reserve(p + "LN stats (fp32)", 4 * BT * 4);
            lo[l].lse = A.reserve(p + "attention lse (fp32)", (size_t)Bmax * s.H * Tmax * 4);
        }
        size_t o_lnf = A.reserve("lnf", BT * C * sizeof(T)), o_lnfst = A.reserve("lnf stats (fp32)", 2 * BT * 4);
        size_t o_logits = A.reserve("logits / dlogits", BT * s.Vp * sizeof(T));
        size_t o_losses = A.reserve("losses, lse (fp32)", 2 * BT * 4);
        size_t o_da = A.reserve("d residual a", BT * C * sizeof(T)), o_db = A.reserve("d residual b", BT * C * sizeof(T));
        size_t o_dln1 = A.reserve("d ln1", BT * C * sizeof(T)), o_dln2 = A.reserve("d ln2", BT * C * sizeof(T));
        size_t o_dfch = A.reserve("d fc", BT * F * sizeof(T)), o_dfg = A.reserve("d gelu", BT * F * sizeof(T));
        size_t o_dy = A.reserve("d attention y", BT * HD * sizeof(T)), o_dqkv = A.reserve("d qkv", BT * Q * sizeof(T));
        size_t o_D = A.reserve("attention D (fp32)", (size_t)Bmax * s.H * Tmax * 4);
        act_mem = (char*)dev_alloc(A.total);
        colsum_reserve(Bmax * Tmax, (int)std::max(std::max(C, F), Q));
        char* a = act_mem;
        resid.resize(L + 1);
        for (size_t l = 0; l <= L; l++) resid[l] = (T*)(a + o_res[l]);
        acts.resize(L);
        for (size_t l = 0; l < L; l++) {
            LayerActs& y = acts[l];
            y.ln1 = (T*)(a + lo[l].ln1); y.qkv = (T*)(a + lo[l].qkv); y.atty = (T*)(a + lo[l].atty); y.attn_out = (T*)(a + lo[l].attn_out);
            y.mid = (T*)(a + lo[l].mid); y.ln2 = (T*)(a + lo[l].ln2); y.fch = (T*)(a + lo[l].fch); y.fch_gelu = (T*)(a + lo[l].fch_gelu);
            y.mlp_out = (T*)(a + lo[l].mlp_out);
            float* st = (float*)(a + lo[l].st);
            y.ln1_mean = st; y.ln1_rstd = st + BT; y.ln2_mean = st + 2 * BT; y.ln2_rstd = st + 3 * BT;
            y.lse = (float*)(a + lo[l].lse);
        }
        lnf = (T*)(a + o_lnf); lnf_mean = (float*)(a + o_lnfst); lnf_rstd = lnf_mean + BT;
        logits = (T*)(a + o_logits); losses = (float*)(a + o_losses); ce_lse = losses + BT;
        d_a = (T*)(a + o_da); d_b = (T*)(a + o_db); d_ln1 = (T*)(a + o_dln1); d_ln2 = (T*)(a + o_dln2);
        d_fch = (T*)(a + o_dfch); d_fch_gelu = (T*)(a + o_dfg); d_y = (T*)(a + o_dy); d_qkv = (T*)(a + o_dqkv);
        att_D = (float*)(a + o_D);
        dev_sync();
    }
    ~DevModel() override {
        dev_sync();
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
        const int C = s.C, F = s.F, H = s.H, G = s.G, hd = s.hd, Q = (H + 2 * G) * hd, BT = B * Tn;
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
            // attention (attention/gqa.h): fused qkv projection, RoPE on q and k, the core, output projection
            matmul_forward<T>(y.qkv, y.ln1, P + o.w_qkv, P + o.b_qkv, BT, C, Q);
            rope_apply<T>(y.qkv, Q, hd, H + G, B, Tn, s.rot, rope_cos, rope_sin, false);
            attention_forward<T>(y.atty, y.lse, y.qkv, B, Tn, H, G, hd, s.scale, slopes);
            matmul_forward<T>(y.attn_out, y.atty, P + o.w_o, P + o.b_o, BT, H * hd, C);
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
    void get_logits(float* host) override {
        long N = (long)B * Tn * s.Vp;
        if (DType<T>::id == 0) { d2h(host, logits, N * 4); return; }
        float* tmp = (float*)dev_alloc(N * 4);
        launch(to_float_kernel<T>, dim3(ceil_div(N, 256)), dim3(256), tmp, (const T*)logits, N);
        d2h(host, tmp, N * 4);
        dev_free(tmp);
    }
    void zero_grad() override {
        dev_zero(grads, n * 4);
        next_slot = 0;
        last_slot = -1;
    }

    void backward(float grad_scale) override {
        if (!have_targets || n_targets == 0) backend_fail(nullptr, "backward() without targets: call forward() with targets first");
        const int C = s.C, F = s.F, H = s.H, G = s.G, hd = s.hd, Q = (H + 2 * G) * hd, BT = B * Tn;
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
            // attention backward (attention/gqa.h)
            matmul_backward<T>(d_y, Gr + o.w_o, Gr + o.b_o, attn_dout, y.atty, P + o.w_o, BT, H * hd, C);
            attention_backward<T>(d_qkv, att_D, y.qkv, y.atty, d_y, y.lse, B, Tn, H, G, hd, s.scale, slopes);
            rope_apply<T>(d_qkv, Q, hd, H + G, B, Tn, s.rot, rope_cos, rope_sin, true);
            matmul_backward<T>(d_ln1, Gr + o.w_qkv, Gr + o.b_qkv, d_qkv, y.ln1, P + o.w_qkv, BT, C, Q);
            layernorm_backward<T>(dnext, Gr + o.ln1_w, Gr + o.ln1_b, d_ln1, x, P + o.ln1_w, y.ln1_mean, y.ln1_rstd, BT, C);
            std::swap(dres, dnext);
        }
        encoder_backward<T>(Gr + s.wte, s.learned_pos ? Gr + s.wpe : nullptr, dres, inputs, B, Tn, C);
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
    void adamw(float lr, float beta1, float beta2, float eps, float weight_decay, float bc1, float bc2, float clip, float grad_scale) override {
        NvtxRange range("adamw");
        launch(adamw_kernel<T>, dim3(64, (unsigned)s.tensors.size()), dim3(256), master, DType<T>::id == 1 ? params : (T*)nullptr,
               (const float*)grads, m, v, (const long*)d_offsets, (const long*)d_sizes, (const int*)d_decay, (const float*)norm, clip,
               grad_scale, lr, beta1, beta2, eps, weight_decay, bc1, bc2);
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
        ::attention_forward<X>(dy.p, dl.p, dq.p, B, T, H, G, hd, scale, slopes ? dsl.p : nullptr);
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
        ::attention_backward<X>(out.p, dD.p, dq.p, dyy.p, ddy.p, dl.p, B, T, H, G, hd, scale, slopes ? dsl.p : nullptr);
        out.to_host(dqkv);
    });
}
}  // namespace cuda_op
