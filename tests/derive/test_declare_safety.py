"""Declarations refuse what would later be unsafe or silently wrong (issue 14): names that are not plain
identifiers, constants beyond float64, powers that sympy merges beyond the limits, activations that are not real
for some real z; and equality of declarations stays bounded in time."""

from __future__ import annotations

import time

import numpy as np
import pytest
import sympy as sp

import symbp as sb
from symbp.activations import NAME_PATTERN, check_dtype_range
from symbp.symbols import a, y, z

GOOD_NAMES = ["sigmoid", "cross_entropy", "log_likelihood", "custom", "leaky-relu", "_x", "A1", "x" * 64]
BAD_NAMES = [
    "", " ", "x y", "x" * 65, "1abc", "-x", "sigmoid\n", "\nsigmoid", 'sig"', "sig'", 'sigmoid"""', "é", "naïve",
    "a.b", "a/b", "a;b", "x\x00", 'sigmoid"""\nopen("pwned.txt","w").write("pwned")\n"""', None, 3, b"sigmoid",
]


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_identifier_names_are_accepted(name):
    assert NAME_PATTERN.fullmatch(name)
    assert sb.Activation(name, z).name == name
    assert sb.Activation.parse(name, "z").name == name
    assert sb.Cost(name, (a - y) ** 2).name == name
    assert sb.Cost.parse(name, "(a-y)**2").name == name


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_other_names_are_refused_saying_what_names_look_like(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rule = r"name must be a non-empty string of at most 64 characters: a letter or _, then letters, digits, _ or -"
    for make in (lambda: sb.Activation(name, z), lambda: sb.Activation.parse(name, "z"),
                 lambda: sb.Cost(name, (a - y) ** 2), lambda: sb.Cost.parse(name, "(a-y)**2")):
        with pytest.raises(ValueError, match=rule):
            make()
    assert not list(tmp_path.iterdir())  # nothing ran


def test_builtin_names_pass_the_pattern():
    from symbp.activations import BUILTIN_ACTIVATIONS
    from symbp.costs import BUILTIN_COSTS

    assert all(NAME_PATTERN.fullmatch(n) for n in [*BUILTIN_ACTIVATIONS, *BUILTIN_COSTS])


# ------------------------------------------------------------------------------------------------ constants


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: sb.Activation.parse("big", "1e308*1e308*z"), r"'big': the constant 1\.0e\+616 is beyond the float64"),
        (lambda: sb.Activation("big", sp.Float("1e400") * z), r"constant 1\.0e\+400 is beyond the float64"),
        (lambda: sb.Activation("big", sp.Integer(10) ** 400 * z), "beyond the float64"),
        (lambda: sb.Activation.parse("big", "exp(800)*z"), r"constant exp\(800\) \(about 2\.726e\+347\) is beyond"),
        (lambda: sb.Activation("big", sp.Piecewise((z, z > sp.Float("1e400")), (0, True))), "beyond the float64"),
        (lambda: sb.Activation.parse("tiny", "1e-320*z"), "below the smallest normal float64"),
        (lambda: sb.Cost.parse("big", "1e308*1e308*(a-y)**2"), r"Cost 'big': the constant 1\.0e\+616"),
    ],
)
def test_constants_beyond_float64_are_refused(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_constants_within_float64_are_accepted():
    sb.Activation.parse("near", "1e300*z + 1e-300")
    sb.Activation.parse("exp", "exp(700)*z")
    sb.Activation.parse("tiny_power", "(1+1e-30)**100*z")  # exact only as a huge rational: a float now


@pytest.mark.parametrize(
    ("expr", "dtype", "ok"),
    [
        (1e39 * z, "float32", False),
        (1e39 * z, "float64", True),
        (sp.Piecewise((z, z > sp.Float(1e39)), (0, True)), "float32", False),
        (sp.exp(89) * z, "float32", False),
        (sp.exp(88) * z, "float32", True),
        (1e30 * z + sp.Rational(1, 3), np.float32, True),
        (sp.Float(1e-40) * z, "float32", False),
        (z / (1 + sp.exp(-z)), "float32", True),
    ],
)
def test_check_dtype_range(expr, dtype, ok):
    if ok:
        check_dtype_range(expr, dtype, "layer 1 (act)")
    else:
        with pytest.raises(ValueError, match=r"^layer 1 \(act\): the constant .* float32"):
            check_dtype_range(expr, dtype, "layer 1 (act)")


# ------------------------------------------------------------------------------------------------ powers and size


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: sb.Activation("tower", (((z**100) ** 100) ** 100) ** 100), r"z\*\*100000000 has the exponent"),
        (lambda: sb.Activation("p", z**101), r"z\*\*101 has the exponent 101.*<= 100"),
        (lambda: sb.Activation("p", (z**10 + 1) ** 20 * z ** sp.Rational(201, 2)), r"<= 100"),
        (lambda: sb.Activation("zzzz", z ** (z ** (z**z))), "nested more than 2 levels"),
        (lambda: sb.Cost("c", ((a - y) ** 100) ** 100), r"\(a - y\)\*\*10000"),
        (lambda: sb.Cost.parse("c", "((a-y)**100)**100"), r"\(a - y\)\*\*10000"),
        (lambda: sb.Activation.parse("t", "(((z**100)**100)**100)**100"), "exponent 100000000"),
    ],
)
def test_merged_powers_are_refused_at_declaration(make, match):
    start = time.perf_counter()
    with pytest.raises(ValueError, match=match):
        make()
    assert time.perf_counter() - start < 2


