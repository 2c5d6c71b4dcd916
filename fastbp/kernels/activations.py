"""Activation functions: the fused bias + activation forward pass and the fused
activation-derivative pass ``delta = g * f'(.)``.

Every activation has one integer code, listed in :data:`ACTIVATIONS`. Its forward formula
lives in ``_f`` and its derivative in ``_df``, side by side. The derivative is written from
the stored output ``a`` wherever the activation allows it (scikit-learn's trick): sigmoid
``a(1-a)``, tanh ``1-a^2``, relu ``a>0``, leaky relu, elu ``a+1`` for ``a<=0`` and softplus
``1-exp(-a)``. Only gelu and silu need the pre-activation ``z`` in the backward pass;
:data:`NEEDS_Z` lists them. The engine still writes ``a`` and ``z`` to separate buffers for
every layer, since the forward pass vectorises only then (see :func:`bias_act_cols_`).

All kernels here are serial and act on a block of rows: the engine hands each thread its
own row block (see ``engine.py``), so parallelism lives one level up.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir as llvm_ir
from numba import njit, types
from numba.extending import intrinsic

from .._config import INLINE, SERIAL

IDENTITY, SIGMOID, TANH, RELU, LEAKY_RELU, ELU, GELU, SOFTPLUS, SILU = range(9)

#: Public name -> integer code.
ACTIVATIONS: dict[str, int] = {
    "identity": IDENTITY,
    "sigmoid": SIGMOID,
    "tanh": TANH,
    "relu": RELU,
    "leaky_relu": LEAKY_RELU,
    "elu": ELU,
    "gelu": GELU,
    "softplus": SOFTPLUS,
    "silu": SILU,
}

#: Codes whose derivative needs the pre-activation ``z`` (not recoverable from ``a``).
NEEDS_Z: frozenset[int] = frozenset({GELU, SILU})

#: Codes initialised with He ("relu-like"); the rest use Glorot.
RELU_LIKE: frozenset[int] = frozenset({RELU, LEAKY_RELU, ELU, GELU, SILU})

LEAKY_SLOPE = 0.01
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


@njit(**INLINE)
def sigmoid(x):
    """Logistic function, stable for any |x| (never exponentiates a positive number)."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@njit(**INLINE)
def softplus(x):
    """log(1 + e^x) as max(x, 0) + log1p(e^-|x|): no overflow for large |x|."""
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


# tanh(x) = x P(u) / Q(u), u = (x / 9)^2, for |x| <= 9 (tanh(9) rounds to 1 in float32).
# Least-squares fit of the relative error on [0, 9] (Loeb iterations), evaluated in float64:
# max relative error 2.1e-8, below float32's half-ulp (6e-8). Q >= 1 on the range: no poles.
# Unlike math.tanh (a scalar libm call, ~20 ns), it is arithmetic LLVM vectorises.
_TANH_CLIP = 9.0
_TANH_P = (0.999999994419998, 10.602742328443094, 20.40761210088928, 5.964144052690991,
           -0.8826860639561319, 0.1887967283611013, -0.02497973624222566)  # fmt: skip
_TANH_Q = (1.0, 37.602738025265374, 160.8820937786519, 135.8158499355691)


@njit(**INLINE)
def tanh_f32(x):
    """tanh for float32 outputs: a rational approximation, relative error <= 2.1e-8."""
    x = min(max(float(x), -_TANH_CLIP), _TANH_CLIP)
    u = (x * (1.0 / _TANH_CLIP)) ** 2
    p0, p1, p2, p3, p4, p5, p6 = _TANH_P
    q0, q1, q2, q3 = _TANH_Q
    num = p0 + u * (p1 + u * (p2 + u * (p3 + u * (p4 + u * (p5 + u * p6)))))
    den = q0 + u * (q1 + u * (q2 + u * q3))
    return x * num / den


@intrinsic
def _f64_bits(typingctx, x):
    """The IEEE-754 bits of a float64, as an int64 (a bitcast, which LLVM vectorises)."""
    if x != types.float64:
        return None
    return types.int64(x), lambda context, builder, sig, args: builder.bitcast(args[0], llvm_ir.IntType(64))


@intrinsic
def _bits_f64(typingctx, i):
    """The float64 whose IEEE-754 bits are the int64 ``i``."""
    if i != types.int64:
        return None
    return types.float64(i), lambda context, builder, sig, args: builder.bitcast(args[0], llvm_ir.DoubleType())


