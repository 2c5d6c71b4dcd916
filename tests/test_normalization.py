"""The Normalization layer: statistics, standardisation at every entry point, errors."""

from __future__ import annotations

import numpy as np
import pytest

import fastbp as fb


@pytest.fixture
def raw():
    """Features on very different scales (a proline-like column ~1000, one ~0.01) and a
    constant column; labels from the standardised features."""
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(1000, 300, 300), rng.normal(0.01, 0.003, 300), np.full(300, 4.0)])
    z = (X[:, 0] - 1000) / 300 + (X[:, 1] - 0.01) / 0.003
    return X, (z > 0).astype(int)


def _model(norm, dtype="float64"):
    layers = ([norm] if norm is not None else []) + [fb.Dense(8, "tanh"), fb.Dense(2)]
    return fb.Sequential(layers, loss="cross_entropy", optimizer=fb.Adam(0.01), dtype=dtype, seed=0)


def test_adapt_learns_population_statistics(raw):
    X, _ = raw
    norm = fb.Normalization().adapt(X)
    np.testing.assert_allclose(norm.mean, X.mean(axis=0), rtol=1e-15)
    np.testing.assert_allclose(norm.variance, X.var(axis=0), rtol=1e-12, atol=1e-30)
    Z = norm.transform(X)
    np.testing.assert_allclose(Z[:, :2].mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(Z[:, :2].std(axis=0), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(Z[:, 2], 0.0)  # constant column: centred, divided by 1


def test_model_with_normalization_equals_model_on_standardised_input(raw):
    """fit, predict, evaluate and loss_and_gradients all see (X - mean) / std: the same
    weights as a model without the layer trained on the standardised array."""
    X, y = raw
    norm = fb.Normalization().adapt(X)
    Z = norm.transform(X)
    a, b = _model(norm), _model(None)
    ha = a.fit(X, y, epochs=4, batch_size=32, validation_data=(X[:50], y[:50]), verbose=0)
    hb = b.fit(Z, y, epochs=4, batch_size=32, validation_data=(Z[:50], y[:50]), verbose=0)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert ha.history == hb.history
    np.testing.assert_array_equal(a.predict(X), b.predict(Z))
    assert a.evaluate(X, y) == b.evaluate(Z, y)
    la, ga = a.loss_and_gradients(X, y)
    lb, gb = b.loss_and_gradients(Z, y)
    assert la == lb and all(np.array_equal(p, q) for p, q in zip(ga, gb))
    assert a.fit_lbfgs(X, y, max_iter=5).loss == pytest.approx(b.fit_lbfgs(Z, y, max_iter=5).loss, rel=1e-12)
    # the check sees the standardised input too: its errors are the plain model's (W0's
    # entries for the constant column have gradient 0, so finite-difference noise over the
    # 1e-6 floor reaches 1e-4 in both; a wrong gradient gives 1e-2)
    np.testing.assert_allclose(fb.check_gradients(a, X, y), fb.check_gradients(b, Z, y), rtol=0.05, atol=2e-6)
    assert len(a.get_weights()) == 4 and a.count_params() == b.count_params()  # no trainable parameters
    assert "normalization_1 (Normalization)" in a.summary(print_fn=None)


def test_standardising_rescues_raw_features(raw):
    """Why the CLI standardises by default: on raw scales the same net barely learns."""
    X, y = raw
    with_norm, without = _model(fb.Normalization().adapt(X), "float32"), _model(None, "float32")
    with_norm.fit(X, y, epochs=30, batch_size=32, verbose=0)
    without.fit(X, y, epochs=30, batch_size=32, verbose=0)
    acc = float(np.mean(with_norm.predict(X).argmax(axis=1) == y))
    acc_raw = float(np.mean(without.predict(X).argmax(axis=1) == y))
    assert acc >= 0.95
    assert acc - acc_raw >= 0.1, (acc, acc_raw)


def test_errors(raw):
    X, y = raw
    with pytest.raises(ValueError, match="both mean and variance, or neither"):
        fb.Normalization(mean=[0.0])
    with pytest.raises(ValueError, match="finite and >= 0"):
        fb.Normalization(mean=[0.0], variance=[-1.0])
    with pytest.raises(ValueError, match="must be the model's first layer"):
        fb.Sequential([fb.Dense(3), fb.Normalization()], loss="mse")
    model = _model(fb.Normalization())
    with pytest.raises(ValueError, match=r"call its adapt\(X_train\) first"):
        model.fit(X, y, verbose=0)
    assert not model.built
    model = _model(fb.Normalization().adapt(X[:, :2]))
    with pytest.raises(ValueError, match="X has 3 features, but the model expects 2"):
        model.fit(X, y, verbose=0)
    assert not model.built
    sp = pytest.importorskip("scipy.sparse")
    model = _model(fb.Normalization().adapt(X))
    with pytest.raises(TypeError, match="sparse, but the model's first layer is a Normalization"):
        model.fit(sp.csr_matrix(X), y, verbose=0)
    with pytest.raises(TypeError, match="needs dense X"):
        fb.Normalization().adapt(sp.csr_matrix(X))
