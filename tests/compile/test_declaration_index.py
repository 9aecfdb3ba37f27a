"""The declaration index: a network compiled before reuses its recorded kernel sources without deriving."""

import json

import numpy as np

import symbp as sb
from symbp.compile.backends.numba.cache import declaration_key, lookup_declaration


def _net():
    return sb.Network([3, 5, 2], activation=sb.tanh, cost=sb.quadratic)


def test_index_records_and_reuses_sources(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMBP_CACHE_DIR", str(tmp_path))
    first = _net().compile(seed=0)
    key = declaration_key(_net(), "numba", "float64")
    rec = lookup_declaration(key)
    assert rec is not None and rec["sources"]["sgd_epoch"] == first.source("sgd_epoch")
    second = _net().compile(seed=0)
    assert second._programs is None  # nothing was derived or lowered
    assert second.source("sgd_epoch") == first.source("sgd_epoch")
    X = np.random.default_rng(0).normal(size=(4, 3))
    np.testing.assert_array_equal(first.feedforward(X), second.feedforward(X))
    assert second.programs["forward"].name == "forward"  # still available on demand


def test_damaged_index_is_ignored_and_rewritten(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMBP_CACHE_DIR", str(tmp_path))
    _net().compile(seed=0)
    key = declaration_key(_net(), "numba", "float64")
    path = tmp_path / "kernels" / "index" / f"{key}.json"
    path.write_text('{"module": 3')
    model = _net().compile(seed=0)
    assert "def sgd_epoch" in model.source("sgd_epoch")
    assert isinstance(json.loads(path.read_text())["sources"], dict)


def test_key_depends_on_the_declaration():
    k = declaration_key(_net(), "numba", "float64")
    assert k != declaration_key(_net(), "numba", "float32")
    assert k != declaration_key(sb.Network([3, 5, 2], activation=sb.sigmoid, cost=sb.quadratic), "numba", "float64")
    assert k != declaration_key(sb.Network([3, 6, 2], activation=sb.tanh, cost=sb.quadratic), "numba", "float64")
