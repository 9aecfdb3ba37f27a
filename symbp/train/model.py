"""The compiled model: kernels + parameters, and Nielsen's SGD on top of them.

Takes: a ``Network`` and compile options.  Gives: ``Model`` with ``params``/``set_params``,
``feedforward``, ``cost``, ``gradients``, ``run_epoch`` (one call of the whole-epoch kernel), ``fit``,
``evaluate``, ``source``, ``save``.

Arrays: samples are rows.  ``X`` is (n, n_in); targets ``Y`` are (n, n_out) or, where it makes sense
(``cost``, ``gradients``, ``fit``, ``evaluate``), integer class labels of shape (n,), turned into one-hot
rows.  Inputs of another real dtype (ints, bools, the other float width) are converted to the model's dtype;
complex, object and string arrays are refused, as are 1-d inputs, wrong widths, row-count mismatches and
NaN/inf (all ``ValueError`` saying what was expected).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from symbp.compile.backends import BACKENDS
from symbp.compile.cache import declaration_key
from symbp.compile.lower import lower

DTYPES = ("float64", "float32")
INITS = ("default", "large")


def _as_matrix(arr, name: str, cols: int, dtype, what: str, rows=None) -> np.ndarray:
    arr = np.asarray(arr)
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
    best_epoch: int | None = None
    stopped_early: bool = False

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


#: Byte alignment of the parameter arrays: one AVX-512 vector, one cache line (as the kernels' own buffers).
ALIGN = 64


def aligned_copy(a) -> np.ndarray:
    """A C-contiguous copy of ``a`` starting on an ``ALIGN``-byte boundary.  NumPy's large arrays start 16
    bytes past one; BLAS then splits every 64-byte load of the weights across two cache lines (measured:
    the ch.1 epoch up to 12% slower)."""
    a = np.asarray(a)
    raw = np.empty(a.nbytes + ALIGN, dtype=np.uint8)
    off = -raw.ctypes.data % ALIGN
    out = raw[off:off + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


class Model:
    """A network compiled for one backend and dtype, with its parameters."""

    def __init__(self, network, backend: str = "numba", dtype: str = "float64", seed=None, init: str = "default"):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        dtype = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        self.network = network
        self.backend = backend
        self.dtype = np.dtype(dtype)
        t0 = time.perf_counter()
        self._programs = None
        build = BACKENDS[backend]
        key = declaration_key(network, backend, dtype) if backend == "numba" else None
        self.kernels = None
        if key is not None:
            try:
                # A declaration compiled before (any process) reuses its recorded kernels: no derivation needed.
                self.kernels = build(network, None, dtype, key)
            except LookupError:
                pass
        if self.kernels is None:
            self.kernels = build(network, self.programs, dtype, key)
        self.compile_seconds = time.perf_counter() - t0
        self.sizes = network.sizes
        self._rng = np.random.default_rng(seed)
        self._params: list[tuple[np.ndarray, np.ndarray]] = []
        self.init_params(init)

    @property
    def programs(self):
        """The kernel programs (IR) lowered from ``network.equations()``."""
        if self._programs is None:
            self._programs = lower(self.network)
        return self._programs

    # -- parameters ----------------------------------------------------------------------------------
    # The kernels update the parameters in place; they live on 64-byte boundaries (see ``aligned_copy``).
    def init_params(self, init: str = "default", seed=None) -> None:
        """``default``: W ~ N(0, 1/n_in), b ~ N(0, 1); ``large``: W ~ N(0, 1) (the book's chapter 1)."""
        if init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")
        rng = self._rng if seed is None else np.random.default_rng(seed)
        params = []
        for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:]):
            scale = 1.0 / math.sqrt(n_in) if init == "default" else 1.0
            W = (rng.standard_normal((n_out, n_in)) * scale).astype(self.dtype)
            b = rng.standard_normal(n_out).astype(self.dtype)
            params.append((aligned_copy(W), aligned_copy(b)))
        self._params = params

    @property
    def params(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Copies of [(W1, b1), (W2, b2), ...], W of shape (n_out, n_in), b of shape (n_out,)."""
        return [(W.copy(), b.copy()) for W, b in self._params]

    def set_params(self, params) -> None:
        params = list(params)
        if len(params) != len(self.sizes) - 1:
            raise ValueError(f"expected {len(self.sizes) - 1} (W, b) pairs, got {len(params)}")
        new = []
        for l, (pair, n_in, n_out) in enumerate(zip(params, self.sizes[:-1], self.sizes[1:]), start=1):
            try:
                W, b = pair
            except (TypeError, ValueError):
                raise ValueError(f"layer {l}: expected a (W, b) pair") from None
            W = _as_matrix(W, f"W{l}", n_in, self.dtype, f"layer {l} weights")
            if W.shape[0] != n_out:
                raise ValueError(f"W{l} must have shape ({n_out}, {n_in}), got {W.shape}")
            b = np.asarray(b)
            if b.shape != (n_out,) or b.dtype.kind not in "biuf":
                raise ValueError(f"b{l} must be a real vector of shape ({n_out},), got {b.shape} {b.dtype}")
            b = np.ascontiguousarray(b, dtype=self.dtype)
            if not np.isfinite(b).all():
                raise ValueError(f"b{l} contains NaN or inf")
            new.append((aligned_copy(W), aligned_copy(b)))
        self._params = new

    def _flat(self) -> list[np.ndarray]:
        return [arr for pair in self._params for arr in pair]

    # -- kernels -------------------------------------------------------------------------------------
    def _X(self, X) -> np.ndarray:
        return _as_matrix(X, "X", self.sizes[0], self.dtype, "inputs")

    def feedforward(self, X) -> np.ndarray:
        """The network's output aᴸ for every row of X: shape (n, n_out)."""
        X = self._X(X)
        out = np.empty((X.shape[0], self.sizes[-1]), dtype=self.dtype)
        if X.shape[0]:
            self.kernels.functions["forward"](X, *self._flat(), out)
        return out

    def cost(self, X, Y) -> float:
        """Mean cost over the rows (regularisation excluded)."""
        X = self._X(X)
        Y = _as_targets(Y, self.sizes[-1], self.dtype, X.shape[0])
        if X.shape[0] == 0:
            raise ValueError("cost of an empty set of rows is undefined")
        return float(self.kernels.functions["cost"](X, Y, *self._flat())) / X.shape[0]

    def gradients(self, X, Y) -> list[tuple[np.ndarray, np.ndarray]]:
        """[(dW1, db1), ...]: gradients of the mean cost over the rows of X."""
        X = self._X(X)
        Y = _as_targets(Y, self.sizes[-1], self.dtype, X.shape[0])
        if X.shape[0] == 0:
            raise ValueError("gradients of an empty set of rows are undefined")
        grads = [(np.empty_like(W), np.empty_like(b)) for W, b in self._params]
        self.kernels.functions["backward"](X, Y, *self._flat(), *[g for pair in grads for g in pair])
        return grads

    def run_epoch(self, X, Y, order, batch_size: int, eta: float, lmbda: float = 0.0, n: int | None = None,
                  _checked: bool = False) -> None:
        """One call of the whole-epoch kernel: SGD over the mini-batches order[k·m:(k+1)·m], in place.

        ``n`` (the training-set size in the weight decay 1 − ηλ/n) defaults to ``len(order)``.
        """
        if not _checked:
            order = np.asarray(order)
            if order.dtype.kind not in "iu":
                raise ValueError(f"order must hold integer row indices, got dtype {order.dtype}")
            order = np.ascontiguousarray(order, dtype=np.int64)
            if np.ndim(X) != 2:  # say what X should be, not that order is out of range for it
                _as_matrix(X, "X", self.sizes[0], self.dtype, "inputs")
            rows = np.asarray(X).shape[0]
            if order.ndim != 1 or (order.size and (order.min() < 0 or order.max() >= rows)):
                raise ValueError(f"order must be a 1-d array of row indices in 0..{rows - 1}")
            # Finiteness is checked by the kernel itself, on the rows it gathers (free: it reads them anyway).
            X = _as_matrix(X, "X", self.sizes[0], self.dtype, "inputs", rows=order[:0])
            Y = _as_targets(Y, self.sizes[-1], self.dtype, X.shape[0], visit=order[:0])
            if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
                raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
            for name, v in (("eta", eta), ("lmbda", lmbda)):
                if not math.isfinite(v) or v < 0:
                    raise ValueError(f"{name} must be a finite non-negative number, got {v!r}")
        n = len(order) if n is None else n
        decay = 1.0 - eta * lmbda / n if n else 1.0
        flat = self._flat()
        # The kernel stops before a mini-batch with NaN/inf touches the parameters; earlier mini-batches of a
        # longer call are undone from this copy (cheap next to an epoch; per-mini-batch calls need none).
        saved = [p.copy() for p in flat] if len(order) > batch_size else None
        if self.kernels.functions["sgd_epoch"](X, Y, order, int(batch_size), float(eta), float(decay), *flat):
            for p, s in zip(flat, saved or ()):
                p[...] = s
            for name, arr in (("X", X), ("Y", Y)):
                bad = ~np.isfinite(arr[order]).all(axis=1)
                if bad.any():
                    raise ValueError(f"{name} contains NaN or inf (row {int(order[np.argmax(bad)])}); "
                                     "the parameters were left as they were before this call")

    # -- training ------------------------------------------------------------------------------------
    def _data(self, data, name: str):
        try:
            X, Y = data
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be an (X, Y) pair") from None
        X = self._X(X)
        return X, _as_targets(Y, self.sizes[-1], self.dtype, X.shape[0])

    def evaluate(self, data) -> float:
        """Fraction of rows whose largest output is the target class (Y as labels or one-hot)."""
        X, Y = self._data(data, "data")
        if X.shape[0] == 0:
            raise ValueError("cannot evaluate on an empty set")
        return self._accuracy(X, Y)

    def _accuracy(self, X, Y) -> float:
        """Fraction correct on already-validated arrays."""
        return float(np.mean(self.feedforward(X).argmax(axis=1) == Y.argmax(axis=1)))

    def fit(self, training_data, epochs: int = 30, batch_size: int = 10, eta: float = 3.0, lmbda: float = 0.0,
            evaluation_data=None, monitor_training: bool = False, monitor_evaluation: bool = True,
            early_stopping: int | None = None, seed=None, progress: bool | None = None,
            callback=None) -> History:
        """Nielsen's mini-batch SGD, one whole-epoch kernel call per epoch (no Python per mini-batch).

        Shuffles every epoch (seeded by ``seed``, else by the model's generator), L2 weight decay with λ,
        continues from the current parameters.  Monitors evaluation accuracy and cost (and, if asked,
        training accuracy and cost) per epoch.  ``early_stopping=N`` stops after N epochs without a better
        evaluation accuracy (training cost if no evaluation data) and restores the best parameters.
        """
        X, Y = self._data(training_data, "training_data")
        n = X.shape[0]
        if n == 0:
            raise ValueError("training_data is empty")
        if isinstance(epochs, bool) or int(epochs) != epochs or epochs < 0:
            raise ValueError(f"epochs must be a non-negative integer, got {epochs!r}")
        if isinstance(batch_size, bool) or int(batch_size) != batch_size or not 1 <= batch_size <= n:
            raise ValueError(f"batch_size must be an integer in 1..{n}, got {batch_size!r}")
        for name, v in (("eta", eta), ("lmbda", lmbda)):
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite non-negative number, got {v!r}")
        if early_stopping is not None and (int(early_stopping) != early_stopping or early_stopping < 1):
            raise ValueError(f"early_stopping must be a positive integer, got {early_stopping!r}")
        ev = self._data(evaluation_data, "evaluation_data") if evaluation_data is not None else None
        rng = np.random.default_rng(seed) if seed is not None else self._rng
        hist = History()
        best_score, best_params, since_best = -math.inf, None, 0
        bar = _progress(progress, epochs)
        try:
            for epoch in range(int(epochs)):
                order = rng.permutation(n).astype(np.int64)
                t0 = time.perf_counter()
                self.run_epoch(X, Y, order, int(batch_size), float(eta), float(lmbda), n, _checked=True)
                hist.epoch_seconds.append(time.perf_counter() - t0)
                hist.epochs.append(epoch + 1)
                if not all(np.isfinite(p).all() for p in self._flat()):
                    raise FloatingPointError(
                        f"training diverged at epoch {epoch + 1}: parameters became NaN/inf (try a smaller eta)")
                if ev is not None and monitor_evaluation:
                    hist.evaluation_accuracy.append(self._accuracy(*ev))
                    hist.evaluation_cost.append(self.cost(*ev) + self._l2(lmbda, ev[0].shape[0]))
                if monitor_training or ev is None:
                    hist.training_cost.append(self.cost(X, Y) + self._l2(lmbda, n))
                    hist.training_accuracy.append(self._accuracy(X, Y))
                score = hist.evaluation_accuracy[-1] if hist.evaluation_accuracy else -hist.training_cost[-1]
                if score > best_score:
                    best_score, since_best, hist.best_epoch = score, 0, epoch + 1
                    if early_stopping:
                        best_params = self.params
                else:
                    since_best += 1
                if bar is not None:
                    bar.update(epoch + 1, hist)
                if callback is not None:
                    callback(epoch + 1, hist)
                if early_stopping and since_best >= early_stopping:
                    hist.stopped_early = True
                    break
        finally:
            if bar is not None:
                bar.close()
        if early_stopping and best_params is not None:
            self._params = [(aligned_copy(W), aligned_copy(b)) for W, b in best_params]
        return hist

    def _l2(self, lmbda: float, n: int) -> float:
        if not lmbda:
            return 0.0
        return 0.5 * lmbda / n * sum(float(np.sum(W.astype(np.float64) ** 2)) for W, _ in self._params)

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
        return dict(self.kernels.cache_info)

    def save(self, path) -> None:
        """Write the network as JSON and the parameters as .npz (see ``symbp.train.serialize``)."""
        from symbp.train.serialize import save

        return save(self, path)

    def __repr__(self):
        return f"<Model {self.network!r} backend={self.backend} dtype={self.dtype.name}>"


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
