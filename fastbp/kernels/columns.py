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

Then ``engine.finish_step`` checks, clips and updates, as for the row split. Each region
is a body run by ``launch.run_blocks``, as in ``engine.py``; all take the same
``engine.TrainArgs`` record. Dropout masks
are keyed by (row, unit), so both splits draw the same masks; results equal the row
split's up to the order of floating-point sums (tested).
"""

from __future__ import annotations

import numpy as np
from numba import njit, types

from .._config import INLINE, SERIAL
from .activations import act_backward_, act_backward_cols_, bias_act_cols_
from .blas import gemm
from .dense import column_sums, dense_forward
from .dropout import drop_backward_, drop_forward_, step_key
from .engine import _block, _weights, batch_weight, finish_step, gather_rows_
from .launch import CTX, body_address, imin, pack, ref, run_blocks, unpack
from .losses import CROSS_ENTROPY, GRAD, METRICS, call_loss
from .optim import sum_sq_address, update_address

#: Per-call scalars of the bodies here: first and end position of the batch in ``order``,
#: the layer, the batch's total sample weight and its dropout key.
COLS_STEP = types.Tuple((types.int64, types.int64, types.int64, types.float64, types.uint64))

#: Positions of this split's bodies in the ``bodies`` address array, after
#: ``engine.BLOCK``, ``SUM_SQ`` and ``UPDATE`` (the first unused here).
GATHER, FORWARD_COLS, OUTPUT_ROWS, BACKWARD_COLS = range(3, 7)


def gather_body(t, nb, ctx):
    """Rows ``t*B//nb : (t+1)*B//nb`` of the batch into the batch buffers."""
    (s, e, _, _, key), a = unpack(ctx, CTX)
    rows = a.order[s:e]
    B = e - s
    L = a.fwd.shape[0]
    gather_rows_(a.X, a.yi, a.yf, a.sw, rows, t * B // nb, (t + 1) * B // nb, a.loss, a.drop, a.dropk, key, L, a.xb,
                 a.ybi, a.ybf, a.wb)  # fmt: skip


def forward_cols_body(t, nb, ctx):
    """Thread ``t``'s block of the output columns of hidden layer ``l``, all B rows."""
    (s, e, l, _, key), a = unpack(ctx, CTX)
    B = e - s
    sizes = a.sizes
    R = a.xb.shape[0]
    L = a.fwd.shape[0]
    n_out = sizes[l + 1]
    c0 = t * n_out // nb
    c1 = (t + 1) * n_out // nb
    inp = a.xb[:B] if l == 0 else _block(a.abuf, R, a.coff, sizes, l - 1, 0, B)
    out = _block(a.abuf, R, a.coff, sizes, l, 0, B)
    z = _block(a.zbuf, R, a.coff, sizes, l, 0, B)  # never out: see activations.bias_act_cols_
    gemm(inp, False, _weights(a.theta, sizes, a.woff, l)[:, c0:c1], False, z[:, c0:c1])
    bias_act_cols_(z, a.theta[a.boff[l] : a.boff[l] + n_out], a.fwd[l], out, c0, c1)
    if a.drop.shape[0] > 0 and a.drop[l + 1] > 0:
        drop_forward_(a.dropk, out, np.int64(0), l + 1, L + 1, key, a.drop[l + 1], c0, c1)


def output_rows_body(t, nb, ctx):
    """Rows ``t*B//nb : (t+1)*B//nb``: the output layer, the metric sums, the loss and the
    output layer's delta (into ``gbuf``'s last region)."""
    (s, e, _, wsum, key), a = unpack(ctx, CTX)
    B = e - s
    sizes = a.sizes
    R = a.xb.shape[0]
    L = a.fwd.shape[0]
    loss = a.loss
    l = L - 1
    k = sizes[L]
    r0 = t * B // nb
    r1 = (t + 1) * B // nb
    scale = 1.0 / wsum if loss == CROSS_ENTROPY else 1.0 / (wsum * k)
    inp = _block(a.abuf, R, a.coff, sizes, l - 1, r0, r1)
    out = _block(a.abuf, R, a.coff, sizes, l, r0, r1)
    z = _block(a.zbuf, R, a.coff, sizes, l, r0, r1)
    g = _block(a.gbuf, R, a.coff, sizes, l, r0, r1)
    dense_forward(inp, _weights(a.theta, sizes, a.woff, l), a.theta[a.boff[l] : a.boff[l] + k], a.fwd[l], z, out)
    dropped = a.drop.shape[0] > 0 and a.drop[L] > 0
    if dropped:
        drop_forward_(a.dropk, out, r0, L, L + 1, key, a.drop[L], 0, k)
    wblk = a.wb[r0:r1] if a.sw.shape[0] > 0 else a.wb[:0]
    if a.mpart.shape[0] > 0:
        a.mpart[t, :] = 0.0
        call_loss(a.lossk, out, a.ybi[r0:r1], a.ybf[r0:r1], wblk, a.mpart[t], 0.0, METRICS)
    a.lpart[t] = call_loss(a.lossk, out, a.ybi[r0:r1], a.ybf[r0:r1], wblk, g, scale, GRAD)
    if dropped:
        drop_backward_(a.dropk, g, out, r0, L, L + 1, key, a.drop[L], 0, k)
    act_backward_(g, out, z, a.bwd[l])


