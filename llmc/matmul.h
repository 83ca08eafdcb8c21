// matmul.h: the CPU matrix multiplies every linear layer uses (fp32, OpenMP, vectorised).
//
// One register-blocked kernel, gemm(): C(M,N) (+)= A(M,K) . B(K,N), with A read through
// arbitrary row/column strides (so transposed operands need no copy) and B row-major.
// Each C element is summed over k in ascending order by exactly one thread, so results do not
// depend on the thread count (bitwise reproducible) and a row of C depends only on the same
// row of A (causal-leak tests can demand bitwise equality).
// Linear weights use PyTorch's (out, in) layout, W is (N,K): forward needs W^T, which is
// transposed once per call into a reused scratch buffer.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <sys/mman.h>
#include <tuple>
#include <vector>
#include "profile.h"
#include "utils.h"
#include <cctype>
#include <string>
#ifdef KVGPT_OPENBLAS
#include <cblas.h>
extern "C" void openblas_set_num_threads(int);
extern "C" char* openblas_get_corename(void);
#endif

// OpenBLAS (DYNAMIC_ARCH builds, as Debian's) picks its kernels by CPU model at load time; a
// model it does not know gets its oldest x86-64 kernels: 0.3.21 runs an Emerald Rapids Xeon (model
// 207) as a "Prescott", SSE3 only, at 0.24-0.55x of the built-in AVX kernel (dev/bench_cpu). So a
// CPU with AVX2 whose OpenBLAS core is not one of its AVX2 / AVX-512 cores uses the built-in kernel
// by default; OPENBLAS_CORETYPE=SkylakeX (or Haswell) names the right one, --matmul blas forces it.
static std::string blas_core_name() {
#ifdef KVGPT_OPENBLAS
    const char* c = openblas_get_corename();
    return c ? c : "unknown";
#else
    return "";
#endif
}
// does OpenBLAS core `core` use what a CPU with (or without) AVX2 has?
static bool blas_core_fits(std::string core, bool cpu_has_avx2) {
    if (!cpu_has_avx2) return true;  // nothing better to lose
    for (auto& ch : core) ch = (char)tolower((unsigned char)ch);
    for (const char* ok : {"haswell", "zen", "skylakex", "cooperlake", "sapphirerapids"})
        if (core == ok) return true;
    return false;
}
static bool blas_core_fits_cpu() {
#if defined(KVGPT_OPENBLAS) && defined(__x86_64__)
    return blas_core_fits(blas_core_name(), __builtin_cpu_supports("avx2"));
#else
    return true;
#endif
}

// Which implementation the linear layers use: OpenBLAS sgemm when the build found it (the
// Makefile probes for it) and its kernels suit the CPU, else the built-in kernel below. The choice
// is fixed for the whole run (never timed on the fly) so results stay bitwise reproducible;
// dev/bench_cpu compares the two.
enum MatmulImpl { MATMUL_BUILTIN, MATMUL_BLAS };
static int& matmul_impl() {
#ifdef KVGPT_OPENBLAS
    static int impl = blas_core_fits_cpu() ? MATMUL_BLAS : MATMUL_BUILTIN;
#else
    static int impl = MATMUL_BUILTIN;
#endif
    return impl;
}
static bool matmul_have_blas() {
#ifdef KVGPT_OPENBLAS
    return true;
#else
    return false;
#endif
}
#ifdef KVGPT_OPENBLAS
#include <omp.h>
// OpenBLAS keeps a thread pool of its own, which fights our OpenMP threads for the cores
// between calls (both spin-wait). So BLAS runs single-threaded, and our OpenMP threads each call
// it on their own slice of the output columns: one pool, and rows stay independent (a row of
// the output depends only on the same row of the input).
static void blas_single_thread_once() {
    static bool done = false;
    if (!done) { openblas_set_num_threads(1); done = true; }
}
// [lo, hi) of n columns for thread tid of nt, in multiples of 16 floats
static inline void column_slice(int n, int tid, int nt, int* lo, int* hi) {
    int chunks = (n + 15) / 16;
    *lo = std::min(n, chunks * tid / nt * 16);
    *hi = std::min(n, chunks * (tid + 1) / nt * 16);
}
#endif
// --matmul auto | builtin | blas (train_gpt and dev/bench_cpu): a wrong value or blas without
// OpenBLAS stops with a HINT
static void matmul_select(const std::string& mm, const char* rebuild_hint) {
    if (mm == "builtin") matmul_impl() = MATMUL_BUILTIN;
    else if (mm == "blas") {
        if (!matmul_have_blas()) fail_hint(rebuild_hint, "--matmul blas: this build has no OpenBLAS");
        matmul_impl() = MATMUL_BLAS;
    } else if (mm != "auto") fail_hint("use --matmul auto, blas or builtin", "unknown --matmul '%s'", mm.c_str());
}
static const char* matmul_desc() {
    static std::string d;
    if (matmul_impl() == MATMUL_BLAS) d = "OpenBLAS sgemm (every linear layer), its " + blas_core_name() + " kernels";
    else {
        d = "built-in 4x64 AVX tiles";
        if (matmul_have_blas() && !blas_core_fits_cpu()) d += " (OpenBLAS's are " + blas_core_name() + " here)";
        else d += " (llmc/matmul.h)";
    }
    return d.c_str();
}

