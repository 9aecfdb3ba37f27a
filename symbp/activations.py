"""Activation functions as sympy expressions.

Takes: a name and an expression in ``z`` (or, for ``Activation.parse``, text for the whitelist parser).
Gives: a validated ``Activation``: elementwise σ(z), or — for ``softmax`` — the normalised vector form
aⱼ = f(zⱼ) / Σₖ f(zₖ) with f = exp.  Validation happens here, at construction, so errors name the
activation the user wrote instead of surfacing later in derivation or code generation.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from symbp.symbols import canonical, parse, z


def _check_expression(kind: str, name: str, expr: sp.Expr, allowed: set[sp.Symbol]) -> sp.Expr:
    if isinstance(expr, str):
        raise TypeError(f"{kind} {name!r}: give a sympy expression, or use {kind}.parse(name, text) for text")
    try:
        expr = canonical(expr)
    except (sp.SympifyError, TypeError) as exc:
        raise ValueError(f"{kind} {name!r}: not a sympy expression: {expr!r}") from exc
    if not isinstance(expr, sp.Expr):
        raise ValueError(f"{kind} {name!r}: {expr} is not a scalar expression")
    extra = expr.free_symbols - allowed
    if extra:
        names = ", ".join(sorted(s.name for s in extra))
        ok = ", ".join(sorted(s.name for s in allowed))
        raise ValueError(f"{kind} {name!r}: undefined symbol(s) {names} in {expr}; only {ok} may appear")
    if expr.atoms(sp.Function) and any(
        isinstance(f, sp.core.function.AppliedUndef) for f in expr.atoms(sp.Function)
    ):
        raise ValueError(f"{kind} {name!r}: undefined function in {expr}")
    if expr.has(sp.zoo, sp.oo, -sp.oo, sp.nan, sp.I):
        raise ValueError(f"{kind} {name!r}: {expr} contains infinities, NaN or complex numbers")
    for pw in expr.atoms(sp.Piecewise):
        if pw.args[-1].cond is not sp.true:
            raise ValueError(f"{kind} {name!r}: piecewise expression {pw} is undefined where no condition holds; "
                             "add an otherwise branch (where(cond, x, otherwise))")
    return expr


@dataclass(frozen=True, eq=False)
class Activation:
    """σ(z), applied elementwise to a layer's weighted inputs ``z``.

    ``vector=True`` marks the normalised form aⱼ = σ(zⱼ)/Σₖ σ(zₖ) (softmax when σ = exp); its
    Jacobian is not diagonal, which the derivation handles with an explicit reduction.
    """

    name: str
    expr: sp.Expr
    vector: bool = False

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"activation name must be a non-empty string, got {self.name!r}")
        expr = _check_expression("Activation", self.name, self.expr, {z})
        if z not in expr.free_symbols:
            raise ValueError(f"Activation {self.name!r}: {expr} does not depend on z")
        derivative = sp.diff(expr, z)
        if derivative.has(sp.Derivative, sp.Subs):
            raise ValueError(f"Activation {self.name!r}: sympy cannot differentiate {expr} (got {derivative})")
        if self.vector and sp.simplify(sp.diff(expr, z) - expr) != 0:
            raise ValueError(f"Activation {self.name!r}: vector (normalised) activations must use exp(z)")
        object.__setattr__(self, "expr", expr)

    @classmethod
    def parse(cls, name: str, text: str) -> Activation:
        """Build an activation from text with the whitelist parser (only ``z`` may appear)."""
        try:
            expr = parse(text, allowed=("z",))
        except ValueError as exc:
            raise ValueError(f"Activation {name!r}: {exc}") from None
        return cls(name, expr)

    @property
    def text(self) -> str:
        """The expression as text that ``Activation.parse`` reads back."""
        return expression_text(self.expr)

    def __call__(self, x):
        """σ applied to a sympy expression ``x`` (elementwise form)."""
        return self.expr.subs(z, x)

    def __eq__(self, other):
        return (
            isinstance(other, Activation)
            and (self.name, self.vector) == (other.name, other.vector)
            and sp.simplify(self.expr - other.expr) == 0
        )

    def __hash__(self):
        return hash((self.name, sp.srepr(self.expr), self.vector))

    def __repr__(self):
        kind = ", vector=True" if self.vector else ""
        return f"Activation({self.name!r}, {self.expr}{kind})"


class MinMaxCalls:
    """Printer mixin: ``Max``/``Min`` as Python's ``max(...)``/``min(...)`` (read by the parser and by numba)."""

    def _print_Max(self, e):
        return "max(" + ", ".join(self._print(x) for x in e.args) + ")"

    def _print_Min(self, e):
        return "min(" + ", ".join(self._print(x) for x in e.args) + ")"


def expression_text(expr: sp.Expr) -> str:
    """Text for an expression that the whitelist parser reads back (used by save/load and the CLI)."""
    from sympy.printing.str import StrPrinter

    class _Printer(MinMaxCalls, StrPrinter):
        def _print_Abs(self, e):
            return f"abs({self._print(e.args[0])})"

        def _print_Heaviside(self, e):
            return f"heaviside({self._print(e.args[0])})"

        def _print_Piecewise(self, e):
            out = self._print(e.args[-1].expr)
            for piece in reversed(e.args[:-1]):
                out = f"where({self._print(piece.cond)}, {self._print(piece.expr)}, {out})"
            return out

        def _print_Exp1(self, e):
            return "e"

    return _Printer().doprint(expr)


sigmoid = Activation("sigmoid", 1 / (1 + sp.exp(-z)))
tanh = Activation("tanh", sp.tanh(z))
relu = Activation("relu", sp.Max(0, z))
linear = Activation("linear", z)
softplus = Activation("softplus", sp.log(1 + sp.exp(z)))
softmax = Activation("softmax", sp.exp(z), vector=True)

BUILTIN_ACTIVATIONS = {act.name: act for act in (sigmoid, tanh, relu, linear, softplus, softmax)}
