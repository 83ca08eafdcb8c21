#!/usr/bin/env bash
# 2_positions.sh: position encodings compared, with the reversal curse and the Q/K statistics.
# RoPE on 25% and on 100% of the head dims, ALiBi at the uniform 1/16 slope and at the geometric
# per-head slopes, and no positions (NoPE), each trained on the same data in the same order.
# Reversal curse (eval_gpt's reversal protocol, Berglund et al.): half of data/reversal/facts.tsv
# goes into training, forward sentences only, mixed into the corpus; the answer's margin over the
# other answers of its relation is scored for trained and never-seen facts in both directions.
# Q/K statistics: |q|, |k| after the position encoding, with RoPE's rotated dims split into the
# NeoX frequency bands (the high-frequency pairs, then the low-frequency ones) and the dims RoPE
# leaves unrotated apart; the earlier analysis split the rotary dims into two halves of the
# vector, which mixes both bands on each side and gives a low/high ratio near 1 by construction.
#   bash scripts/repro/2_positions.sh            # SCALE=cpu: the tiny preset, 600 steps
#   SCALE=gpu bash scripts/repro/2_positions.sh  # pythia-70m, 5000 steps
# Environment: SEEDS (1), STEPS, REPEATS (times each trained fact is repeated in the facts shard:
# 2000 on the CPU, where 300 steps at 400 left every fact unlearned, 400 on a GPU), MAXW (held-out
# windows scored, the first ones: 400 on the CPU, all on a GPU), OUT, FORCE.
source "$(dirname "$0")/common.sh"
OUT=${OUT:-runs/repro/2_positions}; mkdir -p "$OUT"
SEEDS=${SEEDS:-1}
if [ "$SCALE" = gpu ]; then MODEL=pythia-70m; STEPS=${STEPS:-5000}; EVERY=250; VB=${VB:-50}; REPEATS=${REPEATS:-400}
else MODEL=tiny; STEPS=${STEPS:-600}; EVERY=100; VB=10; REPEATS=${REPEATS:-2000}; fi
TOK=gpt-neox-20b
MAXW=${MAXW:-$([ "$SCALE" = gpu ] && echo 0 || echo 400)}  # disjoint windows scored per measurement (0: all)
prepare_corpora $TOK
"$PY" data/eval_sets.py reversal --tokenizer $TOK --repeats "$REPEATS" --out "$OUT/reversal"
# the facts go into training beside Brown only (SpamAssassin would dilute them 3x)
TRAIN="data/brown/$TOK/train_*.bin,$OUT/reversal/reversal_train_*.bin"
COMMON=(-m $MODEL -t 128 -b 8 -x "$STEPS" -n $EVERY -v $VB -i "$TRAIN" -j "$(val_data $TOK)")
EVAL=(-- --max-windows "$MAXW" --protocols disjoint,positions,extrap,reversal,qk --reversal "$OUT/reversal/reversal.tsv" --extrap 1,2,4)
for seed in $SEEDS; do
    run "rope25_s$seed" "${COMMON[@]}" -p rope --rotary-pct 0.25 -s "$seed" "${EVAL[@]}"
    run "rope100_s$seed" "${COMMON[@]}" -p rope --rotary-pct 1.0 -s "$seed" "${EVAL[@]}"
    run "alibi16_s$seed" "${COMMON[@]}" -p alibi --alibi-slope 0.0625 -s "$seed" "${EVAL[@]}"
    run "alibigeo_s$seed" "${COMMON[@]}" -p alibi -s "$seed" "${EVAL[@]}"
    run "nope_s$seed" "${COMMON[@]}" -p none -s "$seed" "${EVAL[@]}"
done
finish 2_positions
