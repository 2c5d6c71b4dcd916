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
from typing import NamedTuple

import numpy as np
from numba import njit, types

from .._config import INLINE, SERIAL
from .cache import prompt
from .launch import CTX, as_dtype, body_address, imax, imin, pack, ref, run_blocks, run_serial, unpack

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


#: The phases of the step body: sum the partials and their squared norm (and, in piece 0,
#: the step's coefficients), or update (the gradient already summed and, with ``factor``
#: != 1, scaled: gradient clipping).
SUM_SQ, UPDATE = 0, 1

#: Per-call scalars of :func:`step_body`: the number of partials, the number of decayed
#: weights, the step number (1-based), the phase and the gradient's scale factor.
STEP_SCALARS = types.Tuple((types.int64, types.int64, types.int64, types.int64, types.float64))

OPT = SGD  # bound per compiled copy of step_body
UPDATE_RANGE = _sgd_range  # bound per compiled copy of step_body
DTYPE = np.float64  # bound per compiled copy of step_body


class StepArgs(NamedTuple):
    """What :func:`step_body` reads and writes: the parameters ``theta``, the partial
    gradients ``gpart``, the optimizer state ``m`` and ``v`` (empty when unused), the step's
    coefficients ``coef`` (:data:`N_COEF` of them), all as bytes (``engine.py``), the
    hyper-parameters ``hyper`` (float64) and ``sq`` (float64, one squared norm per chunk)."""

    theta: np.ndarray
    gpart: np.ndarray
    m: np.ndarray
    v: np.ndarray
    coef: np.ndarray
    hyper: np.ndarray
    sq: np.ndarray


def step_body(c, n, ctx):
    """Body (``launch.py``) of an optimizer step's two parallel regions, chunk ``c`` of
    ``n``, compiled per optimizer and dtype, on a :class:`StepArgs` record (the float arrays
    viewed here as ``DTYPE``).

    Phase :data:`SUM_SQ`: sum the chunk's partials into ``gpart[0]`` and store the squared
    norm of the chunk's sum (float64) in ``sq[c]``; chunk 0 also fills ``coef`` for the
    step. Phase :data:`UPDATE`: scale the chunk's gradient by ``factor`` (when not 1), then
    update it, weights then biases (no weight decay)."""
    (nparts, n_decay, step, phase, factor), r = unpack(ctx, CTX)
    theta = as_dtype(r.theta, DTYPE)
    gpart = as_dtype(r.gpart, DTYPE)
    coef = as_dtype(r.coef, DTYPE)
    hyper = r.hyper
    lo = c * CHUNK
    hi = imin(theta.shape[0], lo + CHUNK)
    if phase == SUM_SQ:
        _sum_partials_(gpart, nparts, lo, hi)
        g = gpart[0, lo:hi]
        acc = 0.0
        for i in range(hi - lo):
            acc += float(g[i]) * float(g[i])
        r.sq[c] = acc
        if c == 0:
            _coefficients(OPT, hyper, step, coef)
        return
    m = as_dtype(r.m, DTYPE)
    v = as_dtype(r.v, DTYPE)
    g = gpart[0]
    if factor != 1.0:
        gc = g[lo:hi]
        for i in range(hi - lo):
            gc[i] = gc[i] * factor
    wd, keep, nesterov = _decay_terms(OPT, hyper, coef)
    mid = imin(imax(n_decay, lo), hi)
    # weights, then biases (no weight decay): one loop, inlined once, run on both parts;
    # m[p0:p1] of an unused, empty m is empty
    for part in range(2):
        p0, p1 = (lo, mid) if part == 0 else (mid, hi)
        if part == 1:
            wd, keep = coef[_ZERO], coef[_ONE]
        UPDATE_RANGE(theta[p0:p1], g[p0:p1], m[p0:p1], v[p0:p1], coef, wd, keep, nesterov)


def step_address(opt: int, dtype: object, record: StepArgs) -> int:
    """The address of :func:`step_body` for optimizer ``opt`` and float ``dtype``, for
    records typed as ``record`` (see :func:`step_record`)."""
    dt = np.dtype(dtype)
    return body_address(step_body, STEP_SCALARS, record, f"{NAMES[opt]}_{dt.name}",
                        {"OPT": opt, "UPDATE_RANGE": RANGES[opt], "DTYPE": dt.type})  # fmt: skip


