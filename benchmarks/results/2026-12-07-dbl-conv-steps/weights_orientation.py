"""The conv weights step in two orientations, compiled by numba through the runtime's gemm_nt, float32.

Before: S = Σ_r δ[r]·colᵣᵀ (maps × patches); now: Sᵀ = Σ_r colᵣ·δ[r]ᵀ (patches × maps).  Prints µs per mini-batch
of 10 for the whole step (products and the SGD update) and for the products alone, dbl_conv's two layers.
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 python weights_orientation.py
"""

from __future__ import annotations

import time

import numpy as np
from numba import njit

from symbp.compile.backends.numba import runtime as rt
from symbp.compile.backends.numba.runtime import gemm_nt, like


@njit(cache=False, nogil=True)
def before(d4, cols, S, W4, alpha, beta, b, alpha_b, beta_b):
    F, m, K = W4.shape[0], d4.shape[0], S.shape[1] - 1
    n = d4.shape[2] * d4.shape[3]
    W2 = W4.reshape((F, K))
    for r in range(m):
        cols[r, K, :] = 1.0
        gemm_nt(d4[r].reshape((F, n)), cols[r], S, 1.0, 0.0 if r == 0 else 1.0)
    a, c = like(alpha, S), like(beta, S)
    a_b, c_b = like(alpha_b, S), like(beta_b, S)
    for f in range(F):
        for k in range(K):
            W2[f, k] = a * S[f, k] + (c * W2[f, k] if beta != 0.0 else 0.0)
        b[f] = a_b * S[f, K] + (c_b * b[f] if beta_b != 0.0 else 0.0)


@njit(cache=False, nogil=True)
def before_products(d4, cols, S):
    F, n = d4.shape[1], d4.shape[2] * d4.shape[3]
    for r in range(d4.shape[0]):
        gemm_nt(d4[r].reshape((F, n)), cols[r], S, 1.0, 0.0 if r == 0 else 1.0)


@njit(cache=False, nogil=True)
def now_products(d4, cols, S):
    F, n = d4.shape[1], d4.shape[2] * d4.shape[3]
    for r in range(d4.shape[0]):
        gemm_nt(cols[r], d4[r].reshape((F, n)), S, 1.0, 0.0 if r == 0 else 1.0)


def best_us(fn, n=200) -> float:
    fn()
    runs = []
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - t0) / n)
    return round(min(runs) * 1e6, 1)


def main():
    rng = np.random.default_rng(0)
    m = 10
    for F, C, k, H in ((40, 20, 5, 8), (20, 1, 5, 24)):
        K = C * k * k
        d4 = rng.random((m, F, H, H), dtype=np.float32)
        cols = rng.random((m, K + 1, H * H), dtype=np.float32)
        W4, b = rng.random((F, C, k, k), dtype=np.float32), rng.random(F, dtype=np.float32)
        S, ST = np.zeros((F, K + 1), np.float32), np.zeros((K + 1, F), np.float32)
        print(f"maps {F}, patch rows {K}, patches {H * H}:",
              "before", best_us(lambda: before(d4, cols, S, W4, -0.01, 1.0, b, -0.01, 1.0)),  # noqa: B023
              "now", best_us(lambda: rt.conv_weights_bias(d4, cols, ST, W4, -0.01, 1.0, b, -0.01, 1.0)),  # noqa: B023
              "| products: before", best_us(lambda: before_products(d4, cols, S)),  # noqa: B023
              "now", best_us(lambda: now_products(d4, cols, ST)))  # noqa: B023


if __name__ == "__main__":
    main()
