"""The sum-over-paths check through the layer protocol: networks mixing Dense and Dropout (symbp.derive.check)."""

from __future__ import annotations

import dataclasses
import types

import mpmath
import pytest
import sympy as sp

import symbp as sb
from symbp.derive.check import MAX_LAYERS, Unrolled, _random_points, bp_gradients, compare, sum_over_paths_gradients
from symbp.derive.layers import UnrolledLayer, unroll_layer
from symbp.derive.layers.dropout import UnrolledDropout, m
from symbp.layers import Layer

I, D, Drop = sb.Input, sb.Dense, sb.Dropout


def net_of(*layers, cost=sb.quadratic):
    return sb.Network(list(layers), cost=cost)


def n_params(net) -> int:
    return sum(spec.size for layer, shape in zip(net.layers[1:], net.shapes) for spec in layer.param_specs(shape))


def assert_agree(net, **kw):
    result = compare(net, **kw)
    assert result.ok, str(result)
    assert len(result.gradients) == n_params(net)
    return result


NETS = {
    "hidden-dropout-quadratic": net_of(I(3), D(3, sb.tanh), Drop(0.5), D(2, sb.sigmoid)),
    "hidden-dropout-cross-entropy": net_of(I(3), D(3, sb.tanh), Drop(0.5), D(2, sb.sigmoid), cost=sb.cross_entropy),
    "input-dropout-softmax": net_of(I(3), Drop(0.2), D(3, sb.tanh), D(2, sb.softmax), cost=sb.log_likelihood),
    "two-dropouts": net_of(I(2), Drop(0.25), D(3, sb.sigmoid), Drop(0.5), D(2, sb.softmax)),
    "dropouts-in-a-row": net_of(I(2), D(3, sb.softplus), Drop(0.5), Drop(0.1), D(2, sb.sigmoid),
                                cost=sb.cross_entropy),
    "dropout-zero": net_of(I(2), D(2, sb.sigmoid), Drop(0), D(2, sb.tanh)),
}


@pytest.mark.parametrize("net", NETS.values(), ids=NETS.keys())
def test_dropout_networks_agree(net):
    """Smooth networks with dropout layers anywhere before the output: proved symbolically, masks as symbols."""
    result = assert_agree(net)
    assert set(result.methods) == {"symbolic"}, str(result)


def test_dropout_with_relu_is_decided_by_the_numbers():
    net = net_of(I(2), D(3, sb.relu), Drop(0.5), D(3, sb.tanh), Drop(0.5), D(2, sb.sigmoid))
    result = assert_agree(net)
    assert set(result.methods) == {"numeric"}


def test_parameters_and_masks_are_numbered_by_position():
    net = NETS["two-dropouts"]
    u = Unrolled(net)
    names = [p.name for p in u.parameters]
    assert names[:3] == ["w2_00", "w2_01", "w2_10"] and "b4_1" in names and not any(n[0] == "m" for n in names)
    assert [c.name for c in u.constants] == ["m1_0", "m1_1", "m3_0", "m3_1", "m3_2"]
    assert u.parameter_layer(sp.Symbol("b4_1", real=True)) == 4
    assert isinstance(u.units[3], UnrolledDropout) and u.Z[3] == [] and len(u.A[3]) == 3
    assert set(u.w) == set(u.b) == {2, 4}


def test_masks_stay_symbolic_in_the_gradients():
    """∂C/∂w¹ⱼₖ carries mⱼ/(1 − p) = 2mⱼ; with mⱼ = 0 the unit's gradients vanish, on both routes."""
    net = NETS["hidden-dropout-quadratic"]
    m2_0, m2_1 = sp.Symbol("m2_0", real=True), sp.Symbol("m2_1", real=True)
    w1_01 = sp.Symbol("w1_01", real=True)
    for route in (sum_over_paths_gradients, bp_gradients):
        local = route(net, form="placeholders")[w1_01]  # in the placeholders aˡⱼ: only unit 0's mask
        assert m2_0 in local.free_symbols and m2_1 not in local.free_symbols
        grads = route(net)
        assert grads[w1_01].xreplace({m2_0: 0}) == 0 and grads[w1_01].xreplace({m2_1: 0}) != 0
        assert grads[sp.Symbol("b3_0", real=True)].has(m2_0)  # through a²₀ = 2 m²₀ a¹₀
    z_form = sum_over_paths_gradients(net, form="z")
    names = {s.name for e in z_form.values() for s in e.free_symbols}
    assert "m2_0" in names and not any(n.startswith(("b", "a")) for n in names)


