// cuda_backend.h: what the CUDA backend (llmc/cuda_backend.cu, built by nvcc, or by g++ against
// the CPU emulator for the tests) offers the host code. Only plain C++ crosses this boundary, so
// the trainer itself never needs nvcc. The host describes the model (shapes, where each tensor
// sits in the flat parameter buffer, RoPE tables, ALiBi slopes) in a CudaModelSpec built from the
// CPU GPT (llmc/cuda_model.h), so both backends share one parameter layout and one checkpoint.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

// which attention a layer runs on the device (the host's ATTN_* of llmc/config.h, grouped)
enum CudaAttnKind { CUDA_ATTN_GQA = 0, CUDA_ATTN_MLA = 1, CUDA_ATTN_MKA = 2 };
// where one layer's attention parameters sit in the flat buffer (-1: the variant has none)
struct CudaAttnOffsets {
    long w_qkv = -1, b_qkv = -1, w_o = -1, b_o = -1;                                   // GQA family, MKA
    long w_dkv = -1, kv_norm = -1, w_ukv = -1, w_q = -1, w_dq = -1, q_norm = -1, w_uq = -1;  // MLA
    long sp_wc = -1, sp_we = -1, sp_ln_w = -1, sp_ln_b = -1;                            // KVSplice
    long mem = -1, w_r1 = -1, b_r1 = -1, w_r2 = -1, b_r2 = -1;                          // MKA
};
struct CudaLayerOffsets {
    long ln1_w, ln1_b, ln2_w, ln2_b, fc_w, fc_b, proj_w, proj_b;
    CudaAttnOffsets attn;
};
struct CudaTensorSpan {  // one parameter tensor: AdamW decays it when decay is 1
    long offset, n;
    int decay;
};
struct CudaModelSpec {
    int V, Vp, C, F, L, H, G, hd;
    int parallel_residual, gelu_exact, learned_pos, max_seq_len;
    int attn;                             // CudaAttnKind
    int dc, dR, qr, splice_r, splice_ln;  // MLA: latent, rope key, q rank (0: none); KVSplice rank (0: none), its LayerNorm
    int mka_fast, mka_slots, mka_router;  // MKA: fmka's one softmax, memory slots, router hidden width
    float scale;                          // the attention core's score scale
    int rot;                              // RoPE rotated dims per head (MLA: of the rope key; 0: none)
    int rope_T;                           // rows of the tables
    std::vector<float> rope_cos, rope_sin;  // (rope_T, rot/2), the CPU's tables
    std::vector<float> slopes;            // ALiBi (H), empty otherwise
    long n_params;                        // floats in the flat buffer (ParamSet::total)
    long wte, wpe, lnf_w, lnf_b, w_out;   // w_out == wte when tied
    std::vector<CudaLayerOffsets> layers;
    std::vector<CudaTensorSpan> tensors;
};
enum CudaPrecision { CUDA_FP32 = 0, CUDA_BF16 = 1 };
static const char* const CUDA_PRECISION_NAMES[2] = {"fp32", "bf16"};

