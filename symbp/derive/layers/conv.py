"""The convolutional layer's backward rules, derived from its indexed sum.

Takes: a ``Conv2D`` layer and its context.  Gives: ``ConvEquations``: the forward map
z[f,i,j] = Σ_{c,p,q} w[f,c,p,q]·a[c,i+p,j+q] + b[f] as a sympy ``Sum`` over ``Indexed`` objects, and from
``sympy.diff`` of it (``symbp.derive.indexed``): ∂C/∂w as a valid correlation of the input with δ, ∂C/∂b as Σᵢⱼ δ,
and ∂C/∂a (the input) as a full convolution of δ with the flipped kernel, whose range conditions become loop
bounds; δ = g ⊙ σ′(z) elementwise, with σ′ from ``symbp.derive.calculus`` as for a dense layer.  For the
sum-over-paths check (``symbp.derive.check``): ``UnrolledConv``, the indexed sum written out unit by unit, and
the three derived rules evaluated index by index on those units.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache

import sympy as sp

from symbp.derive.equations import g
from symbp.derive.indexed import IndexedRule, backward_rule
from symbp.derive.layers import LayerContext, UnrolledLayer, derive_layer, unit_symbol, unroll_layer
from symbp.derive.layers.dense import _derivative
from symbp.derive.render import factor_latex, factor_text, index_latex, index_text, latex, sup, text
from symbp.layers.conv import Conv2D
from symbp.symbols import a, z


def _i(name: str) -> sp.Symbol:
    return sp.Symbol(name, integer=True)


#: index symbols: output map f, rows i, columns j; input channel c; kernel offsets p, q; input position y, x
f, c, p, q, i, j = (_i(n) for n in ("f", "c", "p", "q", "i", "j"))
fo, co, po, qo, yy, xx = (_i(n) for n in ("f'", "c'", "p'", "q'", "y", "x"))
#: symbolic extents, substituted by the layer's sizes in the lowering
#: (shown with the layer's sizes substituted; the channel count is not called C, the cost's name)
CIN, KH, KW, F, HO, WO = (sp.Symbol(n, integer=True, positive=True)
                          for n in ("C_in", "KH", "KW", "F", "HO", "WO"))
w, a_in, b, delta = sp.IndexedBase("w"), sp.IndexedBase("a"), sp.IndexedBase("b"), sp.IndexedBase("delta")


@lru_cache(maxsize=1)
def conv_rules() -> tuple[sp.Expr, dict[str, IndexedRule]]:
    """The forward map and its three derived rules (the same for every convolution: sizes are symbols)."""
    zsum = sp.Sum(w[f, c, p, q] * a_in[c, i + p, j + q], (c, 0, CIN - 1), (p, 0, KH - 1), (q, 0, KW - 1)) + b[f]
    out = [(f, 0, F - 1), (i, 0, HO - 1), (j, 0, WO - 1)]
    ranges = {fo: (0, F - 1), co: (0, CIN - 1), po: (0, KH - 1), qo: (0, KW - 1)}
    rules = {
        "W": backward_rule(zsum, (f, i, j), out, delta, w[fo, co, po, qo], ranges),
        "b": backward_rule(zsum, (f, i, j), out, delta, b[fo], ranges),
        "input": backward_rule(zsum, (f, i, j), out, delta, a_in[co, yy, xx], ranges),
    }
    return zsum, rules


@dataclass(frozen=True)
class ConvEquations:
    index: int
    layer: Conv2D
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    derivative: object  # ActivationDerivative
    delta: sp.Expr  # δ = g·σ′ elementwise
    forward_map: sp.Expr
    rules: dict
    back_text: str | None = None
    back_latex: str | None = None
    is_output: bool = False
    has_params: bool = True

    @property
    def activation(self):
        return self.layer.activation

    @property
    def activation_derivative(self):
        return self.derivative.expr

    @property
    def sizes(self) -> dict:
        (cin, _, _), (maps, ho, wo), (kh, kw) = self.in_shape, self.out_shape, self.layer.kernel
        return {CIN: cin, KH: kh, KW: kw, F: maps, HO: ho, WO: wo}

    @property
    def notes(self) -> tuple[str, ...]:
        return tuple(self.derivative.notes) + (
            "convolution: ∂C/∂w, ∂C/∂b and ∂C/∂a come from sympy.diff of the indexed sum (KroneckerDelta "
            "contraction); ∂C/∂a is a full convolution of δ with the flipped kernel, its range conditions are the "
            "loop bounds.",)

    # ------------------------------------------------------------------ renderings (text and LaTeX)
    # Every extent is substituted by the layer's size (Σ_{c<20,p<5,q<5}), range conditions are printed after
    # "where", and the rules' target indices f′, c′, p′, q′, x are shown as f, c, p, q, u (the sums they came
    # from are contracted away; x is the network's input): the notation of the declared layers.

    def _names(self, style: str) -> dict:
        l = self.index
        if style == "latex":
            return {w: f"w^{{{l}}}", a_in: f"a^{{{l - 1}}}", b: f"b^{{{l}}}", delta: rf"\delta^{{{l}}}"}
        return {w: f"w{sup(l)}", a_in: f"a{sup(l - 1)}", b: f"b{sup(l)}", delta: f"δ{sup(l)}"}

    def _element(self, el: sp.Indexed, style: str) -> str:
        name = self._names(style)[el.base]
        if style == "latex":
            return f"{name}_{{{','.join(index_latex(_shown(e)) for e in el.indices)}}}"
        return f"{name}[{','.join(index_text(_shown(e)) for e in el.indices)}]"

    def _product(self, term: sp.Expr, style: str) -> str:
        """A derived term (a product of array elements) with δ first, then w, then a."""
        order = {delta: 0, w: 1, a_in: 2, b: 3}
        factors = sorted(sp.Mul.make_args(term), key=lambda e: order.get(getattr(e, "base", None), 4))
        parts = [self._element(e, style) if isinstance(e, sp.Indexed) else
                 (factor_latex(e) if style == "latex" else factor_text(e)) for e in factors]
        return (r"\, " if style == "latex" else "·").join(parts)

    def _bounds(self, sums, style: str) -> str:
        """Σ's subscript: each summed index below its extent (c<20,p<5,q<5)."""
        le = r" \leq " if style == "latex" else "≤"
        out = []
        for v, lo, hi in sums:
            lo, hi = (int(sp.sympify(e).xreplace(self.sizes)) for e in (lo, hi))
            out.append(f"{_shown(v)}<{hi + 1}" if lo == 0 else f"{lo}{le}{_shown(v)}<{hi + 1}")
        return ",".join(out)

    def _conditions(self, rule, style: str) -> str:
        le = r" \leq " if style == "latex" else " ≤ "
        show = index_latex if style == "latex" else index_text
        size = self.sizes
        return (r",\ " if style == "latex" else "; ").join(
            f"{int(sp.sympify(lo).xreplace(size))}{le}{show(_shown(e))}{le}{int(sp.sympify(hi).xreplace(size))}"
            for e, lo, hi in sorted(rule.conditions, key=lambda c: index_text(_shown(c[0]))[0] == "u"))

    def _sum(self, term, sums, style: str) -> str:
        body = self._product(term, style)
        if not sums:
            return body
        bounds = self._bounds(sums, style)
        return (r"\sum_{%s} %s" % (bounds, body)) if style == "latex" else f"Σ_{{{bounds}}} {body}"

    def _rule(self, name: str, style: str, tag: str = "") -> str:
        """∂C/∂target = the derived sum, where its range conditions."""
        r = self.rules[name]
        rhs = self._sum(r.term, r.sums, style)
        cond = self._conditions(r, style)
        if style == "latex":
            out = r"\frac{\partial C}{\partial %s} = %s" % (self._element(r.target, "latex"), rhs)
            out += r" \quad (%s)" % cond if cond else ""
            return out + (r"\ \text{(%s)}" % tag if tag else "")
        out = f"∂C/∂{self._element(r.target, 'text')} = {rhs}" + (f"   where {cond}" if cond else "")
        return out + (f"   ({tag})" if tag else "")

    def _forward_sum(self, style: str) -> str:
        total = self.forward_map
        sums = [t for t in sp.Add.make_args(total) if isinstance(t, sp.Sum)]
        rest = [t for t in sp.Add.make_args(total) if not isinstance(t, sp.Sum)]
        parts = [self._sum(s.function, s.limits, style) for s in sums]
        parts += [self._element(t, style) if isinstance(t, sp.Indexed) else text(t) for t in rest]
        return " + ".join(parts)

    def _shape(self, style: str) -> tuple[str, str]:
        (maps, ho, wo), (kh, kw) = self.out_shape, self.layer.kernel
        if style == "latex":
            return rf"{kh}\times {kw}", rf"{maps}\times {ho}\times {wo}"
        return f"{kh}x{kw}", f"{maps}x{ho}x{wo}"

    @property
    def forward(self) -> str:
        l = self.index
        kernel, out = self._shape("text")
        return (f"z{sup(l)}[f,i,j] = {self._forward_sum('text')}   (valid {kernel} cross-correlation → {out})      "
                f"a{sup(l)} = σ(z{sup(l)}), σ(z) = {text(self.activation.expr)}   [{self.activation.name}]")

    @property
    def forward_latex(self) -> str:
        l = self.index
        kernel, out = self._shape("latex")
        return (r"z^{%d}_{f,i,j} = %s, \quad a^{%d} = \sigma(z^{%d}),\ \sigma(z) = %s\ "
                r"\text{(valid } %s \text{ cross-correlation} \to %s\text{)}"
                % (l, self._forward_sum("latex"), l, l, latex(self.activation.expr), kernel, out))

    @property
    def markdown_forward(self) -> str:
        """The forward row of ``Equations.markdown`` (the dense form z = w a + b does not apply)."""
        return f"${self.forward_latex}$ ({self.activation.name})"

    def grad_in(self, back_text, back_latex):
        """∂C/∂aˡ⁻¹, by name: the input rule's row (``backward_rows``) states it."""
        l = self.index
        return (f"∂C/∂a{sup(l - 1)}", r"\frac{\partial C}{\partial a^{%d}}" % (l - 1)) if self.rules["input"] \
            else (None, None)

    @property
    def param_rules_latex(self) -> tuple[str, str]:
        """(BP3, BP4) in LaTeX, for ``Equations.latex``/``markdown`` (the dense forms do not apply)."""
        return self._rule("b", "latex"), self._rule("W", "latex", "valid correlation")

    def backward_rows(self, back_text, back_latex):
        l = self.index
        back, back_l = back_text or "g", back_latex or "g"
        sym = {a: sp.Symbol(f"a{sup(l)}"), z: sp.Symbol(f"z{sup(l)}")}
        sym_l = {a: sp.Symbol(f"a^{{{l}}}"), z: sp.Symbol(f"z^{{{l}}}")}
        deriv = factor_text(self.activation_derivative.xreplace(sym))
        deriv_l = factor_latex(self.activation_derivative.xreplace(sym_l))
        rows = [("BP2  conv error", f"δ{sup(l)} = {back} ⊙ σ′(z{sup(l)}) = {back} ⊙ {deriv}",
                 r"\delta^{%d} = %s \odot \sigma'(z^{%d}) = %s \odot %s" % (l, back_l, l, back_l, deriv_l))]
        if l == 1:
            return rows  # the input needs no gradient
        tag = "full convolution, flipped kernel"
        return rows + [("conv input", self._rule("input", "text", tag), self._rule("input", "latex", tag))]

    @property
    def bp3(self) -> str:
        return self._rule("b", "text")

    @property
    def bp4(self) -> str:
        return self._rule("W", "text", "valid correlation")


