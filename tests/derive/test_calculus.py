"""σ′, its forms in the stored activation a, and the book's cancellations (symbp.derive.calculus)."""

from __future__ import annotations

import math
import random
import warnings

import numpy as np
import pytest
import sympy as sp
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import symbp as sb
from symbp.derive.calculus import activation_derivative, output_error
from symbp.symbols import a, y, z

ELEMENTWISE = [sb.sigmoid, sb.tanh, sb.relu, sb.linear, sb.softplus]
SOFTSIGN = sb.Activation("softsign", z / (1 + sp.Abs(z)))
LEAKY = sb.Activation("leaky_relu", sp.Piecewise((z, z > 0), (z / 100, True)))

_rng = random.Random(20240607)
# mostly |z| ≤ 3, plus far points: an a-form from an inverse branch can be right near 0 only
POINTS = [_rng.uniform(-3.0, 3.0) for _ in range(10)] + [-2.5, -0.7, 0.3, 1.1, 2.9, -5.3, 7.1, -9.4, 10.2]
H = 1e-6  # central-difference step


def _f(expr: sp.Expr, *syms):
    return sp.lambdify(syms, expr, modules="numpy")


def _kinks(expr: sp.Expr) -> list[sp.Expr]:
    """Functions of z whose sign change marks a kink or branch switch of ``expr``."""
    out = []
    for e in sp.preorder_traversal(expr):
        if isinstance(e, (sp.Abs, sp.sign, sp.Heaviside)):
            out.append(e.args[0])
        elif isinstance(e, (sp.Max, sp.Min)):
            out += [u - v for u, v in zip(e.args, e.args[1:])]
        elif isinstance(e, sp.core.relational.Relational):
            out.append(e.lhs - e.rhs)
    return [k for k in out if z in k.free_symbols]


def _smooth_points(*exprs: sp.Expr, width: float = 1e-3) -> list[float]:
    """The sample points at least ``width`` away from every kink of ``exprs`` (all in z)."""
    kinks = [_f(k, z) for e in exprs for k in _kinks(e)]
    good = []
    for zv in POINTS:
        if all(np.sign(float(k(zv - width))) == np.sign(float(k(zv + width))) != 0 for k in kinks):
            good.append(zv)
    return good


def check_derivative(act: sb.Activation) -> None:
    """Derived σ′ (z-form and the form the kernels use, at a = σ(z)) = sympy.diff = central difference."""
    d = activation_derivative(act)
    assert d.activation is act
    sigma = act.expr
    raw = sp.diff(sigma, z)
    used_in_z = d.expr.xreplace({a: sigma})
    assert z not in d.expr.free_symbols if d.uses_a else a not in d.expr.free_symbols
    points = _smooth_points(sigma, raw, d.z_form, used_in_z)
    assert len(points) >= 5, f"too few smooth sample points for {sigma}"
    f_sigma, f_raw, f_z = _f(sigma, z), _f(raw, z), _f(d.z_form, z)
    f_used = _f(d.expr, a, z)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for zv in points:
            s = float(f_sigma(zv))
            ref = float(f_raw(zv))
            fd = (float(f_sigma(zv + H)) - float(f_sigma(zv - H))) / (2 * H)
            if not all(math.isfinite(v) for v in (s, ref, fd)):
                continue
            scale = max(1.0, abs(ref), abs(s))
            for name, got in (("z-form", float(f_z(zv))), ("kernel form", float(f_used(s, zv)))):
                assert abs(got - ref) <= 1e-8 * scale, f"{name} {d.expr} of {sigma} at z={zv}: {got} vs diff {ref}"
                assert abs(got - fd) <= 1e-5 * scale, f"{name} {d.expr} of {sigma} at z={zv}: {got} vs FD {fd}"


@pytest.mark.parametrize("act", [*ELEMENTWISE, SOFTSIGN, LEAKY], ids=lambda x: x.name)
def test_builtin_derivative_matches_diff_and_finite_difference(act):
    check_derivative(act)


