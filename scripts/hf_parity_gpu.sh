#!/usr/bin/env bash
# scripts/hf_parity_gpu.sh: the Hugging Face parity check against transformers' own classes, for the
# GPU machine (it has transformers; nothing is downloaded). Builds what it needs, then runs
# scripts/hf_parity_gpu.py (see its header): import and export of GPT-NeoX (pythia-70m's config and
# a variant) and GPT-2 (124M and a variant) against transformers' logits, and the exported tokenizers
# against the golden ids. Under 3 minutes; writes its output to docs/gpu/hf_parity.txt.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
$PY -c "import transformers, torch, numpy" || { echo "hf_parity_gpu.sh: needs transformers, torch and numpy in $PY"; exit 1; }
make -s test/logits_dump || exit 1
mkdir -p docs/gpu
$PY scripts/hf_parity_gpu.py 2>&1 | tee docs/gpu/hf_parity.txt
exit "${PIPESTATUS[0]}"
