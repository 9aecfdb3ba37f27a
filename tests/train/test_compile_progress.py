"""What a user waits for while a network compiles: ``compile(progress=...)`` and ``prepare(progress=...)``
name each stage (deriving, generating, the cache, each kernel k of n), and ``symbp train`` shows them on a
terminal's status line (never in a log or a pipe)."""

from __future__ import annotations

import io

import symbp as sb
from symbp.cli import waiting


def test_compile_and_prepare_name_each_stage():
    told: list[str] = []
    net = sb.Network([4, 3, 2], activation=sb.tanh, cost=sb.cross_entropy)
    model = net.compile(backend="numpy", progress=told.append)
    assert told == ["deriving BP1–BP4 (sympy) and lowering them to kernel programs",
                    "generating the numpy kernels' source"]
    told.clear()
    model.prepare(model.update_kernel(None, 0.5), "forward", progress=told.append)
    assert told == ["loading kernel 1 of 2: sgd_epoch_momentum", "loading kernel 2 of 2: forward"]
    told.clear()
    model.prepare("forward", "cost", progress=told.append)  # forward is loaded already: only cost is new
    assert told == ["loading kernel 1 of 1: cost"]


def test_a_declaration_compiled_before_comes_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMBP_CACHE_DIR", str(tmp_path))
    net = sb.Network([3, 2], activation=sb.sigmoid, cost=sb.quadratic)
    first: list[str] = []
    net.compile(progress=first.append).prepare("forward", progress=first.append)
    assert first[0].startswith("deriving") and first[-1] == "compiling kernel 1 of 1: forward (numba, or its cache)"
    again: list[str] = []
    sb.Network([3, 2], activation=sb.sigmoid, cost=sb.quadratic).compile(progress=again.append)
    assert again == ["the kernels' source from the cache (no derivation)"]


def test_the_status_line_is_shown_on_a_terminal_only():
    from rich.console import Console

    tty, pipe = io.StringIO(), io.StringIO()
    with waiting(True, Console(file=tty, force_terminal=True, width=100)) as status:
        status("compiling kernel 2 of 3: sgd_epoch")
    assert "compiling kernel 2 of 3: sgd_epoch" in tty.getvalue()
    with waiting(True, Console(file=pipe, force_terminal=False)) as status:
        status("compiling kernel 2 of 3: sgd_epoch")
    assert pipe.getvalue() == ""
    off = io.StringIO()
    with waiting(False, Console(file=off, force_terminal=True)) as status:
        status("anything")  # --no-progress / --quiet: nothing
    assert off.getvalue() == ""
