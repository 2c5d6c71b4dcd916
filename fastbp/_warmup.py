"""Compile ahead of time: :func:`warmup` runs every compiled path a network can take.

Numba compiles a kernel at its first call and caches it on disk (see README, "Compiled-
kernel cache"); a fresh environment pays that wait at its first ``fit``. ``warmup`` pays it
when it suits: in a Docker image's build step, a CI job's setup, or a worker's start-up.
It trains a scratch copy of the network for one epoch on a few rows of random data, with
each of the splits it can use (``kernels/engine.py`` rows, ``kernels/columns.py`` columns),
with validation data, then predicts, evaluates and computes one gradient. The model passed
in is not touched.

The drivers and bodies are compiled once for every network; the activation, loss and
optimizer kernels per kind and dtype (``kernels/launch.py``). So ``warmup(model)``
compiles what that network uses, and ``warmup()`` without a model compiles every
registered kind for the dtype: one warm-up per dtype then serves every network.
"""

from __future__ import annotations

import copy
import time

import numba
import numpy as np

from . import _threads
from ._plan import column_split as _column_split
from .kernels import activations, dropout, losses, optim
from .layers import Dense
from .model import Sequential
from .optimizers import SGD

#: Rows of random data the scratch copy trains on.
_ROWS = 64


def _scratch(model: Sequential | None, dtype: object) -> Sequential:
    if model is None:  # a network that takes both splits
        return Sequential(
            [Dense(256, activation="relu"), Dense(256, activation="relu"), Dense(3)],
            loss="cross_entropy", optimizer=SGD(0.01, momentum=0.9), seed=0, dtype=dtype,
        )  # fmt: skip
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a fastbp.Sequential or None, got {type(model).__name__}")
    scratch = copy.deepcopy(model)
    scratch.history = None
    scratch._workspace = None
    return scratch


def _registry(dtype: object) -> None:
    """Compile (or load) every registered activation, loss and optimizer kernel for
    ``dtype``, and the dropout kernels, whichever network will use them."""
    dt = np.dtype(dtype)
    for code in range(len(activations.REGISTRY)):
        activations.addresses(np.array([code]), dt)
    for code in range(len(losses.REGISTRY)):
        losses.loss_kernels(code, dt, *range(4))
    dropout.dropout_addresses(dt)
    P = optim.CHUNK + 1  # the arrays' types are what matters: as ``fit`` passes them
    theta, gpart, coef, hyper = np.zeros(P, dt), np.zeros((2, P), dt), np.zeros(optim.N_COEF, dt), np.zeros(6)
    record = optim.step_record(theta, gpart, theta, theta, coef, hyper, np.zeros(2))
    for code in optim.OPTIMIZERS.values():
        optim.step_address(code, dt, record)


def _targets(model: Sequential, rng: np.random.Generator) -> np.ndarray:
    k = model.n_outputs
    if model.loss == "cross_entropy":
        return np.arange(_ROWS) % k
    if model.loss == "binary_cross_entropy":
        return (rng.random((_ROWS, k)) > 0.5).astype(model.dtype)
    if model.loss == "poisson":
        return rng.random((_ROWS, k)).astype(model.dtype)
    return rng.standard_normal((_ROWS, k)).astype(model.dtype)


def warmup(model: Sequential | None = None, *, dtype: object = "float32") -> float:
    """Compile, or load from Numba's cache, every kernel ``model`` can use, ahead of time.

    Parameters
    ----------
    model : Sequential, optional
        The network to warm up, built or not; it is copied and left as it was. Default: a
        network of two 256-unit relu layers, which takes every path.
    dtype : str or numpy dtype, default "float32"
        The dtype when ``model`` is None (a model brings its own).

    Returns
    -------
    float
        Seconds taken: the compile time in a fresh environment, under a second once
        Numba's cache holds the kernels.

    Notes
    -----
    The column split (``kernels/columns.py``) runs only with two threads or more; with a
    one-thread Numba pool (``NUMBA_NUM_THREADS=1``) it is compiled at the first ``fit``
    that uses it instead. ``warmup`` sets fastbp's thread count for its own runs and
    restores it: call it before training starts, not beside a ``fit`` in another Python
    thread. Compiled kernels suit machines of the same CPU kind (Numba
    compiles for the host CPU); a cache built on another kind is recompiled, not misused.

    Examples
    --------
    >>> import fastbp as fb
    >>> seconds = fb.warmup()  # doctest: +SKIP
    """
    start = time.perf_counter()
    scratch = _scratch(model, dtype)
    if model is None:
        _registry(scratch.dtype)
    rng = np.random.default_rng(0)
    n_features = scratch.n_features or 8
    X = rng.standard_normal((_ROWS, n_features)).astype(scratch.dtype)
    if not scratch.built:
        scratch.build(n_features)
    y = _targets(scratch, rng)
    pool = numba.config.NUMBA_NUM_THREADS
    # (threads, batch) for the row split, then the column split where this network takes it
    runs = [(1, 16)]
    if pool >= 2 and _column_split(scratch._plan.sizes, 8, 2):
        runs.append((2, 8))
    for n_threads, batch in runs:
        with _threads.thread_setting(n_threads):
            scratch.fit(X, y, epochs=1, batch_size=batch, validation_data=(X, y), verbose=0)
    with _threads.thread_setting(min(pool, 2)):
        scratch.predict(X)
        scratch.evaluate(X, y)
        scratch.loss_and_gradients(X, y)
    return time.perf_counter() - start
