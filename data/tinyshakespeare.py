"""Tiny Shakespeare -> kvgpt token shards (the bundled default data of ./train_gpt).

    python3 data/tinyshakespeare.py [--tokenizer gpt-neox-20b|gpt2] [--out DIR]

A "document" here is one speech (blocks separated by a blank line). The split is by
document: the last 10% of speeches form the validation shard, so no speech is in both.
The text is played continuously (no EOS between speeches: they are one dialogue).
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from shards import write_shard  # noqa: E402
from tokenizer import TOKENIZER_IDS, load_tokenizer  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", default=os.path.join(HERE, "corpora", "tinyshakespeare.txt"))
    ap.add_argument("--tokenizer", default="gpt-neox-20b", choices=sorted(TOKENIZER_IDS))
    ap.add_argument("--out", default=None, help="default: data/tinyshakespeare/<tokenizer>")
    ap.add_argument("--val-frac", type=float, default=0.1)
    a = ap.parse_args()
    text = open(a.input, encoding="utf-8").read()
    docs = [d for d in text.split("\n\n") if d.strip()]
    n_val = max(1, int(len(docs) * a.val_frac))
    splits = {"train": docs[:-n_val], "val": docs[-n_val:]}
    tok = load_tokenizer(a.tokenizer)
    out = a.out or os.path.join(HERE, "tinyshakespeare", a.tokenizer)
    t0 = time.time()
    total = 0
    for split, ds in splits.items():
        ids = tok.encode("\n\n".join(ds) + "\n\n")
        total += len(ids)
        path = os.path.join(out, f"{split}_000000.bin")
        write_shard(path, ids, TOKENIZER_IDS[a.tokenizer], tok.vocab_size, tok.eos_id, len(ds))
        print(f"{split}: {len(ds)} documents, {len(ids):,} tokens -> {path}")
    dt = time.time() - t0
    print(f"tokenized {total:,} tokens in {dt:.1f} s ({total / dt:,.0f} tokens/s, {type(tok).__name__})")


if __name__ == "__main__":
    main()
