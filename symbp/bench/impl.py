"""The interface every implementation of the dense SGD epoch has, for the benchmark harness.

Takes: a network description (``layers`` such as ``[784, 30, 10]``, sigmoid in every layer, ``cost``
"quadratic" or "cross-entropy"), a dtype, initial parameters ``[(W, b), ...]`` with ``W`` of shape (n_out,
n_in) and ``b`` of shape (n_out,), the training set as rows (``X`` (n, n_in), one-hot ``Y`` (n, n_out)),
mini-batch size ``m``, ``eta``, ``lmbda``.  Gives: ``Impl`` (the base class: ``setup`` checks those and times the
subclass's ``_setup``; ``epoch(order)``, ``params``, ``set_params``, ``set_threads``, the cold-compile probe's
``probe_key``/``cold_probe``), ``ImplUnavailable``, ``init_params`` (Nielsen's initialisation) and the accepted
``COSTS`` and ``DTYPES``.  See ``symbp.bench.impls`` for the update every implementation runs.
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


class BatchedNumpy:
    """What the NumPy implementations that step a whole mini-batch at once share: parameters as lists ``Ws``,
    ``bs`` of the implementation's dtype, and an epoch of ``update(X rows, Y rows)`` calls (``X``, ``Y`` set by
    ``_setup``)."""

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
