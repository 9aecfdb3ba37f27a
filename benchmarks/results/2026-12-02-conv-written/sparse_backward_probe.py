"""Would a backward that uses the pooled δ (3/4 of the conv δ is zero after max-pooling) beat the dense gemms?
Layer 3 of dbl_conv (C=20, 12x12 in, 40 maps 5x5, 8x8 out, 2x2 pool → 4x4), float32, per image.
Usage: OPENBLAS_NUM_THREADS=1 python sparse_backward_probe.py (output: sparse_backward_probe.txt)."""
import time

import numpy as np
from numba import njit

from symbp.compile import runtime as _rt

f = np.float32
rng = np.random.default_rng(0)
F, CKK, HW, P = 40, 500, 64, 16
cols = rng.random((CKK, HW)).astype(f)
colsT = np.ascontiguousarray(cols.T)  # the patches stored transposed: one contiguous row per output position
W = rng.random((F, CKK)).astype(f) * 0.01
dp = rng.random((F, P)).astype(f)  # pooled δ
at = rng.integers(0, 4, (F, P))  # argmax in each 2x2 window
pos = np.zeros((F, P), np.int64)
for fi in range(F):
    for t in range(P):
        i, j = divmod(t, 4)
        a, b = divmod(at[fi, t], 2)
        pos[fi, t] = (2 * i + a) * 8 + 2 * j + b
dense = np.zeros((F, HW), f)  # the conv layer's δ after the pool's scatter
for fi in range(F):
    dense[fi, pos[fi]] = dp[fi]


@njit
def dense_dw(d, cols, W, n):
    for _ in range(n):
        _rt.gemm_nt(d, cols, W, -1e-9, 1.0)


@njit
def dense_dcol(W, d, dcol, n):
    for _ in range(n):
        _rt.gemm_tn(W, d, dcol, 1.0, 0.0)


@njit(fastmath={"contract"})
def sparse_dw(dp, pos, colsT, W, n):
    for _ in range(n):
        for fi in range(40):
            for t in range(16):
                v = f(-1e-9) * dp[fi, t]
                r = pos[fi, t]
                for k in range(500):
                    W[fi, k] += v * colsT[r, k]


@njit(fastmath={"contract"})
def sparse_dcolT(dp, pos, W, dcolT, n):
    for _ in range(n):
        dcolT[:, :] = 0.0
        for fi in range(40):
            for t in range(16):
                v = dp[fi, t]
                r = pos[fi, t]
                for k in range(500):
                    dcolT[r, k] += v * W[fi, k]


def bench(fn, args, n=2000):
    fn(*args, 1)
    best = 1e9
    for _ in range(5):
        t = time.perf_counter()
        fn(*args, n)
        best = min(best, (time.perf_counter() - t) / n)
    return best * 1e6


W1, W2 = W.copy(), W.copy()
dcol, dcolT = np.zeros((CKK, HW), f), np.zeros((HW, CKK), f)
print("dW   dense gemm %.1f us, sparse from the pooled δ %.1f us"
      % (bench(dense_dw, (dense, cols, W1)), bench(sparse_dw, (dp, pos, colsT, W2))))
print("dcol dense gemm %.1f us, sparse from the pooled δ %.1f us"
      % (bench(dense_dcol, (W, dense, dcol)), bench(sparse_dcolT, (dp, pos, W, dcolT))))
dense_dcol(W, dense, dcol, 1)
sparse_dcolT(dp, pos, W, dcolT, 1)
print("same dcol:", np.allclose(dcol, dcolT.T, rtol=1e-5, atol=1e-6))
