"""The compiled engine: whole-network forward, backward and training epochs.

Threading model ("one pool owns the threads")
---------------------------------------------
A batch of B rows is split into ``nb`` contiguous row blocks, one per thread
(``launch.run_blocks``). Each thread pushes its block through every layer (GEMM with BLAS held to
one thread, then the fused epilogue while the block is in cache), computes the loss and
its gradient on its rows, and runs the backward pass, writing its own partial weight
gradients ``gpart[t]``. Rows are independent until the gradient sum, so a whole
forward + backward pass is a single parallel region with no barrier inside. Then the
optimizer's step body (``optim.step_body``) runs twice over chunks of the parameters: once
to sum the partials in thread order (and their squared norm, for the finiteness check and
clipping), once to update every parameter. The column split (``columns.py``) runs one
region per layer instead of the first. Each region is a body run by ``launch.run_blocks`` (see ``launch.py``:
bodies are compiled once each and called through their addresses, which keeps the
compile short); the drivers here are serial loops over batches. Only one thread pool
(fastbp's, ``pool.py``, or Numba's) ever runs, so nothing spins against anything else;
and the result depends on the thread count only through ``nb``.

The network as data
-------------------
All parameters are one flat array ``theta``: layer ``l``'s weights are
``theta[woff[l]:woff[l] + sizes[l] * sizes[l+1]]`` viewed as (sizes[l], sizes[l+1]), and its
biases ``theta[boff[l]:boff[l] + sizes[l+1]]``. Work buffers are flat too: layer ``l``'s
(R, sizes[l+1]) region of a buffer with R rows starts at ``R * coff[l]``, where ``coff``
is the running sum of layer widths. One signature whatever the depth.

The row passes
--------------
:func:`_forward_rows` and :func:`_backward_rows`, the per-layer loops of a row block, are
written on addresses: every float buffer is an int64 data pointer, offsets are computed in
bytes from the float itemsize passed at run time, and the work is done by callbacks and
BLAS called through pointers (the activation kernels, the column-sums kernel,
``blas.gemm_at``, which picks sgemm or dgemm by the itemsize). They hold no float array, so
one compiled copy serves both dtypes, and their code (integers and calls) compiles in a
fraction of the time the same loops over array views took (measured: 0.16 s and 0.29 s
against 0.40 s and 0.78 s, and a float64 network no longer compiles them again). The
callers pass the addresses of arrays they keep alive.

The arguments travel as named records: :class:`TrainArgs` for training (and for
``loss_and_gradients``), :class:`ForwardArgs` for inference, :class:`LossArgs` for a loss
over outputs. A body reads what it needs from the record by name, through a reference
(``launch.RecordRef``: a record value would be copied, field by field, at every
assignment and inlined call). The training and inference records hold their float arrays
as bytes (``ndarray.view(np.uint8)``, the same memory) and the float itemsize as ``isz``:
the drivers and bodies here only move bytes and addresses, and the float arithmetic lives
in per-dtype callbacks (activations, losses, dropout, column sums, the optimizer's step),
so one compiled driver and one body serve float32 and float64 (a sparse ``X`` is the
exception: its passes view the bytes back as its dtype, ``launch.as_dtype``, and are
compiled per dtype).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit, types

from .._config import INLINE, SERIAL
from .activations import act_backward_, bias_act_
from .blas import gemm_at
from .cache import prompt
from .dense import column_sums, dense_backward, dense_forward
from .dropout import drop_backward_, drop_forward_, step_key
from .fpenv import flush_denormals, restore_fp
from .launch import (
    CTX,
    address,
    as_dtype,
    body_address,
    call_void,
    imin,
    pack,
    ref,
    run_blocks,
    specialise,
    unpack,
    view2d,
)
from .losses import CROSS_ENTROPY, GRAD, LINK, METRICS, VALUE, call_loss, call_loss_at
from .optim import StepArgs, step_address, sum_partials_sq, update_
from .sparse import CSR, csr_product_rows, csr_weight_grad_rows


class TrainArgs(NamedTuple):
    """Everything a training segment reads or writes, by name (see :func:`train_batches`).

    Data: ``X`` (N, n_in), ``yi`` int64 labels (cross-entropy) or empty, ``yf`` float
    targets (other losses) or empty, ``sw`` float64 sample weights or empty, ``order`` the
    epoch's row order. Batching: ``batch_size``, ``n_threads`` (row blocks or column blocks
    the work is split into), ``min_rows`` (fewest rows a row block gets), ``cwidth`` (int64
    per layer: the column split's block width, or ``-n`` for ``n`` even blocks, or 0 for
    ``n_threads`` even ones), ``iwidth`` (the same for the blocks of input features of the
    first layer's weight gradient). The network:
    ``theta``, ``sizes``, ``fwd``/``bwd`` (each layer's activation kernels, from
    ``activations.addresses``), ``woff``, ``boff``, ``coff`` (module docstring),
    ``loss`` code, ``lossk`` (its kernels, ``losses.loss_kernels``), ``sumk`` (the column-sums
    kernel, ``dense.column_sums_address``), ``isz`` (the float itemsize), ``drop`` (dropout
    rate per slot, or empty), ``dropk`` (the dropout kernels, ``dropout.dropout_addresses``,
    or empty), ``seed`` (uint64, the epoch's dropout seed). The optimizer: ``opt`` code,
    ``hyper`` (float64), ``clipnorm`` (0: none), state ``m``, ``v``, scratch ``coef``,
    ``n_decay`` (weights decayed). Work buffers of R rows: ``xb``, ``ybi``, ``ybf``, ``wb``
    (the gathered batch), ``abuf``, ``zbuf``, ``gbuf`` (activations, pre-activations,
    gradients), ``gpart`` (partial gradients), ``lpart`` (loss sums), ``mpart`` (metric
    sums, or empty), ``sq`` (squared norm per chunk) and ``acc`` (float64: [0] loss sum,
    [1] weight, [2:5] metric sums).
    ``X`` (a dense one), ``yf``, ``theta``, ``m``, ``v``, ``coef``, ``xb``, ``ybf``, ``abuf``,
    ``zbuf``, ``gbuf`` and ``gpart`` are bytes (module docstring).
    """

    X: np.ndarray
    yi: np.ndarray
    yf: np.ndarray
    sw: np.ndarray
    order: np.ndarray
    batch_size: int
    n_threads: int
    min_rows: int
    cwidth: np.ndarray
    iwidth: int
    theta: np.ndarray
    sizes: np.ndarray
    fwd: np.ndarray
    bwd: np.ndarray
    woff: np.ndarray
    boff: np.ndarray
    coff: np.ndarray
    loss: int
    lossk: np.ndarray
    sumk: int
    isz: int
    drop: np.ndarray
    dropk: np.ndarray
    seed: np.uint64
    opt: int
    hyper: np.ndarray
    clipnorm: float
    m: np.ndarray
    v: np.ndarray
    coef: np.ndarray
    n_decay: int
    xb: np.ndarray
    ybi: np.ndarray
    ybf: np.ndarray
    wb: np.ndarray
    abuf: np.ndarray
    zbuf: np.ndarray
    gbuf: np.ndarray
    gpart: np.ndarray
    lpart: np.ndarray
    mpart: np.ndarray
    sq: np.ndarray
    acc: np.ndarray


class ForwardArgs(NamedTuple):
    """What :func:`forward` reads and writes: input ``X``, the network (as in
    :class:`TrainArgs`), rows per chunk ``chunk``, per-thread buffers ``abuf``/``zbuf``
    (each thread ``chunk * coff[-1]`` elements), ``link`` (apply the loss's output link),
    the ``loss`` code and its kernels ``lossk``, the output ``out`` (N, k), an empty
    float64 array ``nodrop`` (no dropout at inference; passed in, since allocating it in
    compiled code would compile NumPy's allocator into the body) and the float itemsize
    ``isz``. ``X`` (a dense one), ``theta``, ``abuf``, ``zbuf`` and ``out`` are bytes (module
    docstring)."""

    X: np.ndarray
    theta: np.ndarray
    sizes: np.ndarray
    fwd: np.ndarray
    bwd: np.ndarray
    woff: np.ndarray
    boff: np.ndarray
    coff: np.ndarray
    chunk: int
    abuf: np.ndarray
    zbuf: np.ndarray
    link: bool
    loss: int
    lossk: np.ndarray
    out: np.ndarray
    nodrop: np.ndarray
    isz: int


class LossArgs(NamedTuple):
    """What :func:`loss_sum` reads: outputs ``out`` (N, k), targets ``yi``/``yf`` and
    sample weights ``sw`` (or empty) as in :class:`TrainArgs`, the ``loss`` code, and
    ``lpart`` (float64, one loss sum per block)."""

    out: np.ndarray
    yi: np.ndarray
    yf: np.ndarray
    sw: np.ndarray
    loss: int
    lossk: np.ndarray
    lpart: np.ndarray


#: Per-batch scalars of the row split's body: first and end position in ``order``, the
#: batch's total sample weight and its dropout key.
STEP = types.Tuple((types.int64, types.int64, types.float64, types.uint64))
#: Bodies that need no per-call scalars.
NO_SCALARS = types.Tuple(())

#: Whether the input is a ``sparse.CSR`` record: False here, so the dense functions read
#: ``X`` as bytes; :func:`block_address` and :func:`forward_address` compile copies of
#: :func:`block_body` and :func:`forward_body` (and of :func:`gather_rows_`) that see True.
#: A branch on a global constant is removed before Numba types the function, so a dense
#: network compiles the dense code alone, as if the sparse code did not exist (measured:
#: routing the first layer through a function chosen by ``X``'s type added 1-2 s to a cold
#: first fit).
SPARSE = False

#: Positions in the ``bodies`` address array of :func:`train_batches`: the row split's body,
#: the optimizer's step body, then the column split's bodies (``columns.py``).
BLOCK, OPT_STEP, GATHER, FORWARD_COLS, OUTPUT_ROWS, BACKWARD_COLS, INPUT_GRAD = range(7)

#: Per-call scalars of the column split's bodies: first and end position of the batch in
#: ``order``, the layer, the batch's total sample weight and its dropout key.
COLS_STEP = types.Tuple((types.int64, types.int64, types.int64, types.float64, types.uint64))


@njit(**INLINE)
def _weights(theta, sizes, woff, l):
    return view2d(theta, woff[l], sizes[l], sizes[l + 1])


@njit(**INLINE)
def _block(buf, R, coff, sizes, l, r0, r1):
    """Rows ``r0:r1`` of layer ``l``'s (R, sizes[l + 1]) region of a work buffer, as one view
    (``launch.view2d``: a reshape and a slice would compile their checks at each site)."""
    return view2d(buf, R * coff[l] + r0 * sizes[l + 1], r1 - r0, sizes[l + 1])


@njit(**SERIAL)
def _forward_rows(x, r0, r1, theta, sizes, fwd, woff, boff, coff, R, abuf, zbuf, drop, dropk, key, isz):
    """Push rows r0:r1 of the input through every layer into rows r0:r1 of the buffers.

    Written on addresses (module docstring, "The row passes"): ``x`` is the address of a
    C-contiguous (·, sizes[0]) input, ``theta``, ``abuf`` and ``zbuf`` of the parameters and
    the activation and pre-activation buffers (R rows per layer region), ``isz`` the float
    itemsize. ``drop`` holds the dropout rate of each slot (slot ``l + 1`` is layer ``l``'s
    output), or is empty for inference; ``dropk`` the dropout kernels' addresses (read only
    when ``drop`` is not empty); ``key`` seeds the masks (see ``dropout.py``).
    """
    L = fwd.shape[0]
    n = r1 - r0
    inp = x + r0 * sizes[0] * isz
    for l in range(L):
        n_in = sizes[l]
        n_out = sizes[l + 1]
        off = (R * coff[l] + r0 * n_out) * isz
        a = abuf + off
        z = zbuf + off  # never a: see activations.bias_act_cols_ (aliasing)
        gemm_at(isz, False, False, n, n_out, n_in, inp, n_in, theta + woff[l] * isz, n_out, z, n_out)
        call_void(fwd[l], (z, theta + boff[l] * isz, a, n, n_out, np.int64(0), n_out))
        if drop.shape[0] > 0 and drop[l + 1] > 0:
            call_void(dropk[0], (a, n, n_out, r0, l + 1, L + 1, key, drop[l + 1], np.int64(0), n_out))
        inp = a


@njit(**SERIAL)
def _backward_rows(x, r0, r1, theta, sizes, bwd, woff, boff, coff, R, abuf, zbuf, gbuf, dtheta, drop, dropk, key, sumk,
                   isz):  # fmt: skip
    """Backward pass over rows r0:r1 (addresses and arguments as in :func:`_forward_rows`);
    ``gbuf``'s last region holds dL/da of the output. Per layer: delta = g * f'(z) in place
    (the activation's backward kernel ``bwd[l]``, 0: f' = 1), dW = input^T delta, db = the
    column sums of delta (the kernel ``sumk``, ``dense.column_sums_address``), and, below
    the top layer, the next g = delta W^T. Writes this block's gradient of every parameter
    into the block at address ``dtheta`` (laid out as theta). The dropout masks are
    recomputed from ``key``, not stored.
    """
    L = bwd.shape[0]
    n = r1 - r0
    for l in range(L - 1, -1, -1):
        n_in = sizes[l]
        n_out = sizes[l + 1]
        off = (R * coff[l] + r0 * n_out) * isz
        a = abuf + off
        z = zbuf + off
        g = gbuf + off
        zero = np.int64(0)
        if drop.shape[0] > 0 and drop[l + 1] > 0:
            # layer l+1 has already used the masked output as its input; unmask for f'
            call_void(dropk[1], (g, a, n, n_out, r0, l + 1, L + 1, key, drop[l + 1], zero, n_out))
        if bwd[l] != 0:
            call_void(bwd[l], (g, a, z, n, n_out, zero, n_out))
        below = (R * coff[l - 1] + r0 * n_in) * isz  # layer l-1's rows (l > 0)
        inp = x + r0 * n_in * isz if l == 0 else abuf + below
        gemm_at(isz, True, False, n_in, n_out, n, inp, n_in, g, n_out, dtheta + woff[l] * isz, n_out)
        call_void(sumk, (g, n, n_out, zero, n_out, dtheta + boff[l] * isz))
        if l > 0:
            gemm_at(isz, False, True, n, n_in, n_out, g, n_out, theta + woff[l] * isz, n_out, gbuf + below, n_in)


@njit(**SERIAL)
def _sparse_forward_rows(X, rows, r0, r1, theta, sizes, fwd, bwd, woff, boff, coff, R, abuf, zbuf, drop, dropk, key):
    """:func:`_forward_rows` for a ``sparse.CSR`` input ``X`` read through ``rows``
    (positions ``r0:r1`` are rows ``rows[r0:r1]``, or themselves when ``rows`` is empty):
    the first layer's product from the nonzeros (``sparse.csr_product_rows``), the other
    layers as the dense pass."""
    L = fwd.shape[0]
    for l in range(L):
        a = _block(abuf, R, coff, sizes, l, r0, r1)
        z = _block(zbuf, R, coff, sizes, l, r0, r1)
        b = theta[boff[l] : boff[l] + sizes[l + 1]]
        if l == 0:
            csr_product_rows(X, rows, r0, r1, _weights(theta, sizes, woff, 0), z)
            bias_act_(z, b, fwd[0], a)
        else:
            dense_forward(_block(abuf, R, coff, sizes, l - 1, r0, r1), _weights(theta, sizes, woff, l), b, fwd[l], z, a)
        if drop.shape[0] > 0 and drop[l + 1] > 0:
            drop_forward_(dropk, a, r0, l + 1, L + 1, key, drop[l + 1], 0, a.shape[1])


@njit(**SERIAL)
def _sparse_backward_rows(X, rows, r0, r1, theta, sizes, fwd, bwd, woff, boff, coff, R, abuf, zbuf, gbuf, dtheta, drop,
                          dropk, key):  # fmt: skip
    """:func:`_backward_rows` for a ``sparse.CSR`` input (``X``/``rows`` as in
    :func:`_sparse_forward_rows`): the first layer's weight gradient from the nonzeros
    (``sparse.csr_weight_grad_rows``); no gradient of the input. Unlike the dense passes it
    works on typed arrays (the CSR product reads the weights as an array), so it is compiled
    per dtype."""
    L = fwd.shape[0]
    for l in range(L - 1, -1, -1):
        a = _block(abuf, R, coff, sizes, l, r0, r1)
        z = _block(zbuf, R, coff, sizes, l, r0, r1)
        g = _block(gbuf, R, coff, sizes, l, r0, r1)
        if drop.shape[0] > 0 and drop[l + 1] > 0:
            drop_backward_(dropk, g, a, r0, l + 1, L + 1, key, drop[l + 1], 0, g.shape[1])
        dw = _weights(dtheta, sizes, woff, l)
        db = dtheta[boff[l] : boff[l] + sizes[l + 1]]
        if l == 0:
            act_backward_(g, a, z, bwd[0])
            csr_weight_grad_rows(X, rows, r0, r1, g, dw)
            column_sums(g, db)
        else:
            inp = _block(abuf, R, coff, sizes, l - 1, r0, r1)
            dx = _block(gbuf, R, coff, sizes, l - 1, r0, r1)
            dense_backward(inp, _weights(theta, sizes, woff, l), a, z, bwd[l], g, dw, db, dx, True)


@njit(**INLINE)
def n_blocks(n_rows, n_threads, min_rows):
    """Row blocks for a batch: one per thread, but at least ``min_rows`` rows each (plain
    comparisons, so that ``n_blocks.py_func`` serves Python callers without a compile)."""
    k = n_rows // min_rows
    k = n_threads if n_threads < k else k
    return k if k > 1 else 1


@njit(**INLINE)
def gather_rows_(X, yi, yf, sw, rows, r0, r1, loss, drop, dropk, key, L, xb, ybi, ybf, wb, n_in):
    """Rows ``r0:r1`` of the batch ``X[rows]`` (and their targets and sample weights) into
    the batch buffers, so shuffling never copies the data set; then the input's dropout
    mask, if any (``n_in`` inputs a row). ``X``, ``yf``, ``xb`` and ``ybf`` are bytes
    (module docstring), so the copies are byte loops, the same for every dtype. Element
    loops: an array slice assignment would compile Numba's shape-mismatch message
    formatting, seconds of cold compile."""
    for r in range(r0, r1):
        src = rows[r]
        if not SPARSE:  # a sparse X is read in place by the first layer
            for j in range(X.shape[1]):
                xb[r, j] = X[src, j]
        if loss == CROSS_ENTROPY:
            ybi[r] = yi[src]
        else:
            for j in range(yf.shape[1]):
                ybf[r, j] = yf[src, j]
        if sw.shape[0] > 0:
            wb[r] = sw[src]
    if drop.shape[0] > 0 and drop[0] > 0:
        v = address(xb) + r0 * xb.shape[1]
        call_void(dropk[0], (v, r1 - r0, n_in, r0, np.int64(0), L + 1, key, drop[0], np.int64(0), n_in))


@njit(**INLINE)
def batch_weight(sw, rows):
    """Total sample weight of the batch ``rows`` (its row count without weights)."""
    if sw.shape[0] == 0:
        return float(rows.shape[0])
    wsum = 0.0
    for r in range(rows.shape[0]):
        wsum += sw[rows[r]]
    return wsum


@njit(**INLINE)
def finish_step(nparts, nl, wsum, step, a, bodies):
    """After a batch's gradients: sum the ``nparts`` partial gradients and their squared
    norm (``optim.sum_partials_sq``), check that the loss (``lpart[:nl]``) and the gradient
    are finite, update the parameters (``optim.update_``) from the gradient clipped to
    global norm ``clipnorm`` (when > 0), and add the batch's loss, weight and metric sums (``mpart[:nl]``) to ``acc``.
    ``a`` is the :class:`TrainArgs` record. Returns ``(ok, step)``; nothing is updated when
    not ok."""
    lsum = 0.0
    for t in range(nl):
        lsum += a.lpart[t]
    rec = ref(StepArgs(a.theta, a.gpart, a.m, a.v, a.coef, a.hyper, a.sq))
    gsq = sum_partials_sq(rec, nparts, step + 1, bodies[OPT_STEP])
    if not (np.isfinite(lsum) and np.isfinite(gsq)):
        return False, step
    factor = 1.0
    if a.clipnorm > 0:
        norm = np.sqrt(gsq)
        if norm > a.clipnorm:
            factor = a.clipnorm / (norm + 1e-6)
    step += 1
    update_(rec, a.n_decay, step, factor, bodies[OPT_STEP])
    k = a.sizes[a.sizes.shape[0] - 1]
    acc = a.acc
    acc[0] += lsum if a.loss == CROSS_ENTROPY else lsum / k
    acc[1] += wsum
    if a.mpart.shape[0] > 0:
        for t in range(nl):
            for j in range(3):
                acc[2 + j] += a.mpart[t, j]
    return True, step


@njit(**INLINE)
def _at(buf, R, coff, sizes, l, r0, isz):
    """The address of row ``r0`` of layer ``l``'s (R, sizes[l + 1]) region of the work buffer
    at address ``buf``."""
    return buf + (R * coff[l] + r0 * sizes[l + 1]) * isz


@njit(**INLINE)
def loss_rows_(a, t, r0, r1, out, gout, scale):
    """Batch rows ``r0:r1`` of block ``t`` (:class:`TrainArgs` ``a``): the loss sum into
    ``lpart[t]`` and dL/d(output), times ``scale``, into the rows at address ``gout``, from
    the outputs at address ``out``; with a non-empty ``mpart`` first the metric sums into
    ``mpart[t]`` (see ``losses.metric_sums_``)."""
    n = r1 - r0
    k = a.sizes[a.sizes.shape[0] - 1]
    labels = a.loss == CROSS_ENTROPY
    yi = address(a.ybi) + r0 * 8 if labels else address(a.ybi)  # int64 labels
    yf = address(a.ybf) if labels else address(a.ybf) + r0 * a.ybf.shape[1]  # bytes
    nyi = n if labels else 0
    nyf = 0 if labels else n
    sw = address(a.wb) + r0 * 8  # float64 weights
    nsw = n if a.sw.shape[0] > 0 else 0
    if a.mpart.shape[0] > 0:
        a.mpart[t, :] = 0.0
        call_loss_at(a.lossk, out, n, k, yi, nyi, yf, nyf, sw, nsw, address(a.mpart) + t * 24, 0.0, METRICS)
    a.lpart[t] = call_loss_at(a.lossk, out, n, k, yi, nyi, yf, nyf, sw, nsw, gout, scale, GRAD)


def block_body(t, nb, ctx):
    """Body (``launch.py``) of the row split: block ``t`` of ``nb`` of the batch
    ``X[order[s:e]]``, forward + loss + backward (one thread); ``a`` is the
    :class:`TrainArgs` record. The body itself, not a helper it inlines: an inlined helper
    of this size costs the compile a copy of its whole IR.

    Gathers the block's rows (targets, sample weights) into ``xb``/``ybi``/``ybf``/``wb``,
    so shuffling never copies the data set, then writes the block's partial gradient into
    ``gpart[t]`` and its weighted loss sum into ``lpart[t]``. ``wsum`` is the batch's total
    sample weight (its row count when ``sw`` is empty). With a non-empty ``mpart`` the
    block's metric sums go to ``mpart[t]`` (see ``losses.metric_sums_``). Buffers have
    R = ``xb.shape[0]`` >= e - s rows.
    """
    (s, e, wsum, key), a = unpack(ctx, CTX)
    rows = a.order[s:e]
    B = e - s
    sizes = a.sizes
    R = a.xb.shape[0]
    k = sizes[sizes.shape[0] - 1]
    L = a.fwd.shape[0]
    loss = a.loss
    scale = 1.0 / wsum if loss == CROSS_ENTROPY else 1.0 / (wsum * k)
    r0 = t * B // nb
    r1 = (t + 1) * B // nb
    isz = a.isz
    gather_rows_(a.X, a.yi, a.yf, a.sw, rows, r0, r1, loss, a.drop, a.dropk, key, L, a.xb, a.ybi, a.ybf, a.wb,
                 sizes[0])  # fmt: skip
    if SPARSE:  # compiled per dtype: the sparse passes work on typed arrays
        dt = a.X.data.dtype
        _sparse_forward_rows(a.X, rows, r0, r1, as_dtype(a.theta, dt), sizes, a.fwd, a.bwd, a.woff, a.boff, a.coff, R,
                             as_dtype(a.abuf, dt), as_dtype(a.zbuf, dt), a.drop, a.dropk, key)  # fmt: skip
    else:
        _forward_rows(address(a.xb), r0, r1, address(a.theta), sizes, a.fwd, a.woff, a.boff, a.coff, R,
                      address(a.abuf), address(a.zbuf), a.drop, a.dropk, key, isz)  # fmt: skip
    out = _at(address(a.abuf), R, a.coff, sizes, L - 1, r0, isz)
    loss_rows_(a, t, r0, r1, out, _at(address(a.gbuf), R, a.coff, sizes, L - 1, r0, isz), scale)
    if SPARSE:
        dt = a.X.data.dtype
        _sparse_backward_rows(
            a.X, rows, r0, r1, as_dtype(a.theta, dt), sizes, a.fwd, a.bwd, a.woff, a.boff, a.coff, R,
            as_dtype(a.abuf, dt), as_dtype(a.zbuf, dt), as_dtype(a.gbuf, dt), as_dtype(a.gpart, dt)[t], a.drop,
            a.dropk, key,
        )  # fmt: skip
    else:
        dtheta = address(a.gpart) + t * a.gpart.shape[1]  # row t of gpart (bytes)
        _backward_rows(
            address(a.xb), r0, r1, address(a.theta), sizes, a.bwd, a.woff, a.boff, a.coff, R, address(a.abuf),
            address(a.zbuf), address(a.gbuf), dtheta, a.drop, a.dropk, key, a.sumk, isz,
        )  # fmt: skip


def block_address(a: TrainArgs) -> int:
    """The address of :func:`block_body` for records of ``a``'s type (for a sparse ``X``,
    the copy that sees ``SPARSE = True``)."""
    if isinstance(a.X, CSR):
        bindings = {"SPARSE": True, "gather_rows_": _sparse_variant(gather_rows_)}
        return body_address(block_body, STEP, a, "sparse", bindings)
    return body_address(block_body, STEP, a)


def step_address_of(a: TrainArgs) -> int:
    """The address of the optimizer's step body (``optim.step_body``) for the record ``a``."""
    return step_address(a.opt, np.dtype(f"f{a.isz}"), StepArgs(a.theta, a.gpart, a.m, a.v, a.coef, a.hyper, a.sq))


def train_bodies(a: TrainArgs) -> np.ndarray:
    """The ``bodies`` array of :func:`train_batches` for the record ``a``."""
    return np.array([block_address(a), step_address_of(a)], dtype=np.int64)


@njit(**SERIAL)
def batch_gradients(a, wsum, nb, bodies):
    """Forward + loss + backward for the batch ``X[order]`` of :class:`TrainArgs` ``a``,
    split into ``nb`` row blocks (see :func:`block_body`): the first parallel region
    of :func:`train_batches` on its own, for ``loss_and_gradients``. No dropout."""
    N = a.order.shape[0]
    run_blocks(bodies[BLOCK], nb, pack((np.int64(0), np.int64(N), np.float64(wsum), np.uint64(0)), STEP, a))


@njit(**INLINE)
def column_blocks(a, l):
    """How many column blocks the column split cuts hidden layer ``l`` into (``a`` the
    :class:`TrainArgs` record): ``cwidth[l]`` wide, ``-cwidth[l]`` even ones where it is
    negative, or ``n_threads`` even ones where it is 0."""
    return _n_blocks_of(a.sizes[l + 1], a.cwidth[l], a.n_threads)


@njit(**INLINE)
def input_blocks(a):
    """How many blocks of input features the column split cuts the first layer's weight
    gradient into: ``iwidth`` wide, or ``n_threads`` even ones."""
    return _n_blocks_of(a.sizes[0], a.iwidth, a.n_threads)


@njit(**INLINE)
def _n_blocks_of(n, w, n_threads):
    """Blocks of ``n`` units for a width ``w``: ``w`` wide, ``-w`` even ones, or for 0 one
    even block a thread (:func:`column_range` gives each block's range)."""
    if w > 0:
        return (n + w - 1) // w
    return -w if w < 0 else n_threads


@njit(**INLINE)
def column_range(t, nb, n_out, w):
    """Columns ``(c0, c1)`` of block ``t`` of ``nb`` over ``n_out`` columns: ``w`` wide (the
    last one what is left), or for ``w`` <= 0 the ``t``-th of ``nb`` even blocks."""
    if w > 0:
        return t * w, imin(n_out, (t + 1) * w)
    return t * n_out // nb, (t + 1) * n_out // nb


@njit(**SERIAL)
def train_batches(args, b0, b1, step, bodies):
    """Batches ``b0 .. b1-1`` of an epoch over ``X[order]``, all in compiled code; ``a`` is
    the :class:`TrainArgs` record, ``step`` the optimizer's step count so far and
    ``bodies`` the addresses of the bodies (:func:`train_bodies`, or for the column split
    ``columns.train_bodies``, whose ``BLOCK`` is 0).

    Each batch: forward + loss + backward, in one parallel region for the row split (the
    row blocks, each running :func:`block_body`) or one per layer for the column
    split (``columns.py``: ``GATHER``, ``FORWARD_COLS``, ``OUTPUT_ROWS``, ``BACKWARD_COLS``
    and ``INPUT_GRAD``), then :func:`finish_step`: the
    sum of the per-thread partial gradients and their squared norm (a parallel region for
    large networks), a check that the loss and the gradient are finite, the clipping of the
    gradient to global norm ``clipnorm`` (when > 0), and the optimizer update (parallel for
    large networks). ``seed`` (uint64) seeds the epoch's dropout masks.

    Adds to ``acc`` (float64): [0] weighted loss sum, [1] total weight, [2:5] metric sums
    (when ``mpart`` is non-empty). Returns ``(step, bad)``: the optimizer step count after
    the last update, and -1, or the index of the first batch whose loss or gradient was not
    finite. That batch is not applied, and training stops there, so the parameters and
    optimizer state are those after the last finite step.
    """
    a = ref(args)  # read in place: passing the record value on would copy it (launch.RecordRef)
    fp = flush_denormals()  # for the optimizer's serial step too (fpenv.py); restored on return
    N = a.order.shape[0]
    bs = a.batch_size
    L = a.fwd.shape[0]
    cols = bodies[BLOCK] == 0  # the column split's bodies (columns.train_bodies)
    for bi in range(b0, b1):
        s = bi * bs
        e = imin(N, s + bs)
        wsum = batch_weight(a.sw, a.order[s:e])
        if wsum == 0.0:
            continue  # every row has weight 0: nothing to learn, no step
        key = step_key(a.seed, step + 1)
        if cols:
            # 2L + 1 regions (see columns.py): the gather by rows, hidden layers 0 .. L-2 by
            # column blocks, the output layer by rows, hidden layers L-2 .. 0 backwards by
            # column blocks, the first layer's weight gradient by blocks of input features; the
            # gradient goes straight into gpart[0]. One loop, so one call site.
            nr = imin(a.n_threads, e - s)
            for r in range(2 * L + 1):
                if r == 2 * L:
                    body, n, l = bodies[INPUT_GRAD], input_blocks(a), 0
                elif r == 0:
                    body, n, l = bodies[GATHER], nr, 0
                elif r < L:
                    body, n, l = bodies[FORWARD_COLS], column_blocks(a, r - 1), r - 1
                elif r == L:
                    body, n, l = bodies[OUTPUT_ROWS], nr, L - 1
                else:
                    body, n, l = bodies[BACKWARD_COLS], column_blocks(a, 2 * L - 1 - r), 2 * L - 1 - r
                run_blocks(body, n, pack((np.int64(s), np.int64(e), np.int64(l), np.float64(wsum), key), COLS_STEP, a))
            nparts, nl = 1, nr
        else:
            nb = n_blocks(e - s, a.n_threads, a.min_rows)
            run_blocks(bodies[BLOCK], nb, pack((np.int64(s), np.int64(e), np.float64(wsum), key), STEP, a))
            nparts, nl = nb, nb
        ok, step = finish_step(nparts, nl, wsum, step, a, bodies)
        if not ok:
            restore_fp(fp)
            return step, bi
    restore_fp(fp)
    return step, np.int64(-1)


def forward_body(t, nb, ctx):
    """Body (``launch.py``) of :func:`forward`: thread ``t``'s rows, in chunks; ``f`` is the
    :class:`ForwardArgs` record."""
    _, f = unpack(ctx, CTX)
    X = f.X
    sizes = f.sizes
    coff = f.coff
    chunk = f.chunk
    N = f.out.shape[0]
    L = f.fwd.shape[0]
    C = coff[L]
    key = np.uint64(0)
    r0 = t * N // nb
    r1 = (t + 1) * N // nb
    isz = f.isz
    span = chunk * C * isz  # each thread's bytes of abuf and zbuf
    at = f.abuf[t * span : (t + 1) * span]
    zt = f.zbuf[t * span : (t + 1) * span]
    k = sizes[L]
    base = chunk * coff[L - 1] * isz
    row = k * isz  # bytes of an output row
    for s in range(r0, r1, chunk):
        e = imin(r1, s + chunk)
        # np.int64(0), not 0: a literal argument would compile a second specialisation
        if SPARSE:  # compiled per dtype: the sparse pass works on typed arrays
            dt = X.data.dtype
            Xs = CSR(X.indptr[s : e + 1], X.indices, X.data, X.n_cols)  # a view of rows s:e
            _sparse_forward_rows(Xs, sizes[:0], np.int64(0), e - s, as_dtype(f.theta, dt), sizes, f.fwd, f.bwd,
                                 f.woff, f.boff, coff, chunk, as_dtype(at, dt), as_dtype(zt, dt), f.nodrop, sizes[:0],
                                 key)  # fmt: skip
        else:
            _forward_rows(address(X) + s * X.shape[1], np.int64(0), e - s, address(f.theta), sizes, f.fwd, f.woff,
                          f.boff, coff, chunk, address(at), address(zt), f.nodrop, sizes[:0], key, isz)  # fmt: skip
        o = f.out[s:e]
        # copy the last layer's rows, bytes (element loops: an array slice assignment would
        # compile Numba's shape-mismatch error formatting, seconds of cold compile)
        for i in range(e - s):
            for j in range(row):
                o[i, j] = at[base + i * row + j]
        if f.link:
            p = address(o)
            call_loss_at(f.lossk, p, e - s, k, p, np.int64(0), p, np.int64(0), p, np.int64(0), p, 0.0, LINK)


def forward_address(f: ForwardArgs) -> int:
    """The address of :func:`forward_body` for records of ``f``'s type (for a sparse ``X``,
    the copy that sees ``SPARSE = True``)."""
    if isinstance(f.X, CSR):
        return body_address(forward_body, NO_SCALARS, f, "sparse", {"SPARSE": True})
    return body_address(forward_body, NO_SCALARS, f)


_sparse_variants: dict = {}


def _sparse_variant(fn, **callees):
    """The copy of the INLINE function ``fn`` that sees ``SPARSE = True`` (and so reads
    ``X`` as a ``sparse.CSR``) and the sparse copies ``callees`` of the functions it calls,
    compiled and cached apart (``launch.specialise``)."""
    found = _sparse_variants.get(fn)
    if found is None:
        copy = specialise(fn.py_func, "sparse", {"SPARSE": True, **callees})
        found = _sparse_variants[fn] = njit(**INLINE)(copy)
    return found


@njit(**SERIAL)
def forward(f, nb, body):
    """Network output for every row of ``f.X`` (:class:`ForwardArgs`) into ``f.out``, in
    row chunks, ``nb`` threads; ``body`` is :func:`forward_body`'s address.

    Thread ``t`` owns rows ``t*N//nb : (t+1)*N//nb`` and works through them ``chunk`` rows
    at a time in its own slice of ``abuf``/``zbuf`` (each ``chunk * coff[-1]`` long), so
    memory stays bounded whatever N is. With ``link`` true the loss's output link
    (softmax / sigmoid) is applied, giving what ``predict`` returns.
    """
    run_blocks(body, nb, pack((), NO_SCALARS, f))


def loss_body(t, nb, ctx):
    """Body (``launch.py``) of :func:`loss_sum`: block ``t``'s loss sum into ``lpart[t]``."""
    _, la = unpack(ctx, CTX)
    out = la.out
    N = out.shape[0]
    r0 = t * N // nb
    r1 = (t + 1) * N // nb
    sw = la.sw
    swt = sw[r0:r1] if sw.shape[0] > 0 else sw
    if la.loss == CROSS_ENTROPY:
        la.lpart[t] = call_loss(la.lossk, out[r0:r1], la.yi[r0:r1], la.yf, swt, out[:0], 0.0, VALUE)
    else:
        la.lpart[t] = call_loss(la.lossk, out[r0:r1], la.yi, la.yf[r0:r1], swt, out[:0], 0.0, VALUE)


def loss_address(la: LossArgs) -> int:
    """The address of :func:`loss_body` for records of ``la``'s type."""
    return body_address(loss_body, NO_SCALARS, la)


@njit(**SERIAL)
def loss_sum(la, nb, body):
    """Weighted sum of per-sample (cross-entropy) or per-element losses of ``la.out``
    (:class:`LossArgs`), ``nb`` blocks; ``sw`` holds sample weights, or is empty (weight
    1); ``body`` is :func:`loss_body`'s address."""
    run_blocks(body, nb, pack((), NO_SCALARS, la))
    total = 0.0
    for t in range(nb):
        total += la.lpart[t]
    return total


prompt(globals())  # load this module's cached kernels without Numba's registry refresh (cache.py)
