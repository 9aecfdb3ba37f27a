"""A declared layer's backward rules, derived from its index expression.

Takes: a ``Declared`` layer (``symbp.layers.declared``) and its context.  Gives: ``DeclaredEquations``: the
forward map with its extents, δ = g ⊙ σ′(z) elementwise (σ′ from ``symbp.derive.calculus``, as for a dense layer),
and one adjoint per read of x or of a parameter (``symbp.derive.adjoint``): gathers from solving the index
equations, with their guards, or the argmax scatter of a max.  Renders them as text, LaTeX and Markdown, the
input as aˡ⁻¹, the parameters and δ with the layer number, so nothing collides with the cost C.  For the
sum-over-paths check (``symbp.derive.check``): ``UnrolledDeclared``, the map written out unit by unit, and the
derived adjoints evaluated index by index on those units.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass

import sympy as sp

from symbp.derive.adjoint import Adjoint, ScatterAdjoint, adjoint, latex_affine, scatter_adjoint
from symbp.derive.calculus import activation_derivative, g
from symbp.derive.layers import LayerContext, UnrolledLayer, derive_layer, unit_symbol, unroll_layer
from symbp.layers.conv import Conv2D
from symbp.layers.declared import Declared, Geometry
from symbp.layers.index_map import Affine, positions, read_symbol
from symbp.layers.pool import AvgPool, MaxPool
from symbp.layers.recognise import as_dense
from symbp.limits import run_optional
from symbp.render import factor_latex, factor_text, latex, latex_text, ranges_latex, sup, text
from symbp.symbols import a, z


@dataclass(frozen=True)
class DeclaredEquations:
    index: int
    layer: Declared
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    geometry: Geometry
    derivative: object  # ActivationDerivative
    delta: sp.Expr  # δ = g·σ′ elementwise
    adjoints: tuple  # Adjoint / ScatterAdjoint, in the order of the map's reads
    back_text: str | None = None
    back_latex: str | None = None
    is_output: bool = False
    #: why the previous layer's σ may follow this max pool (``_pool_first``), else None
    pool_first: str | None = None

    @property
    def activation(self):
        return self.layer.activation

    @property
    def activation_derivative(self):
        return self.derivative.expr

    @property
    def has_params(self) -> bool:
        return bool(self.layer.params)

    def names(self, array: str, latex: bool = False) -> str:
        """How an array of the map is shown: x as aˡ⁻¹, δ and the parameters with the layer number (in LaTeX a
        name longer than one letter upright, as \\mathrm{Wq}^{2})."""
        l = self.index
        if array == "x":
            return f"a^{{{l - 1}}}" if latex else f"a{sup(l - 1)}"
        if array == "delta":
            return rf"\delta^{{{l}}}" if latex else f"δ{sup(l)}"
        if latex:
            name = array if len(array) == 1 else rf"\mathrm{{{latex_text(array)}}}"
            return f"{name}^{{{l}}}"
        return f"{array}{sup(l)}"

    def _terms_text(self) -> str:
        parts = []
        for term in self.layer.index_map.terms:
            body = _body_text(term.body, term.reads, self.names)
            if term.vars:
                red = "Σ" if term.kind == "sum" else "max"
                body = f"{red}_{{{','.join(f'{v}<{n}' for v, n in term.vars)}}} {body}"
            parts.append(body)
        return " + ".join(parts)

    def _terms_latex(self) -> str:
        parts = []
        for term in self.layer.index_map.terms:
            body = _body_latex(term.body, term.reads, self.names)
            if term.vars:
                red = r"\sum" if term.kind == "sum" else r"\max"
                body = f"{red}_{{{ranges_latex(term.vars)}}} {body}"
            parts.append(body)
        return " + ".join(parts)

    @property
    def forward(self) -> str:
        l, outs = self.index, ",".join(self.layer.index_map.out_vars)
        shape = "x".join(map(str, self.out_shape))
        act = f"a{sup(l)} = z{sup(l)}" if self.linear else \
            f"a{sup(l)} = σ(z{sup(l)}), σ(z) = {text(self.activation.expr)}   [{self.activation.name}]"
        return f"z{sup(l)}[{outs}] = {self._terms_text()}   ({self.layer.name} → {shape})      {act}"

    @property
    def forward_latex(self) -> str:
        l, outs = self.index, ",".join(self.layer.index_map.out_vars)
        shape = r"\times ".join(map(str, self.out_shape))
        act = r"a^{%d} = z^{%d}" % (l, l) if self.linear else \
            r"a^{%d} = \sigma(z^{%d}),\ \sigma(z) = %s" % (l, l, latex(self.activation.expr))
        return (r"z^{%d}_{%s} = %s, \quad %s\ \text{(%s} \to %s\text{)}"
                % (l, outs, self._terms_latex(), act, latex_text(self.layer.name), shape))

    @property
    def linear(self) -> bool:
        """No activation (σ the identity: a pool, say): a = z, δ = ∂C/∂a, nothing to say about σ′."""
        return self.activation.expr == z

    @property
    def markdown_forward(self) -> str:
        return f"${self.forward_latex}$ ({self.layer.name}" + ("" if self.linear else f", {self.activation.name}") + ")"

    @property
    def notes(self) -> tuple[str, ...]:
        forms = sorted({adj.form for adj in self.adjoints})
        return (() if self.linear else tuple(self.derivative.notes)) + (
            f"declared layer {self.layer.name}: every backward rule from solving the map's index equations over the "
            f"integers (forms: {', '.join(forms)}); guards become loop bounds.",) + (
            (self.pool_first,) if self.pool_first else ())

    def input_adjoints(self) -> list:
        return [adj for adj in self.adjoints if adj.target == "x"]

    def param_adjoints(self, name: str) -> list:
        return [adj for adj in self.adjoints if adj.target == name]

    def grad_in(self, back_text, back_latex):
        """∂C/∂aˡ⁻¹, by name: the input rows (``backward_rows``) state it."""
        l = self.index
        return f"∂C/∂a{sup(l - 1)}", r"\frac{\partial C}{\partial a^{%d}}" % (l - 1)

    def backward_rows(self, back_text, back_latex):
        l = self.index
        back, back_l = back_text or "g", back_latex or "g"
        deriv = factor_text(self.activation_derivative.xreplace({a: sp.Symbol(f"a{sup(l)}"),
                                                                  z: sp.Symbol(f"z{sup(l)}")}))
        deriv_l = factor_latex(self.activation_derivative.xreplace({a: sp.Symbol(f"a^{{{l}}}"),
                                                                     z: sp.Symbol(f"z^{{{l}}}")}))
        rows = [(f"BP2  {self.layer.name}", f"δ{sup(l)} = {back}   (no σ)", r"\delta^{%d} = %s" % (l, back_l))
                if self.linear else
                (f"BP2  {self.layer.name}", f"δ{sup(l)} = {back} ⊙ σ′(z{sup(l)}) = {back} ⊙ {deriv}",
                 r"\delta^{%d} = %s \odot \sigma'(z^{%d}) = %s \odot %s" % (l, back_l, l, back_l, deriv_l))]
        if l == 1:
            return rows  # the input needs no gradient
        for k, adj in enumerate(self.input_adjoints()):  # several reads of x: their contributions add up
            txt, ltx = adj.text(self.names), self._adjoint_latex(adj)
            if k and isinstance(adj, Adjoint):
                txt, ltx = txt.replace(" = ", " += ", 1), ltx.replace(" = ", r" = \dots + ", 1)
            rows.append((f"{self.layer.name} input", txt, ltx))
        return rows

    def _adjoint_latex(self, adj) -> str:
        """An adjoint in LaTeX: Σ's subscript with the extents (f<32,i<14,j<14), its guards with \\leq and \\mid."""
        if isinstance(adj, ScatterAdjoint):
            return adj.latex(self.names).replace("^*", r"^{\ast}")
        body = _factor_latex(adj.factor, adj.reads, self.names)
        delta = f"{self.names('delta', True)}_{{{','.join(latex_affine(e) for e in adj.out_index)}}}"
        prod = delta if body == "1" else f"{delta}\\, {body}"
        rhs = rf"\sum_{{{ranges_latex(adj.loops)}}} {prod}" if adj.loops else prod
        where = r",\ ".join(_guard_latex(g) for g in adj.guards)
        lhs = rf"\frac{{\partial C}}{{\partial {self.names(adj.target, True)}_{{{','.join(adj.target_vars)}}}}}"
        return f"{lhs} = {rhs}" + (rf" \quad ({where})" if where else "") + rf"\ \text{{[{adj.form}]}}"

    def _param_rules(self, weights: bool, style: str) -> str:
        rules = []
        for n, _ in self.layer.params:
            if (n in self.geometry.weights) != weights:
                continue
            for adj in self.param_adjoints(n):
                rules.append(adj.text(self.names) if style == "text" else self._adjoint_latex(adj))
        return ("      " if style == "text" else r", \quad ").join(rules)

    @property
    def bp3(self) -> str:
        return self._param_rules(False, "text")

    @property
    def bp4(self) -> str:
        return self._param_rules(True, "text")

    @property
    def param_rules_latex(self) -> tuple[str, str]:
        return self._param_rules(False, "latex") or r"\text{(no biases)}", self._param_rules(True, "latex") or \
            r"\text{(no weights)}"


