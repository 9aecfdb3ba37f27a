"""The runtime's product entry points (``gemm_nt``, ``gemm_nn``, ``gemm_tn``) against NumPy: small products
(plain loops) and large ones (BLAS), every β case the kernels use, float64 and float32."""

from __future__ import annotations

import numpy as np
import pytest

from symbp.compile import runtime as rt

CASES = {  # name: (function, how to build A and B for C of shape (M, N) with inner size K, reference)
    "nt": (rt.gemm_nt, lambda r, M, N, K: (r.standard_normal((M, K)), r.standard_normal((N, K))), lambda A, B: A @ B.T),
    "nn": (rt.gemm_nn, lambda r, M, N, K: (r.standard_normal((M, K)), r.standard_normal((K, N))), lambda A, B: A @ B),
    "tn": (rt.gemm_tn, lambda r, M, N, K: (r.standard_normal((K, M)), r.standard_normal((K, N))), lambda A, B: A.T @ B),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("beta", [0.0, 1.0, 0.9])
@pytest.mark.parametrize("shape", [(10, 10, 30), (3, 5, 7), (1, 1, 1), (10, 30, 784), (64, 40, 33)])
@pytest.mark.parametrize("case", sorted(CASES))
def test_products_match_numpy(case, shape, beta, dtype):
    fn, make, ref = CASES[case]
    M, N, K = shape
    rng = np.random.default_rng(M * 1000 + N * 10 + K)
    A, B = (np.ascontiguousarray(x, dtype=dtype) for x in make(rng, M, N, K))
    C0 = rng.standard_normal((M, N)).astype(dtype)
    if beta == 0.0:
        C0[0, 0] = np.nan  # β = 0 overwrites whatever C held, as BLAS does
    C = C0.copy()
    fn(A, B, C, -0.3, beta)
    expect = -0.3 * ref(A.astype(np.float64), B.astype(np.float64))
    if beta:
        expect = expect + beta * C0.astype(np.float64)
    tol = 1e-12 if dtype == "float64" else 1e-4
    assert np.all(np.isfinite(C))
    np.testing.assert_allclose(C, expect, rtol=tol, atol=tol * np.sqrt(K))


def test_empty_products_leave_c_alone():
    C = np.ones((0, 3))
    rt.gemm_nt(np.ones((0, 4)), np.ones((3, 4)), C, 1.0, 0.0)
    C = np.ones((2, 3))
    rt.gemm_nn(np.ones((2, 0)), np.ones((0, 3)), C, 1.0, 1.0)
    assert np.array_equal(C, np.ones((2, 3)))