_LOG2E = 1.4426950408889634
_LN2 = 0.6931471805599453
# 2**52 + 2**51: adding it to an integer-valued float64 puts the integer in the low bits
_INT_SHIFT = 6755399441055744.0
_EXP_MIN = -150.0  # far below float32 range, even for silu's x e^x


@njit(**INLINE)
def exp_neg(x):
    """e^x for x <= 0, in float64 arithmetic that LLVM vectorises (libm's ``exp`` is a
    scalar call, ~7 ns): x = k ln2 + r with |r| <= ln2/2, e^r by its degree-7 Taylor
    polynomial (relative error < 6e-9), 2^k built from its bits. For float32 results;
    inputs below -150 give e^-150."""
    x = max(x, _EXP_MIN)
    kd = math.floor(x * _LOG2E + 0.5)
    r = x - kd * _LN2
    p = 1.0 + r * (1.0 + r * (0.5 + r * (1 / 6 + r * (1 / 24 + r * (1 / 120 + r * (1 / 720 + r * (1 / 5040)))))))
    k = _f64_bits(kd + _INT_SHIFT) - _f64_bits(_INT_SHIFT)
    return p * _bits_f64((k + 1023) << 52)


@njit(**INLINE)
def sigmoid_f32(x):
    """The logistic function for float32 outputs, vectorisable (see :func:`exp_neg`);
    within 1 ulp of the exact value in float32 (tested)."""
    x = float(x)
    e = exp_neg(-abs(x))
    return (1.0 if x >= 0 else e) / (1.0 + e)


@njit(**INLINE)
def expm1_neg_f32(x):
    """e^x - 1 for x <= 0, float32 accuracy, vectorisable: the Taylor series near 0 (where
    e^x - 1 would cancel), :func:`exp_neg` minus 1 below -0.35."""
    x = min(float(x), 0.0)
    near = x * (
        1.0 + x * (0.5 + x * (1 / 6 + x * (1 / 24 + x * (1 / 120 + x * (1 / 720 + x * (1 / 5040 + x / 40320))))))
    )
    return near if x > -0.35 else exp_neg(x) - 1.0


@njit(**INLINE)
def softplus_f32(x):
    """log(1 + e^x) for float32 outputs, vectorisable: max(x, 0) + log1p(e) with
    e = e^-|x| from :func:`exp_neg`, and log1p(e) = 2 atanh(s), s = e / (2 + e) <= 1/3, by
    its odd series to s^19 (relative error below 2e-11)."""
    x = float(x)
    e = exp_neg(-abs(x))
    s = e / (2.0 + e)
    q = s * s
    series = 1 + q * (1 / 3 + q * (1 / 5 + q * (1 / 7 + q * (1 / 9 + q * (1 / 11 + q * (1 / 13 + q * (
        1 / 15 + q * (1 / 17 + q / 19))))))))  # fmt: skip
    return max(x, 0.0) + 2.0 * s * series


# erfc(u) = e^-u^2 t Q(t), t = 1 / (1 + u/2), for 0 <= u <= 11 (the variable of Numerical
# Recipes' erfcc): Q is the Chebyshev least-squares fit of degree 12, weighted for relative
# error, to erfcx(u) / t on t in [1/6.5, 1] (scipy.special.erfcx), converted to powers of
# t. Its relative error, so erfc's, is 2.0e-10: far below float32's half-ulp (6e-8). The
# factor e^-u^2 is gelu's e^(-z^2/2), which its derivative needs as well.
_ERFC_Q = (0.28209682356028576, 0.28202753437434847, 0.2478131028270481, 0.16801279010733983,
           0.1290036352176936, -0.17085116615562085, 0.3605394633877788, -0.7503678684000825,
           0.7083028720321356, -0.27634584450471056, -0.01723637154475369, 0.04836125522065627,
           -0.011356226289204375)  # fmt: skip
_ERFC_MAX = 11.0  # erfc(11) = 1e-54: gelu's tail is far below float32's smallest subnormal


