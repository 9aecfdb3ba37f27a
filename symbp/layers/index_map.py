"""The index language of declared layers: a layer's forward map as structured index expressions.

Takes: a forward map written as text, ``z[f,i,j] = sum(W[f,c,p,q]*x[c,2*i+p-1,2*j+q-1] for c in range(3) for p
in range(3) for q in range(3)) + b[f]`` (read by the whitelist parser's walker: nothing reaches ``eval`` or
``sympify``), or built from sympy objects (``from_sympy``).  Gives: an ``IndexMap`` — the output's index
variables and a list of ``Term``s, each a reduction (``sum`` or ``max``) over its own variables of a scalar
sympy expression in *reads* ``A[e₀, e₁, …]`` whose indices are ``Affine`` expressions with integer coefficients.

Grammar of the right-hand side (Python syntax)::

    rhs    := expr                  a sum of reductions and read expressions, linear in the reductions
            | max(expr for v in range(n) ...)     a max reduction is the whole right-hand side
    expr   := number | read | expr OP expr | -expr | f(expr, ...) | sum(expr for v in range(n) ...)
    read   := NAME[index, ...]      x (the layer's input) or a parameter
    index  := integer affine in the index variables: 2*i + p - 1, i - q, 3, -j + 4

``OP`` and the functions ``f`` are the whitelist parser's (``symbp.parsing``); a divisor must be a constant.
Reads of ``x`` outside its extents are zero (zero padding), except inside ``max(...)``, where the window
positions that read outside are left out (PyTorch's max-pool padding).  Every malformed map is a ``ValueError``
naming the problem: an index bound by nothing, a fractional or data-dependent index, a reduction inside a
reduction, a nonlinear use of a reduction, an unknown array, function or symbol, code in the text.
"""

from __future__ import annotations

import ast
import itertools
import keyword
import math
import operator
import re
from dataclasses import dataclass

import sympy as sp

from symbp.parsing import CONSTANTS, FUNCTIONS, MAX_DEPTH, Parser

#: Longest declaration text, in characters (checked before anything else).
MAX_TEXT = 2000
#: Largest extent of one index variable (a range(n) or an output extent).
MAX_EXTENT = 1 << 16
#: Most reads in one declaration, and most index variables.
MAX_READS, MAX_VARS = 64, 16
#: Most positions of one reduction (the product of its ranges).
MAX_REDUCTION = 1 << 20

_LHS = re.compile(r"^\s*z\s*\[([^\]]*)\]\s*=(?!=)(.*)$", re.S)
#: index variable names: ASCII (Python folds other scripts' look-alikes into one name), not starting with _
_INDEX_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}")


