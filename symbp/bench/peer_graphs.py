"""The peers' SGD graphs (JAX, PyTensor) for the dense nets, written once for the harness and its cold probes.

Takes: the library's modules (passed in, so that this file imports nothing but NumPy and can be loaded by path in
a fresh process without importing symbp: ``symbp.bench.peer_probe``), the layer sizes, the cost ("quadratic" or
"cross-entropy"), the dtype, mini-batch size m, η, λ and the training-set size n.  Gives:

- ``jax_step(jax, jnp, cost, m, eta, decay)``: ``step(params, X, Y, idx) -> params``, one mini-batch update
  (``params`` a list of (W, b)); ``jax_epoch(...)``: ``epoch(params, X, Y, order) -> params``, every update of
  an epoch in one ``lax.scan`` over the rows of ``order`` gathered inside it.
- ``pytensor_sgd(...)``: shared variables for X, Y, W and b, the cost from ``pytensor.tensor``, gradients by
  ``pytensor.grad``, the SGD step as ``updates``, compiled by ``pytensor.function`` in a given mode; either one
  call per mini-batch (the book's network3 does this) or the whole epoch as one ``pytensor.scan`` over the
  mini-batches (the permutation, reshaped (batches, m), is the input).
- ``scipy_openblas_ldflags()``: flags that link PyTensor's C backend to the OpenBLAS SciPy ships (a pip install of
  PyTensor on a machine without a system BLAS finds none, and its C mode then runs every product through
  Python).

Semantics, as every implementation of the harness (``symbp.bench.impls``): z = a·Wᵀ + b, sigmoid in every
layer, quadratic cost ½Σ(a − y)² or cross-entropy from the logits (Σ y·softplus(−z) + (1 − y)·softplus(z), whose
gradient at z is exactly σ(z) − y), summed over the mini-batch; W ← (1 − ηλ/n)·W − (η/m)·∂C/∂W,
b ← b − (η/m)·∂C/∂b.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np


# ---------------------------------------------------------------------------------------------------- JAX
def jax_step(jax, jnp, cost, m, eta, decay):
    """One jitted-able mini-batch update ``step(params, X, Y, idx) -> params`` (rows ``idx`` of X, Y)."""

    def loss(params, xb, yb):
        a = xb
        for W, b in params:
            z = a @ W.T + b
            a = jax.nn.sigmoid(z)
        if cost == "quadratic":
            return 0.5 * jnp.sum((a - yb) ** 2)
        # cross-entropy of sigmoid(z) written stably from the logits; d/dz = sigmoid(z) - y
        return jnp.sum(yb * jax.nn.softplus(-z) + (1 - yb) * jax.nn.softplus(z))

    grad = jax.grad(loss)

    def step(params, X, Y, idx):
        g = grad(params, X[idx], Y[idx])
        return [(decay * W - (eta / m) * gW, b - (eta / m) * gb) for (W, b), (gW, gb) in zip(params, g, strict=True)]

    return step


def jax_epoch(jax, jnp, cost, m, eta, decay):
    """The whole epoch ``epoch(params, X, Y, order) -> params``: one ``lax.scan`` of ``jax_step``."""
    step = jax_step(jax, jnp, cost, m, eta, decay)

    def epoch(params, X, Y, order):
        nb = order.shape[0] // m
        params, _ = jax.lax.scan(lambda p, idx: (step(p, X, Y, idx), None), params, order[: nb * m].reshape(nb, m))
        return params

    return epoch


# ----------------------------------------------------------------------------------------------- PyTensor
def pytensor_sgd(pytensor, params, X, Y, *, cost, dtype, m, eta, lmbda, n, mode, scan):
    """Shared variables and a compiled SGD function for the dense net of ``params`` ([(W, b), ...]).

    Returns ``(fn, shared)``: ``shared`` is ``{"X", "Y", "W": [...], "b": [...]}`` (PyTensor shared variables,
    ``borrow=True`` copies of the given arrays); ``fn(order)`` runs ``len(order) // m`` updates in place (the
    partial last mini-batch is dropped, as every implementation of the harness does).  ``scan``: the whole epoch
    as one compiled ``pytensor.scan`` (one call); else one compiled call per mini-batch.  ``fn.compiled`` is the
    ``pytensor.function`` (its ``trust_input`` is set: the harness passes int64 arrays of the right shape).
    """
    pt = pytensor.tensor
    dtype = np.dtype(dtype)
    step = np.asarray(eta / m, dtype)
    decay = np.asarray(1 - eta * lmbda / n, dtype)
    Xs = pytensor.shared(np.array(X, dtype=dtype), name="X", borrow=True)
    Ys = pytensor.shared(np.array(Y, dtype=dtype), name="Y", borrow=True)
    Ws = [pytensor.shared(np.array(W, dtype=dtype), name=f"W{l}", borrow=True) for l, (W, _) in enumerate(params, 1)]
    bs = [pytensor.shared(np.array(b, dtype=dtype), name=f"b{l}", borrow=True) for l, (_, b) in enumerate(params, 1)]
    L = len(Ws)

    def update(idx, Wl, bl):
        a, y = Xs[idx], Ys[idx]
        for W, b in zip(Wl, bl, strict=True):
            z = a @ W.T + b
            a = pt.sigmoid(z)
        if cost == "quadratic":
            c = 0.5 * pt.sum((a - y) ** 2)
        else:
            c = pt.sum(y * pt.softplus(-z) + (1 - y) * pt.softplus(z))
        g = pytensor.grad(c, [*Wl, *bl])
        new_W = [(decay * W if lmbda else W) - step * gW for W, gW in zip(Wl, g[:L], strict=True)]
        return new_W + [b - step * gb for b, gb in zip(bl, g[L:], strict=True)]

    state = [*Ws, *bs]
    if scan:
        orders = pt.matrix("orders", dtype="int64")
        finals = pytensor.scan(
            lambda idx, *s: update(idx, list(s[:L]), list(s[L:])),
            sequences=[orders],
            outputs_info=state,
            return_updates=False,
        )
        if not isinstance(finals, (list, tuple)):
            finals = [finals]
        # only the last state is used: PyTensor's scan_save_mem rewrite then keeps one step, not all of them
        f = pytensor.function([orders], [], updates=[(s, r[-1]) for s, r in zip(state, finals, strict=True)],
                              mode=mode)
        f.trust_input = True

        def fn(order):
            nb = len(order) // m
            if nb:
                f(np.ascontiguousarray(np.asarray(order, dtype=np.int64)[: nb * m].reshape(nb, m)))

    else:
        idx = pt.vector("idx", dtype="int64")
        f = pytensor.function([idx], [], updates=list(zip(state, update(idx, Ws, bs), strict=True)), mode=mode)
        f.trust_input = True

        def fn(order):
            order = np.ascontiguousarray(order, dtype=np.int64)
            for k in range(len(order) // m):
                f(order[k * m : (k + 1) * m])

    fn.compiled = f
    return fn, {"X": Xs, "Y": Ys, "W": Ws, "b": bs}


def scipy_openblas_ldflags(pytensor_dir=None) -> str | None:
    """``blas__ldflags`` linking PyTensor's C code to SciPy's bundled OpenBLAS, or None if there is none.

    SciPy's wheels ship OpenBLAS with every symbol prefixed (``scipy_dgemm_``); the flags link that library
    and rename, with ``-D`` macros, each Fortran BLAS name PyTensor's C header declares (``dgemm_`` ->
    ``scipy_dgemm_``).  It is the same library (same file) SciPy and numba use, so threadpoolctl's limit covers
    it.  ``pytensor_dir``: the installed package folder (default: found by import).
    """
    try:
        import scipy
    except ImportError:
        return None
    libdir = Path(scipy.__file__).resolve().parent.parent / "scipy.libs"
    libs = sorted(libdir.glob("libscipy_openblas*.so")) if libdir.is_dir() else []
    if not libs:
        return None
    if pytensor_dir is None:
        import pytensor

        pytensor_dir = Path(pytensor.__file__).resolve().parent
    header = Path(pytensor_dir) / "tensor" / "blas_headers.py"
    names = sorted(set(re.findall(r"\b([sdcz][a-z0-9]+_)\(", header.read_text()))) if header.is_file() else []
    if "dgemm_" not in names:
        return None
    # no comma-separated -Wl options: PYTENSOR_FLAGS splits on commas; scipy has loaded the library already
    return f"-L{libdir} -l:{libs[0].name} " + " ".join(f"-D{n}=scipy_{n}" for n in names)
