// utils.h: error reporting, checked C library calls, small helpers shared by every file.
// Every IO/alloc call goes through a xxxCheck() macro that names the file and line, and every
// user-facing error says what is wrong and, with a HINT line, how to fix it (llm.c style).
#pragma once
#include <limits.h>
#include <sys/stat.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cerrno>
#include <cstdarg>
#include <ctime>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

// The error a failed check raises while g_fail_throws is set (see fail_hint).
struct KvgptError {
    std::string message, hint;
};
// When > 0, fail_hint throws KvgptError instead of exiting: the evaluator sets it around each
// section so one failing measurement is reported in its JSON and the others still run. Only
// serial code may fail while it is set (an exception must not leave an OpenMP region).
static int g_fail_throws = 0;

// Set by a data-parallel run (llmc/distributed.h): who is failing ("rank 1 of 2: ") and how to
// end the other ranks (MPI_Abort), which would otherwise wait for this one forever.
static char g_fail_who[48] = "";
static void (*g_fail_hook)() = nullptr;

// fail(): print "Error: ..." (+ optional HINT) to stderr and exit(1). Never returns.
[[noreturn]] static inline void fail_hint(const char* hint, const char* fmt, ...) {
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (g_fail_throws > 0) throw KvgptError{msg, hint ? hint : ""};
    fprintf(stderr, "Error: %s%s\n", g_fail_who, msg);
    if (hint && hint[0]) fprintf(stderr, "HINT: %s\n", hint);
    fflush(stderr);
    if (g_fail_hook) g_fail_hook();
    exit(1);
}
#define fail(...) fail_hint(nullptr, __VA_ARGS__)

// A path the programs read as a file must be a regular file: a FIFO would block the open (or
// the read) forever and a directory reads as garbage. stat() never blocks.
static inline void require_regular_file(const char* path, const char* what, const char* hint) {
    struct stat st;
    if (path == nullptr || !path[0]) fail_hint(hint, "%s: the path is empty", what);
    if (stat(path, &st) != 0) fail_hint(hint, "cannot open %s '%s': %s", what, path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        fail_hint(hint, "%s '%s' is a %s, not a regular file", what, path,
                  S_ISDIR(st.st_mode) ? "directory" : S_ISFIFO(st.st_mode) ? "FIFO (named pipe)" : "special file");
}

// OpenMP threads that finish their share of a parallel loop spin-wait for the others before
// sleeping (libgomp: 300,000 spins by default). When other programs share the cores, the
// spinning thread keeps a core from the very thread it waits for. Measured on the 2-core
// machine (docs/benchmarks.md), a Pythia-70m training step beside one busy process took 935 ms
// instead of 370 and 1.5x the CPU time; with 10,000 spins it takes 731 ms at the CPU time of a
// quiet run, and a quiet run is as fast as before. libgomp reads GOMP_SPINCOUNT once, when it
// loads, so the programs set it and re-execute themselves, once, first thing in main -- unless
// OMP_WAIT_POLICY or GOMP_SPINCOUNT is already set (the user's choice wins).
static inline void omp_polite_spin(char** argv) {
#ifdef _OPENMP
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT") || getenv("KVGPT_OMP_REEXEC")) return;
    setenv("GOMP_SPINCOUNT", "10000", 1);
    setenv("KVGPT_OMP_REEXEC", "1", 1);
    execv("/proc/self/exe", argv);  // returns only if it failed (no /proc): libgomp's default stays
#else
    (void)argv;
#endif
}

// CRC32C (Castagnoli), the checksum of checkpoints: the SSE4.2 instruction when the build has
// it, else a table. crc32c(0, "123456789", 9) == 0xE3069283 (tested).
static inline uint32_t crc32c_update(uint32_t crc, const void* data, size_t n) {
    const uint8_t* p = (const uint8_t*)data;
    crc = ~crc;
#if defined(__SSE4_2__)
    uint64_t c = crc;
    for (; n >= 8; n -= 8, p += 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = __builtin_ia32_crc32di(c, w);
    }
    crc = (uint32_t)c;
    for (; n; n--, p++) crc = __builtin_ia32_crc32qi(crc, *p);
#else
    static uint32_t table[256];
    static bool ready = false;
    if (!ready) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
            table[i] = c;
        }
        ready = true;
    }
    for (; n; n--, p++) crc = table[(crc ^ *p) & 0xFF] ^ (crc >> 8);
