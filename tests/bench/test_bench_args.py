"""``symbp bench`` refuses bad options before anything runs (issue 20): threads beyond the cores, zero repeats,
malformed layer lists, an output folder that cannot be written, an explicit data folder that is missing, a
non-finite or non-positive η; a diverging η is named as such.  Nothing here loads MNIST or times anything:
the steps that would are replaced by ones that fail the test if reached."""

from __future__ import annotations

import os

import numpy as np
import pytest

from symbp.bench import harness, machine
from symbp.bench.harness import (
    Case,
    DivergedError,
    build_parser,
    cross_check,
    load_data,
    main,
    run_case,
    run_suite,
)
from symbp.bench.impls import NumpyBatched, NumpyPerSample, init_params


def _data(n, n_in, n_out, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, n_in)), rng.integers(0, n_out, n)


@pytest.fixture
def nothing_runs(monkeypatch):
    """Loading data, measuring the peak or running a case fails the test: the error must come first."""

    def reached(what):
        def fail(*args, **kwargs):
            raise AssertionError(f"{what} was reached: the option should have been refused before")

        return fail

    monkeypatch.setattr(harness, "load_data", reached("load_data"))
    monkeypatch.setattr(harness, "measure_peaks", reached("measure_peaks"))
    monkeypatch.setattr(harness, "run_case", reached("run_case"))


def _parse_error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def _one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


# --------------------------------------------------------------------------------------------- threads
def test_usable_cores_is_the_affinity_mask():
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert machine.usable_cores() == expected >= 1


@pytest.mark.parametrize("threads", ["5", "100000"])
def test_threads_beyond_the_cores_are_refused_when_parsing(capsys, monkeypatch, threads):
    monkeypatch.setattr(machine, "usable_cores", lambda: 4)
    err = _parse_error(capsys, ["--threads", threads])
    assert f"argument --threads: thread count {threads} is more than the 4 CPU cores" in err
    assert "give at most 4" in err
    assert build_parser().parse_args(["--threads", "4"]).threads == 4


def test_threads_beyond_the_cores_are_refused_on_this_machine(capsys, nothing_runs):
    cores = machine.usable_cores()
    err = _parse_error(capsys, ["--layers", "6,5,3", "--threads", str(cores + 1)])
    assert f"give at most {cores}" in err
    with pytest.raises(SystemExit):
        main(["--layers", "6,5,3", "--threads", "100000"])
    assert "--threads" in capsys.readouterr().err
    with pytest.raises(ValueError, match=f"more than the {cores} CPU cores"):
        run_suite([Case("c", (6, 5, 3), batch_size=4)], data=_data(40, 6, 3), threads=cores + 1, write=False,
                  progress=False)


@pytest.mark.parametrize("threads", ["0", "-2", "two"])
def test_threads_must_be_a_whole_number_from_one(capsys, threads):
    assert "argument --threads" in _parse_error(capsys, ["--threads", threads])


# --------------------------------------------------------------------------------------------- repeats
def test_zero_repeats_are_refused_not_replaced(capsys, nothing_runs):
    assert "argument --repeats: must be >= 1, got 0" in _parse_error(capsys, ["--repeats", "0"])
    assert "argument --repeats: must be >= 1, got -1" in _parse_error(capsys, ["--repeats", "-1"])
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        run_suite([Case("c", (6, 5, 3), batch_size=4)], data=_data(40, 6, 3), repeats=0, write=False,
                  progress=False)


def test_run_case_refuses_zero_repeats_before_timing():
    X, labels = _data(40, 6, 3)
    case = Case("c", (6, 5, 3), batch_size=4, samples=40, repeats=3)
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        run_case(case, X, np.eye(3)[labels], [NumpyBatched], repeats=0, memory=False)


def test_a_custom_case_takes_the_repeats_given():
    args = build_parser().parse_args(["--layers", "6,5,3", "--repeats", "2"])
    assert args.repeats == 2


