"""What a warm start skips, and that nothing breaks for it: kernels load from the cache
without Numba's registry refresh (``kernels/cache.py``), and SciPy's BLAS loads without
the ``scipy.linalg`` package (``kernels/blas.py``)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from numba.core.dispatcher import Dispatcher

from fastbp import _config
from fastbp.kernels import activations, blas, cache, dense, dropout, engine, launch, losses, optim

CHILD = r"""
import json, sys
import numpy as np
import fastbp as fb
from fastbp.kernels import launch
rng = np.random.default_rng(0)
X = rng.standard_normal((200, 5)).astype(np.float32)
y = rng.integers(0, 3, 200)
model = fb.Sequential([fb.Dense(8, activation="relu"), fb.Dense(3)], loss="cross_entropy", seed=0)
model.fit(X, y, epochs=2, batch_size=50, verbose=0)
compiled = [name for name, cb in launch.CALLBACKS.items() if cb.cache_hits == 0]
linalg_before = "scipy.linalg" in sys.modules

# the user's own Numba code, compiled after fastbp loaded its kernels: Numba's full
# compiler (np.dot reaches SciPy's BLAS by the ordinary import)
from numba import njit, typed

@njit
def user(a):
    out = typed.List()
    out.append(np.dot(a, a.T).sum())
    return out[0] + np.linalg.norm(a[0])

a = np.arange(6.0).reshape(2, 3)
import scipy.linalg.cython_blas
print(json.dumps({"pred": model.predict(X[:3]).tolist(), "compiled": compiled, "linalg": linalg_before,
                  "user": user(a), "capi": "dgemm" in scipy.linalg.cython_blas.__pyx_capi__}))
"""


def _run(cache_dir: str) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    proc = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_warm_process_loads_every_kernel_and_still_compiles_user_code(tmp_path):
    cold = _run(str(tmp_path / "cache"))
    warm = _run(str(tmp_path / "cache"))
    assert cold["compiled"] and warm["compiled"] == []  # the second process compiled nothing
    np.testing.assert_array_equal(np.array(warm["pred"]), np.array(cold["pred"]))  # the same code ran
    a = np.arange(6.0).reshape(2, 3)
    expected = float((a @ a.T).sum() + np.linalg.norm(a[0]))
    for r in (cold, warm):
        assert r["user"] == pytest.approx(expected, rel=1e-12)
        assert r["capi"]  # the ordinary import of SciPy's BLAS module works after fastbp's
    # a warm process never imports scipy.linalg (a cold one does: Numba's compiler imports it)
    assert not warm["linalg"]


@pytest.mark.skipif(not (_config.CACHE and cache.AVAILABLE), reason="no disk cache here")
def test_every_kernel_has_the_prompt_cache():
    modules = (activations, blas, dense, dropout, engine, launch, losses, optim)
    found = 0
    for module in modules:
        for value in vars(module).values():
            if isinstance(value, Dispatcher) and value.py_func.__module__ == module.__name__:
                assert isinstance(value._cache, cache.PromptCache), value
                found += 1
    assert found >= 100
    launch._register_launcher()  # at least one C callback made (or loaded) in this process
    assert launch.CALLBACKS and all(isinstance(cb._cache, cache.PromptCache) for cb in launch.CALLBACKS.values())


@pytest.mark.skipif(not (_config.CACHE and cache.AVAILABLE), reason="no disk cache here")
def test_the_prompt_cache_sets_itself_up_on_first_use():
    fresh = cache.PromptCache(engine.train_batches.py_func)
    assert "_impl" not in vars(fresh)  # nothing probed yet
    assert fresh.cache_path == engine.train_batches._cache.cache_path  # Numba's set-up, on first read
    assert "_impl" in vars(fresh)


def test_cython_blas_falls_back_to_the_ordinary_import(monkeypatch):
    monkeypatch.delitem(sys.modules, "scipy.linalg.cython_blas", raising=False)
    monkeypatch.setattr(blas, "EXTENSION_SUFFIXES", [".not-a-suffix"])  # SciPy laid out unexpectedly
    module = blas._cython_blas()
    assert module is importlib.import_module("scipy.linalg.cython_blas")
    assert blas._address(module.__pyx_capi__["sgemm"]) == blas._address(blas._capi["sgemm"])


PIECES = r"""
import json, sys
import numpy as np
import fastbp as fb
from fastbp import _precompile
from fastbp.kernels import engine, launch

net, split = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(0)
X = rng.standard_normal((64, 6)).astype(np.float32)
fb.set_num_threads(2)
if net == "a":
    layers, loss, opt = [fb.Dense(8, activation="relu"), fb.Dense(3)], "cross_entropy", fb.Adam(0.01)
    y = rng.integers(0, 3, 64)
else:
    layers, loss, opt, y = ([fb.Dense(8, activation="tanh"), fb.Dropout(0.2), fb.Dense(2)], "mse", fb.AdamW(0.01),
                            rng.standard_normal((64, 2)))
if split == "cols":
    layers[0] = fb.Dense(512, activation=layers[0].activation)