def step_record(theta: np.ndarray, gpart: np.ndarray, m: np.ndarray, v: np.ndarray, coef: np.ndarray,
                hyper: np.ndarray, sq: np.ndarray) -> StepArgs:  # fmt: skip
    """The :class:`StepArgs` record of these typed arrays (the float arrays as bytes)."""
    return StepArgs(theta.view(np.uint8), gpart.view(np.uint8), m.view(np.uint8), v.view(np.uint8),
                    coef.view(np.uint8), hyper, sq)  # fmt: skip


@njit(**INLINE)
def _run_chunks(body, nc, ctx):
    """The pieces in parallel when there are more than :data:`SERIAL_CHUNKS` of them; below
    that on one thread, since a parallel region (~5 us to start and join) would cost more
    than the work. The same arithmetic either way."""
    if nc > SERIAL_CHUNKS:
        run_blocks(body, nc, ctx)
    else:
        run_serial(body, nc, ctx)


@njit(**INLINE)
def sum_partials_sq(rec, nparts, step, body):
    """Phase :data:`SUM_SQ` of :func:`step_body` (``rec`` a reference to its
    :class:`StepArgs` record, ``launch.ref``; ``body`` its address) for optimizer step
    ``step``: sum the partials ``gpart[:nparts]`` into ``gpart[0]`` in row order and return
    the squared L2 norm of the sum, accumulated in float64."""
    sq = rec.sq
    nc = n_chunks(rec.theta.shape[0] // _itemsize(rec))
    _run_chunks(body, nc, pack((np.int64(nparts), np.int64(0), np.int64(step), np.int64(SUM_SQ), 1.0),
                               STEP_SCALARS, rec))  # fmt: skip
    total = 0.0
    for c in range(nc):
        total += sq[c]
    return total


@njit(**INLINE)
def update_(rec, n_decay, step, factor, body):
    """Phase :data:`UPDATE` of :func:`step_body`: the optimizer step ``step`` from the summed
    gradient ``gpart[0]`` scaled by ``factor``; weight decay on the first ``n_decay``
    parameters. The coefficients are those :func:`sum_partials_sq` stored for ``step``."""
    nc = n_chunks(rec.theta.shape[0] // _itemsize(rec))
    _run_chunks(body, nc, pack((np.int64(1), np.int64(n_decay), np.int64(step), np.int64(UPDATE), float(factor)),
                               STEP_SCALARS, rec))  # fmt: skip


@njit(**INLINE)
def _itemsize(rec):
    """The float itemsize of a step record: ``coef`` holds :data:`N_COEF` of them."""
    return rec.coef.shape[0] // N_COEF


@njit(**SERIAL)
def _step_py(args, nparts, n_decay, step, body):
    rec = ref(args)
    sum_partials_sq(rec, nparts, step, body)
    update_(rec, n_decay, step, 1.0, body)


def optimizer_update_(theta: np.ndarray, gpart: np.ndarray, nparts: int, n_decay: int, opt: int, hyper: np.ndarray,
                      step: int, m: np.ndarray, v: np.ndarray, coef: np.ndarray) -> None:  # fmt: skip
    """One optimizer step on ``theta`` from partial gradients, from Python (tests): the two
    phases of :func:`step_body`, as a training step runs them.

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
    rec = step_record(theta, gpart, m, v, coef, hyper, np.zeros(n_chunks.py_func(theta.shape[0])))
    _step_py(rec, np.int64(nparts), np.int64(n_decay), np.int64(step), step_address(opt, theta.dtype, rec))


@njit(**SERIAL)
def _sum_sq_py(args, nparts, body):
    return sum_partials_sq(ref(args), nparts, np.int64(1), body)


def sum_partials_squares(gpart: np.ndarray, nparts: int, opt: int = SGD) -> float:
    """From Python (tests): sum ``gpart[:nparts]`` into ``gpart[0]`` as a training step does
    and return the squared L2 norm of the sum (float64)."""
    P = gpart.shape[1]
    dt = gpart.dtype
    empty = np.zeros(0, dtype=dt)
    rec = step_record(np.zeros(P, dt), gpart, empty, empty, np.zeros(N_COEF, dt), np.zeros(N_HYPER),
                      np.zeros(n_chunks.py_func(P)))  # fmt: skip
    return float(_sum_sq_py(rec, np.int64(nparts), step_address(opt, dt, rec)))


prompt(globals())  # load this module's cached kernels without Numba's registry refresh (cache.py)
