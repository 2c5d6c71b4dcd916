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

Each loss is one :class:`Loss` entry of :data:`REGISTRY`: its name and its four functions
(gradient, value, metric sums, link), written side by side below. One kernel per (loss,
dtype) is compiled from them on first use (:func:`loss_address`) and called through its
address by the engine (``launch.py``), so a network compiles only its own loss.
:func:`loss_grad`, :func:`loss_value`, :func:`metric_sums_` and :func:`link_` call it from
Python (tests, diagnostics, validation metrics).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from numba import njit, types

from .._config import INLINE, SERIAL
from .activations import sigmoid, softplus
from .cache import prompt
from .launch import cached_callback, call_f64, compile_callback, cview, specialise

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


@njit(**INLINE)
def _add_errors(acc, w, p, t, hit):
    """acc += w * (hit, |p - t|, (p - t)^2) for one element."""
    acc[0] += w * hit
    acc[1] += w * abs(p - t)
    acc[2] += w * (p - t) * (p - t)


@njit(**INLINE)
def _no_link(a):
    return


# ---------------------------------------------------------------- cross-entropy (softmax)


@njit(**INLINE)
def _ce_grad(a, yi, yf, sw, scale, g):
    total = 0.0
    for i in range(a.shape[0]):
        w = _row_weight(sw, i)
        c = yi[i]
        zc = a[i, c]  # read before g (which may alias a) is overwritten
        total += w * (_softmax_row(a, i, g) - zc)
        # g[i] now holds softmax(a[i]): subtract the one-hot and scale
        s = w * scale
        for j in range(a.shape[1]):
            g[i, j] *= s
        g[i, c] -= s
    return total


@njit(**INLINE)
def _ce_value(a, yi, yf, sw):
    n, k = a.shape
    total = 0.0
    for i in range(n):
        mx = a[i, 0]
        for j in range(1, k):
            if a[i, j] > mx:
                mx = a[i, j]
        s = 0.0
        for j in range(k):
            s += math.exp(a[i, j] - mx)
        total += _row_weight(sw, i) * (math.log(s) + mx - a[i, yi[i]])
    return total


@njit(**INLINE)
def _ce_metrics(a, yi, yf, sw, acc):
    n, k = a.shape
    for i in range(n):
        w = _row_weight(sw, i)
        mx = a[i, 0]
        best = 0
        for j in range(1, k):
            if a[i, j] > mx:
                mx = a[i, j]
                best = j
        s = 0.0
        for j in range(k):
            s += math.exp(a[i, j] - mx)
        for j in range(k):
            _add_errors(acc, w, math.exp(a[i, j] - mx) / s, 1.0 if j == yi[i] else 0.0, 0.0)
        acc[0] += w * (1.0 if best == yi[i] else 0.0)


@njit(**INLINE)
def _ce_link(a):
    for i in range(a.shape[0]):
        _softmax_row(a, i, a)


# ---------------------------------------------------------------- binary cross-entropy (sigmoid)


@njit(**INLINE)
def _bce_grad(a, yi, yf, sw, scale, g):
    total = 0.0
    for i in range(a.shape[0]):
        w = _row_weight(sw, i)
        s = w * scale
        for j in range(a.shape[1]):
            x = a[i, j]
            t = yf[i, j]
            # -[t log s(x) + (1-t) log(1-s(x))] = softplus(x) - t x, stable for any x
            total += w * (softplus(x) - t * x)
            g[i, j] = (sigmoid(x) - t) * s
    return total


@njit(**INLINE)
def _bce_value(a, yi, yf, sw):
    total = 0.0
    for i in range(a.shape[0]):
        row = 0.0
        for j in range(a.shape[1]):
            row += softplus(a[i, j]) - yf[i, j] * a[i, j]
        total += _row_weight(sw, i) * row
    return total


@njit(**INLINE)
def _bce_metrics(a, yi, yf, sw, acc):
    for i in range(a.shape[0]):
        w = _row_weight(sw, i)
        for j in range(a.shape[1]):
            p = sigmoid(a[i, j])
            t = yf[i, j]
            _add_errors(acc, w, p, t, 1.0 if (p > 0.5) == (t > 0.5) else 0.0)


@njit(**INLINE)
def _bce_link(a):
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            a[i, j] = sigmoid(a[i, j])


