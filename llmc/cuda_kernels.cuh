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
// token (+ learned position) embedding. out (B,Tn,C); inp (B,Tn); wte (Vp,C); wpe (maxT,C) or null;
// row bt's position is pos[bt] when given (decoding), else bt % Tn
template <typename T>
__global__ void encoder_forward_kernel(T* out, const int* inp, const T* wte, const T* wpe, int BT, int Tn, int C, const int* pos) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long)BT * C) return;
    int bt = (int)(i / C), c = (int)(i % C);
    float x = to_f32(wte[(long)inp[bt] * C + c]);
    if (wpe) x += to_f32(wpe[(long)(pos ? pos[bt] : bt % Tn) * C + c]);
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
// MODE 2: RMSNorm's weight: sums of x rrms d only (into partial2; x rows in_row apart).
// stage 2: one thread per column adds the chunks' partials in order into dcol (and dcol2).
template <typename T, int MODE>
__global__ void column_sum_partial_kernel(float* partial, float* partial2, const T* dout, const T* inp, long in_row, const float* mean,
                                          const float* rstd, int N, int C) {
    SHARED_ARRAY(float, part, [8][32]);
    SHARED_ARRAY(float, part2, [8][32]);
    int c = blockIdx.x * 32 + threadIdx.x % 32, stripe = threadIdx.x / 32;
    int chunk = (N + gridDim.y - 1) / gridDim.y, i0 = blockIdx.y * chunk, i1 = min(N, i0 + chunk);
    float s = 0.0f, s2 = 0.0f;
    if (c < C)
        for (int i = i0 + stripe; i < i1; i += 8) {
            float d = to_f32(dout[(long)i * C + c]);
            s += d;
            if (MODE == 1) s2 += (to_f32(inp[(long)i * in_row + c]) - mean[i]) * rstd[i] * d;
            if (MODE == 2) s2 += to_f32(inp[(long)i * in_row + c]) * rstd[i] * d;
        }
    part[stripe][threadIdx.x % 32] = s;
    part2[stripe][threadIdx.x % 32] = s2;
    __syncthreads();
    if (stripe == 0 && c < C) {
        float a = 0.0f, b = 0.0f;
        for (int k = 0; k < 8; k++) { a += part[k][threadIdx.x]; b += part2[k][threadIdx.x]; }
        if (MODE != 2) partial[(long)blockIdx.y * C + c] = a;
        if (MODE != 0) partial2[(long)blockIdx.y * C + c] = b;
    }
}
__global__ void column_sum_final_kernel(float* dcol, float* dcol2, const float* partial, const float* partial2, int chunks, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float a = 0.0f, b = 0.0f;
    for (int r = 0; r < chunks; r++) {
        if (dcol) a += partial[(long)r * C + c];
        if (dcol2) b += partial2[(long)r * C + c];
    }
    if (dcol) dcol[c] += a;
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
// of position bt % Tn (pos[bt] when given: decoding). inverse rotates back (the backward). cos_t,
// sin_t are (maxT, rot/2).
template <typename T>
__global__ void rope_kernel(T* buf, long row, long head, int heads, int BT, int Tn, int rot, const float* cos_t, const float* sin_t,
                            int inverse, const int* pos) {
    int half = rot / 2;
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long)BT * heads * half) return;
    int k = (int)(i % half);
    long rest = i / half;
    int h = (int)(rest % heads), bt = (int)(rest / heads), t = pos ? pos[bt] : bt % Tn;
    T* x = buf + (long)bt * row + (long)h * head;
    float c = cos_t[(long)t * half + k], s = sin_t[(long)t * half + k];
    if (inverse) s = -s;
    float x1 = to_f32(x[k]), x2 = to_f32(x[k + half]);
    x[k] = from_f32<T>(x1 * c - x2 * s);
    x[k + half] = from_f32<T>(x2 * c + x1 * s);
}

// ---------------------------------------------------------------------------------------------
// Flash-style causal attention for every variant (the twin of attention/core.h's AttnCore).
// Score of query head h at t against key t2 <= t:
//     scale * (q[h][0:DA] . ka[g][0:DA] + q[h][DA:DA+DB] . kb[0:DB]) - slope_h * (t - t2)
// ka and v are per KV head g = h / (H/G), shared by index (MHA G = H, GQA, MQA G = 1); kb is an
// optional key part shared by every head (MLA's decoupled rope key, DB > 0); ALiBi is computed on
// the fly (slopes null otherwise); RoPE is applied beforehand. Every tensor is an AttView, so q,
// k, v are read in place inside a fused projection (GQA's qkv, MLA's up-projected kv) without
// copies. y (B,Tn,H*DA) is contiguous; only the log-sum-exp lse (B,H,Tn) is saved.
// Layout of the work (all three kernels): a block of 8 warps; key (or query) tiles of 32 rows
// are staged in shared memory as fp32, padded to width + 4 floats per row so that lane j reading
// row j as float4 is free of bank conflicts; lane j owns key (or query) j of the tile for the
// dot products, and output dims lane + 32 i for the accumulations. Each warp handles R rows at
// once, so every shared-memory read serves R rows (R shrinks for DA = 128 to stay inside 48 KiB
// of static shared memory).
#define ATT_WARPS 8
#define ATT_TILE 32
template <typename P>
struct AttView {  // element i of head h at (b, t): p[(b*Tn + t)*row + h*head + i]
    P p;
    long row, head;
};
template <int HD> struct AttShape {
    static constexpr int RPW_FWD = HD >= 128 ? 2 : 4;  // query rows per warp, forward
    static constexpr int RPW_BWD = HD >= 128 ? 1 : 4;  // query (dq) or key (dk, dv) rows per warp, backward
    static constexpr int KP = HD + 4;                  // padded row of a staged tile
};
// the (per-head, shared) key widths the kernels are instantiated for, and the dispatch to them:
// with_att_dims(da, db, f) calls f(integral_constant DA, integral_constant DB). A 64-wide shared
// part next to DA >= 64 would not fit the backward's tiles in 48 KiB of static shared memory.
static inline bool att_head_dim_ok(int hd) { return hd == 32 || hd == 64 || hd == 128; }
static inline bool att_dims_ok(int da, int db) { return att_head_dim_ok(da) && (db == 0 || db == 16 || db == 32 || (db == 64 && da == 32)); }
template <typename F>
static void with_att_dims(int da, int db, F f) {
    using std::integral_constant;
    if (da == 32 && db == 0) f(integral_constant<int, 32>{}, integral_constant<int, 0>{});
    if (da == 64 && db == 0) f(integral_constant<int, 64>{}, integral_constant<int, 0>{});
    if (da == 128 && db == 0) f(integral_constant<int, 128>{}, integral_constant<int, 0>{});
    if (da == 32 && db == 16) f(integral_constant<int, 32>{}, integral_constant<int, 16>{});
    if (da == 64 && db == 16) f(integral_constant<int, 64>{}, integral_constant<int, 16>{});
    if (da == 128 && db == 16) f(integral_constant<int, 128>{}, integral_constant<int, 16>{});
    if (da == 32 && db == 32) f(integral_constant<int, 32>{}, integral_constant<int, 32>{});
    if (da == 64 && db == 32) f(integral_constant<int, 64>{}, integral_constant<int, 32>{});
    if (da == 128 && db == 32) f(integral_constant<int, 128>{}, integral_constant<int, 32>{});
    if (da == 32 && db == 64) f(integral_constant<int, 32>{}, integral_constant<int, 64>{});
}
template <typename F>
static void with_head_dim(int hd, F f) {  // the GQA family (no shared key part)
    with_att_dims(hd, 0, [&](auto DA, auto) { f(DA); });
}
// the GQA family's views into the fused qkv (B,Tn,(H+2G)hd): q heads, then k heads, then v heads
template <typename P>
static void gqa_views(P qkv, int H, int G, int hd, AttView<P>* q, AttView<P>* k, AttView<P>* v) {
    *q = {qkv, (long)(H + 2 * G) * hd, hd};
    *k = {qkv + (long)H * hd, (long)(H + 2 * G) * hd, hd};
    *v = {qkv + (long)(H + G) * hd, (long)(H + 2 * G) * hd, hd};
}
static inline int att_rows_fwd(int hd) { return ATT_WARPS * (hd >= 128 ? 2 : 4); }  // rows per block, for the launch
static inline int att_rows_bwd(int hd) { return ATT_WARPS * (hd >= 128 ? 1 : 4); }

