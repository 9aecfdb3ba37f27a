"""Calculus on activations and costs: σ′, ∇ₐC and the output error δᴸ.

Takes: ``Activation`` and ``Cost`` objects (sympy expressions in z, a, y).
Gives: simplified derivatives, rewritten in terms of the stored activation ``a`` where that is valid and
cheaper, each with the notes that explain which simplification was applied.

Nothing here knows a derivative by name.  σ′ comes from ``sympy.diff``; the a-form is searched by three
general methods (substitute σ(z) → a; invert a = σ(z) and substitute z = σ⁻¹(a); for piecewise
derivatives of monotone σ, rewrite conditions on z as conditions on a), every candidate is validated
against σ′(z) at sample points, and the cheapest (by a weighted operation count in which exp, log and
friends are expensive) wins.  The book's cancellations (cross-entropy∘sigmoid, log-likelihood∘softmax →
a − y) fall out of simplifying ∇ₐC ⊙ σ′.

Every derivation runs within the budget of ``symbp.limits`` (``sb.derive.budget``,
``SYMBP_DERIVE_SECONDS``), each expression (σ′ of an activation, ∇ₐC of a cost, δᴸ of an output layer, which
includes the ∇ₐC and σ′ it is made of) on its own: the plain derivative (``sympy.diff``) is required and must
be produced within the budget and the size bound (``MAX_OPS``), otherwise ``ValueError``; the improvements are
optional and degrade instead of failing.
The candidate simplifications of each expression (``together``, ``cancel``, ``factor``, ``simplify``) get up to
half of the time left each, and one that runs out is skipped; the σ′ simplification gets
``Z_FORM_SHARE`` of the σ′ budget, the a-form search ``A_FORM_SHARE`` of what is left, and its last check on the
wide grid ``CHECK_SHARE`` of the rest; an a-form is used only when it passed every check in time.  When a
step ran out, the derivative is the plain one (as ``sympy.diff`` gives it, or the plain product for δᴸ), always
correct and of bounded size, and a note says so.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field, replace
from functools import lru_cache

import mpmath
import numpy as np
import sympy as sp

from symbp import limits
from symbp.activations import Activation, check_size, describe, node_count
from symbp.costs import Cost
from symbp.render import text
from symbp.symbols import a, numpy_function, y, z

#: Share of the σ′ budget for simplifying σ′(z) (the z-form candidates).
Z_FORM_SHARE = 0.3
#: Share of the σ′ budget left after the z-form for the search of a form in a (substitution, inversion, ...).
A_FORM_SHARE = 0.5
#: Share of the σ′ budget left after the search for the last check of the a-forms on the wide grid (what remains,
#: at least 17.5 % of the budget, is for choosing between the forms and writing the notes).
CHECK_SHARE = 0.5
#: Share of a δᴸ or ∇ₐC budget for its candidate simplifications.
SIMPLIFY_SHARE = 0.6
#: Each candidate simplification (together, cancel, factor, simplify) may use this share of the time left.
STEP_SHARE = 0.5
#: δᴸ of an output layer, with the σ′ and ∇ₐC it is made of, is derived within one budget: ∇ₐC gets what σ′
#: left of it and δᴸ what both left, but each at least this share of the budget.
MIN_OUTPUT_SHARE = 0.25

#: The sum Σₖ aₖ gₖ over a layer's units that a normalised (softmax) layer's Jacobian needs.
S = sp.Symbol("S", real=True)
#: g = ∂C/∂aˡ as it reaches a hidden layer from the next one ((wˡ⁺¹)ᵀ δˡ⁺¹ for a dense next layer, BP2).
g = sp.Symbol("g", real=True)

def _txt(expr: sp.Expr) -> str:
    return text(expr)


_EXPENSIVE = (sp.exp, sp.log, sp.tanh, sp.sinh, sp.cosh, sp.sin, sp.cos, sp.atan, sp.asinh, sp.erf, sp.sqrt)


def cost_measure(expr: sp.Expr) -> int:
    """Operation count in which transcendental functions weigh 10 and piecewise branches 2."""
    n = sp.count_ops(expr)
    heavy = sum(1 for f in sp.preorder_traversal(expr) if isinstance(f, sp.Function) and f.func in _EXPENSIVE)
    heavy += sum(1 for p in sp.preorder_traversal(expr) if isinstance(p, sp.Pow) and not p.exp.is_Integer)
    n += sum(1 for p in sp.preorder_traversal(expr) if isinstance(p, sp.Pow))
    pieces = sum(len(p.args) for p in expr.atoms(sp.Piecewise))
    return int(n + 9 * heavy + 2 * pieces)


def _heaviside_to_piecewise(expr: sp.Expr) -> sp.Expr:
    """Heaviside(x) → 1 if x > 0 else 0: the subgradient convention used at kinks (ReLU′(0) = 0)."""
    return expr.replace(
        lambda e: isinstance(e, sp.Heaviside),
        lambda e: sp.Piecewise((sp.Integer(1), e.args[0] > 0), (sp.Integer(0), True)),
    )


def _tidy(expr: sp.Expr, var: sp.Symbol) -> sp.Expr:
    """Cheap algebraic rewrites that simplify() misses: x·sign(x) → |x|, Heaviside → Piecewise."""
    expr = _heaviside_to_piecewise(expr)
    expr = expr.subs(var * sp.sign(var), sp.Abs(var))
    return expr


def _reads_negative(s: sp.Add) -> bool:
    """a − 1 and −a + y read better as 1 − a and a − y (constant term positive, else first symbol positive)."""
    const, terms = s.as_coeff_add()
    if const != 0:
        return bool(const < 0)
    first = min(terms, key=lambda t: sorted(x.name for x in t.free_symbols) or [""])
    return bool(first.as_coeff_Mul()[0] < 0)


def _positive_factors(expr: sp.Expr) -> sp.Expr:
    """−a·(a − 1) → a·(1 − a): flip the signs of sum factors so the product reads as the book writes it."""
    if not expr.is_Mul:
        return expr
    coeff, factors = expr.as_coeff_mul()
    sign = 1 if coeff >= 0 else -1
    fixed = []
    for f in factors:
        if f.is_Add and _reads_negative(f):
            f, sign = -f, -sign
        fixed.append(f)
    if sign < 0:
        for i, f in enumerate(fixed):
            if f.is_Add:
                fixed[i], sign = -f, 1
                break
    return sp.Mul(abs(coeff) * sign, *fixed)


def _small(expr: sp.Expr) -> bool:
    """Within the size bound (``MAX_OPS``)?  Larger candidates are dropped, never built upon."""
    max_ops = limits.current().max_ops
    return node_count(expr, limits.MAX_NODES) <= limits.MAX_NODES and sp.count_ops(expr) <= max_ops


def _candidates(expr: sp.Expr) -> list[sp.Expr]:
    """``expr`` and its simplifications, each within ``STEP_SHARE`` of the time left (skipped when it runs out
    or gives an expression beyond the size bound)."""
    out = [expr]
    for f in (sp.together, sp.cancel, sp.factor, sp.simplify):
        limits.checkpoint()
        try:
            cand, finished = limits.run_optional(lambda f=f: f(expr), share=STEP_SHARE)
        except (sp.PolynomialError, NotImplementedError, TypeError, ValueError):  # pragma: no cover
            continue
        if finished and isinstance(cand, sp.Expr) and _small(cand):
            out.append(cand)
    out += [_positive_factors(e) for e in out]
    return out


def _collect(fill, share: float) -> tuple[list, bool]:
    """Run ``fill(out)`` with ``share`` of the time left; gives what it appended to ``out`` (all of it, or what it
    had when time ran out) and whether it finished."""
    out: list = []
    _, finished = limits.run_optional(lambda: fill(out), share=share)
    return out, finished


def _sample_points(n: int = 9, seed: int = 1234) -> list[float]:
    rng = random.Random(seed)
    pts = [rng.uniform(-4.0, 4.0) for _ in range(n)] + [0.37, -0.61, 2.3, -2.9]
    # far points too: an inverse branch can be right on [-4, 4] only (exp(sin(z/4)) → a·sqrt(1 − log²a)/4
    # is wrong for |z| > 2π); saturated values agree within the absolute tolerance of _agrees.
    pts += [6.7, -7.9, 11.3, -13.1]
    return pts


@lru_cache(maxsize=1024)
def _compiled(expr: sp.Expr, syms: tuple):
    return sp.lambdify(syms, expr, modules="mpmath")


def _values(expr: sp.Expr, env: dict) -> complex | None:
    # Compiled mpmath evaluation first: evalf(subs=...) re-substitutes at every node and can take seconds
    # per point on the nested inverse functions the a-form search produces; evalf remains the fallback.
    try:
        syms = tuple(env)
        with mpmath.workdps(20):
            v = complex(_compiled(expr, syms)(*(mpmath.mpf(env[s]) for s in syms)))
    except (ZeroDivisionError, OverflowError):
        return None
    except (TypeError, ValueError, NameError, AttributeError, KeyError):
        try:
            v = complex(expr.evalf(15, subs=env, chop=True))
        except (TypeError, ValueError, ZeroDivisionError):
            return None
    if math.isnan(v.real) or math.isinf(v.real) or abs(v.imag) > 1e-9:
        return None
    return v


def _agrees(candidate: sp.Expr, reference: sp.Expr, sigma: sp.Expr, tol: float = 1e-9,
            near_only: bool = False) -> bool:
    """Does candidate(a = σ(z), z) equal reference(z) at the sample points (|z| ≤ 4 only if ``near_only``)?"""
    for zv in _sample_points():
        limits.checkpoint()
        if near_only and abs(zv) > 4:
            continue
        zs = sp.Float(zv, 20)
        av = _values(sigma, {z: zs})
        ref = _values(reference, {z: zs})
        if av is None or ref is None:
            continue
        got = _values(candidate, {z: zs, a: sp.Float(av.real, 20)})
        if got is None or abs(got - ref) > tol * max(1.0, abs(ref)):
            return False
    return True


#: A wide, dense grid of z for the final check of an a-form: the sample points above reach |z| ≈ 13 only, and
#: exp(sin(z/10)) inverts to a form that is right there and wrong beyond |z| = 5π.
_WIDE = np.concatenate([-np.geomspace(1000.0, 50.0, 200), np.linspace(-50.0, 50.0, 4001),
                        np.geomspace(50.0, 1000.0, 200)])


def _on_grid(expr: sp.Expr, syms: tuple, args: tuple) -> np.ndarray | None:
    """expr evaluated with NumPy on the grid (non-finite and complex values as NaN), or None if it can't be."""
    try:
        with np.errstate(all="ignore"):
            v = np.asarray(numpy_function(syms, expr)(*args))
    except Exception:  # noqa: BLE001 - lambdify/NumPy can fail in many ways on odd functions: no verdict
        return None
    v = np.broadcast_to(v, _WIDE.shape)
    if np.iscomplexobj(v):
        v = np.where(np.abs(v.imag) <= 1e-12 * np.maximum(1.0, np.abs(v.real)), v.real, np.nan)
    v = v.astype(float)
    return np.where(np.isfinite(v), v, np.nan)


