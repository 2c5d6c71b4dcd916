"""Property-based tests (hypothesis) of the loss and optimizer kernels.

* softmax (``link_`` with the cross-entropy code): rows sum to 1 and are shift-invariant;
* ``loss_grad`` writing ``g`` over ``a`` gives the non-aliased result (up to rounding);
* ``optimizer_update_`` does not depend on how the gradient is split into partials.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("hypothesis")

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402
from numpy.testing import assert_allclose, assert_array_equal  # noqa: E402

import fastbp.optimizers as fbopt  # noqa: E402
from fastbp.kernels import optim  # noqa: E402
from fastbp.kernels.losses import CROSS_ENTROPY, link_, loss_grad  # noqa: E402
from fastbp.kernels.losses import LOSSES as LOSS_CODES  # noqa: E402
from fastbp.kernels.optim import N_COEF  # noqa: E402

SETTINGS = settings(max_examples=40, deadline=None)
DTYPES = [pytest.param(np.float32, id="float32"), pytest.param(np.float64, id="float64")]
EPS = {np.float32: float(np.finfo(np.float32).eps), np.float64: float(np.finfo(np.float64).eps)}


def _float_arrays(dtype, max_abs, min_rows=1, max_rows=8, min_cols=1, max_cols=6):
    return hnp.arrays(
        dtype,
        st.tuples(st.integers(min_rows, max_rows), st.integers(min_cols, max_cols)),
        elements=st.floats(-max_abs, max_abs, width=np.dtype(dtype).itemsize * 8),
    )


# =========================================================================== softmax
@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(data=st.data())
def test_softmax_rows_sum_to_one(dtype, data):
    a = data.draw(_float_arrays(dtype, 1e4))
    p = a.copy()
    link_(p, CROSS_ENTROPY)
    assert np.isfinite(p).all()
    assert (p >= 0).all() and (p <= 1).all()
    assert_allclose(p.astype(np.float64).sum(axis=1), 1.0, rtol=0, atol=4 * p.shape[1] * EPS[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(data=st.data())
def test_softmax_shift_invariant(dtype, data):
    """softmax(a + c) == softmax(a) for any per-row shift c.

    Values are multiples of 1/8 in [-50, 50] and shifts integers in [-1000, 1000], so a + c
    is exact even in float32: any difference is the kernel's, not the input's rounding.
    """
    eighths = data.draw(
        hnp.arrays(np.int64, st.tuples(st.integers(1, 8), st.integers(1, 6)), elements=st.integers(-400, 400))
    )
    a = (eighths / 8).astype(dtype)
    c = np.array(data.draw(st.lists(st.integers(-1000, 1000), min_size=len(a), max_size=len(a))))
    shifted = (a + c[:, None].astype(dtype)).astype(dtype)
    assert_array_equal(shifted.astype(np.float64), a.astype(np.float64) + c[:, None])  # exact input
    p, q = a.copy(), shifted
    link_(p, CROSS_ENTROPY)
    link_(q, CROSS_ENTROPY)
    assert_allclose(q, p, rtol=8 * EPS[dtype], atol=8 * EPS[dtype])


# =========================================================================== loss_grad aliasing
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", sorted(LOSS_CODES))
@SETTINGS
@given(data=st.data())
def test_loss_grad_aliased_equals_separate(loss, dtype, data):
    # poisson's link is exp: keep exp(a) finite and the error bounds meaningful
    a = data.draw(_float_arrays(dtype, 10.0 if loss == "poisson" else 1e3, min_cols=2))
    n, k = a.shape
    if loss == "cross_entropy":
        yi = np.array(data.draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)), dtype=np.int64)
        yf = np.zeros((0, k), dtype=dtype)
        scale = 1.0 / n
    else:
        lo, hi = {"binary_cross_entropy": (0.0, 1.0), "poisson": (0.0, 1e3)}.get(loss, (-1e3, 1e3))
        yf = data.draw(hnp.arrays(dtype, (n, k), elements=st.floats(lo, hi, width=np.dtype(dtype).itemsize * 8)))
        yi = np.zeros(0, dtype=np.int64)
        scale = 1.0 / (n * k)
    g = np.full_like(a, np.nan)
    total = loss_grad(a.copy(), yi, yf, np.zeros(0), LOSS_CODES[loss], scale, g)
    aliased = a.copy()
    total_aliased = loss_grad(aliased, yi, yf, np.zeros(0), LOSS_CODES[loss], scale, aliased)
    assert np.isfinite(total) and np.isfinite(g).all()
    # Equal up to rounding, not bit for bit: LLVM compiles each loop twice, picked at run
    # time by whether g overlaps a, and fastmath (``reassoc``, ``contract``) lets the two
    # copies order the softmax denominator and the loss sum differently. g = (p - y) * scale
    # with p in [0, 1]: absolute error a few eps * scale. The loss sum: a.size terms, each
    # below B = (1 + max|a| + max|y|)^2.
    eps = EPS[dtype]
    mag = float(np.exp(np.abs(a).max())) if loss == "poisson" else 1.0  # size of exp(a) terms
    assert_allclose(aliased, g, rtol=16 * eps, atol=16 * eps * scale * mag)
    bound = mag * float((1.0 + np.abs(a).max() + (np.abs(yf).max() if yf.size else 0.0)) ** 2)
    assert total_aliased == pytest.approx(total, rel=16 * eps, abs=16 * a.size * eps * bound)


# =========================================================================== optimizer partials
OPT_CASES = {
    "sgd": lambda: fbopt.SGD(lr=0.1, weight_decay=0.1),
    "sgd-nesterov": lambda: fbopt.SGD(lr=1.0, momentum=0.9, nesterov=True, weight_decay=0.05),
    "adam": lambda: fbopt.Adam(lr=0.01, weight_decay=0.1),
    "adamw": lambda: fbopt.AdamW(lr=1.0, weight_decay=0.05),
    "rmsprop": lambda: fbopt.RMSprop(lr=0.01, momentum=0.9, weight_decay=0.1),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt_name", sorted(OPT_CASES))
@SETTINGS
@given(nparts=st.integers(2, 4), n_steps=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
def test_optimizer_update_independent_of_partial_split(opt_name, dtype, nparts, n_steps, seed):
    """Splitting each step's gradient G into nparts partials (G * w_t, weights w_t > 0
    summing to 1) changes theta and the state only by the rounding of the split."""
    rng = np.random.default_rng(seed)
    P, n_decay = 17, 11
    opt = OPT_CASES[opt_name]()
    hyper = np.array(opt._hyper(), dtype=np.float64)
    theta0 = rng.standard_normal(P).astype(dtype)
    runs = {}
    for split in (False, True):
        theta = theta0.copy()
        m = np.zeros(P if opt.uses_m else 0, dtype=dtype)
        v = np.zeros(P if opt.uses_v else 0, dtype=dtype)
        step_rng = np.random.default_rng(seed + 1)  # the same G sequence for both runs
        for step in range(1, n_steps + 1):
            G = step_rng.standard_normal(P)
            w = step_rng.uniform(0.1, 1.0, nparts)
            w /= w.sum()
            if split:
                gpart = (w[:, None] * G).astype(dtype)
            else:
                gpart = np.zeros((nparts, P), dtype=dtype)
                gpart[0] = G.astype(dtype)
            coef = np.zeros(N_COEF, dtype=theta.dtype)
            optim.optimizer_update_(
                theta,
                gpart,
                nparts if split else 1,
                n_decay,
                opt.code,
                hyper,
                step,
                m,
                v,
                coef,
            )
        runs[split] = (theta, m, v)
    tol = 64 * EPS[dtype]
    for got, expected in zip(runs[True], runs[False]):
        assert_allclose(got, expected, rtol=tol, atol=tol * max(1.0, float(np.abs(expected).max(initial=0))))
