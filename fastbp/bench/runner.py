"""``fastbp bench``: time every workload on fastbp, the NumPy baseline and optional peers.

For each workload (:data:`fastbp.bench.workloads.WORKLOADS`) the runner builds the data,
a seeded fastbp model and the NumPy baseline from that model's initial weights (and each
requested peer, see :mod:`fastbp.bench.peers`), then, for each implementation in turn:

1. one untimed warm-up epoch (it compiles fastbp's kernels, or loads them from Numba's
   cache, and sizes every buffer); its mean loss is the **first-epoch loss**;
2. ``repeats`` timed epochs, each one more epoch of training (rows in order, no shuffle,
   so every implementation sees the same batches). samples/s is ``rows / median time``.
   The timed epochs run in rounds, one of each implementation per round, so that a slow
   minute of a shared machine slows every implementation rather than the one running then.

A forward-only workload (``infer_mnist``) times fastbp's ``predict`` over all rows against
the baseline's ``forward`` instead.

Every workload also checks its answer, so a fast wrong result cannot pass unnoticed. Each
implementation trains a **check epoch** from the same initial weights on the same rows in
the same order, and its mean loss must agree with NumPy's to :data:`LOSS_RTOL`. The check
epoch is the warm-up epoch itself when a workload has at most :data:`CHECK_ROWS` rows;
otherwise it is a separate epoch on the first ``CHECK_ROWS - batch_size // 2`` rows (a
partial last batch included), run with a fresh model before the warm-up, because over a
full epoch float32 rounding differences grow along the training trajectory (measured on
60,000 rows over three OpenBLAS kernels: 1.3e-3 relative with SGD at batch 32, 2.1e-3 with
Adam), which would drown a 1e-3 check in noise. The full first epochs must still agree
to :data:`EPOCH_RTOL`. For a forward-only workload, every implementation's softmax output
must agree to :data:`PROBA_ATOL`. A disagreement, a non-finite loss or an exception is an error row in
the table, the report's ``ok`` is False and the command exits with status 1.

Each row also gives fastbp's effective GFLOP/s (``Workload.flop_per_sample() *
samples/s``) and its percentage of an sgemm ceiling measured once per run: the best of a
few NumPy float32 ``1024 x 1024`` matmuls at the BLAS thread count in force.

Examples
--------
>>> from fastbp.bench.runner import format_rate
>>> format_rate(45_123.0), format_rate(1_234_567.0), format_rate(950.0)
('45.1k', '1.23M', '950')
"""

from __future__ import annotations

import gc
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TextIO

import numba
import numpy as np
import scipy
import threadpoolctl
from threadpoolctl import threadpool_info, threadpool_limits

import fastbp as fb

from .._threads import thread_setting
from ..errors import BenchError as BenchError  # re-exported: fastbp.bench.runner.BenchError
from . import peers as peers_mod
from .report import (  # noqa: F401  (write_json, plot_ratios, require_matplotlib: re-exported for the CLI)
    format_header,
    format_rate,
    format_table,
    plot_ratios,
    require_matplotlib,
    table_header,
    table_row,
    write_json,
)
from .workloads import WORKLOADS, Workload, make_data, make_fastbp, make_numpy

