"""Convolutional nets (Nielsen's chapter 6) in the benchmark harness: net specs, exact FLOP counts, and the
implementations of one SGD epoch of them.

Takes: a ``ConvNet`` (an input shape (C, H, W), then ``("conv", maps, kh, kw)`` or ``("conv", maps, kh, kw,
stride, padding)``, ``("pool", ph, pw)`` (max), ``("avgpool", ph, pw)``, ``("fc", n)`` layers and a final
``("softmax", k)``; pools have stride = window, as PyTorch's default; one elementwise activation, sigmoid or
ReLU, in every conv and hidden fc layer; the cost is the log-likelihood of the softmax output), initial
parameters ``[(W, b), ...]`` in PyTorch's layout (conv W (maps, C, kh, kw), fc W (n_out, n_in)), the training
set as flat rows (``X`` (n, C·H·W) in (channel, row, column) order, one-hot ``Y`` (n, k)), mini-batch size m, η,
λ. Gives: ``NETS`` (the book's ``basic_conv`` and ``dbl_conv``), ``conv_flops`` (exact per-sample multiply-add
counts), and the implementations registered in ``CONV_IMPLS``, all behind ``symbp.bench.impls.Impl``'s
interface. ``NETS`` also holds ``modern``, a small net as a recent paper would write it (conv 16@3×3 padding 1,
conv 32@3×3 stride 2 padding 1 twice, a global average pool, softmax 10; ReLU):

- ``numpy-im2col``: written here from the math, independently of symbp's code: the whole mini-batch at once,
  images kept as (rows, height, width, channels); a conv layer's patches are one ``sliding_window_view`` copy
  (im2col, of the zero-padded images, every stride-th window) of shape (m·Ho·Wo, C·kh·kw), the forward pass
  one matmul with W as (maps, C·kh·kw), ∂C/∂W another, the input's δ a third followed by col2im (kh·kw
  strided adds, then the padding cropped); max-pooling by ``argmax`` over each window (the first maximum in
  row-major order on ties, as symbp and PyTorch), average pooling by the window's mean (δ/(ph·pw) back to
  each of its pixels).  In float64 it is the cross-check reference for conv cases.
- ``torch-eager``: ``nn.Conv2d``/``F.max_pool2d``/``F.avg_pool2d``/``nn.Linear``, ``F.cross_entropy`` (mean over the
  mini-batch) and ``torch.optim.SGD`` (lr = η; weight decay λ/n on the weights only), one step per
  mini-batch, ``torch.set_num_threads(threads)``.
- ``torch-compile``: the same module and step with the loss (forward and, through AOTAutograd, backward)
  compiled by ``torch.compile``; first tried in a fresh process with a time limit (``impls.COMPILE_TIMEOUT``), and
  reported unavailable with the reason when it fails or takes too long.
- ``jax-scan``: the whole epoch one jitted ``lax.scan`` over the mini-batches (``lax.conv_general_dilated``,
  ``lax.reduce_window``, ``jax.grad`` of the mean log-likelihood), as the dense harness's JAX implementation.
- ``symbp-numba-epoch`` / ``symbp-numpy``: symbp's compiled model (``sb.Network([sb.Input(...),
  sb.Conv2D(...), sb.MaxPool(...), ...], cost=sb.log_likelihood).compile(...)``) and ``model.run_epoch``.

The update per mini-batch: W ← (1 − ηλ/n)·W − (η/m)·Σ_x ∂C_x/∂W, b ← b − (η/m)·Σ_x ∂C_x/∂b, δ at the output
= softmax(z) − y.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import ClassVar

import numpy as np

from symbp.bench.impls import (
    COMPILE_TIMEOUT,
    DTYPES,
    Impl,
    ImplUnavailable,
    JaxScan,
    SymbpAdapter,
    keep_torch_threads,
    torch_compile_trial,
)

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


# ------------------------------------------------------------------------------------ NumPy from the math
def _act(name, z):
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    return np.maximum(z, 0)


def _act_prime_from_a(name, a):
    if name == "sigmoid":
        return a * (1 - a)
    return (a > 0).astype(a.dtype)


class NumpyIm2col(ConvImpl):
    """The mini-batch as one array (rows, height, width, channels); im2col by ``sliding_window_view``, the
    three products of each conv layer as matmuls; the cross-check reference of conv cases (in float64)."""

    name = "numpy-im2col"

    def _setup(self, params, X, Y):
        C, H, W = self.net.input
        # images as (n, H, W, C): the patches of a window then sit together in memory for the matmul
        self.X = np.ascontiguousarray(np.asarray(X, dtype=self.dtype).reshape(-1, C, H, W).transpose(0, 2, 3, 1))
        self.Y = np.asarray(Y, dtype=self.dtype)
        self.set_params(params)

    def set_params(self, params):
        self.Ws = [np.array(W, dtype=self.dtype) for W, _ in params]
        self.bs = [np.array(b, dtype=self.dtype) for _, b in params]

    def params(self):
        return [(W.copy(), b.copy()) for W, b in zip(self.Ws, self.bs, strict=True)]

    def epoch(self, order):
        m = self.m
        with np.errstate(over="ignore"):
            for k in range(len(order) // m):
                idx = order[k * m : (k + 1) * m]
                self.update(self.X[idx], self.Y[idx])

    def update(self, Xb, Yb):
        """One SGD step on the mini-batch: Xb (m, H, W, C), Yb one-hot (m, k)."""
        act = self.net.activation
        m = Xb.shape[0]
        a = Xb
        tape = []  # per layer: what the backward pass needs
        p = 0  # parameter index
        for layer in self.net.layers:
            kind = layer[0]
            if kind == "conv":
                W, b = self.Ws[p], self.bs[p]
                F, C, kh, kw = W.shape
                s, pad = layer[4], layer[5]
                in_shape = a.shape
                if pad:
                    a = np.pad(a, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
                _, H, Wd, _ = a.shape
                Ho, Wo = (H - kh) // s + 1, (Wd - kw) // s + 1
                # (m, Ho, Wo, C, kh, kw) -> rows of patches in W's (c, p, q) order: a copy (im2col)
                win = np.lib.stride_tricks.sliding_window_view(a, (kh, kw), axis=(1, 2))[:, ::s, ::s][:, :Ho, :Wo]
                cols = win.reshape(m * Ho * Wo, -1)
                z = cols @ W.reshape(F, -1).T
                z += b
                out = _act(act, z).reshape(m, Ho, Wo, F)
                tape.append(("conv", p, cols, in_shape, out, s, pad))
                a, p = out, p + 1
            elif kind == "pool":
                ph, pw = layer[1], layer[2]
                _, H, Wd, C = a.shape
                Hp, Wp = H // ph, Wd // pw
                win = a[:, : Hp * ph, : Wp * pw].reshape(m, Hp, ph, Wp, pw, C).transpose(0, 1, 3, 5, 2, 4)
                win = win.reshape(m, Hp, Wp, C, ph * pw)
                arg = win.argmax(axis=-1)  # the first maximum in row-major window order
                out = np.take_along_axis(win, arg[..., None], axis=-1)[..., 0]
                tape.append(("pool", (ph, pw), arg, a.shape))
                a = out
            elif kind == "avgpool":
                ph, pw = layer[1], layer[2]
                _, H, Wd, C = a.shape
                Hp, Wp = H // ph, Wd // pw
                win = a[:, : Hp * ph, : Wp * pw].reshape(m, Hp, ph, Wp, pw, C)
                tape.append(("avgpool", (ph, pw), None, a.shape))
                a = win.mean(axis=(2, 4))
            else:
                if a.ndim == 4:  # flatten as torch.flatten: (channel, row, column)
                    tape.append(("flatten", a.shape))
                    a = a.transpose(0, 3, 1, 2).reshape(m, -1)
                W, b = self.Ws[p], self.bs[p]
                z = a @ W.T
                z += b
                if kind == "softmax":
                    z -= z.max(axis=1, keepdims=True)
                    e = np.exp(z)
                    out = e / e.sum(axis=1, keepdims=True)
                else:
                    out = _act(act, z)
                tape.append((kind, p, a, out))
                a, p = out, p + 1

        grads = [None] * len(self.Ws)
        delta = a - Yb  # ∂C/∂z of the softmax layer (log-likelihood); elsewhere ∂C/∂(the entry's output)
        for k in range(len(tape) - 1, -1, -1):
            entry = tape[k]
            kind = entry[0]
            below = any(e[0] in ("conv", "fc", "softmax") for e in tape[:k])  # else no input δ is needed
            if kind == "avgpool":
                _, (ph, pw), _, in_shape = entry
                mm, H, Wd, C = in_shape
                Hp, Wp = H // ph, Wd // pw
                g = np.zeros(in_shape, dtype=delta.dtype)
                share = delta / (ph * pw)  # (m, Hp, Wp, C): each pixel of a window gets its share
                g[:, : Hp * ph, : Wp * pw] = np.repeat(np.repeat(share, ph, axis=1), pw, axis=2)
                delta = g
                continue
            if kind == "flatten":
                _, H, Wd, C = entry[1]
                delta = delta.reshape(-1, C, H, Wd).transpose(0, 2, 3, 1)
            elif kind == "pool":
                _, (ph, pw), arg, in_shape = entry
                mm, H, Wd, C = in_shape
                Hp, Wp = H // ph, Wd // pw
                g = np.zeros((mm, Hp, Wp, C, ph * pw), dtype=delta.dtype)
                np.put_along_axis(g, arg[..., None], delta[..., None], axis=-1)
                g = g.reshape(mm, Hp, Wp, C, ph, pw).transpose(0, 1, 4, 2, 5, 3).reshape(mm, Hp * ph, Wp * pw, C)
                if (Hp * ph, Wp * pw) != (H, Wd):  # cropped rows and columns get no gradient
                    full = np.zeros(in_shape, dtype=delta.dtype)
                    full[:, : Hp * ph, : Wp * pw] = g
                    g = full
                delta = g
            elif kind in ("fc", "softmax"):
                _, p, a_in, out = entry
                if kind == "fc":
                    delta = delta * _act_prime_from_a(act, out)
                grads[p] = (delta.T @ a_in, delta.sum(axis=0))
                delta = delta @ self.Ws[p] if below else None
            else:  # conv
                _, p, cols, in_shape, out, s, pad = entry
                W = self.Ws[p]
                F, C, kh, kw = W.shape
                d2 = (delta * _act_prime_from_a(act, out)).reshape(-1, F)
                grads[p] = ((d2.T @ cols).reshape(W.shape), d2.sum(axis=0))
                if below:  # the input's δ: Wᵀ·δ per output position, then col2im (the full convolution)
                    mm, H, Wd, _ = in_shape
                    Ho, Wo = out.shape[1], out.shape[2]
                    dcols = (d2 @ W.reshape(F, -1)).reshape(mm, Ho, Wo, C, kh, kw)
                    g = np.zeros((mm, H + 2 * pad, Wd + 2 * pad, C), dtype=delta.dtype)
                    for pp in range(kh):
                        for qq in range(kw):
                            g[:, pp : pp + s * (Ho - 1) + 1 : s, qq : qq + s * (Wo - 1) + 1 : s, :] += \
                                dcols[:, :, :, :, pp, qq]
                    delta = g[:, pad : pad + H, pad : pad + Wd]
                else:
                    delta = None
        step = self.eta / len(Xb)
        decay = 1 - self.eta * self.lmbda / self.n
        for W, b, (gW, gb) in zip(self.Ws, self.bs, grads, strict=True):
            if decay != 1:
                W *= decay
            W -= step * gW
            b -= step * gb


# ---------------------------------------------------------------------------------------------- PyTorch
def _torch_available():
    try:
        import torch  # noqa: F401
    except Exception as exc:  # ImportError, or a broken install raising something else
        return False, f"import torch failed: {exc}"
    return True, ""


def _torch_module(net: ConvNet, torch):
    nn, F = torch.nn, torch.nn.functional
    act = torch.sigmoid if net.activation == "sigmoid" else torch.relu

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.ops = []
            mods = []
            for layer, (i, o) in zip(net.layers, net.shapes(), strict=True):
                if layer[0] == "conv":
                    mods.append(nn.Conv2d(i[0], layer[1], (layer[2], layer[3]), stride=layer[4], padding=layer[5]))
                    self.ops.append(("conv", len(mods) - 1))
                elif layer[0] in ("pool", "avgpool"):
                    self.ops.append((layer[0], (layer[1], layer[2])))
                else:
                    if len(i) == 3:
                        self.ops.append(("flatten", None))
                    mods.append(nn.Linear(math.prod(i), o[0]))
                    self.ops.append((layer[0], len(mods) - 1))
            self.mods = nn.ModuleList(mods)

        def forward(self, x):
            for kind, arg in self.ops:
                if kind == "pool":
                    x = F.max_pool2d(x, arg)
                elif kind == "avgpool":
                    x = F.avg_pool2d(x, arg)
                elif kind == "flatten":
                    x = torch.flatten(x, 1)
                elif kind == "softmax":
                    x = self.mods[arg](x)  # logits: the loss applies log-softmax
                else:
                    x = act(self.mods[arg](x))
            return x

    return Net()


class TorchConvEager(ConvImpl):
    """PyTorch eager on the CPU: ``nn.Conv2d``/``F.max_pool2d``/``nn.Linear``, autograd, ``optim.SGD``."""

    name = "torch-eager"
    compiled: ClassVar[bool] = False

    @classmethod
    def available(cls):
        return _torch_available()

    def set_threads(self, threads):
        self._threads = int(threads)
        self._torch.set_num_threads(self._threads)

    def _setup(self, params, X, Y):
        import torch

        self._torch = torch
        self._threads = 1
        torch.set_num_threads(1)  # the harness sets its thread count again before timing
        self._tdtype = {"float64": torch.float64, "float32": torch.float32}[self.dtype.name]
        C, H, W = self.net.input
        self.X = torch.tensor(np.asarray(X, dtype=self.dtype).reshape(-1, C, H, W))  # a copy
        self.labels = torch.as_tensor(np.asarray(Y).argmax(axis=1).astype(np.int64))
        self.model = _torch_module(self.net, torch).to(self._tdtype)
        self.set_params(params)
        weights = [m.weight for m in self.model.mods]
        biases = [m.bias for m in self.model.mods]
        self.opt = torch.optim.SGD([{"params": weights, "weight_decay": self.lmbda / self.n},
                                    {"params": biases, "weight_decay": 0.0}], lr=self.eta)
        self.loss = self._loss_fn()
        self.info = {"torch": torch.__version__, "threads": torch.get_num_threads(),
                     "mkldnn": bool(torch.backends.mkldnn.is_available())}
        if self.compiled:
            self._compile()

    def _loss_fn(self):
        F, model = self._torch.nn.functional, self.model

        def loss(xb, yb):
            return F.cross_entropy(model(xb), yb)  # mean over the mini-batch: lr = η is the book's η/m step

        return loss

    def set_params(self, params):
        with self._torch.no_grad():
            for mod, (W, b) in zip(self.model.mods, params, strict=True):
                mod.weight.copy_(self._torch.as_tensor(np.asarray(W, dtype=self.dtype)))
                mod.bias.copy_(self._torch.as_tensor(np.asarray(b, dtype=self.dtype)))

    def params(self):
        return [(m.weight.detach().numpy().copy(), m.bias.detach().numpy().copy()) for m in self.model.mods]

    def epoch(self, order):
        keep_torch_threads(self)
        m, opt, loss = self.m, self.opt, self.loss
        order_t = self._torch.as_tensor(np.asarray(order, dtype=np.int64))
        for k in range(len(order) // m):
            idx = order_t[k * m : (k + 1) * m]
            opt.zero_grad(set_to_none=True)
            loss(self.X[idx], self.labels[idx]).backward()
            opt.step()


class TorchConvCompile(TorchConvEager):
    """The same as ``torch-eager`` with the loss compiled by ``torch.compile`` (default inductor backend)."""

    name = "torch-compile"
    compiled = True

    def _compile(self):
        torch = self._torch
        spec = {"net": self.net.to_dict(), "dtype": self.dtype.name, "m": self.m}
        trial = torch_compile_trial("symbp.bench.conv", spec, COMPILE_TIMEOUT)
        self.info["compile_trial"] = trial
        self.loss = torch.compile(self._loss_fn(), fullgraph=True, dynamic=False)
        xb, yb = self.X[: self.m], self.labels[: self.m]
        state = [p.detach().clone() for p in self.model.parameters()]
        t0 = time.perf_counter()
        try:
            self.loss(xb, yb).backward()  # compiles forward and backward (a warm inductor cache after the trial)
        except Exception as exc:
            raise ImplUnavailable(f"torch.compile failed here: {type(exc).__name__}: {str(exc)[:300]}") from exc
        self.compile_seconds = time.perf_counter() - t0
        self.opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            for p, s in zip(self.model.parameters(), state, strict=True):
                p.copy_(s)


def compile_trial_main(spec: dict) -> dict:
    """The conv net's trial, in the fresh process of ``impls.torch_compile_trial``."""
    import torch

    torch.set_num_threads(1)
    n = spec["net"]
    net = ConvNet(n["name"], tuple(n["input"]), tuple(tuple(l) for l in n["layers"]), n["activation"])
    tdtype = {"float64": torch.float64, "float32": torch.float32}[spec["dtype"]]
    model = _torch_module(net, torch).to(tdtype)
    F = torch.nn.functional
    loss = torch.compile(lambda xb, yb: F.cross_entropy(model(xb), yb), fullgraph=True, dynamic=False)
    xb = torch.rand((spec["m"], *net.input), dtype=tdtype)
    yb = torch.randint(0, net.n_out, (spec["m"],))
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        loss(xb, yb).backward()
        times.append(time.perf_counter() - t0)
    return {"first_step_s": times[0], "second_step_s": times[1]}


