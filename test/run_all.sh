#!/usr/bin/env bash
# run_all.sh: runs every test suite (C++ CPU, CUDA on the emulator, CUDA on a GPU when built,
# Python data tests, workflow tests, data-parallel tests, Hugging Face interop tests), sums their
# "N passed, N failed[, N skipped]" lines and prints the total as the closing line.
# A suite that crashes or prints no summary counts as one failure.
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
total_p=0; total_f=0; total_s=0
run_suite() {
    local name=$1; shift
    echo "=== $name: $*"
    local log; log=$(mktemp)
    "$@" 2>&1 | tee "$log"
    local rc=${PIPESTATUS[0]}
    local line; line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
    rm -f "$log"
    if [ -z "$line" ]; then
        echo "=== $name: no summary line (exit $rc): counted as 1 failure"
        total_f=$((total_f + 1)); return
    fi
    local p f s
    p=$(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/')
    f=$(echo "$line" | sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/')
    s=$(echo "$line" | grep -oE '[0-9]+ skipped' | grep -oE '[0-9]+' || echo 0)
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    total_p=$((total_p + p)); total_f=$((total_f + f)); total_s=$((total_s + ${s:-0}))
}
run_suite "C++ CPU tests" ./test/test_kvgpt
run_suite "CUDA kernels on the CPU emulator" ./test/test_cuda_emu
run_suite "dev/cuda benchmark checks on the CPU emulator" bash test/run_bench_checks.sh
run_suite "CPU benchmarks at tiny sizes" bash test/run_cpu_bench_checks.sh
[ -x test/test_cuda ] && run_suite "CUDA tests (GPU)" ./test/test_cuda
run_suite "Python data tests" "$PYTHON" test/test_data.py
run_suite "Workflow tests (metadata, progress, reports, plots, corpora)" "$PYTHON" test/test_workflow.py
run_suite "Data-parallel tests (mpirun -np 2, ZeRO-1, failures)" "$PYTHON" test/test_distributed.py
# the Hugging Face interop tests need numpy and torch: the first interpreter that has both
# (Debian's python3-torch lives in /usr/bin/python3); without one they report themselves skipped
HF_PYTHON=""
for py in "$PYTHON" python3 /usr/bin/python3; do
    if "$py" -c "import numpy, torch" >/dev/null 2>&1; then HF_PYTHON=$py; break; fi
done
run_suite "Hugging Face interop tests" "${HF_PYTHON:-$PYTHON}" test/test_hf.py
echo
echo "$total_p passed, $total_f failed, $total_s skipped"
[ "$total_f" -eq 0 ]
