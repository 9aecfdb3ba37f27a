"""How far below its BLAS bound can a float64 epoch of chapter 1's net [784, 30, 10], mini-batch 10, get?

Times, in one process, one BLAS thread:
- the BLAS bound (``symbp.bench.bound.products_bound``: the epoch's gemm calls alone, on in-cache operands);
- the peak bound: the epoch's FLOPs at this process's measured float64 matmul peak;
- the gather alone: copying the 50,000 training images (float64, 784 each) into mini-batch buffers in a shuffled
  order, as every epoch must read them (numba loop, nothing else); the same from one byte a pixel (uint8);
- symbp's whole generated epoch (``sgd_epoch`` through ``model.run_epoch``, as the bench times it) on MNIST.

If peak bound + gather > BLAS bound, no float64 epoch that reads its images can finish within the BLAS bound,
whatever its products are made of.
Run: SYMBP_DATA_DIR=... python floor.py   (OpenBLAS's own core detection: unset OPENBLAS_CORETYPE)
"""
import time

import numpy as np
from numba import njit

import symbp as sb
from symbp.bench.bound import products_bound
from symbp.bench.cases import epoch_flops
from symbp.bench.harness import load_data
from symbp.bench.machine import matmul_peak


@njit(cache=True, nogil=True)
def gather(X, order, m, x):
    s = 0.0
    for k in range(order.shape[0] // m):
        for r in range(m):
            row = order[k * m + r]
            for j in range(X.shape[1]):
                x[r, j] = X[row, j]
        s += x[0, 0]
    return s


def best(f, repeats=7):
    f()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return min(ts), float(np.median(ts))


def main():
    layers, m, n = [784, 30, 10], 10, 50_000
    X, labels = load_data()
    X, Y = np.ascontiguousarray(X[:n]), np.eye(10)[labels[:n]]
    peak = matmul_peak("float64")["gflops"]
    flops = epoch_flops(layers, n)
    b = products_bound(layers, m, "float64", n // m, repeats=7)
    order = np.random.default_rng(0).permutation(n)
    x = np.zeros((m, 784))
    g = best(lambda: gather(X, order, m, x))
    X8 = np.round(X * 255).astype(np.uint8)  # the compact form (symbp-numba-u8): one byte a pixel
    g8 = best(lambda: gather(X8, order, m, x))
    net = sb.Network([sb.Input(784), sb.Dense(30, sb.sigmoid), sb.Dense(10, sb.sigmoid)], cost=sb.quadratic)
    model = net.compile(dtype="float64", seed=0)
    e = best(lambda: model.run_epoch(X, Y, order, m, 3.0, lmbda=0.0, n=n, drop_last=True), repeats=5)
    print(f"matmul peak float64: {peak:.1f} GFLOP/s; epoch FLOPs {flops / 1e9:.3f} G")
    print(f"peak bound (FLOPs at peak):   {flops / peak / 1e9 * 1e3:7.2f} ms")
    print(f"BLAS bound (gemm calls alone): {b['min_s'] * 1e3:7.2f} ms (median {b['median_s'] * 1e3:.2f}), "
          f"{flops / b['min_s'] / 1e9 / peak:.1%} of peak")
    print(f"gather of the images alone:    {g[0] * 1e3:7.2f} ms (median {g[1] * 1e3:.2f}), "
          f"{X.nbytes / g[0] / 1e9:.1f} GB/s")
    print(f"peak bound + gather:           {(flops / peak / 1e9 + g[0]) * 1e3:7.2f} ms")
    print(f"gather of uint8 images:        {g8[0] * 1e3:7.2f} ms; peak bound + it: "
          f"{(flops / peak / 1e9 + g8[0]) * 1e3:.2f} ms: the products would need "
          f"{flops / (b['min_s'] - g8[0]) / 1e9 / peak:.1%} of peak")
    print(f"symbp's epoch (run_epoch):     {e[0] * 1e3:7.2f} ms (median {e[1] * 1e3:.2f}), "
          f"{e[0] / b['min_s']:.2f}x the BLAS bound")


if __name__ == "__main__":
    main()
