"""The benchmark harness: the same SGD epoch through every implementation, checked first, then timed.

Takes: a suite (a name from ``symbp/bench/suites.py``, a ``Suite``, or a list of ``Case``), MNIST
(``--data-dir``; or arrays passed directly), the implementations to run (names from
``symbp.bench.impls.IMPLS`` or ``Impl`` subclasses), repeats, a thread count.  Gives: a results dict (see
``run_suite``) and, in ``out_dir``, ``results.json``, ``results.md`` and PNG plots (see
``symbp.bench.report``); ``main(argv)`` is the command line (``python -m symbp.bench --quick --out DIR``).
Cases, suites and the checks of the arguments are ``symbp.bench.cases``, the cross-check ``symbp.bench.crosscheck``,
the command line's parser ``symbp.bench.command``; their names are reachable here too.

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
import os
import subprocess
import sys
import time
import tracemalloc

import numpy as np

from symbp.bench import machine
from symbp.bench.bound import conv_gemm_bound, products_bound
from symbp.bench.cases import (  # noqa: F401  (re-exported: the harness's names)
    DEFAULT_OUT,
    EXTRAS,
    FULL_EPOCH,
    REFERENCES,
    REGISTRIES,
    SUITES_FILE,
    Case,
    Suite,
    as_xy,
    case_flops,
    case_params,
    check_data_dir,
    check_out_dir,
    check_repeats,
    check_threads,
    epoch_flops,
    impl_registry,
    load_suites,
    one_hot,
    resolve_impls,
    resolve_suite,
)
from symbp.bench.command import build_parser
from symbp.bench.conv import COST as CONV_COST
from symbp.bench.conv import conv_flops
from symbp.bench.crosscheck import (  # noqa: F401  (re-exported: the harness's names)
    CHECK_BATCHES,
    TOLERANCE,
    CrossCheckError,
    DivergedError,
    checked_cross_check,
    cross_check,
)
from symbp.bench.fresh import compile_probe, peer_probe  # noqa: F401  (re-exported)
from symbp.bench.impls import DTYPES, Impl, ImplUnavailable

_checked = checked_cross_check  # the name it had here


# ---------------------------------------------------------------------------------------- data
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


# ----------------------------------------------------------------------------------------------- steps
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

    result["cross_check"] = checked_cross_check(impls, case, Xc, Yc, params, result["impls"], log)
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
    if peak_gflops:  # the second bound: the epoch's FLOPs at the matmul peak measured in this run
        result["peak_bound_s"] = result["flops_per_epoch"] / (peak_gflops * 1e9)
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
    suite = resolve_suite(suite_name_or_cases, suites_file, quick)
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
    X, Y = as_xy(data, n_out.pop())
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
def run_from_args(args: argparse.Namespace, prog: str = "python -m symbp.bench") -> int:
    """Run what parsed ``args`` (from ``build_parser``) ask for; returns the exit status.  Errors are one line on
    stderr, ``PROG: error: ...``."""
    if args.list:
        for name, s in load_suites(args.suites_file).items():
            print(f"suite {name}: {len(s.cases)} cases. {s.description}")
        for extra, registries in ((False, {k: impl_registry(k) for k in REGISTRIES}), (True, EXTRAS)):
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
