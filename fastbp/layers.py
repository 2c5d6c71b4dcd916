"""Layers: thin objects holding configuration and views of the model's parameters."""

from __future__ import annotations

import math
import numbers

import numpy as np

from ._validation import check_float, check_int
from .kernels.activations import RELU_LIKE, activation_code

KERNEL_INITS = ("auto", "he_uniform", "glorot_uniform", "he_normal", "glorot_normal")


class Dense:
    """Fully connected layer: ``z = x @ W + b``, ``a = activation(z)``.

    ``W`` has shape ``(n_in, n_out)``, as in Keras and scikit-learn's ``coefs_`` (PyTorch's
    ``Linear.weight`` is the transpose, ``(out, in)``).

    Parameters
    ----------
    units : int
        Number of outputs ``n_out``.
    activation : str or None, default=None
        One of ``identity`` (same as None), ``sigmoid``, ``tanh``, ``relu``,
        ``leaky_relu`` (slope 0.01), ``elu`` (alpha 1), ``gelu`` (exact erf form, PyTorch's
        default), ``softplus``, ``silu``. In float32, ``tanh`` is computed in float32
        arithmetic that vectorises (within 1.07 ulp). Leave the last layer linear: the loss applies
        its own link (softmax for ``cross_entropy``, sigmoid for ``binary_cross_entropy``).
    kernel_init : str, default="auto"
        ``"auto"`` is He uniform (limit ``sqrt(6 / n_in)``) for relu-like activations
        (relu, leaky_relu, elu, gelu, silu) and Glorot uniform (limit
        ``sqrt(6 / (n_in + n_out))``) for the rest. Also ``"he_uniform"``,
        ``"glorot_uniform"``, ``"he_normal"`` (std ``sqrt(2 / n_in)``),
        ``"glorot_normal"`` (std ``sqrt(2 / (n_in + n_out))``). Drawn from the model's
        seeded generator.
    bias_init : "zeros" or float, default="zeros"
        Initial value of every bias.
    input_dim : int, optional
        Number of inputs ``n_in``; inferred from ``X`` at the first ``fit`` if omitted.

    Attributes
    ----------
    w : ndarray of shape (n_in, n_out) or None
        Weights, a view into the model's parameter array (None until built).
    b : ndarray of shape (n_out,) or None
        Biases (None until built).

    Examples
    --------
    >>> import fastbp as fb
    >>> fb.Dense(256, activation="relu", input_dim=784)
    Dense(784 → 256, relu)
    """

    def __init__(
        self,
        units: int,
        activation: str | None = None,
        kernel_init: str = "auto",
        bias_init: str | float = "zeros",
        input_dim: int | None = None,
    ) -> None:
        self.units = check_int(units, "units")
        self.activation = "identity" if activation is None else activation
        self._act = activation_code(activation)
        if kernel_init not in KERNEL_INITS:
            raise ValueError(f"kernel_init must be one of {list(KERNEL_INITS)}, got {kernel_init!r}")
        self.kernel_init = kernel_init
        if not (bias_init == "zeros" or (isinstance(bias_init, numbers.Real) and not isinstance(bias_init, bool)
                                          and math.isfinite(bias_init))):
            raise ValueError(f"bias_init must be 'zeros' or a finite float, got {bias_init!r}")
        self.bias_init = bias_init
        self.input_dim = None if input_dim is None else check_int(input_dim, "input_dim")
        self.w: np.ndarray | None = None
        self.b: np.ndarray | None = None

    @property
    def built(self) -> bool:
        return self.w is not None

    def _bind(self, w: np.ndarray, b: np.ndarray) -> None:
        """Attach parameter views (called by the model when it builds)."""
        self.input_dim = w.shape[0]
        self.w = w
        self.b = b

    def reset_parameters(self, rng: np.random.Generator) -> None:
        """Re-draw the weights from ``kernel_init`` and reset the biases, in place."""
        if self.w is None:
            raise RuntimeError("Dense.reset_parameters: the layer is not built yet")
        n_in, n_out = self.w.shape
        scheme = self.kernel_init
        if scheme == "auto":
            scheme = "he_uniform" if self._act in RELU_LIKE else "glorot_uniform"
        fan = n_in if scheme.startswith("he") else n_in + n_out
        if scheme.endswith("uniform"):
            limit = math.sqrt(6.0 / fan)
            self.w[...] = rng.uniform(-limit, limit, size=(n_in, n_out))
        else:
            self.w[...] = rng.normal(0.0, math.sqrt(2.0 / fan), size=(n_in, n_out))
        self.b[...] = 0.0 if self.bias_init == "zeros" else float(self.bias_init)

    def get_config(self) -> dict:
        """The ``__init__`` arguments: ``Dense(**layer.get_config())`` rebuilds it unbuilt."""
        return {
            "units": self.units,
            "activation": self.activation,
            "kernel_init": self.kernel_init,
            "bias_init": self.bias_init,
            "input_dim": self.input_dim,
        }

    def __repr__(self) -> str:
        n_in = "?" if self.input_dim is None else self.input_dim
        return f"Dense({n_in} → {self.units}, {self.activation})"