// ROWS rows [j0, j0 + ROWS) of a head's vectors (row stride `row`, from `base` + col) into a
// staged tile dst[ROWS][LD] (zeros past Tn)
template <typename T, int HD, int LD, int ROWS>
__device__ __forceinline__ void stage_tile(float (*dst)[LD], const T* base, long row, long col, int j0, int Tn) {
    for (int idx = threadIdx.x; idx < ROWS * HD; idx += blockDim.x) {
        int r = idx / HD, c = idx % HD, t = j0 + r;
        dst[r][c] = t < Tn ? to_f32(base[(long)t * row + col + c]) : 0.0f;
    }
}
// lane's dot products of one staged row (this lane's, float4) with R broadcast rows, added to d
template <int HD, int R, int LDA, int LDB>
__device__ __forceinline__ void dot_rows_add(float* d, const float (*a)[LDA], int ra, const float (*b)[LDB], int rb0) {
    for (int c = 0; c < HD; c += 4) {
        float4 x = *reinterpret_cast<const float4*>(&a[ra][c]);
        for (int r = 0; r < R; r++) {
            float4 y = *reinterpret_cast<const float4*>(&b[rb0 + r][c]);
            d[r] += x.x * y.x + x.y * y.y + x.z * y.z + x.w * y.w;
        }
    }
}
template <int HD, int R, int LDA, int LDB>
__device__ __forceinline__ void dot_rows(float* d, const float (*a)[LDA], int ra, const float (*b)[LDB], int rb0) {
    for (int r = 0; r < R; r++) d[r] = 0.0f;
    dot_rows_add<HD, R, LDA, LDB>(d, a, ra, b, rb0);
}

// acc[r][i] += sum_j w_r(j) tile[j][lane + 32 i] over the 32 rows of a staged tile, where lane j
// holds w_r(j) (a probability, or a score gradient) in w[r]; columns past W (a 16-wide tile) read 0
template <int NL, int R, int LD, int W = NL * 32>
__device__ __forceinline__ void accumulate_rows(float (*acc)[NL], const float* w, const float (*tile)[LD]) {
    const int lane = threadIdx.x % 32;
    for (int j = 0; j < ATT_TILE; j++) {
        float x[NL];
        for (int i = 0; i < NL; i++) x[i] = W % 32 == 0 || lane + 32 * i < W ? tile[j][lane + 32 * i] : 0.0f;
        for (int r = 0; r < R; r++) {
            float wj = __shfl_sync(FULL_MASK, w[r], j);
            for (int i = 0; i < NL; i++) acc[r][i] += wj * x[i];
        }
    }
}
// the shared key part's tiles exist only when DB > 0 (a 4-float-wide stand-in otherwise); lanes
// own its dims lane + 32 i < DB
template <int DB> struct SharedPart {
    static constexpr int NL = DB > 0 ? (DB + 31) / 32 : 1;
    static constexpr int LD = DB + 4;
};

