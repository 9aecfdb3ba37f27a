"""No silent non-finite numbers: a NaN/inf activation, cost or gradient is an error naming the layer; a
diverged fit restores the parameters of before the failing epoch; a fit ending at chance with a huge η warns."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import sympy as sp

import symbp as sb
from symbp import z

BACKENDS = ["numpy", "numba"]


@pytest.fixture(scope="module", params=BACKENDS)
def exploding(request):
    """exp(z) hidden units: finite for small inputs, inf (then NaN) for large ones."""
    act = sb.Activation("expo", sp.exp(z))
    net = sb.Network([sb.Input(3), sb.Dense(4, act), sb.Dense(2, sb.sigmoid)], cost=sb.quadratic)
    return net.compile(backend=request.param, seed=0)


def test_non_finite_activation_names_the_layer(exploding):
    X = np.full((2, 3), 1e4)
    with pytest.raises(FloatingPointError, match=r"feedforward: layer 1 \(4:expo\) gives NaN/inf at row 0"):
        exploding.feedforward(X)
    with pytest.raises(FloatingPointError, match=r"cost: layer 1 \(4:expo\)"):
        exploding.cost(X, np.zeros((2, 2)))
    with pytest.raises(FloatingPointError, match=r"gradients: layer 1 \(4:expo\)"):
        exploding.gradients(X, np.zeros((2, 2)))
    assert np.isfinite(exploding.feedforward(np.zeros((2, 3)))).all()  # small inputs are fine


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_finite_cost_of_finite_activations_is_reported(backend):
    net = sb.Network([2, 2], activation=sb.linear, cost=sb.Cost("logcost", -sp.log(sb.a)))
    model = net.compile(backend=backend, seed=0)
    model.set_params([(np.zeros((2, 2)), np.zeros(2))])  # a = 0 everywhere: log(0)
    with pytest.raises(FloatingPointError, match="cost: the cost is NaN/inf although every activation is finite"):
        model.cost(np.ones((3, 2)), np.ones((3, 2)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_divergence_restores_the_parameters_before_the_failing_epoch(backend):
    act = sb.Activation("expo", sp.exp(z))
    net = sb.Network([sb.Input(3), sb.Dense(4, act), sb.Dense(2, sb.linear)], cost=sb.quadratic)
    model = net.compile(backend=backend, seed=0)
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(40, 3)), rng.normal(size=(40, 2)) * 100
    before = model.params
    with pytest.raises(FloatingPointError, match=r"training diverged at epoch 1: .* restored"):
        model.fit((X, Y), epochs=3, batch_size=10, eta=1e3, evaluation_data=(X, Y), progress=False)
    for (W, b), (W0, b0) in zip(model.params, before):
        np.testing.assert_array_equal(W, W0)
        np.testing.assert_array_equal(b, b0)
    assert np.isfinite(model.evaluate((X, Y.argmax(axis=1))))  # still usable


def test_chance_accuracy_with_huge_eta_warns():
    rng = np.random.default_rng(1)
    X, labels = rng.normal(size=(200, 4)), rng.integers(0, 10, 200)
    model = sb.Network([4, 10], activation=sb.sigmoid, cost=sb.quadratic).compile(backend="numpy", seed=0)
    with pytest.warns(RuntimeWarning, match=r"chance accuracy .* eta = 1e\+06"):
        model.fit((X, labels), epochs=1, batch_size=10, eta=1e6, evaluation_data=(X, labels), progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fit((X, labels), epochs=1, batch_size=10, eta=0.5, evaluation_data=(X, labels), progress=False)


@pytest.mark.parametrize("backend", BACKENDS)
def test_constants_the_dtype_cannot_hold_are_refused_at_compile(backend):
    net = sb.Network([2, 2], activation=sb.Activation("huge", sp.tanh(sp.Float(1e39) * z)), cost=sb.quadratic)
    with pytest.raises(ValueError, match="1e\\+?39|float32"):
        net.compile(backend=backend, dtype="float32")
    assert net.compile(backend=backend, dtype="float64").feedforward(np.ones((1, 2))).shape == (1, 2)
