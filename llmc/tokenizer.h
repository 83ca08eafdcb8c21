// tokenizer.h: the two byte-level BPE tokenizers (GPT-NeoX-20B, GPT-2) in C++, for prompts and
// generated text (./sample_gpt, train_gpt --sample-every). Ids are identical to
// data/tokenizer.py's (checked on the committed golden texts in the tests):
//  - NeoX: NFC normalisation (full: canonical decomposition, reordering, composition, with the
//    tables of llmc/unicode_tables.h), its added whitespace-run tokens, <|endoftext|> in text;
//  - GPT-2: OpenAI's encoder.json + vocab.bpe, no normaliser, <|endoftext|> = 50256;
//  - both: GPT-2's pre-tokenizer regex 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//    scanned by hand as data/tokenizer.py does, then BPE by merge rank.
// Decoding is byte-level; TokenStream holds back a UTF-8 character split across tokens until it
// is complete, so streamed output never prints half a character.
#pragma once
#include <algorithm>
#include <tuple>
#include <string>
#include <unordered_map>
#include <vector>
#include "config.h"
#include "unicode_tables.h"
#include "utils.h"

// ---------------------------------------------------------------------------------------------
// a minimal JSON reader (objects, arrays, strings with escapes, numbers, literals): enough for
// tokenizer.json and encoder.json
struct JsonValue {
    enum Kind { NUL, BOOL, NUM, STR, ARR, OBJ } kind = NUL;
    double num = 0;
    bool b = false;
    std::string str;
    std::vector<JsonValue> arr;
    std::vector<std::pair<std::string, JsonValue>> obj;
    const JsonValue* get(const char* key) const {
        for (const auto& kv : obj)
            if (kv.first == key) return &kv.second;
        return nullptr;
    }
};
struct JsonParser {
    const char* p;
    const char* end;
    std::string path;
    [[noreturn]] void bad(const char* what) { fail_hint("re-copy the vendored tokenizer files from the repository", "%s: malformed JSON (%s) at byte %ld", path.c_str(), what, (long)(end - p)); }
    void ws() { while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++; }
    static void put_utf8(std::string& s, uint32_t c) {
        if (c < 0x80) s += (char)c;
        else if (c < 0x800) { s += (char)(0xC0 | (c >> 6)); s += (char)(0x80 | (c & 63)); }
        else if (c < 0x10000) { s += (char)(0xE0 | (c >> 12)); s += (char)(0x80 | ((c >> 6) & 63)); s += (char)(0x80 | (c & 63)); }
        else { s += (char)(0xF0 | (c >> 18)); s += (char)(0x80 | ((c >> 12) & 63)); s += (char)(0x80 | ((c >> 6) & 63)); s += (char)(0x80 | (c & 63)); }
    }
    uint32_t hex4() {
        if (end - p < 4) bad("short \\u escape");
        uint32_t v = 0;
        for (int i = 0; i < 4; i++) {
            char c = *p++;
            v = v * 16 + (c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : (bad("bad \\u escape"), 0));
        }
        return v;
    }
    std::string string() {
        if (p >= end || *p != '"') bad("expected a string");
        p++;
        std::string s;
        while (p < end && *p != '"') {
            if (*p != '\\') { s += *p++; continue; }
            if (++p >= end) bad("bad escape");
            char e = *p++;
            switch (e) {
                case '"': s += '"'; break;
                case '\\': s += '\\'; break;
                case '/': s += '/'; break;
                case 'b': s += '\b'; break;
                case 'f': s += '\f'; break;
                case 'n': s += '\n'; break;
                case 'r': s += '\r'; break;
                case 't': s += '\t'; break;
                case 'u': {
                    uint32_t c = hex4();
                    if (c >= 0xD800 && c < 0xDC00 && end - p >= 6 && p[0] == '\\' && p[1] == 'u') {
                        p += 2;
                        uint32_t lo = hex4();
                        c = 0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00);
                    }
                    put_utf8(s, c);
                    break;
                }
                default: bad("bad escape");
            }
        }
        if (p >= end) bad("unterminated string");
        p++;
        return s;
    }
    JsonValue value() {
        ws();
        JsonValue v;
        if (p >= end) bad("unexpected end");
        if (*p == '{') {
            v.kind = JsonValue::OBJ;
            p++;
            ws();
            if (p < end && *p == '}') { p++; return v; }
            while (true) {
                ws();
                std::string k = string();
                ws();
                if (p >= end || *p++ != ':') bad("expected ':'");
                v.obj.emplace_back(std::move(k), value());
                ws();
                if (p < end && *p == ',') { p++; continue; }
                if (p < end && *p == '}') { p++; break; }
                bad("expected ',' or '}'");
            }
        } else if (*p == '[') {
            v.kind = JsonValue::ARR;
            p++;
            ws();
            if (p < end && *p == ']') { p++; return v; }
            while (true) {
                v.arr.push_back(value());
                ws();
                if (p < end && *p == ',') { p++; continue; }
                if (p < end && *p == ']') { p++; break; }
                bad("expected ',' or ']'");
            }
        } else if (*p == '"') {
            v.kind = JsonValue::STR;
            v.str = string();
        } else if (!strncmp(p, "true", std::min<long>(4, end - p))) { v.kind = JsonValue::BOOL; v.b = true; p += 4; }
        else if (!strncmp(p, "false", std::min<long>(5, end - p))) { v.kind = JsonValue::BOOL; p += 5; }
        else if (!strncmp(p, "null", std::min<long>(4, end - p))) { p += 4; }
        else {
            char* e = nullptr;
            v.kind = JsonValue::NUM;
            v.num = strtod(p, &e);
            if (e == p) bad("unexpected character");
            p = e;
        }
        return v;
    }
};
// a whole file as bytes; `what` names it in the errors ("tokenizer file", "prompt file")
static std::string read_file_text(const std::string& path, const char* what, const char* hint) {
    require_regular_file(path.c_str(), what, hint);
    FILE* f = fopenCheck(path.c_str(), "rb");
    std::string s;
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
    fclose(f);
    return s;
}
static JsonValue parse_json_file(const std::string& path, const char* hint) {
    std::string text = read_file_text(path, "tokenizer file", hint);
    JsonParser jp{text.data(), text.data() + text.size(), path};
    return jp.value();
}