@njit(**INLINE)
def _normal_cdf_parts(x):
    """(Phi(x), e^(-x^2/2)) for float32 outputs, in float64 arithmetic that LLVM vectorises
    (libm's ``erf`` is a scalar call): Phi from erfc(|x|/sqrt 2) (see ``_ERFC_Q``), so the
    lower tail keeps its relative accuracy."""
    e = exp_neg(-0.5 * x * x)
    u = abs(x) * _INV_SQRT2
    t = 1.0 / (1.0 + 0.5 * u)
    c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12 = _ERFC_Q
    q = c0 + t * (c1 + t * (c2 + t * (c3 + t * (c4 + t * (c5 + t * (c6 + t * (c7 + t * (c8 + t * (c9 + t * (
        c10 + t * (c11 + t * c12)))))))))))  # fmt: skip
    half_tail = 0.5 * e * t * q if u <= _ERFC_MAX else 0.0
    return (1.0 - half_tail if x >= 0 else half_tail), e


@njit(**INLINE)
def gelu_f32(x):
    """z Phi(z) for float32 outputs, vectorisable (see :func:`_normal_cdf_parts`)."""
    x = float(x)
    return x * _normal_cdf_parts(x)[0]


@njit(**INLINE)
def gelu_grad_f32(x):
    """d/dz [z Phi(z)] = Phi(z) + z phi(z), vectorisable; phi shares Phi's exponential."""
    x = float(x)
    cdf, e = _normal_cdf_parts(x)
    return cdf + x * _INV_SQRT_2PI * e


@njit(**INLINE)
def _f(act, z):
    """a = f(z) for one element."""
    if act == IDENTITY:
        return z
    if act == SIGMOID:
        return sigmoid(z)
    if act == TANH:
        return math.tanh(z)
    if act == RELU:
        return z if z > 0.0 else 0.0
    if act == LEAKY_RELU:
        return z if z > 0.0 else LEAKY_SLOPE * z
    if act == ELU:
        return z if z > 0.0 else math.expm1(z)
    if act == GELU:
        return 0.5 * z * math.erfc(-z * _INV_SQRT2)  # erfc, not 1 + erf: keeps the left tail
    if act == SOFTPLUS:
        return softplus(z)
    # SILU
    return z * sigmoid(z)


@njit(**INLINE)
def _df(act, a, z):
    """f'(z) for one element, from the output ``a`` where possible (``z`` is ignored then)."""
    if act == IDENTITY:
        return 1.0
    if act == SIGMOID:
        return a * (1.0 - a)
    if act == TANH:
        return 1.0 - a * a
    if act == RELU:
        return 1.0 if a > 0.0 else 0.0
    if act == LEAKY_RELU:
        return 1.0 if a > 0.0 else LEAKY_SLOPE
    if act == ELU:
        # for z <= 0, a = e^z - 1, so f'(z) = e^z = a + 1; a > 0 exactly when z > 0
        return 1.0 if a > 0.0 else a + 1.0
    if act == SOFTPLUS:
        # f'(z) = sigmoid(z) and e^a = 1 + e^z, so sigmoid(z) = 1 - e^-a
        return -math.expm1(-a)
    if act == GELU:
        # exact gelu: d/dz [z Phi(z)] = Phi(z) + z phi(z)
        return 0.5 * math.erfc(-z * _INV_SQRT2) + z * _INV_SQRT_2PI * math.exp(-0.5 * z * z)
    # SILU: d/dz [z s(z)] = s (1 + z (1 - s))
    s = sigmoid(z)
    return s * (1.0 + z * (1.0 - s))


