"""Tests of the whitelist expression parser ``symbp.parsing.parse_expression``."""

from __future__ import annotations

import ast
import builtins
import time

import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symbp import parsing, symbols
from symbp.parsing import FUNCTIONS, MAX_DEPTH, MAX_LENGTH, parse_expression
from symbp.symbols import a, y, z

AY = ("a", "y")


# ----- round trips --------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "allowed", "expected"),
    [
        ("z/(1+abs(z))", ("z",), z / (1 + sp.Abs(z))),
        ("1/(1+exp(-z))", ("z",), 1 / (1 + sp.exp(-z))),
        ("max(0, z)", ("z",), sp.Max(0, z)),
        ("-(y*log(a) + (1-y)*log(1-a))", AY, -(y * sp.log(a) + (1 - y) * sp.log(1 - a))),
        ("0.5*(a-y)**2", AY, sp.Rational(1, 2) * (a - y) ** 2),
        ("z^2", ("z",), z**2),
        ("z^2 + 1", ("z",), z**2 + 1),  # ^ binds like **, not like Python's xor
        ("-z^2", ("z",), -(z**2)),
        ("2^3^2", ("z",), sp.Integer(512)),
        ("pi", ("z",), sp.pi),
        ("e", ("z",), sp.E),
        ("e**z", ("z",), sp.exp(z)),
        ("2*pi*z", ("z",), 2 * sp.pi * z),
        ("0.01", ("z",), sp.Rational(1, 100)),
        ("0.01*z", ("z",), z / 100),
        ("1e-3", ("z",), sp.Rational(1, 1000)),
        ("1_000", ("z",), sp.Integer(1000)),
        ("+z - -z", ("z",), 2 * z),
        ("z - 1 - 2 + 3", ("z",), z),
        ("z / 2 / 4 * 8", ("z",), z),
        ("(\n z\n + 1\n)", ("z",), z + 1),
        ("  tanh(z)  ", ("z",), sp.tanh(z)),
        ("log(8, 2)", ("z",), sp.Integer(3)),
        ("log(z, 2)", ("z",), sp.log(z) / sp.log(2)),
        ("ln(z) - log(z)", ("z",), sp.Integer(0)),
        ("sigmoid(z)", ("z",), 1 / (1 + sp.exp(-z))),
        ("softplus(z)", ("z",), sp.log(1 + sp.exp(z))),
        ("relu(z)", ("z",), sp.Max(0, z)),
        ("heaviside(z) + step(z)", ("z",), 2 * sp.Heaviside(z, 0)),
        ("log1p(z) + expm1(z)", ("z",), sp.log(1 + z) + sp.exp(z) - 1),
        ("square(z)", ("z",), z**2),
        ("sqrt(z)", ("z",), sp.sqrt(z)),
        ("sign(z)", ("z",), sp.sign(z)),
        ("min(z, 1, 2)", ("z",), sp.Min(z, 1)),
        ("max(a, y, 0)", AY, sp.Max(a, y, 0)),
        ("sinh(z)+cosh(z)+asinh(z)+atan(z)+sin(z)+cos(z)+erf(z)", ("z",),
         sp.sinh(z) + sp.cosh(z) + sp.asinh(z) + sp.atan(z) + sp.sin(z) + sp.cos(z) + sp.erf(z)),
        ("where(z > 0, 1, 0)", ("z",), sp.Piecewise((1, z > 0), (0, True))),
        ("where((z > 0) & (z < 1) | (z >= 5), z, 0)", ("z",),
         sp.Piecewise((z, ((z > 0) & (z < 1)) | (z >= 5)), (0, True))),
        ("where(0 < z <= 1, z, 0)", ("z",), sp.Piecewise((z, (z > 0) & (z <= 1)), (0, True))),
        ("where(z > 0 and z < 1, z, 0)", ("z",), sp.Piecewise((z, (z > 0) & (z < 1)), (0, True))),
        ("where(not z > 0, z, 0)", ("z",), sp.Piecewise((z, z <= 0), (0, True))),
        ("where(~(z > 0), z, 0)", ("z",), sp.Piecewise((z, z <= 0), (0, True))),
        ("where(1 > 0, z, 2)", ("z",), z),
    ],
)
def test_round_trip(text, allowed, expected):
    got = parse_expression(text, allowed=allowed)
    assert got == expected, (text, got, expected)


