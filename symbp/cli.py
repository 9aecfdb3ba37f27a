"""The ``symbp`` command: ``train``, ``show``, ``bench``, ``approx`` and ``data`` (see ``symbp.data.cli``).

Takes: command-line arguments.  Gives: trained models and reports (``train``), derived equations and
generated kernels (``show``), benchmark tables (``bench``), chapter 4's constructed networks, their error
table and plots (``approx``).  Activations and costs are built-in names or
expressions in quotes, read by the whitelist parser.

Errors are one line on stderr, ``symbp <command>: error: ...``, exit status 2; a wrong argument names its option
(a syntax error in an expression gives its column and quotes the line, where the library puts a caret under it).
Every argument of ``train`` is checked before any data is loaded or kernel compiled: numbers and their
ranges, the expressions, the layers (``--layers``: sizes or the compact items of ``symbp.layer_spec``, and
their shapes) against the dataset and against this machine's memory, that ``--save`` and ``--plot`` can write
their files (a missing folder is created when the file is written, and a line on stdout says so) and that
``--data-dir`` holds the dataset.  Only "dataset not found" takes several lines, to say where it looked and how
to provide the files.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
import warnings

from symbp.arguments import (  # noqa: F401  (activation_arg, cost_arg: re-exported)
    LAYER_SYNTAX,
    ArgumentParser,
    activation_arg,
    build_network,
    check_data_dir,
    check_memory,
    check_outputs,
    compile_args,
    cost_arg,
    data_args,
    integer,
    missing_folder,
    momentum_number,
    network_args,
    non_negative_int,
    non_negative_number,
    option_value,
    plot_target,
    positive_int,
    positive_number,
    regularizer_arg,
    save_targets,
    say_created,
)
from symbp.data.cli import add_command as add_data_command
from symbp.sweep.cli import add_commands

EPILOG_TRAIN = LAYER_SYNTAX + """
examples:
  symbp train                                   # the book's chapter 1: [784,30,10], sigmoid, quadratic, 30 epochs
  symbp train --layers 784,100,10 --cost cross-entropy --lmbda 5 --eta 0.1 --epochs 60 --eval validation
  symbp train --activation "z/(1+abs(z))" --output-activation sigmoid --epochs 5 --plot curves.png

chapter 3's techniques and chapter 5's diagnostics:
  symbp train --layers 784,100,10 --cost cross-entropy --eta 0.5 --l1 5 --eval validation   # L1
  symbp train --regularizer "abs(w)/2 + w^2/4" --momentum 0.9 --eta 0.1                     # elastic + momentum
  symbp train --cost cross-entropy --eta 0.5 --schedule halve --patience 10 --epochs 200 --eval validation
  symbp train --layers 784,30,30,30,10 --cost cross-entropy --eta 0.1 --diagnostics --plot ch5.png

the book's chapter-6 nets (network3.py; the names are its conv.py's), mini-batch 10 as in the book:
  c6="--cost log-likelihood --dtype float32"; two="conv20x5x5,pool2,conv40x5x5,pool2"
  symbp train $c6 --epochs 60 --eta 0.1 --layers fc100,softmax10                           # shallow
  symbp train $c6 --epochs 60 --eta 0.1 --layers conv20x5x5,pool2,fc100,softmax10          # basic_conv
  symbp train $c6 --epochs 60 --eta 0.1 --layers $two,fc100,softmax10                      # dbl_conv
  symbp train $c6 --epochs 60 --eta 0.03 --lmbda-network3 0.1 --activation relu \\
              --layers $two,fc100,softmax10                                                # dbl_conv_relu
  symbp train $c6 --epochs 60 --eta 0.03 --lmbda-network3 0.1 --activation relu --expand \\
              --layers $two,fc100,softmax10                                                # expanded_data
  symbp train $c6 --epochs 40 --eta 0.03 --activation relu --expand \\
              --layers $two,dropout0.5,fc1000,dropout0.5,fc1000,dropout0.5,softmax10       # double_fc_dropout
  (network3's p_dropout drops a layer's inputs: its 0.5 on FC, FC and softmax is a dropout0.5 before each;
  --lmbda-network3 0.1 is --lmbda 1 at mini-batch 10.)

