"""Lowering of max-pooling: a ``WindowMax`` step (keeping each window's argmax while training) and, backward,
a ``ScatterMax`` of ∂C/∂a to those positions (the derived rule of Max).

After a conv layer whose σ is non-decreasing (``PoolEquations.pool_first``, decided and stated by the derive
stage), the pooling runs before σ, as network3 does: the conv layer leaves z, this layer pools it into
``zp{l}`` and applies the conv layer's σ (and keeps its σ′ when it has no form in a) to the pooled values;
backward, δ = g ⊙ σ′(zp) at the pooled size is scattered straight into the conv layer's δ (∂C/∂z), so the conv
layer skips its own σ′ step.  Same results, a quarter of the activations for 2x2 windows.

Takes: ``PoolEquations`` and a ``LowerContext``.  Gives: program steps over flat (rows, C·H·W) buffers.
"""

from __future__ import annotations

import math

from symbp.compile.layers import register_lowering
from symbp.compile.layers.dense import _keeps_sp
from symbp.compile.printer import stabilise
from symbp.compile.program import Map, ScatterMax, WindowMax, elem
from symbp.compile.symbols import g, sp_, zr
from symbp.layers.pool import MaxPool
from symbp.symbols import a, z


def pooled_conv(eq, ctx):
    """The conv layer's equations when this pooling runs before its σ, else None."""
    return ctx.eqs.layers[eq.index - 2] if getattr(eq, "pool_first", None) else None


@register_lowering(MaxPool)
class PoolLowering:
    def identity(self, eq, ctx) -> bool:
        return False

    def scratch(self, eq, ctx) -> None:
        l, n = eq.index, math.prod(eq.out_shape)
        ctx.buffer(f"a{l}", ctx.rows, n)
        conv = pooled_conv(eq, ctx)
        if conv is not None:
            ctx.buffer(f"zp{l}", ctx.rows, n)
            if _keeps_sp(conv, ctx):
                ctx.buffer(f"sp{l}", ctx.rows, n)
        if ctx.grads:
            ctx.buffer(f"delta{l}", ctx.rows, n)
            ctx.buffer(f"argmax{l}", ctx.rows, n, dtype="int64")

    def forward(self, eq, ctx) -> list:
        l, n = eq.index, math.prod(eq.out_shape)
        (ph, pw), conv = eq.layer.window, pooled_conv(eq, ctx)
        if conv is None:
            return [WindowMax(f"a{l}", ctx.act(l - 1), f"argmax{l}" if ctx.grads else None, ctx.rows,
                              tuple(eq.in_shape), tuple(eq.layer.window),
                              eq=f"a{l} = max over {ph}x{pw} windows of a{l - 1}")]
        writes = [(elem(f"a{l}"), stabilise(conv.activation.expr.subs(z, zr)))]
        text = f"a{l} = σ(zp{l}) = {conv.activation.text}"
        if _keeps_sp(conv, ctx):
            writes.append((elem(f"sp{l}"), stabilise(conv.derivative.expr.subs(z, zr))))
            text += f";  sp{l} = σ′(zp{l})"
        return [WindowMax(f"zp{l}", f"z{l - 1}", f"argmax{l}" if ctx.grads else None, ctx.rows,
                          tuple(eq.in_shape), tuple(eq.layer.window),
                          eq=f"zp{l} = max over {ph}x{pw} windows of z{l - 1}  (pooling before σ: σ non-decreasing)"),
                Map(ctx.rows, n, {zr: elem(f"zp{l}")}, writes, eq=text + f"  (layer {l - 1}'s σ, pooled values)")]

    def backward(self, eq, ctx) -> list:
        back = ctx.grad(eq.index - 1)
        if back is None:
            return []
        l, n = eq.index, math.prod(eq.out_shape)
        steps, g_name = [], f"delta{l}"
        conv = pooled_conv(eq, ctx)
        if conv is not None:  # δ of the conv layer at the pooled positions: g ⊙ σ′(zp)
            reads = {g: elem(g_name), a: elem(f"a{l}"), z: elem(f"zp{l}")}
            expr = conv.delta
            if not conv.derivative.uses_a:
                reads[sp_] = elem(f"sp{l}")
                expr = g * sp_
            steps.append(Map(ctx.rows, n, reads, [(elem(g_name), stabilise(expr))],
                             eq=f"δ{l - 1} at the pooled positions: ∂C/∂a{l} ⊙ σ′(zp{l})"))
        what = f"δ{l - 1} = ∂C/∂z{l - 1}" if conv is not None else f"∂C/∂a{l - 1}"
        return steps + [ScatterMax(back, g_name, f"argmax{l}", ctx.rows, tuple(eq.in_shape),
                                   tuple(eq.layer.window),
                                   eq=f"{what} = δ{l} at each window's maximum, 0 elsewhere (derivative of max)")]
