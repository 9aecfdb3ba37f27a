"""The kernel cache under damage and misuse: index records are verified before use, cache I/O errors are
reported as what they are (never as "numba could not compile"), stray files are repaired, and Ctrl-C during a
cold numba compile interrupts it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

import symbp as sb
from symbp.compile.backends import Kernels
from symbp.compile.backends.numba.cache import KernelCacheError, cache_key, declaration_key, lookup_declaration
from symbp.compile.backends.numba.emit import numba_source
from symbp.compile.lower import lower

REPO = Path(__file__).resolve().parents[2]


def _net(n=5):
    return sb.Network([3, n, 2], activation=sb.tanh, cost=sb.quadratic)


def _record(tmp_path, monkeypatch, n=5):
    monkeypatch.setenv("SYMBP_CACHE_DIR", str(tmp_path))
    _net(n).compile(seed=0)
    key = declaration_key(_net(n), "numba", "float64")
    path = tmp_path / "kernels" / "index" / f"{key}.json"
    return key, path, json.loads(path.read_text())


def test_record_holds_no_source_to_run_only_a_verified_pointer(tmp_path, monkeypatch):
    key, path, doc = _record(tmp_path, monkeypatch)
    assert "module" not in doc and "modules" not in doc
    assert sorted(doc["module_keys"]) == ["backward", "cost", "forward", "sgd_epoch"]
    assert all(len(k) == 24 for k in doc["module_keys"].values())
    rec = lookup_declaration(key)
    assert rec is not None
    assert all(cache_key(rec["modules"][n]) == k for n, k in doc["module_keys"].items())


@pytest.mark.parametrize("edit", ["module-field", "pointer-elsewhere", "bad-pointer", "foreign-source",
                                  "edited-module"])
def test_edited_records_are_ignored_and_rewritten(tmp_path, monkeypatch, edit):
    key, path, doc = _record(tmp_path, monkeypatch)
    mkey = doc["module_keys"]["forward"]
    module = tmp_path / "kernels" / mkey / f"symbp_{mkey}.py"
    if edit == "module-field":  # the old format's executable field
        doc["module"] = 'open("pwned.txt", "w").write("pwned")'
        doc["module_keys"]["forward"] = "0" * 24
    elif edit == "pointer-elsewhere":
        doc["module_keys"]["forward"] = "f" * 24
    elif edit == "bad-pointer":
        doc["module_keys"]["forward"] = "../../../etc/passwd"
    elif edit == "foreign-source":
        doc["sources"]["forward"] = "def forward():\n    import os\n"
    else:
        module.write_text(module.read_text() + '\nopen("pwned.txt", "w").write("pwned")\n')
    path.write_text(json.dumps(doc))
    assert lookup_declaration(key) is None
    monkeypatch.chdir(tmp_path)
    model = _net().compile(seed=0)
    model.prepare()
    assert "def sgd_epoch" in model.source("sgd_epoch") and "pwned" not in model.source()
    assert not (tmp_path / "pwned.txt").exists()
    assert lookup_declaration(key) is not None  # rewritten, pointing at the regenerated module


def test_cache_dir_naming_a_file_is_reported(tmp_path, monkeypatch):
    f = tmp_path / "not-a-folder"
    f.write_text("x")
    monkeypatch.setenv("SYMBP_CACHE_DIR", str(f))
    with pytest.raises(KernelCacheError, match="SYMBP_CACHE_DIR"):
        _net(7).compile(seed=0)


def test_unwritable_cache_on_a_miss_is_reported_as_such(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMBP_CACHE_DIR", str(tmp_path))

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)  # root ignores file modes: refuse the write itself
    with pytest.raises(KernelCacheError, match="cannot be used.*Permission denied.*SYMBP_CACHE_DIR") as err:
        _net(8).compile(seed=0).feedforward(np.ones((1, 3)))  # compiled when first used
    assert "numba could not compile" not in str(err.value)


def test_stray_file_where_the_key_folder_should_be_is_repaired(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMBP_CACHE_DIR", str(tmp_path))
    net = _net(9)
    sources = {n: numba_source(p, "float64") for n, p in lower(net).items()}
    kernels = Kernels("numba", net, "float64", sources)  # writes nothing
    folder = tmp_path / "kernels" / cache_key(kernels.module("forward"))
    folder.parent.mkdir(parents=True)
    folder.write_text("a file where the entry's folder belongs")
    model = net.compile(seed=0)
    assert folder.is_dir() and model.feedforward(np.ones((1, 3))).shape == (1, 2)


CTRL_C = r"""
import sys
import symbp as sb
net = sb.Network([3, 11, 2], activation=sb.softplus, cost=sb.cross_entropy)
net.equations()
print("compiling", flush=True)
net.compile(seed=0).prepare()
print("compiled and went on", flush=True)
"""


@pytest.mark.parametrize("delay", [0.8, 1.8])  # in Python code, and (often) inside an LLVM callback
def test_ctrl_c_interrupts_a_cold_compile(tmp_path, delay):
    env = dict(os.environ, SYMBP_CACHE_DIR=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", CTRL_C], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "compiling"
    time.sleep(delay)  # inside numba's compile (seconds, cold)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert "compiled and went on" not in out
    assert proc.returncode != 0 and err.rstrip().endswith(("KeyboardInterrupt", "interrupted during a numba compile"))
