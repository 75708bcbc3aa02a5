"""sklip's Adam: torch.optim.Adam's update and state layout, without importing the compiler."""

import subprocess
import sys

import pytest
import torch

from sklip._adam import Adam


def _problem(seed: int) -> tuple[list[torch.nn.Parameter], torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    weights = [
        torch.nn.Parameter(torch.randn(5, 3, generator=generator)),
        torch.nn.Parameter(torch.randn(3, generator=generator)),
    ]
    return weights, torch.randn(7, 5, generator=generator)


def _loss(weights: list[torch.nn.Parameter], X: torch.Tensor) -> torch.Tensor:
    hidden = torch.tanh(X @ weights[0] + weights[1])
    return hidden.square().sum() + hidden.sum()


def _train(optimizer, weights, X, steps: int) -> None:
    for _ in range(steps):
        optimizer.zero_grad()
        _loss(weights, X).backward()
        optimizer.step()


@pytest.mark.parametrize("lr", [1e-3, 0.05])
def test_steps_match_torch_adam(lr):
    ours, X = _problem(0)
    theirs, _ = _problem(0)
    _train(Adam(ours, lr=lr), ours, X, 25)
    _train(torch.optim.Adam(theirs, lr=lr, foreach=False), theirs, X, 25)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_first_step_moves_each_coordinate_by_the_learning_rate():
    # After one step m / sqrt(v) = g / |g| exactly (bias-corrected): a move of lr.
    weight = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    optimizer = Adam([weight], lr=0.1)
    (weight * torch.tensor([4.0, -0.5, 2.0])).sum().backward()
    optimizer.step()
    torch.testing.assert_close(weight.detach(), torch.tensor([0.9, -1.9, 2.9]))


@pytest.mark.parametrize("source", ["ours", "torch"])
def test_state_dicts_carry_over_both_ways(source):
    """Training on from a saved state, either class's, equals training straight on."""
    straight, X = _problem(1)
    _train(torch.optim.Adam(straight, lr=0.01), straight, X, 20)

    first, _ = _problem(1)
    make = Adam if source == "ours" else torch.optim.Adam
    optimizer = make(first, lr=0.01)
    _train(optimizer, first, X, 10)
    state = optimizer.state_dict()
    resumed_weights = [torch.nn.Parameter(w.detach().clone()) for w in first]
    resumed = (
        Adam(resumed_weights, lr=0.01)
        if source == "torch"
        else torch.optim.Adam(resumed_weights, lr=0.01)
    )
    resumed.load_state_dict(state)
    _train(resumed, resumed_weights, X, 10)
    for a, b in zip(resumed_weights, straight, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_a_state_dict_is_a_snapshot():
    weights, X = _problem(2)
    optimizer = Adam(weights, lr=0.01)
    _train(optimizer, weights, X, 3)
    state = optimizer.state_dict()
    saved = state["state"][0]["exp_avg"].clone()
    _train(optimizer, weights, X, 3)
    assert torch.equal(state["state"][0]["exp_avg"], saved)
    assert state["state"][0]["step"].item() == 3


def test_a_mismatched_state_is_refused():
    weights, _ = _problem(3)
    state = Adam(weights[:1], lr=0.01).state_dict()
    with pytest.raises(ValueError, match="does not match"):
        Adam(weights, lr=0.01).load_state_dict(state)


def test_a_first_fit_imports_neither_the_compiler_nor_sympy(tmp_path):
    """torch.optim's first use imports torch._dynamo, and nn.utils.skip_init sympy:
    seconds of a user's first fit (iris: 1.8 s against 0.3 s). sklip needs neither."""
    code = (
        "import sys\n"
        "from sklearn.datasets import make_blobs\n"
        "from sklip import LipschitzClassifier\n"
        "X, y = make_blobs(60, n_features=3, centers=2, random_state=0)\n"
        "clf = LipschitzClassifier(max_epochs=2, random_state=0).fit(X, y)\n"
        "clf.partial_fit(X, y)\n"
        "clf.certified_radius(X)\n"
        "import sklip\n"
        f"sklip.save(clf, {str(tmp_path / 'model.sklip')!r})\n"
        f"sklip.load({str(tmp_path / 'model.sklip')!r}).certified_radius(X)\n"
        "print(sorted({'torch._dynamo', 'sympy'} & set(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    assert result.stdout.strip().splitlines()[-1] == "[]"
