"""Convolutional nets (Nielsen's chapter 6) for the benchmark harness: their specs, exact FLOP counts, initial
parameters, and the interface of the implementations of one SGD epoch of them.

Takes: a ``ConvNet`` (an input shape (C, H, W), then ``("conv", maps, kh, kw)`` or ``("conv", maps, kh, kw,
stride, padding)``, ``("pool", ph, pw)`` (max), ``("avgpool", ph, pw)``, ``("fc", n)`` layers and a final
``("softmax", k)``; one activation, sigmoid or ReLU, in every conv and hidden fc layer) or a name in ``NETS``.
Gives: ``ConvNet`` (its shapes, sizes and parameter shapes in PyTorch's layout, to and from a dict), ``NETS``
(``basic_conv``, ``dbl_conv``, ``modern``), ``as_net``, ``conv_flops`` (exact per-sample multiply-add counts),
``conv_epoch_flops``, ``init_conv_params``, ``COST`` (the log-likelihood of the softmax output),
``ACTIVATIONS``, and ``ConvImpl`` (``symbp.bench.impl.Impl`` for a conv net: ``setup`` takes a ``ConvNet`` where
the dense implementations take layer sizes, and checks the parameters and rows against it).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import ClassVar

import numpy as np

from symbp.bench.impl import DTYPES, Impl

COST = "log-likelihood"
ACTIVATIONS = ("sigmoid", "relu")


# -------------------------------------------------------------------------------------------- net specs
@dataclasses.dataclass(frozen=True)
class ConvNet:
    """A conv net: ``input`` (C, H, W) and ``layers``, each ``("conv", maps, kh, kw)`` (stride 1, no padding) or
    ``("conv", maps, kh, kw, stride, padding)``, ``("pool", ph, pw)``, ``("avgpool", ph, pw)`` (windows of stride
    = window, the rest cropped), ``("fc", n)``, ending with ``("softmax", k)``; ``activation`` in every conv and
    hidden fc layer."""

    name: str
    input: tuple[int, int, int]
    layers: tuple[tuple, ...]
    activation: str = "sigmoid"

    def __post_init__(self):
        object.__setattr__(self, "input", tuple(int(v) for v in self.input))
        layers = []
        for l in self.layers:
            l = (str(l[0]), *(int(v) for v in l[1:]))
            layers.append(l + (1, 0) if l[0] == "conv" and len(l) == 4 else l)  # stride 1, padding 0
        object.__setattr__(self, "layers", tuple(layers))
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"net {self.name!r}: activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if len(self.input) != 3 or min(self.input) < 1:
            raise ValueError(f"net {self.name!r}: input must be (C, H, W), got {self.input}")
        if not self.layers or self.layers[-1][0] != "softmax":
            raise ValueError(f"net {self.name!r}: the last layer must be ('softmax', k)")
        self.shapes()  # validates

    def shapes(self) -> list[tuple[tuple, tuple]]:
        """(input shape, output shape) of every layer; image shapes are (C, H, W), flat ones (n,)."""
        shape: tuple = self.input
        out = []
        arity = {"conv": 5, "pool": 2, "avgpool": 2, "fc": 1, "softmax": 1}
        for k, layer in enumerate(self.layers):
            kind, args = layer[0], layer[1:]
            if (kind not in arity or len(args) != arity[kind] or min(args[:4]) < 1
                    or (kind == "conv" and args[4] < 0)):
                raise ValueError(f"net {self.name!r}: bad layer {layer!r}")
            if kind == "softmax" and k != len(self.layers) - 1:
                raise ValueError(f"net {self.name!r}: softmax must be the last layer")
            if kind in ("conv", "pool", "avgpool"):
                if len(shape) != 3:
                    raise ValueError(f"net {self.name!r}: {kind} layer {k + 1} after a flat layer")
                c, h, w = shape
                if kind == "conv":
                    f, kh, kw, s, p = args
                    if kh > h + 2 * p or kw > w + 2 * p:
                        raise ValueError(f"net {self.name!r}: {kh}x{kw} kernel larger than its {h}x{w} input "
                                         f"padded by {p}")
                    new = (f, (h + 2 * p - kh) // s + 1, (w + 2 * p - kw) // s + 1)
                else:
                    ph, pw = args
                    if h // ph < 1 or w // pw < 1:
                        raise ValueError(f"net {self.name!r}: a {ph}x{pw} pool leaves nothing of {h}x{w}")
                    new = (c, h // ph, w // pw)
            else:
                new = (args[0],)
            out.append((shape, new))
            shape = new
        return out

    @property
    def sizes(self) -> tuple[int, ...]:
        """Flat activation sizes, input first (as symbp's ``model.sizes``)."""
        return (math.prod(self.input), *(math.prod(o) for _, o in self.shapes()))

    @property
    def n_in(self) -> int:
        return math.prod(self.input)

    @property
    def n_out(self) -> int:
        return self.layers[-1][1]

    def param_shapes(self) -> list[tuple[tuple, tuple]]:
        """(W shape, b shape) of every layer with parameters, in order (PyTorch's layout)."""
        out = []
        for layer, (i, o) in zip(self.layers, self.shapes(), strict=True):
            if layer[0] == "conv":
                out.append(((layer[1], i[0], layer[2], layer[3]), (layer[1],)))
            elif layer[0] in ("fc", "softmax"):
                out.append(((o[0], math.prod(i)), (o[0],)))
        return out

    def describe(self) -> str:
        parts = []
        for layer in self.layers:
            kind, args = layer[0], layer[1:]
            if kind == "conv":
                parts.append("conv{}x{}x{}".format(*args[:3]) + (f"s{args[3]}" if args[3] != 1 else "")
                             + (f"p{args[4]}" if args[4] else ""))
                continue
            parts.append({"pool": "pool{}x{}", "avgpool": "avgpool{}x{}", "fc": "fc{}", "softmax": "softmax{}"}[kind]
                         .format(*args))
        return f"{'x'.join(map(str, self.input))} → " + ", ".join(parts) + f" ({self.activation})"

    def to_dict(self) -> dict:
        return {"name": self.name, "input": list(self.input), "layers": [list(l) for l in self.layers],
                "activation": self.activation, "description": self.describe(), "sizes": list(self.sizes)}


NETS: dict[str, ConvNet] = {
    "basic_conv": ConvNet("basic_conv", (1, 28, 28), (("conv", 20, 5, 5), ("pool", 2, 2), ("fc", 100),
                                                      ("softmax", 10))),
    "dbl_conv": ConvNet("dbl_conv", (1, 28, 28), (("conv", 20, 5, 5), ("pool", 2, 2), ("conv", 40, 5, 5),
                                                  ("pool", 2, 2), ("fc", 100), ("softmax", 10))),
    "dbl_conv_relu": ConvNet("dbl_conv_relu", (1, 28, 28), (("conv", 20, 5, 5), ("pool", 2, 2), ("conv", 40, 5, 5),
                                                            ("pool", 2, 2), ("fc", 100), ("softmax", 10)), "relu"),
    "modern": ConvNet("modern", (1, 28, 28), (("conv", 16, 3, 3, 1, 1), ("conv", 32, 3, 3, 2, 1),
                                              ("conv", 32, 3, 3, 2, 1), ("avgpool", 7, 7), ("softmax", 10)), "relu"),
}


def as_net(net) -> ConvNet:
    if isinstance(net, ConvNet):
        return net
    if isinstance(net, str) and net in NETS:
        return NETS[net]
    raise ValueError(f"unknown conv net {net!r}; known: {', '.join(NETS)} (or pass a ConvNet)")


def conv_flops(net: ConvNet) -> dict:
    """Exact FLOPs per sample of one SGD step, 2 per multiply-add of the products (the dense harness's rule).

    Per conv layer with F maps over C channels, a kh×kw kernel and an Ho×Wo output, MACs = F·C·kh·kw·Ho·Wo:
    forward (z = W·patches) 2·MACs, ∂C/∂W (δ·patchesᵀ) 2·MACs, the input's δ (the full convolution of δ with
    the flipped kernel, Wᵀ·δ then col2im) 2·MACs except for the net's first layer, which needs none.  Per fc
    layer 2·n_in·n_out each for forward, ∂C/∂W and (not for the first layer) the input's δ.  Not counted:
    biases, activations, pooling (one comparison per input element forward, one scatter back), softmax, the
    scaling of the update (folded into the ∂C/∂W product) and im2col/col2im's copies and adds.
    Returns {"forward", "weights", "inputs", "total", "per_layer": [...]}.
    """
    fw = wg = ig = 0
    per_layer = []
    for k, (layer, (i, o)) in enumerate(zip(net.layers, net.shapes(), strict=True)):
        if layer[0] == "conv":
            macs = layer[1] * i[0] * layer[2] * layer[3] * o[1] * o[2]
        elif layer[0] in ("fc", "softmax"):
            macs = math.prod(i) * o[0]
        else:
            continue
        f, w, g = 2 * macs, 2 * macs, (2 * macs if k > 0 else 0)
        fw, wg, ig = fw + f, wg + w, ig + g
        per_layer.append({"layer": k + 1, "kind": layer[0], "macs": macs, "forward": f, "weights": w, "inputs": g})
    return {"forward": fw, "weights": wg, "inputs": ig, "total": fw + wg + ig, "per_layer": per_layer}


def conv_epoch_flops(net, n_samples: int) -> int:
    """Exact product FLOPs of one epoch over ``n_samples`` samples (see ``conv_flops``)."""
    return int(n_samples) * conv_flops(as_net(net))["total"]


def init_conv_params(net, dtype="float64", seed=0) -> list[tuple[np.ndarray, np.ndarray]]:
    """W ~ N(0, 1/fan_in) (fan_in = C·kh·kw or n_in), b ~ N(0, 1), cast to ``dtype``."""
    rng = np.random.default_rng(seed)
    out = []
    for wshape, bshape in as_net(net).param_shapes():
        fan_in = math.prod(wshape[1:])
        W = rng.standard_normal(wshape) / np.sqrt(fan_in)
        out.append((W.astype(dtype), rng.standard_normal(bshape).astype(dtype)))
    return out


def _check_conv_params(net: ConvNet, params) -> None:
    shapes = net.param_shapes()
    if len(params) != len(shapes):
        raise ValueError(f"{len(shapes)} (W, b) pairs expected for net {net.name!r}, got {len(params)}")
    for l, ((W, b), (ws, bs)) in enumerate(zip(params, shapes, strict=True), start=1):
        if np.shape(W) != ws or np.shape(b) != bs:
            raise ValueError(f"pair {l}: W must be {ws} and b {bs}, got {np.shape(W)} and {np.shape(b)}")


class ConvImpl(Impl):
    """An ``Impl`` of a conv net: ``setup(net, cost, ...)`` takes a ``ConvNet`` (or its name) where dense
    implementations take layer sizes; the cost must be ``"log-likelihood"``."""

    kind: ClassVar[str] = "conv"

    def setup(self, net, cost, dtype, params, X, Y, batch_size, eta, lmbda=0.0) -> None:
        net = as_net(net)
        if cost != COST:
            raise ValueError(f"conv nets end in softmax: cost must be {COST!r}, got {cost!r}")
        if np.dtype(dtype).name not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        _check_conv_params(net, params)
        if X.ndim != 2 or X.shape[1] != net.n_in or Y.shape != (X.shape[0], net.n_out):
            raise ValueError(f"X {X.shape} / Y {Y.shape} do not fit net {net.name!r} (flat rows of {net.n_in})")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.net, self.layers, self.cost, self.dtype = net, list(net.sizes), cost, np.dtype(dtype)
        self.m, self.eta, self.lmbda, self.n = int(batch_size), float(eta), float(lmbda), int(X.shape[0])
        t0 = time.perf_counter()
        self._setup(params, X, Y)
        self.setup_seconds = time.perf_counter() - t0
