"""What every Python-source backend's emitter shares: comments, references, elementwise CSE, the preamble.

Takes: kernel-program pieces (``symbp.compile.program``).  Gives: source-text helpers — the indentation, equation
comments and docstrings (user text never ends a comment or opens a string), element and whole-array references
of an ``Access``, ``plus_beta`` (α·x + β·out), ``cse`` (sympy's, cached), the mini-batch loop, the scratch
buffers' preamble, and the names of a declared map's loop variables, views and reads.  The backends' emitters
(``symbp.compile.backends.<name>.emit``) import these; nothing here knows a backend.
"""

from __future__ import annotations

from functools import lru_cache

import sympy as sp

from symbp.compile.program import Access, Loop, Map, Program
from symbp.layers.index_map import read_symbol

IND = "    "
#: How both backends compute log(1 − a) of a softmax row (the comment above that block).
L1MA_DOC = ("log(1 − aⱼ): log1p(−aⱼ) off the row's maximum (there aⱼ ≤ ½); at the maximum, the",
             "log-sum-exp of the other z minus the row's, finite even when aⱼ rounds to 1")


def comment_text(text: str) -> str:
    """``text`` made safe for a one-line ``#`` comment: characters that could end the line (newlines, other
    control and separator characters) are written as escapes, so a comment can never become code."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in str(text))


def comment(ind: str, text: str) -> str:
    return f"{ind}# {comment_text(text)}"


def docstring(text: str) -> str:
    """A docstring line for a generated function, as a string literal (``repr``): it cannot end early."""
    return f"    {text + '.'!r}"


def scalar_ref(acc: Access) -> str:
    """The element an access reads in a loop over (i, j): one index expression per axis."""
    return f"{acc.buffer}[{', '.join(acc.index)}]"


#: How NumPy code reads an access over a whole (rows × cols) block, by index pattern: broadcasting does the rest.
_ARRAY_REFS = {("i", "j"): "{}", ("j",): "{}", ("i",): "{}[:, None]"}


def array_ref(acc: Access) -> str:
    try:
        return _ARRAY_REFS[tuple(acc.index)].format(acc.buffer)
    except KeyError:
        raise NotImplementedError(f"NumPy backend: no array form for {acc.buffer}[{', '.join(acc.index)}]") from None


def plus_beta(rhs: str, out: str, beta: str) -> str:
    """rhs + β·out, written once for every backend and step (β = 0: nothing added, as BLAS does)."""
    if beta == "0.0":
        return rhs
    return f"{rhs} + {out}" if beta == "1.0" else f"{rhs} + ({beta}) * {out}"


def inplace(step: Map):
    """A map that writes a buffer it reads (z += b) reads it into a local first, so every write sees the old
    value: (locals, the other reads, the write expressions in the locals)."""
    local = {sym: sp.Symbol(f"_{sym.name}") for sym, acc in step.reads.items()
             if acc.elementwise and any(acc.buffer == w.buffer for w, _ in step.writes)}
    reads = {s: acc for s, acc in step.reads.items() if s not in local}
    return local, reads, [e.xreplace(local) for _, e in step.writes]


def cse(exprs: list[sp.Expr]):
    tmps, reduced = _cse_cached(tuple(exprs))
    return list(tmps), list(reduced)  # the callers' own lists: the cached ones stay as they are


@lru_cache(maxsize=4096)  # a deep network repeats the same few maps
def _cse_cached(exprs: tuple[sp.Expr, ...]):
    tmps, reduced = sp.cse(list(exprs), symbols=sp.numbered_symbols("t"), optimizations="basic")
    return tmps, reduced



def loop_lines(step: Loop, ind: str, emit) -> list[str]:
    lines = [comment(ind, step.eq), f"{ind}for k in range(order.shape[0] // m):", f"{ind}{IND}start = k * m"]
    for s in step.body:
        lines += emit(s, ind + IND)
    return lines


def np_dtype(buffer_dtype: str, dtype: str) -> str:
    return dtype if buffer_dtype == "float" else {"bool": "bool_"}.get(buffer_dtype, buffer_dtype)


def preamble(prog: Program, dtype: str, alloc=None) -> list[str]:
    """Row counts and the scratch buffers, allocated once per call: ``alloc(buffer, dtype name)`` gives a
    backend's own allocation expression (or None for ``np.zeros``)."""
    lines = [f"    {var} = {how}" for var, how in prog.row_vars.items()]
    for b in prog.buffers:
        dt = np_dtype(b.dtype, dtype)
        own = alloc(b, dt) if alloc is not None else None
        if own is not None:
            lines.append(f"    {b.name} = {own}")
            continue
        shape = "(" + ", ".join(str(s) for s in b.shape) + ("," if b.rank == 1 else "") + ")"
        lines.append(f"    {b.name} = np.zeros({shape}, dtype=np.{dt})")
    if prog.returns:
        lines.append(f"    {prog.returns} = {'False' if prog.returns == 'bad' else '0.0'}")
    return lines


def index_var(name: str) -> str:
    return f"i_{name}"


def index_code(e) -> str:
    """An affine index (``symbp.layers.index_map.Affine``) as code in the renamed loop variables."""
    return e.rename({v: index_var(v) for v in e.vars}).code()


def view(op_buffer: str, shape, rows: str | None) -> str:
    dims = ", ".join(str(s) for s in ((rows,) if rows else ()) + tuple(shape))
    return f"{op_buffer}.reshape(({dims}{',' if len(shape) + bool(rows) == 1 else ''}))"



def read_names(n: int) -> dict:
    return {read_symbol(k): f"_r{k}" for k in range(n)}