#: Rows per workload under ``--quick`` (a smoke run: well under a minute on 2 cores); not a
#: multiple of most batch sizes, so the partial last batch is exercised too.
QUICK_ROWS: int = 4000
#: Timed epochs (or passes) per implementation: by default, and under ``--quick``.
DEFAULT_REPEATS: int = 3
QUICK_REPEATS: int = 1
#: Check-epoch losses from the same weights and order agree to this, relative. They differ
#: only by rounding and summation order, which depend on the BLAS kernel OpenBLAS picks for
#: the CPU: over its SkylakeX, Haswell and Sandybridge kernels, 1-2 threads, fastbp and NumPy
#: (``benchmarks/measure_blas_spread.py --rows 60000 --head 32``, 4,096 rows at batch 128),
#: at most 4.2e-7 with SGD and 2.1e-5 with Adam, which turns rounding noise in near-zero
#: gradients into full steps; up to about 1e-4 for the torch and JAX peers (their own
#: summation orders). A learning rate 1 % off moves them by 5e-4 to 8e-4; a wrong gradient,
#: by far more.
LOSS_RTOL: float = 1e-3
#: Largest check epoch (rows); workloads with more rows run a separate, shorter one.
CHECK_ROWS: int = 4096
#: Full first epochs (up to 100,000 rows) agree to this, relative: a drift check. Measured
#: over the same three kernels on 60,000 rows: up to 1.3e-3 with SGD at batch 32 (1,875
#: steps) and 2.1e-3 with Adam; under 2e-6 for the small networks.
EPOCH_RTOL: float = 1e-2
#: Forward-only workloads: softmax outputs agree to this, absolute.
PROBA_ATOL: float = 1e-4
#: The sgemm ceiling: NumPy float32 matmul of this size, best of this many runs.
CEILING_N: int = 1024
CEILING_REPS: int = 5
#: Pause before each implementation, so that the previous one's thread pools (NumPy's
#: OpenBLAS keeps spinning about 0.1 s after a call; torch's OpenMP, XLA's pool) are idle
#: and do not take cores from the next. Measured: a 9.7 ms fastbp epoch took 21 ms right
#: after one NumPy matmul.
SETTLE_S: float = 0.3
QUICK_SETTLE_S: float = 0.05


def parse_workloads(spec: str | Sequence[str] | None) -> list[str]:
    """Workload ids from ``"a,b"`` (or a list); ``None`` or ``"all"`` gives every workload.

    Raises :class:`BenchError` naming the unknown ids and the valid ones.
    """
    if spec is None or spec == "all":
        return list(WORKLOADS)
    names = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else [str(s).strip() for s in spec]
    names = [s for s in names if s]
    if not names:
        raise BenchError(f"no workload named; choose from: {', '.join(WORKLOADS)}")
    unknown = [s for s in names if s not in WORKLOADS]
    if unknown:
        raise BenchError(f"unknown workload {', '.join(map(repr, unknown))}; choose from: {', '.join(WORKLOADS)}")
    return list(dict.fromkeys(names))  # keep the order given, drop repeats


def parse_peers(spec: str | Sequence[str] | None) -> list[str]:
    """Peer names from ``"torch,jax"`` (or a list); raises :class:`BenchError` for others."""
    if not spec:
        return []
    names = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else [str(s).strip() for s in spec]
    names = [s for s in names if s]
    unknown = [s for s in names if s not in peers_mod.PEERS]
    if unknown:
        raise BenchError(f"unknown peer {', '.join(map(repr, unknown))}; choose from: {', '.join(peers_mod.PEERS)}")
    return list(dict.fromkeys(names))


# ---------------------------------------------------------------------------- environment
def _blas_pools() -> list[dict]:
    """Every BLAS library loaded (NumPy's OpenBLAS, SciPy's that fastbp calls) and its threads."""
    import scipy.linalg.cython_blas  # noqa: F401  (loads SciPy's BLAS, the one Numba calls)

    return [
        {
            "library": os.path.basename(os.path.dirname(p["filepath"])),
            "api": p["internal_api"],
            "version": p.get("version"),
            "architecture": p.get("architecture"),
            "num_threads": p["num_threads"],
        }
        for p in threadpool_info()
        if p["user_api"] == "blas"
    ]


def _numpy_blas_threads() -> int | None:
    pools = [p for p in _blas_pools() if p["library"].startswith("numpy")]
    return pools[0]["num_threads"] if pools else None


