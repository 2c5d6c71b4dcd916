"""kernels/fpenv.py: subnormals are flushed to zero on every thread that runs fastbp's
arithmetic, and only there.

The speed this buys is measured in ``benchmarks/`` (a late epoch of a converging fit);
these tests check the modes themselves: a product below the smallest normal float comes
out 0 from fastbp (and is not 0 in NumPy), on the calling thread and on both pools'
workers, and the caller's own control word is the same after a call as before it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from numba import njit

import fastbp as fb
from fastbp.kernels.fpenv import FLUSH_BITS, X86, control_word

pytestmark = pytest.mark.skipif(not X86, reason="FTZ/DAZ are set on x86 only (fpenv.X86)")


@njit
def _word() -> int:
    return control_word()


def _linear(dtype: str, w: float) -> fb.Sequential:
    m = fb.Sequential([fb.Dense(1)], loss="mse", dtype=dtype, seed=0)
    m.build(1)
    m.set_weights([np.array([[w]], dtype=dtype), np.zeros(1, dtype=dtype)])
    return m


@pytest.mark.parametrize(("dtype", "tiny"), [("float32", 1e-20), ("float64", 1e-160)])
def test_a_subnormal_product_is_flushed_to_zero(dtype, tiny):
    """tiny * tiny is subnormal in the dtype (1e-40 < 1.2e-38; 1e-320 < 2.2e-308): NumPy
    keeps it (gradual underflow), fastbp's forward pass gives exactly 0 (FTZ)."""
    X = np.full((8, 1), tiny, dtype=dtype)
    assert (X * np.asarray(tiny, dtype=dtype) != 0).all()  # the reference: not flushed
    assert (_linear(dtype, tiny).predict(X) == 0).all()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_subnormal_input_reads_as_zero(dtype):
    """DAZ: an input that is itself subnormal is read as 0, so times a large weight it gives
    0 (NumPy: 1e-40 * 1e30 = 1e-10)."""
    sub = np.finfo(dtype).smallest_normal / 4
    X = np.full((8, 1), sub, dtype=dtype)
    assert (X * 1e30 != 0).all()
    assert (_linear(dtype, 1e30).predict(X) == 0).all()


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_the_optimizer_step_reads_subnormal_weights_as_zero(opt):
    """With zero inputs and targets and subnormal weights the gradient is 0 (the output's
    delta is subnormal, flushed), and the update ``w - step`` reads ``w`` as 0 (DAZ), so one
    step leaves every weight exactly 0; with gradual underflow they would stay put. This
    small a network updates on the calling thread (the driver's serial step)."""
    sub = np.finfo(np.float32).smallest_normal / 8
    m = fb.Sequential([fb.Dense(1)], loss="mse", optimizer=opt, seed=0)
    m.build(1)
    m.set_weights([np.full((1, 1), sub, dtype=np.float32), np.full(1, sub, dtype=np.float32)])
    m.fit(np.zeros((4, 1), dtype=np.float32), np.zeros(4, dtype=np.float32), epochs=1, batch_size=4, verbose=0)
    assert all((w == 0).all() for w in m.get_weights())


def test_the_callers_control_word_is_restored():
    """fit, predict and evaluate set the modes for their own work and put the calling
    thread's word back, so the caller's NumPy keeps IEEE gradual underflow."""
    before = _word()
    assert before & FLUSH_BITS == 0  # Python starts with both modes off
    rng = np.random.default_rng(0)
    X = rng.standard_normal((256, 8)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    m = fb.Sequential([fb.Dense(16, "relu"), fb.Dense(2)], loss="cross_entropy", seed=0)
    m.fit(X, y, epochs=2, batch_size=32, verbose=0)
    m.predict(X)
    m.evaluate(X, y)
    assert _word() == before
    tiny = np.float32(1e-20)
    assert tiny * tiny != 0  # and so NumPy still underflows gradually


# A region of two pieces on two threads: piece 1 records the control word of the thread
# that runs it; piece 0 (the master's share) waits, within a bound, for piece 1 to be done,
# and records whether it was. If it was, a worker ran piece 1: the master runs the pieces
# of its share first and could only have taken piece 1 after piece 0.
_WORKER = textwrap.dedent(
    """
    import json
    import numpy as np
    from numba import cfunc, njit
    import fastbp as fb
    from fastbp.kernels.fpenv import control_word
    from fastbp.kernels.launch import BODY_SIG, _register_launcher, cview, run_blocks
    from fastbp.kernels.pool import _yield

    @cfunc(BODY_SIG)
    def body(t, n, ctx):
        out = cview(ctx, (3,), np.int64)
        if t == 1:
            out[1] = control_word() | (1 << 40)  # bit 40: written
        else:
            i = 0
            while out[1] == 0 and i < 1_000_000:  # sched_yield: an opaque call, so out[1] is re-read
                _yield()
                i += 1
            out[2] = 1 if out[1] != 0 else 0
            out[0] = control_word()

    @njit
    def region(b, ctx):
        run_blocks(b, 2, ctx)
        return control_word()

    _register_launcher()  # the symbol run_blocks calls (a cached run_blocks does not register it)
    fb.set_num_threads(2)
    rows = []
    for _ in range(20):
        out = np.zeros(3, dtype=np.int64)
        after = region(body.address, out.ctypes.data)
        rows.append([int(v) for v in out] + [int(after)])
        if out[2]:
            break
    print(json.dumps(rows))
    """
)


@pytest.mark.parametrize("pool", ["1", "0"], ids=["own-pool", "numba-pool"])
def test_the_workers_flush_too(pool):
    """A piece a worker runs sees both modes set (fastbp's pool sets them when a worker
    starts; on Numba's pool the region sets them around its blocks), as does the master's
    piece, and the caller's word is back to its own after the region."""
    env = dict(os.environ, NUMBA_NUM_THREADS="2", FASTBP_POOL=pool)
    proc = subprocess.run([sys.executable, "-c", _WORKER], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(proc.stdout.strip().splitlines()[-1])
    master, worker, by_worker, after = rows[-1]
    assert by_worker == 1, f"no region of 20 had a worker run piece 1: {rows}"
    assert worker & FLUSH_BITS == FLUSH_BITS
    assert master & FLUSH_BITS == FLUSH_BITS
    assert after & FLUSH_BITS == 0
