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


BATCH = {  # the mini-batch products: rows (nt, nn) or the reduction (tn) cut into chunks
    name: (batch, CASES[name][1], CASES[name][2])
    for name, batch in (("nt", rt.batch_nt), ("nn", rt.batch_nn), ("tn", rt.batch_tn))
}


@pytest.fixture()
def small_path():
    """Set the small-matrix limit for a test, and put this process's value back after it."""
    saved = rt._SMALL_PATH.value
    yield rt.set_small_path
    rt.set_small_path(saved)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("limit", [0, 150, 400, 10**9])
@pytest.mark.parametrize("case", sorted(BATCH))
def test_mini_batch_products_in_chunks_match_numpy(case, limit, dtype, small_path):
    """Whatever the small-matrix limit (read by the compiled kernels at run time), the chunked products are the
    products: shapes whose chunks come to 1, 2, 3 or more calls, β = 0 over NaN, and empty ones."""
    small_path(limit)
    fn, make, ref = BATCH[case]
    rng = np.random.default_rng(limit % 97)
    chunked = 0
    for M, N, K in [(50, 3, 7), (40, 5, 4), (70, 2, 3), (16, 1, 1), (0, 3, 7), (3, 0, 2)]:
        rows, per_row = (M, N * K)
        if case == "tn":  # the mini-batch is the reduction: C is N_out × N, the chunks cut K
            M, K = K, M
        chunked += rt._rows_per_call(rows, per_row) < rows
        A, B = (np.ascontiguousarray(x, dtype=dtype) for x in make(rng, M, N, K))
        for beta in (0.0, 1.0, 0.5):
            C0 = rng.standard_normal((M, N)).astype(dtype)
            C = np.full_like(C0, np.nan) if beta == 0.0 else C0.copy()
            fn(A, B, C, -0.3, beta)
            expect = -0.3 * ref(A.astype(np.float64), B.astype(np.float64)) + (beta * C0 if beta else 0.0)
            tol = 1e-12 if dtype == "float64" else 1e-4
            np.testing.assert_allclose(C, expect, rtol=tol, atol=tol * np.sqrt(max(K, 1)))
    assert (chunked > 0) == (limit in (150, 400))  # some shapes were cut where the limit asks for it, none else


def test_chunks_follow_the_limit_at_run_time(small_path):
    """Equal chunks of at least MIN_CHUNK_ROWS rows, only for products at least twice the limit; 0: one call."""
    small_path(0)
    assert rt._rows_per_call(100, 23520) == 100
    small_path(800_000)
    assert rt._rows_per_call(100, 23520) == 34  # the ch.1 layer at mini-batch 100: three calls of ≤ 34 rows
    assert rt._rows_per_call(10, 23520) == 10  # mini-batch 10: one call
    assert rt._rows_per_call(100, 10_000) == 100  # 10⁶ multiply-adds: under twice the limit
    assert rt._rows_per_call(100, 78_400) == 100  # chunks of 11 rows would be too thin
    assert rt.MIN_CHUNK_ROWS == 16


def test_the_limit_comes_from_the_blas_core_or_the_environment():
    """``$SYMBP_SMALL_PATH`` sets it; otherwise OpenBLAS's AVX-512 cores get the small-matrix limit and every
    other core (the Haswell kernels, another BLAS) none; a bad value is a clear error at import."""
    import subprocess
    import sys

    code = "from symbp.compile.backends.numba import runtime as rt; print(rt._SMALL_PATH.value, rt._openblas_core())"
    env = {k: v for k, v in __import__("os").environ.items() if k != "SYMBP_SMALL_PATH"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**env,
                         "SYMBP_SMALL_PATH": "1234"}, timeout=120)
    assert out.stdout.split()[0] == "1234"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    value, *core = out.stdout.split()
    assert int(value) == (800_000 if core and core[0] in rt._SMALL_MATRIX_CORES else 0)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**env, "SYMBP_SMALL_PATH": "lots"}, timeout=120)
    assert out.returncode != 0 and "SYMBP_SMALL_PATH must be a whole number" in out.stderr


def test_an_epoch_with_chunked_products_matches_the_numpy_backend(small_path):
    """The sgd_epoch kernel calls the chunked entry points: with a limit that cuts the mini-batch of 64 in two
    (in every product of the first layer), one epoch gives the NumPy backend's parameters."""
    import symbp as sb

    small_path(4480)  # 64 rows × 7 × 20 multiply-adds = 8,960: two calls of 32 rows
    assert rt._rows_per_call(64, 7 * 20) == 32
    net = sb.Network([20, 7, 3], activation=sb.sigmoid, cost=sb.cross_entropy)
    rng = np.random.default_rng(3)
    X, Y = rng.random((192, 20)), np.eye(3)[rng.integers(0, 3, 192)]
    models = [net.compile(backend=b, seed=0) for b in ("numba", "numpy")]
    start, order = models[0].params, rng.permutation(192)
    for m in models:
        m.set_params(start)
        m.run_epoch(X, Y, order, 64, 0.5, lmbda=5.0, n=192)  # decay ≠ 1: β applied once, to the first chunk
    for (W, b), (W2, b2) in zip(models[0].params, models[1].params):
        np.testing.assert_allclose(W, W2, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(b, b2, rtol=1e-12, atol=1e-12)
