"""Lowering of max-pooling: a ``WindowMax`` step (keeping each window's argmax while training) and, backward,
a ``ScatterMax`` of ∂C/∂a to those positions (the derived rule of Max).

Takes: ``PoolEquations`` and a ``LowerContext``.  Gives: program steps over flat (rows, C·H·W) buffers.
"""

from __future__ import annotations

import math

from symbp.compile.layers import register_lowering
from symbp.compile.program import ScatterMax, WindowMax
from symbp.layers.pool import MaxPool


@register_lowering(MaxPool)
class PoolLowering:
    def identity(self, eq, ctx) -> bool:
        return False

    def scratch(self, eq, ctx) -> None:
        l, n = eq.index, math.prod(eq.out_shape)
        ctx.buffer(f"a{l}", ctx.rows, n)
        if ctx.grads:
            ctx.buffer(f"delta{l}", ctx.rows, n)
            ctx.buffer(f"argmax{l}", ctx.rows, n, dtype="int64")

    def forward(self, eq, ctx) -> list:
        l = eq.index
        return [WindowMax(f"a{l}", ctx.act(l - 1), f"argmax{l}" if ctx.grads else None, ctx.rows,
                          tuple(eq.in_shape), tuple(eq.layer.window),
                          eq=f"a{l} = max over {eq.layer.window[0]}x{eq.layer.window[1]} windows of a{l - 1}")]

    def backward(self, eq, ctx) -> list:
        back = ctx.grad(eq.index - 1)
        if back is None:
            return []
        l = eq.index
        return [ScatterMax(back, f"delta{l}", f"argmax{l}", ctx.rows, tuple(eq.in_shape), tuple(eq.layer.window),
                           eq=f"∂C/∂a{l - 1} = δ{l} at each window's maximum, 0 elsewhere (derivative of max)")]
