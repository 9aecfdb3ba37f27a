"""Cost functions as sympy expressions.

Takes: a name and a per-output expression in ``a`` (activation) and ``y`` (target).
Gives: a validated ``Cost``; the cost of one sample is the sum of the expression over the output units,
and ``Model.cost`` reports the mean over samples.  Log-likelihood is −y·ln a summed over outputs, which
for one-hot targets is the book's −ln a_y.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy as sp

from symbp.activations import (
    builtin,
    check_expression,
    check_name,
    declared,
    describe,
    differentiate,
    expression_text,
    same_function,
)
from symbp.parsing import parse
from symbp.symbols import a, y


@dataclass(frozen=True, eq=False)
class Cost:
    """C = Σⱼ c(aⱼ, yⱼ) for one sample.

    Declaring one checks, within the derivation budget (``sb.derive.budget``), the name and the expression as
    for an ``Activation`` (``symbp.activations.check_expression``) and that sympy can differentiate it with
    respect to a (∂C/∂a within the size bound).  A cost need not be defined for every a (log a is not, for
    a ≤ 0): only activations are checked for that.
    """

    name: str
    expr: sp.Expr

    def __post_init__(self):
        check_name("Cost", self.name)
        object.__setattr__(self, "expr", declared("Cost", self.name, self.expr, self._declare))

    def _declare(self) -> sp.Expr:
        expr = check_expression("Cost", self.name, self.expr, {a, y})
        if a not in expr.free_symbols:
            raise ValueError(f"Cost {self.name!r}: {describe(expr)} does not depend on the activation a")
        differentiate(f"Cost {self.name!r}", expr, a, "with respect to a")
        return expr

    @classmethod
    def parse(cls, name: str, text: str) -> Cost:
        """Build a cost from text with the whitelist parser (only ``a`` and ``y`` may appear)."""
        check_name("Cost", name)
        try:
            expr = parse(text, allowed=("a", "y"))
        except ValueError as exc:
            raise ValueError(f"Cost {name!r}: {exc}") from None
        return cls(name, expr)

    @property
    def text(self) -> str:
        return expression_text(self.expr)

    def __eq__(self, other):
        """Same name and the same function of a, y (see ``symbp.activations.same_function``: bounded in time)."""
        return isinstance(other, Cost) and self.name == other.name and same_function(
            self.expr, other.expr, (a, y), _EQ_AY)

    def __hash__(self):
        return hash((self.name, sp.srepr(self.expr)))

    def __repr__(self):
        return f"Cost({self.name!r}, {self.expr})"


_A, _Y = np.meshgrid([-1.5, 0.01, 0.1, 0.37, 0.5, 0.73, 0.9, 0.99, 2.5], [0.0, 0.25, 1.0, -0.5, 3.0])
#: (a, y) at which two costs are compared by ``__eq__``.
_EQ_AY = (_A.ravel() + 0.0017, _Y.ravel())

quadratic = builtin(Cost, "quadratic", (a - y) ** 2 / 2)
cross_entropy = builtin(Cost, "cross_entropy", -(y * sp.log(a) + (1 - y) * sp.log(1 - a)))
log_likelihood = builtin(Cost, "log_likelihood", -y * sp.log(a))

BUILTIN_COSTS = {c.name: c for c in (quadratic, cross_entropy, log_likelihood)}
