"""Where the dbl_conv epoch's time goes: the generated sgd_epoch kernel timed whole and with one step left out.

Takes: the conv suite's dbl_conv network (float32, mini-batch 10), random inputs and one-hot targets.
Gives: per step of the epoch's mini-batch loop, the epoch's time without it and the difference (an estimate of
the step's own time: leaving a step out changes the values later steps see, not the work they do, except the
window max's branches).  Every variant is compiled from the generated source in this process (not cached).
Run with one BLAS thread on an idle machine:
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 python ablate.py [--samples 5000]
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import symbp as sb

LAYERS = [sb.Input((1, 28, 28)), sb.Conv2D(20, 5, activation=sb.sigmoid), sb.MaxPool(2),
          sb.Conv2D(40, 5, activation=sb.sigmoid), sb.MaxPool(2), sb.Dense(100, sb.sigmoid),
          sb.Dense(10, sb.softmax)]


def blocks(src: str):
    """The epoch's lines and its steps: (label, first line, end line) at the mini-batch loop's indentation."""
    lines = src.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("    for k in range("))
    heads = [i for i in range(start + 1, len(lines)) if re.match(r"^        # ", lines[i])]
    end = max(i for i, ln in enumerate(lines) if ln.startswith("    return"))
    return lines, [(lines[a].strip()[2:70], a, b) for a, b in zip(heads, heads[1:] + [end])]


def load(src: str, name: str):
    path = Path(tempfile.mkdtemp()) / f"{name}.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.sgd_epoch


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--only", default="", help="comma-separated step numbers to time (default: all)")
    args = ap.parse_args()
    net = sb.Network(LAYERS, cost=sb.log_likelihood)
    model = net.compile(dtype="float32", seed=0)
    module = model.source(None)
    epoch = model.source("sgd_epoch")
    header = module[:module.index("@njit")]
    lines, steps = blocks(epoch)
    rng = np.random.default_rng(0)
    X = rng.random((args.samples, 784), dtype=np.float32)
    Y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, args.samples)]
    order = np.arange(args.samples, dtype=np.int64)
    params = [np.ascontiguousarray(p, dtype=np.float32) for pair in model.params for p in pair]
    variants = [("whole epoch", None)] + [(f"{k}: {label}", (a, b)) for k, (label, a, b) in enumerate(steps)]
    only = {int(s) for s in args.only.split(",") if s}
    fns = []
    for k, (label, cut) in enumerate(variants):
        if cut is not None and only and (k - 1) not in only:
            continue
        body = lines if cut is None else lines[:cut[0]] + lines[cut[1]:]
        t0 = time.perf_counter()
        fn = load(header + "\n".join(body) + "\n", f"variant{k}")
        ps = [p.copy() for p in params]
        fn(X, Y, order, 10, 0.01, 1.0, 0, 0, *ps)  # compile
        fns.append((label, fn))
        print(f"compiled {label!r} in {time.perf_counter() - t0:.1f} s", flush=True)
    times = {label: [] for label, _ in fns}
    for _ in range(args.repeats):  # interleaved
        for label, fn in fns:
            ps = [p.copy() for p in params]
            t0 = time.perf_counter()
            fn(X, Y, order, 10, 0.01, 1.0, 0, 0, *ps)
            times[label].append(time.perf_counter() - t0)
    whole = statistics.median(times["whole epoch"])
    print(f"\n{'variant':72s} {'ms/epoch':>9s} {'step ms':>8s}")
    for label, _ in fns:
        t = statistics.median(times[label])
        print(f"{label:72s} {t * 1e3:9.2f} {(whole - t) * 1e3:8.2f}")


if __name__ == "__main__":
    main()
