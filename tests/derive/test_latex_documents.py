"""The equations' renderings hold up outside MathJax: the LaTeX of several networks (dense book nets, conv nets,
pooled, declared layers, custom activation, cost and regulariser) compiles in a minimal amsmath document
(``pdflatex``, when installed), every row parses in matplotlib's mathtext, a structural checker finds balanced
braces and environments, ``aligned`` (never ``align*``) inside ``$$``, ``\\leq``/``\\geq`` only, no sympy
``Sum(``/``Piecewise(`` text and no extent without its value; and IPython's text/plain is the full text."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import sympy as sp

import symbp as sb
from symbp import a, y, z

POOL = "z[c,i,j] = max(x[c,2*i+p-1,2*j+q-1] for p in range(3) for q in range(3))"
CONV = ("z[f,i,j] = sum(W[f,c,p,q]*x[c,2*i+p-1,2*j+q-1] for c in range(3) for p in range(3) for q in range(3))"
        " + b[f]")


def _nets() -> dict:
    softsign = sb.Activation("softsign", z / (1 + sp.Abs(z)))
    leaky = sb.Activation("leaky", sp.Max(z, z / 100))
    xent = sb.Cost("xent", -(y * sp.log(a) + (1 - y) * sp.log(1 - a)))
    conv_s2 = sb.Layer.parse("conv_s2", CONV, out=(4, 4, 4), params={"W": (4, 3, 3, 3), "b": (4,)},
                             activation=sb.relu)
    s2 = sb.Layer.parse("s2", "z[f,i,j] = sum(U[f,c]*x[c,2*i,2*j] for c in range(3))", params={"U": (3, 3)})
    twice = sb.Layer.parse("two_reads", "z[i] = x[i]*x[i] + x[i]", out=(24,))
    return {
        "chapter 1": (sb.Network([784, 30, 10], activation=sb.sigmoid, cost=sb.quadratic), None),
        "cross-entropy": (sb.Network([784, 30, 10], activation=sb.sigmoid, cost=sb.cross_entropy), None),
        "softmax quadratic": (sb.Network([sb.Input(4), sb.Dense(3, sb.tanh), sb.Dense(2, sb.softmax)],
                                         cost=sb.quadratic), None),
        "relu log-likelihood": (sb.Network([784, 30, 10], activation=sb.relu, cost=sb.log_likelihood), None),
        "chapter 6": (sb.Network([sb.Input((1, 28, 28)),
                                  sb.Conv2D(20, (5, 5), sb.relu), sb.MaxPool((2, 2)),
                                  sb.Conv2D(40, (5, 5), sb.relu), sb.MaxPool((2, 2)),
                                  sb.Dense(100, sb.relu), sb.Dropout(0.5), sb.Dense(10, sb.softmax)],
                                 cost=sb.log_likelihood), None),
        "pytorch options": (sb.Network([sb.Input((1, 28, 28)),
                                        sb.Conv2D(16, (3, 3), sb.relu, padding=1),
                                        sb.Conv2D(32, (3, 3), sb.relu, stride=2, padding=1),
                                        sb.MaxPool((3, 3), stride=2, padding=1), sb.AvgPool((7, 7)),
                                        sb.Dense(10, sb.softmax)], cost=sb.log_likelihood), None),
        "declared": (sb.Network([sb.Input((3, 8, 8)), s2, conv_s2, sb.Layer.parse("maxpool3s2", POOL),
                                 sb.Dense(2, sb.softmax)], cost=sb.log_likelihood), None),
        "two reads of x": (sb.Network([sb.Input(5), sb.Dense(24, sb.tanh), twice, sb.Dense(2, sb.sigmoid)],
                                      cost=sb.quadratic), None),
        "custom": (sb.Network([sb.Input(6), sb.Dense(5, softsign), sb.Dense(4, leaky), sb.Dense(3, sb.sigmoid)],
                              cost=xent),
                   dict(regularizer=sb.Regularizer.parse("l1", "abs(w)", 0.1), momentum=0.9)),
    }


NETS = _nets()


def _equations(name):
    net, update = NETS[name]
    eqs = net.equations()
    return eqs.with_update(**update) if update else eqs


# ------------------------------------------------------------------------------------------ the checker

_EXTENTS = re.compile(r"\b(?:HO|WO|KH|KW|C_in|N_c)\b|\bC - 1\b|\bF - 1\b")


def _strip_comments(tex: str) -> str:
    return "\n".join(line for line in tex.splitlines() if not line.startswith("%"))


def _balanced(tex: str) -> list[str]:
    """Problems with braces, \\left/\\right and \\begin/\\end in ``tex`` (an empty list when balanced)."""
    problems, depth = [], 0
    body = re.sub(r"\\[{}]", "", tex)  # \{ and \} are delimiters, not groups
    for ch in body:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            problems.append("a '}' closes nothing")
            depth = 0
    if depth:
        problems.append(f"{depth} '{{' left open")
    lefts, rights = len(re.findall(r"\\left(?![a-z])", tex)), len(re.findall(r"\\right(?![a-z])", tex))
    if lefts != rights:
        problems.append(f"{lefts} \\left, {rights} \\right")
    stack = []
    for kind, env in re.findall(r"\\(begin|end)\{([^}]*)\}", tex):
        if kind == "begin":
            stack.append(env)
        elif not stack or stack.pop() != env:
            problems.append(f"\\end{{{env}}} without its \\begin")
    problems += [f"\\begin{{{env}}} not closed" for env in stack]
    return problems


def _bounds_defined(s: str, defined: str) -> list[str]:
    """Every bound of a Σ/∑/max subscript (``v<N``) is a number, or a name defined as ``NAME = n`` in ``defined``."""
    problems = []
    for sub in re.findall(r"(?:Σ_|\\sum_|\\max_|max_)\{([^{}]*)\}", s):
        for item in sub.split(","):
            m = re.fullmatch(r"\s*(?:\d+\s*(?:≤|\\leq)\s*)?[a-z]'?\s*<\s*(\S+)\s*", item)
            if not m:
                problems.append(f"sum bound {item!r} names no extent")
            elif not m.group(1).isdigit() and not re.search(rf"\b{re.escape(m.group(1))} = \d+", defined):
                problems.append(f"extent {m.group(1)} is never defined")
    return problems


def check_structure(eqs) -> list[str]:
    """Everything the structural checker finds wrong with the renderings of ``eqs``."""
    text, tex, md, jup = str(eqs), eqs.latex(), eqs.markdown(), eqs._repr_latex_()
    body = _strip_comments(tex)
    problems = [f"latex: {p}" for p in _balanced(body)] + [f"jupyter: {p}" for p in _balanced(jup)]
    if not (body.startswith("\\begin{align*}") and body.rstrip().endswith("\\end{align*}")):
        problems.append("latex() is not one align* environment")
    if not (jup.startswith("$$\\begin{aligned}") and jup.endswith("\\end{aligned}$$")) or "align*" in jup:
        problems.append("_repr_latex_ is not aligned inside $$")
    if "%" in jup:
        problems.append("comments in the Jupyter form")
    for name, s in (("latex", body), ("jupyter", jup), ("markdown", md)):
        if re.search(r"\\(?:le|ge)(?![a-zA-Z])", s):
            problems.append(f"{name}: \\le or \\ge (use \\leq, \\geq)")
        for bad in ("\\begin{cases}", "\\substack", "\\operatorname{where}", "\\lvert", "align*}$"):
            if bad in s:
                problems.append(f"{name}: {bad}")
    for name, s in (("text", text), ("latex", body), ("markdown", md), ("jupyter", jup)):
        for leak in ("Sum(", "Piecewise(", "KroneckerDelta(", "Indexed", "IndexedBase"):
            if leak in s:
                problems.append(f"{name}: sympy's {leak} leaks")
        extent = _EXTENTS.search(s)
        if extent:
            problems.append(f"{name}: an undefined extent {extent.group(0)!r}")
        problems += [f"{name}: {p}" for p in _bounds_defined(s, s)]
    wide = re.search(r"[^\x00-\x7f]", body)
    if wide:
        problems.append(f"latex: non-ASCII {wide.group(0)!r} outside the comments")
    for cell in re.findall(r"\$([^$]*)\$", md):
        if "|" in cell:
            problems.append(f"markdown: a '|' inside math breaks the table: {cell[:60]}")
    return problems


def _rows(eqs) -> list[str]:
    """The rows of the Jupyter form, alignment points removed (mathtext has no environments)."""
    jup = eqs._repr_latex_()
    inner = jup[len("$$\\begin{aligned}"):-len("\\end{aligned}$$")]
    return [row.replace("&", "").strip() for row in inner.split("\\\\\n") if row.strip()]


# ------------------------------------------------------------------------------------------------ tests


@pytest.mark.parametrize("name", list(NETS))
def test_structure(name):
    eqs = _equations(name)
    assert check_structure(eqs) == []


def test_the_checker_catches_the_old_renderings():
    """The faults of the MathJax-only renderings are each found."""
    assert _balanced(r"\frac{a}{b") and _balanced(r"\left( a") and _balanced(r"\begin{aligned} a")
    assert _bounds_defined("Σ_{i<HO,j<WO} δ", "") == ["extent HO is never defined", "extent WO is never defined"]
    assert _bounds_defined("Σ_{i<HO} δ   where HO = 24", "where HO = 24") == []
    assert _bounds_defined(r"\sum_{c,p,q} w", "") != []

    class Old:
        def __init__(self, eqs):
            self.eqs = eqs

        def __str__(self):
            return str(self.eqs) + "\nΣ(δ, (c, 0, C - 1))  Sum(x, (i, 0, HO - 1))"

        def latex(self):
            return self.eqs.latex().replace(r"\leq", r"\le") + "\n% x"

        def markdown(self):
            return self.eqs.markdown()

        def _repr_latex_(self):
            return "$$" + self.eqs.latex().split("\n%")[0] + "$$"

    problems = "\n".join(check_structure(Old(_equations("chapter 6"))))
    for found in ("_repr_latex_ is not aligned inside $$", "\\le or \\ge", "Sum( leaks", "undefined extent"):
        assert found in problems


@pytest.mark.parametrize("name", list(NETS))
def test_every_row_parses_in_mathtext(name):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from matplotlib.mathtext import MathTextParser

    parser = MathTextParser("path")
    eqs = _equations(name)
    pieces = _rows(eqs) + re.findall(r"\$([^$]+)\$", eqs.markdown())
    failed = []
    for piece in pieces:
        try:
            parser.parse(f"${piece}$", dpi=72)
        except ValueError as exc:
            failed.append(f"{piece}\n    {str(exc).splitlines()[-1]}")
    assert not failed, "\n".join(failed)


def _document(eqs) -> str:
    md_math = "\n\n".join(f"${cell}$" for cell in re.findall(r"\$([^$]+)\$", eqs.markdown()))
    return "\n".join([r"\documentclass{article}", r"\usepackage{amsmath}", r"\begin{document}",
                      eqs.latex(), "", eqs._repr_latex_(), "", md_math, r"\end{document}", ""])


@pytest.mark.skipif(shutil.which("pdflatex") is None and shutil.which("latex") is None,
                    reason="no pdflatex or latex on this machine (apt-get install texlive-latex-base)")
def test_latex_compiles_in_a_minimal_amsmath_document(tmp_path):
    """One document per network: latex() as it stands (align* and its comments), the Jupyter form ($$ aligned $$)
    and every math cell of the Markdown, compiled with -halt-on-error."""
    tex = shutil.which("pdflatex") or shutil.which("latex")
    for k, name in enumerate(NETS):
        path = tmp_path / f"eqs{k}.tex"
        path.write_text(_document(_equations(name)), encoding="utf-8")
        out = subprocess.run([tex, "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape", path.name],
                             cwd=tmp_path, capture_output=True, text=True, timeout=120)
        log = (tmp_path / f"eqs{k}.log").read_text(errors="replace")
        errors = [line for line in log.splitlines() if line.startswith("!")]
        assert out.returncode == 0 and not errors, f"{name}: {errors or out.stdout[-2000:]}"


def test_text_plain_is_the_full_text():
    """IPython's text/plain (terminals, notebooks without MathJax) is str(eqs); repr stays one line."""
    pytest.importorskip("IPython")
    from IPython.core.formatters import PlainTextFormatter
    from IPython.lib.pretty import pretty

    eqs = _equations("chapter 6")
    assert pretty(eqs) == str(eqs) and PlainTextFormatter()(eqs) == str(eqs)
    assert "BP4  weights" in PlainTextFormatter()(eqs)
    assert "\n" not in repr(eqs) and pretty([eqs]) == f"[{repr(eqs)}]"


