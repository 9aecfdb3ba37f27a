"""Adjoints of index expressions: every backward rule of a declared map, by solving its index equations.

Takes: an ``IndexMap`` term (``symbp.layers.index_map``), the read to differentiate, and the extents of every
index variable.  Gives: an ``Adjoint``: ∂C/∂A[t…] = Σ_{loops} [guards] δ[out index]·∂body/∂read, a *gather* over
the target's elements.

How: z[o] = Σ_r T(o, r) reads A at e(o, r) (one affine index per axis).  By the chain rule
∂C/∂A[t] = Σ_{o, r : e(o, r) = t} δ[o]·∂T/∂A.  The equations e_d(o, r) = t_d are solved over the integers one
axis at a time: a variable with coefficient ±1 is eliminated (p = y + 1 − 2i), its range becoming a guard; a
variable with a larger coefficient c is eliminated as an exact quotient with a divisibility guard
(i = (y − p + 1)/2 where 2 | y − p + 1: the 1x1 stride-2 convolution's input gradient); an equation left with no
variable is a guard on t itself (reading x[i, i] gives the guard t₀ = t₁: the non-injective map whose gradient
Halide gets wrong).  The variables left are summed over, their ranges tightened by the guards.  Every integer
solution of the system is enumerated exactly once, so the gather is never a wrong gradient.  ``max(...)``
routes δ to the window's first maximum (generator order), recorded in the forward pass: a scatter
(``ScatterAdjoint``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sympy as sp

from symbp.layers.index_map import Affine, Read, Term, read_symbol

#: names given to target axes whose index is not a plain variable (x[c, 2*i+p-1, ...] → ∂C/∂x[c, y, u])
_FRESH = ("y", "u", "v", "s", "t", "h", "k2", "k3", "k4", "k5")


@dataclass(frozen=True)
class Guard:
    """lo ≤ expr ≤ hi (``kind="range"``), or expr ≡ 0 (mod ``mod``) (``kind="divides"``); expr has den 1."""

    kind: str
    expr: Affine
    lo: int = 0
    hi: int = 0
    mod: int = 1

    def text(self) -> str:
        if self.kind == "divides":
            return f"{self.mod} | {self.expr}"
        if self.lo == self.hi:
            return f"{self.expr} = {self.lo}"
        return f"{self.lo} ≤ {self.expr} ≤ {self.hi}"

    def latex(self) -> str:
        e = str(self.expr).replace("−", "-")
        if self.kind == "divides":
            return rf"{self.mod} \mid {e}"
        if self.lo == self.hi:
            return f"{e} = {self.lo}"
        return rf"{self.lo} \le {e} \le {self.hi}"


@dataclass(frozen=True)
class Adjoint:
    """∂C/∂target[target_vars] (+)= Σ_{loops} [guards] δ[out_index]·factor, ``factor`` = ∂body/∂read in the
    term's read symbols, whose reads (``reads``) are indexed in the target variables and the loops."""

    target: str
    target_vars: tuple[str, ...]
    target_shape: tuple[int, ...]
    loops: tuple[tuple[str, int], ...]
    guards: tuple[Guard, ...]
    out_index: tuple[Affine, ...]
    factor: sp.Expr
    reads: tuple[Read, ...]
    term: int
    read: int
    form: str  # "gather" or "gather with divisibility"

    def text(self, names) -> str:
        """One line: ``names(array)`` renders an array's name (x → a⁰, W → W¹, δ → δ¹)."""
        body = _factor_text(self.factor, self.reads, names)
        delta = f"{names('delta')}[{','.join(str(e) for e in self.out_index)}]"
        prod = delta if body == "1" else f"{delta}·{body}"
        sums = ",".join(f"{v}<{n}" for v, n in self.loops)
        rhs = f"Σ_{{{sums}}} {prod}" if sums else prod
        where = "; ".join(g.text() for g in self.guards)
        lhs = f"∂C/∂{names(self.target)}[{','.join(self.target_vars)}]"
        return f"{lhs} = {rhs}" + (f"   where {where}" if where else "") + f"   [{self.form}]"

    def latex(self, names) -> str:
        body = _factor_latex(self.factor, self.reads, names)
        delta = f"{names('delta', True)}_{{{','.join(latex_affine(e) for e in self.out_index)}}}"
        prod = delta if body == "1" else f"{delta}\\, {body}"
        sums = ",".join(self_v for self_v, _ in self.loops)
        rhs = f"\\sum_{{{sums}}} {prod}" if sums else prod
        where = ", ".join(g.latex() for g in self.guards)
        lhs = rf"\frac{{\partial C}}{{\partial {names(self.target, True)}_{{{','.join(self.target_vars)}}}}}"
        return f"{lhs} = {rhs}" + (rf" \quad ({where})" if where else "") + rf"\ \text{{[{self.form}]}}"


