"""``Sequential.loss_and_gradients`` checked three ways on a small 5-6-4-3 network:

* central finite differences of ``evaluate`` in float64, every activation x every loss;
* the plain-NumPy backpropagation twin in ``tests/reference.py`` (float64 tight, float32 loose);
* invariances: permuting the batch rows, and running on 1 or 2 threads (1 or 2 row blocks).

Relative error of a parameter array = max |analytic - reference| / max |reference|, so an
array whose gradient is legitimately tiny somewhere is judged on its own scale.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
import reference as ref  # tests/reference.py (on pytest's pythonpath)

import fastbp as fb
from fastbp import _config
from fastbp.kernels import engine

ACT_NAMES = sorted(fb.ACTIVATIONS)
LOSS_NAMES = sorted(fb.LOSSES)
SIZES = (5, 6, 4, 3)  # n_features, hidden, hidden, outputs
# largest relative error allowed against a float64 oracle; observed: 1e-15 and 4e-7
DTYPE_TOLS = [pytest.param("float64", 1e-12, id="float64"), pytest.param("float32", 1e-5, id="float32")]


RNG_SEED = 12345  # the ``rng`` fixture's seed (tests/conftest.py)


@pytest.fixture
def one_thread(restore_threads):
    """30 rows make a single row block anyway; one thread also spares the ~300 ``evaluate``
    calls of a finite-difference check from waking a second thread each time (slow when
    the machine is busy)."""
    fb.set_num_threads(1)


def make_problem(act, loss, dtype, rng, n_rows=30):
    """A built model with random weights and biases, and (X, y) for ``loss``."""
    model = fb.Sequential(
        [fb.Dense(SIZES[1], activation=act), fb.Dense(SIZES[2], activation=act), fb.Dense(SIZES[3])],
        loss=loss,
        dtype=dtype,
        seed=0,
    )
    model.build(SIZES[0])
    weights = []
    for n_in, n_out in zip(SIZES[:-1], SIZES[1:]):
        weights.append(rng.standard_normal((n_in, n_out)) / np.sqrt(n_in))
        weights.append(0.3 * rng.standard_normal(n_out))
    model.set_weights(weights)
    X = rng.standard_normal((n_rows, SIZES[0]))
    k = SIZES[-1]
    if loss == "cross_entropy":
        y = rng.integers(0, k, n_rows)
    elif loss == "binary_cross_entropy":
        y = rng.uniform(0.0, 1.0, (n_rows, k))
        y[: n_rows // 2] = np.round(y[: n_rows // 2])  # hard 0/1 targets and soft ones
    elif loss == "poisson":
        y = rng.poisson(2.0, (n_rows, k)).astype(float)  # counts
    else:
        y = 1.5 * rng.standard_normal((n_rows, k))  # huber: residuals on both sides of delta
    return model, X.astype(dtype), y


def numerical_gradients(model, X, y, h=1e-6):
    """Central differences of ``evaluate`` with respect to every parameter."""
    weights = model.get_weights()
    grads = []
    for w in weights:
        g = np.zeros_like(w)
        for idx in np.ndindex(w.shape):
            orig = w[idx]
            w[idx] = orig + h
            model.set_weights(weights)
            up = model.evaluate(X, y)
            w[idx] = orig - h
            model.set_weights(weights)
            down = model.evaluate(X, y)
            w[idx] = orig
            g[idx] = (up - down) / (2 * h)
        grads.append(g)
    model.set_weights(weights)
    return grads


def relative_error(got, expected):
    return float(np.abs(np.asarray(got, np.float64) - expected).max() / np.abs(expected).max())


def assert_gradients_close(got, expected, tol):
    assert len(got) == len(expected)
    for i, (g, e) in enumerate(zip(got, expected)):
        assert g.shape == e.shape, f"grads[{i}]"
        err = relative_error(g, e)
        assert err < tol, f"grads[{i}] ({'W' if i % 2 == 0 else 'b'}{i // 2}): relative error {err:.2e}"


@pytest.mark.parametrize("loss", LOSS_NAMES)
@pytest.mark.parametrize("act", ACT_NAMES)
def test_gradients_match_finite_differences(act, loss, rng, one_thread):
    model, X, y = make_problem(act, loss, "float64", rng)
    value, grads = model.loss_and_gradients(X, y)
    assert value == pytest.approx(model.evaluate(X, y), rel=1e-12)
    # observed at most 4e-7: central differences with h=1e-6 are good to about 1e-8
    assert_gradients_close(grads, numerical_gradients(model, X, y), tol=1e-5)


@pytest.mark.parametrize(("dtype", "tol"), DTYPE_TOLS)
@pytest.mark.parametrize("loss", LOSS_NAMES)
@pytest.mark.parametrize("act", ACT_NAMES)
def test_gradients_match_reference_network(act, loss, dtype, tol, rng):
    model, X, y = make_problem(act, loss, dtype, rng)
    value, grads = model.loss_and_gradients(X, y)
    weights = model.get_weights()  # the dtype-rounded weights the model really holds
    assert all(g.dtype == np.dtype(dtype) for g in grads)
    expected_value, expected = ref.network_loss_and_gradients(X, y, weights, [act, act, "identity"], loss)
    assert value == pytest.approx(expected_value, rel=tol)
    assert_gradients_close(grads, expected, tol)


@pytest.mark.parametrize(("dtype", "tol"), DTYPE_TOLS)
@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_row_order_does_not_change_gradients(loss, dtype, tol, rng):
    model, X, y = make_problem("tanh", loss, dtype, rng, n_rows=40)
    perm = rng.permutation(len(X))
    value, grads = model.loss_and_gradients(X, y)
    value_p, grads_p = model.loss_and_gradients(X[perm], y[perm])
    assert value_p == pytest.approx(value, rel=tol)
    assert_gradients_close(grads_p, [g.astype(np.float64) for g in grads], tol)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs NUMBA_NUM_THREADS >= 2")
@pytest.mark.parametrize(("dtype", "tol"), DTYPE_TOLS)
@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_thread_count_does_not_change_gradients(loss, dtype, tol, rng, restore_threads):
    n_rows = 64
    # precondition: 2 threads really split this batch into 2 row blocks
    assert engine.n_blocks(n_rows, 2, _config.MIN_ROWS_PER_BLOCK) == 2
    model, X, y = make_problem("silu", loss, dtype, rng, n_rows=n_rows)
    fb.set_num_threads(1)
    value1, grads1 = model.loss_and_gradients(X, y)
    fb.set_num_threads(2)
    value2, grads2 = model.loss_and_gradients(X, y)
    assert value2 == pytest.approx(value1, rel=tol)
    assert_gradients_close(grads2, [g.astype(np.float64) for g in grads1], tol)
