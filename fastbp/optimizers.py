"""Optimizers: validated hyper-parameters; the update itself is one fused kernel.

An optimizer object holds configuration only. The model that uses it owns the state
(momentum and moment buffers), so one optimizer object can configure several models.
The update rules are PyTorch's; weight decay applies to weights, not biases (see
``fastbp.kernels.optim``). L2 regularisation is ``weight_decay`` on any optimizer.
"""

from __future__ import annotations

from ._validation import check_float
from .kernels import optim


class Optimizer:
    """Base class: subclasses set ``code`` and implement ``_hyper``."""

    code: int = -1
    #: Which state buffers the update reads: (first / momentum, second moment).
    uses_m: bool = False
    uses_v: bool = False

    def _hyper(self) -> list[float]:
        raise NotImplementedError

    def get_config(self) -> dict:
        """The ``__init__`` arguments."""
        return dict(self.__dict__)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum.

    ``v = momentum * v + g``; ``w -= lr * (g + momentum * v)`` with Nesterov, else
    ``w -= lr * v``; ``g`` includes ``weight_decay * w`` (L2). Nesterov momentum:
    Sutskever et al., "On the importance of initialization and momentum in deep learning",
    ICML 2013.
    """

    code = optim.SGD

    def __init__(
        self, lr: float = 0.01, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0
    ) -> None:
        self.lr = check_float(lr, "lr", low_open=True)
        self.momentum = check_float(momentum, "momentum", 0.0, 1.0, high_open=True)
        if not isinstance(nesterov, bool):
            raise TypeError(f"nesterov must be a bool, got {nesterov!r}")
        if nesterov and self.momentum == 0:
            raise ValueError("nesterov=True requires momentum > 0, got momentum=0.0")
        self.nesterov = nesterov
        self.weight_decay = check_float(weight_decay, "weight_decay")

    @property
    def uses_m(self) -> bool:  # type: ignore[override]
        return self.momentum > 0

    def _hyper(self) -> list[float]:
        return [self.lr, self.momentum, 0.0, 0.0, self.weight_decay, float(self.nesterov)]


class Adam(Optimizer):
    """Adam (Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015).

    ``weight_decay`` adds ``weight_decay * w`` to the gradient (L2, coupled with the
    adaptive scaling); for decoupled decay use :class:`AdamW`.
    """

    code = optim.ADAM
    uses_m = True
    uses_v = True

    def __init__(
        self, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:  # fmt: skip
        self.lr = check_float(lr, "lr", low_open=True)
        self.beta1 = check_float(beta1, "beta1", 0.0, 1.0, high_open=True)
        self.beta2 = check_float(beta2, "beta2", 0.0, 1.0, high_open=True)
        self.eps = check_float(eps, "eps", low_open=True)
        self.weight_decay = check_float(weight_decay, "weight_decay")

    def _hyper(self) -> list[float]:
        return [self.lr, self.beta1, self.beta2, self.eps, self.weight_decay, 0.0]


class AdamW(Adam):
    """Adam with decoupled weight decay: ``w *= 1 - lr * weight_decay`` before each step
    (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019).
    Defaults as PyTorch's, ``weight_decay=0.01``."""

    code = optim.ADAMW

    def __init__(
        self, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
        weight_decay: float = 0.01,
    ) -> None:  # fmt: skip
        super().__init__(lr, beta1, beta2, eps, weight_decay)


class RMSprop(Optimizer):
    """RMSprop (Tieleman & Hinton, Lecture 6.5, COURSERA: Neural Networks for ML, 2012).

    ``v = alpha * v + (1 - alpha) g^2``; ``w -= lr * g / (sqrt(v) + eps)``, with optional
    momentum on that step. Defaults as PyTorch's.
    """

    code = optim.RMSPROP
    uses_v = True

    def __init__(
        self, lr: float = 0.01, alpha: float = 0.99, eps: float = 1e-8, momentum: float = 0.0,
        weight_decay: float = 0.0,
    ) -> None:  # fmt: skip
        self.lr = check_float(lr, "lr", low_open=True)
        self.alpha = check_float(alpha, "alpha", 0.0, 1.0, high_open=True)
        self.eps = check_float(eps, "eps", low_open=True)
        self.momentum = check_float(momentum, "momentum", 0.0, 1.0, high_open=True)
        self.weight_decay = check_float(weight_decay, "weight_decay")

    @property
    def uses_m(self) -> bool:  # type: ignore[override]
        return self.momentum > 0

    def _hyper(self) -> list[float]:
        return [self.lr, self.momentum, self.alpha, self.eps, self.weight_decay, 0.0]


_BY_NAME = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop}


def get_optimizer(optimizer: str | Optimizer) -> Optimizer:
    """An :class:`Optimizer` from an instance or a name (``sgd``, ``adam``, ``adamw``, ``rmsprop``)."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, str):
        try:
            return _BY_NAME[optimizer.lower()]()
        except KeyError:
            raise ValueError(f"unknown optimizer {optimizer!r}; expected one of {sorted(_BY_NAME)}") from None
    raise TypeError(f"optimizer must be a name or an Optimizer, got {type(optimizer).__name__}: {optimizer!r}")
