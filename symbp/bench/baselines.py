"""The baselines of the dense SGD epoch written from the math, independently of symbp's compiler: NumPy,
PyTorch and JAX.

Takes: what ``symbp.bench.impl.Impl.setup`` takes (layers, cost, dtype, parameters, rows of X and one-hot Y,
mini-batch size, eta, lmbda).  Gives: ``NumpyPerSample`` (``numpy-per-sample``: the book's network2 algorithm,
column vectors), ``NumpyBatched`` (``numpy-batched``: the whole mini-batch as one matrix; the reference),
``TorchEager`` (``torch-eager``: autograd), ``TorchCompile`` (``torch-compile``: the same loss compiled by
``torch.compile``, first tried in a fresh process), ``JaxScan`` (``jax-scan``: the whole epoch in one jitted
``lax.scan``, its graph in ``symbp.bench.peer_graphs``), and the torch helpers the conv nets share:
``torch_compile_trial`` (a compile trial in a fresh process with a time limit, ``COMPILE_TIMEOUT``),
``keep_torch_threads``, ``torch_dense_loss``.
"""

from __future__ import annotations

import os
import subprocess
import time
from typing import ClassVar

import numpy as np

from symbp.bench.fresh import FreshProcessError, call_json, peer_probe
from symbp.bench.impl import BatchedNumpy, Impl, ImplUnavailable

#: seconds a ``torch.compile`` trial may take in its fresh process before torch-compile is skipped
COMPILE_TIMEOUT = float(os.environ.get("SYMBP_BENCH_COMPILE_TIMEOUT", "420"))


# ------------------------------------------------------------------------------------- NumPy baselines
def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


