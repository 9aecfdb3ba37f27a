"""The derivation budget's mechanism (symbp.derive.limits): deadlines that stop long pure-Python and sympy work in
any thread, degrade optional steps, never fire after their block, and the limits' settings."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import pytest
import sympy as sp

import symbp as sb
from symbp.derive import limits

# An interrupt can land in a garbage-collector callback (hypothesis installs one), where Python prints it as
# "Exception ignored" and drops it; the guard repeats it, so this is noise, not a failure.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <function gc_cumulative_time:pytest.PytestUnraisableExceptionWarning")


def _spin():
    while True:
        pass


def _work(seconds: float) -> str:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
    return "done"


def test_required_stops_a_busy_loop_with_a_value_error_naming_what_and_the_budget():
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"Activation 'x': deriving σ′ exceeded the derivation budget of 0\.3 s "
                                         r"\(set SYMBP_DERIVE_SECONDS or sb\.derive\.budget"):
        limits.run_required("Activation 'x': deriving σ′", _spin, seconds=0.3)
    assert time.perf_counter() - start < 1.5


def test_required_gives_the_value_when_in_time():
    assert limits.run_required("w", lambda: _work(0.01), seconds=5) == "done"


def test_optional_falls_back_and_leaves_the_rest_of_the_budget():
    def body():
        value, finished = limits.run_optional(_spin, share=0.3, default="fallback")
        return value, finished, limits.remaining()

    start = time.perf_counter()
    value, finished, left = limits.run_required("outer", body, seconds=2.0)
    assert (value, finished) == ("fallback", False)
    assert 1.0 < left < 1.5  # the optional step took its share (30 %) only
    assert time.perf_counter() - start < 1.5


def test_optional_gives_the_value_when_in_time():
    assert limits.run_optional(lambda: _work(0.01), share=0.5) == ("done", True)


def test_outer_deadline_inside_an_optional_step_is_the_outer_error():
    with pytest.raises(ValueError, match="outer exceeded"):
        limits.run_required("outer", lambda: limits.run_optional(_spin, share=1.0), seconds=0.3)


def test_nested_required_names_itself():
    with pytest.raises(ValueError, match="inner exceeded"):
        limits.run_required("outer", lambda: limits.run_required("inner", _spin, seconds=0.2), seconds=5)


def test_interrupt_is_not_swallowed_by_except_exception():
    def stubborn():
        while True:
            try:
                _work(0.01)
            except Exception:  # noqa: BLE001 - what sympy does in places
                pass

    with pytest.raises(ValueError, match="exceeded"):
        limits.run_required("stubborn", stubborn, seconds=0.2)


def test_a_long_sympy_call_is_stopped():
    x = sp.Symbol("x")
    start = time.perf_counter()
    _, finished = limits.run_optional(lambda: sp.factor(sp.expand((x + 1) ** 300 * (x - 2) ** 200)), seconds=0.5)
    assert not finished
    assert time.perf_counter() - start < 2


def test_works_in_worker_threads():
    results = []

    def worker():
        try:
            limits.run_required("in a thread", _spin, seconds=0.2)
        except ValueError as exc:
            results.append(str(exc))

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(results) == 3 and all("in a thread exceeded" in r for r in results)


def test_no_interrupt_is_delivered_after_a_guard_ends():
    """Guards that end just before, at or after their deadline: nothing may surface in the code after them."""
    stray = 0
    for i in range(200):
        seconds = 0.002 + (i % 7) * 0.001
        try:
            limits.run_optional(lambda s=seconds * (0.5 + (i % 3) * 0.5): _work(s), seconds=seconds)
            total = 0
            for k in range(20000):  # backward jumps: where a pending interrupt would be raised
                total += k
            time.sleep(0.001)
        except BaseException:  # noqa: BLE001 - anything at all is a failure here
            stray += 1
    assert stray == 0


def test_guard_under_a_profiler_does_not_hang():
    """A cancelled pending interrupt once left CPython's flag set, and a profiled function entry then looped
    forever; the guard takes delivery instead."""
    code = textwrap.dedent("""
        import cProfile
        from symbp.derive import limits
        def spin():
            while True:
                pass
        p = cProfile.Profile(); p.enable()
        for _ in range(3):
            try:
                limits.run_required("x", spin, seconds=0.1)
            except ValueError:
                pass
        limits.run_optional(spin, seconds=0.1)
        p.disable()
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr


def test_global_settings_are_restored_after_an_interrupt():
    import mpmath
    from sympy.core.parameters import global_parameters

    def leave_changed():
        mpmath.mp.dps = 50
        global_parameters.evaluate = False
        _spin()

    prec = mpmath.mp.prec
    _, finished = limits.run_optional(leave_changed, seconds=0.2)
    assert not finished
    assert global_parameters.evaluate is True and mpmath.mp.prec == prec


def test_recursion_error_becomes_a_value_error():
    def deep(n=0):
        return deep(n + 1)

    with pytest.raises(ValueError, match="too deeply nested"):
        limits.run_required("deep", deep, seconds=5)


def test_budget_settings(monkeypatch):
    monkeypatch.delenv(limits.SECONDS_ENV, raising=False)
    assert limits.current() == limits.Limits(limits.DEFAULT_SECONDS, limits.MAX_OPS)
    monkeypatch.setenv(limits.SECONDS_ENV, "3.5")
    assert limits.current().seconds == 3.5
    with sb.derive.budget(seconds=1.5, max_ops=100) as lim:
        assert lim == limits.current() == limits.Limits(1.5, 100)
        with sb.derive.budget(max_ops=50):
            assert limits.current() == limits.Limits(1.5, 50)
    assert limits.current().seconds == 3.5
    for bad in ("0", "-1", "nan", "inf", "soon"):
        monkeypatch.setenv(limits.SECONDS_ENV, bad)
        with pytest.raises(ValueError, match=limits.SECONDS_ENV):
            limits.current()
    monkeypatch.delenv(limits.SECONDS_ENV)
    for kwargs in ({"seconds": 0}, {"seconds": float("inf")}, {"seconds": True}, {"max_ops": 0}, {"max_ops": 2.5}):
        with pytest.raises(ValueError, match="budget"), sb.derive.budget(**kwargs):
            pass


def test_without_a_timer_thread_checkpoints_still_stop_the_guard(monkeypatch):
    def no_thread(*args):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(limits._thread, "start_new_thread", no_thread)

    def cooperative():
        while True:
            _work(0.01)
            limits.checkpoint()

    with pytest.raises(ValueError, match="cooperative exceeded"):
        limits.run_required("cooperative", cooperative, seconds=0.2)
    assert limits.run_optional(cooperative, seconds=0.2) == (None, False)
