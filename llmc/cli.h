// cli.h: one-letter (and long) command-line flags, llm.c style, shared by train_gpt and eval_gpt.
// A flag table maps each flag to a typed variable; unknown flags, missing values, malformed
// numbers, non-finite floats (nan, inf) and empty strings are clear errors with a hint.
// parse_flags returns the long names of the flags given, so callers can tell a flag the user
// set from its default (e.g. to refuse flags that contradict a checkpoint).
// The same table prints the usage with every default, and a run's resolved flags as JSON (runinfo.h).
#pragma once
#include <cmath>
#include <set>
#include <string>
#include <vector>
#include "utils.h"

enum FlagType { F_STR, F_INT, F_FLOAT, F_U64, F_BOOL };
struct Flag {
    const char* shortname;  // e.g. "-a", or "" for long-only
    const char* longname;
    FlagType type;
    void* ptr;
    const char* help;
};

static std::string json_escape(const std::string& s) {
    std::string o = "\"";
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') { o += '\\'; o += (char)c; }
        else if (c < 0x20) { char b[8]; snprintf(b, sizeof b, "\\u%04x", c); o += b; }
        else o += (char)c;
    }
    return o + "\"";
}

// the shortest decimal that reads back as the same float (0.002, not 0.00200000009)
static std::string float_json(float x) {
    char b[64];
    if (!std::isfinite(x)) return "null";
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(b, sizeof b, "%.*g", prec, x);
        if (strtof(b, nullptr) == x) break;
    }
    return b;
}

// a flag's current value as JSON (after parsing and defaulting: the value the run used)
static std::string flag_value_json(const Flag& f) {
    switch (f.type) {
        case F_STR: return json_escape(*(const std::string*)f.ptr);
        case F_INT: return std::to_string(*(const int*)f.ptr);
        case F_FLOAT: return float_json(*(const float*)f.ptr);
        case F_U64: return std::to_string(*(const uint64_t*)f.ptr);
        case F_BOOL: return *(const bool*)f.ptr ? "true" : "false";
    }
    return "null";
}

// every flag with its help and its default (printed before any flag is parsed; empty strings and
// switches have none to show)
static void print_usage(const std::vector<Flag>& flags, const char* prog, const char* example) {
    printf("usage: %s [flags]\n\n", prog);
    for (const Flag& f : flags) {
        bool none = f.type == F_BOOL || (f.type == F_STR && ((const std::string*)f.ptr)->empty());
        printf("  %-3s %-18s %s%s\n", f.shortname, f.longname, f.help, none ? "" : (" [default: " + flag_value_json(f) + "]").c_str());
    }
    printf("\nexample: %s\n", example);
}

static std::set<std::string> parse_flags(int argc, char** argv, const std::vector<Flag>& flags, const char* prog, const char* example) {
    std::string hint = std::string(prog) + " -h lists the flags";
    std::set<std::string> given;
    for (int i = 1; i < argc; i++)  // before anything is parsed, so the usage shows the defaults
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { print_usage(flags, prog, example); exit(0); }
    for (int i = 1; i < argc; i++) {
        const Flag* f = nullptr;
        for (const Flag& g : flags)
            if ((g.shortname[0] && !strcmp(argv[i], g.shortname)) || !strcmp(argv[i], g.longname)) f = &g;
        if (!f) fail_hint(hint.c_str(), "unknown flag '%s'", argv[i]);
        given.insert(f->longname);
        if (f->type == F_BOOL) { *(bool*)f->ptr = true; continue; }
        if (i + 1 >= argc) fail_hint(hint.c_str(), "flag %s needs a value", argv[i]);
        const char* v = argv[++i];
        if (!v[0]) fail_hint("give it a value, or leave the flag out for its default", "flag %s: the value is empty", f->longname);
        char* end = nullptr;
        errno = 0;
        switch (f->type) {
            case F_STR: *(std::string*)f->ptr = v; continue;
            case F_INT: {
                long x = strtol(v, &end, 10);
                if (!errno && (x < INT32_MIN || x > INT32_MAX)) errno = ERANGE;
                *(int*)f->ptr = (int)x;
                break;
            }
            case F_FLOAT: {
                float x = strtof(v, &end);
                if (!errno && !std::isfinite(x)) fail_hint(hint.c_str(), "flag %s: '%s' is not a finite number", f->longname, v);
                *(float*)f->ptr = x;
                break;
            }
            case F_U64:
                if (v[0] == '-') errno = ERANGE;  // strtoull would wrap "-1" to 2^64 - 1
                *(uint64_t*)f->ptr = strtoull(v, &end, 10);
                break;
            case F_BOOL: break;
        }
        if (errno || !end || *end || end == v) fail_hint(hint.c_str(), "flag %s: '%s' is not a valid number", f->longname, v);
    }
    return given;
}

// range checks for parsed flags: a clear error naming the flag and the allowed range
static inline void require_int(const char* flag, int v, int lo, int hi) {
    if (v < lo || v > hi) {
        char h[96];
        if (hi == INT32_MAX) snprintf(h, sizeof h, "use %s >= %d", flag, lo);
        else snprintf(h, sizeof h, "use %s in [%d, %d]", flag, lo, hi);
        fail_hint(h, "%s %d is out of range", flag, v);
    }
}
// lo <= v < hi (hi_open) or lo <= v <= hi
static inline void require_float(const char* flag, float v, float lo, float hi, bool hi_open = false) {
    if (!std::isfinite(v) || v < lo || (hi_open ? v >= hi : v > hi)) {
        char h[96];
        snprintf(h, sizeof h, "use %s in [%g, %g%s", flag, lo, hi, hi_open ? ")" : "]");
        fail_hint(h, "%s %g is out of range", flag, v);
    }
}

// "0,16,32" -> {0, 16, 32}; a clear error for anything else
static std::vector<int> parse_int_list(const std::string& s, const char* flag) {
    std::vector<int> out;
    for (const std::string& item : split_list(s)) {
        char* end = nullptr;
        errno = 0;
        long v = strtol(item.c_str(), &end, 10);
        if (item.empty() || *end || errno || v < INT32_MIN || v > INT32_MAX)
            fail_hint("use comma-separated integers, e.g. 0,16,32", "%s: '%s' is not a list of integers", flag, s.c_str());
        out.push_back((int)v);
    }
    return out;
}
