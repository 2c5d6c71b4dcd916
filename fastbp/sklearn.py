"""scikit-learn drop-in estimators: :class:`MLPClassifier` and :class:`MLPRegressor`.

They take the parameters of ``sklearn.neural_network``'s estimators of the same names, with
the same meanings and defaults, and set the same fitted attributes, so swapping the import
is enough::

    from fastbp.sklearn import MLPClassifier   # instead of sklearn.neural_network

Training runs on a :class:`fastbp.Sequential`, one epoch (scikit-learn's "iteration") per
``Sequential.fit`` call. Everything scikit-learn decides between epochs is done here, as
scikit-learn does it: ``loss_curve_``, the ``tol`` / ``n_iter_no_change`` stopping rule,
``early_stopping`` on a held-out ``validation_fraction`` (best weights restored), the
``learning_rate`` schedules of ``solver="sgd"``, ``warm_start`` and ``partial_fit``.

How the numbers map onto fastbp (so that a learning rate means the same thing):

- **Gradient scale.** scikit-learn's output gradient is ``(p - y) / n_batch`` for every
  loss, summed over outputs. fastbp's losses are means over all ``n*k`` elements (cross
  entropy: over samples), so fastbp's gradient is scikit-learn's divided by ``c``: 1 for
  softmax cross-entropy and for one logistic output, ``k`` for multi-label and Poisson,
  ``k/2`` for squared error (fastbp's MSE gradient is ``2(p - y)/(n k)``). The SGD
  learning rate is multiplied by ``c`` and Adam's ``epsilon`` divided by it (Adam is
  otherwise invariant to the scale), so both take scikit-learn's steps.
- **L2.** scikit-learn adds ``alpha * W / n_batch`` to the gradient of the weights (not the
  biases); fastbp's ``weight_decay`` adds ``weight_decay * W``, so ``weight_decay = alpha /
  (batch_size * c)``. The last, smaller batch of an epoch gets the same coefficient as the
  others (scikit-learn's is slightly larger there).
- **Adam.** fastbp's update is PyTorch's, ``lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) +
  eps)``; scikit-learn's is ``lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``. They
  differ only in where ``eps`` sits, so fastbp's ``eps`` is set before each epoch to
  ``epsilon / sqrt(1 - beta_2^t)`` for the epoch's first step ``t``: exact for that step
  (so for every step with one batch per epoch); the epoch's later steps ``t'`` act as
  scikit-learn's with ``epsilon * sqrt((1 - b2^t') / (1 - b2^t))``, a factor that tends to 1.
- **SGD momentum.** scikit-learn keeps a velocity that includes the learning rate, fastbp
  (PyTorch) a buffer of gradients multiplied by the current rate at each step: the same
  steps while the rate is constant. When ``invscaling``/``adaptive`` change the rate between
  epochs, fastbp's buffer is rescaled by ``old / new``, which keeps them the same.
- **Reported loss** (``loss_``, ``loss_curve_``) is in scikit-learn's convention: log-loss
  summed over outputs, half the mean squared error, half the Poisson deviance, plus the L2
  term ``0.5 * alpha * ||W||^2 / n_batch`` per batch (computed from the weights the epoch
  starts from, where scikit-learn uses each batch's: the same with one batch per epoch).
- **Initialisation** is scikit-learn's (uniform, bound ``sqrt(6 / (fan_in + fan_out))``,
  ``sqrt(2 / ...)`` for logistic, biases too), drawn from ``random_state`` in the same
  order, so an int ``random_state`` gives scikit-learn's initial weights and (with
  ``early_stopping``) its validation split. Shuffling uses fastbp's own generator, seeded
  from ``random_state``, so the batches differ from scikit-learn's.

fastbp-only keywords: ``dtype`` (default ``"float32"``, fastbp's fast path, chosen because
held-out scores match scikit-learn's float64 ones on digits and Friedman #1, see
``tests/test_sklearn.py``; ``"float64"``, or ``None`` for the dtype of ``X`` as
scikit-learn does), ``dropout`` (fastbp's inverted dropout after each hidden layer) and any
fastbp activation name (``"gelu"``, ``"elu"``, ``"silu"``, ...) besides scikit-learn's four.
``sample_weight`` in ``fit``/``partial_fit`` is scikit-learn's (each batch a weighted mean).
Predictions come in the dtype of ``X`` (float64 unless ``X`` is float32), as scikit-learn's.
``solver="lbfgs"`` is scipy's L-BFGS-B over the full batch, with scikit-learn's objective
(``max_iter``, ``max_fun``, ``tol`` as its), each evaluation one compiled forward + backward
pass. Sparse input (SciPy CSR or CSC; other formats are converted to CSR, as
scikit-learn's) is never densified: the first layer's products are computed from its
nonzeros (``fastbp.kernels.sparse``). Threads are fastbp's
(:func:`fastbp.set_num_threads`).
"""

from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.sparse import issparse
from scipy.special import xlogy
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

from ._training import TrainingDivergedError
from ._validation import check_sample_weight, check_sparse_X
from .kernels.activations import ACTIVATIONS
from .layers import Dense, Dropout
from .model import Sequential
from .optimizers import SGD, Adam

