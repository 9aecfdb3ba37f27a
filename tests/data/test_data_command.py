"""Data found once: remembered dataset folders (``symbp.data.locations``) and the ``symbp data`` command.

Most tests use two small fake datasets: tiny IDX ``.gz`` files written in tmp folders, put in the registry in
place of MNIST and Fashion-MNIST (with their own sizes and checksums), so nothing here needs the real files.
The end-to-end test runs ``symbp`` in subprocesses on the real MNIST (skipped without it).  Every test has its
own cache folder (``$SYMBP_CACHE_DIR``) and no reachable mirror: the user's cache is never read or written.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from test_datasets import closed_port_url

from symbp import cli
from symbp.data import DatasetNotFoundError, dataset_cache_dir, locate_dataset, locations, write_idx
from symbp.data.registry import DATASETS, FileSpec


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No user data folder, a private cache root, no reachable mirror, warnings not yet given."""
    monkeypatch.delenv("SYMBP_DATA_DIR", raising=False)
    monkeypatch.delenv("SYMBP_REMEMBER_DATA", raising=False)
    monkeypatch.setenv("SYMBP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SYMBP_MIRRORS", closed_port_url())
    monkeypatch.setattr(locations, "_warned", set())
    monkeypatch.setattr(locations, "_auto", False)


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """Both datasets replaced by small fake ones; returns name -> {filename: bytes}."""
    contents = {}
    rng = np.random.default_rng(0)
    for name, spec in list(DATASETS.items()):
        files, specs = {}, []
        for fs in spec.files:
            shape = (3, 28, 28) if "images" in fs.role else (3,)
            tmp = tmp_path / "make" / name / fs.filename
            tmp.parent.mkdir(parents=True, exist_ok=True)
            write_idx(tmp, rng.integers(0, 10, size=shape, dtype=np.uint8), compress=True)
            data = tmp.read_bytes()  # written once: gzip stamps a time, so each copy must be these bytes
            files[fs.filename] = data
            specs.append(FileSpec(fs.role, fs.filename, hashlib.sha256(data).hexdigest(), len(data), 3))
        monkeypatch.setitem(DATASETS, name, replace(spec, files=tuple(specs)))
        contents[name] = files
    return contents


