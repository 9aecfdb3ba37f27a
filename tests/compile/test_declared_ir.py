"""Declared maps in the kernel IR, compiling nothing: structured index expressions, the steps each map becomes
(the fast-path passes recognise dense products and biases whatever layer they come from), the plan's report of
generated loops; and a declared dense layer training bit for bit like the built-in one."""

import numpy as np
import pytest

import symbp as sb
from symbp.compile.lower import lower
from symbp.compile.program import (
    ColSum,
    Correlation,
    Gemm,
    IndexGather,
    IndexReduce,
    IndexScatterMax,
    Map,
    MapSums,
)
from symbp.derive.adjoint import Guard
from symbp.layers.index_map import Affine

DENSE = "z[j] = sum(W[j,k]*x[k] for k in range(6)) + b[j]"


def _steps(prog):
    out = []

    def visit(steps):
        for s in steps:
            inner = getattr(s, "steps", None) or getattr(s, "body", None)
            if isinstance(inner, list):
                visit(inner)
            else:
                out.append(s)
    visit(prog.steps)
    return out


def _kinds(prog):
    return [type(s).__name__ for s in _steps(prog)]


def _net(*layers):
    return sb.Network(list(layers), cost=sb.log_likelihood)


def test_a_dense_shaped_sum_becomes_products_by_the_ir_pass():
    """No bias: not a whole Dense layer, but its sum and both adjoints are products (the IR pass)."""
    decl = sb.Layer.parse("d", "z[j] = sum(W[j,k]*x[k] for k in range(6))", params={"W": (4, 6)},
                          activation=sb.tanh)
    progs = lower(_net(sb.Input(6), sb.Dense(6, sb.tanh), decl, sb.Dense(3, sb.softmax)))
    fwd = [s for s in _steps(progs["forward"]) if "(dense product found in" in getattr(s, "eq", "")]
    assert len(fwd) == 1 and isinstance(fwd[0], Gemm) and fwd[0].trans_b
    back = _steps(progs["backward"])
    assert not any(isinstance(s, (IndexReduce, IndexGather)) for s in back)
    assert any(isinstance(s, Gemm) and "input gradient as a product" in s.eq for s in back)
    epoch = _steps(progs["sgd_epoch"])
    w2 = [s for s in epoch if isinstance(s, Gemm) and s.out == "W2"]
    assert len(w2) == 1 and (w2[0].alpha, w2[0].beta) == ("-eta / m", "decay")  # the SGD step is the product


def test_a_whole_dense_declaration_is_lowered_as_dense():
    decl = sb.Layer.parse("d", DENSE, params={"W": (4, 6), "b": (4,)}, activation=sb.tanh)
    mine = lower(_net(sb.Input(6), sb.Dense(6, sb.tanh), decl, sb.Dense(3, sb.softmax)))
    ref = lower(_net(sb.Input(6), sb.Dense(6, sb.tanh), sb.Dense(4, sb.tanh), sb.Dense(3, sb.softmax)))
    assert all(str(mine[k]) == str(ref[k]) for k in ref)
    assert any(isinstance(s, ColSum) and s.out == "b2" for s in _steps(mine["sgd_epoch"]))
    assert any(isinstance(s, Map) for s in _steps(mine["forward"]))


