"""The symbp command end to end, in subprocesses."""

import json
import os
import subprocess
import sys
from pathlib import Path

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
                 "--backend", "--expand", "--lmbda-network3"):
        assert flag in out.stdout
    # the layer syntax, with the book's chapter-6 nets as examples
    for text in ("convMAPSxKHxKW", "poolPHxPW", "dropoutP", "softmaxN", "conv20x5x5,pool2,fc100,softmax10",
                 "double_fc_dropout", "dbl_conv_relu", "--lmbda-network3 0.1"):
        assert text in out.stdout, text
    out = run("show", "--help")
    assert out.returncode == 0 and "convMAPSxKHxKW" in out.stdout


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


# --- every error: one line on stderr, exit 2, naming the option, found before any data is loaded --------------

DRIVER = r"""
import contextlib, io, json, sys
from symbp.cli import main
results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as exc:  # how argparse ends the process
            rc = exc.code
    results.append([rc, out.getvalue(), err.getvalue()])
print(json.dumps(results))
"""


def no_data_env(tmp_path):
    """An environment where the dataset can be found nowhere: a case that got as far as loading data would fail
    with the several-line "MNIST files not found" message instead of its own one line."""
    (tmp_path / "empty-data").mkdir(exist_ok=True)
    return {"SYMBP_DATA_DIR": str(tmp_path / "empty-data"), "SYMBP_CACHE_DIR": str(tmp_path / "empty-cache"),
            "SYMBP_MIRRORS": "http://127.0.0.1:9/"}


def run_cases(tmp_path, cases):
    """Run ``symbp.cli.main`` on each argv of ``cases`` in one subprocess (one import of symbp for all); an
    exception escaping ``main`` fails the whole run with its traceback."""
    argvs = [argv for argv, _ in cases]
    proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(argvs)], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env={**os.environ, **no_data_env(tmp_path)})
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    return json.loads(proc.stdout)


def assert_one_line_error(rc, out, err, option, argv):
    assert rc == 2, (argv, rc, out, err)
    assert "Traceback" not in err, (argv, err)
    assert err.endswith("\n") and err.count("\n") == 1 and err.strip(), (argv, err)
    assert option in err, (argv, err)
    assert err.startswith(f"symbp {argv[0]}: error: argument {option}: "), (argv, err)
    assert "training samples" not in out and "not found" not in err, (argv, out, err)  # before any data


