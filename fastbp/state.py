"""The seam between a :class:`~fastbp.Sequential` and the code that wraps it.

The scikit-learn estimators, model files, Dask training and the diagnostics need more of a
model than ``fit`` and ``predict``: its parameters and optimizer state (to save, restore,
average or broadcast them), its step count and random generator, inputs validated once for
many calls, and per-call values of the optimizer's hyper-parameters. They reach them here,
through :attr:`Sequential.state <fastbp.Sequential.state>`, :meth:`Sequential.set_state
<fastbp.Sequential.set_state>`, :meth:`Sequential.check_inputs
<fastbp.Sequential.check_inputs>` and ``fit(..., optimizer_overrides=...)``, never
through the model's private attributes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


@dataclass
class TrainingState:
    """Everything training changes in a model.

    ``theta`` holds every parameter, flat: all weight matrices first (layer by layer, each
    ``W`` of shape ``(n_in, n_out)`` in C order), then all bias vectors (the model file's
    layout, ``fastbp.io``). ``m`` and ``v`` are the optimizer's first- and second-moment
    (or momentum) buffers, theta's length, or empty when the optimizer does not use them.
    ``step`` counts the optimizer steps taken (Adam's bias correction uses it); ``rng``
    draws initial weights, shuffling orders and dropout seeds. The arrays are None for a
    model that is not built.

    From :attr:`Sequential.state` the arrays and the generator are the model's own (live:
    writing into them changes the model), ``step`` a snapshot; :meth:`copy` makes an
    independent one.
    """

    theta: np.ndarray | None
    m: np.ndarray | None
    v: np.ndarray | None
    step: int
    rng: np.random.Generator

    def copy(self) -> TrainingState:
        """A deep copy: arrays and generator state."""
        import copy

        def dup(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a.copy()

        return TrainingState(dup(self.theta), dup(self.m), dup(self.v), int(self.step), copy.deepcopy(self.rng))


class Inputs(NamedTuple):
    """Inputs validated and converted as ``fit`` does (:meth:`Sequential.check_inputs`):
    ``X`` (an array of the model's dtype, or a ``kernels.sparse.CSR``), integer labels
    ``yi`` (cross-entropy) or float targets ``yf`` (other losses; the other one is empty),
    and sample weights ``sw`` (float64, or None)."""

    X: object
    yi: np.ndarray
    yf: np.ndarray
    sw: np.ndarray | None

    @property
    def targets(self) -> np.ndarray:
        """The targets ``fit`` takes for this loss: ``yi`` if it has rows, else ``yf``."""
        return self.yi if self.yi.shape[0] else self.yf
