"""Learning-rate schedules: callables ``epoch -> lr``, passed as an optimizer's ``lr``.

``epoch`` counts from 0 over the model's whole training (``fit(initial_epoch=...)`` and
repeated ``fit`` calls continue the count), and the rate is set at the start of each
epoch. Any plain function ``epoch -> lr`` works the same way; these classes are the
common cases, with a readable ``repr`` and a ``get_config`` for model files.

>>> import fastbp as fb
>>> sched = fb.StepDecay(0.1, factor=0.5, every=10)
>>> [sched(e) for e in (0, 9, 10, 25)]
[0.1, 0.1, 0.05, 0.025]
>>> opt = fb.SGD(lr=fb.CosineDecay(0.1, epochs=100, warmup_epochs=5), momentum=0.9)
"""

from __future__ import annotations

import math

from ._configurable import Configurable
from ._validation import check_float, check_int


class Schedule(Configurable):
    """Base class: subclasses implement ``__call__(epoch) -> lr``."""

    def __call__(self, epoch: int) -> float:
        raise NotImplementedError


    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()  # type: ignore[union-attr]

    __hash__ = None  # type: ignore[assignment]


class StepDecay(Schedule):
    """``lr * factor ** (epoch // every)``: drop by ``factor`` every ``every`` epochs."""

    def __init__(self, lr: float, factor: float = 0.5, every: int = 10) -> None:
        self.lr = check_float(lr, "lr", low_open=True)
        self.factor = check_float(factor, "factor", 0.0, 1.0, low_open=True)
        self.every = check_int(every, "every")

    def __call__(self, epoch: int) -> float:
        return self.lr * self.factor ** (epoch // self.every)


class ExponentialDecay(Schedule):
    """``lr * rate ** epoch``: multiply by ``rate`` every epoch."""

    def __init__(self, lr: float, rate: float = 0.95) -> None:
        self.lr = check_float(lr, "lr", low_open=True)
        self.rate = check_float(rate, "rate", 0.0, 1.0, low_open=True)

    def __call__(self, epoch: int) -> float:
        return self.lr * self.rate**epoch


class CosineDecay(Schedule):
    """Linear warm-up for ``warmup_epochs``, then cosine decay to ``min_lr`` at ``epochs``.

    During warm-up, epoch ``e`` uses ``lr * (e + 1) / warmup_epochs``; then
    ``min_lr + (lr - min_lr) * (1 + cos(pi * t)) / 2`` with ``t`` going from 0 to 1 over the
    remaining epochs (Loshchilov & Hutter, "SGDR", ICLR 2017, without restarts). After
    ``epochs`` the rate stays at ``min_lr``.
    """

    def __init__(self, lr: float, epochs: int, min_lr: float = 0.0, warmup_epochs: int = 0) -> None:
        self.lr = check_float(lr, "lr", low_open=True)
        self.epochs = check_int(epochs, "epochs")
        self.min_lr = check_float(min_lr, "min_lr", 0.0, self.lr)
        self.warmup_epochs = check_int(warmup_epochs, "warmup_epochs", minimum=0)
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs ({warmup_epochs}) must be less than epochs ({epochs})")

    def __call__(self, epoch: int) -> float:
        if epoch < self.warmup_epochs:
            return self.lr * (epoch + 1) / self.warmup_epochs
        span = self.epochs - self.warmup_epochs
        t = min(1.0, (epoch - self.warmup_epochs) / span)
        lr = self.min_lr + (self.lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))
        # cos(pi) leaves ~1e-17 * lr above min_lr; a zero rate must stay positive for the optimizer
        return max(lr, self.min_lr, 1e-12 * self.lr)


#: Public name -> class (model files store schedules by name).
SCHEDULES: dict[str, type[Schedule]] = {
    cls.__name__: cls for cls in (StepDecay, ExponentialDecay, CosineDecay)
}
