"""The column split: training steps for small batches through wide layers.

The row split of ``engine.py`` gives each thread B/T rows. With small batches that leaves
each thread a GEMM of a few rows against the *whole* weight matrix: BLAS packs every
weight matrix once per thread, runs at its worst on 8-16 rows, and the weight gradients
become T full-size partials that must be summed. Here the hidden layers are split by
*output columns* instead: each thread computes its block of columns for all B rows, so
each weight matrix is read once, every GEMM keeps all B rows, and each thread writes its
own block of the gradient (no partials). The price is a barrier after each layer (one
parallel region per layer), since the next layer needs every column.

The blocks are one per thread, or, where the BLAS has a small-matrix path (OpenBLAS's
AVX-512 kernels), ``cwidth[l]`` columns wide (``_plan.column_widths``; the input
features' blocks ``iwidth``, ``_plan.input_width``): narrow enough that every product of
the block skips BLAS's packing copies, which trains 784-512-256-10 at
batch 32 about 1.4x faster on 2 threads and 1.3x on 1. A thread then runs several blocks
per region. Such widths depend only on the shapes, so the weights do not depend on how
many threads ran.

One training step, for layers 0 .. L-1 (L >= 2):

1. gather the batch rows (row blocks);
2. hidden layers 0 .. L-2, each one region over column blocks ``c``:
   ``z[:, c] = a_prev @ W[:, c]``, then bias, activation and dropout on those columns;
3. the output layer, the loss and its delta, by row blocks (the loss needs whole rows);
4. hidden layers L-2 .. 0 backwards, each one region over column blocks ``c`` of layer
   ``l``: ``g[:, c] = delta_{l+1} @ W_{l+1}[c, :]^T``, rows ``c`` of the next layer's
   weight gradient ``dW_{l+1}[c, :] = a_l[:, c]^T delta_{l+1}``, then the dropout unmask
   and ``f'`` on those columns and ``db_l[c]``;
5. the first layer's weight gradient, one region over blocks ``r`` of input features:
   ``dW_0[r, :] = x[:, r]^T delta_0``.

So every weight gradient is cut by its *input* rows, each block a full product over the
batch. Cut by output columns, as the forward pass is, the same products ran 10-15 %
slower at batch 128 (784-512-256-10, 2 threads: the largest, ``dW_0``, 0.65-0.83 ms
against 0.59-0.71 ms), and a whole epoch 1.05-1.14x slower (interleaved in one process);
the weights came out the same bits either way here (each element is the same dot product).

Then ``engine.finish_step`` checks, clips and updates, as for the row split. Each region
is a body run by ``launch.run_blocks``, as in ``engine.py``; all take the same
``engine.TrainArgs`` record, and ``engine.train_batches`` runs them (its ``bodies`` from
:func:`train_bodies`). Like the row passes, the bodies are written on addresses (see
``engine.py``), so they compile once for every dtype. Dropout masks
are keyed by (row, unit), so both splits draw the same masks; results equal the row
split's up to the order of floating-point sums (tested).
"""

from __future__ import annotations

import numpy as np

from .blas import gemm_at
from .engine import COLS_STEP, _at, column_range, gather_rows_, loss_rows_, step_address_of
from .launch import CTX, address, body_address, call_void, unpack
from .losses import CROSS_ENTROPY


def gather_body(t, nb, ctx):
    """Rows ``t*B//nb : (t+1)*B//nb`` of the batch into the batch buffers."""
    (s, e, _, _, key), a = unpack(ctx, CTX)
    rows = a.order[s:e]
    B = e - s
    L = a.fwd.shape[0]
    gather_rows_(a.X, a.yi, a.yf, a.sw, rows, t * B // nb, (t + 1) * B // nb, a.loss, a.drop, a.dropk, key, L, a.xb,
                 a.ybi, a.ybf, a.wb, a.sizes[0])  # fmt: skip


def forward_cols_body(t, nb, ctx):
    """Thread ``t``'s block ``c0:c1`` of the output columns of hidden layer ``l``, all B
    rows: ``z[:, c0:c1] = inp @ W[:, c0:c1]``, then bias, activation and dropout there."""
    (s, e, l, _, key), a = unpack(ctx, CTX)
    B = e - s
    sizes = a.sizes
    R = a.xb.shape[0]
    L = a.fwd.shape[0]
    isz = a.isz
    n_in = sizes[l]
    n_out = sizes[l + 1]
    c0, c1 = column_range(t, nb, n_out, a.cwidth[l])
    theta = address(a.theta)
    inp = address(a.xb) if l == 0 else _at(address(a.abuf), R, a.coff, sizes, l - 1, 0, isz)
    out = _at(address(a.abuf), R, a.coff, sizes, l, 0, isz)
    z = _at(address(a.zbuf), R, a.coff, sizes, l, 0, isz)  # never out: see activations.bias_act_cols_
    gemm_at(isz, False, False, B, c1 - c0, n_in, inp, n_in, theta + (a.woff[l] + c0) * isz, n_out, z + c0 * isz,
            n_out)  # fmt: skip
    call_void(a.fwd[l], (z, theta + a.boff[l] * isz, out, B, n_out, c0, c1))
    if a.drop.shape[0] > 0 and a.drop[l + 1] > 0:
        call_void(a.dropk[0], (out, B, n_out, np.int64(0), l + 1, L + 1, key, a.drop[l + 1], c0, c1))


