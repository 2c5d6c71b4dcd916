"""The NumPy baseline in ``benchmarks/numpy_mlp.py`` computes what fastbp computes.

The benchmarks time fastbp beside this baseline, so the baseline must do the same
arithmetic: from the same initial weights (a seeded fastbp model's ``get_weights()``) and
the same batch order, three epochs give the same loss trajectory, final weights,
predictions and evaluation loss, to rounding (summation order differs: BLAS blocking,
fastbp's per-thread partial sums). ``test_a_one_percent_error_fails_the_comparison`` shows
the comparison can fail.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastbp as fb
from benchmarks.numpy_mlp import NumpyMLP

# (rtol for losses and outputs, atol for weights) per dtype. float32, measured over
# OpenBLAS's SkylakeX, Haswell and Sandybridge kernels (benchmarks/measure_blas_spread.py,
# 2-core Zen 4): losses agree to 3.8e-7 relative and weights to 2.4e-7 absolute over these
# 21 steps, while a learning rate 1 % high moves the losses by at least 5.7e-3: the
# tolerance is 26x above the first and 570x below the last. float64 rounds 5e8 times
# finer; 1e-10 leaves the same kind of room.
TOL = {np.float32: (1e-5, 1e-5), np.float64: (1e-10, 1e-10)}

# id: (hidden activations, loss, optimizer name, fastbp optimizer, baseline kwargs)
CASES = {
    "relu/ce/sgd-momentum": (
        ["relu", "relu"], "cross_entropy", "sgd", fb.SGD(lr=0.05, momentum=0.9), {"lr": 0.05, "momentum": 0.9}
    ),
    "tanh/ce/adam": (["tanh"], "cross_entropy", "adam", fb.Adam(lr=0.01), {"lr": 0.01}),
    "sigmoid/mse/sgd": (["sigmoid"], "mse", "sgd", fb.SGD(lr=0.5), {"lr": 0.5}),
    "relu-tanh/mse/adam": (
        ["relu", "tanh"], "mse", "adam", fb.Adam(lr=0.005, beta1=0.8, beta2=0.99, eps=1e-7),
        {"lr": 0.005, "betas": (0.8, 0.99), "eps": 1e-7},
    ),
}  # fmt: skip


def _problem(loss: str, dtype: type, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
    """A small learnable problem: 3 linear classes, or a smooth 2-output regression."""
    X = rng.normal(size=(203, 6)).astype(dtype)  # 203 rows: the last batch of 32 is partial
    W = rng.normal(size=(6, 3))
    if loss == "cross_entropy":
        return X, (X @ W).argmax(axis=1), 3
    return X, np.tanh(X @ W[:, :2]).astype(dtype), 2


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("case", list(CASES))
def test_same_trajectory_as_fastbp(case, dtype):
    hidden, loss, opt_name, optimizer, kwargs = CASES[case]
    rng = np.random.default_rng(1)
    X, y, k = _problem(loss, dtype, rng)
    layers = [fb.Dense(12, activation=a) for a in hidden] + [fb.Dense(k)]
    model = fb.Sequential(layers, loss=loss, optimizer=optimizer, seed=3, dtype=dtype)
    model.build(X.shape[1])
    baseline = NumpyMLP(model.get_weights(), hidden + ["identity"], loss, opt_name, **kwargs)
    assert baseline.dtype == dtype

    fb_losses = model.fit(X, y, epochs=3, batch_size=32, shuffle=False).history["loss"]
    np_losses = [baseline.train_epoch(X, y, batch_size=32, order=np.arange(len(X))) for _ in range(3)]

    rtol, atol = TOL[dtype]
    np.testing.assert_allclose(np_losses, fb_losses, rtol=rtol)
    assert np_losses[-1] < np_losses[0]  # the problem is learnable: the comparison means something
    for w_np, w_fb in zip(baseline.params, model.get_weights()):
        assert w_np.dtype == dtype
        np.testing.assert_allclose(w_np, w_fb, rtol=rtol, atol=atol)
    np.testing.assert_allclose(baseline.predict(X), model.predict(X), rtol=rtol, atol=atol)
    np.testing.assert_allclose(baseline.loss(X, y), model.evaluate(X, y), rtol=rtol)


@pytest.mark.parametrize("case", list(CASES))
def test_a_one_percent_error_fails_the_comparison(case):
    """The float32 tolerance above catches a small error: the baseline with its learning
    rate 1 % high (a gradient 1 % off everywhere) leaves fastbp's loss trajectory."""
    hidden, loss, opt_name, optimizer, kwargs = CASES[case]
    X, y, k = _problem(loss, np.float32, np.random.default_rng(1))
    model = fb.Sequential([fb.Dense(12, activation=a) for a in hidden] + [fb.Dense(k)], loss=loss,
                          optimizer=optimizer, seed=3, dtype=np.float32)  # fmt: skip
    model.build(X.shape[1])
    kwargs = dict(kwargs, lr=kwargs["lr"] * 1.01)
    baseline = NumpyMLP(model.get_weights(), hidden + ["identity"], loss, opt_name, **kwargs)
    fb_losses = model.fit(X, y, epochs=3, batch_size=32, shuffle=False).history["loss"]
    np_losses = [baseline.train_epoch(X, y, batch_size=32, order=np.arange(len(X))) for _ in range(3)]
    assert not np.allclose(np_losses, fb_losses, rtol=TOL[np.float32][0], atol=0)


def test_shuffled_order_matches_fastbp_rows():
    """``order`` selects the rows of each batch: a permuted order gives a different run."""
    rng = np.random.default_rng(2)
    X, y, _ = _problem("cross_entropy", np.float64, rng)
    weights = fb.Sequential([fb.Dense(8, activation="relu"), fb.Dense(3)], loss="cross_entropy", seed=0,
                            dtype="float64")  # fmt: skip
    weights.build(X.shape[1])
    w0 = weights.get_weights()
    a = NumpyMLP(w0, ["relu", "identity"], "cross_entropy", "sgd", lr=0.1)
    b = NumpyMLP(w0, ["relu", "identity"], "cross_entropy", "sgd", lr=0.1)
    perm = rng.permutation(len(X))
    a.train_epoch(X, y, batch_size=16, order=perm)
    b.train_epoch(X[perm], y[perm], batch_size=16)  # the same batches, gathered up front
    for p, q in zip(a.params, b.params):
        np.testing.assert_allclose(p, q, rtol=1e-12, atol=1e-12)
    assert not np.allclose(a.params[0], w0[0])


def test_rejects_mismatched_weights():
    w = [np.zeros((4, 3), np.float32), np.zeros(3, np.float32)]
    with pytest.raises(ValueError, match="weights must hold"):
        NumpyMLP(w, ["relu", "identity"], "mse")
    with pytest.raises(ValueError, match="unknown loss"):
        NumpyMLP(w, ["identity"], "huber")
