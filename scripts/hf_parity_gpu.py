"""hf_parity_gpu.py: kvgpt's Hugging Face import and export against transformers' own classes
(for the GPU machine, which has transformers; nothing is downloaded: the models are built from
configs with random weights). Run by scripts/hf_parity_gpu.sh, in well under 3 minutes:
  1. GPTNeoXForCausalLM (pythia-70m's config, and a variant: full rotary, sequential residual,
     tied, tanh GELU) and GPT2LMHeadModel (gpt2-124m's config, and an untied exact-GELU one):
     save_pretrained -> scripts/hf_import.py -> kvgpt's CPU logits (test/logits_dump) against
     transformers' float32 logits (on the GPU when present, TF32 off), 1e-4 relative
  2. the kvgpt checkpoint -> scripts/hf_export.py -> AutoModelForCausalLM.from_pretrained: the
     same logits again, and the exported tokenizer (AutoTokenizer) gives the committed golden ids
Prints one PASS/FAIL line per check and "N passed, N failed".
"""
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import hf_export  # noqa: E402
import hf_import  # noqa: E402

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
DEV = "cuda" if torch.cuda.is_available() else "cpu"
T = 256
TMP = tempfile.mkdtemp(prefix="kvgpt_hf_parity.")
results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(f"{'PASS' if ok else 'FAIL'} {name} {detail}", flush=True)


def perturb(model, seed):
    """larger-than-init weights so attention is peaked and every tensor shows in the logits"""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.dim() == 1:
                base = 1.0 if ("norm" in n or "ln_" in n) and n.endswith("weight") else 0.0
                p.copy_(base + 0.2 * torch.randn(p.shape, generator=g))
            elif "query_key_value" in n or "c_attn" in n:
                p.mul_(5.0)


def hf_logits(model, ids):
    model = model.to(DEV).float().eval()
    with torch.no_grad():
        out = model(torch.tensor([ids], device=DEV)).logits[0].double().cpu().numpy()
    model.to("cpu")
    return out


def kvgpt_logits(ckpt, ids):
    idf, out = os.path.join(TMP, "ids.i32"), os.path.join(TMP, "logits.f32")
    np.asarray(ids, dtype="<i4").tofile(idf)
    subprocess.run([os.path.join(ROOT, "test", "logits_dump"), ckpt, idf, out], check=True, capture_output=True)
    return np.fromfile(out, dtype="<f4").reshape(len(ids), -1).astype(np.float64)


def rel(a, b):
    return float(np.max(np.abs(a[:, :b.shape[1]] - b)) / np.max(np.abs(b)))


def case(name, model, vocab):
    t0 = time.time()
    perturb(model, len(name))
    d = os.path.join(TMP, name)
    model.save_pretrained(d, safe_serialization=True)
    ck = os.path.join(TMP, name + ".ckpt")
    hf_import.import_dir(d, ck, quiet=True)
    ids = np.random.default_rng(0).integers(0, vocab, T).tolist()
    want = hf_logits(model, ids)
    got = kvgpt_logits(ck, ids)
    e = rel(got, want)
    check(f"{name}: import, kvgpt vs transformers", np.isfinite(got).all() and e <= 1e-4, f"max rel err {e:.2e}")
    ex = os.path.join(TMP, name + "_export")
    hf_export.export(ck, ex, quiet=True)
    back = AutoModelForCausalLM.from_pretrained(ex, attn_implementation="eager")
    e2 = rel(hf_logits(back, ids), got)
    check(f"{name}: export, transformers(exported) vs kvgpt", e2 <= 1e-4, f"max rel err {e2:.2e} ({time.time() - t0:.1f} s)")
    return ex


def main():
    print(f"transformers {transformers.__version__}, torch {torch.__version__}, device {DEV}"
          + (f" ({torch.cuda.get_device_name()})" if DEV == "cuda" else ""))
    neox = dict(vocab_size=50304, hidden_size=512, num_hidden_layers=6, num_attention_heads=8, intermediate_size=2048,
                rotary_pct=0.25, rotary_emb_base=10000, max_position_embeddings=2048, use_parallel_residual=True,
                tie_word_embeddings=False, hidden_act="gelu", layer_norm_eps=1e-5)
    m = GPTNeoXForCausalLM(GPTNeoXConfig(**neox, attn_implementation="eager"))
    check("pythia-70m config: parameter count", sum(p.numel() for p in m.parameters()) == 70426624)
    ex = case("pythia-70m", m, 50304)
    small = dict(neox, hidden_size=256, num_hidden_layers=2, num_attention_heads=4, intermediate_size=1024, rotary_pct=1.0,
                 rotary_emb_base=500, use_parallel_residual=False, tie_word_embeddings=True, hidden_act="gelu_new")
    case("neox-variant", GPTNeoXForCausalLM(GPTNeoXConfig(**small, attn_implementation="eager")), 50304)
    g = GPT2LMHeadModel(GPT2Config(attn_implementation="eager"))  # the gpt2 (124M) config
    check("gpt2-124m config: parameter count", sum(p.numel() for p in g.parameters()) == 124439808)
    gex = case("gpt2-124m", g, 50257)
    gu = GPT2Config(n_embd=256, n_layer=2, n_head=4, n_inner=512, activation_function="gelu", tie_word_embeddings=False,
                    attn_implementation="eager")
    case("gpt2-variant", GPT2LMHeadModel(gu), 50257)
    golden = json.load(open(os.path.join(ROOT, "test", "golden", "tokenizer_golden.json"), encoding="utf-8"))
    for name, d, key in (("gpt-neox-20b", ex, "gpt-neox-20b"), ("gpt2", gex, "gpt2")):
        tok = AutoTokenizer.from_pretrained(d)
        bad = [i for i, (t, want) in enumerate(zip(golden["texts"], golden[key])) if tok.encode(t) != want]
        check(f"exported tokenizer {name}: AutoTokenizer ids == golden", not bad, f"({len(golden['texts'])} texts, {len(bad)} differ)")
    p, f = sum(results), len(results) - sum(results)
    print(f"{p} passed, {f} failed")
    return 1 if f else 0


if __name__ == "__main__":
    sys.exit(main())
