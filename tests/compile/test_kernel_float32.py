"""float32 models: parameters, outputs and gradients stay float32, and agree with float64 to ~1e-4."""

from __future__ import annotations

import compile_kit as kit
import numpy as np
import pytest

F32 = dict(rtol=1e-4, atol=1e-5)
BACKENDS = ["numba", "numpy"]


def _pair(name, backend, rows, seed=0):
    spec = kit.POOL[name]
    m32 = kit.model(name, backend, "float32")
    m64 = kit.model(name, backend, "float64")
    rng = np.random.default_rng(seed)
    params = kit.random_params(spec[0], rng, scale=0.8)
    X, Y = kit.make_data(spec, rows, rng)
    m32.set_params(params)  # float64 arrays: converted
    m64.set_params(params)
    return m32, m64, X, Y


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["sig", "soft"])
@pytest.mark.parametrize("rows", [7, 700])  # 700 rows: the numba kernels call sgemm
def test_float32_agrees_with_float64(backend, name, rows):
    m32, m64, X, Y = _pair(name, backend, rows)
    assert all(W.dtype == np.float32 and b.dtype == np.float32 for W, b in m32.params)
    out = m32.feedforward(X)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, m64.feedforward(X), **F32)
    c32 = m32.cost(X, Y)
    assert isinstance(c32, float)
    assert c32 == pytest.approx(m64.cost(X, Y), rel=1e-4)
    g32 = m32.gradients(X, Y)
    assert all(dW.dtype == np.float32 and db.dtype == np.float32 for dW, db in g32)
    kit.assert_params_close(g32, m64.gradients(X, Y), what="gradients", **F32)
    order = np.random.default_rng(1).permutation(rows)
    batch = max(1, rows // 3)
    m32.run_epoch(X, Y, order, batch, 0.5, 0.2)
    m64.run_epoch(X, Y, order, batch, 0.5, 0.2)
    assert all(W.dtype == np.float32 for W, _ in m32.params)
    kit.assert_params_close(m32.params, m64.params, what="after run_epoch", **F32)


def test_float32_numba_and_numpy_agree():
    m_nb, _, X, Y = _pair("soft", "numba", 50, seed=3)
    m_np = kit.model("soft", "numpy", "float32")
    m_np.set_params(m_nb.params)
    np.testing.assert_allclose(m_nb.feedforward(X), m_np.feedforward(X), rtol=1e-5, atol=1e-6)
    kit.assert_params_close(m_nb.gradients(X, Y), m_np.gradients(X, Y), rtol=1e-4, atol=1e-6, what="gradients")


def test_float32_inputs_of_other_dtypes_are_converted():
    m32, _, X, Y = _pair("sig", "numba", 5)
    want = m32.feedforward(X.astype(np.float32))
    np.testing.assert_array_equal(m32.feedforward(X), want)  # float64 X converted
    np.testing.assert_array_equal(m32.feedforward(np.asfortranarray(X)), want)
    ints = np.arange(20).reshape(5, 4) % 3
    np.testing.assert_array_equal(m32.feedforward(ints), m32.feedforward(ints.astype(np.float32)))
