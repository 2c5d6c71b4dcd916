"""Activation functions: one registry entry each, and the kernels compiled from them.

Every activation is one :class:`Activation` in :data:`REGISTRY`: its public name, its
element formula ``f(z)``, its derivative ``df(a, z)`` (written from the stored output ``a``
wherever the activation allows it, scikit-learn's trick: sigmoid ``a(1-a)``, tanh
``1-a^2``, relu ``a>0``, leaky relu, elu ``a+1`` for ``a<=0`` and softplus ``1-exp(-a)``;
gelu and silu need the pre-activation ``z``, ``needs_z``), optional float32 variants that
LLVM vectorises (libm's ``exp``/``tanh``/``erfc`` are scalar calls), and whether it is
initialised as relu-like (He). Everything else is derived from the registry: the codes
and :data:`ACTIVATIONS`, :data:`NEEDS_Z`, :data:`RELU_LIKE`, and the two kernels of each
activation and dtype.

The kernels are the fused bias + activation forward pass ``z += b; a = f(z)`` and the
fused derivative pass ``g *= f'(z)``, on columns ``c0:c1`` of a block of rows. Each is
compiled from one template per (activation, dtype), on first use, as a C callback
(``launch.py``): the engine calls it through its address (:func:`addresses`), so a network
compiles only the activations it uses, each once. The engine writes ``a`` and ``z`` to
separate buffers for every layer: the loops vectorise only then (LLVM checks at run time
that the arrays do not overlap; measured, 128 x 256 float32, tanh 1.4 against 5.1 ns an
element when they alias).

All kernels here are serial and act on a block of rows: the engine hands each thread its
own row block (see ``engine.py``), so parallelism lives one level up.

Adding an activation is one entry in :data:`REGISTRY` (with its element functions and its
ONNX form above it), its NumPy twin in ``tests/reference.py`` (the tests run over every
registered name) and its line in README.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from llvmlite import ir as llvm_ir
from numba import njit, types
from numba.extending import intrinsic

from .._config import INLINE, SERIAL
from .cache import prompt
from .launch import cached_callback, call_void, compile_callback, cview, specialise

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


@intrinsic
def _f32_bits(typingctx, x):
    """The IEEE-754 bits of a float32, as an int32 (a bitcast)."""
    if x != types.float32:
        return None
    return types.int32(x), lambda context, builder, sig, args: builder.bitcast(args[0], llvm_ir.IntType(32))


@intrinsic
def _bits_f32(typingctx, i):
    """The float32 whose IEEE-754 bits are the low 32 bits of the integer ``i`` (Numba's
    integer arithmetic widens int32 to int64; LLVM narrows it back)."""
    if not isinstance(i, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        v = args[0] if i.bitwidth == 32 else builder.trunc(args[0], llvm_ir.IntType(32))
        return builder.bitcast(v, llvm_ir.FloatType())

    return types.float32(i), codegen


_F32 = np.float32
_ONE_F32, _HALF_F32 = _F32(1.0), _F32(0.5)
_LOG2E_F32 = _F32(_LOG2E)
_LN2_HI_F32 = _F32(0.693145751953125)  # ln 2 to 16 bits: k * _LN2_HI_F32 is exact for |k| < 2^8
_LN2_LO_F32 = _F32(_LN2 - 0.693145751953125)
_SHIFT_F32 = _F32(12582912.0)  # 2**23 + 2**22, the float32 twin of _INT_SHIFT
_SHIFT_BITS_F32 = int(_SHIFT_F32.view(np.int32))
_EXP_TAYLOR_F32 = tuple(_F32(1.0 / math.factorial(k)) for k in range(8))


@njit(**INLINE)
def exp_neg_f32(x):
    """e^x for float32 ``-18 <= x <= 0``, in float32 arithmetic (16 lanes where float64 has
    8): :func:`exp_neg`'s reduction, x = k ln2 + r with ln 2 split in two so that r is
    exact, e^r by its degree-7 Taylor polynomial (truncation below 6e-9 relative), 2^k from
    its bits. Float32 rounding gives it about 1 ulp."""
    kf = np.floor(x * _LOG2E_F32 + _HALF_F32)
    r = (x - kf * _LN2_HI_F32) - kf * _LN2_LO_F32
    c0, c1, c2, c3, c4, c5, c6, c7 = _EXP_TAYLOR_F32
    p = c0 + r * (c1 + r * (c2 + r * (c3 + r * (c4 + r * (c5 + r * (c6 + r * c7))))))
    k = _f32_bits(kf + _SHIFT_F32) - _SHIFT_BITS_F32
    return p * _bits_f32((k + 127) << 23)


# tanh(x) = x + x u R(u), u = x^2, for |x| < 1: R is the least-squares fit of degree 7,
# reweighted to minimax (Lawson), of (tanh(x)/x - 1)/u on [0, 1], relative error 5.3e-9;
# the correction x u R(u) is at most 0.31 of the result, so R's float32 rounding reaches
# the result a third as large. For |x| >= 1: 1 - 2e/(1 + e), e = e^-2|x| <= 0.14 (no
# cancellation), with the sign of x. Clipped at |x| = 9, where tanh is 1 in float32 to
# within an ulp. Measured on 2.4 million points over [-12, 12]: at most 1.07 ulp from the
# float64 tanh (tested against 2), odd bit for bit, |tanh| <= 1.
_TANH_R_F32 = tuple(_F32(c) for c in (
    -0.33333333157178185, 0.1333331070026421, -0.05396342188762651, 0.021829591620653642,
    -0.00869797001949316, 0.0032069835374512324, -0.0009236324517674063, 0.00014283099079594555))  # fmt: skip
_TANH_CLIP_F32 = _F32(9.0)


@njit(**INLINE)
def tanh_f32(x):
    """tanh of a float32, in float32 arithmetic that LLVM vectorises (libm's ``tanh`` is a
    scalar call, ~20 ns): within 1.07 ulp, both branches computed and one selected."""
    ax = min(abs(x), _TANH_CLIP_F32)
    u = x * x
    r0, r1, r2, r3, r4, r5, r6, r7 = _TANH_R_F32
    small = x + x * (u * (r0 + u * (r1 + u * (r2 + u * (r3 + u * (r4 + u * (r5 + u * (r6 + u * r7))))))))
    e = exp_neg_f32(-(ax + ax))
    big = _ONE_F32 - (e + e) / (_ONE_F32 + e)
    return small if ax < _ONE_F32 else (big if x >= 0 else -big)


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


# ---------------------------------------------------------------- element functions
# f(z) and f'(z) from (a, z) of each activation. The *_f32 variants serve float32 kernels:
# the vectorisable exp/tanh/erf above, and float32 constants (Numba computes float32 with a
# float64 constant in float64, which halves the SIMD width: measured, relu's derivative
# pass 0.2 against 0.1 ns an element).

_ONE32 = np.float32(1.0)
_ZERO32 = np.float32(0.0)
_SLOPE32 = np.float32(LEAKY_SLOPE)


@njit(**INLINE)
def _identity(z):
    return z


@njit(**INLINE)
def _d_identity(a, z):
    return 1.0


@njit(**INLINE)
def _d_sigmoid(a, z):
    return a * (1.0 - a)


@njit(**INLINE)
def _d_sigmoid_f32(a, z):
    return a * (_ONE32 - a)


@njit(**INLINE)
def _tanh(z):
    return math.tanh(z)


@njit(**INLINE)
def _d_tanh(a, z):
    return 1.0 - a * a


@njit(**INLINE)
def _d_tanh_f32(a, z):
    return _ONE32 - a * a


@njit(**INLINE)
def _relu(z):
    return z if z > 0.0 else 0.0


@njit(**INLINE)
def _relu_f32(z):
    return z if z > 0 else _ZERO32


@njit(**INLINE)
def _d_relu(a, z):
    return 1.0 if a > 0.0 else 0.0


@njit(**INLINE)
def _d_relu_f32(a, z):
    return _ONE32 if a > 0 else _ZERO32


@njit(**INLINE)
def _leaky_relu(z):
    return z if z > 0.0 else LEAKY_SLOPE * z


@njit(**INLINE)
def _leaky_relu_f32(z):
    return z if z > 0 else _SLOPE32 * z


@njit(**INLINE)
def _d_leaky_relu(a, z):
    return 1.0 if a > 0.0 else LEAKY_SLOPE


@njit(**INLINE)
def _d_leaky_relu_f32(a, z):
    return _ONE32 if a > 0 else _SLOPE32


@njit(**INLINE)
def _elu(z):
    return z if z > 0.0 else math.expm1(z)


@njit(**INLINE)
def _elu_f32(z):
    return z if z > 0.0 else expm1_neg_f32(z)


@njit(**INLINE)
def _d_elu(a, z):
    # for z <= 0, a = e^z - 1, so f'(z) = e^z = a + 1; a > 0 exactly when z > 0
    return 1.0 if a > 0.0 else a + 1.0


@njit(**INLINE)
def _d_elu_f32(a, z):
    return _ONE32 if a > 0 else a + _ONE32


@njit(**INLINE)
def _gelu(z):
    return 0.5 * z * math.erfc(-z * _INV_SQRT2)  # erfc, not 1 + erf: keeps the left tail


@njit(**INLINE)
def _d_gelu(a, z):
    # exact gelu: d/dz [z Phi(z)] = Phi(z) + z phi(z)
    return 0.5 * math.erfc(-z * _INV_SQRT2) + z * _INV_SQRT_2PI * math.exp(-0.5 * z * z)


@njit(**INLINE)
def _d_gelu_f32(a, z):
    return gelu_grad_f32(z)


@njit(**INLINE)
def _d_softplus(a, z):
    # f'(z) = sigmoid(z) and e^a = 1 + e^z, so sigmoid(z) = 1 - e^-a
    return -math.expm1(-a)


@njit(**INLINE)
def _d_softplus_f32(a, z):
    return -expm1_neg_f32(-a)


@njit(**INLINE)
def _silu(z):
    return z * sigmoid(z)


@njit(**INLINE)
def _silu_f32(z):
    return z * sigmoid_f32(z)


@njit(**INLINE)
def _d_silu(a, z):
    # d/dz [z s(z)] = s (1 + z (1 - s))
    s = sigmoid(z)
    return s * (1.0 + z * (1.0 - s))


@njit(**INLINE)
def _d_silu_f32(a, z):
    s = sigmoid_f32(z)
    return s * (1.0 + z * (1.0 - s))


# ---------------------------------------------------------------- ONNX forms
# f(x) as ONNX nodes, for ``onnx_export``: ``g`` is its graph builder (``g.op(type, inputs,
# **attrs)`` and ``g.const(stem, value)`` return output names; ``g.double`` is True for a
# float64 model, ``g.opset`` the opset; ``g.cast(x, double)``), ``x`` the input's name.
# onnxruntime has no float64 Elu, Softplus or Erf, so float64 models get exact equivalents.

#: First ONNX opset with an exact ``Gelu`` operator; older opsets build it from ``Erf``.
GELU_OPSET = 20


def _onnx_identity(g, x):
    return x


def _onnx_sigmoid(g, x):
    return g.op("Sigmoid", [x])


def _onnx_tanh(g, x):
    return g.op("Tanh", [x])


def _onnx_relu(g, x):
    return g.op("Relu", [x])


def _onnx_silu(g, x):  # x * sigmoid(x)
    return g.op("Mul", [x, g.op("Sigmoid", [x])])


def _onnx_leaky_relu(g, x):
    if not g.double:
        return g.op("LeakyRelu", [x], alpha=LEAKY_SLOPE)
    # the alpha attribute is a float32 (0.00999999977...): keep fastbp's float64 slope
    zero = g.const("zero", 0.0)
    negative = g.op("Mul", [g.op("Min", [x, zero]), g.const("slope", LEAKY_SLOPE)])
    return g.op("Add", [g.op("Max", [x, zero]), negative])


def _onnx_elu(g, x):
    if not g.double:
        return g.op("Elu", [x], alpha=1.0)
    # max(x, 0) + (exp(min(x, 0)) - 1): exactly x for x > 0
    zero = g.const("zero", 0.0)
    expm1 = g.op("Sub", [g.op("Exp", [g.op("Min", [x, zero])]), g.const("one", 1.0)])
    return g.op("Add", [g.op("Max", [x, zero]), expm1])


def _onnx_softplus(g, x):
    if not g.double:
        return g.op("Softplus", [x])
    # max(x, 0) + log(1 + exp(-|x|)), overflow-free as fastbp's
    tail = g.op("Exp", [g.op("Neg", [g.op("Abs", [x])])])
    log1p = g.op("Log", [g.op("Add", [tail, g.const("one", 1.0)])])
    return g.op("Add", [g.op("Relu", [x]), log1p])


def _onnx_gelu(g, x):  # exact form: 0.5 x (1 + erf(x / sqrt(2)))
    if g.opset >= GELU_OPSET and not g.double:
        return g.op("Gelu", [x], approximate="none")
    u = g.op("Mul", [x, g.const("inv_sqrt2", _INV_SQRT2)])
    # no float64 Erf kernel: erf runs in float32 there (error about 1e-7)
    erf = g.cast(g.op("Erf", [g.cast(u, False)]), True) if g.double else g.op("Erf", [u])
    half_x = g.op("Mul", [x, g.const("half", 0.5)])
    return g.op("Mul", [half_x, g.op("Add", [erf, g.const("one", 1.0)])])


# ---------------------------------------------------------------- the registry


class Activation(NamedTuple):
    """One activation: everything fastbp knows about it.

    ``f(z)`` and ``df(a, z)`` are ``@njit(inline="always")`` element functions, accurate
    in float64; ``f32``/``df32`` replace them in float32 kernels (vectorisable, float32
    accuracy; default: the same). ``needs_z``: ``df`` reads ``z`` (else only ``a``, and
    the kernels may be given ``a`` for ``z``). ``relu_like``: He initialisation (else
    Glorot). ``constant_df``: f' is 1 everywhere (the derivative pass is skipped).
    ``onnx(g, x)``: f as ONNX nodes (see the ONNX forms above).
    """

    name: str
    f: Callable
    df: Callable
    onnx: Callable
    f32: Callable | None = None
    df32: Callable | None = None
    needs_z: bool = False
    relu_like: bool = False
    constant_df: bool = False


#: Every activation, in code order (a model file stores names, not codes).
REGISTRY: tuple[Activation, ...] = (
    Activation("identity", _identity, _d_identity, _onnx_identity, constant_df=True),
    Activation("sigmoid", sigmoid, _d_sigmoid, _onnx_sigmoid, f32=sigmoid_f32, df32=_d_sigmoid_f32),
    Activation("tanh", _tanh, _d_tanh, _onnx_tanh, f32=tanh_f32, df32=_d_tanh_f32),
    Activation("relu", _relu, _d_relu, _onnx_relu, f32=_relu_f32, df32=_d_relu_f32, relu_like=True),
    Activation("leaky_relu", _leaky_relu, _d_leaky_relu, _onnx_leaky_relu, f32=_leaky_relu_f32,
               df32=_d_leaky_relu_f32, relu_like=True),
    Activation("elu", _elu, _d_elu, _onnx_elu, f32=_elu_f32, df32=_d_elu_f32, relu_like=True),
    Activation("gelu", _gelu, _d_gelu, _onnx_gelu, f32=gelu_f32, df32=_d_gelu_f32, needs_z=True,
               relu_like=True),
    Activation("softplus", softplus, _d_softplus, _onnx_softplus, f32=softplus_f32, df32=_d_softplus_f32),
    Activation("silu", _silu, _d_silu, _onnx_silu, f32=_silu_f32, df32=_d_silu_f32, needs_z=True,
               relu_like=True),
)  # fmt: skip

#: Public name -> integer code (the index in :data:`REGISTRY`).
ACTIVATIONS: dict[str, int] = {act.name: code for code, act in enumerate(REGISTRY)}

IDENTITY, SIGMOID, TANH, RELU, LEAKY_RELU, ELU, GELU, SOFTPLUS, SILU = (ACTIVATIONS[act.name] for act in REGISTRY)

#: Codes whose derivative needs the pre-activation ``z`` (not recoverable from ``a``).
NEEDS_Z: frozenset[int] = frozenset(code for code, act in enumerate(REGISTRY) if act.needs_z)

#: Codes initialised with He ("relu-like"); the rest use Glorot.
RELU_LIKE: frozenset[int] = frozenset(code for code, act in enumerate(REGISTRY) if act.relu_like)


# ---------------------------------------------------------------- kernel templates
# Compiled per (activation, dtype) by :func:`kernel_address`, with F / DF (the element
# functions) and DTYPE bound as globals. C signature: (z or g, b or a, a or z, n rows,
# ld = row length, c0, c1), arrays as data pointers of C-contiguous (n, ld) blocks.

F = DF = None  # bound per compiled copy
DTYPE = np.float64

KERNEL_SIG = types.void(types.voidptr, types.voidptr, types.voidptr, types.intp, types.intp, types.intp, types.intp)


def bias_act_kernel(zp, bp, ap, n, ld, c0, c1):
    """z += b (row-broadcast), then a = f(z), in one pass, on columns c0:c1."""
    z = cview(zp, (n, ld), DTYPE)
    b = cview(bp, (ld,), DTYPE)
    a = cview(ap, (n, ld), DTYPE)
    w = c1 - c0  # loops over row slices from 0: a start of c0 keeps Numba's negative-index
    bc = b[c0:c1]  # check on every access, which stops LLVM from vectorising
    for i in range(n):
        zi = z[i, c0:c1]
        ai = a[i, c0:c1]
        for j in range(w):
            v = zi[j] + bc[j]
            zi[j] = v
            ai[j] = F(v)


def act_backward_kernel(gp, ap, zp, n, ld, c0, c1):
    """g *= f'(z), from a = f(z) (and z where the activation needs it), on columns c0:c1."""
    g = cview(gp, (n, ld), DTYPE)
    a = cview(ap, (n, ld), DTYPE)
    z = cview(zp, (n, ld), DTYPE)
    w = c1 - c0
    for i in range(n):
        gi = g[i, c0:c1]
        ai = a[i, c0:c1]
        zi = z[i, c0:c1]
        for j in range(w):
            gi[j] *= DF(ai[j], zi[j])