def test_bad_arguments_are_one_line_before_data_is_loaded(tmp_path):
    from symbp.arguments import memory_limit

    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    (tmp_path / "jdir.json").mkdir()
    (tmp_path / "ndir.npz").mkdir()
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    if os.geteuid() == 0:  # root writes in any folder: /proc takes no new files
        ro = Path("/proc")
    no_data_env(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    cases = [
        (["--seed", "-1"], "--seed"),
        (["--seed", "x"], "--seed"),
        (["--epochs", "-1"], "--epochs"),
        (["--batch-size", "0"], "--batch-size"),
        (["--batch-size", "100", "--limit", "50"], "--batch-size"),
        (["--limit", "0"], "--limit"),
        (["--eta", "-1"], "--eta"),
        (["--eta", "nan"], "--eta"),
        (["--eta", "inf"], "--eta"),
        (["--lmbda", "-1"], "--lmbda"),
        (["--lmbda", "nan"], "--lmbda"),
        (["--early-stop", "0"], "--early-stop"),
        (["--layers", "784,0,10"], "--layers"),
        (["--layers", "10,3"], "--layers"),  # MNIST needs 784 inputs
        (["--layers", "784,100000000,10"], "--layers"),  # 78e9 parameters: terabytes
        (["--activation", "zz("], "--activation"),
        (["--output-activation", "__import__('os')"], "--output-activation"),
        (["--cost", "a**"], "--cost"),
        (["--save", ""], "--save"),
        (["--save", "afile/model"], "--save"),
        (["--save", "jdir"], "--save"),  # jdir.json is a folder
        (["--save", "ndir.json"], "--save"),  # ndir.npz is a folder
        (["--save", "adir/"], "--save"),
        (["--save", str(ro / "model")], "--save"),
        (["--plot", "afile/x.png"], "--plot"),
        (["--plot", "adir"], "--plot"),
        (["--plot", "curves.notaformat"], "--plot"),
        (["--plot", str(ro / "curves.png")], "--plot"),
        (["--plot", "m.json", "--save", "m"], "--plot"),
        (["--data-dir", "missing"], "--data-dir"),
        (["--data-dir", "adir"], "--data-dir"),  # exists, but holds no MNIST files
        # the compact layer syntax: a bad item or an impossible shape
        (["--layers", "conv20x5,pool2,fc10"], "--layers"),
        (["--layers", "conv20x29x29,softmax10"], "--layers"),  # a kernel larger than the image
        (["--layers", "conv20x5x5,pool2,conv40x13x13,softmax10"], "--layers"),
        (["--layers", "pool29,fc10"], "--layers"),
        (["--layers", "fc100,conv20x5x5,softmax10"], "--layers"),  # a convolution after a flat layer
        (["--layers", "conv20x5x5,pool2"], "--layers"),  # no dense output
        (["--layers", "softmax100,fc10"], "--layers"),
        (["--layers", "dropout1,fc10"], "--layers"),
        (["--layers", "2x28x28,fc10"], "--layers"),  # not MNIST's input
        (["--layers", "conv20x5x5,fc5"], "--layers"),  # fewer than 10 outputs
        (["--layers", "fc30,fc10", "--activation", "softmax"], "--layers"),
        (["--layers", "conv20x5x5,pool2,fc100,softmax10", "--output-activation", "sigmoid"],
         "--output-activation"),
        (["--layers", "conv1000000x5x5,softmax10"], "--layers"),  # 5.8e9 parameters
        (["--expand", "--dataset", "fashion-mnist"], "--expand"),
        (["--expand", "--limit", "1", "--batch-size", "6"], "--batch-size"),  # 5 images: not enough
        (["--lmbda-network3", "-1"], "--lmbda-network3"),
        (["--lmbda-network3", "0.1", "--lmbda", "1"], "--lmbda"),
    ]
    cases = [(["train", *argv], option) for argv, option in cases]
    if (memory_limit() or 0) < 150e9:  # the network of the report: 795e6 parameters, about 186 GB to train
        cases.append((["train", "--layers", "784,1000000,10"], "--layers"))
    cases += [
        (["show", "--layers", "784,x,10"], "--layers"),
        (["show", "--eta", "1"], "unrecognized"),
        (["show", "--source", "forward", "--layers", "784,100000000000,10"], "--layers"),
        (["show", "--layers", "conv20x29x29,softmax10"], "--layers"),
        (["show", "--layers", "conv20x5x5,pool2,fc100,softmax10", "--output-activation", "relu"],
         "--output-activation"),
    ]
    try:
        results = run_cases(tmp_path, cases)
    finally:
        (tmp_path / "ro").chmod(0o700)
    for (argv, option), (rc, out, err) in zip(cases, results, strict=True):
        if option == "unrecognized":
            assert rc == 2 and err.count("\n") == 1 and err.startswith("symbp: error: unrecognized arguments: --eta")
            continue
        assert_one_line_error(rc, out, err, option, argv)
    errors = {" ".join(argv): err for (argv, _), (_, _, err) in zip(cases, results, strict=True)}
    assert "GB of memory" in errors["train --layers 784,100000000,10"]
    assert "is a file" in errors["train --save afile/model"]
    assert "jdir.json is a folder" in errors["train --save jdir"]
    assert "does not exist" in errors["train --data-dir missing"]
    assert "conv20x29x29 (item 1): a 29x29 kernel is larger than its 28x28 input" in \
        errors["train --layers conv20x29x29,softmax10"]
    assert "conv40x13x13 (item 3)" in errors["train --layers conv20x5x5,pool2,conv40x13x13,softmax10"]
    assert "(1000000, 24, 24) is too large" in errors["train --layers conv1000000x5x5,softmax10"]
    assert "not allowed with" in errors["train --lmbda-network3 0.1 --lmbda 1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written: no orphan .npz, no plot


def test_errors_from_the_real_entry_point(tmp_path):
    env = no_data_env(tmp_path)
    (tmp_path / "afile").write_text("x")
    for argv, option in ((["train", "--seed", "-1"], "--seed"),
                         (["train", "--save", str(tmp_path / "afile" / "model")], "--save")):
        out = run(*argv, env=env)
        assert_one_line_error(out.returncode, out.stdout, out.stderr, option, argv)


def test_library_errors_are_one_line(monkeypatch, capsys):
    from symbp import cli

    def fail(exc):
        def cmd(args):
            raise exc
        return cmd

    for exc in (MemoryError("Unable to allocate 6 GiB"), MemoryError(), OSError(28, "No space left on device"),
                FloatingPointError("training diverged\nat epoch 3"), ValueError("bad\n  value")):
        monkeypatch.setattr(cli, "cmd_show", fail(exc))
        assert cli.main(["show"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("symbp show: error: ") and err.count("\n") == 1, err
    from symbp.data import DatasetNotFoundError

    monkeypatch.setattr(cli, "cmd_show", fail(DatasetNotFoundError("MNIST files not found.\nLooked in:\n  - x")))
    assert cli.main(["show"]) == 2
    assert capsys.readouterr().err.count("\n") == 3  # explains where it looked, over several lines


def test_plot_path_is_the_path_written(tmp_path):
    from symbp.train.model import History
    from symbp.train.plot import plot_history, plot_path

    assert plot_path("curves") == Path("curves.png")
    assert plot_path("a/b.PDF") == Path("a/b.PDF") and plot_path("c.svg") == Path("c.svg")
    for bad in ("", "adir/", "x.notaformat", "."):
        with pytest.raises(ValueError):
            plot_path(bad)
    hist = History(epochs=[1, 2], evaluation_accuracy=[0.5, 0.6], evaluation_cost=[1.0, 0.8])
    written = plot_history(hist, tmp_path / "sub" / "curves")
    assert written == tmp_path / "sub" / "curves.png"
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["curves.png"]
    assert written.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_history(hist, tmp_path / "c.svg").read_bytes().lstrip().startswith(b"<?xml")


def test_layer_syntax_builds_the_network(monkeypatch):
    """784,30,10 is the network it always was; the compact items build the book's chapter-6 nets."""
    import symbp as sb
    from symbp import arguments, cli

    def network(*argv):
        args = cli.parser().parse_args(["train", *argv])
        return cli.build_network(args)

    for argv, sizes in (([], [784, 30, 10]), (["--layers", "784,100,10"], [784, 100, 10])):
        net = network(*argv)
        old = sb.Network(sizes, activation=sb.sigmoid, cost=sb.quadratic)
        assert net.layers == old.layers and repr(net) == repr(old)
    net = network("--layers", "784,100,10", "--activation", "relu", "--output-activation", "softmax")
    assert net.layers == (sb.Input(784), sb.Dense(100, sb.relu), sb.Dense(10, sb.softmax))
    net = network("--layers", "conv20x5x5,pool2,conv40x5x5,pool2,fc100,softmax10", "--activation", "relu",
                  "--cost", "log-likelihood")
    assert net.layers == (sb.Input((1, 28, 28)), sb.Conv2D(20, (5, 5), sb.relu), sb.MaxPool((2, 2)),
                          sb.Conv2D(40, (5, 5), sb.relu), sb.MaxPool((2, 2)), sb.Dense(100, sb.relu),
                          sb.Dense(10, sb.softmax))
    assert net.cost == sb.log_likelihood
    assert network("--layers", "1x28x28,conv20x5x5,fc10").layers == network("--layers", "conv20x5x5,fc10").layers
    args = cli.parser().parse_args(["show", "--layers", "4,3,2"])
    assert cli.build_network(args, check_input=False).sizes == [4, 3, 2]

    # --expand and --lmbda-network3 parse; network3's λ is symbp's divided by the mini-batch size
    args = cli.parser().parse_args(["train", "--expand", "--lmbda-network3", "0.1", "--batch-size", "10"])
    assert args.expand is True and args.lmbda_network3 == 0.1
    net, _, _ = cli.check_train_args(args)
    assert args.lmbda == pytest.approx(1.0)
    args = cli.parser().parse_args(["train"])
    assert args.expand is False and args.lmbda_network3 is None
    cli.check_train_args(args)
    assert args.lmbda == 0.0

    # the memory estimate counts the expanded data and a conv net's activations
    monkeypatch.setattr(arguments, "memory_limit", lambda: 1_700_000_000)  # 1.4 GB; 2.0 GB with --expand
    conv = ["--layers", "conv20x5x5,pool2,fc100,softmax10", "--dtype", "float32", "--inputs", "float"]
    cli.check_train_args(cli.parser().parse_args(["train", *conv]))
    with pytest.raises(ValueError, match="^argument --layers: conv20x5x5,pool2,fc100,softmax10 has 289,630 param"):
        cli.check_train_args(cli.parser().parse_args(["train", *conv, "--expand"]))
    # the default uint8 pixels take a quarter of float32's memory: the expanded set fits (about 1.25 GB)
    cli.check_train_args(cli.parser().parse_args(["train", *conv[:-2], "--expand"]))


def test_train_conv_net_on_expanded_data(data_dir):
    out = run("train", "--layers", "conv4x5x5,pool2,fc30,softmax10", "--activation", "relu", "--cost",
              "log-likelihood", "--dtype", "float32", "--eta", "0.1", "--lmbda-network3", "0.1", "--limit", "400",
              "--expand", "--epochs", "2", "--data-dir", str(data_dir), "--seed", "0", "--no-progress")
    assert out.returncode == 0, out.stderr
    assert "Network([1x28x28, conv4x5x5:relu, pool2x2, 30:relu, 10:softmax]" in out.stdout
    assert "2000 training samples (400 images and their 4 one-pixel shifts)" in out.stdout
    assert "λ = 1: network3's λ 0.1 × mini-batch size 10" in out.stdout
    acc = float(out.stdout.split("peak test accuracy ")[1].split("%")[0])
    assert acc > 70.0
