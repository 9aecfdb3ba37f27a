"""Where symbp's compile time goes, per stage and per kernel, in a fresh process.

    python stages.py ch1|basic_conv [--cache DIR]

Stages: ``import symbp``; ``import numba``; the derivation (``net.equations()``: sympy); the lowering to kernel
programs (``lower``); code generation (the kernels' Python source); then per kernel the numba compile at import
(``load_module``), split by numba's own timers into the time holding the compiler lock (typing, lowering and
the runtime helpers' compiles) and the time inside LLVM (``llvm_lock``).  With an empty ``--cache`` folder
(``SYMBP_CACHE_DIR`` and ``NUMBA_CACHE_DIR`` both point into it) the run is cold; a second run on the same folder
loads the kernels from the caches.  Prints one JSON line."""

import argparse
import json
import os
import sys
import time

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("net", choices=["ch1", "basic_conv"])
ap.add_argument("--cache", required=True)
args = ap.parse_args()
os.environ["SYMBP_CACHE_DIR"] = os.path.join(args.cache, "symbp")
os.environ["NUMBA_CACHE_DIR"] = os.path.join(args.cache, "numba")

out = {"net": args.net}
t0 = time.perf_counter()
import symbp as sb  # noqa: E402

out["import_symbp_s"] = time.perf_counter() - t0
t0 = time.perf_counter()
import numba  # noqa: E402,F401

out["import_numba_s"] = time.perf_counter() - t0

if args.net == "ch1":
    net = sb.Network([784, 30, 10], activation=sb.sigmoid, cost=sb.quadratic)
else:
    net = sb.Network([sb.Input((1, 28, 28)), sb.Conv2D(20, (5, 5), sb.sigmoid), sb.MaxPool((2, 2)),
                      sb.Dense(100, sb.sigmoid), sb.Dense(10, sb.softmax)], cost=sb.log_likelihood)
t0 = time.perf_counter()
net.equations()
out["derive_s"] = time.perf_counter() - t0

from symbp.compile.backends import Kernels  # noqa: E402
from symbp.compile.backends.numba.cache import load_module  # noqa: E402
from symbp.compile.backends.numba.emit import numba_source  # noqa: E402
from symbp.compile.lower import lower  # noqa: E402

t0 = time.perf_counter()
programs = lower(net, training=True)
out["lower_s"] = time.perf_counter() - t0
t0 = time.perf_counter()
sources = {name: numba_source(prog, "float64") for name, prog in programs.items()}
out["codegen_s"] = time.perf_counter() - t0

modules = Kernels("numba", net, "float64", sources)
kernels = {}
for name in ("forward", "cost", "sgd_epoch"):
    module_source = modules.module(name)
    t0 = time.perf_counter()
    module, info = load_module(module_source, [name])
    wall = time.perf_counter() - t0
    timers = {}
    for md in getattr(module, name).get_metadata().values():
        for k, v in ((md or {}).get("timers") or {}).items():  # none when loaded from numba's cache
            timers[k] = timers.get(k, 0.0) + v
    kernels[name] = {"wall_s": wall, "cache_hit": bool(info["hit"] if isinstance(info, dict) else info.hit),
                     "compiler_lock_s": timers.get("compiler_lock"), "llvm_lock_s": timers.get("llvm_lock")}
out["kernels"] = kernels
out["total_s"] = (out["import_symbp_s"] + out["import_numba_s"] + out["derive_s"] + out["lower_s"]
                  + out["codegen_s"] + sum(k["wall_s"] for k in kernels.values()))
print(json.dumps(out))
sys.stdout.flush()
