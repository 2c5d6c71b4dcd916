"""fastbp.dask on a real LocalCluster: distributed predict, incremental and data-parallel fit.

One module-scoped cluster of two single-threaded worker processes. Numba's ``omp``
threading layer is not fork-safe, so the workers are spawned (distributed's default,
set explicitly here). Each worker loads the compiled kernels from Numba's on-disk cache,
which the fixture fills in the driver process first.
"""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pytest
from helpers import net

import fastbp as fb

distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
dd = pytest.importorskip("dask.dataframe")
pd = pytest.importorskip("pandas")
datasets = pytest.importorskip("sklearn.datasets")

from fastbp import dask as fbd  # noqa: E402  (after the importorskips)

EPOCHS = 30


def _model(seed: int = 0, lr: object = 2e-3) -> fb.Sequential:
    return net((64,), "relu", 10, optimizer=fb.Adam(lr=lr), seed=seed)


def _accuracy(model: fb.Sequential, X: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(model.predict(X).argmax(axis=1) == y))


@pytest.fixture(scope="module")
def digits():
    """sklearn digits, shuffled, 2/3 train, standardised with the training statistics."""
    X, y = datasets.load_digits(return_X_y=True)
    idx = np.random.default_rng(0).permutation(len(X))
    X, y = X[idx], y[idx]
    n = 2 * len(X) // 3
    mean, std = X[:n].mean(axis=0), X[:n].std(axis=0)
    std[std == 0] = 1.0
    X = ((X - mean) / std).astype(np.float32)
    return X[:n], y[:n], X[n:], y[n:]


@pytest.fixture(scope="module")
def client():
    # compile (or load) the kernels here first: the workers then load them from the cache
    # instead of compiling them twice at once on a cold cache
    warm = _model()
    warm.fit(np.zeros((40, 64), np.float32), np.arange(40) % 10, epochs=1, batch_size=32, verbose=0)
    warm.predict(np.zeros((3, 64), np.float32))
    with dask.config.set({"distributed.worker.multiprocessing-method": "spawn"}):
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
            silence_logs=logging.ERROR, death_timeout="120s",
        )  # fmt: skip
    try:
        with distributed.Client(cluster, timeout="120s") as c:
            c.wait_for_workers(2, timeout=120)
            yield c
    finally:
        cluster.close(timeout=60)


@pytest.fixture(scope="module")
def trained(digits):
    """Single-process reference: the same model and epochs as the distributed fits."""
    X_tr, y_tr, _, _ = digits
    model = _model()
    model.fit(X_tr, y_tr, epochs=EPOCHS, batch_size=32, verbose=0)
    return model


def _halves(X: np.ndarray, y: np.ndarray) -> tuple:
    rows = (len(X) + 1) // 2
    return da.from_array(X, chunks=(rows, X.shape[1])), da.from_array(y, chunks=rows)


# ---------------------------------------------------------------------- no client
def test_fit_data_parallel_without_client_is_a_clear_error(digits):
    """First in the module: the cluster fixture has not made a default client yet."""
    try:
        distributed.default_client()
    except ValueError:
        pass
    else:
        pytest.skip("a default distributed client already exists in this process")
    X, y = _halves(*digits[:2])
    model = _model()
    with pytest.raises(ValueError, match="needs a distributed.Client: pass client= or create one"):
        fbd.fit_data_parallel(model, X, y)
    assert not model.built


# ---------------------------------------------------------------------- predict
def test_predict_array_equals_model_predict(client, digits, trained):
    _, _, X_te, _ = digits
    # three row chunks and two column chunks: the columns are joined before scoring
    X = da.from_array(X_te, chunks=(250, 32))
    out = fbd.predict(trained, X)
    assert isinstance(out, da.Array)
    assert out.chunks == ((250, 250, X_te.shape[0] - 500), (10,))
    assert out.dtype == np.float32
    got = out.compute()
    assert got.dtype == np.float32
    # not bit-equal: BLAS rounds a row differently depending on its block of rows
    np.testing.assert_allclose(got, trained.predict(X_te), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-5)


