"""Fixtures shared by the whole test suite.

``data_dir``: the folder holding ``mnist/`` and ``fashion-mnist/`` with the original IDX ``.gz`` files:
``$SYMBP_DATA_DIR`` if set, else ``<repo root>/../shared/data`` if it exists; otherwise the test is skipped.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


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