// ---------------------------------------------------------------------------------------------
// Unicode: UTF-8, character classes, NFC
static bool utf8_decode(const std::string& s, std::vector<uint32_t>* out, size_t* bad_at = nullptr) {
    out->clear();
    for (size_t i = 0; i < s.size();) {
        unsigned char c = (unsigned char)s[i];
        int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        uint32_t cp = n == 1 ? c : n == 2 ? c & 31 : n == 3 ? c & 15 : c & 7;
        bool ok = n > 0 && i + n <= s.size();
        for (int k = 1; ok && k < n; k++) {
            unsigned char d = (unsigned char)s[i + k];
            ok = (d >> 6) == 2;
            cp = (cp << 6) | (d & 63);
        }
        // overlong forms, surrogates and values past U+10FFFF are invalid too
        ok = ok && !(n == 2 && cp < 0x80) && !(n == 3 && cp < 0x800) && !(n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) && !(cp >= 0xD800 && cp <= 0xDFFF);
        if (!ok) { if (bad_at) *bad_at = i; return false; }
        out->push_back(cp);
        i += n;
    }
    return true;
}
static std::string utf8_encode(const std::vector<uint32_t>& cps, size_t from = 0, size_t to = (size_t)-1) {
    std::string s;
    for (size_t i = from; i < std::min(to, cps.size()); i++) JsonParser::put_utf8(s, cps[i]);
    return s;
}
static bool in_ranges(const uint32_t* r, int n_ranges, uint32_t cp) {
    int lo = 0, hi = n_ranges - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < r[2 * mid]) hi = mid - 1;
        else if (cp > r[2 * mid + 1]) lo = mid + 1;
        else return true;
    }
    return false;
}
static inline bool uni_is_letter(uint32_t cp) { return in_ranges(UNI_LETTER, UNI_LETTER_n, cp); }
static inline bool uni_is_number(uint32_t cp) { return in_ranges(UNI_NUMBER, UNI_NUMBER_n, cp); }
// Unicode White_Space, what \s means in the regex HF uses (data/tokenizer.py's _WHITESPACE)
static inline bool uni_is_space(uint32_t c) {
    return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
           c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}