template <typename T, int DA, int DB>
__global__ void __launch_bounds__(ATT_WARPS * 32) attention_forward_kernel(T* y, float* lse, AttView<const T*> q, AttView<const T*> ka,
                                                                           AttView<const T*> kb, AttView<const T*> v, int Tn, int H, int G,
                                                                           float scale, const float* slopes) {
    constexpr int NL = DA / 32, R = AttShape<DA>::RPW_FWD, KP = AttShape<DA>::KP, QR = ATT_WARPS * R, BP = SharedPart<DB>::LD;
    SHARED_ARRAY(float, Ks, [ATT_TILE][KP]);
    SHARED_ARRAY(float, Vs, [ATT_TILE][DA]);
    SHARED_ARRAY(float, Qs, [QR][KP]);
    SHARED_ARRAY(float, Kbs, [ATT_TILE][BP]);
    SHARED_ARRAY(float, Qbs, [QR][BP]);
    const int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * QR;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = h / (H / G), r0 = q0 + warp * R;
    const long bt0 = (long)b * Tn;
    const float slope = slopes ? slopes[h] : 0.0f;
    stage_tile<T, DA, KP, QR>(Qs, q.p + bt0 * q.row, q.row, h * q.head, q0, Tn);
    if constexpr (DB > 0) stage_tile<T, DB, BP, QR>(Qbs, q.p + bt0 * q.row, q.row, h * q.head + DA, q0, Tn);
    float m[R], l[R], acc[R][NL];
    for (int r = 0; r < R; r++) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
        for (int i = 0; i < NL; i++) acc[r][i] = 0.0f;
    }
    const int last = min(Tn - 1, q0 + QR - 1), warp_last = min(Tn - 1, r0 + R - 1);
    for (int j0 = 0; j0 <= last; j0 += ATT_TILE) {
        __syncthreads();  // Qs staged / the previous tile consumed
        stage_tile<T, DA, KP, ATT_TILE>(Ks, ka.p + bt0 * ka.row, ka.row, g * ka.head, j0, Tn);
        stage_tile<T, DA, DA, ATT_TILE>(Vs, v.p + bt0 * v.row, v.row, g * v.head, j0, Tn);
        if constexpr (DB > 0) stage_tile<T, DB, BP, ATT_TILE>(Kbs, kb.p + bt0 * kb.row, kb.row, 0, j0, Tn);
        __syncthreads();
        if (r0 < Tn && j0 <= warp_last) {  // warp-uniform: some row of this warp sees this tile
            const int t2 = j0 + lane;
            float d[R], p[R];
            dot_rows<DA, R, KP, KP>(d, Ks, lane, Qs, warp * R);
            if constexpr (DB > 0) dot_rows_add<DB, R, BP, BP>(d, Kbs, lane, Qbs, warp * R);
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
            accumulate_rows<NL, R, DA>(acc, p, Vs);
        }
    }
    for (int r = 0; r < R; r++) {
        const int t = r0 + r;
        if (t >= Tn) break;
        float inv = 1.0f / l[r];
        T* yo = y + ((long)b * Tn + t) * H * DA + h * DA;
        for (int i = 0; i < NL; i++) yo[lane + 32 * i] = from_f32<T>(acc[r][i] * inv);
        if (lane == 0) lse[((long)b * H + h) * Tn + t] = m[r] + logf(l[r]);
    }
}
// backward, step 1: D (B,H,Tn) = dy . y per query row (the softmax correction term), minus the
// gradient arriving at the saved lse itself when there is one (fmka mixes levels by their lse:
// d lse / d s = p, so it adds p dlse to each score's gradient, i.e. D becomes D - dlse)
template <typename T>
__global__ void attention_backward_dot_kernel(float* D, const T* dy, const T* y, const float* dlse, int B, int Tn, int H, int hd) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;  // over (b, h, t)
    if (i >= (long)B * H * Tn) return;
    int t = (int)(i % Tn), h = (int)((i / Tn) % H), b = (int)(i / ((long)Tn * H));
    const T* a = dy + ((long)b * Tn + t) * H * hd + h * hd;
    const T* c = y + ((long)b * Tn + t) * H * hd + h * hd;
    float s = 0.0f;
    for (int k = 0; k < hd; k++) s += to_f32(a[k]) * to_f32(c[k]);
    D[i] = dlse ? s - dlse[i] : s;
}
// backward, step 2: dq, R query rows per warp like the forward; p = exp(score - lse) is
// recomputed, ds = p (dy.v - D) scale, dq = sum ds k (both key parts). Overwrites dq.
template <typename T, int DA, int DB>
__global__ void __launch_bounds__(ATT_WARPS * 32) attention_backward_dq_kernel(AttView<T*> dq, AttView<const T*> q, AttView<const T*> ka,
                                                                               AttView<const T*> kb, AttView<const T*> v, const T* dy,
                                                                               const float* lse, const float* D, int Tn, int H, int G,
                                                                               float scale, const float* slopes) {
    constexpr int NL = DA / 32, R = AttShape<DA>::RPW_BWD, KP = AttShape<DA>::KP, QR = ATT_WARPS * R;
    constexpr int BP = SharedPart<DB>::LD, NB = SharedPart<DB>::NL;
    SHARED_ARRAY(float, Ks, [ATT_TILE][KP]);
    SHARED_ARRAY(float, Vs, [ATT_TILE][KP]);
    SHARED_ARRAY(float, Qs, [QR][KP]);
    SHARED_ARRAY(float, dYs, [QR][KP]);
    SHARED_ARRAY(float, Kbs, [ATT_TILE][BP]);
    SHARED_ARRAY(float, Qbs, [QR][BP]);
    const int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * QR;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = h / (H / G), r0 = q0 + warp * R;
    const long bt0 = (long)b * Tn;
    const float slope = slopes ? slopes[h] : 0.0f;
    stage_tile<T, DA, KP, QR>(Qs, q.p + bt0 * q.row, q.row, h * q.head, q0, Tn);
    if constexpr (DB > 0) stage_tile<T, DB, BP, QR>(Qbs, q.p + bt0 * q.row, q.row, h * q.head + DA, q0, Tn);
    stage_tile<T, DA, KP, QR>(dYs, dy + bt0 * H * DA, (long)H * DA, h * DA, q0, Tn);
    float L[R], Dt[R], dqa[R][NL], dqb[R][NB];
    for (int r = 0; r < R; r++) {
        const int t = r0 + r;
        L[r] = t < Tn ? lse[((long)b * H + h) * Tn + t] : 0.0f;
        Dt[r] = t < Tn ? D[((long)b * H + h) * Tn + t] : 0.0f;
        for (int i = 0; i < NL; i++) dqa[r][i] = 0.0f;
        for (int i = 0; i < NB; i++) dqb[r][i] = 0.0f;
    }
    const int last = min(Tn - 1, q0 + QR - 1), warp_last = min(Tn - 1, r0 + R - 1);
    for (int j0 = 0; j0 <= last; j0 += ATT_TILE) {
        __syncthreads();
        stage_tile<T, DA, KP, ATT_TILE>(Ks, ka.p + bt0 * ka.row, ka.row, g * ka.head, j0, Tn);
        stage_tile<T, DA, KP, ATT_TILE>(Vs, v.p + bt0 * v.row, v.row, g * v.head, j0, Tn);
        if constexpr (DB > 0) stage_tile<T, DB, BP, ATT_TILE>(Kbs, kb.p + bt0 * kb.row, kb.row, 0, j0, Tn);
        __syncthreads();
        if (r0 < Tn && j0 <= warp_last) {
            const int t2 = j0 + lane;
            float d[R], dp[R], ds[R];
            dot_rows<DA, R, KP, KP>(d, Ks, lane, Qs, warp * R);
            if constexpr (DB > 0) dot_rows_add<DB, R, BP, BP>(d, Kbs, lane, Qbs, warp * R);
            dot_rows<DA, R, KP, KP>(dp, Vs, lane, dYs, warp * R);
            for (int r = 0; r < R; r++) {
                const int t = r0 + r;
                ds[r] = 0.0f;
                if (t < Tn && t2 <= t) {
                    float p = expf(d[r] * scale + (-slope * (float)(t - t2)) - L[r]);
                    ds[r] = p * (dp[r] - Dt[r]) * scale;
                }
            }
            accumulate_rows<NL, R, KP>(dqa, ds, Ks);
            if constexpr (DB > 0) accumulate_rows<NB, R, BP, DB>(dqb, ds, Kbs);
        }
    }
    for (int r = 0; r < R; r++) {
        const int t = r0 + r;
        if (t >= Tn) break;
        T* o = dq.p + (bt0 + t) * dq.row + h * dq.head;
        for (int i = 0; i < NL; i++) o[lane + 32 * i] = from_f32<T>(dqa[r][i]);
        if constexpr (DB > 0)
            for (int i = 0; i < NB; i++)
                if (lane + 32 * i < DB) o[DA + lane + 32 * i] = from_f32<T>(dqb[r][i]);
    }
}
// backward, step 3: dk and dv, R key rows per warp of KV head g; the block walks every query
// head of the group and every query t >= its first key in tiles of 32 (lane j: query j of the
// tile), so each dk, dv element is owned by one warp and summed in a fixed order. Overwrites dka
// and dv. The shared key part gets this group's share in dkb_part (B*Tn, G, DB), fp32; a second
// kernel sums the groups in order.
template <typename T, int DA, int DB>
__global__ void __launch_bounds__(ATT_WARPS * 32) attention_backward_dkv_kernel(AttView<T*> dka, AttView<T*> dv, float* dkb_part,
                                                                                AttView<const T*> q, AttView<const T*> ka,
                                                                                AttView<const T*> kb, AttView<const T*> v, const T* dy,
                                                                                const float* lse, const float* D, int Tn, int H, int G,
                                                                                float scale, const float* slopes) {
    constexpr int NL = DA / 32, R = AttShape<DA>::RPW_BWD, KP = AttShape<DA>::KP, KR = ATT_WARPS * R;
    constexpr int BP = SharedPart<DB>::LD, NB = SharedPart<DB>::NL;
    SHARED_ARRAY(float, Qs, [ATT_TILE][KP]);
    SHARED_ARRAY(float, dYs, [ATT_TILE][KP]);
    SHARED_ARRAY(float, Kw, [KR][KP]);
    SHARED_ARRAY(float, Vw, [KR][KP]);
    SHARED_ARRAY(float, Qbs, [ATT_TILE][BP]);
    SHARED_ARRAY(float, Kbw, [KR][BP]);
    SHARED_ARRAY(float, Ls, [ATT_TILE]);
    SHARED_ARRAY(float, Ds, [ATT_TILE]);
    const int b = blockIdx.z, g = blockIdx.y, k0 = blockIdx.x * KR;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r0 = k0 + warp * R, group = H / G;
    const long bt0 = (long)b * Tn;
    const T* dbase = dy + bt0 * H * DA;
    stage_tile<T, DA, KP, KR>(Kw, ka.p + bt0 * ka.row, ka.row, g * ka.head, k0, Tn);
    stage_tile<T, DA, KP, KR>(Vw, v.p + bt0 * v.row, v.row, g * v.head, k0, Tn);
    if constexpr (DB > 0) stage_tile<T, DB, BP, KR>(Kbw, kb.p + bt0 * kb.row, kb.row, 0, k0, Tn);
    float dk[R][NL], dvv[R][NL], dkb[R][NB];
    for (int r = 0; r < R; r++) {
        for (int i = 0; i < NL; i++) dk[r][i] = dvv[r][i] = 0.0f;
        for (int i = 0; i < NB; i++) dkb[r][i] = 0.0f;
    }
    for (int h = g * group; h < (g + 1) * group; h++) {
        const float slope = slopes ? slopes[h] : 0.0f;
        for (int j0 = k0 / ATT_TILE * ATT_TILE; j0 < Tn; j0 += ATT_TILE) {
            __syncthreads();
            stage_tile<T, DA, KP, ATT_TILE>(Qs, q.p + bt0 * q.row, q.row, h * q.head, j0, Tn);
            if constexpr (DB > 0) stage_tile<T, DB, BP, ATT_TILE>(Qbs, q.p + bt0 * q.row, q.row, h * q.head + DA, j0, Tn);
            stage_tile<T, DA, KP, ATT_TILE>(dYs, dbase, (long)H * DA, h * DA, j0, Tn);
            if (threadIdx.x < ATT_TILE) {
                int t = j0 + threadIdx.x;
                Ls[threadIdx.x] = t < Tn ? lse[((long)b * H + h) * Tn + t] : 0.0f;
                Ds[threadIdx.x] = t < Tn ? D[((long)b * H + h) * Tn + t] : 0.0f;
            }
            __syncthreads();
            if (r0 < Tn && j0 + ATT_TILE - 1 >= r0) {  // warp-uniform: some query of the tile sees the warp's first key
                const int t = j0 + lane;
                float d[R], dp[R], p[R], ds[R];
                dot_rows<DA, R, KP, KP>(d, Qs, lane, Kw, warp * R);
                if constexpr (DB > 0) dot_rows_add<DB, R, BP, BP>(d, Qbs, lane, Kbw, warp * R);
                dot_rows<DA, R, KP, KP>(dp, dYs, lane, Vw, warp * R);
                for (int r = 0; r < R; r++) {
                    const int t2 = r0 + r;
                    p[r] = ds[r] = 0.0f;
                    if (t2 < Tn && t >= t2 && t < Tn) {
                        p[r] = expf(d[r] * scale + (-slope * (float)(t - t2)) - Ls[lane]);
                        ds[r] = p[r] * (dp[r] - Ds[lane]) * scale;
                    }
                }
                accumulate_rows<NL, R, KP>(dvv, p, dYs);
                accumulate_rows<NL, R, KP>(dk, ds, Qs);
                if constexpr (DB > 0) accumulate_rows<NB, R, BP, DB>(dkb, ds, Qbs);
            }
        }
    }
    for (int r = 0; r < R; r++) {
        const int t2 = r0 + r;
        if (t2 >= Tn) break;
        T* ok = dka.p + (bt0 + t2) * dka.row + g * dka.head;
        T* ov = dv.p + (bt0 + t2) * dv.row + g * dv.head;
        for (int i = 0; i < NL; i++) {
            ok[lane + 32 * i] = from_f32<T>(dk[r][i]);
            ov[lane + 32 * i] = from_f32<T>(dvv[r][i]);
        }
        if constexpr (DB > 0)
            for (int i = 0; i < NB; i++)
                if (lane + 32 * i < DB) dkb_part[((bt0 + t2) * G + g) * DB + lane + 32 * i] = dkb[r][i];
    }
}
// dkb (B*Tn rows of DB, `row` apart) = the groups' shares summed in order; one thread per element
template <typename T>
__global__ void attention_shared_key_sum_kernel(T* dkb, long row, const float* part, int BT, int G, int DB) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long)BT * DB) return;
    long bt = i / DB;
    int k = (int)(i % DB);
    float s = 0.0f;
    for (int g = 0; g < G; g++) s += part[(bt * G + g) * DB + k];
    dkb[bt * row + k] = from_f32<T>(s);
}

