"""Training speed and robustness, side by side: sklip, plain PyTorch, deel-torchlip, sklearn.

Same data (75/25 stratified split, standardised), widths (128, 128), batch size
128 and number of epochs for every contender:

* sklip: ``LipschitzClassifier`` (HKR, alpha=10, margin=1);
* plain: an unconstrained PyTorch MLP with ReLU and cross-entropy, the floor:
  with torch's defaults, and with sklip's settings (fused Adam, one thread on
  small CPU steps), the strictest floor;
* deel-torchlip: SpectralLinear + GroupSort2 + FrobeniusLinear with its HKR loss
  at the equivalent parameters (a = alpha / (1 + alpha), min_margin = 2 margin);
  optional (``pip install deel-torchlip``), skipped when missing;
* sklearn: ``MLPClassifier`` (fit time and accuracy only).

Every figure is the mean over ``--seeds`` training seeds (the split is fixed):
one seed moves test accuracy on 10-class digits by up to a point, more than
the differences being compared. Seconds per epoch are the training loop
alone, without the first epoch (warm-up). Certified accuracy at eps uses
``sklip.nn.lipschitz_bound`` on each exported network, so every torch model
is certified the same way (an unconstrained MLP gets a bound far above 1,
hence tiny radii). Inference: rows per second of the first seed's exported
networks, measured in turns. A second table varies the batch size on moons:
sklip's constraint costs the same per step whatever the batch, so its ratio to
the plain MLP falls as batches grow.

Run: ``python benchmarks/training.py [--epochs 30] [--seeds 3] [--device cpu]``
(about three minutes on 2 cores); it prints the tables and writes them into
RESULTS.md (``--no-record`` to only print). ``--smoke`` runs a toy version.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from _record import record
from sklearn.datasets import load_digits, make_moons
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler
from torch import nn

from sklip import LipschitzClassifier
from sklip._training import at_most_threads, step_threads
from sklip.nn import lipschitz_bound, pairwise_lipschitz_bound
from sklip.robustness import certified_accuracy_curve, radius_from_outputs

EPS = (0.25, 0.5, 1.0)
WIDTH, BATCH, LR, ALPHA, MARGIN = 128, 128, 5e-3, 10.0, 1.0
SWEEP_BATCHES = (128, 512, 2048)
PLAIN_SAME = "plain ReLU MLP, sklip's Adam and threads"


@dataclass
class Run:
    """One contender on one dataset: per-seed figures, reported as means."""

    model: str
    seconds: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    certified: list[list[float]] = field(default_factory=list)
    rate: float | None = None  # inference rows per second, first seed

    def add(self, seconds: float, accuracy: float, certified: list[float] | None) -> None:
        self.seconds.append(seconds)
        self.accuracy.append(accuracy)
        if certified is not None:
            self.certified.append(certified)


def datasets(smoke: bool = False) -> dict[str, tuple[np.ndarray, ...]]:
    X, y = load_digits(return_X_y=True)
    keep = (y == 0) | (y == 8)
    moons = make_moons(2_000 if smoke else 10_000, noise=0.2, random_state=0)
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
        classes = np.unique(y_train)
        out[name] = (
            scaler.transform(X_train).astype(np.float32),
            scaler.transform(X_test).astype(np.float32),
            np.searchsorted(classes, y_train),
            np.searchsorted(classes, y_test),
        )
    return out


def certified(
    net: nn.Module,
    X: np.ndarray,
    y: np.ndarray,
    bound_net: nn.Module | None = None,
    eps: Sequence[float] = EPS,
    input_shape: Sequence[int] | None = None,
) -> tuple[float, list[float]]:
    """Accuracy and certified accuracy at ``eps`` of a torch network (1 output: binary).

    ``bound_net`` (default ``net``) is what the Lipschitz bounds are computed on;
    ``input_shape`` (one sample's) gives its convolutions their image sizes.
    """
    net = net.cpu().eval()
    bound_net = net if bound_net is None else bound_net.cpu()
    with torch.no_grad():
        out = net(torch.as_tensor(X)).double().numpy()
    if out.shape[1] == 1:
        predicted = (out[:, 0] > 0).astype(int)
        radius = radius_from_outputs(out, lipschitz_bound(bound_net, input_shape))
    else:
        predicted = out.argmax(axis=1)
        pairwise = pairwise_lipschitz_bound(bound_net, input_shape).numpy()
        radius = radius_from_outputs(out, lipschitz_bound(bound_net, input_shape), pairwise)
    correct = predicted == y
    curve = certified_accuracy_curve(correct, radius, np.asarray(eps))
    return float(correct.mean()), curve.tolist()


def torch_loop(net, loss_fn, X, targets, epochs, batch, device, seed=0, fused=None) -> float:
    """Plain mini-batch Adam loop; returns the mean seconds per epoch."""
    net = net.to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=LR, fused=fused)
    generator = torch.Generator(device=device).manual_seed(seed)
    X, targets = torch.as_tensor(X, device=device), torch.as_tensor(targets, device=device)
    times = []
    for _ in range(epochs):
        _sync(device)
        started = time.perf_counter()
        net.train()
        order = torch.randperm(len(X), generator=generator, device=device)
        for start in range(0, len(X), batch):
            index = order[start : start + batch]
            optimizer.zero_grad(set_to_none=True)
            loss_fn(net(X[index]), targets[index]).backward()
            optimizer.step()
        _sync(device)
        times.append(time.perf_counter() - started)
    return _mean_after_warm_up(times)


def _mean_after_warm_up(times: list[float]) -> float:
    """Mean seconds per epoch without the first (lazy initialisation, cold caches)."""
    return float(np.mean(times[1:] if len(times) > 1 else times))


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_plain(X, y, n_classes, epochs, seed, batch=BATCH, device="cpu", fused=None):
    torch.manual_seed(seed)
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
    # The fused row mirrors sklip's settings: its optimiser and its thread rule.
    with at_most_threads(step_threads(net, batch, device) if fused else None):
        seconds = torch_loop(net, loss, X, targets, epochs, batch, device, seed, fused)
    return seconds, net


def run_sklip(X, y, epochs, seed, batch=BATCH, device="cpu"):
    clf = LipschitzClassifier(
        hidden_layer_sizes=(WIDTH, WIDTH), batch_size=batch, learning_rate=LR,
        alpha=ALPHA, margin=MARGIN, max_epochs=epochs, n_iter_no_change=10**6,
        random_state=seed, device=device,
    ).fit(X, y)  # fmt: skip
    # float32, like every other row (to_torch gives the certified float64 weights).
    return _mean_after_warm_up([r["epoch_time"] for r in clf.history_]), clf.to_torch().float()


def torchlip_model(
    n_features: int, y: np.ndarray, n_classes: int, alpha: float = ALPHA, margin: float = MARGIN
):
    """deel-torchlip's counterpart of sklip's default MLP, its HKR loss, and the targets.

    The loss takes sklip's alpha and margin through the documented conversion
    (``a = alpha / (1 + alpha)``, ``min_margin = 2 margin``). Raises ImportError
    without deel-torchlip.
    """
    import deel.torchlip as tl

    n_out = 1 if n_classes == 2 else n_classes
    net = tl.Sequential(
        tl.SpectralLinear(n_features, WIDTH), tl.GroupSort2(),
        tl.SpectralLinear(WIDTH, WIDTH), tl.GroupSort2(),
        tl.FrobeniusLinear(WIDTH, n_out),
    )  # fmt: skip
    a = alpha / (1 + alpha)
    if n_classes == 2:
        loss = tl.HKRLoss(a, min_margin=2 * margin)
        targets = (2 * y - 1).astype(np.float32)[:, None]
    else:
        loss = tl.HKRMulticlassLoss(a, min_margin=2 * margin)
        targets = np.eye(n_classes, dtype=np.float32)[y]
    return net, loss, targets


def torchlip_export(net: nn.Module) -> tuple[nn.Sequential, nn.Sequential]:
    """The trained deel-torchlip network as plain layers, and the net its bound is read on.

    The second is the same layers with deel's sorting activations (1-Lipschitz)
    seen as identities, which sklip.nn.lipschitz_bound knows: the bound is the
    product of the dense norms.
    """
    plain = net.cpu().vanilla_export().eval()
    shadow = nn.Sequential(
        *[layer if isinstance(layer, nn.Linear) else nn.Identity() for layer in plain]
    )
    return plain, shadow


def run_torchlip(X, y, n_classes, epochs, seed, device="cpu"):
    torch.manual_seed(seed)
    net, loss, targets = torchlip_model(X.shape[1], y, n_classes)
    seconds = torch_loop(net, loss, X, targets, epochs, BATCH, device, seed)
    return (seconds, *torchlip_export(net))


def inference_rate(net: nn.Module, X: np.ndarray, chunks: int = 100) -> float:
    """Rows per second of a float32 forward pass over chunks of 4096 rows (best of 3).

    The same chunk (test rows, repeated to 4096) is passed ``chunks`` times: the
    work of 409 600 rows without holding them in memory.
    """
    chunk = torch.as_tensor(np.resize(X, (4096, X.shape[1])))
    net = net.cpu().eval()
    best = np.inf
    with torch.no_grad():
        net(chunk)
        for _ in range(3):
            started = time.perf_counter()
            for _ in range(chunks):
                net(chunk)
            best = min(best, time.perf_counter() - started)
    return chunks * 4096 / best


def compare(X, X_test, y, y_test, args) -> list[Run]:
    """Every contender on one dataset, over the seeds."""
    n_classes = len(np.unique(y))
    runs = {name: Run(name) for name in
            ("plain ReLU MLP", PLAIN_SAME, "sklip", "deel-torchlip",
             "sklearn MLPClassifier")}  # fmt: skip
    networks: dict[str, nn.Module] = {}
    for seed in range(args.seeds):
        for name, fused in (("plain ReLU MLP", None), (PLAIN_SAME, True)):
            seconds, net = run_plain(X, y, n_classes, args.epochs, seed, device=args.device,
                                     fused=fused)  # fmt: skip
            runs[name].add(seconds, *certified(net, X_test, y_test))
            networks.setdefault(name, net)
        seconds, net = run_sklip(X, y, args.epochs, seed, device=args.device)
        runs["sklip"].add(seconds, *certified(net, X_test, y_test))
        networks.setdefault("sklip", net)
        try:
            seconds, net, shadow = run_torchlip(X, y, n_classes, args.epochs, seed, args.device)
            runs["deel-torchlip"].add(seconds, *certified(net, X_test, y_test, shadow))
            networks.setdefault("deel-torchlip", net)
        except ImportError:
            pass
        mlp = MLPClassifier(
            (WIDTH, WIDTH), batch_size=BATCH, learning_rate_init=LR, max_iter=args.epochs,
            n_iter_no_change=args.epochs + 1, tol=0.0, random_state=seed,
        )  # fmt: skip
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            started = time.perf_counter()
            mlp.fit(X, y)
        seconds = (time.perf_counter() - started) / mlp.n_iter_
        runs["sklearn MLPClassifier"].add(seconds, mlp.score(X_test, y_test), None)
    # Inference of the first seed's networks, taken in turns so that a slow
    # spell of the machine does not fall on one of them only: best of 3 turns.
    chunks = 2 if args.smoke else 100  # the smoke run only checks that it runs
    for _ in range(3):
        for name, net in networks.items():
            rate = inference_rate(net, X_test, chunks)
            runs[name].rate = max(runs[name].rate or 0.0, rate)
    return [run for run in runs.values() if run.seconds]


def comparison_table(results: dict[str, list[Run]]) -> str:
    lines = [
        "| data | model | s/epoch | ratio to plain | test acc | "
        + " | ".join(f"cert acc @{eps}" for eps in EPS)
        + " | inference rows/s | inference time ratio to plain |",
        "|---" * (7 + len(EPS)) + "|",
    ]
    for name, runs in results.items():
        plain_seconds, plain_rate = np.mean(runs[0].seconds), runs[0].rate
        for run in runs:
            seconds = np.mean(run.seconds)
            certs = np.mean(run.certified, axis=0) if run.certified else None
            cert = ["-"] * len(EPS) if certs is None else [f"{c:.3f}" for c in certs]
            rate = run.rate
            speed = ["-", "-"] if rate is None else [f"{rate:,.0f}", f"{plain_rate / rate:.2f}"]
            lines.append(
                f"| {name} | {run.model} | {seconds:.4f} | {seconds / plain_seconds:.2f} | "
                f"{_mean_and_spread(run.accuracy)} | " + " | ".join(cert + speed) + " |"
            )
    return "\n".join(lines)


def _mean_and_spread(values: list[float]) -> str:
    """``mean ± standard deviation`` over the seeds (just the mean for one seed)."""
    if len(values) < 2:
        return f"{np.mean(values):.3f}"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


def batch_sweep(X, X_test, y, y_test, args) -> str:
    """sklip / plain seconds per epoch as the batch grows (seed 0, moons)."""
    lines = [
        "| batch | plain s/epoch | plain, sklip's Adam and threads | sklip s/epoch | "
        "sklip / plain | sklip / plain, same settings | plain test acc | sklip test acc "
        "| sklip cert acc @1.0 |",
        "|---" * 9 + "|",
    ]
    for batch in args.sweep:
        plain, net = run_plain(X, y, 2, args.epochs, 0, batch, args.device)
        plain_acc, _ = certified(net, X_test, y_test)
        fused, _ = run_plain(X, y, 2, args.epochs, 0, batch, args.device, fused=True)
        seconds, net = run_sklip(X, y, args.epochs, 0, batch, args.device)
        accuracy, certs = certified(net, X_test, y_test)
        lines.append(
            f"| {batch} | {plain:.4f} | {fused:.4f} | {seconds:.4f} | {seconds / plain:.2f} | "
            f"{seconds / fused:.2f} | {plain_acc:.3f} | {accuracy:.3f} | {certs[-1]:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sweep", type=int, nargs="*", default=list(SWEEP_BATCHES))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--smoke", action="store_true", help="toy sizes, for the tests")
    parser.add_argument("--no-record", action="store_true", help="print only")
    args = parser.parse_args()
    if args.smoke:
        args.epochs, args.seeds, args.sweep = 1, 1, args.sweep[:1]
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # torch's one-off lazy imports
    data = datasets(args.smoke)
    setting = (
        f"{args.epochs} epochs, batch {BATCH}, widths ({WIDTH}, {WIDTH}), learning rate {LR}, "
        f"mean of {args.seeds} seed(s), device {args.device}, "
        f"{torch.get_num_threads()} torch threads (sklip: 1 on small CPU steps)"
    )
    print(setting + "\n", flush=True)
    results = {name: compare(*arrays, args) for name, arrays in data.items()}
    table = comparison_table(results)
    print(table + "\n", flush=True)
    sweep = ""
    if args.sweep:
        sweep = batch_sweep(*data["moons 10k"], args)
        print(sweep, flush=True)
    if not args.no_record:
        markdown = f"{setting}.\n\n{table}\n"
        if sweep:
            markdown += f"\nBatch size on moons 10k (seed 0, same epochs):\n\n{sweep}\n"
        record("training.py", "Training: sklip vs plain PyTorch vs deel-torchlip vs sklearn",
               markdown, gpu=args.device.startswith("cuda"))  # fmt: skip


if __name__ == "__main__":
    main()
