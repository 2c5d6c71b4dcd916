"""The public contract: shapes, links, weights round-trips, clear errors, nothing lost."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import net

import fastbp as fb


def _model(loss="cross_entropy", k=3, **kw):
    return net((8,), "relu", k, loss, **kw)


def _data(n=50, d=4, k=3, loss="cross_entropy", seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    if loss == "cross_entropy":
        y = rng.integers(0, k, n)
    elif loss == "binary_cross_entropy":
        y = (rng.random((n, k)) > 0.5).astype(np.float32)
    elif loss == "poisson":
        y = rng.poisson(2.0, (n, k)).astype(np.float32)
    else:
        y = rng.standard_normal((n, k)).astype(np.float32)
    return X, y


def _snapshot(model):
    return [w.copy() for w in model.get_weights()], model._m.copy(), model._v.copy(), model._step


def _assert_unchanged(model, snap):
    weights, m, v, step = snap
    for a, b in zip(model.get_weights(), weights):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(model._m, m)
    np.testing.assert_array_equal(model._v, v)
    assert model._step == step


# ---------------------------------------------------------------- outputs and links
@pytest.mark.parametrize("loss", sorted(fb.LOSSES))
def test_predict_shapes_and_links(loss):
    X, y = _data(loss=loss)
    model = _model(loss=loss)
    model.fit(X, y, epochs=2, batch_size=16)
    out = model.predict(X)
    assert out.shape == (50, 3) and out.dtype == np.float32
    if loss == "cross_entropy":
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    if loss in ("cross_entropy", "binary_cross_entropy"):
        assert np.all((out >= 0) & (out <= 1))
    raw = np.maximum(X @ model.get_weights()[0] + model.get_weights()[1], 0)
    raw = raw @ model.get_weights()[2] + model.get_weights()[3]
    expected = {
        "cross_entropy": np.exp(raw - raw.max(1, keepdims=True))
        / np.exp(raw - raw.max(1, keepdims=True)).sum(1, keepdims=True),
        "binary_cross_entropy": 1 / (1 + np.exp(-raw)),
        "poisson": np.exp(raw),
    }.get(loss, raw)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)


def test_predict_large_input_in_chunks_matches_numpy():
    """More rows than one chunk per thread: every chunk boundary must be right."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3001, 7))
    model = fb.Sequential(
        [fb.Dense(9, activation="silu"), fb.Dense(2, activation="sigmoid")], loss="mse", seed=0, dtype="float64"
    )
    model.build(7)
    w0, b0, w1, b1 = model.get_weights()
    h = X @ w0 + b0
    h = h / (1 + np.exp(-h))
    expected = 1 / (1 + np.exp(-(h @ w1 + b1)))
    np.testing.assert_allclose(model.predict(X), expected, rtol=1e-12)


def test_evaluate_matches_loss_and_gradients_and_changes_nothing():
    X, y = _data()
    model = _model()
    model.fit(X, y, epochs=1)
    snap = _snapshot(model)
    loss, grads = model.loss_and_gradients(X, y)
    assert model.evaluate(X, y) == pytest.approx(loss, rel=1e-5)
    assert [g.shape for g in grads] == [w.shape for w in model.get_weights()]
    _assert_unchanged(model, snap)


def test_regression_y_1d_for_single_output():
    X, _ = _data()
    y = X[:, 0] * 2
    model = fb.Sequential([fb.Dense(4, activation="tanh"), fb.Dense(1)], loss="mse", seed=0)
    model.fit(X, y, epochs=1)
    assert model.predict(X).shape == (50, 1)


# ---------------------------------------------------------------- weights
def test_get_set_weights_round_trip_and_copies():
    X, y = _data()
    a = _model()
    a.fit(X, y, epochs=1)
    weights = a.get_weights()
    assert [w.shape for w in weights] == [(4, 8), (8,), (8, 3), (3,)]
    weights[0][...] = 123.0  # a copy: the model is not affected
    assert not np.any(a.get_weights()[0] == 123.0)
    b = _model()  # unbuilt: set_weights builds it from W0's shape
    b.set_weights(a.get_weights())
    np.testing.assert_array_equal(b.predict(X), a.predict(X))
    assert b.count_params() == 4 * 8 + 8 + 8 * 3 + 3


