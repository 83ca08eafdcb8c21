"""hf_interop.py: Hugging Face <-> kvgpt, the library behind scripts/hf_import.py and hf_export.py.

Two architectures map onto kvgpt's MHA model exactly:
  GPTNeoXForCausalLM (Pythia)  <->  -a mha -p rope  (partial rotary, NeoX "rotate half" layout)
  GPT2LMHeadModel              <->  -a mha -p learned
Weights (HF name -> kvgpt name, what changes):
  NeoX  gpt_neox.embed_in                 -> wte (rows padded to a multiple of 64 with zeros)
        layers.L.input_layernorm          -> hL.ln1      post_attention_layernorm -> hL.ln2
        layers.L.attention.query_key_value -> hL.attn.w_qkv / b_qkv: HF's rows are per head
              [q_h, k_h, v_h] (a view (H, 3, hd)); kvgpt's are [all q heads, all k, all v]
        layers.L.attention.dense          -> hL.attn.w_o / b_o
        layers.L.mlp.dense_h_to_4h        -> hL.mlp.fc_w / fc_b    dense_4h_to_h -> proj_w / proj_b
        final_layer_norm                  -> lnf         embed_out -> w_out (untied unless tie_word_embeddings)
  GPT-2 wte, wpe -> wte, wpe; h.L.ln_1 / ln_2 -> hL.ln1 / ln2; ln_f -> lnf; lm_head tied to wte
        h.L.attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj: Conv1D, weights stored (in, out), so
        transposed into kvgpt's (out, in); c_attn's columns are [q | k | v] as kvgpt's rows are.
Every config field that changes the function is read; one kvgpt cannot reproduce is an error
naming the field (HFError), never a silent difference.

Files: config.json plus model.safetensors, sharded *.safetensors with model.safetensors.index.json,
or pytorch_model.bin (sharded too) when torch is importable. Safetensors are read and written by
the small reader below (8-byte little-endian header length, a JSON header of
{name: {dtype, shape, data_offsets}}, then the raw little-endian tensors), so the `safetensors`
package is not needed.
"""
import glob
import json
import math
import os
import shutil
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ckpt  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
TOKENIZER_FILES = {1: os.path.join(ROOT, "data", "tokenizers", "gpt-neox-20b-tokenizer.json"),
                   2: (os.path.join(ROOT, "data", "tokenizers", "gpt2-encoder.json"),
                       os.path.join(ROOT, "data", "tokenizers", "gpt2-vocab.bpe"))}
KVGPT_LN_EPS = 1e-5  # llmc/ops.h layernorm


class HFError(Exception):
    def __init__(self, msg, hint=None):
        super().__init__(msg)
        self.hint = hint


# ---------------------------------------------------------------------------------------------
# safetensors
_ST_DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "F64": np.dtype("<f8"), "BF16": np.dtype("<u2")}
# non-float tensors (old checkpoints' causal-mask buffers are BOOL): read as they are, never as weights
_ST_OTHER = {"BOOL": np.dtype("bool"), "U8": np.dtype("u1"), "I8": np.dtype("i1"), "I16": np.dtype("<i2"), "I32": np.dtype("<i4"),
             "I64": np.dtype("<i8")}


