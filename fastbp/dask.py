"""Dask integration: score and train fastbp models on dask arrays and DataFrames.

Three functions, each taking a :class:`fastbp.Sequential` and dask collections:

- :func:`predict` scores block by block on the workers (``map_blocks`` /
  ``map_partitions``) and returns a lazy dask array of shape (n_samples, k).
- :func:`fit_incremental` streams the partitions through the model on the driver, one at a
  time, for data larger than memory.
- :func:`fit_data_parallel` trains on a ``distributed.Client``: each worker trains a copy of
  the model on its own partitions, and the driver averages the copies after every round
  (local SGD, also called model averaging).

Needs the ``dask`` extra (``dask[array,dataframe]`` and ``distributed``):
``pip install 'fastbp[dask]'``.

Threads. fastbp's thread count is a process-wide setting (:func:`fastbp.set_num_threads`).
Tasks run with ``worker_threads`` fastbp threads (default 1), set when a task starts and
restored when the last concurrently running fastbp task of that process ends. One thread
per task suits the usual layout of one single-threaded worker per core (``LocalCluster``
with ``threads_per_worker=1``) and dask's local threaded scheduler, which already runs one
task per core. With a few workers of many threads each, and about one partition per worker,
pass the worker's thread count; ``None`` keeps the process's own setting.

Worker processes. Numba's ``omp`` threading layer is not fork-safe: a worker forked after
the parent ran fastbp runs on one thread (``fastbp._threads``), so spawn them instead.
``distributed`` spawns them by default (its ``distributed.worker.multiprocessing-method``
setting is ``"spawn"``); keep it that way.
Each new worker process loads the compiled kernels from Numba's on-disk cache (compiling
them on a cold cache, about 45 s): run one small ``fit`` in the driver first to fill it.
"""

from __future__ import annotations

import copy
import math
import sys
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numba
import numpy as np

from ._threads import adaptive, get_num_threads, set_num_threads
from ._validation import check_int, is_scipy_sparse
from .kernels.sparse import take
from .model import History, Sequential
from .state import TrainingState

_INSTALL = "pip install 'fastbp[dask]'"

try:
    import dask
    import dask.array as da
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(f"fastbp.dask needs dask[array,dataframe] and distributed: {_INSTALL}") from exc

__all__ = ["fit_data_parallel", "fit_incremental", "predict"]


# ---------------------------------------------------------------------- threads in tasks
_threads_lock = threading.Lock()
_threads_depth = 0
_threads_saved: tuple[int, bool] = (1, False)


@contextmanager
def _task_threads(n: int | None) -> Iterator[None]:
    """Run fastbp at ``n`` threads inside a task (``None``: leave the process setting).

    The setting is process-wide, and a worker may run several tasks at once: the first task
    in saves the process's value and the last one out restores it.
    """
    global _threads_depth, _threads_saved
    if n is None:
        yield
        return
    with _threads_lock:
        if _threads_depth == 0:
            _threads_saved = (get_num_threads(), adaptive())
        _threads_depth += 1
        # a worker may have fewer cores than the driver that asked
        set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        yield
    finally:
        with _threads_lock:
            _threads_depth -= 1
            if _threads_depth == 0:
                set_num_threads(_threads_saved[0], adaptive=_threads_saved[1])


# ---------------------------------------------------------------------- input checks
def _frame_types() -> tuple[type, ...]:
    """dask DataFrame and Series classes, without importing dask.dataframe (and pandas) when
    nothing has: a collection of those types implies the module is already loaded."""
    dd = sys.modules.get("dask.dataframe")
    return () if dd is None else (dd.DataFrame, dd.Series)


def _is_frame(obj: object) -> bool:
    types = _frame_types()
    return bool(types) and isinstance(obj, types[0])


def _is_series(obj: object) -> bool:
    types = _frame_types()
    return bool(types) and isinstance(obj, types[1])


def _check_model(model: object) -> Sequential:
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a fastbp.Sequential, got {type(model).__name__}")
    model.check_layers()
    return model


def _check_worker_threads(worker_threads: object) -> int | None:
    return None if worker_threads is None else check_int(worker_threads, "worker_threads")


