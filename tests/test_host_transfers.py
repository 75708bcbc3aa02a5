"""CUDA safety without a GPU: tensors reach NumPy only through ``sklip._device.to_numpy``.

On a GPU, ``cuda_tensor.numpy()`` and ``np.asarray(cuda_tensor)`` raise, and a
NumPy array or a CPU tensor meeting a CUDA tensor in one operation raises too.
On a CPU-only machine all of that silently works, which is how every multiclass
fit on CUDA once failed (``.numpy()`` on the device tensor of the pairwise
bounds) with the whole test suite green. Two nets catch that class of bug here:

* a source scan (``ast``) of ``sklip/**/*.py``: a small per-function analysis
  that tells torch values from NumPy values and fails on any ``.numpy()`` outside
  ``to_numpy``, on a NumPy function (``np.asarray``, ``np.array``, ``np.abs``, ...)
  applied to a torch value, on a tensor stored into a NumPy array or returned
  where an ndarray is promised, on a tensor and an ndarray in one arithmetic
  operation or torch call, on a tensor published as a fitted attribute, and on
  a tensor created without a device (``torch.zeros(n)``, ``torch.from_numpy(a)``
  not followed by ``.to(...)``) outside the reviewed places listed below;
* a run of every estimator path on the CPU (fit, partial_fit, fit_in_chunks,
  predict, radii, attacks, counterfactuals, Wasserstein-1, pickling) with
  ``torch.Tensor.numpy`` and ``torch.Tensor.__array__`` patched to fail unless
  called by ``to_numpy`` itself: a conversion the scan cannot see (through an
  alias, a helper, a third-party call) still fails here.

What neither can see: a device mix between two *tensors* (a CPU tensor made on
purpose meeting a device tensor) where the scan's allowlist or its inference
says nothing; that is what ``tests/test_gpu.py`` checks on a real GPU.
"""

from __future__ import annotations

import ast
import pickle
import sys
import textwrap
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

SKLIP = Path(__file__).resolve().parents[1] / "sklip"

# ------------------------------------------------------------------ the scan
TENSOR, NDARRAY = "tensor", "ndarray"

# Attributes that hold torch objects (tensors, modules, frozen networks).
TENSOR_ATTRIBUTES = {
    "module_", "network_", "module", "weight", "bias", "u", "outputs", "error",
    "certificate_error", "pairwise_lipschitz_constant", "coefficients", "mT", "grad",
}  # fmt: skip
# Attributes that are host values whatever they are read from.
HOST_ATTRIBUTES = {
    "shape", "dtype", "device", "ndim", "is_cuda", "requires_grad", "training",
    "in_features", "out_features", "in_channels", "out_channels", "kernel_size",
    "padding", "stride", "lipschitz_constant", "error_growth", "n_outputs", "type",
    "index", "lipschitz", "relative", "absolute", "input_size", "output_size", "scale",
    "groups", "dilation", "padding_mode", "image_shape", "group_size",
    "output_lipschitz_constants",
}  # fmt: skip
HOST_BUILTINS = {"float", "int", "bool", "len", "str", "repr", "isinstance", "hasattr", "id"}
HOST_METHODS = {"item", "tolist", "numel", "dim", "data_ptr", "is_floating_point", "size"}
TORCH_METHODS = {
    "to", "cpu", "cuda", "detach", "double", "float", "half", "clone", "contiguous",
    "requires_grad_", "neg_", "copy_", "mul_", "add_",
}  # fmt: skip
TORCH_ROOTS = {"torch", "F", "nn", "Tensor"}
NUMPY_ROOTS = {"np", "numpy"}
# torch functions that make a tensor on the CPU unless told a device.
FACTORIES = {
    "zeros", "ones", "empty", "full", "arange", "randn", "rand", "randint", "randperm",
    "eye", "linspace", "logspace", "tensor", "as_tensor", "from_numpy", "Generator",
}  # fmt: skip
CONVERTERS = {"tensor", "as_tensor", "from_numpy"}
# Fitted attributes that are torch objects by design (the rest are NumPy or Python).
TORCH_FITTED_ATTRIBUTES = {"module_", "network_", "device_"}

