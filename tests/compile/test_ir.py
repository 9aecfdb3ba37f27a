"""IR-level tests of the lowering (``symbp.compile.lower.lower``): the step lists, buffers, typed arguments and the
printer of the four programs, for every layer kind, without compiling anything (no numba, no generated code).

Steps may be grouped (``Loop`` bodies, per-layer blocks): the tests look at the flattened list of leaf steps.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import sympy as sp

import symbp as sb
from symbp.compile.layers import lowering
from symbp.compile.lower import lower, param_names
from symbp.compile.program import (
    DTYPES,
    ArrayArg,
    Buffer,
    ColSum,
    Gather,
    Gemm,
    Loop,
    Map,
    Program,
    Random,
    RowSoftmax,
    RowSum,
    ScalarArg,
)
from symbp.compile.symbols import u


def leaves(steps) -> list:
    """The steps in execution order, with loops and groups (anything holding ``body`` or ``steps``) expanded."""
    out = []
    for step in steps:
        inner = getattr(step, "body", None)
        if inner is None and not isinstance(step, Program):
            inner = getattr(step, "steps", None)
        if isinstance(inner, list):
            out += leaves(inner)
        else:
            out.append(step)
    return out


def types_of(prog: Program) -> list[str]:
    return [type(s).__name__ for s in leaves(prog.steps)]


def find(prog: Program, kind, **attrs) -> list[int]:
    """Positions (in ``leaves``) of the steps of type ``kind`` whose attributes equal ``attrs``."""
    return [i for i, s in enumerate(leaves(prog.steps))
            if isinstance(s, kind) and all(getattr(s, k) == v for k, v in attrs.items())]


def one(prog: Program, kind, **attrs) -> int:
    found = find(prog, kind, **attrs)
    assert len(found) == 1, f"expected one {kind.__name__} {attrs} in\n{prog}"
    return found[0]


def step(prog: Program, i: int):
    return leaves(prog.steps)[i]


def map_writing(prog: Program, buffer: str) -> list[int]:
    return [i for i, s in enumerate(leaves(prog.steps)) if isinstance(s, Map) and any(w.buffer == buffer
                                                                                     for w, _ in s.writes)]


def reads_of(prog: Program) -> set[str]:
    """Every buffer or argument name some step reads."""
    names = set()
    for s in leaves(prog.steps):
        if isinstance(s, Gemm):
            names |= {s.A, s.B}
        elif isinstance(s, (Map, RowSum)):
            names |= {acc.buffer for acc in s.reads.values()}
        elif isinstance(s, ColSum):
            names.add(s.src)
        elif isinstance(s, RowSoftmax):
            names |= {s.z, s.bias}
        elif isinstance(s, Gather):
            names |= {src for src, _ in s.pairs}
    return names


def writes_of(prog: Program) -> set[str]:
    names = set()
    for s in leaves(prog.steps):
        if isinstance(s, (Gemm, ColSum, Random)):
            names.add(s.out)
        elif isinstance(s, Map):
            names |= {w.buffer for w, _ in s.writes}
        elif isinstance(s, RowSum) and s.out != "@total":
            names.add(s.out)
        elif isinstance(s, RowSoftmax):
            names |= {n for n in (s.a, s.lse, s.l1ma) if n}
        elif isinstance(s, Gather):
            names |= {dst for _, dst in s.pairs}
    return names


# ---------------------------------------------------------------------------------------------- networks
@pytest.fixture(scope="module")
def dense():
    return sb.Network([3, 4, 2], activation=sb.sigmoid, cost=sb.quadratic)


@pytest.fixture(scope="module")
def dense_p(dense):
    return lower(dense)


@pytest.fixture(scope="module")
def drop():
    """Dropout between two dense layers: layer 2 is the dropout, the weights are W1 and W3."""
    return sb.Network([sb.Input(3), sb.Dense(4, sb.sigmoid), sb.Dropout(0.5), sb.Dense(2, sb.sigmoid)],
                      cost=sb.quadratic)


@pytest.fixture(scope="module")
def drop_p(drop):
    return lower(drop)


@pytest.fixture(scope="module")
def input_drop_p():
    """Dropout on the input and two stacked dropouts before a softmax output."""
    net = sb.Network([sb.Input(3), sb.Dropout(0.2), sb.Dense(4, sb.relu), sb.Dropout(0.3), sb.Dropout(0.1),
                      sb.Dense(2, sb.softmax)], cost=sb.log_likelihood)
    return lower(net)


# ---------------------------------------------------------------------------------------------- dense
def test_dense_forward_steps_and_buffers(dense_p):
    fw = dense_p["forward"]
    assert types_of(fw) == ["Gemm", "Map", "Gemm", "Map", "Map"]
    g1, g2 = (step(fw, i) for i in find(fw, Gemm))
    assert (g1.out, g1.A, g1.B, g1.trans_a, g1.trans_b) == ("z1", "X", "W1", False, True)
    assert (g2.out, g2.A, g2.B) == ("z2", "a1", "W2")
    assert [(b.name, b.shape, b.dtype) for b in fw.buffers] == [
        ("z1", ("n", 4), "float"), ("a1", ("n", 4), "float"), ("z2", ("n", 2), "float"), ("a2", ("n", 2), "float")]
    assert fw.row_vars == {"n": "X.shape[0]"} and fw.returns is None
    # the fused bias + σ map writes z and a elementwise and reads the bias per column
    m1 = step(fw, 1)
    assert [(w.buffer, w.index) for w, _ in m1.writes] == [("z1", ("i", "j")), ("a1", ("i", "j"))]
    assert {(acc.buffer, acc.index) for acc in m1.reads.values()} == {("z1", ("i", "j")), ("b1", ("j",))}
    assert (m1.rows, m1.cols) == ("n", 4)
    out = step(fw, 4)
    assert [w.buffer for w, _ in out.writes] == ["out"] and {acc.buffer for acc in out.reads.values()} == {"a2"}


def test_dense_arguments_are_typed(dense_p):
    fw, cost, bw, sgd = (dense_p[k] for k in ("forward", "cost", "backward", "sgd_epoch"))
    assert fw.args == [ArrayArg("X", 2, "float", True), ArrayArg("W1", 2), ArrayArg("b1", 1), ArrayArg("W2", 2),
                       ArrayArg("b2", 1), ArrayArg("out", 2)]
    assert cost.arg_names == ["X", "Y", "W1", "b1", "W2", "b2"] and cost.returns == "total"
    assert all(a.readonly for a in cost.args[:2]) and not any(a.readonly for a in cost.args[2:])
    assert bw.arg_names == ["X", "Y", "W1", "b1", "W2", "b2", "nabla_w1", "nabla_b1", "nabla_w2", "nabla_b2"]
    assert [a.ndim for a in bw.args[6:]] == [2, 1, 2, 1]
    assert sgd.args[:8] == [ArrayArg("X", 2, "float", True), ArrayArg("Y", 2, "float", True),
                            ArrayArg("order", 1, "int64", True), ScalarArg("m", "int"), ScalarArg("eta", "float"),
                            ScalarArg("decay", "float"), ScalarArg("seed", "int"), ScalarArg("epoch", "int")]
    assert sgd.arg_names[8:] == ["W1", "b1", "W2", "b2"] and sgd.returns == "bad"
    for prog in dense_p.values():
        for arg in prog.args:
            assert isinstance(arg, (ArrayArg, ScalarArg))
            if isinstance(arg, ArrayArg):
                assert arg.dtype in DTYPES and arg.ndim in (1, 2)
            else:
                assert arg.kind in ("int", "float")
    assert param_names(sb.Network([3, 4, 2], activation=sb.sigmoid, cost=sb.quadratic).equations()) == [
        ("W1", 2), ("b1", 1), ("W2", 2), ("b2", 1)]


def test_dense_cost_program(dense_p):
    cost = dense_p["cost"]
    assert types_of(cost) == ["Gemm", "Map", "Gemm", "Map", "RowSum"]
    total = step(cost, 4)
    assert total.out == "@total" and (total.rows, total.cols) == ("n", 2)
    assert {acc.buffer for acc in total.reads.values()} >= {"a2", "Y"}


def test_dense_backward_steps(dense_p):
    bw = dense_p["backward"]
    assert types_of(bw) == ["Gemm", "Map", "Gemm", "Map",  # forward
                            "Map",  # BP1 → delta2
                            "Gemm", "Gemm", "ColSum",  # (w2)ᵀδ2 → delta1, BP4, BP3 of layer 2
                            "Map", "Gemm", "ColSum"]  # BP2 in place on delta1, BP4, BP3 of layer 1
    assert [w.buffer for w, _ in step(bw, 4).writes] == ["delta2"]
    back = step(bw, one(bw, Gemm, out="delta1"))
    assert (back.A, back.B, back.trans_a, back.trans_b) == ("delta2", "W2", False, False)
    nw2 = step(bw, one(bw, Gemm, out="nabla_w2"))
    assert (nw2.A, nw2.B, nw2.trans_a, nw2.alpha) == ("delta2", "a1", True, "1.0 / m")
    nw1 = step(bw, one(bw, Gemm, out="nabla_w1"))
    assert (nw1.A, nw1.B) == ("delta1", "X")
    nb1 = step(bw, one(bw, ColSum, out="nabla_b1"))
    assert (nb1.src, nb1.cols, nb1.alpha) == ("delta1", 4, "1.0 / m")
    # BP2 reads the propagated gradient and writes δ¹ in place
    (bp2,) = map_writing(bw, "delta1")
    assert one(bw, Gemm, out="delta1") < bp2 < one(bw, Gemm, out="nabla_w1")
    assert {acc.buffer for acc in step(bw, bp2).reads.values()} >= {"delta1", "a1"}
    assert {b.name for b in bw.buffers} == {"z1", "a1", "delta1", "z2", "a2", "delta2"}
    assert all(b.shape[0] == "m" and b.dtype == "float" for b in bw.buffers)
    assert bw.row_vars == {"m": "X.shape[0]"}


def test_dense_sgd_epoch_bp2_before_update(dense_p):
    sgd = dense_p["sgd_epoch"]
    assert len(sgd.steps) == 1 and isinstance(sgd.steps[0], Loop)
    kinds = types_of(sgd)
    assert kinds[0] == "Gather" and "Random" not in kinds
    assert step(sgd, 0).pairs == [("X", "x"), ("Y", "yb")]
    # the gemm into δ¹ uses W² before this mini-batch's update of W²
    assert one(sgd, Gemm, out="delta1", A="delta2", B="W2") < one(sgd, Gemm, out="W2")
    w2 = step(sgd, one(sgd, Gemm, out="W2"))
    assert (w2.A, w2.B, w2.trans_a, w2.alpha, w2.beta) == ("delta2", "a1", True, "-eta / m", "decay")
    b2 = step(sgd, one(sgd, ColSum, out="b2"))
    assert (b2.src, b2.alpha, b2.beta) == ("delta2", "-eta / m", "1.0")
    w1 = step(sgd, one(sgd, Gemm, out="W1"))
    assert (w1.A, w1.B) == ("delta1", "x")
    # updates come after every read of the old weights
    assert max(find(sgd, Gemm, B="W2")) < one(sgd, Gemm, out="W2")
    assert [(b.name, b.shape) for b in sgd.buffers[:2]] == [("x", ("m", 3)), ("yb", ("m", 2))]
    assert not {"nabla_w1", "nabla_b1"} & {b.name for b in sgd.buffers}


def test_sigma_prime_kept_only_where_needed():
    """σ′ with no form in a (erf) is stored in the forward pass of the backward programs, not in forward."""
    net = sb.Network([3, 4, 2], activation=[sb.Activation.parse("erf", "erf(z)"), sb.sigmoid], cost=sb.quadratic)
    progs = lower(net)
    assert progs["forward"].buffer("sp1") is None and progs["cost"].buffer("sp1") is None
    for name in ("backward", "sgd_epoch"):
        prog = progs[name]
        assert prog.buffer("sp1").shape == ("m", 4)
        assert prog.buffer("sp2") is None  # the output layer's δ comes from BP1
        (fused,) = map_writing(prog, "a1")
        assert [w.buffer for w, _ in step(prog, fused).writes] == ["z1", "a1", "sp1"]
        (bp2,) = map_writing(prog, "delta1")
        assert "sp1" in {acc.buffer for acc in step(prog, bp2).reads.values()}


def test_softmax_output_lowering():
    net = sb.Network([3, 4, 3], activation=[sb.tanh, sb.softmax], cost=sb.log_likelihood)
    progs = lower(net)
    cost = progs["cost"]
    sm = step(cost, one(cost, RowSoftmax))
    assert (sm.z, sm.a, sm.bias, sm.rows, sm.cols, sm.lse) == ("z2", "a2", "b2", "n", 3, "lse2")
    assert cost.buffer("lse2") == Buffer("lse2", ("n",), "float") and cost.buffer("lse2").rank == 1
    total = step(cost, one(cost, RowSum, out="@total"))
    assert ("lse2", ("i",)) in {(acc.buffer, acc.index) for acc in total.reads.values()}
    assert not any(e.has(sp.log) for e in [total.expr])  # log a = z − lse: no log of a saturated softmax
    assert step(progs["forward"], one(progs["forward"], RowSoftmax)).lse is None
    bw = progs["backward"]
    assert "RowSum" not in types_of(bw)  # one-hot log-likelihood: δᴸ = a − y, no per-row S
    (bp1,) = map_writing(bw, "delta2")
    assert find(bw, RowSoftmax) and one(bw, RowSoftmax) < bp1


# ---------------------------------------------------------------------------------------------- dropout
def test_dropout_is_the_identity_outside_training(drop_p):
    for name in ("forward", "cost", "backward"):
        prog = drop_p[name]
        assert "Random" not in types_of(prog), name
        names = {b.name for b in prog.buffers}
        assert not names & {"mask2", "a2", "delta2"}, name
        assert not (reads_of(prog) | writes_of(prog)) & {"mask2", "a2", "delta2"}, name
        # the next dense layer reads the activation of the layer before the dropout
        z3 = step(prog, one(prog, Gemm, out="z3"))
        assert (z3.A, z3.B) == ("a1", "W3"), name
    # its arguments are those of a net without the dropout layer, numbered by position
    assert drop_p["forward"].arg_names == ["X", "W1", "b1", "W3", "b3", "out"]
    bw = drop_p["backward"]
    assert types_of(bw) == ["Gemm", "Map", "Gemm", "Map", "Map", "Gemm", "Gemm", "ColSum", "Map", "Gemm", "ColSum"]
    # (w³)ᵀδ³ goes straight into δ¹, and BP4 of layer 3 uses a¹
    assert one(bw, Gemm, out="delta1", A="delta3", B="W3") >= 0
    assert step(bw, one(bw, Gemm, out="nabla_w3")).B == "a1"


def test_dropout_sgd_epoch_draws_masks(drop_p):
    sgd = drop_p["sgd_epoch"]
    kinds = types_of(sgd)
    assert kinds.count("Random") == 1
    rnd = step(sgd, one(sgd, Random))
    assert (rnd.out, rnd.rows, rnd.cols, rnd.layer) == ("mask2", "m", 4, 2)
    assert (rnd.seed, rnd.epoch, rnd.ids, rnd.start) == ("seed", "epoch", "order", "start")
    # the mask is float64 whatever the model's dtype: u is compared with p exactly in every backend
    assert sgd.buffer("mask2") == Buffer("mask2", ("m", 4), "float64")
    assert sgd.buffer("a2").dtype == sgd.buffer("delta2").dtype == "float"
    assert sgd.buffer("a2").shape == sgd.buffer("delta2").shape == ("m", 4)
    # the mask map: mask ← [u ≥ p]/(1 − p), a² = mask ⊙ a¹, right after the draw, before layer 3 reads a²
    (mp,) = map_writing(sgd, "a2")
    assert mp == one(sgd, Random) + 1
    mask_map = step(sgd, mp)
    assert [w.buffer for w, _ in mask_map.writes] == ["mask2", "a2"]
    assert {acc.buffer for acc in mask_map.reads.values()} == {"mask2", "a1"}
    keep = dict((w.buffer, e) for w, e in mask_map.writes)["mask2"]
    assert float(keep.subs(u, 0.4999)) == 0.0 and float(keep.subs(u, 0.5)) == 2.0
    assert float(keep.subs(u, 0.0)) == 0.0 and float(keep.subs(u, 0.9999)) == 2.0
    z3 = one(sgd, Gemm, out="z3")
    assert step(sgd, z3).A == "a2" and mp < z3
    assert step(sgd, one(sgd, Gemm, out="W3")).B == "a2"  # BP4 of layer 3 sees the masked activation
    # backward: δ² = (w³)ᵀδ³ (before W³ is updated), then ∂C/∂a¹ = mask ⊙ δ², then BP2 of layer 1 in place
    back = one(sgd, Gemm, out="delta2", A="delta3", B="W3")
    assert back < one(sgd, Gemm, out="W3")
    d1 = map_writing(sgd, "delta1")
    assert len(d1) == 2
    drop_back, bp2 = d1
    assert {acc.buffer for acc in step(sgd, drop_back).reads.values()} == {"delta2", "mask2"}
    assert back < drop_back < bp2 < one(sgd, Gemm, out="W1")
    assert "mask2" not in {acc.buffer for acc in step(sgd, bp2).reads.values()}
    assert sgd.arg_names[8:] == ["W1", "b1", "W3", "b3"]


def test_dropout_mask_keeps_with_the_rate():
    for p in (0.0, 0.25, 0.3):
        net = sb.Network([sb.Input(2), sb.Dropout(p), sb.Dense(2, sb.sigmoid)], cost=sb.quadratic)
        sgd = lower(net)["sgd_epoch"]
        (mp,) = map_writing(sgd, "a1")
        keep = dict((w.buffer, e) for w, e in step(sgd, mp).writes)["mask1"]
        assert float(keep.subs(u, p)) == pytest.approx(1 / (1 - p), rel=1e-15)
        assert float(keep.subs(u, 1 - 1e-16)) == pytest.approx(1 / (1 - p), rel=1e-15)
        if p:
            assert float(keep.subs(u, p * (1 - 1e-12))) == 0.0


def test_input_dropout_and_stacked_dropouts(input_drop_p):
    sgd = input_drop_p["sgd_epoch"]
    rnd = [step(sgd, i) for i in find(sgd, Random)]
    assert [(r.out, r.layer, r.cols) for r in rnd] == [("mask1", 1, 3), ("mask3", 3, 4), ("mask4", 4, 4)]
    # dropout on the input: layer 2 reads the masked input, nothing computes a gradient for the input
    assert step(sgd, one(sgd, Gemm, out="z2")).A == "a1"
    assert step(sgd, one(sgd, Gemm, out="W2")).B == "a1"
    assert not find(sgd, Gemm, out="delta1") and not map_writing(sgd, "delta1")
    assert sgd.buffer("delta1") is None and "delta1" not in reads_of(sgd) | writes_of(sgd)
    assert step(sgd, one(sgd, Random, out="mask1")).eq  # each step says what it implements
    # two stacked dropouts chain their masks: δ⁴ = (w⁵)ᵀδ⁵, δ³ = mask⁴ ⊙ δ⁴, δ² = mask³ ⊙ δ³
    assert one(sgd, Gemm, out="delta4", A="delta5", B="W5") < one(sgd, Gemm, out="W5")
    (d3,) = map_writing(sgd, "delta3")
    assert {acc.buffer for acc in step(sgd, d3).reads.values()} == {"delta4", "mask4"}
    d2 = map_writing(sgd, "delta2")
    assert {acc.buffer for acc in step(sgd, d2[0]).reads.values()} == {"delta3", "mask3"}
    assert d3 < d2[0] < d2[1]
    (m4,) = map_writing(sgd, "a4")
    assert {acc.buffer for acc in step(sgd, m4).reads.values()} == {"mask4", "a3"}
    assert step(sgd, one(sgd, Gemm, out="z5")).A == "a4"
    assert "RowSoftmax" in types_of(sgd)
    # outside training all three are aliases: layer 2 reads X, layer 5 reads a²
    for name in ("forward", "cost", "backward"):
        prog = input_drop_p[name]
        assert "Random" not in types_of(prog)
        assert step(prog, one(prog, Gemm, out="z2")).A == "X"
        assert step(prog, one(prog, Gemm, out="z5")).A == "a2"
        assert not {b.name for b in prog.buffers} & {"a1", "a3", "a4", "mask1", "mask3", "mask4", "delta1"}
    bw = input_drop_p["backward"]
    assert step(bw, one(bw, Gemm, out="delta2", A="delta5")).B == "W5"
    assert not find(bw, Gemm, out="delta1") and bw.buffer("delta1") is None


def test_every_buffer_a_step_uses_is_declared(dense_p, drop_p, input_drop_p):
    for progs in (dense_p, drop_p, input_drop_p):
        for name, prog in progs.items():
            declared = {b.name for b in prog.buffers} | set(prog.arg_names)
            used = reads_of(prog) | writes_of(prog)
            assert used <= declared, (name, used - declared)
            assert len({b.name for b in prog.buffers}) == len(prog.buffers)  # each declared once
            for b in prog.buffers:
                assert b.dtype in DTYPES and b.rank in (1, 2)
                assert all(isinstance(s, int) and s > 0 or s == prog_rows(prog) for s in b.shape), b


def prog_rows(prog: Program) -> str:
    return "m" if prog.name in ("backward", "sgd_epoch") else "n"


def test_unknown_layer_kind_has_no_lowering():
    with pytest.raises(ValueError, match="no lowering for layer kind"):
        lowering(SimpleNamespace(index=1, layer=object()))


# ---------------------------------------------------------------------------------------------- printer
def _step_lines(text: str) -> list[str]:
    """Printed lines after the header, the row counts and the buffers, without group labels (``# …``)."""
    lines = text.splitlines()[1:]
    return [ln for ln in lines if not ln.strip().startswith(("#", "buffers ")) and " = X.shape[0]" not in ln]


def _n_steps(steps) -> int:
    n = 0
    for s in steps:
        if isinstance(s, Loop):
            n += 1 + _n_steps(s.body)
        elif isinstance(getattr(s, "steps", None), list):
            n += _n_steps(s.steps)
        else:
            n += 1
    return n


def test_printer_one_line_per_step(dense_p, drop_p, input_drop_p):
    for progs in (dense_p, drop_p, input_drop_p):
        for name, prog in progs.items():
            text = str(prog)
            assert text.splitlines()[0].startswith(f"{name}(")
            assert len(_step_lines(text)) == _n_steps(prog.steps), text
            for b in prog.buffers:
                assert f"{b.name}: " in text
            assert "\n\n" not in text


def test_printer_names_buffers_types_and_shapes(drop_p):
    fw, sgd = str(drop_p["forward"]), str(drop_p["sgd_epoch"])
    head = fw.splitlines()[0]
    assert head == "forward(X: f[:,:] ro, W1: f[:,:], b1: f[:], W3: f[:,:], b3: f[:], out: f[:,:]) -> ()"
    assert "  n = X.shape[0]" in fw.splitlines()
    assert "buffers z1: f[n,4], a1: f[n,4], z3: f[n,2], a3: f[n,2]" in fw
    assert "z1 = gemm X · W1ᵀ" in fw and "z3 = gemm a1 · W3ᵀ" in fw
    assert "sigmoid(b1[j] + z1[i,j])" in fw
    head = sgd.splitlines()[0]
    assert head.startswith("sgd_epoch(X: f[:,:] ro, Y: f[:,:] ro, order: i64[:] ro, m: int, eta: float, "
                           "decay: float, seed: int, epoch: int, W1: f[:,:]")
    assert head.endswith("-> bad: bool")
    assert "mask2: f64[m,4]" in sgd and "x: f[m,3]" in sgd
    assert "mask2[i,j] = uniform[i<m, j<4] hash(seed, epoch, layer 2, order[start+i], j)" in sgd
    assert "W3 = gemm (-eta / m)·delta3ᵀ · a2 + (decay)·W3" in sgd
    assert "delta2 = gemm delta3 · W3" in sgd
    assert "delta1[i,j] = map[i<m, j<4] delta2[i,j]*mask2[i,j]" in sgd
    assert "for k < order.shape[0] // m:" in sgd
    assert "gather[i<m] x[i,:] = X[order[start+i],:], yb[i,:] = Y[order[start+i],:]" in sgd
    assert str(drop_p["cost"]).splitlines()[0].endswith("-> total: float")
    assert "total += row_sum[i<n, j<2]" in str(drop_p["cost"])
    # the internal symbols never show: every read prints as buffer[index]
    for text in (fw, sgd):
        for internal in (" zr", "(zr", " g*", "*g ", " u ", "(u "):
            assert internal not in text


def test_printer_shapes_and_dtypes_of_any_rank():
    prog = Program("demo", [ArrayArg("X", 3, "float32", readonly=True), ArrayArg("ids", 1, "int64"),
                            ArrayArg("keep", 2, "bool"), ScalarArg("k", "int")],
                   [Buffer("img", ("m", 2, 5, 5)), Buffer("argmax", ("m", 2, 4), "int64"), Buffer("m8", (3,), "uint8"),
                    Buffer("flag", ("m",), "bool")], [], row_vars={"m": "X.shape[0]"})
    text = str(prog)
    assert text.splitlines()[0] == "demo(X: f32[:,:,:] ro, ids: i64[:], keep: bool[:,:], k: int) -> ()"
    assert "buffers img: f[m,2,5,5], argmax: i64[m,2,4], m8: u8[3], flag: bool[m]" in text
    assert prog.buffer("img").rank == 4 and prog.buffer("nope") is None
    with pytest.raises(ValueError, match="unknown dtype"):
        Buffer("c", (2,), "complex128")


def test_model_program_is_the_lowered_program(drop):
    """``Model.program`` prints the same IR as ``lower`` (checked without compiling: the property only)."""
    from symbp.train.model import Model

    holder = SimpleNamespace(network=drop, _programs=None)
    progs = Model.programs.fget(holder)
    assert str(progs["sgd_epoch"]) == str(lower(drop)["sgd_epoch"])
    assert Model.program(SimpleNamespace(programs=progs), "forward") is progs["forward"]
    with pytest.raises(ValueError, match="no program 'nope'"):
        Model.program(SimpleNamespace(programs=progs), "nope")
