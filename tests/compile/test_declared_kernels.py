"""Declared layers against outside oracles, both backends, float64.

Each map below is declared in a line or two and placed after a layer with parameters (so its input gradient is
used).  The network's outputs, cost and every gradient are compared with:
- PyTorch autograd (``F.conv2d`` with stride, dilation, groups; ``F.avg_pool2d``; ``F.max_pool2d``; einsum), to
  1e-8, where PyTorch is installed;
- everywhere: an independent NumPy forward pass of the same network (padding and windows by ``np.pad`` and
  ``sliding_window_view``) and central finite differences of ``model.cost``;
- the other backend (numba runs the derived gathers, NumPy scatters over the forward positions), to 1e-10.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

import symbp as sb

try:  # an outside oracle where installed
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover - the NumPy oracle and finite differences still run
    torch = None

NEG = sb.Activation.parse("negsoft", "-softplus(z)")  # strictly negative outputs: max-pool padding must not win


def _np_act(name, v):
    return {"tanh": np.tanh, "linear": lambda u: u, "negsoft": lambda u: -np.logaddexp(0, u)}[name](v)


def _windows(x, kh, kw, stride, dilation=1, pad=0, fill=0.0):
    """(n, C, Ho, Wo, kh, kw) windows of x (n, C, H, W), zero (or ``fill``) padded, strided, dilated."""
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=fill)
    span_h, span_w = dilation * (kh - 1) + 1, dilation * (kw - 1) + 1
    win = sliding_window_view(x, (span_h, span_w), axis=(2, 3))[..., ::dilation, ::dilation]
    return win[:, :, ::stride, ::stride]


# name: (input shape, prefix activation, map text, out, params, activation, NumPy forward, torch forward)
CASES = {
    "conv3x3_s2_p1": (
        (2, 7, 7), "tanh",
        "z[f,i,j] = sum(W[f,c,p,q]*x[c,2*i+p-1,2*j+q-1] for c in range(2) for p in range(3) for q in range(3)) + b[f]",
        (3, 4, 4), {"W": (3, 2, 3, 3), "b": (3,)}, "tanh",
        lambda x, W, b: np.einsum("ncijpq,fcpq->nfij", _windows(x, 3, 3, 2, pad=1), W) + b[None, :, None, None],
        lambda x, W, b: F.conv2d(x, W, b, stride=2, padding=1)),
    "dilated": (
        (2, 7, 7), "tanh",
        "z[f,i,j] = sum(W[f,c,p,q]*x[c,i+2*p,j+2*q] for c in range(2) for p in range(2) for q in range(2)) + b[f]",
        None, {"W": (2, 2, 2, 2), "b": (2,)}, "tanh",
        lambda x, W, b: np.einsum("ncijpq,fcpq->nfij", _windows(x, 2, 2, 1, dilation=2), W) + b[None, :, None, None],
        lambda x, W, b: F.conv2d(x, W, b, dilation=2)),
    "depthwise": (
        (3, 5, 5), "tanh",
        "z[c,i,j] = sum(W[c,0,p,q]*x[c,i+p-1,j+q-1] for p in range(3) for q in range(3)) + b[c]",
        (3, 5, 5), {"W": (3, 1, 3, 3), "b": (3,)}, "tanh",
        lambda x, W, b: np.einsum("ncijpq,cpq->ncij", _windows(x, 3, 3, 1, pad=1), W[:, 0]) + b[None, :, None, None],
        lambda x, W, b: F.conv2d(x, W, b, padding=1, groups=3)),
    "avgpool2": (
        (2, 6, 5), "tanh",
        "z[c,i,j] = sum(x[c,2*i+p,2*j+q] for p in range(2) for q in range(2))/4",
        None, {}, "linear",
        lambda x: _windows(x, 2, 2, 2).mean(axis=(4, 5)),
        lambda x: F.avg_pool2d(x, 2)),
    "avgpool3_s2_p1": (
        (2, 6, 6), "tanh",
        "z[c,i,j] = sum(x[c,2*i+p-1,2*j+q-1] for p in range(3) for q in range(3))/9",
        (2, 3, 3), {}, "linear",
        lambda x: _windows(x, 3, 3, 2, pad=1).mean(axis=(4, 5)),
        lambda x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=True)),
    "maxpool3_s2": (
        (2, 7, 7), "negsoft",
        "z[c,i,j] = max(x[c,2*i+p,2*j+q] for p in range(3) for q in range(3))",
        None, {}, "linear",
        lambda x: _windows(x, 3, 3, 2).max(axis=(4, 5)),
        lambda x: F.max_pool2d(x, 3, 2)),
    "maxpool3_s2_p1": (
        (2, 6, 6), "negsoft",
        "z[c,i,j] = max(x[c,2*i+p-1,2*j+q-1] for p in range(3) for q in range(3))",
        (2, 3, 3), {}, "linear",
        lambda x: _windows(x, 3, 3, 2, pad=1, fill=-np.inf).max(axis=(4, 5)),
        lambda x: F.max_pool2d(x, 3, 2, 1)),
    "conv1x1_s2": (
        (3, 5, 5), "tanh",
        "z[f,i,j] = sum(W[f,c]*x[c,2*i,2*j] for c in range(3)) + b[f]",
        None, {"W": (2, 3), "b": (2,)}, "tanh",
        lambda x, W, b: np.einsum("ncij,fc->nfij", x[:, :, ::2, ::2], W) + b[None, :, None, None],
        lambda x, W, b: F.conv2d(x, W[:, :, None, None], b, stride=2)),
    "bilinear": (
        (4,), "tanh",
        "z[k] = sum(x[i]*W[k,i,j]*x[j] for i in range(4) for j in range(4)) + b[k]",
        None, {"W": (3, 4, 4), "b": (3,)}, "tanh",
        lambda x, W, b: np.einsum("ni,kij,nj->nk", x, W, x) + b,
        lambda x, W, b: torch.einsum("ni,kij,nj->nk", x, W, x) + b),
}


def _net(case):
    shape, pre_act, text, out, params, act, _, _ = CASES[case]
    act_of = {"tanh": sb.tanh, "linear": sb.linear, "negsoft": NEG}
    prefix = sb.Conv2D(shape[0], (1, 1), act_of[pre_act]) if len(shape) == 3 else sb.Dense(shape[0], act_of[pre_act])
    layer = sb.Layer.parse(case, text, out=out, params=params, activation=act_of[act])
    return sb.Network([sb.Input(shape), prefix, layer, sb.Dense(3, sb.softmax)], cost=sb.log_likelihood)


_models: dict = {}


def _model(case, backend):
    if (case, backend) not in _models:
        _models[case, backend] = _net(case).compile(backend=backend, dtype="float64", seed=1)
    m = _models[case, backend]
    m.init_params(seed=1)
    return m


def _data(case, n=3):
    rng = np.random.default_rng(7)
    shape = CASES[case][0]
    X = rng.normal(size=(n, int(np.prod(shape))))
    Y = np.eye(3)[rng.integers(0, 3, n)]
    return X, Y


def _numpy_forward(case, params, X):
    """The whole network in plain NumPy: prefix, the declared map's oracle, dense softmax; and the mean cost."""
    shape, pre_act, _, _, pspec, act, np_fn, _ = CASES[case]
    (W1, b1), rest = params[0], params[1:]
    n = X.shape[0]
    if len(shape) == 3:
        x = X.reshape(n, *shape)
        a1 = _np_act(pre_act, np.einsum("nchw,fc->nfhw", x, W1[:, :, 0, 0]) + b1[None, :, None, None])
    else:
        a1 = _np_act(pre_act, X @ W1.T + b1)
    mine = rest[0] if pspec else ()
    a2 = _np_act(act, np_fn(a1, *mine)).reshape(n, -1)
    W3, b3 = rest[-1]
    zz = a2 @ W3.T + b3
    zz -= zz.max(axis=1, keepdims=True)
    return np.exp(zz) / np.exp(zz).sum(axis=1, keepdims=True)