# ---------------------------------------------------------------------------------------------- JAX
def jax_conv_epoch(jax, jnp, net: ConvNet, m: int, eta: float, decay: float):
    """The whole epoch ``epoch(params, X, Y, order) -> params`` of a conv net in JAX: one ``lax.scan`` over the
    mini-batches (gathered by ``order`` inside it), each step ``jax.grad`` of the mean log-likelihood, then
    W ← decay·W − η·∂C/∂W, b ← b − η·∂C/∂b.  Convolutions are ``lax.conv_general_dilated`` (NCHW / OIHW, the
    net's stride and padding), max-pools ``lax.reduce_window`` with ``max``, average pools with ``add`` over the
    window's size; X holds flat rows in (channel, row, column) order, Y one-hot rows."""
    lax = jax.lax
    act = jax.nn.sigmoid if net.activation == "sigmoid" else jax.nn.relu
    C, H, W = net.input

    def forward(params, x):
        a, p = x.reshape((-1, C, H, W)), 0
        for layer in net.layers:
            kind = layer[0]
            if kind == "conv":
                Wt, b = params[p]
                s, pad = layer[4], layer[5]
                z = lax.conv_general_dilated(a, Wt, (s, s), [(pad, pad), (pad, pad)],
                                             dimension_numbers=("NCHW", "OIHW", "NCHW"))
                a, p = act(z + b[None, :, None, None]), p + 1
            elif kind in ("pool", "avgpool"):
                win = (1, 1, layer[1], layer[2])
                if kind == "pool":
                    a = lax.reduce_window(a, -jnp.inf, lax.max, win, win, "VALID")
                else:
                    a = lax.reduce_window(a, 0.0, lax.add, win, win, "VALID") / (layer[1] * layer[2])
            else:
                Wt, b = params[p]
                z = a.reshape((a.shape[0], -1)) @ Wt.T + b
                a, p = (z if kind == "softmax" else act(z)), p + 1
        return a  # the softmax layer's z: the cost applies log-softmax

    def cost(params, xb, yb):
        return -jnp.mean(jnp.sum(yb * jax.nn.log_softmax(forward(params, xb)), axis=1))

    grad = jax.grad(cost)

    def step(params, X, Y, idx):
        g = grad(params, X[idx], Y[idx])
        return [(decay * Wt - eta * gW, b - eta * gb) for (Wt, b), (gW, gb) in zip(params, g, strict=True)]

    def epoch(params, X, Y, order):
        nb = order.shape[0] // m
        params, _ = lax.scan(lambda q, idx: (step(q, X, Y, idx), None), params, order[: nb * m].reshape(nb, m))
        return params

    return epoch


