"""symbp's benchmark harness: one epoch of Nielsen's mini-batch SGD through several implementations.

Takes: a suite (``symbp/bench/suites.py``) or cases, MNIST or arrays.  Gives: ``run_suite`` (cross-check, then
interleaved timings, GFLOP/s against the measured matmul peak, compile/load seconds, memory; JSON, Markdown
and PNG reports), ``epoch_flops``, the ``Impl`` interface and its registry ``IMPLS``.  Command line: ``python
-m symbp.bench --help``.
"""

from symbp.bench.harness import (
    Case,
    CrossCheckError,
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
