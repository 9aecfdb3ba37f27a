"""BP1–BP4 instantiated for one network, as sympy expressions, with renderings.

Takes: a ``Network``.  Gives: ``Equations`` — one equations object per layer (from that layer kind's rule in
``symbp.derive.layers``: for a dense layer the forward map, σ′ (in a where possible), the error δˡ and the
gradients BP3, BP4; for dropout its mask rule) — renderable as unicode text, LaTeX and Markdown, each
rendering listing the simplifications applied and why they matter.

The per-layer error expressions are the ones the compiler lowers to kernels: a dense layer's ``delta`` is an
elementwise expression in ``a``, ``y``, ``z`` and ``g`` = ∂C/∂aˡ propagated back from the next layer
((wˡ⁺¹)ᵀδˡ⁺¹ for a dense one), plus ``S`` = Σₖ aₖ ∂C/∂aₖ for a softmax output whose sum does not cancel.

Layers are numbered by their position (the input is layer 0, a⁰ = x): the book numbers the input layer 1,
so the book's w² is w¹ here.  The numbers match ``Model.params`` and the generated code.
"""

from __future__ import annotations

import sympy as sp

from symbp.derive.calculus import g  # noqa: F401  (re-exported: ∂C/∂aˡ from the next layer, BP2)
from symbp.derive.layers import LayerContext, derive_layer
from symbp.derive.layers.dense import LayerEquations  # noqa: F401  (re-exported)
from symbp.network import register_stage
from symbp.render import factor_text, latex, latex_text, sup, text  # noqa: F401  (re-exported)
from symbp.symbols import a, y, z  # noqa: F401  (the symbols the equations are written in)