@dataclass(frozen=True)
class Affine:
    """(Σ coeff·var + const) / den with integer coefficients: an index expression.  ``den`` > 0 appears only
    in derived rules (a variable solved from ``2*i + p = y`` is ``(y − p)/2``), where a divisibility guard makes
    the division exact."""

    coeffs: tuple[tuple[str, int], ...] = ()
    const: int = 0
    den: int = 1

    @staticmethod
    def of(terms: dict, const: int = 0, den: int = 1) -> Affine:
        g = math.gcd(den, const, *terms.values())
        if den < 0:
            g = -g
        g = g or 1
        return Affine(tuple(sorted((v, c // g) for v, c in terms.items() if c)), const // g, den // g)

    @staticmethod
    def var(name: str) -> Affine:
        return Affine(((name, 1),))

    @property
    def terms(self) -> dict[str, int]:
        return dict(self.coeffs)

    @property
    def vars(self) -> tuple[str, ...]:
        return tuple(v for v, _ in self.coeffs)

    def coeff(self, var: str) -> int:
        return self.terms.get(var, 0)

    def __add__(self, other: Affine) -> Affine:
        t = {v: c * other.den for v, c in self.coeffs}
        for v, c in other.coeffs:
            t[v] = t.get(v, 0) + c * self.den
        return Affine.of(t, self.const * other.den + other.const * self.den, self.den * other.den)

    def scale(self, k: int) -> Affine:
        return Affine.of({v: c * k for v, c in self.coeffs}, self.const * k, self.den)

    def __neg__(self) -> Affine:
        return self.scale(-1)

    def __sub__(self, other: Affine) -> Affine:
        return self + (-other)

    def subs(self, var: str, value: Affine) -> Affine:
        """This expression with ``var`` replaced by ``value``."""
        c = self.coeff(var)
        if not c:
            return self
        rest = Affine.of({v: k for v, k in self.coeffs if v != var}, self.const, self.den)
        return rest + Affine.of({v: k * c for v, k in value.coeffs}, value.const * c, value.den * self.den)

    def without(self, var: str) -> Affine:
        """This expression with its ``var`` term dropped."""
        return Affine.of({v: c for v, c in self.coeffs if v != var}, self.const, self.den)

    def rename(self, names: dict[str, str]) -> Affine:
        return Affine.of({names.get(v, v): c for v, c in self.coeffs}, self.const, self.den)

    def range(self, extents: dict[str, int]) -> tuple[int, int]:
        """(smallest, largest) value of the numerator over the box 0 ≤ v < extents[v] (den not applied)."""
        lo = hi = self.const
        for v, c in self.coeffs:
            top = c * (extents[v] - 1)
            lo, hi = lo + min(0, top), hi + max(0, top)
        return lo, hi

    def value(self, env: dict[str, int]) -> int:
        num = self.const + sum(c * env[v] for v, c in self.coeffs)
        return num // self.den

    def numerator(self) -> Affine:
        return Affine(self.coeffs, self.const)

    def sympy(self, symbols: dict | None = None) -> sp.Expr:
        sym = symbols or {}
        num = sum((c * sym.get(v, sp.Symbol(v, integer=True)) for v, c in self.coeffs), sp.Integer(self.const))
        return num / self.den if self.den != 1 else num

    def code(self) -> str:
        """Python source (integer arithmetic; an exact floor division when den > 1)."""
        parts = []
        for v, c in self.coeffs:
            term = v if abs(c) == 1 else f"{abs(c)} * {v}"
            parts.append(("- " if c < 0 else "+ ") + term)
        if self.const or not parts:
            parts.append(("- " if self.const < 0 else "+ ") + str(abs(self.const)))
        text = " ".join(parts)
        text = text[2:] if text.startswith("+ ") else "-" + text[2:]
        return f"({text}) // {self.den}" if self.den != 1 else text

    def __str__(self) -> str:
        parts = []
        for v, c in sorted(self.coeffs, key=lambda vc: vc[1] < 0):  # y−2i+1, not −2i+y+1: positive terms first
            term = v if abs(c) == 1 else f"{abs(c)}{v}"
            parts.append(("−" if c < 0 else "+") + term)
        if self.const or not parts:
            parts.append(("−" if self.const < 0 else "+") + str(abs(self.const)))
        text = "".join(parts)
        text = text[1:] if text.startswith("+") else text
        if self.den == 1:
            return text
        return f"{text}/{self.den}" if len(parts) == 1 and not text.startswith("−") else f"({text})/{self.den}"


@dataclass(frozen=True)
class Read:
    """``array[index…]``: ``array`` is ``"x"`` (the layer's input) or a parameter's name."""

    array: str
    index: tuple[Affine, ...]

    def __str__(self) -> str:
        return f"{self.array}[{','.join(str(e) for e in self.index)}]"


@dataclass(frozen=True)
class Term:
    """A reduction ``kind`` ("sum" or "max") over ``vars`` (name, extent) of ``body``, a scalar sympy expression
    whose symbols are ``read_symbol(k)`` for the reads ``reads[k]``.  A term without variables is a plain
    expression of reads (a bias)."""

    kind: str
    vars: tuple[tuple[str, int], ...]
    body: sp.Expr
    reads: tuple[Read, ...]

    @property
    def extents(self) -> dict[str, int]:
        return dict(self.vars)

    @property
    def size(self) -> int:
        return math.prod(n for _, n in self.vars)


def read_symbol(k: int) -> sp.Symbol:
    """The body symbol standing for a term's k-th read."""
    return sp.Symbol(f"_r{k}", real=True)


@dataclass(frozen=True)
class IndexMap:
    """z[out_vars] = Σ of ``terms`` (or the one max term).  ``text`` is the declaration as written (normalised)."""

    out_vars: tuple[str, ...]
    terms: tuple[Term, ...]
    text: str

    @property
    def is_max(self) -> bool:
        return len(self.terms) == 1 and self.terms[0].kind == "max"

    def arrays(self) -> set[str]:
        return {r.array for t in self.terms for r in t.reads}

    def reads_of(self, array: str):
        """(term index, read index, Read) of every read of ``array``."""
        return [(ti, k, r) for ti, t in enumerate(self.terms) for k, r in enumerate(t.reads) if r.array == array]


# ------------------------------------------------------------------------------------------------ parsing


def parse_map(text: str, params: tuple[str, ...]) -> IndexMap:
    """Read a declaration ``z[v, …] = rhs`` (see the module docstring); ``params`` are the parameter names it may
    read besides ``x``."""
    if not isinstance(text, str):
        raise ValueError(f"a layer's map must be given as text, got {type(text).__name__}")
    if len(text) > MAX_TEXT:
        raise ValueError(f"the map is {len(text)} characters long; at most {MAX_TEXT} are allowed")
    m = _LHS.match(text)
    if not m:
        raise ValueError(f"a layer's map is written z[index, ...] = expression, e.g. "
                         f"\"z[j] = sum(W[j,k]*x[k] for k in range(784)) + b[j]\"; got {text[:80]!r}")
    names = [s.strip() for s in m.group(1).split(",")]
    for name in names:
        if not _INDEX_NAME.fullmatch(name) or keyword.iskeyword(name):
            raise ValueError(f"the output's indices must be names of ASCII letters, digits and _ not starting with _ "
                             f"or a digit, as in z[f,i,j]; got z[{m.group(1).strip()}]")
    if len(set(names)) != len(names):
        raise ValueError(f"the output's index names must differ, got z[{', '.join(names)}]")
    if len(names) > 4:
        raise ValueError(f"an output has at most 4 axes, got z[{', '.join(names)}]")
    reserved = {"x", "z", "sum", "max", "range", *params, *FUNCTIONS, *CONSTANTS}
    for name in names:
        if name in reserved:
            raise ValueError(f"{name!r} cannot name an output index (it names an array, a function or a constant)")
    walker = _MapParser(m.group(2), tuple(names), tuple(params))
    try:
        rhs = walker.parse()
    except RecursionError:
        raise ValueError(f"the map is nested too deeply (at most {MAX_DEPTH} levels)") from None
    return _assemble(rhs, walker, tuple(names), " ".join(text.split()))


class _MapParser(Parser):
    """The whitelist parser, extended by reads ``A[i, …]`` and reductions ``sum/max(… for v in range(n))``."""

    def __init__(self, text: str, out_vars: tuple[str, ...], params: tuple[str, ...]):
        super().__init__(text, {})
        self.out_vars, self.params = out_vars, params
        self.scopes: list[dict[str, int]] = []  # the reduction variables bound around the current node
        self.reads: list[Read] = []
        self.read_scope: list[int] = []  # which reduction each read belongs to (-1: none)
        self.reductions: list[tuple[str, tuple[tuple[str, int], ...], sp.Expr]] = []
        self.current = -1
        self.allowed = ("allowed are numbers, reads x[...] of the input and of the parameters "
                        f"({', '.join(params) or 'none'}), + - * / **, sum(... for v in range(n)), "
                        f"max(... for v in range(n)), and the functions {', '.join(sorted(FUNCTIONS))}")

    # the index variables in scope
    def _bound(self) -> dict[str, int | None]:
        env: dict[str, int | None] = {v: None for v in self.out_vars}
        for scope in self.scopes:
            env.update(scope)
        return env

    def expr(self, node: ast.expr) -> sp.Expr:
        if isinstance(node, ast.Subscript):
            return self._read(node)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("sum", "max") \
                and len(node.args) == 1 and isinstance(node.args[0], ast.GeneratorExp):
            return self._reduction(node, node.func.id, node.args[0])
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("sum", "range"):
            raise self._error(node, f"{node.func.id}() is written sum(expression for v in range(n) ...), "
                              "got {q}")
        return super().expr(node)

    def _sympy(self, node, build, *args):
        if build is operator.truediv and args[1].free_symbols:
            raise self._error(node, "{q} divides by a read; a divisor must be a constant")
        if build is sp.Pow and args[1].free_symbols:
            raise self._error(node, "{q} has a read in its exponent; exponents must be constants")
        return super()._sympy(node, build, *args)

    def _name(self, node: ast.Name) -> sp.Expr:
        name = node.id
        if name in self._bound():
            raise self._error(node, f"the index {name!r} is used as a value in {{q}}; index variables may only "
                              "appear inside the brackets of a read")
        if name == "x" or name in self.params:
            raise self._error(node, f"{name!r} is an array: read its elements as {name}[...], in {{q}}")
        if name in ("z",):
            raise self._error(node, "the output z may only be written (on the left of =), not read, in {q}")
        return super()._name(node)

    def _unknown_symbol(self, node: ast.Name) -> sp.Expr:
        lo, _ = self._span(node)
        raise ValueError(f"unknown symbol {node.id!r} (at {self._position(lo)}); the map may read x and the "
                         f"parameters {', '.join(self.params) or '(none)'}, and index with "
                         f"{', '.join(self._bound()) or '(no variables)'}")

    def _read(self, node: ast.Subscript) -> sp.Expr:
        if not isinstance(node.value, ast.Name):
            raise self._refuse(node, "the subscript", "only x and the parameters can be read, as x[i, ...]")
        array = node.value.id
        if array != "x" and array not in self.params:
            if array == "z":
                raise self._error(node, "the output z may only be written (on the left of =), not read, in {q}")
            raise self._error(node, f"unknown array {array!r} in {{q}}; the map reads x (the layer's input) and "
                              f"the parameters {', '.join(self.params) or '(none: give params={{...}})'}")
        items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        index = tuple(self._index(e) for e in items)
        if len(self.reads) >= MAX_READS:
            raise self._error(node, f"{{q}}: the map reads more than {MAX_READS} elements")
        self.reads.append(Read(array, index))
        self.read_scope.append(self.current)
        return read_symbol(len(self.reads) - 1)

    def _index(self, node: ast.expr) -> Affine:
        """An integer affine index, walked by hand (no sympy): names bound by the output or a range; every
        coefficient and the constant stay within ±``MAX_EXTENT`` (no integer overflow in the kernels)."""
        e = self._index_raw(node)
        if abs(e.const) > MAX_EXTENT or any(abs(c) > MAX_EXTENT for _, c in e.coeffs):
            raise self._error(node, f"the index {{q}} has a coefficient or constant beyond ±{MAX_EXTENT}")
        return e

    def _index_raw(self, node: ast.expr) -> Affine:
        bound = self._bound()
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int):
                raise self._error(node, "the index {q} is not an integer; indices are integer affine expressions "
                                  "such as 2*i + p - 1")
            if abs(node.value) > MAX_EXTENT:
                raise self._error(node, f"the index constant {{q}} is too large (at most {MAX_EXTENT})")
            return Affine((), node.value)
        if isinstance(node, ast.Name):
            if node.id in bound:
                return Affine.var(node.id)
            raise self._error(node, "the index {q} is bound by nothing: use an output index "
                              f"({', '.join(self.out_vars)}) or a variable of an enclosing "
                              "sum/max(... for v in range(n))")
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            inner = self._index(node.operand)
            return -inner if isinstance(node.op, ast.USub) else inner
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
            left, right = self._index(node.left), self._index(node.right)
            return left + right if isinstance(node.op, ast.Add) else left - right
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
            left, right = self._index(node.left), self._index(node.right)
            if left.coeffs and right.coeffs:
                raise self._error(node, "the index {q} multiplies two index variables; indices are affine "
                                  "(integer multiples of variables plus a constant)")
            k, e = (left.const, right) if not left.coeffs else (right.const, left)
            if abs(k) > MAX_EXTENT:
                raise self._error(node, f"the index coefficient in {{q}} is too large (at most {MAX_EXTENT})")
            return e.scale(k)
        if isinstance(node, ast.Subscript):
            raise self._error(node, "the index {q} depends on data; indices are integer affine expressions of "
                              "the index variables")
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)):
            raise self._error(node, "the index {q} is fractional; indices are integer affine expressions (use a "
                              "stride: 2*i + p)")
        raise self._error(node, "the index {q} is not an integer affine expression of the index variables")

    def _reduction(self, node: ast.Call, kind: str, gen: ast.GeneratorExp) -> sp.Expr:
        if self.current != -1:
            raise self._error(node, "{q} is a reduction inside a reduction; write one sum(... for a in range(n) "
                              "for b in range(m)) over all its variables")
        scope: dict[str, int] = {}
        taken = set(self._bound()) | {"x", "z", "sum", "max", "range", *self.params, *FUNCTIONS, *CONSTANTS}
        for comp in gen.generators:
            if comp.ifs or comp.is_async:
                raise self._refuse(comp.ifs[0] if comp.ifs else comp.target, "the condition",
                                   "a reduction runs over whole ranges: sum(... for v in range(n)); reads outside x "
                                   "are zero")
            if not isinstance(comp.target, ast.Name):
                raise self._refuse(comp.target, "the loop target", "each 'for' binds one name: for p in range(3)")
            name = comp.target.id
            if not _INDEX_NAME.fullmatch(name):
                raise self._error(comp.target, "the reduction variable {q} must be a name of ASCII letters, digits "
                                  "and _ not starting with _")
            if name in taken or name in scope:
                raise self._error(comp.target, f"the reduction variable {name!r} in {{q}} is already used (an "
                                  "output index, another variable, an array or a function)")
            it = comp.iter
            if not (isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "range"
                    and len(it.args) == 1 and not it.keywords and isinstance(it.args[0], ast.Constant)
                    and type(it.args[0].value) is int):
                raise self._error(it, "a reduction variable runs over range(n) with n a whole number, got {q}")
            n = it.args[0].value
            if not 1 <= n <= MAX_EXTENT:
                raise self._error(it, f"range {{q}} must have between 1 and {MAX_EXTENT} values")
            scope[name] = n
        if math.prod(scope.values()) > MAX_REDUCTION:
            raise self._error(node, f"the reduction {{q}} has {math.prod(scope.values())} positions; at most "
                              f"{MAX_REDUCTION} are allowed")
        self.scopes.append(scope)
        self.current = len(self.reductions)
        self.reductions.append((kind, tuple(scope.items()), sp.Integer(0)))
        try:
            body = self.expr(gen.elt)
        finally:
            self.scopes.pop()
            idx, self.current = self.current, -1
        self.reductions[idx] = (kind, tuple(scope.items()), body)
        return sp.Symbol(f"_R{idx}", real=True)


def _assemble(rhs: sp.Expr, walker: _MapParser, out_vars: tuple[str, ...], text: str) -> IndexMap:
    """Split the right-hand side into terms: Σ cₖ·reductionₖ + (reads outside any reduction)."""
    reds = [sp.Symbol(f"_R{k}", real=True) for k in range(len(walker.reductions))]
    rest = rhs.xreplace({r: 0 for r in reds})
    coeffs = []
    for r in reds:
        c = sp.diff(rhs, r)
        if c.free_symbols:
            raise ValueError(f"a reduction enters the map nonlinearly ({_short(rhs)}): the right-hand side must be a "
                             "sum of reductions (each times a constant) and read expressions; put functions inside "
                             "the reduction, or in the layer's activation")
        coeffs.append(c)
    if sp.expand(rhs - rest - sum(c * r for c, r in zip(coeffs, reds))) != 0:
        raise ValueError(f"a reduction enters the map nonlinearly ({_short(rhs)})")
    terms = []
    for k, ((kind, vars_, body), c) in enumerate(zip(walker.reductions, coeffs)):
        if kind == "max" and (len(reds) != 1 or rest != 0 or c != 1):
            raise ValueError("max(... for v in range(n)) must be the whole right-hand side of the map "
                             "(z[c,i,j] = max(x[c,2*i+p,2*j+q] for p in range(3) for q in range(3)))")
        terms.append(_term(kind, vars_, c * body, walker, k))
    if rest != 0:
        terms.append(_term("sum", (), rest, walker, -1))
    if not terms:
        raise ValueError("the map reads nothing: z must depend on x or on the parameters")
    if sum(len(t.vars) for t in terms) + len(out_vars) > MAX_VARS + len(out_vars):
        raise ValueError(f"the map has more than {MAX_VARS} index variables")
    return IndexMap(out_vars, tuple(terms), text)


def _term(kind: str, vars_, body: sp.Expr, walker: _MapParser, scope: int) -> Term:
    """A term with its own reads, renumbered from 0 in order of appearance."""
    used = sorted((k for k, s in enumerate(walker.read_scope) if s == scope
                   and read_symbol(k) in body.free_symbols))
    rename = {read_symbol(k): read_symbol(n) for n, k in enumerate(used)}
    return Term(kind, tuple(vars_), body.xreplace(rename), tuple(walker.reads[k] for k in used))


def _short(expr, limit: int = 80) -> str:
    text = str(expr)
    return text if len(text) <= limit else text[:limit - 3] + "..."


# ------------------------------------------------------------------------------------------- from sympy


def from_sympy(lhs: sp.Indexed, rhs: sp.Expr, params: tuple[str, ...]) -> IndexMap:
    """An ``IndexMap`` from sympy objects: ``lhs`` = ``z[f, i, j]`` (``sympy.IndexedBase("z")``), ``rhs`` built from
    ``sympy.Sum``/``Max`` reductions are not expressible in sympy for max, so ``rhs`` uses ``Sum`` only; a max
    pool is declared as text.  The expression is printed to the index language and read by ``parse_map``, so
    both routes share every check."""
    if not isinstance(lhs, sp.Indexed) or str(lhs.base) != "z":
        raise ValueError(f"the left-hand side must be z[...] (sympy.IndexedBase('z')), got {lhs!r}")
    text = f"z[{', '.join(str(i) for i in lhs.indices)}] = {_to_text(rhs)}"
    return parse_map(text, params)


def _to_text(e: sp.Expr) -> str:
    if isinstance(e, sp.Sum):
        gens = " ".join(f"for {v} in range({_extent(v, lo, hi)})" for v, lo, hi in e.limits)
        return f"sum({_to_text(e.function)} {gens})"
    if isinstance(e, sp.Indexed):
        return f"{e.base}[{', '.join(str(i) for i in e.indices)}]"
    if isinstance(e, sp.Add):
        return "(" + " + ".join(_to_text(a) for a in e.args) + ")"
    if isinstance(e, sp.Mul):
        return "(" + "*".join(_to_text(a) for a in e.args) + ")"
    if isinstance(e, sp.Pow):
        return f"({_to_text(e.base)})**({_to_text(e.exp)})"
    if isinstance(e, (sp.Integer, sp.Rational, sp.Float)):
        return f"({e})"
    if isinstance(e, sp.Function) and e.func.__name__.lower() in FUNCTIONS:
        return f"{e.func.__name__.lower()}({', '.join(_to_text(a) for a in e.args)})"
    if isinstance(e, sp.Abs):
        return f"abs({_to_text(e.args[0])})"
    raise ValueError(f"cannot declare a layer with {type(e).__name__} ({_short(e)}); use Sum, Indexed reads, "
                     "arithmetic and the parser's functions")


def _extent(v, lo, hi) -> int:
    if lo != 0 or not (hi + 1).is_Integer:
        raise ValueError(f"a Sum runs from 0 to a whole number, got ({v}, {lo}, {hi})")
    return int(hi + 1)


def positions(vars_: tuple[tuple[str, int], ...]):
    """Every assignment of a reduction's variables, in generator order (the first ``for`` outermost)."""
    names = [v for v, _ in vars_]
    for values in itertools.product(*(range(n) for _, n in vars_)):
        yield dict(zip(names, values))


__all__ = ["Affine", "IndexMap", "MAX_DEPTH", "Read", "Term", "from_sympy", "parse_map", "positions", "read_symbol"]