class JaxConvScan(ConvImpl, JaxScan):
    """JAX: the dense harness's ``jax-scan`` (the whole epoch one jitted ``lax.scan``, x64 enabled for the float64
    cross-check, ``compile_seconds`` the ahead-of-time lower + compile for the epoch's length) with the conv
    net's epoch (``jax_conv_epoch``); no fresh-process compile probe."""

    def _make_epoch(self):
        return jax_conv_epoch(self._jax, self._jnp, self.net, self.m, self.eta, 1 - self.eta * self.lmbda / self.n)

    @classmethod
    def probe_key(cls, case):
        return None


# -------------------------------------------------------------------------------------------- symbp
def symbp_layers(net: ConvNet, sb):
    act = {"sigmoid": sb.sigmoid, "relu": sb.relu}[net.activation]
    layers = [sb.Input(net.input)]
    for layer in net.layers:
        kind, args = layer[0], layer[1:]
        if kind == "conv":
            layers.append(sb.Conv2D(args[0], (args[1], args[2]), act, stride=args[3], padding=args[4]))
        elif kind == "pool":
            layers.append(sb.MaxPool((args[0], args[1])))
        elif kind == "avgpool":
            layers.append(sb.AvgPool((args[0], args[1])))
        elif kind == "fc":
            layers.append(sb.Dense(args[0], act))
        else:
            layers.append(sb.Dense(args[0], sb.softmax))
    return layers


class _SymbpConv(SymbpAdapter, ConvImpl):
    """symbp's compiled conv model, ``model.run_epoch`` over the whole epoch (one kernel call); everything but
    the network is the dense adapter's (``impls.SymbpAdapter``)."""

    requires: ClassVar[tuple[str, ...]] = ("Network", "Input", "Conv2D", "MaxPool", "AvgPool", "Dense",
                                           "log_likelihood")

    def _network(self, sb):
        return sb.Network(symbp_layers(self.net, sb), cost=sb.log_likelihood)


class SymbpConvNumba(_SymbpConv):
    """symbp, numba backend: the whole epoch in one kernel call (im2col + BLAS gemm per sample)."""

    name = "symbp-numba-epoch"


class SymbpConvNumpy(_SymbpConv):
    """symbp, NumPy backend, ``run_epoch`` over the whole epoch."""

    name = "symbp-numpy"
    backend = "numpy"


CONV_IMPLS: dict[str, type[Impl]] = {
    cls.name: cls for cls in (NumpyIm2col, TorchConvEager, TorchConvCompile, JaxConvScan, SymbpConvNumba,
                              SymbpConvNumpy)
}
CONV_REFERENCE = NumpyIm2col.name