# ---------------------------------------------------------------- random activations from a small grammar

_CONSTANTS = [sp.Integer(1), sp.Integer(2), sp.Integer(-1), sp.Rational(1, 2), sp.Rational(3, 2)]
_LEAVES = st.one_of(st.just(z), st.just(z), st.sampled_from(_CONSTANTS))


def _grow(children):
    pair = st.tuples(children, children)
    return st.one_of(
        pair.map(lambda t: t[0] + t[1]),
        pair.map(lambda t: t[0] - t[1]),
        pair.map(lambda t: t[0] * t[1]),
        pair.map(lambda t: t[0] / (1 + t[1] ** 2)),  # ÷ a positive expression
        pair.map(lambda t: t[0] / (2 + sp.tanh(t[1]))),
        children.map(lambda u: sp.exp(sp.tanh(u))),  # exp of something bounded
        children.map(lambda u: sp.exp(sp.sin(u) / 2)),
        children.map(sp.tanh),
        children.map(sp.atan),
        children.map(sp.Abs),
        children.map(sp.sin),
        children.map(lambda u: 1 / (1 + sp.exp(-u))),
        children.map(lambda u: u / (1 + sp.Abs(u))),
    )


def expressions(depth: int = 3):
    """Expressions of at most ``depth`` nested operations over z and small constants."""
    strategy = _LEAVES
    for _ in range(depth):
        strategy = st.one_of(_LEAVES, _grow(strategy))
    return strategy


EXPRESSIONS = expressions(2)


def random_activation(expr: sp.Expr) -> sb.Activation:
    assume(z in expr.free_symbols)
    assume(sp.count_ops(expr) <= 30)
    return sb.Activation("random", expr)


@pytest.mark.slow
@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(EXPRESSIONS)
def test_random_activation_derivative(expr):
    check_derivative(random_activation(expr))


def test_inverse_branch_right_near_zero_only_is_not_used():
    """exp(sin(z/4)) inverts to z = 4·asin(log a) only for |z| ≤ 2π: the a-form a·sqrt(1 − log²a)/4 that
    branch gives is wrong beyond, so σ′ must stay right at the far sample points (regression)."""
    act = sb.Activation("periodic", sp.exp(sp.sin(z / 4)))
    check_derivative(act)


@pytest.mark.parametrize("period", [10, 40])
def test_inverse_branch_right_within_the_sample_points_only_is_not_used(period):
    """exp(sin(z/10)) inverts to a·sqrt(1 − log²a)/10, right for |z| ≤ 5π, which covers every sample point:
    the wide-grid check must reject it (σ is not monotone, so no a-form can be right)."""
    act = sb.Activation("periodic", sp.exp(sp.sin(z / period)))
    d = activation_derivative(act)
    assert not d.uses_a
    assert sp.simplify(d.expr - sp.diff(act.expr, z)) == 0


def test_wide_grid_check_accepts_right_forms_and_rejects_wrong_ones():
    from symbp.derive.calculus import _valid_on_wide_grid

    sig = 1 / (1 + sp.exp(-z))
    assert _valid_on_wide_grid(a * (1 - a), sp.diff(sig, z), sig)
    assert not _valid_on_wide_grid(a * (1 - a) * (1 + a / 1000), sp.diff(sig, z), sig)
    periodic = sp.exp(sp.sin(z / 10))
    assert not _valid_on_wide_grid(a * sp.sqrt(1 - sp.log(a) ** 2) / 10, sp.diff(periodic, z), periodic)


# ------------------------------------------------------------------------------------- forms in a


def test_sigmoid_derivative_is_a_times_one_minus_a():
    d = activation_derivative(sb.sigmoid)
    assert d.uses_a
    assert sp.simplify(d.expr - a * (1 - a)) == 0
    assert any("reuses the stored activation" in n for n in d.notes)


def test_tanh_derivative_is_one_minus_a_squared():
    d = activation_derivative(sb.tanh)
    assert d.uses_a
    assert sp.simplify(d.expr - (1 - a**2)) == 0


