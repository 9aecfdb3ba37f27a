"""Whitelist parser: turns an expression written as text into a sympy expression, safely.

Takes: a string such as ``"z/(1+abs(z))"``, ``"where(z > 0, z, 0.01*z)"`` or
``"-(y*log(a) + (1-y)*log(1-a))"``, and the names of the symbols it may use (``allowed``, default ``("z",)``).
Gives: a sympy expression over the canonical real symbols of ``symbp.symbols`` (``z``, ``a``, ``y``; any
other allowed name becomes a real ``sympy.Symbol``), or ``ValueError`` with a message that quotes the
offending piece of the text and says what is allowed (for a misspelt name, which known names look like it:
``sigmod(z)``: did you mean sigmoid?; a syntax error puts a caret under its column, and ``one_line`` gives the
message on one line, with the column and the quoted line); ``TypeError`` if ``text`` is not a ``str``.

Grammar (Python expression syntax, read by ``ast.parse(text, mode="eval")`` and walked by hand)::

    expr  := number | symbol | constant | expr OP expr | -expr | +expr | (expr) | f(expr, ...)
    OP    := + - * / **      and ^, which means ** (it is rewritten to ** before parsing, so it binds
                             like **: z^2+1 is z**2 + 1 and -z^2 is -(z**2), as in maths)
    number:= int literal (|n| <= 10**6) | float literal (1.5, 0.01, 1e-3; a decimal with at most 20
             significant digits and a decimal exponent within +-30 becomes an exact sympy.Rational,
             e.g. 0.01 is exactly 1/100; other floats become sympy.Float)
    constant := pi | e
    cond  := expr CMP expr [CMP expr ...] | cond & cond | cond | cond | cond and cond | cond or cond
             | ~cond | not cond          (CMP is one of < <= > >=; write (z > 0) & (z < 1), since & binds
                                          tighter than comparisons)

``cond`` may appear only as the first argument of ``where(cond, then, else)``, which gives
``Piecewise((then, cond), (else, True))``.  The functions are those of ``FUNCTIONS`` below:

    exp, log (log(x) or log(x, base)), ln, log1p (log(1+x)), expm1 (exp(x)-1), sqrt, square (x**2),
    abs (Abs), sign, tanh, sinh, cosh, asinh, atan, sin, cos, erf, sigmoid (1/(1+exp(-x))),
    softplus (log(1+exp(x))), relu (Max(0, x)), heaviside and step (Heaviside(x, 0)),
    max and min (Max/Min, 2 to 16 arguments, counting those merged from nested max/min/relu),
    where (Piecewise, see above).

Security guarantees:

* The text never reaches ``eval``, ``exec``, ``compile`` (to code), ``sympify`` or ``parse_expr``: it
  is only tokenised and parsed to an AST by ``ast.parse``, and sympy objects are built by this module from
  the whitelisted node types above.  Every other node type (attribute access, subscripts, lambdas,
  comprehensions, strings and f-strings, containers, ``:=``, ``x if c else y``, keyword or starred
  arguments, calls of anything not in ``FUNCTIONS``) is refused, so no user-chosen Python object, name or
  attribute is ever looked up.
* Bounded work: at most ``MAX_LENGTH`` (1000) characters, checked before anything else; only printable
  ASCII; at most ``MAX_DEPTH`` (50) levels of brackets and of nesting in the syntax tree (chains such as
  ``a + b - c + ...`` or ``a * b / c`` count as one level, of at most ``MAX_CHAIN`` (500) operations), so
  neither ``ast.parse`` nor the walk can exhaust the stack; ``RecursionError`` anywhere becomes ``ValueError``.
* No constant blow-up in sympy: integer literals are at most ``MAX_INT_LITERAL`` (10**6); a constant
  exponent must satisfy |p| <= ``MAX_EXPONENT`` (100), so ``z**(10**10)`` and ``9**9**9`` are refused
  before sympy evaluates them; exp-like functions (exp, expm1, sinh, cosh, sigmoid, softplus) refuse a
  constant argument beyond ``MAX_EXP_ARGUMENT``; every constant sub-expression must be real and lie
  within 10**-1000 .. 10**1000 (or be 0); an exact rational number whose numerator or denominator would
  exceed that size while its value is within it (``(1+1e-30)**100``) becomes a 30-digit ``sympy.Float``
  (a power that would build one is computed in floating point from the start), so no number in the result
  has more than about 3300 bits; one Max/Min takes at most ``MAX_MINMAX_ARGS`` (16) arguments, since sympy
  compares them pairwise.
* Bounded after sympy's own simplification too: sympy merges powers as it builds them (``(z**100)**100`` is
  ``z**10000``, ``z*z*z`` is ``z**3``), so the finished expression is walked once more (``power_problem``): a
  constant exponent beyond ``MAX_MERGED_EXPONENT`` (1000) in magnitude, or powers with non-constant exponents
  nested more than ``MAX_POWER_NESTING`` (2) deep (``z**z**z**z``), are refused.  Declaring an activation or
  a cost applies the tighter ``MAX_EXPONENT`` to the merged exponents as well (see ``symbp.activations``).
  The slowest inputs found so far (a 16-argument max of 8-argument mins) take about a second; this is
  measured, not proven.
* Non-finite results (``1/0``, ``log(0)``, ``zoo``, ``nan``, ``oo``) are refused, as are complex
  literals, booleans, ``None`` and non-finite float literals (``1e999``).
"""

