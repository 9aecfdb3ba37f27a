"""The compiled model: kernels + parameters, and Nielsen's SGD on top of them.

Takes: a ``Network`` and compile options.  Gives: ``Model`` with ``params``/``set_params``,
``feedforward``, ``cost``, ``gradients``, ``run_epoch`` (one call of the whole-epoch kernel), ``fit``,
``evaluate``, ``source``, ``save``.

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
import math
import numbers
import os
import sys
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import sympy as sp

from symbp.compile.backends import build, get_backend
from symbp.compile.backends.host import ALIGN, aligned_copy  # noqa: F401  (re-exported)
from symbp.compile.lower import lower
from symbp.layers import INIT_SCHEMES
from symbp.network import register_stage
from symbp.train.diagnostics import make_recorder
from symbp.train.schedule import make_schedule
from symbp.train.serialize import save

DTYPES = ("float64", "float32")
#: rows converted at a time from uint8 codes to floats by feedforward, cost and evaluate (a few MB)
CHUNK = 4096


def _real(v) -> float | None:
    """v as a float when it is a real number (Python's or NumPy's, not a bool; an integer too large for a float
    is inf), else None."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        return None
    try:
        return float(v)
    except OverflowError:
        return math.inf if v > 0 else -math.inf


def _shown(v) -> str:
    """repr(v) for a one-line message: a huge integer by its size."""
    text = repr(v)
    return text if len(text) <= 40 else f"{text[:12]}…({len(text)} characters)"


def _whole(name: str, v, lo: int, hi: int | None = None) -> int:
    """v as an int in lo..hi (an integral float such as 30.0 too), else a ValueError naming ``name``."""
    if isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_)):
        f = int(v)  # compared exactly: 2**63 - 1 is not a float
    else:
        f = _real(v)
        f = f if f is not None and math.isfinite(f) and f.is_integer() else None
    if f is None or f < lo or (hi is not None and f > hi):
        bounds = "a non-negative integer" if (lo, hi) == (0, None) else \
            "a positive integer" if (lo, hi) == (1, None) else f"an integer in {lo}..{hi}"
        raise ValueError(f"{name} must be {bounds}, got {_shown(v)}")
    return int(v)


def _non_negative(name: str, v) -> float:
    f = _real(v)
    if f is None or not math.isfinite(f) or f < 0:
        raise ValueError(f"{name} must be a finite non-negative number, got {_shown(v)}")
    return f


def check_weight_decay(eta: float, lmbda: float, n: int, what: str = "lmbda") -> None:
    """L2's update multiplies every weight by 1 − ηλ/n: outside [−1, 1] the weights grow geometrically, whatever
    the data, so such a λ is refused before training rather than reported as a divergence."""
    if n and eta * lmbda / n > 2:
        raise ValueError(f"{what} = {lmbda:g} with eta = {eta:g} and n = {n} training samples makes the weight decay "
                         f"1 − ηλ/n = {1 - eta * lmbda / n:.3g}, outside [−1, 1]: the weights would grow without "
                         f"bound; use {what} ≤ {2 * n / eta:.3g} (the book uses 0.1 to 5)")


def _input_scale(scale) -> float | None:
    """``input_scale`` checked: None, or a finite positive number."""
    if scale is None:
        return None
    f = _real(scale)
    if f is None or not math.isfinite(f) or f <= 0:
        raise ValueError(f"input_scale must be a finite positive number (1/255 for 8-bit pixels), got {_shown(scale)}")
    return f


