"""ONNX export: onnxruntime reproduces the estimators, and the exported radii hold.

The radius of an exported graph certifies *that graph's* computation (float64,
or float32 weights and arithmetic): it is tried here against the graph's own
decision boundary, located by bisection to the last bit, and against PGD.
"""

import numpy as np
import pytest
from sklearn.datasets import load_digits, make_moons
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, MaxAbsScaler, MinMaxScaler, StandardScaler

import sklip
from sklip import (
    LipschitzClassifier,
    LipschitzOutlierDetector,
    LipschitzRegressor,
    WassersteinEstimator,
)
from sklip.robustness import certified_radius, predict_interval

ort = pytest.importorskip("onnxruntime")

SMALL = {"hidden_layer_sizes": (32, 32), "max_epochs": 15, "random_state": 0}


def session(model, optimisation="ORT_ENABLE_ALL"):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, optimisation)
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def run(model, X, eps=None, optimisation="ORT_ENABLE_ALL"):
    dtype = np.float32 if model.graph.input[0].type.tensor_type.elem_type == 1 else np.float64
    feeds = {"X": np.asarray(X, dtype=dtype)}
    if eps is not None:
        feeds["eps"] = np.atleast_1d(np.asarray(eps, dtype=np.float64))
    names = [output.name for output in model.graph.output]
    return dict(zip(names, session(model, optimisation).run(None, feeds), strict=True))


def representable(X, dtype):
    """X rounded to ``dtype`` (as float64): the estimator and the graph see the same points."""
    return np.asarray(X, dtype=dtype).astype(np.float64)


@pytest.fixture(scope="module")
def moons():
    return make_moons(300, noise=0.2, random_state=0)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:400] / 16, y[:400]


@pytest.fixture(scope="module")
def fitted(moons, digits):
    X, y = moons
    Xd, yd = digits
    cnn = {"image_shape": (1, 8, 8), "conv_channels": (4, 8), "hidden_layer_sizes": (16,),
           "max_epochs": 3, "random_state": 0}  # fmt: skip
    return {
        "binary": (LipschitzClassifier(**SMALL).fit(X, np.where(y, "b", "a")), X),
        "multiclass": (LipschitzClassifier(**SMALL).fit(Xd, yd), Xd),
        "cnn": (LipschitzClassifier(**cnn).fit(Xd, yd), Xd),
        "cnn-binary": (LipschitzClassifier(**{**cnn, "max_epochs": 10}).fit(Xd, yd > 4), Xd),
        "detector": (LipschitzOutlierDetector(contamination=0.05, **SMALL).fit(X), X),
        "wasserstein": (WassersteinEstimator(**SMALL).fit(X, y), X),
        "regressor": (LipschitzRegressor(**SMALL).fit(X, X[:, 0] + X[:, 1] ** 2), X),
        "regressor-2d": (LipschitzRegressor(**SMALL).fit(X, np.column_stack((X[:, 0], y))), X),
    }


def _estimator_radius(estimator, X):
    """The estimator's own certificate (a Wasserstein critic's: |f - offset| bounds)."""
    if isinstance(estimator, WassersteinEstimator):
        outputs, _, error = estimator._forward(X, bounds=True)
        decision = outputs[:, 0] - estimator.offset_
        slack = error + np.abs(decision) * np.finfo(np.float64).eps
        denominator = estimator.lipschitz_constant_ + estimator.network_.error_growth
        return np.maximum(np.abs(decision) - slack, 0) / denominator
    return certified_radius(estimator, X)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    "name", ["binary", "multiclass", "cnn", "cnn-binary", "detector", "wasserstein"]
)
def test_graph_reproduces_predictions_scores_and_never_exceeds_the_radius(fitted, name, dtype):
    estimator, X = fitted[name]
    X = representable(X, dtype)
    out = run(sklip.to_onnx(estimator, dtype=dtype), X)
    np.testing.assert_array_equal(out["label"], estimator.predict(X))
    scores = estimator.decision_function(X)
    tolerance = 1e-12 if dtype == "float64" else 1e-5
    scale = np.abs(scores).max()
    np.testing.assert_allclose(out["scores"], scores, rtol=tolerance, atol=tolerance * scale)
    if hasattr(estimator, "predict_proba"):
        np.testing.assert_allclose(out["probabilities"], estimator.predict_proba(X),
                                   rtol=tolerance, atol=tolerance)  # fmt: skip
    radius = _estimator_radius(estimator, X)
    assert np.all(out["radius"] <= radius)
    # ... and loses only the rounding, which scales with the size of the input.
    kept = 1e-12 if dtype == "float64" else 1e-3
    assert np.all(radius - out["radius"] <= kept * (1 + np.linalg.norm(X, axis=1)))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", ["regressor", "regressor-2d"])
