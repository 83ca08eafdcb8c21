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

struct CudaLayerOffsets {
    long ln1_w, ln1_b, w_qkv, b_qkv, w_o, b_o, ln2_w, ln2_b, fc_w, fc_b, proj_w, proj_b;
};
struct CudaTensorSpan {  // one parameter tensor: AdamW decays it when decay is 1
    long offset, n;
    int decay;
};
struct CudaModelSpec {
    int V, Vp, C, F, L, H, G, hd;
    int parallel_residual, gelu_exact, learned_pos, max_seq_len;
    float scale;                          // 1/sqrt(hd)
    int rot;                              // RoPE rotated dims per head (0: none)
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
    virtual void zero_grad() = 0;
    virtual void backward(float grad_scale) = 0;  // grads += grad_scale * d(mean loss)/d(params)
    virtual void grad_norm() = 0;               // global L2 norm of grads, kept on the device
    virtual float read_grad_norm() = 0;         // waits for it
    // AdamW; the clip factor min(1, clip/norm) is applied on the device from grad_norm()
    virtual void adamw(float lr, float beta1, float beta2, float eps, float weight_decay, float bc1, float bc2, float clip,
                       float grad_scale) = 0;
    virtual std::string memory_report() const = 0;  // one line per buffer
    // for the data-parallel gradient all-reduce (llmc/distributed.h): the fp32 gradients on the
    // device and the stream the model's work is queued on (a cudaStream_t)
    virtual float* device_grads() = 0;
    virtual void* device_stream() = 0;
};

// devices found (0 with *why) and device 0's name
int kvgpt_cuda_probe(std::string* why, std::string* name);
// a device model for at most Bmax x Tmax tokens; fails with a hint for unsupported shapes
CudaGPT* cuda_gpt_create(const CudaModelSpec& spec, int precision, int Bmax, int Tmax);
const char* cuda_backend_kind();  // "CUDA" or "CPU emulator"
bool cuda_head_dim_supported(int hd);  // the head dims the attention kernels exist for

// the single kernels on host buffers, for tests and benchmarks: inputs are converted to the
// precision's storage type, outputs back to float. Accumulating outputs (marked +=) read their
// host values first.
namespace cuda_op {
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
