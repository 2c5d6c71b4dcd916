"""Metrics recorded per epoch in ``History`` (``Sequential(..., metrics=[...])``).

Each metric compares the network's output after the loss's link (what ``predict``
returns) with the targets: ``accuracy`` is the fraction of correct argmax labels
(cross-entropy) or of outputs on the right side of 0.5 (binary cross-entropy, per
element); ``mae``/``mse`` are mean absolute / squared errors per element (against one-hot
labels for cross-entropy). With sample weights, rows are weighted as in the loss.

On training data they are accumulated inside the compiled epoch (``losses.metric_sums_``),
on the batches as trained (so with dropout active, as in Keras); on validation data they
are computed here, in NumPy, from ``predict``'s output.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .kernels.losses import BINARY_CROSS_ENTROPY, CROSS_ENTROPY, LOSSES


def _mean(values: np.ndarray, sw: np.ndarray | None) -> float:
    """Mean over rows (weighted by ``sw``) of the per-row means of ``values``."""
    per_row = values.reshape(values.shape[0], -1).mean(axis=1)
    return float(np.average(per_row, weights=sw))


def _accuracy(pred: np.ndarray, yi: np.ndarray, yf: np.ndarray, loss: int, sw: np.ndarray | None = None) -> float:
    if loss == CROSS_ENTROPY:
        return _mean(pred.argmax(axis=1) == yi, sw)
    # binary / multi-label: every output thresholded at 0.5 against 0/1 targets
    return _mean((pred > 0.5) == (yf > 0.5), sw)


def _mae(pred: np.ndarray, yi: np.ndarray, yf: np.ndarray, loss: int, sw: np.ndarray | None = None) -> float:
    return _mean(np.abs(pred - _dense_targets(pred, yi, yf, loss)), sw)


def _mse(pred: np.ndarray, yi: np.ndarray, yf: np.ndarray, loss: int, sw: np.ndarray | None = None) -> float:
    return _mean((pred - _dense_targets(pred, yi, yf, loss)) ** 2, sw)


def _dense_targets(pred: np.ndarray, yi: np.ndarray, yf: np.ndarray, loss: int) -> np.ndarray:
    if loss == CROSS_ENTROPY:  # one-hot, so mae/mse compare probabilities with it
        onehot = np.zeros_like(pred)
        onehot[np.arange(yi.shape[0]), yi] = 1
        return onehot
    return yf


#: Public name -> function(pred, yi, yf, loss code, sample weights or None) -> float.
METRICS: dict[str, Callable[..., float]] = {
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
