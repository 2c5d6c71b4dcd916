"""Parallel regions whose work is compiled once, on its own: bodies called through pointers.

Why (measured, ``benchmarks/measure_compile.py``): Numba compiles every jitted function as
its own module and then again inside the module of each caller (LLVM optimisation and
machine code for the whole call tree, at every level); and a ``prange`` loop turns its body
into a separate kernel, compiled with everything it calls. A training step written as
nested jitted functions compiled its element loops five times over, and a cold first
``fit`` took 28 s. Here a parallel region is instead:

* a **body**: a plain Python function ``body(t, n, ctx)`` that does piece ``t`` of ``n``,
  compiled as a C callback (``numba.cfunc``) with everything it calls, once per context
  type (:func:`body_address`), and cached on disk like any kernel;
* a **context**: the values the piece needs, one tuple ``(scalars, record)``, where
  ``record`` is the caller's own argument record (a namedtuple of arrays and scalars) and
  ``scalars`` a few per-call values whose type the body declares. The caller copies it to
  its stack (:func:`pack`) and passes its address; the body reads it back (:func:`unpack`);
* :func:`run_blocks`, compiled once for all dtypes and bodies: it calls ``body(t, n, ctx)``
  for ``t`` in ``0..n-1`` through the body's address, on fastbp's worker pool
  (``pool.py``, whose regions end when their pieces are done), or with
  ``_config.OWN_POOL`` off on Numba's threads (:func:`_run_parallel`, the one ``prange``
  loop of the package, whose regions end at OpenMP's team barrier).

A caller therefore links no body into its own module: it needs the bodies' addresses as
data (an int64 array from :func:`body_address`). Addresses are looked up in every process,
so the callers stay cacheable.

A body's compiled copy is a new function object with the context type bound to the global
name ``CTX`` and a qualified name ending in a hash of that type: Numba's cache keys a
function by its qualified name and code, not by its globals, so each context type gets
its own cache entry, stable across processes (a closure over the type would pickle
differently in the process that compiled it, and miss once; measured).
"""

from __future__ import annotations

import hashlib
import threading
import types as pytypes
from collections.abc import Callable

import numba
import numpy as np
from llvmlite import binding as llvm
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.core.datamodel import models
from numba.core.errors import TypingError
from numba.core.imputils import impl_ret_borrowed
from numba.core.typing.templates import AttributeTemplate
from numba.extending import infer_getattr, intrinsic, lower_getattr_generic, register_model
from numba.np.arrayobj import make_array, populate_array

from .._config import INLINE, OWN_POOL, PARALLEL, SERIAL
from .cache import callback, prompt
from .fpenv import flush_denormals, restore_fp

#: The context type, as a body's compiled copy sees it (:func:`body_address` binds it; a
#: body's module imports this name so that the plain function reads as it will run).
CTX = None

#: The C signature of every body: ``void body(intp t, intp n, intp ctx)``.
BODY_SIG = types.void(types.intp, types.intp, types.intp)

_VOIDP = ir.IntType(8).as_pointer()


def _c_arguments(context, builder, tys, vals) -> tuple[list, list]:
    """LLVM types and values of ``vals`` as C arguments: an array as its data pointer, an
    integer or boolean as intp, a float as double."""
    intp = context.get_value_type(types.intp)
    lltys, llvals = [], []
    for ty, v in zip(tys, vals):
        if isinstance(ty, types.Array):
            if ty.layout != "C":
                raise TypingError(f"arrays passed to a C function must be C-contiguous, got {ty}")
            lltys.append(_VOIDP)
            llvals.append(builder.bitcast(make_array(ty)(context, builder, v).data, _VOIDP))
        elif isinstance(ty, (types.Integer, types.Boolean)):
            lltys.append(intp)
            llvals.append(context.cast(builder, v, ty, types.intp))
        elif isinstance(ty, types.Float):
            lltys.append(ir.DoubleType())
            llvals.append(context.cast(builder, v, ty, types.float64))
        else:
            raise TypeError(f"cannot pass {ty} to a C function")
    return lltys, llvals