def test_regressor_graph_bounds_contain_the_estimator_interval(fitted, name, dtype):
    reg, X = fitted[name]
    X = representable(X, dtype)
    eps = np.linspace(0.0, 0.5, len(X))
    out = run(sklip.to_onnx(reg, dtype=dtype), X, eps)
    tolerance = 1e-12 if dtype == "float64" else 1e-5
    predicted = reg.predict(X)
    np.testing.assert_allclose(out["prediction"], predicted, rtol=tolerance,
                               atol=tolerance * np.abs(predicted).max())  # fmt: skip
    low, high = reg.predict_interval(X, eps)
    assert np.all(out["low"] <= low) and np.all(out["high"] >= high)
    assert np.all(out["low"] <= out["prediction"]) and np.all(out["prediction"] <= out["high"])
    width = 1e-9 if dtype == "float64" else 1e-3
    np.testing.assert_allclose(out["high"] - out["low"], high - low, rtol=width,
                               atol=width * (1 + np.abs(predicted).max()))  # fmt: skip
    without = run(reg.to_onnx(dtype=dtype, with_radius=False), X)
    assert set(without) == {"prediction"}
    negative = run(sklip.to_onnx(reg, dtype=dtype), X, -eps - 1.0)  # bounds nothing
    assert np.isnan(negative["low"]).all() and np.isnan(negative["high"]).all()


@pytest.mark.parametrize(
    "steps",
    [
        [StandardScaler(), PCA(2)],
        [MinMaxScaler(), "passthrough"],
        [MaxAbsScaler(), FunctionTransformer()],
    ],
    ids=["standard-pca", "minmax", "maxabs"],
)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_pipeline_exports_with_the_radius_in_raw_units(moons, steps, dtype):
    X, y = moons
    X = representable(X * [1.0, 50.0] + [3.0, -20.0], dtype)
    pipe = make_pipeline(*steps, LipschitzClassifier(**SMALL)).fit(X, y)
    out = run(sklip.to_onnx(pipe, dtype=dtype), X)
    np.testing.assert_array_equal(out["label"], pipe.predict(X))
    radius = certified_radius(pipe, X)
    assert np.all(out["radius"] <= radius)
    np.testing.assert_allclose(out["radius"], radius, rtol=1e-3, atol=1e-3 * radius.max())
    reg = make_pipeline(*steps, LipschitzRegressor(**SMALL)).fit(X, X[:, 0])
    out = run(sklip.to_onnx(reg, dtype=dtype), X, 0.25)
    low, high = predict_interval(reg, X, 0.25)
    assert np.all(out["low"] <= low) and np.all(out["high"] >= high)


