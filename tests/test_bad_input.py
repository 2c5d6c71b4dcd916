"""Hostile input at every public entry point: rejected with a ValueError/TypeError that names
the argument, and a rejected call leaves a trained model exactly as it was.

Complements ``test_api.py`` (which holds a first set of these checks) with breadth: one big
table of bad calls against built, trained models of every loss, each followed by a check of
the weights, the optimizer state and the random generator's state. A second table covers
input that is *converted* rather than rejected (other dtypes, strides, orders, byte orders,
lists): those calls must give exactly the result of the clean array.
"""

from __future__ import annotations

import copy
import inspect
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

import fastbp as fb

LOSSES = sorted(fb.LOSSES)
K = 3  # outputs of every model here
D = 4  # features
N = 40  # rows


# ---------------------------------------------------------------- models, data, snapshots
def make_model(loss: str, dtype: str = "float32", input_dim: int | None = None) -> fb.Sequential:
    return fb.Sequential(
        [fb.Dense(6, activation="tanh", input_dim=input_dim), fb.Dense(K)],
        loss=loss,
        optimizer=fb.Adam(lr=0.01),  # both moment buffers in use: _m and _v are non-trivial
        seed=0,
        dtype=dtype,
    )


def make_data(loss: str, n: int = N, seed: int = 0, dtype: str = "float32") -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, D)).astype(dtype)
    if loss == "cross_entropy":
        y = rng.integers(0, K, n)
    elif loss == "binary_cross_entropy":
        y = (rng.random((n, K)) > 0.5).astype(dtype)
    elif loss == "poisson":
        y = rng.poisson(1.0, (n, K)).astype(dtype)
    else:
        y = rng.standard_normal((n, K)).astype(dtype)
    return X, y


_TRAINED: dict[tuple[str, str], tuple[fb.Sequential, np.ndarray, np.ndarray]] = {}


def trained(loss: str, dtype: str = "float32") -> tuple[fb.Sequential, np.ndarray, np.ndarray]:
    """A model trained for 2 epochs (Adam: non-zero moments, step 6) and its data; each call
    returns a fresh deep copy of one cached model, so hundreds of cases stay fast."""
    key = (loss, dtype)
    if key not in _TRAINED:
        X, y = make_data(loss, dtype=dtype)
        model = make_model(loss, dtype)
        model.fit(X, y, epochs=2, batch_size=16, verbose=0)
        _TRAINED[key] = model, X, y
    model, X, y = _TRAINED[key]
    return copy.deepcopy(model), X.copy(), y.copy()


@dataclass
class Snapshot:
    """Everything a rejected call must leave alone."""

    built: bool
    weights: list[np.ndarray]
    m: np.ndarray | None
    v: np.ndarray | None
    step: int
    rng: dict

    @classmethod
    def of(cls, model: fb.Sequential) -> Snapshot:
        return cls(
            built=model.built,
            weights=[w.copy() for w in model.get_weights()],
            m=None if model._m is None else model._m.copy(),
            v=None if model._v is None else model._v.copy(),
            step=model._step,
            rng=copy.deepcopy(model._rng.bit_generator.state),
        )

    def assert_same(self, model: fb.Sequential) -> None:
        assert model.built == self.built
        now = model.get_weights()
        assert len(now) == len(self.weights)
        for a, b in zip(now, self.weights):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b, strict=True)
        for name, before in (("_m", self.m), ("_v", self.v)):
            after = getattr(model, name)
            if before is None:
                assert after is None
            else:
                np.testing.assert_array_equal(after, before, strict=True)
        assert model._step == self.step
        assert model._rng.bit_generator.state == self.rng


def test_snapshot_detects_changes():
    """The helper itself: one more step of training must be caught."""
    model, X, y = trained("mse")
    snap = Snapshot.of(model)
    snap.assert_same(model)
    model.fit(X, y, epochs=1, verbose=0)
    with pytest.raises(AssertionError):
        snap.assert_same(model)


def _fit_params() -> set[str]:
    return set(inspect.signature(fb.Sequential.fit).parameters)


# ---------------------------------------------------------------- the table of bad calls
@dataclass(frozen=True)
class Bad:
    """One bad call: ``call(model, X, y)`` must raise ``error`` with a message matching ``match``."""

    id: str
    call: Callable
    error: type[Exception] | tuple[type[Exception], ...]
    match: str
    losses: tuple[str, ...] = tuple(LOSSES)
    needs: str | None = None  # a fit parameter that must exist (added by later issues)


def _fit(X, y, model, **kw):
    args = {"epochs": 1, "batch_size": 16, "verbose": 0} | kw
    return model.fit(X, y, **args)


#: X is checked before y and the loss: three losses (labels, float targets, a log link) suffice.
X_LOSSES = ("cross_entropy", "mse", "poisson")

ENTRY_X: dict[str, Callable] = {
    "fit": lambda model, X, y: _fit(X, y, model),
    "predict": lambda model, X, y: model.predict(X),
    "evaluate": lambda model, X, y: model.evaluate(X, y),
    "loss_and_gradients": lambda model, X, y: model.loss_and_gradients(X, y),
}
ENTRY_Y: dict[str, Callable] = {k: v for k, v in ENTRY_X.items() if k != "predict"}


def _ragged(X):
    rows = X.tolist()
    rows[1] = rows[1][:-1]
    return rows


def _one_nan(X):
    X = X.copy()
    X[7, 2] = np.nan
    return X


def _one_neginf(X):
    X = X.copy()
    X[-1, -1] = -np.inf
    return X


