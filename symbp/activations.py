"""Activation functions as sympy expressions.

Takes: a name and an expression in ``z`` (or, for ``Activation.parse``, text for the whitelist parser).
Gives: a validated ``Activation``: elementwise σ(z), or — for ``softmax`` — the normalised vector form
aⱼ = f(zⱼ) / Σₖ f(zₖ) with f = exp.  Validation happens here, at construction, so errors name the
activation the user wrote instead of surfacing later in derivation or code generation.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass

import mpmath
import numpy as np
import sympy as sp

from symbp import limits
from symbp.parsing import MAX_EXPONENT, MAX_POWER_NESTING, parse, power_problem
from symbp.symbols import canonical, numpy_function, z

#: What the name of an activation or a cost may look like: a letter or ``_``, then up to 63 letters, digits, ``_``
#: or ``-`` (ASCII only).  Names reach saved models, kernel caches and generated source, so nothing else is
#: accepted: no quotes, spaces, newlines or non-ASCII letters.
NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")
_NAME_RULE = ("a non-empty string of at most 64 characters: a letter or _, then letters, digits, _ or - "
              "(ASCII, no spaces or quotes)")


def check_name(kind: str, name) -> str:
    """``name`` if it matches ``NAME_PATTERN``; ``ValueError`` saying what names may look like otherwise."""
    if isinstance(name, str) and NAME_PATTERN.fullmatch(name):
        return name
    shown = repr(name[:70] + "...") if isinstance(name, str) and len(name) > 70 else repr(name)
    raise ValueError(f"{kind.lower()} name must be {_NAME_RULE}, like 'leaky_relu' or 'my-cost'; got {shown}")


def describe(expr, limit: int = 80) -> str:
    """Short text for an expression in messages (without printing a huge tree in full)."""
    if isinstance(expr, sp.Basic) and node_count(expr, 4 * limit) > 4 * limit:
        text = f"{type(expr).__name__}({', '.join(str(x)[:20] for x in expr.args[:3])}, ...)"
    else:
        text = str(expr)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def node_count(expr: sp.Basic, limit: int) -> int:
    """Nodes of the expression tree, counting stops after ``limit`` (so a huge shared-subtree tree is cheap)."""
    n, stack = 0, [expr]
    while stack and n <= limit:
        node = stack.pop()
        n += 1
        stack.extend(node.args)
    return n


def check_size(where: str, what: str, expr: sp.Expr, max_ops: int | None = None) -> None:
    """``ValueError`` if ``expr`` (``what`` of ``where``, for the message) is larger than ``max_ops`` operations
    (default ``limits.current().max_ops``, ``MAX_OPS`` unless changed with ``sb.derive.budget``)."""
    max_ops = limits.current().max_ops if max_ops is None else max_ops
    nodes = node_count(expr, 20 * max_ops)
    ops = math.inf if nodes > 20 * max_ops else sp.count_ops(expr)
    if ops > max_ops:
        size = f"more than {20 * max_ops} tree nodes" if ops == math.inf else f"{ops} operations"
        raise ValueError(f"{where}: {what} has {size}; at most {max_ops} operations are allowed "
                         f"(the size bound of the derivation: sb.derive.budget(max_ops=...))")


# ------------------------------------------------------------------------------------------------ constants


def _constant_nodes(expr: sp.Basic):
    """Every constant sub-expression of ``expr`` (numbers, and constant expressions such as exp(800)),
    Piecewise conditions included."""
    stack = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, sp.Expr) and node.is_number and not isinstance(node, sp.NumberSymbol):
            yield node
        stack.extend(node.args)


def _magnitude(c: sp.Expr) -> mpmath.mpf | None:
    """|c| as an mpmath number with an unbounded exponent (None if it cannot be evaluated)."""
    try:
        if isinstance(c, sp.Rational):
            return abs(mpmath.mpf(c.p) / c.q)
        if isinstance(c, sp.Float):
            return abs(mpmath.mpf(c._mpf_))
        value = c.evalf(15)
        if not value.is_Number:
            re_, im_ = value.as_real_imag()
            if not (re_.is_Number and im_.is_Number):
                return None
            return mpmath.sqrt(mpmath.mpf(re_) ** 2 + mpmath.mpf(im_) ** 2)
        return abs(mpmath.mpf(value))
    except (TypeError, ValueError, ArithmeticError, NotImplementedError):
        return None


def check_dtype_range(expr: sp.Basic, dtype: str, where: str) -> None:
    """``ValueError`` naming the constant if any constant of ``expr`` (including those in Piecewise conditions, and
    constant sub-expressions such as ``exp(800)``) has a magnitude beyond ``np.finfo(dtype).max``, or is nonzero
    and below its smallest normal number ``np.finfo(dtype).tiny`` (it would lose its precision or become 0).
    ``where`` starts the message, e.g. ``"layer 2 (sigmoid)"``."""
    info = np.finfo(dtype)
    big, tiny = mpmath.mpf(float(info.max)), mpmath.mpf(float(info.tiny))
    for c in _constant_nodes(expr):
        m = _magnitude(c)
        if m is None or m == 0:
            continue
        shown = f"{mpmath.nstr(m, 4)}" if c.is_Number else f"{describe(c)} (about {mpmath.nstr(m, 4)})"
        if m > big:
            raise ValueError(f"{where}: the constant {shown} is beyond the {info.dtype} range (its largest number "
                             f"is {float(info.max):.4g}): it would be inf")
        if m < tiny:
            raise ValueError(f"{where}: the constant {shown} is below the smallest normal {info.dtype} number "
                             f"{float(info.tiny):.4g}: it would lose its precision or become 0")


# ------------------------------------------------------------------------------------------------ sampling

#: z at which an activation must be real: dense near 0, out to 10**12 both ways.
_REAL_GRID = np.unique(np.concatenate([-np.geomspace(1e12, 1e-6, 400), [0.0], np.geomspace(1e-6, 1e12, 400),
                                       np.linspace(-20.0, 20.0, 4001)]))
_EXAMPLES = (-1.0, 1.0, -2.0, 2.0, -0.5, 0.5, 0.0, -10.0, 10.0, -100.0, 100.0, -1000.0, 1000.0)


def _numpy_values(expr: sp.Expr, syms: tuple, args: tuple, shape) -> np.ndarray | None:
    """expr evaluated with NumPy (complex values kept), broadcast to ``shape``; None if NumPy cannot."""
    try:
        with np.errstate(all="ignore"):
            v = np.asarray(numpy_function(syms, expr)(*args))
        v = np.broadcast_to(v, shape)
        if v.dtype.kind not in "fc":
            v = v.astype(float)
        return v
    except Exception:  # noqa: BLE001 - lambdify/NumPy fail in many ways on odd functions: no verdict
        return None


def mp_value(expr: sp.Expr, syms: tuple, point: tuple, digits: int = 30,
              _cache: dict = {}):  # noqa: B006 - a small cache
    """expr at ``point`` with mpmath at ``digits`` digits (no overflow or underflow): an mpmath number, the string
    "undefined" for a domain error, or None when it cannot be evaluated (a singular point, an unknown function)."""
    key = (expr, syms)
    f = _cache.get(key)
    if f is None:
        try:
            f = sp.lambdify(syms, expr, modules="mpmath")
        except Exception:  # noqa: BLE001
            f = False
        if len(_cache) > 256:
            _cache.clear()
        _cache[key] = f
    with mpmath.workdps(digits):
        if f is not False:
            try:
                v = mpmath.mpmathify(f(*(mpmath.mpf(float(p)) for p in point)))
                return "undefined" if mpmath.isnan(v) else v
            except (ZeroDivisionError, OverflowError):
                return None
            except ValueError:
                return "undefined"
            except Exception:  # noqa: BLE001 - fall back to sympy's own evaluation
                pass
        try:
            v = expr.evalf(digits, subs=dict(zip(syms, (sp.Float(float(p), digits) for p in point))))
            re_, im_ = v.as_real_imag()
            if not (re_.is_Number and im_.is_Number):
                return None
            if re_ is sp.nan or im_ is sp.nan:
                return "undefined"
            return mpmath.mpc(mpmath.mpf(re_), mpmath.mpf(im_))
        except (TypeError, ValueError, ArithmeticError, NotImplementedError):
            return None


def _not_real_at(expr: sp.Expr, zv: float) -> bool:
    """Is σ(zv) complex or undefined (confirmed at 30 digits, so overflow in NumPy is not mistaken for it)?"""
    v = mp_value(expr, (z,), (zv,))
    if v is None:
        return False
    if isinstance(v, str):
        return True
    return bool(mpmath.im(v) != 0 and abs(mpmath.im(v)) > mpmath.mpf("1e-20") * abs(v))


def _bad_on_grid(values: np.ndarray) -> np.ndarray:
    if np.iscomplexobj(values):
        return np.isnan(values.real) | (np.abs(values.imag) > 1e-12 * np.maximum(1.0, np.abs(values.real)))
    return np.isnan(values)


def _boundary(expr: sp.Expr, bad: float, good: float) -> float:
    """A point between ``bad`` and ``good`` where σ stops being real, by bisection, rounded to a short number."""
    for _ in range(80):
        mid = (bad + good) / 2
        if mid in (bad, good):
            break
        v = _numpy_values(expr, (z,), (np.array([mid]),), (1,))
        if v is not None and bool(_bad_on_grid(v)[0]):
            bad = mid
        else:
            good = mid
    b = good if abs(good) > 1e-9 else 0.0
    return float(f"{b:.6g}")


def _region(expr: sp.Expr, grid: np.ndarray, bad: np.ndarray) -> tuple[str, list[float]]:
    """Words for where σ is not real, from the grid points where NumPy found it not real, and the boundaries."""
    idx = np.flatnonzero(bad)
    runs = np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)
    if len(runs) != 1:
        return "some real z", []
    lo, hi = runs[0][0], runs[0][-1]
    parts = []
    if lo > 0:
        b = _boundary(expr, grid[lo], grid[lo - 1])
        parts.append(("≤" if _not_real_at(expr, b) else "<", b))
    if hi < len(grid) - 1:
        b = _boundary(expr, grid[hi], grid[hi + 1])
        parts.append(("≤" if _not_real_at(expr, b) else "<", b))
    bounds = [b for _, b in parts]
    if not parts:
        return "every real z", bounds
    if len(parts) == 2:
        (op1, b1), (op2, b2) = parts
        return f"{b1:g} {op1} z {op2} {b2:g}", bounds
    op, b = parts[0]
    if hi == len(grid) - 1:  # the bad run reaches +inf: z > b
        return f"z {'≥' if op == '≤' else '>'} {b:g}", bounds
    return f"z {op} {b:g}", bounds


def real_problem(expr: sp.Expr) -> str | None:
    """Where σ(z) is not a real number for real z ("z < 0 (e.g. z = -1)"), or None if it is real on a wide grid.

    NumPy evaluates σ on ``_REAL_GRID`` (or mpmath on a coarse part of it when NumPy cannot); each point where it
    looks complex or NaN is confirmed at 30 digits with mpmath, so an overflow (inf − inf) is not taken for it.
    Isolated singular points (0/0 at one z) are not refused.  Sampling, not proof: a σ complex only between grid
    points passes."""
    grid = _REAL_GRID
    values = _numpy_values(expr, (z,), (grid,), grid.shape)
    if values is None:
        grid = np.unique(np.concatenate([grid[::40], np.array(_EXAMPLES)]))
        bad = np.array([_not_real_at(expr, float(v)) for v in grid])
        confirmed = bad
    else:
        bad = _bad_on_grid(values)
        if not bad.any():
            return None
        idx = np.flatnonzero(bad)
        picks = set(idx[np.linspace(0, len(idx) - 1, min(len(idx), 25)).astype(int)])
        picks |= {int(np.searchsorted(grid, e)) for e in _EXAMPLES if e in grid and bad[np.searchsorted(grid, e)]}
        confirmed = np.zeros_like(bad)
        for i in picks:
            confirmed[i] = _not_real_at(expr, float(grid[i]))
        if not confirmed.any():
            return None
        if not all(confirmed[i] for i in picks):
            bad = confirmed  # NumPy's verdict is not reliable here: describe the confirmed points only
    if not confirmed.any():
        return None
    region, bounds = _region(expr, grid, bad) if values is not None and bad is not confirmed else ("some real z", [])
    # an example: -1 or 1 if they are one, else a round number next to the region's boundary, else a grid point
    near = [float(f"{b + d:.6g}") for b in bounds for d in (-1.0, 1.0, -0.5, 0.5)]
    example = next((e for e in (-1.0, 1.0, *near, *_EXAMPLES) if _not_real_at(expr, e)),
                   float(grid[np.flatnonzero(confirmed)[0]]))
    return f"{region} (e.g. z = {example:g})"


def _trusted(e: sp.Expr, syms: tuple, point: tuple, numpy_value):
    """e at ``point`` if mpmath gives the same number at 30 and at 60 digits (a zero only if NumPy agrees), else
    None: cancellation (sinh(z) − cosh(z) at z = 50 or 1000) must not pass for the function's value."""
    m30, m60 = mp_value(e, syms, point, 30), mp_value(e, syms, point, 60)
    if m30 is None or m60 is None or isinstance(m30, str) or isinstance(m60, str):
        return None
    if m30 == 0 or m60 == 0:
        return m60 if m30 == 0 and m60 == 0 and numpy_value is not None and numpy_value == 0 else None
    return m60 if abs(m30 - m60) <= mpmath.mpf("1e-20") * abs(m60) else None