def _as_matrix(arr, name: str, cols: int, dtype, what: str, rows=None, scale=None) -> np.ndarray:
    """``arr`` as a C-contiguous matrix of ``dtype`` (or, with ``scale``, of the uint8 codes it must hold)."""
    arr = np.asarray(arr)
    if arr.dtype == np.uint8 and what == "inputs" and scale is None:
        raise ValueError(f"{name} holds uint8 codes: give input_scale, the factor that turns them into the network's "
                         "inputs (1/255 for 8-bit pixels: sb.data.load_mnist(dtype='uint8') hands them out with "
                         "split.input_scale)")
    if scale is not None:
        if arr.dtype != np.uint8:
            raise ValueError(f"input_scale is for uint8 inputs, but {name} has dtype {arr.dtype}: give {name} as "
                             "uint8 codes, or leave input_scale out and pass the inputs themselves")
        dtype = np.uint8
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        hint = f" (one sample? use {name}.reshape(1, -1))" if arr.ndim == 1 else ""
        raise ValueError(f"{name} must be 2-d ({what}: rows × {cols}), got shape {arr.shape}{hint}")
    if arr.shape[1] != cols:
        raise ValueError(f"{name} must have {cols} columns ({what}), got shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=dtype)
    part = arr if rows is None else arr[rows]
    if part.size and not np.isfinite(part).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{name} contains NaN or inf (first at row {bad[0]}, column {bad[1]})")
    return arr


def _as_targets(Y, n_out: int, dtype, rows: int, visit=None) -> np.ndarray:
    Y = np.asarray(Y)
    if Y.ndim == 1 and Y.dtype.kind in "iu":
        if Y.size and (Y.min() < 0 or Y.max() >= n_out):
            raise ValueError(f"integer labels must lie in 0..{n_out - 1}, got {Y.min()}..{Y.max()}")
        onehot = np.zeros((Y.shape[0], n_out), dtype=dtype)
        onehot[np.arange(Y.shape[0]), Y] = 1
        Y = onehot
    elif Y.ndim == 1:
        raise ValueError(f"Y must be 2-d (rows × {n_out} targets) or 1-d integer labels, got shape {Y.shape} "
                         f"of dtype {Y.dtype}")
    Y = _as_matrix(Y, "Y", n_out, dtype, "targets", rows=visit)
    if Y.shape[0] != rows:
        raise ValueError(f"X and Y must have the same number of rows, got {rows} and {Y.shape[0]}")
    return Y


@dataclass
class History:
    """What ``fit`` monitored, one entry per epoch."""

    epochs: list[int] = field(default_factory=list)
    training_cost: list[float] = field(default_factory=list)
    training_accuracy: list[float] = field(default_factory=list)
    evaluation_cost: list[float] = field(default_factory=list)
    evaluation_accuracy: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    #: the learning rate of every epoch (constant unless a schedule changes it)
    eta: list[float] = field(default_factory=list)
    #: with ``fit(diagnostics=True)``: chapter 5's per-layer figures before training (epoch 0) and after every
    #: epoch (see ``symbp.train.diagnostics``), and the seconds each record took
    diagnostics: list[dict] = field(default_factory=list)
    diagnostics_seconds: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class _FitRun:
    """One ``fit`` call's checked arguments and what follows from them."""

    X: np.ndarray
    Y: np.ndarray
    n: int
    scale: float | None
    epochs: int
    batch_size: int
    eta: float
    lmbda: float
    regularizer: object
    momentum: float
    drop_last: bool
    evaluation: tuple | None
    watch_eval: bool
    watch_train: bool
    schedule: object
    recorder: object


class _BestEpoch:
    """The best score so far and its epoch; with early stopping after ``early_stopping`` epochs without a better
    one, also that epoch's parameters (``params``)."""

    def __init__(self, early_stopping: int | None):
        self.early_stopping = early_stopping
        self.score, self.params, self.since = -math.inf, None, 0

    def update(self, score: float | None, epoch: int, hist: History, model) -> None:
        if score is not None and score > self.score:
            self.score, self.since, hist.best_epoch = score, 0, epoch + 1
            if self.early_stopping:
                self.params = model.params
        elif score is not None:
            self.since += 1

    @property
    def patience_spent(self) -> bool:
        return bool(self.early_stopping) and self.since >= self.early_stopping


def _record_diagnostics(recorder, hist: History, epoch: int) -> None:
    """Chapter 5's figures after ``epoch`` (0: before training) into ``hist``, with the seconds they took."""
    t1 = time.perf_counter()
    hist.diagnostics.append(recorder.record(epoch))
    hist.diagnostics_seconds.append(time.perf_counter() - t1)


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
class Model:
    """A network compiled for one backend and dtype, with its parameters."""

    def __init__(self, network, backend: str = "numba", dtype: str = "float64", seed=None, init: str = "default",
                 progress=None):
        impl = get_backend(backend)
        dtype = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        _check_constants(network, dtype)
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
        return plan(self.programs, shapes)

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

    # -- parameters ----------------------------------------------------------------------------------
    def _array(self, a):
        """A parameter (or velocity) as the backend's kernels take it: for the host backends a copy on a 64-byte
        boundary (``aligned_copy``), for a device backend its own array."""
        return self.kernels.impl.array(a)

    def _host(self, a) -> np.ndarray:
        """A NumPy copy of a parameter (or velocity) the backend holds."""
        return np.array(self.kernels.impl.host(a), copy=True)

    # The kernels update the parameters in place; they live on 64-byte boundaries (see ``aligned_copy``).
    def init_params(self, init: str = "default", seed=None) -> None:
        """``default``: W ~ N(0, 1/n_in), b ~ N(0, 1); ``large``: W ~ N(0, 1) (the book's chapter 1).  Each layer
        kind says how its parameters start (``Layer.param_specs``)."""
        if init not in INIT_SCHEMES:
            raise ValueError(f"init must be one of {', '.join(INIT_SCHEMES)}, got {init!r}")
        rng = self._rng if seed is None else np.random.default_rng(seed)
        self._params = [tuple(self._array(spec.init(rng, init, spec.shape).astype(self.dtype)) for spec in specs)
                        for _, specs in self._specs]
        self._velocities = None

    @property
    def velocities(self) -> list[tuple[np.ndarray, ...]] | None:
        """Copies of the momentum velocities [(vW1, vb1), ...] (shaped as ``params``), or None before any
        training with momentum.  They carry over from one ``fit``/``run_epoch`` call to the next (and are saved
        with the model); new parameters (``set_params``, ``init_params``) start them again from zero."""
        return None if self._velocities is None else [tuple(self._host(v) for v in pair) for pair in self._velocities]

    def set_velocities(self, velocities) -> None:
        """Set the momentum velocities (shaped as ``params``; None: none, as before training)."""
        if velocities is None:
            self._velocities = None
            return
        self._velocities = self._checked_params(velocities, prefix="v")  # the same checks, naming vW1, vb1, …

    def _velocity_arrays(self) -> list[np.ndarray]:
        if self._velocities is None:
            self._velocities = [tuple(self._array(np.zeros_like(p)) for p in pair) for pair in self._params]
        return [v for pair in self._velocities for v in pair]

    @property
    def params(self) -> list[tuple[np.ndarray, ...]]:
        """Copies of [(W1, b1), (W2, b2), ...]: the parameters of every layer that has them, in layer order
        (a dense layer's W of shape (n_out, n_in), b of shape (n_out,))."""
        return [tuple(self._host(p) for p in pair) for pair in self._params]

    def set_params(self, params) -> None:
        self._params = self._checked_params(params)
        self._velocities = None

    def _checked_params(self, params, prefix: str = "") -> list[tuple[np.ndarray, ...]]:
        """Aligned copies in the model's dtype, each array checked (shape, real, finite) and named as in
        ``model.params`` and model files: W1, b1, W2, … numbered by the layers that have parameters."""
        params = list(params)
        if len(params) != len(self._specs):
            raise ValueError(f"expected {len(self._specs)} (W, b) pairs, got {len(params)}")
        new = []
        for k, (pair, (l, specs)) in enumerate(zip(params, self._specs), start=1):
            try:
                arrays = tuple(pair)
            except TypeError:
                raise ValueError(f"layer {l}: expected a (W, b) pair") from None
            if len(arrays) != len(specs):
                raise ValueError(f"layer {l}: expected a ({', '.join(s.name for s in specs)}) pair")
            checked = []
            for arr, spec in zip(arrays, specs):
                name = f"{prefix}{spec.name}{k}" + (f" (layer {l})" if l != k else "")
                arr = np.asarray(arr)
                vector = len(spec.shape) == 1
                if vector and (arr.shape != spec.shape or arr.dtype.kind not in "biuf"):
                    raise ValueError(f"{name} must be a real vector of shape {spec.shape}, got {arr.shape} {arr.dtype}")
                if arr.dtype.kind not in "biuf":
                    raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}")
                if arr.shape != spec.shape:
                    if arr.ndim == len(spec.shape) and arr.shape[1:] != spec.shape[1:]:
                        raise ValueError(f"{name} must have {spec.shape[1]} columns (layer {l} weights), "
                                         f"got shape {arr.shape}")
                    raise ValueError(f"{name} must have shape {spec.shape}, got {arr.shape}")
                arr = np.ascontiguousarray(arr, dtype=self.dtype)
                if not np.isfinite(arr).all():
                    raise ValueError(f"{name} contains NaN or inf")
                checked.append(self._array(arr))
            new.append(tuple(checked))
        return new

    @property
    def param_names(self) -> list[tuple[str, ...]]:
        """The names of ``params``, as in model files: [("W1", "b1"), ("W2", "b2"), …], numbered by the layers
        that have parameters (a declared layer's own names, in the order of its ``params``)."""
        return [tuple(f"{spec.name}{k}" for spec in specs) for k, (_, specs) in enumerate(self._specs, start=1)]

    def _param_layers(self) -> list[int]:
        return [l for l, _ in self._specs]

    def _flat(self) -> list[np.ndarray]:
        return [arr for pair in self._params for arr in pair]

    # -- kernels -------------------------------------------------------------------------------------
    def _X(self, X, scale=None, name: str = "X") -> np.ndarray:
        """X checked: rows of the model's dtype, or (with ``scale``) of uint8 codes."""
        return _as_matrix(self._flat_images(X), name, self.sizes[0], self.dtype, "inputs", scale=scale)

    def _floats(self, X, scale) -> np.ndarray:
        """The inputs themselves: ``scale``·X in float64, rounded to the model's dtype (as the epoch kernel's
        gather does); X unchanged without a scale."""
        if scale is None:
            return X
        return (X.astype(np.float64) * scale).astype(self.dtype, copy=False)

    def _blocks(self, X, scale):
        """(first row, float inputs) over X: X itself, or converted blocks of ``CHUNK`` rows of uint8 codes."""
        if scale is None:
            yield 0, X
            return
        for lo in range(0, X.shape[0], CHUNK):
            yield lo, self._floats(X[lo:lo + CHUNK], scale)

    def _flat_images(self, X):
        """(n, C, H, W) images as the (n, C·H·W) rows the kernels read (channel, row, column order)."""
        shape = self.network.shapes[0]
        if len(shape) > 1 and np.ndim(X) == len(shape) + 1:
            X = np.asarray(X)
            if X.shape[1:] != shape:
                raise ValueError(f"X must be (n, {', '.join(map(str, shape))}) images or (n, {self.sizes[0]}) rows, "
                                 f"got shape {X.shape}")
            return X.reshape(X.shape[0], math.prod(shape))  # (0, C, H, W) too: -1 is ambiguous for no rows
        return X

    def feedforward(self, X, input_scale=None) -> np.ndarray:
        """The network's output aᴸ for every row of X: shape (n, n_out).  Dropout is off (the identity).
        ``input_scale``: X holds uint8 codes of the inputs input_scale·X (see the module docstring)."""
        scale = _input_scale(input_scale)
        X = self._X(X, scale)
        out = np.empty((X.shape[0], self.sizes[-1]), dtype=self.dtype)
        if X.shape[0]:
            kernel, flat = self._kernel("forward"), self._flat()
            for lo, part in self._blocks(X, scale):
                kernel(part, *flat, out[lo:lo + part.shape[0]])
            if not np.isfinite(out).all():
                raise self._nonfinite("feedforward", self._floats(X, scale), out)
        return out

    def cost(self, X, Y, input_scale=None) -> float:
        """Mean cost over the rows (regularisation excluded)."""
        scale = _input_scale(input_scale)
        X = self._X(X, scale)
        Y = _as_targets(Y, self.sizes[-1], self.dtype, X.shape[0])
        if X.shape[0] == 0:
            raise ValueError("cost of an empty set of rows is undefined")
        kernel, flat = self._kernel("cost"), self._flat()
        total = sum(float(kernel(part, Y[lo:lo + part.shape[0]], *flat)) for lo, part in self._blocks(X, scale))
        if not math.isfinite(total):
            raise self._nonfinite("cost", self._floats(X, scale))
        return total / X.shape[0]

    def gradients(self, X, Y, input_scale=None) -> list[tuple[np.ndarray, ...]]:
        """[(dW1, db1), ...]: gradients of the mean cost over the rows of X (dropout off)."""
        scale = _input_scale(input_scale)
        X = self._floats(self._X(X, scale), scale)
        Y = _as_targets(Y, self.sizes[-1], self.dtype, X.shape[0])
        if X.shape[0] == 0:
            raise ValueError("gradients of an empty set of rows are undefined")
        grads = [tuple(np.empty_like(p) for p in pair) for pair in self._params]
        self._kernel("backward")(X, Y, *self._flat(), *[g for pair in grads for g in pair])
        for (l, specs), pair in zip(self._specs, grads):
            for spec, arr in zip(specs, pair):
                if not np.isfinite(arr).all():
                    raise self._nonfinite("gradients", X, what=f"∂C/∂{spec.name}{l}")
        return grads

    def _nonfinite(self, where: str, X, out=None, what: str | None = None) -> FloatingPointError:
        """The error for a non-finite result: the first layer whose activation is NaN/inf on finite input,
        found by the layers' own NumPy forward maps (``Layer.reference``), off the fast path."""
        a = X.astype(np.float64)
        params = iter(self._params)
        shapes = self.network.shapes
        for l, layer in enumerate(self.network.layers[1:], start=1):
            theta = next(params) if layer.param_specs(shapes[l - 1]) else ()
            with np.errstate(all="ignore"):  # each layer reads its input in its own shape: (n, C, H, W) for images
                nxt = layer.reference(theta, a.reshape(a.shape[0], *shapes[l - 1]))
            bad = ~np.isfinite(nxt.reshape(nxt.shape[0], -1)).all(axis=1)
            if bad.any():
                row = int(np.argmax(bad))
                return FloatingPointError(
                    f"{where}: layer {l} ({layer.describe()}) gives NaN/inf at row {row} from finite inputs (the "
                    "first non-finite activation); its weighted inputs are too large for the activation or the "
                    "dtype: scale the inputs, use a smaller eta, or another activation")
            a = nxt
        thing = what or ("the output" if out is not None else "the cost")
        return FloatingPointError(f"{where}: {thing} is NaN/inf although every activation is finite (e.g. a cost "
                                  "such as log(a) at a = 0, or a derivative that overflows)")

    def run_epoch(self, X, Y, order, batch_size: int, eta: float, lmbda: float = 0.0, n: int | None = None,
                  seed: int = 0, epoch: int = 0, regularizer=None, momentum: float = 0.0,
                  input_scale=None, drop_last: bool = False, _checked: bool = False) -> None:
        """One epoch of SGD in place over the mini-batches order[k·m:(k+1)·m] (one call of the whole-epoch
        kernel; a short last mini-batch, when len(order) is not a multiple of m, is one more step of its own
        size, as in the book's network.py, unless ``drop_last``).

        ``n`` (the training-set size in the weight decay 1 − ηλ/n) defaults to ``len(order)``.  ``seed`` and
        ``epoch`` (non-negative integers) key the dropout masks: the mask of sample r in layer l is a hash of
        (seed, epoch, l, r, unit), whatever the order.  ``regularizer`` (an ``sb.Regularizer``, instead of
        ``lmbda``) and ``momentum`` μ choose the update rule (see ``fit``).  ``input_scale``: X holds uint8
        codes of the inputs input_scale·X, converted by the kernel as it gathers each mini-batch.
        """
        scale = input_scale
        if not _checked:
            scale = _input_scale(input_scale)
            regularizer, lmbda = _regularizer(regularizer, lmbda)
            momentum = _momentum(momentum)
            X = self._flat_images(X)
            order = np.asarray(order)
            if order.dtype.kind not in "iu":
                raise ValueError(f"order must hold integer row indices, got dtype {order.dtype}")
            order = np.ascontiguousarray(order, dtype=np.int64)
            if np.ndim(X) != 2:  # say what X should be, not that order is out of range for it
                _as_matrix(X, "X", self.sizes[0], self.dtype, "inputs", scale=scale)
            rows = np.asarray(X).shape[0]
            if order.ndim != 1 or (order.size and (order.min() < 0 or order.max() >= rows)):
                raise ValueError(f"order must be a 1-d array of row indices in 0..{rows - 1}")
            # Finiteness is checked by the kernel itself, on the rows it gathers (free: it reads them anyway).
            X = _as_matrix(X, "X", self.sizes[0], self.dtype, "inputs", rows=order[:0], scale=scale)
            Y = _as_targets(Y, self.sizes[-1], self.dtype, X.shape[0], visit=order[:0])
            batch_size = _whole("batch_size", batch_size, 1)
            eta, lmbda = _non_negative("eta", eta), _non_negative("lmbda", lmbda)
            seed, epoch = _whole("seed", seed, 0, 2**63 - 1), _whole("epoch", epoch, 0, 2**63 - 1)
        n = len(order) if n is None else n
        strength = regularizer.strength if regularizer is not None else lmbda
        decay = 1.0 - eta * strength / n if n else 1.0
        name = self.update_kernel(regularizer, momentum, compact=scale is not None)
        kernel = self._kernel(name)
        flat = self._flat()
        compact = [float(scale)] if scale is not None else []
        if momentum > 0:
            extra = [float(eta * strength / n if n else 0.0), float(momentum)]
            state = flat + self._velocity_arrays()
        else:  # plain SGD: exactly the kernel without momentum; velocities (if any) start again from zero
            extra = [] if regularizer is None or regularizer.is_l2 else [float(eta * strength / n if n else 0.0)]
            state = flat
            self._velocities = None
        # The kernel stops before a mini-batch with NaN/inf touches the parameters; earlier mini-batches of a
        # longer call are undone from this copy (cheap next to an epoch; per-mini-batch calls need none).
        saved = [p.copy() for p in state] if len(order) > batch_size else None
        m = int(batch_size)
        calls = [(order, m)] if len(order) >= m else []  # whole mini-batches (the kernel skips a partial one)
        rest = len(order) % m
        if rest and not drop_last:  # the book's short last mini-batch: one more step, with η/rest
            calls.append((order[len(order) - rest:], rest))
        for rows, size in calls:
            if kernel(X, Y, rows, size, float(eta), float(decay), int(seed), int(epoch), *compact, *extra, *flat,
                      *state[len(flat):]):
                for p, s in zip(state, saved or ()):
                    p[...] = s
                for what, arr in (("X", X), ("Y", Y)):
                    bad = ~np.isfinite(arr[order]).all(axis=1)
                    if bad.any():
                        raise ValueError(f"{what} contains NaN or inf (row {int(order[np.argmax(bad)])}); "
                                         "the parameters were left as they were before this call")

    # -- training ------------------------------------------------------------------------------------
    def _data(self, data, name: str, scale=None):
        try:
            X, Y = data
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be an (X, Y) pair") from None
        X = self._X(X, scale, name=f"{name}'s X")
        return X, _as_targets(Y, self.sizes[-1], self.dtype, X.shape[0])

    def evaluate(self, data, input_scale=None) -> float:
        """Fraction of rows whose largest output is the target class (Y as labels or one-hot)."""
        scale = _input_scale(input_scale)
        X, Y = self._data(data, "data", scale)
        if X.shape[0] == 0:
            raise ValueError("cannot evaluate on an empty set")
        return self._accuracy(X, Y, scale)

    def _accuracy(self, X, Y, scale=None) -> float:
        """Fraction correct on already-validated arrays."""
        return float(np.mean(self.feedforward(X, scale).argmax(axis=1) == Y.argmax(axis=1)))

    def fit(self, training_data, epochs: int = 30, batch_size: int = 10, eta: float = 3.0, lmbda: float = 0.0,
            evaluation_data=None, monitor_training: bool = False, monitor_evaluation: bool = True,
            early_stopping: int | None = None, seed=None, progress: bool | None = None,
            callback=None, regularizer=None, momentum: float = 0.0, schedule: str | None = None,
            patience: int = 10, diagnostics: bool = False, input_scale=None, drop_last: bool = False) -> History:
        """Nielsen's mini-batch SGD, one whole-epoch kernel call per epoch (no Python per mini-batch).

        Shuffles every epoch (seeded by ``seed``, else by the model's generator), continues from the current
        parameters.  Regularisation: ``lmbda`` λ is L2 as the book's network2 (λ/2n·Σw²); ``regularizer`` any
        ``sb.Regularizer`` instead (``sb.L1(λ)``, ``sb.L2(λ)``, a penalty of your own: its derivative, from
        sympy, is generated into the epoch kernel).  ``momentum`` μ: the book's momentum SGD (eqs. 107–108),
        velocities kept across calls; 0 is exactly plain SGD.  ``schedule="halve"``: halve η after
        ``patience`` epochs without a better evaluation accuracy, stop when η would reach η₀/128 (the history
        records η per epoch).  ``diagnostics=True`` records chapter 5's per-layer speed of learning,
        saturation and weight statistics per epoch (``History.diagnostics``) on a fixed sample of 1,000 rows.
        ``input_scale``: the X of ``training_data`` and ``evaluation_data`` hold uint8 codes of the inputs
        input_scale·X (e.g. ``sb.data.load_mnist(dtype="uint8")`` with 1/255), gathered and converted by the
        kernel.  Every epoch trains the short last mini-batch too (as the book), unless ``drop_last``.

        Monitors what it is asked for: evaluation accuracy and cost when ``evaluation_data`` is given
        (``monitor_evaluation``), training accuracy and cost with ``monitor_training`` (or when early stopping
        or a schedule needs a score and there is no evaluation data).  ``early_stopping=N`` stops after N epochs
        without a better score and restores the best parameters.
        """
        run = self._fit_run(training_data, epochs, batch_size, eta, lmbda, evaluation_data, monitor_training,
                            monitor_evaluation, early_stopping, regularizer, momentum, schedule, patience,
                            diagnostics, input_scale, drop_last)
        # compiled before the first epoch (not inside its time): the update kernel and what monitoring uses
        self.prepare(self.update_kernel(run.regularizer, run.momentum, compact=run.scale is not None),
                     *(("forward", "cost") if run.watch_eval or run.watch_train else ()))
        rng = np.random.default_rng(seed) if seed is not None else self._rng
        mask_seed = _mask_seed(seed, self._rng) if any(layer.trains for layer in self.network.layers) else 0
        hist = History()
        best = _BestEpoch(early_stopping)
        bar = _progress(progress, run.epochs)
        eta_now = run.eta
        if run.recorder is not None:  # the state before training (epoch 0), as the book's plots start
            _record_diagnostics(run.recorder, hist, 0)
        try:
            for epoch in range(run.epochs):
                self._train_epoch(run, rng.permutation(run.n).astype(np.int64), epoch, eta_now, mask_seed, hist)
                score = self._monitor(run, hist, epoch)
                best.update(score, epoch, hist, self)
                if bar is not None:
                    bar.update(epoch + 1, hist)
                if callback is not None:
                    callback(epoch + 1, hist)
                if best.patience_spent:
                    hist.stopped_early = True
                    break
                if run.schedule is not None:
                    eta_now, stop = run.schedule.step(score)
                    if stop:
                        hist.stopped_early = True
                        break
        finally:
            if bar is not None:
                bar.close()
        if best.params is not None:  # early stopping: the best epoch's parameters
            self._params = [tuple(self._array(p) for p in pair) for pair in best.params]
            self._velocities = None
        _warn_if_chance(hist, self.sizes[-1], run.eta)
        return hist

    def _fit_run(self, training_data, epochs, batch_size, eta, lmbda, evaluation_data, monitor_training,
                 monitor_evaluation, early_stopping, regularizer, momentum, schedule, patience, diagnostics,
                 input_scale, drop_last) -> _FitRun:
        """``fit``'s arguments checked (each refusal a ``ValueError`` naming the argument), once per call, and
        what follows from them: what to monitor, the schedule, the diagnostics recorder."""
        if self.network.untrainable is not None:
            raise ValueError(f"{self.network!r} cannot be trained: {self.network.untrainable}")
        scale = _input_scale(input_scale)
        X, Y = self._data(training_data, "training_data", scale)
        n = X.shape[0]
        if n == 0:
            raise ValueError("training_data is empty")
        epochs = _whole("epochs", epochs, 0)
        batch_size = _whole("batch_size", batch_size, 1, n)
        eta, lmbda = _non_negative("eta", eta), _non_negative("lmbda", lmbda)
        regularizer, lmbda = _regularizer(regularizer, lmbda)
        if regularizer is None or regularizer.is_l2:
            check_weight_decay(eta, lmbda if regularizer is None else regularizer.strength, n,
                               "lmbda" if regularizer is None else "the L2 strength")
        momentum = _momentum(momentum)
        if early_stopping is not None and (int(early_stopping) != early_stopping or early_stopping < 1):
            raise ValueError(f"early_stopping must be a positive integer, got {early_stopping!r}")
        sched = make_schedule(schedule, float(eta), patience)
        ev = self._data(evaluation_data, "evaluation_data", scale) if evaluation_data is not None else None
        watch_eval = ev is not None and monitor_evaluation
        watch_train = monitor_training or (not watch_eval and (early_stopping is not None or sched is not None))
        # diagnostics on a fixed sample of rows: comparable epochs
        recorder = make_recorder(self, (X, Y), sample=1000, seed=0, input_scale=scale) if diagnostics else None
        return _FitRun(X, Y, n, scale, int(epochs), int(batch_size), float(eta), float(lmbda), regularizer,
                       momentum, drop_last, ev, watch_eval, watch_train, sched, recorder)

    def _train_epoch(self, run: _FitRun, order: np.ndarray, epoch: int, eta: float, mask_seed: int,
                     hist: History) -> None:
        """One call of the whole-epoch kernel, timed into ``hist``.  When a parameter becomes NaN/inf, the
        parameters (and momentum velocities) are put back as they were before the epoch: ``FloatingPointError``."""
        before = [p.copy() for p in self._flat()]  # cheap next to an epoch: restored if it diverges
        velocities_before = (None if self._velocities is None else  # momentum's state goes back too
                             [tuple(self._array(v) for v in pair) for pair in self._velocities])
        t0 = time.perf_counter()
        self.run_epoch(run.X, run.Y, order, run.batch_size, eta, run.lmbda, run.n, seed=mask_seed, epoch=epoch,
                       regularizer=run.regularizer, momentum=run.momentum, input_scale=run.scale,
                       drop_last=run.drop_last, _checked=True)
        hist.epoch_seconds.append(time.perf_counter() - t0)
        hist.epochs.append(epoch + 1)
        hist.eta.append(eta)
        bad = self._first_nonfinite_param()
        if bad is not None:
            for p, b in zip(self._flat(), before):
                p[...] = b
            self._velocities = velocities_before
            raise FloatingPointError(
                f"training diverged at epoch {epoch + 1}: {bad} became NaN/inf; the parameters (and momentum "
                f"velocities) were restored to those before that epoch "
                f"({_divergence_hint(run.X, run.scale, eta)})")

    def _monitor(self, run: _FitRun, hist: History, epoch: int) -> float | None:
        """What ``fit`` watches after an epoch, into ``hist``; the epoch's score (the evaluation accuracy, else
        minus the training cost; None when neither is watched)."""
        if run.watch_eval:
            X, Y = run.evaluation
            hist.evaluation_accuracy.append(self._accuracy(X, Y, run.scale))
            hist.evaluation_cost.append(self.cost(X, Y, run.scale) + self._penalty(run.regularizer, run.lmbda,
                                                                                  X.shape[0]))
        if run.watch_train:
            hist.training_cost.append(self.cost(run.X, run.Y, run.scale)
                                      + self._penalty(run.regularizer, run.lmbda, run.n))
            hist.training_accuracy.append(self._accuracy(run.X, run.Y, run.scale))
        if run.recorder is not None:
            _record_diagnostics(run.recorder, hist, epoch + 1)
        return (hist.evaluation_accuracy[-1] if run.watch_eval else
                -hist.training_cost[-1] if run.watch_train else None)

    def learning_speed(self, X, Y) -> list[float]:
        """The book's "speed of learning" (chapter 5): ‖∂C/∂bˡ‖ for every layer with parameters, for the mean
        cost over the rows of X."""
        from symbp.train.diagnostics import learning_speed

        return learning_speed(self, X, Y)

    def _first_nonfinite_param(self) -> str | None:
        for k, ((l, specs), pair) in enumerate(zip(self._specs, self._params), start=1):
            for spec, arr in zip(specs, pair):
                if not np.isfinite(arr).all():
                    return f"{spec.name}{k} (layer {l})"
        return None

    def _penalty(self, regularizer, lmbda: float, n: int) -> float:
        """The regularisation term of the cost: (λ/n)·Σ R(w) over the weights (L2: λ/2n·Σw²)."""
        weights = [arr for (_, specs), pair in zip(self._specs, self._params) for spec, arr in zip(specs, pair)
                   if spec.weight]
        if regularizer is not None:
            return regularizer.penalty(weights, n)
        if not lmbda:
            return 0.0
        return 0.5 * lmbda / n * sum(float(np.sum(W.astype(np.float64) ** 2)) for W in weights)

    # -- introspection -------------------------------------------------------------------------------
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