def _features(X: object, columns: Sequence[str] | None, name: str = "X") -> tuple[object, int]:
    """(X with one chunk across its columns, or its selected columns; number of features)."""
    if isinstance(X, da.Array):
        if columns is not None:
            raise ValueError(f"columns= selects DataFrame columns; {name} is a dask Array")
        if X.ndim != 2:
            raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {X.shape}")
        if X.dtype.kind not in "biuf":
            raise TypeError(f"{name} must hold real numbers, got dtype {X.dtype}")
        if math.isnan(X.shape[1]):
            raise ValueError(f"{name} has an unknown number of columns; call {name}.compute_chunk_sizes() first")
        if X.numblocks[1] > 1:
            X = X.rechunk({1: -1})  # each task needs whole rows
        return X, int(X.shape[1])
    if _is_frame(X):
        if columns is None:
            columns = list(X.columns)
        else:
            if isinstance(columns, str) or not isinstance(columns, Sequence):
                raise TypeError(f"columns must be a list of column names, got {type(columns).__name__}")
            columns = list(columns)
            missing = [c for c in columns if c not in X.columns]
            if missing:
                raise ValueError(f"columns {missing} are not in {name}; it has {list(X.columns)}")
        if not columns:
            raise ValueError(f"{name} has 0 columns; at least 1 feature is required")
        bad = {c: str(t) for c, t in X.dtypes[columns].items() if getattr(t, "kind", "O") not in "biuf"}
        if bad:
            raise TypeError(f"{name} columns must hold real numbers, got non-numeric columns {bad}")
        return X[columns], len(columns)
    raise TypeError(
        f"{name} must be a dask Array or a dask DataFrame, got {type(X).__name__}"
        + ("; use model.predict / model.fit for in-memory data" if isinstance(X, np.ndarray) else "")
    )


def _n_row_parts(X: object) -> int:
    return X.numblocks[0] if isinstance(X, da.Array) else X.npartitions


def _targets(y: object, X: object) -> object:
    """y with the same row partitions as X (rechunked to them where both are arrays)."""
    if isinstance(y, da.Array):
        if y.ndim not in (1, 2):
            raise ValueError(f"y must be 1-D or 2-D, got shape {y.shape}")
        if y.ndim == 2 and y.numblocks[1] > 1:
            y = y.rechunk({1: -1})
        if isinstance(X, da.Array) and y.chunks[0] != X.chunks[0]:
            n_x, n_y = X.shape[0], y.shape[0]
            if not (math.isnan(n_x) or math.isnan(n_y)):
                if n_x != n_y:
                    raise ValueError(f"X and y have different lengths: {n_x} and {n_y}")
                return y.rechunk({0: X.chunks[0]})
    elif not (_is_frame(y) or _is_series(y)):
        raise TypeError(f"y must be a dask Array, Series or DataFrame, got {type(y).__name__}")
    if _n_row_parts(y) != _n_row_parts(X):
        raise ValueError(
            f"X and y must be split into the same row partitions, got {_n_row_parts(X)} and {_n_row_parts(y)}"
        )
    return y


def _partitions(coll: object) -> list:
    """One Delayed per row partition (arrays have one chunk across their columns here)."""
    parts = coll.to_delayed()
    if isinstance(coll, da.Array):
        return list(parts[:, 0] if coll.ndim == 2 else parts)
    return list(parts)


def _to_numpy(part: object) -> np.ndarray:
    """A computed partition (ndarray, pandas DataFrame or Series) as an ndarray; a SciPy
    sparse block (a dask array of sparse chunks) stays sparse, for the model's sparse
    input. It may be read-only (pandas' copy-on-write ``to_numpy()``, buffers from another
    worker): the model's input validation copies such arrays once."""
    if isinstance(part, np.ndarray) or is_scipy_sparse(part):
        return part
    return np.asarray(part.to_numpy())


def _check_seed(seed: object) -> int | None:
    return None if seed is None else check_int(seed, "seed", minimum=0)


# ---------------------------------------------------------------------- predict
def _predict_block(block: object, model: Sequential, worker_threads: int | None) -> np.ndarray:
    X = _to_numpy(block)
    if X.shape[0] == 0:  # dask may hand over empty partitions; model.predict refuses 0 rows
        return np.empty((0, model.n_outputs), dtype=model.dtype)
    with _task_threads(worker_threads):
        return model.predict(X)