from __future__ import annotations

import ast
import difflib
import keyword
import math
import operator
import re
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import mpmath
import sympy as sp

from symbp.symbols import SYMBOLS

#: Longest accepted text, in characters (checked before parsing).
MAX_LENGTH = 1000
#: Deepest accepted nesting, both of brackets and of the syntax tree.
MAX_DEPTH = 50
#: operations in one chain a + b − c + … (one level of MAX_DEPTH, but one frame each of the walk)
MAX_CHAIN = 500
#: Largest integer literal, in absolute value.
MAX_INT_LITERAL = 10**6
#: Largest constant exponent of a power, in absolute value.
MAX_EXPONENT = 100
#: Constants (and the rationals inside any result) must lie within 10**-N .. 10**N.
MAX_CONSTANT_LOG10 = 1000
#: Most arguments of one Max/Min, counting those that sympy merges in from nested max/min/relu (it compares
#: them pairwise, so the cost grows quickly).
MAX_MINMAX_ARGS = 16
#: Largest constant argument of an exp-like function, in absolute value (exp(2302) ~ 10**999.7).
MAX_EXP_ARGUMENT = 2302
#: Largest constant exponent, in absolute value, after sympy has merged the powers of the finished expression
#: (``(z**100)**100`` is ``z**10000``).  Larger than ``MAX_EXPONENT`` because a flat product ``z*z*...*z`` of the
#: longest text merges to about ``z**500``; declarations (``Activation``, ``Cost``) hold merged exponents to
#: ``MAX_EXPONENT``.
MAX_MERGED_EXPONENT = 1000
#: Deepest nesting of powers whose exponent is not a constant (``z**z`` is 1 level, ``z**z**z`` 2).
MAX_POWER_NESTING = 2
#: Significant digits of the floating-point number that replaces an exact rational too large to keep exactly.
FLOAT_DIGITS = 30

_MAX_RATIONAL_BITS = math.ceil(MAX_CONSTANT_LOG10 * math.log2(10))
_NON_FINITE = (sp.zoo, sp.oo, sp.S.NegativeInfinity, sp.nan)


@dataclass(frozen=True)
class Function:
    """One entry of the function table."""

    build: Callable[..., sp.Basic]  #: makes the sympy expression from the parsed arguments
    min_args: int
    max_args: int | None  #: None: any number >= min_args
    doc: str
    exp_like: bool = False  #: grows like exp: constant arguments are limited to |x| <= MAX_EXP_ARGUMENT
    conditions: tuple[int, ...] = ()  #: positions of arguments that are conditions (comparisons)
    merges: type | None = None  #: sp.Max / sp.Min: arguments of that class are merged into the result
    implicit_args: int = 0  #: arguments the builder adds (relu's 0)

    def arity(self) -> str:
        if self.max_args is None:
            return f"at least {self.min_args} arguments"
        if self.min_args == self.max_args:
            return f"{self.min_args} argument" + ("s" if self.min_args != 1 else "")
        return f"{self.min_args} to {self.max_args} arguments"


def _log(x: sp.Expr, base: sp.Expr | None = None) -> sp.Expr:
    return sp.log(x) if base is None else sp.log(x, base)


def _where(cond: sp.Basic, then: sp.Expr, other: sp.Expr) -> sp.Expr:
    return sp.Piecewise((then, cond), (other, True))


def _heaviside(x: sp.Expr) -> sp.Expr:
    return sp.Heaviside(x, 0)


