"""kernels/launch.py: bodies compiled on their own and run through their addresses."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pytest
from numba import njit, types
from numba.core.errors import TypingError

from fastbp.kernels.launch import CTX, body_address, call_void, pack, run_blocks, run_serial, specialise, unpack

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
    ctx = pack((np.int64(3), 0.5), SCALARS, rec)
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
