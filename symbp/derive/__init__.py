"""Derive: BP1–BP4 as sympy expressions (``calculus``: σ′, ∇ₐC, δᴸ; ``equations``: per-layer forms and
renderings; ``check``: an independent sum-over-paths derivation used by the tests)."""

from symbp.derive.calculus import ActivationDerivative, OutputError, activation_derivative, output_error

__all__ = [
    "ActivationDerivative",
    "Equations",
    "LayerEquations",
    "OutputError",
    "activation_derivative",
    "derive",
    "output_error",
]
from symbp.derive.equations import Equations, LayerEquations, derive  # noqa: E402
