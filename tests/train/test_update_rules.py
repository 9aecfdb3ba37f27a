"""Regularisers, momentum and perceptrons: the update rules generated into the whole-epoch kernel.

Each regulariser's generated update equals a step down the finite-difference gradient of the penalised cost;
L1 leaves a zero weight unmoved by its penalty; both backends agree; momentum with μ = 0 is plain SGD bit for bit
and with μ > 0 is a NumPy loop of the book's eqs. 107–108; a step activation runs forward but refuses to train.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

import symbp as sb
from symbp import w, z

REGULARIZERS = {
    "L1": sb.L1(0.7),
    "L2": sb.L2(0.7),
    "elastic": sb.Regularizer("elastic", 0.3 * sp.Abs(w) + 0.2 * w**2, 1.5),
    "parsed": sb.Regularizer.parse("smooth-l1", "sqrt(w^2 + 0.01)", 0.9),
}


def _data(n=12, n_in=4, k=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, n_in)), rng.integers(0, k, n)


def _net(act=sb.sigmoid):
    return sb.Network([4, 5, 3], activation=act, cost=sb.cross_entropy)


def _penalised_cost(model, reg, X, Y, params, n):
    model.set_params(params)
    return model.cost(X, Y) + reg.penalty([p[0] for p in params], n)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("name", list(REGULARIZERS))
def test_generated_update_is_a_step_down_the_finite_difference_gradient(backend, name):
    reg = REGULARIZERS[name]
    X, Y = _data()
    n, eta = X.shape[0], 0.3
    model = _net().compile(backend=backend, seed=1)
    start = model.params
    # one mini-batch holding every row: θ ← θ − η·∇(C̄₀ + (λ/n)·Σ R(w))
    model.run_epoch(X, Y, np.arange(n), n, eta, n=n, regularizer=reg)
    step = model.params
    probe = _net().compile(backend="numpy", seed=1)
    h = 1e-6
    for i, pair in enumerate(start):
        for j, arr in enumerate(pair):
            fd = np.zeros_like(arr)
            for idx in np.ndindex(arr.shape):
                plus = [tuple(p.copy() for p in q) for q in start]
                minus = [tuple(p.copy() for p in q) for q in start]
                plus[i][j][idx] += h
                minus[i][j][idx] -= h
                up, down = (_penalised_cost(probe, reg, X, Y, q, n) for q in (plus, minus))
                fd[idx] = (up - down) / (2 * h)
            np.testing.assert_allclose(step[i][j], arr - eta * fd, rtol=0, atol=1e-8)


def test_l2_regularizer_is_exactly_lmbda():
    X, Y = _data()
    a, b = (_net().compile(seed=0) for _ in range(2))
    a.fit((X, Y), epochs=3, batch_size=4, eta=0.5, lmbda=2.0, seed=3)
    b.fit((X, Y), epochs=3, batch_size=4, eta=0.5, regularizer=sb.L2(2.0), seed=3)
    for p, q in zip(a.params, b.params):
        for u, v in zip(p, q):
            np.testing.assert_array_equal(u, v)
    assert b.cache_info["compiled"][0] == "sgd_epoch"  # the plain kernel: L2 is its weight decay


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_l1_leaves_a_zero_weight_unmoved_by_its_penalty(backend):
    model = _net().compile(backend=backend, seed=0)
    params = model.params
    W1 = params[0][0]
    W1[0, :] = 0.0
    model.set_params(params)
    X = np.zeros((6, 4))  # a⁰ = 0: ∂C/∂W¹ = δ¹·a⁰ᵀ = 0, so only the penalty moves W¹
    Y = np.arange(6) % 3
    eta, lam, n = 0.5, 1.2, 6
    model.run_epoch(X, Y, np.arange(6), 3, eta, n=n, regularizer=sb.L1(lam))
    after = model.params[0][0]
    np.testing.assert_array_equal(after[0], 0.0)
    # the others move 2 mini-batches × ηλ/n towards zero: sgn(w) is constant while |w| > 2ηλ/n
    big = np.abs(W1[1:]) > 2 * eta * lam / n
    expected = W1[1:] - 2 * eta * lam / n * np.sign(W1[1:])
    np.testing.assert_allclose(after[1:][big], expected[big], rtol=0, atol=1e-14)


@pytest.mark.parametrize("reg", [None, sb.L1(0.4), sb.Regularizer("quartic", w**4 / 4, 0.5)])
@pytest.mark.parametrize("momentum", [0.0, 0.8])
def test_backends_agree(reg, momentum):
    X, Y = _data(40)
    out = []
    for backend in ("numpy", "numba"):
        m = _net(sb.sigmoid).compile(backend=backend, seed=2)
        m.fit((X, Y), epochs=3, batch_size=7, eta=0.4, lmbda=0.0 if reg else 0.3, regularizer=reg,
              momentum=momentum, seed=5)
        out.append([p for pair in m.params for p in pair] + [v for pair in (m.velocities or []) for v in pair])
    for p, q in zip(*out):
        np.testing.assert_allclose(p, q, rtol=0, atol=1e-12)


def test_momentum_zero_is_plain_sgd_bit_for_bit():
    X, Y = _data(30)
    a, b = (_net().compile(seed=0) for _ in range(2))
    a.fit((X, Y), epochs=4, batch_size=5, eta=0.5, lmbda=0.2, seed=9)
    b.fit((X, Y), epochs=4, batch_size=5, eta=0.5, lmbda=0.2, seed=9, momentum=0.0)
    for p, q in zip(a.params, b.params):
        for u, v in zip(p, q):
            np.testing.assert_array_equal(u, v)
    assert b.velocities is None


def _book_momentum(model, X, Y, orders, m, eta, mu, lam, n):
    """The book's eqs. 107–108 mini-batch by mini-batch, through ``gradients`` (NumPy on the side)."""
    params = [[p.copy() for p in pair] for pair in model.params]
    vel = [[np.zeros_like(p) for p in pair] for pair in params]
    for order in orders:
        for k in range(len(order) // m):
            rows = order[k * m:(k + 1) * m]
            model.set_params(params)
            grads = model.gradients(X[rows], Y[rows])
            for pair, vpair, gpair in zip(params, vel, grads):
                for j in range(2):
                    g = gpair[j] + (lam / n * pair[j] if j == 0 else 0.0)  # ∇C: the L2 term on weights only
                    vpair[j][...] = mu * vpair[j] - eta * g
                    pair[j][...] = pair[j] + vpair[j]
    return params, vel


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_momentum_equals_the_books_equations(backend):
    X, Y = _data(24)
    n, m, eta, mu, lam = 24, 6, 0.3, 0.9, 0.5
    model = _net().compile(backend=backend, seed=4)
    ref = _net().compile(backend="numpy", seed=4)
    rng = np.random.default_rng(0)
    orders = [rng.permutation(n) for _ in range(3)]
    for order in orders:
        model.run_epoch(X, Y, order, m, eta, lam, n=n, momentum=mu)
    params, vel = _book_momentum(ref, X, Y, orders, m, eta, mu, lam, n)
    for got, want in zip(model.params + model.velocities, params + vel):
        for u, v in zip(got, want):
            np.testing.assert_allclose(u, v, rtol=0, atol=1e-12)


def test_velocities_carry_over_and_reset_with_new_parameters():
    X, Y = _data(20)
    model = _net().compile(seed=0)
    model.fit((X, Y), epochs=1, batch_size=5, eta=0.3, momentum=0.9, seed=1)
    v = model.velocities
    assert v is not None and any(np.abs(a).max() > 0 for pair in v for a in pair)
    model.set_params(model.params)
    assert model.velocities is None


def test_conv_net_trains_with_l1_and_momentum_in_both_backends():
    net = sb.Network([sb.Input((1, 6, 6)), sb.Conv2D(2, (3, 3), sb.tanh), sb.MaxPool((2, 2)),
                      sb.Dense(3, sb.softmax)], cost=sb.log_likelihood)
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(16, 36)), rng.integers(0, 3, 16)
    out = []
    for backend in ("numpy", "numba"):
        m = net.compile(backend=backend, seed=0)
        m.fit((X, Y), epochs=2, batch_size=4, eta=0.2, regularizer=sb.L1(0.3), momentum=0.5, seed=0)
        out.append([p for pair in m.params + m.velocities for p in pair])
    for p, q in zip(*out):
        np.testing.assert_allclose(p, q, rtol=0, atol=1e-12)


