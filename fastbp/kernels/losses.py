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
``poisson``                  exp         (exp(a) - y) / (n k)
===========================  ==========  =========================================

The first two rows are why the link is fused: softmax followed by cross-entropy (and
sigmoid followed by binary cross-entropy) has the simple gradient ``p - y``, with no
``log(0)`` and no separate softmax Jacobian. Every loss is a mean over its elements, as
PyTorch's default reduction: cross-entropy over samples, the others over all n*k outputs.
The Poisson loss is the negative log-likelihood ``exp(a) - y a`` without the terms that
depend on ``y`` only (PyTorch's ``PoissonNLLLoss(log_input=True)``); its targets are counts
or rates ``y >= 0``. The log-rate is clipped at :data:`POISSON_MAX_LOG` inside ``exp``.

With sample weights ``w`` the mean becomes a weighted mean, ``sum(w_i l_i) / sum(w_i)``
(per element: divided by ``k sum(w_i)``), so a row of weight 0 contributes exactly nothing.

Kernels return the *sum* of per-element losses over their block (the caller divides by
the count, so row blocks can be summed), and take the normaliser ``scale`` for the
gradient. Integer labels (cross-entropy) arrive in ``yi``, float targets in ``yf``; the
unused one is an empty array, so each float dtype has a single compiled signature.
"""

from __future__ import annotations

import math

from numba import njit

from .._config import INLINE, SERIAL
from .activations import sigmoid, softplus

CROSS_ENTROPY, BINARY_CROSS_ENTROPY, MSE, HUBER, POISSON = range(5)

#: Public name -> integer code.
LOSSES: dict[str, int] = {
    "cross_entropy": CROSS_ENTROPY,
    "binary_cross_entropy": BINARY_CROSS_ENTROPY,
    "mse": MSE,
    "huber": HUBER,
    "poisson": POISSON,
}

HUBER_DELTA = 1.0
#: Poisson log-rates are clipped at this value (rates up to e^50, about 5e21) in the link,
#: the loss and its gradient, so that float32 stays finite for outputs up to 1e4: exp
#: overflows float32 past 88.7, and gradients summed over a batch need headroom beyond that.
POISSON_MAX_LOG = 50.0


@njit(**INLINE)
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


@njit(**INLINE)
def _row_weight(sw, i):
    """Weight of row ``i``: ``sw[i]``, or 1 when ``sw`` is empty (no sample weights)."""
    return sw[i] if sw.shape[0] > 0 else 1.0


@njit(**SERIAL)
def loss_grad(a, yi, yf, sw, loss, scale, g):
    """Loss sum over the block and g = dL/da, in one pass.

    Parameters
    ----------
    a : ndarray of shape (n, k)
        Network output (before the link).
    yi : int64 ndarray of shape (n,)
        Class labels in 0..k-1 (cross-entropy only; else may be empty).
    yf : ndarray of shape (n, k)
        Float targets (other losses; else may be empty).
    sw : ndarray of shape (n,) or (0,)
        Sample weights of the rows; empty means every row has weight 1.
    loss : int
        Loss code from :data:`LOSSES`.
    scale : float
        Gradient normaliser: ``1/W`` for cross-entropy, ``1/(W k)`` for the rest, with W
        the total weight of the whole batch (its row count when unweighted), not just
        this block's.
    g : ndarray of shape (n, k)
        Written with dL/da. May alias ``a``.

    Returns
    -------
    float
        Weighted sum of the per-sample (cross-entropy) or per-element losses over the block.
    """
    n, k = a.shape
    total = 0.0
    if loss == CROSS_ENTROPY:
        for i in range(n):
            w = _row_weight(sw, i)
            c = yi[i]
            zc = a[i, c]  # read before g (which may alias a) is overwritten
            total += w * (_softmax_row(a, i, g) - zc)
            # g[i] now holds softmax(a[i]): subtract the one-hot and scale
            s = w * scale
            for j in range(k):
                g[i, j] *= s
            g[i, c] -= s
    elif loss == BINARY_CROSS_ENTROPY:
        for i in range(n):
            w = _row_weight(sw, i)
            s = w * scale
            for j in range(k):
                x = a[i, j]
                t = yf[i, j]
                # -[t log s(x) + (1-t) log(1-s(x))] = softplus(x) - t x, stable for any x
                total += w * (softplus(x) - t * x)
                g[i, j] = (sigmoid(x) - t) * s
    elif loss == MSE:
        for i in range(n):
            w = _row_weight(sw, i)
            s = 2.0 * w * scale
            for j in range(k):
                r = a[i, j] - yf[i, j]
                total += w * r * r
                g[i, j] = r * s
    elif loss == HUBER:
        for i in range(n):
            w = _row_weight(sw, i)
            s = w * scale
            for j in range(k):
                r = a[i, j] - yf[i, j]
                if abs(r) <= HUBER_DELTA:
                    total += w * 0.5 * r * r
                    g[i, j] = r * s
                else:
                    total += w * HUBER_DELTA * (abs(r) - 0.5 * HUBER_DELTA)
                    g[i, j] = (HUBER_DELTA if r > 0 else -HUBER_DELTA) * s
    else:  # POISSON: log link, mean of exp(a) - y a
        for i in range(n):
            w = _row_weight(sw, i)
            s = w * scale
            for j in range(k):
                x = a[i, j]
                e = math.exp(min(x, POISSON_MAX_LOG))
                total += w * (e - yf[i, j] * x)
                g[i, j] = (e - yf[i, j]) * s
    return total


@njit(**SERIAL)
def loss_value(a, yi, yf, sw, loss):
    """Weighted sum of per-sample (cross-entropy) or per-element losses; no gradient.

    ``sw`` as in :func:`loss_grad` (empty: unweighted).
    """
    n, k = a.shape
    total = 0.0
    for i in range(n):
        w = _row_weight(sw, i)
        row = 0.0
        if loss == CROSS_ENTROPY:
            mx = a[i, 0]
            for j in range(1, k):
                if a[i, j] > mx:
                    mx = a[i, j]
            s = 0.0
            for j in range(k):
                s += math.exp(a[i, j] - mx)
            row = math.log(s) + mx - a[i, yi[i]]
        elif loss == BINARY_CROSS_ENTROPY:
            for j in range(k):
                row += softplus(a[i, j]) - yf[i, j] * a[i, j]
        elif loss == MSE:
            for j in range(k):
                r = a[i, j] - yf[i, j]
                row += r * r
        elif loss == HUBER:
            for j in range(k):
                r = abs(a[i, j] - yf[i, j])
                if r <= HUBER_DELTA:
                    row += 0.5 * r * r
                else:
                    row += HUBER_DELTA * (r - 0.5 * HUBER_DELTA)
        else:  # POISSON
            for j in range(k):
                row += math.exp(min(a[i, j], POISSON_MAX_LOG)) - yf[i, j] * a[i, j]
        total += w * row
    return total


@njit(**SERIAL)
def metric_sums_(a, yi, yf, sw, loss, acc):
    """Add this block's weighted metric sums to ``acc`` (float64, length 3).

    ``acc[0]``: correct predictions (cross-entropy: argmax == label, per sample;
    binary cross-entropy: each output thresholded at 0.5, per element); ``acc[1]``: sum of
    absolute errors and ``acc[2]``: sum of squared errors, per element, between the
    prediction after the link and the target (one-hot labels for cross-entropy). Dividing
    by the total weight (times k where per element) gives the means that
    ``fastbp.metrics`` computes from ``predict``.
    """
    n, k = a.shape
    for i in range(n):
        w = _row_weight(sw, i)
        if loss == CROSS_ENTROPY:
            mx = a[i, 0]
            best = 0
            for j in range(1, k):
                if a[i, j] > mx:
                    mx = a[i, j]
                    best = j
            s = 0.0
            for j in range(k):
                s += math.exp(a[i, j] - mx)
            ae = 0.0
            se = 0.0
            for j in range(k):
                r = math.exp(a[i, j] - mx) / s - (1.0 if j == yi[i] else 0.0)
                ae += abs(r)
                se += r * r
            acc[0] += w * (1.0 if best == yi[i] else 0.0)
            acc[1] += w * ae
            acc[2] += w * se
        else:
            hits = 0.0
            ae = 0.0
            se = 0.0
            for j in range(k):
                x = a[i, j]
                t = yf[i, j]
                if loss == BINARY_CROSS_ENTROPY:
                    p = sigmoid(x)
                    hits += 1.0 if (p > 0.5) == (t > 0.5) else 0.0
                elif loss == POISSON:
                    p = math.exp(min(x, POISSON_MAX_LOG))
                else:
                    p = x
                ae += abs(p - t)
                se += (p - t) * (p - t)
            acc[0] += w * hits
            acc[1] += w * ae
            acc[2] += w * se


@njit(**SERIAL)
def link_(a, loss):
    """Apply the loss's output link in place: softmax rows, sigmoid, exp, or nothing."""
    n, k = a.shape
    if loss == CROSS_ENTROPY:
        for i in range(n):
            _softmax_row(a, i, a)
    elif loss == BINARY_CROSS_ENTROPY:
        for i in range(n):
            for j in range(k):
                a[i, j] = sigmoid(a[i, j])
    elif loss == POISSON:
        for i in range(n):
            for j in range(k):
                a[i, j] = math.exp(min(a[i, j], POISSON_MAX_LOG))