def _c_caller(restype: types.Type, llrestype: ir.Type, doc: str):
    """An intrinsic ``call(addr, args)`` calling the C function at address ``addr`` with the
    tuple ``args`` (see :func:`_c_arguments`) and returning ``restype``."""

    def call(typingctx, addr, args):
        if not (isinstance(addr, types.Integer) and isinstance(args, types.BaseTuple)):
            return None
        for ty in args:
            if isinstance(ty, types.Array) and ty.layout != "C":
                raise TypingError(f"arrays passed to a C function must be C-contiguous, got {ty}")
        sig = restype(addr, args)

        def codegen(context, builder, sig, llargs):
            tys = list(sig.args[1])
            vals = [builder.extract_value(llargs[1], i) for i in range(len(tys))]
            lltys, llvals = _c_arguments(context, builder, tys, vals)
            fnty = ir.FunctionType(llrestype, lltys)
            ptr = context.cast(builder, llargs[0], sig.args[0], types.intp)
            result = builder.call(builder.inttoptr(ptr, fnty.as_pointer()), llvals)
            return context.get_dummy_value() if restype == types.void else result

        return sig, codegen

    call.__doc__ = doc
    return intrinsic(call)


call_void = _c_caller(
    types.void, ir.VoidType(),
    """Call the C function ``void f(...)`` at address ``addr`` with the tuple ``args``
    (arrays as data pointers, integers as intp, floats as double).""",
)  # fmt: skip

call_f64 = _c_caller(
    types.float64, ir.DoubleType(),
    """Call the C function ``double f(...)`` at address ``addr`` (arguments as for
    :func:`call_void`) and return its result.""",
)  # fmt: skip


@intrinsic
def view2d(typingctx, arr, start, rows, cols):
    """``arr[start : start + rows * cols].reshape((rows, cols))`` of a C-contiguous 1-D
    array, without the checks: the caller guarantees the range is inside ``arr``. (Numba's
    ``reshape`` emits its size checks and error messages at every call site, which the
    kernels' many views paid in compile time.)"""
    if not (isinstance(arr, types.Array) and arr.ndim == 1 and arr.layout == "C"):
        return None
    retty = types.Array(arr.dtype, 2, "C", readonly=not arr.mutable)
    sig = retty(arr, start, rows, cols)

    def codegen(context, builder, sig, args):
        intp = types.intp
        src = make_array(arr)(context, builder, args[0])
        out = make_array(retty)(context, builder)
        first, n, m = (context.cast(builder, v, t, intp) for v, t in zip(args[1:], sig.args[1:]))
        itemsize = context.get_constant(intp, context.get_abi_sizeof(context.get_data_type(arr.dtype)))
        populate_array(
            out,
            data=builder.gep(src.data, [first]),
            shape=cgutils.pack_array(builder, [n, m]),
            strides=cgutils.pack_array(builder, [builder.mul(m, itemsize), itemsize]),
            itemsize=itemsize,
            meminfo=src.meminfo,
            parent=src.parent,
        )
        return impl_ret_borrowed(context, builder, retty, out._getvalue())

    return sig, codegen


def _scalar_type(dtype: types.Type) -> types.Type:
    """The scalar type a ``dtype`` argument names: a NumPy scalar type (``np.float32``) or
    an array's ``.dtype``."""
    return dtype.instance_type if isinstance(dtype, types.NumberClass) else dtype.dtype


