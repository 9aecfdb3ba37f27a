"""The BLAS bound of an epoch: its matrix products alone, as fast as this machine's BLAS runs them.

Takes: layer sizes, a mini-batch size, a dtype, a mini-batch count.  Gives: ``products_bound(...)``, the
seconds one epoch spends in exactly the ``?gemm`` calls that symbp's ``sgd_epoch`` kernel makes per
mini-batch (forward ``z = a·Wᵀ`` for every layer, ``δˡ⁻¹ = δˡ·Wˡ`` for layers ≥ 2, the weight update
``W ← W − α·δᵀa``), through the same ``runtime.batch_*`` entry points, on contiguous buffers that stay in
cache: no gather of the shuffled rows, no activation, no bias, no Python.  Its FLOPs are
``harness.epoch_flops``, so its GFLOP/s is the most any epoch built on this BLAS can reach, and its
fraction of the matmul peak caps every implementation's fraction (measured in the same run, on the same
machine).
"""

from __future__ import annotations

import time

import numpy as np

from symbp.bench.conv import as_net


def _kernel():
    from numba import njit

    from symbp.compile.backends.numba import runtime as rt

    @njit(nogil=True, cache=True)
    def products(acts, deltas, weights, n_batches, alpha):
        L = len(weights)
        for _ in range(n_batches):
            for l in range(L):  # forward: z^{l+1} = a^l · W^{l+1}ᵀ
                rt.batch_nt(acts[l], weights[l], acts[l + 1], 1.0, 0.0)
            for l in range(L - 1, -1, -1):
                if l > 0:  # input gradient of layers ≥ 2, before the update (as the kernel does)
                    rt.batch_nn(deltas[l], weights[l], deltas[l - 1], 1.0, 0.0)
                rt.batch_tn(deltas[l], acts[l], weights[l], -alpha, 1.0)

    return products


_PRODUCTS = None


def products_bound(layers, batch_size: int, dtype: str, n_batches: int, repeats: int = 5) -> dict:
    """Best and median seconds per epoch of the products alone (one warm-up run first)."""
    global _PRODUCTS
    if _PRODUCTS is None:
        _PRODUCTS = _kernel()
    from symbp.compile.backends.host import aligned_copy  # on cache-line boundaries, as symbp's buffers and parameters

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


# ------------------------------------------------------------------------------------------- conv nets
# symbp's sgd_epoch kernel for a conv net (``model.program("sgd_epoch")``) makes, per mini-batch of m, with G the
# layer's samples per product (``symbp.compile.passes.samples_per_product``: 1 for most layers):
#   per conv layer, per group of G samples:
#                                  Z = W·[col_r … col_r+G−1]          gemm_nn (F × C·kh·kw)·(C·kh·kw × G·Ho·Wo)
#   per fc layer:                  z = a·Wᵀ                           batch_nt
#   per fc layer, top down:        δ_in = δ·W                         batch_nn (the first fc layer's too: it feeds
#                                                                       a conv)
#                                  W ← W − α·δᵀ·a                     batch_tn
#   per conv layer, top down, per group of G samples:
#                                  dcol = Wᵀ·[δ_r … δ_r+G−1]          gemm_tn (not for the net's first layer)
#                                  S ← S + [col_r …]·[δ_r …]ᵀ         gemm_nt (patches × maps; W ← W − α·Sᵀ after)
# The GEMM bound times exactly these calls (same shapes, but for the row of ones below the patches that gives
# symbp's weights products their bias sums; same runtime entry points; the patches per sample or side by side as
# the kernel keeps them).  It does not gather rows, copy patches (im2col/col2im) or δ, add or sum
# biases, update W from S, apply σ, pool or run softmax: the epoch minus this bound is what all of those cost.
def _conv_kernels():
    from numba import njit

    from symbp.compile.backends.numba import runtime as rt

    @njit(nogil=True, cache=True)
    def gemms(cW, cols, cols2, cz, zg, dcols, S, c_input, G, fW, facts, fdeltas, n_batches, alpha):
        nc, nf = len(cW), len(fW)
        m = cz[0].shape[0]
        for _ in range(n_batches):
            for l in range(nc):
                n = cz[l].shape[2]
                if G[l] > 1:
                    for r0 in range(0, m, G[l]):
                        ng = min(G[l], m - r0)
                        rt.gemm_nn(cW[l], cols2[l][:, r0 * n:(r0 + ng) * n], zg[l][:, :ng * n], 1.0, 0.0)
                else:
                    for r in range(m):
                        rt.gemm_nn(cW[l], cols[l][r], cz[l][r], 1.0, 0.0)
            for l in range(nf):
                rt.batch_nt(facts[l], fW[l], facts[l + 1], 1.0, 0.0)
            for l in range(nf - 1, -1, -1):
                rt.batch_nn(fdeltas[l + 1], fW[l], fdeltas[l], 1.0, 0.0)
                rt.batch_tn(fdeltas[l + 1], facts[l], fW[l], -alpha, 1.0)
            for l in range(nc - 1, -1, -1):
                n = cz[l].shape[2]
                if G[l] > 1:
                    for r0 in range(0, m, G[l]):
                        ng = min(G[l], m - r0)
                        if c_input[l]:
                            rt.gemm_tn(cW[l], zg[l][:, :ng * n], dcols[l][:, :ng * n], 1.0, 0.0)
                    for r0 in range(0, m, G[l]):
                        ng = min(G[l], m - r0)
                        rt.gemm_nt(cols2[l][:, r0 * n:(r0 + ng) * n], zg[l][:, :ng * n], S[l], 1.0,
                                   0.0 if r0 == 0 else 1.0)
                else:
                    if c_input[l]:
                        for r in range(m):
                            rt.gemm_tn(cW[l], cz[l][r], dcols[l], 1.0, 0.0)
                    for r in range(m):
                        rt.gemm_nt(cols[l][r], cz[l][r], S[l], 1.0, 0.0 if r == 0 else 1.0)

    return gemms


