"""Limits on the work symbp does for a user's expression: a time budget and size bounds.

Takes: nothing at import; ``budget(...)`` (a context manager) sets the limits for a block, ``SYMBP_DERIVE_SECONDS``
sets the default time.  Gives: ``run_required(what, body)`` and ``run_optional(body, share)``, the guards that the
declaration (``Activation``, ``Cost``) and the derivation (``symbp.derive.calculus``) put around their work, and
the module constants below.

Every user expression is declared and derived within the budget.  ``run_required(what, body)`` guards a step
whose result is needed (declaring σ, differentiating it): past its deadline it raises ``ValueError`` naming
``what`` and the budget.  ``run_optional(body, share)`` guards an improvement (the search for a form of σ′ in
``a``, candidate simplifications): it may use ``share`` of the time its enclosing guard has left; past that the
block is abandoned and the caller falls back to the plain result (with a note).  Guards nest; an inner guard
never outlives its enclosing one.

How a deadline stops a long sympy call: a timer thread (one per guard) injects ``_Interrupt`` into the guarded
thread with ``PyThreadState_SetAsyncExc``, so it works in any thread (dask workers included), unlike SIGALRM.
The interrupt derives from ``BaseException`` (sympy's ``except Exception`` clauses do not swallow it) and is
repeated every ``_REPEAT`` seconds until the guard ends (one raised inside a ``__del__`` or gc callback is
printed and dropped by Python).  When a guard ends, its timer is disarmed under a lock before anything else
and an interrupt it had already scheduled is received and dropped there, so no interrupt is ever delivered
after the guarded block has exited.  An interrupt is only seen by Python code: one C call that runs long is
stopped when it returns, which the size bounds (and the parser's exponent limits) keep short.
"""

from __future__ import annotations

import _thread
import contextvars
import ctypes
import math
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import mpmath
from sympy.core.parameters import global_parameters

#: Default time budget, in seconds, for declaring or deriving one user expression (σ, σ′ of an activation, a cost,
#: ∇ₐC, δᴸ of an output layer); ``SYMBP_DERIVE_SECONDS`` overrides it, ``budget(seconds=...)`` too.
DEFAULT_SECONDS = 10.0
#: Environment variable for the time budget (seconds, a positive number).
SECONDS_ENV = "SYMBP_DERIVE_SECONDS"
#: Largest accepted size (``sympy.count_ops``) of σ, σ′, the cost and ∇ₐC, and of any candidate simplification.
MAX_OPS = 3000
#: A cheap pre-check before ``count_ops``: expressions with more tree nodes than this are refused outright
#: (counting stops there, so a huge shared-subexpression tree costs nothing).
MAX_NODES = 20 * MAX_OPS

_REPEAT = 0.05  # seconds between repeated interrupts of a guard that has not stopped yet
_ABANDONED = 5.0  # a timer whose guard never armed (its start was itself interrupted) gives up after this


@dataclass(frozen=True)
class Limits:
    """The limits in force: time (seconds per expression) and size (``count_ops``)."""

    seconds: float
    max_ops: int


_override: contextvars.ContextVar[Limits | None] = contextvars.ContextVar("symbp_derive_limits", default=None)


def _env_seconds() -> float:
    text = os.environ.get(SECONDS_ENV, "").strip()
    if not text:
        return DEFAULT_SECONDS
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{SECONDS_ENV}={text!r} is not a number of seconds") from None
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{SECONDS_ENV}={text!r} must be a positive number of seconds")
    return value


def current() -> Limits:
    """The limits in force here: those of the innermost ``budget(...)`` block, else the defaults."""
    limits = _override.get()
    return limits if limits is not None else Limits(_env_seconds(), MAX_OPS)


@contextmanager
def budget(seconds: float | None = None, max_ops: int | None = None) -> Iterator[Limits]:
    """Use other limits inside the block (this thread or task only), e.g. ``with sb.derive.budget(seconds=2): ...``.

    ``seconds``: the time budget per expression (default: ``SYMBP_DERIVE_SECONDS`` or ``DEFAULT_SECONDS``);
    ``max_ops``: the size bound (default ``MAX_OPS``).  Derivations are cached per expression, so a result
    derived (or degraded) under one budget is reused under another.
    """
    base = current()
    if seconds is None:
        seconds = base.seconds
    if max_ops is None:
        max_ops = base.max_ops
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not (
            math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"budget seconds must be a positive number, got {seconds!r}")
    if isinstance(max_ops, bool) or not isinstance(max_ops, int) or max_ops < 1:
        raise ValueError(f"budget max_ops must be a positive integer, got {max_ops!r}")
    token = _override.set(Limits(float(seconds), max_ops))
    try:
        yield _override.get()
    finally:
        _override.reset(token)