static int uni_ccc(uint32_t cp) {
    int lo = 0, hi = UNI_CCC_n - 1;  // _n counts rows (pairs)
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < UNI_CCC[2 * mid]) hi = mid - 1;
        else if (cp > UNI_CCC[2 * mid]) lo = mid + 1;
        else return (int)UNI_CCC[2 * mid + 1];
    }
    return 0;
}
// NFC: canonical decomposition (Hangul algorithmically), canonical ordering, canonical composition
static std::vector<uint32_t> nfc(const std::vector<uint32_t>& in) {
    const uint32_t SB = 0xAC00, LB = 0x1100, VB = 0x1161, TB = 0x11A7, LC = 19, VC = 21, TC = 28, NC = VC * TC, SC = LC * NC;
    std::vector<uint32_t> d;
    for (uint32_t cp : in) {
        if (cp >= SB && cp < SB + SC) {
            uint32_t s = cp - SB;
            d.push_back(LB + s / NC);
            d.push_back(VB + (s % NC) / TC);
            if (s % TC) d.push_back(TB + s % TC);
            continue;
        }
        int lo = 0, hi = UNI_DECOMP_INDEX_n - 1, found = -1;
        while (lo <= hi) {
            int mid = (lo + hi) / 2;
            if (cp < UNI_DECOMP_INDEX[3 * mid]) hi = mid - 1;
            else if (cp > UNI_DECOMP_INDEX[3 * mid]) lo = mid + 1;
            else { found = mid; break; }
        }
        if (found < 0) d.push_back(cp);
        else for (uint32_t k = 0; k < UNI_DECOMP_INDEX[3 * found + 2]; k++) d.push_back(UNI_DECOMP_DATA[UNI_DECOMP_INDEX[3 * found + 1] + k]);
    }
    // canonical ordering: a stable sort of every run of non-starters by combining class
    for (size_t i = 0; i < d.size();) {
        if (uni_ccc(d[i]) == 0) { i++; continue; }
        size_t j = i;
        while (j < d.size() && uni_ccc(d[j]) != 0) j++;
        std::stable_sort(d.begin() + i, d.begin() + j, [](uint32_t a, uint32_t b) { return uni_ccc(a) < uni_ccc(b); });
        i = j;
    }
    auto compose_pair = [&](uint32_t a, uint32_t b) -> uint32_t {
        if (a >= LB && a < LB + LC && b >= VB && b < VB + VC) return SB + ((a - LB) * VC + (b - VB)) * TC;
        if (a >= SB && a < SB + SC && (a - SB) % TC == 0 && b > TB && b < TB + TC) return a + (b - TB);
        int lo = 0, hi = UNI_COMPOSE_n - 1;
        while (lo <= hi) {
            int mid = (lo + hi) / 2;
            uint32_t x = UNI_COMPOSE[3 * mid], y = UNI_COMPOSE[3 * mid + 1];
            if (a < x || (a == x && b < y)) hi = mid - 1;
            else if (a > x || (a == x && b > y)) lo = mid + 1;
            else return UNI_COMPOSE[3 * mid + 2];
        }
        return 0;
    };
    std::vector<uint32_t> out;
    long starter = -1;  // index in out of the last starter
    for (uint32_t cp : d) {
        int c = uni_ccc(cp);
        if (starter >= 0) {
            // cp may join the starter unless blocked: a character between them of class 0 or >= cp's
            bool adjacent = (long)out.size() == starter + 1;
            int last = adjacent ? -1 : uni_ccc(out.back());
            if (adjacent || (last != 0 && last < c)) {
                uint32_t comp = compose_pair(out[starter], cp);
                if (comp) { out[starter] = comp; continue; }
            }
        }
        if (c == 0) starter = (long)out.size();
        out.push_back(cp);
    }
    return out;
}

// ---------------------------------------------------------------------------------------------
struct Tokenizer {
    int id = TOK_UNKNOWN, eos_id = -1, vocab_size = 0;
    bool normalize_nfc = false;
    std::unordered_map<std::string, int> encoder;  // byte-level token string -> id
    std::vector<std::string> decoder_bytes;        // id -> the raw bytes it stands for
    std::unordered_map<std::string, int> ranks;    // "a b" -> merge rank
    struct Added { std::vector<uint32_t> content; int id; bool special; };
    std::vector<Added> added;                      // longest first
    std::vector<bool> is_added;
    std::string byte_enc[256];                     // byte -> its printable stand-in, UTF-8
    std::unordered_map<std::string, std::vector<int>> cache;

