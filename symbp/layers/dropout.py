"""Dropout (inverted): while training each input unit is kept with probability 1 − p and scaled by 1/(1 − p),
otherwise zeroed; at inference the layer is the identity.

Takes: the drop probability p ∈ [0, 1).  Gives: ``Dropout`` (no parameters, output shape = input shape).
In expectation this equals the book's network3, which drops without scaling and multiplies the next layer's
weights by 1 − p at inference.  Masks come from a counter-based hash of (seed, epoch, sample, unit) inside the
whole-epoch kernel (``symbp.compile.backends.masks.uniform``), so every backend and mini-batch order draws the
same.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

from symbp.layers.base import Layer, register_layer


@register_layer
@dataclass(frozen=True)
class Dropout(Layer):
    """Zero each input with probability ``p`` while training (kept ones scaled by 1/(1 − p))."""

    p: float
    kind = "dropout"

    def __post_init__(self):
        p = self.p
        # any real number (NumPy scalars, fractions) but a bool (NumPy's bool is no numbers.Real); NaN fails the
        # comparison, and the float is compared, so a fraction that rounds to 1 is refused too
        try:
            ok = not isinstance(p, bool) and isinstance(p, numbers.Real) and 0 <= float(p) < 1
        except (OverflowError, TypeError, ValueError):  # an int too large for a float, a broken __float__
            ok = False
        if not ok:
            raise ValueError(f"Dropout: p must be a probability in [0, 1), got {p!r}")
        object.__setattr__(self, "p", float(p))

    def out_shape(self, in_shape):
        return tuple(in_shape)

    def config(self) -> dict:
        return {"p": self.p}

    @classmethod
    def from_config(cls, doc, where):
        return cls(doc["p"])

    def describe(self) -> str:
        return f"dropout({self.p:g})"

    def reference(self, params, x):
        return x  # inference: the identity (inverted dropout scales while training)

    @property
    def trains(self) -> bool:
        return True