def _body_text(body, reads, names) -> str:
    rep = {read_symbol(k): sp.Symbol(f"{names(r.array)}[{','.join(str(e) for e in r.index)}]")
           for k, r in enumerate(reads)}
    return text(body.xreplace(rep))


def _body_latex(body, reads, names) -> str:
    rep = {read_symbol(k): sp.Symbol(f"{names(r.array, True)}_{{{','.join(latex_affine(e) for e in r.index)}}}")
           for k, r in enumerate(reads)}
    return latex(body.xreplace(rep))


_factor_latex = _body_latex  # ∂body/∂read, its reads shown as the body's


def _guard_latex(g) -> str:
    e = latex_affine(g.expr)
    if g.kind == "divides":
        return rf"{g.mod} \mid {e}"
    if g.lo == g.hi:
        return f"{e} = {g.lo}"
    return rf"{g.lo} \leq {e} \leq {g.hi}"


def derive_adjoints(layer: Declared, geo: Geometry) -> tuple:
    """One adjoint per read of x or of a parameter (gathers for sums, the argmax scatter for a max)."""
    imap, shapes = layer.index_map, dict(layer.params) | {"x": geo.x_shape}
    out = []
    for ti, (term, ext) in enumerate(zip(imap.terms, geo.term_extents)):
        for k, r in enumerate(term.reads):
            make = scatter_adjoint if term.kind == "max" else adjoint
            out.append(make(term, k, imap.out_vars, ext, shapes[r.array], ti))
    return tuple(out)


