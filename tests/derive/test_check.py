"""BP1–BP4 as derived by symbp equal the book's sum over paths, for tiny networks (symbp.derive.check)."""

from __future__ import annotations

import types

import mpmath
import pytest
import sympy as sp
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import symbp as sb
from symbp.derive.check import Unrolled, bp_gradients, compare, sum_over_paths_gradients
from symbp.symbols import a, y, z

ELEMENTWISE = [sb.sigmoid, sb.tanh, sb.relu, sb.linear, sb.softplus]
COSTS = [sb.quadratic, sb.cross_entropy, sb.log_likelihood]
SOFTSIGN = sb.Activation("softsign", z / (1 + sp.Abs(z)))
LEAKY = sb.Activation("leaky_relu", sp.Piecewise((z, z > 0), (z / 100, True)))
SMOOTH = {"sigmoid", "tanh", "linear", "softplus", "softmax"}


def assert_agree(net, **kw):
    result = compare(net, **kw)
    assert result.ok, str(result)
    assert len(result.gradients) == sum(n * (m + 1) for m, n in zip(net.sizes, net.sizes[1:]))
    return result


# relu output × cross-entropy / log-likelihood is left out: log 0 at a dead output unit (a = 0) makes the
# cost itself undefined there (the sum over paths gives 0·∞, BP's Piecewise gives 0).
PAIRS = [pytest.param(out, cost, id=f"{out.name}-{cost.name}")
         for out in [*ELEMENTWISE, sb.softmax] for cost in COSTS
         if not (out is sb.relu and cost is not sb.quadratic)]


@pytest.mark.parametrize("out, cost", PAIRS)
def test_output_activation_and_cost(out, cost):
    """Every output activation × cost: [2, 3, 2] with a tanh hidden layer."""
    result = assert_agree(sb.Network([2, 3, 2], activation=[sb.tanh, out], cost=cost))
    if out.name in SMOOTH:  # smooth networks are proved symbolically, at least for the output layer
        assert result["b2_0"].method == "symbolic", str(result)
    if out is sb.softmax and cost is sb.log_likelihood:
        assert result.one_hot


@pytest.mark.parametrize("hidden", ELEMENTWISE, ids=lambda act: act.name)
@pytest.mark.parametrize("cost", COSTS, ids=lambda c: c.name)
def test_hidden_activation(hidden, cost):
    """Every built-in elementwise activation in two hidden layers ([2, 2, 3, 2], three weighted layers)."""
    out = sb.softmax if cost is sb.log_likelihood else sb.sigmoid
    result = assert_agree(sb.Network([2, 2, 3, 2], activation=[hidden, hidden, out], cost=cost))
    if hidden.name in SMOOTH:
        assert result.methods["symbolic"] > 0, str(result)
    else:
        assert set(result.methods) == {"numeric"}


def test_mixed_three_units_softmax_quadratic():
    """The softmax reduction S = Σₖ aₖ ∂C/∂aₖ (no cancellation for the quadratic cost), three outputs."""
    net = sb.Network([3, 2, 3], activation=[sb.softplus, sb.softmax], cost=sb.quadratic)
    assert "S" in {s.name for s in net.equations().output_error.free_symbols}
    assert_agree(net)


@pytest.mark.parametrize("act", [SOFTSIGN, LEAKY], ids=lambda act: act.name)
@pytest.mark.parametrize("where", ["hidden", "output", "both"])
def test_custom_activation(act, where):
    acts = {"hidden": [act, sb.sigmoid], "output": [sb.tanh, act], "both": [act, act]}[where]
    result = assert_agree(sb.Network([2, 3, 2], activation=acts, cost=sb.quadratic))
    assert result.methods["numeric"] > 0  # non-smooth: decided by the numbers


def test_custom_cost():
    cost = sb.Cost("quartic", (a - y) ** 4 / 4)
    assert_agree(sb.Network([2, 2, 2], activation=[sb.sigmoid, sb.tanh], cost=cost))


