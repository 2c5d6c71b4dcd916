"""How fastbp's threading model scales, and what it avoids.

    python benchmarks/measure_threads.py [--rows 20000] [--repeats 5]

Trains 784-512-256-10 relu, cross-entropy, SGD momentum 0.9, batch 128 (float32) and
prints the median epoch time and samples/s for:

- ``threads=1`` and ``threads=2`` (or more): fastbp's model, Numba owns the threads and
  SciPy's BLAS is held at one thread inside each call;
- ``threads=N, BLAS not pinned``: the same kernels with BLAS left at its default thread
  count, i.e. two thread pools on the same cores (the trap in DESIGN.md).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import fastbp as fb
from fastbp import _threads


def epoch_times(X, y, threads: int, repeats: int, pin_blas: bool = True) -> list[float]:
    fb.set_num_threads(threads)
    saved = _threads._blas_enter, _threads._blas_exit
    if not pin_blas:
        _threads._blas_enter = _threads._blas_exit = lambda: None
    try:
        model = fb.Sequential(
            [fb.Dense(512, activation="relu"), fb.Dense(256, activation="relu"), fb.Dense(10)],
            loss="cross_entropy", optimizer=fb.SGD(lr=0.01, momentum=0.9), seed=0,
        )  # fmt: skip
        model.fit(X[:1024], y[:1024], epochs=1, batch_size=128, verbose=0)  # compile / warm up
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model.fit(X, y, epochs=1, batch_size=128, verbose=0)
            times.append(time.perf_counter() - t0)
        return times
    finally:
        _threads._blas_enter, _threads._blas_exit = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.rows, 784)).astype(np.float32)
    y = (X[:, :10].argmax(axis=1)).astype(np.int64)
    max_threads = fb.get_num_threads()
    settings = [(1, True)] + [(n, True) for n in (2, 4, 8, 16) if n <= max_threads]
    settings.append((max_threads, False))
    base = None
    for threads, pin in settings:
        med = statistics.median(epoch_times(X, y, threads, args.repeats, pin))
        base = base or med
        label = f"threads={threads}" + ("" if pin else ", BLAS not pinned")
        print(
            f"{label:32s} epoch {med * 1e3:8.1f} ms  {args.rows / med:9.0f} samples/s  "
            f"speed-up vs 1 thread {base / med:5.2f}x"
        )
    fb.set_num_threads(max_threads)


if __name__ == "__main__":
    main()
