"""``fastbp.sklearn.MLPClassifier.fit`` beside scikit-learn's ``MLPClassifier.fit``, and a
one-row ``predict``/``predict_proba`` beside scikit-learn's (``test_one_row_prediction``).

The same estimator settings on both: digits (1797 x 64, standardised; 1347 training rows),
``hidden_layer_sizes=(256, 128)``, relu, Adam, ``batch_size="auto"`` (200), and a fixed
number of epochs (``tol=0``, ``n_iter_no_change=inf``: neither stops early). fastbp runs in
its default float32, scikit-learn in float64 (its dtype for float64 input). Each timed call
is one whole ``fit``, validation and initialisation included, as a user calls it.

Two groups, one per thread setting: ``all`` (fastbp's threads and NumPy's BLAS threads as
they are) and ``1`` (``fb.set_num_threads(1)`` and NumPy's BLAS held at one thread). On a
machine whose cores are busy with other work the ``1`` group is the fairer comparison: a
parallel region waits for every thread, so each batch pays for a time slice (see
``tests/test_sklearn.py``). The session ends with the ratio of the medians (and of the
fastest rounds), scikit-learn's time over fastbp's: the speed-up.

Each test also checks its answer: both held-out accuracies are high and within
:data:`ACCURACY_GAP` of each other (the initial weights are the same, the batch orders are
not). Under ``--benchmark-disable`` each fit runs :data:`SMOKE_EPOCHS` epochs once.

Without pytest, ``python benchmarks/test_bench_sklearn.py [--epochs N] [--repeats R]``
prints the same medians and ratios.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache

import numpy as np
import pytest
from sklearn import neural_network as sknn
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

import fastbp as fb
from fastbp.sklearn import MLPClassifier

#: Epochs per timed fit, and per fit under ``--benchmark-disable``.
EPOCHS = 50
SMOKE_EPOCHS = 3
#: Timed fits per row (scikit-learn's take seconds each).
ROUNDS = 3
#: Largest held-out accuracy difference between the two (fraction, not points).
ACCURACY_GAP = 0.02
SETTINGS = dict(hidden_layer_sizes=(256, 128), random_state=0, tol=0.0, n_iter_no_change=np.inf)
IMPLS = {"fastbp": MLPClassifier, "sklearn": sknn.MLPClassifier}
THREADS = ("all", "1")


@cache
def _digits() -> tuple[np.ndarray, ...]:
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0, stratify=y)
    scaler = StandardScaler().fit(X_train)
    return scaler.transform(X_train), scaler.transform(X_test), y_train, y_test


@contextmanager
def _threads(setting: str) -> Iterator[None]:
    """``"1"``: fastbp and NumPy's BLAS on one thread; ``"all"``: as they are."""
    if setting == "all":
        yield
        return
    previous = fb.get_num_threads()
    fb.set_num_threads(1)
    try:
        with threadpool_limits(1, user_api="blas"):
            yield
    finally:
        fb.set_num_threads(previous)


def _fitter(impl: str, epochs: int) -> Callable[[], object]:
    X_train, _, y_train, _ = _digits()

    def fit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return IMPLS[impl](max_iter=epochs, **SETTINGS).fit(X_train, y_train)

    return fit


def _ratio_lines(times: dict) -> list[str]:
    """'threads=...: sklearn/fastbp ...' for each thread setting with both medians."""
    lines = []
    for threads in THREADS:
        fast, slow = times.get((threads, "fastbp")), times.get((threads, "sklearn"))
        if fast and slow:
            t_fast, t_slow = statistics.median(fast), statistics.median(slow)
            lines.append(
                f"threads={threads:>3}: fastbp {t_fast:7.3f} s, sklearn {t_slow:7.3f} s -> fastbp "
                f"{t_slow / t_fast:5.1f}x faster (median), {min(slow) / min(fast):5.1f}x (fastest rounds)"
            )
    return lines


# ---------------------------------------------------------------------- pytest-benchmark
_times: dict[tuple[str, str], list[float]] = {}
_accuracy: dict[tuple[str, str], float] = {}


