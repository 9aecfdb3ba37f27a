"""Pooling, PyTorch's ``MaxPool2d`` and ``AvgPool2d``: a[c, i, j] = max (or mean) over p < ph, q < pw of
x[c, s·i + p − pad, s·j + q − pad], ``stride`` defaulting to the window, rows and columns that do not fill a
window dropped (PyTorch's floor mode, the book's ignore_border).  Padding is left out of a max (PyTorch pads
with −∞) and counted in a mean (``count_include_pad=True``); a global average pool is ``AvgPool`` over the
whole image.

Takes: the window (ph, pw), stride and padding.  Gives: ``MaxPool`` and ``AvgPool``, each its declaration
(``symbp.layers.declared``), a map of the index language generated from the options; the compile stage's
passes find the window max of non-overlapping windows and pool before a monotone σ.  No parameters.  A max's
gradient goes to the window's maximum; on ties to the first in row-major order.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from symbp.layers import windows
from symbp.layers.base import Layer, register_layer
from symbp.layers.declared import Declared


def _options(layer, kind: str) -> None:
    object.__setattr__(layer, "window", windows.pair(kind, "the window", layer.window))
    stride = layer.window if layer.stride is None else windows.pair(kind, "stride", layer.stride)
    object.__setattr__(layer, "stride", stride)
    object.__setattr__(layer, "padding", windows.pair(kind, "padding", layer.padding, minimum=0))
    if any(2 * p > k for p, k in zip(layer.padding, layer.window)):
        raise ValueError(f"{kind}: padding {layer.padding} must be at most half the window {layer.window} (as in "
                         "PyTorch)")


def _config(self) -> dict:
    out = {"window": list(self.window)}
    if self.stride != self.window:
        out["stride"] = list(self.stride)
    if self.padding != (0, 0):
        out["padding"] = list(self.padding)
    return out


def _from_config(cls, doc, where):
    opts = {k: tuple(doc[k]) for k in ("stride", "padding") if k in doc}
    return cls(tuple(doc["window"]), **opts)


def _pool_name(layer) -> str:
    base = "pool" if layer.kind == "maxpool" else "avgpool"
    name = f"{base}{layer.window[0]}x{layer.window[1]}"
    if layer.stride != layer.window:
        name += f"s{layer.stride[0]}" if layer.stride[0] == layer.stride[1] else f"s{layer.stride[0]}x{layer.stride[1]}"
    if layer.padding != (0, 0):
        name += f"p{layer.padding[0]}" if layer.padding[0] == layer.padding[1] else \
            f"p{layer.padding[0]}x{layer.padding[1]}"
    return name


@lru_cache(maxsize=256)
def _pool_declaration(layer, in_shape):
    kind = "MaxPool" if layer.kind == "maxpool" else "AvgPool"
    (bh, bw), (ho, wo) = windows.geometry(kind, in_shape, layer.window, layer.stride, layer.padding, (1, 1))
    (kh, kw), (sh, sw) = layer.window, layer.stride
    x = f"x[c,{windows.index('i', sh, 'p', 1, bh)},{windows.index('j', sw, 'q', 1, bw)}]"
    gens = f"for p in range({kh}) for q in range({kw})"
    text = (f"z[c,i,j] = max({x} {gens})" if layer.kind == "maxpool" else
            f"z[c,i,j] = sum({x} {gens})/{kh * kw}")
    return Declared.create(_pool_name(layer).replace("pool", "maxpool", 1) if layer.kind == "maxpool"
                           else _pool_name(layer), text, (in_shape[0], ho, wo))


@register_layer
@dataclass(frozen=True)
class MaxPool(Layer):
    """Max over ``window`` = (ph, pw) blocks of each channel."""

    window: tuple[int, int]
    stride: tuple[int, int] | None = None
    padding: tuple[int, int] = (0, 0)
    kind = "maxpool"

    def __post_init__(self):
        _options(self, "MaxPool")

    @property
    def plain(self) -> bool:
        """Non-overlapping windows without padding (the book's)."""
        return self.stride == self.window and self.padding == (0, 0)

    def declaration(self, in_shape):
        return _pool_declaration(self, tuple(in_shape))

    def out_shape(self, in_shape):
        return self.declaration(in_shape).out_shape(in_shape)

    config = _config
    from_config = classmethod(_from_config)

    def describe(self) -> str:
        return _pool_name(self)

    def reference(self, params, x):
        return self.declaration(x.shape[1:]).reference(params, x)


@register_layer
@dataclass(frozen=True)
class AvgPool(Layer):
    """Mean over ``window`` = (ph, pw) windows of each channel (padding counted, as PyTorch's default)."""

    window: tuple[int, int]
    stride: tuple[int, int] | None = None
    padding: tuple[int, int] = (0, 0)
    kind = "avgpool"

    def __post_init__(self):
        _options(self, "AvgPool")

    def declaration(self, in_shape):
        return _pool_declaration(self, tuple(in_shape))

    def out_shape(self, in_shape):
        return self.declaration(in_shape).out_shape(in_shape)

    config = _config
    from_config = classmethod(_from_config)

    def describe(self) -> str:
        return _pool_name(self)

    def reference(self, params, x):
        return self.declaration(x.shape[1:]).reference(params, x)
