"""kernels/pool.py: fastbp's worker pool, whose regions end when their pieces are done.

Each test runs in a fresh interpreter (``subprocess``, with a timeout): the pool is
process-wide, and a region that waited for an absent thread would hang, not fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

_TRAIN = textwrap.dedent(
    """
    import hashlib, json, sys, time
    import numpy as np
    {setup}
    import fastbp as fb
    fb.set_num_threads(2)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((600, 40)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)
    out = {{}}
    # batch 16 through a 256-unit layer takes the column split, batch 128 the row split
    for batch in (16, 128):
        m = fb.Sequential([fb.Dense(256, "relu"), fb.Dropout(0.1), fb.Dense(32, "tanh"), fb.Dense(3)],
                          loss="cross_entropy", optimizer="adam", seed=1)
        m.fit(X, y, epochs=2, batch_size=batch, verbose=0)
        h = hashlib.sha256(b"".join(w.tobytes() for w in m.get_weights()))
        h.update(m.predict(X).tobytes())
        out[str(batch)] = h.hexdigest()
    {after}
    print(json.dumps(out))
    """
)


def _run(setup: str = "", after: str = "", pool: str = "1", timeout: float = 600) -> dict:
    env = dict(os.environ, NUMBA_NUM_THREADS="2", FASTBP_POOL=pool)
    code = _TRAIN.format(setup=setup, after=after)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def own_pool() -> dict:
    return _run()


def test_the_same_bits_as_on_numbas_pool(own_pool):
    """Every piece runs once, on whichever thread, so both pools give identical weights
    and predictions (row and column split, dropout, Adam)."""
    assert _run(pool="0") == own_pool


def test_a_region_never_waits_for_a_worker_that_has_not_arrived(own_pool):
    """The pool is told it has a worker, but none ever starts: every region of two threads
    is published for it, and the master runs all the pieces and returns (a team barrier
    would wait for that thread forever). Same bits, since a piece does not depend on who
    runs it."""
    setup = textwrap.dedent(
        """
        from fastbp.kernels import pool
        from llvmlite import binding as llvm
        def absent_worker(n_workers):
            llvm.add_symbol(pool.SYMBOL, pool.STATE.ctypes.data)
            pool.STATE[pool.WORKERS] = 1
            pool._started = 1
        pool.start = absent_worker
        """
    )
    after = "assert pool.STATE[pool.GEN] > 0, 'no region was published'"
    assert _run(setup=setup, after=after, timeout=180) == own_pool  # a hang: TimeoutExpired


def test_an_idle_pool_sleeps():
    """Once a fit is over the workers back off to naps: an idle process costs next to no
    CPU (measured ~1-3 % of a core; the bound is 25 %, against a whole core spinning)."""
    after = textwrap.dedent(
        """
        time.sleep(0.3)  # the back-off: a short spin, then yields, then naps
        c0, t0 = time.process_time(), time.perf_counter()
        time.sleep(1.0)
        out["idle_cpu"] = (time.process_time() - c0) / (time.perf_counter() - t0)
        """
    )
    out = _run(after=after)
    assert out["idle_cpu"] < 0.25, out
