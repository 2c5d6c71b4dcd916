"""A plain-NumPy MLP: the fair baseline that fastbp is measured against.

Idiomatic, vectorised NumPy with the same algorithm as fastbp, so that an epoch of each
does the same arithmetic and only the execution differs:

- layers ``z = a @ W + b``, ``a = f(z)``, with ``W`` of shape (n_in, n_out), in the order
  of ``fastbp.Sequential.get_weights()``: ``[W0, b0, W1, b1, ...]``;
- derivatives from the stored output (relu ``a > 0``, tanh ``1 - a^2``, sigmoid
  ``a (1 - a)``), as fastbp and scikit-learn do;
- losses fused with their link, each a mean over its elements: ``cross_entropy``
  (stable softmax, integer labels, mean over samples, ``dL/dz = (p - onehot(y)) / B``)
  and ``mse`` (mean over the n*k outputs, ``dL/dz = 2 (z - y) / (B k)``);
- mini-batch SGD with momentum and Adam, with PyTorch's update rules.

It is not a straw man. Everything is float32 (or whatever dtype the weights have);
GEMMs go through NumPy's BLAS on all its threads; gradient and activation buffers are
allocated once per batch size and written with ``out=``; optimizer updates run in place.
What remains is what any NumPy code pays: one Python-level call per array operation and
a pass over memory per operation instead of fused loops.

This is a different job from ``tests/reference.py``: that one is slow and obvious, this
one is fast and idiomatic.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> weights = [rng.normal(0, 0.5, (2, 8)).astype(np.float32), np.zeros(8, np.float32),
...            rng.normal(0, 0.5, (8, 2)).astype(np.float32), np.zeros(2, np.float32)]
>>> mlp = NumpyMLP(weights, ["tanh", "identity"], "cross_entropy", "adam", lr=0.05)
>>> X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
>>> y = np.array([0, 1, 1, 0])
>>> losses = [mlp.train_epoch(X, y, batch_size=4) for _ in range(300)]
>>> bool(losses[-1] < 0.05 < losses[0])
True
>>> mlp.forward(X).argmax(axis=1)
array([0, 1, 1, 0])
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

ACTIVATIONS = ("identity", "relu", "leaky_relu", "tanh", "sigmoid")
LOSSES = ("cross_entropy", "mse")
OPTIMIZERS = ("sgd", "adam")
LEAKY_SLOPE = 0.01  # as fastbp's leaky_relu


def activation_(z: np.ndarray, name: str) -> np.ndarray:
    """a = f(z), written over ``z``; returns ``z``."""
    if name == "relu":
        np.maximum(z, 0, out=z)
    elif name == "leaky_relu":
        np.maximum(z, LEAKY_SLOPE * z, out=z)
    elif name == "tanh":
        np.tanh(z, out=z)
    elif name == "sigmoid":
        # sigmoid(z) = (1 + tanh(z / 2)) / 2: no overflow for any z, and all in place
        z *= 0.5
        np.tanh(z, out=z)
        z += 1.0
        z *= 0.5
    return z


def activation_backward_(g: np.ndarray, a: np.ndarray, name: str) -> np.ndarray:
    """g *= f'(z), with f'(z) written from the output ``a``; turns dL/da into dL/dz."""
    if name == "relu":
        np.multiply(g, a > 0, out=g)
    elif name == "leaky_relu":
        g *= np.where(a > 0, 1.0, LEAKY_SLOPE).astype(g.dtype, copy=False)
    elif name == "tanh":
        g *= 1.0 - a * a
    elif name == "sigmoid":
        g *= a * (1.0 - a)
    return g


def loss_grad(out: np.ndarray, y: np.ndarray, loss: str, g: np.ndarray) -> float:
    """Mean loss of the batch; writes dL/d(out) into ``g`` (which may alias ``out``).

    ``cross_entropy`` applies a softmax to ``out`` and takes integer labels ``y`` of
    shape (B,); ``mse`` takes float targets of shape (B, k).
    """
    B, k = out.shape
    if loss == "cross_entropy":
        rows = np.arange(B)
        np.subtract(out, out.max(axis=1, keepdims=True), out=g)  # shifted logits
        target = g[rows, y]  # shifted logit of the true class (a copy, read before exp)
        np.exp(g, out=g)
        s = g.sum(axis=1, keepdims=True)
        # -log softmax(out)[y] = log(sum exp(out - max)) - (out[y] - max)
        mean_loss = float(np.log(s).sum(dtype=np.float64) - target.sum(dtype=np.float64)) / B
        g /= s  # softmax
        g[rows, y] -= 1.0
        g *= 1.0 / B
        return mean_loss
    # mse
    np.subtract(out, y, out=g)
    mean_loss = float(np.vdot(g, g)) / (B * k)
    g *= 2.0 / (B * k)
    return mean_loss


def sgd_momentum_step_(p: np.ndarray, g: np.ndarray, v: np.ndarray, t: np.ndarray, lr: float, momentum: float) -> None:
    """In place: ``v = momentum * v + g``; ``p -= lr * v``. ``t`` is scratch of p's shape."""
    v *= momentum  # the buffer starts at zero, so step 1 gives v = g, as torch
    v += g
    p -= np.multiply(v, lr, out=t)