# Reviewed tensors made on the CPU on purpose: (file, function, call) -> why it is safe.
CPU_BY_DESIGN = {
    ("_adam.py", "state_dict", "torch.tensor"): (
        "the step count, a CPU scalar as in torch.optim.Adam's own (non-fused) state"
    ),
    ("_base.py", "_training_set", "torch.as_tensor"): (
        "the HKR coefficients are computed on the CPU, then moved by .to(self.device_)"
    ),
    ("_base.py", "_training_set", "torch.tensor"): (
        "the HKR coefficients are computed on the CPU, then moved by .to(self.device_)"
    ),
    ("_base.py", "_network_to_train", "torch.Generator"): (
        "the network is initialised on the CPU, then moved by module.to(self.device_)"
    ),
    ("_attacks.py", "_random_in_ball", "torch.as_tensor"): (
        "random starts drawn by NumPy; the one caller moves them with .to(x0)"
    ),
    ("_persistence.py", "_restore_networks", "torch.from_numpy"): (
        "sklip.load returns models on the CPU (device_ is set to the CPU)"
    ),
    ("_persistence.py", "_restore_networks", "torch.Generator"): (
        "sklip.load builds the trainable network on the CPU, then loads its weights"
    ),
    ("_persistence.py", "decode", "torch.from_numpy"): (
        "a loaded optimiser state, on the CPU; load_state_dict moves it to the network"
    ),
    ("_saved_network.py", "build", "torch.from_numpy"): (
        "sklip.load rebuilds the frozen network on the CPU"
    ),
    ("constraints.py", "__init__", "torch.randn"): "a buffer, moved by module.to",
    ("layers.py", "__init__", "torch.empty"): "a parameter, moved by module.to",
    ("layers.py", "__init__", "torch.zeros"): "a parameter, moved by module.to",
    ("convolutions.py", "__init__", "torch.empty"): "a parameter's start, moved by module.to",
    ("convolutions.py", "__init__", "torch.zeros"): "a parameter, moved by module.to",
}


def _root(node: ast.AST) -> str | None:
    """The leftmost name of ``a.b.c`` / ``a.b(...).c``."""
    while isinstance(node, ast.Attribute | ast.Call | ast.Subscript):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _dotted(node: ast.AST) -> str:
    try:
        return ast.unparse(node)
    except Exception:  # pragma: no cover
        return "?"


def _annotation_kind(annotation: ast.AST | None) -> str | None:
    if annotation is None:
        return None
    text = _dotted(annotation)
    if any(word in text for word in ("Tensor", "Module", "Sequential", "Frozen", "Conv2d")):
        return TENSOR
    if "ndarray" in text or text.startswith("np."):
        return NDARRAY
    return None


def _promised(annotation: ast.AST | None) -> list[str | None]:
    """What a return annotation promises, element by element for ``tuple[...]``."""
    if annotation is None:
        return []
    if (
        isinstance(annotation, ast.Subscript)
        and _dotted(annotation.value) in {"tuple", "Tuple"}
        and isinstance(annotation.slice, ast.Tuple)
    ):
        return [_annotation_kind(element) for element in annotation.slice.elts]
    return [_annotation_kind(annotation)]


def _return_kinds(files: list[Path]) -> dict[str, str | None]:
    """Name -> kind of what sklip's functions and methods return (from annotations)."""
    kinds: dict[str, set[str | None]] = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.returns is not None:
                kind = _annotation_kind(node.returns)
                if kind is None and "Any" not in _dotted(node.returns):
                    kind = "host"  # float, tuple[int, int], list[dict[str, float]], ...
                kinds.setdefault(node.name, set()).add(kind)
    return {name: next(iter(found)) if len(found) == 1 else None for name, found in kinds.items()}


