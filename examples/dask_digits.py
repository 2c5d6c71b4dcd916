"""Train a digit classifier data-parallel on a local dask cluster, with fastbp.dask.

The data is scikit-learn's bundled ``digits`` set (1,797 8x8 images, 10 classes; nothing
is downloaded), shuffled with a fixed seed, 2/3 for training, standardised with the
training set's statistics. The training rows become a dask array of two partitions, one
per worker of a ``LocalCluster`` of two single-threaded worker processes.

``fastbp.dask.fit_data_parallel`` keeps each partition on its worker; every round, each
worker trains a copy of the model on its partition for 8 mini-batches from the same
weights and Adam state, and the driver averages the copies. The script prints the held-out
accuracy of that model beside a model trained in this process for the same epochs (both
about 97%), and scores the test set on the cluster with ``fastbp.dask.predict``.

Run it with ``python examples/dask_digits.py`` (needs ``pip install 'fastbp[dask,sklearn]'``).
The ``__main__`` guard matters: the worker processes are spawned, and each imports this file.
"""

from __future__ import annotations

import logging
import time

import dask.array as da
import numpy as np
from distributed import Client, LocalCluster
from sklearn.datasets import load_digits

import fastbp as fb
from fastbp.dask import fit_data_parallel, predict

SEED = 0
EPOCHS = 30


def make_model() -> fb.Sequential:
    return fb.Sequential(
        [fb.Dense(64, activation="relu"), fb.Dense(10)], loss="cross_entropy", optimizer=fb.Adam(lr=2e-3), seed=SEED
    )


def main() -> None:
    X, y = load_digits(return_X_y=True)
    order = np.random.default_rng(SEED).permutation(len(X))
    X, y = X[order], y[order]
    n_train = 2 * len(X) // 3
    mean, std = X[:n_train].mean(axis=0), X[:n_train].std(axis=0)
    std[std == 0] = 1.0  # a few border pixels are always 0
    X = ((X - mean) / std).astype(np.float32)
    X_train, y_train, X_test, y_test = X[:n_train], y[:n_train], X[n_train:], y[n_train:]

    # compile the kernels here (or load them from Numba's cache) before the workers start,
    # so that they load them from the cache instead of compiling them at the same time
    start = time.perf_counter()
    single = make_model()
    single.fit(X_train, y_train, epochs=EPOCHS, batch_size=32, verbose=0)
    print(f"single process: {EPOCHS} epochs in {time.perf_counter() - start:.2f} s (with kernel loading)")

    half = (n_train + 1) // 2
    X_dask = da.from_array(X_train, chunks=(half, X_train.shape[1]))
    y_dask = da.from_array(y_train, chunks=half)

    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=logging.ERROR
    )
    with cluster, Client(cluster) as client:
        print(f"cluster: {len(client.scheduler_info()['workers'])} workers, {X_dask.numblocks[0]} partitions")
        model = make_model()
        start = time.perf_counter()
        history = fit_data_parallel(model, X_dask, y_dask, client=client, epochs=EPOCHS, batch_size=32, sync_every=8)
        seconds = time.perf_counter() - start
        first, last = history["loss"][0], history["loss"][-1]
        print(f"data-parallel: {EPOCHS} epochs in {seconds:.2f} s, training loss {first:.4f} -> {last:.4f}")
        proba = predict(model, da.from_array(X_test, chunks=(200, X_test.shape[1]))).compute()

    parallel = np.mean(proba.argmax(axis=1) == y_test)
    reference = np.mean(single.predict(X_test).argmax(axis=1) == y_test)
    print(f"held-out accuracy: data-parallel {parallel:.2%}, single process {reference:.2%}")


if __name__ == "__main__":
    main()