#: The functions a text may call: name -> how to build it and how many arguments it takes.
FUNCTIONS: dict[str, Function] = {
    "exp": Function(sp.exp, 1, 1, "exp(x)", exp_like=True),
    "log": Function(_log, 1, 2, "natural logarithm; log(x, base) for another base"),
    "ln": Function(sp.log, 1, 1, "natural logarithm"),
    "log1p": Function(lambda x: sp.log(1 + x), 1, 1, "log(1 + x)"),
    "expm1": Function(lambda x: sp.exp(x) - 1, 1, 1, "exp(x) - 1", exp_like=True),
    "sqrt": Function(sp.sqrt, 1, 1, "square root"),
    "square": Function(lambda x: x**2, 1, 1, "x**2"),
    "abs": Function(sp.Abs, 1, 1, "absolute value (Abs)"),
    "sign": Function(sp.sign, 1, 1, "sign: -1, 0 or 1"),
    "tanh": Function(sp.tanh, 1, 1, "hyperbolic tangent"),
    "sinh": Function(sp.sinh, 1, 1, "hyperbolic sine", exp_like=True),
    "cosh": Function(sp.cosh, 1, 1, "hyperbolic cosine", exp_like=True),
    "asinh": Function(sp.asinh, 1, 1, "inverse hyperbolic sine"),
    "atan": Function(sp.atan, 1, 1, "arc tangent"),
    "sin": Function(sp.sin, 1, 1, "sine"),
    "cos": Function(sp.cos, 1, 1, "cosine"),
    "erf": Function(sp.erf, 1, 1, "error function"),
    "sigmoid": Function(lambda x: 1 / (1 + sp.exp(-x)), 1, 1, "1/(1 + exp(-x))", exp_like=True),
    "softplus": Function(lambda x: sp.log(1 + sp.exp(x)), 1, 1, "log(1 + exp(x))", exp_like=True),
    "relu": Function(lambda x: sp.Max(0, x), 1, 1, "Max(0, x)", merges=sp.Max, implicit_args=1),
    "heaviside": Function(_heaviside, 1, 1, "Heaviside(x, 0): 1 for x > 0, else 0"),
    "step": Function(_heaviside, 1, 1, "same as heaviside"),
    "max": Function(sp.Max, 2, None, "largest argument (Max)", merges=sp.Max),
    "min": Function(sp.Min, 2, None, "smallest argument (Min)", merges=sp.Min),
    "where": Function(_where, 3, 3, "where(cond, then, else): Piecewise((then, cond), (else, True))",
                      conditions=(0,)),
}

#: Named constants.
CONSTANTS: dict[str, sp.Expr] = {"pi": sp.pi, "e": sp.E}

_RELATIONS = {ast.Lt: sp.Lt, ast.LtE: sp.Le, ast.Gt: sp.Gt, ast.GtE: sp.Ge}
_ARITHMETIC = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
}
_ADDITIVE = (ast.Add, ast.Sub)
_MULTIPLICATIVE = (ast.Mult, ast.Div)
_OPERATOR_TEXT = {
    ast.FloorDiv: "//", ast.Mod: "%", ast.MatMult: "@", ast.LShift: "<<", ast.RShift: ">>",
    ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^", ast.Not: "not", ast.Invert: "~",
    ast.Eq: "==", ast.NotEq: "!=", ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in",
}
_REFUSED = {
    ast.Attribute: "the attribute access",
    ast.Subscript: "the subscript",
    ast.Slice: "the slice",
    ast.Lambda: "the lambda function",
    ast.ListComp: "the comprehension",
    ast.SetComp: "the comprehension",
    ast.DictComp: "the comprehension",
    ast.GeneratorExp: "the generator expression",
    ast.JoinedStr: "the f-string",
    ast.FormattedValue: "the f-string",
    ast.List: "the list",
    ast.Tuple: "the tuple",
    ast.Dict: "the dict",
    ast.Set: "the set",
    ast.NamedExpr: "the assignment (:=)",
    ast.Starred: "the starred argument",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
}


def _chain_group(op: ast.operator) -> tuple[type, ...] | None:
    for group in (_ADDITIVE, _MULTIPLICATIVE, (ast.BitAnd,), (ast.BitOr,)):
        if isinstance(op, group):
            return group
    return None


def _chain(node: ast.expr, group: tuple[type, ...]) -> list[tuple[ast.operator | None, ast.expr, ast.expr]]:
    """Flatten a left-associative chain ``x0 op1 x1 op2 x2 ...`` of one operator group, without recursion.

    Gives ``[(None, x0, x0), (op1, x1, node1), ...]`` where ``node_i`` is the BinOp ending at ``x_i``.
    """
    items = []
    while isinstance(node, ast.BinOp) and isinstance(node.op, group):
        items.append((node.op, node.right, node))
        node = node.left
    items.append((None, node, node))
    items.reverse()
    return items


