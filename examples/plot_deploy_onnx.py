"""
Deploying a certified model with ONNX, without PyTorch
======================================================

A scaler and a :class:`sklip.LipschitzClassifier` are trained on the digits,
exported as one ONNX graph with :func:`sklip.to_onnx` (float64 and float32)
and run by onnxruntime in a separate process that imports neither sklip nor
PyTorch. The graph returns labels, scores, probabilities and the certified
radius, in the raw pixel units, computed inside the graph for its own
arithmetic. They are checked against the estimator's; the model is also
saved with :func:`sklip.save`, which needs no pickle.
"""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import sklip
from sklip.robustness import certified_radius

SMALL = os.environ.get("SKLIP_EXAMPLES_SMALL", "0") != "0"  # smoke-test size
EPOCHS = 2 if SMALL else 60

X, y = load_digits(return_X_y=True)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0)
pipe = make_pipeline(
    StandardScaler(), sklip.LipschitzClassifier(max_epochs=EPOCHS, random_state=0)
).fit(X_train, y_train)
print(f"test accuracy {pipe.score(X_test, y_test):.3f}")

# %%
# Export, and a deployment script that only knows onnxruntime
# -----------------------------------------------------------
# The digits are integers: exact in float32, so the float64 estimator and
# the float32 graph see the same points.
folder = Path(tempfile.mkdtemp())
for dtype in ("float64", "float32"):
    sklip.to_onnx(pipe, folder / f"digits_{dtype}.onnx", dtype=dtype)
    np.save(folder / f"X_{dtype}.npy", X_test.astype(dtype))
sklip.save(pipe[-1], folder / "classifier.sklip")  # the classifier alone, no pickle

DEPLOY = """
import sys
import numpy as np
import onnxruntime as ort

folder = sys.argv[1]
for dtype in ("float64", "float32"):
    session = ort.InferenceSession(f"{folder}/digits_{dtype}.onnx")
    outputs = session.run(["label", "radius"], {"X": np.load(f"{folder}/X_{dtype}.npy")})
    np.save(f"{folder}/label_{dtype}.npy", outputs[0])
    np.save(f"{folder}/radius_{dtype}.npy", outputs[1])
assert "torch" not in sys.modules and "sklip" not in sys.modules
print("deployed: onnxruntime", ort.__version__, "- no torch, no sklip imported")
"""
result = subprocess.run(
    [sys.executable, "-c", DEPLOY, str(folder)], capture_output=True, text=True, check=True
)
print(result.stdout.strip())

# %%
# The same predictions, and radii that never exceed the estimator's
# -----------------------------------------------------------------
expected_label = pipe.predict(X_test)
expected_radius = certified_radius(pipe, X_test)
for dtype in ("float64", "float32"):
    label = np.load(folder / f"label_{dtype}.npy")
    radius = np.load(folder / f"radius_{dtype}.npy")
    assert (label == expected_label).all() and (radius <= expected_radius).all()
    loss = np.max(expected_radius - radius)
    print(f"{dtype}: same labels; radius at most the estimator's, by at most {loss:.1e}")

loaded = sklip.load(folder / "classifier.sklip")
same = np.array_equal(
    loaded.certified_radius(pipe[0].transform(X_test)),
    pipe[-1].certified_radius(pipe[0].transform(X_test)),
)
print(f"sklip.load gives identical radii: {same}")

fig, ax = plt.subplots(figsize=(5, 4))
radius32 = np.load(folder / "radius_float32.npy")
ax.scatter(expected_radius, radius32, s=6)
top = expected_radius.max()
ax.plot([0, top], [0, top], "k--", linewidth=1, label="equal")
ax.set_xlabel("estimator's certified radius (pixel units)")
ax.set_ylabel("radius computed by the float32 ONNX graph")
ax.set_title("The exported certificate, run by onnxruntime")
ax.legend()
plt.show()
