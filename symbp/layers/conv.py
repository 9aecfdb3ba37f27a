"""A convolutional layer (valid cross-correlation, stride 1, as PyTorch's ``Conv2d``):
z[f, i, j] = Σ_{c,p,q} W[f, c, p, q] · a[c, i+p, j+q] + b[f],  a' = σ(z).

Takes: the number of feature maps, the kernel size (kh, kw) and an activation.  Gives: ``Conv2D``: output shape
(maps, H − kh + 1, W − kw + 1) from an input of shape (C, H, W); parameters W of shape (maps, C, kh, kw) and b
of shape (maps,).  Its backward rules are derived from the indexed sum in ``symbp.derive.layers.conv``.
"""

from __future__ import annotations

from dataclasses import dataclass

from symbp.activations import Activation
from symbp.layers.base import (
    Layer,
    ParamSpec,
    activation_config,
    activation_from_config,
    as_activation,
    check_size,
    fan_in_weights,
    normal_biases,
    register_layer,
)


def _pair(name: str, what: str, v) -> tuple[int, int]:
    if isinstance(v, (int,)) and not isinstance(v, bool):
        v = (v, v)
    if not isinstance(v, (tuple, list)) or len(v) != 2:
        raise ValueError(f"{name}: {what} must be a pair (rows, columns), got {v!r}")
    return tuple(check_size(name, k) for k in v)


@register_layer
@dataclass(frozen=True)
class Conv2D(Layer):
    """``maps`` feature maps of ``kernel`` = (kh, kw) weights over all input channels, then σ."""

    maps: int
    kernel: tuple[int, int]
    activation: Activation
    kind = "conv2d"

    def __post_init__(self):
        object.__setattr__(self, "maps", check_size("Conv2D", self.maps))
        object.__setattr__(self, "kernel", _pair("Conv2D", "the kernel size", self.kernel))
        object.__setattr__(self, "activation", as_activation(self.activation, "Conv2D: "))
        if self.activation.vector:
            raise ValueError(f"Conv2D: {self.activation.name} normalises over a whole layer; give an elementwise "
                             "activation (sigmoid, relu, ...)")

    def out_shape(self, in_shape):
        if len(in_shape) != 3:
            raise ValueError(f"Conv2D needs an image-shaped input (channels, height, width), got {in_shape}: "
                             "declare sb.Input((C, H, W)) and put convolutions before flat layers")
        c, h, w = in_shape
        kh, kw = self.kernel
        if kh > h or kw > w:
            raise ValueError(f"Conv2D: a {kh}x{kw} kernel is larger than its {h}x{w} input")
        return (self.maps, h - kh + 1, w - kw + 1)

    def param_specs(self, in_shape):
        c = in_shape[0]
        kh, kw = self.kernel
        return [ParamSpec("W", (self.maps, c, kh, kw), fan_in_weights(c * kh * kw), weight=True),
                ParamSpec("b", (self.maps,), normal_biases)]

    def config(self) -> dict:
        return {"maps": self.maps, "kernel": list(self.kernel), "activation": activation_config(self.activation)}

    @classmethod
    def from_config(cls, doc, where):
        return cls(doc["maps"], tuple(doc["kernel"]), activation_from_config(doc["activation"]))

    def key_parts(self) -> list[str]:
        import sympy as sp

        return [self.kind, str(self.maps), repr(self.kernel), self.activation.name, sp.srepr(self.activation.expr)]

    def describe(self) -> str:
        return f"conv{self.maps}x{self.kernel[0]}x{self.kernel[1]}:{self.activation.name}"

    def reference(self, params, x):
        import numpy as np
        from numpy.lib.stride_tricks import sliding_window_view

        from symbp.layers.dense import _numpy_function

        W, b = (np.asarray(p, np.float64) for p in params)
        win = sliding_window_view(x, self.kernel, axis=(2, 3))  # (n, C, Ho, Wo, kh, kw)
        z = np.einsum("ncijpq,fcpq->nfij", win, W) + b[None, :, None, None]
        return np.broadcast_to(_numpy_function(self.activation)(z), z.shape).astype(np.float64)