def read_safetensors(path):
    """{name: float32 array} from one .safetensors file (F32, F16, BF16, F64)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise HFError(f"{path}: {size} bytes, too short for a safetensors file")
        (n,) = struct.unpack("<Q", head)
        if n > min(size - 8, 100 << 20):
            raise HFError(f"{path}: header length {n} does not fit the file ({size} bytes): not a safetensors file, or truncated")
        try:
            meta = json.loads(f.read(n).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise HFError(f"{path}: the safetensors header is not valid JSON ({e})")
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + n) if size > 8 + n else np.zeros(0, np.uint8)
    out = {}
    for name, info in meta.items():
        if name == "__metadata__":
            continue
        dt = info.get("dtype")
        if dt not in _ST_DTYPES and dt not in _ST_OTHER:
            raise HFError(f"{path}: tensor {name} has dtype {dt}; the reader takes F32, F16, BF16 and F64 weights",
                          "convert the model to one of those dtypes in transformers (model.float().save_pretrained(...))")
        shape = tuple(int(s) for s in info["shape"])
        b, e = (int(x) for x in info["data_offsets"])
        count = math.prod(shape)
        item = (_ST_DTYPES.get(dt) or _ST_OTHER[dt]).itemsize
        if not (0 <= b <= e <= len(data)) or e - b != count * item:
            raise HFError(f"{path}: tensor {name}: data_offsets [{b}, {e}] do not fit shape {list(shape)} of {dt} "
                          f"in {len(data)} data bytes (truncated or corrupt file)")
        if dt in _ST_OTHER:
            out[name] = np.frombuffer(data[b:e], dtype=_ST_OTHER[dt]).reshape(shape)
            continue
        raw = np.frombuffer(data[b:e], dtype=_ST_DTYPES[dt]).reshape(shape)
        if dt == "BF16":
            a = (raw.astype(np.uint32) << 16).view(np.float32)
        else:
            a = raw.astype(np.float32)
        out[name] = a
    return out


def write_safetensors(path, tensors, metadata=None):
    """tensors {name: array} written as F32 (float32) or F16/BF16 when given as such."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        if a.dtype == np.float32:
            dt, raw = "F32", a.astype("<f4").tobytes()
        elif a.dtype == np.float16:
            dt, raw = "F16", a.astype("<f2").tobytes()
        elif a.dtype == np.bool_:
            dt, raw = "BOOL", a.tobytes()
        else:
            raise HFError(f"write_safetensors: tensor {name} has dtype {a.dtype}")
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)  # the data starts 8-byte aligned, as the format recommends
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def load_state_dict(d):
    """(state dict {name: float32 array}, the files it came from) of an HF model directory."""
    index = os.path.join(d, "model.safetensors.index.json")
    single = os.path.join(d, "model.safetensors")
    if os.path.exists(single):
        return read_safetensors(single), [single]
    if os.path.exists(index):
        files = sorted(set(json.load(open(index))["weight_map"].values()))
        sd = {}
        for fn in files:
            sd.update(read_safetensors(os.path.join(d, fn)))
        return sd, [os.path.join(d, f) for f in files]
    others = sorted(glob.glob(os.path.join(d, "*.safetensors")))
    if others:
        sd = {}
        for fn in others:
            sd.update(read_safetensors(fn))
        return sd, others
    bins = sorted(glob.glob(os.path.join(d, "pytorch_model*.bin")))
    if bins:
        try:
            import torch
        except ImportError:
            raise HFError(f"{d} holds pytorch_model.bin but torch is not importable",
                          "install Debian's python3-torch and run with /usr/bin/python3, or save the model as safetensors")
        sd = {}
        for fn in bins:
            try:
                part = torch.load(fn, map_location="cpu", weights_only=True)
            except TypeError:  # torch < 1.13 has no weights_only
                part = torch.load(fn, map_location="cpu")
            for k, v in part.items():
                sd[k] = v.float().numpy() if v.is_floating_point() else v.numpy()
        return sd, bins
    raise HFError(f"{d}: no model.safetensors, *.safetensors or pytorch_model.bin found",
                  "pass the directory that save_pretrained() wrote (config.json beside the weights)")


# ---------------------------------------------------------------------------------------------
# config
def _get(cfg, key, default=None, required=False):
    if key in cfg and cfg[key] is not None:
        return cfg[key]
    if required:
        raise HFError(f"config.json has no '{key}'")
    return default


def _activation(name, field):
    if name in ("gelu", "gelu_python"):
        return 1  # exact (erf) GELU
    if name in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
        return 0  # the tanh approximation (the three are the same function)
    raise HFError(f"config.json: {field} = '{name}': kvgpt implements exact GELU ('gelu') and its tanh approximation ('gelu_new')")


def _check_eps(v, field):
    if abs(float(v) - KVGPT_LN_EPS) > 1e-12:
        raise HFError(f"config.json: {field} = {v}: kvgpt's LayerNorm uses eps = 1e-5")


def architecture(cfg):
    archs = cfg.get("architectures") or []
    mt = cfg.get("model_type")
    if "GPTNeoXForCausalLM" in archs or (not archs and mt == "gpt_neox"):
        return "neox"
    if "GPT2LMHeadModel" in archs or (not archs and mt == "gpt2"):
        return "gpt2"
    raise HFError(f"config.json: architectures {archs} (model_type {mt}): kvgpt imports GPTNeoXForCausalLM and GPT2LMHeadModel")


