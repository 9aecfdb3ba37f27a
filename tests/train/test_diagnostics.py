"""Diagnostics of learning (chapter 5): the speed of learning equals ‖∂C/∂b‖ from ``gradients``, the records made
during training equal values recomputed from the saved parameters by a NumPy forward and backward pass written
here, saturation matches a hand computation, and the plots write PNG files.  Small nets, synthetic data."""

import json

import numpy as np
import pytest
import sympy as sp

import symbp as sb
from symbp.train import diagnostics as dg

PNG = b"\x89PNG\r\n\x1a\n"


def sig(z):
    return 1.0 / (1.0 + np.exp(-z))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    X = rng.random((120, 16)) * 3.0  # large inputs: some units saturate
    return X, rng.integers(0, 3, 120)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(4).standard_normal((60, 1, 6, 6))


@pytest.fixture(scope="module")
def dense_model():
    return sb.Network([16, 7, 5, 3], activation=sb.sigmoid, cost=sb.cross_entropy).compile(seed=0, init="large")


@pytest.fixture(scope="module")
def conv_model():
    net = sb.Network([sb.Input((1, 6, 6)), sb.Conv2D(2, (3, 3), sb.relu), sb.MaxPool((2, 2)),
                      sb.Dense(4, sb.sigmoid), sb.Dropout(0.3), sb.Dense(3, sb.softmax)], cost=sb.log_likelihood)
    return net.compile(seed=1)


def test_learning_speed_is_the_norm_of_the_bias_gradients(dense_model, conv_model, data, images):
    X, y = data
    for model, rows in ((dense_model, X), (conv_model, images)):
        speeds = dg.learning_speed(model, rows[:50], y[:50])
        grads = model.gradients(rows[:50], y[:50])
        assert len(speeds) == len(grads) == len(model.params)
        assert speeds == [float(np.linalg.norm(db)) for _, db in grads]
        assert all(s > 0 for s in speeds)


def numpy_diagnostics(params, X, Y):
    """Speed, ‖∂C/∂w‖, saturation, weight mean/std and cost of a sigmoid cross-entropy net, by hand."""
    a, zs, acts = X, [], [X]
    for W, b in params:
        z = a @ W.T + b
        a = sig(z)
        zs.append(z)
        acts.append(a)
    n = X.shape[0]
    delta = a - Y  # BP1 for cross-entropy with a sigmoid output
    speed, grad_w = [None] * len(params), [None] * len(params)
    for l in range(len(params) - 1, -1, -1):
        speed[l] = float(np.linalg.norm(delta.mean(axis=0)))
        grad_w[l] = float(np.linalg.norm(delta.T @ acts[l] / n))
        if l:
            s = sig(zs[l - 1])
            delta = (delta @ params[l][0]) * s * (1 - s)
    sat = [float(np.mean(sig(z) * (1 - sig(z)) < 0.01 * 0.25)) for z in zs]
    return {"speed": speed, "grad_w_norm": grad_w, "saturation": sat,
            "w_mean": [float(W.mean()) for W, _ in params], "w_std": [float(W.std()) for W, _ in params]}


def test_records_during_training_equal_a_recomputation_from_saved_parameters(dense_model, data):
    X, y = data
    model = dense_model
    model.init_params("large", seed=0)
    rec = dg.make_recorder(model, (X, y), sample=40, seed=5)
    rows = dg.sample_rows(len(X), 40, 5)
    assert len(rows) == len(set(rows)) == 40
    records, saved = [rec.record(0)], [model.params]

    def callback(epoch, hist):
        records.append(rec.record(epoch))
        saved.append(model.params)
        hist.diagnostics = records  # as fit(..., diagnostics=True) will keep them

    hist = model.fit((X, y), epochs=4, batch_size=10, eta=2.0, seed=0, progress=False, callback=callback)
    assert [r["epoch"] for r in records] == [0, 1, 2, 3, 4]
    json.loads(json.dumps(records))  # JSON-able as they are
    Y = np.eye(3)[y[rows]]
    saturated = 0.0
    for record, params in zip(records, saved):
        want = numpy_diagnostics(params, X[rows], Y)
        assert record["layers"] == [1, 2, 3] and record["names"] == ["7:sigmoid", "5:sigmoid", "3:sigmoid"]
        assert record["rows"] == 40 and record["seconds"] > 0
        for key, value in want.items():
            np.testing.assert_allclose(record[key], value, rtol=1e-9, atol=1e-13, err_msg=key)
        saturated = max(saturated, *record["saturation"])
    assert saturated > 0.05  # the check covered saturated units, not only zeros
    assert records[0]["speed"] != records[-1]["speed"]  # recorded as it learned
    # what the recorder computes for saved parameters is what it recorded, and the model is left as it was
    now = model.params
    again = rec.compute(saved[2])
    assert {k: again[k] for k in again} == {k: v for k, v in records[2].items() if k not in ("epoch", "seconds")}
    assert all(np.array_equal(p, q) for pair, qair in zip(now, model.params) for p, q in zip(pair, qair))
    assert hist.diagnostics is records and len(hist.epochs) == 4


