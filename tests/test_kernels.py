"""Every kernel against its plain-NumPy twin in ``tests/reference.py``, in float32 and float64.

Kernels are called as the engine calls them: integer codes and counts as Python ints
(int64 in Numba), ``scale`` as a Python float, hyper-parameters as an array in the
parameters' dtype, optimizer state empty where the optimizer does not use it.

Tolerances (``TOL``): the twins compute in float64 from the very same (rounded) inputs,
so float64 results agree to a few ulps (``rtol=1e-12``); float32 results carry float32
rounding of O(1) values (``rtol=1e-5``, ``atol=1e-6``), loosened to ``atol=1e-5`` where a
short GEMM or a 10-step optimizer run accumulates it (``TOL_ACC``).
"""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref  # tests/reference.py (on pytest's pythonpath)
from numpy.testing import assert_allclose, assert_array_equal

import fastbp
import fastbp.optimizers as fbopt
from fastbp.kernels import optim
from fastbp.kernels.activations import ACTIVATIONS as ACT_CODES
from fastbp.kernels.activations import NEEDS_Z, addresses
from fastbp.kernels.activations import apply_backward as act_backward_
from fastbp.kernels.activations import apply_forward as bias_act_
from fastbp.kernels.dense import column_sums, dense_backward, dense_forward
from fastbp.kernels.losses import CROSS_ENTROPY, link_, loss_grad, loss_value
from fastbp.kernels.losses import LOSSES as LOSS_CODES
from fastbp.kernels.optim import N_COEF, OPTIMIZERS, reduce_partials
from fastbp.kernels.optim import OPTIMIZERS as OPT_CODES
from fastbp.kernels.optim import (
    n_chunks as n_chunks_of,
)

DTYPES = [pytest.param(np.float32, id="float32"), pytest.param(np.float64, id="float64")]


# The kernels take compiled addresses where the API takes codes: these call them from Python.
def activation_forward(z, code, a):
    """a = f(z), element-wise."""
    bias_act_(z.copy(), np.zeros(z.shape[1], dtype=z.dtype), code, a)
    return a


def _fwd(code, dtype):
    return addresses(np.array([code]), dtype)[0][0]


def _bwd(code, dtype):
    return addresses(np.array([code]), dtype)[1][0]


optimizer_update_ = optim.optimizer_update_
TOL = {np.float32: {"rtol": 1e-5, "atol": 1e-6}, np.float64: {"rtol": 1e-12, "atol": 1e-12}}
TOL_ACC = {np.float32: {"rtol": 1e-5, "atol": 1e-5}, np.float64: {"rtol": 1e-12, "atol": 1e-12}}

ACT_NAMES = sorted(fastbp.ACTIVATIONS)
LOSS_NAMES = sorted(fastbp.LOSSES)
#: An empty sample-weight array: every row weighs 1.
NO_WEIGHTS = np.zeros(0)


RNG_SEED = 20240601  # the ``rng`` fixture's seed (tests/conftest.py)


def _pre_activation(rng, dtype, n=7, m=5, scale=3.0):
    """(n, m) values spread over the interesting range of every activation, with an exact 0
    (the kink of relu / leaky_relu / elu) in the first element."""
    z = (scale * rng.standard_normal((n, m))).astype(dtype)
    z[0, 0] = 0
    return z


# =========================================================================== registries
def test_every_name_has_a_twin():
    assert set(fastbp.ACTIVATIONS) == set(ref.ACTIVATIONS)
    assert set(fastbp.LOSSES) == set(ref.LOSSES)
    assert set(fastbp.LOSSES) == set(ref.LINKS)
    assert set(OPT_CODES) == set(ref.OPTIMIZERS)


