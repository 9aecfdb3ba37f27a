"""symbp's own activations and costs skip the declaration checks at import (``activations.builtin``): each must
pass them, declared again the way a user's would be, and give the very same expression (the kernel cache keys
and saved models hold it)."""

from __future__ import annotations

import pytest
import sympy as sp

import symbp as sb
from symbp.activations import BUILTIN_ACTIVATIONS, Activation
from symbp.costs import BUILTIN_COSTS, Cost


@pytest.mark.parametrize("name", sorted(BUILTIN_ACTIVATIONS))
def test_builtin_activations_pass_the_declaration_checks(name):
    act = BUILTIN_ACTIVATIONS[name]
    again = Activation(act.name, act.expr, vector=act.vector)
    assert sp.srepr(again.expr) == sp.srepr(act.expr) and again.vector == act.vector
    assert again == act and hash(again) == hash(act)
    assert getattr(sb, name) is act


@pytest.mark.parametrize("name", sorted(BUILTIN_COSTS))
def test_builtin_costs_pass_the_declaration_checks(name):
    cost = BUILTIN_COSTS[name]
    again = Cost(cost.name, cost.expr)
    assert sp.srepr(again.expr) == sp.srepr(cost.expr)
    assert getattr(sb, name) is cost


def test_user_declarations_are_still_checked():
    with pytest.raises(ValueError, match="not real"):
        Activation("root", sp.sqrt(sb.z))
    with pytest.raises(ValueError, match="does not depend on the activation a"):
        Cost("flat", sb.y**2)