@lru_cache(maxsize=256)
def _sigma_on_grid(sigma: sp.Expr, reference: sp.Expr) -> tuple[np.ndarray, np.ndarray] | None:
    """σ and σ′ on ``_WIDE``, computed once per activation whatever the number of candidates; None when NumPy
    cannot evaluate them, (None, None) when σ rises and falls there (then σ′ is no function of a)."""
    av = _on_grid(sigma, (z,), (_WIDE,))
    ref = _on_grid(reference, (z,), (_WIDE,))
    if av is None or ref is None:
        return None
    known = np.isfinite(ref)
    scale = np.nanmax(np.abs(ref)) if known.any() else 0.0
    monotone = not ((ref[known] > 1e-12 * scale).any() and (ref[known] < -1e-12 * scale).any())
    return (av, ref) if monotone else (None, None)


def _valid_on_wide_grid(cand: sp.Expr, reference: sp.Expr, sigma: sp.Expr, tol: float = 1e-6) -> bool:
    """The last check of an a-form, on ``_WIDE``: σ must be monotone there (if σ takes a value at two z with
    different σ′, no function of a gives σ′), and the form must match σ′(z) wherever both are finite.
    Expressions NumPy cannot evaluate keep the verdict of the sample points."""
    grid = _sigma_on_grid(sigma, reference)
    if grid is None:
        return True
    av, ref = grid
    if av is None:
        return False  # σ rises and falls: not invertible
    ok = np.isfinite(ref) & np.isfinite(av)
    got = _on_grid(cand, (z, a), (_WIDE, np.where(ok, av, 0.0)))
    if got is None:
        return True
    both = ok & np.isfinite(got)
    return bool(np.all(np.abs(got[both] - ref[both]) <= tol * np.maximum(1.0, np.abs(ref[both]))))