# bad X: (id, make(X, y) -> (bad X, y for it), error, match). The y passed along has the right
# length whenever X has a sensible number of rows, so that X itself is what fails.
BAD_X = [
    ("1-D", lambda X: X[:, 0], ValueError, r"X must be 2-D"),
    ("3-D", lambda X: X[:, :, None], ValueError, r"X must be 2-D"),
    ("0-D", lambda X: np.float32(1.0), ValueError, r"X must be 2-D"),
    ("None", lambda X: None, TypeError, r"X must hold real numbers"),
    ("string", lambda X: "X.csv", TypeError, r"X must hold real numbers"),
    ("ragged-list", _ragged, TypeError, r"X must be array-like"),
    ("0-rows", lambda X: X[:0], ValueError, r"X has 0 rows"),
    ("0-columns", lambda X: X[:, :0], ValueError, r"X has 0 columns"),
    ("too-few-features", lambda X: X[:, :3], ValueError, r"X has 3 features, but the model expects 4"),
    ("too-many-features", lambda X: np.hstack([X, X]), ValueError, r"X has 8 features, but the model expects 4"),
    ("all-nan", lambda X: np.full_like(X, np.nan), ValueError, r"X contains NaN or infinity"),
    ("one-nan", _one_nan, ValueError, r"X contains NaN or infinity"),
    ("one-neg-inf", _one_neginf, ValueError, r"X contains NaN or infinity"),
    ("overflows-float32", lambda X: X.astype(np.float64) * 1e300, ValueError, r"X contains NaN or infinity"),
    ("object-numbers", lambda X: X.astype(object), TypeError, r"X must hold real numbers"),
    ("strings", lambda X: X.astype(str), TypeError, r"X must hold real numbers"),
    ("bytes", lambda X: X.astype("S8"), TypeError, r"X must hold real numbers"),
    ("complex", lambda X: X.astype(np.complex64), TypeError, r"X must hold real numbers"),
    ("datetime", lambda X: np.zeros(X.shape, dtype="datetime64[s]"), TypeError, r"X must hold real numbers"),
    ("timedelta", lambda X: np.zeros(X.shape, dtype="timedelta64[s]"), TypeError, r"X must hold real numbers"),
    ("structured", lambda X: np.zeros(X.shape, dtype=[("a", "f4")]), TypeError, r"X must hold real numbers"),
    ("dict", lambda X: {"a": X}, TypeError, r"X must hold real numbers"),
]


def _y_for(loss: str, kind: str, X, y):
    """Bad targets for ``loss``; ``y`` is a good one of the same length."""
    n = len(y)
    if kind == "short":
        return y[:-1]
    if kind == "long":
        return np.concatenate([y, y[:1]])
    if kind == "none":
        return None
    if kind == "strings":
        return np.asarray(y).astype(str)
    if kind == "object":
        return np.asarray(y).astype(object)
    if kind == "complex":
        return np.asarray(y).astype(np.complex128)
    if kind == "3-D":
        return np.asarray(y)[..., None, None] if loss == "cross_entropy" else np.asarray(y)[..., None]
    if kind == "scalar":
        return 1.0
    if loss == "cross_entropy":
        return {
            "too-large": np.full(n, K),
            "negative": np.full(n, -1),
            "huge-float": np.full(n, 1e30),  # integer valued, but wraps around in an int64 cast
            "huge-uint64": np.full(n, 2**63, dtype=np.uint64),  # wraps to a negative int64
            "fraction": np.full(n, 0.5),
            "nan": np.full(n, np.nan),
            "inf": np.full(n, np.inf),
            "one-hot": np.eye(K)[np.asarray(y)],
        }[kind]
    yb = np.asarray(y, dtype=np.float64).copy()
    if kind == "nan":
        yb[3, 1] = np.nan
    elif kind == "inf":
        yb[0, 0] = np.inf
    elif kind == "overflows-float32":
        yb[0, 0] = 1e300
    elif kind == "too-few-columns":
        yb = yb[:, :2]
    elif kind == "1-D-for-3-outputs":
        yb = yb[:, 0]
    elif kind == "above-1":
        yb[0, 0] = 1.5
    elif kind == "below-0":
        yb[0, 0] = -0.5
    else:
        raise KeyError(kind)
    return yb


COMMON_Y = [
    ("short", ValueError, r"X and y have different lengths"),
    ("long", ValueError, r"X and y have different lengths"),
    ("none", (TypeError, ValueError), r"\by\b"),
    ("strings", TypeError, r"\by\b"),
    ("object", TypeError, r"\by\b"),
    ("complex", TypeError, r"\by\b"),
    ("3-D", ValueError, r"\by\b"),
    ("scalar", ValueError, r"\by\b"),
]
BAD_Y = {
    "cross_entropy": COMMON_Y
    + [
        ("too-large", ValueError, r"y labels must be in 0\.\.2"),
        ("negative", ValueError, r"y labels must be in 0\.\.2"),
        ("huge-float", ValueError, r"y labels must be in 0\.\.2 .*1e\+30"),
        ("huge-uint64", ValueError, r"y labels must be in 0\.\.2 .*9223372036854775808"),
        ("fraction", TypeError, r"y must hold integer class labels"),
        ("nan", TypeError, r"y must hold integer class labels"),
        ("inf", TypeError, r"y must hold integer class labels"),
        ("one-hot", ValueError, r"y must be 1-D integer class labels"),
    ],
    "binary_cross_entropy": COMMON_Y
    + [
        ("nan", ValueError, r"y contains NaN"),
        ("inf", ValueError, r"y contains NaN"),
        ("too-few-columns", ValueError, r"y must have shape \(n_samples, 3\)"),
        ("1-D-for-3-outputs", ValueError, r"y has shape \(40,\), but the last layer has 3 units"),
        ("above-1", ValueError, r"y must be in \[0, 1\]"),
        ("below-0", ValueError, r"y must be in \[0, 1\]"),
    ],
}
for _loss in ("mse", "huber", "poisson"):
    BAD_Y[_loss] = COMMON_Y + [
        ("nan", ValueError, r"y contains NaN"),
        ("inf", ValueError, r"y contains NaN"),
        ("overflows-float32", ValueError, r"y contains NaN or infinity \(after conversion to float32\)"),
        ("too-few-columns", ValueError, r"y must have shape \(n_samples, 3\)"),
        ("1-D-for-3-outputs", ValueError, r"y has shape \(40,\), but the last layer has 3 units"),
    ]