# =========================================================================== the oracle itself
@pytest.mark.parametrize("act", ACT_NAMES)
def test_reference_derivative_matches_finite_differences(act):
    """The twin's df is the derivative of its f (so the oracle is not merely self-consistent)."""
    f, df = ref.ACTIVATIONS[act]
    z = np.linspace(-6.0, 6.0, 241) + 1e-3  # offset: no point on the kink at 0
    h = 1e-6
    assert_allclose(df(z), (f(z + h) - f(z - h)) / (2 * h), rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_reference_loss_gradient_matches_finite_differences(loss, rng):
    a = 2.0 * rng.standard_normal((6, 3))
    y = _targets(loss, rng, 6, 3, np.float64)
    value, grad = ref.LOSSES[loss](a, y)
    num = np.zeros_like(a)
    h = 1e-6
    for idx in np.ndindex(a.shape):
        ap, am = a.copy(), a.copy()
        ap[idx] += h
        am[idx] -= h
        num[idx] = (ref.LOSSES[loss](ap, y)[0] - ref.LOSSES[loss](am, y)[0]) / (2 * h)
    assert np.isfinite(value)
    assert_allclose(grad, num, rtol=1e-6, atol=1e-9)


# =========================================================================== activations
def _bias_act_cases():
    for act in ACT_NAMES:
        for alias in (False, True):
            if alias and ACT_CODES[act] in NEEDS_Z:
                continue  # a may alias z only when the derivative needs just a
            yield pytest.param(act, alias, id=f"{act}-{'aliased' if alias else 'separate'}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("act", "alias"), list(_bias_act_cases()))
def test_bias_act(act, alias, dtype, rng):
    z0 = _pre_activation(rng, dtype)
    b = rng.standard_normal(z0.shape[1]).astype(dtype)
    z0[1, 1] = -b[1]  # z + b is exactly 0 here
    expected_z = z0 + b  # one rounding in dtype, as the kernel's single add
    expected_a = ref.ACTIVATIONS[act][0](expected_z)

    z = z0.copy()
    a = z if alias else np.full_like(z0, np.nan)
    bias_act_(z, b, ACT_CODES[act], a)

    assert a.dtype == dtype
    assert_allclose(a, expected_a, **TOL[dtype])
    if not alias:
        assert_array_equal(z, expected_z)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACT_NAMES)
def test_act_backward(act, dtype, rng):
    z = _pre_activation(rng, dtype)
    a = ref.ACTIVATIONS[act][0](z).astype(dtype)  # the stored output f(z)
    g0 = rng.standard_normal(z.shape).astype(dtype)
    expected = g0 * ref.ACTIVATIONS[act][1](z)

    g = g0.copy()
    code = ACT_CODES[act]
    # as the engine: z is a separate buffer only for the codes that need it, else z is a
    act_backward_(g, a, z if code in NEEDS_Z else a, code)

    assert_allclose(g, expected, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACT_NAMES)
def test_activation_forward(act, dtype, rng):
    z = _pre_activation(rng, dtype)
    z_before = z.copy()
    a = np.full_like(z, np.nan)
    out = activation_forward(z, ACT_CODES[act], a)
    assert out is a or np.shares_memory(out, a)
    assert_allclose(a, ref.ACTIVATIONS[act][0](z), **TOL[dtype])
    assert_array_equal(z, z_before)


@pytest.mark.parametrize("act", ACT_NAMES)
def test_activation_kink_conventions(act):
    """At z == 0 exactly, the kernels use PyTorch's one-sided derivatives (relu 0, leaky 0.01, elu 1)."""
    z = np.zeros((1, 1))
    a = ref.ACTIVATIONS[act][0](z)
    g = np.ones((1, 1))
    code = ACT_CODES[act]
    act_backward_(g, a, z if code in NEEDS_Z else a, code)
    assert g[0, 0] == pytest.approx(ref.ACTIVATIONS[act][1](z)[0, 0], rel=1e-15, abs=1e-15)


_EXTREMES = np.array([-1e4, -1e3, -100.0, -30.0, -1e-30, 0.0, 1e-30, 30.0, 100.0, 1e3, 1e4])


@pytest.mark.parametrize("act", ACT_NAMES)
def test_activation_extremes_float32(act):
    """|z| up to 1e4 in float32: forward and derivative finite and still correct."""
    z = _EXTREMES.astype(np.float32).reshape(1, -1)
    a = np.empty_like(z)
    zz = z.copy()
    bias_act_(zz, np.zeros(z.shape[1], dtype=np.float32), ACT_CODES[act], a)
    assert np.isfinite(a).all()
    assert_allclose(a, ref.ACTIVATIONS[act][0](z), rtol=1e-6, atol=1e-6)

    g = np.ones_like(z)
    code = ACT_CODES[act]
    act_backward_(g, a, zz if code in NEEDS_Z else a, code)
    assert np.isfinite(g).all()
    assert_allclose(g, ref.ACTIVATIONS[act][1](z), rtol=1e-6, atol=1e-6)


# =========================================================================== dense layer
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("act", "alias"), list(_bias_act_cases()))
def test_dense_forward(act, alias, dtype, rng):
    n, n_in, n_out = 9, 6, 4
    x = rng.standard_normal((n, n_in)).astype(dtype)
    w = (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(dtype)
    b = rng.standard_normal(n_out).astype(dtype)
    expected_z, expected_a = ref.dense_forward(x, w, b, act)

    z = np.full((n, n_out), np.nan, dtype=dtype)
    a = z if alias else np.full((n, n_out), np.nan, dtype=dtype)
    dense_forward(x, w, b, _fwd(ACT_CODES[act], dtype), z, a)

    assert_allclose(a, expected_a, **TOL_ACC[dtype])
    if not alias:
        assert_allclose(z, expected_z, **TOL_ACC[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("need_dx", [pytest.param(True, id="need_dx"), pytest.param(False, id="no_dx")])
@pytest.mark.parametrize("act", ACT_NAMES)
def test_dense_backward(act, need_dx, dtype, rng):
    n, n_in, n_out = 9, 6, 4
    x = rng.standard_normal((n, n_in)).astype(dtype)
    w = (rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)).astype(dtype)
    z = _pre_activation(rng, dtype, n, n_out)
    a = ref.ACTIVATIONS[act][0](z).astype(dtype)
    g0 = rng.standard_normal((n, n_out)).astype(dtype)
    delta, e_dw, e_db, e_dx = ref.dense_backward(x, w, z, act, g0)

    g = g0.copy()
    dw = np.full((n_in, n_out), np.nan, dtype=dtype)
    db = np.full(n_out, np.nan, dtype=dtype)
    dx = np.full((n, n_in), 7.0, dtype=dtype)
    code = ACT_CODES[act]
    dense_backward(x, w, a, z if code in NEEDS_Z else a, _bwd(code, dtype), g, dw, db, dx, need_dx)

    assert_allclose(g, delta, **TOL_ACC[dtype])  # g holds delta on exit
    assert_allclose(dw, e_dw, **TOL_ACC[dtype])
    assert_allclose(db, e_db, **TOL_ACC[dtype])
    if need_dx:
        assert_allclose(dx, e_dx, **TOL_ACC[dtype])
    else:
        assert (dx == 7.0).all()  # untouched


@pytest.mark.parametrize("dtype", DTYPES)
def test_column_sums(dtype, rng):
    delta = rng.standard_normal((37, 5)).astype(dtype)
    out = np.full(5, np.nan, dtype=dtype)  # garbage on entry must be overwritten
    column_sums(delta, out)
    assert_allclose(out, delta.astype(np.float64).sum(axis=0), **TOL_ACC[dtype])


# =========================================================================== losses
def _targets(loss, rng, n, k, dtype):
    """Targets as the model passes them: int64 labels for cross-entropy, floats otherwise."""
    if loss == "cross_entropy":
        return rng.integers(0, k, n).astype(np.int64)
    if loss == "binary_cross_entropy":
        y = rng.uniform(0.0, 1.0, (n, k))
        y[0, :] = 0.0
        y[1, :] = 1.0
        return y.astype(dtype)
    if loss == "poisson":
        return rng.poisson(3.0, (n, k)).astype(dtype)
    return (2.0 * rng.standard_normal((n, k))).astype(dtype)


def _kernel_targets(loss, y, k, dtype):
    """(yi, yf) as ``Sequential._check_y`` builds them: the unused one is empty."""
    if LOSS_CODES[loss] == CROSS_ENTROPY:
        return y, np.zeros((0, k), dtype=dtype)
    return np.zeros(0, dtype=np.int64), y


def _count(loss, n, k):
    return n if LOSS_CODES[loss] == CROSS_ENTROPY else n * k


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("alias", [pytest.param(False, id="separate"), pytest.param(True, id="g_is_a")])
@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_loss_grad(loss, alias, dtype, rng):
    n, k = 9, 4
    a0 = (3.0 * rng.standard_normal((n, k))).astype(dtype)
    y = _targets(loss, rng, n, k, dtype)
    if loss == "huber":
        r = np.abs(a0 - y)
        assert (r <= 1).any() and (r > 1).any()  # both branches are exercised
    expected_loss, expected_g = ref.LOSSES[loss](a0, y)

    a = a0.copy()
    g = a if alias else np.full_like(a, np.nan)
    yi, yf = _kernel_targets(loss, y, k, dtype)
    scale = 1.0 / _count(loss, n, k)  # a Python float, as the engine's 1.0 / B
    total = loss_grad(a, yi, yf, NO_WEIGHTS, LOSS_CODES[loss], scale, g)

    assert total / _count(loss, n, k) == pytest.approx(expected_loss, rel=TOL[dtype]["rtol"])
    assert_allclose(g, expected_g, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_loss_value(loss, dtype, rng):
    n, k = 9, 4
    a = (3.0 * rng.standard_normal((n, k))).astype(dtype)
    y = _targets(loss, rng, n, k, dtype)
    yi, yf = _kernel_targets(loss, y, k, dtype)
    a_before = a.copy()
    total = loss_value(a, yi, yf, NO_WEIGHTS, LOSS_CODES[loss])
    assert total / _count(loss, n, k) == pytest.approx(ref.LOSSES[loss](a, y)[0], rel=TOL[dtype]["rtol"])
    assert_array_equal(a, a_before)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_link(loss, dtype, rng):
    a0 = (3.0 * rng.standard_normal((9, 4))).astype(dtype)
    a = a0.copy()
    link_(a, LOSS_CODES[loss])
    assert_allclose(a, ref.LINKS[loss](a0), **TOL[dtype])


def _extreme_outputs(loss):
    """float32 outputs up to |a| = 1e4 and the targets that make each loss largest there."""
    a = np.array(
        [[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4], [1e4, 1e4, 1e4], [-1e4, -1e4, -1e4], [30.0, -30.0, 1e3]],
        dtype=np.float32,
    )
    n, k = a.shape
    if loss == "cross_entropy":
        y = np.array([1, 0, 2, 0, 1], dtype=np.int64)  # labels against the largest logit
    elif loss == "binary_cross_entropy":
        y = (a < 0).astype(np.float32)  # wrong side everywhere: log(0) if computed naively
        y[4] = [0.0, 1.0, 0.5]
    else:
        y = -np.sign(a).astype(np.float32)
    return a, y, n, k


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_loss_grad_sample_weights(loss, dtype, rng):
    """Weighted loss = sum(w l) / sum(w); rows of weight 0 contribute exactly nothing."""
    n, k = 12, 3
    a = (2.0 * rng.standard_normal((n, k))).astype(dtype)
    y = _targets(loss, rng, n, k, dtype)
    w = rng.uniform(0.5, 2.0, n)
    w[[1, 4, 5]] = 0.0
    yi, yf = _kernel_targets(loss, y, k, dtype)
    W = w.sum()
    count = W if LOSS_CODES[loss] == CROSS_ENTROPY else W * k
    g = np.empty_like(a)
    total = loss_grad(a.copy(), yi, yf, w, LOSS_CODES[loss], 1.0 / count, g)
    # twin: each row's loss and gradient alone, then the weighted mean
    per_row = [ref.LOSSES[loss](a[i : i + 1], y[i : i + 1]) for i in range(n)]
    expected = sum(w[i] * v for i, (v, _) in enumerate(per_row)) / W
    expected_g = np.stack([w[i] * gr[0] / W for i, (_, gr) in enumerate(per_row)])
    assert total / count == pytest.approx(expected, rel=TOL[dtype]["rtol"])
    assert_allclose(g, expected_g, **TOL[dtype])
    assert not g[[1, 4, 5]].any()
    assert loss_value(a, yi, yf, w, LOSS_CODES[loss]) / count == pytest.approx(expected, rel=TOL[dtype]["rtol"])


@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_loss_extremes_float32(loss):
    """|a| up to 1e4 in float32: no overflow, no log(0); values still match the twin
    (poisson's log-rate is clipped at 50, see ``test_poisson_large_outputs``)."""
    a0, y, n, k = _extreme_outputs(loss)
    yi, yf = _kernel_targets(loss, y, k, np.float32)
    expected_loss, expected_g = ref.LOSSES[loss](a0, y)
    count = _count(loss, n, k)

    g = np.empty_like(a0)
    total = loss_grad(a0.copy(), yi, yf, NO_WEIGHTS, LOSS_CODES[loss], 1.0 / count, g)
    assert np.isfinite(total) and np.isfinite(g).all()
    assert total / count == pytest.approx(expected_loss, rel=1e-6)
    assert_allclose(g, expected_g, rtol=1e-6, atol=1e-7)

    total = loss_value(a0.copy(), yi, yf, NO_WEIGHTS, LOSS_CODES[loss])
    assert np.isfinite(total)
    assert total / count == pytest.approx(expected_loss, rel=1e-6)

    p = a0.copy()
    link_(p, LOSS_CODES[loss])
    assert np.isfinite(p).all()
    assert_allclose(p, ref.LINKS[loss](a0), rtol=1e-6, atol=1e-7)


def test_poisson_large_outputs():
    """Poisson in float32: log-rates beyond POISSON_MAX_LOG are clipped inside exp (exp(80)
    alone would be 5.5e34, exp(133) overflows float32): finite, and matching the twin."""
    a0 = np.array([[80.0, -80.0], [0.0, 40.0], [-1e4, 1.0]], dtype=np.float32)
    y = np.array([[0.0, 5.0], [3.0, 0.0], [2.0, 1.0]], dtype=np.float32)
    expected_loss, expected_g = ref.LOSSES["poisson"](a0, y)
    g = np.empty_like(a0)
    total = loss_grad(a0.copy(), np.zeros(0, np.int64), y, NO_WEIGHTS, LOSS_CODES["poisson"], 1.0 / a0.size, g)
    assert np.isfinite(total) and np.isfinite(g).all()
    assert total / a0.size == pytest.approx(expected_loss, rel=1e-6)
    assert_allclose(g, expected_g, rtol=1e-6)
    assert g[0, 0] == pytest.approx((np.exp(50.0) - 0.0) / a0.size, rel=1e-6)  # clipped at 50
    p = a0.copy()
    link_(p, LOSS_CODES["poisson"])
    assert_allclose(p, np.exp(np.minimum(a0.astype(np.float64), 50.0)), rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_rows_sum_to_one(dtype, rng):
    a = (rng.standard_normal((50, 7)) * rng.choice([1.0, 10.0, 1e3, 1e4], (50, 1))).astype(dtype)
    link_(a, CROSS_ENTROPY)
    assert np.isfinite(a).all() and (a >= 0).all()
    assert_allclose(a.astype(np.float64).sum(axis=1), 1.0, rtol=0, atol=10 * np.finfo(dtype).eps)


# =========================================================================== optimizers
# (id, optimizer name, keyword arguments): the names are shared by fastbp's optimizer
# classes and the reference step functions.
OPT_CASES = [
    ("sgd", "sgd", {"lr": 0.1}),
    ("sgd-wd", "sgd", {"lr": 0.1, "weight_decay": 0.1}),
    ("sgd-momentum", "sgd", {"lr": 0.1, "momentum": 0.9}),
    ("sgd-nesterov-wd", "sgd", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.05}),
    ("sgd-lr1", "sgd", {"lr": 1.0}),
    ("sgd-lr1-momentum-wd", "sgd", {"lr": 1.0, "momentum": 0.5, "weight_decay": 0.1}),
    ("adam", "adam", {}),
    ("adam-wd", "adam", {"lr": 0.01, "weight_decay": 0.1}),
    ("adam-lr1", "adam", {"lr": 1.0, "beta1": 0.5, "beta2": 0.9}),
    ("adamw", "adamw", {"lr": 0.01, "weight_decay": 0.1}),
    ("adamw-lr1", "adamw", {"lr": 1.0, "weight_decay": 0.05}),
    ("rmsprop", "rmsprop", {}),
    ("rmsprop-momentum-wd", "rmsprop", {"lr": 0.01, "momentum": 0.9, "weight_decay": 0.1}),
    ("rmsprop-lr1", "rmsprop", {"lr": 1.0, "alpha": 0.9}),
    ("rmsprop-lr1-momentum", "rmsprop", {"lr": 1.0, "momentum": 0.5, "eps": 1e-3}),
]
_OPT_CLASSES = {"sgd": fbopt.SGD, "adam": fbopt.Adam, "adamw": fbopt.AdamW, "rmsprop": fbopt.RMSprop}


def kernel_optimizer(name, kwargs, n_params, dtype):
    """(code, hyper, m, v) exactly as ``Sequential`` builds them from the optimizer object."""
    opt = _OPT_CLASSES[name](**kwargs)
    assert opt.code == OPT_CODES[name]
    hyper = np.array(opt._hyper(), dtype=np.float64)
    m = np.zeros(n_params if opt.uses_m else 0, dtype=dtype)
    v = np.zeros(n_params if opt.uses_v else 0, dtype=dtype)
    return opt.code, hyper, m, v


def reference_kwargs(name, kwargs, dtype):
    """The hyper-parameters as the kernel sees them: exact (float64), AdamW's default decay."""
    full = dict(kwargs)
    if name == "adamw":
        full.setdefault("weight_decay", 0.01)
    return {k: (v if isinstance(v, bool) else float(v)) for k, v in full.items()}


def partial_gradients(rng, nparts, n_params, dtype):
    """(nparts + 1, P) partials; the spare last row is NaN and must never be read."""
    gpart = np.full((nparts + 1, n_params), np.nan, dtype=dtype)
    gpart[:nparts] = rng.standard_normal((nparts, n_params))
    return gpart


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nparts", [1, 3], ids=["nparts1", "nparts3"])
@pytest.mark.parametrize("n_steps", [1, 10], ids=["1step", "10steps"])
@pytest.mark.parametrize(("name", "kwargs"), [pytest.param(n, kw, id=i) for i, n, kw in OPT_CASES])
def test_optimizer_update(name, kwargs, n_steps, nparts, dtype, rng):
    P, n_decay = 23, 15  # weights theta[:15] are decayed, biases theta[15:] are not
    theta = rng.standard_normal(P).astype(dtype)
    code, hyper, m, v = kernel_optimizer(name, kwargs, P, dtype)
    rkw = reference_kwargs(name, kwargs, dtype)
    expected = theta.astype(np.float64)
    state: dict = {}
    for step in range(1, n_steps + 1):
        gpart = partial_gradients(rng, nparts, P, dtype)
        grad = gpart[:nparts].astype(np.float64).sum(axis=0)
        expected = ref.OPTIMIZERS[name](expected, grad, state, step, n_decay, **rkw)
        optimizer_update_(theta, gpart, nparts, n_decay, code, hyper, step, m, v, np.zeros(N_COEF, dtype=theta.dtype))
    assert theta.dtype == dtype
    tol = TOL_ACC[dtype]
    # relative to the size of the run: at lr=1 parameters move by O(10)
    assert_allclose(theta, expected, rtol=tol["rtol"], atol=tol["atol"] * max(1.0, np.abs(expected).max()))


@pytest.mark.parametrize("dtype", DTYPES)
def test_weight_decay_spares_biases(dtype, rng):
    """With a zero gradient, only theta[:n_decay] changes (SGD: theta *= 1 - lr * wd)."""
    P, n_decay = 10, 6
    theta0 = rng.standard_normal(P).astype(dtype)
    theta = theta0.copy()
    code, hyper, m, v = kernel_optimizer("sgd", {"lr": 0.5, "weight_decay": 0.2}, P, dtype)
    optimizer_update_(
        theta, np.zeros((1, P), dtype=dtype), 1, n_decay, code, hyper, 1, m, v, np.zeros(N_COEF, dtype=theta.dtype)
    )
    assert_allclose(theta[:n_decay], theta0[:n_decay] * (1 - dtype(0.5) * dtype(0.2)), **TOL[dtype])
    assert_array_equal(theta[n_decay:], theta0[n_decay:])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("nparts", [1, 3], ids=["nparts1", "nparts3"])
def test_reduce_partials(nparts, dtype, rng):
    P = 31
    gpart = partial_gradients(rng, nparts, P, dtype)
    out = np.full(P, np.nan, dtype=dtype)
    reduce_partials(gpart, nparts, out)
    # added in thread order 0, 1, 2, ... in dtype: the same bits as this loop
    expected = gpart[0].copy()
    for t in range(1, nparts):
        expected += gpart[t]
    assert_array_equal(out, expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_optimizer_update_across_chunks(name, dtype, rng):
    """More than one chunk, with the weight/bias boundary inside a chunk."""
    from fastbp.kernels.optim import CHUNK

    P, n_decay = 2 * CHUNK + 37, CHUNK + 5
    kwargs = {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.3} if name == "sgd" else {"weight_decay": 0.3}
    theta = rng.standard_normal(P).astype(dtype)
    code, hyper, m, v = kernel_optimizer(name, kwargs, P, dtype)
    expected = theta.astype(np.float64)
    state: dict = {}
    for step in (1, 2, 3):
        gpart = partial_gradients(rng, 2, P, dtype)
        grad = gpart[:2].astype(np.float64).sum(axis=0)
        expected = ref.OPTIMIZERS[name](expected, grad, state, step, n_decay, **reference_kwargs(name, kwargs, dtype))
        optimizer_update_(theta, gpart, 2, n_decay, code, hyper, step, m, v, np.zeros(N_COEF, dtype=dtype))
    assert_allclose(theta, expected, rtol=TOL_ACC[dtype]["rtol"], atol=TOL_ACC[dtype]["atol"])


def test_tanh_f32_within_two_ulp():
    """The float32 tanh in ``bias_act_`` is evaluated in float32 (``activations.tanh_f32``:
    a polynomial below |x| = 1, 1 - 2e/(1 + e) with e = e^-2|x| above): check it
    everywhere, and closely on both sides of the switch. Bound: 2 ulp, CUDA's for
    ``tanhf``; measured 1.07 (JAX's jitted ``jnp.tanh`` on the same grid: 4.4). A wrong
    branch or coefficient is off by far more (measured: the two branches swapped give NaN,
    the polynomial's last coefficient left out 2,400 ulp)."""
    switch = np.float32(1.0) + np.arange(-2000, 2000, dtype=np.float32) * np.spacing(np.float32(1.0))
    z = np.concatenate([np.linspace(-12, 12, 400_001), np.geomspace(1e-30, 12, 100_001), switch,
                        [0.0, 1e-30, -1e-30, 1e-8, 1e4, -1e4]]).astype(np.float32)  # fmt: skip
    z = z.reshape(-1, 1)
    a = np.empty_like(z)
    bias_act_(z.copy(), np.zeros(1, np.float32), ACT_CODES["tanh"], a)
    exact = np.tanh(z.astype(np.float64))
    ulps = np.abs(a - exact) / np.spacing(np.abs(a).astype(np.float32)).astype(np.float64)
    assert ulps.max() <= 2.0
    assert np.abs(a).max() <= 1.0
    neg = np.empty_like(z)
    bias_act_(-z, np.zeros(1, np.float32), ACT_CODES["tanh"], neg)
    assert_array_equal(neg, -a)  # odd


@pytest.mark.parametrize("P", [100, 5000, 33000, 70000])  # serial (<= SERIAL_CHUNKS chunks) and parallel
@pytest.mark.parametrize("dtype", DTYPES)
def test_sum_partials_sq_and_optimizer_step(P, dtype, rng):
    """The step body's first phase sums the partials in row order and returns the squared
    norm of the sum (float64), serially (small P) or in parallel; an update from the three
    partials gives the same bits as one from their sum."""
    gpart = rng.standard_normal((3, P)).astype(dtype)
    expected = (gpart[0] + gpart[1]) + gpart[2]
    g = gpart.copy()
    assert n_chunks_of(P) >= 1
    total = optim.sum_partials_squares(g, 3)
    assert_array_equal(g[0], expected)
    assert total == pytest.approx(float((expected.astype(np.float64) ** 2).sum()), rel=1e-6)  # fastmath order
    hyper = np.array([0.01, 0.9, 0.999, 1e-8, 0.1, 0.0])
    theta0 = rng.standard_normal(P).astype(dtype)
    results = []
    for nparts, parts in ((3, gpart.copy()), (1, g.copy())):
        theta, m, v = theta0.copy(), np.zeros(P, dtype), np.zeros(P, dtype)
        optimizer_update_(theta, parts, nparts, P // 2, OPTIMIZERS["adam"], hyper, 3, m, v, np.zeros(N_COEF, dtype))
        results.append((theta, m, v))
    for a, b in zip(*results):
        assert_array_equal(a, b)


@pytest.mark.parametrize("act", ["sigmoid", "silu", "elu", "softplus"])
def test_float32_exp_activations_within_one_ulp(act):
    """sigmoid, silu, elu and softplus in float32 use a vectorisable exp
    (``activations.exp_neg``), not libm's: within 1 ulp of the float64 value everywhere,
    with no overflow."""
    z = np.linspace(-110, 110, 1_100_001)
    z = np.concatenate([z, -np.logspace(-12, -0.1, 10_001), [0.0, -0.0, 1e-30, -1e-30, 1e4, -1e4]])
    z = z.astype(np.float32).reshape(-1, 1)
    a = np.empty_like(z)
    bias_act_(z.copy(), np.zeros(1, np.float32), ACT_CODES[act], a)
    x = z.astype(np.float64)
    sig = np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))))
    exact = {
        "sigmoid": sig,
        "silu": x * sig,
        "elu": np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
        "softplus": np.logaddexp(0.0, x),
    }[act]
    spacing = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    assert (np.abs(a - exact) / spacing).max() <= 1.0
    assert np.isfinite(a).all()


def test_float32_gelu_within_one_ulp_and_its_derivative():
    """gelu in float32 uses a vectorisable erfc (``activations.gelu_f32``), not libm's
    erf: within 1 ulp of z Phi(z) everywhere, the far left tail included (where
    0.5 z (1 + erf(z / sqrt 2)) would cancel to 0), and its derivative to float32 rounding."""
    z = np.linspace(-20, 20, 2_000_001)
    z = np.concatenate([z, -np.logspace(-12, 1.2, 10_001), np.logspace(-12, 1.2, 10_001), [0.0, -0.0, 1e4, -1e4]])
    z = z.astype(np.float32).reshape(-1, 1)
    a = np.empty_like(z)
    zz = z.copy()
    bias_act_(zz, np.zeros(1, np.float32), ACT_CODES["gelu"], a)
    x = z.astype(np.float64)
    exact = ref.gelu(x)
    spacing = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    assert (np.abs(a - exact) / spacing).max() <= 1.0
    assert a[(x < -5) & (x > -13)].max() < 0  # the tail is kept (-7.9e-38 at -13), not cancelled to 0
    g = np.ones_like(z)
    act_backward_(g, a, zz, ACT_CODES["gelu"])
    # near gelu's minimum (z = -0.75) Phi + z phi cancels: an absolute bound there
    np.testing.assert_allclose(g, ref.d_gelu(x), rtol=4e-7, atol=1e-7)


def test_float32_softplus_derivative_is_the_sigmoid():
    z = np.linspace(-100, 100, 400_001).astype(np.float32).reshape(-1, 1)
    a = np.empty_like(z)
    bias_act_(z.copy(), np.zeros(1, np.float32), ACT_CODES["softplus"], a)
    g = np.ones_like(z)
    act_backward_(g, a, a, ACT_CODES["softplus"])
    x = z.astype(np.float64)
    np.testing.assert_allclose(g, 1 / (1 + np.exp(-x)), rtol=2e-7, atol=1e-30)


def test_float32_silu_derivative_matches_float64():
    z = np.linspace(-30, 30, 200_001).astype(np.float32).reshape(-1, 1)
    a = np.empty_like(z)
    zz = z.copy()
    bias_act_(zz, np.zeros(1, np.float32), ACT_CODES["silu"], a)
    g = np.ones_like(z)
    act_backward_(g, a, zz, ACT_CODES["silu"])
    x = z.astype(np.float64)
    s = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(g, s * (1 + x * (1 - s)), rtol=2e-7, atol=1e-7)