__all__ = ["MLPClassifier", "MLPRegressor"]

#: scikit-learn's hidden activation names -> fastbp's; every fastbp name is accepted too.
_SK_ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
_SOLVERS = ("adam", "sgd", "lbfgs")
#: Sparse formats the estimators take (others are converted to the first, as scikit-learn's).
_SPARSE = ["csr", "csc"]
_SCHEDULES = ("constant", "invscaling", "adaptive")
_REGRESSION_LOSSES = ("squared_error", "poisson")
#: Input dtypes prediction takes as they are (scikit-learn's validate_data keeps them).
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


# ---------------------------------------------------------------------- parameter checks
def _fail(est: BaseEstimator, name: str, what: str, value: object, exc: type[Exception] = ValueError) -> None:
    raise exc(f"The {name!r} parameter of {type(est).__name__} must be {what}. Got {value!r} instead.")


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def _check_real(est, name, low, high=np.inf, low_open=False, high_open=False) -> float:
    value = getattr(est, name)
    lo, hi = "(" if low_open else "[", ")" if high_open else "]"
    what = f"a float in the range {lo}{low}, {high}{hi}"
    if not _is_real(value):
        _fail(est, name, what, value, TypeError)
    v = float(value)
    if not np.isfinite(v) or (v <= low if low_open else v < low) or (v >= high if high_open else v > high):
        _fail(est, name, what, value)
    return v


def _check_int(est, name, low=1) -> int:
    value = getattr(est, name)
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
        _fail(est, name, f"an int in the range [{low}, inf)", value, TypeError)
    if value < low:
        _fail(est, name, f"an int in the range [{low}, inf)", value)
    return int(value)


def _check_bool(est, name) -> bool:
    value = getattr(est, name)
    if not isinstance(value, bool | np.bool_):
        _fail(est, name, "an instance of 'bool'", value, TypeError)
    return bool(value)


def _check_option(est, name, options) -> str:
    value = getattr(est, name)
    if not isinstance(value, str) or value not in options:
        _fail(est, name, f"a str among {sorted(options)}", value)
    return value


@dataclass
class _Data:
    """Rows to train or validate on: inputs, 2-D targets, sample weights (or None)."""

    X: np.ndarray
    Y: np.ndarray
    sw: np.ndarray | None


@dataclass
class _Params:
    """The hyper-parameters after validation (fit never rewrites the user's attributes)."""

    hidden: list[int]
    activation: str  # fastbp name
    solver: str
    alpha: float
    batch_size: int | None  # None: "auto"
    schedule: str
    lr_init: float
    power_t: float
    max_iter: int
    tol: float
    momentum: float
    n_iter_no_change: float
    dtype: np.dtype | None
    dropout: float


def _check_params(est: _BaseMLP) -> _Params:
    hidden = est.hidden_layer_sizes
    if isinstance(hidden, numbers.Integral) and not isinstance(hidden, bool):
        hidden = [hidden]
    try:
        hidden = list(hidden)
    except TypeError:
        _fail(est, "hidden_layer_sizes", "an int or an array-like of ints", hidden, TypeError)
    if not all(isinstance(h, numbers.Integral) and not isinstance(h, bool) for h in hidden):
        _fail(est, "hidden_layer_sizes", "an int or an array-like of ints", est.hidden_layer_sizes, TypeError)
    if any(h <= 0 for h in hidden):
        raise ValueError(f"hidden_layer_sizes must be > 0, got {est.hidden_layer_sizes!r}.")
    activation = _check_option(est, "activation", set(_SK_ACTIVATIONS) | set(ACTIVATIONS))
    solver = _check_option(est, "solver", _SOLVERS)
    batch_size = est.batch_size
    if not (isinstance(batch_size, str) and batch_size == "auto"):
        if isinstance(batch_size, bool | np.bool_) or not isinstance(batch_size, numbers.Integral):
            _fail(est, "batch_size", "'auto' or an int in the range [1, inf)", batch_size, TypeError)
        batch_size = _check_int(est, "batch_size")
    else:
        batch_size = None
    n_iter_no_change = est.n_iter_no_change
    if not (_is_real(n_iter_no_change) and n_iter_no_change == np.inf):
        n_iter_no_change = _check_int(est, "n_iter_no_change")
    verbose = est.verbose
    if not isinstance(verbose, numbers.Integral) or verbose < 0:
        _fail(est, "verbose", "a bool or an int in the range [0, inf)", verbose, TypeError)
    for name in ("shuffle", "warm_start", "nesterovs_momentum", "early_stopping"):
        _check_bool(est, name)
    _check_real(est, "validation_fraction", 0.0, 1.0, high_open=True)
    _check_real(est, "beta_1", 0.0, 1.0, high_open=True)
    _check_real(est, "beta_2", 0.0, 1.0, high_open=True)
    _check_real(est, "epsilon", 0.0, low_open=True)
    _check_int(est, "max_fun")
    dtype = est.dtype
    if dtype is not None:
        try:
            dtype = np.dtype(dtype)
        except TypeError:
            dtype = None
        if dtype not in (np.float32, np.float64):
            _fail(est, "dtype", "'float32', 'float64' or None", est.dtype)
    return _Params(
        hidden=[int(h) for h in hidden],
        activation=_SK_ACTIVATIONS.get(activation, activation),
        solver=solver,
        alpha=_check_real(est, "alpha", 0.0),
        batch_size=batch_size,
        schedule=_check_option(est, "learning_rate", _SCHEDULES),
        lr_init=_check_real(est, "learning_rate_init", 0.0, low_open=True),
        power_t=_check_real(est, "power_t", 0.0),
        max_iter=_check_int(est, "max_iter"),
        tol=_check_real(est, "tol", 0.0),
        # fastbp's SGD needs momentum < 1 (scikit-learn accepts 1, a non-decaying velocity)
        momentum=_check_real(est, "momentum", 0.0, 1.0, high_open=True),
        n_iter_no_change=n_iter_no_change,
        dtype=dtype,
        dropout=_check_real(est, "dropout", 0.0, 1.0, high_open=True),
    )