def test_a_strided_padded_conv_becomes_im2col_and_the_rest_is_reported():
    """The correlation pass: any stride, dilation and padding; the generic steps stay inside each replacement
    (the NumPy backend runs them), with structured indices; what stays generated loops is in the plan."""
    conv = sb.Layer.parse("c", "z[f,i,j] = sum(W[f,c,p,q]*x[c,2*i+p-1,2*j+2*q-1] for c in range(2) for p in range(3) "
                          "for q in range(2)) + b[f]", out=(3, 4, 3), params={"W": (3, 2, 3, 2), "b": (3,)})
    net = _net(sb.Input((2, 8, 8)), sb.Conv2D(2, (1, 1), sb.tanh), conv, sb.Dense(3, sb.softmax))
    progs = lower(net)
    fwd = [s for s in _steps(progs["forward"]) if isinstance(s, Correlation) and s.out == "z2"]
    assert len(fwd) == 1 and (fwd[0].stride, fwd[0].dilation, fwd[0].offset) == ((2, 2), (1, 2), (-1, -1))
    assert fwd[0].bias == "b2" and fwd[0].bias_generic.operands[0].buffer == "b2"  # the bias after each product
    generic = fwd[0].generic
    assert generic.vars == (("c", 2), ("p", 3), ("q", 2)) and generic.operands[1].padded
    assert generic.operands[1].index[1] == Affine((("i", 2), ("p", 1)), -1)  # structured, not text
    back = [s for s in _steps(progs["sgd_epoch"]) if isinstance(s, Correlation) and s.cols == "cols_z2"]
    assert [s.role for s in back] == ["forward", "input", "weights"] and back[0].cols_per_sample
    assert back[2].out == "W2" and (back[2].alpha, back[2].beta) == ("-eta / m", "decay")
    # the bias's map sums: made by the weights products, from a row of ones below the kept patches
    assert not [s for s in _steps(progs["sgd_epoch"]) if isinstance(s, MapSums)]
    sums = back[2].bias_generic
    assert back[2].bias == "b2" and (back[2].bias_alpha, back[2].bias_beta) == ("-eta / m", "1.0")
    assert isinstance(sums, MapSums) and (sums.out, sums.maps, sums.n) == ("b2", 3, 12)
    assert isinstance(sums.generic, IndexGather) and sums.generic.target == "b2"
    assert back[0].ones_row and progs["sgd_epoch"].buffer("cols_z2").shape == ("m", 13, 12)
    assert progs["sgd_epoch"].buffer(back[2].sums).shape == (13, 3)  # Σ_r colᵣ·δ[r]ᵀ: patches × maps
    assert progs["forward"].buffer("cols_z2").shape == (1, 12, 12)
    plan = net.compile(backend="numba").plan()
    assert "im2col + gemm" in str(plan)
    assert not plan.generated()  # the bias is added after each product, its adjoint summed per map
    plan = net.compile(backend="numpy").plan()  # which runs the derived steps the products replace
    assert "im2col" not in str(plan) and plan.generated() and "its derived steps" in str(plan)


def test_a_grouped_conv_keeps_its_bias_sums_apart():
    """A group's patches have no row of ones below them: the bias of a grouped correlation is summed per map."""
    net = _net(sb.Input((4, 6, 6)), sb.Conv2D(4, (3, 3), sb.tanh, groups=2, padding=1), sb.Dense(3, sb.softmax))
    steps = _steps(lower(net)["sgd_epoch"])
    weights = [s for s in steps if isinstance(s, Correlation) and s.role == "weights"]
    assert len(weights) == 1 and weights[0].groups == 2 and weights[0].bias is None
    assert [s.out for s in steps if isinstance(s, MapSums)] == ["b1"]


def test_a_depthwise_conv_stays_generated_loops_and_the_plan_says_so():
    dw = sb.Layer.parse("dw", "z[c,i,j] = sum(W[c,p,q]*x[c,i+p-1,j+q-1] for p in range(3) for q in range(3))",
                        out=(2, 6, 6), params={"W": (2, 3, 3)})
    net = _net(sb.Input((2, 6, 6)), sb.Conv2D(2, (1, 1), sb.tanh), dw, sb.Dense(3, sb.softmax))
    gathers = [s for s in _steps(lower(net)["backward"]) if isinstance(s, IndexGather)]
    inputs = [s for s in gathers if s.per_sample]
    assert len(inputs) == 1 and {v for v, _ in inputs[0].loops} == {"i", "j"}
    assert all(isinstance(g, Guard) and g.kind == "range" for g in inputs[0].guards)
    plan = net.compile(backend="numpy").plan()
    assert "generated loops (declared map)" in str(plan) and "generated loops (derived gather)" in str(plan)
    assert all(r.flops > 0 for r in plan.generated())


def test_a_max_pool_keeps_its_argmax_and_scatters_there():
    pool = sb.Layer.parse("maxpool2x2", "z[c,i,j] = max(x[c,2*i+p,2*j+q] for p in range(3) for q in range(3))")
    progs = lower(_net(sb.Input((2, 7, 7)), sb.Conv2D(2, (1, 1), sb.tanh), pool, sb.Dense(3, sb.softmax)))
    reduce = [s for s in _steps(progs["backward"]) if isinstance(s, IndexReduce)]
    assert reduce[0].kind == "max" and reduce[0].argmax
    scatter = [s for s in _steps(progs["backward"]) if isinstance(s, IndexScatterMax)]
    assert len(scatter) == 1 and scatter[0].argmax == reduce[0].argmax
    forward = [s for s in _steps(progs["forward"]) if isinstance(s, IndexReduce)]
    assert forward[0].argmax is None  # inference keeps no argmax