@derive_layer.register
def _(layer: Declared, ctx: LayerContext) -> DeclaredEquations:
    if ctx.is_output:
        raise ValueError(f"layer {ctx.index}: a declared layer ({layer.name}) as the output layer is not supported; "
                         "end with sb.Dense(n, ...)")
    geo = layer.geometry(ctx.in_shape)
    deriv = activation_derivative(layer.activation)
    pool_first = _pool_first(layer, ctx)
    return DeclaredEquations(ctx.index, layer, ctx.in_shape, ctx.out_shape, geo, deriv, g * deriv.expr,
                             derive_adjoints(layer, geo), ctx.back_text, ctx.back_latex, pool_first=pool_first)


def _pools_x(layer) -> bool:
    """Is the map a max of x itself, z[o] = max(x[…] for …), with no activation (a max pool, any window,
    stride or padding)?"""
    imap = layer.index_map
    return (imap.is_max and imap.terms[0].body == read_symbol(0) and imap.terms[0].reads[0].array == "x"
            and layer.activation.expr == z)


def _declaration(layer, in_shape):
    """The declared map a layer is (a ``Declared`` itself, or a built-in's ``declaration``), else None."""
    if isinstance(layer, Declared):
        return layer
    return layer.declaration(in_shape) if hasattr(layer, "declaration") else None


