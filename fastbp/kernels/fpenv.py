"""Subnormal floats flushed to zero while fastbp computes: x86's FTZ and DAZ modes.

A float below the smallest normal number (1.2e-38 in float32, 2.2e-308 in float64) is
*subnormal*, and on x86 cores every operation that reads or produces one takes a
microcode assist of a hundred or more cycles. Training makes them: as a classifier
fits its data, the softmax probabilities of the wrong classes, and with them the output
deltas, every gradient computed from those deltas and the momentum that accumulates them,
sink through the subnormal range on their way to zero. Measured on 64-128-64-10 at batch
64 (one thread, 60,000 rows, linearly separable classes): epochs took 60 ms at first and
267 ms by the 40th, with the loss still falling; with these modes set, 63-65 ms for all 40
epochs and the same loss to every printed digit. JAX (XLA) flushes subnormals too, and held
59-87 ms on the same fit.

:func:`flush_denormals` sets MXCSR's flush-to-zero bit (a subnormal result becomes 0) and
its denormals-are-zero bit (a subnormal operand reads as 0) for the calling thread and
returns the control word it found; :func:`restore_fp` puts that word back. MXCSR belongs
to a thread, so every thread that runs fastbp's arithmetic sets it: ``launch.run_blocks``
and the drivers on the calling thread (and restore it before they return, so the caller's
own NumPy arithmetic keeps gradual underflow), the pool's workers once when they start,
and Numba's threads around each block they run. The modes change only values that are
below 1.2e-38 (float32) in magnitude, so no test tolerance notices them.

On other architectures both compile to nothing and subnormals keep IEEE gradual underflow.
"""

from __future__ import annotations

import platform

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

#: MXCSR's flush-to-zero (bit 15) and denormals-are-zero (bit 6) bits.
FLUSH_BITS = 0x8040

#: Whether the floating-point control word is x86's MXCSR (SSE on x86-64).
X86 = platform.machine().lower() in ("x86_64", "amd64")

_i8p = ir.IntType(8).as_pointer()
_i32 = ir.IntType(32)
_i64 = ir.IntType(64)


def _mxcsr(builder, name: str, slot) -> None:
    fn = builder.module.declare_intrinsic(name, fnty=ir.FunctionType(ir.VoidType(), [_i8p]))
    builder.call(fn, [builder.bitcast(slot, _i8p)])


@intrinsic
def flush_denormals(typingctx):
    """Set FTZ and DAZ for the calling thread; return the control word before (x86), or 0."""

    def codegen(context, builder, sig, args):
        if not X86:
            return ir.Constant(_i64, 0)
        slot = cgutils.alloca_once(builder, _i32)  # in the entry block, not once per loop turn
        _mxcsr(builder, "llvm.x86.sse.stmxcsr", slot)
        old = builder.load(slot)
        builder.store(builder.or_(old, ir.Constant(_i32, FLUSH_BITS)), slot)
        _mxcsr(builder, "llvm.x86.sse.ldmxcsr", slot)
        return builder.zext(old, _i64)

    return types.int64(), codegen


@intrinsic
def restore_fp(typingctx, old):
    """Put back the control word ``old`` that :func:`flush_denormals` returned."""

    def codegen(context, builder, sig, args):
        if X86:
            slot = cgutils.alloca_once(builder, _i32)  # in the entry block, not once per loop turn
            builder.store(builder.trunc(args[0], _i32), slot)
            _mxcsr(builder, "llvm.x86.sse.ldmxcsr", slot)
        return context.get_dummy_value()

    return types.void(types.int64), codegen


@intrinsic
def control_word(typingctx):
    """The calling thread's control word (x86: MXCSR), or 0 elsewhere; for tests."""

    def codegen(context, builder, sig, args):
        if not X86:
            return ir.Constant(_i64, 0)
        slot = cgutils.alloca_once(builder, _i32)  # in the entry block, not once per loop turn
        _mxcsr(builder, "llvm.x86.sse.stmxcsr", slot)
        return builder.zext(builder.load(slot), _i64)

    return types.int64(), codegen