def _best(cands: list[sp.Expr]) -> sp.Expr:
    return _positive_factors(min(cands, key=lambda e: (cost_measure(e), len(sp.srepr(e)))))


@dataclass(frozen=True)
class ActivationDerivative:
    """σ′ of one activation: ``expr`` is the form the kernels use (in ``a`` when ``uses_a``)."""

    activation: Activation
    z_form: sp.Expr
    expr: sp.Expr
    uses_a: bool
    method: str
    notes: tuple[str, ...] = field(default=())
    seconds: float = field(default=0.0, compare=False)  #: time it took (δᴸ counts it against its budget)


def _substitution_forms(d: sp.Expr, sigma: sp.Expr) -> list[sp.Expr]:
    """Method 1: replace σ(z) (and simple rewrites of it) by a."""
    out = []
    forms = {sigma}
    for f in (sp.simplify, sp.together):
        form, finished = limits.run_optional(lambda f=f: f(sigma), share=STEP_SHARE)
        if finished:
            forms.add(form)
    for form in forms:
        if form == z or form.is_Atom:
            continue
        cand = d.subs(form, a)
        if z not in cand.free_symbols:
            out.extend(_candidates(cand))
    return out


def _inverse_forms(d: sp.Expr, sigma: sp.Expr) -> list[sp.Expr]:
    """Method 2: solve a = σ(z) for z and substitute z = σ⁻¹(a)."""
    try:
        # check/simplify off: solve's own checking can run for minutes on expressions with Abs; every
        # candidate is validated numerically by _agrees instead.  Within STEP_SHARE of the time left.
        sols, finished = limits.run_optional(
            lambda: sp.solve(sp.Eq(sigma, a), z, dict=False, check=False, simplify=False), share=STEP_SHARE)
    except (NotImplementedError, ValueError, TypeError):
        return []
    if not finished:
        return []
    out = []
    for sol in sols if isinstance(sols, list) else []:
        branches = [p.expr for p in sol.args] if isinstance(sol, sp.Piecewise) else [sol]
        for inv in branches:
            if inv.has(sp.nan) or z in inv.free_symbols:
                continue
            # A wrong branch stays wrong when simplified: reject it on an unevaluated substitution (building
            # nested inverse functions evaluated can take minutes), before the slow simplification.
            with sp.evaluate(False):
                quick = d.xreplace({z: inv})
            if z in quick.free_symbols or not _agrees(quick, d, sigma, near_only=True):
                continue
            cand = d.xreplace({z: inv})  # same result as subs for a symbol, without seconds of re-evaluation
            out.extend(_candidates(cand))
    return out