class _FunctionScan:
    """One function's statements in order, tracking which names hold tensors or ndarrays."""

    def __init__(self, path: Path, function: ast.FunctionDef, returns, findings) -> None:
        self.path, self.function, self.returns, self.findings = path, function, returns, findings
        self.env: dict[str, str | None] = {}
        for arg in [*function.args.posonlyargs, *function.args.args, *function.args.kwonlyargs]:
            self.env[arg.arg] = _annotation_kind(arg.annotation)
        self.promised = _promised(function.returns)

    def report(self, node: ast.AST, message: str) -> None:
        where = f"{self.path.relative_to(SKLIP.parent)}:{node.lineno} ({self.function.name})"
        self.findings.append(f"{where}: {message}: {_dotted(node)[:100]}")

    # -------------------------------------------------------------- statements
    def run(self) -> None:
        self.block(self.function.body)

    def block(self, statements: list[ast.stmt]) -> None:
        for statement in statements:
            self.statement(statement)

    def statement(self, node: ast.stmt) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            return  # scanned on its own
        if isinstance(node, ast.Assign):
            kind = self.kind(node.value)
            for target in node.targets:
                self.assign(target, node.value, kind)
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            self.assign(node.target, node.value, self.kind(node.value))
        elif isinstance(node, ast.AugAssign):
            target, value = self.kind(node.target), self.kind(node.value)
            self.mixed(node, target, value)
            if isinstance(node.target, ast.Name):
                self.env[node.target.id] = _join(target, value)
        elif isinstance(node, ast.For):
            self.assign(node.target, node.iter, self.kind(node.iter))
            self.block(node.body)
            self.block(node.orelse)
        elif isinstance(node, ast.While | ast.If):
            self.kind(node.test)
            self.block(node.body)
            self.block(node.orelse)
        elif isinstance(node, ast.With):
            for item in node.items:
                kind = self.kind(item.context_expr)
                if item.optional_vars is not None:
                    self.assign(item.optional_vars, item.context_expr, kind)
            self.block(node.body)
        elif isinstance(node, ast.Try):
            for part in (node.body, *(h.body for h in node.handlers), node.orelse, node.finalbody):
                self.block(part)
        elif isinstance(node, ast.Return) and node.value is not None:
            kind = self.kind(node.value)
            values = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
            if len(self.promised) != len(values):  # not a tuple display: the whole value
                values = [node.value] * len(self.promised)
            for promised, value in zip(self.promised, values, strict=True):
                actual = kind if len(values) == 1 else self.kind(value)
                if promised == NDARRAY and actual == TENSOR:
                    self.report(node, "returns a tensor where an ndarray is promised")
        elif isinstance(node, ast.Expr):
            self.kind(node.value)
        else:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.expr):
                    self.kind(child)

    def assign(self, target: ast.expr, value: ast.expr, kind: str | None) -> None:
        if isinstance(target, ast.Name):
            self.env[target.id] = kind
        elif isinstance(target, ast.Tuple | ast.List):
            values = value.elts if isinstance(value, ast.Tuple | ast.List) else None
            if values is not None and len(values) == len(target.elts):
                for sub_target, sub_value in zip(target.elts, values, strict=True):
                    self.assign(sub_target, sub_value, self.kind(sub_value))
            else:
                for sub_target in target.elts:
                    self.assign(sub_target, value, kind)
        elif isinstance(target, ast.Subscript):
            if self.kind(target.value) == NDARRAY and kind == TENSOR:
                self.report(target, "a tensor stored into a NumPy array")
        elif isinstance(target, ast.Attribute):
            published = (
                _root(target) == "self"
                and target.attr.endswith("_")
                and not target.attr.startswith("_")
                and target.attr not in TORCH_FITTED_ATTRIBUTES
            )
            if published and kind == TENSOR:
                self.report(target, "a tensor published as a fitted attribute (use to_numpy)")

    # ------------------------------------------------------------- expressions
    def kind(self, node: ast.expr | None) -> str | None:
        if node is None:
            return None
        if isinstance(node, ast.Name):
            return self.env.get(node.id)
        if isinstance(node, ast.Attribute):
            inner = self.kind(node.value)
            if node.attr in HOST_ATTRIBUTES:
                return None
            if node.attr in TENSOR_ATTRIBUTES:
                return TENSOR
            return inner
        if isinstance(node, ast.Subscript):
            self.kind(node.slice)
            return self.kind(node.value)
        if isinstance(node, ast.Starred):
            return self.kind(node.value)
        if isinstance(node, ast.BinOp | ast.Compare):
            operands = [node.left, node.right] if isinstance(node, ast.BinOp) else None
            if operands is None:
                operands = [node.left, *node.comparators]
            kinds = [self.kind(operand) for operand in operands]
            for other in kinds[1:]:
                self.mixed(node, kinds[0], other)
            return _join(*kinds)
        if isinstance(node, ast.UnaryOp):
            return self.kind(node.operand)
        if isinstance(node, ast.BoolOp):
            return _join(*(self.kind(value) for value in node.values))
        if isinstance(node, ast.IfExp):
            self.kind(node.test)
            return _join(self.kind(node.body), self.kind(node.orelse))
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            return _join(*(self.kind(element) for element in node.elts))
        if isinstance(node, ast.Dict):
            for part in [*node.keys, *node.values]:
                self.kind(part)
            return None
        if isinstance(node, ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp):
            for generator in node.generators:
                self.assign(generator.target, generator.iter, self.kind(generator.iter))
            element = node.value if isinstance(node, ast.DictComp) else node.elt
            return self.kind(element)
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.NamedExpr):
            kind = self.kind(node.value)
            self.env[node.target.id] = kind
            return kind
        if isinstance(node, ast.Lambda):
            return None
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                self.kind(child)
        return None

    def call(self, node: ast.Call) -> str | None:
        func = node.func
        args = [*node.args, *(keyword.value for keyword in node.keywords)]
        arg_kinds = [self.kind(arg) for arg in args]
        root = _root(func)
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        receiver = self.kind(func.value) if isinstance(func, ast.Attribute) else None
        if isinstance(func, ast.Attribute) and name == "numpy":
            if not self.is_to_numpy():
                self.report(node, ".numpy() outside sklip._device.to_numpy")
            return NDARRAY
        if name in {"from_dlpack", "__array__", "__dlpack__"}:
            self.report(node, "a conversion that bypasses to_numpy")
            return NDARRAY
        if name == "to_numpy":
            return NDARRAY
        if isinstance(func, ast.Attribute) and root in NUMPY_ROOTS and _root(func.value) == root:
            if TENSOR in arg_kinds:
                self.report(node, "a NumPy function applied to a tensor (use to_numpy first)")
            return NDARRAY
        if isinstance(func, ast.Attribute) and root in TORCH_ROOTS and _root(func.value) == root:
            self.factory(node, name)
            if NDARRAY in arg_kinds and name not in CONVERTERS:
                self.report(node, "a torch function given a NumPy array")
            return TENSOR
        if isinstance(func, ast.Name) and func.id in HOST_BUILTINS:
            return None
        if isinstance(func, ast.Attribute):
            if name in HOST_METHODS:
                return None
            if name in TORCH_METHODS and receiver != NDARRAY:
                return TENSOR
            if name == "astype":
                if receiver == TENSOR:
                    self.report(node, ".astype on a tensor")
                return NDARRAY
            if receiver == TENSOR and NDARRAY in arg_kinds:
                self.report(node, "a tensor method given a NumPy array")
            if receiver == NDARRAY and TENSOR in arg_kinds:
                self.report(node, "an ndarray method given a tensor")
        known = self.returns.get(name) if name else None
        if known == "host":
            return None
        if known in (TENSOR, NDARRAY):
            return known
        return _join(self.kind(func), *arg_kinds)

    def factory(self, node: ast.Call, name: str) -> None:
        """A tensor made on the CPU (no ``device=``) that is not moved at once."""
        if name not in FACTORIES or any(k.arg == "device" for k in node.keywords):
            return
        parent = getattr(node, "parent", None)
        if isinstance(parent, ast.Attribute) and parent.attr == "to":
            return
        call = _dotted(node.func)
        if (self.path.name, self.function.name, call) in CPU_BY_DESIGN:
            return
        self.report(node, "a tensor made on the CPU (no device=, no .to(...))")

    def is_to_numpy(self) -> bool:
        return self.path.name == "_device.py" and self.function.name == "to_numpy"

    def mixed(self, node: ast.AST, first: str | None, second: str | None) -> None:
        if {first, second} == {TENSOR, NDARRAY}:
            self.report(node, "a tensor and a NumPy array in one operation")


