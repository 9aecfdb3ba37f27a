"""Every function the whitelist parser accepts works wherever an expression is evaluated, or is refused when
declared: the activation's NumPy form (diagnostics, references), a regulariser's penalty and gradient, and a
trained network's NumPy kernels.  No place may accept a function at declaration and crash on it later."""

import mpmath
import numpy as np
import pytest
import sympy as sp

import symbp as sb
from symbp.parsing import FUNCTIONS
from symbp.symbols import numpy_function, w, z


def _call(name: str, var: str) -> str:
    """A text calling ``name`` on a well-defined argument (positive where the function needs it)."""
    if name in ("max", "min"):
        return f"{name}({var}, {var}/2)"
    if name == "where":
        return f"where({var} > 0, {var}, {var}/10)"
    if name in ("log", "ln", "sqrt"):
        return f"{name}(1 + {var}**2)"
    if name == "log1p":
        return f"log1p({var}**2)"
    return f"{name}({var})"


NAMES = sorted(FUNCTIONS)
GRID = np.linspace(-2.0, 2.0, 9)


@pytest.mark.parametrize("name", NAMES)
def test_numpy_form_is_elementwise_and_matches_mpmath(name):
    expr = sb.Activation.parse(name, _call(name, "z")).expr if name not in ("sign", "heaviside", "step") else \
        sb.parsing.parse(_call(name, "z"))
    got = np.broadcast_to(np.asarray(numpy_function(z, expr)(GRID), dtype=np.float64), GRID.shape)
    ref = sp.lambdify(z, expr, modules="mpmath")
    for v, g in zip(GRID, got):
        assert g == pytest.approx(float(mpmath.re(ref(mpmath.mpf(float(v))))), rel=1e-12, abs=1e-12), (name, v)


@pytest.mark.parametrize("name", NAMES)
def test_regularizer_penalty_and_gradient_work_or_refuse(name):
    try:
        reg = sb.Regularizer.parse(name, _call(name, "w"), 0.1)
    except ValueError:
        return  # refused at declaration, with a message: allowed
    W = np.linspace(-1.5, 1.5, 12).reshape(3, 4)
    pen = reg.penalty([W], 10)
    grad = reg.gradient(W, 10)
    f = sp.lambdify(w, reg.expr, modules="mpmath")
    assert pen == pytest.approx(0.1 / 10 * sum(float(f(mpmath.mpf(float(v)))) for v in W.ravel()), rel=1e-10)
    assert grad.shape == W.shape and np.isfinite(grad).all()


@pytest.mark.parametrize("name", [n for n in NAMES if n not in ("sign", "heaviside", "step")])
def test_activation_trains_with_diagnostics_on_the_numpy_backend(name):
    try:
        act = sb.Activation.parse(name, _call(name, "z"))
    except ValueError:
        return
    rng = np.random.default_rng(0)
    X, Y = rng.random((12, 3)), np.eye(2)[rng.integers(0, 2, 12)]
    model = sb.Network([sb.Input(3), sb.Dense(3, act), sb.Dense(2, sb.sigmoid)],
                       cost=sb.quadratic).compile(backend="numpy", seed=0)
    hist = model.fit((X, Y), epochs=1, batch_size=4, eta=0.1, progress=False, diagnostics=True,
                     regularizer=sb.L2(0.1), evaluation_data=(X, Y))
    assert len(hist.diagnostics) == 2 and np.isfinite(hist.evaluation_cost).all()
