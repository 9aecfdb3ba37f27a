"""The kernel plan: which path every heavy step of a program takes, and its work.

Takes: kernel programs (``symbp.compile.program``) and the parameters' shapes.  Gives: ``Plan`` — one row per
product, convolution, window or declared-map step of each program (its layer block, what it computes, the
path: "BLAS gemm" (or "loops if m ≤ k, else BLAS gemm" for a product small enough that the backend runs
it as plain loops up to mini-batch k), "im2col + gemm", "window max", "generated loops", and FLOP per
sample), printable as a table (``model.plan()``, ``symbp show --plan``).  A declared map's step that runs as
generated loops says so, with its FLOP count: no silent slow path.  Elementwise maps are summed into one row
per program.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import sympy as sp

from symbp.compile.program import (
    Block,
    ColSum,
    Correlation,
    Gemm,
    IndexGather,
    IndexReduce,
    IndexScatterMax,
    Loop,
    Map,
    MapSums,
    ScatterMax,
    WindowMax,
)

_ROWS = ("m", "n")


@dataclass(frozen=True)
class PlanRow:
    kernel: str
    block: str
    what: str
    path: str
    flops: int  # per sample (for a gather: its loops' box, or the forward sum's count where that is smaller)


class Plan:
    """Rows of ``PlanRow``; ``str()`` is a table, ``generated()`` the rows that run as generated loops."""

    def __init__(self, rows: list[PlanRow], products: bool = True):
        self.rows = rows
        self.products = products  # False: the backend runs every declared map as its derived steps

    def generated(self) -> list[PlanRow]:
        return [r for r in self.rows if r.path.startswith("generated")]

    def __str__(self) -> str:
        out, kernel = [], None
        width = max((len(r.block) + len(r.what) for r in self.rows), default=20) + 4
        for r in self.rows:
            if r.kernel != kernel:
                kernel = r.kernel
                out.append(f"{kernel}  (FLOP per sample)")
            out.append(f"  {(r.block + '  ' + r.what).ljust(width)}{r.path:<34}{r.flops:>14,}")
        n = len(self.generated())
        why = (" (the declared maps no fast-path pass recognised)" if self.products else
               " (this backend runs every declared map as its derived steps, not as products)")
        out.append(f"{n} step{'s' if n != 1 else ''} as generated loops" + (why if n else ""))
        return "\n".join(out)

    def __repr__(self) -> str:
        return str(self)


def _extent(shape) -> int:
    return math.prod(int(s) for s in shape if s not in _ROWS)


def _ops(expr: sp.Expr) -> int:
    return max(1, int(sp.count_ops(expr)))


def plan(programs: dict, shapes: dict[str, tuple], small=None, products: bool = True) -> Plan:
    """The plan of ``programs``; ``shapes`` gives every parameter's shape by its kernel name (W1, b1, …);
    ``small(trans_a, trans_b)``: the backend runs products of that case with at most that many multiply-adds
    as plain loops (its ``small_product``), so a product of few enough per sample says up to which
    mini-batch it does; ``products``: the backend runs correlations and map sums as products (else the
    derived steps they replaced, which the plan then shows)."""
    rows: list[PlanRow] = []
    for name in ("forward", "backward", "sgd_epoch"):
        prog = programs.get(name)
        if prog is None:
            continue
        sizes = {b.name: b.shape for b in prog.buffers} | dict(shapes)
        sizes |= {f"nabla_{k.lower()}": v for k, v in shapes.items()} | {f"v{k.lower()}": v for k, v in shapes.items()}
        elementwise = [0]

        def visit(steps, block, kernel, sizes, elementwise):
            for s in steps:
                if isinstance(s, Block):
                    visit(s.steps, s.label, kernel, sizes, elementwise)
                elif isinstance(s, Loop):
                    visit(s.body, block, kernel, sizes, elementwise)
                elif isinstance(s, (Correlation, MapSums)) and not products:
                    replaced = [s.generic, getattr(s, "bias_generic", None)]
                    visit([r for r in replaced if r is not None], block, kernel, sizes, elementwise)
                else:
                    row = _row(kernel, block, s, sizes, elementwise, small)
                    if row is not None:
                        rows.append(row)

        visit(prog.steps, "", prog.name, sizes, elementwise)
        if elementwise[0]:
            rows.append(PlanRow(prog.name, "all layers", "elementwise maps and sums", "elementwise loops",
                                elementwise[0]))
    return Plan(rows, products)


def _row(kernel, block, s, sizes, elementwise, small=None):
    if isinstance(s, Gemm):
        out = sizes.get(s.out, ())
        if out and out[0] in _ROWS:  # rows × N output, contracting K (read off the parameter B)
            bshape = sizes.get(s.B, ())
            k = (bshape[1] if s.trans_b else bshape[0]) if len(bshape) == 2 and bshape[0] not in _ROWS else 1
            flops = 2 * _extent(out) * int(k)
        else:
            flops = 2 * _extent(out)
        limit = small(s.trans_a, s.trans_b) if small is not None else 0
        rows = limit // max(1, flops // 2)  # the largest mini-batch whose product stays a loop
        path = f"loops if m ≤ {rows}, else BLAS gemm" if rows else "BLAS gemm"
        return PlanRow(kernel, block, f"{s.out} = gemm({s.A}, {s.B})", path, flops)
    if isinstance(s, Correlation):
        (c, _, _), (kh, kw), (f, ho, wo) = s.in_shape, s.kernel, s.out_shape
        grouped = f", {s.groups} groups" if s.groups > 1 else ""
        bias = (", + bias" if s.role == "forward" else ", + bias sums") if s.bias else ""
        path = f"im2col + gemm ({s.group} samples per product)" if s.group > 1 else "im2col + gemm"
        return PlanRow(kernel, block, f"correlation {s.role} (stride {s.stride[0]}x{s.stride[1]}{grouped}{bias})",
                       path, 2 * f * c * kh * kw * ho * wo // s.groups)
    if isinstance(s, (WindowMax, ScatterMax)):
        c, h, w = s.shape
        what = "window max" if isinstance(s, WindowMax) else "scatter to the window maxima"
        return PlanRow(kernel, block, f"{what} {s.window[0]}x{s.window[1]}", "window max", c * h * w)
    if isinstance(s, IndexReduce):
        n = math.prod(s.out_shape) * math.prod(n for _, n in s.vars) * (_ops(s.body) + 1)
        what = f"{s.out} {'+' if s.accumulate else ''}= {s.kind} over ({','.join(v for v, _ in s.vars)})" \
            if s.vars else f"{s.out} {'+' if s.accumulate else ''}= reads (no reduction)"
        return PlanRow(kernel, block, what,
                       "generated loops (declared map)", n)
    if isinstance(s, IndexGather):
        # each (output, reduction) pair of the forward sum is visited at most once (the guards' ranges tighten
        # the loops), so the forward's count bounds the work too
        fwd = s.forward
        n = min(math.prod(s.target_shape) * math.prod(n for _, n in s.loops),
                math.prod(fwd.out_shape) * math.prod(n for _, n in fwd.vars)) * (_ops(s.factor) + 1)
        what = "input gradient" if s.per_sample else f"∂C/∂{s.target.removeprefix('nabla_')}"
        return PlanRow(kernel, block, f"{what} (gather)", "generated loops (derived gather)", n)
    if isinstance(s, IndexScatterMax):
        what = "input gradient" if s.per_sample else f"∂C/∂{s.target.removeprefix('nabla_')}"
        return PlanRow(kernel, block, f"{what} at the argmax", "generated loops (argmax scatter)",
                       math.prod(s.forward.out_shape))
    if isinstance(s, MapSums):
        return PlanRow(kernel, block, f"∂C/∂{s.out.removeprefix('nabla_')} (sums per map)", "map sums",
                       s.maps * s.n)
    if isinstance(s, (Map, ColSum)):
        elementwise[0] += s.cols if isinstance(s.cols, int) else 0
    return None
