// cuda_kernels.cuh: kvgpt's CUDA kernels, each the twin of a CPU op (llmc/ops.h, attention/).
// T is the storage type of parameters copies and activations (bf16, or float for the fp32
// reference mode); arithmetic, LayerNorm statistics, the loss, the log-sum-exp, the master
// weights, the Adam moments and every parameter gradient are fp32. Gradient paths use no
// atomics: each output element has one owner and a fixed summation order, so runs are
// bitwise reproducible (and resume is bitwise identical).
// Shapes: B batch, T time (`Tn` in code, T being the type), C channels, V vocab, Vp padded vocab.
// dev/cuda/ benchmarks these against numbered alternatives; only the winners live here.
#pragma once
#include <cmath>
#include <type_traits>
#include "cuda_common.h"

// ---------------------------------------------------------------------------------------------
// token (+ learned position) embedding. out (B,Tn,C); inp (B,Tn); wte (Vp,C); wpe (maxT,C) or null
template <typename T>
__global__ void encoder_forward_kernel(T* out, const int* inp, const T* wte, const T* wpe, int BT, int Tn, int C) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long)BT * C) return;
    int bt = (int)(i / C), c = (int)(i % C);
    float x = to_f32(wte[(long)inp[bt] * C + c]);
    if (wpe) x += to_f32(wpe[(long)(bt % Tn) * C + c]);
    out[i] = from_f32<T>(x);
}
// dwte += scatter(dout) by token. Deterministic without atomics: the block row `bucket` owns the
// tokens with id % gridDim.y == bucket, and each thread (one channel) walks bt in order, so
// every dwte element is summed in the same order as the CPU's encoder_backward.
template <typename T>
__global__ void encoder_backward_wte_kernel(float* dwte, const T* dout, const int* inp, int BT, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    int bucket = blockIdx.y, nb = gridDim.y;
    if (c >= C) return;
    for (int bt = 0; bt < BT; bt++) {
        int tok = inp[bt];
        if (tok % nb == bucket) dwte[(long)tok * C + c] += to_f32(dout[(long)bt * C + c]);
    }
}
// dwpe (maxT,C) += sum over the batch; one thread per (t, c)
template <typename T>
__global__ void encoder_backward_wpe_kernel(float* dwpe, const T* dout, int B, int Tn, int C) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long)Tn * C) return;
    int t = (int)(i / C), c = (int)(i % C);
    float s = dwpe[i];
    for (int b = 0; b < B; b++) s += to_f32(dout[((long)b * Tn + t) * C + c]);
    dwpe[i] = s;
}