def test_sum_over_paths_equals_direct_differentiation_with_masks():
    """A third route: differentiate the unrolled cost C(x, w, b, m) directly, at 0/1 masks."""
    net = NETS["two-dropouts"]
    u = Unrolled(net)
    _, fa = u.forward
    cost = u.cost().xreplace(dict(zip(u.A[u.L], fa[u.L])))
    paths = sum_over_paths_gradients(net)
    syms = u.x + u.y + u.parameters + u.constants
    direct = sp.lambdify(syms, [sp.diff(cost, p) for p in u.parameters], modules="mpmath")
    path = sp.lambdify(syms, [paths[p] for p in u.parameters], modules="mpmath")
    n = len(syms) - len(u.constants)
    with mpmath.workdps(30):
        for masks in ([1, 0, 1, 1, 0], [0, 1, 0, 1, 1]):
            args = [mpmath.mpf(k % 7 - 3) / 5 for k in range(n)] + [mpmath.mpf(b) for b in masks]
            for p, d, q in zip(u.parameters, direct(*args), path(*args)):
                assert abs(d - q) < mpmath.mpf("1e-25") * max(1, abs(d)), p


def test_random_points_cover_every_mask():
    """All kept at point 0, each unit dropped alone at points 1…n, then random masks with both values."""
    u = Unrolled(NETS["two-dropouts"])
    pts = _random_points(u, 9, seed=1, one_hot=False)
    for l in (1, 3):
        masks = u.units[l].constants
        n = len(masks)
        assert [env[c] for env in pts[: n + 1] for c in masks] == [1.0] * n + [
            float(j != i) for i in range(n) for j in range(n)]
        later = [tuple(env[c] for c in masks) for env in pts[4:]]
        assert all(set(bits) == {0.0, 1.0} for bits in later) and len(set(later)) > 1
    assert all(-1.2 <= pts[0][p] <= 1.2 for p in u.parameters)
    assert _random_points(u, 9, seed=1, one_hot=False) == pts


def test_dense_results_are_unchanged_by_layer_objects():
    """The shorthand and the explicit layer list give the same gradients, symbol for symbol."""
    short = sb.Network([2, 3, 2], activation=[sb.tanh, sb.softmax], cost=sb.log_likelihood)
    explicit = net_of(I(2), D(3, sb.tanh), D(2, sb.softmax), cost=sb.log_likelihood)
    for form in ("xwb", "z", "placeholders"):
        assert sum_over_paths_gradients(short, form) == sum_over_paths_gradients(explicit, form)
        assert bp_gradients(short, form) == bp_gradients(explicit, form)


# ------------------------------------------------------------------------------- wrong rules are caught


def _with_layer_equations(net, index: int, eq):
    real = net.equations()
    layers = list(real.layers)
    layers[index - 1] = eq
    net.equations = lambda: types.SimpleNamespace(output_error=real.output_error, assumes_one_hot=False,
                                                  layers=layers)
    return real.layers[index - 1]


@pytest.mark.parametrize("wrong", [m, sp.Integer(2), m / 2, sp.Integer(1)],
                         ids=["no-scale", "no-mask", "network3-scale", "identity"])
def test_wrong_dropout_factor_is_caught(wrong):
    """A dropout rule with a wrong ∂a²/∂a¹ (2m² is right for p = 0.5): exactly the gradients below it fail."""
    net = net_of(I(3), D(3, sb.tanh), Drop(0.5), D(2, sb.sigmoid))
    real = net.equations().layers[1]
    assert real.factor == 2 * m
    _with_layer_equations(net, 2, dataclasses.replace(real, factor=wrong))
    result = compare(net, time_budget=0.5, per_gradient=0.25)
    assert not result.ok and "MISMATCH" in str(result)
    assert {gc.parameter for gc in result.failures} == {p.name for p in Unrolled(net).units[1].params}
    assert all(gc.ok for gc in result.gradients if gc.parameter.startswith(("w3", "b3")))