def _symbol_table(allowed: Iterable[str]) -> dict[str, sp.Symbol]:
    if isinstance(allowed, str):
        raise TypeError(f"allowed must be a tuple of symbol names such as ('z',), not the string {allowed!r}")
    table = {}
    for name in allowed:
        if not isinstance(name, str):
            raise TypeError(f"allowed symbol names must be str, not {type(name).__name__}")
        if not name.isidentifier() or keyword.iskeyword(name) or name in FUNCTIONS or name in CONSTANTS:
            raise ValueError(f"{name!r} cannot be used as a symbol name")
        table[name] = SYMBOLS.get(name) or sp.Symbol(name, real=True)
    return table


def parse_expression(text: str, allowed: tuple[str, ...] = ("z",)) -> sp.Expr:
    """Parse ``text`` into a sympy expression using only the whitelisted grammar (see the module docstring).

    Only the symbols named in ``allowed`` may appear (``z``, ``a``, ``y`` map to the canonical real symbols of
    ``symbp.symbols``).  Raises ``ValueError`` quoting the offending piece for anything outside the grammar
    or the limits, ``TypeError`` if ``text`` is not a ``str``.
    """
    if not isinstance(text, str):
        raise TypeError(f"expression must be a str, not {type(text).__name__}")
    symbols = _symbol_table(allowed)
    if len(text) > MAX_LENGTH:
        raise ValueError(f"expression is {len(text)} characters long; at most {MAX_LENGTH} are allowed")
    try:
        return Parser(text, symbols).parse()
    except RecursionError:
        raise ValueError(f"expression is too deeply nested (at most {MAX_DEPTH} levels)") from None


