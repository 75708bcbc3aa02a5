"""Image suite: sklip's CNNs against its MLP, deel-torchlip's CNN and a plain CNN (issue 15).

Data:

* "digits 8x8": ``load_digits`` (10 classes), standardised per pixel by a
  ``StandardScaler`` fitted on the training part (as in the gallery example);
  radii in standardised units.
* "translated 20x20": each digit upsampled to 16x16 (every pixel a 2x2 block),
  divided by 16 (pixels in [0, 1]) and pasted at a random offset (0 to 4
  pixels along each axis, drawn once with seed 0) on a 20x20 black canvas,
  train and test alike: a dense network cannot rely on positions. Radii in
  pixel units of the [0, 1] images.
* "translated 28x28": the same with the issue's other size, each digit
  upsampled to 24x24 (3x3 blocks) on a 28x28 canvas (offsets 0 to 4).

Protocol: one stratified 75/25 split (random_state=0). Rows: sklip's MLP
(``LipschitzClassifier()`` defaults), sklip's CNN with each convolution
(``lipschitz_cnn(conv=..., downsampling=...)``; the classifier's own CNN is the
``aol + unshuffle`` row), deel-torchlip's CNN (SpectralConv2d + GroupSort2 +
ScaledL2NormPool2d, the same channels and dense head, its HKR loss at sklip's
alpha and ``margin_``, the same batch size, learning rate and number of epochs
as the default sklip CNN), and a plain CNN (Conv2d + ReLU + max pooling, cross
entropy, the same epochs) for clean accuracy. Every sklip and deel row uses
``conv_channels=(16, 32)`` and a (128, 128) dense head. Columns: accuracy,
certified accuracy at three radii, seconds per epoch (mean of the epochs, in
the same process), epochs.

Run: ``python benchmarks/images.py [--datasets ...] [--rows ...] [--smoke]
[--no-record]``; it prints the table and the goals of issue 15 and writes them
into RESULTS.md. ``--smoke`` runs toy sizes (200 training rows, 2 epochs; for the tests).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from _record import record
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from torch import nn

from sklip import LipschitzClassifier
from sklip._inputs import image_shape_for
from sklip.nn import GroupSort, L2NormPool2d, lipschitz_cnn
from sklip.robustness import certified_accuracy_curve

RADII = {
    "digits 8x8": (0.5, 1.0, 1.5),
    "translated 20x20": (0.5, 1.0, 1.5),
    "translated 28x28": (0.5, 1.0, 1.5),
}
SHAPES = {"digits 8x8": (1, 8, 8), "translated 20x20": (1, 20, 20), "translated 28x28": (1, 28, 28)}
UPSAMPLING = {"translated 20x20": 2, "translated 28x28": 3}  # pixels per digit pixel
CHANNELS = (16, 32)
VARIANTS = {  # row name -> (conv, downsampling) of lipschitz_cnn
    "sklip CNN aol + unshuffle": ("aol", "unshuffle"),
    "sklip CNN cayley + unshuffle": ("cayley", "unshuffle"),
    "sklip CNN aol + L2 pool": ("aol", "pool"),
    "sklip CNN bound + L2 pool": ("bound", "pool"),
}
DEFAULT_CNN = "sklip CNN aol + unshuffle"
ROWS = ("sklip MLP", *VARIANTS, "deel-torchlip CNN", "plain CNN")


def translated_digits(
    canvas: int = 20, block: int = 2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Digits upsampled by ``block``, in [0, 1], at a random offset on a ``canvas`` square."""
    X, y = load_digits(return_X_y=True)
    size = 8 * block
    upsampled = np.kron(X.reshape(-1, 8, 8) / 16.0, np.ones((1, block, block)))
    rng = np.random.RandomState(seed)
    offsets = rng.randint(0, canvas - size + 1, size=(len(X), 2))
    images = np.zeros((len(X), canvas, canvas))
    for image, digit, (top, left) in zip(images, upsampled, offsets, strict=True):
        image[top : top + size, left : left + size] = digit
    return images.reshape(len(X), -1), y


