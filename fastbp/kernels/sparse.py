"""Sparse input: the first layer's products computed from a CSR matrix's structure.

A sparse data set travels to the kernels as a :class:`CSR` record (row pointers, column
indices, values), never densified. Only the first layer sees the input, so only its two
products change: the forward ``z = X_rows @ W`` (each row a sum of the weight rows its
nonzeros select, scaled) and the weight gradient ``dW = X_rows^T delta`` (each nonzero
adds ``value * delta_row`` to one weight row). ``delta_prev`` is never needed below the
first layer. The work per row is ``nnz(row) * n_out`` instead of ``n_features * n_out``.

The engine (``engine.py``) compiles its row passes for sparse input as copies of the
dense functions that see the global ``SPARSE = True``; the dense functions branch on that
constant, which Numba removes before typing, so a dense network compiles what it did.

Row selection: ``rows`` maps the block's positions to data-set rows (the epoch's
shuffled ``order[s:e]`` in training), or is empty, meaning position ``i`` is row ``i``
(inference, where :func:`input_rows` has already sliced the rows).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from .._config import INLINE


class CSR(NamedTuple):
    """A CSR matrix in the kernels' form: ``indptr`` int64 (n_rows + 1,) (absolute offsets
    into ``indices``/``data``, so a row range is a slice of ``indptr`` alone),
    ``indices`` int32 column of each nonzero, ``data`` its value in the model's dtype,
    ``n_cols`` the number of columns. Built by ``fastbp._validation.check_X`` from a
    SciPy CSR or CSC matrix or array."""

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    n_cols: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.indptr.shape[0] - 1, self.n_cols

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    def rows(self, lo: int, hi: int) -> CSR:
        """Rows ``lo:hi`` as a view (no copy)."""
        return CSR(self.indptr[lo : hi + 1], self.indices, self.data, self.n_cols)

    def take(self, idx: np.ndarray) -> CSR:
        """Rows ``idx`` (an int array, any order, repeats allowed) as a new CSR."""
        starts = self.indptr[idx]
        counts = self.indptr[idx + 1] - starts
        indptr = np.zeros(idx.shape[0] + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        pos = np.repeat(starts - indptr[:-1], counts) + np.arange(indptr[-1], dtype=np.int64)
        return CSR(indptr, self.indices[pos], self.data[pos], self.n_cols)

    def to_dense(self) -> np.ndarray:
        """The matrix as a dense array (for tests and small data only)."""
        n, m = self.shape
        out = np.zeros((n, m), dtype=self.data.dtype)
        lo = int(self.indptr[0])
        counts = np.diff(self.indptr)
        r = np.repeat(np.arange(n), counts)
        np.add.at(out, (r, self.indices[lo : lo + r.shape[0]]), self.data[lo : lo + r.shape[0]])
        return out


def take_rows(X: np.ndarray | CSR, lo: int, hi: int) -> np.ndarray | CSR:
    """Rows ``lo:hi`` of dense or sparse ``X``, as a view."""
    return X.rows(lo, hi) if isinstance(X, CSR) else X[lo:hi]


def take(X: np.ndarray | CSR, idx: np.ndarray) -> np.ndarray | CSR:
    """Rows ``idx`` of dense or sparse ``X``, as a copy."""
    return X.take(idx) if isinstance(X, CSR) else X[idx]


def is_sparse(X: object) -> bool:
    return isinstance(X, CSR)


# ---------------------------------------------------------------------- kernels
@njit(**INLINE)
def csr_product_rows(X, rows, r0, r1, w, z):
    """``z[i - r0] = X[src(i)] @ w`` for positions ``i`` in ``r0:r1``, where ``src(i)`` is
    ``rows[i]`` (or ``i`` when ``rows`` is empty); ``w`` (n_cols, n_out), ``z`` (r1 - r0,
    n_out). Element loops over the output row, which vectorise."""
    indptr, indices, data = X.indptr, X.indices, X.data
    n_out = w.shape[1]
    mapped = rows.shape[0] > 0
    for i in range(r0, r1):
        src = rows[i] if mapped else i
        zi = z[i - r0]
        for j in range(n_out):
            zi[j] = 0
        for k in range(indptr[src], indptr[src + 1]):
            v = data[k]
            wc = w[indices[k]]
            for j in range(n_out):
                zi[j] += v * wc[j]


@njit(**INLINE)
def csr_weight_grad_rows(X, rows, r0, r1, delta, dw):
    """``dw = X[src(r0:r1)]^T @ delta`` (``src`` as in :func:`csr_product_rows`): zeroes
    ``dw`` (n_cols, n_out), then adds ``value * delta[i - r0]`` to the weight row of each
    nonzero of row ``src(i)``."""
    indptr, indices, data = X.indptr, X.indices, X.data
    n_in, n_out = dw.shape
    for c in range(n_in):
        row = dw[c]
        for j in range(n_out):
            row[j] = 0
    mapped = rows.shape[0] > 0
    for i in range(r0, r1):
        src = rows[i] if mapped else i
        di = delta[i - r0]
        for k in range(indptr[src], indptr[src + 1]):
            v = data[k]
            row = dw[indices[k]]
            for j in range(n_out):
                row[j] += v * di[j]
