"""Where symbp's dbl_conv epoch goes: time symbp's generated sgd_epoch kernel with groups of its steps deleted.

Usage: python breakdown.py [SAMPLES] [BATCH ...]   (default 5000 images, mini-batch 10 and 100; one thread)
Compiles the net with symbp (numba, float32), reads the generated kernel module from symbp's cache, splits the
mini-batch loop of ``sgd_epoch`` into its commented steps, and times variants that delete one group of steps each
(interleaved, median of 5): the time a group's deletion saves is its cost.  Deleting steps changes the values the
later steps see (not their shapes), so the figures are costs of the work, not of a correct epoch.  Prints JSON.
"""
import importlib.util
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import threadpoolctl

import symbp as sb
from symbp.bench.conv import NETS, init_conv_params, symbp_layers

GROUPS = {
    "gather rows": r"^mini-batch:",
    "conv forward (im2col + gemm + bias)": r"^z\d+\[f,i,j\] = Σ",
    "sigmoid maps (forward)": r"^a\d+ = σ\(z\d+\)",
    "max-pool forward": r"^a\d+ = max over",
    "max-pool backward (zero + scatter)": r"^∂C/∂a\d+ = δ\d+ at each window",
    "σ′ maps of conv layers (backward)": r"^δ\d+ = g ⊙ σ′",
    "conv input δ (gemm + col2im)": r"^∂C/∂a\d+\[c,y,x\]",
    "conv weight update (gemm)": r"^BP4: W\d+\[f,c,p,q\]",
    "conv bias sums": r"^BP3: b\d+\[f\]",
}


def steps(body):
    """Split the loop body (lines at indent >= 8) into [comment, lines] steps."""
    out = [["", []]]
    for line in body:
        if line.startswith("        # ") and not line.startswith("         "):
            out.append([line.strip()[2:], [line]])
        else:
            out[-1][1].append(line)
    return out


def load(src, tag):
    path = Path(tempfile.mkdtemp()) / f"variant_{tag}.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location(f"variant_{tag}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.sgd_epoch


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    batches = [int(a) for a in sys.argv[2:]] or [10, 100]
    net = NETS["dbl_conv"]
    model = sb.Network(symbp_layers(net, sb), cost=sb.log_likelihood).compile(dtype="float32", seed=0)
    text = Path(model.cache_info["path"]).read_text().splitlines()
    i0 = next(i for i, l in enumerate(text) if l.startswith("def sgd_epoch("))
    loop = next(i for i in range(i0, len(text)) if text[i].startswith("    for k in range(order.shape[0] // m):"))
    end = next(i for i in range(loop, len(text)) if text[i].startswith("    return bad"))
    first_fn = next(i for i, l in enumerate(text) if l.startswith("@njit"))
    # the module's imports and constants, then sgd_epoch alone (the other kernels need not compile again)
    head, body, tail = text[:first_fn] + text[i0 - 1 : loop + 1], text[loop + 1 : end], text[end:]
    parts = steps(body)
    found = {g: [c for c, _ in parts if re.search(rx, c)] for g, rx in GROUPS.items()}
    variants = {"full epoch": "\n".join(head + body + tail)}
    for g, rx in GROUPS.items():
        kept = [ln for c, lines in parts if not (c and re.search(rx, c)) for ln in lines]
        variants[f"without {g}"] = "\n".join(head + kept + ["        pass"] + tail)
    t0 = time.perf_counter()
    fns = {k: load(src, i) for i, (k, src) in enumerate(variants.items())}
    d = sb.data.load_mnist(dtype="float32").train
    X = np.ascontiguousarray(d[0][:n])
    X.setflags(write=False)
    Y = np.ascontiguousarray(np.eye(10, dtype=np.float32)[np.asarray(d[1][:n]).astype(int)]
                             if np.ndim(d[1]) == 1 else d[1][:n])
    Y.setflags(write=False)
    out = {"samples": n, "steps_deleted": found, "load_s": None, "by_batch": {}}
    with threadpoolctl.threadpool_limits(1):
        for m in batches:
            order = np.random.default_rng(0).permutation(n).astype(np.int64)
            order.setflags(write=False)
            flat = lambda: [np.ascontiguousarray(p) for pair in init_conv_params(net, "float32", 0) for p in pair]  # noqa: E731
            args = {k: flat() for k in fns}
            for k, fn in fns.items():  # compile + warm up
                fn(X, Y, order[: 2 * m], m, 0.1, 1.0, 0, 0, *args[k])
            out["load_s"] = time.perf_counter() - t0
            times = {k: [] for k in fns}
            for r in range(5):
                names = list(fns)
                for j in range(len(names)):
                    k = names[(j + r) % len(names)]
                    t = time.perf_counter()
                    fns[k](X, Y, order, m, 0.1, 1.0, 0, 0, *args[k])
                    times[k].append(time.perf_counter() - t)
            med = {k: float(np.median(v)) for k, v in times.items()}
            full = med["full epoch"]
            out["by_batch"][m] = {
                "full_s": full,
                "full_s_per_50k": full * 50_000 / n,
                "saved_s_per_50k": {k[len("without "):]: (full - v) * 50_000 / n for k, v in med.items()
                                    if k != "full epoch"},
                "times": times,
            }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