def test_wrong_dropout_factor_is_caught_by_the_numbers_alone():
    net = net_of(I(2), D(2, sb.relu), Drop(0.25), D(2, sb.linear))
    real = net.equations().layers[1]
    _with_layer_equations(net, 2, dataclasses.replace(real, factor=m))
    result = compare(net, symbolic=False)
    assert {gc.parameter for gc in result.failures} == {"w1_00", "w1_01", "w1_10", "w1_11", "b1_0", "b1_1"}


def test_wrong_dense_derivative_after_dropout_is_caught():
    """σ′ = 1 − a² (tanh's) in a sigmoid layer between two dropouts: only that layer's gradients fail."""
    net = net_of(I(2), Drop(0.5), D(2, sb.sigmoid), Drop(0.5), D(2, sb.tanh))
    _with_layer_equations(net, 2, types.SimpleNamespace(activation_derivative=1 - sb.a**2))
    result = compare(net, time_budget=1.0)
    assert {gc.parameter for gc in result.failures} == {"w2_00", "w2_01", "w2_10", "w2_11", "b2_0", "b2_1"}


# ------------------------------------------------------------------------------- the protocol's edges


@dataclasses.dataclass(frozen=True)
class _Unknown(Layer):
    kind = "unknown-test-kind"

    def out_shape(self, in_shape):
        return tuple(in_shape)

    def describe(self):
        return "unknown"


def test_a_kind_without_a_rule_is_named():
    net = net_of(I(2), _Unknown(), D(2, sb.sigmoid))
    with pytest.raises(ValueError, match="_Unknown.*unroll_layer.register"):
        Unrolled(net)


def test_a_registered_kind_is_unrolled_through_the_protocol():
    """A new kind needs only its rule: a scaling layer a = 3x (no parameters, g passes back times 3)."""

    class Triple(UnrolledLayer):
        def __init__(self, layer, index, inputs):
            self.index, self.inputs, self.params, self.constants, self.hidden = index, list(inputs), [], [], []
            self.outputs = [sp.Symbol(f"a{index}_{j}", real=True) for j in range(len(inputs))]

        def in_hidden(self, inputs):
            return [3 * xj for xj in inputs]

        def backprop(self, eq, g, output):
            return {}, [3 * gk for gk in g]

    @dataclasses.dataclass(frozen=True)
    class Tripled(_Unknown):
        pass

    unroll_layer.register(Tripled, Triple)
    net = net_of(I(2), D(2, sb.sigmoid), Tripled(), D(2, sb.tanh))
    # no derive rule for Tripled: the dense layers' own equations, nothing for the triple
    inner = sb.Network([2, 2, 2], activation=[sb.sigmoid, sb.tanh], cost=sb.quadratic).equations()
    net.equations = lambda: types.SimpleNamespace(output_error=inner.output_error, assumes_one_hot=False,
                                                  layers=[inner.layers[0], None, inner.layers[1]])
    result = assert_agree(net)
    assert set(result.methods) == {"symbolic"}, str(result)


def test_size_limits_count_weighted_layers():
    dense = [D(2, sb.sigmoid)] * (MAX_LAYERS + 1)
    with pytest.raises(ValueError, match="tiny"):
        Unrolled(net_of(I(2), *dense))
    ok = net_of(I(2), *[layer for _ in range(MAX_LAYERS) for layer in (D(2, sb.sigmoid), Drop(0.5))][:-1])
    assert len(Unrolled(ok).parameters) == MAX_LAYERS * 6
    with pytest.raises(ValueError, match="tiny"):
        Unrolled(net_of(I(2), *[Drop(0.5)] * (2 * MAX_LAYERS), D(2, sb.sigmoid)))
