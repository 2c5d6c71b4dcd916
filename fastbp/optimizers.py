"""Optimizers: validated hyper-parameters; the update itself is one fused kernel.

An optimizer object holds configuration only. The model that uses it owns the state
(momentum and moment buffers), so one optimizer object can configure several models.
The update rules are PyTorch's; weight decay applies to weights, not biases (see
``fastbp.kernels.optim``). L2 regularisation is ``weight_decay`` on any optimizer: there is
no per-layer ``kernel_regularizer``, because ``weight_decay`` adds ``weight_decay * W`` to
every weight's gradient, which is exactly the gradient of an L2 penalty
``weight_decay / 2 * sum(W**2)`` on all kernels (biases are not decayed).
"""

from __future__ import annotations

from collections.abc import Callable

from ._configurable import Configurable
from ._validation import check_float
from .kernels import optim


class Optimizer(Configurable):
    """Base class: subclasses set ``code`` and implement ``_hyper``.

    Every optimizer takes ``lr`` as a positive float, a schedule from
    :mod:`fastbp.schedules`, or any callable ``epoch -> lr`` (evaluated at the start of
    each epoch, ``epoch`` counted from 0 over the model's whole training), and
    ``clipnorm``: when set, each step's gradient is rescaled so its global L2 norm (over
    all parameters together) is at most ``clipnorm``, before weight decay is added.
    """

    code: int = -1
    #: Which state buffers the update reads: (first / momentum, second moment).
    uses_m: bool = False
    uses_v: bool = False

    def _common(self, lr: object, weight_decay: float, clipnorm: float | None) -> None:
        self.lr = check_lr(lr)
        self.weight_decay = check_float(weight_decay, "weight_decay")
        self.clipnorm = None if clipnorm is None else check_float(clipnorm, "clipnorm", low_open=True)

    def lr_at(self, epoch: int) -> float:
        """The learning rate for ``epoch``: ``lr`` itself, or the schedule's value."""
        if not callable(self.lr):
            return self.lr
        value = self.lr(epoch)
        try:
            return check_float(value, f"lr schedule value at epoch {epoch}", low_open=True)
        except TypeError as exc:
            raise TypeError(f"the lr schedule {self.lr!r} must return a float: {exc}") from None

    def _hyper(self, epoch: int = 0) -> list[float]:
        raise NotImplementedError



def check_lr(lr: object) -> object:
    """A positive finite float, or a callable schedule ``epoch -> lr``."""
    if callable(lr) and not isinstance(lr, type):
        return lr
    return check_float(lr, "lr", low_open=True)


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum.

    ``v = momentum * v + g``; ``w -= lr * (g + momentum * v)`` with Nesterov, else
    ``w -= lr * v``; ``g`` includes ``weight_decay * w`` (L2). Nesterov momentum:
    Sutskever et al., "On the importance of initialization and momentum in deep learning",
    ICML 2013.
    """

    code = optim.SGD

    def __init__(
        self, lr: float | Callable[[int], float] = 0.01, momentum: float = 0.0, nesterov: bool = False,
        weight_decay: float = 0.0, clipnorm: float | None = None,
    ) -> None:  # fmt: skip
        momentum = check_float(momentum, "momentum", 0.0, 1.0, high_open=True)
        if not isinstance(nesterov, bool):
            raise TypeError(f"nesterov must be a bool, got {nesterov!r}")
        if nesterov and momentum == 0:
            raise ValueError("nesterov=True requires momentum > 0, got momentum=0.0")
        self._common(lr, weight_decay, clipnorm)
        self.momentum = momentum
        self.nesterov = nesterov

    @property
    def uses_m(self) -> bool:  # type: ignore[override]
        return self.momentum > 0

    def _hyper(self, epoch: int = 0) -> list[float]:
        return [self.lr_at(epoch), self.momentum, 0.0, 0.0, self.weight_decay, float(self.nesterov)]


class Adam(Optimizer):
    """Adam (Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015).

    ``weight_decay`` adds ``weight_decay * w`` to the gradient (L2, coupled with the
    adaptive scaling); for decoupled decay use :class:`AdamW`.
    """

    code = optim.ADAM
    uses_m = True
    uses_v = True

    def __init__(
        self, lr: float | Callable[[int], float] = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
        eps: float = 1e-8, weight_decay: float = 0.0, clipnorm: float | None = None,
    ) -> None:  # fmt: skip
        beta1 = check_float(beta1, "beta1", 0.0, 1.0, high_open=True)
        beta2 = check_float(beta2, "beta2", 0.0, 1.0, high_open=True)
        eps = check_float(eps, "eps", low_open=True)
        self._common(lr, weight_decay, clipnorm)
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps

    def _hyper(self, epoch: int = 0) -> list[float]:
        return [self.lr_at(epoch), self.beta1, self.beta2, self.eps, self.weight_decay, 0.0]


class AdamW(Adam):
    """Adam with decoupled weight decay: ``w *= 1 - lr * weight_decay`` before each step
    (Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019).
    Defaults as PyTorch's, ``weight_decay=0.01``."""

    code = optim.ADAMW

    def __init__(
        self, lr: float | Callable[[int], float] = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
        eps: float = 1e-8, weight_decay: float = 0.01, clipnorm: float | None = None,
    ) -> None:  # fmt: skip
        super().__init__(lr, beta1, beta2, eps, weight_decay, clipnorm)


class RMSprop(Optimizer):
    """RMSprop (Tieleman & Hinton, Lecture 6.5, COURSERA: Neural Networks for ML, 2012).

    ``v = alpha * v + (1 - alpha) g^2``; ``w -= lr * g / (sqrt(v) + eps)``, with optional
    momentum on that step. Defaults as PyTorch's.
    """

    code = optim.RMSPROP
    uses_v = True

    def __init__(
        self, lr: float | Callable[[int], float] = 0.01, alpha: float = 0.99, eps: float = 1e-8,
        momentum: float = 0.0, weight_decay: float = 0.0, clipnorm: float | None = None,
    ) -> None:  # fmt: skip
        alpha = check_float(alpha, "alpha", 0.0, 1.0, high_open=True)
        eps = check_float(eps, "eps", low_open=True)
        momentum = check_float(momentum, "momentum", 0.0, 1.0, high_open=True)
        self._common(lr, weight_decay, clipnorm)
        self.alpha = alpha
        self.eps = eps
        self.momentum = momentum

    @property
    def uses_m(self) -> bool:  # type: ignore[override]
        return self.momentum > 0

    def _hyper(self, epoch: int = 0) -> list[float]:
        return [self.lr_at(epoch), self.momentum, self.alpha, self.eps, self.weight_decay, 0.0]


def _subclasses(cls: type) -> list[type]:
    return [c for sub in cls.__subclasses__() for c in (sub, *_subclasses(sub))]


#: Name -> class of every optimizer: each class's name is its kernel code's
#: (``fastbp.kernels.optim.NAMES``).
OPTIMIZERS: dict[str, type] = {optim.NAMES[cls.code]: cls for cls in _subclasses(Optimizer) if cls.code >= 0}
_BY_NAME = OPTIMIZERS


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
