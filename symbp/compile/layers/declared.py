"""Lowering of a declared layer: its map's terms as ``IndexReduce`` steps, σ as a fused map, δ = g ⊙ σ′, and
every derived adjoint as an ``IndexGather`` (or, for a max, an ``IndexScatterMax`` at the recorded argmax).

Takes: ``DeclaredEquations`` (``symbp.derive.layers.declared``) and a ``LowerContext``.  Gives: program steps.
In the whole-epoch kernel the parameter gradients go to scratch buffers first and the SGD rule (weight decay,
a regulariser's R′, momentum) is applied from them, so no adjoint reads a parameter already updated.  The
weights are the parameters that multiply x (``Geometry.weights``); the others are biases (no penalty).
"""

from __future__ import annotations

import math

import sympy as sp

from symbp.compile.layers import PEN, register_lowering
from symbp.compile.layers.dense import keeps_sp
from symbp.compile.printer import stabilise
from symbp.compile.program import IndexGather, IndexReduce, IndexScatterMax, Map, Operand, Update, elem
from symbp.compile.symbols import g, sp_
from symbp.derive.adjoint import ScatterAdjoint
from symbp.layers.declared import Declared
from symbp.layers.index_map import read_symbol
from symbp.symbols import a, w, z

_GRAD, _ETA, _M, _DECAY, _MU = (sp.Symbol(n, real=True) for n in ("_grad", "eta", "m", "decay", "mu"))
#: the α and β strings of ``LowerContext.sgd_weights``/``sgd_biases`` as symbols of an ``Update`` rule
_COEFFS = {"-eta / m": -_ETA / _M, "1.0": sp.Integer(1), "decay": _DECAY, "mu": _MU, "1.0 / m": 1 / _M,
           "0.0": sp.Integer(0)}


def _pools_next(eq, ctx) -> bool:
    """Does the next layer pool this layer's z before σ (its ``pool_first``)? Then this layer leaves z and no σ."""
    nxt = ctx.eqs.layers[eq.index] if eq.index < len(ctx.eqs.layers) else None
    return bool(getattr(nxt, "pool_first", None))


def _sigma_eq(eq, ctx):
    """The equations whose σ this layer applies: its own, or, when it pools first, the previous layer's."""
    return ctx.eqs.layers[eq.index - 2] if eq.pool_first else eq


def _operands(eq, reads, ctx) -> tuple[Operand, ...]:
    l, geo = eq.index, eq.geometry
    x = f"z{l - 1}" if eq.pool_first else ctx.act(l - 1)  # pooling first reads the previous layer's z
    ops = []
    for r in reads:
        if r.array == "x":
            ops.append(Operand(x, geo.x_shape, r.index, per_row=True, padded=True))
        else:
            ops.append(Operand(f"{r.array}{l}", dict(eq.layer.params)[r.array], r.index, per_row=False))
    return tuple(ops)


def _forward_steps(eq, ctx, out: str, keep_argmax: bool) -> list[IndexReduce]:
    imap, l = eq.layer.index_map, eq.index
    steps = []
    for ti, term in enumerate(imap.terms):
        argmax = f"argmax{l}_{ti}" if term.kind == "max" and keep_argmax else None
        steps.append(IndexReduce(out, eq.geometry.out, imap.out_vars, ctx.rows, term.kind, term.vars, term.body,
                                 _operands(eq, term.reads, ctx), accumulate=ti > 0, argmax=argmax,
                                 eq=f"z{l} {'+' if ti else ''}= term {ti + 1} of {eq.layer.name}: "
                                    f"{eq.layer.text}"))
    return steps


_BUILTIN: dict[int, tuple] = {}


