"""Backends as plug-ins: every registered backend passes the same tests (parametrised over the registry), a toy
third backend defined here plugs into ``Network.compile``, ``symbp train --backend``, model files and the bench
without editing symbp, and the NumPy backend (and ``import symbp``) never import numba."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import symbp as sb
from symbp.compile.backends import BACKENDS, Backend, get_backend, register_backend
from symbp.compile.backends.numpy import NumpyBackend


def _nets():
    dense = sb.Network([sb.Input(6), sb.Dense(5, sb.tanh), sb.Dropout(0.25), sb.Dense(3, sb.softmax)],
                       cost=sb.log_likelihood)
    conv = sb.Network([sb.Input((2, 6, 6)), sb.Conv2D(3, (3, 3), sb.relu, stride=2, padding=1),
                       sb.MaxPool((2, 2)), sb.Dense(2, sb.sigmoid)], cost=sb.cross_entropy)
    return {"dense": dense, "conv": conv}


def _data(net, rng, n=8):
    X = rng.normal(size=(n, int(np.prod(net.shapes[0]))))
    Y = np.eye(net.shapes[-1][0])[rng.integers(0, net.shapes[-1][0], n)]
    return X, Y


def _forward(net, params, X):
    """aᴸ from the layers' own NumPy forward maps (no backend involved; dropout is the identity there)."""
    a, k = X.reshape(len(X), *net.shapes[0]), 0
    for layer, shape in zip(net.layers[1:], net.shapes):
        theta = params[k] if layer.param_specs(shape) else ()
        k += bool(theta)
        a = layer.reference(theta, a.reshape(len(a), *shape))
    return a.reshape(len(X), -1)


@pytest.fixture
def toy():
    """A third backend: the NumPy emitter and loader under another name, registered for one test."""

    class Toy(NumpyBackend):
        name = "toy"
        description = "the NumPy backend under another name (a test's plug-in)"

    backend = register_backend(Toy())
    yield backend
    del BACKENDS["toy"]


@pytest.mark.parametrize("which", ["dense", "conv"])
@pytest.mark.parametrize("backend", list(BACKENDS))
def test_every_registered_backend_computes_the_derived_rules(backend, which):
    """Forward equals the layers' own maps, gradients equal central differences of the cost, and one SGD epoch
    equals the NumPy backend's."""
    net = _nets()[which]
    rng = np.random.default_rng(3)
    X, Y = _data(net, rng)
    model = net.compile(backend=backend, dtype="float64", seed=1)
    assert model.backend == backend and model.kernels.impl is get_backend(backend)
    np.testing.assert_allclose(model.feedforward(X), _forward(net, model.params, X), rtol=1e-10, atol=1e-12)
    grads = model.gradients(X, Y)
    params = model.params
    for k, pair in enumerate(params):
        for j, p in enumerate(pair):
            flat = p.reshape(-1)
            for i in rng.choice(flat.size, size=min(4, flat.size), replace=False):
                def cost(h, k=k, j=j, i=i):
                    q = [[a.copy() for a in pr] for pr in params]
                    q[k][j].reshape(-1)[i] += h
                    model.set_params([tuple(pr) for pr in q])
                    return model.cost(X, Y)
                fd = (cost(1e-6) - cost(-1e-6)) / 2e-6
                model.set_params(params)
                assert grads[k][j].reshape(-1)[i] == pytest.approx(fd, rel=1e-5, abs=1e-7)
    ref = net.compile(backend="numpy", dtype="float64", seed=1)
    order = rng.permutation(len(X))
    for m in (model, ref):
        m.run_epoch(X, Y, order, 4, 0.3, seed=5)
    for pa, pb in zip(model.params, ref.params):
        for a, b in zip(pa, pb):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_a_third_backend_plugs_in_without_editing_symbp(toy, tmp_path):
    net = _nets()["conv"]
    rng = np.random.default_rng(0)
    X, Y = _data(net, rng)
    model = net.compile(backend="toy", seed=2)
    assert model.backend == "toy" and "toy kernels" in model.source(None)
    ref = net.compile(backend="numpy", seed=2)
    np.testing.assert_array_equal(model.feedforward(X), ref.feedforward(X))
    model.save(tmp_path / "m")
    assert sb.load(tmp_path / "m").backend == "toy"
    from symbp.cli import parser

    assert parser().parse_args(["train", "--backend", "toy"]).backend == "toy"
    from symbp.bench.harness import resolve_impls

    (impl,) = resolve_impls("symbp-toy")
    assert impl.backend == "toy"
    (conv_impl,) = resolve_impls("symbp-toy", kind="conv")
    assert conv_impl.backend == "toy"