@intrinsic
def as_dtype(typingctx, buf, dtype):
    """The C-contiguous bytes ``buf`` (a uint8 array of one or two dimensions, as
    ``ndarray.view(np.uint8)`` gives) read as ``dtype`` (a NumPy scalar type, or an array's
    ``.dtype``): the same memory, the last dimension divided by the itemsize. The records
    of the drivers hold their float buffers as bytes (see ``engine.py``); code that does
    float arithmetic on them, compiled per dtype, views them back."""
    if not (isinstance(buf, types.Array) and buf.dtype == types.uint8 and buf.ndim in (1, 2)
            and isinstance(dtype, (types.NumberClass, types.DType))):  # fmt: skip
        return None
    retty = types.Array(_scalar_type(dtype), buf.ndim, "C", readonly=not buf.mutable)
    sig = retty(buf, dtype)

    def codegen(context, builder, sig, args):
        intp = context.get_value_type(types.intp)
        src = make_array(buf)(context, builder, args[0])
        out = make_array(retty)(context, builder)
        lldata = context.get_data_type(retty.dtype)
        isz = ir.Constant(intp, context.get_abi_sizeof(lldata))
        shape = cgutils.unpack_tuple(builder, src.shape, buf.ndim)
        shape[-1] = builder.sdiv(shape[-1], isz)
        strides = cgutils.unpack_tuple(builder, src.strides, buf.ndim)
        strides[-1] = isz
        populate_array(
            out,
            data=builder.bitcast(src.data, lldata.as_pointer()),
            shape=cgutils.pack_array(builder, shape),
            strides=cgutils.pack_array(builder, strides),
            itemsize=isz,
            meminfo=src.meminfo,
            parent=src.parent,
        )
        return impl_ret_borrowed(context, builder, retty, out._getvalue())

    return sig, codegen


@intrinsic
def cview(typingctx, ptr, shape, dtype):
    """The C-contiguous array of ``shape`` (a tuple of one or two integers) and ``dtype`` (a
    NumPy scalar type) at the data pointer ``ptr``, owned by the caller: ``numba.carray``
    without its checks, and without compiling its implementation once per signature."""
    if not (isinstance(ptr, (types.RawPointer, types.Integer)) and isinstance(shape, types.UniTuple)
            and isinstance(shape.dtype, types.Integer) and shape.count in (1, 2)
            and isinstance(dtype, (types.NumberClass, types.DType))):  # fmt: skip
        return None
    retty = types.Array(_scalar_type(dtype), shape.count, "C")
    sig = retty(ptr, shape, dtype)

    def codegen(context, builder, sig, args):
        intp = types.intp
        out = make_array(retty)(context, builder)
        lldata = context.get_data_type(retty.dtype)
        itemsize = context.get_constant(intp, context.get_abi_sizeof(lldata))
        dims = [context.cast(builder, builder.extract_value(args[1], i), shape.dtype, intp) for i in range(shape.count)]
        strides = [itemsize] if shape.count == 1 else [builder.mul(dims[1], itemsize), itemsize]
        data = args[0] if isinstance(ptr, types.RawPointer) else builder.inttoptr(args[0], _VOIDP)
        populate_array(
            out,
            data=builder.bitcast(data, lldata.as_pointer()),
            shape=cgutils.pack_array(builder, dims),
            strides=cgutils.pack_array(builder, strides),
            itemsize=itemsize,
            meminfo=None,
        )
        return out._getvalue()

    return sig, codegen


@intrinsic
def address(typingctx, arr):
    """The data pointer of the array ``arr``, as an int64 (the row passes work on addresses,
    so that one compiled pass serves every float dtype; the caller keeps ``arr`` alive)."""
    if not isinstance(arr, types.Array):
        return None

    def codegen(context, builder, sig, args):
        return builder.ptrtoint(make_array(arr)(context, builder, args[0]).data, ir.IntType(64))

    return types.int64(arr), codegen


@njit(**INLINE)
def imin(a, b):
    """The smaller of two integers (Python's ``min`` compiles an implementation per
    signature, a cold-compile cost at every call site kind)."""
    return a if a < b else b


@njit(**INLINE)
def imax(a, b):
    """The larger of two integers (see :func:`imin`)."""
    return a if a > b else b


