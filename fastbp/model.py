"""``Sequential``: the public model. Validation, planning and orchestration live here;
every number is computed by the compiled kernels in ``fastbp.kernels``."""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numba
import numpy as np

from . import _config, _plan, _precompile, _threads
from ._plan import Plan
from ._threads import compute_threads
from ._training import (
    Progress,
    TrainingDivergedError,
    class_weight_rows,
    split_validation,
)
from ._validation import (
    _as_array,
    _convert,
    check_dtype,
    check_float,
    check_int,
    check_labels,
    check_sample_weight,
    check_targets,
    check_X,
)
from .callbacks import Callback
from .kernels import columns, engine
from .kernels import losses as _losses
from .kernels.dense import column_sums_address
from .kernels.losses import BINARY_CROSS_ENTROPY, CROSS_ENTROPY, LOSSES, POISSON, link_, loss_kernels
from .kernels.optim import N_COEF, reduce_partials
from .kernels.sparse import CSR, is_sparse, take_rows
from .layers import Dense, Dropout, Normalization
from .metrics import METRICS, check_metrics
from .optimizers import Optimizer, get_optimizer
from .state import Inputs, TrainingState


@dataclass(frozen=True)
class LBFGSResult:
    """What :meth:`Sequential.fit_lbfgs` did."""

    loss: float  #: the objective at the final weights (mean loss + the L2 term)
    n_iter: int  #: L-BFGS iterations
    n_fun: int  #: objective evaluations (each one forward + backward pass over all rows)
    converged: bool  #: False when max_iter or max_fun ran out first
    message: str  #: SciPy's reason for stopping
    status: int  #: SciPy's status code (0: converged)


@dataclass
class History:
    """What ``fit`` returns (also kept as ``model.history``).

    ``history`` maps each logged value to one number per epoch: ``loss`` (mean training
    loss), each metric by name, ``val_loss`` and ``val_`` + each metric when there is
    validation data, and ``lr`` (the learning rate used). ``epoch`` lists the epoch
    indices.
    """

    history: dict[str, list[float]] = field(default_factory=lambda: {"loss": []})
    epoch: list[int] = field(default_factory=list)

    def append(self, epoch: int, logs: dict[str, float]) -> None:
        self.epoch.append(epoch)
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)