_LEAVES = st.one_of(st.just(z), st.sampled_from([sp.Integer(1), sp.Integer(2), sp.Rational(1, 2)]))
_UNARY = [sp.tanh, sp.atan, sp.sin, lambda u: 1 / (1 + sp.exp(-u)), lambda u: u / (1 + sp.Abs(u))]


def _grow(children):
    pair = st.tuples(children, children)
    return st.one_of(pair.map(lambda t: t[0] + t[1]), pair.map(lambda t: t[0] * t[1]),
                     *(children.map(f) for f in _UNARY))


RANDOM_EXPRESSIONS = st.one_of(_LEAVES, _grow(st.one_of(_LEAVES, _grow(_LEAVES))))


@settings(max_examples=3, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(RANDOM_EXPRESSIONS)
def test_random_hidden_activation(expr):
    assume(z in expr.free_symbols)
    act = sb.Activation("random", expr)
    assert_agree(sb.Network([2, 2, 2], activation=[act, sb.sigmoid], cost=sb.quadratic), time_budget=2.0)


# ------------------------------------------------------------------------------- the checker itself


def test_sum_over_paths_equals_direct_differentiation():
    """A third route: differentiate the fully unrolled cost C(x, w, b) directly."""
    for net in (sb.Network([2, 2, 2], activation=sb.sigmoid, cost=sb.quadratic),
                sb.Network([2, 2, 3], activation=[sb.tanh, sb.softmax], cost=sb.cross_entropy)):
        u = Unrolled(net)
        _, fa = u.forward
        cost = u.cost().xreplace(dict(zip(u.A[u.L], fa[u.L])))
        paths = sum_over_paths_gradients(net)
        syms = u.x + u.y + u.parameters
        direct = sp.lambdify(syms, [sp.diff(cost, p) for p in u.parameters], modules="mpmath")
        path = sp.lambdify(syms, [paths[p] for p in u.parameters], modules="mpmath")
        with mpmath.workdps(30):
            args = [mpmath.mpf(k % 7 - 3) / 5 for k in range(len(syms))]
            for p, d, q in zip(u.parameters, direct(*args), path(*args)):
                assert abs(d - q) < mpmath.mpf("1e-25") * max(1, abs(d)), p


def test_forms_use_the_advertised_symbols():
    net = sb.Network([2, 2, 2], activation=sb.sigmoid, cost=sb.quadratic)
    u = Unrolled(net)
    xwb = bp_gradients(net)
    zform = sum_over_paths_gradients(net, form="z")
    names = {s.name for e in xwb.values() for s in e.free_symbols}
    assert names <= {s.name for s in u.x + u.y + u.parameters}
    assert "w1_01" in names and "x1" in names and "b1_0" in names
    znames = {s.name for e in zform.values() for s in e.free_symbols}
    assert not any(n.startswith("b") for n in znames) and "z1_0" in znames
    with pytest.raises(ValueError, match="form"):
        bp_gradients(net, form="nope")


def test_wrong_output_error_is_caught():
    """δᴸ without the σ′ factor (a − y for quadratic∘sigmoid) must fail, symbolically and numerically."""
    net = sb.Network([2, 2, 2], activation=sb.sigmoid, cost=sb.quadratic)
    real = net.equations()
    net.equations = lambda: types.SimpleNamespace(output_error=a - y, assumes_one_hot=False, layers=real.layers)
    result = compare(net, time_budget=1.0)
    assert not result.ok
    assert {gc.parameter for gc in result.failures} == {p.name for p in Unrolled(net).parameters}
    assert "MISMATCH" in str(result)


def test_wrong_hidden_derivative_is_caught():
    """σ′ = 1 − a² (tanh's) in a sigmoid hidden layer: only the hidden layer's gradients fail."""
    net = sb.Network([2, 2, 2], activation=sb.sigmoid, cost=sb.quadratic)
    real = net.equations()
    wrong = [types.SimpleNamespace(activation_derivative=1 - a**2), real.layers[1]]
    net.equations = lambda: types.SimpleNamespace(output_error=real.output_error, assumes_one_hot=False,
                                                  layers=wrong)
    result = compare(net, time_budget=1.0)
    failed = {gc.parameter for gc in result.failures}
    assert failed == {"w1_00", "w1_01", "w1_10", "w1_11", "b1_0", "b1_1"}


def test_one_hot_assumption_matters():
    """log-likelihood∘softmax = a − y holds for targets summing to 1 only: random y must break it."""
    net = sb.Network([2, 2, 3], activation=[sb.tanh, sb.softmax], cost=sb.log_likelihood)
    assert compare(net).ok
    broken = compare(net, one_hot=False, symbolic=False)
    assert not broken.ok


def test_random_points_are_one_hot_when_assumed():
    from symbp.derive.check import _random_points

    u = Unrolled(sb.Network([2, 3], activation=sb.softmax, cost=sb.log_likelihood))
    for env in _random_points(u, 6, seed=3, one_hot=True):
        assert sorted(env[yj] for yj in u.y) == [0.0, 0.0, 1.0]


def test_result_reports_methods():
    smooth = compare(sb.Network([2, 2, 2], activation=sb.sigmoid, cost=sb.cross_entropy))
    assert set(smooth.methods) == {"symbolic"} and smooth and "OK" in str(smooth)
    kinked = compare(sb.Network([2, 2, 2], activation=sb.relu, cost=sb.quadratic))
    assert set(kinked.methods) == {"numeric"}
    assert all(gc.max_error < 1e-20 for gc in kinked.gradients)
    assert "points at 30 digits" in kinked["w1_00"].detail


def test_networks_too_big_for_sum_over_paths():
    with pytest.raises(ValueError, match="tiny"):
        compare(sb.Network([784, 30, 10], activation=sb.sigmoid, cost=sb.quadratic))


def test_numbers_use_high_precision():
    """The numeric route really runs at 30 digits: errors far below float64's 1e-16."""
    result = compare(sb.Network([2, 3, 2], activation=[sb.softplus, sb.relu], cost=sb.quadratic), digits=40)
    assert all(gc.max_error < 1e-30 for gc in result.gradients), str(result)
    assert mpmath.mp.dps == 15  # the working precision is restored


# ------------------------------------------------------------------- the symbolic step's time limit


def test_symbolic_step_out_of_time_leaves_the_decision_to_the_numbers(monkeypatch):
    """The symbolic step stops at its budget even when the stop first lands in a finalizer, and nothing reaches
    ``sys.unraisablehook`` (pytest fails a test whose hook was interrupted while printing such an exception)."""
    import sys
    import time

    from symbp.derive import check

    class SlowFinalizer:
        def __del__(self):
            end = time.monotonic() + 0.3
            while time.monotonic() < end:
                pass

    def slow(expr, zs):
        for _ in range(3):
            SlowFinalizer()  # created and dropped: its __del__ runs here, as sympy's cache and gc callbacks do
        while True:
            pass

    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    monkeypatch.setattr(check, "_exp_to_symbols", slow)
    z = sp.Symbol("z")
    started = time.monotonic()
    proved, why = check._symbolic_zero(sp.sin(z) - sp.cos(z), [z], seconds=0.1)
    assert (proved, why) == (None, "symbolic simplification timed out (0.1s)")
    assert time.monotonic() - started < 5
    assert seen == []


def test_symbolic_step_without_a_time_limit_and_a_bad_budget_variable(monkeypatch):
    """An infinite budget runs the symbolic step to the end; a malformed ``SYMBP_DERIVE_SECONDS`` is said, not
    taken for sympy failing to simplify."""
    from symbp.derive import check

    z = sp.Symbol("z")
    assert check._symbolic_zero(sp.exp(z) * sp.exp(-z) - 1, [z], seconds=float("inf"))[0] is True
    monkeypatch.setenv("SYMBP_DERIVE_SECONDS", "soon")
    with pytest.raises(ValueError, match="SYMBP_DERIVE_SECONDS='soon' is not a number"):
        check._symbolic_zero(sp.sin(z) ** 2 + sp.cos(z) ** 2 - 1, [z], seconds=1.0)
