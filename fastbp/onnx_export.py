"""Export a trained :class:`~fastbp.Sequential` to ONNX, for inference anywhere ONNX runs.

The graph computes exactly what ``model.predict`` does: per ``Dense`` layer a ``MatMul``
with ``W`` (shape ``(n_in, n_out)``), an ``Add`` of ``b`` and the activation (a leading
``Normalization`` is a ``Sub`` of its mean and a ``Div`` by its standard deviation); dropout
layers are the identity at inference and export nothing; the loss's output link comes last
(``Softmax`` for ``cross_entropy``, ``Sigmoid`` for ``binary_cross_entropy``, ``Exp`` for
``poisson``, nothing for ``mse``/``huber``). The input is named ``"input"``, of shape
``(batch, n_features)`` with a dynamic batch dimension; the output is ``"output"``, of shape
``(batch, k)``; both have the model's dtype.

Needs the ``onnx`` package (``pip install fastbp[onnx]``, which also installs onnxruntime).
"""

from __future__ import annotations

import os

import numpy as np

from .kernels.activations import ACTIVATIONS, REGISTRY
from .kernels.activations import GELU_OPSET as GELU_OPSET  # the opset that has Gelu (re-exported)
from .kernels.losses import POISSON_MAX_LOG
from .model import Sequential

#: Opset used when ``opset`` is not given: old enough for every maintained onnxruntime.
DEFAULT_OPSET = 17
#: Oldest opset accepted (Softmax-13 normalises along one axis, as fastbp does).
MIN_OPSET = 13

_LINKS = {"cross_entropy": "Softmax", "binary_cross_entropy": "Sigmoid", "poisson": "Exp"}


def _import_onnx():
    try:
        import onnx
    except ImportError:
        raise ImportError("export_onnx needs the onnx package: pip install fastbp[onnx]") from None
    return onnx


class _Graph:
    """Accumulates nodes and initializers, naming every intermediate uniquely."""

    def __init__(self, onnx, dtype: np.dtype, opset: int) -> None:
        self.onnx = onnx
        self.helper = onnx.helper
        self.dtype = dtype
        self.opset = opset
        self.nodes: list = []
        self.initializers: list = []
        self._count = 0

    def name(self, stem: str) -> str:
        self._count += 1
        return f"{stem}_{self._count}"

    def const(self, stem: str, value: np.ndarray | float) -> str:
        name = self.name(stem)
        arr = np.asarray(value, dtype=self.dtype)
        self.initializers.append(self.onnx.numpy_helper.from_array(arr, name=name))
        return name

    def op(self, op_type: str, inputs: list[str], out: str | None = None, **attrs) -> str:
        out = out or self.name(op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, inputs, [out], name=self.name(f"{op_type}_node"), **attrs))
        return out

    @property
    def double(self) -> bool:
        """Whether the model (and so every tensor) is float64."""
        return self.dtype == np.float64

    def cast(self, x: str, double: bool) -> str:
        """``x`` cast to float64 (``double``) or float32."""
        to = self.onnx.TensorProto.DOUBLE if double else self.onnx.TensorProto.FLOAT
        return self.op("Cast", [x], to=to)

    def activation(self, act: str, x: str) -> str:
        """``f(x)``: the ONNX form of the activation's registry entry
        (``fastbp.kernels.activations.REGISTRY``)."""
        code = ACTIVATIONS.get(act)
        if code is None:
            raise ValueError(f"cannot export activation {act!r} to ONNX")
        return REGISTRY[code].onnx(self, x)