def put(fake, name: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for filename, data in fake[name].items():
        (folder / filename).write_bytes(data)
    return folder


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def saved() -> dict:
    return json.loads(locations.locations_file().read_text())


# --- a second lookup finds what the first found ---------------------------------------------------


def test_found_by_flag_then_found_without_it(fake, tmp_path, capsys):
    shared = tmp_path / "shared"
    put(fake, "mnist", shared / "mnist")
    with locations.remembering():
        first = locate_dataset("mnist", shared, download=False)
    assert first["train_images"] == shared / "mnist" / "train-images-idx3-ubyte.gz"
    assert "remembered" in capsys.readouterr().err  # said once, on stderr
    assert saved() == {"version": 1, "datasets": {"mnist": str(shared / "mnist")}}
    # the next command: no flag, no $SYMBP_DATA_DIR
    assert locate_dataset("mnist", download=False) == first
    with locations.remembering():  # found again by the flag: nothing to write, nothing said
        locate_dataset("mnist", shared, download=False)
    assert capsys.readouterr().err == ""


def test_found_by_environment_then_found_without_it(fake, tmp_path, monkeypatch):
    env = tmp_path / "env"
    put(fake, "fashion-mnist", env / "fashion-mnist")
    monkeypatch.setenv("SYMBP_DATA_DIR", str(env))
    with locations.remembering():
        locate_dataset("fashion-mnist", download=False)
    monkeypatch.delenv("SYMBP_DATA_DIR")
    assert locate_dataset("fashion-mnist", download=False)["test_labels"].parent == env / "fashion-mnist"
    with pytest.raises(DatasetNotFoundError):  # only what was found is remembered
        locate_dataset("mnist", download=False)


def test_a_relative_folder_is_remembered_absolute(fake, tmp_path, monkeypatch):
    put(fake, "mnist", tmp_path / "here" / "mnist")
    monkeypatch.chdir(tmp_path / "here")
    with locations.remembering():
        locate_dataset("mnist", ".", download=False)
    assert locations.remembered() == {"mnist": tmp_path / "here" / "mnist"}
    monkeypatch.chdir(tmp_path)
    assert locate_dataset("mnist", download=False)["test_images"].parent == tmp_path / "here" / "mnist"


def test_nothing_remembered_without_a_real_folder(fake, tmp_path):
    with locations.remembering():
        put(fake, "mnist", dataset_cache_dir("mnist"))  # found in the cache: nothing to remember
        locate_dataset("mnist", tmp_path / "nothing-here", download=False)
        with pytest.raises(DatasetNotFoundError):  # found nowhere
            locate_dataset("fashion-mnist", tmp_path / "nothing-here", download=False)
        bad = put(fake, "mnist", tmp_path / "bad")  # a wrong file in the flag's folder: an error, not remembered
        (bad / "t10k-labels-idx1-ubyte.gz").write_bytes(b"other")
        with pytest.raises(ValueError, match="checksum mismatch"):
            locate_dataset("mnist", bad, download=False)
    assert not locations.locations_file().exists()


@pytest.mark.parametrize("value", ["0", "off"])
def test_remembering_switched_off(fake, tmp_path, monkeypatch, capsys, value):
    put(fake, "mnist", tmp_path / "d" / "mnist")
    monkeypatch.setenv("SYMBP_REMEMBER_DATA", value)
    with locations.remembering():
        locate_dataset("mnist", tmp_path / "d", download=False)
    assert not locations.locations_file().exists() and capsys.readouterr().err == ""
    assert run_cli(capsys, "data", "add", str(tmp_path / "d"))[0] == 0  # asked for: still done
    assert locations.remembered() == {"mnist": tmp_path / "d" / "mnist"}


def test_library_calls_read_but_never_write(fake, tmp_path):
    put(fake, "mnist", tmp_path / "d" / "mnist")
    locate_dataset("mnist", tmp_path / "d", download=False)  # outside remembering(): as before
    assert not locations.locations_file().exists()
    assert not (tmp_path / "cache").exists()


def test_order_flag_environment_remembered_cache(fake, tmp_path, monkeypatch):
    for sub in ("arg", "env", "kept"):
        put(fake, "mnist", tmp_path / sub / "mnist")
    put(fake, "mnist", dataset_cache_dir("mnist"))
    locations.remember("mnist", tmp_path / "kept" / "mnist")
    monkeypatch.setenv("SYMBP_DATA_DIR", str(tmp_path / "env"))
    assert locate_dataset("mnist", tmp_path / "arg")["train_labels"].parent == tmp_path / "arg" / "mnist"
    assert locate_dataset("mnist")["train_labels"].parent == tmp_path / "env" / "mnist"
    monkeypatch.delenv("SYMBP_DATA_DIR")
    assert locate_dataset("mnist")["train_labels"].parent == tmp_path / "kept" / "mnist"
    locations.forget()
    assert locate_dataset("mnist")["train_labels"].parent == dataset_cache_dir("mnist")


# --- a remembered folder that vanished or changed is passed over ------------------------------------


def test_vanished_folder_passed_over(fake, tmp_path):
    kept = put(fake, "mnist", tmp_path / "kept")
    locations.remember("mnist", kept)
    shutil.rmtree(kept)
    with pytest.raises(DatasetNotFoundError) as info:
        locate_dataset("mnist", download=False)
    msg = str(info.value)
    assert f"{kept} (remembered): does not exist" in msg
    assert "symbp data add DIR" in msg  # how to get the data
    put(fake, "mnist", dataset_cache_dir("mnist"))
    assert locate_dataset("mnist", download=False)["test_images"].parent == dataset_cache_dir("mnist")


@pytest.mark.parametrize("change", ["size", "content", "missing"])
def test_changed_folder_passed_over(fake, tmp_path, change):
    kept = put(fake, "mnist", tmp_path / "kept")
    locations.remember("mnist", kept)
    target = kept / "train-labels-idx1-ubyte.gz"
    data = fake["mnist"][target.name]
    if change == "size":
        target.write_bytes(data + b"x")
    elif change == "content":
        target.write_bytes(bytes([data[0] ^ 1]) + data[1:])
    else:
        target.unlink()
    with pytest.raises(DatasetNotFoundError) as info:
        locate_dataset("mnist", download=False)
    assert f"{kept} (remembered): " in str(info.value)
    assert {"size": "wrong size", "content": "wrong checksum", "missing": "missing"}[change] in str(info.value)


# --- a corrupt or hostile file: one warning, ignored -------------------------------------------------


def _hostile(kind: str, path: Path, tmp_path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = str(tmp_path / "d" / "mnist")
    texts = {
        "not json": "this is not json {",
        "binary": "\x00\xff\xfe",
        "a list": json.dumps([folder]),
        "other version": json.dumps({"version": 2, "datasets": {"mnist": folder}}),
        "version true": json.dumps({"version": True, "datasets": {"mnist": folder}}),
        "extra key": json.dumps({"version": 1, "datasets": {"mnist": folder}, "run": "rm -rf /"}),
        "unknown dataset": json.dumps({"version": 1, "datasets": {"cifar": folder}}),
        "relative path": json.dumps({"version": 1, "datasets": {"mnist": "d/mnist"}}),
        "dotted path": json.dumps({"version": 1, "datasets": {"mnist": str(tmp_path / "x" / ".." / "d")}}),
        "not a string": json.dumps({"version": 1, "datasets": {"mnist": [folder]}}),
        "nul": json.dumps({"version": 1, "datasets": {"mnist": folder + "\x00"}}),
        "deep": "[" * 5_000 + "]" * 5_000,  # within the size bound, beyond the parser's recursion limit
        "huge": json.dumps({"version": 1, "datasets": {"mnist": folder}}) + " " * (locations.MAX_BYTES + 1),
    }
    if kind in texts:
        path.write_bytes(texts[kind].encode("latin-1" if kind == "binary" else "utf-8"))
    elif kind == "folder":
        path.mkdir()
    elif kind == "link":
        target = tmp_path / "elsewhere.json"
        target.write_text(json.dumps({"version": 1, "datasets": {"mnist": folder}}))
        path.symlink_to(target)
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        raise AssertionError(kind)


KINDS = ["not json", "binary", "a list", "other version", "version true", "extra key", "unknown dataset",
         "relative path", "dotted path", "not a string", "nul", "deep", "huge", "folder", "link", "fifo"]


@pytest.mark.parametrize("kind", KINDS)
def test_corrupt_file_warns_once_and_is_ignored(fake, tmp_path, kind):
    if kind == "fifo" and not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs here")
    put(fake, "mnist", tmp_path / "d" / "mnist")
    put(fake, "mnist", dataset_cache_dir("mnist"))
    path = locations.locations_file()
    _hostile(kind, path, tmp_path)
    with pytest.warns(locations.LocationsWarning) as record:
        assert locate_dataset("mnist", download=False)["train_images"].parent == dataset_cache_dir("mnist")
        locate_dataset("mnist", download=False)  # the same file again: no second warning
    assert len(record) == 1
    message = str(record[0].message)
    assert "\n" not in message and str(path) in message and "ignoring" in message


def test_corrupt_file_in_the_command(fake, tmp_path, capsys):
    locations.locations_file().parent.mkdir(parents=True)
    locations.locations_file().write_text("{oops")
    rc, out, err = run_cli(capsys, "data")
    assert rc == 0 and "MNIST (mnist): missing" in out
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("symbp data: warning: ignoring the remembered data folders")
    # add replaces the unusable file; forget without DIR removes one
    put(fake, "mnist", tmp_path / "d" / "mnist")
    assert run_cli(capsys, "data", "add", str(tmp_path / "d"))[0] == 0
    assert saved()["datasets"] == {"mnist": str(tmp_path / "d" / "mnist")}
    locations.locations_file().write_text("[]")
    assert run_cli(capsys, "data", "forget")[0] == 0
    assert not locations.locations_file().exists()


def test_unwritable_cache_warns_and_goes_on(fake, tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("SYMBP_CACHE_DIR", str(tmp_path / "a-file"))
    put(fake, "mnist", tmp_path / "d" / "mnist")
    with locations.remembering(), pytest.warns(locations.LocationsWarning, match="could not remember"):
        assert locate_dataset("mnist", tmp_path / "d", download=False)["test_labels"].parent == tmp_path / "d" / "mnist"


# --- symbp data: list, add, forget -------------------------------------------------------------------


def test_list_says_where_and_how(fake, tmp_path, capsys, monkeypatch):
    rc, out, _ = run_cli(capsys, "data")
    assert rc == 0
    assert "MNIST (mnist): missing" in out and "Fashion-MNIST (fashion-mnist): missing" in out
    assert "$SYMBP_DATA_DIR: not set" in out and "remembered folder: none" in out
    assert "symbp data add DIR" in out and str(locations.locations_file()) in out

    put(fake, "mnist", tmp_path / "env" / "mnist")
    put(fake, "fashion-mnist", dataset_cache_dir("fashion-mnist"))
    monkeypatch.setenv("SYMBP_DATA_DIR", str(tmp_path / "env"))
    out = run_cli(capsys, "data", "list")[1]
    assert f"MNIST (mnist): {tmp_path / 'env' / 'mnist'}  [$SYMBP_DATA_DIR]" in out
    assert f"Fashion-MNIST (fashion-mnist): {dataset_cache_dir('fashion-mnist')}  [cache]" in out
    assert not locations.locations_file().exists()  # listing writes nothing

    monkeypatch.delenv("SYMBP_DATA_DIR")
    locations.remember("mnist", tmp_path / "env" / "mnist")
    out = run_cli(capsys, "data")[1]
    assert f"MNIST (mnist): {tmp_path / 'env' / 'mnist'}  [remembered]" in out
    put(fake, "mnist", tmp_path / "flag")
    out = run_cli(capsys, "data", "list", "--data-dir", str(tmp_path / "flag"))[1]
    assert f"MNIST (mnist): {tmp_path / 'flag'}  [--data-dir]" in out

    (tmp_path / "flag" / "t10k-images-idx3-ubyte.gz").write_bytes(b"other")  # what a command would stop on
    out = run_cli(capsys, "data", "list", "--data-dir", str(tmp_path / "flag"))[1]
    assert f"MNIST (mnist): error: {tmp_path / 'flag'} (--data-dir): t10k-images-idx3-ubyte.gz has a wrong size" in out

    shutil.rmtree(tmp_path / "env")  # a remembered folder that vanished: shown as passed over
    out = run_cli(capsys, "data")[1]
    assert f"{tmp_path / 'env' / 'mnist'} (remembered): does not exist" in out
    assert "MNIST (mnist): missing" in out


def test_add_and_forget(fake, tmp_path, capsys):
    both = tmp_path / "both"
    put(fake, "mnist", both / "mnist")
    put(fake, "fashion-mnist", both / "fashion-mnist")
    rc, out, _ = run_cli(capsys, "data", "add", str(both))
    assert rc == 0
    assert f"MNIST (mnist): {both / 'mnist'}  [remembered]" in out
    assert f"Fashion-MNIST (fashion-mnist): {both / 'fashion-mnist'}  [remembered]" in out
    assert saved()["datasets"] == {"mnist": str(both / "mnist"), "fashion-mnist": str(both / "fashion-mnist")}
    assert "already remembered" in run_cli(capsys, "data", "add", str(both))[1]
    assert locate_dataset("fashion-mnist", download=False)["test_images"].parent == both / "fashion-mnist"

    # a folder holding one dataset's files directly: the checksums tell which (": " in its name on purpose)
    direct = put(fake, "fashion-mnist", tmp_path / "direct: data")
    rc, out, _ = run_cli(capsys, "data", "add", str(direct))
    assert rc == 0 and f"Fashion-MNIST (fashion-mnist): {direct}  [remembered]" in out
    assert f"MNIST (mnist): not in {direct} ({direct / 'mnist'}: " in out
    assert f"{direct / 'mnist'}: {locations.folder_problem(direct / 'mnist', 'mnist')})" in out
    assert locations.remembered() == {"mnist": both / "mnist", "fashion-mnist": direct}

    rc, out, _ = run_cli(capsys, "data", "forget", "fashion-mnist")  # by name
    assert rc == 0 and f"forgot {direct}" in out
    rc, out, _ = run_cli(capsys, "data", "forget", str(both))  # by the folder holding it
    assert rc == 0 and f"forgot {both / 'mnist'}" in out
    assert not locations.locations_file().exists()
    assert (both / "mnist" / "train-images-idx3-ubyte.gz").is_file()  # the files stay
    assert run_cli(capsys, "data", "forget")[1].strip() == "nothing was remembered"


def test_add_and_forget_errors(fake, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for argv, expected in (
        (["add", str(tmp_path / "empty")], "holds no dataset, nothing remembered"),
        (["add", str(tmp_path / "nope")], "does not exist"),
        (["forget", str(tmp_path / "nope")], "is not remembered"),
        (["forget", "mnist"], "is not remembered"),
    ):
        rc, out, err = run_cli(capsys, "data", *argv)
        assert rc == 2 and out == "", argv
        assert err.count("\n") == 1 and err.startswith("symbp data: error: ") and expected in err, argv
    assert not locations.locations_file().exists()
    with pytest.raises(SystemExit) as info:  # add without DIR: argparse's one-line usage error
        cli.main(["data", "add"])
    assert info.value.code == 2 and "DIR" in capsys.readouterr().err


def test_help_reads_well(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["data", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for text in ("list", "add DIR", "forget [DIR]", "--data-dir", "$SYMBP_DATA_DIR", "remembered", "cache",
                 "locations.json", "symbp data add ../shared/data"):
        assert text in out, text
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "data" in capsys.readouterr().out


# --- end to end, on the real MNIST: symbp train finds it, later commands too -------------------------


def symbp(*args, env):
    return subprocess.run([sys.executable, "-m", "symbp.cli", *args], capture_output=True, text=True, timeout=300,
                          env=env)


def test_second_command_finds_the_data(data_dir, tmp_path):
    if not all((data_dir / "mnist" / f).is_file() for f in DATASETS["mnist"].filenames):
        pytest.skip(f"MNIST files not found in {data_dir}")
    env = {k: v for k, v in os.environ.items() if k not in ("SYMBP_DATA_DIR", "SYMBP_REMEMBER_DATA")}
    env |= {"SYMBP_CACHE_DIR": str(tmp_path / "cache"), "SYMBP_MIRRORS": closed_port_url()}
    train = ["train", "--layers", "784,10,10", "--limit", "100", "--epochs", "1", "--backend", "numpy",
             "--no-progress"]
    out = symbp(*train, env=env)  # found nowhere yet
    assert out.returncode == 2 and "symbp data add DIR" in out.stderr
    out = symbp(*train, env={**env, "SYMBP_DATA_DIR": str(data_dir)})
    assert out.returncode == 0, out.stderr
    assert f"remembered {data_dir / 'mnist'}" in out.stderr
    out = symbp(*train, env=env)  # the same command, without $SYMBP_DATA_DIR
    assert out.returncode == 0, out.stderr
    assert "Epoch 1:" in out.stdout and "remembered" not in out.stderr
    out = symbp("data", env=env)
    assert out.returncode == 0 and f"MNIST (mnist): {data_dir / 'mnist'}  [remembered]" in out.stdout

    # the benchmark's loader (symbp bench) goes through the same lookup
    code = ("import os, sys; from symbp.bench.harness import load_data; X, y = load_data(); "
            "assert X.shape == (50000, 784) and 'SYMBP_DATA_DIR' not in os.environ; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
