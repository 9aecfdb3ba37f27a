"""Fixtures shared by the whole test suite.

``data_dir``: the folder holding ``mnist/`` and ``fashion-mnist/`` with the original IDX ``.gz`` files:
``$SYMBP_DATA_DIR`` if set, else ``<repo root>/../shared/data`` if it exists; otherwise the test is skipped.

Parallel runs (pytest-xdist, ``-n auto``): each worker is a process of its own.  Temporary folders, session
fixtures (the compile tests' kernel cache, the sweep tests' cluster) and memoised models are per worker; servers
bind port 0; the shared kernel cache (``$SYMBP_CACHE_DIR`` or the user cache folder) is written atomically, so
workers may fill it at the same time.  With ``-n auto`` the workers are at most one per core (and at most 8: each
holds its own compiled kernels and data), and each worker's BLAS gets an equal share of the cores instead of
every worker starting one thread per core.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# tests never remember data folders in the user's cache (the tests of that feature switch it on for themselves);
# subprocesses (the CLI's end-to-end tests) inherit it
os.environ.setdefault("SYMBP_REMEMBER_DATA", "0")
# one process per test worker: pytest-xdist already uses the cores (the parallel compile has tests of its own)
os.environ.setdefault("SYMBP_COMPILE_WORKERS", "1")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    env = os.environ.get("SYMBP_DATA_DIR")
    if env:
        return Path(env).expanduser()
    shared = REPO_ROOT.parent / "shared" / "data"
    if shared.is_dir():
        return shared
    pytest.skip(
        "MNIST files not found: set SYMBP_DATA_DIR to a folder holding mnist/ and fashion-mnist/ "
        "with the original IDX .gz files (see README)"
    )


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto``: one worker per core this process may use, at most 8."""
    return max(1, min(_cores(), 8))


def pytest_configure(config) -> None:
    """In an xdist worker, limit BLAS threads to the worker's share of the cores (no oversubscription)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if workers > 1:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=max(1, _cores() // workers))
