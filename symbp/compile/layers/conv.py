"""Lowering of a convolutional layer from its derived rules: the forward indexed sum (+ bias) as a ``Contract``,
σ (and σ′ when it has no form in a) in one elementwise map, δ = g ⊙ σ′, and the three derived backward sums —
∂C/∂a (full convolution, its range conditions as loop bounds), ∂C/∂w and ∂C/∂b (or, in the whole-epoch
kernel, the SGD updates with α = −η/m and β = 1 − ηλ/n for w) — each a ``Contract`` over the mini-batch.
When the derived terms have the index structure of a valid correlation (``_is_correlation``), the sums are
wrapped as ``ConvGemm`` steps (im2col + gemm), and ∂C/∂b, a plain sum over each map, as its "bias" role.

Takes: ``ConvEquations`` (``symbp.derive.layers.conv``) and a ``LowerContext``.  Gives: program steps.
Activations are stored flat, (rows, maps·height·width) in (channel, row, column) order, and read through
image-shaped views.
"""

from __future__ import annotations

import math

import sympy as sp

from symbp.compile.layers import register_lowering
from symbp.compile.layers.dense import _keeps_sp
from symbp.compile.printer import stabilise
from symbp.compile.program import Access, Contract, ConvGemm, Map, elem
from symbp.compile.symbols import g, sp_, zr
from symbp.derive.layers import conv as rules
from symbp.layers.conv import Conv2D
from symbp.symbols import a, z

#: derived index symbols → loop variable names of the generated code
_VARS = {rules.f: "f", rules.c: "c", rules.p: "p", rules.q: "q", rules.i: "i", rules.j: "j",
         rules.fo: "f", rules.co: "c", rules.po: "p", rules.qo: "q", rules.yy: "iy", rules.xx: "ix"}


def _idx(e: sp.Expr, sizes: dict) -> str:
    e = e.xreplace(sizes)
    return str(e.xreplace({s: sp.Symbol(n, integer=True) for s, n in _VARS.items()}))


def _flat(shape) -> int:
    return math.prod(shape)


def _from_term(term: sp.Expr, bases: dict, sizes: dict) -> tuple[dict, sp.Expr]:
    """Reads and a product of symbols for a derived term: each ``Indexed`` becomes an access of its buffer at the
    derived index expressions (``bases``: IndexedBase → (buffer, per-sample?))."""
    reads, rep = {}, {}
    for k, el in enumerate(sorted(term.atoms(sp.Indexed), key=str)):
        buf, per_sample = bases[el.base]
        sym = sp.Symbol(f"t{k}", real=True)
        index = tuple(_idx(e, sizes) for e in el.indices)
        reads[sym] = Access(buf, (("r",) if per_sample else ()) + index)
        rep[el] = sym
    return reads, term.xreplace(rep)


def _forward_term(eq) -> sp.Expr:
    """The summand of the derived forward map (its bias is the Contract's bias)."""
    zsum = eq.forward_map
    conv = next(t for t in sp.Add.make_args(zsum) if isinstance(t, sp.Sum))
    return conv.function


def _is_correlation(eq) -> bool:
    """Do the derived rules have the index structure of a valid correlation (so im2col + gemm computes them)?
    z = Σ w[f,c,p,q]·a[c,i+p,j+q]; ∂C/∂w = Σ a[c′,i+p′,j+q′]·δ[f′,i,j]; ∂C/∂a = Σ δ[f,y−p,x−q]·w[f,c′,p,q]."""
    r = rules
    expected = {
        "forward": r.w[r.f, r.c, r.p, r.q] * r.a_in[r.c, r.i + r.p, r.j + r.q],
        "W": r.a_in[r.co, r.i + r.po, r.j + r.qo] * r.delta[r.fo, r.i, r.j],
        "input": r.delta[r.f, r.yy - r.p, r.xx - r.q] * r.w[r.f, r.co, r.p, r.q],
    }
    got = {"forward": _forward_term(eq), "W": eq.rules["W"].term, "input": eq.rules["input"].term}
    return all(sp.expand(got[k] - v) == 0 for k, v in expected.items())


def _is_map_sum(eq) -> bool:
    """Is the derived bias rule ∂C/∂b[f′] = Σ_i,j δ[f′,i,j] (a plain sum over each map, vectorised as such)?"""
    rule = eq.rules["b"]
    return not rule.conditions and sp.expand(rule.term - rules.delta[rules.fo, rules.i, rules.j]) == 0


