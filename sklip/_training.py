"""The training loop shared by the estimators: HKR objective, epochs, stopping.

Design choices, each measured or forced by a known pitfall:

* The whole training set lives on the device; a batch is a tensor index into it,
  so there is no host-device copy and no host synchronisation inside an epoch.
  Running sums stay on the device and are read once per epoch.
* Class means in the KR term use the class totals of the *whole* training set:
  the per-sample HKR coefficients are computed once, for the whole set, and a
  batch's terms are scaled by ``n / batch``, so a batch that holds few points
  of a class still gives an unbiased gradient.
* A snapshot of the weights is taken after each epoch: on KeyboardInterrupt the
  model returns to the last completed epoch instead of a half-updated state.
* Small steps run on one CPU thread. Measured on 2 cores: a 128-wide network
  on batches of 128 is 8% faster on one thread than on two, the cross-over is
  near 1e7 multiply-adds per batch, and when another process holds a core,
  two threads made a 4 s fit take 270 s. Larger steps keep torch's setting.
"""

from __future__ import annotations

import math
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import Tensor, nn

from ._adam import Adam
from .nn.losses import coefficient_columns, hkr_terms_from_coefficients


@dataclass
class TrainingSet:
    """Training tensors on the device: inputs and their HKR coefficient rows.

    ``coefficients`` is :func:`~sklip.nn.hkr_coefficients` of the whole set,
    computed with the whole set's class totals, so a batch only gathers rows.
    """

    X: Tensor
    coefficients: Tensor

    def __len__(self) -> int:
        return self.X.shape[0]


_FLOAT32_MAX = 3.4028234663852886e38


class HKRObjective:
    """The HKR loss of one batch, binary (1 output) or one-vs-all.

    Called with a batch's outputs, its coefficient rows and ``scale = n / b``
    (the inverse of the batch's share of the set), it returns the batch loss,
    an unbiased estimate of the full-data ``alpha * hinge - kr``, and the
    batch's *contributions* ``(kr, hinge, n_correct)`` to the epoch's
    full-data figures: summed over the batches of an epoch they give the
    epoch's KR and hinge terms and its number of correct rows.
    """

    def __init__(self, alpha: float, margin: float) -> None:
        # Training runs in float32: a margin or weight it cannot hold would
        # make every loss infinite, reported as a divergence.
        for name, value in (("alpha", alpha), ("margin", margin)):
            if not abs(value) <= _FLOAT32_MAX:
                raise ValueError(
                    f"{name}={value!r} is beyond float32's range (3.4e38), in which the "
                    f"network trains; rescale the features so that a smaller {name} works."
                )
        self.alpha = alpha
        self.margin = margin

    def __call__(
        self, outputs: Tensor, coefficients: Tensor, scale: float
    ) -> tuple[Tensor, Tensor]:
        kr, hinge = hkr_terms_from_coefficients(outputs, coefficients, self.margin)
        loss = (self.alpha * hinge - kr) * scale
        with torch.no_grad():
            figures = torch.stack((kr, hinge, _n_correct(outputs, coefficients)))
        return loss, figures

    def epoch_record(self, sums: list[float], n: int) -> dict[str, float]:
        """The epoch's figures from the summed batch contributions."""
        kr, hinge, correct = sums
        return {"loss": self.alpha * hinge - kr, "kr": kr, "hinge": hinge,
                "train_accuracy": correct / n}  # fmt: skip


def _n_correct(outputs: Tensor, coefficients: Tensor) -> Tensor:
    """Correctly classified rows, as a float tensor (no synchronisation).

    The sign columns of the coefficients are +1 exactly at the true class
    (binary: at a positive label), which is all this needs.
    """
    signs = coefficient_columns(coefficients)[1]
    if outputs.shape[1] == 1:
        right = outputs * signs > 0
    else:
        right = signs.gather(1, outputs.argmax(dim=1, keepdim=True)) > 0
    return right.sum(dtype=outputs.dtype)