def _divergence_hint(X: np.ndarray, scale: float | None, eta: float) -> str:
    """What to change after a divergence: the inputs when they are far from the book's [0, 1], else η."""
    largest = float(np.max(np.abs(X))) * (scale or 1.0) if X.size else 0.0
    if not largest <= 1e3:
        how = f"input_scale {scale:g} makes them" if scale is not None else "they are"
        return f"the inputs reach {largest:.3g} ({how} far from the book's 0..1): scale them to about 0..1"
    return f"try a smaller eta than {eta:g}"


def _regularizer(regularizer, lmbda):
    """(regularizer or None, lmbda) checked: an ``sb.Regularizer`` replaces ``lmbda`` (L2), not both."""
    from symbp.regularizers import Regularizer

    lmbda = _non_negative("lmbda", lmbda)
    if regularizer is None:
        return None, float(lmbda)
    if not isinstance(regularizer, Regularizer):
        raise ValueError(f"regularizer must be an sb.Regularizer (sb.L1(λ), sb.L2(λ), sb.Regularizer(name, expr, "
                         f"λ)), got {regularizer!r}")
    if lmbda:
        raise ValueError(f"give either lmbda= (L2) or regularizer=, not both (got lmbda={lmbda!r} and "
                         f"{regularizer!r}); sb.L2(λ) is the same as lmbda=λ")
    return regularizer, 0.0