# ---------------------------------------------------------------------- the estimators
class _BaseMLP(BaseEstimator):
    """Shared training loop; subclasses define targets, outputs and scoring."""

    # set by subclasses: how y maps onto the network
    def _output_spec(self) -> tuple[str, str, float, float]:
        """(fastbp loss, out_activation_, gradient scale c, loss factor) for ``self.n_outputs_``."""
        raise NotImplementedError

    def _fit_targets(self, Y: np.ndarray) -> np.ndarray:
        """The 2-D targets ``Y`` as the fastbp loss takes them."""
        raise NotImplementedError

    def _score_val(self, val: _Data) -> float:
        """scikit-learn's ``score`` on the validation split (NaN if the outputs are not finite)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict:
        # coefs_/intercepts_ are views of the network's parameters: stored once, in _model
        state = super().__getstate__()
        if "_model" in state:
            state = {k: v for k, v in state.items() if k not in ("coefs_", "intercepts_")}
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        if "_model" in state:
            self._link_weights()

    def _link_weights(self) -> None:
        """Point ``coefs_``/``intercepts_`` at the network's live weight views."""
        dense = self._model.dense_layers
        self.coefs_ = [layer.w for layer in dense]
        self.intercepts_ = [layer.b for layer in dense]

    def _network(self) -> Sequential:
        """The fitted network, first taking in any ``coefs_``/``intercepts_`` a user assigned."""
        model = self._model
        dense = model.dense_layers
        linked = len(self.coefs_) == len(dense) and all(
            c is layer.w and b is layer.b for c, b, layer in zip(self.coefs_, self.intercepts_, dense)
        )
        if not linked:
            model.set_weights([p for pair in zip(self.coefs_, self.intercepts_) for p in pair])
            self._link_weights()
        return model

    @property
    def model_(self) -> Sequential:
        """The fitted network, a :class:`fastbp.Sequential`: ``est.model_.save(path)`` writes
        a model file, ``fastbp.export_onnx(est.model_, path)`` an ONNX graph. Its inputs are
        this estimator's (after any preprocessing in a pipeline) and its output is
        ``predict_proba``'s columns (the regressor's predictions)."""
        check_is_fitted(self)
        return self._network()

    # ------------------------------------------------------------------ fitting
    def _init_weights(self, rs: np.random.RandomState, units: list[int]) -> list[np.ndarray]:
        """scikit-learn's initialisation, drawn in its order: per layer W then b."""
        factor = 2.0 if self.activation in ("logistic", "sigmoid") else 6.0
        weights = []
        for fan_in, fan_out in zip(units[:-1], units[1:]):
            bound = np.sqrt(factor / (fan_in + fan_out))
            weights.append(rs.uniform(-bound, bound, (fan_in, fan_out)))
            weights.append(rs.uniform(-bound, bound, fan_out))
        return weights

    def _new_network(self, p: _Params, units: list[int], weights: list[np.ndarray], seed: int,
                     dtype: np.dtype) -> Sequential:  # fmt: skip
        loss, _, c, _ = self._output_spec()
        if p.solver == "adam":
            opt = Adam(lr=p.lr_init, beta1=self.beta_1, beta2=self.beta_2, eps=self.epsilon / c)
        else:
            opt = SGD(lr=p.lr_init * c, momentum=p.momentum, nesterov=bool(self.nesterovs_momentum) and p.momentum > 0)
        layers: list = []
        for u in units[1:-1]:
            layers.append(Dense(u, activation=p.activation))
            if p.dropout > 0:
                layers.append(Dropout(p.dropout))
        layers.append(Dense(units[-1]))
        model = Sequential(layers, loss=loss, optimizer=opt, seed=seed, dtype=dtype)
        model.set_weights(weights)
        return model

    def _check_solver(self) -> bool:
        """``partial_fit`` exists for the stochastic solvers only, as in scikit-learn."""
        if self.solver not in ("sgd", "adam"):
            raise AttributeError(
                f"partial_fit is only available for stochastic optimizers. {self.solver} is not stochastic."
            )
        return True

    def _reset_state(self, early_stopping: bool) -> None:
        self.n_iter_ = 0
        self.t_ = 0
        self.loss_curve_ = []
        self._no_improvement_count = 0
        if early_stopping:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.best_loss_ = np.inf
            self.validation_scores_ = None
            self.best_validation_score_ = None

    def _fit(self, X: object, y: object, sample_weight: object, incremental: bool) -> _BaseMLP:
        """scikit-learn's ``_fit``, step for step and in its order (parameters, input, first
        pass or continuation, early-stopping split, batch size, network, solver), so that it
        reads beside scikit-learn's; that order is why it is one long function."""
        p = _check_params(self)
        if p.solver == "lbfgs" and p.dropout > 0:
            raise ValueError(
                f"dropout={self.dropout!r} needs a stochastic solver ('adam' or 'sgd'): solver='lbfgs' minimises a "
                "fixed full-batch objective, which random masks would change at every evaluation"
            )
        early_stopping = bool(self.early_stopping) and p.solver != "lbfgs"  # scikit-learn's: stochastic only
        if early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        # warm_start and partial_fit keep the network's dtype
        dtype = p.dtype if first_pass else self._model.dtype
        X, Y = self._validate_input(X, y, incremental, reset=first_pass, dtype=dtype)
        # copy a read-only array (a memmap) once here, not at every epoch's fit: Numba only
        # takes writeable arrays, and fastbp's input validation would copy it each time
        X, Y = (a if issparse(a) or a.flags.writeable else a.copy() for a in (X, Y))
        sw = check_sample_weight(sample_weight, X.shape[0])
        dtype = X.dtype
        n_outputs = Y.shape[1]
        units = [X.shape[1], *p.hidden, n_outputs]
        rs = check_random_state(self.random_state)

        if first_pass:
            self.n_outputs_ = n_outputs
            self.n_layers_ = len(units)
            self.out_activation_ = self._output_spec()[1]
            weights = self._init_weights(rs, units)
        else:
            old = [int(self._model.n_features)] + [layer.units for layer in self._model.dense_layers]
            if old != units:
                raise ValueError(
                    f"warm_start/partial_fit needs the fitted layer sizes {old}, got {units} "
                    "(hidden_layer_sizes or the number of outputs changed); set warm_start=False to refit"
                )
            if self._model.loss != self._output_spec()[0]:
                raise ValueError(f"warm_start/partial_fit cannot change the loss of the fitted network "
                                 f"({self._model.loss!r})")  # fmt: skip
            weights = self._network().get_weights()

        train, val = _Data(X, Y, sw), None
        if early_stopping:
            # scikit-learn's split, from the same generator state: the same rows for the same random_state
            stratify = Y if is_classifier(self) and n_outputs == 1 else None
            arrays = [X, Y] if sw is None else [X, Y, sw]
            parts = train_test_split(*arrays, random_state=rs, test_size=self.validation_fraction, stratify=stratify)
            fit_part, val_part = parts[0::2], parts[1::2]
            if sw is None:
                fit_part.append(None)
                val_part.append(None)
            train, val = _Data(*fit_part), _Data(*val_part)
            if val.X.shape[0] < 2:
                raise ValueError(
                    "The validation set is too small. Increase 'validation_fraction' or the size of your dataset."
                )
            if train.sw is not None and not train.sw.any():
                raise ValueError("The sample weights of the training split are all zero; use a different random_state.")
        if issparse(X):  # to the kernels' form once, not at every epoch's Sequential.fit
            for part in (train, val) if val is not None else (train,):
                part.X = check_sparse_X(part.X, dtype)
        n_samples = train.X.shape[0]
        if p.batch_size is None:
            batch_size = min(200, n_samples)
        else:
            if p.batch_size > n_samples:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped",
                              stacklevel=3)  # fmt: skip
            batch_size = min(p.batch_size, n_samples)

        if first_pass or not incremental:
            # a fresh optimizer on every fit (scikit-learn's too, warm_start included)
            seed = int(rs.randint(np.iinfo(np.int32).max))
            model = self._new_network(p, units, weights, seed, dtype)
            self._learning_rate = p.lr_init
        else:
            model = self._model
        if p.solver == "lbfgs":  # scikit-learn keeps no per-epoch record for lbfgs
            self.n_iter_ = self.t_ = 0
            for name in ("loss_curve_", "best_loss_", "validation_scores_", "best_validation_score_"):
                self.__dict__.pop(name, None)
        elif first_pass or not hasattr(self, "loss_curve_"):  # (or a warm start after lbfgs)
            self._reset_state(early_stopping)
        elif early_stopping and self.validation_scores_ is None:  # early_stopping switched on for a warm start
            self.validation_scores_, self.best_validation_score_, self.best_loss_ = [], -np.inf, None
        elif not early_stopping and self.best_loss_ is None:  # ... or off
            self.validation_scores_, self.best_validation_score_, self.best_loss_ = None, None, np.inf
        self._model = model
        self._link_weights()
        if p.solver == "lbfgs":
            self._train_lbfgs(model, p, train)
            return self
        try:
            self._train(model, p, train, val, batch_size, incremental, early_stopping)
        except TrainingDivergedError as exc:
            raise ValueError(
                "Solver produced non-finite parameter weights. The input data may contain large values and "
                "need to be preprocessed."
            ) from exc
        return self

    def _train(self, model: Sequential, p: _Params, train: _Data, val: _Data | None, batch_size: int,
               incremental: bool, early_stopping: bool) -> None:  # fmt: skip
        """scikit-learn's epoch loop (``_fit_stochastic``), one fastbp epoch per iteration."""
        loss_name, _, c, factor = self._output_spec()
        targets = self._fit_targets(train.Y)
        n_samples = train.X.shape[0]
        n_batches = -(-n_samples // batch_size)
        # scikit-learn divides each batch's L2 term and gradient by the batch's weight sum
        mean_w = 1.0 if train.sw is None else float(train.sw.mean())
        # scikit-learn's hyper-parameters in fastbp's terms, passed to each epoch's fit
        # (model.optimizer keeps its own)
        overrides = {"weight_decay": p.alpha / (batch_size * mean_w * c)}
        # half Poisson deviance = fastbp's poisson loss * k + this constant (it has no gradient)
        const = 0.0
        if loss_name == "poisson":
            const = float(np.average((xlogy(train.Y, train.Y) - train.Y).sum(axis=1), weights=train.sw))
        sgd = p.solver == "sgd"
        if early_stopping:
            self._best_weights = model.get_weights()
        try:
            self.n_iter_ = 0
            for _ in range(p.max_iter):
                # L2 term of the reported loss, from the weights the epoch starts from
                sq = sum(float(np.dot(w.ravel(), w.ravel())) for w in self.coefs_) if p.alpha > 0 else 0.0
                if sgd:
                    overrides["lr"] = self._learning_rate * c
                else:
                    # scikit-learn's eps sits where fastbp's would be eps * sqrt(1 - beta_2^t): exact
                    # for the epoch's first step (every step with one batch per epoch)
                    overrides["eps"] = self.epsilon / (c * np.sqrt(1.0 - self.beta_2 ** (model.state.step + 1)))
                try:
                    history = model.fit(train.X, targets, epochs=1, batch_size=batch_size,
                                        shuffle=bool(self.shuffle), sample_weight=train.sw, verbose=0,
                                        optimizer_overrides=overrides)  # fmt: skip
                except TrainingDivergedError:
                    if not early_stopping:
                        raise
                    self._record_divergence(p.max_iter, n_samples)
                    break
                l2 = n_batches * 0.5 * p.alpha * sq / (n_samples * mean_w)
                loss = factor * history.history["loss"][0] + const + l2
                self.n_iter_ += 1
                self.loss_ = loss
                self.t_ += n_samples
                self.loss_curve_.append(loss)
                if self.verbose:
                    print(f"Iteration {self.n_iter_}, loss = {loss:.8f}")
                self._update_no_improvement_count(p.tol, val)
                if sgd and p.schedule == "invscaling":
                    self._set_sgd_rate(model, p.lr_init / (self.t_ + 1) ** p.power_t)
                if self._no_improvement_count > p.n_iter_no_change:
                    what = "Validation score" if early_stopping else "Training loss"
                    msg = f"{what} did not improve more than tol={p.tol:f} for {p.n_iter_no_change} consecutive epochs."
                    if not sgd or p.schedule != "adaptive":
                        if self.verbose:
                            print(msg + " Stopping.")
                        break
                    if self._learning_rate <= 1e-6:
                        if self.verbose:
                            print(msg + " Learning rate too small. Stopping.")
                        break
                    self._set_sgd_rate(model, self._learning_rate / 5.0)
                    if self.verbose:
                        print(msg + f" Setting learning rate to {self._learning_rate:f}")
                    self._no_improvement_count = 0
                if incremental:
                    break
                if self.n_iter_ == p.max_iter:
                    warnings.warn(
                        f"Stochastic Optimizer: Maximum iterations ({p.max_iter}) reached and the optimization "
                        "hasn't converged yet.",
                        ConvergenceWarning,
                        stacklevel=4,
                    )
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.", stacklevel=4)
        if early_stopping:
            model.set_weights(self._best_weights)  # in place: coefs_ stay linked
            del self._best_weights

    def _train_lbfgs(self, model: Sequential, p: _Params, train: _Data) -> None:
        """scikit-learn's ``_fit_lbfgs``: scipy's L-BFGS-B on its full-batch objective, the
        mean loss plus ``alpha / 2 * sum(W**2) / sum(sample weights)``, from the current
        weights (packed as scikit-learn packs them: every layer's weights, then every
        bias, which is fastbp's ``theta``). One evaluation is one compiled forward and
        backward pass over all rows (``Sequential._full_batch``)."""
        loss_name, _, c, factor = self._output_spec()
        sw_sum = float(train.X.shape[0] if train.sw is None else np.sum(train.sw, dtype=np.float64))
        const = 0.0
        if loss_name == "poisson":
            const = float(np.average((xlogy(train.Y, train.Y) - train.Y).sum(axis=1), weights=train.sw))
        # scikit-learn's pair: its reported loss (factor) and its backprop gradient (c)
        res = model.fit_lbfgs(train.X, self._fit_targets(train.Y), train.sw, max_iter=p.max_iter, max_fun=self.max_fun,
                              tol=p.tol, l2=p.alpha / sw_sum, loss_scale=factor, gradient_scale=c,
                              loss_offset=const)  # fmt: skip
        if not res.converged:
            warnings.warn(
                f"lbfgs failed to converge after {res.n_iter} iteration(s) (status={res.status}):\n{res.message}\n\n"
                f"Increase the number of iterations to improve the convergence (max_iter={p.max_iter}).",
                ConvergenceWarning,
                stacklevel=4,
            )
        self.n_iter_ = min(res.n_iter, p.max_iter)
        self.loss_ = res.loss
        if self.verbose:
            print(f"L-BFGS-B: {self.n_iter_} iterations, {res.n_fun} evaluations, loss = {self.loss_:.8f}")

    def _record_divergence(self, max_iter: int, n_samples: int) -> None:
        """What scikit-learn records when training diverges with ``early_stopping=True``
        (its issue 29504): it goes on to ``max_iter`` with non-finite weights, each epoch's
        loss and validation score NaN (a NaN score resets the no-improvement count, so it
        never stops early), warns that the iterations ran out and keeps the best epoch's
        weights. fastbp stops at the first non-finite step instead (the network keeps its
        last finite weights) and records those epochs without running them."""
        while self.n_iter_ < max_iter:
            self.n_iter_ += 1
            self.loss_ = np.nan
            self.t_ += n_samples
            self.loss_curve_.append(np.nan)
            self.validation_scores_.append(np.nan)
            self._no_improvement_count = 0
            if self.verbose:
                print(f"Iteration {self.n_iter_}, loss = nan")
                print("Validation score: nan")
        warnings.warn(
            f"Stochastic Optimizer: Maximum iterations ({max_iter}) reached and the optimization "
            "hasn't converged yet.",
            ConvergenceWarning,
            stacklevel=5,
        )

    def _set_sgd_rate(self, model: Sequential, rate: float) -> None:
        """Change the SGD learning rate between epochs (the next epochs' fit calls pass it),
        keeping scikit-learn's momentum.

        scikit-learn's velocity has the learning rate folded in (``v = mu v - lr g``), fastbp's
        buffer does not (``buf = mu buf + g``, step ``lr buf``); rescaling the buffer by
        ``old / new`` makes the next steps identical to scikit-learn's.
        """
        momentum = model.state.m
        if momentum.size and rate != self._learning_rate:
            momentum *= model.dtype.type(self._learning_rate / rate)
        self._learning_rate = rate

    def _update_no_improvement_count(self, tol: float, val: _Data | None) -> None:
        if val is not None:
            score = self._score_val(val)
            self.validation_scores_.append(score)
            if self.verbose:
                print(f"Validation score: {score:f}")
            if score < self.best_validation_score_ + tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_weights = self._model.get_weights()
        else:
            last = self.loss_curve_[-1]
            if last > self.best_loss_ - tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if last < self.best_loss_:
                self.best_loss_ = last

    def fit(self, X: object, y: object, sample_weight: object = None) -> _BaseMLP:
        """Fit the model to data matrix X and target(s) y.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            The input data (dense; converted to the estimator's ``dtype``).
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            The target values (class labels in classification, real numbers in regression).
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative sample weights, as scikit-learn's: each batch's loss is the
            weighted mean over its rows.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        return self._fit(X, y, sample_weight, incremental=False)

    # ------------------------------------------------------------------ prediction
    def _forward(self, X: object) -> np.ndarray:
        """Network output through the output activation, (n_samples, n_outputs_), in X's
        float dtype (float64 unless X is float32), as scikit-learn's."""
        check_is_fitted(self)
        model = self._network()
        if (
            type(X) is np.ndarray
            and X.dtype in _FLOATS
            and X.ndim == 2
            and X.shape[0] > 0
            and X.shape[1] == self.n_features_in_
            and not hasattr(self, "feature_names_in_")
        ):
            # what validate_data would accept unchanged: skip its ~60 us per call (one-row
            # requests in a pipeline); Sequential.predict still checks finiteness, and a
            # failure goes through validate_data for scikit-learn's own error
            try:
                return model.predict(X).astype(X.dtype, copy=False)
            except ValueError:
                validate_data(self, X, reset=False, dtype=(np.float64, np.float32), order="C")
                raise
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32), order="C", accept_sparse=_SPARSE)
        out_dtype = X.dtype
        return model.predict(X).astype(out_dtype, copy=False)  # predict converts X to the model's dtype

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