@pytest.mark.parametrize("bad, match", [
    (dict(regularizer=sb.L1(1.0), lmbda=1.0), "either lmbda"),
    (dict(regularizer="L1"), "sb.Regularizer"),
    (dict(momentum=1.0), "momentum must be"),
    (dict(momentum=-0.1), "momentum must be"),
])
def test_bad_update_arguments_are_clear(bad, match):
    X, Y = _data()
    with pytest.raises(ValueError, match=match):
        _net().compile(backend="numpy", seed=0).fit((X, Y), epochs=1, batch_size=4, **bad)


@pytest.mark.parametrize("expr, match", [("log(w)", "not real"), ("heaviside(w)", "step"), ("z", "unknown symbol"),
                                         ("3", "does not depend on w")])
def test_bad_regularizers_are_refused_at_declaration(expr, match):
    with pytest.raises(ValueError, match=match):
        sb.Regularizer.parse("bad", expr)


def test_equations_show_the_update_rule():
    net = _net()
    assert "w → (1 − ηλ/n)·w" in str(net.equations())
    eqs = net.equations(regularizer=sb.L1(0.1), momentum=0.9)
    assert "v → μ·v − (ηλ/n)·sign(w)" in str(eqs) and r"\mu v" in eqs.latex() and "update" in eqs.markdown()


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_perceptron_runs_forward_and_refuses_training_with_the_books_reason(backend):
    step = sb.Activation("step", sp.Heaviside(z))
    net = sb.Network([2, 1], activation=step, cost=sb.quadratic)
    model = net.compile(backend=backend, seed=0)
    model.set_params([(np.array([[-2.0, -2.0]]), np.array([3.0]))])  # the book's NAND perceptron
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
    np.testing.assert_array_equal(model.feedforward(X).ravel(), [1, 1, 1, 0])
    assert model.cost(X, np.array([[1], [1], [1], [0]])) == 0.0
    for call in (lambda: model.fit((X, np.array([[1], [1], [1], [0]])), epochs=1, batch_size=2),
                 lambda: model.gradients(X, np.ones((4, 1))),
                 lambda: model.run_epoch(X, np.ones((4, 1)), np.arange(4), 2, 0.1)):
        with pytest.raises(ValueError, match="cannot learn.*sigmoid"):
            call()


def test_velocities_are_saved_and_training_goes_on_as_if_never_stopped(tmp_path):
    X, Y = _data(20)
    a, b = (_net().compile(seed=0) for _ in range(2))
    a.fit((X, Y), epochs=2, batch_size=5, eta=0.3, momentum=0.9, seed=1)
    a.save(tmp_path / "m")
    a.fit((X, Y), epochs=1, batch_size=5, eta=0.3, momentum=0.9, seed=2)
    loaded = sb.load(tmp_path / "m")
    assert loaded.velocities is not None
    loaded.fit((X, Y), epochs=1, batch_size=5, eta=0.3, momentum=0.9, seed=2)
    for p, q in zip(a.params + a.velocities, loaded.params + loaded.velocities):
        for u, v in zip(p, q):
            np.testing.assert_array_equal(u, v)
    b.save(tmp_path / "plain")  # no momentum: no velocities in the file
    assert sb.load(tmp_path / "plain").velocities is None
