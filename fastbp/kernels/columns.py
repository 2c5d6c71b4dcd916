"""The column split: training steps for small batches through wide layers.

The row split of ``engine.py`` gives each thread B/T rows. With small batches that leaves
each thread a GEMM of a few rows against the *whole* weight matrix: BLAS packs every
weight matrix once per thread, runs at its worst on 8-16 rows, and the weight gradients
become T full-size partials that must be summed. Here the hidden layers are split by
*output columns* instead: each thread computes its block of columns for all B rows, so
each weight matrix is read once, every GEMM keeps all B rows, and each thread writes its
own block of the gradient (no partials). The price is a barrier after each layer (one
parallel region per layer), since the next layer needs every column.

One training step, for layers 0 .. L-1 (L >= 2):

1. gather the batch rows (row blocks);
2. hidden layers 0 .. L-2, each one region over column blocks ``c``:
   ``z[:, c] = a_prev @ W[:, c]``, then bias, activation and dropout on those columns;
3. the output layer, the loss and its delta, by row blocks (the loss needs whole rows);
4. hidden layers L-2 .. 0 backwards, each one region over column blocks ``c`` of layer
   ``l``: ``g[:, c] = delta_{l+1} @ W_{l+1}[c, :]^T``, then the dropout unmask and
   ``f'`` on those columns, ``dW_l[:, c] = a_{l-1}^T delta_l[:, c]`` and ``db_l[c]``. The
   output layer's gradient is done by rows in the first of these regions:
   ``dW_{L-1}[c, :] = a_{L-2}[:, c]^T delta_{L-1}``.

Then ``engine.finish_step`` checks, clips and updates, as for the row split. Dropout masks
are keyed by (row, unit), so both splits draw the same masks; results equal the row
split's up to the order of floating-point sums (tested).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .._config import PARALLEL, SERIAL
from .activations import act_backward_, act_backward_cols_, bias_act_cols_
from .blas import gemm
from .dense import column_sums, dense_forward
from .dropout import dropout_backward_, dropout_backward_cols_, dropout_forward_, dropout_forward_cols_, step_key
from .engine import _region, _weights, batch_weight, finish_step, gather_rows_
from .losses import CROSS_ENTROPY, loss_grad, metric_sums_


@njit(**SERIAL)
def _gather_block_(t, nb, X, yi, yf, sw, rows, loss, drop, key, L, xb, ybi, ybf, wb):
    B = rows.shape[0]
    gather_rows_(X, yi, yf, sw, rows, t * B // nb, (t + 1) * B // nb, loss, drop, key, L, xb, ybi, ybf, wb)


@njit(**SERIAL)
def _forward_cols_(t, nb, l, B, theta, sizes, acts, woff, boff, coff, R, xb, abuf, zbuf, drop, key):
    """Thread ``t``'s block of the output columns of hidden layer ``l``, all B rows."""
    L = acts.shape[0]
    n_out = sizes[l + 1]
    c0 = t * n_out // nb
    c1 = (t + 1) * n_out // nb
    inp = xb[:B] if l == 0 else _region(abuf, R, coff, sizes, l - 1)[:B]
    a = _region(abuf, R, coff, sizes, l)[:B]
    z = _region(zbuf, R, coff, sizes, l)[:B]  # never a: see activations.bias_act_cols_
    gemm(inp, False, _weights(theta, sizes, woff, l)[:, c0:c1], False, z[:, c0:c1])
    bias_act_cols_(z, theta[boff[l] : boff[l] + n_out], acts[l], a, c0, c1)
    if drop.shape[0] > 0 and drop[l + 1] > 0:
        dropout_forward_cols_(a, np.int64(0), l + 1, L + 1, key, drop[l + 1], c0, c1)


@njit(**SERIAL)
def _output_rows_(
    t, nb, B, wsum, theta, sizes, acts, woff, boff, coff, R, loss, drop, key, ybi, ybf, wb, weighted,
    abuf, zbuf, gbuf, lpart, mpart,
):  # fmt: skip
    """Rows ``t*B//nb : (t+1)*B//nb``: the output layer, the metric sums, the loss and the
    output layer's delta (into ``gbuf``'s last region)."""
    L = acts.shape[0]
    l = L - 1
    k = sizes[L]
    r0 = t * B // nb
    r1 = (t + 1) * B // nb
    scale = 1.0 / wsum if loss == CROSS_ENTROPY else 1.0 / (wsum * k)
    inp = _region(abuf, R, coff, sizes, l - 1)[r0:r1]
    a = _region(abuf, R, coff, sizes, l)[r0:r1]
    z = _region(zbuf, R, coff, sizes, l)[r0:r1]
    g = _region(gbuf, R, coff, sizes, l)[r0:r1]
    dense_forward(inp, _weights(theta, sizes, woff, l), theta[boff[l] : boff[l] + k], acts[l], z, a)
    dropped = drop.shape[0] > 0 and drop[L] > 0
    if dropped:
        dropout_forward_(a, r0, L, L + 1, key, drop[L])
    wblk = wb[r0:r1] if weighted else wb[:0]
    if mpart.shape[0] > 0:
        mpart[t, :] = 0.0
        metric_sums_(a, ybi[r0:r1], ybf[r0:r1], wblk, loss, mpart[t])
    lpart[t] = loss_grad(a, ybi[r0:r1], ybf[r0:r1], wblk, loss, scale, g)
    if dropped:
        dropout_backward_(g, a, r0, L, L + 1, key, drop[L])
    act_backward_(g, a, z, acts[l])