#endif
    return ~crc;
}

// a * b, or false when it would overflow (sizes read from files are never trusted)
static inline bool mul_fits(uint64_t a, uint64_t b, uint64_t* out) {
    if (a != 0 && b > UINT64_MAX / a) return false;
    *out = a * b;
    return true;
}

static inline FILE* fopen_check(const char* path, const char* mode, const char* file, int line) {
    FILE* fp = fopen(path, mode);
    if (!fp) {
        fail_hint("check the path exists and is readable/writable",
                  "could not open '%s' (mode %s): %s\n  at %s:%d", path, mode, strerror(errno), file, line);
    }
    return fp;
}
#define fopenCheck(path, mode) fopen_check(path, mode, __FILE__, __LINE__)

static inline void fread_check(void* ptr, size_t size, size_t n, FILE* fp, const char* file, int line) {
    size_t got = fread(ptr, size, n, fp);
    if (got != n) {
        fail_hint("the file is truncated or corrupt; re-create it",
                  "short read: wanted %zu items of %zu bytes, got %zu (%s)\n  at %s:%d", n, size, got,
                  feof(fp) ? "end of file" : "read error", file, line);
    }
}
#define freadCheck(ptr, size, n, fp) fread_check(ptr, size, n, fp, __FILE__, __LINE__)

static inline void fwrite_check(const void* ptr, size_t size, size_t n, FILE* fp, const char* file, int line) {
    if (fwrite(ptr, size, n, fp) != n) {
        fail_hint("is the disk full?", "short write: %s\n  at %s:%d", strerror(errno), file, line);
    }
}
#define fwriteCheck(ptr, size, n, fp) fwrite_check(ptr, size, n, fp, __FILE__, __LINE__)

static inline void fclose_check(FILE* fp, const char* file, int line) {
    if (fclose(fp) != 0) fail_hint("is the disk full?", "fclose failed: %s\n  at %s:%d", strerror(errno), file, line);
}
#define fcloseCheck(fp) fclose_check(fp, __FILE__, __LINE__)

// 64-byte aligned, zeroed allocation; out of memory is a clear error, not a crash.
// A request larger than the machine's physical memory is refused up front: with overcommit it
// could be granted and then get the process killed while it is being zeroed.
static inline void* malloc_check(size_t bytes, const char* file, int line) {
    if (bytes == 0) bytes = 64;
    void* p = nullptr;
    static const double phys = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
    if ((phys > 0 && (double)bytes > phys) || bytes > SIZE_MAX - 64 || posix_memalign(&p, 64, (bytes + 63) / 64 * 64) != 0 || !p) {
        fail_hint("use a smaller model, micro-batch (-b) or sequence length (-t)",
                  "out of memory allocating %.1f MiB\n  at %s:%d", bytes / 1048576.0, file, line);
    }
    memset(p, 0, bytes);
    return p;
}
#define mallocCheck(bytes) malloc_check(bytes, __FILE__, __LINE__)
template <typename T>
static inline T* alloc_floats(size_t n) { return (T*)mallocCheck(n * sizeof(T)); }