class RecordRef(types.Type):
    """A named record read in place, through its address: ``ref.field`` loads that one
    field. A body's context record is one (:func:`unpack`): copying a record *value* (Numba
    copies it at every assignment and at every inlined call) increfs and later decrefs each
    of its arrays, a few hundred instructions per copy for a 40-field record; copying a
    reference copies a pointer."""

    def __init__(self, record: types.BaseNamedTuple) -> None:
        self.record = record
        super().__init__(name=f"RecordRef({record})")


register_model(RecordRef)(models.OpaqueModel)


@infer_getattr
class _RecordRefAttributes(AttributeTemplate):
    key = RecordRef

    def generic_resolve(self, ref, attr):
        fields = ref.record.fields
        return ref.record[fields.index(attr)] if attr in fields else None


@lower_getattr_generic(RecordRef)
def _record_ref_getattr(context, builder, ref, value, attr):
    index = ref.record.fields.index(attr)
    ptr = builder.bitcast(value, context.get_value_type(ref.record).as_pointer())
    field = builder.load(cgutils.gep_inbounds(builder, ptr, 0, index))
    return impl_ret_borrowed(context, builder, ref.record[index], field)


def _by_ref(record: types.Type) -> bool:
    """Whether a context holds ``record`` by reference: named records (the drivers' argument
    records) are, plain tuples (a few arrays) are held by value."""
    return isinstance(record, (types.BaseNamedTuple, RecordRef))


def _record_pointer(context, builder, record: types.Type, value) -> ir.Value:
    """An ``i8*`` to a named record: a :class:`RecordRef`'s own pointer, or a slot of the
    calling function holding a copy of the value (valid until that function returns)."""
    if isinstance(record, RecordRef):
        return value
    slot = cgutils.alloca_once(builder, context.get_value_type(record))
    builder.store(value, slot)
    return builder.bitcast(slot, _VOIDP)


@intrinsic
def ref(typingctx, record):
    """A :class:`RecordRef` to the named record ``record``, valid while the calling function
    runs: read its fields through it, pass it to inlined helpers and to :func:`pack`, at
    the cost of a pointer copy instead of a record copy."""
    if not isinstance(record, types.BaseNamedTuple):
        return None

    def codegen(context, builder, sig, args):
        return _record_pointer(context, builder, record, args[0])

    return RecordRef(record)(record), codegen


@intrinsic
def pack(typingctx, scalars, scalars_type, record):
    """Store ``(scalars, record)`` in a stack slot of the calling function and return its
    address (int64), valid until that function returns. A named record (or a
    :class:`RecordRef` to one) is stored as a pointer (:func:`_by_ref`), any other record by
    value. ``scalars`` must have exactly the type ``scalars_type`` (the one the body
    declares): a mismatch is a compile error, not a misread context."""
    if not isinstance(scalars_type, types.TypeRef):
        return None
    if scalars != scalars_type.instance_type:
        raise TypingError(f"context scalars are {scalars}, the body expects {scalars_type.instance_type}")
    sig = types.int64(scalars, scalars_type, record)

    def codegen(context, builder, sig, args):
        if _by_ref(record):
            llty = ir.LiteralStructType([context.get_value_type(scalars), _VOIDP])
            pointer = _record_pointer(context, builder, record, args[2])
            value = cgutils.make_anonymous_struct(builder, [args[0], pointer])
        else:
            ctx = types.Tuple((scalars, record))
            llty = context.get_value_type(ctx)
            value = context.make_tuple(builder, ctx, (args[0], args[2]))
        slot = cgutils.alloca_once(builder, llty)
        builder.store(value, slot)
        return builder.ptrtoint(slot, ir.IntType(64))

    return sig, codegen


