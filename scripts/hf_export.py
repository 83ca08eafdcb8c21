"""hf_export.py: a kvgpt checkpoint -> a Hugging Face model directory transformers loads as it is.

    python3 scripts/hf_export.py model.ckpt.best -o my-model-hf
    # then, where transformers is installed:
    #   AutoModelForCausalLM.from_pretrained("my-model-hf"); AutoTokenizer.from_pretrained("my-model-hf")

-a mha models only: -p rope becomes GPTNeoXForCausalLM (rotary_pct, base, parallel or sequential
residual, tied or untied embeddings, exact or tanh GELU), -p learned becomes GPT2LMHeadModel.
Writes config.json, model.safetensors (float32) and the tokenizer's files; any other variant or
position encoding is a clear error. The directory must be new (or empty): it is written beside
its final name and renamed into place, so a failure leaves nothing half-written.
Needs numpy (Debian: python3-numpy).
"""
import argparse
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ckpt  # noqa: E402
import hf_interop as hi  # noqa: E402


def export(path, out, quiet=False):
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise hi.HFError(f"-o '{out}' exists and is not an empty directory", "pick a new directory; nothing existing is overwritten")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        raise hi.HFError(f"-o '{out}': its parent directory does not exist or is not writable", "create it, or pick a writable path")
    c = ckpt.read(path)
    hf, sd = hi.from_kvgpt(c.tensors, c.config)
    tmp = tempfile.mkdtemp(prefix=".hf_export.", dir=parent)
    try:
        json.dump(hf, open(os.path.join(tmp, "config.json"), "w"), indent=2)
        hi.write_safetensors(os.path.join(tmp, "model.safetensors"), sd, {"format": "pt"})
        has_tok = hi.write_tokenizer(tmp, c.config["tokenizer_id"])
        if os.path.isdir(out):
            os.rmdir(out)  # empty, checked above
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not quiet:
        print(f"{path} -> {out}: {hf['architectures'][0]} ({len(sd)} tensors, float32)" +
              ("" if has_tok else "; no tokenizer files (the checkpoint's tokenizer is unknown)"))
    return hf


def main():
    ap = argparse.ArgumentParser(description="kvgpt checkpoint -> Hugging Face model directory")
    ap.add_argument("ckpt", help="kvgpt checkpoint (FILE or FILE.best of ./train_gpt -o, or scripts/hf_import.py's output)")
    ap.add_argument("-o", "--out", required=True, help="new directory to write (config.json, model.safetensors, tokenizer files)")
    a = ap.parse_args()
    return hi.run_cli(lambda: export(a.ckpt, a.out) and 0)


if __name__ == "__main__":
    sys.exit(main())