def _bytes(arr: object) -> object:
    """A float array as the kernels' records hold it: its bytes (``arr.view(np.uint8)``, the
    same memory; see ``kernels/engine.py``), so one compiled driver serves every dtype. A
    sparse matrix (``kernels.sparse.CSR``) is passed as it is."""
    return arr.view(np.uint8) if isinstance(arr, np.ndarray) else arr


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
    >>> history = model.fit(X, y, epochs=200, batch_size=4, verbose=0)
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
        self.layers: list[Dense | Dropout] = []
        if layers is not None and not isinstance(layers, list | tuple):
            raise TypeError(f"layers must be a list of layers, got {type(layers).__name__}: {layers!r}")
        for layer in layers or []:
            self.add(layer)
        self._rng = np.random.default_rng(seed)
        self._plan: Plan | None = None
        self._theta: np.ndarray | None = None
        self._m: np.ndarray | None = None
        self._v: np.ndarray | None = None
        self._step = 0
        self._workspace: dict | None = None
        #: Batches per compiled call in ``fit`` (adapted to take about SEGMENT_SECONDS).
        self._segment_batches = 1
        #: Set True (e.g. from a callback) to stop ``fit`` after the current epoch.
        self.stop_training = False
        self.history: History | None = None

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict:
        """Pickle without work buffers, and without the layers' weight views (their data is
        in ``_theta``; :meth:`__setstate__` re-binds them), so each number is stored once."""
        state = self.__dict__.copy()
        state["_workspace"] = None
        layers = []
        for layer in self.layers:
            layer = copy.copy(layer)
            if isinstance(layer, Dense):
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
        for layer, W, b in zip(self.dense_layers, *[iter(self._unflatten(self._theta))] * 2):
            layer._bind(W, b)

    # ------------------------------------------------------------------ container
    def add(self, layer: Dense | Dropout | Normalization) -> None:
        """Append a layer (only before the model is built; a Normalization only first)."""
        if not isinstance(layer, Dense | Dropout | Normalization):
            raise TypeError(f"layers must be Dense, Dropout or Normalization instances, got {type(layer).__name__}: "
                            f"{layer!r}")  # fmt: skip
        if getattr(self, "_plan", None) is not None:
            raise RuntimeError("cannot add a layer to a built model")
        if isinstance(layer, Normalization) and self.layers:
            raise ValueError("a Normalization layer must be the model's first layer (it standardises the input)")
        if layer.built:
            raise ValueError(f"{layer!r} already belongs to a built model; create a new Dense")
        self.layers.append(layer)

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Dense]:
        return iter(self.layers)

    def __getitem__(self, index: int | slice) -> Dense | Dropout | list[Dense | Dropout]:
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
        dense = self.dense_layers
        first = dense[0].input_dim if dense else None
        norm = self.normalization
        return first if first is not None or norm is None else norm.input_dim

    @property
    def n_outputs(self) -> int:
        return self.dense_layers[-1].units

    @property
    def normalization(self) -> Normalization | None:
        """The first layer if it is a :class:`Normalization`, else None."""
        first = self.layers[0] if self.layers else None
        return first if isinstance(first, Normalization) else None

    @property
    def dense_layers(self) -> list[Dense]:
        """The layers with parameters, in order (``layers`` without the Dropouts)."""
        return [layer for layer in self.layers if isinstance(layer, Dense)]

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
        self.check_layers()
        first = self.dense_layers[0].input_dim
        if first is not None and first != n_features:
            raise ValueError(f"the first layer has input_dim={first}, but X has {n_features} features")
        norm = self.normalization
        if norm is not None and norm.adapted and norm.input_dim != n_features:
            raise ValueError(f"the Normalization layer has statistics for {norm.input_dim} features, but X has "
                             f"{n_features}")  # fmt: skip
        big = float(np.finfo(self.dtype).max)
        for layer in self.dense_layers:
            if layer.bias_init != "zeros" and abs(layer.bias_init) > big:
                raise ValueError(f"{layer!r}: bias_init={layer.bias_init!r} does not fit in {self.dtype.name}")
        plan = Plan.for_layers(n_features, self.layers)
        theta = np.zeros(plan.n_params, dtype=self.dtype)
        for layer, (n_in, n_out), wo, bo in zip(
            self.dense_layers, zip(plan.sizes[:-1], plan.sizes[1:]), plan.woff, plan.boff
        ):
            layer._bind(theta[wo : wo + n_in * n_out].reshape(n_in, n_out), theta[bo : bo + n_out])
            layer.reset_parameters(self._rng)
        opt = self.optimizer
        self._m = np.zeros(plan.n_params if opt.uses_m else 0, dtype=self.dtype)
        self._v = np.zeros(plan.n_params if opt.uses_v else 0, dtype=self.dtype)
        self._theta = theta
        self._plan = plan

    def check_layers(self) -> None:
        """Raise ValueError unless the layers make a network: at least one Dense layer, and
        a Dense layer last (its output feeds the loss)."""
        if not self.dense_layers:
            raise ValueError("the model has no Dense layers; pass layers=[fb.Dense(...), ...]")
        if isinstance(self.layers[-1], Dropout):
            raise ValueError("the model ends with Dropout; the last layer must be Dense (its output feeds the loss)")

    def _ensure_built(self, n_features: int) -> None:
        if self._plan is None:
            self.build(n_features)

    # ------------------------------------------------------------------ validation
    def _check_X(self, X: object, normalize: bool = True, name: str = "X",
                 n_features: int | None = None) -> np.ndarray | CSR:  # fmt: skip
        """``X`` validated and converted for the kernels (``check_X``), then standardised by
        the model's Normalization layer if it has one (``normalize``: the callers that pass
        the result on to ``fit`` validate only)."""
        self.check_layers()
        X = check_X(X, self.dtype, n_features or self.n_features, name=name)
        norm = self.normalization
        if normalize and norm is not None:
            if is_sparse(X):
                raise TypeError(f"{name} is sparse, but the model's first layer is a Normalization, which would "
                                "fill in its zeros: pass dense input, or use a model without it")  # fmt: skip
            if norm.adapted and norm.input_dim != X.shape[1]:
                raise ValueError(f"{name} has {X.shape[1]} features, but the Normalization layer has statistics "
                                 f"for {norm.input_dim}")  # fmt: skip
            X = norm.transform(X)
        return X

    def check_inputs(
        self, X: object, y: object = None, sample_weight: object = None, *, standardize: bool = True
    ) -> Inputs:  # fmt: skip
        """``X`` (and ``y``, ``sample_weight``) validated and converted as ``fit`` does, for
        code that validates once and trains or scores many times (Dask partitions, the
        diagnostics). With ``standardize`` the model's :class:`Normalization` layer, if any,
        is applied to ``X``; pass False when the result goes to ``fit``, which applies it.
        Raises as ``fit`` does on bad input."""
        X = self._check_X(X, normalize=standardize)
        if y is None:
            return Inputs(X, np.zeros(0, dtype=np.int64), np.zeros((0, self.n_outputs), dtype=self.dtype), None)
        yi, yf = self._check_y(y, X.shape[0])
        return Inputs(X, yi, yf, check_sample_weight(sample_weight, X.shape[0]))

    def _check_y(self, y: object, n_samples: int, name: str = "y") -> tuple[np.ndarray, np.ndarray]:
        """(yi, yf) for the kernels: labels for cross-entropy, float targets otherwise."""
        k = self.n_outputs
        if self._loss == CROSS_ENTROPY:
            if k < 2:
                raise ValueError("cross_entropy needs a last layer with at least 2 units (one per class)")
            return check_labels(y, n_samples, k, name=name), np.zeros((0, k), dtype=self.dtype)
        yf = check_targets(
            y, n_samples, k, self.dtype, name=name, unit_interval=self._loss == BINARY_CROSS_ENTROPY
        )  # fmt: skip
        if self._loss == POISSON and (yf < 0).any():
            raise ValueError(f"{name} must be >= 0 for the poisson loss (counts or rates)")
        return np.zeros(0, dtype=np.int64), yf

    def _loss_kernels(self, *modes: int) -> np.ndarray:
        """Addresses of this model's loss kernels in its dtype for ``modes`` (``losses.GRAD``
        etc.; this process only)."""
        return loss_kernels(self._loss, self.dtype, *modes)

    # ------------------------------------------------------------------ training state
    @property
    def state(self) -> TrainingState:
        """Parameters, optimizer state, step count and random generator (``fastbp.state``):
        the arrays and generator are the model's own, live; ``step`` is a snapshot."""
        return TrainingState(self._theta, self._m, self._v, self._step, self._rng)

    def set_state(self, state: TrainingState) -> None:
        """Load a :class:`~fastbp.state.TrainingState` (from :attr:`state` of this model or
        of one of the same architecture and optimizer): the arrays are copied in place, so
        the layers' ``w``/``b`` views stay linked; the generator is taken as it is. A state
        whose arrays do not fit raises ValueError and changes nothing."""
        if not isinstance(state, TrainingState):
            raise TypeError(f"state must be a TrainingState, got {type(state).__name__}")
        step = check_int(state.step, "state.step", minimum=0)
        if not isinstance(state.rng, np.random.Generator):
            raise TypeError(f"state.rng must be a numpy Generator, got {type(state.rng).__name__}")
        arrays = (("theta", self._theta, state.theta), ("m", self._m, state.m), ("v", self._v, state.v))
        for name, own, new in arrays:
            if own is None:
                if new is not None:
                    raise ValueError(f"state.{name} holds parameters, but the model is not built")
            elif not isinstance(new, np.ndarray) or new.shape != own.shape:
                got = getattr(new, "shape", type(new).__name__)
                raise ValueError(f"state.{name} must be an array of shape {own.shape}, got {got}")
        for _, own, new in arrays:
            if own is not None:
                own[...] = new
        self._step = step
        self._rng = state.rng

    # ------------------------------------------------------------------ training
    def _workspace_for(self, rows: int, n_threads: int, sparse: bool = False) -> dict:
        """Work buffers for batches of up to ``rows`` rows (``_plan.workspace``), reused
        across fit calls while the batch size, thread count and input kind stay."""
        ws = self._workspace
        plan, isz = self._plan, self.dtype.itemsize
        cols = not sparse and _plan.column_split(plan.sizes, rows, n_threads, isz)
        no_widths = np.zeros(len(plan.sizes) - 1, dtype=np.int64)  # the row split's
        widths = _plan.column_widths(plan.sizes, rows, n_threads, isz) if cols else no_widths
        iwidth = _plan.input_width(plan.sizes, rows, n_threads, isz) if cols else 0
        if (ws is not None and ws["rows"] == rows and ws["threads"] == n_threads and ws["cols"] == cols
                and ws["sparse"] == sparse and np.array_equal(ws["cwidth"], widths)
                and ws["iwidth"] == iwidth):  # fmt: skip
            return ws
        self._workspace = _plan.workspace(plan, rows, n_threads, sparse, cols, widths, iwidth,
                                          self._loss == CROSS_ENTROPY, self.n_outputs, self.dtype)  # fmt: skip
        return self._workspace

    def _run_workspace(self, ws: dict, run: int) -> dict:
        """The workspace for a segment of a fit on ``ws`` that runs ``run`` threads: ``ws``
        itself for its full thread count (or with :data:`_config.RUN_BLOCKS` off), else
        buffers for the same split cut into ``run`` threads' blocks, made once per count
        and kept with ``ws``. The split kind stays ``ws``'s, so the compiled bodies do too."""
        if run == ws["threads"] or not _config.RUN_BLOCKS:
            return ws
        wr = ws["runs"].get(run)
        if wr is None:
            plan, isz, rows, cols = self._plan, self.dtype.itemsize, ws["rows"], ws["cols"]
            widths = _plan.column_widths(plan.sizes, rows, run, isz) if cols else np.zeros_like(ws["cwidth"])
            iwidth = _plan.input_width(plan.sizes, rows, run, isz) if cols else 0
            wr = ws["runs"][run] = _plan.workspace(plan, rows, run, ws["sparse"], cols, widths, iwidth,
                                                   self._loss == CROSS_ENTROPY, self.n_outputs, self.dtype)  # fmt: skip
        return wr

    def _check_xy(
        self, X: object, y: object, sample_weight: object, name: str = "", n_features: int | None = None
    ) -> tuple:  # fmt: skip
        """(X, yi, yf, sample weights or None) validated for this model (``name``: the
        argument they came in, e.g. ``validation_data``)."""
        X = self._check_X(X, name=f"{name}[0]" if name else "X", n_features=n_features)
        yi, yf = self._check_y(y, X.shape[0], name=f"{name}[1]" if name else "y")
        sw = check_sample_weight(sample_weight, X.shape[0], f"{name}[2]" if name else "sample_weight")
        return X, yi, yf, sw

    def fit(
        self, X: object, y: object, epochs: int = 1, batch_size: int = 32, shuffle: bool = True,
        validation_data: tuple | None = None, validation_split: float = 0.0,
        callbacks: Sequence[Callback] | None = None, verbose: int = 1, sample_weight: object = None,
        class_weight: dict | None = None, initial_epoch: int = 0, optimizer_overrides: dict | None = None,
    ) -> History:  # fmt: skip
        """Train by mini-batch backpropagation; continues from the current weights and
        optimizer state.

        Parameters
        ----------
        X : array-like or SciPy sparse matrix of shape (n_samples, n_features)
            Dense (converted once to the model's dtype), or CSR/CSC, which is never
            densified: the first layer's products use its nonzeros (``kernels/sparse.py``).
            The same holds for ``predict``, ``evaluate``, ``loss_and_gradients`` and
            ``fit_lbfgs``.
        y : array-like
            Integer labels of shape (n_samples,) for ``cross_entropy``; float targets of
            shape (n_samples, k) (or (n_samples,) when k == 1) for the other losses.
        epochs : int, default=1
            Index of the last epoch + 1, as in Keras: epochs ``initial_epoch .. epochs-1``
            are trained.
        batch_size : int, default=32
            The last batch of an epoch holds the remainder.
        shuffle : bool, default=True
            Visit the rows in a new seeded random order each epoch (batches are gathered
            by index: the data set is never copied).
        validation_data : tuple (X_val, y_val) or (X_val, y_val, sample_weight_val), optional
            Evaluated after every epoch (``val_loss`` and ``val_`` + each metric).
        validation_split : float in [0, 1), default=0.0
            Hold out the *last* fraction of the rows (before shuffling, as Keras does) as
            validation data. Ignored if ``validation_data`` is given.
        callbacks : list of Callback, optional
            See :mod:`fastbp.callbacks` (early stopping, checkpoints, learning-rate
            changes). Set ``model.stop_training = True`` from one to stop after the epoch.
        verbose : {0, 1, 2}, default=1
            0 silent, 1 a live progress bar per epoch, 2 one line per epoch.
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weight of each row. Each batch's loss becomes the weighted mean
            ``sum(w l) / sum(w)``, so a row of weight 0 contributes nothing.
        class_weight : dict {class index: weight}, optional
            For ``cross_entropy`` (and single-output ``binary_cross_entropy``): multiplies
            the weight of every row of that class; classes not listed weigh 1.
        initial_epoch : int, default=0
            Epoch to start counting from (schedules and ``History.epoch`` use it).
        optimizer_overrides : dict, optional
            Values of the optimizer's ``lr``, ``eps`` or ``weight_decay`` for this call only
            (finite floats; ``lr`` > 0), for code that changes them from epoch to epoch
            (the scikit-learn estimators' schedules); ``model.optimizer`` is not changed.

        Returns
        -------
        History
            Also stored as ``model.history``.

        Raises
        ------
        TrainingDivergedError
            If a batch's loss or gradient is NaN or infinite; that batch is not applied.

        Notes
        -----
        Epochs run in compiled segments of whole batches (about 0.2 s each), between which
        Python can act: the progress bar refreshes, and a ``KeyboardInterrupt`` (Ctrl-C)
        raised during a segment takes effect when it ends. An interrupted ``fit`` leaves
        the model with the parameters and optimizer state of the last completed step;
        nothing is half-written.
        """
        # ---- validate everything before touching the model
        X, yi, yf, sw = self._check_xy(X, y, sample_weight)
        first = self.layers[1 if self.normalization is not None else 0] if self.layers else None
        if is_sparse(X) and isinstance(first, Dropout):
            raise ValueError("a Dropout before the first Dense layer needs dense input: with sparse X, it would "
                             "drop only the stored values; remove it or pass X.toarray()")  # fmt: skip
        epochs = check_int(epochs, "epochs")
        batch_size = check_int(batch_size, "batch_size")
        initial_epoch = check_int(initial_epoch, "initial_epoch", minimum=0)
        if initial_epoch > epochs:
            raise ValueError(f"initial_epoch ({initial_epoch}) must be <= epochs ({epochs})")
        if not isinstance(shuffle, bool | np.bool_):
            raise TypeError(f"shuffle must be a bool, got {shuffle!r}")
        shuffle = bool(shuffle)
        verbose = check_int(verbose, "verbose", minimum=0)
        callbacks = _check_callbacks(callbacks)
        optimizer = self._overridden(optimizer_overrides)
        if class_weight is not None:
            if self._loss == CROSS_ENTROPY:
                labels, n_classes = yi, self.n_outputs
            elif self._loss == BINARY_CROSS_ENTROPY and self.n_outputs == 1:
                labels, n_classes = (yf[:, 0] > 0.5).astype(np.int64), 2
            else:
                raise ValueError("class_weight needs cross_entropy or single-output binary_cross_entropy")
            cw = class_weight_rows(class_weight, labels, n_classes)
            sw = cw if sw is None else sw * cw
            if not sw.any():
                raise ValueError("sample_weight * class_weight is all zeros: nothing to learn from")
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, tuple | list) or len(validation_data) not in (2, 3):
                raise ValueError("validation_data must be a tuple (X_val, y_val) or (X_val, y_val, sample_weight_val)")
            val = self._check_xy(
                *validation_data, *([None] * (3 - len(validation_data))), name="validation_data", n_features=X.shape[1]
            )  # fmt: skip
        else:
            n_train = split_validation(X.shape[0], validation_split)
            if n_train < X.shape[0]:
                val = _rows(X, yi, yf, sw, n_train, X.shape[0])
                X, yi, yf, sw = _rows(X, yi, yf, sw, 0, n_train)
        self._ensure_built(X.shape[1])

        # ---- train
        history = History()
        self.history = history
        self.stop_training = False
        for cb in callbacks:
            cb.set_model(self)
        for cb in callbacks:
            cb.on_train_begin({})
        for epoch in range(initial_epoch, epochs):
            for cb in callbacks:
                cb.on_epoch_begin(epoch, {})
            logs = self._train_one_epoch(X, yi, yf, sw, epoch, epochs, batch_size, shuffle, verbose, val, history,
                                         optimizer)  # fmt: skip
            history.append(epoch, logs)
            for cb in callbacks:
                cb.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        for cb in callbacks:
            cb.on_train_end(history.history)
        return history

    def _overridden(self, overrides: dict | None) -> Optimizer:
        """The optimizer, or a copy with ``overrides`` (see ``fit``) applied."""
        if overrides is None:
            return self.optimizer
        if not isinstance(overrides, dict):
            raise TypeError(f"optimizer_overrides must be a dict, got {type(overrides).__name__}")
        opt = copy.copy(self.optimizer)
        for name, value in overrides.items():
            if name not in ("lr", "eps", "weight_decay") or not hasattr(opt, name):
                raise ValueError(f"optimizer_overrides: {type(opt).__name__} has no overridable {name!r} "
                                 "(lr, eps or weight_decay)")  # fmt: skip
            setattr(opt, name, check_float(value, f"optimizer_overrides[{name!r}]", low_open=name == "lr"))
        return opt

    def _train_one_epoch(
        self, X, yi, yf, sw, epoch, epochs, batch_size, shuffle, verbose, val, history, opt
    ) -> dict[str, float]:  # fmt: skip
        plan = self._plan
        n = X.shape[0]
        rows = min(batch_size, n)
        n_batches = -(-n // batch_size)
        lr = opt.lr_at(epoch)
        hyper = np.array(opt._hyper(epoch), dtype=np.float64)
        clipnorm = 0.0 if opt.clipnorm is None else float(opt.clipnorm)
        order = self._rng.permutation(n) if shuffle else np.arange(n)
        seed = np.uint64(self._rng.integers(2**63)) if plan.drop.shape[0] else np.uint64(0)
        swk = np.zeros(0) if sw is None else sw
        acc = np.zeros(5)
        progress = Progress(verbose, epoch, epochs, n_batches, batch_size, n)
        logs = None
        try:
            # a cold cache: a helper process compiles this fit's kernels beside it (_precompile.py)
            with compute_threads() as n_threads, _precompile.helping(self, X, yi, yf, swk, rows, batch_size, n_threads):
                ws = self._workspace_for(rows, n_threads, is_sparse(X))
                cols = ws["cols"]
                # how many of the n_threads run each segment, and on how many threads' blocks
                # (_config.RUN_BLOCKS): _adaptive.py
                # (nothing to choose for a batch of one block: it runs on the calling thread)
                chooser = ws["chooser"] if _threads.adaptive() and ws["blocks"] > 1 else None
                kernels = self._train_kernels()
                args: dict[int, engine.TrainArgs] = {}

                def args_for(run: int) -> engine.TrainArgs:  # one per workspace: ws itself unless RUN_BLOCKS
                    wr = self._run_workspace(ws, run)
                    t = wr["threads"]
                    if t not in args:
                        args[t] = self._train_args(X, yi, yf, swk, order, batch_size, t, wr, seed, opt, hyper,
                                                   clipnorm, acc, kernels)  # fmt: skip
                    return args[t]

                bodies = columns.train_bodies(args_for(n_threads)) if cols else engine.train_bodies(args_for(n_threads))
                b = 0
                seg = self._segment_batches
                while b < n_batches:
                    # a probe is a fraction of the segment that runs, which the epoch's end may cut
                    run, length = n_threads, min(seg, n_batches - b)
                    if chooser is not None:
                        run, length = chooser.choose(length)
                        numba.set_num_threads(run)
                    b1 = min(n_batches, b + length)
                    t0 = time.perf_counter()
                    self._step, bad = engine.train_batches(args_for(run), b, b1, self._step, bodies)
                    if bad >= 0:
                        raise TrainingDivergedError(epoch, int(bad), history)
                    seconds = time.perf_counter() - t0
                    if chooser is not None and not ws["fresh"]:  # the first may have compiled
                        chooser.record(run, b1 - b, seconds)
                    ws["fresh"] = False
                    if length == seg:  # size the next segment to take about SEGMENT_SECONDS
                        rate = (b1 - b) / max(seconds, 1e-6)
                        seg = max(1, min(4 * (b1 - b), int(rate * _config.SEGMENT_SECONDS)))
                        self._segment_batches = seg
                    b = b1
                    progress.update(b, acc[0] / max(acc[1], 1e-300))
            logs = {"loss": float(acc[0] / acc[1])}
            k = self.n_outputs
            for name in self.metrics:
                logs[name] = _metric_from_sums(name, acc[2:], acc[1], k, self._loss)
            if val is not None:
                logs.update(self._validation_logs(*val))
            logs["lr"] = float(lr)
        finally:
            progress.close(logs)
        return logs

    def _train_loss_modes(self) -> tuple[int, ...]:
        """The loss kernels training calls: the gradient, and the metric sums with metrics."""
        return (_losses.GRAD, *((_losses.METRICS,) if self.metrics else ()))

    def _train_kernels(self) -> tuple:
        """The kernel addresses a training record holds: (the layers' ``plan.net``, the loss
        kernels, the column sums, the dropout kernels), compiled or loaded on first use."""
        plan = self._plan
        lossk = self._loss_kernels(*self._train_loss_modes())
        return plan.net(self.dtype), lossk, column_sums_address(self.dtype), plan.drop_kernels(self.dtype)

    def _train_args(
        self, X, yi, yf, swk, order, batch_size, n_threads, ws, seed, opt, hyper, clipnorm, acc, kernels
    ) -> engine.TrainArgs:  # fmt: skip
        """The record ``engine.train_batches`` reads (``kernels`` from :meth:`_train_kernels`;
        ``_precompile`` passes zeros of the same types, to compile without running)."""
        plan = self._plan
        net, lossk, sumk, dropk = kernels
        mpart = ws["mpart"] if self.metrics else ws["mpart"][:0]  # empty: no metric sums
        return engine.TrainArgs(
            _bytes(X), yi, _bytes(yf), swk, order, batch_size, n_threads, ws["min_rows"], ws["cwidth"],
            ws["iwidth"], _bytes(self._theta), *net, self._loss, lossk, sumk, self.dtype.itemsize, plan.drop, dropk,
            seed, opt.code, hyper, clipnorm, _bytes(self._m), _bytes(self._v), _bytes(ws["coef"]),
            plan.n_weights, _bytes(ws["xb"]), ws["ybi"], _bytes(ws["ybf"]), ws["wb"], _bytes(ws["abuf"]),
            _bytes(ws["zbuf"]), _bytes(ws["gbuf"]), _bytes(ws["gpart"]), ws["lpart"], mpart, ws["sq"], acc,
        )  # fmt: skip

    def _validation_logs(self, X, yi, yf, sw) -> dict[str, float]:
        out = self._forward(X, link=False)
        logs = {"val_loss": self._loss_of(out, yi, yf, sw)}
        if self.metrics:
            link_(out, self._loss)
            for name in self.metrics:
                logs["val_" + name] = METRICS[name](out, yi, yf, self._loss, sw)
        return logs

    def _loss_of(self, out: np.ndarray, yi: np.ndarray, yf: np.ndarray, sw: np.ndarray | None) -> float:
        """Mean loss of raw network outputs ``out`` (weighted by ``sw`` if given)."""
        n = out.shape[0]
        with compute_threads() as n_threads:
            nb = engine.n_blocks.py_func(n, n_threads, _config.MIN_ROWS_PER_BLOCK)
            la = engine.LossArgs(
                out, yi, yf, np.zeros(0) if sw is None else sw, self._loss, self._loss_kernels(_losses.VALUE),
                np.zeros(nb),
            )  # fmt: skip
            total = engine.loss_sum(la, nb, engine.loss_address(la))
        weight = float(n if sw is None else sw.sum())
        count = weight if self._loss == CROSS_ENTROPY else weight * self.n_outputs
        return float(total / count)

    # ------------------------------------------------------------------ inference
    def _forward(self, X: np.ndarray, link: bool) -> np.ndarray:
        plan = self._plan
        n = X.shape[0]
        chunk = _config.PREDICT_CHUNK
        width = int(plan.coff[-1])
        out = np.empty((n, self.n_outputs), dtype=self.dtype)
        with compute_threads() as n_threads:
            nb = engine.n_blocks.py_func(n, n_threads, _config.MIN_ROWS_PER_BLOCK)
            # allocated per call, so concurrent predict calls never share buffers
            abuf = np.empty(nb * chunk * width, dtype=self.dtype)
            zbuf = np.empty(nb * chunk * width, dtype=self.dtype)
            lossk = self._loss_kernels(*((_losses.LINK,) if link else ()))
            f = self._forward_args(X, plan.net(self.dtype), abuf, zbuf, link, lossk, out)
            engine.forward(f, nb, engine.forward_address(f))
        return out

    def _forward_args(self, X, net, abuf, zbuf, link, lossk, out) -> engine.ForwardArgs:
        """The record ``engine.forward`` reads (``net`` is ``plan.net``; ``_precompile``
        passes zeros of the same types for the addresses)."""
        return engine.ForwardArgs(
            _bytes(X), _bytes(self._theta), *net, _config.PREDICT_CHUNK, _bytes(abuf), _bytes(zbuf), bool(link),
            self._loss, lossk, _bytes(out), np.zeros(0), self.dtype.itemsize,
        )  # fmt: skip

    def predict(self, X: object) -> np.ndarray:
        """Network output through the loss's link, shape (n_samples, k).

        Class probabilities for ``cross_entropy`` (rows sum to 1), sigmoid probabilities
        for ``binary_cross_entropy``, raw outputs for ``mse``/``huber``.
        """
        X = self._check_X(X)
        self._ensure_built(X.shape[1])
        return self._forward(X, link=True)

    def evaluate(self, X: object, y: object, sample_weight: object = None) -> float:
        """Mean loss on (X, y), reduced as in training (weighted by ``sample_weight`` if
        given); dropout is off and no parameter changes."""
        X, yi, yf, sw = self._check_xy(X, y, sample_weight)
        self._ensure_built(X.shape[1])
        return self._loss_of(self._forward(X, link=False), yi, yf, sw)

    def loss_and_gradients(
        self, X: object, y: object, sample_weight: object = None
    ) -> tuple[float, list[np.ndarray]]:  # fmt: skip
        """Mean loss and its gradient on (X, y) as one batch; dropout is off and the
        parameters are unchanged. ``sample_weight`` weights rows as in ``fit``.

        Returns
        -------
        loss : float
        grads : list of ndarray
            ``[dW0, db0, dW1, db1, ...]``, the same order and shapes as ``get_weights()``.
        """
        X, yi, yf, sw = self._check_xy(X, y, sample_weight)
        loss, grad = self._full_batch(X, yi, yf, sw)()
        return loss, self._unflatten(grad)

    def fit_lbfgs(
        self, X: object, y: object, sample_weight: object = None, *, max_iter: int = 200, max_fun: int = 15000,
        tol: float = 1e-5, l2: float = 0.0, loss_scale: float = 1.0, gradient_scale: float = 1.0,
        loss_offset: float = 0.0,
    ) -> LBFGSResult:  # fmt: skip
        """Train on all of (X, y) at once with L-BFGS (SciPy's L-BFGS-B) instead of the
        optimizer: for small data sets, where a full-batch quasi-Newton method converges in
        few passes (scikit-learn's ``solver="lbfgs"``, PyTorch's ``torch.optim.LBFGS``).

        Minimises the mean loss over every row (weighted by ``sample_weight`` as in
        :meth:`fit`) plus ``l2 / 2 * sum(W**2)`` over the weights (not the biases), from the
        current weights (built first if needed). Each evaluation is one compiled forward
        and backward pass over all rows; dropout is off. The optimizer, its state and
        :attr:`history` are not used or changed. Raises as :meth:`fit` on bad input,
        leaving the model as it was; an interrupt (Ctrl-C) during the run restores the
        starting weights.

        Parameters
        ----------
        max_iter : int, default 200
            Most L-BFGS iterations.
        max_fun : int, default 15000
            Most objective evaluations.
        tol : float, default 1e-5
            Stop when every gradient component is at most this (SciPy's ``gtol``).
        l2 : float, default 0
            L2 penalty on the weights.
        loss_scale, gradient_scale, loss_offset : float, default 1, 1, 0
            For another library's objective (the scikit-learn estimators pass scikit-learn's):
            minimise ``loss_scale * loss + loss_offset + l2/2 * sum(W**2)`` with the gradient
            taken as ``gradient_scale * dloss + l2 * W`` (scikit-learn's loss and gradient
            scales differ for some losses).

        Returns
        -------
        LBFGSResult
        """
        max_iter = check_int(max_iter, "max_iter")
        max_fun = check_int(max_fun, "max_fun")
        tol = check_float(tol, "tol")
        l2 = check_float(l2, "l2")
        scales = {"scale": check_float(loss_scale, "loss_scale", low_open=True),
                  "grad_scale": check_float(gradient_scale, "gradient_scale", low_open=True),
                  "const": check_float(loss_offset, "loss_offset", low=-np.inf)}  # fmt: skip
        X, yi, yf, sw = self._check_xy(X, y, sample_weight)
        if any(isinstance(layer, Dropout) for layer in self.layers):
            raise ValueError("fit_lbfgs minimises a fixed full-batch objective: remove the Dropout layers first")
        self._ensure_built(X.shape[1])
        start = self._theta.copy()
        try:
            return self._lbfgs(X, yi, yf, sw, max_iter=max_iter, max_fun=max_fun, tol=tol, l2=l2, **scales)
        except BaseException:  # an interrupt or an error inside: back to the starting weights
            self._theta[:] = start
            raise

    def _lbfgs(
        self, X: np.ndarray, yi: np.ndarray, yf: np.ndarray, sw: np.ndarray | None, *, max_iter: int,
        max_fun: int, tol: float, l2: float, scale: float = 1.0, grad_scale: float = 1.0, const: float = 0.0,
    ) -> LBFGSResult:  # fmt: skip
        """SciPy's L-BFGS-B from the current weights on ``scale * loss + const + l2/2 *
        sum(W**2)``, with gradient ``grad_scale * dloss + l2 * W`` (the estimators pass
        scikit-learn's loss and gradient scales, which differ for some losses); leaves the
        final weights in ``_theta``. Inputs as ``_check_xy`` returns them."""
        import scipy.optimize

        evaluate = self._full_batch(X, yi, yf, sw)
        n_w = self._plan.n_weights

        def loss_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
            self._theta[:] = theta
            loss, grad = evaluate()
            grad = grad.astype(np.float64)
            grad *= grad_scale
            w = theta[:n_w]
            grad[:n_w] += l2 * w
            return scale * loss + const + 0.5 * l2 * float(w @ w), grad

        # L-BFGS-B's own steps call SciPy's BLAS: held at one thread, as in fastbp's kernels,
        # so that its threads do not wait for cores Numba's pool spins on (measured on 2
        # cores, digits: 97 ms of a 128 ms fit in scipy's setulb with BLAS on 2 threads)
        with compute_threads():
            res = scipy.optimize.minimize(
                loss_grad, self._theta.astype(np.float64), method="L-BFGS-B", jac=True,
                options={"maxiter": max_iter, "maxfun": max_fun, "gtol": tol},
            )  # fmt: skip
        self._theta[:] = res.x  # in place: views of the weights stay linked
        message = res.message.decode("latin1") if isinstance(res.message, bytes) else str(res.message)
        return LBFGSResult(loss=float(res.fun), n_iter=int(res.nit), n_fun=int(res.nfev),
                           converged=bool(res.status == 0), message=message, status=int(res.status))  # fmt: skip

    def _full_batch(
        self, X: np.ndarray, yi: np.ndarray, yf: np.ndarray, sw: np.ndarray | None
    ) -> Callable[[], tuple[float, np.ndarray]]:  # fmt: skip
        """``evaluate() -> (loss, grad)`` at the current parameters, over all of (X, y) as
        one batch: the mean loss and its flat gradient (``_theta``'s layout and dtype; the
        same array every call), in one compiled call with buffers allocated once here, for
        :meth:`loss_and_gradients` and full-batch optimizers (the estimators' L-BFGS).
        Inputs as ``_check_xy`` returns them; dropout is off."""
        self._ensure_built(X.shape[1])
        plan = self._plan
        n = X.shape[0]
        width = int(plan.coff[-1])
        dt = self.dtype
        k = self.n_outputs
        swk = np.zeros(0) if sw is None else sw
        wsum = float(n if sw is None else sw.sum())
        count = wsum if self._loss == CROSS_ENTROPY else wsum * k
        with compute_threads() as n_threads:
            nb = engine.n_blocks.py_func(n, n_threads, _plan.block_rows(plan.sizes))
        gpart = np.empty((nb, plan.n_params), dtype=dt)
        grad = np.empty(plan.n_params, dtype=dt)
        empty = np.zeros(0, dtype=dt)
        bufs = (
            _bytes(np.empty((n, 0 if is_sparse(X) else X.shape[1]), dtype=dt)),
            np.zeros(n if self._loss == CROSS_ENTROPY else 0, dtype=np.int64),
            _bytes(np.zeros((0 if self._loss == CROSS_ENTROPY else n, k), dtype=dt)), np.zeros(n),
            *(_bytes(np.empty(n * width, dtype=dt)) for _ in range(3)),
            _bytes(gpart), np.zeros(nb), np.zeros((0, 3)), np.zeros(1), np.zeros(5),
        )  # fmt: skip

        # everything but the parameters, built once: each evaluation only takes self._theta
        # (no dropout, no optimizer: those fields are typed as in fit's record, so both share
        # one compiled body)
        head = (_bytes(X), yi, _bytes(yf), swk, np.arange(n), n, nb, 1, np.zeros(len(plan.sizes) - 1, np.int64), 0)
        tail = (
            *plan.net(self.dtype), self._loss, self._loss_kernels(_losses.GRAD), column_sums_address(dt), dt.itemsize,
            np.zeros(0), np.zeros(0, np.int64), np.uint64(0), 0, np.zeros(6), 0.0, _bytes(empty), _bytes(empty),
            _bytes(np.zeros(N_COEF, dtype=dt)), 0, *bufs,
        )  # fmt: skip

        def record() -> engine.TrainArgs:
            return engine.TrainArgs(*head, _bytes(self._theta), *tail)

        bodies = np.array([engine.block_address(record()), 0, 0], dtype=np.int64)

        def evaluate() -> tuple[float, np.ndarray]:
            a = record()
            with compute_threads():
                engine.batch_gradients(a, wsum, nb, bodies)
                reduce_partials(gpart, nb, grad)
            return float(a.lpart.sum() / count), grad

        return evaluate

    def summary(self, print_fn: Callable[[str], object] | None = print) -> str:
        """A table of the layers, their output shapes and parameter counts, like Keras'.

        Printed with ``print_fn`` (pass None to only return it).
        """
        rows = [("Layer (type)", "Output shape", "Param #")]
        width = self.n_features
        total = 0
        counts = {"Dense": 0, "Dropout": 0, "Normalization": 0}
        for layer in self.layers:
            kind = type(layer).__name__
            counts[kind] += 1
            name = f"{kind.lower()}_{counts[kind]} ({kind})"
            if isinstance(layer, Dense):
                params = None if width is None else (width + 1) * layer.units
                width = layer.units
                total += params or 0
                detail = f"{params:,}" if params is not None else "? (input width unknown)"
                rows.append((f"{name}, {layer.activation}", f"(None, {width})", detail))
            elif isinstance(layer, Normalization):
                rows.append((name, f"(None, {width if width else '?'})", "0"))
            else:
                rows.append((f"{name}, rate {layer.rate:g}", f"(None, {width if width else '?'})", "0"))
        cols = [max(len(r[i]) for r in rows) + 2 for i in range(3)]
        rule = "-" * sum(cols)
        lines = [f"Sequential: loss={self.loss}, optimizer={type(self.optimizer).__name__}, dtype={self.dtype.name}"]
        lines += [rule, "".join(c.ljust(w) for c, w in zip(rows[0], cols)).rstrip(), "=" * sum(cols)]
        lines += ["".join(c.ljust(w) for c, w in zip(r, cols)).rstrip() for r in rows[1:]]
        lines += [rule, f"Total params: {total:,}" + ("" if self.n_features else " (input width unknown)")]
        text = "\n".join(lines)
        if print_fn is not None:
            print_fn(text)
        return text

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
        self.check_layers()
        if isinstance(weights, str | bytes | np.ndarray) or not isinstance(weights, Sequence):
            raise TypeError(f"weights must be a list of arrays, got {type(weights).__name__}")
        L = len(self.dense_layers)
        if len(weights) != 2 * L:
            raise ValueError(f"weights must hold {2 * L} arrays (W and b for {L} layers), got {len(weights)}")
        arrays = [_as_array(w, f"weights[{i}]") for i, w in enumerate(weights)]
        n_features = self.n_features
        if n_features is None:
            if arrays[0].ndim != 2:
                raise ValueError(f"weights[0] must be 2-D (n_in, n_out), got shape {arrays[0].shape}")
            n_features = arrays[0].shape[0]
        sizes = [n_features] + [layer.units for layer in self.dense_layers]
        checked = []
        for i, arr in enumerate(arrays):
            l = i // 2
            shape = (sizes[l], sizes[l + 1]) if i % 2 == 0 else (sizes[l + 1],)
            if arr.shape != shape:
                raise ValueError(f"weights[{i}] must have shape {shape}, got {arr.shape}")
            if arr.dtype.kind not in "biuf":
                raise TypeError(f"weights[{i}] must hold real numbers, got dtype {arr.dtype}")
            arr = _convert(arr, self.dtype)
            if not np.isfinite(arr).all():
                raise ValueError(f"weights[{i}] contains NaN or infinity")
            checked.append(arr)
        self._ensure_built(n_features)
        for dst, src in zip(self._unflatten(self._theta), checked):
            dst[...] = src


def _rows(X, yi, yf, sw, lo: int, hi: int) -> tuple:
    """Rows lo:hi of (X, yi, yf, sw): views, no copies (empty label arrays stay empty)."""
    return (
        take_rows(X, lo, hi),
        yi[lo:hi] if yi.shape[0] else yi,
        yf[lo:hi] if yf.shape[0] else yf,
        None if sw is None else sw[lo:hi],
    )


def _metric_from_sums(name: str, sums: np.ndarray, weight: float, k: int, loss: int) -> float:
    """A training metric from the kernel's weighted sums (see ``losses.metric_sums_``)."""
    if name == "accuracy":
        return float(sums[0] / (weight if loss == CROSS_ENTROPY else weight * k))
    return float(sums[1 if name == "mae" else 2] / (weight * k))


def _check_callbacks(callbacks: object) -> list[Callback]:
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback):
        return [callbacks]
    if isinstance(callbacks, str) or not isinstance(callbacks, Sequence):
        raise TypeError(f"callbacks must be a list of Callback, got {type(callbacks).__name__}")
    for cb in callbacks:
        if not isinstance(cb, Callback):
            raise TypeError(f"callbacks must be Callback instances, got {type(cb).__name__}: {cb!r}")
    return list(callbacks)