def test_symbols_are_the_canonical_real_ones():
    got = parse_expression("a*y + z", allowed=("a", "y", "z"))
    assert got.free_symbols == {symbols.a, symbols.y, symbols.z}
    assert all(s.is_real for s in got.free_symbols)


def test_other_allowed_names_become_real_symbols():
    got = parse_expression("w*z", allowed=("w", "z"))
    w = sp.Symbol("w", real=True)
    assert got == w * z


def test_leaky_relu_piecewise_matches_on_sample_points():
    got = parse_expression("where(z > 0, z, 0.01*z)")
    assert isinstance(got, sp.Piecewise)
    for value in [-3, -1, sp.Rational(-1, 7), 0, sp.Rational(1, 3), 2, 10]:
        expected = value if value > 0 else sp.Rational(1, 100) * value
        assert got.subs(z, value) == expected


def test_rational_literals_are_exact():
    assert parse_expression("0.01") == sp.Rational(1, 100)
    assert parse_expression("0.1 + 0.2") == sp.Rational(3, 10)
    assert isinstance(parse_expression("0.25"), sp.Rational)
    # long or far-out decimals become Floats with the literal's double value
    assert isinstance(parse_expression("1.23456789012345678901234"), sp.Float)
    assert isinstance(parse_expression("1e300"), sp.Float)


def test_function_table_arity():
    for name, spec in FUNCTIONS.items():
        if name == "where":
            continue
        args = ", ".join(["z"] * spec.min_args)
        assert isinstance(parse_expression(f"{name}({args})"), sp.Expr), name
        with pytest.raises(ValueError, match=rf"{name}\(\) takes"):
            parse_expression(f"{name}()")
        if spec.max_args is not None:
            too_many = ", ".join(["z"] * (spec.max_args + 1))
            with pytest.raises(ValueError, match=rf"{name}\(\) takes"):
                parse_expression(f"{name}({too_many})")


# ----- hostile input ------------------------------------------------------------------------------------

HOSTILE = [
    ("__import__('os').system('touch CANARY')", "__import__"),
    ("__import__('os')", "__import__"),
    ("open('CANARY','w')", "open"),
    ("open('CANARY','w').write('x')", "open"),
    ("().__class__.__bases__[0].__subclasses__()", "__class__"),
    ("z.__class__", "z.__class__"),
    ("(lambda: 1)()", "lambda"),
    ("(lambda: __import__('os').system('touch CANARY'))()", "lambda"),
    ("[x for x in ()]", "[x for x in ()]"),
    ("sum(x for x in (1,))", "sum"),
    ("exec('open(\"CANARY\", \"w\")')", "exec"),
    ("eval('open(\"CANARY\", \"w\")')", "eval"),
    ("compile('1', 'f', 'eval')", "compile"),
    ("getattr(z, 'x')", "getattr"),
    ("globals()", "globals"),
    ("__builtins__", "__builtins__"),
    ('"s"', '"s"'),
    ("b'abc'", "b'abc'"),
    ('f"{z}"', 'f"{z}"'),
    ("z if z else 1", "where"),
    ("(a:=1)", ":="),
    ("{'a': 1}", "{'a': 1}"),
    ("{1}", "{1}"),
    ("[1, 2]", "[1, 2]"),
    ("(1, 2)", "(1, 2)"),
    ("z[0]", "z[0]"),
    ("exp(*[z])", "*[z]"),
    ("log(z, base=2)", "base=2"),
    ("exp(z)(1)", "exp(z)"),
    ("z(1)", "z(1)"),
    ("Symbol('x')", "Symbol"),
    ("sympify('x')", "sympify"),
    ("z; open('CANARY', 'w')", "syntax error"),
    ("import os", "syntax error"),
    ("z = 1", "syntax error"),
    ("x", "unknown symbol 'x'"),
    ("1j", "1j"),
    ("True", "True"),
    ("None", "None"),
    ("...", "..."),
    ("1e999", "1e999"),
    ("9**9**9", "9**9**9"),
    ("z**(10**10)", "z**(10**10)"),
    ("z**-1000", "z**-1000"),
    ("(2**100)**100", "(2**100)**100"),
    ("z*(10**6)**100*(10**6)**100", "10**"),
    ("10000000", "10000000"),
    ("exp(exp(exp(3)))", "exp("),
    ("sinh(10**6)", "sinh"),
    ("max(" + ", ".join(f"z**{k}" for k in range(1, 18)) + ")", "at most 16"),
    ("max(max(z, z**2, z**3, z**4, z**5, z**6, z**7, z**8), z**9, z**10, z**11, z**12, z**13, z**14, z**15, "
     "relu(max(z**16, z**17)))", "at most 16"),
    ("z" * (MAX_LENGTH + 1), str(MAX_LENGTH)),
    ("(" * 10000 + "z" + ")" * 10000, str(MAX_LENGTH)),
    ("(" * (MAX_DEPTH + 1) + "z" + ")" * (MAX_DEPTH + 1), "nested"),
    ("exp(" * (MAX_DEPTH + 1) + "z" + ")" * (MAX_DEPTH + 1), "nested"),
    ("-" * (MAX_DEPTH + 5) + "z", "nested"),
    ("-" * 900 + "z", "nested"),
    ("z**" * 200 + "z", "nested"),
    ("z\x00", "\\x00"),
]