def backward_cols_body(t, nb, ctx):
    """Thread ``t``'s block of the output columns of hidden layer ``l``: dL/da, delta,
    dW and db on those columns (see the module docstring)."""
    (s, e, l, _, key), a = unpack(ctx, CTX)
    B = e - s
    sizes = a.sizes
    R = a.xb.shape[0]
    L = a.fwd.shape[0]
    dtheta = a.gpart[0]
    n_out = sizes[l + 1]
    c0 = t * n_out // nb
    c1 = (t + 1) * n_out // nb
    dnext = _block(a.gbuf, R, a.coff, sizes, l + 1, 0, B)
    g = _block(a.gbuf, R, a.coff, sizes, l, 0, B)
    out = _block(a.abuf, R, a.coff, sizes, l, 0, B)
    z = _block(a.zbuf, R, a.coff, sizes, l, 0, B)
    gemm(dnext, False, _weights(a.theta, sizes, a.woff, l + 1)[c0:c1, :], True, g[:, c0:c1])
    if l + 1 == L - 1:
        # the output layer's gradient, rows c0:c1 of it; ``out`` is still its masked input
        gemm(out[:, c0:c1], True, dnext, False, _weights(dtheta, sizes, a.woff, L - 1)[c0:c1, :])
        if t == 0:
            column_sums(dnext, dtheta[a.boff[L - 1] : a.boff[L - 1] + sizes[L]])
    if a.drop.shape[0] > 0 and a.drop[l + 1] > 0:
        drop_backward_(a.dropk, g, out, np.int64(0), l + 1, L + 1, key, a.drop[l + 1], c0, c1)
    act_backward_cols_(g, out, z, a.bwd[l], c0, c1)
    inp = a.xb[:B] if l == 0 else _block(a.abuf, R, a.coff, sizes, l - 1, 0, B)
    gemm(inp, True, g[:, c0:c1], False, _weights(dtheta, sizes, a.woff, l)[:, c0:c1])
    column_sums(g, dtheta[a.boff[l] : a.boff[l] + n_out], c0, c1)


def train_bodies(a: object) -> np.ndarray:
    """The ``bodies`` array of :func:`train_batches_cols` for the ``engine.TrainArgs`` record
    ``a`` (the row split's block body is not used: 0)."""
    return np.array(
        [0, sum_sq_address(a.gpart, a.sq), update_address(a.opt, a.theta, a.gpart, a.m, a.v, a.coef, a.hyper)]
        + [body_address(fn, COLS_STEP, a) for fn in (gather_body, forward_cols_body, output_rows_body,
                                                      backward_cols_body)],
        dtype=np.int64,
    )  # fmt: skip


@njit(**INLINE)
def _region_of(body, n, s, e, l, wsum, key, a):
    run_blocks(body, n, pack((np.int64(s), np.int64(e), np.int64(l), np.float64(wsum), key), COLS_STEP, a))


@njit(**SERIAL)
def train_batches_cols(args, b0, b1, step, bodies):
    """:func:`engine.train_batches` with the column split (module docstring), for networks
    with at least one hidden layer. ``a.n_threads`` column blocks per hidden layer; the
    gradient goes straight into ``gpart[0]``. Same arguments and result; ``bodies`` also
    holds this module's (``GATHER`` .. ``BACKWARD_COLS``)."""
    a = ref(args)  # read in place: passing the record value on would copy it (launch.RecordRef)
    N = a.order.shape[0]
    L = a.fwd.shape[0]
    bs = a.batch_size
    nb = a.n_threads
    for bi in range(b0, b1):
        s = bi * bs
        e = imin(N, s + bs)
        B = e - s
        wsum = batch_weight(a.sw, a.order[s:e])
        if wsum == 0.0:
            continue  # every row has weight 0: nothing to learn, no step
        nr = imin(nb, B)
        key = step_key(a.seed, step + 1)
        _region_of(bodies[GATHER], nr, s, e, 0, wsum, key, a)
        for l in range(L - 1):
            _region_of(bodies[FORWARD_COLS], nb, s, e, l, wsum, key, a)
        _region_of(bodies[OUTPUT_ROWS], nr, s, e, L - 1, wsum, key, a)
        for l in range(L - 2, -1, -1):
            _region_of(bodies[BACKWARD_COLS], nb, s, e, l, wsum, key, a)
        ok, step = finish_step(1, nr, wsum, step, a, bodies)
        if not ok:
            return step, bi
    return step, np.int64(-1)