def predict(
    model: Sequential, X: object, columns: Sequence[str] | None = None, worker_threads: int | None = 1
) -> da.Array:
    """Score a dask array or DataFrame block by block: a lazy ``model.predict``.

    The model is copied when this is called (later training does not change the result) and
    put in the graph once, as one task that every block depends on: a worker receives it
    once, not once per block. Each block is scored with ``model.predict``.

    Parameters
    ----------
    model : Sequential
        An unbuilt model is built for X's width first, as ``model.predict`` does.
    X : dask Array of shape (n_samples, n_features), or dask DataFrame
        Any real dtype (converted to the model's dtype in each task). A DataFrame's columns
        are the features, in order.
    columns : list of str, optional
        DataFrames only: the feature columns, in this order (default: all).
    worker_threads : int or None, default=1
        fastbp threads per task (see the module docstring); None keeps each process's
        setting.

    Returns
    -------
    dask Array of shape (n_samples, k), the model's dtype
        Rows chunked as X's rows. For a DataFrame the row chunk sizes are unknown (NaN)
        until computed, as for ``DataFrame.to_dask_array()``: a dask array rather than a
        DataFrame, so both inputs give the same kind of result.
        ``dd.from_dask_array(result, columns=[...])`` turns it into a DataFrame.

    Examples
    --------
    >>> import numpy as np, dask.array as da, fastbp as fb
    >>> from fastbp.dask import predict
    >>> model = fb.Sequential([fb.Dense(3)], loss="mse", seed=0)
    >>> X = np.arange(12.0).reshape(6, 2)
    >>> scores = predict(model, da.from_array(X, chunks=(3, 2)))
    >>> scores.chunks
    ((3, 3), (3,))
    >>> np.allclose(scores.compute(scheduler="sync"), model.predict(X))  # or on a Client's workers
    True
    """
    model = _check_model(model)
    X, n_features = _features(X, columns)
    worker_threads = _check_worker_threads(worker_threads)
    if model.n_features is not None and model.n_features != n_features:
        raise ValueError(f"X has {n_features} features, but the model expects {model.n_features}")
    model.build(n_features)
    k = model.n_outputs
    meta = np.empty((0, k), dtype=model.dtype)
    # a named Delayed: no hashing of the weights, and one task holding the model in the graph
    snapshot = dask.delayed(copy.deepcopy(model), name=f"fastbp-model-{uuid.uuid4().hex}")
    if isinstance(X, da.Array):
        return da.map_blocks(
            _predict_block, X, snapshot, worker_threads, chunks=(X.chunks[0], (k,)), dtype=model.dtype, meta=meta,
            name="fastbp-predict",
        )  # fmt: skip
    return X.map_partitions(
        _predict_block, snapshot, worker_threads, meta=meta, enforce_metadata=False, align_dataframes=False
    )