def _momentum(momentum) -> float:
    f = _real(momentum)
    if f is None or not 0 <= f < 1:
        raise ValueError(f"momentum must be a number in [0, 1) (the book's μ, e.g. 0.9), got {momentum!r}")
    return f


def _mask_seed(seed, rng) -> int:
    """The dropout-mask key of one ``fit`` call: from ``seed`` when given (reproducible), else drawn from a child of
    the model's generator, which leaves the generator's own stream (the shuffles) as it was: a net with
    ``Dropout(0)`` then trains exactly as the net without it."""
    if isinstance(seed, np.random.Generator):  # fit(seed=generator): its child, not its shuffle stream
        rng, seed = seed, None
    if seed is None:
        try:
            child = rng.spawn(1)[0]
        except AttributeError:  # pragma: no cover - NumPy < 1.25
            child = rng
        return int(child.integers(0, 2**63 - 1))
    state = np.random.SeedSequence(seed).generate_state(2, np.uint64)
    return int(state[0] >> np.uint64(1))


#: fit warns when training ends this close to guessing, with an η at least this large.
CHANCE_MARGIN, HUGE_ETA = 1.5, 10.0


def _warn_if_chance(hist: History, n_classes: int, eta: float) -> None:
    acc = hist.evaluation_accuracy or hist.training_accuracy
    if not acc or n_classes < 2 or eta < HUGE_ETA or acc[-1] > CHANCE_MARGIN / n_classes:
        return
    warnings.warn(f"training ended at chance accuracy ({acc[-1]:.1%} with {n_classes} classes) after "
                  f"{len(hist.epochs)} epochs with eta = {eta:g}: an eta this large makes the updates overshoot "
                  "and the units saturate; try a smaller eta (the book uses 0.1 to 3)", RuntimeWarning, stacklevel=3)


