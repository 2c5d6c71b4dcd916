"""Optimizer updates: one fused, parallel pass over all parameters.

All parameters of a network live in one flat array ``theta`` (every layer's weights
first, then every layer's biases, see ``fastbp.model``), so one call updates the whole
network. The pass also finishes the backward pass: the gradient of element ``i`` is the
sum of the per-thread partial gradients ``gpart[:nparts, i]``, added in a fixed order, so
a given thread count always gives the same bits.

Weight decay applies to the first ``n_decay`` elements of ``theta`` (the weights), not to
biases, as scikit-learn's ``alpha`` and Keras' ``kernel_regularizer`` do.

``hyper`` holds the hyper-parameters in the parameters' dtype, at these indices:

========  ==========  ==========  ==========  ==========  ==========  ==========
code      [0]         [1]         [2]         [3]         [4]         [5]
========  ==========  ==========  ==========  ==========  ==========  ==========
SGD       lr          momentum    -           -           weight_decay  nesterov
ADAM      lr          beta1       beta2       eps         weight_decay  -
ADAMW     lr          beta1       beta2       eps         weight_decay  -
RMSPROP   lr          momentum    alpha       eps         weight_decay  -
========  ==========  ==========  ==========  ==========  ==========  ==========

The update rules are PyTorch's (``torch.optim``), written out in each branch.
"""

from __future__ import annotations

import math

from numba import njit, prange

from .._config import PARALLEL, SERIAL

SGD, ADAM, ADAMW, RMSPROP = range(4)

#: Public name -> integer code.
OPTIMIZERS: dict[str, int] = {"sgd": SGD, "adam": ADAM, "adamw": ADAMW, "rmsprop": RMSPROP}

N_HYPER = 6


@njit(**SERIAL)
def _grad(gpart, nparts, i):
    """Sum of the per-thread partial gradients of element i, in thread order."""
    g = gpart[0, i]
    for t in range(1, nparts):
        g += gpart[t, i]
    return g


@njit(**PARALLEL)
def reduce_partials(gpart, nparts, out):
    """out[i] = sum_t gpart[t, i] for t < nparts. Parallel over elements."""
    for i in prange(out.shape[0]):
        out[i] = _grad(gpart, nparts, i)


@njit(**PARALLEL)
def optimizer_update_(theta, gpart, nparts, n_decay, opt, hyper, step, m, v):
    """One optimizer step on ``theta`` from partial gradients. Parallel over elements.

    Parameters
    ----------
    theta : ndarray of shape (P,)
        All parameters; updated in place.
    gpart : ndarray of shape (T, P)
        Per-thread partial gradients; rows ``:nparts`` are summed.
    nparts : int
    n_decay : int
        Weight decay applies to ``theta[:n_decay]``.
    opt : int
        Optimizer code from :data:`OPTIMIZERS`.
    hyper : ndarray of shape (N_HYPER,)
        Hyper-parameters, laid out as in the module docstring.
    step : int
        1-based step number (Adam's bias correction).
    m, v : ndarray of shape (P,) or (0,)
        Optimizer state, updated in place: momentum / first moment in ``m``, second moment
        in ``v``. Unused state may be empty.
    """
    P = theta.shape[0]
    lr = hyper[0]
    h1 = hyper[1]
    h2 = hyper[2]
    eps = hyper[3]
    wd = hyper[4]
    if opt == SGD:
        nesterov = hyper[5] != 0
        if h1 == 0:
            for i in prange(P):
                g = _grad(gpart, nparts, i)
                if i < n_decay:
                    g += wd * theta[i]
                theta[i] -= lr * g
        else:
            for i in prange(P):
                g = _grad(gpart, nparts, i)
                if i < n_decay:
                    g += wd * theta[i]
                # buf starts at zero, so the first step gives buf = g, as torch's clone(g)
                buf = h1 * m[i] + g
                m[i] = buf
                if nesterov:
                    g = g + h1 * buf
                else:
                    g = buf
                theta[i] -= lr * g
    elif opt == ADAM or opt == ADAMW:
        decoupled = opt == ADAMW
        bc1 = 1.0 - h1**step
        bc2 = 1.0 - h2**step
        step_size = lr / bc1
        inv_sqrt_bc2 = 1.0 / math.sqrt(bc2)
        for i in prange(P):
            g = _grad(gpart, nparts, i)
            if i < n_decay:
                if decoupled:
                    theta[i] *= 1.0 - lr * wd  # AdamW: decay the weight, not the gradient
                else:
                    g += wd * theta[i]  # Adam: L2 penalty added to the gradient
            mi = h1 * m[i] + (1.0 - h1) * g
            vi = h2 * v[i] + (1.0 - h2) * g * g
            m[i] = mi
            v[i] = vi
            theta[i] -= step_size * mi / (math.sqrt(vi) * inv_sqrt_bc2 + eps)
    else:  # RMSPROP
        for i in prange(P):
            g = _grad(gpart, nparts, i)
            if i < n_decay:
                g += wd * theta[i]
            vi = h2 * v[i] + (1.0 - h2) * g * g
            v[i] = vi
            step_i = g / (math.sqrt(vi) + eps)
            if h1 > 0:
                buf = h1 * m[i] + step_i
                m[i] = buf
                step_i = buf
            theta[i] -= lr * step_i
