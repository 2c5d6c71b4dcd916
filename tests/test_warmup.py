"""``fb.warmup`` and ``fastbp warmup``: compile ahead of time, touching nothing.

That a warm-up leaves a later process nothing to compile is tested where a cold cache is
already paid for: ``tests/test_readonly_install.py`` (``test_warmup_leaves_nothing_to_compile``).
"""

from __future__ import annotations

import numpy as np
import pytest

import fastbp as fb
from fastbp.cli import main


def _state(model: fb.Sequential) -> tuple:
    weights = [w.copy() for w in model.get_weights()] if model.built else None
    m = None if model._m is None else model._m.copy()
    return weights, m, model._step, model.history, model._workspace, model._rng.bit_generator.state


def _same(a: tuple, b: tuple) -> None:
    if a[0] is None:
        assert b[0] is None
    else:
        for x, y in zip(a[0], b[0], strict=True):
            np.testing.assert_array_equal(x, y)
    if a[1] is None:
        assert b[1] is None
    else:
        np.testing.assert_array_equal(a[1], b[1])
    assert a[2:] == b[2:]


def test_warmup_of_a_trained_model_leaves_it_as_it_was():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 4))
    y = rng.integers(0, 3, 60)
    model = fb.Sequential([fb.Dense(300, activation="tanh"), fb.Dropout(0.1), fb.Dense(3)], loss="cross_entropy",
                          optimizer=fb.Adam(1e-3), seed=3, dtype="float64")  # fmt: skip
    model.fit(X, y, epochs=2, batch_size=16, verbose=0)
    model._workspace = None  # what a loaded model has; a warm-up must not give it one
    before = _state(model)
    seconds = fb.warmup(model)
    assert isinstance(seconds, float) and seconds > 0
    _same(before, _state(model))
    reference = fb.Sequential([fb.Dense(300, activation="tanh"), fb.Dropout(0.1), fb.Dense(3)],
                              loss="cross_entropy", optimizer=fb.Adam(1e-3), seed=3, dtype="float64")  # fmt: skip
    reference.fit(X, y, epochs=2, batch_size=16, verbose=0)
    model.fit(X, y, epochs=1, batch_size=16, verbose=0)  # training goes on as if nothing happened
    reference.fit(X, y, epochs=1, batch_size=16, verbose=0)
    for a, b in zip(model.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("loss", ["mse", "binary_cross_entropy", "poisson", "huber"])
def test_warmup_of_an_unbuilt_model_leaves_it_unbuilt(loss):
    model = fb.Sequential([fb.Dense(5, activation="relu"), fb.Dense(2)], loss=loss)
    fb.warmup(model)
    assert not model.built and model._workspace is None and model.history is None


def test_warmup_without_a_model_takes_a_dtype():
    assert fb.warmup(dtype="float64") > 0
    with pytest.raises(ValueError, match="dtype"):
        fb.warmup(dtype="int32")


def test_warmup_refuses_what_is_not_a_network():
    with pytest.raises(TypeError, match="model must be a fastbp.Sequential or None, got str"):
        fb.warmup("model.fbp")


def test_cli_warmup(tmp_path, capsys):
    assert main(["warmup", "--dtype", "float64", "--dtype", "float32", "--dtype", "float64"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[3] for line in lines] == ["float64", "float32"]  # once each, in order
    assert all("compiled or loaded from the cache in" in line for line in lines)
    model = fb.Sequential([fb.Dense(4), fb.Dense(2)], loss="mse", dtype="float64")
    model.build(3)
    path = tmp_path / "m.fbp"
    model.save(path)
    assert main(["warmup", str(path)]) == 0
    assert "for float64" in capsys.readouterr().out
    assert main(["warmup", str(path), "--dtype", "float32"]) == 1
    assert "give a dtype or a MODEL, not both" in capsys.readouterr().err
