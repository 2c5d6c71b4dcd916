"""Training learns: real or clearly learnable data, asserting on accuracy and loss."""

from __future__ import annotations

import numpy as np
import pytest

import fastbp as fb


def _split(X, y, frac=0.8, seed=0):
    idx = np.random.default_rng(seed).permutation(len(X))
    cut = int(frac * len(X))
    return X[idx[:cut]], y[idx[:cut]], X[idx[cut:]], y[idx[cut:]]


def test_xor_2_4_1():
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    y = np.array([0.0, 1.0, 1.0, 0.0], dtype=np.float32)
    model = fb.Sequential(
        [fb.Dense(4, activation="tanh"), fb.Dense(1)],
        loss="binary_cross_entropy",
        optimizer=fb.Adam(lr=0.05),
        seed=0,
    )
    history = model.fit(X, y, epochs=500, batch_size=4)
    p = model.predict(X)
    assert p.shape == (4, 1)
    np.testing.assert_array_equal((p[:, 0] > 0.5).astype(int), [0, 1, 1, 0])
    assert history.history["loss"][-1] < 0.05 < history.history["loss"][0]


def test_sine_universal_approximation():
    """1-32-32-1 tanh net fits sin(x) on [-pi, pi] to MSE < 1e-3."""
    x = np.linspace(-np.pi, np.pi, 512, dtype=np.float32).reshape(-1, 1)
    y = np.sin(x)
    model = fb.Sequential(
        [fb.Dense(32, activation="tanh"), fb.Dense(32, activation="tanh"), fb.Dense(1)],
        loss="mse",
        optimizer=fb.Adam(lr=3e-3),
        seed=0,
    )
    model.fit(x, y, epochs=400, batch_size=32)
    x_test = np.random.default_rng(1).uniform(-np.pi, np.pi, (256, 1)).astype(np.float32)
    mse = float(np.mean((model.predict(x_test) - np.sin(x_test)) ** 2))
    assert mse < 1e-3
    assert model.evaluate(x, y) < 1e-3


@pytest.fixture(scope="module")
def digits():
    datasets = pytest.importorskip("sklearn.datasets")
    d = datasets.load_digits()
    X = (d.data / 16.0).astype(np.float32)
    return _split(X, d.target, seed=0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_digits_held_out_accuracy(digits, dtype):
    X_tr, y_tr, X_te, y_te = digits
    model = fb.Sequential(
        [fb.Dense(128, activation="relu"), fb.Dense(64, activation="relu"), fb.Dense(10)],
        loss="cross_entropy",
        optimizer=fb.Adam(lr=1e-3),
        seed=0,
        dtype=dtype,
    )
    history = model.fit(X_tr, y_tr, epochs=40, batch_size=64)
    proba = model.predict(X_te)
    assert proba.dtype == np.dtype(dtype)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    acc = float(np.mean(proba.argmax(axis=1) == y_te))
    assert acc >= 0.96, acc
    assert history.history["loss"][-1] < 0.1 * history.history["loss"][0]


def test_digits_sgd_momentum(digits):
    X_tr, y_tr, X_te, y_te = digits
    model = fb.Sequential(
        [fb.Dense(64, activation="tanh"), fb.Dense(10)],
        loss="cross_entropy",
        optimizer=fb.SGD(lr=0.05, momentum=0.9, nesterov=True),
        seed=3,
    )
    model.fit(X_tr, y_tr, epochs=30, batch_size=32)
    assert np.mean(model.predict(X_te).argmax(axis=1) == y_te) >= 0.95


def test_huber_regression_resists_outliers():
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, (2000, 3)).astype(np.float32)
    y = (X @ np.array([1.5, -2.0, 0.5]) + 0.3 * np.sin(3 * X[:, 0])).astype(np.float32)
    y_noisy = y.copy()
    outliers = rng.choice(2000, 100, replace=False)
    y_noisy[outliers] += rng.choice([-50.0, 50.0], 100)
    model = fb.Sequential(
        [fb.Dense(32, activation="elu"), fb.Dense(1)], loss="huber", optimizer=fb.Adam(lr=3e-3), seed=0
    )
    model.fit(X, y_noisy, epochs=60, batch_size=64)
    X_te = rng.uniform(-2, 2, (500, 3)).astype(np.float32)
    y_te = X_te @ np.array([1.5, -2.0, 0.5]) + 0.3 * np.sin(3 * X_te[:, 0])
    mae = float(np.mean(np.abs(model.predict(X_te)[:, 0] - y_te)))
    assert mae < 0.15, mae


