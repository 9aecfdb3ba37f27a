"""The cross-check: every implementation's parameters after a few mini-batch updates against a float64 reference.

Takes: set-up implementations (``symbp.bench.impls.Impl``), a ``Case``, the data and the initial parameters.
Gives: ``cross_check`` (a report of each implementation's worst relative error ``||got - ref|| / ||ref||``,
which must be at most ``TOLERANCE`` of the case's dtype), ``checked_cross_check`` (the same, dropping a peer
that fails it), ``CrossCheckError`` (an implementation disagrees) and ``DivergedError`` (the reference's own
parameters overflow the case's dtype: η or λ too large for training to stay finite).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from symbp.bench.cases import Case
from symbp.bench.conv import NumpyIm2col
from symbp.bench.impls import REFERENCE, Impl, NumpyBatched

CHECK_BATCHES = 3
TOLERANCE = {"float64": 1e-10, "float32": 1e-4}


class DivergedError(ValueError):
    """The float64 reference's parameters overflowed during the cross-check (to inf/NaN, or beyond the largest
    number of the case's dtype): the case's η (or λ) is too large for training to stay finite, so there is
    nothing to compare or time."""

    def __init__(self, case: Case, reference: str, batches: int):
        self.case = case
        knobs = f"eta={case.eta:g}" + (f", lmbda={case.lmbda:g}" if case.lmbda else "")
        smaller = "a smaller eta or lmbda" if case.lmbda else "a smaller eta"
        super().__init__(
            f"case {case.name!r} diverges at {knobs}: the parameters of the float64 reference ({reference}) "
            f"overflowed {case.dtype} (to inf or NaN) within {batches} mini-batch updates, so there is nothing to "
            f"compare or time; use {smaller}"
        )


class CrossCheckError(AssertionError):
    """An implementation's parameters after the check updates disagree with the reference beyond tolerance."""

    def __init__(self, impl: str, param: str, error: float, tolerance: float, case: str, reference=REFERENCE):
        self.impl, self.param, self.error, self.tolerance, self.case = impl, param, error, tolerance, case
        super().__init__(
            f"{impl} disagrees with the {reference} reference on case {case!r}: parameter {param} has "
            f"relative error {error:.3g} > {tolerance:g} after {CHECK_BATCHES} mini-batch updates; "
            "nothing was timed"
        )


def _rel_errors(got, ref) -> dict[str, float]:
    if len(got) != len(ref):
        return {"layers": float("inf")}
    out = {}
    for l, ((gW, gb), (rW, rb)) in enumerate(zip(got, ref, strict=True), start=1):
        for name, g, r in ((f"W{l}", gW, rW), (f"b{l}", gb, rb)):
            g = np.asarray(g, dtype=np.float64)
            if g.shape != r.shape or not np.all(np.isfinite(g)):
                out[name] = float("inf")
                continue
            out[name] = _rel_error(g, r)
    return out


def _rel_error(g: np.ndarray, r: np.ndarray) -> float:
    """``||g - r|| / ||r||`` for finite arrays, computed on both scaled by their largest magnitude: the norms of
    parameters near the float64 limit (a huge η) would overflow to inf and make the ratio NaN."""
    tiny = np.finfo(np.float64).tiny
    scale = max(float(np.max(np.abs(g), initial=0.0)), float(np.max(np.abs(r), initial=0.0)), tiny)
    gs, rs = g / scale, r / scale
    return float(np.linalg.norm(gs - rs) / max(np.linalg.norm(rs), tiny))


def cross_check(impls: Sequence[Impl], case: Case, X, Y, params, batches: int = CHECK_BATCHES) -> dict:
    """Run ``batches`` updates in each (set-up) implementation and compare with the float64 reference.

    Every implementation's parameters are reset to ``params`` afterwards.  Raises ``CrossCheckError`` on the
    first implementation (in the given order) whose worst array exceeds the tolerance.
    """
    order = np.random.default_rng(12345).permutation(len(X))[: batches * case.batch_size].astype(np.int64)
    ref = NumpyBatched() if case.net is None else NumpyIm2col()
    p64 = [(np.asarray(W, np.float64), np.asarray(b, np.float64)) for W, b in params]
    ref.setup(
        case.spec,
        case.cost,
        "float64",
        p64,
        np.asarray(X, np.float64),
        np.asarray(Y, np.float64),
        case.batch_size,
        case.eta,
        case.lmbda,
    )
    with np.errstate(over="ignore", invalid="ignore"):  # a diverging reference is reported below, as one error
        ref.epoch(order)
    ref_params = ref.params()
    limit = float(np.finfo(case.dtype).max)  # beyond it, the case's dtype holds inf
    if not all(np.all(np.abs(a) <= limit) for pair in ref_params for a in pair):  # False for NaN too
        raise DivergedError(case, ref.name, batches)
    tol = TOLERANCE[case.dtype]
    report = {"reference": f"{ref.name} (float64)", "batches": batches, "tolerance": tol, "errors": {}}
    for impl in impls:
        impl.set_params(params)
        impl.epoch(order)
        errs = _rel_errors(impl.params(), ref_params)
        worst = max(errs, key=errs.get)
        report["errors"][impl.name] = {"max_rel": errs[worst], "worst": worst}
        if not errs[worst] <= tol:
            raise CrossCheckError(impl.name, worst, errs[worst], tol, case.name, ref.name)
        impl.set_params(params)
    return report


def checked_cross_check(impls: list, case: Case, X, Y, params, entries: dict, log) -> dict:
    """``cross_check`` that drops a peer which fails it (marked unavailable, with its error) and checks the
    rest again; symbp failing it raises ``CrossCheckError``: then nothing is timed."""
    while True:
        try:
            return cross_check(impls, case, X, Y, params)
        except CrossCheckError as exc:
            bad = next(impl for impl in impls if impl.name == exc.impl)
            if bad.name.startswith("symbp"):
                raise
            why = (f"failed the cross-check: parameter {exc.param} has relative error {exc.error:.3g} > "
                   f"{exc.tolerance:g} after {CHECK_BATCHES} mini-batch updates")
            entries[bad.name].update(status="unavailable", reason=why)
            log(f"[yellow]{case.name}: {bad.name} not timed: {why}")
            impls.remove(bad)
            if not impls:
                raise RuntimeError(f"case {case.name!r}: no implementation passed the cross-check") from exc
