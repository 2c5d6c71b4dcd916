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
from numba import njit, types

from .._config import INLINE, SERIAL
from .launch import CTX, body_address, imax, imin, pack, run_blocks, run_serial, unpack

#: Optimizer names in code order (each code's update loop: :data:`RANGES`).
NAMES: tuple[str, ...] = ("sgd", "adam", "adamw", "rmsprop")

#: Public name -> integer code.
OPTIMIZERS: dict[str, int] = {name: code for code, name in enumerate(NAMES)}

SGD, ADAM, ADAMW, RMSPROP = (OPTIMIZERS[name] for name in NAMES)

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


# One loop per optimizer: update ``theta`` from the summed gradient ``g`` (slices of one
# chunk; ``m``/``v`` may be empty when the optimizer does not use them). ``wd`` is the L2
# coefficient added to the gradient (``wd * theta``) and ``keep`` the decoupled factor
# applied to the weight (AdamW: ``1 - lr * weight_decay``); the caller passes zero and one
# where weight decay does not apply.


@njit(**INLINE)
def _sgd_range(theta, g, m, v, coef, wd, keep, nesterov):
    lr = coef[_LR]
    h1 = coef[_H1]
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


@njit(**INLINE)
def _adam_range(theta, g, m, v, coef, wd, keep, nesterov):
    """Adam and AdamW (they differ in ``wd`` and ``keep`` only)."""
    h1 = coef[_H1]
    h2 = coef[_H2]
    eps = coef[_EPS]
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


@njit(**INLINE)
def _rmsprop_range(theta, g, m, v, coef, wd, keep, nesterov):
    lr = coef[_LR]
    h1 = coef[_H1]
    h2 = coef[_H2]
    eps = coef[_EPS]
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


#: The update loop of each optimizer code. An optimizer is its loop here, its name in
#: :data:`NAMES`, and its class in ``fastbp.optimizers`` (hyper-parameters, ``_hyper``).
RANGES = {SGD: _sgd_range, ADAM: _adam_range, ADAMW: _adam_range, RMSPROP: _rmsprop_range}


@njit(**INLINE)
def n_chunks(P):
    """Number of CHUNK-sized pieces of a P-element parameter array (Python callers:
    ``n_chunks.py_func``)."""
    return (P + CHUNK - 1) // CHUNK


@njit(**INLINE)
def _decay_terms(opt, hyper, coef):
    """(wd, keep, nesterov) for the weights, from ``coef`` as :func:`_coefficients` left it.

    ``wd`` is the L2 coefficient added to the gradient and ``keep`` the decoupled decay
    factor applied to the weight (AdamW only; 1 otherwise).
    """
    if opt == ADAMW:
        return coef[_ZERO], coef[_KEEP], False  # decoupled: shrink the weight, not the gradient
    return coef[_WD], coef[_ONE], hyper[5] != 0  # L2: wd * w added to the gradient