@pytest.fixture(scope="module")
def speedup_report(request: pytest.FixtureRequest) -> Iterator[dict]:
    """Collects each row's round times; prints the ratios when the module ends."""
    yield _times
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    lines = _ratio_lines(_times)
    if reporter is None or capture is None or not lines:
        return
    with capture.global_and_fixture_disabled():  # else the lines land in the captured output
        reporter.write_line("")
        reporter.write_line(f"fastbp.sklearn vs scikit-learn, MLPClassifier.fit on digits, {EPOCHS} epochs:")
        for line in lines:
            reporter.write_line("  " + line)


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("threads", THREADS)
def test_fit_digits(benchmark, speedup_report, threads: str, impl: str) -> None:
    epochs = SMOKE_EPOCHS if benchmark.disabled else EPOCHS
    fit = _fitter(impl, epochs)
    with _threads(threads):
        if impl == "fastbp":
            _fitter(impl, 1)()  # compiles the kernels (or loads them from the cache)
        if not benchmark.disabled:
            time.sleep(0.3)  # let NumPy's BLAS threads stop spinning (see benchmarks/_support.py)
        benchmark.group = f"sklearn_fit/digits-64-256-128-10/b200-adam/threads={threads}"
        est = benchmark.pedantic(fit, rounds=1 if benchmark.disabled else ROUNDS, iterations=1)

    # the answer
    _, X_test, _, y_test = _digits()
    assert est.n_iter_ == epochs and len(est.loss_curve_) == epochs
    assert np.isfinite(est.loss_curve_).all() and est.loss_curve_[-1] < est.loss_curve_[0]
    accuracy = est.score(X_test, y_test)
    assert accuracy > (0.9 if benchmark.disabled else 0.95)
    _accuracy[threads, impl] = accuracy
    other = _accuracy.get((threads, "sklearn" if impl == "fastbp" else "fastbp"))
    if other is not None:
        assert abs(accuracy - other) <= ACCURACY_GAP, (impl, accuracy, other)

    dtype = "float32" if impl == "fastbp" else "float64"
    benchmark.extra_info.update(
        impl=impl, threads=threads, epochs=epochs, rows=len(_digits()[2]), dtype=dtype, held_out_accuracy=accuracy
    )
    if benchmark.stats:
        speedup_report.setdefault((threads, impl), []).extend(benchmark.stats.stats.data)
        fast, slow = speedup_report.get((threads, "fastbp")), speedup_report.get((threads, "sklearn"))
        if fast and slow:
            benchmark.extra_info["fastbp_speedup_median"] = statistics.median(slow) / statistics.median(fast)


LBFGS = dict(hidden_layer_sizes=(64,), solver="lbfgs", random_state=0)
LBFGS_ITERS = 200


@pytest.mark.parametrize("impl", list(IMPLS))
def test_fit_lbfgs_digits(benchmark, impl: str) -> None:
    """``solver="lbfgs"`` on the digits' training rows, 64 hidden units, up to 200
    iterations (each one or more full-batch evaluations), fastbp in float32."""
    X_train, X_test, y_train, y_test = _digits()
    iters = 10 if benchmark.disabled else LBFGS_ITERS

    def fit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return IMPLS[impl](max_iter=iters, **LBFGS).fit(X_train, y_train)

    if impl == "fastbp":
        fit()  # compile / load the kernels
    benchmark.group = "sklearn_fit_lbfgs/digits-64-64-10"
    est = benchmark.pedantic(fit, rounds=1 if benchmark.disabled else ROUNDS, iterations=1)
    assert np.isfinite(est.loss_) and 0 < est.n_iter_ <= iters
    accuracy = est.score(X_test, y_test)
    assert accuracy > (0.8 if benchmark.disabled else 0.95)
    _accuracy["lbfgs", impl] = est.loss_
    other = _accuracy.get(("lbfgs", "sklearn" if impl == "fastbp" else "fastbp"))
    if other is not None and not benchmark.disabled:
        # both run to a tiny loss on these separable rows; equal to within a factor of 2
        assert 0.5 < est.loss_ / other < 2.0, (impl, est.loss_, other)
    benchmark.extra_info.update(impl=impl, n_iter=est.n_iter_, loss=est.loss_, held_out_accuracy=accuracy)


@cache
def _fitted(impl: str):
    X_train, _, y_train, _ = _digits()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return IMPLS[impl](max_iter=SMOKE_EPOCHS, **SETTINGS).fit(X_train, y_train)


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("method", ["predict_proba", "predict"])
def test_one_row_prediction(benchmark, method: str, impl: str) -> None:
    """One request of a scoring pipeline: a single float64 row, the estimator's whole call
    (validation, the forward pass, the class labels) as a user makes it."""
    est = _fitted(impl)
    _, X_test, _, y_test = _digits()
    row = X_test[3:4]
    call = getattr(est, method)
    benchmark.group = f"sklearn_{method}/one-row/digits-64-256-128-10"
    out = benchmark(call, row)
    # the answer: the same as the whole test set's row, in scikit-learn's output types
    full = getattr(est, method)(X_test)
    if method == "predict_proba":
        assert out.shape == (1, 10) and out.dtype == np.float64
        np.testing.assert_allclose(out.sum(), 1.0, rtol=1e-6)
        np.testing.assert_allclose(out[0], full[3], rtol=1e-5, atol=1e-7)
    else:
        assert out.shape == (1,) and out[0] == full[3]
    benchmark.extra_info.update(impl=impl, method=method)


# ---------------------------------------------------------------------- script
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--repeats", type=int, default=ROUNDS)
    parser.add_argument("--threads", choices=[*THREADS, "both"], default="both")
    args = parser.parse_args(argv)
    times: dict[tuple[str, str], list[float]] = {}
    for threads in THREADS if args.threads == "both" else (args.threads,):
        with _threads(threads):
            _fitter("fastbp", 1)()  # compile / load the kernels
            for impl in IMPLS:
                fit = _fitter(impl, args.epochs)
                for _ in range(args.repeats):
                    time.sleep(0.3)
                    t0 = time.perf_counter()
                    fit()
                    times.setdefault((threads, impl), []).append(time.perf_counter() - t0)
    print(f"MLPClassifier.fit on digits (1347 rows, 64-256-128-10, Adam, batch 200), {args.epochs} epochs, "
          f"median of {args.repeats}; fastbp {fb.get_num_threads()} threads by default")  # fmt: skip
    for line in _ratio_lines(times):
        print(line)


if __name__ == "__main__":
    main()
