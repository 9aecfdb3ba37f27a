"""``symbp sweep`` and ``symbp vote``: help, one-line errors found before any data is loaded, and a run on MNIST."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from symbp.cli import main
from symbp.sweep.engine import WORKER_ENV

pytest.importorskip("distributed")


@pytest.fixture
def cli(capsys):
    def run(*args):
        try:
            rc = main([str(a) for a in args])
        except SystemExit as exc:  # argparse: --help, and errors in the arguments themselves
            rc = exc.code
        out = capsys.readouterr()
        return rc, out.out, out.err

    return run


def test_help_reads_well(cli):
    rc, out, _ = cli("--help")
    assert rc == 0 and "sweep" in out and "vote" in out
    rc, out, _ = cli("sweep", "--help")
    assert rc == 0
    for text in ("--layers", "--eta", "--lmbda", "--batch-size", "--seeds", "--grid", "--epochs", "--out",
                 "--scheduler", "--workers", "--limit", "--data-dir", "--eval", "--plot", "0-4", "tcp://",
                 "bit-identical", "results.jsonl", "convMAPSxKHxKW"):
        assert text in out, text
    rc, out, _ = cli("vote", "--help")
    assert rc == 0 and "--models" in out and "smallest class" in out and "--eval" in out


@pytest.mark.parametrize("args, option", [
    (["--eta", "0.1,x"], "--eta"),
    (["--eta", "0.1,,3"], "--eta"),
    (["--lmbda", "-1"], "--lmbda"),
    (["--batch-size", "10,0"], "--batch-size"),
    (["--seeds", "4-1"], "--seeds"),
    (["--seeds", "a"], "--seeds"),
    (["--grid", "nosuch=1,2"], "--grid"),
    (["--grid", "callback=1"], "--grid"),
    (["--grid", "eta"], "--grid"),
    (["--grid", "batch_size=5", "--batch-size", "10"], "--grid"),
    (["--scheduler", "not an address"], "--scheduler"),
    (["--scheduler", "tcp://127.0.0.1:8786", "--workers", "2"], "--workers"),
    (["--workers", "0"], "--workers"),
    (["--layers", "784,x,10"], "--layers"),
    (["--layers", "fc5"], "--layers"),
    (["--batch-size", "1000", "--limit", "100"], "--batch-size"),
])
def test_errors_are_one_line_naming_the_option(cli, tmp_path, args, option):
    rc, out, err = cli("sweep", "--out", tmp_path / "out", *args)
    assert rc == 2 and "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith("symbp sweep: error:") and option in err, err
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_more_errors(cli, tmp_path):
    (tmp_path / "file").write_text("x")
    rc, _, err = cli("sweep", "--out", tmp_path / "file")
    assert rc == 2 and "--out" in err and "is a file" in err
    rc, _, err = cli("sweep")
    assert rc == 2 and "--out" in err and err.count("\n") == 1
    rc, _, err = cli("sweep", "--out", tmp_path / "o", "--data-dir", tmp_path / "none")
    assert rc == 2 and "--data-dir" in err and "does not exist" in err
    rc, _, err = cli("vote", "--models", tmp_path / "nothing")
    assert rc == 2 and "--models" in err and "no saved model" in err and err.count("\n") == 1
    rc, _, err = cli("vote", "--models", str(tmp_path / "nothing*"))
    assert rc == 2 and "no file matches" in err
    (tmp_path / "empty").mkdir()
    rc, _, err = cli("vote", "--models", tmp_path / "empty")
    assert rc == 2 and "holds no saved model" in err
    (tmp_path / "bad.json").write_text("{not json")
    rc, _, err = cli("vote", "--models", tmp_path / "bad.json")
    assert rc == 2 and "bad.json" in err and err.count("\n") == 1


def _lines(path):
    return path.read_text().count("\n") if path.exists() else 0


@pytest.mark.slow
def test_ctrl_c_then_again_then_vote_on_mnist(cli, data_dir, tmp_path):
    """The command in a subprocess with its own local cluster (worker processes spawned from ``python -m``), in a
    process group of its own; a Ctrl-C as a terminal sends it (SIGINT to the whole group) once the first trial is
    saved: exit status 130, one line, no traceback from any process, no process left.  The same command again in
    this process runs the other trials; once more, nothing (no cluster is even started); then the vote."""
    out = tmp_path / "sweep"
    args = ["sweep", "--layers", "fc10", "--cost", "cross-entropy", "--eta", "0.5,3,1", "--epochs", "12", "--limit",
            "3000", "--data-dir", data_dir, "--out", out, "--workers", "1", "--plot", tmp_path / "p.svg"]
    proc = subprocess.Popen([sys.executable, "-m", "symbp.cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 180
        while _lines(out / "results.jsonl") < 1 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, stderr
    assert "3 trials (3 eta)" in stdout and "on a local cluster of 1 worker process" in stdout
    assert "ranked on validation (10000)" in stdout
    assert "interrupted: the finished trials are kept" in stderr and "Traceback" not in stderr, stderr
    assert _lines(out / "results.jsonl") == 1
    deadline = time.monotonic() + 20
    while True:  # the worker processes are gone with the cluster
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "processes of the sweep left running"
        time.sleep(0.1)

    # in this process: its environment is left as it was (the nannies, which run here, set the workers'
    # thread variables before spawning them: NUMBA_NUM_THREADS changed here would make numba refuse to compile)
    names = (*WORKER_ENV, "PYTHONHASHSEED")
    environ = {k: os.environ.get(k) for k in names}
    rc, again, err = cli(*args)
    assert rc == 0, err
    assert {k: os.environ.get(k) for k in names} == environ
    assert _lines(out / "results.jsonl") == 3 and "3 trials, best first" in again
    assert "best: eta=" in again and "validation accuracy" in again
    assert f"wrote {tmp_path / 'p.svg'}" in again and (tmp_path / "p.svg").is_file()
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert all(r["best_accuracy"] > 0.5 for r in records)
    rc, again, err = cli(*args)
    assert rc == 0 and _lines(out / "results.jsonl") == 3 and "3 trials, best first" in again, err
    rc, stdout, err = cli("vote", "--models", out / "models", "--data-dir", data_dir, "--eval", "validation")
    assert rc == 0, err
    assert "plurality vote" in stdout and "ensemble of 3:" in stdout and "/ 10000" in stdout
    assert "eta=0.5, seed=0" in stdout  # members named by their grid values


# -- bounds: the output folder, the workers, the grid, the seeds --------------------------------------------------
def test_an_empty_out_is_refused_not_the_current_folder(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for out in ("", "  "):
        rc, _, err = cli("sweep", "--layers", "784,10,10", "--out", out)
        assert rc == 2 and err == "symbp sweep: error: argument --out: expected a folder name, got an empty one\n"
    assert list(tmp_path.iterdir()) == []  # nothing written here
    import symbp as sb

    with pytest.raises(ValueError, match="out= must name the folder"):
        sb.sweep(None, {}, None, out="")


def test_workers_are_bounded_by_the_cores(cli, tmp_path):
    from symbp.sweep import engine

    cores = engine._cores()
    most = engine.MAX_WORKERS_PER_CORE * cores
    rc, _, err = cli("sweep", "--layers", "784,10,10", "--out", tmp_path / "o", "--workers", most + 1)
    assert rc == 2 and err.count("\n") == 1 and err.startswith("symbp sweep: error: argument --workers: ")
    assert f"at most {most} (2 per CPU core" in err and f"got {most + 1}" in err
    assert engine.check_workers(most) == most and engine.check_workers(None) == cores
    with pytest.raises(ValueError, match=f"workers must be at most {most}"):
        engine.local_cluster(10_000)  # refused before any process starts


def test_the_grid_is_bounded_before_any_trial_is_built(cli, tmp_path):
    import symbp as sb
    from symbp.sweep import engine

    assert engine.MAX_TRIALS == 100_000
    t0 = time.perf_counter()
    etas = ",".join(str(0.001 * (i + 1)) for i in range(1000))
    rc, _, err = cli("sweep", "--layers", "784,10,10", "--out", tmp_path / "o", "--eta", etas, "--lmbda",
                     ",".join(str(i) for i in range(1000)), "--seeds", "0-9")
    assert rc == 2 and err.count("\n") == 1
    assert err.startswith("symbp sweep: error: the grid has 10,000,000 trials (1000 × 1000 × 10)"), err
    assert "more than a sweep may have (100,000)" in err
    with pytest.raises(ValueError, match="more than 100,000 values"):
        engine.expand_grid({"eta": range(1, 10**9)}, 1, {})  # not listed first
    with pytest.raises(ValueError, match="more than 100,000 values"):
        engine.expand_grid({"seed": __import__("itertools").count()}, 1, {})  # an endless iterator
    with pytest.raises(ValueError, match="10,000,000 trials"):
        sb.sweep(None, {"eta": [0.1] * 10_000, "lmbda": [0.0] * 1000}, None, out=tmp_path / "x")
    assert time.perf_counter() - t0 < 10 and not (tmp_path / "o").exists()


def test_seed_lists_parse_in_linear_time_and_are_bounded():
    import argparse

    from symbp.sweep.cli import _seeds

    t0 = time.perf_counter()
    seeds = _seeds(",".join(str(s) for s in range(100_000)))  # was quadratic: 51 s
    assert seeds == list(range(100_000)) and time.perf_counter() - t0 < 2
    assert _seeds("5,0-3,2,9-10,0") == [5, 0, 1, 2, 3, 9, 10]  # the order given, each seed once
    assert len(_seeds("0-49999,50000-99999")) == 100_000
    for text, message in (("0-100000", "is more than 100,000 seeds"), ("0-99999,100000", "more than 100,000 seeds"),
                          ("0-60000,100000-160000", "more than 100,000 seeds")):
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            _seeds(text)


def test_vote_checks_the_models_before_loading_data(cli, tmp_path, monkeypatch):
    import importlib

    import symbp as sb

    def save(name, shape, classes=10):
        net = sb.Network([sb.Input(shape), sb.Dense(classes, sb.softmax)], cost=sb.cross_entropy)
        net.compile(seed=0, backend="numpy").save(tmp_path / name)
        return tmp_path / name

    odd, good, twelve = save("odd", (4, 14, 14)), save("good", (1, 28, 28)), save("twelve", (1, 28, 28), 12)
    rc, _, err = cli("vote", "--models", good, odd)
    assert rc == 2 and err.count("\n") == 1
    assert f"argument --models: {odd}.json takes 4×14×14, the images are 1×28×28" in err, err
    rc, _, err = cli("vote", "--models", good, twelve)
    assert rc == 2 and f"{twelve}.json gives 12 classes, {good}.json 10" in err, err
    monkeypatch.setattr(importlib.import_module("symbp.sweep.vote"), "MAX_MODELS", 1)
    rc, _, err = cli("vote", "--models", good, good.with_name("twelve"))
    assert rc == 2 and "argument --models: at most 1 models" in err and err.count("\n") == 1, err
