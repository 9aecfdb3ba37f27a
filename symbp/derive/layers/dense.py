"""The dense layer's backward rules: BP1 (as the output layer), BP2, BP3, BP4.

Takes: a ``Dense`` layer and its context.  Gives: ``LayerEquations`` — σ′ (in a where a valid cheaper form
exists, ``symbp.derive.calculus``), the error δˡ as an elementwise expression in ``a``, ``y``, ``z`` and ``g``
(∂C/∂aˡ propagated back from the next layer: (wˡ⁺¹)ᵀδˡ⁺¹ when that is a dense layer) plus ``S`` for a softmax
output whose sum does not cancel, and the renderings of all four equations.  For the sum-over-paths check
(``symbp.derive.check``): ``UnrolledDense``, zⱼ = Σₖ wⱼₖ aₖ + bⱼ and aⱼ = σ(zⱼ) (or softmax) unit by unit, and
BP1–BP4 applied to it from the layer's ``activation_derivative`` and the network's ``output_error``.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from symbp.activations import Activation
from symbp.derive.calculus import ActivationDerivative, OutputError, S, activation_derivative, g, output_error
from symbp.derive.layers import LayerContext, OutputErrorAt, UnrolledLayer, derive_layer, unit_symbol, unroll_layer
from symbp.layers.dense import Dense
from symbp.render import factor_latex, factor_text, latex, sup, text
from symbp.symbols import a, y, z


@dataclass(frozen=True)
class LayerEquations:
    """The equations of dense layer ``index`` (1-based)."""

    index: int
    n_in: int
    n_out: int
    activation: Activation
    derivative: ActivationDerivative | None  # None for a normalised (softmax) output
    delta: sp.Expr  # δˡ as an elementwise expression (BP1 for the output layer, BP2 otherwise)
    is_output: bool
    notes: tuple[str, ...]
    back_text: str | None = None  # g as text: ∂C/∂aˡ from the next layer, e.g. ((w³)ᵀ δ³)
    back_latex: str | None = None
    output: OutputError | None = None  # the output layer's δᴸ derivation
    layer: Dense | None = None
    has_params = True

    @property
    def in_shape(self) -> tuple[int, ...]:
        return (self.n_in,)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return (self.n_out,)

    @property
    def activation_derivative(self) -> sp.Expr | None:
        """σ′ of this layer, in ``a`` when a valid cheaper form exists, otherwise in ``z``."""
        return None if self.derivative is None else self.derivative.expr

    @property
    def needs_z(self) -> bool:
        """Does the backward pass need zˡ stored (σ′ not expressible in a)?"""
        return z in self.delta.free_symbols

    def _symbols(self, style: str) -> dict:
        l = self.index
        if style == "latex":
            back = self.back_latex or rf"((w^{{{l + 1}}})^T \delta^{{{l + 1}}})"
            return {a: sp.Symbol(f"a^{{{l}}}"), z: sp.Symbol(f"z^{{{l}}}"), g: sp.Symbol(back),
                    S: sp.Symbol(f"S^{{{l}}}")}
        back = self.back_text or f"((w{sup(l + 1)})ᵀ δ{sup(l + 1)})"
        return {a: sp.Symbol(f"a{sup(l)}"), z: sp.Symbol(f"z{sup(l)}"), g: sp.Symbol(back), S: sp.Symbol(f"S{sup(l)}")}

    @property
    def bp1(self) -> str:
        return self._delta_text() if self.is_output else ""

    @property
    def bp2(self) -> str:
        return "" if self.is_output else self._delta_text()

    @property
    def bp3(self) -> str:
        l = sup(self.index)
        return f"∂C/∂b{l}ⱼ = δ{l}ⱼ"

    @property
    def bp4(self) -> str:
        l, p = sup(self.index), sup(self.index - 1)
        return f"∂C/∂w{l}ⱼₖ = a{p}ₖ δ{l}ⱼ"

    @property
    def forward(self) -> str:
        l, p = sup(self.index), sup(self.index - 1)
        if self.activation.vector:
            act = f"a{l}ⱼ = exp(z{l}ⱼ) / Σₖ exp(z{l}ₖ)   [{self.activation.name}]"
        else:
            act = f"a{l} = σ(z{l}), σ(z) = {text(self.activation.expr)}   [{self.activation.name}]"
        return f"z{l} = w{l} a{p} + b{l}      {act}"

    @property
    def forward_latex(self) -> str:
        l, p = self.index, self.index - 1
        sigma = (r"\mathrm{softmax}(z^{%d})" % l if self.activation.vector
                 else r"\sigma(z^{%d}),\ \sigma(z) = %s" % (l, latex(self.activation.expr)))
        return r"z^{%d} = w^{%d} a^{%d} + b^{%d}, \quad a^{%d} = %s" % (l, l, p, l, l, sigma)

    def grad_in(self, back_text: str, back_latex: str) -> tuple[str, str]:
        """∂C/∂aˡ⁻¹ = (wˡ)ᵀ δˡ (BP2's first factor for the layer before)."""
        l = self.index
        return f"((w{sup(l)})ᵀ δ{sup(l)})", rf"((w^{{{l}}})^T \delta^{{{l}}})"

    def backward_rows(self, back_text: str, back_latex: str) -> list[tuple[str, str, str]]:
        if self.is_output:
            return [("BP1  output error", self.bp1, self._delta_latex())]
        return [("BP2  hidden error", self.bp2, self._delta_latex())]

    def _delta_text(self) -> str:
        l = sup(self.index)
        back = self.back_text or f"((w{sup(self.index + 1)})ᵀ δ{sup(self.index + 1)})"
        general = f"∇ₐC ⊙ σ′(z{l})" if self.is_output else f"{back} ⊙ σ′(z{l})"
        if self.is_output and self.activation.vector:
            general = f"(∂a{l}/∂z{l})ᵀ ∇ₐC"
        if self.is_output:
            return f"δ{l} = {general} = {text(self.delta.xreplace(self._symbols('text')))}"
        deriv = factor_text(self.activation_derivative.xreplace(self._symbols("text")))
        return f"δ{l} = {general} = {back} ⊙ {deriv}"

    def _delta_latex(self) -> str:
        l = self.index
        if self.is_output:
            general = (r"(\partial a^{%d}/\partial z^{%d})^T \nabla_a C" % (l, l) if self.activation.vector
                       else r"\nabla_a C \odot \sigma'(z^{%d})" % l)
        else:
            back = self.back_latex or r"((w^{%d})^T \delta^{%d})" % (l + 1, l + 1)
            deriv = factor_latex(self.activation_derivative.xreplace(self._symbols("latex")))
            return r"\delta^{%d} = %s \odot \sigma'(z^{%d}) = %s \odot %s" % (l, back, l, back, deriv)
        return r"\delta^{%d} = %s = %s" % (l, general, latex(self.delta.xreplace(self._symbols("latex"))))


@derive_layer.register
def _(layer: Dense, ctx: LayerContext) -> LayerEquations:
    net, l = ctx.network, ctx.index
    act = layer.activation
    n_in, n_out = ctx.in_shape[0] if len(ctx.in_shape) == 1 else int(sp.prod(ctx.in_shape)), ctx.out_shape[0]
    deriv = None if act.vector else activation_derivative(act)  # cached by calculus, per budget
    notes = list(deriv.notes) if deriv is not None else []
    out = None
    if ctx.is_output:
        try:
            out = output_error(act, net.cost, n_out)
        except ValueError as exc:
            raise ValueError(f"layer {l} ({act.name}) with cost {net.cost.name!r}: {exc}") from None
        delta = out.expr
        notes += list(out.notes)
        if delta.free_symbols - {a, y, z, S}:
            raise ValueError(f"output error has unexpected symbols: {delta}")  # pragma: no cover
    else:
        delta = g * deriv.expr
    return LayerEquations(l, n_in, n_out, act, deriv, delta, ctx.is_output, tuple(notes), ctx.back_text,
                         ctx.back_latex, out, layer)


# ------------------------------------------------------------------------- unrolled, for the sum over paths


class UnrolledDense(UnrolledLayer):
    """A dense layer unit by unit: ``w{l}_{j}{k}``, ``b{l}_{j}``, placeholders ``a{l}_{j}``, weighted inputs
    ``z{l}_{j}`` (the "z" form's independent symbols)."""

    def __init__(self, layer: Dense, index: int, inputs: list):
        self.layer, self.index, self.inputs = layer, index, list(inputs)
        self.activation = layer.activation
        n, n_in = layer.n, len(inputs)
        self.w = [[unit_symbol(f"w{index}_{j}{k}") for k in range(n_in)] for j in range(n)]
        self.b = [unit_symbol(f"b{index}_{j}") for j in range(n)]
        self.params = [w for row in self.w for w in row] + self.b  # W row by row, then b
        self.constants = []
        self.outputs = [unit_symbol(f"a{index}_{j}") for j in range(n)]
        self.hidden = [unit_symbol(f"z{index}_{j}") for j in range(n)]

    def weighted_input(self, j: int, inputs: list | None = None) -> sp.Expr:
        """zⱼ = Σₖ wⱼₖ aₖ + bⱼ, with a the input placeholders (or ``inputs``)."""
        inputs = self.inputs if inputs is None else inputs
        return sp.Add(*(w * ak for w, ak in zip(self.w[j], inputs))) + self.b[j]

    def activate(self, zs: list) -> list[sp.Expr]:
        """a from the weighted inputs ``zs``: σ elementwise, or normalised over the layer (softmax)."""
        act = self.activation
        f = [act.expr.xreplace({z: zj}) for zj in zs]
        if act.vector:
            total = sp.Add(*f)
            return [fj / total for fj in f]
        return f

    def hidden_exprs(self, inputs):
        return [self.weighted_input(j, inputs) for j in range(len(self.b))]

    def in_hidden(self, inputs):
        return self.activate(self.hidden)

    def forward(self, inputs):
        return self.activate(self.hidden_exprs(inputs))

    def eliminate(self):
        """bⱼ → zⱼ − Σₖ wⱼₖ aₖ: every occurrence of a unit's weighted input collapses to zⱼ."""
        return {b: zj - (self.weighted_input(j) - b) for j, (b, zj) in enumerate(zip(self.b, self.hidden))}

    def random_values(self, rng, point=0):
        env = {}
        for row in self.w:
            for w in row:
                env[w] = rng.uniform(-1.2, 1.2)
        for b in self.b:
            env[b] = rng.uniform(-0.8, 0.8)
        return env

    def backprop(self, eq, g, output: OutputErrorAt):
        """δ from BP1 (``output``) or BP2 (g ⊙ σ′ with ``eq.activation_derivative``), then BP3, BP4 and
        ∂C/∂aˡ⁻¹ₖ = ((wˡ)ᵀδˡ)ₖ for the layer before."""
        A, Z = self.outputs, self.hidden
        if g is None:
            delta = [output.at(j, A[j], Z[j]) for j in range(len(A))]
        else:
            sigma_prime = eq.activation_derivative
            delta = [g[j] * sigma_prime.xreplace({a: A[j], z: Z[j]}) for j in range(len(A))]
        grads = {}
        for j in range(len(A)):
            for k, ak in enumerate(self.inputs):
                grads[self.w[j][k]] = ak * delta[j]  # BP4
        for j in range(len(A)):
            grads[self.b[j]] = delta[j]  # BP3
        g_in = [sp.Add(*(self.w[j][k] * delta[j] for j in range(len(A)))) for k in range(len(self.inputs))]
        return grads, g_in


@unroll_layer.register
def _(layer: Dense, index: int, inputs: list) -> UnrolledDense:
    return UnrolledDense(layer, index, inputs)