class Equations:
    """BP1–BP4 for a network.  ``str()``, ``.latex()``, ``.markdown()``; renders itself in Jupyter.

    ``layers`` holds one equations object per layer after the input, in order (see ``symbp.derive.layers``).
    """

    def __init__(self, network, layers: list, output, regularizer=None, momentum: float = 0.0):
        self.network = network
        self.layers = layers
        self._output = output
        self.regularizer = regularizer
        self.momentum = momentum

    def with_update(self, regularizer=None, momentum: float = 0.0) -> Equations:
        """The same equations, showing the update rule of ``fit(regularizer=..., momentum=...)``."""
        return Equations(self.network, self.layers, self._output, regularizer, momentum)

    def update_rule(self, style: str = "text") -> tuple[str, str]:
        """(weights, biases): the SGD update rule that runs, as text or LaTeX (``style="latex"``), for this
        regulariser (L2 with λ = ``lmbda`` when none is given) and momentum."""
        from symbp.regularizers import L2

        reg = self.regularizer or L2(0.0)
        mom = bool(self.momentum)
        if style == "latex":
            wr = reg.update_latex(mom)
            br = (r"v \to \mu v - \frac{\eta}{m}\sum_x \frac{\partial C_x}{\partial b}, \quad b \to b + v" if mom
                  else r"b \to b - \frac{\eta}{m}\sum_x \frac{\partial C_x}{\partial b}")
            return wr, br
        br = "v → μ·v − (η/m)·Σₓ ∂Cₓ/∂b,  b → b + v" if mom else "b → b − (η/m)·Σₓ ∂Cₓ/∂b"
        return reg.update_text(mom), br

    def _update_note(self) -> str:
        reg = self.regularizer
        what = (f"{reg.name} penalty (λ/n)·Σ R(w), R(w) = {text(reg.expr)}, λ = {reg.strength:g}; R′ derived by sympy"
                if reg is not None else "L2 penalty λ/2n·Σw² with λ = fit's lmbda (network2's), R′(w) = w")
        mom = f"; momentum μ = {self.momentum:g} (book eqs. 107–108)" if self.momentum else ""
        return f"{what}{mom}; m the mini-batch size, n the training-set size, sums over the mini-batch"

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

    def _backward_rows(self) -> list[tuple[int, str, str, str]]:
        """(layer, label, text, LaTeX) of every backward rule, output layer first."""
        rows = []
        for layer in reversed(self.layers):
            for label, txt, ltx in layer.backward_rows(layer_back(layer), layer_back(layer, "latex")):
                rows.append((layer.index, label, txt, ltx))
        return rows

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
        lines.append("")
        lines += [f"{label:<21}{txt}" for _, label, txt, _ in self._backward_rows()]
        with_params = [layer for layer in reversed(self.layers) if layer.has_params]
        lines.append("BP3  biases          " + "      ".join(layer.bp3 for layer in with_params if layer.bp3))
        lines.append("BP4  weights         " + "      ".join(layer.bp4 for layer in with_params if layer.bp4))
        wr, br = self.update_rule()
        lines += ["", f"Update    {wr};   {br}", f"          ({self._update_note()})"]
        lines += ["", "Simplifications"]
        lines += [f"  • {note}" for note in self.notes] or ["  • none"]
        return "\n".join(lines)

    def _latex_rows(self) -> list[str]:
        """The rows of ``latex()``, each with one alignment point ``&`` (before its first ``=`` or ``\\to``)."""
        rows = [_align(layer.forward_latex) for layer in self.layers]
        for _, label, _, ltx in self._backward_rows():
            tag = label.split()[0] if label.startswith("BP") else label
            rows.append(r"\text{%s:}\quad " % latex_text(tag) + _align(ltx))
        for layer in reversed(self.layers):
            if not layer.has_params:
                continue
            l, p = layer.index, layer.index - 1
            own = getattr(layer, "param_rules_latex", None)  # a kind's own (BP3, BP4), e.g. a convolution's sums
            if own is not None:
                rows.append(r"\text{BP3, BP4:}\quad " + _align(own[0]) + r", \quad " + own[1])
                continue
            rows.append(r"\text{BP3, BP4:}\quad \frac{\partial C}{\partial b^{%d}_j} &= \delta^{%d}_j, \quad "
                        r"\frac{\partial C}{\partial w^{%d}_{jk}} = a^{%d}_k \delta^{%d}_j" % (l, l, l, p, l))
        wr, br = self.update_rule("latex")
        rows.append(r"\text{SGD:}\quad " + wr.replace(r" \to ", r" &\to ", 1) + r", \quad " + br)
        cost = self.network.cost
        head = (r"C &= \sum_j %s, \quad \frac{\partial C}{\partial a_j} = %s"
                % (latex(cost.expr), latex(self.cost_gradient)))
        return [head] + rows

    def latex(self) -> str:
        """The equations as a LaTeX ``align*`` environment, for a document with ``\\usepackage{amsmath}`` (then
        the simplifications as LaTeX comments).  Jupyter shows the same rows as ``aligned`` inside ``$$``."""
        body = " \\\\\n".join(self._latex_rows())
        notes = "\n".join(f"% {n}" for n in self.notes)
        return f"\\begin{{align*}}\n{body}\n\\end{{align*}}\n{notes}".rstrip()

    def markdown(self) -> str:
        """Markdown with LaTeX math ($…$), one table row per equation, then the simplifications."""
        lines = [f"**{self._title()}**", "",
                 "Layers are numbered from 1; $a^0 = x$ is the input.", "",
                 "| equation | layer | form |", "|---|---|---|"]
        for layer in self.layers:
            if getattr(layer, "markdown_forward", None) is not None:  # a kind's own row (a convolution)
                lines.append(f"| forward | {layer.index} | {layer.markdown_forward} |")
            elif layer.activation is not None:
                l, p = layer.index, layer.index - 1
                lines.append(f"| forward | {l} | $z^{{{l}}} = w^{{{l}}} a^{{{p}}} + b^{{{l}}}$, "
                             f"$a^{{{l}}}$ = {layer.activation.name}$(z^{{{l}}})$ |")
            else:
                lines.append(f"| forward | {layer.index} | ${layer.forward_latex}$ |")
        for index, label, _, ltx in self._backward_rows():
            lines.append(f"| {label.split()[0]} | {index} | ${ltx}$ |")
        for layer in reversed(self.layers):
            if not layer.has_params:
                continue
            l, p = layer.index, layer.index - 1
            own = getattr(layer, "param_rules_latex", None)
            if own is not None:
                lines += [f"| BP3 | {l} | ${own[0]}$ |", f"| BP4 | {l} | ${own[1]}$ |"]
                continue
            lines.append(f"| BP3 | {l} | $\\partial C/\\partial b^{{{l}}}_j = \\delta^{{{l}}}_j$ |")
            lines.append(f"| BP4 | {l} | $\\partial C/\\partial w^{{{l}}}_{{jk}} = a^{{{p}}}_k \\delta^{{{l}}}_j$ |")
        wr, br = self.update_rule("latex")
        lines.append(f"| update | all | ${wr}$, ${br}$ |")
        lines += ["", f"Update rule: {self._update_note()}."]
        lines += ["", "Simplifications:", ""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines)

    def _repr_latex_(self) -> str:
        """``aligned`` inside ``$$``: display math that MathJax, KaTeX and LaTeX all read (``align*`` is an
        environment of its own and does not belong inside ``$$``)."""
        body = " \\\\\n".join(self._latex_rows())
        return f"$$\\begin{{aligned}}\n{body}\n\\end{{aligned}}$$"

    def _repr_markdown_(self) -> str:
        return self.markdown()

    def __repr__(self) -> str:
        return f"<Equations of {self.network!r}: δᴸ = {text(self.output_error)}>"

    def _repr_pretty_(self, p, cycle: bool) -> None:
        """IPython's text/plain (what a terminal or a notebook without MathJax shows): the full ``str(self)``;
        inside a list or another container (or a cycle) the one-line ``repr``."""
        nested = len(getattr(p, "stack", ())) > 1
        p.text(repr(self) if cycle or nested else str(self))


def _align(row: str) -> str:
    """``row`` with its alignment point: ``&`` before its first ``=``."""
    return row.replace(" = ", " &= ", 1)


def layer_back(layer, style: str = "text") -> str | None:
    """∂C/∂aˡ as it reaches ``layer`` from the next one (None for the output layer)."""
    return getattr(layer, "back_latex" if style == "latex" else "back_text", None)


@register_stage("derive")
def derive(network) -> Equations:
    """Instantiate the backward rules of every layer of ``network``, last layer first (each needs to know how
    ∂C/∂aˡ reaches it from the layer after it)."""
    layers = network.layers
    L = len(layers) - 1
    out: list = [None] * (L + 1)
    back_text = back_latex = None
    for l in range(L, 0, -1):
        ctx = LayerContext(l, network.shapes[l - 1], network.shapes[l], l == L, network, back_text, back_latex)
        eq = derive_layer(layers[l], ctx)
        out[l] = eq
        back_text, back_latex = eq.grad_in(back_text, back_latex)
    eqs = out[1:]
    return Equations(network, eqs, eqs[-1].output)

