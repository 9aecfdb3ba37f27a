"""The kernel program: a small, shaped IR between the derived equations and the backends.

Takes: nothing (data classes).  Gives: ``Program`` = typed arguments + named buffers + a list of steps, and a
printer (``str(program)``: one line per step, readable like a jaxpr).  Buffers have a shape of any rank (each
extent an int or the name of a row count such as ``m``) and a dtype (``float`` = the model's float type,
``int64``, ``bool``, ``uint8``, ...); arguments are typed (``ArrayArg``/``ScalarArg``).  Steps:

- ``Gemm``    out ← α·op(A)·op(B) + β·out (matrix products with optional transposes; the SGD weight update
              is one of these, with α = −η/m and β = 1 − ηλ/n),
- ``Map``     a fused elementwise loop over (i < rows, j < cols): expressions (sympy) read buffers through
              ``Access``es whose index expressions name the axes (``("i", "j")`` an element, ``("j",)`` per
              column such as a bias, ``("i",)`` per row) and write buffers,
- ``RowSoftmax`` the normalised (softmax) activation of a row, with log-sum-exp stabilisation,
- ``RowSum``  a per-sample sum of an expression over a layer's units (softmax's S, the cost),
- ``ColSum``  out ← β·out + α·Σᵢ src[i, :] (bias gradients and updates: a batch reduction),
- ``Gather``  copy the rows ``order[start:start+m]`` of X and Y into the mini-batch buffers (8-bit input codes
              converted on the way: x = scale·X),
- ``IndexReduce``/``IndexGather``/``IndexScatterMax`` a declared map's terms and their derived adjoints,
- ``Correlation``/``MapSums``/``WindowMax``/``ScatterMax`` what the passes find in them: im2col + gemm, a
              map's bias sums, max-pooling of non-overlapping windows and its derivative,
- ``Update``  out[k] ← expr for every element k of same-shaped arrays of any rank (the update rules of
              regularisers and momentum: w ← w − (ηλ/n)·R′(w), v ← μ·v − ..., w ← w + v),
- ``Random``  out[i, j] = a uniform number in [0, 1) hashed from (seed, epoch, layer, sample id, unit j),
- ``Loop``    steps repeated for every mini-batch of an epoch,
- ``Block``   the steps of one layer's forward or backward stage, as a unit (see the numba backend).

Each step carries the equation it implements (``eq``), which the backends print as a comment.  Backends
dispatch on the step type (``functools.singledispatch``), so a new backend is a new module.  The internal
symbols that steps use in their expressions live in ``symbp.compile.symbols``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import singledispatch

import sympy as sp

#: dtype names a buffer or array argument may have; "float" is the model's float type
DTYPES = ("float", "float64", "float32", "int64", "bool", "uint8")


@dataclass(frozen=True)
class Buffer:
    """An array the kernel allocates once per call (``role="scratch"``): ``shape`` of any rank."""

    name: str
    shape: tuple
    dtype: str = "float"
    role: str = "scratch"

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ValueError(f"buffer {self.name}: unknown dtype {self.dtype!r}")

    @property
    def rank(self) -> int:
        return len(self.shape)


@dataclass(frozen=True)
class ArrayArg:
    """An array argument: ``ndim`` axes of ``dtype``; ``readonly`` for inputs (X, Y, order)."""

    name: str
    ndim: int
    dtype: str = "float"
    readonly: bool = False


@dataclass(frozen=True)
class ScalarArg:
    """A scalar argument: ``kind`` is "int" (int64) or "float" (float64)."""

    name: str
    kind: str


@dataclass(frozen=True)
class Access:
    """``buffer`` read or written at one index expression per axis (strings in the loop variables i, j)."""

    buffer: str
    index: tuple = ("i", "j")

    @property
    def elementwise(self) -> bool:
        return self.index == ("i", "j")


def elem(buffer: str) -> Access:
    return Access(buffer, ("i", "j"))


def per_col(buffer: str) -> Access:
    return Access(buffer, ("j",))


def per_row(buffer: str) -> Access:
    return Access(buffer, ("i",))


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
    #: sources read as integer codes: {source: the scalar argument that scales them} (x = xscale·X, in float64,
    #: then rounded to the buffer's dtype); such sources need no NaN/inf check
    scale: dict[str, str] = field(default_factory=dict)


@dataclass
class Random:
    """out[i, j] = uniform [0, 1) from the hash of (seed, epoch, layer, ids[start + i], j): the same number for
    the same sample and unit whatever the mini-batch order or backend."""

    out: str
    rows: str
    cols: int
    layer: int
    seed: str = "seed"
    epoch: str = "epoch"
    ids: str = "order"
    start: str = "start"
    eq: str = ""


@dataclass
class WindowMax:
    """out[r, c, i, j] = max over the (ph, pw) window at (i·ph, j·pw) of src[r, c, ...]; ``argmax`` (int64, if
    given) keeps the position p·pw + q of the first maximum in row-major order.  Found by ``passes`` in a
    declared max over non-overlapping windows."""

    out: str
    src: str
    argmax: str | None
    rows: str
    shape: tuple[int, int, int]  # the input's (C, H, W)
    window: tuple[int, int]
    eq: str = ""


@dataclass
class ScatterMax:
    """dst[r, c, y, x] = g[r, c, i, j] at each window's recorded maximum, 0 elsewhere (the derivative of max)."""

    dst: str
    g: str
    argmax: str
    rows: str
    shape: tuple[int, int, int]  # the input's (C, H, W)
    window: tuple[int, int]
    eq: str = ""


