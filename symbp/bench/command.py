"""The ``bench`` command line's parser: its arguments and the checks of their values.

Takes: an ``argparse`` parser to fill (or none) and the ``prog`` its usage names.  Gives: ``build_parser``;
each argument's value is checked as it is parsed (whole numbers, thread counts within the usable cores, layer
lists, finite numbers), a bad one an ``argparse`` error naming it.  ``symbp.bench.harness.run_from_args`` runs
what the parsed arguments ask for.
"""

from __future__ import annotations

import argparse
import math

from symbp.bench.cases import DEFAULT_OUT, check_threads
from symbp.bench.conv import NETS
from symbp.bench.impls import COSTS, DTYPES, EXTRA_IMPLS, IMPLS


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _at_least_one(text: str) -> int:
    n = _whole(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {n}")
    return n


def _threads(text: str) -> int:
    try:
        return check_threads(_whole(text), "thread count")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _layer_list(text: str) -> tuple[int, ...]:
    """``784,30,10`` -> (784, 30, 10); a bad list is named with the entry that is wrong."""
    sizes = []
    for i, item in enumerate(text.split(","), start=1):
        item = item.strip()
        if not item:
            raise argparse.ArgumentTypeError(f"invalid layer list {text!r}: entry {i} is empty "
                                             "(give sizes such as 784,30,10)")
        try:
            sizes.append(int(item))
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid layer list {text!r}: entry {i}, {item!r}, is not a whole "
                                             "number (give sizes such as 784,30,10)") from None
        if sizes[-1] < 1:
            raise argparse.ArgumentTypeError(f"invalid layer list {text!r}: entry {i} is {sizes[-1]}; layer sizes "
                                             "must be >= 1")
    if len(sizes) < 2:
        raise argparse.ArgumentTypeError(f"invalid layer list {text!r}: give at least 2 sizes, input and output "
                                         "(such as 784,30,10)")
    return tuple(sizes)


def _finite(text: str, *, positive: bool) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(x) or (x <= 0 if positive else x < 0):
        raise argparse.ArgumentTypeError(f"must be a finite number {'> 0' if positive else '>= 0'}, got {text}")
    return x


def build_parser(parser: argparse.ArgumentParser | None = None, prog: str | None = None) -> argparse.ArgumentParser:
    """The ``bench`` command line; pass a (sub)parser to add the arguments to it, or the ``prog`` its usage names
    (``symbp bench`` when run through the ``symbp`` command; default ``python -m symbp.bench``)."""
    p = parser or argparse.ArgumentParser(
        prog=prog or "python -m symbp.bench", description="Benchmark one SGD epoch across implementations."
    )
    p.add_argument("--suite", help="suite name from symbp/bench/suites.py (default: full, or quick with --quick)")
    p.add_argument("--quick", action="store_true", help="the quick suite; small peak matmul; no cold-compile probes")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="output folder (default: %(default)s)")
    p.add_argument("--data-dir", help="folder holding mnist/ (default: $SYMBP_DATA_DIR or symbp's default)")
    p.add_argument("--impl", help=f"comma-separated implementations (default: all): {', '.join(IMPLS)}; "
                   f"only when named: {', '.join(EXTRA_IMPLS)}")
    p.add_argument("--repeats", type=_at_least_one, help="timed epochs per implementation, >= 1 (overrides the "
                   "suite; default: each case's, 5 for a custom case)")
    p.add_argument("--threads", type=_threads, default=1,
                   help="BLAS/numba/torch threads, at most the cores this process may use (default: 1)")
    p.add_argument(
        "--cold",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="measure cold compile / warm load of symbp, JAX and PyTensor in fresh processes (default: on unless "
        "--quick)",
    )
    p.add_argument("--no-memory", action="store_true", help="skip the memory probe epochs")
    p.add_argument("--suites-file", help="a suites.py defining SUITES (default: symbp/bench/suites.py)")
    p.add_argument("--list", action="store_true", help="list suites and implementations, then exit")
    g = p.add_argument_group("custom case (instead of a suite)")
    g.add_argument("--layers", type=_layer_list, help="e.g. 784,30,10 (sigmoid in every layer)")
    g.add_argument("--net", help=f"a conv net instead of --layers: {', '.join(NETS)}")
    g.add_argument("--batch-size", type=_at_least_one, default=10)
    g.add_argument("--dtype", default="float64", choices=DTYPES)
    g.add_argument("--cost", choices=COSTS, help="dense nets: quadratic (default) or cross-entropy")
    g.add_argument("--samples", type=_at_least_one, help="training samples per epoch (default: all 50,000; with a "
                   "suite: overrides its cases', and conv tables give seconds per 50k scaled)")
    g.add_argument("--eta", type=lambda t: _finite(t, positive=True),
                   help="a finite number > 0 (default: 3.0 for dense nets, 0.1 for conv nets)")
    g.add_argument("--lmbda", type=lambda t: _finite(t, positive=False), default=0.0, help="a finite number >= 0")
    return p
