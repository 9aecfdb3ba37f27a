"""Max-pooling over non-overlapping windows (stride = window); rows and columns that do not fill a window are
dropped (the book's ignore_border): a[c, i, j] = max_{p<ph, q<pw} x[c, i·ph + p, j·pw + q].

Takes: the window (ph, pw).  Gives: ``MaxPool`` (no parameters; output (C, H // ph, W // pw)).  The gradient
goes to the window's maximum; on ties to the first in row-major order.
"""

from __future__ import annotations

from dataclasses import dataclass

from symbp.layers.base import Layer, register_layer
from symbp.layers.conv import _pair


@register_layer
@dataclass(frozen=True)
class MaxPool(Layer):
    """Max over ``window`` = (ph, pw) blocks of each channel."""

    window: tuple[int, int]
    kind = "maxpool"

    def __post_init__(self):
        object.__setattr__(self, "window", _pair("MaxPool", "the window", self.window))

    def out_shape(self, in_shape):
        if len(in_shape) != 3:
            raise ValueError(f"MaxPool needs an image-shaped input (channels, height, width), got {in_shape}")
        c, h, w = in_shape
        ph, pw = self.window
        if h // ph == 0 or w // pw == 0:
            raise ValueError(f"MaxPool: a {ph}x{pw} window leaves nothing of a {h}x{w} input")
        return (c, h // ph, w // pw)

    def config(self) -> dict:
        return {"window": list(self.window)}

    @classmethod
    def from_config(cls, doc, where):
        return cls(tuple(doc["window"]))

    def key_parts(self) -> list[str]:
        return [self.kind, repr(self.window)]

    def describe(self) -> str:
        return f"pool{self.window[0]}x{self.window[1]}"

    def reference(self, params, x):
        ph, pw = self.window
        n, c, h, w = x.shape
        ho, wo = h // ph, w // pw
        return x[:, :, :ho * ph, :wo * pw].reshape(n, c, ho, ph, wo, pw).max(axis=(3, 5))
