"""A cold ``fit`` compiles on two cores: a helper process compiles its kernels from the end.

Numba compiles one function at a time, under one lock per process, so a cold start
(an empty ``NUMBA_CACHE_DIR``) used one core however many the machine had. The kernels
of a fit are independent compile units, though (each one is called through an address,
``kernels/launch.py``), and Numba's disk cache is shared by processes and safe for
concurrent writers (``tests/test_cache_concurrency.py``). So when a ``fit`` allowed two
threads or more meets its first kernel that the cache lacks, it starts one helper
process. The helper lists the same kernels, in the order the fit needs them
(:func:`pieces`), and compiles them from the last (the predict path) backwards, while
the fit compiles from the first. Each process claims a kernel before compiling it (an
empty file made atomically in a folder the two share): the fit waits for a kernel the
helper claimed and loads it from the cache when it is written, and the helper stops at
the first kernel the fit claimed. So they meet in the middle and nothing is compiled
twice. The fit trains the same whatever the helper did: every kernel is compiled from
the same code for the same types, by whichever process claims it.

The helper builds the kernels' argument records from a copy of the model and a few rows
of the data with zeros for kernel addresses: the types are what a kernel is compiled
for, so it compiles without running anything. It is stopped when the fit's process
exits. A fit with one thread (``set_num_threads(1)``,
``threadpoolctl.threadpool_limits(1)``, a joblib worker given one), sparse input, no
disk cache or ``FASTBP_COMPILE_HELPER=0`` in the environment starts none; a helper that
cannot start or fails costs the fit nothing but the wait for a kernel it had claimed
(checked for life every 10 ms, and waited for 60 s at most).
"""

from __future__ import annotations

import atexit
import hashlib
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import numba
import numpy as np

from . import _config
from .kernels import activations, cache, columns, dense, engine, losses
from .kernels.launch import _register_launcher, body_address

#: Environment variable: "0" starts no helper.
ENV = "FASTBP_COMPILE_HELPER"

#: Rows of the data the helper gets (the records' types do not depend on the count).
_ROWS = 8


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
    opt = model.optimizer
    hyper = np.array(opt._hyper(0), dtype=np.float64)
    order = np.arange(X.shape[0])
    a = model._train_args(X, yi, yf, swk, order, batch_size, n_threads, ws, np.uint64(0), opt, hyper, 0.0,
                          np.zeros(5), kernels)  # fmt: skip
    out = np.empty((X.shape[0], model.n_outputs), dtype=dt)
    work = np.empty(int(plan.coff[-1]) * _config.PREDICT_CHUNK, dtype=dt)
    f = model._forward_args(X, net, work, work, True, nothing, out)
    codes = list(dict.fromkeys(int(c) for c in plan.acts))
    modes = model._train_loss_modes()
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


#: Raised in the helper where the fit has claimed the next kernel: what is left is the
#: fit's (an instance, told apart by identity: no exception class of its own, as every
#: fastbp exception class is a public one in ``fastbp.errors``).
_MET = RuntimeError("the fit claimed the remaining kernels")


#: The current fit's starter of a helper (set by :func:`helping`), or None.
_starter: ContextVar[Callable[[], None] | None] = ContextVar("fastbp_helper_starter", default=None)

#: In the fit's process: the helper it started, while it runs, and their claims folder.
_helper: subprocess.Popen | None = None
_claims: str | None = None

#: In the helper: the claims folder it shares with the fit's process.
_helper_claims: str | None = None

#: Networks a helper was started for in this process (each at most once).
_started: set[tuple] = set()

#: Longest wait for the helper to finish a kernel it claimed, then the fit compiles it
#: itself (a kernel compiles in under 2 s here; the helper is checked for life
#: every 10 ms, so one that fails is not waited for).
_WAIT_SECONDS = 60.0


