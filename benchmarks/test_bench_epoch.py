"""End-to-end benchmarks: the 7 official workloads, fastbp beside the NumPy baseline.

The workloads are ``fastbp.bench.workloads.WORKLOADS``, the ones ``fastbp bench`` times at
full size. Here each runs on fewer rows (:data:`BENCH_ROWS`) so that the whole
``pytest benchmarks/`` stays within a few minutes on 2 cores; the per-sample work, the
batch size and the optimizer are the official ones. One group per workload, named by its
id, with a ``fastbp`` and a ``numpy`` row:

- training workloads: each timed call is one more epoch of ``Sequential.fit`` (which also
  validates its input, as a user's call does) beside one of ``NumpyMLP.train_epoch``, both
  from the same initial weights (``make_fastbp``'s seeded model) and visiting the rows in
  the same order (``shuffle=False``), so they do the same arithmetic;
- ``infer_mnist``: ``Sequential.predict`` (class probabilities) beside the baseline's
  ``forward`` (logits: NumPy is spared the softmax, as in ``fastbp bench``), each over
  all the rows in one call.

Every benchmark also checks its answer, so a fast wrong result fails (and the smoke run,
``--benchmark-disable``, doubles as a test): from the same weights, the mean loss of the
first :data:`HEAD_BATCHES` batches matches the other implementation's tightly
(:data:`HEAD_RTOL`) and the whole first epoch's loosely (:data:`FIRST_EPOCH_RTOL`), and the
last timed epoch's loss is finite and below the first; ``predict``'s probabilities equal
the softmax of the baseline's logits (:data:`PREDICT_TOL`).
``test_checks_detect_a_one_percent_error`` shows that the two loss checks can fail: a
learning rate 1 % high moves each loss beyond its tolerance.

Why two tolerances: float32 results depend on how the BLAS kernel (chosen by OpenBLAS per
CPU) blocks each GEMM, and training amplifies those one-ulp differences step by step. After
a few steps they are still at rounding level; over an epoch they grow by orders of
magnitude. ``python benchmarks/measure_blas_spread.py`` measures both, over OpenBLAS's
SkylakeX, Haswell and Sandybridge kernels, 1 and 2 threads, fastbp and NumPy, against the
shift that a 1 % error causes; the figures beside the tolerances come from it (2-core AMD
EPYC, Zen 4).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache

import numpy as np
import pytest
from numpy.testing import assert_allclose

import fastbp as fb
from benchmarks._support import IMPLS, OTHER, record, settle, thread_info
from fastbp.bench.workloads import WORKLOADS, Workload, make_data, make_fastbp, make_numpy

#: Rows timed per workload (the official count is ``WORKLOADS[id].rows``): the small
#: networks at full size, the 784-input ones on fewer rows, so that each timed call takes
#: about 0.2 to 0.7 s on 2 idle cores and the whole run a few minutes.
BENCH_ROWS = {
    "mnist_b128": 8_000,
    "mnist_b32": 8_000,
    "mnist_adam_b128": 8_000,
    "tabular_small": 60_000,  # full
    "regression_deep": 100_000,  # full
    "wide_b1024": 4_096,
    "infer_mnist": 32_768,
}
#: Batches in the short check: three updates, few enough that rounding has not grown.
HEAD_BATCHES = 4
#: fastbp's and NumPy's mean losses over the first :data:`HEAD_BATCHES` batches agree to this
#: (float32, relative). Largest difference between any two runs over three BLAS kernels,
#: 1-2 threads and both implementations: 1.1e-7 with SGD, 1.6e-6 with Adam (which turns
#: rounding noise in near-zero gradients into full-size steps, m / sqrt(v) being about
#: sign(g)). The learning rate 1 % high moves these losses by 1.3e-5 (mnist_b32, whose four
#: batches are only 128 rows) to 6.5e-4 with SGD and 2.8e-4 with Adam: each tolerance sits
#: about 10x above the noise and 10x below that shift.
HEAD_RTOL = {"sgd": 1e-6, "adam": 2e-5}
#: The whole first epoch's mean losses agree to this (float32, relative): a drift check.
#: Largest difference measured: 1.7e-5 with SGD and 4.2e-5 with Adam, both mnist at batch 128
#: (NumPy under OpenBLAS 0.3.31's SkylakeX kernel against everything else; 63 steps amplify
#: a first-step difference of 3e-8 about 500 times). A learning rate 1 % high moves them by
#: at least 3.7e-4 with SGD and 1.1e-3 with Adam: about 12x above the noise, 2-3x below.
FIRST_EPOCH_RTOL = {"sgd": 2e-4, "adam": 5e-4}
#: ``predict``'s probabilities vs the softmax of the baseline's logits (float32): rounding of
#: two GEMM chains summed in different orders (measured: 5.7e-7 absolute, 2.8e-6 relative).
PREDICT_TOL = {"rtol": 1e-5, "atol": 2e-6}


def _rows(w: Workload) -> int:
    return min(BENCH_ROWS[w.id], w.rows)


@cache
def _data(wid: str) -> tuple[np.ndarray, np.ndarray]:
    w = WORKLOADS[wid]
    return make_data(w, _rows(w))


@cache
def _initial_weights(wid: str) -> tuple[np.ndarray, ...]:
    return tuple(make_fastbp(WORKLOADS[wid]).get_weights())


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _runner(w: Workload, impl: str, rows: int | None = None, lr_scale: float = 1.0) -> Callable:
    """A fresh model at the workload's initial weights, and the call that is timed: one
    epoch (returns its mean loss) or, for inference, one pass over the rows (returns the
    output). ``rows``: only the first rows; ``lr_scale``: fastbp's learning rate scaled (a
    deliberate error, for the test that the checks can fail)."""
    X, y = _data(w.id)
    X, y = X[:rows], y[:rows]
    weights = list(_initial_weights(w.id))
    if impl == "fastbp":
        model = make_fastbp(w)
        model.set_weights(weights)
        model.optimizer.lr *= lr_scale
        if not w.train:
            return lambda: model.predict(X)
        return lambda: model.fit(X, y, epochs=1, batch_size=w.batch_size, shuffle=False, verbose=0).history["loss"][0]
    mlp = make_numpy(w, weights)
    if not w.train:
        return lambda: mlp.forward(X)  # logits; the softmax is left out, as in `fastbp bench`
    order = np.arange(len(X))
    return lambda: mlp.train_epoch(X, y, w.batch_size, order)


# (workload id, impl) -> the runner after its first call, and that first result. The first
# call compiles fastbp's kernels for exactly the timed dtypes (float32 X and weights, int64
# labels) and sizes the buffers; pytest-benchmark does not warm up on CPython. The fastbp
# test needs NumPy's first epoch for its check: the NumPy test then times that same runner.
_warm: dict[tuple[str, str], Callable] = {}
_first: dict[tuple[str, str], object] = {}


def _first_result(w: Workload, impl: str) -> object:
    """``impl``'s first epoch loss (or inference output) from the initial weights; runs it once."""
    key = (w.id, impl)
    if key not in _first:
        run = _runner(w, impl)
        _first[key] = run()
        _warm[key] = run
    return _first[key]