BAD_Y["poisson"].append(("below-0", ValueError, r"\by\b"))  # counts/rates: y >= 0

# bad fit keyword arguments: (id, kwargs, error, match, parameter that must exist)
BAD_FIT_KW = [
    ("epochs-0", {"epochs": 0}, ValueError, r"epochs must be >= 1", None),
    ("epochs-negative", {"epochs": -2}, ValueError, r"epochs must be >= 1", None),
    ("epochs-float", {"epochs": 2.0}, TypeError, r"epochs must be an int", None),
    ("epochs-bool", {"epochs": True}, TypeError, r"epochs must be an int", None),
    ("epochs-str", {"epochs": "3"}, TypeError, r"epochs must be an int", None),
    ("epochs-None", {"epochs": None}, TypeError, r"epochs must be an int", None),
    ("batch_size-0", {"batch_size": 0}, ValueError, r"batch_size must be >= 1", None),
    ("batch_size-negative", {"batch_size": -16}, ValueError, r"batch_size must be >= 1", None),
    ("batch_size-float", {"batch_size": 16.0}, TypeError, r"batch_size must be an int", None),
    ("batch_size-bool", {"batch_size": False}, TypeError, r"batch_size must be an int", None),
    ("batch_size-array", {"batch_size": np.array([16])}, TypeError, r"batch_size must be an int", None),
    ("shuffle-str", {"shuffle": "yes"}, TypeError, r"shuffle must be a bool", None),
    ("shuffle-int", {"shuffle": 1}, TypeError, r"shuffle must be a bool", None),
    ("verbose-negative", {"verbose": -1}, ValueError, r"verbose", None),
    ("verbose-str", {"verbose": "loud"}, TypeError, r"verbose", None),
    # parameters added by the fit issue: checked once they exist
    ("validation_split-1", {"validation_split": 1.0}, ValueError, r"validation_split", "validation_split"),
    ("validation_split-negative", {"validation_split": -0.1}, ValueError, r"validation_split", "validation_split"),
    ("validation_split-str", {"validation_split": "0.1"}, TypeError, r"validation_split", "validation_split"),
    ("validation_data-not-pair", {"validation_data": "val"}, (TypeError, ValueError), r"validation_data",
     "validation_data"),
    ("validation_data-triple", {"validation_data": (1, 2, 3, 4)}, (TypeError, ValueError), r"validation_data",
     "validation_data"),
    ("sample_weight-short", {"sample_weight": np.ones(N - 1)}, ValueError, r"sample_weight", "sample_weight"),
    ("sample_weight-negative", {"sample_weight": -np.ones(N)}, ValueError, r"sample_weight", "sample_weight"),
    ("sample_weight-nan", {"sample_weight": np.full(N, np.nan)}, ValueError, r"sample_weight", "sample_weight"),
    ("sample_weight-2-D", {"sample_weight": np.ones((N, 2))}, ValueError, r"sample_weight", "sample_weight"),
    ("sample_weight-strings", {"sample_weight": np.array(["1"] * N)}, TypeError, r"sample_weight", "sample_weight"),
    ("initial_epoch-negative", {"initial_epoch": -1}, ValueError, r"initial_epoch", "initial_epoch"),
    ("initial_epoch-float", {"initial_epoch": 0.5}, TypeError, r"initial_epoch", "initial_epoch"),
    ("callbacks-str", {"callbacks": "early_stopping"}, TypeError, r"callbacks", "callbacks"),
    ("callbacks-not-callback", {"callbacks": [object()]}, TypeError, r"callbacks", "callbacks"),
]
BAD_CLASS_WEIGHT = [
    ("class_weight-unknown-class", {"class_weight": {7: 2.0}}, ValueError, r"class_weight", "class_weight"),
    ("class_weight-negative", {"class_weight": {0: -1.0}}, ValueError, r"class_weight", "class_weight"),
    ("class_weight-list-of-str", {"class_weight": "balanced!"}, (TypeError, ValueError), r"class_weight",
     "class_weight"),
]