def _claim(folder: str, entry: cache.PromptCache, sig: object) -> bool:
    """Claim the compile of ``entry`` for ``sig``: True if this process got it, False if
    the other one had. A claim is an empty file made with O_EXCL (atomic)."""
    name = hashlib.sha256(f"{entry.function_name}|{sig}".encode()).hexdigest()[:32]
    try:
        os.close(os.open(os.path.join(folder, name), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


#: Exit codes of this process's helpers, in order (0: it finished or met the fit).
exits: list[int] = []


def _finish(stop: bool = False) -> None:
    """Forget a helper that has exited, or with ``stop`` stop it first (the fit's process
    is exiting: a helper lives no longer; a kernel it was writing is never half-written,
    Numba writes a cache entry to a temporary file and renames it); and remove the
    claims folder."""
    global _helper, _claims
    if _helper is not None:
        if stop and _helper.poll() is None:
            _helper.terminate()
        exits.append(_helper.wait())
    if _claims is not None:
        shutil.rmtree(_claims, ignore_errors=True)
    _helper = _claims = None


def _on_miss(entry: cache.PromptCache, sig: object, target_context: object) -> object | None:
    """``cache.on_miss``: start the current fit's helper on its first miss; while a
    helper runs, claim each kernel before compiling it, and for one the helper claimed
    first, wait for its cache entry instead of compiling it twice. In the helper: claim,
    or stop where the fit's claims begin."""
    if _helper_claims is not None:  # in the helper
        try:
            if _claim(_helper_claims, entry, sig):
                return None
        except OSError:  # the folder is gone: the fit is over
            pass
        raise _MET
    if _helper is not None and _helper.poll() is not None:
        _finish()
    if _helper is None:
        start = _starter.get()
        if start is None:
            return None
        start()
        if _helper is None:
            return None
    try:
        if _claim(_claims, entry, sig):
            return None  # ours to compile
    except OSError:
        return None
    deadline = time.monotonic() + _WAIT_SECONDS
    while _helper.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
        found = entry.load_again(sig, target_context)
        if found is not None:
            return found
    return entry.load_again(sig, target_context)  # written just before it exited, or None: compile


def _start(model, X, yi, yf, swk, rows: int, batch_size: int, n_threads: int) -> None:  # noqa: ANN001
    """Start the helper for this fit (at most one per network in a process)."""
    global _helper, _claims
    key = (model.dtype, tuple(model._plan.sizes), tuple(model._plan.acts), model._loss, model.optimizer.code,
           tuple(model._plan.drop), rows, n_threads, bool(model.metrics), swk.shape[0] > 0)  # fmt: skip
    if key in _started:
        return
    _started.add(key)
    m = min(_ROWS, X.shape[0])
    claims = tempfile.mkdtemp(prefix="fastbp-compile-")
    job = (model, X[:m].copy(), X.flags.writeable, yi[:m].copy(), yf[:m].copy(), swk[:m].copy(), rows, batch_size,
           n_threads, claims)  # fmt: skip
    path = os.path.join(claims, "job.pkl")
    with open(path, "wb") as fh:
        pickle.dump(job, fh, protocol=pickle.HIGHEST_PROTOCOL)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # where this fastbp is imported from
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])]))
    try:
        _helper = subprocess.Popen(
            [sys.executable, "-c", f"from fastbp._precompile import main; main({path!r})"], env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True,
        )  # fmt: skip
    except OSError:  # no process can be started here: the fit compiles everything itself
        shutil.rmtree(claims, ignore_errors=True)
        return
    _claims = claims


@contextmanager
def helping(model, X, yi, yf, swk, rows: int, batch_size: int, n_threads: int) -> Iterator[None]:  # noqa: ANN001
    """Within: the first kernel compiled because the cache lacks it starts the helper
    (see the module docstring), where one is wanted."""
    if not _wanted(X, n_threads):
        yield
        return
    token = _starter.set(lambda: _start(model, X, yi, yf, swk, rows, batch_size, n_threads))
    try:
        yield
    finally:
        _starter.reset(token)


def main(path: str) -> None:
    """The helper: compile :func:`pieces` of the job in ``path`` from the last, until it
    meets the kernels the fit claimed."""
    global _helper_claims
    with open(path, "rb") as fh:
        model, X, writeable, yi, yf, swk, rows, batch_size, n_threads, _helper_claims = pickle.load(fh)
    X.flags.writeable = writeable  # an array's type includes it
    try:
        for _, compile_piece in reversed(pieces(model, X, yi, yf, swk, rows, batch_size, n_threads)):
            compile_piece()
    except RuntimeError as exc:
        if exc is not _MET:
            raise


def _forget_in_child() -> None:
    """A forked child does not own its parent's helper (nor its claims)."""
    global _helper, _claims
    _helper = _claims = None


cache.on_miss = _on_miss
atexit.register(_finish, stop=True)
os.register_at_fork(after_in_child=_forget_in_child)
