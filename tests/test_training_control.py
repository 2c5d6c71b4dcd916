"""Training control: validation, callbacks, early stopping, schedules, dropout, clipping,
sample and class weights, metrics, progress, divergence, interruption, diagnostics.

Each test checks the feature against an independent computation (NumPy, a second model
trained the plain way, or finite differences), so it fails if the feature breaks.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from helpers import net
from numpy.testing import assert_allclose, assert_array_equal

import fastbp as fb
from fastbp import _config
from fastbp.kernels import engine
from fastbp.kernels.dropout import keep_mask, step_key


def _blobs(n=120, d=5, k=3, seed=0, noise=1.0):
    rng = np.random.default_rng(seed)
    centers = 2.0 * rng.standard_normal((k, d))
    y = rng.integers(0, k, n)
    X = centers[y] + noise * rng.standard_normal((n, d))
    return X.astype(np.float32), y


def _net(k=3, hidden=16, seed=0, dropout=0.0, loss="cross_entropy", optimizer=None, dtype="float32", **kw):
    return net((hidden,), "tanh", k, loss, dropout=dropout, optimizer=optimizer or fb.Adam(lr=0.01), seed=seed,
               dtype=dtype, **kw)  # fmt: skip


# ============================================================================ validation
def test_validation_split_takes_the_last_rows_like_keras():
    X, y = _blobs()
    a = _net()
    ha = a.fit(X, y, epochs=3, batch_size=16, validation_split=0.25, verbose=0)
    b = _net()
    hb = b.fit(X[:90], y[:90], epochs=3, batch_size=16, validation_data=(X[90:], y[90:]), verbose=0)
    assert ha.history == hb.history
    assert ha.history["val_loss"][-1] == pytest.approx(a.evaluate(X[90:], y[90:]), rel=1e-12)


def test_history_holds_loss_metrics_and_validation_per_epoch():
    X, y = _blobs()
    model = _net(metrics=["accuracy", "mae"])
    h = model.fit(X, y, epochs=4, batch_size=32, validation_data=(X[:40], y[:40]), verbose=0)
    assert set(h.history) == {"loss", "accuracy", "mae", "val_loss", "val_accuracy", "val_mae", "lr"}
    assert all(len(v) == 4 for v in h.history.values())
    assert h.epoch == [0, 1, 2, 3]
    assert model.history is h
    assert h.history["val_accuracy"][-1] == pytest.approx(np.mean(model.predict(X[:40]).argmax(1) == y[:40]))


@pytest.mark.parametrize(
    "loss,metrics", [("cross_entropy", ["accuracy", "mae", "mse"]), ("binary_cross_entropy", ["accuracy", "mae"]),
                     ("mse", ["mae", "mse"]), ("poisson", ["mae"])],
)  # fmt: skip
def test_training_metrics_from_the_kernel_match_numpy(loss, metrics):
    """With a learning rate too small to move a float32 weight, the metrics accumulated
    inside the compiled epoch equal the NumPy metrics of predict on the same rows."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((64, 4)).astype(np.float32)
    k = 3
    y = {
        "cross_entropy": rng.integers(0, k, 64),
        "binary_cross_entropy": (rng.random((64, k)) > 0.5).astype(np.float32),
        "mse": rng.standard_normal((64, k)),
        "poisson": rng.poisson(2.0, (64, k)).astype(np.float32),
    }[loss]
    model = _net(k=k, loss=loss, optimizer=fb.SGD(lr=1e-30), metrics=metrics)
    model.build(4)
    before = model.get_weights()
    h = model.fit(X, y, epochs=1, batch_size=16, verbose=0)
    for w0, w1 in zip(before, model.get_weights()):
        assert_allclose(w0, w1, rtol=1e-7, atol=1e-25)  # zero biases move by ~1e-31 at most
    pred = model.predict(X)
    yi, yf = model._check_y(y, 64)
    for name in metrics:
        assert h.history[name][0] == pytest.approx(fb.METRICS[name](pred, yi, yf, model._loss), rel=1e-5, abs=1e-7)
    assert h.history["loss"][0] == pytest.approx(model.evaluate(X, y), rel=1e-5)


