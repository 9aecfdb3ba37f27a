"""The layer protocol, derive side: one module per layer kind, registered on the layer class.

Takes: a layer and its ``LayerContext`` (position, shapes, whether it is the output layer, the network's cost).
Gives: the layer's equations object (``derive_layer``), which renders itself and gives the lowering what it
needs.  Every equations object has ``index``, ``layer``, ``in_shape``, ``out_shape``, ``is_output``,
``has_params``, ``notes``; ``forward``/``forward_latex`` (its forward map as text / LaTeX);
``backward_rows()`` — (label, text, latex) rows for its backward rule; ``bp3``/``bp4`` (empty without
parameters); and ``grad_in(text, latex)``, how it turns ∂C/∂aˡ (given as text) into ∂C/∂aˡ⁻¹, which the
layer before it shows inside its own error (BP2).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import singledispatch


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


from symbp.derive.layers import dense, dropout  # noqa: E402,F401  (registration)
