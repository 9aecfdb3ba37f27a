"""The on-disk kernel cache, seen from other processes: a second process loads the compiled kernels
(``cache_info["hit"]``), a corrupted entry is rebuilt, and two processes compiling the same new network at
once both succeed.  Each subprocess gets its own ``SYMBP_CACHE_DIR``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import compile_kit as kit
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]

#: Compile a small network with numba, print its backward kernel's cache_info and gradients (and how far they are
#: from the NumPy backend's) as JSON on the last line.
SCRIPT = r"""
import json
import numpy as np
import symbp as sb

net = sb.Network([3, 4, 2], activation=sb.tanh, cost=sb.quadratic)
m = net.compile(backend="numba", seed=0)
rng = np.random.default_rng(1)
X, Y = rng.uniform(-1, 1, (5, 3)), rng.uniform(0, 1, (5, 2))
g = m.gradients(X, Y)
ref = net.compile(backend="numpy", seed=0).gradients(X, Y)
err = max(float(np.abs(p - q).max()) for gp, rp in zip(g, ref) for p, q in zip(gp, rp))
info = m.cache_info  # the backward kernel's own record, and whether every kernel used was a hit
print(json.dumps({"info": {**info["kernels"]["backward"], "hit": info["hit"]}, "all": info, "grad_err": err,
                  "cost": m.cost(X, Y),
                  "grads": [[p.tolist() for p in pair] for pair in g]}))
"""


def _env(cache_dir: Path) -> dict:
    env = dict(os.environ, SYMBP_CACHE_DIR=str(cache_dir))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


def _start(cache_dir: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SCRIPT], cwd=REPO, env=_env(cache_dir),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, f"subprocess failed:\n{err[-3000:]}"
    result = json.loads(out.strip().splitlines()[-1])
    assert result["grad_err"] < 1e-12, "numba gradients differ from the NumPy backend's"
    return result


def run_compile(cache_dir: Path) -> dict:
    return _finish(_start(cache_dir))


def _flat(grads) -> np.ndarray:
    return np.concatenate([np.ravel(np.array(arr)) for pair in grads for arr in pair])


@pytest.fixture(scope="module")
def cold(tmp_path_factory):
    """A first process compiling into an empty cache."""
    cache_dir = tmp_path_factory.mktemp("cold-cache")
    return cache_dir, run_compile(cache_dir)


def test_first_process_compiles_into_the_cache_dir(cold):
    cache_dir, result = cold
    info = result["info"]
    assert info["hit"] is False and info["rebuilt"] is False and info["in_process"] is False
    path = Path(info["path"])
    assert path.is_file() and path.is_relative_to(cache_dir)
    assert info["key"] in path.name
    assert list(path.parent.glob("__pycache__/*.nbi")), "numba wrote no index beside the module"


def test_second_process_hits_the_cache(cold):
    cache_dir, first = cold
    second = run_compile(cache_dir)
    info = second["info"]
    assert info["hit"] is True and info["rebuilt"] is False and info["in_process"] is False
    assert (info["key"], info["path"]) == (first["info"]["key"], first["info"]["path"])
    assert second["grads"] == first["grads"] and second["cost"] == first["cost"]


def _copy(cold, tmp_path) -> tuple[Path, Path, dict]:
    cache_dir, first = cold
    copy = tmp_path / "cache"
    shutil.copytree(cache_dir, copy)  # copy2 keeps mtimes: numba's index stays valid in the copy
    module = copy / Path(first["info"]["path"]).relative_to(cache_dir)
    return copy, module, first


def test_truncated_source_is_rebuilt(cold, tmp_path):
    copy, module, first = _copy(cold, tmp_path)
    text = module.read_text()
    module.write_text(text[: len(text) // 2])  # a half-written module
    result = run_compile(copy)
    info = result["info"]
    assert info["rebuilt"] is True and info["hit"] is False
    assert module.read_text() == text
    np.testing.assert_allclose(_flat(result["grads"]), _flat(first["grads"]), rtol=1e-14, atol=0)
    assert run_compile(copy)["info"]["hit"] is True  # the repaired entry is reused


@pytest.mark.parametrize("which", ["*.nbi", "*.nbc"])
def test_garbage_numba_cache_files_are_recovered(cold, tmp_path, which):
    copy, module, first = _copy(cold, tmp_path)
    files = sorted(module.parent.glob(f"__pycache__/{which}"))
    assert files
    for f in files:
        f.write_bytes(b"\x80\x04garbage, not a pickle" * 3)
    result = run_compile(copy)
    info = result["info"]
    assert info["hit"] is False  # recompiled (today the entry is also flagged ``rebuilt``), never loaded
    np.testing.assert_allclose(_flat(result["grads"]), _flat(first["grads"]), rtol=1e-14, atol=0)
    assert run_compile(copy)["info"]["hit"] is True


def test_two_processes_compiling_at_once_both_succeed(tmp_path):
    cache_dir = tmp_path / "shared-cache"
    procs = [_start(cache_dir), _start(cache_dir)]
    results = [_finish(p) for p in procs]
    assert results[0]["grads"] == results[1]["grads"]
    assert results[0]["info"]["key"] == results[1]["info"]["key"]
    assert run_compile(cache_dir)["info"]["hit"] is True


# -------------------------------------------------------------------------------------- in-process
def test_same_network_twice_in_one_process_reuses_the_module(symbp_cache_dir):
    first = kit.model("sig")
    first.prepare("forward")
    again = kit.network(kit.POOL["sig"]).compile(backend="numba", seed=0)
    assert again.cache_info["hit"] is None and again.cache_info["compiled"] == []  # nothing compiled until used
    info = again.prepare("forward")
    assert info["hit"] is True and info["in_process"] is True and info["compiled"] == ["forward"]
    assert info["key"] == first.cache_info["key"]
    assert Path(info["kernels"]["forward"]["path"]).is_relative_to(symbp_cache_dir)  # the session's cache
    assert again.kernels.functions["forward"] is first.kernels.functions["forward"]


def test_dtype_and_network_change_the_key():
    keys = {kit.model("sig").cache_info["key"], kit.model("sig", dtype="float32").cache_info["key"],
            kit.model("soft").cache_info["key"]}
    assert len(keys) == 3


LAZY = r"""
import json
import numpy as np
import symbp as sb

net = sb.Network([3, 6, 2], activation=sb.sigmoid, cost=sb.quadratic)
m = net.compile(backend="numba", seed=0)
before = m.cache_info["compiled"]
m.feedforward(np.ones((2, 3)))
print(json.dumps({"before": before, "info": m.cache_info}))
"""


def test_a_fresh_models_feedforward_compiles_exactly_one_kernel(tmp_path):
    proc = subprocess.run([sys.executable, "-c", LAZY], cwd=REPO, env=_env(tmp_path), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    info = result["info"]
    assert result["before"] == [] and info["compiled"] == ["forward"] and list(info["kernels"]) == ["forward"]
    # every kernel's module was generated and written, but numba compiled (wrote its cache for) one of them
    modules = sorted((tmp_path / "kernels").glob("*/symbp_*.py"))
    compiled = [m for m in modules if list(m.parent.glob("__pycache__/*.nbi"))]
    assert len(modules) == 4 and compiled == [Path(info["kernels"]["forward"]["path"])]
