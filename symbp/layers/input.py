"""The input layer: the shape of one sample.

Takes: a size ``n`` or a shape tuple.  Gives: ``Input`` (no parameters; the network's first layer).
"""

from __future__ import annotations

from dataclasses import dataclass

from symbp.layers.base import Layer, check_size, register_layer


@register_layer
@dataclass(frozen=True)
class Input(Layer):
    """The input layer: ``n`` features per sample (an int; a shape tuple for image-shaped inputs)."""

    n: int | tuple[int, ...]
    kind = "input"

    def __post_init__(self):
        if isinstance(self.n, (tuple, list)):
            if not 1 <= len(self.n) <= 3:
                raise ValueError(f"Input: a shape has 1 to 3 axes, e.g. (1, 28, 28), got {tuple(self.n)!r}")
            shape = tuple(check_size("Input", k) for k in self.n)
            object.__setattr__(self, "n", shape[0] if len(shape) == 1 else shape)
        else:
            object.__setattr__(self, "n", check_size("Input", self.n))

    @property
    def shape(self) -> tuple[int, ...]:
        """(n,) for flat samples, (channels, height, width) for images."""
        return self.n if isinstance(self.n, tuple) else (self.n,)

    def out_shape(self, in_shape=None):
        return self.shape

    def config(self) -> dict:
        return {"n": self.n if isinstance(self.n, int) else list(self.n)}

    @classmethod
    def from_config(cls, doc, where):
        n = doc["n"]
        return cls(tuple(n) if isinstance(n, list) else n)

    def describe(self) -> str:
        return str(self.n) if isinstance(self.n, int) else "x".join(map(str, self.n))
