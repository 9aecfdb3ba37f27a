"""The numba backend's emitter: kernel programs → the source of ``nopython`` kernels.

Takes: a ``Program`` and a dtype.  Gives: ``numba_source`` — one ``@njit`` function per program (explicit loops
over elements; BLAS through ``runtime.batch_nt``/``batch_nn``/``batch_tn``; layer blocks shared between kernels
where that saves compile time), by ``numba_step``, one emitter per step type (``functools.singledispatch``).
Every step is preceded by a comment with the equation it implements; elementwise expressions go through
``sympy.cse`` first.  The steps of declared maps: loops with constant extents, every index an integer expression
of the loop variables (renamed ``i_<name>`` so no user name meets a kernel name), the adjoints as the derived
gathers (a loop per variable left after solving the index equations, bounds from the guards, divisibility as
tests, reads outside a padded input as 0); correlations as im2col + gemm with their copies written in
straight-line chunks; a map's bias sums in fixed-order partial sums.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import singledispatch

from symbp.compile.emit import (
    IND as _IND,
)
from symbp.compile.emit import (
    L1MA_DOC as _L1MA_DOC,
)
from symbp.compile.emit import (
    comment as _comment,
)
from symbp.compile.emit import (
    cse as _cse,
)
from symbp.compile.emit import (
    docstring as _docstring,
)
from symbp.compile.emit import (
    inplace as _inplace,
)
from symbp.compile.emit import (
    loop_lines as _loop,
)
from symbp.compile.emit import (
    plus_beta as _plus_beta,
)
from symbp.compile.emit import (
    preamble as _preamble,
)
from symbp.compile.emit import (
    scalar_ref as _scalar_ref,
)
from symbp.compile.printer import scalar_code
from symbp.compile.program import (
    ArrayArg,
    Block,
    ColSum,
    Gather,
    Gemm,
    Loop,
    Map,
    Program,
    Random,
    RowSoftmax,
    RowSum,
    ScalarArg,
    ScatterMax,
    Update,
    WindowMax,
)

#: runtime's product entry point for each (transpose A, transpose B) case that lowering makes: the mini-batch
#: products, cut into row chunks where this process's BLAS runs small products faster (``runtime.batch_nt``).
_GEMM = {(False, True): "batch_nt", (False, False): "batch_nn", (True, False): "batch_tn"}


# ---------------------------------------------------------------------------------------------- numba
@singledispatch
def numba_step(step, ind: str) -> list[str]:
    raise TypeError(f"no numba emitter for {type(step).__name__}")


@numba_step.register
def _(step: Gemm, ind):
    name = _GEMM[(step.trans_a, step.trans_b)]
    return [_comment(ind, step.eq), f"{ind}_rt.{name}({step.A}, {step.B}, {step.out}, {step.alpha}, {step.beta})"]


def _numba_elementwise(reads, writes_exprs, ind, targets):
    names = {sym: _scalar_ref(acc) for sym, acc in reads.items()}
    tmps, reduced = _cse(writes_exprs)
    lines = []
    for t, e in tmps:
        lines.append(f"{ind}{t} = {scalar_code(e, names)}")
    for target, e in zip(targets, reduced):
        lines.append(f"{ind}{target} = {scalar_code(e, names)}")
    return lines


@numba_step.register
def _(step: Map, ind):
    lines = [_comment(ind, step.eq), f"{ind}for i in range({step.rows}):", f"{ind}{_IND}for j in range({step.cols}):"]
    inner = ind + 2 * _IND
    local, reads, exprs = _inplace(step)
    lines += [f"{inner}{loc} = {_scalar_ref(step.reads[sym])}" for sym, loc in local.items()]
    lines += _numba_elementwise(reads, exprs, inner, [_scalar_ref(w) for w, _ in step.writes])
    return lines


@numba_step.register
def _(step: RowSoftmax, ind):
    i2, i3 = ind + _IND, ind + 2 * _IND
    i4 = i3 + _IND
    lines = [_comment(ind, step.eq), f"{ind}for i in range({step.rows}):",
             f"{i2}zmax = -np.inf",
             f"{i2}jmax = 0",
             f"{i2}for j in range({step.cols}):",
             f"{i3}{step.z}[i, j] += {step.bias}[j]",
             f"{i3}if {step.z}[i, j] > zmax:",
             f"{i4}zmax = {step.z}[i, j]",
             f"{i4}jmax = j",
             f"{i2}esum = 0.0",
             f"{i2}for j in range({step.cols}):",
             f"{i3}e = math.exp({step.z}[i, j] - zmax)",
             f"{i3}{step.a}[i, j] = e",
             f"{i3}esum += e",
             f"{i2}for j in range({step.cols}):",
             f"{i3}{step.a}[i, j] /= esum"]
    if step.lse or step.l1ma:
        lines.append(f"{i2}lse_i = zmax + math.log(esum)")
    if step.lse:
        lines.append(f"{i2}{step.lse}[i] = lse_i")
    if step.l1ma:
        lines += [f"{i2}# {line}" for line in _L1MA_DOC] + [
                  f"{i2}rmax = -np.inf",
                  f"{i2}for j in range({step.cols}):",
                  f"{i3}if j != jmax:",
                  f"{i4}rmax = max(rmax, {step.z}[i, j])",
                  f"{i2}rsum = 0.0",
                  f"{i2}for j in range({step.cols}):",
                  f"{i3}if j != jmax:",
                  f"{i4}rsum += math.exp({step.z}[i, j] - rmax)",
                  f"{i2}for j in range({step.cols}):",
                  f"{i3}{step.l1ma}[i, j] = math.log1p(-{step.a}[i, j])",
                  f"{i2}{step.l1ma}[i, jmax] = (rmax + math.log(rsum)) - lse_i"]
    return lines


@numba_step.register
def _(step: RowSum, ind):
    i2, i3 = ind + _IND, ind + 2 * _IND
    total = step.out == "@total"
    lines = [_comment(ind, step.eq), f"{ind}for i in range({step.rows}):", f"{i2}acc = 0.0",
             f"{i2}for j in range({step.cols}):"]
    lines += _numba_elementwise(step.reads, [step.expr], i3, ["term"])
    lines.append(f"{i3}acc += term")
    lines.append(f"{i2}total += acc" if total else f"{i2}{step.out}[i] = acc")
    return lines


@numba_step.register
def _(step: ColSum, ind):
    i2, i3 = ind + _IND, ind + 2 * _IND
    return [_comment(ind, step.eq), f"{ind}for j in range({step.cols}):", f"{i2}s = 0.0",
            f"{i2}for i in range({step.rows}):", f"{i3}s += {step.src}[i, j]",
            f"{i2}{step.out}[j] = {_plus_beta(f'{step.alpha} * s', f'{step.out}[j]', step.beta)}"]


@numba_step.register
def _(step: Gather, ind):
    i2 = ind + _IND
    i3 = i2 + _IND
    lines = [_comment(ind, f"{step.eq}; bad notes NaN/inf (v − v ≠ 0), at no cost while the rows are copied"),
             f"{ind}for i in range({step.rows}):", f"{i2}r = {step.order}[{step.start} + i]"]
    for src, dst in step.pairs:
        if src in step.scale:  # integer codes: always finite; converted in float64, rounded to the buffer's type
            lines += [f"{i2}for c in range({src}.shape[1]):", f"{i3}{dst}[i, c] = {src}[r, c] * {step.scale[src]}"]
            continue
        lines += [f"{i2}for c in range({src}.shape[1]):", f"{i3}v = {src}[r, c]", f"{i3}{dst}[i, c] = v",
                  f"{i3}bad |= (v - v) != 0.0"]
    return lines + [f"{ind}if bad:  # stop before this mini-batch touches the parameters", f"{i2}return bad"]


#: Elements per straight-line chunk in the copies of a convolution: all loads of a chunk are written before
#: its stores, so LLVM's SLP vectoriser turns them into vector moves without having to prove that the two
#: arrays do not overlap (a loop over j it would not vectorise: measured 7× slower for a 20×12×12 im2col).
LANES = 8


def chunked(n: int, ind: str, load, store) -> list[str]:
    """range(n) in straight-line chunks of LANES (a loop over the chunks, _j their start), then the rest:
    every chunk's loads (``load(k)`` lines for lane k) come before its stores."""
    full, i2 = n - n % LANES, ind + _IND
    lines = []
    if full:
        lines.append(f"{ind}for _j in range(0, {full}, {LANES}):" if full > LANES else f"{ind}_j = 0")
        body = [ln for k in range(LANES) for ln in load(k)] + [ln for k in range(LANES) for ln in store(k)]
        lines += [(i2 if full > LANES else ind) + ln for ln in body]
    if n > full:
        lines.append(f"{ind}_j = {full}")
        lines += [ind + ln for k in range(n - full) for ln in load(k)]
        lines += [ind + ln for k in range(n - full) for ln in store(k)]
    return lines