// ---------------------------------------------------------------------------------------------
// LayerNorm of one row by one warp, given the row's sum (this lane's part; each caller gets it
// from its own first pass): variance, the normalised row into o, mean and rstd saved (fp32)
template <typename T>
__device__ __forceinline__ void layernorm_row(T* o, const T* x, float partial_sum, const T* weight, const T* bias, int C, float* mean, float* rstd) {
    int lane = threadIdx.x % 32;
    float m = warp_sum(partial_sum) / C;
    float v = 0.0f;
    for (int c = lane; c < C; c += 32) {
        float d = to_f32(x[c]) - m;
        v += d * d;
    }
    float r = rsqrtf(warp_sum(v) / C + 1e-5f);
    for (int c = lane; c < C; c += 32) o[c] = from_f32<T>((to_f32(x[c]) - m) * r * to_f32(weight[c]) + to_f32(bias[c]));
    if (lane == 0) { *mean = m; *rstd = r; }
}
// LayerNorm, one warp per row. out, inp (N,C); mean, rstd (N) fp32, saved for backward
template <typename T>
__global__ void layernorm_forward_kernel(T* out, float* mean, float* rstd, const T* inp, const T* weight, const T* bias, int N, int C) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;  // warp-uniform
    const T* x = inp + (long)row * C;
    float s = 0.0f;
    for (int c = lane; c < C; c += 32) s += to_f32(x[c]);
    layernorm_row(out + (long)row * C, x, s, weight, bias, C, mean + row, rstd + row);
}
// dinp (N,C) += the input gradient; one warp per row
template <typename T>
__global__ void layernorm_backward_dinp_kernel(T* dinp, const T* dout, const T* inp, const T* weight, const float* mean,
                                               const float* rstd, int N, int C) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const T* d = dout + (long)row * C;
    const T* x = inp + (long)row * C;
    float m = mean[row], s = rstd[row], a = 0.0f, b = 0.0f;
    for (int c = lane; c < C; c += 32) {
        float dn = to_f32(weight[c]) * to_f32(d[c]);
        a += dn;
        b += dn * (to_f32(x[c]) - m) * s;
    }
    float dnorm_mean = warp_sum(a) / C, dnorm_norm_mean = warp_sum(b) / C;
    T* di = dinp + (long)row * C;
    for (int c = lane; c < C; c += 32) {
        float norm = (to_f32(x[c]) - m) * s;
        di[c] = from_f32<T>(to_f32(di[c]) + (to_f32(weight[c]) * to_f32(d[c]) - dnorm_mean - norm * dnorm_norm_mean) * s);
    }
}
// column sums over N rows in two deterministic stages (no atomics, fixed order):
// stage 1: block (x, r) takes 32 columns and the r-th chunk of rows; 8 row stripes, reduced in
// order, write partial[r][c] (and partial2). MODE 0: sums of dout (a bias gradient).
// MODE 1: LayerNorm's parameters: sums of d (bias) and of (x - mean) rstd d (weight).
// stage 2: one thread per column adds the chunks' partials in order into dcol (and dcol2).
template <typename T, int MODE>
__global__ void column_sum_partial_kernel(float* partial, float* partial2, const T* dout, const T* inp, const float* mean, const float* rstd,
                                          int N, int C) {
    SHARED_ARRAY(float, part, [8][32]);
    SHARED_ARRAY(float, part2, [8][32]);
    int c = blockIdx.x * 32 + threadIdx.x % 32, stripe = threadIdx.x / 32;
    int chunk = (N + gridDim.y - 1) / gridDim.y, i0 = blockIdx.y * chunk, i1 = min(N, i0 + chunk);
    float s = 0.0f, s2 = 0.0f;
    if (c < C)
        for (int i = i0 + stripe; i < i1; i += 8) {
            float d = to_f32(dout[(long)i * C + c]);
            s += d;
            if (MODE == 1) s2 += (to_f32(inp[(long)i * C + c]) - mean[i]) * rstd[i] * d;
        }
    part[stripe][threadIdx.x % 32] = s;
    part2[stripe][threadIdx.x % 32] = s2;
    __syncthreads();
    if (stripe == 0 && c < C) {
        float a = 0.0f, b = 0.0f;
        for (int k = 0; k < 8; k++) { a += part[k][threadIdx.x]; b += part2[k][threadIdx.x]; }
        partial[(long)blockIdx.y * C + c] = a;
        if (MODE == 1) partial2[(long)blockIdx.y * C + c] = b;
    }
}
__global__ void column_sum_final_kernel(float* dcol, float* dcol2, const float* partial, const float* partial2, int chunks, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float a = 0.0f, b = 0.0f;
    for (int r = 0; r < chunks; r++) {
        a += partial[(long)r * C + c];
        if (dcol2) b += partial2[(long)r * C + c];
    }
    dcol[c] += a;
    if (dcol2) dcol2[c] += b;
}

// fused residual + LayerNorm, one warp per row: res = a + b (+ c), stored in T, then
// ln = LayerNorm(res) computed from the stored (rounded) values, so it equals the unfused
// residual_forward + layernorm_forward pair exactly while reading the inputs once
template <typename T>
__global__ void residual_layernorm_forward_kernel(T* res, T* ln, float* mean, float* rstd, const T* a, const T* b, const T* c,
                                                  const T* weight, const T* bias, int N, int C) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    long o = (long)row * C;
    float s = 0.0f;
    for (int i = lane; i < C; i += 32) {
        float x = to_f32(a[o + i]) + to_f32(b[o + i]);
        if (c) x += to_f32(c[o + i]);
        T xr = from_f32<T>(x);
        res[o + i] = xr;
        s += to_f32(xr);
    }
    layernorm_row(ln + o, res + o, s, weight, bias, C, mean + row, rstd + row);  // reads back this lane's own writes
}

