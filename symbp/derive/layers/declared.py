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

import itertools
import math
from dataclasses import dataclass

import sympy as sp

from symbp.derive.adjoint import Adjoint, ScatterAdjoint, _lx, adjoint, scatter_adjoint
from symbp.derive.equations import g
from symbp.derive.layers import LayerContext, UnrolledLayer, derive_layer, unit_symbol, unroll_layer
from symbp.derive.layers.dense import _derivative
from symbp.derive.render import factor_latex, factor_text, latex, latex_text, ranges_latex, sup, text
from symbp.layers.declared import Declared, Geometry
from symbp.layers.index_map import Affine, positions, read_symbol
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
    #: why the previous (convolution-shaped) layer's σ may follow this window max (as ``PoolEquations``), else None
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
        return (f"z{sup(l)}[{outs}] = {self._terms_text()}   ({self.layer.name} → {shape})      "
                f"a{sup(l)} = σ(z{sup(l)}), σ(z) = {text(self.activation.expr)}   [{self.activation.name}]")

    @property
    def forward_latex(self) -> str:
        l, outs = self.index, ",".join(self.layer.index_map.out_vars)
        shape = r"\times ".join(map(str, self.out_shape))
        return (r"z^{%d}_{%s} = %s, \quad a^{%d} = \sigma(z^{%d}),\ \sigma(z) = %s\ \text{(%s} \to %s\text{)}"
                % (l, outs, self._terms_latex(), l, l, latex(self.activation.expr), latex_text(self.layer.name),
                   shape))

    @property
    def markdown_forward(self) -> str:
        return f"${self.forward_latex}$ ({self.layer.name}, {self.activation.name})"

    @property
    def notes(self) -> tuple[str, ...]:
        forms = sorted({adj.form for adj in self.adjoints})
        return tuple(self.derivative.notes) + (
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
        rows = [(f"BP2  {self.layer.name}", f"δ{sup(l)} = {back} ⊙ σ′(z{sup(l)}) = {back} ⊙ {deriv}",
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
        delta = f"{self.names('delta', True)}_{{{','.join(_lx(e) for e in adj.out_index)}}}"
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
    rep = {read_symbol(k): sp.Symbol(f"{names(r.array, True)}_{{{','.join(_lx(e) for e in r.index)}}}")
           for k, r in enumerate(reads)}
    return latex(body.xreplace(rep))


_factor_latex = _body_latex  # ∂body/∂read, its reads shown as the body's


def _guard_latex(g) -> str:
    e = _lx(g.expr)
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
    deriv = _derivative(layer.activation)
    from symbp.derive.layers.pool import _pool_first
    from symbp.layers.recognise import as_window_max

    pool_first = _pool_first(ctx) if as_window_max(layer, geo) is not None and ctx.index > 1 else None
    return DeclaredEquations(ctx.index, layer, ctx.in_shape, ctx.out_shape, geo, deriv, g * deriv.expr,
                             derive_adjoints(layer, geo), ctx.back_text, ctx.back_latex, pool_first=pool_first)


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


__all__ = ["Adjoint", "Affine", "DeclaredEquations", "ScatterAdjoint", "UnrolledDeclared", "derive_adjoints"]