def output_rows_body(t, nb, ctx):
    """Rows ``t*B//nb : (t+1)*B//nb``: the output layer, the metric sums, the loss and the
    output layer's delta (into ``gbuf``'s last region)."""
    (s, e, _, wsum, key), a = unpack(ctx, CTX)
    B = e - s
    sizes = a.sizes
    R = a.xb.shape[0]
    L = a.fwd.shape[0]
    isz = a.isz
    l = L - 1
    k = sizes[L]
    n_in = sizes[l]
    r0 = t * B // nb
    r1 = (t + 1) * B // nb
    n = r1 - r0
    zero = np.int64(0)
    scale = 1.0 / wsum if a.loss == CROSS_ENTROPY else 1.0 / (wsum * k)
    theta = address(a.theta)
    inp = _at(address(a.abuf), R, a.coff, sizes, l - 1, r0, isz)
    out = _at(address(a.abuf), R, a.coff, sizes, l, r0, isz)
    z = _at(address(a.zbuf), R, a.coff, sizes, l, r0, isz)
    g = _at(address(a.gbuf), R, a.coff, sizes, l, r0, isz)
    gemm_at(isz, False, False, n, k, n_in, inp, n_in, theta + a.woff[l] * isz, k, z, k)
    call_void(a.fwd[l], (z, theta + a.boff[l] * isz, out, n, k, zero, k))
    dropped = a.drop.shape[0] > 0 and a.drop[L] > 0
    if dropped:
        call_void(a.dropk[0], (out, n, k, r0, L, L + 1, key, a.drop[L], zero, k))
    loss_rows_(a, t, r0, r1, out, g, scale)
    if dropped:
        call_void(a.dropk[1], (g, out, n, k, r0, L, L + 1, key, a.drop[L], zero, k))
    if a.bwd[l] != 0:
        call_void(a.bwd[l], (g, out, z, n, k, zero, k))


def backward_cols_body(t, nb, ctx):
    """Thread ``t``'s block ``c0:c1`` of the output columns of hidden layer ``l``: dL/da,
    delta and db on those columns, and rows ``c0:c1`` of the next layer's weight gradient
    (see the module docstring)."""
    (s, e, l, _, key), a = unpack(ctx, CTX)
    B = e - s
    sizes = a.sizes
    R = a.xb.shape[0]
    L = a.fwd.shape[0]
    isz = a.isz
    zero = np.int64(0)
    theta = address(a.theta)
    dtheta = address(a.gpart)  # its row 0: the column split writes the whole gradient
    n_out = sizes[l + 1]
    n_next = sizes[l + 2]
    c0, c1 = column_range(t, nb, n_out, a.cwidth[l])
    w = c1 - c0
    dnext = _at(address(a.gbuf), R, a.coff, sizes, l + 1, 0, isz)
    g = _at(address(a.gbuf), R, a.coff, sizes, l, 0, isz)
    out = _at(address(a.abuf), R, a.coff, sizes, l, 0, isz)
    z = _at(address(a.zbuf), R, a.coff, sizes, l, 0, isz)
    # g[:, c0:c1] = delta_{l+1} @ W_{l+1}[c0:c1, :]^T
    gemm_at(isz, False, True, B, w, n_next, dnext, n_next, theta + (a.woff[l + 1] + c0 * n_next) * isz, n_next,
            g + c0 * isz, n_out)  # fmt: skip
    # dW_{l+1}[c0:c1, :] = a_l[:, c0:c1]^T delta_{l+1}; ``out`` is still its masked input
    gemm_at(isz, True, False, w, n_next, B, out + c0 * isz, n_out, dnext, n_next,
            dtheta + (a.woff[l + 1] + c0 * n_next) * isz, n_next)  # fmt: skip
    if l + 1 == L - 1 and t == 0:  # the output layer's bias gradient (its units are few)
        call_void(a.sumk, (dnext, B, n_next, zero, n_next, dtheta + a.boff[L - 1] * isz))
    if a.drop.shape[0] > 0 and a.drop[l + 1] > 0:
        call_void(a.dropk[1], (g, out, B, n_out, zero, l + 1, L + 1, key, a.drop[l + 1], c0, c1))
    if a.bwd[l] != 0:
        call_void(a.bwd[l], (g, out, z, B, n_out, c0, c1))
    call_void(a.sumk, (g, B, n_out, c0, c1, dtheta + a.boff[l] * isz))


def input_grad_body(t, nb, ctx):
    """Thread ``t``'s block ``r0:r1`` of the input features: rows ``r0:r1`` of the first
    layer's weight gradient, ``dW_0[r0:r1, :] = x[:, r0:r1]^T delta_0``."""
    (s, e, _, _, _), a = unpack(ctx, CTX)
    B = e - s
    sizes = a.sizes
    isz = a.isz
    n_in = sizes[0]
    n_out = sizes[1]
    r0, r1 = column_range(t, nb, n_in, a.iwidth)
    g = _at(address(a.gbuf), a.xb.shape[0], a.coff, sizes, 0, 0, isz)
    gemm_at(isz, True, False, r1 - r0, n_out, B, address(a.xb) + r0 * isz, n_in, g, n_out,
            address(a.gpart) + (a.woff[0] + r0 * n_out) * isz, n_out)  # fmt: skip


def train_bodies(a: object) -> np.ndarray:
    """The ``bodies`` array of ``engine.train_batches`` for the column split, for the
    ``engine.TrainArgs`` record ``a``: no row-split body (0, which selects this split), the
    optimizer's step body, then this module's bodies at ``engine.GATHER`` ..
    ``engine.INPUT_GRAD``."""
    bodies = [body_address(fn, COLS_STEP, a) for fn in COLUMN_BODIES]
    return np.array([0, step_address_of(a), *bodies], dtype=np.int64)


#: The bodies at ``engine.GATHER`` .. ``engine.INPUT_GRAD``, in that order.
COLUMN_BODIES = (gather_body, forward_cols_body, output_rows_body, backward_cols_body, input_grad_body)
