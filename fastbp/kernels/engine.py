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

from .._config import PARALLEL, SERIAL
from .activations import GELU, SILU
from .dense import dense_backward, dense_forward
from .losses import CROSS_ENTROPY, link_, loss_grad, loss_value
from .optim import optimizer_update_


@njit(**SERIAL)
def _weights(theta, sizes, woff, l):
    n_in = sizes[l]
    n_out = sizes[l + 1]
    return theta[woff[l] : woff[l] + n_in * n_out].reshape((n_in, n_out))


@njit(**SERIAL)
def _region(buf, R, coff, sizes, l):
    return buf[R * coff[l] : R * coff[l + 1]].reshape((R, sizes[l + 1]))


@njit(**SERIAL)
def _needs_z(act):
    return act == GELU or act == SILU


@njit(**SERIAL)
def _forward_rows(x, r0, r1, theta, sizes, acts, woff, boff, coff, R, abuf, zbuf):
    """Push rows r0:r1 of ``x`` through every layer into rows r0:r1 of the buffers."""
    inp = x[r0:r1]
    for l in range(acts.shape[0]):
        a = _region(abuf, R, coff, sizes, l)[r0:r1]
        z = _region(zbuf, R, coff, sizes, l)[r0:r1] if _needs_z(acts[l]) else a
        b = theta[boff[l] : boff[l] + sizes[l + 1]]
        dense_forward(inp, _weights(theta, sizes, woff, l), b, acts[l], z, a)
        inp = a


@njit(**SERIAL)
def _backward_rows(x, r0, r1, theta, sizes, acts, woff, boff, coff, R, abuf, zbuf, gbuf, dtheta):
    """Backward pass over rows r0:r1; ``gbuf``'s last region holds dL/da of the output.

    Writes this block's gradient of every parameter into ``dtheta`` (laid out as theta).
    """
    L = acts.shape[0]
    for l in range(L - 1, -1, -1):
        a = _region(abuf, R, coff, sizes, l)[r0:r1]
        z = _region(zbuf, R, coff, sizes, l)[r0:r1] if _needs_z(acts[l]) else a
        g = _region(gbuf, R, coff, sizes, l)[r0:r1]
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


