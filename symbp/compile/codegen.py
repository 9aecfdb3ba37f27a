"""Program → Python source text, one emitter per backend and step type (``functools.singledispatch``).

Takes: a ``Program``.  Gives: readable source for a numba ``nopython`` kernel (explicit loops over
elements, BLAS through ``runtime.gemm_nt``/``gemm_nn``/``gemm_tn``) or for plain vectorised NumPy.
Every step is preceded by a comment with the equation it implements; elementwise expressions go through
``sympy.cse`` first, so the activation and its derivative computed in one pass share their common
subexpressions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache, singledispatch

import sympy as sp

from symbp.compile.printer import array_code, scalar_code
from symbp.compile.program import (
    Access,
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

_IND = "    "
#: runtime's product entry point for each (transpose A, transpose B) case that lowering makes.
_GEMM = {(False, True): "gemm_nt", (False, False): "gemm_nn", (True, False): "gemm_tn"}
#: How both backends compute log(1 − a) of a softmax row (the comment above that block).
_L1MA_DOC = ("log(1 − aⱼ): log1p(−aⱼ) off the row's maximum (there aⱼ ≤ ½); at the maximum, the",
             "log-sum-exp of the other z minus the row's, finite even when aⱼ rounds to 1")


def comment_text(text: str) -> str:
    """``text`` made safe for a one-line ``#`` comment: characters that could end the line (newlines, other
    control and separator characters) are written as escapes, so a comment can never become code."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in str(text))


def _comment(ind: str, text: str) -> str:
    return f"{ind}# {comment_text(text)}"


def _docstring(text: str) -> str:
    """A docstring line for a generated function, as a string literal (``repr``): it cannot end early."""
    return f"    {text + '.'!r}"


def _scalar_ref(acc: Access) -> str:
    """The element an access reads in a loop over (i, j): one index expression per axis."""
    return f"{acc.buffer}[{', '.join(acc.index)}]"


#: How NumPy code reads an access over a whole (rows × cols) block, by index pattern: broadcasting does the rest.
_ARRAY_REFS = {("i", "j"): "{}", ("j",): "{}", ("i",): "{}[:, None]"}


def _array_ref(acc: Access) -> str:
    try:
        return _ARRAY_REFS[tuple(acc.index)].format(acc.buffer)
    except KeyError:
        raise NotImplementedError(f"NumPy backend: no array form for {acc.buffer}[{', '.join(acc.index)}]") from None


def _plus_beta(rhs: str, out: str, beta: str) -> str:
    """rhs + β·out, written once for every backend and step (β = 0: nothing added, as BLAS does)."""
    if beta == "0.0":
        return rhs
    return f"{rhs} + {out}" if beta == "1.0" else f"{rhs} + ({beta}) * {out}"


def _inplace(step: Map):
    """A map that writes a buffer it reads (z += b) reads it into a local first, so every write sees the old
    value: (locals, the other reads, the write expressions in the locals)."""
    local = {sym: sp.Symbol(f"_{sym.name}") for sym, acc in step.reads.items()
             if acc.elementwise and any(acc.buffer == w.buffer for w, _ in step.writes)}
    reads = {s: acc for s, acc in step.reads.items() if s not in local}
    return local, reads, [e.xreplace(local) for _, e in step.writes]


def _cse(exprs: list[sp.Expr]):
    tmps, reduced = _cse_cached(tuple(exprs))
    return list(tmps), list(reduced)  # the callers' own lists: the cached ones stay as they are


@lru_cache(maxsize=4096)  # a deep network repeats the same few maps
def _cse_cached(exprs: tuple[sp.Expr, ...]):
    tmps, reduced = sp.cse(list(exprs), symbols=sp.numbered_symbols("t"), optimizations="basic")
    return tmps, reduced


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


def _chunked(n: int, ind: str, load, store) -> list[str]:
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


def _map_sums(delta: str, out: str, alpha: str, beta: str, maps: int, n: int, rows: str, ind: str) -> list[str]:
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
            f"{ind}key = _rt.stream_key({step.seed}, {step.epoch}, {step.layer})",
            f"{ind}for i in range({step.rows}):", f"{i2}r = {step.ids}[{step.start} + i]",
            f"{i2}for j in range({step.cols}):", f"{i3}{step.out}[i, j] = _rt.uniform(key, r, j)"]


