"""The layer protocol, derive side: one module per layer kind, registered on the layer class.

Takes: a layer and its ``LayerContext`` (position, shapes, whether it is the output layer, the network's cost).
Gives: the layer's equations object (``derive_layer``), which renders itself and gives the lowering what it
needs.  Every equations object has ``index``, ``layer``, ``in_shape``, ``out_shape``, ``is_output``,
``has_params``, ``notes``; ``forward``/``forward_latex`` (its forward map as text / LaTeX);
``backward_rows()`` — (label, text, latex) rows for its backward rule; ``bp3``/``bp4`` (empty without
parameters); and ``grad_in(text, latex)``, how it turns ∂C/∂aˡ (given as text) into ∂C/∂aˡ⁻¹, which the
layer before it shows inside its own error (BP2).  Optional, where the dense forms do not apply (a declared
map): ``param_rules_latex`` — (BP3, BP4) in LaTeX — and ``markdown_forward``, the forward row of ``markdown()``.

For the independent sum-over-paths check (``symbp.derive.check``) each kind also registers ``unroll_layer``:
its forward map written out unit by unit as scalar sympy expressions (an ``UnrolledLayer``: parameter symbols,
fixed constants such as dropout masks, placeholders) and ``UnrolledLayer.backprop``, how BP1–BP4 act on it
as its equations object states them.  The check iterates over layers through these two and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import singledispatch

import sympy as sp


@dataclass(frozen=True)
class LayerContext:
    index: int
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    is_output: bool
    network: object
    #: ∂C/∂aˡ as it reaches this layer from the next one, text and LaTeX (None for the output layer)
    back_text: str | None = None
    back_latex: str | None = None


@singledispatch
def derive_layer(layer, ctx: LayerContext):
    raise ValueError(f"layer {ctx.index}: no backward rule for layer kind {type(layer).__name__} "
                     "(register one with symbp.derive.layers.derive_layer.register)")


def unit_symbol(name: str) -> sp.Symbol:
    """A real scalar symbol of the unrolled network (``a1_0``, ``w2_01``, ``m2_1``, …)."""
    return sp.Symbol(name, real=True)


@dataclass(frozen=True)
class OutputErrorAt:
    """δᴸ as the equations state it (``Equations.output_error``, elementwise in ``a``, ``y``, ``z``), for the
    output layer's ``backprop``: ``at(j, a_j, z_j)`` is unit j's error.  ``extra`` replaces the network-level
    symbols (``S`` = Σₖ aₖ ∂C/∂aₖ of a softmax output), ``y`` holds the target symbols y₀, y₁, …"""

    expr: sp.Expr
    y: list
    extra: dict = field(default_factory=dict)

    def at(self, j: int, a_j: sp.Expr, z_j: sp.Expr | None = None) -> sp.Expr:
        from symbp.symbols import a, y, z

        rep = self.extra | {a: a_j, y: self.y[j]}
        if z_j is not None:
            rep[z] = z_j
        return self.expr.xreplace(rep)


class UnrolledLayer:
    """One layer of a tiny network written out unit by unit (for ``symbp.derive.check``).

    ``inputs``: the previous layer's placeholders (x₀, x₁, … for layer 1); ``outputs``: this layer's
    placeholders ``a{l}_{j}``; ``params``: its parameter symbols in model order (empty without parameters);
    ``constants``: symbols held fixed (dropout masks ``m{l}_{j}`` ∈ {0, 1}): kept symbolic in symbolic forms and
    drawn by ``random_values`` at numeric points; ``hidden``: independent intermediate symbols (the weighted inputs
    ``z{l}_{j}`` of a dense layer) that ``eliminate`` trades the parameters for in the check's "z" form.
    """

    index: int
    inputs: list
    outputs: list
    params: list
    constants: list = ()
    hidden: list = ()

    def hidden_exprs(self, inputs: list) -> list[sp.Expr]:
        """The values of ``hidden`` given the layer's ``inputs`` (expressions)."""
        return []

    def in_hidden(self, inputs: list) -> list[sp.Expr]:
        """Each output aˡⱼ in the ``hidden`` symbols (and ``inputs``, ``constants``)."""
        raise NotImplementedError

    def forward(self, inputs: list) -> list[sp.Expr]:
        """Each output aˡⱼ as a scalar expression in ``inputs``, ``params`` and ``constants``."""
        rep = dict(zip(self.hidden, self.hidden_exprs(inputs)))
        return [e.xreplace(rep) for e in self.in_hidden(inputs)]

    def eliminate(self) -> dict:
        """{parameter: expression in ``hidden`` and the input placeholders}: a bijection trading some parameters
        for the ``hidden`` symbols (bˡⱼ ↔ zˡⱼ); empty when there are none."""
        return {}

    def random_values(self, rng, point: int = 0) -> dict:
        """Values for ``params`` and ``constants`` at the numeric check's point number ``point`` (``rng``: a
        ``random.Random``)."""
        return {}

    def backprop(self, eq, g: list | None, output: OutputErrorAt) -> tuple[dict, list]:
        """BP1–BP4 for this layer from its equations object ``eq``: g = [∂C/∂aˡⱼ] from the next layer (None for
        the output layer, whose error is ``output``).  Returns ({parameter: ∂C/∂parameter}, [∂C/∂aˡ⁻¹ₖ])."""
        raise NotImplementedError


class Units(list):
    """A layer's placeholders as ``unroll_layer`` receives them: a list, whose ``shape`` is that layer's output
    shape ((n,) flat; (C, H, W) for an image, the units in (channel, row, column) order, as the kernels store
    them).  Kinds that need the layout (convolution, pooling) read it; the others use the list alone."""

    def __init__(self, units, shape):
        super().__init__(units)
        self.shape = tuple(shape)


@singledispatch
def unroll_layer(layer, index: int, inputs: list) -> UnrolledLayer:
    raise ValueError(f"layer {index}: no sum-over-paths rule for layer kind {type(layer).__name__} "
                     "(register one with symbp.derive.layers.unroll_layer.register)")


from symbp.derive.layers import declared, dense, dropout  # noqa: E402,F401  (registration)
