"""sympy → Python source for the numba and NumPy backends, with numerically stable rewrites.

Takes: sympy expressions from the derivation.  Gives: source text (scalar code for numba loops, array code
for NumPy), built on sympy's own ``PythonCodePrinter``/``NumPyPrinter``.

Numerical stability is a list of rewrite rules applied by one function (``stabilise``), in the spirit of
``sympy.codegen.rewriting``: σ(u) = 1/(1+e⁻ᵘ) → ``sigmoid(u)`` (no overflow), log(1+eᵘ) → ``softplus(u)``,
log σ(u) → −softplus(−u), log(1 − σ(u)) → −softplus(u).
"""

from __future__ import annotations

from functools import lru_cache

import sympy as sp
from sympy.printing.codeprinter import PrintMethodNotImplementedError
from sympy.printing.numpy import NumPyPrinter
from sympy.printing.pycode import PythonCodePrinter

from symbp.activations import MinMaxCalls


class sigmoid(sp.Function):  # noqa: N801 - a sympy function reads like the maths
    """σ(u) = 1/(1 + e⁻ᵘ), evaluated without overflow."""

    def fdiff(self, argindex=1):
        s = sigmoid(self.args[0])
        return s * (1 - s)


class softplus(sp.Function):  # noqa: N801
    """log(1 + eᵘ), evaluated without overflow."""

    def fdiff(self, argindex=1):
        return sigmoid(self.args[0])


_u = sp.Wild("u")

#: (pattern, replacement) pairs, applied in order until nothing changes.
RULES: list[tuple[sp.Expr, sp.Expr]] = [
    (1 / (1 + sp.exp(-_u)), sigmoid(_u)),
    (sp.exp(_u) / (1 + sp.exp(_u)), sigmoid(_u)),
    (sp.log(1 + sp.exp(_u)), softplus(_u)),
    (sp.log(sigmoid(_u)), -softplus(-_u)),
    (sp.log(1 - sigmoid(_u)), -softplus(_u)),
    (sp.log(-sigmoid(_u) + 1), -softplus(_u)),
]


@lru_cache(maxsize=4096)
def stabilise(expr: sp.Expr) -> sp.Expr:
    """Apply ``RULES`` until a fixed point (cached: a deep network repeats the same few expressions)."""
    for _ in range(10):
        new = expr
        for pattern, repl in RULES:
            new = new.replace(pattern, repl)
        if new == expr:
            return new
        expr = new
    return expr


_UNSUPPORTED_MSG = "cannot generate code for {}: supported functions are those of the expression parser"


class ScalarPrinter(MinMaxCalls, PythonCodePrinter):
    """Scalar Python for numba ``nopython`` loops: ``math.*`` functions, stable helpers from the runtime."""

    def __init__(self, settings=None):
        super().__init__(dict(settings or {}, fully_qualified_modules=True, strict=True))

    def _print_sigmoid(self, e):
        return f"_rt.sigmoid({self._print(e.args[0])})"

    def _print_softplus(self, e):
        return f"_rt.softplus({self._print(e.args[0])})"

    def _print_Heaviside(self, e):
        return f"(1.0 if {self._print(e.args[0])} > 0 else 0.0)"

    def _print_sign(self, e):
        x = self._print(e.args[0])
        return f"(1.0 if {x} > 0 else (-1.0 if {x} < 0 else 0.0))"

    def _print_Rational(self, e):
        return repr(float(e))

    def _print_Integer(self, e):
        return f"{int(e)}.0" if abs(int(e)) < 2**53 else repr(float(e))

    def _print_Pow(self, e, rational=False):
        if e.exp.is_Integer and 2 <= int(e.exp) <= 4:
            b = self._print(e.base)
            return "(" + "*".join([f"({b})"] * int(e.exp)) + ")"
        if e.exp == -1:
            return f"(1.0/({self._print(e.base)}))"
        if e.exp.is_Integer and -4 <= int(e.exp) <= -2:
            b = self._print(e.base)
            return "(1.0/(" + "*".join([f"({b})"] * -int(e.exp)) + "))"
        return super()._print_Pow(e, rational=rational)

    def _print_Function(self, e):
        raise ValueError(_UNSUPPORTED_MSG.format(e.func.__name__))

    def _print_not_supported(self, e):
        raise ValueError(_UNSUPPORTED_MSG.format(type(e).__name__))


class ArrayPrinter(NumPyPrinter):
    """Vectorised NumPy: ``numpy.*`` functions on whole arrays."""

    def __init__(self, settings=None):
        super().__init__(dict(settings or {}, strict=True))

    def _print_sigmoid(self, e):
        return f"scipy.special.expit({self._print(e.args[0])})"  # one ufunc call, both stable branches

    def _print_softplus(self, e):
        return f"_rt.np_softplus({self._print(e.args[0])})"

    def _print_Heaviside(self, e):
        return f"numpy.greater({self._print(e.args[0])}, 0).astype(float)"

    # NumPyPrinter falls back to PythonCodePrinter's ``math.erf``, which fails on arrays.
    def _print_erf(self, e):
        return f"scipy.special.erf({self._print(e.args[0])})"

    def _print_erfc(self, e):
        return f"scipy.special.erfc({self._print(e.args[0])})"

    def _print_Rational(self, e):
        return repr(float(e))

    def _print_Function(self, e):
        raise ValueError(_UNSUPPORTED_MSG.format(e.func.__name__))

    def _print_not_supported(self, e):
        raise ValueError(_UNSUPPORTED_MSG.format(type(e).__name__))


def _doprint(printer, expr: sp.Expr, names: dict[sp.Symbol, str]) -> str:
    try:
        return printer.doprint(expr.xreplace({s: sp.Symbol(n) for s, n in names.items()}))
    except PrintMethodNotImplementedError as exc:  # a function sympy's own printers refuse (e.g. fresnels)
        what = str(exc).splitlines()[0].rsplit(": ", 1)[-1]
        raise ValueError(_UNSUPPORTED_MSG.format(what)) from None


def scalar_code(expr: sp.Expr, names: dict[sp.Symbol, str]) -> str:
    return _doprint(ScalarPrinter(), expr, names)


def array_code(expr: sp.Expr, names: dict[sp.Symbol, str]) -> str:
    return _doprint(ArrayPrinter(), expr, names)