def kvgpt_config(hf, tokenizer_id):
    """(kvgpt config dict, architecture, the HF model's training length) from an HF config.json dict."""
    arch = architecture(hf)
    c = {k: 0 for k, _ in ckpt.CONFIG_FIELDS}
    c.update(attn=0, tokenizer_id=tokenizer_id, alibi_slope=0.0, rotary_pct=1.0, rope_base=10000.0)
    if arch == "neox":
        C = _get(hf, "hidden_size", required=True)
        H = _get(hf, "num_attention_heads", required=True)
        c.update(preset="hf-gpt-neox", d_model=C, n_layer=_get(hf, "num_hidden_layers", required=True), n_head=H,
                 d_ff=_get(hf, "intermediate_size", required=True), vocab_size=_get(hf, "vocab_size", required=True),
                 max_seq_len=_get(hf, "max_position_embeddings", 2048),
                 parallel_residual=int(bool(_get(hf, "use_parallel_residual", True))),
                 tied_embeddings=int(bool(_get(hf, "tie_word_embeddings", False))),
                 gelu_exact=_activation(_get(hf, "hidden_act", "gelu"), "hidden_act"), pos=ckpt.POS_NAMES.index("rope"))
        _check_eps(_get(hf, "layer_norm_eps", 1e-5), "layer_norm_eps")
        if not _get(hf, "attention_bias", True):
            raise HFError("config.json: attention_bias = false: kvgpt's attention has biases (q/k/v and output)")
        rp = hf.get("rope_parameters") or {}
        scaling = hf.get("rope_scaling")
        for field, val in (("rope_scaling", scaling), ("rope_parameters", rp)):
            if val:
                kind = val.get("rope_type", val.get("type", "default"))
                if kind != "default":
                    raise HFError(f"config.json: {field} has rope_type '{kind}': kvgpt implements plain RoPE only (no scaling)")
        pct = rp.get("partial_rotary_factor", _get(hf, "partial_rotary_factor", _get(hf, "rotary_pct", 0.25)))
        base = rp.get("rope_theta", _get(hf, "rope_theta", _get(hf, "rotary_emb_base", 10000)))
        hd = C // H
        ndims = int(hd * pct)  # HF: rotary_ndims = int(head_size * rotary_pct)
        if ndims < 2 or ndims % 2:
            raise HFError(f"config.json: rotary_pct {pct} rotates {ndims} of {hd} head dims; kvgpt needs an even count >= 2")
        c["rotary_pct"] = float(np.float32(ndims / hd))
        c["rope_base"] = float(base)
        kvh = _get(hf, "num_key_value_heads", H)
        if kvh != H:
            print(f"note: config.json has num_key_value_heads = {kvh}; GPT-NeoX's fused query_key_value holds all {H} heads' "
                  f"q, k and v (checked against the weights' shape)", file=sys.stderr)
    else:
        C = _get(hf, "n_embd", required=True)
        c.update(preset="hf-gpt2", d_model=C, n_layer=_get(hf, "n_layer", required=True), n_head=_get(hf, "n_head", required=True),
                 d_ff=_get(hf, "n_inner", 4 * C), vocab_size=_get(hf, "vocab_size", required=True),
                 max_seq_len=_get(hf, "n_positions", 1024), parallel_residual=0,
                 tied_embeddings=int(bool(_get(hf, "tie_word_embeddings", True))),
                 gelu_exact=_activation(_get(hf, "activation_function", "gelu_new"), "activation_function"),
                 pos=ckpt.POS_NAMES.index("learned"))
        _check_eps(_get(hf, "layer_norm_epsilon", 1e-5), "layer_norm_epsilon")
        if not _get(hf, "scale_attn_weights", True):
            raise HFError("config.json: scale_attn_weights = false: kvgpt scales the scores by 1/sqrt(head_dim)")
        if _get(hf, "scale_attn_by_inverse_layer_idx", False):
            raise HFError("config.json: scale_attn_by_inverse_layer_idx = true: kvgpt does not scale scores per layer")
        if _get(hf, "add_cross_attention", False):
            raise HFError("config.json: add_cross_attention = true: kvgpt is a decoder-only LM")
    if c["d_model"] % c["n_head"]:
        raise HFError(f"config.json: hidden size {c['d_model']} is not divisible by {c['n_head']} heads")
    return ckpt.config_finalize(c), arch, c["max_seq_len"]  # both families were trained at their position limit


