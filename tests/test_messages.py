"""Messages a newcomer meets: did-you-mean for misspelt names, the built-in names where a name is expected, a
syntax error's caret under its column, folders that --save and --plot create, and Equations in IPython."""

from __future__ import annotations

import pytest

import symbp as sb
from symbp import cli
from symbp.parsing import close_names, did_you_mean, one_line, parse_expression

ACTIVATIONS = "sigmoid, tanh, relu, linear, softplus, softmax"
COSTS = "quadratic, cross-entropy, log-likelihood"


# ----- did you mean: the whitelist parser ---------------------------------------------------------------------

@pytest.mark.parametrize(("text", "allowed", "suggestion"), [
    ("sigmod(z)", ("z",), "did you mean sigmoid? allowed functions: abs,"),  # an unknown function
    ("tahn(z) + 1", ("z",), "did you mean tanh or atan?"),
    ("Exp(-z)", ("z",), "did you mean exp?"),
    ("1 + sigmod", ("z",), "did you mean sigmoid(...)?"),  # a bare name close to a function
    ("a - yy", ("a", "y"), "did you mean y?"),  # close to an allowed symbol
    ("z*pii", ("z",), "did you mean pi?"),  # close to a constant
])
def test_parser_suggests_close_names(text, allowed, suggestion):
    with pytest.raises(ValueError) as info:
        parse_expression(text, allowed=allowed)
    assert suggestion in str(info.value), str(info.value)


def test_parser_suggests_nothing_when_nothing_is_close():
    with pytest.raises(ValueError) as info:
        parse_expression("foo(z)")
    assert "did you mean" not in str(info.value) and "allowed functions: abs" in str(info.value)
    with pytest.raises(ValueError, match=r"^unknown symbol 'x'; allowed symbols: z; constants: pi, e "
                                         r"\(at column 1\)$"):
        parse_expression("x")


def test_close_names_and_did_you_mean():
    assert close_names("sigmod", ["sigmoid", "sign", "tanh"]) == ["sigmoid"]  # not also sign: much further
    assert close_names("RELU", ["relu", "tanh"]) == ["relu"]  # case ignored, the candidate's spelling given
    assert close_names("xyz", ["sigmoid"]) == []
    assert did_you_mean([]) == ""
    assert did_you_mean(["a"]) == "; did you mean a?"
    assert did_you_mean(["a", "b", "c"]) == "; did you mean a, b or c?"


# ----- did you mean: built-in names where the command line expects a name --------------------------------------

@pytest.mark.parametrize(("parse", "text", "message"), [
    (cli.activation_arg, "sigmod", f"unknown activation 'sigmod'; did you mean sigmoid? (built-in activations: "
                                   f"{ACTIVATIONS}; or an expression in z such as 'z/(1+abs(z))')"),
    (cli.activation_arg, "Tanh", "unknown activation 'Tanh'; did you mean tanh? (built-in activations: "),
    (cli.activation_arg, "exq", "unknown activation 'exq'; did you mean exp(...)? (built-in activations: "),
    (cli.activation_arg, "foo", f"unknown activation 'foo' (built-in activations: {ACTIVATIONS}; "),
    (cli.cost_arg, "cros-entropy", f"unknown cost 'cros-entropy'; did you mean cross-entropy? (built-in costs: "
                                   f"{COSTS}; or an expression in a and y such as '(a-y)**2/2')"),
    (cli.cost_arg, "log_likelihod", "unknown cost 'log_likelihod'; did you mean log-likelihood? (built-in costs: "),
    (cli.cost_arg, "quadratik", "unknown cost 'quadratik'; did you mean quadratic? (built-in costs: "),
])
def test_command_line_names_suggest_built_ins(parse, text, message):
    with pytest.raises(ValueError) as info:
        parse(text)
    assert str(info.value).startswith(message), str(info.value)


def test_command_line_expressions_are_still_expressions():
    assert cli.cost_arg("a-y").expr == sb.parse("a-y", ("a", "y"))  # a name-like text that parses is an expression
    assert cli.activation_arg("z/(1+abs(z))").name == "custom"
    assert cli.cost_arg("cross_entropy") is sb.cross_entropy and cli.activation_arg("relu") is sb.relu
    with pytest.raises(ValueError, match=r"^Cost 'custom': unknown symbol 'foo'"):  # a-foo: an expression in a
        cli.cost_arg("a-foo")
    with pytest.raises(ValueError, match=r"'exp' is a function; call it as exp\(\.\.\.\)"):
        cli.activation_arg("exp")


def test_command_line_misspelling_is_one_line(capsys):
    assert cli.main(["show", "--activation", "sigmod"]) == 2
    err = capsys.readouterr().err
    assert err == ("symbp show: error: argument --activation: unknown activation 'sigmod'; did you mean sigmoid? "
                   f"(built-in activations: {ACTIVATIONS}; or an expression in z such as 'z/(1+abs(z))')\n")


