"""Looking inside backpropagation: a finite-difference gradient check and a per-layer trace
of the chain rule.

The lesson fastbp comes from writes the gradient of the cost with respect to a weight of
layer L as a product of three factors::

    dC/dW^L = dC/da^L  *  da^L/dz^L  *  dz^L/dW^L        with z^L = a^(L-1) W^L + b^L
              (cost)      (activation)   (weighted sum: the previous activation a^(L-1))

and calls the product of the first two ``delta^L``; the bias has ``dz/db = 1``, so
``dC/db^L = delta^L``. One layer down, ``dC/da^(L-1) = delta^L (W^L)^T`` and the same
three factors repeat. :func:`backprop_trace` returns exactly these arrays for every layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._threads import compute_threads
from ._validation import check_X
from .kernels.activations import activation_code, apply_backward, apply_forward
from .kernels.losses import CROSS_ENTROPY, LOSSES, loss_grad
from .kernels.sparse import is_sparse
from .layers import Dense, Normalization
from .model import Sequential


def _float64_copy(model: Sequential) -> Sequential:
    """The same network (architecture, loss, weights) in float64, without Dropout and
    without the input's Normalization (see :func:`_network_input`)."""
    if not model.built:
        raise ValueError("the model is not built yet: call fit, build or set_weights first")
    layers = [Dense(**layer.get_config()) for layer in model.dense_layers]
    copy = Sequential(layers, loss=model.loss, dtype="float64", seed=0)
    copy.set_weights(model.get_weights())
    return copy


def _network_input(model: Sequential, X: object) -> object:
    """``X`` as the model's Dense layers see it: standardised in float64 by its
    Normalization layer, if it has one (validated by it); otherwise as given."""
    norm = model.normalization
    if norm is None:
        return X
    return Normalization(**norm.get_config()).transform(check_X(X, np.dtype(np.float64), model.n_features))


def _offsets(weights: list[np.ndarray]) -> list[int]:
    """Offset in the flat parameters (``TrainingState.theta``: all weights, then all
    biases) of each array of ``get_weights()``."""
    sizes = [w.size for w in weights]
    n_w = sum(sizes[0::2])
    w_off = np.concatenate([[0], np.cumsum(sizes[0::2])[:-1]])
    b_off = n_w + np.concatenate([[0], np.cumsum(sizes[1::2])[:-1]])
    return [int(o) for pair in zip(w_off, b_off) for o in pair]


def check_gradients(
    model: Sequential, X: object, y: object, eps: float = 1e-6, max_entries: int = 100, seed: int = 0
) -> list[float]:
    """Compare ``loss_and_gradients`` with central finite differences, in float64.

    The model's weights are copied to a float64 twin (the model itself is not changed);
    for each parameter array up to ``max_entries`` entries (all of them if the array is
    smaller, else a seeded random sample) are perturbed by ``+-eps`` and
    ``(C(w + eps) - C(w - eps)) / (2 eps)`` is compared with the analytic gradient.

    Returns
    -------
    list of float
        For each array of ``get_weights()`` (``[W0, b0, W1, b1, ...]``), the largest
        relative error ``|analytic - numeric| / max(|analytic|, |numeric|, 1e-6)``.
        Correct backpropagation gives about 1e-7 or less; a bug gives 1e-2 or more.

    Examples
    --------
    >>> import numpy as np, fastbp as fb
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.standard_normal((20, 3)), rng.integers(0, 2, 20)
    >>> model = fb.Sequential([fb.Dense(4, activation="tanh"), fb.Dense(2)], loss="cross_entropy", seed=0)
    >>> model.build(3)
    >>> max(fb.check_gradients(model, X, y)) < 1e-5
    True
    """
    if not isinstance(max_entries, int) or max_entries < 1:
        raise ValueError(f"max_entries must be a positive int, got {max_entries!r}")
    twin = _float64_copy(model)
    X = twin.check_inputs(_network_input(model, X), y).X  # validated once, float64
    _, analytic = twin.loss_and_gradients(X, y)
    theta = twin.state.theta
    offsets = _offsets(twin.get_weights())
    rng = np.random.default_rng(seed)

    def cost() -> float:
        return twin.evaluate(X, y)

    errors = []
    for grad in analytic:
        size = grad.size
        idx = np.arange(size) if size <= max_entries else rng.choice(size, max_entries, replace=False)
        start = offsets[len(errors)]
        worst = 0.0
        for i in idx:
            j = start + int(i)
            saved = theta[j]
            theta[j] = saved + eps
            up = cost()
            theta[j] = saved - eps
            down = cost()
            theta[j] = saved
            numeric = (up - down) / (2 * eps)
            a = float(grad.flat[i])
            worst = max(worst, abs(a - numeric) / max(abs(a), abs(numeric), 1e-6))
        errors.append(worst)
    return errors


