"""The symbp command end to end, in subprocesses."""

import json
import os
import subprocess
import sys

import pytest


def run(*args, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "symbp.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def test_help_reads_well():
    out = run("--help")
    assert out.returncode == 0 and "train" in out.stdout and "show" in out.stdout and "bench" in out.stdout
    out = run("train", "--help")
    assert out.returncode == 0
    for flag in ("--layers", "--activation", "--cost", "--epochs", "--batch-size", "--eta", "--lmbda", "--init",
                 "--dataset", "--data-dir", "--limit", "--dtype", "--seed", "--early-stop", "--save", "--plot",
                 "--backend"):
        assert flag in out.stdout


def test_show_equations_and_source():
    out = run("show", "--cost", "cross-entropy")
    assert out.returncode == 0, out.stderr
    assert "BP1" in out.stdout and "a² - y" in out.stdout
    out = run("show", "--format", "latex")
    assert "\\begin{align*}" in out.stdout
    out = run("show", "--format", "markdown", "--activation", "z/(1+abs(z))", "--output-activation", "sigmoid")
    assert out.returncode == 0 and "| BP2 |" in out.stdout
    out = run("show", "--layers", "4,3,2", "--source", "sgd_epoch")
    assert out.returncode == 0 and "def sgd_epoch" in out.stdout and "BP2" in out.stdout


def test_errors_are_one_clear_line(tmp_path):
    out = run("show", "--activation", "__import__('os').system('touch CANARY')")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.count("\n") == 1 and "not allowed" in out.stderr
    out = run("show", "--layers", "784,x,10")
    assert out.returncode == 2 and "--layers" in out.stderr
    out = run("train", "--layers", "10,3", "--limit", "50", "--epochs", "1", "--data-dir", str(tmp_path / "none"),
              env={"SYMBP_DATA_DIR": str(tmp_path / "none"), "SYMBP_CACHE_DIR": str(tmp_path / "cache"),
                   "SYMBP_MIRRORS": "http://127.0.0.1:9/"})
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "SYMBP_DATA_DIR" in out.stderr


def test_train_end_to_end(tmp_path, data_dir):
    out = run("train", "--limit", "2000", "--epochs", "2", "--data-dir", str(data_dir), "--save", str(tmp_path / "m"),
              "--plot", str(tmp_path / "curves.png"), "--seed", "1")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any(line.startswith("Epoch 1:") for line in lines) and any(line.startswith("Epoch 2:") for line in lines)
    assert "peak test accuracy" in out.stdout
    acc = float(out.stdout.split("peak test accuracy ")[1].split("%")[0])
    assert acc > 70.0
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads((tmp_path / "m.json").read_text())
    assert doc["layers"][1]["activation"]["name"] == "sigmoid"
    import symbp as sb

    model = sb.load(tmp_path / "m")
    final = float(out.stdout.split("final ")[1].split("%")[0])
    assert model.evaluate(sb.data.load_mnist(data_dir).test) * 100 == pytest.approx(final, abs=0.006)
