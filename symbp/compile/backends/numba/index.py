"""The numba backend's code for the steps of declared maps and what the passes made of them.

Takes: ``IndexReduce``, ``IndexGather``, ``IndexScatterMax``, ``Correlation`` and ``MapSums`` steps.  Gives: their
source lines, registered on ``emit.numba_step``: loops with constant extents, every index an integer expression
of the loop variables (renamed ``i_<name>`` so no user name meets a kernel name); the adjoints as the derived
gathers (a loop per variable left after solving the index equations, its bounds from the guards, an exact floor
or ceiling division for a coefficient other than ±1, divisibility guards as tests, reads outside a padded input
as 0); correlations as im2col (straight-line chunks; strided or padded ones through the padded, phase-split
sample) and gemm per sample and group, the three products of several samples at once where
``Correlation.group`` says so (their patches side by side), col2im with tight loop ranges, BP4 over the kept
patches; a map's bias sums in fixed-order partial sums.
"""

from __future__ import annotations

from symbp.compile.backends.numba.emit import chunked as _chunked
from symbp.compile.backends.numba.emit import map_sums as _map_sums
from symbp.compile.backends.numba.emit import numba_step
from symbp.compile.emit import IND as _IND
from symbp.compile.emit import comment as _comment
from symbp.compile.emit import index_code as _code
from symbp.compile.emit import index_var as _v
from symbp.compile.emit import read_names as _names
from symbp.compile.emit import view as _view
from symbp.compile.printer import scalar_code
from symbp.compile.program import Correlation, IndexGather, IndexReduce, IndexScatterMax, MapSums
from symbp.layers.index_map import read_symbol


class _Views:
    """Names of the reshaped views a step uses, declared once at its top."""

    def __init__(self, rows: str):
        self.rows, self.lines, self.names = rows, [], {}

    def of(self, buffer: str, shape, per_row: bool) -> str:
        if not per_row:
            return buffer  # parameters arrive with their own shapes
        key = (buffer, tuple(shape))
        if key not in self.names:
            self.names[key] = f"_{buffer}_v{len(self.names)}"
            self.lines.append((self.names[key], _view(buffer, shape, self.rows)))
        return self.names[key]

    def emit(self, ind: str) -> list[str]:
        return [f"{ind}{name} = {src}" for name, src in self.lines]


def _inside(e, n: int, extents: dict[str, int] | None) -> bool:
    """Does the index e stay in [0, n) for every value of its variables in their ranges (``extents``)?"""
    if extents is None or e.den != 1 or any(v not in extents for v in e.vars):
        return False
    lo, hi = e.range(extents)
    return lo >= 0 and hi < n


def _operand_lines(ops, views: _Views, ind: str, bounds_ok: list[str] | None = None, used=None,
                   extents: dict[str, int] | None = None) -> list[str]:
    """``_r{k} = operand k`` for each operand (0 outside a padded one; the inside-test is appended to
    ``bounds_ok`` when given, for a max); only those whose symbol is in ``used`` when given.  ``extents``: the
    ranges of the index variables (loops a guard tightens keep their full range): an axis whose index stays
    inside them is not tested, and a read with no axis to test is a plain read."""
    lines = []
    for k, op in enumerate(ops):
        if used is not None and read_symbol(k) not in used:
            continue
        view = views.of(op.buffer, op.shape, op.per_row)
        idx = [_code(e) for e in op.index]
        ref = f"{view}[{'r, ' if op.per_row else ''}{', '.join(idx)}]"
        tested = [d for d, (e, n) in enumerate(zip(op.index, op.shape)) if not _inside(e, n, extents)]
        if op.padded and tested:
            tests = [f"0 <= _k{k}_{d} < {op.shape[d]}" for d in tested]
            lines += [f"{ind}_k{k}_{d} = {i}" for d, i in enumerate(idx)]
            ref = f"{view}[{'r, ' if op.per_row else ''}{', '.join(f'_k{k}_{d}' for d in range(len(idx)))}]"
            test = " and ".join(tests)
            if bounds_ok is not None:
                bounds_ok.append(test)
                lines.append(f"{ind}_r{k} = {ref} if {test} else 0.0")
            else:
                lines.append(f"{ind}_r{k} = {ref} if {test} else 0.0")
        else:
            lines.append(f"{ind}_r{k} = {ref}")
    return lines