// ---------------------------------------------------------------------------------------------
// GELU, tanh (GPT-2) or erf (Pythia) form, and its backward; elementwise over N
#define GELU_SCALE_F 0.7978845608028654f
template <typename T>
__global__ void gelu_forward_kernel(T* out, const T* inp, long N, int exact) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N) return;
    float x = to_f32(inp[i]);
    float y = exact ? 0.5f * x * (1.0f + erff(x * 0.70710678118f)) : 0.5f * x * (1.0f + tanhf(GELU_SCALE_F * (x + 0.044715f * x * x * x)));
    out[i] = from_f32<T>(y);
}
template <typename T>
__global__ void gelu_backward_kernel(T* dinp, const T* inp, const T* dout, long N, int exact) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N) return;
    float x = to_f32(inp[i]), g;
    if (exact) {
        g = 0.5f * (1.0f + erff(x * 0.70710678118f)) + x * 0.3989422804f * expf(-0.5f * x * x);
    } else {
        float u = GELU_SCALE_F * (x + 0.044715f * x * x * x), th = tanhf(u), sech2 = 1.0f - th * th;
        g = 0.5f * (1.0f + th) + 0.5f * x * sech2 * GELU_SCALE_F * (1.0f + 3.0f * 0.044715f * x * x);
    }
    dinp[i] = from_f32<T>(g * to_f32(dout[i]));
}
// out = a + b (+ c)
template <typename T>
__global__ void residual_forward_kernel(T* out, const T* a, const T* b, const T* c, long N) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= N) return;
    float s = to_f32(a[i]) + to_f32(b[i]);
    if (c) s += to_f32(c[i]);
    out[i] = from_f32<T>(s);
}

// ---------------------------------------------------------------------------------------------
// block-wide reductions for 256-thread blocks (fixed order: warp butterflies, then warp 0)
template <typename F, bool MAX>
__device__ F block_reduce(F v, F* scratch32) {
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nw = blockDim.x / 32;
    v = MAX ? (F)warp_max((float)v) : warp_sum(v);
    if (lane == 0) scratch32[warp] = v;
    __syncthreads();
    F r = lane < nw ? scratch32[lane] : (MAX ? (F)-INFINITY : (F)0);
    r = MAX ? (F)warp_max((float)r) : warp_sum(r);
    __syncthreads();  // scratch32 may be reused right after
    return r;
}

// fused classifier, forward: per row of logits (N,Vp) over the real vocab V: lse (N) and
// losses (N) = lse - logit[target] (0 where target < 0). One 256-thread block per row.
template <typename T>
__global__ void crossentropy_forward_kernel(float* losses, float* lse, const T* logits, const int* targets, int V, int Vp) {
    SHARED_ARRAY(float, scratch, [32]);
    int row = blockIdx.x;
    const T* l = logits + (long)row * Vp;
    float m = -INFINITY;
    for (int v = threadIdx.x; v < V; v += blockDim.x) m = fmaxf(m, to_f32(l[v]));
    m = block_reduce<float, true>(m, scratch);
    float s = 0.0f;
    for (int v = threadIdx.x; v < V; v += blockDim.x) s += expf(to_f32(l[v]) - m);
    s = block_reduce<float, false>(s, scratch);
    if (threadIdx.x == 0) {
        float z = logf(s) + m;
        lse[row] = z;
        int tg = targets[row];
        losses[row] = tg < 0 ? 0.0f : z - to_f32(l[tg]);
    }
}
// backward in place: logits become dloss * (softmax - onehot); padded columns and ignored rows 0
template <typename T>
__global__ void crossentropy_backward_kernel(T* logits, const float* lse, const int* targets, float dloss, int V, int Vp) {
    int row = blockIdx.x, tg = targets[row];
    T* l = logits + (long)row * Vp;
    float z = lse[row];
    for (int v = threadIdx.x; v < Vp; v += blockDim.x) {
        float d = 0.0f;
        if (tg >= 0 && v < V) d = dloss * (expf(to_f32(l[v]) - z) - (v == tg ? 1.0f : 0.0f));
        l[v] = from_f32<T>(d);
    }
}
// out[0] = mean of losses over rows with target >= 0 (NAN if none); one 256-thread block
__global__ void mean_loss_kernel(float* out, const float* losses, const int* targets, int N) {
    SHARED_ARRAY(double, scratch, [32]);
    double s = 0.0, n = 0.0;
    for (int i = threadIdx.x; i < N; i += blockDim.x)
        if (targets[i] >= 0) { s += losses[i]; n += 1.0; }
    s = block_reduce<double, false>(s, scratch);
    n = block_reduce<double, false>(n, scratch);
    if (threadIdx.x == 0) out[0] = n > 0 ? (float)(s / n) : NAN;
}