@pytest.mark.parametrize(("payload", "quoted"), HOSTILE, ids=[p[:40] for p, _ in HOSTILE])
def test_hostile_input_is_refused_without_running_code(payload, quoted, tmp_path, monkeypatch):
    canary = tmp_path / "canary"
    monkeypatch.chdir(tmp_path)  # relative paths in payloads land in tmp_path too
    text = payload.replace("CANARY", str(canary)) if len(payload) <= MAX_LENGTH else payload
    start = time.perf_counter()
    with pytest.raises(ValueError) as info:
        parse_expression(text)
    assert time.perf_counter() - start < 5
    assert quoted in str(info.value)
    assert not canary.exists()
    assert not (tmp_path / "CANARY").exists()


def test_text_never_reaches_eval_exec_or_code_compile(monkeypatch):
    """ast.parse uses compile(..., PyCF_ONLY_AST); nothing else may compile, eval or exec."""
    real_compile = builtins.compile
    seen = []

    def only_ast(source, filename, mode, flags=0, *args, **kwargs):
        seen.append(source)
        assert flags & ast.PyCF_ONLY_AST, "text compiled to code"
        return real_compile(source, filename, mode, flags, *args, **kwargs)

    def forbidden(*args, **kwargs):
        raise AssertionError("eval/exec called")

    monkeypatch.setattr(builtins, "compile", only_ast)
    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    monkeypatch.setattr(sp, "sympify", forbidden)
    monkeypatch.setattr(sp, "parse_expr", forbidden)
    for text in ["where(z > 0, z, 0.01*z) + sigmoid(z)^2", "-(y*log(a) + (1-y)*log(1-a))"]:
        parse_expression(text, allowed=("a", "y", "z"))
    for text in ["__import__('os').system('echo hi')", "open('x', 'w')", "(lambda: 1)()"]:
        with pytest.raises(ValueError):
            parse_expression(text)
    assert seen  # ast.parse went through the spy


# ----- other refusals -----------------------------------------------------------------------------------

def test_unknown_symbol_message():
    with pytest.raises(ValueError, match=r"unknown symbol 'x'; allowed symbols: z"):
        parse_expression("x + 1")
    with pytest.raises(ValueError, match=r"unknown symbol 'y'; allowed symbols: z"):
        parse_expression("z - y")
    with pytest.raises(ValueError, match=r"unknown symbol 'z'; allowed symbols: a, y"):
        parse_expression("a*z", allowed=AY)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty"),
        ("   \n ", "empty"),
        ("z +", "syntax error at column 4"),
        ("z + * 2", "syntax error at column 5"),
        ("(z\n+ * 2)", "syntax error at line 2, column 3"),
        ("z^^2", "syntax error"),
        ("1/0", "division by zero in '1/0'"),
        ("z/(z-z)", "division by zero"),
        ("0**-1", "division by zero"),
        ("log(0)", "not finite"),
        ("log(z, 1)", "not finite"),
        ("sqrt(-1)", "not a real number"),
        ("log(-2)", "not a real number"),
        ("z > 0", "where"),
        ("(z > 0) & (z < 1)", "where"),
        ("where(z > 0 & z < 1, z, 0)", "parentheses"),
        ("where(z, 1, 0)", "must be a comparison"),
        ("where(z == 0, 1, 0)", "'=='"),
        ("z if z > 0 else 0", "where"),
        ("z // 2", "'//'"),
        ("z % 2", "'%'"),
        ("not z", "not"),
        ("exp", "is a function"),
        ("foo(z)", "unknown function 'foo'"),
        ("max(z)", r"max\(\) takes at least 2"),
        ("exp(3000)", "too large"),
        ("sigmoid(-3000)", "too large"),
        ("e**101", "exponent"),
        ("zé", "ASCII"),
    ],
)
def test_refusals(text, match):
    with pytest.raises(ValueError, match=match):
        parse_expression(text)


