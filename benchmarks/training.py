"""Training speed and robustness, side by side: sklip, plain PyTorch, deel-torchlip, sklearn.

Same data (75/25 stratified split, standardised), widths (128, 128), batch size
128 and number of epochs for every contender:

* sklip: ``LipschitzClassifier`` (HKR, alpha=10, margin=1);
* plain: an unconstrained PyTorch MLP with ReLU and cross-entropy, the floor;
* deel-torchlip: SpectralLinear + GroupSort2 + FrobeniusLinear with its HKR loss
  at the equivalent parameters (a = alpha / (1 + alpha), min_margin = 2 margin);
  optional (``pip install deel-torchlip``), skipped when missing;
* sklearn: ``MLPClassifier`` (fit time and accuracy only).

Seconds per epoch are the mean over epochs of the training loop alone. Certified
accuracy at eps uses ``sklip.nn.lipschitz_bound`` on each exported network, so
every torch model is certified the same way (an unconstrained MLP gets a bound
far above 1, hence tiny radii).

Run: ``python benchmarks/training.py [--epochs 30]`` (a few minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
from sklearn.datasets import load_digits, make_moons
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler
from torch import nn

from sklip import LipschitzClassifier
from sklip.nn import lipschitz_bound, pairwise_lipschitz_bound
from sklip.robustness import certified_accuracy_curve, radius_from_outputs

EPS = (0.25, 0.5, 1.0)
WIDTH, BATCH, LR, ALPHA, MARGIN = 128, 128, 5e-3, 10.0, 1.0


def datasets() -> dict[str, tuple[np.ndarray, ...]]:
    X, y = load_digits(return_X_y=True)
    keep = (y == 0) | (y == 8)
    moons = make_moons(10_000, noise=0.2, random_state=0)
    out = {}
    for name, (data, target) in {
        "digits 0-vs-8": (X[keep], y[keep]),
        "moons 10k": moons,
        "digits 10-class": (X, y),
    }.items():
        X_train, X_test, y_train, y_test = train_test_split(
            data, target, test_size=0.25, stratify=target, random_state=0
        )
        scaler = StandardScaler().fit(X_train)
        out[name] = (
            scaler.transform(X_train).astype(np.float32),
            scaler.transform(X_test).astype(np.float32),
            y_train,
            y_test,
        )
    return out


def certified(
    net: nn.Module, X: np.ndarray, y: np.ndarray, bound_net: nn.Module | None = None
) -> tuple[float, list[float]]:
    """Accuracy and certified accuracy at EPS of a torch network (1 output: binary).

    ``bound_net`` (default ``net``) is what the Lipschitz bounds are computed on.
    """
    net = net.eval()
    bound_net = net if bound_net is None else bound_net
    with torch.no_grad():
        out = net(torch.as_tensor(X)).double().numpy()
    if out.shape[1] == 1:
        predicted = (out[:, 0] > 0).astype(int)
        radius = radius_from_outputs(out, lipschitz_bound(bound_net))
    else:
        predicted = out.argmax(axis=1)
        pairwise = pairwise_lipschitz_bound(bound_net).numpy()
        radius = radius_from_outputs(out, lipschitz_bound(bound_net), pairwise)
    correct = predicted == y
    curve = certified_accuracy_curve(correct, radius, np.asarray(EPS))
    return float(correct.mean()), curve.tolist()


def torch_loop(net, loss_fn, X, targets, epochs, seed=0, fused=None) -> float:
    """Plain mini-batch Adam loop; returns the mean seconds per epoch."""
    optimizer = torch.optim.Adam(net.parameters(), lr=LR, fused=fused)
    generator = torch.Generator().manual_seed(seed)
    X, targets = torch.as_tensor(X), torch.as_tensor(targets)
    times = []
    for _ in range(epochs):
        started = time.perf_counter()
        net.train()
        order = torch.randperm(len(X), generator=generator)
        for start in range(0, len(X), BATCH):
            index = order[start : start + BATCH]
            optimizer.zero_grad(set_to_none=True)
            loss_fn(net(X[index]), targets[index]).backward()
            optimizer.step()
        times.append(time.perf_counter() - started)
    return float(np.mean(times))


def run_plain(X, X_test, y, y_test, n_classes, epochs, fused=None):
    torch.manual_seed(0)
    n_out = 1 if n_classes == 2 else n_classes
    net = nn.Sequential(
        nn.Linear(X.shape[1], WIDTH), nn.ReLU(), nn.Linear(WIDTH, WIDTH), nn.ReLU(),
        nn.Linear(WIDTH, n_out),
    )  # fmt: skip
    if n_classes == 2:
        loss = nn.BCEWithLogitsLoss()
        targets = y.astype(np.float32)[:, None]
    else:
        loss, targets = nn.CrossEntropyLoss(), y
    seconds = torch_loop(net, loss, X, targets, epochs, fused=fused)
    return seconds, net


def run_torchlip(X, X_test, y, y_test, n_classes, epochs):
    import deel.torchlip as tl

    torch.manual_seed(0)
    n_out = 1 if n_classes == 2 else n_classes
    net = tl.Sequential(
        tl.SpectralLinear(X.shape[1], WIDTH), tl.GroupSort2(),
        tl.SpectralLinear(WIDTH, WIDTH), tl.GroupSort2(),
        tl.FrobeniusLinear(WIDTH, n_out),
    )  # fmt: skip
    a = ALPHA / (1 + ALPHA)
    if n_classes == 2:
        loss = tl.HKRLoss(a, min_margin=2 * MARGIN)
        targets = (2 * y - 1).astype(np.float32)[:, None]
    else:
        loss = tl.HKRMulticlassLoss(a, min_margin=2 * MARGIN)
        targets = np.eye(n_classes, dtype=np.float32)[y]
    seconds = torch_loop(net, loss, X, targets, epochs)
    plain = net.vanilla_export()
    # Same layers with deel's sorting activations (1-Lipschitz) seen as identities,
    # which sklip.nn.lipschitz_bound knows: the bound is the product of the dense norms.
    shadow = nn.Sequential(
        *[layer if isinstance(layer, nn.Linear) else nn.Identity() for layer in plain]
    )
    return seconds, plain, shadow


def inference_rate(net: nn.Module, X: np.ndarray, rows: int = 200_000) -> float:
    """Rows per second of a float32 forward pass in chunks of 4096 (best of 3)."""
    data = torch.as_tensor(np.resize(X, (rows, X.shape[1])))
    net = net.eval()
    best = np.inf
    with torch.no_grad():
        for _ in range(3):
            started = time.perf_counter()
            for start in range(0, rows, 4096):
                net(data[start : start + 4096])
            best = min(best, time.perf_counter() - started)
    return rows / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # torch's one-off lazy imports
    print(f"machine: {platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {args.epochs} epochs, batch {BATCH}, "
          f"widths ({WIDTH}, {WIDTH})\n")  # fmt: skip
    header = (
        "| data | model | s/epoch | ratio to plain | test acc | "
        + " | ".join(f"cert acc @{eps}" for eps in EPS)
        + " | inference rows/s | inference time ratio to plain |"
    )
    print(header)
    print("|---" * (7 + len(EPS)) + "|")
    for name, (X, X_test, y, y_test) in datasets().items():
        classes = np.unique(y)
        y_idx, y_test_idx = np.searchsorted(classes, y), np.searchsorted(classes, y_test)
        rows = []
        seconds, net = run_plain(X, X_test, y_idx, y_test_idx, len(classes), args.epochs)
        plain_seconds = seconds
        rows.append(("plain ReLU MLP", seconds, *certified(net, X_test, y_test_idx),
                     inference_rate(net, X_test)))  # fmt: skip
        seconds, net = run_plain(X, X_test, y_idx, y_test_idx, len(classes), args.epochs, True)
        rows.append(("plain ReLU MLP, fused Adam", seconds, *certified(net, X_test, y_test_idx),
                     inference_rate(net, X_test)))  # fmt: skip
        clf = LipschitzClassifier(
            hidden_layer_sizes=(WIDTH, WIDTH), batch_size=BATCH, learning_rate=LR,
            alpha=ALPHA, margin=MARGIN, max_epochs=args.epochs, n_iter_no_change=10**6,
            random_state=0,
        ).fit(X, y)  # fmt: skip
        seconds = float(np.mean([r["epoch_time"] for r in clf.history_]))
        exported = clf.to_torch()
        rows.append(("sklip", seconds, *certified(exported, X_test, y_test_idx),
                     inference_rate(exported, X_test)))  # fmt: skip
        try:
            seconds, net, shadow = run_torchlip(
                X, X_test, y_idx, y_test_idx, len(classes), args.epochs
            )
            rows.append(("deel-torchlip", seconds, *certified(net, X_test, y_test_idx, shadow),
                         inference_rate(net, X_test)))  # fmt: skip
        except ImportError:
            print(f"| {name} | deel-torchlip | not installed |")
        mlp = MLPClassifier(
            (WIDTH, WIDTH), batch_size=BATCH, learning_rate_init=LR, max_iter=args.epochs,
            n_iter_no_change=args.epochs + 1, tol=0.0, random_state=0,
        )  # fmt: skip
        started = time.perf_counter()
        mlp.fit(X, y)
        seconds = (time.perf_counter() - started) / mlp.n_iter_
        rows.append(("sklearn MLPClassifier", seconds, mlp.score(X_test, y_test), None, None))
        plain_rate = rows[0][-1]
        for model, seconds, accuracy, certs, rate in rows:
            cert = ["-"] * len(EPS) if certs is None else [f"{c:.3f}" for c in certs]
            speed = ["-", "-"] if rate is None else [f"{rate:,.0f}", f"{plain_rate / rate:.2f}"]
            print(f"| {name} | {model} | {seconds:.4f} | {seconds / plain_seconds:.2f} | "
                  f"{accuracy:.3f} | " + " | ".join(cert + speed) + " |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