def test_saturation_by_hand():
    """σ′ of sigmoid below 0.0025 (|z| > 5.99), relu's z ≤ 0, softmax's a(1 − a) below 0.0025."""
    net = sb.Network([sb.Input(2), sb.Dense(3, sb.sigmoid), sb.Dense(2, sb.relu), sb.Dense(2, sb.softmax)],
                     cost=sb.log_likelihood)
    model = net.compile(backend="numpy", seed=0)
    W1, b1 = np.array([[10.0, 0], [0, 1], [0, 0]]), np.array([0.0, 0, -8])
    W2, b2 = np.array([[1.0, 0, 0], [0, -1, 0]]), np.array([0.0, 0.6])
    W3, b3 = np.array([[8.0, 0], [0, 0]]), np.zeros(2)
    model.set_params([(W1, b1), (W2, b2), (W3, b3)])
    X = np.array([[1.0, 0], [0, 1]])
    # layer 1: z = [10, 0, -8] and [0, 1, -8]: 10 and -8 (twice) saturate, 3 of 6
    # layer 2: z = [σ(10), -0.5 + 0.6] and [0.5, -σ(1) + 0.6 = -0.131]: one of 4 is ≤ 0
    # layer 3: z = [8σ(10), 0] gives a = [0.99966, 0.00034] (both saturated); [4, 0] gives [0.982, 0.018] (neither)
    assert dg.saturation(model, X) == [0.5, 0.25, 0.5]
    record = dg.Diagnostics(model, X, np.array([0, 1])).record(7)
    assert record["saturation"] == [0.5, 0.25, 0.5] and record["epoch"] == 7
    zs = dg.weighted_inputs(model, X)
    np.testing.assert_allclose(zs[0][0], X @ W1.T + b1)
    np.testing.assert_allclose(zs[2][1], model.feedforward(X), rtol=1e-12)


def test_the_maximum_of_sigma_prime():
    assert dg._unit(sb.sigmoid).maximum == pytest.approx(0.25)
    for act in (sb.tanh, sb.relu, sb.linear, sb.softplus):
        assert dg._unit(act).maximum == pytest.approx(1.0), act.name
    assert dg._unit(sb.softmax).maximum == 0.25
    assert dg._unit(sb.Activation("cubic", sb.z**3 + sb.z)).maximum is None  # σ′ = 3z² + 1 is unbounded
    bump = dg._unit(sb.Activation("bump", sb.z * sp.exp(-sb.z**2 / 2)))  # σ′ = (1 − z²)e^(−z²/2), max 1 at 0
    assert bump.maximum == pytest.approx(1.0)
    z = np.array([[0.0, 1.0, 2.0, 5.0]])  # |σ′| = 1, 0, 0.41, 9e-5: a negative σ′ of size 0.41 is not saturated
    assert bump.saturation(z, bump.activate(z), 0.01) == 0.5
    zv = np.linspace(-3, 3, 7).reshape(1, -1)
    assert dg._unit(sb.linear).saturation(zv, zv, 0.01) == 0.0  # constant σ′: never saturated