_PARAMS_DOC = """
    Parameters
    ----------
    hidden_layer_sizes : array-like of shape (n_layers - 2,), default=(100,)
        The ith element is the number of neurons in the ith hidden layer.
    activation : str, default='relu'
        Hidden activation: scikit-learn's 'identity', 'logistic', 'tanh', 'relu', or any
        fastbp activation ('sigmoid', 'leaky_relu', 'elu', 'gelu', 'softplus', 'silu').
    solver : {'adam', 'sgd', 'lbfgs'}, default='adam'
        'lbfgs' is scipy's L-BFGS-B over the whole training set (no batches, no
        ``partial_fit``, no early stopping), minimising scikit-learn's objective.
    alpha : float, default=0.0001
        Strength of the L2 regularization term, divided by the batch size (by the
        number of samples, or their total weight, for 'lbfgs').
    batch_size : int or 'auto', default='auto'
        Mini-batch size; 'auto' is ``min(200, n_samples)``.
    learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
        Learning-rate schedule of solver='sgd', as scikit-learn's.
    learning_rate_init : float, default=0.001
    power_t : float, default=0.5
        Exponent of 'invscaling': ``learning_rate_init / (t + 1) ** power_t``, t = samples seen.
    max_iter : int, default=200
        Maximum number of epochs (of L-BFGS iterations for 'lbfgs').
    shuffle : bool, default=True
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights, the early-stopping split and fastbp's shuffling.
    tol : float, default=1e-4
    verbose : bool or int, default=False
    warm_start : bool, default=False
    momentum : float, default=0.9
        SGD momentum, in [0, 1).
    nesterovs_momentum : bool, default=True
    early_stopping : bool, default=False
    validation_fraction : float, default=0.1
    beta_1, beta_2, epsilon : float, default=0.9, 0.999, 1e-8
        Adam's parameters.
    n_iter_no_change : int, default=10
    max_fun : int, default=15000
        'lbfgs' only: the most loss evaluations (scikit-learn's meaning).
    dtype : {'float32', 'float64'} or None, default='float32'
        fastbp's compute dtype; None follows ``X`` (float64 unless X is float32).
    dropout : float in [0, 1), default=0.0
        fastbp's inverted dropout after every hidden layer during training (0: none;
        stochastic solvers only).
"""