def load(name: str, smoke: bool = False) -> tuple[np.ndarray, ...]:
    """Train and test parts of a data set, in the units its radii are stated in."""
    if name == "digits 8x8":
        X, y = load_digits(return_X_y=True)
    else:
        X, y = translated_digits(SHAPES[name][-1], UPSAMPLING[name])
    sizes = {"train_size": 200, "test_size": 100} if smoke else {}
    X_train, X_test, y_train, y_test = train_test_split(X, y, stratify=y, random_state=0, **sizes)
    if name == "digits 8x8":
        scaler = StandardScaler().fit(X_train)
        X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
    return X_train, X_test, y_train, y_test


def cnn_classifier(conv: str, downsampling: str) -> type[LipschitzClassifier]:
    """LipschitzClassifier whose CNN uses another convolution (for this benchmark only)."""

    class Variant(LipschitzClassifier):
        def _build_module(self, n_features, n_outputs, generator):
            return lipschitz_cnn(
                image_shape_for(self.image_shape, n_features),
                tuple(self.conv_channels),
                self._hidden_sizes(),
                n_outputs,
                self.activation,
                conv=conv,
                downsampling=downsampling,
                generator=generator,
            )

    return Variant


def run_sklip(clf, data, radii) -> dict:
    X_train, X_test, y_train, y_test = data
    started = time.perf_counter()
    clf.fit(X_train, y_train)
    seconds = time.perf_counter() - started
    correct = clf.predict(X_test) == y_test
    radius = clf.certified_radius(X_test)
    per_epoch = float(np.mean([r["epoch_time"] for r in clf.history_]))
    return {
        "accuracy": float(correct.mean()),
        "certified": certified_accuracy_curve(correct, radius, np.asarray(radii)).tolist(),
        "epoch": per_epoch,
        "epochs": clf.n_iter_,
        "seconds": seconds,
        "fitted": clf,
    }


