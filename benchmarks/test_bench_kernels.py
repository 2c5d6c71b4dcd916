"""Kernel benchmarks: each fastbp kernel beside the idiomatic NumPy code for the same step.

One group per kernel, variant and shape, named ``kernel/<step>/<variant>/<shape>/<dtype>``,
each with a ``fastbp`` and a ``numpy`` row, so pytest-benchmark's ratio columns and the
summary at the end compare the two:

- ``dense_forward``: ``z = x @ W + b``, ``a = f(z)`` for relu and tanh. fastbp's
  ``dense_forward`` (BLAS GEMM, then bias and activation fused in one pass) beside
  ``np.dot`` into a preallocated buffer, ``z += b`` and the activation in place (the
  baseline's ``activation_``).
- ``act_backward``: ``g *= f'(.)`` for every activation in ``fastbp.ACTIVATIONS``.
  ``act_backward_`` (one fused pass) beside NumPy's element-wise expression (the baseline's
  ``activation_backward_`` where it has the activation, the same style written out here for
  elu, gelu, softplus and silu; gelu's ``erf`` is ``scipy.special.erf``).
- ``softmax_xent``: the mean softmax cross-entropy and ``dL/dz = (softmax(z) - onehot(y)) / B``.
  ``loss_grad`` (one pass per row) beside the baseline's ``loss_grad`` (stable softmax in NumPy).
- ``optimizer``: one update of the 535,818 parameters of the 784-512-256-10 network from one
  partial gradient (``nparts=1``), mid-training state (step 100). ``optimizer_update_`` beside
  in-place NumPy updates on the flat parameter vector (SGD and Adam as the baseline's
  ``_SGD`` and ``_Adam``; AdamW and RMSprop in the same style).

Each side runs as it does in training: ``dense_forward`` calls BLAS through SciPy's
OpenBLAS and ``np.dot`` through NumPy's, each on its default thread count (see the header);
``act_backward_`` and ``loss_grad`` are serial kernels (the engine runs one per thread on its
row block) beside single-threaded NumPy ufuncs; ``optimizer_update_`` is a parallel kernel
on all of fastbp's threads beside single-threaded NumPy ufuncs.

Every row checks its answer, so a fast wrong kernel fails (and the smoke run,
``--benchmark-disable``, doubles as a test): after timing, its output equals the other
implementation's output on the same inputs within :data:`TOL` for the dtype. Each kernel
is called once with the very arrays it is timed on before timing starts, so compilation
(or loading from Numba's cache) is never timed. Kernels that update their inputs in place
(``act_backward_``, ``optimizer_update_``) are timed with ``benchmark.pedantic``, whose
untimed ``setup`` copies the original inputs back before every round, so each round does
the same work (repeated ``g *= f'`` would shrink ``g`` into subnormals, which are slow).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.special import erf

import fastbp as fb
from benchmarks._support import IMPLS, OTHER, record, settle, thread_info
from fastbp.bench import numpy_mlp as base
from fastbp.kernels.activations import ACTIVATIONS, NEEDS_Z, act_backward_kernel, apply_forward, kernel_address
from fastbp.kernels.activations import _call_cols as call_kernel
from fastbp.kernels.activations import addresses as act_addresses
from fastbp.kernels.dense import dense_forward
from fastbp.kernels.losses import CROSS_ENTROPY, loss_grad
from fastbp.kernels.optim import N_COEF, optimizer_update_

DTYPES = [np.float32]
#: How closely fastbp's and NumPy's outputs agree, per dtype. Element-wise kernels differ
#: only in rounding (fastbp's fastmath flags allow contraction and approximate functions):
#: a few float32 ulps of O(1) values. A GEMM adds summation-order differences over its
#: inner dimension (up to 1024 terms here), hence ``atol`` 1e-5 for ``dense_forward``.
TOL = {np.float32: {"rtol": 1e-5, "atol": 1e-6}, np.float64: {"rtol": 1e-12, "atol": 1e-12}}
TOL_GEMM = {np.float32: {"rtol": 1e-5, "atol": 1e-5}, np.float64: {"rtol": 1e-12, "atol": 1e-12}}
#: Timed rounds of the in-place kernels (``benchmark.pedantic``: pytest-benchmark's
#: ``--benchmark-min-rounds`` and ``--benchmark-max-time`` do not apply to them).
ROUNDS = {"act_backward": 1000, "optimizer": 100}
WARMUP_ROUNDS = 10

_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _rng() -> np.random.Generator:
    return np.random.default_rng(0)


def _copy(inputs: dict) -> dict:
    return {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in inputs.items()}


def _bench(
    benchmark, summary: dict, impl: str, group: str, inputs: dict, make: Callable, tol: dict,
    items: float, unit: str, gflop: float | None = None, mutated: tuple[str, ...] = (), rounds: int = 0,
    **info,
) -> None:  # fmt: skip
    """Time ``make(impl, inputs)()``; check its result against the other implementation's.

    ``make(impl, inputs)`` returns a no-argument callable bound to the arrays in ``inputs``
    that runs ``impl``'s kernel and returns its outputs (a tuple of arrays and floats).
    Arrays named in ``mutated`` are updated in place by the call: they are copied back from
    the original before every timed round (untimed), so each round does the same work.
    """
    benchmark.group = group
    expected = tuple(np.copy(r) for r in make(OTHER[impl], _copy(inputs))())
    run = make(impl, inputs)
    pristine = {k: inputs[k].copy() for k in mutated}

    def reset() -> None:
        for k, v in pristine.items():
            np.copyto(inputs[k], v)

    run()  # warm-up: compiles (or loads) the kernel for exactly these argument types
    reset()
    settle(benchmark)
    if mutated:
        result = benchmark.pedantic(run, setup=reset, rounds=rounds, warmup_rounds=WARMUP_ROUNDS)
    else:
        result = benchmark(run)

    # the answer: every output equals the other implementation's on the same inputs
    for got, want in zip(result, expected, strict=True):
        assert np.asarray(got).dtype == np.asarray(want).dtype
        assert_allclose(got, want, **tol)

    benchmark.extra_info.update(impl=impl, **info, **thread_info(impl))
    record(benchmark, summary, impl, items, unit, gflop)


# --------------------------------------------------------------------- dense forward
DENSE_SHAPES = [(128, 784, 512), (1024, 1024, 1024)]  # (batch, n_in, n_out): mnist layer 1, wide layer 2


def _dense(impl: str, d: dict) -> Callable:
    x, w, b, z, a, act = d["x"], d["w"], d["b"], d["z"], d["a"], d["act"]
    if impl == "fastbp":
        code = act_addresses(np.array([ACTIVATIONS[act]]), x.dtype)[0][0]  # the forward kernel

        def run():
            dense_forward(x, w, b, code, z, a)  # z and a apart, as in the engine (an alias runs unvectorised)
            return (a,)
    else:

        def run():
            np.dot(x, w, out=a)
            np.add(a, b, out=a)  # z += b (a closure cannot rebind a with +=)
            base.activation_(a, act)
            return (a,)

    return run


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("act", ["relu", "tanh"])
@pytest.mark.parametrize("shape", DENSE_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}-{s[2]}")
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: np.dtype(t).name)
def test_dense_forward(benchmark, summary, dtype, shape, act, impl):
    n, n_in, n_out = shape
    rng = _rng()
    inputs = {
        "x": rng.standard_normal((n, n_in), dtype=dtype),
        "w": (rng.standard_normal((n_in, n_out)) / math.sqrt(n_in)).astype(dtype),
        "b": (0.1 * rng.standard_normal(n_out)).astype(dtype),
        "z": np.empty((n, n_out), dtype=dtype),
        "a": np.empty((n, n_out), dtype=dtype),
        "act": act,
    }
    _bench(
        benchmark, summary, impl, f"kernel/dense_forward/{act}/{n}x{n_in}-{n_out}/{np.dtype(dtype).name}",
        inputs, _dense, TOL_GEMM[dtype], items=n, unit="rows", gflop=2e-9 * n * n_in * n_out,
        dtype=np.dtype(dtype).name, shape=list(shape), activation=act,
    )  # fmt: skip


# --------------------------------------------------------------------- act backward
ACT_SHAPE = (128, 512)


def _numpy_act_backward_(g: np.ndarray, a: np.ndarray, z: np.ndarray, name: str) -> np.ndarray:
    """g *= f'(z) in NumPy, from the output ``a`` where possible (gelu and silu need ``z``)."""
    if name in base.ACTIVATIONS:
        return base.activation_backward_(g, a, name)
    if name == "elu":  # a = e^z - 1 for z <= 0, so f'(z) = a + 1
        g *= np.where(a > 0, 1.0, a + 1.0)
    elif name == "softplus":  # f'(z) = sigmoid(z) = 1 - e^-a
        g *= -np.expm1(-a)
    elif name == "gelu":  # Phi(z) + z phi(z)
        g *= 0.5 * (1.0 + erf(z * _INV_SQRT2)) + z * _INV_SQRT_2PI * np.exp(-0.5 * z * z)
    elif name == "silu":  # s (1 + z (1 - s)), s = sigmoid(z) = (1 + tanh(z / 2)) / 2
        s = np.tanh(0.5 * z)
        s += 1.0
        s *= 0.5
        g *= s * (1.0 + z * (1.0 - s))
    else:
        raise ValueError(f"no NumPy derivative for {name!r}")
    return g