def hint() -> str:
    return f"set {SECONDS_ENV} or sb.derive.budget(...)"


class _Interrupt(BaseException):  # noqa: N818 - not an error: the timer's signal to stop
    """Injected into a guarded thread when a deadline passes; never escapes a guard."""


# ------------------------------------------------------------------------------------------------ the timers

_inject_lock = threading.Lock()  # held by a timer while it injects, and by a guard while it disarms
_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
_INTERRUPT = ctypes.py_object(_Interrupt)
_ARMING, _ARMED, _DONE = 0, 1, 2


def _timer(tid: int, deadline: float, state: list, wake) -> None:
    """Sleep until ``deadline`` (or until woken); then interrupt ``tid`` every ``_REPEAT`` s while armed."""
    started = time.monotonic()
    while True:
        wait = deadline - time.monotonic()
        if wait > 0 and wake.acquire(timeout=wait):
            return  # the guard ended and woke us
        with _inject_lock:
            if state[0] == _DONE:
                return
            if state[0] == _ARMED:
                _set_async_exc(ctypes.c_ulong(tid), _INTERRUPT)
            elif time.monotonic() - started > _ABANDONED:
                return
        deadline = time.monotonic() + _REPEAT


def _settle(state: list, wake) -> None:
    """Disarm a guard's timer, take delivery of an interrupt it had already scheduled, and wake the timer.

    The pending interrupt is received here (a loop's backward jump is where CPython delivers it) rather than
    cancelled with ``PyThreadState_SetAsyncExc(tid, NULL)``: cancelling leaves CPython's "async exception
    pending" flag set, which makes every later check slower and loops forever at a function entry under a
    profiler or coverage tracer (CPython 3.11)."""
    with _inject_lock:  # waits for an injection in progress, after which the timer sees _DONE
        state[0] = _DONE
    try:
        for _ in range(2):
            pass
    except _Interrupt:
        pass
    try:
        wake.release()
    except RuntimeError:  # already released by an earlier, interrupted attempt
        pass


class _Frame:
    """One guard on this thread's stack of guards."""

    __slots__ = ("deadline", "parent", "expired", "seconds", "optional")

    def __init__(self, deadline: float, parent: _Frame | None, seconds: float, optional: bool):
        self.deadline = deadline
        self.parent = parent
        self.expired = False
        self.seconds = seconds
        self.optional = optional


_local = threading.local()


def _top() -> _Frame | None:
    return getattr(_local, "top", None)


def remaining() -> float:
    """Seconds left to the innermost guard of this thread (inf outside any guard)."""
    top = _top()
    return math.inf if top is None else top.deadline - time.monotonic()


def checkpoint() -> None:
    """Raise the interrupt now if the innermost guard's deadline has passed (a cooperative check, between steps;
    it is what stops a guard whose timer thread could not be started)."""
    top = _top()
    if top is not None and time.monotonic() >= top.deadline:
        raise _Interrupt


_STATE = ("evaluate", "distribute", "exp_is_pow")


def _global_state() -> tuple:
    return tuple(getattr(global_parameters, name) for name in _STATE) + (mpmath.mp.prec,)


def _restore(state: tuple) -> None:
    """Put back sympy's global parameters and mpmath's precision as they were when a guard started: an interrupt
    that lands in a context manager's exit (``sympy.evaluate(False)``, ``mpmath.workdps``) could leave them
    changed."""
    for name, value in zip(_STATE, state):
        if getattr(global_parameters, name) != value:
            setattr(global_parameters, name, value)
    if mpmath.mp.prec != state[-1]:
        mpmath.mp.prec = state[-1]


def _quiet_unraisable(previous):
    """An ``sys.unraisablehook`` that drops an ``_Interrupt`` landing where Python cannot raise it (a finalizer or
    weakref callback run inside the guarded block: it is lost, and the timer's next injection, ``_REPEAT``
    seconds later, stops the block instead) and passes everything else on."""

    def hook(unraisable):
        if isinstance(unraisable.exc_value, _Interrupt) or unraisable.exc_type is _Interrupt:
            return
        previous(unraisable)

    return hook