// ---------------------------------------------------------------------------------------------
// RoPE, GPT-NeoX layout, in place: `heads` vectors of each of the B*Tn rows (row floats apart,
// head floats apart) rotate their first `rot` dims; pair (i, i + rot/2) by the tabulated angle
// of position bt % Tn. inverse rotates back (the backward). cos_t, sin_t are (maxT, rot/2).
template <typename T>
__global__ void rope_kernel(T* buf, long row, long head, int heads, int BT, int Tn, int rot, const float* cos_t, const float* sin_t,
                            int inverse) {
    int half = rot / 2;
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long)BT * heads * half) return;
    int k = (int)(i % half);
    long rest = i / half;
    int h = (int)(rest % heads), bt = (int)(rest / heads), t = bt % Tn;
    T* x = buf + (long)bt * row + (long)h * head;
    float c = cos_t[(long)t * half + k], s = sin_t[(long)t * half + k];
    if (inverse) s = -s;
    float x1 = to_f32(x[k]), x2 = to_f32(x[k + half]);
    x[k] = from_f32<T>(x1 * c - x2 * s);
    x[k + half] = from_f32<T>(x2 * c + x1 * s);
}

// ---------------------------------------------------------------------------------------------
// Flash-style causal attention for the GQA family (MHA G = H, GQA, MQA G = 1). qkv is the fused
// projection (B,Tn,(H+2G)*HD): q heads, then k heads, then v heads; query head h reads KV head
// h / (H/G) by index. Score of (h, t) against key t2 <= t: scale * q.k - slope_h * (t - t2)
// (ALiBi computed on the fly, slopes null otherwise); RoPE is applied to q and k beforehand.
// Only the log-sum-exp lse (B,H,Tn) is saved; no (Tn,Tn) tensor ever exists.
// Layout of the work (all three kernels): a block of 8 warps; key (or query) tiles of 32 rows
// are staged in shared memory as fp32, padded to HD + 4 floats per row so that lane j reading
// row j as float4 is free of bank conflicts; lane j owns key (or query) j of the tile for the
// dot products, and output dims lane + 32 i (HD/32 per lane) for the accumulations. Each warp
// handles RPW rows at once, so every shared-memory read serves RPW rows (RPW shrinks for
// HD = 128 to stay inside 48 KiB of static shared memory).
#define ATT_WARPS 8
#define ATT_TILE 32
template <int HD> struct AttShape {
    static constexpr int RPW_FWD = HD >= 128 ? 2 : 4;  // query rows per warp, forward
    static constexpr int RPW_BWD = HD >= 128 ? 1 : 4;  // query (dq) or key (dk, dv) rows per warp, backward
    static constexpr int KP = HD + 4;                  // padded row of a staged tile
};
// the head dims the attention kernels are instantiated for, and the dispatch to them:
// with_head_dim(hd, f) calls f(std::integral_constant<int, HD>{}) for HD == hd
static inline bool att_head_dim_ok(int hd) { return hd == 32 || hd == 64 || hd == 128; }
template <typename F>
static void with_head_dim(int hd, F f) {
    if (hd == 32) f(std::integral_constant<int, 32>{});
    if (hd == 64) f(std::integral_constant<int, 64>{});
    if (hd == 128) f(std::integral_constant<int, 128>{});
}
static inline int att_rows_fwd(int hd) { return ATT_WARPS * (hd >= 128 ? 2 : 4); }  // rows per block, for the launch
static inline int att_rows_bwd(int hd) { return ATT_WARPS * (hd >= 128 ? 1 : 4); }