def deel_cnn(shape, n_classes: int, alpha: float, margin: float):
    """deel-torchlip's counterpart of sklip's CNN, its loss, and its bound network."""
    import deel.torchlip as tl

    channels, height, width = shape
    layers, size = [], (height, width)
    for out in CHANNELS:
        layers += [tl.SpectralConv2d(channels, out, 3, padding=1), tl.GroupSort2()]
        channels = out
        if min(size) >= 2:
            layers.append(tl.ScaledL2NormPool2d(2))
            size = (size[0] // 2, size[1] // 2)
    layers += [nn.Flatten(), tl.SpectralLinear(channels * size[0] * size[1], 128)]
    layers += [tl.GroupSort2(), tl.SpectralLinear(128, 128), tl.GroupSort2()]
    layers.append(tl.FrobeniusLinear(128, n_classes))
    net = tl.Sequential(nn.Unflatten(1, shape), *layers)
    loss = tl.HKRMulticlassLoss(alpha / (1 + alpha), min_margin=2 * margin)
    return net, loss


def bound_network(plain: nn.Sequential) -> nn.Sequential:
    """deel's exported layers with its 1-Lipschitz parameter-free layers as sklip's."""
    shadow = []
    for layer in plain:
        if isinstance(layer, nn.Linear | nn.Conv2d | nn.Flatten | nn.Unflatten):
            shadow.append(layer)
        elif "Pool" in type(layer).__name__:
            shadow.append(L2NormPool2d(2))  # the same map: the norm of each 2x2 window
        else:
            shadow.append(GroupSort(2))  # sorting activations: 1-Lipschitz, shape kept
    return nn.Sequential(*shadow)


def run_deel(data, shape, reference: LipschitzClassifier, radii) -> dict:
    from training import certified

    X_train, X_test, y_train, y_test = (np.asarray(a) for a in data)
    n_classes = len(np.unique(y_train))
    torch.manual_seed(0)
    net, loss = deel_cnn(shape, n_classes, reference.alpha, reference.margin_)
    targets = torch.as_tensor(np.eye(n_classes, dtype=np.float32)[y_train])
    epoch = torch_epochs(net, loss, X_train, targets, reference)
    plain = net.vanilla_export().eval()
    if not all(bool(torch.isfinite(p).all()) for p in plain.parameters()):
        # LPPool2d's square root has an infinite gradient at 0: a window of
        # exact zeros (black canvas, zero biases) makes the weights NaN.
        return {"diverged": True, "epoch": epoch, "epochs": reference.n_iter_}
    accuracy, curve = certified(
        plain, X_test.astype(np.float32), y_test, bound_network(plain), radii, (X_test.shape[1],)
    )
    return {"accuracy": accuracy, "certified": curve, "epoch": epoch, "epochs": reference.n_iter_}


def torch_epochs(net, loss_fn, X, targets, reference: LipschitzClassifier) -> float:
    """Adam at sklip's learning rate, batch size and epochs; mean seconds per epoch."""
    optimizer = torch.optim.Adam(net.parameters(), lr=reference.learning_rate)
    X = torch.as_tensor(X, dtype=torch.float32)
    generator = torch.Generator().manual_seed(0)
    times = []
    for _ in range(reference.n_iter_):
        started = time.perf_counter()
        net.train()
        order = torch.randperm(len(X), generator=generator)
        for start in range(0, len(X), reference.batch_size):
            index = order[start : start + reference.batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss_fn(net(X[index]), targets[index]).backward()
            optimizer.step()
        times.append(time.perf_counter() - started)
    return float(np.mean(times))


def plain_cnn(shape, n_classes: int) -> nn.Sequential:
    channels, height, width = shape
    layers, size = [nn.Unflatten(1, shape)], (height, width)
    for out in CHANNELS:
        layers += [nn.Conv2d(channels, out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        channels, size = out, (size[0] // 2, size[1] // 2)
    layers += [nn.Flatten(), nn.Linear(channels * size[0] * size[1], 128), nn.ReLU()]
    layers += [nn.Linear(128, n_classes)]
    return nn.Sequential(*layers)


def run_plain(data, shape, reference: LipschitzClassifier) -> dict:
    X_train, X_test, y_train, y_test = data
    torch.manual_seed(0)
    net = plain_cnn(shape, len(np.unique(y_train)))
    targets = torch.as_tensor(y_train)
    epoch = torch_epochs(net, nn.CrossEntropyLoss(), X_train, targets, reference)
    with torch.no_grad():
        predicted = net.eval()(torch.as_tensor(X_test, dtype=torch.float32)).argmax(1).numpy()
    return {"accuracy": float(np.mean(predicted == y_test)), "certified": None, "epoch": epoch,
            "epochs": reference.n_iter_}  # fmt: skip


def evaluate(name: str, rows: tuple[str, ...], epochs: int | None, smoke: bool) -> dict[str, dict]:
    data = load(name, smoke)
    shape, radii = SHAPES[name], RADII[name]
    params = {"random_state": 0, "device": "cpu"}
    if epochs is not None:
        params["max_epochs"] = epochs
    results = {}
    if "sklip MLP" in rows:
        results["sklip MLP"] = run_sklip(LipschitzClassifier(**params), data, radii)
    for row, (conv, downsampling) in VARIANTS.items():
        if row in rows or (row == DEFAULT_CNN and {"deel-torchlip CNN", "plain CNN"} & set(rows)):
            clf = cnn_classifier(conv, downsampling)(image_shape=shape, **params)
            results[row] = run_sklip(clf, data, radii)
    reference = results.get(DEFAULT_CNN, {}).get("fitted")
    if "deel-torchlip CNN" in rows:
        try:
            results["deel-torchlip CNN"] = run_deel(data, shape, reference, radii)
        except ImportError:
            results["deel-torchlip CNN"] = None
    if "plain CNN" in rows:
        results["plain CNN"] = run_plain(data, shape, reference)
    return {row: results[row] for row in ROWS if row in results}


def table(name: str, results: dict[str, dict]) -> str:
    radii = RADII[name]
    header = " | ".join(f"cert acc @ {eps:g}" for eps in radii)
    lines = [f"**{name}** (radii in {'standardised' if '8x8' in name else 'pixel'} units)", "",
             f"| model | accuracy | {header} | s / epoch | epochs |",
             "|---|---|" + "---|" * len(radii) + "---|---|"]  # fmt: skip
    for row, result in results.items():
        if result is None:
            lines.append(f"| {row} | not importable: row skipped |" + " |" * (len(radii) + 2))
            continue
        if result.get("diverged"):
            lines.append(f"| {row} | diverged: non-finite weights |" + " - |" * len(radii)
                         + f" {result['epoch']:.3f} | {result['epochs']} |")  # fmt: skip
            continue
        certs = result["certified"] or [None] * len(radii)
        cells = " | ".join("-" if c is None else f"{c:.3f}" for c in certs)
        lines.append(f"| {row} | {result['accuracy']:.3f} | {cells} | "
                     f"{result['epoch']:.3f} | {result['epochs']} |")  # fmt: skip
    return "\n".join(lines)


def goals(name: str, results: dict[str, dict]) -> list[str]:
    """Issue 15's goals that this data set measures, each with its verdict."""
    cnn, mlp, deel = (results.get(r) for r in (DEFAULT_CNN, "sklip MLP", "deel-torchlip CNN"))
    out = []
    if cnn and mlp and name == "digits 8x8":
        ok = all(c >= m for c, m in zip(cnn["certified"], mlp["certified"], strict=True))
        ok = ok and cnn["accuracy"] >= mlp["accuracy"]
        out.append(f"CNN certifies at least the MLP at every radius, accuracy no lower: {_yes(ok)}")
    if cnn and mlp and name != "digits 8x8":
        gap = cnn["certified"][1] - mlp["certified"][1]
        verdict = _yes(gap >= 0.05)
        out.append(f"CNN beats the MLP by >= 5 points at eps 1.0: {gap * 100:+.1f} ({verdict})")
    if cnn and deel and deel.get("diverged") and name != "digits 8x8":
        out.append("CNN beats deel-torchlip's by >= 3 points at eps 1.0: deel-torchlip diverged")
    elif cnn and deel and name != "digits 8x8":
        gap = cnn["certified"][1] - deel["certified"][1]
        verdict = _yes(gap >= 0.03)
        out.append(f"CNN beats deel-torchlip's by >= 3 points at eps 1.0: {gap * 100:+.1f} "
                   f"({verdict})")  # fmt: skip
    if cnn and deel:
        ratio = cnn["epoch"] / deel["epoch"]
        out.append(f"CNN time per epoch <= 2x deel-torchlip's: {ratio:.2f}x ({_yes(ratio <= 2)})")
    return out


def _yes(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="*", choices=list(RADII), default=list(RADII))
    parser.add_argument("--rows", nargs="*", choices=ROWS, default=list(ROWS))
    parser.add_argument("--smoke", action="store_true", help="toy sizes, for the tests")
    parser.add_argument("--no-record", action="store_true", help="print only")
    args = parser.parse_args()
    warnings.simplefilter("ignore", UserWarning)
    torch.set_num_threads(1)
    blocks = []
    for name in args.datasets:
        results = evaluate(name, tuple(args.rows), 2 if args.smoke else None, args.smoke)
        block = table(name, results) + "\n\n" + "\n".join(f"- {g}" for g in goals(name, results))
        print(block + "\n", flush=True)
        blocks.append(block)
    if not (args.no_record or args.smoke):
        label = f"images.py: {', '.join(args.datasets)}"
        record(label, f"Image suite (issue 15): {', '.join(args.datasets)}", "\n\n".join(blocks))


if __name__ == "__main__":
    main()