# ---------------------------------------------------------------------------------------------- numba
@numba_step.register
def _(step: IndexReduce, ind):
    views = _Views(step.rows)
    out = views.of(step.out, step.out_shape, True)
    body_lines, cur = [], ind + _IND
    for v, n in zip(step.out_vars, step.out_shape):
        body_lines.append(f"{cur}for {_v(v)} in range({n}):")
        cur += _IND
    o_ref = f"{out}[r, {', '.join(_v(v) for v in step.out_vars)}]"
    extents = dict(zip(step.out_vars, step.out_shape)) | dict(step.vars)
    if step.kind == "sum" and not step.vars:  # no reduction: the value itself, in the buffer's type
        body_lines += _operand_lines(step.operands, views, cur, extents=extents)
        body_lines.append(f"{cur}{o_ref} {'+=' if step.accumulate else '='} "
                          f"{scalar_code(step.body, _names(len(step.operands)))}")
        return [_comment(ind, step.eq), *views.emit(ind), f"{ind}for r in range({step.rows}):", *body_lines]
    if step.kind == "sum":
        body_lines.append(f"{cur}acc = 0.0")
    else:
        body_lines += [f"{cur}acc = 0.0", f"{cur}at = -1", f"{cur}pos = 0"]
    inner = cur
    for v, n in step.vars:
        body_lines.append(f"{inner}for {_v(v)} in range({n}):")
        inner += _IND
    value = scalar_code(step.body, _names(len(step.operands)))
    if step.kind == "sum":
        body_lines += _operand_lines(step.operands, views, inner, extents=extents)
        body_lines.append(f"{inner}acc += {value}")
    else:
        tests: list[str] = []
        reads = _operand_lines(step.operands, views, inner, tests, extents=extents)
        body_lines += reads
        ok = " and ".join(tests) or "True"
        body_lines += [f"{inner}if {ok}:", f"{inner}{_IND}v = {value}",
                       f"{inner}{_IND}if at < 0 or v > acc:  # the first maximum in generator order",
                       f"{inner}{_IND}{_IND}acc = v", f"{inner}{_IND}{_IND}at = pos",
                       f"{inner}pos += 1"]
    body_lines.append(f"{cur}{o_ref} {'+=' if step.accumulate else '='} acc")
    if step.argmax:
        am = views.of(step.argmax, step.out_shape, True)
        body_lines.append(f"{cur}{am}[r, {', '.join(_v(v) for v in step.out_vars)}] = at")
    return [_comment(ind, step.eq), *views.emit(ind), f"{ind}for r in range({step.rows}):", *body_lines]


def _guard_plan(step: IndexGather):
    """For each loop variable (in order), its bounds (lists of lower and upper bound codes) and the tests placed
    right inside it; and the tests on the target's indices alone."""
    loop_vars = [v for v, _ in step.loops]
    lo = {v: ["0"] for v in loop_vars}
    hi = {v: [str(n)] for v, n in step.loops}
    tests = {v: [] for v in loop_vars}
    outer: list[str] = []
    for g in step.guards:
        inside = [v for v in loop_vars if g.expr.coeff(v)]
        code = _code(g.expr)
        if not inside:
            outer.append(f"({code}) % {g.mod} == 0" if g.kind == "divides" else
                         f"{g.lo} <= {code} <= {g.hi}" if g.lo != g.hi else f"{code} == {g.lo}")
            continue
        u = inside[-1]
        if g.kind == "divides":
            tests[u].append(f"({code}) % {g.mod} == 0")
            continue
        c = g.expr.coeff(u)
        rest = _code(g.expr.without(u))
        if c > 0:  # lo ≤ c·u + rest ≤ hi
            lo[u].append(_ceil_div(f"{g.lo} - ({rest})", c))
            hi[u].append(f"({g.hi} - ({rest})) // {c} + 1" if c != 1 else f"{g.hi} - ({rest}) + 1")
        else:  # lo ≤ −|c|·u + rest ≤ hi  ⇔  rest − hi ≤ |c|·u ≤ rest − lo
            k = -c
            lo[u].append(_ceil_div(f"({rest}) - {g.hi}", k))
            hi[u].append(f"(({rest}) - {g.lo}) // {k} + 1" if k != 1 else f"({rest}) - {g.lo} + 1")
    return lo, hi, tests, outer


def _ceil_div(num: str, c: int) -> str:
    return num if c == 1 else f"-((-({num})) // {c})"


def _bound(parts: list[str], fn: str) -> str:
    return parts[0] if len(parts) == 1 else f"{fn}({', '.join(parts)})"