typedef float v16f __attribute__((vector_size(64), aligned(4)));  // unaligned-safe 16-float vector

// dot product of n floats, 16 lanes then a fixed-order horizontal sum (deterministic, vectorised)
static inline float dotf(const float* a, const float* b, int n) {
    v16f acc = {};
    int i = 0;
    for (; i + 16 <= n; i += 16) acc += *(const v16f*)(a + i) * *(const v16f*)(b + i);
    float s = 0.0f;
    for (int j = 0; j < 16; j++) s += acc[j];
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

// 4 rows x (16 * NV) columns of C, kept in registers across the whole k loop
template <int NV>
static inline void gemm_tile_4xN(int K, const float* A, long rsa, long csa, const float* B, long ldb, float* C, long ldc,
                                 bool acc) {
    v16f c[4][NV];
    for (int r = 0; r < 4; r++)
        for (int j = 0; j < NV; j++) {
            if (acc) c[r][j] = *(const v16f*)(C + r * ldc + 16 * j);
            else c[r][j] = (v16f){};
        }
    for (int k = 0; k < K; k++) {
        const float* b = B + (long)k * ldb;
        v16f bv[NV];
        for (int j = 0; j < NV; j++) bv[j] = *(const v16f*)(b + 16 * j);
        for (int r = 0; r < 4; r++) {
            float a = A[r * rsa + (long)k * csa];
            for (int j = 0; j < NV; j++) c[r][j] += a * bv[j];
        }
    }
    for (int r = 0; r < 4; r++)
        for (int j = 0; j < NV; j++) *(v16f*)(C + r * ldc + 16 * j) = c[r][j];
}

// edge tiles (fewer than 4 rows, or the last < 16 columns): same per-element k order, scalar
static inline void gemm_tile_edge(int mr, int nr, int K, const float* A, long rsa, long csa, const float* B,
                                  long ldb, float* C, long ldc, bool acc) {
    for (int r = 0; r < mr; r++)
        for (int n = 0; n < nr; n++) {
            float s = acc ? C[r * ldc + n] : 0.0f;
            for (int k = 0; k < K; k++) s += A[r * rsa + (long)k * csa] * B[(long)k * ldb + n];
            C[r * ldc + n] = s;
        }
}

// C(M,N) = [C +] A . B, where A(m,k) = A[m*rsa + k*csa] and B(k,n) = B[k*ldb + n]
static void gemm(int M, int N, int K, const float* A, long rsa, long csa, const float* B, long ldb, float* C,
                 long ldc, bool acc) {
    const int n_tiles = (N + 63) / 64, m_tiles = (M + 3) / 4;
    // K in blocks of 256 so a 256 x 64 panel of B (64 KB) stays in L2 while all rows sweep past
    // it; the partial sums go through C, so every element still adds its k terms in order
    const int KB = 256;
    for (int k0 = 0; k0 < K; k0 += KB) {
        const int kb = std::min(KB, K - k0);
        const float* Ak = A + (long)k0 * csa;
        const float* Bk = B + (long)k0 * ldb;
        const bool acc_k = acc || k0 > 0;
        // N tiles outermost: each thread keeps its panels of B hot while it sweeps the rows
        #pragma omp parallel for collapse(2) schedule(static)
        for (int nt = 0; nt < n_tiles; nt++)
            for (int mt = 0; mt < m_tiles; mt++) {
                int m0 = mt * 4, n0 = nt * 64;
                int mr = std::min(4, M - m0), nr = std::min(64, N - n0);
                const float* a = Ak + m0 * rsa;
                float* c = C + (long)m0 * ldc + n0;
                if (mr < 4) { gemm_tile_edge(mr, nr, kb, a, rsa, csa, Bk + n0, ldb, c, ldc, acc_k); continue; }
                switch (nr / 16) {  // whole 16-column vectors in registers, then any remainder scalar
                    case 4: gemm_tile_4xN<4>(kb, a, rsa, csa, Bk + n0, ldb, c, ldc, acc_k); break;
                    case 3: gemm_tile_4xN<3>(kb, a, rsa, csa, Bk + n0, ldb, c, ldc, acc_k); break;
                    case 2: gemm_tile_4xN<2>(kb, a, rsa, csa, Bk + n0, ldb, c, ldc, acc_k); break;
                    case 1: gemm_tile_4xN<1>(kb, a, rsa, csa, Bk + n0, ldb, c, ldc, acc_k); break;
                    default: break;
                }
                int done = nr / 16 * 16;
                if (done < nr) gemm_tile_edge(4, nr - done, kb, a, rsa, csa, Bk + n0 + done, ldb, c + done, ldc, acc_k);
            }
    }
}

// (rows, cols) row-major -> (cols, rows) row-major, blocked for the cache
static void transpose(const float* src, float* dst, int rows, int cols) {
    const int TB = 32;
    #pragma omp parallel for collapse(2) schedule(static)
    for (int i0 = 0; i0 < rows; i0 += TB)
        for (int j0 = 0; j0 < cols; j0 += TB)
            for (int i = i0; i < std::min(rows, i0 + TB); i++)
                for (int j = j0; j < std::min(cols, j0 + TB); j++) dst[(long)j * rows + i] = src[(long)i * cols + j];
}

// scratch buffers for the transposes: each grows to its largest use once, then is reused (no
// per-step allocation)
static float* matmul_scratch(int which, size_t n) {
    static std::vector<float> s[2];
    if (s[which].size() < n) s[which].resize(n);
    return s[which].data();
}

// out is (M,N), inp is (M,K), weight is (N,K), bias is (N) or null
// a 16-lane sum in a fixed tree order (4 dependent adds, not 15)
static inline float hsum16(v16f v) {
    typedef float v8f __attribute__((vector_size(32)));
    typedef float v4f __attribute__((vector_size(16)));
    v8f a = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) + __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
    v4f b = __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
    return (b[0] + b[2]) + (b[1] + b[3]);
}