def kernel_address(template: Callable, code: int, dtype: object) -> int:
    """Address of ``template`` (:func:`bias_act_kernel` or :func:`act_backward_kernel`)
    compiled for activation ``code`` and float ``dtype``, on first use in a process (or
    loaded from Numba's cache)."""
    dt = np.dtype(dtype)
    act = REGISTRY[code]

    def build() -> object:
        f32 = dt == np.float32
        glb = {
            "F": (act.f32 or act.f) if f32 else act.f,
            "DF": (act.df32 or act.df) if f32 else act.df,
            "DTYPE": dt.type,
        }
        return compile_callback(KERNEL_SIG, specialise(template, f"{act.name}_{dt.name}", glb))

    return cached_callback((template, int(code), dt), build).address


_addresses: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def addresses(codes: np.ndarray, dtype: object) -> tuple[np.ndarray, np.ndarray]:
    """(forward, backward) kernel addresses (int64 arrays) for layers of activation
    ``codes`` in ``dtype``: what the engine's ``fwd``/``bwd`` take. A backward address of
    0 means f' = 1 (the pass is skipped). Valid in this process only: never store them."""
    key = (np.asarray(codes, dtype=np.int64).tobytes(), dtype)
    found = _addresses.get(key)
    if found is None:
        ints = [int(c) for c in codes]
        fwd = np.array([kernel_address(bias_act_kernel, c, dtype) for c in ints], dtype=np.int64)
        bwd = np.array(
            [0 if REGISTRY[c].constant_df else kernel_address(act_backward_kernel, c, dtype) for c in ints],
            dtype=np.int64,
        )  # fmt: skip
        found = _addresses[key] = (fwd, bwd)
    return found


