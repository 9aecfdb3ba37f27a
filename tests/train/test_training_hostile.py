"""Careless or hostile training inputs: each gives a one-line error naming the problem (or works), never a
traceback from deep inside, never state that poisons later calls.

Momentum after a divergence, a network as deep as a model file can hold, penalties with poles, the printed
update rule of a penalty (parsed back and compared with the one that runs), numbers too large for a float, the
names of bad arrays in model files, empty image batches."""

import math
import re

import numpy as np
import pytest
import sympy as sp

import symbp as sb
from symbp.network import MAX_LAYERS
from symbp.symbols import w


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.random((20, 4)), np.eye(2)[rng.integers(0, 2, 20)]


def _model(backend="numpy"):
    return sb.Network([4, 3, 2], activation=sb.relu, cost=sb.quadratic).compile(backend=backend, seed=0)


def test_divergence_restores_the_momentum_velocities_too(data, tmp_path):
    model = _model()
    model.fit(data, epochs=1, batch_size=5, eta=0.1, momentum=0.9, progress=False)
    params, velocities = model.params, model.velocities
    with pytest.raises(FloatingPointError, match="velocities"):
        model.fit(data, epochs=2, batch_size=5, eta=1e250, momentum=0.9, progress=False)
    for got, ref in zip(model.velocities + model.params, velocities + params):
        for g, r in zip(got, ref):
            assert np.array_equal(g, r)
    model.fit(data, epochs=1, batch_size=5, eta=0.1, momentum=0.9, progress=False)  # trains again
    model.save(tmp_path / "m")
    assert all(np.isfinite(v).all() for pair in sb.load(tmp_path / "m").velocities for v in pair)


def test_divergence_in_the_first_momentum_epoch_leaves_no_velocities(data):
    model = _model()
    with pytest.raises(FloatingPointError):
        model.fit(data, epochs=1, batch_size=5, eta=1e250, momentum=0.9, progress=False)
    assert model.velocities is None
    model.fit(data, epochs=1, batch_size=5, eta=0.1, momentum=0.9, progress=False)


def test_save_refuses_nonfinite_velocities(data, tmp_path):
    model = _model()
    model.fit(data, epochs=1, batch_size=5, eta=0.1, momentum=0.9, progress=False)
    model._velocities[0][0][0, 0] = np.nan  # as the old divergence left them
    with pytest.raises(ValueError, match="velocity vW1 contains NaN"):
        model.save(tmp_path / "m")


def test_network_depth_bound_is_the_model_files():
    assert MAX_LAYERS == sb.train.serialize._MAX_LAYERS
    with pytest.raises(ValueError, match=f"at most {MAX_LAYERS}"):
        sb.Network([2] * (MAX_LAYERS + 1), activation=sb.sigmoid, cost=sb.quadratic)


@pytest.mark.slow
def test_the_deepest_network_saves_and_loads(tmp_path):
    model = sb.Network([2] * MAX_LAYERS, activation=sb.sigmoid, cost=sb.quadratic).compile(backend="numpy", seed=0)
    model.save(tmp_path / "deep")
    assert len(sb.load(tmp_path / "deep").params) == MAX_LAYERS - 1


def test_bad_arrays_are_named_as_in_the_model_file(tmp_path):
    net = sb.Network([sb.Input((1, 6, 6)), sb.Conv2D(2, (3, 3), sb.relu), sb.MaxPool((2, 2)),
                      sb.Conv2D(2, (1, 1), sb.relu), sb.Dense(3, sb.softmax)], cost=sb.log_likelihood)
    model = net.compile(backend="numpy", seed=0)
    params = model.params
    params[1][0][0, 0, 0, 0] = np.nan  # W2: the second layer with parameters (layer 3 of the network)
    with pytest.raises(ValueError, match=r"^W2 \(layer 3\) contains NaN"):
        model.set_params(params)
    vel = [tuple(np.zeros_like(p) for p in pair) for pair in model.params]
    vel[0][0][0, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match=r"^vW1 contains NaN"):
        model.set_velocities(vel)


def test_long_lists_in_load_errors_are_shortened(tmp_path):
    net = sb.Network([sb.Input((1, 4, 4))] + [sb.Conv2D(1, (1, 1), sb.relu) for _ in range(60)]
                     + [sb.Dense(2, sb.softmax)], cost=sb.log_likelihood)
    small = sb.Network([sb.Input((1, 4, 4)), sb.Dense(2, sb.softmax)], cost=sb.log_likelihood)
    big_doc = sb.train.serialize._encode_layer  # the manifest of the deep net, the parameters of a small one
    small.compile(backend="numpy", seed=0).save(tmp_path / "m")
    import json

    doc = json.loads((tmp_path / "m.json").read_text())
    doc["layers"] = [doc["layers"][0]] + [big_doc(layer) for layer in net.layers[1:]]
    (tmp_path / "m.json").write_text(json.dumps(doc))
    with pytest.raises(ValueError) as err:
        sb.load(tmp_path / "m")
    assert len(str(err.value)) < 400 and "more" in str(err.value)