def test_a_strided_1x1_input_gradient_divides():
    s2 = sb.Layer.parse("s", "z[f,i,j] = sum(U[f,c]*x[c,2*i,2*j] for c in range(2))", params={"U": (3, 2)})
    progs = lower(_net(sb.Input((2, 5, 5)), sb.Conv2D(2, (1, 1), sb.tanh), s2, sb.Dense(3, sb.softmax)))
    gather = next(s for s in _steps(progs["backward"]) if isinstance(s, IndexGather) and s.per_sample)
    assert {(g.kind, g.mod) for g in gather.guards if g.kind == "divides"} == {("divides", 2)}
    assert "2 | y" in str(progs["backward"])


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_declared_dense_trains_bit_for_bit_like_the_builtin(backend):
    decl = sb.Layer.parse("d", "z[j] = sum(W[j,k]*x[k] for k in range(12)) + b[j]", params={"W": (5, 12), "b": (5,)},
                          activation=sb.sigmoid)
    mine = _net(sb.Input(12), decl, sb.Dense(3, sb.softmax)).compile(backend=backend, dtype="float32", seed=0)
    ref = _net(sb.Input(12), sb.Dense(5, sb.sigmoid), sb.Dense(3, sb.softmax)).compile(backend=backend,
                                                                                        dtype="float32", seed=0)
    mine.set_params(ref.params)
    rng = np.random.default_rng(0)
    X, Y = rng.random((30, 12)).astype(np.float32), np.eye(3, dtype=np.float32)[rng.integers(0, 3, 30)]
    for m in (mine, ref):
        m.fit((X, Y), epochs=2, batch_size=4, eta=0.5, lmbda=0.3, momentum=0.5, seed=1, progress=False)
    for pa, pb in zip(mine.params, ref.params):
        for a_, b_ in zip(pa, pb):
            assert np.array_equal(a_, b_)
    assert np.array_equal(mine.feedforward(X), ref.feedforward(X))


def _twin_of_dbl_conv(names=("W", "b")):
    w, b = names

    def conv(maps, c, k):
        return sb.Layer.parse(f"conv{maps}x{k}x{k}", f"z[f,i,j] = sum({w}[f,c,p,q]*x[c,i+p,j+q] for c in range({c}) "
                              f"for p in range({k}) for q in range({k})) + {b}[f]",
                              params={w: (maps, c, k, k), b: (maps,)}, activation=sb.relu)

    pool = sb.Layer.parse("maxpool2x2", "z[c,i,j] = max(x[c,2*i+p,2*j+q] for p in range(2) for q in range(2))")
    dense = sb.Layer.parse("d", f"z[j] = sum({w}[j,k]*x[k] for k in range(640)) + {b}[j]",
                           params={w: (100, 640), b: (100,)}, activation=sb.relu)
    return _net(sb.Input((1, 28, 28)), conv(20, 1, 5), pool, conv(40, 20, 5), pool, dense, sb.Dense(10, sb.softmax))


DBL_CONV = _net(sb.Input((1, 28, 28)), sb.Conv2D(20, (5, 5), sb.relu), sb.MaxPool((2, 2)),
                sb.Conv2D(40, (5, 5), sb.relu), sb.MaxPool((2, 2)), sb.Dense(100, sb.relu), sb.Dense(10, sb.softmax))


