"""Tests of the harness's conv cases (symbp.bench.conv): exact FLOP counts, the NumPy im2col baseline against
finite differences and PyTorch, the cross-check, the GEMM bound's products, and the quick conv suite end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from symbp.bench import Case, CrossCheckError, cross_check, run_suite
from symbp.bench.bound import conv_gemm_bound
from symbp.bench.conv import (
    CONV_IMPLS,
    COST,
    NETS,
    ConvNet,
    JaxConvScan,
    NumpyIm2col,
    TorchConvCompile,
    TorchConvEager,
    conv_epoch_flops,
    conv_flops,
    init_conv_params,
)
from symbp.bench.harness import case_flops, main, resolve_impls
from symbp.bench.impls import ImplUnavailable

# odd sizes: a pool that crops a row and a column, two channels in, ReLU; and a sigmoid net with two convs
SMALL = ConvNet("small", (2, 9, 11), (("conv", 3, 3, 2), ("pool", 2, 3), ("fc", 5), ("softmax", 4)), "relu")
SMALL2 = ConvNet("small2", (1, 12, 12), (("conv", 3, 3, 3), ("pool", 2, 2), ("conv", 4, 2, 2), ("pool", 2, 2),
                                         ("fc", 6), ("softmax", 3)))
# PyTorch's options: a strided, padded conv; an average pool that crops; a padded conv after it
SMALL3 = ConvNet("small3", (2, 9, 10), (("conv", 3, 3, 3, 2, 1), ("avgpool", 2, 2), ("conv", 4, 2, 2, 1, 1),
                                        ("fc", 5), ("softmax", 4)), "relu")


def _data(net, n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, net.n_in)), np.eye(net.n_out)[rng.integers(0, net.n_out, n)]


def _setup(cls, net, dtype="float64", n=24, m=4, eta=0.5, lmbda=0.0, seed=0):
    X, Y = _data(net, n, seed)
    impl = cls()
    impl.setup(net, COST, dtype, init_conv_params(net, dtype, seed=1), X.astype(dtype), Y.astype(dtype), m, eta,
               lmbda)
    return impl


# ----------------------------------------------------------------------------------------------- FLOPs
def test_conv_flops_match_hand_counts():
    f = conv_flops(NETS["dbl_conv"])
    # conv1 20·1·25·576 = 288,000 MACs (no input δ); conv2 40·20·25·64 = 1,280,000; fc 64,000; softmax 1,000
    assert [l["macs"] for l in f["per_layer"]] == [288_000, 1_280_000, 64_000, 1_000]
    assert f["forward"] == 2 * (288_000 + 1_280_000 + 64_000 + 1_000)
    assert f["weights"] == f["forward"]
    assert f["inputs"] == 2 * (1_280_000 + 64_000 + 1_000)
    assert f["total"] == 9_222_000
    assert conv_epoch_flops("dbl_conv", 50_000) == 461_100_000_000
    # basic_conv: conv 288,000 MACs, fc 2880·100, softmax 1000
    assert conv_flops(NETS["basic_conv"])["total"] == 4 * 288_000 + 6 * 288_000 + 6 * 1_000
    assert NETS["dbl_conv"].sizes == (784, 11520, 2880, 2560, 640, 100, 10)
    assert case_flops(Case("c", net="dbl_conv"), 7) == 7 * 9_222_000


def test_conv_case_defaults_and_errors():
    c = Case("c", net="dbl_conv", dtype="float32")
    assert c.kind == "conv" and c.cost == COST and c.eta == 0.1 and c.layers[0] == 784 and c.layers[-1] == 10
    assert c.to_dict()["net"]["name"] == "dbl_conv"
    d = Case("d", (784, 30, 10))
    assert d.kind == "dense" and d.cost == "quadratic" and d.eta == 3.0 and d.to_dict()["net"] is None
    with pytest.raises(ValueError, match="unknown conv net"):
        Case("x", net="nope")
    with pytest.raises(ValueError, match="log-likelihood"):
        Case("x", net="dbl_conv", cost="quadratic")
    with pytest.raises(ValueError, match="larger than"):
        ConvNet("bad", (1, 4, 4), (("conv", 2, 5, 5), ("softmax", 2)))


def test_impls_are_resolved_per_kind():
    assert [c.name for c in resolve_impls("numpy-im2col,numpy-batched", "conv")] == ["numpy-im2col"]
    assert [c.name for c in resolve_impls("numpy-im2col,numpy-batched", "dense")] == ["numpy-batched"]
    assert resolve_impls("torch-eager", "conv") == [TorchConvEager]
    assert set(CONV_IMPLS) >= {"numpy-im2col", "torch-eager", "torch-compile", "jax-scan", "symbp-numba-epoch"}


# ------------------------------------------------------------------------------------------ the baseline
def _mean_cost(impl, params, X, Y):
    """The log-likelihood by a direct loop over output positions, independent of the im2col baseline."""
    net = impl.net
    act = (lambda z: 1 / (1 + np.exp(-z))) if net.activation == "sigmoid" else (lambda z: np.maximum(z, 0))
    total, it = 0.0, iter(params)
    C, H, W = net.input
    for x, y in zip(X, Y, strict=True):
        a = x.reshape(C, H, W)
        for layer in net.layers:
            if layer[0] == "conv":
                Wt, b = next(it)
                F, _, kh, kw = Wt.shape
                s, pad = layer[4], layer[5]
                a = np.pad(a, ((0, 0), (pad, pad), (pad, pad)))
                Ho, Wo = (a.shape[1] - kh) // s + 1, (a.shape[2] - kw) // s + 1
                z = np.array([[[np.sum(Wt[f] * a[:, s * i:s * i + kh, s * j:s * j + kw]) + b[f] for j in range(Wo)]
                               for i in range(Ho)] for f in range(F)])
                a = act(z)
            elif layer[0] in ("pool", "avgpool"):
                ph, pw = layer[1:]
                Hp, Wp = a.shape[1] // ph, a.shape[2] // pw
                win = a[:, : Hp * ph, : Wp * pw].reshape(a.shape[0], Hp, ph, Wp, pw)
                a = win.max(axis=(2, 4)) if layer[0] == "pool" else win.mean(axis=(2, 4))
            else:
                Wt, b = next(it)
                z = Wt @ a.ravel() + b
                if layer[0] == "softmax":
                    total -= z[y.argmax()] - np.log(np.sum(np.exp(z)))
                else:
                    a = act(z)
        it = iter(params)
    return total / len(X)


@pytest.mark.parametrize("net", [SMALL, SMALL2, SMALL3], ids=lambda n: n.name)
def test_im2col_step_is_minus_eta_times_finite_difference_gradient(net):
    """One full-batch step with η = 1 moves every parameter by −∂C/∂θ (central differences, float64)."""
    n = 5
    impl = _setup(NumpyIm2col, net, n=n, m=n, eta=1.0)
    p0 = impl.params()
    X, Y = _data(net, n)
    impl.epoch(np.arange(n, dtype=np.int64))
    h = 1e-6
    rng = np.random.default_rng(2)
    for l, ((W0, b0), (W1, b1)) in enumerate(zip(p0, impl.params(), strict=True)):
        for which, (A0, A1) in enumerate(((W0, W1), (b0, b1))):
            idxs = list(np.ndindex(A0.shape))
            for k in rng.choice(len(idxs), size=min(12, len(idxs)), replace=False):
                idx = idxs[k]
                vals = []
                for s in (h, -h):
                    p = [(W.copy(), b.copy()) for W, b in p0]
                    p[l][which][idx] += s
                    vals.append(_mean_cost(impl, p, X, Y))
                fd = (vals[0] - vals[1]) / (2 * h)
                assert A0[idx] - A1[idx] == pytest.approx(fd, rel=1e-5, abs=1e-8), (l, which, idx)


def test_pool_ties_go_to_the_first_maximum():
    """A 2x2 pool over a conv output that ties everywhere (z = x[i,j] − x[i,j+1] = 0) while the patches
    differ (row 0 of the image is 1s, row 1 is 2s): the gradient must go to the window's first element in
    row-major order, as symbp and PyTorch route it, so ∂C/∂W is δ·σ′(0)·(1, 1), not δ·σ′(0)·(2, 2)."""
    net = ConvNet("tie", (1, 2, 3), (("conv", 1, 1, 2), ("pool", 2, 2), ("softmax", 2)))
    X, Y = np.array([[1.0, 1, 1, 2, 2, 2]]), np.array([[1.0, 0.0]])
    W0 = np.array([[[[1.0, -1.0]]]])
    params = [(W0, np.zeros(1)), (np.array([[1.0], [-1.0]]), np.zeros(2))]
    impl = NumpyIm2col()
    impl.setup(net, COST, "float64", params, X, Y, 1, 1.0)
    impl.epoch(np.array([0]))
    (W, _), _ = impl.params()
    s1 = np.exp(-0.5) / (np.exp(0.5) + np.exp(-0.5))  # softmax of (σ(0), −σ(0)) = (0.5, −0.5), class 1
    # δ at the pool = Wfcᵀ(s − y) = −2·s1; σ′(0) = 1/4; the first patch is (1, 1): W ← W − (−2·s1/4)·(1, 1)
    np.testing.assert_allclose(W - W0, np.full((1, 1, 1, 2), 0.5 * s1), rtol=1e-12)


@pytest.mark.parametrize("peer, nets", [
    (TorchConvEager, (SMALL, SMALL2, SMALL3, NETS["dbl_conv"], NETS["modern"])),
    (JaxConvScan, (SMALL, SMALL3, NETS["modern"])),
], ids=["torch-eager", "jax-scan"])
def test_im2col_agrees_with_the_peers_in_float64(peer, nets):
    ok, why = peer.available()
    if not ok:
        pytest.skip(why)
    for net in nets:
        a = _setup(NumpyIm2col, net, lmbda=0.3)
        b = _setup(peer, net, lmbda=0.3)
        order = np.random.default_rng(3).permutation(24).astype(np.int64)[:23]  # a partial last batch, dropped
        a.epoch(order)
        b.epoch(order)
        for (Wa, ba), (Wb, bb) in zip(a.params(), b.params(), strict=True):
            np.testing.assert_allclose(Wa, Wb, rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(ba, bb, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("net", [SMALL, SMALL2, SMALL3, NETS["modern"]], ids=lambda n: n.name)
def test_symbp_numba_agrees_with_the_im2col_baseline_in_float64(net):
    a = _setup(NumpyIm2col, net, lmbda=0.3)
    b = _setup(CONV_IMPLS["symbp-numba-epoch"], net, lmbda=0.3)
    order = np.random.default_rng(4).permutation(24).astype(np.int64)[:22]
    a.epoch(order)
    b.epoch(order)
    for (Wa, ba), (Wb, bb) in zip(a.params(), b.params(), strict=True):
        np.testing.assert_allclose(Wb, Wa, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(bb, ba, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------------------- cross-check
class EtaOff(NumpyIm2col):
    """A step 5% too long: outside the float32 tolerance after three updates."""

    name = "numpy-im2col-eta-off"

    def _setup(self, params, X, Y):
        super()._setup(params, X, Y)
        self.eta *= 1.05


def test_conv_cross_check_passes_and_names_a_wrong_implementation():
    case = Case("s", batch_size=4, dtype="float32", net=SMALL2)
    X, Y = _data(SMALL2, 30)
    X, Y = X.astype("float32"), Y.astype("float32")
    params = init_conv_params(SMALL2, "float32", seed=0)
    good = NumpyIm2col()
    good.setup(SMALL2, COST, "float32", params, X, Y, 4, case.eta)
    report = cross_check([good], case, X, Y, params)
    assert report["reference"].startswith("numpy-im2col") and 0 < report["errors"]["numpy-im2col"]["max_rel"] <= 1e-4
    bad = EtaOff()
    bad.setup(SMALL2, COST, "float32", params, X, Y, 4, case.eta)
    with pytest.raises(CrossCheckError, match="numpy-im2col-eta-off"):
        cross_check([bad], case, X, Y, params)


def test_a_peer_failing_the_cross_check_is_not_timed_symbp_failing_it_stops_the_case():
    """A peer that fails the cross-check is reported unavailable with its error and the others are checked
    again (on one machine inductor gave zero conv gradients: the rest of the suite still ran); symbp failing it
    raises, and nothing is timed."""
    from symbp.bench import harness

    class SymbpEtaOff(EtaOff):
        name = "symbp-eta-off"

    case = Case("s", batch_size=4, dtype="float32", net=SMALL2)
    X, Y = _data(SMALL2, 30)
    X, Y = X.astype("float32"), Y.astype("float32")
    params = init_conv_params(SMALL2, "float32", seed=0)
    good, bad, ours = NumpyIm2col(), EtaOff(), SymbpEtaOff()
    for impl in (good, bad, ours):
        impl.setup(SMALL2, COST, "float32", params, X, Y, 4, case.eta)
    entries = {impl.name: {"status": "ok"} for impl in (good, bad, ours)}
    impls = [bad, good]
    report = harness._checked(impls, case, X, Y, params, entries, lambda *args: None)
    assert impls == [good] and set(report["errors"]) == {"numpy-im2col"}
    assert entries[bad.name]["status"] == "unavailable"
    assert "failed the cross-check: parameter" in entries[bad.name]["reason"]
    with pytest.raises(CrossCheckError, match="symbp-eta-off"):
        harness._checked([good, ours], case, X, Y, params, entries, lambda *args: None)


# --------------------------------------------------------------------------------------------- the bound
def test_conv_gemm_bound_runs_the_epochs_products():
    """The bound's gemm kernel makes the products symbp's conv kernel makes, landing where the epoch's would:
    per sample for one layer, for groups of two samples side by side (3 samples: groups of 2 and 1) for the
    other, as ``samples_per_product`` decides."""
    from symbp.bench import bound
    from symbp.compile.passes import samples_per_product

    res = conv_gemm_bound(SMALL2, 3, "float64", 2, repeats=1)
    assert res["median_s"] > 0 and res["samples_per_product"] == [1, 1]
    dbl = conv_gemm_bound("dbl_conv", 10, "float32", 1, repeats=1)
    assert dbl["samples_per_product"] == [1, samples_per_product(40, 64, 500)] and dbl["samples_per_product"][1] > 1
    gemms = bound._CONV
    rng = np.random.default_rng(0)
    m, F, Ck, P = 3, 4, 12, 9
    W = tuple(rng.standard_normal((F, Ck)) for _ in range(2))
    cols = (rng.standard_normal((m, Ck, P)), np.zeros((0, Ck, P)))
    cols2 = (np.zeros((Ck, 0)), rng.standard_normal((Ck, m * P)))
    z = tuple(np.zeros((m, F, P)) for _ in range(2))
    zg = (np.zeros((F, P)), np.zeros((F, 2 * P)))
    dcol = (np.zeros((Ck, P)), np.zeros((Ck, 2 * P)))
    S = tuple(np.zeros((Ck, F)) for _ in range(2))
    fa = (rng.standard_normal((m, 5)), np.zeros((m, 3)))
    fd = (np.zeros((m, 5)), rng.standard_normal((m, 3)))
    fW = (rng.standard_normal((3, 5)),)
    W0, fW0, d_top = [w.copy() for w in W], fW[0].copy(), fd[1].copy()
    gemms(W, cols, cols2, z, zg, dcol, S, np.array([True, True]), np.array([1, 2]), fW, fa, fd, 1, 0.5)
    # per sample: z[r] = W·col[r] (δ read back from z), S = Σ_r col[r]·δ[r]ᵀ, dcol the last sample's Wᵀ·δ
    for r in range(m):
        assert np.allclose(z[0][r], W0[0] @ cols[0][r])
    assert np.allclose(S[0], sum(cols[0][r] @ z[0][r].T for r in range(m)))
    assert np.allclose(dcol[0], W0[0].T @ z[0][m - 1])
    # grouped: the group of samples 0–1, then the group of sample 2 into the scratch's first block
    C2 = cols2[1]
    assert np.allclose(zg[1][:, :P], W0[1] @ C2[:, 2 * P:]) and np.allclose(zg[1][:, P:], W0[1] @ C2[:, P:2 * P])
    assert np.allclose(S[1], C2[:, :2 * P] @ zg[1].T + C2[:, 2 * P:] @ zg[1][:, :P].T)
    assert np.allclose(dcol[1][:, :P], W0[1].T @ zg[1][:, :P])
    assert all(np.array_equal(w, w0) for w, w0 in zip(W, W0))  # W ← W − α·Sᵀ is not a product: not timed
    assert np.allclose(fa[1], fa[0] @ fW0.T)
    assert np.allclose(fd[0], d_top @ fW0)
    assert np.allclose(fW[0], fW0 - 0.5 * d_top.T @ fa[0])


# ------------------------------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_conv_quick_suite_end_to_end(tmp_path):
    """The quick conv suite on synthetic MNIST-shaped data: every available implementation (torch.compile
    apart: its compile takes minutes) passes the cross-check; results, Markdown and plots are written."""
    rng = np.random.default_rng(0)
    X, labels = rng.random((300, 784)), rng.integers(0, 10, 300)
    impls = "numpy-im2col,torch-eager,symbp-numba-epoch"
    res = run_suite("conv-quick", tmp_path, impls=impls, data=(X, labels), progress=False, peak_size=256,
                    memory=False)
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["suite"] == "conv-quick" and data["settings"]["quick"]
    assert [(c["case"]["net"]["name"], c["case"]["batch_size"]) for c in data["cases"]] == [
        ("dbl_conv", 10), ("dbl_conv", 100), ("modern", 10)]
    for case in data["cases"]:
        flops = conv_flops(NETS[case["case"]["net"]["name"]])["total"]
        assert case["flops_per_epoch"] == flops * case["samples_per_epoch"]
        assert case["s_per_50k_factor"] == pytest.approx(50_000 / case["samples_per_epoch"])
        ran = {k for k, v in case["impls"].items() if v["status"] == "ok"}
        assert {"numpy-im2col", "symbp-numba-epoch"} <= ran and set(case["cross_check"]["errors"]) == ran
        for name in ran:
            r = case["impls"][name]
            assert r["median_s"] > 0 and r["gflops"] > 0 and r["peak_fraction"] > 0
            assert r["s_per_50k"] == pytest.approx(r["median_s"] * case["s_per_50k_factor"])
            assert case["cross_check"]["errors"][name]["max_rel"] <= 1e-4
        if "torch-eager" in ran:
            assert case["impls"]["torch-eager"]["info"]["threads"] == 1
            assert case["impls"]["numpy-im2col"]["ratios"]["torch-eager"] > 0
        bound = case["products_bound"]
        assert bound["gflops"] > 0
    md = (tmp_path / "results.md").read_text()
    assert "× torch-eager" in md and "s per 50k images" in md and "GEMM bound" in md and "| numpy-im2col |" in md
    assert res["files"]["json"] == str(tmp_path / "results.json")


def test_command_line_conv_errors(tmp_path, capsys):
    assert main(["--net", "dbl_conv", "--cost", "quadratic", "--out", str(tmp_path)]) == 2
    assert "log-likelihood" in capsys.readouterr().err
    assert main(["--net", "nope", "--out", str(tmp_path)]) == 2
    assert "unknown conv net" in capsys.readouterr().err
    assert main(["--net", "dbl_conv", "--layers", "784,10", "--out", str(tmp_path)]) == 2


@pytest.mark.slow
def test_torch_compile_agrees_with_the_reference():
    ok, why = TorchConvCompile.available()
    if not ok:
        pytest.skip(why)
    case = Case("tc", batch_size=4, dtype="float32", net=SMALL2)
    X, Y = _data(SMALL2, 20)
    X, Y = X.astype("float32"), Y.astype("float32")
    params = init_conv_params(SMALL2, "float32", seed=0)
    impl = TorchConvCompile()
    try:
        impl.setup(SMALL2, COST, "float32", params, X, Y, 4, case.eta)
    except ImplUnavailable as exc:
        pytest.skip(str(exc))
    report = cross_check([impl], case, X, Y, params)
    assert report["errors"]["torch-compile"]["max_rel"] <= 1e-4
