"""The sum-over-paths check covers declared layers: the adjoints derived by solving the index equations
(gathers with range and divisibility guards, the argmax scatter of a max) equal the chain rule over every path
of the unrolled network, and a wrong rule is caught."""

from __future__ import annotations

import dataclasses

import pytest

import symbp as sb
from symbp.derive.adjoint import Guard
from symbp.derive.check import compare

pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <function gc_cumulative_time:pytest.PytestUnraisableExceptionWarning")

I, D = sb.Input, sb.Dense
L = sb.Layer.parse


def net_of(*layers):
    return sb.Network(list(layers), cost=sb.quadratic)


NETS = {
    "strided-padded-conv": lambda: net_of(
        I((1, 4, 4)), L("cs2", "z[f,i,j] = sum(W[f,c,p,q]*x[c,2*i+p-1,2*j+q-1] for c in range(1) for p in range(3) "
                        "for q in range(3)) + b[f]", out=(1, 2, 2), params={"W": (1, 1, 3, 3), "b": (1,)},
                        activation=sb.tanh), D(2, sb.sigmoid)),
    "conv-then-1x1-stride-2": lambda: net_of(
        I((1, 4, 4)), L("c1", "z[f,i,j] = sum(W[f,c,p,q]*x[c,i+p,j+q] for c in range(1) for p in range(1) "
                        "for q in range(1)) + b[f]", params={"W": (1, 1, 1, 1), "b": (1,)}, activation=sb.tanh),
        L("s2", "z[f,i,j] = W[f]*x[f,2*i,2*j]", params={"W": (1,)}, activation=sb.tanh), D(2, sb.sigmoid)),
    "overlapping-padded-max": lambda: net_of(
        I((1, 4, 4)), L("scale", "z[c,i,j] = W[c]*x[c,i,j]", params={"W": (1,)}, activation=sb.tanh),
        L("mp", "z[c,i,j] = max(x[c,2*i+p-1,2*j+q-1] for p in range(3) for q in range(3))", out=(1, 2, 2)),
        D(2, sb.sigmoid)),
    "bilinear": lambda: net_of(
        I(3), L("bil", "z[k] = sum(x[i]*W[k,i,j]*x[j] for i in range(3) for j in range(3)) + b[k]",
                params={"W": (2, 3, 3), "b": (2,)}, activation=sb.tanh), D(2, sb.sigmoid)),
    "non-injective-diagonal": lambda: net_of(
        I((2, 2)), L("diag", "z[i] = x[i,i]*W[i]", params={"W": (2,)}, activation=sb.tanh), D(2, sb.sigmoid)),
}


@pytest.mark.parametrize("make", NETS.values(), ids=NETS.keys())
def test_declared_networks_agree_with_the_sum_over_paths(make):
    result = compare(make(), points=2, time_budget=1.0, per_gradient=0.25)
    assert result.ok, str(result)


def test_a_wrong_guard_is_caught():
    """Drop the divisibility guard of the 1x1 stride-2 input gradient (TVM#8087's kind of bug): the check fails."""
    net = NETS["conv-then-1x1-stride-2"]()
    eqs = net.equations()
    eq = eqs.layers[1]
    broken = tuple(dataclasses.replace(adj, guards=tuple(g for g in adj.guards if g.kind != "divides"))
                   if adj.target == "x" else adj for adj in eq.adjoints)
    assert any(isinstance(g, Guard) and g.kind == "divides" for adj in eq.adjoints for g in adj.guards)
    object.__setattr__(eq, "adjoints", broken)
    try:
        net.__dict__["equations"] = lambda *a, **k: eqs  # the check reads the network's equations
        result = compare(net, points=2, time_budget=1.0, per_gradient=0.25)
    finally:
        net.__dict__.pop("equations", None)
    assert not result.ok