# ---------------------------------------------------------------- calls from compiled code


@njit(**INLINE)
def bias_act_cols_(z, b, fwd, a, c0, c1):
    """z += b, then a = f(z), on columns ``c0:c1`` of the C-contiguous (n, m) blocks ``z``
    and ``a``; ``fwd`` is the activation's forward kernel address (:func:`addresses`).
    ``a`` may be ``z`` for activations not in :data:`NEEDS_Z`, but the pass then runs
    unvectorised (module docstring); the engine passes separate buffers."""
    call_void(fwd, (z, b, a, z.shape[0], z.shape[1], c0, c1))


@njit(**INLINE)
def act_backward_cols_(g, a, z, bwd, c0, c1):
    """g *= f'(z) on columns ``c0:c1``: turns dL/da into delta = dL/dz, in place; ``bwd``
    is the backward kernel address (0: f' = 1, nothing to do). ``z`` is read only by
    activations in :data:`NEEDS_Z`, so any array of the same shape (even ``a``) may be
    passed for the others."""
    if bwd != 0:
        call_void(bwd, (g, a, z, g.shape[0], g.shape[1], c0, c1))


@njit(**INLINE)
def bias_act_(z, b, fwd, a):
    """:func:`bias_act_cols_` on every column."""
    bias_act_cols_(z, b, fwd, a, np.int64(0), np.int64(z.shape[1]))


