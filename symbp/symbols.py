"""The canonical sympy symbols of symbp.

Takes: nothing.  Gives: real sympy symbols ``z`` (weighted input), ``a`` (activation), ``y`` (target),
``w`` (a weight, in regularisers), ``canonical`` and ``numpy_function``.  The whitelist parser is
``symbp.parsing``, which imports this module, not the other way round.

Expressions written by users with plain ``sympy.Symbol("z")`` are accepted everywhere: ``canonical``
matches symbols by name and swaps in the real ones, so ``Abs``/``Max`` differentiate usefully.
"""

from __future__ import annotations

import numpy as np
import sympy as sp

z = sp.Symbol("z", real=True)
a = sp.Symbol("a", real=True)
y = sp.Symbol("y", real=True)
#: a weight, the variable of a regulariser's penalty R(w) (``symbp.regularizers``)
w = sp.Symbol("w", real=True)

SYMBOLS = {"z": z, "a": a, "y": y, "w": w}


def canonical(expr: sp.Expr) -> sp.Expr:
    """Replace any symbol named ``z``, ``a``, ``y`` or ``w`` (whatever its assumptions) by the canonical real one."""
    expr = sp.sympify(expr) if not isinstance(expr, sp.Basic) else expr
    swap = {s: SYMBOLS[s.name] for s in expr.free_symbols if s.name in SYMBOLS and s != SYMBOLS[s.name]}
    return expr.xreplace(swap) if swap else expr


def numpy_function(args, expr: sp.Expr):
    """``expr`` as a NumPy function of ``args`` (elementwise on arrays).  SciPy's special functions come before
    NumPy's, so every function the parser accepts (``erf`` included, which NumPy lacks) works on arrays: the
    penalties, diagnostics and references evaluate what the kernels compute."""
    needs_scipy = any(type(f) not in _NUMPY_FUNCTIONS for f in sp.sympify(expr).atoms(sp.Function))
    if needs_scipy:
        return sp.lambdify(args, expr, modules=["scipy", "numpy"])
    # NumPy's namespace as a module, not the name "numpy": for the name, sympy runs ``from numpy import *``, which
    # imports every submodule NumPy loads lazily (f2py, testing, fft, polynomial, ...: 50 ms of ``import symbp``)
    return sp.lambdify(args, expr, modules=[{"numpy": np}, np])


#: Functions NumPy evaluates itself: an expression of only these is lambdified without SciPy, so that ``import
#: symbp`` (whose built-in activations are lambdified) does not import ``scipy.special`` (0.12 s).  For these
#: SciPy's namespace adds nothing (the same NumPy functions are called either way).
_NUMPY_FUNCTIONS = frozenset({sp.exp, sp.log, sp.Abs, sp.sign, sp.tanh, sp.sinh, sp.cosh, sp.asinh, sp.atan,
                              sp.sin, sp.cos, sp.Max, sp.Min, sp.Piecewise, sp.Heaviside})
