"""Fixtures for the sweep tests (tests/sweep).

``sweep_cache``: the kernel cache (``$SYMBP_CACHE_DIR`` if set, else a session temporary folder, set in the
environment before any worker process starts).  ``cluster``: one session-wide ``LocalCluster`` of two worker
processes on 127.0.0.1 (``symbp.sweep.local_cluster(2)``) and its client, shared by the tests that need one:
starting worker processes and compiling in them costs seconds.  The data and the network live in
``sweep_kit.py`` beside this file.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:  # make ``import sweep_kit`` work whatever pytest's import mode
    sys.path.insert(0, HERE)


@pytest.fixture(scope="session", autouse=True)
def sweep_cache(tmp_path_factory):
    if os.environ.get("SYMBP_CACHE_DIR"):
        yield Path(os.environ["SYMBP_CACHE_DIR"])
        return
    root = tmp_path_factory.mktemp("sweep-kernel-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SYMBP_CACHE_DIR", str(root))
        yield root


@pytest.fixture(scope="session")
def cluster(sweep_cache):
    """``(LocalCluster, Client)``: two worker processes, one thread each, on loopback."""
    pytest.importorskip("distributed")
    import dask
    from distributed import Client

    from symbp.sweep import local_cluster

    # the nannies write the workers' pre-spawn environment into this process's: undone at the end, as sb.sweep does
    names = [*(dask.config.get("distributed.nanny.pre-spawn-environ") or {}), "PYTHONHASHSEED"]
    with pytest.MonkeyPatch.context() as mp:
        for name in names:
            if name in os.environ:
                mp.setenv(name, os.environ[name])
            else:
                mp.delenv(name, raising=False)
        lc = local_cluster(2)
        client = Client(lc, set_as_default=False)
        try:
            client.wait_for_workers(2, timeout=120)
            yield lc, client
        finally:
            client.close()
            lc.close()
