"""``Sequential.fit_lbfgs``: full-batch L-BFGS over the compiled loss and gradient."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from helpers import net
from sklearn.exceptions import ConvergenceWarning

import fastbp as fb
from fastbp.sklearn import MLPClassifier


def _data(seed=0, n=120):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    y = (X[:, 0] + X[:, 1] ** 2 > 1).astype(int) + (X[:, 2] > 0.5)
    return X, y


def _net(dtype="float64", seed=0):
    return net((16,), "tanh", 3, dtype=dtype, seed=seed)


def test_fit_lbfgs_converges_to_a_stationary_point():
    X, y = _data()
    model = _net()
    assert not model.built  # fit_lbfgs builds it, as fit does
    res = model.fit_lbfgs(X, y, max_iter=500, tol=1e-6)
    assert res.converged and 0 < res.n_iter <= res.n_fun
    assert res.loss == pytest.approx(model.evaluate(X, y), rel=1e-12)  # no L2: the mean loss
    loss, grads = model.loss_and_gradients(X, y)
    assert max(float(np.abs(g).max()) for g in grads) <= 1e-6  # SciPy's gtol, held
    assert loss < 0.2
    assert model.history is None and model._step == 0  # the optimizer was not used


def test_fit_lbfgs_is_the_estimators_lbfgs():
    """The same objective (alpha = 0, multiclass: scikit-learn's loss is fastbp's mean
    cross-entropy) from the same weights (scikit-learn's initialisation, drawn as the
    estimator draws it): the same iterates, so the same weights to rounding."""
    X, y = _data(1)
    kw = dict(hidden_layer_sizes=(16,), activation="tanh", solver="lbfgs", alpha=0.0, max_iter=30, dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = MLPClassifier(**kw, random_state=0).fit(X, y)
    model = fb.Sequential([fb.Dense(16, activation="tanh"), fb.Dense(3)], loss="cross_entropy", dtype="float64")
    model.build(4)
    model.set_weights(MLPClassifier(**kw)._init_weights(np.random.RandomState(0), [4, 16, 3]))
    res = model.fit_lbfgs(X, y, max_iter=30, tol=est.tol)
    assert res.n_iter == est.n_iter_
    assert res.loss == pytest.approx(est.loss_, rel=1e-9)
    theirs = [w for pair in zip(est.coefs_, est.intercepts_) for w in pair]
    for a, b in zip(model.get_weights(), theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_fit_lbfgs_l2_and_limits():
    X, y = _data(2)
    a, b = _net(), _net()
    ra = a.fit_lbfgs(X, y, max_iter=300)
    rb = b.fit_lbfgs(X, y, max_iter=300, l2=0.1)
    wa = sum(float((w**2).sum()) for w in a.get_weights()[0::2])
    wb = sum(float((w**2).sum()) for w in b.get_weights()[0::2])
    assert wb < wa and rb.loss > ra.loss  # the penalty shrinks the weights and is in the objective
    short = _net().fit_lbfgs(X, y, max_iter=2)
    assert not short.converged and short.n_iter == 2 and "ITERATIONS" in short.message.upper()


def test_fit_lbfgs_bad_input_leaves_the_model_as_it_was():
    X, y = _data(3)
    model = _net()
    model.build(4)
    before = [w.copy() for w in model.get_weights()]
    for kwargs, exc in (({"max_iter": 0}, ValueError), ({"tol": -1.0}, ValueError), ({"l2": "big"}, TypeError)):
        with pytest.raises(exc):
            model.fit_lbfgs(X, y, **kwargs)
    with pytest.raises(ValueError, match="contains NaN"):
        model.fit_lbfgs(np.where(X > 2, np.nan, X), y)
    with pytest.raises(ValueError, match="Dropout"):
        fb.Sequential([fb.Dense(8), fb.Dropout(0.1), fb.Dense(3)], loss="cross_entropy").fit_lbfgs(X, y)
    for a, b in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_fit_lbfgs_interrupted_restores_the_starting_weights(monkeypatch):
    X, y = _data(4)
    model = _net()
    model.build(4)
    before = [w.copy() for w in model.get_weights()]
    calls = []
    real = model._full_batch

    def interrupting(*args):
        evaluate = real(*args)

        def ev():
            calls.append(1)
            if len(calls) == 3:
                raise KeyboardInterrupt
            return evaluate()

        return ev

    monkeypatch.setattr(model, "_full_batch", interrupting)
    with pytest.raises(KeyboardInterrupt):
        model.fit_lbfgs(X, y)
    for a, b in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
