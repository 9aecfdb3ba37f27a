"""The ``symbp`` command: ``train``, ``show`` and ``bench``.

Takes: command-line arguments.  Gives: trained models and reports (``train``), derived equations and
generated kernels (``show``), benchmark tables (``bench``).  Errors are one clear line on stderr, exit 2.
Activations and costs are built-in names or expressions in quotes, read by the whitelist parser.
"""

from __future__ import annotations

import argparse
import sys
import time

from symbp.activations import BUILTIN_ACTIVATIONS, Activation
from symbp.costs import BUILTIN_COSTS, Cost

EPILOG_TRAIN = """examples:
  symbp train                                   # the book's chapter 1: [784,30,10], sigmoid, quadratic, 30 epochs
  symbp train --layers 784,100,10 --cost cross-entropy --lmbda 5 --eta 0.1 --epochs 60 --eval validation
  symbp train --activation "z/(1+abs(z))" --output-activation sigmoid --epochs 5 --plot curves.png
"""

EPILOG_SHOW = """examples:
  symbp show                                    # BP1-BP4 for [784,30,10] sigmoid/quadratic
  symbp show --cost cross-entropy --format latex
  symbp show --source sgd_epoch                 # the generated numba kernel for a whole epoch
"""


def _layers(text: str) -> list[int]:
    try:
        sizes = [int(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--layers wants comma-separated sizes like 784,30,10, got {text!r}") from None
    if len(sizes) < 2 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"--layers needs at least two positive sizes, got {text!r}")
    return sizes


def activation_arg(text: str) -> Activation:
    if text in BUILTIN_ACTIVATIONS:
        return BUILTIN_ACTIVATIONS[text]
    return Activation.parse("custom", text)


def cost_arg(text: str) -> Cost:
    key = text.replace("-", "_")
    if key in BUILTIN_COSTS:
        return BUILTIN_COSTS[key]
    return Cost.parse("custom", text)


def _network_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("network")
    g.add_argument("--layers", type=_layers, default=[784, 30, 10], metavar="N,N,...",
                   help="layer sizes, input first (default: 784,30,10)")
    g.add_argument("--activation", default="sigmoid", metavar="ACT",
                   help=f"activation of every layer: {', '.join(BUILTIN_ACTIVATIONS)} or an expression in z "
                        "such as 'z/(1+abs(z))' (default: sigmoid)")
    g.add_argument("--output-activation", default=None, metavar="ACT",
                   help="activation of the output layer, if different (e.g. softmax)")
    g.add_argument("--cost", default="quadratic", metavar="COST",
                   help=f"{', '.join(c.replace('_', '-') for c in BUILTIN_COSTS)} or an expression in a and y "
                        "(default: quadratic)")


def build_network(args):
    import symbp as sb

    acts = [activation_arg(args.activation)] * (len(args.layers) - 1)
    if args.output_activation:
        acts[-1] = activation_arg(args.output_activation)
    return sb.Network(args.layers, activation=acts, cost=cost_arg(args.cost))


def _compile_args(p):
    p.add_argument("--backend", choices=["numba", "numpy"], default="numba", help="kernel backend (default: numba)")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64", help="(default: float64)")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="symbp",
        description="symbp: declare a network with sympy expressions, derive backpropagation (BP1-BP4), "
                    "run it as generated numba kernels.")
    top.add_argument("--version", action="version", version=f"symbp {__import__('symbp').__version__}")
    sub = top.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser("train", help="train on MNIST or Fashion-MNIST with mini-batch SGD",
                       description="Train a network with Nielsen's mini-batch SGD (one whole-epoch kernel call per "
                                   "epoch) and report accuracy per epoch.",
                       epilog=EPILOG_TRAIN, formatter_class=argparse.RawDescriptionHelpFormatter)
    _network_args(t)
    o = t.add_argument_group("training")
    o.add_argument("--epochs", type=int, default=30, help="(default: 30)")
    o.add_argument("--batch-size", type=int, default=10, help="mini-batch size (default: 10)")
    o.add_argument("--eta", type=float, default=3.0, help="learning rate η (default: 3.0)")
    o.add_argument("--lmbda", type=float, default=0.0, help="L2 regularisation λ (default: 0)")
    o.add_argument("--init", choices=["default", "large"], default="default",
                   help="weights N(0, 1/n_in) (default) or the book's chapter-1 N(0, 1) (large)")
    o.add_argument("--seed", type=int, default=0, help="seed for initialisation and shuffling (default: 0)")
    o.add_argument("--early-stop", type=int, default=None, metavar="N",
                   help="stop after N epochs without better evaluation accuracy; keep the best parameters")
    o.add_argument("--monitor-training", action="store_true", help="also report training cost and accuracy")
    _compile_args(o)
    d = t.add_argument_group("data and output")
    d.add_argument("--dataset", choices=["mnist", "fashion-mnist"], default="mnist", help="(default: mnist)")
    d.add_argument("--data-dir", default=None, metavar="DIR",
                   help="folder holding mnist/ and fashion-mnist/ (else $SYMBP_DATA_DIR, the cache, a download)")
    d.add_argument("--limit", type=int, default=None, metavar="N", help="train on the first N training samples")
    d.add_argument("--eval", choices=["test", "validation"], default="test",
                   help="data to evaluate on each epoch (default: test, as in the book's chapter 1)")
    d.add_argument("--save", default=None, metavar="PATH", help="save the model as PATH.json + PATH.npz")
    d.add_argument("--plot", default=None, metavar="PNG", help="write accuracy and cost curves to a PNG")
    d.add_argument("--no-progress", action="store_true", help="no progress bar")
    d.add_argument("--quiet", action="store_true", help="only the final summary")

    s = sub.add_parser("show", help="print the derived equations or the generated kernels",
                       description="Print BP1-BP4 as derived for a network, or the kernel source generated from them.",
                       epilog=EPILOG_SHOW, formatter_class=argparse.RawDescriptionHelpFormatter)
    _network_args(s)
    s.add_argument("--format", choices=["text", "latex", "markdown"], default="text", help="(default: text)")
    s.add_argument("--source", choices=["forward", "cost", "backward", "sgd_epoch", "module"], default=None,
                   help="print this generated kernel instead of the equations")
    _compile_args(s)

    b = sub.add_parser("bench", help="benchmark symbp against NumPy, PyTorch and JAX", add_help=False)
    b.add_argument("rest", nargs=argparse.REMAINDER)
    return top