_CLASSIFIER_DOC = (
    """Multi-layer perceptron classifier trained by fastbp; a drop-in for scikit-learn's.

    Multiclass targets train a softmax output with cross-entropy; two classes train one
    logistic output, and a multi-label indicator matrix one logistic output per label
    (binary cross-entropy), with scikit-learn's ``LabelBinarizer`` semantics: ``classes_``
    may hold any labels (ints, strings).
    """ + _PARAMS_DOC + """
    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    coefs_ : list of ndarray of shape (n_in, n_out)
        Weight matrices, live views of the network's parameters.
    intercepts_ : list of ndarray of shape (n_out,)
    loss_, best_loss_, loss_curve_, validation_scores_, best_validation_score_, t_,
    n_iter_, n_layers_, n_outputs_, out_activation_, n_features_in_, feature_names_in_
        As scikit-learn's ``MLPClassifier``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastbp.sklearn import MLPClassifier
    >>> X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]] * 8, dtype=float)
    >>> y = np.array(["no", "yes", "yes", "no"] * 8)
    >>> clf = MLPClassifier((16,), activation="tanh", learning_rate_init=0.05, random_state=0).fit(X, y)
    >>> clf.predict([[0, 1], [1, 1]])
    array(['yes', 'no'], dtype='<U3')
    """
)


