"""Compile-time probe for symbp, run by the harness in a fresh Python process.

Takes (command line): ``--backend numba|numpy --declaration JSON --dtype float64 --batch-size 10``, the network
as its declaration (``Network.config()``, rebuilt by ``symbp.train.manifest.network_from_config``; without one,
the ch.1 net); the caller points ``SYMBP_CACHE_DIR`` (and ``NUMBA_CACHE_DIR``) at the
cache folder to use.  Gives: one JSON object on stdout: ``import_s`` (``import symbp``), ``compile_s``
(``net.compile(...)``), ``first_call_s`` and ``second_call_s`` (``run_epoch`` over one mini-batch of random
data: the first call includes any lazy JIT compile or cache load, the second is steady state), ``cache_info``
(``model.cache_info`` if the model has one).

Run it as a script (``python .../probe.py``, not ``-m``) so that ``import symbp`` is timed, and twice on the
same empty folder: the first run is the cold compile, the second the warm-cache load.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="probe.py", description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="numba")
    p.add_argument("--declaration", help="the network as JSON (Network.config()); default: the ch.1 net")
    p.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    p.add_argument("--batch-size", type=int, default=10)
    args = p.parse_args(argv)

    t0 = time.perf_counter()
    import symbp as sb

    import_s = time.perf_counter() - t0
    import numpy as np

    from symbp.train.manifest import network_from_config

    if args.declaration:
        net = network_from_config(args.declaration)
    else:
        net = sb.Network([784, 30, 10], activation=sb.sigmoid, cost=sb.quadratic)
    layers = net.sizes
    t0 = time.perf_counter()
    model = net.compile(backend=args.backend, dtype=args.dtype, seed=0)
    compile_s = time.perf_counter() - t0

    m = args.batch_size
    rng = np.random.default_rng(0)
    X = np.ascontiguousarray(rng.random((m, layers[0])), dtype=args.dtype)
    Y = np.ascontiguousarray(np.eye(layers[-1])[rng.integers(0, layers[-1], m)], dtype=args.dtype)
    order = np.arange(m, dtype=np.int64)
    calls = []
    for _ in range(2):
        t0 = time.perf_counter()
        model.run_epoch(X, Y, order, m, 0.1, lmbda=0.0, n=m)
        calls.append(time.perf_counter() - t0)
    info = getattr(model, "cache_info", None)
    out = {
        "import_s": import_s,
        "compile_s": compile_s,
        "first_call_s": calls[0],
        "second_call_s": calls[1],
        "cache_info": {
            str(k): (v if isinstance(v, (bool, int, float, str)) or v is None else str(v))
            for k, v in dict(info).items()
        }
        if info is not None
        else None,
    }
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
