"""Max-pooling's backward rule, from differentiating Max.

Takes: a ``MaxPool`` layer and its context.  Gives: ``PoolEquations``: a[c,i,j] = Max over the window of
x[c, i·ph+p, j·pw+q]; ``sympy.diff`` of that Max by one element is a product of Heavisides, 1 at the window's
maximum and 0 elsewhere, so ∂C/∂x is ∂C/∂a at each window's maximum (on ties the first in row-major order).
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from symbp.derive.equations import sup
from symbp.derive.layers import LayerContext, derive_layer
from symbp.layers.pool import MaxPool


@dataclass(frozen=True)
class PoolEquations:
    index: int
    layer: MaxPool
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    derivative: sp.Expr  # ∂ max(x₀, …) / ∂x₀, as sympy gives it
    back_text: str | None = None
    back_latex: str | None = None
    is_output: bool = False
    has_params: bool = False
    activation = None

    @property
    def notes(self) -> tuple[str, ...]:
        return (f"max-pooling {self.layer.window[0]}x{self.layer.window[1]}: ∂max/∂x₀ = {self.derivative} "
                "(sympy), so the gradient goes to each window's maximum (the first in row-major order on ties); "
                "rows and columns that do not fill a window get none.",)

    @property
    def forward(self) -> str:
        l, (ph, pw) = self.index, self.layer.window
        return f"a{sup(l)}[c,i,j] = max_{{p<{ph},q<{pw}}} a{sup(l - 1)}[c,{ph}i+p,{pw}j+q]   [max-pool]"

    @property
    def forward_latex(self) -> str:
        l, (ph, pw) = self.index, self.layer.window
        return r"a^{%d}_{c,i,j} = \max_{p<%d,q<%d} a^{%d}_{c,%di+p,%dj+q}" % (l, ph, pw, l - 1, ph, pw)

    def grad_in(self, back_text, back_latex):
        l = self.index
        return (f"(∂C/∂a{sup(l)} at each window's maximum)", r"(\partial C/\partial a^{%d}\ \text{at the max})" % l)

    def backward_rows(self, back_text, back_latex):
        l = self.index
        t, lt = self.grad_in(back_text, back_latex)
        return [("max-pool", f"∂C/∂a{sup(l - 1)} = {t}; ∂C/∂a{sup(l)} = {back_text}",
                 r"\frac{\partial C}{\partial a^{%d}} = %s" % (l - 1, lt))]

    bp3 = ""
    bp4 = ""


@derive_layer.register
def _(layer: MaxPool, ctx: LayerContext) -> PoolEquations:
    if ctx.is_output:
        raise ValueError(f"layer {ctx.index}: a MaxPool output layer is not supported; end with sb.Dense(n, ...)")
    xs = sp.symbols(f"x0:{min(4, layer.window[0] * layer.window[1])}", real=True)
    return PoolEquations(ctx.index, layer, ctx.in_shape, ctx.out_shape, sp.diff(sp.Max(*xs), xs[0]),
                         ctx.back_text, ctx.back_latex)
