"""kvgpt token shard format: write and read.

A shard is a 1024-byte header of 256 little-endian int32 followed by the tokens.
    header[0]  magic 0x4B564750 ("KVGP")        header[1]  version (1)
    header[2]  token count, low 32 bits         header[3]  token count, high 32 bits
    header[4]  bytes per token (2: uint16, 4: uint32; uint32 only when the vocab needs it)
    header[5]  tokenizer id (1 gpt-neox-20b, 2 gpt2)
    header[6]  tokenizer vocab size (every token id is below it)
    header[7]  end-of-text id               header[8]  documents in this shard
The C reader is llmc/dataloader.h; both sides check magic, version, size and token range.
"""
import os
import struct
import tempfile

MAGIC = 0x4B564750
VERSION = 1
HEADER_INTS = 256


def write_shard(path, tokens, tokenizer_id, vocab_size, eos_id, n_docs):
    width = 2 if vocab_size <= 65536 else 4
    header = [0] * HEADER_INTS
    n = len(tokens)
    header[0:9] = [MAGIC, VERSION, n & 0xFFFFFFFF, n >> 32, width, tokenizer_id, vocab_size, eos_id, n_docs]
    bad = [t for t in tokens if not 0 <= t < vocab_size]
    if bad:
        raise ValueError(f"token id {bad[0]} is outside the vocab [0, {vocab_size})")
    try:
        import numpy as np
        body = np.asarray(tokens, dtype=np.uint16 if width == 2 else np.uint32).astype("<u%d" % width).tobytes()
    except ImportError:
        body = struct.pack("<%d%s" % (n, "H" if width == 2 else "I"), *tokens)
    # atomic: write a temp file beside the target, then rename
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp_shard_")
    with os.fdopen(fd, "wb") as f:
        f.write(struct.pack("<%di" % HEADER_INTS, *header))
        f.write(body)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def read_shard(path):
    """Returns (header dict, list of token ids); raises ValueError with the reason on a bad file."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 * HEADER_INTS:
        raise ValueError(f"{path}: file is {len(raw)} bytes, shorter than the 1024-byte header")
    h = struct.unpack("<%di" % HEADER_INTS, raw[: 4 * HEADER_INTS])
    if h[0] != MAGIC:
        raise ValueError(f"{path}: bad magic {h[0]:#x}, expected {MAGIC:#x} (not a kvgpt shard)")
    if h[1] != VERSION:
        raise ValueError(f"{path}: shard version {h[1]}, this reader knows version {VERSION}")
    n = (h[2] & 0xFFFFFFFF) | (h[3] << 32)
    width = h[4]
    if len(raw) != 4 * HEADER_INTS + n * width:
        raise ValueError(f"{path}: truncated or padded: header says {n} tokens of {width} B, file has {len(raw)} B")
    toks = list(struct.unpack("<%d%s" % (n, "H" if width == 2 else "I"), raw[4 * HEADER_INTS:]))
    info = dict(n_tokens=n, width=width, tokenizer_id=h[5], vocab_size=h[6], eos_id=h[7], n_docs=h[8])
    return info, toks