class Objective(Protocol):
    """What :func:`train` needs of a loss: HKR (classes) or a regression loss.

    Called with a batch's outputs, its coefficient rows and ``scale = n / b``,
    it returns the batch loss and a small tensor of the batch's contributions
    to the epoch's figures; ``epoch_record`` turns their sum over the epoch
    into the history record (``loss`` at least).
    """

    def __call__(
        self, outputs: Tensor, coefficients: Tensor, scale: float
    ) -> tuple[Tensor, Tensor]: ...

    def epoch_record(self, sums: list[float], n: int) -> dict[str, float]: ...


@dataclass
class StoppingRule:
    """MLPClassifier's rule: stop after ``patience`` epochs without a gain over ``tol``.

    With a validation score (higher is better) the best epoch's weights are
    restored at the end; otherwise the training loss (lower is better) is watched.
    """

    patience: int
    tol: float
    best: float = -math.inf
    stale_epochs: int = 0

    def update(self, score: float) -> tuple[bool, bool]:
        """Record an epoch's score; return ``(improved, should_stop)``."""
        improved = score > self.best + self.tol
        if score > self.best:
            self.best = score
        self.stale_epochs = 0 if improved else self.stale_epochs + 1
        return improved, self.stale_epochs >= self.patience


def train(
    module: nn.Module,
    optimizer: Adam,
    data: TrainingSet | Callable[[nn.Module], TrainingSet],
    objective: Objective,
    *,
    batch_size: int,
    max_epochs: int,
    generator: torch.Generator,
    stopping: StoppingRule,
    validation_score: Callable[[nn.Module], float] | None = None,
    history: list[dict[str, float]],
    verbose: int = 0,
    on_interrupt: str = "keep",
) -> int:
    """Run up to ``max_epochs`` epochs; append one record per epoch to ``history``.

    ``data`` is the training set, or a function that draws each epoch's set
    from the network being trained (called in eval mode, before the epoch):
    one-class training moves its negative samples along the network itself.
    Returns the number of completed epochs. The module ends in eval mode with
    the final weights: the best validation epoch's when ``validation_score`` is
    given, the last completed epoch's if interrupted (Ctrl-C) with
    ``on_interrupt="keep"``, as scikit-learn's MLP does. With ``"raise"`` the
    KeyboardInterrupt propagates: a single epoch (``partial_fit``) has no
    completed epoch to keep, and a loop over chunks must stop.
    """
    draw = data if callable(data) else None
    best_state = last_state = snapshot(module)
    progress = _progress(max_epochs, verbose)
    completed = 0
    rows = batch_size if draw is not None else min(batch_size, len(data))
    threads = step_threads(module, rows, next(module.parameters()).device)
    try:
        for epoch in progress:
            started = time.perf_counter()
            with at_most_threads(threads):
                if draw is not None:
                    module.eval()
                    data = draw(module)
                module.train()
                record = _run_epoch(module, optimizer, data, objective, batch_size, generator)
            if not math.isfinite(record["loss"]):
                lr = optimizer.param_groups[0]["lr"]
                raise ValueError(
                    f"The training loss became {record['loss']} at epoch {epoch + 1}: "
                    f"training diverged. Try a lower learning_rate (it is {lr:g}) or "
                    "standardise the features."
                )
            completed += 1
            if validation_score is not None:
                module.eval()
                record["validation_score"] = validation_score(module)
                improved, stop = stopping.update(record["validation_score"])
            else:
                improved, stop = stopping.update(-record["loss"])
            record["epoch_time"] = time.perf_counter() - started
            history.append(record)
            last_state = snapshot(module)
            if improved:
                best_state = last_state
            _report(progress, record, verbose)
            if stop:
                break
    except KeyboardInterrupt:
        if on_interrupt == "raise":
            raise
        warnings.warn(
            f"Training interrupted: keeping the weights of the last completed epoch ({completed}).",
            UserWarning,
            stacklevel=3,
        )
        module.load_state_dict(last_state)
    finally:
        if hasattr(progress, "close"):
            progress.close()
    if validation_score is not None and completed:
        module.load_state_dict(best_state)
    module.eval()
    return completed


def _run_epoch(
    module: nn.Module,
    optimizer: Adam,
    data: TrainingSet,
    objective: Objective,
    batch_size: int,
    generator: torch.Generator,
) -> dict[str, float]:
    n = len(data)
    batch_size = min(batch_size, n)
    order = torch.randperm(n, generator=generator, device=data.X.device)
    sums = None
    for start in range(0, n, batch_size):
        index = order[start : start + batch_size]
        outputs = module(data.X[index])
        loss, figures = objective(outputs, data.coefficients[index], n / index.shape[0])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sums = figures if sums is None else sums + figures
    return objective.epoch_record(sums.tolist(), n)  # the epoch's one synchronisation


