"""Compile time against JAX, each job a fresh process that imports, declares, compiles and runs 20 SGD steps
(mini-batch 10, float64, one thread), imports included; timed from outside (the process's wall time).

    python ratio.py [--rounds 3] [--nets ch1,basic_conv]

symbp, per net: "cold" (empty symbp and numba caches), "new structure" (caches warmed by a network of another
width: the runtime helpers are cached, this network's kernels are not), "warm" (the same network again).
JAX: the same job with ``jax.jit`` (no persistent compilation cache: JAX traces and compiles in every process).
Rounds are interleaved; prints one JSON line per job and a table of medians and ratios to JAX.  Jobs run with
Python's bytecode cache on (``PYTHONDONTWRITEBYTECODE`` removed from their environment), as installed packages
have it."""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

JOB = r'''
import sys
net, width, tool = sys.argv[1], int(sys.argv[2]), sys.argv[3]
import numpy as np
rng = np.random.default_rng(0)
X = rng.random((200, 784))
Y = np.eye(10)[np.arange(200) % 10]
if tool == "symbp":
    import symbp as sb
    if net == "ch1":
        n = sb.Network([784, width, 10], activation=sb.sigmoid, cost=sb.quadratic)
    else:
        n = sb.Network([sb.Input((1, 28, 28)), sb.Conv2D(width, (5, 5), sb.sigmoid), sb.MaxPool((2, 2)),
                        sb.Dense(100, sb.sigmoid), sb.Dense(10, sb.softmax)], cost=sb.log_likelihood)
    model = n.compile(dtype="float64", seed=0)
    model.run_epoch(X, Y, np.arange(200), 10, 0.1)
else:
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    key = jax.random.PRNGKey(0)
    if net == "ch1":
        ks = jax.random.split(key, 4)
        params = [jax.random.normal(ks[0], (784, width)), jax.random.normal(ks[1], (width,)),
                  jax.random.normal(ks[2], (width, 10)), jax.random.normal(ks[3], (10,))]
        def loss(p, x, y):
            a = jax.nn.sigmoid(x @ p[0] + p[1])
            a = jax.nn.sigmoid(a @ p[2] + p[3])
            return 0.5 * jnp.sum((a - y) ** 2) / x.shape[0]
    else:
        ks = jax.random.split(key, 6)
        params = [jax.random.normal(ks[0], (width, 1, 5, 5)) * 0.2, jnp.zeros(width),
                  jax.random.normal(ks[1], (width * 144, 100)) * 0.01, jnp.zeros(100),
                  jax.random.normal(ks[2], (100, 10)) * 0.1, jnp.zeros(10)]
        def loss(p, x, y):
            x = x.reshape((-1, 1, 28, 28))
            z = jax.lax.conv_general_dilated(x, p[0], (1, 1), "VALID") + p[1][None, :, None, None]
            a = jax.nn.sigmoid(jax.lax.reduce_window(z, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID"))
            a = jax.nn.sigmoid(a.reshape((x.shape[0], -1)) @ p[2] + p[3])
            z = a @ p[4] + p[5]
            return -jnp.sum(y * jax.nn.log_softmax(z)) / x.shape[0]
    @jax.jit
    def step(p, x, y):
        g = jax.grad(loss)(p, x, y)
        return [w - 0.1 * gw for w, gw in zip(p, g)]
    Xj, Yj = jnp.asarray(X), jnp.asarray(Y)
    for k in range(20):
        params = step(params, Xj[10 * k:10 * k + 10], Yj[10 * k:10 * k + 10])
    jax.block_until_ready(params)
'''

WIDTH = {"ch1": (30, 31), "basic_conv": (20, 21)}  # (the measured network, the one that warms the caches)


def run(net, width, tool, env):
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", JOB, net, str(width), tool], env=env, check=True)
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--nets", default="ch1,basic_conv")
    args = ap.parse_args()
    base = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1",
                XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    # Python's bytecode cache on, as on a user's machine (pip writes every module's .pyc at install; JAX's are
    # there): with PYTHONDONTWRITEBYTECODE, set in some environments, each process compiled symbp's modules
    # from source again, 90 ms of every run
    base.pop("PYTHONDONTWRITEBYTECODE", None)
    rows = {}
    for r in range(args.rounds):
        for net in args.nets.split(","):
            width, other = WIDTH[net]
            cache = tempfile.mkdtemp(prefix="symbp-ratio-")
            env = dict(base, SYMBP_CACHE_DIR=cache, NUMBA_CACHE_DIR=os.path.join(cache, "numba"))
            times = {"jax": run(net, width, "jax", base), "cold": run(net, width, "symbp", env)}
            shutil.rmtree(cache)
            cache = tempfile.mkdtemp(prefix="symbp-ratio-")
            env = dict(base, SYMBP_CACHE_DIR=cache, NUMBA_CACHE_DIR=os.path.join(cache, "numba"))
            run(net, other, "symbp", env)  # warms the helpers with another network
            times["new structure"] = run(net, width, "symbp", env)
            times["warm"] = run(net, width, "symbp", env)
            shutil.rmtree(cache)
            for k, v in times.items():
                rows.setdefault((net, k), []).append(v)
            print(json.dumps({"round": r, "net": net, **{k: round(v, 3) for k, v in times.items()}}), flush=True)
    print("\n| net | JAX s | symbp cold s (÷ JAX) | new structure s (÷ JAX) | warm s (÷ JAX) |")
    print("|---|---:|---:|---:|---:|")
    for net in args.nets.split(","):
        jax_s = statistics.median(rows[(net, "jax")])
        cells = [f"{statistics.median(rows[(net, k)]):.2f} ({statistics.median(rows[(net, k)]) / jax_s:.2f}×)"
                 for k in ("cold", "new structure", "warm")]
        print(f"| {net} | {jax_s:.2f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