def test_multilabel_binary_cross_entropy():
    """Three independent labels, each a different (non-linear) function of the inputs."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3000, 4)).astype(np.float32)
    Y = np.stack([X[:, 0] > 0, X[:, 1] * X[:, 2] > 0, X[:, 3] ** 2 > 1], axis=1).astype(np.float32)
    X_tr, Y_tr, X_te, Y_te = _split(X, Y, seed=1)
    model = fb.Sequential(
        [fb.Dense(64, activation="relu"), fb.Dense(32, activation="relu"), fb.Dense(3)],
        loss="binary_cross_entropy",
        optimizer="adam",
        seed=0,
    )
    model.fit(X_tr, Y_tr, epochs=40, batch_size=64)
    P = model.predict(X_te)
    assert P.shape == (len(X_te), 3)
    assert np.all((P >= 0) & (P <= 1))
    per_label = np.mean((P > 0.5) == (Y_te > 0.5), axis=0)
    assert np.all(per_label >= 0.93), per_label


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw", "rmsprop"])
def test_every_optimizer_learns(optimizer):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((1000, 2)).astype(np.float32)
    y = ((X[:, 0] ** 2 + X[:, 1] ** 2) < 1.2).astype(np.int64)  # a disc: not linearly separable
    opt = {"sgd": fb.SGD(lr=0.1, momentum=0.9)}.get(optimizer, optimizer)
    model = fb.Sequential([fb.Dense(32, activation="relu"), fb.Dense(2)], loss="cross_entropy", optimizer=opt, seed=0)
    model.fit(X, y, epochs=30, batch_size=32)
    assert np.mean(model.predict(X).argmax(axis=1) == y) >= 0.95


def _trained_weights(seed, threads, dtype="float32"):
    previous = fb.get_num_threads()
    fb.set_num_threads(threads)
    try:
        rng = np.random.default_rng(5)
        X = rng.standard_normal((300, 6))
        y = rng.integers(0, 3, 300)
        model = fb.Sequential(
            [fb.Dense(16, activation="gelu"), fb.Dense(3)], loss="cross_entropy", seed=seed, dtype=dtype
        )
        model.fit(X, y, epochs=3, batch_size=64)
        return model.get_weights()
    finally:
        fb.set_num_threads(previous)


@pytest.mark.parametrize("threads", [1, 2], ids=["1-thread", "2-threads"])
def test_same_seed_same_threads_identical_weights(threads):
    if threads > fb.get_num_threads():
        pytest.skip("needs 2 Numba threads")
    a = _trained_weights(seed=7, threads=threads)
    b = _trained_weights(seed=7, threads=threads)
    for wa, wb in zip(a, b):
        np.testing.assert_array_equal(wa, wb)
    c = _trained_weights(seed=8, threads=threads)
    assert not np.array_equal(a[0], c[0])


def test_thread_counts_agree_to_rounding():
    if fb.get_num_threads() < 2:
        pytest.skip("needs 2 Numba threads")
    one = _trained_weights(seed=7, threads=1, dtype="float64")
    two = _trained_weights(seed=7, threads=2, dtype="float64")
    for w1, w2 in zip(one, two):
        np.testing.assert_allclose(w1, w2, rtol=1e-10, atol=1e-12)


def test_float32_close_to_float64():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 5))
    y = np.sin(X[:, :2])
    results = {}
    for dtype in ("float32", "float64"):
        model = fb.Sequential([fb.Dense(16, activation="tanh"), fb.Dense(2)], loss="mse", seed=0, dtype=dtype)
        model.fit(X, y, epochs=5, batch_size=20, shuffle=False)
        results[dtype] = model.predict(X)
        assert all(w.dtype == np.dtype(dtype) for w in model.get_weights())
    assert results["float32"].dtype == np.float32
    np.testing.assert_allclose(results["float32"], results["float64"], rtol=1e-3, atol=1e-4)


def test_continuing_fit_equals_one_longer_fit():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((100, 3)).astype(np.float32)
    y = X @ np.array([[1.0], [2.0], [-1.0]], dtype=np.float32)

    def make():
        return fb.Sequential([fb.Dense(8, activation="relu"), fb.Dense(1)], loss="mse", seed=1)

    a = make()
    a.fit(X, y, epochs=2, batch_size=16)
    a.fit(X, y, epochs=3, batch_size=16)
    b = make()
    b.fit(X, y, epochs=5, batch_size=16)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_hand_worked_sgd_step():
    """One SGD step on a 1-1 linear net with mse, arithmetic written out.

    w = 0.5, b = 0.0, x = 2, y = 3:  a = 1.0, r = a - y = -2, loss = r^2 = 4
    dL/da = 2 r = -4; dW = x * dL/da = -8; db = -4
    lr = 0.1: w = 0.5 + 0.8 = 1.3, b = 0.4
    """
    model = fb.Sequential([fb.Dense(1)], loss="mse", optimizer=fb.SGD(lr=0.1), dtype="float64")
    model.set_weights([np.array([[0.5]]), np.array([0.0])])
    loss, grads = model.loss_and_gradients([[2.0]], [3.0])
    assert loss == pytest.approx(4.0)
    np.testing.assert_allclose(grads[0], [[-8.0]])
    np.testing.assert_allclose(grads[1], [-4.0])
    history = model.fit([[2.0]], [3.0], epochs=1, batch_size=1)
    assert history.history["loss"] == [pytest.approx(4.0)]
    w, b = model.get_weights()
    np.testing.assert_allclose(w, [[1.3]])
    np.testing.assert_allclose(b, [0.4])
