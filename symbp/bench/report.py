"""Reports of a benchmark run: a rich table in the terminal, JSON, Markdown and PNG plots.

Takes: the results dict of ``symbp.bench.harness.run_suite`` (and an output folder).  Gives: ``print_table``
(rich), ``write_json`` (everything, raw repeat times and environment included), ``write_markdown`` (a table
per case, then the cold-compile probes of symbp, JAX and PyTensor side by side: ``probe_rows``),
``write_plots`` (matplotlib, Agg: ``speedup.png``, each case's speed-up of every implementation over
matrix-batched NumPy with the case's BLAS bound as a line; and scaling with hidden size and with mini-batch
size when the suite has cases differing only in those),
``write_all`` (all of them).

Ratios are speed-ups: ``median(baseline) / median(impl)``, so 2.0 means twice as fast as that baseline.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

PER_SAMPLE, BATCHED = "numpy-per-sample", "numpy-batched"
IM2COL, TORCH = "numpy-im2col", "torch-eager"
#: the speed-up columns of a case's table, by kind of case: (baseline, header)
RATIO_COLUMNS = {
    "dense": ((BATCHED, "× numpy-batched"), (PER_SAMPLE, "× per-sample")),
    "conv": ((TORCH, "× torch-eager"), (IM2COL, "× numpy-im2col")),
}


def _kind(case: dict) -> str:
    return "dense" if case["case"].get("net") is None else "conv"


def _ok(case: dict) -> dict:
    return {k: v for k, v in case["impls"].items() if v["status"] == "ok"}


def _case_title(case: dict) -> str:
    c = case["case"]
    if c.get("net") is not None:
        scaled = "" if case["samples_per_epoch"] == 50_000 else " (s per 50k = median × %.4g)" % case.get(
            "s_per_50k_factor", 50_000 / case["samples_per_epoch"])
        return (
            f"{c['name']}: {c['net']['name']} = {c['net']['description']}, mini-batch {c['batch_size']}, "
            f"{c['dtype']}, {case['samples_per_epoch']:,} images/epoch{scaled}, "
            f"{case['flops_per_epoch'] / 1e9:.4g} GFLOP/epoch"
        )
    return (
        f"{c['name']}: layers {c['layers']}, mini-batch {c['batch_size']}, {c['dtype']}, {c['cost']}, "
        f"{case['samples_per_epoch']:,} samples/epoch, {case['flops_per_epoch'] / 1e9:.4g} GFLOP/epoch"
    )


def _f(x, spec=".3g", none="–"):
    return none if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def _mib(x):
    return "–" if x is None else f"{x / 2**20:.1f}"


def _row(name: str, v: dict, kind: str = "dense") -> list[str]:
    """One implementation's cells, shared by the terminal table and Markdown (conv cases: s per 50k after
    max)."""
    n = len(HEADERS) + (kind == "conv")
    if v["status"] != "ok":
        return [name, "unavailable"] + [""] * (n - 2)
    mem = v.get("memory") or {}
    ratios = v.get("ratios", {})
    scaled = [_f(v.get("s_per_50k"), ".4g")] if kind == "conv" else []
    return [
        name,
        _f(v["median_s"], ".4f"),
        _f(v["min_s"], ".4f"),
        _f(v["max_s"], ".4f"),
        *scaled,
        _f(v["gflops"], ".2f"),
        _f(None if v.get("peak_fraction") is None else 100 * v["peak_fraction"], ".1f"),
        *(_f(ratios.get(b), ".2f") for b, _ in RATIO_COLUMNS[kind]),
        _f(v.get("compile_s"), ".3f") if v.get("load_s") is None else _f(v["load_s"], ".3f") + " (cached)",
        _f(v.get("cold_compile_s"), ".3f") + " / " + _f(v.get("warm_load_s"), ".3f"),
        _mib(mem.get("rss_peak_growth_bytes")),
        _mib(mem.get("tracemalloc_peak_bytes")),
    ]


HEADERS = [
    "impl",
    "median s/epoch",
    "min",
    "max",
    "GFLOP/s",
    "% peak",
    "× numpy-batched",
    "× per-sample",
    "setup compile s",
    "cold / warm s",
    "RSS growth MiB",
    "tracemalloc MiB",
]


def headers(kind: str = "dense") -> list[str]:
    """Markdown column headers of a case's table."""
    if kind == "dense":
        return list(HEADERS)
    h = [c for c in HEADERS if not c.startswith("×")]
    h[4:4] = ["s per 50k images"]
    h[7:7] = [t for _, t in RATIO_COLUMNS[kind]]
    return h


