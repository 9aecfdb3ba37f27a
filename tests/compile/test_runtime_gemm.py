"""The runtime's product entry points (``gemm_nt``, ``gemm_nn``, ``gemm_tn``) against NumPy: small products
(plain loops) and large ones (BLAS), every β case the kernels use, float64 and float32."""

from __future__ import annotations

import numpy as np
import pytest

from symbp.compile.backends.numba import runtime as rt

CASES = {  # name: (function, how to build A and B for C of shape (M, N) with inner size K, reference)
    "nt": (rt.gemm_nt, lambda r, M, N, K: (r.standard_normal((M, K)), r.standard_normal((N, K))), lambda A, B: A @ B.T),
    "nn": (rt.gemm_nn, lambda r, M, N, K: (r.standard_normal((M, K)), r.standard_normal((K, N))), lambda A, B: A @ B),
    "tn": (rt.gemm_tn, lambda r, M, N, K: (r.standard_normal((K, M)), r.standard_normal((K, N))), lambda A, B: A.T @ B),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("beta", [0.0, 1.0, 0.9])
@pytest.mark.parametrize("shape", [(10, 10, 30), (3, 5, 7), (1, 1, 1), (5, 10, 10), (8, 8, 9), (10, 30, 784),
                                   (64, 40, 33)])
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
    fn(A, B, C, -0.3, beta)  # (5, 10, 10) is the largest product the loops make, (8, 8, 9) the smallest BLAS call
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


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("rows, cols", [(10, 784), (1, 1), (7, 0)])
def test_kernel_buffers_start_on_a_cache_line(rows, cols, dtype):
    """numba's own np.zeros starts 32 bytes past a 64-byte boundary; the kernels' buffers must not."""
    from numba import njit

    @njit
    def make(rows, cols, dtype):
        return rt.aligned_zeros(rows, cols, dtype) if cols else rt.aligned_zeros1(rows, dtype).reshape((rows, 1))

    for _ in range(5):
        buf = make(rows, cols, dtype)
        assert buf.ctypes.data % rt.ALIGN == 0
        assert buf.shape == (rows, max(cols, 1)) and buf.dtype == dtype and buf.flags.c_contiguous
        assert not buf.any()


def test_model_parameters_start_on_a_cache_line():
    """The kernels update the parameters in place: they stay 64-byte aligned through every way of setting them."""
    import symbp as sb
    from symbp.train.model import ALIGN, aligned_copy

    model = sb.Network([20, 7, 3], activation=sb.sigmoid, cost=sb.quadratic).compile(seed=0)

    def aligned():
        return all(arr.ctypes.data % ALIGN == 0 and arr.flags.c_contiguous for arr in model._flat())

    assert aligned()
    model.set_params([(np.ones((7, 20)), np.zeros(7)), (np.ones((3, 7)), np.zeros(3))])
    assert aligned()
    rng = np.random.default_rng(0)
    X, labels = rng.random((60, 20)), rng.integers(0, 3, 60)
    model.fit((X, labels), epochs=3, batch_size=10, eta=50.0, evaluation_data=(X, labels), early_stopping=1,
              seed=0, progress=False)
    assert aligned()
    src = np.arange(6.0).reshape(2, 3)
    copy = aligned_copy(src)
    assert copy.ctypes.data % ALIGN == 0 and copy.flags.writeable and np.array_equal(copy, src)
    copy[0, 0] = 9.0
    assert src[0, 0] == 0.0