@dataclass(frozen=True)
class ScatterAdjoint:
    """∂C/∂target[e(o, r*)] += δ[o]·∂body/∂read at r* = the first argmax of the window of o (generator order);
    positions reading outside x are not candidates."""

    target: str
    target_shape: tuple[int, ...]
    out_vars: tuple[tuple[str, int], ...]
    index: tuple[Affine, ...]
    factor: sp.Expr
    reads: tuple[Read, ...]
    term: int
    read: int
    form: str = "scatter at the argmax"

    def text(self, names) -> str:
        body = _factor_text(self.factor, self.reads, names)
        outs = ",".join(v for v, _ in self.out_vars)
        delta = f"{names('delta')}[{outs}]"
        prod = delta if body == "1" else f"{delta}·{body}"
        star = {v: f"{v}*" for v, _ in self._window_vars()}
        idx = ",".join(str(e) for e in self.index)
        for v, s in star.items():
            idx = re.sub(rf"\b{v}\b", s, idx)
        return (f"∂C/∂{names(self.target)}[{idx}] += {prod}, ({','.join(star.values())}) the first maximum of the "
                f"window of ({outs})   [{self.form}]")

    def latex(self, names) -> str:
        body = _factor_latex(self.factor, self.reads, names)
        outs = ",".join(v for v, _ in self.out_vars)
        delta = f"{names('delta', True)}_{{{outs}}}"
        prod = delta if body == "1" else f"{delta}\\, {body}"
        idx = ",".join(latex_affine(e) for e in self.index)
        for v, _ in self._window_vars():
            idx = re.sub(rf"\b{v}\b", f"{v}^*", idx)
        return (rf"\frac{{\partial C}}{{\partial {names(self.target, True)}_{{{idx}}}}} = {prod} + \dots"
                rf"\ \text{{(summed over the windows whose first maximum is there)}}")

    def _window_vars(self):
        outs = {v for v, _ in self.out_vars}
        return [(v, 0) for v in dict.fromkeys(v for e in self.index for v in e.vars) if v not in outs]


def latex_affine(e: Affine) -> str:
    """An affine index expression as LaTeX (its text with a plain minus)."""
    return str(e).replace("−", "-")


def _factor_text(factor: sp.Expr, reads, names) -> str:
    rep = {read_symbol(k): sp.Symbol(f"{names(r.array)}[{','.join(str(e) for e in r.index)}]")
           for k, r in enumerate(reads)}
    return str(factor.xreplace(rep)).replace("**", "^").replace("*", "·")


def _factor_latex(factor: sp.Expr, reads, names) -> str:
    rep = {read_symbol(k): sp.Symbol(f"{names(r.array, True)}_{{{','.join(latex_affine(e) for e in r.index)}}}")
           for k, r in enumerate(reads)}
    return sp.latex(factor.xreplace(rep))