def _loop(step: Loop, ind: str, emit) -> list[str]:
    lines = [_comment(ind, step.eq), f"{ind}for k in range(order.shape[0] // m):", f"{ind}{_IND}start = k * m"]
    for s in step.body:
        lines += emit(s, ind + _IND)
    return lines


def _np_dtype(buffer_dtype: str, dtype: str) -> str:
    return dtype if buffer_dtype == "float" else {"bool": "bool_"}.get(buffer_dtype, buffer_dtype)


def _preamble(prog: Program, dtype: str, aligned: bool = False) -> list[str]:
    """Row counts and the scratch buffers, allocated once per call (for numba on 64-byte boundaries: numba's
    own arrays start 32 bytes off one, and a 64-byte vector load across two cache lines costs twice)."""
    lines = [f"    {var} = {how}" for var, how in prog.row_vars.items()]
    for b in prog.buffers:
        dt = _np_dtype(b.dtype, dtype)
        if aligned and b.rank in (1, 2):
            alloc = f"aligned_zeros({b.shape[0]}, {b.shape[1]}" if b.rank == 2 else f"aligned_zeros1({b.shape[0]}"
            lines.append(f"    {b.name} = _rt.{alloc}, np.{dt})")
            continue
        shape = "(" + ", ".join(str(s) for s in b.shape) + ("," if b.rank == 1 else "") + ")"
        lines.append(f"    {b.name} = np.zeros({shape}, dtype=np.{dt})")
    if prog.returns:
        lines.append(f"    {prog.returns} = {'False' if prog.returns == 'bad' else '0.0'}")
    return lines


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