def test_runtime_optimisations_change_nothing(fitted, moons):
    """onnxruntime's optimiser once dropped a division by L = 1.00000002 (read as float32)."""
    X_moons = moons[0]
    pipe = make_pipeline(StandardScaler(), PCA(2), LipschitzRegressor(**SMALL))
    pipe = pipe.fit(X_moons, X_moons[:, 0])
    models = [fitted[name] for name in ("binary", "multiclass", "cnn", "detector", "regressor")]
    for estimator, X in [*models, (pipe, X_moons)]:
        for dtype in ("float64", "float32"):
            model = sklip.to_onnx(estimator, dtype=dtype)
            eps = 0.1 if "eps" in [entry.name for entry in model.graph.input] else None
            plain = run(model, X, eps, "ORT_DISABLE_ALL")
            optimised = run(model, X, eps, "ORT_ENABLE_ALL")
            for output, value in plain.items():
                np.testing.assert_array_equal(optimised[output], value, err_msg=output)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_every_layer_kind_is_exported_as_the_frozen_network_computes_it(dtype):
    """Convolutions (zero, circular), pooling, unshuffling, every activation."""
    import torch

    from sklip._onnx_graph import GraphBuilder
    from sklip._onnx_network import emit_network
    from sklip.nn import FrozenNetwork, lipschitz_cnn, lipschitz_mlp

    generator = torch.Generator().manual_seed(0)
    networks = [
        (lipschitz_mlp(5, (8, 8), 3, "fullsort", generator=generator), 5),
        (lipschitz_cnn((2, 7, 7), (4, 8), (16,), 3, conv="cayley", generator=generator), 98),
        (
            lipschitz_cnn(
                (1, 8, 8),
                (4, 8),
                (8,),
                1,
                "relu",
                conv="bound",
                downsampling="pool",
                generator=generator,
            ),
            64,
        ),
        (lipschitz_cnn((3, 6, 6), (6,), (8,), 2, "fullsort", generator=generator), 108),
    ]
    rng = np.random.RandomState(0)
    for module, n_features in networks:
        with torch.no_grad():
            for parameter in module.parameters():  # biases away from 0, weights perturbed
                parameter.add_(0.1 * torch.randn(parameter.shape, generator=generator))
        frozen = FrozenNetwork(module, n_features)
        graph = GraphBuilder(dtype)
        outputs, _ = emit_network(graph, frozen.module, frozen.input_shapes, "X")
        graph.output(outputs, "Y")
        model = graph.model([("X", dtype, ["N", n_features])], [("Y", dtype, ["N", None])], {})
        X = rng.normal(size=(40, n_features))
        expected = frozen.outputs(torch.tensor(X)).numpy()
        (computed,) = session(model).run(None, {"X": X.astype(dtype)})
        tolerance = 1e-13 if dtype == np.float64 else 1e-5
        np.testing.assert_allclose(computed, expected, atol=tolerance * np.abs(expected).max())


def _boundary_pairs(model, X, seed=0, n_pairs=64, steps=80):
    """Pairs (a, b) of inputs of the graph's dtype with different labels, as close as bisection
    along random segments gets them: the graph's own decision boundary lies between them."""
    dtype = np.float32 if model.graph.input[0].type.tensor_type.elem_type == 1 else np.float64
    rng = np.random.RandomState(seed)
    labels = run(model, X)["label"]
    first = rng.randint(len(X), size=4 * n_pairs)
    second = rng.randint(len(X), size=4 * n_pairs)
    keep = labels[first] != labels[second]
    a, b = X[first[keep]][:n_pairs].astype(dtype), X[second[keep]][:n_pairs].astype(dtype)
    label_a = run(model, a)["label"]
    for _ in range(steps):
        middle = ((a.astype(np.float64) + b) / 2).astype(dtype)
        same = run(model, middle)["label"] == label_a
        a = np.where(same[:, None], middle, a)
        b = np.where(same[:, None], b, middle)
    return a.astype(np.float64), b.astype(np.float64)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", ["binary", "multiclass", "cnn-binary", "detector"])
def test_the_graph_radius_holds_at_its_own_decision_boundary(fitted, name, dtype):
    """A point a hair from the boundary the graph computes certifies less than that hair."""
    estimator, X = fitted[name]
    model = sklip.to_onnx(estimator, dtype=dtype)
    a, b = _boundary_pairs(model, X)
    assert len(a) > 10
    out_a, out_b = run(model, a), run(model, b)
    assert np.all(out_a["label"] != out_b["label"])
    gap = np.linalg.norm(a - b, axis=1)
    assert np.all(out_a["radius"] <= gap) and np.all(out_b["radius"] <= gap)
    assert np.median(gap) < 1e-5  # the bisection did reach the boundary


