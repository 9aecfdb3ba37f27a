"""What a benchmark run is given: cases and suites, the implementations of each kind, and the checked arguments.

Takes: case parameters, a suite file (``symbp/bench/suites.py`` by default), implementation names or classes,
thread and repeat counts, folders.  Gives: ``Case`` (one configuration, dense or conv) with ``case_flops`` and
``case_params`` (the parameters every implementation starts from), ``Suite`` and ``load_suites``/
``resolve_suite``, ``epoch_flops`` (exact matmul FLOPs of a dense epoch), ``one_hot`` and ``as_xy`` (the data as
X and one-hot Y), the registries (``REGISTRIES``, ``EXTRAS``, ``REFERENCES``, ``impl_registry``, ``resolve_impls``),
and ``check_threads``, ``check_repeats``, ``check_out_dir``, ``check_data_dir`` (each a ``ValueError`` naming the
argument, raised before anything runs).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from symbp.bench import machine
from symbp.bench.conv import (
    CONV_IMPLS,
    CONV_REFERENCE,
    ConvNet,
    SymbpConvNumpy,
    as_net,
    conv_epoch_flops,
    init_conv_params,
)
from symbp.bench.conv import COST as CONV_COST
from symbp.bench.impls import COSTS, DTYPES, EXTRA_IMPLS, IMPLS, REFERENCE, Impl, SymbpNumpy, backend_impls, init_params
from symbp.paths import check_writable_folder

FULL_EPOCH = 50_000  # MNIST's training set: ``s_per_50k`` scales a shorter epoch to it
#: implementation registries and cross-check references per kind of case
REGISTRIES: dict[str, dict[str, type[Impl]]] = {"dense": IMPLS, "conv": CONV_IMPLS}
#: implementations run only when named, per kind
EXTRAS: dict[str, dict[str, type[Impl]]] = {"dense": EXTRA_IMPLS, "conv": {}}
REFERENCES = {"dense": REFERENCE, "conv": CONV_REFERENCE}
SUITES_FILE = Path(__file__).resolve().with_name("suites.py")  # inside the package: installs carry it
DEFAULT_OUT = Path("results-local") / "bench"


@dataclasses.dataclass(frozen=True)
class Case:
    """One benchmark configuration.  ``samples=None`` means the whole training set (50,000 for MNIST).

    A dense case gives ``layers`` (sizes, sigmoid in every layer; cost "quadratic" unless given, η 3.0).  A
    conv case gives ``net`` instead (a name from ``symbp.bench.conv.NETS`` or a ``ConvNet``); its ``layers``
    become the net's flat activation sizes, its cost "log-likelihood" (the nets end in softmax) and η 0.1
    unless given.  ``kind`` is "dense" or "conv": it picks the implementations and the reference.
    """

    name: str
    layers: tuple[int, ...] = ()
    batch_size: int = 10
    dtype: str = "float64"
    cost: str | None = None
    samples: int | None = None
    eta: float | None = None
    lmbda: float = 0.0
    repeats: int = 5
    net: ConvNet | str | None = None

    @property
    def kind(self) -> str:
        return "dense" if self.net is None else "conv"

    @property
    def spec(self):
        """What implementations' ``setup`` takes: the layer sizes, or the ``ConvNet``."""
        return self.layers if self.net is None else self.net

    def __post_init__(self):
        if self.net is not None:
            try:
                net = as_net(self.net)
            except ValueError as exc:
                raise ValueError(f"case {self.name!r}: {exc}") from None
            if self.layers and tuple(int(n) for n in self.layers) != net.sizes:
                raise ValueError(f"case {self.name!r}: give layers or net, not both")
            object.__setattr__(self, "net", net)
            object.__setattr__(self, "layers", net.sizes)
            object.__setattr__(self, "cost", CONV_COST if self.cost is None else self.cost)
            object.__setattr__(self, "eta", 0.1 if self.eta is None else float(self.eta))
            if self.cost != CONV_COST:
                raise ValueError(f"case {self.name!r}: a conv net's cost is {CONV_COST!r}, got {self.cost!r}")
        else:
            object.__setattr__(self, "cost", "quadratic" if self.cost is None else self.cost)
            object.__setattr__(self, "eta", 3.0 if self.eta is None else float(self.eta))
        object.__setattr__(self, "lmbda", float(self.lmbda))
        if not (math.isfinite(self.eta) and self.eta > 0):
            raise ValueError(f"case {self.name!r}: eta must be a finite number > 0, got {self.eta:g}")
        if not (math.isfinite(self.lmbda) and self.lmbda >= 0):
            raise ValueError(f"case {self.name!r}: lmbda must be a finite number >= 0, got {self.lmbda:g}")
        object.__setattr__(self, "layers", tuple(int(n) for n in self.layers))
        if len(self.layers) < 2 or min(self.layers) < 1:
            raise ValueError(f"case {self.name!r}: layers must be >= 2 positive sizes, got {self.layers}")
        if self.dtype not in DTYPES:
            raise ValueError(f"case {self.name!r}: dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.net is None and self.cost not in COSTS:
            raise ValueError(f"case {self.name!r}: cost must be one of {COSTS}, got {self.cost!r}")
        if self.batch_size < 1 or self.repeats < 1 or (self.samples is not None and self.samples < self.batch_size):
            raise ValueError(f"case {self.name!r}: need batch_size >= 1, repeats >= 1, samples >= batch_size")

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["layers"] = list(self.layers)
        d["net"] = None if self.net is None else self.net.to_dict()
        return d


def case_flops(case: Case, n_samples: int) -> int:
    """Exact product FLOPs of one epoch of ``case`` over ``n_samples`` samples."""
    return epoch_flops(case.layers, n_samples) if case.net is None else conv_epoch_flops(case.net, n_samples)


def case_params(case: Case, dtype=None, seed=0):
    """The initial parameters every implementation of ``case`` starts from."""
    dtype = dtype or case.dtype
    return init_params(case.layers, dtype, seed) if case.net is None else init_conv_params(case.net, dtype, seed)


@dataclasses.dataclass(frozen=True)
class Suite:
    """A named list of cases.  ``quick`` suites prove the harness works; they are too small to judge speed."""

    name: str
    cases: tuple[Case, ...]
    description: str = ""
    quick: bool = False


def epoch_flops(layers: Sequence[int], n_samples: int) -> int:
    """Exact matmul FLOPs of one SGD epoch over ``n_samples`` samples (multiply and add counted separately).

    Per sample: forward 2*sum_l n_in*n_out, weight gradients 2*sum_l n_in*n_out, input gradients (delta^l from
    delta^{l+1}) 2*sum_{l>=2} n_in*n_out (layer 1 needs none).  Elementwise work, bias sums and updates not
    counted.
    """
    pairs = [int(a) * int(b) for a, b in zip(layers[:-1], layers[1:], strict=True)]
    return int(n_samples) * (4 * sum(pairs) + 2 * sum(pairs[1:]))


def one_hot(labels: np.ndarray, k: int, dtype="float64") -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.size and (labels.min() < 0 or labels.max() >= k):
        raise ValueError(f"labels must be a 1-d array of integers in [0, {k}), got shape {labels.shape}")
    Y = np.zeros((labels.size, k), dtype=dtype)
    Y[np.arange(labels.size), labels.astype(np.int64)] = 1
    return Y


def load_suites(path: str | os.PathLike | None = None) -> dict[str, Suite]:
    """The ``SUITES`` dict of a suite file (default: ``symbp/bench/suites.py``, shipped with the package)."""
    path = Path(path or os.environ.get("SYMBP_BENCH_SUITES") or SUITES_FILE)
    if not path.is_file():
        raise FileNotFoundError(
            f"suite definitions not found at {path}; symbp ships them as symbp/bench/suites.py "
            "(pass suites_file= / --suites-file, set SYMBP_BENCH_SUITES, or give cases directly)"
        )
    spec = importlib.util.spec_from_file_location("_symbp_bench_suites", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    suites = getattr(module, "SUITES", None)
    if not isinstance(suites, dict):
        raise TypeError(f"{path} must define SUITES, a dict of name -> Suite")
    return suites


def resolve_suite(spec, suites_file=None, quick=False) -> Suite:
    if spec is None:
        spec = "quick" if quick else "full"
    if isinstance(spec, Suite):
        return spec
    if isinstance(spec, Case):
        return Suite(spec.name, (spec,))
    if isinstance(spec, str):
        suites = load_suites(suites_file)
        if spec not in suites:
            raise KeyError(f"unknown suite {spec!r}; known: {', '.join(sorted(suites))}")
        return suites[spec]
    cases = tuple(spec)
    if not cases or not all(isinstance(c, Case) for c in cases):
        raise TypeError("give a suite name, a Suite, or a non-empty list of Case objects")
    return Suite("custom", cases)


def check_threads(threads, what: str = "threads") -> int:
    """``threads`` as an int between 1 and the cores this process may use (more only oversubscribes: BLAS
    allocates per-thread buffers, and the peak and the timings would measure the scheduler)."""
    n = int(threads)
    cores = machine.usable_cores()
    if n < 1:
        raise ValueError(f"{what} must be >= 1, got {n}")
    if n > cores:
        raise ValueError(f"{what} {n} is more than the {cores} CPU cores this process may use: give at most {cores}")
    return n


def check_repeats(repeats, what: str = "repeats") -> int | None:
    """``repeats`` as an int >= 1, or None (each case's own)."""
    if repeats is None:
        return None
    if int(repeats) < 1:
        raise ValueError(f"{what} must be >= 1 (timed epochs per implementation), got {repeats}")
    return int(repeats)


def check_out_dir(out_dir, what: str = "out_dir") -> Path:
    """The results folder: it exists and a file can be written in it, or it can be created (its nearest
    existing parent is a folder this process can write in).  Checked before anything runs; nothing is created."""
    text = os.fspath(out_dir)
    if not text:
        raise ValueError(f"{what}: the path is empty; give a folder for the results (default: {DEFAULT_OUT})")
    folder = Path(text).expanduser()
    check_writable_folder(folder, what)
    return folder


def check_data_dir(data_dir, what: str = "data_dir") -> Path:
    """An explicitly given data folder exists and holds MNIST's four files (directly or in ``mnist/``): it is
    never silently replaced by ``$SYMBP_DATA_DIR``, the cache or a download."""
    from symbp.data.registry import get_spec

    spec = get_spec("mnist")
    base = Path(data_dir).expanduser()
    elsewhere = "without it, MNIST is looked for in $SYMBP_DATA_DIR, then the cache, then downloaded"
    if not base.is_dir():
        kind = "is not a folder" if base.exists() else "does not exist"
        raise ValueError(f"{what}: {base} {kind} ({elsewhere})")
    for folder in (base, base / spec.name):
        if all((folder / name).is_file() for name in spec.filenames):
            return base
    raise ValueError(f"{what}: neither {base} nor {base / spec.name} holds the four {spec.title} files "
                     f"({', '.join(spec.filenames)}; {elsewhere})")


def as_xy(data, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    X, T = data
    X = np.asarray(X, dtype=np.float64)
    T = np.asarray(T)
    Y = one_hot(T, n_out) if T.ndim == 1 else T.astype(np.float64)
    if X.ndim != 2 or Y.shape != (X.shape[0], n_out):
        raise ValueError(
            f"data must be X (n, n_in) and labels (n,) or one-hot Y (n, {n_out}); got {X.shape} and {T.shape}"
        )
    return X, Y


def impl_registry(kind: str) -> dict[str, type[Impl]]:
    """The implementations of ``kind``, with an adapter for every symbp backend registered since import."""
    base = SymbpNumpy if kind == "dense" else SymbpConvNumpy
    return {**REGISTRIES[kind], **backend_impls(REGISTRIES[kind], base)}


def resolve_impls(impls=None, kind: str = "dense") -> list[type[Impl]]:
    """Implementation classes of ``kind`` ("dense" or "conv") from names (or classes); None: every registered
    implementation of that kind.  A name or class of another kind is left out; an unknown name is an error."""
    registry = impl_registry(kind)
    if impls is None:
        return list(registry.values())
    registry = {**registry, **EXTRAS[kind]}
    if isinstance(impls, str):
        impls = [s.strip() for s in impls.split(",") if s.strip()]
    out = []
    for item in impls:
        if isinstance(item, type) and issubclass(item, Impl):
            if getattr(item, "kind", "dense") == kind:
                out.append(item)
        elif item in registry:
            out.append(registry[item])
        elif not any(item in r for r in (*map(impl_registry, REGISTRIES), *EXTRAS.values())):
            known = dict.fromkeys(n for r in (*map(impl_registry, REGISTRIES), *EXTRAS.values()) for n in r)
            raise ValueError(f"unknown implementation {item!r}; known: {', '.join(known)}")
    names = [c.name for c in out]
    if len(set(names)) != len(names):
        raise ValueError(f"implementation names must be unique, got {names}")
    return out
