"""Dense layer kernels on a block of rows: GEMM in BLAS, then one fused pass.

These run on one thread over a contiguous row block. The engine (``engine.py``) gives
each thread its own block, with BLAS held to one thread (see ``fastbp._threads``), so the
fused epilogue reads the GEMM output while it is still in that core's cache.

Shapes follow the math: ``x`` (n, n_in), ``w`` (n_in, n_out), ``b`` (n_out,),
``z``/``a``/``g`` (n, n_out).
"""

from __future__ import annotations

import numpy as np
from numba import njit, types

from .._config import INLINE
from .activations import act_backward_, bias_act_
from .blas import gemm
from .cache import prompt
from .launch import cached_callback, compile_callback, cview, specialise


@njit(**INLINE)
def dense_forward(x, w, b, fwd, z, a):
    """z = x @ w + b, a = f(z): GEMM, then bias and activation fused in one pass; ``fwd``
    is the activation's forward kernel (``activations.addresses``). ``a`` may alias ``z``
    when the derivative needs only the output (see ``activations.bias_act_cols_``)."""
    gemm(x, False, w, False, z)
    bias_act_(z, b, fwd, a)


@njit(**INLINE)
def column_sums(delta, out, c0=0, c1=-1):
    """out[j] = sum_i delta[i, j] (the bias gradient) for columns ``c0:c1`` (all by
    default); rows outer for contiguous reads."""
    n, m = delta.shape
    if c1 < 0:
        c1 = m
    o = out[c0:c1]  # loops from 0: a start of c0 keeps Numba's negative-index check
    for j in range(c1 - c0):
        o[j] = 0
    for i in range(n):
        di = delta[i, c0:c1]
        for j in range(c1 - c0):
            o[j] += di[j]


@njit(**INLINE)
def dense_backward(x, w, a, z, bwd, g, dw, db, dx, need_dx):
    """Backward pass of one dense layer over a row block.

    delta = g * f'(z)       (fused, in place in ``g``)
    dw    = x^T delta
    db    = column sums of delta
    dx    = delta @ w^T     (only if ``need_dx``: skipped for the first layer)

    Parameters
    ----------
    x : ndarray of shape (n, n_in)
        The layer input (previous activation).
    w : ndarray of shape (n_in, n_out)
    a, z : ndarray of shape (n, n_out)
        The layer's output and pre-activation (``z`` may be ``a``, see ``act_backward_``).
    bwd : int
        The activation's backward kernel (``activations.addresses``; 0: f' = 1).
    g : ndarray of shape (n, n_out)
        dL/da on entry, delta = dL/dz on exit.
    dw : ndarray of shape (n_in, n_out)
    db : ndarray of shape (n_out,)
    dx : ndarray of shape (n, n_in)
        dL/dx, written only if ``need_dx``.
    need_dx : bool
    """
    act_backward_(g, a, z, bwd)
    gemm(x, True, g, False, dw)
    column_sums(g, db)
    if need_dx:
        gemm(g, False, w, True, dx)


DTYPE = np.float64  # bound per compiled copy of column_sums_kernel

SUMS_SIG = types.void(types.voidptr, types.intp, types.intp, types.intp, types.intp, types.voidptr)


def column_sums_kernel(gp, n, ld, c0, c1, outp):
    """``out[c0:c1]`` = :func:`column_sums` of columns ``c0:c1`` of the C-contiguous (n, ld)
    block at ``gp``, ``out`` the ``ld`` elements at ``outp``: a C callback, what the
    engine's passes (written on addresses) call for the bias gradient."""
    column_sums(cview(gp, (n, ld), DTYPE), cview(outp, (ld,), DTYPE), c0, c1)


def column_sums_address(dtype: object) -> int:
    """The address of :func:`column_sums_kernel` for float ``dtype`` (this process only)."""
    dt = np.dtype(dtype)
    build = lambda: compile_callback(SUMS_SIG, specialise(column_sums_kernel, dt.name, {"DTYPE": dt.type}))  # noqa: E731
    return cached_callback((column_sums_kernel, dt), build).address


prompt(globals())  # load this module's cached kernels without Numba's registry refresh (cache.py)