    void init_bytes() {
        std::vector<int> bs, cs;
        for (int b = '!'; b <= '~'; b++) bs.push_back(b);
        for (int b = 0xA1; b <= 0xAC; b++) bs.push_back(b);
        for (int b = 0xAE; b <= 0xFF; b++) bs.push_back(b);
        cs = bs;
        int n = 0;
        for (int b = 0; b < 256; b++)
            if (std::find(bs.begin(), bs.end(), b) == bs.end()) { bs.push_back(b); cs.push_back(256 + n++); }
        for (size_t i = 0; i < bs.size(); i++) {
            std::string s;
            JsonParser::put_utf8(s, (uint32_t)cs[i]);
            byte_enc[bs[i]] = s;
        }
    }
    void finish_vocab() {
        vocab_size = 0;
        for (auto& kv : encoder) vocab_size = std::max(vocab_size, kv.second + 1);
        for (const Added& a : added) vocab_size = std::max(vocab_size, a.id + 1);
        // byte-level strings -> bytes with a reverse table (one pass)
        std::unordered_map<uint32_t, int> rev;
        for (int k = 0; k < 256; k++) {
            std::vector<uint32_t> e;
            utf8_decode(byte_enc[k], &e);
            rev[e[0]] = k;
        }
        decoder_bytes.assign(vocab_size, "");
        is_added.assign(vocab_size, false);
        for (auto& kv : encoder) {
            std::vector<uint32_t> cps;
            utf8_decode(kv.first, &cps);
            std::string b;
            for (uint32_t c : cps) b += (char)rev[c];
            decoder_bytes[kv.second] = b;
        }
        for (const Added& a : added) {
            decoder_bytes[a.id] = utf8_encode(a.content);
            is_added[a.id] = true;
        }
        std::stable_sort(added.begin(), added.end(), [](const Added& a, const Added& b) { return a.content.size() > b.content.size(); });
        for (const Added& a : added)
            if (utf8_encode(a.content) == "<|endoftext|>") eos_id = a.id;
    }

    // dir holds the vendored files (data/tokenizers)
    void load(int tokenizer_id, const std::string& dir) {
        const char* hint = "the tokenizer files live in data/tokenizers/ of the repository: run from its root or pass --tokenizer-dir";
        init_bytes();
        id = tokenizer_id;
        if (tokenizer_id == TOK_NEOX) {
            std::string path = dir + "/gpt-neox-20b-tokenizer.json";
            JsonValue j = parse_json_file(path, hint);
            const JsonValue* model = j.get("model");
            const JsonValue* vocab = model ? model->get("vocab") : nullptr;
            const JsonValue* merges = model ? model->get("merges") : nullptr;
            const JsonValue* add = j.get("added_tokens");
            if (!vocab || !merges || !add) fail_hint(hint, "%s: not a Hugging Face tokenizer.json (no model.vocab / model.merges / added_tokens)", path.c_str());
            for (const auto& kv : vocab->obj) encoder[kv.first] = (int)kv.second.num;
            for (size_t r = 0; r < merges->arr.size(); r++) {
                const JsonValue& m = merges->arr[r];
                std::string key = m.kind == JsonValue::STR ? m.str : m.arr.size() == 2 ? m.arr[0].str + " " + m.arr[1].str : "";
                ranks.emplace(key, (int)r);
            }
            for (const JsonValue& a : add->arr) {
                Added x;
                utf8_decode(a.get("content")->str, &x.content);
                x.id = (int)a.get("id")->num;
                x.special = a.get("special") && a.get("special")->b;
                added.push_back(x);
            }
            normalize_nfc = true;
        } else if (tokenizer_id == TOK_GPT2) {
            std::string path = dir + "/gpt2-encoder.json";
            JsonValue j = parse_json_file(path, hint);
            for (const auto& kv : j.obj)
                if (kv.first != "<|endoftext|>") encoder[kv.first] = (int)kv.second.num;
            std::string bpe = read_file_text(dir + "/gpt2-vocab.bpe", "tokenizer file", hint);
            size_t pos = bpe.find('\n'), r = 0;  // the first line is a version header
            while (pos != std::string::npos && pos + 1 < bpe.size()) {
                size_t e = bpe.find('\n', pos + 1);
                std::string line = bpe.substr(pos + 1, e == std::string::npos ? std::string::npos : e - pos - 1);
                if (!line.empty() && line.find_first_not_of(" \t\r") != std::string::npos) ranks.emplace(line, (int)r++);
                pos = e;
            }
            Added eot;
            utf8_decode("<|endoftext|>", &eot.content);
            eot.id = 50256;
            eot.special = true;
            added.push_back(eot);
        } else {
            fail_hint("use a model with the gpt-neox-20b or gpt2 tokenizer, or pass --prompt-ids", "no tokenizer for tokenizer id %d", tokenizer_id);
        }
        finish_vocab();
    }

