"""Dropout (``sb.Dropout(p)``, inverted): gradients with a fixed mask against finite differences of an independent
NumPy cost, masks from the counter-based hash (``symbp.compile.backends.masks``), reproducible training, the two
backends alike, ``Dropout(0)`` exactly no layer, inference the identity, validation, cache keys and the rendered
equations.

Masks: for dropout layer l, sample (row) r and unit j in epoch e of a ``fit``/``run_epoch`` keyed by seed s, unit j of
sample r is kept iff ``uniform_np(stream_key_np(s, e, l), r, j) >= p`` and then scaled by 1/(1 − p).

Numba compiles cost seconds each: the few networks here are compiled once per module (a second ``compile`` of the
same network is a cache hit, milliseconds).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

import symbp as sb
from symbp.compile.backends.numba.cache import declaration_key
from symbp.compile.backends.numba.runtime import stream_key, uniform
from symbp.compile.backends.numpy.runtime import stream_key_np, uniform_np

BACKENDS = ("numpy", "numba")
P1, P3 = 0.25, 0.5  # the rates of the two dropout layers of the main network


def main_net(p1=P1, p3=P3) -> sb.Network:
    """Dropout on the input (layer 1) and between the hidden and the softmax layer (layer 3)."""
    return sb.Network([sb.Input(3), sb.Dropout(p1), sb.Dense(5, sb.tanh), sb.Dropout(p3), sb.Dense(3, sb.softmax)],
                      cost=sb.log_likelihood)


def plain_net() -> sb.Network:
    return sb.Network([sb.Input(3), sb.Dense(5, sb.tanh), sb.Dense(3, sb.softmax)], cost=sb.log_likelihood)


def data(n=9, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 3)), rng.integers(0, 3, n)


@pytest.fixture(scope="module")
def nets():
    return {"main": main_net(), "zero": main_net(0, 0), "plain": plain_net()}


@pytest.fixture(scope="module")
def models(nets):
    """(name, backend) → a compiled model; tests reset the parameters they use."""
    return {(name, be): net.compile(backend=be, seed=0) for name, net in nets.items() for be in BACKENDS}


def params_of(model):
    return [arr for pair in model.params for arr in pair]


def assert_params_equal(m1, m2):
    for a, b in zip(params_of(m1), params_of(m2), strict=True):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------------------------- reference
def masks(seed, epoch, n, rows=None, p1=P1, p3=P3):
    """The scaled masks of the main network's dropout layers (1: 3 units, 3: 5 units) for the given sample ids."""
    rows = np.arange(n) if rows is None else np.asarray(rows)
    out = {}
    for l, p, units in ((1, p1, 3), (3, p3, 5)):
        u = uniform_np(stream_key_np(seed, epoch, l), rows[:, None], np.arange(units)[None, :])
        out[l] = (u >= p) / (1 - p)
    return out


