#!/usr/bin/env bash
# 5_variants.sh: the attention-variant benchmark, leak-free.
# Reported: PPL 2.4-2.5 for every variant, from attention with no causal mask at all, evaluation
# on the training data, pad tokens counted in the loss, and peak-memory counters never reset
# between variants (each variant inherited the peak of the ones before it).
# Here: MHA, MKA, MQA, GQA with 4 KV heads, MLA (k = 128) and fast MKA (fmka), RoPE, the same
# shape, data and order; train_gpt's causal mask is checked bitwise by the test suite and
# eval_gpt refuses a model that sees a future token (its leak guard runs first); the loss counts
# only real next tokens (no pads exist: windows are cut from the token stream); PPL on held-out
# Brown documents and on the WikiText-2 test articles, never trained on; each variant trains in
# its own process, so its peak memory (getrusage; and the device's allocation on a GPU) is its own;
# time per step is the median of the logged steps.
#   bash scripts/repro/5_variants.sh             # SCALE=cpu: pythia-31m (tied), 150 steps
#   SCALE=gpu bash scripts/repro/5_variants.sh   # pythia-70m, T = 1024, 5000 steps
# Environment: SEEDS (1), STEPS, MAXW (held-out windows scored, the first ones: 400 on the CPU, all on a GPU),
# WIKI_DOCS (WikiText-2 test articles scored: 20), VB (validation batches at SCALE=gpu: 50), OUT, FORCE.
source "$(dirname "$0")/common.sh"
OUT=${OUT:-runs/repro/5_variants}; mkdir -p "$OUT"
SEEDS=${SEEDS:-1}
if [ "$SCALE" = gpu ]; then SHAPE=(-m pythia-70m -t 1024 -b 8); STEPS=${STEPS:-5000}; EVERY=250; VB=${VB:-50}
else SHAPE=(-m pythia-31m --tied 1 -t 128 -b 8); STEPS=${STEPS:-150}; EVERY=50; VB=10; fi
TOK=gpt-neox-20b
MAXW=${MAXW:-$([ "$SCALE" = gpu ] && echo 0 || echo 400)}  # disjoint windows scored per measurement (0: all)
prepare_corpora $TOK
COMMON=("${SHAPE[@]}" -p rope -x "$STEPS" -n $EVERY -v $VB -i "$(train_data $TOK)" -j "$(val_data $TOK)")
EVAL=(-- --max-windows "$MAXW" --protocols disjoint,wikitext,kv --wiki-docs "${WIKI_DOCS:-20}")
for seed in $SEEDS; do
    run "mha_s$seed" "${COMMON[@]}" -a mha -s "$seed" "${EVAL[@]}"
    run "mka_s$seed" "${COMMON[@]}" -a mka -s "$seed" "${EVAL[@]}"
    run "mqa_s$seed" "${COMMON[@]}" -a mqa -s "$seed" "${EVAL[@]}"
    run "gqa4_s$seed" "${COMMON[@]}" -a gqa -g 4 -s "$seed" "${EVAL[@]}"
    run "mla128_s$seed" "${COMMON[@]}" -a mla -k 128 -s "$seed" "${EVAL[@]}"
    run "fmka_s$seed" "${COMMON[@]}" -a fmka -s "$seed" "${EVAL[@]}"
done
finish 5_variants