#: how the rules' index symbols are shown (the target's primed indices plainly; x, the input, as u)
_SHOWN = {fo: sp.Symbol("f"), co: sp.Symbol("c"), po: sp.Symbol("p"), qo: sp.Symbol("q"), yy: sp.Symbol("y"),
          xx: sp.Symbol("u")}


def _shown(e):
    return sp.sympify(e).xreplace(_SHOWN)


@derive_layer.register
def _(layer: Conv2D, ctx: LayerContext) -> ConvEquations:
    if not layer.plain:  # stride, padding, dilation or groups: the layer is its declaration
        return derive_layer(layer.declaration(ctx.in_shape), ctx)
    if ctx.is_output:
        raise ValueError(f"layer {ctx.index}: a Conv2D output layer is not supported; end with sb.Dense(n, ...)")
    deriv = _derivative(layer.activation)
    fwd, rules = conv_rules()
    return ConvEquations(ctx.index, layer, ctx.in_shape, ctx.out_shape, deriv, g * deriv.expr, fwd, rules,
                         ctx.back_text, ctx.back_latex)


# ------------------------------------------------------------------------- unrolled, for the sum over paths


def _image_shape(inputs, index: int, kind: str) -> tuple[int, int, int]:
    shape = tuple(getattr(inputs, "shape", ()))
    if len(shape) != 3 or shape[0] * shape[1] * shape[2] != len(inputs):
        raise ValueError(f"layer {index}: unrolling a {kind} needs its input's (channels, height, width) layout "
                         f"(give the placeholders as symbp.derive.layers.Units), got shape {shape or None}")
    return shape


