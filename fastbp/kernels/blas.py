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
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.arrayobj import make_array
from numba.np.linalg import ensure_blas

from .._config import INLINE

ensure_blas()  # SciPy's BLAS must be importable: the same requirement as np.dot's

_CHAR = ir.IntType(8)
_VOIDP = ir.IntType(8).as_pointer()


@intrinsic
def _xgemm(typingctx, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """Column-major ``c = alpha op(a) op(b) + beta c`` (BLAS argument order); ``a``, ``b``,
    ``c`` are arrays of one float dtype whose data pointers are passed as they are."""
    if not (isinstance(c, types.Array) and c.dtype in (types.float32, types.float64)):
        return None
    if not (isinstance(a, types.Array) and isinstance(b, types.Array) and a.dtype == b.dtype == c.dtype):
        return None
    sig = types.int32(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    dtype = c.dtype

    def codegen(context, builder, sig, args):
        tys = sig.args
        intp = context.get_value_type(types.intp)
        fnty = ir.FunctionType(
            ir.IntType(32),
            [_CHAR, _CHAR, _CHAR, intp, intp, intp, _VOIDP, _VOIDP, intp, _VOIDP, intp, _VOIDP, _VOIDP, intp],
        )
        fn = cgutils.get_or_insert_function(builder.module, fnty, "numba_xxgemm")

        def integer(i):
            return context.cast(builder, args[i], tys[i], types.intp)

        def trans(i):
            flag = builder.icmp_signed("!=", integer(i), ir.Constant(intp, 0))
            return builder.select(flag, ir.Constant(_CHAR, ord("t")), ir.Constant(_CHAR, ord("n")))

        def scalar(i):
            slot = cgutils.alloca_once_value(builder, context.cast(builder, args[i], tys[i], dtype))
            return builder.bitcast(slot, _VOIDP)

        def data(i):
            return builder.bitcast(make_array(tys[i])(context, builder, args[i]).data, _VOIDP)

        kind = ir.Constant(_CHAR, ord("s" if dtype == types.float32 else "d"))
        return builder.call(
            fn,
            (kind, trans(0), trans(1), integer(2), integer(3), integer(4), scalar(5), data(6), integer(7),
             data(8), integer(9), scalar(10), data(11), integer(12)),
        )  # fmt: skip

    return sig, codegen


@njit(**INLINE)
def gemm(a, trans_a, b, trans_b, c):
    """``c = op(a) @ op(b)`` for row-major 2-D views, ``op(x)`` being ``x.T`` when
    ``trans_x``. Each view's rows may be strided (a column block of a wider matrix), but its
    elements within a row must be contiguous. ``c`` is overwritten (BLAS beta = 0)."""
    m, n = c.shape
    k = a.shape[0] if trans_a else a.shape[1]
    if m == 0 or n == 0:
        return
    isz = c.itemsize
    # row-major c = op(a) op(b) is column-major c^T = op(b)^T op(a)^T
    _xgemm(
        trans_b, trans_a, n, m, k, 1.0, b, b.strides[0] // isz, a, a.strides[0] // isz, 0.0, c,
        c.strides[0] // isz,
    )  # fmt: skip