def _run_guarded(frame: _Frame, body):
    """Run ``body()`` under ``frame``'s deadline.  Gives (finished, value); never lets an interrupt out of
    the block, and leaves none pending after it (see the module docstring).  When it was interrupted, sympy's
    and mpmath's global settings are restored as they were."""
    saved = _global_state()
    tid = threading.get_ident()
    state = [_ARMING]
    wake = _thread.allocate_lock()
    wake.acquire()
    finished, value = False, None
    try:
        _thread.start_new_thread(_timer, (tid, frame.deadline, state, wake))
    except RuntimeError:  # no thread to be had (resource limits, interpreter shutdown): checkpoints only
        pass
    previous_hook = sys.unraisablehook
    quiet = sys.unraisablehook = _quiet_unraisable(previous_hook)
    try:
        try:
            state[0] = _ARMED
            _local.top = frame
            value = body()
            finished = True
        except _Interrupt:
            pass
    finally:
        state[0] = _DONE  # first: from here on no timer of this guard starts an injection
        while True:
            try:
                _settle(state, wake)
                _local.top = frame.parent
                break
            except _Interrupt:  # the one injection already under way when we disarmed: now consumed
                continue
        if sys.unraisablehook is quiet:  # (another thread's guard may have wrapped it since: then leave it)
            sys.unraisablehook = previous_hook
    if not finished:
        _restore(saved)
    return finished, value


def _new_frame(seconds: float, optional: bool) -> _Frame:
    parent = _top()
    now = time.monotonic()
    deadline = now + max(seconds, 0.0)
    if parent is not None:
        deadline = min(deadline, parent.deadline)
    return _Frame(deadline, parent, seconds, optional)


def _inside_optional(frame: _Frame) -> bool:
    """Is an enclosing guard optional (so that running out of time there is not an error)?"""
    parent = frame.parent
    while parent is not None:
        if parent.optional:
            return True
        parent = parent.parent
    return False


def run_required(what: str, body, seconds: float | None = None, budget: float | None = None):
    """``body()`` within the budget (``seconds``, default the current limits), or ``ValueError`` naming ``what``
    and the budget (``budget`` when given: the whole budget that ``seconds`` is what is left of).

    Nested in another guard, it ends no later than that guard.  Running out of time is this guard's error
    (naming ``what``) unless an enclosing optional guard ran out, which then falls back as usual.
    ``RecursionError`` and ``MemoryError`` in ``body`` become ``ValueError`` naming ``what``.
    """
    if seconds is None:
        seconds = current().seconds
    frame = _new_frame(seconds, optional=False)
    if budget is not None:
        frame.seconds = budget
    if time.monotonic() >= frame.deadline:
        _expired(frame, what)
    try:
        finished, value = _run_guarded(frame, body)
    except RecursionError:
        raise ValueError(f"{what}: the expression is too deeply nested for sympy") from None
    except MemoryError:
        raise ValueError(f"{what}: ran out of memory") from None
    if finished:
        return value
    _expired(frame, what)


def _expired(frame: _Frame, what: str):
    frame.expired = True
    parent = frame.parent
    if (parent is not None and time.monotonic() >= parent.deadline and frame.deadline >= parent.deadline
            and _inside_optional(frame)):
        raise _Interrupt  # an enclosing optional guard's deadline: it falls back
    raise ValueError(f"{what} exceeded the derivation budget of {_seconds(frame.seconds)} ({hint()})")


def run_optional(body, share: float = 1.0, seconds: float | None = None, default=None):
    """``body()`` with ``share`` of the enclosing guard's remaining time (and at most ``seconds``).

    Gives ``(value, True)`` when it finished, ``(default, False)`` when it ran out of time.  Outside any guard
    it runs under the current budget.  An interrupt for an enclosing guard is passed on.
    """
    parent = _top()
    now = time.monotonic()
    left = current().seconds if parent is None else parent.deadline - now
    allowed = max(left, 0.0) * share
    if seconds is not None:
        allowed = min(allowed, seconds)
    frame = _new_frame(allowed, optional=True)
    if now >= frame.deadline:
        frame.expired = True
        if parent is not None and now >= parent.deadline:
            raise _Interrupt
        return default, False
    finished, value = _run_guarded(frame, body)
    if finished:
        return value, True
    frame.expired = True
    if parent is not None and time.monotonic() >= parent.deadline and frame.deadline >= parent.deadline:
        raise _Interrupt
    return default, False


def _seconds(s: float) -> str:
    return f"{s:g} s"


def describe() -> str:
    """The current budget, for messages: "10 s"."""
    return _seconds(current().seconds)