# ---------------------------------------------------------------------- incremental fit
def fit_incremental(
    model: Sequential, X: object, y: object, epochs: int = 1, batch_size: int = 32, shuffle: bool = True,
    seed: int | None = None, columns: Sequence[str] | None = None, class_weight: dict | None = None,
    initial_epoch: int = 0, verbose: int = 0,
) -> dict[str, list[float]]:  # fmt: skip
    """Train on data larger than memory by streaming its partitions through ``model.fit``.

    For each epoch, the partitions are visited in a seeded random order; each is computed
    (only one is held on the driver at a time) and trained on with
    ``model.fit(Xp, yp, batch_size=batch_size, shuffle=shuffle, ...)`` for that one epoch
    (``initial_epoch=e, epochs=e + 1``, so learning-rate schedules see the epoch number),
    which continues from the current weights and optimizer state.

    Parameters
    ----------
    model : Sequential
        Trained in place.
    X : dask Array of shape (n_samples, n_features), or dask DataFrame
    y : dask Array, Series or DataFrame
        Split into the same row partitions as X (dask arrays are rechunked to X's rows).
        Labels or targets as ``model.fit`` takes them.
    epochs : int, default=1
        Index of the last epoch + 1, as in ``model.fit``: epochs ``initial_epoch ..
        epochs - 1`` are trained.
    batch_size : int, default=32
        Batches do not span partitions: each partition ends with its own remainder batch.
    shuffle : bool, default=True
        Visit the partitions in a new random order each epoch, and shuffle rows within each.
    seed : int, optional
        Seeds the partition order; by default the model's own generator draws it, so a
        seeded model gives a reproducible run.
    columns : list of str, optional
        DataFrames only: the feature columns of X, in order (default: all).
    class_weight : dict {class index: weight}, optional
        Passed to every ``model.fit`` call.
    initial_epoch : int, default=0
        Epoch to start counting from, as in ``model.fit``.
    verbose : int, default=0
        1 or more prints one line per epoch.

    Returns
    -------
    dict
        ``{"loss": [...]}``: each epoch's mean training loss over all rows (each
        partition's mean weighted by its rows).

    Notes
    -----
    An error in a partition (bad values, X and y lengths differ) is raised when that
    partition is reached, after the partitions before it were trained on.
    ``model.history`` is set to the per-epoch losses at the end.
    """
    model = _check_model(model)
    X, n_features = _features(X, columns)
    y = _targets(y, X)
    epochs, initial_epoch, batch_size, shuffle, seed, verbose = _check_fit_args(
        model, n_features, epochs, initial_epoch, batch_size, shuffle, seed, verbose
    )

    xs, ys = _partitions(X), _partitions(y)
    rng = model.state.rng if seed is None else np.random.default_rng(seed)
    history: dict[str, list[float]] = {"loss": []}
    for epoch in range(initial_epoch, epochs):
        order = rng.permutation(len(xs)) if shuffle else np.arange(len(xs))
        total, rows = 0.0, 0
        for p in order:
            Xp, yp = (_to_numpy(a) for a in dask.compute(xs[p], ys[p]))
            if Xp.shape[0] != yp.shape[0]:
                raise ValueError(f"partition {p}: X has {Xp.shape[0]} rows but y has {yp.shape[0]}")
            if Xp.shape[0] > 0:
                h = model.fit(
                    Xp, yp, epochs=epoch + 1, initial_epoch=epoch, batch_size=batch_size, shuffle=shuffle,
                    class_weight=class_weight, verbose=0,
                )  # fmt: skip
                total += h.history["loss"][0] * Xp.shape[0]
                rows += Xp.shape[0]
            del Xp, yp  # free this partition before computing the next
        if rows == 0:
            raise ValueError("X has 0 rows; at least 1 is required")
        history["loss"].append(total / rows)
        if verbose:
            print(f"epoch {epoch + 1}/{epochs} - loss: {history['loss'][-1]:.6g}")
    model.history = History(history=history, epoch=list(range(initial_epoch, epochs)))
    return history


def _check_fit_args(
    model: Sequential, n_features: int, epochs: object, initial_epoch: object, batch_size: object,
    shuffle: object, seed: object, verbose: object,
) -> tuple:  # fmt: skip
    """The arguments both fits share, checked as ``model.fit`` checks them."""
    epochs = check_int(epochs, "epochs")
    initial_epoch = check_int(initial_epoch, "initial_epoch", minimum=0)
    if initial_epoch > epochs:
        raise ValueError(f"initial_epoch ({initial_epoch}) must be <= epochs ({epochs})")
    batch_size = check_int(batch_size, "batch_size")
    if not isinstance(shuffle, bool):
        raise TypeError(f"shuffle must be a bool, got {shuffle!r}")
    seed = _check_seed(seed)
    verbose = check_int(verbose, "verbose", minimum=0)
    if model.n_features is not None and model.n_features != n_features:
        raise ValueError(f"X has {n_features} features, but the model expects {model.n_features}")
    return epochs, initial_epoch, batch_size, shuffle, seed, verbose


# ---------------------------------------------------------------------- data-parallel fit
def _prepare_partition(Xp: object, yp: object, model: Sequential) -> tuple[np.ndarray, np.ndarray] | None:
    """Validate and convert one partition on its worker, once: (X, labels or targets)."""
    Xp, yp = _to_numpy(Xp), _to_numpy(yp)
    if Xp.shape[0] != yp.shape[0]:
        raise ValueError(f"X and y partitions have different lengths: {Xp.shape[0]} and {yp.shape[0]}")
    if Xp.shape[0] == 0:
        return None
    inputs = model.check_inputs(Xp, yp, standardize=False)  # validated here; fit standardises, once
    return inputs.X, inputs.targets


def _n_rows(pair: tuple[np.ndarray, np.ndarray] | None) -> int:
    return 0 if pair is None else pair[0].shape[0]


def _window(n: int, window: int, start: int, shuffle: bool, seed: int, part: int) -> np.ndarray:
    """Rows ``start .. start + window`` of an endless stream of passes over ``n`` rows.

    Pass q visits the rows in order, or, with ``shuffle``, in a permutation seeded by
    (seed, part, q): workers rotate through their partitions, round after round.
    """
    pos = np.arange(start, start + window, dtype=np.int64)
    passes, offsets = np.divmod(pos, n)
    idx = np.empty(window, dtype=np.int64)
    for q in np.unique(passes):
        order = np.random.default_rng([seed, part, int(q)]).permutation(n) if shuffle else np.arange(n)
        sel = passes == q
        idx[sel] = order[offsets[sel]]
    return idx