def _names(*extents) -> str:
    """Index digits run together (w1_0101) while every extent is ≤ 10, else separated (w1_0_1_10_1)."""
    return "" if max(extents) <= 10 else "_"


def _apply_rule(rule: IndexedRule, index: int, free: dict, sizes: dict, arrays: dict) -> sp.Expr:
    """An ``IndexedRule`` at concrete values ``free`` of its target's indices: Σ over its ``sums`` (bounds with the
    layer's ``sizes``) of its ``term`` where every range condition holds, each ``Indexed`` read from ``arrays``
    (IndexedBase → (flat list, shape)).  A read outside its array (a missing range condition) is an error."""
    env0 = dict(sizes) | free

    def value(e, env) -> int:
        return int(sp.sympify(e).xreplace(env))

    def reads(term, env):
        rep = {}
        for el in term.atoms(sp.Indexed):
            flat, shape = arrays[el.base]
            idx = [value(e, env) for e in el.indices]
            if len(idx) != len(shape) or not all(0 <= k < n for k, n in zip(idx, shape)):
                raise ValueError(f"layer {index}: the rule {rule.text()} reads {el.base}{idx} outside its "
                                 f"{shape} array (a missing range condition)")
            pos = 0
            for k, n in zip(idx, shape):
                pos = pos * n + k
            rep[el] = flat[pos]
        return term.xreplace(rep)

    def total(k: int, env: dict) -> sp.Expr:
        if k == len(rule.sums):
            if all(value(lo, env) <= value(e, env) <= value(hi, env) for e, lo, hi in rule.conditions):
                return reads(rule.term, env)
            return sp.Integer(0)
        v, lo, hi = rule.sums[k]
        return sp.Add(*(total(k + 1, env | {v: sp.Integer(t)})
                        for t in range(value(lo, env), value(hi, env) + 1)))

    return total(0, env0)


