"""Model files: exact round trips (predictions, continued training, unbuilt models), the
documented format, atomic writes, and clear errors for every kind of damaged or hostile file."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

import fastbp as fb
from fastbp.io import FORMAT_VERSION, ModelFileError, load, read_model, save_model

OPTIMIZERS = {
    "sgd": lambda: fb.SGD(lr=0.05),
    "sgd_nesterov": lambda: fb.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4),
    "adam": lambda: fb.Adam(lr=0.01),
    "adamw": lambda: fb.AdamW(lr=0.01),
    "rmsprop": lambda: fb.RMSprop(lr=0.01, momentum=0.5),
}


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(96, 5))
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1)
    return X, y


def make_model(optimizer: object = "adam", dtype: str = "float32", **kw) -> fb.Sequential:
    layers = [fb.Dense(8, activation="tanh"), fb.Dense(6, activation="relu", bias_init=0.1), fb.Dense(3)]
    return fb.Sequential(layers, loss="cross_entropy", optimizer=optimizer, seed=7, dtype=dtype, **kw)


def assert_same_state(a: fb.Sequential, b: fb.Sequential) -> None:
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        assert wa.dtype == wb.dtype and np.array_equal(wa, wb)
    assert np.array_equal(a._m, b._m) and np.array_equal(a._v, b._v)
    assert a._step == b._step
    assert a._rng.bit_generator.state == b._rng.bit_generator.state


@pytest.fixture
def saved(tmp_path: Path, data) -> Path:
    """A trained float32 Adam classifier saved to model.fbp."""
    model = make_model()
    model.fit(*data, epochs=2, batch_size=16, verbose=0)
    path = tmp_path / "model.fbp"
    model.save(path)
    return path


def entries(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """(meta, arrays) read with plain numpy + json, as the module docstring documents."""
    with np.load(path, allow_pickle=False) as f:
        meta = json.loads(f["meta"].tobytes().decode("utf-8"))
        arrays = {name: f[name] for name in f.files if name != "meta"}
    return meta, arrays


def rewrite(path: Path, meta: dict | None = None, arrays: dict | None = None, rehash: bool = False,
            meta_bytes: bytes | None = None) -> None:  # fmt: skip
    """Write an archive with the given parts (defaults: the file's own), for tampering tests."""
    old_meta, old_arrays = entries(path)
    meta = old_meta if meta is None else meta
    arrays = old_arrays if arrays is None else arrays
    if rehash:
        for name, arr in arrays.items():
            meta["arrays"][name]["sha256"] = hashlib.sha256(arr.tobytes()).hexdigest()
    raw = json.dumps(meta).encode() if meta_bytes is None else meta_bytes
    with open(path, "wb") as f:
        np.savez(f, meta=np.frombuffer(raw, dtype=np.uint8), **arrays)


# ----------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_round_trip_is_exact_and_training_continues_identically(tmp_path, data, dtype, opt):
    X, y = data
    model = make_model(OPTIMIZERS[opt](), dtype, metrics=["accuracy"])
    model.fit(X, y, epochs=2, batch_size=16, verbose=0)
    path = tmp_path / "m.fbp"
    model.save(path)
    loaded = load(path)

    assert isinstance(loaded, fb.Sequential) and loaded.dtype == np.dtype(dtype)
    assert type(loaded.optimizer) is type(model.optimizer)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert [layer.get_config() for layer in loaded] == [layer.get_config() for layer in model]
    assert (loaded.loss, loaded.seed, loaded.metrics) == (model.loss, model.seed, ["accuracy"])
    assert loaded.count_params() == model.count_params() and loaded.n_features == 5
    assert_same_state(model, loaded)
    assert np.array_equal(loaded.predict(X), model.predict(X))  # bit for bit
    assert loaded[0].w.base is not None  # layers are live views of the loaded theta
    # continuing: same weights, optimizer state, step count and shuffling
    h1 = model.fit(X, y, epochs=2, batch_size=16, verbose=0)
    h2 = loaded.fit(X, y, epochs=2, batch_size=16, verbose=0)
    assert h1.history["loss"] == h2.history["loss"]
    assert_same_state(model, loaded)


@pytest.mark.parametrize("input_dim", [None, 5])
def test_unbuilt_model_round_trips_as_configuration(tmp_path, data, input_dim):
    model = fb.Sequential([fb.Dense(4, activation="elu", input_dim=input_dim), fb.Dense(3)], loss="cross_entropy",
                          optimizer=fb.SGD(lr=0.1, momentum=0.5), seed=11, dtype="float64")  # fmt: skip
    path = tmp_path / "unbuilt.fbp"
    model.save(path)
    meta, arrays = entries(path)
    assert meta["n_features"] is None and arrays == {} and meta["arrays"] == {}
    loaded = load(path)
    assert not loaded.built and loaded.n_features == input_dim and loaded.count_params() == 0
    # the same seed and generator state: the first fit initialises and trains identically
    model.fit(*data, epochs=1, verbose=0)
    loaded.fit(*data, epochs=1, verbose=0)
    assert_same_state(model, loaded)


def test_pickle_round_trip_continues_identically(data):
    X, y = data
    model = make_model(fb.RMSprop(lr=0.01))
    model.fit(X, y, epochs=1, verbose=0)
    clone = pickle.loads(pickle.dumps(model))
    assert_same_state(model, clone)
    model.fit(X, y, epochs=2, verbose=0)
    clone.fit(X, y, epochs=2, verbose=0)
    assert_same_state(model, clone)
    assert np.array_equal(model.predict(X), clone.predict(X))


def test_extra_and_metadata_are_returned(tmp_path, data):
    model = make_model()
    model.fit(*data, epochs=1, verbose=0)
    extra = {"classes": ["a", "b", "c"], "feature_names": ["x0", "x1", "x2", "x3", "x4"], "n": 3}
    path = tmp_path / "m.fbp"
    save_model(model, path, extra=extra)
    mf = read_model(path)
    assert mf.extra == extra and mf.meta["format_version"] == FORMAT_VERSION
    assert mf.meta["fastbp_version"] == fb.__version__
    assert np.array_equal(mf.model.predict(data[0]), model.predict(data[0]))


def test_format_is_readable_with_plain_numpy_and_json(saved):
    meta, arrays = entries(saved)
    model = load(saved)
    assert meta["format"] == "fastbp-model" and meta["format_version"] == 2
    assert meta["layers"][0] == {"class": "Dense", "config": model[0].get_config()}
    assert meta["optimizer"]["class"] == "Adam" and meta["dtype"] == "float32" and meta["step"] == model._step
    assert set(arrays) == {"theta", "m", "v"}
    for name, arr in arrays.items():
        rec = meta["arrays"][name]
        assert rec["shape"] == [model.count_params()] and rec["dtype"] == "float32"
        assert rec["sha256"] == hashlib.sha256(arr.tobytes()).hexdigest()
    # theta: all weights (W as (n_in, n_out), C order), then all biases
    W0, b0, W1, b1, W2, b2 = model.get_weights()
    assert np.array_equal(arrays["theta"], np.concatenate([W0.ravel(), W1.ravel(), W2.ravel(), b0, b1, b2]))
    with zipfile.ZipFile(saved) as zf:  # stored, not deflated, and no pickled entries
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}


