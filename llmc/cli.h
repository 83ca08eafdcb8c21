// cli.h: one-letter (and long) command-line flags, llm.c style, shared by train_gpt and eval_gpt.
// A flag table maps each flag to a typed variable; unknown flags, missing values and malformed
// numbers are clear errors with a hint.
#pragma once
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

static void print_usage(const std::vector<Flag>& flags, const char* prog, const char* example) {
    printf("usage: %s [flags]\n\n", prog);
    for (const Flag& f : flags) printf("  %-3s %-16s %s\n", f.shortname, f.longname, f.help);
    printf("\nexample: %s\n", example);
}

static void parse_flags(int argc, char** argv, const std::vector<Flag>& flags, const char* prog, const char* example) {
    std::string hint = std::string(prog) + " -h lists the flags";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { print_usage(flags, prog, example); exit(0); }
        const Flag* f = nullptr;
        for (const Flag& g : flags)
            if ((g.shortname[0] && !strcmp(argv[i], g.shortname)) || !strcmp(argv[i], g.longname)) f = &g;
        if (!f) fail_hint(hint.c_str(), "unknown flag '%s'", argv[i]);
        if (f->type == F_BOOL) { *(bool*)f->ptr = true; continue; }
        if (i + 1 >= argc) fail_hint(hint.c_str(), "flag %s needs a value", argv[i]);
        const char* v = argv[++i];
        char* end = nullptr;
        errno = 0;
        switch (f->type) {
            case F_STR: *(std::string*)f->ptr = v; continue;
            case F_INT: *(int*)f->ptr = (int)strtol(v, &end, 10); break;
            case F_FLOAT: *(float*)f->ptr = strtof(v, &end); break;
            case F_U64: *(uint64_t*)f->ptr = strtoull(v, &end, 10); break;
            case F_BOOL: break;
        }
        if (errno || !end || *end || end == v) fail_hint(hint.c_str(), "flag %s: '%s' is not a valid number", f->longname, v);
    }
}

// "0,16,32" -> {0, 16, 32}; a clear error for anything else
static std::vector<int> parse_int_list(const std::string& s, const char* flag) {
    std::vector<int> out;
    size_t i = 0;
    while (i <= s.size()) {
        size_t j = s.find(',', i);
        if (j == std::string::npos) j = s.size();
        std::string item = s.substr(i, j - i);
        char* end = nullptr;
        long v = strtol(item.c_str(), &end, 10);
        if (item.empty() || *end) fail_hint("use comma-separated integers, e.g. 0,16,32", "%s: '%s' is not a list of integers", flag, s.c_str());
        out.push_back((int)v);
        i = j + 1;
    }
    return out;
}