class UnrolledConv(UnrolledLayer):
    """A convolution unit by unit: z[f,i,j] = Σ_{c,p,q} w[f,c,p,q]·x[c,i+p,j+q] + b[f], a = σ(z), every image
    flattened in (channel, row, column) order.  Weights ``w{l}_{f}{c}{p}{q}`` (model order: W of shape
    (maps, C, kh, kw), then b), biases ``b{l}_{f}``, placeholders ``a{l}_{u}`` and weighted inputs ``z{l}_{u}``
    (u the flat output unit).  A bias is shared by all units of its map, so there is no bijection b ↔ z:
    ``eliminate`` is empty and the "z" form keeps b (an identity with the z independent still holds at their
    forward values, so a symbolic proof stays a proof).  ``backprop`` applies the equations object's derived
    ``IndexedRule``s (``eq.rules``) and σ′ (``eq.activation_derivative``) to these symbols."""

    def __init__(self, layer: Conv2D, index: int, inputs: list):
        self.layer, self.index = layer, index
        self.in_shape = _image_shape(inputs, index, "Conv2D")
        cin = self.in_shape[0]
        self.inputs = list(inputs)
        kh, kw = layer.kernel
        self.out_shape = maps, ho, wo = layer.out_shape(self.in_shape)
        self.activation = layer.activation
        sep = _names(maps, cin, kh, kw)
        self.w = [[[[unit_symbol(f"w{index}_" + sep.join(map(str, (f_, c_, p_, q_)))) for q_ in range(kw)]
                    for p_ in range(kh)] for c_ in range(cin)] for f_ in range(maps)]
        self.b = [unit_symbol(f"b{index}_{f_}") for f_ in range(maps)]
        self.params = [w for fs in self.w for cs in fs for ps in cs for w in ps] + self.b  # W in C order, then b
        self.constants = []
        n = maps * ho * wo
        self.outputs = [unit_symbol(f"a{index}_{u}") for u in range(n)]
        self.hidden = [unit_symbol(f"z{index}_{u}") for u in range(n)]

    def _in(self, inputs, c_, y, x):
        _, h, wd = self.in_shape
        return inputs[(c_ * h + y) * wd + x]

    def hidden_exprs(self, inputs):
        (cin, _, _), (maps, ho, wo), (kh, kw) = self.in_shape, self.out_shape, self.layer.kernel
        return [sp.Add(*(self.w[f_][c_][p_][q_] * self._in(inputs, c_, i_ + p_, j_ + q_)
                         for c_ in range(cin) for p_ in range(kh) for q_ in range(kw))) + self.b[f_]
                for f_ in range(maps) for i_ in range(ho) for j_ in range(wo)]

    def in_hidden(self, inputs):
        return [self.activation.expr.xreplace({z: zu}) for zu in self.hidden]

    def random_values(self, rng, point=0):
        env = {w: rng.uniform(-1.2, 1.2) for w in self.params[:-len(self.b)]}
        env.update({b_: rng.uniform(-0.8, 0.8) for b_ in self.b})
        return env

    def backprop(self, eq, g, output):
        """δ = g ⊙ σ′ (``eq.activation_derivative`` per unit), then the derived rules of ``eq.rules``: ∂C/∂w (a
        valid correlation), ∂C/∂b (Σᵢⱼ δ) and ∂C/∂aˡ⁻¹ (a full convolution with the flipped kernel), each
        evaluated at every index of its target with its range conditions."""
        if g is None:
            raise ValueError(f"layer {self.index}: a Conv2D cannot be the output layer")
        sigma_prime = eq.activation_derivative
        A, Z = self.outputs, self.hidden
        delta_ = [g[u] * sigma_prime.xreplace({a: A[u], z: Z[u]}) for u in range(len(A))]
        kh, kw = self.layer.kernel
        (maps, ho, wo), cin = self.out_shape, self.in_shape[0]
        arrays = {delta: (delta_, (maps, ho, wo)), a_in: (self.inputs, self.in_shape), b: (self.b, (maps,)),
                  w: ([s for fs in self.w for cs in fs for ps in cs for s in ps], (maps, cin, kh, kw))}
        sizes = eq.sizes

        def at(name, shape):
            rule = eq.rules[name]
            free = rule.target.indices
            return [_apply_rule(rule, self.index, dict(zip(free, map(sp.Integer, idx))), sizes, arrays)
                    for idx in _ndindex(shape)]

        grads = dict(zip(self.params[:-len(self.b)], at("W", (maps, cin, kh, kw))))  # BP4
        grads.update(zip(self.b, at("b", (maps,))))  # BP3
        return grads, at("input", self.in_shape)


def _ndindex(shape):
    return itertools.product(*(range(n) for n in shape))


@unroll_layer.register
def _(layer: Conv2D, index: int, inputs: list) -> UnrolledConv:
    if not layer.plain:
        return unroll_layer(layer.declaration(tuple(getattr(inputs, "shape", (len(inputs),)))), index, inputs)
    return UnrolledConv(layer, index, inputs)
