"""The training loop shared by the estimators: HKR objective, epochs, stopping.

Design choices, each measured or forced by a known pitfall:

* The whole training set lives on the device; a batch is a tensor index into it,
  so there is no host-device copy and no host synchronisation inside an epoch.
  Running sums stay on the device and are read once per epoch.
* Class means in the KR term use the class totals of the *whole* training set,
  scaled to the batch (``class_sums * batch / n``), so a batch that holds few
  points of a class still gives an unbiased gradient.
* A snapshot of the weights is taken after each epoch: on KeyboardInterrupt the
  model returns to the last completed epoch instead of a half-updated state.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .nn.losses import hkr_terms, multiclass_hkr_terms


@dataclass
class TrainingSet:
    """Tensors on the training device. ``targets`` are ±1 (binary) or class indices."""

    X: Tensor
    targets: Tensor
    weights: Tensor
    class_sums: Tensor  # per-class weight totals over the whole set

    def __len__(self) -> int:
        return self.X.shape[0]


class HKRObjective:
    """HKR loss and its two terms for one batch, binary (1 output) or one-vs-all.

    Returns ``(loss, kr, hinge)`` with ``loss = alpha * hinge - kr``.
    """

    def __init__(self, alpha: float, margin: float, multiclass: bool) -> None:
        self.alpha = alpha
        self.margin = margin
        self.multiclass = multiclass

    def __call__(
        self, outputs: Tensor, targets: Tensor, weights: Tensor, class_sums: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        terms = multiclass_hkr_terms if self.multiclass else hkr_terms
        kr, hinge = terms(outputs, targets, self.margin, weights, class_sums)
        return self.alpha * hinge - kr, kr, hinge

    def n_correct(self, outputs: Tensor, targets: Tensor) -> Tensor:
        """Number of correctly classified rows (a tensor: no synchronisation)."""
        if self.multiclass:
            return (outputs.argmax(dim=1) == targets).sum()
        return ((outputs.reshape(-1) > 0) == (targets > 0)).sum()


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
    optimizer: torch.optim.Optimizer,
    data: TrainingSet,
    objective: HKRObjective,
    *,
    batch_size: int,
    max_epochs: int,
    generator: torch.Generator,
    stopping: StoppingRule,
    validation_score: Callable[[nn.Module], float] | None = None,
    history: list[dict[str, float]],
    verbose: int = 0,
) -> int:
    """Run up to ``max_epochs`` epochs; append one record per epoch to ``history``.

    Returns the number of completed epochs. The module ends in eval mode with
    the final weights: the best validation epoch's when ``validation_score`` is
    given, the last completed epoch's if interrupted.
    """
    n = len(data)
    batch_size = min(batch_size, n)
    best_state = last_state = _snapshot(module)
    progress = _progress(max_epochs, verbose)
    completed = 0
    try:
        for epoch in progress:
            started = time.perf_counter()
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
            last_state = _snapshot(module)
            if improved:
                best_state = last_state
            _report(progress, record, verbose)
            if stop:
                break
    except KeyboardInterrupt:
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
    optimizer: torch.optim.Optimizer,
    data: TrainingSet,
    objective: HKRObjective,
    batch_size: int,
    generator: torch.Generator,
) -> dict[str, float]:
    n = len(data)
    order = torch.randperm(n, generator=generator, device=data.X.device)
    sums = torch.zeros(4, device=data.X.device)
    for start in range(0, n, batch_size):
        index = order[start : start + batch_size]
        share = index.shape[0] / n
        targets = data.targets[index]
        outputs = module(data.X[index])
        loss, kr, hinge = objective(outputs, targets, data.weights[index], data.class_sums * share)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            terms = torch.stack((loss, kr, hinge)) * share
            sums[:3] += terms
            sums[3] += objective.n_correct(outputs, targets)
    loss, kr, hinge, correct = sums.tolist()  # the epoch's one synchronisation
    return {"loss": loss, "kr": kr, "hinge": hinge, "train_accuracy": correct / n}


def _snapshot(module: nn.Module) -> dict[str, Tensor]:
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
    figures = {"loss": f"{record['loss']:.4f}", "acc": f"{record['train_accuracy']:.3f}"}
    if "validation_score" in record:
        figures["val"] = f"{record['validation_score']:.4f}"
    if hasattr(progress, "set_postfix"):
        progress.set_postfix(figures, refresh=False)
    else:
        print(" ".join(f"{key}={value}" for key, value in figures.items()), flush=True)