def _bad_calls() -> list[Bad]:
    cases: list[Bad] = []
    for xid, make, err, match in BAD_X:
        for entry, call in ENTRY_X.items():

            def run(model, X, y, make=make, call=call):
                return call(model, make(X), y)

            cases.append(Bad(f"{entry}-X-{xid}", run, err, match, losses=X_LOSSES))
    for loss, table in BAD_Y.items():
        for kind, err, match in table:
            for entry, call in ENTRY_Y.items():

                def run(model, X, y, kind=kind, call=call, loss=loss):
                    return call(model, X, _y_for(loss, kind, X, y))

                cases.append(Bad(f"{entry}-y-{kind}", run, err, match, losses=(loss,)))
    for kid, kw, err, match, needs in BAD_FIT_KW + BAD_CLASS_WEIGHT:
        losses = ("cross_entropy",) if kid.startswith("class_weight") else ("cross_entropy", "mse")

        def run(model, X, y, kw=kw):
            return _fit(X, y, model, **kw)

        cases.append(Bad(f"fit-{kid}", run, err, match, losses=losses, needs=needs))
    # the same bad X inside validation_data is checked like X
    for xid, make, err, _match in BAD_X[:14]:

        def run(model, X, y, make=make):
            return _fit(X, y, model, validation_data=(make(X), y))

        cases.append(Bad(f"fit-validation_data-X-{xid}", run, err, r"X|validation", losses=("mse",),
                         needs="validation_data"))
    cases += [
        Bad("build-other-width", lambda m, X, y: m.build(5), ValueError, r"built for 4 features, got 5"),
        Bad("build-0", lambda m, X, y: m.build(0), ValueError, r"n_features must be >= 1"),
        Bad("build-float", lambda m, X, y: m.build(4.0), TypeError, r"n_features must be an int"),
        Bad("build-bool", lambda m, X, y: m.build(True), TypeError, r"n_features must be an int"),
        Bad("build-None", lambda m, X, y: m.build(None), TypeError, r"n_features must be an int"),
        Bad("build-str", lambda m, X, y: m.build("4"), TypeError, r"n_features must be an int"),
    ]
    cases += [Bad(f"set_weights-{sid}", _set_weights_call(make), err, match) for sid, make, err, match in BAD_WEIGHTS]
    return cases


def _weights_like(model):
    return [w.astype(np.float64) for w in model.get_weights()]


def _replace(i, value):
    def make(model):
        ws = _weights_like(model)
        ws[i] = value(ws[i]) if callable(value) else value
        return ws

    return make


def _set_weights_call(make):
    def run(model, X, y):
        return model.set_weights(make(model))

    return run


BAD_WEIGHTS = [
    ("None", lambda m: None, TypeError, r"weights must be a list of arrays"),
    ("dict", lambda m: dict(enumerate(_weights_like(m))), TypeError, r"weights must be a list of arrays"),
    ("generator", lambda m: (w for w in _weights_like(m)), TypeError, r"weights must be a list of arrays"),
    ("one-array", lambda m: _weights_like(m)[0], TypeError, r"weights must be a list of arrays"),
    ("string", lambda m: "weights.npz", TypeError, r"weights must be a list of arrays"),
    ("too-few", lambda m: _weights_like(m)[:3], ValueError, r"weights must hold 4 arrays"),
    ("too-many", lambda m: _weights_like(m) + [np.zeros(3)], ValueError, r"weights must hold 4 arrays"),
    ("empty", lambda m: [], ValueError, r"weights must hold 4 arrays"),
    ("W-transposed", _replace(0, lambda w: w.T), ValueError, r"weights\[0\] must have shape \(4, 6\)"),
    ("W-flat", _replace(0, lambda w: w.ravel()), ValueError, r"weights\[0\] must have shape"),
    ("b-2-D", _replace(1, lambda b: b[None, :]), ValueError, r"weights\[1\] must have shape \(6,\)"),
    ("b-short", _replace(3, lambda b: b[:-1]), ValueError, r"weights\[3\] must have shape \(3,\)"),
    ("b-scalar", _replace(3, 0.0), ValueError, r"weights\[3\] must have shape"),
    ("entry-None", _replace(2, None), (TypeError, ValueError), r"weights\[2\]"),
    ("W-nan", _replace(2, lambda w: np.where(w > 0, np.nan, w)), ValueError, r"weights\[2\] contains NaN"),
    ("b-inf", _replace(1, lambda b: np.full_like(b, np.inf)), ValueError, r"weights\[1\] contains NaN"),
    ("W-overflows-float32", _replace(0, lambda w: w * 1e300), ValueError, r"weights\[0\] contains NaN"),
    ("W-complex", _replace(0, lambda w: w.astype(np.complex128)), TypeError, r"weights\[0\] must hold real"),
    ("W-object", _replace(2, lambda w: w.astype(object)), TypeError, r"weights\[2\] must hold real"),
    ("b-strings", _replace(3, lambda b: b.astype(str)), TypeError, r"weights\[3\] must hold real"),
    ("last-array-bad", _replace(3, lambda b: np.full_like(b, np.nan)), ValueError, r"weights\[3\]"),
]

BAD_CALLS = _bad_calls()
_PARAMS = [pytest.param(case, loss, id=f"{case.id}[{loss}]") for case in BAD_CALLS for loss in case.losses]
N_BAD_CALL_CASES = len(_PARAMS)


@pytest.mark.parametrize("case, loss", _PARAMS)
def test_bad_call_is_rejected_and_changes_nothing(case: Bad, loss: str):
    if loss not in fb.LOSSES:
        pytest.skip(f"loss {loss!r} is not in this version of fastbp")
    if case.needs is not None and case.needs not in _fit_params():
        pytest.skip(f"fit has no {case.needs!r} parameter in this version")
    model, X, y = trained(loss)
    snap = Snapshot.of(model)
    with warnings.catch_warnings():
        if not case.id.startswith("set_weights"):  # see test_set_weights_overflow_gives_no_warning
            warnings.simplefilter("error")  # a RuntimeWarning from a cast is not a clean rejection
        with pytest.raises(case.error, match=case.match):
            case.call(model, X, y)
    snap.assert_same(model)


