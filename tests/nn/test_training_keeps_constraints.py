"""After every step of a short training run, every layer keeps its guarantee."""

import torch
from torch import nn

from sklip.nn import (
    LipschitzConv2d,
    LipschitzLinear,
    RowNormalize,
    SpectralBjorck,
    hkr_loss,
    lipschitz_bound,
    lipschitz_cnn,
    lipschitz_mlp,
)
from tests.helpers import conv_operator_norm


def _check_every_layer(net: nn.Module) -> None:
    net.eval()
    for layer in net:
        if isinstance(layer, LipschitzLinear):
            singular = torch.linalg.svdvals(layer.normalized_weight().double())
            assert singular.max() <= 1 + 1e-4
            constraint = layer.constraint
            if isinstance(constraint, SpectralBjorck) and constraint.bjorck_iterations >= 8:
                assert (singular - 1).abs().max() <= 1e-2
            if isinstance(layer.constraint, RowNormalize):
                rows = layer.normalized_weight().norm(dim=1)
                assert torch.allclose(rows, torch.ones_like(rows), atol=1e-5)
        elif isinstance(layer, LipschitzConv2d):
            image = (layer.in_channels, *layer.input_size)
            norm = conv_operator_norm(layer.normalized_weight(), image, layer.padding[0], 60)
            assert norm <= 1 + 1e-4
    net.train()


def test_constraints_hold_after_every_training_step():
    torch.manual_seed(0)
    nets = [
        (lipschitz_mlp(10, (32, 16), 1), torch.randn(128, 10)),
        # Eight Björck steps keep the layers orthonormal, not just of norm <= 1.
        (lipschitz_mlp(10, (32, 16), 1, bjorck_iterations=8), torch.randn(128, 10)),
        (lipschitz_cnn((1, 6, 6), (4, 8), (16,), 1), torch.randn(128, 1, 6, 6)),
    ]
    for net, x in nets:
        y = torch.where(x.reshape(len(x), -1)[:, 0] > 0, 1.0, -1.0)
        optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
        for _ in range(25):
            optimiser.zero_grad()
            hkr_loss(net(x), y, alpha=10.0, margin=0.5).backward()
            optimiser.step()
            _check_every_layer(net)
        assert lipschitz_bound(net) <= 1 + 1e-3