@intrinsic
def unpack(typingctx, addr, ctx_type):
    """The context :func:`pack` stored at ``addr``, read as ``ctx_type``
    (``(scalars, record)``): the scalars by value, and a named record as a
    :class:`RecordRef` (each field read is a new reference, released by the body as any
    local); any other record by value (a new reference to its arrays)."""
    if not isinstance(ctx_type, types.TypeRef):
        return None
    ty = ctx_type.instance_type
    scalars, record = ty.types
    by_ref = _by_ref(record)
    retty = types.Tuple((scalars, RecordRef(record))) if by_ref else ty
    sig = retty(addr, ctx_type)

    def codegen(context, builder, sig, args):
        if not by_ref:
            value = builder.load(builder.inttoptr(args[0], context.get_value_type(ty).as_pointer()))
            context.nrt.incref(builder, ty, value)
            return value
        llty = ir.LiteralStructType([context.get_value_type(scalars), _VOIDP])
        value = builder.load(builder.inttoptr(args[0], llty.as_pointer()))
        return context.make_tuple(builder, retty, (builder.extract_value(value, 0), builder.extract_value(value, 1)))

    return sig, codegen


@intrinsic
def _take(typingctx, counters, i):
    """The value of int64 slot ``i`` of ``counters`` (an int64 array, or the address of
    slots from :func:`_zeroed_slots`), incremented atomically: the next piece of a range,
    for whichever thread asks."""
    sig = types.int64(counters, i)
    i64 = ir.IntType(64)

    def codegen(context, builder, sig, args):
        if isinstance(sig.args[0], types.Array):
            base = builder.bitcast(make_array(sig.args[0])(context, builder, args[0]).data, i64.as_pointer())
        else:
            base = builder.inttoptr(args[0], i64.as_pointer())
        slot = builder.gep(base, [args[1]])
        return builder.atomic_rmw("add", slot, ir.Constant(i64, 1), "monotonic")

    return sig, codegen


@intrinsic
def _zeroed_slots(typingctx, count):
    """The address of ``count`` int64 zeros on the caller's stack (valid until it returns):
    no heap allocation per parallel region."""
    sig = types.intp(count)

    def codegen(context, builder, sig, args):
        i64 = ir.IntType(64)
        slots = builder.alloca(i64, size=args[0])
        cgutils.memset(builder, slots, builder.mul(args[0], ir.Constant(i64, 8)), 0)
        return builder.ptrtoint(slots, i64)

    return sig, codegen


#: int64 slots between two workers' counters in :func:`_run_parallel`: one cache line each.
_LINE = 8


@njit(**PARALLEL)
def _run_parallel(body, n, ctx):
    # Worker w owns pieces w*n//W .. (w+1)*n//W - 1 (the static split, so a thread keeps
    # the same blocks, and their data in its cache, from region to region) and takes them
    # in order through its counter; when they are done it takes what is left of the other
    # workers' pieces, the same way. A thread that starts late (its core busy) thus leaves
    # its pieces to the others instead of holding up the region. Each piece runs once.
    W = min(n, _pool_threads())
    taken = _zeroed_slots(W * _LINE)
    for w in prange(W):
        fp = flush_denormals()  # Numba's threads serve other code too: set for the region only
        for j in range(W):
            v = (np.int64(w) + j) % W  # np.int64: the prange index is unsigned in the parallel body
            start = v * n // W
            t = start + _take(taken, v * _LINE)
            while t < (v + 1) * n // W:
                call_void(body, (t, n, ctx))
                t = start + _take(taken, v * _LINE)
        restore_fp(fp)


def _launcher(body, n, ctx):
    _run_parallel(body, n, ctx)


#: The name under which the compiled :func:`_launcher` is known to LLVM (registered by
#: :func:`_register_launcher`, as Numba registers its own C helpers): callers reach the
#: parallel loop by this symbol, so its code (Numba's whole parfor machinery) lives in one
#: compiled module instead of being linked into every caller.
_LAUNCHER_SYMBOL = "fastbp_run_blocks"


