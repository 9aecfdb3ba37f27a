"""Weight penalties (regularisers) as sympy expressions in the weight symbol ``w``.

Takes: a name, a penalty R(w) (a sympy expression in ``sb.w``, or text for the whitelist parser) and a strength
λ.  Gives: a validated ``Regularizer``.  The cost gets (λ/n)·Σ R(w) over every weight of the network (not the
biases; n the number of training samples, as in the book's network2), and the update rule that runs is

    w → w − (ηλ/n)·R′(w) − (η/m)·Σₓ ∂Cₓ/∂w

with R′ derived by sympy and generated into the whole-epoch kernel.  ``L2(λ)`` (R = w²/2: the book's λ/2n·Σw²,
the weight decay w → (1 − ηλ/n)·w, exactly what ``fit(lmbda=λ)`` runs) and ``L1(λ)`` (R = |w|, R′ = sgn w
with sgn 0 = 0: the book's eq. 97) are built in; any other penalty is a ``Regularizer`` of its own, e.g.
``sb.Regularizer("elastic", 0.5*sp.Abs(w) + w**2/4)`` or ``sb.Regularizer.parse("elastic", "abs(w)/2 + w^2/4")``.
"""

from __future__ import annotations

import math
import numbers

import mpmath
import numpy as np
import sympy as sp

from symbp import limits
from symbp.activations import (
    check_expression,
    check_name,
    declared,
    describe,
    differentiate,
    expression_text,
    mp_value,
    real_problem,
)
from symbp.parsing import parse
from symbp.render import factor_latex, factor_text
from symbp.symbols import numpy_function, w, z


class Regularizer:
    """A penalty (λ/n)·Σ R(w) over the weights; ``derivative`` is R′(w) as sympy gives it.

    Declaring one checks, within the derivation budget, the name, the expression (only ``w`` may appear; size,
    powers and constants as for activations), that R is real for every real w, that sympy can differentiate
    it, and that R′ is defined everywhere (a step in R, whose R′ holds a DiracDelta, is refused).  ``strength``
    λ must be finite and non-negative.
    """

    def __init__(self, name: str, expr, strength: float = 1.0):
        self.name = check_name("Regularizer", name)
        try:
            value = float(strength) if isinstance(strength, numbers.Real) and not isinstance(strength, bool) else None
        except OverflowError:  # an integer too large for a float
            value = math.inf
        if value is None or not math.isfinite(value) or value < 0:
            shown = repr(strength)
            shown = shown if len(shown) <= 40 else f"{shown[:12]}…({len(shown)} characters)"
            raise ValueError(f"Regularizer {name!r}: strength must be a finite non-negative number, got {shown}")
        self.strength = value
        self.expr, self.derivative = declared("Regularizer", name, expr, lambda: self._declare(expr))
        same, finished = limits.run_optional(lambda: sp.simplify(self.derivative - w) == 0, seconds=2.0)
        #: R′(w) = w: the L2 penalty, which the kernels run as the weight decay 1 − ηλ/n (no extra pass)
        self.is_l2 = bool(finished and same)

    def _declare(self, expr):
        where = f"Regularizer {self.name!r}"
        expr = check_expression("Regularizer", self.name, expr, {w})
        if w not in expr.free_symbols:
            raise ValueError(f"{where}: {describe(expr)} does not depend on w")
        problem = real_problem(expr.xreplace({w: z}))
        if problem:
            raise ValueError(f"{where}: {describe(expr)} is not real for {problem.replace('z', 'w')}; a penalty "
                             "must be defined for every real weight")
        derivative = differentiate(where, expr, w, "with respect to w")
        if derivative.has(sp.DiracDelta):
            raise ValueError(f"{where}: R′(w) = {describe(derivative)} is not defined as a function (R has a step); "
                             "gradient descent needs a penalty whose derivative exists almost everywhere")
        for what, e in (("R(w)", expr), ("R′(w)", derivative)):
            pole = _first_pole(e)
            if pole is not None:
                raise ValueError(f"{where}: {what} = {describe(e)} is not finite at w = {pole:g}; a penalty and its "
                                 "derivative must be finite for every real weight (weights do reach such values, "
                                 "0 above all)")
        return expr, derivative

    @classmethod
    def parse(cls, name: str, text_: str, strength: float = 1.0) -> Regularizer:
        """Build a regulariser from text with the whitelist parser (only ``w`` may appear)."""
        check_name("Regularizer", name)
        try:
            expr = parse(text_, allowed=("w",))
        except ValueError as exc:
            raise ValueError(f"Regularizer {name!r}: {exc}") from None
        return cls(name, expr, strength)

    # -- values --------------------------------------------------------------------------------------
    @property
    def text(self) -> str:
        """R(w) as text that ``Regularizer.parse`` reads back."""
        return expression_text(self.expr)

    def penalty(self, weights, n: int) -> float:
        """(λ/n)·Σ R(w) over the weight arrays (float64)."""
        if not self.strength or not n:
            return 0.0
        f = numpy_function(w, self.expr)
        total = sum(float(np.sum(np.broadcast_to(f(np.asarray(W, dtype=np.float64)), np.shape(W))))
                    for W in weights)
        return self.strength / n * total

    def gradient(self, W, n: int) -> np.ndarray:
        """(λ/n)·R′(W), elementwise (float64): what the update subtracts, times η."""
        f = numpy_function(w, self.derivative)
        W = np.asarray(W, dtype=np.float64)
        return self.strength / n * np.broadcast_to(f(W), W.shape)

    # -- the update rule, for equations() ------------------------------------------------------------
    def update_text(self, momentum: bool = False) -> str:
        pen = f"(ηλ/n)·{factor_text(self.derivative)}"  # bracketed by precedence: it is what the kernel runs
        if momentum:
            return f"v → μ·v − {pen} − (η/m)·Σₓ ∂Cₓ/∂w,  w → w + v"
        if self.is_l2:
            return "w → (1 − ηλ/n)·w − (η/m)·Σₓ ∂Cₓ/∂w"
        return f"w → w − {pen} − (η/m)·Σₓ ∂Cₓ/∂w"

    def update_latex(self, momentum: bool = False) -> str:
        pen = r"\frac{\eta\lambda}{n} %s" % factor_latex(self.derivative)
        grad = r"\frac{\eta}{m}\sum_x \frac{\partial C_x}{\partial w}"
        if momentum:
            return r"v \to \mu v - %s - %s, \quad w \to w + v" % (pen, grad)
        if self.is_l2:
            return r"w \to \left(1 - \frac{\eta\lambda}{n}\right) w - %s" % grad
        return r"w \to w - %s - %s" % (pen, grad)

    def config(self) -> dict:
        """JSON-able: ``{"name", "expr" (text), "strength"}``; ``from_config`` reads it back through the parser."""
        return {"name": self.name, "expr": self.text, "strength": self.strength}

    @classmethod
    def from_config(cls, d: dict) -> Regularizer:
        return cls.parse(d["name"], d["expr"], d.get("strength", 1.0))

    def with_strength(self, strength: float) -> Regularizer:
        return Regularizer(self.name, self.expr, strength)

    def __eq__(self, other):
        return (isinstance(other, Regularizer) and (self.name, self.strength) == (other.name, other.strength)
                and sp.srepr(self.expr) == sp.srepr(other.expr))

    def __hash__(self):
        return hash((self.name, self.strength, sp.srepr(self.expr)))

    def __repr__(self):
        return f"Regularizer({self.name!r}, {self.expr}, strength={self.strength:g})"


