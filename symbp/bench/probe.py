"""Compile-time probe for symbp, run by the harness in a fresh Python process.

Takes (command line): ``--backend numba|numpy --layers 784,30,10 --cost quadratic|cross-entropy
--dtype float64 --batch-size 10`` (or ``--net JSON``, a ``symbp.bench.conv.ConvNet.to_dict()``, for a conv
net); the caller points ``SYMBP_CACHE_DIR`` (and ``NUMBA_CACHE_DIR``) at the
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
    p.add_argument("--layers", default="784,30,10")
    p.add_argument("--cost", default="quadratic", choices=("quadratic", "cross-entropy"))
    p.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    p.add_argument("--batch-size", type=int, default=10)
    p.add_argument("--net", help="a conv net as JSON (ConvNet.to_dict()); then --layers and --cost are ignored")
    args = p.parse_args(argv)
    layers = [int(s) for s in args.layers.split(",")]
    net_spec = json.loads(args.net) if args.net else None

    t0 = time.perf_counter()
    import symbp as sb

    import_s = time.perf_counter() - t0
    import numpy as np

    if net_spec is None:
        cost = {"quadratic": sb.quadratic, "cross-entropy": sb.cross_entropy}[args.cost]
        net = sb.Network(layers, activation=sb.sigmoid, cost=cost)
    else:
        from symbp.bench.conv import ConvNet, symbp_layers

        spec = ConvNet(net_spec["name"], tuple(net_spec["input"]), tuple(tuple(l) for l in net_spec["layers"]),
                       net_spec["activation"])
        net = sb.Network(symbp_layers(spec, sb), cost=sb.log_likelihood)
        layers = list(spec.sizes)
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