@intrinsic
def _call_launcher(typingctx, body, n, ctx):
    _register_launcher()  # a caller being compiled: the symbol must exist when it is linked
    sig = types.void(types.int64, types.int64, types.int64)

    def codegen(context, builder, sig, args):
        i64 = ir.IntType(64)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i64] * 3), _LAUNCHER_SYMBOL)
        builder.call(fn, args)
        return context.get_dummy_value()

    return sig, codegen


def _get_num_threads(context, builder, sig, args):
    fnty = ir.FunctionType(cgutils.intp_t, [])
    return builder.call(cgutils.get_or_insert_function(builder.module, fnty, "get_num_threads"), [])


@intrinsic
def _pool_threads(typingctx):
    """:func:`_num_threads` for the launchers themselves (:func:`_run_parallel`,
    ``pool.launch``), compiled by :func:`_register_launcher` once the threading layer runs."""
    return types.intp(), _get_num_threads


@intrinsic
def _num_threads(typingctx):
    """The calling thread's Numba thread count, read through the ``get_num_threads`` symbol
    that Numba's threading layer registers with LLVM (resolved when the caller is linked, in
    every process: ``numba.get_num_threads()`` in compiled code would hold a ctypes pointer,
    which Numba cannot cache)."""
    _register_launcher()  # starts the threading layer, which registers the symbol
    return types.intp(), _get_num_threads


@njit(**SERIAL)
def run_blocks(body, n, ctx):
    """``body(t, n, ctx)`` for every ``t`` in ``0 .. n-1``, on as many threads as the
    calling thread's Numba count (fastbp's pool, ``pool.py``, or Numba's): each thread runs
    an even share of the pieces in order, then takes the pieces another thread has not
    started (one late to the region, its core busy). Every piece runs once, and its
    arithmetic does not depend on the thread that runs it. A single
    piece, or a calling thread whose Numba thread count is 1, runs on the calling thread
    in order (no parallel region to start; the same arithmetic: pieces are independent).
    That is also what lets a child forked after its parent ran parallel regions run
    (``fastbp._threads``): it never enters Numba's OpenMP pool. Subnormals are flushed to
    zero on every thread while the pieces run (``fpenv.py``)."""
    fp = flush_denormals()
    if n == 1 or _num_threads() == 1:
        for t in range(n):
            call_void(body, (np.int64(t), n, ctx))
    else:
        _call_launcher(np.int64(body), np.int64(n), np.int64(ctx))
    restore_fp(fp)


@njit(**INLINE)
def run_serial(body, n, ctx):
    """``body(t, n, ctx)`` for ``t`` in ``0 .. n-1`` in order, on the calling thread."""
    for t in range(n):
        call_void(body, (np.int64(t), n, ctx))


#: Every C callback compiled (or loaded from the cache) in this process, by qualified
#: name: ``cache_hits`` is 0 for one compiled here (tests check a warm cache by it).
CALLBACKS: dict[str, object] = {}

_compiled: dict[tuple, object] = {}
_lock = threading.RLock()  # re-entrant: a build may ask for another callback


def compile_callback(sig: types.Type, fn: Callable) -> object:
    """``numba.cfunc(sig)`` of the plain function ``fn`` (usually a :func:`specialise` copy),
    with the kernels' options; recorded in :data:`CALLBACKS`."""
    compiled = callback(sig, fn, SERIAL)
    CALLBACKS[f"{fn.__module__}.{fn.__qualname__}"] = compiled
    return compiled


def specialise(fn: Callable, suffix: str, bindings: dict) -> Callable:
    """A copy of the plain function ``fn`` that sees ``bindings`` as globals, with
    qualified name ``fn``'s + ``"__" + suffix``: compile it (``cfunc``/``njit``) to get one
    specialisation per suffix, cached apart. ``suffix`` must identify the bindings."""
    glb = dict(fn.__globals__)
    glb.update(bindings)
    copy = pytypes.FunctionType(fn.__code__, glb, fn.__name__, fn.__defaults__, fn.__closure__)
    copy.__qualname__ = f"{fn.__qualname__}__{suffix}"
    copy.__module__ = fn.__module__
    copy.__doc__ = fn.__doc__
    return copy