// ROWS rows [j0, j0 + ROWS) of a head's vectors (row stride `row`, from `base` + col) into a
// staged tile dst[ROWS][LD] (zeros past Tn)
template <typename T, int HD, int LD, int ROWS>
__device__ __forceinline__ void stage_tile(float (*dst)[LD], const T* base, long row, int col, int j0, int Tn) {
    for (int idx = threadIdx.x; idx < ROWS * HD; idx += blockDim.x) {
        int r = idx / HD, c = idx % HD, t = j0 + r;
        dst[r][c] = t < Tn ? to_f32(base[(long)t * row + col + c]) : 0.0f;
    }
}
// lane's dot products of one staged row (this lane's, float4) with R broadcast rows
template <int HD, int R, int LDA, int LDB>
__device__ __forceinline__ void dot_rows(float* d, const float (*a)[LDA], int ra, const float (*b)[LDB], int rb0) {
    for (int r = 0; r < R; r++) d[r] = 0.0f;
    for (int c = 0; c < HD; c += 4) {
        float4 x = *reinterpret_cast<const float4*>(&a[ra][c]);
        for (int r = 0; r < R; r++) {
            float4 y = *reinterpret_cast<const float4*>(&b[rb0 + r][c]);
            d[r] += x.x * y.x + x.y * y.y + x.z * y.z + x.w * y.w;
        }
    }
}

// acc[r][i] += sum_j w_r(j) tile[j][lane + 32 i] over the 32 rows of a staged tile, where lane j
// holds w_r(j) (a probability, or a score gradient) in w[r]
template <int NL, int R, int LD>
__device__ __forceinline__ void accumulate_rows(float (*acc)[NL], const float* w, const float (*tile)[LD]) {
    const int lane = threadIdx.x % 32;
    for (int j = 0; j < ATT_TILE; j++) {
        float x[NL];
        for (int i = 0; i < NL; i++) x[i] = tile[j][lane + 32 * i];
        for (int r = 0; r < R; r++) {
            float wj = __shfl_sync(FULL_MASK, w[r], j);
            for (int i = 0; i < NL; i++) acc[r][i] += wj * x[i];
        }
    }
}

