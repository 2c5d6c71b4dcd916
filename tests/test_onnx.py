"""ONNX export: onnxruntime computes what ``model.predict`` does, for every activation, every
loss and both dtypes; clear errors for unbuilt models, bad opsets and a missing onnx."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import fastbp as fb
from fastbp.onnx_export import GELU_OPSET, export_onnx

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TOL = {"float32": {"rtol": 1e-5, "atol": 1e-6}, "float64": {"rtol": 1e-12, "atol": 1e-12}}
REGRESSION_LOSSES = {"mse", "huber", "poisson"}


def run_onnx(path, X: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = sess.run(["output"], {"input": X})
    return out


def trained(act: str, loss: str, dtype: str, k: int = 3) -> tuple[fb.Sequential, np.ndarray]:
    rng = np.random.default_rng(1)
    X = rng.normal(scale=2.0, size=(64, 4)).astype(dtype)  # both signs, past the kinks
    model = fb.Sequential([fb.Dense(7, activation=act), fb.Dense(5, activation=act), fb.Dense(k)], loss=loss,
                          seed=3, dtype=dtype)  # fmt: skip
    if loss == "cross_entropy":
        y = rng.integers(0, k, size=64)
    elif loss == "binary_cross_entropy":
        y = (rng.random((64, k)) > 0.5).astype(dtype)
    elif loss == "poisson":
        y = rng.poisson(2.0, size=(64, k)).astype(dtype)
    else:
        y = rng.normal(size=(64, k)).astype(dtype)
    model.fit(X, y, epochs=2, batch_size=16, verbose=0)
    return model, X


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("act", sorted(fb.ACTIVATIONS))
def test_every_activation_matches_predict(tmp_path, act, dtype):
    model, X = trained(act, "cross_entropy", dtype)
    path = tmp_path / "m.onnx"
    proto = export_onnx(model, path)
    out = run_onnx(path, X)
    assert out.dtype == np.dtype(dtype) and out.shape == (64, 3)
    # float64 gelu evaluates erf in float32 (onnxruntime has no double Erf): float32 tolerance
    np.testing.assert_allclose(out, model.predict(X), **TOL["float32" if act == "gelu" else dtype])
    assert proto.graph.input[0].name == "input" and proto.graph.output[0].name == "output"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss", sorted(fb.LOSSES))
def test_every_loss_link_matches_predict(tmp_path, loss, dtype):
    model, X = trained("tanh", loss, dtype)
    path = tmp_path / "m.onnx"
    export_onnx(model, path)
    np.testing.assert_allclose(run_onnx(path, X), model.predict(X), **TOL[dtype])


def test_gelu_operator_from_opset_20(tmp_path):
    if onnx.defs.onnx_opset_version() < GELU_OPSET:
        pytest.skip("the installed onnx has no Gelu operator")
    model, X = trained("gelu", "mse", "float32")
    path = tmp_path / "m.onnx"
    proto = export_onnx(model, path, opset=GELU_OPSET)
    assert "Gelu" in {n.op_type for n in proto.graph.node} and "Erf" not in {n.op_type for n in proto.graph.node}
    try:
        out = run_onnx(path, X)
    except Exception as exc:  # an onnxruntime too old for opset 20 / without a double Gelu kernel
        pytest.skip(f"onnxruntime cannot run Gelu-{GELU_OPSET}: {exc}")
    np.testing.assert_allclose(out, model.predict(X), **TOL["float32"])
    # float64 keeps the Erf form (onnxruntime has no double Gelu), with erf in float32
    model64, X64 = trained("gelu", "mse", "float64")
    ops = [n.op_type for n in export_onnx(model64, path, opset=GELU_OPSET).graph.node]
    assert "Gelu" not in ops and ops.count("Erf") == 2 and ops.count("Cast") == 4
    np.testing.assert_allclose(run_onnx(path, X64), model64.predict(X64), **TOL["float32"])


def test_dynamic_batch_and_file_metadata(tmp_path):
    model, X = trained("relu", "cross_entropy", "float32")
    path = tmp_path / "m.onnx"
    export_onnx(model, path)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and dims[1].dim_value == 4
    assert proto.producer_name == "fastbp" and proto.opset_import[0].version == 17
    assert [n.op_type for n in proto.graph.node] == ["MatMul", "Add", "Relu"] * 2 + ["MatMul", "Add", "Softmax"]
    for rows in (1, 5, 64):
        np.testing.assert_allclose(run_onnx(path, X[:rows]), model.predict(X[:rows]), rtol=1e-5, atol=1e-6)


def test_dropout_layers_are_identity(tmp_path):
    if not hasattr(fb, "Dropout"):
        pytest.skip("fastbp has no Dropout layer yet")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(32, 4)).astype(np.float32)
    model = fb.Sequential([fb.Dense(8, activation="relu"), fb.Dropout(0.5), fb.Dense(2)], loss="cross_entropy",
                          seed=0)  # fmt: skip
    model.fit(X, (X[:, 0] > 0).astype(int), epochs=1, verbose=0)
    path = tmp_path / "m.onnx"
    proto = export_onnx(model, path)
    assert "Dropout" not in {n.op_type for n in proto.graph.node}
    np.testing.assert_allclose(run_onnx(path, X), model.predict(X), rtol=1e-5, atol=1e-6)


def test_errors(tmp_path, monkeypatch):
    model = fb.Sequential([fb.Dense(3)], loss="mse")
    with pytest.raises(ValueError, match=r"model is not built: fit it or call model.build\(n_features\)"):
        export_onnx(model, tmp_path / "m.onnx")
    model.build(2)
    with pytest.raises(ValueError, match=r"opset must be between 13 and \d+ .*got 12"):
        export_onnx(model, tmp_path / "m.onnx", opset=12)
    with pytest.raises(TypeError, match=r"opset must be an int, got str"):
        export_onnx(model, tmp_path / "m.onnx", opset="17")
    with pytest.raises(TypeError, match=r"model must be a fastbp Sequential"):
        export_onnx("model", tmp_path / "m.onnx")
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with pytest.raises(ImportError, match=r"pip install fastbp\[onnx\]"):
        export_onnx(model, tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_normalization_layer_takes_raw_features(tmp_path, dtype):
    """A leading Normalization exports as Sub + Div with predict's constants: the ONNX model
    takes the raw features too."""
    rng = np.random.default_rng(4)
    X = rng.normal(1000.0, 300.0, (64, 3)).astype(dtype)  # raw scale, as in a CSV
    X[:, 1] = 5.0  # variance 0: centred only
    y = (X[:, 0] > 1000).astype(int)
    model = fb.Sequential([fb.Normalization().adapt(X), fb.Dense(6, "tanh"), fb.Dense(2)], loss="cross_entropy",
                          seed=0, dtype=dtype)  # fmt: skip
    model.fit(X, y, epochs=3, batch_size=16, verbose=0)
    path = tmp_path / "norm.onnx"
    proto = export_onnx(model, path)
    assert [n.op_type for n in proto.graph.node][:3] == ["Sub", "Div", "MatMul"]
    np.testing.assert_allclose(run_onnx(path, X), model.predict(X), **TOL[dtype])