def adam_step_(
    p: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, t: np.ndarray,
    lr: float, beta1: float, beta2: float, eps: float, step: int,
) -> None:  # fmt: skip
    """One in-place Adam step (PyTorch's rule) at 1-based ``step``; ``t`` is scratch."""
    step_size = lr / (1.0 - beta1**step)
    inv_sqrt_bc2 = 1.0 / math.sqrt(1.0 - beta2**step)
    m *= beta1
    m += np.multiply(g, 1.0 - beta1, out=t)
    v *= beta2
    np.multiply(g, g, out=t)
    t *= 1.0 - beta2
    v += t
    np.sqrt(v, out=t)
    t *= inv_sqrt_bc2
    t += eps
    np.divide(m, t, out=t)
    t *= step_size
    p -= t


class _SGD:
    """``v = momentum * v + g``; ``w -= lr * v`` (PyTorch's ``torch.optim.SGD``)."""

    def __init__(self, params: list[np.ndarray], lr: float, momentum: float) -> None:
        self.lr = lr
        self.momentum = momentum
        self.velocity = [np.zeros_like(p) for p in params] if momentum else []
        self.scratch = [np.empty_like(p) for p in params]

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        if not self.momentum:
            for p, g, t in zip(params, grads, self.scratch):
                p -= np.multiply(g, self.lr, out=t)
            return
        for p, g, v, t in zip(params, grads, self.velocity, self.scratch):
            sgd_momentum_step_(p, g, v, t, self.lr, self.momentum)


class _Adam:
    """Adam with PyTorch's update (Kingma & Ba, ICLR 2015): ``m = b1 m + (1 - b1) g``,
    ``v = b2 v + (1 - b2) g^2``, ``w -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``.
    """

    def __init__(self, params: list[np.ndarray], lr: float, betas: tuple[float, float], eps: float) -> None:
        self.lr = lr
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.t = 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.scratch = [np.empty_like(p) for p in params]

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        self.t += 1
        for p, g, m, v, t in zip(params, grads, self.m, self.v, self.scratch):
            adam_step_(p, g, m, v, t, self.lr, self.beta1, self.beta2, self.eps, self.t)