def test_conv_and_pool_rules_in_the_notation_of_bp1_to_bp4():
    """A convolution's and a max-pool's rules: Σ with the layer's extents, conditions after "where", targets
    indexed as the declared layers' are, the channel count never called C (the cost)."""
    text = str(_equations("chapter 6"))
    assert "z¹[f,i,j] = Σ_{c<1,p<5,q<5} W¹[f,c,p,q]·a⁰[c,i+p,j+q] + b¹[f]" in text
    assert "z³[f,i,j] = Σ_{c<20,p<5,q<5} W³[f,c,p,q]·a²[c,i+p,j+q] + b³[f]" in text
    assert ("∂C/∂a²[c,y,u] = Σ_{f<40,i<8,j<8} δ³[f,i,j]·W³[f,c,y−i,u−j]   where 0 ≤ y−i ≤ 4; 0 ≤ u−j ≤ 4"
            in text)
    assert "∂C/∂b³[f] = Σ_{i<8,j<8} δ³[f,i,j]" in text
    assert "∂C/∂W¹[f,c,p,q] = Σ_{i<24,j<24} δ¹[f,i,j]·a⁰[c,i+p,j+q]" in text
    assert "∂C/∂a³[c,2i+p*,2j+q*] += δ⁴[c,i,j], (p*,q*) the first maximum of the window of (c,i,j)" in text
    assert "δ³ = ∂C/∂a³ ⊙ σ′(z³)" in text and "BP2  maxpool2x2      δ² = ∂C/∂a²   (no σ)" in text
    assert "z²[c,i,j] = max_{p<2,q<2} a¹[c,2i+p,2j+q]   (maxpool2x2 → 20x12x12)      a² = z²" in text
    tex = _equations("chapter 6").latex()
    assert (r"\sum_{f<40,i<8,j<8} \delta^{3}_{f,i,j}\, W^{3}_{f,c,y-i,u-j} \quad (0 \leq y-i \leq 4,\ 0 \leq u-j"
            in tex)


def test_piecewise_and_abs_are_inline():
    """σ′ of relu as an indicator, a two-valued σ′ as a brace without an environment, |z| without a '|'."""
    assert r"\odot \mathbf{1}_{a^{1} > 0}" in _equations("relu log-likelihood").latex()
    tex = _equations("custom").latex()
    assert r"\left\{ " in tex and r"\text{otherwise} \right." in tex and r"\left\vert " in tex
    assert r"\text{two\_reads input:}" in _equations("two reads of x").latex()
    assert r"= \dots + \delta^{2}_{i}" in _equations("two reads of x").latex()
    assert "∂C/∂a¹[i] += δ²[i]" in str(_equations("two reads of x"))
