"""Declaration errors: clear ValueErrors naming the layer or the expression (activations, costs, layers,
network), and the leniency that is intended (plain sympy symbols, numpy integer sizes)."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

import symbp as sb
from symbp.symbols import a, y, z


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: sb.Activation("bad", z + y), r"'bad'.*undefined symbol\(s\) y"),
        (lambda: sb.Activation("bad", z * sp.Symbol("w")), r"'bad'.*undefined symbol\(s\) w"),
        (lambda: sb.Activation("const", sp.Integer(3)), r"'const'.*does not depend on z"),
        (lambda: sb.Activation("f", sp.Function("f")(z)), r"'f'.*undefined function.*f\(z\)"),
        (lambda: sb.Activation("g", z * sp.Function("g")(z) + 1), r"'g'.*undefined function"),
        (lambda: sb.Activation("inf", z + sp.oo), r"'inf'.*infinities"),
        (lambda: sb.Activation("cplx", sp.I * z), r"'cplx'.*complex"),
        (lambda: sb.Activation("vec", z, vector=True), r"'vec'.*exp\(z\)"),
        (lambda: sb.Activation("", z), r"non-empty string"),
        (lambda: sb.Cost("bad", a * z), r"'bad'.*undefined symbol\(s\) z"),
        (lambda: sb.Cost("noa", y**2), r"'noa'.*does not depend on the activation a"),
        (lambda: sb.Cost("h", sp.Function("h")(a) * y), r"'h'.*undefined function"),
    ],
)
def test_expression_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_text_needs_parse():
    with pytest.raises(TypeError, match="parse"):
        sb.Activation("txt", "z")


@pytest.mark.parametrize("n", [0, -1, 2.5, 2.0, True, "3", None])
def test_bad_layer_sizes(n):
    with pytest.raises(ValueError, match="positive integer"):
        sb.Input(n)
    with pytest.raises(ValueError, match="positive integer"):
        sb.Dense(n, sb.sigmoid)


@pytest.mark.parametrize("sizes, layer", [([3, 0, 1], 1), ([3, 2, -1], 2), ([3, 2.5, 1], 1), ([0, 2], 0)])
def test_bad_shorthand_sizes_name_the_layer(sizes, layer):
    with pytest.raises(ValueError, match=rf"layer {layer}\b.*positive integer"):
        sb.Network(sizes, activation=sb.sigmoid, cost=sb.quadratic)


def test_numpy_integer_sizes_are_accepted():
    net = sb.Network([np.int64(3), np.int32(2)], activation=sb.sigmoid, cost=sb.quadratic)
    assert net.sizes == [3, 2] and all(type(n) is int for n in net.sizes)


def test_network_errors():
    with pytest.raises(ValueError, match=r"3 layer sizes need 2 activations.*got 1"):
        sb.Network([3, 2, 1], activation=[sb.sigmoid], cost=sb.quadratic)
    with pytest.raises(ValueError, match="mix of sizes and layer objects"):
        sb.Network([sb.Input(3), 4, sb.Dense(2, sb.sigmoid)], cost=sb.quadratic)
    with pytest.raises(ValueError, match=r"layer 1: softmax.*output layer only"):
        sb.Network([3, 4, 2], activation=[sb.softmax, sb.sigmoid], cost=sb.quadratic)
    with pytest.raises(ValueError, match=r"layer 1: softmax"):
        sb.Network([sb.Input(3), sb.Dense(4, sb.softmax), sb.Dense(2, sb.sigmoid)], cost=sb.quadratic)
    with pytest.raises(ValueError, match="needs a cost"):
        sb.Network([3, 2], activation=sb.sigmoid)
    with pytest.raises(ValueError, match="needs activation="):
        sb.Network([3, 2], cost=sb.quadratic)
    with pytest.raises(ValueError, match=r"layer 1: unknown activation 'nope'"):
        sb.Network([3, 2], activation="nope", cost=sb.quadratic)
    with pytest.raises(ValueError, match="unknown cost 'nope'"):
        sb.Network([3, 2], activation=sb.sigmoid, cost="nope")
    with pytest.raises(ValueError, match="first layer must be sb.Input"):
        sb.Network([sb.Dense(3, sb.sigmoid), sb.Dense(2, sb.sigmoid)], cost=sb.quadratic)
    with pytest.raises(ValueError, match=r"layer 1: expected sb.Dense"):
        sb.Network([sb.Input(3), sb.Input(2)], cost=sb.quadratic)
    with pytest.raises(ValueError, match="activation= is for the shorthand"):
        sb.Network([sb.Input(3), sb.Dense(2, sb.sigmoid)], activation=sb.sigmoid, cost=sb.quadratic)
    with pytest.raises(ValueError, match="at least two layers"):
        sb.Network([3], activation=sb.sigmoid, cost=sb.quadratic)
    with pytest.raises(ValueError, match="expected an Activation"):
        sb.Dense(3, 42)


def test_names_for_builtins_are_accepted():
    net = sb.Network([3, 2], activation="tanh", cost="cross-entropy")
    assert net.activations == [sb.tanh] and net.cost is sb.cross_entropy


def test_plain_symbols_are_accepted_and_matched_by_name():
    zz, aa, yy = sp.Symbol("z"), sp.Symbol("a"), sp.Symbol("y")
    act = sb.Activation("mine", 1 / (1 + sp.exp(-zz)))
    assert act.expr.free_symbols == {z}  # the canonical real symbol
    assert act == sb.Activation("mine", sb.sigmoid.expr)
    assert sp.diff(sb.Activation("abs", sp.Abs(zz)).expr, z) == sp.sign(z)  # real z: no re/im clutter
    cost = sb.Cost("q", (aa - yy) ** 2 / 2)
    assert cost.expr.free_symbols == {a, y}
    assert sp.expand(cost.expr - sb.quadratic.expr) == 0


def test_a_reloaded_stage_replaces_itself_and_another_is_refused():
    """``importlib.reload`` of the module holding a stage (IPython's autoreload) registers it again; a different
    function under a stage's name is an error naming both.  In a fresh process: a reload here would leave this
    one's ``sb.Model`` a class that ``compile`` no longer makes."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import importlib
        import numpy as np
        import symbp as sb
        from symbp import network
        from symbp.train import model
        importlib.reload(model)
        net = sb.Network([4, 3, 2], activation=sb.sigmoid, cost=sb.quadratic)
        print(net.compile(backend="numpy").feedforward(np.zeros((1, 4))).shape)
        def impostor(*args, **kwargs):
            pass
        try:
            network.register_stage("compile")(impostor)
        except ValueError as exc:
            print(exc)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "(1, 2)" and "'compile' stage is registered twice" in lines[1] and "impostor" in lines[1]
