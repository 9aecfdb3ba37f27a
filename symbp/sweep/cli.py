"""The ``symbp sweep`` and ``symbp vote`` commands.

Takes: command-line arguments (``add_commands(subparsers)`` adds both sub-commands to the ``symbp`` parser, each
with its handler as ``handler``).  Gives: ``sweep``: every trial of a grid over ``Model.fit`` keywords and seeds
trained on MNIST or Fashion-MNIST through ``sb.sweep`` (on a local cluster of worker processes, or on the dask
scheduler named by ``--scheduler``), the table of trials sorted by accuracy, the best configuration and a plot;
``vote``: the accuracy of each saved model and of their plurality vote.

As for ``symbp train``, everything that needs no data is checked before any data is loaded or any worker started
(the grid's names against ``Model.fit``'s signature, the lists, the network and its shapes, the folders), and an
error is one line, ``symbp sweep: error: argument --eta: ...``, exit status 2.  A sweep with failed trials exits
with status 1 (each failure is a one-line warning); Ctrl-C stops it, keeps the finished trials and exits 130.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import re
import sys
import time
import warnings
from pathlib import Path

from symbp.arguments import (
    LAYER_SYNTAX,
    build_network,
    check_data_dir,
    check_folder,
    check_memory,
    check_outputs,
    compile_args,
    data_args,
    network_args,
    non_negative_int,
    non_negative_number,
    plot_target,
    positive_int,
    positive_number,
)

EPILOG_SWEEP = """\
Each trial is one training run, exactly net.compile(seed=s).fit(train, ..., seed=s) with the trial's values;
the same trial run alone in one process gives bit-identical results.  Results go to DIR/results.jsonl (one line
per trial, written as it ends) and the models to DIR/models/<trial key>; running the same command again skips
the finished trials.  Without --scheduler, a local dask cluster of --workers processes (one thread each) on
127.0.0.1 is started for the sweep, every connection TLS with a certificate made for it alone (a client without
it is refused).  A cluster named with --scheduler tls://... takes --tls-ca-file, --tls-cert and --tls-key (or
dask's distributed.comm.tls configuration).  At most 100,000 trials per sweep.

examples:
  symbp sweep --layers fc30 --cost cross-entropy --eta 0.1,0.5,3 --lmbda 0,5 --batch-size 10,100 \\
              --seeds 0-4 --epochs 30 --out sweeps/ch3
  symbp sweep --layers fc30 --eta 0.1,0.5,3 --epochs 5 --limit 10000 --out sweeps/quick --workers 2
  symbp sweep ... --scheduler tls://10.0.0.5:8786 --tls-ca-file ca.pem --tls-cert client.pem --tls-key key.pem
                                                    # an existing dask cluster (dask scheduler / workers)
  symbp sweep ... --grid early_stopping=5,10         # any other keyword of Model.fit, as a list
  symbp vote --models sweeps/ch3/models --eval test  # the plurality vote of the sweep's models
"""

EPILOG_VOTE = """\
Each model votes for its largest output; the ensemble predicts the class with most votes (a tie goes to the
smallest class index).  Prints each member's accuracy and the ensemble's.

examples:
  symbp vote --models sweeps/ch6/models                       # every model saved in the folder
  symbp vote --models 'runs/net-*' runs/best --eval validation   # globs (quoted or not) and PATHs of --save