def test_the_book_dbl_conv_declared_is_the_same_program_and_source():
    """Conv2D and MaxPool are their declarations, so hand-declared twins (under the names the built-ins give
    them) are the same kernel programs, pooling before σ included, and the same generated source; a declared
    dense map is recognised and lowered as Dense; the parameters may have other names."""
    twin, ref = lower(_twin_of_dbl_conv()), lower(DBL_CONV)
    for name in ref:
        assert str(twin[name]) == str(ref[name]), name
    for backend in ("numba", "numpy"):  # generated, not compiled
        a = _twin_of_dbl_conv().compile(backend=backend, dtype="float32").source(None)
        b = DBL_CONV.compile(backend=backend, dtype="float32").source(None)
        assert a[a.find("\n\n\n"):] == b[b.find("\n\n\n"):]
    other = str(lower(_twin_of_dbl_conv(("K", "B")))["sgd_epoch"])
    assert "K3" in other and "W3" not in other and "B3" in other
    assert "pooling before σ" in str(_twin_of_dbl_conv().equations())


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_declared_conv_and_pool_train_bit_for_bit_like_the_builtins(backend):
    conv = sb.Layer.parse("conv", "z[f,i,j] = sum(K[f,c,p,q]*x[c,i+p,j+q] for c in range(2) for p in range(3) "
                          "for q in range(3)) + B[f]", params={"K": (4, 2, 3, 3), "B": (4,)}, activation=sb.relu)
    pool = sb.Layer.parse("pool", "z[c,i,j] = max(x[c,2*i+p,2*j+q] for p in range(2) for q in range(2))")
    mine = _net(sb.Input((2, 9, 9)), sb.Conv2D(2, (1, 1), sb.tanh), conv, pool, sb.Dense(3, sb.softmax))
    ref = _net(sb.Input((2, 9, 9)), sb.Conv2D(2, (1, 1), sb.tanh), sb.Conv2D(4, (3, 3), sb.relu), sb.MaxPool((2, 2)),
               sb.Dense(3, sb.softmax))
    a, b = (n.compile(backend=backend, dtype="float64", seed=0) for n in (mine, ref))
    a.set_params(b.params)
    rng = np.random.default_rng(0)
    X, Y = rng.random((12, 162)), np.eye(3)[rng.integers(0, 3, 12)]
    for m in (a, b):
        m.fit((X, Y), epochs=2, batch_size=4, eta=0.1, lmbda=0.5, momentum=0.5, seed=1, progress=False)
    for pa, pb in zip(a.params, b.params):
        for a_, b_ in zip(pa, pb):
            assert np.array_equal(a_, b_)


def test_the_plan_names_the_products_that_run_as_loops():
    """The numba backend runs forward products of at most ``SMALL_GEMM`` multiply-adds as plain loops: the plan
    says which products (per sample small enough) and up to which mini-batch; the input gradients, the weight
    updates and the NumPy backend's products are all matrix products."""
    from symbp.compile.backends.numba.runtime import SMALL_GEMM

    net = sb.Network([784, 30, 10], activation=sb.sigmoid, cost=sb.quadratic)
    rows = {(r.kernel, r.what): r.path for r in net.compile(backend="numba", seed=0).plan().rows}
    small = f"loops if m ≤ {SMALL_GEMM // 300}, else BLAS gemm"  # 10 × 30 multiply-adds per sample
    assert rows[("sgd_epoch", "z1 = gemm(x, W1)")] == "BLAS gemm"  # 23,520 per sample
    assert rows[("sgd_epoch", "W1 = gemm(delta1, x)")] == "BLAS gemm"
    assert rows[("sgd_epoch", "z2 = gemm(a1, W2)")] == small
    assert rows[("sgd_epoch", "delta1 = gemm(delta2, W2)")] == "BLAS gemm"
    assert rows[("sgd_epoch", "W2 = gemm(delta2, a1)")] == "BLAS gemm"
    numpy_rows = net.compile(backend="numpy", seed=0).plan().rows
    assert {r.path for r in numpy_rows if "gemm(" in r.what} == {"BLAS gemm"}


