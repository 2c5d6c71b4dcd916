"""kernels/launch.py: bodies compiled on their own and run through their addresses."""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
import pytest
from numba import njit, types
from numba.core.errors import TypingError

from fastbp.kernels.blas import gemm_at
from fastbp.kernels.launch import (
    CTX,
    address,
    as_dtype,
    body_address,
    call_void,
    cview,
    pack,
    ref,
    run_blocks,
    run_serial,
    specialise,
    unpack,
)
from fastbp.kernels.launch import _take as take

SCALARS = types.Tuple((types.int64, types.float64))


class Record(NamedTuple):
    out: np.ndarray
    offset: float


def _fill_body(t, n, ctx):
    """Piece t of n: out[t] = scale * t + n + offset (every input reaches the body)."""
    (scale, _), rec = unpack(ctx, CTX)
    rec.out[t] = scale * t + n + rec.offset


@njit
def _drive(rec, body, n, parallel):
    ctx = pack((np.int64(3), 0.5), SCALARS, rec)  # a named record: stored as a pointer to a copy
    if parallel:
        run_blocks(body, n, ctx)
    else:
        run_serial(body, n, ctx)


@pytest.mark.parametrize("n", [1, 2, 7])
@pytest.mark.parametrize("parallel", [True, False])
def test_every_piece_runs_once_with_its_context(n, parallel):
    rec = Record(np.full(n, np.nan), 10.0)
    _drive(rec, body_address(_fill_body, SCALARS, rec), n, parallel)
    np.testing.assert_array_equal(rec.out, 3.0 * np.arange(n) + n + 10.0)


class Stolen(NamedTuple):
    out: np.ndarray
    count: np.ndarray


def _steal_body(t, n, ctx):
    """Piece 0 waits (up to ~1 s) until every other piece has run, and records how many
    had; the others count themselves. Only another thread taking the pieces of piece 0's
    range (stealing) can finish them while it waits."""
    _, rec = unpack(ctx, CTX)
    if t == 0:
        checks = 0
        others = 0
        while checks < 50_000_000 and others < n - 1:
            others = take(rec.count, 0) - checks  # each check adds 1 too
            checks += 1
        rec.out[0] = others
    else:
        take(rec.count, 0)
        rec.out[t] += 1.0


@pytest.mark.parametrize("n", [7, 40])
def test_a_thread_takes_the_pieces_of_a_busy_one(n):
    """run_blocks splits the pieces statically between the threads, but a thread that has
    finished its own takes what is left of the others': here the first piece blocks until
    all the rest ran, which needs the other thread to run the first piece's range too."""
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs two threads")
    rec = Stolen(np.zeros(n), np.zeros(1, dtype=np.int64))
    numba.set_num_threads(2)
    try:
        _drive(rec, body_address(_steal_body, SCALARS, rec), n, True)
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    assert rec.out[0] == n - 1  # every other piece ran while the first one waited
    np.testing.assert_array_equal(rec.out[1:], 1.0)  # each exactly once


def test_a_body_compiles_once_per_context_type():
    rec = Record(np.zeros(2), 0.0)
    assert body_address(_fill_body, SCALARS, rec) == body_address(_fill_body, SCALARS, Record(np.ones(5), 1.0))
    other = Record(np.zeros(2, dtype=np.float32), 0.0)  # another array type: another copy
    assert body_address(_fill_body, SCALARS, other) != body_address(_fill_body, SCALARS, rec)


def test_scalars_of_the_wrong_type_fail_to_compile():
    @njit
    def wrong(rec):
        return pack((np.int64(3), np.int64(1)), SCALARS, rec)  # int64 where the body reads float64

    with pytest.raises(TypingError, match="context scalars"):
        wrong(Record(np.zeros(1), 0.0))


def test_only_c_contiguous_arrays_go_to_c_functions():
    @njit
    def strided(x):
        call_void(0, (x[:, ::2],))  # never called: it must not compile

    with pytest.raises(TypingError, match="C-contiguous"):
        strided(np.zeros((2, 4)))


def test_specialise_names_each_copy():
    copy = specialise(_fill_body, "abc", {"CTX": SCALARS})
    assert copy.__qualname__ == "_fill_body__abc"
    assert copy.__globals__["CTX"] is SCALARS and _fill_body.__globals__["CTX"] is None


