"""hf_import.py: a Hugging Face model directory -> a kvgpt weights checkpoint.

    python3 scripts/hf_import.py path/to/pythia-70m -o pythia-70m.ckpt
    ./eval_gpt -c pythia-70m.ckpt ...      ./sample_gpt -c pythia-70m.ckpt --prompt "..."
    ./train_gpt --init-from pythia-70m.ckpt ...    (fine-tuning, fresh optimizer state)

Reads GPTNeoXForCausalLM (Pythia) and GPT2LMHeadModel directories: config.json plus
model.safetensors (or shards with model.safetensors.index.json, or pytorch_model.bin when torch
is importable), in F32 / F16 / BF16, converted to float32. The mapping of names, layouts and
config fields is in scripts/hf_interop.py; a field kvgpt cannot reproduce is an error naming it.
The directory's tokenizer.json (or vocab.json + merges.txt) is compared with kvgpt's vendored
tokenizer: equal, the checkpoint records it; different, a warning and tokenizer "unknown".
Needs numpy (Debian: python3-numpy).
"""
import argparse
import json
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ckpt  # noqa: E402
import hf_interop as hi  # noqa: E402


def import_dir(d, out, quiet=False):
    if not os.path.isdir(d):
        raise hi.HFError(f"'{d}' is not a directory", "pass the directory that save_pretrained() wrote (config.json beside the weights)")
    cj = os.path.join(d, "config.json")
    if not os.path.exists(cj):
        raise hi.HFError(f"{d} has no config.json", "pass the directory that save_pretrained() wrote")
    try:
        hf = json.load(open(cj, encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise hi.HFError(f"{cj} is not valid JSON ({e})")
    arch = hi.architecture(hf)
    tok_id, tok_msg = hi.tokenizer_of_dir(d, arch)
    cfg, arch, train_T = hi.kvgpt_config(hf, tok_id)
    if os.path.exists(out):
        for f in [cj] + [os.path.join(d, x) for x in os.listdir(d)]:
            if os.path.exists(f) and os.path.samefile(f, out):
                raise hi.HFError(f"-o '{out}' is one of the model's own files", "write the checkpoint to a new path; inputs are never overwritten")
        ours = False
        if os.path.isfile(out):  # a directory or a device is never opened as a checkpoint
            with open(out, "rb") as f:
                ours = f.read(4) == struct.pack("<I", ckpt.MAGIC)
        if not ours:
            raise hi.HFError(f"-o '{out}' exists and is not a kvgpt checkpoint", "pick another -o; only kvgpt checkpoints are overwritten")
    odir = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(odir) or not os.access(odir, os.W_OK):
        raise hi.HFError(f"-o '{out}': its directory does not exist or is not writable", "create the directory, or pick a writable path")
    sd, files = hi.load_state_dict(d)
    tensors = hi.to_kvgpt(sd, cfg, arch)
    ckpt.write(out, cfg, tensors, train_T=train_T)
    if not quiet:
        n = sum(a.size for k, a in tensors.items()) - (cfg["padded_vocab_size"] - cfg["vocab_size"]) * cfg["d_model"] * (1 if cfg["tied_embeddings"] else 2)
        print(f"{d}: {hf.get('architectures', [arch])[0]}, {len(files)} weight file(s), {n:,} parameters")
        print(f"  -> {out}: -a mha -p {ckpt.POS_NAMES[cfg['pos']]}, {cfg['n_layer']} layers, d_model {cfg['d_model']}, {cfg['n_head']} heads, "
              f"d_ff {cfg['d_ff']}, vocab {cfg['vocab_size']}, " +
              (f"rotary {ckpt.rotary_dim(cfg)}/{cfg['head_dim']} dims base {cfg['rope_base']:g}, " if cfg['pos'] == 0 else "") +
              f"{'parallel' if cfg['parallel_residual'] else 'sequential'} residual, {'tied' if cfg['tied_embeddings'] else 'untied'} "
              f"embeddings, {'exact' if cfg['gelu_exact'] else 'tanh'} GELU, T = {train_T}")
    if not quiet or tok_msg.startswith("warning"):
        print(tok_msg, file=sys.stderr if tok_msg.startswith("warning") else sys.stdout)
    return cfg


def main():
    ap = argparse.ArgumentParser(description="Hugging Face model directory -> kvgpt weights checkpoint")
    ap.add_argument("dir", help="HF model directory (config.json + model.safetensors / shards / pytorch_model.bin)")
    ap.add_argument("-o", "--out", required=True, help="kvgpt checkpoint to write (weights only, like FILE.best)")
    a = ap.parse_args()
    return hi.run_cli(lambda: import_dir(a.dir, a.out) and 0)


if __name__ == "__main__":
    sys.exit(main())
