"""Chapter 5 on real MNIST: the vanishing gradient, measured with ``symbp.train.diagnostics``.

Usage: OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 python run.py [DATA_DIR] [--quick]
Writes beside this file: results.json (the tables, the cost of diagnostics, seconds), curves.json (every record of
the training runs, 5 significant digits), run.log, and the PNGs.

1. At initialisation (W ~ N(0, 1/n_in), b ~ N(0, 1): symbp's default = the book's network2), the speed of learning
   ‖δˡ‖ = ‖∂C/∂bˡ‖ of each hidden layer, δ averaged over the first 1,000 training images, cross-entropy cost and
   sigmoid units as the book's generate_gradient.py; 5 seeds (and 100 for a tighter mean), quadratic and ReLU beside.
2. During training as the book: those 1,000 images, full batch (1,000), η = 0.1, λ = 5, 500 epochs; the speed of
   every layer before the first epoch and after each.  The same with ReLU hidden layers (default init, and He's
   N(0, 2/n_in)).
3. The cost of diagnostics: [784,30,30,10] sigmoid on 50,000 images at mini-batch 10, a record (1,000-row sample)
   after each epoch, seconds of a record / seconds of an epoch; the same for the chapter-6 basic_conv net (float32),
   with samples of 1,000 and 250 rows.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import symbp as sb  # noqa: E402
from symbp.train import diagnostics as dg  # noqa: E402

HERE = Path(__file__).resolve().parent
args = [a for a in sys.argv[1:] if not a.startswith("--")]
QUICK = "--quick" in sys.argv
DATA_DIR = args[0] if args else None
EPOCHS = 20 if QUICK else 500
SEEDS, MANY_SEEDS = 5, (10 if QUICK else 100)
HIDDEN = {2: [30, 30], 3: [30, 30, 30], 4: [30, 30, 30, 30]}
BOOK = {2: [0.07, 0.31], 3: [0.012, 0.060, 0.283], 4: [0.003, 0.017, 0.070, 0.285]}

log_file = open(HERE / "run.log", "w")  # noqa: SIM115 - written to as the runs go


def log(text: str) -> None:
    print(text, flush=True)
    print(text, file=log_file, flush=True)


def network(k: int, hidden=sb.sigmoid, cost=sb.cross_entropy, output=sb.sigmoid) -> sb.Network:
    return sb.Network([sb.Input(784), *[sb.Dense(n, hidden) for n in HIDDEN[k]], sb.Dense(10, output)], cost=cost)


def he_init(model) -> None:
    """W ~ N(0, 2/n_in) for the hidden (ReLU) layers: the default weights times √2; the output layer as it was."""
    params = model.params
    model.set_params([(W * np.sqrt(2.0), b) for W, b in params[:-1]] + params[-1:])


t_start = time.perf_counter()
data = sb.data.load_mnist(data_dir=DATA_DIR, dtype="float64")
X, y = data.train
X1k, y1k = np.ascontiguousarray(X[:1000]), np.asarray(y[:1000])
Xv, yv = data.validation
log(f"chapter 5 on MNIST: {platform.processor() or platform.machine()}, numpy {np.__version__}, symbp "
    f"{sb.__version__}, OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}, load {os.getloadavg()[0]:.2f}")
results = {"book": {str(k): v for k, v in BOOK.items()}, "epochs": EPOCHS, "quick": QUICK}
models = {}


def compiled(key, make):
    if key not in models:
        t0 = time.perf_counter()
        models[key] = make().compile(dtype="float64", seed=0)
        log(f"compiled {models[key].network!r} in {time.perf_counter() - t0:.1f} s")
    return models[key]


# ------------------------------------------------------------------------------------------------ 1. at initialisation
t0 = time.perf_counter()
init = {}
variants = {"sigmoid_xent": {}, "sigmoid_quadratic": {"cost": sb.quadratic}, "relu_xent": {"hidden": sb.relu}}
for name, kw in variants.items():
    init[name] = {}
    for k in HIDDEN:
        model = compiled((name, k), lambda k=k, kw=kw: network(k, **kw))
        speeds = []
        for seed in range(MANY_SEEDS):
            model.init_params(seed=seed)
            speeds.append(dg.learning_speed(model, X1k, y1k)[:-1])  # the hidden layers, as the book
        speeds = np.asarray(speeds)
        init[name][str(k)] = {
            "seeds_5": speeds[:SEEDS].tolist(), "mean_5": speeds[:SEEDS].mean(0).tolist(),
            "std_5": speeds[:SEEDS].std(0, ddof=1).tolist(),
            f"mean_{MANY_SEEDS}": speeds.mean(0).tolist(), f"std_{MANY_SEEDS}": speeds.std(0, ddof=1).tolist(),
            "ratio_first_to_last_mean_5": float(speeds[:SEEDS, 0].mean() / speeds[:SEEDS, -1].mean())}
        log(f"init {name} {k} hidden: " + ", ".join(
            f"{m:.4f} ± {s:.4f}" for m, s in zip(speeds[:SEEDS].mean(0), speeds[:SEEDS].std(0, ddof=1)))
            + f"   (book {BOOK[k]}; {MANY_SEEDS} seeds: " + ", ".join(f"{m:.4f}" for m in speeds.mean(0)) + ")")
results["init"] = init
results["init_seconds"] = time.perf_counter() - t0

# ------------------------------------------------------------------------------------------------ 2. during training
t0 = time.perf_counter()
runs = {"sigmoid": ("sigmoid_xent", None), "relu": ("relu_xent", None), "relu_he": ("relu_xent", he_init)}
curves, summary = {}, {}
for run, (variant, fix) in runs.items():
    for k in HIDDEN:
        model = compiled((variant, k), None)
        model.init_params(seed=0)
        if fix is not None:
            fix(model)
        rec = dg.make_recorder(model, (X1k, y1k), sample=None)  # all 1,000 training images, as the book
        records = [rec.record(0)]

        def callback(epoch, hist, rec=rec, records=records):
            records.append(rec.record(epoch))

        t1 = time.perf_counter()
        hist = model.fit((X1k, y1k), epochs=EPOCHS, batch_size=1000, eta=0.1, lmbda=5.0, seed=0, progress=False,
                         monitor_training=True, monitor_evaluation=False, callback=callback)
        seconds = time.perf_counter() - t1
        key = f"{run}_{k}"
        curves[key] = {q: [r[q] for r in records] for q in ("epoch", *dg.QUANTITIES, "w_mean")}
        curves[key].update(layers=records[0]["layers"], names=records[0]["names"],
                           training_cost=hist.training_cost, training_accuracy=hist.training_accuracy)
        val = model.evaluate((Xv, yv))
        summary[key] = {"seconds": seconds, "epoch_seconds_median": float(np.median(hist.epoch_seconds)),
                        "record_seconds_median": float(np.median([r["seconds"] for r in records])),
                        "speed_start": records[0]["speed"], "speed_end": records[-1]["speed"],
                        "saturation_start": records[0]["saturation"], "saturation_end": records[-1]["saturation"],
                        "training_accuracy_end": hist.training_accuracy[-1], "validation_accuracy_end": val}
        log(f"train {key}: {seconds:.1f} s; speed per layer epoch 0 → {EPOCHS}: "
            + ", ".join(f"{a:.3g}→{b:.3g}" for a, b in zip(records[0]["speed"], records[-1]["speed"]))
            + f"; training accuracy {hist.training_accuracy[-1]:.1%}, validation {val:.2%}")
        if k == 3:
            dg.plot_diagnostics(records, HERE / f"diagnostics_{run}_3.png",
                                title=f"[784,30,30,30,10], {run} hidden layers: 1,000 images, full batch, η=0.1, λ=5")
            if run == "sigmoid":
                dg.plot_weight_tiles(model, HERE / "weights_sigmoid_3.png", max_tiles=30,
                                     title=f"first-layer weights after {EPOCHS} epochs ([784,30,30,30,10] sigmoid)")
results["training"] = summary
results["training_seconds"] = time.perf_counter() - t0


def _short(v):
    """Floats to 5 significant digits (curves.json stays small), recursively."""
    if isinstance(v, float):
        return float(f"{v:.5g}")
    if isinstance(v, list):
        return [_short(x) for x in v]
    if isinstance(v, dict):
        return {k: _short(x) for k, x in v.items()}
    return v


(HERE / "curves.json").write_text(json.dumps(_short(curves)))


def speed_figure(run: str, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = ["#2A6EA6", "#FFA933", "#FF5555", "#55AA55", "#5555FF"]  # the book's
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3), sharey=True)
    for ax, k in zip(axes, HIDDEN):
        c = curves[f"{run}_{k}"]
        speed = np.asarray(c["speed"])
        for j in range(k):  # hidden layers only, as the book
            ax.plot(c["epoch"], speed[:, j], color=colors[j], label=f"Hidden layer {j + 1}")
        ax.set(yscale="log", xlim=(0, EPOCHS), xlabel="Number of epochs of training",
               title=f"Speed of learning: {k} hidden layers")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)
    axes[0].set_ylabel("‖∂C/∂bˡ‖ on the 1,000 training images")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


speed_figure("sigmoid", HERE / "speed_sigmoid.png", "sigmoid hidden layers (the book's figures), cross-entropy")
speed_figure("relu", HERE / "speed_relu.png", "ReLU hidden layers, default init N(0, 1/n_in)")
speed_figure("relu_he", HERE / "speed_relu_he.png", "ReLU hidden layers, He init N(0, 2/n_in)")

# ---------------------------------------------------------------------------------------------- 3. cost of diagnostics
t0 = time.perf_counter()
cost = {}
benches = {  # name: network, dtype, η, epochs, the sample sizes measured
    "dense_784_30_30_10": (lambda: sb.Network([784, 30, 30, 10], activation=sb.sigmoid, cost=sb.cross_entropy),
                           "float64", 0.5, 2 if QUICK else 3, (1000,)),
    "basic_conv": (lambda: sb.Network([sb.Input((1, 28, 28)), sb.Conv2D(20, (5, 5), sb.sigmoid), sb.MaxPool((2, 2)),
                                       sb.Dense(100, sb.sigmoid), sb.Dense(10, sb.softmax)], cost=sb.log_likelihood),
                   "float32", 0.1, 1, (1000, 250)),
}
n_train = 10_000 if QUICK else 50_000
for name, (make, dtype, eta, epochs, samples) in benches.items():
    t1 = time.perf_counter()
    model = make().compile(dtype=dtype, seed=0)
    compile_s = time.perf_counter() - t1
    Xd = X[:n_train].astype(dtype)
    t1 = time.perf_counter()
    recs = {m: dg.make_recorder(model, (Xd, y[:n_train]), sample=m, seed=0) for m in samples}
    setup_s = time.perf_counter() - t1
    for rec in recs.values():
        rec.record(0)  # the first call of the gradient kernel (loaded from the cache) is not counted
    seconds = {m: [] for m in samples}

    def callback(epoch, hist, recs=recs, seconds=seconds):
        for m, rec in recs.items():
            seconds[m].append(rec.record(epoch)["seconds"])

    hist = model.fit((Xd, y[:n_train]), epochs=epochs, batch_size=10, eta=eta, seed=0, progress=False,
                     monitor_evaluation=False, callback=callback)
    epoch_s = float(np.median(hist.epoch_seconds))
    ratios = {str(m): float(np.median(seconds[m]) / epoch_s) for m in samples}
    cost[name] = {"network": repr(model.network), "dtype": dtype, "images": n_train, "batch_size": 10,
                  "epoch_seconds": hist.epoch_seconds, "record_seconds": {str(m): v for m, v in seconds.items()},
                  "ratio": ratios, "recorder_setup_seconds": setup_s, "compile_seconds": compile_s}
    log(f"cost of diagnostics, {name} ({dtype}, {n_train} images, mini-batch 10): epoch {epoch_s:.2f} s; "
        + "; ".join(f"record ({m} rows) {np.median(seconds[m]) * 1000:.1f} ms: ratio {ratios[str(m)]:.2%}"
                    for m in samples) + f" (recorder set-up {setup_s:.2f} s once)")
results["diagnostics_cost"] = cost
results["cost_seconds"] = time.perf_counter() - t0
results["total_seconds"] = time.perf_counter() - t_start
(HERE / "results.json").write_text(json.dumps(results, indent=1))
log(f"total {results['total_seconds']:.0f} s (load average at the end {os.getloadavg()[0]:.2f} on {os.cpu_count()} "
    "cores)")