def test_dense_views_share_model_parameters():
    model = _model()
    model.build(4)
    model[0].w[0, 0] = 5.0
    assert model.get_weights()[0][0, 0] == 5.0


@pytest.mark.parametrize(
    "bad, error, match",
    [
        ("not a list", TypeError, "list of arrays"),
        ([np.zeros((4, 8))], ValueError, "must hold 4 arrays"),
        ([np.zeros((4, 8)), np.zeros(8), np.zeros((8, 2)), np.zeros(3)], ValueError, r"weights\[2\]"),
        ([np.zeros((4, 8)), np.zeros(8), np.zeros((8, 3)), np.full(3, np.nan)], ValueError, "NaN"),
        ([np.zeros((5, 8)), np.zeros(8), np.zeros((8, 3)), np.zeros(3)], ValueError, r"weights\[0\]"),
        ([np.zeros((4, 8)), np.zeros(8), np.zeros((8, 3)), np.array(["a", "b", "c"])], TypeError, "real"),
    ],
    ids=["not-list", "count", "shape", "nan", "n_in", "strings"],
)
def test_set_weights_rejects_and_changes_nothing(bad, error, match):
    X, y = _data()
    model = _model()
    model.fit(X, y, epochs=1)
    snap = _snapshot(model)
    with pytest.raises(error, match=match):
        model.set_weights(bad)
    _assert_unchanged(model, snap)


# ---------------------------------------------------------------- bad input
BAD_FIT = [
    ({"X": np.zeros(5)}, ValueError, "2-D"),
    ({"X": np.zeros((0, 4))}, ValueError, "0 rows"),
    ({"X": np.zeros((50, 5))}, ValueError, "5 features"),
    ({"X": np.full((50, 4), np.nan)}, ValueError, "NaN"),
    ({"X": np.full((50, 4), np.inf)}, ValueError, "NaN or infinity"),
    ({"X": np.array([["a"] * 4] * 50)}, TypeError, "real numbers"),
    ({"y": np.zeros(49, dtype=int)}, ValueError, "different lengths"),
    ({"y": np.full(50, 3)}, ValueError, r"labels must be in 0..2"),
    ({"y": np.full(50, -1)}, ValueError, r"labels must be in 0..2"),
    ({"y": np.full(50, 0.5)}, TypeError, "integer class labels"),
    ({"y": np.zeros((50, 3), dtype=int)}, ValueError, "1-D integer class labels"),
    ({"epochs": 0}, ValueError, "epochs must be >= 1"),
    ({"epochs": 2.5}, TypeError, "epochs must be an int"),
    ({"batch_size": 0}, ValueError, "batch_size must be >= 1"),
    ({"batch_size": True}, TypeError, "batch_size must be an int"),
    ({"shuffle": "yes"}, TypeError, "shuffle must be a bool"),
]


@pytest.mark.parametrize("override, error, match", BAD_FIT, ids=[m for _, _, m in BAD_FIT])
def test_fit_rejects_bad_input_and_changes_nothing(override, error, match):
    X, y = _data()
    model = _model()
    model.fit(X, y, epochs=1)
    snap = _snapshot(model)
    rng_state = model._rng.bit_generator.state
    kwargs = {"X": X, "y": y, "epochs": 1, "batch_size": 16, "shuffle": True} | override
    with pytest.raises(error, match=match):
        model.fit(**kwargs)
    _assert_unchanged(model, snap)
    assert model._rng.bit_generator.state == rng_state


@pytest.mark.parametrize(
    "loss, y, match",
    [
        ("mse", np.zeros((50, 2)), r"shape \(n_samples, 3\)"),
        ("mse", np.zeros(50), r"last layer has 3 units"),
        ("mse", np.full((50, 3), np.nan), "NaN"),
        ("binary_cross_entropy", np.full((50, 3), 2.0), r"\[0, 1\]"),
    ],
)
def test_float_targets_checked(loss, y, match):
    X, _ = _data()
    model = _model(loss=loss)
    with pytest.raises(ValueError, match=match):
        model.fit(X, y)
    assert not model.built  # validation runs before the model is built


