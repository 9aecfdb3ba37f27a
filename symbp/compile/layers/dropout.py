"""Lowering of dropout: in the whole-epoch kernel a hashed uniform number per (sample, unit) becomes the mask
m = [u ≥ p]/(1 − p), aˡ = m ⊙ aˡ⁻¹ and ∂C/∂aˡ⁻¹ = m ⊙ ∂C/∂aˡ (the derived rule); in every other program the
layer is the identity and its buffers are the previous layer's.

Takes: ``DropoutEquations`` and a ``LowerContext``.  Gives: a ``Random`` step and two maps.
"""

from __future__ import annotations

import math

import sympy as sp

from symbp.compile.layers import register_lowering
from symbp.compile.program import Map, Random, elem
from symbp.compile.symbols import g, u, x
from symbp.layers.dropout import Dropout


@register_lowering(Dropout)
class DropoutLowering:
    def identity(self, eq, ctx) -> bool:
        return not ctx.masks

    def scratch(self, eq, ctx) -> None:
        if ctx.masks:
            n = math.prod(eq.out_shape)
            # float64 whatever the model's dtype: u compared with p exactly (a float32 u rounded onto float32(p)
            # was kept by one backend and dropped by the other), the keep factor 1/(1 − p) unrounded
            ctx.buffer(f"mask{eq.index}", ctx.rows, n, dtype="float64")
            ctx.buffer(f"a{eq.index}", ctx.rows, n)
            if ctx.grad(eq.index) is not None:
                ctx.buffer(f"delta{eq.index}", ctx.rows, n)

    def _keep(self, eq) -> sp.Expr:
        return sp.Piecewise((sp.Float(1.0 / (1.0 - eq.p), 17), u >= sp.Float(eq.p, 17)), (sp.Integer(0), True))

    def forward(self, eq, ctx) -> list:
        if not ctx.masks:
            return []
        l, n, rows = eq.index, math.prod(eq.out_shape), ctx.rows
        keep = self._keep(eq)
        return [Random(f"mask{l}", rows, n, l, eq=f"u = hash(seed, epoch, layer {l}, sample, unit) ∈ [0, 1)"),
                Map(rows, n, {u: elem(f"mask{l}"), x: elem(ctx.act(l - 1))},
                    [(elem(f"mask{l}"), keep), (elem(f"a{l}"), x * keep)],
                    eq=f"dropout: mask{l} = [u ≥ {eq.p:g}]/(1 − {eq.p:g});  a{l} = mask{l} ⊙ a{l - 1}")]

    def backward(self, eq, ctx) -> list:
        back = ctx.grad(eq.index - 1)
        if not ctx.masks or back is None:
            return []
        l, n = eq.index, math.prod(eq.out_shape)
        return [Map(ctx.rows, n, {g: elem(f"delta{l}"), u: elem(f"mask{l}")}, [(elem(back), g * u)],
                    eq=f"dropout: {back} = ∂C/∂a{l - 1} = mask{l} ⊙ delta{l}  (∂aˡ/∂aˡ⁻¹ = m/(1 − p))")]
