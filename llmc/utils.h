// utils.h: error reporting, checked C library calls, small helpers shared by every file.
// Every IO/alloc call goes through a xxxCheck() macro that names the file and line, and every
// user-facing error says what is wrong and, with a HINT line, how to fix it (llm.c style).
#pragma once
#include <cerrno>
#include <cstdarg>
#include <ctime>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

// fail(): print "Error: ..." (+ optional HINT) to stderr and exit(1). Never returns.
[[noreturn]] static inline void fail_hint(const char* hint, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "Error: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    if (hint && hint[0]) fprintf(stderr, "HINT: %s\n", hint);
    fflush(stderr);
    exit(1);
}
#define fail(...) fail_hint(nullptr, __VA_ARGS__)

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
static inline void* malloc_check(size_t bytes, const char* file, int line) {
    if (bytes == 0) bytes = 64;
    void* p = nullptr;
    if (posix_memalign(&p, 64, (bytes + 63) / 64 * 64) != 0 || !p) {
        fail_hint("use a smaller model, micro-batch (-b) or sequence length (-t)",
                  "out of memory allocating %.1f MiB\n  at %s:%d", bytes / 1048576.0, file, line);
    }
    memset(p, 0, bytes);
    return p;
}
#define mallocCheck(bytes) malloc_check(bytes, __FILE__, __LINE__)
template <typename T>
static inline T* alloc_floats(size_t n) { return (T*)mallocCheck(n * sizeof(T)); }

static inline double now_seconds() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// deterministic sum of n doubles produced by f(i), independent of the thread count:
// fixed chunks summed in parallel, then the chunk sums added in order.
template <typename F>
static inline double deterministic_sum(size_t n, F f) {
    const int NCHUNK = 64;
    double part[NCHUNK];
    #pragma omp parallel for schedule(static)
    for (int c = 0; c < NCHUNK; c++) {
        size_t lo = n * c / NCHUNK, hi = n * (c + 1) / NCHUNK;
        double s = 0.0;
        for (size_t i = lo; i < hi; i++) s += f(i);
        part[c] = s;
    }
    double s = 0.0;
    for (int c = 0; c < NCHUNK; c++) s += part[c];
    return s;
}
