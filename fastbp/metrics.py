"""Metrics recorded per epoch in ``History`` (``Sequential(..., metrics=[...])``).

Each metric is computed from the network's output after the loss's link (what
``predict`` returns) and the validated targets, in NumPy, once per epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .kernels.losses import BINARY_CROSS_ENTROPY, CROSS_ENTROPY, LOSSES


def _accuracy(pred: np.ndarray, yi: np.ndarray, yf: np.ndarray, loss: int) -> float:
    if loss == CROSS_ENTROPY:
        return float(np.mean(pred.argmax(axis=1) == yi))
    # binary / multi-label: every output thresholded at 0.5 against 0/1 targets
    return float(np.mean((pred > 0.5) == (yf > 0.5)))


def _mae(pred: np.ndarray, yi: np.ndarray, yf: np.ndarray, loss: int) -> float:
    return float(np.mean(np.abs(pred - _dense_targets(pred, yi, yf, loss))))


def _mse(pred: np.ndarray, yi: np.ndarray, yf: np.ndarray, loss: int) -> float:
    return float(np.mean((pred - _dense_targets(pred, yi, yf, loss)) ** 2))


def _dense_targets(pred: np.ndarray, yi: np.ndarray, yf: np.ndarray, loss: int) -> np.ndarray:
    if loss == CROSS_ENTROPY:  # one-hot, so mae/mse compare probabilities with it
        onehot = np.zeros_like(pred)
        onehot[np.arange(yi.shape[0]), yi] = 1
        return onehot
    return yf


#: Public name -> function(pred, yi, yf, loss code) -> float.
METRICS: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray, int], float]] = {
    "accuracy": _accuracy,
    "mae": _mae,
    "mse": _mse,
}


def check_metrics(metrics: object, loss: str) -> list[str]:
    """Validate ``Sequential(metrics=...)``: a list of known names, accuracy only for
    classification losses."""
    if metrics is None:
        return []
    if isinstance(metrics, str) or not isinstance(metrics, Sequence):
        raise TypeError(f"metrics must be a list of names, got {type(metrics).__name__}: {metrics!r}")
    out = []
    for name in metrics:
        if name == "acc":
            name = "accuracy"
        if not isinstance(name, str) or name not in METRICS:
            raise ValueError(f"unknown metric {name!r}; expected one of {sorted(METRICS)}")
        if name == "accuracy" and LOSSES.get(loss) not in (CROSS_ENTROPY, BINARY_CROSS_ENTROPY):
            raise ValueError(f"metric 'accuracy' needs a classification loss, not {loss!r}")
        if name not in out:
            out.append(name)
    return out
