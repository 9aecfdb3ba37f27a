"""Work the benchmark harness runs in a fresh Python process: cold compiles and compile trials.

Takes: a child's command line (a script of this package, or a function named by module and name with a JSON
spec), extra environment, a time limit.  Gives: ``run_json``, the one runner: the child's last line of stdout
read as JSON, with the process's wall seconds (``FreshProcessError`` with the child's stderr when it fails,
``subprocess.TimeoutExpired`` past the limit); ``call_json``, a function of this package called in a child on a
JSON spec; and the cold-compile probes built on them: ``compile_probe`` (symbp, ``symbp/bench/probe.py``) and
``peer_probe`` (JAX, PyTensor: ``symbp/bench/peer_probe.py``), each a cold compile then a warm load on one
temporary cache folder, empty for the first.

Every child finds this package first on its ``PYTHONPATH`` (``package_env``), so it runs the code that started it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: the folder holding the ``symbp`` package
PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


class FreshProcessError(RuntimeError):
    """A child process exited with an error: ``stderr`` and ``stdout`` hold what it wrote."""

    def __init__(self, message: str, stderr: str, stdout: str):
        super().__init__(message)
        self.stderr, self.stdout = stderr, stdout


def package_env(**extra: str) -> dict:
    """This process's environment with ``extra`` and this package's root first on ``PYTHONPATH``."""
    path = os.pathsep.join([PACKAGE_ROOT, *filter(None, [os.environ.get("PYTHONPATH")])])
    return dict(os.environ, **extra, PYTHONPATH=path)


def run_json(argv: list[str], timeout: float, env: dict | None = None) -> tuple[dict, float]:
    """Run ``argv`` to its end; (the JSON object on its last line of stdout, the process's wall seconds)."""
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise FreshProcessError(f"exit status {proc.returncode}", proc.stderr, proc.stdout)
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall


def call_json(module: str, function: str, spec: dict, timeout: float) -> dict:
    """``module.function(spec)`` in a fresh process (its JSON-able result), with ``process_wall_s`` added."""
    code = (f"import json, sys; from {module} import {function}; "
            f"print(json.dumps({function}(json.loads(sys.argv[1]))))")
    out, wall = run_json([sys.executable, "-c", code, json.dumps(spec)], timeout, package_env())
    out["process_wall_s"] = wall
    return out


def _cold_and_warm(argv: list[str], env: dict, timeout: float, what: str) -> dict:
    """``argv`` run twice on the same cache folder (named in ``env``): the cold compile, then the warm load.
    Each run reports ``compile_s``, ``first_call_s`` and ``second_call_s``; its ``seconds`` are compile + first
    call less the steady cost of that call: the time until the kernel is ready, import apart."""
    runs = []
    for label in ("cold", "warm"):
        try:
            r, wall = run_json(argv, timeout, env)
        except FreshProcessError as exc:
            raise RuntimeError(f"{what}, {label}) failed:\n{exc.stderr[-3000:]}") from None
        r["seconds"] = r["compile_s"] + r["first_call_s"] - r["second_call_s"]
        r["process_wall_s"] = wall
        runs.append(r)
    return {"cold": runs[0], "warm": runs[1], "cold_seconds": runs[0]["seconds"],
            "warm_seconds": runs[1]["seconds"]}


def _threads_env(threads: int) -> dict:
    return {name: str(threads) for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "NUMBA_NUM_THREADS")}


def compile_probe(backend: str, declaration: dict, case, threads: int = 1, timeout: float = 600) -> dict:
    """Cold compile, then warm load, of symbp's ``backend`` for the network ``declaration`` (its
    ``Network.config()``) with the dtype and mini-batch of ``case`` (a ``harness.Case``): each in a fresh
    process."""
    # run as a script, not with -m, so that ``import symbp`` happens inside the timed region of the probe
    argv = [
        sys.executable,
        str(Path(__file__).with_name("probe.py")),
        "--backend",
        backend,
        "--declaration",
        json.dumps(declaration),
        "--dtype",
        case.dtype,
        "--batch-size",
        str(case.batch_size),
    ]
    with tempfile.TemporaryDirectory(prefix="symbp-bench-cache-") as cache:
        env = package_env(SYMBP_CACHE_DIR=cache, NUMBA_CACHE_DIR=str(Path(cache) / "numba"), **_threads_env(threads))
        return _cold_and_warm(argv, env, timeout, f"symbp compile probe ({backend}")


def peer_probe(lib: str, case, threads: int = 1, timeout: float = 900, *, mode: str = "NUMBA",
               scan: bool = True) -> dict:
    """Cold compile, then warm load, of a peer's SGD step for the dense ``case``: each in a fresh process
    (``symbp/bench/peer_probe.py``) on one temporary cache folder, empty for the first.

    ``lib``: "jax" (``jax.jit`` of one mini-batch step and its first call; the warm run uses JAX's persistent
    compilation cache, which the cold run fills: JAX's own default is no persistent cache) or "pytensor"
    (``pytensor.function`` in ``mode``, the epoch as one scan when ``scan``, and its first call on one mini-batch;
    ``base_compiledir`` and numba's cache in the folder).  Seconds as ``compile_probe``: compile + first call -
    a steady call, import apart.  Raises RuntimeError with the child's stderr when a probe fails.
    """
    if case.net is not None:
        raise ValueError("peer probes are for dense cases")
    argv = [
        sys.executable,
        str(Path(__file__).with_name("peer_probe.py")),
        "--lib",
        lib,
        "--layers",
        ",".join(map(str, case.layers)),
        "--cost",
        case.cost,
        "--dtype",
        case.dtype,
        "--batch-size",
        str(case.batch_size),
        "--mode",
        mode,
        *(["--scan"] if scan else []),
    ]
    with tempfile.TemporaryDirectory(prefix=f"symbp-bench-{lib}-cache-") as cache:
        if lib == "jax":
            argv += ["--jax-cache", str(Path(cache) / "jax")]
        flags = [f for f in os.environ.get("PYTENSOR_FLAGS", "").split(",") if f and "compiledir" not in f]
        env = dict(os.environ, PYTENSOR_FLAGS=",".join([*flags, f"base_compiledir={Path(cache) / 'pytensor'}"]),
                   NUMBA_CACHE_DIR=str(Path(cache) / "numba"), **_threads_env(threads))
        probe = _cold_and_warm(argv, env, timeout, f"{lib} compile probe ({mode if lib == 'pytensor' else ''}")
    return {**probe, "what": probe["cold"]["what"]}