def _monotone_condition_forms(d: sp.Expr, sigma: sp.Expr) -> list[sp.Expr]:
    """Method 3: piecewise σ′ of a monotone σ: conditions z ⋚ c become a ⋚ σ(c); z-free branches kept."""
    if not d.has(sp.Piecewise):
        return []

    def relabel(rel):
        if not isinstance(rel, sp.core.relational.Relational):
            return rel
        lhs, rhs = rel.lhs - rel.rhs, sp.Integer(0)
        if not (lhs - z).is_number:
            return None
        c = -(lhs - z)
        return rel.func(a, sigma.subs(z, c) + rhs)

    failed = False

    def fix(pw):
        nonlocal failed
        pieces = []
        for p in pw.args:
            cond = p.cond
            if cond is not sp.true:
                new = relabel(cond)
                if new is None:
                    failed = True
                    return pw
                cond = new
            expr = p.expr if z not in p.expr.free_symbols else p.expr.subs(sigma, a)
            if z in expr.free_symbols:
                failed = True
                return pw
            pieces.append((expr, cond))
        return sp.Piecewise(*pieces)

    cand = d.replace(lambda e: isinstance(e, sp.Piecewise), fix)
    if failed or z in cand.free_symbols:
        return []
    return [cand]


def activation_derivative(act: Activation) -> ActivationDerivative:
    """σ′ of an elementwise activation, in terms of a where a valid and cheaper form exists.

    Within the derivation budget (see the module docstring); cached per activation and limits."""
    lim = limits.current()
    d = _derive_activation(act, lim.seconds, lim.max_ops)
    return d if d.activation is act else replace(d, activation=act)  # cached for an equal activation


