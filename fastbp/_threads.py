"""One threading model for all of fastbp: Numba owns the threads, BLAS runs on one.

Each compiled call splits its rows into one block per thread (``prange``) and calls BLAS
single-threaded on its block (see ``kernels/engine.py``). Two thread pools on the same
cores, Numba's OpenMP workers spinning while OpenBLAS's threads wait for the cores, made
a prototype 16x slower; here only Numba's pool ever runs.

:func:`set_num_threads` sets how many threads fastbp uses. Every public call enters
:func:`compute_threads`, which applies that count to Numba in the calling thread (Numba's
setting is thread-local) and holds the BLAS library that Numba calls (SciPy's OpenBLAS) at
one thread, restoring both on exit, even on error.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numba
import numpy as np

_lock = threading.Lock()
_n_threads: int = numba.config.NUMBA_NUM_THREADS
_blas_depth = 0
_blas_saved: list[int] = []
_blas_libs: list | None = None


def get_num_threads() -> int:
    """Number of threads fastbp's kernels use (default: all of Numba's, usually all cores)."""
    return _n_threads


def set_num_threads(n: int) -> None:
    """Set the number of threads for every later fastbp call, from any Python thread.

    Parameters
    ----------
    n : int
        Between 1 and ``numba.config.NUMBA_NUM_THREADS`` (the size of Numba's pool, set by
        the ``NUMBA_NUM_THREADS`` environment variable before Numba starts).
    """
    global _n_threads
    limit = numba.config.NUMBA_NUM_THREADS
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        raise TypeError(f"n must be an int, got {type(n).__name__}: {n!r}")
    if not 1 <= n <= limit:
        raise ValueError(f"n must be between 1 and NUMBA_NUM_THREADS={limit}, got {n!r}")
    _n_threads = int(n)


def _numba_blas() -> list:
    """threadpoolctl controllers of the BLAS that Numba's ``np.dot`` calls (SciPy's)."""
    global _blas_libs
    if _blas_libs is None:
        import scipy.linalg.cython_blas  # noqa: F401  (loads the library Numba will call)
        from threadpoolctl import ThreadpoolController

        libs = ThreadpoolController().select(user_api="blas").lib_controllers
        scipy_libs = [c for c in libs if f"scipy{os.sep}" in c.filepath or "scipy.libs" in c.filepath]
        _blas_libs = scipy_libs or libs
    return _blas_libs


def _blas_enter() -> None:
    global _blas_depth, _blas_saved
    with _lock:
        if _blas_depth == 0:
            libs = _numba_blas()
            _blas_saved = [c.num_threads for c in libs]
            for c in libs:
                c.set_num_threads(1)
        _blas_depth += 1


def _blas_exit() -> None:
    global _blas_depth
    with _lock:
        _blas_depth -= 1
        if _blas_depth == 0:
            for c, n in zip(_numba_blas(), _blas_saved):
                c.set_num_threads(n)


#: Set in a child forked (``os.fork``, multiprocessing's "fork") after this process had
#: started Numba's thread pool: that pool (GNU OpenMP) cannot be used in the child.
_forked_after_pool = False


def _pool_started() -> bool:
    from numba.np.ufunc import parallel

    return bool(getattr(parallel, "_is_initialized", False))


def _after_fork_in_child() -> None:
    global _forked_after_pool
    _forked_after_pool = _forked_after_pool or _pool_started()


os.register_at_fork(after_in_child=_after_fork_in_child)


@contextmanager
def compute_threads() -> Iterator[int]:
    """Run a block of fastbp kernels under fastbp's threading model; yields the count.

    Re-entrant and safe to enter from several Python threads at once: BLAS is held at one
    thread until the last one leaves.

    Raises RuntimeError in a process forked after its parent ran fastbp's kernels: Numba's
    OpenMP pool would terminate such a child (SIGTERM) at the first parallel kernel, so the
    call fails cleanly instead, saying what to do.
    """
    if _forked_after_pool:
        raise RuntimeError(
            "fastbp cannot run in a process forked after its parent ran fastbp's parallel kernels: "
            "Numba's OpenMP thread pool is not fork-safe and would terminate this process. Start "
            "worker processes with multiprocessing.get_context('spawn') or 'forkserver' (Dask and "
            "joblib's loky already do), or fork before the parent's first fit/predict."
        )
    n = _n_threads
    old = numba.get_num_threads()
    numba.set_num_threads(n)
    _blas_enter()
    try:
        yield n
    finally:
        _blas_exit()
        numba.set_num_threads(old)