"""

#: the shape of one image of MNIST and Fashion-MNIST (channels, rows, columns)
IMAGE_SHAPE = (1, 28, 28)
_SCHEDULER = re.compile(r"(?:(?:tcp|tls|ucx|ws|wss)://)?(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):[0-9]{1,5}")


def _list(parse, what: str):
    def read(text: str) -> list:
        items = [t.strip() for t in text.split(",")]
        if not text.strip() or any(not t for t in items):
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {what}, got {text!r}")
        try:
            return [parse(t) for t in items]
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentTypeError(f"{exc} (in {text!r})") from None

    return read


def _seeds(text: str) -> list[int]:
    """``0-4`` (inclusive), ``0,3,7``, or both: ``0-2,10``; each seed once, in the order given; at most
    ``MAX_TRIALS`` seeds (the most trials a sweep may have)."""
    from symbp.sweep.engine import MAX_TRIALS

    if len(text) > 16 * MAX_TRIALS:
        raise argparse.ArgumentTypeError(f"more than {MAX_TRIALS:,} seeds (the most trials a sweep may have)")
    seeds: dict[int, None] = {}  # insertion-ordered, each seed once: linear in the number of seeds
    for part in [t.strip() for t in text.split(",")]:
        m = re.fullmatch(r"([0-9]{1,18})(?:-([0-9]{1,18}))?", part)
        if not m:
            raise argparse.ArgumentTypeError(f"expected seeds such as 0-4 or 0,3,7 (non-negative integers), "
                                             f"got {_short(text)!r}")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise argparse.ArgumentTypeError(f"expected a range LOW-HIGH with LOW <= HIGH, got {part!r}")
        if hi - lo >= MAX_TRIALS:
            raise argparse.ArgumentTypeError(f"{part!r} is more than {MAX_TRIALS:,} seeds (the most trials a sweep "
                                             "may have)")
        seeds.update(dict.fromkeys(range(lo, hi + 1)))
        if len(seeds) > MAX_TRIALS:
            raise argparse.ArgumentTypeError(f"more than {MAX_TRIALS:,} seeds (the most trials a sweep may have)")
    return list(seeds)


def _short(text: str, most: int = 60) -> str:
    return text if len(text) <= most else text[:most] + "..."


def _grid_value(text: str):
    """A number, true/false or null as JSON reads them; anything else is a string."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if value is None or isinstance(value, (bool, int, float)) else text


def _grid_item(text: str) -> tuple[str, list]:
    name, sep, values = text.partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or not values.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=V1,V2,... with NAME a keyword of Model.fit, got {text!r}")
    items = [t.strip() for t in values.split(",")]
    if any(not t for t in items):
        raise argparse.ArgumentTypeError(f"expected NAME=V1,V2,... (no empty value), got {text!r}")
    return name, [_grid_value(t) for t in items]


def _scheduler(text: str) -> str:
    if not _SCHEDULER.fullmatch(text):
        raise argparse.ArgumentTypeError(f"expected a scheduler address such as tcp://HOST:PORT, got {text!r}")
    return text