def test_powers_within_the_limits_are_accepted():
    sb.Activation("p", z**100 / (1 + z**100))
    sb.Cost("c", (a - y) ** 100)


def test_expressions_beyond_the_size_bound_are_refused_quickly():
    wide = sp.Add(*(sp.sin(k * z) / (k + z**2) for k in range(1, 1500)))
    with pytest.raises(ValueError, match="operations; at most 3000"):
        sb.Activation("wide", wide)
    deep = z  # a tree of 2**40 nodes that shares its subtrees: refused by the node count, without walking it
    for _ in range(40):
        deep = deep * (deep + 1)
    start = time.perf_counter()
    with pytest.raises(ValueError, match="tree nodes"):
        sb.Activation("deep", deep)
    assert time.perf_counter() - start < 2
    with sb.derive.budget(max_ops=30), pytest.raises(ValueError, match=r"its derivative .* at most 30"):
        sb.Activation("sum", sp.Add(*(1 / (1 + sp.exp(-k * z)) for k in range(1, 6))))


# ------------------------------------------------------------------------------------------------ real for real z


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sqrt(z)", "Activation 'act': sqrt(z) is not real for z < 0 (e.g. z = -1); activations must be defined "
                    "for every real z"),
        ("log(z)", "log(z) is not real for z < 0 (e.g. z = -1)"),
        ("sqrt(z-1)", "sqrt(z - 1) is not real for z < 1 (e.g. z = -1)"),
        ("sqrt(1000-z)", "sqrt(1000 - z) is not real for z > 1000 (e.g. z = 1001)"),
        ("log(z^2-1)", "log(z**2 - 1) is not real for -1 < z < 1 (e.g. z = 0)"),
        ("z^(1/3)", "is not real for z < 0"),
        ("sqrt(sin(z))", "sqrt(sin(z)) is not real for some real z (e.g. z = -1)"),
        ("log(z)*sigmoid(z)", "is not real for z < 0"),
    ],
)
def test_activations_not_real_for_some_z_are_refused(text, message):
    with pytest.raises(ValueError) as info:
        sb.Activation.parse("act", text)
    assert message in str(info.value)


def test_activation_of_a_function_numpy_cannot_evaluate_is_checked_with_mpmath():
    with pytest.raises(ValueError, match=r"LambertW\(z\) is not real"):
        sb.Activation("w", sp.LambertW(z))
    sb.Activation("w", sp.LambertW(sp.exp(z)))


@pytest.mark.parametrize(
    "text",
    ["sqrt(z^2+1)", "where(z > 0, sqrt(z), 0)", "log(1+exp(z))", "log(abs(z)+1)", "sinh(z)-cosh(z)", "sin(z)/z",
     "exp(exp(z))", "z/(1+abs(z))", "where(z > 0, z, 0.01*z)", "z*sigmoid(z)", "exp(sin(z/10))", "erf(z)",
     "z*tanh(z)", "z*(1+erf(z/sqrt(2)))/2", "relu(z)", "max(z, 0.1*z)", "sqrt(abs(z))"],
)
def test_real_activations_are_accepted(text):
    sb.Activation.parse("act", text)


def test_costs_need_not_be_defined_everywhere():
    sb.Cost.parse("xent", "-(y*log(a) + (1-y)*log(1-a))")
    sb.Cost.parse("root", "sqrt(a-y)")


# ------------------------------------------------------------------------------------------------ equality


def test_equality_is_mathematical_and_bounded():
    sig = sb.Activation("s", 1 / (1 + sp.exp(-z)))
    assert sig == sb.Activation("s", sp.exp(z) / (1 + sp.exp(z)))
    assert sig != sb.Activation("s", sp.exp(z) / (2 + sp.exp(z)))
    assert sig != sb.Activation("other", 1 / (1 + sp.exp(-z)))
    assert sb.Cost("c", (a - y) ** 2 / 2) == sb.Cost("c", a**2 / 2 - a * y + y**2 / 2)
    assert sb.Cost("c", (a - y) ** 2 / 2) != sb.Cost("c", a**2 / 2 - a * y)
    # 44 sigmoids in two equal forms: simplify could run for minutes; the numbers decide within its 2 s
    one = sp.Add(*(1 / (1 + sp.exp(-k * z)) for k in range(1, 45)))
    two = sp.Add(*(sp.exp(k * z) / (1 + sp.exp(k * z)) for k in range(1, 45)))
    start = time.perf_counter()
    assert sb.Activation("s44", one) == sb.Activation("s44", two)
    assert sb.Activation("s44", one) != sb.Activation("s44", two + sp.exp(-z**2) / 10**6)
    assert time.perf_counter() - start < 8