def _act_backward(impl: str, d: dict) -> Callable:
    g, a, z, act = d["g"], d["a"], d["z"], d["act"]
    if impl == "fastbp":
        code = ACTIVATIONS[act]
        zz = z if code in NEEDS_Z else a  # the engine passes a for activations that need no z

        addr = kernel_address(act_backward_kernel, code, g.dtype)  # the kernel the engine calls
        width = g.shape[1]

        def run():
            call_kernel(addr, g, a, zz, 0, width)
            return (g,)
    else:

        def run():
            _numpy_act_backward_(g, a, z, act)
            return (g,)

    return run


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("act", list(fb.ACTIVATIONS))
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: np.dtype(t).name)
def test_act_backward(benchmark, summary, dtype, act, impl):
    rng = _rng()
    z = (2.0 * rng.standard_normal(ACT_SHAPE)).astype(dtype)
    a = np.empty_like(z)
    apply_forward(z.copy(), np.zeros(z.shape[1], dtype=z.dtype), ACTIVATIONS[act], a)
    inputs = {"g": rng.standard_normal(ACT_SHAPE, dtype=dtype), "a": a, "z": z, "act": act}
    n, m = ACT_SHAPE
    _bench(
        benchmark, summary, impl, f"kernel/act_backward/{act}/{n}x{m}/{np.dtype(dtype).name}",
        inputs, _act_backward, TOL[dtype], items=n * m, unit="elements", mutated=("g",),
        rounds=ROUNDS["act_backward"], dtype=np.dtype(dtype).name, shape=[n, m], activation=act,
    )  # fmt: skip


