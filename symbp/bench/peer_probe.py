"""Cold-compile probe for the peers (JAX, PyTensor), run by the harness in a fresh Python process.

Takes (command line): ``--lib jax|pytensor --layers 784,30,10 --cost quadratic|cross-entropy --dtype float64
--batch-size 10`` and, for PyTensor, ``--mode NUMBA|CVM`` and ``--scan`` (the whole epoch as one ``pytensor.scan``,
as ``pytensor-numba`` runs it) or not (one call per mini-batch); the caller points the library's caches at the
folder to use (``PYTENSOR_FLAGS=base_compiledir=...`` and ``NUMBA_CACHE_DIR``; JAX: ``--jax-cache DIR`` turns on
its persistent compilation cache there).  Gives: one JSON object on stdout: ``import_s`` (importing the
library), ``compile_s`` (building the step: for JAX ``jax.jit``, which is lazy; for PyTensor the graph,
``pytensor.grad`` and ``pytensor.function``, i.e. its rewrites and linking), ``first_call_s`` and
``second_call_s`` (one mini-batch update on random data: the first call includes JAX's trace and XLA compile and
the numba backend's JIT or its cache load; the second is steady state), ``versions``; JAX also gives
``epoch_compile_s``, the ahead-of-time compile of ``jax-scan``'s whole-epoch ``lax.scan`` in the same process
after the step (a warm XLA).

The graphs are ``symbp/bench/peer_graphs.py``'s, loaded by path: nothing of symbp (sympy, numba) is imported
before the library under test.  Run it as a script (``python .../peer_probe.py``), twice on the same empty
cache folder: the first run is the cold compile, the second the warm-cache load.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path


def _peer_graphs():
    path = Path(__file__).resolve().with_name("peer_graphs.py")
    spec = importlib.util.spec_from_file_location("_symbp_peer_graphs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _data(layers, m, dtype):
    import numpy as np

    rng = np.random.default_rng(0)
    X = np.ascontiguousarray(rng.random((m, layers[0])), dtype=dtype)
    Y = np.ascontiguousarray(np.eye(layers[-1])[rng.integers(0, layers[-1], m)], dtype=dtype)
    params = [((rng.standard_normal((o, i)) / np.sqrt(i)).astype(dtype), rng.standard_normal(o).astype(dtype))
              for i, o in zip(layers[:-1], layers[1:])]
    return X, Y, params


def probe_jax(args, layers, graphs) -> dict:
    t0 = time.perf_counter()
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    import_s = time.perf_counter() - t0
    if args.jax_cache:
        jax.config.update("jax_compilation_cache_dir", args.jax_cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    import numpy as np

    m = args.batch_size
    X, Y, params = _data(layers, m, args.dtype)
    X, Y = jax.device_put(X), jax.device_put(Y)
    params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in params]
    idx = jnp.asarray(np.arange(m, dtype=np.int64))
    t0 = time.perf_counter()
    step = jax.jit(graphs.jax_step(jax, jnp, args.cost, m, 0.1, 1.0))
    compile_s = time.perf_counter() - t0
    calls = []
    for _ in range(2):
        t0 = time.perf_counter()
        params = step(params, X, Y, idx)
        jax.block_until_ready(params)
        calls.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    epoch = jax.jit(graphs.jax_epoch(jax, jnp, args.cost, m, 0.1, 1.0))
    epoch.lower(params, X, Y, jax.ShapeDtypeStruct((m,), jnp.int64)).compile()
    epoch_compile_s = time.perf_counter() - t0
    return {"import_s": import_s, "compile_s": compile_s, "first_call_s": calls[0], "second_call_s": calls[1],
            "epoch_compile_s": epoch_compile_s, "persistent_cache": bool(args.jax_cache),
            "versions": {"jax": jax.__version__}, "what": "jax.jit of one SGD step, its first call"}


def probe_pytensor(args, layers, graphs) -> dict:
    t0 = time.perf_counter()
    import pytensor
    import pytensor.tensor  # noqa: F401

    import_s = time.perf_counter() - t0
    import numpy as np

    blas = None
    if args.mode in ("CVM", "C"):
        import scipy.linalg  # noqa: F401  (the C modules link to the OpenBLAS SciPy loads)

        if not pytensor.config.blas__ldflags:
            blas = graphs.scipy_openblas_ldflags()
            if blas:
                pytensor.config.blas__ldflags = blas
    m = args.batch_size
    X, Y, params = _data(layers, m, args.dtype)
    t0 = time.perf_counter()
    fn, _ = graphs.pytensor_sgd(pytensor, params, X, Y, cost=args.cost, dtype=args.dtype, m=m, eta=0.1, lmbda=0.0,
                                n=m, mode=args.mode, scan=args.scan)
    compile_s = time.perf_counter() - t0
    order = np.arange(m, dtype=np.int64)
    calls = []
    for _ in range(2):
        t0 = time.perf_counter()
        fn(order)
        calls.append(time.perf_counter() - t0)
    return {"import_s": import_s, "compile_s": compile_s, "first_call_s": calls[0], "second_call_s": calls[1],
            "mode": args.mode, "scan": args.scan, "blas_ldflags_set": bool(blas),
            "base_compiledir": str(pytensor.config.base_compiledir),
            "versions": {"pytensor": pytensor.__version__},
            "what": f"pytensor.function (mode {args.mode}, "
                    + ("the epoch as one scan" if args.scan else "one call per mini-batch") + "), its first call"}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="peer_probe.py", description=__doc__.splitlines()[0])
    p.add_argument("--lib", required=True, choices=("jax", "pytensor"))
    p.add_argument("--layers", default="784,30,10")
    p.add_argument("--cost", default="quadratic", choices=("quadratic", "cross-entropy"))
    p.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    p.add_argument("--batch-size", type=int, default=10)
    p.add_argument("--mode", default="NUMBA", help="PyTensor mode (NUMBA, CVM)")
    p.add_argument("--scan", action="store_true", help="PyTensor: the whole epoch as one pytensor.scan")
    p.add_argument("--jax-cache", help="JAX: a persistent compilation cache folder (default: none, JAX's default)")
    args = p.parse_args(argv)
    layers = [int(s) for s in args.layers.split(",")]
    graphs = _peer_graphs()
    out = (probe_jax if args.lib == "jax" else probe_pytensor)(args, layers, graphs)
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
