"""fastbp's own worker pool for ``launch.run_blocks``: a region ends when its pieces are done.

Numba's OpenMP pool ends every parallel region at a team barrier: the calling thread
returns only once every thread of the team has arrived, including one whose core another
process holds, which arrives when the scheduler next gives it a time slice. A training
step is several regions, so beside a busy core each paid that wait, and two threads
trained slower than one (measured on 2 cores with one taken by a spinning process,
784-1024-1024-10 at batch 1024: 11.9-12.3k samples/s on two threads against 12.4k on one).

Here the calling thread (the *master*) publishes a region, runs pieces itself, and returns
as soon as every piece has run: a worker that has not arrived yet simply finds no piece
left. It waits only for a piece a descheduled worker is in the middle of. The workers are
Python threads running compiled loops without the GIL (:func:`worker`), one fewer than
Numba's pool size; a region uses as many as the master's Numba thread count allows (the
thread count of ``fastbp.set_num_threads``, ``threadpoolctl`` and the adaptive choice).
As in ``launch._run_parallel``, each runs its even share of the pieces first, through that
share's atomic counter, then takes what is left of the others'. Every piece runs once, on
whichever thread, so results are the same bits as on Numba's pool.

A prototype (5 regions a step, two of 16 GEMM pieces and three of tiny ones, 2 cores with
one busy): 42.0-42.8 ms a step on one thread, 44.3-53.6 ms on Numba's pool, 32.0-33.6 ms
here (workers yielding their core after a short spin). Quiet, both pools ran it in 21 ms.

The shared state is one int64 array (:data:`STATE`, slots a cache line apart) that compiled
code finds through the symbol :data:`SYMBOL` (registered with LLVM at start, so cached
code links to it in every process). Each share's counter packs the region's generation,
the share's end and its next free piece, so a worker that reserves a piece also learns
whether it is one, and a late worker can never run a piece of a finished region. One master at
a time: a second Python thread that launches while a region runs does its pieces on its
own thread (the same arithmetic). An idle worker spins, then yields its core, then sleeps
in short naps, so an idle process costs next to no CPU; a sleeping worker is simply late to
the next region, which does not wait for it.
"""

from __future__ import annotations

import atexit
import threading

import numpy as np
from llvmlite import binding as llvm
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .._config import SERIAL
from .cache import prompt
from .fpenv import flush_denormals
from .launch import _pool_threads, call_void, imin

#: The state's slots (int64 indices, each on its own 64-byte line): the region's piece
#: count, body and context addresses, and width (its threads less the master); pieces done;
#: the generation; a stop flag; the master's lock; the workers running; then one piece
#: counter per share (:data:`MAX_SHARES` of them).
N, DONE, GEN, BODY, CTX, WIDTH, STOP, LOCK, WORKERS = (8 * i for i in range(9))
SHARES = 8 * 9
MAX_SHARES = 64
N_SLOTS = SHARES + 8 * MAX_SHARES
#: Bits of a share counter's fields (next piece, end of the share); the region's
#: generation sits above them, so that a reservation says which region it belongs to. A
#: region of more pieces runs on the master alone.
PIECE_BITS = 20
_PIECE_MASK = (1 << PIECE_BITS) - 1
_GEN_MASK = (1 << 22) - 1
#: An idle worker's back-off, in loop turns: spin (``pause``, ~10 ns here) this many, then
#: yield its core (``sched_yield``) until it has yielded this many times, then nap, each
#: nap twice as long as the last from NAP_US up to NAP_MAX_US. Measured on 2 cores, an idle
#: process after a fit: 12 % of a core with naps of 0.2 ms; with the doubling, 2-3 %. The
#: yields are few (~1 ms): a worker left out of a fit's one-thread segments (the adaptive
#: choice beside a busy core) yielding for 10,000 turns slowed the first of them, and a
#: look at one thread measured 6.5k batches/s of 64-128-64-10 where one thread ran 12k.
SPINS = 20_000
YIELDS = 1_000
NAP_US = 50
NAP_MAX_US = 2_000

#: The name compiled code finds :data:`STATE` by.
SYMBOL = "fastbp_pool_state"

#: The state: allocated once per process, never freed (the workers and cached code hold it).
STATE = np.zeros(N_SLOTS, dtype=np.int64)

_i64 = ir.IntType(64)


def _slot(builder, index):
    """A pointer to slot ``index`` of the state (the external global :data:`SYMBOL`)."""
    module = builder.module
    gv = module.globals.get(SYMBOL)
    if gv is None:
        gv = ir.GlobalVariable(module, ir.ArrayType(_i64, N_SLOTS), SYMBOL)
        gv.linkage = "external"
    base = builder.bitcast(gv, _i64.as_pointer())
    return builder.gep(base, [index])


@intrinsic
def _load(typingctx, index):
    def codegen(context, builder, sig, args):
        return builder.load_atomic(_slot(builder, args[0]), "acquire", 8)

    return types.int64(index), codegen


@intrinsic
def _store(typingctx, index, value):
    def codegen(context, builder, sig, args):
        builder.store_atomic(context.cast(builder, args[1], sig.args[1], types.int64), _slot(builder, args[0]),
                             "release", 8)  # fmt: skip
        return context.get_dummy_value()

    return types.void(index, value), codegen