class NumpyMLP:
    """A multilayer perceptron trained by mini-batch backpropagation in plain NumPy.

    Parameters
    ----------
    weights : list of ndarray
        ``[W0, b0, W1, b1, ...]`` as ``fastbp.Sequential.get_weights()`` returns them:
        ``W`` of shape (n_in, n_out), ``b`` of shape (n_out,). Copied; the copies are
        trained in place. Their (common) dtype is the computation dtype.
    activations : list of str
        One per layer, from :data:`ACTIVATIONS`. The last layer is usually ``identity``:
        the loss applies its own link.
    loss : {"cross_entropy", "mse"}
    optimizer : {"sgd", "adam"}, default="sgd"
    lr : float, default=0.01
    momentum : float, default=0.0
        SGD only.
    betas : tuple of float, default=(0.9, 0.999)
        Adam only.
    eps : float, default=1e-8
        Adam only.

    Attributes
    ----------
    params : list of ndarray
        The trained ``[W0, b0, W1, b1, ...]``.
    """

    def __init__(
        self,
        weights: Sequence[np.ndarray],
        activations: Sequence[str],
        loss: str,
        optimizer: str = "sgd",
        lr: float = 0.01,
        momentum: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        if len(weights) != 2 * len(activations):
            raise ValueError(
                f"weights must hold W and b for each of the {len(activations)} layers, got {len(weights)} arrays"
            )
        unknown = [a for a in activations if a not in ACTIVATIONS]
        if unknown:
            raise ValueError(f"unknown activations {unknown}; expected names from {ACTIVATIONS}")
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; expected one of {LOSSES}")
        self.dtype = np.asarray(weights[0]).dtype
        self.params = [np.array(w, dtype=self.dtype, order="C") for w in weights]
        for i in range(0, len(self.params), 2):
            W, b = self.params[i], self.params[i + 1]
            if W.ndim != 2 or b.shape != (W.shape[1],):
                raise ValueError(f"layer {i // 2}: W {W.shape} and b {b.shape} do not match")
            if i and W.shape[0] != self.params[i - 2].shape[1]:
                raise ValueError(f"layer {i // 2}: W has {W.shape[0]} inputs, the layer before has "
                                 f"{self.params[i - 2].shape[1]} outputs")  # fmt: skip
        self.activations = list(activations)
        self.loss_name = loss
        if optimizer == "sgd":
            self.optimizer = _SGD(self.params, lr, momentum)
        elif optimizer == "adam":
            self.optimizer = _Adam(self.params, lr, betas, eps)
        else:
            raise ValueError(f"unknown optimizer {optimizer!r}; expected one of {OPTIMIZERS}")
        # gradients have the parameters' shapes whatever the batch size: allocate them once
        self.grads = [np.empty_like(p) for p in self.params]
        self._ws_rows = 0

    @property
    def sizes(self) -> list[int]:
        """Layer widths: n_features, then each layer's units."""
        return [self.params[0].shape[0]] + [W.shape[1] for W in self.params[::2]]

    def _workspace(self, rows: int) -> None:
        """Batch input, activation and dL/da buffers for batches of up to ``rows`` rows."""
        if self._ws_rows == rows:
            return
        sizes = self.sizes
        self._xb = np.empty((rows, sizes[0]), dtype=self.dtype)
        self._a = [np.empty((rows, m), dtype=self.dtype) for m in sizes[1:]]
        self._g = [np.empty((rows, m), dtype=self.dtype) for m in sizes[1:]]
        self._ws_rows = rows

    def _forward(self, x: np.ndarray, acts: list[np.ndarray]) -> np.ndarray:
        """Push ``x`` through every layer, writing layer l's output into ``acts[l]``."""
        inp = x
        for l, name in enumerate(self.activations):
            z = np.matmul(inp, self.params[2 * l], out=acts[l])
            z += self.params[2 * l + 1]
            inp = activation_(z, name)
        return inp

    def _backward(self, x: np.ndarray, acts: list[np.ndarray], gs: list[np.ndarray]) -> None:
        """Fill ``self.grads``; ``gs[-1]`` holds dL/da of the output layer on entry."""
        for l in range(len(self.activations) - 1, -1, -1):
            delta = activation_backward_(gs[l], acts[l], self.activations[l])
            inp = x if l == 0 else acts[l - 1]
            np.matmul(inp.T, delta, out=self.grads[2 * l])
            np.sum(delta, axis=0, out=self.grads[2 * l + 1])
            if l > 0:  # the first layer's input gradient is never needed
                np.matmul(delta, self.params[2 * l].T, out=gs[l - 1])

    def train_epoch(self, X: np.ndarray, y: np.ndarray, batch_size: int = 32, order: np.ndarray | None = None) -> float:
        """One epoch of mini-batch training over ``X[order]``; returns the epoch's mean loss.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
            In the model's dtype (converted once if not).
        y : ndarray
            Integer labels of shape (n_samples,) for ``cross_entropy``; targets of shape
            (n_samples, k) (or (n_samples,) when k == 1) for ``mse``.
        batch_size : int, default=32
            The last batch holds the remainder.
        order : int ndarray of shape (n_samples,), optional
            The order in which rows are visited (default: ``arange``).

        Returns
        -------
        float
            The mean over samples of each batch's mean loss (weighted by batch size), as
            fastbp's ``History.history["loss"]``.
        """
        X, y = self._check(X, y)
        n = X.shape[0]
        order = np.arange(n) if order is None else np.asarray(order)
        if order.min() < 0 or order.max() >= n:
            raise ValueError(f"order must index rows 0..{n - 1}")
        rows = min(batch_size, n)
        self._workspace(rows)
        total = 0.0
        for s in range(0, order.shape[0], rows):
            idx = order[s : s + rows]
            B = idx.shape[0]
            # gather the batch into a preallocated buffer (indices checked above)
            xb = np.take(X, idx, axis=0, out=self._xb[:B], mode="clip")
            acts = [a[:B] for a in self._a]
            gs = [g[:B] for g in self._g]
            out = self._forward(xb, acts)
            total += B * loss_grad(out, y[idx], self.loss_name, gs[-1])
            self._backward(xb, acts, gs)
            self.optimizer.step(self.params, self.grads)
        return total / order.shape[0]

    def forward(self, X: np.ndarray) -> np.ndarray:
        """Network output before the loss's link (logits for cross-entropy), (n, k)."""
        X = np.ascontiguousarray(X, dtype=self.dtype)
        acts = [np.empty((X.shape[0], m), dtype=self.dtype) for m in self.sizes[1:]]
        return self._forward(X, acts)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Output through the link: softmax probabilities or raw outputs, like fastbp's."""
        out = self.forward(X)
        if self.loss_name == "cross_entropy":
            out -= out.max(axis=1, keepdims=True)
            np.exp(out, out=out)
            out /= out.sum(axis=1, keepdims=True)
        return out

    def loss(self, X: np.ndarray, y: np.ndarray) -> float:
        """Mean loss on (X, y), as fastbp's ``evaluate``; no parameter change."""
        X, y = self._check(X, y)
        out = self.forward(X)
        return loss_grad(out, y, self.loss_name, out)

    def _check(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        X = np.ascontiguousarray(X, dtype=self.dtype)
        if self.loss_name == "mse":
            y = np.asarray(y, dtype=self.dtype).reshape(X.shape[0], -1)
        else:
            y = np.asarray(y, dtype=np.intp)
        return X, y
