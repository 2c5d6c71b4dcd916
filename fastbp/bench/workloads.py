"""The benchmark workloads: what ``fastbp bench`` and ``pytest benchmarks/`` time.

Each workload is float32 synthetic data with a learnable target and a fixed seed, an
architecture, a loss, a batch size and an optimizer. :func:`make_data` builds the data,
:func:`make_fastbp` a seeded fastbp model and :func:`make_numpy` the plain-NumPy baseline
starting from that model's initial weights, so both do the same arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import fastbp as fb

from .numpy_mlp import NumpyMLP


@dataclass(frozen=True)
class Workload:
    id: str
    sizes: tuple[int, ...]  # n_features, then each layer's units
    activation: str  # hidden layers; the last layer is linear
    loss: str  # "cross_entropy" or "mse"
    batch_size: int
    optimizer: str  # "sgd" (momentum 0.9, lr 0.01) or "adam" (lr 1e-3)
    rows: int
    train: bool = True  # False: forward only (predict)

    def flop_per_sample(self) -> float:
        """Multiply-adds x 2 per sample: forward x@W; training adds x^T@delta, and delta@W^T
        for every layer past the first."""
        macs = [a * b for a, b in zip(self.sizes[:-1], self.sizes[1:])]
        if not self.train:
            return 2.0 * sum(macs)
        return 2.0 * (2 * sum(macs) + sum(macs[1:]))


WORKLOADS: dict[str, Workload] = {
    w.id: w
    for w in [
        Workload("mnist_b128", (784, 512, 256, 10), "relu", "cross_entropy", 128, "sgd", 60_000),
        Workload("mnist_b32", (784, 512, 256, 10), "relu", "cross_entropy", 32, "sgd", 60_000),
        Workload("mnist_adam_b128", (784, 512, 256, 10), "relu", "cross_entropy", 128, "adam", 60_000),
        Workload("tabular_small", (64, 128, 64, 10), "relu", "cross_entropy", 64, "sgd", 60_000),
        Workload("regression_deep", (16, 64, 64, 64, 64, 1), "tanh", "mse", 256, "adam", 100_000),
        Workload("wide_b1024", (784, 1024, 1024, 10), "relu", "cross_entropy", 1024, "sgd", 60_000),
        Workload("infer_mnist", (784, 512, 256, 10), "relu", "cross_entropy", 4096, "sgd", 100_000, train=False),
    ]
}


def make_data(w: Workload, rows: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(X, y): float32 standard-normal features and a learnable target.

    Classification: the class is the argmax of a fixed random linear map of the features
    (linearly separable, so the loss must fall). Regression: a smooth non-linear function of
    two random projections.
    """
    rows = w.rows if rows is None else rows
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, w.sizes[0]), dtype=np.float32)
    proj = rng.standard_normal((w.sizes[0], max(2, w.sizes[-1])), dtype=np.float32) / np.sqrt(w.sizes[0])
    t = X @ proj
    if w.loss == "cross_entropy":
        return X, t.argmax(axis=1).astype(np.int64)
    y = (np.sin(2 * t[:, 0]) + 0.5 * t[:, 1] ** 2).astype(np.float32).reshape(-1, 1)
    return X, y


def _optimizer(w: Workload) -> fb.Optimizer:
    return fb.SGD(lr=0.01, momentum=0.9) if w.optimizer == "sgd" else fb.Adam(lr=1e-3)


def make_fastbp(w: Workload, seed: int = 0) -> fb.Sequential:
    """A seeded, built fastbp model for the workload."""
    layers = [fb.Dense(u, activation=w.activation) for u in w.sizes[1:-1]] + [fb.Dense(w.sizes[-1])]
    model = fb.Sequential(layers, loss=w.loss, optimizer=_optimizer(w), seed=seed, dtype="float32")
    model.build(w.sizes[0])
    return model


def make_numpy(w: Workload, weights: list[np.ndarray]) -> NumpyMLP:
    """The NumPy baseline for the workload, starting from ``weights``."""
    acts = [w.activation] * (len(w.sizes) - 2) + ["identity"]
    if w.optimizer == "sgd":
        return NumpyMLP(weights, acts, w.loss, "sgd", lr=0.01, momentum=0.9)
    return NumpyMLP(weights, acts, w.loss, "adam", lr=1e-3)