@dataclass
class Update:
    """``out[k] ← expr`` for every element k of ``out`` (flat index: any rank); ``reads`` maps the symbols of
    ``expr`` to arrays of the same shape read at k (``out`` itself among them for in-place rules), ``scalars``
    the symbols that are scalar arguments of the kernel (η·λ/n, μ) to their names."""

    out: str
    reads: dict[sp.Symbol, str]
    expr: sp.Expr
    scalars: dict[sp.Symbol, str] = field(default_factory=dict)
    eq: str = ""


@dataclass(frozen=True)
class Operand:
    """A read of ``buffer`` viewed with ``shape`` (after a leading rows axis when ``per_row``: activations, δ; the
    parameters have none) at ``index``, one structured affine expression (``symbp.layers.index_map.Affine``)
    per axis.  ``padded``: the index may fall outside, where the value is 0 (or, in a max, the position is
    left out)."""

    buffer: str
    shape: tuple[int, ...]
    index: tuple
    per_row: bool = True
    padded: bool = False


@dataclass
class IndexReduce:
    """out[r, o…] = (+=) Σ (or max) over ``vars`` of ``body`` for every row r < ``rows`` and output position o of
    ``out_shape`` (named ``out_vars``): a declared map's term.  ``body`` is a sympy expression in
    ``read_symbol(k)`` for ``operands[k]``.  A max keeps the flat position of each window's first maximum in
    ``argmax`` (int64, per row and output) when given."""

    out: str
    out_shape: tuple[int, ...]
    out_vars: tuple[str, ...]
    rows: str
    kind: str
    vars: tuple
    body: sp.Expr
    operands: tuple
    accumulate: bool = False
    argmax: str | None = None
    eq: str = ""


@dataclass
class IndexGather:
    """A derived adjoint (``symbp.derive.adjoint.Adjoint``) as a gather: for every target element t (and row r
    when ``per_sample``), acc = Σ over the rows (unless ``per_sample``) and ``loops``, where every guard holds, of
    g·factor; then target[t] = α·acc + β·target[t] (``accumulate``: target[t] += α·acc).  ``g`` is δ read at the
    adjoint's output index, ``operands`` the factor's reads.  ``forward`` (the term's ``IndexReduce``) and
    ``read`` give the same sum as a scatter over the forward positions, the form backends without loops use."""

    target: str
    target_shape: tuple[int, ...]
    target_vars: tuple[str, ...]
    per_sample: bool
    rows: str
    loops: tuple
    guards: tuple
    g: Operand
    factor: sp.Expr
    operands: tuple
    forward: IndexReduce
    read: int
    alpha: str = "1.0"
    beta: str = "0.0"
    accumulate: bool = False
    eq: str = ""