#: Partial sums of a map's bias adjoint: four vectors of float64 lanes, so consecutive additions do not wait on
#: each other (one vector of eight made the sums of the modern net's three conv layers 1.6× slower, measured).
SUM_LANES = 32


def map_sums(delta: str, out: str, alpha: str, beta: str, maps: int, n: int, rows: str, ind: str) -> list[str]:
    """out[f] = α·Σ_r,k δ[r, f·n + k] + β·out[f] over the n positions of each of the ``maps`` maps: SUM_LANES
    partial sums in float64 (each lane a fixed order, so the vectorised sum is the same in every process), added
    pairwise at the end."""
    lanes = SUM_LANES if n >= SUM_LANES else LANES
    i2, i3 = ind + _IND, ind + 2 * _IND
    i4 = i3 + _IND
    full = n - n % lanes
    lines = [_comment(ind, f"Σ over each map in {lanes} partial sums (float64; lane k: the elements k mod {lanes})"),
             f"{ind}for _f in range({maps}):", f"{i2}" + " = ".join(f"_s{k}" for k in range(lanes)) + " = 0.0",
             f"{i2}for _r in range({rows}):", f"{i3}_o = _f * {n}"]
    if full:
        lines += [f"{i3}for _k in range(_o, _o + {full}, {lanes}):"]
        lines += [f"{i4}_s{k} += {delta}[_r, _k + {k}]" for k in range(lanes)]
    lines += [f"{i3}_s{k} += {delta}[_r, _o + {full + k}]" for k in range(n - full)]
    terms = [f"_s{k}" for k in range(lanes)]
    while len(terms) > 1:  # pairwise, in a fixed order
        terms = [f"({terms[k]} + {terms[k + 1]})" for k in range(0, len(terms), 2)]
    acc = "_acc" if alpha == "1.0" else f"({alpha}) * _acc"
    return lines + [f"{i2}_acc = {terms[0]}", f"{i2}{out}[_f] = {_plus_beta(acc, f'{out}[_f]', beta)}"]