# ---------------------------------------------------------------- unbuilt models stay unbuilt
UNBUILT = [
    ("fit-X-nan", lambda m, X, y: _fit(_one_nan(X), y, m), ValueError, r"X contains NaN"),
    ("fit-y-short", lambda m, X, y: _fit(X, y[:-1], m), ValueError, r"different lengths"),
    ("fit-epochs-0", lambda m, X, y: _fit(X, y, m, epochs=0), ValueError, r"epochs"),
    ("fit-batch_size-0", lambda m, X, y: _fit(X, y, m, batch_size=0), ValueError, r"batch_size"),
    ("fit-X-wider-than-input_dim", lambda m, X, y: _fit(np.hstack([X, X]), y, m), ValueError, r"8 features"),
    ("predict-X-3-D", lambda m, X, y: m.predict(X[None]), ValueError, r"X must be 2-D"),
    ("predict-X-wider-than-input_dim", lambda m, X, y: m.predict(X[:, :2]), ValueError, r"2 features"),
    ("evaluate-y-strings", lambda m, X, y: m.evaluate(X, np.asarray(y).astype(str)), TypeError, r"\by\b"),
    ("loss_and_gradients-X-str", lambda m, X, y: m.loss_and_gradients(X.astype(str), y), TypeError, r"\bX\b"),
    ("set_weights-W0-1-D", lambda m, X, y: m.set_weights([np.zeros(4), np.zeros(6), np.zeros((6, 3)),
                                                           np.zeros(3)]), ValueError, r"weights\[0\]"),
    ("set_weights-W0-vs-input_dim", lambda m, X, y: m.set_weights([np.zeros((5, 6)), np.zeros(6),
                                                                    np.zeros((6, 3)), np.zeros(3)]),
     ValueError, r"weights\[0\] must have shape \(4, 6\)"),
    ("set_weights-last-nan", lambda m, X, y: m.set_weights([np.zeros((4, 6)), np.zeros(6), np.zeros((6, 3)),
                                                             np.full(3, np.nan)]), ValueError, r"weights\[3\]"),
    ("build-0", lambda m, X, y: m.build(0), ValueError, r"n_features"),
    ("build-vs-input_dim", lambda m, X, y: m.build(7), ValueError, r"input_dim=4"),
]


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("call, error, match", [u[1:] for u in UNBUILT], ids=[u[0] for u in UNBUILT])
def test_rejected_call_leaves_unbuilt_model_unbuilt(loss, call, error, match):
    X, y = make_data(loss)
    model = make_model(loss, input_dim=4)
    snap = Snapshot.of(model)
    with pytest.raises(error, match=match):
        call(model, X, y)
    snap.assert_same(model)
    assert model.count_params() == 0
    # and the model still trains exactly as a fresh one does
    fresh = make_model(loss, input_dim=4)
    model.fit(X, y, epochs=1, verbose=0)
    fresh.fit(X, y, epochs=1, verbose=0)
    for a, b in zip(model.get_weights(), fresh.get_weights()):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- constructors
def _opt_params(cls) -> set[str]:
    return set(inspect.signature(cls).parameters)