class MLPClassifier(ClassifierMixin, _BaseMLP):
    __doc__ = _CLASSIFIER_DOC

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        dtype="float32",
        dropout=0.0,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype
        self.dropout = dropout

    def _output_spec(self) -> tuple[str, str, float, float]:
        if self._binarizer.y_type_ == "multiclass":
            return "cross_entropy", "softmax", 1.0, 1.0
        k = float(self.n_outputs_)  # binary: k = 1; multi-label: log-loss summed over labels
        return "binary_cross_entropy", "logistic", k, k

    def _fit_targets(self, Y: np.ndarray) -> np.ndarray:
        if self._binarizer.y_type_ == "multiclass":
            return Y.argmax(axis=1)
        return Y.astype(self._model.dtype)

    def _validate_input(self, X, y, incremental, reset, dtype):
        X, y = validate_data(
            self, X, y, multi_output=True, dtype=(np.float32, np.float64) if dtype is None else dtype,
            order="C", reset=reset, accept_sparse=_SPARSE,
        )  # fmt: skip
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            binarizer = LabelBinarizer().fit(y)
            self._binarizer = binarizer
            self.classes_ = binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same classes as in the previous call to "
                        f"fit. Previously got {self.classes_}, `y` has {classes}"
                    )
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(f"`y` has classes not in `self.classes_`. `self.classes_` has {self.classes_}. "
                                 f"'y' has {classes}.")  # fmt: skip
        Y = self._binarizer.transform(y).astype(bool)
        return X, Y

    def _score_val(self, val: _Data) -> float:
        proba = self._model.predict(val.X)
        if not np.isfinite(proba).all():
            return np.nan
        return float(accuracy_score(self._labels(val.Y.astype(float)), self._labels(proba), sample_weight=val.sw))

    def _labels(self, out: np.ndarray) -> np.ndarray:
        if self.n_outputs_ == 1:
            out = out.ravel()
        if self._binarizer.y_type_ == "multiclass":
            # LabelBinarizer.inverse_transform's own rule for multiclass, without its ~50 us of checks
            return self._binarizer.classes_.take(out.argmax(axis=1), mode="clip")
        return self._binarizer.inverse_transform(out)

    @available_if(lambda est: est._check_solver())
    def partial_fit(
        self, X: object, y: object, sample_weight: object = None, classes: object = None
    ) -> MLPClassifier:  # fmt: skip
        """Update the model with one epoch over the given data.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_labels)
        sample_weight : array-like of shape (n_samples,), default=None
        classes : array-like of shape (n_classes,), default=None
            Every class of all calls; required on the first call (unless ``y`` is a
            multi-label indicator matrix), may be omitted afterwards.

        Returns
        -------
        self : object
        """
        if not hasattr(self, "classes_"):
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
            binarizer = LabelBinarizer()
            binarizer.fit(y if type_of_target(y).startswith("multilabel") else classes)
            self._binarizer = binarizer
            self.classes_ = binarizer.classes_
        elif classes is not None and not np.array_equal(self.classes_, unique_labels(classes)):
            raise ValueError(
                f"`classes={classes!r}` is not the same as on last call to partial_fit, was: {self.classes_!r}"
            )
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X: object) -> np.ndarray:
        """Predicted classes, shape (n_samples,) (or (n_samples, n_labels) for multi-label)."""
        return self._labels(self._forward(X))

    def predict_proba(self, X: object) -> np.ndarray:
        """Class probabilities, shape (n_samples, n_classes), in the order of ``classes_``."""
        out = self._forward(X)
        if self.n_outputs_ == 1:
            return np.hstack([1 - out, out])
        return out

    def predict_log_proba(self, X: object) -> np.ndarray:
        """``log(predict_proba(X))``."""
        proba = self.predict_proba(X)
        return np.log(proba, out=proba)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