@dataclass
class IndexScatterMax:
    """A max term's adjoint: target[e(o, r*)] += α·g[o]·factor at r* = ``argmax`` of the window of o, for every row
    and output position; the target is zeroed first unless ``accumulate`` (per-row targets) or set to
    α·Σ + β·target (parameters, summed over the rows)."""

    target: str
    target_shape: tuple[int, ...]
    per_sample: bool
    forward: IndexReduce
    read: int
    g: Operand
    factor: sp.Expr
    argmax: str
    alpha: str = "1.0"
    beta: str = "0.0"
    accumulate: bool = False
    eq: str = ""


@dataclass
class Correlation:
    """A declared sum of correlation shape, found by ``passes.correlations``: z[f,i,j] = Σ_{c,p,q} W[f,c,p,q]·
    x[c, s₀·i + d₀·p + o₀, s₁·j + d₁·q + o₁] (strides s, dilations d, offsets o: a padding is a negative offset;
    reads outside x are 0); with ``groups`` G > 1 the channels and maps split into G groups, group g's maps reading
    only its channels (x[cg·g + c, …], W[mg·g + f, c, p, q]; a depthwise convolution when cg = mg = 1): the
    patches are the same, and each product is made per group on its block of rows.  ``role``: "forward" (im2col
    of each sample into ``cols``, then W·col), "input"
    (Wᵀ·δ into ``dcol``, then col2im into ``out``; ``accumulate`` adds to it) or "weights" (W ← α·Σ_r δ[r]·colᵣᵀ +
    β·W over the patches the forward pass kept).  ``generic`` is the step it replaces (what backends without
    the product form run)."""

    role: str
    generic: object
    x: str
    W: str
    out: str
    cols: str
    dcol: str | None
    rows: str
    in_shape: tuple[int, int, int]
    kernel: tuple[int, int]
    out_shape: tuple[int, int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    offset: tuple[int, int]
    alpha: str = "1.0"
    beta: str = "0.0"
    accumulate: bool = False
    cols_per_sample: bool = True
    #: samples per product (``passes.samples_per_product``), the same for a layer's three steps: where G > 1 the
    #: patches are laid side by side (``cols``: patch rows × samples·positions), W·[col₀ … col_G₋₁] makes G
    #: samples' maps at once (into ``dgroup``, then each sample's block into z), Wᵀ·[δ₀ … δ_G₋₁] their input
    #: gradients (δ copied into ``dgroup``, col2im of each block of ``dcol``) and Σ colsᵍ·δᵍᵀ the weights' sums
    group: int = 1
    eq: str = ""
    groups: int = 1
    #: a forward correlation's per-map bias P[f] (``passes``: the declared map's next term, added after each
    #: sample's product); a weights correlation's bias adjoint out_b[f] ← α_b·Σ_{r,i,j} δ[r,f,i,j] + β_b·out_b[f]
    #: (``passes``: the map sums that follow it, made by the same products: the patches then carry a last row
    #: of ones, so each product's last column is each map's sum); and the step it replaced (run by backends
    #: without the product form)
    bias: str | None = None
    bias_generic: object = None
    bias_alpha: str = "1.0"
    bias_beta: str = "0.0"
    #: the patches end with a row of ones (a weights step with ``bias`` reads them; the forward product skips it)
    ones_row: bool = False

    @property
    def dgroup(self) -> str:
        """The scratch of a step with ``group`` > 1: the maps (forward) or δ (backward) of a group of samples side
        by side, maps × (group·Ho·Wo)."""
        return "dgroup_" + self.cols.removeprefix("cols_")

    @property
    def sums(self) -> str:
        """The weights step's scratch: Σ_r colᵣ·δ[r]ᵀ (patches × maps) with the map sums as its last row."""
        return "wsum_" + self.cols.removeprefix("cols_")

    # -- geometry the numba backend's copies use --------------------------------------------------------
    def inside(self, axis: int) -> bool:
        """Does every kernel offset read only inside the input along ``axis`` (0 rows, 1 columns), for every
        output position (no padding reached)?"""
        n_out, size = self.out_shape[1 + axis], self.in_shape[1 + axis]
        s, d, o, k = self.stride[axis], self.dilation[axis], self.offset[axis], self.kernel[axis]
        return o >= 0 and s * (n_out - 1) + d * (k - 1) + o < size

    @property
    def phased(self) -> bool:
        """Is im2col made through the padded, column-phase-split sample (``phases``)?  Where the columns are
        strided or reach the padding (else each patch row is whole runs of input columns)."""
        return self.role == "forward" and (self.stride[1] != 1 or not self.inside(1))

    def phases(self) -> tuple[int, int, int, int, int]:
        """(top, left, Hp, s, Wq): the sample padded by ``top`` rows and ``left`` columns of zeros (to Hp rows,
        s·Wq columns), its columns split by phase: xph[c, y, φ, u] = x_padded[c, y, s·u + φ], s the column
        stride.  A patch row (c, p, q, i) is then the contiguous run xph[c, s_h·i + d_h·p + o_h + top, φ_q,
        u_q : u_q + Wo], φ_q + s·u_q = d_w·q + o_w + left."""
        (_, h, w), (kh, kw), (_, ho, wo) = self.in_shape, self.kernel, self.out_shape
        (sh, sw), (dh, dw), (oh, ow) = self.stride, self.dilation, self.offset
        top, left = max(0, -oh), max(0, -ow)
        hp = max(h + top, sh * (ho - 1) + dh * (kh - 1) + oh + top + 1)
        wp = max(w + left, sw * (wo - 1) + dw * (kw - 1) + ow + left + 1)
        return top, left, hp, sw, -(-wp // sw)


@dataclass
class MapSums:
    """A per-map bias's adjoint, found by ``passes``: out[f] = α·Σ_r Σ_k g[r, f, k] + β·out[f] over the ``n``
    positions of each of the ``maps`` maps (g read as (rows, maps, n)); numba sums each map in fixed-order
    partial sums, backends without it run ``generic`` (the derived gather it replaces)."""

    out: str
    g: str
    rows: str
    maps: int
    n: int
    generic: object
    alpha: str = "1.0"
    beta: str = "0.0"
    eq: str = ""


@dataclass
class Loop:
    body: list
    eq: str = ""


@dataclass
class Block:
    """The steps of one layer's stage (``label`` such as "layer 2 forward").  Backends may emit identical
    blocks of different layers as one shared function (numba: compile time then grows linearly with depth)."""

    label: str
    steps: list
    eq: str = ""


@dataclass
class Program:
    """One kernel: ``name``, its typed arguments, the buffers it allocates and its steps."""

    name: str
    args: list
    buffers: list[Buffer]
    steps: list
    returns: str | None = None  # "total" (float) for the cost program, "bad" (bool) for sgd_epoch
    doc: str = ""
    row_vars: dict[str, str] = field(default_factory=dict)  # row count name → how to compute it

    @property
    def arg_names(self) -> list[str]:
        return [a.name for a in self.args]

    def buffer(self, name: str) -> Buffer | None:
        return next((b for b in self.buffers if b.name == name), None)

    def __str__(self) -> str:
        return format_program(self)


# ---------------------------------------------------------------------------------------------- printer
def _type(t) -> str:
    if isinstance(t, ScalarArg):
        return t.kind
    short = {"float": "f", "float64": "f64", "float32": "f32", "int64": "i64", "bool": "bool", "uint8": "u8"}
    dims = ",".join(":" for _ in range(t.ndim))
    return f"{short[t.dtype]}[{dims}]" + (" ro" if t.readonly else "")


def _shape(b: Buffer) -> str:
    short = {"float": "f", "float64": "f64", "float32": "f32", "int64": "i64", "bool": "bool", "uint8": "u8"}
    return f"{short[b.dtype]}[{','.join(str(s) for s in b.shape)}]"


def _ref(acc: Access) -> str:
    return f"{acc.buffer}[{','.join(acc.index)}]"


def _expr(e, reads) -> str:
    names = {s: sp.Symbol(_ref(acc)) for s, acc in reads.items()}
    return str(e.xreplace(names))


@singledispatch
def describe_step(step, ind: str) -> list[str]:
    return [f"{ind}{type(step).__name__}"]


@describe_step.register
def _(step: Gemm, ind):
    op = f"{step.A}{'ᵀ' if step.trans_a else ''} · {step.B}{'ᵀ' if step.trans_b else ''}"
    rhs = op if step.alpha == "1.0" else f"({step.alpha})·{op}"
    if step.beta != "0.0":
        rhs = f"{rhs} + ({step.beta})·{step.out}"
    return [f"{ind}{step.out} = gemm {rhs}"]


@describe_step.register
def _(step: Map, ind):
    outs = ", ".join(_ref(w) for w, _ in step.writes)
    exprs = ", ".join(_expr(e, step.reads) for _, e in step.writes)
    return [f"{ind}{outs} = map[i<{step.rows}, j<{step.cols}] {exprs}"]


@describe_step.register
def _(step: RowSoftmax, ind):
    extra = "".join(f", {n}" for n in (step.lse, step.l1ma) if n)
    return [f"{ind}{step.a}{extra} = row_softmax[i<{step.rows}, j<{step.cols}] {step.z}[i,j] + {step.bias}[j]"]


@describe_step.register
def _(step: RowSum, ind):
    out = "total +=" if step.out == "@total" else f"{step.out}[i] ="
    return [f"{ind}{out} row_sum[i<{step.rows}, j<{step.cols}] {_expr(step.expr, step.reads)}"]


@describe_step.register
def _(step: ColSum, ind):
    rhs = f"Σᵢ {step.src}[i,:]" if step.alpha == "1.0" else f"({step.alpha})·Σᵢ {step.src}[i,:]"
    if step.beta != "0.0":
        rhs += f" + ({step.beta})·{step.out}"
    return [f"{ind}{step.out} = col_sum[i<{step.rows}] {rhs}"]


@describe_step.register
def _(step: Gather, ind):
    pairs = ", ".join(f"{dst}[i,:] = " + (f"{step.scale[src]}·" if src in step.scale else "")
                      + f"{src}[{step.order}[{step.start}+i],:]" for src, dst in step.pairs)
    return [f"{ind}gather[i<{step.rows}] {pairs}; bad = not finite"]


@describe_step.register
def _(step: Random, ind):
    return [f"{ind}{step.out}[i,j] = uniform[i<{step.rows}, j<{step.cols}] hash({step.seed}, {step.epoch}, "
            f"layer {step.layer}, {step.ids}[{step.start}+i], j)"]


@describe_step.register
def _(step: Block, ind):
    lines = [f"{ind}# {step.label}"]
    for s in step.steps:
        lines += describe_step(s, ind)
    return lines


@describe_step.register
def _(step: WindowMax, ind):
    keep = f", {step.argmax} = argmax" if step.argmax else ""
    return [f"{ind}{step.out}{keep} = window_max[r<{step.rows}] {step.src} {step.shape} by {step.window}"]


@describe_step.register
def _(step: ScatterMax, ind):
    return [f"{ind}{step.dst} = scatter_max[r<{step.rows}] {step.g} at {step.argmax} {step.shape} by {step.window}"]


@describe_step.register
def _(step: Update, ind):
    names = {s: sp.Symbol(f"{arr}[k]") for s, arr in step.reads.items()}
    names.update({s: sp.Symbol(n) for s, n in step.scalars.items()})
    return [f"{ind}{step.out}[k] = update[k<{step.out}.size] {step.expr.xreplace(names)}"]


def _operand(op: Operand) -> str:
    return f"{op.buffer}[{'r,' if op.per_row else ''}{','.join(str(e) for e in op.index)}]"


def _body(expr, operands) -> str:
    from symbp.layers.index_map import read_symbol

    return str(expr.xreplace({read_symbol(k): sp.Symbol(_operand(op)) for k, op in enumerate(operands)}))


@describe_step.register
def _(step: IndexReduce, ind):
    outs = ",".join(step.out_vars)
    red = ",".join(f"{v}<{n}" for v, n in step.vars)
    keep = f", {step.argmax} = argmax" if step.argmax else ""
    op = "+=" if step.accumulate else "="
    rhs = f"{step.kind}_{{{red}}} {_body(step.body, step.operands)}" if step.vars else _body(step.body, step.operands)
    return [f"{ind}{step.out}[r,{outs}]{keep} {op} index_{step.kind}[r<{step.rows}, ({outs})<{step.out_shape}] {rhs}"]


@describe_step.register
def _(step: IndexGather, ind):
    loops = ",".join(f"{v}<{n}" for v, n in ((("r", step.rows),) if not step.per_sample else ()) + tuple(step.loops))
    guards = "; ".join(g.text() for g in step.guards)
    term = f"{_operand(step.g)}·{_body(step.factor, step.operands)}"
    rhs = f"Σ_{{{loops}}} {term}" if loops else term
    rhs = rhs if step.alpha == "1.0" else f"({step.alpha})·{rhs}"
    if step.beta != "0.0":
        rhs += f" + ({step.beta})·{step.target}"
    lhs = f"{step.target}[{'r,' if step.per_sample else ''}{','.join(step.target_vars)}]"
    return [f"{ind}{lhs} {'+=' if step.accumulate else '='} gather {rhs}" + (f"   ({guards})" if guards else "")]


@describe_step.register
def _(step: IndexScatterMax, ind):
    read = step.forward.operands[step.read]
    return [f"{ind}{step.target}[...] {'+=' if step.accumulate else '='} scatter_max[r<{step.forward.rows}] "
            f"{_operand(step.g)}·{_body(step.factor, step.forward.operands)} at {_operand(read)} with "
            f"({','.join(v for v, _ in step.forward.vars)}) = {step.argmax}"]


@describe_step.register
def _(step: Correlation, ind):
    geo = f"stride {step.stride}, dilation {step.dilation}, offset {step.offset}"
    bias = f" + {step.bias}[f] after each product" if step.bias else ""
    return [f"{ind}correlation_{step.role}({step.x}, {step.W}, {step.out}) {geo}{bias}  # im2col + gemm of: "
            + describe_step(step.generic, "")[0]]


@describe_step.register
def _(step: Loop, ind):
    lines = [f"{ind}for k < order.shape[0] // m:  start = k·m"]
    for s in step.body:
        lines += describe_step(s, ind + "  ")
    return lines


def format_program(prog: Program) -> str:
    args = ", ".join(f"{a.name}: {_type(a)}" for a in prog.args)
    ret = {"total": "total: float", "bad": "bad: bool", None: "()"}[prog.returns]
    lines = [f"{prog.name}({args}) -> {ret}"]
    if prog.row_vars:
        lines.append("  " + "; ".join(f"{k} = {v}" for k, v in prog.row_vars.items()))
    if prog.buffers:
        lines.append("  buffers " + ", ".join(f"{b.name}: {_shape(b)}" for b in prog.buffers))
    for step in prog.steps:
        lines += describe_step(step, "  ")
    return "\n".join(lines)