// out (M,N) = inp (M,K) . W(N,K)^T (+ bias) for a few rows M (decoding): every weight row is read
// once from memory and used for all the input rows held in cache, so the call runs at memory
// bandwidth instead of paying a GEMM's packing. One block of 4 weight rows x all M input rows
// keeps 4 x M independent accumulator chains. Each output is one dot product in a fixed order,
// the same whatever M (<= FEW_ROWS_MAX) or the thread count.
//
// The weight rows a few blocks ahead are prefetched in software: at M = 8 the FMAs per weight
// byte slow the loop enough that the hardware prefetcher stops running ahead, and the DRAM reads
// and the arithmetic added up instead of overlapping (measured on the 2-core AVX-512 Xeon, each
// call on a weight copy evicted from L3: the 50304 x 512 unembedding at M = 8 took 7.8 ms
// (13 GB/s) without, 4.9 ms (21 GB/s) with; M = 1 4.3 -> 3.5 ms). ~32 KB ahead (16 rows at
// K = 512, 4 at K = 2048) measured best; a non-temporal hint (prefetchnta) was 3x slower.
template <int MR>
static inline void few_rows_block(float* out, const float* inp, const float* w, const float* bias, int K, int N, int n0, int nr, int ahead) {
    v16f acc[4][MR];
    for (int r = 0; r < 4; r++)
        for (int j = 0; j < MR; j++) acc[r][j] = (v16f){};
    const float* wr[4];
    for (int r = 0; r < 4; r++) wr[r] = w + (long)(n0 + std::min(r, nr - 1)) * K;
    const float* wp = w + (long)std::min(n0 + ahead, N - 4 > 0 ? N - 4 : 0) * K;  // the block to prefetch
    const int np = std::min(4, N);
    int k = 0;
    // the 4 weight vectors first, then one input row at a time: 4 + 1 live vectors beside the
    // accumulators instead of 4 + MR (1.2x on the 50304-row unembedding at MR = 4 on an AVX-512
    // Xeon; the same products summed in the same order, so the same bits)
    for (; k + 16 <= K; k += 16) {
        v16f wv[4];
        for (int r = 0; r < 4; r++) wv[r] = *(const v16f*)(wr[r] + k);
        for (int r = 0; r < np; r++) __builtin_prefetch(wp + (long)r * K + k, 0, 3);
        for (int j = 0; j < MR; j++) {
            v16f x = *(const v16f*)(inp + (long)j * K + k);
            for (int r = 0; r < 4; r++) acc[r][j] += wv[r] * x;
        }
    }
    for (int r = 0; r < nr; r++)
        for (int j = 0; j < MR; j++) {
            float sum = hsum16(acc[r][j]);
            for (int kk = k; kk < K; kk++) sum += w[(long)(n0 + r) * K + kk] * inp[(long)j * K + kk];
            out[(long)j * N + n0 + r] = bias ? bias[n0 + r] + sum : sum;
        }
}
static const int FEW_ROWS_MAX = 8;
static void matmul_forward_few_rows(float* out, const float* inp, const float* weight, const float* bias, int M, int K, int N) {
    if (M <= 0) return;
    const int ahead = std::max(4, std::min(16, 8192 / std::max(K, 1))) & ~3;  // weight rows, ~32 KB
    #pragma omp parallel for schedule(static)
    for (int n0 = 0; n0 < N; n0 += 4) {
        int nr = std::min(4, N - n0);
        switch (M) {  // one block for all M rows: each weight vector is loaded once (8 rows: 1.2x over two blocks of 4)
            case 8: few_rows_block<8>(out, inp, weight, bias, K, N, n0, nr, ahead); break;
            case 7: few_rows_block<7>(out, inp, weight, bias, K, N, n0, nr, ahead); break;
            case 6: few_rows_block<6>(out, inp, weight, bias, K, N, n0, nr, ahead); break;
            case 5: few_rows_block<5>(out, inp, weight, bias, K, N, n0, nr, ahead); break;
            case 4: few_rows_block<4>(out, inp, weight, bias, K, N, n0, nr, ahead); break;
            case 3: few_rows_block<3>(out, inp, weight, bias, K, N, n0, nr, ahead); break;
            case 2: few_rows_block<2>(out, inp, weight, bias, K, N, n0, nr, ahead); break;
            default: few_rows_block<1>(out, inp, weight, bias, K, N, n0, nr, ahead); break;
        }
    }
}