# ----- a syntax error's caret --------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "position", "line", "column"), [
    ("z + * 2", "column 5", "z + * 2", 5),
    ("(z\n+ * 2)", "line 2, column 3", "+ * 2)", 3),
    ("z +", "column 4", "z +", 4),
])
def test_syntax_error_caret_is_under_its_column(text, position, line, column):
    with pytest.raises(ValueError) as info:
        parse_expression(text)
    first, shown, caret = str(info.value).split("\n")
    assert first.startswith(f"syntax error at {position}: ")
    assert shown == f"    {line}" and caret == "    " + " " * (column - 1) + "^"
    assert one_line(str(info.value)) == f"{first}, in {line!r}"


def test_syntax_error_caret_follows_tabs():
    with pytest.raises(ValueError) as info:
        parse_expression("z +\t* 2")
    _, shown, caret = str(info.value).split("\n")
    assert caret == "    " + "   \t^" and shown[len(caret) - 1] == "*"


def test_command_line_syntax_error_gives_the_column_on_one_line(capsys):
    assert cli.main(["show", "--activation", "z + * 2"]) == 2
    assert capsys.readouterr().err == ("symbp show: error: argument --activation: Activation 'custom': syntax error "
                                       "at column 5: invalid syntax, in 'z + * 2'\n")
    assert cli.main(["show", "--cost", "(a\n- * y)"]) == 2
    assert capsys.readouterr().err == ("symbp show: error: argument --cost: Cost 'custom': syntax error at line 2, "
                                       "column 3: invalid syntax, in '- * y)'\n")


# ----- --save and --plot into a missing folder: created, and said -------------------------------------------

def _train(data_dir, *argv):
    return cli.main(["train", "--limit", "100", "--epochs", "1", "--layers", "784,10", "--backend", "numpy",
                     "--data-dir", str(data_dir), "--no-progress", *argv])


def test_save_and_plot_create_a_missing_folder_and_say_so(tmp_path, data_dir, capsys):
    assert _train(data_dir, "--save", str(tmp_path / "models" / "m"), "--plot", str(tmp_path / "plots" / "c")) == 0
    lines = capsys.readouterr().out.splitlines()
    save, plot = lines.index(f"saved model to {tmp_path}/models/m.json and {tmp_path}/models/m.npz"), \
        lines.index(f"wrote {tmp_path}/plots/c.png")
    assert lines[save - 1] == f"created the folder {tmp_path / 'models'}"
    assert lines[plot - 1] == f"created the folder {tmp_path / 'plots'}"
    assert (tmp_path / "models" / "m.npz").is_file() and (tmp_path / "plots" / "c.png").is_file()

    # both into one new folder: created once, said once; an existing folder: nothing said
    assert _train(data_dir, "--save", str(tmp_path / "new" / "deep" / "m"),
                  "--plot", str(tmp_path / "new" / "deep" / "c.png")) == 0
    out = capsys.readouterr().out
    assert out.count("created the folder") == 1 and f"created the folder {tmp_path / 'new' / 'deep'}\n" in out
    assert _train(data_dir, "--save", str(tmp_path / "models" / "m2"), "--plot", str(tmp_path / "plots" / "d")) == 0
    assert "created the folder" not in capsys.readouterr().out


# ----- Equations in IPython: the full text -------------------------------------------------------------------

class FakePrinter:
    """What IPython hands ``_repr_pretty_``: ``text`` collects what it prints."""

    def __init__(self):
        self.parts = []

    def text(self, s):
        self.parts.append(s)


def test_equations_text_plain_is_the_full_text():
    eqs = sb.Network([4, 3, 2], activation=sb.sigmoid, cost=sb.quadratic).equations()
    p = FakePrinter()
    eqs._repr_pretty_(p, False)
    assert "".join(p.parts) == str(eqs) and "BP1" in str(eqs) and str(eqs).count("\n") > 5
    assert "\n" not in repr(eqs) and repr(eqs).startswith("<Equations of ")  # short, for containers
    p = FakePrinter()
    eqs._repr_pretty_(p, True)
    assert "".join(p.parts) == repr(eqs)
    pretty = pytest.importorskip("IPython.lib.pretty")
    assert pretty.pretty(eqs) == str(eqs)


def test_python_api_names_suggest_too():
    import symbp as sb

    with pytest.raises(ValueError, match=r"unknown activation 'sigmod'; did you mean sigmoid\? \(built-ins: "):
        sb.Dense(10, "sigmod")
    with pytest.raises(ValueError, match=r"unknown cost 'quadratik'; did you mean quadratic\? \(built-ins: "):
        sb.Network([3, 2], activation=sb.sigmoid, cost="quadratik")