@contextmanager
def training_context() -> Iterator[None]:
    """Autograd on, whatever the caller set (both settings are per thread).

    Training and attacks differentiate, so a caller's ``torch.no_grad()`` or
    ``torch.inference_mode()`` must not reach them. (torch's default dtype is
    left alone: it is process-wide, and the networks are cast to float32
    where they are built, see ``_network_to_train``.)
    """
    with torch.inference_mode(False), torch.enable_grad():
        yield


SMALL_STEP = 10_000_000  # multiply-adds of a batch's forward pass; see the module notes


def step_threads(module: nn.Module, batch_size: int, device: torch.device | str) -> int | None:
    """The thread cap for training steps: 1 for small CPU steps, else torch's setting."""
    small = torch.device(device).type == "cpu" and forward_work(module, batch_size) < SMALL_STEP
    return 1 if small else None


def forward_work(module: nn.Module, batch_size: int) -> int:
    """Multiply-adds of the dense and convolution layers for one batch (an estimate)."""
    per_sample = 0
    for layer in module.modules():
        if hasattr(layer, "in_features") and hasattr(layer, "out_features"):
            per_sample += layer.in_features * layer.out_features
        elif hasattr(layer, "in_channels") and hasattr(layer, "output_size"):
            kernel_h, kernel_w = layer.kernel_size
            height, width = layer.output_size
            taps = layer.in_channels * kernel_h * kernel_w
            per_sample += taps * layer.out_channels * height * width
    return per_sample * batch_size


_THREADS_LOCK = threading.Lock()
_threads_capped = 0  # blocks inside at_most_threads, across all Python threads
_threads_before = 0  # torch's setting when the first of them entered


@contextmanager
def at_most_threads(limit: int | None) -> Iterator[None]:
    """Cap torch's intra-op threads at ``limit`` inside the block, then restore the setting.

    torch's thread count is process-wide, so blocks running at once in several
    Python threads share one cap: the first to enter records the user's
    setting, the last to leave restores it. (Two fits each restoring what
    they saw on entry would leave the cap in place for good.) Only the cap of
    1 is used by sklip, so sharing it changes nothing for the blocks.
    """
    global _threads_capped, _threads_before
    if limit is None:
        yield
        return
    with _THREADS_LOCK:
        if _threads_capped == 0:
            _threads_before = torch.get_num_threads()
        _threads_capped += 1
        if limit < torch.get_num_threads():
            torch.set_num_threads(limit)
    try:
        yield
    finally:
        with _THREADS_LOCK:
            _threads_capped -= 1
            if _threads_capped == 0 and torch.get_num_threads() != _threads_before:
                torch.set_num_threads(_threads_before)


def snapshot(module: nn.Module) -> dict[str, Tensor]:
    return {key: value.detach().clone() for key, value in module.state_dict().items()}


def _progress(max_epochs: int, verbose: int):
    if verbose <= 0:
        return range(max_epochs)
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional: fall back to one line per epoch
        return range(max_epochs)
    return tqdm(range(max_epochs), desc="fit", unit="epoch")


def _report(progress, record: dict[str, float], verbose: int) -> None:
    if verbose <= 0:
        return
    figures = {"loss": f"{record['loss']:.4f}"}
    if "train_accuracy" in record:
        figures["acc"] = f"{record['train_accuracy']:.3f}"
    if "validation_score" in record:
        figures["val"] = f"{record['validation_score']:.4f}"
    if hasattr(progress, "set_postfix"):
        progress.set_postfix(figures, refresh=False)
    else:
        print(" ".join(f"{key}={value}" for key, value in figures.items()), flush=True)


def seeds(rng: np.random.RandomState) -> tuple[int, int]:
    """Two seeds from ``rng``: the network's initialisation and the batch order."""
    init_seed, batch_seed = (int(s) for s in rng.randint(np.iinfo(np.int32).max, size=2))
    return init_seed, batch_seed
