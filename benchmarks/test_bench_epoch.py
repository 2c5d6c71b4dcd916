"""End-to-end training benchmarks: one epoch of fastbp beside one of the NumPy baseline.

Each group is one workload (data, architecture, batch size, optimizer, dtype); fastbp and
NumPy (``numpy_mlp.py``) start from the same initial weights (a seeded fastbp model's
``get_weights()``) and visit the rows in the same order, so they do the same arithmetic.
Each timed call is one more epoch of training. pytest-benchmark's ratio columns compare
each row with the group's best; the summary at the end gives fastbp/NumPy samples/s.

Every benchmark also checks its answer, so a fast wrong result fails (and the smoke run,
``--benchmark-disable``, doubles as a test): the first epoch's mean loss must match the
other implementation's from the same weights, and the last timed epoch's loss must be
finite and lower than the first.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from functools import cache

import numba
import numpy as np
import pytest
from threadpoolctl import threadpool_info

import fastbp as fb
from benchmarks.numpy_mlp import NumpyMLP

DTYPE = np.float32
#: How closely fastbp's and NumPy's first-epoch mean losses from the same weights agree
#: (float32, relative). They differ only in rounding and summation order: measured ~3e-8
#: with SGD. Adam turns rounding noise in near-zero gradients into full-size steps
#: (m / sqrt(v) is about sign(g)), so its runs drift further apart: measured up to 1.2e-4
#: on the synthetic workload, depending on the thread count. For scale: a learning rate
#: 1% off moves the first-epoch loss by 7e-4 to 5e-3 on these workloads.
FIRST_EPOCH_RTOL = {"sgd": 1e-5, "adam": 5e-4}


@dataclass(frozen=True)
class Case:
    data: str  # "digits" or "synthetic"
    hidden: tuple[int, ...]
    batch_size: int
    optimizer: str  # "sgd" (momentum 0.9) or "adam"

    @property
    def id(self) -> str:
        sizes = "-".join(str(s) for s in self.sizes)
        opt = "sgd-m0.9" if self.optimizer == "sgd" else "adam"
        return f"{self.data}/{sizes}/b{self.batch_size}/{opt}/n{self.n_samples}/{np.dtype(DTYPE).name}"

    @property
    def n_samples(self) -> int:
        return len(_data(self.data)[0])

    @property
    def sizes(self) -> tuple[int, ...]:
        X, y = _data(self.data)
        return (X.shape[1], *self.hidden, int(y.max()) + 1)

    def gflop(self) -> float:
        """GFLOP in one epoch: forward x@W, backward x^T@delta, and delta@W^T past layer 0."""
        n = self.n_samples
        macs = [a * b for a, b in zip(self.sizes[:-1], self.sizes[1:])]
        return 2 * n * (2 * sum(macs) + sum(macs[1:])) / 1e9


CASES = [
    Case("digits", (256, 128), 64, "sgd"),
    Case("digits", (256, 128), 64, "adam"),
    Case("synthetic", (512, 256), 128, "sgd"),
    Case("synthetic", (512, 256), 128, "adam"),
]
IMPLS = ["fastbp", "numpy"]


@cache
def _data(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Training rows (float32, C order) and integer labels."""
    if name == "digits":
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        perm = np.random.default_rng(0).permutation(len(X))
        train = perm[: int(0.8 * len(X))]  # 1437 rows, the training part of an 80/20 split
        X, y = X[train], y[train]
        std = X.std(axis=0)
        X = (X - X.mean(axis=0)) / np.where(std > 0, std, 1.0)
        return np.ascontiguousarray(X, dtype=DTYPE), y.astype(np.int64)
    # synthetic: 10,000 MNIST-shaped rows; the labels come from a random linear teacher,
    # so the task is learnable and the loss falls from the first epoch
    rng = np.random.default_rng(0)
    X = rng.standard_normal((10_000, 784), dtype=DTYPE)
    y = (X @ rng.standard_normal((784, 10), dtype=DTYPE)).argmax(axis=1)
    return X, y.astype(np.int64)


