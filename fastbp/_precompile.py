"""A cold ``fit`` compiles on two cores: a helper process compiles its kernels from the end.

Numba compiles one function at a time, under one lock per process, so a cold start
(an empty ``NUMBA_CACHE_DIR``) used one core however many the machine had. The kernels
of a fit are independent compile units, though (each one is called through an address,
``kernels/launch.py``), and Numba's disk cache is shared by processes and safe for
concurrent writers (``tests/test_cache_concurrency.py``). So when a ``fit`` allowed two
threads or more meets its first kernel that the cache lacks, it starts one helper
process. The helper lists the same kernels, in the order the fit needs them
(:func:`pieces`), and compiles them from the last (the predict path) backwards, while
the fit compiles from the first; each loads from the cache what the other has finished,
so they meet in the middle. The fit never waits for the helper and trains the same
whatever it did: every kernel is compiled from the same code for the same types, by
whichever process gets there first.

The helper builds the kernels' argument records from a copy of the model and a few rows
of the data with zeros for kernel addresses: the types are what a kernel is compiled
for, so it compiles without running anything. A fit with one thread
(``set_num_threads(1)``, ``threadpoolctl.threadpool_limits(1)``, a joblib worker given
one), sparse input, no disk cache or ``FASTBP_COMPILE_HELPER=0`` in the environment
starts none.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numba
import numpy as np

from . import _config
from .kernels import activations, cache, columns, dense, engine, losses
from .kernels.launch import _register_launcher, body_address

#: Environment variable: "0" starts no helper.
ENV = "FASTBP_COMPILE_HELPER"

#: Rows of the data the helper gets (the records' types do not depend on the count).
_ROWS = 8

#: Helpers started in this process, by the network they compile for (each at most once).
_started: dict[tuple, subprocess.Popen] = {}


def pieces(model, X, yi, yf, swk, rows: int, batch_size: int, n_threads: int) -> list[tuple[str, Callable]]:  # noqa: ANN001
    """``(name, compile)`` for every kernel the first ``fit`` of ``model`` (batches of
    ``rows`` rows, ``n_threads`` threads, on validated dense ``X``/``yi``/``yf``/``swk``)
    and a ``predict`` compile, in the order they compile them; each ``compile()``
    compiles its kernel or loads it from the cache. Builds its records with zero
    addresses, so listing compiles nothing."""
    dt = model.dtype
    plan = model._plan
    L = plan.acts.shape[0]
    net = (plan.sizes, np.zeros(L, np.int64), np.zeros(L, np.int64), plan.woff, plan.boff, plan.coff)
    nothing = np.zeros(4, np.int64)
    kernels = (net, nothing, 0, np.zeros(2 if plan.drop.shape[0] else 0, np.int64))
    ws = model._workspace_for(rows, n_threads, False)
    mpart = ws["mpart"] if model.metrics else ws["mpart"][:0]
    opt = model.optimizer
    hyper = np.array(opt._hyper(0), dtype=np.float64)
    order = np.arange(X.shape[0])
    a = model._train_args(X, yi, yf, swk, order, batch_size, n_threads, ws, mpart, np.uint64(0), opt, hyper, 0.0,
                          np.zeros(5), kernels)  # fmt: skip
    out = np.empty((X.shape[0], model.n_outputs), dtype=dt)
    work = np.empty(int(plan.coff[-1]) * _config.PREDICT_CHUNK, dtype=dt)
    f = model._forward_args(X, net, work, work, True, nothing, out)
    codes = list(dict.fromkeys(int(c) for c in plan.acts))
    modes = (losses.GRAD, *((losses.METRICS,) if model.metrics else ()))
    typeof = numba.typeof

    def act(template, code):  # noqa: ANN001, ANN202
        return lambda: activations.kernel_address(template, code, dt)

    def loss(mode):  # noqa: ANN001, ANN202
        return lambda: losses.loss_address(model._loss, dt, mode)

    out_list = [(f"{activations.REGISTRY[c].name} forward", act(activations.bias_act_kernel, c)) for c in codes]
    out_list += [(f"{activations.REGISTRY[c].name} backward", act(activations.act_backward_kernel, c))
                 for c in codes if not activations.REGISTRY[c].constant_df]  # fmt: skip
    out_list += [(f"loss mode {m}", loss(m)) for m in modes]
    out_list.append(("column sums", lambda: dense.column_sums_address(dt)))
    if plan.drop.shape[0]:
        out_list.append(("dropout", lambda: plan.drop_kernels(dt)))
    if ws["cols"]:  # as columns.train_bodies makes them
        for fn in columns.COLUMN_BODIES:
            out_list.append((fn.__name__, lambda fn=fn: body_address(fn, columns.COLS_STEP, a)))
    else:
        out_list.append(("block body", lambda: engine.block_address(a)))
    out_list.append(("step body", lambda: engine.step_address_of(a)))
    def driver(dispatcher, *args):  # noqa: ANN001, ANN202
        def compile_driver() -> None:
            # cached code calls the launcher by symbol: registered before it loads (launch.py)
            _register_launcher()
            dispatcher.compile(tuple(typeof(x) for x in args))

        return compile_driver

    out_list.append(("train_batches", driver(engine.train_batches, a, 0, 0, 0, nothing)))
    out_list.append(("forward body", lambda: engine.forward_address(f)))
    out_list.append(("link", loss(losses.LINK)))
    out_list.append(("forward", driver(engine.forward, f, 0, 0)))
    return out_list


def _wanted(X: object, n_threads: int) -> bool:
    return (n_threads >= 2 and _config.CACHE and cache.AVAILABLE and os.environ.get(ENV, "1") != "0"
            and isinstance(X, np.ndarray) and bool(sys.executable))  # fmt: skip


def _start(model, X, yi, yf, swk, rows: int, batch_size: int, n_threads: int) -> None:  # noqa: ANN001
    """Start the helper for this fit (at most one per network in a process)."""
    key = (model.dtype, tuple(model._plan.sizes), tuple(model._plan.acts), model._loss, model.optimizer.code,
           tuple(model._plan.drop), rows, n_threads, bool(model.metrics), swk.shape[0] > 0)  # fmt: skip
    for done in [k for k, p in _started.items() if p.poll() is not None]:
        _started[done].wait()
    if key in _started:
        return
    m = min(_ROWS, X.shape[0])
    job = (model, X[:m].copy(), X.flags.writeable, yi[:m].copy(), yf[:m].copy(), swk[:m].copy(), rows, batch_size,
           n_threads)  # fmt: skip
    fd, path = tempfile.mkstemp(prefix="fastbp-compile-", suffix=".pkl")
    with os.fdopen(fd, "wb") as fh:
        pickle.dump(job, fh, protocol=pickle.HIGHEST_PROTOCOL)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # where this fastbp is imported from
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])]))
    try:
        _started[key] = subprocess.Popen(
            [sys.executable, "-c", f"from fastbp._precompile import main; main({path!r})"], env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True,
        )  # fmt: skip
    except OSError:  # no process can be started here: the fit compiles everything itself
        os.unlink(path)


@contextmanager
def helping(model, X, yi, yf, swk, rows: int, batch_size: int, n_threads: int) -> Iterator[None]:  # noqa: ANN001
    """Within: the first kernel compiled because the cache lacks it starts the helper
    (see the module docstring), where one is wanted."""
    if not _wanted(X, n_threads):
        yield
        return
    fired = []

    def on_miss() -> None:
        if not fired:
            fired.append(True)
            _start(model, X, yi, yf, swk, rows, batch_size, n_threads)

    token = cache.ON_MISS.set(on_miss)
    try:
        yield
    finally:
        cache.ON_MISS.reset(token)


def main(path: str) -> None:
    """The helper: compile :func:`pieces` of the job in ``path`` from the last."""
    with open(path, "rb") as fh:
        model, X, writeable, yi, yf, swk, rows, batch_size, n_threads = pickle.load(fh)
    os.unlink(path)
    X.flags.writeable = writeable  # an array's type includes it
    for _, compile_piece in reversed(pieces(model, X, yi, yf, swk, rows, batch_size, n_threads)):
        compile_piece()