def test_save_writes_exactly_the_given_path(tmp_path):
    model = make_model()
    for name in ("model.fbp", "model", "model.npz"):
        model.save(str(tmp_path / name))
    assert sorted(os.listdir(tmp_path)) == ["model", "model.fbp", "model.npz"]


# ----------------------------------------------------------------------------- atomic writes
@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_failed_save_leaves_the_old_file_and_no_temp_file(saved, monkeypatch, error):
    before = saved.read_bytes()
    real_savez = np.savez

    def failing_savez(f, **arrays):
        f.write(b"PK\x03\x04 half an archive")
        raise error

    monkeypatch.setattr(np, "savez", failing_savez)
    model = make_model(fb.SGD())
    with pytest.raises(type(error)):
        model.save(saved)
    monkeypatch.setattr(np, "savez", real_savez)
    assert saved.read_bytes() == before
    assert os.listdir(saved.parent) == ["model.fbp"]
    load(saved)  # still a valid model


def test_failed_save_to_a_new_path_leaves_nothing(tmp_path, monkeypatch):
    def failing_fsync(fd):
        raise OSError("fsync failed")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="fsync failed"):
        make_model().save(tmp_path / "new.fbp")
    assert os.listdir(tmp_path) == []


def test_save_rejects_bad_arguments(tmp_path):
    model = make_model()
    with pytest.raises(TypeError, match="extra must be JSON-serialisable"):
        save_model(model, tmp_path / "m.fbp", extra={"f": object()})
    with pytest.raises(TypeError, match="extra must be a dict with str keys"):
        save_model(model, tmp_path / "m.fbp", extra=["not", "a", "dict"])
    with pytest.raises(TypeError, match="model must be a fastbp Sequential"):
        save_model("model", tmp_path / "m.fbp")
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------------- damaged files
def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "nope.fbp")