def _check_constants(network, dtype: str) -> None:
    """Refuse expressions whose constants the dtype cannot hold (e.g. 1e39·z in float32)."""
    from symbp.activations import check_dtype_range

    for l, layer in enumerate(network.layers[1:], start=1):
        if layer.activation is not None:
            check_dtype_range(layer.activation.expr, dtype, f"layer {l} ({layer.activation.name})")
    check_dtype_range(network.cost.expr, dtype, f"cost {network.cost.name!r}")


class _progress:
    """A rich progress bar over epochs; off when stderr is not a terminal or when asked."""

    def __new__(cls, enabled, total):
        import sys

        if enabled is False or (enabled is None and not sys.stderr.isatty()) or total == 0:
            return None
        return super().__new__(cls)

    def __init__(self, enabled, total):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._p = Progress(TextColumn("epoch"), MofNCompleteColumn(), BarColumn(), TextColumn("{task.description}"),
                           TimeRemainingColumn(), transient=False)
        self._p.start()
        self._task = self._p.add_task("", total=total)

    def update(self, epoch, hist):
        desc = f"accuracy {hist.evaluation_accuracy[-1]:.2%}" if hist.evaluation_accuracy else (
            f"cost {hist.training_cost[-1]:.4f}" if hist.training_cost else "")
        self._p.update(self._task, completed=epoch, description=desc)

    def close(self):
        self._p.stop()