@njit(**SERIAL)
def bias_act_cols_(z, b, act, a, c0, c1):
    """z += b (row-broadcast), then a = f(z), in one pass, on columns ``c0:c1``.

    Parameters
    ----------
    z : ndarray of shape (n, m)
        GEMM output ``x @ w`` on entry; ``x @ w + b`` on exit.
    b : ndarray of shape (m,)
    act : int
        Activation code from :data:`ACTIVATIONS`.
    a : ndarray of shape (n, m)
        Written with ``f(z)``. May alias ``z`` when ``act`` is not in :data:`NEEDS_Z`, but
        then runs 3-4x slower: LLVM vectorises each loop behind a runtime check that ``a``
        and ``z`` do not overlap, which an alias fails, so the scalar loop runs (measured,
        128 x 256 float32: tanh 1.4 against 5.1 ns an element, relu 0.22 against 0.77).
        The engine always passes separate buffers.
    c0, c1 : int
        The columns to work on (the engine's column split gives each thread its own);
        :func:`bias_act_` does them all.

    The piecewise-linear activations have their own loops with constants in the arrays'
    dtype, which LLVM vectorises, and so does every other activation in float32, through
    the vectorisable :func:`exp_neg`, :func:`gelu_f32`, :func:`softplus_f32` and
    :func:`tanh_f32`; float64 calls the element formula ``_f`` for libm's accuracy (its
    ``exp``/``tanh``/``erfc`` are scalar library calls).
    """
    n = z.shape[0]
    w = c1 - c0  # loops over row slices from 0: a start of c0 keeps Numba's negative-index
    bc = b[c0:c1]  # check on every access, which stops LLVM from vectorising
    zero = z.dtype.type(0)
    if act == IDENTITY:
        for i in range(n):
            zi = z[i, c0:c1]
            ai = a[i, c0:c1]
            for j in range(w):
                v = zi[j] + bc[j]
                zi[j] = v
                ai[j] = v
    elif act == RELU:
        for i in range(n):
            zi = z[i, c0:c1]
            ai = a[i, c0:c1]
            for j in range(w):
                v = zi[j] + bc[j]
                zi[j] = v
                ai[j] = v if v > zero else zero
    elif act == LEAKY_RELU:
        slope = z.dtype.type(LEAKY_SLOPE)
        for i in range(n):
            zi = z[i, c0:c1]
            ai = a[i, c0:c1]
            for j in range(w):
                v = zi[j] + bc[j]
                zi[j] = v
                ai[j] = v if v > zero else slope * v
    elif act == SIGMOID and z.itemsize == 4:
        # float32: vectorisable exp (float64 keeps libm's, for its accuracy), as for tanh
        for i in range(n):
            zi = z[i, c0:c1]
            ai = a[i, c0:c1]
            for j in range(w):
                v = zi[j] + bc[j]
                zi[j] = v
                ai[j] = sigmoid_f32(v)
    elif act == SILU and z.itemsize == 4:
        for i in range(n):
            zi = z[i, c0:c1]
            ai = a[i, c0:c1]
            for j in range(w):
                v = zi[j] + bc[j]
                zi[j] = v
                ai[j] = v * sigmoid_f32(v)
    elif act == ELU and z.itemsize == 4:
        for i in range(n):
            zi = z[i, c0:c1]
            ai = a[i, c0:c1]
            for j in range(w):
                v = zi[j] + bc[j]
                zi[j] = v
                ai[j] = v if v > zero else expm1_neg_f32(v)
    elif act == GELU and z.itemsize == 4:
        for i in range(n):
            zi = z[i, c0:c1]
            ai = a[i, c0:c1]
            for j in range(w):
                v = zi[j] + bc[j]
                zi[j] = v
                ai[j] = gelu_f32(v)
    elif act == SOFTPLUS and z.itemsize == 4:
        for i in range(n):
            zi = z[i, c0:c1]
            ai = a[i, c0:c1]
            for j in range(w):
                v = zi[j] + bc[j]
                zi[j] = v
                ai[j] = softplus_f32(v)
    elif act == TANH and z.itemsize == 4:
        # float32: the vectorisable rational tanh (float64 keeps libm's, for its accuracy)
        for i in range(n):
            zi = z[i, c0:c1]
            ai = a[i, c0:c1]
            for j in range(w):
                v = zi[j] + bc[j]
                zi[j] = v
                ai[j] = tanh_f32(v)
    else:
        for i in range(n):
            zi = z[i, c0:c1]
            ai = a[i, c0:c1]
            for j in range(w):
                v = zi[j] + bc[j]
                zi[j] = v
                ai[j] = _f(act, v)


