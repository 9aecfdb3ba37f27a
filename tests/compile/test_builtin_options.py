"""The built-in layers with PyTorch's options (Conv2D stride, padding — an int, a pair or "same" —, dilation,
groups; MaxPool and AvgPool stride and padding; a global average pool): outputs and every gradient against
``F.conv2d``/``F.max_pool2d``/``F.avg_pool2d`` autograd where PyTorch is installed, finite differences and the
other backend everywhere; output sizes by PyTorch's formulas, impossible combinations refused by name."""

from __future__ import annotations

import numpy as np
import pytest
from test_declared_kernels import NEG, _finite_differences

import symbp as sb
from symbp.compile.backends.numba import NumbaBackend

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover
    torch = None

C, P, A = sb.Conv2D, sb.MaxPool, sb.AvgPool
# name: (input shape, layer, torch forward of (x, *params), whether the prefix makes the inputs negative)
CASES = {
    "conv_s2_p1": ((2, 7, 7), C(3, (3, 3), sb.tanh, stride=2, padding=1),
                   lambda x, W, b: F.conv2d(x, W, b, stride=2, padding=1)),
    "conv_pair_padding_stride": ((2, 7, 6), C(3, (3, 2), sb.tanh, stride=(2, 1), padding=(1, 0)),
                                 lambda x, W, b: F.conv2d(x, W, b, stride=(2, 1), padding=(1, 0))),
    "conv_same_even_kernel": ((2, 6, 5), C(2, (2, 4), sb.tanh, padding="same"),  # PyTorch pads more after
                              lambda x, W, b: F.conv2d(x, W, b, padding="same")),
    "conv_dilated_same": ((2, 7, 7), C(2, (3, 3), sb.tanh, padding="same", dilation=2),
                          lambda x, W, b: F.conv2d(x, W, b, padding="same", dilation=2)),
    "conv_groups_2": ((4, 5, 5), C(6, (3, 3), sb.tanh, groups=2, padding=1),
                      lambda x, W, b: F.conv2d(x, W, b, padding=1, groups=2)),
    "conv_depthwise": ((3, 5, 5), C(3, (3, 3), sb.tanh, groups=3),
                       lambda x, W, b: F.conv2d(x, W, b, groups=3)),
    "maxpool3_s2_p1": ((2, 7, 7), P((3, 3), stride=2, padding=1), lambda x: F.max_pool2d(x, 3, 2, 1)),
    "maxpool_odd_sizes": ((2, 7, 5), P((2, 2)), lambda x: F.max_pool2d(x, 2)),
    "avgpool2": ((2, 6, 5), A((2, 2)), lambda x: F.avg_pool2d(x, 2)),
    "avgpool3_s2_p1": ((2, 6, 6), A((3, 3), stride=2, padding=1), lambda x: F.avg_pool2d(x, 3, 2, 1)),
    "global_avgpool": ((3, 4, 4), A((4, 4)), lambda x: F.avg_pool2d(x, 4)),
}


def _net(case):
    shape, layer, _ = CASES[case]
    return sb.Network([sb.Input(shape), sb.Conv2D(shape[0], (1, 1), NEG), layer, sb.Dense(3, sb.softmax)],
                      cost=sb.log_likelihood)


def _torch(case, params, X, Y):
    shape, layer, t_fn = CASES[case]
    ts = [tuple(torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in pair) for pair in params]
    x = torch.tensor(X, dtype=torch.float64).reshape(-1, *shape)
    a1 = -F.softplus(F.conv2d(x, *ts[0]))
    mine = ts[1] if len(ts) == 3 else ()
    a2 = t_fn(a1, *mine)
    if isinstance(layer, sb.Conv2D):
        a2 = torch.tanh(a2)
    W3, b3 = ts[-1]
    logp = F.log_softmax(a2.reshape(x.shape[0], -1) @ W3.T + b3, dim=1)
    cost = -(torch.tensor(Y) * logp).sum(dim=1).mean()
    cost.backward()
    return float(cost.detach()), torch.exp(logp).detach().numpy(), [tuple(p.grad.numpy() for p in pair) for pair in ts]