@lru_cache(maxsize=256)
def _derive_activation(act: Activation, seconds: float, max_ops: int) -> ActivationDerivative:
    what = f"Activation {act.name!r}: deriving σ′ of {describe(act.expr)}"
    start = time.monotonic()
    d = limits.run_required(what, lambda: _activation_derivative(act), seconds)
    return replace(d, seconds=time.monotonic() - start)


def _ran_out(step: str) -> str:
    return f"{step} ran out of its share of the derivation budget ({limits.describe()})"


def _activation_derivative(act: Activation) -> ActivationDerivative:
    sigma = act.expr
    where = f"Activation {act.name!r}"
    raw = sp.diff(sigma, z)
    if raw.has(sp.Derivative, sp.Subs):
        raise ValueError(f"activation {act.name!r}: sympy cannot differentiate {sigma}")
    raw = _tidy(raw, z)
    check_size(where, "σ′", raw)
    notes = []

    z_form, z_done = limits.run_optional(
        lambda: _best([c for c in _candidates(raw) if _agrees(c, raw, sigma)] or [raw]), share=Z_FORM_SHARE)
    if not z_done:
        z_form = raw
        notes.append(f"{_ran_out('simplifying σ′')}: σ′(z) = {_txt(z_form)} is kept as differentiation gave it.")

    def fill_a(out):
        for method, finder in (
            ("substitution σ(z) → a", _substitution_forms),
            ("inversion z = σ⁻¹(a)", _inverse_forms),
            ("monotone σ: conditions on z rewritten on a", _monotone_condition_forms),
        ):
            if any(cost_measure(c) == sp.count_ops(c) for c, _ in out):
                break  # a form without transcendental functions is already found: skip the slower methods
            for cand in finder(raw, sigma):
                limits.checkpoint()
                cand = _tidy(cand, a)
                if z not in cand.free_symbols and _small(cand) and _agrees(cand, raw, sigma):
                    out.append((cand, method))

    a_cands, a_done = _collect(fill_a, A_FORM_SHARE)

    def check():
        ranked = sorted(a_cands, key=lambda cm: (cost_measure(cm[0]), len(sp.srepr(cm[0]))))
        return next((cm for cm in ranked if _valid_on_wide_grid(cm[0], raw, sigma)), None)

    checked, check_done = limits.run_optional(check, share=CHECK_SHARE)
    if a_cands and not check_done:
        notes.append(f"{_ran_out('checking the forms of σ′ in a on the wide grid')}: σ′(z) = {_txt(z_form)} is "
                     "kept in z.")
        return ActivationDerivative(act, z_form, z_form, False, "z", tuple(notes))
    partial = "" if a_done else f" ({_ran_out('the search for forms in a')}; a cheaper form may exist)"
    if checked is not None:
        best_a, method = checked
        if cost_measure(best_a) <= cost_measure(z_form):
            heavy_z = cost_measure(z_form) - sp.count_ops(z_form)
            why = "no exp" if heavy_z > 0 else "no recomputation of σ′(z)"
            notes.append(
                f"σ′(z) = {_txt(best_a)}: the backward pass reuses the stored activation a, {why} "
                f"(found by {method}){partial}."
            )
            return ActivationDerivative(act, z_form, best_a, True, method, tuple(notes))
        notes.append(f"an a-form {_txt(best_a)} exists but σ′(z) = {_txt(z_form)} is cheaper{partial}.")
    elif not a_done:
        notes.append(f"{_ran_out('the search for a form of σ′ in a')}: σ′(z) = {_txt(z_form)} is kept in z.")
    else:
        notes.append(f"σ′(z) = {_txt(z_form)}: no valid form in a was found, so z is kept for the backward pass.")
    return ActivationDerivative(act, z_form, z_form, False, "z", tuple(notes))


