#!/usr/bin/env bash
# compare_variants.sh: trains one model per attention variant and seed on the bundled Tiny
# Shakespeare (same shape, steps and data order per seed), then writes
#   $OUT_DIR/summary.md      per run, and per variant the mean and spread over the seeds of the
#                            final val loss, with the KV-cache elements per token
#   $OUT_DIR/loss.png        the loss curves (scripts/plot_runs.py, when matplotlib is importable)
#   $OUT_DIR/eval_report.md  ./eval_gpt of every checkpoint side by side (EVAL=1)
# This is the recipe behind the variant table in README.md.
#   bash scripts/compare_variants.sh [extra train_gpt flags, e.g. -x 50]
# Environment: SHAPE (default "-m pythia-31m --tied 1": a shape where attention is a real share of
# the parameters; the tiny preset is 94% embeddings), SEEDS (default "1 2 3"), VARIANTS (a subset
# of the names below, default all), EVAL (1: run ./eval_gpt on each, with EVAL_FLAGS, default
# "--wiki-docs 10"), OUT_DIR (default out/variants), PYTHON (for the summary and plots).
set -euo pipefail
cd "$(dirname "$0")/.."
make -s train_gpt eval_gpt
OUT=${OUT_DIR:-out/variants}
SHAPE=${SHAPE:--m pythia-31m --tied 1}
SEEDS=${SEEDS:-1 2 3}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
declare -A FLAGS=(
    [mha_rope]="-a mha -p rope" [mha_alibi]="-a mha -p alibi" [gqa2_rope]="-a gqa -g 2 -p rope" [mqa_rope]="-a mqa -p rope"
    [mla128_rope]="-a mla -k 128 -p rope" [mla128_alibi]="-a mla -k 128 -p alibi" [kvsplice_rope]="-a kvsplice -k 128 -r 64 -p rope"
    [mka_rope]="-a mka -p rope" [fmka_rope]="-a fmka -p rope")
ORDER="mha_rope mha_alibi gqa2_rope mqa_rope mla128_rope mla128_alibi kvsplice_rope mka_rope fmka_rope"
VARIANTS=${VARIANTS:-$ORDER}
EXTRA="$*"
for v in $VARIANTS; do
    [ -n "${FLAGS[$v]+x}" ] || { echo "unknown variant '$v' (known: $ORDER)"; exit 1; }
    for seed in $SEEDS; do
        name="${v}_s${seed}"
        echo "=== $name: ./train_gpt $SHAPE ${FLAGS[$v]} -s $seed $EXTRA"
        ./train_gpt $SHAPE ${FLAGS[$v]} -s "$seed" $EXTRA -L "$OUT/$name.jsonl" -o "$OUT/$name.ckpt" > "$OUT/$name.log" 2>&1
        grep -E "^final val loss|^done" "$OUT/$name.log" | tail -n 2
        if [ "${EVAL:-1}" = 1 ]; then
            ./eval_gpt -c "$OUT/$name.ckpt.best" ${EVAL_FLAGS:---wiki-docs 10} --json "$OUT/$name.eval.json" > "$OUT/$name.eval.log" 2>&1
        fi
    done
done
$PY scripts/summarize_runs.py "$OUT"/*_s*.jsonl | tee "$OUT/summary.md"
$PY scripts/plot_runs.py "$OUT"/*_s1.jsonl -o "$OUT/loss.png" --smooth 10 || true
if [ "${EVAL:-1}" = 1 ]; then $PY scripts/eval_report.py "$OUT"/*.eval.json --out "$OUT/eval_report.md"; fi