def measure_sgemm_ceiling(n: int = CEILING_N, reps: int = CEILING_REPS) -> dict:
    """Best-of-``reps`` GFLOP/s of a NumPy float32 ``n x n`` matmul, at the BLAS threads in force."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)
    np.matmul(a, b, out=c)  # warm-up: BLAS starts its threads and packs buffers
    best = math.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        np.matmul(a, b, out=c)
        best = min(best, time.perf_counter() - t0)
    return {"n": n, "reps": reps, "best_s": best, "gflop_per_s": 2.0 * n**3 / best / 1e9,
            "blas_threads": _numpy_blas_threads()}  # fmt: skip


def _versions(peers: dict[str, str | None]) -> dict[str, str]:
    v = {
        "fastbp": fb.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "scipy": scipy.__version__,
        "threadpoolctl": threadpoolctl.__version__,
    }
    for name, status in peers.items():
        if status is None:
            v[name] = peers_mod.peer_version(name)
    return v


# ---------------------------------------------------------------------------- timing
def _softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _timed(run: Callable[[], object]) -> tuple[float, object]:
    """(seconds, result) of one call of ``run``."""
    t0 = time.perf_counter()
    result = run()
    return time.perf_counter() - t0, result


def _record(times: list[float], warmup: float, first: object, last: object, n_samples: int,
            flop_per_sample: float) -> dict:  # fmt: skip
    """The JSON record of one implementation's timed calls."""
    median = statistics.median(times)
    sps = n_samples / median
    rec = {
        "status": "ok",
        "warmup_s": warmup,
        "times_s": times,
        "spread": max(times) / min(times),
        "median_s": median,
        "samples_per_s": sps,
        "gflop_per_s": flop_per_sample * sps / 1e9,
    }
    if isinstance(first, float):
        rec["first_epoch_loss"] = first
        rec["last_epoch_loss"] = last
    return rec


def _fastbp_runner(model: fb.Sequential, w: Workload, X: np.ndarray, y: np.ndarray) -> Callable[[], object]:
    if not w.train:
        return lambda: model.predict(X)
    return lambda: model.fit(X, y, epochs=1, batch_size=w.batch_size, shuffle=False, verbose=0).history["loss"][0]


def _numpy_runner(mlp, w: Workload, X: np.ndarray, y: np.ndarray) -> Callable[[], object]:
    if not w.train:
        return lambda: mlp.forward(X)
    order = np.arange(len(X))  # no shuffle: the same batches as fastbp's shuffle=False
    return lambda: mlp.train_epoch(X, y, w.batch_size, order)


def _check_loss(what: str, name: str, a: float, b: float, rtol: float) -> tuple[float | None, str | None]:
    """(relative difference, problem or None) of loss ``a`` (``name``) against NumPy's ``b``."""
    a, b = float(a), float(b)
    if not (math.isfinite(a) and math.isfinite(b)):
        return None, f"non-finite {what} loss: {name} {a!r}, numpy {b!r}"
    rel = abs(a - b) / max(abs(b), 1e-30)
    if rel > rtol:
        return rel, f"{what} loss {name} {a:.7g} vs numpy {b:.7g} (relative difference {rel:.2e} > {rtol:g})"
    return rel, None


def _check_outputs(name: str, p: np.ndarray, q: np.ndarray) -> tuple[float | None, str | None]:
    """(max absolute difference, problem or None) of softmax outputs ``p`` against NumPy's ``q``."""
    p = np.asarray(p, dtype=np.float64)
    if p.shape != q.shape:
        return None, f"output shape {name} {p.shape} vs numpy {q.shape}"
    if not np.isfinite(p).all():
        return None, f"non-finite outputs from {name}"
    diff = float(np.abs(p - q).max())
    if diff > PROBA_ATOL:
        return diff, f"softmax outputs {name} vs numpy differ by up to {diff:.2e} > {PROBA_ATOL:g}"
    return diff, None


