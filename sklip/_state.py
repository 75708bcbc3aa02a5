"""Fitted state: all-or-nothing updates, and pickles that load on any device.

An estimator's fitted attributes are published together or not at all: a
certificate reads several of them at once (weights, bounds, offsets), and a
mix of two fits' values would certify nothing.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
import torch

from ._training import training_context
from .nn.frozen import copy_to_cpu

Method = TypeVar("Method", bound=Callable[..., Any])


def atomic(method: Method) -> Method:
    """Make a fitting ``method`` all-or-nothing: if it raises, the estimator is as it was.

    Fitting builds new objects and never modifies the fitted ones in place (a
    warm start trains a copy), so restoring the attribute dictionary restores
    the estimator exactly, whatever raised and wherever: bad labels found
    after the features were validated, a device that does not exist, a
    diverged training run, Ctrl-C in ``partial_fit``. The method runs in
    :func:`~sklip._training.training_context` (autograd on, whatever the
    caller's ``torch.no_grad()`` or ``torch.inference_mode()``).
    """

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with unchanged_on_error(self), training_context():
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


@contextmanager
def unchanged_on_error(estimator: Any, *, deep: bool = False) -> Iterator[None]:
    """Restore ``estimator``'s attributes if the block raises (any exception, Ctrl-C too).

    sklip's estimators never modify a fitted attribute in place, so a shallow
    copy of the attribute dictionary restores them; ``deep`` copies the values
    too, for estimators of other libraries whose updates happen in place.
    Parameters come back as the very objects the user set (scikit-learn keeps
    them verbatim), and a ``RandomState`` given as ``random_state`` is wound
    back to where it was. (numpy's global generator, drawn from with
    ``random_state=None``, is not: fits in other threads may have drawn from
    it since, as scikit-learn's estimators do.)
    """
    saved = dict(estimator.__dict__)
    copies = copy.deepcopy(saved) if deep else saved
    parameters = _parameter_names(estimator)
    generator = getattr(estimator, "random_state", None)
    if not isinstance(generator, np.random.RandomState):
        generator = None
    position = generator.get_state() if generator is not None else None
    try:
        yield
    except BaseException:
        estimator.__dict__.clear()
        estimator.__dict__.update(
            {name: saved[name] if name in parameters else value for name, value in copies.items()}
        )
        if generator is not None:
            generator.set_state(position)
        raise


def _parameter_names(estimator: Any) -> set[str]:
    get_params = getattr(estimator, "get_params", None)
    return set(get_params(deep=False)) if callable(get_params) else set()


class DevicePortable:
    """Pickling for estimators holding torch modules: CPU tensors in the pickle.

    A CUDA-fitted model then loads on a CPU-only machine; where CUDA is
    available it goes back to its device.
    """

    def __getstate__(self) -> dict[str, Any]:
        # A copy: on Python >= 3.11 the parent returns the instance's own
        # __dict__, and the CPU copies below must not replace the live ones.
        state = dict(super().__getstate__())  # type: ignore[misc]
        if "module_" in state:
            # Pickles hold CPU tensors only, so a CUDA-fitted model loads anywhere.
            state["module_"] = copy.deepcopy(self.module_).cpu()
            state["network_"] = copy_to_cpu(self.network_)
            state["device_"] = torch.device("cpu")
            state["_fitted_device"] = str(self.device_)
        if "_optimizer_state" in state:
            # Adam's moments travel too (on the CPU), so partial_fit carries on
            # after a round trip; loading them moves them to the network's device.
            state["_optimizer_state"] = _to_cpu(self._optimizer_state)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        fitted_device = state.pop("_fitted_device", None)
        super().__setstate__(state)
        if fitted_device is not None:
            device = torch.device(fitted_device)
            if device.type == "cuda" and torch.cuda.is_available():
                self.device_ = (
                    device
                    if device.index is None or (device.index < torch.cuda.device_count())
                    else torch.device("cuda")
                )
                self.module_.to(self.device_)
                self.network_.to(self.device_)


def _to_cpu(value: Any) -> Any:
    """``value`` (nested dicts and lists, as in an optimiser's state) with CPU tensors."""
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {key: _to_cpu(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_cpu(item) for item in value)
    return value
