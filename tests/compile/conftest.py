"""Fixtures for the compiler tests (tests/compile).

Every test here compiles into a temporary kernel cache made for the run (``$SYMBP_CACHE_DIR``), so the
suite never writes to the user's cache and always starts from a cold compile.  Compiled models are memoised
per process by ``compile_kit.model`` (a small fixed pool of networks), because a numba compile costs
seconds.  The helpers themselves live in ``compile_kit.py`` beside this file.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:  # make ``import compile_kit`` work whatever pytest's import mode
    sys.path.insert(0, HERE)


@pytest.fixture(scope="session", autouse=True)
def symbp_cache_dir(tmp_path_factory):
    """A fresh kernel cache for the whole run, named by ``$SYMBP_CACHE_DIR``.  Parallel workers (pytest-xdist)
    share the run's one cache (its writes are atomic), so a kernel one worker compiled is loaded by the others."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = tmp_path_factory.getbasetemp().parent / "symbp-kernel-cache"
        root.mkdir(exist_ok=True)
    else:
        root = tmp_path_factory.mktemp("symbp-kernel-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SYMBP_CACHE_DIR", str(root))
        yield root
