"""Hugging Face interop tests (CPU; numpy + Debian's python3-torch): random weights saved under HF
names -> scripts/hf_import.py -> kvgpt's logits (test/logits_dump, the real C++ forward) against
an independent float64 PyTorch forward of the HF architecture (test/hf_reference.py), for
GPT-NeoX and GPT-2 in their config variants and file formats; import -> export -> import bitwise;
the tokenizer check; the checkpoint reader/writer (scripts/ckpt.py) against the C++ one; every
unsupported config field and broken file a clear error. Ends with "N passed, N failed[, N skipped]".
"""
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "scripts"))
sys.path.insert(0, os.path.join(ROOT, "test"))
try:
    import numpy as np
    import torch  # noqa: F401
except ImportError as e:
    print(f"skipped: the HF interop tests need numpy and torch ({e}); install Debian's python3-numpy python3-torch "
          f"and run them with /usr/bin/python3 (this is {sys.executable})")
    print("0 passed, 0 failed, 1 skipped")
    sys.exit(0)
import ckpt  # noqa: E402
import hf_export  # noqa: E402
import hf_import  # noqa: E402
import hf_interop as hi  # noqa: E402
import hf_reference as ref  # noqa: E402
from pytestlib import run_tests, test  # noqa: E402

TMP = tempfile.mkdtemp(prefix="kvgpt_hf_test.")
T_TOKENS = 300  # "a few hundred tokens": crosses every 64/128 block of the CPU kernels
REL_TOL = 1e-4



NEOX = {"architectures": ["GPTNeoXForCausalLM"], "model_type": "gpt_neox", "hidden_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "intermediate_size": 256, "hidden_act": "gelu", "rotary_pct": 0.25, "rotary_emb_base": 10000,
        "max_position_embeddings": 2048, "layer_norm_eps": 1e-5, "use_parallel_residual": True, "tie_word_embeddings": False,
        "vocab_size": 50304, "rope_scaling": None, "attention_bias": True}
GPT2 = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_embd": 48, "n_layer": 2, "n_head": 4, "n_inner": None,
        "n_positions": 320, "vocab_size": 50257, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
        "scale_attn_weights": True, "tie_word_embeddings": True}


def save_hf(d, cfg, sd, fmt="f32", tokenizer=True):
    """an HF model directory: config.json, the weights in format fmt, the vendored tokenizer files"""
    os.makedirs(d, exist_ok=True)
    json.dump(cfg, open(os.path.join(d, "config.json"), "w"))
    if fmt in ("f32", "f16"):
        dt = np.float16 if fmt == "f16" else np.float32
        hi.write_safetensors(os.path.join(d, "model.safetensors"), {k: v if v.dtype == bool else v.astype(dt) for k, v in sd.items()})
    elif fmt == "bf16":  # written by hand: the writer does not produce BF16, the reader must read it
        write_bf16(os.path.join(d, "model.safetensors"), sd)
    elif fmt == "sharded":
        names = sorted(sd)
        half = len(names) // 2
        wm = {}
        for i, part in enumerate((names[:half], names[half:])):
            fn = f"model-{i + 1:05d}-of-00002.safetensors"
            hi.write_safetensors(os.path.join(d, fn), {k: sd[k] for k in part})
            wm.update({k: fn for k in part})
        json.dump({"metadata": {}, "weight_map": wm}, open(os.path.join(d, "model.safetensors.index.json"), "w"))
    elif fmt == "bin":
        torch.save({k: torch.from_numpy(v.copy()) for k, v in sd.items()}, os.path.join(d, "pytorch_model.bin"))
    if tokenizer:
        tid = 1 if hi.architecture(cfg) == "neox" else 2
        hi.write_tokenizer(d, tid)
    return d