def test_conv_nets_and_the_sample(conv_model, data, images):
    y = data[1][:60]
    rec = dg.make_recorder(conv_model, (images, y), sample=30, seed=None)  # the first 30 rows, as the book
    r = rec.record(1)
    assert r["layers"] == [1, 3, 5] and r["names"][0] == "conv2x3x3:relu"
    W1, b1 = conv_model.params[0]
    # the feature maps' z by the layer's own reference (σ = linear) and by the faster contraction agree
    z_ref = dg._reference_z(conv_model.network.layers[1], (W1, b1), images[:30])
    z_fast = dg._conv_z(conv_model.network.layers[1], (W1, b1), images[:30])
    np.testing.assert_allclose(z_fast.reshape(30, -1), z_ref.reshape(30, -1), rtol=1e-12, atol=1e-14)
    assert r["saturation"][0] == float(np.mean(z_ref <= 0))  # relu: the units with z ≤ 0
    assert r["speed"] == dg.learning_speed(conv_model, images[:30], y[:30])
    assert r["w_std"][0] == float(W1.std())
    assert len(dg.sample_rows(10, 1000)) == 10 and list(dg.sample_rows(10, 3, None)) == [0, 1, 2]
    with pytest.raises(ValueError, match="sample"):
        dg.sample_rows(10, 0)


def test_plots_write_png_files(tmp_path, dense_model, conv_model, data):
    X, y = data
    rec = dg.make_recorder(dense_model, (X, y), sample=30)
    records = [rec.record(e) for e in range(3)]

    class Hist:
        diagnostics = records

    written = [dg.plot_learning_speed(Hist(), tmp_path / "speed"), dg.plot_saturation(records, tmp_path / "sat.png"),
               dg.plot_diagnostics({"diagnostics": records}, tmp_path / "all.png"),
               dg.plot_weight_tiles(dense_model, tmp_path / "tiles.png"),  # 7 tiles of 4×4 (16 inputs)
               dg.plot_weight_tiles(conv_model, tmp_path / "kernels.png")]  # 2 kernels of 3×3
    assert written[0] == tmp_path / "speed.png"
    for path in written:
        data_ = path.read_bytes()
        assert data_.startswith(PNG) and len(data_) > 2000, path
    with pytest.raises(ValueError, match="records"):
        dg.plot_learning_speed([], tmp_path / "none.png")
    odd = sb.Network([5, 3, 2], activation=sb.sigmoid, cost=sb.quadratic).compile(backend="numpy", seed=0)
    with pytest.raises(ValueError, match="square tiles"):
        dg.plot_weight_tiles(odd, tmp_path / "odd.png")


def test_fit_with_diagnostics_records_epoch_zero_and_every_epoch(data):
    X, Y = data
    model = sb.Network([16, 7, 5, 3], activation=sb.sigmoid, cost=sb.cross_entropy).compile(seed=1)
    params = []
    hist = model.fit((X, Y), epochs=3, batch_size=10, eta=0.5, diagnostics=True, seed=0,
                     callback=lambda epoch, h: params.append(model.params))
    assert [r["epoch"] for r in hist.diagnostics] == [0, 1, 2, 3] and len(hist.diagnostics_seconds) == 4
    assert model.learning_speed(X, Y) == dg.learning_speed(model, X, Y)
    recorder = dg.make_recorder(model, (X, Y), sample=1000, seed=0)
    for rec, p in zip(hist.diagnostics[1:], params):
        again = recorder.compute(p)
        np.testing.assert_allclose(rec["speed"], again["speed"], rtol=1e-12)
        np.testing.assert_allclose(rec["w_std"], again["w_std"], rtol=1e-12)


def test_convolutions_with_options_use_their_own_map():
    """A strided, padded convolution's z is its declared map's, not the plain contraction's."""
    net = sb.Network([sb.Input((1, 6, 6)), sb.Conv2D(2, (3, 3), sb.tanh, stride=2, padding=1),
                      sb.Dense(3, sb.softmax)], cost=sb.log_likelihood)
    model = net.compile(backend="numpy", seed=0)
    X = np.random.default_rng(0).normal(size=(4, 36))
    (z1, a1), _ = dg.weighted_inputs(model, X)
    W, b = model.params[0]
    x = X.reshape(4, 1, 6, 6)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    want = np.array([[[[np.sum(W[f] * xp[r, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3]) + b[f] for j in range(3)]
                       for i in range(3)] for f in range(2)] for r in range(4)])
    np.testing.assert_allclose(z1, want, rtol=1e-12)
    np.testing.assert_allclose(a1, np.tanh(want), rtol=1e-12)