def add_commands(subparsers) -> None:
    """Add ``sweep`` and ``vote`` to the ``symbp`` sub-parsers."""

    s = subparsers.add_parser(
        "sweep", help="train every configuration of a grid (eta, lmbda, batch size, seeds, ...) on a dask cluster",
        description="Hyper-parameter sweep: one training run per trial of the grid (every combination of the\n"
                    "lists given), fanned out over dask.distributed workers; at the end, a table of the trials\n"
                    "sorted by accuracy, the best configuration and a plot.",
        epilog=EPILOG_SWEEP + "\n" + LAYER_SYNTAX, formatter_class=argparse.RawDescriptionHelpFormatter)
    network_args(s)
    g = s.add_argument_group("the grid (comma-separated lists: every combination is one trial)")
    g.add_argument("--eta", type=_list(positive_number, "positive numbers"), default=None, metavar="LIST",
                   help="learning rates η, e.g. 0.1,0.5,3 (default: fit's 3.0)")
    g.add_argument("--lmbda", type=_list(non_negative_number, "non-negative numbers"), default=None,
                   metavar="LIST", help="L2 regularisation λ (the book's network2), e.g. 0,5 (default: 0)")
    g.add_argument("--batch-size", type=_list(positive_int, "positive integers"), default=None, metavar="LIST",
                   help="mini-batch sizes, e.g. 10,100 (default: 10)")
    g.add_argument("--seeds", type=_seeds, default=[0], metavar="SEEDS",
                   help="seeds of initialisation and shuffling: 0-4, 0,3,7 or 0-2,10 (default: 0)")
    g.add_argument("--grid", type=_grid_item, action="append", default=[], metavar="NAME=LIST",
                   help="any other keyword of Model.fit and its values, e.g. early_stopping=5,10 (repeatable)")
    t = s.add_argument_group("training (the same for every trial)")
    t.add_argument("--epochs", type=non_negative_int, default=30, help="epochs of each trial (default: 30)")
    t.add_argument("--early-stop", type=positive_int, default=None, metavar="N",
                   help="stop a trial after N epochs without better accuracy; keep its best parameters")
    t.add_argument("--init", choices=["default", "large"], default="default",
                   help="weights N(0, 1/n_in) (default) or the book's chapter-1 N(0, 1) (large)")
    compile_args(t)
    d = s.add_argument_group("data and output")
    d.add_argument("--out", required=True, metavar="DIR",
                   help="folder of the results (DIR/results.jsonl) and the models (DIR/models/); required")
    data_args(d, "train on the first N training samples")
    d.add_argument("--eval", choices=["validation", "test"], default="validation",
                   help="data that ranks the trials (default: validation; keep test for the end)")
    d.add_argument("--plot", default=None, metavar="FILE",
                   help="write the plots to FILE (default: DIR/sweep.png when matplotlib is installed)")
    d.add_argument("--top", type=positive_int, default=20, metavar="N", help="rows of the table (default: 20)")
    d.add_argument("--no-progress", action="store_true", help="no progress bar")
    e = s.add_argument_group("engine (dask.distributed)")
    where = e.add_mutually_exclusive_group()
    where.add_argument("--scheduler", type=_scheduler, default=None, metavar="ADDRESS",
                       help="use the dask cluster of this scheduler, e.g. tcp://10.0.0.5:8786")
    where.add_argument("--workers", type=positive_int, default=None, metavar="N",
                       help="worker processes of the local cluster (default: one per CPU core; at most "
                            "two per core)")
    e.add_argument("--tls-ca-file", default=None, metavar="FILE",
                   help="with --scheduler tls://...: the CA certificate (PEM) the cluster's certificates are signed "
                        "by")
    e.add_argument("--tls-cert", default=None, metavar="FILE",
                   help="with --scheduler tls://...: this client's certificate (PEM; may hold the key too)")
    e.add_argument("--tls-key", default=None, metavar="FILE",
                   help="with --scheduler tls://...: this client's private key (PEM), if not in --tls-cert")
    e.add_argument("--retries", type=non_negative_int, default=1, metavar="N",
                   help="re-runs of a trial that raised (default: 1; a killed worker's trial is re-run anyway)")
    s.set_defaults(handler=cmd_sweep)

    v = subparsers.add_parser(
        "vote", help="the plurality vote of several saved models, with each model's accuracy",
        description="Ensemble of saved models (Model.save, symbp train --save, symbp sweep): each model's\n"
                    "accuracy and that of their plurality vote.",
        epilog=EPILOG_VOTE, formatter_class=argparse.RawDescriptionHelpFormatter)
    v.add_argument("--models", nargs="+", required=True, metavar="PATH",
                   help="saved models: PATH (of PATH.json + PATH.npz), PATH.json, a folder of them, or a glob")
    v.add_argument("--dataset", choices=["mnist", "fashion-mnist"], default="mnist", help="(default: mnist)")
    v.add_argument("--data-dir", default=None, metavar="DIR",
                   help="folder holding the dataset's four .gz files, or mnist/ and fashion-mnist/ with them "
                        "(default: $SYMBP_DATA_DIR, else the cache, else a download)")
    v.add_argument("--eval", choices=["test", "validation"], default="test",
                   help="the images voted on: test (10,000, the default) or validation (10,000)")
    v.set_defaults(handler=cmd_vote)


