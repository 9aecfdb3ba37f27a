"""The convolutional layer's backward rules, derived from its indexed sum.

Takes: a ``Conv2D`` layer and its context.  Gives: ``ConvEquations``: the forward map
z[f,i,j] = Σ_{c,p,q} w[f,c,p,q]·a[c,i+p,j+q] + b[f] as a sympy ``Sum`` over ``Indexed`` objects, and from
``sympy.diff`` of it (``symbp.derive.indexed``): ∂C/∂w as a valid correlation of the input with δ, ∂C/∂b as Σᵢⱼ δ,
and ∂C/∂a (the input) as a full convolution of δ with the flipped kernel, whose range conditions become loop
bounds; δ = g ⊙ σ′(z) elementwise, with σ′ from ``symbp.derive.calculus`` as for a dense layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import sympy as sp

from symbp.derive.equations import factor_text, g, sup, text
from symbp.derive.indexed import IndexedRule, backward_rule
from symbp.derive.layers import LayerContext, derive_layer
from symbp.derive.layers.dense import _derivative
from symbp.layers.conv import Conv2D
from symbp.symbols import a, z


def _i(name: str) -> sp.Symbol:
    return sp.Symbol(name, integer=True)


#: index symbols: output map f, rows i, columns j; input channel c; kernel offsets p, q; input position y, x
f, c, p, q, i, j = (_i(n) for n in ("f", "c", "p", "q", "i", "j"))
fo, co, po, qo, yy, xx = (_i(n) for n in ("f'", "c'", "p'", "q'", "y", "x"))
#: symbolic extents, substituted by the layer's sizes in the lowering
C, KH, KW, F, HO, WO = (sp.Symbol(n, integer=True, positive=True) for n in ("C", "KH", "KW", "F", "HO", "WO"))
w, a_in, b, delta = sp.IndexedBase("w"), sp.IndexedBase("a"), sp.IndexedBase("b"), sp.IndexedBase("delta")


@lru_cache(maxsize=1)
def conv_rules() -> tuple[sp.Expr, dict[str, IndexedRule]]:
    """The forward map and its three derived rules (the same for every convolution: sizes are symbols)."""
    zsum = sp.Sum(w[f, c, p, q] * a_in[c, i + p, j + q], (c, 0, C - 1), (p, 0, KH - 1), (q, 0, KW - 1)) + b[f]
    out = [(f, 0, F - 1), (i, 0, HO - 1), (j, 0, WO - 1)]
    ranges = {fo: (0, F - 1), co: (0, C - 1), po: (0, KH - 1), qo: (0, KW - 1)}
    rules = {
        "W": backward_rule(zsum, (f, i, j), out, delta, w[fo, co, po, qo], ranges),
        "b": backward_rule(zsum, (f, i, j), out, delta, b[fo], ranges),
        "input": backward_rule(zsum, (f, i, j), out, delta, a_in[co, yy, xx], ranges),
    }
    return zsum, rules


@dataclass(frozen=True)
class ConvEquations:
    index: int
    layer: Conv2D
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    derivative: object  # ActivationDerivative
    delta: sp.Expr  # δ = g·σ′ elementwise
    forward_map: sp.Expr
    rules: dict
    back_text: str | None = None
    back_latex: str | None = None
    is_output: bool = False
    has_params: bool = True

    @property
    def activation(self):
        return self.layer.activation

    @property
    def activation_derivative(self):
        return self.derivative.expr

    @property
    def sizes(self) -> dict:
        (cin, _, _), (maps, ho, wo), (kh, kw) = self.in_shape, self.out_shape, self.layer.kernel
        return {C: cin, KH: kh, KW: kw, F: maps, HO: ho, WO: wo}

    @property
    def notes(self) -> tuple[str, ...]:
        return tuple(self.derivative.notes) + (
            "convolution: ∂C/∂w, ∂C/∂b and ∂C/∂a come from sympy.diff of the indexed sum (KroneckerDelta "
            "contraction); ∂C/∂a is a full convolution of δ with the flipped kernel, its range conditions are the "
            "loop bounds.",)

    def _sub(self, expr, l):
        return expr.xreplace({w: sp.IndexedBase(f"w{sup(l)}"), a_in: sp.IndexedBase(f"a{sup(l - 1)}"),
                              b: sp.IndexedBase(f"b{sup(l)}"), delta: sp.IndexedBase(f"δ{sup(l)}")})

    @property
    def forward(self) -> str:
        l = self.index
        (maps, ho, wo), (kh, kw) = self.out_shape, self.layer.kernel
        fwd = text(self._sub(self.forward_map, l)).replace("Sum(", "Σ(")
        return (f"z{sup(l)}[f,i,j] = {fwd}   (valid {kh}x{kw} cross-correlation → {maps}x{ho}x{wo})      "
                f"a{sup(l)} = σ(z{sup(l)}), σ(z) = {text(self.activation.expr)}   [{self.activation.name}]")

    @property
    def forward_latex(self) -> str:
        l = self.index
        return (r"z^{%d}_{f,i,j} &= \sum_{c,p,q} w^{%d}_{f,c,p,q}\, a^{%d}_{c,i+p,j+q} + b^{%d}_f, \quad a^{%d} = "
                r"\sigma(z^{%d})" % (l, l, l - 1, l, l, l))

    def grad_in(self, back_text, back_latex):
        l = self.index
        r = self.rules["input"]
        return (f"(Σ_{{f,p,q}} δ{sup(l)}[f,y−p,x−q]·w{sup(l)}[f,c,p,q])",
                r"(\sum_{f,p,q} \delta^{%d}_{f,y-p,x-q} w^{%d}_{f,c,p,q})" % (l, l)) if r else (None, None)

    def _rule_text(self, name: str, what: str) -> str:
        r = self.rules[name]
        return f"∂C/∂{what} = " + self._sub(r.as_sum(), self.index).__str__().replace("*", "·") + (
            "".join(f", {lo} ≤ {e} ≤ {hi}" for e, lo, hi in r.conditions).replace(", ", "  where ", 1))

    def backward_rows(self, back_text, back_latex):
        l = self.index
        back = back_text or "g"
        deriv = factor_text(self.activation_derivative.xreplace({a: sp.Symbol(f"a{sup(l)}"),
                                                                  z: sp.Symbol(f"z{sup(l)}")}))
        rows = [("BP2  conv error", f"δ{sup(l)} = {back} ⊙ σ′(z{sup(l)}) = {back} ⊙ {deriv}",
                 r"\delta^{%d} = %s \odot \sigma'(z^{%d})" % (l, back_latex or "g", l))]
        if l == 1:
            return rows  # the input needs no gradient
        return rows + [("conv input", self._rule_text("input", f"a{sup(l - 1)}[c′,y,x]") + "   (full convolution, "
                 "flipped kernel)", self.rules["input"].latex())]

    @property
    def bp3(self) -> str:
        return self._rule_text("b", f"b{sup(self.index)}[f′]")

    @property
    def bp4(self) -> str:
        return self._rule_text("W", f"w{sup(self.index)}[f′,c′,p′,q′]") + "   (valid correlation)"


@derive_layer.register
def _(layer: Conv2D, ctx: LayerContext) -> ConvEquations:
    if ctx.is_output:
        raise ValueError(f"layer {ctx.index}: a Conv2D output layer is not supported; end with sb.Dense(n, ...)")
    deriv = _derivative(layer.activation)
    fwd, rules = conv_rules()
    return ConvEquations(ctx.index, layer, ctx.in_shape, ctx.out_shape, deriv, g * deriv.expr, fwd, rules,
                         ctx.back_text, ctx.back_latex)