def test_predict_and_evaluate_check_input():
    X, y = _data()
    model = _model()
    model.fit(X, y, epochs=1)
    with pytest.raises(ValueError, match="5 features"):
        model.predict(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="NaN"):
        model.evaluate(np.full((3, 4), np.nan), [0, 1, 2])
    with pytest.raises(ValueError, match="different lengths"):
        model.loss_and_gradients(X, y[:-1])


def test_accepts_lists_float64_and_non_contiguous_input():
    X, y = _data()
    model = _model()
    model.fit(X, y, epochs=1)
    expected = model.predict(X)
    np.testing.assert_allclose(model.predict(X.tolist()), expected, rtol=1e-6)
    np.testing.assert_allclose(model.predict(X.astype(np.float64)), expected, rtol=1e-6)
    wide = np.zeros((50, 8), dtype=np.float32)
    wide[:, ::2] = X
    np.testing.assert_allclose(model.predict(wide[:, ::2]), expected, rtol=1e-6)
    np.testing.assert_allclose(model.predict(np.asfortranarray(X)), expected, rtol=1e-6)


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: fb.Dense(0), ValueError, "units must be >= 1"),
        (lambda: fb.Dense(3.0), TypeError, "units must be an int"),
        (lambda: fb.Dense(3, activation="swish"), ValueError, "unknown activation 'swish'"),
        (lambda: fb.Dense(3, activation=1), TypeError, "activation must be a str"),
        (lambda: fb.Dense(3, kernel_init="orthogonal"), ValueError, "kernel_init"),
        (lambda: fb.Dense(3, bias_init="ones"), ValueError, "bias_init"),
        (lambda: fb.Sequential([fb.Dense(3)]), ValueError, "loss is required"),
        (lambda: fb.Sequential([fb.Dense(3)], loss="hinge"), ValueError, "unknown loss 'hinge'"),
        (lambda: fb.Sequential([fb.Dense(3)], loss="mse", optimizer="lbfgs"), ValueError, "unknown optimizer"),
        (lambda: fb.Sequential([fb.Dense(3)], loss="mse", optimizer=3), TypeError, "optimizer must be"),
        (lambda: fb.Sequential([fb.Dense(3)], loss="mse", dtype="float16"), ValueError, "dtype"),
        (lambda: fb.Sequential(["dense"], loss="mse"), TypeError, "Dense, Dropout or Normalization instances"),
        (lambda: fb.Sequential([fb.Dense(3)], loss="mse", seed=-1), ValueError, "seed"),
        (lambda: fb.SGD(lr=0), ValueError, "lr must be in"),
        (lambda: fb.SGD(lr=float("nan")), ValueError, "lr"),
        (lambda: fb.SGD(momentum=1.0), ValueError, "momentum"),
        (lambda: fb.SGD(nesterov=True), ValueError, "nesterov=True requires momentum"),
        (lambda: fb.Adam(beta1=1.0), ValueError, "beta1"),
        (lambda: fb.Adam(eps=0), ValueError, "eps"),
        (lambda: fb.AdamW(weight_decay=-1), ValueError, "weight_decay"),
        (lambda: fb.RMSprop(alpha=1.5), ValueError, "alpha"),
        (lambda: fb.set_num_threads(0), ValueError, "between 1 and"),
        (lambda: fb.set_num_threads(10_000), ValueError, "between 1 and"),
        (lambda: fb.set_num_threads(1.0), TypeError, "must be an int"),
    ],
)
def test_constructor_errors_are_clear(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_cross_entropy_needs_two_units():
    model = fb.Sequential([fb.Dense(1)], loss="cross_entropy")
    with pytest.raises(ValueError, match="at least 2 units"):
        model.fit(np.zeros((4, 2)), [0, 0, 0, 0])


def test_empty_model_errors():
    with pytest.raises(ValueError, match="no Dense layers"):
        fb.Sequential(loss="mse").fit(np.zeros((4, 2)), np.zeros(4))


# ---------------------------------------------------------------- container and config
def test_container_protocol_and_repr():
    model = fb.Sequential([fb.Dense(8, activation="relu", input_dim=4)], loss="mse")
    model.add(fb.Dense(2))
    assert len(model) == 2
    assert [layer.units for layer in model] == [8, 2]
    assert model[-1].units == 2 and len(model[0:1]) == 1
    assert repr(model[0]) == "Dense(4 → 8, relu)"
    assert repr(model[1]) == "Dense(? → 2, identity)"
    model.build(4)
    assert repr(model[1]) == "Dense(8 → 2, identity)"
    assert "Dense(4 → 8, relu)" in repr(model)
    with pytest.raises(RuntimeError, match="built"):
        model.add(fb.Dense(1))
    with pytest.raises(ValueError, match="X has 5 features, but the model expects 4"):
        fb.Sequential([fb.Dense(8, input_dim=4)], loss="mse").fit(np.zeros((3, 5)), np.zeros((3, 8)))


def test_dense_get_config_round_trip():
    layer = fb.Dense(7, activation="gelu", kernel_init="glorot_normal", bias_init=0.1, input_dim=3)
    clone = fb.Dense(**layer.get_config())
    assert clone.get_config() == layer.get_config()


@pytest.mark.parametrize(
    "activation, kernel_init, limit",
    [("relu", "auto", np.sqrt(6 / 400)), ("tanh", "auto", np.sqrt(6 / 600)), ("tanh", "he_uniform", np.sqrt(6 / 400))],
)
def test_initialisation_bounds(activation, kernel_init, limit):
    model = fb.Sequential(
        [fb.Dense(200, activation=activation, kernel_init=kernel_init, bias_init=0.5)], loss="mse", seed=0
    )
    model.build(400)
    w, b = model.get_weights()
    assert np.abs(w).max() <= limit
    assert np.abs(w).max() > 0.95 * limit  # uniform on [-limit, limit], 80k draws
    assert abs(w.std() - limit / np.sqrt(3)) < 0.02 * limit
    np.testing.assert_array_equal(b, 0.5)


def test_threads_setting_restored_and_numba_untouched():
    import numba

    before = numba.get_num_threads()
    previous = fb.get_num_threads()
    try:
        fb.set_num_threads(1)
        assert fb.get_num_threads() == 1
        X, y = _data()
        _model().fit(X, y, epochs=1)
        assert numba.get_num_threads() == before
    finally:
        fb.set_num_threads(previous)


def test_optimizer_names_and_defaults():
    assert isinstance(fb.Sequential([fb.Dense(2)], loss="mse").optimizer, fb.Adam)
    assert fb.Adam().get_config() == {
        "lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0, "clipnorm": None
    }  # fmt: skip
    assert fb.AdamW().weight_decay == 0.01
    sgd = {"lr": 0.01, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0, "clipnorm": None}
    assert fb.SGD().get_config() == sgd
    for name, cls in [("sgd", fb.SGD), ("adamw", fb.AdamW), ("rmsprop", fb.RMSprop)]:
        assert type(fb.Sequential([fb.Dense(2)], loss="mse", optimizer=name).optimizer) is cls


def test_public_names_are_exported():
    """Everything in ``fastbp.__all__`` exists, and the error a bad model file raises is one
    of them (so ``except fb.ModelFileError`` works without importing ``fastbp.io``)."""
    import fastbp.io

    assert sorted(set(fb.__all__)) == sorted(fb.__all__)
    for name in fb.__all__:
        assert hasattr(fb, name), name
    assert fb.ModelFileError is fastbp.io.ModelFileError and "ModelFileError" in fb.__all__
    assert {"warmup", "LBFGSResult"} <= set(fb.__all__)


def test_every_exception_class_is_in_fastbp_errors():
    """fastbp.errors holds every exception class fastbp defines, each exported at the top;
    the modules that raise them re-export the same classes."""
    import importlib
    import inspect
    import pkgutil

    import fastbp.errors

    defined = set()
    for info in pkgutil.walk_packages(fb.__path__, "fastbp."):
        if info.name.startswith("fastbp.dask"):
            continue  # needs dask: its module defines no exception either
        mod = importlib.import_module(info.name)
        for obj in vars(mod).values():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__.startswith("fastbp"):
                defined.add(obj)
    assert defined == {getattr(fastbp.errors, name) for name in fastbp.errors.__all__}
    assert all(getattr(fb, name) is getattr(fastbp.errors, name) for name in fastbp.errors.__all__)
