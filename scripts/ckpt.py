"""ckpt.py: read and write kvgpt checkpoints from Python (numpy only).

    import ckpt                       # scripts/ is on sys.path, or: python3 scripts/ckpt.py FILE
    c = ckpt.read("model.ckpt.best")  # -> Checkpoint: .config (dict), .header (dict), .tensors
    c.tensors["h0.attn.w_qkv"]        #    named float32 arrays, shaped as kvgpt declares them

The format is llmc/checkpoint.h's (version 2): a 2304-byte header (magic "KVCK", the GPTConfig
struct verbatim, step, data RNG, float count, best val loss, train T, CRC32C of the parameters and
of the AdamW moments, the data paths, and a CRC32C of the header itself), then the parameters as
one flat float32 buffer in which every tensor starts 16 floats (64 bytes) after a multiple of 16,
then, unless the file holds weights only, the AdamW moments m and v. Both checksums are verified
on read and written on write, so a file written here is checked by the C++ loader like its own.

Tensor names and shapes are the parameter layout llmc/model.h and attention/*.h declare, for
every variant (the tests check it against the C++). Padded rows (the vocab rounded up to a
multiple of 64) are included: tensors["wte"][:config["vocab_size"]] are the real ones.
"""
import math
import os
import struct
import sys

import numpy as np

MAGIC = 0x4B56434B  # "KVCK"
VERSION = 2
HEADER_BYTES = 2304
PATH_CHARS = 1024
ATTN_NAMES = ["mha", "mqa", "gqa", "mla", "mka", "fmka", "kvsplice"]
POS_NAMES = ["rope", "alibi", "none", "learned"]
TOKENIZER_NAMES = {0: "unknown", 1: "gpt-neox-20b", 2: "gpt2"}

# GPTConfig (llmc/config.h), in declaration order: (name, struct code)
CONFIG_FIELDS = [("preset", "32s")] + [(n, "i") for n in (
    "vocab_size", "padded_vocab_size", "max_seq_len", "n_layer", "n_head", "d_model", "d_ff", "head_dim",
    "parallel_residual", "tied_embeddings", "gelu_exact", "tokenizer_id", "attn", "pos")] + \
    [(n, "f") for n in ("rotary_pct", "rope_base", "alibi_slope")] + \
    [(n, "i") for n in ("n_kv_head", "kv_rank", "rope_dim", "q_rank", "splice_rank", "splice_ln")]
CONFIG_FMT = "<" + "".join(code for _, code in CONFIG_FIELDS)
# CheckpointHeader: magic version header_bytes config_bytes | config | 4 pad | step data_rng
# n_floats | has_moments best_val train_T crc_params crc_moments | train_data val_data |
# ranks accum optim spam_interval reserved[11] (zeros here: "unknown") header_crc | 4 pad
HEADER_FMT = "<4I" + CONFIG_FMT[1:] + "4x" + "qQQ" + "IfiII" + f"{PATH_CHARS}s{PATH_CHARS}s" + "15I" + "I" + "4x"
assert struct.calcsize(CONFIG_FMT) == 124 and struct.calcsize(HEADER_FMT) == HEADER_BYTES
HEADER_CRC_OFFSET = 2296  # offsetof(CheckpointHeader, header_crc): the header CRC covers the bytes before it