# --------------------------------------------------------------------- softmax cross-entropy
LOSS_SHAPES = [(128, 10), (1024, 1000)]  # (batch, classes)


def _softmax_xent(impl: str, d: dict) -> Callable:
    out, y, g = d["out"], d["y"], d["g"]
    B = out.shape[0]
    if impl == "fastbp":
        yf = np.empty((0, out.shape[1]), dtype=out.dtype)  # float targets: unused, empty
        scale = 1.0 / B

        def run():
            return (loss_grad(out, y, yf, np.zeros(0), CROSS_ENTROPY, scale, g) * scale, g)
    else:

        def run():
            return (base.loss_grad(out, y, "cross_entropy", g), g)

    return run


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", LOSS_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: np.dtype(t).name)
def test_softmax_xent(benchmark, summary, dtype, shape, impl):
    B, k = shape
    rng = _rng()
    inputs = {
        "out": (3.0 * rng.standard_normal(shape)).astype(dtype),
        "y": rng.integers(0, k, B).astype(np.int64),
        "g": np.empty(shape, dtype=dtype),
    }
    _bench(
        benchmark, summary, impl, f"kernel/softmax_xent/{B}x{k}/{np.dtype(dtype).name}", inputs,
        _softmax_xent, TOL[dtype], items=B, unit="rows", dtype=np.dtype(dtype).name, shape=[B, k],
    )  # fmt: skip


