"""The NumPy backend's emitter: kernel programs → plain vectorised NumPy source.

Takes: a ``Program`` and a dtype.  Gives: ``numpy_source`` — one Python function per program, by ``numpy_step``,
one emitter per step type (``functools.singledispatch``): products through ``@``, elementwise maps as array
expressions (after ``sympy.cse``), softmax stabilised by the row maximum.  The steps of declared maps call the
backend's runtime (``symbp.compile.backends.numpy.runtime``) with generated index functions and bodies, the
adjoints as scatters over the forward positions (``np.bincount``), so the two backends compute every gradient by
two routes; the steps the passes replaced (correlations, map sums) run as the declared steps they came from.
Nothing here or in the generated code imports numba.
"""

from __future__ import annotations

from functools import singledispatch

import sympy as sp

from symbp.compile.emit import (
    IND as _IND,
)
from symbp.compile.emit import (
    L1MA_DOC as _L1MA_DOC,
)
from symbp.compile.emit import (
    array_ref as _array_ref,
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
    index_code as _code,
)
from symbp.compile.emit import (
    index_var as _v,
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
    read_names as _names,
)
from symbp.compile.emit import (
    view as _view,
)
from symbp.compile.printer import array_code
from symbp.compile.program import (
    Block,
    ColSum,
    Correlation,
    Gather,
    Gemm,
    IndexGather,
    IndexReduce,
    IndexScatterMax,
    Loop,
    Map,
    MapSums,
    Program,
    Random,
    RowSoftmax,
    RowSum,
    ScatterMax,
    Update,
    WindowMax,
)
from symbp.layers.index_map import Affine, read_symbol


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



# ---------------------------------------------------------------------------------------------- numpy
def _np_index_fn(index, names) -> str:
    """A lambda of the variables (as keywords) giving the index tuple."""
    args = ", ".join(f"{_v(v)}=0" for v in names)
    items = ", ".join(_code(e) for e in index)
    return f"lambda {args}, **_: ({items}{',' if len(index) == 1 else ''})"


def _np_operands(ops, step_rows: str, names, ind: str) -> list[str]:
    lines = [f"{ind}["]
    for op in ops:
        arr = op.buffer if not op.per_row else _view(op.buffer, op.shape, step_rows)
        lines.append(f"{ind}{_IND}({arr}, {op.per_row}, {tuple(op.shape)}, {op.padded}, "
                     f"{_np_index_fn(op.index, names)}),")
    lines.append(f"{ind}]")
    return lines


def _np_fn(name: str, expr: sp.Expr, n: int, ind: str) -> list[str]:
    args = ", ".join(f"_r{k}" for k in range(n))
    return [f"{ind}def {name}({args}):", f"{ind}{_IND}return {array_code(expr, _names(n))}"]


def _vars(step_out_vars, term_vars) -> list[str]:
    return list(step_out_vars) + [v for v, _ in term_vars]


def _renamed(names):
    return tuple(_v(v) for v in names)


@numpy_step.register
def _(step: IndexReduce, ind):
    names = _vars(step.out_vars, step.vars)
    lines = [_comment(ind, step.eq), *_np_fn("_body", step.body, len(step.operands), ind)]
    lines.append(f"{ind}_rt.reduce({_view(step.out, step.out_shape, step.rows)}, {step.kind!r}, _body, ")
    lines += _np_operands(step.operands, step.rows, names, ind + _IND)
    argmax = _view(step.argmax, step.out_shape, step.rows) if step.argmax else None
    lines[-1] += (f", {_renamed(step.out_vars)}, {tuple(step.out_shape)}, "
                  f"{tuple((_v(v), n) for v, n in step.vars)}, accumulate={step.accumulate}, argmax={argmax})")
    return lines


@numpy_step.register
def _(step: IndexGather, ind):
    fwd = step.forward
    names = _vars(fwd.out_vars, fwd.vars)
    read = fwd.operands[step.read]
    grad = sp.diff(fwd.body, read_symbol(step.read))
    lines = [_comment(ind, step.eq + "  (NumPy: as a scatter over the forward positions)"),
             *_np_fn("_grad", grad, len(fwd.operands), ind)]
    lines.append(f"{ind}_rt.scatter({step.target}, {step.per_sample}, _grad, ")
    lines += _np_operands(fwd.operands, fwd.rows, names, ind + _IND)
    g_idx = _np_index_fn(tuple(Affine.var(v) for v in fwd.out_vars), names)
    lines[-1] += (f", {_view(step.g.buffer, step.g.shape, fwd.rows)}, {g_idx}, {_np_index_fn(read.index, names)}, "
                  f"{tuple(step.target_shape)}, {read.padded}, {_renamed(fwd.out_vars)}, {tuple(fwd.out_shape)}, "
                  f"{tuple((_v(v), n) for v, n in fwd.vars)}, alpha={step.alpha}, beta={step.beta}, "
                  f"accumulate={step.accumulate})")
    return lines


@numpy_step.register
def _(step: IndexScatterMax, ind):
    fwd = step.forward
    names = _vars(fwd.out_vars, fwd.vars)
    read = fwd.operands[step.read]
    lines = [_comment(ind, step.eq), *_np_fn("_grad", step.factor, len(fwd.operands), ind)]
    lines.append(f"{ind}_rt.scatter_max({step.target}, {step.per_sample}, _grad, ")
    lines += _np_operands(fwd.operands, fwd.rows, names, ind + _IND)
    lines[-1] += (f", {_view(step.g.buffer, step.g.shape, fwd.rows)}, "
                  f"{_view(step.argmax, fwd.out_shape, fwd.rows)}, {_np_index_fn(read.index, names)}, "
                  f"{tuple(step.target_shape)}, {_renamed(fwd.out_vars)}, {tuple(fwd.out_shape)}, "
                  f"{tuple((_v(v), n) for v, n in fwd.vars)}, alpha={step.alpha}, beta={step.beta}, "
                  f"accumulate={step.accumulate})")
    return lines



@numpy_step.register
def _(step: Correlation, ind):
    # the declared steps themselves (vectorised NumPy, scatters for adjoints)
    return numpy_step(step.generic, ind) + (numpy_step(step.bias_generic, ind) if step.bias_generic else [])




@numpy_step.register
def _(step: MapSums, ind):
    return numpy_step(step.generic, ind)  # the derived gather itself


__all__ = ["numpy_source", "numpy_step"]