@pytest.mark.parametrize("content", [b"", b"hello, world\n", b"PK\x05\x06"])
def test_not_a_zip(tmp_path, content):
    path = tmp_path / "junk.fbp"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"junk\.fbp: not a fastbp model file \(not a ZIP archive"):
        load(path)


def test_a_plain_npy_or_npz_is_not_a_model(tmp_path):
    npy = tmp_path / "a.npy"
    np.save(npy, np.arange(3.0))
    with pytest.raises(ValueError, match="not a ZIP archive"):
        load(npy)
    npz = tmp_path / "a.npz"
    np.savez(npz, X=np.arange(3.0))
    with pytest.raises(ValueError, match=r"a\.npz: unexpected entry 'X\.npy'"):
        load(npz)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.99])
def test_truncated_file(saved, keep):
    raw = saved.read_bytes()
    saved.write_bytes(raw[: int(len(raw) * keep)])
    with pytest.raises(ModelFileError, match=str(saved.name)) as info:
        load(saved)
    assert isinstance(info.value, ValueError)


def test_flipped_byte_in_an_array_fails_the_crc(saved):
    meta, arrays = entries(saved)
    raw = bytearray(saved.read_bytes())
    at = raw.find(arrays["theta"].tobytes()[:64]) + 20
    raw[at] ^= 0x10
    saved.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"model\.fbp: not a readable fastbp model file \(BadZipFile: Bad CRC-32"):
        load(saved)


def test_changed_array_fails_the_checksum(saved):
    """A rewritten archive (valid CRCs) whose theta differs from the one 'meta' recorded."""
    meta, arrays = entries(saved)
    arrays["theta"] = arrays["theta"].copy()
    arrays["theta"][3] += 1
    rewrite(saved, arrays=arrays)
    with pytest.raises(ValueError, match=r"array 'theta' is corrupted \(its SHA-256 does not match"):
        load(saved)


def test_newer_format_version(saved):
    meta, _ = entries(saved)
    meta["format_version"] = 3
    rewrite(saved, meta=meta)
    with pytest.raises(ValueError, match=r"written by a newer fastbp, format version 3 > 2"):
        load(saved)


