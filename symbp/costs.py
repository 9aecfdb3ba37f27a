"""Cost functions as sympy expressions.

Takes: a name and a per-output expression in ``a`` (activation) and ``y`` (target).
Gives: a validated ``Cost``; the cost of one sample is the sum of the expression over the output units,
and ``Model.cost`` reports the mean over samples.  Log-likelihood is −y·ln a summed over outputs, which
for one-hot targets is the book's −ln a_y.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from symbp.activations import _check_expression, expression_text
from symbp.symbols import a, parse, y


@dataclass(frozen=True, eq=False)
class Cost:
    """C = Σⱼ c(aⱼ, yⱼ) for one sample."""

    name: str
    expr: sp.Expr

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"cost name must be a non-empty string, got {self.name!r}")
        expr = _check_expression("Cost", self.name, self.expr, {a, y})
        if a not in expr.free_symbols:
            raise ValueError(f"Cost {self.name!r}: {expr} does not depend on the activation a")
        derivative = sp.diff(expr, a)
        if derivative.has(sp.Derivative, sp.Subs):
            raise ValueError(f"Cost {self.name!r}: sympy cannot differentiate {expr} with respect to a")
        object.__setattr__(self, "expr", expr)

    @classmethod
    def parse(cls, name: str, text: str) -> Cost:
        """Build a cost from text with the whitelist parser (only ``a`` and ``y`` may appear)."""
        try:
            expr = parse(text, allowed=("a", "y"))
        except ValueError as exc:
            raise ValueError(f"Cost {name!r}: {exc}") from None
        return cls(name, expr)

    @property
    def text(self) -> str:
        return expression_text(self.expr)

    def __eq__(self, other):
        return isinstance(other, Cost) and self.name == other.name and sp.simplify(self.expr - other.expr) == 0

    def __hash__(self):
        return hash((self.name, sp.srepr(self.expr)))

    def __repr__(self):
        return f"Cost({self.name!r}, {self.expr})"


quadratic = Cost("quadratic", (a - y) ** 2 / 2)
cross_entropy = Cost("cross_entropy", -(y * sp.log(a) + (1 - y) * sp.log(1 - a)))
log_likelihood = Cost("log_likelihood", -y * sp.log(a))

BUILTIN_COSTS = {c.name: c for c in (quadratic, cross_entropy, log_likelihood)}
