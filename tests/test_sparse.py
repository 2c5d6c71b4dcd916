"""Sparse input (SciPy CSR/CSC): kernels against NumPy, gradients against finite
differences, and training, prediction and evaluation against the same data made dense.

Why the tolerances: the sparse first layer adds the same products as the dense GEMM, in
column order within each row, where the GEMM also adds the zeros (which change nothing).
In float64 the two paths therefore agree to rounding of a few sums (observed 0 to 1e-15
relative on this machine's OpenBLAS kernel); after a few epochs of training the
differences stay below 1e-12 relative (observed 0), so 1e-9 catches any wrong index or
scale while leaving room for another CPU's GEMM order. float32 is checked on accuracy and
loss only, where rounding is far below the margins.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from helpers import net
from test_gradients import assert_gradients_close, numerical_gradients

import fastbp as fb
from fastbp.kernels.sparse import CSR, csr_product_rows, csr_weight_grad_rows

sp = pytest.importorskip("scipy.sparse")

RTOL = 1e-9  # float64, sparse against dense after training (module docstring)


RNG_SEED = 2024  # the ``rng`` fixture's seed (tests/conftest.py)


def _csr(X) -> CSR:
    X = sp.csr_matrix(X)
    return CSR(X.indptr.astype(np.int64), X.indices.astype(np.int32), X.data, X.shape[1])


def _data(rng, n=240, d=50, density=0.2, k=3):
    X = sp.random(n, d, density=density, format="csr", random_state=rng, dtype=np.float64)
    X.data = rng.standard_normal(X.nnz)  # values of both signs, not only (0, 1)
    y = np.argmax(X @ rng.standard_normal((d, k)), axis=1)
    return X, y


def _model(dtype="float64", loss="cross_entropy", k=3, dropout=0.0, optimizer="adam", seed=3):
    return net((24, 12), ("tanh", "relu"), k, loss, dropout=dropout, optimizer=optimizer, dtype=dtype, seed=seed)


def _assert_same_weights(a, b, rtol=RTOL):
    for i, (wa, wb) in enumerate(zip(a.get_weights(), b.get_weights())):
        scale = np.abs(wb).max()
        assert np.abs(wa - wb).max() <= rtol * scale, f"weights[{i}]"


# ---------------------------------------------------------------------- kernels
@pytest.mark.parametrize("mapped", [True, False], ids=["rows", "identity"])
def test_csr_product_and_weight_gradient_match_numpy(rng, mapped):
    X, _ = _data(rng, n=40, d=30)
    Xd = X.toarray()
    w = rng.standard_normal((30, 7))
    rows = rng.permutation(40).astype(np.int64) if mapped else np.zeros(0, np.int64)
    r0, r1 = 5, 29
    src = rows[r0:r1] if mapped else np.arange(r0, r1)
    z = np.full((r1 - r0, 7), np.nan)
    csr_product_rows(_csr(X), rows, r0, r1, w, z)
    np.testing.assert_allclose(z, Xd[src] @ w, rtol=1e-12, atol=1e-12)
    delta = rng.standard_normal((r1 - r0, 7))
    dw = np.full((30, 7), np.nan)  # zeroed by the kernel
    csr_weight_grad_rows(_csr(X), rows, r0, r1, delta, dw)
    np.testing.assert_allclose(dw, Xd[src].T @ delta, rtol=1e-12, atol=1e-12)


def test_unsorted_and_duplicate_indices_add_up(rng):
    """SciPy allows both in a non-canonical CSR; the products sum duplicates, as SciPy's."""
    indptr = np.array([0, 3, 5])
    indices = np.array([4, 1, 4, 0, 2])
    data = np.array([1.0, 2.0, 3.0, -1.0, 0.5])
    X = sp.csr_matrix((data, indices, indptr), shape=(2, 6))
    w = rng.standard_normal((6, 4))
    z = np.empty((2, 4))
    csr_product_rows(CSR(indptr.astype(np.int64), indices.astype(np.int32), data, 6), np.zeros(0, np.int64), 0, 2,
                     w, z)  # fmt: skip
    np.testing.assert_allclose(z, X.toarray() @ w, rtol=1e-12)
    model = _model(k=2)
    model.fit(X, [0, 1], epochs=1, verbose=0)
    dense = _model(k=2)
    dense.fit(X.toarray(), [0, 1], epochs=1, verbose=0)
    _assert_same_weights(model, dense)