@dataclass(frozen=True)
class OutputError:
    """δᴸ for one output activation and cost.

    ``expr`` is elementwise in a, y (and z where needed).  For a normalised (softmax) output it may contain
    the symbol ``S`` = Σₖ aₖ ∂C/∂aₖ (a per-sample reduction); when the cost makes that sum a constant
    under one-hot targets (Σₖ yₖ = 1) it is substituted, which is how log-likelihood∘softmax becomes a − y.
    """

    expr: sp.Expr
    cost_gradient: sp.Expr
    uses_sum: bool
    assumes_one_hot: bool
    notes: tuple[str, ...]


def cost_gradient(cost: Cost) -> sp.Expr:
    """∂C/∂aⱼ for the per-output cost expression, simplified (within the derivation budget; cached)."""
    return _timed_cost_gradient(cost, limits.current().seconds)[0]


def _timed_cost_gradient(cost: Cost, seconds: float, budget: float | None = None) -> tuple[sp.Expr, float]:
    return _derive_cost_gradient(cost, seconds, limits.current().max_ops, budget)


@lru_cache(maxsize=256)
def _derive_cost_gradient(cost: Cost, seconds: float, max_ops: int, budget: float | None) -> tuple[sp.Expr, float]:
    def derive():
        g = sp.diff(cost.expr, a)
        check_size(f"Cost {cost.name!r}", "∂C/∂a", g)
        best, _ = limits.run_optional(lambda: _best(_candidates(g)), share=SIMPLIFY_SHARE, default=g)
        return best

    start = time.monotonic()
    g = limits.run_required(f"Cost {cost.name!r}: deriving ∂C/∂a of {describe(cost.expr)}", derive, seconds, budget)
    return g, time.monotonic() - start