def _check_answers(rec: dict, w: Workload, first: dict, check: dict, separate: bool, n_check: int,
                   variants: dict[str, int]) -> None:  # fmt: skip
    """Every implementation's answers against the NumPy baseline's (the check-epoch and the
    first-epoch losses in training, the outputs in inference), and a finite last loss;
    marks mismatches and errors in ``rec``."""
    impls = rec["impls"]
    n = rec["rows"]
    others = [name for name in first if name != "numpy"]
    if w.train:
        rec["check"] = {"rows": n_check, "separate_epoch": separate, "rtol": LOSS_RTOL, "losses": check,
                        "rel_diff": {}, "epoch_rtol": EPOCH_RTOL, "epoch_rel_diff": {}}  # fmt: skip
    else:
        rec["check"] = {"rows": n, "atol": PROBA_ATOL, "max_abs_diff": {}}
    if "numpy" in first:
        problems: dict[str, list[str]] = {}
        if w.train:
            for name in others:
                if name in check and "numpy" in check:
                    rel, problem = _check_loss("check-epoch", name, check[name], check["numpy"], LOSS_RTOL)
                    rec["check"]["rel_diff"][name] = rel
                    problems.setdefault(name, []).append(problem)
                if separate:
                    rel, problem = _check_loss("full first-epoch", name, first[name], first["numpy"], EPOCH_RTOL)
                    rec["check"]["epoch_rel_diff"][name] = rel
                    problems.setdefault(name, []).append(problem)
        else:
            ref = _softmax(first["numpy"])
            for name in others:  # fastbp's predict applies the softmax; the others return logits
                p = np.asarray(first[name]) if name == "fastbp" or name in variants else _softmax(first[name])
                diff, problem = _check_outputs(name, p, ref)
                rec["check"]["max_abs_diff"][name] = diff
                problems.setdefault(name, []).append(problem)
        for name, found in problems.items():
            found = [p for p in found if p]
            if found:
                impls[name]["status"] = "mismatch"
                impls[name]["message"] = "; ".join(found)
                rec["errors"].extend(found)
    for name in impls:
        last = impls[name].get("last_epoch_loss")
        if last is not None and not math.isfinite(last):
            impls[name]["status"] = "error"
            rec["errors"].append(f"{name}: non-finite loss {last!r} after the timed epochs")


def _ratios(rec: dict, others: list[str]) -> None:
    """fastbp's samples/s over NumPy's (``rec["ratio"]``), and each other implementation's."""
    impls = rec["impls"]
    f, b = impls.get("fastbp", {}), impls.get("numpy", {})
    ok_pair = f.get("samples_per_s") and b.get("samples_per_s")
    rec["ratio"] = f["samples_per_s"] / b["samples_per_s"] if ok_pair else None
    for name in others:
        p = impls.get(name, {})
        if p.get("samples_per_s") and b.get("samples_per_s"):
            p["ratio_vs_numpy"] = p["samples_per_s"] / b["samples_per_s"]


