"""Every exception fastbp raises on purpose, in one place (all exported as ``fastbp.<Name>``).

Bad arguments raise the built-in ``TypeError``/``ValueError`` with a message naming the
argument; these classes mark the failures a caller may want to catch by kind.
"""

from __future__ import annotations


class TrainingDivergedError(ArithmeticError):
    """The training loss or gradient became NaN or infinite.

    Raised by ``fit``; the batch that produced it was not applied, so the model keeps the
    parameters and optimizer state of the last finite step.

    Attributes
    ----------
    epoch : int
        The epoch (0-based, as in ``History.epoch``) in which it happened.
    batch : int
        The batch within that epoch (0-based).
    history : History
        The completed epochs of this ``fit`` call.
    """

    def __init__(self, epoch: int, batch: int, history: object) -> None:
        self.epoch = epoch
        self.batch = batch
        self.history = history
        super().__init__(
            f"training diverged: the loss or its gradient is not finite at epoch {epoch}, batch {batch}; "
            "the model keeps the weights of the last finite step (try a lower learning rate, "
            "gradient clipping with clipnorm=..., or scaling the inputs)"
        )


class ModelFileError(ValueError):
    """A file that is not a valid fastbp model file (corrupted, truncated, tampered, or
    written by a newer fastbp). The message names the file and what is wrong."""


class CLIError(Exception):
    """A user-facing failure of the ``fastbp`` command: printed as one ``fastbp: error:``
    line, exit status 1."""


class BenchError(ValueError):
    """A bad benchmark request (unknown workload or peer, bad count): a usage error."""


__all__ = ["BenchError", "CLIError", "ModelFileError", "TrainingDivergedError"]