def reference_forward(theta, X, mask=None):
    """The main network in plain NumPy: z = a Wᵀ + b, a = σ(z), dropout a ← m ⊙ a (or the identity)."""
    W2, b2, W4, b4 = theta
    a1 = X * mask[1] if mask else X
    a2 = np.tanh(a1 @ W2.T + b2)
    a3 = a2 * mask[3] if mask else a2
    z4 = a3 @ W4.T + b4
    e = np.exp(z4 - z4.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def reference_cost(theta, X, labels, mask=None):
    """Mean log-likelihood cost over the rows (with the masks given, if any)."""
    a = reference_forward(theta, X, mask)
    return float(-np.mean(np.log(a[np.arange(len(labels)), labels])))


def fd_gradient(theta, X, labels, mask, h=1e-6):
    grads = []
    for k, arr in enumerate(theta):
        g = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            plus = [t.copy() for t in theta]
            minus = [t.copy() for t in theta]
            plus[k][idx] += h
            minus[k][idx] -= h
            g[idx] = (reference_cost(plus, X, labels, mask) - reference_cost(minus, X, labels, mask)) / (2 * h)
        grads.append(g)
    return grads


# ---------------------------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("backend", BACKENDS)
def test_reference_matches_the_dense_layers(models, backend):
    """The NumPy reference is the network's own math: with dropout off it reproduces feedforward and cost."""
    model = models["main", backend]
    model.init_params(seed=1)
    X, labels = data()
    theta = params_of(model)
    np.testing.assert_allclose(model.feedforward(X), reference_forward(theta, X), rtol=1e-12, atol=1e-15)
    assert model.cost(X, labels) == pytest.approx(reference_cost(theta, X, labels), rel=1e-12)
    # and each layer's own reference map agrees with the hand-written one
    a = X
    params = iter(model.params)
    for layer, shape in zip(model.network.layers[1:], model.network.shapes):
        a = layer.reference(next(params) if layer.param_specs(shape) else (), a)
    np.testing.assert_allclose(a, reference_forward(theta, X), rtol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed,epoch", [(3, 0), (2**63 - 1, 7)])
def test_gradient_with_fixed_mask_matches_finite_differences(models, backend, seed, epoch):
    """One mini-batch of all rows, η = 1, λ = 0: the update is minus the gradient of the masked mean cost."""
    model = models["main", backend]
    model.init_params(seed=2)
    X, labels = data()
    n = len(labels)
    theta = params_of(model)
    mask = masks(seed, epoch, n)
    assert (mask[1] == 0).any() and (mask[3] == 0).any() and (mask[3] != 0).any()  # the masks do something
    model.run_epoch(X, labels, np.arange(n), n, 1.0, 0.0, seed=seed, epoch=epoch)
    step = [t - new for t, new in zip(theta, params_of(model))]
    fd = fd_gradient(theta, X, labels, mask)
    for got, want in zip(step, fd):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)
    # not the unmasked gradient: dropout changed the update
    unmasked = fd_gradient(theta, X, labels, None)
    assert max(np.abs(g - w).max() for g, w in zip(step, unmasked)) > 1e-3


@pytest.mark.parametrize("backend", BACKENDS)
def test_masks_follow_the_sample_not_its_position(models, backend):
    """A permuted order gives the same (one-batch) update, and a batch of one row r uses r's own mask."""
    model = models["main", backend]
    X, labels = data()
    n = len(labels)
    model.init_params(seed=4)
    theta = model.params
    model.run_epoch(X, labels, np.arange(n), n, 0.5, 0.0, seed=11, epoch=2)
    in_order = params_of(model)
    model.set_params(theta)
    model.run_epoch(X, labels, np.random.default_rng(0).permutation(n), n, 0.5, 0.0, seed=11, epoch=2)
    for a, b in zip(in_order, params_of(model)):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
    r = 6
    model.set_params(theta)
    flat = params_of(model)
    model.run_epoch(X, labels, np.array([r]), 1, 1.0, 0.0, seed=11, epoch=2)
    step = [t - new for t, new in zip(flat, params_of(model))]
    fd = fd_gradient(flat, X[r:r + 1], labels[r:r + 1], masks(11, 2, 1, rows=[r]))
    for got, want in zip(step, fd):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------------------------------------- training
FIT = {"epochs": 3, "batch_size": 4, "eta": 0.5, "lmbda": 0.1, "progress": False, "monitor_evaluation": False}


@pytest.mark.parametrize("backend", BACKENDS)
def test_dropout_zero_is_no_layer(models, nets, backend):
    """Dropout(0): bit-identical parameters after fit, with a fit seed and with the model's own generator."""
    X, labels = data(10)
    for fit_seed in (7, None):
        zero, plain = nets["zero"].compile(backend=backend, seed=5), nets["plain"].compile(backend=backend, seed=5)
        assert_params_equal(zero, plain)
        zero.fit((X, labels), seed=fit_seed, **FIT)
        plain.fit((X, labels), seed=fit_seed, **FIT)
        assert_params_equal(zero, plain)
        assert not np.array_equal(params_of(zero)[0], nets["plain"].compile(backend=backend, seed=5).params[0][0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_fit_is_reproducible_by_seed(models, backend):
    model = models["main", backend]
    X, labels = data(12)
    model.init_params(seed=6)
    theta = model.params
    results = {}
    for seed in (3, 3, 4):
        model.set_params(theta)
        model.fit((X, labels), seed=seed, **FIT)
        results.setdefault(seed, []).append(params_of(model))
    for a, b in zip(*results[3]):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(results[3][0][0], results[4][0][0])
    # another model of the same network, the same start and fit seed: the same parameters (the mask seed comes
    # from the fit seed, not from the model's generator)
    other = model.network.compile(backend=backend, seed=99)
    other.set_params(theta)
    other.fit((X, labels), seed=3, **FIT)
    for a, b in zip(results[3][0], params_of(other)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("backend", BACKENDS)
def test_masks_depend_on_seed_and_epoch(models, nets, backend):
    """Same order, different mask keys: different updates; the same key: the same update."""
    model = models["main", backend]
    X, labels = data()
    order = np.arange(len(labels))
    model.init_params(seed=8)
    theta = model.params
    out = {}
    for key in ((1, 0), (1, 0), (2, 0), (1, 1)):
        model.set_params(theta)
        model.run_epoch(X, labels, order, 3, 0.5, seed=key[0], epoch=key[1])
        out.setdefault(key, []).append(params_of(model)[0])
    np.testing.assert_array_equal(*out[1, 0])
    assert not np.array_equal(out[1, 0][0], out[2, 0][0])
    assert not np.array_equal(out[1, 0][0], out[1, 1][0])
    # without a dropout layer the key changes nothing
    plain = models["plain", backend]
    ups = []
    for key in (1, 2):
        plain.set_params(theta)
        plain.run_epoch(X, labels, order, 3, 0.5, seed=key, epoch=key)
        ups.append(params_of(plain))
    for a, b in zip(*ups):
        np.testing.assert_array_equal(a, b)


def test_numba_and_numpy_fit_agree(models):
    X, labels = data(16, seed=3)
    results = []
    for backend in BACKENDS:
        model = models["main", backend]
        model.init_params(seed=9)
        model.fit((X, labels), seed=12, **FIT)
        results.append(params_of(model))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    assert not np.array_equal(results[0][0], models["main", "numpy"].network.compile("numpy", seed=0).params[0][0])


# ---------------------------------------------------------------------------------------------- inference
@pytest.mark.parametrize("backend", BACKENDS)
def test_inference_is_the_identity(models, backend):
    """feedforward, cost, gradients and evaluate of a net with dropout equal those of the net without it."""
    drop, plain = models["main", backend], models["plain", backend]
    drop.init_params(seed=10)
    plain.set_params(drop.params)
    X, labels = data(7, seed=5)
    np.testing.assert_array_equal(drop.feedforward(X), plain.feedforward(X))
    assert drop.cost(X, labels) == plain.cost(X, labels)
    assert drop.evaluate((X, labels)) == plain.evaluate((X, labels))
    for g1, g2 in zip(drop.gradients(X, labels), plain.gradients(X, labels)):
        for a, b in zip(g1, g2):
            np.testing.assert_array_equal(a, b)
    # and training mode is not: a step with dropout is not the step without it
    order = np.arange(len(labels))
    drop.run_epoch(X, labels, order, len(labels), 1.0, seed=0, epoch=0)
    plain.run_epoch(X, labels, order, len(labels), 1.0, seed=0, epoch=0)
    assert not np.array_equal(params_of(drop)[0], params_of(plain)[0])


# ---------------------------------------------------------------------------------------------- masks
def test_hash_is_uniform_and_masked_mean_approaches_the_unmasked_one():
    N, J, p = 20000, 16, 0.3
    u = uniform_np(stream_key_np(7, 2, 3), np.arange(N)[:, None], np.arange(J)[None, :])
    assert u.dtype == np.float64 and u.shape == (N, J)
    assert u.min() >= 0.0 and u.max() < 1.0
    counts = np.histogram(u, bins=10, range=(0, 1))[0] / u.size
    np.testing.assert_allclose(counts, 0.1, atol=0.004)  # σ ≈ 0.0005 per bin
    kept = u >= p
    assert abs(kept.mean() - (1 - p)) < 0.004
    a = np.linspace(-2.0, 3.0, J)  # one activation vector, the same for every sample
    masked = kept / (1 - p) * a
    sigma = np.abs(a) * math.sqrt(p / (1 - p) / N)
    assert (np.abs(masked.mean(axis=0) - a) <= 5 * sigma + 1e-12).all()
    # the spread shrinks as 1/√N: the first N/100 samples are further off on average than all N
    few = np.abs((kept[: N // 100] / (1 - p) * a).mean(axis=0) - a).mean()
    assert np.abs(masked.mean(axis=0) - a).mean() < few
    # streams of other layers, epochs and seeds are uncorrelated with this one
    for key in ((7, 2, 4), (7, 3, 3), (8, 2, 3)):
        v = uniform_np(stream_key_np(*key), np.arange(N)[:, None], np.arange(J)[None, :])
        assert abs(np.corrcoef(u.ravel(), v.ravel())[0, 1]) < 0.01
        assert not np.array_equal(u, v)
    # neighbouring units and samples too
    assert abs(np.corrcoef(u[:, 0], u[:, 1])[0, 1]) < 0.05
    assert abs(np.corrcoef(u[:-1, 0], u[1:, 0])[0, 1]) < 0.05


def test_numba_hash_equals_numpy_hash():
    for seed, epoch, layer in ((0, 0, 1), (12345, 29, 3), (2**63 - 1, 2**40, 7)):
        key = stream_key(seed, epoch, layer)
        assert int(key) == int(stream_key_np(seed, epoch, layer))
        for sample, unit in ((0, 0), (1, 0), (0, 1), (59999, 783), (2**62, 5)):
            assert uniform(key, sample, unit) == float(uniform_np(key, sample, unit))


@pytest.fixture(scope="module")
def mean_net():
    return sb.Network([sb.Input(4), sb.Dropout(0.5), sb.Dense(1, sb.linear)], cost=sb.quadratic)


@pytest.mark.parametrize("backend", BACKENDS)
def test_kernel_masked_mean_approaches_the_unmasked_one(mean_net, backend):
    """W = 0, b = 0, y = −1 and a linear output make δ = 1 for every sample, so one step over all N rows moves
    W by −η·mean(m ⊙ x / (1 − p)): the mean masked input, exactly the hash's masks, and close to x itself."""
    model = mean_net.compile(backend=backend, seed=0)
    N, x = 4000, np.array([0.5, -1.0, 2.0, 1.5])
    model.set_params([(np.zeros((1, 4)), np.zeros(1))])
    model.run_epoch(np.tile(x, (N, 1)), -np.ones((N, 1)), np.arange(N), N, 1.0, seed=5, epoch=1)
    (W, b), = model.params
    assert b[0] == pytest.approx(-1.0, rel=1e-14)
    mean = -W[0]
    u = uniform_np(stream_key_np(5, 1, 1), np.arange(N)[:, None], np.arange(4)[None, :])
    np.testing.assert_allclose(mean, ((u >= 0.5) / 0.5 * x).mean(axis=0), rtol=1e-12)
    assert (np.abs(mean - x) <= 5 * np.abs(x) / math.sqrt(N)).all()  # σ of a p = ½ mask mean: 1/√N
    assert not np.array_equal(mean, x)


def test_float32_masks_are_the_float64_masks():
    """The mask compares u with p in float64 in every backend and dtype: with p just above a sample's u, where
    float32(u) == float32(p), that unit is dropped by all (a float32 u rounded onto float32(p) was kept by one)."""
    u = uniform_np(stream_key_np(0, 0, 1), np.arange(16)[:, None], np.zeros((1, 1), np.int64))[:, 0]
    p = float(np.nextafter(u[0], 1.0))
    assert u[0] < p and np.float32(u[0]) == np.float32(p)
    order = np.arange(16)
    assert ((u[1:] >= p).any() and (u[1:] < p).any())
    want = -np.mean((u >= p) / (1 - p))  # δ = 1, x = 1: W moves by −mean(mask)
    net = sb.Network([sb.Input(1), sb.Dropout(p), sb.Dense(1, sb.linear)], cost=sb.quadratic)
    for backend, dtype in (("numba", "float32"), ("numpy", "float32"), ("numpy", "float64")):
        model = net.compile(backend=backend, dtype=dtype, seed=0)
        model.set_params([(np.zeros((1, 1)), np.zeros(1))])
        model.run_epoch(np.ones((16, 1)), -np.ones((16, 1)), order, 16, 1.0, seed=0, epoch=0)
        assert model.params[0][0][0, 0] == pytest.approx(want, rel=1e-6), (backend, dtype)
        model.set_params([(np.zeros((1, 1)), np.zeros(1))])
        model.run_epoch(np.ones((16, 1)), -np.ones((16, 1)), order[:1], 1, 1.0, seed=0, epoch=0)
        assert model.params[0][0][0, 0] == 0.0, (backend, dtype)  # sample 0 dropped


# ---------------------------------------------------------------------------------------------- declaration
def test_cache_key_differs_when_only_a_rate_differs():
    key = lambda net, be="numba": declaration_key(net, be, "float64")  # noqa: E731
    base = key(main_net())
    assert key(main_net()) == base  # the same declaration: the same kernels
    assert key(main_net(P1, 0.5000001)) != base
    assert key(main_net(0.3, P3)) != base
    assert key(main_net(P3, P1)) != base  # the same rates in other layers
    assert key(main_net(0, 0)) != key(plain_net())
    assert key(main_net(0.5, 0.5)) == key(main_net(Fraction(1, 2), 1 / 2))
    assert key(main_net(), "numpy") != base


@pytest.mark.parametrize("p", [-0.1, 1, 1.0, 1.5, -0.0 - 1e-300, math.nan, math.inf, -math.inf, True, False,
                               np.bool_(False), "0.5", None, [0.5], 0.5j, np.float64("nan"), 10**400,
                               Fraction(2**60 - 1, 2**60)])
def test_rate_outside_unit_interval_is_refused(p):
    with pytest.raises(ValueError, match=r"Dropout: p must be a probability in \[0, 1\)"):
        sb.Dropout(p)


@pytest.mark.parametrize("p", [0, 0.0, 0.5, 0.999, 1 - 2**-53, np.float64(0.5), np.float32(0.25), np.int64(0),
                               Fraction(1, 3)])
def test_rates_in_unit_interval_are_accepted(p):
    layer = sb.Dropout(p)
    assert type(layer.p) is float and layer.p == float(p)
    assert sb.Dropout.from_config(layer.config(), "") == layer


def test_dropout_placement():
    with pytest.raises(ValueError, match="last layer must have an activation"):
        sb.Network([sb.Input(3), sb.Dense(4, sb.sigmoid), sb.Dropout(0.5)], cost=sb.quadratic)
    with pytest.raises(ValueError, match="last layer must have an activation"):
        sb.Network([sb.Input(3), sb.Dropout(0.5)], cost=sb.quadratic)
    with pytest.raises(ValueError, match="first layer must be sb.Input"):
        sb.Network([sb.Dropout(0.5), sb.Dense(2, sb.sigmoid)], cost=sb.quadratic)
    net = main_net()
    assert net.sizes == [3, 3, 5, 5, 3] and net.shapes[1] == (3,)
    assert net.activations == [sb.tanh, sb.softmax]
    assert repr(net) == "Network([3, dropout(0.25), 5:tanh, dropout(0.5), 3:softmax], cost=log_likelihood)"


def test_equations_show_the_mask_in_bp2():
    eqs = main_net().equations()
    text = str(eqs)
    bp2 = [ln for ln in text.splitlines() if ln.startswith("BP2")]
    assert len(bp2) == 1
    assert "δ² = (2·m³ ⊙ ((w⁴)ᵀ δ⁴)) ⊙ σ′(z²)" in bp2[0]
    assert "a³ = 2·a²·m³" in text and "m³ⱼ ~ Bernoulli(0.5)" in text
    assert "∂C/∂a² = ∂a³/∂a² ⊙ ∂C/∂a³ = (2·m³ ⊙ ((w⁴)ᵀ δ⁴))" in text
    assert "(4·m¹/3 ⊙ ((w²)ᵀ δ²))" in text  # the input's dropout, scale 1/(1 − 0.25) = 4/3
    assert "BP4  weights         ∂C/∂w⁴ⱼₖ = a³ₖ δ⁴ⱼ      ∂C/∂w²ⱼₖ = a¹ₖ δ²ⱼ" in text
    assert any("dropout p = 0.5: inverted" in note for note in eqs.notes)
    latex = eqs.latex()
    (row,) = [ln for ln in latex.splitlines() if ln.startswith(r"\text{BP2:}")]
    assert r"(2 m^{3} \odot ((w^{4})^T \delta^{4})) \odot \sigma'(z^{2})" in row
    assert r"a^{3} &= 2 a^{2} m^{3}" in latex
    md = eqs.markdown()
    (row,) = [ln for ln in md.splitlines() if ln.startswith("| BP2 | 2 |")]
    assert r"(2 m^{3} \odot ((w^{4})^T \delta^{4}))" in row
    assert "| dropout | 3 |" in md and "| forward | 3 | $a^{3} = 2 a^{2} m^{3}" in md
    # without dropout BP2 has no mask
    (plain,) = [ln for ln in str(plain_net().equations()).splitlines() if ln.startswith("BP2")]
    assert "δ¹ = ((w²)ᵀ δ²) ⊙ σ′(z¹)" in plain and "·m" not in plain
