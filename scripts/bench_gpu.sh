#!/usr/bin/env bash
# scripts/bench_gpu.sh: everything kvgpt measures on a GPU, in one go, into docs/gpu/ :
#   1. the CUDA test suite (test/test_cuda: every kernel and the model vs the CPU)
#   2. every dev/cuda microbenchmark at GPT-2 124M shapes
#   3. training throughput: ./train_gpt (bf16) for gpt2-124m (B=16, T=1024) and pythia-70m (B=8,
#      T=2048), side by side with
#      dev/torch_gpt.py (PyTorch SDPA, eager and torch.compile) on the same shapes, same device
#   4. data parallel with NCCL on one rank (mpirun -np 1) against the plain run
#   5. scripts/hf_parity_gpu.sh (import / export against transformers) into docs/gpu/hf_parity.txt
# and writes docs/gpu/report.md (Markdown table: tok/s, ms/step, MFU). Run from the repo root:
#   make train_gpt test/test_cuda bench_cuda && bash scripts/bench_gpu.sh [steps]
set -u
cd "$(dirname "$0")/.."
STEPS=${1:-30}
OUT=docs/gpu
mkdir -p "$OUT"
PY=${PYTHON:-python3}
DEVICE=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)
[ -n "$DEVICE" ] || { echo "bench_gpu.sh: no GPU (nvidia-smi found none)"; exit 1; }
echo "device: $DEVICE"

./test/test_cuda > "$OUT/test_cuda.txt" 2>&1; echo "test_cuda: $(tail -n 1 "$OUT/test_cuda.txt")"
: > "$OUT/dev_cuda.txt"
for b in dev/cuda/bin/*; do "$b" >> "$OUT/dev_cuda.txt" 2>&1; echo >> "$OUT/dev_cuda.txt"; done

# median ms/step of a JSONL log after the first 5 steps (warm-up); prints "ms tok_s mfu"
median() {
    $PY - "$1" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l and '"step"' in l]
rows = rows[5:] if len(rows) > 5 else rows
ms = statistics.median(r["ms"] for r in rows)
tok = statistics.median(r["tok_s"] for r in rows)
mfu = statistics.median(r.get("mfu", float("nan")) for r in rows)
print(f"{ms:.1f} {tok:.0f} {100 * mfu:.1f}")
EOF
}

table="| model | B x T | implementation | ms/step | tok/s | MFU |\n|---|---|---|---|---|---|\n"
for spec in "gpt2-124m 16 1024" "pythia-70m 8 2048"; do  # the bundled val set holds 26.7K tokens
    set -- $spec
    model=$1; B=$2; T=$3
    log="$OUT/train_${model}.jsonl"
    ./train_gpt -m "$model" -b "$B" -t "$T" -x "$STEPS" -n 0 -v 1 -d cuda -L "$log" > "$OUT/train_${model}.txt" 2>&1 \
        || { echo "train_gpt failed for $model (see $OUT/train_${model}.txt)"; continue; }
    read -r ms tok mfu < <(median "$log")
    table+="| $model | $B x $T | kvgpt train_gpt (bf16) | $ms | $tok | $mfu% |\n"
    for c in "" "--compile"; do
        $PY dev/torch_gpt.py --model "$model" -b "$B" -t "$T" --steps "$STEPS" $c > "$OUT/torch_${model}${c:+_compile}.txt" 2>&1 \
            || { table+="| $model | $B x $T | PyTorch ${c:-eager} | failed (see $OUT) | | |\n"; continue; }
        line=$(tail -n 1 "$OUT/torch_${model}${c:+_compile}.txt")
        row=$($PY -c 'import json,sys; d=json.loads(sys.argv[1]); m=d["mfu"]; print("| %s %s | %.1f | %.0f | %s |" % (d["impl"], d["torch"], d["ms"], d["tok_s"], "%.1f%%" % (100 * m) if m else "n/a"))' "$line")
        table+="| $model | $B x $T $row\n"
    done
done
{
    echo "# kvgpt on $DEVICE"
    echo
    echo "Measured $(date -u +%Y-%m-%d) by \`bash scripts/bench_gpu.sh $STEPS\` (median step after 5 warm-up steps; MFU against the"
    echo "datasheet's dense bf16 peak, with train_gpt's FLOP count for both implementations)."
    echo
    printf "%b" "$table"
    echo
    echo "Raw outputs: test_cuda.txt, dev_cuda.txt, train_*.txt / .jsonl, torch_*.txt in this folder."
} > "$OUT/report.md"
cat "$OUT/report.md"

# NCCL with one rank (a GPU machine here has one GPU): mpirun -np 1 must reproduce the plain
# device run's losses exactly (a one-rank all-reduce is a copy)
if command -v mpirun >/dev/null 2>&1 && ldd ./train_gpt | grep -q libnccl; then
    [ "$(id -u)" -eq 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    common="-m pythia-70m -b 8 -t 512 -x 10 -n 0 -v 1 -d cuda"
    ./train_gpt $common -L "$OUT/nccl_plain.jsonl" > "$OUT/nccl_plain.txt" 2>&1
    timeout 300 mpirun -np 1 ./train_gpt $common -L "$OUT/nccl_np1.jsonl" > "$OUT/nccl_np1.txt" 2>&1
    if grep -q "gradients over NCCL" "$OUT/nccl_np1.txt" && [ "$(grep -o '"loss":[^,]*' "$OUT/nccl_plain.jsonl")" = "$(grep -o '"loss":[^,]*' "$OUT/nccl_np1.jsonl")" ]; then
        echo "nccl (1 rank): losses equal the plain run's"
    else
        echo "nccl (1 rank): FAILED (see $OUT/nccl_np1.txt)"
    fi
else
    echo "nccl: skipped (no mpirun, or train_gpt built without NCCL)"
fi

# the Hugging Face parity against transformers' own classes (the GPU machine has transformers)
if $PY -c "import transformers" >/dev/null 2>&1; then
    bash scripts/hf_parity_gpu.sh > /dev/null 2>&1; echo "hf_parity: $(tail -n 1 "$OUT/hf_parity.txt")"
else
    echo "hf_parity: skipped (no transformers in $PY)"
fi