TERMINAL_HEADERS = [
    "impl",
    "median s",
    "min–max s",
    "GFLOP/s",
    "% peak",
    "× batched",
    "× per-sample",
    "compile s: setup; cold / warm",
    "MiB: RSS; traced",
]


def terminal_headers(kind: str = "dense") -> list[str]:
    if kind == "dense":
        return list(TERMINAL_HEADERS)
    h = list(TERMINAL_HEADERS)
    h[3:3] = ["s/50k"]
    h[6:8] = [t.replace("numpy-", "") for _, t in RATIO_COLUMNS[kind]]
    return h


def _terminal_row(name: str, v: dict, kind: str = "dense") -> list[str]:
    c = _row(name, v, kind)
    if v["status"] != "ok":
        return c[:2] + [""] * (len(terminal_headers(kind)) - 2)
    if kind == "conv":
        return [*c[:2], f"{c[2]}–{c[3]}", *c[4:9], f"{c[9]}; {c[10]}", f"{c[11]}; {c[12]}"]
    return [*c[:2], f"{c[2]}–{c[3]}", *c[4:8], f"{c[8]}; {c[9]}", f"{c[10]}; {c[11]}"]


def print_table(results: dict, console=None) -> None:
    """One rich table per case (to stdout unless ``console`` is given), then the matmul peak."""
    from rich.console import Console
    from rich.table import Table

    if console is None:
        console = Console()
        if not console.is_terminal:
            console.width = max(console.width, 150)
    for case in results["cases"]:
        kind = _kind(case)
        table = Table(title=_case_title(case), title_justify="left")
        for i, h in enumerate(terminal_headers(kind)):
            table.add_column(h, justify="left" if i == 0 else "right")
        for name, v in case["impls"].items():
            table.add_row(*_terminal_row(name, v, kind))
        console.print(table)
        for line in _unavailable_notes(case):
            console.print(line, highlight=False)
        if case.get("products_bound"):
            console.print(_bound_note(case), highlight=False)
    rows = probe_rows(results)
    if rows:
        table = Table(title="cold compile / warm-cache load, fresh processes (compile + first call - a steady call)",
                      title_justify="left")
        for i, h in enumerate(PROBE_HEADERS):
            table.add_column(h, justify="left" if i < 3 else "right")
        for row in rows:
            table.add_row(*row)
        console.print(table)
    peak = results["peak"]["at_threads"]
    console.print(
        f"matmul peak (BLAS threads {results['peak']['threads']}): "
        + ", ".join(f"{k} {v['gflops']:.1f} GFLOP/s" for k, v in peak.items())
    )


def _pct(x) -> str:
    return "" if x is None else f" = {100 * x:.1f}% of peak"


def _peak_note(case: dict) -> str:
    """The second bound: the epoch's FLOPs at the matmul peak measured in the same run."""
    s = case.get("peak_bound_s")
    if s is None:
        return ""
    per50k = f" ({s * case.get('s_per_50k_factor', 1.0):.4g} s per 50k)" if _kind(case) == "conv" else ""
    return (f" Peak bound: the epoch's {case['flops_per_epoch'] / 1e9:.4g} GFLOP at the measured matmul peak take "
            f"{s:.4g} s/epoch{per50k}.")


