#!/usr/bin/env bash
# run_cpu_bench_checks.sh: the CPU benchmarks (dev/bench_decode, dev/bench_attend) run at tiny
# sizes, so a change that breaks one fails the suite rather than the next person who measures;
# and bench_decode's device table (-d cuda) on the CPU emulator.
# Their figures are not checked (benchmarks, not timed tests): a benchmark passes when it exits 0
# and prints every row of its table (bench_attend exits non-zero itself on a non-finite output).
set -u
cd "$(dirname "$0")/.."
pass=0; fail=0
check() {  # name, rows it must print (lines starting with "| <prefix>"), prefix, command...
    local name=$1 want=$2 prefix=$3; shift 3
    local out rc got
    out=$("$@" 2>&1); rc=$?
    got=$(printf '%s\n' "$out" | grep -cE "^\| $prefix")
    if [ "$rc" -eq 0 ] && [ "$got" -eq "$want" ]; then
        echo "PASS $name ($got rows)"; pass=$((pass + 1))
    else
        printf '%s\n' "$out" | tail -n 20
        echo "FAIL $name: exit $rc, $got table rows (want $want)"; fail=$((fail + 1))
    fi
}
for b in dev/bench_attend dev/bench_decode dev/bench_decode_emu; do
    [ -x "$b" ] || { echo "FAIL $b is not built (make $b)"; echo "0 passed, 1 failed"; exit 1; }
done
# 5 variants x 2 placements
check "bench_attend, every variant, both placements" 10 "(mha|gqa|mqa|mla|kvsplice) " \
    ./dev/bench_attend --context 100 --batch 2 --layers 1 --l2-keys 40 --reps 1
# 7 variants x 2 batches (decode table) + 7 variants x 2 ratios (pressed-cache table)
check "bench_decode, every variant, the decode and pressed-cache tables" 28 "tiny " \
    ./dev/bench_decode --shapes tiny --variants mha,gqa,mqa,mla,kvsplice,mka,fmka --contexts 40 --batches 1,2 \
    --prefills 16 --press-ratios 0.5 --press-contexts 32 --steps 1
# the device table (-d cuda) on the CPU emulator: 3 variants (one per device attention kind) x 2 batches
check "bench_decode -d cuda (emulated device), the decode table" 6 "tiny \\| (mha|mla|mka) \\| bf16 \\|" \
    ./dev/bench_decode_emu -d cuda --shapes tiny --variants mha,mla,mka --contexts 40 --batches 1,2 --prefills 16 --steps 1
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