def adjoint(term: Term, k: int, out_vars: tuple[str, ...], extents: dict[str, int], target_shape: tuple[int, ...],
            ti: int) -> Adjoint:
    """The gather form of ∂C/∂(array of ``term.reads[k]``) through that read (see the module docstring)."""
    read = term.reads[k]
    live = {v: extents[v] for v in (*out_vars, *(v for v, _ in term.vars))}  # not yet eliminated
    order = list(live)
    subs: dict[str, Affine] = {}
    guards: list[Guard] = []
    names = [f"_t{d}" for d in range(len(read.index))]  # the target's indices, apart from every variable
    divisible = False
    for d, e in enumerate(read.index):
        # the equation e(live, substituted) − t_d = 0, as an affine numerator
        e = _substitute(e, subs)
        eq = e.numerator() - Affine.var(names[d]).scale(e.den)
        cands = [v for v in order if v in live and eq.coeff(v)]
        if not cands:
            guards.append(Guard("range", eq, 0, 0))  # an equation among the target's own indices
            continue
        unit = [v for v in cands if abs(eq.coeff(v)) == 1]
        # prefer a variable with coefficient ±1, the innermost (a kernel offset rather than an output position)
        v = unit[-1] if unit else min(cands, key=lambda u: abs(eq.coeff(u)))
        c = eq.coeff(v)
        value = Affine.of({u: -w for u, w in eq.coeffs if u != v}, -eq.const, c)  # v = −(eq − c·v)/c
        if value.den != 1:
            divisible = True
            guards.append(Guard("divides", value.numerator(), mod=value.den))
        guards.append(Guard("range", value.numerator(), 0, (live[v] - 1) * value.den))
        subs = {u: s.subs(v, value) for u, s in subs.items()}
        subs[v] = value
        del live[v]
    guards = [_rewrite_guard(g, subs) for g in guards]
    t_ext = dict(zip(names, target_shape))
    guards = [g for g in guards if not _always(g, t_ext | live)]
    # shown names: a target index equal to an eliminated variable takes its name (∂C/∂W[f,c,p,q]), others fresh
    shown: dict[str, str] = {}
    for v, value in subs.items():
        if value.den == 1 and value.const == 0 and len(value.coeffs) == 1 and value.coeffs[0][1] == 1 \
                and value.coeffs[0][0] not in shown:
            shown[value.coeffs[0][0]] = v
    used = set(live) | set(shown.values())
    for t in names:
        if t not in shown:
            shown[t] = next(n for n in _FRESH if n not in used)
            used.add(shown[t])
    guards = [Guard(g.kind, g.expr.rename(shown), g.lo, g.hi, g.mod) for g in guards]
    out_index = tuple(_substitute(Affine.var(v), subs).rename(shown) for v in out_vars)
    reads = tuple(Read(r.array, tuple(_substitute(e, subs).rename(shown) for e in r.index)) for r in term.reads)
    factor = sp.diff(term.body, read_symbol(k))
    loops = tuple((v, n) for v, n in live.items())
    return Adjoint(read.array, tuple(shown[t] for t in names), tuple(target_shape), loops, tuple(guards), out_index,
                   factor, reads, ti, k, "gather with divisibility" if divisible else "gather")


def scatter_adjoint(term: Term, k: int, out_vars: tuple[str, ...], extents: dict[str, int],
                    target_shape: tuple[int, ...], ti: int) -> ScatterAdjoint:
    """The argmax form of ∂C/∂(array of ``term.reads[k]``) for a max term."""
    return ScatterAdjoint(term.reads[k].array, tuple(target_shape), tuple((v, extents[v]) for v in out_vars),
                          term.reads[k].index, sp.diff(term.body, read_symbol(k)), term.reads, ti, k)


def _substitute(e: Affine, subs: dict[str, Affine]) -> Affine:
    for v, value in subs.items():
        e = e.subs(v, value)
    return e


def _rewrite_guard(g: Guard, subs: dict[str, Affine]) -> Guard:
    e = _substitute(g.expr, subs)
    if e.den != 1:  # scale the inequality by the (positive) denominator
        return Guard(g.kind, e.numerator(), g.lo * e.den, g.hi * e.den, g.mod * (e.den if g.kind == "divides" else 1))
    return Guard(g.kind, e, g.lo, g.hi, g.mod)


def _always(g: Guard, extents: dict[str, int]) -> bool:
    """Does the guard hold for every value of its variables in their ranges?"""
    if g.kind == "divides":
        return all(c % g.mod == 0 for _, c in g.expr.coeffs) and g.expr.const % g.mod == 0
    lo, hi = g.expr.range(extents)
    return g.lo <= lo and hi <= g.hi


__all__ = ["Adjoint", "Guard", "ScatterAdjoint", "adjoint", "scatter_adjoint"]
