"""Implementations of one epoch of Nielsen's mini-batch SGD behind one interface, for the benchmark harness.

Takes: a network description (``layers`` such as ``[784, 30, 10]``, sigmoid in every layer, ``cost``
"quadratic" or "cross-entropy"), a dtype, initial parameters ``[(W, b), ...]`` with ``W`` of shape (n_out,
n_in) and ``b`` of shape (n_out,), the training set as rows (``X`` (n, n_in), one-hot ``Y`` (n, n_out)),
mini-batch size ``m``, ``eta``, ``lmbda``. Gives: objects whose ``epoch(order)`` runs one epoch in place,
where ``order`` (int64) is a permutation of range(n) (or a prefix of one): mini-batch k is rows
``order[k*m:(k+1)*m]``; a final partial mini-batch (``len(order) % m`` rows) is dropped, so every
implementation does the same ``len(order) // m`` updates.

The update per mini-batch (Nielsen, ch. 1 and 3):
    W <- (1 - eta*lmbda/n) W - (eta/m) sum_x dC_x/dW,    b <- b - (eta/m) sum_x dC_x/db,
with n = len(X) (the training-set size, as in the book), delta^L = (a - y) * sigma'(z) for the quadratic cost
and delta^L = a - y for cross-entropy.

Baselines are written here from the math, independently of symbp's compiler: ``numpy-per-sample`` (the book's
network2 algorithm, column vectors), ``numpy-batched`` (the whole mini-batch as one matrix; the reference),
``torch-eager`` (autograd), ``torch-compile`` (the same loss compiled by ``torch.compile``), ``jax-scan`` (the
whole epoch in one jitted ``lax.scan``), ``pytensor-numba`` (PyTensor's default mode, the epoch as one
``pytensor.scan``) and ``pytensor-c`` (its C mode, one compiled call per mini-batch) when those libraries
import; the JAX and PyTensor graphs live in ``symbp.bench.peer_graphs``.  ``EXTRA_IMPLS`` holds variants run only
when named (``pytensor-numba-per-batch``, ``pytensor-c-scan``).  ``symbp-*`` adapt symbp's compiled model
(``Network(...).compile(...)``, ``model.run_epoch``).

Cold compiles: an implementation whose ``probe_key(case)`` is not None has a ``cold_probe(case, threads)``
(fresh processes: symbp's ``compile_probe``, JAX's and PyTensor's ``peer_probe``, both in ``symbp.bench.fresh``).
"""

from __future__ import annotations

import os
import subprocess
import time
from typing import ClassVar

import numpy as np

from symbp.bench.fresh import FreshProcessError, call_json, compile_probe, peer_probe

COSTS = ("quadratic", "cross-entropy")
DTYPES = ("float64", "float32")
#: seconds a ``torch.compile`` trial may take in its fresh process before torch-compile is skipped
COMPILE_TIMEOUT = float(os.environ.get("SYMBP_BENCH_COMPILE_TIMEOUT", "420"))


class ImplUnavailable(RuntimeError):
    """Raised by ``Impl.setup`` when the implementation cannot run here (library or feature missing)."""