@numba_step.register
def _(step: WindowMax, ind):
    (c, h, w), (ph, pw) = step.shape, step.window
    i2, i3, i4, i5, i6, i7 = (ind + _IND * k for k in range(1, 7))
    lines = [_comment(ind, step.eq), f"{ind}_src = {step.src}.reshape(({step.rows}, {c}, {h}, {w}))",
             f"{ind}_out = {step.out}.reshape(({step.rows}, {c}, {h // ph}, {w // pw}))"]
    if step.argmax:
        lines.append(f"{ind}_arg = {step.argmax}.reshape(({step.rows}, {c}, {h // ph}, {w // pw}))")
    lines += [f"{ind}for r in range({step.rows}):", f"{i2}for c in range({c}):",
              f"{i3}for i in range({h // ph}):", f"{i4}for j in range({w // pw}):",
              f"{i5}best = _src[r, c, i * {ph}, j * {pw}]", f"{i5}at = 0",
              f"{i5}for p in range({ph}):", f"{i6}for q in range({pw}):",
              f"{i7}v = _src[r, c, i * {ph} + p, j * {pw} + q]",
              f"{i7}if v > best:  # strict: the first maximum in row-major order wins ties",
              f"{i7}    best = v", f"{i7}    at = p * {pw} + q",
              f"{i5}_out[r, c, i, j] = best"]
    if step.argmax:
        lines.append(f"{i5}_arg[r, c, i, j] = at")
    return lines