// Decoding's weights, packed: W (N,K) copied K-major in panels of PACK_W = 48 columns (panel p
// holds W[48p : 48p + 48, k] for k = 0..K-1, 48 floats per k, the last panel zero-padded), so an
// output vector of 48 columns is built by broadcasting one input float against 3 weight vectors:
// 3 weight loads per 3 x M FMAs, no horizontal sums. The (N,K) dot-product form above issues a
// load with every FMA, and at M = 8 it reached ~100 GFLOP/s with the weights in L2 and ~57 from
// memory on the 2-core AMD EPYC, where this form reached 220-260 in L2 and ran the pythia-70m
// decode matmuls at M = 8 in 2.6 ms instead of 12.7 (65-70 GB/s, the machine's read bandwidth;
// M = 1: 2.4 instead of 3.8 ms). The price is a second copy of the linear weights while decoding.
// Each output is sum over k in ascending order (one FMA chain), then + bias: the same whatever M
// or the thread count, so a row decoded in a batch equals the row decoded alone, bitwise.
//
// The packs belong to a model's decoding state (DecodePacks): each is made on its first use, and
// decode_begin drops every pack whose weights changed (revalidate); matmul_forward consults them
// only inside a DecodePackScope, so training, evaluation and any call outside a decode step never
// see a pack, stale or not.
static const int PACK_W = 48;
struct DecodePacks {
    struct Pack {  // from 2 MB up: 2 MB-aligned, on huge pages where the kernel gives them (4 KB pages made
        float* data = nullptr;  // the first touch of pythia-70m's unembedding copy, 103 MB, cost ~250 ms here)
        size_t n = 0;
        uint32_t crc = 0;  // of the source weights when packed
        Pack() {}
        Pack(const Pack&) = delete;
        ~Pack() { free(data); }
    };
    std::map<std::tuple<const float*, int, int>, Pack> packs;
    void clear() { packs.clear(); }
    // at decode_begin: keep a pack only if its source lies in [lo, hi) (the model's parameters, which
    // stay where they are for the model's life) and still has the bytes it was packed from (crc32c:
    // training or an import changes them); anything else (a weight a layer derives at decode_begin,
    // e.g. MLA's absorbed W_O.W_UV) is packed again on its first use. Packing pythia-70m's 180 MB
    // took 50-250 ms here, the check ~10 ms, and evaluations call decode_begin once per sample.
    void revalidate(const float* lo, const float* hi) {
        std::vector<std::map<std::tuple<const float*, int, int>, Pack>::iterator> its;
        for (auto it = packs.begin(); it != packs.end(); ++it) its.push_back(it);
        std::vector<char> keep(its.size());
        #pragma omp parallel for schedule(dynamic, 1)
        for (long i = 0; i < (long)its.size(); i++) {
            const float* w = std::get<0>(its[i]->first);
            const size_t n = (size_t)std::get<1>(its[i]->first) * std::get<2>(its[i]->first);
            keep[i] = w >= lo && w + n <= hi && crc32c_update(0, w, n * sizeof(float)) == its[i]->second.crc;
        }
        for (size_t i = 0; i < its.size(); i++)
            if (!keep[i]) packs.erase(its[i]);
    }
    size_t floats() const {
        size_t n = 0;
        for (auto& kv : packs) n += kv.second.n;
        return n;
    }
    const float* get(const float* w, int N, int K) {
        Pack& p = packs[std::make_tuple(w, N, K)];
        if (!p.data) {
            const int np = (N + PACK_W - 1) / PACK_W;
            const size_t raw = (size_t)np * PACK_W * K * sizeof(float), align = raw >= ((size_t)1 << 21) ? (size_t)1 << 21 : 64;
            const size_t bytes = (raw + align - 1) / align * align;
            p.data = (float*)aligned_alloc(align, bytes);
            if (!p.data) fail("out of memory packing a %d x %d weight for decoding (%.1f MB)", N, K, bytes / 1e6);
#ifdef MADV_HUGEPAGE
            madvise(p.data, bytes, MADV_HUGEPAGE);  // a hint: without it (or refused) the pages are 4 KB
#endif
            p.n = (size_t)np * PACK_W * K;
            p.crc = crc32c_update(0, w, (size_t)N * K * sizeof(float));
            float* d = p.data;
            // written in order, 48 rows read at a time (their lines stay in L1 across 16 k's); the
            // last panel's columns past N are zeros
            #pragma omp parallel for schedule(static)
            for (int pi = 0; pi < np; pi++) {
                const int nc = std::min(PACK_W, N - pi * PACK_W);
                const float* src = w + (size_t)pi * PACK_W * K;
                float* dst = d + (size_t)pi * PACK_W * K;
                for (int k = 0; k < K; k++) {
                    for (int c = 0; c < nc; c++) dst[(size_t)k * PACK_W + c] = src[(size_t)c * K + k];
                    for (int c = nc; c < PACK_W; c++) dst[(size_t)k * PACK_W + c] = 0.0f;
                }
            }
        }
        return p.data;
    }
};
static DecodePacks*& active_decode_packs() {
    static DecodePacks* p = nullptr;
    return p;
}
struct DecodePackScope {  // while alive, matmul_forward's few-rows calls use (and fill) `packs`
    DecodePacks* prev;
    explicit DecodePackScope(DecodePacks* packs) : prev(active_decode_packs()) { active_decode_packs() = packs; }
    ~DecodePackScope() { active_decode_packs() = prev; }
};
// one 48-column panel for MR rows; the panel stream is prefetched PACK_AHEAD floats (16 KB) ahead
// (8 KB ran the M = 8 set at 63 GB/s, 16 KB at 70, 32 KB at 65; none: 43)
static const int PACK_AHEAD = 4096;
template <int MR>
static inline void packed_panel(float* out, const float* inp, const float* pp, const float* bias, int K, int N, int n0) {
    v16f acc[MR][3];
    for (int j = 0; j < MR; j++) acc[j][0] = acc[j][1] = acc[j][2] = (v16f){};
    for (int k = 0; k < K; k++) {
        const float* wk = pp + (size_t)k * PACK_W;
        for (int v = 0; v < 3; v++) __builtin_prefetch(wk + PACK_AHEAD + 16 * v, 0, 3);
        const v16f w0 = *(const v16f*)wk, w1 = *(const v16f*)(wk + 16), w2 = *(const v16f*)(wk + 32);
        for (int j = 0; j < MR; j++) {
            const float x = inp[(size_t)j * K + k];
            acc[j][0] += x * w0;
            acc[j][1] += x * w1;
            acc[j][2] += x * w2;
        }
    }
    const int nr = std::min(PACK_W, N - n0);
    for (int j = 0; j < MR; j++) {
        float* o = out + (size_t)j * N + n0;
        for (int c = 0; c < nr; c++) o[c] = bias ? acc[j][c / 16][c % 16] + bias[n0 + c] : acc[j][c / 16][c % 16];
    }
}
static void matmul_forward_packed(float* out, const float* inp, const float* packed, const float* bias, int M, int K, int N) {
    const int np = (N + PACK_W - 1) / PACK_W;
    #pragma omp parallel for schedule(static)
    for (int p = 0; p < np; p++) {
        const float* pp = packed + (size_t)p * PACK_W * K;
        switch (M) {
            case 8: packed_panel<8>(out, inp, pp, bias, K, N, p * PACK_W); break;
            case 7: packed_panel<7>(out, inp, pp, bias, K, N, p * PACK_W); break;
            case 6: packed_panel<6>(out, inp, pp, bias, K, N, p * PACK_W); break;
            case 5: packed_panel<5>(out, inp, pp, bias, K, N, p * PACK_W); break;
            case 4: packed_panel<4>(out, inp, pp, bias, K, N, p * PACK_W); break;
            case 3: packed_panel<3>(out, inp, pp, bias, K, N, p * PACK_W); break;
            case 2: packed_panel<2>(out, inp, pp, bias, K, N, p * PACK_W); break;
            default: packed_panel<1>(out, inp, pp, bias, K, N, p * PACK_W); break;
        }
    }
}

