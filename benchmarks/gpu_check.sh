#!/usr/bin/env bash
# One prepared run for a lent GPU machine: the CUDA tests, then the training and W1
# benchmarks on the GPU (device="auto" picks CUDA; W1's largest size last, so that a
# timeout keeps the smaller ones). Output goes to $OUT when set.
# Usage: bash benchmarks/gpu_check.sh
# Needs torch (a CUDA build), scikit-learn, numpy, joblib and pytest on the machine;
# sklip itself is imported from this working tree, so nothing has to be installed
# (the device machine has no network). deel-torchlip and POT are optional.
set -uo pipefail
out="${OUT:-.}"
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/gpu.txt"
python -c "import torch, sklearn, sklip; print('torch', torch.__version__, 'cuda',
torch.cuda.is_available(), 'sklearn', sklearn.__version__)" 2>&1 | tee -a "$out/gpu.txt"
python -m pytest -q -p no:cacheprovider -m gpu tests 2>&1 | tee "$out/gpu_tests.log"
python benchmarks/training.py --epochs 30 2>&1 | tee "$out/gpu_training.md"
python benchmarks/wasserstein.py --methods sklip --sizes 10000 100000 1000000 3000000 2>&1 \
    | tee "$out/gpu_wasserstein.md"
# Both scripts wrote their tables into RESULTS.md: bring it back.
cp benchmarks/RESULTS.md "$out/RESULTS.md"
