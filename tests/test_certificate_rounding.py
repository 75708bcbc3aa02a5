"""Certificates that floating point cannot break (issue 13, points 1, 2, 5 and 11).

Each test rebuilds a recipe that beat the old certificates: inputs cast to
float32 before a float64 network, bounds computed from other weights than the
predictions, a radius read off a score that is within rounding of zero.
"""

import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_wine, make_blobs
from sklearn.preprocessing import StandardScaler
from torch import nn

from sklip import LipschitzClassifier, WassersteinEstimator
from sklip.nn import FrozenNetwork, lipschitz_bound, lipschitz_mlp, pairwise_lipschitz_bound
from sklip.robustness import pgd_attack


def first_flip(clf, x, direction, t_max, steps=200):
    """Smallest t in (0, t_max] found where predict(x + t d) differs from predict(x) (float64).

    Scans then bisects down to adjacent floats; inf if no flip is found.
    """
    label = clf.predict(x[None])[0]
    ts = np.linspace(0, t_max, steps + 1)[1:]
    points = x[None] + ts[:, None] * direction[None]
    flipped = np.flatnonzero(clf.predict(points) != label)
    if not flipped.size:
        return math.inf
    low, high = (ts[flipped[0] - 1] if flipped[0] else 0.0), ts[flipped[0]]
    while np.nextafter(low, high) < high:
        middle = (low + high) / 2
        if middle in (low, high):
            break
        if clf.predict((x + middle * direction)[None])[0] != label:
            high = middle
        else:
            low = middle
    return high


def near_boundary_points(clf, X, n=12):
    """Points within a few ulps of the decision boundary, found by bisection in float64."""
    labels = clf.predict(X)
    points = []
    others = np.flatnonzero(labels != labels[0])
    for i, j in zip(range(n), others[:n], strict=False):
        a, b = X[i].copy(), X[j].copy()
        if clf.predict(a[None])[0] == clf.predict(b[None])[0]:
            continue
        for _ in range(200):
            middle = (a + b) / 2
            if np.array_equal(middle, a) or np.array_equal(middle, b):
                break
            if clf.predict(middle[None])[0] == clf.predict(a[None])[0]:
                a = middle
            else:
                b = middle
        points.append(a)
    return np.array(points)


def assert_no_flip_within_radius(clf, points, seed=0):
    """Line searches along the boundary normal and random directions stop at or past the radius."""
    rng = np.random.RandomState(seed)
    radius = clf.certified_radius(points)
    for x, r in zip(points, radius, strict=True):
        if r == 0:
            continue
        directions = [rng.normal(size=x.shape) for _ in range(4)]
        for d in directions:
            d = d / np.linalg.norm(d)
            for sign in (1.0, -1.0):
                assert first_flip(clf, x, sign * d, 2 * r) >= r


@pytest.fixture(scope="module")
def far_from_origin():
    """A binary model on blobs, and queries whose first coordinate sits near 2**23.

    Above 2**23, float32 has no fractional digits: the old path moved these
    queries by up to 0.5 before the network saw them.
    """
    X, y = make_blobs(300, centers=[[0.0, 0.0], [0.0, 3.0]], random_state=0)
    clf = LipschitzClassifier(hidden_layer_sizes=(16,), max_epochs=10, random_state=0)
    clf.fit(X, y)
    rng = np.random.RandomState(0)
    queries = np.column_stack([
        2.0**23 + 0.5 - 1e-6 + rng.uniform(-1, 1, size=40),
        rng.uniform(-1e7, 1e7, size=40),
    ])  # fmt: skip
    return clf, queries


def test_inputs_are_not_cast_to_float32(far_from_origin):
    clf, _ = far_from_origin
    x = np.array([[2.0**23 + 0.5 - 1e-6, 0.0]])
    as_float32 = x.astype(np.float32).astype(np.float64)
    assert clf.decision_function(x)[0] != clf.decision_function(as_float32)[0]
    with torch.no_grad():
        exact = clf.to_torch()(torch.as_tensor(x))[0, 0].item()
    assert clf.decision_function(x)[0] == exact


