"""``Sequential``: the public model. Validation, planning and orchestration live here;
every number is computed by the compiled kernels in ``fastbp.kernels``."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from . import _config
from ._threads import compute_threads
from ._validation import check_dtype, check_int, check_labels, check_targets, check_X
from .kernels import engine
from .kernels.activations import NEEDS_Z
from .kernels.losses import BINARY_CROSS_ENTROPY, CROSS_ENTROPY, LOSSES
from .kernels.optim import N_COEF, reduce_partials
from .layers import Dense
from .metrics import check_metrics
from .optimizers import Optimizer, get_optimizer


@dataclass
class History:
    """What ``fit`` returns: ``history["loss"]`` is one mean training loss per epoch."""

    history: dict[str, list[float]] = field(default_factory=lambda: {"loss": []})
    epoch: list[int] = field(default_factory=list)


@dataclass
class _Plan:
    """The network as data for the kernels: sizes, codes and offsets into flat arrays."""

    sizes: np.ndarray  # (L+1,) int64: n_features, units of each layer
    acts: np.ndarray  # (L,) int64 activation codes
    woff: np.ndarray  # (L,) offset of each weight matrix in theta
    boff: np.ndarray  # (L,) offset of each bias vector in theta
    coff: np.ndarray  # (L+1,) running sum of layer widths (work-buffer layout)
    n_weights: int  # weights come first in theta: weight decay covers theta[:n_weights]
    n_params: int
    needs_z: bool

    @classmethod
    def for_layers(cls, n_features: int, layers: Sequence[Dense]) -> _Plan:
        sizes = np.array([n_features] + [layer.units for layer in layers], dtype=np.int64)
        w_sizes = sizes[:-1] * sizes[1:]
        n_weights = int(w_sizes.sum())
        woff = np.concatenate([[0], np.cumsum(w_sizes)[:-1]]).astype(np.int64)
        boff = (n_weights + np.concatenate([[0], np.cumsum(sizes[1:])[:-1]])).astype(np.int64)
        acts = np.array([layer._act for layer in layers], dtype=np.int64)
        return cls(
            sizes=sizes,
            acts=acts,
            woff=woff,
            boff=boff,
            coff=np.concatenate([[0], np.cumsum(sizes[1:])]).astype(np.int64),
            n_weights=n_weights,
            n_params=n_weights + int(sizes[1:].sum()),
            needs_z=any(int(a) in NEEDS_Z for a in acts),
        )

    def net(self) -> tuple:
        return self.sizes, self.acts, self.woff, self.boff, self.coff


class Sequential:
    """A stack of :class:`Dense` layers trained by backpropagation.

    Parameters
    ----------
    layers : list of Dense
        The layers in order. The input size is taken from the first layer's ``input_dim``,
        or from ``X`` at the first ``fit``/``predict``.
    loss : str
        ``"cross_entropy"`` (softmax; integer labels 0..k-1), ``"binary_cross_entropy"``
        (sigmoid; 0/1 targets, one or several outputs), ``"mse"`` or ``"huber"`` (delta 1).
        Each is a mean over its elements: cross-entropy over samples, the others over all
        n*k outputs. The last layer should be linear; the loss applies the link.
    optimizer : str or Optimizer, default="adam"
        ``"sgd"``, ``"adam"``, ``"adamw"``, ``"rmsprop"`` (default settings) or an instance.
    seed : int or None, default=None
        Seeds weight initialisation and shuffling. The same seed and thread count give
        bit-identical weights after ``fit``.
    dtype : {"float32", "float64"}, default="float32"
        Dtype of parameters and computation; inputs are converted to it.
    metrics : list of str, optional
        Extra values recorded per epoch in ``History.history`` (and ``val_`` + name on
        validation data): ``"accuracy"`` (classification losses), ``"mae"``, ``"mse"``.

    Examples
    --------
    >>> import numpy as np, fastbp as fb
    >>> X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    >>> y = np.array([0, 1, 1, 0])
    >>> model = fb.Sequential([fb.Dense(8, activation="tanh"), fb.Dense(2)],
    ...                       loss="cross_entropy", optimizer=fb.Adam(lr=0.05), seed=0)
    >>> history = model.fit(X, y, epochs=200, batch_size=4)
    >>> model.predict(X).argmax(axis=1)
    array([0, 1, 1, 0])
    """

    def __init__(
        self,
        layers: Sequence[Dense] | None = None,
        loss: str | None = None,
        optimizer: str | Optimizer = "adam",
        seed: int | None = None,
        dtype: str | np.dtype = "float32",
        metrics: Sequence[str] | None = None,
    ) -> None:
        if loss is None:
            raise ValueError(f"loss is required: one of {sorted(LOSSES)}")
        if not isinstance(loss, str) or loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; expected one of {sorted(LOSSES)}")
        self.loss = loss
        self._loss = LOSSES[loss]
        self.optimizer = get_optimizer(optimizer)
        if seed is not None:
            seed = check_int(seed, "seed", minimum=0)
        self.seed = seed
        self.dtype = check_dtype(dtype)
        self.metrics = check_metrics(metrics, loss)
        self.layers: list[Dense] = []
        for layer in layers or []:
            self.add(layer)
        self._rng = np.random.default_rng(seed)
        self._plan: _Plan | None = None
        self._theta: np.ndarray | None = None
        self._m: np.ndarray | None = None
        self._v: np.ndarray | None = None
        self._step = 0
        self._workspace: dict | None = None

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict:
        """Pickle without work buffers, and without the layers' weight views (their data is
        in ``_theta``; :meth:`__setstate__` re-binds them), so each number is stored once."""
        state = self.__dict__.copy()
        state["_workspace"] = None
        layers = []
        for layer in self.layers:
            layer = copy.copy(layer)
            layer.w = layer.b = None
            layers.append(layer)
        state["layers"] = layers
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self._plan is not None:
            self._bind_layers()

    def _bind_layers(self) -> None:
        """Point each layer's ``w``/``b`` at its slice of ``_theta``."""
        for layer, W, b in zip(self.layers, *[iter(self._unflatten(self._theta))] * 2):
            layer._bind(W, b)

    # ------------------------------------------------------------------ container
    def add(self, layer: Dense) -> None:
        """Append a layer (only before the model is built)."""
        if not isinstance(layer, Dense):
            raise TypeError(f"layers must be Dense instances, got {type(layer).__name__}: {layer!r}")
        if getattr(self, "_plan", None) is not None:
            raise RuntimeError("cannot add a layer to a built model")
        if layer.built:
            raise ValueError(f"{layer!r} already belongs to a built model; create a new Dense")
        self.layers.append(layer)

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Dense]:
        return iter(self.layers)

    def __getitem__(self, index: int | slice) -> Dense | list[Dense]:
        return self.layers[index]

    def __repr__(self) -> str:
        inner = "".join(f"\n  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential(loss={self.loss!r}, optimizer={self.optimizer!r}, dtype={self.dtype.name}){inner}"

    # ------------------------------------------------------------------ building
    @property
    def built(self) -> bool:
        return self._plan is not None

    @property
    def n_features(self) -> int | None:
        """Input width: known once built, or from the first layer's ``input_dim``."""
        if self._plan is not None:
            return int(self._plan.sizes[0])
        return self.layers[0].input_dim if self.layers else None

    @property
    def n_outputs(self) -> int:
        return self.layers[-1].units

    def count_params(self) -> int:
        """Number of trainable parameters (0 before the model is built)."""
        return 0 if self._plan is None else self._plan.n_params

    def build(self, n_features: int) -> None:
        """Allocate and initialise all parameters for inputs of width ``n_features``."""
        n_features = check_int(n_features, "n_features")
        if self._plan is not None:
            if n_features != self._plan.sizes[0]:
                raise ValueError(f"model is built for {self._plan.sizes[0]} features, got {n_features}")
            return
        self._require_layers()
        first = self.layers[0].input_dim
        if first is not None and first != n_features:
            raise ValueError(f"the first layer has input_dim={first}, but X has {n_features} features")
        plan = _Plan.for_layers(n_features, self.layers)
        theta = np.zeros(plan.n_params, dtype=self.dtype)
        for layer, (n_in, n_out), wo, bo in zip(
            self.layers, zip(plan.sizes[:-1], plan.sizes[1:]), plan.woff, plan.boff
        ):
            layer._bind(theta[wo : wo + n_in * n_out].reshape(n_in, n_out), theta[bo : bo + n_out])
            layer.reset_parameters(self._rng)
        opt = self.optimizer
        self._m = np.zeros(plan.n_params if opt.uses_m else 0, dtype=self.dtype)
        self._v = np.zeros(plan.n_params if opt.uses_v else 0, dtype=self.dtype)
        self._theta = theta
        self._plan = plan

    def _require_layers(self) -> None:
        if not self.layers:
            raise ValueError("the model has no layers; pass layers=[fb.Dense(...), ...]")

    def _ensure_built(self, n_features: int) -> None:
        if self._plan is None:
            self.build(n_features)

    # ------------------------------------------------------------------ validation
    def _check_X(self, X: object) -> np.ndarray:
        self._require_layers()
        return check_X(X, self.dtype, self.n_features)

    def _check_y(self, y: object, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
        """(yi, yf) for the kernels: labels for cross-entropy, float targets otherwise."""
        k = self.n_outputs
        if self._loss == CROSS_ENTROPY:
            if k < 2:
                raise ValueError("cross_entropy needs a last layer with at least 2 units (one per class)")
            return check_labels(y, n_samples, k), np.zeros((0, k), dtype=self.dtype)
        yf = check_targets(y, n_samples, k, self.dtype, unit_interval=self._loss == BINARY_CROSS_ENTROPY)
        return np.zeros(0, dtype=np.int64), yf

    # ------------------------------------------------------------------ training
    def _workspace_for(self, rows: int, n_threads: int) -> dict:
        """Work buffers for batches of up to ``rows`` rows, reused across fit calls."""
        ws = self._workspace
        if ws is not None and ws["rows"] == rows and ws["threads"] == n_threads:
            return ws
        plan = self._plan
        width = int(plan.coff[-1])
        k = self.n_outputs
        dt = self.dtype
        ws = {
            "rows": rows,
            "threads": n_threads,
            "xb": np.empty((rows, int(plan.sizes[0])), dtype=dt),
            "ybi": np.zeros(rows if self._loss == CROSS_ENTROPY else 0, dtype=np.int64),
            "ybf": np.zeros((0 if self._loss == CROSS_ENTROPY else rows, k), dtype=dt),
            "abuf": np.empty(rows * width, dtype=dt),
            "zbuf": np.empty(rows * width if plan.needs_z else 0, dtype=dt),
            "gbuf": np.empty(rows * width, dtype=dt),
            "gpart": np.empty((n_threads, plan.n_params), dtype=dt),
            "lpart": np.zeros(n_threads, dtype=np.float64),
            "coef": np.zeros(N_COEF, dtype=dt),
        }
        self._workspace = ws
        return ws

    def fit(
        self, X: object, y: object, epochs: int = 1, batch_size: int = 32, shuffle: bool = True,
        verbose: int = 0,
    ) -> History:  # fmt: skip
        """Train by mini-batch backpropagation; continues from the current weights.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like
            Integer labels of shape (n_samples,) for ``cross_entropy``; float targets of
            shape (n_samples, k) (or (n_samples,) when k == 1) for the other losses.
        epochs : int, default=1
        batch_size : int, default=32
            The last batch of an epoch holds the remainder.
        shuffle : bool, default=True
            Visit the rows in a new seeded random order each epoch (batches are gathered
            by index: the data set is never copied).
        verbose : int, default=0
            1 or more prints one line per epoch.

        Returns
        -------
        History
            ``history.history["loss"]``: the mean training loss of each epoch, averaged
            over samples (each batch's mean loss weighted by its size).
        """
        # validate everything before touching the model
        X = self._check_X(X)
        yi, yf = self._check_y(y, X.shape[0])
        epochs = check_int(epochs, "epochs")
        batch_size = check_int(batch_size, "batch_size")
        if not isinstance(shuffle, bool):
            raise TypeError(f"shuffle must be a bool, got {shuffle!r}")
        verbose = check_int(verbose, "verbose", minimum=0)

        self._ensure_built(X.shape[1])
        plan = self._plan
        n = X.shape[0]
        rows = min(batch_size, n)
        hyper = np.array(self.optimizer._hyper(), dtype=np.float64)
        history = History()
        with compute_threads() as n_threads:
            ws = self._workspace_for(rows, n_threads)
            for epoch in range(epochs):
                order = self._rng.permutation(n) if shuffle else np.arange(n)
                loss, self._step = engine.train_epoch(
                    X, yi, yf, order, rows, n_threads, _config.MIN_ROWS_PER_BLOCK, self._theta,
                    *plan.net(), self._loss, self.optimizer.code, hyper, self._step, self._m,
                    self._v, ws["coef"], plan.n_weights, ws["xb"], ws["ybi"], ws["ybf"], ws["abuf"],
                    ws["zbuf"], ws["gbuf"], ws["gpart"], ws["lpart"],
                )  # fmt: skip
                history.history["loss"].append(float(loss))
                history.epoch.append(epoch)
                if verbose:
                    print(f"epoch {epoch + 1}/{epochs} - loss: {loss:.6g}")
        return history

    # ------------------------------------------------------------------ inference
    def _forward(self, X: np.ndarray, link: bool) -> np.ndarray:
        plan = self._plan
        n = X.shape[0]
        chunk = _config.PREDICT_CHUNK
        width = int(plan.coff[-1])
        out = np.empty((n, self.n_outputs), dtype=self.dtype)
        with compute_threads() as n_threads:
            nb = engine.n_blocks(n, n_threads, _config.MIN_ROWS_PER_BLOCK)
            # allocated per call, so concurrent predict calls never share buffers
            abuf = np.empty(nb * chunk * width, dtype=self.dtype)
            zbuf = np.empty(nb * chunk * width if plan.needs_z else 0, dtype=self.dtype)
            engine.forward(X, self._theta, *plan.net(), nb, chunk, abuf, zbuf, link, self._loss, out)
        return out

    def predict(self, X: object) -> np.ndarray:
        """Network output through the loss's link, shape (n_samples, k).

        Class probabilities for ``cross_entropy`` (rows sum to 1), sigmoid probabilities
        for ``binary_cross_entropy``, raw outputs for ``mse``/``huber``.
        """
        X = self._check_X(X)
        self._ensure_built(X.shape[1])
        return self._forward(X, link=True)

    def evaluate(self, X: object, y: object) -> float:
        """Mean loss on (X, y), reduced as in training; no parameter change."""
        X = self._check_X(X)
        yi, yf = self._check_y(y, X.shape[0])
        self._ensure_built(X.shape[1])
        out = self._forward(X, link=False)
        n = X.shape[0]
        with compute_threads() as n_threads:
            nb = engine.n_blocks(n, n_threads, _config.MIN_ROWS_PER_BLOCK)
            total = engine.loss_sum(out, yi, yf, self._loss, nb, np.zeros(nb))
        count = n if self._loss == CROSS_ENTROPY else n * self.n_outputs
        return float(total / count)

    def loss_and_gradients(self, X: object, y: object) -> tuple[float, list[np.ndarray]]:
        """Mean loss and its gradient on (X, y) as one batch; parameters are unchanged.

        Returns
        -------
        loss : float
        grads : list of ndarray
            ``[dW0, db0, dW1, db1, ...]``, the same order and shapes as ``get_weights()``.
        """
        X = self._check_X(X)
        yi, yf = self._check_y(y, X.shape[0])
        self._ensure_built(X.shape[1])
        plan = self._plan
        n = X.shape[0]
        width = int(plan.coff[-1])
        dt = self.dtype
        k = self.n_outputs
        with compute_threads() as n_threads:
            nb = engine.n_blocks(n, n_threads, _config.MIN_ROWS_PER_BLOCK)
            gpart = np.empty((nb, plan.n_params), dtype=dt)
            lpart = np.zeros(nb)
            engine.batch_gradients(
                X, yi, yf, np.arange(n), self._theta, *plan.net(), self._loss, nb,
                np.empty_like(X), np.zeros(n if self._loss == CROSS_ENTROPY else 0, dtype=np.int64),
                np.zeros((0 if self._loss == CROSS_ENTROPY else n, k), dtype=dt),
                np.empty(n * width, dtype=dt), np.empty(n * width if plan.needs_z else 0, dtype=dt),
                np.empty(n * width, dtype=dt), gpart, lpart,
            )  # fmt: skip
            grad = np.empty(plan.n_params, dtype=dt)
            reduce_partials(gpart, nb, grad)
        count = n if self._loss == CROSS_ENTROPY else n * k
        return float(lpart.sum() / count), self._unflatten(grad)

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike) -> None:
        """Write the model (architecture, weights, optimizer state) to ``path``; see
        :func:`fastbp.load` and ``fastbp.io`` for the format (never pickled)."""
        from .io import save_model

        save_model(self, path)

    # ------------------------------------------------------------------ weights
    def _unflatten(self, flat: np.ndarray) -> list[np.ndarray]:
        plan = self._plan
        out = []
        for n_in, n_out, wo, bo in zip(plan.sizes[:-1], plan.sizes[1:], plan.woff, plan.boff):
            out.append(flat[wo : wo + n_in * n_out].reshape(n_in, n_out))
            out.append(flat[bo : bo + n_out])
        return out

    def get_weights(self) -> list[np.ndarray]:
        """Copies of ``[W0, b0, W1, b1, ...]``; W has shape (n_in, n_out). [] if unbuilt."""
        if self._plan is None:
            return []
        return [p.copy() for p in self._unflatten(self._theta)]

    def set_weights(self, weights: Sequence[object]) -> None:
        """Set all parameters from ``[W0, b0, W1, b1, ...]`` (as ``get_weights`` returns).

        Every array is checked (count, shapes, finite values) before any is copied, so a
        rejected call changes nothing. An unbuilt model is built from ``W0``'s shape.
        """
        self._require_layers()
        if isinstance(weights, str | bytes | np.ndarray) or not isinstance(weights, Sequence):
            raise TypeError(f"weights must be a list of arrays, got {type(weights).__name__}")
        L = len(self.layers)
        if len(weights) != 2 * L:
            raise ValueError(f"weights must hold {2 * L} arrays (W and b for {L} layers), got {len(weights)}")
        arrays = [np.asarray(w) for w in weights]
        n_features = self.n_features
        if n_features is None:
            if arrays[0].ndim != 2:
                raise ValueError(f"weights[0] must be 2-D (n_in, n_out), got shape {arrays[0].shape}")
            n_features = arrays[0].shape[0]
        sizes = [n_features] + [layer.units for layer in self.layers]
        checked = []
        for i, arr in enumerate(arrays):
            l = i // 2
            shape = (sizes[l], sizes[l + 1]) if i % 2 == 0 else (sizes[l + 1],)
            if arr.shape != shape:
                raise ValueError(f"weights[{i}] must have shape {shape}, got {arr.shape}")
            if arr.dtype.kind not in "biuf":
                raise TypeError(f"weights[{i}] must hold real numbers, got dtype {arr.dtype}")
            arr = arr.astype(self.dtype)
            if not np.isfinite(arr).all():
                raise ValueError(f"weights[{i}] contains NaN or infinity")
            checked.append(arr)
        self._ensure_built(n_features)
        for dst, src in zip(self._unflatten(self._theta), checked):
            dst[...] = src
