"""Passes over kernel programs: declared maps whose sums have a known shape become fast steps.

Takes: a ``Program`` (``symbp.compile.program``).  Gives: the same program with steps replaced where a pass
recognises the shape of a sum, whatever layer it came from:

- ``dense_products``: a sum Σ_k P[j,k]·x[k] of a parameter P and the flat input (one output index j, one
  reduction index k, indices plain variables, extents those of P) is a BLAS ``Gemm`` z = x·Pᵀ; its derived
  adjoints Σ_j δ[j]·P[j,k] (the input gradient) and Σ_r δ[r,j]·x[r,k] (∂C/∂P, or its SGD step) are ``Gemm``s too.
- ``bias_maps``: a term P[j] without reduction, added to a flat output, is an elementwise ``Map`` z += P, and its
  adjoint Σ_r δ[r, j] a ``ColSum``.

Whole declared maps equal to a built-in's (``symbp.layers.recognise``: a valid stride-1 correlation plus a bias,
a non-overlapping window max) are lowered by that kind's lowering (``symbp.compile.layers.declared``).

Each replacement computes the same sum as the generic loops, in BLAS's order for products: ``model.plan()``
shows what each step became.  Everything not recognised stays generated loops (and the plan says so).
"""

from __future__ import annotations

import dataclasses

from symbp.compile.program import Block, ColSum, Gemm, IndexGather, IndexReduce, Loop, Map, elem, per_col
from symbp.compile.symbols import b as _b
from symbp.compile.symbols import zr as _zr
from symbp.layers.index_map import Affine, read_symbol


def _plain(e: Affine, var: str) -> bool:
    return e == Affine.var(var)


def _dense_shape(step: IndexReduce):
    """(x operand, P operand) when ``step`` is Σ_k P[j,k]·x[k] exactly (see the module docstring), else None."""
    if step.kind != "sum" or step.accumulate or len(step.out_vars) != 1 or len(step.vars) != 1:
        return None
    if step.body != read_symbol(0) * read_symbol(1) or len(step.operands) != 2:
        return None
    (j,), ((k, n_k),) = step.out_vars, step.vars
    xs = [op for op in step.operands if op.per_row]
    ps = [op for op in step.operands if not op.per_row]
    if len(xs) != 1 or len(ps) != 1:
        return None
    x, p = xs[0], ps[0]
    if len(x.index) != 1 or not _plain(x.index[0], k) or x.shape != (n_k,):
        return None
    if len(p.index) != 2 or not (_plain(p.index[0], j) and _plain(p.index[1], k)):
        return None
    if p.shape != (step.out_shape[0], n_k):
        return None
    return x, p


def _bias_shape(step: IndexReduce):
    """The parameter operand when ``step`` adds P[j] to a flat output (no reduction), else None."""
    if step.kind != "sum" or not step.accumulate or step.vars or len(step.out_vars) != 1:
        return None
    if step.body != read_symbol(0) or len(step.operands) != 1:
        return None
    p = step.operands[0]
    if p.per_row or len(p.index) != 1 or not _plain(p.index[0], step.out_vars[0]) or p.shape != step.out_shape:
        return None
    return p


def _rewrite(step):
    if isinstance(step, IndexReduce):
        dense = _dense_shape(step)
        if dense is not None:
            x, p = dense
            return Gemm(step.out, x.buffer, p.buffer, False, True,
                        eq=f"{step.out} = {x.buffer} · {p.buffer}ᵀ  (dense product found in: {step.eq})")
        bias = _bias_shape(step)
        if bias is not None:
            n = step.out_shape[0]
            return Map(step.rows, n, {_zr: elem(step.out), _b: per_col(bias.buffer)}, [(elem(step.out), _zr + _b)],
                       eq=f"{step.out} += {bias.buffer}  (bias found in: {step.eq})")
        return step
    if isinstance(step, IndexGather) and not step.accumulate:
        fwd = step.forward
        dense = _dense_shape(fwd)
        if dense is not None:
            x, p = dense
            read = fwd.operands[step.read]
            if read is x and step.per_sample:  # ∂C/∂x = δ · P
                return Gemm(step.target, step.g.buffer, p.buffer, False, False, step.alpha, step.beta,
                            eq=f"{step.target} = {step.g.buffer} · {p.buffer}  (the input gradient as a product: "
                               f"{step.eq})")
            if read is p and not step.per_sample:  # ∂C/∂P = δᵀ · x, or its SGD step
                return Gemm(step.target, step.g.buffer, x.buffer, True, False, step.alpha, step.beta,
                            eq=f"{step.target} = ({step.alpha})·{step.g.buffer}ᵀ · {x.buffer} + ({step.beta})·"
                               f"{step.target}  (as a product: {step.eq})")
        bias = _bias_shape(fwd)
        if bias is not None and not step.per_sample and step.factor == 1:
            return ColSum(step.target, step.g.buffer, fwd.rows, fwd.out_shape[0], step.alpha, step.beta,
                          eq=f"{step.target} = ({step.alpha})·Σ {step.g.buffer} + ({step.beta})·{step.target}  "
                             f"(a column sum: {step.eq})")
    return step


def _walk(steps: list) -> list:
    out = []
    for s in steps:
        if isinstance(s, Block):
            out.append(Block(s.label, _walk(s.steps), s.eq))
        elif isinstance(s, Loop):
            out.append(Loop(_walk(s.body), s.eq))
        else:
            out.append(_rewrite(s))
    return out


def optimise(program):
    """The program with every recognised declared-map step replaced by its fast form."""
    return dataclasses.replace(program, steps=_walk(program.steps))


__all__ = ["optimise"]