model = fb.Sequential(layers, loss=loss, optimizer=opt, seed=0)
batch = 8 if split == "cols" else 32
if sys.argv[3] == "pieces":  # the helper's work, in its order (from the last), and nothing else
    model.build(6)
    Xc, yi, yf, sw = model._check_xy(X, y, None)
    for _, compile_piece in reversed(_precompile.pieces(model, Xc, yi, yf, np.zeros(0), batch, batch, 2)):
        compile_piece()
    print(json.dumps({}))
else:
    model.fit(X, y, epochs=1, batch_size=batch, verbose=0)
    model.predict(X)
    compiled = [name for name, cb in launch.CALLBACKS.items() if cb.cache_hits == 0]
    compiled += [d.__name__ for d in (engine.train_batches, engine.forward) if not sum(d._cache_hits.values())]
    print(json.dumps({"compiled": compiled}))
"""


@pytest.mark.skipif(not (_config.CACHE and cache.AVAILABLE), reason="no disk cache here")
@pytest.mark.parametrize("net,split", [("a", "rows"), ("b", "rows"), ("a", "cols")])
def test_the_helpers_pieces_are_what_a_fit_and_predict_compile(tmp_path, net, split):
    """A process that only compiles ``_precompile.pieces``, from the last as the helper
    does, leaves a fit + predict of the same network (row split, column split, dropout)
    nothing to compile: the helper's records have the fit's types. And the helper's
    order also works on a warm cache (its first pieces then load code that calls the
    launcher, which must be registered first)."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"), FASTBP_COMPILE_HELPER="0")
    for step in ("pieces", "fit", "pieces"):
        proc = subprocess.run([sys.executable, "-c", PIECES, net, split, step], env=env, capture_output=True,
                              text=True, timeout=600)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        if step == "fit":
            assert json.loads(proc.stdout.strip().splitlines()[-1])["compiled"] == []


HELPED = r"""
import json
import numpy as np
import fastbp as fb
from fastbp import _precompile
rng = np.random.default_rng(0)
X = rng.standard_normal((200, 5)).astype(np.float32)
y = rng.integers(0, 3, 200)
fb.set_num_threads(2)
model = fb.Sequential([fb.Dense(8, activation="relu"), fb.Dense(3)], loss="cross_entropy", seed=0)
model.fit(X, y, epochs=2, batch_size=50, verbose=0)
pred = model.predict(X[:3]).tolist()
started = _precompile._helper is not None or bool(_precompile.exits)
if _precompile._helper is not None:
    _precompile._helper.wait(timeout=600)
    _precompile._finish()
print(json.dumps({"pred": pred, "helpers": _precompile.exits if started else []}))
"""


@pytest.mark.skipif(not (_config.CACHE and cache.AVAILABLE), reason="no disk cache here")
def test_a_cold_fit_starts_one_helper_and_trains_the_same(tmp_path):
    runs = {}
    for flag in ("1", "0"):
        env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / f"cache{flag}"), FASTBP_COMPILE_HELPER=flag)
        proc = subprocess.run([sys.executable, "-c", HELPED], env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[flag] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert runs["1"]["helpers"] == [0]  # one helper, and it finished cleanly
    assert runs["0"]["helpers"] == []
    np.testing.assert_array_equal(np.array(runs["1"]["pred"]), np.array(runs["0"]["pred"]))


def test_the_helper_is_started_once_and_only_where_wanted(monkeypatch):
    from fastbp import _precompile

    calls = []
    monkeypatch.setattr(_precompile, "_start", lambda *args: calls.append(args))
    X = np.zeros((4, 3), np.float32)
    fit = (None, X, None, None, None, 4, 4)  # model, X, yi, yf, sw, rows, batch_size (no model needed here)
    for n_threads, flag in ((1, "1"), (2, "0")):  # one thread, or switched off: no starter at all
        monkeypatch.setenv(_precompile.ENV, flag)
        with _precompile.helping(*fit, n_threads):
            assert _precompile._starter.get() is None
    monkeypatch.setenv(_precompile.ENV, "1")
    with _precompile.helping(*fit, 2):
        if not (_config.CACHE and cache.AVAILABLE):
            assert _precompile._starter.get() is None
            return
        assert cache.on_miss is _precompile._on_miss
        entry = cache.PromptCache(engine.forward.py_func)
        for _ in range(2):  # _start (stubbed) starts no process: each miss just compiles
            assert _precompile._on_miss(entry, (), None) is None
    assert len(calls) == 2 and _precompile._starter.get() is None
    assert _precompile._on_miss(entry, (), None) is None and len(calls) == 2  # outside a fit: nothing started


def test_claims_are_atomic_and_per_kernel(tmp_path):
    from fastbp import _precompile

    a, b = cache.PromptCache(engine.forward.py_func), cache.PromptCache(engine.train_batches.py_func)
    assert _precompile._claim(str(tmp_path), a, "sig")
    assert not _precompile._claim(str(tmp_path), a, "sig")  # the other process holds it
    assert _precompile._claim(str(tmp_path), a, "other sig") and _precompile._claim(str(tmp_path), b, "sig")
