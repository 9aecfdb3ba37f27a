"""The layer protocol, compile side: one lowering module per layer kind, in a table keyed by the layer class.

Takes: a layer's equations object (``symbp.derive.layers``) and a ``LowerContext``.  Gives: kernel-program steps.
A lowering provides ``identity(eq, ctx)`` (is the layer a no-op in this program? then its output and its
gradient are the previous layer's buffers), ``scratch(eq, ctx)`` (declares its buffers through
``ctx.buffer``), ``forward(eq, ctx)``, ``backward(eq, ctx)`` (∂C/∂aˡ is in ``ctx.grad(l)``; write ∂C/∂aˡ⁻¹
into ``ctx.grad(l - 1)`` when that is not None, and the parameter gradients or SGD updates) and, for kinds that
can be the output layer, ``output_error(eq, ctx, y)`` (δᴸ from BP1).
"""

from __future__ import annotations

from symbp.compile.program import Buffer

#: layer class → its lowering (an object with the methods above)
LOWERINGS: dict[type, object] = {}


def register_lowering(layer_cls):
    def deco(cls):
        LOWERINGS[layer_cls] = cls()
        return cls
    return deco


def lowering(eq):
    try:
        return LOWERINGS[type(eq.layer)]
    except KeyError:
        raise ValueError(f"layer {eq.index}: no lowering for layer kind {type(eq.layer).__name__} (register one "
                         "with symbp.compile.layers.register_lowering)") from None


class LowerContext:
    """Names and buffers of one program being lowered.

    ``rows``: the row-count variable ("n" or "m"); ``masks``: training behaviour (dropout masks drawn);
    ``grads``: a backward pass follows (δ buffers, σ′ kept from the forward pass); ``update``: the backward pass
    writes SGD updates instead of gradients;
    ``act(l)``/``grad(l)``: the buffer holding aˡ / ∂C/∂aˡ (after aliasing layers that are the identity here);
    ``grad(l)`` is None where no layer up to l has parameters (the input, dropout on the input).
    """

    def __init__(self, eqs, a0: str, rows: str, masks: bool = False, grads: bool = False, update: bool = False):
        self.eqs = eqs
        self.rows, self.masks, self.grads, self.update = rows, masks, grads, update
        self.buffers: list[Buffer] = []
        self._act = {0: a0}
        self._grad = {0: None}
        trained = False  # does a layer up to here have parameters (so that ∂C/∂aˡ is needed)?
        for eq in eqs.layers:
            l = eq.index
            same = lowering(eq).identity(eq, self)
            trained = trained or eq.has_params
            self._act[l] = self._act[l - 1] if same else f"a{l}"
            # No parameters at or below layer l (e.g. dropout on the input): nothing reads ∂C/∂aˡ, so no
            # buffer and no product computes it.
            self._grad[l] = None if not trained else self._grad[l - 1] if same else f"delta{l}"

    def act(self, l: int) -> str:
        return self._act[l]

    def grad(self, l: int) -> str | None:
        return self._grad[l]

    def buffer(self, name: str, *shape, dtype: str = "float") -> str:
        if not any(b.name == name for b in self.buffers):
            self.buffers.append(Buffer(name, tuple(shape), dtype))
        return name


from symbp.compile.layers import conv, dense, dropout, pool  # noqa: E402,F401  (registration)
