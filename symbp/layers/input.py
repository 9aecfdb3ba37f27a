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

    n: int
    kind = "input"

    def __post_init__(self):
        object.__setattr__(self, "n", check_size("Input", self.n))

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.n,)

    def out_shape(self, in_shape=None):
        return self.shape

    def config(self) -> dict:
        return {"n": self.n}

    @classmethod
    def from_config(cls, doc, where):
        return cls(doc["n"])

    def key_parts(self) -> list[str]:
        return [self.kind, repr(self.shape)]

    def describe(self) -> str:
        return str(self.n)
