"""symbp's benchmark harness: one epoch of Nielsen's mini-batch SGD through several implementations.

Takes: a suite (``symbp/bench/suites.py``) or cases, MNIST or arrays.  Gives: ``run_suite`` (cross-check, then
interleaved timings, GFLOP/s against the measured matmul peak, compile/load seconds, memory; JSON, Markdown
and PNG reports; ``CrossCheckError`` when symbp disagrees with the reference, ``DivergedError`` when the case's
η makes training overflow), ``epoch_flops``, the ``Impl`` interface and its registry ``IMPLS``.  Command line:
``symbp bench --help`` (or ``python -m symbp.bench --help``).
"""

from symbp.bench.harness import (
    Case,
    CrossCheckError,
    DivergedError,
    Suite,
    cross_check,
    epoch_flops,
    load_suites,
    main,
    run_suite,
)
from symbp.bench.impls import IMPLS, Impl, ImplUnavailable, init_params

__all__ = [
    "IMPLS",
    "Case",
    "CrossCheckError",
    "DivergedError",
    "Impl",
    "ImplUnavailable",
    "Suite",
    "cross_check",
    "epoch_flops",
    "init_params",
    "load_suites",
    "main",
    "run_suite",
]