@cache
def _head_loss(wid: str, impl: str) -> float:
    """``impl``'s mean loss over the first :data:`HEAD_BATCHES` batches from the initial weights."""
    w = WORKLOADS[wid]
    return _runner(w, impl, rows=HEAD_BATCHES * w.batch_size)()


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("wid", list(WORKLOADS))
def test_workload(benchmark, summary, wid: str, impl: str) -> None:
    w = WORKLOADS[wid]
    first = _first_result(w, impl)  # warm-up (compiles), unless the other test ran it already
    run = _warm.pop((wid, impl), None)
    if run is None:  # timed before in this session (a repeated test): start from the weights again
        run = _runner(w, impl)
        first = run()
    settle(benchmark)

    benchmark.group = wid
    last = benchmark(run)

    # the answer
    other = _first_result(w, OTHER[impl])
    if w.train:
        # the same first steps and first epoch as the other implementation from the same
        # weights, then it learned
        assert math.isfinite(first) and math.isfinite(last)
        head, other_head = _head_loss(wid, impl), _head_loss(wid, OTHER[impl])
        assert head == pytest.approx(other_head, rel=HEAD_RTOL[w.optimizer]), (head, other_head)
        assert first == pytest.approx(other, rel=FIRST_EPOCH_RTOL[w.optimizer]), (first, other)
        assert last < first
    else:
        # fastbp's probabilities are the softmax of the baseline's logits, and every call agrees
        probs, logits = (last, other) if impl == "fastbp" else (other, last)
        assert probs.dtype == logits.dtype == np.float32
        assert_allclose(probs, _softmax(logits), **PREDICT_TOL)
        assert_allclose(last, first, **PREDICT_TOL)

    rows = _rows(w)
    benchmark.extra_info.update(
        impl=impl,
        workload=wid,
        rows=rows,
        official_rows=w.rows,
        sizes="-".join(map(str, w.sizes)),
        activation=w.activation,
        loss=w.loss,
        batch_size=w.batch_size,
        optimizer=w.optimizer if w.train else None,
        dtype="float32",
        **thread_info(impl),
    )
    if w.train:
        benchmark.extra_info.update(first_epoch_loss=first, last_epoch_loss=last)
    record(benchmark, summary, impl, rows, "samples", gflop=w.flop_per_sample() * rows / 1e9)