@pytest.mark.parametrize("text", ["1/w", "log(abs(w))", "w**-2", "sqrt(abs(w))", "1/(w - 1)**2"])
def test_penalties_with_a_pole_are_refused(text):
    with pytest.raises(ValueError, match="not finite at w = "):
        sb.Regularizer.parse("pole", text, 1.0)


@pytest.mark.parametrize("text", ["abs(w)", "w**2/2", "sqrt(w**2 + 0.01)", "log(1 + w**2)", "abs(w)/2 + w**2/4"])
def test_penalties_finite_everywhere_are_accepted(text):
    sb.Regularizer.parse("fine", text, 1.0)


def _parse_update(rule: str) -> sp.Expr:
    """The right-hand side of a printed update rule ``w → …`` (or ``v → …, w → w + v``) as sympy (a test's own
    reading of trusted text)."""
    rhs = rule.split(" → ", 1)[1].split(",  ")[0]
    for old, new in (("(ηλ/n)", "k"), ("(η/m)·Σₓ ∂Cₓ/∂w", "g"), ("μ·v", "mu*v"), ("·", "*"), ("−", "-"),
                     ("²", "**2"), ("³", "**3"), ("⁻¹", "**(-1)")):
        rhs = rhs.replace(old, new)
    return sp.parse_expr(rhs, local_dict={"w": w, "sign": sp.sign, "Abs": sp.Abs, "sqrt": sp.sqrt})


@pytest.mark.parametrize("text", ["abs(w)/2 + w**2/4", "w**2 - log(1 + w**2)/10", "sqrt(w**2 + 0.01)",
                                  "abs(w)", "-w**2/(1 + w**2) + w**2"])
def test_printed_update_rule_is_the_one_that_runs(text):
    reg = sb.Regularizer.parse("r", text, 1.0)
    k, g, v, mu = sp.symbols("k g v mu")
    printed = _parse_update(reg.update_text())
    runs = w - k * reg.derivative - g  # what the kernel computes: w − (ηλ/n)·R′(w) − (η/m)·Σ∂C/∂w
    assert sp.simplify(printed - runs) == 0, reg.update_text()
    momentum = _parse_update(reg.update_text(momentum=True))
    assert sp.simplify(momentum - (mu * v - k * reg.derivative - g)) == 0, reg.update_text(momentum=True)
    latex = reg.update_latex()
    if isinstance(reg.derivative, sp.Add):
        assert r"\left(" in latex


@pytest.mark.parametrize("kwargs, message", [
    (dict(input_scale=10**400), "input_scale must be a finite positive number"),
    (dict(epochs=math.inf), "epochs must be a non-negative integer"),
    (dict(batch_size=math.inf), "batch_size must be an integer in 1..20"),
    (dict(eta=10**400), "eta must be a finite non-negative number"),
    (dict(lmbda=1e308), "weight decay 1 − ηλ/n"),
    (dict(regularizer=sb.L2(1e6)), "the L2 strength"),
])
def test_numbers_too_large_are_refused_by_name(data, kwargs, message):
    kw = dict(epochs=1, batch_size=5, eta=0.1, progress=False) | kwargs
    X, Y = data
    if "input_scale" in kwargs:
        X = (X * 255).astype(np.uint8)
    with pytest.raises(ValueError, match=re.escape(message)) as err:
        _model().fit((X, Y), **kw)
    assert len(str(err.value)) < 300


def test_regularizer_strength_too_large_for_a_float():
    with pytest.raises(ValueError, match=r"strength must be a finite non-negative number, got 100000000000…"):
        sb.L1(10**400)


def test_numpy_scalars_are_numbers(data):
    _model().fit(data, epochs=np.int64(1), batch_size=np.int32(5), eta=np.float32(0.1), lmbda=np.float64(0.1),
                 momentum=np.float32(0.5), progress=False)


def test_huge_inputs_are_blamed_not_eta(data):
    X, Y = data
    with pytest.raises(FloatingPointError, match="input_scale 1e\\+307 makes them far from"):
        _model().fit(((X * 255).astype(np.uint8), Y), epochs=1, batch_size=5, eta=0.1, input_scale=1e307,
                     progress=False)


def test_empty_image_batch():
    model = sb.Network([sb.Input((1, 4, 4)), sb.Dense(2, sb.softmax)], cost=sb.log_likelihood).compile(
        backend="numpy", seed=0)
    assert model.feedforward(np.zeros((0, 1, 4, 4))).shape == (0, 2)
    with pytest.raises(ValueError, match="training_data is empty"):
        model.fit((np.zeros((0, 1, 4, 4)), np.zeros(0, int)), progress=False)