def _train_partition(
    skeleton: Sequential, state: tuple, pair: tuple[np.ndarray, np.ndarray], window: int | None,
    epoch: int, round_index: int, part: int, batch_size: int, shuffle: bool, seed: int,
    class_weight: dict | None, worker_threads: int | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, float, int]:  # fmt: skip
    """One round on one worker: train from the shared state, return the new state."""
    # the skeleton object is shared by the tasks of this worker process: train a copy
    model = copy.deepcopy(skeleton)
    theta, m, v, step = state
    model.set_state(TrainingState(theta, m, v, step, np.random.default_rng([seed, round_index, part])))
    X, y = pair
    if window is not None:
        idx = _window(X.shape[0], window, round_index * window, shuffle, seed, part)
        X, y = take(X, idx), y[idx]
    with _task_threads(worker_threads):
        h = model.fit(
            X, y, epochs=epoch + 1, initial_epoch=epoch, batch_size=batch_size, shuffle=shuffle and window is None,
            class_weight=class_weight, verbose=0,
        )  # fmt: skip
    after = model.state
    return after.theta, after.m, after.v, after.step - step, h.history["loss"][0], X.shape[0]


def _get_client(client: object) -> object:
    try:
        import distributed
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError(f"fit_data_parallel needs distributed: {_INSTALL}") from exc
    if client is None:
        try:
            return distributed.default_client()
        except ValueError:
            raise ValueError("fit_data_parallel needs a distributed.Client: pass client= or create one first") from None
    if not isinstance(client, distributed.Client):
        raise TypeError(f"client must be a distributed.Client, got {type(client).__name__}")
    return client


def _weighted_mean(arrays: Sequence[np.ndarray], weights: np.ndarray, dtype: np.dtype) -> np.ndarray:
    total = np.zeros(arrays[0].shape, dtype=np.float64)
    for a, w in zip(arrays, weights):
        total += w * a
    return (total / weights.sum()).astype(dtype)


