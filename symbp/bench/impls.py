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

The interface is ``symbp.bench.impl.Impl``.  Baselines are written from the math, independently of symbp's
compiler: ``numpy-per-sample`` (the book's network2 algorithm, column vectors), ``numpy-batched`` (the whole
mini-batch as one matrix; the reference), ``torch-eager`` (autograd), ``torch-compile`` (the same loss compiled by
``torch.compile``), ``jax-scan`` (the whole epoch in one jitted ``lax.scan``), all in ``symbp.bench.baselines``;
``pytensor-numba`` (PyTensor's default mode, the epoch as one ``pytensor.scan``) and ``pytensor-c`` (its C mode,
one compiled call per mini-batch), in ``symbp.bench.pytensor_impls``; each runs when its library imports; the JAX
and PyTensor graphs live in ``symbp.bench.peer_graphs``.  ``EXTRA_IMPLS`` holds variants run only when named
(``pytensor-numba-per-batch``, ``pytensor-c-scan``).  ``symbp-*``, here, adapt symbp's compiled model
(``Network(...).compile(...)``, ``model.run_epoch``); ``IMPLS`` registers them all, ``REFERENCE`` names the
cross-check's reference and ``backend_impls`` adds an adapter per plugged-in backend.  The names of those modules
are importable from here too.

Cold compiles: an implementation whose ``probe_key(case)`` is not None has a ``cold_probe(case, threads)``
(fresh processes: symbp's ``compile_probe``, JAX's and PyTensor's ``peer_probe``, both in ``symbp.bench.fresh``).
"""

from __future__ import annotations

import time
from typing import ClassVar

import numpy as np

from symbp.bench.baselines import (  # noqa: F401  (re-exported: the implementations' names)
    COMPILE_TIMEOUT,
    JaxScan,
    NumpyBatched,
    NumpyPerSample,
    TorchCompile,
    TorchEager,
    compile_trial_main,
    keep_torch_threads,
    torch_compile_trial,
    torch_dense_loss,
)
from symbp.bench.fresh import compile_probe
from symbp.bench.impl import COSTS, DTYPES, Impl, ImplUnavailable, init_params  # noqa: F401  (re-exported)
from symbp.bench.pytensor_impls import (  # noqa: F401  (re-exported: the implementations' names)
    PytensorC,
    PytensorCScan,
    PytensorNumba,
    PytensorNumbaPerBatch,
    configure_pytensor_blas,
)


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
        import symbp as sb

        probe = compile_probe(cls.backend, cls.case_network(case, sb).config(), case, threads)
        return {**probe, "what": f"symbp {cls.backend}: import symbp (apart), net.compile(), first run_epoch call"}

    @classmethod
    def case_network(cls, case, sb):
        """The network of a bench case (``Network.config()`` of it goes to the fresh-process probes)."""
        return cls.dense_network(case.layers, case.cost, sb)

    @staticmethod
    def dense_network(layers, cost: str, sb):
        cost = {"quadratic": sb.quadratic, "cross-entropy": sb.cross_entropy}[cost]
        return sb.Network(list(layers), activation=sb.sigmoid, cost=cost)

    def _network(self, sb):
        return self.dense_network(self.layers, self.cost, sb)

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
