import pytest
import torch

from sklip.nn import (
    hinge_margin_loss,
    hkr_coefficients,
    hkr_loss,
    hkr_terms,
    hkr_terms_from_coefficients,
    kr_loss,
    multiclass_hinge_loss,
    multiclass_hkr_loss,
    multiclass_hkr_terms,
)

Y = torch.tensor([1.0, 1.0, -1.0, -1.0])
W = torch.tensor([1.0, 3.0, 2.0, 2.0])

# Multiclass example: 4 points, 3 classes. The expected values are worked out by
# hand in the comments of each test.
F3 = torch.tensor([[1.0, 0.0, -1.0], [0.0, 2.0, 0.0], [-1.0, 0.0, 1.0], [3.0, -1.0, 0.0]])
Y3 = torch.tensor([0, 1, 2, 0])
W3 = torch.tensor([2.0, 1.0, 1.0, 1.0])


def test_kr_is_the_difference_of_class_means():
    f = torch.tensor([2.0, 1.0, -1.0, 0.0])
    # (2 + 1) / 2 - (-1 + 0) / 2
    assert kr_loss(f, Y).item() == pytest.approx(2.0)
    # weighted: (2*1 + 1*3) / 4 - (-1*2 + 0*2) / 4 = 1.25 + 0.5
    assert kr_loss(f, Y, W).item() == pytest.approx(1.75)
    assert kr_loss(f[:, None], Y).item() == pytest.approx(2.0)


def test_hinge_is_the_weighted_mean_margin_violation():
    f = torch.tensor([2.0, 0.5, -1.0, 0.5])
    # violations (1 - y f)+ = [0, 0.5, 0, 1.5]
    assert hinge_margin_loss(f, Y, margin=1.0).item() == pytest.approx(0.5)
    # weighted: (0.5 * 3 + 1.5 * 2) / 8
    assert hinge_margin_loss(f, Y, 1.0, W).item() == pytest.approx(0.5625)
    # margin 2: [0, 1.5, 1, 2.5] / 4
    assert hinge_margin_loss(f, Y, margin=2.0).item() == pytest.approx(1.25)


def test_hkr_combines_both_terms():
    f = torch.tensor([2.0, 0.5, -1.0, 0.5])
    # KR = 1.25 - (-0.25) = 1.5, hinge = 0.5: 2 * 0.5 - 1.5
    assert hkr_loss(f, Y, alpha=2.0, margin=1.0).item() == pytest.approx(-0.5)
    # weighted KR = (2 + 1.5) / 4 - (-2 + 1) / 4 = 1.125, hinge 0.5625: 2 * 0.5625 - 1.125
    assert hkr_loss(f, Y, alpha=2.0, margin=1.0, sample_weight=W).item() == pytest.approx(0.0)


def test_hkr_without_hinge_is_minus_kr():
    torch.manual_seed(0)
    f = torch.randn(10)
    y = torch.tensor([1.0, -1.0] * 5)
    w = torch.rand(10)
    assert hkr_loss(f, y, alpha=0.0, sample_weight=w).item() == pytest.approx(
        -kr_loss(f, y, w).item()
    )


def test_multiclass_hkr_matches_the_hand_computation():
    # KR_0 = mean(1, 3) - mean(0, -1) = 2.5; KR_1 = 2 - (-1/3); KR_2 = 1 - (-1/3)
    # mean KR = 37 / 18. Hinge violations per output: 1, 2, 2 out of 4 points:
    # mean hinge = (1/4 + 2/4 + 2/4) / 3 = 5 / 12. Loss = 2 * 5/12 - 37/18 = -11/9.
    loss = multiclass_hkr_loss(F3, Y3, alpha=2.0, margin=1.0)
    assert loss.item() == pytest.approx(-11 / 9)


def test_multiclass_hinge_weighs_the_true_class_by_k_minus_one():
    # K = 3, margin 1. Point 0 (class 0) misses its own margin by 0.5 and
    # clears the others: 2 * 0.5. Point 1 (class 1, weight 3) misses its own
    # by 0.8 and class 2's by 0.5: 3 * (2 * 0.8 + 0.5). Total weight 4, K = 3.
    f = torch.tensor([[0.5, -1.0, -1.0], [-1.5, 0.2, -0.5]])
    y = torch.tensor([0, 1])
    w = torch.tensor([1.0, 3.0])
    expected = (2 * 0.5 + 3 * (2 * 0.8 + 0.5)) / (3 * 4)
    assert multiclass_hinge_loss(f, y, 1.0, w).item() == pytest.approx(expected)


def test_multiclass_hkr_is_deel_torchlips_at_the_documented_conversion():
    functional = pytest.importorskip("deel.torchlip.functional")
    torch.manual_seed(0)
    f, y = torch.randn(40, 5), torch.arange(40) % 5
    a, min_margin = 10 / 11, 2.0
    theirs = functional.hkr_multiclass_loss(
        f, torch.eye(5)[y], alpha=a, min_margin=min_margin
    ).mean()
    ours = multiclass_hkr_loss(f, y, alpha=a / (1 - a), margin=min_margin / 2)
    # deel-torchlip's loss is ours times (1 - a), so the minimisers coincide.
    assert theirs.item() == pytest.approx((1 - a) * ours.item(), rel=1e-5)


def test_multiclass_hkr_with_weights_matches_the_hand_computation():
    # KR_0 = 5/3 + 1/2, KR_1 = 2 + 1/4, KR_2 = 1 + 1/2: mean 71/36.
    # Hinge per output (total weight 5): 1/5, 3/5, 2/5: mean 2/5.
    loss = multiclass_hkr_loss(F3, Y3, alpha=2.0, margin=1.0, sample_weight=W3)
    assert loss.item() == pytest.approx(2 * 2 / 5 - 71 / 36)


