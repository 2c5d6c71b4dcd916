"""A general matrix product on strided views: BLAS ``?gemm`` called from compiled code.

``np.dot(a, b, out)`` inside ``@njit`` needs contiguous arrays; it copies anything else.
The engine's column split (``engine.py``) gives each thread a block of columns of a
row-major matrix, a view with a row stride longer than its width, so it calls the BLAS
routine itself: :func:`gemm` passes each view's data pointer and leading dimension to
SciPy's ``sgemm``/``dgemm`` (``scipy.linalg.cython_blas``, the OpenBLAS Numba's own
``np.dot`` calls, held to one thread the same way). Compiled code calls them through
two symbols, :data:`SGEMM` and :data:`DGEMM`, registered with LLVM at import, so cached
code finds them in every process. Deep float32 products with ``b`` read along its rows go
to this package's own kernel (:mod:`.sgemm`) on CPUs with AVX-512.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import sys
from importlib.machinery import EXTENSION_SUFFIXES, ExtensionFileLoader
from types import ModuleType

from llvmlite import binding as llvm
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.arrayobj import make_array

from . import sgemm

_CHAR = ir.IntType(8)
_INT = ir.IntType(32)  # the Fortran INTEGER of SciPy's BLAS (LP64)
_VOIDP = ir.IntType(8).as_pointer()
_MODULE = "scipy.linalg.cython_blas"

#: The symbols compiled code calls for single and double precision ``?gemm``.
SGEMM, DGEMM = "fastbp_sgemm", "fastbp_dgemm"


def _cython_blas() -> ModuleType:
    """SciPy's ``cython_blas`` module. Unless ``scipy.linalg`` is imported already, its
    extension is loaded on its own: the package ``scipy.linalg`` around it takes 0.13 s
    to import (NumPy's f2py and SciPy's array-API layer among it), a quarter of a warm
    start (measured). The module is then taken out of ``sys.modules`` again, so that a
    later ``import scipy.linalg.cython_blas`` is the ordinary import (which finds this
    same module: Cython keeps one instance per process). Any surprise in SciPy's layout
    falls back to the ordinary import."""
    if _MODULE in sys.modules:
        return sys.modules[_MODULE]
    try:
        import scipy

        folder = os.path.join(os.path.dirname(scipy.__file__), "linalg")
        paths = (os.path.join(folder, "cython_blas" + suffix) for suffix in EXTENSION_SUFFIXES)
        path = next(p for p in paths if os.path.isfile(p))
        loader = ExtensionFileLoader(_MODULE, path)
        module = importlib.util.module_from_spec(importlib.util.spec_from_loader(_MODULE, loader))
        loader.exec_module(module)
        module.__pyx_capi__["sgemm"], module.__pyx_capi__["dgemm"]  # noqa: B018 (fail here, not later)
    except Exception:  # noqa: BLE001
        sys.modules.pop(_MODULE, None)
        return importlib.import_module(_MODULE)
    sys.modules.pop(_MODULE, None)
    return module


def _address(capsule: object) -> int:
    """The function pointer a Cython ``__pyx_capi__`` capsule holds."""
    api = ctypes.pythonapi
    api.PyCapsule_GetName.restype, api.PyCapsule_GetName.argtypes = ctypes.c_char_p, [ctypes.py_object]
    api.PyCapsule_GetPointer.restype = ctypes.c_void_p
    api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    return api.PyCapsule_GetPointer(capsule, api.PyCapsule_GetName(capsule))


_capi = _cython_blas().__pyx_capi__
llvm.add_symbol(SGEMM, _address(_capi["sgemm"]))
llvm.add_symbol(DGEMM, _address(_capi["dgemm"]))


def _call_gemm(context, builder, single, ta, tb, m, n, k, one, a, lda, b, ldb, zero, c, ldc) -> None:
    """Emit ``sgemm`` (``single``, an i1) or ``dgemm`` for row-major ``c`` (m, n) =
    op(a) @ op(b), all LLVM values: ``ta``/``tb`` the transpose flags (i1), the sizes and
    row strides intp, ``a``/``b``/``c`` data pointers and ``one``/``zero`` pointers to
    alpha = 1 and beta = 0 in the matrices' dtype. BLAS takes every argument by reference,
    Fortran's way. Nothing is called when ``c`` is empty. On CPUs with AVX-512, single
    precision products whose ``b`` is not transposed, at least :data:`.sgemm.NR` columns
    wide, either :data:`.sgemm.MIN_K` deep or of at least :data:`.sgemm.MIN_MN` elements,
    and at most :data:`.sgemm.MAX_MNK` multiply-adds, go to :mod:`.sgemm`'s tiled kernel
    instead."""
    intp = context.get_value_type(types.intp)
    fnty = ir.FunctionType(ir.VoidType(), [_VOIDP] * 13)
    fn = builder.select(single, *(cgutils.get_or_insert_function(builder.module, fnty, s) for s in (SGEMM, DGEMM)))

    def ref(value):
        return builder.bitcast(cgutils.alloca_once_value(builder, value), _VOIDP)

    def trans(flag):
        return ref(builder.select(flag, ir.Constant(_CHAR, ord("t")), ir.Constant(_CHAR, ord("n"))))

    def integer(value):
        return ref(builder.trunc(value, _INT))

    def blas():
        # row-major c = op(a) op(b) is column-major c^T = op(b)^T op(a)^T
        builder.call(fn, (trans(tb), trans(ta), integer(n), integer(m), integer(k), one, b, integer(ldb), a,
                          integer(lda), zero, c, integer(ldc)))  # fmt: skip

    nothing = ir.Constant(intp, 0)
    nonempty = builder.and_(builder.icmp_signed("!=", m, nothing), builder.icmp_signed("!=", n, nothing))
    with builder.if_then(nonempty):
        if not sgemm.has_avx512():
            blas()
            return
        context.active_code_library.add_linking_library(sgemm.library())
        routed = builder.and_(single, builder.not_(tb))
        routed = builder.and_(routed, builder.icmp_signed(">=", n, ir.Constant(intp, sgemm.NR)))
        area = builder.mul(m, n)
        deep = builder.icmp_signed(">=", k, ir.Constant(intp, sgemm.MIN_K))
        wide = builder.icmp_signed(">=", area, ir.Constant(intp, sgemm.MIN_MN))
        routed = builder.and_(routed, builder.or_(deep, wide))
        volume = builder.mul(area, k)
        routed = builder.and_(routed, builder.icmp_signed("<=", volume, ir.Constant(intp, sgemm.MAX_MNK)))
        with builder.if_else(routed) as (tiled, other):
            with tiled:  # op(a)[i, p] at a[i * a_row + p * a_k]
                unit = ir.Constant(intp, 1)
                a_row, a_k = builder.select(ta, unit, lda), builder.select(ta, lda, unit)
                kernel = cgutils.get_or_insert_function(
                    builder.module,
                    ir.FunctionType(ir.VoidType(), [intp] * 3 + [_VOIDP, intp, intp, _VOIDP, intp, _VOIDP, intp]),
                    sgemm.SYMBOL,
                )
                builder.call(kernel, (m, n, k, a, a_row, a_k, b, ldb, c, ldc))
            with other:
                blas()


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

        single = ir.Constant(ir.IntType(1), dtype == types.float32)
        _call_gemm(context, builder, single, ta, tb, c_shape[0], c_shape[1], builder.select(ta, a_shape[0], a_shape[1]),
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

        _call_gemm(context, builder, single, v[1], v[2], v[3], v[4], v[5], scalar(1.0), pointer(6), v[7], pointer(8),
                     v[9], scalar(0.0), pointer(10), v[11])  # fmt: skip
        return context.get_dummy_value()

    return sig, codegen
