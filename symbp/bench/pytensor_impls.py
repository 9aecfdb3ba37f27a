"""PyTensor (Theano's successor) running the dense SGD epoch, for the benchmark harness.

Takes: what ``symbp.bench.impl.Impl.setup`` takes.  Gives: ``PytensorNumba`` (``pytensor-numba``: PyTensor's
default mode, the epoch as one ``pytensor.scan``), ``PytensorC`` (``pytensor-c``: its C mode, one compiled call
per mini-batch), the variants run only when named (``PytensorNumbaPerBatch``, ``PytensorCScan``) and
``configure_pytensor_blas`` (the BLAS its C mode links to).  The graphs are built by
``symbp.bench.peer_graphs.pytensor_sgd``; cold and warm compiles come from ``symbp.bench.fresh.peer_probe``.
"""

from __future__ import annotations

import time
from typing import ClassVar

import numpy as np

from symbp.bench.fresh import peer_probe
from symbp.bench.impl import Impl, ImplUnavailable


class _Pytensor(Impl):
    """PyTensor (Theano's successor): the net as a ``pytensor.tensor`` graph, ``pytensor.grad``, shared variables
    for X, Y, W and b, the SGD step as ``updates``, compiled by ``pytensor.function`` in ``mode``
    (``symbp.bench.peer_graphs.pytensor_sgd``).  ``scan``: the whole epoch is one compiled ``pytensor.scan``
    over the mini-batches (the permutation is the input); else one compiled call per mini-batch, as the book's
    network3.py does.

    ``compile_seconds``: ``pytensor.function`` plus its first call on one mini-batch (the numba backend compiles
    then), on whatever PyTensor's compile cache (``config.base_compiledir``) holds; fresh-process cold and warm
    figures come from ``symbp.bench.peer_probe``.  Threads: products go to the OpenBLAS SciPy ships (numba's
    ``np.dot`` in NUMBA mode, ``?gemm_`` in C mode; see ``peer_graphs.scipy_openblas_ldflags``), which the
    harness's threadpoolctl limit covers; PyTensor's OpenMP is off (its default).
    """

    mode: ClassVar[str] = "NUMBA"
    scan: ClassVar[bool] = True

    @classmethod
    def available(cls):
        try:
            import pytensor
        except Exception as exc:
            return False, f"import pytensor failed: {exc}"
        if cls.mode in ("CVM", "C") and not pytensor.config.cxx:
            return False, "PyTensor found no C++ compiler (config.cxx is empty): its C mode cannot run here"
        if cls.mode == "NUMBA":
            try:
                import numba  # noqa: F401
            except Exception as exc:
                return False, f"PyTensor's numba mode needs numba: {exc}"
        return True, ""

    def _setup(self, params, X, Y):
        import pytensor

        from symbp.bench.peer_graphs import pytensor_sgd

        self._pytensor = pytensor
        self.info = {
            "pytensor": pytensor.__version__,
            "mode": self.mode,
            "default_mode": str(pytensor.config.mode),
            "variant": "scan: the whole epoch in one call" if self.scan else "one call per mini-batch",
            "openmp": bool(pytensor.config.openmp),
            "numba_fastmath": bool(getattr(pytensor.config, "numba__fastmath", False)),
        }
        if self.mode in ("CVM", "C"):
            self.info["blas"] = configure_pytensor_blas(pytensor)
        t0 = time.perf_counter()
        try:
            self._fn, self._shared = pytensor_sgd(
                pytensor, params, X, Y, cost=self.cost, dtype=self.dtype, m=self.m, eta=self.eta,
                lmbda=self.lmbda, n=self.n, mode=self.mode, scan=self.scan,
            )
            self._fn(np.arange(self.m, dtype=np.int64))  # the numba backend compiles on the first call
        except Exception as exc:  # NotImplementedError (an Op without code for the mode), a failed C compile, ...
            raise ImplUnavailable(f"PyTensor mode {self.mode} could not compile the SGD graph here: "
                                  f"{type(exc).__name__}: {str(exc)[:300]}") from exc
        self.compile_seconds = time.perf_counter() - t0
        self.set_params(params)
        self.info["linker"] = type(self._fn.compiled.maker.linker).__name__

    def set_params(self, params):
        for sW, sb, (W, b) in zip(self._shared["W"], self._shared["b"], params, strict=True):
            sW.set_value(np.array(W, dtype=self.dtype), borrow=True)
            sb.set_value(np.array(b, dtype=self.dtype), borrow=True)

    def params(self):
        return [(W.get_value(), b.get_value()) for W, b in zip(self._shared["W"], self._shared["b"], strict=True)]

    def epoch(self, order):
        self._fn(order)