def export_onnx(model: Sequential, path: str | os.PathLike, *, opset: int | None = None):
    """Write ``model`` as an ONNX graph computing ``model.predict``.

    Parameters
    ----------
    model : Sequential
        A built model (fitted, or built with ``model.build(n_features)``).
    path : str or path-like
        Destination ``.onnx`` file, replaced atomically.
    opset : int, optional
        ONNX opset version, from 13 up to what the installed ``onnx`` supports (default 17).
        From 20 on, gelu uses the ``Gelu`` operator; before, ``Erf`` arithmetic.

    Notes
    -----
    onnxruntime has no float64 kernels for ``Elu``, ``Softplus``, ``Erf`` and ``Gelu``, and
    ``LeakyRelu``'s slope is a float32 attribute, so a float64 model writes leaky_relu, elu
    and softplus with elementary operators (exact to float64 rounding) and evaluates gelu's
    ``erf`` in float32 (relative error about 1e-7).

    Returns
    -------
    onnx.ModelProto
        The exported model, checked with ``onnx.checker.check_model``.

    Examples
    --------
    >>> import os, tempfile, numpy as np, fastbp as fb
    >>> import onnxruntime as ort  # doctest: +SKIP
    >>> model = fb.Sequential([fb.Dense(8, activation="relu"), fb.Dense(3)], loss="cross_entropy", seed=0)
    >>> model.build(4)
    >>> path = os.path.join(tempfile.mkdtemp(), "model.onnx")
    >>> proto = export_onnx(model, path)  # doctest: +SKIP
    >>> x = np.ones((2, 4), dtype=np.float32)
    >>> sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])  # doctest: +SKIP
    >>> np.allclose(sess.run(None, {"input": x})[0], model.predict(x), rtol=1e-5, atol=1e-6)  # doctest: +SKIP
    True
    """
    from .io import atomic_write

    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a fastbp Sequential, got {type(model).__name__}")
    if not model.built:
        raise ValueError("model is not built: fit it or call model.build(n_features) before export_onnx")
    onnx = _import_onnx()
    max_opset = onnx.defs.onnx_opset_version()
    if opset is None:
        opset = min(DEFAULT_OPSET, max_opset)
    if isinstance(opset, bool) or not isinstance(opset, int | np.integer):
        raise TypeError(f"opset must be an int, got {type(opset).__name__}: {opset!r}")
    if not MIN_OPSET <= opset <= max_opset:
        raise ValueError(f"opset must be between {MIN_OPSET} and {max_opset} (the installed onnx), got {opset}")
    opset = int(opset)
    proto = _build_proto(onnx, model, opset)
    onnx.checker.check_model(proto, full_check=True)
    with atomic_write(path) as f:
        f.write(proto.SerializeToString())
    return proto


def _build_proto(onnx, model: Sequential, opset: int):
    from . import __version__

    helper = onnx.helper
    dtype = model.dtype
    elem = helper.np_dtype_to_tensor_dtype(dtype)
    g = _Graph(onnx, dtype, opset)
    x = "input"
    for i, layer in enumerate(model.layers):
        kind = type(layer).__name__
        if kind == "Dropout":  # identity at inference
            continue
        if kind == "Normalization":  # (x - mean) / std with the constants predict uses
            mean, std = layer.scale(dtype)
            x = g.op("Div", [g.op("Sub", [x, g.const("norm_mean", mean)]), g.const("norm_std", std)])
            continue
        if kind != "Dense":
            raise ValueError(f"cannot export layer {i} of class {kind} to ONNX")
        x = g.op("MatMul", [x, g.const(f"W{i}", layer.w)])
        x = g.op("Add", [x, g.const(f"b{i}", layer.b)])
        x = g.activation(layer.activation, x)
    link = _LINKS.get(model.loss)
    if model.loss == "poisson":  # the same clipped log-rate as fastbp's link
        x = g.op("Min", [x, g.const("poisson_max_log", POISSON_MAX_LOG)])
    if link == "Softmax":
        g.op("Softmax", [x], "output", axis=-1)
    elif link is not None:
        g.op(link, [x], "output")
    else:
        g.op("Identity", [x], "output")
    graph = helper.make_graph(
        g.nodes, "fastbp_sequential",
        inputs=[helper.make_tensor_value_info("input", elem, ["batch", model.n_features])],
        outputs=[helper.make_tensor_value_info("output", elem, ["batch", model.n_outputs])],
        initializer=g.initializers,
    )  # fmt: skip
    opsets = [helper.make_opsetid("", opset)]
    proto = helper.make_model(graph, opset_imports=opsets, producer_name="fastbp", producer_version=__version__,
                              doc_string=f"fastbp {model!r}")  # fmt: skip
    # the lowest IR version that carries this opset, so older onnxruntime builds accept the file
    proto.ir_version = helper.find_min_ir_version_for(opsets)
    return proto
