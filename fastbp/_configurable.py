"""A base for configuration objects (optimizers, schedules): ``get_config`` and a ``repr``
built from the ``__init__`` arguments, which the subclasses store as attributes of the
same names."""

from __future__ import annotations


class Configurable:
    def get_config(self) -> dict:
        """The ``__init__`` arguments."""
        return dict(self.__dict__)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"