@njit(**SERIAL)
def _backward_cols_(t, nb, l, B, theta, sizes, acts, woff, boff, coff, R, xb, abuf, zbuf, gbuf, dtheta, drop, key):
    """Thread ``t``'s block of the output columns of hidden layer ``l``: dL/da, delta,
    dW and db on those columns (see the module docstring)."""
    L = acts.shape[0]
    n_out = sizes[l + 1]
    c0 = t * n_out // nb
    c1 = (t + 1) * n_out // nb
    dnext = _region(gbuf, R, coff, sizes, l + 1)[:B]
    g = _region(gbuf, R, coff, sizes, l)[:B]
    a = _region(abuf, R, coff, sizes, l)[:B]
    z = _region(zbuf, R, coff, sizes, l)[:B]
    gemm(dnext, False, _weights(theta, sizes, woff, l + 1)[c0:c1, :], True, g[:, c0:c1])
    if l + 1 == L - 1:
        # the output layer's gradient, rows c0:c1 of it; ``a`` is still its masked input
        gemm(a[:, c0:c1], True, dnext, False, _weights(dtheta, sizes, woff, L - 1)[c0:c1, :])
        if t == 0:
            column_sums(dnext, dtheta[boff[L - 1] : boff[L - 1] + sizes[L]])
    if drop.shape[0] > 0 and drop[l + 1] > 0:
        dropout_backward_cols_(g, a, np.int64(0), l + 1, L + 1, key, drop[l + 1], c0, c1)
    act_backward_cols_(g, a, z, acts[l], c0, c1)
    inp = xb[:B] if l == 0 else _region(abuf, R, coff, sizes, l - 1)[:B]
    gemm(inp, True, g[:, c0:c1], False, _weights(dtheta, sizes, woff, l)[:, c0:c1])
    column_sums(g, dtheta[boff[l] : boff[l] + n_out], c0, c1)


@njit(**PARALLEL)
def train_batches_cols(
    X, yi, yf, sw, order, b0, b1, batch_size, n_threads, theta, sizes, acts, woff, boff, coff, loss,
    drop, seed, opt, hyper, clipnorm, step, m, v, coef, n_decay, xb, ybi, ybf, wb, abuf, zbuf, gbuf,
    gpart, lpart, mpart, sq, acc,
):  # fmt: skip
    """:func:`engine.train_batches` with the column split (module docstring), for networks
    with at least one hidden layer. ``n_threads`` column blocks per hidden layer; the
    gradient goes straight into ``gpart[0]``. Same arguments and result, less
    ``min_rows``."""
    N = order.shape[0]
    L = acts.shape[0]
    R = xb.shape[0]
    k = sizes[L]
    weighted = sw.shape[0] > 0
    nb = n_threads
    for bi in range(b0, b1):
        s = bi * batch_size
        e = min(N, s + batch_size)
        rows = order[s:e]
        B = e - s
        wsum = batch_weight(sw, rows)
        if wsum == 0.0:
            continue  # every row has weight 0: nothing to learn, no step
        nr = min(nb, B)
        key = step_key(seed, step + 1)
        for t in prange(nr):
            _gather_block_(np.int64(t), nr, X, yi, yf, sw, rows, loss, drop, key, L, xb, ybi, ybf, wb)
        for l in range(L - 1):
            for t in prange(nb):
                _forward_cols_(
                    np.int64(t), nb, l, B, theta, sizes, acts, woff, boff, coff, R, xb, abuf, zbuf, drop, key
                )  # fmt: skip
        for t in prange(nr):
            _output_rows_(
                np.int64(t), nr, B, wsum, theta, sizes, acts, woff, boff, coff, R, loss, drop, key, ybi, ybf,
                wb, weighted, abuf, zbuf, gbuf, lpart, mpart,
            )  # fmt: skip
        for l in range(L - 2, -1, -1):
            for t in prange(nb):
                _backward_cols_(
                    np.int64(t), nb, l, B, theta, sizes, acts, woff, boff, coff, R, xb, abuf, zbuf, gbuf,
                    gpart[0], drop, key,
                )  # fmt: skip
        ok, step = finish_step(
            1, nr, wsum, loss, k, clipnorm, opt, hyper, step, theta, m, v, coef, n_decay, gpart, lpart,
            mpart, sq, acc,
        )  # fmt: skip
        if not ok:
            return step, bi
    return step, np.int64(-1)