// std::vector with its data on a 64-byte boundary (a cache line, an AVX-512 vector): for buffers
// whose rows the kernels read as whole vectors. malloc puts large blocks 16 bytes past a page
// start, so every 64-byte load of a row crossed two cache lines: the decode kernel's value sum ran
// 1.6 ns per key on misaligned rows and 1.0 on aligned ones (the 2-core AMD EPYC).
// A buffer of 2 MB or more starts on a 2 MB boundary and asks for 2 MB pages: a decode step
// streams every sequence's cache, and on 4 KB pages each 4 KB of it is a TLB miss. Measured at
// Pythia-70m's 8k, batch 8 (docs/benchmarks.md): a few percent faster in some comparisons, none
// in others, always within the host's noise; kept because it costs nothing: the size is not
// rounded up (the last partial 2 MB keeps 4 KB pages), so no memory is held beyond the rows.
template <typename T>
struct Aligned64 {
    typedef T value_type;
    Aligned64() = default;
    template <typename U>
    Aligned64(const Aligned64<U>&) {}
    T* allocate(size_t n) {
        void* p = nullptr;
        const size_t huge = (size_t)1 << 21, bytes = std::max<size_t>(64, (n * sizeof(T) + 63) / 64 * 64);
        const bool big = bytes >= huge;
        if (posix_memalign(&p, big ? huge : 64, bytes) != 0 || !p)
            fail_hint("use a smaller context or batch", "out of memory allocating %.1f MiB", n * sizeof(T) / 1048576.0);
#ifdef MADV_HUGEPAGE
        if (big) madvise(p, bytes / huge * huge, MADV_HUGEPAGE);  // a hint: refused, the pages stay 4 KB
#endif
        return (T*)p;
    }
    void deallocate(T* p, size_t) { free(p); }
    template <typename U>
    bool operator==(const Aligned64<U>&) const { return true; }
    template <typename U>
    bool operator!=(const Aligned64<U>&) const { return false; }
};
template <typename T>
using avec = std::vector<T, Aligned64<T>>;

static inline double now_seconds() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// deterministic sum of n doubles produced by f(i), independent of the thread count:
// fixed chunks summed in parallel, then the chunk sums added in order.
// The chunks are public so a data-parallel run, whose ranks each hold some chunks of a vector,
// can reproduce the same sum (llmc/train.h: train_step_dp).
static const int DETERMINISTIC_SUM_CHUNKS = 64;
static inline size_t deterministic_chunk_start(size_t n, int c) { return n * c / DETERMINISTIC_SUM_CHUNKS; }
// chunk c's part of deterministic_sum(n, f), summed in index order
template <typename F>
static inline double deterministic_chunk_sum(size_t n, int c, F f) {
    double s = 0.0;
    for (size_t i = deterministic_chunk_start(n, c), hi = deterministic_chunk_start(n, c + 1); i < hi; i++) s += f(i);
    return s;
}
template <typename F>
static inline double deterministic_sum(size_t n, F f) {
    const int NCHUNK = DETERMINISTIC_SUM_CHUNKS;
    double part[NCHUNK];
    #pragma omp parallel for schedule(static)
    for (int c = 0; c < NCHUNK; c++) part[c] = deterministic_chunk_sum(n, c, f);
    double s = 0.0;
    for (int c = 0; c < NCHUNK; c++) s += part[c];
    return s;
}

// true when a and b name the same file: by inode when both exist, else by their resolved paths
// (a file that does not exist yet is named by its resolved directory plus its name)
static inline std::string resolved_path(const std::string& p) {
    char buf[PATH_MAX];
    if (realpath(p.c_str(), buf)) return buf;
    size_t slash = p.rfind('/');
    std::string dir = slash == std::string::npos ? "." : p.substr(0, slash + 1), name = slash == std::string::npos ? p : p.substr(slash + 1);
    if (realpath(dir.c_str(), buf)) return std::string(buf) + "/" + name;
    return p;
}
static inline bool same_file(const std::string& a, const std::string& b) {
    struct stat sa, sb;
    if (stat(a.c_str(), &sa) == 0 && stat(b.c_str(), &sb) == 0) return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    return resolved_path(a) == resolved_path(b);
}
// the directory a file would be written to exists and is writable (checked before a long run)
static inline bool dir_writable(const std::string& p) {
    if (access(p.c_str(), F_OK) == 0) return access(p.c_str(), W_OK) == 0;
    size_t slash = p.rfind('/');
    std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : p.substr(0, slash);
    struct stat st;
    return stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode) && access(dir.c_str(), W_OK) == 0;
}

// "a,b,,c" -> {"a", "b", "", "c"}: every comma separates two items, so an empty one shows
static std::vector<std::string> split_list(const std::string& s) {
    std::vector<std::string> out;
    for (size_t i = 0; i <= s.size();) {
        size_t j = s.find(',', i);
        if (j == std::string::npos) j = s.size();
        out.push_back(s.substr(i, j - i));
        i = j + 1;
    }
    return out;
}