@intrinsic
def _add(typingctx, index, value):
    """Add ``value`` to the slot atomically; returns the old value."""

    def codegen(context, builder, sig, args):
        v = context.cast(builder, args[1], sig.args[1], types.int64)
        return builder.atomic_rmw("add", _slot(builder, args[0]), v, "seq_cst")

    return types.int64(index, value), codegen


@intrinsic
def _claim(typingctx, index):
    """Set the slot from 0 to 1 atomically; whether this call did."""

    def codegen(context, builder, sig, args):
        pair = builder.cmpxchg(_slot(builder, args[0]), ir.Constant(_i64, 0), ir.Constant(_i64, 1), "acq_rel",
                               "monotonic")  # fmt: skip
        return builder.extract_value(pair, 1)

    return types.boolean(index), codegen


@intrinsic
def _pause(typingctx):
    def codegen(context, builder, sig, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse2.pause")
        builder.call(fn, [])
        return context.get_dummy_value()

    return types.void(), codegen


@intrinsic
def _yield(typingctx):
    """``sched_yield()``: let another runnable thread have this core."""

    def codegen(context, builder, sig, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []), "sched_yield")
        builder.call(fn, [])
        return context.get_dummy_value()

    return types.void(), codegen


@intrinsic
def _nap(typingctx, us):
    """``usleep(us)``."""

    def codegen(context, builder, sig, args):
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i32, [i32]), "usleep")
        builder.call(fn, [builder.trunc(context.cast(builder, args[0], sig.args[0], types.int64), i32)])
        return context.get_dummy_value()

    return types.void(us), codegen


@njit(**SERIAL)
def _run_pieces(p, width):
    """Participant ``p`` of ``width`` (the master is 0): reserve and run the pieces of its own
    share, in order, then what is left of the others' shares. Each reservation (the old
    value of a share's counter) holds its piece and the share's end, so a worker that
    reserves a piece of a region newer than the one it saw runs that region's piece: the
    region, and its body and context, stay until all of its pieces are done."""
    for j in range(width):
        slot = SHARES + ((p + j) % width) * 8
        while True:
            old = _add(slot, 1)
            t = old & _PIECE_MASK
            if t >= (old >> PIECE_BITS) & _PIECE_MASK:
                break
            call_void(_load(BODY), (t, _load(N), _load(CTX)))
            _add(DONE, 1)


@njit(**SERIAL)
def launch(body, n, ctx):
    """``body(t, n, ctx)`` for every ``t`` in ``0 .. n-1``: on the master and the workers
    its Numba thread count allows, each first running its even share of the pieces (the
    same blocks, and their data in its cache, from region to region), or on the master
    alone when another master holds the pool or the region has too many pieces. Returns
    when every piece has run."""
    width = imin(imin(imin(_pool_threads(), _load(WORKERS) + 1), n), MAX_SHARES)  # the caller's Numba count
    if width < 2 or n > _PIECE_MASK or not _claim(LOCK):
        for t in range(n):
            call_void(body, (t, n, ctx))
        return
    _store(BODY, body)
    _store(CTX, ctx)
    _store(N, n)
    _store(WIDTH, width - 1)
    _store(DONE, 0)
    gen = (_load(GEN) + 1) & _GEN_MASK
    for v in range(width):
        _store(SHARES + v * 8, (gen << (2 * PIECE_BITS)) | (((v + 1) * n // width) << PIECE_BITS) | (v * n // width))
    _store(GEN, gen)
    _run_pieces(0, width)
    while _load(DONE) < n:
        _pause()
    _store(LOCK, 0)


@njit(**SERIAL)
def worker(wid):
    """Worker ``wid`` (1 ..): run pieces of each new region it may join, until STOP; with
    subnormals flushed to zero (``fpenv.py``), for good: the thread runs only pieces."""
    flush_denormals()
    seen = _load(GEN)
    idle = 0
    nap = NAP_US
    while _load(STOP) == 0:
        gen = _load(GEN)
        if gen != seen:
            seen = gen
            idle = 0
            nap = NAP_US
            width = _load(WIDTH) + 1
            if wid < width:
                _run_pieces(wid, width)
        elif idle < SPINS:
            idle += 1
            _pause()
        elif idle < SPINS + YIELDS:
            idle += 1
            _yield()
        else:
            _nap(nap)
            nap = imin(2 * nap, NAP_MAX_US)


def launcher(body, n, ctx):
    """:func:`launch` as the C callback ``launch.run_blocks`` calls (``launch._LAUNCHER_SYMBOL``)."""
    launch(body, n, ctx)


_started = 0  # workers running in this process
_lock = threading.Lock()


def start(n_workers: int) -> None:
    """Register the state's symbol and start ``n_workers`` workers (once per process)."""
    global _started
    with _lock:
        if _started:
            return
        llvm.add_symbol(SYMBOL, STATE.ctypes.data)
        worker.compile((types.int64,))
        for wid in range(1, n_workers + 1):
            threading.Thread(target=worker, args=(wid,), name=f"fastbp-worker-{wid}", daemon=True).start()
        STATE[WORKERS] = n_workers
        _started = n_workers


def _stop() -> None:
    STATE[STOP] = 1


atexit.register(_stop)


prompt(globals())  # load this module's cached kernels without Numba's registry refresh (cache.py)
