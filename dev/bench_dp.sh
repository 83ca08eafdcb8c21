#!/usr/bin/env bash
# bench_dp.sh: data-parallel step time on this machine, one process vs N MPI ranks at the same
# total batch (a benchmark, not a test). Prints the median ms per step of each (the first 3
# steps, warm-up, left out), tokens/s and the ratio to the one-process run.
#
#   bash dev/bench_dp.sh                 # tiny preset, B=8 in total, T=128, 2 ranks, 30 steps
#   MODEL=pythia-14m RANKS=2 STEPS=20 BATCH=8 bash dev/bench_dp.sh
#
# One process gets every core (OpenMP); each rank gets cores/RANKS (mpirun pins ranks to cores).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-tiny} RANKS=${RANKS:-2} STEPS=${STEPS:-30} BATCH=${BATCH:-8} T=${T:-128}
[ $((BATCH % RANKS)) -eq 0 ] || { echo "Error: BATCH=$BATCH is not divisible by RANKS=$RANKS"; exit 1; }
command -v mpirun >/dev/null || { echo "Error: mpirun not found (apt-get install openmpi-bin libopenmpi-dev, then make train_gpt)"; exit 1; }
[ -x ./train_gpt ] || make train_gpt
[ "$(id -u)" -eq 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
COMMON="-m $MODEL -t $T -x $STEPS -n 0 -v 1 -d cpu"
median() {  # median "ms" of the step lines after the third
    python3 -c "import json,statistics,sys; ms=[json.loads(l)['ms'] for l in open(sys.argv[1]) if '\"loss\"' in l][3:]; print(f'{statistics.median(ms):.1f}')" "$1"
}
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; $(mpirun --version | head -1)"
echo "model $MODEL, T=$T, $BATCH sequences per step in total, $STEPS steps"
./train_gpt $COMMON -b "$BATCH" -A 1 -L "$TMP/one.jsonl" >/dev/null
./train_gpt $COMMON -b $((BATCH / RANKS)) -A "$RANKS" -L "$TMP/acc.jsonl" >/dev/null
mpirun --oversubscribe -np "$RANKS" ./train_gpt $COMMON -b $((BATCH / RANKS)) -A 1 -L "$TMP/dp.jsonl" >/dev/null
one=$(median "$TMP/one.jsonl"); acc=$(median "$TMP/acc.jsonl"); dp=$(median "$TMP/dp.jsonl")
tok=$((BATCH * T))
printf "| run | ms/step (median) | tok/s | speed vs 1 process |\n|---|---:|---:|---:|\n"
for row in "1 process, $(nproc) threads, -b $BATCH:$one" "1 process, $(nproc) threads, -b $((BATCH / RANKS)) -A $RANKS:$acc" \
           "mpirun -np $RANKS, -b $((BATCH / RANKS)) per rank:$dp"; do
    name=${row%%:*}; ms=${row##*:}
    python3 -c "import sys; ms=float(sys.argv[2]); print(f'| {sys.argv[1]} | {ms:.1f} | {int(sys.argv[3])/ms*1000:.0f} | {float(sys.argv[4])/ms:.2f}x |')" "$name" "$ms" "$tok" "$one"
done