_REGRESSOR_DOC = (
    """Multi-layer perceptron regressor trained by fastbp; a drop-in for scikit-learn's.

    ``loss='squared_error'`` trains a linear output on fastbp's ``mse``; ``loss='poisson'``
    an exponential output (log link) on fastbp's ``poisson`` loss, for targets ``y >= 0``.
    ``loss_`` reports half the squared error / half the Poisson deviance, as scikit-learn.

    Parameters
    ----------
    loss : {'squared_error', 'poisson'}, default='squared_error'
    """ + _PARAMS_DOC.split("----------\n", 1)[1] + """
    Attributes
    ----------
    coefs_ : list of ndarray of shape (n_in, n_out)
        Weight matrices, live views of the network's parameters.
    intercepts_ : list of ndarray of shape (n_out,)
    loss_, best_loss_, loss_curve_, validation_scores_, best_validation_score_, t_,
    n_iter_, n_layers_, n_outputs_, out_activation_, n_features_in_, feature_names_in_
        As scikit-learn's ``MLPRegressor``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastbp.sklearn import MLPRegressor
    >>> X = np.linspace(-1, 1, 256).reshape(-1, 1)
    >>> y = np.sin(3 * X.ravel())
    >>> reg = MLPRegressor(hidden_layer_sizes=(32,), activation="tanh", batch_size=32, learning_rate_init=0.01,
    ...                    random_state=0).fit(X, y)
    >>> bool(reg.score(X, y) > 0.98)
    True
    """
)


