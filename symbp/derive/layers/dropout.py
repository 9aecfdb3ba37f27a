"""Dropout's backward rule, from its forward map: a = m ⊙ x / (1 − p) with a fixed mask m ∈ {0, 1}.

Takes: a ``Dropout`` layer and its context.  Gives: ``DropoutEquations``: ∂a/∂x = m/(1 − p) by ``sympy.diff``,
so ∂C/∂aˡ⁻¹ = (m/(1 − p)) ⊙ ∂C/∂aˡ while training, and the identity at inference.  For the sum-over-paths
check (``symbp.derive.check``): ``UnrolledDropout``, aⱼ = mⱼ·xⱼ/(1 − p) unit by unit with mask symbols ``m{l}_{j}``
held fixed (0 or 1), and ∂C/∂aˡ⁻¹ from the equations' ``factor``.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from symbp.derive.layers import LayerContext, UnrolledLayer, derive_layer, unit_symbol, unroll_layer
from symbp.layers.dropout import Dropout
from symbp.render import latex, sup, text

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
        return rf"a^{{{l}}} = {latex(fwd)},\ m^{{{l}}}_j \sim \mathrm{{Bernoulli}}({1 - self.p:g})"

    def grad_in(self, back_text: str, back_latex: str) -> tuple[str, str]:
        f_text = text(self.factor.xreplace({m: sp.Symbol(self._m())}))
        f_latex = latex(self.factor.xreplace({m: sp.Symbol(self._m("latex"))}))
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


# ------------------------------------------------------------------------- unrolled, for the sum over paths


class UnrolledDropout(UnrolledLayer):
    """Dropout unit by unit while training: aⱼ = mⱼ·xⱼ/(1 − p), the masks ``m{l}_{j}`` fixed constants."""

    def __init__(self, layer: Dropout, index: int, inputs: list):
        self.layer, self.index, self.inputs = layer, index, list(inputs)
        self.params, self.hidden = [], []
        self.constants = [unit_symbol(f"m{index}_{j}") for j in range(len(inputs))]  # the masks
        self.outputs = [unit_symbol(f"a{index}_{j}") for j in range(len(inputs))]
        self.keep_scale = 1 / (1 - sp.Rational(repr(layer.p)))  # from the declaration, not from the equations

    def in_hidden(self, inputs):
        return [mj * xj * self.keep_scale for mj, xj in zip(self.constants, inputs)]

    def forward(self, inputs):
        return self.in_hidden(inputs)

    def random_values(self, rng, point=0):
        """Masks of 0 and 1: every unit kept at point 0 (a wrong scale 1/(1 − p) shows through every unit), unit
        i − 1 alone dropped at point i = 1…n (a rule that forgets the mask shows at each unit), random masks after
        that (both values in a layer of two or more units)."""
        n = len(self.constants)
        if point == 0:
            bits = [1] * n
        elif point <= n:
            bits = [int(j != point - 1) for j in range(n)]
        else:
            bits = [rng.randrange(2) for _ in range(n)]
            if n > 1 and len(set(bits)) == 1:
                bits[rng.randrange(n)] ^= 1
        return {mj: float(bit) for mj, bit in zip(self.constants, bits)}

    def backprop(self, eq, g, output):
        """∂C/∂aˡ⁻¹ₖ = ∂aˡₖ/∂aˡ⁻¹ₖ · ∂C/∂aˡₖ with the equations' ``factor`` (in m) at unit k's mask."""
        if g is None:
            raise ValueError(f"layer {self.index}: dropout cannot be the output layer")
        return {}, [eq.factor.xreplace({m: mk}) * gk for mk, gk in zip(self.constants, g)]


@unroll_layer.register
def _(layer: Dropout, index: int, inputs: list) -> UnrolledDropout:
    return UnrolledDropout(layer, index, inputs)
