"""dev/llmc_peer_files.py: the input files llm.c's CPU trainer (train_gpt2.c) reads, written offline
into DIR so dev/bench_peers.sh can time it next to kvgpt: a random-init GPT-2-124M checkpoint in
llm.c's format (header magic 20240326 version 3; weights N(0, 0.02), LayerNorm weights 1, biases 0,
the 16 tensors each stacked over the layers, padded vocab 50304) and the bundled Tiny Shakespeare
GPT-2 shards in llm.c's token format (header magic 20240520 version 1, uint16 tokens) under
DIR/dev/data/tinyshakespeare/. No llm.c code is in this repository: build train_gpt2 in DIR from
a copy of llm.c (gcc -Ofast -march=native -fopenmp -DOMP train_gpt2.c -lm -o train_gpt2).

    python3 dev/llmc_peer_files.py /tmp/llmc     # needs numpy
"""
import glob
import os
import sys

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, os.path.join(ROOT, "data"))
import shards  # noqa: E402


def main(d):
    L, C, H, V, Vp, maxT = 12, 768, 12, 50257, 50304, 1024
    r = np.random.default_rng(0)
    hdr = np.zeros(256, np.int32)
    hdr[:8] = [20240326, 3, maxT, V, L, H, C, Vp]
    sizes = [Vp * C, maxT * C, L * C, L * C, L * 3 * C * C, L * 3 * C, L * C * C, L * C, L * C, L * C,
             L * 4 * C * C, L * 4 * C, L * C * 4 * C, L * C, C, C]
    ones, zeros = {2, 8, 14}, {3, 5, 7, 9, 11, 13, 15}  # LayerNorm weights; biases
    os.makedirs(os.path.join(d, "dev", "data", "tinyshakespeare"), exist_ok=True)
    with open(os.path.join(d, "gpt2_124M.bin"), "wb") as f:
        hdr.tofile(f)
        for i, n in enumerate(sizes):
            if i in ones:
                a = np.ones(n, np.float32)
            elif i in zeros:
                a = np.zeros(n, np.float32)
            else:
                a = (0.02 * r.standard_normal(n)).astype(np.float32)
            a.tofile(f)
    assert sum(sizes) - (Vp - V) * C == 124439808
    for split in ("train", "val"):
        (path,) = glob.glob(os.path.join(ROOT, "data", "tinyshakespeare", "gpt2", f"{split}_*.bin"))
        _, toks = shards.read_shard(path)
        h = np.zeros(256, np.int32)
        h[:3] = [20240520, 1, len(toks)]
        with open(os.path.join(d, "dev", "data", "tinyshakespeare", f"tiny_shakespeare_{split}.bin"), "wb") as f:
            h.tofile(f)
            np.asarray(toks, np.uint16).tofile(f)
        print(f"{split}: {len(toks):,} tokens")
    print(f"wrote {d}/gpt2_124M.bin (124,439,808 parameters, random init) and the data files")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
