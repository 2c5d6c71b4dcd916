"""What ``Sequential.fit`` needs besides the kernels: argument checks for sample and class
weights and validation data, the per-epoch logs, and the progress display."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping

import numpy as np

from ._validation import check_float
from .errors import TrainingDivergedError as TrainingDivergedError  # re-exported


def class_weight_rows(class_weight: object, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-row weights ``class_weight[labels[i]]`` (classes not listed weigh 1)."""
    if not isinstance(class_weight, Mapping):
        raise TypeError(f"class_weight must be a dict {{class: weight}}, got {type(class_weight).__name__}")
    table = np.ones(n_classes)
    for key, value in class_weight.items():
        if isinstance(key, bool) or not isinstance(key, int | np.integer) or not 0 <= key < n_classes:
            raise ValueError(f"class_weight keys must be class indices in 0..{n_classes - 1}, got {key!r}")
        table[key] = check_float(value, f"class_weight[{key}]")
    return table[labels]


def split_validation(n: int, validation_split: object) -> int:
    """Rows kept for training when the last ``validation_split`` of them validate (Keras)."""
    frac = check_float(validation_split, "validation_split", 0.0, 1.0, high_open=True)
    if frac == 0:
        return n
    n_train = int(n * (1.0 - frac))
    if n_train < 1 or n_train >= n:
        raise ValueError(
            f"validation_split={validation_split} of {n} rows leaves {n_train} for training and "
            f"{n - n_train} for validation; both need at least 1"
        )
    return n_train


def format_logs(logs: Mapping[str, float]) -> str:
    return " - ".join(f"{k}: {v:.4g}" for k, v in logs.items())


class Progress:
    """The per-epoch display of ``fit``.

    ``verbose=1``: a live tqdm bar per epoch (batches done, running loss, samples/s, ETA),
    refreshed between compiled segments of the epoch (about 5 times a second), so it costs
    nothing measurable. ``verbose=2``: one line per epoch. ``verbose=0``: silent.
    """

    def __init__(self, verbose: int, epoch: int, epochs: int, n_batches: int, batch_size: int, n_rows: int) -> None:
        self.verbose = verbose
        self.n_rows = n_rows
        self.batch_size = batch_size
        self.start = time.perf_counter()
        self.bar = None
        self.label = f"epoch {epoch + 1}/{epochs}"
        if verbose == 1:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=n_batches, desc=self.label, unit="batch", leave=True, file=sys.stderr,
                            dynamic_ncols=True, mininterval=0.1)  # fmt: skip

    def update(self, batches_done: int, loss: float) -> None:
        if self.bar is None:
            return
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        rows = min(batches_done * self.batch_size, self.n_rows)
        self.bar.set_postfix_str(f"loss: {loss:.4g}, {rows / elapsed:,.0f} samples/s", refresh=False)
        self.bar.update(batches_done - self.bar.n)

    def close(self, logs: Mapping[str, float] | None) -> None:
        if self.bar is not None:
            if logs is not None:
                self.bar.set_postfix_str(format_logs(logs), refresh=False)
            self.bar.close()
        elif self.verbose >= 2 and logs is not None:
            print(f"{self.label} - {time.perf_counter() - self.start:.2f}s - {format_logs(logs)}", flush=True)