def write_bf16(path, sd):
    import struct
    header, blobs, off = {}, [], 0
    for k in sorted(sd):
        bits = (sd[k].astype(np.float32).view(np.uint32) >> 16).astype("<u2")  # truncation: exactly representable back
        raw = bits.tobytes()
        header[k] = {"dtype": "BF16", "shape": list(sd[k].shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def bf16_round(sd):
    return {k: ((v.astype(np.float32).view(np.uint32) >> 16) << 16).view(np.float32) if v.dtype != bool else v for k, v in sd.items()}


def kvgpt_logits(path, ids):
    idf, out = os.path.join(TMP, "ids.i32"), os.path.join(TMP, "logits.f32")
    np.asarray(ids, dtype="<i4").tofile(idf)
    r = subprocess.run([os.path.join(ROOT, "test", "logits_dump"), path, idf, out], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return np.fromfile(out, dtype="<f4").reshape(len(ids), -1)


def compare(got, want, what):
    assert got.shape == want.shape, f"{what}: shape {got.shape} vs {want.shape}"
    assert np.all(np.isfinite(got)), f"{what}: kvgpt's logits hold NaN/Inf"
    err = np.max(np.abs(got.astype(np.float64) - want)) / np.max(np.abs(want))
    assert err <= REL_TOL, f"{what}: max |kvgpt - reference| / max |reference| = {err:.3g} > {REL_TOL}"
    assert np.mean(np.argmax(got, -1) == np.argmax(want, -1)) > 0.99, f"{what}: argmax differs"
    return err


def ids_for(vocab, seed=0):
    return np.random.default_rng(seed).integers(0, vocab, T_TOKENS).tolist()


def parity(name, arch, cfg, fmt="f32", seed=1):
    sd = ref.random_state_dict(arch, cfg, seed)
    d = save_hf(os.path.join(TMP, name), cfg, sd, fmt)
    out = os.path.join(TMP, name + ".ckpt")
    hf_import.import_dir(d, out, quiet=True)
    if fmt == "f16":
        sd = {k: v.astype(np.float16).astype(np.float32) if v.dtype != bool else v for k, v in sd.items()}
    if fmt == "bf16":
        sd = bf16_round(sd)
    ids = ids_for(cfg["vocab_size"], seed)
    want = (ref.neox_logits if arch == "neox" else ref.gpt2_logits)(sd, cfg, ids)
    err = compare(kvgpt_logits(out, ids), want, name)
    print(f"    {name}: max rel err {err:.2e} over {T_TOKENS} tokens")
    return out


@test
def crc32c_matches_the_cpp_checksum():
    assert ckpt.crc32c(b"123456789") == 0xE3069283  # the check value llmc/utils.h's test uses
    r = np.random.default_rng(0)
    for n in (0, 1, 7, 4096 * 4 - 1, 4096 * 4, 4096 * 5 + 3, 100_003):
        b = r.integers(0, 256, n, dtype=np.uint8).tobytes()
        want = (~ckpt._crc_bytes(0xFFFFFFFF, b)) & 0xFFFFFFFF
        assert ckpt.crc32c(b) == want, n
        assert ckpt.crc32c(b[n // 3:], ckpt.crc32c(b[:n // 3])) == want, f"continued crc, n={n}"


@test
def neox_pythia_shape_parity():  # partial rotary 25%, parallel residual, untied, exact GELU
    parity("neox_pythia", "neox", NEOX)


@test
def neox_variants_parity():  # full rotary, another base, sequential residual, tied, tanh GELU; F16 and sharded files
    c = dict(NEOX, rotary_pct=1.0, rotary_emb_base=500, use_parallel_residual=False, tie_word_embeddings=True, hidden_act="gelu_new")
    parity("neox_full_rotary_f16", "neox", c, "f16", seed=2)
    c2 = dict(NEOX, rotary_pct=0.5, partial_rotary_factor=0.5, rope_theta=2000, rotary_emb_base=2000, num_hidden_layers=3)
    parity("neox_sharded", "neox", c2, "sharded", seed=3)


@test
def neox_pytorch_model_bin():
    parity("neox_bin", "neox", dict(NEOX, num_hidden_layers=1), "bin", seed=4)


@test
def gpt2_parity():  # tied, tanh GELU; untied with exact GELU in BF16
    parity("gpt2", "gpt2", GPT2)
    parity("gpt2_untied_bf16", "gpt2", dict(GPT2, tie_word_embeddings=False, activation_function="gelu", n_inner=96), "bf16", seed=5)


@test
def import_export_import_is_bitwise():
    for name, arch, cfg in (("rt_neox", "neox", NEOX), ("rt_neox_tied", "neox", dict(NEOX, tie_word_embeddings=True, use_parallel_residual=False)),
                            ("rt_gpt2", "gpt2", GPT2), ("rt_gpt2_untied", "gpt2", dict(GPT2, tie_word_embeddings=False))):
        sd = ref.random_state_dict(arch, cfg, 7)
        d = save_hf(os.path.join(TMP, name), cfg, sd)
        a, b = os.path.join(TMP, name + ".a.ckpt"), os.path.join(TMP, name + ".b.ckpt")
        hf_import.import_dir(d, a, quiet=True)
        e = os.path.join(TMP, name + "_export")
        hf_export.export(a, e, quiet=True)
        hf_import.import_dir(e, b, quiet=True)
        assert open(a, "rb").read() == open(b, "rb").read(), f"{name}: import -> export -> import is not bitwise identical"
        # the exported weights are the original HF weights (minus the buffers), under HF's names
        back, _ = hi.load_state_dict(e)
        for k, v in sd.items():
            if k.endswith(("inv_freq", "attn.bias", "attention.bias")):
                continue
            kk = k if k in back else k.replace("transformer.", "")
            assert np.array_equal(back[kk], v), f"{name}: exported {k} differs from the original"
        assert os.path.exists(os.path.join(e, "tokenizer_config.json"))


@test
def kvgpt_trained_checkpoint_exports_and_reads():
    """a checkpoint train_gpt wrote (with AdamW moments) reads in Python, exports, and its export's
    reference logits equal kvgpt's: the path a kvgpt-trained model takes into transformers"""
    out = os.path.join(TMP, "trained.ckpt")
    r = subprocess.run([os.path.join(ROOT, "train_gpt"), "-x", "2", "-b", "2", "-t", "32", "--layers", "1", "--d-model", "32",
                        "--heads", "2", "--d-ff", "64", "-o", out, "-L", os.path.join(TMP, "trained.jsonl"), "-v", "1", "-d", "cpu"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    for path in (out, out + ".best"):
        c = ckpt.read(path, moments=True)
        assert c.config["attn"] == 0 and c.config["pos"] == 0 and c.header["step"] == 2
        assert (path == out) == bool(c.header["has_moments"])
        assert c.tensors["h0.attn.w_qkv"].shape == (3 * 32, 32)
    e = os.path.join(TMP, "trained_export")
    hf = hf_export.export(out + ".best", e, quiet=True)
    sd, _ = hi.load_state_dict(e)
    ids = ids_for(hf["vocab_size"], 9)[:64]
    compare(kvgpt_logits(out + ".best", ids), ref.neox_logits(sd, hf, ids), "train_gpt checkpoint vs its export")
    # a flipped bit in the parameters: both readers refuse it
    bad = os.path.join(TMP, "flipped.ckpt")
    raw = bytearray(open(out + ".best", "rb").read())
    raw[ckpt.HEADER_BYTES + 100] ^= 0x10
    open(bad, "wb").write(raw)
    try:
        ckpt.read(bad)
        raise AssertionError("ckpt.read accepted a corrupt checkpoint")
    except ckpt.CheckpointError as ex:
        assert "checksum" in str(ex)
    r = subprocess.run([os.path.join(ROOT, "test", "logits_dump"), bad, os.path.join(TMP, "ids.i32"), os.path.join(TMP, "x.f32")],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "checksum" in r.stderr, r.stderr


@test
def ckpt_py_reads_every_variant_as_the_cpp_declares_it():
    """scripts/ckpt.py's layout (names, offsets, sizes) == the C++ ParamSet for every variant, on
    checkpoints train_gpt wrote; and its writer's output loads in C++ (bitwise round trip)"""
    shape = ["--layers", "2", "--d-model", "32", "--heads", "4", "--d-ff", "64", "-x", "1", "-b", "1", "-t", "16", "-v", "1", "-d", "cpu"]
    for i, flags in enumerate((["-a", "mha", "-p", "learned", "--tied", "1"], ["-a", "mqa", "-p", "alibi"], ["-a", "gqa", "-g", "2"],
                               ["-a", "mla", "-k", "16"], ["-a", "mla", "-k", "16", "--q-rank", "8", "-p", "alibi"],
                               ["-a", "kvsplice", "-k", "16", "-r", "8", "--splice-ln", "1"], ["-a", "kvsplice", "-k", "16", "-r", "4", "-p", "none"],
                               ["-a", "mka"], ["-a", "fmka", "-p", "alibi"])):
        out = os.path.join(TMP, f"variant{i}.ckpt")
        r = subprocess.run([os.path.join(ROOT, "train_gpt"), *flags, *shape, "-o", out, "-L", out + ".jsonl"], capture_output=True, text=True, cwd=ROOT)
        assert r.returncode == 0, r.stdout[-1500:] + r.stderr[-1500:]
        r = subprocess.run([os.path.join(ROOT, "test", "logits_dump"), "--layout", out], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        rows = [l.split() for l in r.stdout.strip().split("\n")]
        cpp = [(n, int(o), int(k)) for n, o, k in rows[:-1]]
        c = ckpt.read(out, moments=True)
        specs, total = ckpt.layout(c.config)
        py = [(n, off, int(np.prod(shape))) for n, shape, off in specs]
        assert py == cpp and total == int(rows[-1][1]), f"{flags}: ckpt.py's layout differs from the C++ one: " + \
            str([(a, b) for a, b in zip(py, cpp) if a != b][:3])
        assert set(c.m) == set(c.tensors) and c.header["has_moments"] == 1
        again = os.path.join(TMP, f"variant{i}.rewritten.ckpt")
        ckpt.write(again, c.config, c.tensors, train_T=16)
        ids = ids_for(c.config["vocab_size"], i)[:20]
        assert np.array_equal(kvgpt_logits(out, ids), kvgpt_logits(again, ids)), f"{flags}: rewritten checkpoint differs"


@test
def imported_checkpoint_runs_in_eval_sample_and_train():
    d = save_hf(os.path.join(TMP, "programs"), NEOX, ref.random_state_dict("neox", NEOX, 11))
    c = os.path.join(TMP, "programs.ckpt")
    hf_import.import_dir(d, c, quiet=True)
    r = subprocess.run([os.path.join(ROOT, "sample_gpt"), "-c", c, "--prompt", "Hello world", "-n", "5", "--greedy"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and "Hello world" in r.stdout, r.stdout + r.stderr
    r = subprocess.run([os.path.join(ROOT, "eval_gpt"), "-c", c, "-t", "64", "--protocols", "disjoint", "--max-windows", "4",
                        "--json", os.path.join(TMP, "programs.eval.json")], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    # fine-tuning: --init-from takes the imported weights (lr 1e-30: they must come out unchanged)
    out = os.path.join(TMP, "finetuned.ckpt")
    r = subprocess.run([os.path.join(ROOT, "train_gpt"), "--init-from", c, "-x", "1", "-b", "2", "-t", "64", "-l", "1e-30", "-c", "0",
                        "-o", out, "-L", os.path.join(TMP, "ft.jsonl"), "-v", "1", "-d", "cpu"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "initialised from" in r.stdout
    a, b = ckpt.read(c), ckpt.read(out)
    assert b.header["step"] == 1 and b.header["has_moments"] == 1
    assert np.array_equal(a.flat, b.flat), "--init-from did not start from the imported weights"
    r = subprocess.run([os.path.join(ROOT, "train_gpt"), "--init-from", c, "-a", "mla", "-x", "1"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode != 0 and "contradicts the checkpoint" in r.stdout + r.stderr, r.stdout + r.stderr
    r = subprocess.run([os.path.join(ROOT, "train_gpt"), "--init-from", c, "--resume", out, "-x", "1"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode != 0 and "pick one" in r.stdout + r.stderr


@test
def init_from_takes_a_preset_of_the_same_shape():
    """-m names a shape: an imported model of the tiny preset's shape passes -m tiny, not -m gpt2-124m"""
    cfg = dict(NEOX, hidden_size=128, num_hidden_layers=4, intermediate_size=512)
    d = save_hf(os.path.join(TMP, "tiny_shape"), cfg, ref.random_state_dict("neox", cfg, 15))
    c = os.path.join(TMP, "tiny_shape.ckpt")
    hf_import.import_dir(d, c, quiet=True)
    r = subprocess.run([os.path.join(ROOT, "train_gpt"), "--init-from", c, "-m", "tiny", "-x", "0"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and "initial weights" in r.stdout, r.stdout[-1500:] + r.stderr[-1500:]
    r = subprocess.run([os.path.join(ROOT, "train_gpt"), "--init-from", c, "-m", "gpt2-124m", "-x", "0"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode != 0 and "-m gpt2-124m contradicts" in r.stdout + r.stderr, r.stdout + r.stderr


@test
def tokenizer_is_checked_against_the_directory():
    sd = ref.random_state_dict("neox", dict(NEOX, num_hidden_layers=1), 12)
    cfg = dict(NEOX, num_hidden_layers=1)
    d = save_hf(os.path.join(TMP, "tok_ok"), cfg, sd)
    assert hi.tokenizer_of_dir(d, "neox")[0] == 1
    g = save_hf(os.path.join(TMP, "tok_gpt2"), GPT2, ref.random_state_dict("gpt2", GPT2, 12))
    assert hi.tokenizer_of_dir(g, "gpt2")[0] == 2
    # a tokenizer.json that differs (one merge dropped): tokenizer "unknown", with a warning
    t = json.load(open(os.path.join(d, "tokenizer.json"), encoding="utf-8"))
    t["model"]["merges"] = t["model"]["merges"][:-1]
    json.dump(t, open(os.path.join(d, "tokenizer.json"), "w"))
    tid, msg = hi.tokenizer_of_dir(d, "neox")
    assert tid == 0 and "differs" in msg and "merges" in msg, msg
    out = os.path.join(TMP, "tok_bad.ckpt")
    hf_import.import_dir(d, out, quiet=True)
    assert ckpt.read(out).config["tokenizer_id"] == 0
    os.remove(os.path.join(d, "tokenizer.json"))
    tid, msg = hi.tokenizer_of_dir(d, "neox")
    assert tid == 1 and msg.startswith("warning") and "no tokenizer.json" in msg


def expect_error(fn, *needles):
    try:
        fn()
    except (hi.HFError, ckpt.CheckpointError) as e:
        for n in needles:
            assert n in str(e), f"error {str(e)!r} does not name {n!r}"
        return
    raise AssertionError(f"no error; expected one naming {needles}")


@test
def unsupported_config_fields_are_errors_naming_the_field():
    sd = ref.random_state_dict("neox", dict(NEOX, num_hidden_layers=1), 13)
    base = dict(NEOX, num_hidden_layers=1)
    for i, (change, needle) in enumerate([({"rope_scaling": {"type": "linear", "factor": 2.0}}, "rope_scaling"),
                                          ({"hidden_act": "relu"}, "hidden_act"), ({"attention_bias": False}, "attention_bias"),
                                          ({"layer_norm_eps": 1e-6}, "layer_norm_eps"), ({"rotary_pct": 0.1}, "rotary_pct"),
                                          ({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}, "architectures")]):
        d = save_hf(os.path.join(TMP, f"bad_cfg{i}"), dict(base, **change), sd, tokenizer=False)
        expect_error(lambda: hf_import.import_dir(d, os.path.join(TMP, "never.ckpt"), quiet=True), needle)
    gsd = ref.random_state_dict("gpt2", GPT2, 13)
    for i, (change, needle) in enumerate([({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx"),
                                          ({"activation_function": "swish"}, "activation_function"),
                                          ({"scale_attn_weights": False}, "scale_attn_weights")]):
        d = save_hf(os.path.join(TMP, f"bad_gcfg{i}"), dict(GPT2, **change), gsd, tokenizer=False)
        expect_error(lambda: hf_import.import_dir(d, os.path.join(TMP, "never.ckpt"), quiet=True), needle)
    assert not os.path.exists(os.path.join(TMP, "never.ckpt"))


@test
def broken_weights_are_clear_errors():
    cfg = dict(NEOX, num_hidden_layers=1)
    sd = ref.random_state_dict("neox", cfg, 14)
    never = os.path.join(TMP, "never.ckpt")
    missing = {k: v for k, v in sd.items() if "dense_4h_to_h.bias" not in k}
    d = save_hf(os.path.join(TMP, "w_missing"), cfg, missing, tokenizer=False)
    expect_error(lambda: hf_import.import_dir(d, never, quiet=True), "dense_4h_to_h.bias")
    wrong = dict(sd, **{"gpt_neox.layers.0.attention.dense.weight": sd["gpt_neox.layers.0.attention.dense.weight"][:, :32]})
    d = save_hf(os.path.join(TMP, "w_shape"), cfg, wrong, tokenizer=False)
    expect_error(lambda: hf_import.import_dir(d, never, quiet=True), "attention.dense.weight", "shape")
    extra = dict(sd, **{"gpt_neox.layers.1.attention.dense.weight": sd["gpt_neox.layers.0.attention.dense.weight"]})
    d = save_hf(os.path.join(TMP, "w_extra"), cfg, extra, tokenizer=False)
    expect_error(lambda: hf_import.import_dir(d, never, quiet=True), "does not use", "layers.1")
    nan = copy.deepcopy(sd)
    nan["gpt_neox.final_layer_norm.bias"][3] = np.nan
    d = save_hf(os.path.join(TMP, "w_nan"), cfg, nan, tokenizer=False)
    expect_error(lambda: hf_import.import_dir(d, never, quiet=True), "final_layer_norm.bias", "NaN")
    d = save_hf(os.path.join(TMP, "w_trunc"), cfg, sd, tokenizer=False)
    p = os.path.join(d, "model.safetensors")
    os.truncate(p, os.path.getsize(p) - 1000)
    expect_error(lambda: hf_import.import_dir(d, never, quiet=True), "truncated")
    open(p, "wb").write(b"\xff" * 64)
    expect_error(lambda: hf_import.import_dir(d, never, quiet=True), "safetensors")
    os.remove(p)
    expect_error(lambda: hf_import.import_dir(d, never, quiet=True), "no model.safetensors")
    assert not os.path.exists(never)


@test
def export_refuses_what_hf_cannot_express_and_protects_files():
    # checkpoints of other variants and encodings, written through the Python writer from a known layout
    good = os.path.join(TMP, "rt_neox.a.ckpt")
    if not os.path.exists(good):
        import_export_import_is_bitwise()
    c = ckpt.read(good)
    for attn, pos, needle in ((None, "alibi", "-p alibi"), (None, "none", "-p none")):
        cfg = dict(c.config, pos=ckpt.POS_NAMES.index(pos))
        p = os.path.join(TMP, f"exp_{pos}.ckpt")
        ckpt.write(p, cfg, c.tensors)
        expect_error(lambda: hf_export.export(p, os.path.join(TMP, f"exp_{pos}_dir"), quiet=True), "cannot express", needle)
    g = dict(c.config, attn=ckpt.ATTN_NAMES.index("gqa"), n_kv_head=2)
    gt = dict(c.tensors)
    for l in range(c.config["n_layer"]):
        gt[f"h{l}.attn.w_qkv"] = gt[f"h{l}.attn.w_qkv"][:(4 + 4) * 16]
        gt[f"h{l}.attn.b_qkv"] = gt[f"h{l}.attn.b_qkv"][:(4 + 4) * 16]
    p = os.path.join(TMP, "exp_gqa.ckpt")
    ckpt.write(p, g, gt)
    expect_error(lambda: hf_export.export(p, os.path.join(TMP, "exp_gqa_dir"), quiet=True), "cannot express -a gqa")
    # MLA: a checkpoint train_gpt writes (one step)
    mla = os.path.join(TMP, "mla.ckpt")
    r = subprocess.run([os.path.join(ROOT, "train_gpt"), "-a", "mla", "-k", "16", "-x", "1", "-b", "1", "-t", "16", "--layers", "1",
                        "--d-model", "32", "--heads", "2", "--d-ff", "64", "-o", mla, "-L", os.path.join(TMP, "mla.jsonl"), "-v", "1", "-d", "cpu"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-1500:] + r.stderr[-1500:]
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "hf_export.py"), mla, "-o", os.path.join(TMP, "mla_dir")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "cannot express -a mla" in r.stderr and "HINT" in r.stderr, r.stderr
    assert not os.path.exists(os.path.join(TMP, "mla_dir"))
    # a non-empty output directory is never written into; an -o that is not a checkpoint is never overwritten
    busy = os.path.join(TMP, "busy")
    os.makedirs(busy, exist_ok=True)
    open(os.path.join(busy, "mine.txt"), "w").write("user data")
    expect_error(lambda: hf_export.export(good, busy, quiet=True), "not an empty directory")
    assert os.listdir(busy) == ["mine.txt"]
    d = os.path.join(TMP, "rt_neox")
    precious = os.path.join(TMP, "notes.txt")
    open(precious, "w").write("keep me")
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "hf_import.py"), d, "-o", precious], capture_output=True, text=True)
    assert r.returncode == 1 and "not a kvgpt checkpoint" in r.stderr, r.stderr
    assert open(precious).read() == "keep me"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "hf_import.py"), d, "-o", TMP], capture_output=True, text=True)
    assert r.returncode == 1 and "not a kvgpt checkpoint" in r.stderr and "Traceback" not in r.stderr, r.stderr
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "hf_import.py"), d, "-o", os.path.join(d, "model.safetensors")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "own files" in r.stderr, r.stderr
    # the CLI on a good directory
    r = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "hf_import.py"), d, "-o", os.path.join(TMP, "cli.ckpt")],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "GPTNeoXForCausalLM" in r.stdout and "equals kvgpt's gpt-neox-20b" in r.stdout, r.stdout + r.stderr


def main():
    return run_tests(lambda: shutil.rmtree(TMP, ignore_errors=True))


if __name__ == "__main__":
    sys.exit(main())