def test_the_registry_refuses_what_is_not_a_backend():
    with pytest.raises(ValueError, match="backend must be one of numba, numpy"):
        get_backend("cuda")
    with pytest.raises(ValueError, match="backend must be one of"):
        sb.Network([2, 2], activation=sb.sigmoid, cost=sb.quadratic).compile(backend="cuda")
    with pytest.raises(ValueError, match="a name that is an identifier"):
        register_backend(type("Nameless", (Backend,), {})())
    with pytest.raises(ValueError, match="is a symbp.compile.backends.Backend"):
        register_backend(object())


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_import_symbp_and_the_numpy_backend_do_not_import_numba():
    """``import symbp`` leaves numba, SciPy's special functions, NumPy's lazily loaded submodules and the parts
    imported on use (``sb.approx``, ``sb.data``) out (python -X importtime agrees); a NumPy model trains where
    importing numba is impossible."""
    out = _run("""
        import sys
        import symbp
        print(*(m in sys.modules for m in ('numba', 'scipy.special', 'numpy.f2py', 'symbp.approx', 'symbp.data')))
        print(symbp.data.__name__, symbp.approx.__name__, 'approx' in dir(symbp))
    """)
    assert out.split("\n")[0].strip() == "False False False False False"
    assert out.split("\n")[1].strip() == "symbp.data symbp.approx True"
    times = subprocess.run([sys.executable, "-X", "importtime", "-c", "import symbp"], capture_output=True,
                           text=True, timeout=300).stderr
    assert "symbp" in times and not any(line.rstrip().endswith("| numba") for line in times.splitlines())
    out = _run("""
        import sys
        sys.modules['numba'] = None  # any import of numba now fails
        import numpy as np
        import symbp as sb
        net = sb.Network([sb.Input((1, 5, 5)), sb.Conv2D(2, (3, 3), sb.relu), sb.MaxPool((3, 3)), sb.Dropout(0.5),
                          sb.Dense(2, sb.softmax)], cost=sb.log_likelihood)
        model = net.compile(backend='numpy', seed=0)
        X = np.random.default_rng(0).random((6, 25)); y = np.arange(6) % 2
        model.fit((X, y), epochs=1, batch_size=3, eta=0.1, progress=False, seed=1)
        print(model.feedforward(X[:1]).shape)
    """)
    assert out.strip() == "(1, 2)"


def test_kernels_compiled_in_parallel_give_the_bits_of_a_serial_compile(tmp_path):
    """Cold caches, ``prepare`` with two compile processes (the update kernel here, forward and cost in a
    worker) and with one: the same parameters after an epoch, bit for bit; a third process then loads every
    kernel from the cache without compiling."""
    script = """
        import os, sys
        import numpy as np
        import symbp as sb
        net = sb.Network([sb.Input((1, 6, 6)), sb.Conv2D(2, (3, 3), sb.tanh), sb.MaxPool((2, 2)),
                          sb.Dense(3, sb.softmax)], cost=sb.log_likelihood)
        model = net.compile(seed=0)
        info = model.prepare('sgd_epoch', 'forward', 'cost')
        rng = np.random.default_rng(0)
        X, Y = rng.random((20, 36)), np.eye(3)[rng.integers(0, 3, 20)]
        model.run_epoch(X, Y, np.arange(20), 5, 0.3)
        np.save(sys.argv[1], np.concatenate([p.ravel() for pair in model.params for p in pair]))
        print(*(info['kernels'][n]['hit'] for n in ('sgd_epoch', 'forward', 'cost')))
    """
    path = tmp_path / "run.py"
    path.write_text(textwrap.dedent(script))
    hits = {}
    for label, workers, cache in (("parallel", "2", "a"), ("serial", "1", "b"), ("again", "2", "a")):
        env = {**__import__("os").environ, "SYMBP_COMPILE_WORKERS": workers,
               "SYMBP_CACHE_DIR": str(tmp_path / cache), "NUMBA_CACHE_DIR": str(tmp_path / cache / "numba")}
        out = subprocess.run([sys.executable, str(path), str(tmp_path / f"{label}.npy")], env=env,
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr
        hits[label] = out.stdout.split()
    assert hits["parallel"] == ["False", "True", "True"]  # the first compiled here, the others by the worker
    assert hits["serial"] == ["False", "False", "False"] and hits["again"] == ["True", "True", "True"]
    runs = [np.load(tmp_path / f"{label}.npy") for label in ("parallel", "serial", "again")]
    assert runs[0].tobytes() == runs[1].tobytes() == runs[2].tobytes()