def _pool_first(layer, ctx: LayerContext) -> str | None:
    """Why this max pool may run before the previous layer's σ, or None.  The previous layer must be a declared
    map that is not itself a max (a convolution, say) with an elementwise σ shown non-decreasing on the reals by
    sympy within the derivation budget (not shown in time: pooling stays after σ): then max σ(z) = σ(max z),
    and the kernels pool z and apply σ and σ′ to the pooled values only."""
    if ctx.index < 2 or not _pools_x(layer):
        return None
    prev = _declaration(ctx.network.layers[ctx.index - 1], ctx.network.shapes[ctx.index - 2])
    if prev is None or prev.index_map.is_max or prev.activation.vector or prev.activation.expr == z \
            or not _non_decreasing(prev.activation.expr):
        return None
    if as_dense(prev, prev.geometry(ctx.network.shapes[ctx.index - 2])) is not None:
        return None  # lowered as Dense, which applies its own σ: it cannot leave σ to the pool
    l, n_in, n_out = ctx.index, math.prod(ctx.in_shape), math.prod(ctx.out_shape)
    ties = ("σ is strictly increasing, so the maximum is at the same place" if _strictly_increasing(
        prev.activation.expr) else "σ is not strictly increasing: where a window's values tie in σ(z) on a flat "
        "part of σ, the gradient goes to the largest z (times σ′ there) instead of the first tie")
    return (f"pooling before σ: layer {l - 1}'s σ = {prev.activation.name} is non-decreasing (sympy: "
            f"is_increasing on the reals), so a{sup(l)} = max σ(z{sup(l - 1)}) = σ(max z{sup(l - 1)}): the kernels "
            f"pool z{sup(l - 1)} and apply σ and σ′ to the pooled values only ({n_out} of {n_in}); {ties}.")


@functools.lru_cache(maxsize=64)
def _non_decreasing(expr: sp.Expr) -> bool:
    value, done = run_optional(lambda: sp.is_increasing(expr, sp.S.Reals, z), share=0.25, seconds=2.0)
    return bool(done and value is True)


@functools.lru_cache(maxsize=64)
def _strictly_increasing(expr: sp.Expr) -> bool:
    value, done = run_optional(lambda: sp.is_strictly_increasing(expr, sp.S.Reals, z), share=0.25, seconds=2.0)
    return bool(done and value is True)


# ------------------------------------------------------------------------- unrolled, for the sum over paths