def same_function(e1: sp.Expr, e2: sp.Expr, syms: tuple, points: tuple) -> bool:
    """e1 ≡ e2?  Structurally equal first; else unequal if the numbers differ at a sample point (NumPy first,
    each difference confirmed with mpmath, see ``_trusted``); else ``sympy.simplify`` of the difference within
    the budget (at most 2 s) decides, and if it runs out of time the numbers do."""
    if e1 == e2:
        return True
    diff = e1 - e2
    if diff == 0:
        return True
    shape = points[0].shape
    v1, v2 = _numpy_values(e1, syms, points, shape), _numpy_values(e2, syms, points, shape)
    if v1 is not None and v2 is not None:
        with np.errstate(all="ignore"):
            both = np.isfinite(v1) & np.isfinite(v2)
            close = np.abs(v1 - v2) <= 1e-9 * np.maximum(1.0, np.maximum(np.abs(v1), np.abs(v2)))
        suspects = np.flatnonzero(~(both & close) & ~(np.isnan(v1) & np.isnan(v2)))[:20]
    else:
        suspects = range(0, shape[0], max(1, shape[0] // 20))
    for i in suspects:
        point = tuple(float(p[i]) for p in points)
        r1 = _trusted(e1, syms, point, None if v1 is None else v1[i])
        r2 = _trusted(e2, syms, point, None if v2 is None else v2[i])
        if r1 is not None and r2 is not None and abs(r1 - r2) > mpmath.mpf("1e-12") * max(abs(r1), abs(r2)):
            return False
    zero, finished = limits.run_optional(lambda: sp.simplify(diff) == 0, seconds=2.0)
    return bool(zero) if finished else True


# ------------------------------------------------------------------------------------------------ declaration


def check_expression(kind: str, name: str, expr: sp.Expr, allowed: set[sp.Symbol]) -> sp.Expr:
    """The checks every declared expression passes (in this order): a sympy scalar in the allowed symbols, no
    undefined functions, infinities or partial piecewise; at most ``MAX_OPS`` operations; constant exponents
    within ``MAX_EXPONENT`` and powers with non-constant exponents nested at most ``MAX_POWER_NESTING`` deep, as
    sympy holds it (after merging powers); every constant within the float64 range."""
    if isinstance(expr, str):
        raise TypeError(f"{kind} {name!r}: give a sympy expression, or use {kind}.parse(name, text) for text")
    if isinstance(expr, sp.Basic) and node_count(expr, limits.MAX_NODES) > limits.MAX_NODES:
        raise ValueError(f"{kind} {name!r}: the expression has more than {limits.MAX_NODES} tree nodes")
    try:
        expr = canonical(expr)
    except (sp.SympifyError, TypeError) as exc:
        raise ValueError(f"{kind} {name!r}: not a sympy expression: {describe(expr)}") from exc
    if not isinstance(expr, sp.Expr):
        raise ValueError(f"{kind} {name!r}: {describe(expr)} is not a scalar expression")
    extra = expr.free_symbols - allowed
    if extra:
        names = ", ".join(sorted(s.name for s in extra))
        ok = ", ".join(sorted(s.name for s in allowed))
        raise ValueError(f"{kind} {name!r}: undefined symbol(s) {names} in {describe(expr)}; only {ok} may appear")
    if expr.atoms(sp.Function) and any(
        isinstance(f, sp.core.function.AppliedUndef) for f in expr.atoms(sp.Function)
    ):
        raise ValueError(f"{kind} {name!r}: undefined function in {describe(expr)}")
    if expr.has(sp.zoo, sp.oo, -sp.oo, sp.nan, sp.I):
        raise ValueError(f"{kind} {name!r}: {describe(expr)} contains infinities, NaN or complex numbers")
    for pw in expr.atoms(sp.Piecewise):
        if pw.args[-1].cond is not sp.true:
            raise ValueError(f"{kind} {name!r}: piecewise expression {describe(pw)} is undefined where no condition "
                             "holds; add an otherwise branch (where(cond, x, otherwise))")
    where = f"{kind} {name!r}"
    check_size(where, describe(expr), expr)
    problem = power_problem(expr, MAX_EXPONENT, MAX_POWER_NESTING)
    if problem:
        raise ValueError(f"{where}: {problem}, in {describe(expr)}")
    check_dtype_range(expr, "float64", where)
    return expr


def differentiate(where: str, expr: sp.Expr, var: sp.Symbol, what: str) -> sp.Expr:
    derivative = sp.diff(expr, var)
    if derivative.has(sp.Derivative, sp.Subs):
        raise ValueError(f"{where}: sympy cannot differentiate {describe(expr)} {what}")
    check_size(where, f"its derivative {what}", derivative)
    return derivative


def declared(kind: str, name: str, expr, declare):
    """Run a declaration's checks within the budget: past it, a ValueError naming the expression."""
    return limits.run_required(f"{kind} {name!r}: declaring {describe(expr)}", declare)

@dataclass(frozen=True, eq=False)
class Activation:
    """σ(z), applied elementwise to a layer's weighted inputs ``z``.

    ``vector=True`` marks the normalised form aⱼ = σ(zⱼ)/Σₖ σ(zₖ) (softmax when σ = exp); its
    Jacobian is not diagonal, which the derivation handles with an explicit reduction.

    Declaring one checks, within the derivation budget (``sb.derive.budget``): the name (``NAME_PATTERN``),
    the expression (``check_expression``: symbols, size, powers, constants), that sympy can differentiate it
    (σ′ within the size bound), and that σ(z) is real for every real z (sampled; see ``real_problem``).
    """

    name: str
    expr: sp.Expr
    vector: bool = False

    def __post_init__(self):
        check_name("Activation", self.name)
        object.__setattr__(self, "expr", declared("Activation", self.name, self.expr, self._declare))

    def _declare(self) -> sp.Expr:
        where = f"Activation {self.name!r}"
        expr = check_expression("Activation", self.name, self.expr, {z})
        if z not in expr.free_symbols:
            raise ValueError(f"{where}: {describe(expr)} does not depend on z")
        derivative = differentiate(where, expr, z, "with respect to z")
        if self.vector and derivative != expr:
            same, finished = limits.run_optional(lambda: sp.simplify(derivative - expr) == 0, share=0.5)
            if not (finished and same):
                raise ValueError(f"{where}: vector (normalised) activations must use exp(z)")
        problem = real_problem(expr)
        if problem:
            raise ValueError(f"{where}: {describe(expr)} is not real for {problem}; activations must be defined "
                             "for every real z")
        return expr

    @classmethod
    def parse(cls, name: str, text: str) -> Activation:
        """Build an activation from text with the whitelist parser (only ``z`` may appear)."""
        check_name("Activation", name)
        try:
            expr = parse(text, allowed=("z",))
        except ValueError as exc:
            raise ValueError(f"Activation {name!r}: {exc}") from None
        return cls(name, expr)

    @property
    def text(self) -> str:
        """The expression as text that ``Activation.parse`` reads back."""
        return expression_text(self.expr)

    def __call__(self, x):
        """σ applied to a sympy expression ``x`` (elementwise form)."""
        return self.expr.subs(z, x)

    def numpy_function(self):
        """σ as a NumPy function of z, elementwise on arrays (the plain form, also for a vector activation)."""
        return numpy_function(z, self.expr)

    def __eq__(self, other):
        """Same name, same kind and the same function of z (see ``same_function``: bounded in time)."""
        return (
            isinstance(other, Activation)
            and (self.name, self.vector) == (other.name, other.vector)
            and same_function(self.expr, other.expr, (z,), (_EQ_Z,))
        )

    def __hash__(self):
        return hash((self.name, sp.srepr(self.expr), self.vector))

    def __repr__(self):
        kind = ", vector=True" if self.vector else ""
        return f"Activation({self.name!r}, {self.expr}{kind})"


def builtin(cls, name: str, expr: sp.Expr, **fields):
    """One of symbp's own declarations (``sigmoid``, ``quadratic``, ...), made without running the declaration
    checks: they are constants of this code, and ``tests/test_builtins.py`` declares each again through the
    checks and requires the same expression.  Checking them at every ``import symbp`` took 20 ms."""
    obj = object.__new__(cls)
    values = {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
    for key, value in (values | fields | {"name": name, "expr": expr}).items():
        object.__setattr__(obj, key, value)
    return obj


#: z at which two activations are compared by ``__eq__``.
_EQ_Z = np.concatenate([np.linspace(-10.0, 10.0, 81) + 0.0123, [-1000.0, -200.0, -50.0, 50.0, 200.0, 1000.0]])


class MinMaxCalls:
    """Printer mixin: ``Max``/``Min`` as Python's ``max(...)``/``min(...)`` (read by the parser and by numba)."""

    def _print_Max(self, e):
        return "max(" + ", ".join(self._print(x) for x in e.args) + ")"

    def _print_Min(self, e):
        return "min(" + ", ".join(self._print(x) for x in e.args) + ")"


def expression_text(expr: sp.Expr) -> str:
    """Text for an expression that the whitelist parser reads back (used by save/load and the CLI)."""
    from sympy.printing.str import StrPrinter

    class _Printer(MinMaxCalls, StrPrinter):
        def _print_Abs(self, e):
            return f"abs({self._print(e.args[0])})"

        def _print_Heaviside(self, e):
            return f"heaviside({self._print(e.args[0])})"

        def _print_Piecewise(self, e):
            out = self._print(e.args[-1].expr)
            for piece in reversed(e.args[:-1]):
                out = f"where({self._print(piece.cond)}, {self._print(piece.expr)}, {out})"
            return out

        def _print_Exp1(self, e):
            return "e"

        def _print_Float(self, e):
            # a double's shortest exact text (sympy's own keeps 15 digits: 0.1 and 0.1000000000000001 would print
            # alike, and the declaration, which keys the kernel cache, would not tell them apart)
            value = float(e)
            return repr(value) if e._prec == 53 and math.isfinite(value) else super()._print_Float(e)

    return _Printer().doprint(expr)


sigmoid = builtin(Activation, "sigmoid", 1 / (1 + sp.exp(-z)))
tanh = builtin(Activation, "tanh", sp.tanh(z))
relu = builtin(Activation, "relu", sp.Max(0, z))
linear = builtin(Activation, "linear", z)
softplus = builtin(Activation, "softplus", sp.log(1 + sp.exp(z)))
softmax = builtin(Activation, "softmax", sp.exp(z), vector=True)

BUILTIN_ACTIVATIONS = {act.name: act for act in (sigmoid, tanh, relu, linear, softplus, softmax)}
