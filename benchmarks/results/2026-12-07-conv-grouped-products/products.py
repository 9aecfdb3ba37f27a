"""dbl_conv's second layer (40 maps, 501 patch rows with the ones row, 8×8 positions), mini-batch 10, NumPy and
OpenBLAS, one thread, µs per mini-batch: each product per sample (per, fper) against the 10 samples side by side
(grp, fgrp); fgrpv: per sample, reading the side-by-side layout.
Run: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 python products.py
"""
import time

import numpy as np


def best_us(f, calls=200, repeats=7):
    f()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(calls):
            f()
        times.append((time.perf_counter() - t) / calls * 1e6)
    return min(times)


def cases(dt, m=10, K=501, F=40, n=64):
    rng = np.random.default_rng(0)
    cols = rng.random((m, K, n)).astype(dt)
    d = rng.random((m, F, n)).astype(dt)
    colsg = np.ascontiguousarray(cols.transpose(1, 0, 2).reshape(K, m * n))
    dg = np.ascontiguousarray(d.transpose(1, 0, 2).reshape(F, m * n))
    S = np.zeros((K, F), dt)
    zg = np.zeros((F, m * n), dt)
    W = rng.random((F, K)).astype(dt)
    z = np.zeros((F, n), dt)

    def per():
        for r in range(m):
            S[...] += cols[r] @ d[r].T

    def grp():
        np.matmul(colsg, dg.T, out=S)

    def fper():
        for r in range(m):
            np.matmul(W, cols[r], out=z)

    def fgrp():
        np.matmul(W, colsg, out=zg)

    def fgrpv():
        for r in range(m):
            np.matmul(W, colsg[:, r * n:(r + 1) * n], out=z)

    return {"per": per, "grp": grp, "fper": fper, "fgrp": fgrp, "fgrpv": fgrpv}


if __name__ == "__main__":
    for dt in (np.float32, np.float64):
        for name, f in cases(dt).items():
            print(dt.__name__, name, f"{best_us(f):.1f} us")