def _join(*kinds: str | None) -> str | None:
    if TENSOR in kinds:
        return TENSOR
    return NDARRAY if NDARRAY in kinds else None


def scan_source(path: Path, source: str, returns: dict[str, str | None]) -> list[str]:
    """Findings of the host-transfer scan in one module's source."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            child.parent = node
    findings: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            _FunctionScan(path, node, returns, findings).run()
    return list(dict.fromkeys(findings))


def sklip_sources() -> list[Path]:
    return sorted(SKLIP.rglob("*.py"))


def scan(replace: dict[str, tuple[str, str]] | None = None) -> list[str]:
    """Findings over sklip/**/*.py; ``replace`` plants (old, new) edits in named files."""
    files = sklip_sources()
    returns = _return_kinds(files)
    findings = []
    for path in files:
        source = path.read_text()
        if replace and path.name in replace:
            old, new = replace[path.name]
            assert old in source, f"planting needs {old!r} in {path.name}"
            source = source.replace(old, new)
        findings += scan_source(path, source, returns)
    return findings


def test_sklip_sources_convert_tensors_only_through_to_numpy():
    findings = scan()
    assert not findings, "CUDA-unsafe host transfers or device mixes:\n" + "\n".join(findings)


def test_the_allowlist_names_places_that_exist():
    """A reviewed exception that no longer matches any code is stale: remove it."""
    calls = set()
    for path in sklip_sources():
        for function in ast.walk(ast.parse(path.read_text())):
            if isinstance(function, ast.FunctionDef):
                for node in ast.walk(function):
                    if isinstance(node, ast.Call):
                        calls.add((path.name, function.name, _dotted(node.func)))
    assert set(CPU_BY_DESIGN) <= calls, set(CPU_BY_DESIGN) - calls


# name -> (file, original code, planted code, what the scan must say)
PLANTED = {
    # the original bug: .numpy() on the device tensor of the pairwise bounds
    "pairwise .numpy()": (
        "_base.py",
        "self.pairwise_lipschitz_constant_ = to_numpy(pairwise)",
        "self.pairwise_lipschitz_constant_ = pairwise.numpy()",
        ".numpy() outside sklip._device.to_numpy",
    ),
    "tensor published as a fitted attribute": (
        "_base.py",
        "self.pairwise_lipschitz_constant_ = to_numpy(pairwise)",
        "self.pairwise_lipschitz_constant_ = pairwise",
        "a tensor published as a fitted attribute",
    ),
    "np.asarray of a tensor": (
        "_base.py",
        "outputs[rows] = to_numpy(result.outputs)",
        "outputs[rows] = np.asarray(result.outputs)",
        "a NumPy function applied to a tensor",
    ),
    "tensor stored into an ndarray": (
        "_base.py",
        "outputs[rows] = to_numpy(result.outputs)",
        "outputs[rows] = result.outputs",
        "a tensor stored into a NumPy array",
    ),
    "np.array of an attack's tensor": (
        "_attacks.py",
        "return _within_budget(X, to_numpy(best), budget)",
        "return _within_budget(X, np.array(best), budget)",
        "a NumPy function applied to a tensor",
    ),
    ".cpu().numpy()": (
        "_attacks.py",
        "return to_numpy(points), to_numpy(reached)",
        "return points.cpu().numpy(), reached.cpu().numpy()",
        ".numpy() outside sklip._device.to_numpy",
    ),
    "from_numpy without .to": (
        "_base.py",
        "return torch.from_numpy(X).to(self.device_)",
        "return torch.from_numpy(X)",
        "a tensor made on the CPU",
    ),
    "factory without device": (
        "frozen.py",
        "error = torch.zeros(n, dtype=torch.float64, device=x.device)",
        "error = torch.zeros(n, dtype=torch.float64)",
        "a tensor made on the CPU",
    ),
    "ndarray in tensor arithmetic": (
        "_attacks.py",
        "delta = _random_in_ball(x0.shape, rng).to(x0) * radius",
        "delta = torch.zeros_like(x0) + rng.standard_normal(x0.shape)",
        "a tensor and a NumPy array in one operation",
    ),
}


@pytest.mark.parametrize("plant", PLANTED, ids=list(PLANTED))
def test_the_scan_catches_planted_bugs(plant):
    file, original, planted, message = PLANTED[plant]
    findings = scan({file: (original, planted)})
    assert findings, f"the scan missed the planted bug: {plant}"
    assert all(message in finding and file in finding for finding in findings), findings


def test_the_scan_follows_values_through_a_function():
    source = textwrap.dedent(
        """
        def f(module: nn.Module, X: np.ndarray) -> np.ndarray:
            out = module(torch.as_tensor(X, device="cuda"))
            scores = out[:, 0] * 2
            return np.abs(scores)

        def g(net, X):
            total = np.zeros(3)
            result = net.network_(X)
            total += result.outputs
            return total

        def h(x: Tensor) -> np.ndarray:
            return x.double()
        """
    )
    findings = scan_source(SKLIP / "planted.py", source, {})
    assert any("NumPy function applied to a tensor" in f for f in findings), findings
    assert any("in one operation" in f for f in findings), findings
    assert any("ndarray is promised" in f for f in findings), findings


# ---------------------------------------------------------------- the run
@contextmanager
def conversions_guarded(monkeypatch):
    """Make ``Tensor.numpy`` and ``Tensor.__array__`` fail unless ``to_numpy`` calls them.

    What a CUDA device does to any other conversion, here on every tensor:
    the call is recorded (so that an ``except TypeError`` in sklip cannot hide
    it) and raises the TypeError CUDA would. Yields the list of offending
    call sites.
    """
    from sklip import _device

    allowed = _device.to_numpy.__code__
    offences: list[str] = []
    original_numpy = torch.Tensor.numpy

    def where(depth: int) -> str:
        frame = sys._getframe(depth)
        return f"{frame.f_code.co_filename}:{frame.f_lineno} ({frame.f_code.co_name})"

    def guarded_numpy(self, *args, **kwargs):
        if sys._getframe(1).f_code is not allowed:
            offences.append(f".numpy() from {where(2)}")
            raise TypeError("can't convert this tensor to numpy: use sklip._device.to_numpy")
        return original_numpy(self, *args, **kwargs)

    def guarded_array(self, *args, **kwargs):
        offences.append(f"__array__ (np.asarray/np.array of a tensor) from {where(2)}")
        raise TypeError("can't convert this tensor to numpy: use sklip._device.to_numpy")

    with monkeypatch.context() as patch:
        patch.setattr(torch.Tensor, "numpy", guarded_numpy)
        patch.setattr(torch.Tensor, "__array__", guarded_array)
        yield offences


@pytest.fixture
def numpy_only_through_to_numpy(monkeypatch):
    """:func:`conversions_guarded` for a whole test; fails it on any offence."""
    with conversions_guarded(monkeypatch) as offences:
        yield offences
    assert not offences, "tensors converted outside to_numpy:\n" + "\n".join(offences)


def test_the_guard_catches_a_direct_conversion(numpy_only_through_to_numpy):
    from sklip._device import to_numpy

    tensor = torch.ones(3)
    assert to_numpy(tensor).tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(TypeError):
        tensor.numpy()
    with pytest.raises(TypeError):
        np.asarray(tensor)
    with pytest.raises(TypeError):
        tensor.cpu().numpy()
    assert len(numpy_only_through_to_numpy) == 3
    numpy_only_through_to_numpy.clear()


def _small(**params):
    return dict(hidden_layer_sizes=(8,), max_epochs=2, batch_size=32, device="cpu",
                random_state=0, **params)  # fmt: skip


def _estimator_paths(tmp_path):
    """Every estimator path that moves data between torch and NumPy, tiny and on the CPU."""
    import matplotlib

    matplotlib.use("Agg")
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import sklip
    from sklip import (
        LipschitzClassifier,
        LipschitzOutlierDetector,
        LipschitzRegressor,
        WassersteinEstimator,
        wasserstein_distance,
    )
    from sklip.robustness import (
        CertifiedAccuracyDisplay,
        certified_accuracy,
        certified_auroc,
        certified_radius,
        counterfactual,
        make_certified_scorer,
        pgd_attack,
    )

    rng = np.random.RandomState(0)
    X = rng.normal(size=(60, 4))
    y2 = (X[:, 0] > 0).astype(int)
    y3 = np.digitize(X[:, 0], [-0.4, 0.4])
    images = rng.normal(size=(40, 1, 4, 4))
    y_images = (images.mean(axis=(1, 2, 3)) > 0).astype(int)

    binary = LipschitzClassifier(**_small()).fit(X, y2)
    multi = LipschitzClassifier(**_small(early_stopping=True, validation_fraction=0.3)).fit(X, y3)
    cnn = LipschitzClassifier(**_small(image_shape=(1, 4, 4), conv_channels=(2,))).fit(
        images, y_images
    )
    for clf, data, labels in ((binary, X, y2), (multi, X, y3), (cnn, images, y_images)):
        clf.predict(data), clf.predict_proba(data), clf.predict_log_proba(data)
        clf.decision_function(data), clf.score(data, labels)
        radius = clf.certified_radius(data)
        flat = data.reshape(len(data), -1)
        pgd_attack(clf, flat, labels, 0.99 * radius, steps=2, restarts=1, random_state=0)
        pgd_attack(clf, flat, None, 0.5, steps=2, restarts=0)
        counterfactual(clf, flat[:5], max_iter=3, return_tightness=True)
        clf.to_torch()
        restored = pickle.loads(pickle.dumps(clf))
        restored.set_params(early_stopping=False).partial_fit(data, labels)
    LipschitzClassifier(**_small()).partial_fit(X, y3, classes=np.unique(y3))
    sklip.fit_in_chunks(LipschitzClassifier(**_small()), X, y3, chunk_size=20, n_passes=2)

    pipe = make_pipeline(StandardScaler(), LipschitzClassifier(**_small())).fit(X * 3, y3)
    certified_radius(pipe, X * 3), certified_accuracy(pipe, X * 3, y3, [0.0, 0.1])
    pgd_attack(pipe, X * 3, y3, 0.1, steps=2, restarts=0)
    counterfactual(pipe, X[:5] * 3, max_iter=2, return_tightness=True)
    search = GridSearchCV(
        LipschitzClassifier(**_small()), {"alpha": [1.0, 10.0]}, cv=2,
        scoring=make_certified_scorer(0.05),
    ).fit(X, y2)  # fmt: skip
    CertifiedAccuracyDisplay.from_estimator(search.best_estimator_, X, y2)

    w1 = WassersteinEstimator(**_small()).fit(X, y2)
    w1.predict(X), w1.decision_function(X), w1.score(X, y2)
    pickle.loads(pickle.dumps(w1)).partial_fit(X, y2)
    WassersteinEstimator(**_small(alpha=1.0)).partial_fit(X, y2, classes=[0, 1])
    sklip.fit_in_chunks(WassersteinEstimator(**_small()), X, y2, chunk_size=30)
    P, Q = X[:30], X[30:] + 1.0
    wasserstein_distance(P, Q, **_small())
    wasserstein_distance(P, Q, np.ones(30), np.ones(30), chunk_size=16, **_small())
    path = tmp_path / "P.npy"
    np.save(path, P)
    wasserstein_distance(np.load(path, mmap_mode="r"), Q, chunk_size=16, **_small())

    for detector, data in (
        (LipschitzOutlierDetector(**_small(contamination=0.1)), X),
        (LipschitzOutlierDetector(**_small(image_shape=(1, 4, 4), conv_channels=(2,))), images),
    ):
        detector.fit(data)
        detector.predict(data), detector.decision_function(data), detector.score_samples(data)
        radius = detector.certified_radius(data)
        flat = data.reshape(len(data), -1)
        pgd_attack(detector, flat, None, 0.99 * radius, steps=2, restarts=1, random_state=0)
        certified_auroc(detector, data, np.where(y2[: len(data)] == 1, 1, -1), [0.0, 0.1])
        pickle.loads(pickle.dumps(detector)).partial_fit(data)
    outlier_pipe = make_pipeline(StandardScaler(), LipschitzOutlierDetector(**_small())).fit(X)
    certified_radius(outlier_pipe, X), certified_auroc(outlier_pipe, X, 2 * y2 - 1, 0.1)

    targets = np.c_[X[:, 0], X[:, 1] * 2]
    for regressor, data, y in (
        (LipschitzRegressor(**_small()), X, targets),
        (LipschitzRegressor(**_small(early_stopping=True, loss="huber")), X, targets[:, 0]),
        (LipschitzRegressor(**_small(image_shape=(1, 4, 4), conv_channels=(2,))), images,
         images.mean(axis=(1, 2, 3))),
    ):  # fmt: skip
        regressor.fit(data, y)
        regressor.predict(data), regressor.predict_interval(data, 0.1), regressor.score(data, y)
        regressor.to_torch()
        pickle.loads(pickle.dumps(regressor)).set_params(early_stopping=False).partial_fit(data, y)


def test_estimator_paths_convert_only_through_to_numpy(numpy_only_through_to_numpy, tmp_path):
    pytest.importorskip("matplotlib")
    _estimator_paths(tmp_path)


def test_the_run_catches_a_planted_conversion(monkeypatch, tmp_path):
    """A direct ``.numpy()`` planted on a path (the original bug) is caught by the run."""
    pytest.importorskip("matplotlib")
    from sklip.nn import frozen

    original = frozen.pairwise_lipschitz_bound
    monkeypatch.setattr(frozen, "pairwise_lipschitz_bound", lambda *a: original(*a).numpy())
    with conversions_guarded(monkeypatch) as offences, pytest.raises(TypeError):
        _estimator_paths(tmp_path)
    assert offences and offences[0].startswith(".numpy() from")
