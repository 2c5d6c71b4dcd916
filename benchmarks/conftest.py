"""Benchmark session setup: a header naming what was measured, and a ratio summary.

The header prints the library versions and every thread pool in play (Numba's, and each
OpenBLAS: NumPy's and the copy bundled with SciPy that fastbp's kernels call), because a
timing means nothing without them. The summary after pytest-benchmark's table prints, for
each group in the order they ran, fastbp's and NumPy's median time per call and fastbp's
throughput over NumPy's: both rows of a group do the same work, so that is the ratio of
the medians, NumPy's over fastbp's (above 1: fastbp is faster). The same ratio of the
fastest rounds follows: on a busy machine it is the steadier of the two.
"""

from __future__ import annotations

import os
import platform

import numba
import numpy as np
import pytest
import scipy

_RESULTS = pytest.StashKey[dict]()


def _blas_pools() -> list[str]:
    import scipy.linalg.cython_blas  # noqa: F401  (loads SciPy's BLAS, the one Numba calls)
    from threadpoolctl import threadpool_info

    return [
        f"{p['internal_api']} {p.get('version')} ({p.get('architecture')}, {p['num_threads']} threads) "
        f"from {os.path.basename(os.path.dirname(p['filepath']))}"
        for p in threadpool_info()
        if p["user_api"] == "blas"
    ]


def pytest_report_header(config: pytest.Config) -> list[str]:
    import fastbp

    env = {k: os.environ[k] for k in sorted(os.environ) if k.startswith(("NUMBA_", "OMP_", "OPENBLAS_", "GOMP_"))}
    return [
        f"fastbp {fastbp.__version__}, numpy {np.__version__}, numba {numba.__version__}, scipy {scipy.__version__}",
        f"cpu: {platform.processor() or platform.machine()}, {os.cpu_count()} logical cores; "
        f"numba threads {numba.config.NUMBA_NUM_THREADS} (layer config: {numba.config.THREADING_LAYER}), "
        f"fastbp threads {fastbp.get_num_threads()}",
        *(f"blas: {line}" for line in _blas_pools()),
        f"thread env: {env or 'none set'}",
    ]


@pytest.fixture(scope="session")
def summary(request: pytest.FixtureRequest) -> dict:
    """group -> impl -> (median, min) seconds per call, filled by ``_support.record``."""
    return request.config.stash.setdefault(_RESULTS, {})


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    results = config.stash.get(_RESULTS, {})
    if not results:
        return
    tr = terminalreporter
    tr.section("fastbp vs NumPy: medians; fastbp/NumPy samples/s from medians (and minima); >1: fastbp faster")
    width = max(len(g) for g in results)
    tr.write_line(f"{'group':<{width}}  {'fastbp':>10}  {'numpy':>10}  {'fastbp/numpy':>12}  {'(min)':>7}")
    for group, by_impl in results.items():
        fb_s, fb_min = by_impl.get("fastbp", (None, None))
        np_s, np_min = by_impl.get("numpy", (None, None))
        ratio = f"{np_s / fb_s:11.2f}x  {np_min / fb_min:6.2f}x" if fb_s and np_s else f"{'-':>12}  {'-':>7}"
        tr.write_line(f"{group:<{width}}  {_time(fb_s)}  {_time(np_s)}  {ratio}")


def _time(seconds: float | None) -> str:
    if not seconds:
        return f"{'-':>10}"
    if seconds < 1e-3:
        return f"{seconds * 1e6:8.1f}us"
    return f"{seconds * 1e3:8.2f}ms"
