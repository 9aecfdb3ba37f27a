"""Index expressions: backward rules of layers whose forward map is an indexed sum, by sympy's differentiation.

Takes: a forward map as a sympy expression over ``Indexed`` objects (``Sum`` over index symbols with symbolic
extents), the array element to differentiate by, and the error δ of the map's output.  Gives: ``IndexedRule`` —
∂C/∂target = Σ over the remaining indices of (term), with range conditions — obtained as: ``sympy.diff`` of the
sum (which yields ``KroneckerDelta``s), the chain rule Σ_out δ[out]·∂z[out]/∂target, and the contraction of every
KroneckerDelta against a summation index (symbp's step: solve it for that index, substitute, and keep its range
as a condition).  The conditions become loop bounds in the lowering.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp


@dataclass(frozen=True)
class IndexedRule:
    """target[free...] = Σ_{v ∈ [lo, hi] for (v, lo, hi) in sums} term, where every (expr, lo, hi) of
    ``conditions`` holds (lo ≤ expr ≤ hi; terms outside are zero)."""

    target: sp.Indexed
    sums: tuple[tuple[sp.Symbol, sp.Expr, sp.Expr], ...]
    term: sp.Expr
    conditions: tuple[tuple[sp.Expr, sp.Expr, sp.Expr], ...]

    def as_sum(self) -> sp.Expr:
        return sp.Sum(self.term, *self.sums) if self.sums else self.term

    def text(self) -> str:
        cond = "".join(f", {lo} ≤ {e} ≤ {hi}" for e, lo, hi in self.conditions)
        sums = ",".join(str(v) for v, _, _ in self.sums)
        body = str(self.term).replace("*", "·")
        return f"{self.target} = Σ_{{{sums}}} {body}" + (f"   ({cond[2:]})" if cond else "") if sums else \
            f"{self.target} = {body}"

    def latex(self) -> str:
        sums = ",".join(sp.latex(v) for v, _, _ in self.sums)
        cond = ", ".join(f"{sp.latex(lo)} \\leq {sp.latex(e)} \\leq {sp.latex(hi)}" for e, lo, hi in self.conditions)
        body = sp.latex(self.term)
        rhs = f"\\sum_{{{sums}}} {body}" if sums else body
        return f"{sp.latex(self.target)} = {rhs}" + (f" \\quad ({cond})" if cond else "")


def _flatten_sum(expr: sp.Expr) -> tuple[sp.Expr, list]:
    limits = []
    while isinstance(expr, sp.Sum):
        limits = list(expr.limits) + limits
        expr = expr.function
    return expr, limits


def _contract(term: sp.Expr, limits: list, prefer: list[sp.Symbol]) -> tuple[sp.Expr, list, list]:
    """Remove every KroneckerDelta of ``term`` by solving it for a summation index (those in ``prefer``
    first); the index's range becomes a condition.  Returns (term, remaining limits, conditions)."""
    conditions = []
    limits = [(v, sp.sympify(lo), sp.sympify(hi)) for v, lo, hi in limits]
    while True:
        deltas = [d for d in sp.Mul.make_args(term) if isinstance(d, sp.KroneckerDelta)]
        if not deltas:
            return term, limits, conditions
        d = deltas[0]
        eq = d.args[0] - d.args[1]
        summed = [lim[0] for lim in limits]
        order = [v for v in prefer if v in summed] + [v for v in summed if v not in prefer]
        var = next((v for v in order if eq.has(v) and abs(sp.Poly(eq, v).coeff_monomial(v)) == 1
                    and sp.Poly(eq, v).degree() == 1), None)
        if var is None:
            raise ValueError(f"cannot contract {d} against a summation index")
        sol = sp.solve(eq, var)[0]
        lim = next(lim for lim in limits if lim[0] == var)
        limits.remove(lim)
        term = (term / d).xreplace({var: sol})
        limits = [(v, lo.xreplace({var: sol}), hi.xreplace({var: sol})) for v, lo, hi in limits]
        conditions = [(e.xreplace({var: sol}), lo, hi) for e, lo, hi in conditions]
        conditions.append((sol, lim[1], lim[2]))


def _needed(conditions, known_ranges: dict) -> tuple:
    """Drop conditions that hold for every index in its known range (e.g. 0 ≤ c′ ≤ C − 1 for c′ itself)."""
    out = []
    for e, lo, hi in conditions:
        if e.is_Symbol and e in known_ranges and known_ranges[e] == (lo, hi):
            continue
        if e.is_number and lo.is_number and hi.is_number and lo <= e <= hi:
            continue
        out.append((e, lo, hi))
    return tuple(out)


def backward_rule(forward: sp.Expr, out_index: tuple, out_limits: list, delta: sp.IndexedBase,
                  target: sp.Indexed, ranges: dict) -> IndexedRule:
    """∂C/∂target = Σ_out δ[out]·∂forward[out]/∂target, its KroneckerDeltas contracted.

    ``forward`` is the map's value at the output index ``out_index`` (summing its own indices), ``out_limits``
    the output index ranges, ``ranges`` the ranges of the target's free indices."""
    dz = sp.diff(forward, target)
    inner, inner_limits = _flatten_sum(dz)
    term = sp.expand(delta[out_index] * inner)
    outer = [v for v, _, _ in out_limits]
    parts = sp.Add.make_args(term)
    if len(parts) != 1:
        raise ValueError(f"expected one product after differentiating, got {term}")
    term, limits, conds = _contract(term, list(out_limits) + list(inner_limits), prefer=outer)
    return IndexedRule(target, tuple(limits), term, _needed(conds, ranges))
