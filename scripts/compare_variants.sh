#!/usr/bin/env bash
# compare_variants.sh: trains the tiny preset once per attention variant on the bundled Tiny
# Shakespeare (same steps, seed and data order), then writes a Markdown table of the final val
# losses and KV-cache sizes. This is the recipe behind the variants table in README.md.
#   bash scripts/compare_variants.sh [extra train_gpt flags, e.g. -x 50]
set -euo pipefail
cd "$(dirname "$0")/.."
make -s train_gpt
OUT=${OUT_DIR:-out/variants}
mkdir -p "$OUT"
run() {
    local name=$1; shift
    echo "=== $name: ./train_gpt $* $EXTRA"
    ./train_gpt "$@" $EXTRA -L "$OUT/$name.jsonl" > "$OUT/$name.log" 2>&1
    grep -E "^val loss|^done" "$OUT/$name.log" | tail -n 2
}
EXTRA="$*"
run mha_rope      -a mha -p rope
run mha_alibi     -a mha -p alibi
run gqa2_rope     -a gqa -g 2 -p rope
run mqa_rope      -a mqa -p rope
run mla128_rope   -a mla -k 128 -p rope
run mla128_alibi  -a mla -k 128 -p alibi
run kvsplice_rope -a kvsplice -k 128 -r 64 -p rope
run mka_rope      -a mka -p rope
python3 scripts/summarize_runs.py "$OUT"/*.jsonl | tee "$OUT/summary.md"
