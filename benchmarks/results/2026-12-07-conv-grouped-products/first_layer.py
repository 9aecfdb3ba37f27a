"""dbl_conv's first layer (20 maps, 26 patch rows with the ones row, 24×24 positions), mini-batch 10, NumPy and
OpenBLAS, one thread, float32, µs per mini-batch: the weights' product per sample in two orientations (per,
per2) against the samples side by side (grp, grp2), the copy of δ that grouping needs, the forward product per
sample (fper) against grouped (fgrp).
Run: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 python first_layer.py
"""
import numpy as np
from products import best_us


def cases(dt=np.float32, m=10, K=26, F=20, n=576):
    rng = np.random.default_rng(0)
    cols = rng.random((m, K, n)).astype(dt)
    d = rng.random((m, F, n)).astype(dt)
    C = np.ascontiguousarray(cols.transpose(1, 0, 2).reshape(K, m * n))
    D = np.ascontiguousarray(d.transpose(1, 0, 2).reshape(F, m * n))
    S, S2, T = np.zeros((K, F), dt), np.zeros((F, K), dt), np.zeros((K, F), dt)
    W = rng.random((F, K - 1)).astype(dt)
    Z, z = np.zeros((F, m * n), dt), np.zeros((F, n), dt)

    def per():
        for r in range(m):
            np.matmul(cols[r], d[r].T, out=T)
            S[...] += T

    def per2():
        for r in range(m):
            np.matmul(d[r], cols[r].T, out=S2)

    def grp():
        np.matmul(C, D.T, out=S)

    def grp2():
        np.matmul(D, C.T, out=S2)

    def copy():
        for r in range(m):
            D[:, r * n:(r + 1) * n] = d[r]

    def fper():
        for r in range(m):
            np.matmul(W, cols[r][:25], out=z)

    def fgrp():
        np.matmul(W, C[:25], out=Z)

    return {"per": per, "per2": per2, "grp": grp, "grp2": grp2, "copy": copy, "fper": fper, "fgrp": fgrp}


if __name__ == "__main__":
    for name, f in cases().items():
        print(name, f"{best_us(f, calls=300):.1f} us")