def run_workload(w: Workload, *, rows: int, repeats: int, threads: int | None, peers: dict[str, str | None],
                 settle_s: float = SETTLE_S, seed: int = 0, variants: dict[str, int] | None = None,
                 trained: int = 0) -> dict:  # fmt: skip
    """Time one workload on fastbp, NumPy and each peer; returns its JSON record.

    Long by design: the check epoch, warm-up and timed rounds of every implementation share
    the workload's data and results through the closures below (the checks and ratios are
    :func:`_check_answers` and :func:`_ratios`).

    ``peers`` maps each requested peer to ``None`` (importable) or why it is not.
    ``variants`` maps more names to a fixed fastbp thread count each (``{"fastbp@1": 1}``),
    timed after fastbp and checked like a peer. ``trained``: epochs each implementation trains,
    untimed, after its warm-up and before its timed epochs (training workloads), so that they
    time a fit well into its convergence.
    """
    variants = variants or {}
    X, y = make_data(w, rows, seed=seed)
    n = X.shape[0]
    fps = w.flop_per_sample()
    rec: dict = {
        "id": w.id,
        "sizes": list(w.sizes),
        "activation": w.activation,
        "loss": w.loss,
        "batch_size": w.batch_size,
        "optimizer": w.optimizer,
        "train": w.train,
        "rows": n,
        "trained_epochs": trained if w.train else 0,
        "flop_per_sample": fps,
        "timed": "epoch (fit, shuffle off)" if w.train else "predict over all rows",
        "impls": {},
        "errors": [],
    }
    impls = rec["impls"]
    initial = make_fastbp(w, seed=seed)
    weights = initial.get_weights()
    hyper = initial.optimizer.get_config()
    fb_threads = fb.get_num_threads()
    # the check epoch: the warm-up itself when short enough, else a separate short one
    separate = w.train and n > CHECK_ROWS
    n_check = CHECK_ROWS - w.batch_size // 2 if separate else n
    first: dict[str, object] = {}  # warm-up results: full first-epoch loss, or the outputs
    check: dict[str, float] = {}  # check-epoch losses

    def fastbp_run(Xs: np.ndarray, ys: np.ndarray) -> Callable[[], object]:
        model = make_fastbp(w, seed=seed)  # a fresh model: the same seed gives the same weights
        return _fastbp_runner(model, w, Xs, ys)

    def numpy_scope() -> AbstractContextManager:
        # threadpool_limits applies its limit when created: create it only for the baseline
        return threadpool_limits(limits=threads, user_api="blas") if threads else nullcontext()

    # name -> (timed call, its thread scope, warm-up seconds), for the implementations ready
    ready: dict[str, tuple[Callable[[], object], Callable[[], AbstractContextManager], float]] = {}

    def fail(name: str, exc: Exception) -> None:  # one failing implementation must not hide the others
        impls[name] = {"status": "error", "message": f"{type(exc).__name__}: {exc}"}
        rec["errors"].append(f"{name} failed: {type(exc).__name__}: {exc}")
        ready.pop(name, None)

    def attempt(name: str, make_run: Callable[[np.ndarray, np.ndarray], Callable[[], object]],
                scope: Callable[[], AbstractContextManager]) -> None:  # fmt: skip
        """The check epoch and the warm-up epoch (compiles, sizes buffers, is the first epoch)."""
        time.sleep(settle_s)
        try:
            with scope():
                if separate:
                    check[name] = make_run(X[:n_check], y[:n_check])()
                run = make_run(X, y)
                warmup, first[name] = _timed(run)
                for _ in range(trained if w.train else 0):
                    run()
            if not separate and w.train:
                check[name] = first[name]
            ready[name] = (run, scope, warmup)
        except Exception as exc:
            fail(name, exc)

    attempt("fastbp", fastbp_run, nullcontext)
    for name, fixed in variants.items():
        attempt(name, fastbp_run, lambda fixed=fixed: thread_setting(fixed))
    attempt("numpy", lambda Xs, ys: _numpy_runner(make_numpy(w, weights), w, Xs, ys), numpy_scope)
    for name, status in peers.items():
        if status is not None:
            impls[name] = {"status": "not installed" if status == "not installed" else "unavailable",
                           "message": status}  # fmt: skip
            continue
        attempt(name, lambda Xs, ys, name=name: peers_mod.make_runner(name, w, weights, hyper, Xs, ys),
                lambda name=name: peers_mod.peer_threads(name, threads or fb_threads))  # fmt: skip

    # The timed epochs, in rounds: one epoch of each implementation per round, so that a slow
    # minute of a shared machine falls on all of them rather than on whichever ran then.
    times: dict[str, list[float]] = {name: [] for name in ready}
    last: dict[str, object] = {}
    for _ in range(repeats):
        gc.collect()  # no collection pause inside the timed calls from the set-up garbage
        for name, (run, scope, _) in list(ready.items()):
            time.sleep(settle_s)
            try:
                with scope():
                    seconds, last[name] = _timed(run)
                times[name].append(seconds)
            except Exception as exc:
                fail(name, exc)
    for name, (_, _, warmup) in ready.items():
        impls[name] = _record(times[name], warmup, first[name], last[name], n, fps)

    _check_answers(rec, w, first, check, separate, n_check, variants)
    _ratios(rec, [*peers, *variants])
    rec["ok"] = not rec["errors"]
    return rec


# ---------------------------------------------------------------------------- the run
#: ``--load``: what keeps a core busy, and the fixed-thread fastbp timed beside the default.
BUSY_DESCRIPTION: str = "another Python process spinning in a bare loop"
#: The spinning process: a bare Python loop, looking up every ~20 ms whether its parent (the
#: pid it is given) is still its parent, so that it ends with a benchmark that is killed
#: before it can stop it.
BUSY_CODE: str = (
    "import os, sys\np = int(sys.argv[1])\nwhile os.getppid() == p:\n    for _ in range(1_000_000):\n        pass\n"
)
LOAD_VARIANTS: dict[str, int] = {"fastbp@1": 1}