// the model on the device: fp32 master weights, grads, Adam moments; a T (bf16 or fp32) copy of
// the parameters and the activations. Calls are asynchronous on one stream unless they return
// a value or fill a host buffer.
struct CudaGPT {
    virtual ~CudaGPT() {}
    virtual void set_params(const float* host) = 0;  // master + the T copy
    virtual void get_params(float* host) = 0;        // the fp32 master weights
    virtual void set_moments(const float* m, const float* v) = 0;  // null: zeros
    virtual void get_moments(float* m, float* v) = 0;
    virtual void get_grads(float* host) = 0;
    // inputs, targets (B,T) host token ids (already checked against the vocab); targets may be null
    virtual void forward(const int* inputs, const int* targets, int B, int T) = 0;
    virtual float mean_loss() = 0;              // of the last forward (waits for it)
    // the mean losses of the first n forwards with targets since zero_grad(), in order (waits)
    virtual void read_losses(float* host, int n) = 0;
    virtual void get_logits(float* host) = 0;   // (B*T, Vp) of the last forward
    virtual void get_token_losses(float* host) = 0;  // (B*T) of the last forward with targets (0 where target < 0)
    virtual void zero_grad() = 0;
    virtual void backward(float grad_scale) = 0;  // grads += grad_scale * d(mean loss)/d(params)
    virtual void grad_norm() = 0;               // global L2 norm of grads, kept on the device
    virtual float read_grad_norm() = 0;         // waits for it
    // AdamW; the clip factor min(1, clip/norm) is applied on the device from grad_norm()
    // theta, scale, reset: SPAM's controls for this step (llmc/model.h: OptStep; 0, 1, 0 = AdamW)
    virtual void adamw(float lr, float beta1, float beta2, float eps, float weight_decay, float bc1, float bc2, float clip,
                       float grad_scale, float theta = 0.0f, float scale = 1.0f, int reset = 0) = 0;
    virtual std::string memory_report() const = 0;  // one line per buffer
    virtual size_t device_bytes() const = 0;         // every buffer allocated for training, in bytes
    // for the data-parallel gradient all-reduce (llmc/distributed.h): the fp32 gradients on the
    // device and the stream the model's work is queued on (a cudaStream_t)
    virtual float* device_grads() = 0;
    virtual void* device_stream() = 0;
    // inference with a device KV cache per layer (slot j of a sequence holds its position j; no
    // presses on the device). decode_begin allocates the caches for n_seq sequences of max_T
    // tokens; keys are scored in splits of `chunk` (split-K). decode runs n <= Bmax*Tmax rows:
    // tokens[i] of sequence seq[i] at position pos[i] (the rows of one sequence consecutive and in
    // order; every row appends, then attends to its sequence up to itself) and returns the fp32
    // logits of rows out_rows[0..n_out) (n_out, Vp) in pinned host memory it owns, valid until the
    // next decode (null when n_out is 0). Given argmax (greedy decoding), the logits stay on the
    // device: argmax[k] gets row out_rows[k]'s most likely token (llmc/sample.h's argmax_token,
    // lowest id on ties) and it returns null.
    virtual void decode_begin(int n_seq, int max_T, int chunk) = 0;
    virtual const float* decode(const int* tokens, const int* seq, const int* pos, int n, const int* out_rows, int n_out,
                                int* argmax = nullptr) = 0;
    // replay each decode step from a CUDA graph (captured on first use per rows x key splits)
    // instead of launching its kernels one by one; off by default (bench_decode -d cuda times both)
    virtual void decode_graphs(bool on) = 0;
    virtual size_t cache_bytes_per_token() const = 0;  // every layer, one sequence, as allocated
    virtual size_t cache_bytes_fixed() const = 0;      // per sequence whatever its length (MKA's running sums)
};

// devices found (0 with *why) and device 0's name
int kvgpt_cuda_probe(std::string* why, std::string* name);
// a device model for at most Bmax x Tmax tokens; fails with a hint for unsupported shapes
CudaGPT* cuda_gpt_create(const CudaModelSpec& spec, int precision, int Bmax, int Tmax);
const char* cuda_backend_kind();  // "CUDA" or "CPU emulator"
bool cuda_attention_dims_supported(int da, int db);  // the per-head and shared key widths the attention kernels exist for
// the device memory's read bandwidth (a sum over `bytes`) and STREAM-style copy bandwidth (read +
// write), in GB/s, measured now (dev/bench_decode -d cuda: the bound a decode step is held to)
void cuda_bandwidth_gbs(size_t bytes, double* read_gbs, double* copy_gbs);
// kernel launches and GEMM calls made so far; and the time of one launch of an empty kernel,
// back to back on the stream (measured now): a step of N calls takes at least N of those
long cuda_device_calls();
double cuda_launch_us();