def test_certificates_hold_near_2_to_the_23(far_from_origin):
    clf, X = far_from_origin
    points = near_boundary_points(clf, X)
    assert len(points) >= 5
    # Points at the boundary itself, within rounding: radius 0, never a false certificate.
    scores = np.abs(clf.decision_function(points))
    radius = clf.certified_radius(points)
    assert np.all(radius[scores < 1e-9] == 0)
    # Points a little inside: whatever radius they get is not beaten.
    normal = np.array([0.0, 1.0])
    inside = np.vstack([points - 2e-6 * normal, points + 2e-6 * normal, points + 1e-3 * normal])
    assert_no_flip_within_radius(clf, inside)


def test_certificates_hold_on_raw_breast_cancer_features():
    X, y = load_breast_cancer(return_X_y=True)
    clf = LipschitzClassifier(hidden_layer_sizes=(16,), max_epochs=5, random_state=0).fit(X, y)
    points = near_boundary_points(clf, X)
    rng = np.random.RandomState(1)
    moved = points + 1e-5 * rng.normal(size=points.shape)
    assert_no_flip_within_radius(clf, np.vstack([points, moved]))


def test_multiclass_certificates_hold_at_the_last_digits():
    X, y = load_wine(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    clf = LipschitzClassifier(hidden_layer_sizes=(), max_epochs=20, random_state=0).fit(X, y)
    points = near_boundary_points(clf, X)
    radius = clf.certified_radius(points)
    assert np.all(radius < 1e-6)  # within rounding of a boundary: (almost) nothing certified
    rng = np.random.RandomState(0)
    inside = points + 1e-4 * rng.normal(size=points.shape)
    assert_no_flip_within_radius(clf, inside)
    correct = clf.predict(X) == y
    r = clf.certified_radius(X[correct])
    attacked = pgd_attack(clf, X[correct], y[correct], 0.99999999 * r, random_state=0)
    assert np.array_equal(clf.predict(attacked), y[correct])


def test_a_score_within_rounding_of_zero_certifies_nothing():
    frozen = FrozenNetwork(lipschitz_mlp(2, (4,), 1), n_features=2)
    x = torch.tensor([[1e8, -1e8]], dtype=torch.float64)
    _, error, certificate = frozen(x)
    assert error.item() > 1e-9  # rounding at this scale is far above 1e-16
    from sklip.robustness import radius_from_outputs

    tiny = np.array([[error.item() / 2]])
    assert radius_from_outputs(tiny, 1.0, error=certificate.numpy())[0] == 0


def test_rounding_bound_covers_the_float64_error_against_exact_arithmetic():
    """The computed output is within ``error`` of the exact one (checked in 256-bit arithmetic)."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.prec = 256
    torch.manual_seed(0)
    net = lipschitz_mlp(3, (6, 6), 1, activation="relu")
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.add_(torch.randn(parameter.shape))
    frozen = FrozenNetwork(net, n_features=3)
    rng = np.random.RandomState(0)
    X = rng.normal(size=(20, 3)) * 10.0 ** rng.uniform(-5, 8, size=(20, 1))
    outputs, error, _ = frozen(torch.as_tensor(X))
    layers = [layer for layer in frozen.module]
    for row, out, bound in zip(X, outputs[:, 0].tolist(), error.tolist(), strict=True):
        z = [mpmath.mpf(float(v)) for v in row]
        for layer in layers:
            if isinstance(layer, nn.Linear):
                W, b = layer.weight.tolist(), layer.bias.tolist()
                z = [sum(mpmath.mpf(w) * v for w, v in zip(w_row, z, strict=True)) + mpmath.mpf(bi)
                     for w_row, bi in zip(W, b, strict=True)]  # fmt: skip
            else:  # ReLU
                z = [max(v, 0) for v in z]
        assert abs(mpmath.mpf(out) - z[0]) <= bound


def test_bound_and_predictions_read_the_same_frozen_weights():
    X, y = make_blobs(200, centers=3, random_state=0)
    clf = LipschitzClassifier(hidden_layer_sizes=(32, 32), max_epochs=5, random_state=0)
    clf.fit(X, y)
    exported = clf.to_torch()
    assert all(p.dtype == torch.float64 for p in exported.parameters())
    assert lipschitz_bound(exported) <= clf.lipschitz_constant_ * (1 + 1e-12)
    assert np.allclose(pairwise_lipschitz_bound(exported).numpy(),
                       clf.pairwise_lipschitz_constant_, rtol=1e-12)  # fmt: skip
    # The thread count changes nothing: the weights are not re-derived per call.
    weights = [p.clone() for p in clf.network_.module.parameters()]
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = clf.decision_function(X)
        torch.set_num_threads(2)
        two = clf.decision_function(X)
    finally:
        torch.set_num_threads(previous)
    for before, after in zip(weights, clf.network_.module.parameters(), strict=True):
        assert torch.equal(before, after)
    _, error, _ = clf._evaluate(X, bounds=True)
    assert np.all(np.abs(one - two).max(axis=1) <= 2 * error)


def test_w1_lower_bound_holds_for_sets_near_2_to_the_23():
    rng = np.random.RandomState(0)
    shift = np.array([1.02, 0.0])
    P = 2.0**23 + np.array([0.49, 0.0]) + rng.uniform(-1e-3, 1e-3, size=(200, 2))
    Q = P + shift  # float32 would put the two sets 2 apart
    X, y = np.vstack([P, Q]), np.repeat([0, 1], 200)
    est = WassersteinEstimator(hidden_layer_sizes=(16,), max_epochs=20, random_state=0)
    est.fit(X, y)
    assert 0 <= est.lower_bound_ <= 1.02  # the exact W1 (a translation by 1.02)
    assert est.distance_ >= 0


def test_pairwise_bound_of_rows_a_billionth_apart_is_not_zero():
    net = nn.Sequential(nn.Linear(4, 30, dtype=torch.float64))
    with torch.no_grad():
        net[0].weight.copy_(torch.randn(30, 4, dtype=torch.float64) + 1e3)
        net[0].weight[1] = net[0].weight[0] + 3e-9
    pairwise = pairwise_lipschitz_bound(net)
    assert pairwise[0, 1].item() == pytest.approx(3e-9 * 2, rel=1e-3)


def test_lipschitz_bound_of_a_float64_module_with_an_input_shape():
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten(), nn.Linear(32, 1)).double()
    bound = lipschitz_bound(net, input_shape=(1, 4, 4))
    assert math.isfinite(bound) and bound > 0


@pytest.mark.parametrize("corrupt", ["nan", "zero"])
def test_a_diverged_last_step_is_refused_not_published(monkeypatch, corrupt):
    """The loss is measured before each step: a blow-up in the last one is caught on the weights."""
    import sklip._base as base

    real_train = base.train

    def train_then_blow_up(module, *args, **kwargs):
        completed = real_train(module, *args, **kwargs)
        with torch.no_grad():
            for parameter in module.parameters():
                parameter.fill_(math.nan if corrupt == "nan" else 0.0)
        return completed

    X, y = make_blobs(100, centers=2, random_state=0)
    clf = LipschitzClassifier(hidden_layer_sizes=(8,), max_epochs=2, random_state=0).fit(X, y)
    before = clf.decision_function(X)
    monkeypatch.setattr(base, "train", train_then_blow_up)
    with pytest.raises(ValueError, match="diverged"):
        clf.fit(X, y)
    assert np.array_equal(clf.decision_function(X), before)
    assert math.isfinite(clf.lipschitz_constant_) and clf.lipschitz_constant_ > 0


def test_weights_edited_through_data_are_seen_by_the_eval_cache():
    from sklip.nn import LipschitzLinear

    layer = LipschitzLinear(3, 3).eval()
    x = torch.ones(1, 3)
    first = layer(x)
    with torch.no_grad():
        layer.weight.data.copy_(torch.eye(3) * 2)  # bypasses the version counter
    assert not torch.allclose(layer(x), first)
    assert torch.allclose(layer(x), x + layer.bias, atol=1e-5)  # eye(3) normalised


def test_pipeline_radius_subtracts_the_preprocessing_rounding():
    """MinMaxScaler computes x * scale + min: near 1e8 it cancels eight digits."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler

    from sklip.robustness import certified_radius

    X = 1e8 + 7 * np.random.default_rng(5).standard_normal((60, 2))
    y = X[:, 0] > 1e8
    clf = LipschitzClassifier(hidden_layer_sizes=(4,), max_epochs=5, batch_size=32, random_state=0)
    pipe = make_pipeline(MinMaxScaler(), clf).fit(X, y)
    x = np.array([[99999876.92629288, 100000002.97205848]])
    x_near = np.array([[99999876.92629288, 100000002.97205846]])  # 1.5e-8 away
    radius = certified_radius(pipe, x)[0]
    if pipe.predict(x_near)[0] != pipe.predict(x)[0]:
        assert radius <= np.linalg.norm(x_near - x)
    # The classifier's own radius, divided by the scaler's norm, would claim more.
    inner = pipe[-1].certified_radius(pipe[0].transform(x))[0] / pipe[0].scale_.max()
    assert radius < inner


def test_predictions_without_bounds_are_the_certified_outputs():
    """predict skips the rounding bounds, not the arithmetic they bound."""
    X, y = make_blobs(300, centers=3, n_features=5, random_state=0)
    clf = LipschitzClassifier(hidden_layer_sizes=(16,), max_epochs=3, random_state=0).fit(X, y)
    bounded, _, _ = clf._evaluate(X, bounds=True)
    assert np.array_equal(clf.decision_function(X), bounded)


def _far_from_origin_pipeline(estimator):
    """A StandardScaler before ``estimator``, on a feature of mean 1e6 and spread 1."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.RandomState(0)
    X = rng.normal(size=(300, 2)) + np.array([1e6, 0.0])
    y = (X[:, 1] > 0.3).astype(int)
    pipe = make_pipeline(StandardScaler(), estimator)
    return pipe.fit(X, X[:, 1] if hasattr(estimator, "predict_interval") else y)


def test_float32_rows_through_a_scaler_are_certified_for_their_float64_copies():
    """scikit-learn centres float32 rows with mean_ rounded to float32: a shift of up to
    0.06 here, the same at every float32 row, absent for float64 rows. The radius of a
    float32 row holds for points given in float64 too (the same point at distance 0)."""
    from sklip.robustness import certified_radius, pgd_attack

    clf = LipschitzClassifier(hidden_layer_sizes=(32, 32), max_epochs=20, random_state=0)
    pipe = _far_from_origin_pipeline(clf)
    t = np.linspace(-1.0, 2.0, 3001)
    rows = np.stack([np.full_like(t, 1e6), t], axis=1).astype(np.float32)
    radius = certified_radius(pipe, rows)
    labels = pipe.predict(rows)
    shift = np.abs(pipe.decision_function(rows) - pipe.decision_function(rows.astype(float)))
    assert shift.max() > 1e-3  # the two dtypes' paths do differ here
    certified = radius > 0
    assert certified.sum() > 2000
    assert np.array_equal(pipe.predict(rows.astype(np.float64))[certified], labels[certified])
    attacked = pgd_attack(pipe, rows[certified], labels[certified], 0.99 * radius[certified],
                          random_state=0)  # fmt: skip
    assert np.array_equal(pipe.predict(attacked), labels[certified])


def test_float32_intervals_through_a_scaler_cover_the_float64_predictions():
    from sklip import LipschitzRegressor
    from sklip.robustness import predict_interval

    reg = LipschitzRegressor(hidden_layer_sizes=(16,), max_epochs=10, random_state=0)
    pipe = _far_from_origin_pipeline(reg)
    rows = np.stack([np.full(50, 1e6), np.linspace(-2, 2, 50)], axis=1).astype(np.float32)
    low, high = predict_interval(pipe, rows, 0.0)
    exact = pipe.predict(rows.astype(np.float64))
    assert np.all((low <= exact) & (exact <= high))
