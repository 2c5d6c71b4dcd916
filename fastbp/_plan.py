"""The network as data for the kernels, and the work buffers of a training batch.

:class:`Plan` lays a model's layers out for the compiled kernels (``kernels/engine.py``):
sizes, activation codes, offsets into the flat parameter array and the work buffers,
dropout rates. :func:`column_split` chooses between the row and the column split of a
batch, and :func:`workspace` allocates the buffers a training batch writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import _config
from ._adaptive import CoreLoad, ThreadChooser
from ._threads import small_gemm_path
from .kernels import engine
from .kernels.activations import addresses
from .kernels.dropout import dropout_addresses
from .kernels.optim import N_COEF, n_chunks
from .layers import Dense, Dropout


@dataclass
class Plan:
    """The network as data for the kernels: sizes, codes and offsets into flat arrays."""

    sizes: np.ndarray  # (L+1,) int64: n_features, units of each layer
    acts: np.ndarray  # (L,) int64 activation codes
    woff: np.ndarray  # (L,) offset of each weight matrix in theta
    boff: np.ndarray  # (L,) offset of each bias vector in theta
    coff: np.ndarray  # (L+1,) running sum of layer widths (work-buffer layout)
    n_weights: int  # weights come first in theta: weight decay covers theta[:n_weights]
    n_params: int
    drop: np.ndarray  # (L+1,) float64 dropout rate of the input and of each layer's output; () if none

    @classmethod
    def for_layers(cls, n_features: int, all_layers: Sequence[Dense | Dropout]) -> Plan:
        layers = [layer for layer in all_layers if isinstance(layer, Dense)]
        keep = np.ones(len(layers) + 1)
        slot = 0
        for layer in all_layers:
            if isinstance(layer, Dense):
                slot += 1
            elif isinstance(layer, Dropout):  # consecutive Dropouts combine: the kept fraction multiplies
                keep[slot] *= 1.0 - layer.rate
        drop = 1.0 - keep
        drop = drop if drop.any() else np.zeros(0)
        sizes = np.array([n_features] + [layer.units for layer in layers], dtype=np.int64)
        w_sizes = sizes[:-1] * sizes[1:]
        n_weights = int(w_sizes.sum())
        woff = np.concatenate([[0], np.cumsum(w_sizes)[:-1]]).astype(np.int64)
        boff = (n_weights + np.concatenate([[0], np.cumsum(sizes[1:])[:-1]])).astype(np.int64)
        acts = np.array([layer._act for layer in layers], dtype=np.int64)
        return cls(
            sizes=sizes,
            acts=acts,
            woff=woff,
            boff=boff,
            coff=np.concatenate([[0], np.cumsum(sizes[1:])]).astype(np.int64),
            n_weights=n_weights,
            n_params=n_weights + int(sizes[1:].sum()),
            drop=drop,
        )

    def drop_kernels(self, dtype: np.dtype) -> np.ndarray:
        """The dropout kernels' addresses in ``dtype`` (empty without dropout: then they
        are never compiled)."""
        return dropout_addresses(dtype) if self.drop.shape[0] else np.zeros(0, dtype=np.int64)

    def net(self, dtype: np.dtype) -> tuple:
        """(sizes, fwd, bwd, woff, boff, coff) for the kernels, with each layer's
        activation kernels compiled for ``dtype`` (addresses valid in this process only)."""
        fwd, bwd = addresses(self.acts, dtype)
        return self.sizes, fwd, bwd, self.woff, self.boff, self.coff


def parameter_count(n_features: int, layers: Sequence[Dense | Dropout]) -> int:
    """Number of parameters (weights and biases) of ``layers`` on ``n_features`` inputs."""
    return Plan.for_layers(n_features, layers).n_params


def column_split(sizes: np.ndarray, rows: int, n_threads: int, itemsize: int = 4) -> bool:
    """Whether training batches of ``rows`` rows use the column split (``kernels/columns.py``)
    rather than the row split: for small batches through wide hidden layers, where the row
    split would leave each thread a few rows against every whole weight matrix (each thread
    packing all of it for BLAS, then a full-size partial gradient per thread to sum). See
    :data:`_config.COLUMN_SPLIT_ROWS` and :data:`_config.COLUMN_SPLIT_LARGE_PARAMS`. On one
    thread, only where :func:`column_widths` narrows some layer's blocks (``itemsize``:
    the float's)."""
    hidden = sizes[1:-1]
    if hidden.shape[0] == 0 or int(hidden.max()) < _config.COLUMN_SPLIT_MIN_WIDTH:
        return False
    if n_threads == 1:  # one block per layer is the row split, unless blocks narrow for BLAS
        return bool(column_widths(sizes, rows, 1, itemsize).any())
    per_thread = rows / n_threads
    if per_thread < _config.COLUMN_SPLIT_ROWS:
        return True
    n_params = int((sizes[:-1] * sizes[1:]).sum() + sizes[1:].sum())
    return n_params >= _config.COLUMN_SPLIT_LARGE_PARAMS and per_thread <= int(hidden.max()) / 8


