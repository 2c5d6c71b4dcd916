"""Every numerical knob of fastbp in one place: dtypes and the Numba option sets.

The fastmath flags are stumpy's set. It leaves out ``nnan`` and ``ninf``: with plain
``fastmath=True`` LLVM may delete NaN/inf checks, which would hide a diverging run.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

#: Floating dtypes the kernels are compiled for (one compiled variant each).
DTYPES: tuple[np.dtype, ...] = (np.dtype(np.float32), np.dtype(np.float64))

#: Default parameter and computation dtype.
DEFAULT_DTYPE: np.dtype = np.dtype(np.float32)

FASTMATH: set[str] = {"nsz", "arcp", "contract", "afn", "reassoc"}

def _writable(path: str) -> bool:
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            return True
    except OSError:
        return False


def _cache_available() -> bool:
    """Whether Numba can cache compiled kernels somewhere: ``NUMBA_CACHE_DIR`` when set
    (Numba uses only it then), else ``__pycache__`` next to the kernels' sources, else the
    user's cache folder (Numba's own order). With none writable (a read-only install run by
    a user without a home directory, for example), ``cache=True`` would make Numba raise
    "no locator available" at import; kernels are then compiled in every process instead."""
    import numba

    if numba.config.CACHE_DIR:
        return _writable(numba.config.CACHE_DIR)
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernels", "__pycache__")
    if _writable(here):
        return True
    from numba.misc.appdirs import AppDirs

    return _writable(AppDirs(appname="numba", appauthor=False).user_cache_dir)


#: Whether compiled kernels are cached on disk (see :func:`_cache_available`).
CACHE: bool = _cache_available()

#: Options for kernels that run on one thread. ``error_model="numpy"``: a division by zero
#: gives inf/nan as in NumPy instead of raising ZeroDivisionError, and so needs no check
#: (a branch per division, which kept the optimizer loops from vectorising). No ``cache``:
#: each kernel module gives its kernels a disk cache itself, when :data:`CACHE`, one that
#: is set up on first use (``kernels/cache.py``).
SERIAL: dict = {"fastmath": FASTMATH, "nogil": True, "error_model": "numpy"}

#: Whether parallel regions run on fastbp's own worker pool (``kernels/pool.py``), whose
#: regions end when their pieces are done, rather than on Numba's OpenMP pool, whose
#: regions end when every thread has arrived. Environment: ``FASTBP_POOL=0`` for Numba's.
OWN_POOL: bool = os.environ.get("FASTBP_POOL", "1") != "0"

#: Options for kernels that split their work with ``prange``.
PARALLEL: dict = SERIAL | {"parallel": True}

#: Options for small helpers, inlined into their callers at Numba's IR level. Numba
#: compiles every jitted function on its own and then again inside each caller's module
#: (LLVM optimisation and machine code for the whole call tree, at every level), so a
#: thin helper such as a reshape adds a compile level to everything below it. Loops that
#: carry real work stay separate functions: inlining everything made one huge function
#: and a cold first ``fit`` took 71 s instead of 44 s (measured).
INLINE: dict = SERIAL | {"inline": "always"}

#: Fewest batch rows a thread is given in training; below this the split costs more
#: (a barrier and a separate packing of each weight matrix) than it saves.
MIN_ROWS_PER_BLOCK: int = 16

#: Fewest floating-point operations a row block of a training batch is given (its forward
#: and backward products, ``_plan.train_flops``): a batch is split into no more blocks than
#: that allows, on any thread count, so a small network's batch stays one block. Two
#: threads then gain little even on an idle machine, while beside a busy core the one
#: thread that runs (``_adaptive.py``) pays for blocks cut for two. Measured on 2 cores
#: (samples/s, 20,000 rows, fresh processes): 64-128-64-10 at batch 64 (2.7 MFLOP a block of
#: 32 rows) 945-1032k on 2 threads against 838-992k on 1, but beside a busy core adaptive
#: 797-889k against 943-996k on one thread's single block; at batch 96 (4.1 MFLOP a block)
#: 2 threads gain 1.25x, at 128 1.4-1.5x. Not all shapes are that sharp:
#: 16-64-64-64-64-1 (Adam) at batch 64 (2.5 MFLOP a block) gained 1.17x on 2 threads and
#: now runs one block; at batch 128 (5 MFLOP) it keeps two (1.45x). The rule depends on
#: the shape only, never on timing, so the weights stay reproducible. Environment:
#: ``FASTBP_MIN_BLOCK_FLOP`` (the test suite sets 0, so that its small networks still
#: exercise the split into row blocks that larger networks take).
DEFAULT_MIN_BLOCK_FLOP: float = 3e6
MIN_BLOCK_FLOP: float = float(os.environ.get("FASTBP_MIN_BLOCK_FLOP", DEFAULT_MIN_BLOCK_FLOP))

#: Training uses the column split (``kernels/columns.py``) when a batch gives each thread
#: fewer rows than this and the widest hidden layer has at least
#: :data:`COLUMN_SPLIT_MIN_WIDTH` units; else the row split. Measured on 2 cores (epoch
#: time, column split / row split, best of 5): 784-512-256-10 at batch 32 0.82, at batch
#: 64 0.85-0.87, at batch 128 0.95; 64-128-64-10 at batch 32 1.17, at batch 64 1.20. On a
#: 16-core Xeon, 784-512-256-10 at batch 32 trained 1.16x, 1.32x and 1.42x faster on 2, 4
#: and 8 threads, and at batch 128 on 8 threads 1.22x.
COLUMN_SPLIT_ROWS: int = 64

#: See :data:`COLUMN_SPLIT_ROWS`.
COLUMN_SPLIT_MIN_WIDTH: int = 256

#: Networks with at least this many parameters also use the column split while each
#: thread's rows are at most an eighth of the widest hidden layer: there the row split's
#: cost (each thread packing every whole weight matrix for BLAS, then one full-size partial
#: gradient per thread to sum) outweighs a barrier per layer. Measured on 2 cores (samples/s,
#: column split / row split, median of 5-7 interleaved epochs):
#: 784-512-256-10 at batch 128 1.02-1.09 in four runs (Adam 1.06), at batch 256 0.85;
#: 784-1024-1024-10 at batch 128 1.19, at 256 1.08, at 1024 0.87; below the parameter
#: count, 784-256-10 (203k) at batch 128 0.99, 64-256-256-10 0.92, 100-256-10 0.89. With 1
#: of 2 threads running (adaptation on a busy machine), 784-512-256-10 at batch 128 reached
#: 0.93 of a one-thread model's speed against 0.87 for the row split.
COLUMN_SPLIT_LARGE_PARAMS: int = 250_000

#: OpenBLAS's AVX-512 kernels (SkylakeX, and Cooperlake and Sapphire Rapids, which reuse
#: them) run a GEMM of M x N x K <= 100^3 through a "small-matrix" path that skips the
#: packing copies (``*gemm_small_kernel_permit_skylakex.c``; a transposed first operand
#: also needs M N <= 1200 and K >= 32, in BLAS's column-major terms). Where the BLAS has
#: it, the column split cuts each hidden layer into blocks of :func:`_plan.column_widths`
#: columns, a multiple of 64 bytes, narrow enough that its products take that path. Measured
#: on 2 cores (SkylakeX kernel, samples/s, interleaved epochs in one process):
#: 784-512-256-10 at batch 32, blocks of 32 columns in layer 0 (16 of them) against 2
#: halves, 49.9-54.1k against 35.4-39.1k on 2 threads, 30.0-31.0k against 22.9-23.5k on 1
#: (layer 1 in blocks of 16 or 48 columns: alike); 12 blocks (43 columns, past the bound)
#: 34.7k and 24 blocks (21, unaligned) 37.7k. At batch 128 the bound leaves 8 columns, and
#: 64 such blocks were slower (51.8k against 55.1k), so it keeps two halves.
SMALL_GEMM_MNK: int = 1_000_000
SMALL_GEMM_TN_MN: int = 1200
SMALL_GEMM_TN_K: int = 32
SMALL_GEMM_CORES: frozenset = frozenset({"skylakex", "cooperlake", "sapphirerapids"})
#: Narrowest block :func:`_plan.column_widths` cuts (columns, either dtype).
SMALL_GEMM_MIN_WIDTH: int = 16
#: Whether the column split narrows its blocks: None (default) where the BLAS the kernels
#: call has the small-matrix path (:func:`_threads.small_gemm_path`); True or False forces
#: it (tests, benchmarks).
NARROW_BLOCKS: bool | None = None

#: Widest column block of a layer the column split does not narrow for the small-matrix
#: path (``_plan.even_blocks``): wider layers are cut into more even blocks than threads.
#: Measured on 2 cores (epochs interleaved in one process, samples/s ratio against one
#: block per thread): 784-512-256-10 at batch 128, layer 0 in 4 blocks of 128 columns,
#: 1.03-1.06x (blocks of 64: 1.04-1.10x, of 32: 0.96-1.01x); 784-1024-1024-10 at batch
#: 128, blocks of 128 1.09x, of 256 1.05x; with ``OPENBLAS_CORETYPE=Haswell`` (no small
#: path) 784-512-256-10 at batch 128 1.05x and at batch 32 1.00x.
COLUMN_BLOCK_MAX: int = 128

#: Whether an adaptive ``fit`` segment that runs fewer threads than the thread count
#: (``_adaptive.py``) splits its batches into that many threads' blocks (True) or keeps
#: the full count's blocks (False, default: the weights are then bit for bit those of
#: ``set_num_threads(n)`` whatever ran, the same on every run of a seed). Keeping them
#: costs one thread running blocks cut for two: measured on 2 cores with one busy, in one
#: process alternating epochs, 64-128-64-10 at batch 128 trained at 0.92x a one-thread
#: model's speed with the full count's blocks against 0.98x with its own, 784-512-256-10 at
#: batch 128 0.90x against 0.95x, with Adam 0.88x against 1.01x. True trades the bits for
#: that: the weights then follow the choices to rounding (6e-8 measured, tests/test_threads.py)
#: and two runs of a seed on a busy machine may differ in the last bits.
RUN_BLOCKS: bool = False

#: Rows per thread-local chunk in ``predict``/``evaluate``.
PREDICT_CHUNK: int = 256

#: Target wall time of one compiled segment of a ``fit`` epoch: the progress bar refreshes
#: and Ctrl-C takes effect between segments. Each extra call costs ~50 us, far below 1%.
SEGMENT_SECONDS: float = 0.2
