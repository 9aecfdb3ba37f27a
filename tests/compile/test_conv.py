"""Convolution and max-pooling compiled (chapter 6): gradients against finite differences and an independent
implementation (``scipy.signal.correlate``/``convolve``, a hand-written max-pool, PyTorch when installed), the two
backends against each other, the whole-epoch kernel against mini-batch updates through ``gradients``, max-pool
ties, bad declarations, float32, model files, renderings and a small net on real MNIST.

Numba compiles cost seconds, so every numba model is compiled once per module (``_compiled``) and its parameters
re-initialised per test; the hypothesis examples use the NumPy backend (a compile there costs a fraction of a
second) and the fixed numba cases cover the same layers.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import sympy as sp
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import symbp as sb
from symbp import a, y, z
from symbp.compile.backends.numba import NumbaBackend
from symbp.train import serialize

I, C, P, D, Drop = sb.Input, sb.Conv2D, sb.MaxPool, sb.Dense, sb.Dropout
BACKENDS = ("numba", "numpy")
ACTS = {"sigmoid": sb.sigmoid, "tanh": sb.tanh, "softplus": sb.softplus, "linear": sb.linear, "relu": sb.relu,
        "ztanh": sb.Activation.parse("ztanh", "z*tanh(z)")}
SMOOTH = ("sigmoid", "tanh", "softplus", "linear", "ztanh")


# ----------------------------------------------------------------------------------------------- networks
def stacked():
    """conv (two channels, a 3x2 kernel) → pool (drops the last row and column) → FC → softmax."""
    return sb.Network([I((2, 7, 6)), C(3, (3, 2), sb.tanh), P((2, 2)), D(4, sb.sigmoid), D(3, sb.softmax)],
                      cost=sb.log_likelihood)


def deep():
    """Two convolutions, relu then softplus, a pool and a dropout between them: ∂C/∂a of a convolution (the
    full convolution) and dropout on an image-shaped layer."""
    return sb.Network([I((1, 8, 7)), C(2, (3, 3), sb.relu), P((2, 2)), Drop(0.25), C(3, (2, 2), sb.softplus),
                       D(2, sb.sigmoid)], cost=sb.cross_entropy)


def ties():
    """A linear 1x1 convolution that copies channel 0 (W = [1, 0], b = 0; channel 1 tags the positions), a 2x2
    pool over a 5x7 image (the last row and column fill no window) and one linear output."""
    return sb.Network([I((2, 5, 7)), C(1, (1, 1), sb.linear), P((2, 2)), D(1, sb.linear)], cost=sb.quadratic)


def mnist_net():
    return sb.Network([I((1, 28, 28)), C(4, (5, 5), sb.relu), P((2, 2)), D(10, sb.softmax)], cost=sb.log_likelihood)


NETS = {"stacked": stacked, "deep": deep, "ties": ties, "mnist": mnist_net}
_networks: dict = {}
_models: dict = {}


def _compiled(name: str, backend: str, dtype: str = "float64", seed: int = 0):
    """The module's compiled model of ``name`` (one compile per backend and dtype), parameters re-initialised."""
    if name not in _networks:
        _networks[name] = NETS[name]()
    key = (name, backend, dtype)
    if key not in _models:
        _models[key] = _networks[name].compile(backend=backend, dtype=dtype, seed=seed)
    m = _models[key]
    m.init_params("default", seed=seed)
    return m


# ------------------------------------------------------------------------------- independent reference
def _fns(act: sb.Activation):
    """σ and σ′ of the declared expression as NumPy functions (sympy.diff; no symbp derivation)."""
    f = sp.lambdify(z, act.expr, "numpy")
    d = sp.lambdify(z, sp.diff(act.expr, z), "numpy")
    return (lambda Z: np.broadcast_to(f(Z), Z.shape).astype(np.float64),
            lambda Z: np.broadcast_to(d(Z), Z.shape).astype(np.float64))


def _correlate(A, W, b):
    """z[n, f] = Σ_c correlate(A[n, c], W[f, c], 'valid') + b[f] (scipy)."""
    n, f = A.shape[0], W.shape[0]
    out = [[sum(scipy.signal.correlate(A[k, c], W[g, c], mode="valid") for c in range(A.shape[1])) + b[g]
            for g in range(f)] for k in range(n)]
    return np.array(out, dtype=np.float64)