# ---------------------------------------------------------------- mse and huber (identity link)


@njit(**INLINE)
def _mse_grad(a, yi, yf, sw, scale, g):
    total = 0.0
    for i in range(a.shape[0]):
        w = _row_weight(sw, i)
        s = 2.0 * w * scale
        for j in range(a.shape[1]):
            r = a[i, j] - yf[i, j]
            total += w * r * r
            g[i, j] = r * s
    return total


@njit(**INLINE)
def _mse_value(a, yi, yf, sw):
    total = 0.0
    for i in range(a.shape[0]):
        row = 0.0
        for j in range(a.shape[1]):
            r = a[i, j] - yf[i, j]
            row += r * r
        total += _row_weight(sw, i) * row
    return total


@njit(**INLINE)
def _identity_metrics(a, yi, yf, sw, acc):
    for i in range(a.shape[0]):
        w = _row_weight(sw, i)
        for j in range(a.shape[1]):
            _add_errors(acc, w, a[i, j], yf[i, j], 0.0)


@njit(**INLINE)
def _huber_grad(a, yi, yf, sw, scale, g):
    total = 0.0
    for i in range(a.shape[0]):
        w = _row_weight(sw, i)
        s = w * scale
        for j in range(a.shape[1]):
            r = a[i, j] - yf[i, j]
            if abs(r) <= HUBER_DELTA:
                total += w * 0.5 * r * r
                g[i, j] = r * s
            else:
                total += w * HUBER_DELTA * (abs(r) - 0.5 * HUBER_DELTA)
                g[i, j] = (HUBER_DELTA if r > 0 else -HUBER_DELTA) * s
    return total


@njit(**INLINE)
def _huber_value(a, yi, yf, sw):
    total = 0.0
    for i in range(a.shape[0]):
        row = 0.0
        for j in range(a.shape[1]):
            r = abs(a[i, j] - yf[i, j])
            if r <= HUBER_DELTA:
                row += 0.5 * r * r
            else:
                row += HUBER_DELTA * (r - 0.5 * HUBER_DELTA)
        total += _row_weight(sw, i) * row
    return total


# ---------------------------------------------------------------- poisson (log link)


@njit(**INLINE)
def _poisson_grad(a, yi, yf, sw, scale, g):
    total = 0.0
    for i in range(a.shape[0]):
        w = _row_weight(sw, i)
        s = w * scale
        for j in range(a.shape[1]):
            x = a[i, j]
            e = math.exp(min(x, POISSON_MAX_LOG))
            total += w * (e - yf[i, j] * x)
            g[i, j] = (e - yf[i, j]) * s
    return total


@njit(**INLINE)
def _poisson_value(a, yi, yf, sw):
    total = 0.0
    for i in range(a.shape[0]):
        row = 0.0
        for j in range(a.shape[1]):
            row += math.exp(min(a[i, j], POISSON_MAX_LOG)) - yf[i, j] * a[i, j]
        total += _row_weight(sw, i) * row
    return total


@njit(**INLINE)
def _poisson_metrics(a, yi, yf, sw, acc):
    for i in range(a.shape[0]):
        w = _row_weight(sw, i)
        for j in range(a.shape[1]):
            _add_errors(acc, w, math.exp(min(a[i, j], POISSON_MAX_LOG)), yf[i, j], 0.0)


@njit(**INLINE)
def _poisson_link(a):
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            a[i, j] = math.exp(min(a[i, j], POISSON_MAX_LOG))


# ---------------------------------------------------------------- the registry


class Loss(NamedTuple):
    """One loss: its public name and four ``@njit(inline="always")`` functions over a
    block of rows (``sw`` empty: weight 1).

    ``grad(a, yi, yf, sw, scale, g)`` writes dL/da (times ``scale``) into ``g`` (which
    may alias ``a``) and returns the weighted loss sum; ``value(a, yi, yf, sw)`` returns
    that sum alone; ``metrics(a, yi, yf, sw, acc)`` adds the weighted sums of correct
    predictions, absolute and squared errors after the link to ``acc`` (float64, 3); see
    :func:`metric_sums_`; ``link(a)`` applies the output link in place.
    """

    name: str
    grad: Callable
    value: Callable
    metrics: Callable
    link: Callable