// ---------------------------------------------------------------------------------------------
// RMSNorm (MLA's latent and query norms), one warp per row: out (N,C) = x / rms(x) * w, with x
// read from rows `in_row` apart (the latent is the first C columns of W_DKV x); rrms (N) saved
template <typename T>
__global__ void rmsnorm_forward_kernel(T* out, float* rrms, const T* inp, long in_row, const T* weight, int N, int C) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const T* x = inp + (long)row * in_row;
    float ss = 0.0f;
    for (int c = lane; c < C; c += 32) ss += to_f32(x[c]) * to_f32(x[c]);
    float r = rsqrtf(warp_sum(ss) / C + 1e-6f);
    T* o = out + (long)row * C;
    for (int c = lane; c < C; c += 32) o[c] = from_f32<T>(to_f32(x[c]) * r * to_f32(weight[c]));
    if (lane == 0) rrms[row] = r;
}
// dinp (rows in_row apart) = the input gradient, overwritten; one warp per row
template <typename T>
__global__ void rmsnorm_backward_dinp_kernel(T* dinp, const T* dout, const T* inp, long in_row, const T* weight, const float* rrms, int N,
                                             int C) {
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (row >= N) return;
    const T* x = inp + (long)row * in_row;
    const T* d = dout + (long)row * C;
    float r = rrms[row], dot = 0.0f;
    for (int c = lane; c < C; c += 32) dot += to_f32(d[c]) * to_f32(weight[c]) * to_f32(x[c]);
    float k = warp_sum(dot) * r * r * r / C;
    T* di = dinp + (long)row * in_row;
    for (int c = lane; c < C; c += 32) di[c] = from_f32<T>(to_f32(d[c]) * to_f32(weight[c]) * r - to_f32(x[c]) * k);
}