@pytest.mark.parametrize("name", ["binary", "multiclass"])
def test_pgd_on_the_float32_runtime_never_beats_its_radius(fitted, name):
    """PGD with gradients of the same float32 weights in torch, success judged by onnxruntime."""
    import torch

    estimator, X = fitted[name]
    model = sklip.to_onnx(estimator, dtype="float32")
    X = representable(X, np.float32)
    out = run(model, X)
    rows = np.argsort(out["radius"])[:60]  # the points nearest the boundary
    x, labels, radius = X[rows], out["label"][rows], out["radius"][rows]
    network = estimator.to_torch().float()
    index = torch.as_tensor(np.searchsorted(estimator.classes_, labels))
    budget = torch.as_tensor(0.999 * radius, dtype=torch.float32)[:, None]
    start = torch.as_tensor(x, dtype=torch.float32)
    delta = torch.zeros_like(start, requires_grad=True)
    for _ in range(50):
        scores = network(start + delta)
        if scores.shape[1] == 1:
            margin = torch.where(index == 1, scores[:, 0], -scores[:, 0])
        else:
            own = scores.gather(1, index[:, None])[:, 0]
            others = scores.scatter(1, index[:, None], -np.inf).max(dim=1).values
            margin = own - others
        (gradient,) = torch.autograd.grad(margin.sum(), delta)
        with torch.no_grad():
            step = gradient / gradient.norm(dim=1, keepdim=True).clamp_min(1e-30)
            delta -= 0.25 * budget * step
            norms = delta.norm(dim=1, keepdim=True)
            delta *= torch.clamp(budget / norms.clamp_min(1e-30), max=1.0)
        attacked = run(model, (start + delta).detach().numpy())["label"]
        assert np.all(attacked == labels)


def test_bad_arguments_are_refused_by_name(fitted, tmp_path):
    clf, X = fitted["binary"]
    with pytest.raises(ValueError, match="dtype"):
        clf.to_onnx(dtype="float16")
    with pytest.raises(TypeError, match="with_radius"):
        clf.to_onnx(with_radius="yes")
    with pytest.raises(NotFittedError):
        LipschitzClassifier().to_onnx()
    with pytest.raises(TypeError, match="LogisticRegression"):
        sklip.to_onnx(LogisticRegression().fit(X, X[:, 0] > 0))
    pipe = make_pipeline(FunctionTransformer(np.tanh), LipschitzClassifier(max_epochs=1))
    with pytest.raises(TypeError, match="FunctionTransformer"):
        sklip.to_onnx(pipe.fit(X, X[:, 0] > 0))
    huge = np.where(X[:, 0] > 0, np.uint64(2**63 + 5), np.uint64(1))  # would wrap in int64
    with pytest.raises(TypeError, match="2\\*\\*63"):
        LipschitzClassifier(max_epochs=1).fit(X, huge).to_onnx()
    path = tmp_path / "clf.onnx"
    model = clf.to_onnx(path)
    import onnx

    assert onnx.load(path) == model
    assert {entry.key: entry.value for entry in model.metadata_props}["estimator"] == (
        "LipschitzClassifier"
    )


@pytest.mark.gpu
def test_a_cuda_fitted_estimator_exports_what_its_cpu_copy_exports(moons, tmp_path):
    X, y = moons
    clf = LipschitzClassifier(device="cuda", **SMALL).fit(X, y)
    sklip.save(clf, tmp_path / "clf.sklip")
    cpu_copy = sklip.load(tmp_path / "clf.sklip")  # the same weights and bounds, on the CPU
    for dtype in ("float64", "float32"):
        data = representable(X, dtype)
        out, expected = (
            run(clf.to_onnx(dtype=dtype), data),
            run(cpu_copy.to_onnx(dtype=dtype), data),
        )
        np.testing.assert_array_equal(out["label"], expected["label"])
        np.testing.assert_allclose(out["radius"], expected["radius"], rtol=1e-9)
        assert np.all(out["radius"] <= clf.certified_radius(data))