def cmd_show(args) -> int:
    net = build_network(args)
    if args.source:
        model = net.compile(backend=args.backend, dtype=args.dtype, seed=0)
        print(model.source(None if args.source == "module" else args.source))
        return 0
    eqs = net.equations()
    print({"text": str, "latex": lambda e: e.latex(), "markdown": lambda e: e.markdown()}[args.format](eqs))
    return 0


def cmd_train(args) -> int:
    from symbp.data import load_dataset

    net = build_network(args)
    say = (lambda *a, **k: None) if args.quiet else print
    t0 = time.perf_counter()
    splits = load_dataset(args.dataset, data_dir=args.data_dir, dtype=args.dtype)
    X, labels = splits.train
    if args.limit is not None:
        if args.limit < 1:
            raise ValueError("--limit must be positive")
        X, labels = X[: args.limit], labels[: args.limit]
    evaluation = splits.test if args.eval == "test" else splits.validation
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    model = net.compile(backend=args.backend, dtype=args.dtype, seed=args.seed, init=args.init)
    compile_s = time.perf_counter() - t0
    say(f"{net!r}: {X.shape[0]} training samples, evaluating on {args.eval} ({evaluation[0].shape[0]}); "
        f"data {load_s:.2f} s, compile {compile_s:.2f} s ({'cache hit' if model.cache_info.get('hit') else 'cold'})")
    n_eval = evaluation[0].shape[0]

    def report(epoch, hist):
        line = f"Epoch {epoch}: {round(hist.evaluation_accuracy[-1] * n_eval)} / {n_eval} " \
               f"({hist.evaluation_accuracy[-1]:.2%}), {hist.epoch_seconds[-1]:.2f} s"
        if hist.training_cost:
            line += f"; training cost {hist.training_cost[-1]:.4f}, accuracy {hist.training_accuracy[-1]:.2%}"
        say(line)

    progress = False if (args.no_progress or not args.quiet) else None
    hist = model.fit((X, labels), epochs=args.epochs, batch_size=args.batch_size, eta=args.eta, lmbda=args.lmbda,
                     evaluation_data=evaluation, monitor_training=args.monitor_training,
                     early_stopping=args.early_stop, seed=args.seed, progress=progress, callback=report)
    train_s = sum(hist.epoch_seconds)
    if hist.evaluation_accuracy:
        best = max(hist.evaluation_accuracy)
        n_ep = len(hist.epochs)
        print(f"peak {args.eval} accuracy {best:.2%} at epoch {hist.best_epoch}; "
              f"final {hist.evaluation_accuracy[-1]:.2%}; {n_ep} epochs, training time {train_s:.2f} s "
              f"({train_s / max(1, n_ep):.3f} s/epoch)" + (" (stopped early)" if hist.stopped_early else ""))
    if args.save:
        jpath, npath = model.save(args.save)
        print(f"saved model to {jpath} and {npath}")
    if args.plot:
        from symbp.train.plot import plot_history

        print(f"wrote {plot_history(hist, args.plot, title=repr(net))}")
    return 0


def cmd_bench(rest) -> int:
    from symbp.bench.harness import main as bench_main

    return bench_main(rest) or 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = parser()
    if argv and argv[0] == "bench":
        try:
            return cmd_bench(argv[1:])
        except (ValueError, FileNotFoundError) as exc:
            print(f"symbp bench: error: {exc}", file=sys.stderr)
            return 2
    args = p.parse_args(argv)
    if args.command is None:
        p.print_help()
        return 0
    try:
        return {"train": cmd_train, "show": cmd_show}[args.command](args)
    except (ValueError, FileNotFoundError, FloatingPointError) as exc:
        msg = str(exc).strip()
        if "not found" not in msg:  # a missing dataset explains itself over several lines; the rest is one line
            msg = msg.replace("\n", " ")
        print(f"symbp {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
