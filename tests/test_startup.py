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
from numba.core.caching import NullCache
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
