"""The kernel program: a small IR between the derived equations and the backends.

Takes: nothing (data classes).  Gives: ``Program`` = named buffers + a list of steps.  Steps are:

- ``Gemm``    out ← α·op(A)·op(B) + β·out (matrix products with optional transposes; the SGD weight update
              is one of these, with α = −η/m and β = 1 − ηλ/n),
- ``Map``     a fused elementwise loop over a layer: expressions (sympy) read buffers element-wise
              ([i, j]), per column ([j], e.g. biases) or per row ([i]) and write buffers,
- ``RowSoftmax`` the normalised (softmax) activation of a row, with log-sum-exp stabilisation,
- ``RowSum``  a per-sample sum of an expression over a layer's units (softmax's S, the cost),
- ``ColSum``  out ← β·out + α·Σᵢ src[i, :] (bias gradients and updates: a batch reduction),
- ``Gather``  copy the rows ``order[start:start+m]`` of X and Y into the mini-batch buffers,
- ``Loop``    steps repeated for every mini-batch of an epoch.

Each step carries the equation it implements (``eq``), which the backends print as a comment.
Backends dispatch on the step type (``functools.singledispatch``), so a new backend is a new module.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp


@dataclass(frozen=True)
class Buffer:
    """A 2-d (rows × ``cols``) or 1-d (``rows is None``) array; ``rows`` names a row count variable."""

    name: str
    cols: int | None
    rows: str | None = "m"
    role: str = "scratch"  # "arg" (passed in) or "scratch" (allocated once per call)


@dataclass(frozen=True)
class Access:
    buffer: str
    index: str = "ij"  # "ij" element, "j" per column (bias), "i" per row


@dataclass
class Gemm:
    out: str
    A: str
    B: str
    trans_a: bool
    trans_b: bool
    alpha: str = "1.0"
    beta: str = "0.0"
    eq: str = ""


@dataclass
class Map:
    rows: str
    cols: int
    reads: dict[sp.Symbol, Access]
    writes: list[tuple[Access, sp.Expr]]
    eq: str = ""


@dataclass
class RowSoftmax:
    z: str
    a: str
    bias: str
    rows: str
    cols: int
    lse: str | None = None  # per-row log Σ exp z, kept when the cost needs log a = z − lse
    l1ma: str | None = None  # log(1 − a) per element, kept when the cost needs it (finite even when a rounds to 1)
    eq: str = ""


@dataclass
class RowSum:
    out: str  # per-row buffer, or "@total" to accumulate one scalar
    rows: str
    cols: int
    reads: dict[sp.Symbol, Access]
    expr: sp.Expr
    eq: str = ""


@dataclass
class ColSum:
    out: str
    src: str
    rows: str
    cols: int
    alpha: str = "1.0"
    beta: str = "0.0"
    eq: str = ""


@dataclass
class Gather:
    pairs: list[tuple[str, str]]  # (source array, mini-batch buffer)
    order: str = "order"
    start: str = "start"
    rows: str = "m"
    eq: str = "mini-batch: the rows order[start:start+m] of X and Y"


@dataclass
class Loop:
    body: list
    eq: str = ""


@dataclass
class Program:
    """One kernel: ``name``, its arguments, the buffers it allocates and its steps."""

    name: str
    args: list[str]
    arg_types: list[str]  # "X2", "V1" (1-d float), "I1" (1-d int64), "int", "float"
    buffers: list[Buffer]
    steps: list
    returns: str | None = None  # "total" (float) for the cost program, "bad" (bool) for sgd_epoch
    doc: str = ""
    row_vars: dict[str, str] = field(default_factory=dict)  # row count name → how to compute it