def test_a_fresh_process_runs_a_cached_caller(tmp_path):
    """Twice on one cache, each a new process: the launcher (a C callback that runs a
    ``prange``) is compiled, then loaded; loading it must start Numba's thread pool first
    (Numba does not for a callback: LLVM aborted the process here)."""
    import os
    import subprocess
    import sys

    code = (
        "import numpy as np\n"
        "from numba import njit\n"
        "import tests.test_launch as t\n"
        "rec = t.Record(np.zeros(4), 1.0)\n"
        "addr = t.body_address(t._fill_body, t.SCALARS, rec)\n"
        "t._drive(rec, addr, 4, True)\n"
        "print(rec.out.tolist())\n"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=root,
                             timeout=300)  # fmt: skip
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.strip() == "[5.0, 8.0, 11.0, 14.0]"  # 3 t + n + offset


@njit
def _drive_by_ref(rec, body, n):
    r = ref(rec)  # a reference: pack stores the pointer itself
    run_blocks(body, n, pack((np.int64(3), 0.5), SCALARS, r))
    return r.offset + r.out.shape[0]  # fields read through the reference


def test_a_record_reference_reads_and_writes_the_record_in_place():
    """The body sees the caller's record through a reference (``launch.RecordRef``): writes
    land in the caller's arrays, scalars read back, whether ``pack`` got the record or a
    ``ref`` to it."""
    rec = Record(np.full(5, np.nan), 10.0)
    assert _drive_by_ref(rec, body_address(_fill_body, SCALARS, rec), 5) == 15.0
    np.testing.assert_array_equal(rec.out, 3.0 * np.arange(5) + 5 + 10.0)


@njit
def _views(raw, p, n):
    return as_dtype(raw, np.float32), cview(p, (n,), np.float64), address(raw)


def test_byte_views_read_the_same_memory():
    """``as_dtype`` reads a uint8 view back as floats (the records' bytes), ``cview`` views
    a data pointer, ``address`` gives one; all without copying."""
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    y = np.linspace(0.0, 1.0, 7)
    back, view, addr = _views(x.view(np.uint8), y.ctypes.data, 7)
    assert back.shape == (3, 4) and back.dtype == np.float32
    np.testing.assert_array_equal(back, x)
    back[1, 2] = -1.0
    assert x[1, 2] == -1.0  # the same memory
    np.testing.assert_array_equal(view, y)
    assert addr == x.ctypes.data


@njit
def _gemm_at(isz, ta, tb, m, n, k, a, lda, b, ldb, c, ldc):
    gemm_at(isz, ta, tb, m, n, k, a, lda, b, ldb, c, ldc)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("ta", "tb"), [(False, False), (True, False), (False, True), (True, True)])
def test_gemm_at_equals_numpy_on_column_blocks(rng, dtype, ta, tb):
    """``gemm_at`` (addresses, row strides in elements, sgemm or dgemm by itemsize) on
    column blocks of wider row-major matrices equals NumPy, and writes nothing outside
    ``c``'s block; an empty ``c`` calls nothing."""
    isz = np.dtype(dtype).itemsize
    a_full = rng.standard_normal((9, 11)).astype(dtype)
    b_full = rng.standard_normal((9, 13)).astype(dtype)
    c_full = np.full((10, 15), 7.0, dtype)
    am, ak = (5, 7) if ta else (7, 5)  # op(a) is 7 x 5
    bk, bn = (6, 5) if tb else (5, 6)  # op(b) is 5 x 6
    a = a_full[1 : 1 + am, 2 : 2 + ak]
    b = b_full[2 : 2 + bk, 3 : 3 + bn]
    c = c_full[2:9, 4:10]  # 7 x 6
    _gemm_at(isz, ta, tb, 7, 6, 5, a.ctypes.data, 11, b.ctypes.data, 13, c.ctypes.data, 15)
    expect = (a.T if ta else a) @ (b.T if tb else b)
    np.testing.assert_allclose(c, expect, rtol=1e-5 if dtype == np.float32 else 1e-13, atol=1e-5)
    outside = c_full.copy()
    outside[2:9, 4:10] = 7.0
    assert (outside == 7.0).all()
    _gemm_at(isz, ta, tb, 0, 6, 5, a.ctypes.data, 11, b.ctypes.data, 13, c.ctypes.data, 15)  # empty: no call
