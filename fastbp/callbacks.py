"""Callbacks: code run by ``Sequential.fit`` at epoch boundaries.

The protocol is small, a subset of Keras'. ``fit`` calls, on each callback in order:

* ``set_model(model)`` once, before training;
* ``on_train_begin(logs)``;
* ``on_epoch_begin(epoch, logs)`` and ``on_epoch_end(epoch, logs)`` around every epoch, where
  ``logs`` holds the epoch's values (``loss``, each metric, ``val_loss``, ``val_`` + each
  metric, ``lr``);
* ``on_train_end(logs)``, also when training stops early (but not when it raises).

Setting ``model.stop_training = True`` ends training after the current epoch. Epochs run
inside compiled code, so callbacks cost nothing per batch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from ._validation import check_float, check_int


class Callback:
    """Base class: override the hooks you need; ``self.model`` is set by ``fit``."""

    model: Any = None

    def set_model(self, model: Any) -> None:
        self.model = model

    def on_train_begin(self, logs: dict | None = None) -> None:
        pass

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        pass

    def on_train_end(self, logs: dict | None = None) -> None:
        pass


class _Monitor:
    """Tracks the best value of ``logs[monitor]`` ("min" or "max", "auto" from the name)."""

    def __init__(self, monitor: str, mode: str, min_delta: float) -> None:
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be a str, got {monitor!r}")
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        self.monitor = monitor
        self.mode = mode
        self.min_delta = check_float(min_delta, "min_delta")
        self.best = math.inf if mode == "min" else -math.inf

    def value(self, logs: dict | None) -> float:
        if not logs or self.monitor not in logs:
            known = sorted(logs or {})
            hint = " (val_* values need validation_data or validation_split)" if self.monitor.startswith("val_") else ""
            raise KeyError(f"monitor {self.monitor!r} is not among the epoch's values {known}{hint}")
        return float(logs[self.monitor])

    def improved(self, value: float) -> bool:
        """True, and ``best`` updated, if ``value`` beats ``best`` by more than ``min_delta``."""
        if self.mode == "min":
            better = value < self.best - self.min_delta
        else:
            better = value > self.best + self.min_delta
        if better:
            self.best = value
        return better


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by more than ``min_delta`` for ``patience``
    epochs.

    With ``restore_best_weights`` (the default here, unlike Keras), the model ends training
    with the weights of its best epoch, whether training stopped early or ran out of
    epochs. Only the weights are restored; the optimizer state is that of the last epoch.

    Attributes
    ----------
    stopped_epoch : int or None
        The epoch after which training stopped, or None if it ran to the end.
    best_epoch : int or None
        The epoch with the best monitored value.
    """

    def __init__(
        self, monitor: str = "val_loss", patience: int = 5, min_delta: float = 0.0,
        restore_best_weights: bool = True, mode: str = "auto",
    ) -> None:  # fmt: skip
        self._monitor = _Monitor(monitor, mode, min_delta)
        self.monitor = monitor
        self.patience = check_int(patience, "patience", minimum=0)
        self.min_delta = min_delta
        if not isinstance(restore_best_weights, bool):
            raise TypeError(f"restore_best_weights must be a bool, got {restore_best_weights!r}")
        self.restore_best_weights = restore_best_weights
        self.mode = mode

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._monitor = _Monitor(self.monitor, self.mode, self.min_delta)
        self.wait = 0
        self.stopped_epoch: int | None = None
        self.best_epoch: int | None = None
        self._best_weights: list[np.ndarray] | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self._monitor.improved(self._monitor.value(logs)):
            self.wait = 0
            self.best_epoch = epoch
            if self.restore_best_weights:
                self._best_weights = self.model.get_weights()
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.restore_best_weights and self._best_weights is not None:
            self.model.set_weights(self._best_weights)


class ModelCheckpoint(Callback):
    """Save the model to ``path`` (see ``Sequential.save``) at the end of an epoch.

    With ``save_best_only`` (default) it saves only when ``monitor`` improves, so the file
    always holds the best model so far. Each save writes a temporary file and renames it
    over ``path``, so an interrupted save never corrupts the previous file. ``path`` may
    contain ``{epoch}`` (1-based) and any log key, e.g. ``"model-{epoch:03d}-{val_loss:.3f}.fbp"``.
    """

    def __init__(
        self, path: str | os.PathLike, monitor: str = "val_loss", save_best_only: bool = True,
        mode: str = "auto",
    ) -> None:  # fmt: skip
        self.path = os.fspath(path)
        self.monitor = monitor
        self.save_best_only = bool(save_best_only)
        self.mode = mode
        self._monitor = _Monitor(monitor, mode, 0.0)
        #: Paths written, in order.
        self.saved: list[str] = []

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._monitor = _Monitor(self.monitor, self.mode, 0.0)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        if self.save_best_only and not self._monitor.improved(self._monitor.value(logs)):
            return
        path = self.path.format(epoch=epoch + 1, **logs)
        self.model.save(path)
        self.saved.append(path)


class LearningRateScheduler(Callback):
    """Set the optimizer's ``lr`` at the start of each epoch from ``schedule(epoch)``
    (or ``schedule(epoch, lr)`` for a two-argument callable), as Keras' callback does.

    Passing the schedule as the optimizer's ``lr`` is equivalent and simpler; this exists
    for code written for Keras.
    """

    def __init__(self, schedule: Callable[..., float]) -> None:
        if not callable(schedule):
            raise TypeError(f"schedule must be callable, got {schedule!r}")
        self.schedule = schedule

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        opt = self.model.optimizer
        try:
            value = self.schedule(epoch, opt.lr_at(epoch))
        except TypeError:
            value = self.schedule(epoch)
        opt.lr = check_float(value, f"schedule value at epoch {epoch}", low_open=True)


class ReduceLROnPlateau(Callback):
    """Multiply the optimizer's ``lr`` by ``factor`` when ``monitor`` has not improved for
    ``patience`` epochs, then wait ``cooldown`` epochs; never below ``min_lr``.

    Needs a float ``lr`` on the optimizer (not a schedule).
    """

    def __init__(
        self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10, min_delta: float = 1e-4,
        cooldown: int = 0, min_lr: float = 0.0, mode: str = "auto",
    ) -> None:  # fmt: skip
        self.monitor = monitor
        self.factor = check_float(factor, "factor", 0.0, 1.0, low_open=True, high_open=True)
        self.patience = check_int(patience, "patience", minimum=0)
        self.min_delta = check_float(min_delta, "min_delta")
        self.cooldown = check_int(cooldown, "cooldown", minimum=0)
        self.min_lr = check_float(min_lr, "min_lr")
        self.mode = mode
        self._monitor = _Monitor(monitor, mode, min_delta)

    def on_train_begin(self, logs: dict | None = None) -> None:
        if callable(self.model.optimizer.lr):
            raise TypeError("ReduceLROnPlateau needs a float optimizer lr, not a schedule")
        self._monitor = _Monitor(self.monitor, self.mode, self.min_delta)
        self.wait = 0
        self.cooldown_left = 0

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        # Keras' rules: a cooldown epoch resets the wait, and counts down first
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.wait = 0
        if self._monitor.improved(self._monitor.value(logs)):
            self.wait = 0
        elif self.cooldown_left == 0:
            self.wait += 1
            if self.wait >= self.patience:
                opt = self.model.optimizer
                opt.lr = max(opt.lr * self.factor, self.min_lr)
                self.cooldown_left = self.cooldown
                self.wait = 0