def _names(eq) -> tuple[str, str]:
    """The kernel names of the weight and bias arrays (a declared map recognised as a convolution keeps its own)."""
    return getattr(eq, "param_names", ("W", "b"))


def _geometry(eq) -> tuple:
    return tuple(eq.in_shape), tuple(eq.layer.kernel), tuple(eq.out_shape)


def _pooled(eq, ctx) -> bool:
    """Does the next layer pool this layer's z before σ (``PoolEquations.pool_first``)?"""
    nxt = ctx.eqs.layers[eq.index] if eq.index < len(ctx.eqs.layers) else None
    return bool(getattr(nxt, "pool_first", None))


@register_lowering(Conv2D)
class ConvLowering:
    def identity(self, eq, ctx) -> bool:
        return False

    def scratch(self, eq, ctx) -> None:
        l, n = eq.index, _flat(eq.out_shape)
        ctx.buffer(f"z{l}", ctx.rows, n)
        pooled = _pooled(eq, ctx)
        if not pooled:  # else σ acts on the pooled values, in the pooling layer's buffers
            ctx.buffer(f"a{l}", ctx.rows, n)
        if _is_correlation(eq):  # the patches: one per sample while training (∂C/∂W reuses them), else one
            ckk, howo = eq.in_shape[0] * eq.layer.kernel[0] * eq.layer.kernel[1], eq.out_shape[1] * eq.out_shape[2]
            ctx.buffer(f"cols{l}", ctx.rows if ctx.grads else 1, ckk, howo)
            if ctx.grads and ctx.grad(l - 1) is not None:
                ctx.buffer(f"dcol{l}", ckk, howo)
        if ctx.grads:
            ctx.buffer(f"delta{l}", ctx.rows, n)
            if _keeps_sp(eq, ctx) and not pooled:
                ctx.buffer(f"sp{l}", ctx.rows, n)

    def _views(self, eq, ctx, **names) -> dict:
        shapes = {"in": eq.in_shape, "out": eq.out_shape}
        return {f"{buf}_v": (buf, (ctx.rows, *shapes[which])) for which, buf in names.items()}

    def forward(self, eq, ctx) -> list:
        l, rows, sizes = eq.index, ctx.rows, eq.sizes
        W, b = (f"{n}{l}" for n in _names(eq))
        x = ctx.act(l - 1)
        maps, ho, wo = eq.out_shape
        cin, kh, kw = eq.in_shape[0], *eq.layer.kernel
        reads, term = _from_term(_forward_term(eq),
                                 {rules.w: (W, False), rules.a_in: (f"{x}_v", True)}, sizes)
        conv = Contract(Access(f"z{l}_v", ("r", "f", "i", "j")), [("r", rows), ("f", maps), ("i", ho), ("j", wo)],
                        [("c", cin), ("p", kh), ("q", kw)], reads, term, bias=Access(b, ("f",)),
                        views={f"{x}_v": (x, (rows, *eq.in_shape)), f"z{l}_v": (f"z{l}", (rows, *eq.out_shape))},
                        offsets=("p", "q"),
                        eq=f"z{l}[f,i,j] = Σ_c,p,q {W}[f,c,p,q]·a{l - 1}[c,i+p,j+q] + {b}[f]  (derived forward map)")
        if _is_correlation(eq):
            conv = ConvGemm("forward", conv, (f"{x}_v", W, b, f"z{l}_v", f"cols{l}"), conv.views,
                            eq=conv.eq + "; as im2col + gemm per sample", geometry=_geometry(eq),
                            cols_per_sample=ctx.grads)
        if _pooled(eq, ctx):
            return [conv]  # σ follows the next layer's pooling
        writes = [(elem(f"a{l}"), stabilise(eq.activation.expr.subs(z, zr)))]
        text = f"a{l} = σ(z{l}) = {eq.activation.text}"
        if _keeps_sp(eq, ctx):
            writes.append((elem(f"sp{l}"), stabilise(eq.derivative.expr.subs(z, zr))))
            text += f";  sp{l} = σ′(z{l})"
        return [conv, Map(rows, _flat(eq.out_shape), {zr: elem(f"z{l}")}, writes, eq=text)]

    def backward(self, eq, ctx) -> list:
        l, rows, sizes = eq.index, ctx.rows, eq.sizes
        wn, bn = _names(eq)
        W = f"{wn}{l}"
        n = _flat(eq.out_shape)
        maps, ho, wo = eq.out_shape
        cin, hin, win = eq.in_shape
        kh, kw = eq.layer.kernel
        reads = {g: elem(f"delta{l}"), a: elem(f"a{l}"), z: elem(f"z{l}")}
        expr = eq.delta
        if not eq.derivative.uses_a:
            reads[sp_] = elem(f"sp{l}")
            expr = g * sp_
        # after pooling before σ, the pooling layer has written δ = ∂C/∂z itself (σ′ at the pooled values)
        head = [] if _pooled(eq, ctx) else [Map(rows, n, reads, [(elem(f"delta{l}"), stabilise(expr))],
                                                eq=f"δ{l} = g ⊙ σ′(z{l})")]
        steps = []
        d_v, x = f"delta{l}_v", ctx.act(l - 1)
        views = {d_v: (f"delta{l}", (rows, *eq.out_shape))}
        bases = {rules.delta: (d_v, True), rules.w: (W, False), rules.a_in: (f"{x}_v", True)}
        back = ctx.grad(l - 1)
        if back is not None:
            rule = eq.rules["input"]
            conds = [(_idx(e, sizes), _idx(lo, sizes), _idx(hi, sizes)) for e, lo, hi in rule.conditions]
            reads, term = _from_term(rule.term, bases, sizes)
            steps.append(Contract(
                Access(f"{back}_v", ("r", "c", "iy", "ix")), [("r", rows), ("c", cin), ("iy", hin), ("ix", win)],
                [("f", maps), ("p", kh), ("q", kw)], reads, term,
                conditions=conds, views=views | {f"{back}_v": (back, (rows, *eq.in_shape))}, offsets=("p", "q"),
                eq=f"∂C/∂a{l - 1}[c,y,x] = Σ_f,p,q δ{l}[f,y−p,x−q]·{W}[f,c,p,q], "
                   + ", ".join(f"{lo} ≤ {e} ≤ {hi}" for e, lo, hi in conds) + "  (derived: full convolution)"))
        if ctx.update:
            wname, alpha, beta_w, before, after = ctx.sgd_weights(W)
            bname, _, beta_b, after_b = ctx.sgd_biases(f"{bn}{l}")
        else:
            (wname, bname), alpha, beta_w, beta_b = (f"nabla_{wn.lower()}{l}", f"nabla_{bn.lower()}{l}"), "1.0 / m", \
                "0.0", "0.0"
            before, after, after_b = [], [], []
        decay = {"decay": " + decay·W (SGD)", "1.0": f" + {wname} (SGD)"}.get(beta_w, "") if ctx.update else ""
        reads, term = _from_term(eq.rules["W"].term, bases, sizes)
        steps.append(Contract(
            Access(wname, ("f", "c", "p", "q")), [("f", maps), ("c", cin), ("p", kh), ("q", kw)],
            [("r", rows), ("i", ho), ("j", wo)], reads, term, alpha=alpha, beta=beta_w,
            views=views | {f"{x}_v": (x, (rows, *eq.in_shape))}, offsets=("p", "q"),
            eq=f"BP4: {wname}[f,c,p,q] {'←' if ctx.update else '='} ({alpha})·Σ_r,i,j δ{l}[f,i,j]·a{l - 1}[c,i+p,j+q]"
               + decay + "  (derived: valid correlation)"))
        if _is_correlation(eq):  # the same sums, as products over the patches kept by the forward pass
            gemm = {"input": (f"{d_v}", W, f"{back}_v", f"dcol{l}"),
                    "weights": (f"{d_v}", f"cols{l}", wname, alpha, beta_w)}
            steps = [ConvGemm(role, st, gemm[role], st.views, eq=st.eq + "; as gemm over the patches",
                              geometry=_geometry(eq))
                     for st, role in zip(steps, (["input"] if back is not None else []) + ["weights"])]
        steps = head + steps[:-1] + before + steps[-1:] + after  # the update rule's steps around the weight product
        reads, term = _from_term(eq.rules["b"].term, bases, sizes)
        bias = Contract(
            Access(bname, ("f",)), [("f", maps)], [("r", rows), ("i", ho), ("j", wo)], reads, term,
            alpha=alpha, beta=beta_b, views=views,
            eq=f"BP3: {bname}[f] {'←' if ctx.update else '='} ({alpha})·Σ_r,i,j δ{l}[f,i,j]"
               + ((" + b (SGD)" if beta_b == "1.0" else f" + μ·{bname} (SGD)") if ctx.update else ""))
        if _is_map_sum(eq):
            bias = ConvGemm("bias", bias, (f"delta{l}", bname, alpha, beta_b), views,
                            eq=bias.eq + "; as a sum over each map", geometry=_geometry(eq))
        steps.append(bias)
        steps += after_b
        return steps