def tampered(meta: dict, change: str) -> dict:
    if change == "layer_class":
        meta["layers"][0]["class"] = "os.system"
    elif change == "negative_units":
        meta["layers"][1]["config"]["units"] = -6
    elif change == "units_vs_arrays":
        meta["layers"][1]["config"]["units"] = 7
        meta["layers"][2]["config"]["input_dim"] = 7
    elif change == "input_dim_chain":
        meta["layers"][2]["config"]["input_dim"] = 9
    elif change == "unknown_kwarg":
        meta["layers"][0]["config"]["callback"] = "os.system"
    elif change == "optimizer_class":
        meta["optimizer"]["class"] = "builtins.eval"
    elif change == "optimizer_state":
        meta["optimizer"] = {"class": "SGD", "config": {"lr": 0.1}}  # no m/v, but the file has them
    elif change == "bad_lr":
        meta["optimizer"]["config"]["lr"] = -1
    elif change == "loss":
        meta["loss"] = "hinge"
    elif change == "dtype":
        meta["dtype"] = "float64"
    elif change == "step_type":
        meta["step"] = "12"
    elif change == "missing_field":
        del meta["rng_state"]
    elif change == "rng":
        meta["rng_state"]["bit_generator"] = "MyGenerator"
    elif change == "rng_state":
        meta["rng_state"]["state"] = "nope"
    elif change == "format":
        meta["format"] = "keras"
    elif change == "arrays_record":
        meta["arrays"]["theta"]["shape"] = [3]
    return meta


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("layer_class", r"layers\[0\] has class 'os.system', which is not allowed; expected one of \[.*'Dense'"),
        ("negative_units", r"layers\[1\] \(Dense\) has an invalid config: units must be >= 1, got -6"),
        ("units_vs_arrays", r"array 'theta' must be float32 of shape \[\d+\] for this architecture"),
        ("input_dim_chain", r"layers\[2\] has input_dim=9, but 6 values flow into it"),
        ("unknown_kwarg", r"layers\[0\] \(Dense\) has an invalid config: .*unexpected keyword argument 'callback'"),
        ("optimizer_class", r"optimizer has class 'builtins.eval', which is not allowed"),
        ("optimizer_state", r"array 'm' must be float32 of shape \[0\] for this architecture and optimizer"),
        ("bad_lr", r"optimizer \(Adam\) has an invalid config: lr must be in"),
        ("loss", r"invalid model configuration: unknown loss 'hinge'"),
        ("dtype", r"array 'theta' must be float64"),
        ("step_type", r"'meta' field 'step' must be an int, got str"),
        ("missing_field", r"'meta' has no 'rng_state' field"),
        ("rng", r"rng_state has bit generator 'MyGenerator'"),
        ("rng_state", r"invalid rng_state"),
        ("format", r"not a fastbp model file \(format 'keras'"),
        ("arrays_record", r"array 'theta' must be float32 of shape \[\d+\]"),
    ],
)
def test_tampered_metadata_is_rejected_before_building(saved, change, message):
    meta, _ = entries(saved)
    rewrite(saved, meta=tampered(meta, change))
    with pytest.raises(ModelFileError, match=message) as info:
        load(saved)
    assert str(info.value).startswith(str(saved))


def test_shapes_must_match_records_and_architecture(saved):
    meta, arrays = entries(saved)
    arrays["theta"] = arrays["theta"][:-1]  # one parameter short, checksum updated to match
    rewrite(saved, arrays=arrays, rehash=True)
    with pytest.raises(ValueError, match=r"array 'theta' must be float32 of shape \(\d+,\) .* got float32 of shape"):
        load(saved)
    meta, arrays = entries(saved)
    arrays["v"] = np.full_like(arrays["v"], np.nan)
    arrays["theta"] = np.concatenate([arrays["theta"], [0.0]]).astype(np.float32)
    rewrite(saved, arrays=arrays, rehash=True)
    with pytest.raises(ValueError, match=r"array 'v' contains NaN or infinity"):
        load(saved)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", r"the 'meta' entry is not valid UTF-8 JSON"),
        (b"\xff\xfe", r"the 'meta' entry is not valid UTF-8 JSON"),
        (b"[1, 2]", r"the 'meta' entry must be a JSON object, got list"),
        (b'{"format": "fastbp-model", "format_version": NaN}', r"NaN is not allowed"),
    ],
)
def test_bad_json(saved, raw, message):
    rewrite(saved, meta_bytes=raw)
    with pytest.raises(ValueError, match=message):
        load(saved)


def test_missing_and_unexpected_entries(saved):
    meta, arrays = entries(saved)
    del arrays["v"]
    rewrite(saved, arrays=arrays)
    with pytest.raises(ValueError, match=r"missing \['v'\], unexpected \[\]"):
        load(saved)
    with open(saved, "wb") as f:
        np.savez(f, theta=np.zeros(3, np.float32))
    with pytest.raises(ValueError, match=r"no 'meta' entry"):
        load(saved)