@pytest.mark.parametrize("bad", [None, b"z", 1, sp.Symbol("z"), ["z"]])
def test_non_str_is_a_type_error(bad):
    with pytest.raises(TypeError):
        parse_expression(bad)


def test_allowed_is_validated():
    with pytest.raises(TypeError):
        parse_expression("z", allowed="z")
    with pytest.raises(ValueError):
        parse_expression("z", allowed=("exp",))
    with pytest.raises(ValueError):
        parse_expression("z", allowed=("pi",))
    with pytest.raises(ValueError):
        parse_expression("z", allowed=("not a name",))


def test_limits_are_not_too_tight():
    assert parse_expression("+".join(["z"] * 400)) == 400 * z  # flat chains count as one level
    assert parse_expression("*".join(["z"] * 400)) == z**400
    nested = "exp(" * (MAX_DEPTH - 2) + "z" + ")" * (MAX_DEPTH - 2)
    assert parse_expression(nested).has(sp.exp)
    assert parse_expression("z**100") == z**100
    assert parse_expression("1000000*z") == 1000000 * z
    assert parse_expression("exp(2000)") == sp.exp(2000)
    conditions = "&".join(f"(z > {k})" for k in range(60))
    assert isinstance(parse_expression(f"where({conditions}, z, 0)"), sp.Piecewise)
    assert parse_expression("max(" + ", ".join(f"z**{k}" for k in range(1, 17)) + ")").func is sp.Max
    assert parse_expression("(10**6)**100") == sp.Integer(10) ** 600


def test_messages_quote_the_offending_piece_with_its_position():
    with pytest.raises(ValueError) as info:
        parse_expression("z + 2*(z.real)")
    assert "'z.real' (at column 8)" in str(info.value)
    with pytest.raises(ValueError) as info:
        parse_expression("z^2 + open('f')")
    assert "open('f')" in str(info.value)
    with pytest.raises(ValueError) as info:  # ^ is reported as the user wrote it
        parse_expression("z^2 if z > 0 else 0")
    assert "'z^2 if z > 0 else 0'" in str(info.value)


# ----- property tests -----------------------------------------------------------------------------------

_LEAF_SYMBOLS = {"z": z, "a": a, "y": y}
_BINARY = {"+": lambda p, q: p + q, "-": lambda p, q: p - q, "*": lambda p, q: p * q, "/": lambda p, q: p / q}
_UNARY = {"exp": sp.exp, "tanh": sp.tanh, "abs": sp.Abs, "-": lambda p: -p}


class _Tree:
    """Text, the same tree built directly in sympy, and what the parser is expected to refuse."""

    def __init__(self, text, expr, zero_division=False, constant_exp=False):
        self.text, self.expr = text, expr
        self.zero_division = zero_division  # some division by a sub-expression that is zero
        self.constant_exp = constant_exp  # exp of a constant: may hit the documented magnitude limits


def _binary(op, left, right):
    zero_division = left.zero_division or right.zero_division or (op == "/" and bool(right.expr.is_zero))
    expr = sp.nan if zero_division else _BINARY[op](left.expr, right.expr)
    return _Tree(f"({left.text}) {op} ({right.text})", expr, zero_division,
                 left.constant_exp or right.constant_exp)


def _unary(name, arg):
    text = f"-({arg.text})" if name == "-" else f"{name}({arg.text})"
    if arg.zero_division:
        return _Tree(text, sp.nan, True, arg.constant_exp)
    return _Tree(text, _UNARY[name](arg.expr), False,
                 arg.constant_exp or (name == "exp" and arg.expr.is_number))


