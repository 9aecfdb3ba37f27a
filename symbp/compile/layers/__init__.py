"""The layer protocol, compile side: one lowering module per layer kind, in a table keyed by the layer class.

Takes: a layer's equations object (``symbp.derive.layers``) and a ``LowerContext``.  Gives: kernel-program steps.
A lowering provides ``identity(eq, ctx)`` (is the layer a no-op in this program? then its output and its
gradient are the previous layer's buffers), ``scratch(eq, ctx)`` (declares its buffers through
``ctx.buffer``), ``forward(eq, ctx)``, ``backward(eq, ctx)`` (∂C/∂aˡ is in ``ctx.grad(l)``; write ∂C/∂aˡ⁻¹
into ``ctx.grad(l - 1)`` when that is not None, and the parameter gradients or SGD updates) and, for kinds that
can be the output layer, ``output_error(eq, ctx, y)`` (δᴸ from BP1).
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from symbp.compile.program import Buffer, Update
from symbp.symbols import w as _w

#: the kernel's scalar arguments in update rules: pen = η·λ/n (the regulariser's factor), mu = μ (momentum)
PEN, MU = sp.Symbol("pen", real=True), sp.Symbol("mu", real=True)
_V = sp.Symbol("v", real=True)


@dataclass(frozen=True)
class UpdateRule:
    """How a whole-epoch kernel updates the parameters.

    ``penalty``: R′(w) of the regulariser (a sympy expression in ``w``), or None for L2 run as the weight decay
    β = 1 − ηλ/n of the weight product (the plain kernel).  ``momentum``: the book's eqs. 107–108, one
    velocity per parameter, v ← μ·v − η·∇C, then w ← w + v (the L2 penalty is then R′ = w)."""

    penalty: sp.Expr | None = None
    momentum: bool = False

    @property
    def plain(self) -> bool:
        return self.penalty is None and not self.momentum

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

    def __init__(self, eqs, a0: str, rows: str, masks: bool = False, grads: bool = False, update: bool = False,
                 rule: UpdateRule | None = None):
        self.eqs = eqs
        self.rows, self.masks, self.grads, self.update = rows, masks, grads, update
        self.rule = rule or UpdateRule()
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

    # -- SGD update rules (``update``): what a layer's parameter product or sum writes, and around it ------
    def sgd_weights(self, W: str) -> tuple[str, str, str, list, list]:
        """(target, α, β, steps before, steps after) for the weight update of ``W``: the layer writes
        ``target ← α·Σ(δ·a) + β·target`` between the steps before and after.  Plain: W itself with β = the
        weight decay; a penalty R′: first W ← W − pen·R′(W); momentum: v ← μ·v − pen·R′(W), then the product
        into v, then W ← W + v."""
        r = self.rule
        if r.plain:
            return W, "-eta / m", "decay", [], []
        penalty = _w if r.penalty is None else r.penalty
        if not r.momentum:
            return W, "-eta / m", "1.0", [Update(W, {_w: W}, _w - PEN * penalty, {PEN: "pen"},
                                                 eq=f"penalty: {W} ← {W} − (ηλ/n)·R′({W}),  R′(w) = {penalty}")], []
        v = f"v{W.lower()}"
        before = Update(v, {_V: v, _w: W}, MU * _V - PEN * penalty, {PEN: "pen", MU: "mu"},
                        eq=f"momentum (book eq. 107): {v} ← μ·{v} − (ηλ/n)·R′({W}),  R′(w) = {penalty}; "
                           f"the gradient term follows")
        after = Update(W, {_w: W, _V: v}, _w + _V, eq=f"momentum (book eq. 108): {W} ← {W} + {v}")
        return v, "-eta / m", "1.0", [before], [after]

    def sgd_biases(self, b: str) -> tuple[str, str, str, list]:
        """(target, α, β, steps after) for the bias update of ``b`` (biases have no penalty)."""
        if not self.rule.momentum:
            return b, "-eta / m", "1.0", []
        v = f"v{b.lower()}"
        return v, "-eta / m", "mu", [Update(b, {_w: b, _V: v}, _w + _V, eq=f"momentum: {b} ← {b} + {v}")]

    def buffer(self, name: str, *shape, dtype: str = "float") -> str:
        if not any(b.name == name for b in self.buffers):
            self.buffers.append(Buffer(name, tuple(shape), dtype))
        return name


from symbp.compile.layers import declared, dense, dropout  # noqa: E402,F401  (registration)