def test_validation_data_errors_leave_the_model_unchanged():
    X, y = _blobs()
    model = _net()
    model.fit(X, y, epochs=1, verbose=0)
    before = model.get_weights()
    with pytest.raises(ValueError, match=r"validation_data\[0\]"):
        model.fit(X, y, validation_data=(X[:, :2], y[:10]), verbose=0)
    with pytest.raises(ValueError, match="validation_data must be a tuple"):
        model.fit(X, y, validation_data=X, verbose=0)
    with pytest.raises(ValueError, match="validation_split"):
        model.fit(X, y, validation_split=1.0, verbose=0)
    with pytest.raises(ValueError, match="validation_split"):
        model.fit(X[:1], y[:1], validation_split=0.5, verbose=0)
    for w0, w1 in zip(before, model.get_weights()):
        assert_array_equal(w0, w1)


# ============================================================================ callbacks
class Recorder(fb.Callback):
    def __init__(self, stop_at=None):
        self.calls = []
        self.stop_at = stop_at

    def on_train_begin(self, logs=None):
        self.calls.append("train_begin")

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(f"begin {epoch}")

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(f"end {epoch} {sorted(logs)}")
        if epoch == self.stop_at:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        self.calls.append("train_end")


def test_callback_protocol_order_and_stop_training():
    X, y = _blobs()
    rec = Recorder(stop_at=1)
    model = _net()
    h = model.fit(X, y, epochs=5, verbose=0, callbacks=[rec], initial_epoch=0)
    assert rec.calls == ["train_begin", "begin 0", "end 0 ['loss', 'lr']", "begin 1", "end 1 ['loss', 'lr']",
                         "train_end"]  # fmt: skip
    assert h.epoch == [0, 1] and rec.model is model


def test_callbacks_must_be_callbacks():
    X, y = _blobs()
    with pytest.raises(TypeError, match="Callback"):
        _net().fit(X, y, callbacks=[lambda e: 0.1], verbose=0)