def test_predict_dataframe_equals_model_predict(client, digits, trained):
    _, _, X_te, y_te = digits
    features = [f"px{i}" for i in range(64)]
    frame = pd.DataFrame(X_te, columns=features)
    frame.insert(10, "label", y_te)
    frame["name"] = "digit"  # a non-numeric column, left out by columns=
    ddf = dd.from_pandas(frame, npartitions=3)
    expected = trained.predict(X_te)

    out = fbd.predict(trained, ddf, columns=features)
    assert isinstance(out, da.Array) and out.shape[1] == 10 and np.isnan(out.shape[0])
    np.testing.assert_allclose(out.compute(), expected, rtol=1e-5, atol=1e-6)
    # without columns=: every column of the frame, in order
    np.testing.assert_allclose(fbd.predict(trained, ddf[features]).compute(), expected, rtol=1e-5, atol=1e-6)
    # columns= follows the order given
    reordered = fb.Sequential([fb.Dense(10, input_dim=64)], loss="cross_entropy", seed=1)
    W, b = trained[0].w[:, :10], np.zeros(10, np.float32)
    reordered.set_weights([W[::-1], b])
    np.testing.assert_allclose(
        fbd.predict(reordered, ddf, columns=features[::-1]).compute(),
        reordered.predict(X_te[:, ::-1]), rtol=1e-5, atol=1e-6,
    )  # fmt: skip


def test_predict_puts_model_in_graph_once_and_snapshots_it(digits, trained):
    _, _, X_te, _ = digits
    model = _model(seed=3)
    model.build(64)
    X = da.from_array(X_te, chunks=(100, 64))
    out = fbd.predict(model, X)
    graph = dict(out.__dask_graph__())
    model_keys = [k for k in graph if str(k).startswith("fastbp-model")]
    predict_keys = [k for k in graph if isinstance(k, tuple) and str(k[0]).startswith("fastbp-predict")]
    assert len(model_keys) == 1
    assert len(predict_keys) == X.numblocks[0]
    expected = model.predict(X_te)
    model.set_weights([np.zeros_like(w) for w in model.get_weights()])  # after predict(): no effect
    np.testing.assert_allclose(out.compute(scheduler="sync"), expected, rtol=1e-5, atol=1e-6)


def test_predict_builds_like_model_predict_and_restores_threads():
    X = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    a, b = _model(seed=5), _model(seed=5)
    threads = fb.get_num_threads()
    got = fbd.predict(a, da.from_array(X, chunks=10), worker_threads=1).compute(scheduler="threads")
    assert fb.get_num_threads() == threads
    assert a.built and a.n_features == 4
    np.testing.assert_allclose(got, b.predict(X), rtol=1e-5, atol=1e-6)


def test_predict_errors(trained):
    X = da.zeros((10, 64), chunks=5)
    with pytest.raises(ValueError, match="X has 3 features, but the model expects 64"):
        fbd.predict(trained, da.zeros((10, 3), chunks=5))
    with pytest.raises(TypeError, match="dask Array or a dask DataFrame.*model.predict"):
        fbd.predict(trained, np.zeros((10, 64)))
    with pytest.raises(TypeError, match="model must be a fastbp.Sequential"):
        fbd.predict("model", X)
    with pytest.raises(ValueError, match="X must be 2-D"):
        fbd.predict(trained, da.zeros(10, chunks=5))
    with pytest.raises(ValueError, match="columns= selects DataFrame columns"):
        fbd.predict(trained, X, columns=["a"])
    with pytest.raises(TypeError, match="X must hold real numbers"):
        fbd.predict(trained, da.from_array(np.array([["a"] * 64] * 2)))
    with pytest.raises(ValueError, match="worker_threads must be >= 1"):
        fbd.predict(trained, X, worker_threads=0)
    ddf = dd.from_pandas(pd.DataFrame({"a": [1.0, 2.0], "s": ["x", "y"]}), npartitions=1)
    with pytest.raises(ValueError, match=r"columns \['b'\] are not in X"):
        fbd.predict(trained, ddf, columns=["a", "b"])
    with pytest.raises(TypeError, match="non-numeric columns {'s'"):
        fbd.predict(trained, ddf)


