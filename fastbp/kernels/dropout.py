"""Inverted dropout with a counter-based random mask.

A unit is kept with probability ``1 - rate`` and its kept value scaled by
``1 / (1 - rate)``, so the expected activation is unchanged and inference needs no
rescaling (inverted dropout; Srivastava et al., "Dropout: A Simple Way to Prevent Neural
Networks from Overfitting", JMLR 2014).

The mask is not drawn from a stateful generator: it is a hash of (step key, batch row,
slot, unit). ``key`` changes every optimizer step (see :func:`step_key`); ``slot`` 0 is
the network's input and slot ``l + 1`` the output of layer ``l``. So every thread can
compute any part of the mask independently, the backward pass recomputes it instead of
storing it, and the result does not depend on how the batch is split into row blocks:
training with dropout gives the same bits for a given seed whatever the thread count
(up to the usual summation-order differences of the gradient).

Two hashes: SplitMix64's output function (Steele, Lea & Flood, "Fast splittable
pseudorandom number generators", OOPSLA 2014) turns (key, row, slot) into a 32-bit row key,
once per row; then Wellons' 32-bit "lowbias32" integer hash of ``row key + unit * golden``
gives each unit a 32-bit uniform number, kept if it is at least ``rate * 2**32``. The
per-unit hash uses only 32-bit multiplies, which LLVM vectorises with AVX2 (64-bit ones need
AVX-512DQ): measured 0.2-0.3 ns a unit, against 3-6 ns with SplitMix64 per unit.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types

from .._config import INLINE
from .cache import prompt
from .launch import cached_callback, call_void, compile_callback, cview, specialise

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S32 = np.uint64(32)
_GOLDEN32 = np.uint32(0x9E3779B9)
_L1 = np.uint32(0x7FEB352D)
_L2 = np.uint32(0x846CA68B)
_T16 = np.uint32(16)
_T15 = np.uint32(15)
#: 2**32: a 32-bit uniform integer is compared with rate * 2**32.
_TWO32 = 4294967296.0


@njit(**INLINE)
def _mix(z):
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(**INLINE)
def _hash32(x):
    # every step cast back to uint32: Numba widens uint32 arithmetic to 64 bits
    x = np.uint32(x ^ (x >> _T16))
    x = np.uint32(x * _L1)
    x = np.uint32(x ^ (x >> _T15))
    x = np.uint32(x * _L2)
    return np.uint32(x ^ (x >> _T16))


@njit(**INLINE)
def step_key(seed, step):
    """The mask key of optimizer step ``step`` for an epoch seeded with ``seed`` (uint64)."""
    return _mix(seed + np.uint64(step) * _GOLDEN)


@njit(**INLINE)
def _threshold(rate):
    return np.uint32(rate * _TWO32)


@njit(**INLINE)
def _row_key(key, row, slot, n_slots):
    return np.uint32(_mix(key + np.uint64(row * n_slots + slot) * _GOLDEN) >> _S32)


@njit(**INLINE)
def _kept(row_key, j, thr):
    return _hash32(np.uint32(row_key + np.uint32(np.uint32(j) * _GOLDEN32))) >= thr


@njit(**INLINE)
def dropout_forward_cols_(v, row0, slot, n_slots, key, rate, c0, c1):
    """In place: ``v[i, j] = v[i, j] / (1 - rate)`` if kept, else 0, for columns ``c0:c1``.

    ``v`` holds batch rows ``row0 .. row0 + len(v)`` of slot ``slot``; column ``j`` is
    unit ``j``, so a thread given a column block draws the same mask as one given rows.
    """
    thr = _threshold(rate)
    s = v.dtype.type(1.0 / (1.0 - rate))
    zero = v.dtype.type(0.0)
    for i in range(v.shape[0]):
        rk = _row_key(key, row0 + i, slot, n_slots)
        vi = v[i, c0:c1]  # loops from 0: a start of c0 keeps Numba's negative-index check
        for j in range(c1 - c0):
            vi[j] = vi[j] * (s if _kept(rk, c0 + j, thr) else zero)


@njit(**INLINE)
def dropout_forward_(v, row0, slot, n_slots, key, rate):
    """:func:`dropout_forward_cols_` on every column of ``v``."""
    dropout_forward_cols_(v, row0, slot, n_slots, key, rate, np.int64(0), np.int64(v.shape[1]))


@njit(**INLINE)
def dropout_backward_cols_(g, a, row0, slot, n_slots, key, rate, c0, c1):
    """Undo the mask of :func:`dropout_forward_cols_` for the backward pass, in place.

    ``g`` holds dL/d(masked a) on entry and dL/da on exit (``g / (1 - rate)`` where the
    unit was kept, 0 where it was dropped); the stored masked output ``a`` is scaled back
    by ``1 - rate`` so the activation derivative can be computed from it (dropped units
    stay 0, where ``g`` is 0 anyway). Columns ``c0:c1`` only.
    """
    thr = _threshold(rate)
    s = g.dtype.type(1.0 / (1.0 - rate))
    keep = a.dtype.type(1.0 - rate)
    zero = g.dtype.type(0.0)
    one = a.dtype.type(1.0)
    for i in range(g.shape[0]):
        rk = _row_key(key, row0 + i, slot, n_slots)
        gi = g[i, c0:c1]
        ai = a[i, c0:c1]
        for j in range(c1 - c0):
            kept = _kept(rk, c0 + j, thr)
            gi[j] = gi[j] * (s if kept else zero)
            ai[j] = ai[j] * (keep if kept else one)


@njit(**INLINE)
def dropout_backward_(g, a, row0, slot, n_slots, key, rate):
    """:func:`dropout_backward_cols_` on every column of ``g``."""
    dropout_backward_cols_(g, a, row0, slot, n_slots, key, rate, np.int64(0), np.int64(g.shape[1]))


# ---------------------------------------------------------------- kernels called by address
# A network without dropout never compiles the passes above: the engine calls them through
# the addresses of these C callbacks (``launch.py``), compiled per dtype on first use.

DTYPE = np.float64  # bound per compiled copy

_I = types.intp
FORWARD_SIG = types.void(types.voidptr, _I, _I, _I, _I, _I, _I, types.float64, _I, _I)
BACKWARD_SIG = types.void(types.voidptr, types.voidptr, _I, _I, _I, _I, _I, _I, types.float64, _I, _I)


def dropout_forward_kernel(vp, n, ld, row0, slot, n_slots, key, rate, c0, c1):
    """:func:`dropout_forward_cols_` on the C-contiguous (n, ld) block at ``vp``."""
    v = cview(vp, (n, ld), DTYPE)
    dropout_forward_cols_(v, row0, slot, n_slots, np.uint64(key), rate, c0, c1)


def dropout_backward_kernel(gp, ap, n, ld, row0, slot, n_slots, key, rate, c0, c1):
    """:func:`dropout_backward_cols_` on the C-contiguous (n, ld) blocks at ``gp``, ``ap``."""
    g = cview(gp, (n, ld), DTYPE)
    a = cview(ap, (n, ld), DTYPE)
    dropout_backward_cols_(g, a, row0, slot, n_slots, np.uint64(key), rate, c0, c1)


def dropout_addresses(dtype: object) -> np.ndarray:
    """int64 [forward, backward] kernel addresses for ``dtype`` (this process only)."""
    dt = np.dtype(dtype)
    glb = {"DTYPE": dt.type}
    fwd = cached_callback(
        (dropout_forward_kernel, dt),
        lambda: compile_callback(FORWARD_SIG, specialise(dropout_forward_kernel, dt.name, glb)),
    )  # fmt: skip
    bwd = cached_callback(
        (dropout_backward_kernel, dt),
        lambda: compile_callback(BACKWARD_SIG, specialise(dropout_backward_kernel, dt.name, glb)),
    )  # fmt: skip
    return np.array([fwd.address, bwd.address], dtype=np.int64)


@njit(**INLINE)
def drop_forward_(dropk, v, row0, slot, n_slots, key, rate, c0, c1):
    """:func:`dropout_forward_cols_` through the kernel ``dropk[0]`` (C-contiguous ``v``)."""
    call_void(dropk[0], (v, v.shape[0], v.shape[1], row0, slot, n_slots, key, rate, c0, c1))


@njit(**INLINE)
def drop_backward_(dropk, g, a, row0, slot, n_slots, key, rate, c0, c1):
    """:func:`dropout_backward_cols_` through the kernel ``dropk[1]``."""
    call_void(dropk[1], (g, a, g.shape[0], g.shape[1], row0, slot, n_slots, key, rate, c0, c1))


def keep_mask(n_rows: int, n_units: int, slot: int, n_slots: int, key: int, rate: float) -> np.ndarray:
    """The boolean keep-mask :func:`dropout_forward_` applies (for tests and tracing)."""
    v = np.ones((n_rows, n_units))
    dropout_forward_(v, np.int64(0), np.int64(slot), np.int64(n_slots), np.uint64(key), float(rate))
    return v != 0


prompt(globals())  # load this module's cached kernels without Numba's registry refresh (cache.py)