a modern net with PyTorch's options, 92.3% on Fashion-MNIST (99.3% on MNIST in 20 epochs):
  symbp train --dataset fashion-mnist $c6 --activation relu --eta 0.005 --momentum 0.9 --schedule halve \\
              --patience 5 --early-stop 10 --epochs 60 --eval validation --seed 1 \\
              --layers conv32x3x3p1,maxpool2,conv64x3x3p1,maxpool2,dropout0.5,fc128,dropout0.5,softmax10
"""

EPILOG_SHOW = LAYER_SYNTAX + """\
  (symbp show implies MNIST's input; a written one, as the 4 of 4,3,2, is taken as it stands.)

examples:
  symbp show                                    # BP1-BP4 for [784,30,10] sigmoid/quadratic
  symbp show --cost cross-entropy --format latex
  symbp show --source sgd_epoch                 # the generated numba kernel for a whole epoch
  symbp show --layers conv20x5x5,pool2,conv40x5x5,pool2,fc100,softmax10 --activation relu --cost log-likelihood
"""


EPILOG_APPROX = """\
examples:
  symbp approx "sin(3*x) + 0.5*x" --neurons 5,10,20,50,100 --plot approx.png   # table, approx.png, approx-bumps.png
  symbp approx "sin(3*x)" --neurons 10 --copies 4 --w-per-bump 10             # M shifted copies, gentle steps
  symbp approx "sin(3*x)*y + 0.5" --dims 2 --neurons 4,8,16 --plot towers.png  # the 2-D towers
"""


def parser() -> argparse.ArgumentParser:
    top = ArgumentParser(
        prog="symbp",
        description="symbp: declare a network with sympy expressions, derive backpropagation (BP1-BP4), "
                    "run it as generated numba kernels.")
    top.add_argument("--version", action="version", version=f"symbp {__import__('symbp').__version__}")
    sub = top.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser("train", help="train on MNIST or Fashion-MNIST with mini-batch SGD",
                       description="Train a network with Nielsen's mini-batch SGD (one whole-epoch kernel call per "
                                   "epoch) and report accuracy per epoch.",
                       epilog=EPILOG_TRAIN, formatter_class=argparse.RawDescriptionHelpFormatter)
    network_args(t)
    o = t.add_argument_group("training")
    o.add_argument("--epochs", type=non_negative_int, default=30, help="(default: 30)")
    o.add_argument("--batch-size", type=positive_int, default=10, help="mini-batch size (default: 10)")
    o.add_argument("--eta", type=positive_number, default=3.0, help="learning rate η (default: 3.0)")
    reg = o.add_mutually_exclusive_group()
    reg.add_argument("--lmbda", type=non_negative_number, default=0.0,
                     help="L2 regularisation λ as in the book's network2 (chapter 3): the cost gets λ/2n·Σw² over "
                          "all weights, no biases, n the number of training samples (default: 0)")
    reg.add_argument("--lmbda-network3", type=non_negative_number, default=None, metavar="LMBDA",
                     help="L2 regularisation given as the book's network3 (chapter 6) λ, which adds "
                          "0.5·λ·Σw²/num_training_batches: the same as --lmbda LMBDA × --batch-size")
    reg.add_argument("--l1", type=non_negative_number, default=None, metavar="LMBDA",
                     help="L1 regularisation (chapter 3): the cost gets λ/n·Σ|w|, the update w → w − (ηλ/n)·sgn(w) "
                          "− η·∂C₀/∂w")
    reg.add_argument("--regularizer", default=None, metavar="EXPR",
                     help="a penalty R(w) of your own, in the weight w (e.g. \"abs(w)/2 + w^2/4\"): the cost gets "
                          "1/n·Σ R(w) over the weights; sympy derives R′ for the generated update")
    o.add_argument("--momentum", type=momentum_number, default=0.0, metavar="MU",
                   help="momentum SGD (chapter 3, eqs. 107-108): v → μv − η∇C, w → w + v; 0 is plain SGD "
                        "(default: 0)")
    o.add_argument("--schedule", choices=["halve"], default=None,
                   help="learning-rate schedule: halve η after --patience epochs without a better evaluation "
                        "accuracy; stop when η would reach η/128 (the book's chapter 3)")
    o.add_argument("--patience", type=positive_int, default=10, metavar="N",
                   help="epochs without improvement before --schedule halve halves η (default: 10)")
    o.add_argument("--diagnostics", action="store_true",
                   help="record chapter 5's diagnostics per epoch (speed of learning ‖∂C/∂bˡ‖, ‖∂C/∂wˡ‖, saturated "
                        "units, weight statistics) on 1,000 training images; with --plot, also plot them")
    o.add_argument("--init", choices=["default", "large"], default="default",
                   help="weights N(0, 1/n_in) (default) or the book's chapter-1 N(0, 1) (large)")
    o.add_argument("--seed", type=non_negative_int, default=0,
                   help="seed for initialisation and shuffling (default: 0)")
    o.add_argument("--early-stop", type=positive_int, default=None, metavar="N",
                   help="stop after N epochs without better evaluation accuracy; keep the best parameters")
    o.add_argument("--monitor-training", action="store_true", help="also report training cost and accuracy")
    o.add_argument("--drop-last", action="store_true",
                   help="skip a short last mini-batch when the training set is not a multiple of --batch-size "
                        "(by default it is trained too, with η/its size, as the book's network.py)")
    compile_args(o)
    d = t.add_argument_group("data and output")
    data_args(d, "train on the first N training samples (with --expand: the first N images, expanded)")
    d.add_argument("--inputs", choices=["uint8", "float"], default="uint8",
                   help="uint8: the pixels as bytes, read as pixel/255 by the kernels (8× less memory and data "
                        "moved than float64); float: pixel/255 stored in --dtype (default: uint8)")
    d.add_argument("--expand", action="store_true",
                   help="MNIST only: train on each training image and its four one-pixel shifts, zero-filled "
                        "(50,000 images become 250,000), as the book's expand_mnist.py")
    d.add_argument("--eval", choices=["test", "validation"], default="test",
                   help="data to evaluate on each epoch (default: test, as in the book's chapter 1)")
    d.add_argument("--save", default=None, metavar="PATH",
                   help="save the model as PATH.json + PATH.npz (a missing folder is created, and reported)")
    d.add_argument("--plot", default=None, metavar="FILE",
                   help="write accuracy and cost curves to FILE (.png if it has no suffix; .pdf, .svg, ...; a "
                        "missing folder is created, and reported)")
    d.add_argument("--no-progress", action="store_true", help="no progress bar")
    d.add_argument("--quiet", action="store_true", help="only the final summary")

    s = sub.add_parser("show", help="print the derived equations or the generated kernels",
                       description="Print BP1-BP4 as derived for a network, or the kernel source generated from them.",
                       epilog=EPILOG_SHOW, formatter_class=argparse.RawDescriptionHelpFormatter)
    network_args(s)
    s.add_argument("--format", choices=["text", "latex", "markdown"], default="text", help="(default: text)")
    s.add_argument("--source", choices=["forward", "cost", "backward", "sgd_epoch", "module"], default=None,
                   help="print this generated kernel instead of the equations")
    s.add_argument("--config", action="store_true",
                   help="print the network's declaration instead (JSON: the layers and the cost, as model files "
                        "hold them); --network FILE reads it back")
    s.add_argument("--plan", action="store_true",
                   help="print the kernel plan instead: which path each step takes (BLAS gemm, im2col + gemm, "
                        "window max, or generated loops) and its work in FLOP")
    compile_args(s)

    ap = sub.add_parser("approx", help="chapter 4: build the book's network approximating a function",
                        description="Build Nielsen's chapter-4 network (steep sigmoid steps paired into bumps, or "
                                    "towers in 2-D) for f on a box, print its error against the bound and against "
                                    "a network of the same hidden size trained on samples of f.",
                        epilog=EPILOG_APPROX, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("function", help="f in x (or x and y with --dims 2), read by the whitelist parser")
    ap.add_argument("--neurons", type=_neuron_list, default=[5, 10, 20, 50, 100], metavar="N,N,...",
                    help="bumps per axis, one row each (1-D hidden size 2N; default: 5,10,20,50,100)")
    ap.add_argument("--dims", type=int, choices=[1, 2], default=1, help="(default: 1)")
    ap.add_argument("--box", type=_box_arg, default=(0.0, 1.0), metavar="LO,HI",
                    help="the interval (each axis in 2-D); a negative LO as --box=-1,1 (default: 0,1)")
    ap.add_argument("--w-per-bump", type=positive_number, default=60.0, metavar="WD",
                    help="step steepness as w times the bump width d (default: 60)")
    ap.add_argument("--copies", type=positive_int, default=1, metavar="M",
                    help="M shifted copies at 1/M of the height (1-D; default: 1)")
    ap.add_argument("--epochs", type=non_negative_int, default=300,
                    help="epochs of the trained comparison on 200 samples (1-D; 0: none; default: 300)")
    ap.add_argument("--plot", default=None, metavar="FILE",
                    help="write the error against N to FILE and the steps and bumps (1-D) or the towers (2-D) "
                         "for the first N to FILE-bumps / FILE-towers")

    b = sub.add_parser("bench", help="benchmark symbp against NumPy, PyTorch and JAX", add_help=False)
    b.add_argument("rest", nargs=argparse.REMAINDER)

    add_commands(sub)  # sweep and vote (dask.distributed is imported only by a sweep)
    add_data_command(sub)  # symbp data: list, add, forget
    return top


def cmd_show(args) -> int:
    net = build_network(args, check_input=False)
    if args.config:
        print(json.dumps(net.config(), indent=2, ensure_ascii=False))
        return 0
    if args.plan:
        check_memory(net, args, args.dtype)
        print(net.compile(backend=args.backend, dtype=args.dtype, seed=0).plan())
        return 0
    if args.source:
        check_memory(net, args, args.dtype)
        model = net.compile(backend=args.backend, dtype=args.dtype, seed=0)
        print(model.source(None if args.source == "module" else args.source))
        return 0
    eqs = net.equations()
    print({"text": str, "latex": lambda e: e.latex(), "markdown": lambda e: e.markdown()}[args.format](eqs))
    return 0


def check_train_args(args):
    """Every check of ``symbp train`` that needs no data: a ``ValueError`` naming the option, else the network
    and the paths that ``--save`` and ``--plot`` will write."""
    from symbp.data.datasets import N_CLASSES, N_TRAIN
    from symbp.data.expand import EXPANSION

    check_data_dir(args)
    save = save_targets(args.save) if args.save is not None else None
    plot = plot_target(args.plot) if args.plot is not None else None
    if save and plot and plot.resolve() in (save[0].resolve(), save[1].resolve()):
        raise ValueError(f"argument --plot: {plot} is also written by --save")
    if args.expand and args.dataset != "mnist":
        raise ValueError(f"argument --expand: the expanded training set is MNIST's (the book's expand_mnist.py), "
                         f"got --dataset {args.dataset}")
    n_train = N_TRAIN if args.limit is None else min(args.limit, N_TRAIN)
    if args.expand:
        n_train *= EXPANSION
    if args.batch_size > n_train:
        raise ValueError(f"argument --batch-size: expected at most the number of training samples ({n_train}), "
                         f"got {args.batch_size}")
    if args.lmbda_network3 is not None:
        args.lmbda = args.lmbda_network3 * args.batch_size
    from symbp.train.model import check_weight_decay  # refused here, before the data is loaded

    check_weight_decay(args.eta, args.lmbda, n_train,
                       "--lmbda" if args.lmbda_network3 is None else "--lmbda-network3 × --batch-size")
    args.regularizer_obj = None
    if args.l1 is not None:
        from symbp.regularizers import L1

        args.regularizer_obj = L1(args.l1)
    elif args.regularizer is not None:
        args.regularizer_obj = option_value("--regularizer", regularizer_arg, args.regularizer)
    net = build_network(args)
    check_outputs(net, args, N_CLASSES)
    rows = max(10_000, n_train if args.monitor_training else 0)
    # the loaded splits (70,000 rows), and with --expand the expanded copy of the training images
    check_memory(net, args, args.dtype, data_rows=N_TRAIN + 20_000 + (n_train if args.expand else 0),
                  eval_rows=rows, batch_size=args.batch_size, data_itemsize=1 if args.inputs == "uint8" else None)
    return net, save, plot


@contextlib.contextmanager
def waiting(enabled: bool, console=None):
    """A status line on stderr while the kernels are derived, generated and compiled: yields ``status(text)``,
    which shows ``text`` beside a spinner with the seconds elapsed.  Shown only on a terminal (``console``: a
    ``rich.console.Console``, by default one on stderr) and when ``enabled``; else ``status`` does nothing."""
    if console is None and enabled:
        from rich.console import Console

        console = Console(stderr=True)
    if not enabled or not console.is_terminal:
        yield lambda text: None
        return
    t0 = time.perf_counter()
    with console.status("compiling") as live:
        def status(text: str) -> None:
            live.update(f"{text}  [dim]({time.perf_counter() - t0:.1f} s)[/dim]")
        yield status


def cmd_train(args) -> int:
    from symbp.data import load_dataset

    net, save, plot = check_train_args(args)
    say = (lambda *a, **k: None) if args.quiet else print
    t0 = time.perf_counter()
    splits = load_dataset(args.dataset, data_dir=args.data_dir,
                          dtype="uint8" if args.inputs == "uint8" else args.dtype)
    X, labels = splits.train
    if args.limit is not None:
        X, labels = X[: args.limit], labels[: args.limit]
    if args.expand:
        from symbp.data import expand_mnist

        n_images = X.shape[0]
        X, labels = expand_mnist((X, labels))
    evaluation = splits.test if args.eval == "test" else splits.validation
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    with waiting(not (args.no_progress or args.quiet)) as status:
        model = net.compile(backend=args.backend, dtype=args.dtype, seed=args.seed, init=args.init, progress=status)
        status("generating the update kernel")
        update = model.update_kernel(args.regularizer_obj, args.momentum, compact=splits.input_scale is not None)
        model.prepare(update, "forward", "cost", progress=status)  # what fit uses
    compile_s = time.perf_counter() - t0
    say(f"{net!r}: {X.shape[0]} training samples"
        + (f" ({n_images} images and their 4 one-pixel shifts)" if args.expand else "")
        + f", evaluating on {args.eval} ({evaluation[0].shape[0]}); "
        f"data {load_s:.2f} s, compile {compile_s:.2f} s ({'cache hit' if model.cache_info.get('hit') else 'cold'})")
    if args.lmbda_network3 is not None:
        say(f"λ = {args.lmbda:g}: network3's λ {args.lmbda_network3:g} × mini-batch size {args.batch_size}")
    n_eval = evaluation[0].shape[0]

    def report(epoch, hist):
        line = f"Epoch {epoch}: {round(hist.evaluation_accuracy[-1] * n_eval)} / {n_eval} " \
               f"({hist.evaluation_accuracy[-1]:.2%}), {hist.epoch_seconds[-1]:.2f} s"
        if hist.training_cost:
            line += f"; training cost {hist.training_cost[-1]:.4f}, accuracy {hist.training_accuracy[-1]:.2%}"
        say(line)

    progress = False if (args.no_progress or not args.quiet) else None
    if args.regularizer_obj is not None or args.momentum or args.schedule:
        say("update: " + "; ".join(net.equations(args.regularizer_obj, args.momentum).update_rule())
            + (f"; schedule: halve η after {args.patience} epochs without improvement" if args.schedule else ""))
    hist = model.fit((X, labels), epochs=args.epochs, batch_size=args.batch_size, eta=args.eta, lmbda=args.lmbda,
                     evaluation_data=evaluation, monitor_training=args.monitor_training,
                     early_stopping=args.early_stop, seed=args.seed, progress=progress, callback=report,
                     regularizer=args.regularizer_obj, momentum=args.momentum, schedule=args.schedule,
                     patience=args.patience, diagnostics=args.diagnostics, input_scale=splits.input_scale,
                     drop_last=args.drop_last)
    train_s = sum(hist.epoch_seconds)
    if hist.evaluation_accuracy:
        best = max(hist.evaluation_accuracy)
        n_ep = len(hist.epochs)
        print(f"peak {args.eval} accuracy {best:.2%} at epoch {hist.best_epoch}; "
              f"final {hist.evaluation_accuracy[-1]:.2%}; {n_ep} epochs, training time {train_s:.2f} s "
              f"({train_s / max(1, n_ep):.3f} s/epoch)" + (" (stopped early)" if hist.stopped_early else ""))
    if save:
        new_folder = missing_folder(save[0])
        try:
            jpath, npath = model.save(save[0])
        except (OSError, ValueError) as exc:
            raise ValueError(f"argument --save: cannot save the model: {exc}") from exc
        say_created(new_folder)
        print(f"saved model to {jpath} and {npath}")
    if hist.diagnostics:
        last = hist.diagnostics[-1]
        speeds = ", ".join("-" if v is None else f"{v:.3g}" for v in last["speed"])
        cost = sum(hist.diagnostics_seconds) / max(train_s, 1e-12)
        print(f"speed of learning ‖∂C/∂bˡ‖ per layer after epoch {last['epoch']}: {speeds} "
              f"(diagnostics took {cost:.1%} of the training time)")
    if plot:
        from symbp.train.plot import plot_history

        new_folder = missing_folder(plot)
        try:
            written = [plot_history(hist, plot, title=repr(net), evaluation_label=args.eval)]
            if hist.diagnostics:
                from symbp.train.diagnostics import plot_diagnostics, plot_weight_tiles

                written.append(plot_diagnostics(hist, plot.with_name(f"{plot.stem}-diagnostics{plot.suffix}")))
                written.append(plot_weight_tiles(model, plot.with_name(f"{plot.stem}-weights{plot.suffix}")))
        except (OSError, ValueError) as exc:
            raise ValueError(f"argument --plot: cannot write the curves: {exc}") from exc
        say_created(new_folder)
        print("wrote " + ", ".join(map(str, written)))
    return 0


def _neuron_list(text: str) -> list[int]:
    items = [t.strip() for t in text.split(",")]
    if not text.strip() or not all(items):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers such as 5,10,20, got {text!r}")
    values = [integer(t, 1, "a positive integer") for t in items]
    if max(values) > 2000:
        raise argparse.ArgumentTypeError(f"at most 2000 bumps per axis, got {max(values)}")
    return values


def _box_arg(text: str) -> tuple[float, float]:
    parts = text.split(",")
    try:
        lo, hi = (float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI such as 0,1, got {text!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise argparse.ArgumentTypeError(f"expected finite LO < HI, got {text!r}")
    return lo, hi


def cmd_approx(args) -> int:
    from symbp import approx

    approx.target(args.function, args.dims)  # the parser's errors first
    if args.dims == 2 and max(args.neurons) > 40:
        raise ValueError(f"argument --neurons: at most 40 per axis with --dims 2 (N*N towers), got "
                         f"{max(args.neurons)}")
    if args.dims == 2 and args.copies != 1:
        raise ValueError("argument --copies: M shifted copies are built in 1-D only")
    plot = plot_target(args.plot) if args.plot is not None else None
    print(f"f = {args.function} on {' x '.join([f'[{args.box[0]:g}, {args.box[1]:g}]'] * args.dims)}, "
          f"w·d = {args.w_per_bump:g}" + (f", M = {args.copies}" if args.dims == 1 else ""))
    if args.dims == 1:
        rows = approx.table(args.function, args.neurons, box=args.box, w_per_bump=args.w_per_bump,
                            m=args.copies, train=args.epochs > 0, epochs=args.epochs)
        print(approx.format_table(rows))
    else:
        rows = approx.table2d(args.function, args.neurons, box=args.box, w_per_bump=args.w_per_bump)
        print(approx.format_table2d(rows))
    if plot is not None:
        new_folder = missing_folder(plot)
        first = approx.construct(args.function, args.neurons[0], box=args.box, dims=args.dims, m=args.copies,
                                 w=args.w_per_bump * args.neurons[0] / (args.box[1] - args.box[0]))
        if args.dims == 1:
            written = [approx.plot_errors(rows, plot, f"f = {args.function}: sup error against N"),
                       approx.plot_construction(first, plot.with_name(plot.stem + "-bumps" + plot.suffix))]
        else:
            written = [approx.plot_errors2d(rows, plot, f"f = {args.function}: towers, error against N"),
                       approx.plot_towers(first, plot.with_name(plot.stem + "-towers" + plot.suffix))]
        say_created(new_folder)
        print("wrote " + ", ".join(map(str, written)))
    return 0


def cmd_bench(rest) -> int:
    from symbp.bench.harness import main as bench_main

    return bench_main(rest, prog="symbp bench") or 0


#: What a command can fail with that is reported as one line (anything else is a bug: a traceback).
_ERRORS = (ValueError, OSError, ArithmeticError, MemoryError)


def _message(command: str, exc: BaseException) -> str:
    from symbp.data.datasets import DatasetNotFoundError

    if isinstance(exc, MemoryError):
        msg = f"out of memory ({exc})" if str(exc) else "out of memory"
    else:
        msg = str(exc).strip() or type(exc).__name__
    if not isinstance(exc, DatasetNotFoundError):  # which explains over several lines how to get the data
        from symbp.parsing import one_line

        msg = one_line(msg)  # a syntax error's caret under its column: the quoted line after "at column N"
    return f"symbp {command}: error: {msg}"


def _one_line_warning(command: str):
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"symbp {command}: warning: {' '.join(str(message).split())}", file=file or sys.stderr)

    return show


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = parser()
    command = argv[0] if argv and argv[0] == "bench" else None
    from symbp.data.locations import remembering  # a dataset found by --data-dir/$SYMBP_DATA_DIR is remembered

    try:
        with warnings.catch_warnings(), remembering():
            if command == "bench":
                warnings.showwarning = _one_line_warning("bench")
                return cmd_bench(argv[1:])
            args = p.parse_args(argv)
            command = args.command
            if command is None:
                p.print_help()
                return 0
            warnings.showwarning = _one_line_warning(command)
            if command not in ("train", "show", "approx"):
                return args.handler(args)  # the commands added by add_commands (sweep, vote) and data
            return {"train": cmd_train, "show": cmd_show, "approx": cmd_approx}[command](args)
    except _ERRORS as exc:
        if isinstance(exc, BrokenPipeError):  # stdout closed early (symbp show | head): not an error of symbp
            with contextlib.suppress(OSError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
        print(_message(command or "", exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