# -- sweep -------------------------------------------------------------------------------------------------------
def _grid(args) -> tuple[dict, dict]:
    """The grid and the fixed fit keywords of the arguments."""
    grid = {}
    for name in ("eta", "lmbda", "batch_size"):
        values = getattr(args, name)
        if values is not None:
            grid[name] = values
    for name, values in args.grid:
        if name in grid or name == "seed":
            raise ValueError(f"argument --grid: {name} is given twice (use --{name.replace('_', '-')} or "
                             "--seeds)" if name != "seed" else "argument --grid: give the seeds with --seeds")
        grid[name] = values
    grid["seed"] = args.seeds
    fixed = {}
    if args.early_stop is not None:
        if "early_stopping" in grid:
            raise ValueError("argument --early-stop: early_stopping is also in --grid")
        fixed["early_stopping"] = args.early_stop
    return grid, fixed


def check_sweep_args(args):
    """Every check that needs no data: the network, the grid (the number of trials), the folders."""
    from importlib.util import find_spec

    from symbp.data.datasets import N_CLASSES, N_TRAIN
    from symbp.sweep.engine import MAX_TRIALS, expand_grid

    if find_spec("distributed") is None:
        raise ValueError("symbp sweep runs on dask.distributed, which is not installed: pip install 'symbp[sweep]'")
    check_data_dir(args)
    if not args.out.strip():
        raise ValueError("argument --out: expected a folder name, got an empty one")
    if args.scheduler is None:
        from symbp.sweep.engine import check_workers

        try:
            check_workers(args.workers)
        except ValueError as exc:
            raise ValueError(f"argument --workers: {exc}") from None
    args.security = _tls_security(args)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"argument --out: {out} is a file: expected a folder")
    check_folder("--out", out)
    grid, fixed = _grid(args)
    count = math.prod(len(v) for v in grid.values())
    if count > MAX_TRIALS:  # the lists' product, before any trial is built
        raise ValueError(f"the grid has {count:,} trials ({' × '.join(str(len(v)) for v in grid.values())}), more "
                         f"than a sweep may have ({MAX_TRIALS:,}): split it into several sweeps")
    try:
        trials, _ = expand_grid(grid, args.epochs, fixed)
    except ValueError as exc:  # from the command line only --grid can give a name or value fit does not take
        raise ValueError(f"argument --grid: {exc}") from None
    n_train = N_TRAIN if args.limit is None else min(args.limit, N_TRAIN)
    for b in grid.get("batch_size", []):
        if b > n_train:
            raise ValueError(f"argument --batch-size: expected at most the number of training samples ({n_train}), "
                             f"got {b}")
    net = build_network(args)
    check_outputs(net, args, N_CLASSES)
    check_memory(net, args, args.dtype, data_rows=N_TRAIN + 20_000, eval_rows=10_000,
                  batch_size=max(grid.get("batch_size", [10])))
    if args.plot is not None:
        plot = plot_target(args.plot)
    else:
        plot = out / "sweep.png" if find_spec("matplotlib") is not None else None
    if args.scheduler is not None:  # last (it may wait up to the connection timeout), before any data is loaded
        from symbp.sweep.engine import probe_scheduler

        try:
            probe_scheduler(args.scheduler, args.security)
        except ValueError as exc:
            raise ValueError(f"argument --scheduler: {exc}") from None
    return net, grid, fixed, len(trials), plot


def _tls_security(args):
    """The ``Security`` of ``--tls-ca-file``, ``--tls-cert`` and ``--tls-key`` (None when none is given: dask's
    own configuration then applies); each file is checked to be a readable regular file."""
    import stat

    given = {name: getattr(args, name.replace("-", "_")) for name in ("tls-ca-file", "tls-cert", "tls-key")}
    if all(v is None for v in given.values()):
        return None
    name = next(n for n, v in given.items() if v is not None)
    if args.scheduler is None:
        raise ValueError(f"argument --{name}: the TLS options are for a cluster named with --scheduler (the local "
                         "cluster makes its own credentials)")
    if not args.scheduler.startswith("tls://"):
        raise ValueError(f"argument --{name}: the scheduler address must be tls://HOST:PORT with TLS, got "
                         f"{args.scheduler}")
    for name in ("tls-ca-file", "tls-cert"):
        if given[name] is None:
            raise ValueError(f"argument --{name}: needed with the other TLS options (--tls-ca-file and --tls-cert; "
                             "--tls-key when the key is not in the certificate file)")
    for name, value in given.items():
        if value is None:
            continue
        try:
            st = Path(value).stat()
        except OSError as exc:
            raise ValueError(f"argument --{name}: cannot read {value} ({exc.strerror or exc})") from None
        if not stat.S_ISREG(st.st_mode) or st.st_size > 1 << 20:
            raise ValueError(f"argument --{name}: {value} is not a PEM file (a regular file of at most 1 MiB)")
    from distributed.security import Security

    return Security(require_encryption=True, tls_ca_file=given["tls-ca-file"], tls_client_cert=given["tls-cert"],
                    tls_client_key=given["tls-key"])


