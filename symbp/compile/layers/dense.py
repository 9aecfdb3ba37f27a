"""Lowering of a dense layer: zˡ = aˡ⁻¹·Wˡᵀ (gemm), bias and σ in one fused map, BP1/BP2 maps, BP3/BP4 as
gemm and column sums (or, in the whole-epoch kernel, the SGD updates themselves).

Takes: ``LayerEquations`` (``symbp.derive.layers.dense``) and a ``LowerContext``.  Gives: program steps whose
elementwise expressions are exactly those of ``net.equations()``, through the stability rewrites.
"""

from __future__ import annotations

import sympy as sp

from symbp.compile.layers import register_lowering
from symbp.compile.printer import stabilise
from symbp.compile.program import ColSum, Gemm, Map, RowSoftmax, RowSum, elem, per_col, per_row
from symbp.compile.symbols import S, b, g, sp_, zr
from symbp.layers.dense import Dense
from symbp.symbols import a, y, z


def _names(eq) -> tuple[str, str]:
    """The kernel names of the weight and bias arrays (a declared map recognised as dense keeps its own)."""
    return getattr(eq, "param_names", ("W", "b"))


def keeps_sp(eq, ctx) -> bool:
    """σ′(zˡ) stored in the forward pass: a hidden layer whose σ′ has no form in a."""
    return ctx.grads and not eq.is_output and eq.derivative is not None and not eq.derivative.uses_a


@register_lowering(Dense)
class DenseLowering:
    def identity(self, eq, ctx) -> bool:
        return False

    def scratch(self, eq, ctx) -> None:
        l, n = eq.index, eq.n_out
        ctx.buffer(f"z{l}", ctx.rows, n)
        ctx.buffer(f"a{l}", ctx.rows, n)
        if ctx.grads:
            ctx.buffer(f"delta{l}", ctx.rows, n)
            if keeps_sp(eq, ctx):
                ctx.buffer(f"sp{l}", ctx.rows, n)

    def forward(self, eq, ctx, keep_lse: bool = False, keep_l1ma: bool = False) -> list:
        l, n, rows = eq.index, eq.n_out, ctx.rows
        W, B = (f"{name}{l}" for name in _names(eq))
        steps = [Gemm(f"z{l}", ctx.act(l - 1), W, False, True,
                      eq=f"z{l} = a{l - 1} · {W}ᵀ  (zˡ = wˡaˡ⁻¹ + bˡ for every sample; bias below)")]
        if eq.activation.vector:
            steps.append(RowSoftmax(f"z{l}", f"a{l}", B, rows, n, lse=f"lse{l}" if keep_lse else None,
                                    l1ma=f"l1ma{l}" if keep_l1ma else None,
                                    eq=f"a{l} = softmax(z{l} + {B}), stabilised by the row maximum"))
            return steps
        zb = zr + b
        writes = [(elem(f"z{l}"), zb), (elem(f"a{l}"), stabilise(eq.activation.expr.subs(z, zb)))]
        text = f"z{l} += {B};  a{l} = σ(z{l}) = {eq.activation.text}"
        if keeps_sp(eq, ctx):
            writes.append((elem(f"sp{l}"), stabilise(eq.derivative.expr.subs(z, zb))))
            text += f";  sp{l} = σ′(z{l}) = {eq.derivative.expr} (same pass, shared subexpressions)"
        steps.append(Map(rows, n, {zr: elem(f"z{l}"), b: per_col(B)}, writes, eq=text))
        return steps

    def output_error(self, eq, ctx, yb: str) -> list:
        l, n, rows = eq.index, eq.n_out, ctx.rows
        reads = {a: elem(f"a{l}"), y: elem(yb), z: elem(f"z{l}")}
        steps = []
        if eq.delta.has(S):
            grad_term = sp.expand(a * ctx.eqs.cost_gradient)
            ctx.buffer(f"S{l}", rows)
            steps.append(RowSum(f"S{l}", rows, n, dict(reads), grad_term,
                                eq=f"S{l} = Σₖ a{l}ₖ ∂C/∂a{l}ₖ  (softmax Jacobian)"))
            reads[S] = per_row(f"S{l}")
        steps.append(Map(rows, n, reads, [(elem(f"delta{l}"), stabilise(eq.delta))], eq=f"BP1: {eq.bp1}"))
        return steps

    def backward(self, eq, ctx) -> list:
        l, n, rows = eq.index, eq.n_out, ctx.rows
        wn, bn = _names(eq)
        W, B = f"{wn}{l}", f"{bn}{l}"
        steps = []
        if not eq.is_output:
            reads = {g: elem(f"delta{l}"), a: elem(f"a{l}"), z: elem(f"z{l}")}
            expr = eq.delta
            if not eq.derivative.uses_a:
                reads[sp_] = elem(f"sp{l}")
                expr = g * sp_
            steps.append(Map(rows, n, reads, [(elem(f"delta{l}"), stabilise(expr))], eq=f"BP2: {eq.bp2}"))
        prev, back = ctx.act(l - 1), ctx.grad(l - 1)
        if back is not None:
            # (wˡ)ᵀδˡ for every sample, with the weights before this mini-batch's update.
            steps.append(Gemm(back, f"delta{l}", W, False, False,
                              eq=f"{back} = delta{l} · {W}  ((w{l})ᵀδ{l} per sample: ∂C/∂a{l - 1})"))
        if ctx.update:
            target, alpha, beta, before, after = ctx.sgd_weights(W)
            rule = (f"{W} ← (1 − ηλ/n)·{W} − (η/m)·Σ δ{l}ᵀ a{l - 1}" if ctx.rule.plain else
                    f"{target} ← {target} − (η/m)·Σ δ{l}ᵀ a{l - 1}")
            steps += before
            steps.append(Gemm(target, f"delta{l}", prev, True, False, alpha=alpha, beta=beta,
                              eq=f"BP4 + SGD: {rule}"))
            steps += after
            target, alpha, beta, after = ctx.sgd_biases(B)
            steps.append(ColSum(target, f"delta{l}", rows, n, alpha=alpha, beta=beta,
                                eq=f"BP3 + SGD: {target} ← {'μ·' if ctx.rule.momentum else ''}{target} − "
                                   f"(η/m)·Σ δ{l}"))
            steps += after
        else:
            steps.append(Gemm(f"nabla_{wn.lower()}{l}", f"delta{l}", prev, True, False, alpha="1.0 / m",
                              eq=f"BP4: nabla_{wn.lower()}{l} = (1/m)·Σ δ{l}ᵀ a{l - 1}"))
            steps.append(ColSum(f"nabla_{bn.lower()}{l}", f"delta{l}", rows, n, alpha="1.0 / m",
                                eq=f"BP3: nabla_{bn.lower()}{l} = (1/m)·Σ δ{l}"))
        return steps
