#!/usr/bin/env bash
# 1_mla_alibi.sh: MLA with ALiBi against a Pythia RoPE baseline, the earlier experiment's design.
# Reported: val PPL 1.5 (MLA + ALiBi) vs 424.4 (MHA + RoPE), from an inverted causal mask inside
# the ALiBi bias (the model saw the future); after that fix 454.6 vs 424.4.
# Design kept: the Pythia shape, MLA with latent k = 128 and ALiBi at one slope of 1/16 for every
# head vs MHA with RoPE on 25% of the head dims, T = 128, AdamW at lr 1e-4, batch 8, early stopping
# with patience 1 and the best weights restored, position-wise PPL in buckets 0-16 / 16-32 /
# 32-64 / 64-96 / 96-128 (on Brown's held-out documents and on the WikiText-2 test articles).
#   bash scripts/repro/1_mla_alibi.sh                # SCALE=cpu: pythia-31m, 200 steps, seeds 1 2
#   SCALE=gpu bash scripts/repro/1_mla_alibi.sh      # pythia-70m, 20000 steps (early stopping ends it)
# Environment: SEEDS, STEPS, WIKI_DOCS (WikiText-2 test articles scored: 20), OUT (runs/repro/1_mla_alibi),
# FORCE (see common.sh).
source "$(dirname "$0")/common.sh"
OUT=${OUT:-runs/repro/1_mla_alibi}; mkdir -p "$OUT"
SEEDS=${SEEDS:-1 2}
if [ "$SCALE" = gpu ]; then
    MODEL=pythia-70m; STEPS=${STEPS:-20000}; EVERY=250; VB=${VB:-50}
else  # pythia-31m: the Pythia family's shape at a width 2 cores train in minutes (k = 128 is d/2 here, d/4 at 70m)
    MODEL=pythia-31m; STEPS=${STEPS:-200}; EVERY=50; VB=20
fi
TOK=gpt-neox-20b
prepare_corpora $TOK
COMMON=(-m $MODEL -t 128 -b 8 -x "$STEPS" -n $EVERY -v $VB --patience 1 -i "$(train_data $TOK)" -j "$(val_data $TOK)")
EVAL=(-- --protocols disjoint,positions,wikitext --buckets 0,16,32,64,96 --wiki-docs "${WIKI_DOCS:-20}")
for seed in $SEEDS; do
    run "mla128_alibi16_s$seed" "${COMMON[@]}" -l 1e-4 -a mla -k 128 -p alibi --alibi-slope 0.0625 -s "$seed" "${EVAL[@]}"
    run "mha_rope25_s$seed" "${COMMON[@]}" -l 1e-4 -a mha -p rope --rotary-pct 0.25 -s "$seed" "${EVAL[@]}"
done
for seed in ${COMPANION_SEEDS-1}; do
    C=("${COMMON[@]}" -l 2e-3)  # the design at a rate 200 steps can use (1e-4 barely moves in 200)
    run "mla128_alibi16_lr2e-3_s$seed" "${C[@]}" -a mla -k 128 -p alibi --alibi-slope 0.0625 -s "$seed" "${EVAL[@]}"
    run "mha_rope25_lr2e-3_s$seed" "${C[@]}" -a mha -p rope --rotary-pct 0.25 -s "$seed" "${EVAL[@]}"
done
finish 1_mla_alibi