def test_multiclass_with_two_antisymmetric_outputs_is_the_binary_loss():
    torch.manual_seed(0)
    f = torch.randn(12)
    labels = torch.randint(0, 2, (12,))
    w = torch.rand(12)
    binary = hkr_loss(f, 2.0 * labels - 1, alpha=3.0, margin=0.7, sample_weight=w)
    multi = multiclass_hkr_loss(
        torch.stack((-f, f), dim=1), labels, alpha=3.0, margin=0.7, sample_weight=w
    )
    assert multi.item() == pytest.approx(binary.item(), rel=1e-6)


def test_global_class_sums_make_batches_unbiased():
    # A batch of only positives gets the weight its class has in the whole set.
    torch.manual_seed(0)
    n, batch = 40, 10
    f = torch.randn(n)
    y = torch.where(torch.arange(n) < 30, 1.0, -1.0)  # imbalanced, sorted by class
    w = torch.rand(n) + 0.5
    totals = torch.stack(((w * (y < 0)).sum(), (w * (y > 0)).sum()))
    full = hkr_loss(f, y, 2.0, 1.0, w)
    batches = [
        hkr_loss(f[i : i + batch], y[i : i + batch], 2.0, 1.0, w[i : i + batch], totals * batch / n)
        for i in range(0, n, batch)
    ]
    assert torch.stack(batches).mean().item() == pytest.approx(full.item(), rel=1e-6)

    labels = (y > 0).long()
    class_totals = torch.stack([(w * (labels == k)).sum() for k in range(2)])
    full_multi = multiclass_hkr_loss(torch.stack((-f, f), 1), labels, 2.0, 1.0, w)
    batches_multi = [
        multiclass_hkr_loss(
            torch.stack((-f, f), 1)[i : i + batch],
            labels[i : i + batch],
            2.0,
            1.0,
            w[i : i + batch],
            class_totals * batch / n,
        )
        for i in range(0, n, batch)
    ]
    assert torch.stack(batches_multi).mean().item() == pytest.approx(full_multi.item(), rel=1e-6)


def test_losses_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="y_true"):
        kr_loss(torch.zeros(4), torch.zeros(3))
    with pytest.raises(ValueError, match="sample_weight"):
        hinge_margin_loss(torch.zeros(4), Y, 1.0, torch.ones(5))
    with pytest.raises(ValueError, match="y_pred"):
        hkr_loss(torch.zeros(4, 2), Y)
    with pytest.raises(ValueError, match=r"\(n, K\)"):
        multiclass_hkr_loss(torch.zeros(4), Y3)


def test_terms_are_the_two_losses_from_one_pass():
    f = torch.tensor([2.0, 0.5, -1.0, 0.5])
    kr, hinge = hkr_terms(f, Y, 1.0, W)
    assert kr.item() == pytest.approx(1.125)  # hand values of the tests above
    assert hinge.item() == pytest.approx(0.5625)
    kr3, hinge3 = multiclass_hkr_terms(F3, Y3, 1.0)
    assert kr3.item() == pytest.approx(37 / 18)
    assert hinge3.item() == pytest.approx(5 / 12)


def test_coefficient_table_holds_the_hand_computed_weights():
    # Binary, weights W: S_+ = 4, S_- = 4, S = 8.
    table = hkr_coefficients(Y, 1, W)
    expected = torch.tensor(
        [[1 / 4, 1, 1 / 8], [3 / 4, 1, 3 / 8], [-2 / 4, -1, 2 / 8], [-2 / 4, -1, 2 / 8]]
    )
    assert torch.allclose(table, expected)
    # One-vs-all, unit weights, K = 3: S = (2, 1, 1), rest = (2, 3, 3), S_total = 4.
    # Hinge weights w * (K - 1 at the true class, else 1) / (K S) = 2/12 or 1/12.
    table3 = hkr_coefficients(Y3, 3)
    assert table3.shape == (4, 9)
    assert torch.allclose(table3[0, :3], torch.tensor([1 / 2, -1 / 3, -1 / 3]) / 3)
    assert torch.equal(table3[1, 3:6], torch.tensor([-1.0, 1.0, -1.0]))
    assert torch.allclose(table3[1, 6:], torch.tensor([1.0, 2.0, 1.0]) / 12)
    assert torch.allclose(table3[3, 6:], torch.tensor([2.0, 1.0, 1.0]) / 12)


def test_batches_of_the_whole_set_table_estimate_the_full_terms_without_bias():
    # The training loop's path: one table for the whole set, rows gathered per
    # batch and scaled by n / b. Every batch, even one holding a single class,
    # is an unbiased estimate, so the share-weighted batch terms sum to the
    # full-data terms exactly.
    torch.manual_seed(0)
    n, batch = 12, 4
    f = torch.randn(n, 3)
    y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2])  # first batch: class 0 only
    w = torch.rand(n) + 0.5
    full = multiclass_hkr_terms(f, y, 0.7, w)
    table = hkr_coefficients(y, 3, w)
    parts = [
        torch.stack(hkr_terms_from_coefficients(f[i : i + batch], table[i : i + batch], 0.7))
        * (n / batch)
        for i in range(0, n, batch)
    ]
    assert torch.allclose(torch.stack(parts).mean(0), torch.stack(full), rtol=1e-6)


def test_coefficients_reject_bad_arguments():
    with pytest.raises(ValueError, match="n_outputs"):
        hkr_coefficients(Y, 0)
    with pytest.raises(ValueError, match="y_true"):
        hkr_coefficients(torch.zeros(4, 2))