# ---------------------------------------------------------------------------------------------- layers
@pytest.mark.parametrize(
    "text, why",
    [
        ("784,,10", "entry 2 is empty"),
        ("784,10,", "entry 3 is empty"),
        ("784,x,10", "entry 2, 'x', is not a whole number"),
        ("784,3.5,10", "entry 2, '3.5', is not a whole number"),
        ("784,-3,10", "entry 2 is -3; layer sizes must be >= 1"),
        ("784,0,10", "entry 2 is 0"),
        ("784", "give at least 2 sizes"),
    ],
)
def test_a_bad_layer_list_is_named(capsys, text, why):
    err = _parse_error(capsys, ["--layers", text])
    assert f"argument --layers: invalid layer list {text!r}: {why}" in err
    assert "invalid literal" not in err


def test_a_good_layer_list_parses_to_sizes():
    assert build_parser().parse_args(["--layers", "784, 30,10"]).layers == (784, 30, 10)


# ------------------------------------------------------------------------------------------------- out
@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full on this system")
def test_out_on_dev_full_is_refused_before_the_run(capsys, nothing_runs):
    err = _one_line_error(capsys, ["--layers", "6,5,3", "--out", "/dev/full"])
    assert "argument --out: cannot write under /dev/full: /dev/full is not a folder" in err


def test_out_under_a_file_or_empty_is_refused_before_the_run(capsys, tmp_path, nothing_runs):
    f = tmp_path / "a-file"
    f.write_text("x")
    err = _one_line_error(capsys, ["--layers", "6,5,3", "--out", str(f)])
    assert f"argument --out: cannot write under {f}: {f} is a file" in err
    err = _one_line_error(capsys, ["--layers", "6,5,3", "--out", str(f / "sub" / "dir")])
    assert f"{f} is a file" in err
    err = _one_line_error(capsys, ["--out", ""])
    assert "argument --out: the path is empty" in err
    with pytest.raises(ValueError, match="is a file"):
        run_suite([Case("c", (6, 5, 3), batch_size=4)], f, progress=False)


def test_out_that_can_be_created_is_accepted_and_not_created(tmp_path):
    out = tmp_path / "new" / "results"
    assert harness.check_out_dir(out) == out
    assert not (tmp_path / "new").exists()
    assert list(tmp_path.iterdir()) == []  # the probe file is gone


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True,
                    reason="root writes in read-only folders (and no POSIX permissions on this system)")
def test_out_in_a_read_only_folder_is_refused(capsys, tmp_path, nothing_runs):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        err = _one_line_error(capsys, ["--layers", "6,5,3", "--out", str(ro / "bench")])
    finally:
        ro.chmod(0o700)
    assert f"argument --out: cannot write in the folder {ro}" in err


# -------------------------------------------------------------------------------------------- data dir
def test_a_missing_data_dir_is_an_error_not_a_fallback(capsys, tmp_path, monkeypatch, nothing_runs):
    monkeypatch.setenv("SYMBP_DATA_DIR", str(tmp_path))  # never silently used instead
    missing = tmp_path / "nonexistent"
    err = _one_line_error(capsys, ["--layers", "784,10", "--data-dir", str(missing), "--out", str(tmp_path / "o")])
    assert f"argument --data-dir: {missing} does not exist" in err
    with pytest.raises(ValueError, match=f"data_dir: {missing} does not exist"):
        run_suite([Case("c", (784, 10))], tmp_path / "o", data_dir=missing, progress=False)