def test_early_stopping_stops_and_restores_best_weights():
    """A wide net on few noisy points overfits: val_loss turns up and training stops
    `patience` epochs after its minimum, with the minimum's weights."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((60, 10)).astype(np.float32)
    y = (X[:, 0] + 0.8 * rng.standard_normal(60) > 0).astype(np.int64)
    Xv = rng.standard_normal((200, 10)).astype(np.float32)
    yv = (Xv[:, 0] + 0.8 * rng.standard_normal(200) > 0).astype(np.int64)
    model = fb.Sequential([fb.Dense(256, activation="relu"), fb.Dense(2)], loss="cross_entropy",
                          optimizer=fb.Adam(lr=0.01), seed=0)  # fmt: skip
    stop = fb.EarlyStopping(monitor="val_loss", patience=5)
    h = model.fit(X, y, epochs=300, batch_size=16, validation_data=(Xv, yv), callbacks=[stop], verbose=0)
    val = h.history["val_loss"]
    best = int(np.argmin(val))
    assert stop.stopped_epoch is not None and stop.stopped_epoch < 299
    assert len(val) == best + 1 + 5  # stopped after `patience` epochs without improvement, as Keras
    assert stop.best_epoch == best
    assert min(val) < val[-1]  # it did overfit
    assert model.evaluate(Xv, yv) == pytest.approx(val[best], rel=1e-6)


def test_early_stopping_without_restore_keeps_last_weights():
    X, y = _blobs()
    model = _net()
    stop = fb.EarlyStopping(monitor="loss", patience=0, min_delta=10.0, restore_best_weights=False)
    h = model.fit(X, y, epochs=10, callbacks=[stop], verbose=0)
    assert len(h.epoch) == 2  # epoch 0 sets the best; epoch 1 fails to beat it by 10
    assert model.evaluate(X, y) < h.history["loss"][0]


def test_model_checkpoint_keeps_the_best_model(tmp_path):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((60, 10)).astype(np.float32)
    y = (X[:, 0] + 0.8 * rng.standard_normal(60) > 0).astype(np.int64)
    Xv = rng.standard_normal((100, 10)).astype(np.float32)
    yv = (Xv[:, 0] > 0).astype(np.int64)
    model = fb.Sequential([fb.Dense(128, activation="relu"), fb.Dense(2)], loss="cross_entropy",
                          optimizer=fb.Adam(lr=0.01), seed=0)  # fmt: skip
    best = fb.ModelCheckpoint(tmp_path / "best.fbp")
    every = fb.ModelCheckpoint(str(tmp_path / "m-{epoch:02d}-{val_loss:.3f}.fbp"), save_best_only=False)
    h = model.fit(X, y, epochs=25, batch_size=16, validation_data=(Xv, yv), callbacks=[best, every], verbose=0)
    val = h.history["val_loss"]
    assert fb.load(tmp_path / "best.fbp").evaluate(Xv, yv) == pytest.approx(min(val), rel=1e-6)
    assert len(best.saved) == sum(v < min(val[:i], default=np.inf) for i, v in enumerate(val))
    assert len(every.saved) == 25 and every.saved[0].endswith(f"m-01-{val[0]:.3f}.fbp")
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("m-")) == ["best.fbp"]  # no temp files


def test_early_stopping_on_missing_monitor_is_a_clear_error():
    X, y = _blobs()
    with pytest.raises(KeyError, match="val_loss.*validation_data"):
        _net().fit(X, y, epochs=2, callbacks=[fb.EarlyStopping()], verbose=0)


# ============================================================================ schedules
def test_schedule_values():
    assert [fb.StepDecay(1.0, factor=0.5, every=2)(e) for e in range(5)] == [1.0, 1.0, 0.5, 0.5, 0.25]
    assert fb.ExponentialDecay(2.0, rate=0.5)(3) == 0.25
    cos = fb.CosineDecay(1.0, epochs=10, min_lr=0.1, warmup_epochs=2)
    assert [cos(e) for e in (0, 1)] == [0.5, 1.0]
    assert cos(2) == pytest.approx(1.0) and cos(6) == pytest.approx(0.55) and cos(10) == pytest.approx(0.1)
    assert cos(50) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="warmup_epochs"):
        fb.CosineDecay(1.0, epochs=3, warmup_epochs=3)


@pytest.mark.parametrize(
    "schedule",
    [fb.StepDecay(0.1, factor=0.5, every=2), fb.ExponentialDecay(0.1, 0.7),
     fb.CosineDecay(0.1, epochs=5, warmup_epochs=1), lambda epoch: 0.1 / (1 + epoch)],
    ids=["step", "exponential", "cosine", "callable"],
)  # fmt: skip
def test_schedule_sets_the_learning_rate_each_epoch(schedule):
    """history['lr'] follows the schedule, and training with it equals training epoch by
    epoch with those rates set by hand."""
    X, y = _blobs()
    a = _net(optimizer=fb.SGD(lr=schedule, momentum=0.9))
    h = a.fit(X, y, epochs=5, verbose=0)
    expected = [schedule(e) for e in range(5)]
    assert h.history["lr"] == pytest.approx(expected)
    b = _net(optimizer=fb.SGD(lr=1.0, momentum=0.9))
    for lr in expected:
        b.optimizer.lr = lr
        b.fit(X, y, epochs=1, verbose=0)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        assert_array_equal(wa, wb)


def test_learning_rate_scheduler_callback_and_reduce_on_plateau():
    X, y = _blobs()
    model = _net(optimizer=fb.SGD(lr=0.1))
    h = model.fit(X, y, epochs=3, verbose=0, callbacks=[fb.LearningRateScheduler(lambda e, lr: lr * 0.5)])
    assert h.history["lr"] == pytest.approx([0.05, 0.025, 0.0125])
    # loss never improves by min_delta=10: the rate is cut every `patience` epochs (Keras' rules:
    # the cooldown epoch counts toward the next wait), never below min_lr
    model = _net(optimizer=fb.SGD(lr=0.1))
    plateau = fb.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=2, min_delta=10.0, cooldown=1, min_lr=0.02)
    h = model.fit(X, y, epochs=9, verbose=0, callbacks=[plateau])
    assert h.history["lr"] == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.02, 0.02])
    with pytest.raises(TypeError, match="float optimizer lr"):
        _net(optimizer=fb.SGD(lr=fb.StepDecay(0.1))).fit(X, y, verbose=0, callbacks=[fb.ReduceLROnPlateau()])


def test_bad_schedule_value_is_a_clear_error():
    X, y = _blobs()
    model = _net(optimizer=fb.SGD(lr=lambda e: -1.0))
    model.build(5)
    before = model.get_weights()
    with pytest.raises(ValueError, match="lr schedule value at epoch 0"):
        model.fit(X, y, verbose=0)
    for w0, w1 in zip(before, model.get_weights()):
        assert_array_equal(w0, w1)


def test_continuing_fit_with_initial_epoch_equals_one_longer_fit():
    X, y = _blobs()
    sched = fb.CosineDecay(0.05, epochs=6, warmup_epochs=2)
    a = _net(dropout=0.3, optimizer=fb.Adam(lr=sched, clipnorm=1.0))
    ha = a.fit(X, y, epochs=6, batch_size=16, verbose=0)
    b = _net(dropout=0.3, optimizer=fb.Adam(lr=sched, clipnorm=1.0))
    b.fit(X, y, epochs=2, batch_size=16, verbose=0)
    hb = b.fit(X, y, epochs=6, batch_size=16, initial_epoch=2, verbose=0)
    assert hb.epoch == [2, 3, 4, 5]
    assert hb.history["loss"] == ha.history["loss"][2:]
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        assert_array_equal(wa, wb)


# ============================================================================ dropout
def test_dropout_is_off_in_predict_and_evaluate():
    X, y = _blobs()
    model = _net(dropout=0.5)
    model.fit(X, y, epochs=3, verbose=0)
    plain = _net()
    plain.set_weights(model.get_weights())
    assert_array_equal(model.predict(X), plain.predict(X))
    assert model.evaluate(X, y) == plain.evaluate(X, y)
    assert_array_equal(model.predict(X), model.predict(X))


def test_dropout_changes_training():
    X, y = _blobs()
    a, b = _net(dropout=0.5), _net()
    a.fit(X, y, epochs=1, verbose=0)
    b.fit(X, y, epochs=1, verbose=0)
    assert not np.allclose(a.get_weights()[0], b.get_weights()[0])


def test_input_dropout_keeps_the_right_fraction_in_training():
    """Dropout(0.3) on the input, X = 1, W = 0: one SGD step moves W_j by an amount
    proportional to how many rows kept input j, so W measures the kept fraction."""
    n, d, rate, lr = 1000, 50, 0.3, 0.5
    model = fb.Sequential([fb.Dropout(rate), fb.Dense(1)], loss="mse", optimizer=fb.SGD(lr=lr), seed=0,
                          dtype="float64")  # fmt: skip
    model.build(d)
    model.set_weights([np.zeros((d, 1)), np.zeros(1)])
    model.fit(np.ones((n, d)), np.ones((n, 1)), epochs=1, batch_size=n, verbose=0)
    # dL/dW_j = -2/n * sum_i m_ij with m_ij in {0, 1/(1-rate)}: W_j = 2 lr kept_j / (n (1-rate))
    kept = model.get_weights()[0][:, 0] * (1 - rate) / (2 * lr)
    sigma = np.sqrt(rate * (1 - rate) / (n * d))
    assert abs(kept.mean() - (1 - rate)) < 5 * sigma
    assert 0.6 < kept.min() and kept.max() < 0.8  # every column dropped about 30% of its rows


def test_dropout_mask_statistics():
    key = step_key(np.uint64(7), 1)
    m = keep_mask(2000, 100, 1, 3, key, 0.25)
    assert abs(m.mean() - 0.75) < 5 * np.sqrt(0.25 * 0.75 / m.size)
    other = keep_mask(2000, 100, 2, 3, key, 0.25)  # another slot: independent mask
    assert abs((m == other).mean() - (0.75**2 + 0.25**2)) < 0.01
    assert keep_mask(10, 10, 1, 3, key, 0.0).all()  # rate 0 keeps everything


def test_dropout_gradient_step_matches_numpy_with_the_same_masks():
    """One full-batch SGD step with hidden dropout equals a NumPy step that applies the
    same masks (inverted dropout in forward and backward)."""
    rng = np.random.default_rng(0)
    n, d, h, k, rate, lr = 40, 6, 8, 2, 0.4, 0.1
    X = rng.standard_normal((n, d))
    y = rng.standard_normal((n, k))
    model = fb.Sequential([fb.Dense(h, activation="tanh"), fb.Dropout(rate), fb.Dense(k)], loss="mse",
                          optimizer=fb.SGD(lr=lr), seed=3, dtype="float64")  # fmt: skip
    model.build(d)
    W0, b0, W1, b1 = model.get_weights()
    rng_copy = copy.deepcopy(model._rng)
    seed = np.uint64(rng_copy.integers(2**63))  # what fit draws after the (unused) order
    model.fit(X, y, epochs=1, batch_size=n, shuffle=False, verbose=0)
    mask = keep_mask(n, h, 1, 3, step_key(seed, 1), rate) / (1 - rate)
    a1 = np.tanh(X @ W0 + b0)
    a1m = a1 * mask
    out = a1m @ W1 + b1
    g = 2 * (out - y) / (n * k)
    dW1, db1 = a1m.T @ g, g.sum(0)
    g1 = (g @ W1.T) * mask * (1 - a1**2)
    dW0, db0 = X.T @ g1, g1.sum(0)
    for got, w, dw in zip(model.get_weights(), (W0, b0, W1, b1), (dW0, db0, dW1, db1)):
        assert_allclose(got, w - lr * dw, rtol=1e-12, atol=1e-14)


def test_dropout_is_deterministic_and_thread_count_independent():
    X, y = _blobs(n=256)
    results = []
    for threads in (1, 2, 1):
        fb.set_num_threads(threads)
        try:
            model = _net(dropout=0.5, dtype="float64")
            model.fit(X, y, epochs=2, batch_size=64, verbose=0)
        finally:
            fb.set_num_threads(_config_threads())
        results.append(model.get_weights())
    for a, b in zip(results[0], results[2]):
        assert_array_equal(a, b)
    for a, b in zip(results[0], results[1]):
        assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def _config_threads():
    import numba

    return numba.config.NUMBA_NUM_THREADS


def test_model_may_not_end_with_dropout():
    with pytest.raises(ValueError, match="ends with Dropout"):
        fb.Sequential([fb.Dense(3), fb.Dropout(0.5)], loss="mse").build(2)
    with pytest.raises(ValueError, match="rate"):
        fb.Dropout(1.0)


# ============================================================================ clipping
@pytest.mark.parametrize("clipnorm", [0.01, 1e6])
def test_clipnorm_bounds_the_global_norm_of_a_step(clipnorm):
    X, y = _blobs()
    lr = 1.0
    model = _net(optimizer=fb.SGD(lr=lr, clipnorm=clipnorm), dtype="float64")
    model.build(5)
    _, grads = model.loss_and_gradients(X, y)
    gnorm = np.sqrt(sum((g**2).sum() for g in grads))
    before = model.get_weights()
    model.fit(X, y, epochs=1, batch_size=len(X), verbose=0)
    steps = [(b - a) / lr for a, b in zip(model.get_weights(), before)]
    snorm = np.sqrt(sum((s**2).sum() for s in steps))
    if gnorm > clipnorm:
        assert snorm == pytest.approx(clipnorm, rel=1e-4)
    else:
        assert snorm == pytest.approx(gnorm, rel=1e-10)
    for s, g in zip(steps, grads):  # same direction as the gradient
        assert_allclose(s * (gnorm / snorm), g, rtol=1e-6, atol=1e-12)


# ============================================================================ weights
def test_zero_sample_weight_removes_rows_exactly():
    rng = np.random.default_rng(0)
    X, y = _blobs(n=50)
    sw = rng.uniform(0.5, 2.0, 50)
    drop = rng.random(50) < 0.3
    sw[drop] = 0.0
    model = _net(dtype="float64")
    model.build(5)
    loss_w, g_w = model.loss_and_gradients(X, y, sample_weight=sw)
    keep = ~drop
    sub = _net(dtype="float64")
    sub.set_weights(model.get_weights())
    # the same weighted mean over the kept rows only
    loss_k, g_k = sub.loss_and_gradients(X[keep], y[keep], sample_weight=sw[keep])
    assert loss_w == pytest.approx(loss_k, rel=1e-12)
    for a, b in zip(g_w, g_k):
        assert_allclose(a, b, rtol=1e-10, atol=1e-14)
    # unit weights on the kept rows = plain training on them: one full-batch step
    sw01 = keep.astype(float)
    a = _net(dtype="float64", optimizer=fb.SGD(lr=0.1))
    a.fit(X, y, epochs=1, batch_size=50, sample_weight=sw01, verbose=0)
    b = _net(dtype="float64", optimizer=fb.SGD(lr=0.1))
    b.fit(X[keep], y[keep], epochs=1, batch_size=50, verbose=0)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        assert_allclose(wa, wb, rtol=1e-10, atol=1e-13)


def test_class_weight_equals_the_equivalent_sample_weight():
    X, y = _blobs()
    cw = {0: 2.0, 2: 0.5}
    a = _net()
    ha = a.fit(X, y, epochs=3, batch_size=16, class_weight=cw, verbose=0)
    b = _net()
    hb = b.fit(X, y, epochs=3, batch_size=16, sample_weight=np.array([2.0, 1.0, 0.5])[y], verbose=0)
    assert ha.history == hb.history
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        assert_array_equal(wa, wb)


def test_weighted_evaluate_and_bad_weights():
    X, y = _blobs()
    model = _net()
    model.fit(X, y, epochs=1, verbose=0)
    sw = np.r_[np.ones(60), np.zeros(60)]
    assert model.evaluate(X, y, sample_weight=sw) == pytest.approx(model.evaluate(X[:60], y[:60]), rel=1e-6)
    before = model.get_weights()
    for bad, match in [(np.ones(3), "shape"), (-np.ones(120), ">= 0"), (np.zeros(120), "all zeros"),
                       (np.full(120, np.nan), "NaN"), (np.array(["a"] * 120), "real numbers")]:  # fmt: skip
        with pytest.raises((ValueError, TypeError), match=match):
            model.fit(X, y, sample_weight=bad, verbose=0)
    for bad, err in [({5: 1.0}, ValueError), ({0: -1.0}, ValueError), ([1.0, 2.0], TypeError)]:
        with pytest.raises(err, match="class_weight"):
            model.fit(X, y, class_weight=bad, verbose=0)
    for w0, w1 in zip(before, model.get_weights()):
        assert_array_equal(w0, w1)


# ============================================================================ faults
def test_divergence_raises_and_keeps_the_last_finite_weights():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 4)).astype(np.float32)
    y = 1e3 * rng.standard_normal((64, 1)).astype(np.float32)
    model = fb.Sequential([fb.Dense(32, activation="relu"), fb.Dense(1)], loss="mse", optimizer=fb.SGD(lr=10.0),
                          seed=0)  # fmt: skip
    with pytest.raises(fb.TrainingDivergedError, match=r"epoch \d+, batch \d+") as info:
        model.fit(X, y, epochs=50, batch_size=8, verbose=0)
    err = info.value
    assert isinstance(err, ArithmeticError) and err.epoch >= 0 and 0 <= err.batch < 8
    assert len(err.history.epoch) == err.epoch
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert model._step == err.epoch * 8 + err.batch  # the bad batch was not applied


def test_keyboard_interrupt_keeps_the_last_completed_step(monkeypatch):
    """Ctrl-C is honoured between compiled segments: the model holds exactly the steps
    completed before it, as if trained on those batches alone."""
    X, y = _blobs(n=96)
    monkeypatch.setattr(_config, "SEGMENT_SECONDS", 0.0)  # one batch per segment
    real = engine.train_batches
    calls = []

    def interrupted(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(engine, "train_batches", interrupted)
    model = _net()
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, y, epochs=1, batch_size=16, shuffle=False, verbose=1)
    monkeypatch.setattr(engine, "train_batches", real)
    assert model._step == 2
    ref = _net()
    ref.fit(X[:32], y[:32], epochs=1, batch_size=16, shuffle=False, verbose=0)
    for a, b in zip(model.get_weights(), ref.get_weights()):
        assert_array_equal(a, b)
    model.fit(X, y, epochs=1, verbose=0)  # and it trains on


# ============================================================================ progress
def test_verbose_levels(capsys):
    X, y = _blobs()
    _net().fit(X, y, epochs=2, verbose=0)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    _net().fit(X, y, epochs=2, verbose=2, validation_split=0.2)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[1].startswith("epoch 2/2") and "val_loss" in lines[1]
    _net().fit(X, y, epochs=2, verbose=1)
    err = capsys.readouterr().err
    assert "epoch 1/2" in err and "epoch 2/2" in err and "batch" in err and "loss" in err


# ============================================================================ diagnostics
@pytest.mark.parametrize("act", sorted(fb.ACTIVATIONS))
def test_check_gradients_is_small_for_every_activation(act):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((15, 3))
    y = rng.integers(0, 2, 15)
    model = fb.Sequential([fb.Dense(4, activation=act), fb.Dense(2)], loss="cross_entropy", seed=0)
    model.build(3)
    errors = fb.check_gradients(model, X, y)
    assert len(errors) == 4 and max(errors) < 1e-5


def test_check_gradients_catches_a_wrong_gradient(monkeypatch):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((15, 3)), rng.integers(0, 2, 15)
    model = fb.Sequential([fb.Dense(4, activation="tanh"), fb.Dense(2)], loss="cross_entropy", seed=0)
    model.build(3)
    real = fb.Sequential.loss_and_gradients

    def wrong(self, *args, **kw):
        loss, grads = real(self, *args, **kw)
        return loss, [g * 1.05 for g in grads]

    monkeypatch.setattr(fb.Sequential, "loss_and_gradients", wrong)
    assert min(fb.check_gradients(model, X, y)) > 0.01


def test_backprop_trace_factors_multiply_to_the_gradients():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3, 2))
    y = rng.uniform(0, 1, (3, 1))
    model = fb.Sequential([fb.Dense(2, activation="sigmoid"), fb.Dense(1, activation="sigmoid")], loss="mse",
                          seed=0, dtype="float64")  # fmt: skip
    model.build(2)
    trace = fb.backprop_trace(model, X, y)
    loss, grads = model.loss_and_gradients(X, y)
    assert trace.loss == pytest.approx(loss, rel=1e-12)
    for layer, dW, db in zip(trace.layers, grads[0::2], grads[1::2]):
        assert_allclose(layer.delta, layer.dC_da * layer.da_dz)
        assert_allclose(layer.da_dz, layer.a * (1 - layer.a), rtol=1e-12)  # sigmoid'
        assert_allclose(layer.dC_dW, dW, rtol=1e-12)
        assert_allclose(layer.dC_db, db, rtol=1e-12)
        assert layer.dz_dW is layer.a_prev
    # dC/da of the output by finite differences of the cost in the output
    out = trace.layers[-1].a
    h = 1e-6
    num = np.zeros_like(out)
    for i in range(out.shape[0]):
        for sign in (1, -1):
            o = out.copy()
            o[i, 0] += sign * h
            num[i, 0] += sign * np.mean((o - y) ** 2) / (2 * h)
    assert_allclose(trace.layers[-1].dC_da, num, rtol=1e-6)
    text = repr(trace)
    assert "dC/da (cost)" in text and "da/dz (activation)" in text and "layer 1" in text


def test_summary_lists_layers_and_parameter_counts():
    model = fb.Sequential([fb.Dense(64, activation="relu", input_dim=784), fb.Dropout(0.2), fb.Dense(10)],
                          loss="cross_entropy")  # fmt: skip
    text = model.summary(print_fn=None)
    assert "dense_1 (Dense), relu" in text and "(None, 64)" in text and "50,240" in text
    assert "dropout_1 (Dropout), rate 0.2" in text and "650" in text
    assert "Total params: 50,890" in text
    model.build(784)
    assert model.count_params() == 50_890