@numba_step.register
def _(step: IndexGather, ind):
    views = _Views(step.rows)
    target = views.of(step.target, step.target_shape, step.per_sample)
    g_view = views.of(step.g.buffer, step.g.shape, True)
    lines, cur = [], ind
    if step.per_sample:
        lines.append(f"{cur}for r in range({step.rows}):")
        cur += _IND
    for v, n in zip(step.target_vars, step.target_shape):
        lines.append(f"{cur}for {_v(v)} in range({n}):")
        cur += _IND
    lines.append(f"{cur}acc = 0.0")
    lo, hi, tests, outer = _guard_plan(step)
    inner = cur
    if outer:
        lines.append(f"{inner}if {' and '.join(outer)}:")
        inner += _IND
    if not step.per_sample:
        lines.append(f"{inner}for r in range({step.rows}):")
        inner += _IND
    for v, _ in step.loops:
        lines.append(f"{inner}for {_v(v)} in range({_bound(lo[v], 'max')}, {_bound(hi[v], 'min')}):")
        inner += _IND
        if tests[v]:
            lines.append(f"{inner}if {' and '.join(tests[v])}:")
            inner += _IND
    extents = dict(zip(step.target_vars, step.target_shape)) | dict(step.loops)
    lines += _operand_lines(step.operands, views, inner, used=step.factor.free_symbols, extents=extents)
    g_ref = f"{g_view}[r, {', '.join(_code(e) for e in step.g.index)}]"
    factor = scalar_code(step.factor, _names(len(step.operands)))
    lines.append(f"{inner}acc += {g_ref}" + ("" if step.factor == 1 else f" * ({factor})"))
    t_ref = f"{target}[{'r, ' if step.per_sample else ''}{', '.join(_v(v) for v in step.target_vars)}]"
    scaled = "acc" if step.alpha == "1.0" else f"({step.alpha}) * acc"
    if step.accumulate:
        lines.append(f"{cur}{t_ref} += {scaled}")
    elif step.beta == "0.0":
        lines.append(f"{cur}{t_ref} = {scaled}")
    else:
        lines.append(f"{cur}{t_ref} = {scaled} + ({step.beta}) * {t_ref}")
    return [_comment(ind, step.eq), *views.emit(ind), *lines]


@numba_step.register
def _(step: IndexScatterMax, ind):
    fwd = step.forward
    views = _Views(fwd.rows)
    target = views.of(step.target, step.target_shape, step.per_sample)
    g_view = views.of(step.g.buffer, step.g.shape, True)
    am = views.of(step.argmax, fwd.out_shape, True)
    lines = []
    if not step.accumulate:  # target = α·Σ + β·target: scale it first, then add the scaled contributions
        lines.append(f"{ind}{target}[...] = 0.0" if step.beta == "0.0" else f"{ind}{target}[...] *= {step.beta}")
    cur = ind
    lines.append(f"{cur}for r in range({fwd.rows}):")
    cur += _IND
    for v, n in zip(fwd.out_vars, fwd.out_shape):
        lines.append(f"{cur}for {_v(v)} in range({n}):")
        cur += _IND
    o_idx = ", ".join(_v(v) for v in fwd.out_vars)
    lines.append(f"{cur}at = {am}[r, {o_idx}]")
    lines.append(f"{cur}if at < 0:  # an empty window (refused when declared): nothing to route")
    lines.append(f"{cur}{_IND}continue")
    ext = [n for _, n in fwd.vars]
    for d, (v, n) in enumerate(fwd.vars):
        stride = 1
        for e in ext[d + 1:]:
            stride *= e
        lines.append(f"{cur}{_v(v)} = (at // {stride}) % {n}")
    lines += _operand_lines(fwd.operands, views, cur, used=step.factor.free_symbols)
    read = fwd.operands[step.read]
    idx = ", ".join(_code(e) for e in read.index)
    factor = scalar_code(step.factor, _names(len(fwd.operands)))
    value = f"{g_view}[r, {o_idx}]" + ("" if step.factor == 1 else f" * ({factor})")
    scale = "" if step.alpha == "1.0" else f"({step.alpha}) * "
    lines.append(f"{cur}{target}[{'r, ' if step.per_sample else ''}{idx}] += {scale}{value}")
    return [_comment(ind, step.eq), *views.emit(ind), *lines]



# ------------------------------------------------------------------------------ correlations (numba)
def _plus(c: int) -> str:
    """A constant term added to an index: " + 3", " - 2", or nothing for 0."""
    return f" + {c}" if c > 0 else f" - {-c}" if c < 0 else ""


