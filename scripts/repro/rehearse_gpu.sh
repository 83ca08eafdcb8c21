#!/usr/bin/env bash
# rehearse_gpu.sh: every recipe's SCALE=gpu branch, end to end, at a size any machine finishes.
# The full-scale recipes are meant for a GPU and take hours; a typo in a branch that no CPU run
# takes would only show after the first hour of a lent GPU. This runs each of them with its own
# shapes, flags and protocols (pythia-70m / GPT-2-124M at T = 1024, SPAM, every evaluation
# protocol, the press study on recipe 5's checkpoints) but 2 training steps, 2 validation batches,
# 2 held-out windows, one seed, one press sample and a small reversal-facts shard, into a scratch
# folder; the reports go there too (REPORT_DOCS), never into docs/. Its numbers mean nothing;
# what it shows is that every command of the GPU runs is accepted and every report builds.
#   bash scripts/repro/rehearse_gpu.sh   # 85 min on 2 CPU cores (2026-12-06, mostly beside other jobs); -d auto takes a GPU
#   RECIPES="1_mla_alibi 3_kvsplice" bash scripts/repro/rehearse_gpu.sh
# Environment: RECIPES (default all five, 5 before 4: the press study reads 5's checkpoints),
# OUTROOT (default a new folder under /tmp; kept, its path printed).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
RECIPES=${RECIPES:-1_mla_alibi 2_positions 3_kvsplice 5_variants 4_presses}
OUTROOT=${OUTROOT:-$(mktemp -d /tmp/kvgpt_rehearse.XXXXXX)}
mkdir -p "$OUTROOT/docs"
echo "rehearsing SCALE=gpu: $RECIPES (runs and reports in $OUTROOT)"
T0=$(date +%s)
for r in $RECIPES; do
    [ -f "scripts/repro/$r.sh" ] || { echo "Error: no recipe scripts/repro/$r.sh" >&2; exit 2; }
    t=$(date +%s)
    echo "=== $r"
    if ! SCALE=gpu STEPS=2 VB=2 MAXW=2 WIKI_DOCS=2 SEEDS=1 COMPANION_SEEDS=1 SAMPLES=1 REPEATS=2 FORCE=1 \
         OUT="$OUTROOT/$r" MODELS="$OUTROOT/5_variants" REPORT_DOCS="$OUTROOT/docs" \
         bash "scripts/repro/$r.sh" > "$OUTROOT/$r.log" 2>&1; then
        tail -n 25 "$OUTROOT/$r.log" >&2
        echo "Error: the SCALE=gpu branch of $r failed (whole log: $OUTROOT/$r.log)" >&2
        exit 1
    fi
    [ -s "$OUTROOT/docs/results/$r.md" ] || { echo "Error: $r finished without its report ($OUTROOT/docs/results/$r.md)" >&2; exit 1; }
    echo "    ok in $(( $(date +%s) - t )) s: $(grep -c '^=== ' "$OUTROOT/$r.log") runs; report $OUTROOT/docs/results/$r.md"
done
echo "rehearsal passed in $(( $(date +%s) - T0 )) s: every SCALE=gpu command ran (numbers meaningless: 2 steps)"
