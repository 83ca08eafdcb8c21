#!/usr/bin/env bash
# run_bench_checks.sh: runs every dev/cuda microbenchmark, built for the CPU emulator
# (make bench_cuda_emu), at small sizes. Each benchmark checks its numbered versions against
# version 1 and exits non-zero on a mismatch; here a benchmark passes when it exits 0 and printed
# all its checks. (Its times are emulator times and are ignored.) Ends with "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
pass=0; fail=0
# benchmark, small-size arguments, number of "check" lines it must print
while read -r line; do
    [ -z "$line" ] && continue
    name=${line%% *}; checks=${line##* }; args=${line#"$name" }; args=${args%" $checks"}
    out=$(timeout 300 "dev/cuda/emu/$name" $args 2>&1); rc=$?
    n=$(printf "%s\n" "$out" | grep -c "^  check ")
    if [ $rc -eq 0 ] && [ "$n" -eq "$checks" ]; then
        echo "PASS dev/cuda/$name $args ($n checks)"; pass=$((pass + 1))
    else
        printf "%s\n" "$out" | sed 's/^/    /'
        echo "FAIL dev/cuda/$name $args (exit $rc, $n of $checks checks)"; fail=$((fail + 1))
    fi
done <<'LIST'
attention_forward 2 40 4 2 64 4
attention_forward 1 37 2 1 128 4
attention_forward 2 45 4 4 32 4
attention_backward 2 40 4 2 64 2
attention_backward 1 33 2 2 128 2
attention_backward 2 45 4 4 32 2
mla_attention 2 40 4 32 16 24 5
mla_attention 1 70 2 64 32 48 5
mla_attention 1 33 2 128 0 40 4
mka 2 40 4 32 16 3
decode 2 300 4 2 64 48 16 2
decode 1 70 2 1 32 32 0 2
mka 1 33 2 64 5 3
matmul 40 64 96 1
layernorm_forward 50 96 2
layernorm_backward 1100 40 2
classifier 10 1000 2
adamw 4 1000 1
elementwise 5000 0
LIST
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
