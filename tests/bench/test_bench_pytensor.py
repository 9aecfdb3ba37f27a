"""Tests of the harness's PyTensor and torch.compile implementations of the dense epoch (symbp.bench.impls) and
of the cold-compile probes of the peers (symbp.bench.harness.peer_probe, symbp/bench/peer_probe.py): the
cross-check against the reference on small nets, the variants run only when named, the probe plumbing into the
results and the report, and the probes themselves in fresh processes on a tiny net."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from symbp.bench import Case, cross_check, init_params
from symbp.bench import report as bench_report
from symbp.bench.harness import peer_probe, resolve_impls, run_case
from symbp.bench.impls import (
    EXTRA_IMPLS,
    IMPLS,
    Impl,
    ImplUnavailable,
    NumpyBatched,
    PytensorC,
    PytensorCScan,
    PytensorNumba,
    PytensorNumbaPerBatch,
    TorchCompile,
)
from symbp.bench.peer_graphs import scipy_openblas_ldflags

Q64 = Case("q64", (6, 5, 4, 3), batch_size=4, lmbda=0.5)
X32 = Case("x32", (6, 5, 3), batch_size=4, dtype="float32", cost="cross-entropy", eta=0.5)
TINY = Case("tiny", (5, 4, 3), batch_size=4)


def _data(case, n=40, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, case.layers[0])).astype(case.dtype)
    Y = np.eye(case.layers[-1])[rng.integers(0, case.layers[-1], n)].astype(case.dtype)
    return X, Y


def _check(cls, case, n=40):
    """Set ``cls`` up on ``case`` (skip if unavailable here), pass the harness's cross-check, and agree with the
    reference over a whole epoch with a partial last mini-batch."""
    ok, why = cls.available()
    if not ok:
        pytest.skip(why)
    X, Y = _data(case, n)
    params = init_params(case.layers, case.dtype, seed=0)
    impl = cls()
    try:
        impl.setup(case.layers, case.cost, case.dtype, params, X, Y, case.batch_size, case.eta, case.lmbda)
    except ImplUnavailable as exc:
        pytest.skip(str(exc))
    report = cross_check([impl], case, X, Y, params)
    assert report["errors"][cls.name]["max_rel"] <= report["tolerance"]
    ref = NumpyBatched()
    ref.setup(case.layers, case.cost, case.dtype, params, X, Y, case.batch_size, case.eta, case.lmbda)
    order = np.random.default_rng(5).permutation(n - 1).astype(np.int64)
    impl.epoch(order)
    ref.epoch(order)
    for (W, b), (rW, rb) in zip(impl.params(), ref.params(), strict=True):
        assert W.dtype == np.dtype(case.dtype) and W.shape == rW.shape and b.shape == rb.shape
        assert np.linalg.norm(W - rW) <= report["tolerance"] * np.linalg.norm(rW)
        assert np.linalg.norm(b - rb) <= report["tolerance"] * np.linalg.norm(rb)
    return impl


# -------------------------------------------------------------------------------------------- PyTensor
@pytest.mark.parametrize("cls", [PytensorNumba, PytensorC], ids=lambda c: c.name)
def test_pytensor_passes_the_cross_check(cls):
    pytest.importorskip("pytensor")
    impl = _check(cls, Q64)
    assert impl.info["mode"] == cls.mode and impl.compile_seconds > 0
    assert impl.info["linker"] == ("NumbaLinker" if cls.mode == "NUMBA" else "VMLinker")


@pytest.mark.slow
@pytest.mark.parametrize("case", [Q64, X32], ids=lambda c: c.name)
@pytest.mark.parametrize("cls", [PytensorNumba, PytensorC, PytensorNumbaPerBatch, PytensorCScan],
                         ids=lambda c: c.name)
def test_every_pytensor_variant_passes_the_cross_check_in_both_dtypes_and_costs(cls, case):
    pytest.importorskip("pytensor")
    _check(cls, case)


def test_pytensor_c_mode_gets_a_blas():
    """PyTensor's C mode links a BLAS: PyTensor's own choice, else SciPy's OpenBLAS through renamed symbols."""
    pytest.importorskip("pytensor")
    impl = _check(PytensorC, TINY)
    blas = impl.info["blas"]
    assert blas["ldflags"], blas["source"]
    flags = scipy_openblas_ldflags()
    if flags is not None:
        assert "-Ddgemm_=scipy_dgemm_" in flags and "-l:libscipy_openblas" in flags


def test_pytensor_missing_is_reported_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "pytensor", None)  # import pytensor raises ImportError
    for cls in (PytensorNumba, PytensorC):
        ok, why = cls.available()
        assert not ok and "pytensor" in why