def builtin(eq, ctx):
    """(lowering, equations) of the dense layer the declared map equals (``symbp.layers.recognise``), or None:
    the declared layer is then lowered exactly as ``Dense`` (its matrix products, its bias in the product)."""
    key = id(eq)
    if key not in _BUILTIN or _BUILTIN[key][0] is not eq:
        from symbp.compile.layers import LOWERINGS
        from symbp.derive.layers import LayerContext, derive_layer
        from symbp.layers.recognise import as_dense

        found, names = as_dense(eq.layer, eq.geometry), None
        if found is not None:
            found, *names = found
        result = None
        if found is not None:
            lctx = LayerContext(eq.index, eq.in_shape, eq.out_shape, False, ctx.eqs.network, eq.back_text,
                                eq.back_latex)
            beq = derive_layer(found, lctx)
            if names:
                object.__setattr__(beq, "param_names", tuple(names))
            result = (LOWERINGS[type(found)], beq)
        if len(_BUILTIN) > 256:
            _BUILTIN.clear()
        _BUILTIN[key] = (eq, result)
    return _BUILTIN[key][1]


@register_lowering(Declared)
class DeclaredLowering:
    def identity(self, eq, ctx) -> bool:
        return False

    def scratch(self, eq, ctx) -> None:
        fast = builtin(eq, ctx)
        if fast is not None:
            return fast[0].scratch(fast[1], ctx)
        l, n, pooled = eq.index, math.prod(eq.out_shape), _pools_next(eq, ctx)
        ctx.buffer(f"z{l}", ctx.rows, n)
        if not pooled:  # else σ acts on the pooled values, in the next layer's buffers
            ctx.buffer(f"a{l}", ctx.rows, n)
        if ctx.grads:
            ctx.buffer(f"delta{l}", ctx.rows, n)
            if keeps_sp(_sigma_eq(eq, ctx), ctx) and not pooled:
                ctx.buffer(f"sp{l}", ctx.rows, n)
            for ti, term in enumerate(eq.layer.index_map.terms):
                if term.kind == "max":
                    ctx.buffer(f"argmax{l}_{ti}", ctx.rows, n, dtype="int64")
            if ctx.update:
                for name, shape in eq.layer.params:
                    ctx.buffer(f"nabla_{name.lower()}{l}", *shape)

    def forward(self, eq, ctx) -> list:
        fast = builtin(eq, ctx)
        if fast is not None:
            return fast[0].forward(fast[1], ctx)
        l, n = eq.index, math.prod(eq.out_shape)
        steps: list = _forward_steps(eq, ctx, f"z{l}", ctx.grads)
        if _pools_next(eq, ctx):
            return steps  # σ follows the next layer's pooling
        sig = _sigma_eq(eq, ctx)
        writes = [(elem(f"a{l}"), stabilise(sig.activation.expr))]
        text = f"a{l} = σ(z{l}) = {sig.activation.text}"
        if keeps_sp(sig, ctx):
            writes.append((elem(f"sp{l}"), stabilise(sig.derivative.expr)))
            text += f";  sp{l} = σ′(z{l})"
        if sig is not eq:
            text += f"  (layer {l - 1}'s σ on the pooled values)"
        steps.append(Map(ctx.rows, n, {z: elem(f"z{l}")}, writes, eq=text))
        return steps

    def backward(self, eq, ctx) -> list:
        fast = builtin(eq, ctx)
        if fast is not None:
            return fast[0].backward(fast[1], ctx)
        l, n, rows = eq.index, math.prod(eq.out_shape), ctx.rows
        sig = _sigma_eq(eq, ctx)
        reads = {g: elem(f"delta{l}"), a: elem(f"a{l}"), z: elem(f"z{l}")}
        expr = sig.delta
        if not sig.derivative.uses_a:
            reads[sp_] = elem(f"sp{l}")
            expr = g * sp_
        # after pooling first, the next layer has written δ = ∂C/∂z itself (σ′ at the pooled values)
        steps: list = [] if _pools_next(eq, ctx) else [Map(
            rows, n, reads, [(elem(f"delta{l}"), stabilise(expr))],
            eq=f"BP2: δ{l} = ∂C/∂a{l} ⊙ σ′(z{l})" if sig is eq else
            f"δ{l - 1} at the pooled positions: ∂C/∂a{l} ⊙ σ′(z{l})  (layer {l - 1}'s σ)")]
        fwd = _forward_steps(eq, ctx, f"z{l}", True)
        g_op = Operand(f"delta{l}", eq.geometry.out, (), per_row=True)
        back = ctx.grad(l - 1)
        if back is not None:  # ∂C/∂aˡ⁻¹, read before any parameter changes
            first = True
            for adj in eq.input_adjoints():
                steps.append(self._step(eq, adj, fwd, g_op, back, True, "1.0", "0.0", not first, ctx))
                first = False
        after: list = []
        for name, _ in eq.layer.params:
            adjs = eq.param_adjoints(name)
            if ctx.update and len(adjs) == 1 and not _reads_params(adjs[0]):
                # one adjoint whose factor reads no parameter: the SGD step is the gather itself,
                # target ← α·Σ + β·target, as the dense and conv layers' products do it
                if name in eq.geometry.weights:
                    target, alpha, beta, before, rest = ctx.sgd_weights(f"{name}{l}")
                else:
                    (target, alpha, beta, rest), before = ctx.sgd_biases(f"{name}{l}"), []
                after += [*before, self._step(eq, adjs[0], fwd, g_op, target, False, alpha, beta, False, ctx), *rest]
            elif ctx.update:
                grad = f"nabla_{name.lower()}{l}"
                for k, adj in enumerate(adjs):
                    steps.append(self._step(eq, adj, fwd, g_op, grad, False, "1.0", "0.0", k > 0, ctx))
                after += self._sgd(f"{name}{l}", grad, name in eq.geometry.weights, ctx)
            else:
                grad = f"nabla_{name.lower()}{l}"
                for k, adj in enumerate(adjs):
                    steps.append(self._step(eq, adj, fwd, g_op, grad, False, "1.0 / m", "0.0", k > 0, ctx))
        return steps + after

    def _step(self, eq, adj, fwd, g_op, target, per_sample, alpha, beta, accumulate, ctx):
        shape = eq.geometry.x_shape if adj.target == "x" else dict(eq.layer.params)[adj.target]
        label = f"{adj.text(eq.names)}"
        if isinstance(adj, ScatterAdjoint):
            return IndexScatterMax(target, shape, per_sample, fwd[adj.term], adj.read,
                                   Operand(g_op.buffer, g_op.shape, tuple(_var(v) for v, _ in adj.out_vars)),
                                   adj.factor, f"argmax{eq.index}_{adj.term}", alpha, beta, accumulate, eq=label)
        return IndexGather(target, shape, adj.target_vars, per_sample, ctx.rows, adj.loops, adj.guards,
                           Operand(g_op.buffer, g_op.shape, adj.out_index), adj.factor,
                           _operands(eq, adj.reads, ctx), fwd[adj.term], adj.read, alpha, beta, accumulate, eq=label)

    def _sgd(self, param: str, grad: str, weight: bool, ctx) -> list:
        """param ← its SGD rule, from the summed gradient ``grad`` (scratch)."""
        if weight:
            target, alpha, beta, before, after = ctx.sgd_weights(param)
        else:
            target, alpha, beta, after = ctx.sgd_biases(param)
            before = []
        rule = _COEFFS[beta] * w + _COEFFS[alpha] * _GRAD
        scalars = {s: s.name for s in rule.free_symbols if s not in (w, _GRAD)}
        step = Update(target, {w: target, _GRAD: grad}, rule, scalars,
                      eq=f"SGD: {target} ← ({beta})·{target} + ({alpha})·{grad}  ({grad} = Σ over the mini-batch)")
        if PEN in rule.free_symbols:
            step.scalars[PEN] = "pen"
        return [*before, step, *after]


def _reads_params(adj) -> bool:
    """Does the adjoint's factor read a parameter (which an earlier SGD step of the layer may have changed)?"""
    return any(r.array != "x" and read_symbol(k) in adj.factor.free_symbols for k, r in enumerate(adj.reads))


def _var(name: str):
    from symbp.layers.index_map import Affine

    return Affine.var(name)