# --------------------------------------------------------------------- optimizer update
MNIST_SIZES = (784, 512, 256, 10)
N_WEIGHTS = sum(a * b for a, b in zip(MNIST_SIZES[:-1], MNIST_SIZES[1:]))  # 535,040 (decayed)
N_PARAMS = N_WEIGHTS + sum(MNIST_SIZES[1:])  # 535,818
STEP = 100  # mid-training: Adam's bias corrections are not 1 yet
OPTIMIZERS = {
    "sgd-m0.9": fb.SGD(lr=0.01, momentum=0.9),
    "adam": fb.Adam(lr=1e-3),
    "adamw": fb.AdamW(lr=1e-3, weight_decay=0.01),
    "rmsprop": fb.RMSprop(lr=0.01, alpha=0.99),
}


def _numpy_update(opt: fb.Optimizer, theta, g, m, v, t, step: int, n_decay: int) -> None:
    """One in-place NumPy update of the flat ``theta``; ``t`` is scratch (PyTorch's rules)."""
    if isinstance(opt, fb.SGD):  # the baseline's step
        base.sgd_momentum_step_(theta, g, m, t, opt.lr, opt.momentum)
    elif isinstance(opt, fb.Adam):  # the baseline's step; AdamW decays the weights first
        if isinstance(opt, fb.AdamW):
            theta[:n_decay] *= 1.0 - opt.lr * opt.weight_decay
        base.adam_step_(theta, g, m, v, t, opt.lr, opt.beta1, opt.beta2, opt.eps, step)
    else:  # RMSprop without momentum
        v *= opt.alpha
        np.multiply(g, g, out=t)
        t *= 1.0 - opt.alpha
        v += t
        np.sqrt(v, out=t)
        t += opt.eps
        np.divide(g, t, out=t)
        t *= opt.lr
        theta -= t


def _optimizer(impl: str, d: dict) -> Callable:
    theta, gpart, m, v, opt = d["theta"], d["gpart"], d["m"], d["v"], d["opt"]
    # the state the update reads: compared after the run as well as theta
    state = tuple(s for s, used in ((m, opt.uses_m), (v, opt.uses_v)) if used)
    if impl == "fastbp":
        hyper = np.array(opt._hyper(), dtype=np.float64)
        coef = np.zeros(N_COEF, dtype=theta.dtype)
        mk = m if opt.uses_m else m[:0]  # unused state is an empty array, as Sequential passes it
        vk = v if opt.uses_v else v[:0]

        def run():
            optimizer_update_(theta, gpart, 1, N_WEIGHTS, opt.code, hyper, STEP, mk, vk, coef)
            return (theta, *state)
    else:
        g = gpart[0]
        t = np.empty_like(theta)

        def run():
            _numpy_update(opt, theta, g, m, v, t, STEP, N_WEIGHTS)
            return (theta, *state)

    return run


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: np.dtype(t).name)
def test_optimizer(benchmark, summary, dtype, name, impl):
    rng = _rng()
    P = N_PARAMS
    g = (1e-2 * rng.standard_normal(P)).astype(dtype)
    inputs = {
        "theta": (0.05 * rng.standard_normal(P)).astype(dtype),
        "gpart": g.reshape(1, P),
        "m": (1e-3 * rng.standard_normal(P)).astype(dtype),  # mid-training moments
        "v": (1e-4 * rng.random(P) ** 2).astype(dtype),
        "opt": OPTIMIZERS[name],
    }
    _bench(
        benchmark, summary, impl, f"kernel/optimizer/{name}/p{P}/{np.dtype(dtype).name}", inputs,
        _optimizer, TOL[dtype], items=P, unit="params", mutated=("theta", "m", "v"),
        rounds=ROUNDS["optimizer"], dtype=np.dtype(dtype).name, n_params=P, optimizer=repr(OPTIMIZERS[name]),
    )  # fmt: skip