static void matmul_forward(float* out, const float* inp, const float* weight, const float* bias, int M, int K, int N) {
    ProfScope prof(PROF_MATMUL);
    prof_macs(PROF_MATMUL, (double)M * K * N);
    g_prof.weight_floats += (double)K * N + (bias ? N : 0);
    if (M <= FEW_ROWS_MAX) {
        if (M > 0 && active_decode_packs())
            matmul_forward_packed(out, inp, active_decode_packs()->get(weight, N, K), bias, M, K, N);
        else
            matmul_forward_few_rows(out, inp, weight, bias, M, K, N);
        return;
    }
#ifdef KVGPT_OPENBLAS
    if (matmul_impl() == MATMUL_BLAS) {
        blas_single_thread_once();
        #pragma omp parallel
        {
            int n0, n1;
            column_slice(N, omp_get_thread_num(), omp_get_num_threads(), &n0, &n1);
            if (n1 > n0) {
                if (bias)
                    for (int m = 0; m < M; m++) memcpy(out + (long)m * N + n0, bias + n0, (n1 - n0) * sizeof(float));
                // out[:, n0:n1] = inp . W[n0:n1, :]^T
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, n1 - n0, K, 1.0f, inp, K, weight + (long)n0 * K, K,
                            bias ? 1.0f : 0.0f, out + n0, N);
            }
        }
        return;
    }
