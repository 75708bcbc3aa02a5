"""Adam without ``torch.optim``: the same update, none of its first-call cost.

Every ``torch.optim`` optimiser imports ``torch._dynamo`` the first time one is
built (its methods are wrapped to keep the compiler out of them). That import
took 2.5 s on a 2-core machine, more than a whole fit on most tabular data,
and sklip needs nothing else from the compiler: a user's first ``fit`` in a
session paid it every time. This module gives the update of
``torch.optim.Adam`` (Kingma & Ba, 2015; no weight decay, no AMSGrad) with
its ``state_dict`` layout, so pickles and saved models written with either
load with the other.

The update runs as a handful of ``torch._foreach_*`` calls, one per
arithmetic step over all the parameters at once (the kernels behind
``torch.optim.Adam(foreach=True)``), and keeps the step count on the host:
nothing in a step waits for the device.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

# The rest of torch.optim.Adam's group settings, at the values this update
# implements: written into state_dict() so that torch (or an older sklip, which
# used torch.optim.Adam) can load it.
_TORCH_GROUP_SETTINGS = {
    "weight_decay": 0,
    "amsgrad": False,
    "maximize": False,
    "foreach": None,
    "capturable": False,
    "differentiable": False,
    "fused": None,
    "decoupled_weight_decay": False,
}


class Adam:
    """Adam over a fixed list of parameters, with ``torch.optim.Adam``'s state layout.

    Parameters
    ----------
    parameters : iterable of nn.Parameter
    lr : float
        The learning rate; ``param_groups[0]["lr"]`` may be changed between steps.
    betas : (float, float), default=(0.9, 0.999)
    eps : float, default=1e-8

    Examples
    --------
    >>> import torch
    >>> from sklip._adam import Adam
    >>> weight = torch.nn.Parameter(torch.tensor([1.0]))
    >>> optimizer = Adam([weight], lr=0.1)
    >>> (2 * weight).sum().backward()
    >>> optimizer.step()
    >>> round(weight.item(), 4)  # the first step moves by lr against the gradient's sign
    0.9
    """

    def __init__(
        self,
        parameters: Iterable[nn.Parameter],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        group = {"lr": lr, "betas": tuple(betas), "eps": eps}
        group["params"] = list(parameters)
        self.param_groups = [group]
        self._steps = [0] * len(group["params"])
        self._moments: list[tuple[Tensor, Tensor] | None] = [None] * len(group["params"])

    @property
    def _parameters(self) -> list[nn.Parameter]:
        return self.param_groups[0]["params"]

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients (set to None, as ``torch.optim`` does by default)."""
        for parameter in self._parameters:
            if set_to_none:
                parameter.grad = None
            elif parameter.grad is not None:
                parameter.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        """One Adam update of every parameter that has a gradient."""
        group = self.param_groups[0]
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        indices = [i for i, p in enumerate(self._parameters) if p.grad is not None]
        if not indices:
            return
        for i in indices:
            if self._moments[i] is None:
                parameter = self._parameters[i]
                self._moments[i] = (torch.zeros_like(parameter), torch.zeros_like(parameter))
            self._steps[i] += 1
        # Parameters share a step count unless some had no gradient at some step;
        # they are updated in groups of equal counts (one group in practice).
        for step in sorted({self._steps[i] for i in indices}):
            members = [i for i in indices if self._steps[i] == step]
            self._update(members, step, lr, beta1, beta2, eps)

    def _update(
        self, members: list[int], step: int, lr: float, beta1: float, beta2: float, eps: float
    ) -> None:
        parameters = [self._parameters[i] for i in members]
        grads = [p.grad for p in parameters]
        means = [self._moments[i][0] for i in members]
        squares = [self._moments[i][1] for i in members]
        torch._foreach_lerp_(means, grads, 1 - beta1)
        torch._foreach_mul_(squares, beta2)
        torch._foreach_addcmul_(squares, grads, grads, 1 - beta2)
        denominators = torch._foreach_sqrt(squares)
        torch._foreach_div_(denominators, math.sqrt(1 - beta2**step))
        torch._foreach_add_(denominators, eps)
        torch._foreach_addcdiv_(parameters, means, denominators, -lr / (1 - beta1**step))

    def state_dict(self) -> dict[str, Any]:
        """The moments and step counts, in ``torch.optim.Adam.state_dict()``'s layout.

        Tensors are copies: training on does not change a dictionary taken earlier.
        """
        state = {}
        for i, moments in enumerate(self._moments):
            if moments is not None:
                state[i] = {
                    "step": torch.tensor(float(self._steps[i])),
                    "exp_avg": moments[0].clone(),
                    "exp_avg_sq": moments[1].clone(),
                }
        group = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        group.update(_TORCH_GROUP_SETTINGS)
        group["params"] = list(range(len(self._parameters)))
        return {"state": state, "param_groups": [group]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Carry on from ``state_dict`` (this class's or ``torch.optim.Adam``'s).

        The moments are copied onto each parameter's device and dtype; the
        settings (learning rate, betas, eps) are taken from the dictionary, as
        ``torch.optim`` does.
        """
        groups = state_dict["param_groups"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(self._parameters):
            raise ValueError(
                "The optimiser state does not match the network's parameters "
                f"({len(self._parameters)} in one group)."
            )
        for key in ("lr", "betas", "eps"):
            if key in groups[0]:
                self.param_groups[0][key] = groups[0][key]
        self._steps = [0] * len(self._parameters)
        self._moments = [None] * len(self._parameters)
        for position, index in enumerate(groups[0]["params"]):
            saved = state_dict["state"].get(index)
            if not saved:
                continue
            parameter = self._parameters[position]
            step = saved["step"]
            self._steps[position] = int(step.item() if isinstance(step, Tensor) else step)
            self._moments[position] = tuple(
                saved[key].to(device=parameter.device, dtype=parameter.dtype, copy=True)
                for key in ("exp_avg", "exp_avg_sq")
            )