class Impl:
    """One way to run an SGD epoch.  Subclasses set ``name`` and implement ``_setup``, ``epoch`` and
    ``params``.

    Attributes filled by ``setup``: ``setup_seconds`` (wall time of setup, including any in-process compile),
    ``compile_seconds``/``load_seconds`` where they apply (None otherwise), and ``info`` (a JSON-able dict of
    implementation details worth recording, e.g. symbp's cache hit).
    """

    name: ClassVar[str] = "?"
    baseline: ClassVar[bool] = True  # written independently of symbp: its median is a ratio denominator

    def __init__(self) -> None:
        self.compile_seconds: float | None = None
        self.load_seconds: float | None = None
        self.setup_seconds: float | None = None
        self.info: dict = {}

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """``(True, "")`` when the implementation can run here, else ``(False, why not)``."""
        return True, ""

    def setup(self, layers, cost, dtype, params, X, Y, batch_size, eta, lmbda=0.0) -> None:
        """Prepare to run epochs.  ``params`` are copied; ``X``/``Y`` may be kept (never modified)."""
        layers = [int(n) for n in layers]
        if cost not in COSTS:
            raise ValueError(f"cost must be one of {COSTS}, got {cost!r}")
        if np.dtype(dtype).name not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        _check_params(layers, params)
        if X.ndim != 2 or X.shape[1] != layers[0] or Y.shape != (X.shape[0], layers[-1]):
            raise ValueError(f"X {X.shape} / Y {Y.shape} do not fit layers {layers} (samples as rows)")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.layers, self.cost, self.dtype = layers, cost, np.dtype(dtype)
        self.m, self.eta, self.lmbda, self.n = int(batch_size), float(eta), float(lmbda), int(X.shape[0])
        t0 = time.perf_counter()
        self._setup(params, X, Y)
        self.setup_seconds = time.perf_counter() - t0

    def set_threads(self, threads: int) -> None:
        """Apply a thread count to the library's own pool (the harness limits BLAS via threadpoolctl)."""

    def _setup(self, params, X, Y) -> None:
        raise NotImplementedError

    @classmethod
    def probe_key(cls, case) -> tuple | None:
        """What the cold-compile probe of ``case`` compiles (implementations sharing a key share one probe);
        None (the default): no probe."""
        return None

    @classmethod
    def cold_probe(cls, case, threads: int = 1) -> dict:
        """Cold compile, then warm load, in fresh processes: a dict with ``cold_seconds`` and ``warm_seconds``
        (None where there is no warm cache), ``cold``/``warm`` (each probe's own figures) and ``what``."""
        raise NotImplementedError

    def set_params(self, params) -> None:
        """Replace the parameters by copies of ``params`` (list of (W, b))."""
        raise NotImplementedError

    def epoch(self, order: np.ndarray) -> None:
        """Run ``len(order) // m`` mini-batch updates; return when the work is done (synchronised)."""
        raise NotImplementedError

    def params(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Current parameters as NumPy copies, ``[(W, b), ...]``, W (n_out, n_in), b (n_out,)."""
        raise NotImplementedError


def _check_params(layers, params) -> None:
    if len(params) != len(layers) - 1:
        raise ValueError(f"{len(layers) - 1} (W, b) pairs expected for layers {layers}, got {len(params)}")
    for l, (W, b) in enumerate(params, start=1):
        n_in, n_out = layers[l - 1], layers[l]
        if np.shape(W) != (n_out, n_in) or np.shape(b) != (n_out,):
            raise ValueError(
                f"layer {l}: W must be {(n_out, n_in)} and b {(n_out,)}, got {np.shape(W)} and {np.shape(b)}"
            )


def init_params(layers, dtype="float64", seed=0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Nielsen's default initialisation: W ~ N(0, 1/n_in), b ~ N(0, 1), cast to ``dtype``."""
    rng = np.random.default_rng(seed)
    out = []
    for n_in, n_out in zip(layers[:-1], layers[1:], strict=True):
        W = rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)
        b = rng.standard_normal(n_out)
        out.append((W.astype(dtype), b.astype(dtype)))
    return out


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


class NumpyBatched(Impl):
    """Matrix-batched NumPy: a mini-batch is a matrix of rows, Z = A @ W.T + b; the cross-check reference."""

    name = "numpy-batched"

    def _setup(self, params, X, Y):
        self.set_params(params)
        self.X = np.asarray(X, dtype=self.dtype)
        self.Y = np.asarray(Y, dtype=self.dtype)

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
        self.info["compile_trial"] = torch_compile_trial("symbp.bench.impls", spec, COMPILE_TIMEOUT)
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


