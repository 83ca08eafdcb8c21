"""Byte-level BPE tokenizers for kvgpt data prep: GPT-NeoX-20B (Pythia's) and GPT-2.

Uses Hugging Face `tokenizers` when it is importable; otherwise a pure-Python byte-level BPE
that reproduces its ids exactly (NFC normalisation for NeoX, NeoX's added whitespace-run
tokens, `<|endoftext|>` as a special token, the GPT-2 pre-tokenizer regex). The fallback is
checked against golden ids made by a real HF tokenizers build (test/test_tokenizer.py).

    tok = load_tokenizer("gpt-neox-20b")   # or "gpt2"
    ids = tok.encode("Hello world")          # [12092, 1533]
"""
import json
import os
import re
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
TOKENIZER_DIR = os.path.join(HERE, "tokenizers")

# tokenizer ids written into shard headers (llmc/dataloader.h has the same table)
TOKENIZER_IDS = {"gpt-neox-20b": 1, "gpt2": 2}


def bytes_to_unicode():
    """GPT-2's reversible map from the 256 bytes to printable unicode characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


# Unicode White_Space (what \s means in the Rust/Oniguruma regex HF uses)
_WHITESPACE = set("\t\n\x0b\x0c\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | {chr(c) for c in range(0x2000, 0x200B)}


def _is_letter(ch):
    return unicodedata.category(ch)[0] == "L"


def _is_number(ch):
    return unicodedata.category(ch)[0] == "N"


def _is_space(ch):
    return ch in _WHITESPACE


_CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")


def pretokenize(text):
    """Splits text like GPT-2's regex
    's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+
    (Python's re has no \\p{..}, so the alternatives are scanned by hand, in regex order)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        # 1. contractions
        if ch == "'":
            m = next((c for c in _CONTRACTIONS if text.startswith(c, i)), None)
            if m:
                out.append(m)
                i += len(m)
                continue
        # 2-4. optional single space then a run of one class
        j = i + 1 if (ch == " " and i + 1 < n) else i
        c = text[j]
        for cls in (_is_letter, _is_number, lambda x: not (_is_space(x) or _is_letter(x) or _is_number(x))):
            if cls(c):
                k = j
                while k < n and cls(text[k]):
                    k += 1
                out.append(text[i:k])
                i = k
                break
        else:
            # 5-6. whitespace run; \s+(?!\S) leaves the last space to prefix the next word
            k = i
            while k < n and _is_space(text[k]):
                k += 1
            if k < n and k - i > 1:
                k -= 1
            out.append(text[i:k])
            i = k
    return out


class ByteLevelBPE:
    def __init__(self, vocab, merges, added, normalize_nfc):
        self.encoder = vocab
        self.decoder = {v: k for k, v in vocab.items()}
        self.ranks = {tuple(m.split(" ")) if isinstance(m, str) else tuple(m): r for r, m in enumerate(merges)}
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
        # added tokens: (content, id, special); matched leftmost-longest before pre-tokenization
        self.added = sorted(added, key=lambda a: -len(a[0]))
        for content, idx, _ in added:
            self.decoder[idx] = content
        self.nfc = normalize_nfc
        self._added_re = {}
        for specials in (True, False):
            cands = [a for a in self.added if a[2] == specials]  # sorted longest first
            self._added_re[specials] = (re.compile("|".join(re.escape(c) for c, _, _ in cands)) if cands else None,
                                        {c: i for c, i, _ in cands})
        self.cache = {}
        self.vocab_size = max(self.decoder) + 1
        self.eos_id = next(idx for content, idx, _ in added if content == "<|endoftext|>")

    def _bpe(self, word):
        if word in self.cache:
            return self.cache[word]
        parts = list(word)
        while len(parts) > 1:
            best, best_rank = None, None
            for i in range(len(parts) - 1):
                r = self.ranks.get((parts[i], parts[i + 1]))
                if r is not None and (best_rank is None or r < best_rank):
                    best, best_rank = i, r
            if best is None:
                break
            a, b = parts[best], parts[best + 1]
            merged, i = [], 0
            while i < len(parts):  # merge every occurrence of the best pair, left to right
                if i < len(parts) - 1 and parts[i] == a and parts[i + 1] == b:
                    merged.append(a + b)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        ids = [self.encoder[p] for p in parts]
        if len(self.cache) < 200000:
            self.cache[word] = ids
        return ids

    def _split_added(self, text, specials):
        """Leftmost-longest split on added tokens; yields (piece, id or None). One compiled
        alternation, longest first: at the leftmost position where any token matches, re tries the
        alternatives in order, so the first that matches is the longest (what HF's matcher picks)."""
        pat, ids = self._added_re[specials]
        if pat is None:
            yield text, None
            return
        start = 0
        for m in pat.finditer(text):
            if start < m.start():
                yield text[start:m.start()], None
            yield m.group(), ids[m.group()]
            start = m.end()
        if start < len(text):
            yield text[start:], None

    def encode(self, text):
        ids = []
        for piece, sid in self._split_added(text, True):  # special tokens match the raw text
            if sid is not None:
                ids.append(sid)
                continue
            if self.nfc:
                piece = unicodedata.normalize("NFC", piece)
            for sub, aid in self._split_added(piece, False):  # normalized added tokens
                if aid is not None:
                    ids.append(aid)
                    continue
                for word in pretokenize(sub):
                    ids.extend(self._bpe("".join(self.byte_encoder[b] for b in word.encode("utf-8"))))
        return ids

    def decode(self, ids):
        out = bytearray()
        for i in ids:
            tok = self.decoder[i]
            if i in {a[1] for a in self.added}:
                out += tok.encode("utf-8")
            else:
                out += bytes(self.byte_decoder[c] for c in tok)
        return out.decode("utf-8", errors="replace")


class HFTokenizer:
    """Thin wrapper so the HF tokenizers library has the same interface as the fallback."""

    def __init__(self, tk, eos_id):
        self.tk = tk
        self.eos_id = eos_id
        self.vocab_size = tk.get_vocab_size(with_added_tokens=True)

    def encode(self, text):
        return self.tk.encode(text, add_special_tokens=False).ids

    def decode(self, ids):
        return self.tk.decode(ids, skip_special_tokens=False)


def load_tokenizer(name="gpt-neox-20b", prefer_hf=True):
    if name not in TOKENIZER_IDS:
        raise ValueError(f"unknown tokenizer '{name}'; choose one of {sorted(TOKENIZER_IDS)}")
    if name == "gpt-neox-20b":
        path = os.path.join(TOKENIZER_DIR, "gpt-neox-20b-tokenizer.json")
        if prefer_hf:
            try:
                from tokenizers import Tokenizer
                return HFTokenizer(Tokenizer.from_file(path), 0)
            except ImportError:
                pass
        d = json.load(open(path, encoding="utf-8"))
        added = [(a["content"], a["id"], a["special"]) for a in d["added_tokens"]]
        return ByteLevelBPE(d["model"]["vocab"], d["model"]["merges"], added, normalize_nfc=True)
    # gpt2: OpenAI's encoder.json + vocab.bpe (no normaliser, <|endoftext|> = 50256)
    enc = json.load(open(os.path.join(TOKENIZER_DIR, "gpt2-encoder.json"), encoding="utf-8"))
    lines = open(os.path.join(TOKENIZER_DIR, "gpt2-vocab.bpe"), encoding="utf-8").read().split("\n")
    merges = [l for l in lines[1:] if l.strip()]
    if prefer_hf:
        try:
            from tokenizers import Tokenizer, models, pre_tokenizers, decoders, AddedToken
            tk = Tokenizer(models.BPE(enc, [tuple(m.split(" ")) for m in merges]))
            tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            tk.decoder = decoders.ByteLevel()
            tk.add_special_tokens([AddedToken("<|endoftext|>", special=True)])
            return HFTokenizer(tk, 50256)
        except ImportError:
            pass
    return ByteLevelBPE({k: v for k, v in enc.items() if k != "<|endoftext|>"}, merges,
                        [("<|endoftext|>", 50256, True)], normalize_nfc=False)