@njit(**SERIAL)
def reduce_partials(gpart, nparts, out):
    """out = sum of gpart[:nparts] in row order, chunk by chunk as the update sums them (so
    the same bits). One thread: it runs once per ``loss_and_gradients`` call."""
    P = out.shape[0]
    for c in range((P + CHUNK - 1) // CHUNK):
        lo = c * CHUNK
        hi = imin(P, lo + CHUNK)
        o = out[lo:hi]
        g0 = gpart[0, lo:hi]
        for i in range(hi - lo):
            o[i] = g0[i]
        for t in range(1, nparts):
            gt = gpart[t, lo:hi]
            for i in range(hi - lo):
                o[i] += gt[i]


@njit(**INLINE)
def _sum_sq_chunk(gpart, nparts, c):
    """Chunk ``c``: sum its partials into gpart[0]; return the sum's squared norm (float64)."""
    P = gpart.shape[1]
    lo = c * CHUNK
    hi = imin(P, lo + CHUNK)
    _sum_partials_(gpart, nparts, lo, hi)
    g = gpart[0, lo:hi]
    acc = 0.0
    for i in range(hi - lo):
        acc += float(g[i]) * float(g[i])
    return acc


#: Per-call scalars of the bodies here: the number of partials (and, for the update, the
#: number of decayed weights; ``coef`` holds the step's factors).
SUM_SQ_SCALARS = types.Tuple((types.int64,))
UPDATE_SCALARS = types.Tuple((types.int64, types.int64))

OPT = SGD  # bound per compiled copy of update_body
UPDATE = _sgd_range  # bound per compiled copy of update_body


def sum_sq_body(c, n, ctx):
    """Body (``launch.py``) of :func:`sum_partials_sq`: chunk ``c``."""
    (nparts,), (gpart, sq) = unpack(ctx, CTX)
    sq[c] = _sum_sq_chunk(gpart, nparts, c)


def sum_sq_address(gpart: object, sq: object) -> int:
    """The address of :func:`sum_sq_body` for these ``gpart`` and ``sq`` arrays' types."""
    return body_address(sum_sq_body, SUM_SQ_SCALARS, (gpart, sq))


def update_body(c, n, ctx):
    """Body (``launch.py``) of the update: chunk ``c`` of ``n``. Sums the chunk's partials
    into ``gpart[0]``, then updates it while it is in cache; compiled per optimizer."""
    (nparts, n_decay), (theta, gpart, m, v, coef, hyper) = unpack(ctx, CTX)
    wd, keep, nesterov = _decay_terms(OPT, hyper, coef)
    lo = c * CHUNK
    hi = imin(theta.shape[0], lo + CHUNK)
    _sum_partials_(gpart, nparts, lo, hi)
    mid = imin(imax(n_decay, lo), hi)
    g = gpart[0]
    # weights, then biases (no weight decay); m[lo:mid] of an unused, empty m is empty
    UPDATE(theta[lo:mid], g[lo:mid], m[lo:mid], v[lo:mid], coef, wd, keep, nesterov)
    zero, one = coef[_ZERO], coef[_ONE]
    UPDATE(theta[mid:hi], g[mid:hi], m[mid:hi], v[mid:hi], coef, zero, one, nesterov)


def update_address(opt: int, theta: object, gpart: object, m: object, v: object, coef: object, hyper: object) -> int:
    """The address of :func:`update_body` for optimizer ``opt`` and these arrays' types."""
    name = NAMES[opt]
    return body_address(update_body, UPDATE_SCALARS, (theta, gpart, m, v, coef, hyper),
                        name, {"OPT": opt, "UPDATE": RANGES[opt]})  # fmt: skip


@njit(**INLINE)
def sum_partials_sq(gpart, nparts, sq, body):
    """Sum the partials into ``gpart[0]`` (in row order, as the update would) and return the
    squared L2 norm of the sum, accumulated in float64; ``sq`` (float64, one element per
    chunk) receives each chunk's share. Parallel over chunks (``body``, from
    :func:`sum_sq_address`) when there are more than :data:`SERIAL_CHUNKS` of them; below
    that one thread does it, since a parallel region (~5 us to start and join) would cost
    more than the work."""
    nc = n_chunks(gpart.shape[1])
    ctx = pack((np.int64(nparts),), SUM_SQ_SCALARS, (gpart, sq))
    if nc > SERIAL_CHUNKS:
        run_blocks(body, nc, ctx)
    else:
        run_serial(body, nc, ctx)
    total = 0.0
    for c in range(nc):
        total += sq[c]
    return total


@njit(**INLINE)
def scale_(g, factor):
    """g *= factor, in place (gradient clipping)."""
    for i in range(g.shape[0]):
        g[i] = g[i] * factor


@njit(**SERIAL)
def optimizer_update_(theta, gpart, nparts, n_decay, opt, hyper, step, m, v, coef, body):
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
    body : int
        :func:`update_body`'s address for ``opt``, from :func:`update_address`.
    """
    _coefficients(opt, hyper, step, coef)
    ctx = pack((np.int64(nparts), np.int64(n_decay)), UPDATE_SCALARS, (theta, gpart, m, v, coef, hyper))
    run_blocks(body, n_chunks(theta.shape[0]), ctx)


@njit(**INLINE)
def optimizer_step_(theta, gpart, nparts, n_decay, opt, hyper, step, m, v, coef, body):
    """:func:`optimizer_update_`, on one thread when there are at most
    :data:`SERIAL_CHUNKS` chunks (small networks: the parallel region would cost more than
    the update), else in parallel. The same arithmetic either way."""
    _coefficients(opt, hyper, step, coef)
    ctx = pack((np.int64(nparts), np.int64(n_decay)), UPDATE_SCALARS, (theta, gpart, m, v, coef, hyper))
    nc = n_chunks(theta.shape[0])
    if nc > SERIAL_CHUNKS:
        run_blocks(body, nc, ctx)
    else:
        run_serial(body, nc, ctx)