BAD_CONSTRUCTORS = [
    # Dense
    ("Dense-units-bool", lambda: fb.Dense(True), TypeError, r"units must be an int"),
    ("Dense-units-negative", lambda: fb.Dense(-4), ValueError, r"units must be >= 1"),
    ("Dense-units-None", lambda: fb.Dense(None), TypeError, r"units must be an int"),
    ("Dense-units-str", lambda: fb.Dense("8"), TypeError, r"units must be an int"),
    ("Dense-units-np-float", lambda: fb.Dense(np.float64(8.0)), TypeError, r"units must be an int"),
    ("Dense-activation-empty", lambda: fb.Dense(3, activation=""), ValueError, r"unknown activation ''"),
    ("Dense-activation-case", lambda: fb.Dense(3, activation="ReLU"), ValueError, r"unknown activation 'ReLU'"),
    ("Dense-activation-list", lambda: fb.Dense(3, activation=["relu"]), TypeError, r"activation must be a str"),
    ("Dense-activation-callable", lambda: fb.Dense(3, activation=np.tanh), TypeError, r"activation must be a str"),
    ("Dense-kernel_init-None", lambda: fb.Dense(3, kernel_init=None), (TypeError, ValueError), r"kernel_init"),
    ("Dense-kernel_init-unknown", lambda: fb.Dense(3, kernel_init="lecun"), ValueError, r"kernel_init"),
    ("Dense-bias_init-nan", lambda: fb.Dense(3, bias_init=float("nan")), ValueError, r"bias_init"),
    ("Dense-bias_init-bool", lambda: fb.Dense(3, bias_init=True), (TypeError, ValueError), r"bias_init"),
    ("Dense-bias_init-None", lambda: fb.Dense(3, bias_init=None), (TypeError, ValueError), r"bias_init"),
    ("Dense-bias_init-list", lambda: fb.Dense(3, bias_init=[0.1]), (TypeError, ValueError), r"bias_init"),
    ("Dense-input_dim-0", lambda: fb.Dense(3, input_dim=0), ValueError, r"input_dim must be >= 1"),
    ("Dense-input_dim-float", lambda: fb.Dense(3, input_dim=4.0), TypeError, r"input_dim must be an int"),
    ("Dense-input_dim-bool", lambda: fb.Dense(3, input_dim=True), TypeError, r"input_dim must be an int"),
    # Sequential
    ("Sequential-loss-int", lambda: fb.Sequential([fb.Dense(3)], loss=1), (TypeError, ValueError), r"loss"),
    ("Sequential-loss-case", lambda: fb.Sequential([fb.Dense(3)], loss="MSE"), ValueError, r"unknown loss 'MSE'"),
    ("Sequential-loss-list", lambda: fb.Sequential([fb.Dense(3)], loss=["mse"]), (TypeError, ValueError), r"loss"),
    ("Sequential-optimizer-None", lambda: fb.Sequential([fb.Dense(3)], loss="mse", optimizer=None), TypeError,
     r"optimizer must be"),
    ("Sequential-optimizer-class", lambda: fb.Sequential([fb.Dense(3)], loss="mse", optimizer=fb.Adam), TypeError,
     r"optimizer must be"),
    ("Sequential-optimizer-empty", lambda: fb.Sequential([fb.Dense(3)], loss="mse", optimizer=""), ValueError,
     r"unknown optimizer ''"),
    ("Sequential-dtype-None", lambda: fb.Sequential([fb.Dense(3)], loss="mse", dtype=None), TypeError, r"dtype"),
    ("Sequential-dtype-int", lambda: fb.Sequential([fb.Dense(3)], loss="mse", dtype="int32"), ValueError, r"dtype"),
    ("Sequential-dtype-bool", lambda: fb.Sequential([fb.Dense(3)], loss="mse", dtype=bool), ValueError, r"dtype"),
    ("Sequential-dtype-complex", lambda: fb.Sequential([fb.Dense(3)], loss="mse", dtype=np.complex64), ValueError,
     r"dtype"),
    ("Sequential-dtype-bogus", lambda: fb.Sequential([fb.Dense(3)], loss="mse", dtype="bogus"), TypeError, r"dtype"),
    ("Sequential-seed-bool", lambda: fb.Sequential([fb.Dense(3)], loss="mse", seed=True), TypeError,
     r"seed must be an int"),
    ("Sequential-seed-float", lambda: fb.Sequential([fb.Dense(3)], loss="mse", seed=1.5), TypeError,
     r"seed must be an int"),
    ("Sequential-seed-str", lambda: fb.Sequential([fb.Dense(3)], loss="mse", seed="0"), TypeError,
     r"seed must be an int"),
    ("Sequential-seed-np-negative", lambda: fb.Sequential([fb.Dense(3)], loss="mse", seed=np.int64(-5)), ValueError,
     r"seed must be >= 0"),
    ("Sequential-metrics-str", lambda: fb.Sequential([fb.Dense(3)], loss="mse", metrics="mae"), TypeError,
     r"metrics must be a list"),
    ("Sequential-metrics-unknown", lambda: fb.Sequential([fb.Dense(3)], loss="mse", metrics=["r2"]), ValueError,
     r"unknown metric 'r2'"),
    ("Sequential-metrics-None-entry", lambda: fb.Sequential([fb.Dense(3)], loss="mse", metrics=[None]), ValueError,
     r"unknown metric None"),
    ("Sequential-metrics-accuracy-for-mse", lambda: fb.Sequential([fb.Dense(3)], loss="mse", metrics=["accuracy"]),
     ValueError, r"accuracy"),
    ("Sequential-layers-str", lambda: fb.Sequential("dense", loss="mse"), TypeError, r"layers"),
    ("Sequential-layers-class", lambda: fb.Sequential([fb.Dense], loss="mse"), TypeError, r"layers"),
    ("Sequential-layers-mixed", lambda: fb.Sequential([fb.Dense(3), None], loss="mse"), TypeError, r"layers"),
    ("set_num_threads-negative", lambda: fb.set_num_threads(-1), ValueError, r"between 1 and"),
    ("set_num_threads-bool", lambda: fb.set_num_threads(True), TypeError, r"must be an int"),
    ("set_num_threads-str", lambda: fb.set_num_threads("2"), TypeError, r"must be an int"),
    ("set_num_threads-None", lambda: fb.set_num_threads(None), TypeError, r"must be an int"),
]

# every optimizer: each hyper-parameter with values of the wrong kind and out of range
OPTIMIZERS = {"SGD": fb.SGD, "Adam": fb.Adam, "AdamW": fb.AdamW, "RMSprop": fb.RMSprop}
BAD_HYPER = {
    "lr": [(0, ValueError), (-0.1, ValueError), (float("nan"), ValueError), (float("inf"), ValueError),
           (True, TypeError), ("0.1", TypeError), (None, TypeError), ([0.1], TypeError)],
    "momentum": [(-0.1, ValueError), (1.0, ValueError), (1.5, ValueError), (float("nan"), ValueError),
                 (True, TypeError)],
    "beta1": [(-0.1, ValueError), (1.0, ValueError), (float("nan"), ValueError), ("0.9", TypeError)],
    "beta2": [(-1e-9, ValueError), (1.0, ValueError), (2.0, ValueError), (None, TypeError)],
    "alpha": [(-0.1, ValueError), (1.0, ValueError), (float("inf"), ValueError), (False, TypeError)],
    "eps": [(0, ValueError), (-1e-8, ValueError), (float("nan"), ValueError), (float("inf"), ValueError),
            (True, TypeError)],
    "weight_decay": [(-1e-4, ValueError), (float("nan"), ValueError), (float("inf"), ValueError),
                     ("0", TypeError)],
    "nesterov": [(1, TypeError), ("yes", TypeError), (None, TypeError)],
    "clipnorm": [(0, ValueError), (-1.0, ValueError), (float("nan"), ValueError), (True, TypeError),
                 ("1", TypeError)],
}
for _name, _cls in OPTIMIZERS.items():
    for _param, _values in BAD_HYPER.items():
        if _param not in _opt_params(_cls):  # e.g. clipnorm, before the optimizers have it
            continue
        for _value, _err in _values:

            def _make(cls=_cls, param=_param, value=_value):
                kwargs = {param: value}
                if param == "nesterov":
                    kwargs["momentum"] = 0.9
                return cls(**kwargs)

            BAD_CONSTRUCTORS.append((f"{_name}-{_param}-{_value!r}", _make, _err, rf"\b{_param}\b"))