# ---------------------------------------------------------------------- incremental fit
def test_fit_incremental_learns_digits(client, digits):
    X_tr, y_tr, X_te, y_te = digits
    X = da.from_array(X_tr, chunks=(400, 64))  # 3 partitions
    y = da.from_array(y_tr, chunks=200)  # rechunked to X's rows
    model = _model()
    history = fbd.fit_incremental(model, X, y, epochs=10, batch_size=32)
    loss = history["loss"]
    assert len(loss) == 10
    assert loss[-1] < loss[0] / 10
    assert np.all(np.diff(loss[:5]) < 0)
    assert _accuracy(model, X_te, y_te) >= 0.95


def test_fit_incremental_one_partition_equals_fit(client, digits):
    """One partition, no shuffling: the same calls as model.fit, so the same weights. The
    learning rate halves every epoch: the epoch numbers reach fit, across two calls too."""
    X_tr, y_tr, _, _ = digits
    reference, model = _model(lr=fb.StepDecay(4e-3, factor=0.5, every=1)), _model(lr=fb.StepDecay(4e-3, 0.5, 1))
    expected = reference.fit(X_tr, y_tr, epochs=3, batch_size=64, shuffle=False, verbose=0).history["loss"]
    X, y = da.from_array(X_tr, chunks=(len(X_tr), 64)), da.from_array(y_tr)
    first = fbd.fit_incremental(model, X, y, epochs=1, batch_size=64, shuffle=False)
    rest = fbd.fit_incremental(model, X, y, epochs=3, initial_epoch=1, batch_size=64, shuffle=False)
    np.testing.assert_allclose(first["loss"] + rest["loss"], expected, rtol=1e-12)
    for got, want in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(got, want)
    assert model._step == reference._step
    assert model.history.history["loss"] == rest["loss"] and model.history.epoch == [1, 2]


def test_fit_incremental_dataframe_equals_array(client, digits):
    X_tr, y_tr, _, _ = digits
    features = [f"px{i}" for i in range(64)]
    frame = pd.DataFrame(X_tr, columns=features).assign(label=y_tr)
    ddf = dd.from_pandas(frame, npartitions=3, sort=False)
    sizes = tuple(ddf.map_partitions(len).compute().tolist())
    X, y = da.from_array(X_tr, chunks=(sizes, 64)), da.from_array(y_tr, chunks=(sizes,))
    from_frame, from_array = _model(), _model()
    h1 = fbd.fit_incremental(from_frame, ddf, ddf["label"], epochs=2, seed=7, columns=features)
    h2 = fbd.fit_incremental(from_array, X, y, epochs=2, seed=7)
    assert h1 == h2
    for got, want in zip(from_frame.get_weights(), from_array.get_weights()):
        np.testing.assert_array_equal(got, want)


def test_fit_incremental_errors(digits):
    X_tr, y_tr, _, _ = digits
    X, y = _halves(X_tr, y_tr)
    model = _model()
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        fbd.fit_incremental(model, X, y, epochs=0)
    with pytest.raises(TypeError, match="y must be a dask Array, Series or DataFrame"):
        fbd.fit_incremental(model, X, y_tr)
    with pytest.raises(ValueError, match="X and y have different lengths: 1198 and 1197"):
        fbd.fit_incremental(model, X, y[:-1])
    with pytest.raises(ValueError, match="same row partitions, got 2 and 1"):
        fbd.fit_incremental(model, X, dd.from_pandas(pd.Series(y_tr), npartitions=1))
    with pytest.raises(TypeError, match="shuffle must be a bool"):
        fbd.fit_incremental(model, X, y, shuffle=1)
    with pytest.raises(ValueError, match=r"initial_epoch \(3\) must be <= epochs \(2\)"):
        fbd.fit_incremental(model, X, y, epochs=2, initial_epoch=3)
    assert not model.built  # nothing was trained


# ---------------------------------------------------------------------- data-parallel fit
@pytest.mark.parametrize("sync_every", ["epoch", 8])
def test_fit_data_parallel_matches_single_process(client, digits, trained, sync_every):
    X_tr, y_tr, X_te, y_te = digits
    X, y = _halves(X_tr, y_tr)
    model = _model()
    history = fbd.fit_data_parallel(model, X, y, client=client, epochs=EPOCHS, batch_size=32, sync_every=sync_every)
    loss = history["loss"]
    assert len(loss) == EPOCHS and loss[-1] < loss[0] / 20
    single = _accuracy(trained, X_te, y_te)
    parallel = _accuracy(model, X_te, y_te)
    assert single >= 0.96
    assert abs(parallel - single) <= 0.01, (parallel, single)