# ---------------------------------------------------------------------------------------------
# tokenizer: the HF directory's files against kvgpt's vendored ones
def _bpe_of_tokenizer_json(path):
    t = json.load(open(path, encoding="utf-8"))
    m = t.get("model") or {}
    merges = [" ".join(x) if isinstance(x, list) else x for x in m.get("merges", [])]
    added = sorted((a["id"], a["content"]) for a in t.get("added_tokens", []))
    return m.get("vocab", {}), merges, added


def _bpe_of_gpt2_files(vocab_json, merges_txt):
    vocab = json.load(open(vocab_json, encoding="utf-8"))
    lines = open(merges_txt, encoding="utf-8").read().split("\n")
    merges = [l for l in lines if l and not l.startswith("#version")]
    return vocab, merges, None


def tokenizer_of_dir(d, arch):
    """(kvgpt tokenizer id, a sentence saying how it was decided). The directory's tokenizer.json
    (or GPT-2's vocab.json + merges.txt) must equal the vendored vocabulary and merges; a
    directory without tokenizer files gets its architecture's tokenizer, with a warning."""
    want = 1 if arch == "neox" else 2
    tj = os.path.join(d, "tokenizer.json")
    vj, mt = os.path.join(d, "vocab.json"), os.path.join(d, "merges.txt")
    if os.path.exists(tj):
        have = _bpe_of_tokenizer_json(tj)
    elif os.path.exists(vj) and os.path.exists(mt):
        have = _bpe_of_gpt2_files(vj, mt)
    else:
        return want, f"warning: {d} has no tokenizer.json: assuming {ckpt.TOKENIZER_NAMES[want]}'s, the {arch} default"
    if want == 1:
        ref = _bpe_of_tokenizer_json(TOKENIZER_FILES[1])
    else:
        ref = _bpe_of_gpt2_files(*TOKENIZER_FILES[2])
    vocab, merges, added = have
    rvocab, rmerges, radded = ref
    what = []
    if vocab != rvocab:
        what.append(f"vocabulary ({len(vocab)} vs {len(rvocab)} entries)")
    if merges != rmerges:
        what.append(f"merges ({len(merges)} vs {len(rmerges)})")
    if want == 1 and added is not None and added != radded:
        what.append(f"added tokens ({len(added)} vs {len(radded)})")
    if want == 2 and added:
        eot = [a for a in added if a[1] == "<|endoftext|>"]
        if eot and eot[0][0] != 50256:
            what.append("<|endoftext|> id")
    if what:
        return 0, (f"warning: the tokenizer in {d} differs from kvgpt's {ckpt.TOKENIZER_NAMES[want]} in its " + ", ".join(what) +
                   ": the checkpoint gets tokenizer 'unknown' (sample_gpt then needs --prompt-ids; data must be tokenized with that tokenizer)")
    return want, f"tokenizer: {os.path.basename(tj) if os.path.exists(tj) else 'vocab.json + merges.txt'} equals kvgpt's {ckpt.TOKENIZER_NAMES[want]}"


# ---------------------------------------------------------------------------------------------
# weights
def _pad_rows(a, rows):
    if a.shape[0] == rows:
        return a
    out = np.zeros((rows,) + a.shape[1:], dtype=np.float32)
    out[:a.shape[0]] = a
    return out