@dataclass
class LayerTrace:
    """The chain-rule factors of one Dense layer, for the traced samples (rows).

    ``a_prev`` is ``dz/dW`` (the layer's input), ``z = a_prev @ W + b``, ``a = f(z)``,
    ``dC_da`` the cost's derivative with respect to ``a``, ``da_dz = f'(z)``,
    ``delta = dC_da * da_dz``, ``dC_dW = a_prev^T delta`` and ``dC_db = sum(delta)``.
    """

    index: int
    activation: str
    W: np.ndarray
    b: np.ndarray
    a_prev: np.ndarray
    z: np.ndarray
    a: np.ndarray
    dC_da: np.ndarray
    da_dz: np.ndarray
    delta: np.ndarray
    dC_dW: np.ndarray
    dC_db: np.ndarray

    @property
    def dz_dW(self) -> np.ndarray:
        """The weighted sum's derivative with respect to the weights: the previous activation."""
        return self.a_prev

    def __repr__(self) -> str:
        fmt = {"float_kind": lambda v: f"{v: .6g}"}
        parts = [f"layer {self.index} (Dense, {self.activation}): z = a_prev @ W + b, a = {self.activation}(z)"]
        for name in ("a_prev", "z", "a", "dC_da", "da_dz", "delta", "dC_dW", "dC_db"):
            label = {"a_prev": "a_prev (= dz/dW)", "dC_da": "dC/da (cost)", "da_dz": "da/dz (activation)",
                     "dC_dW": "dC/dW = a_prev^T delta", "dC_db": "dC/db = sum(delta)"}.get(name, name)  # fmt: skip
            text = np.array2string(getattr(self, name), formatter=fmt, max_line_width=100)
            parts.append(f"  {label}:\n    " + text.replace("\n", "\n    "))
        return "\n".join(parts)


@dataclass
class BackpropTrace:
    """Result of :func:`backprop_trace`: the loss and one :class:`LayerTrace` per layer."""

    loss: float
    loss_name: str
    layers: list[LayerTrace] = field(default_factory=list)

    def __repr__(self) -> str:
        head = f"BackpropTrace: loss ({self.loss_name}) = {self.loss:.6g}, {len(self.layers)} layers, output last"
        return head + "\n" + "\n".join(repr(layer) for layer in self.layers)


def backprop_trace(model: Sequential, X: object, y: object) -> BackpropTrace:
    """Every factor of the chain rule, layer by layer, for the samples ``(X, y)``.

    Computed in float64 on a copy of the model's weights (Dropout off), with the same
    kernels as training: the loss kernel gives ``dC/da`` of the output layer (the cost is
    the mean over the samples, as in ``fit``), the activation kernel gives ``da/dz``.
    ``dC_dW``/``dC_db`` equal ``loss_and_gradients`` (summed over the samples).

    For teaching, and for debugging a net that does not learn: a layer whose ``da_dz`` is
    all zeros (dead relus) or tiny (saturated sigmoids) passes no gradient down.

    Returns
    -------
    BackpropTrace
        ``trace.layers[l]`` for Dense layer ``l`` (output last); print it to read it.
    """
    twin = _float64_copy(model)
    X, yi, yf, _ = twin.check_inputs(_network_input(model, X), y)
    acts = [activation_code(layer.activation) for layer in twin.dense_layers]
    loss = LOSSES[twin.loss]
    weights = twin.get_weights()
    n = X.shape[0]
    k = twin.n_outputs
    inputs, zs, outs = [], [], []
    h = X.to_dense() if is_sparse(X) else X  # the trace holds every layer's input as an array
    with compute_threads():
        for l in range(len(twin.dense_layers)):
            W, b = weights[2 * l], weights[2 * l + 1]
            z = np.empty((n, W.shape[1]))
            a = np.empty_like(z)
            np.dot(h, W, out=z)
            apply_forward(z, b, acts[l], a)
            inputs.append(h)
            zs.append(z)
            outs.append(a)
            h = a
        count = n if loss == CROSS_ENTROPY else n * k
        g = np.empty_like(h)
        total = loss_grad(h, yi, yf, np.zeros(0), loss, 1.0 / count, g)
        trace = BackpropTrace(loss=float(total / count), loss_name=twin.loss)
        dC_da = g
        for l in range(len(twin.dense_layers) - 1, -1, -1):
            layer = twin.dense_layers[l]
            da_dz = np.ones_like(zs[l])
            apply_backward(da_dz, outs[l], zs[l], acts[l])  # ones * f'(z)
            delta = dC_da * da_dz
            W = weights[2 * l]
            trace.layers.insert(0, LayerTrace(
                index=l, activation=layer.activation, W=W, b=weights[2 * l + 1], a_prev=inputs[l], z=zs[l],
                a=outs[l], dC_da=dC_da, da_dz=da_dz, delta=delta, dC_dW=inputs[l].T @ delta,
                dC_db=delta.sum(axis=0),
            ))  # fmt: skip
            dC_da = delta @ W.T
    return trace
