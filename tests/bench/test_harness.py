"""Tests of the benchmark harness (symbp.bench): FLOP counts, the baselines against each other and against
finite differences, the cross-check catching wrong implementations, interleaving, reports, symbp adapters."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from symbp.bench import IMPLS, Case, CrossCheckError, cross_check, epoch_flops, init_params, run_suite
from symbp.bench.harness import compile_probe, main, resolve_impls, run_case
from symbp.bench.impls import ImplUnavailable, JaxScan, NumpyBatched, NumpyPerSample, TorchEager

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _data(n, n_in, n_out, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, n_in)), rng.integers(0, n_out, n)


def _one_hot(labels, k):
    return np.eye(k)[labels]


def _setup(cls, layers, cost="quadratic", dtype="float64", n=23, m=4, eta=3.0, lmbda=0.0, seed=0):
    X, labels = _data(n, layers[0], layers[-1], seed)
    impl = cls()
    impl.setup(
        layers,
        cost,
        dtype,
        init_params(layers, dtype, seed=1),
        X.astype(dtype),
        _one_hot(labels, layers[-1]).astype(dtype),
        m,
        eta,
        lmbda,
    )
    return impl


# ----------------------------------------------------------------------------------------------- FLOPs
def test_epoch_flops_matches_hand_counts():
    assert epoch_flops([784, 30, 10], 50_000) == 4_794_000_000
    assert epoch_flops([784, 100, 10], 50_000) == 15_980_000_000
    # [3,4,2]: forward 2*(12+8)=40, weight gradients 40, input gradient of layer 2 only: 2*8=16 -> 96/sample
    assert epoch_flops([3, 4, 2], 1) == 96
    assert epoch_flops([3, 4, 2], 7) == 672
    assert epoch_flops([3, 2], 5) == 5 * 4 * 6  # one layer: no input gradient at all


# ------------------------------------------------------------------------------------------- baselines
@pytest.mark.parametrize("cost", ["quadratic", "cross-entropy"])
@pytest.mark.parametrize("lmbda", [0.0, 0.7])
def test_per_sample_and_batched_agree(cost, lmbda):
    layers = [5, 4, 6, 3]
    a = _setup(NumpyPerSample, layers, cost, lmbda=lmbda)
    b = _setup(NumpyBatched, layers, cost, lmbda=lmbda)
    order = np.random.default_rng(3).permutation(23).astype(np.int64)
    a.epoch(order)
    b.epoch(order)
    for (Wa, ba), (Wb, bb) in zip(a.params(), b.params(), strict=True):
        np.testing.assert_allclose(Wa, Wb, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(ba, bb, rtol=1e-12, atol=1e-13)
        assert ba.shape == bb.shape and Wa.shape == Wb.shape


def test_final_partial_batch_is_dropped():
    layers = [5, 4, 3]
    order = np.random.default_rng(4).permutation(23).astype(np.int64)  # 23 = 5 batches of 4 + 3 dropped
    full, prefix = _setup(NumpyBatched, layers), _setup(NumpyBatched, layers)
    full.epoch(order)
    prefix.epoch(order[:20])
    for (W1, b1), (W2, b2) in zip(full.params(), prefix.params(), strict=True):
        assert np.array_equal(W1, W2) and np.array_equal(b1, b2)


def _mean_cost(params, X, Y, cost):
    a = X
    for W, b in params:
        a = 1 / (1 + np.exp(-(a @ W.T + b)))
    if cost == "quadratic":
        return 0.5 * np.sum((a - Y) ** 2) / len(X)
    return -np.sum(Y * np.log(a) + (1 - Y) * np.log(1 - a)) / len(X)


@pytest.mark.parametrize("cost", ["quadratic", "cross-entropy"])
def test_batched_step_is_minus_eta_times_finite_difference_gradient(cost):
    """An oracle independent of both baselines: one full-batch step with eta=1 moves W by -dC/dW."""
    layers, n = [4, 3, 2], 6
    impl = _setup(NumpyBatched, layers, cost, n=n, m=n, eta=1.0)
    p0 = impl.params()
    impl.epoch(np.arange(n, dtype=np.int64))
    X, Y = impl.X, impl.Y
    h = 1e-6
    for l, ((W0, b0), (W1, b1)) in enumerate(zip(p0, impl.params(), strict=True)):
        for which, (A0, A1) in enumerate(((W0, W1), (b0, b1))):
            fd = np.zeros_like(A0)
            for idx in np.ndindex(A0.shape):
                vals = []
                for s in (h, -h):
                    p = [(W.copy(), b.copy()) for W, b in p0]
                    p[l][which][idx] += s
                    vals.append(_mean_cost(p, X, Y, cost))
                fd[idx] = (vals[0] - vals[1]) / (2 * h)
            np.testing.assert_allclose(A0 - A1, fd, rtol=1e-6, atol=1e-9)


def test_float32_baselines_pass_the_float32_tolerance():
    case = Case("f32", (6, 5, 3), batch_size=4, dtype="float32", cost="cross-entropy", lmbda=0.3)
    X, labels = _data(40, 6, 3)
    X, Y = X.astype("float32"), _one_hot(labels, 3).astype("float32")
    params = init_params(case.layers, "float32", seed=0)
    impls = []
    for cls in (NumpyBatched, NumpyPerSample):
        impl = cls()
        impl.setup(case.layers, case.cost, case.dtype, params, X, Y, case.batch_size, case.eta, case.lmbda)
        impls.append(impl)
    report = cross_check(impls, case, X, Y, params)
    for name, err in report["errors"].items():
        assert 0 < err["max_rel"] <= 1e-4, name  # not bitwise float64: the check really compares float32 results
    assert impls[0].params()[0][0].dtype == np.float32


# ----------------------------------------------------------------------------------------- cross-check
class EtaOff(NumpyBatched):
    name = "numpy-batched-eta-1.01"

    def _setup(self, params, X, Y):
        super()._setup(params, X, Y)
        self.eta *= 1.01


class BiasSignFlipped(NumpyBatched):
    name = "numpy-batched-bias-sign"

    def update(self, Xb, Yb):
        old = [b.copy() for b in self.bs]
        super().update(Xb, Yb)
        for b, b0 in zip(self.bs, old, strict=True):
            b[...] = 2 * b0 - b  # b + (eta/m) * nabla_b instead of b - ...


@pytest.mark.parametrize("wrong, param", [(EtaOff, "W"), (BiasSignFlipped, "b")])
def test_cross_check_names_the_wrong_implementation(wrong, param):
    case = Case("small", (6, 5, 3), batch_size=4)
    X, labels = _data(30, 6, 3)
    Y = _one_hot(labels, 3)
    params = init_params(case.layers, seed=0)
    impls = []
    for cls in (NumpyPerSample, wrong):
        impl = cls()
        impl.setup(case.layers, case.cost, case.dtype, params, X, Y, case.batch_size, case.eta, case.lmbda)
        impls.append(impl)
    with pytest.raises(CrossCheckError) as info:
        cross_check(impls, case, X, Y, params)
    assert info.value.impl == wrong.name and wrong.name in str(info.value)
    assert info.value.param.startswith(param) and info.value.param in str(info.value)
    assert info.value.error > 1e-10


def test_run_suite_does_not_time_a_wrong_peer_and_stops_on_a_wrong_symbp(tmp_path):
    """A peer that fails the cross-check is reported unavailable and never timed, the others run; symbp
    failing it stops the run before any timing."""
    calls = []

    class Counting(EtaOff):
        name = "counting-eta-off"

        def epoch(self, order):
            calls.append(len(order))
            super().epoch(order)

    class SymbpCounting(Counting):
        name = "symbp-counting-eta-off"

    case = Case("small", (6, 5, 3), batch_size=4, samples=40, repeats=2)
    res = run_suite([case], tmp_path / "peer", impls=[NumpyBatched, Counting], data=_data(40, 6, 3),
                    progress=False, peak_size=64, memory=False)
    entry = res["cases"][0]["impls"]["counting-eta-off"]
    assert entry["status"] == "unavailable" and "failed the cross-check" in entry["reason"]
    assert res["cases"][0]["impls"]["numpy-batched"]["status"] == "ok"
    assert calls == [12]  # only the 3 check mini-batches of 4 ran
    assert "counting-eta-off unavailable: failed the cross-check" in (tmp_path / "peer" / "results.md").read_text()
    calls.clear()
    with pytest.raises(CrossCheckError, match="symbp-counting-eta-off"):
        run_suite(
            [case],
            tmp_path / "out",
            impls=[NumpyBatched, SymbpCounting],
            data=_data(40, 6, 3),
            progress=False,
            peak_size=64,
        )
    assert calls == [12]
    assert not (tmp_path / "out").exists()


def test_repeats_are_interleaved_round_robin():
    log = []

    def recording(base):
        class Recording(base):
            name = base.name + "-rec"

            def epoch(self, order):
                log.append(self.name)
                super().epoch(order)

        return Recording

    a, b = recording(NumpyBatched), recording(NumpyPerSample)
    case = Case("rr", (6, 5, 3), batch_size=4, samples=40, repeats=3)
    X, labels = _data(40, 6, 3)
    res = run_case(case, X, _one_hot(labels, 3), [a, b], memory=False)
    # 2 cross-check epochs, 2 warm-up epochs, then 3 rounds, each round starting one implementation later
    assert log[4:] == [a.name, b.name, b.name, a.name, a.name, b.name]
    assert len(res["impls"][a.name]["times"]) == 3
    assert res["impls"][a.name]["ratios"][a.name] == pytest.approx(1.0)


def test_unknown_implementation_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown implementation 'nope'"):
        resolve_impls("numpy-batched,nope")


# ------------------------------------------------------------------------------------------ end to end
def test_quick_suite_end_to_end_on_synthetic_data(tmp_path):
    X, labels = _data(2000, 784, 10)
    res = run_suite(
        "quick",
        tmp_path,
        impls="numpy-per-sample,numpy-batched",
        data=(X, labels),
        progress=False,
        peak_size=256,
    )
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["suite"] == "quick" and data["settings"]["quick"] and not data["settings"]["cold_compile"]
    (case,) = data["cases"]
    assert case["flops_per_epoch"] == epoch_flops([784, 30, 10], 2000)
    for name in ("numpy-per-sample", "numpy-batched"):
        r = case["impls"][name]
        assert r["status"] == "ok" and len(r["times"]) == 2 and r["min_s"] <= r["median_s"] <= r["max_s"]
        assert r["gflops"] > 0 and r["peak_fraction"] > 0
        assert r["memory"]["tracemalloc_peak_bytes"] > 0
    assert case["impls"]["numpy-per-sample"]["ratios"]["numpy-batched"] > 0
    bound = case["products_bound"]
    assert len(bound["times"]) == 2 and bound["gflops"] > 0 and bound["peak_fraction"] > 0
    peak = data["peak"]["at_threads"]["float64"]["gflops"]
    assert case["peak_bound_s"] == pytest.approx(case["flops_per_epoch"] / (peak * 1e9))
    # no time beats the FLOPs at the peak by much (the peak is itself a median of a few runs)
    assert bound["median_s"] > 0.5 * case["peak_bound_s"]
    assert data["peak"]["single_thread"]["float64"]["gflops"] > 0
    assert data["environment"]["versions"]["numpy"] == np.__version__
    assert data["environment"]["blas"]
    md = (tmp_path / "results.md").read_text()
    assert "| numpy-batched |" in md and "median s/epoch" in md and "- BLAS bound: " in md and "Peak bound: " in md
    png = tmp_path / "speedup.png"
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert res["files"]["json"] == str(tmp_path / "results.json")


def test_scaling_plots_when_the_suite_has_those_cases(tmp_path):
    cases = [
        Case("h8", (20, 8, 3), batch_size=5, repeats=1),
        Case("h16", (20, 16, 3), batch_size=5, repeats=1),
        Case("h8-m10", (20, 8, 3), batch_size=10, repeats=1),
        Case("h8-f32", (20, 8, 3), batch_size=5, repeats=1, dtype="float32"),
    ]
    res = run_suite(
        cases,
        tmp_path,
        impls=["numpy-batched"],
        data=_data(100, 20, 3),
        progress=False,
        peak_size=64,
        memory=False,
    )
    for name in ("speedup.png", "scaling_hidden.png", "scaling_batch.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC, name
    assert set(res["peak"]["at_threads"]) == {"float64", "float32"}


def test_command_line_list_and_errors(capsys, tmp_path):
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "suite quick" in out and "suite full" in out and "impl numpy-batched: available" in out
    assert main(["--impl", "nope", "--layers", "4,3,2", "--out", str(tmp_path)]) == 2
    assert "unknown implementation" in capsys.readouterr().err


def _mnist_dir():
    for d in (os.environ.get("SYMBP_DATA_DIR"), Path(__file__).resolve().parents[3] / "shared" / "data"):
        if d and (Path(d) / "mnist" / "train-images-idx3-ubyte.gz").is_file():
            return str(d)
    return None


@pytest.mark.skipif(_mnist_dir() is None, reason="MNIST files not found (SYMBP_DATA_DIR or ../shared/data)")
def test_command_line_custom_case_on_mnist(tmp_path):
    rc = main(
        [
            "--layers",
            "784,10",
            "--samples",
            "200",
            "--repeats",
            "1",
            "--impl",
            "numpy-batched",
            "--data-dir",
            _mnist_dir(),
            "--out",
            str(tmp_path),
            "--no-memory",
            "--no-cold",
            "--quick",
        ]
    )
    assert rc == 0
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["cases"][0]["case"]["layers"] == [784, 10] and data["cases"][0]["n_samples"] == 200


# -------------------------------------------------------------------------------------- optional impls
def _check_impl_or_skip(cls, case, n=40):
    ok, why = cls.available()
    if not ok:
        pytest.skip(why)
    X, labels = _data(n, case.layers[0], case.layers[-1])
    X, Y = X.astype(case.dtype), _one_hot(labels, case.layers[-1]).astype(case.dtype)
    params = init_params(case.layers, case.dtype, seed=0)
    impl = cls()
    try:
        impl.setup(case.layers, case.cost, case.dtype, params, X, Y, case.batch_size, case.eta, case.lmbda)
    except ImplUnavailable as exc:
        pytest.skip(str(exc))
    report = cross_check([impl], case, X, Y, params)
    assert report["errors"][cls.name]["max_rel"] <= report["tolerance"]
    # and a whole epoch with a partial final batch agrees with the reference too
    ref = NumpyBatched()
    ref.setup(case.layers, case.cost, case.dtype, params, X, Y, case.batch_size, case.eta, case.lmbda)
    order = np.random.default_rng(5).permutation(n - 1).astype(np.int64)
    impl.epoch(order)
    ref.epoch(order)
    rtol = 1e-10 if case.dtype == "float64" else 1e-4
    for (W, b), (rW, rb) in zip(impl.params(), ref.params(), strict=True):
        assert np.linalg.norm(W - rW) <= rtol * np.linalg.norm(rW)
        assert np.linalg.norm(b - rb) <= rtol * np.linalg.norm(rb)
    return impl


CASES = [
    Case("q64", (6, 5, 4, 3), batch_size=4, lmbda=0.5),
    Case("x32", (6, 5, 3), batch_size=4, dtype="float32", cost="cross-entropy", eta=0.5),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
@pytest.mark.parametrize("cls", [TorchEager, JaxScan], ids=lambda c: c.name)
def test_torch_and_jax_agree_with_the_reference(cls, case):
    _check_impl_or_skip(cls, case)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
@pytest.mark.parametrize("name", ["symbp-numba-epoch", "symbp-numba-per-batch", "symbp-numpy"])
def test_symbp_adapters_agree_with_the_reference(name, case):
    impl = _check_impl_or_skip(IMPLS[name], case)
    assert (impl.compile_seconds is None) != (impl.load_seconds is None)  # one of them, by cache hit
    if impl.backend == "numba":
        cache = impl.info["cache_info"]
        assert cache is not None and cache["hit"] in (True, False) and "path" in cache["kernels"]["sgd_epoch"]


@pytest.mark.slow
def test_symbp_cold_compile_then_warm_load_in_fresh_processes():
    _check_impl_or_skip(IMPLS["symbp-numba-epoch"], CASES[0])  # skips until symbp has run_epoch
    import symbp as sb

    case = Case("probe", (6, 5, 3), batch_size=4)
    probe = compile_probe("numba", IMPLS["symbp-numba-epoch"].case_network(case, sb).config(), case)
    assert probe["cold"]["cache_info"]["hit"] is False
    assert probe["warm"]["cache_info"]["hit"] is True
    assert probe["cold_seconds"] > 0 and probe["warm_seconds"] > 0
    assert probe["cold"]["import_s"] > 0.01  # symbp itself was imported inside the timed region


@pytest.mark.parametrize("layers", [[784, 30, 10], [20, 7, 5, 3]])
def test_products_bound_runs_exactly_the_epochs_gemm_calls(layers):
    """The bound's kernel makes the sgd_epoch kernel's products: same shapes, so its FLOPs are epoch_flops."""
    from symbp.bench import bound

    res = bound.products_bound(layers, 10, "float64", 7, repeats=2)
    assert len(res["times"]) == 2 and 0 < res["min_s"] <= res["median_s"]
    # run the kernel once more by hand on known operands: each product lands where the epoch's would
    rng = np.random.default_rng(1)
    acts = tuple(rng.random((10, n)) for n in layers)
    deltas = tuple(rng.standard_normal((10, n)) for n in layers[1:])
    weights = tuple(rng.standard_normal((o, i)) for i, o in zip(layers[:-1], layers[1:]))
    w0 = [w.copy() for w in weights]
    d_last = deltas[-1].copy()
    bound._PRODUCTS(acts, deltas, weights, 1, 0.5)
    for l in range(len(weights)):
        assert np.allclose(acts[l + 1], acts[l] @ w0[l].T)
    assert np.allclose(deltas[-2], d_last @ w0[-1])
    assert np.allclose(weights[-1], w0[-1] - 0.5 * d_last.T @ acts[-2])