def configure_pytensor_blas(pytensor) -> dict:
    """Give PyTensor's C backend a BLAS: its own detection or the user's ``blas__ldflags`` when they find one, else
    SciPy's bundled OpenBLAS (``peer_graphs.scipy_openblas_ldflags``).  Returns what was used, for the record."""
    import logging
    import warnings

    import scipy.linalg  # noqa: F401  (loads SciPy's OpenBLAS: the C modules link to the already-loaded copy)

    from symbp.bench.peer_graphs import scipy_openblas_ldflags

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "could not link to a BLAS installation": handled below
        flags = pytensor.config.blas__ldflags
    if flags and "scipy_dgemm_" not in flags:
        return {"source": "PyTensor's blas__ldflags (its detection or the user's)", "ldflags": flags}
    alt = flags or scipy_openblas_ldflags()
    if not alt:
        return {"source": "none: PyTensor's C mode runs the products through NumPy from Python", "ldflags": ""}
    pytensor.config.blas__ldflags = alt
    # ":libscipy_openblas-….so" is not a -l name PyTensor's library-folder check recognises; it links fine
    logging.getLogger("pytensor.tensor.blas").setLevel(logging.ERROR)
    return {"source": "SciPy's bundled OpenBLAS (symbols renamed by -D macros; set by the harness)",
            "ldflags": alt.split(" -D")[0] + " -D<name>_=scipy_<name>_ ..."}


class PytensorNumba(_Pytensor):
    """PyTensor in its default mode, NUMBA (the linker ``"auto"`` picks numba in PyTensor 3), the whole epoch as
    one ``pytensor.scan`` call.  Measured on the ch.1 net at mini-batch 10 (2 cores, busy machine): scan
    0.23 s/epoch, one call per mini-batch 0.25 s (``pytensor-numba-per-batch``)."""

    name = "pytensor-numba"
    mode = "NUMBA"
    scan = True

    @classmethod
    def probe_key(cls, case):
        return ("pytensor", cls.mode, cls.scan, case.layers, case.cost, case.dtype, case.batch_size)

    @classmethod
    def cold_probe(cls, case, threads=1):
        return peer_probe("pytensor", case, threads, mode=cls.mode, scan=cls.scan)


class PytensorC(_Pytensor):
    """PyTensor's C mode (``mode="CVM"``: C thunks run by the C virtual machine; ``"C"`` alone raises
    NotImplementedError for this graph in PyTensor 3.0), one call per mini-batch.  Measured on the ch.1 net at
    mini-batch 10 (2 cores, busy machine): 0.16 s/epoch, the epoch as one scan 0.19 s (``pytensor-c-scan``);
    without a BLAS (what a pip install finds here) 0.95 s."""

    name = "pytensor-c"
    mode = "CVM"
    scan = False


class PytensorNumbaPerBatch(PytensorNumba):
    """``pytensor-numba`` with one compiled call per mini-batch (not run by default: the scan is faster)."""

    name = "pytensor-numba-per-batch"
    scan = False

    @classmethod
    def probe_key(cls, case):
        return None


class PytensorCScan(PytensorC):
    """``pytensor-c`` with the whole epoch as one ``pytensor.scan`` (not run by default: it is slower)."""

    name = "pytensor-c-scan"
    scan = True