def _bound_note(case: dict) -> str:
    pb = case["products_bound"]
    frac = _pct(pb.get("peak_fraction"))
    if _kind(case) == "conv":
        scale = case.get("s_per_50k_factor", 1.0)
        return (f"GEMM bound: the epoch's gemm calls alone (per conv layer and sample, or group of samples as symbp "
                f"makes them, W·col, Wᵀ·δ except the first layer, col·δᵀ; the fc products per mini-batch; same "
                f"shapes, same entry points, nothing else) take "
                f"{pb['median_s']:.4g} s/epoch ({pb['median_s'] * scale:.4g} s per 50k), {pb['gflops']:.1f} GFLOP/s"
                f"{frac}." + _peak_note(case))
    return (f"BLAS bound: the epoch's matrix products alone (the same gemm calls, contiguous in-cache operands, "
            f"nothing else) take {pb['median_s']:.4g} s/epoch, {pb['gflops']:.1f} GFLOP/s{frac}: no epoch "
            "built on this BLAS can do better." + _peak_note(case))


PROBE_HEADERS = ["case", "impl", "what is compiled", "import s", "cold s", "warm s", "cold × JAX", "warm × JAX"]


def probe_rows(results: dict) -> list[list[str]]:
    """One row per cold-compile probe (fresh processes; implementations sharing a probe share a row): the case,
    the implementations, what the probe compiles, the library's import, cold and warm-cache seconds (compile +
    first call - a steady call), and both as multiples of JAX's cold first jitted step in the same case."""
    rows = []
    for case in results["cases"]:
        groups: dict = {}
        for name, v in case["impls"].items():
            pr = v.get("compile_probe")
            if pr is not None:
                groups.setdefault(id(pr), (pr, []))[1].append(name)
        if not groups:
            continue
        jax = next((pr for pr, names in groups.values() if any(n.startswith("jax") for n in names)), None)
        jax_cold = (jax or {}).get("cold_seconds")
        for pr, names in groups.values():
            cold, warm = pr.get("cold_seconds"), pr.get("warm_seconds")
            what = pr.get("what") or ("probe failed: " + pr.get("error", "")[-120:] if "error" in pr else "")
            rows.append([
                case["case"]["name"],
                ", ".join(names),
                what,
                _f((pr.get("cold") or {}).get("import_s"), ".2f"),
                _f(cold, ".2f"),
                _f(warm, ".2f"),
                _f(cold / jax_cold if cold and jax_cold else None, ".1f"),
                _f(warm / jax_cold if warm and jax_cold else None, ".1f"),
            ])
    return rows


def _unavailable_notes(case: dict) -> list[str]:
    return [f"- {k} unavailable: {v.get('reason', '')}" for k, v in case["impls"].items() if v["status"] != "ok"]


