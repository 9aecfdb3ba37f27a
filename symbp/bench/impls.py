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
``torch-eager`` (autograd) and ``jax-scan`` (the whole epoch in one jitted ``lax.scan``) when those libraries
import. ``symbp-*`` adapt symbp's compiled model (``Network(...).compile(...)``, ``model.run_epoch``).
"""

from __future__ import annotations

import time
from typing import ClassVar

import numpy as np

COSTS = ("quadratic", "cross-entropy")
DTYPES = ("float64", "float32")


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

    def set_params(self, params):
        t = self._torch
        self.Ws = [t.tensor(np.asarray(W), dtype=self._tdtype, requires_grad=True) for W, _ in params]
        self.bs = [t.tensor(np.asarray(b), dtype=self._tdtype, requires_grad=True) for _, b in params]

    def params(self):
        return [(W.detach().numpy().copy(), b.detach().numpy().copy()) for W, b in zip(self.Ws, self.bs, strict=True)]

    def epoch(self, order):
        from symbp.bench.conv import _keep_torch_threads

        _keep_torch_threads(self)
        torch, F = self._torch, self._torch.nn.functional
        m, eta, L = self.m, self.eta, len(self.Ws)
        decay = 1 - eta * self.lmbda / self.n
        order_t = torch.as_tensor(np.asarray(order, dtype=np.int64))
        for k in range(len(order) // m):
            idx = order_t[k * m : (k + 1) * m]
            xb, yb = self.X[idx], self.Y[idx]
            a = xb
            for l in range(L):
                z = a @ self.Ws[l].T + self.bs[l]
                a = torch.sigmoid(z) if l < L - 1 or self.cost == "quadratic" else None
            if self.cost == "quadratic":
                loss = 0.5 * ((a - yb) ** 2).sum()
            else:  # from the logits: the gradient at z is exactly sigmoid(z) - y
                loss = F.binary_cross_entropy_with_logits(z, yb, reduction="sum")
            loss.backward()
            with torch.no_grad():
                for W, b in zip(self.Ws, self.bs, strict=True):
                    if decay != 1:
                        W.mul_(decay)
                    W.sub_(W.grad, alpha=eta / len(idx))
                    b.sub_(b.grad, alpha=eta / len(idx))
                    W.grad = None
                    b.grad = None


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
        jax, jnp = self._jax, self._jnp
        m, eta, cost = self.m, self.eta, self.cost
        decay = 1 - eta * self.lmbda / self.n

        def loss(params, xb, yb):
            a = xb
            for W, b in params:
                z = a @ W.T + b
                a = jax.nn.sigmoid(z)
            if cost == "quadratic":
                return 0.5 * jnp.sum((a - yb) ** 2)
            # cross-entropy of sigmoid(z) written stably from the logits; d/dz = sigmoid(z) - y
            return jnp.sum(yb * jax.nn.softplus(-z) + (1 - yb) * jax.nn.softplus(z))

        grad = jax.grad(loss)

        def epoch(params, X, Y, order):
            def step(params, idx):
                g = grad(params, X[idx], Y[idx])
                return [
                    (decay * W - (eta / m) * gW, b - (eta / m) * gb) for (W, b), (gW, gb) in zip(params, g, strict=True)
                ], None

            nb = order.shape[0] // m
            params, _ = jax.lax.scan(step, params, order[: nb * m].reshape(nb, m))
            return params

        return epoch

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


# -------------------------------------------------------------------------------------- symbp adapters
class _Symbp(Impl):
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
        if self.backend == "numba":
            import numba

            numba.set_num_threads(min(int(threads), numba.config.NUMBA_NUM_THREADS))

    def _network(self, sb):
        cost = {"quadratic": sb.quadratic, "cross-entropy": sb.cross_entropy}[self.cost]
        return sb.Network(self.layers, activation=sb.sigmoid, cost=cost)

    def _setup(self, params, X, Y):
        import symbp as sb

        net = self._network(sb)
        t0 = time.perf_counter()
        try:
            self.model = net.compile(backend=self.backend, dtype=self.dtype.name, seed=0)
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

    def epoch(self, order):
        self.model.run_epoch(self.X, self.Y, order, self.m, self.eta, lmbda=self.lmbda, n=self.n)


class SymbpNumbaEpoch(_Symbp):
    """symbp, numba backend, the whole epoch in one kernel call."""

    name = "symbp-numba-epoch"


class SymbpNumbaPerBatch(_Symbp):
    """symbp, numba backend, one kernel call per mini-batch from Python (what the epoch kernel saves)."""

    name = "symbp-numba-per-batch"

    def epoch(self, order):
        m, run, X, Y = self.m, self.model.run_epoch, self.X, self.Y
        for k in range(len(order) // m):
            run(X, Y, order[k * m : (k + 1) * m], m, self.eta, lmbda=self.lmbda, n=self.n)


class SymbpNumpy(_Symbp):
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
        JaxScan,
        SymbpNumbaEpoch,
        SymbpNumbaPerBatch,
        SymbpNumpy,
    )
}
REFERENCE = NumpyBatched.name
