"""The sum-over-paths check for tiny convolution and max-pooling nets: the built-in ``Conv2D`` and ``MaxPool``
are their declarations, and their derived adjoints (gathers, the argmax scatter of the max) equal the chain rule
over every path (symbp.derive.check through ``UnrolledDeclared``); a wrong rule is caught."""

from __future__ import annotations

import dataclasses
import types

import mpmath
import pytest
import sympy as sp

import symbp as sb
from symbp.derive.check import MAX_IMAGE_UNITS, MAX_UNITS, Unrolled, bp_gradients, compare, sum_over_paths_gradients
from symbp.derive.layers import Units, unroll_layer
from symbp.derive.layers.declared import UnrolledDeclared

I, C, P, D, Drop = sb.Input, sb.Conv2D, sb.MaxPool, sb.Dense, sb.Dropout

# compare's symbolic step runs under the derivation's guard (symbp.limits); an interrupt landing in hypothesis's gc
# callback is dropped by the guard's unraisable hook and repeated, so a warning about it is noise, not a failure.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <function gc_cumulative_time:pytest.PytestUnraisableExceptionWarning")


def net_of(*layers, cost=sb.quadratic):
    return sb.Network(list(layers), cost=cost)


def n_params(net) -> int:
    return sum(spec.size for layer, shape in zip(net.layers[1:], net.shapes) for spec in layer.param_specs(shape))


def brief_net():
    """The issue's example: a 3x3 image, two 2x2 maps, a 2x2 pool, two sigmoid outputs."""
    return net_of(I((1, 3, 3)), C(2, (2, 2), sb.tanh), P((2, 2)), D(2, sb.sigmoid))


NETS = {
    "conv-pool-dense": brief_net,
    "two-channels-softmax": lambda: net_of(I((2, 2, 3)), C(2, (2, 2), sb.sigmoid), D(2, sb.softmax),
                                           cost=sb.log_likelihood),
    "conv-conv": lambda: net_of(I((1, 3, 3)), C(2, (2, 2), sb.tanh), C(1, (2, 1), sb.sigmoid), D(2, sb.sigmoid),
                                cost=sb.cross_entropy),
    "pool-then-conv": lambda: net_of(I((1, 4, 3)), P((2, 1)), C(2, (2, 2), sb.softplus), D(2, sb.tanh)),
    "conv-pool-conv-relu": lambda: net_of(I((1, 4, 4)), C(1, (2, 2), sb.relu), P((1, 2)), C(2, (2, 1), sb.tanh),
                                          D(2, sb.linear)),
    "border-dropped-dropout": lambda: net_of(I((1, 3, 3)), C(1, (1, 1), sb.sigmoid), P((2, 2)), Drop(0.5),
                                             D(2, sb.sigmoid)),
}


@pytest.mark.parametrize("make", NETS.values(), ids=NETS.keys())
def test_conv_networks_agree(make):
    """Every weight and bias of every layer: the derived rules equal the sum over paths (numerically, 30 digits;
    max-pooling is non-smooth and a convolution's shared bias has no z form, see UnrolledConv)."""
    net = make()
    result = compare(net, time_budget=1.0, per_gradient=0.25)
    assert result.ok, str(result)
    assert len(result.gradients) == n_params(net)
    assert max(gc.max_error for gc in result.gradients) < 1e-20


