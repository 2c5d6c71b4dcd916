"""The seam between Sequential and its wrappers (``fastbp.state``): the training state,
validated inputs and per-call optimizer overrides, and that the wrappers use only it."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from helpers import net

import fastbp as fb

#: The modules around Sequential (``_warmup.py`` is not one: it compiles the kernels a
#: network needs by driving a scratch model's internals, on purpose).
WRAPPERS = ("sklearn.py", "dask.py", "io.py", "diagnostics.py", "cli.py", "callbacks.py")
#: Names an ``obj._name`` may have as ``obj``: the object itself (``est`` is the
#: estimator in scikit-learn's ``available_if`` checks), and a standard-library module.
OWNERS = ("self", "cls", "est", "argparse")


def _data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 5)).astype(np.float32)
    return X, (X[:, 0] > 0).astype(int)


def _model(optimizer="adam", seed=0):
    return net((8,), "tanh", 2, optimizer=optimizer, seed=seed)


def test_wrappers_use_no_private_attribute_of_another_object():
    """The modules around Sequential reach a model through its public API and
    ``fastbp.state`` only: no ``obj._name`` except on ``self`` (an estimator's own
    ``self._model`` is its attribute)."""
    root = Path(fb.__file__).parent
    found = []
    for name in WRAPPERS:
        for node in ast.walk(ast.parse((root / name).read_text())):
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                owner = node.value
                if not (isinstance(owner, ast.Name) and owner.id in OWNERS):
                    found.append(f"{name}:{node.lineno}: .{node.attr}")
    assert found == []


def test_state_is_live_and_set_state_copies_in_place():
    X, y = _data()
    a, b = _model(), _model(seed=5)
    a.fit(X, y, epochs=2, verbose=0)
    b.fit(X[:10], y[:10], epochs=1, verbose=0)
    s = a.state
    assert s.theta is a.state.theta and s.step == 2 * 4
    w0 = b[0].w
    b.set_state(s.copy())
    assert b[0].w is w0  # the layers' views stay linked
    for got, want in zip(b.get_weights(), a.get_weights()):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(b.state.m, a.state.m)
    assert b.state.step == a.state.step
    a.fit(X, y, epochs=1, verbose=0)
    b.fit(X, y, epochs=1, verbose=0)
    for got, want in zip(b.get_weights(), a.get_weights()):  # same state, same generator: same epoch
        np.testing.assert_array_equal(got, want)


def test_set_state_refuses_what_does_not_fit_and_changes_nothing():
    X, y = _data()
    model = _model()
    model.fit(X, y, epochs=1, verbose=0)
    before = model.state.copy()
    bad = before.copy()
    bad.v = bad.v[:-1]
    with pytest.raises(ValueError, match=r"state.v must be an array of shape"):
        model.set_state(bad)
    with pytest.raises(TypeError, match="state must be a TrainingState"):
        model.set_state((before.theta, before.m, before.v, 0, before.rng))
    np.testing.assert_array_equal(model.state.theta, before.theta)
    assert model.state.step == before.step
    unbuilt = _model()
    with pytest.raises(ValueError, match="holds parameters, but the model is not built"):
        unbuilt.set_state(before)


def test_check_inputs_validates_like_fit():
    X, y = _data()
    norm = fb.Normalization().adapt(X)
    model = fb.Sequential([norm, fb.Dense(4, "relu"), fb.Dense(2)], loss="cross_entropy", seed=0)
    inputs = model.check_inputs(X, y)
    np.testing.assert_allclose(inputs.X, norm.transform(X), rtol=1e-6)
    assert inputs.targets is inputs.yi and inputs.sw is None and inputs.yf.shape == (0, 2)
    raw = model.check_inputs(X, y, [1.0] * len(y), standardize=False)
    assert raw.X is X and raw.sw.dtype == np.float64
    with pytest.raises(ValueError, match="labels must be in 0..1"):
        model.check_inputs(X, y + 1)
    reg = fb.Sequential([fb.Dense(3), fb.Dense(1)], loss="mse")
    assert reg.check_inputs(X, X[:, 0]).targets.shape == (len(X), 1)


def test_optimizer_overrides_apply_to_one_call_only():
    X, y = _data()
    a, b = _model(fb.SGD(lr=0.01, momentum=0.9)), _model(fb.SGD(lr=0.3, momentum=0.9))
    a.fit(X, y, epochs=2, verbose=0, optimizer_overrides={"lr": 0.3})
    b.fit(X, y, epochs=2, verbose=0)
    for got, want in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(got, want)
    assert a.optimizer.lr == 0.01 and a.history.history["lr"] == [0.3, 0.3]
    with pytest.raises(ValueError, match="SGD has no overridable 'eps'"):
        a.fit(X, y, optimizer_overrides={"eps": 1e-3}, verbose=0)
    with pytest.raises(ValueError, match=r"optimizer_overrides\['lr'\] must be in \(0.0"):
        a.fit(X, y, optimizer_overrides={"lr": 0.0}, verbose=0)
    with pytest.raises(TypeError, match="optimizer_overrides must be a dict"):
        a.fit(X, y, optimizer_overrides=[("lr", 0.1)], verbose=0)