class NumpyPerSample(Impl):
    """The book's network2.py ``update_mini_batch``/``backprop``: per sample, column vectors, np.dot."""

    name = "numpy-per-sample"

    def _setup(self, params, X, Y):
        self.set_params(params)
        # The book keeps its training data as a list of (x, y) column vectors; views, no copy.
        self._xs = [x.reshape(-1, 1) for x in np.asarray(X, dtype=self.dtype)]
        self._ys = [y.reshape(-1, 1) for y in np.asarray(Y, dtype=self.dtype)]

    def set_params(self, params):
        self.weights = [np.array(W, dtype=self.dtype) for W, _ in params]
        self.biases = [np.array(b, dtype=self.dtype).reshape(-1, 1) for _, b in params]

    def params(self):
        return [(W.copy(), b.ravel().copy()) for W, b in zip(self.weights, self.biases, strict=True)]

    def epoch(self, order):
        m = self.m
        with np.errstate(over="ignore"):  # exp(-z) overflowing to inf gives sigmoid 0, as it should
            for k in range(len(order) // m):
                mini_batch = [(self._xs[i], self._ys[i]) for i in order[k * m : (k + 1) * m]]
                self.update_mini_batch(mini_batch, self.eta, self.lmbda, self.n)

    def update_mini_batch(self, mini_batch, eta, lmbda, n):
        nabla_b = [np.zeros(b.shape, dtype=self.dtype) for b in self.biases]
        nabla_w = [np.zeros(w.shape, dtype=self.dtype) for w in self.weights]
        for x, y in mini_batch:
            delta_nabla_b, delta_nabla_w = self.backprop(x, y)
            nabla_b = [nb + dnb for nb, dnb in zip(nabla_b, delta_nabla_b, strict=True)]
            nabla_w = [nw + dnw for nw, dnw in zip(nabla_w, delta_nabla_w, strict=True)]
        self.weights = [
            (1 - eta * (lmbda / n)) * w - (eta / len(mini_batch)) * nw
            for w, nw in zip(self.weights, nabla_w, strict=True)
        ]
        self.biases = [b - (eta / len(mini_batch)) * nb for b, nb in zip(self.biases, nabla_b, strict=True)]

    def backprop(self, x, y):
        nabla_b = [None] * len(self.biases)
        nabla_w = [None] * len(self.weights)
        activation = x
        activations = [x]
        zs = []
        for b, w in zip(self.biases, self.weights, strict=True):
            z = np.dot(w, activation) + b
            zs.append(z)
            activation = _sigmoid(z)
            activations.append(activation)
        if self.cost == "quadratic":
            delta = (activations[-1] - y) * _sigmoid_prime(zs[-1])
        else:
            delta = activations[-1] - y
        nabla_b[-1] = delta
        nabla_w[-1] = np.dot(delta, activations[-2].transpose())
        for l in range(2, len(self.weights) + 1):
            sp = _sigmoid_prime(zs[-l])
            delta = np.dot(self.weights[-l + 1].transpose(), delta) * sp
            nabla_b[-l] = delta
            nabla_w[-l] = np.dot(delta, activations[-l - 1].transpose())
        return nabla_b, nabla_w


def _sigmoid_prime(z):
    s = _sigmoid(z)
    return s * (1 - s)


class NumpyBatched(BatchedNumpy, Impl):
    """Matrix-batched NumPy: a mini-batch is a matrix of rows, Z = A @ W.T + b; the cross-check reference."""

    name = "numpy-batched"

    def _setup(self, params, X, Y):
        self.set_params(params)
        self.X = np.asarray(X, dtype=self.dtype)
        self.Y = np.asarray(Y, dtype=self.dtype)

    def update(self, Xb, Yb):
        """One SGD step on the mini-batch (Xb, Yb), rows are samples."""
        activations = [Xb]
        for W, b in zip(self.Ws, self.bs, strict=True):
            activations.append(_sigmoid(activations[-1] @ W.T + b))
        a = activations[-1]
        delta = a - Yb  # BP1; cross-entropy with sigmoid output cancels sigma'(z)
        if self.cost == "quadratic":
            delta *= a * (1 - a)
        grads = []
        for l in range(len(self.Ws) - 1, -1, -1):
            grads.append((delta.T @ activations[l], delta.sum(axis=0)))  # BP4, BP3 summed over the batch
            if l:
                a = activations[l]
                delta = (delta @ self.Ws[l]) * (a * (1 - a))  # BP2
        step = self.eta / len(Xb)
        decay = 1 - self.eta * self.lmbda / self.n
        for W, b, (nabla_w, nabla_b) in zip(self.Ws, self.bs, reversed(grads), strict=True):
            if decay != 1:
                W *= decay
            W -= step * nabla_w
            b -= step * nabla_b


# ---------------------------------------------------------------------------------------- PyTorch, JAX
class TorchEager(Impl):
    """PyTorch eager mode on the CPU, gradients by autograd, SGD updates under ``torch.no_grad()``."""

    name = "torch-eager"
    compiled: ClassVar[bool] = False

    @classmethod
    def available(cls):
        try:
            import torch  # noqa: F401
        except Exception as exc:  # ImportError, or a broken install raising something else
            return False, f"import torch failed: {exc}"
        return True, ""

    def set_threads(self, threads):
        self._threads = int(threads)
        self._torch.set_num_threads(self._threads)

    def _setup(self, params, X, Y):
        import torch

        self._torch = torch
        self._threads = torch.get_num_threads()
        self._tdtype = {"float64": torch.float64, "float32": torch.float32}[self.dtype.name]
        self.X = torch.tensor(np.asarray(X, dtype=self.dtype))  # a copy: the input may be read-only
        self.Y = torch.tensor(np.asarray(Y, dtype=self.dtype))
        self.set_params(params)
        self.info = {"torch": torch.__version__, "threads": torch.get_num_threads()}
        self.loss = torch_dense_loss(torch, self.cost)
        if self.compiled:
            self._compile()

    def set_params(self, params):
        t = self._torch
        self.Ws = [t.tensor(np.asarray(W), dtype=self._tdtype, requires_grad=True) for W, _ in params]
        self.bs = [t.tensor(np.asarray(b), dtype=self._tdtype, requires_grad=True) for _, b in params]

    def params(self):
        return [(W.detach().numpy().copy(), b.detach().numpy().copy()) for W, b in zip(self.Ws, self.bs, strict=True)]

    def epoch(self, order):
        keep_torch_threads(self)
        torch, loss = self._torch, self.loss
        m, eta = self.m, self.eta
        decay = 1 - eta * self.lmbda / self.n
        order_t = torch.as_tensor(np.asarray(order, dtype=np.int64))
        for k in range(len(order) // m):
            idx = order_t[k * m : (k + 1) * m]
            loss(self.Ws, self.bs, self.X[idx], self.Y[idx]).backward()
            with torch.no_grad():
                for W, b in zip(self.Ws, self.bs, strict=True):
                    if decay != 1:
                        W.mul_(decay)
                    W.sub_(W.grad, alpha=eta / len(idx))
                    b.sub_(b.grad, alpha=eta / len(idx))
                    W.grad = None
                    b.grad = None


def torch_dense_loss(torch, cost):
    """``loss(Ws, bs, xb, yb)``: the mini-batch's summed cost of the dense sigmoid net (a tensor scalar)."""
    F = torch.nn.functional

    def loss(Ws, bs, xb, yb):
        a, L = xb, len(Ws)
        for l in range(L):
            z = a @ Ws[l].T + bs[l]
            a = torch.sigmoid(z) if l < L - 1 or cost == "quadratic" else None
        if cost == "quadratic":
            return 0.5 * ((a - yb) ** 2).sum()
        # from the logits: the gradient at z is exactly sigmoid(z) - y
        return F.binary_cross_entropy_with_logits(z, yb, reduction="sum")

    return loss


def keep_torch_threads(impl) -> None:
    """Put torch back at its thread count if something changed OpenMP's under it: numba's OpenMP threading
    layer, started after torch (``numba.set_num_threads``), resets the shared libgomp to every core, and
    measured here torch then ran 70x slower next to busy cores.  One call per epoch; the count is recorded."""
    torch = impl._torch
    if torch.get_num_threads() != impl._threads:
        impl.info["threads_reset"] = impl.info.get("threads_reset", 0) + 1
        torch.set_num_threads(impl._threads)
    impl.info["threads"] = torch.get_num_threads()


class TorchCompile(TorchEager):
    """``torch-eager`` with the loss (forward and, through AOTAutograd, backward) compiled by ``torch.compile``
    (inductor, ``fullgraph=True, dynamic=False``); the SGD updates stay eager under ``no_grad`` as there.

    As for the conv nets (``symbp.bench.conv.TorchConvCompile``), a fresh process first compiles and runs two
    steps with a time limit (``COMPILE_TIMEOUT``); a failure or a timeout makes it unavailable with the
    reason.  ``compile_seconds``: the first compiled step in this process (on the inductor cache the trial
    filled).
    """

    name = "torch-compile"
    compiled = True

    def set_threads(self, threads):
        super().set_threads(threads)
        if self._threads != self._compiled_threads:  # inductor's C++ kernels are generated for a thread count
            self._compile_loss()

    def _compile(self):
        spec = {"layers": list(self.layers), "cost": self.cost, "dtype": self.dtype.name, "m": self.m}
        self.info["compile_trial"] = torch_compile_trial("symbp.bench.baselines", spec, COMPILE_TIMEOUT)
        self._threads = 1
        self._torch.set_num_threads(1)  # as the trial; the harness's count, if another, recompiles (set_threads)
        self._compile_loss()

    def _compile_loss(self):
        torch = self._torch
        self._compiled_threads = torch.get_num_threads()
        self.loss = torch.compile(torch_dense_loss(torch, self.cost), fullgraph=True, dynamic=False)
        t0 = time.perf_counter()
        try:
            self.loss(self.Ws, self.bs, self.X[: self.m], self.Y[: self.m]).backward()
        except Exception as exc:
            raise ImplUnavailable(f"torch.compile failed here: {type(exc).__name__}: {str(exc)[:300]}") from exc
        self.compile_seconds = time.perf_counter() - t0
        for p in (*self.Ws, *self.bs):
            p.grad = None


def torch_compile_trial(module: str, spec: dict, timeout: float) -> dict:
    """``module.compile_trial_main(spec)`` (compile a training step with ``torch.compile`` and run it twice) in a
    fresh process with a time limit; raise ``ImplUnavailable`` with the reason if that fails or takes more than
    ``timeout`` seconds."""
    try:
        return call_json(module, "compile_trial_main", spec, timeout)
    except subprocess.TimeoutExpired as exc:
        raise ImplUnavailable(f"torch.compile did not finish compiling a training step in {timeout:.0f} s "
                              "(fresh-process trial; skipped)") from exc
    except FreshProcessError as exc:
        tail = (exc.stderr or exc.stdout).strip().splitlines()[-3:]
        raise ImplUnavailable("torch.compile failed here (fresh-process trial): " + " | ".join(tail)[-500:]) from None


def compile_trial_main(spec: dict) -> dict:
    """The dense net's trial, in the fresh process of ``torch_compile_trial``."""
    import torch

    torch.set_num_threads(1)
    tdtype = {"float64": torch.float64, "float32": torch.float32}[spec["dtype"]]
    layers, m = spec["layers"], spec["m"]
    Ws = [(torch.randn(o, i, dtype=tdtype) / i**0.5).requires_grad_() for i, o in zip(layers[:-1], layers[1:])]
    bs = [torch.randn(o, dtype=tdtype).requires_grad_() for o in layers[1:]]
    loss = torch.compile(torch_dense_loss(torch, spec["cost"]), fullgraph=True, dynamic=False)
    xb = torch.rand((m, layers[0]), dtype=tdtype)
    yb = torch.nn.functional.one_hot(torch.randint(0, layers[-1], (m,)), layers[-1]).to(tdtype)
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        loss(Ws, bs, xb, yb).backward()
        times.append(time.perf_counter() - t0)
    return {"first_step_s": times[0], "second_step_s": times[1]}


class JaxScan(Impl):
    """JAX: the whole epoch is one jitted ``lax.scan`` over mini-batches, gathered by ``order`` inside it.

    x64 is enabled (needed for float64 and int64 orders).  ``compile_seconds`` is the ahead-of-time
    lower+compile of the epoch function for the full epoch length, timed apart from any run.
    """

    name = "jax-scan"

    @classmethod
    def available(cls):
        try:
            import jax  # noqa: F401
        except Exception as exc:
            return False, f"import jax failed: {exc}"
        return True, ""

    def _setup(self, params, X, Y):
        import jax

        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        self._jax, self._jnp = jax, jnp
        self.X = jax.device_put(np.ascontiguousarray(X, dtype=self.dtype))
        self.Y = jax.device_put(np.ascontiguousarray(Y, dtype=self.dtype))
        self.set_params(params)
        self._compiled, self._compile_times = {}, {}
        self._epoch_fn = jax.jit(self._make_epoch(), donate_argnums=0)
        full = (self.n // self.m) * self.m
        self._compiled_for(full)
        self.compile_seconds = self._compile_times[full]
        self.info = {
            "jax": jax.__version__,
            "backend": jax.default_backend(),
            "threads": "XLA's CPU thread pool is not limited by the harness",
        }

    def _make_epoch(self):
        from symbp.bench.peer_graphs import jax_epoch

        return jax_epoch(self._jax, self._jnp, self.cost, self.m, self.eta, 1 - self.eta * self.lmbda / self.n)

    @classmethod
    def probe_key(cls, case):
        return ("jax", case.layers, case.cost, case.dtype, case.batch_size)

    @classmethod
    def cold_probe(cls, case, threads=1):
        return peer_probe("jax", case, threads)

    def _compiled_for(self, length):
        """The epoch function compiled ahead of time for an order of ``length`` (a multiple of m)."""
        if length not in self._compiled:
            order = self._jax.ShapeDtypeStruct((length,), self._jnp.int64)
            t0 = time.perf_counter()
            self._compiled[length] = self._epoch_fn.lower(self._params, self.X, self.Y, order).compile()
            self._compile_times[length] = time.perf_counter() - t0
        return self._compiled[length]

    def set_params(self, params):
        jnp = self._jnp
        self._params = [
            (jnp.asarray(np.array(W, dtype=self.dtype)), jnp.asarray(np.array(b, dtype=self.dtype))) for W, b in params
        ]

    def params(self):
        return [(np.array(W), np.array(b)) for W, b in self._params]

    def epoch(self, order):
        order = np.asarray(order, dtype=np.int64)
        length = (len(order) // self.m) * self.m
        fn = self._compiled_for(length)
        self._params = fn(self._params, self.X, self.Y, self._jnp.asarray(order[:length]))
        self._jax.block_until_ready(self._params)