def to_kvgpt(sd, cfg, arch):
    """kvgpt tensors {name: array} from an HF state dict; every HF tensor is used or known to be a buffer."""
    C, L, H, hd, F, V, Vp = (cfg[k] for k in ("d_model", "n_layer", "n_head", "head_dim", "d_ff", "vocab_size", "padded_vocab_size"))
    used = set()

    def take(name, shape):
        if name not in sd:
            raise HFError(f"the weights have no tensor '{name}' (a {arch} model with this config needs it)")
        if not np.issubdtype(np.asarray(sd[name]).dtype, np.floating):
            raise HFError(f"tensor '{name}' has dtype {np.asarray(sd[name]).dtype}: a weight must be floating point")
        a = np.asarray(sd[name], dtype=np.float32)
        if a.shape != tuple(shape):
            raise HFError(f"tensor '{name}' has shape {list(a.shape)}; config.json implies {list(shape)}")
        if not np.all(np.isfinite(a)):
            raise HFError(f"tensor '{name}' holds NaN or Inf values")
        used.add(name)
        return a

    t = {}
    if arch == "neox":
        pre = "gpt_neox." if any(k.startswith("gpt_neox.") for k in sd) else ""
        t["wte"] = _pad_rows(take(pre + "embed_in.weight", (V, C)), Vp)
        for l in range(L):
            p, q = f"{pre}layers.{l}.", f"h{l}."
            t[q + "ln1.w"], t[q + "ln1.b"] = take(p + "input_layernorm.weight", (C,)), take(p + "input_layernorm.bias", (C,))
            t[q + "ln2.w"], t[q + "ln2.b"] = take(p + "post_attention_layernorm.weight", (C,)), take(p + "post_attention_layernorm.bias", (C,))
            w = take(p + "attention.query_key_value.weight", (3 * C, C))
            b = take(p + "attention.query_key_value.bias", (3 * C,))
            t[q + "attn.w_qkv"] = w.reshape(H, 3, hd, C).transpose(1, 0, 2, 3).reshape(3 * C, C)
            t[q + "attn.b_qkv"] = b.reshape(H, 3, hd).transpose(1, 0, 2).reshape(3 * C)
            t[q + "attn.w_o"], t[q + "attn.b_o"] = take(p + "attention.dense.weight", (C, C)), take(p + "attention.dense.bias", (C,))
            t[q + "mlp.fc_w"], t[q + "mlp.fc_b"] = take(p + "mlp.dense_h_to_4h.weight", (F, C)), take(p + "mlp.dense_h_to_4h.bias", (F,))
            t[q + "mlp.proj_w"], t[q + "mlp.proj_b"] = take(p + "mlp.dense_4h_to_h.weight", (C, F)), take(p + "mlp.dense_4h_to_h.bias", (C,))
        t["lnf.w"], t["lnf.b"] = take(pre + "final_layer_norm.weight", (C,)), take(pre + "final_layer_norm.bias", (C,))
        out_name = "embed_out.weight"
        buffers = (".attention.bias", ".attention.masked_bias", ".attention.rotary_emb.inv_freq", "rotary_emb.inv_freq")
    else:
        pre = "transformer." if any(k.startswith("transformer.") for k in sd) else ""
        t["wte"] = _pad_rows(take(pre + "wte.weight", (V, C)), Vp)
        t["wpe"] = take(pre + "wpe.weight", (cfg["max_seq_len"], C))
        for l in range(L):
            p, q = f"{pre}h.{l}.", f"h{l}."
            t[q + "ln1.w"], t[q + "ln1.b"] = take(p + "ln_1.weight", (C,)), take(p + "ln_1.bias", (C,))
            t[q + "ln2.w"], t[q + "ln2.b"] = take(p + "ln_2.weight", (C,)), take(p + "ln_2.bias", (C,))
            t[q + "attn.w_qkv"], t[q + "attn.b_qkv"] = take(p + "attn.c_attn.weight", (C, 3 * C)).T, take(p + "attn.c_attn.bias", (3 * C,))
            t[q + "attn.w_o"], t[q + "attn.b_o"] = take(p + "attn.c_proj.weight", (C, C)).T, take(p + "attn.c_proj.bias", (C,))
            t[q + "mlp.fc_w"], t[q + "mlp.fc_b"] = take(p + "mlp.c_fc.weight", (C, F)).T, take(p + "mlp.c_fc.bias", (F,))
            t[q + "mlp.proj_w"], t[q + "mlp.proj_b"] = take(p + "mlp.c_proj.weight", (F, C)).T, take(p + "mlp.c_proj.bias", (C,))
        t["lnf.w"], t["lnf.b"] = take(pre + "ln_f.weight", (C,)), take(pre + "ln_f.bias", (C,))
        out_name = "lm_head.weight"
        buffers = (".attn.bias", ".attn.masked_bias")
    if cfg["tied_embeddings"]:
        if out_name in sd:  # saved beside its tie: it must be the same matrix
            o = take(out_name, (V, C))
            if not np.array_equal(o, t["wte"][:V]):
                raise HFError(f"config.json ties the embeddings but '{out_name}' differs from the input embedding",
                              "set tie_word_embeddings to false in config.json if the model is really untied")
    else:
        t["w_out"] = _pad_rows(take(out_name, (V, C)), Vp)
    extra = [k for k in sd if k not in used and not k.endswith(buffers)]
    if extra:
        raise HFError(f"the weights hold {len(extra)} tensor(s) a {arch} model of this config does not use, e.g. '{extra[0]}'",
                      "is config.json the one these weights were saved with?")
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in t.items()}