@pytest.mark.parametrize("case", list(CASES))
def test_options_equal_pytorch_and_finite_differences_on_both_backends(case):
    rng = np.random.default_rng(5)
    shape = CASES[case][0]
    X, Y = rng.normal(size=(3, int(np.prod(shape)))), np.eye(3)[rng.integers(0, 3, 3)]
    results = []
    for backend in ("numba", "numpy"):
        model = _net(case).compile(backend=backend, dtype="float64", seed=1)
        params = model.params
        out, cost, grads = model.feedforward(X), model.cost(X, Y), model.gradients(X, Y)
        if torch is not None:
            t_cost, t_out, t_grads = _torch(case, params, X, Y)
            np.testing.assert_allclose(out, t_out, rtol=1e-8, atol=1e-10)
            assert cost == pytest.approx(t_cost, rel=1e-10)
            for pair, t_pair in zip(grads, t_grads):
                for g_, t_ in zip(pair, t_pair):
                    np.testing.assert_allclose(g_, t_, rtol=1e-8, atol=1e-10)
        results.append(grads)
    for pair, ref in zip(results[0], _finite_differences(model, X, Y)):
        for g_, r_ in zip(pair, ref):
            np.testing.assert_allclose(g_, r_, rtol=1e-5, atol=1e-7)
    for pa, pb in zip(*results):
        for a_, b_ in zip(pa, pb):
            np.testing.assert_allclose(a_, b_, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("layer, in_shape, out", [
    (C(8, (3, 3), sb.relu, stride=2, padding=1), (3, 28, 28), (8, 14, 14)),
    (C(8, (5, 5), sb.relu, stride=3, padding=2, dilation=2), (3, 29, 31), (8, 9, 9)),
    (C(8, (4, 4), sb.relu, padding="same"), (3, 9, 8), (8, 9, 8)),
    (P((3, 3), stride=2), (4, 14, 14), (4, 6, 6)),
    (P((3, 3), stride=2, padding=1), (4, 14, 14), (4, 7, 7)),
    (A((7, 7)), (32, 7, 7), (32, 1, 1)),
    (A((2, 3)), (1, 7, 7), (1, 3, 2)),
])
def test_output_sizes_are_pytorchs(layer, in_shape, out):
    assert layer.out_shape(in_shape) == out
    if torch is not None:
        x = torch.zeros((1, *in_shape))
        if isinstance(layer, sb.Conv2D):
            pad = layer.padding
            got = F.conv2d(x, torch.zeros((layer.maps, in_shape[0] // layer.groups, *layer.kernel)),
                           stride=layer.stride, padding=pad, dilation=layer.dilation, groups=layer.groups)
        elif isinstance(layer, sb.MaxPool):
            got = F.max_pool2d(x, layer.window, layer.stride, layer.padding)
        else:
            got = F.avg_pool2d(x, layer.window, layer.stride, layer.padding)
        assert tuple(got.shape[1:]) == out


@pytest.mark.parametrize("make, message", [
    (lambda: C(4, (3, 3), sb.relu, padding="same", stride=2), "padding='same' needs stride 1"),
    (lambda: C(5, (3, 3), sb.relu, groups=2), "5 maps cannot be split into 2 groups"),
    (lambda: C(4, (3, 3), sb.relu, padding="valid"), "padding must be"),
    (lambda: C(4, (3, 3), sb.relu, stride=0), "positive integer"),
    (lambda: P((2, 2), padding=2), "at most half the window"),
    (lambda: A((3, 3), stride=(1, 2, 3)), "a pair"),
])
def test_impossible_options_are_refused_by_name(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("layer, in_shape, message", [
    (C(4, (3, 3), sb.relu, groups=2), (3, 8, 8), "3 input channels cannot be split into 2 groups"),
    (C(4, (5, 5), sb.relu, stride=2, dilation=3), (1, 8, 8), "leaves nothing"),
    (A((9, 9)), (1, 8, 8), "leaves nothing"),
])
def test_impossible_shapes_name_the_layer(layer, in_shape, message):
    with pytest.raises(ValueError, match=f"layer 1 .*{message}"):
        sb.Network([sb.Input(in_shape), layer, sb.Dense(2, sb.softmax)], cost=sb.log_likelihood)


def test_plain_layers_keep_their_files_and_their_rules(tmp_path):
    """The default options are the book's layers: the same model file fields, the same derived rules."""
    net = sb.Network([sb.Input((1, 6, 6)), C(2, (3, 3), sb.relu), P((2, 2)), sb.Dense(2, sb.softmax)],
                     cost=sb.log_likelihood)
    model = net.compile(backend="numpy", seed=0)
    model.save(tmp_path / "m")
    import json

    doc = json.loads((tmp_path / "m.json").read_text())
    assert set(doc["layers"][1]) == {"kind", "maps", "kernel", "activation"} and set(doc["layers"][2]) == {
        "kind", "window"}
    strided = sb.Network([sb.Input((1, 6, 6)), C(2, (3, 3), sb.relu, stride=2, padding=1), A((3, 3)),
                          sb.Dense(2, sb.softmax)], cost=sb.log_likelihood).compile(backend="numpy", seed=0)
    strided.save(tmp_path / "s")
    X = np.random.default_rng(0).normal(size=(2, 36))
    assert np.array_equal(sb.load(tmp_path / "s").feedforward(X), strided.feedforward(X))
    text = str(net.equations())  # the rules of the layers' declarations
    assert "∂C/∂W¹[f,c,p,q] = Σ_{i<4,j<4} δ¹[f,i,j]·a⁰[c,i+p,j+q]" in text
    assert "z²[c,i,j] = max_{p<2,q<2} a¹[c,2i+p,2j+q]" in text


@pytest.mark.parametrize("layer, shape", [
    (C(6, (3, 3), sb.relu, groups=2, stride=2, padding=1), (4, 7, 7)),
    (C(3, (3, 3), sb.relu, groups=3, padding=1), (3, 6, 6)),  # depthwise
    (C(4, (2, 2), sb.relu, groups=2, dilation=2), (4, 6, 5)),
])
@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_grouped_convs_are_products_per_group_and_train_as_the_generic_loops(layer, shape, momentum):
    """The correlation pass takes grouped and depthwise convolutions (numba: im2col, then one product per group
    and sample); the NumPy backend runs the generic declared steps.  SGD epochs (weight decay, momentum) agree."""
    net = sb.Network([sb.Input(shape), sb.Conv2D(shape[0], (1, 1), NEG), layer, sb.Dense(3, sb.softmax)],
                     cost=sb.log_likelihood)
    a, b = (net.compile(backend=k, dtype="float64", seed=0) for k in ("numba", "numpy"))
    rows = [r for r in a.plan().rows if r.kernel == "sgd_epoch" and r.block.startswith("layer 2")]
    grouped = [r for r in rows if f"{layer.groups} groups" in r.what]
    assert {r.what.split()[1] for r in grouped} == {"forward", "input", "weights"}
    assert all(r.path == "im2col + gemm" for r in grouped)
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(14, int(np.prod(shape)))), np.eye(3)[rng.integers(0, 3, 14)]
    for m in (a, b):
        m.fit((X, Y), epochs=2, batch_size=4, eta=0.1, lmbda=0.5, momentum=momentum, seed=1, progress=False)
    for pa, pb in zip(a.params, b.params):
        for a_, b_ in zip(pa, pb):
            np.testing.assert_allclose(a_, b_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a.gradients(X, Y)[1][0], b.gradients(X, Y)[1][0], rtol=1e-10, atol=1e-12)


# hand-declared twins of the built-ins with options, other names for everything
TWINS = [
    (C(6, (3, 3), sb.relu, stride=2, padding=1),
     ("conv_s2", "z[o,u,v] = sum(K[o,ch,s,t]*x[ch,2*u+s-1,2*v+t-1] for ch in range(4) for s in range(3) "
                 "for t in range(3)) + B[o]", (6, 5, 5), {"K": (6, 4, 3, 3), "B": (6,)}, sb.relu)),
    (C(6, (3, 3), sb.relu, groups=2, padding=1),
     ("conv_g2", "z[g,o,u,v] = sum(K[3*g+o,ch,s,t]*x[2*g+ch,u+s-1,v+t-1] for ch in range(2) for s in range(3) "
                 "for t in range(3)) + B[3*g+o]", (2, 3, 9, 9), {"K": (6, 2, 3, 3), "B": (6,)}, sb.relu)),
    (P((3, 3), stride=2, padding=1),
     ("max3s2", "z[ch,u,v] = max(x[ch,2*u+s-1,2*v+t-1] for s in range(3) for t in range(3))", (4, 5, 5), None,
      None)),
    (A((2, 2)), ("mean2", "z[ch,u,v] = sum(x[ch,2*u+s,2*v+t] for s in range(2) for t in range(2))/4", None, None,
                 None)),
]


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("builtin, twin", TWINS, ids=[t[1][0] for t in TWINS])
def test_builtins_with_options_train_bit_for_bit_like_hand_declared_twins(builtin, twin, backend):
    """A built-in with options is nothing more than its declaration: a twin written by hand, with other names
    for every index and parameter, trains to the same bits (SGD with weight decay and momentum)."""
    name, text, out, params, act = twin
    kw = {k: v for k, v in (("out", out), ("params", params), ("activation", act)) if v is not None}
    mine = sb.Layer.parse(name, text, **kw)
    nets = [sb.Network([sb.Input((4, 9, 9)), sb.Conv2D(4, (1, 1), sb.tanh), layer, sb.Dense(3, sb.softmax)],
                       cost=sb.log_likelihood) for layer in (builtin, mine)]
    a, b = (n.compile(backend=backend, dtype="float64", seed=0) for n in nets)
    b.set_params(a.params)
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(10, 324)), np.eye(3)[rng.integers(0, 3, 10)]
    for m in (a, b):
        m.fit((X, Y), epochs=2, batch_size=4, eta=0.1, lmbda=0.5, momentum=0.5, seed=1, progress=False)
    for pa, pb in zip(a.params, b.params):
        for a_, b_ in zip(pa, pb):
            assert np.array_equal(a_, b_)
    assert np.array_equal(a.feedforward(X), b.feedforward(X))


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_pooling_before_sigma_with_overlapping_padded_windows(backend, monkeypatch):
    """A tanh convolution then a 3x3 max pool of stride 2 and padding 1: the max pool runs before σ (σ on the
    pooled values; the padding left out of the max, as PyTorch's −∞), and outputs and every gradient equal
    pooling after σ (and PyTorch's autograd where installed)."""
    from symbp.derive.layers import declared as declared_rules

    def make():
        return sb.Network([sb.Input((2, 7, 7)), C(3, (3, 3), sb.tanh, padding=1), P((3, 3), stride=2, padding=1),
                           sb.Dense(3, sb.softmax)], cost=sb.log_likelihood)

    fused = make().compile(backend=backend, dtype="float64", seed=2)
    assert fused.network.equations().layers[1].pool_first
    assert "a1" not in {b.name for b in fused.programs["sgd_epoch"].buffers}
    monkeypatch.setattr(declared_rules, "_pool_first", lambda layer, ctx: None)
    monkeypatch.setattr(NumbaBackend, "declaration_key", lambda self, network, dtype: None)
    after = make().compile(backend=backend, dtype="float64", seed=2)
    assert "a1" in {b.name for b in after.programs["sgd_epoch"].buffers}
    rng = np.random.default_rng(4)
    X, Y = rng.normal(size=(5, 98)), np.eye(3)[rng.integers(0, 3, 5)]
    after.set_params(fused.params)
    np.testing.assert_allclose(fused.feedforward(X), after.feedforward(X), rtol=1e-13, atol=1e-15)
    grads = fused.gradients(X, Y)
    for pa, pb in zip(grads, after.gradients(X, Y)):
        for a_, b_ in zip(pa, pb):
            np.testing.assert_allclose(a_, b_, rtol=1e-12, atol=1e-14)
    if torch is not None:
        ts = [tuple(torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in pair) for pair in fused.params]
        x = torch.tensor(X, dtype=torch.float64).reshape(5, 2, 7, 7)
        a2 = F.max_pool2d(torch.tanh(F.conv2d(x, *ts[0], padding=1)), 3, 2, 1)
        logp = F.log_softmax(a2.reshape(5, -1) @ ts[1][0].T + ts[1][1], dim=1)
        (-(torch.tensor(Y) * logp).sum(dim=1).mean()).backward()
        for pair, tpair in zip(grads, ts):
            for g_, t_ in zip(pair, tpair):
                np.testing.assert_allclose(g_, t_.grad.numpy(), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_no_pooling_before_sigma_after_a_map_lowered_as_dense(backend):
    """A declared dense map is lowered as ``Dense``, which applies its own σ: a max pool after it stays after σ
    (pooling first would apply σ′ twice), and the gradients equal central differences of the cost."""
    d = sb.Layer.parse("d", "z[j] = sum(W[j,k]*x[k] for k in range(6)) + b[j]", params={"W": (8, 6), "b": (8,)},
                       activation=sb.tanh)
    p = sb.Layer.parse("p", "z[i] = max(x[2*i+q] for q in range(2))")
    net = sb.Network([sb.Input(6), d, p, sb.Dense(3, sb.softmax)], cost=sb.log_likelihood)
    assert net.equations().layers[1].pool_first is None
    model = net.compile(backend=backend, dtype="float64", seed=3)
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(5, 6)), np.eye(3)[rng.integers(0, 3, 5)]
    (dW, db), _ = model.gradients(X, Y)
    params = model.params
    for idx in ((0, 0), (3, 5), (7, 2)):
        def cost(h, idx=idx):
            W = params[0][0].copy()
            W[idx] += h
            model.set_params([(W, params[0][1]), params[1]])
            return model.cost(X, Y)
        assert dW[idx] == pytest.approx((cost(1e-6) - cost(-1e-6)) / 2e-6, rel=1e-5, abs=1e-8)
