"""One threading model for all of fastbp: one pool owns the threads, BLAS runs on one.

Each compiled call splits its rows into blocks, one or more per thread, run on fastbp's
worker pool (``kernels/pool.py``; Numba's OpenMP pool with ``FASTBP_POOL=0``), and calls
BLAS single-threaded on each block (see ``kernels/engine.py``). Two thread pools on the
same cores, Numba's OpenMP workers spinning while OpenBLAS's threads wait for the cores,
made a prototype 16x slower; here only one pool ever runs. Numba's thread count, set per
calling thread, still says how many threads a call uses.

:func:`set_num_threads` sets how many threads fastbp uses; by default all of Numba's pool,
capped by ``OMP_NUM_THREADS``, and ``threadpoolctl.threadpool_limits`` sets it too (see
:class:`FastbpThreadpoolController`). Every public call enters
:func:`compute_threads`, which applies that count to Numba in the calling thread (Numba's
setting is thread-local) and holds the BLAS library that Numba calls (SciPy's OpenBLAS) at
one thread, restoring both on exit, even on error.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numba
import numpy as np
from threadpoolctl import LibController, register

from . import _config


def _default_threads() -> int:
    """Numba's pool size (``NUMBA_NUM_THREADS``, all cores unless set), capped by
    ``OMP_NUM_THREADS`` when that is a positive integer (or a list, whose first level
    counts): the variable joblib's loky workers, Dask's nanny and batch schedulers set to
    share a machine's cores between processes."""
    pool = numba.config.NUMBA_NUM_THREADS
    first = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return min(pool, int(first)) if first.isdigit() and int(first) >= 1 else pool


_lock = threading.Lock()
_n_threads: int = _default_threads()
#: Whether ``fit`` chooses how many of the ``_n_threads`` run each segment (``_adaptive.py``);
#: on by default, off after an explicit ``set_num_threads(n)``.
_adaptive: bool = True
_blas_depth = 0
_blas_saved: list[int] = []
_blas_libs: list | None = None
_small_gemm: bool | None = None


def get_num_threads() -> int:
    """Number of threads fastbp's kernels split their work for (default: all of Numba's
    pool, usually all cores, capped by ``OMP_NUM_THREADS``)."""
    return _n_threads


def set_num_threads(n: int, *, adaptive: bool = False) -> None:
    """Set the number of threads for every later fastbp call, from any Python thread.

    By default (before any call to this function) ``fit`` is adaptive: it splits its work
    for all the threads but measures, while it trains, whether fewer of them run faster
    (they do when other programs keep cores busy) and runs that many. An explicit
    ``set_num_threads(n)`` runs exactly ``n``; ``adaptive=True`` keeps choosing, up to ``n``.
    The weights do not depend on the choice: they are those of ``set_num_threads(n)``
    (``fastbp._config.RUN_BLOCKS = True`` trades that for 5-15 % more speed on one thread
    beside a busy core: the weights then follow the choices to rounding).

    Parameters
    ----------
    n : int
        Between 1 and ``numba.config.NUMBA_NUM_THREADS`` (the size of Numba's pool, set by
        the ``NUMBA_NUM_THREADS`` environment variable before Numba starts).
    adaptive : bool, default False
        Let ``fit`` run fewer than ``n`` threads where that measures faster.
    """
    global _n_threads, _adaptive
    limit = numba.config.NUMBA_NUM_THREADS
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        raise TypeError(f"n must be an int, got {type(n).__name__}: {n!r}")
    if not 1 <= n <= limit:
        raise ValueError(f"n must be between 1 and NUMBA_NUM_THREADS={limit}, got {n!r}")
    if not isinstance(adaptive, bool | np.bool_):
        raise TypeError(f"adaptive must be a bool, got {type(adaptive).__name__}: {adaptive!r}")
    _n_threads = int(n)
    _adaptive = bool(adaptive)


def adaptive() -> bool:
    """Whether ``fit`` chooses how many threads run (see :func:`set_num_threads`)."""
    return _adaptive


