"""A general matrix product on strided views: BLAS ``?gemm`` called from compiled code.

``np.dot(a, b, out)`` inside ``@njit`` needs contiguous arrays; it copies anything else.
The engine's column split (``engine.py``) gives each thread a block of columns of a
row-major matrix, a view with a row stride longer than its width, so it calls the BLAS
routine itself: :func:`gemm` passes each view's data pointer and leading dimension to
``numba_xxgemm``, the helper through which Numba's own ``np.dot`` reaches SciPy's
OpenBLAS (so the same BLAS, held to one thread the same way, and the cache works as for
``np.dot``).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.arrayobj import make_array
from numba.np.linalg import ensure_blas

ensure_blas()  # SciPy's BLAS must be importable: the same requirement as np.dot's

_CHAR = ir.IntType(8)
_VOIDP = ir.IntType(8).as_pointer()


def _call_xxgemm(context, builder, kind, ta, tb, m, n, k, one, a, lda, b, ldb, zero, c, ldc) -> None:
    """Emit ``numba_xxgemm`` for row-major ``c`` (m, n) = op(a) @ op(b), all LLVM values:
    ``kind`` the BLAS letter (i8), ``ta``/``tb`` the transpose flags (i1), the sizes and
    row strides intp, ``a``/``b``/``c`` data pointers and ``one``/``zero`` pointers to
    alpha = 1 and beta = 0 in the matrices' dtype. Nothing is called when ``c`` is empty."""
    intp = context.get_value_type(types.intp)

    def trans(flag):
        return builder.select(flag, ir.Constant(_CHAR, ord("t")), ir.Constant(_CHAR, ord("n")))

    args = [_CHAR, _CHAR, _CHAR, intp, intp, intp, _VOIDP, _VOIDP, intp, _VOIDP, intp, _VOIDP, _VOIDP, intp]
    fnty = ir.FunctionType(ir.IntType(32), args)
    fn = cgutils.get_or_insert_function(builder.module, fnty, "numba_xxgemm")
    nothing = ir.Constant(intp, 0)
    nonempty = builder.and_(builder.icmp_signed("!=", m, nothing), builder.icmp_signed("!=", n, nothing))
    with builder.if_then(nonempty):
        # row-major c = op(a) op(b) is column-major c^T = op(b)^T op(a)^T
        builder.call(fn, (kind, trans(tb), trans(ta), n, m, k, one, b, ldb, a, lda, zero, c, ldc))


def _flags(t: types.Type) -> bool:
    return isinstance(t, (types.Boolean, types.BooleanLiteral))


@intrinsic
def gemm(typingctx, a, trans_a, b, trans_b, c):
    """``c = op(a) @ op(b)`` for row-major 2-D views, ``op(x)`` being ``x.T`` when
    ``trans_x``. Each view's rows may be strided (a column block of a wider matrix), but its
    elements within a row must be contiguous. ``c`` is overwritten (BLAS beta = 0); nothing
    is called when ``c`` is empty. One intrinsic, not a jitted helper: an inlined helper
    costs its caller's compile tens of milliseconds per call site."""
    arrays = (a, b, c)
    if not all(isinstance(x, types.Array) and x.ndim == 2 for x in arrays):
        return None
    if not (c.dtype in (types.float32, types.float64) and a.dtype == b.dtype == c.dtype):
        return None
    if not (_flags(trans_a) and _flags(trans_b)):
        return None
    sig = types.void(a, trans_a, b, trans_b, c)
    dtype = c.dtype

    def codegen(context, builder, sig, args):
        intp = context.get_value_type(types.intp)
        av, bv, cv = (make_array(t)(context, builder, v) for t, v in zip(sig.args[::2], args[::2]))
        ta, tb = (context.cast(builder, args[i], sig.args[i], types.boolean) for i in (1, 3))
        isz = ir.Constant(intp, context.get_abi_sizeof(context.get_data_type(dtype)))
        a_shape, c_shape = (cgutils.unpack_tuple(builder, x.shape, 2) for x in (av, cv))

        def ld(x):
            return builder.sdiv(cgutils.unpack_tuple(builder, x.strides, 2)[0], isz)

        def scalar(value):
            return builder.bitcast(cgutils.alloca_once_value(builder, context.get_constant(dtype, value)), _VOIDP)

        def data(x):
            return builder.bitcast(x.data, _VOIDP)

        kind = ir.Constant(_CHAR, ord("s" if dtype == types.float32 else "d"))
        _call_xxgemm(context, builder, kind, ta, tb, c_shape[0], c_shape[1], builder.select(ta, a_shape[0], a_shape[1]),
                     scalar(1.0), data(av), ld(av), data(bv), ld(bv), scalar(0.0), data(cv), ld(cv))  # fmt: skip
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def gemm_at(typingctx, itemsize, trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc):
    """:func:`gemm` on row-major matrices given by address: ``c`` (m, n) = op(a) @ op(b), with
    ``k`` the inner dimension, ``lda``/``ldb``/``ldc`` the row strides in elements and
    ``itemsize`` 4 (float32, ``sgemm``) or 8 (float64, ``dgemm``), chosen at run time: a
    caller written on addresses is compiled once for both dtypes. Nothing is called when
    ``c`` is empty."""
    ints = (itemsize, m, n, k, a, lda, b, ldb, c, ldc)
    if not all(isinstance(t, types.Integer) for t in ints):
        return None
    if not (_flags(trans_a) and _flags(trans_b)):
        return None
    sig = types.void(itemsize, trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc)

    def codegen(context, builder, sig, args):
        intp = context.get_value_type(types.intp)
        v = [context.cast(builder, x, t, types.boolean if _flags(t) else types.intp) for x, t in zip(args, sig.args)]
        single = builder.icmp_signed("==", v[0], ir.Constant(intp, 4))

        def scalar(value):  # value in the dtype BLAS reads
            f32 = cgutils.alloca_once_value(builder, context.get_constant(types.float32, value))
            f64 = cgutils.alloca_once_value(builder, context.get_constant(types.float64, value))
            return builder.select(single, builder.bitcast(f32, _VOIDP), builder.bitcast(f64, _VOIDP))

        def pointer(i):
            return builder.inttoptr(v[i], _VOIDP)

        kind = builder.select(single, ir.Constant(_CHAR, ord("s")), ir.Constant(_CHAR, ord("d")))
        _call_xxgemm(context, builder, kind, v[1], v[2], v[3], v[4], v[5], scalar(1.0), pointer(6), v[7], pointer(8),
                     v[9], scalar(0.0), pointer(10), v[11])  # fmt: skip
        return context.get_dummy_value()

    return sig, codegen