# ----------------------------------------------------------------------------------------------- PyTensor
class _Pytensor(Impl):
    """PyTensor (Theano's successor): the net as a ``pytensor.tensor`` graph, ``pytensor.grad``, shared variables
    for X, Y, W and b, the SGD step as ``updates``, compiled by ``pytensor.function`` in ``mode``
    (``symbp.bench.peer_graphs.pytensor_sgd``).  ``scan``: the whole epoch is one compiled ``pytensor.scan``
    over the mini-batches (the permutation is the input); else one compiled call per mini-batch, as the book's
    network3.py does.

    ``compile_seconds``: ``pytensor.function`` plus its first call on one mini-batch (the numba backend compiles
    then), on whatever PyTensor's compile cache (``config.base_compiledir``) holds; fresh-process cold and warm
    figures come from ``symbp.bench.peer_probe``.  Threads: products go to the OpenBLAS SciPy ships (numba's
    ``np.dot`` in NUMBA mode, ``?gemm_`` in C mode; see ``peer_graphs.scipy_openblas_ldflags``), which the
    harness's threadpoolctl limit covers; PyTensor's OpenMP is off (its default).
    """

    mode: ClassVar[str] = "NUMBA"
    scan: ClassVar[bool] = True

    @classmethod
    def available(cls):
        try:
            import pytensor
        except Exception as exc:
            return False, f"import pytensor failed: {exc}"
        if cls.mode in ("CVM", "C") and not pytensor.config.cxx:
            return False, "PyTensor found no C++ compiler (config.cxx is empty): its C mode cannot run here"
        if cls.mode == "NUMBA":
            try:
                import numba  # noqa: F401
            except Exception as exc:
                return False, f"PyTensor's numba mode needs numba: {exc}"
        return True, ""

    def _setup(self, params, X, Y):
        import pytensor

        from symbp.bench.peer_graphs import pytensor_sgd

        self._pytensor = pytensor
        self.info = {
            "pytensor": pytensor.__version__,
            "mode": self.mode,
            "default_mode": str(pytensor.config.mode),
            "variant": "scan: the whole epoch in one call" if self.scan else "one call per mini-batch",
            "openmp": bool(pytensor.config.openmp),
            "numba_fastmath": bool(getattr(pytensor.config, "numba__fastmath", False)),
        }
        if self.mode in ("CVM", "C"):
            self.info["blas"] = configure_pytensor_blas(pytensor)
        t0 = time.perf_counter()
        try:
            self._fn, self._shared = pytensor_sgd(
                pytensor, params, X, Y, cost=self.cost, dtype=self.dtype, m=self.m, eta=self.eta,
                lmbda=self.lmbda, n=self.n, mode=self.mode, scan=self.scan,
            )
            self._fn(np.arange(self.m, dtype=np.int64))  # the numba backend compiles on the first call
        except Exception as exc:  # NotImplementedError (an Op without code for the mode), a failed C compile, ...
            raise ImplUnavailable(f"PyTensor mode {self.mode} could not compile the SGD graph here: "
                                  f"{type(exc).__name__}: {str(exc)[:300]}") from exc
        self.compile_seconds = time.perf_counter() - t0
        self.set_params(params)
        self.info["linker"] = type(self._fn.compiled.maker.linker).__name__

    def set_params(self, params):
        for sW, sb, (W, b) in zip(self._shared["W"], self._shared["b"], params, strict=True):
            sW.set_value(np.array(W, dtype=self.dtype), borrow=True)
            sb.set_value(np.array(b, dtype=self.dtype), borrow=True)

    def params(self):
        return [(W.get_value(), b.get_value()) for W, b in zip(self._shared["W"], self._shared["b"], strict=True)]

    def epoch(self, order):
        self._fn(order)


def configure_pytensor_blas(pytensor) -> dict:
    """Give PyTensor's C backend a BLAS: its own detection or the user's ``blas__ldflags`` when they find one, else
    SciPy's bundled OpenBLAS (``peer_graphs.scipy_openblas_ldflags``).  Returns what was used, for the record."""
    import logging
    import warnings

    import scipy.linalg  # noqa: F401  (loads SciPy's OpenBLAS: the C modules link to the already-loaded copy)

    from symbp.bench.peer_graphs import scipy_openblas_ldflags

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "could not link to a BLAS installation": handled below
        flags = pytensor.config.blas__ldflags
    if flags and "scipy_dgemm_" not in flags:
        return {"source": "PyTensor's blas__ldflags (its detection or the user's)", "ldflags": flags}
    alt = flags or scipy_openblas_ldflags()
    if not alt:
        return {"source": "none: PyTensor's C mode runs the products through NumPy from Python", "ldflags": ""}
    pytensor.config.blas__ldflags = alt
    # ":libscipy_openblas-….so" is not a -l name PyTensor's library-folder check recognises; it links fine
    logging.getLogger("pytensor.tensor.blas").setLevel(logging.ERROR)
    return {"source": "SciPy's bundled OpenBLAS (symbols renamed by -D macros; set by the harness)",
            "ldflags": alt.split(" -D")[0] + " -D<name>_=scipy_<name>_ ..."}