// the single kernels on host buffers, for tests and benchmarks: inputs are converted to the
// precision's storage type, outputs back to float. Accumulating outputs (marked +=) read their
// host values first.
namespace cuda_op {
void argmax_rows(int prec, int* out, const float* x, int rows, int V, int row);  // each row's argmax_token (llmc/sample.h)
void encoder_forward(int prec, float* out, const int* inp, const float* wte, const float* wpe, int B, int T, int C, int Vp, int maxT);
void encoder_backward(int prec, float* dwte /*+=*/, float* dwpe /*+=*/, const float* dout, const int* inp, int B, int T, int C, int Vp,
                      int maxT);
void layernorm_forward(int prec, float* out, float* mean, float* rstd, const float* inp, const float* w, const float* b, int N, int C);
void layernorm_backward(int prec, float* dinp /*+=*/, float* dw /*+=*/, float* db /*+=*/, const float* dout, const float* inp,
                        const float* w, const float* mean, const float* rstd, int N, int C);
void matmul_forward(int prec, float* out, const float* inp, const float* w, const float* bias, int M, int K, int N);
void matmul_backward(int prec, float* dinp, float* dw /*+=*/, float* dbias /*+=*/, const float* dout, const float* inp, const float* w,
                     int M, int K, int N);
// res = a + b (+ c), ln = LayerNorm(res) in one pass
void residual_layernorm_forward(int prec, float* res, float* ln, float* mean, float* rstd, const float* a, const float* b, const float* c,
                                const float* w, const float* bias, int N, int C);
void gelu_forward(int prec, float* out, const float* inp, long N, bool exact);
void gelu_backward(int prec, float* dinp, const float* inp, const float* dout, long N, bool exact);
void residual_forward(int prec, float* out, const float* a, const float* b, const float* c, long N);
void crossentropy_forward(int prec, float* losses, float* lse, const float* logits, const int* targets, int N, int V, int Vp);
void crossentropy_backward(int prec, float* logits /*in: logits, out: dlogits*/, const float* lse, const int* targets, float dloss, int N,
                           int V, int Vp);
void rope(int prec, float* buf, long row, long head, int heads, int B, int T, int rot, const float* cos_t, const float* sin_t,
          int table_T, bool inverse);
// qkv (B,T,(H+2G)hd) already rotated; y (B,T,H*hd); lse (B,H,T); slopes (H) or null
void attention_forward(int prec, float* y, float* lse, const float* qkv, int B, int T, int H, int G, int hd, float scale,
                       const float* slopes);
void attention_backward(int prec, float* dqkv, const float* qkv, const float* y, const float* dy, const float* lse, int B, int T, int H,
                        int G, int hd, float scale, const float* slopes);
// the split-key form (MLA): q (B,T,H,da+db), ka (B,T,G,da), kb (B,T,db) shared by every head (null
// when db is 0), v (B,T,G,da); y (B,T,H,da); dlse (B,H,T) a gradient at lse (fmka) or null
void attention_split_forward(int prec, float* y, float* lse, const float* q, const float* ka, const float* kb, const float* v, int B, int T,
                             int H, int G, int da, int db, float scale, const float* slopes);
void attention_split_backward(int prec, float* dq, float* dka, float* dkb, float* dv, const float* q, const float* ka, const float* kb,
                              const float* v, const float* y, const float* dy, const float* lse, const float* dlse, int B, int T, int H,
                              int G, int da, int db, float scale, const float* slopes);
// RMSNorm over the first C of each row of inp (rows in_row apart); out (N,C); rrms (N)
void rmsnorm_forward(int prec, float* out, float* rrms, const float* inp, long in_row, const float* w, int N, int C);
void rmsnorm_backward(int prec, float* dinp /*overwritten, rows in_row apart*/, float* dw /*+=*/, const float* dout, const float* inp,
                      long in_row, const float* w, const float* rrms, int N, int C);
}  // namespace cuda_op

// float -> bf16 -> float, round to nearest even (what the device's conversion does)
static inline float round_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return f;
    u += 0x7fffu + ((u >> 16) & 1u);
    u &= 0xffff0000u;
    memcpy(&f, &u, 4);
    return f;
}