def _torch_cost_and_grads(case, params, X, Y):
    shape, pre_act, _, _, pspec, act, _, t_fn = CASES[case]
    ts = [tuple(torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in pair) for pair in params]
    acts = {"tanh": torch.tanh, "linear": lambda u: u, "negsoft": lambda u: -F.softplus(u)}
    x = torch.tensor(X, dtype=torch.float64)
    n = x.shape[0]
    (W1, b1), rest = ts[0], ts[1:]
    if len(shape) == 3:
        a1 = acts[pre_act](F.conv2d(x.reshape(n, *shape), W1, b1))
    else:
        a1 = acts[pre_act](x @ W1.T + b1)
    mine = rest[0] if pspec else ()
    a2 = acts[act](t_fn(a1, *mine)).reshape(n, -1)
    W3, b3 = rest[-1]
    logp = F.log_softmax(a2 @ W3.T + b3, dim=1)
    cost = -(torch.tensor(Y) * logp).sum(dim=1).mean()
    cost.backward()
    return float(cost.detach()), torch.exp(logp).detach().numpy(), [tuple(p.grad.numpy() for p in pair) for pair in ts]


def _finite_differences(model, X, Y, h=1e-6):
    base = model.params
    out = []
    for l, pair in enumerate(base):
        grads = []
        for k, arr in enumerate(pair):
            gr = np.zeros_like(arr)
            for idx in np.ndindex(arr.shape):
                vals = []
                for s in (1, -1):
                    p = [tuple(q.copy() for q in pr) for pr in base]
                    p[l][k][idx] += s * h
                    model.set_params(p)
                    vals.append(model.cost(X, Y))
                gr[idx] = (vals[0] - vals[1]) / (2 * h)
            grads.append(gr)
        out.append(tuple(grads))
    model.set_params(base)
    return out


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.slow) if c == "depthwise" else c for c in CASES])
def test_declared_layer_equals_the_oracles(case, backend):
    model = _model(case, backend)
    X, Y = _data(case)
    params = model.params
    out, cost, grads = model.feedforward(X), model.cost(X, Y), model.gradients(X, Y)
    np.testing.assert_allclose(out, _numpy_forward(case, params, X), rtol=1e-12, atol=1e-13)
    if torch is not None:
        t_cost, t_out, t_grads = _torch_cost_and_grads(case, params, X, Y)
        np.testing.assert_allclose(out, t_out, rtol=1e-8, atol=1e-10)
        assert cost == pytest.approx(t_cost, rel=1e-10)
        for (gW, gb), (tW, tb) in zip(grads, t_grads):
            np.testing.assert_allclose(gW, tW, rtol=1e-8, atol=1e-10)
            np.testing.assert_allclose(gb, tb, rtol=1e-8, atol=1e-10)
    for got, ref in zip(grads, _finite_differences(model, X, Y)):
        for g_, r_ in zip(got, ref):
            np.testing.assert_allclose(g_, r_, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("case", list(CASES))
def test_backends_agree_on_a_training_epoch(case):
    """numba runs the derived gathers, NumPy scatters over the forward positions: one SGD epoch agrees."""
    X, Y = _data(case, n=6)
    ms = [_model(case, b) for b in ("numba", "numpy")]
    for m in ms:
        m.fit((X, Y), epochs=1, batch_size=2, eta=0.5, seed=3, progress=False)
    for pa, pb in zip(ms[0].params, ms[1].params):
        for a_, b_ in zip(pa, pb):
            np.testing.assert_allclose(a_, b_, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------------------------- property
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@st.composite
def declared_maps(draw):
    """A random declared map on a small image: a convolution (stride, dilation, padding, kernel, channels), an
    average or max pool (overlapping or not, padded or not), or a map reading x twice; with its input shape."""
    c, h, w = draw(st.integers(1, 2)), draw(st.integers(3, 6)), draw(st.integers(3, 6))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    s, d, pad = draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(0, 1))
    kind = draw(st.sampled_from(["conv", "avg", "max", "twice"]))
    ho = (h + 2 * pad - d * (kh - 1) - 1) // s + 1
    wo = (w + 2 * pad - d * (kw - 1) - 1) // s + 1
    assume(ho >= 1 and wo >= 1)
    idx_h = f"{s}*i+{d}*p-{pad}" if kind != "twice" else f"{s}*i+{d}*p-{pad}"
    idx_w = f"{s}*j+{d}*q-{pad}"
    gens = f"for p in range({kh}) for q in range({kw})"
    if kind == "conv":
        maps = draw(st.integers(1, 2))
        text = f"z[f,i,j] = sum(W[f,c,p,q]*x[c,{idx_h},{idx_w}] for c in range({c}) {gens}) + b[f]"
        return text, (maps, ho, wo), {"W": (maps, c, kh, kw), "b": (maps,)}, (c, h, w), sb.tanh
    if kind == "avg":
        return f"z[c,i,j] = sum(x[c,{idx_h},{idx_w}] {gens})/{kh * kw}", (c, ho, wo), {}, (c, h, w), sb.linear
    if kind == "max":
        return f"z[c,i,j] = max(x[c,{idx_h},{idx_w}] {gens})", (c, ho, wo), {}, (c, h, w), sb.linear
    text = f"z[c,i,j] = sum(W[c,p,q]*x[c,{idx_h},{idx_w}]*x[c,i,j] {gens})"
    assume(ho <= h and wo <= w)
    return text, (c, ho, wo), {"W": (c, kh, kw)}, (c, h, w), sb.tanh


def _check_map(drawn, backend):
    text, out, params, shape, act = drawn
    try:
        layer = sb.Layer.parse("drawn", text, out=out, params=params, activation=act)
        net = sb.Network([sb.Input(shape), sb.Conv2D(shape[0], (1, 1), NEG), layer, sb.Dense(2, sb.softmax)],
                         cost=sb.log_likelihood)
    except ValueError as exc:  # a max window wholly in the padding: refused by name, never a wrong gradient
        assert "wholly outside x" in str(exc)
        return None
    model = net.compile(backend=backend, seed=2)
    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(2, int(np.prod(shape)))), np.eye(2)[[0, 1]]
    grads = model.gradients(X, Y)
    for got, ref in zip(grads, _finite_differences(model, X, Y)):
        for g_, r_ in zip(got, ref):
            np.testing.assert_allclose(g_, r_, rtol=1e-5, atol=1e-7, err_msg=text)
    return model, X, Y, grads


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(declared_maps())
def test_random_declared_maps_numpy_backend(drawn):
    _check_map(drawn, "numpy")


@pytest.mark.slow
@settings(max_examples=6, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(declared_maps())
def test_random_declared_maps_both_backends_agree(drawn):
    """numba's gathers (compiled: a few examples) equal finite differences and NumPy's scatters."""
    checked = _check_map(drawn, "numba")
    if checked is None:
        return
    model, X, Y, grads = checked
    other = model.network.compile(backend="numpy", seed=2)
    for pa, pb in zip(grads, other.gradients(X, Y)):
        for a_, b_ in zip(pa, pb):
            np.testing.assert_allclose(a_, b_, rtol=1e-10, atol=1e-12)
