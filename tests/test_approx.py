"""Chapter 4: the book's constructed networks (symbp.approx) against its formula, its bound and the CLI."""

import subprocess
import sys

import numpy as np
import pytest

from symbp import approx

F = "sin(3*x) + 0.5*x"
L = 3.5  # |3 cos(3x) + 0.5| <= 3.5


@pytest.mark.parametrize("m,output", [(1, "linear"), (3, "linear"), (1, "sigmoid")])
def test_network_is_the_books_formula_numpy(m, output):
    f = "0.3 + 0.4*x^2" if output == "sigmoid" else F
    c = approx.construct(f, 7, m=m, output=output, w=150.0)
    x = approx.grid(c, 4001)[0]
    assert np.max(np.abs(c(x) - approx.bump_sum(c, x))) < 1e-12
    assert c.model.params[0][0].shape == (sum(2 * len(h) for _, _, h in c.copies), 1)


def test_network_is_the_books_formula_numba():
    pytest.importorskip("numba")
    c = approx.construct(F, 4, backend="numba")
    x = approx.grid(c, 2001)[0]
    assert np.max(np.abs(c(x) - approx.bump_sum(c, x))) < 1e-12


def test_towers_are_the_books_formula_and_a_real_network():
    c = approx.construct("sin(3*x)*y + 0.5", 5, dims=2)
    pts = approx.grid(c, 101)
    assert np.max(np.abs(c(*pts) - approx.bump_sum(c, *pts))) < 1e-12
    assert [p[0].shape for p in c.model.params] == [(12, 2), (25, 12), (1, 25)]
    assert str(c.net.equations())  # the same derivation as any network


def test_sup_error_within_the_bound_and_falling():
    sups = []
    for n in (5, 10, 20, 50):
        c = approx.construct(F, n)
        e = approx.errors(c)
        b = approx.bound(c, (L,))
        assert e["sup"] <= b, (n, e, b)
        assert b <= L / n + 1e-9  # the bump-width term L (hi - lo)/N; the failure-window tail is ~1e-13
        sups.append(e["sup"])
    assert all(a > b for a, b in zip(sups, sups[1:]))
    # gentle steps: the failure-window term is what the bound adds, and it still holds
    c = approx.construct(F, 10, w=60.0)
    assert approx.errors(c)["sup"] <= approx.bound(c, (L,))
    assert approx.errors(c, away=0.02)["sup"] <= approx.bound(c, (L,), away=0.02) < approx.bound(c, (L,))


def test_shifted_copies_reduce_the_error_near_the_steps():
    near = [approx.errors(approx.construct("sin(3*x)", 10, w=100.0, m=m), near=0.02)["sup"] for m in (1, 2, 4)]
    assert near[1] < near[0] / 2 and near[2] < near[0] / 2


def test_towers_within_the_bound_away_from_the_failure_windows():
    for n in (4, 8):
        c = approx.construct("sin(3*x)*y + 0.5", n, dims=2)
        tau = 0.1 / n
        e = approx.errors(c, away=tau)
        assert e["sup"] <= approx.bound(c, (3.0, 1.0), away=tau)
    assert approx.errors(c)["sup"] > e["sup"]  # the windows where the steps cross are where it fails


def test_trained_network_runs_and_learns_something():
    model, e = approx.trained(F, 10, epochs=100)
    assert model.params[0][0].shape == (10, 1)
    assert e["sup"] < 1.0 and np.isfinite(e["mean"])


def test_hostile_and_bad_expressions_are_refused():
    for text in ("__import__('os').system('echo hi')", "x.__class__", "open('f')"):
        with pytest.raises(ValueError):
            approx.construct(text, 3)
    with pytest.raises(ValueError, match="y"):
        approx.construct("x*y", 3)  # 1-D: only x


def test_function_not_finite_on_the_box_is_refused_naming_a_point():
    with pytest.raises(ValueError, match=r"not finite at x = 0\b"):
        approx.construct("1/x", 5)
    with pytest.raises(ValueError, match=r"not finite at x = "):
        approx.construct("log(x - 0.5)", 5)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "symbp.cli", "approx", *args], capture_output=True, text=True,
                          timeout=120)


def test_cli_prints_the_table_and_refuses_bad_input(tmp_path):
    r = _cli("sin(3*x)", "--neurons", "5,10,20", "--epochs", "20", "--plot", str(tmp_path / "a.png"))
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.splitlines() if line.strip() and line.split()[0].isdigit()]
    assert [row[0] for row in rows] == ["5", "10", "20"]
    assert float(rows[2][3]) < float(rows[0][3]) <= float(rows[0][5])  # sup error falls, within the bound
    assert (tmp_path / "a.png").stat().st_size > 0 and (tmp_path / "a-bumps.png").stat().st_size > 0
    r = _cli("__import__('os')")
    assert r.returncode == 2 and r.stderr.startswith("symbp approx: error:") and len(r.stderr.splitlines()) == 1
    r = _cli("1/x")
    assert r.returncode == 2 and "not finite at x = 0" in r.stderr
    r = _cli("x", "--neurons", "5,0")
    assert r.returncode == 2 and "--neurons" in r.stderr


def test_cli_towers(tmp_path):
    r = _cli("sin(3*x)*y", "--dims", "2", "--neurons", "3,6", "--plot", str(tmp_path / "t.png"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "t-towers.png").exists() and "bound there" in r.stdout
