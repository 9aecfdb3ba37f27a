"""The BLAS bound of an epoch: its matrix products alone, as fast as this machine's BLAS runs them.

Takes: layer sizes, a mini-batch size, a dtype, a mini-batch count.  Gives: ``products_bound(...)``, the
seconds one epoch spends in exactly the ``?gemm`` calls that symbp's ``sgd_epoch`` kernel makes per
mini-batch (forward ``z = a·Wᵀ`` for every layer, ``δˡ⁻¹ = δˡ·Wˡ`` for layers ≥ 2, the weight update
``W ← W − α·δᵀa``), through the same ``runtime.gemm_*`` entry points, on contiguous buffers that stay in
cache: no gather of the shuffled rows, no activation, no bias, no Python.  Its FLOPs are
``harness.epoch_flops``, so its GFLOP/s is the most any epoch built on this BLAS can reach, and its
fraction of the matmul peak caps every implementation's fraction (measured in the same run, on the same
machine).
"""

from __future__ import annotations

import time

import numpy as np


def _kernel():
    from numba import njit

    from symbp.compile import runtime as rt

    @njit(nogil=True, cache=True)
    def products(acts, deltas, weights, n_batches, alpha):
        L = len(weights)
        for _ in range(n_batches):
            for l in range(L):  # forward: z^{l+1} = a^l · W^{l+1}ᵀ
                rt.gemm_nt(acts[l], weights[l], acts[l + 1], 1.0, 0.0)
            for l in range(L - 1, -1, -1):
                if l > 0:  # input gradient of layers ≥ 2, before the update (as the kernel does)
                    rt.gemm_nn(deltas[l], weights[l], deltas[l - 1], 1.0, 0.0)
                rt.gemm_tn(deltas[l], acts[l], weights[l], -alpha, 1.0)

    return products


_PRODUCTS = None


def products_bound(layers, batch_size: int, dtype: str, n_batches: int, repeats: int = 5) -> dict:
    """Best and median seconds per epoch of the products alone (one warm-up run first)."""
    global _PRODUCTS
    if _PRODUCTS is None:
        _PRODUCTS = _kernel()
    from symbp.compile.runtime import aligned_copy  # on cache-line boundaries, as symbp's buffers and parameters

    rng = np.random.default_rng(0)
    sizes = [int(n) for n in layers]
    acts = tuple(aligned_copy(rng.random((batch_size, n)).astype(dtype)) for n in sizes)
    deltas = tuple(aligned_copy((rng.standard_normal((batch_size, n)) * 1e-3).astype(dtype)) for n in sizes[1:])
    weights = tuple(aligned_copy((rng.standard_normal((o, i)) / np.sqrt(i)).astype(dtype))
                    for i, o in zip(sizes[:-1], sizes[1:]))
    alpha = 1e-12  # the update must run, but must not drift the weights
    _PRODUCTS(acts, deltas, weights, 2, alpha)
    times = []
    for _ in range(max(1, int(repeats))):
        t0 = time.perf_counter()
        _PRODUCTS(acts, deltas, weights, int(n_batches), alpha)
        times.append(time.perf_counter() - t0)
    return {"times": times, "median_s": float(np.median(times)), "min_s": min(times)}
