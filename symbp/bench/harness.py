"""The benchmark harness: the same SGD epoch through every implementation, checked first, then timed.

Takes: a suite (a name from ``symbp/bench/suites.py``, a ``Suite``, or a list of ``Case``), MNIST
(``--data-dir``; or arrays passed directly), the implementations to run (names from
``symbp.bench.impls.IMPLS`` or ``Impl`` subclasses), repeats, a thread count.  Gives: a results dict (see
``run_suite``) and, in ``out_dir``, ``results.json``, ``results.md`` and PNG plots (see
``symbp.bench.report``); ``main(argv)`` is the command line (``python -m symbp.bench --quick --out DIR``).

Per case, in this order:
1. Cross-check: every implementation runs the same ``CHECK_BATCHES`` mini-batch updates from the same initial
   parameters on the same data; each result is compared with ``numpy-batched`` computed in float64 on the same
   (dtype-rounded) inputs.  Per parameter array the error is ``||got - ref|| / ||ref||``; the worst must be <=
   1e-10 (float64) or 1e-4 (float32).  A peer that fails is not timed (reported unavailable, with its error)
   and the others are checked again; if symbp fails, ``CrossCheckError`` names the implementation and the
   array, and nothing is timed.  If the reference's own parameters overflow the case's dtype (an η or λ too
   large for training to stay finite), ``DivergedError`` says so instead, and nothing is timed.
2. Cold compile / warm load (optional): for symbp's backends ``symbp.bench.probe`` in a fresh process with an
   empty ``SYMBP_CACHE_DIR``, then again in a second fresh process on that now-filled cache; likewise JAX's first
   jitted SGD step and PyTensor's numba-mode function (``symbp.bench.peer_probe``, ``peer_probe``), in the same
   run, so that the figures compare.
3. Steady state: one warm-up epoch each, then ``repeats`` epochs interleaved round-robin across
   implementations (each round starts one implementation later, all use the same fresh permutation);
   median/min/max seconds per epoch, GFLOP/s from exact matmul FLOP counts (``epoch_flops``), fraction of the
   matmul peak measured in the same run at the same BLAS thread count, and speed-up ratios ``median(baseline)
   / median(impl)`` against every baseline.
4. Memory (optional): one more epoch with the peak-RSS mark reset (growth of the resident set above its level
   before the epoch: everything, native allocations included), and one under ``tracemalloc`` (peak bytes
   allocated during the epoch through Python's allocators, which include NumPy's array buffers; not
   torch/JAX/numba-internal memory).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import importlib.util
import math
import os
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from symbp.bench import machine
from symbp.bench.bound import conv_gemm_bound, products_bound
from symbp.bench.conv import (
    CONV_IMPLS,
    CONV_REFERENCE,
    NETS,
    ConvNet,
    NumpyIm2col,
    SymbpConvNumpy,
    as_net,
    conv_epoch_flops,
    conv_flops,
    init_conv_params,
)
from symbp.bench.conv import COST as CONV_COST
from symbp.bench.fresh import compile_probe, peer_probe  # noqa: F401  (re-exported)
from symbp.bench.impls import (
    COSTS,
    DTYPES,
    EXTRA_IMPLS,
    IMPLS,
    REFERENCE,
    Impl,
    ImplUnavailable,
    NumpyBatched,
    SymbpNumpy,
    backend_impls,
    init_params,
)
from symbp.paths import check_writable_folder

CHECK_BATCHES = 3
FULL_EPOCH = 50_000  # MNIST's training set: ``s_per_50k`` scales a shorter epoch to it
#: implementation registries and cross-check references per kind of case
REGISTRIES: dict[str, dict[str, type[Impl]]] = {"dense": IMPLS, "conv": CONV_IMPLS}
#: implementations run only when named, per kind
EXTRAS: dict[str, dict[str, type[Impl]]] = {"dense": EXTRA_IMPLS, "conv": {}}
REFERENCES = {"dense": REFERENCE, "conv": CONV_REFERENCE}
TOLERANCE = {"float64": 1e-10, "float32": 1e-4}
SUITES_FILE = Path(__file__).resolve().with_name("suites.py")  # inside the package: installs carry it
DEFAULT_OUT = Path("results-local") / "bench"


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


@dataclasses.dataclass(frozen=True)
class Case:
    """One benchmark configuration.  ``samples=None`` means the whole training set (50,000 for MNIST).

    A dense case gives ``layers`` (sizes, sigmoid in every layer; cost "quadratic" unless given, η 3.0).  A
    conv case gives ``net`` instead (a name from ``symbp.bench.conv.NETS`` or a ``ConvNet``); its ``layers``
    become the net's flat activation sizes, its cost "log-likelihood" (the nets end in softmax) and η 0.1
    unless given.  ``kind`` is "dense" or "conv": it picks the implementations and the reference.
    """

    name: str
    layers: tuple[int, ...] = ()
    batch_size: int = 10
    dtype: str = "float64"
    cost: str | None = None
    samples: int | None = None
    eta: float | None = None
    lmbda: float = 0.0
    repeats: int = 5
    net: ConvNet | str | None = None

    @property
    def kind(self) -> str:
        return "dense" if self.net is None else "conv"

    @property
    def spec(self):
        """What implementations' ``setup`` takes: the layer sizes, or the ``ConvNet``."""
        return self.layers if self.net is None else self.net

    def __post_init__(self):
        if self.net is not None:
            try:
                net = as_net(self.net)
            except ValueError as exc:
                raise ValueError(f"case {self.name!r}: {exc}") from None
            if self.layers and tuple(int(n) for n in self.layers) != net.sizes:
                raise ValueError(f"case {self.name!r}: give layers or net, not both")
            object.__setattr__(self, "net", net)
            object.__setattr__(self, "layers", net.sizes)
            object.__setattr__(self, "cost", CONV_COST if self.cost is None else self.cost)
            object.__setattr__(self, "eta", 0.1 if self.eta is None else float(self.eta))
            if self.cost != CONV_COST:
                raise ValueError(f"case {self.name!r}: a conv net's cost is {CONV_COST!r}, got {self.cost!r}")
        else:
            object.__setattr__(self, "cost", "quadratic" if self.cost is None else self.cost)
            object.__setattr__(self, "eta", 3.0 if self.eta is None else float(self.eta))
        object.__setattr__(self, "lmbda", float(self.lmbda))
        if not (math.isfinite(self.eta) and self.eta > 0):
            raise ValueError(f"case {self.name!r}: eta must be a finite number > 0, got {self.eta:g}")
        if not (math.isfinite(self.lmbda) and self.lmbda >= 0):
            raise ValueError(f"case {self.name!r}: lmbda must be a finite number >= 0, got {self.lmbda:g}")
        object.__setattr__(self, "layers", tuple(int(n) for n in self.layers))
        if len(self.layers) < 2 or min(self.layers) < 1:
            raise ValueError(f"case {self.name!r}: layers must be >= 2 positive sizes, got {self.layers}")
        if self.dtype not in DTYPES:
            raise ValueError(f"case {self.name!r}: dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.net is None and self.cost not in COSTS:
            raise ValueError(f"case {self.name!r}: cost must be one of {COSTS}, got {self.cost!r}")
        if self.batch_size < 1 or self.repeats < 1 or (self.samples is not None and self.samples < self.batch_size):
            raise ValueError(f"case {self.name!r}: need batch_size >= 1, repeats >= 1, samples >= batch_size")

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["layers"] = list(self.layers)
        d["net"] = None if self.net is None else self.net.to_dict()
        return d


def case_flops(case: Case, n_samples: int) -> int:
    """Exact product FLOPs of one epoch of ``case`` over ``n_samples`` samples."""
    return epoch_flops(case.layers, n_samples) if case.net is None else conv_epoch_flops(case.net, n_samples)


def case_params(case: Case, dtype=None, seed=0):
    """The initial parameters every implementation of ``case`` starts from."""
    dtype = dtype or case.dtype
    return init_params(case.layers, dtype, seed) if case.net is None else init_conv_params(case.net, dtype, seed)


@dataclasses.dataclass(frozen=True)
class Suite:
    """A named list of cases.  ``quick`` suites prove the harness works; they are too small to judge speed."""

    name: str
    cases: tuple[Case, ...]
    description: str = ""
    quick: bool = False


def epoch_flops(layers: Sequence[int], n_samples: int) -> int:
    """Exact matmul FLOPs of one SGD epoch over ``n_samples`` samples (multiply and add counted separately).

    Per sample: forward 2*sum_l n_in*n_out, weight gradients 2*sum_l n_in*n_out, input gradients (delta^l from
    delta^{l+1}) 2*sum_{l>=2} n_in*n_out (layer 1 needs none).  Elementwise work, bias sums and updates not
    counted.
    """
    pairs = [int(a) * int(b) for a, b in zip(layers[:-1], layers[1:], strict=True)]
    return int(n_samples) * (4 * sum(pairs) + 2 * sum(pairs[1:]))


def one_hot(labels: np.ndarray, k: int, dtype="float64") -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size and (labels.min() < 0 or labels.max() >= k):
        raise ValueError(f"labels must be a 1-d array of integers in [0, {k}), got shape {labels.shape}")
    Y = np.zeros((labels.size, k), dtype=dtype)
    Y[np.arange(labels.size), labels.astype(np.int64)] = 1
    return Y


# ---------------------------------------------------------------------------------------- suites, data
def load_suites(path: str | os.PathLike | None = None) -> dict[str, Suite]:
    """The ``SUITES`` dict of a suite file (default: ``symbp/bench/suites.py``, shipped with the package)."""
    path = Path(path or os.environ.get("SYMBP_BENCH_SUITES") or SUITES_FILE)
    if not path.is_file():
        raise FileNotFoundError(
            f"suite definitions not found at {path}; symbp ships them as symbp/bench/suites.py "
            "(pass suites_file= / --suites-file, set SYMBP_BENCH_SUITES, or give cases directly)"
        )
    spec = importlib.util.spec_from_file_location("_symbp_bench_suites", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    suites = getattr(module, "SUITES", None)
    if not isinstance(suites, dict):
        raise TypeError(f"{path} must define SUITES, a dict of name -> Suite")
    return suites


def _resolve_suite(spec, suites_file=None, quick=False) -> Suite:
    if spec is None:
        spec = "quick" if quick else "full"
    if isinstance(spec, Suite):
        return spec
    if isinstance(spec, Case):
        return Suite(spec.name, (spec,))
    if isinstance(spec, str):
        suites = load_suites(suites_file)
        if spec not in suites:
            raise KeyError(f"unknown suite {spec!r}; known: {', '.join(sorted(suites))}")
        return suites[spec]
    cases = tuple(spec)
    if not cases or not all(isinstance(c, Case) for c in cases):
        raise TypeError("give a suite name, a Suite, or a non-empty list of Case objects")
    return Suite("custom", cases)


def check_threads(threads, what: str = "threads") -> int:
    """``threads`` as an int between 1 and the cores this process may use (more only oversubscribes: BLAS
    allocates per-thread buffers, and the peak and the timings would measure the scheduler)."""
    n = int(threads)
    cores = machine.usable_cores()
    if n < 1:
        raise ValueError(f"{what} must be >= 1, got {n}")
    if n > cores:
        raise ValueError(f"{what} {n} is more than the {cores} CPU cores this process may use: give at most {cores}")
    return n


def check_repeats(repeats, what: str = "repeats") -> int | None:
    """``repeats`` as an int >= 1, or None (each case's own)."""
    if repeats is None:
        return None
    if int(repeats) < 1:
        raise ValueError(f"{what} must be >= 1 (timed epochs per implementation), got {repeats}")
    return int(repeats)


def check_out_dir(out_dir, what: str = "out_dir") -> Path:
    """The results folder: it exists and a file can be written in it, or it can be created (its nearest
    existing parent is a folder this process can write in).  Checked before anything runs; nothing is created."""
    text = os.fspath(out_dir)
    if not text:
        raise ValueError(f"{what}: the path is empty; give a folder for the results (default: {DEFAULT_OUT})")
    folder = Path(text).expanduser()
    check_writable_folder(folder, what)
    return folder


def check_data_dir(data_dir, what: str = "data_dir") -> Path:
    """An explicitly given data folder exists and holds MNIST's four files (directly or in ``mnist/``): it is
    never silently replaced by ``$SYMBP_DATA_DIR``, the cache or a download."""
    from symbp.data.registry import get_spec

    spec = get_spec("mnist")
    base = Path(data_dir).expanduser()
    elsewhere = "without it, MNIST is looked for in $SYMBP_DATA_DIR, then the cache, then downloaded"
    if not base.is_dir():
        kind = "is not a folder" if base.exists() else "does not exist"
        raise ValueError(f"{what}: {base} {kind} ({elsewhere})")
    for folder in (base, base / spec.name):
        if all((folder / name).is_file() for name in spec.filenames):
            return base
    raise ValueError(f"{what}: neither {base} nor {base / spec.name} holds the four {spec.title} files "
                     f"({', '.join(spec.filenames)}; {elsewhere})")


def load_data(data_dir=None) -> tuple[np.ndarray, np.ndarray]:
    """MNIST's 50,000 training samples via ``symbp.data``: (X (50000, 784) float64, labels int64).  An explicit
    ``data_dir`` must hold the files (``check_data_dir``); without it, ``$SYMBP_DATA_DIR`` and symbp's defaults."""
    if data_dir is not None:
        check_data_dir(data_dir)
    data_dir = data_dir or os.environ.get("SYMBP_DATA_DIR")
    try:
        from symbp.data import load_mnist
    except ImportError as exc:
        raise RuntimeError(
            f"symbp.data.load_mnist is not available ({exc}); pass arrays with data=(X, labels)"
        ) from exc
    train = load_mnist(data_dir, dtype="float64").train
    X, labels = train[0], train[1]
    return np.asarray(X, dtype=np.float64), np.asarray(labels, dtype=np.int64)


def _as_xy(data, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    X, T = data
    X = np.asarray(X, dtype=np.float64)
    T = np.asarray(T)
    Y = one_hot(T, n_out) if T.ndim == 1 else T.astype(np.float64)
    if X.ndim != 2 or Y.shape != (X.shape[0], n_out):
        raise ValueError(
            f"data must be X (n, n_in) and labels (n,) or one-hot Y (n, {n_out}); got {X.shape} and {T.shape}"
        )
    return X, Y


def _registry(kind: str) -> dict[str, type[Impl]]:
    """The implementations of ``kind``, with an adapter for every symbp backend registered since import."""
    base = SymbpNumpy if kind == "dense" else SymbpConvNumpy
    return {**REGISTRIES[kind], **backend_impls(REGISTRIES[kind], base)}


def resolve_impls(impls=None, kind: str = "dense") -> list[type[Impl]]:
    """Implementation classes of ``kind`` ("dense" or "conv") from names (or classes); None: every registered
    implementation of that kind.  A name or class of another kind is left out; an unknown name is an error."""
    registry = _registry(kind)
    if impls is None:
        return list(registry.values())
    registry = {**registry, **EXTRAS[kind]}
    if isinstance(impls, str):
        impls = [s.strip() for s in impls.split(",") if s.strip()]
    out = []
    for item in impls:
        if isinstance(item, type) and issubclass(item, Impl):
            if getattr(item, "kind", "dense") == kind:
                out.append(item)
        elif item in registry:
            out.append(registry[item])
        elif not any(item in r for r in (*map(_registry, REGISTRIES), *EXTRAS.values())):
            known = dict.fromkeys(n for r in (*map(_registry, REGISTRIES), *EXTRAS.values()) for n in r)
            raise ValueError(f"unknown implementation {item!r}; known: {', '.join(known)}")
    names = [c.name for c in out]
    if len(set(names)) != len(names):
        raise ValueError(f"implementation names must be unique, got {names}")
    return out


# ----------------------------------------------------------------------------------------------- steps
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


def _checked(impls: list, case: Case, X, Y, params, entries: dict, log) -> dict:
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


def _memory_probe(impl: Impl, order) -> dict:
    gc.collect()
    rss0 = machine.rss_bytes()
    rss_delta = None
    if rss0 is not None and machine.reset_peak_rss():
        impl.epoch(order)
        hwm = machine.peak_rss_bytes()
        rss_delta = None if hwm is None else max(0, hwm - rss0)
    gc.collect()
    tracemalloc.start()
    try:
        impl.epoch(order)
        _, traced_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return {"rss_peak_growth_bytes": rss_delta, "tracemalloc_peak_bytes": traced_peak}


class _Log:
    def __init__(self, enabled: bool):
        self.console = None
        if enabled:
            from rich.console import Console

            self.console = Console(stderr=True, log_path=False)

    def __call__(self, msg: str):
        if self.console is not None:
            self.console.log(msg, highlight=False)


def run_case(
    case: Case,
    X,
    Y,
    impl_classes,
    *,
    threads=1,
    repeats=None,
    memory=True,
    cold=False,
    peak=None,
    log=None,
    probes=None,
    bound=True,
) -> dict:
    """Cross-check, time and measure one case; returns its results dict (see ``run_suite``)."""
    log = log or _Log(False)
    n = min(case.samples or len(X), len(X))
    if n < case.batch_size * CHECK_BATCHES:
        raise ValueError(
            f"case {case.name!r}: {n} samples is too few for {CHECK_BATCHES} mini-batches of {case.batch_size}"
        )
    # writeable copies in the case dtype (loaders may give read-only arrays; kernels may dispatch on that)
    Xc = np.array(X[:n], dtype=case.dtype, order="C")
    Yc = np.array(Y[:n], dtype=case.dtype, order="C")
    params = case_params(case, seed=0)
    n_batches = n // case.batch_size
    impl_classes = [c for c in impl_classes if getattr(c, "kind", "dense") == case.kind]
    repeats = case.repeats if repeats is None else check_repeats(repeats)
    result = {
        "case": case.to_dict(),
        "n_samples": n,
        "n_batches": n_batches,
        "samples_per_epoch": n_batches * case.batch_size,
        "dropped_per_epoch": n - n_batches * case.batch_size,
        "flops_per_epoch": case_flops(case, n_batches * case.batch_size),
        "s_per_50k_factor": FULL_EPOCH / (n_batches * case.batch_size),
        "repeats": repeats,
        "threads": threads,
        "impls": {},
    }
    impls: list[Impl] = []
    for cls in impl_classes:
        ok, why = cls.available()
        entry = result["impls"][cls.name] = {"status": "ok", "baseline": cls.baseline}
        if ok:
            impl = cls()
            try:
                impl.setup(case.spec, case.cost, case.dtype, params, Xc, Yc, case.batch_size, case.eta, case.lmbda)
            except ImplUnavailable as exc:
                ok, why = False, str(exc)
            else:
                impls.append(impl)
                entry.update(
                    setup_s=impl.setup_seconds,
                    compile_s=impl.compile_seconds,
                    load_s=impl.load_seconds,
                    info=impl.info,
                )
        if not ok:
            entry.update(status="unavailable", reason=why)
            log(f"[yellow]{case.name}: {cls.name} unavailable: {why}")
    if not impls:
        raise RuntimeError(f"case {case.name!r}: no implementation could run")

    result["cross_check"] = _checked(impls, case, Xc, Yc, params, result["impls"], log)
    worst = max(result["cross_check"]["errors"].items(), key=lambda kv: kv[1]["max_rel"])
    log(
        f"{case.name}: cross-check passed for {len(impls)} implementations "
        f"(worst {worst[0]} {worst[1]['worst']} rel err {worst[1]['max_rel']:.2g})"
    )

    if cold:
        probes = {} if probes is None else probes
        for impl in impls:
            key = type(impl).probe_key(case)
            if key is None:
                continue
            if key not in probes:
                log(f"{case.name}: cold compile / warm load probe for {impl.name} (fresh processes)")
                try:
                    probes[key] = type(impl).cold_probe(case, threads)
                except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
                    probes[key] = {"error": str(exc)[-1000:], "cold_seconds": None, "warm_seconds": None}
                    log(f"[yellow]{case.name}: the cold probe for {impl.name} failed: {str(exc)[-300:]}")
            result["impls"][impl.name].update(
                cold_compile_s=probes[key]["cold_seconds"],
                warm_load_s=probes[key]["warm_seconds"],
                compile_probe=probes[key],
            )

    rng = np.random.default_rng(2024)
    times = {impl.name: [] for impl in impls}
    with machine.limit_threads(threads):
        for impl in impls:
            impl.set_threads(threads)
        order = rng.permutation(n).astype(np.int64)
        for impl in impls:
            t0 = time.perf_counter()
            impl.epoch(order)
            result["impls"][impl.name]["warmup_s"] = time.perf_counter() - t0
        for r in range(repeats):
            order = rng.permutation(n).astype(np.int64)
            gc.collect()
            for j in range(len(impls)):
                impl = impls[(j + r) % len(impls)]
                t0 = time.perf_counter()
                impl.epoch(order)
                times[impl.name].append(time.perf_counter() - t0)
            log(f"{case.name}: repeat {r + 1}/{repeats} " + ", ".join(f"{k} {v[-1]:.3g}s" for k, v in times.items()))
        if memory:
            log(f"{case.name}: memory probe (two more epochs each)")
            for impl in impls:
                result["impls"][impl.name]["memory"] = _memory_probe(impl, order)
        if bound:
            log(f"{case.name}: BLAS bound (the epoch's matrix products alone)")
            if case.net is None:
                result["products_bound"] = products_bound(case.layers, case.batch_size, case.dtype, n_batches, repeats)
            else:
                result["products_bound"] = conv_gemm_bound(case.net, case.batch_size, case.dtype, n_batches, repeats)

    peak_gflops = (peak or {}).get(case.dtype, {}).get("gflops")
    if case.net is not None:
        result["flops_per_sample"] = conv_flops(case.net)
    if "products_bound" in result:
        pb = result["products_bound"]
        pb["gflops"] = result["flops_per_epoch"] / pb["median_s"] / 1e9
        pb["peak_fraction"] = pb["gflops"] / peak_gflops if peak_gflops else None
        pb["s_per_50k"] = pb["median_s"] * result["s_per_50k_factor"]
    for name, ts in times.items():
        med = float(np.median(ts))
        gflops = result["flops_per_epoch"] / med / 1e9
        result["impls"][name].update(
            times=ts,
            median_s=med,
            s_per_50k=med * result["s_per_50k_factor"],
            min_s=min(ts),
            max_s=max(ts),
            gflops=gflops,
            peak_fraction=gflops / peak_gflops if peak_gflops else None,
        )
    ok = {k: v for k, v in result["impls"].items() if v["status"] == "ok"}
    for v in ok.values():
        v["ratios"] = {b: bv["median_s"] / v["median_s"] for b, bv in ok.items() if bv["baseline"]}
    return result


def measure_peaks(dtypes, threads=1, size=2000, repeats=5) -> dict:
    """Matmul peak GFLOP/s per dtype at ``threads`` BLAS threads (and at 1 thread, always recorded)."""
    peaks = {"threads": threads, "single_thread": {}, "at_threads": {}}
    for dt in dtypes:
        peaks["single_thread"][dt] = machine.matmul_peak(dt, size, repeats, threads=1)
        peaks["at_threads"][dt] = (
            peaks["single_thread"][dt] if threads == 1 else machine.matmul_peak(dt, size, repeats, threads=threads)
        )
    return peaks


def run_suite(
    suite_name_or_cases=None,
    out_dir=DEFAULT_OUT,
    data_dir=None,
    impls=None,
    repeats=None,
    quick=False,
    progress=True,
    *,
    data=None,
    threads=1,
    cold=None,
    memory=True,
    peak_size=None,
    suites_file=None,
    write=True,
    samples=None,
) -> dict:
    """Run a suite and write its reports.  Returns the results dict (the content of ``results.json``).

    ``suite_name_or_cases``: a suite name from ``symbp/bench/suites.py`` (None: "quick" when ``quick`` else
    "full"), a ``Suite``, or a list of ``Case``.  ``data``: ``(X, labels)`` or ``(X, one-hot Y)`` to use
    instead of MNIST (then ``data_dir`` is ignored).  ``impls``: names/classes or a comma-separated string
    (None: all registered; the unavailable ones are reported as such; each case runs those of its kind,
    dense or conv).  ``repeats`` and ``samples`` override every case's.
    ``quick``: a 1000x1000 matmul peak and no cold-compile probes unless ``cold=True``.  ``threads``:
    BLAS/numba/torch threads.

    Results: ``suite``, ``settings``, ``environment``, ``peak`` (GFLOP/s per dtype), ``cases`` (each:
    ``case``, ``n_samples``, ``flops_per_epoch``, ``cross_check``, ``impls`` -> per implementation ``status``,
    ``times``, ``median_s``/``min_s``/``max_s``, ``gflops``, ``peak_fraction``, ``ratios``, compile/load
    seconds, ``memory``; ``products_bound``: the epoch's matrix products alone, see ``bound.py``), ``files``
    (paths written).  Raises ``CrossCheckError`` (symbp failing the cross-check) before any timing of a case
    whose check fails; ``DivergedError`` when the reference's parameters overflow at the case's η.  ``threads``,
    ``repeats``, ``out_dir`` (with ``write``) and an explicit ``data_dir`` are checked before anything runs.
    """
    threads = check_threads(threads)
    repeats = check_repeats(repeats)
    if write:
        check_out_dir(out_dir)
    if data is None and data_dir is not None:
        check_data_dir(data_dir)
    suite = _resolve_suite(suite_name_or_cases, suites_file, quick)
    if samples is not None:  # time fewer (or more) samples per epoch than the cases say
        suite = dataclasses.replace(suite, cases=tuple(dataclasses.replace(c, samples=int(samples))
                                                       for c in suite.cases))
    quick = bool(quick or suite.quick)
    cold = (not quick) if cold is None else bool(cold)
    impl_classes = []
    for kind in dict.fromkeys(c.kind for c in suite.cases):
        of_kind = resolve_impls(impls, kind)
        if REFERENCES[kind] not in [c.name for c in of_kind]:
            of_kind.insert(0, REGISTRIES[kind][REFERENCES[kind]])  # ratios and the check need it; it is cheap
        impl_classes += of_kind
    log = _Log(progress)
    n_out = {c.layers[-1] for c in suite.cases}
    n_in = {c.layers[0] for c in suite.cases}
    if len(n_out) != 1 or len(n_in) != 1:
        raise ValueError("all cases of a suite must share the input and output sizes (they share the data)")
    if data is None:
        log(f"loading MNIST from {data_dir or os.environ.get('SYMBP_DATA_DIR') or 'the default location'}")
        data = load_data(data_dir)
    X, Y = _as_xy(data, n_out.pop())
    if X.shape[1] != n_in.pop():
        raise ValueError(f"data has {X.shape[1]} inputs, the suite's networks {suite.cases[0].layers[0]}")

    env = machine.environment()
    size = peak_size or (1000 if quick else 2000)
    log(f"measuring matmul peak ({size}x{size}, BLAS threads {threads})")
    peak = measure_peaks(DTYPES, threads, size, 3 if quick else 5)
    log("peak GFLOP/s: " + ", ".join(f"{k} {v['gflops']:.1f}" for k, v in peak["at_threads"].items()))
    results = {
        "schema": "symbp-bench/1",
        "suite": suite.name,
        "description": suite.description,
        "settings": {
            "threads": threads,
            "quick": quick,
            "cold_compile": cold,
            "memory": memory,
            "repeats_override": repeats,
            "impls": list(dict.fromkeys(c.name for c in impl_classes)),
            "check_batches": CHECK_BATCHES,
            "tolerance": TOLERANCE,
        },
        "environment": env,
        "peak": peak,
        "cases": [],
    }
    probes: dict = {}
    for case in suite.cases:
        log(
            f"[bold]case {case.name}[/bold]: "
            + (f"layers {list(case.layers)}" if case.net is None else f"net {case.net.name}: {case.net.describe()}")
            + f", mini-batch {case.batch_size}, {case.dtype}, {case.cost}"
        )
        results["cases"].append(
            run_case(
                case,
                X,
                Y,
                impl_classes,
                threads=threads,
                repeats=repeats,
                memory=memory,
                cold=cold,
                peak=peak["at_threads"],
                log=log,
                probes=probes,
            )
        )
    results["environment"]["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    if write:
        from symbp.bench import report

        results["files"] = report.write_all(results, out_dir)
        if progress:
            report.print_table(results)
            log("wrote " + ", ".join(results["files"]["all"]))
    return results


# ---------------------------------------------------------------------------------------- command line
def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _at_least_one(text: str) -> int:
    n = _whole(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {n}")
    return n


def _threads(text: str) -> int:
    try:
        return check_threads(_whole(text), "thread count")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _layer_list(text: str) -> tuple[int, ...]:
    """``784,30,10`` -> (784, 30, 10); a bad list is named with the entry that is wrong."""
    sizes = []
    for i, item in enumerate(text.split(","), start=1):
        item = item.strip()
        if not item:
            raise argparse.ArgumentTypeError(f"invalid layer list {text!r}: entry {i} is empty "
                                             "(give sizes such as 784,30,10)")
        try:
            sizes.append(int(item))
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid layer list {text!r}: entry {i}, {item!r}, is not a whole "
                                             "number (give sizes such as 784,30,10)") from None
        if sizes[-1] < 1:
            raise argparse.ArgumentTypeError(f"invalid layer list {text!r}: entry {i} is {sizes[-1]}; layer sizes "
                                             "must be >= 1")
    if len(sizes) < 2:
        raise argparse.ArgumentTypeError(f"invalid layer list {text!r}: give at least 2 sizes, input and output "
                                         "(such as 784,30,10)")
    return tuple(sizes)


def _finite(text: str, *, positive: bool) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(x) or (x <= 0 if positive else x < 0):
        raise argparse.ArgumentTypeError(f"must be a finite number {'> 0' if positive else '>= 0'}, got {text}")
    return x


def build_parser(parser: argparse.ArgumentParser | None = None, prog: str | None = None) -> argparse.ArgumentParser:
    """The ``bench`` command line; pass a (sub)parser to add the arguments to it, or the ``prog`` its usage names
    (``symbp bench`` when run through the ``symbp`` command; default ``python -m symbp.bench``)."""
    p = parser or argparse.ArgumentParser(
        prog=prog or "python -m symbp.bench", description="Benchmark one SGD epoch across implementations."
    )
    p.add_argument("--suite", help="suite name from symbp/bench/suites.py (default: full, or quick with --quick)")
    p.add_argument("--quick", action="store_true", help="the quick suite; small peak matmul; no cold-compile probes")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="output folder (default: %(default)s)")
    p.add_argument("--data-dir", help="folder holding mnist/ (default: $SYMBP_DATA_DIR or symbp's default)")
    p.add_argument("--impl", help=f"comma-separated implementations (default: all): {', '.join(IMPLS)}; "
                   f"only when named: {', '.join(EXTRA_IMPLS)}")
    p.add_argument("--repeats", type=_at_least_one, help="timed epochs per implementation, >= 1 (overrides the "
                   "suite; default: each case's, 5 for a custom case)")
    p.add_argument("--threads", type=_threads, default=1,
                   help="BLAS/numba/torch threads, at most the cores this process may use (default: 1)")
    p.add_argument(
        "--cold",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="measure cold compile / warm load of symbp, JAX and PyTensor in fresh processes (default: on unless "
        "--quick)",
    )
    p.add_argument("--no-memory", action="store_true", help="skip the memory probe epochs")
    p.add_argument("--suites-file", help="a suites.py defining SUITES (default: symbp/bench/suites.py)")
    p.add_argument("--list", action="store_true", help="list suites and implementations, then exit")
    g = p.add_argument_group("custom case (instead of a suite)")
    g.add_argument("--layers", type=_layer_list, help="e.g. 784,30,10 (sigmoid in every layer)")
    g.add_argument("--net", help=f"a conv net instead of --layers: {', '.join(NETS)}")
    g.add_argument("--batch-size", type=_at_least_one, default=10)
    g.add_argument("--dtype", default="float64", choices=DTYPES)
    g.add_argument("--cost", choices=COSTS, help="dense nets: quadratic (default) or cross-entropy")
    g.add_argument("--samples", type=_at_least_one, help="training samples per epoch (default: all 50,000; with a "
                   "suite: overrides its cases', and conv tables give seconds per 50k scaled)")
    g.add_argument("--eta", type=lambda t: _finite(t, positive=True),
                   help="a finite number > 0 (default: 3.0 for dense nets, 0.1 for conv nets)")
    g.add_argument("--lmbda", type=lambda t: _finite(t, positive=False), default=0.0, help="a finite number >= 0")
    return p


def run_from_args(args: argparse.Namespace, prog: str = "python -m symbp.bench") -> int:
    """Run what parsed ``args`` (from ``build_parser``) ask for; returns the exit status.  Errors are one line on
    stderr, ``PROG: error: ...``."""
    if args.list:
        for name, s in load_suites(args.suites_file).items():
            print(f"suite {name}: {len(s.cases)} cases. {s.description}")
        for extra, registries in ((False, {k: _registry(k) for k in REGISTRIES}), (True, EXTRAS)):
            for kind, registry in registries.items():
                for name, cls in registry.items():
                    ok, why = cls.available()
                    tag = ("" if kind == "dense" else f" ({kind} nets)") + (" (only when named)" if extra else "")
                    print(f"impl {name}{tag}: {'available' if ok else 'unavailable: ' + why}")
        return 0
    if args.layers and args.net:
        print(f"{prog}: error: give --layers or --net, not both", file=sys.stderr)
        return 2
    repeats = 5 if args.repeats is None else args.repeats  # a custom case's default
    try:  # what can be checked before anything runs: no data loaded, nothing timed, nothing written
        check_out_dir(args.out, "argument --out")
        if args.data_dir is not None:
            check_data_dir(args.data_dir, "argument --data-dir")
    except ValueError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    if args.layers or args.net:
        try:
            if args.layers:
                layers = args.layers
                cost = args.cost or "quadratic"
                name = f"{'-'.join(map(str, layers))}-m{args.batch_size}-{args.dtype}-{cost}"
                case = Case(name, layers, args.batch_size, args.dtype, cost, args.samples, args.eta, args.lmbda,
                            repeats)
            else:
                if args.cost:
                    raise ValueError(f"conv nets end in softmax: their cost is {CONV_COST}, not {args.cost}")
                name = f"{args.net}-m{args.batch_size}-{args.dtype}"
                case = Case(name, batch_size=args.batch_size, dtype=args.dtype, samples=args.samples, eta=args.eta,
                            lmbda=args.lmbda, repeats=repeats, net=args.net)
        except ValueError as exc:
            print(f"{prog}: error: {exc}", file=sys.stderr)
            return 2
        spec = [case]
    else:
        spec = args.suite
    try:
        run_suite(
            spec,
            args.out,
            data_dir=args.data_dir,
            impls=args.impl,
            repeats=args.repeats,
            quick=args.quick,
            threads=args.threads,
            cold=args.cold,
            memory=not args.no_memory,
            suites_file=args.suites_file,
            samples=None if (args.layers or args.net) else args.samples,
        )
    except CrossCheckError as exc:
        print(f"{prog}: error: cross-check failed: {exc}", file=sys.stderr)
        return 2
    except (ValueError, KeyError, FileNotFoundError, RuntimeError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv=None, prog: str | None = None) -> int:
    """The command line; ``prog`` is the name its usage and errors give (default ``python -m symbp.bench``)."""
    parser = build_parser(prog=prog)
    return run_from_args(parser.parse_args(argv), parser.prog)