def test_csr_take_and_rows_views(rng):
    X, _ = _data(rng, n=30, d=10)
    c = _csr(X)
    idx = np.array([7, 3, 3, 29, 0])
    np.testing.assert_array_equal(c.take(idx).to_dense(), X.toarray()[idx])
    np.testing.assert_array_equal(c.rows(4, 17).to_dense(), X.toarray()[4:17])
    assert c.rows(4, 17).shape == (13, 10) and c.rows(4, 17).indptr.base is not None  # a view


# ---------------------------------------------------------------------- gradients
def test_gradients_match_finite_differences(rng):
    model = _model()
    X, y = _data(rng, n=20, d=9, density=0.3)  # holds an empty row
    model.build(9)
    # random biases: with zero ones an empty row would sit exactly on relu's kink
    model.set_weights([w if w.ndim == 2 else 0.3 * rng.standard_normal(w.shape) for w in model.get_weights()])
    _, grads = model.loss_and_gradients(X, y)
    assert_gradients_close(grads, numerical_gradients(model, X, y), tol=1e-6)


@pytest.mark.parametrize("fmt", ["csr_matrix", "csc_matrix", "csr_array", "csc_array"])
def test_loss_and_gradients_equal_dense(rng, fmt):
    X, y = _data(rng)
    model = _model()
    model.build(X.shape[1])
    loss, grads = model.loss_and_gradients(getattr(sp, fmt)(X), y)
    loss_d, grads_d = model.loss_and_gradients(X.toarray(), y)
    assert loss == pytest.approx(loss_d, rel=1e-12)
    assert_gradients_close(grads, grads_d, tol=1e-12)


# ---------------------------------------------------------------------- training
@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"loss": "mse", "optimizer": "sgd"},
        {"dropout": 0.2},
    ],
    ids=["adam-ce", "sgd-mse", "dropout"],
)
def test_fit_equals_dense(rng, kw):
    X, y = _data(rng)
    if kw.get("loss") == "mse":
        y = np.eye(3)[y] + 0.1 * rng.standard_normal((X.shape[0], 3))
    sw = rng.uniform(0.0, 2.0, X.shape[0])
    a, b = _model(**kw), _model(**kw)
    ha = a.fit(X, y, epochs=3, batch_size=32, sample_weight=sw, validation_split=0.2, verbose=0)
    hb = b.fit(X.toarray(), y, epochs=3, batch_size=32, sample_weight=sw, validation_split=0.2, verbose=0)
    _assert_same_weights(a, b)
    np.testing.assert_allclose(ha.history["loss"], hb.history["loss"], rtol=RTOL)
    np.testing.assert_allclose(ha.history["val_loss"], hb.history["val_loss"], rtol=RTOL)
    np.testing.assert_allclose(a.predict(X), b.predict(X.toarray()), rtol=RTOL, atol=1e-12)
    assert a.evaluate(X.tocsc(), y) == pytest.approx(b.evaluate(X.toarray(), y), rel=RTOL)


def test_fit_lbfgs_and_validation_data_sparse(rng):
    X, y = _data(rng)
    a, b = _model(), _model()
    ra = a.fit_lbfgs(X, y, max_iter=30)
    rb = b.fit_lbfgs(X.toarray(), y, max_iter=30)
    assert ra.loss == pytest.approx(rb.loss, rel=1e-8)
    _assert_same_weights(a, b, rtol=1e-7)  # 30 L-BFGS steps amplify rounding (observed 1e-14)
    h = a.fit(X[:200], y[:200], epochs=2, validation_data=(X[200:], y[200:]), verbose=0)
    assert np.isfinite(h.history["val_loss"]).all()


def test_float32_sparse_learns(rng):
    X, y = _data(rng, n=600, d=200, density=0.05)
    model = _model(dtype="float32")
    model.fit(X, y, epochs=40, batch_size=32, verbose=0)
    dense = _model(dtype="float32")
    dense.fit(X.toarray(), y, epochs=40, batch_size=32, verbose=0)
    acc = float(np.mean(model.predict(X).argmax(axis=1) == y))
    acc_d = float(np.mean(dense.predict(X.toarray()).argmax(axis=1) == y))
    assert acc >= 0.95
    assert abs(acc - acc_d) <= 0.01  # float32 rounding moves a boundary row at most
    assert model.predict(X).dtype == np.float32