@njit(**SERIAL)
def n_blocks(n_rows, n_threads, min_rows):
    """Row blocks for a batch: one per thread, but at least ``min_rows`` rows each."""
    return max(1, min(n_threads, n_rows // min_rows))


@njit(**SERIAL)
def block_gradients_(
    t, nb, X, yi, yf, rows, theta, sizes, acts, woff, boff, coff, loss,
    xb, ybi, ybf, abuf, zbuf, gbuf, gpart, lpart,
):  # fmt: skip
    """Block ``t`` of ``nb`` of the batch ``X[rows]``: forward + loss + backward (one thread).

    Gathers the block's rows (and targets) into ``xb``/``ybi``/``ybf``, so shuffling never
    copies the data set, then writes the block's partial gradient into ``gpart[t]`` and
    its loss sum into ``lpart[t]``. Buffers have R = ``xb.shape[0]`` >= len(rows) rows.
    """
    B = rows.shape[0]
    R = xb.shape[0]
    k = sizes[sizes.shape[0] - 1]
    L = acts.shape[0]
    scale = 1.0 / B if loss == CROSS_ENTROPY else 1.0 / (B * k)
    r0 = t * B // nb
    r1 = (t + 1) * B // nb
    for r in range(r0, r1):
        xb[r, :] = X[rows[r]]
        if loss == CROSS_ENTROPY:
            ybi[r] = yi[rows[r]]
        else:
            ybf[r, :] = yf[rows[r]]
    _forward_rows(xb, r0, r1, theta, sizes, acts, woff, boff, coff, R, abuf, zbuf)
    out = _region(abuf, R, coff, sizes, L - 1)[r0:r1]
    gout = _region(gbuf, R, coff, sizes, L - 1)[r0:r1]
    lpart[t] = loss_grad(out, ybi[r0:r1], ybf[r0:r1], loss, scale, gout)
    _backward_rows(xb, r0, r1, theta, sizes, acts, woff, boff, coff, R, abuf, zbuf, gbuf, gpart[t])


@njit(**PARALLEL)
def batch_gradients(
    X, yi, yf, rows, theta, sizes, acts, woff, boff, coff, loss, nb,
    xb, ybi, ybf, abuf, zbuf, gbuf, gpart, lpart,
):  # fmt: skip
    """Forward + loss + backward for the batch ``X[rows]``, split into ``nb`` row blocks,
    one per thread (see :func:`block_gradients_`)."""
    for t in prange(nb):
        # np.int64: the prange index is unsigned in the parallel body, which would compile a
        # second specialisation of the helper
        block_gradients_(
            np.int64(t), nb, X, yi, yf, rows, theta, sizes, acts, woff, boff, coff, loss,
            xb, ybi, ybf, abuf, zbuf, gbuf, gpart, lpart,
        )  # fmt: skip


@njit(**SERIAL)
def train_epoch(
    X, yi, yf, order, batch_size, n_threads, min_rows, theta, sizes, acts, woff, boff, coff,
    loss, opt, hyper, step, m, v, coef, n_decay, xb, ybi, ybf, abuf, zbuf, gbuf, gpart, lpart,
):  # fmt: skip
    """One epoch of mini-batch training over ``X[order]``, all in compiled code.

    Returns ``(mean_loss, step)``: the mean over samples of each batch's mean loss, and
    the optimizer step count after the epoch. The loop over batches is serial; each batch
    runs two parallel regions (gradients, then the update). They stay separate parallel
    functions: written inline here, the two ``prange`` loops made the first compile of this
    function take 25 s instead of 15 s.
    """
    N = order.shape[0]
    k = sizes[sizes.shape[0] - 1]
    total = 0.0
    for s in range(0, N, batch_size):
        e = min(N, s + batch_size)
        B = e - s
        nb = n_blocks(B, n_threads, min_rows)
        batch_gradients(
            X, yi, yf, order[s:e], theta, sizes, acts, woff, boff, coff, loss, nb,
            xb, ybi, ybf, abuf, zbuf, gbuf, gpart, lpart,
        )  # fmt: skip
        step += 1
        optimizer_update_(theta, gpart, nb, n_decay, opt, hyper, step, m, v, coef)
        lsum = 0.0
        for t in range(nb):
            lsum += lpart[t]
        total += lsum if loss == CROSS_ENTROPY else lsum / k
    return total / N, step


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
    for t in prange(nb):
        r0 = t * N // nb
        r1 = (t + 1) * N // nb
        at = abuf[t * chunk * C : (t + 1) * chunk * C]
        zt = zbuf[t * chunk * C : (t + 1) * chunk * C] if zbuf.shape[0] > 0 else zbuf
        for s in range(r0, r1, chunk):
            e = min(r1, s + chunk)
            # np.int64(0), not 0: a literal argument would compile a second specialisation
            _forward_rows(X[s:e], np.int64(0), e - s, theta, sizes, acts, woff, boff, coff, chunk, at, zt)
            o = out[s:e]
            o[:, :] = _region(at, chunk, coff, sizes, L - 1)[: e - s]
            if link:
                link_(o, loss)


@njit(**PARALLEL)
def loss_sum(out, yi, yf, loss, nb, lpart):
    """Sum of per-sample (cross-entropy) or per-element losses of ``out``, ``nb`` blocks."""
    N = out.shape[0]
    for t in prange(nb):
        r0 = t * N // nb
        r1 = (t + 1) * N // nb
        if loss == CROSS_ENTROPY:
            lpart[t] = loss_value(out[r0:r1], yi[r0:r1], yf, loss)
        else:
            lpart[t] = loss_value(out[r0:r1], yi, yf[r0:r1], loss)
    total = 0.0
    for t in range(nb):
        total += lpart[t]
    return total
