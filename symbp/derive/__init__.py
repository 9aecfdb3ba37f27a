"""Derive: BP1–BP4 as sympy expressions (``calculus``: σ′, ∇ₐC, δᴸ; ``equations``: per-layer forms and
renderings; ``check``: an independent sum-over-paths derivation used by the tests; ``limits``: the time budget
and size bounds of every derivation, set with ``budget(...)`` or ``SYMBP_DERIVE_SECONDS``).

The calculus and equations names are imported on first use, so that the declaration modules (activations,
costs) can import ``symbp.derive.limits`` without a cycle.
"""

from symbp.derive.limits import MAX_OPS, budget

__all__ = [
    "MAX_OPS",
    "ActivationDerivative",
    "Equations",
    "LayerEquations",
    "OutputError",
    "activation_derivative",
    "budget",
    "derive",
    "output_error",
]

_LAZY = {
    "ActivationDerivative": "calculus",
    "OutputError": "calculus",
    "activation_derivative": "calculus",
    "output_error": "calculus",
    "Equations": "equations",
    "LayerEquations": "equations",
    "derive": "equations",
}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'symbp.derive' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"symbp.derive.{module}"), name)
    globals()[name] = value
    return value