def test_compressed_archive_is_rejected(saved):
    meta, arrays = entries(saved)
    with open(saved, "wb") as f:
        np.savez_compressed(f, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
    with pytest.raises(ValueError, match=r"entry 'meta\.npy' is compressed"):
        load(saved)


UNPICKLED: list[str] = []


class Trap:
    """Records any attempt to unpickle it."""

    def __reduce__(self):
        return (UNPICKLED.append, ("unpickled!",))


@pytest.mark.parametrize("entry", ["theta", "meta"])
def test_pickled_object_array_is_never_unpickled(saved, entry):
    meta, arrays = entries(saved)
    trap = np.array([Trap(), 1.0], dtype=object)
    parts = {"meta": np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays, entry: trap}
    buf = io.BytesIO()
    np.savez(buf, **parts)  # np.savez pickles object arrays
    saved.write_bytes(buf.getvalue())
    UNPICKLED.clear()
    with pytest.raises(ValueError, match=rf"entry '{entry}\.npy' holds object data \(possibly pickled objects\)"):
        load(saved)
    assert UNPICKLED == []


def test_lr_schedule_round_trips(tmp_path, data):
    if not hasattr(fb, "StepDecay"):
        pytest.skip("fastbp has no lr schedules yet")
    sched = fb.StepDecay(0.1, factor=0.5, every=1)
    model = make_model(fb.SGD(lr=sched, momentum=0.9))
    model.fit(*data, epochs=2, verbose=0)
    path = tmp_path / "m.fbp"
    model.save(path)
    loaded = load(path)
    assert loaded.optimizer.lr == sched and type(loaded.optimizer.lr) is type(sched)
    model.fit(*data, epochs=2, verbose=0)
    loaded.fit(*data, epochs=2, verbose=0)
    assert_same_state(model, loaded)
    model.optimizer.lr = lambda epoch: 0.1  # not a registered schedule: refused, nothing written
    with pytest.raises(TypeError, match="cannot save an lr schedule of class function"):
        model.save(tmp_path / "other.fbp")
    assert not (tmp_path / "other.fbp").exists()


# ---------------------------------------------------------------------- versions and Normalization
DATA = Path(__file__).with_name("data")


def test_version_1_file_still_loads():
    """``data/model_v1.fbp`` was written by fastbp before format version 2 (a 4-6-2 tanh net
    with dropout, Adam, 5 epochs): it loads, predicts as it did (to float32 rounding: the
    GEMM kernel may differ from the one that wrote it) and trains on."""
    mf = read_model(DATA / "model_v1.fbp")
    assert mf.meta["format_version"] == 1
    assert mf.extra["feature_names"] == ["a", "b", "c", "d"]
    model = mf.model
    assert [type(layer).__name__ for layer in model.layers] == ["Dense", "Dropout", "Dense"]
    expected = np.load(DATA / "model_v1_expected.npz")
    # the probabilities were computed on the SkylakeX OpenBLAS kernel; another kernel's GEMM
    # rounds differently (measured 2.2e-7 relative under Sandybridge): float32 rounding
    np.testing.assert_allclose(model.predict(expected["X"]), expected["proba"], rtol=1e-6, atol=1e-7)
    step = model._step
    model.fit(expected["X"], [0, 1] * 4, epochs=1, batch_size=4, verbose=0)
    assert model._step == step + 2


def test_normalization_round_trips(tmp_path):
    rng = np.random.default_rng(3)
    X = rng.normal(50.0, 20.0, (80, 3))
    X[:, 2] = 7.0  # a constant column: centred only
    y = (X[:, 0] > 50).astype(int)
    model = fb.Sequential([fb.Normalization().adapt(X), fb.Dense(5, "relu"), fb.Dense(2)], loss="cross_entropy",
                          dtype="float64", seed=0)  # fmt: skip
    model.fit(X, y, epochs=3, batch_size=16, verbose=0)
    path = tmp_path / "norm.fbp"
    model.save(path)
    meta, _ = entries(path)
    assert meta["layers"][0] == {"class": "Normalization", "config": model[0].get_config()}
    loaded = load(path)
    np.testing.assert_array_equal(loaded[0].mean, model[0].mean)  # JSON keeps float64 exactly
    np.testing.assert_array_equal(loaded[0].variance, model[0].variance)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_normalization_with_the_wrong_width_is_refused(saved):
    meta, _ = entries(saved)
    n = meta["n_features"]
    meta["layers"].insert(0, {"class": "Normalization", "config": {"mean": [0.0] * (n + 1),
                                                                    "variance": [1.0] * (n + 1)}})  # fmt: skip
    rewrite(saved, meta=meta)
    with pytest.raises(ValueError, match=rf"layers\[0\] has input_dim={n + 1}, but {n} values flow into it"):
        load(saved)