def output_error(act: Activation, cost: Cost, n_out: int | None = None) -> OutputError:
    """δᴸ = ∇ₐC ⊙ σ′(zᴸ) (BP1), simplified; for softmax, δⱼ = aⱼ(gⱼ − Σₖ aₖgₖ).

    One budget for all of it: σ′ is derived first (cached, so the hidden layers that share the activation reuse
    it), ∇ₐC within what σ′ left of the budget and δᴸ within what both left, each with at least
    ``MIN_OUTPUT_SHARE`` of it.  The simplification of δᴸ is optional (``SIMPLIFY_SHARE`` of its time): when it
    runs out, δᴸ is the plain product, with a note."""
    budget = limits.current().seconds
    floor = MIN_OUTPUT_SHARE * budget
    deriv = None if act.vector else activation_derivative(act)
    spent = 0.0 if deriv is None else deriv.seconds
    g, g_seconds = _timed_cost_gradient(cost, _round_seconds(max(budget - spent, floor)), budget)
    left = _round_seconds(max(budget - spent - g_seconds, floor))
    what = f"Cost {cost.name!r} with activation {act.name!r}: deriving δᴸ = ∇ₐC ⊙ σ′"
    return limits.run_required(what, lambda: _output_error(act, g, deriv, n_out), left, budget)


def _round_seconds(s: float) -> float:
    """Seconds rounded to 2 significant digits: the cache of ∇ₐC is keyed by its budget."""
    return float(f"{s:.2g}")


def _simplest(expr: sp.Expr, notes: list, what: str) -> sp.Expr:
    """The cheapest candidate simplification of ``expr``, within ``SIMPLIFY_SHARE`` of the time left; ``expr``
    itself (with a note) when that runs out."""
    best, done = limits.run_optional(lambda: _best(_candidates(expr)), share=SIMPLIFY_SHARE, default=expr)
    if not done:
        notes.append(f"{_ran_out('simplifying ' + what)}: it is kept as the plain product.")
    return best


def _output_error(act: Activation, g: sp.Expr, deriv: ActivationDerivative | None, n_out: int | None) -> OutputError:
    notes: list[str] = []
    if act.vector:
        h = _simplest(a * g, notes, "aⱼ gⱼ")
        try:
            linear = a not in h.free_symbols and z not in h.free_symbols and sp.Poly(h, y).degree() <= 1
        except sp.PolynomialError:
            linear = False
        if linear:
            c1 = sp.Poly(h, y).coeff_monomial(y)
            c0 = sp.Poly(h, y).coeff_monomial(1)
            if c0 == 0 or n_out is not None:
                s_val = c1 + (c0 * n_out if c0 != 0 else 0)
                delta = _simplest(h - a * s_val, notes, "δᴸ")
                notes.append(
                    f"softmax Jacobian: δⱼ = aⱼ gⱼ − aⱼ Σₖ aₖ gₖ with aⱼ gⱼ = {_txt(h)}; for one-hot targets "
                    f"(Σₖ yₖ = 1) the sum is the constant {_txt(s_val)}, so δᴸ = {_txt(delta)}: "
                    "no per-sample reduction and no exp/log in the backward pass."
                )
                return OutputError(delta, g, False, True, tuple(notes))
        delta = _simplest(h - a * S, notes, "δᴸ")
        notes.append(
            f"softmax Jacobian: δⱼ = aⱼ gⱼ − aⱼ S with S = Σₖ aₖ gₖ, aⱼ gⱼ = {_txt(h)} (a per-sample sum)."
        )
        return OutputError(delta, g, True, False, tuple(notes))
    product = g * deriv.expr
    check_size(f"Activation {act.name!r}", "δᴸ = ∇ₐC ⊙ σ′", product)
    delta = _simplest(product, notes, "δᴸ")
    if cost_measure(delta) < cost_measure(g) + cost_measure(deriv.expr):
        cancels = z not in deriv.expr.free_symbols and sp.count_ops(delta) <= 2
        why = (": the σ′ factor cancels, so δᴸ does not slow down learning when the output saturates"
               if cancels else "")
        notes.append(f"∇ₐC ⊙ σ′ = ({_txt(g)})·({_txt(deriv.expr)}) simplifies to {_txt(delta)}{why}.")
    return OutputError(delta, g, False, False, tuple(notes))