def test_fit_data_parallel_one_partition_equals_fit(client, digits):
    """One partition, no shuffling, one thread on both sides: averaging one copy is exact,
    so the rounds reproduce model.fit bit for bit (weights, Adam moments, step count)."""
    X_tr, y_tr, _, _ = digits
    reference, model = _model(lr=fb.StepDecay(4e-3, factor=0.5, every=1)), _model(lr=fb.StepDecay(4e-3, 0.5, 1))
    threads = fb.get_num_threads()
    fb.set_num_threads(1)
    try:
        reference.fit(X_tr, y_tr, epochs=3, batch_size=64, shuffle=False, verbose=0)
    finally:
        fb.set_num_threads(threads)
    X, y = da.from_array(X_tr, chunks=(len(X_tr), 64)), da.from_array(y_tr)
    fbd.fit_data_parallel(model, X, y, epochs=1, batch_size=64, shuffle=False)  # the default client
    fbd.fit_data_parallel(model, X, y, epochs=3, initial_epoch=1, batch_size=64, shuffle=False)
    for got, want in zip(model.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(model._m, reference._m)
    np.testing.assert_array_equal(model._v, reference._v)
    assert model._step == reference._step == 3 * 19


def test_normalization_layer_is_applied_once_on_every_path(client, digits, restore_threads):
    """A model whose first layer standardises its input: the partitions are validated on
    the workers without it and standardised by fit, once; raw features in, the same model
    as model.fit on the same raw features (one partition, no shuffling, one thread)."""
    X_tr, y_tr, _, _ = digits
    raw = X_tr * 7.0 + 100.0  # off scale: standardising twice or not at all would show
    norm = fb.Normalization().adapt(raw)

    def model() -> fb.Sequential:
        return fb.Sequential([fb.Normalization(**norm.get_config()), fb.Dense(16, activation="relu"), fb.Dense(10)],
                             loss="cross_entropy", optimizer=fb.Adam(lr=4e-3), seed=0)  # fmt: skip

    reference, incremental, parallel = model(), model(), model()
    fb.set_num_threads(1)  # as the workers run (restore_threads puts it back)
    reference.fit(raw, y_tr, epochs=2, batch_size=64, shuffle=False, verbose=0)
    X, y = da.from_array(raw, chunks=(len(raw), 64)), da.from_array(y_tr)
    fbd.fit_data_parallel(parallel, X, y, epochs=2, batch_size=64, shuffle=False, client=client)
    for got, want in zip(parallel.get_weights(), reference.get_weights()):
        np.testing.assert_array_equal(got, want)
    fbd.fit_incremental(incremental, X, y, epochs=2, batch_size=64, shuffle=False)
    np.testing.assert_allclose(fbd.predict(incremental, X).compute(), incremental.predict(raw), rtol=1e-6, atol=1e-7)
    assert _accuracy(reference, raw, y_tr) > 0.75  # it learns: 0.80 measured after these 2 epochs


def test_fit_data_parallel_dataframe_equals_array(client, digits):
    X_tr, y_tr, _, _ = digits
    features = [f"px{i}" for i in range(64)]
    ddf = dd.from_pandas(pd.DataFrame(X_tr, columns=features).assign(label=y_tr), npartitions=2, sort=False)
    sizes = tuple(ddf.map_partitions(len).compute().tolist())
    X, y = da.from_array(X_tr, chunks=(sizes, 64)), da.from_array(y_tr, chunks=(sizes,))
    from_frame, from_array = _model(), _model()
    h1 = fbd.fit_data_parallel(from_frame, ddf, ddf["label"], epochs=2, sync_every=5, seed=3, columns=features)
    h2 = fbd.fit_data_parallel(from_array, X, y, epochs=2, sync_every=5, seed=3)
    assert h1 == h2
    for got, want in zip(from_frame.get_weights(), from_array.get_weights()):
        np.testing.assert_array_equal(got, want)


def test_sparse_chunks_train_and_predict_as_dense(client, digits):
    """A dask array of SciPy CSR chunks (``from_array(..., asarray=False)``): each
    partition reaches the model sparse, and every entry point gives what the same data
    dense gives. float64, where the sparse and dense first layers agree to rounding
    (``tests/test_sparse.py``); the incremental fit runs in this process first, so the
    workers load its kernels from the cache."""
    sparse = pytest.importorskip("scipy.sparse")
    X_tr, y_tr, X_te, _ = digits
    X_tr = np.where(np.abs(X_tr) < 0.5, 0.0, X_tr)  # about half zeros
    rows = (len(X_tr) + 1) // 2
    Xs = da.from_array(sparse.csr_matrix(X_tr), chunks=(rows, 64), asarray=False)
    X, y = _halves(X_tr, y_tr)

    def model() -> fb.Sequential:
        return fb.Sequential([fb.Dense(16, activation="relu"), fb.Dense(10)], loss="cross_entropy", dtype="float64",
                             seed=0)  # fmt: skip

    for fit in (
        lambda m, X: fbd.fit_incremental(m, X, y, epochs=2, batch_size=32, seed=1),
        lambda m, X: fbd.fit_data_parallel(m, X, y, client=client, epochs=2, batch_size=32, sync_every=5, seed=1),
    ):
        a, b = model(), model()
        ha, hb = fit(a, Xs), fit(b, X)
        np.testing.assert_allclose(ha["loss"], hb["loss"], rtol=1e-9)
        for got, want in zip(a.get_weights(), b.get_weights()):
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fbd.predict(a, Xs).compute(), b.predict(X_tr), rtol=1e-9, atol=1e-12)