def column_widths(sizes: np.ndarray, rows: int, n_threads: int, itemsize: int) -> np.ndarray:
    """Width of the column blocks each hidden layer ``l`` is cut into by the column split
    (int64 per layer, the output layer's always 0), for batches of ``rows`` rows; 0: one
    even block per thread; negative: ``-w`` even blocks.

    Where the BLAS has a small-matrix path (:func:`fastbp._threads.small_gemm_path`), a
    layer gets the widest multiple of 64 bytes whose three products (forward, weight
    gradient, and the gradient of the layer's output) all fit the path's bounds
    (:data:`_config.SMALL_GEMM_MNK`), if that leaves at least as many blocks as threads and
    more than one. Such widths depend on the shapes and on the BLAS alone, so the blocks,
    and the sums within them, are the same whichever thread count runs them. Other layers
    get :func:`even_blocks`."""
    L = sizes.shape[0] - 1
    widths = np.zeros(L, dtype=np.int64)
    if rows < 1:
        return widths
    small = small_gemm_path()
    for l in range(L - 1):
        n_in, n_out, n_next = int(sizes[l]), int(sizes[l + 1]), int(sizes[l + 2])
        w = _config.SMALL_GEMM_MNK // (rows * max(n_in, n_next))
        if n_next >= _config.SMALL_GEMM_TN_K:  # the output gradient's transposed product
            w = min(w, _config.SMALL_GEMM_TN_MN // rows)
        w = _small_width(w, n_out, n_threads, itemsize) if small else 0
        widths[l] = w if w else -even_blocks(n_out, n_threads)
    return widths


def _small_width(w: int, n: int, n_threads: int, itemsize: int) -> int:
    """``w``, the widest block of ``n`` units whose products fit the small-matrix bounds,
    cut down to a multiple of 64 bytes; 0 where that is narrower than
    :data:`_config.SMALL_GEMM_MIN_WIDTH` or leaves fewer blocks than threads (or one)."""
    q = 64 // itemsize
    w -= w % q
    return w if w >= max(q, _config.SMALL_GEMM_MIN_WIDTH) and -(-n // w) >= max(2, n_threads) else 0


def even_blocks(n_out: int, n_threads: int) -> int:
    """How many even blocks the column split cuts a layer of ``n_out`` units into where it
    does not narrow them for BLAS's small-matrix path: the fewest, a multiple of the thread
    count, of at most :data:`_config.COLUMN_BLOCK_MAX` columns; 0 where that is one a
    thread (the default split). Only with more than one thread: on one, one block is the
    row split, which is faster."""
    if n_threads < 2:
        return 0
    per_thread = -(-n_out // (n_threads * _config.COLUMN_BLOCK_MAX))
    return n_threads * per_thread if per_thread > 1 else 0


def input_width(sizes: np.ndarray, rows: int, n_threads: int, itemsize: int) -> int:
    """Width of the blocks of input features the column split cuts the first layer's weight
    gradient into (``dW_0[r0:r1, :] = x[:, r0:r1]^T delta_0``), for batches of ``rows``
    rows; 0: one even block per thread. The rule of :func:`column_widths` for that one
    product."""
    if rows < 1 or not small_gemm_path():
        return 0
    return _small_width(_config.SMALL_GEMM_MNK // (rows * int(sizes[1])), int(sizes[0]), n_threads, itemsize)


def train_flops(sizes: np.ndarray) -> int:
    """Floating-point operations of one row of a training step: the forward product of
    each layer, its weight gradient and, but for the first layer, its input gradient
    (2 per multiply-add)."""
    macs = [int(a) * int(b) for a, b in zip(sizes[:-1], sizes[1:])]
    return 6 * sum(macs) - 2 * macs[0]


def block_rows(sizes: np.ndarray) -> int:
    """Fewest rows of a training batch's row block (``engine.n_blocks``' ``min_rows``):
    :data:`_config.MIN_ROWS_PER_BLOCK`, and enough rows for
    :data:`_config.MIN_BLOCK_FLOP`."""
    return max(_config.MIN_ROWS_PER_BLOCK, -int(-_config.MIN_BLOCK_FLOP // train_flops(sizes)))


def workspace(
    plan: Plan, rows: int, n_threads: int, sparse: bool, cols: bool, cwidth: np.ndarray, iwidth: int, labels: bool,
    k: int, dt: np.dtype,
) -> dict:  # fmt: skip
    """Work buffers for batches of up to ``rows`` rows on ``n_threads`` threads, for the row
    split or (``cols``, from :func:`column_split`) the column split in blocks of ``cwidth``
    columns (:func:`column_widths`; zeros for the row split) and ``iwidth`` input features
    (:func:`input_width`; 0 for the row split), for integer ``labels``
    (cross-entropy) or float targets of ``k`` outputs, in ``dt``.

    ``gpart`` holds one partial gradient per row block of the row split (at most
    ``engine.n_blocks(rows, ...)`` of them); the column split writes the whole gradient
    into one row. Sparse input always takes the row split, and gathers no batch (``xb``
    has no columns: the first layer reads the rows in place, ``kernels/sparse.py``)."""
    min_rows = block_rows(plan.sizes)
    nparts = 1 if cols else engine.n_blocks.py_func(rows, n_threads, min_rows)
    width = int(plan.coff[-1])
    return {
        "rows": rows,
        "threads": n_threads,
        "cols": cols,
        "cwidth": cwidth,
        "iwidth": iwidth,
        "min_rows": min_rows,
        "blocks": n_threads if cols else nparts,  # what a full batch is split into
        "sparse": sparse,
        "xb": np.empty((rows, 0 if sparse else int(plan.sizes[0])), dtype=dt),
        "ybi": np.zeros(rows if labels else 0, dtype=np.int64),
        "ybf": np.zeros((0 if labels else rows, k), dtype=dt),
        "wb": np.zeros(rows, dtype=np.float64),
        "abuf": np.empty(rows * width, dtype=dt),
        "zbuf": np.empty(rows * width, dtype=dt),
        "gbuf": np.empty(rows * width, dtype=dt),
        "gpart": np.empty((nparts, plan.n_params), dtype=dt),
        "lpart": np.zeros(n_threads, dtype=np.float64),
        "mpart": np.zeros((n_threads, 3), dtype=np.float64),
        "sq": np.zeros(n_chunks.py_func(plan.n_params), dtype=np.float64),
        "coef": np.zeros(N_COEF, dtype=dt),
        "chooser": ThreadChooser(n_threads, CoreLoad.for_machine() if n_threads > 1 else None),
        "fresh": True,  # no segment has run in it yet
        "runs": {},  # running thread count -> its workspace (model._run_workspace)
    }