class Dropout:
    """Inverted dropout: during ``fit``, each unit of the previous layer's output (or of the
    input, as the first layer) is zeroed with probability ``rate`` and the kept ones scaled
    by ``1 / (1 - rate)``; in ``predict``, ``evaluate`` and ``loss_and_gradients`` it does
    nothing.

    The masks are drawn from the model's seed, and the same seed gives the same masks
    whatever the thread count (see ``fastbp.kernels.dropout``). It runs inside the compiled
    training step, fused with the layer it follows (measured: no visible cost per epoch). A
    model may not end with Dropout.

    Parameters
    ----------
    rate : float in [0, 1)
        Fraction of units dropped.

    Examples
    --------
    >>> import fastbp as fb
    >>> fb.Dropout(0.5)
    Dropout(0.5)
    """

    def __init__(self, rate: float) -> None:
        self.rate = check_float(rate, "rate", 0.0, 1.0, high_open=True)

    #: Dropout has no parameters: it never belongs to a model in the Dense sense.
    built = False

    def get_config(self) -> dict:
        """The ``__init__`` arguments."""
        return {"rate": self.rate}

    def __repr__(self) -> str:
        return f"Dropout({self.rate})"


class Normalization:
    """Standardise each input feature, ``(x - mean) / sqrt(variance)``, as Keras'
    ``Normalization`` layer: the first layer of a model, so that the model (and its file,
    and its ONNX export) takes raw features.

    The statistics are given, or learned from data by :meth:`adapt` (per column, over the
    rows; the population variance, as scikit-learn's ``StandardScaler``). A column of
    variance 0 is only centred (divided by 1). It has no trainable parameters: ``fit``
    leaves it as it is, and ``get_weights`` does not list it. The input is standardised in
    the model's dtype once per call, at the API boundary (a copy of ``X``); sparse input
    would lose its zeros, so it takes dense ``X`` only.

    Parameters
    ----------
    mean, variance : sequence of float, optional
        One value per feature (variance >= 0); both or neither. Without them, call
        :meth:`adapt` before the model's first ``fit`` or ``predict``.

    Examples
    --------
    >>> import numpy as np, fastbp as fb
    >>> norm = fb.Normalization()
    >>> norm.adapt(np.array([[1.0, 10.0], [3.0, 10.0]]))
    Normalization(2 features)
    >>> norm.mean.tolist(), norm.variance.tolist()
    ([2.0, 10.0], [1.0, 0.0])
    """

    def __init__(self, mean: object = None, variance: object = None) -> None:
        if (mean is None) != (variance is None):
            raise ValueError("Normalization needs both mean and variance, or neither (then call adapt(X))")
        self.mean: np.ndarray | None = None
        self.variance: np.ndarray | None = None
        if mean is not None:
            self._set(mean, variance)

    #: No trainable parameters: never "belongs" to a model as a Dense layer does.
    built = False

    def _set(self, mean: object, variance: object) -> None:
        m = np.asarray(mean, dtype=np.float64)
        v = np.asarray(variance, dtype=np.float64)
        if m.ndim != 1 or m.shape != v.shape or m.shape[0] == 0:
            raise ValueError(f"mean and variance must be 1-D with one value per feature, got shapes "
                             f"{m.shape} and {v.shape}")  # fmt: skip
        if not (np.isfinite(m).all() and np.isfinite(v).all()) or (v < 0).any():
            raise ValueError("mean must be finite and variance finite and >= 0")
        self.mean, self.variance = m, v

    @property
    def adapted(self) -> bool:
        return self.mean is not None

    @property
    def input_dim(self) -> int | None:
        return None if self.mean is None else int(self.mean.shape[0])

    def adapt(self, X: object) -> Normalization:
        """Learn ``mean`` and ``variance`` of each column of ``X`` (2-D, finite; float64
        arithmetic). Returns the layer."""
        from ._validation import check_X

        arr = check_X(X, np.dtype(np.float64), name="X")
        if not isinstance(arr, np.ndarray):
            raise TypeError("Normalization.adapt needs dense X: standardising would fill in a sparse matrix's zeros")
        self._set(arr.mean(axis=0), arr.var(axis=0))
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """``(X - mean) / std`` in ``X``'s dtype (std 1 where the variance is 0), as a new
        array; ``X`` is a validated 2-D array of the model's width."""
        if self.mean is None:
            raise ValueError("the Normalization layer has no statistics: call its adapt(X_train) first")
        mean, std = self.scale(X.dtype)
        out = X - mean
        out /= std
        return out

    def scale(self, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) in ``dtype``, the constants :meth:`transform` (and ONNX) use."""
        std = np.sqrt(self.variance)
        std[std == 0] = 1.0
        return self.mean.astype(dtype), std.astype(dtype)

    def get_config(self) -> dict:
        """The ``__init__`` arguments (plain lists: a model file's JSON holds them exactly)."""
        if self.mean is None:
            return {"mean": None, "variance": None}
        return {"mean": self.mean.tolist(), "variance": self.variance.tolist()}

    def __repr__(self) -> str:
        return "Normalization(not adapted)" if self.mean is None else f"Normalization({self.mean.shape[0]} features)"


#: Layer classes a model may hold (model files name them from this registry only).
LAYERS: dict[str, type] = {"Dense": Dense, "Dropout": Dropout, "Normalization": Normalization}
