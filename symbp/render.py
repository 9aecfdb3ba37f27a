r"""Renderings of derived expressions as one-line unicode text and as LaTeX that compiles in a plain amsmath
document (and in matplotlib's mathtext, MathJax and KaTeX alike).

Takes: sympy expressions.  Gives: ``text`` (``**2`` as ², ``*`` as ·, superscripted names bracketed under
powers), ``factor_text`` (bracketed when a sum), ``sup`` (layer numbers as superscripts), ``latex`` (sympy's
printer, except: a piecewise expression inline, ``e\,\mathbf{1}_{c}`` or ``\left\{ … \right.``, never a
``cases`` environment; ``\left\vert … \right\vert`` for Abs, so that no ``|`` breaks a Markdown table; ``\leq``
and ``\geq`` throughout), ``latex_text`` (text escaped for ``\text{}``), ``index_text``/``index_latex`` (an affine
array index such as i+p−1 or −2i+y+1) and ``ranges_text``/``ranges_latex`` (the bounds of a sum, ``i<24,j<24``).
Shared by the calculus (its notes), the equations (their renderings) and the regularizers (their update rules);
it needs the activations' printer alone, so the regularizers use it without importing ``symbp.derive``.
"""

from __future__ import annotations

import re

import sympy as sp
from sympy.printing.latex import LatexPrinter

from symbp.activations import expression_text

_SUP = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def sup(n: int) -> str:
    return str(n).translate(_SUP)


#: a name that already carries a superscript (a², z¹): its powers need brackets, (a²)² and not a²²
_SUPERSCRIPTED = re.compile(r"([A-Za-zαβγδσ]+[⁰¹²³⁴⁵⁶⁷⁸⁹]+)\*\*")


def text(expr: sp.Expr) -> str:
    """One-line unicode rendering."""
    s = _SUPERSCRIPTED.sub(r"(\1)**", expression_text(expr))
    for old, new in (("**2", "²"), ("**3", "³"), ("**(-2)", "⁻²"), ("**(-1)", "⁻¹"), ("**", "^"), ("*", "·")):
        s = s.replace(old, new)
    return s


def factor_text(expr: sp.Expr) -> str:
    """``text`` bracketed when it is a sum or starts with a minus sign, for use as one factor of a product
    (g ⊙ (1 − a²), (ηλ/n)·(−w))."""
    t = text(expr)
    return f"({t})" if isinstance(expr, sp.Add) or t.startswith("-") else t


def factor_latex(expr: sp.Expr) -> str:
    """``latex`` bracketed as ``factor_text`` is."""
    t = latex(expr)
    return r"\left(%s\right)" % t if isinstance(expr, sp.Add) or t.startswith("-") else t


class _LatexPrinter(LatexPrinter):
    """sympy's LaTeX, with nothing that needs more than amsmath or that mathtext cannot read."""

    def _print_Piecewise(self, expr):
        pieces = list(expr.args)
        last = pieces[-1]
        if len(pieces) == 2 and last.cond == sp.true and last.expr == 0:  # e where c, else 0: an indicator
            e, c = pieces[0]
            ind = r"\mathbf{1}_{%s}" % self._print(c)
            if e == 1:
                return ind
            body = self._print(e)
            return (r"\left(%s\right) %s" % (body, ind) if isinstance(e, sp.Add) else r"%s\, %s" % (body, ind))
        parts = [r"%s\ \text{if}\ %s" % (self._print(p.expr), self._print(p.cond)) for p in pieces[:-1]]
        if last.cond == sp.true:
            parts.append(r"%s\ \text{otherwise}" % self._print(last.expr))
        else:
            parts.append(r"%s\ \text{if}\ %s" % (self._print(last.expr), self._print(last.cond)))
        return r"\left\{ %s \right." % r";\ ".join(parts)

    def _print_Abs(self, expr, exp=None):
        tex = r"\left\vert %s\right\vert" % self._print(expr.args[0])
        return r"%s^{%s}" % (tex, exp) if exp is not None else tex


def latex(expr: sp.Expr) -> str:
    """LaTeX of ``expr`` (terms in the order sympy keeps them), valid in a plain amsmath document."""
    return _LatexPrinter({"order": "none"}).doprint(expr)


_TEXT_ESCAPES = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "_": r"\_", "^": r"\^{}", "&": r"\&",
                 "%": r"\%", "$": r"\$", "#": r"\#", "~": r"\~{}"}


def latex_text(s: str) -> str:
    """``s`` escaped for LaTeX's ``\text{...}`` (a layer's name such as conv_s2)."""
    return "".join(_TEXT_ESCAPES.get(ch, ch) for ch in s)


def _affine_terms(expr, order) -> list[tuple[int, str]]:
    """(coefficient, name) of an affine index expression, the symbols in ``order`` first, the constant last."""
    expr = sp.expand(sp.sympify(expr))
    coeffs = expr.as_coefficients_dict()
    syms = sorted((s for s in expr.free_symbols), key=lambda s: (order.index(s.name) if s.name in order
                                                                  else len(order), s.name))
    out = [(int(coeffs[s]), s.name) for s in syms if coeffs.get(s, 0) != 0]
    const = coeffs.get(sp.S.One, 0)
    if const:
        out.append((int(const), ""))
    return out or [(0, "")]


def _affine(expr, order, minus: str) -> str:
    out = ""
    for k, (coef, name) in enumerate(_affine_terms(expr, order)):
        sign = minus if coef < 0 else ("+" if k else "")
        mag = abs(coef)
        out += sign + (str(mag) if not name else (name if mag == 1 else f"{mag}{name}"))
    return out


#: the order of index names in a printed index: output position, input position, kernel offsets, maps
INDEX_ORDER = ("i", "j", "y", "u", "p", "q", "f", "c")


def index_text(expr, order=INDEX_ORDER) -> str:
    """An affine index as the equations print it: i+p−1, y−p, −2i+y+1 (no spaces, a unicode minus)."""
    return _affine(expr, order, "−")


def index_latex(expr, order=INDEX_ORDER) -> str:
    return _affine(expr, order, "-")


def ranges_text(ranges) -> str:
    """The bounds of a sum over (name, extent) pairs: ``c<20,p<5,q<5``."""
    return ",".join(f"{v}<{n}" for v, n in ranges)


ranges_latex = ranges_text