@njit(**SERIAL)
def act_backward_cols_(g, a, z, act, c0, c1):
    """g *= f'(z): turns dL/da into delta = dL/dz, in place, on columns ``c0:c1``.

    Parameters
    ----------
    g : ndarray of shape (n, m)
        dL/da on entry, delta = dL/dz on exit.
    a : ndarray of shape (n, m)
        The activation output ``f(z)``.
    z : ndarray of shape (n, m)
        The pre-activation; read only for codes in :data:`NEEDS_Z`, so any array (even
        ``a``) may be passed for the others.
    act : int
    c0, c1 : int
        The columns to work on; :func:`act_backward_` does them all.

    Each activation whose derivative is arithmetic on ``a`` has its own loop, with
    constants in the arrays' dtype, which LLVM vectorises (a select, not a branch, for the
    piecewise ones); softplus, gelu and silu need ``exp``/``erf`` per element.
    """
    n = g.shape[0]
    w = c1 - c0
    zero = g.dtype.type(0)
    one = g.dtype.type(1)
    if act == IDENTITY:
        return
    if act == SIGMOID:
        for i in range(n):
            gi = g[i, c0:c1]
            ai = a[i, c0:c1]
            for j in range(w):
                gi[j] *= ai[j] * (one - ai[j])
    elif act == TANH:
        for i in range(n):
            gi = g[i, c0:c1]
            ai = a[i, c0:c1]
            for j in range(w):
                gi[j] *= one - ai[j] * ai[j]
    elif act == RELU:
        for i in range(n):
            gi = g[i, c0:c1]
            ai = a[i, c0:c1]
            for j in range(w):
                gi[j] = gi[j] if ai[j] > zero else zero
    elif act == LEAKY_RELU:
        slope = g.dtype.type(LEAKY_SLOPE)
        for i in range(n):
            gi = g[i, c0:c1]
            ai = a[i, c0:c1]
            for j in range(w):
                gi[j] *= one if ai[j] > zero else slope
    elif act == ELU:
        # for z <= 0, a = e^z - 1, so f'(z) = e^z = a + 1; a > 0 exactly when z > 0
        for i in range(n):
            gi = g[i, c0:c1]
            ai = a[i, c0:c1]
            for j in range(w):
                gi[j] *= one if ai[j] > zero else ai[j] + one
    elif act == SILU and g.itemsize == 4:
        for i in range(n):
            gi = g[i, c0:c1]
            zi = z[i, c0:c1]
            for j in range(w):
                s = sigmoid_f32(zi[j])
                gi[j] *= s * (1.0 + zi[j] * (1.0 - s))
    elif act == GELU and g.itemsize == 4:
        for i in range(n):
            gi = g[i, c0:c1]
            zi = z[i, c0:c1]
            for j in range(w):
                gi[j] *= gelu_grad_f32(zi[j])
    elif act in (GELU, SILU):
        for i in range(n):
            gi = g[i, c0:c1]
            ai = a[i, c0:c1]
            zi = z[i, c0:c1]
            for j in range(w):
                gi[j] *= _df(act, ai[j], zi[j])
    elif g.itemsize == 4:  # SOFTPLUS: f'(z) = 1 - e^-a, as in ``_df``
        for i in range(n):
            gi = g[i, c0:c1]
            ai = a[i, c0:c1]
            for j in range(w):
                gi[j] *= -expm1_neg_f32(-ai[j])
    else:  # SOFTPLUS
        for i in range(n):
            gi = g[i, c0:c1]
            ai = a[i, c0:c1]
            for j in range(w):
                gi[j] *= _df(act, ai[j], ai[j])


@njit(**INLINE)
def bias_act_(z, b, act, a):
    """z += b, then a = f(z), on every column: :func:`bias_act_cols_` over all of them."""
    bias_act_cols_(z, b, act, a, np.int64(0), np.int64(z.shape[1]))


@njit(**INLINE)
def act_backward_(g, a, z, act):
    """g *= f'(z) on every column: :func:`act_backward_cols_` over all of them."""
    act_backward_cols_(g, a, z, act, np.int64(0), np.int64(g.shape[1]))


@njit(**SERIAL)
def activation_forward(z, act, a):
    """a = f(z), element-wise, for arrays of any shape flattened to 2-D by the caller."""
    n, m = z.shape
    for i in range(n):
        for j in range(m):
            a[i, j] = _f(act, z[i, j])
    return a


def activation_code(name: str) -> int:
    """Map an activation name (or None for identity) to its code, with a clear error."""
    if name is None:
        return IDENTITY
    if not isinstance(name, str):
        raise TypeError(f"activation must be a str or None, got {type(name).__name__}: {name!r}")
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}") from None


__all__ = [
    "ACTIVATIONS",
    "NEEDS_Z",
    "RELU_LIKE",
    "activation_code",
    "act_backward_",
    "act_backward_cols_",
    "bias_act_",
    "bias_act_cols_",
    "activation_forward",
]
