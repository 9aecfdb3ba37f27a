"""save/load round trips; tampered, truncated and hostile model files."""

import json

import numpy as np
import pytest
import sympy as sp

import symbp as sb
from symbp import z


def _model():
    act = sb.Activation("softsign", z / (1 + sp.Abs(z)))
    net = sb.Network([sb.Input(5), sb.Dense(4, act), sb.Dense(3, sb.softmax)], cost=sb.log_likelihood)
    return net.compile(seed=1)


def test_round_trip(tmp_path):
    model = _model()
    jpath, npath = model.save(tmp_path / "m")
    assert jpath.suffix == ".json" and npath.suffix == ".npz"
    loaded = sb.load(tmp_path / "m")
    X = np.random.default_rng(0).normal(size=(7, 5))
    np.testing.assert_array_equal(model.feedforward(X), loaded.feedforward(X))
    assert [l.activation.name for l in loaded.network.layers[1:]] == ["softsign", "softmax"]
    assert loaded.network.cost.name == "log_likelihood"
    assert sb.load(tmp_path / "m.json").dtype == model.dtype  # the .json path works too


def test_round_trip_builtins_float32_and_piecewise(tmp_path):
    leaky = sb.Activation.parse("leaky", "where(z > 0, z, 0.01*z)")
    net = sb.Network([3, 4, 2], activation=[leaky, sb.sigmoid], cost=sb.cross_entropy)
    model = net.compile(dtype="float32", seed=2)
    model.save(tmp_path / "p")
    loaded = sb.load(tmp_path / "p")
    X = np.random.default_rng(1).normal(size=(6, 3))
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(model.feedforward(X), loaded.feedforward(X))


def test_tampered_parameters_are_refused(tmp_path):
    _model().save(tmp_path / "m")
    npz = tmp_path / "m.npz"
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0xFF
    npz.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum"):
        sb.load(tmp_path / "m")


def test_truncated_json_is_refused(tmp_path):
    _model().save(tmp_path / "m")
    j = tmp_path / "m.json"
    j.write_text(j.read_text()[:40])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        sb.load(tmp_path / "m")


@pytest.mark.parametrize("field,value,match", [
    ("cost", {"name": "x", "expr": "__import__('os').system('touch CANARY')"}, "not allowed"),
    ("cost", {"name": "x", "expr": "a.__class__"}, "attribute"),
    ("format", "pickle", "format"),
    ("dtype", "object", "dtype"),
])
def test_hostile_model_files_run_nothing(tmp_path, monkeypatch, field, value, match):
    monkeypatch.chdir(tmp_path)
    _model().save(tmp_path / "m")
    j = tmp_path / "m.json"
    doc = json.loads(j.read_text())
    doc[field] = value
    j.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=match):
        sb.load(tmp_path / "m")
    assert not (tmp_path / "CANARY").exists()


def test_hostile_activation_text(tmp_path):
    _model().save(tmp_path / "m")
    j = tmp_path / "m.json"
    doc = json.loads(j.read_text())
    doc["layers"][1]["activation"]["expr"] = "open('CANARY', 'w')"
    j.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="open"):
        sb.load(tmp_path / "m")


def test_parameter_file_with_pickled_object_is_refused(tmp_path):
    import hashlib
    import io

    _model().save(tmp_path / "m")
    buf = io.BytesIO()
    np.savez(buf, W1=np.array([object()], dtype=object))
    (tmp_path / "m.npz").write_bytes(buf.getvalue())
    j = tmp_path / "m.json"
    doc = json.loads(j.read_text())
    doc["params"]["sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
    j.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="unreadable parameter archive|parameter arrays"):
        sb.load(tmp_path / "m")


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        sb.load(tmp_path / "nothing")
    _model().save(tmp_path / "m")
    (tmp_path / "m.npz").unlink()
    with pytest.raises(FileNotFoundError, match="parameter file"):
        sb.load(tmp_path / "m")
