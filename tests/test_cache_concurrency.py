"""Concurrent cold starts on one Numba cache: several workers starting at once on an empty
cache (a Dask or joblib pool on a fresh machine) each compile what they need, none fails or
reads another's half-written file, and a later process then loads everything (Numba writes
each cache file to a temporary name and renames it into place)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

CHILD = r"""
import json, sys
import numpy as np
import fastbp as fb
from fastbp.kernels import launch
rng = np.random.default_rng(0)
X = rng.standard_normal((256, 6)).astype(np.float32)
y = rng.integers(0, 3, 256)
model = fb.Sequential([fb.Dense(16, activation="tanh"), fb.Dense(3)], loss="cross_entropy",
                      optimizer=fb.Adam(0.01), seed=0)
model.fit(X, y, epochs=2, batch_size=32, verbose=0)
compiled = [name for name, cb in launch.CALLBACKS.items() if cb.cache_hits == 0]
print(json.dumps({"pred": model.predict(X[:4]).tolist(), "compiled": compiled}))
"""


def _start(cache: str) -> subprocess.Popen:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache)
    return subprocess.Popen([sys.executable, "-c", CHILD], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip


def _result(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def test_concurrent_cold_starts_share_one_cache(tmp_path):
    cache = str(tmp_path / "numba-cache")
    first = [_start(cache) for _ in range(3)]  # at once, on an empty cache
    results = [_result(p) for p in first]
    assert any(r["compiled"] for r in results)  # the cache was empty: something compiled
    later = _result(_start(cache))
    assert later["compiled"] == []  # everything loads now
    for r in results:  # the same model, whoever compiled what
        np.testing.assert_array_equal(np.array(r["pred"]), np.array(later["pred"]))