def _clean(obj):
    """JSON-safe copy: numpy scalars to Python, non-finite floats to None."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(results: dict, path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(_clean(results), indent=1) + "\n")
    return path


def write_markdown(results: dict, path) -> Path:
    env = results["environment"]
    v = env["versions"]
    cpu = env["cpu"]
    lines = [f"# symbp benchmark: suite `{results['suite']}`", ""]
    if results.get("description"):
        lines += [results["description"], ""]
    blas = ", ".join(f"{b['internal_api']} {b['version']} ({b.get('architecture')})" for b in env["blas"])
    lines += [
        f"- date: {env['date']}; commit: {env.get('git_commit') or 'none'}",
        f"- CPU: {cpu['model']} (vendor {cpu['vendor']}, family {cpu['family']} model {cpu['model_number']}, "
        f"AVX-512 {cpu['avx512f']}); {env['cpu_affinity']} usable cores of {env['cpu_count']}; load average "
        f"{_f(env['loadavg'][0], '.2f') if env.get('loadavg') else '–'} at start",
        "- versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val),
        f"- BLAS: {blas}",
        f"- threads: {results['settings']['threads']}; quick: {results['settings']['quick']}",
        "- matmul peak (square, best of several, GFLOP/s): "
        + "; ".join(
            f"{dt} {p['gflops']:.1f} at {p['threads']} thread(s), size {p['size']}"
            for key in ("single_thread", "at_threads")
            for dt, p in results["peak"][key].items()
            if key == "single_thread" or results["peak"]["threads"] != 1
        ),
        "",
        "Times are seconds per epoch after one warm-up epoch, repeats interleaved across implementations. "
        "GFLOP/s counts matmul FLOPs only (forward, weight gradients, input gradients of layers ≥ 2). "
        "× columns are speed-ups (baseline median / this median). setup compile: in-process compile "
        "during setup, '(cached)' when symbp loaded its kernels from disk; cold / warm: fresh-process "
        "compile (compile + first call - a steady call; import timed apart) with an empty "
        "cache, then a second fresh process on the filled cache. RSS growth: peak resident memory during "
        "one epoch above the level before it; tracemalloc: peak bytes allocated during one epoch through "
        "Python's allocators (NumPy buffers included).",
        "",
    ]
    if any(_kind(c) == "conv" for c in results["cases"]):
        lines += [
            "Conv cases: FLOPs are 2 per multiply-add of the products — per conv layer forward (W·patches), "
            "∂C/∂W and the input's δ (not for the first layer), each F·C·kh·kw·Ho·Wo multiply-adds per image; fc "
            "layers likewise — pooling, activations, biases, softmax and im2col/col2im not counted. % peak is "
            "of the float32 (or float64) matmul peak above, measured with NumPy's BLAS; s per 50k images scales "
            "the median to MNIST's 50,000 training images when fewer were timed.",
            "",
        ]
    for case in results["cases"]:
        cc = case["cross_check"]
        lines += [
            f"## {_case_title(case)}",
            "",
            f"{case['repeats']} repeats; cross-check: {cc['batches']} updates against {cc['reference']}, "
            f"tolerance {cc['tolerance']:g}, worst relative errors: "
            + ", ".join(f"{k} {e['max_rel']:.2g} ({e['worst']})" for k, e in cc["errors"].items()),
            "",
            "| " + " | ".join(headers(_kind(case))) + " |",
            "|" + "---|" + "---:|" * (len(headers(_kind(case))) - 1),
        ]
        for name, v in case["impls"].items():
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in _row(name, v, _kind(case))) + " |")
        notes = _unavailable_notes(case)
        if case.get("products_bound"):
            notes.append("- " + _bound_note(case))
        lines += ["", *notes, ""] if notes else [""]
    rows = probe_rows(results)
    if rows:
        lines += [
            "## Cold compile and warm-cache load (fresh processes, same run)",
            "",
            "Each probe is a fresh Python process on an empty cache folder (cold), then a second one on the folder "
            "the first filled (warm): symbp's `compile()` and first `run_epoch` call (SYMBP_CACHE_DIR and numba's "
            "cache), JAX's `jax.jit` of one SGD step and its first call (the warm run on JAX's persistent "
            "compilation cache, which is opt-in in JAX), PyTensor's `pytensor.function` and its first call "
            "(base_compiledir and numba's cache). Seconds: compile + first call - a steady call; the library's "
            "import is timed apart (first run's import shown).",
            "",
            "| " + " | ".join(PROBE_HEADERS) + " |",
            "|---|---|---|" + "---:|" * (len(PROBE_HEADERS) - 3),
            *("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows),
            "",
        ]
    path = Path(path)
    path.write_text("\n".join(lines))
    return path


def _scaling_groups(results: dict, attr: str):
    """Groups of cases equal in everything but ``attr`` ("hidden" for [n_in, h, n_out] or "batch_size")."""
    groups: dict = {}
    for case in results["cases"]:
        c = case["case"]
        if attr == "hidden":
            if len(c["layers"]) != 3:
                continue
            x = c["layers"][1]
            key = (c["layers"][0], c["layers"][2], c["batch_size"], c["dtype"], c["cost"], case["n_samples"])
        else:
            x = c[attr]
            key = (tuple(c["layers"]), c["dtype"], c["cost"], case["n_samples"])
        groups.setdefault(key, {})[x] = case
    return [(k, dict(sorted(g.items()))) for k, g in groups.items() if len(g) >= 2]


def _baseline(case: dict) -> str | None:
    """The matrix-batched NumPy implementation of a case (im2col for conv nets), if it ran."""
    for name in (BATCHED, IM2COL):
        if case["impls"].get(name, {}).get("status") == "ok":
            return name
    return None


def _speedup_plot(results: dict, path: Path, plt) -> Path:
    """Each case's speed-up over matrix-batched NumPy (median/median, whiskers from min and max), one bar per
    implementation, and the BLAS bound of the case (its matrix products alone) as a dashed line: how fast an
    epoch could be on this BLAS.  A linear axis: 2 means twice as fast as NumPy."""
    cases = [c for c in results["cases"] if _baseline(c)]
    names = list(dict.fromkeys(n for c in cases for n, v in c["impls"].items()
                               if v["status"] == "ok" and n != _baseline(c)))
    fig, ax = plt.subplots(figsize=(min(16.0, max(6.0, 1.5 + 0.35 * len(cases) * max(1, len(names)))), 5.2))
    width = 0.8 / max(1, len(names))
    for j, name in enumerate(names):
        xs, ups, lo, hi = [], [], [], []
        for i, c in enumerate(cases):
            v, ref = c["impls"].get(name), c["impls"][_baseline(c)]
            if v and v["status"] == "ok":
                up = ref["median_s"] / v["median_s"]
                xs.append(i + (j - (len(names) - 1) / 2) * width)
                ups.append(up)
                lo.append(up - ref["median_s"] / v["max_s"])
                hi.append(ref["median_s"] / v["min_s"] - up)
        bars = ax.bar(xs, ups, width, yerr=[lo, hi], capsize=2, label=name)
        ax.bar_label(bars, labels=[f"{u:.2g}" for u in ups], fontsize=6, padding=1, rotation=90)
    labelled = False
    for i, c in enumerate(cases):
        pb = c.get("products_bound")
        if pb and pb.get("median_s"):
            up = c["impls"][_baseline(c)]["median_s"] / pb["median_s"]
            ax.hlines(up, i - 0.45, i + 0.45, colors="black", linestyles="dashed", linewidth=1.2,
                      label=None if labelled else "BLAS bound (the epoch's matrix products alone)")
            ax.annotate(f"bound {up:.2g}×", (i + 0.45, up), fontsize=7, ha="right", va="bottom")
            labelled = True
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_xticks(range(len(cases)))
    ax.set_xticklabels([c["case"]["name"] for c in cases], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("speed-up over matrix-batched NumPy (× faster)")
    ax.set_title(f"SGD epoch, suite {results['suite']}: speed-up over NumPy (higher is faster)")
    ax.legend(fontsize=7, ncols=2)
    ax.set_ylim(0, ax.get_ylim()[1] * 1.12)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_plots(results: dict, out_dir) -> list[Path]:
    """PNG plots; returns the paths written."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    paths = [_speedup_plot(results, out_dir / "speedup.png", plt)]
    cases = results["cases"]
    names = list(dict.fromkeys(n for c in cases for n, v in c["impls"].items() if v["status"] == "ok"))

    for attr, fname, xlabel in (
        ("hidden", "scaling_hidden.png", "hidden layer size"),
        ("batch_size", "scaling_batch.png", "mini-batch size"),
    ):
        groups = _scaling_groups(results, attr)
        if not groups:
            continue
        fig, ax = plt.subplots(figsize=(6.4, 4.8))
        for key, g in groups:
            tag = f" ({key[-3]}, {key[-2]})" if len(groups) > 1 else ""
            for name in names:
                pts = [
                    (x, c["impls"][name]["median_s"])
                    for x, c in g.items()
                    if name in c["impls"] and c["impls"][name]["status"] == "ok"
                ]
                if len(pts) >= 2:
                    ax.plot(*zip(*pts, strict=True), marker="o", label=name + tag)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("seconds per epoch (median)")
        ax.set_title(f"scaling with {xlabel}")
        ax.legend(fontsize=8)
        fig.tight_layout()
        paths.append(out_dir / fname)
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def write_all(results: dict, out_dir) -> dict:
    """JSON, Markdown and PNGs into ``out_dir`` (created); returns paths {json, markdown, plots, all}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md = write_markdown(results, out_dir / "results.md")
    plots = write_plots(results, out_dir)
    files = {"json": str(out_dir / "results.json"), "markdown": str(md), "plots": [str(p) for p in plots]}
    files["all"] = [files["json"], files["markdown"], *files["plots"]]
    results["files"] = files
    write_json(results, out_dir / "results.json")
    return files