def test_fit_data_parallel_validates_before_changing_the_model(client, digits):
    X_tr, y_tr, _, _ = digits
    y_bad = y_tr.copy()
    y_bad[-1] = 12  # in the second partition: found on its worker
    X, y = _halves(X_tr, y_bad)
    model = _model()
    with pytest.raises(ValueError, match=r"labels must be in 0..9.*got values in 0..12"):
        fbd.fit_data_parallel(model, X, y, epochs=1)
    assert not model.built
    X_nan = X_tr.copy()
    X_nan[3, 3] = np.nan
    with pytest.raises(ValueError, match="X contains NaN"):
        fbd.fit_data_parallel(model, *_halves(X_nan, y_tr), epochs=1)
    assert not model.built


def test_fit_data_parallel_argument_errors(client, digits):
    X_tr, y_tr, _, _ = digits
    X, y = _halves(X_tr, y_tr)
    model = _model()
    with pytest.raises(TypeError, match="sync_every must be 'epoch' or an int"):
        fbd.fit_data_parallel(model, X, y, sync_every="batch")
    with pytest.raises(ValueError, match="sync_every must be >= 1"):
        fbd.fit_data_parallel(model, X, y, sync_every=0)
    with pytest.raises(TypeError, match="client must be a distributed.Client"):
        fbd.fit_data_parallel(model, X, y, client="tcp://127.0.0.1:8786")
    with pytest.raises(ValueError, match="X has 3 features, but the model expects 64"):
        other = fb.Sequential([fb.Dense(2, input_dim=64)], loss="cross_entropy")
        fbd.fit_data_parallel(other, da.zeros((4, 3), chunks=2), da.zeros(4, chunks=2))
    assert not model.built


# ---------------------------------------------------------------------- missing extra
_MISSING_EXTRA = """
import sys
sys.modules["dask"] = None  # as if dask were not installed
try:
    import fastbp.dask
except ImportError as exc:
    print("no dask:", exc)
del sys.modules["dask"]
sys.modules["distributed"] = None
import dask.array as da
import fastbp as fb
import fastbp.dask
model = fb.Sequential([fb.Dense(2)], loss="cross_entropy")
try:
    fastbp.dask.fit_data_parallel(model, da.zeros((4, 3), chunks=2), da.zeros(4, chunks=2))
except ImportError as exc:
    print("no distributed:", exc)
"""


def test_missing_extra_names_it():
    # in a child process: hiding dask from this one would break the cluster's threads
    out = subprocess.run([sys.executable, "-c", _MISSING_EXTRA], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "no dask: fastbp.dask needs dask[array,dataframe] and distributed: pip install 'fastbp[dask]'" in out.stdout
    assert "no distributed: fit_data_parallel needs distributed: pip install 'fastbp[dask]'" in out.stdout