#endif
    // the kernel wants its right operand row-major, so one side is transposed: W^T (N*K floats),
    // or inp^T and the result (M*K + M*N floats), whichever moves less memory
    if ((double)N * K <= (double)M * K + (double)M * N) {
        float* wt = matmul_scratch(0, (size_t)N * K);
        transpose(weight, wt, N, K);  // wt is (K,N)
        if (bias) {
            #pragma omp parallel for schedule(static)
            for (int m = 0; m < M; m++) memcpy(out + (long)m * N, bias, N * sizeof(float));
        }
        gemm(M, N, K, inp, K, 1, wt, N, out, N, bias != nullptr);
    } else {
        float* it = matmul_scratch(0, (size_t)M * K);
        float* ot = matmul_scratch(1, (size_t)M * N);
        transpose(inp, it, M, K);                        // it is (K,M)
        gemm(N, M, K, weight, K, 1, it, M, ot, M, false);  // ot = W . inp^T, (N,M)
        transpose(ot, out, N, M);
        if (bias) {
            #pragma omp parallel for schedule(static)
            for (int m = 0; m < M; m++)
                for (int n = 0; n < N; n++) out[(long)m * N + n] += bias[n];
        }
    }
}

// dinp (M,K) is overwritten (or accumulated into if acc_dinp); dweight (N,K) and dbias (N) accumulate.
// Any of dinp / dweight / dbias may be null to skip it.
static void matmul_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                            const float* weight, int M, int K, int N, bool acc_dinp = false) {
    ProfScope prof(PROF_MATMUL);
#ifdef KVGPT_OPENBLAS
    if (matmul_impl() == MATMUL_BLAS) {
        blas_single_thread_once();
        #pragma omp parallel
        {
            int tid = omp_get_thread_num(), nt = omp_get_num_threads(), lo, hi;
            if (dinp) {  // dinp[:, k0:k1] = dout . W[:, k0:k1]
                column_slice(K, tid, nt, &lo, &hi);
                if (hi > lo)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, hi - lo, N, 1.0f, dout, N, weight + lo, K,
                                acc_dinp ? 1.0f : 0.0f, dinp + lo, K);
            }
            if (dweight) {  // dW[n0:n1, :] += dout[:, n0:n1]^T . inp
                column_slice(N, tid, nt, &lo, &hi);
                if (hi > lo)
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, hi - lo, K, M, 1.0f, dout + lo, N, inp, K, 1.0f,
                                dweight + (long)lo * K, K);
            }
        }
    } else
#endif
    {
        if (dinp) gemm(M, K, N, dout, N, 1, weight, K, dinp, K, acc_dinp);  // dinp = dout . W
        if (dweight) {  // dW += dout^T . inp, with dout^T made contiguous (strided reads of a wide dout thrash the TLB)
            float* dt = matmul_scratch(1, (size_t)M * N);
            transpose(dout, dt, M, N);
            gemm(N, K, M, dt, M, 1, inp, K, dweight, K, true);
        }
    }
    if (dbias) {
        #pragma omp parallel for schedule(static)
        for (int n0 = 0; n0 < N; n0 += 64) {
            int nr = std::min(64, N - n0);
            float s[64] = {0};
            for (int m = 0; m < M; m++)
                for (int j = 0; j < nr; j++) s[j] += dout[(long)m * N + n0 + j];
            for (int j = 0; j < nr; j++) dbias[n0 + j] += s[j];
        }
    }
}
