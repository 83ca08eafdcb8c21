// testlib.h: a minimal test harness: named tests, CHECK macros that report file:line, helpers
// to expect a clear error from code that exits (in a forked child) or from a command, and the
// closing line "N passed, N failed" that CI reads.
#pragma once
#include <sys/wait.h>
#include <unistd.h>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

static int g_checks_failed = 0;
static bool g_skip_current = false;  // a test sets this (via SKIP) when it cannot run here
#define CHECK(cond, ...)                                                              \
    do {                                                                              \
        if (!(cond)) {                                                                \
            printf("    CHECK failed at %s:%d: %s\n      ", __FILE__, __LINE__, #cond); \
            printf(__VA_ARGS__);                                                      \
            printf("\n");                                                             \
            g_checks_failed++;                                                        \
        }                                                                             \
    } while (0)

struct TestCase {
    std::string name;
    std::function<void()> fn;
};
static std::vector<TestCase>& all_tests() {
    static std::vector<TestCase> t;
    return t;
}
static void add_test(const std::string& name, std::function<void()> fn) { all_tests().push_back({name, fn}); }

// runs every test whose name contains `filter` (all when empty); returns the failure count
static int run_tests(const char* filter) {
    int passed = 0, failed = 0, skipped = 0;
    for (TestCase& t : all_tests()) {
        if (filter && filter[0] && t.name.find(filter) == std::string::npos) continue;
        int before = g_checks_failed;
        g_skip_current = false;
        fflush(stdout);
        t.fn();
        bool ok = g_checks_failed == before;
        const char* verdict = !ok ? "FAIL" : g_skip_current ? "SKIP" : "PASS";
        printf("%s %s\n", verdict, t.name.c_str());
        fflush(stdout);
        (!ok ? failed : g_skip_current ? skipped : passed)++;
    }
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    return failed;
}

// runs fn in a forked child (serial code only: no OpenMP after fork) with its stdout and stderr
// captured into *out; an alarm after `seconds` turns a hang into a SIGALRM. Returns the wait status.
static int run_forked(std::function<void()> fn, std::string* out, int seconds = 60) {
    int p[2];
    if (pipe(p) != 0) return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], 1);
        dup2(p[1], 2);
        close(p[0]);
        alarm(seconds);
        fn();
        fflush(stdout);
        _exit(0);
    }
    close(p[1]);
    std::string s;
    char buf[4096];
    ssize_t n;
    while ((n = read(p[0], buf, sizeof buf)) > 0) s.append(buf, n);
    close(p[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (out) *out = s;
    return status;
}

// true when fn (in a forked child) exits non-zero and its output contains `needle`. *out gets the output.
static bool expect_exit_error(std::function<void()> fn, const char* needle, std::string* out = nullptr) {
    std::string s;
    int status = run_forked(fn, &s);
    if (out) *out = s;
    bool ok = WIFEXITED(status) && WEXITSTATUS(status) != 0 && s.find(needle) != std::string::npos;
    if (!ok) printf("    expected an error containing '%s'; status %d, output:\n%s\n", needle, status, s.c_str());
    return ok;
}

// runs a shell command; returns its exit code and output (stdout+stderr)
static int run_command(const std::string& cmd, std::string* out) {
    fflush(stdout);
    FILE* f = popen((cmd + " 2>&1").c_str(), "r");
    if (!f) return -1;
    std::string s;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
    int st = pclose(f);
    if (out) *out = s;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}
