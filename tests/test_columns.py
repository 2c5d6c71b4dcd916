"""The column split of training (``fastbp/kernels/columns.py``) and its BLAS call.

The column split must train exactly what the row split trains (which the gradient checks
in ``test_gradients.py`` pin down), up to the order of floating-point sums; its column-range
kernels must touch only their columns; ``gemm`` must equal NumPy on strided views.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import gemm

import fastbp as fb
import fastbp._plan as fbplan
from fastbp import _config
from fastbp._threads import thread_setting
from fastbp.kernels.activations import ACTIVATIONS, NEEDS_Z
from fastbp.kernels.activations import apply_backward as act_backward_
from fastbp.kernels.activations import apply_backward as act_backward_cols_
from fastbp.kernels.activations import apply_forward as bias_act_
from fastbp.kernels.activations import apply_forward as bias_act_cols_
from fastbp.kernels.dropout import dropout_backward_, dropout_backward_cols_, dropout_forward_, dropout_forward_cols_


@pytest.fixture
def two_threads():
    """Train on 2 threads (the splits differ only with more than one), then restore."""
    before = fb.get_num_threads()
    fb.set_num_threads(2)
    yield
    fb.set_num_threads(before)


@pytest.fixture(params=[False, True], ids=["even", "narrow"])
def split(request, monkeypatch):
    """split(True/False): force the column / row split for training; each test runs with
    the column split's even blocks and with its blocks narrowed for BLAS's small-matrix
    path (``_plan.column_widths``), whatever BLAS this machine has."""
    monkeypatch.setattr(_config, "NARROW_BLOCKS", request.param)

    def force(columns: bool) -> None:
        monkeypatch.setattr(fbplan, "column_split", lambda *args: columns)

    return force


def _data(rng, n=90, d=7):
    X = rng.standard_normal((n, d))
    return (
        X,
        {
            "cross_entropy": rng.integers(0, 3, n),
            "mse": rng.standard_normal((n, 2)),
            "binary_cross_entropy": (rng.random((n, 2)) > 0.5).astype(float),
            "huber": 3 * rng.standard_normal((n, 2)),
            "poisson": rng.poisson(2.0, (n, 2)).astype(float),
        },
        rng.random(n),
    )


def _train(columns, split, X, y, sw, loss, act, widths, batch, dtype, dropout):
    split(columns)
    layers = [fb.Dropout(dropout)] if dropout else []
    for w in widths:
        layers += [fb.Dense(w, activation=act)] + ([fb.Dropout(dropout)] if dropout else [])
    layers.append(fb.Dense(3 if loss == "cross_entropy" else 2))
    metrics = ["accuracy"] if loss == "cross_entropy" else ["mae"]
    model = fb.Sequential(layers, loss=loss, optimizer=fb.Adam(1e-2), seed=3, dtype=dtype, metrics=metrics)
    history = model.fit(X, y, epochs=2, batch_size=batch, verbose=0, sample_weight=sw)
    return np.concatenate([w.ravel() for w in model.get_weights()]), history.history


CASES = [
    # (loss, activation, hidden widths, batch, dropout, weighted)
    ("cross_entropy", "relu", (40, 24), 40, 0.2, True),
    ("cross_entropy", "gelu", (40, 24), 40, 0.0, False),  # gelu keeps z
    ("mse", "silu", (33, 17, 9), 40, 0.1, True),  # three hidden layers, silu keeps z
    ("binary_cross_entropy", "sigmoid", (30,), 40, 0.0, True),  # one hidden layer
    ("huber", "tanh", (25, 12), 13, 0.2, False),  # partial last batch
    ("poisson", "elu", (20, 11), 40, 0.0, False),
    ("cross_entropy", "leaky_relu", (1, 5), 40, 0.0, False),  # a hidden layer narrower than the threads
    ("cross_entropy", "softplus", (16, 8), 1, 0.0, False),  # one row per batch: fewer rows than threads
]


@pytest.mark.parametrize(("loss", "act", "widths", "batch", "dropout", "weighted"), CASES)
def test_column_split_trains_what_the_row_split_trains(
    split, rng, two_threads, loss, act, widths, batch, dropout, weighted
):
    """Two epochs with shuffling, Adam, dropout masks and sample weights: the same weights,
    losses and metrics in float64, to rounding."""
    X, ys, sw = _data(rng)
    sw = sw if weighted else None
    rows_w, rows_h = _train(False, split, X, ys[loss], sw, loss, act, widths, batch, np.float64, dropout)
    cols_w, cols_h = _train(True, split, X, ys[loss], sw, loss, act, widths, batch, np.float64, dropout)
    np.testing.assert_allclose(cols_w, rows_w, rtol=1e-10, atol=1e-12)
    for key in rows_h:
        np.testing.assert_allclose(cols_h[key], rows_h[key], rtol=1e-10)


def test_column_split_more_blocks_than_threads(split, rng, two_threads):
    """200 input features and a hidden layer of 300 units: with narrowed blocks the layer
    is cut into blocks of 120 columns and the first layer's weight gradient into blocks of
    80 features; with even blocks the layer into 4 even blocks (``even_blocks``) and the
    features into one block a thread. Either trains what the row split trains, in
    float64, to rounding."""
    X = rng.standard_normal((90, 200))
    y = rng.integers(0, 3, 90)
    args = (X, y, None, "cross_entropy", "relu", (300, 24), 40, np.float64, 0.1)
    rows_w, _ = _train(False, split, *args)
    cols_w, _ = _train(True, split, *args)
    np.testing.assert_allclose(cols_w, rows_w, rtol=1e-10, atol=1e-12)
    sizes = np.array([200, 300, 24, 3])
    narrow = _config.NARROW_BLOCKS
    assert fbplan.column_widths(sizes, 40, 2, 8).tolist() == ([120, 0, 0] if narrow else [-4, 0, 0])
    assert fbplan.input_width(sizes, 40, 2, 8) == (80 if narrow else 0)


def test_column_split_float32_close_to_row_split(split, rng, two_threads):
    X, ys, _ = _data(rng)
    X = X.astype(np.float32)
    args = (X, ys["cross_entropy"], None, "cross_entropy", "relu", (64, 32), 30, np.float32, 0.1)
    rows_w, rows_h = _train(False, split, *args)
    cols_w, cols_h = _train(True, split, *args)
    # float32 sums in another order, amplified by Adam's normalised steps (m / sqrt(v) is
    # about sign(g) where g is near zero). Measured over OpenBLAS's SkylakeX, Haswell and
    # Sandybridge kernels, with even and with narrowed column blocks (benchmarks/
    # measure_blas_spread.py, re-run for the narrowed blocks): weights 3.3e-5 apart at most
    # (a 3x margin to atol 1e-4 for weights of size ~0.3), epoch losses 3.9e-7 relative (26x).
    # Exactness is the float64 test's job, above.
    np.testing.assert_allclose(cols_w, rows_w, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(cols_h["loss"], rows_h["loss"], rtol=1e-5)


def test_column_split_step_is_the_gradient(split, rng, two_threads):
    """One full-batch SGD step with lr 1 in the column split moves the weights by exactly
    minus ``loss_and_gradients`` (which test_gradients.py checks by finite differences)."""
    X, ys, _ = _data(rng, n=24)
    y = ys["cross_entropy"]
    split(True)
    model = fb.Sequential(
        [fb.Dense(20, activation="tanh"), fb.Dense(10, activation="relu"), fb.Dense(3)],
        loss="cross_entropy", optimizer=fb.SGD(1.0), seed=0, dtype=np.float64,
    )  # fmt: skip
    model.build(X.shape[1])
    before = model.get_weights()
    _, grads = model.loss_and_gradients(X, y)
    model.fit(X, y, epochs=1, batch_size=len(X), shuffle=False, verbose=0)
    for w0, w1, g in zip(before, model.get_weights(), grads):
        np.testing.assert_allclose(w0 - w1, g, rtol=1e-12, atol=1e-14)


def test_column_split_learns_digits_like_the_row_split(split, two_threads):
    """A real task in float32 at batch 16: both splits reach the same held-out accuracy."""
    datasets = pytest.importorskip("sklearn.datasets")
    X, y = datasets.load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    accs = []
    for columns in (False, True):
        split(columns)
        model = fb.Sequential([fb.Dense(256, activation="relu"), fb.Dense(10)], loss="cross_entropy", seed=0)
        model.fit(X[:1400], y[:1400], epochs=8, batch_size=16, verbose=0)
        accs.append(float((model.predict(X[1400:]).argmax(1) == y[1400:]).mean()))
    assert accs[1] > 0.85
    assert abs(accs[0] - accs[1]) < 0.01


@pytest.mark.parametrize(
    ("sizes", "rows", "threads", "expected"),
    [
        ((784, 512, 256, 10), 32, 2, True),  # mnist_b32
        ((784, 512, 256, 10), 64, 2, True),
        ((784, 512, 256, 10), 128, 2, True),  # 64 rows a thread, 535k parameters
        ((784, 512, 256, 10), 256, 2, False),  # 128 rows a thread: the row split
        ((784, 1024, 1024, 10), 256, 2, True),  # 128 rows, a layer 1024 wide
        ((784, 1024, 1024, 10), 1024, 2, False),  # wide_b1024
        ((784, 256, 10), 128, 2, False),  # 64 rows a thread, 203k parameters
        ((784, 512, 256, 10), 128, 8, True),  # 16 rows a thread
        ((784, 512, 256, 10), 32, 1, False),  # one thread: no split at all
        ((64, 128, 64, 10), 32, 2, False),  # hidden layers too narrow to split
        ((64, 300, 10), 32, 2, True),
        ((784, 10), 8, 2, False),  # no hidden layer
    ],
)
def test_column_split_choice(sizes, rows, threads, expected, monkeypatch):
    monkeypatch.setattr(_config, "NARROW_BLOCKS", False)  # a BLAS without a small-matrix path
    assert fbplan.column_split(np.array(sizes), rows, threads) is expected
    assert _config.COLUMN_SPLIT_ROWS > 0 and _config.COLUMN_SPLIT_MIN_WIDTH > 0
    assert _config.COLUMN_SPLIT_LARGE_PARAMS > 0


@pytest.mark.parametrize(
    ("sizes", "rows", "threads", "itemsize", "expected"),
    [
        ((784, 512, 256, 10), 32, 2, 4, [32, 48, 0]),  # mnist_b32: 16 blocks, then 6
        ((784, 512, 256, 10), 32, 1, 4, [32, 48, 0]),  # the same blocks on one thread
        ((784, 512, 256, 10), 32, 2, 8, [32, 56, 0]),  # float64: multiples of 8
        ((784, 512, 256, 10), 64, 2, 4, [16, 16, 0]),
        ((784, 512, 256, 10), 128, 2, 4, [-4, 0, 0]),  # 8 columns: too narrow; 4 even blocks
        ((784, 512, 256, 10), 32, 16, 4, [32, 0, 0]),  # 6 blocks < 16 threads: even split
        ((64, 300, 10), 32, 2, 4, [-4, 0]),  # within the bound already: 4 even blocks
        ((784, 10), 8, 2, 4, [0]),  # no hidden layer
    ],
)
def test_column_widths(sizes, rows, threads, itemsize, expected, monkeypatch):
    monkeypatch.setattr(_config, "NARROW_BLOCKS", True)
    got = fbplan.column_widths(np.array(sizes), rows, threads, itemsize)
    assert got.tolist() == expected
    monkeypatch.setattr(_config, "NARROW_BLOCKS", False)  # no small-matrix path: only even_blocks
    got = fbplan.column_widths(np.array(sizes), rows, threads, itemsize)
    assert got.tolist() == [-fbplan.even_blocks(n, threads) for n in sizes[1:-1]] + [0]


@pytest.mark.parametrize(
    ("n_out", "threads", "expected"),
    [
        (512, 2, 4),  # 4 blocks of 128, 2 a thread
        (256, 2, 0),  # two halves of 128: one even block a thread
        (300, 2, 4),  # 4 blocks of 75
        (1024, 2, 8),
        (1000, 3, 9),  # 9 blocks of 111-112
        (512, 1, 0),  # one thread: the row split's single block
        (512, 16, 0),  # 32 columns a thread already
    ],
)
def test_even_blocks(n_out, threads, expected):
    n = fbplan.even_blocks(n_out, threads)
    assert n == expected
    if n:  # a multiple of the threads, more than them, none wider than the bound
        assert n % threads == 0 and n > threads and -(-n_out // n) <= _config.COLUMN_BLOCK_MAX


def test_column_widths_stay_within_the_small_path(monkeypatch):
    """Every width the small-matrix rule picks (positive: even blocks are negative) is a
    multiple of 64 bytes, at least the minimum, keeps each of the layer's three products
    within OpenBLAS's small-matrix bounds, and leaves at least as many blocks as threads
    (more than one)."""
    monkeypatch.setattr(_config, "NARROW_BLOCKS", True)
    seen = seen_in = 0
    for n_in in (8, 64, 784, 3000):
        for n_out in (16, 100, 256, 512, 1024):
            for n_next in (3, 10, 64, 512):
                for rows in (1, 8, 16, 32, 64, 128, 256):
                    for threads in (1, 2, 3, 8):
                        for isz in (4, 8):
                            sizes = np.array([n_in, n_out, n_next])
                            w = int(fbplan.column_widths(sizes, rows, threads, isz)[0])
                            if w > 0:
                                seen += 1
                                assert w % (64 // isz) == 0 and w >= _config.SMALL_GEMM_MIN_WIDTH
                                assert rows * w * max(n_in, n_next) <= _config.SMALL_GEMM_MNK
                                assert n_next < _config.SMALL_GEMM_TN_K or rows * w <= _config.SMALL_GEMM_TN_MN
                                assert -(-n_out // w) >= max(2, threads)
                            # the input features' blocks: dW_0[r0:r1, :], rows x n_out x w
                            w = fbplan.input_width(sizes, rows, threads, isz)
                            if w:
                                seen_in += 1
                                assert w % (64 // isz) == 0 and w >= _config.SMALL_GEMM_MIN_WIDTH
                                assert rows * w * n_out <= _config.SMALL_GEMM_MNK
                                assert -(-n_in // w) >= max(2, threads)
    assert seen > 50 and seen_in > 50


def test_narrow_blocks_give_the_same_weights_on_any_thread_count(monkeypatch):
    """Where every hidden layer and the input features are cut into narrow blocks, the
    blocks depend on the shapes alone: one thread and two train the same bits (the row
    split's partials would not)."""
    monkeypatch.setattr(_config, "NARROW_BLOCKS", True)
    rng = np.random.default_rng(5)
    X = rng.standard_normal((160, 200))
    y = rng.integers(0, 40, 160)
    sizes = np.array([200, 256, 64, 40])
    assert fbplan.column_widths(sizes, 32, 2, 8).tolist() == [32, 32, 0]
    assert fbplan.input_width(sizes, 32, 2, 8) == 120  # blocks of 120 and 80 features
    weights = []
    for n in (1, 2):
        with thread_setting(n):
            model = fb.Sequential([fb.Dense(256, "relu"), fb.Dense(64, "tanh"), fb.Dense(40)], loss="cross_entropy",
                                  optimizer=fb.Adam(1e-2), seed=2, dtype=np.float64)  # fmt: skip
            model.fit(X, y, epochs=2, batch_size=32, verbose=0)
            ws = model._workspace
            assert ws["cols"] and ws["cwidth"].tolist() == [32, 32, 0] and ws["iwidth"] == 120
            weights.append(model.get_weights())
    for a, b in zip(*weights, strict=True):
        np.testing.assert_array_equal(a, b)


def test_small_gemm_path_follows_the_blas_kernel():
    """Narrow blocks are on where the kernels' OpenBLAS runs an AVX-512 kernel with the
    small-matrix path, and off on another (``OPENBLAS_CORETYPE=Haswell`` in a child)."""
    import os
    import subprocess
    import sys

    from fastbp import _threads

    archs = {str(getattr(c, "architecture", "")).lower() for c in _threads._numba_blas()}
    assert _threads.small_gemm_path() is bool(archs & _config.SMALL_GEMM_CORES)
    code = "from fastbp import _threads; print(_threads.small_gemm_path())"
    env = {**os.environ, "OPENBLAS_CORETYPE": "Haswell"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_gradient_buffer_rows_follow_the_split(split, rng, two_threads):
    """The column split keeps one gradient row, the row split one per row block; switching
    the split on the same model re-sizes the buffers and trains what a fresh model trains."""
    X, ys, _ = _data(rng, n=96)
    y = ys["cross_entropy"]

    def make():
        return fb.Sequential([fb.Dense(40, "relu"), fb.Dense(3)], loss="cross_entropy", optimizer=fb.SGD(0.05),
                             seed=1, dtype=np.float64)  # fmt: skip

    model = make()
    split(True)
    model.fit(X, y, epochs=1, batch_size=32, verbose=0)
    assert model._workspace["gpart"].shape[0] == 1
    split(False)
    model.fit(X, y, epochs=1, batch_size=32, verbose=0)
    assert model._workspace["gpart"].shape[0] == 2  # two 16-row blocks
    reference = make()
    split(True)
    reference.fit(X, y, epochs=1, batch_size=32, verbose=0)
    split(False)
    reference._workspace = None  # fresh buffers, as a new process would have
    reference.fit(X, y, epochs=1, batch_size=32, verbose=0)
    for w, r in zip(model.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_array_equal(w, r)
    model.fit(X, y, epochs=1, batch_size=8, verbose=0)
    assert model._workspace["gpart"].shape[0] == 1  # 8 rows: a single 16-row block at most


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("ta", "tb"), [(False, False), (True, False), (False, True), (True, True)])
def test_gemm_on_strided_views_equals_numpy(rng, dtype, ta, tb):
    """c = op(a) @ op(b), every operand a column block of a wider matrix (row stride longer
    than its width); nothing outside c's view is written."""

    def view(rows, cols):
        parent = rng.standard_normal((rows + 3, cols + 5)).astype(dtype)
        return parent[2 : 2 + rows, 3 : 3 + cols]

    a = view(5, 7) if ta else view(7, 5)  # op(a): 7 x 5
    b = view(9, 5) if tb else view(5, 9)  # op(b): 5 x 9
    big = np.full((12, 15), 7.0, dtype)
    c = big[3:10, 4:13]  # 7 x 9, row stride 15
    gemm(a, ta, b, tb, c)
    expect = (a.T if ta else a) @ (b.T if tb else b)
    np.testing.assert_allclose(c, expect, rtol=1e-5 if dtype == np.float32 else 1e-13, atol=1e-5)
    outside = big.copy()
    outside[3:10, 4:13] = 7.0
    assert (outside == 7.0).all()


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_column_range_kernels_touch_only_their_columns(rng, act):
    code = ACTIVATIONS[act]
    z = rng.standard_normal((6, 10))
    b = rng.standard_normal(10)
    c0, c1 = 3, 8
    full_z, full_a = z.copy(), np.zeros_like(z)
    bias_act_(full_z, b, code, full_a)
    zc, ac = z.copy(), np.full_like(z, 5.0)
    bias_act_cols_(zc, b, code, ac, np.int64(c0), np.int64(c1))
    # to rounding: which elements fall in LLVM's vector body or its scalar remainder (which
    # may contract to FMA differently) depends on the range
    np.testing.assert_allclose(ac[:, c0:c1], full_a[:, c0:c1], rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(zc[:, c0:c1], full_z[:, c0:c1], rtol=1e-14, atol=1e-15)
    assert (ac[:, :c0] == 5.0).all() and (ac[:, c1:] == 5.0).all()
    np.testing.assert_array_equal(zc[:, :c0], z[:, :c0])

    g = rng.standard_normal((6, 10))
    zz = full_z if code in NEEDS_Z else full_a
    full_g = g.copy()
    act_backward_(full_g, full_a, zz, code)
    gc = g.copy()
    act_backward_cols_(gc, full_a, zz, code, np.int64(c0), np.int64(c1))
    np.testing.assert_allclose(gc[:, c0:c1], full_g[:, c0:c1], rtol=1e-14, atol=1e-15)
    np.testing.assert_array_equal(gc[:, :c0], g[:, :c0])
    np.testing.assert_array_equal(gc[:, c1:], g[:, c1:])


def test_dropout_column_blocks_draw_the_full_mask(rng):
    """Two column blocks together give the mask of the whole row, forward and backward."""
    v = rng.standard_normal((8, 12)) + 3.0
    key, rate = np.uint64(12345), 0.3
    full = v.copy()
    dropout_forward_(full, np.int64(5), np.int64(2), np.int64(4), key, rate)
    blocks = v.copy()
    for c0, c1 in ((0, 7), (7, 12)):
        dropout_forward_cols_(blocks, np.int64(5), np.int64(2), np.int64(4), key, rate, np.int64(c0), np.int64(c1))
    np.testing.assert_array_equal(blocks, full)
    assert 0 < (full == 0).sum() < full.size

    g = rng.standard_normal((8, 12))
    gf, af = g.copy(), full.copy()
    dropout_backward_(gf, af, np.int64(5), np.int64(2), np.int64(4), key, rate)
    gb, ab = g.copy(), full.copy()
    for c0, c1 in ((0, 5), (5, 12)):
        dropout_backward_cols_(gb, ab, np.int64(5), np.int64(2), np.int64(4), key, rate, np.int64(c0), np.int64(c1))
    np.testing.assert_array_equal(gb, gf)
    np.testing.assert_array_equal(ab, af)
