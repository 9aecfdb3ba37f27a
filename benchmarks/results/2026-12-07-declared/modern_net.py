"""The modern small net declared by its index expressions, trained by symbp (numba, float32) and by PyTorch
eager from the same start: seconds per epoch of N MNIST images at mini-batch 10, one thread, interleaved.

    python benchmarks/results/2026-12-07-declared/modern_net.py [--n 2000] [--rounds 3]

conv 16@3x3 padding 1, conv 32@3x3 stride 2 padding 1, conv 32@3x3 stride 2 padding 1, global average pool,
softmax 10.  Prints the plan (which path each step took) and one JSON line of results."""

import argparse
import json
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import symbp as sb  # noqa: E402


def declared_net():
    def conv(name, cin, maps, stride, size):
        idx = f"{stride}*i+p-1" if stride > 1 else "i+p-1", f"{stride}*j+q-1" if stride > 1 else "j+q-1"
        return sb.Layer.parse(name, f"z[f,i,j] = sum(W[f,c,p,q]*x[c,{idx[0]},{idx[1]}] for c in range({cin}) "
                              f"for p in range(3) for q in range(3)) + b[f]", out=(maps, size, size),
                              params={"W": (maps, cin, 3, 3), "b": (maps,)}, activation=sb.relu)

    gap = sb.Layer.parse("gap", "z[c] = sum(x[c,i,j] for i in range(7) for j in range(7))/49")
    return sb.Network([sb.Input((1, 28, 28)), conv("conv16", 1, 16, 1, 28), conv("conv32s2", 16, 32, 2, 14),
                       conv("conv32s2b", 32, 32, 2, 7), gap, sb.Dense(10, sb.softmax)], cost=sb.log_likelihood)


def torch_step_fn(params, eta):
    import torch
    import torch.nn.functional as F

    ps = [torch.tensor(p, requires_grad=True) for pair in params for p in pair]

    def step(x, y):
        a = F.relu(F.conv2d(x, ps[0], ps[1], padding=1))
        a = F.relu(F.conv2d(a, ps[2], ps[3], stride=2, padding=1))
        a = F.relu(F.conv2d(a, ps[4], ps[5], stride=2, padding=1))
        a = a.mean(dim=(2, 3))
        loss = F.cross_entropy(a @ ps[6].T + ps[7], y)
        for p in ps:
            p.grad = None
        loss.backward()
        with torch.no_grad():
            for p in ps:
                p -= eta * p.grad
    return step, ps


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--data-dir", default=os.environ.get("SYMBP_DATA_DIR"))
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    data = sb.data.load_mnist(args.data_dir)
    X = data.train[0][:args.n].astype(np.float32)
    y = data.train[1][:args.n]
    labels = y.argmax(axis=1) if y.ndim == 2 else y
    Y = np.eye(10, dtype=np.float32)[labels]
    net = declared_net()
    model = net.compile(backend="numba", dtype="float32", seed=0)
    print(model.plan())
    t0 = time.perf_counter()
    model.fit((X[:100], Y[:100]), epochs=1, batch_size=10, eta=0.05, seed=0, progress=False)  # compiles
    compile_s = time.perf_counter() - t0
    start = model.params
    step, _ = torch_step_fn(start, 0.05)
    xt, yt = torch.tensor(X.reshape(-1, 1, 28, 28)), torch.tensor(labels, dtype=torch.long)
    for k in range(0, 100, 10):
        step(xt[k:k + 10], yt[k:k + 10])  # warm-up
    times = {"symbp": [], "torch": []}
    for _ in range(args.rounds):
        model.set_params(start)
        t0 = time.perf_counter()
        model.fit((X, Y), epochs=1, batch_size=10, eta=0.05, seed=0, progress=False)
        times["symbp"].append(time.perf_counter() - t0)
        step, _ = torch_step_fn(start, 0.05)
        order = np.random.default_rng(0).permutation(args.n)
        t0 = time.perf_counter()
        for k in range(0, args.n, 10):
            rows = torch.tensor(order[k:k + 10])
            step(xt[rows], yt[rows])
        times["torch"].append(time.perf_counter() - t0)
    from symbp.bench.machine import environment, limit_threads, matmul_peak

    with limit_threads(1):
        peak = matmul_peak("float32")["gflops"]
    flops = sum(r.flops for r in model.plan().rows if r.kernel == "sgd_epoch") * args.n
    result = {"machine": environment(), "float32_matmul_peak_gflops": round(peak, 1),
              "symbp_gflops": round(flops / min(times["symbp"]) / 1e9, 1), "n": args.n,
              "mini_batch": 10, "dtype": "float32", "threads": 1, "symbp_compile_s": round(compile_s, 2),
              "symbp_epoch_s": min(times["symbp"]), "torch_eager_epoch_s": min(times["torch"]),
              "torch_over_symbp": round(min(times["torch"]) / min(times["symbp"]), 2), "all": times,
              "torch": torch.__version__}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