def from_kvgpt(tensors, cfg):
    """(HF config dict, HF state dict) for a kvgpt MHA checkpoint; HFError for what the two
    architectures cannot express."""
    attn, pos = ckpt.ATTN_NAMES[cfg["attn"]], ckpt.POS_NAMES[cfg["pos"]]
    if attn != "mha" and not (attn in ("gqa", "mqa") and cfg["n_kv_head"] == cfg["n_head"]):
        raise HFError(f"cannot express -a {attn} as a Hugging Face architecture: GPTNeoXForCausalLM and GPT2LMHeadModel are "
                      "multi-head attention (every head its own key and value)", "export -a mha models; evaluate the others with ./eval_gpt")
    if pos not in ("rope", "learned"):
        raise HFError(f"cannot express -p {pos} as a Hugging Face architecture: GPTNeoXForCausalLM has RoPE, GPT2LMHeadModel learned positions",
                      "export -p rope (as GPT-NeoX) or -p learned (as GPT-2) models")
    C, L, H, hd, F, V = (cfg[k] for k in ("d_model", "n_layer", "n_head", "head_dim", "d_ff", "vocab_size"))
    eos = {1: 0, 2: 50256}.get(cfg["tokenizer_id"], 0)
    act = "gelu" if cfg["gelu_exact"] else "gelu_new"
    sd = {}
    if pos == "rope":
        rot = ckpt.rotary_dim(cfg)
        pct = rot / hd
        if int(hd * pct) != rot:  # HF computes int(head_size * rotary_pct)
            raise HFError(f"internal: rotary_pct {pct} does not give {rot} rotated dims in HF")
        hf = {"architectures": ["GPTNeoXForCausalLM"], "model_type": "gpt_neox", "hidden_size": C, "num_hidden_layers": L,
              "num_attention_heads": H, "intermediate_size": F, "hidden_act": act, "rotary_pct": pct, "partial_rotary_factor": pct,
              "rotary_emb_base": cfg["rope_base"], "rope_theta": cfg["rope_base"], "rope_scaling": None,
              "max_position_embeddings": cfg["max_seq_len"], "layer_norm_eps": KVGPT_LN_EPS, "use_parallel_residual": bool(cfg["parallel_residual"]),
              "tie_word_embeddings": bool(cfg["tied_embeddings"]), "attention_bias": True, "vocab_size": V, "bos_token_id": eos,
              "eos_token_id": eos, "attention_dropout": 0.0, "hidden_dropout": 0.0, "use_cache": True, "torch_dtype": "float32"}
        sd["gpt_neox.embed_in.weight"] = tensors["wte"][:V]
        for l in range(L):
            p, q = f"gpt_neox.layers.{l}.", f"h{l}."
            sd[p + "input_layernorm.weight"], sd[p + "input_layernorm.bias"] = tensors[q + "ln1.w"], tensors[q + "ln1.b"]
            sd[p + "post_attention_layernorm.weight"], sd[p + "post_attention_layernorm.bias"] = tensors[q + "ln2.w"], tensors[q + "ln2.b"]
            sd[p + "attention.query_key_value.weight"] = tensors[q + "attn.w_qkv"].reshape(3, H, hd, C).transpose(1, 0, 2, 3).reshape(3 * C, C)
            sd[p + "attention.query_key_value.bias"] = tensors[q + "attn.b_qkv"].reshape(3, H, hd).transpose(1, 0, 2).reshape(3 * C)
            sd[p + "attention.dense.weight"], sd[p + "attention.dense.bias"] = tensors[q + "attn.w_o"], tensors[q + "attn.b_o"]
            sd[p + "mlp.dense_h_to_4h.weight"], sd[p + "mlp.dense_h_to_4h.bias"] = tensors[q + "mlp.fc_w"], tensors[q + "mlp.fc_b"]
            sd[p + "mlp.dense_4h_to_h.weight"], sd[p + "mlp.dense_4h_to_h.bias"] = tensors[q + "mlp.proj_w"], tensors[q + "mlp.proj_b"]
        sd["gpt_neox.final_layer_norm.weight"], sd["gpt_neox.final_layer_norm.bias"] = tensors["lnf.w"], tensors["lnf.b"]
        # written even when tied (then equal to embed_in): loads whether or not transformers ties it
        sd["embed_out.weight"] = (tensors["wte"] if cfg["tied_embeddings"] else tensors["w_out"])[:V]
    else:
        if cfg["parallel_residual"]:
            raise HFError("cannot express a parallel-residual model with learned positions: GPT2LMHeadModel is sequential",
                          "export --parallel 0 models as GPT-2, or use -p rope (GPT-NeoX has use_parallel_residual)")
        hf = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_embd": C, "n_layer": L, "n_head": H, "n_inner": F,
              "n_positions": cfg["max_seq_len"], "n_ctx": cfg["max_seq_len"], "vocab_size": V, "activation_function": act,
              "layer_norm_epsilon": KVGPT_LN_EPS, "scale_attn_weights": True, "scale_attn_by_inverse_layer_idx": False,
              "reorder_and_upcast_attn": False, "tie_word_embeddings": bool(cfg["tied_embeddings"]), "bos_token_id": eos,
              "eos_token_id": eos, "attn_pdrop": 0.0, "embd_pdrop": 0.0, "resid_pdrop": 0.0, "use_cache": True, "torch_dtype": "float32"}
        sd["transformer.wte.weight"], sd["transformer.wpe.weight"] = tensors["wte"][:V], tensors["wpe"]
        for l in range(L):
            p, q = f"transformer.h.{l}.", f"h{l}."
            sd[p + "ln_1.weight"], sd[p + "ln_1.bias"] = tensors[q + "ln1.w"], tensors[q + "ln1.b"]
            sd[p + "ln_2.weight"], sd[p + "ln_2.bias"] = tensors[q + "ln2.w"], tensors[q + "ln2.b"]
            sd[p + "attn.c_attn.weight"], sd[p + "attn.c_attn.bias"] = tensors[q + "attn.w_qkv"].T, tensors[q + "attn.b_qkv"]
            sd[p + "attn.c_proj.weight"], sd[p + "attn.c_proj.bias"] = tensors[q + "attn.w_o"].T, tensors[q + "attn.b_o"]
            sd[p + "mlp.c_fc.weight"], sd[p + "mlp.c_fc.bias"] = tensors[q + "mlp.fc_w"].T, tensors[q + "mlp.fc_b"]
            sd[p + "mlp.c_proj.weight"], sd[p + "mlp.c_proj.bias"] = tensors[q + "mlp.proj_w"].T, tensors[q + "mlp.proj_b"]
        sd["transformer.ln_f.weight"], sd["transformer.ln_f.bias"] = tensors["lnf.w"], tensors["lnf.b"]
        if not cfg["tied_embeddings"]:
            sd["lm_head.weight"] = tensors["w_out"][:V]
    return hf, {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sd.items()}