def numba_source(prog: Program, dtype: str) -> str:
    """The numba kernel for ``prog`` (eagerly compiled for ``dtype`` with ``cache=True``), preceded by the
    functions its repeated layers share."""
    arg_t = ", ".join(_numba_type(arg, dtype) for arg in prog.args)
    ret = {"total": "float64", "bad": "boolean", None: "void"}[prog.returns]
    helpers, steps = _share_blocks(prog, "    ")
    lines = helpers + [f"@njit({ret}({arg_t}), cache=True, nogil=True, error_model=\"numpy\")",
                       f"def {prog.name}({', '.join(prog.arg_names)}):",
                       _docstring(prog.doc)]
    lines += _preamble(prog, dtype, aligned=True)
    for step in steps:
        lines += numba_step(step, "    ")
    if prog.returns:
        lines.append(f"    return {prog.returns}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- numpy
@singledispatch
def numpy_step(step, ind: str) -> list[str]:
    raise TypeError(f"no NumPy emitter for {type(step).__name__}")


@numpy_step.register
def _(step: Gemm, ind):
    """In place, no more temporaries than the product itself: at mini-batch 10 each NumPy call costs about a
    microsecond, so the count of calls is the NumPy backend's speed.  The arithmetic is BLAS's α·(A·B) + β·C."""
    a = f"{step.A}.T" if step.trans_a else step.A
    b = f"{step.B}.T" if step.trans_b else step.B
    lines = [_comment(ind, step.eq)]
    scale = [] if step.alpha == "1.0" else [f"{ind}{{}} *= ({step.alpha})"]
    if step.beta == "0.0":
        lines.append(f"{ind}np.matmul({a}, {b}, out={step.out})")
        return lines + [line.format(step.out) for line in scale]
    lines.append(f"{ind}_p = {a} @ {b}")
    lines += [line.format("_p") for line in scale]
    if step.beta != "1.0":  # e.g. the weight decay 1 − ηλ/n, a run-time value: skipped when it is 1
        lines += [f"{ind}if ({step.beta}) != 1.0:", f"{ind}{_IND}{step.out} *= ({step.beta})"]
    return lines + [f"{ind}{step.out} += _p"]


@numpy_step.register
def _(step: Map, ind):
    """Whole-array expressions make new arrays, so a map that writes a buffer it reads (z += b) needs no copy
    of it: only a result that would be read after that buffer is written is computed first."""
    names = {sym: _array_ref(acc) for sym, acc in step.reads.items()}
    written = {w.buffer for w, _ in step.writes}
    tmps, reduced = _cse([e for _, e in step.writes])
    lines = [_comment(ind, step.eq)] + [f"{ind}{t} = {array_code(e, names)}" for t, e in tmps]
    rhs = []
    for k, e in enumerate(reduced):
        code = array_code(e, names)
        reads_written = any(sym in step.reads and step.reads[sym].buffer in written for sym in e.free_symbols)
        if k and reads_written:  # a buffer written by an earlier target: evaluate before any is written
            lines.append(f"{ind}_r{k} = " + (f"np.array({code})" if e.is_Symbol else code))  # a new array
            code = f"_r{k}"
        rhs.append(code)
    lines += [f"{ind}{w.buffer}[...] = {code}" for (w, _), code in zip(step.writes, rhs)]
    return lines


@numpy_step.register
def _(step: RowSoftmax, ind):
    lines = [_comment(ind, step.eq), f"{ind}{step.z} += {step.bias}",
             f"{ind}zmax = {step.z}.max(axis=1, keepdims=True)",
             f"{ind}e = np.exp({step.z} - zmax)", f"{ind}esum = e.sum(axis=1, keepdims=True)",
             f"{ind}{step.a}[...] = e / esum"]
    if step.lse or step.l1ma:
        lines.append(f"{ind}lse_rows = zmax + np.log(esum)")
    if step.lse:
        lines.append(f"{ind}{step.lse}[...] = lse_rows[:, 0]")
    if step.l1ma:
        lines += [f"{ind}# {line}" for line in _L1MA_DOC] + [
                  f"{ind}rows_ = np.arange({step.z}.shape[0])",
                  f"{ind}jmax = {step.z}.argmax(axis=1)",
                  f"{ind}rest = {step.z}.copy()",
                  f"{ind}rest[rows_, jmax] = -np.inf",
                  f"{ind}rmax = rest.max(axis=1, keepdims=True)",
                  f"{ind}rsum = np.exp(rest - rmax).sum(axis=1, keepdims=True)",
                  f"{ind}{step.l1ma}[...] = {step.a}",
                  f"{ind}{step.l1ma}[rows_, jmax] = 0.0",
                  f"{ind}{step.l1ma}[...] = np.log1p(-{step.l1ma})",
                  f"{ind}{step.l1ma}[rows_, jmax] = (rmax + np.log(rsum) - lse_rows)[:, 0]"]
    return lines


@numpy_step.register
def _(step: RowSum, ind):
    names = {sym: _array_ref(acc) for sym, acc in step.reads.items()}
    tmps, (red,) = _cse([step.expr])
    lines = [_comment(ind, step.eq)] + [f"{ind}{t} = {array_code(e, names)}" for t, e in tmps]
    term = f"np.broadcast_to({array_code(red, names)}, ({step.rows}, {step.cols}))"
    if step.out == "@total":
        lines.append(f"{ind}total += float({term}.sum())")
    else:
        lines.append(f"{ind}{step.out}[...] = {term}.sum(axis=1)")
    return lines


@numpy_step.register
def _(step: ColSum, ind):
    total = f"({step.alpha}) * {step.src}.sum(axis=0)"
    if step.beta == "1.0":  # b ← b + α·Σ (the bias update): in place
        return [_comment(ind, step.eq), f"{ind}{step.out} += {total}"]
    return [_comment(ind, step.eq), f"{ind}{step.out}[...] = {_plus_beta(total, step.out, step.beta)}"]


@numpy_step.register
def _(step: Gather, ind):
    lines = [_comment(ind, step.eq), f"{ind}rows = {step.order}[{step.start}:{step.start} + {step.rows}]"]
    for src, dst in step.pairs:
        if src in step.scale:
            lines.append(f"{ind}{dst}[...] = {src}[rows] * {step.scale[src]}")
            continue
        # a sum is one cheap pass; only a non-finite sum (NaN/inf, or an overflow) is looked at element-wise
        lines += [f"{ind}np.take({src}, rows, axis=0, out={dst})",
                  f"{ind}if not math.isfinite({dst}.sum()):", f"{ind}{_IND}bad |= not np.isfinite({dst}).all()"]
    return lines + [f"{ind}if bad:", f"{ind}{_IND}return bad"]


@numpy_step.register
def _(step: WindowMax, ind):
    (c, h, w), (ph, pw) = step.shape, step.window
    ho, wo = h // ph, w // pw
    lines = [_comment(ind, step.eq),
             f"{ind}_win = {step.src}.reshape(({step.rows}, {c}, {h}, {w}))[:, :, :{ho * ph}, :{wo * pw}]"
             f".reshape(({step.rows}, {c}, {ho}, {ph}, {wo}, {pw})).transpose(0, 1, 2, 4, 3, 5)"
             f".reshape(({step.rows}, {c}, {ho}, {wo}, {ph * pw}))",
             f"{ind}_at = _win.argmax(axis=-1)  # the first maximum in row-major order",
             f"{ind}{step.out}[...] = np.take_along_axis(_win, _at[..., None], axis=-1).reshape({step.rows}, -1)"]
    if step.argmax:
        lines.append(f"{ind}{step.argmax}[...] = _at.reshape({step.rows}, -1)")
    return lines


@numpy_step.register
def _(step: ScatterMax, ind):
    (c, h, w), (ph, pw) = step.shape, step.window
    ho, wo = h // ph, w // pw
    return [_comment(ind, step.eq),
            f"{ind}_win = np.zeros(({step.rows}, {c}, {ho}, {wo}, {ph * pw}), dtype={step.dst}.dtype)",
            f"{ind}np.put_along_axis(_win, {step.argmax}.reshape(({step.rows}, {c}, {ho}, {wo}, 1)), "
            f"{step.g}.reshape(({step.rows}, {c}, {ho}, {wo}, 1)), axis=-1)",
            f"{ind}_dst = {step.dst}.reshape(({step.rows}, {c}, {h}, {w}))",
            f"{ind}_dst[...] = 0.0",
            f"{ind}_dst[:, :, :{ho * ph}, :{wo * pw}] = _win.reshape(({step.rows}, {c}, {ho}, {wo}, {ph}, {pw}))"
            f".transpose(0, 1, 2, 4, 3, 5).reshape(({step.rows}, {c}, {ho * ph}, {wo * pw}))"]


@numpy_step.register
def _(step: Update, ind):
    names = dict(step.reads)
    names.update(step.scalars)
    return [_comment(ind, step.eq), f"{ind}{step.out}[...] = {array_code(step.expr, names)}"]


@numpy_step.register
def _(step: Random, ind):
    key = f"_rt.stream_key_np({step.seed}, {step.epoch}, {step.layer})"
    ids = f"{step.ids}[{step.start}:{step.start} + {step.rows}, None]"
    return [_comment(ind, step.eq),
            f"{ind}{step.out}[...] = _rt.uniform_np({key}, {ids}, np.arange({step.cols})[None, :])"]


@numpy_step.register
def _(step: Block, ind):
    lines = [f"{ind}# {step.label}"]
    for s in step.steps:
        lines += numpy_step(s, ind)
    return lines


@numpy_step.register
def _(step: Loop, ind):
    return _loop(step, ind, numpy_step)


def numpy_source(prog: Program, dtype: str) -> str:
    lines = [f"def {prog.name}({', '.join(prog.arg_names)}):", _docstring(prog.doc)]
    lines += _preamble(prog, dtype)
    with_err = ["    with np.errstate(all='ignore'):  # non-finite results are found and reported by the Model"]
    body = []
    for step in prog.steps:
        body += numpy_step(step, "        ")
    lines += with_err + body
    if prog.returns:
        lines.append(f"    return {prog.returns}")
    return "\n".join(lines) + "\n"


from symbp.compile import index_emit  # noqa: E402,F401  (the declared maps' steps register their emitters)
