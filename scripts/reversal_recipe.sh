#!/usr/bin/env bash
# reversal_recipe.sh: the reversal-curse experiment of Berglund et al. at CPU scale, end to end.
# The trained half of data/reversal/facts.tsv goes into training in the FORWARD direction only
# ("The capital of France is Paris."), mixed into Tiny Shakespeare; the other half is never seen.
# ./eval_gpt then scores the answer entity's log-likelihood given the prompt for both halves, in
# both directions: a large forward gain with a reversed gain near zero is the curse.
#
#   bash scripts/reversal_recipe.sh                    # MHA + RoPE, tiny preset
#   ATTN=mla FLAGS="-k 64" POS=alibi bash scripts/reversal_recipe.sh
# Environment: OUT (runs/reversal-ATTN-POS), STEPS (600), REPEATS (times each fact is repeated
# in the facts shard: its share of the mixture, 400), TOK (gpt-neox-20b), MODEL (tiny), FLAGS.
set -euo pipefail
cd "$(dirname "$0")/.."
ATTN=${ATTN:-mha}; POS=${POS:-rope}; STEPS=${STEPS:-600}; REPEATS=${REPEATS:-400}
TOK=${TOK:-gpt-neox-20b}; MODEL=${MODEL:-tiny}; FLAGS=${FLAGS:-}
OUT=${OUT:-runs/reversal-$ATTN-$POS}
mkdir -p "$OUT"
python3 data/eval_sets.py reversal --tokenizer "$TOK" --repeats "$REPEATS" --out "$OUT/data"
make -s train_gpt eval_gpt
# shellcheck disable=SC2086
./train_gpt -m "$MODEL" -a "$ATTN" -p "$POS" $FLAGS -b 8 -t 64 -x "$STEPS" -n 100 \
    -i "data/tinyshakespeare/$TOK/train_*.bin,$OUT/data/reversal_train_*.bin" \
    -j "data/tinyshakespeare/$TOK/val_*.bin" -o "$OUT/model.ckpt"
./eval_gpt -c "$OUT/model.ckpt.best" --protocols reversal,disjoint --reversal "$OUT/data/reversal.tsv" --json "$OUT/eval.json"
