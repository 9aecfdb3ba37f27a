"""Mini-batch-100 products cut into row chunks of R rows, µs per product (best of 7): OpenBLAS's small-matrix
path and where it pays.

Run: ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 python row_chunks.py``; the
recorded output is ``row_chunks.txt`` (AMD EPYC Zen 5, OpenBLAS 0.3.30 SkylakeX kernels).  "nt": the forward
z = a·Wᵀ, rows cut; "tn": the update W ← W + α·δᵀa, the mini-batch (its reduction) cut into chunks added in
order.
"""

import time

import numpy as np
from numba import njit

from symbp.compile.backends.numba import runtime as rt

_N, _T = ord("N"), ord("T")

@njit(nogil=True)
def nt_chunks(A, B, C, R, reps):
    M, N = C.shape
    K = A.shape[1]
    isz = C.itemsize
    for _ in range(reps):
        for i0 in range(0, M, R):
            i1 = min(M, i0 + R)
            a = A[i0:i1]
            c = C[i0:i1]
            rt._xgemm(_T, _N, N, i1 - i0, K, 1.0, B, B.strides[0] // isz, a, a.strides[0] // isz, 0.0, c,
                      c.strides[0] // isz)


@njit(nogil=True)
def tn_chunks(A, B, C, R, reps):
    # C (Ni x N) = alpha A^T B + C, A (M x Ni), B (M x N): reduction over M in chunks
    Ni, N = C.shape
    M = A.shape[0]
    isz = C.itemsize
    for _ in range(reps):
        for k0 in range(0, M, R):
            k1 = min(M, k0 + R)
            a = A[k0:k1]
            b = B[k0:k1]
            rt._xgemm(_N, _T, N, Ni, k1 - k0, 1e-9, b, b.strides[0] // isz, a, a.strides[0] // isz, 1.0, C,
                      C.strides[0] // isz)

def best(f, *args, reps=2000):
    f(*args, 2)
    ts = []
    for _ in range(7):
        t0 = time.perf_counter()
        f(*args, reps)
        ts.append(time.perf_counter() - t0)
    return min(ts) / reps * 1e6

rng = np.random.default_rng(0)
for dt in (np.float64, np.float32):
    for (M, N, K) in ((100, 30, 784), (100, 100, 784), (100, 10, 30), (100, 10, 100)):
        A, B, C = rng.random((M, K)).astype(dt), rng.random((N, K)).astype(dt), np.zeros((M, N), dt)
        row = [f"{np.dtype(dt).name} nt {M}x{N}x{K}:"]
        for R in (M, 50, 25, 16, 10):
            row.append(f"R{R} {best(nt_chunks, A, B, C, R):.2f}")
        print(" ".join(row), flush=True)
        d, x, W = rng.random((M, N)).astype(dt), rng.random((M, K)).astype(dt), np.zeros((N, K), dt)
        row = [f"{np.dtype(dt).name} tn W{N}x{K} batch {M}:"]
        for R in (M, 50, 25, 16, 10):
            row.append(f"R{R} {best(tn_chunks, d, x, W, R):.2f}")
        print(" ".join(row), flush=True)
