"""Generated source embeds only what symbp generated: text derived from user declarations (names, the
network's repr) appears only escaped in comments, so it can never become code, in either backend."""

from __future__ import annotations

import ast

import pytest

import symbp as sb
from symbp.compile.backends.base import module_header
from symbp.compile.emit import comment_text

PAYLOAD = 'x"""\nopen("pwned.txt", "w").write("pwned")\n"""\r\u2028\x0c# '


def test_comment_text_stays_on_one_line():
    text = comment_text(PAYLOAD)
    assert "\n" not in text and "\r" not in text and "\u2028" not in text and "\x0c" not in text
    assert text.isprintable()
    tree = ast.parse(f"# {text}\nvalue = 1\n")  # a comment line and nothing else
    assert [type(n).__name__ for n in tree.body] == ["Assign"]


class _Hostile(sb.Network):
    """A network whose repr carries code, as a hand-edited model file could once smuggle into the header."""

    def __repr__(self):
        return PAYLOAD


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_hostile_repr_never_runs(backend, tmp_path, monkeypatch, symbp_cache_dir):
    monkeypatch.chdir(tmp_path)
    net = _Hostile([3, 2], activation=sb.sigmoid, cost=sb.quadratic)
    model = net.compile(backend=backend, seed=0)
    header = module_header(net, backend, "float64")
    assert all(line.startswith("#") for line in header.splitlines())
    assert model.feedforward([[0.0, 1.0, 2.0]]).shape == (1, 2)
    assert not (tmp_path / "pwned.txt").exists()
    tree = ast.parse(model.source())
    assert not any(isinstance(n, ast.Expr) and isinstance(n.value, ast.Call) for n in tree.body)