def fit_data_parallel(
    model: Sequential, X: object, y: object, client: object = None, epochs: int = 1, batch_size: int = 32,
    sync_every: str | int = "epoch", shuffle: bool = True, seed: int | None = None,
    columns: Sequence[str] | None = None, class_weight: dict | None = None, initial_epoch: int = 0,
    worker_threads: int | None = 1, verbose: int = 0,
) -> dict[str, list[float]]:  # fmt: skip
    """Train on a ``distributed`` cluster by model averaging (local SGD).

    The partitions of X and y are computed, validated and kept on the workers for the
    whole fit. Each round, every partition's task starts from the same weights and
    optimizer state (Adam's moments, momentum, the step count), trains a copy of the model
    on its partition with the compiled training loop, and returns the new weights and
    state; the driver averages them, weighted by the rows each task trained on, and sets
    them in ``model``. Each task runs on the worker that holds its partition.

    Parameters
    ----------
    model : Sequential
        Trained in place; updated after every round.
    X : dask Array of shape (n_samples, n_features), or dask DataFrame
    y : dask Array, Series or DataFrame
        Split into the same row partitions as X. Use about as many partitions as worker
        threads: each round runs one task per partition.
    client : distributed.Client, optional
        Default: the current client (``distributed.default_client()``).
    epochs : int, default=1
        Index of the last epoch + 1, as in ``model.fit``: epochs ``initial_epoch ..
        epochs - 1`` are trained (learning-rate schedules see these numbers).
    batch_size : int, default=32
    sync_every : "epoch" or int, default="epoch"
        ``"epoch"``: one round per epoch, each task one pass over its partition. An int k:
        each task runs k mini-batches per round (``k * batch_size`` rows, taken in turn from
        its partition's shuffled passes), and an epoch is
        ``ceil(n_samples / (n_partitions * k * batch_size))`` rounds, about one pass over
        the data in all. Smaller k averages more often: closer to single-process training,
        at the cost of one exchange of the parameters per round.
    shuffle : bool, default=True
        Shuffle the rows within each partition.
    seed : int, optional
        Seeds each task's shuffling (with the round and partition numbers); by default it is
        drawn from the model's generator.
    columns : list of str, optional
        DataFrames only: the feature columns of X, in order (default: all).
    class_weight : dict {class index: weight}, optional
        Passed to every task's ``model.fit`` call.
    initial_epoch : int, default=0
        Epoch to start counting from, as in ``model.fit``.
    worker_threads : int or None, default=1
        fastbp threads per training task (see the module docstring); None keeps each worker
        process's setting.
    verbose : int, default=0
        1 or more prints one line per epoch.

    Returns
    -------
    dict
        ``{"loss": [...]}``: each epoch's mean training loss, as the tasks measured it while
        training (weighted by rows).

    Notes
    -----
    The step count advances by the rows-weighted mean of the tasks' step counts, rounded.
    The data is validated on the workers before the model changes; an unbuilt model is
    built for X's width. With one partition this is ``model.fit`` run on a worker.
    ``model.history`` is set to the per-epoch losses at the end.
    """
    model = _check_model(model)
    client = _get_client(client)
    X, n_features = _features(X, columns)
    y = _targets(y, X)
    epochs, initial_epoch, batch_size, shuffle, seed, verbose = _check_fit_args(
        model, n_features, epochs, initial_epoch, batch_size, shuffle, seed, verbose
    )
    if not (sync_every == "epoch" or (isinstance(sync_every, int) and not isinstance(sync_every, bool))):
        raise TypeError(f"sync_every must be 'epoch' or an int number of steps, got {sync_every!r}")
    window = None if sync_every == "epoch" else check_int(sync_every, "sync_every") * batch_size
    worker_threads = _check_worker_threads(worker_threads)

    # a built copy goes to every worker once: it validates the partitions, then each round's
    # tasks copy it and load the round's weights into it
    skeleton = copy.deepcopy(model)
    skeleton.build(n_features)
    [skeleton_f] = client.scatter([skeleton], broadcast=True, hash=False)
    prepare = dask.delayed(_prepare_partition, pure=True)
    pairs = client.compute([prepare(xd, yd, skeleton_f) for xd, yd in zip(_partitions(X), _partitions(y))])
    rows = client.gather(client.map(_n_rows, pairs, pure=False))  # raises a partition's validation error
    pairs, rows = [p for p, r in zip(pairs, rows) if r > 0], np.array([r for r in rows if r > 0], dtype=np.int64)
    if len(pairs) == 0:
        raise ValueError("X has 0 rows; at least 1 is required")
    holders = client.who_has(pairs)

    # validated: now the model may change
    model.build(n_features)
    if seed is None:
        seed = int(model.state.rng.integers(2**31))
    rounds = 1 if window is None else max(1, math.ceil(int(rows.sum()) / (len(pairs) * window)))
    history: dict[str, list[float]] = {"loss": []}
    round_index = 0
    for epoch in range(initial_epoch, epochs):
        total, seen = 0.0, 0
        for _ in range(rounds):
            now = model.state
            [state_f] = client.scatter([(now.theta, now.m, now.v, now.step)], broadcast=True, hash=False)
            futures = []
            for part, pair in enumerate(pairs):
                args = (window, epoch, round_index, part, batch_size, shuffle, seed, class_weight, worker_threads)
                # on the worker that holds the partition (the state is on every worker)
                where = list(holders.get(pair.key, ())) or None
                future = client.submit(
                    _train_partition, skeleton_f, state_f, pair, *args, workers=where, allow_other_workers=True,
                    pure=False,
                )  # fmt: skip
                futures.append(future)
            results = client.gather(futures)
            weights = np.array([r[5] for r in results], dtype=np.float64)
            theta = _weighted_mean([r[0] for r in results], weights, model.dtype)
            m = _weighted_mean([r[1] for r in results], weights, model.dtype)
            v = _weighted_mean([r[2] for r in results], weights, model.dtype)
            steps = float(np.dot(weights, [r[3] for r in results]) / weights.sum())
            model.set_state(TrainingState(theta, m, v, now.step + int(round(steps)), now.rng))
            total += float(np.dot(weights, [r[4] for r in results]))
            seen += int(weights.sum())
            round_index += 1
        history["loss"].append(total / seen)
        if verbose:
            print(f"epoch {epoch + 1}/{epochs} - loss: {history['loss'][-1]:.6g}")
    model.history = History(history=history, epoch=list(range(initial_epoch, epochs)))
    return history