def test_softplus_derivative_in_a_is_valid():
    d = activation_derivative(sb.softplus)
    assert d.uses_a and d.expr.free_symbols == {a}
    assert sp.simplify(d.expr.xreplace({a: sb.softplus.expr}) - 1 / (1 + sp.exp(-z))) == 0


def test_linear_derivative_is_one():
    assert activation_derivative(sb.linear).expr == 1


def test_relu_derivative_is_a_step_on_a():
    d = activation_derivative(sb.relu)
    assert d.uses_a and d.expr.free_symbols == {a}
    assert d.expr.subs(a, sp.Rational(1, 2)) == 1
    assert d.expr.subs(a, 3) == 1
    assert d.expr.subs(a, 0) == 0  # the dead side (a = max(0, z) = 0), and the convention ReLU′(0) = 0


def test_leaky_relu_piecewise():
    d = activation_derivative(LEAKY)
    assert d.z_form.subs(z, 2) == 1 and d.z_form.subs(z, -2) == sp.Rational(1, 100)
    if d.uses_a:
        assert d.expr.subs(a, 2) == 1 and d.expr.subs(a, sp.Rational(-1, 50)) == sp.Rational(1, 100)
    check_derivative(LEAKY)


def test_softsign_derivative_is_right_in_whichever_form():
    d = activation_derivative(SOFTSIGN)
    expected = 1 / (1 + sp.Abs(z)) ** 2
    for zv in (-2.5, -0.4, 0.3, 1.7):
        got = d.expr.subs({a: SOFTSIGN.expr.subs(z, zv), z: zv}) if d.uses_a else d.expr.subs(z, zv)
        assert abs(float(got) - float(expected.subs(z, zv))) < 1e-12
    if not d.uses_a:
        assert d.expr.free_symbols == {z}


# ---------------------------------------------------------------------------------- cancellations


def test_cross_entropy_sigmoid_output_error_is_a_minus_y():
    out = output_error(sb.sigmoid, sb.cross_entropy)
    assert sp.expand(out.expr - (a - y)) == 0
    assert out.notes and "cancels" in out.notes[0]
    eqs = sb.Network([3, 2], activation=sb.sigmoid, cost=sb.cross_entropy).equations()
    assert sp.expand(eqs.output_error - (a - y)) == 0


@pytest.mark.parametrize("n", [2, 3, 10])
def test_log_likelihood_softmax_output_error_is_a_minus_y(n):
    out = output_error(sb.softmax, sb.log_likelihood, n)
    assert sp.expand(out.expr - (a - y)) == 0
    assert out.assumes_one_hot and not out.uses_sum
    eqs = sb.Network([4, n], activation=sb.softmax, cost=sb.log_likelihood).equations()
    assert sp.expand(eqs.output_error - (a - y)) == 0 and eqs.assumes_one_hot


def test_quadratic_softmax_keeps_the_reduction():
    out = output_error(sb.softmax, sb.quadratic, 3)
    assert out.uses_sum and not out.assumes_one_hot
    assert "S" in {s.name for s in out.expr.free_symbols}


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_softmax_log_likelihood_explicit_vector_proof(n):
    """Softmax on n explicit symbols, C = −Σ yⱼ log aⱼ, ∂C/∂zⱼ with y_n = 1 − Σ others → aⱼ − yⱼ."""
    zs = sp.symbols(f"z0:{n}", real=True)
    ys = sp.symbols(f"y0:{n}", real=True)
    total = sum(sp.exp(zk) for zk in zs)
    acts = [sp.exp(zj) / total for zj in zs]
    cost = -sum(yj * sp.log(aj) for yj, aj in zip(ys, acts))
    one_hot = {ys[-1]: 1 - sum(ys[:-1])}
    for j in range(n):
        grad = sp.diff(cost, zs[j]).xreplace(one_hot)
        expected = (acts[j] - ys[j]).xreplace(one_hot)
        assert sp.simplify(sp.cancel(sp.expand(grad - expected))) == 0, f"n={n}, j={j}"