_CONV = None


def _timed(fn, args, n_batches, repeats):
    fn(*args, 2, 1e-12)  # warm-up (and compile)
    times = []
    for _ in range(max(1, int(repeats))):
        t0 = time.perf_counter()
        fn(*args, int(n_batches), 1e-12)  # the update must run, but must not drift the weights
        times.append(time.perf_counter() - t0)
    return {"times": times, "median_s": float(np.median(times)), "min_s": min(times)}


def conv_gemm_bound(net, batch_size: int, dtype: str, n_batches: int, repeats: int = 5) -> dict:
    """Seconds per epoch of a conv net's gemm calls alone (see above): ``times``, ``median_s``, ``min_s``,
    ``what`` and ``samples_per_product`` (per conv layer)."""
    global _CONV
    if _CONV is None:
        _CONV = _conv_kernels()
    from symbp.compile.backends.host import aligned_copy
    from symbp.compile.passes import samples_per_product

    net = as_net(net)
    m = int(batch_size)
    rng = np.random.default_rng(0)

    def arr(shape, scale=1.0):
        return aligned_copy((rng.standard_normal(shape) * scale).astype(dtype))

    cW4, cz4, cols, cols2, zg, dcols, sums, c_input, groups = [], [], [], [], [], [], [], [], []
    fsizes = []
    for k, (layer, (i, o)) in enumerate(zip(net.layers, net.shapes(), strict=True)):
        if layer[0] == "conv":
            F, kh, kw = layer[1:4]  # stride and padding change only the output size o
            C, n = i[0], o[1] * o[2]
            G = samples_per_product(F, n, C * kh * kw)
            cW4.append(arr((F, C, kh, kw), 1 / np.sqrt(C * kh * kw)))
            cz4.append(arr((m, *o), 1e-3))  # the forward product's output, and the δ read back
            # the patches: per sample, or (grouped) all samples side by side; the other form empty
            cols.append(aligned_copy(rng.random((m if G == 1 else 0, C * kh * kw, n)).astype(dtype)))
            cols2.append(aligned_copy(rng.random((C * kh * kw, m * n if G > 1 else 0)).astype(dtype)))
            zg.append(arr((F, G * n), 1e-3))  # a group's maps, and its δ side by side
            dcols.append(arr((C * kh * kw, G * n)))
            sums.append(arr((C * kh * kw, F)))
            c_input.append(k > 0)
            groups.append(G)
        elif layer[0] in ("fc", "softmax"):
            if not fsizes:
                fsizes.append(int(np.prod(i)))
            fsizes.append(o[0])
    fW = tuple(arr((o, i), 1 / np.sqrt(i)) for i, o in zip(fsizes[:-1], fsizes[1:], strict=True))
    facts = tuple(aligned_copy(rng.random((m, n)).astype(dtype)) for n in fsizes)
    fdeltas = tuple(arr((m, n), 1e-3) for n in fsizes)
    flags = np.array(c_input, dtype=np.bool_)
    G = np.array(groups, dtype=np.int64)
    gemms = _CONV
    cW2 = tuple(W.reshape(W.shape[0], -1) for W in cW4)
    cz3 = tuple(z.reshape(m, z.shape[1], -1) for z in cz4)
    out = _timed(gemms, (cW2, tuple(cols), tuple(cols2), cz3, tuple(zg), tuple(dcols), tuple(sums), flags, G, fW,
                         facts, fdeltas), n_batches, repeats)
    out["what"] = ("per conv layer and sample (or group of samples, as symbp makes them): W·col (forward), Wᵀ·δ "
                   "(input δ, not for the first layer), col·δᵀ (∂C/∂W); per mini-batch the fc products; through "
                   "the numba runtime's gemm entry points")
    out["samples_per_product"] = groups
    return out