def _console():
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 120, soft_wrap=False)


def cmd_sweep(args) -> int:
    from symbp.data import load_dataset
    from symbp.sweep.engine import sweep
    from symbp.sweep.report import best_trial, describe, plot_sweep, rich_table

    net, grid, fixed, n_trials, plot = check_sweep_args(args)
    t0 = time.perf_counter()
    splits = load_dataset(args.dataset, data_dir=args.data_dir, dtype=args.dtype)
    X, labels = splits.train
    if args.limit is not None:
        X, labels = X[: args.limit], labels[: args.limit]
    evaluation = splits.test if args.eval == "test" else splits.validation
    axes = " × ".join(f"{len(v)} {k}" for k, v in grid.items() if len(v) > 1) or "1 configuration"
    if args.scheduler:
        where = f"the dask cluster of {args.scheduler}"
    else:
        n = args.workers
        where = "a local cluster of " + (f"{n} worker process{'es' if n > 1 else ''}" if n else
                                         "one worker process per CPU core")
    print(f"{net!r}: {n_trials} trials ({axes}), {args.epochs} epochs each, {X.shape[0]} training samples, "
          f"ranked on {args.eval} ({evaluation[0].shape[0]}); data {time.perf_counter() - t0:.2f} s; on {where}")
    t0 = time.perf_counter()
    try:
        results = sweep(net, grid, (X, labels), evaluation, epochs=args.epochs if "epochs" not in grid else None,
                        out=args.out, client=args.scheduler, workers=args.workers,
                        security=getattr(args, "security", None), backend=args.backend,
                        dtype=args.dtype, init=args.init, retries=args.retries,
                        progress=False if args.no_progress else None, **fixed)
    except KeyboardInterrupt:
        print(f"interrupted: the finished trials are kept in {Path(args.out) / 'results.jsonl'}; run the same "
              "command again to run the others", file=sys.stderr)
        return 130
    wall = time.perf_counter() - t0
    console = _console()
    console.print(rich_table(results, top=args.top, title=f"{len(results)} trials, best first ({args.eval} "
                                                          "accuracy)"))
    best = best_trial(results)
    if best is not None:
        print(f"best: {describe(best)}: {args.eval} accuracy {best['best_accuracy']:.2%} at epoch "
              f"{best['best_epoch']} (model {best['model']})")
    print(f"sweep wall time {wall:.1f} s; results in {Path(args.out) / 'results.jsonl'}")
    if plot is not None and results:
        try:
            print(f"wrote {plot_sweep(results, plot, title=repr(net))}")
        except (OSError, ValueError) as exc:
            raise ValueError(f"argument --plot: cannot write the plots: {exc}") from exc
    if results.failed:
        print(f"{len(results.failed)} trials failed (see the warnings above); run the same command again to retry "
              "them", file=sys.stderr)
        return 1
    return 0


