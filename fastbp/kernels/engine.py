"""The compiled engine: whole-network forward, backward and training epochs.

Threading model ("Numba owns the threads")
------------------------------------------
A batch of B rows is split into ``nb`` contiguous row blocks, one per thread
(``prange``). Each thread pushes its block through every layer (GEMM with BLAS held to
one thread, then the fused epilogue while the block is in cache), computes the loss and
its gradient on its rows, and runs the backward pass, writing its own partial weight
gradients ``gpart[t]``. Rows are independent until the gradient sum, so a whole
forward + backward pass is a single parallel region with no barrier inside. A second
parallel region, the optimizer update, sums the partials in thread order and updates
every parameter. Only one thread pool (Numba's) ever runs, so nothing spins against
anything else; and the result depends on the thread count only through ``nb``.

The network as data
-------------------
All parameters are one flat array ``theta``: layer ``l``'s weights are
``theta[woff[l]:woff[l] + sizes[l] * sizes[l+1]]`` viewed as (sizes[l], sizes[l+1]), and its
biases ``theta[boff[l]:boff[l] + sizes[l+1]]``. Work buffers are flat too: layer ``l``'s
(R, sizes[l+1]) region of a buffer with R rows starts at ``R * coff[l]``, where ``coff``
is the running sum of layer widths. One signature per float dtype, whatever the depth.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .._config import INLINE, PARALLEL, SERIAL
from .dense import dense_backward, dense_forward
from .dropout import dropout_backward_, dropout_forward_, step_key
from .losses import CROSS_ENTROPY, link_, loss_grad, loss_value, metric_sums_
from .optim import optimizer_step_, scale_, sum_partials_sq


@njit(**INLINE)
def _weights(theta, sizes, woff, l):
    n_in = sizes[l]
    n_out = sizes[l + 1]
    return theta[woff[l] : woff[l] + n_in * n_out].reshape((n_in, n_out))


@njit(**INLINE)
def _region(buf, R, coff, sizes, l):
    return buf[R * coff[l] : R * coff[l + 1]].reshape((R, sizes[l + 1]))


@njit(**SERIAL)
def _forward_rows(x, r0, r1, theta, sizes, acts, woff, boff, coff, R, abuf, zbuf, drop, key):
    """Push rows r0:r1 of ``x`` through every layer into rows r0:r1 of the buffers.

    ``drop`` holds the dropout rate of each slot (slot ``l + 1`` is layer ``l``'s output),
    or is empty for inference; ``key`` seeds the masks (see ``dropout.py``).
    """
    inp = x[r0:r1]
    L = acts.shape[0]
    for l in range(L):
        a = _region(abuf, R, coff, sizes, l)[r0:r1]
        z = _region(zbuf, R, coff, sizes, l)[r0:r1]  # never a: see activations.bias_act_cols_
        b = theta[boff[l] : boff[l] + sizes[l + 1]]
        dense_forward(inp, _weights(theta, sizes, woff, l), b, acts[l], z, a)
        if drop.shape[0] > 0 and drop[l + 1] > 0:
            dropout_forward_(a, r0, l + 1, L + 1, key, drop[l + 1])
        inp = a


@njit(**SERIAL)
def _backward_rows(x, r0, r1, theta, sizes, acts, woff, boff, coff, R, abuf, zbuf, gbuf, dtheta, drop, key):
    """Backward pass over rows r0:r1; ``gbuf``'s last region holds dL/da of the output.

    Writes this block's gradient of every parameter into ``dtheta`` (laid out as theta).
    ``drop``/``key`` as in :func:`_forward_rows`: the masks are recomputed, not stored.
    """
    L = acts.shape[0]
    for l in range(L - 1, -1, -1):
        a = _region(abuf, R, coff, sizes, l)[r0:r1]
        z = _region(zbuf, R, coff, sizes, l)[r0:r1]
        g = _region(gbuf, R, coff, sizes, l)[r0:r1]
        if drop.shape[0] > 0 and drop[l + 1] > 0:
            # layer l+1 has already used the masked output as its input; unmask for f'
            dropout_backward_(g, a, r0, l + 1, L + 1, key, drop[l + 1])
        inp = x[r0:r1] if l == 0 else _region(abuf, R, coff, sizes, l - 1)[r0:r1]
        dx = g if l == 0 else _region(gbuf, R, coff, sizes, l - 1)[r0:r1]
        n_out = sizes[l + 1]
        dense_backward(
            inp,
            _weights(theta, sizes, woff, l),
            a,
            z,
            acts[l],
            g,
            _weights(dtheta, sizes, woff, l),
            dtheta[boff[l] : boff[l] + n_out],
            dx,
            l > 0,
        )


@njit(**INLINE)
def n_blocks(n_rows, n_threads, min_rows):
    """Row blocks for a batch: one per thread, but at least ``min_rows`` rows each."""
    return max(1, min(n_threads, n_rows // min_rows))


@njit(**INLINE)
def gather_rows_(X, yi, yf, sw, rows, r0, r1, loss, drop, key, L, xb, ybi, ybf, wb):
    """Rows ``r0:r1`` of the batch ``X[rows]`` (and their targets and sample weights) into
    the batch buffers, so shuffling never copies the data set; then the input's dropout
    mask, if any. Element loops: an array slice assignment would compile Numba's
    shape-mismatch message formatting, seconds of cold compile."""
    for r in range(r0, r1):
        src = rows[r]
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
        dropout_forward_(xb[r0:r1], r0, np.int64(0), L + 1, key, drop[0])


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
def finish_step(
    nparts, nl, wsum, loss, k, clipnorm, opt, hyper, step, theta, m, v, coef, n_decay, gpart, lpart,
    mpart, sq, acc,
):  # fmt: skip
    """After a batch's gradients: sum the ``nparts`` partial gradients and their squared
    norm (``optim.sum_partials_sq``), check that the loss (``lpart[:nl]``) and the gradient
    are finite, clip the gradient to global norm ``clipnorm`` (when > 0), update the
    parameters and add the batch's loss, weight and metric sums (``mpart[:nl]``) to ``acc``.
    Returns ``(ok, step)``; nothing is updated when not ok."""
    lsum = 0.0
    for t in range(nl):
        lsum += lpart[t]
    gsq = sum_partials_sq(gpart, nparts, sq)
    if not (np.isfinite(lsum) and np.isfinite(gsq)):
        return False, step
    if clipnorm > 0:
        norm = np.sqrt(gsq)
        if norm > clipnorm:
            scale_(gpart[0], clipnorm / (norm + 1e-6))
    step += 1
    optimizer_step_(theta, gpart, 1, n_decay, opt, hyper, step, m, v, coef)
    acc[0] += lsum if loss == CROSS_ENTROPY else lsum / k
    acc[1] += wsum
    if mpart.shape[0] > 0:
        for t in range(nl):
            for j in range(3):
                acc[2 + j] += mpart[t, j]
    return True, step


@njit(**SERIAL)
def block_gradients_(
    t, nb, X, yi, yf, sw, rows, wsum, theta, sizes, acts, woff, boff, coff, loss, drop, key,
    xb, ybi, ybf, wb, abuf, zbuf, gbuf, gpart, lpart, mpart,
):  # fmt: skip
    """Block ``t`` of ``nb`` of the batch ``X[rows]``: forward + loss + backward (one thread).

    Gathers the block's rows (targets, sample weights) into ``xb``/``ybi``/``ybf``/``wb``,
    so shuffling never copies the data set, then writes the block's partial gradient into
    ``gpart[t]`` and its weighted loss sum into ``lpart[t]``. ``wsum`` is the batch's total
    sample weight (its row count when ``sw`` is empty). With a non-empty ``mpart`` the
    block's metric sums go to ``mpart[t]`` (see ``losses.metric_sums_``). Buffers have
    R = ``xb.shape[0]`` >= len(rows) rows.
    """
    B = rows.shape[0]
    R = xb.shape[0]
    k = sizes[sizes.shape[0] - 1]
    L = acts.shape[0]
    scale = 1.0 / wsum if loss == CROSS_ENTROPY else 1.0 / (wsum * k)
    r0 = t * B // nb
    r1 = (t + 1) * B // nb
    weighted = sw.shape[0] > 0
    gather_rows_(X, yi, yf, sw, rows, r0, r1, loss, drop, key, L, xb, ybi, ybf, wb)
    _forward_rows(xb, r0, r1, theta, sizes, acts, woff, boff, coff, R, abuf, zbuf, drop, key)
    out = _region(abuf, R, coff, sizes, L - 1)[r0:r1]
    gout = _region(gbuf, R, coff, sizes, L - 1)[r0:r1]
    wblk = wb[r0:r1] if weighted else wb[:0]
    if mpart.shape[0] > 0:
        mpart[t, :] = 0.0
        metric_sums_(out, ybi[r0:r1], ybf[r0:r1], wblk, loss, mpart[t])
    lpart[t] = loss_grad(out, ybi[r0:r1], ybf[r0:r1], wblk, loss, scale, gout)
    _backward_rows(xb, r0, r1, theta, sizes, acts, woff, boff, coff, R, abuf, zbuf, gbuf, gpart[t], drop, key)


@njit(**PARALLEL)
def batch_gradients(
    X, yi, yf, sw, rows, wsum, theta, sizes, acts, woff, boff, coff, loss, drop, key, nb,
    xb, ybi, ybf, wb, abuf, zbuf, gbuf, gpart, lpart, mpart,
):  # fmt: skip
    """Forward + loss + backward for the batch ``X[rows]``, split into ``nb`` row blocks,
    one per thread (see :func:`block_gradients_`): the first parallel region of
    :func:`train_batches` on its own, for ``loss_and_gradients``."""
    for t in prange(nb):
        # np.int64: the prange index is unsigned in the parallel body, which would compile a
        # second specialisation of the helper
        block_gradients_(
            np.int64(t), nb, X, yi, yf, sw, rows, wsum, theta, sizes, acts, woff, boff, coff, loss, drop,
            key, xb, ybi, ybf, wb, abuf, zbuf, gbuf, gpart, lpart, mpart,
        )  # fmt: skip


@njit(**PARALLEL)
def train_batches(
    X, yi, yf, sw, order, b0, b1, batch_size, n_threads, min_rows, theta, sizes, acts, woff, boff,
    coff, loss, drop, seed, opt, hyper, clipnorm, step, m, v, coef, n_decay, xb, ybi, ybf, wb, abuf,
    zbuf, gbuf, gpart, lpart, mpart, sq, acc,
):  # fmt: skip
    """Batches ``b0 .. b1-1`` of an epoch over ``X[order]``, all in compiled code.

    Each batch: one parallel region (``prange`` over the row blocks, each running
    :func:`block_gradients_`) for forward + loss + backward, one that sums the per-thread
    partial gradients and their squared norm (``optim.sum_partials_sq``), a check that the
    loss and the gradient are finite, the clipping of the gradient to global norm
    ``clipnorm`` (when > 0), and the optimizer update. ``seed`` (uint64) seeds the epoch's
    dropout masks.

    Adds to ``acc`` (float64): [0] weighted loss sum, [1] total weight, [2:5] metric sums
    (when ``mpart`` is non-empty). Returns ``(step, bad)``: the optimizer step count after
    the last update, and -1, or the index of the first batch whose loss or gradient was not
    finite. That batch is not applied, and training stops there, so the parameters and
    optimizer state are those after the last finite step.

    The loop over batches is serial. The row-block ``prange`` sits here rather than in
    :func:`batch_gradients`: one compiled level less (measured: the cold first ``fit`` about
    4 s shorter, and small networks' epochs 14-24 % faster from the cheaper per-step call).
    The update's ``prange`` stays in its own function: written inline here it made the
    first compile about 6 s slower.
    """
    N = order.shape[0]
    k = sizes[sizes.shape[0] - 1]
    for bi in range(b0, b1):
        s = bi * batch_size
        e = min(N, s + batch_size)
        rows = order[s:e]
        B = e - s
        wsum = batch_weight(sw, rows)
        if wsum == 0.0:
            continue  # every row has weight 0: nothing to learn, no step
        nb = n_blocks(B, n_threads, min_rows)
        key = step_key(seed, step + 1)
        for t in prange(nb):
            block_gradients_(
                np.int64(t), nb, X, yi, yf, sw, rows, wsum, theta, sizes, acts, woff, boff, coff, loss, drop,
                key, xb, ybi, ybf, wb, abuf, zbuf, gbuf, gpart, lpart, mpart,
            )  # fmt: skip
        ok, step = finish_step(
            nb, nb, wsum, loss, k, clipnorm, opt, hyper, step, theta, m, v, coef, n_decay, gpart, lpart,
            mpart, sq, acc,
        )  # fmt: skip
        if not ok:
            return step, bi
    return step, np.int64(-1)


@njit(**PARALLEL)
def forward(X, theta, sizes, acts, woff, boff, coff, nb, chunk, abuf, zbuf, link, loss, out):
    """Network output for every row of ``X``, in row chunks, ``nb`` threads.

    Thread ``t`` owns rows ``t*N//nb : (t+1)*N//nb`` and works through them ``chunk`` rows
    at a time in its own slice of ``abuf``/``zbuf`` (each ``chunk * coff[-1]`` long), so
    memory stays bounded whatever N is. With ``link`` true the loss's output link
    (softmax / sigmoid) is applied, giving what ``predict`` returns.
    """
    N = X.shape[0]
    L = acts.shape[0]
    C = coff[L]
    nodrop = np.zeros(0)
    key = np.uint64(0)
    for t in prange(nb):
        r0 = t * N // nb
        r1 = (t + 1) * N // nb
        at = abuf[t * chunk * C : (t + 1) * chunk * C]
        zt = zbuf[t * chunk * C : (t + 1) * chunk * C]
        for s in range(r0, r1, chunk):
            e = min(r1, s + chunk)
            # np.int64(0), not 0: a literal argument would compile a second specialisation
            _forward_rows(X[s:e], np.int64(0), e - s, theta, sizes, acts, woff, boff, coff, chunk, at, zt, nodrop, key)
            o = out[s:e]
            # copy the last layer's rows (element loops: an array slice assignment would
            # compile Numba's shape-mismatch error formatting, seconds of cold compile)
            k = sizes[L]
            base = chunk * coff[L - 1]
            for i in range(e - s):
                for j in range(k):
                    o[i, j] = at[base + i * k + j]
            if link:
                link_(o, loss)


@njit(**PARALLEL)
def loss_sum(out, yi, yf, sw, loss, nb, lpart):
    """Weighted sum of per-sample (cross-entropy) or per-element losses of ``out``, ``nb``
    blocks; ``sw`` holds sample weights, or is empty (weight 1)."""
    N = out.shape[0]
    for t in prange(nb):
        r0 = t * N // nb
        r1 = (t + 1) * N // nb
        swt = sw[r0:r1] if sw.shape[0] > 0 else sw
        if loss == CROSS_ENTROPY:
            lpart[t] = loss_value(out[r0:r1], yi[r0:r1], yf, swt, loss)
        else:
            lpart[t] = loss_value(out[r0:r1], yi, yf[r0:r1], swt, loss)
    total = 0.0
    for t in range(nb):
        total += lpart[t]
    return total
