"""Convolutional nets (Nielsen's chapter 6) in the benchmark harness: net specs, exact FLOP counts, and the
implementations of one SGD epoch of them.

Takes: a ``ConvNet`` (an input shape (C, H, W), then ``("conv", maps, kh, kw)`` or ``("conv", maps, kh, kw,
stride, padding)``, ``("pool", ph, pw)`` (max), ``("avgpool", ph, pw)``, ``("fc", n)`` layers and a final
``("softmax", k)``; pools have stride = window, as PyTorch's default; one elementwise activation, sigmoid or
ReLU, in every conv and hidden fc layer; the cost is the log-likelihood of the softmax output), initial
parameters ``[(W, b), ...]`` in PyTorch's layout (conv W (maps, C, kh, kw), fc W (n_out, n_in)), the training
set as flat rows (``X`` (n, C·H·W) in (channel, row, column) order, one-hot ``Y`` (n, k)), mini-batch size m, η,
λ. Gives: ``NETS`` (the book's ``basic_conv`` and ``dbl_conv``), ``conv_flops`` (exact per-sample multiply-add
counts), and the implementations registered in ``CONV_IMPLS``, all behind ``symbp.bench.impl.Impl``'s
interface. ``NETS`` also holds ``modern``, a small net as a recent paper would write it (conv 16@3×3 padding 1,
conv 32@3×3 stride 2 padding 1 twice, a global average pool, softmax 10; ReLU):

- ``numpy-im2col``: written from the math, independently of symbp's code: the whole mini-batch at once,
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
  compiled by ``torch.compile``; first tried in a fresh process with a time limit (``baselines.COMPILE_TIMEOUT``), and
  reported unavailable with the reason when it fails or takes too long.
- ``jax-scan``: the whole epoch one jitted ``lax.scan`` over the mini-batches (``lax.conv_general_dilated``,
  ``lax.reduce_window``, ``jax.grad`` of the mean log-likelihood), as the dense harness's JAX implementation.
- ``symbp-numba-epoch`` / ``symbp-numpy``: symbp's compiled model (``sb.Network([sb.Input(...),
  sb.Conv2D(...), sb.MaxPool(...), ...], cost=sb.log_likelihood).compile(...)``) and ``model.run_epoch``.

The update per mini-batch: W ← (1 − ηλ/n)·W − (η/m)·Σ_x ∂C_x/∂W, b ← b − (η/m)·Σ_x ∂C_x/∂b, δ at the output
= softmax(z) − y.

The net specs, FLOP counts, initial parameters and ``ConvImpl`` are in ``symbp.bench.conv_nets``;
``numpy-im2col`` is in ``symbp.bench.conv_numpy``.  This module holds the PyTorch, JAX and symbp
implementations and the registry; the names it had are importable from it as before.
"""

from __future__ import annotations

import math
import time
from typing import ClassVar

import numpy as np

from symbp.bench.baselines import COMPILE_TIMEOUT, JaxScan, keep_torch_threads, torch_compile_trial
from symbp.bench.conv_nets import (  # noqa: F401  (re-exported: the conv harness's names)
    ACTIVATIONS,
    COST,
    NETS,
    ConvImpl,
    ConvNet,
    as_net,
    conv_epoch_flops,
    conv_flops,
    init_conv_params,
)
from symbp.bench.conv_numpy import NumpyIm2col
from symbp.bench.impl import DTYPES, Impl, ImplUnavailable  # noqa: F401  (DTYPES re-exported)
from symbp.bench.impls import SymbpAdapter


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

    @classmethod
    def case_network(cls, case, sb):
        return sb.Network(symbp_layers(case.net, sb), cost=sb.log_likelihood)

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