# -- vote --------------------------------------------------------------------------------------------------------
def model_paths(patterns) -> list[Path]:
    """The model manifests (``.json``) named by ``patterns``: PATH, PATH.json, folders (their ``*.json``) and
    globs; in the order given, each once.  ``ValueError`` naming ``--models`` when one names nothing."""
    found: list[Path] = []

    def add(path: Path):
        if path not in found:
            found.append(path)

    for text in patterns:
        matches = sorted(glob.glob(text)) if glob.has_magic(text) else [text]
        if not matches:
            raise ValueError(f"argument --models: no file matches {text}")
        for m in matches:
            p = Path(m)
            if p.is_dir():
                inside = sorted(q for q in p.glob("*.json") if q.is_file())
                if not inside:
                    raise ValueError(f"argument --models: the folder {p} holds no saved model (PATH.json)")
                for q in inside:
                    add(q)
            elif p.suffix in (".json", ".npz") and p.with_suffix(".json").is_file():
                add(p.with_suffix(".json"))
            elif p.with_name(p.name + ".json").is_file():
                add(p.with_name(p.name + ".json"))
            elif glob.has_magic(text) and p.suffix != ".json":
                continue  # a glob also matches the .npz beside each .json
            else:
                raise ValueError(f"argument --models: no saved model {p} (expected {p}.json and {p}.npz)")
    if not found:
        raise ValueError(f"argument --models: no saved model in {' '.join(patterns)}")
    return found


def _labels(paths: list[Path]) -> list[str]:
    """Each model's name: its grid values when it is a sweep's (DIR/models/<key> beside DIR/results.jsonl)."""
    from symbp.sweep.report import describe
    from symbp.sweep.store import load_results

    names, cache = [], {}
    for p in paths:
        folder = p.parent.parent
        if p.parent.name == "models" and (folder / "results.jsonl").is_file():
            if folder not in cache:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    cache[folder] = {r["key"]: r for r in load_results(folder)}
            record = cache[folder].get(p.stem)
            if record is not None:
                names.append(f"{p.stem[:8]} ({describe(record)})")  # describe: texts escaped
                continue
        names.append(str(p.with_suffix("")))
    return names


def cmd_vote(args) -> int:
    from rich.table import Table
    from rich.text import Text

    from symbp.data import load_dataset
    from symbp.sweep.report import safe_text
    from symbp.sweep.vote import MAX_MODELS, check_ensemble, select_members, vote_report
    from symbp.train.serialize import load

    check_data_dir(args)
    paths = model_paths(args.models)
    if len(paths) > MAX_MODELS:
        raise ValueError(f"argument --models: at most {MAX_MODELS} models (each is compiled, a few seconds apiece), "
                         f"got {len(paths)}")
    models = []
    for p in paths:
        try:
            models.append(load(p))
        except (OSError, ValueError) as exc:
            raise ValueError(f"argument --models: {exc}") from exc
    labels = dict(zip(map(str, paths), _labels(paths)))
    try:
        # the diverged ones left out (a warning each); the others must take MNIST's 1×28×28 images
        models, kept = select_members(models, [str(p) for p in paths], paths)
        check_ensemble(models, kept, IMAGE_SHAPE)
    except ValueError as exc:
        raise ValueError(f"argument --models: {exc}") from None
    dtype = models[0].dtype.name
    splits = load_dataset(args.dataset, data_dir=args.data_dir, dtype=dtype)
    data = splits.test if args.eval == "test" else splits.validation
    report = vote_report(models, data, names=[labels[k] for k in kept])
    table = Table(title=f"{len(models)} models on {args.dataset} {args.eval} ({report.n} images)")
    table.add_column("model")
    table.add_column("accuracy", justify="right")
    for name, acc in report.members:
        table.add_row(Text(safe_text(name)), f"{acc:.2%}")  # Text: a path is shown as it is, no [markup]
    table.add_row("[b]plurality vote[/b]", f"[b]{report.accuracy:.2%}[/b]")
    _console().print(table)
    best_name, best_acc = report.best_member
    print(f"ensemble of {len(models)}: {report.accuracy:.2%} on {args.eval} "
          f"({round(report.accuracy * report.n)} / {report.n}); best member {best_acc:.2%} "
          f"({100 * (report.accuracy - best_acc):+.2f} points)")
    return 0
