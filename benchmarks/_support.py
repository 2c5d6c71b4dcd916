"""Helpers shared by the benchmark modules: what every timed test does before and after timing.

- :func:`settle` pauses before timing, so that NumPy's BLAS threads have stopped spinning;
- :func:`thread_info` gives the thread settings recorded in each row's ``extra_info``;
- :func:`record` turns the median into throughput in ``extra_info`` and files it for the
  fastbp/NumPy summary that ``conftest.py`` prints at the end;
- :func:`load_script` imports one of the ``measure_*.py`` scripts for its smoke test.
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path
from types import ModuleType

import numba
from threadpoolctl import threadpool_info

import fastbp as fb

IMPLS = ("fastbp", "numpy")
OTHER = {"fastbp": "numpy", "numpy": "fastbp"}

#: Pause before timing. NumPy's OpenBLAS workers keep spinning for about 0.1 s after a
#: call and take a core from whatever runs next (measured: a 9.7 ms epoch took 21 ms right
#: after one NumPy matmul), so without it a row's time would depend on the row before it.
SETTLE_S = 0.3


def settle(benchmark) -> None:
    """Sleep :data:`SETTLE_S` before timing; nothing under ``--benchmark-disable``."""
    if not benchmark.disabled:
        time.sleep(SETTLE_S)


def blas_threads() -> dict[str, int]:
    """Thread count of each loaded BLAS, keyed by the package that ships it: ``numpy.libs``
    (NumPy's ``np.dot``) and ``scipy.libs`` (the one fastbp's kernels call)."""
    pools = [p for p in threadpool_info() if p["user_api"] == "blas"]
    return {os.path.basename(os.path.dirname(p["filepath"])): p["num_threads"] for p in pools}


def thread_info(impl: str) -> dict:
    """Thread settings for ``extra_info``: Numba's (fastbp rows) and every BLAS's."""
    info: dict = {"blas_threads": blas_threads()}
    if impl == "fastbp":
        info["fastbp_threads"] = fb.get_num_threads()
        try:
            info["threading_layer"] = numba.threading_layer()
        except ValueError:  # no parallel region has run yet in this process
            info["threading_layer"] = None
    return info


def record(benchmark, summary: dict, impl: str, items: float, unit: str, gflop: float | None = None) -> None:
    """Throughput from the median into ``extra_info``; the median and the minimum into
    ``summary`` (the session's fastbp/NumPy table, see ``conftest.py``). Nothing under
    ``--benchmark-disable``.

    Parameters
    ----------
    items : float
        Work units done by one timed call (rows, elements, parameters), named by ``unit``:
        ``extra_info`` gets ``f"{unit}_per_s"``.
    gflop : float, optional
        Floating-point work of one timed call, in GFLOP: ``extra_info`` gets ``gflop_per_s``.
    """
    if not benchmark.stats:  # None under --benchmark-disable
        return
    median = benchmark.stats.stats.median
    benchmark.extra_info[f"{unit}_per_s"] = items / median
    if gflop is not None:
        benchmark.extra_info["gflop_per_s"] = gflop / median
    summary.setdefault(benchmark.group, {})[impl] = (median, benchmark.stats.stats.min)


def load_script(name: str) -> ModuleType:
    """The script ``benchmarks/<name>.py`` as a module (the scripts are not a package's)."""
    path = Path(__file__).with_name(f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
