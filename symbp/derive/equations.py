"""BP1–BP4 instantiated for one network, as sympy expressions, with renderings.

Takes: a ``Network``.  Gives: ``Equations`` — per layer the forward map, σ′ (in a where possible), the
error δˡ and the gradients (BP3, BP4) — renderable as unicode text, LaTeX and Markdown, each rendering
listing the simplifications applied and why they matter.

The per-layer error expressions are the ones the compiler lowers to kernels: ``LayerEquations.delta`` is
an elementwise expression in ``a``, ``y``, ``z`` and ``g`` = (wˡ⁺¹)ᵀδˡ⁺¹ (the error propagated back),
plus ``S`` = Σₖ aₖ ∂C/∂aₖ for a softmax output whose sum does not cancel.

Layers are numbered from 1 (the first weighted layer) and a⁰ = x is the input: the book numbers the
input layer 1, so the book's w² is w¹ here.  The numbers match ``Model.params`` and the generated code.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import sympy as sp

from symbp.activations import Activation, expression_text
from symbp.derive.calculus import ActivationDerivative, OutputError, S, activation_derivative, output_error
from symbp.symbols import a, y, z

#: g = (wˡ⁺¹)ᵀ δˡ⁺¹: the error propagated back into a hidden layer (BP2).
g = sp.Symbol("g", real=True)

_SUP = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def sup(n: int) -> str:
    return str(n).translate(_SUP)


@lru_cache(maxsize=256)
def _derivative(act: Activation) -> ActivationDerivative:
    return activation_derivative(act)


@lru_cache(maxsize=256)
def _output_error(act: Activation, cost, n_out: int) -> OutputError:
    return output_error(act, cost, n_out)


def _layer_symbols(l: int, style: str) -> dict:
    if style == "latex":
        back = sp.Symbol(rf"((w^{{{l + 1}}})^T \delta^{{{l + 1}}})")
        return {a: sp.Symbol(f"a^{{{l}}}"), z: sp.Symbol(f"z^{{{l}}}"), g: back, S: sp.Symbol(f"S^{{{l}}}")}
    return {a: sp.Symbol(f"a{sup(l)}"), z: sp.Symbol(f"z{sup(l)}"),
            g: sp.Symbol(f"((w{sup(l + 1)})ᵀ δ{sup(l + 1)})"), S: sp.Symbol(f"S{sup(l)}")}


def text(expr: sp.Expr, l: int | None = None) -> str:
    """One-line unicode rendering, with layer superscripts when ``l`` is given."""
    if l is not None:
        expr = expr.xreplace(_layer_symbols(l, "text"))
    s = expression_text(expr)
    for old, new in (("**2", "²"), ("**3", "³"), ("**(-2)", "⁻²"), ("**(-1)", "⁻¹"), ("**", "^"), ("*", "·")):
        s = s.replace(old, new)
    return s


def latex(expr: sp.Expr, l: int | None = None) -> str:
    if l is not None:
        expr = expr.xreplace(_layer_symbols(l, "latex"))
    return sp.latex(expr, order="none")


@dataclass(frozen=True)
class LayerEquations:
    """The equations of weighted layer ``index`` (1-based)."""

    index: int
    n_in: int
    n_out: int
    activation: Activation
    derivative: ActivationDerivative | None  # None for a normalised (softmax) output
    delta: sp.Expr  # δˡ as an elementwise expression (BP1 for the output layer, BP2 otherwise)
    is_output: bool
    notes: tuple[str, ...]

    @property
    def activation_derivative(self) -> sp.Expr | None:
        """σ′ of this layer, in ``a`` when a valid cheaper form exists, otherwise in ``z``."""
        return None if self.derivative is None else self.derivative.expr

    @property
    def needs_z(self) -> bool:
        """Does the backward pass need zˡ stored (σ′ not expressible in a)?"""
        return z in self.delta.free_symbols

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

    def _delta_text(self) -> str:
        l = sup(self.index)
        nxt = sup(self.index + 1)
        general = f"∇ₐC ⊙ σ′(z{l})" if self.is_output else f"((w{nxt})ᵀ δ{nxt}) ⊙ σ′(z{l})"
        if self.is_output and self.activation.vector:
            general = f"(∂a{l}/∂z{l})ᵀ ∇ₐC"
        if self.is_output:
            return f"δ{l} = {general} = {text(self.delta, self.index)}"
        back = f"((w{sup(self.index + 1)})ᵀ δ{sup(self.index + 1)})"
        return f"δ{l} = {general} = {back} ⊙ {text(self.activation_derivative, self.index)}"

    def _delta_latex(self) -> str:
        l, n = self.index, self.index + 1
        if self.is_output:
            general = (r"(\partial a^{%d}/\partial z^{%d})^T \nabla_a C" % (l, l) if self.activation.vector
                       else r"\nabla_a C \odot \sigma'(z^{%d})" % l)
        else:
            general = r"((w^{%d})^T \delta^{%d}) \odot \sigma'(z^{%d})" % (n, n, l)
        return r"\delta^{%d} = %s = %s" % (l, general, latex(self.delta, l))


class Equations:
    """BP1–BP4 for a network.  ``str()``, ``.latex()``, ``.markdown()``; renders itself in Jupyter."""

    def __init__(self, network, layers: list[LayerEquations], output: OutputError):
        self.network = network
        self.layers = layers
        self._output = output

    @property
    def output_error(self) -> sp.Expr:
        """δᴸⱼ as a sympy expression in a, y (and z only where needed)."""
        return self._output.expr

    @property
    def cost_gradient(self) -> sp.Expr:
        """∂C/∂aⱼ."""
        return self._output.cost_gradient

    @property
    def assumes_one_hot(self) -> bool:
        return self._output.assumes_one_hot

    @property
    def notes(self) -> list[str]:
        """Every simplification applied, once each, with the layers it applies to."""
        seen: dict[str, list[int]] = {}
        for layer in self.layers:
            for note in layer.notes:
                seen.setdefault(note, []).append(layer.index)
        out = []
        for note, idx in seen.items():
            which = "layer" + ("s " if len(idx) > 1 else " ") + ", ".join(map(str, idx))
            out.append(f"{which}: {note}")
        return out

    def _title(self) -> str:
        return f"Backpropagation for {self.network!r}"

    def __str__(self) -> str:
        L = len(self.layers)
        cost = self.network.cost
        lines = [
            self._title(),
            f"Layers l = 1..{L}; a⁰ = x is the input (the book numbers the input layer 1, so its wˡ⁺¹ is wˡ here).",
            "",
            f"Cost      C = Σⱼ {text(cost.expr)}      [{cost.name}]      ∂C/∂aⱼ = {text(self.cost_gradient)}",
            "",
            "Forward",
        ]
        lines += [f"  {layer.forward}" for layer in self.layers]
        out = self.layers[-1]
        lines += ["", f"BP1  output error    {out.bp1}"]
        for layer in reversed(self.layers[:-1]):
            lines.append(f"BP2  hidden error    {layer.bp2}")
        lines.append("BP3  biases          " + "      ".join(layer.bp3 for layer in reversed(self.layers)))
        lines.append("BP4  weights         " + "      ".join(layer.bp4 for layer in reversed(self.layers)))
        lines += ["", "Simplifications"]
        lines += [f"  • {note}" for note in self.notes] or ["  • none"]
        return "\n".join(lines)

    def latex(self) -> str:
        """The equations as a LaTeX ``align*`` block (with the simplifications as a LaTeX comment list)."""
        rows = []
        for layer in self.layers:
            l, p = layer.index, layer.index - 1
            sigma = (r"\mathrm{softmax}(z^{%d})" % l if layer.activation.vector
                     else r"\sigma(z^{%d}),\ \sigma(z) = %s" % (l, sp.latex(layer.activation.expr)))
            rows.append(r"z^{%d} &= w^{%d} a^{%d} + b^{%d}, \quad a^{%d} = %s" % (l, l, p, l, l, sigma))
        out = self.layers[-1]
        rows.append(r"\text{BP1:}\quad " + out._delta_latex().replace(" = ", " &= ", 1))
        for layer in reversed(self.layers[:-1]):
            rows.append(r"\text{BP2:}\quad " + layer._delta_latex().replace(" = ", " &= ", 1))
        for layer in reversed(self.layers):
            l, p = layer.index, layer.index - 1
            rows.append(r"\text{BP3, BP4:}\quad \frac{\partial C}{\partial b^{%d}_j} &= \delta^{%d}_j, \quad "
                        r"\frac{\partial C}{\partial w^{%d}_{jk}} = a^{%d}_k \delta^{%d}_j" % (l, l, l, p, l))
        cost = self.network.cost
        head = (r"C &= \sum_j %s, \quad \frac{\partial C}{\partial a_j} = %s"
                % (sp.latex(cost.expr), sp.latex(self.cost_gradient)))
        body = " \\\\\n".join([head] + rows)
        notes = "\n".join(f"% {n}" for n in self.notes)
        return f"\\begin{{align*}}\n{body}\n\\end{{align*}}\n{notes}".rstrip()

    def markdown(self) -> str:
        """Markdown with LaTeX math ($…$), one table row per equation, then the simplifications."""
        lines = [f"**{self._title()}**", "",
                 "Layers are numbered from 1; $a^0 = x$ is the input.", "",
                 "| equation | layer | form |", "|---|---|---|"]
        for layer in self.layers:
            l, p = layer.index, layer.index - 1
            lines.append(f"| forward | {l} | $z^{{{l}}} = w^{{{l}}} a^{{{p}}} + b^{{{l}}}$, "
                         f"$a^{{{l}}}$ = {layer.activation.name}$(z^{{{l}}})$ |")
        out = self.layers[-1]
        lines.append(f"| BP1 | {out.index} | ${out._delta_latex()}$ |")
        for layer in reversed(self.layers[:-1]):
            lines.append(f"| BP2 | {layer.index} | ${layer._delta_latex()}$ |")
        for layer in reversed(self.layers):
            l, p = layer.index, layer.index - 1
            lines.append(f"| BP3 | {l} | $\\partial C/\\partial b^{{{l}}}_j = \\delta^{{{l}}}_j$ |")
            lines.append(f"| BP4 | {l} | $\\partial C/\\partial w^{{{l}}}_{{jk}} = a^{{{p}}}_k \\delta^{{{l}}}_j$ |")
        lines += ["", "Simplifications:", ""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines)

    def _repr_latex_(self) -> str:
        return "$$" + self.latex().split("\n%")[0] + "$$"

    def _repr_markdown_(self) -> str:
        return self.markdown()

    def __repr__(self) -> str:
        return f"<Equations of {self.network!r}: δᴸ = {text(self.output_error)}>"


def derive(network) -> Equations:
    """Instantiate BP1–BP4 for every layer of ``network``."""
    sizes = network.sizes
    L = len(sizes) - 1
    out_act = network.layers[-1].activation
    try:
        out = _output_error(out_act, network.cost, sizes[-1])
    except ValueError as exc:
        raise ValueError(f"layer {L} ({out_act.name}) with cost {network.cost.name!r}: {exc}") from None
    layers = []
    for l in range(1, L + 1):
        act = network.layers[l].activation
        is_out = l == L
        deriv = None if act.vector else _derivative(act)
        notes = list(deriv.notes) if deriv is not None else []
        if is_out:
            delta = out.expr
            notes += list(out.notes)
            if delta.free_symbols - {a, y, z, S}:
                raise ValueError(f"output error has unexpected symbols: {delta}")  # pragma: no cover
        else:
            delta = g * deriv.expr
        layers.append(LayerEquations(l, sizes[l - 1], sizes[l], act, deriv, delta, is_out, tuple(notes)))
    return Equations(network, layers, out)