class UnrolledDeclared(UnrolledLayer):
    """The declared map unit by unit: z[o] = Σ over each term's positions of its body (reads of x outside it are
    0; a max is ``sympy.Max`` over the positions inside x), a = σ(z).  ``backprop`` evaluates the *derived*
    adjoints (gathers with their guards, the argmax scatter) element by element: the check compares them with
    the chain rule over every path."""

    def __init__(self, layer: Declared, index: int, inputs: list):
        self.layer, self.index = layer, index
        shape = tuple(getattr(inputs, "shape", (len(inputs),)))
        self.geo = layer.geometry(shape)
        self.inputs = list(inputs)
        self.params, self.arrays = [], {}
        for n, pshape in layer.params:
            syms = [unit_symbol(f"{n.lower()}{index}_{'_'.join(map(str, idx))}") for idx in itertools.product(
                *(range(s) for s in pshape))]
            self.arrays[n] = (syms, pshape)
            self.params += syms
        self.constants, self.hidden = [], []
        self.outputs = [unit_symbol(f"a{index}_{u}") for u in range(math.prod(self.geo.out))]

    def _read(self, r, env, inputs):
        idx = tuple(e.value(env) for e in r.index)
        if r.array == "x":
            shape = self.geo.x_shape
            if any(not 0 <= i < s for i, s in zip(idx, shape)):
                return None
            return inputs[_flat(idx, shape)]
        syms, shape = self.arrays[r.array]
        return syms[_flat(idx, shape)]

    def z_exprs(self, inputs) -> list:
        imap, geo = self.layer.index_map, self.geo
        out = []
        for o in itertools.product(*(range(n) for n in geo.out)):
            env_o = dict(zip(imap.out_vars, o))
            total = sp.Integer(0)
            for term in imap.terms:
                vals = []
                for pos in positions(term.vars) if term.vars else [{}]:
                    reads = [self._read(r, env_o | pos, inputs) for r in term.reads]
                    if term.kind == "max" and any(v is None for v in reads):
                        continue
                    reads = [sp.Integer(0) if v is None else v for v in reads]
                    vals.append(term.body.xreplace({read_symbol(k): v for k, v in enumerate(reads)}))
                total += sp.Max(*vals) if term.kind == "max" else sp.Add(*vals)
            out.append(total)
        return out

    def in_hidden(self, inputs):
        act = self.layer.activation.expr
        return [act.xreplace({z: e}) for e in self.z_exprs(inputs)]

    def random_values(self, rng, point: int = 0) -> dict:
        return {s: rng.gauss(0, 1) for s in self.params}

    def backprop(self, eq, g_, output):
        if g_ is None:
            raise ValueError(f"layer {self.index}: a declared layer cannot be the output layer")
        zs = self.z_exprs(self.inputs)
        sigma_p = eq.activation_derivative
        acts = self.in_hidden(self.inputs)
        delta = [gv * sigma_p.xreplace({z: zv, a: av}) for gv, zv, av in zip(g_, zs, acts)]
        grads = {s: sp.Integer(0) for s in self.params}
        g_in = [sp.Integer(0)] * len(self.inputs)
        out_shape, imap = self.geo.out, self.layer.index_map
        for adj in eq.adjoints:
            for t, value in self._adjoint_values(adj, delta, out_shape, imap):
                if adj.target == "x":
                    g_in[_flat(t, self.geo.x_shape)] += value
                else:
                    syms, shape = self.arrays[adj.target]
                    grads[syms[_flat(t, shape)]] += value
        return grads, g_in

    def _adjoint_values(self, adj, delta, out_shape, imap):
        """(target index, contribution) pairs of one derived adjoint, evaluated element by element."""
        if isinstance(adj, ScatterAdjoint):
            term = imap.terms[adj.term]
            for o in itertools.product(*(range(n) for n in out_shape)):
                env_o = dict(zip(imap.out_vars, o))
                cands = [(pos, [self._read(r, env_o | pos, self.inputs) for r in term.reads])
                         for pos in positions(term.vars)]
                cands = [(pos, vals) for pos, vals in cands if all(v is not None for v in vals)]
                bodies = [term.body.xreplace({read_symbol(k): v for k, v in enumerate(vals)}) for _, vals in cands]
                best = sp.Max(*bodies)
                for (pos, vals), body in zip(cands, bodies):
                    # the derived rule: δ to the maximum; at a random point one position attains it
                    hit = sp.Piecewise((1, sp.Eq(body, best)), (0, True))
                    t = tuple(e.value(env_o | pos) for e in adj.index)
                    factor = adj.factor.xreplace({read_symbol(k): v for k, v in enumerate(vals)})
                    yield t, delta[_flat(o, out_shape)] * factor * hit
            return
        for t in itertools.product(*(range(n) for n in adj.target_shape)):
            env_t = dict(zip(adj.target_vars, t))
            for pos in positions(adj.loops) if adj.loops else [{}]:
                env = env_t | pos
                if not all(_holds(gd, env) for gd in adj.guards):
                    continue
                o = tuple(e.value(env) for e in adj.out_index)
                vals = [self._read(r, env, self.inputs) for r in adj.reads]
                vals = [sp.Integer(0) if v is None else v for v in vals]
                factor = adj.factor.xreplace({read_symbol(k): v for k, v in enumerate(vals)})
                yield t, delta[_flat(o, out_shape)] * factor


def _holds(gd, env) -> bool:
    v = gd.expr.value(env)
    return v % gd.mod == 0 if gd.kind == "divides" else gd.lo <= v <= gd.hi


def _flat(idx, shape) -> int:
    k = 0
    for i, s in zip(idx, shape):
        k = k * s + i
    return k


@unroll_layer.register
def _(layer: Declared, index: int, inputs: list) -> UnrolledDeclared:
    return UnrolledDeclared(layer, index, inputs)


# The built-in convolution and pools are their declarations: derived, unrolled and checked as declared maps.
@derive_layer.register(Conv2D)
@derive_layer.register(MaxPool)
@derive_layer.register(AvgPool)
def _(layer, ctx: LayerContext) -> DeclaredEquations:
    return derive_layer(layer.declaration(ctx.in_shape), ctx)


@unroll_layer.register(Conv2D)
@unroll_layer.register(MaxPool)
@unroll_layer.register(AvgPool)
def _(layer, index: int, inputs: list) -> UnrolledDeclared:
    shape = tuple(getattr(inputs, "shape", (len(inputs),)))
    if len(shape) != 3:
        raise ValueError(f"layer {index}: unrolling a {type(layer).__name__} needs its input's (channels, height, "
                         f"width) layout (give the placeholders as symbp.derive.layers.Units), got shape {shape}")
    return unroll_layer(layer.declaration(shape), index, inputs)


__all__ = ["Adjoint", "Affine", "DeclaredEquations", "ScatterAdjoint", "UnrolledDeclared", "derive_adjoints"]