def _start(col0: str) -> str:
    """The start of a column index inside a buffer of several samples' columns: "col0 + ", or nothing."""
    return f"{col0} + " if col0 else ""


def _index_code(var: str, s: int, d: int, o: int, k: str) -> str:
    parts = [var if s == 1 else f"{s} * {var}", k if d == 1 else f"{d} * {k}"]
    return " + ".join(parts) + _plus(o)


def _span(n_out: int, size: int, s: int, d: int, o: int, k: int) -> tuple[int, int]:
    """The outputs i in [lo, hi) whose input position s·i + d·k + o lies inside [0, size) (kernel offset k)."""
    return max(0, -((o + d * k) // s)), min(n_out, (size - 1 - o - d * k) // s + 1)


def _rows_range(step: Correlation) -> str:
    """range(...) of the output rows i whose input row s·i + d·_p + o lies inside the input (kernel row _p)."""
    (_, h, _), (kh, _), (_, ho, _) = step.in_shape, step.kernel, step.out_shape
    sh, dh, oh = step.stride[0], step.dilation[0], step.offset[0]
    if all(_span(ho, h, sh, dh, oh, p) == (0, ho) for p in range(kh)):
        return f"range({ho})"
    return f"range(max(0, -(({oh} + {dh} * _p) // {sh})), min({ho}, ({h - 1 - oh} - {dh} * _p) // {sh} + 1))"


def _row_col2im(step: Correlation, ind: str, col0: str = "") -> list[str]:
    """col2im gathered row by row: for each patch row block (c, p, i), every column x of its input row y gets the
    sum of the kernel columns q that reach it (x = s·j + d·q + o for an output column j), written out with the
    layer's extents as constants, so each element of ∂C/∂x is read and written once per (c, p, i) instead of
    once per q (strided convolutions: no strided read-modify-writes; padding: columns outside never visited).
    Measured against loops over (c, p, q, i, j): the modern net's epoch 5% faster, dbl_conv's 5%."""
    (cin, _, w), (kh, kw), (_, _, wo) = step.in_shape, step.kernel, step.out_shape
    sh, dh, oh = step.stride[0], step.dilation[0], step.offset[0]
    i = [ind + _IND * k for k in range(4)]
    lines = [f"{i[0]}for _c in range({cin}):", f"{i[1]}for _p in range({kh}):",
             f"{i[2]}_row0 = (_c * {kh} + _p) * {kw}", f"{i[2]}for _i in {_rows_range(step)}:",
             f"{i[3]}_y = {_index_code('_i', sh, dh, oh, '_p')}", f"{i[3]}_o = {_start(col0)}_i * {wo}"]
    for x in range(w):
        terms = [f"{step.dcol}[_row0 + {q}, _o + {j}]" for q, j in _reaching(step, x)]
        if terms:
            lines.append(f"{i[3]}_g3[_c, _y, {x}] += " + " + ".join(terms))
    return lines


def _reaching(step: Correlation, x: int) -> list[tuple[int, int]]:
    """The (kernel column q, output column j) pairs whose patch element lands on input column x:
    x = s·j + d·q + o with 0 ≤ j < Wo."""
    kw, wo = step.kernel[1], step.out_shape[2]
    sw, dw, ow = step.stride[1], step.dilation[1], step.offset[1]
    return [(q, (x - dw * q - ow) // sw) for q in range(kw)
            if (x - dw * q - ow) % sw == 0 and 0 <= (x - dw * q - ow) // sw < wo]


def _col2im_terms(step: Correlation, x: int, rows: list[tuple[int, int]], col0: str = "") -> list[str]:
    """The patch elements that reach input column x of the kernel rows ``rows`` [(p, output row offset)]
    (``col0``: where the sample's columns start in ``dcol``)."""
    (kh, kw), wo = step.kernel, step.out_shape[2]
    return [f"{step.dcol}[(_c * {kh} + {p}) * {kw} + {q}, {_start(col0)}(_t{_plus(di)}) * {wo} + {j}]"
            for p, di in rows for q, j in _reaching(step, x)]


#: the written-once col2im is used while its code has at most this many times the terms of the row-gathered
#: one.  Measured, each compiled alone: the modern net's 3×3 stride-2 layers have 4× the terms (compile 0.63 →
#: 1.88 s, col2im 1.6× faster); dbl_conv's 5×5 stride-1 layer, each input row near the borders reached by its own
#: set of kernel rows, 25× (compile 0.68 → 11.8 s for a col2im 13% faster)
ONCE_TERMS = 6


def _col2im_once(step: Correlation, ind: str, col0: str = "") -> list[str] | None:
    """col2im with each element of ∂C/∂x written once: input row y = s·t + φ (φ < s, the row's phase) is
    reached by the kernel rows p with s | φ − d·p − o, from output row i = t + (φ − d·p − o)/s; runs of t with
    the same rows in range become one loop whose statements sum every (p, q) reaching each column, with the
    layer's extents as constants (no zeroing pass, no read-modify-write; ``accumulate`` adds instead).
    Measured against ``_row_col2im`` (stride 2, 3×3, padding 1, 16×28×28): 3.75 against 6.17 µs a sample.
    None where its code would grow past ``ONCE_TERMS`` times the row-gathered one's."""
    (cin, h, w), (kh, _), (_, ho, _) = step.in_shape, step.kernel, step.out_shape
    sh, dh, oh = step.stride[0], step.dilation[0], step.offset[0]
    runs = []  # (phase, first t, last t + 1, [(p, i − t)])
    for phi in range(sh):
        offs = [(p, (phi - dh * p - oh) // sh) for p in range(kh) if (phi - dh * p - oh) % sh == 0]
        for t in range(-(-(h - phi) // sh)):
            rows = [(p, di) for p, di in offs if 0 <= t + di < ho]
            if runs and runs[-1][0] == phi and runs[-1][2] == t and runs[-1][3] == rows:
                runs[-1][2] = t + 1
            else:
                runs.append([phi, t, t + 1, rows])
    gathered = sum(len(_reaching(step, x)) for x in range(w))  # one body for every (c, p, i)
    once = sum(len(_col2im_terms(step, x, rows)) for _, _, _, rows in runs for x in range(w))
    if once > ONCE_TERMS * gathered:
        return None
    i = [ind + _IND * k for k in range(3)]
    op = "+=" if step.accumulate else "="
    lines = [f"{i[0]}for _c in range({cin}):"]
    for phi, t0, t1, rows in runs:
        body = [(x, _col2im_terms(step, x, rows, col0)) for x in range(w)]
        body = [(x, terms) for x, terms in body if terms or not step.accumulate]
        if not body:
            continue
        lines += [f"{i[1]}for _t in range({t0}, {t1}):", f"{i[2]}_y = {'_t' if sh == 1 else f'{sh} * _t'}{_plus(phi)}"]
        lines += [f"{i[2]}_g3[_c, _y, {x}] {op} " + (" + ".join(terms) if terms else "0.0") for x, terms in body]
    return lines if len(lines) > 1 else []  # accumulating, with every patch element in the padding: nothing


def _chunked_im2col(step: Correlation, ind: str, col0: str = "") -> list[str]:
    """im2col of a correlation whose patch rows are whole runs of input columns (column stride 1, no column in
    the padding; rows may be): straight-line chunks of LANES columns, all loads before the stores: LLVM's
    SLP vectoriser makes them vector moves without proving that the arrays do not overlap (a loop over j it does
    not vectorise; measured 7× slower for a 20×12×12 im2col)."""
    (cin, _, _), (kh, kw), (_, _, wo) = step.in_shape, step.kernel, step.out_shape
    (sh, _), (dh, dw), (oh, ow) = step.stride, step.dilation, step.offset
    i = [ind + _IND * k for k in range(6)]

    x0 = ("_q" if dw == 1 else f"{dw} * _q") + (f" + {ow}" if ow > 0 else f" - {-ow}" if ow < 0 else "")
    return [f"{i[0]}for _c in range({cin}):", f"{i[1]}for _p in range({kh}):", f"{i[2]}for _q in range({kw}):",
            f"{i[3]}_row = (_c * {kh} + _p) * {kw} + _q", f"{i[3]}_x0 = {x0}",
            f"{i[3]}for _i in {_rows_range(step)}:", f"{i[4]}_y = {_index_code('_i', sh, dh, oh, '_p')}",
            *_chunked(wo, i[4], lambda k: [f"_t{k} = _x3[_c, _y, _x0 + _j + {k}]"],
                      lambda k: [f"_col[_row, {_start(col0)}_i * {wo} + _j + {k}] = _t{k}"])]


def _phase_runs(step: Correlation, ind: str, body) -> list[str]:
    """Static loops over the column phases φ and, for each, the input columns x = s·u + φ − left inside the input
    (u a run of constant extent): ``body(ind, phi, u0, count)`` gives the lines for row _y (of c = _c)."""
    (cin, h, w) = step.in_shape
    top, left, _, sw, _ = step.phases()
    lines = [f"{ind}for _c in range({cin}):", f"{ind}{_IND}for _y in range({h}):"]
    for phi in range(sw):
        u0 = max(0, -(-(left - phi) // sw))  # the first u with s·u + φ − left ≥ 0
        u1 = (w - 1 + left - phi) // sw + 1  # past the last with s·u + φ − left ≤ w − 1
        if u1 > u0:
            lines += body(ind + 2 * _IND, phi, u0, u1 - u0)
    return lines


def _phase_patches(step: Correlation, ind: str, load, store) -> list[str]:
    """Loops over the patch rows (c, p, i), the kernel columns q written out one by one, each row a contiguous
    run of Wo elements of the phase-split sample at row _yp, phase φ_q, from u_q (constants: the indices are
    known non-negative, so nothing stands between LLVM and vector moves); ``load``/``store`` as ``_chunked``'s,
    called with the lane k and (φ_q, u_q)."""
    (cin, _, _), (kh, kw), (_, ho, wo) = step.in_shape, step.kernel, step.out_shape
    (sh, _), (dh, dw), (oh, ow) = step.stride, step.dilation, step.offset
    top, left, _, sw, _ = step.phases()
    i = [ind + _IND * k for k in range(6)]
    lines = [f"{i[0]}for _c in range({cin}):", f"{i[1]}for _p in range({kh}):",
             f"{i[2]}_row0 = (_c * {kh} + _p) * {kw}", f"{i[2]}for _i in range({ho}):",
             f"{i[3]}_yp = {_index_code('_i', sh, dh, oh + top, '_p')}"]
    for q in range(kw):
        phi, u0 = divmod(dw * q + ow + left, sw)[::-1]
        lines += [f"{i[3]}_row = _row0 + {q}"]
        lines += _chunked(wo, i[3], lambda k, phi=phi, u0=u0: load(k, phi, u0),
                          lambda k, phi=phi, u0=u0: store(k, phi, u0))
    return lines


def _phased_im2col(step: Correlation, ind: str, col0: str = "") -> list[str]:
    """im2col through the padded, phase-split sample (``Correlation.phases``): first the sample's values into it
    (its border stays zero), then every patch row a contiguous run, copied in straight-line chunks.  Strided
    and padded convolutions copy as fast as the book's."""
    top, left, _, sw, _ = step.phases()
    wo, xph = step.out_shape[2], "xph_" + step.cols.removeprefix("cols_")

    def fill(i, phi, u0, n):
        return _chunked(n, i, lambda k: [f"_t{k} = _x3[_c, _y, {sw} * (_j + {k + u0}){_plus(phi - left)}]"
                                         if sw > 1 else f"_t{k} = _x3[_c, _y, _j{_plus(k + u0 + phi - left)}]"],
                        lambda k: [f"{xph}[_c, _y{_plus(top)}, {phi}, _j{_plus(k + u0)}] = _t{k}"])

    return [_comment(ind, f"the sample into {xph}[c, y{_plus(top)}, φ, u] = x[c, y, {sw}·u + φ{_plus(-left)}] (the "
                          "border stays zero), then each patch row a run of it"),
            *_phase_runs(step, ind, fill),
            *_phase_patches(step, ind, lambda k, phi, u0: [f"_t{k} = {xph}[_c, _yp, {phi}, _j + {u0 + k}]"],
                            lambda k, phi, u0: [f"_col[_row, {_start(col0)}_i * {wo} + _j + {k}] = _t{k}"])]


@numba_step.register
def _(step: Correlation, ind):
    (cin, h, w), (kh, kw), (maps, ho, wo) = step.in_shape, step.kernel, step.out_shape
    ckk, n = cin * kh * kw, ho * wo
    lines = [_comment(ind, step.eq)]
    g = getattr(step.generic, "g", None)
    G = step.groups
    mg, kg = maps // G, ckk // G  # per group: its maps, and its rows of the patches (its channels × kh·kw)
    i2, i3 = ind + _IND, ind + 2 * _IND
    if step.role == "weights" and G == 1:
        d4 = _view(g.buffer, (maps, ho, wo), step.rows)
        if step.group > 1:  # the patches of the samples side by side: one product per group of samples
            bias = (step.bias, step.bias_alpha, step.bias_beta) if step.bias else (f"{step.sums}[0, :0]", "0.0", "0.0")
            return lines + [f"{ind}_rt.conv_weights_grouped({d4}, {step.cols}, {step.dgroup}, {step.sums}, "
                            f"{step.out}, {step.alpha}, {step.beta}, {', '.join(bias)})"]
        if step.bias:
            return lines + [f"{ind}_rt.conv_weights_bias({d4}, {step.cols}, {step.sums}, {step.out}, {step.alpha}, "
                            f"{step.beta}, {step.bias}, {step.bias_alpha}, {step.bias_beta})"]
        return lines + [f"{ind}_rt.conv_weights({d4}, {step.cols}, {step.sums}, {step.out}, {step.alpha}, "
                        f"{step.beta})"]
    if step.role == "weights":  # per group g: out[g] ← α·Σ_r δ[r][g]·colᵣ[g]ᵀ + β·out[g] (∂C/∂W, or W's SGD step)
        lines += [f"{ind}_O2 = {step.out}.reshape(({maps}, {kg}))",
                  f"{ind}if {step.rows} == 0:", f"{i2}_rt._scale(_O2, {step.beta})",
                  f"{ind}for _r in range({step.rows}):", f"{i2}_d2 = {g.buffer}[_r].reshape(({maps}, {n}))",
                  f"{i2}for _g in range({G}):",
                  f"{i3}_rt.gemm_nt(_d2[_g * {mg}:(_g + 1) * {mg}], {step.cols}[_r][_g * {kg}:(_g + 1) * {kg}], "
                  f"_O2[_g * {mg}:(_g + 1) * {mg}], {step.alpha}, {step.beta} if _r == 0 else 1.0)"]
        return lines
    lines.append(f"{ind}_W2 = {step.W}.reshape(({maps}, {kg}))")
    if step.role == "input" and step.group > 1:
        return lines + _grouped_input(step, ind)
    if step.role == "forward" and step.group > 1:
        return lines + _grouped_forward(step, ind)
    lines.append(f"{ind}for _r in range({step.rows}):")

    def product(call, A, B, C):
        if G == 1:
            return [f"{i2}_rt.{call}({A}, {B}, {C}, 1.0, 0.0)"]
        blk = {"_W2": mg, "_col": kg, "_d2": mg, step.dcol: kg, "_z2": mg}
        return [f"{i2}for _g in range({G}):",
                f"{i3}_rt.{call}(" + ", ".join(f"{v}[_g * {blk[v]}:(_g + 1) * {blk[v]}]" for v in (A, B, C))
                + ", 1.0, 0.0)"]

    if step.role == "forward":
        # chunked: the patch elements in the padding are never written (they keep the zeros the buffer was made
        # with); phased: they are copied from the zero border
        lines += [f"{i2}_col = {step.cols}[{'_r' if step.cols_per_sample else '0'}]"
                  + (f"[:{ckk}]" if step.ones_row else ""),
                  f"{i2}_x3 = {step.x}[_r].reshape(({cin}, {h}, {w}))",
                  *_im2col(step, i2),
                  f"{i2}_z2 = {step.out}[_r].reshape(({maps}, {n}))", *product("gemm_nn", "_W2", "_col", "_z2")]
        if step.bias:  # extents read from the array: with constants LLVM unrolled this loop whole (0.8 s of
            # basic_conv's sgd_epoch compile, for no faster a loop)
            lines += [f"{i2}for _f in range({maps}):", f"{i3}_bf = {step.bias}[_f]",
                      f"{i3}for _k in range(_z2.shape[1]):", f"{i3}{_IND}_z2[_f, _k] += _bf"]
        return lines
    # input: ∂C/∂x[r] = col2im(Wᵀ·δ[r]), reads outside x dropped
    lines += [f"{i2}_d2 = {g.buffer}[_r].reshape(({maps}, {n}))", *product("gemm_tn", "_W2", "_d2", step.dcol),
              f"{i2}_g3 = {step.out}[_r].reshape(({cin}, {h}, {w}))"]
    return lines + _col2im(step, i2)


def _im2col(step: Correlation, ind: str, col0: str = "") -> list[str]:
    """One sample's patches (``_x3``) into ``_col`` (from column ``col0``, an expression; the first by default):
    through the padded, phase-split sample where the layer needs it, else straight from the sample."""
    return _phased_im2col(step, ind, col0) if step.phased else _chunked_im2col(step, ind, col0)


def _col2im(step: Correlation, ind: str, col0: str = "") -> list[str]:
    """∂C/∂x of one sample (``_g3``) from its columns of ``step.dcol`` (from column ``col0``, an expression; the
    first by default): each element written once where that code stays small, else gathered row by row."""
    once = _col2im_once(step, ind, col0)
    if once is not None:
        return once
    return ([] if step.accumulate else [f"{ind}_g3[...] = 0.0"]) + _row_col2im(step, ind, col0)


def _grouped_forward(step: Correlation, ind: str) -> list[str]:
    """The forward product of ``step.group`` samples at a time: im2col of each sample into its block of columns of
    ``step.cols`` (patch rows × samples·Ho·Wo: the mini-batch's samples side by side where the weights step reads
    the patches again, else the group's), one product W·[col₀ … col_G₋₁] into ``step.dgroup``, then each
    sample's block of it into z (with the bias)."""
    (cin, h, w), (kh, kw), (maps, ho, wo) = step.in_shape, step.kernel, step.out_shape
    ckk, n, G, rows = cin * kh * kw, ho * wo, step.group, step.rows
    first = "_r0" if step.cols_per_sample else "0"  # the group's first column block
    i = [ind + _IND * k for k in range(5)]
    lines = [f"{i[0]}for _r0 in range(0, {rows}, {G}):",
             f"{i[1]}_ng = min({G}, {rows} - _r0)",
             f"{i[1]}_col = {step.cols}",
             f"{i[1]}for _s in range(_ng):",
             # chunked: the patch elements in the padding are never written (each sample's block of columns keeps
             # the zeros the buffer was made with); phased: they are copied from the zero border
             f"{i[2]}_c0 = ({'_r0 + _s' if step.cols_per_sample else '_s'}) * {n}",
             f"{i[2]}_x3 = {step.x}[_r0 + _s].reshape(({cin}, {h}, {w}))",
             *_im2col(step, i[2], "_c0"),
             f"{i[1]}_rt.gemm_nn(_W2, {step.cols}[:{ckk}, {first} * {n}:({first} + _ng) * {n}], "
             f"{step.dgroup}[:, :_ng * {n}], 1.0, 0.0)",
             f"{i[1]}for _s in range(_ng):",  # (extents read from the arrays: constants get unrolled whole)
             f"{i[2]}_z2 = {step.out}[_r0 + _s].reshape(({maps}, {n}))",
             f"{i[2]}for _f in range(_z2.shape[0]):",
             f"{i[3]}_bf = {f'{step.bias}[_f]' if step.bias else '0.0'}",
             f"{i[3]}for _k in range(_z2.shape[1]):",
             f"{i[4]}_z2[_f, _k] = {step.dgroup}[_f, _s * {n} + _k] + _bf"]
    return lines


def _grouped_input(step: Correlation, ind: str) -> list[str]:
    """The input gradient of ``step.group`` samples at a time: their δ side by side in ``step.dgroup`` (maps ×
    group·Ho·Wo), one product Wᵀ·δ into ``step.dcol``, then col2im of each sample from its block of columns."""
    (cin, h, w), (maps, ho, wo) = step.in_shape, step.out_shape
    n, G, rows = ho * wo, step.group, step.rows
    i = [ind + _IND * k for k in range(4)]
    return [f"{i[0]}for _r0 in range(0, {rows}, {G}):",
            f"{i[1]}_ng = min({G}, {rows} - _r0)",
            f"{i[1]}for _s in range(_ng):",  # (loops, extents read from the array: numba's slice assignment
            # cost 2.6 s of compile, and constant extents get unrolled whole)
            f"{i[2]}_d2 = {step.generic.g.buffer}[_r0 + _s].reshape(({maps}, {n}))",
            f"{i[2]}for _f in range(_d2.shape[0]):",
            f"{i[3]}for _k in range(_d2.shape[1]):",
            f"{i[3]}{_IND}{step.dgroup}[_f, _s * {n} + _k] = _d2[_f, _k]",
            f"{i[1]}_rt.gemm_tn(_W2, {step.dgroup}[:, :_ng * {n}], {step.dcol}[:, :_ng * {n}], 1.0, 0.0)",
            f"{i[1]}for _s in range(_ng):",
            f"{i[2]}_g3 = {step.out}[_r0 + _s].reshape(({cin}, {h}, {w}))",
            *_col2im(step, i[2], col0=f"_s * {n}")]



# ------------------------------------------------------------------------------ a map's bias sums
@numba_step.register
def _(step: MapSums, ind):
    return [_comment(ind, step.eq), f"{ind}_g2 = {_view(step.g, (step.maps * step.n,), step.rows)}",
            *_map_sums("_g2", step.out, step.alpha, step.beta, step.maps, step.n, step.rows, ind)]



__all__: list[str] = []  # registrations only