class CheckpointError(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# CRC32C (Castagnoli), equal to llmc/utils.h's crc32c_update. The bytes are cut into 4 KiB chunks
# whose CRCs (register started at 0) are computed side by side with numpy, then folded in order:
# the CRC is linear over GF(2), so crc(A || B) = shift_|B|(crc(A)) ^ crc0(B), where shift_n is
# the fixed linear map "feed n zero bytes", applied through four 256-entry tables.
_POLY = 0x82F63B78
_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ _POLY if _c & 1 else _c >> 1
    _TABLE.append(_c)
_TABLE_NP = np.array(_TABLE, dtype=np.uint32)
_CHUNK = 4096
_SHIFT_TABLES = None


def _crc_bytes(crc, data):  # the register, not inverted; pure Python, for short tails
    t = _TABLE
    for b in data:
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


def _shift_tables():
    global _SHIFT_TABLES
    if _SHIFT_TABLES is None:
        cols = []  # the image of each basis bit after _CHUNK zero bytes
        for k in range(32):
            c = 1 << k
            for _ in range(_CHUNK):
                c = _TABLE[c & 0xFF] ^ (c >> 8)
            cols.append(c)
        tabs = []
        for p in range(4):
            tab = [0] * 256
            for v in range(1, 256):
                low = v & -v
                tab[v] = tab[v ^ low] ^ cols[8 * p + low.bit_length() - 1]
            tabs.append(tab)
        _SHIFT_TABLES = tabs
    return _SHIFT_TABLES


def crc32c(data, crc=0):
    """CRC32C of bytes / a numpy array's bytes, continuing from crc (0 to start)."""
    buf = np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    reg = (~crc) & 0xFFFFFFFF
    n_chunks = len(buf) // _CHUNK
    if n_chunks >= 4:
        cols = np.ascontiguousarray(buf[:n_chunks * _CHUNK].reshape(n_chunks, _CHUNK).T)
        c = np.zeros(n_chunks, dtype=np.uint32)
        for j in range(_CHUNK):
            c = _TABLE_NP[(c ^ cols[j]) & 0xFF] ^ (c >> 8)
        t0, t1, t2, t3 = _shift_tables()
        for part in c.tolist():
            reg = t0[reg & 0xFF] ^ t1[(reg >> 8) & 0xFF] ^ t2[(reg >> 16) & 0xFF] ^ t3[reg >> 24] ^ part
        rest = buf[n_chunks * _CHUNK:]
    else:
        rest = buf
    reg = _crc_bytes(reg, rest.tobytes())
    return (~reg) & 0xFFFFFFFF


# ---------------------------------------------------------------------------------------------
def config_finalize(cfg):
    """llmc/config.h's config_finalize for the GQA family: the derived fields."""
    cfg = dict(cfg)
    cfg["padded_vocab_size"] = (cfg["vocab_size"] + 63) // 64 * 64
    cfg["head_dim"] = cfg["d_model"] // cfg["n_head"]
    attn = ATTN_NAMES[cfg["attn"]]
    if attn not in ("mha", "mqa", "gqa"):
        raise CheckpointError(f"config_finalize here covers -a mha/mqa/gqa, not -a {attn}")
    if attn == "mha":
        cfg["n_kv_head"] = cfg["n_head"]
    if attn == "mqa":
        cfg["n_kv_head"] = 1
    for k in ("kv_rank", "rope_dim", "q_rank", "splice_rank", "splice_ln"):
        cfg[k] = 0
    return cfg


def rotary_dim(cfg):
    """config.h's rotary_dim(): lrintf(head_dim * rotary_pct) & ~1 in float32, for RoPE."""
    if POS_NAMES[cfg["pos"]] != "rope":
        return 0
    x = np.float32(cfg["head_dim"]) * np.float32(cfg["rotary_pct"])
    return int(np.rint(x)) & ~1


def _attention_specs(cfg, p):
    """one layer's attention tensors, as each variant's declare_params() adds them (attention/*.h)"""
    attn = ATTN_NAMES[cfg["attn"]]
    C, H, hd = cfg["d_model"], cfg["n_head"], cfg["head_dim"]
    if attn in ("mha", "mqa", "gqa"):  # gqa.h
        qkv = (H + 2 * cfg["n_kv_head"]) * hd
        return [(p + "w_qkv", (qkv, C)), (p + "b_qkv", (qkv,)), (p + "w_o", (C, H * hd)), (p + "b_o", (C,))]
    if attn in ("mla", "kvsplice"):  # mla.h (+ kvsplice.h's Splice)
        dc, dR, qr = cfg["kv_rank"], cfg["rope_dim"] if POS_NAMES[cfg["pos"]] == "rope" else 0, cfg["q_rank"]
        qdim = H * (hd + dR)
        s = [(p + "w_dkv", (dc + dR, C)), (p + "kv_norm", (dc,))]
        if attn == "kvsplice":
            r = cfg["splice_rank"]
            s += [(p + "splice.w_c", (r, dc)), (p + "splice.w_e", (dc, r))]
            if cfg["splice_ln"]:
                s += [(p + "splice.ln_w", (r,)), (p + "splice.ln_b", (r,))]
        s.append((p + "w_ukv", (H * 2 * hd, dc)))
        if qr:
            s += [(p + "w_dq", (qr, C)), (p + "q_norm", (qr,)), (p + "w_uq", (qdim, qr))]
        else:
            s.append((p + "w_q", (qdim, C)))
        return s + [(p + "w_o", (C, H * hd)), (p + "b_o", (C,))]
    # mka.h (mka and fmka): 16 memory slots, a router of width max(16, C/4) choosing among 3 levels
    D, M, R = H * hd, 16, max(16, C // 4)
    return [(p + "w_qkv", (3 * D, C)), (p + "b_qkv", (3 * D,)), (p + "mem_slots", (M, C)), (p + "router.w1", (R, C)),
            (p + "router.b1", (R,)), (p + "router.w2", (3, R)), (p + "router.b2", (3,)), (p + "w_o", (C, D)), (p + "b_o", (C,))]


def layout(cfg):
    """[(name, shape, offset in floats)] and the total float count, in the order GPT's constructor
    declares them (llmc/model.h, attention/*.h); test/test_hf.py checks it against the C++ for
    every variant."""
    C, F, Vp, L = cfg["d_model"], cfg["d_ff"], cfg["padded_vocab_size"], cfg["n_layer"]
    specs = [("wte", (Vp, C))]
    if POS_NAMES[cfg["pos"]] == "learned":
        specs.append(("wpe", (cfg["max_seq_len"], C)))
    for l in range(L):
        p = f"h{l}."
        specs += [(p + "ln1.w", (C,)), (p + "ln1.b", (C,))] + _attention_specs(cfg, p + "attn.") + \
                 [(p + "ln2.w", (C,)), (p + "ln2.b", (C,)),
                  (p + "mlp.fc_w", (F, C)), (p + "mlp.fc_b", (F,)),
                  (p + "mlp.proj_w", (C, F)), (p + "mlp.proj_b", (C,))]
    specs += [("lnf.w", (C,)), ("lnf.b", (C,))]
    if not cfg["tied_embeddings"]:
        specs.append(("w_out", (Vp, C)))
    out, total = [], 0
    for name, shape in specs:
        out.append((name, shape, total))
        total += (math.prod(shape) + 15) // 16 * 16
    return out, total


class Checkpoint:
    def __init__(self, config, header, tensors, flat):
        self.config, self.header, self.tensors, self.flat = config, header, tensors, flat


def _unpack_header(raw, path):
    if len(raw) < 8:
        raise CheckpointError(f"{path}: {len(raw)} bytes: not a kvgpt checkpoint")
    magic, version = struct.unpack_from("<2I", raw)
    if magic != MAGIC:
        raise CheckpointError(f"{path}: not a kvgpt checkpoint (bad magic 0x{magic:08x})")
    if version != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {version}; this reader reads version {VERSION}")
    if len(raw) < HEADER_BYTES:
        raise CheckpointError(f"{path}: truncated header")
    v = struct.unpack(HEADER_FMT, raw[:HEADER_BYTES])
    if v[-1] != crc32c(raw[:HEADER_CRC_OFFSET]):
        raise CheckpointError(f"{path}: header checksum mismatch (the file is corrupt)")
    nc = len(CONFIG_FIELDS)
    config = {name: val for (name, _), val in zip(CONFIG_FIELDS, v[4:4 + nc])}
    config["preset"] = config["preset"].split(b"\0")[0].decode()
    rest = v[4 + nc:]
    header = dict(step=rest[0], data_rng=rest[1], n_floats=rest[2], has_moments=rest[3], best_val_loss=rest[4],
                  train_T=rest[5], crc_params=rest[6], crc_moments=rest[7],
                  train_data=rest[8].split(b"\0")[0].decode(), val_data=rest[9].split(b"\0")[0].decode(),
                  ranks=rest[10], accum=rest[11], optim=["unknown", "adamw", "spam"][rest[12]] if rest[12] <= 2 else rest[12],
                  spam_interval=rest[13])
    return config, header


def read(path, moments=False):
    """The checkpoint at path: config, header fields and the named parameter arrays (and, with
    moments=True, .m and .v dicts of the AdamW moments). Raises CheckpointError on anything wrong."""
    with open(path, "rb") as f:
        raw = f.read(HEADER_BYTES)
        config, header = _unpack_header(raw, path)
        n = header["n_floats"]
        parts = 3 if header["has_moments"] else 1
        size = os.fstat(f.fileno()).st_size
        if size != HEADER_BYTES + 4 * n * parts:
            raise CheckpointError(f"{path}: {size} bytes; its header implies {HEADER_BYTES + 4 * n * parts}")
        flat = np.fromfile(f, dtype="<f4", count=n)
        mv = np.fromfile(f, dtype="<f4", count=2 * n) if (moments and parts == 3) else None
    if crc32c(flat) != header["crc_params"]:
        raise CheckpointError(f"{path}: the parameters fail their checksum (the file is corrupt)")
    specs, total = layout(config)
    if total != n:
        raise CheckpointError(f"{path}: {n} floats, but its config implies {total}")

    def split(buf):
        return {name: buf[off:off + math.prod(shape)].reshape(shape) for name, shape, off in specs}
    c = Checkpoint(config, header, split(flat), flat)
    if mv is not None:
        c.m, c.v = split(mv[:n]), split(mv[n:])
    return c


def write(path, config, tensors, train_T=0, step=0, best_val_loss=float("inf")):
    """Writes a weights-only checkpoint (what train_gpt writes as FILE.best: no AdamW moments)
    atomically: a temp file beside path, fsync, rename. config holds every GPTConfig field;
    tensors maps each layout() name to an array of its shape (padded vocab rows included)."""
    specs, total = layout(config)
    flat = np.zeros(total, dtype="<f4")
    want = {name for name, _, _ in specs}
    if set(tensors) != want:
        raise CheckpointError(f"tensors missing {sorted(want - set(tensors))[:5]}, unexpected {sorted(set(tensors) - want)[:5]}")
    for name, shape, off in specs:
        a = np.asarray(tensors[name], dtype=np.float32)
        if a.shape != tuple(shape):
            raise CheckpointError(f"tensor {name}: shape {a.shape}, kvgpt expects {tuple(shape)}")
        if not np.all(np.isfinite(a)):
            raise CheckpointError(f"tensor {name} holds non-finite values")
        flat[off:off + a.size] = a.ravel()
    vals = []
    for name, code in CONFIG_FIELDS:
        v = config[name]
        vals.append(v.encode()[:31] if name == "preset" else v)
    head = struct.pack(HEADER_FMT, MAGIC, VERSION, HEADER_BYTES, 124, *vals, step, 0, total, 0, best_val_loss, train_T,
                       crc32c(flat), 0, b"", b"", *([0] * 15), 0)
    head = head[:HEADER_CRC_OFFSET] + struct.pack("<I", crc32c(head[:HEADER_CRC_OFFSET])) + head[HEADER_CRC_OFFSET + 4:]
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(head)
            flat.tofile(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main(argv):
    if len(argv) != 2 or argv[1] in ("-h", "--help"):
        print("usage: python3 scripts/ckpt.py FILE   (prints the config and every tensor's shape and norm)")
        return 0 if len(argv) == 2 else 2
    try:
        c = read(argv[1])
    except (CheckpointError, OSError) as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    cfg = dict(c.config)
    print(f"{argv[1]}: -a {ATTN_NAMES[cfg['attn']]} -p {POS_NAMES[cfg['pos']]}, tokenizer {TOKENIZER_NAMES.get(cfg['tokenizer_id'])}, "
          f"step {c.header['step']}, {'weights and AdamW moments' if c.header['has_moments'] else 'weights only'}")
    print("config: " + ", ".join(f"{k}={v}" for k, v in cfg.items()))
    for name, a in c.tensors.items():
        print(f"  {name:24s} {str(a.shape):16s} rms {float(np.sqrt(np.mean(np.square(a, dtype=np.float64)))):.4g}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