def test_slower_variants_run_only_when_named():
    default = [c.name for c in resolve_impls(None, "dense")]
    assert "pytensor-numba" in default and "pytensor-c" in default and "torch-compile" in default
    assert not set(EXTRA_IMPLS) & set(default) and not set(EXTRA_IMPLS) & set(IMPLS)
    named = resolve_impls("pytensor-numba-per-batch,pytensor-c-scan,numpy-batched", "dense")
    assert named == [PytensorNumbaPerBatch, PytensorCScan, NumpyBatched]
    assert resolve_impls("pytensor-c-scan", "conv") == []


# --------------------------------------------------------------------------------------- torch.compile
@pytest.mark.slow
@pytest.mark.parametrize("case", [Q64, X32], ids=lambda c: c.name)
def test_torch_compile_passes_the_cross_check(case):
    pytest.importorskip("torch")
    impl = _check(TorchCompile, case)
    assert impl.info["compile_trial"]["first_step_s"] > 0 and impl.compile_seconds > 0


# -------------------------------------------------------------------------------------------- probes
class _Probed(NumpyBatched):
    """The reference with a fake cold probe: the plumbing of probes into results and the report."""

    name = "probed"
    calls: list = []

    @classmethod
    def probe_key(cls, case):
        return ("fake", case.layers)

    @classmethod
    def cold_probe(cls, case, threads=1):
        cls.calls.append(case.name)
        return {"cold_seconds": 2.0, "warm_seconds": 0.5, "cold": {"import_s": 0.1}, "warm": {}, "what": "fake"}


class _ProbedTwin(_Probed):
    name = "probed-twin"  # same key: shares the probe


class JaxFake(_Probed):  # the report finds JAX's probe by the implementation name
    name = "jax-fake"

    @classmethod
    def probe_key(cls, case):
        return ("jax-fake", case.layers)

    @classmethod
    def cold_probe(cls, case, threads=1):
        return {"cold_seconds": 0.25, "warm_seconds": None, "cold": {"import_s": 0.3}, "warm": {}, "what": "jit"}


class _Failing(_Probed):
    name = "probe-fails"

    @classmethod
    def probe_key(cls, case):
        return ("fails",)

    @classmethod
    def cold_probe(cls, case, threads=1):
        raise RuntimeError("the child process died")


def test_cold_probes_are_run_once_per_key_and_reported_next_to_each_other(tmp_path):
    _Probed.calls.clear()
    case = Case("p", (6, 5, 3), batch_size=4, samples=24, repeats=1)
    X, Y = _data(case, 24)
    res = run_case(case, X, Y, [NumpyBatched, _Probed, _ProbedTwin, JaxFake, _Failing], cold=True,
                   memory=False, bound=False)
    assert _Probed.calls == ["p"]  # one probe for both implementations with its key
    assert res["impls"]["probed"]["cold_compile_s"] == 2.0 and res["impls"]["probed-twin"]["warm_load_s"] == 0.5
    assert "cold_compile_s" not in res["impls"]["numpy-batched"]
    assert res["impls"]["probe-fails"]["cold_compile_s"] is None  # a failed probe is recorded, not fatal
    assert "child process died" in res["impls"]["probe-fails"]["compile_probe"]["error"]
    rows = bench_report.probe_rows({"cases": [res]})
    by_impl = {r[1]: r for r in rows}
    assert set(by_impl) == {"probed, probed-twin", "jax-fake", "probe-fails"}
    assert by_impl["probed, probed-twin"][4:] == ["2.00", "0.50", "8.0", "2.0"]  # × JAX's cold 0.25 s
    assert by_impl["jax-fake"][5] == "–"
    assert Impl.probe_key(case) is None


def test_probed_implementations():
    assert IMPLS["jax-scan"].probe_key(TINY) is not None
    assert IMPLS["symbp-numba-epoch"].probe_key(TINY) == IMPLS["symbp-numba-per-batch"].probe_key(TINY)
    assert PytensorNumba.probe_key(TINY) is not None
    assert PytensorC.probe_key(TINY) is None and PytensorNumbaPerBatch.probe_key(TINY) is None


def test_jax_probe_in_fresh_processes():
    pytest.importorskip("jax")
    probe = peer_probe("jax", TINY)
    cold = probe["cold"]
    assert probe["cold_seconds"] > 0 and probe["warm_seconds"] > 0 and probe["warm"]["persistent_cache"]
    assert cold["import_s"] > 0.05 and cold["persistent_cache"] and cold["epoch_compile_s"] > 0
    assert cold["first_call_s"] > cold["second_call_s"]  # the first call traced and compiled


@pytest.mark.slow
def test_pytensor_probe_in_fresh_processes_cold_then_warm():
    pytest.importorskip("pytensor")
    probe = peer_probe("pytensor", TINY, mode="NUMBA", scan=True)
    cold, warm = probe["cold"], probe["warm"]
    assert cold["mode"] == "NUMBA" and cold["scan"] and cold["import_s"] > 0.05
    assert cold["base_compiledir"] == warm["base_compiledir"]
    assert probe["warm_seconds"] < probe["cold_seconds"]  # the second process found the first one's caches
