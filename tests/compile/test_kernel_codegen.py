"""Generated source and compile-time errors: readable kernels named after the equations, ``source()``,
functions printed for both backends (erf), activations numba cannot compile refused with a ValueError at
compile time (never object mode), unknown options refused."""

from __future__ import annotations

import compile_kit as kit
import numpy as np
import pytest
import scipy.special
import sympy as sp

import symbp as sb
from symbp import z

BACKENDS = ["numba", "numpy"]
KERNELS = ("forward", "cost", "backward", "sgd_epoch")


@pytest.mark.parametrize("backend", BACKENDS)
def test_sgd_epoch_source_reads_like_the_equations(backend):
    src = kit.model("sig", backend).source("sgd_epoch")
    assert "def sgd_epoch" in src
    for word in ("# BP1", "# BP2", "BP3", "BP4", "delta2", "delta1", "a1", "z1", "W1", "b2", "order"):
        assert word in src, f"{word!r} missing from the generated sgd_epoch"
    # the mini-batch loop is inside the kernel: no Python per mini-batch
    assert "for k in range(order.shape[0] // m)" in src


@pytest.mark.parametrize("backend", BACKENDS)
def test_source_of_every_kernel_and_the_module(backend):
    m = kit.model("soft", backend)
    module = m.source()
    for name in KERNELS:
        src = m.source(name)
        assert f"def {name}(" in src
        assert src in module
    assert "softmax" in m.source("forward")  # the row softmax, stabilised by the row maximum
    assert "lse2" in m.source("cost")  # log a = z − log Σ exp z in the log-likelihood
    with pytest.raises(ValueError, match="nope.*forward.*cost.*backward.*sgd_epoch"):
        m.source("nope")


def test_numba_kernels_are_nopython_and_compiled_eagerly():
    m = kit.model("sig")
    for name in KERNELS:
        assert "@njit(" in m.source(name) and "cache=True" in m.source(name)
        fn = m.kernels.functions[name]
        assert fn.targetoptions.get("nopython") is True
        assert len(fn.signatures) == 1  # compiled at compile(), for the model's dtype only


def test_activation_and_derivative_share_one_pass():
    """z·tanh(z) and its derivative tanh(z) + z/cosh²(z) in one loop, tanh computed once (sympy.cse)."""
    src = kit.model("smooth").source("backward")
    step = src[src.index("a1 = σ(z1)"):src.index("z2 = a1")]
    assert "sp1" in step and step.count("math.tanh(") == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_erf_activation_compiles_and_evaluates(backend):
    m = kit.model("smooth", backend)  # ztanh → erf → linear
    src = m.source("forward")
    assert ("scipy.special.erf(" if backend == "numpy" else "math.erf(") in src
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, (6, 3))
    (W1, b1), (W2, b2), (W3, b3) = m.params
    h = X @ W1.T + b1
    h = scipy.special.erf((h * np.tanh(h)) @ W2.T + b2)
    np.testing.assert_allclose(m.feedforward(X), h @ W3.T + b3, rtol=1e-12, atol=1e-14)


class complex_valued(sp.Function):  # noqa: N801 - a sympy function reads like the maths
    """A function whose Python printing numba cannot type into a float kernel (it returns a complex)."""

    def fdiff(self, argindex=1):
        return sp.Integer(1)

    def _pythoncode(self, printer):
        return f"complex({printer._print(self.args[0])}, 1.0)"


def test_activation_numba_cannot_compile_is_a_value_error_when_first_used():
    act = sb.Activation("cplx", complex_valued(z))
    net = sb.Network([2, 3, 2], activation=[act, sb.sigmoid], cost=sb.quadratic)
    model = net.compile(backend="numba")  # the kernels are generated; numba compiles each when first called
    with pytest.raises(ValueError, match="numba could not compile the forward kernel"):
        model.feedforward(np.ones((1, 2)))
    with pytest.raises(ValueError, match="numba could not compile the sgd_epoch kernel"):
        model.prepare("sgd_epoch")
    # the NumPy backend refuses it too (its printer does not know the function)
    with pytest.raises(ValueError, match="complex_valued"):
        net.compile(backend="numpy")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fn", [sp.Si, sp.fresnels])  # real for every real z, but no code printer
def test_function_without_code_printer_is_a_value_error(backend, fn):
    act = sb.Activation(fn.__name__, fn(z))  # (LambertW, used here before, is refused earlier: not real for z < -1/e)
    net = sb.Network([2, 2], activation=act, cost=sb.quadratic)
    with pytest.raises(ValueError, match=f"cannot generate code for {fn.__name__}"):
        net.compile(backend=backend)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"backend": "torch"}, "backend must be one of"),
     ({"backend": "numba", "dtype": "float16"}, "dtype must be one of"),
     ({"backend": "numpy", "dtype": "int32"}, "dtype must be one of"),
     ({"backend": "numpy", "dtype": "complex128"}, "dtype must be one of"),
     ({"backend": "numpy", "init": "xavier"}, "init must be one of"),
     ({"backend": "numba", "init": "xavier"}, "init must be one of")],
)
def test_unknown_compile_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kit.network(kit.POOL["sig"]).compile(**kwargs)


def test_dtype_given_as_numpy_dtype():
    m = kit.network(kit.POOL["sig"]).compile(backend="numpy", dtype=np.float32)
    assert m.dtype == np.float32 and m.feedforward(np.zeros((1, 4))).dtype == np.float32