@pytest.mark.parametrize("wid", [k for k, w in WORKLOADS.items() if w.train])
def test_checks_detect_a_one_percent_error(wid: str) -> None:
    """The answer checks above can fail: fastbp with its learning rate 1 % high (a stand-in
    for a gradient 1 % off everywhere; a wrong derivative moves the losses far more) misses
    both the short check and the first-epoch check against correct fastbp."""
    w = WORKLOADS[wid]
    head = _runner(w, "fastbp", rows=HEAD_BATCHES * w.batch_size, lr_scale=1.01)()
    assert head != pytest.approx(_head_loss(wid, "fastbp"), rel=HEAD_RTOL[w.optimizer])
    epoch = _runner(w, "fastbp", lr_scale=1.01)()
    assert epoch != pytest.approx(_first_result(w, "fastbp"), rel=FIRST_EPOCH_RTOL[w.optimizer])


#: The regularised twin of ``mnist_b128`` (issue: "dropout and weight decay on versus off"):
#: Dropout(0.2) after each hidden layer and weight decay 5e-4, everything else equal.
REGULARISED = {"dropout": 0.2, "weight_decay": 5e-4}


def _regularised_fastbp(w: Workload) -> fb.Sequential:
    layers: list = []
    for units in w.sizes[1:-1]:
        layers += [fb.Dense(units, activation=w.activation), fb.Dropout(REGULARISED["dropout"])]
    layers.append(fb.Dense(w.sizes[-1]))
    model = fb.Sequential(layers, loss=w.loss, optimizer=fb.SGD(lr=0.01, momentum=0.9,
                          weight_decay=REGULARISED["weight_decay"]), seed=0)  # fmt: skip
    model.set_weights(list(_initial_weights(w.id)))
    return model


@pytest.mark.parametrize("impl", IMPLS)
def test_mnist_b128_dropout_weight_decay(benchmark, summary, impl: str) -> None:
    """One epoch of ``mnist_b128`` with Dropout(0.2) and weight decay, beside the plain
    NumPy epoch (the baseline has neither): with ``mnist_b128``'s own ratio from the same run,
    the two ratios give the cost of regularisation in the compiled step (on / off)."""
    w = WORKLOADS["mnist_b128"]
    X, y = _data(w.id)
    if impl == "fastbp":
        model = _regularised_fastbp(w)
        run = lambda: model.fit(X, y, epochs=1, batch_size=w.batch_size, shuffle=False, verbose=0).history["loss"][0]  # noqa: E731
    else:
        run = _runner(w, impl)
    first = run()  # compile / warm up
    settle(benchmark)
    benchmark.group = "mnist_b128_dropout_wd"
    last = benchmark(run)
    assert math.isfinite(first) and math.isfinite(last) and last < first
    if impl == "fastbp":  # dropout is off in predict: the same net without it predicts the same
        plain = make_fastbp(w)
        plain.set_weights(model.get_weights())
        assert_allclose(model.predict(X[:256]), plain.predict(X[:256]), rtol=0, atol=0)
    benchmark.extra_info.update(impl=impl, workload=w.id, rows=_rows(w), **REGULARISED, **thread_info(impl))
    record(benchmark, summary, impl, _rows(w), "samples", gflop=w.flop_per_sample() * _rows(w) / 1e9)
