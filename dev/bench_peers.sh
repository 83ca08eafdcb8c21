#!/usr/bin/env bash
# bench_peers.sh: kvgpt's CPU training step next to its peers on the same machine, same shape,
# same thread count, interleaved (kvgpt, PyTorch, llm.c, then again, ROUNDS times) so that a
# machine getting faster or slower mid-run affects every side alike. A benchmark, not a test.
#
#   PYTHON=/usr/bin/python3 bash dev/bench_peers.sh [MODEL B T ROUNDS STEPS]
#   LLMC=/tmp/llmc PYTHON=/usr/bin/python3 bash dev/bench_peers.sh gpt2-124m 4 64 3 5
#
#   kvgpt    ./train_gpt -m MODEL (fp32 AdamW with clip; the bundled data)
#   PyTorch  dev/torch_gpt.py --device cpu (fp32, same shapes, parameter counts asserted)
#   llm.c    with LLMC=DIR (gpt2-124m only): DIR is a copy of karpathy/llm.c outside this repo
#            (git archive of its snapshot) holding the files dev/llmc_peer_files.py writes; its
#            train_gpt2.c is copied to DIR/kvgpt_peer.c with B, T and the step count set, the
#            sampling and all but the first validation switched off (the timed step is not
#            touched), and built with its own flags (gcc -Ofast -march=native -fopenmp -DOMP).
# Each run's first step is dropped (warm-up). Prints each side's median (range) ms per step and
# the ratio to kvgpt. Needs a quiet machine: another busy process skews every side.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-gpt2-124m} B=${2:-4} T=${3:-64} ROUNDS=${4:-3} STEPS=${5:-5}
PYTHON=${PYTHON:-python3}
THREADS=${THREADS:-$(nproc)}
LLMC=${LLMC:-}
export OMP_NUM_THREADS=$THREADS
[ -x ./train_gpt ] || make train_gpt
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
if [ -n "$LLMC" ]; then
    [ "$MODEL" = gpt2-124m ] || { echo "Error: llm.c's CPU trainer is GPT-2 only: use MODEL=gpt2-124m or leave LLMC unset"; exit 1; }
    [ -f "$LLMC/train_gpt2.c" ] && [ -f "$LLMC/gpt2_124M.bin" ] || {
        echo "Error: LLMC=$LLMC needs llm.c's train_gpt2.c and gpt2_124M.bin"
        echo "HINT: git --git-dir=<llm.c mirror> archive HEAD | tar -x -C $LLMC && $PYTHON dev/llmc_peer_files.py $LLMC"; exit 1; }
    LL_BIN="$LLMC/kvgpt_peer_b${B}_t${T}_s${STEPS}"
    if [ ! -x "$LL_BIN" ]; then
        sed -e "s/int B = 4;/int B = $B;/" -e "s/int T = 64;/int T = $T;/" -e "s/step <= 40;/step <= $STEPS;/" \
            -e "s/if (step > 0 \&\& step % 20 == 0) {/if (0) {/" -e "s/if (step % 10 == 0) {/if (step == 0) {/" \
            "$LLMC/train_gpt2.c" > "$LLMC/kvgpt_peer.c"
        for want in "int B = $B;" "int T = $T;" "step <= $STEPS;" "if (0) {"; do
            grep -qF "$want" "$LLMC/kvgpt_peer.c" || { echo "Error: could not set '$want' in llm.c's train_gpt2.c (another version?)"; exit 1; }
        done
        (cd "$LLMC" && gcc -Ofast -march=native -fopenmp -DOMP kvgpt_peer.c -lm -o "$(basename "$LL_BIN")")
    fi
fi

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; $THREADS threads per program"
echo "model $MODEL, B=$B, T=$T, $ROUNDS rounds x $STEPS steps (first step of each run dropped)"
for r in $(seq "$ROUNDS"); do
    ./train_gpt -m "$MODEL" -b "$B" -t "$T" -x "$STEPS" -n 0 -v 1 -d cpu -L "$TMP/kvgpt_$r.jsonl" > "$TMP/kvgpt_$r.txt" 2>&1
    "$PYTHON" dev/torch_gpt.py --device cpu --threads "$THREADS" --model "$MODEL" -b "$B" -t "$T" --steps "$STEPS" > "$TMP/torch_$r.txt" 2>&1 \
        || { echo "PyTorch failed:"; tail -5 "$TMP/torch_$r.txt"; exit 1; }
    [ -n "$LLMC" ] && (cd "$LLMC" && "./$(basename "$LL_BIN")" > "$TMP/llmc_$r.txt" 2>&1)
    echo "round $r done"
done
"$PYTHON" - "$TMP" "$ROUNDS" "$MODEL" "$B" "$T" <<'EOF'
import glob, json, re, statistics, sys
tmp, rounds, model, B, T = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
def kvgpt(r):
    return [json.loads(l)["ms"] for l in open(f"{tmp}/kvgpt_{r}.jsonl") if '"loss"' in l][1:]
def torch_(r):
    return [float(m) for m in re.findall(r"^step .*?\| ([0-9.]+) ms", open(f"{tmp}/torch_{r}.txt").read(), re.M)][1:]
def llmc(r):
    return [float(m) for m in re.findall(r"^step (?!0:)\d+: .*took ([0-9.]+) ms", open(f"{tmp}/llmc_{r}.txt").read(), re.M)]
sides = [("kvgpt", kvgpt), ("PyTorch (CPU, fp32)", torch_)]
if glob.glob(f"{tmp}/llmc_*.txt"):
    sides.append(("llm.c train_gpt2.c", llmc))
med = {}
print(f"\n| program | {model} B x T | median ms/step (range, steps) | vs kvgpt |\n|---|---|---|---|")
for name, f in sides:
    ms = [x for r in range(1, rounds + 1) for x in f(r)]
    if not ms:
        raise SystemExit(f"no step times parsed for {name}")
    med[name] = statistics.median(ms)
    ratio = "1.00x" if name == "kvgpt" else f"**{med[name] / med['kvgpt']:.2f}x** slower"
    print(f"| {name} | {B} x {T} | {med[name]:,.0f} ({min(ms):,.0f}-{max(ms):,.0f}, {len(ms)}) | {ratio} |")
EOF
