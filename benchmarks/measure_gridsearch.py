"""GridSearchCV over ``fastbp.sklearn.MLPClassifier`` with ``n_jobs`` workers: wall time.

A 4-candidate, 3-fold grid of 60 epochs on scikit-learn's digits: the nested parallelism
a user meets (loky worker processes, each training with fastbp's threads). fastbp follows
joblib's convention (each loky worker starts with ``NUMBA_NUM_THREADS`` at its share of the
cores), so two workers on two cores run one thread each instead of oversubscribing::

    python benchmarks/measure_gridsearch.py --n-jobs 1
    python benchmarks/measure_gridsearch.py --n-jobs 2

Run each in a fresh process (the loky workers and Numba's cache warm-up are part of what a
user waits for); time whole processes, or read the seconds printed, which leave out imports.
"""

from __future__ import annotations

import argparse
import time
import warnings

from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV

from fastbp.sklearn import MLPClassifier

GRID = {"hidden_layer_sizes": [(64,), (128,)], "alpha": [1e-4, 1e-3]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-jobs", type=int, default=1)
    args = p.parse_args()
    X, y = load_digits(return_X_y=True)
    search = GridSearchCV(MLPClassifier(max_iter=60, random_state=0), GRID, cv=3, n_jobs=args.n_jobs)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(X, y)
    print(f"n_jobs={args.n_jobs}: {time.perf_counter() - t0:.2f} s, best {search.best_params_} "
          f"score {search.best_score_:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
