// test_cuda.cpp: every CUDA kernel against its CPU twin on the same inputs. Without a GPU each
// test reports SKIP and the suite passes (CI has no GPU; it still builds llmc/cuda_ops.cu for
// sm_80 and sm_90 and links this test). Error is reported as a percentage of the allowed error.
#include "../llmc/backend.h"
#include "../llmc/ops.h"
#include "../llmc/rng.h"
#include "testlib.h"

static bool g_have_gpu = false;

// copies host data to the device and back around one kernel call, comparing with the CPU result
static double compare(const std::vector<float>& gpu, const std::vector<float>& cpu, double atol, double rtol) {
    double worst = 0.0;
    for (size_t i = 0; i < cpu.size(); i++) worst = std::max(worst, fabs(gpu[i] - cpu[i]) / (atol + rtol * fabs(cpu[i])));
    return worst;
}

struct DeviceBuf {  // a device copy of a host vector, freed on scope exit
    float* p;
    size_t n;
    explicit DeviceBuf(const std::vector<float>& h) : p(kvgpt_cuda_upload(h.data(), (long)h.size())), n(h.size()) {}
    explicit DeviceBuf(size_t n_) : p(kvgpt_cuda_upload(nullptr, (long)n_)), n(n_) {}
    std::vector<float> host() const {
        std::vector<float> h(n);
        kvgpt_cuda_download(h.data(), p, (long)n);
        return h;
    }
    ~DeviceBuf() { kvgpt_cuda_free(p); }
};

static std::vector<float> randv(size_t n, uint64_t seed) {
    Rng r(seed);
    std::vector<float> v(n);
    for (float& x : v) x = 2.0f * r.normal();
    return v;
}

static void gpu_test(const std::string& name, std::function<void()> fn) {
    add_test(name, [name, fn] {
        if (!g_have_gpu) { printf("    no CUDA device\n"); g_skip_current = true; return; }
        fn();
    });
}

int main(int argc, char** argv) {
    std::string why, dev;
    g_have_gpu = cuda_probe(&why, &dev) > 0;
    printf("kvgpt CUDA tests: %s\n", g_have_gpu ? dev.c_str() : ("no GPU: " + why).c_str());
    const long N = 100003;  // not a multiple of the block size
    gpu_test("cuda residual_forward == cpu", [N] {
        auto a = randv(N, 1), b = randv(N, 2), c = randv(N, 3);
        std::vector<float> cpu(N);
        residual_forward(cpu.data(), a.data(), b.data(), c.data(), N);
        DeviceBuf da(a), db(b), dc(c), out((size_t)N);
        residual_forward_cuda(out.p, da.p, db.p, dc.p, N);
        double w = compare(out.host(), cpu, 1e-6, 1e-6);
        CHECK(w <= 1.0, "worst error %.1f%% of allowed", 100 * w);
        printf("    worst %.1f%% of allowed (fp32)\n", 100 * w);
    });
    for (bool exact : {false, true})
        gpu_test(std::string("cuda gelu_forward (") + (exact ? "erf" : "tanh") + ") == cpu", [N, exact] {
            auto x = randv(N, 4);
            std::vector<float> cpu(N);
            gelu_forward(cpu.data(), x.data(), N, exact);
            DeviceBuf dx(x), out((size_t)N);
            gelu_forward_cuda(out.p, dx.p, N, exact);
            double w = compare(out.host(), cpu, 1e-6, 1e-5);
            CHECK(w <= 1.0, "worst error %.1f%% of allowed", 100 * w);
            printf("    worst %.1f%% of allowed (fp32)\n", 100 * w);
        });
    return run_tests(argc > 1 ? argv[1] : "") ? 1 : 0;
}
