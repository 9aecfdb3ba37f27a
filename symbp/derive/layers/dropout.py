"""Dropout's backward rule, from its forward map: a = m ⊙ x / (1 − p) with a fixed mask m ∈ {0, 1}.

Takes: a ``Dropout`` layer and its context.  Gives: ``DropoutEquations``: ∂a/∂x = m/(1 − p) by ``sympy.diff``,
so ∂C/∂aˡ⁻¹ = (m/(1 − p)) ⊙ ∂C/∂aˡ while training, and the identity at inference.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from symbp.derive.equations import sup, text
from symbp.derive.layers import LayerContext, derive_layer
from symbp.layers.dropout import Dropout

#: the mask symbol of the forward map, and the layer's input
m = sp.Symbol("m", real=True)
x = sp.Symbol("x", real=True)


@dataclass(frozen=True)
class DropoutEquations:
    index: int
    layer: Dropout
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    forward_expr: sp.Expr  # aˡ in m and x = aˡ⁻¹
    factor: sp.Expr  # ∂aˡ/∂aˡ⁻¹, from sympy.diff: in m
    back_text: str | None = None  # ∂C/∂aˡ as it reaches this layer from the next one
    back_latex: str | None = None
    is_output: bool = False
    has_params: bool = False
    activation = None

    @property
    def p(self) -> float:
        return self.layer.p

    @property
    def scale(self) -> sp.Expr:
        """1/(1 − p): the factor of a kept unit (the coefficient of m in ∂aˡ/∂aˡ⁻¹)."""
        return self.factor.coeff(m)

    @property
    def notes(self) -> tuple[str, ...]:
        return (f"dropout p = {self.p:g}: inverted (kept units scaled by {text(self.scale)} while training), so "
                "inference is the identity; masks from a counter-based hash of (seed, epoch, sample, unit).",)

    def _m(self, style="text") -> str:
        return f"m{sup(self.index)}" if style == "text" else f"m^{{{self.index}}}"

    @property
    def forward(self) -> str:
        l, p = sup(self.index), sup(self.index - 1)
        return (f"a{l} = {text(self.forward_expr.xreplace({m: sp.Symbol(self._m()), x: sp.Symbol('a' + p)}))}"
                f"   [dropout p = {self.p:g}: m{l}ⱼ ~ Bernoulli({1 - self.p:g}) while training; a{l} = a{p} otherwise]")

    @property
    def forward_latex(self) -> str:
        l = self.index
        fwd = self.forward_expr.xreplace({m: sp.Symbol(self._m("latex")), x: sp.Symbol(f"a^{{{l - 1}}}")})
        return rf"a^{{{l}}} = {sp.latex(fwd)},\ m^{{{l}}}_j \sim \mathrm{{Bernoulli}}({1 - self.p:g})"

    def grad_in(self, back_text: str, back_latex: str) -> tuple[str, str]:
        f_text = text(self.factor.xreplace({m: sp.Symbol(self._m())}))
        f_latex = sp.latex(self.factor.xreplace({m: sp.Symbol(self._m("latex"))}))
        return f"({f_text} ⊙ {back_text})", rf"({f_latex} \odot {back_latex})"

    def backward_rows(self, back_text: str, back_latex: str) -> list[tuple[str, str, str]]:
        l, p = self.index, self.index - 1
        t, lt = self.grad_in(back_text, back_latex)
        return [("dropout", f"∂C/∂a{sup(p)} = ∂a{sup(l)}/∂a{sup(p)} ⊙ ∂C/∂a{sup(l)} = {t}",
                 rf"\frac{{\partial C}}{{\partial a^{{{p}}}}} = {lt}")]

    bp3 = ""
    bp4 = ""


@derive_layer.register
def _(layer: Dropout, ctx: LayerContext) -> DropoutEquations:
    fwd = m * x / (1 - sp.Rational(repr(layer.p)))  # the decimal the user wrote, exactly
    return DropoutEquations(ctx.index, layer, ctx.in_shape, ctx.out_shape, fwd, sp.diff(fwd, x),
                            ctx.back_text, ctx.back_latex)
