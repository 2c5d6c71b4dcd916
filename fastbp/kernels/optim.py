"""Optimizer updates: one fused, parallel pass over all parameters.

All parameters of a network live in one flat array ``theta`` (every layer's weights
first, then every layer's biases, see ``fastbp.model``), so one call updates the whole
network. The pass also finishes the backward pass: the gradient is the sum of the
per-thread partial gradients ``gpart[:nparts]``, added in a fixed order, so a given thread
count always gives the same bits. The work goes in chunks of :data:`CHUNK` elements, one
thread a chunk: sum the partials of the chunk into ``gpart[0]`` (a vectorised pass),
then update it while it is in cache.

Weight decay applies to the first ``n_decay`` elements of ``theta`` (the weights), not to
biases, as scikit-learn's ``alpha`` and Keras' ``kernel_regularizer`` do. Each chunk is
split at ``n_decay`` into two plain loops, so there is no branch per element.

``hyper`` holds the hyper-parameters in float64, exactly as the user gave them, at these
indices:

========  ==========  ==========  ==========  ==========  ============  ==========
code      [0]         [1]         [2]         [3]         [4]           [5]
========  ==========  ==========  ==========  ==========  ============  ==========
SGD       lr          momentum    -           -           weight_decay  nesterov
ADAM      lr          beta1       beta2       eps         weight_decay  -
ADAMW     lr          beta1       beta2       eps         weight_decay  -
RMSPROP   lr          momentum    alpha       eps         weight_decay  -
========  ==========  ==========  ==========  ==========  ============  ==========

Step-dependent factors (Adam's bias corrections ``1 - beta^t``, which cancel badly in
float32) are computed in float64, then every coefficient is stored once per step in
``coef``, a scratch array of the parameters' dtype, so the per-element arithmetic stays in
that dtype.

The update rules are PyTorch's (``torch.optim``), written out in each branch.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .._config import INLINE, PARALLEL, SERIAL

SGD, ADAM, ADAMW, RMSPROP = range(4)

#: Public name -> integer code.
OPTIMIZERS: dict[str, int] = {"sgd": SGD, "adam": ADAM, "adamw": ADAMW, "rmsprop": RMSPROP}

N_HYPER = 6
#: Length of the ``coef`` scratch array.
N_COEF = 12
#: Elements per chunk of the update (one thread's unit of work).
CHUNK = 4096
#: Up to this many chunks (20k parameters), the gradient sum and the update run on one
#: thread. Measured on 2 cores, per step: 17k parameters, SGD: 12 us on one thread against
#: 14 us in two parallel regions (~5 us each to start and join); 30k, Adam: 24 us against
#: 13 us, so the cut sits between.
SERIAL_CHUNKS = 5

# coef layout
_LR, _H1, _H2, _EPS, _WD, _STEP_SIZE, _INV_SQRT_BC2, _ONE_M_H1, _ONE_M_H2, _ZERO, _KEEP, _ONE = range(N_COEF)


@njit(**INLINE)
def _coefficients(opt, hyper, step, coef):
    """Fill ``coef`` (parameters' dtype) from ``hyper`` (float64) for step ``step``."""
    lr, h1, h2, eps, wd = hyper[0], hyper[1], hyper[2], hyper[3], hyper[4]
    coef[_LR] = lr
    coef[_H1] = h1
    coef[_H2] = h2
    coef[_EPS] = eps
    coef[_WD] = wd
    coef[_ONE_M_H1] = 1.0 - h1
    coef[_ONE_M_H2] = 1.0 - h2
    coef[_ZERO] = 0.0
    coef[_ONE] = 1.0
    coef[_KEEP] = 1.0 - lr * wd
    if opt == ADAM or opt == ADAMW:
        coef[_STEP_SIZE] = lr / (1.0 - h1**step)
        coef[_INV_SQRT_BC2] = 1.0 / math.sqrt(1.0 - h2**step)
    else:
        coef[_STEP_SIZE] = lr
        coef[_INV_SQRT_BC2] = 1.0


@njit(**INLINE)
def _sum_partials_(gpart, nparts, lo, hi):
    """gpart[0, lo:hi] += gpart[t, lo:hi] for t = 1 .. nparts-1, in that order."""
    # loops over slices from 0: an index starting at an arbitrary lo would keep Numba's
    # negative-index wraparound check in the loop, which stops LLVM vectorising it
    g0 = gpart[0, lo:hi]
    for t in range(1, nparts):
        gt = gpart[t, lo:hi]
        for i in range(hi - lo):
            g0[i] += gt[i]


@njit(**SERIAL)
def _update_range(opt, theta, g, m, v, coef, wd, keep, nesterov):
    """Update ``theta`` from the summed gradient ``g`` (slices of one chunk; ``m``/``v`` may
    be empty when the optimizer does not use them).

    ``wd`` is the L2 coefficient added to the gradient (``wd * theta``) and ``keep`` the
    decoupled factor applied to the weight (AdamW: ``1 - lr * weight_decay``); the caller
    passes zero and one where weight decay does not apply.
    """
    lr = coef[_LR]
    h1 = coef[_H1]
    h2 = coef[_H2]
    eps = coef[_EPS]
    if opt == SGD:
        if h1 == 0:
            for i in range(theta.shape[0]):
                theta[i] -= lr * (g[i] + wd * theta[i])
        elif nesterov:
            for i in range(theta.shape[0]):
                gi = g[i] + wd * theta[i]
                # the buffer starts at zero, so step 1 gives buf = g, as torch's clone(g)
                buf = h1 * m[i] + gi
                m[i] = buf
                theta[i] -= lr * (gi + h1 * buf)
        else:
            for i in range(theta.shape[0]):
                buf = h1 * m[i] + (g[i] + wd * theta[i])
                m[i] = buf
                theta[i] -= lr * buf
    elif opt == ADAM or opt == ADAMW:
        step_size = coef[_STEP_SIZE]
        inv_sqrt_bc2 = coef[_INV_SQRT_BC2]
        a1 = coef[_ONE_M_H1]
        a2 = coef[_ONE_M_H2]
        for i in range(theta.shape[0]):
            gi = g[i] + wd * theta[i]
            mi = h1 * m[i] + a1 * gi
            vi = h2 * v[i] + a2 * gi * gi
            m[i] = mi
            v[i] = vi
            theta[i] = keep * theta[i] - step_size * mi / (np.sqrt(vi) * inv_sqrt_bc2 + eps)
    else:  # RMSPROP
        a2 = coef[_ONE_M_H2]
        if h1 == 0:
            for i in range(theta.shape[0]):
                gi = g[i] + wd * theta[i]
                vi = h2 * v[i] + a2 * gi * gi
                v[i] = vi
                theta[i] -= lr * gi / (np.sqrt(vi) + eps)
        else:
            for i in range(theta.shape[0]):
                gi = g[i] + wd * theta[i]
                vi = h2 * v[i] + a2 * gi * gi
                v[i] = vi
                buf = h1 * m[i] + gi / (np.sqrt(vi) + eps)
                m[i] = buf
                theta[i] -= lr * buf


@njit(**SERIAL)
def n_chunks(P):
    """Number of CHUNK-sized pieces of a P-element parameter array."""
    return (P + CHUNK - 1) // CHUNK


@njit(**SERIAL)
def prepare_step(opt, hyper, step, coef):
    """Fill ``coef`` for step ``step``; returns (wd, keep, nesterov) for the weights.

    ``wd`` is the L2 coefficient added to the gradient and ``keep`` the decoupled decay
    factor applied to the weight (AdamW only; 1 otherwise).
    """
    _coefficients(opt, hyper, step, coef)
    if opt == ADAMW:
        return coef[_ZERO], coef[_KEEP], False  # decoupled: shrink the weight, not the gradient
    return coef[_WD], coef[_ONE], hyper[5] != 0  # L2: wd * w added to the gradient


@njit(**SERIAL)
def update_chunk_(c, theta, gpart, nparts, n_decay, opt, coef, m, v, wd, keep, nesterov):
    """Chunk ``c`` of the step: sum its partials into gpart[0], then update it (one thread)."""
    lo = c * CHUNK
    hi = min(theta.shape[0], lo + CHUNK)
    _sum_partials_(gpart, nparts, lo, hi)
    mid = min(max(n_decay, lo), hi)
    g = gpart[0]
    # weights, then biases (no weight decay); m[lo:mid] of an unused, empty m is empty
    _update_range(opt, theta[lo:mid], g[lo:mid], m[lo:mid], v[lo:mid], coef, wd, keep, nesterov)
    zero, one = coef[_ZERO], coef[_ONE]
    _update_range(opt, theta[mid:hi], g[mid:hi], m[mid:hi], v[mid:hi], coef, zero, one, nesterov)


@njit(**PARALLEL)
def reduce_partials(gpart, nparts, out):
    """out = sum of gpart[:nparts] in row order. Parallel over chunks."""
    P = out.shape[0]
    for c in prange((P + CHUNK - 1) // CHUNK):
        lo = c * CHUNK
        hi = min(P, lo + CHUNK)
        o = out[lo:hi]
        g0 = gpart[0, lo:hi]
        for i in range(hi - lo):
            o[i] = g0[i]
        for t in range(1, nparts):
            gt = gpart[t, lo:hi]
            for i in range(hi - lo):
                o[i] += gt[i]


@njit(**SERIAL)
def _sum_sq_chunk(gpart, nparts, c):
    """Chunk ``c``: sum its partials into gpart[0]; return the sum's squared norm (float64)."""
    P = gpart.shape[1]
    lo = c * CHUNK
    hi = min(P, lo + CHUNK)
    _sum_partials_(gpart, nparts, lo, hi)
    g = gpart[0, lo:hi]
    acc = 0.0
    for i in range(hi - lo):
        acc += float(g[i]) * float(g[i])
    return acc


@njit(**PARALLEL)
def _sum_partials_sq_parallel(gpart, nparts, sq):
    for c in prange(n_chunks(gpart.shape[1])):
        sq[c] = _sum_sq_chunk(gpart, nparts, np.int64(c))


@njit(**SERIAL)
def sum_partials_sq(gpart, nparts, sq):
    """Sum the partials into ``gpart[0]`` (in row order, as the update would) and return the
    squared L2 norm of the sum, accumulated in float64; ``sq`` (float64, one element per
    chunk) receives each chunk's share. Parallel over chunks when there are more than
    :data:`SERIAL_CHUNKS` of them; below that one thread does it, since a parallel region
    (~5 us to start and join) would cost more than the work."""
    nc = n_chunks(gpart.shape[1])
    if nc > SERIAL_CHUNKS:
        _sum_partials_sq_parallel(gpart, nparts, sq)
    else:
        for c in range(nc):
            sq[c] = _sum_sq_chunk(gpart, nparts, c)
    total = 0.0
    for c in range(nc):
        total += sq[c]
    return total


@njit(**INLINE)
def scale_(g, factor):
    """g *= factor, in place (gradient clipping)."""
    for i in range(g.shape[0]):
        g[i] = g[i] * factor


@njit(**PARALLEL)
def optimizer_update_(theta, gpart, nparts, n_decay, opt, hyper, step, m, v, coef):
    """One optimizer step on ``theta`` from partial gradients. Parallel over chunks.

    Parameters
    ----------
    theta : ndarray of shape (P,)
        All parameters; updated in place.
    gpart : ndarray of shape (T, P)
        Per-thread partial gradients; rows ``:nparts`` are summed. Row 0 is overwritten
        with the summed gradient.
    nparts : int
    n_decay : int
        Weight decay applies to ``theta[:n_decay]``.
    opt : int
        Optimizer code from :data:`OPTIMIZERS`.
    hyper : float64 ndarray of shape (N_HYPER,)
        Hyper-parameters, laid out as in the module docstring.
    step : int
        1-based step number (Adam's bias correction).
    m, v : ndarray of shape (P,) or (0,)
        Optimizer state, updated in place: momentum / first moment in ``m``, second moment
        in ``v``. Unused state may be empty.
    coef : ndarray of shape (N_COEF,), theta's dtype
        Scratch for the step's coefficients.
    """
    wd, keep, nesterov = prepare_step(opt, hyper, step, coef)
    for c in prange(n_chunks(theta.shape[0])):
        # np.int64: the prange index is unsigned here; see engine.batch_gradients
        update_chunk_(np.int64(c), theta, gpart, nparts, n_decay, opt, coef, m, v, wd, keep, nesterov)


@njit(**SERIAL)
def optimizer_step_(theta, gpart, nparts, n_decay, opt, hyper, step, m, v, coef):
    """:func:`optimizer_update_`, on one thread when there are at most
    :data:`SERIAL_CHUNKS` chunks (small networks: the parallel region would cost more than
    the update), else in parallel. The same arithmetic either way."""
    if n_chunks(theta.shape[0]) > SERIAL_CHUNKS:
        optimizer_update_(theta, gpart, nparts, n_decay, opt, hyper, step, m, v, coef)
        return
    wd, keep, nesterov = prepare_step(opt, hyper, step, coef)
    for c in range(n_chunks(theta.shape[0])):
        update_chunk_(c, theta, gpart, nparts, n_decay, opt, coef, m, v, wd, keep, nesterov)
