"""Derive: BP1–BP4 as sympy expressions (``calculus``: σ′, ∇ₐC, δᴸ; ``equations``: per-layer forms and
renderings; ``check``: an independent sum-over-paths derivation used by the tests).

Takes: the declarations (activations, costs, networks).  Gives: the names below; ``limits`` (the time budget
and size bounds of every declaration and derivation, set with ``budget(...)`` or ``SYMBP_DERIVE_SECONDS``) and
``render`` (text and LaTeX renderings) are ``symbp.limits`` and ``symbp.render``, modules outside this package
so that the declarations (activations, costs, regularizers) use them without importing it.
"""

from symbp import limits, render
from symbp.derive.calculus import ActivationDerivative, OutputError, activation_derivative, output_error
from symbp.derive.equations import Equations, LayerEquations, derive
from symbp.limits import MAX_OPS, budget

__all__ = [
    "MAX_OPS",
    "ActivationDerivative",
    "Equations",
    "LayerEquations",
    "OutputError",
    "activation_derivative",
    "budget",
    "derive",
    "limits",
    "output_error",
    "render",
]
