"""Training a compiled model: Nielsen's mini-batch SGD, one whole-epoch kernel call per epoch.

Takes: training data, the hyper-parameters of ``fit`` and the kernels of a compiled model.  Gives: ``Training``,
the part of ``symbp.train.model.Model`` with ``run_epoch`` (one call of the whole-epoch kernel) and ``fit`` (the
epoch loop: shuffling, monitoring, early stopping, the η schedule, diagnostics, the progress bar), for a class
that has the parameters (``symbp.train.parameters.Parameters``), the evaluation (``symbp.train.evaluation
.Evaluation``), ``prepare``, ``update_kernel`` and ``_kernel``; and ``History``, what ``fit`` monitored.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from symbp.train.checks import (
    as_matrix,
    as_targets,
    check_weight_decay,
    checked_momentum,
    checked_regularizer,
    checked_scale,
    non_negative,
    whole_number,
)
from symbp.train.diagnostics import make_recorder
from symbp.train.schedule import make_schedule


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
class FitRun:
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


class BestEpoch:
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


def record_diagnostics(recorder, hist: History, epoch: int) -> None:
    """Chapter 5's figures after ``epoch`` (0: before training) into ``hist``, with the seconds they took."""
    t1 = time.perf_counter()
    hist.diagnostics.append(recorder.record(epoch))
    hist.diagnostics_seconds.append(time.perf_counter() - t1)


def divergence_hint(X: np.ndarray, scale: float | None, eta: float) -> str:
    """What to change after a divergence: the inputs when they are far from the book's [0, 1], else η."""
    largest = float(np.max(np.abs(X))) * (scale or 1.0) if X.size else 0.0
    if not largest <= 1e3:
        how = f"input_scale {scale:g} makes them" if scale is not None else "they are"
        return f"the inputs reach {largest:.3g} ({how} far from the book's 0..1): scale them to about 0..1"
    return f"try a smaller eta than {eta:g}"


def mask_key(seed, rng) -> int:
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


def warn_if_chance(hist: History, n_classes: int, eta: float) -> None:
    acc = hist.evaluation_accuracy or hist.training_accuracy
    if not acc or n_classes < 2 or eta < HUGE_ETA or acc[-1] > CHANCE_MARGIN / n_classes:
        return
    warnings.warn(f"training ended at chance accuracy ({acc[-1]:.1%} with {n_classes} classes) after "
                  f"{len(hist.epochs)} epochs with eta = {eta:g}: an eta this large makes the updates overshoot "
                  "and the units saturate; try a smaller eta (the book uses 0.1 to 3)", RuntimeWarning, stacklevel=3)


class EpochProgress:
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


class Training:
    """SGD over a compiled model's kernels (see the module docstring)."""

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
            scale = checked_scale(input_scale)
            regularizer, lmbda = checked_regularizer(regularizer, lmbda)
            momentum = checked_momentum(momentum)
            X = self._flat_images(X)
            order = np.asarray(order)
            if order.dtype.kind not in "iu":
                raise ValueError(f"order must hold integer row indices, got dtype {order.dtype}")
            order = np.ascontiguousarray(order, dtype=np.int64)
            if np.ndim(X) != 2:  # say what X should be, not that order is out of range for it
                as_matrix(X, "X", self.sizes[0], self.dtype, "inputs", scale=scale)
            rows = np.asarray(X).shape[0]
            if order.ndim != 1 or (order.size and (order.min() < 0 or order.max() >= rows)):
                raise ValueError(f"order must be a 1-d array of row indices in 0..{rows - 1}")
            # Finiteness is checked by the kernel itself, on the rows it gathers (free: it reads them anyway).
            X = as_matrix(X, "X", self.sizes[0], self.dtype, "inputs", rows=order[:0], scale=scale)
            Y = as_targets(Y, self.sizes[-1], self.dtype, X.shape[0], visit=order[:0])
            batch_size = whole_number("batch_size", batch_size, 1)
            eta, lmbda = non_negative("eta", eta), non_negative("lmbda", lmbda)
            seed, epoch = whole_number("seed", seed, 0, 2**63 - 1), whole_number("epoch", epoch, 0, 2**63 - 1)
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
        mask_seed = mask_key(seed, self._rng) if any(layer.trains for layer in self.network.layers) else 0
        hist = History()
        best = BestEpoch(early_stopping)
        bar = EpochProgress(progress, run.epochs)
        eta_now = run.eta
        if run.recorder is not None:  # the state before training (epoch 0), as the book's plots start
            record_diagnostics(run.recorder, hist, 0)
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
        warn_if_chance(hist, self.sizes[-1], run.eta)
        return hist

    def _fit_run(self, training_data, epochs, batch_size, eta, lmbda, evaluation_data, monitor_training,
                 monitor_evaluation, early_stopping, regularizer, momentum, schedule, patience, diagnostics,
                 input_scale, drop_last) -> FitRun:
        """``fit``'s arguments checked (each refusal a ``ValueError`` naming the argument), once per call, and
        what follows from them: what to monitor, the schedule, the diagnostics recorder."""
        if self.network.untrainable is not None:
            raise ValueError(f"{self.network!r} cannot be trained: {self.network.untrainable}")
        scale = checked_scale(input_scale)
        X, Y = self._data(training_data, "training_data", scale)
        n = X.shape[0]
        if n == 0:
            raise ValueError("training_data is empty")
        epochs = whole_number("epochs", epochs, 0)
        batch_size = whole_number("batch_size", batch_size, 1, n)
        eta, lmbda = non_negative("eta", eta), non_negative("lmbda", lmbda)
        regularizer, lmbda = checked_regularizer(regularizer, lmbda)
        if regularizer is None or regularizer.is_l2:
            check_weight_decay(eta, lmbda if regularizer is None else regularizer.strength, n,
                               "lmbda" if regularizer is None else "the L2 strength")
        momentum = checked_momentum(momentum)
        if early_stopping is not None and (int(early_stopping) != early_stopping or early_stopping < 1):
            raise ValueError(f"early_stopping must be a positive integer, got {early_stopping!r}")
        sched = make_schedule(schedule, float(eta), patience)
        ev = self._data(evaluation_data, "evaluation_data", scale) if evaluation_data is not None else None
        watch_eval = ev is not None and monitor_evaluation
        watch_train = monitor_training or (not watch_eval and (early_stopping is not None or sched is not None))
        # diagnostics on a fixed sample of rows: comparable epochs
        recorder = make_recorder(self, (X, Y), sample=1000, seed=0, input_scale=scale) if diagnostics else None
        return FitRun(X, Y, n, scale, int(epochs), int(batch_size), float(eta), float(lmbda), regularizer,
                      momentum, drop_last, ev, watch_eval, watch_train, sched, recorder)

    def _train_epoch(self, run: FitRun, order: np.ndarray, epoch: int, eta: float, mask_seed: int,
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
                f"({divergence_hint(run.X, run.scale, eta)})")

    def _monitor(self, run: FitRun, hist: History, epoch: int) -> float | None:
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
            record_diagnostics(run.recorder, hist, epoch + 1)
        return (hist.evaluation_accuracy[-1] if run.watch_eval else
                -hist.training_cost[-1] if run.watch_train else None)