def test_names_and_layout():
    """Weights in model order (W of shape (maps, C, kh, kw) in C order, then b), units in (channel, row, column)
    order, each pool unit the Max of its window, the border that fills no window read by nothing."""
    net = net_of(I((1, 3, 3)), C(2, (2, 2), sb.tanh), P((2, 2)), D(2, sb.sigmoid))
    u = Unrolled(net)
    conv, pool = u.units[1], u.units[2]
    assert isinstance(conv, UnrolledDeclared) and isinstance(pool, UnrolledDeclared)
    assert [p.name for p in conv.params] == [f"w1_{f}_0_{p}_{q}" for f in range(2) for p in range(2)
                                             for q in range(2)] + ["b1_0", "b1_1"]
    assert len(conv.outputs) == 8 and len(pool.outputs) == 2 and pool.params == []
    x = sp.symbols("x0:9", real=True)
    w = {s.name: s for s in conv.params}
    z1_3 = conv.z_exprs(u.x)[3]  # map 0, row 1, column 1
    assert sp.expand(z1_3 - (w["w1_0_0_0_0"] * x[4] + w["w1_0_0_0_1"] * x[5] + w["w1_0_0_1_0"] * x[7]
                             + w["w1_0_0_1_1"] * x[8] + w["b1_0"])) == 0
    a1 = conv.outputs
    assert pool.in_hidden(a1) == [sp.Max(*a1[:4]), sp.Max(*a1[4:])]
    assert set(bp_gradients(net, form="placeholders")) == set(u.parameters)
    # a 5x5 input under a 2x2 pool: the last row and column feed no unit, so their gradient is exactly zero
    big = net_of(I((1, 5, 5)), P((2, 2)), D(2, sb.sigmoid))  # 25 input units: past the check's limit, so by hand
    pool5 = unroll_layer(big.layers[1], 1, Units(sp.symbols("x0:25", real=True), (1, 5, 5)))
    g_in = pool5.backprop(big.equations().layers[0], [sp.Integer(1)] * 4, None)[1]
    assert [k for k, e in enumerate(g_in) if e == 0] == [4, 9, 14, 19, 20, 21, 22, 23, 24]


def test_sum_over_paths_equals_direct_differentiation():
    """A third route for a conv-pool net: differentiate the unrolled cost C(x, w, b) directly, at 30 digits."""
    net = net_of(I((1, 3, 3)), C(1, (2, 2), sb.tanh), P((1, 2)), D(2, sb.sigmoid))
    u = Unrolled(net)
    _, fa = u.forward
    cost = u.cost().xreplace(dict(zip(u.A[u.L], fa[u.L])))
    paths = sum_over_paths_gradients(net)
    bp = bp_gradients(net)
    syms = u.x + u.y + u.parameters
    fns = [sp.lambdify(syms, [e[p] for p in u.parameters], modules="mpmath")
           for e in ({p: sp.diff(cost, p) for p in u.parameters}, paths, bp)]
    with mpmath.workdps(30):
        for k in range(2):
            args = [mpmath.mpf((7 * j + 3 * k) % 11 - 5) / 6 + mpmath.mpf(j) / 97 for j in range(len(syms))]
            direct, path, via_bp = (f(*args) for f in fns)
            for p, d, q, r in zip(u.parameters, direct, path, via_bp):
                d, q, r = map(mpmath.mpmathify, (d, q, r))
                assert abs(d - q) < mpmath.mpf("1e-25") * max(1, abs(d)), p
                assert abs(d - r) < mpmath.mpf("1e-25") * max(1, abs(d)), p


def test_a_window_of_six():
    """A 3x2 window: each unit the Max of six inputs, its gradient to the first maximum."""
    result = compare(net_of(I((1, 3, 4)), P((3, 2)), D(2, sb.sigmoid)))
    assert result.ok, str(result)


def test_size_limits():
    assert MAX_UNITS < MAX_IMAGE_UNITS
    with pytest.raises(ValueError, match="tiny"):
        Unrolled(net_of(I((1, 5, 4)), C(1, (1, 1), sb.tanh), D(2, sb.sigmoid)))  # 20 image units
    with pytest.raises(ValueError, match="tiny"):
        Unrolled(net_of(I((1, 3, 3)), C(1, (1, 1), sb.tanh), D(5, sb.sigmoid)))  # a flat layer of 5
    Unrolled(net_of(I((1, 4, 4)), C(1, (1, 1), sb.tanh), D(2, sb.sigmoid)))  # 16 image units are allowed


def test_unrolling_needs_the_layout():
    layer = C(1, (1, 1), sb.tanh)
    xs = sp.symbols("x0:4", real=True)
    with pytest.raises(ValueError, match="layer 1: unrolling a Conv2D needs"):
        unroll_layer(layer, 1, list(xs))
    assert len(unroll_layer(layer, 1, Units(xs, (1, 2, 2))).outputs) == 4
    with pytest.raises(ValueError, match="layer 2: unrolling a MaxPool needs"):
        unroll_layer(P((2, 2)), 2, Units(xs, (4,)))


# ------------------------------------------------------------------------------- wrong rules are caught