class PytensorNumba(_Pytensor):
    """PyTensor in its default mode, NUMBA (the linker ``"auto"`` picks numba in PyTensor 3), the whole epoch as
    one ``pytensor.scan`` call.  Measured on the ch.1 net at mini-batch 10 (2 cores, busy machine): scan
    0.23 s/epoch, one call per mini-batch 0.25 s (``pytensor-numba-per-batch``)."""

    name = "pytensor-numba"
    mode = "NUMBA"
    scan = True

    @classmethod
    def probe_key(cls, case):
        return ("pytensor", cls.mode, cls.scan, case.layers, case.cost, case.dtype, case.batch_size)

    @classmethod
    def cold_probe(cls, case, threads=1):
        return peer_probe("pytensor", case, threads, mode=cls.mode, scan=cls.scan)


class PytensorC(_Pytensor):
    """PyTensor's C mode (``mode="CVM"``: C thunks run by the C virtual machine; ``"C"`` alone raises
    NotImplementedError for this graph in PyTensor 3.0), one call per mini-batch.  Measured on the ch.1 net at
    mini-batch 10 (2 cores, busy machine): 0.16 s/epoch, the epoch as one scan 0.19 s (``pytensor-c-scan``);
    without a BLAS (what a pip install finds here) 0.95 s."""

    name = "pytensor-c"
    mode = "CVM"
    scan = False


class PytensorNumbaPerBatch(PytensorNumba):
    """``pytensor-numba`` with one compiled call per mini-batch (not run by default: the scan is faster)."""

    name = "pytensor-numba-per-batch"
    scan = False

    @classmethod
    def probe_key(cls, case):
        return None


class PytensorCScan(PytensorC):
    """``pytensor-c`` with the whole epoch as one ``pytensor.scan`` (not run by default: it is slower)."""

    name = "pytensor-c-scan"
    scan = True


# -------------------------------------------------------------------------------------- symbp adapters
class SymbpAdapter(Impl):
    """Adapter around symbp's model: ``sb.Network(layers, activation=sb.sigmoid, cost=...).compile(...)``.

    The in-process ``net.compile(...)`` time is ``load_seconds`` when ``model.cache_info["hit"]`` says the
    kernels came from symbp's disk cache, ``compile_seconds`` otherwise; ``info`` records ``cache_info``.
    Cold-compile and warm-load figures from fresh processes come from ``symbp.bench.probe``.
    """

    baseline = False
    backend: ClassVar[str] = "numba"

    #: the symbp names the adapter needs
    requires: ClassVar[tuple[str, ...]] = ("Network", "sigmoid", "quadratic", "cross_entropy")

    @classmethod
    def available(cls):
        try:
            import symbp as sb
        except Exception as exc:
            return False, f"import symbp failed: {exc}"
        missing = [n for n in cls.requires if not hasattr(sb, n)]
        if missing:
            return False, f"symbp has no {', '.join(missing)} yet"
        return True, ""

    def set_threads(self, threads):
        from symbp.compile.backends import get_backend

        get_backend(self.backend).set_threads(int(threads))

    @classmethod
    def probe_key(cls, case):
        return ("symbp", cls.backend, case.layers, case.cost, case.dtype, case.net)

    @classmethod
    def cold_probe(cls, case, threads=1):
        probe = compile_probe(cls.backend, case, threads)
        return {**probe, "what": f"symbp {cls.backend}: import symbp (apart), net.compile(), first run_epoch call"}

    def _network(self, sb):
        cost = {"quadratic": sb.quadratic, "cross-entropy": sb.cross_entropy}[self.cost]
        return sb.Network(self.layers, activation=sb.sigmoid, cost=cost)

    def _setup(self, params, X, Y):
        import symbp as sb

        net = self._network(sb)
        t0 = time.perf_counter()
        try:
            self.model = net.compile(backend=self.backend, dtype=self.dtype.name, seed=0)
            self.model.prepare(self.model.update_kernel())  # compiled when first used: here, inside the timing
        except (ImportError, NotImplementedError) as exc:  # symbp's compiler not (fully) built yet
            raise ImplUnavailable(f"symbp's compile(backend={self.backend!r}) is unavailable: {exc}") from exc
        elapsed = time.perf_counter() - t0
        if not hasattr(self.model, "run_epoch"):
            raise ImplUnavailable(f"symbp's {type(self.model).__name__} has no run_epoch yet")
        self.X = np.ascontiguousarray(X, dtype=self.dtype)
        self.Y = np.ascontiguousarray(Y, dtype=self.dtype)
        self.set_params(params)
        cache = getattr(self.model, "cache_info", None)
        self.info = {"backend": self.backend, "cache_info": _jsonable(cache) if cache is not None else None}
        if cache is not None and cache.get("hit"):
            self.load_seconds = elapsed  # kernels loaded from symbp's disk cache
        else:
            self.compile_seconds = elapsed

    def set_params(self, params):
        self.model.set_params([(np.array(W, dtype=self.dtype), np.array(b, dtype=self.dtype)) for W, b in params])

    def params(self):
        return [(np.array(W), np.array(b)) for W, b in self.model.params]

    def epoch(self, order):  # the harness's epoch is its whole mini-batches (every implementation drops the rest)
        self.model.run_epoch(self.X, self.Y, order, self.m, self.eta, lmbda=self.lmbda, n=self.n, drop_last=True)


