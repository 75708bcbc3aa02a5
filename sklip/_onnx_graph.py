"""A small builder of ONNX graphs: named constants, one call per node.

sklip writes its ONNX graphs directly (no tracing): every operation of the
exported computation is then one the rounding analysis names, in the dtype
chosen, and float64 graphs use only operators onnxruntime runs in float64.
"""

from __future__ import annotations

from typing import Any

import numpy as np

OPSET = 18

_ELEMENT_TYPES = {
    np.dtype(np.float64): "DOUBLE",
    np.dtype(np.float32): "FLOAT",
    np.dtype(np.int64): "INT64",
    np.dtype(np.bool_): "BOOL",
}


def require_onnx() -> Any:
    """The ``onnx`` module, or an ImportError saying how to install it."""
    try:
        import onnx
    except ImportError:  # pragma: no cover - the test extra installs it
        raise ImportError(
            "Exporting to ONNX needs the onnx package: pip install 'sklip[onnx]'."
        ) from None
    return onnx


class GraphBuilder:
    """Nodes and constants of one ONNX graph, with unique names.

    Parameters
    ----------
    dtype : numpy dtype
        The floating-point type of the network's computation.
    """

    def __init__(self, dtype: Any) -> None:
        self.onnx = require_onnx()
        self.dtype = np.dtype(dtype)
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._single: dict[str, np.ndarray] = {}  # single-element float constants, by name
        self._count = 0

    def _name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def constant(self, value: Any, dtype: Any = None, hint: str = "c") -> str:
        """A constant tensor (``dtype`` defaults to the graph's float type)."""
        array = np.asarray(value, dtype=self.dtype if dtype is None else dtype)
        name = self._name(hint)
        if array.dtype.kind in "USO":
            strings = [str(item).encode() for item in array.ravel()]
            tensor = self.onnx.helper.make_tensor(
                name, self.onnx.TensorProto.STRING, array.shape, strings
            )
        else:
            tensor = self.onnx.numpy_helper.from_array(np.ascontiguousarray(array), name)
            if array.size == 1 and array.dtype.kind == "f":
                self._single[name] = array.ravel()[:1]
        self.initializers.append(tensor)
        return name

    def integers(self, values: Any) -> str:
        return self.constant(np.asarray(values, dtype=np.int64), np.int64, "i")

    def double(self, value: Any) -> str:
        return self.constant(value, np.float64, "d")

    def op(self, op_type: str, *inputs: str, n_outputs: int = 1, **attributes: Any) -> Any:
        """Add one node; return its output name (a list with ``n_outputs > 1``)."""
        if op_type in ("Mul", "Div", "Add", "Sub"):
            inputs = self._kept_by_runtime(op_type, inputs)
        outputs = [self._name(op_type.lower()) for _ in range(n_outputs)]
        node = self.onnx.helper.make_node(op_type, list(inputs), outputs, **attributes)
        self.nodes.append(node)
        return outputs[0] if n_outputs == 1 else outputs

    def _kept_by_runtime(self, op_type: str, inputs: tuple[str, ...]) -> tuple[str, ...]:
        """``inputs`` rewritten so that onnxruntime's optimiser keeps the operation.

        onnxruntime's NoopElimination removes ``x * c``, ``x / c`` when ``c``
        read as a float32 is 1, and ``x + c``, ``x - c`` when it is 0, even
        for float64 constants such as ``1 + 2e-8`` (found by sklip's tests:
        a radius divided by ``L = 1.00000002`` was not divided). A product or
        quotient is rescaled by powers of two, which changes no bit in the
        normal range: ``x c = (x / 2)(2 c)`` and ``x / c = (x / 2) / (c / 2)``
        (a subnormal ``x`` may lose its last bit, less than the ``2**-126``
        every radius is lowered by). A sum with a constant that small is
        refused: the callers round such bound terms up (:meth:`bound`).
        """
        first, second = inputs if len(inputs) == 2 else (None, None)
        if (first in self._single) == (second in self._single):
            return inputs  # neither or both constant: the rule does not apply
        if op_type in ("Sub", "Div") and second not in self._single:
            return inputs
        constant, other = (first, second) if first in self._single else (second, first)
        stored = self._single[constant]
        value, as_float32 = float(stored[0]), float(np.float32(stored[0]))
        if op_type in ("Mul", "Div") and as_float32 == 1.0 and value != 1.0:
            half = self.op("Mul", other, self.constant(0.5, stored.dtype, "half"))
            factor = 2.0 * value if op_type == "Mul" else value / 2.0
            return half, self.constant(factor, stored.dtype)
        if op_type in ("Add", "Sub") and as_float32 == 0.0 and value != 0.0:
            raise ValueError(
                f"A constant of {value!r} would be dropped by onnxruntime's optimiser; "
                "sklip cannot export it exactly."
            )
        return inputs

    def cast(self, name: str, dtype: Any) -> str:
        """``name`` converted to ``dtype`` (float64, float32 or int64)."""
        kind = _ELEMENT_TYPES[np.dtype(dtype)]
        return self.op("Cast", name, to=getattr(self.onnx.TensorProto, kind))

    def bound(self, value: float) -> str:
        """A float64 constant for a non-negative *upper bound*: raised to at least
        ``2**-126`` when positive, so that the runtime keeps the sum it enters."""
        value = float(value)
        return self.double(value if value == 0.0 or value >= 2.0**-126 else 2.0**-126)

    def output(self, name: str, output: str) -> str:
        """Expose the value ``name`` as the graph output called ``output``."""
        self.nodes.append(self.onnx.helper.make_node("Identity", [name], [output]))
        return output

    def model(
        self,
        inputs: list[tuple[str, Any, list[Any]]],
        outputs: list[tuple[str, Any, list[Any]]],
        metadata: dict[str, str],
    ) -> Any:
        """The ``ModelProto``: ``inputs``/``outputs`` are ``(name, dtype, shape)`` triples."""
        helper = self.onnx.helper
        graph = helper.make_graph(
            self.nodes,
            "sklip",
            [helper.make_tensor_value_info(*self._value_info(*spec)) for spec in inputs],
            [helper.make_tensor_value_info(*self._value_info(*spec)) for spec in outputs],
            initializer=self.initializers,
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            producer_name="sklip",
        )
        model.ir_version = 8  # onnxruntime 1.14 and later read it
        for key, value in metadata.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        self.onnx.checker.check_model(model)
        return model

    def _value_info(self, name: str, dtype: Any, shape: list[Any]) -> tuple[str, int, list[Any]]:
        dtype = np.dtype(dtype)
        kind = "STRING" if dtype.kind in "USO" else _ELEMENT_TYPES[dtype]
        return name, getattr(self.onnx.TensorProto, kind), shape