def _with_layer_equations(net, index: int, eq):
    real = net.equations()
    layers = list(real.layers)
    layers[index - 1] = eq
    net.equations = lambda: types.SimpleNamespace(output_error=real.output_error, assumes_one_hot=False,
                                                  layers=layers)
    return real.layers[index - 1]


def _with_adjoint(net, index: int, target: str, change):
    """The layer's equations with every adjoint for ``target`` ("x", "W", "b") replaced by ``change(adj)``."""
    real = net.equations().layers[index - 1]
    adjoints = tuple(change(adj) if adj.target == target else adj for adj in real.adjoints)
    _with_layer_equations(net, index, dataclasses.replace(real, adjoints=adjoints))


def _names(net, *layers) -> set[str]:
    u = Unrolled(net)
    return {p.name for l in layers for p in u.units[l].params}


def _swap_axes(adj, array: str):
    """The adjoint with its read of ``array`` transposed in its last two axes (rows ↔ columns)."""
    reads = tuple(dataclasses.replace(r, index=(*r.index[:-2], r.index[-1], r.index[-2])) if r.array == array
                  else r for r in adj.reads)
    return dataclasses.replace(adj, reads=reads)


WRONG = {
    "dW-transposed-patch": ("W", lambda adj: _swap_axes(adj, "x")),
    "dW-one-row-only": ("W", lambda adj: dataclasses.replace(adj, loops=((adj.loops[0][0], 1), *adj.loops[1:]))),
    "db-twice": ("b", lambda adj: dataclasses.replace(adj, factor=2 * adj.factor)),
}


@pytest.mark.parametrize("name,change", WRONG.values(), ids=WRONG.keys())
def test_wrong_conv_parameter_rule_is_caught(name, change):
    """A wrong ∂C/∂W or ∂C/∂b of the first convolution: exactly the layer's weights (or biases) fail."""
    net = net_of(I((1, 3, 4)), C(2, (2, 3), sb.tanh), P((2, 2)), D(2, sb.sigmoid))
    _with_adjoint(net, 1, name, change)
    result = compare(net, symbolic=False)
    assert not result.ok and "MISMATCH" in str(result)
    failed = {gc.parameter for gc in result.failures}
    assert failed and failed <= {p for p in _names(net, 1) if p.startswith("w1" if name == "W" else "b1")}
    assert all(gc.ok for gc in result.gradients if gc.parameter.startswith(("w3", "b3")))


@pytest.mark.parametrize("change", [lambda adj: _swap_axes(adj, "W"),
                                    lambda adj: dataclasses.replace(adj, factor=adj.factor / 2)],
                         ids=["kernel-transposed", "halved"])
def test_wrong_conv_input_rule_is_caught(change):
    """A wrong full convolution ∂C/∂a¹ in the second convolution: exactly the parameters below it fail."""
    net = net_of(I((1, 3, 3)), C(2, (2, 2), sb.tanh), C(1, (2, 2), sb.sigmoid), D(2, sb.sigmoid))
    _with_adjoint(net, 2, "x", change)
    result = compare(net, symbolic=False)
    assert {gc.parameter for gc in result.failures} == _names(net, 1)


@pytest.mark.parametrize("wrong", [sp.Rational(1, 4), sp.Integer(2)], ids=["quarter", "twice"])
def test_wrong_pool_derivative_is_caught(wrong):
    """The argmax scatter of the max with a wrong factor: the convolution below the pool fails."""
    net = brief_net()
    _with_adjoint(net, 2, "x", lambda adj: dataclasses.replace(adj, factor=wrong * adj.factor))
    result = compare(net, symbolic=False)
    assert {gc.parameter for gc in result.failures} == _names(net, 1)


def test_wrong_conv_activation_derivative_is_caught():
    """σ′ = a(1 − a) (sigmoid's) in a tanh convolution."""
    net = brief_net()
    real = net.equations().layers[0]
    _with_layer_equations(net, 1, dataclasses.replace(real, derivative=types.SimpleNamespace(
        expr=sb.a * (1 - sb.a), notes=(), uses_a=True)))
    result = compare(net, symbolic=False)
    assert {gc.parameter for gc in result.failures} == _names(net, 1)
