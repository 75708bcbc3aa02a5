#!/usr/bin/env bash
# One prepared run for a lent GPU machine, well under 9 minutes on an H200 (each stage
# has its own time limit, 7.5 minutes in all at worst; expected about 4):
#   1. every gpu-marked test (tests/test_gpu.py: binary, multiclass 3 and 10 classes and
#      CNN classifiers, WassersteinEstimator and wasserstein_distance in memory and
#      streamed, partial_fit and fit_in_chunks, every sklip.robustness function,
#      CUDA-fitted pickles loaded by a CPU-only process, CPU/GPU agreement of the
#      float64 frozen network and its radii, the unfold convolution path);
#   2. a short multiclass MLP and CNN fit on 10-class digits (s/epoch, certified accuracy);
#   3. the training benchmark (one seed) and the W1 benchmark (sklip, up to 10^6 points
#      per set, largest last so that a timeout keeps the smaller rows) on the GPU
#      (device="auto" picks CUDA); both write their own "on GPU" block of RESULTS.md.
# Output goes to $OUT when set.
# Usage: bash benchmarks/gpu_check.sh
# Needs torch (a CUDA build), scikit-learn, numpy, joblib and pytest on the machine
# (matplotlib for one test); sklip itself is imported from this working tree, so nothing
# has to be installed (the device machine has no network). deel-torchlip and POT are
# optional.
set -uo pipefail
out="${OUT:-.}"
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
started=$SECONDS
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/gpu.txt"
python -c "import torch, sklearn, sklip; print('torch', torch.__version__, 'cuda',
torch.cuda.is_available(), 'sklearn', sklearn.__version__)" 2>&1 | tee -a "$out/gpu.txt"

timeout 210 python -m pytest -q -p no:cacheprovider -m gpu tests -rs --durations=10 2>&1 \
    | tee "$out/gpu_tests.log"
echo "[gpu_check] tests done at $((SECONDS - started)) s" | tee -a "$out/gpu.txt"

timeout 45 python - <<'PY' 2>&1 | tee "$out/gpu_multiclass_cnn.md"
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from sklip import LipschitzClassifier
from sklip.robustness import certified_accuracy

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.25, stratify=y, random_state=0
)
scaler = StandardScaler().fit(X_train)
X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
print("10-class digits, 20 epochs, batch 128\n")
print("| model | device | fit s | s/epoch | test acc | cert acc @0.25 | cert acc @0.5 |")
print("|---|---|---|---|---|---|---|")
for name, params in [
    ("MLP (128, 128)", {}),
    ("CNN (16, 32) + (128, 128)", dict(image_shape=(1, 8, 8), alpha=100.0, margin=0.5)),
]:
    started = time.perf_counter()
    clf = LipschitzClassifier(max_epochs=20, random_state=0, **params).fit(X_train, y_train)
    seconds = time.perf_counter() - started
    per_epoch = np.mean([record["epoch_time"] for record in clf.history_[1:]])
    cert = certified_accuracy(clf, X_test, y_test, [0.25, 0.5])
    print(f"| {name} | {clf.device_} | {seconds:.1f} | {per_epoch:.4f} | "
          f"{clf.score(X_test, y_test):.3f} | {cert[0]:.3f} | {cert[1]:.3f} |")
PY
echo "[gpu_check] multiclass/CNN done at $((SECONDS - started)) s" | tee -a "$out/gpu.txt"

timeout 120 python benchmarks/training.py --epochs 30 --seeds 1 2>&1 | tee "$out/gpu_training.md"
echo "[gpu_check] training done at $((SECONDS - started)) s" | tee -a "$out/gpu.txt"
timeout 100 python benchmarks/wasserstein.py --methods sklip --sizes 10000 100000 1000000 \
    2>&1 | tee "$out/gpu_wasserstein.md"
echo "[gpu_check] W1 done at $((SECONDS - started)) s" | tee -a "$out/gpu.txt"
# Both scripts wrote their tables into RESULTS.md: bring it back.
cp benchmarks/RESULTS.md "$out/RESULTS.md"