class Parser:
    """The whitelist parser of one text: ``Parser(text, symbols).parse()`` walks the text's Python ``ast`` into
    sympy, refusing every node it does not know (``symbp.layers.index_map`` extends it for index maps)."""

    def __init__(self, text: str, symbols: dict[str, sp.Symbol]):
        self.text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
        self.symbols = symbols
        names = ", ".join(symbols) or "(none)"
        self.allowed = (
            f"allowed are numbers, the symbols {names}, the constants pi and e, + - * / ** (or ^), unary + "
            f"and -, parentheses, where(cond, then, else) with conditions built from < <= > >= & |, "
            f"and the functions {', '.join(sorted(FUNCTIONS))}"
        )

    # ----- positions and messages -----------------------------------------------------------------
    def _span(self, node: ast.AST) -> tuple[int, int]:
        start = self.line_starts[node.lineno - 1] + node.col_offset
        end = self.line_starts[node.end_lineno - 1] + node.end_col_offset
        lo = self.back[start]
        return lo, (self.back[end - 1] + 1 if end > start else lo)

    def _position(self, offset: int) -> str:
        col = offset - (self.text.rfind("\n", 0, offset) + 1) + 1
        if "\n" not in self.text:
            return f"column {col}"
        return f"line {self.text.count(chr(10), 0, offset) + 1}, column {col}"

    def _quote(self, node: ast.AST) -> str:
        """The node's piece of the original text, quoted, with its position."""
        lo, hi = self._span(node)
        piece = self.text[lo:hi]
        if len(piece) > 80:
            piece = piece[:77] + "..."
        return f"{piece!r} (at {self._position(lo)})"

    def _refuse(self, node: ast.AST, what: str, hint: str | None = None) -> ValueError:
        return ValueError(f"{what} {self._quote(node)} is not allowed; {hint or self.allowed}")

    def _error(self, node: ast.AST, message: str) -> ValueError:
        return ValueError(message.replace("{q}", self._quote(node)))

    # ----- entry ----------------------------------------------------------------------------------
    def parse(self) -> sp.Expr:
        text = self.text
        if not text:
            raise ValueError("empty expression; " + self.allowed)
        depth = 0
        for i, ch in enumerate(text):
            if not (" " <= ch <= "~" or ch in "\n\t"):
                raise ValueError(f"character {ch!r} at {self._position(i)} is not allowed; expressions are "
                                 f"written in printable ASCII")
            if ch in "([{":
                depth += 1
                if depth > MAX_DEPTH:
                    raise ValueError(f"brackets nested more than {MAX_DEPTH} levels deep (at "
                                     f"{self._position(i)})")
            elif ch in ")]}":
                depth -= 1
        # ^ means power: rewrite it to ** and remember where each character came from.
        src, back = [], []
        for i, ch in enumerate(text):
            src.append("**" if ch == "^" else ch)
            back.extend((i, i) if ch == "^" else (i,))
        back.append(len(text))
        self.src, self.back = "".join(src), back
        self.line_starts = [0] + [i + 1 for i, ch in enumerate(self.src) if ch == "\n"]
        try:
            with warnings.catch_warnings():  # e.g. "invalid decimal literal" (1e5exp): an error follows
                warnings.simplefilter("ignore", SyntaxWarning)
                warnings.simplefilter("ignore", DeprecationWarning)
                tree = ast.parse(self.src, mode="eval")
        except SyntaxError as err:
            raise self._syntax_error(err) from None
        except (ValueError, MemoryError, RecursionError, OverflowError) as err:
            raise ValueError(f"cannot parse expression: {err}") from None
        self._check_depth(tree.body)
        result = self.expr(tree.body)
        problem = power_problem(result, MAX_MERGED_EXPONENT, MAX_POWER_NESTING)
        if problem:
            raise ValueError(f"{problem}, in {_short(result)!r}")
        return result

    def _syntax_error(self, err: SyntaxError) -> ValueError:
        line = min(max(err.lineno or 1, 1), len(self.line_starts))
        if not err.offset or err.offset < 1:  # CPython reports offset 0 for "ran out of text"
            index = len(self.src)
        else:
            index = min(self.line_starts[line - 1] + err.offset - 1, len(self.src))
        message = err.msg
        if index >= len(self.src) and message == "invalid syntax":
            message = "unexpected end of expression"
        offset = self.back[index]
        line_start = self.text.rfind("\n", 0, offset) + 1
        line_end = self.text.find("\n", offset)
        line_text = self.text[line_start:] if line_end < 0 else self.text[line_start:line_end]
        pad = "".join("\t" if ch == "\t" else " " for ch in line_text[: offset - line_start])  # tabs stay aligned
        return ValueError(f"syntax error at {self._position(offset)}: {message}\n    {line_text}\n    {pad}^")

    def _check_depth(self, root: ast.expr) -> None:
        stack = [(root, 1, 1)]
        while stack:
            node, depth, chain = stack.pop()
            if depth > MAX_DEPTH:
                raise self._error(node, f"expression nested more than {MAX_DEPTH} levels deep at {{q}}")
            if chain > MAX_CHAIN:  # the walk recurses once per link: bounded whatever the interpreter's stack
                raise self._error(node, f"expression nested too deeply: a chain of more than {MAX_CHAIN} "
                                        f"operations at {{q}}")
            for child in ast.iter_child_nodes(node):
                if not isinstance(child, (ast.expr, ast.keyword)):
                    continue
                same_chain = (
                    isinstance(node, ast.BinOp) and child is node.left and isinstance(child, ast.BinOp)
                    and _chain_group(node.op) is not None and _chain_group(child.op) == _chain_group(node.op)
                )
                stack.append((child, depth, chain + 1) if same_chain else (child, depth + 1, 1))

    # ----- values ---------------------------------------------------------------------------------
    def expr(self, node: ast.expr) -> sp.Expr:
        if isinstance(node, ast.Constant):
            return self._constant(node)
        if isinstance(node, ast.Name):
            return self._name(node)
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, (ast.USub, ast.UAdd)):
                operand = self.expr(node.operand)
                result = -operand if isinstance(node.op, ast.USub) else operand
            else:
                raise self._refuse(node, f"operator {_OPERATOR_TEXT[type(node.op)]!r} in",
                                   "'not' and '~' may only negate a condition inside where(...)")
        elif isinstance(node, ast.BinOp):
            result = self._binop(node)
        elif isinstance(node, ast.Call):
            result = self._call(node)
        elif isinstance(node, (ast.Compare, ast.BoolOp)):
            raise self._refuse(node, "the condition", "comparisons and and/or may only be used as the "
                               "condition of where(cond, then, else), e.g. where(z > 0, z, 0)")
        elif isinstance(node, ast.IfExp):
            raise self._refuse(node, "the conditional expression",
                               "write where(cond, then, else) instead of 'then if cond else else'")
        else:
            raise self._refuse(node, _REFUSED.get(type(node), f"the {type(node).__name__} expression"))
        return self._check_value(node, result)

    def _constant(self, node: ast.Constant) -> sp.Expr:
        value = node.value
        if isinstance(value, bool) or value is None:
            raise self._refuse(node, "the constant")
        if isinstance(value, int):
            if abs(value) > MAX_INT_LITERAL:
                raise self._error(node, f"integer literal {{q}} is too large; integer literals are limited "
                                  f"to {MAX_INT_LITERAL} in absolute value")
            return sp.Integer(value)
        if isinstance(value, float):
            if not math.isfinite(value):
                raise self._error(node, "number {q} is not finite; only finite numbers are allowed")
            lo, hi = self._span(node)
            literal = self.text[lo:hi].replace("_", "")
            try:
                exact = Decimal(literal)
            except InvalidOperation:
                return sp.Float(value)
            if exact.is_finite() and len(exact.as_tuple().digits) <= 20 and abs(exact.adjusted()) <= 30:
                return sp.Rational(literal)  # exact: 0.01 is 1/100
            return sp.Float(value)
        if isinstance(value, complex):
            raise self._refuse(node, "the complex number", "only real numbers are allowed; " + self.allowed)
        if isinstance(value, (str, bytes)):
            raise self._refuse(node, "the string")
        raise self._refuse(node, "the constant")

    def _name(self, node: ast.Name) -> sp.Expr:
        name = node.id
        if name in self.symbols:
            return self.symbols[name]
        if name in CONSTANTS:
            return CONSTANTS[name]
        if name in FUNCTIONS:
            raise self._error(node, f"{name!r} is a function; call it as {name}(...), in {{q}}")
        return self._unknown_symbol(node)

    def _unknown_symbol(self, node: ast.Name) -> sp.Expr:
        names = ", ".join(self.symbols) or "(none)"
        lo, _ = self._span(node)
        close = close_names(node.id, [*self.symbols, *CONSTANTS, *FUNCTIONS])
        hint = did_you_mean([f"{name}(...)" if name in FUNCTIONS else name for name in close])
        raise ValueError(f"unknown symbol {node.id!r}; allowed symbols: {names}; constants: pi, e "
                         f"(at {self._position(lo)}){hint}")

    def _binop(self, node: ast.BinOp) -> sp.Expr:
        if isinstance(node.op, (_ADDITIVE + _MULTIPLICATIVE)):
            # Walk the chain without recursion but combine left to right, exactly as sympy's operators do.
            group = _ADDITIVE if isinstance(node.op, _ADDITIVE) else _MULTIPLICATIVE
            result = None
            for op, operand, step in _chain(node, group):
                value = self.expr(operand)
                if result is None:
                    result = value
                    continue
                if isinstance(op, ast.Div) and value.is_zero:
                    raise self._error(step, "division by zero in {q}")
                result = self._sympy(step, _ARITHMETIC[type(op)], result, value)
            return result
        if isinstance(node.op, ast.Pow):
            base, exponent = self.expr(node.left), self.expr(node.right)
            if exponent.is_number:
                if abs(self._real_value(node.right, exponent)) > MAX_EXPONENT:
                    raise self._error(node, f"the constant exponent in {{q}} is too large; |exponent| <= "
                                      f"{MAX_EXPONENT} is allowed")
                if base.is_zero and exponent.is_negative:
                    raise self._error(node, "division by zero in {q}")
                if isinstance(base, sp.Rational) and exponent.is_Integer and (
                        _bits(base) * abs(int(exponent)) > _MAX_RATIONAL_BITS):
                    # the exact power would be a huge rational: compute it in floating point instead
                    # ((1+1e-30)**100); a value out of range is refused by _check_value as before
                    digits = min(math.ceil(_bits(base) * math.log10(2)) + 10, MAX_CONSTANT_LOG10 + 10)
                    power = self._sympy(node, sp.Pow, sp.Float(base, digits), exponent)
                    return sp.Float(power, FLOAT_DIGITS) if power.is_Float else power
            return self._sympy(node, sp.Pow, base, exponent)
        symbol = _OPERATOR_TEXT.get(type(node.op), type(node.op).__name__)
        if isinstance(node.op, (ast.BitAnd, ast.BitOr)):
            raise self._refuse(node, f"operator {symbol!r} in", f"'{symbol}' combines conditions inside "
                               "where(...); put comparisons in parentheses, e.g. "
                               "where((z > 0) & (z < 1), z, 0)")
        raise self._refuse(node, f"operator {symbol!r} in")

    def _call(self, node: ast.Call) -> sp.Expr:
        if not isinstance(node.func, ast.Name):
            raise self._refuse(node.func, "calling", "only the functions "
                               f"{', '.join(sorted(FUNCTIONS))} can be called, by name")
        name = node.func.id
        spec = FUNCTIONS.get(name)
        if spec is None:
            if name in self.symbols or name in CONSTANTS:
                raise self._error(node, f"{name!r} is not a function, in {{q}}; write {name}*(...) for a "
                                  "product")
            hint = did_you_mean(close_names(name, FUNCTIONS)).lstrip(";")
            raise ValueError(f"unknown function {name!r} in {self._quote(node)};{hint} allowed functions: "
                             f"{', '.join(sorted(FUNCTIONS))}")
        if node.keywords:
            raise self._refuse(node.keywords[0], "the keyword argument",
                               f"{name}() takes {spec.arity()}, by position")
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise self._refuse(arg, "the starred argument", f"{name}() takes {spec.arity()}")
        count = len(node.args)
        if count < spec.min_args or (spec.max_args is not None and count > spec.max_args):
            raise self._error(node, f"{name}() takes {spec.arity()} ({spec.doc}), got {count} in {{q}}")
        args = [self.condition(arg) if i in spec.conditions else self.expr(arg)
                for i, arg in enumerate(node.args)]
        if spec.merges is not None:
            merged = spec.implicit_args + sum(len(x.args) if isinstance(x, spec.merges) else 1 for x in args)
            if merged > MAX_MINMAX_ARGS:
                raise self._error(node, f"{{q}} takes the {spec.merges.__name__} of {merged} arguments "
                                  f"(nested max/min/relu merge); at most {MAX_MINMAX_ARGS} are allowed")
        if spec.exp_like:
            for arg_node, arg in zip(node.args, args, strict=True):
                if arg.is_number and abs(self._real_value(arg_node, arg)) > MAX_EXP_ARGUMENT:
                    raise self._error(node, f"the constant argument of {name}() in {{q}} is too large; "
                                      f"|argument| <= {MAX_EXP_ARGUMENT} is allowed for a constant")
        return self._sympy(node, spec.build, *args)

    # ----- conditions -----------------------------------------------------------------------------
    def condition(self, node: ast.expr) -> sp.Basic:
        if isinstance(node, ast.Compare):
            left, parts = self.expr(node.left), []
            for op, comparator in zip(node.ops, node.comparators, strict=True):
                relation = _RELATIONS.get(type(op))
                if relation is None:
                    raise self._refuse(node, f"comparison {_OPERATOR_TEXT.get(type(op), '?')!r} in",
                                       "conditions compare with < <= > >= only")
                right = self.expr(comparator)
                parts.append(self._sympy(node, relation, left, right))
                left = right
            return self._sympy(node, sp.And, *parts)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.BitAnd, ast.BitOr)):
            group = (type(node.op),)
            parts = [self.condition(operand) for _, operand, _ in _chain(node, group)]
            return self._sympy(node, sp.And if isinstance(node.op, ast.BitAnd) else sp.Or, *parts)
        if isinstance(node, ast.BoolOp):
            parts = [self.condition(value) for value in node.values]
            return self._sympy(node, sp.And if isinstance(node.op, ast.And) else sp.Or, *parts)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.Invert)):
            return self._sympy(node, sp.Not, self.condition(node.operand))
        raise self._error(node, "the condition of where(cond, then, else) must be a comparison such as z > 0 "
                          "(combined with & or |), not {q}")

    # ----- checks ---------------------------------------------------------------------------------
    def _sympy(self, node: ast.AST, build: Callable[..., sp.Basic], *args: sp.Basic) -> sp.Basic:
        try:
            return build(*args)
        except (TypeError, ValueError, ArithmeticError, NotImplementedError) as err:
            raise self._error(node, f"cannot build {{q}}: {err}") from err

    def _check_value(self, node: ast.expr, value: sp.Basic) -> sp.Expr:
        """Refuse a non-finite or out-of-range value; give it back with over-large exact rationals whose value is
        in range replaced by floating-point numbers (so that no later step computes with them)."""
        if not isinstance(value, sp.Expr):
            raise self._error(node, "{q} is not a number")
        if value.has(*_NON_FINITE):
            raise self._error(node, "{q} is not finite (division by zero, log(0) or similar)")
        huge = {}
        for number in value.atoms(sp.Rational):
            if _bits(number) > _MAX_RATIONAL_BITS:
                size = _log10(number)
                if abs(size) > MAX_CONSTANT_LOG10:
                    raise self._error(node, f"{{q}} contains a number beyond 10**{MAX_CONSTANT_LOG10}")
                huge[number] = sp.Float(number, FLOAT_DIGITS)
        if huge:
            value = self._sympy(node, lambda e: e.xreplace(huge), value)
            if value.has(*_NON_FINITE):  # pragma: no cover - a float of an in-range value stays finite
                raise self._error(node, "{q} is not finite")
        if value.is_number:
            self._real_value(node, value)
        return value

    def _real_value(self, node: ast.expr, value: sp.Expr) -> float:
        """Evaluate a constant; refuse it unless it is real and within 10**-N .. 10**N.  Gives a float
        (clipped to +-1e308, which is enough for the callers' comparisons)."""
        if value.is_extended_real is False:
            raise self._error(node, "{q} is not a real number")
        try:
            re, im = value.evalf(15).as_real_imag()
        except (TypeError, ValueError, ArithmeticError, NotImplementedError) as err:
            raise self._error(node, f"the constant {{q}} cannot be evaluated: {err}") from err
        if not (re.is_Number and im.is_Number):
            raise self._error(node, "the constant {q} cannot be evaluated")
        if im != 0:
            raise self._error(node, "{q} is not a real number")
        if re == 0:
            return 0.0
        number = mpmath.mpf(re)
        if not mpmath.isfinite(number):
            raise self._error(node, "{q} is not finite")
        if abs(mpmath.log10(abs(number))) > MAX_CONSTANT_LOG10:
            raise self._error(node, f"the constant {{q}} is too large or too small; constants must lie "
                              f"within 10**-{MAX_CONSTANT_LOG10} .. 10**{MAX_CONSTANT_LOG10}")
        return float(max(min(number, mpmath.mpf("1e308")), mpmath.mpf("-1e308")))