def test_wide_sparse_data_is_never_densified(rng):
    """A million columns: dense, 2000 rows would be 8 GB; training and prediction stay
    within a few times the weight matrix (traced NumPy allocations)."""
    n, d = 2000, 1_000_000
    X = sp.random(n, d, density=2e-5, format="csr", random_state=rng, dtype=np.float32)
    y = rng.integers(0, 2, n)
    model = fb.Sequential([fb.Dense(4, "relu"), fb.Dense(2)], loss="cross_entropy", seed=0)
    model.build(d)
    weights_mb = model.count_params() * 4 / 2**20
    tracemalloc.start()
    try:
        model.fit(X, y, epochs=1, batch_size=64, verbose=0)
        model.predict(X)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # measured: 41 MB peak for 15 MB of weights (Adam's moments exist from build; two
    # per-thread partial gradients). Batches of 64 make at most 4 row blocks of 16 rows,
    # whatever the core count, so at most 4 partials: about 5x the weights
    assert peak / 2**20 < 10 * weights_mb + 20, (peak / 2**20, weights_mb)


# ---------------------------------------------------------------------- bad input
def test_bad_sparse_input_is_a_clear_error_and_leaves_the_model(rng):
    X, y = _data(rng)
    model = _model()
    with pytest.raises(TypeError, match=r"CSR or CSC format, got COO: convert it with X.tocsr\(\)"):
        model.fit(X.tocoo(), y, verbose=0)
    assert not model.built
    bad = X.copy()
    bad.data[3] = np.nan
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        model.fit(bad, y, verbose=0)
    with pytest.raises(ValueError, match="0 rows"):
        model.fit(X[:0], y[:0], verbose=0)
    assert not model.built
    model.fit(X, y, epochs=1, verbose=0)
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match="X has 49 features, but the model expects 50"):
        model.fit(X[:, :49], y, verbose=0)
    with pytest.raises(ValueError, match="validation_data\\[0\\] has 10 features"):
        model.fit(X, y, validation_data=(X[:, :10], y), verbose=0)
    with pytest.raises(TypeError, match="must hold real numbers"):
        model.predict(sp.csr_matrix(X.toarray().astype(complex)))
    for w, w0 in zip(model.get_weights(), before):
        np.testing.assert_array_equal(w, w0)


def test_input_dropout_with_sparse_input_is_refused(rng):
    X, y = _data(rng)
    model = fb.Sequential([fb.Dropout(0.2), fb.Dense(8, "relu"), fb.Dense(3)], loss="cross_entropy", seed=0)
    with pytest.raises(ValueError, match="Dropout before the first Dense layer needs dense input"):
        model.fit(X, y, verbose=0)
    assert not model.built
    model.fit(X.toarray(), y, epochs=1, verbose=0)
    assert model.predict(X).shape == (X.shape[0], 3)  # inference has no dropout: sparse is fine


def test_int_and_float32_values_and_int64_indices(rng):
    X, y = _data(rng)
    Xi = sp.csr_matrix((np.round(3 * X.data).astype(np.int64), X.indices.astype(np.int64),
                        X.indptr.astype(np.int64)), shape=X.shape)  # fmt: skip
    a, b = _model(), _model()
    a.fit(Xi, y, epochs=1, verbose=0)
    b.fit(Xi.toarray(), y, epochs=1, verbose=0)
    _assert_same_weights(a, b)
    np.testing.assert_allclose(a.predict(Xi.astype(np.float32)), b.predict(Xi.toarray()), rtol=1e-6, atol=1e-7)


def test_diagnostics_take_sparse_input(rng):
    X, y = _data(rng, n=30, d=12, density=0.3)
    model = _model()
    model.build(12)
    model.set_weights([w if w.ndim == 2 else 0.3 * rng.standard_normal(w.shape) for w in model.get_weights()])
    errors = fb.check_gradients(model, X, y)
    # elementwise relative errors with a 1e-6 floor: the smallest entries of W0 reach 2e-5
    # by rounding, as in the dense check; the two differ by finite-difference noise (up to
    # 3.3e-7 observed under another OpenBLAS kernel); a wrong gradient gives 1e-2
    np.testing.assert_allclose(errors, fb.check_gradients(model, X.toarray(), y), rtol=0.05, atol=2e-6)
    assert max(errors) < 1e-4
    trace = fb.backprop_trace(model, X, y)
    np.testing.assert_array_equal(trace.layers[0].a_prev, X.toarray())
    _, grads = model.loss_and_gradients(X, y)
    np.testing.assert_allclose(trace.layers[0].dC_dW, grads[0], rtol=1e-12, atol=1e-15)
