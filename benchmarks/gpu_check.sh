#!/usr/bin/env bash
# One prepared run for a lent GPU machine: the CUDA tests, then the W1 and training
# benchmarks on the GPU (device="auto" picks CUDA). Output goes to $OUT when set.
# Usage: bash benchmarks/gpu_check.sh   (needs sklip's runtime and test dependencies)
set -uo pipefail
out="${OUT:-.}"
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/gpu.txt"
python -m pytest -q -p no:cacheprovider -m gpu tests 2>&1 | tee "$out/gpu_tests.log"
python benchmarks/wasserstein.py --methods sklip --sizes 10000 100000 1000000 2>&1 \
    | tee "$out/gpu_wasserstein.md"
python benchmarks/training.py --epochs 30 2>&1 | tee "$out/gpu_training.md"
# Both scripts wrote their tables into RESULTS.md: bring it back.
cp benchmarks/RESULTS.md "$out/RESULTS.md"