@contextmanager
def thread_setting(n: int | None = None, *, adaptive: bool = False) -> Iterator[None]:
    """Run a block with ``set_num_threads(n, adaptive=adaptive)`` (``n=None``: leave the
    setting) and restore the previous setting, adaptivity included, on exit."""
    global _n_threads, _adaptive
    saved = (_n_threads, _adaptive)
    try:
        if n is not None:
            set_num_threads(n, adaptive=adaptive)
        yield
    finally:
        _n_threads, _adaptive = saved


def _limit(n: int) -> None:
    """Set the thread count, clamped to 1 .. Numba's pool size (for threadpoolctl, which
    asks for any count, and restores the previous one on exit)."""
    global _n_threads
    _n_threads = max(1, min(int(n), numba.config.NUMBA_NUM_THREADS))


class FastbpThreadpoolController(LibController):
    """fastbp's thread count as a threadpoolctl pool (``user_api="fastbp"``), so that
    ``threadpoolctl.threadpool_limits(n)`` (which scikit-learn, joblib and users wrap around
    nested parallel code) and ``threadpool_info()`` reach it, like BLAS and OpenMP.

    threadpoolctl finds pools through the shared libraries a process has loaded. fastbp's
    threads are Numba's, and Numba's pool library loads only when it first runs, so this
    controller attaches to the helper extension every Numba process loads at import
    (``numba/_helperlib``); it sets fastbp's count (:func:`set_num_threads`), not
    anything in that library.
    """

    user_api = "fastbp"
    internal_api = "fastbp"
    filename_prefixes = ("_helperlib",)
    check_symbols = ("PyInit__helperlib",)

    def get_num_threads(self) -> int:
        return _n_threads

    def set_num_threads(self, num_threads: int) -> None:
        _limit(num_threads)

    def get_version(self) -> str:
        return getattr(sys.modules.get("fastbp"), "__version__", "unknown")

    def set_additional_attributes(self) -> None:
        self.pool_size = numba.config.NUMBA_NUM_THREADS


register(FastbpThreadpoolController)


def _numba_blas() -> list:
    """threadpoolctl controllers of the BLAS that Numba's ``np.dot`` calls (SciPy's)."""
    global _blas_libs
    if _blas_libs is None:
        from threadpoolctl import ThreadpoolController

        from .kernels import blas  # noqa: F401  (loads the library the kernels call)

        libs = ThreadpoolController().select(user_api="blas").lib_controllers
        scipy_libs = [c for c in libs if f"scipy{os.sep}" in c.filepath or "scipy.libs" in c.filepath]
        _blas_libs = scipy_libs or libs
    return _blas_libs


def small_gemm_path() -> bool:
    """Whether the BLAS fastbp's kernels call has OpenBLAS's small-matrix GEMM path (its
    AVX-512 kernels, :data:`_config.SMALL_GEMM_CORES`), which the column split then uses
    (:func:`fastbp._plan.column_widths`); :data:`_config.NARROW_BLOCKS` overrides it."""
    if _config.NARROW_BLOCKS is not None:
        return bool(_config.NARROW_BLOCKS)
    global _small_gemm
    if _small_gemm is None:
        _small_gemm = any(
            c.internal_api == "openblas" and str(getattr(c, "architecture", "")).lower() in _config.SMALL_GEMM_CORES
            for c in _numba_blas()
        )
    return _small_gemm


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
#: started Numba's thread pool: that pool (GNU OpenMP) cannot be used in the child, which
#: therefore runs everything on its calling thread (``compute_threads``).
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

    In a process forked after its parent had started Numba's thread pool, every call runs
    on one thread (the calling one): Numba's OpenMP pool would terminate such a child
    (SIGTERM) at its first parallel region, and with a count of 1 ``launch.run_blocks``
    never starts one. So a server that loads and warms a model before forking its workers
    works, each worker on one thread (as such workers are usually sized anyway).
    """
    n = 1 if _forked_after_pool else _n_threads
    old = numba.get_num_threads()
    numba.set_num_threads(n)
    _blas_enter()
    try:
        yield n
    finally:
        _blas_exit()
        numba.set_num_threads(old)
