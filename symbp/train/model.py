"""The compiled model: kernels + parameters, and Nielsen's SGD on top of them.

Takes: a ``Network`` and compile options.  Gives: ``Model`` with ``params``/``set_params``,
``feedforward``, ``cost``, ``gradients``, ``run_epoch`` (one call of the whole-epoch kernel), ``fit``,
``evaluate``, ``source``, ``save``.  This module builds the kernels and compiles them (``prepare``,
``update_kernel``); the rest of ``Model`` comes from ``symbp.train.parameters`` (the parameters and velocities),
``symbp.train.evaluation`` (feedforward, cost, gradients, accuracy) and ``symbp.train.fitting`` (``run_epoch``,
``fit`` and its ``History``), and the argument checks from ``symbp.train.checks``.

Arrays: samples are rows.  ``X`` is (n, n_in) (for an image input ``Input((C, H, W))`` also (n, C, H, W),
flattened in (channel, row, column) order, by every method); targets ``Y`` are (n, n_out) or, where it makes sense
(``cost``, ``gradients``, ``fit``, ``evaluate``), integer class labels of shape (n,), turned into one-hot
rows.  Inputs of another real dtype (ints, bools, the other float width) are converted to the model's dtype;
complex, object and string arrays are refused, as are 1-d inputs, wrong widths, row-count mismatches and
NaN/inf (all ``ValueError`` saying what was expected).

Compact inputs: a ``uint8`` X with ``input_scale=s`` (every method that takes X) is read as the inputs s·X,
computed in float64 and rounded to the model's dtype: the whole-epoch kernel converts the rows it gathers (an
epoch moves 8× fewer bytes than float64 rows, the training set takes 8× less memory), the other methods convert
blocks of ``CHUNK`` rows.  A uint8 X without a scale, or a scale with a float X, is a ``ValueError``.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time

import numpy as np
import sympy as sp

from symbp.compile.backends import build, get_backend
from symbp.compile.backends.host import ALIGN, aligned_copy  # noqa: F401  (re-exported)
from symbp.compile.lower import lower
from symbp.network import register_stage
from symbp.train.checks import check_constants, check_weight_decay  # noqa: F401  (check_weight_decay: re-exported)
from symbp.train.evaluation import Evaluation
from symbp.train.fitting import History, Training  # noqa: F401  (History: re-exported)
from symbp.train.parameters import Parameters
from symbp.train.serialize import save

DTYPES = ("float64", "float32")
#: rows converted at a time from uint8 codes to floats by feedforward, cost and evaluate (a few MB)
CHUNK = 4096


def _compile_workers() -> int:
    """Processes ``prepare`` may compile kernels in: ``$SYMBP_COMPILE_WORKERS``, else the usable cores (one
    inside a sweep's dask worker: the sweep already runs a worker per core)."""
    raw = os.environ.get("SYMBP_COMPILE_WORKERS", "").strip()
    if raw:
        try:
            return max(1, int(raw))
        except ValueError:
            raise ValueError(f"SYMBP_COMPILE_WORKERS must be a whole number, got {raw!r}") from None
    if "distributed" in sys.modules:
        try:
            sys.modules["distributed"].get_worker()
            return 1
        except (ValueError, AttributeError):  # not in a worker
            pass
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@register_stage("compile")
class Model(Parameters, Evaluation, Training):
    """A network compiled for one backend and dtype, with its parameters."""

    def __init__(self, network, backend: str = "numba", dtype: str = "float64", seed=None, init: str = "default",
                 progress=None):
        impl = get_backend(backend)
        dtype = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        check_constants(network, dtype)
        self.network = network
        self.backend = impl.name
        self.dtype = np.dtype(dtype)
        #: (layer index, [ParamSpec, ...]) of every layer with parameters, in order
        specs = [(l, layer.param_specs(network.shapes[l - 1])) for l, layer in enumerate(network.layers[1:], start=1)]
        self._specs = [(l, s) for l, s in specs if s]
        t0 = time.perf_counter()
        self._programs = None
        key = impl.declaration_key(network, dtype)
        self.kernels = None
        say = progress or (lambda text: None)
        if key is not None:
            try:
                # A declaration compiled before (any process) reuses its recorded kernels: no derivation needed.
                self.kernels = build(impl, network, None, dtype, key)
                say("the kernels' source from the cache (no derivation)")
            except LookupError:
                pass
        if self.kernels is None:
            say("deriving BP1–BP4 (sympy) and lowering them to kernel programs")
            programs = self.programs
            say(f"generating the {impl.name} kernels' source")
            self.kernels = build(impl, network, programs, dtype, key)
        # The kernels are generated now (so a declaration the code generator cannot handle fails here) and
        # compiled (or loaded) by the backend when first called: ``prepare`` compiles them at once.
        self.compile_seconds = time.perf_counter() - t0
        self.sizes = network.sizes
        self._rng = np.random.default_rng(seed)
        self._params: list[tuple[np.ndarray, ...]] = []
        self.init_params(init)

    @property
    def programs(self):
        """The kernel programs (IR) lowered from ``network.equations()``; ``print(model.programs["sgd_epoch"])``.
        A network that cannot be trained (see ``Network.untrainable``) has only ``forward`` and ``cost``."""
        if self._programs is None:
            self._programs = lower(self.network, training=self.network.untrainable is None)
        return self._programs

    def plan(self):
        """Which path each heavy step of the kernels takes (BLAS gemm, im2col + gemm, window max, generated loops)
        and its FLOP per sample: a ``symbp.compile.plan.Plan`` (print it, or read ``.rows``)."""
        from symbp.compile.plan import plan

        net = self.network  # the kernels name parameters by layer position (W3 for the third layer)
        shapes = {f"{spec.name}{l}": spec.shape for l, (layer, shape) in enumerate(zip(net.layers[1:], net.shapes), 1)
                  for spec in layer.param_specs(shape)}
        backend = get_backend(self.backend)
        return plan(self.programs, shapes, small=backend.small_product, products=backend.products)

    def prepare(self, *names: str, progress=None) -> dict:
        """Compile the kernels ``names`` now (default: every kernel generated so far) instead of when first
        used; returns ``cache_info``.  Several kernels not in the cache are compiled in parallel, one process
        per core (``$SYMBP_COMPILE_WORKERS`` sets how many; 1: in this process only), then loaded.
        ``progress(text)``, when given, is told which kernel is compiled or loaded (``compiling kernel 2 of 3:
        sgd_epoch``)."""
        names = names or tuple(self.kernels.sources)
        for name in names:
            if name not in self.kernels.sources:
                raise ValueError(f"no kernel {name!r}; kernels: {', '.join(self.kernels.sources)}")
        todo = [n for n in names if n not in self.kernels.compiled]
        workers = _compile_workers()
        wait = None
        try:
            if len(todo) > 1 and workers > 1:
                wait = self.kernels.impl.compile_ahead(self.kernels, todo, workers)
            for k, name in enumerate(todo, start=1):
                if progress is not None:
                    progress(f"{self.kernels.impl.loading} kernel {k} of {len(todo)}: {name}"
                             + (f" ({self.backend}, or its cache)" if self.kernels.key else ""))
                if k == 2 and wait is not None:
                    wait()  # the others, compiled meanwhile by the backend's workers
                self.kernels[name]
        except BaseException:  # an error or Ctrl-C: no worker left running
            if wait is not None:
                wait(cancel=True)
            raise
        if wait is not None:
            wait()
        return self.cache_info

    def update_kernel(self, regularizer=None, momentum: float = 0.0, compact: bool = False) -> str:
        """The name of the whole-epoch kernel for an update rule (``fit``'s ``regularizer`` and ``momentum``)
        and inputs (``compact``: uint8 codes), generated (not compiled) on first use: the plain ``sgd_epoch``
        for L2 (or none) without momentum on float inputs, else a variant named after its rule (and ``_u8``).
        ``model.prepare(model.update_kernel(...))`` compiles it."""
        momentum = bool(momentum)
        penalty = None if regularizer is None or regularizer.is_l2 else regularizer.derivative
        name = "sgd_epoch"
        if penalty is not None:
            digest = hashlib.sha256(sp.srepr(penalty).encode()).hexdigest()[:8]
            name += f"_{regularizer.name.replace('-', '_')}_{digest}"
        name += ("_momentum" if momentum else "") + ("_u8" if compact else "")
        if name not in self.kernels.sources:
            if self.network.untrainable is not None:
                raise ValueError(f"{self.network!r} cannot be trained: {self.network.untrainable}")
            from symbp.compile.layers import UpdateRule
            from symbp.compile.lower import lower_update

            self.kernels.add(name, lower_update(self.network, UpdateRule(penalty, momentum), name, compact))
        return name

    def _kernel(self, name: str):
        """The compiled kernel ``name``; a clear error for training kernels of a network that cannot learn."""
        if name not in self.kernels.sources and self.network.untrainable is not None:
            raise ValueError(f"{self.network!r} cannot be trained: {self.network.untrainable}")
        return self.kernels[name]

    def program(self, name: str):
        """One kernel program (``forward``, ``cost``, ``backward``, ``sgd_epoch``), printable like a jaxpr."""
        if name not in self.programs:
            raise ValueError(f"no program {name!r}; programs: {', '.join(self.programs)}")
        return self.programs[name]

    def _blocks(self, X, scale):
        """(first row, float inputs) over X: X itself, or converted blocks of ``CHUNK`` rows of uint8 codes."""
        if scale is None:
            yield 0, X
            return
        for lo in range(0, X.shape[0], CHUNK):
            yield lo, self._floats(X[lo:lo + CHUNK], scale)

    def source(self, name: str | None = None) -> str:
        """Generated source of one kernel (``forward``, ``cost``, ``backward``, ``sgd_epoch``) or the module."""
        if name is None:
            return self.kernels.module_source
        if name not in self.kernels.sources:
            raise ValueError(f"no kernel {name!r}; kernels: {', '.join(self.kernels.sources)}")
        return self.kernels.sources[name]

    @property
    def cache_info(self) -> dict:
        """Where the kernels compiled so far came from: ``hit`` (all from the kernel cache; None before any
        kernel was compiled), ``rebuilt``, ``in_process``, ``key`` and per kernel (``kernels``) its cache
        record and compile seconds."""
        return self.kernels.summary()

    def save(self, path) -> None:
        """Write the network as JSON and the parameters as .npz (see ``symbp.train.serialize``)."""
        return save(self, path)

    def __repr__(self):
        return f"<Model {self.network!r} backend={self.backend} dtype={self.dtype.name}>"
