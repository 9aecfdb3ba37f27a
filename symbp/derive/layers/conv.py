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

from symbp.derive.equations import factor_text, g, sup, text
from symbp.derive.indexed import IndexedRule, backward_rule
from symbp.derive.layers import LayerContext, UnrolledLayer, derive_layer, unit_symbol, unroll_layer
from symbp.derive.layers.dense import _derivative
from symbp.layers.conv import Conv2D
from symbp.symbols import a, z


def _i(name: str) -> sp.Symbol:
    return sp.Symbol(name, integer=True)


#: index symbols: output map f, rows i, columns j; input channel c; kernel offsets p, q; input position y, x
f, c, p, q, i, j = (_i(n) for n in ("f", "c", "p", "q", "i", "j"))
fo, co, po, qo, yy, xx = (_i(n) for n in ("f'", "c'", "p'", "q'", "y", "x"))
#: symbolic extents, substituted by the layer's sizes in the lowering
C, KH, KW, F, HO, WO = (sp.Symbol(n, integer=True, positive=True) for n in ("C", "KH", "KW", "F", "HO", "WO"))
w, a_in, b, delta = sp.IndexedBase("w"), sp.IndexedBase("a"), sp.IndexedBase("b"), sp.IndexedBase("delta")


@lru_cache(maxsize=1)
def conv_rules() -> tuple[sp.Expr, dict[str, IndexedRule]]:
    """The forward map and its three derived rules (the same for every convolution: sizes are symbols)."""
    zsum = sp.Sum(w[f, c, p, q] * a_in[c, i + p, j + q], (c, 0, C - 1), (p, 0, KH - 1), (q, 0, KW - 1)) + b[f]
    out = [(f, 0, F - 1), (i, 0, HO - 1), (j, 0, WO - 1)]
    ranges = {fo: (0, F - 1), co: (0, C - 1), po: (0, KH - 1), qo: (0, KW - 1)}
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
        return {C: cin, KH: kh, KW: kw, F: maps, HO: ho, WO: wo}

    @property
    def notes(self) -> tuple[str, ...]:
        return tuple(self.derivative.notes) + (
            "convolution: ∂C/∂w, ∂C/∂b and ∂C/∂a come from sympy.diff of the indexed sum (KroneckerDelta "
            "contraction); ∂C/∂a is a full convolution of δ with the flipped kernel, its range conditions are the "
            "loop bounds.",)

    def _sub(self, expr, l):
        return expr.xreplace({w: sp.IndexedBase(f"w{sup(l)}"), a_in: sp.IndexedBase(f"a{sup(l - 1)}"),
                              b: sp.IndexedBase(f"b{sup(l)}"), delta: sp.IndexedBase(f"δ{sup(l)}")})

    @property
    def forward(self) -> str:
        l = self.index
        (maps, ho, wo), (kh, kw) = self.out_shape, self.layer.kernel
        fwd = text(self._sub(self.forward_map, l)).replace("Sum(", "Σ(")
        return (f"z{sup(l)}[f,i,j] = {fwd}   (valid {kh}x{kw} cross-correlation → {maps}x{ho}x{wo})      "
                f"a{sup(l)} = σ(z{sup(l)}), σ(z) = {text(self.activation.expr)}   [{self.activation.name}]")

    @property
    def forward_latex(self) -> str:
        l = self.index
        return (r"z^{%d}_{f,i,j} = \sum_{c,p,q} w^{%d}_{f,c,p,q}\, a^{%d}_{c,i+p,j+q} + b^{%d}_f, \quad a^{%d} = "
                r"\sigma(z^{%d}),\ \sigma(z) = %s" % (l, l, l - 1, l, l, l, sp.latex(self.activation.expr)))

    @property
    def markdown_forward(self) -> str:
        """The forward row of ``Equations.markdown`` (the dense form z = w a + b does not apply)."""
        return f"${self.forward_latex}$ ({self.activation.name})"

    def grad_in(self, back_text, back_latex):
        l = self.index
        r = self.rules["input"]
        return (f"(Σ_{{f,p,q}} δ{sup(l)}[f,y−p,x−q]·w{sup(l)}[f,c,p,q])",
                r"(\sum_{f,p,q} \delta^{%d}_{f,y-p,x-q} w^{%d}_{f,c,p,q})" % (l, l)) if r else (None, None)

    def _sub_latex(self, expr):
        l = self.index
        return expr.xreplace({w: sp.IndexedBase(f"w^{{{l}}}"), a_in: sp.IndexedBase(f"a^{{{l - 1}}}"),
                              b: sp.IndexedBase(f"b^{{{l}}}"), delta: sp.IndexedBase(f"\\delta^{{{l}}}")})

    def _rule_latex(self, name: str, what: str) -> str:
        """∂C/∂(what) = the derived sum, its range conditions after it, in LaTeX."""
        r = self.rules[name]
        cond = ", ".join(f"{sp.latex(lo)} \\le {sp.latex(e)} \\le {sp.latex(hi)}" for e, lo, hi in r.conditions)
        return (r"\frac{\partial C}{\partial %s} = %s" % (what, sp.latex(self._sub_latex(r.as_sum())))
                + (r" \quad (%s)" % cond if cond else ""))

    @property
    def param_rules_latex(self) -> tuple[str, str]:
        """(BP3, BP4) in LaTeX, for ``Equations.latex``/``markdown`` (the dense forms do not apply)."""
        l = self.index
        return (self._rule_latex("b", f"b^{{{l}}}_{{f'}}"),
                self._rule_latex("W", f"w^{{{l}}}_{{f',c',p',q'}}") + r"\ \text{(valid correlation)}")

    def _rule_text(self, name: str, what: str) -> str:
        r = self.rules[name]
        return f"∂C/∂{what} = " + self._sub(r.as_sum(), self.index).__str__().replace("*", "·") + (
            "".join(f", {lo} ≤ {e} ≤ {hi}" for e, lo, hi in r.conditions).replace(", ", "  where ", 1))

    def backward_rows(self, back_text, back_latex):
        l = self.index
        back = back_text or "g"
        deriv = factor_text(self.activation_derivative.xreplace({a: sp.Symbol(f"a{sup(l)}"),
                                                                  z: sp.Symbol(f"z{sup(l)}")}))
        rows = [("BP2  conv error", f"δ{sup(l)} = {back} ⊙ σ′(z{sup(l)}) = {back} ⊙ {deriv}",
                 r"\delta^{%d} = %s \odot \sigma'(z^{%d})" % (l, back_latex or "g", l))]
        if l == 1:
            return rows  # the input needs no gradient
        return rows + [("conv input", self._rule_text("input", f"a{sup(l - 1)}[c′,y,x]") + "   (full convolution, "
                 "flipped kernel)", self._rule_latex("input", f"a^{{{l - 1}}}_{{c',y,x}}")
                 + r"\ \text{(full convolution, flipped kernel)}")]

    @property
    def bp3(self) -> str:
        return self._rule_text("b", f"b{sup(self.index)}[f′]")

    @property
    def bp4(self) -> str:
        return self._rule_text("W", f"w{sup(self.index)}[f′,c′,p′,q′]") + "   (valid correlation)"


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