// ---------------------------------------------------------------------------------------------
// Decoding with the KV cache (the twin of AttnCore::decode_rows, attention/core.h): n query rows,
// row i of sequence seq[i] at position pos[i], against the pos[i] + 1 tokens its sequence holds
// (slot j holds position j: the device path has no presses). Split-K ("flash-decoding"): block
// (i, h, split) scores keys [split * chunk, min(nk, (split + 1) * chunk)) of KV head h / group and
// writes its partial softmax (max, sum, weighted values); decode_combine_kernel merges the splits
// in order. One warp per block: 32-key tiles staged in shared memory (rows padded to an odd width,
// lane j scores key j), the probabilities broadcast by shuffles to the lanes owning the output
// dims. The key is da per-head dims then db shared dims (MLA: the latent, then the rope key); the
// value is its own tensor, or (V_IN_K: absorbed MLA) the key's first dv dims.
template <typename P>
struct CacheView {  // element c of head g, slot j of sequence s: p[s*seq + j*tok + g*head + c]
    P p;
    long seq, tok, head;
};
template <typename T, int KMAX, int VMAX, bool V_IN_K>
__global__ void __launch_bounds__(32) decode_attention_kernel(float* part, float* part_ml, const T* q, long q_row, long q_head,
                                                              CacheView<const T*> ka, CacheView<const T*> kb, CacheView<const T*> v,
                                                              const int* seq, const int* pos, int H, int group, int da, int db, int dv,
                                                              float scale, const float* slopes, int chunk, int splits) {
    constexpr int NV = VMAX / 32;
    SHARED_ARRAY(float, qs, [KMAX]);
    SHARED_ARRAY(float, Ks, [ATT_TILE][KMAX + 1]);
    SHARED_ARRAY(float, Vs, [ATT_TILE][V_IN_K ? 1 : VMAX + 1]);
    const int i = blockIdx.x, h = blockIdx.y, sp = blockIdx.z, lane = threadIdx.x, g = h / group, dk = da + db;
    const long s = seq[i];
    const int t_q = pos[i], j0 = sp * chunk, j1 = min(t_q + 1, j0 + chunk);
    const float slope = slopes ? slopes[h] : 0.0f;
    for (int c = lane; c < dk; c += 32) qs[c] = to_f32(q[(long)i * q_row + (long)h * q_head + c]);
    float m = -INFINITY, l = 0.0f, acc[NV];
    for (int k = 0; k < NV; k++) acc[k] = 0.0f;
    for (int t0 = j0; t0 < j1; t0 += ATT_TILE) {
        __syncwarp();  // qs written / the previous tile consumed
        for (int idx = lane; idx < ATT_TILE * dk; idx += 32) {
            int r = idx / dk, c = idx % dk, t = t0 + r;
            float x = 0.0f;
            if (t < j1) x = c < da ? to_f32(ka.p[s * ka.seq + t * ka.tok + g * ka.head + c]) : to_f32(kb.p[s * kb.seq + t * kb.tok + (c - da)]);
            Ks[r][c] = x;
        }
        if constexpr (!V_IN_K)
            for (int idx = lane; idx < ATT_TILE * dv; idx += 32) {
                int r = idx / dv, c = idx % dv, t = t0 + r;
                Vs[r][c] = t < j1 ? to_f32(v.p[s * v.seq + t * v.tok + g * v.head + c]) : 0.0f;
            }
        __syncwarp();
        const int t = t0 + lane;
        float sc = -INFINITY;
        if (t < j1) {
            float d = 0.0f;
            for (int c = 0; c < dk; c++) d += Ks[lane][c] * qs[c];
            sc = d * scale + (-slope * (float)(t_q - t));
        }
        const float mn = fmaxf(m, warp_max(sc));
        const float corr = mn == -INFINITY ? 1.0f : expf(m - mn);
        const float p = t < j1 ? expf(sc - mn) : 0.0f;
        l = l * corr + warp_sum(p);
        for (int k = 0; k < NV; k++) acc[k] *= corr;
        for (int jj = 0; jj < ATT_TILE; jj++) {
            const float pj = __shfl_sync(FULL_MASK, p, jj);
            for (int k = 0; k < NV; k++) {
                const int c = lane + 32 * k;
                if (c < dv) acc[k] += pj * (V_IN_K ? Ks[jj][c] : Vs[jj][c]);
            }
        }
        m = mn;
    }
    const long o = ((long)i * H + h) * splits + sp;
    for (int k = 0; k < NV; k++)
        if (lane + 32 * k < dv) part[o * dv + lane + 32 * k] = acc[k];
    if (lane == 0) { part_ml[2 * o] = m; part_ml[2 * o + 1] = l; }
}
// out (n rows, out_row apart; head h at h * dv) = the splits' partial softmaxes merged in order;
// lse (H, n) when given (fmka mixes by it). One warp per (row, head).
template <typename T>
__global__ void decode_combine_kernel(T* out, long out_row, float* lse, const float* part, const float* part_ml, int n, int H, int dv, int splits) {
    long w = ((long)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    if (w >= (long)n * H) return;
    const int i = (int)(w / H), h = (int)(w % H);
    const float* ml = part_ml + w * splits * 2;
    float M = -INFINITY;
    for (int sp = 0; sp < splits; sp++) M = fmaxf(M, ml[2 * sp]);
    float L = 0.0f;
    for (int sp = 0; sp < splits; sp++)
        if (ml[2 * sp + 1] > 0.0f) L += ml[2 * sp + 1] * expf(ml[2 * sp] - M);
    for (int c = lane; c < dv; c += 32) {
        float a = 0.0f;
        for (int sp = 0; sp < splits; sp++)
            if (ml[2 * sp + 1] > 0.0f) a += part[(w * splits + sp) * dv + c] * expf(ml[2 * sp] - M);
        out[(long)i * out_row + (long)h * dv + c] = from_f32<T>(a / L);
    }
    if (lse && lane == 0) lse[(long)h * n + i] = M + logf(L);
}
// the cache append: width values of row i of src (rows src_row apart) into slot pos[i] of
// sequence seq[i] (dst: seq_stride, tok_stride apart), and in the same launch width2 values of
// row i of src2 into dst2 (the same strides: a key and its value, or a latent and its rope key)
template <typename T>
__global__ void cache_append_kernel(T* dst, long seq_stride, long tok_stride, const T* src, long src_row, int width, const int* seq,
                                    const int* pos, int n, T* dst2, const T* src2, long src2_row, int width2) {
    const int w = width + width2;
    long k = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= (long)n * w) return;
    int i = (int)(k / w), c = (int)(k % w);
    const long slot = (long)seq[i] * seq_stride + (long)pos[i] * tok_stride;
    if (c < width) dst[slot + c] = src[(long)i * src_row + c];
    else dst2[slot + c - width] = src2[(long)i * src2_row + c - width];
}
// MKA's level 2 while decoding: the per-sequence running sum state (S, W) gets row i's W columns
// (rows in order, so a sequence's rows add up in position order), dst = the mean over pos + 1
// tokens. One thread per column.
template <typename T>
__global__ void decode_running_mean_kernel(T* dst, long dst_row, float* state, const T* src, long src_row, const int* seq, const int* pos,
                                           int n, int W) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= W) return;
    for (int i = 0; i < n; i++) {
        float* st = state + (long)seq[i] * W + c;
        *st += to_f32(src[(long)i * src_row + c]);
        dst[(long)i * dst_row + c] = from_f32<T>(*st / (pos[i] + 1));
    }
}
// rows[k] of src (rows `row` apart) -> dst row k (the decode rows whose logits are wanted)
template <typename T>
__global__ void gather_rows_kernel(T* dst, const T* src, const int* rows, int n_out, int C) {
    long k = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= (long)n_out * C) return;
    int r = (int)(k / C), c = (int)(k % C);
    dst[k] = src[(long)rows[r] * C + c];
}

