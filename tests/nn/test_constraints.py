import pytest
import torch

from sklip.nn import (
    ConvOperatorNormalize,
    RowNormalize,
    SpectralBjorck,
    bjorck_orthonormalize,
    gram_spectral_bound,
)
from tests.helpers import conv_operator_norm


@pytest.mark.parametrize("shape", [(6, 6), (10, 4), (4, 10)])
def test_bjorck_makes_every_singular_value_one(shape):
    torch.manual_seed(0)
    weight = torch.randn(*shape, dtype=torch.float64)
    weight = weight / torch.linalg.matrix_norm(weight, ord=2)
    result = bjorck_orthonormalize(weight, iterations=60)
    singular = torch.linalg.svdvals(result)
    assert torch.allclose(singular, torch.ones_like(singular), atol=1e-10)


def test_bjorck_maps_sigma_through_its_cubic():
    # On a diagonal matrix each step is sigma -> 1.5 sigma - 0.5 sigma^3 exactly.
    weight = torch.diag(torch.tensor([0.5, 0.9, 1.0], dtype=torch.float64))
    expected = torch.tensor([0.5, 0.9, 1.0], dtype=torch.float64)
    expected = 1.5 * expected - 0.5 * expected**3
    assert torch.allclose(torch.diag(bjorck_orthonormalize(weight, 1)), expected)


@pytest.mark.parametrize("complex_", [False, True])
def test_gram_bound_is_above_and_close_to_the_spectral_norm(complex_):
    torch.manual_seed(0)
    dtype = torch.complex128 if complex_ else torch.float64
    matrices = torch.randn(7, 5, 9, dtype=dtype)
    exact = torch.linalg.matrix_norm(matrices, ord=2)
    for iterations in (1, 3, 6):
        bound = gram_spectral_bound(matrices, iterations)
        assert (bound >= exact * (1 - 1e-12)).all()
        # Guaranteed gap: at most rank ** (1 / 2 ** (T + 1)).
        assert (bound <= exact * 5 ** (1 / 2 ** (iterations + 1)) * (1 + 1e-12)).all()


def test_gram_bound_does_not_overflow_on_huge_matrices():
    matrices = 1e30 * torch.eye(4).expand(2, 4, 4)
    bound = gram_spectral_bound(matrices, 10)
    assert torch.allclose(bound, torch.full((2,), 1e30), rtol=1e-3)


def test_spectral_bjorck_advances_power_iteration_only_in_training():
    torch.manual_seed(0)
    constraint = SpectralBjorck(5, 3, power_iterations=1, bjorck_iterations=0)
    weight = torch.randn(5, 3)
    before = constraint.u.clone()
    constraint.eval()(weight)
    assert torch.equal(constraint.u, before)
    constraint.train()(weight)
    assert not torch.equal(constraint.u, before)


def test_spectral_normalisation_alone_reaches_norm_one_with_enough_iterations():
    torch.manual_seed(0)
    constraint = SpectralBjorck(8, 6, power_iterations=100, bjorck_iterations=0)
    normalised = constraint(torch.randn(8, 6))
    assert torch.linalg.matrix_norm(normalised, ord=2).item() == pytest.approx(1.0, abs=1e-5)


def test_row_normalize_gives_unit_rows():
    weight = torch.tensor([[3.0, 4.0], [0.0, -2.0]])
    expected = torch.tensor([[0.6, 0.8], [0.0, -1.0]])
    assert torch.allclose(RowNormalize()(weight), expected)


@pytest.mark.parametrize("channels", [(1, 4), (6, 3), (8, 8)])
def test_conv_normalisation_gives_operator_norm_at_most_one(channels):
    torch.manual_seed(0)
    c_in, c_out = channels
    kernel = torch.randn(c_out, c_in, 3, 3)
    normalised = ConvOperatorNormalize((7, 7), gram_iterations=6)(kernel)
    norm = conv_operator_norm(normalised, (c_in, 7, 7), padding=1)
    assert norm <= 1 + 1e-5
    # ...and not pointlessly small: the torus bound is close to the real norm.
    assert norm >= 0.8


@pytest.mark.parametrize("value", [-1, 1.5, "3", True])
def test_iteration_counts_are_validated(value):
    with pytest.raises(ValueError, match="bjorck_iterations"):
        SpectralBjorck(3, 3, bjorck_iterations=value)
