"""The tiled float32 GEMM (``fastbp/kernels/sgemm.py``) against NumPy in float64.

Tolerance: each element of ``c`` is a float32 sum of ``k`` products, and recursive
summation (with or without FMA) is within ``k * u * (|op(a)| @ |b|)`` of the exact sum,
``u = 2**-24`` (Higham, *Accuracy and Stability of Numerical Algorithms*, 3.1), plus the
float32 rounding of the operands, which are float32 already here. A wrong index, a lost
tile or a missed ``k`` block is off by a whole product term, far outside that.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import gemm

from fastbp.kernels import sgemm

pytestmark = pytest.mark.skipif(not sgemm.has_avx512(), reason="the tiled kernel needs AVX-512F")

U = 2.0**-24


def view(rng, rows, cols, pad=3):
    """A float32 ``rows x cols`` block of a wider matrix: row stride longer than its width."""
    parent = rng.standard_normal((rows + 2, cols + pad)).astype(np.float32)
    return parent[1 : 1 + rows, 2 : 2 + cols]


def check(a, ta, b, c, big):
    """``c`` (a view into ``big``, filled with 7 elsewhere) equals op(a) @ b to the bound."""
    oa = (a.T if ta else a).astype(np.float64)
    bb = b.astype(np.float64)
    k = bb.shape[0]
    bound = k * U * (np.abs(oa) @ np.abs(bb)) + 1e-30
    assert (np.abs(c - oa @ bb) <= bound).all()
    outside = big.copy()
    outside[2 : 2 + c.shape[0], 1 : 1 + c.shape[1]] = 7.0
    assert (outside == 7.0).all()


# m: 1, 3 (a 4-row tile, clamped), 12 (one tile, unpacked), 25 (packed; 2 tiles + 1 row),
# 128; n: 1, 31, 33 (a partial second panel), 64; k: 0, 1, 255-257 (a second k block),
# 600 (three blocks)
SHAPES = [(1, 1, 1), (3, 5, 31), (12, 256, 33), (25, 257, 64), (128, 600, 45), (13, 255, 32), (40, 1, 70), (7, 0, 9)]


@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize(("m", "k", "n"), SHAPES)
def test_tiled_kernel_equals_numpy(rng, m, k, n, ta):
    a = view(rng, k, m) if ta else view(rng, m, k)
    b = view(rng, k, n, pad=5)
    big = np.full((m + 4, n + 6), 7.0, np.float32)
    c = big[2 : 2 + m, 1 : 1 + n]
    sgemm.tiled(a, ta, b, c)
    check(a, ta, b, c, big)


def test_tiled_kernel_overwrites_c(rng):
    """beta = 0: what ``c`` held (NaN here) does not leak into the result, with k = 0 too."""
    for k in (0, 300):
        a, b = view(rng, 30, k), view(rng, k, 40)
        big = np.full((34, 46), 7.0, np.float32)
        c = big[2:32, 1:41]
        c[...] = np.nan
        sgemm.tiled(a, False, b, c)
        check(a, False, b, c, big)


def test_tiled_kernel_blocks_sum_the_same_bits(rng):
    """Cut into row and column blocks (as the threads cut a product), every element comes
    out with the same bits as in the whole product: the order over ``k`` is fixed."""
    a, b = view(rng, 50, 300), view(rng, 300, 70)
    whole = np.empty((50, 70), np.float32)
    sgemm.tiled(a, False, b, whole)
    parts = np.empty_like(whole)
    for r0, r1 in ((0, 17), (17, 50)):
        for c0, c1 in ((0, 20), (20, 70)):
            sgemm.tiled(a[r0:r1], False, b[:, c0:c1], parts[r0:r1, c0:c1])
    np.testing.assert_array_equal(parts, whole)


@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("deep", [True, False])
def test_gemm_routes_deep_or_large_float32_products_to_the_kernel(rng, ta, deep):
    """``blas.gemm`` gives a float32 product at least ``NR`` wide and either deep or large
    (``m * n >= MIN_MN``, here with ``k`` 8) to the kernel (the same bits), and the rest
    still equal NumPy (float64, a transposed ``b``, small and shallow, narrow ``n``)."""
    m, k, n = (40, sgemm.MIN_K + 3, sgemm.NR + 5) if deep else (sgemm.MIN_MN // 70 + 3, 8, 70)
    a = view(rng, k, m) if ta else view(rng, m, k)
    b = view(rng, k, n)
    routed, direct = np.empty((m, n), np.float32), np.empty((m, n), np.float32)
    gemm(a, ta, b, False, routed)
    sgemm.tiled(a, ta, b, direct)
    np.testing.assert_array_equal(routed, direct)
    for mm, kk, nn, dt, tb in ((m, k, n, np.float64, False), (m, k, n, np.float32, True),
                               (3, 8, n, np.float32, False), (m, k, 5, np.float32, False)):  # fmt: skip
        x = rng.standard_normal((kk, mm) if ta else (mm, kk)).astype(dt)
        y = rng.standard_normal((nn, kk) if tb else (kk, nn)).astype(dt)
        out = np.empty((mm, nn), dt)
        gemm(x, ta, y, tb, out)
        expect = (x.T if ta else x).astype(np.float64) @ (y.T if tb else y).astype(np.float64)
        np.testing.assert_allclose(out, expect, rtol=1e-4, atol=1e-4 * np.sqrt(kk))