    // ---- encoding ----
    std::vector<int> bpe(const std::string& word) {
        auto it = cache.find(word);
        if (it != cache.end()) return it->second;
        std::vector<uint32_t> cps;
        utf8_decode(word, &cps);
        std::vector<std::string> parts;
        for (uint32_t c : cps) { std::string s; JsonParser::put_utf8(s, c); parts.push_back(s); }
        while (parts.size() > 1) {
            int best = -1, best_rank = 0;
            for (size_t i = 0; i + 1 < parts.size(); i++) {
                auto r = ranks.find(parts[i] + " " + parts[i + 1]);
                if (r != ranks.end() && (best < 0 || r->second < best_rank)) { best = (int)i; best_rank = r->second; }
            }
            if (best < 0) break;
            std::string a = parts[best], b = parts[best + 1];
            std::vector<std::string> merged;
            for (size_t i = 0; i < parts.size();) {  // every occurrence of the best pair, left to right
                if (i + 1 < parts.size() && parts[i] == a && parts[i + 1] == b) { merged.push_back(a + b); i += 2; }
                else merged.push_back(parts[i++]);
            }
            parts.swap(merged);
        }
        std::vector<int> ids;
        for (const std::string& p : parts) {
            auto e = encoder.find(p);
            if (e == encoder.end()) fail("tokenizer: no id for the piece '%s' (corrupt vocabulary?)", p.c_str());
            ids.push_back(e->second);
        }
        if (cache.size() < 200000) cache[word] = ids;
        return ids;
    }
    // GPT-2's pre-tokenizer (data/tokenizer.py's pretokenize), on code points
    static std::vector<std::pair<size_t, size_t>> pretokenize(const std::vector<uint32_t>& t) {
        std::vector<std::pair<size_t, size_t>> out;
        static const char* contractions[] = {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"};
        size_t i = 0, n = t.size();
        auto other = [](uint32_t c) { return !(uni_is_space(c) || uni_is_letter(c) || uni_is_number(c)); };
        while (i < n) {
            uint32_t ch = t[i];
            if (ch == '\'') {
                size_t len = 0;
                for (const char* c : contractions) {
                    size_t L = strlen(c), k = 0;
                    while (k < L && i + k < n && t[i + k] == (uint32_t)(unsigned char)c[k]) k++;
                    if (k == L) { len = L; break; }
                }
                if (len) { out.push_back({i, i + len}); i += len; continue; }
            }
            size_t j = (ch == ' ' && i + 1 < n) ? i + 1 : i;
            uint32_t c = t[j];
            int cls = uni_is_letter(c) ? 0 : uni_is_number(c) ? 1 : other(c) ? 2 : -1;
            if (cls >= 0) {
                size_t k = j;
                while (k < n && (cls == 0 ? uni_is_letter(t[k]) : cls == 1 ? uni_is_number(t[k]) : other(t[k]))) k++;
                out.push_back({i, k});
                i = k;
                continue;
            }
            size_t k = i;  // whitespace run; \s+(?!\S) leaves the last space to prefix the next word
            while (k < n && uni_is_space(t[k])) k++;
            if (k < n && k - i > 1) k--;
            out.push_back({i, k});
            i = k;
        }
        return out;
    }
    // leftmost-longest split on the added tokens of one kind; pieces as (begin, end, id or -1)
    std::vector<std::tuple<size_t, size_t, int>> split_added(const std::vector<uint32_t>& t, bool special) const {
        std::vector<std::tuple<size_t, size_t, int>> out;
        size_t i = 0, start = 0, n = t.size();
        while (i < n) {
            const Added* hit = nullptr;
            for (const Added& a : added)
                if (a.special == special && a.content.size() <= n - i && std::equal(a.content.begin(), a.content.end(), t.begin() + i)) { hit = &a; break; }
            if (hit) {
                if (start < i) out.emplace_back(start, i, -1);
                out.emplace_back(i, i + hit->content.size(), hit->id);
                i += hit->content.size();
                start = i;
            } else {
                i++;
            }
        }
        if (start < n) out.emplace_back(start, n, -1);
        return out;
    }
    std::vector<int> encode(const std::string& text) {
        std::vector<uint32_t> cps;
        size_t bad = 0;
        if (!utf8_decode(text, &cps, &bad))
            fail_hint("pass UTF-8 text, or token ids with --prompt-ids", "the text is not valid UTF-8 (byte %zu)", bad);
        std::vector<int> ids;
        for (auto& sp : split_added(cps, true)) {
            if (std::get<2>(sp) >= 0) { ids.push_back(std::get<2>(sp)); continue; }
            std::vector<uint32_t> piece(cps.begin() + std::get<0>(sp), cps.begin() + std::get<1>(sp));
            if (normalize_nfc) piece = nfc(piece);
            for (auto& sub : split_added(piece, false)) {
                if (std::get<2>(sub) >= 0) { ids.push_back(std::get<2>(sub)); continue; }
                std::vector<uint32_t> part(piece.begin() + std::get<0>(sub), piece.begin() + std::get<1>(sub));
                for (auto& w : pretokenize(part)) {
                    std::string bytes = utf8_encode(part, w.first, w.second), word;
                    for (unsigned char b : bytes) word += byte_enc[b];
                    std::vector<int> x = bpe(word);
                    ids.insert(ids.end(), x.begin(), x.end());
                }
            }
        }
        return ids;
    }
    // ---- decoding ----
    std::string decode_bytes(const std::vector<int>& ids) const {
        std::string s;
        for (int i : ids) {
            if (i < 0 || i >= vocab_size) fail("tokenizer: token id %d is outside the vocab [0, %d)", i, vocab_size);
            s += decoder_bytes[i];
        }
        return s;
    }
};

// the tokenizer files: --tokenizer-dir, else data/tokenizers from here, else beside the binary
static std::string find_tokenizer_dir(const std::string& given, const char* argv0) {
    if (!given.empty()) return given;
    if (access("data/tokenizers", R_OK) == 0) return "data/tokenizers";
    std::string exe = argv0;
    size_t slash = exe.rfind('/');
    std::string beside = (slash == std::string::npos ? std::string(".") : exe.substr(0, slash)) + "/data/tokenizers";
    return access(beside.c_str(), R_OK) == 0 ? beside : "data/tokenizers";
}

// complete UTF-8 characters of a byte stream; a character split across tokens is held back until
// its last byte arrives; invalid bytes come out as U+FFFD, like Python's errors="replace"
struct TokenStream {
    std::string pending;
    std::string push(const std::string& bytes, bool flush = false) {
        pending += bytes;
        std::string out;
        size_t i = 0;
        while (i < pending.size()) {
            unsigned char c = (unsigned char)pending[i];
            size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
            if (n == 0) { out += "\xEF\xBF\xBD"; i++; continue; }
            if (i + n > pending.size()) {
                bool prefix_ok = true;  // a valid start of a character: wait for the rest
                for (size_t k = i + 1; k < pending.size(); k++) prefix_ok &= ((unsigned char)pending[k] >> 6) == 2;
                if (prefix_ok && !flush) break;
                out += "\xEF\xBF\xBD";
                i++;
                continue;
            }
            std::vector<uint32_t> cp;
            if (utf8_decode(pending.substr(i, n), &cp)) out += pending.substr(i, n);
            else { out += "\xEF\xBF\xBD"; i++; continue; }
            i += n;
        }
        pending.erase(0, i);
        return out;
    }
};