def _windows(shape, window):
    (_, h, w), (ph, pw) = shape[1:], window
    for i in range(h // ph):
        for j in range(w // pw):
            yield i, j, slice(i * ph, (i + 1) * ph), slice(j * pw, (j + 1) * pw)


def _maxpool(A, window):
    """Max over non-overlapping windows, the border that fills none dropped; the first maximum in row-major
    order (np.argmax of the window's row-major ravel) is the one recorded."""
    n, c, h, w = A.shape
    ph, pw = window
    out = np.empty((n, c, h // ph, w // pw))
    arg = np.empty((n, c, h // ph, w // pw), dtype=np.int64)
    for k in range(n):
        for ch in range(c):
            for i, j, rs, cs in _windows(A.shape, window):
                flat = A[k, ch, rs, cs].ravel()
                arg[k, ch, i, j] = int(np.argmax(flat))
                out[k, ch, i, j] = flat[arg[k, ch, i, j]]
    return out, arg


def _softmax(Z):
    e = np.exp(Z - Z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def ref_forward(net, params, X):
    """[(layer, input, z, output, extra)] for every layer: float64 NumPy, scipy for the convolution."""
    A = np.asarray(X, np.float64).reshape((len(X), *net.shapes[0]))
    params = iter(params)
    trace = []
    for layer in net.layers[1:]:
        Z = extra = None
        if isinstance(layer, sb.Conv2D):
            W, b = (np.asarray(p, np.float64) for p in next(params))
            Z = _correlate(A, W, b)
            out = _fns(layer.activation)[0](Z)
        elif isinstance(layer, sb.MaxPool):
            out, extra = _maxpool(A, layer.window)
        elif isinstance(layer, sb.Dense):
            W, b = (np.asarray(p, np.float64) for p in next(params))
            Z = A.reshape(len(A), -1) @ W.T + b
            out = _softmax(Z) if layer.activation.vector else _fns(layer.activation)[0](Z)
        else:  # dropout: the identity at inference
            out = A
        trace.append((layer, A, Z, out, extra))
        A = out
    return trace


def _cost_fns(net):
    c = net.cost.expr
    return sp.lambdify((a, y), c, "numpy"), sp.lambdify((a, y), sp.diff(c, a), "numpy")


def ref_cost(net, params, X, Y):
    out = ref_forward(net, params, X)[-1][3]
    return float(np.sum(np.broadcast_to(_cost_fns(net)[0](out, Y), out.shape))) / len(X)


def ref_gradients(net, params, X, Y):
    """[(dW, db)] of the mean cost by a backward pass written from the textbook rules: ∂C/∂W as Σ_n
    correlate(a, δ, 'valid'), ∂C/∂a as Σ_f convolve(δ, W, 'full'), the pool's gradient at its recorded maximum."""
    trace = ref_forward(net, params, X)
    n = len(X)
    out = trace[-1][3]
    dc = np.broadcast_to(_cost_fns(net)[1](out, Y), out.shape)
    grads = []
    g = dc
    plist = list(params)
    k = len(plist)
    for layer, A, Z, out, extra in reversed(trace):
        if isinstance(layer, sb.Dense):
            k -= 1
            W = np.asarray(plist[k][0], np.float64)
            if layer.activation.vector:
                delta = out * (g - np.sum(out * g, axis=1, keepdims=True))
            else:
                delta = g * _fns(layer.activation)[1](Z)
            flat = A.reshape(n, -1)
            grads.append((delta.T @ flat / n, delta.sum(axis=0) / n))
            g = (delta @ W).reshape(A.shape)
        elif isinstance(layer, sb.Conv2D):
            k -= 1
            W = np.asarray(plist[k][0], np.float64)
            delta = g * _fns(layer.activation)[1](Z)
            dW = np.array([[sum(scipy.signal.correlate(A[r, c], delta[r, f], mode="valid") for r in range(n))
                            for c in range(A.shape[1])] for f in range(W.shape[0])]) / n
            grads.append((dW, delta.sum(axis=(0, 2, 3)) / n))
            g = np.array([[sum(scipy.signal.convolve(delta[r, f], W[f, c], mode="full") for f in range(W.shape[0]))
                           for c in range(A.shape[1])] for r in range(n)])
        elif isinstance(layer, sb.MaxPool):
            ph, pw = layer.window
            back = np.zeros_like(A)
            for r in range(n):
                for c in range(A.shape[1]):
                    for i, j, rs, cs in _windows(A.shape, layer.window):
                        p, q = divmod(int(extra[r, c, i, j]), pw)
                        back[r, c, rs.start + p, cs.start + q] = g[r, c, i, j]
            g = back
        # dropout: identity
    return grads[::-1]


def pool_gap(net, params, X) -> float:
    """The smallest gap between a window's largest and second largest value, over every pool and window (inf when
    no window has two elements): finite differences must not cross a change of the maximum.  A tie at exactly 0
    (relu units that are off) is left out: it stays one while no relu crosses its kink, checked separately."""
    gaps = [np.inf]
    for layer, A, *_ in ref_forward(net, params, X):
        if isinstance(layer, sb.MaxPool) and layer.window[0] * layer.window[1] > 1:
            for r in range(len(A)):
                for c in range(A.shape[1]):
                    for _, _, rs, cs in _windows(A.shape, layer.window):
                        top = np.sort(A[r, c, rs, cs].ravel())
                        if top[-1] != 0 or top[-2] != 0:
                            gaps.append(top[-1] - top[-2])
    return float(min(gaps))


def fd_gradients(m, X, Y, h=1e-6):
    """Central differences (C(θ + h) − C(θ − h)) / 2h of ``m.cost`` for every parameter."""
    base = m.params
    out = []
    try:
        for l, pair in enumerate(base):
            grads = []
            for k, arr in enumerate(pair):
                gr = np.zeros(arr.shape)
                for idx in np.ndindex(arr.shape):
                    vals = []
                    for s in (1, -1):
                        trial = [tuple(p.copy() for p in pr) for pr in base]
                        trial[l][k][idx] += s * h
                        m.set_params(trial)
                        vals.append(m.cost(X, Y))
                    gr[idx] = (vals[0] - vals[1]) / (2 * h)
                grads.append(gr)
            out.append(tuple(grads))
    finally:
        m.set_params(base)
    return out


def data(net, rows, rng, image=False):
    X = rng.uniform(-1, 1, (rows, net.sizes[0]))
    n_out = net.sizes[-1]
    if net.cost is sb.log_likelihood:
        Y = np.eye(n_out)[rng.integers(0, n_out, rows)]
    elif net.cost is sb.cross_entropy:
        Y = rng.uniform(0.05, 0.95, (rows, n_out))
    else:
        Y = rng.uniform(-1, 1, (rows, n_out))
    return (X.reshape(rows, *net.shapes[0]) if image else X), Y


def assert_grads_close(got, want, what="", **tol):
    assert len(got) == len(want), what
    for l, (pg, pw) in enumerate(zip(got, want), start=1):
        for name, gg, ww in zip("Wb", pg, pw):
            np.testing.assert_allclose(gg, ww, err_msg=f"{what} ∂C/∂{name}{l}", **tol)


def random_params(m, rng, scale=0.7):
    return [tuple(rng.standard_normal(p.shape) * scale for p in pair) for pair in m.params]


# ------------------------------------------------------------------ gradients: finite differences, reference
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["stacked", "deep"])
def test_fixed_nets_match_finite_differences_and_scipy(name, backend):
    """The fixed nets on both backends: forward and cost equal the scipy reference, gradients equal it (1e-11)
    and central differences (1e-6)."""
    m = _compiled(name, backend)
    net = m.network
    rng = np.random.default_rng(3)
    X, Y = data(net, 6, rng)
    m.set_params(random_params(m, rng))
    params = m.params
    trace = ref_forward(net, params, X)
    np.testing.assert_allclose(m.feedforward(X), trace[-1][3], rtol=1e-12, atol=1e-13)
    assert m.cost(X, Y) == pytest.approx(ref_cost(net, params, X, Y), rel=1e-12)
    grads = m.gradients(X, Y)
    assert_grads_close(grads, ref_gradients(net, params, X, Y), f"{name}/{backend} vs scipy", rtol=1e-10, atol=1e-12)
    if name == "deep":  # relu: no unit within a step of its kink, no window within a step of a new maximum
        zs = [Z for layer, _, Z, _, _ in trace if layer.activation is sb.relu]
        assert min(np.abs(Z).min() for Z in zs) > 1e-4
    assert pool_gap(net, params, X) > 1e-4
    assert_grads_close(grads, fd_gradients(m, X, Y), f"{name}/{backend} vs finite differences",
                       rtol=1e-5, atol=1e-7)


@st.composite
def conv_nets(draw):
    """A random stack: a convolution (1–2 channels, 1–3 maps, kernels up to 3x3), maybe a pool, maybe a second
    convolution, maybe a hidden dense layer, then a flat output with a cost that suits it."""
    act = lambda: ACTS[draw(st.sampled_from(SMOOTH))]  # noqa: E731
    ch, h, w = draw(st.integers(1, 2)), draw(st.integers(3, 7)), draw(st.integers(3, 7))
    layers = [I((ch, h, w))]
    kh, kw = draw(st.integers(1, min(3, h))), draw(st.integers(1, min(3, w)))
    layers.append(C(draw(st.integers(1, 3)), (kh, kw), act()))
    h, w = h - kh + 1, w - kw + 1
    if draw(st.booleans()):
        ph, pw = draw(st.integers(1, min(2, h))), draw(st.integers(1, min(3, w)))
        layers.append(P((ph, pw)))
        h, w = h // ph, w // pw
    if h >= 2 and w >= 2 and draw(st.booleans()):
        kh, kw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
        layers.append(C(draw(st.integers(1, 2)), (kh, kw), act()))
    if draw(st.booleans()):
        layers.append(D(3, act()))
    out, cost = draw(st.sampled_from([(sb.softmax, sb.log_likelihood), (sb.sigmoid, sb.cross_entropy),
                                      (None, sb.quadratic)]))
    layers.append(D(draw(st.integers(2, 3)), out or act()))
    return sb.Network(layers, cost=cost), draw(st.integers(1, 4)), draw(st.integers(0, 2**32 - 1))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_nets())
def test_random_conv_nets_numpy_backend(case):
    """Random shapes, kernels, channel counts and activations (NumPy backend): forward and gradients equal the
    scipy reference, gradients equal central differences."""
    net, rows, seed = case
    m = net.compile(backend="numpy", seed=seed % 1000)
    rng = np.random.default_rng(seed)
    X, Y = data(net, rows, rng, image=bool(seed % 2))
    params = m.params
    assume(pool_gap(net, params, X) > 1e-4)
    np.testing.assert_allclose(m.feedforward(X), ref_forward(net, params, X)[-1][3], rtol=1e-11, atol=1e-12)
    grads = m.gradients(X, Y)
    assert_grads_close(grads, ref_gradients(net, params, X, Y), f"{net!r} vs scipy", rtol=1e-9, atol=1e-12)
    assert_grads_close(grads, fd_gradients(m, X, Y), f"{net!r} vs finite differences", rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------------------------- backends, epochs
def step_by_step(m, X, Y, order, mb, eta, lmbda, n=None):
    """Mini-batch SGD through ``gradients``: W ← (1 − ηλ/n)·W − η·∂C/∂W, b ← b − η·∂C/∂b (conv and dense alike)."""
    n = len(order) if n is None else n
    decay = 1.0 - eta * lmbda / n
    params = m.params
    for k in range(0, len(order), mb):  # the book's epoch: a short last mini-batch too, with η/its size
        rows = order[k:k + mb]
        m.set_params(params)
        grads = m.gradients(X[rows], Y[rows])
        params = [(decay * W - eta * dW, b - eta * db) for (W, b), (dW, db) in zip(params, grads)]
    return params


@pytest.mark.parametrize("backend", BACKENDS)
def test_run_epoch_equals_minibatch_updates(backend):
    m = _compiled("stacked", backend)
    rng = np.random.default_rng(5)
    X, Y = data(m.network, 23, rng)
    m.set_params(random_params(m, rng))
    start = m.params
    order = rng.permutation(23)  # 4 mini-batches of 5, then one of 3
    want = step_by_step(m, X, Y, order, 5, 0.4, 2.5)
    m.set_params(start)
    m.run_epoch(X, Y, order, 5, 0.4, 2.5)
    assert_grads_close(m.params, want, f"{backend} run_epoch", rtol=1e-12, atol=1e-13)
    # the decay acts on W alone: λ > 0 against λ = 0 differs by −(ηλ/n)·W after one mini-batch
    m.set_params(start)
    m.run_epoch(X, Y, order[:5], 5, 0.4, 2.5)
    decayed = m.params
    m.set_params(start)
    m.run_epoch(X, Y, order[:5], 5, 0.4, 0.0)
    for (Wd, bd), (W0, b0), (W, _) in zip(decayed, m.params, start):
        np.testing.assert_allclose(Wd - W0, -(0.4 * 2.5 / 5) * W, rtol=1e-9, atol=1e-14)
        np.testing.assert_array_equal(bd, b0)


@pytest.mark.parametrize("name", ["stacked", "deep"])
def test_backends_agree(name):
    """numba and NumPy: outputs, costs and gradients to 1e-12, and the parameters after a whole-epoch call with
    weight decay (and, in ``deep``, dropout masks drawn inside the kernel)."""
    mb, mn = _compiled(name, "numba"), _compiled(name, "numpy")
    rng = np.random.default_rng(11)
    X, Y = data(mb.network, 17, rng)
    params = random_params(mb, rng, scale=0.6)
    for m in (mb, mn):
        m.set_params(params)
    np.testing.assert_allclose(mb.feedforward(X), mn.feedforward(X), rtol=1e-12, atol=1e-14)
    assert mb.cost(X, Y) == pytest.approx(mn.cost(X, Y), rel=1e-12)
    assert_grads_close(mb.gradients(X, Y), mn.gradients(X, Y), name, rtol=1e-12, atol=1e-14)
    order = rng.permutation(17)
    for m in (mb, mn):
        m.run_epoch(X.reshape(17, *m.network.shapes[0]), Y, order, 4, 0.3, 1.5, seed=7, epoch=2)
    assert_grads_close(mb.params, mn.params, f"{name} after run_epoch", rtol=1e-12, atol=1e-14)
    assert any(np.abs(W - W0).max() > 1e-3 for (W, _), (W0, _) in zip(mb.params, params))


# ------------------------------------------------------------------------------------------------ PyTorch
def _torch():
    try:
        import torch
    except ImportError:  # pragma: no cover - depends on the environment
        pytest.skip("PyTorch is not installed (pip install torch); the scipy reference covers the same rules")
    return torch


def torch_forward_cost(torch, net, params, X, Y):
    F = torch.nn.functional
    acts = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu, "softplus": F.softplus,
            "linear": lambda t: t, "softmax": lambda t: torch.softmax(t, dim=1)}
    A = torch.tensor(X, dtype=torch.float64).reshape(len(X), *net.shapes[0])
    ts = iter(params)
    for layer in net.layers[1:]:
        if isinstance(layer, sb.Conv2D):
            W, b = next(ts)
            A = acts[layer.activation.name](F.conv2d(A, W, b))
        elif isinstance(layer, sb.MaxPool):
            A = F.max_pool2d(A, layer.window)  # stride = window, the incomplete border dropped (floor mode)
        elif isinstance(layer, sb.Dense):
            W, b = next(ts)
            A = acts[layer.activation.name](F.linear(torch.flatten(A, 1), W, b))
    Yt = torch.tensor(Y, dtype=torch.float64)
    if net.cost is sb.log_likelihood:
        per = -(Yt * torch.log(A))
    elif net.cost is sb.cross_entropy:
        per = -(Yt * torch.log(A) + (1 - Yt) * torch.log(1 - A))
    else:
        per = 0.5 * (A - Yt) ** 2
    return A, per.sum() / len(X)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["stacked", "deep"])
def test_matches_pytorch(name, backend):
    """Outputs and every gradient equal PyTorch's conv2d / max_pool2d / linear with autograd (float64)."""
    torch = _torch()
    m = _compiled(name, backend)
    rng = np.random.default_rng(21)
    X, Y = data(m.network, 5, rng)
    m.set_params(random_params(m, rng))
    tparams = [tuple(torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in pair) for pair in m.params]
    out, cost = torch_forward_cost(torch, m.network, tparams, X, Y)
    cost.backward()
    np.testing.assert_allclose(m.feedforward(X), out.detach().numpy(), rtol=1e-12, atol=1e-14)
    assert m.cost(X, Y) == pytest.approx(float(cost.detach()), rel=1e-12)
    want = [tuple(p.grad.numpy() for p in pair) for pair in tparams]
    assert_grads_close(m.gradients(X, Y), want, f"{name}/{backend} vs torch", rtol=1e-10, atol=1e-13)


# ------------------------------------------------------------------------------------------------ ties
TIE_WINDOWS = [  # channel 0 of the 2x3 grid of 2x2 windows, and where the first maximum (row-major) lies
    ([[5, 5], [5, 5]], (0, 0)),
    ([[1, 3], [3, 2]], (0, 1)),
    ([[2, 1], [2, 2]], (0, 0)),
    ([[0, -1], [4, 4]], (1, 0)),
    ([[-3, -5], [-3, -3]], (0, 0)),
    ([[-2, 0], [7, 7]], (1, 0)),
]


def _tie_input():
    x = np.full((2, 5, 7), 0.0)
    x[0] = 9.0  # the last row and column fill no window: larger than every window's maximum
    for k, (win, _) in enumerate(TIE_WINDOWS):
        i, j = divmod(k, 3)
        x[0, 2 * i:2 * i + 2, 2 * j:2 * j + 2] = win
    x[1] = 1 + np.arange(35).reshape(5, 7)  # tags: position (r, c) carries 1 + 7r + c
    return x[None]


@pytest.mark.parametrize("backend", BACKENDS)
def test_maxpool_ties_go_to_the_first_maximum(backend):
    """With W¹ = [1, 0] the convolution copies channel 0, and ∂C/∂W¹[0, 1] = Σ δ¹·tag reads off where the pool's
    gradient went: one window at a time (the output weight selecting it), through ``gradients`` and through the
    whole-epoch kernel, always the first maximum in row-major order; the unpooled border gets nothing."""
    m = _compiled("ties", backend)
    x = _tie_input()
    conv = (np.array([1.0, 0.0]).reshape(1, 2, 1, 1), np.zeros(1))
    m.set_params([conv, (np.ones((1, 6)), np.zeros(1))])
    pooled = np.array([np.max(win) for win, _ in TIE_WINDOWS])
    np.testing.assert_array_equal(m.feedforward(x), [[pooled.sum()]])  # the 9s of the border are not pooled
    for k, (_, (p, q)) in enumerate(TIE_WINDOWS):
        i, j = divmod(k, 3)
        v = np.eye(6)[k:k + 1]
        m.set_params([conv, (v, np.zeros(1))])
        target = np.array([[pooled[k] - 1.0]])  # a − y = 1, so the window's ∂C/∂a² is 1
        (dW1, db1), _ = m.gradients(x, target)
        assert db1[0] == 1.0
        assert dW1[0, 1, 0, 0] == 1 + 7 * (2 * i + p) + (2 * j + q), f"window {k}"
        m.run_epoch(x, target, np.array([0]), 1, 1.0)  # η = 1: W¹[0, 1] ← 0 − tag
        assert m.params[0][0][0, 1, 0, 0] == -(1 + 7 * (2 * i + p) + (2 * j + q)), f"window {k}, sgd_epoch"
    m.set_params([conv, (np.ones((1, 6)), np.zeros(1))])
    (dW1, _), _ = m.gradients(x, np.array([[pooled.sum() - 1.0]]))
    want = sum(1 + 7 * (2 * (k // 3) + p) + 2 * (k % 3) + q for k, (_, (p, q)) in enumerate(TIE_WINDOWS))
    assert dW1[0, 1, 0, 0] == want


def test_unpooled_border_gets_no_gradient():
    """∂C/∂a¹ is zero on the rows and columns that fill no window: ∂C/∂W¹ of a 1x1 convolution is unchanged by
    any value the input has there."""
    m = _compiled("ties", "numpy")
    rng = np.random.default_rng(2)
    m.set_params(random_params(m, rng))
    x = rng.uniform(-1, 1, (3, 2, 5, 7))
    target = rng.uniform(-1, 1, (3, 1))
    before = m.gradients(x, target)
    x[:, :, 4, :] = 50.0 * rng.standard_normal((3, 2, 7))
    x[:, :, :, 6] = 50.0
    assert_grads_close(m.gradients(x, target), before, "border", rtol=0, atol=0)


# ------------------------------------------------------------------------------------------ declarations
BAD = {
    "kernel-larger-than-input": (lambda: [I((1, 4, 4)), C(2, (5, 3), sb.tanh), D(2, sb.sigmoid)],
                                 r"layer 1 \(conv2x5x3:tanh\): Conv2D: a 5x3 kernel is larger than its 4x4 input"),
    "kernel-after-pool": (lambda: [I((1, 6, 6)), P((2, 2)), C(1, (3, 4), sb.tanh), D(2, sb.sigmoid)],
                          r"layer 2 .*3x4 kernel is larger than its 3x3 input"),
    "pool-leaves-nothing": (lambda: [I((1, 3, 5)), P((4, 2)), D(2, sb.sigmoid)],
                            r"layer 1 \(pool4x2\): MaxPool: a 4x2 window leaves nothing of a 3x5 input"),
    "conv-after-dense": (lambda: [I((1, 4, 4)), D(8, sb.tanh), C(2, (2, 2), sb.tanh), D(2, sb.sigmoid)],
                         r"layer 2 \(conv2x2x2:tanh\): Conv2D needs an image-shaped input"),
    "conv-on-flat-input": (lambda: [I(16), C(2, (2, 2), sb.tanh), D(2, sb.sigmoid)],
                           r"layer 1 .*Conv2D needs an image-shaped input .* got \(16,\)"),
    "pool-after-dense": (lambda: [I((1, 4, 4)), D(8, sb.tanh), P((2, 2)), D(2, sb.sigmoid)],
                         r"layer 2 \(pool2x2\): MaxPool needs an image-shaped input"),
    "conv-last": (lambda: [I((1, 4, 4)), C(2, (2, 2), sb.tanh)],
                  r"layer 1 \(conv2x2x2:tanh\): the output layer must be flat"),
    "pool-last": (lambda: [I((1, 4, 4)), C(2, (2, 2), sb.tanh), P((2, 2))],
                  r"layer 2 \(pool2x2\): the output layer must be flat"),
    "softmax-conv": (lambda: [I((1, 4, 4)), C(2, (2, 2), sb.softmax), D(2, sb.sigmoid)],
                     r"Conv2D: softmax normalises over a whole layer"),
    "softmax-hidden-dense-after-conv": (lambda: [I((1, 4, 4)), C(2, (2, 2), sb.tanh), D(3, sb.softmax),
                                                 D(2, sb.sigmoid)], r"layer 2: softmax normalises"),
}


@pytest.mark.parametrize("layers,match", BAD.values(), ids=BAD.keys())
def test_bad_declarations(layers, match):
    with pytest.raises(ValueError, match=match):
        sb.Network(layers(), cost=sb.quadratic)


@pytest.mark.parametrize("make,match", [
    (lambda: C(0, (2, 2), sb.tanh), "Conv2D: layer size must be a positive integer"),
    (lambda: C(2, (2, 0), sb.tanh), "Conv2D: layer size must be a positive integer"),
    (lambda: C(2, (2, 2, 2), sb.tanh), r"Conv2D: the kernel size must be a pair"),
    (lambda: C(2, 2.5, sb.tanh), r"Conv2D: the kernel size must be a pair"),
    (lambda: C(2, (2, 2), "nonsense"), r"Conv2D: unknown activation 'nonsense'"),
    (lambda: P((2,)), r"MaxPool: the window must be a pair"),
    (lambda: P((True, 2)), r"MaxPool: layer size must be a positive integer"),
    (lambda: I((1, 2, 3, 4)), r"Input: a shape has 1 to 3 axes"),
])
def test_bad_layer_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_square_shorthands():
    assert C(2, 3, sb.tanh).kernel == (3, 3) and P(2).window == (2, 2)
    assert sb.Network([I((1, 5, 5)), C(2, 3, sb.tanh), P(3), D(2, sb.sigmoid)], cost=sb.quadratic).shapes == (
        (1, 5, 5), (2, 3, 3), (2, 1, 1), (2,))


@pytest.mark.parametrize("call", ["feedforward", "gradients", "cost", "run_epoch", "fit", "evaluate"])
def test_x_must_match_the_declared_input(call):
    """X as (n, C, H, W) or (n, C·H·W) rows, and nothing else, in every method; the message says both."""
    m = _compiled("stacked", "numpy")
    rng = np.random.default_rng(0)
    X, Y = data(m.network, 4, rng)
    run = {"feedforward": lambda X: m.feedforward(X), "gradients": lambda X: m.gradients(X, Y),
           "cost": lambda X: m.cost(X, Y), "run_epoch": lambda X: m.run_epoch(X, Y, np.arange(4), 2, 0.1),
           "fit": lambda X: m.fit((X, Y), epochs=1, batch_size=2, progress=False),
           "evaluate": lambda X: m.evaluate((X, Y))}[call]
    run(X)
    run(X.reshape(4, 2, 7, 6))
    for bad in (X.reshape(4, 2, 6, 7), X.reshape(4, 1, 14, 6), np.zeros((4, 2, 7, 5))):
        with pytest.raises(ValueError, match=r"X must be \(n, 2, 7, 6\) images or \(n, 84\) rows"):
            run(bad)
    with pytest.raises(ValueError, match="X must have 84 columns"):
        run(X[:, :80])
    with pytest.raises(ValueError, match="X must be 2-d"):
        run(X.reshape(4, 14, 6))


def test_nonfinite_output_names_the_conv_layer():
    """A NaN at the output is traced to the first layer whose activation is not finite, through each layer's NumPy
    ``reference`` fed in its own shape (a convolution and a pool read (n, C, H, W))."""
    square = sb.Activation.parse("sq", "z**2")
    net = sb.Network([I((1, 4, 4)), C(2, (2, 2), square), P((2, 2)), D(2, sb.sigmoid)], cost=sb.quadratic)
    m = net.compile(backend="numpy", seed=0)
    m.set_params([(np.full((2, 1, 2, 2), 1e200), np.zeros(2)), (np.array([[1.0, -1.0], [1.0, 1.0]]), np.zeros(2))])
    X = np.ones((3, 1, 4, 4))
    X[0] = 1e-300  # finite all through
    with pytest.raises(FloatingPointError, match=r"feedforward: layer 1 \(conv2x2x2:sq\) gives NaN/inf at row 1"):
        m.feedforward(X)


# ---------------------------------------------------------------------------------------------- float32
@pytest.fixture(scope="module")
def f32_models():
    return _compiled("mnist", "numba", "float32"), _compiled("mnist", "numpy", "float32")


def test_float32_backends_agree_and_match_float64(f32_models):
    mb, mn = f32_models
    net = mb.network
    rng = np.random.default_rng(4)
    X = rng.uniform(0, 1, (6, 784)).astype(np.float32)
    Y = np.eye(10)[rng.integers(0, 10, 6)]
    for m in (mb, mn):
        m.init_params("default", seed=1)
        assert all(p.dtype == np.float32 for pair in m.params for p in pair)
    out_b, out_n = mb.feedforward(X), mn.feedforward(X)
    assert out_b.dtype == np.float32
    np.testing.assert_allclose(out_b, out_n, rtol=2e-5, atol=1e-6)
    params = [tuple(p.astype(np.float64) for p in pair) for pair in mb.params]
    np.testing.assert_allclose(out_b, ref_forward(net, params, X)[-1][3], rtol=1e-4, atol=1e-5)
    gb, gn = mb.gradients(X, Y), mn.gradients(X, Y)
    want = ref_gradients(net, params, X.astype(np.float64), Y)
    scale = max(np.abs(g).max() for pair in want for g in pair)
    assert_grads_close(gb, gn, "float32 numba vs numpy", rtol=1e-4, atol=1e-5 * scale)
    assert_grads_close(gb, want, "float32 vs float64 reference", rtol=1e-3, atol=1e-5 * scale)
    order = np.arange(6)
    for m in (mb, mn):
        m.run_epoch(X, Y, order, 3, 0.5, 1.0)
    assert_grads_close(mb.params, mn.params, "float32 after run_epoch", rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------------- files and renderings
@pytest.mark.parametrize("backend", BACKENDS)
def test_save_load_round_trip(tmp_path, backend):
    m = _compiled("stacked", backend)
    rng = np.random.default_rng(8)
    m.set_params(random_params(m, rng))
    X, _ = data(m.network, 5, rng)
    m.save(tmp_path / "conv")
    back = sb.load(tmp_path / "conv")
    assert back.backend == backend and back.network.layers == m.network.layers
    assert back.network.shapes == m.network.shapes
    for pair, pair0 in zip(back.params, m.params):
        for p, p0 in zip(pair, pair0):
            np.testing.assert_array_equal(p, p0)
    np.testing.assert_array_equal(back.feedforward(X), m.feedforward(X))
    other = serialize.load(tmp_path / "conv", backend="numpy")
    np.testing.assert_allclose(other.feedforward(X), m.feedforward(X), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("n,match", [
    ([2, 0, 6], "'n' must be a size or a list of 1 to 3 sizes"),
    ([2, True, 6], "'n' must be a size or a list of 1 to 3 sizes"),
    ([2, 7.0, 6], "'n' must be a size or a list of 1 to 3 sizes"),
    ([1, 2, 7, 6], "'n' must be a size or a list of 1 to 3 sizes"),
    ([], "'n' must be a size or a list of 1 to 3 sizes"),
    ([2**31, 2**31, 1], "'n' must be a size or a list of 1 to 3 sizes"),
    ([2, 6, 7], r"W2 of shape \(4, 18\) needs"),  # the same size in another layout: the arrays disagree
])
def test_tampered_image_input_is_refused(tmp_path, n, match):
    import json

    m = _compiled("stacked", "numpy")
    m.save(tmp_path / "conv")
    jpath = tmp_path / "conv.json"
    doc = json.loads(jpath.read_text())
    assert doc["layers"][0] == {"kind": "input", "n": [2, 7, 6]}
    doc["layers"][0]["n"] = n
    jpath.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=match):
        sb.load(tmp_path / "conv")


def test_equations_render_the_derived_rules():
    net = deep()
    eqs = net.equations()
    text, tex, md = str(eqs), eqs.latex(), eqs.markdown()
    # the built-ins are their declarations: each rule solved from the index equations, printed as BP1–BP4 rows
    assert "z¹[f,i,j] = Σ_{c<1,p<3,q<3} W¹[f,c,p,q]·a⁰[c,i+p,j+q] + b¹[f]   (conv2x3x3 → 2x6x5)" in text
    assert "z²[c,i,j] = max_{p<2,q<2} a¹[c,2i+p,2j+q]   (maxpool2x2 → 2x3x2)      a² = z²" in text
    # the second convolution's input rule, a full convolution: its range condition a loop bound
    assert "∂C/∂a³[c,y,u] = Σ_{f<3,i<2,j<1} δ⁴[f,i,j]·W⁴[f,c,y−i,u−j]   where 0 ≤ y−i ≤ 1   [gather]" in text
    assert "∂C/∂W⁴[f,c,p,q] = Σ_{i<2,j<1} δ⁴[f,i,j]·a³[c,i+p,j+q]" in text
    assert "(p*,q*) the first maximum of the window of (c,i,j)" in text
    assert any("pooling before σ: layer 1's σ = relu" in note for note in eqs.notes)
    assert tex.startswith("\\begin{align*}") and tex.count("\\begin{align*}") == 1
    body = tex.split("\\end{align*}")[0]
    rows = body.split("\\\\\n")[1:]
    assert all(row.count("&=") + row.count("&\\to") == 1 for row in rows), body  # one alignment point per row
    assert r"\frac{\partial C}{\partial W^{4}_{f,c,p,q}}" in tex and r"a^{3}_{c,i+p,j+q}" in tex
    assert r"\frac{\partial C}{\partial w^{4}_{jk}}" not in tex  # no dense BP4 for a convolution
    assert r"| forward | 1 | $z^{1}_{f,i,j} = \sum_{c<" in md
    assert r"| BP4 | 5 | $\partial C/\partial w^{5}_{jk}" in md
    assert r"w^{1}_{jk}" not in md
    assert eqs._repr_markdown_() == md and "%" not in eqs._repr_latex_()


# ----------------------------------------------------------------------------------------------- MNIST
def test_small_conv_net_learns_mnist(data_dir, f32_models):
    """4 maps of 5x5, relu, a 2x2 pool and softmax, float32, one epoch on 3,000 images as (n, 1, 28, 28)."""
    m, _ = f32_models
    mnist = sb.data.load_mnist(data_dir, dtype="float32", download=False)
    (X, labels), (Xv, yv) = mnist.train, mnist.validation
    m.init_params("default", seed=0)
    before = m.evaluate((Xv[:1000], yv[:1000]))
    hist = m.fit((X[:3000].reshape(-1, 1, 28, 28), labels[:3000]), epochs=1, batch_size=10, eta=0.1,
                 evaluation_data=(Xv[:1000], yv[:1000]), seed=0, progress=False)
    assert hist.evaluation_accuracy[-1] > 0.6 > before + 0.3  # chance is 10%


def _assert_same_epoch(m1, m2, X, Y, order, batch_size):
    """One epoch (η 0.3, no decay) in each model from their current parameters gives the same parameters."""
    for m in (m1, m2):
        m.run_epoch(X, Y, order, batch_size, 0.3, 1.0)
    for (W1, b1), (W2, b2) in zip(m1.params, m2.params):
        np.testing.assert_allclose(W1, W2, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(b1, b2, rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------------------ pooling before a monotone σ
@pytest.mark.parametrize(("act", "backend"), [("relu", "numba"), ("sigmoid", "numpy"), ("tanh", "numpy"),
                                             ("softplus", "numpy")])  # each σ once, numba once: compiling dominates
def test_pooling_before_a_monotone_activation_changes_nothing(backend, act, monkeypatch):
    """A conv layer whose σ sympy shows non-decreasing is pooled before σ (network3's order): the same outputs,
    gradients and epoch as pooling after σ, with σ and σ′ at a quarter of the positions."""
    from symbp.derive.layers import declared as declared_rules

    def make():
        return sb.Network([I((2, 9, 8)), C(3, (3, 2), ACTS[act]), P((2, 2)), C(2, (2, 2), ACTS[act]), P((1, 2)),
                           D(3, sb.softmax)], cost=sb.log_likelihood)

    fused = make().compile(backend=backend, seed=0)
    eqs = fused.network.equations()
    assert eqs.layers[1].pool_first and eqs.layers[3].pool_first
    assert f"layer 1's σ = {act} is non-decreasing" in str(eqs)
    names = {b.name for b in fused.programs["sgd_epoch"].buffers}
    assert not {"a1", "a3"} & names  # σ of the conv layers: on the pooled values, in the pools' buffers
    assert "layer 1's σ on the pooled values" in fused.source("sgd_epoch")
    monkeypatch.setattr(declared_rules, "_pool_first", lambda layer, ctx: None)
    # not the fused kernels from the declaration index
    monkeypatch.setattr(NumbaBackend, "declaration_key", lambda self, network, dtype: None)
    after = make().compile(backend=backend, seed=0)
    assert not after.network.equations().layers[1].pool_first
    assert "a1" in {b.name for b in after.programs["sgd_epoch"].buffers}
    assert "on the pooled values" not in after.source("sgd_epoch")
    rng = np.random.default_rng(7)
    X, Y = data(fused.network, 23, rng)
    params = random_params(fused, rng)
    for m in (fused, after):
        m.set_params(params)
    np.testing.assert_allclose(fused.feedforward(X), after.feedforward(X), rtol=1e-13, atol=1e-15)
    for ga, gb in zip(fused.gradients(X, Y), after.gradients(X, Y)):
        for u, v in zip(ga, gb):
            np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-14)
    _assert_same_epoch(fused, after, X, Y, rng.permutation(23), 5)


def test_no_pooling_before_an_activation_that_is_not_monotone():
    net = sb.Network([I((1, 6, 6)), C(2, (3, 3), ACTS["ztanh"]), P((2, 2)), D(2, sb.softmax)],
                     cost=sb.log_likelihood)
    assert net.equations().layers[1].pool_first is None and "pooling before σ" not in str(net.equations())
    assert "a1" in {b.name for b in net.compile(backend="numpy").programs["sgd_epoch"].buffers}


# ------------------------------------------------------------------ im2col in straight-line chunks
def test_phase_split_im2col_equals_the_direct_copies(monkeypatch):
    """im2col copies whole runs of input columns in straight-line chunks; strided or padded convolutions copy
    through the padded, phase-split sample instead (``Correlation.phased``).  Forced through the phase-split
    path, the book's unpadded stride-1 convolutions give the same bits.  The gradients kernel is left out: the
    epoch runs the same backward steps, and each compile here costs seconds."""
    from symbp.compile.program import Correlation

    def make():  # widths 16 and 14: whole straight-line chunks, and a chunk plus a remainder
        return sb.Network([I((1, 20, 20)), C(3, (5, 5), sb.tanh), C(4, (3, 3), sb.sigmoid), P((2, 2)),
                           D(3, sb.softmax)], cost=sb.log_likelihood)

    out = make().compile(backend="numba", seed=0)
    src = out.source("sgd_epoch")
    assert "_t7 = _x3[" in src and "xph_" not in src and "conv_weights_bias(" in src
    monkeypatch.setattr(Correlation, "phased", property(lambda self: self.role == "forward"))
    # not the kernels from the declaration index
    monkeypatch.setattr(NumbaBackend, "declaration_key", lambda self, network, dtype: None)
    helpers = make().compile(backend="numba", seed=0)
    assert "xph_z1[_c, _y, 0, _j" in helpers.source("sgd_epoch")
    rng = np.random.default_rng(3)
    X, Y = data(out.network, 17, rng)
    params = random_params(out, rng)
    for m in (out, helpers):
        m.set_params(params)
    np.testing.assert_array_equal(out.feedforward(X), helpers.feedforward(X))  # one patch matrix, reused
    _assert_same_epoch(out, helpers, X, Y, rng.permutation(17), 4)


# ------------------------------------------------------------------ col2im written once per element
_AXIS = st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 2), st.integers(0, 2), st.integers(3, 9))


@settings(max_examples=80, deadline=None)
@given(_AXIS, _AXIS, st.booleans(), st.data())
def test_col2im_written_once_equals_the_row_gathered_one(rows, cols, accumulate, data):
    """The written-once col2im (``_col2im_once``: each ∂C/∂x element summed from every (p, q) that reaches it)
    and the row-gathered one (``_row_col2im``, accumulating per kernel row) give the same sums, for any kernel,
    stride, dilation and padding, accumulating or not; run as plain Python on a channel of random columns."""
    from symbp.compile.backends.numba import index
    from symbp.compile.program import Correlation

    (kh, sh, dh, ph, h), (kw, sw, dw, pw, w) = rows, cols  # kernel, stride, dilation, padding, size per axis
    ho, wo = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    assume(ho > 0 and wo > 0)
    step = Correlation("input", None, "x", "W", "g", "cols_z", "dcol", "m", (2, h, w), (kh, kw), (1, ho, wo),
                       (sh, sw), (dh, dw), (-ph, -pw), accumulate=accumulate)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    dcol = rng.standard_normal((2 * kh * kw, ho * wo))
    start = rng.standard_normal((2, h, w))

    def run(lines):
        g3 = start.copy() if accumulate else np.full((2, h, w), np.nan)
        exec("\n".join(lines), {"max": max, "min": min}, {"_g3": g3, "dcol": dcol})
        return g3

    once = index._col2im_once(step, "")
    assume(once is not None)  # over the code budget the row-gathered form is the one used
    gathered = (["_g3[...] = 0.0"] if not accumulate else []) + index._row_col2im(step, "")
    np.testing.assert_allclose(run(once), run(gathered), rtol=1e-12, atol=1e-12)


def test_col2im_written_once_where_its_code_stays_small():
    """The modern net's 3×3 stride-2 layers get the written-once col2im; dbl_conv's 5×5 stride-1 layer, whose
    border rows each need their own code, keeps the row-gathered one (compile time: ``index.ONCE_TERMS``)."""
    from symbp.compile.backends.numba import index
    from symbp.compile.program import Correlation

    def step(cin, h, k, s, pad, ho):
        return Correlation("input", None, "x", "W", "g", "cols_z", "dcol", "m", (cin, h, h), (k, k), (8, ho, ho),
                           (s, s), (1, 1), (-pad, -pad))

    assert index._col2im_once(step(16, 28, 3, 2, 1, 14), "") is not None
    assert index._col2im_once(step(20, 12, 5, 1, 0, 8), "") is None
