#!/usr/bin/env bash
# press_sweep.sh: KV-cache presses against trained cache compression, measured honestly, end to end.
# Trains MHA, GQA, MQA, MLA and MLA+KVSplice models on the bundled Tiny Shakespeare (the tiny
# preset), then with ./eval_gpt sweeps every press at several ratios on the MHA and MLA models with
#   prefill  prefill P tokens of a document, compress the cache, score the next N tokens against
#            the compressed cache (protocol a)
#   decode   stream each text token by token with the cache held at a budget (protocol b)
#   naive    the earlier work's protocol (score the prefilled window itself): unchanged by every
#            press by construction, kept only to show the pitfall
# over the bundled WikiText-2 test articles and the Gutenberg book (data/eval/TOK/{wikitext,book}_eval),
# and writes the tables and plots with scripts/press_report.py (docs/presses/report.md + PNGs).
#
#   bash scripts/press_sweep.sh                         # everything (about 75 minutes on 2 cores)
#   STEPS=100 SAMPLES=8 OUT=/tmp/p bash scripts/press_sweep.sh    # a quick look
#   DOCS=data/tinyshakespeare/gpt-neox-20b/val_000000.bin EVAL_OUT=runs/press/shakespeare \
#       REPORT=docs/presses/shakespeare/report.md bash scripts/press_sweep.sh   # the same models, in-domain text
# Environment: OUT (runs/press), STEPS (training steps, 600), T (training length, 256), SAMPLES (cap
# on samples and on streams per protocol, spread evenly over the sets: 96; 0: all, hours on 2
# cores), RATIOS (0.25,0.5,0.75,0.9), PRESSES (all), DOCS (the eval set prefixes), REPORT
# (docs/presses/report.md; its plots beside it), EVAL_OUT (where the eval JSONs go: OUT),
# PYTHON (the interpreter of the report: python3).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/press}; STEPS=${STEPS:-600}; T=${T:-256}; SAMPLES=${SAMPLES:-96}
RATIOS=${RATIOS:-0.25,0.5,0.75,0.9}; PRESSES=${PRESSES:-all}; TOK=gpt-neox-20b
DOCS=${DOCS:-data/eval/$TOK/wikitext_eval,data/eval/$TOK/book_eval}
REPORT=${REPORT:-docs/presses/report.md}; EVAL_OUT=${EVAL_OUT:-$OUT}; PYTHON=${PYTHON:-python3}
mkdir -p "$OUT" "$EVAL_OUT"
make -s train_gpt eval_gpt
train() {  # name, flags
    local name=$1; shift
    if [ -f "$OUT/$name.ckpt.best" ]; then echo "== $name: $OUT/$name.ckpt.best exists, not retrained"; return; fi
    # shellcheck disable=SC2068
    ./train_gpt -m tiny $@ -b 8 -t "$T" -x "$STEPS" -n 100 -o "$OUT/$name.ckpt"
}
train mha -a mha
train gqa -a gqa -g 2
train mqa -a mqa
train mla -a mla -k 64
train kvsplice -a kvsplice -k 64 -r 32
for m in mha gqa mqa mla kvsplice; do  # every model's own cache, unpressed (the trained-compression points)
    ./eval_gpt -c "$OUT/$m.ckpt.best" --protocols press --press none --press-data "$DOCS" --press-samples "$SAMPLES" \
        --press-protocols prefill,decode --json "$EVAL_OUT/$m.baseline.json"
done
for m in mha mla; do
    ./eval_gpt -c "$OUT/$m.ckpt.best" --protocols press --press "$PRESSES" --ratio "$RATIOS" --press-data "$DOCS" \
        --press-samples "$SAMPLES" --press-protocols prefill,decode,naive --json "$EVAL_OUT/$m.presses.json"
done
"$PYTHON" scripts/press_report.py "$EVAL_OUT"/*.json --out "$REPORT" --plots "$(dirname "$REPORT")"