#: Every loss, in code order.
REGISTRY: tuple[Loss, ...] = (
    Loss("cross_entropy", _ce_grad, _ce_value, _ce_metrics, _ce_link),
    Loss("binary_cross_entropy", _bce_grad, _bce_value, _bce_metrics, _bce_link),
    Loss("mse", _mse_grad, _mse_value, _identity_metrics, _no_link),
    Loss("huber", _huber_grad, _huber_value, _identity_metrics, _no_link),
    Loss("poisson", _poisson_grad, _poisson_value, _poisson_metrics, _poisson_link),
)

#: Public name -> integer code (the index in :data:`REGISTRY`).
LOSSES: dict[str, int] = {loss.name: code for code, loss in enumerate(REGISTRY)}

CROSS_ENTROPY, BINARY_CROSS_ENTROPY, MSE, HUBER, POISSON = (LOSSES[loss.name] for loss in REGISTRY)

# ---------------------------------------------------------------- the kernel

GRAD, VALUE, METRICS, LINK = range(4)  # the four functions, each its own kernel
_MODE_NAMES = ("grad", "value", "metrics", "link")

LOSS_SIG = types.float64(
    types.voidptr, types.voidptr, types.voidptr, types.voidptr, types.voidptr, types.intp, types.intp, types.intp,
    types.intp, types.intp, types.float64, types.intp,
)  # fmt: skip

F_GRAD = F_VALUE = F_METRICS = F_LINK = None  # bound per compiled copy of loss_kernel
DTYPE = np.float64
MODE = GRAD


def loss_kernel(ap, yip, yfp, swp, outp, n, k, nyi, nyf, nsw, scale, mode):
    """One of a loss's four functions as a C entry point, compiled per ``MODE``:
    :data:`GRAD` (``out`` is g), :data:`VALUE`, :data:`METRICS` (``out`` is acc, float64)
    or :data:`LINK` (in place on ``a``); the other branches are pruned at compile time (a
    comparison of two constants). Arrays: ``a`` (n, k), ``yi`` (nyi,), ``yf`` (nyf, k),
    ``sw`` (nsw,) float64. ``mode`` is unused (one signature for all four)."""
    a = cview(ap, (n, k), DTYPE)
    yi = cview(yip, (nyi,), np.int64)
    yf = cview(yfp, (nyf, k), DTYPE)
    sw = cview(swp, (nsw,), np.float64)
    if MODE == GRAD:
        return F_GRAD(a, yi, yf, sw, scale, cview(outp, (n, k), DTYPE))
    if MODE == VALUE:
        return F_VALUE(a, yi, yf, sw)
    if MODE == METRICS:
        F_METRICS(a, yi, yf, sw, cview(outp, (3,), np.float64))
    if MODE == LINK:
        F_LINK(a)
    return 0.0


def loss_address(code: int, dtype: object, mode: int) -> int:
    """Address of :func:`loss_kernel` for loss ``code``, float ``dtype`` and ``mode``
    (compiled, or loaded from Numba's cache, on first use in a process; valid in this
    process only)."""
    dt = np.dtype(dtype)
    loss = REGISTRY[code]

    def build() -> object:
        glb = {"F_GRAD": loss.grad, "F_VALUE": loss.value, "F_METRICS": loss.metrics,
               "F_LINK": loss.link, "DTYPE": dt.type, "MODE": int(mode)}  # fmt: skip
        suffix = f"{loss.name}_{dt.name}_{_MODE_NAMES[mode]}"
        return compile_callback(LOSS_SIG, specialise(loss_kernel, suffix, glb))

    return cached_callback((loss_kernel, int(code), dt, int(mode)), build).address


_kernel_sets: dict[tuple, np.ndarray] = {}


def loss_kernels(code: int, dtype: object, *modes: int) -> np.ndarray:
    """int64 addresses of loss ``code``'s kernels in ``dtype``, indexed by mode; 0 for the
    modes not asked for (never compiled). The same array for the same request: read it,
    never write it."""
    key = (code, dtype, modes)
    out = _kernel_sets.get(key)
    if out is None:
        out = np.zeros(4, dtype=np.int64)
        for mode in modes:
            out[mode] = loss_address(code, dtype, mode)
        _kernel_sets[key] = out
    return out