def test_a_conv_without_bias_trains_like_the_numpy_backend():
    """A declared correlation with no bias term: its BP4 is the numba backend's ``conv_weights`` (the patch
    products summed into a scratch of patches × maps, then the SGD step), against the NumPy backend's gather."""
    conv = sb.Layer.parse("conv", "z[f,i,j] = sum(K[f,c,p,q]*x[c,i+p,j+q] for c in range(2) for p in range(3) "
                          "for q in range(3))", params={"K": (4, 2, 3, 3)}, activation=sb.tanh)
    net = _net(sb.Input((2, 9, 9)), sb.Conv2D(2, (1, 1), sb.tanh), conv, sb.MaxPool((2, 2)), sb.Dense(3, sb.softmax))
    a, b = (net.compile(backend=backend, dtype="float64", seed=0) for backend in ("numba", "numpy"))
    assert "_rt.conv_weights(" in a.source("sgd_epoch") and "_rt.conv_weights(" in a.source("backward")
    b.set_params(a.params)
    rng = np.random.default_rng(0)
    X, Y = rng.random((12, 162)), np.eye(3)[rng.integers(0, 3, 12)]
    for m in (a, b):
        m.fit((X, Y), epochs=2, batch_size=4, eta=0.1, lmbda=0.5, seed=1, progress=False)
    for pa, pb in zip(a.params, b.params):
        for a_, b_ in zip(pa, pb):
            np.testing.assert_allclose(a_, b_, rtol=1e-12, atol=1e-14)
    ga, gb = a.gradients(X[:5], Y[:5]), b.gradients(X[:5], Y[:5])
    for pa, pb in zip(ga, gb):
        for a_, b_ in zip(pa, pb):
            np.testing.assert_allclose(a_, b_, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("layers, once", [
    # 5×5, stride 1: col2im gathered row by row
    ((sb.Input((1, 14, 14)), sb.Conv2D(20, (3, 3), sb.tanh), sb.Conv2D(40, (5, 5), sb.sigmoid)), False),
    # 3×3, stride 2, padding 1: col2im with each element written once
    ((sb.Input((4, 16, 16)), sb.Conv2D(64, (1, 1), sb.tanh), sb.Conv2D(64, (3, 3), sb.sigmoid, stride=2, padding=1)),
     True)], ids=["row-gathered", "written-once"])
def test_products_of_several_samples_in_one_product(layers, once):
    """A layer whose maps are small and whose products are large makes its three products for ``group``
    samples at once (``GROUP_COLUMNS``): maps of 8×8, 10 samples per product, so 23 samples are groups of 10,
    10 and 3; the larger maps before it stay per sample.  The forward pass writes each sample's patches into its
    block of columns (of the whole mini-batch where the weights step reads them again, of the group otherwise)
    and W·col makes the group's maps at once; the weights step sums one product per group; col2im reads each
    sample's block of Wᵀ·δ, in either of its two forms.  The numba backend's outputs, gradients and SGD steps
    equal the NumPy backend's (the derived gathers)."""
    from symbp.compile.passes import GROUP_COLUMNS

    net = _net(*layers, sb.Dense(3, sb.softmax))
    G = GROUP_COLUMNS // 64
    for kernel, roles in (("sgd_epoch", ["forward", "input", "weights"]), ("forward", ["forward"])):
        steps = [s for s in _steps(lower(net)[kernel]) if isinstance(s, Correlation) and s.group > 1]
        assert [s.role for s in steps] == roles and {s.group for s in steps} == {G}
    a, b = (net.compile(backend=backend, dtype="float64", seed=0) for backend in ("numba", "numpy"))
    plan = [r.path for r in a.plan().rows if r.kernel == "sgd_epoch" and "correlation" in r.what]
    assert plan[1:] == [f"im2col + gemm ({G} samples per product)"] * 3 + ["im2col + gemm"] and plan[0] == plan[-1]
    src = a.source("sgd_epoch")
    assert ("_s * 64 + (_t" in src) == once and "_rt.conv_weights_grouped(" in src
    assert "_c0 = (_r0 + _s) * 64" in src and "_c0 = (_s) * 64" in a.source("forward")
    b.set_params(a.params)
    rng = np.random.default_rng(1)
    X, Y = rng.random((46, int(np.prod(layers[0].shape)))), np.eye(3)[rng.integers(0, 3, 46)]
    np.testing.assert_allclose(a.feedforward(X[:23]), b.feedforward(X[:23]), rtol=1e-11, atol=1e-13)
    for pa, pb in zip(a.gradients(X[:23], Y[:23]), b.gradients(X[:23], Y[:23])):
        for a_, b_ in zip(pa, pb):
            np.testing.assert_allclose(a_, b_, rtol=1e-11, atol=1e-13)
    for m in (a, b):
        m.fit((X, Y), epochs=2, batch_size=23, eta=0.3, seed=1, progress=False)
    for pa, pb in zip(a.params, b.params):
        for a_, b_ in zip(pa, pb):
            np.testing.assert_allclose(a_, b_, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_grouped_weights_step_equals_the_per_sample_one(dtype):
    """``runtime.conv_weights_grouped`` over patches side by side (5 samples in groups of 2, 2 and 1; garbage in
    the ones row, which it must write) gives the W and b that ``conv_weights_bias`` gives over per-sample patches,
    and without a bias (an empty ``b``) the W that ``conv_weights`` gives; with no samples only the β terms act,
    β = 0 writing over NaN and α = −∞ ignored."""
    from symbp.compile.backends.numba import runtime as rt

    rng = np.random.default_rng(0)
    dt = np.dtype(dtype)
    m, F, C, kh, kw, n = 5, 4, 3, 2, 2, 9
    K = C * kh * kw
    d4 = rng.standard_normal((m, F, 3, 3)).astype(dt)
    per = rng.standard_normal((m, K + 1, n)).astype(dt)
    side = np.ascontiguousarray(per.transpose(1, 0, 2).reshape(K + 1, m * n))
    side[K] = 7.0
    dg = np.zeros((F, 2 * n), dt)
    W0, b0 = rng.standard_normal((F, C, kh, kw)).astype(dt), rng.standard_normal(F).astype(dt)
    Wa, ba, Wb, bb = W0.copy(), b0.copy(), W0.copy(), b0.copy()
    rt.conv_weights_grouped(d4, side, dg, np.zeros((K + 1, F), dt), Wa, -0.1, 0.9, ba, -0.2, 1.0)
    rt.conv_weights_bias(d4, per.copy(), np.zeros((K + 1, F), dt), Wb, -0.1, 0.9, bb, -0.2, 1.0)
    tol = {"rtol": 1e-12, "atol": 1e-13} if dtype == "float64" else {"rtol": 1e-5, "atol": 1e-6}
    np.testing.assert_allclose(Wa, Wb, **tol)
    np.testing.assert_allclose(ba, bb, **tol)
    assert np.all(side[K] == 1.0)
    Wa, Wb = W0.copy(), W0.copy()
    S = np.zeros((K, F), dt)
    rt.conv_weights_grouped(d4, side[:K], dg, S, Wa, -0.1, 0.9, S[0, :0], 0.0, 0.0)
    rt.conv_weights(d4, np.ascontiguousarray(per[:, :K]), np.zeros((K, F), dt), Wb, -0.1, 0.9)
    np.testing.assert_allclose(Wa, Wb, **tol)
    W, b = np.full((F, C, kh, kw), np.nan, dt), np.full(F, np.nan, dt)
    empty = np.zeros((0, F, 3, 3), dt)
    rt.conv_weights_grouped(empty, side[:, :0], dg, np.zeros((K + 1, F), dt), W, -np.inf, 0.0, b, -np.inf, 0.0)
    assert not W.any() and not b.any()
    W, b = np.ones((F, C, kh, kw), dt), np.ones(F, dt)
    rt.conv_weights_grouped(empty, side[:, :0], dg, np.zeros((K + 1, F), dt), W, -np.inf, 0.5, b, -np.inf, 0.25)
    assert np.all(W == 0.5) and np.all(b == 0.25)


def test_grouped_layer_float32_with_momentum_and_fewer_samples_than_a_group():
    """A grouped layer in float32, trained with momentum (its weights step then runs without the bias sums: the
    bias has a step of its own) on mini-batches of 7, fewer than a group's 10 samples, and a padded layer whose
    padding rows the chunked im2col never writes in any sample's block: the numba backend's outputs, gradients
    and parameters after training equal the NumPy backend's to float32 rounding."""
    net = _net(sb.Input((1, 10, 12)), sb.Conv2D(20, (3, 3), sb.tanh),
               sb.Conv2D(80, (3, 5), sb.sigmoid, padding=(1, 0)), sb.Dense(3, sb.softmax))
    steps = [s for s in _steps(lower(net)["sgd_epoch"]) if isinstance(s, Correlation) and s.group > 1]
    assert {s.role for s in steps} == {"forward", "input", "weights"} and {s.group for s in steps} == {640 // 48}
    assert not steps[0].phased and not steps[0].inside(0)  # maps of 8×6; padding rows, chunked im2col
    a, b = (net.compile(backend=backend, dtype="float32", seed=0) for backend in ("numba", "numpy"))
    b.set_params(a.params)
    rng = np.random.default_rng(2)
    X, Y = rng.random((21, 120)).astype(np.float32), np.eye(3)[rng.integers(0, 3, 21)]
    np.testing.assert_allclose(a.feedforward(X[:7]), b.feedforward(X[:7]), rtol=2e-5, atol=1e-6)
    for pa, pb in zip(a.gradients(X[:7], Y[:7]), b.gradients(X[:7], Y[:7])):
        for a_, b_ in zip(pa, pb):
            np.testing.assert_allclose(a_, b_, rtol=1e-3, atol=1e-5)
    for m in (a, b):
        m.fit((X, Y), epochs=1, batch_size=7, eta=0.1, momentum=0.5, seed=1, progress=False)
    momentum = [a.source(k) for k in a.kernels.sources if k.startswith("sgd_epoch") and k != "sgd_epoch"]
    assert len(momentum) == 1 and "_rt.conv_weights_grouped(" in momentum[0] and "wsum_z2[0, :0]" in momentum[0]
    for pa, pb in zip(a.params, b.params):
        for a_, b_ in zip(pa, pb):
            np.testing.assert_allclose(a_, b_, rtol=1e-3, atol=1e-5)