@numba_step.register
def _(step: ScatterMax, ind):
    (c, h, w), (ph, pw) = step.shape, step.window
    i2, i3, i4, i5 = (ind + _IND * k for k in range(1, 5))
    return [_comment(ind, step.eq), f"{ind}{step.dst}[...] = 0.0",
            f"{ind}_dst = {step.dst}.reshape(({step.rows}, {c}, {h}, {w}))",
            f"{ind}_g = {step.g}.reshape(({step.rows}, {c}, {h // ph}, {w // pw}))",
            f"{ind}_arg = {step.argmax}.reshape(({step.rows}, {c}, {h // ph}, {w // pw}))",
            f"{ind}for r in range({step.rows}):", f"{i2}for c in range({c}):",
            f"{i3}for i in range({h // ph}):", f"{i4}for j in range({w // pw}):",
            f"{i5}at = _arg[r, c, i, j]",
            f"{i5}_dst[r, c, i * {ph} + at // {pw}, j * {pw} + at % {pw}] = _g[r, c, i, j]"]


@numba_step.register
def _(step: Update, ind):
    arrays = list(dict.fromkeys([step.out, *step.reads.values()]))
    flat = {arr: f"_{arr}_flat" for arr in arrays}
    lines = [_comment(ind, step.eq)]
    lines += [f"{ind}{flat[arr]} = {arr}.reshape({arr}.size)" for arr in arrays]
    names = {sym: f"{flat[arr]}[k]" for sym, arr in step.reads.items()}
    names.update(step.scalars)
    lines.append(f"{ind}for k in range({step.out}.size):")
    lines.append(f"{ind}{_IND}{flat[step.out]}[k] = {scalar_code(step.expr, names)}")
    return lines


@numba_step.register
def _(step: Random, ind):
    i2, i3 = ind + _IND, ind + 2 * _IND
    return [_comment(ind, step.eq),
            f"{ind}key = _rt.stream_key({step.seed}, {step.epoch}, {_size(step.layer)})",
            f"{ind}for i in range({step.rows}):", f"{i2}r = {step.ids}[{step.start} + i]",
            f"{i2}for j in range({step.cols}):", f"{i3}{step.out}[i, j] = _rt.uniform(key, r, j)"]



@numba_step.register
def _(step: Loop, ind):
    return _loop(step, ind, numba_step)


def _numba_type(arg, dtype: str) -> str:
    """The numba type of one kernel argument: inputs (X, Y, order) read-only (writeable arrays convert to that
    type, read-only ones match), outputs and parameters C-contiguous writeable arrays."""
    if isinstance(arg, ScalarArg):
        return {"int": "int64", "float": "float64"}[arg.kind]
    assert isinstance(arg, ArrayArg)
    dt = dtype if arg.dtype == "float" else {"bool": "boolean"}.get(arg.dtype, arg.dtype)
    if arg.readonly:
        return f"RO({dt}, {arg.ndim})"
    return f"{dt}[{', '.join([':'] * (arg.ndim - 1) + ['::1'])}]"


@dataclass
class _Call:
    """A shared layer function called with this layer's buffers (made by ``_share_blocks``)."""

    fn: str
    args: list[str]
    label: str


@numba_step.register
def _(step: _Call, ind):
    return [f"{ind}# {step.label}: the shared {step.fn}", f"{ind}{step.fn}({', '.join(step.args)})"]


@numba_step.register
def _(step: Block, ind):
    lines = [f"{ind}# {step.label}"]
    for s in step.steps:
        lines += numba_step(s, ind)
    return lines


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _generalise(lines: list[str], names: set[str]) -> tuple[str, list[str]]:
    """The block's code with the program's names (buffers, arguments, row counts) replaced by parameters in
    order of first use, comments dropped; and those names.  Equal texts are the same code on other buffers."""
    code = [ln for ln in lines if not ln.lstrip().startswith("#")]
    used: list[str] = []

    def rename(mt):
        w = mt.group(0)
        if w not in names:
            return w
        if w not in used:
            used.append(w)
        return f"_p{used.index(w)}"

    return "\n".join(_IDENT.sub(rename, ln) for ln in code), used


def _param_names(used: list[str]) -> list[str]:
    """Readable parameter names for a shared function: the layer's names without their layer numbers."""
    out: list[str] = []
    for w in used:
        base = w.rstrip("0123456789") or w
        name, k = base, 2
        while name in out:
            name, k = f"{base}_{k}", k + 1
        out.append(name)
    return out


#: A layer block's code is emitted once, as a function, when this many layers have it; fewer copies stay inline
#: (measured: a separate function, compiled once per kernel program, costs more than 3 or 4 inline copies).
SHARE_FROM = 6