@njit(**INLINE)
def call_loss(lossk, a, yi, yf, sw, out, scale, mode):
    """Call kernel ``lossk[mode]`` (:func:`loss_kernels`) from compiled code; every array
    C-contiguous (``out``: g for :data:`GRAD`, acc for :data:`METRICS`, else anything)."""
    return call_f64(
        lossk[mode], (a, yi, yf, sw, out, a.shape[0], a.shape[1], yi.shape[0], yf.shape[0], sw.shape[0], scale, mode)
    )  # fmt: skip


@njit(**INLINE)
def call_loss_at(lossk, a, n, k, yi, nyi, yf, nyf, sw, nsw, out, scale, mode):
    """:func:`call_loss` on addresses: ``a`` (n, k), ``yi`` (nyi,) int64, ``yf`` (nyf, k),
    ``sw`` (nsw,) float64 and ``out`` as there, each the address of a C-contiguous block
    (for callers written on addresses, compiled once for every dtype)."""
    return call_f64(lossk[mode], (a, yi, yf, sw, out, n, k, nyi, nyf, nsw, scale, mode))


@njit(**SERIAL)
def _call_loss_py(addr, a, yi, yf, sw, out, scale, mode):
    return call_f64(
        addr, (a, yi, yf, sw, out, a.shape[0], a.shape[1], yi.shape[0], yf.shape[0], sw.shape[0], scale, mode)
    )  # fmt: skip


def _c(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x)


def loss_grad(a: np.ndarray, yi: np.ndarray, yf: np.ndarray, sw: np.ndarray, loss: int, scale: float,
              g: np.ndarray) -> float:  # fmt: skip
    """Loss sum over the block and g = dL/da, in one pass (from Python).

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
    g : C-contiguous ndarray of shape (n, k)
        Written with dL/da. May be ``a``.

    Returns
    -------
    float
        Weighted sum of the per-sample (cross-entropy) or per-element losses over the block.
    """
    yf = yf.reshape(-1, a.shape[1]) if yf.size == 0 else yf
    return _call_loss_py(loss_address(loss, a.dtype, GRAD), _c(a), _c(yi), _c(yf),
                         _c(sw).astype(np.float64, copy=False), g, float(scale), GRAD)  # fmt: skip


def loss_value(a: np.ndarray, yi: np.ndarray, yf: np.ndarray, sw: np.ndarray, loss: int) -> float:
    """Weighted sum of per-sample (cross-entropy) or per-element losses; no gradient.
    ``sw`` as in :func:`loss_grad` (empty: unweighted)."""
    yf = yf.reshape(-1, a.shape[1]) if yf.size == 0 else yf
    return _call_loss_py(loss_address(loss, a.dtype, VALUE), _c(a), _c(yi), _c(yf),
                         _c(sw).astype(np.float64, copy=False), np.zeros(3), 0.0, VALUE)  # fmt: skip


def metric_sums_(a: np.ndarray, yi: np.ndarray, yf: np.ndarray, sw: np.ndarray, loss: int, acc: np.ndarray) -> None:
    """Add this block's weighted metric sums to ``acc`` (float64, length 3).

    ``acc[0]``: correct predictions (cross-entropy: argmax == label, per sample;
    binary cross-entropy: each output thresholded at 0.5, per element); ``acc[1]``: sum of
    absolute errors and ``acc[2]``: sum of squared errors, per element, between the
    prediction after the link and the target (one-hot labels for cross-entropy). Dividing
    by the total weight (times k where per element) gives the means that
    ``fastbp.metrics`` computes from ``predict``.
    """
    yf = yf.reshape(-1, a.shape[1]) if yf.size == 0 else yf
    _call_loss_py(loss_address(loss, a.dtype, METRICS), _c(a), _c(yi), _c(yf), _c(sw).astype(np.float64, copy=False),
                  acc, 0.0, METRICS)  # fmt: skip


def link_(a: np.ndarray, loss: int) -> None:
    """Apply the loss's output link in place (C-contiguous ``a``): softmax rows, sigmoid,
    exp, or nothing."""
    e = np.zeros(0)
    _call_loss_py(loss_address(loss, a.dtype, LINK), a, np.zeros(0, np.int64), a[:0], e, e, 0.0, LINK)


prompt(globals())  # load this module's cached kernels without Numba's registry refresh (cache.py)