class MLPRegressor(RegressorMixin, _BaseMLP):
    __doc__ = _REGRESSOR_DOC

    def __init__(
        self,
        loss="squared_error",
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        dtype="float32",
        dropout=0.0,
    ) -> None:
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype
        self.dropout = dropout

    def _output_spec(self) -> tuple[str, str, float, float]:
        k = float(self.n_outputs_)
        if self._loss == "poisson":
            # sklearn: half deviance summed over outputs, gradient (exp(z) - y)/n; fastbp: mean over n*k
            return "poisson", "exp", k, k
        # sklearn: 0.5 * mean squared error, gradient (p - y)/n summed over outputs; fastbp: 2(p - y)/(n k)
        return "mse", "identity", k / 2.0, 0.5

    def _fit_targets(self, Y: np.ndarray) -> np.ndarray:
        return Y

    def _validate_input(self, X, y, incremental, reset, dtype):
        self._loss = _check_option(self, "loss", _REGRESSION_LOSSES)
        X, y = validate_data(
            self, X, y, multi_output=True, y_numeric=True, order="C", accept_sparse=_SPARSE,
            dtype=(np.float32, np.float64) if dtype is None else dtype, reset=reset,
        )  # fmt: skip
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        Y = np.ascontiguousarray(y.reshape(y.shape[0], -1), dtype=X.dtype)
        if self._loss == "poisson" and Y.min() < 0:
            raise ValueError(f"loss='poisson' requires y >= 0, got a minimum of {Y.min()!r}")
        return X, Y

    def _score_val(self, val: _Data) -> float:
        pred = self._model.predict(val.X)
        if not np.isfinite(pred).all():
            return np.nan
        return float(r2_score(val.Y, pred, sample_weight=val.sw))

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X: object, y: object, sample_weight: object = None) -> MLPRegressor:
        """Update the model with one epoch over the given data.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : object
        """
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X: object) -> np.ndarray:
        """Predicted values, shape (n_samples,) (or (n_samples, n_outputs) for several)."""
        out = self._forward(X)
        return out.ravel() if out.shape[1] == 1 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.positive_only = self.loss == "poisson"
        return tags