@njit(**INLINE)
def act_backward_(g, a, z, bwd):
    """:func:`act_backward_cols_` on every column."""
    act_backward_cols_(g, a, z, bwd, np.int64(0), np.int64(g.shape[1]))


def apply_forward(z: np.ndarray, b: np.ndarray, code: int, a: np.ndarray, c0: int = 0, c1: int = -1) -> None:
    """From Python (tests, diagnostics): ``z += b; a = f(z)`` on columns ``c0:c1`` of the
    C-contiguous 2-D arrays ``z`` and ``a`` (all columns by default)."""
    c1 = z.shape[1] if c1 < 0 else c1
    fwd = kernel_address(bias_act_kernel, code, z.dtype)
    _call_cols(fwd, z, b, a, c0, c1)


def apply_backward(g: np.ndarray, a: np.ndarray, z: np.ndarray, code: int, c0: int = 0, c1: int = -1) -> None:
    """From Python: ``g *= f'(z)`` on columns ``c0:c1`` (all by default)."""
    c1 = g.shape[1] if c1 < 0 else c1
    if not REGISTRY[code].constant_df:
        _call_cols(kernel_address(act_backward_kernel, code, g.dtype), g, a, z, c0, c1)


@njit(**SERIAL)
def _call_cols(addr, x, y, w, c0, c1):
    call_void(addr, (x, y, w, x.shape[0], x.shape[1], np.int64(c0), np.int64(c1)))


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
    "REGISTRY",
    "RELU_LIKE",
    "Activation",
    "activation_code",
    "act_backward_",
    "act_backward_cols_",
    "addresses",
    "apply_backward",
    "apply_forward",
    "bias_act_",
    "bias_act_cols_",
]


prompt(globals())  # load this module's cached kernels without Numba's registry refresh (cache.py)
