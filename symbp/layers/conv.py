"""A convolutional layer, PyTorch's ``Conv2d``: z[f, i, j] = Σ_{c,p,q} W[f, c, p, q] · a[c, s·i + d·p − pad,
s·j + d·q − pad] + b[f],  a' = σ(z), with ``stride``, ``padding`` (an int, a pair or ``"same"``), ``dilation``
and ``groups`` as PyTorch has them (``groups = maps = channels``: a depthwise convolution).

Takes: the number of feature maps, the kernel size (kh, kw), an activation and the options.  Gives: ``Conv2D``:
output (maps, Ho, Wo) by PyTorch's formula; parameters W of shape (maps, C/groups, kh, kw) and b of shape
(maps,).  The layer *is* its declaration (``declaration``): a map of the index language, generated from the
options, derived and compiled like any declared layer (``symbp.layers.declared``); the compile stage's passes
find its im2col + gemm products.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from symbp.activations import Activation
from symbp.layers import windows
from symbp.layers.base import (
    Layer,
    activation_config,
    activation_from_config,
    as_activation,
    check_size,
    register_layer,
)
from symbp.layers.declared import Declared


def _conv_name(layer) -> str:
    """conv32x3x3, then s2, p1 (or psame), d2, g4 for the options that are not the defaults."""
    name = f"conv{layer.maps}x{layer.kernel[0]}x{layer.kernel[1]}"
    for tag, v, default in (("s", layer.stride, (1, 1)), ("p", layer.padding, (0, 0)), ("d", layer.dilation, (1, 1)),
                            ("g", layer.groups, 1)):
        if v != default:
            name += tag + (v if isinstance(v, str) else str(v[0]) if isinstance(v, tuple) and v[0] == v[1] else
                           "x".join(map(str, v)) if isinstance(v, tuple) else str(v))
    return name


@lru_cache(maxsize=256)
def _conv_declaration(layer, in_shape):
    (bh, bw), (ho, wo) = windows.geometry("Conv2D", in_shape, layer.kernel, layer.stride, layer.padding,
                                          layer.dilation)
    (kh, kw), (sh, sw), (dh, dw), g = layer.kernel, layer.stride, layer.dilation, layer.groups
    c = in_shape[0]
    if c % g:
        raise ValueError(f"Conv2D: {c} input channels cannot be split into {g} groups")
    cg, mg = c // g, layer.maps // g
    rows, cols = windows.index("i", sh, "p", dh, bh), windows.index("j", sw, "q", dw, bw)
    gens = f"for p in range({kh}) for q in range({kw})"
    if g == 1:
        text = f"z[f,i,j] = sum(W[f,c,p,q]*x[c,{rows},{cols}] for c in range({c}) {gens}) + b[f]"
        out = (layer.maps, ho, wo)
    elif cg == 1 and mg == 1:  # depthwise
        text = f"z[f,i,j] = sum(W[f,0,p,q]*x[f,{rows},{cols}] {gens}) + b[f]"
        out = (layer.maps, ho, wo)
    else:  # groups: output (group, map in group, row, column), the same memory as (maps, row, column)
        text = (f"z[k,f,i,j] = sum(W[{mg}*k+f,c,p,q]*x[{cg}*k+c,{rows},{cols}] for c in range({cg}) {gens})"
                f" + b[{mg}*k+f]")
        out = (g, mg, ho, wo)
    return Declared.create(_conv_name(layer), text, out, {"W": (layer.maps, cg, kh, kw), "b": (layer.maps,)},
                           layer.activation)


@register_layer
@dataclass(frozen=True)
class Conv2D(Layer):
    """``maps`` feature maps of ``kernel`` = (kh, kw) weights over all input channels, then σ."""

    maps: int
    kernel: tuple[int, int]
    activation: Activation
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] | str = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    kind = "conv2d"

    def __post_init__(self):
        object.__setattr__(self, "maps", check_size("Conv2D", self.maps))
        object.__setattr__(self, "kernel", windows.pair("Conv2D", "the kernel size", self.kernel))
        object.__setattr__(self, "activation", as_activation(self.activation, "Conv2D: "))
        object.__setattr__(self, "stride", windows.pair("Conv2D", "stride", self.stride))
        object.__setattr__(self, "padding", windows.padding("Conv2D", self.padding))
        object.__setattr__(self, "dilation", windows.pair("Conv2D", "dilation", self.dilation))
        object.__setattr__(self, "groups", check_size("Conv2D", self.groups))
        if self.activation.vector:
            raise ValueError(f"Conv2D: {self.activation.name} normalises over a whole layer; give an elementwise "
                             "activation (sigmoid, relu, ...)")
        if self.padding == "same" and self.stride != (1, 1):
            raise ValueError("Conv2D: padding='same' needs stride 1 (as in PyTorch)")
        if self.maps % self.groups:
            raise ValueError(f"Conv2D: {self.maps} maps cannot be split into {self.groups} groups")

    @property
    def plain(self) -> bool:
        """The default options: a valid correlation, stride 1 (the book's)."""
        return self.stride == (1, 1) and self.padding == (0, 0) and self.dilation == (1, 1) and self.groups == 1

    def declaration(self, in_shape):
        """The layer as a map of the index language (``symbp.layers.declared``), for its input shape."""
        if len(in_shape) != 3:
            raise ValueError(f"Conv2D needs an image-shaped input (channels, height, width), got {in_shape}: "
                             "declare sb.Input((C, H, W)) and put convolutions before flat layers")
        return _conv_declaration(self, tuple(in_shape))

    def out_shape(self, in_shape):
        return (self.maps, *self.declaration(in_shape).out_shape(in_shape)[-2:])

    def param_specs(self, in_shape):
        return self.declaration(in_shape).param_specs(in_shape)

    def _options(self) -> dict:
        """The options that differ from the defaults (model files of plain convolutions stay as they were)."""
        out = {}
        for name, default in (("stride", (1, 1)), ("padding", (0, 0)), ("dilation", (1, 1)), ("groups", 1)):
            v = getattr(self, name)
            if v != default:
                out[name] = list(v) if isinstance(v, tuple) else v
        return out

    def config(self) -> dict:
        return {"maps": self.maps, "kernel": list(self.kernel), "activation": activation_config(self.activation),
                **self._options()}

    @classmethod
    def from_config(cls, doc, where):
        opts = {k: tuple(v) if isinstance(v, list) else v for k, v in doc.items()
                if k in ("stride", "padding", "dilation", "groups")}
        return cls(doc["maps"], tuple(doc["kernel"]), activation_from_config(doc["activation"]), **opts)

    def describe(self) -> str:
        return f"{_conv_name(self)}:{self.activation.name}"

    def reference(self, params, x):
        return self.declaration(x.shape[1:]).reference(params, x)