_leaves = st.one_of(
    st.sampled_from(sorted(_LEAF_SYMBOLS)).map(lambda n: _Tree(n, _LEAF_SYMBOLS[n])),
    st.integers(0, 3).map(lambda k: _Tree(str(k), sp.Integer(k))),
)
_trees = st.recursive(
    _leaves,
    lambda children: st.one_of(
        st.builds(_binary, st.sampled_from(sorted(_BINARY)), children, children),
        st.builds(_unary, st.sampled_from(sorted(_UNARY)), children),
    ),
    max_leaves=8,
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_trees)
def test_random_trees_parse_to_the_same_sympy_expression(tree):
    if tree.zero_division:
        with pytest.raises(ValueError, match="division by zero|not finite"):
            parse_expression(tree.text, allowed=("z", "a", "y"))
        return
    try:
        parsed = parse_expression(tree.text, allowed=("z", "a", "y"))
    except ValueError as err:
        assert tree.constant_exp and "too large" in str(err), (tree.text, err)
        return
    # the parser applies the same sympy operations in the same order, so the results are identical
    assert parsed == tree.expr, (tree.text, parsed, tree.expr)


_TOKENS = ["z", "a", "1", "0", "2.5", "1e5", "9", "+", "-", "*", "/", "**", "^", "(", ")", ",", " ", ".", "[",
           "]", "'", "exp", "log", "where", "max", ">", "<=", "&", "|", "pi", "e", "_", "__class__", "lambda",
           ":", "if", "else", "for", "in", "=", "j", "not"]


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.lists(st.sampled_from(_TOKENS), max_size=25).map("".join), st.text(max_size=40)))
def test_arbitrary_text_gives_an_expression_or_value_error(text):
    try:
        result = parse_expression(text, allowed=("z", "a"))
    except ValueError as err:
        assert str(err)
    else:
        assert isinstance(result, sp.Expr)
        assert not result.has(sp.zoo, sp.nan, sp.oo, -sp.oo)


def test_module_documents_its_grammar_and_guarantees():
    doc = parsing.__doc__
    for word in ("Takes", "Gives", "Grammar", "Security", "where", "sigmoid", "^"):
        assert word in doc


# ----- issue 14: bounded after sympy's own merging; huge exact constants -----------------------------------


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("(((z**100)**100)**100)**100", r"z\*\*100000000 has the exponent 100000000"),
        ("(z**100)**100", r"z\*\*10000 has the exponent 10000"),
        ("((a-y)**100)**100", r"\(a - y\)\*\*10000"),
        ("z**z**z**z", "nested more than 2 levels"),
        ("2**2**2**z", "nested more than 2 levels"),
        ("(z**50*(z+1))**100", r"z\*\*5000"),
    ],
)
def test_merged_powers_are_bounded(text, match):
    """sympy merges powers as it builds them ((z**100)**100 is z**10000, which each literal exponent allowed):
    the finished expression is checked too, quickly."""
    start = time.perf_counter()
    with pytest.raises(ValueError, match=match):
        parse_expression(text, allowed=("z", "a", "y"))
    assert time.perf_counter() - start < 2


def test_merged_powers_within_the_limits_are_accepted():
    assert parse_expression("z**z**z") == z ** (z**z)
    assert parse_expression("(z**10)**100") == z**1000
    assert parse_expression("*".join(["z"] * 400)) == z**400


def test_power_problem_walks_bases_and_exponents():
    assert parsing.power_problem(z**101, 100, 2) is not None
    assert parsing.power_problem(z**100 + 1, 100, 2) is None
    assert parsing.power_problem(z ** sp.Rational(201, 2), 100, 2) is not None
    assert parsing.power_problem(z ** sp.Float(1e6), 100, 2) is not None
    assert parsing.power_problem((z**z) ** z, 100, 1) is not None
    assert parsing.power_problem(sp.exp(sp.exp(sp.exp(z))), 100, 0) is None  # exp is not a power


def test_constant_with_a_huge_exact_value_becomes_a_float():
    """(1+1e-30)**100 is exact only as a ~10 000-bit rational: it becomes a 30-digit float, not a refusal."""
    start = time.perf_counter()
    value = parse_expression("(1+1e-30)**100")
    assert isinstance(value, sp.Float)
    assert abs(value - (1 + sp.Rational(1, 10**28))) < sp.Float("1e-40")
    expr = parse_expression("(1+1e-30)**60*(1+1e-30)**60*z")
    assert expr.free_symbols == {z} and all(n.q < 2**3400 for n in expr.atoms(sp.Rational))
    nested = parse_expression("(((1+1e-30)**100)**100)**100")  # stays a bounded float, no blow-up
    assert isinstance(nested, sp.Float)
    assert time.perf_counter() - start < 2


@pytest.mark.parametrize("text", ["(1e-30)**100", "(2**100)**100", "(1+1e-3)**100**100"])
def test_huge_constants_are_still_refused(text):
    with pytest.raises(ValueError):
        parse_expression(text)
