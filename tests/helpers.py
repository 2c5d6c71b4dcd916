"""Model factories and kernel wrappers shared by the test modules (``tests`` is on pytest's
pythonpath)."""

from __future__ import annotations

from collections.abc import Sequence

from numba import njit

import fastbp as fb
from fastbp.kernels.blas import gemm as _gemm


def net(
    hidden: Sequence[int] = (8,), activation: str | Sequence[str] = "tanh", k: int = 3, loss: str = "cross_entropy",
    *, dropout: float = 0.0, seed: int | None = 0, **kw: object,
) -> fb.Sequential:  # fmt: skip
    """``Dense(h, activation)`` per hidden size (one activation, or one per layer), then a
    ``Dropout(dropout)`` if non-zero, then a linear ``Dense(k)``; ``kw`` goes to
    ``Sequential`` (optimizer, dtype, metrics)."""
    acts = [activation] * len(hidden) if isinstance(activation, str) else list(activation)
    layers: list = [fb.Dense(units, activation=act) for units, act in zip(hidden, acts, strict=True)]
    if dropout:
        layers.append(fb.Dropout(dropout))
    layers.append(fb.Dense(k))
    return fb.Sequential(layers, loss=loss, seed=seed, **kw)


@njit
def gemm(a, ta, b, tb, c):
    """The ``gemm`` intrinsic (``fastbp.kernels.blas``), callable from Python."""
    _gemm(a, ta, b, tb, c)