_launcher_cfunc = None


def _register_launcher() -> None:
    """Compile (or load) :func:`_launcher` and register its address as
    :data:`_LAUNCHER_SYMBOL`, before any caller of :func:`run_blocks` is compiled (the
    intrinsic's typing calls this) or loaded from the cache (:func:`body_address` calls it,
    and every caller needs a body's address first). Numba's thread pool is started first:
    the launcher's cached code refers to it, and Numba does not start it when it loads a
    C callback (measured: LLVM aborts the process, "Symbol not found: allocate_sched")."""
    global _launcher_cfunc
    if _launcher_cfunc is None:
        with _lock:
            if _launcher_cfunc is None:
                numba.get_num_threads()  # starts the thread pool (the threading layer)
                if OWN_POOL:  # regions run on fastbp's pool (pool.py), which Numba's count sizes
                    from . import pool

                    pool.start(numba.config.NUMBA_NUM_THREADS - 1)
                    compiled = compile_callback(BODY_SIG, pool.launcher)
                else:
                    compiled = compile_callback(BODY_SIG, _launcher)
                llvm.add_symbol(_LAUNCHER_SYMBOL, compiled.address)
                _launcher_cfunc = compiled


def cached_callback(key: tuple, build: Callable[[], object]) -> object:
    """The C callback stored under ``key`` in this process, made by ``build()`` (usually
    :func:`compile_callback` of a :func:`specialise` copy) on first use. Thread-safe: two
    threads asking at once compile it once."""
    compiled = _compiled.get(key)
    if compiled is None:
        with _lock:
            compiled = _compiled.get(key)
            if compiled is None:
                compiled = _compiled[key] = build()
    return compiled


def _layout(value: object) -> object:
    """A key at least as fine as Numba's type of ``value`` (a record's field, or the record),
    and much cheaper to compute than ``typeof``: class, dtype, ndim, contiguity, write and
    alignment flags of an array; the class of a scalar; the same for a tuple's items."""
    if isinstance(value, np.ndarray):
        f = value.flags
        return type(value), value.dtype, value.ndim, f.c_contiguous, f.f_contiguous, f.writeable, f.aligned
    if isinstance(value, tuple):
        return type(value), tuple(_layout(v) for v in value)
    return type(value)


#: body address by (fn, id of the scalars type, name, layout of the record): what a call
#: finds when it has been seen before (``typeof`` of a 40-field record took 0.15 ms a call).
_by_layout: dict[tuple, int] = {}


def body_address(
    fn: Callable, scalars_type: types.Type, record: object, name: str = "", bindings: dict | None = None
) -> int:  # fmt: skip
    """Address of ``fn`` compiled as a body for contexts ``(scalars_type, typeof(record))``
    (compiled, or loaded from Numba's cache, on first use in a process). Thread-safe.
    ``bindings`` are further globals of the compiled copy, identified by ``name`` (for
    example the optimizer a body is compiled for). ``scalars_type`` is a module constant."""
    fast = (fn, id(scalars_type), name, _layout(record))
    found = _by_layout.get(fast)
    if found is None:
        found = _by_layout[fast] = _body_address(fn, scalars_type, record, name, bindings)
    return found


def _body_address(fn: Callable, scalars_type: types.Type, record: object, name: str, bindings: dict | None) -> int:
    from numba import typeof

    _register_launcher()
    ctx_type = types.Tuple((scalars_type, typeof(record)))

    def build() -> object:
        digest = hashlib.sha256(str(ctx_type).encode()).hexdigest()[:16]
        suffix = f"{name}_{digest}" if name else digest
        return compile_callback(BODY_SIG, specialise(fn, suffix, {"CTX": ctx_type, **(bindings or {})}))

    return cached_callback((fn, ctx_type, name), build).address


prompt(globals())  # load this module's cached kernels without Numba's registry refresh (cache.py)
