"""Per-layer BP1–BP4 and their renderings (symbp.derive.equations)."""

from __future__ import annotations

import sympy as sp

import symbp as sb
from symbp.derive.calculus import S
from symbp.derive.equations import g
from symbp.symbols import a, y, z


def _net3():
    return sb.Network([4, 3, 3, 2], activation=[sb.tanh, sb.relu, sb.sigmoid], cost=sb.cross_entropy)


def test_student_example_prints_the_book_form(capsys):
    print(sb.Network([784, 30, 10], activation=sb.sigmoid, cost=sb.quadratic).equations())
    out = capsys.readouterr().out
    assert "δ²" in out and "a²·(1 - a²)" in out
    for name in ("BP1", "BP2", "BP3", "BP4"):
        assert name in out
    assert "δ² = ∇ₐC ⊙ σ′(z²) = a²·(1 - a²)·(a² - y)" in out
    assert "δ¹ = ((w²)ᵀ δ²) ⊙ σ′(z¹) = ((w²)ᵀ δ²) ⊙ a¹·(1 - a¹)" in out


def test_layer_structure():
    eqs = _net3().equations()
    assert [layer.index for layer in eqs.layers] == [1, 2, 3]
    assert [(layer.n_in, layer.n_out) for layer in eqs.layers] == [(4, 3), (3, 3), (3, 2)]
    assert [layer.is_output for layer in eqs.layers] == [False, False, True]
    out = eqs.layers[-1]
    assert out.delta == eqs.output_error
    assert sp.expand(eqs.output_error - (a - y)) == 0  # cross-entropy ∘ sigmoid
    for layer in eqs.layers[:-1]:  # BP2: δˡ = ((wˡ⁺¹)ᵀδˡ⁺¹) ⊙ σ′, σ′ in a
        assert sp.expand(layer.delta - g * layer.activation_derivative) == 0
        assert layer.derivative.uses_a and not layer.needs_z
    assert sp.simplify(eqs.layers[0].activation_derivative - (1 - a**2)) == 0
    assert out.bp1 and not out.bp2 and eqs.layers[0].bp2 and not eqs.layers[0].bp1
    assert eqs.layers[1].bp3 == "∂C/∂b²ⱼ = δ²ⱼ"
    assert eqs.layers[1].bp4 == "∂C/∂w²ⱼₖ = a¹ₖ δ²ⱼ"
    assert eqs.layers[0].bp4 == "∂C/∂w¹ⱼₖ = a⁰ₖ δ¹ⱼ"


def test_z_is_stored_only_when_needed():
    softsign = sb.Activation("softsign", z / (1 + sp.Abs(z)))
    eqs = sb.Network([2, 3, 2], activation=[softsign, sb.sigmoid], cost=sb.quadratic).equations()
    hidden = eqs.layers[0]
    if not hidden.derivative.uses_a:
        assert hidden.needs_z and z in hidden.activation_derivative.free_symbols
    assert not eqs.layers[1].needs_z


def test_text_rendering():
    text = str(_net3().equations())
    for name in ("BP1", "BP2", "BP3", "BP4"):
        assert name in text
    assert text.count("BP2") == 2  # two hidden layers
    for sym in ("δ³", "δ²", "δ¹", "a³", "z¹", "w³", "a⁰"):
        assert sym in text
    assert "Simplifications" in text and "cross_entropy" in text
    assert "l = 1..3" in text


def test_latex_rendering():
    eqs = _net3().equations()
    tex = eqs.latex()
    assert tex.startswith("\\begin{align*}") and "\\end{align*}" in tex
    assert "\\text{BP1:}" in tex and "\\text{BP2:}" in tex and "BP3, BP4" in tex
    assert "\\delta^{3}" in tex and "w^{3}" in tex
    rep = eqs._repr_latex_()
    assert rep.startswith("$$") and rep.endswith("$$")
    assert "%" not in rep  # the notes (LaTeX comments) stay out of the Jupyter rendering


def test_markdown_rendering():
    eqs = _net3().equations()
    md = eqs.markdown()
    assert "| equation | layer | form |" in md and "|---|---|---|" in md
    for name in ("BP1", "BP2", "BP3", "BP4"):
        assert f"| {name} |" in md
    assert eqs._repr_markdown_() == md
    assert "Simplifications" in md


def test_notes_explain_the_simplifications():
    eqs = sb.Network([3, 2, 2], activation=sb.sigmoid, cost=sb.quadratic).equations()
    assert any("reuses the stored activation" in n for n in eqs.notes)
    assert any(n.startswith("layers 1, 2:") for n in eqs.notes)  # one note for both layers
    assert "reuses the stored activation" in str(eqs)
    ce = sb.Network([3, 2], activation=sb.sigmoid, cost=sb.cross_entropy).equations()
    assert any("cancels" in n for n in ce.notes)


def test_softmax_renderings():
    ll = sb.Network([3, 4], activation=sb.softmax, cost=sb.log_likelihood).equations()
    assert ll.assumes_one_hot and sp.expand(ll.output_error - (a - y)) == 0
    assert any("one-hot" in n for n in ll.notes)
    assert "\\mathrm{softmax}" in ll.latex()
    assert "(∂a¹/∂z¹)ᵀ ∇ₐC" in str(ll)
    assert ll.layers[0].derivative is None and ll.layers[0].activation_derivative is None
    quad = sb.Network([3, 4], activation=sb.softmax, cost=sb.quadratic).equations()
    assert S in quad.output_error.free_symbols and not quad.assumes_one_hot
    assert "S¹" in str(quad)


def test_equations_are_derived_once():
    net = sb.Network([3, 2], activation=sb.tanh, cost=sb.quadratic)
    assert net.equations() is net.equations()
    assert "δᴸ" in repr(net.equations())


def test_plain_symbol_activation_derives_like_the_builtin():
    zz = sp.Symbol("z")  # no real=True: matched by name
    mine = sb.Activation("my_sigmoid", 1 / (1 + sp.exp(-zz)))
    eqs = sb.Network([2, 2], activation=mine, cost=sb.quadratic).equations()
    assert sp.simplify(eqs.layers[0].activation_derivative - a * (1 - a)) == 0
    assert sp.expand(eqs.output_error - a * (1 - a) * (a - y)) == 0