#: where a penalty's poles are looked for: 0 (where L1-like penalties drive weights), near it, and round numbers
_POLE_PROBES = (0.0, 1e-8, -1e-8, 0.5, -0.5, 1.0, -1.0, 2.0, -2.0, 3.0, -3.0, 10.0, -10.0)


def _first_pole(expr: sp.Expr) -> float | None:
    """The first of ``_POLE_PROBES`` where expr (in w) is infinite or undefined, confirmed with mpmath (so a NumPy
    overflow is not taken for a pole); None if it is finite at all of them.  Sampling, not proof."""
    probes = np.array(_POLE_PROBES)
    with np.errstate(all="ignore"):
        try:
            values = np.broadcast_to(np.asarray(numpy_function(w, expr)(probes), dtype=complex), probes.shape)
        except Exception:  # noqa: BLE001 - NumPy fails in many ways on odd functions: mpmath decides each point
            values = np.full(probes.shape, np.nan)
    for p, v in zip(_POLE_PROBES, values):
        if np.isfinite(v):
            continue
        exact = mp_value(expr, (w,), (p,))
        if exact is None or isinstance(exact, str) or not mpmath.isfinite(exact):
            return p
    return None


def L2(lmbda: float) -> Regularizer:
    """The book's L2 penalty (λ/2n)·Σw² (chapter 3, eq. 85): the same as ``fit(lmbda=λ)``."""
    return Regularizer("L2", w**2 / 2, lmbda)


def L1(lmbda: float) -> Regularizer:
    """The book's L1 penalty (λ/n)·Σ|w| (chapter 3, eq. 95): w → w − (ηλ/n)·sgn(w) − η·∂C₀/∂w, sgn(0) = 0."""
    return Regularizer("L1", sp.Abs(w), lmbda)