def test_a_data_dir_without_mnist_is_an_error(capsys, tmp_path, nothing_runs):
    err = _one_line_error(capsys, ["--layers", "784,10", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o")])
    assert f"argument --data-dir: neither {tmp_path} nor {tmp_path / 'mnist'} holds the four MNIST files" in err
    f = tmp_path / "file"
    f.write_text("")
    err = _one_line_error(capsys, ["--layers", "784,10", "--data-dir", str(f), "--out", str(tmp_path / "o")])
    assert f"argument --data-dir: {f} is not a folder" in err


def test_load_data_refuses_a_missing_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMBP_DATA_DIR", str(tmp_path))
    with pytest.raises(ValueError, match="does not exist"):
        load_data(tmp_path / "nonexistent")


# ------------------------------------------------------------------------------------------------- eta
@pytest.mark.parametrize("option, value", [("--eta", "nan"), ("--eta", "inf"), ("--eta", "1e999"),
                                           ("--eta", "0"), ("--eta", "-1"), ("--lmbda", "-1"), ("--lmbda", "inf")])
def test_non_finite_or_negative_eta_and_lmbda_are_refused(capsys, option, value):
    err = _parse_error(capsys, [option, value])
    assert f"argument {option}: must be a finite number" in err


@pytest.mark.parametrize("kwargs", [{"eta": float("nan")}, {"eta": -1.0}, {"eta": 0.0}, {"lmbda": float("inf")}])
def test_case_refuses_non_finite_or_negative_eta_and_lmbda(kwargs):
    with pytest.raises(ValueError, match="must be a finite number"):
        Case("c", (6, 5, 3), **kwargs)


def _impls(case, X, Y, params, classes=(NumpyPerSample,)):
    impls = []
    for cls in classes:
        impl = cls()
        impl.setup(case.layers, case.cost, case.dtype, params, X, Y, case.batch_size, case.eta, case.lmbda)
        impls.append(impl)
    return impls


def test_a_huge_eta_that_stays_finite_is_compared_without_overflowing_the_norms():
    """At η = 1e308 the float64 parameters stay finite near the float64 limit; their norms overflowed and
    the check reported "relative error nan".  Measured on scaled arrays, the two baselines agree."""
    case = Case("huge", (6, 5, 3), batch_size=4, eta=1e308)
    X, labels = _data(40, 6, 3)
    Y = np.eye(3)[labels]
    params = init_params(case.layers, seed=0)
    with np.errstate(all="ignore"):
        report = cross_check(_impls(case, X, Y, params), case, X, Y, params)
    assert report["errors"]["numpy-per-sample"]["max_rel"] <= 1e-10


@pytest.mark.parametrize(
    "kwargs",
    [
        {"eta": 1e308, "lmbda": 1.0},  # weight decay by 1 - ηλ/n: the float64 parameters reach inf
        {"eta": 1e60, "dtype": "float32"},  # finite in float64, beyond float32's range
    ],
)
def test_a_diverging_eta_is_named_not_reported_as_a_disagreement(kwargs):
    case = Case("div", (6, 5, 3), batch_size=4, **kwargs)
    X, labels = _data(40, 6, 3)
    X, Y = X.astype(case.dtype), np.eye(3)[labels].astype(case.dtype)
    params = init_params(case.layers, case.dtype, seed=0)
    with np.errstate(all="ignore"), pytest.raises(DivergedError) as info:
        cross_check(_impls(case, X, Y, params), case, X, Y, params)
    msg = str(info.value)
    assert f"case 'div' diverges at eta={case.eta:g}" in msg and f"overflowed {case.dtype}" in msg
    assert "use a smaller eta" in msg and "relative error" not in msg


def test_a_diverging_eta_on_the_command_line_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(harness, "load_data", lambda data_dir=None: _data(40, 6, 3))
    monkeypatch.setattr(harness, "measure_peaks", lambda dtypes, threads=1, size=0, repeats=0: {
        "threads": threads, "single_thread": {}, "at_threads": {dt: {"gflops": 1.0} for dt in dtypes}})
    monkeypatch.setattr(harness.machine, "environment", lambda: {})
    assert main(["--layers", "6,5,3", "--batch-size", "4", "--samples", "40", "--eta", "1e308", "--lmbda", "1",
                 "--impl", "numpy-per-sample", "--no-cold", "--no-memory", "--out", str(tmp_path / "out")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()  # the progress log, then the error
    err = lines[-1]
    assert [line for line in lines if "error" in line] == [err] and "Traceback" not in "".join(lines)
    assert "error: case '6-5-3-m4-float64-quadratic' diverges at eta=1e+308, lmbda=1" in err
    assert "use a smaller eta or lmbda" in err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------ prog
def test_symbp_bench_help_names_symbp_bench(capsys):
    from symbp import cli

    with pytest.raises(SystemExit) as info:
        cli.main(["bench", "--help"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("usage: symbp bench ")
    with pytest.raises(SystemExit):
        cli.main(["bench", "--repeats", "0"])
    assert "symbp bench: error: argument --repeats" in capsys.readouterr().err
    assert build_parser().prog == "python -m symbp.bench"