// each row's most likely token: the argmax of its first V columns (rows `row` apart), as
// llmc/sample.h's argmax_token picks it: the lowest id among the largest values, a NaN never
// chosen, except in column 0, which argmax_token starts from and nothing compares greater than.
// One block per row; each thread walks its columns in ascending order, then the (value, id)
// pairs are reduced: the larger value, or on a tie the lower id; NO_ID marks no candidate yet.
// Greedy decoding on the device: the ids come back to the host, not the rows of logits.
template <typename T>
__global__ void argmax_rows_kernel(int* out, const T* x, int V, long row) {
    const int NO_ID = 0x7fffffff;
    const T* r = x + (long)blockIdx.x * row;
    float best = 0.0f;
    int at = NO_ID;
    for (int v = threadIdx.x; v < V; v += blockDim.x) {
        const float f = to_f32(r[v]);
        if (f == f && (at == NO_ID || f > best)) best = f, at = v;
    }
    auto merge = [&](float b2, int a2) {
        if (a2 != NO_ID && (at == NO_ID || b2 > best || (b2 == best && a2 < at))) best = b2, at = a2;
    };
    for (int o = 16; o > 0; o >>= 1) {
        const float b2 = __shfl_xor_sync(FULL_MASK, best, o);
        const int a2 = __shfl_xor_sync(FULL_MASK, at, o);
        merge(b2, a2);
    }
    SHARED_ARRAY(float, sb, [32]);
    SHARED_ARRAY(int, sa, [32]);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
    if (lane == 0) sb[warp] = best, sa[warp] = at;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < warps; w++) merge(sb[w], sa[w]);
        const float first = to_f32(r[0]);
        out[blockIdx.x] = first != first || at == NO_ID ? 0 : at;
    }
}

