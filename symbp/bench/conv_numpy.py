"""The conv nets' NumPy implementation of one SGD epoch, written from the math, independently of symbp's code:
``numpy-im2col``, the cross-check reference for conv cases in float64.

Takes: what ``symbp.bench.conv_nets.ConvImpl.setup`` takes (a ``ConvNet``, its parameters in PyTorch's layout,
flat rows of X in (channel, row, column) order, one-hot Y, mini-batch size, eta, lmbda).  Gives:
``NumpyIm2col``: the whole mini-batch at once, images kept as (rows, height, width, channels); a conv layer's
patches one ``sliding_window_view`` copy (im2col) of shape (m·Ho·Wo, C·kh·kw), the forward pass one matmul, ∂C/∂W
another, the input's δ a third followed by col2im; max-pooling by ``argmax`` over each window (the first maximum
in row-major order on ties), average pooling by the window's mean.
"""

from __future__ import annotations

import numpy as np

from symbp.bench.conv_nets import ConvImpl
from symbp.bench.impl import BatchedNumpy


def _act(name, z):
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    return np.maximum(z, 0)


def _act_prime_from_a(name, a):
    if name == "sigmoid":
        return a * (1 - a)
    return (a > 0).astype(a.dtype)


class NumpyIm2col(BatchedNumpy, ConvImpl):
    """The mini-batch as one array (rows, height, width, channels); im2col by ``sliding_window_view``, the
    three products of each conv layer as matmuls; the cross-check reference of conv cases (in float64)."""

    name = "numpy-im2col"

    def _setup(self, params, X, Y):
        C, H, W = self.net.input
        # images as (n, H, W, C): the patches of a window then sit together in memory for the matmul
        self.X = np.ascontiguousarray(np.asarray(X, dtype=self.dtype).reshape(-1, C, H, W).transpose(0, 2, 3, 1))
        self.Y = np.asarray(Y, dtype=self.dtype)
        self.set_params(params)

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