N_CONSTRUCTOR_CASES = len(BAD_CONSTRUCTORS)


@pytest.mark.parametrize("make, error, match", [c[1:] for c in BAD_CONSTRUCTORS], ids=[c[0] for c in BAD_CONSTRUCTORS])
def test_constructor_rejects(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_set_num_threads_rejection_keeps_setting():
    before = fb.get_num_threads()
    for bad in (0, -1, 10**6, 1.0, True, None, "2"):
        with pytest.raises((TypeError, ValueError), match=r"\bn\b"):
            fb.set_num_threads(bad)
        assert fb.get_num_threads() == before


def test_failed_constructor_leaves_optimizer_reusable():
    """An optimizer object is configuration only: rejecting a model built with it changes nothing."""
    opt = fb.SGD(lr=0.1, momentum=0.9)
    config = opt.get_config()
    with pytest.raises(ValueError, match="unknown loss"):
        fb.Sequential([fb.Dense(2)], loss="hinge", optimizer=opt)
    assert opt.get_config() == config


def test_dense_of_a_built_model_cannot_be_reused():
    model, _, _ = trained("mse")
    with pytest.raises(ValueError, match="already belongs to a built model"):
        fb.Sequential([model[0]], loss="mse")


# ---------------------------------------------------------------- gaps found by this suite, fixed in the core
def test_single_dense_instead_of_list_names_layers():
    with pytest.raises(TypeError, match=r"layers must be a list"):
        fb.Sequential(fb.Dense(3), loss="mse")


def test_set_weights_ragged_entry_names_index():
    model, _, _ = trained("mse")
    snap = Snapshot.of(model)
    weights = _weights_like(model)
    weights[3] = [0.0, [1.0, 2.0], 3.0]
    with pytest.raises((TypeError, ValueError), match=r"weights\[3\]"):
        model.set_weights(weights)
    snap.assert_same(model)


def test_bias_init_too_large_for_dtype_is_rejected():
    model = fb.Sequential([fb.Dense(3, bias_init=1e300), fb.Dense(1)], loss="mse", seed=0, dtype="float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="bias_init"):
            model.predict(np.ones((2, 2), dtype=np.float32))


def test_set_weights_overflow_gives_no_warning():
    model, _, _ = trained("mse")
    weights = _weights_like(model)
    weights[0] = weights[0] * 1e300
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"weights\[0\] contains NaN"):
            model.set_weights(weights)


def test_fit_accepts_numpy_bool_shuffle():
    X, y = make_data("mse")
    a, b = make_model("mse"), make_model("mse")
    a.fit(X, y, epochs=1, shuffle=np.bool_(True), verbose=0)
    b.fit(X, y, epochs=1, shuffle=True, verbose=0)
    np.testing.assert_array_equal(a.get_weights()[0], b.get_weights()[0])


# ---------------------------------------------------------------- converted, not rejected
def _strided(X):
    wide = np.zeros((X.shape[0], 2 * X.shape[1]), dtype=X.dtype)
    wide[:, ::2] = X
    return wide[:, ::2]


def _row_strided(X):
    tall = np.zeros((2 * X.shape[0], X.shape[1]), dtype=X.dtype)
    tall[::2] = X
    return tall[::2]


def _negative_stride(X):
    backwards = X[::-1].copy()
    return backwards[::-1]  # the same values as X, through a negative stride


def _matrix(X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        return np.asmatrix(X)


def _readonly(X):
    X = X.copy()
    X.flags.writeable = False
    return X


def _broadcast_row(X):
    return np.broadcast_to(X[:1], X.shape)  # stride 0 along rows, read-only


# (id, make(Xf) -> variant, clean(Xf) -> float32 C array with the same values). Xf is a float32
# array whose values are small integers / halves, so every conversion below is exact.
CONVERTED_X = [
    ("fortran", np.asfortranarray, lambda X: X),
    ("column-strided", _strided, lambda X: X),
    ("row-strided", _row_strided, lambda X: X),
    ("negative-stride", _negative_stride, lambda X: X),
    ("read-only", _readonly, lambda X: X),
    ("broadcast-stride-0", _broadcast_row, lambda X: np.ascontiguousarray(np.broadcast_to(X[:1], X.shape))),
    ("float64", lambda X: X.astype(np.float64), lambda X: X),
    ("float16", lambda X: X.astype(np.float16), lambda X: X),
    ("big-endian", lambda X: X.astype(">f4"), lambda X: X),
    ("int64", lambda X: X.astype(np.int64), lambda X: X.astype(np.int64).astype(np.float32)),
    ("int8", lambda X: X.astype(np.int8), lambda X: X.astype(np.int8).astype(np.float32)),
    ("uint16", lambda X: np.abs(X).astype(np.uint16), lambda X: np.abs(X).astype(np.uint16).astype(np.float32)),
    ("bool", lambda X: X > 0, lambda X: (X > 0).astype(np.float32)),
    ("list", lambda X: X.tolist(), lambda X: X),
    ("tuple-of-tuples", lambda X: tuple(map(tuple, X.tolist())), lambda X: X),
    ("matrix", lambda X: _matrix(X), lambda X: X),
    ("unaligned", lambda X: np.frombuffer(b"\0" + X.tobytes(), dtype=np.float32, offset=1).reshape(X.shape),
     lambda X: X),
    ("negative-zero", lambda X: np.where(X == 0, np.float32(-0.0), X), lambda X: X),
]


def _exact_X(n: int = N, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.integers(-6, 7, (n, D)) / 2).astype(np.float32)


def _results(model, X, y):
    loss, grads = model.loss_and_gradients(X, y)
    return [model.predict(X), np.array(model.evaluate(X, y)), np.array(loss), *grads]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("make, clean", [c[1:] for c in CONVERTED_X], ids=[c[0] for c in CONVERTED_X])
def test_converted_X_gives_identical_results(make, clean, loss, dtype):
    Xf = _exact_X()
    _, y = make_data(loss, dtype=dtype)
    Xc = clean(Xf).astype(dtype)
    # inference on one trained model
    model, _, _ = trained(loss, dtype)
    snap = Snapshot.of(model)
    for got, want in zip(_results(model, make(Xf), y), _results(model, Xc, y)):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
    snap.assert_same(model)
    # training: two fresh models, same seed, bit-identical weights
    a, b = make_model(loss, dtype), make_model(loss, dtype)
    ha = a.fit(make(Xf), y, epochs=2, batch_size=16, verbose=0)
    hb = b.fit(Xc, y, epochs=2, batch_size=16, verbose=0)
    assert ha.history["loss"] == hb.history["loss"]
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


# (id, loss, make(y) -> variant); y is the clean target of make_data(loss)
CONVERTED_Y = [
    ("labels-float", "cross_entropy", lambda y: y.astype(np.float64)),
    ("labels-float32-negative-zero", "cross_entropy", lambda y: np.where(y == 0, -0.0, y).astype(np.float32)),
    ("labels-int8", "cross_entropy", lambda y: y.astype(np.int8)),
    ("labels-uint64", "cross_entropy", lambda y: y.astype(np.uint64)),
    ("labels-column", "cross_entropy", lambda y: y[:, None]),
    ("labels-list", "cross_entropy", lambda y: y.tolist()),
    ("labels-strided", "cross_entropy", lambda y: np.repeat(y, 2)[::2]),
    ("targets-float64", "mse", lambda y: y.astype(np.float64)),
    ("targets-fortran", "mse", np.asfortranarray),
    ("targets-strided", "huber", lambda y: np.repeat(y, 2, axis=1)[:, ::2]),
    ("targets-list", "huber", lambda y: y.tolist()),
    ("targets-big-endian", "mse", lambda y: y.astype(">f8")),
    ("binary-bool", "binary_cross_entropy", lambda y: y > 0.5),
    ("binary-int", "binary_cross_entropy", lambda y: y.astype(np.int32)),
    ("binary-float16", "binary_cross_entropy", lambda y: y.astype(np.float16)),
]


@pytest.mark.parametrize("loss, make", [c[1:] for c in CONVERTED_Y], ids=[c[0] for c in CONVERTED_Y])
def test_converted_y_gives_identical_results(loss, make):
    X, y = make_data(loss)
    model, _, _ = trained(loss)
    for got, want in zip(_results(model, X, make(y)), _results(model, X, y)):
        np.testing.assert_array_equal(got, want)
    a, b = make_model(loss), make_model(loss)
    a.fit(X, make(y), epochs=1, batch_size=8, verbose=0)
    b.fit(X, y, epochs=1, batch_size=8, verbose=0)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_single_output_targets_1d_and_column_agree():
    X, _ = make_data("mse")
    y = X[:, 0] * 0.5
    models = [fb.Sequential([fb.Dense(4, activation="tanh"), fb.Dense(1)], loss="mse", seed=0) for _ in range(2)]
    models[0].fit(X, y, epochs=1, verbose=0)
    models[1].fit(X, y[:, None], epochs=1, verbose=0)
    np.testing.assert_array_equal(models[0].get_weights()[0], models[1].get_weights()[0])
    assert models[0].evaluate(X, y) == models[1].evaluate(X, y[:, None])


def test_float32_c_input_is_not_copied_and_not_modified():
    """The documented no-copy path: predict reads X in place and never writes to it."""
    model, X, y = trained("mse")
    X = _readonly(X)  # a write would raise
    before = X.copy()
    out = model.predict(X)
    model.evaluate(X, y)
    np.testing.assert_array_equal(X, before)
    assert not np.shares_memory(out, X)


def test_pandas_input_is_converted():
    pd = pytest.importorskip("pandas")
    model, X, y = trained("cross_entropy")
    frame = pd.DataFrame(X, columns=list("abcd"))
    np.testing.assert_array_equal(model.predict(frame), model.predict(X))
    assert model.evaluate(frame, pd.Series(y)) == model.evaluate(X, y)


def test_huge_but_finite_values_pass_validation():
    """Validation rejects only non-finite values: float32's largest values are accepted."""
    model, X, y = trained("binary_cross_entropy")
    big = np.full((3, D), np.finfo(np.float32).max, dtype=np.float32)
    out = model.predict(big)
    assert out.shape == (3, K) and np.all((out >= 0) & (out <= 1))
    assert math.isfinite(model.evaluate(np.full((2, D), 1e4, dtype=np.float32), y[:2]))


def test_case_counts():
    """The numbers quoted in the report (and a guard against the table silently shrinking)."""
    assert N_BAD_CALL_CASES >= 400
    assert N_CONSTRUCTOR_CASES >= 140