def _optimizer(case: Case) -> tuple[fb.Optimizer, dict]:
    """fastbp's optimizer and the baseline's arguments for the same update rule."""
    if case.optimizer == "sgd":
        return fb.SGD(lr=0.01, momentum=0.9), {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9}
    return fb.Adam(lr=1e-3), {"optimizer": "adam", "lr": 1e-3}


def _fastbp_model(case: Case) -> fb.Sequential:
    layers = [fb.Dense(units, activation="relu") for units in case.hidden] + [fb.Dense(case.sizes[-1])]
    return fb.Sequential(layers, loss="cross_entropy", optimizer=_optimizer(case)[0], seed=0, dtype=DTYPE)


@cache
def _initial_weights(case: Case) -> tuple[np.ndarray, ...]:
    model = _fastbp_model(case)
    model.build(case.sizes[0])
    return tuple(model.get_weights())


def _trainer(case: Case, impl: str):
    """A fresh model at the case's initial weights, and a callable running one epoch."""
    X, y = _data(case.data)
    weights = list(_initial_weights(case))
    if impl == "fastbp":
        model = _fastbp_model(case)
        model.set_weights(weights)

        def epoch() -> float:
            return model.fit(X, y, epochs=1, batch_size=case.batch_size, shuffle=False).history["loss"][0]

        return epoch
    acts = ["relu"] * len(case.hidden) + ["identity"]
    mlp = NumpyMLP(weights, acts, "cross_entropy", **_optimizer(case)[1])
    order = np.arange(len(X))

    def epoch() -> float:
        return mlp.train_epoch(X, y, case.batch_size, order)

    return epoch


_first_epoch: dict[tuple[Case, str], float] = {}


def _first_epoch_loss(case: Case, impl: str) -> float:
    """``impl``'s first-epoch mean loss from the case's initial weights (computed once)."""
    if (case, impl) not in _first_epoch:
        _first_epoch[(case, impl)] = _trainer(case, impl)()
    return _first_epoch[(case, impl)]


def _blas_threads() -> dict[str, int]:
    """Thread count of each BLAS, keyed by the package that ships it (numpy.libs, scipy.libs)."""
    pools = [p for p in threadpool_info() if p["user_api"] == "blas"]
    return {os.path.basename(os.path.dirname(p["filepath"])): p["num_threads"] for p in pools}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_epoch(benchmark, epoch_results, case: Case, impl: str) -> None:
    epoch = _trainer(case, impl)
    # warm-up: compiles fastbp's kernels for exactly these dtypes (float32 X and weights,
    # int64 labels) and sizes the buffers; pytest-benchmark does not warm up on CPython
    first = epoch()
    _first_epoch.setdefault((case, impl), first)
    # NumPy's OpenBLAS workers keep spinning for about 0.1 s after a call, and would take
    # a core from fastbp's threads if timing started right after the previous NumPy test
    # (measured: a 9.7 ms digits epoch took 21 ms right after one NumPy matmul)
    time.sleep(0.3)

    benchmark.group = case.id
    last = benchmark(epoch)

    # the answer: same first epoch as the other implementation, then training went on
    other = _first_epoch_loss(case, "numpy" if impl == "fastbp" else "fastbp")
    assert math.isfinite(first) and math.isfinite(last)
    assert first == pytest.approx(other, rel=FIRST_EPOCH_RTOL[case.optimizer]), (first, other)
    assert last < first

    n = case.n_samples
    benchmark.extra_info.update(
        impl=impl,
        dtype=np.dtype(DTYPE).name,
        n_samples=n,
        batch_size=case.batch_size,
        layers="-".join(map(str, case.sizes)),
        first_epoch_loss=first,
        last_epoch_loss=last,
        numba_threads=fb.get_num_threads() if impl == "fastbp" else None,
        threading_layer=numba.threading_layer() if impl == "fastbp" else None,
        blas_threads=_blas_threads(),
    )
    if benchmark.stats:  # None or empty under --benchmark-disable
        median = benchmark.stats.stats.median
        benchmark.extra_info.update(samples_per_s=n / median, gflop_per_s=case.gflop() / median)
        epoch_results.setdefault(case.id, {})[impl] = (median, n / median)
