"""Losses fused with their output link: one pass gives the loss and dL/da.

``a`` is the output of the network's last layer (usually linear, so ``a = z``). Each
loss applies its link inside the pass and writes the gradient with respect to ``a``:

===========================  ==========  =========================================
loss                         link        dL/da (n rows, k outputs)
===========================  ==========  =========================================
``cross_entropy``            softmax     (softmax(a) - onehot(y)) / n
``binary_cross_entropy``     sigmoid     (sigmoid(a) - y) / (n k)
``mse``                      identity    2 (a - y) / (n k)
``huber`` (delta 1)          identity    clip(a - y, -1, 1) / (n k)
===========================  ==========  =========================================

The first two rows are why the link is fused: softmax followed by cross-entropy (and
sigmoid followed by binary cross-entropy) has the simple gradient ``p - y``, with no
``log(0)`` and no separate softmax Jacobian. Every loss is a mean over its elements, as
PyTorch's default reduction: cross-entropy over samples, the others over all n*k outputs.

Kernels return the *sum* of per-element losses over their block (the caller divides by
the count, so row blocks can be summed), and take the normaliser ``scale`` for the
gradient. Integer labels (cross-entropy) arrive in ``yi``, float targets in ``yf``; the
unused one is an empty array, so each float dtype has a single compiled signature.
"""

from __future__ import annotations

import math

from numba import njit

from .._config import SERIAL
from .activations import sigmoid, softplus

CROSS_ENTROPY, BINARY_CROSS_ENTROPY, MSE, HUBER = range(4)

#: Public name -> integer code.
LOSSES: dict[str, int] = {
    "cross_entropy": CROSS_ENTROPY,
    "binary_cross_entropy": BINARY_CROSS_ENTROPY,
    "mse": MSE,
    "huber": HUBER,
}

HUBER_DELTA = 1.0


@njit(**SERIAL)
def _softmax_row(a, i, p):
    """p[i] = softmax(a[i]); returns log(sum(exp(a[i] - max))) + max = logsumexp(a[i])."""
    k = a.shape[1]
    mx = a[i, 0]
    for j in range(1, k):
        if a[i, j] > mx:
            mx = a[i, j]
    s = 0.0
    for j in range(k):
        e = math.exp(a[i, j] - mx)
        p[i, j] = e
        s += e
    inv = 1.0 / s
    for j in range(k):
        p[i, j] *= inv
    return math.log(s) + mx


@njit(**SERIAL)
def loss_grad(a, yi, yf, loss, scale, g):
    """Loss sum over the block and g = dL/da, in one pass.

    Parameters
    ----------
    a : ndarray of shape (n, k)
        Network output (before the link).
    yi : int64 ndarray of shape (n,)
        Class labels in 0..k-1 (cross-entropy only; else may be empty).
    yf : ndarray of shape (n, k)
        Float targets (other losses; else may be empty).
    loss : int
        Loss code from :data:`LOSSES`.
    scale : float
        Gradient normaliser: ``1/N`` for cross-entropy, ``1/(N k)`` for the rest, with N
        the number of rows in the whole batch (not just this block).
    g : ndarray of shape (n, k)
        Written with dL/da. May alias ``a``.

    Returns
    -------
    float
        Sum of the per-sample (cross-entropy) or per-element losses over the block.
    """
    n, k = a.shape
    total = 0.0
    if loss == CROSS_ENTROPY:
        for i in range(n):
            c = yi[i]
            zc = a[i, c]  # read before g (which may alias a) is overwritten
            total += _softmax_row(a, i, g) - zc
            # g[i] now holds softmax(a[i]): subtract the one-hot and scale
            for j in range(k):
                g[i, j] *= scale
            g[i, c] -= scale
    elif loss == BINARY_CROSS_ENTROPY:
        for i in range(n):
            for j in range(k):
                x = a[i, j]
                t = yf[i, j]
                # -[t log s(x) + (1-t) log(1-s(x))] = softplus(x) - t x, stable for any x
                total += softplus(x) - t * x
                g[i, j] = (sigmoid(x) - t) * scale
    elif loss == MSE:
        for i in range(n):
            for j in range(k):
                r = a[i, j] - yf[i, j]
                total += r * r
                g[i, j] = 2.0 * r * scale
    else:  # HUBER
        for i in range(n):
            for j in range(k):
                r = a[i, j] - yf[i, j]
                if abs(r) <= HUBER_DELTA:
                    total += 0.5 * r * r
                    g[i, j] = r * scale
                else:
                    total += HUBER_DELTA * (abs(r) - 0.5 * HUBER_DELTA)
                    g[i, j] = (HUBER_DELTA if r > 0 else -HUBER_DELTA) * scale
    return total


@njit(**SERIAL)
def loss_value(a, yi, yf, loss):
    """Sum of per-sample (cross-entropy) or per-element losses; no gradient."""
    n, k = a.shape
    total = 0.0
    if loss == CROSS_ENTROPY:
        for i in range(n):
            mx = a[i, 0]
            for j in range(1, k):
                if a[i, j] > mx:
                    mx = a[i, j]
            s = 0.0
            for j in range(k):
                s += math.exp(a[i, j] - mx)
            total += math.log(s) + mx - a[i, yi[i]]
    elif loss == BINARY_CROSS_ENTROPY:
        for i in range(n):
            for j in range(k):
                total += softplus(a[i, j]) - yf[i, j] * a[i, j]
    elif loss == MSE:
        for i in range(n):
            for j in range(k):
                r = a[i, j] - yf[i, j]
                total += r * r
    else:
        for i in range(n):
            for j in range(k):
                r = abs(a[i, j] - yf[i, j])
                if r <= HUBER_DELTA:
                    total += 0.5 * r * r
                else:
                    total += HUBER_DELTA * (r - 0.5 * HUBER_DELTA)
    return total


@njit(**SERIAL)
def link_(a, loss):
    """Apply the loss's output link in place: softmax rows, sigmoid, or nothing."""
    n, k = a.shape
    if loss == CROSS_ENTROPY:
        for i in range(n):
            _softmax_row(a, i, a)
    elif loss == BINARY_CROSS_ENTROPY:
        for i in range(n):
            for j in range(k):
                a[i, j] = sigmoid(a[i, j])