def write_tokenizer(d, tokenizer_id):
    """The vendored tokenizer files, in the layout transformers' AutoTokenizer reads; False when unknown."""
    if tokenizer_id == 1:
        shutil.copyfile(TOKENIZER_FILES[1], os.path.join(d, "tokenizer.json"))
        tc = {"tokenizer_class": "GPTNeoXTokenizerFast", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
              "unk_token": "<|endoftext|>", "add_prefix_space": False}
    elif tokenizer_id == 2:
        shutil.copyfile(TOKENIZER_FILES[2][0], os.path.join(d, "vocab.json"))
        shutil.copyfile(TOKENIZER_FILES[2][1], os.path.join(d, "merges.txt"))
        tc = {"tokenizer_class": "GPT2Tokenizer", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
              "unk_token": "<|endoftext|>", "add_prefix_space": False, "model_max_length": 1024}
    else:
        return False
    json.dump(tc, open(os.path.join(d, "tokenizer_config.json"), "w"), indent=2)
    return True


def run_cli(fn):
    """Runs fn(), turning HFError / CheckpointError into 'Error: ...' + 'HINT: ...' and exit 1."""
    try:
        return fn() or 0
    except HFError as e:
        print(f"Error: {e}", file=sys.stderr)
        if e.hint:
            print(f"HINT: {e.hint}", file=sys.stderr)
        return 1
    except ckpt.CheckpointError as e:
        print(f"Error: {e}", file=sys.stderr)
        print("HINT: pass a checkpoint written by ./train_gpt -o (FILE or FILE.best) or by scripts/hf_import.py", file=sys.stderr)
        return 1
