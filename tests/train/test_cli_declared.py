"""Declared layers on the command line: ``--declare FILE`` (JSON, read through the whitelist parser) and ``@NAME``
items in ``--layers``; ``symbp show --plan``; bad files are one-line errors before any data is loaded."""

import json
import os
import subprocess
import sys

import pytest

DECL = {
    "conv_s2": {"map": "z[f,i,j] = sum(W[f,c,p,q]*x[c,2*i+p-1,2*j+q-1] for c in range(1) for p in range(3) "
                       "for q in range(3)) + b[f]",
                "out": [4, 14, 14], "params": {"W": [4, 1, 3, 3], "b": [4]}, "activation": "relu"},
    "maxpool3s2": {"map": "z[c,i,j] = max(x[c,2*i+p,2*j+q] for p in range(3) for q in range(3))"},
}


def run(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "symbp.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ))


@pytest.fixture()
def declarations(tmp_path):
    path = tmp_path / "layers.json"
    path.write_text(json.dumps(DECL))
    return path


def test_show_equations_and_plan_of_declared_layers(declarations):
    out = run("show", "--declare", str(declarations), "--layers", "@conv_s2,@maxpool3s2,softmax10")
    assert out.returncode == 0, out.stderr
    assert "z¹[f,i,j] = Σ_{c<1,p<3,q<3} W¹[f,c,p,q]·a⁰[c,2i+p−1,2j+q−1] + b¹[f]" in out.stdout
    assert "[scatter at the argmax]" in out.stdout
    out = run("show", "--declare", str(declarations), "--layers", "@conv_s2,@maxpool3s2,softmax10", "--plan",
              "--backend", "numpy")
    assert out.returncode == 0, out.stderr
    assert "generated loops (declared map)" in out.stdout and "BLAS gemm" in out.stdout


@pytest.mark.parametrize("content, message", [
    ("{", "not valid JSON"),
    (json.dumps({"c": {"map": "z[i] = __import__('os')"}}), "'c': layer 'c': unknown function"),
    (json.dumps({"c": {"map": "z[i] = x[i]", "evil": 1}}), "unknown field"),
    (json.dumps({"c": {"map": "z[i] = W[i]*x[i]", "params": {"W": "3"}}}), "params"),
    (json.dumps([1, 2]), "expected an object"),
])
def test_bad_declaration_files_are_one_line(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    out = run("show", "--declare", str(path), "--layers", "@c,softmax10")
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_unknown_name_and_missing_file(tmp_path, declarations):
    out = run("show", "--declare", str(declarations), "--layers", "@nothere,softmax10")
    assert out.returncode == 2 and "no declared layer named 'nothere'" in out.stderr
    out = run("show", "--layers", "@conv_s2,softmax10")
    assert out.returncode == 2 and "give --declare FILE" in out.stderr
    out = run("show", "--declare", str(tmp_path / "missing.json"), "--layers", "@c,softmax10")
    assert out.returncode == 2 and "cannot read the file of declarations" in out.stderr


def test_train_with_a_declared_layer(tmp_path, declarations, data_dir):
    out = run("train", "--declare", str(declarations), "--layers", "@conv_s2,@maxpool3s2,softmax10",
              "--cost", "log-likelihood", "--limit", "300", "--epochs", "1", "--eta", "0.1", "--data-dir",
              str(data_dir), "--save", str(tmp_path / "m"), "--backend", "numpy", "--no-progress")
    assert out.returncode == 0, out.stderr
    import symbp as sb

    model = sb.load(tmp_path / "m")
    assert model.network.layers[1].name == "conv_s2"


def test_show_config_then_network_reads_it_back(tmp_path, declarations):
    """``symbp show --config`` prints the declaration that model files, sweeps and the kernel cache use;
    ``--network FILE`` reads it back (the same equations, the same declaration), and train checks its input."""
    spec = ("--declare", str(declarations), "--layers", "@conv_s2,@maxpool3s2,fc30,softmax10",
            "--cost", "log-likelihood")
    out = run("show", *spec, "--config")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["format"] == "symbp-network" and [e["kind"] for e in doc["layers"]] == [
        "input", "declared", "declared", "dense", "dense"]
    path = tmp_path / "net.json"
    path.write_text(out.stdout)
    again = run("show", "--network", str(path), "--config")
    assert again.returncode == 0 and json.loads(again.stdout) == doc
    eqs, eqs_back = run("show", *spec), run("show", "--network", str(path))
    assert eqs.returncode == eqs_back.returncode == 0 and eqs.stdout == eqs_back.stdout
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps({**doc, "layers": [{"kind": "input", "n": 20}, *doc["layers"][3:]]}))
    out = run("train", "--network", str(flat), "--epochs", "1")  # refused before any data is looked for
    assert out.returncode == 2 and "argument --network: the network's input is 20" in out.stderr
    out = run("show", "--network", str(path), "--cost", "cross-entropy")
    assert out.returncode == 2 and "argument --network: the declaration holds" in out.stderr and "--cost" in out.stderr
    out = run("show", "--network", str(path), "--layers", "784,30,10")  # written, even though it is the default
    assert out.returncode == 2 and "leave out --layers" in out.stderr
    few = tmp_path / "few.json"
    few.write_text(json.dumps({**doc, "layers": [*doc["layers"][:-1], {**doc["layers"][-1], "n": 5}]}))
    out = run("train", "--network", str(few), "--epochs", "1")
    assert out.returncode == 2 and "argument --network: MNIST has 10 classes" in out.stderr
    assert "got 5 units" in out.stderr


@pytest.mark.parametrize("content, message", [
    ("{", "not JSON"),
    (json.dumps({"format": "symbp-network", "version": 1, "layers": [{"kind": "input", "n": 4},
                {"kind": "dense", "n": 2, "activation": {"name": "x", "expr": "__import__('os')"}}],
                 "cost": {"name": "quadratic", "expr": "(a - y)**2/2"}}), "unknown function"),
    (json.dumps({"format": "symbp-model"}), "expected a dict with format 'symbp-network'"),
])
def test_bad_network_files_are_one_line(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    out = run("show", "--network", str(path))
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and str(path) in out.stderr
