"""``python -m sklip``: the demo.

Until the scikit-learn estimators land, it shows the 1-Lipschitz core at work:
it builds a 1-Lipschitz MLP, checks its certified Lipschitz bound against the
largest slope seen on random pairs of inputs, and exports it to plain PyTorch.
"""

from __future__ import annotations

import torch

from sklip import __version__
from sklip.nn import export, lipschitz_bound, lipschitz_mlp


def main() -> None:
    torch.manual_seed(0)
    print(f"sklip {__version__}: certifiably robust 1-Lipschitz networks for scikit-learn")
    net = lipschitz_mlp(16, (64, 64), 1).eval()
    bound = lipschitz_bound(net)
    x, x2 = torch.randn(2, 2000, 16).unbind(0)
    with torch.no_grad():
        slopes = (net(x) - net(x2)).abs().squeeze(1) / (x - x2).norm(dim=1)
    print(f"1-Lipschitz MLP 16-64-64-1: certified bound L = {bound:.6f}")
    print(f"largest slope |f(x) - f(x')| / |x - x'| on 2000 random pairs: {slopes.max():.6f}")
    plain = export(net)
    with torch.no_grad():
        gap = (plain(x) - net(x)).abs().max().item()
    print(f"exported to {len(plain)} plain torch layers; max output difference {gap:.1e}")
    print("Coming next: LipschitzClassifier().fit(X, y) with certified_radius(X).")


if __name__ == "__main__":
    main()
