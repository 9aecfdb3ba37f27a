"""The canonical sympy symbols of symbp and the whitelist parser for expressions given as text.

Takes: nothing (symbols) or a string (``parse``).  Gives: real sympy symbols ``z`` (weighted input),
``a`` (activation), ``y`` (target), and sympy expressions built from trusted code only.

Expressions written by users with plain ``sympy.Symbol("z")`` are accepted everywhere: ``canonical``
matches symbols by name and swaps in the real ones, so ``Abs``/``Max`` differentiate usefully.
"""

from __future__ import annotations

import sympy as sp

z = sp.Symbol("z", real=True)
a = sp.Symbol("a", real=True)
y = sp.Symbol("y", real=True)

SYMBOLS = {"z": z, "a": a, "y": y}


def canonical(expr: sp.Expr) -> sp.Expr:
    """Replace any symbol named ``z``, ``a`` or ``y`` (whatever its assumptions) by the canonical real one."""
    expr = sp.sympify(expr) if not isinstance(expr, sp.Basic) else expr
    swap = {s: SYMBOLS[s.name] for s in expr.free_symbols if s.name in SYMBOLS and s != SYMBOLS[s.name]}
    return expr.xreplace(swap) if swap else expr


def parse(text: str, allowed: tuple[str, ...] = ("z",)) -> sp.Expr:
    """Parse ``text`` with the whitelist parser (see ``symbp.parsing``); only ``allowed`` symbols may appear."""
    from symbp.parsing import parse_expression

    return parse_expression(text, allowed=allowed)