@contextmanager
def busy_core() -> Iterator[subprocess.Popen]:
    """Another process spinning on a core for the duration of the block, as a browser tab,
    a second training job or a neighbour on a shared VM does to a laptop's cores."""
    proc = subprocess.Popen([sys.executable, "-c", BUSY_CODE, str(os.getpid())], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        time.sleep(0.3)  # started and spinning before the first timing
        yield proc
    finally:
        proc.kill()
        proc.wait()


@contextmanager
def _fastbp_threads(n: int | None) -> Iterator[int]:
    with thread_setting(n):
        yield fb.get_num_threads()


def _xla_single_thread(threads: int | None, peers: Sequence[str]) -> str | None:
    """For ``--threads 1`` with jax, make XLA's CPU GEMMs single-threaded (only possible
    before JAX starts). Returns the description of JAX's threads, or None to keep the default."""
    if "jax" not in peers or threads != 1:
        return None
    if "jax" in sys.modules:
        return "XLA default (JAX already started: --threads not applied)"
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_multi_thread_eigen" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false").strip()
    return "1 (XLA_FLAGS=--xla_cpu_multi_thread_eigen=false)"


def run_bench(workloads: str | Sequence[str] | None = None, *, rows: int | None = None, repeats: int | None = None,
              quick: bool = False, threads: int | None = None, peers: str | Sequence[str] | None = None,
              seed: int = 0, load: bool = False, trained: int = 0, out: TextIO | None = None) -> dict:  # fmt: skip
    """Run the benchmark and return the report (what ``--json`` writes). Long by design:
    one linear script of the run (settings, ceiling, each workload, the ``--load`` pass,
    the summary) whose steps share its printing and thread settings.

    Parameters
    ----------
    workloads : str or list of str, optional
        Workload ids (``"a,b"`` or a list); default all of :data:`WORKLOADS`.
    rows : int, optional
        Rows per workload, overriding each workload's own (and ``quick``'s).
    repeats : int, optional
        Timed epochs per implementation; default 3, or 1 with ``quick``.
    quick : bool, default=False
        Smoke run: :data:`QUICK_ROWS` rows and one timed repeat per workload.
    threads : int, optional
        ``fastbp.set_num_threads(threads)`` for the run (restored after), NumPy's BLAS
        limited to as many threads for the baseline and the ceiling, and torch set to them.
        Default: fastbp's current count, NumPy's BLAS as it is.
    peers : str or list of str, optional
        ``"torch,jax"``: also time these where importable; "not installed" otherwise.
    seed : int, default=0
        Seeds the data and the initial weights.
    load : bool, default=False
        Then run every workload again with one core kept busy by another process (see
        :func:`busy_core`), and fastbp at one thread beside it (``fastbp@1``): the report's
        ``loaded`` holds that second pass, with ``workloads`` as for the first.
    trained : int, default=0
        Epochs each implementation trains, untimed, between its warm-up and its timed epochs
        (training workloads only): times a fit late in its convergence, where subnormal
        gradients slow any code that does not flush them to zero.
    out : text stream, optional
        Where the header and each row are printed as they finish (``sys.stdout`` for the
        CLI); by default nothing is printed (:func:`format_table` formats a finished report).

    Returns
    -------
    dict
        ``ok`` (every check passed), ``versions``, ``machine``, ``threads``, ``ceiling``,
        ``config``, ``peers`` and ``workloads``: id -> record with ``rows``, ``ratio``
        (fastbp/NumPy samples/s), ``pct_of_ceiling`` and ``impls``: name -> ``status``,
        ``samples_per_s``, ``gflop_per_s``, ``times_s``, ``median_s``, ``warmup_s``, losses.
    """
    ids = parse_workloads(workloads)
    peer_names = parse_peers(peers)
    for name, value in (("rows", rows), ("repeats", repeats), ("threads", threads)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise BenchError(f"{name} must be a positive int, got {value!r}")
    if isinstance(trained, bool) or not isinstance(trained, int) or trained < 0:
        raise BenchError(f"trained must be an int >= 0, got {trained!r}")
    if threads is not None and threads > numba.config.NUMBA_NUM_THREADS:
        raise BenchError(f"threads must be between 1 and NUMBA_NUM_THREADS={numba.config.NUMBA_NUM_THREADS}, "
                         f"got {threads}")  # fmt: skip
    repeats = repeats or (QUICK_REPEATS if quick else DEFAULT_REPEATS)
    settle = QUICK_SETTLE_S if quick else SETTLE_S

    def say(text: str) -> None:
        if out is not None:
            print(text, file=out, flush=True)

    jax_threads = _xla_single_thread(threads, peer_names)
    peer_status = {name: peers_mod.peer_status(name) for name in peer_names}
    with _fastbp_threads(threads) as fb_threads:
        blas_scope = threadpool_limits(limits=threads, user_api="blas") if threads else nullcontext()
        with blas_scope:
            ceiling = measure_sgemm_ceiling()
            numpy_blas = _numpy_blas_threads()
        peer_threads = {}
        for name, status in peer_status.items():
            if status is None:
                peer_threads[name] = (f"{threads or fb_threads} threads" if name == "torch"
                                      else jax_threads or "XLA default threads")  # fmt: skip
        report: dict = {
            "ok": True,
            "versions": _versions(peer_status),
            "machine": {
                "platform": platform.platform(),
                "machine": platform.machine(),
                "processor": platform.processor(),
                "cpu_count": os.cpu_count(),
            },
            "threads": {
                "requested": threads,
                "fastbp": fb_threads,
                "numba_pool": numba.config.NUMBA_NUM_THREADS,
                "numba_threading_layer": None,
                "numpy_baseline_blas": numpy_blas,
                "blas": _blas_pools(),
                "peers": peer_threads,
                "env": {
                    k: os.environ[k]
                    for k in sorted(os.environ)
                    if k.startswith(("NUMBA_", "OMP_", "OPENBLAS_", "GOMP_", "MKL_", "XLA_"))
                },
            },
            "ceiling": ceiling,
            "config": {
                "workloads": ids,
                "rows": rows,
                "repeats": repeats,
                "quick": quick,
                "trained": trained,
                "seed": seed,
                "peers": peer_names,
                "loss_rtol": LOSS_RTOL,
                "check_rows": CHECK_ROWS,
                "epoch_rtol": EPOCH_RTOL,
                "proba_atol": PROBA_ATOL,
            },
            "peers": peer_status,
            "workloads": {},
        }
        say(format_header(report))

        def one_pass(into: dict, variants: dict[str, int]) -> None:
            say("")
            say(table_header([*peer_names, *variants]))
            for wid in ids:
                w = WORKLOADS[wid]
                n_rows = rows if rows is not None else (min(QUICK_ROWS, w.rows) if quick else w.rows)
                rec = run_workload(w, rows=n_rows, repeats=repeats, threads=threads, peers=peer_status,
                                   settle_s=settle, seed=seed, variants=variants, trained=trained)  # fmt: skip
                gflops = rec["impls"].get("fastbp", {}).get("gflop_per_s")
                rec["ceiling_gflop_per_s"] = ceiling["gflop_per_s"]
                rec["pct_of_ceiling"] = 100 * gflops / ceiling["gflop_per_s"] if gflops else None
                into[wid] = rec
                report["ok"] = report["ok"] and rec["ok"]
                say(table_row(rec, [*peer_names, *variants]))

        one_pass(report["workloads"], {})
        if load:
            report["loaded"] = {"busy": BUSY_DESCRIPTION, "variants": LOAD_VARIANTS, "workloads": {}}
            say(f"\none core busy ({BUSY_DESCRIPTION}); fastbp@1: fastbp.set_num_threads(1)")
            with busy_core():
                one_pass(report["loaded"]["workloads"], LOAD_VARIANTS)
        try:
            report["threads"]["numba_threading_layer"] = numba.threading_layer()
        except ValueError:  # no parallel kernel ran (every workload failed)
            pass
    n_bad = sum(not r["ok"] for r in report["workloads"].values())
    n_bad += sum(not r["ok"] for r in report.get("loaded", {}).get("workloads", {}).values())
    if n_bad:
        say(f"\n{n_bad} workload(s) failed their check: see the ! lines above")
    return report
