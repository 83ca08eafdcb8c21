#!/usr/bin/env bash
# 4_presses.sh: KV-cache presses on a Pythia-shaped model, with honest protocols.
# Reported: PPL 40.31 for every press at every ratio, because the cache was compressed after the
# scored window had been scored (a press that never touched the scored tokens).
# Protocols (eval_gpt --press): prefill (prefill P tokens of a document, compress the cache, score
# the next N tokens against it), decode (stream each text with the cache held at a budget), and
# naive, the earlier protocol, kept to show that it cannot move. Every press (random, knorm,
# streaming, snapkv, tova, h2o, expected_attention, keydiff) at ratios 0.5 / 0.75 (and 0.25, 0.9
# on a GPU), on the WikiText-2 test articles and the Gutenberg book.
# Models: the MHA and MLA models of 5_variants.sh (Pythia-shaped, trained here; run it first), and,
# with PYTHIA70M=DIR (EleutherAI/pythia-70m as save_pretrained() writes it; needs numpy), the
# real pythia-70m imported by scripts/hf_import.py, evaluated at contexts of 1024 tokens.
#   bash scripts/repro/4_presses.sh
# Environment: SAMPLES (samples and streams per protocol: 12 on the CPU, 0 = all on a GPU), RATIOS,
# PYTHIA70M, MODELS (where 5_variants' checkpoints are), OUT, FORCE.
source "$(dirname "$0")/common.sh"
OUT=${OUT:-runs/repro/4_presses}; mkdir -p "$OUT"
if [ "$SCALE" = gpu ]; then SAMPLES=${SAMPLES:-0}; RATIOS=${RATIOS:-0.25,0.5,0.75,0.9}
else SAMPLES=${SAMPLES:-12}; RATIOS=${RATIOS:-0.5,0.75}; fi
TOK=gpt-neox-20b
MODELS=${MODELS:-runs/repro/5_variants}
PRESS=(--press all --ratio "$RATIOS" --press-protocols prefill,decode,naive --press-samples "$SAMPLES"
       --press-data "data/eval/$TOK/wikitext_eval,data/eval/$TOK/book_eval")
evaluate() {  # name ckpt [eval flags]
    local name=$1 ck=$2; shift 2
    if [ "$FORCE" != 1 ] && [ -s "$OUT/$name.eval.json" ]; then echo "=== $name: done before"; SKIPPED=$((SKIPPED + 1)); return; fi
    [ -f "$ck" ] || { echo "Error: $ck is missing" >&2; echo "HINT: run scripts/repro/5_variants.sh first (or set MODELS)" >&2; exit 1; }
    echo "=== $name: ./eval_gpt -c $ck ${PRESS[*]} $*"
    ./eval_gpt -c "$ck" "${PRESS[@]}" "$@" --json "$OUT/$name.eval.json" > "$OUT/$name.eval.log" 2>&1 \
        || { tail -n 20 "$OUT/$name.eval.log" >&2; echo "Error: $name failed (log: $OUT/$name.eval.log)" >&2; exit 1; }
}
evaluate mha_trained "$MODELS/mha_s1.ckpt.best"
evaluate mla128_trained "$MODELS/mla128_s1.ckpt.best"
if [ -n "${PYTHIA70M:-}" ]; then
    [ -f "$OUT/pythia-70m.ckpt" ] || "$PY" scripts/hf_import.py "$PYTHIA70M" -o "$OUT/pythia-70m.ckpt"
    evaluate pythia70m_hf "$OUT/pythia-70m.ckpt" -t 1024 --press-context 768 --press-continue 256 --stream-len 1024
fi
finish 4_presses
