"""Renderings of derived expressions as one-line unicode text (the LaTeX of sympy's printer is used as is).

Takes: sympy expressions.  Gives: ``text`` (``**2`` as ², ``*`` as ·, superscripted names bracketed under
powers), ``factor_text`` (bracketed when a sum), ``sup`` (layer numbers as superscripts), ``latex``.
Shared by the calculus (its notes) and the equations (their renderings), so neither imports the other.
"""

from __future__ import annotations

import re

import sympy as sp

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


def latex(expr: sp.Expr) -> str:
    return sp.latex(expr, order="none")