class SymbpNumbaEpoch(SymbpAdapter):
    """symbp, numba backend, the whole epoch in one kernel call."""

    name = "symbp-numba-epoch"


class SymbpNumbaPerBatch(SymbpAdapter):
    """symbp, numba backend, one kernel call per mini-batch from Python (what the epoch kernel saves)."""

    name = "symbp-numba-per-batch"

    def epoch(self, order):
        m, run, X, Y = self.m, self.model.run_epoch, self.X, self.Y
        for k in range(len(order) // m):
            run(X, Y, order[k * m : (k + 1) * m], m, self.eta, lmbda=self.lmbda, n=self.n)


class SymbpNumbaU8(SymbpAdapter):
    """symbp, numba backend, the whole epoch in one kernel call on MNIST's uint8 pixels (``input_scale=1/255``):
    the kernel converts the rows it gathers, an epoch reads 8× fewer input bytes than float64 rows."""

    name = "symbp-numba-u8"

    def _setup(self, params, X, Y):
        codes = np.rint(np.asarray(X, dtype=np.float64) * 255)
        if codes.min() < 0 or codes.max() > 255 or not np.array_equal((codes / 255).astype(X.dtype), X):
            raise ImplUnavailable("the inputs are not 8-bit pixels / 255: no uint8 codes to train on")
        super()._setup(params, X, Y)
        self.model.prepare(self.model.update_kernel(compact=True))
        self.X = np.ascontiguousarray(codes, dtype=np.uint8)

    def epoch(self, order):
        self.model.run_epoch(self.X, self.Y, order, self.m, self.eta, lmbda=self.lmbda, n=self.n,
                             input_scale=1 / 255, drop_last=True)


class SymbpNumpy(SymbpAdapter):
    """symbp, NumPy backend, ``run_epoch`` over the whole epoch."""

    name = "symbp-numpy"
    backend = "numpy"


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (bool, int, float, str)) or obj is None:
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    return str(obj)


IMPLS: dict[str, type[Impl]] = {
    cls.name: cls
    for cls in (
        NumpyPerSample,
        NumpyBatched,
        TorchEager,
        TorchCompile,
        JaxScan,
        PytensorNumba,
        PytensorC,
        SymbpNumbaEpoch,
        SymbpNumbaU8,
        SymbpNumbaPerBatch,
        SymbpNumpy,
    )
}
REFERENCE = NumpyBatched.name


def backend_impls(registry: dict[str, type[Impl]], base: type[Impl]) -> dict[str, type[Impl]]:
    """An adapter ``symbp-<name>`` (whole epochs, ``base`` with another backend) for every registered backend
    that no adapter in ``registry`` runs: a backend plugged in with ``register_backend`` is benchmarked too."""
    from symbp.compile.backends import BACKENDS

    covered = {getattr(cls, "backend", None) for cls in registry.values()}
    return {f"symbp-{name}": type(f"Symbp_{name}", (base,), {
        "name": f"symbp-{name}", "backend": name, "__doc__": f"symbp, the {name} backend ({impl.description})."})
        for name, impl in BACKENDS.items() if name not in covered}
#: variants run only when named (``--impl NAME``): measured slower than the registered variant of the same library
EXTRA_IMPLS: dict[str, type[Impl]] = {cls.name: cls for cls in (PytensorNumbaPerBatch, PytensorCScan)}
