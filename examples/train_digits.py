"""Classify handwritten digits with a small MLP trained by fastbp.

The data is scikit-learn's bundled ``digits`` set (1,797 8x8 images, 10 classes; nothing
is downloaded). It is split 80/20 with a fixed seed, standardised with the training
set's statistics, and a 64-256-128-10 ReLU network is trained with Adam on the
cross-entropy loss. The script prints the training loss curve, the training time and the
held-out accuracy (about 97-98%).

Run it with ``python examples/train_digits.py``. The first run in a fresh environment
also compiles the kernels its network uses (about 3-5 s on 2 cores); later runs load them from Numba's
cache.
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import fastbp as fb

SEED = 0


def main() -> None:
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=SEED, stratify=y)

    # standardise with the training set's statistics; a few border pixels are always 0
    mean = X_train.mean(axis=0)
    std = X_train.std(axis=0)
    std[std == 0] = 1.0
    X_train = ((X_train - mean) / std).astype(np.float32)
    X_test = ((X_test - mean) / std).astype(np.float32)

    def make_model() -> fb.Sequential:
        return fb.Sequential(
            [fb.Dense(256, activation="relu"), fb.Dense(128, activation="relu"), fb.Dense(10)],
            loss="cross_entropy",
            optimizer=fb.Adam(lr=1e-3),
            seed=SEED,
        )

    print(f"train {X_train.shape[0]} rows, test {X_test.shape[0]} rows, {X_train.shape[1]} features")

    # fastbp compiles its kernels at the first fit (or loads them from Numba's cache):
    # one epoch of a throwaway model on a few rows does it, so the timing below is training
    start = time.perf_counter()
    make_model().fit(X_train[:64], y_train[:64], epochs=1, batch_size=32, verbose=0)
    print(f"kernels compiled or loaded from the cache in {time.perf_counter() - start:.2f} s")

    model = make_model()
    start = time.perf_counter()
    history = model.fit(X_train, y_train, epochs=30, batch_size=32, verbose=0)
    seconds = time.perf_counter() - start

    print(model)
    losses = history.history["loss"]
    for epoch in (0, 4, 9, 19, 29):
        print(f"  epoch {epoch + 1:2d}: training loss {losses[epoch]:.4f}")
    rate = len(losses) * X_train.shape[0] / seconds
    print(f"training time: {seconds:.2f} s for {len(losses)} epochs ({rate:,.0f} samples/s)")

    accuracy = np.mean(model.predict(X_test).argmax(axis=1) == y_test)
    print(f"held-out loss {model.evaluate(X_test, y_test):.4f}, accuracy {accuracy:.2%}")


if __name__ == "__main__":
    main()
