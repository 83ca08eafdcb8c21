#!/usr/bin/env bash
# compare_variants.sh: trains the tiny preset once per attention variant on the bundled Tiny
# Shakespeare (same steps, seed and data order), writes a Markdown table of the final val losses
# and KV-cache sizes, then evaluates every checkpoint with ./eval_gpt and puts them side by side
# (docs/eval_tiny.md). This is the recipe behind the variants tables in README.md and docs/.
#   bash scripts/compare_variants.sh [extra train_gpt flags, e.g. -x 50]
# EVAL_FLAGS (default "--wiki-docs 10") is passed to ./eval_gpt.
set -euo pipefail
cd "$(dirname "$0")/.."
make -s train_gpt eval_gpt
OUT=${OUT_DIR:-out/variants}
mkdir -p "$OUT"
run() {
    local name=$1; shift
    echo "=== $name: ./train_gpt $* $EXTRA"
    ./train_gpt "$@" $EXTRA -L "$OUT/$name.jsonl" -o "$OUT/$name.ckpt" > "$OUT/$name.log" 2>&1
    grep -E "^val loss|^done" "$OUT/$name.log" | tail -n 2
    ./eval_gpt -c "$OUT/$name.ckpt.best" ${EVAL_FLAGS:---wiki-docs 10} --json "$OUT/$name.eval.json" > "$OUT/$name.eval.log" 2>&1
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
run fmka_rope     -a fmka -p rope
python3 scripts/summarize_runs.py "$OUT"/*.jsonl | tee "$OUT/summary.md"
python3 scripts/eval_report.py "$OUT"/*.eval.json --out "$OUT/eval_report.md"