def close_names(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The names among ``candidates`` that look like ``name`` (``difflib.get_close_matches``, case ignored), best
    first, keeping only those about as close as the best (``sigmod``: sigmoid, not also sign): what a
    did-you-mean suggests for a misspelt name."""
    by_lower: dict[str, str] = {}
    for candidate in candidates:
        by_lower.setdefault(candidate.lower(), candidate)
    key = name.lower()
    matches = difflib.get_close_matches(key, list(by_lower), n=n)
    ratios = [difflib.SequenceMatcher(None, key, match).ratio() for match in matches]
    return [by_lower[match] for match, ratio in zip(matches, ratios, strict=True) if ratio >= ratios[0] - 0.1]


def did_you_mean(names: Iterable[str]) -> str:
    """``"; did you mean X?"`` (``X or Y``, ``X, Y or Z``) for the suggested names; ``""`` for none."""
    names = list(names)
    if not names:
        return ""
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
    return f"; did you mean {listed}?"


#: A syntax error's quoted line and caret, as ``Parser._syntax_error`` writes them under its first line.
_CARET_BLOCK = re.compile(r"\n    ([^\n]*)\n    [ \t]*\^(?=\n|$)")


def one_line(message: str) -> str:
    """``message`` on one line (for the command line, whose errors are one line each): a syntax error's line and
    caret under the column become ``, in '<line>'`` after the position the first line already gives; any other
    line breaks and runs of spaces become single spaces."""
    message = _CARET_BLOCK.sub(lambda m: f", in {m.group(1)!r}", message)
    return " ".join(message.split())


def _bits(number: sp.Rational) -> int:
    return max(abs(number.p).bit_length(), number.q.bit_length())


def _log10(number: sp.Rational) -> float:
    """log10 |p/q| from the integers' sizes (exact enough to compare with MAX_CONSTANT_LOG10); -inf for 0."""
    if number.p == 0:
        return -math.inf
    return float(mpmath.log10(abs(mpmath.mpf(number.p))) - mpmath.log10(mpmath.mpf(number.q)))


def _short(expr: sp.Basic, limit: int = 80) -> str:
    text = str(expr)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _exponent_size(exponent: sp.Expr) -> float | None:
    """|exponent| of a constant exponent (inf if it cannot be evaluated to a real number), None if not constant."""
    if not exponent.is_number:
        return None
    if isinstance(exponent, sp.Rational):
        return abs(exponent.p) / exponent.q if _bits(exponent) < 1000 else math.inf
    try:
        value = complex(exponent.evalf(15))
    except (TypeError, ValueError, ArithmeticError, NotImplementedError):
        return math.inf
    return abs(value) if math.isfinite(abs(value)) else math.inf


def power_problem(expr: sp.Basic, max_exponent: float, max_nesting: int) -> str | None:
    """What is wrong with the powers of ``expr`` as sympy holds it (after it has merged them), or None.

    A constant exponent must satisfy |p| <= ``max_exponent`` (``(z**100)**100`` is ``z**10000``); powers whose
    exponent is not constant may nest at most ``max_nesting`` deep, counting along any path through bases and
    exponents (``z**z**z**z`` nests 3 deep).  The walk is iterative and visits each node of the tree once.
    """
    stack = [(expr, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, sp.Pow):
            size = _exponent_size(node.exp)
            if size is None:
                depth += 1
                if depth > max_nesting:
                    return (f"powers with non-constant exponents are nested more than {max_nesting} levels deep "
                            f"(a tower such as z**z**z**z); at most {max_nesting} levels are allowed")
            elif size > max_exponent:
                return (f"the power {_short(node)} has the exponent {_short(node.exp, 30)} once sympy has merged "
                        f"the powers; |exponent| <= {max_exponent:g} is allowed")
        stack.extend((arg, depth) for arg in node.args)
    return None


def parse(text: str, allowed: tuple[str, ...] = ("z",)) -> sp.Expr:
    """Parse ``text`` with the whitelist parser; only ``allowed`` symbols may appear (``sb.parse``)."""
    return parse_expression(text, allowed=allowed)