// ---------------------------------------------------------------------------------------------
// MKA and fmka (attention/mka.h): the pieces around the attention core. N = B*Tn token rows,
// D = H*hd; qkv rows are (N,3D) with q, k, v parts; M memory slots (<= 32), their projections
// mkv (M,3D).
// dst[:, 0:W] = src[:, 0:W] (rows dst_row / src_row apart); add: dst += src
template <typename T>
__global__ void copy_cols_kernel(T* dst, long dst_row, const T* src, long src_row, int N, int W, int add) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long)N * W) return;
    long n = i / W;
    int c = (int)(i % W);
    float x = to_f32(src[n * src_row + c]);
    if (add) x += to_f32(dst[n * dst_row + c]);
    dst[n * dst_row + c] = from_f32<T>(x);
}
// MLA decoding's absorbed query, every head in one launch (it was 2H calls: a GEMM and a copy per
// head, and at decode sizes each call costs a launch, not its work): row r, head h of qa (rows
// H*(L+dR) wide) = [W_UK_h^T q_nope_h (L) | q_rope_h (dR)], where W_UK_h is rows h*2hd .. h*2hd+hd
// of up (each L wide) and q_h = [q_nope_h (hd) | q_rope_h (dR)] sits at h*(hd+dR) of qf's row r
// (rows qdim apart). One block per (head, row); thread j sums its output over hd in fp32.
template <typename T>
__global__ void absorb_query_kernel(T* qa, const T* up, const T* qf, long qdim, int H, int hd, int dR, int L) {
    const int h = blockIdx.x, r = blockIdx.y, A = L + dR;
    const T* q = qf + (long)r * qdim + (long)h * (hd + dR);
    const T* w = up + (long)h * 2 * hd * L;
    T* out = qa + ((long)r * H + h) * A;
    for (int j = threadIdx.x; j < A; j += blockDim.x) {
        float acc;
        if (j < L) {
            acc = 0.0f;
            for (int i = 0; i < hd; i++) acc += to_f32(w[(long)i * L + j]) * to_f32(q[i]);
        } else {
            acc = to_f32(q[hd + j - L]);
        }
        out[j] = from_f32<T>(acc);
    }
}
// level 2: dst (rows dst_row apart) = the causal running mean over t of src's W columns, summed
// in order as the CPU does; one thread per (b, column)
template <typename T>
__global__ void running_mean_kernel(T* dst, long dst_row, const T* src, long src_row, int B, int Tn, int W) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long)B * W) return;
    int b = (int)(i / W), c = (int)(i % W);
    float acc = 0.0f;
    for (int t = 0; t < Tn; t++) {
        long r = (long)b * Tn + t;
        acc += to_f32(src[r * src_row + c]);
        dst[r * dst_row + c] = from_f32<T>(acc / (t + 1));
    }
}
// its backward: dst += the reverse cumulative sum of src / (t + 1)
template <typename T>
__global__ void running_mean_backward_kernel(T* dst, long dst_row, const T* src, long src_row, int B, int Tn, int W) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long)B * W) return;
    int b = (int)(i / W), c = (int)(i % W);
    float acc = 0.0f;
    for (int t = Tn - 1; t >= 0; t--) {
        long r = (long)b * Tn + t;
        acc += to_f32(src[r * src_row + c]) / (t + 1);
        dst[r * dst_row + c] = from_f32<T>(to_f32(dst[r * dst_row + c]) + acc);
    }
}
// fmka's session score: lse2 (N,H) = scale * q_h . k_s,h, q unrotated (qkv's q part), k_s the
// running mean's key part (kv2 (N,2D)); one warp per (n, h)
template <typename T>
__global__ void session_score_kernel(float* lse2, const T* qkv, const T* kv2, int N, int H, int hd, float scale) {
    long w = ((long)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    if (w >= (long)N * H) return;
    long n = w / H;
    int h = (int)(w % H), D = H * hd;
    float s = 0.0f;
    for (int i = lane; i < hd; i += 32) s += to_f32(qkv[n * 3 * D + h * hd + i]) * to_f32(kv2[n * 2 * D + h * hd + i]);
    s = warp_sum(s);
    if (lane == 0) lse2[w] = s * scale;
}
// level 3: query (n, h) (unrotated) over the M slot keys: p (N,H,M), y3 (N,D), and the scores'
// log-sum-exp (N,H) when lse3 is given (fmka); one warp per (n, h), lane j scores slot j
template <typename T>
__global__ void slots_forward_kernel(float* p3, T* y3, float* lse3, const T* qkv, const T* mkv, int N, int H, int hd, int M, float scale) {
    long w = ((long)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    if (w >= (long)N * H) return;
    long n = w / H;
    int h = (int)(w % H), D = H * hd;
    const T* q = qkv + n * 3 * D + h * hd;
    float s = -INFINITY;
    if (lane < M) {
        const T* k = mkv + (long)lane * 3 * D + D + h * hd;
        s = 0.0f;
        for (int i = 0; i < hd; i++) s += to_f32(q[i]) * to_f32(k[i]);
        s *= scale;
    }
    float mx = warp_max(s);
    float e = lane < M ? expf(s - mx) : 0.0f;
    float sum = warp_sum(e);
    float pj = e / sum;
    if (lane < M) p3[w * M + lane] = pj;
    if (lse3 && lane == 0) lse3[w] = mx + logf(sum);
    for (int i = lane; i < hd; i += 32) {
        float acc = 0.0f;
        for (int j = 0; j < M; j++) acc += __shfl_sync(FULL_MASK, pj, j) * to_f32(mkv[(long)j * 3 * D + 2 * D + h * hd + i]);
        y3[n * D + h * hd + i] = from_f32<T>(acc);
    }
}
// the router's mixing. mka: weights rw (N,3) = softmax(z); fmka: per head w (N,H,3) =
// softmax(z + (lse1, lse2, lse3)). y = sum_l w_l y_l. One thread per (n, h).
template <typename T>
__global__ void mka_mix_kernel(T* y, float* wts, const T* z, const T* y1, const T* y2, const T* y3, const float* lse1, const float* lse2,
                               const float* lse3, int B, int Tn, int H, int hd, int fast) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long)B * Tn * H) return;
    long n = i / H;
    int h = (int)(i % H), b = (int)(n / Tn), t = (int)(n % Tn);
    float a[3] = {to_f32(z[n * 3]), to_f32(z[n * 3 + 1]), to_f32(z[n * 3 + 2])};
    if (fast) {
        a[0] += lse1[((long)b * H + h) * Tn + t];
        a[1] += lse2[i];
        a[2] += lse3[i];
    }
    float mx = fmaxf(a[0], fmaxf(a[1], a[2]));
    float e0 = expf(a[0] - mx), e1 = expf(a[1] - mx), e2 = expf(a[2] - mx), inv = 1.0f / (e0 + e1 + e2);
    float w0 = e0 * inv, w1 = e1 * inv, w2 = e2 * inv;
    float* wo = fast ? wts + i * 3 : wts + n * 3;
    if (fast || h == 0) { wo[0] = w0; wo[1] = w1; wo[2] = w2; }
    long o = n * H * hd + h * hd;
    for (int k = 0; k < hd; k++) y[o + k] = from_f32<T>(w0 * to_f32(y1[o + k]) + w1 * to_f32(y2[o + k]) + w2 * to_f32(y3[o + k]));
}
// its backward, one thread per row n: the router logits' gradient dz (N,3); fmka also each
// level's lse gradient (dlse1 (B,H,Tn), dlse2, dlse3 (N,H)): da = w (d - w.d) per head
template <typename T>
__global__ void mka_mix_backward_kernel(float* dz, float* dlse1, float* dlse2, float* dlse3, const float* wts, const T* dy, const T* y1,
                                        const T* y2, const T* y3, int B, int Tn, int H, int hd, int fast) {
    long n = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (n >= (long)B * Tn) return;
    int b = (int)(n / Tn), t = (int)(n % Tn);
    float acc[3] = {0, 0, 0}, d[3] = {0, 0, 0};
    for (int h = 0; h < H; h++) {
        float e[3] = {0, 0, 0};
        long o = n * H * hd + h * hd;
        for (int k = 0; k < hd; k++) {
            float g = to_f32(dy[o + k]);
            e[0] += g * to_f32(y1[o + k]); e[1] += g * to_f32(y2[o + k]); e[2] += g * to_f32(y3[o + k]);
        }
        if (fast) {
            const float* w = wts + (n * H + h) * 3;
            float dot = w[0] * e[0] + w[1] * e[1] + w[2] * e[2];
            float da[3];
            for (int l = 0; l < 3; l++) { da[l] = w[l] * (e[l] - dot); acc[l] += da[l]; }
            dlse1[((long)b * H + h) * Tn + t] = da[0];
            dlse2[n * H + h] = da[1];
            dlse3[n * H + h] = da[2];
        } else {
            for (int l = 0; l < 3; l++) d[l] += e[l];
        }
    }
    if (!fast) {
        const float* w = wts + n * 3;
        float dot = w[0] * d[0] + w[1] * d[1] + w[2] * d[2];
        for (int l = 0; l < 3; l++) acc[l] = w[l] * (d[l] - dot);
    }
    for (int l = 0; l < 3; l++) dz[n * 3 + l] = acc[l];
}
// dyl (N,D) = dy times level l's weight (mka: the row's, fmka: the head's)
template <typename T>
__global__ void mka_scaled_dy_kernel(T* dyl, const T* dy, const float* wts, int N, int H, int hd, int l, int fast) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    long D = (long)H * hd;
    if (i >= (long)N * D) return;
    long n = i / D;
    int h = (int)((i % D) / hd);
    float w = fast ? wts[(n * H + h) * 3 + l] : wts[n * 3 + l];
    dyl[i] = from_f32<T>(w * to_f32(dy[i]));
}
// fmka's session level backward, one thread per (n, c < D): the session key's gradient dkv2[:,
// 0:D] = g q, the unrotated query's dq += g k_s (g = dlse2 scale, a single item's score), and
// the session value's dkv2[:, D:2D] = dyl
template <typename T>
__global__ void session_backward_kernel(T* dkv2, T* dqkv, const T* qkv, const T* kv2, const T* dyl, const float* dlse2, int N, int H, int hd,
                                        float scale) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    long D = (long)H * hd;
    if (i >= (long)N * D) return;
    long n = i / D;
    int c = (int)(i % D), h = c / hd;
    float g = dlse2[n * H + h] * scale;
    dkv2[n * 2 * D + c] = from_f32<T>(g * to_f32(qkv[n * 3 * D + c]));
    dqkv[n * 3 * D + c] = from_f32<T>(to_f32(dqkv[n * 3 * D + c]) + g * to_f32(kv2[n * 2 * D + c]));
    dkv2[n * 2 * D + D + c] = dyl[n * D + c];
}
// level 3 backward, one warp per (n, h): dsc (N,H,M) = p (dp - p.dp + dlse3) scale with dp_j =
// dyl . v_j; the unrotated query's dq += sum_j dsc_j k_j
template <typename T>
__global__ void slots_backward_dq_kernel(float* dsc3, T* dqkv, const float* p3, const T* dyl, const T* mkv, const float* dlse3, int N, int H,
                                         int hd, int M, float scale) {
    long w = ((long)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    if (w >= (long)N * H) return;
    long n = w / H;
    int h = (int)(w % H), D = H * hd;
    float pj = 0.0f, dp = 0.0f;
    if (lane < M) {
        pj = p3[w * M + lane];
        const T* v = mkv + (long)lane * 3 * D + 2 * D + h * hd;
        for (int i = 0; i < hd; i++) dp += to_f32(dyl[n * D + h * hd + i]) * to_f32(v[i]);
    }
    float dot = warp_sum(pj * dp);
    float g3 = dlse3 ? dlse3[w] : 0.0f;
    float ds = lane < M ? pj * (dp - dot + g3) * scale : 0.0f;
    if (lane < M) dsc3[w * M + lane] = ds;
    for (int i = lane; i < hd; i += 32) {
        float acc = 0.0f;
        for (int j = 0; j < M; j++) acc += __shfl_sync(FULL_MASK, ds, j) * to_f32(mkv[(long)j * 3 * D + D + h * hd + i]);
        T* dq = dqkv + n * 3 * D + h * hd + i;
        *dq = from_f32<T>(to_f32(*dq) + acc);
    }
}
// the slots' projected key and value gradients dmkv (M,3D) [K and V parts; Q part 0]: one thread
// per (j, c < D) summing over the rows in order
template <typename T>
__global__ void slots_backward_dkv_kernel(T* dmkv, const float* dsc3, const float* p3, const T* qkv, const T* dyl, int N, int H, int hd, int M) {
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    long D = (long)H * hd;
    if (i >= (long)M * D) return;
    int j = (int)(i / D), c = (int)(i % D), h = c / hd;
    float dk = 0.0f, dv = 0.0f;
    for (long n = 0; n < N; n++) {
        long k = (n * H + h) * M + j;
        dk += dsc3[k] * to_f32(qkv[n * 3 * D + c]);
        dv += p3[k] * to_f32(dyl[n * D + c]);
    }
    dmkv[(long)j * 3 * D + c] = from_f32<T>(0.0f);
    dmkv[(long)j * 3 * D + D + c] = from_f32<T>(dk);
    dmkv[(long)j * 3 * D + 2 * D + c] = from_f32<T>(dv);
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
// theta, adam_scale, reset: SPAM's controls (llmc/model.h: OptStep), the CPU's arithmetic.
template <typename T>
__global__ void adamw_kernel(float* master, T* params, const float* grads, float* m, float* v, const long* offsets, const long* sizes,
                             const int* decay, const float* norm, float clip, float grad_scale, float lr, float beta1, float beta2,
                             float eps, float weight_decay, float bc1, float bc2, float theta, float adam_scale, int reset) {
    int s = blockIdx.y;
    long off = offsets[s], n = sizes[s];
    float wd = decay[s] ? weight_decay : 0.0f;
    float nrm = norm[0];
    float scale = grad_scale * ((clip > 0.0f && nrm > clip) ? clip / nrm : 1.0f);
    for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
        long j = off + i;
        float gi = grads[j] * scale;
        const float mp = reset ? 0.0f : m[j], vp = reset ? 0.0f : v[j];
        if (theta > 0.0f && gi * gi > theta * vp) gi = copysignf(sqrtf(theta * vp), gi);  // SPAM's spike clip
        float mm = beta1 * mp + (1.0f - beta1) * gi;
        float vv = beta2 * vp + (1.0f - beta2) * gi * gi;
        m[j] = mm;
        v[j] = vv;
        float p = master[j];
        float mhat = mm / bc1, vhat = vv / bc2;
        p -= lr * (adam_scale * (mhat / (sqrtf(vhat) + eps)) + wd * p);
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