def _share_blocks(prog: Program, ind: str) -> tuple[list[str], list]:
    """Emit layer blocks that occur ``SHARE_FROM`` times or more with the same code (deep nets of equal layers) as one
    njit function each, and call it; unique blocks stay inline (no call overhead, the same code as before).
    Returns the helper functions' source lines and the program's steps with shared blocks replaced."""
    names = set(prog.arg_names) | {b.name for b in prog.buffers} | set(prog.row_vars) | {"m", "n", "start"}
    blocks: list[tuple[Block, str, list[str], list[str]]] = []

    def collect(steps, depth):
        for s in steps:
            if isinstance(s, Block):
                lines = numba_step(s, ind * depth)
                generic, used = _generalise([ln[len(ind * depth):] for ln in lines], names)
                blocks.append((s, generic, used, lines))
            elif isinstance(s, Loop):
                collect(s.body, depth + 1)

    collect(prog.steps, 1)
    counts: dict[str, list[str]] = {}
    for blk, generic, _, _ in blocks:
        counts.setdefault(generic, []).append(blk.label.split()[1])
    helpers, fn_of = [], {}
    for blk, generic, used, _ in blocks:
        if len(counts[generic]) < SHARE_FROM or generic in fn_of:
            continue
        fn = f"{prog.name}_{blk.label.split()[-1]}_{len(fn_of) + 1}"
        fn_of[generic] = fn
        params = _param_names(used)
        body = re.sub(r"\b_p(\d+)\b", lambda mt, ps=params: ps[int(mt.group(1))], generic)
        helpers += ["@njit(cache=True, nogil=True, error_model=\"numpy\")",
                    f"def {fn}({', '.join(params)}):",
                    f"    # the {blk.label.split()[-1]} step shared by layers {', '.join(counts[generic])}: the same "
                    "code for each, called with that layer's buffers"]
        helpers += [f"    {ln}" for ln in body.splitlines()] + ["", ""]

    def replace(steps):
        out = []
        for s in steps:
            if isinstance(s, Block):
                generic, used = next((g, u) for b, g, u, _ in blocks if b is s)
                out.append(_Call(fn_of[generic], used, s.label) if generic in fn_of else s)
            elif isinstance(s, Loop):
                out.append(Loop(replace(s.body), s.eq))
            else:
                out.append(s)
        return out

    return helpers, (replace(prog.steps) if fn_of else prog.steps)


def _size(s) -> str:
    """A size passed to a runtime helper: a constant as ``np.int64(n)``, else numba would type it as the
    literal n and compile the helper again for every size (measured: a new network structure recompiled
    ``aligned_zeros`` for each of its buffers, about 0.1 s each)."""
    return f"np.int64({s})" if isinstance(s, int) else str(s)


def _aligned_alloc(b, dt: str) -> str | None:
    """Matrices and vectors on 64-byte boundaries: numba's own arrays start 32 bytes off one, and a 64-byte
    vector load across two cache lines costs twice."""
    if b.rank == 2:
        return f"_rt.aligned_zeros({_size(b.shape[0])}, {_size(b.shape[1])}, np.{dt})"
    if b.rank == 1:
        return f"_rt.aligned_zeros1({_size(b.shape[0])}, np.{dt})"
    return None


def numba_source(prog: Program, dtype: str) -> str:
    """The numba kernel for ``prog`` (eagerly compiled for ``dtype`` with ``cache=True``), preceded by the
    functions its repeated layers share."""
    arg_t = ", ".join(_numba_type(arg, dtype) for arg in prog.args)
    ret = {"total": "float64", "bad": "boolean", None: "void"}[prog.returns]
    helpers, steps = _share_blocks(prog, "    ")
    lines = helpers + [f"@njit({ret}({arg_t}), cache=True, nogil=True, error_model=\"numpy\")",
                       f"def {prog.name}({', '.join(prog.arg_names)}):",
                       _docstring(prog.doc)]
    lines += _preamble(prog, dtype, _aligned_alloc)
    for step in steps:
        lines += numba_step(step, "    ")
    if prog.returns:
        lines.append(f"    return {prog.returns}")
    return "\n".join(lines) + "\n"


__all__ = ["chunked", "map_sums", "numba_source", "numba_step"]
