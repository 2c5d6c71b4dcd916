"""Sparse text-like input: fastbp.sklearn's MLPClassifier against scikit-learn's, same settings.

The data imitate a TF-IDF matrix: 20,000 rows x 50,000 columns at 0.1 % density (50 terms
a row, drawn with Zipf-like column frequencies), log-scaled counts times IDF, rows scaled
to unit norm; 5 classes, each with a topic of 200 columns that a fifth of its rows' terms
come from, 5 % of the labels flipped; 25 % of the rows held out. Dense, the matrix would
take 7.5 GiB in float64 (3.7 GiB in float32): both libraries train on it sparse. Each
implementation runs in a fresh process per round (``--worker``), which reports its fit
seconds, held-out accuracy and peak memory above the process's size once the data are
built (``ru_maxrss``)::

    python benchmarks/measure_sparse.py                      # 3 rounds, 5 epochs
    python benchmarks/measure_sparse.py --rows 2000 --cols 5000 --epochs 1 --rounds 1   # smoke

Both use ``hidden_layer_sizes=(100,)``, adam, ``batch_size=200``, ``max_iter=epochs`` with
no early stop (``tol=0``); fastbp in its default float32, scikit-learn in float64 (its
only dtype for sparse input with a float64 matrix). Medians over rounds are printed; run it
with ``OPENBLAS_CORETYPE``/``OPENBLAS_L2_SIZE`` unset where a machine sets them.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np

IMPLS = ("fastbp", "sklearn")


def make_data(rows: int, cols: int, density: float, seed: int = 0):
    """(X_train, X_test, y_train, y_test): a TF-IDF-like CSR matrix and 5-class labels."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    per_row = max(2, int(round(density * cols)))
    p = 1.0 / (np.arange(cols) + 10.0) ** 1.1
    p /= p.sum()
    y = rng.integers(0, 5, rows)
    # a fifth of each row's terms from its class's topic (200 columns), the rest background
    topics = np.stack([rng.choice(cols, 200, replace=False) for _ in range(5)])
    n_topic = max(1, per_row // 5)
    terms = np.concatenate([topics[y[:, None], rng.integers(0, 200, (rows, n_topic))],
                            rng.choice(cols, size=(rows, per_row - n_topic), p=p)], axis=1)  # fmt: skip
    counts = sp.csr_matrix((np.ones(rows * per_row), terms.ravel(), np.arange(0, rows * per_row + 1, per_row)),
                           shape=(rows, cols))  # fmt: skip
    counts.sum_duplicates()  # a term drawn twice counts 2
    df = np.bincount(counts.indices, minlength=cols)
    idf = np.log((1 + rows) / (1 + df)) + 1
    X = counts.copy()
    X.data = np.log1p(X.data) * idf[X.indices]
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    X = (sp.diags(1 / np.maximum(norms, 1e-12)) @ X).tocsr()
    flip = rng.uniform(size=rows) < 0.05
    y[flip] = rng.integers(0, 5, flip.sum())
    n_train = rows * 3 // 4
    return X[:n_train], X[n_train:], y[:n_train], y[n_train:]


def worker(impl: str, rows: int, cols: int, density: float, epochs: int) -> dict:
    X_train, X_test, y_train, y_test = make_data(rows, cols, density)
    if impl == "fastbp":
        from fastbp.sklearn import MLPClassifier

        # compile (or load) the kernels before the clock, as a warmed-up service would
        MLPClassifier(hidden_layer_sizes=(100,), max_iter=1).fit(X_train[:50], y_train[:50])
    else:
        from sklearn.neural_network import MLPClassifier
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    est = MLPClassifier(hidden_layer_sizes=(100,), solver="adam", batch_size=200, max_iter=epochs, tol=0.0,
                        n_iter_no_change=10**6, random_state=0)  # fmt: skip
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X_train, y_train)
    seconds = time.perf_counter() - t0
    accuracy = float(est.score(X_test, y_test))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"impl": impl, "seconds": seconds, "accuracy": accuracy, "extra_mb": (peak - base) / 1024,
            "data_mb": (X_train.data.nbytes + X_train.indices.nbytes + X_train.indptr.nbytes) / 2**20}  # fmt: skip


def measure(rows: int, cols: int, density: float, epochs: int, rounds: int) -> dict[str, list[dict]]:
    """Each implementation once per round, each run in a fresh process."""
    results: dict[str, list[dict]] = {impl: [] for impl in IMPLS}
    for _ in range(rounds):
        for impl in IMPLS:
            cmd = [sys.executable, __file__, "--worker", impl, "--rows", str(rows), "--cols", str(cols),
                   "--density", str(density), "--epochs", str(epochs)]  # fmt: skip
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            results[impl].append(json.loads(out.strip().splitlines()[-1]))
    return results


def report(results: dict[str, list[dict]], rows: int, cols: int, density: float, epochs: int) -> str:
    med = {impl: {k: statistics.median(r[k] for r in runs) for k in ("seconds", "accuracy", "extra_mb")}
           for impl, runs in results.items()}  # fmt: skip
    dense_gb = rows * 3 // 4 * cols * 8 / 2**30
    lines = [
        f"sparse {rows} x {cols}, density {density:.3%}, {epochs} epochs (75 % train; dense float64 would be "
        f"{dense_gb:.1f} GB; CSR is {results['fastbp'][0]['data_mb']:.0f} MB), median of {len(results['fastbp'])}:",
        "| impl | fit s | held-out accuracy | peak memory above data (MB) |",
        "|---|---|---|---|",
    ]
    for impl in IMPLS:
        m = med[impl]
        lines.append(f"| {impl} | {m['seconds']:.2f} | {m['accuracy']:.3f} | {m['extra_mb']:.0f} |")
    lines.append(f"fastbp / scikit-learn fit speed: {med['sklearn']['seconds'] / med['fastbp']['seconds']:.1f}x")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=20_000)
    p.add_argument("--cols", type=int, default=50_000)
    p.add_argument("--density", type=float, default=0.001)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--worker", choices=IMPLS, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.rows, args.cols, args.density, args.epochs)))
        return
    results = measure(args.rows, args.cols, args.density, args.epochs, args.rounds)
    print(report(results, args.rows, args.cols, args.density, args.epochs))


if __name__ == "__main__":
    main()
