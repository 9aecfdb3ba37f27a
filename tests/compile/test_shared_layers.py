"""Equal layers of a deep net share one generated function per stage, so generated code (and numba's compile
time) grows by a call per layer, not by a copy of the layer's loops; unique layers stay inline."""

from __future__ import annotations

import numpy as np

import symbp as sb
from symbp.compile.backends import Kernels
from symbp.compile.backends.numba.emit import numba_source
from symbp.compile.lower import lower


def _source(depth: int) -> str:
    net = sb.Network([4] * (depth + 1), activation=sb.sigmoid, cost=sb.quadratic)
    programs = lower(net)
    return Kernels("numba", net, "float64", {n: numba_source(p, "float64") for n, p in programs.items()}).module_source


def test_deep_equal_layers_share_their_functions():
    short, deep = _source(10), _source(40)
    assert short.count("def ") == deep.count("def ")  # the same shared functions, whatever the depth
    assert short.count("for i in range") == deep.count("for i in range")  # no per-layer copy of the loops
    per_layer = (len(deep.splitlines()) - len(short.splitlines())) / 30
    assert per_layer < 40, per_layer  # buffer allocations and calls only
    assert "shared by layers" in deep


def test_unique_and_few_equal_layers_stay_inline():
    for sizes in ([784, 30, 10], [784, 100, 100, 100, 10]):  # inline copies compile faster than a function here
        net = sb.Network(sizes, activation=sb.sigmoid, cost=sb.quadratic)
        src = numba_source(lower(net)["sgd_epoch"], "float64")
        assert src.count("def ") == 1 and "shared" not in src


def test_shared_functions_compute_what_inline_code_does(symbp_cache_dir):
    net = sb.Network([3] + [4] * 7 + [2], activation=[sb.tanh] * 7 + [sb.sigmoid], cost=sb.cross_entropy)
    fast, ref = net.compile(backend="numba", seed=3), net.compile(backend="numpy", seed=3)
    assert "shared by layers" in fast.source("sgd_epoch")
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(12, 3)), rng.uniform(0.1, 0.9, (12, 2))
    for (gw, gb), (rw, rb) in zip(fast.gradients(X, Y), ref.gradients(X, Y)):
        np.testing.assert_allclose(gw, rw, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(gb, rb, rtol=1e-12, atol=1e-14)
    order = rng.permutation(12)
    fast.run_epoch(X, Y, order, 4, 0.5)
    ref.run_epoch(X, Y, order, 4, 0.5)
    for pf, pr in zip(fast.params, ref.params):
        for a, b in zip(pf, pr):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