template <typename T, int HD>
__global__ void __launch_bounds__(ATT_WARPS * 32) attention_forward_kernel(T* y, float* lse, const T* qkv, int Tn, int H, int G, float scale,
                                                                           const float* slopes) {
    constexpr int NL = HD / 32, R = AttShape<HD>::RPW_FWD, KP = AttShape<HD>::KP, QR = ATT_WARPS * R;
    SHARED_ARRAY(float, Ks, [ATT_TILE][KP]);
    SHARED_ARRAY(float, Vs, [ATT_TILE][HD]);
    SHARED_ARRAY(float, Qs, [QR][KP]);
    const int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * QR;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = h / (H / G), r0 = q0 + warp * R;
    const long qkv_dim = (long)(H + 2 * G) * HD;
    const T* base = qkv + (long)b * Tn * qkv_dim;
    const float slope = slopes ? slopes[h] : 0.0f;
    stage_tile<T, HD, KP, QR>(Qs, base, qkv_dim, h * HD, q0, Tn);
    float m[R], l[R], acc[R][NL];
    for (int r = 0; r < R; r++) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
        for (int i = 0; i < NL; i++) acc[r][i] = 0.0f;
    }
    const int last = min(Tn - 1, q0 + QR - 1), warp_last = min(Tn - 1, r0 + R - 1);
    for (int j0 = 0; j0 <= last; j0 += ATT_TILE) {
        __syncthreads();  // Qs staged / the previous tile consumed
        stage_tile<T, HD, KP, ATT_TILE>(Ks, base, qkv_dim, (H + g) * HD, j0, Tn);
        stage_tile<T, HD, HD, ATT_TILE>(Vs, base, qkv_dim, (H + G + g) * HD, j0, Tn);
        __syncthreads();
        if (r0 < Tn && j0 <= warp_last) {  // warp-uniform: some row of this warp sees this tile
            const int t2 = j0 + lane;
            float d[R], p[R];
            dot_rows<HD, R, KP, KP>(d, Ks, lane, Qs, warp * R);
            for (int r = 0; r < R; r++) {
                const int t = r0 + r;
                const bool ok = t < Tn && t2 <= t;
                float s = ok ? d[r] * scale + (-slope * (float)(t - t2)) : -INFINITY;
                float m_new = fmaxf(m[r], warp_max(s));
                float corr = m_new == -INFINITY ? 1.0f : expf(m[r] - m_new);  // a row past Tn never sees a key
                p[r] = ok ? expf(s - m_new) : 0.0f;
                l[r] = l[r] * corr + warp_sum(p[r]);
                for (int i = 0; i < NL; i++) acc[r][i] *= corr;
                m[r] = m_new;
            }
            accumulate_rows<NL, R, HD>(acc, p, Vs);
        }
    }
    for (int r = 0; r < R; r++) {
        const int t = r0 + r;
        if (t >= Tn) break;
        float inv = 1.0f / l[r];
        T* yo = y + ((long)b * Tn + t) * H * HD + h * HD;
        for (int i = 0; i < NL; i++) yo[lane + 32 * i] = from_f32<T>(acc[r][i] * inv);
        if (lane == 0) lse[((long)b * H + h) * Tn + t] = m[r] + logf(l[r]);
    }
}
// backward, step 1: D (B,H,Tn) = dy . y per query row (the softmax correction term)
template <typename T>
__global__ void attention_backward_dot_kernel(float* D, const T* dy, const T* y, int B, int Tn, int H, int hd) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;  // over (b, h, t)
    if (i >= (long)B * H * Tn) return;
    int t = (int)(i % Tn), h = (int)((i / Tn) % H), b = (int)(i / ((long)Tn * H));
    const T* a = dy + ((long)b * Tn + t) * H * hd + h * hd;
    const T* c = y + ((long)b * Tn + t) * H * hd + h * hd;
    float s = 0.0f;
    for (int k = 0; k < hd; k++) s += to_f32(a[k]) * to_f32(c[k]);
    D[i] = s;
}
// backward, step 2: dq, R query rows per warp like the forward; p = exp(score - lse) is
// recomputed, ds = p (dy.v - D) scale, dq = sum ds k. Writes the q part of dqkv.
template <typename T, int HD>
__global__ void __launch_bounds__(ATT_WARPS * 32) attention_backward_dq_kernel(T* dqkv, const T* qkv, const T* dy, const float* lse, const float* D,
                                                                               int Tn, int H, int G, float scale, const float* slopes) {
    constexpr int NL = HD / 32, R = AttShape<HD>::RPW_BWD, KP = AttShape<HD>::KP, QR = ATT_WARPS * R;
    SHARED_ARRAY(float, Ks, [ATT_TILE][KP]);
    SHARED_ARRAY(float, Vs, [ATT_TILE][KP]);
    SHARED_ARRAY(float, Qs, [QR][KP]);
    SHARED_ARRAY(float, dYs, [QR][KP]);
    const int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * QR;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = h / (H / G), r0 = q0 + warp * R;
    const long qkv_dim = (long)(H + 2 * G) * HD;
    const T* base = qkv + (long)b * Tn * qkv_dim;
    const float slope = slopes ? slopes[h] : 0.0f;
    stage_tile<T, HD, KP, QR>(Qs, base, qkv_dim, h * HD, q0, Tn);
    stage_tile<T, HD, KP, QR>(dYs, dy + (long)b * Tn * H * HD, (long)H * HD, h * HD, q0, Tn);
    float L[R], Dt[R], dq[R][NL];
    for (int r = 0; r < R; r++) {
        const int t = r0 + r;
        L[r] = t < Tn ? lse[((long)b * H + h) * Tn + t] : 0.0f;
        Dt[r] = t < Tn ? D[((long)b * H + h) * Tn + t] : 0.0f;
        for (int i = 0; i < NL; i++) dq[r][i] = 0.0f;
    }
    const int last = min(Tn - 1, q0 + QR - 1), warp_last = min(Tn - 1, r0 + R - 1);
    for (int j0 = 0; j0 <= last; j0 += ATT_TILE) {
        __syncthreads();
        stage_tile<T, HD, KP, ATT_TILE>(Ks, base, qkv_dim, (H + g) * HD, j0, Tn);
        stage_tile<T, HD, KP, ATT_TILE>(Vs, base, qkv_dim, (H + G + g) * HD, j0, Tn);
        __syncthreads();
        if (r0 < Tn && j0 <= warp_last) {
            const int t2 = j0 + lane;
            float d[R], dp[R], ds[R];
            dot_rows<HD, R, KP, KP>(d, Ks, lane, Qs, warp * R);
            dot_rows<HD, R, KP, KP>(dp, Vs, lane, dYs, warp * R);
            for (int r = 0; r < R; r++) {
                const int t = r0 + r;
                ds[r] = 0.0f;
                if (t < Tn && t2 <= t) {
                    float p = expf(d[r] * scale + (-slope * (float)(t - t2)) - L[r]);
                    ds[r] = p * (dp[r] - Dt[r]) * scale;
                }
            }
            accumulate_rows<NL, R, KP>(dq, ds, Ks);
        }
    }
    for (int r = 0; r < R; r++) {
        const int t = r0 + r;
        if (t >= Tn) break;
        for (int i = 0; i < NL; i++) dqkv[((long)b * Tn + t) * qkv_dim + h * HD + lane + 32 * i] = from_f32<T>(dq[r][i]);
    }
}
// backward, step 3: dk and dv, R key rows per warp of KV head g; the block walks every query
// head of the group and every query t >= its first key in tiles of 32 (lane j: query j of the
// tile), so each dk, dv element is owned by one warp and summed in a fixed order. Writes the k
// and v parts of dqkv.
template <typename T, int HD>
__global__ void __launch_bounds__(ATT_WARPS * 32) attention_backward_dkv_kernel(T* dqkv, const T* qkv, const T* dy, const float* lse, const float* D,
                                                                                int Tn, int H, int G, float scale, const float* slopes) {
    constexpr int NL = HD / 32, R = AttShape<HD>::RPW_BWD, KP = AttShape<HD>::KP, KR = ATT_WARPS * R;
    SHARED_ARRAY(float, Qs, [ATT_TILE][KP]);
    SHARED_ARRAY(float, dYs, [ATT_TILE][KP]);
    SHARED_ARRAY(float, Kw, [KR][KP]);
    SHARED_ARRAY(float, Vw, [KR][KP]);
    SHARED_ARRAY(float, Ls, [ATT_TILE]);
    SHARED_ARRAY(float, Ds, [ATT_TILE]);
    const int b = blockIdx.z, g = blockIdx.y, k0 = blockIdx.x * KR;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r0 = k0 + warp * R, group = H / G;
    const long qkv_dim = (long)(H + 2 * G) * HD;
    const T* base = qkv + (long)b * Tn * qkv_dim;
    const T* dbase = dy + (long)b * Tn * H * HD;
    stage_tile<T, HD, KP, KR>(Kw, base, qkv_dim, (H + g) * HD, k0, Tn);
    stage_tile<T, HD, KP, KR>(Vw, base, qkv_dim, (H + G + g) * HD, k0, Tn);
    float dk[R][NL], dv[R][NL];
    for (int r = 0; r < R; r++)
        for (int i = 0; i < NL; i++) dk[r][i] = dv[r][i] = 0.0f;
    for (int h = g * group; h < (g + 1) * group; h++) {
        const float slope = slopes ? slopes[h] : 0.0f;
        for (int j0 = k0 / ATT_TILE * ATT_TILE; j0 < Tn; j0 += ATT_TILE) {
            __syncthreads();
            stage_tile<T, HD, KP, ATT_TILE>(Qs, base, qkv_dim, h * HD, j0, Tn);
            stage_tile<T, HD, KP, ATT_TILE>(dYs, dbase, (long)H * HD, h * HD, j0, Tn);
            if (threadIdx.x < ATT_TILE) {
                int t = j0 + threadIdx.x;
                Ls[threadIdx.x] = t < Tn ? lse[((long)b * H + h) * Tn + t] : 0.0f;
                Ds[threadIdx.x] = t < Tn ? D[((long)b * H + h) * Tn + t] : 0.0f;
            }
            __syncthreads();
            if (r0 < Tn && j0 + ATT_TILE - 1 >= r0) {  // warp-uniform: some query of the tile sees the warp's first key
                const int t = j0 + lane;
                float d[R], dp[R], p[R], ds[R];
                dot_rows<HD, R, KP, KP>(d, Qs, lane, Kw, warp * R);
                dot_rows<HD, R, KP, KP>(dp, dYs, lane, Vw, warp * R);
                for (int r = 0; r < R; r++) {
                    const int t2 = r0 + r;
                    p[r] = ds[r] = 0.0f;
                    if (t2 < Tn && t >= t2 && t < Tn) {
                        p[r] = expf(d[r] * scale + (-slope * (float)(t - t2)) - Ls[lane]);
                        ds[r] = p[r] * (dp[r] - Ds[lane]) * scale;
                    }
                }
                accumulate_rows<NL, R, KP>(dv, p, dYs);
                accumulate_rows<NL, R, KP>(dk, ds, Qs);
            }
        }
    }
    for (int r = 0; r < R; r++) {
        const int t2 = r0 + r;
        if (t2 >= Tn) break;
        for (int i = 0; i < NL; i++) {
            dqkv[((long)b * Tn + t2) * qkv_dim + (H + g) * HD + lane + 32 * i] = from_f32<T>(dk[r][i]);
            dqkv[((long)b * Tn + t2) * qkv_dim + (H + G + g) * HD + lane + 32 * i] = from_f32<T>(dv[r][i]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// global gradient norm without host syncs: stage 1 writes one double partial sum of squares per
// block (grid-stride, fixed grid), stage 2 (one block) sums them in order and writes the norm
#define NORM_BLOCKS 512
__global__ void grad_norm_partial_kernel(double* partial, const float* g, long n) {
    SHARED_ARRAY(double, scratch, [32]);
    double s = 0.0;
    for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) s += (double)g[i] * g[i];
    s = block_reduce<double, false>(s, scratch);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}
__global__ void grad_norm_final_kernel(float* norm, const double* partial, int n) {
    SHARED_ARRAY(double, scratch, [32]);
    double s = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s += partial[i];
    s = block_reduce<double, false>(s, scratch);
    if (threadIdx.x == 0) norm[0] = (float)sqrt(s);
}

// AdamW on the fp32 master weights, one launch for every tensor: blockIdx.y picks the tensor
// (offset, size, decay flag). The clip factor comes from the norm on the device (no host sync):
// g *= grad_scale * (clip > 0 && norm > clip ? clip / norm : 1). Writes the T copy the forward reads.
template <typename T>
__global__ void adamw_kernel(float* master, T* params, const float* grads, float* m, float* v, const long* offsets, const long* sizes,
                             const int* decay, const float* norm, float clip, float grad_scale, float lr, float beta1, float beta2,
                             float eps, float weight_decay, float bc1, float bc2) {
    int s = blockIdx.y;
    long off = offsets[s], n = sizes[s];
    float wd = decay[s] ? weight_decay : 0.0f;
    float nrm = norm[0];
    float scale = grad_scale * ((clip > 0.0f && nrm > clip) ? clip / nrm : 1.0f);
    for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
        long j = off + i;
        float gi = grads[j] * scale;
        float mm = beta1 * m[j] + (1.0f - beta1) * gi;
        float vv = beta2 * v[j] + (1.0f - beta2) * gi * gi;
        m[j] = mm;
        v[j] = vv;
        float p = master[j];
        float mhat = mm / bc1, vhat = vv / bc2;
        p -= lr * (mhat / (sqrtf(vhat) + eps) + wd * p);
        master[j] = p;
        if (params) params[j] = from_f32<T>(p);
    }
}
// the T copy of fp32 values (parameters after an upload)
template <typename T>
__global__ void convert_kernel(T* out, const float* in, long n) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = from_f32<T>(in[i]);
}
template <typename T>
__global__ void to_float_kernel(float* out, const T* in, long n) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = to_f32(in[i]);
}
