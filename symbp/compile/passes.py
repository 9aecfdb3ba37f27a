"""Passes over kernel programs: declared maps whose sums have a known shape become fast steps.

Takes: a ``Program`` (``symbp.compile.program``).  Gives: the same program with steps replaced where a pass
recognises the shape of a sum, whatever layer it came from:

- ``dense_products``: a sum Σ_k P[j,k]·x[k] of a parameter P and the flat input (one output index j, one
  reduction index k, indices plain variables, extents those of P) is a BLAS ``Gemm`` z = x·Pᵀ; its derived
  adjoints Σ_j δ[j]·P[j,k] (the input gradient) and Σ_r δ[r,j]·x[r,k] (∂C/∂P, or its SGD step) are ``Gemm``s too.
- ``bias_maps``: a term P[j] without reduction, added to a flat output, is an elementwise ``Map`` z += P, and its
  adjoint Σ_r δ[r, j] a ``ColSum``; added to the maps of an image output (P[f] to z[f,i,j]), its adjoint
  Σ_{r,i,j} δ[r,f,i,j] is ``MapSums`` (each map summed in fixed-order float64 partial sums), or, after a
  correlation's weights step, part of its products (below).
- ``correlations``: a sum Σ_{c,p,q} P[f,c,p,q]·x[c, s·i + d·p + o, s′·j + d′·q + o′] (any stride, dilation and
  padding; also grouped, z[k,f,i,j] = Σ P[mg·k+f,c,p,q]·x[cg·k+c,…], and depthwise,
  Σ_{p,q} P[f,0,p,q]·x[f,…], which make their products per group) is a ``Correlation``: im2col of each sample
  and a gemm, the map's bias P[f] that follows it added after each product; its input adjoint Pᵀ·δ and
  col2im, its parameter adjoint Σ_r δ·colᵀ over the patches the forward pass kept, with the bias's map sums
  that follow it made by the same products (a row of ones below the patches); all three products for several
  samples at once where a sample's product is large and narrow (``GROUP_COLUMNS``) (numba; the NumPy backend
  runs the replaced steps).
- ``window_maxima``: z[c,i,j] = max(x[c, ph·i+p, pw·j+q] for p < ph, q < pw) (non-overlapping windows, no
  padding) is a ``WindowMax`` that keeps each window's argmax, and its adjoint a ``ScatterMax`` to it.

The built-in ``Conv2D``, ``MaxPool`` and ``AvgPool`` are declarations, so these passes are their fast paths; a
whole declared map equal to a dense layer (``symbp.layers.recognise``) is lowered as ``Dense``.  Pooling before
a monotone σ is the lowering's (``symbp.compile.layers.declared``), as the derive stage states it.

Each replacement computes the same sum as the generic loops, in BLAS's order for products: ``model.plan()``
shows what each step became.  Everything not recognised stays generated loops (and the plan says so).
"""

from __future__ import annotations

import dataclasses

from symbp.compile.program import (
    Block,
    Buffer,
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
    elem,
    per_col,
)
from symbp.compile.symbols import b as _b
from symbp.compile.symbols import zr as _zr
from symbp.layers.index_map import Affine, read_symbol


def _plain(e: Affine, var: str) -> bool:
    return e == Affine.var(var)


def _dense_shape(step: IndexReduce):
    """(x operand, P operand) when ``step`` is Σ_k P[j,k]·x[k] exactly (see the module docstring), else None."""
    if step.kind != "sum" or step.accumulate or len(step.out_vars) != 1 or len(step.vars) != 1:
        return None
    if step.body != read_symbol(0) * read_symbol(1) or len(step.operands) != 2:
        return None
    (j,), ((k, n_k),) = step.out_vars, step.vars
    xs = [op for op in step.operands if op.per_row]
    ps = [op for op in step.operands if not op.per_row]
    if len(xs) != 1 or len(ps) != 1:
        return None
    x, p = xs[0], ps[0]
    if len(x.index) != 1 or not _plain(x.index[0], k) or x.shape != (n_k,):
        return None
    if len(p.index) != 2 or not (_plain(p.index[0], j) and _plain(p.index[1], k)):
        return None
    if p.shape != (step.out_shape[0], n_k):
        return None
    return x, p


def _bias_shape(step: IndexReduce):
    """The parameter operand when ``step`` adds P[j] to a flat output (no reduction), else None."""
    if step.kind != "sum" or not step.accumulate or step.vars or len(step.out_vars) != 1:
        return None
    if step.body != read_symbol(0) or len(step.operands) != 1:
        return None
    p = step.operands[0]
    if p.per_row or len(p.index) != 1 or not _plain(p.index[0], step.out_vars[0]) or p.shape != step.out_shape:
        return None
    return p


def _map_bias_shape(step: IndexReduce):
    """(maps, positions per map) when ``step`` adds P[f] to an image output z[f,i,j] (or P[mg·k+f] to a grouped
    one, z[k,f,i,j]), no reduction, else None."""
    if step.kind != "sum" or not step.accumulate or step.vars or len(step.out_vars) not in (3, 4):
        return None
    if step.body != read_symbol(0) or len(step.operands) != 1:
        return None
    p, out = step.operands[0], step.out_shape
    if p.per_row or len(p.index) != 1:
        return None
    if len(out) == 3:
        maps, n, index = out[0], out[1] * out[2], Affine.var(step.out_vars[0])
    else:
        k, f = step.out_vars[:2]
        maps, n, index = out[0] * out[1], out[2] * out[3], Affine.var(k).scale(out[1]) + Affine.var(f)
    return (maps, n) if p.index[0] == index and p.shape == (maps,) else None


def _axis(e: Affine, i: str, p: str):
    """(stride, dilation, offset) when e = s·i + d·p + o with s, d ≥ 1, else None."""
    s, d = e.coeff(i), e.coeff(p)
    if e.den != 1 or s < 1 or d < 1 or set(e.vars) != {i, p}:
        return None
    return s, d, e.const


def _group_axes(step: IndexReduce, w, x):
    """(groups, maps, f, i, j, c, nc, p, kh, q, kw) of the three forms of a correlation's sum: plain
    Σ_{c,p,q} P[f,c,p,q]·x[c,…] (groups 1); grouped z[k,f,i,j] = Σ_{c,p,q} P[mg·k+f,c,p,q]·x[cg·k+c,…];
    depthwise z[f,i,j] = Σ_{p,q} P[f,0,p,q]·x[f,…] — else None."""
    out, vs = step.out_shape, step.vars
    if len(step.out_vars) == 3 and len(vs) == 3:
        f, i, j = step.out_vars
        (c, nc), (p, kh), (q, kw) = vs
        if all(_plain(e, v) for e, v in zip(w.index, (f, c, p, q))) and _plain(x.index[0], c):
            return 1, out[0], f, i, j, c, nc, p, kh, q, kw
    if len(step.out_vars) == 4 and len(vs) == 3:
        k, f, i, j = step.out_vars
        (c, nc), (p, kh), (q, kw) = vs
        g, mg = out[0], out[1]
        if (w.index[0] == Affine.var(k).scale(mg) + Affine.var(f) and _plain(w.index[1], c)
                and x.index[0] == Affine.var(k).scale(nc) + Affine.var(c) and x.shape[0] == g * nc):
            return g, g * mg, f, i, j, c, nc, p, kh, q, kw
    if len(step.out_vars) == 3 and len(vs) == 2:
        f, i, j = step.out_vars
        (p, kh), (q, kw) = vs
        if _plain(w.index[0], f) and w.index[1] == Affine.of({}) and _plain(x.index[0], f) \
                and x.shape[0] == out[0]:
            return out[0], out[0], f, i, j, None, 1, p, kh, q, kw
    return None


def _correlation_shape(step: IndexReduce):
    """The geometry of Σ_{c,p,q} P[f,c,p,q]·x[c, s·i+d·p+o, s′·j+d′·q+o′] (or its grouped or depthwise form,
    ``_group_axes``), else None."""
    if step.kind != "sum" or step.accumulate or len(step.out_vars) not in (3, 4):
        return None
    if step.body != read_symbol(0) * read_symbol(1) or len(step.operands) != 2:
        return None
    xs = [op for op in step.operands if op.per_row]
    ps = [op for op in step.operands if not op.per_row]
    if len(xs) != 1 or len(ps) != 1 or len(xs[0].shape) != 3 or len(ps[0].shape) != 4:
        return None
    x, w = xs[0], ps[0]
    axes = _group_axes(step, w, x)
    if axes is None:
        return None
    groups, maps, f, i, j, c, nc, p, kh, q, kw = axes
    if c is not None and not _plain(w.index[1], c):
        return None
    if not (_plain(w.index[2], p) and _plain(w.index[3], q)):
        return None
    rows, cols = _axis(x.index[1], i, p), _axis(x.index[2], j, q)
    if rows is None or cols is None or w.shape != (maps, nc, kh, kw) or x.shape[0] != groups * nc:
        return None
    ho, wo = step.out_shape[-2:]
    return dict(x=x, W=w, in_shape=tuple(x.shape), kernel=(kh, kw), out_shape=(maps, ho, wo),
                stride=(rows[0], cols[0]), dilation=(rows[1], cols[1]), offset=(rows[2], cols[2]), groups=groups)


def _window_max_shape(step: IndexReduce):
    """(input operand, (ph, pw)) when ``step`` is z[c,i,j] = max(x[c, ph·i+p, pw·j+q] for p < ph, q < pw) over
    the whole input (non-overlapping windows, no padding, the remainder dropped), else None."""
    if step.kind != "max" or step.accumulate or len(step.out_vars) != 3 or len(step.vars) != 2:
        return None
    if step.body != read_symbol(0) or len(step.operands) != 1:
        return None
    x, (c, i, j), ((p, ph), (q, pw)) = step.operands[0], step.out_vars, step.vars
    if not x.per_row or len(x.shape) != 3 or not _plain(x.index[0], c):
        return None
    if x.index[1] != Affine.var(i).scale(ph) + Affine.var(p) or x.index[2] != Affine.var(j).scale(pw) + Affine.var(q):
        return None
    cin, h, w = x.shape
    return (x, (ph, pw)) if step.out_shape == (cin, h // ph, w // pw) else None


def _correlation(step, role, geo, **kw):
    return Correlation(role, step, geo["x"].buffer, geo["W"].buffer, kw.pop("out"), f"cols_{kw.pop('z')}",
                       kw.pop("dcol", None), kw.pop("rows"), geo["in_shape"], geo["kernel"], geo["out_shape"],
                       geo["stride"], geo["dilation"], geo["offset"], groups=geo["groups"], **kw)


def _rewrite(step):
    if isinstance(step, IndexReduce):
        corr = _correlation_shape(step)
        if corr is not None:
            return _correlation(step, "forward", corr, out=step.out, z=step.out, rows=step.rows,
                                eq=f"{step.out}: im2col + gemm (correlation found in: {step.eq})")
        dense = _dense_shape(step)
        if dense is not None:
            x, p = dense
            return Gemm(step.out, x.buffer, p.buffer, False, True,
                        eq=f"{step.out} = {x.buffer} · {p.buffer}ᵀ  (dense product found in: {step.eq})")
        window = _window_max_shape(step)
        if window is not None:
            x, (ph, pw) = window
            return WindowMax(step.out, x.buffer, step.argmax, step.rows, tuple(x.shape), (ph, pw),
                             eq=f"{step.out} = max over {ph}x{pw} windows of {x.buffer}  (window max found in: "
                                f"{step.eq})")
        bias = _bias_shape(step)
        if bias is not None:
            n = step.out_shape[0]
            return Map(step.rows, n, {_zr: elem(step.out), _b: per_col(bias.buffer)}, [(elem(step.out), _zr + _b)],
                       eq=f"{step.out} += {bias.buffer}  (bias found in: {step.eq})")
        return step
    if isinstance(step, IndexGather):
        corr = _correlation_shape(step.forward)
        read = step.forward.operands[step.read]
        if corr is not None and read is corr["x"] and step.per_sample and (step.alpha, step.beta) == ("1.0", "0.0"):
            return _correlation(step, "input", corr, out=step.target, z=step.forward.out, rows=step.rows,
                                dcol=f"dcol_{step.forward.out}", accumulate=step.accumulate,
                                eq=f"{step.target}: Wᵀ·δ + col2im (the input gradient of a correlation: {step.eq})")
        if corr is not None and read is corr["W"] and not step.per_sample and not step.accumulate:
            return _correlation(step, "weights", corr, out=step.target, z=step.forward.out, rows=step.rows,
                                alpha=step.alpha, beta=step.beta,
                                eq=f"{step.target}: Σ δ·colᵀ over the kept patches ({step.eq})")
    if isinstance(step, IndexScatterMax):
        window = _window_max_shape(step.forward)
        if (window is not None and step.per_sample and step.read == 0 and step.factor == 1 and not step.accumulate
                and (step.alpha, step.beta) == ("1.0", "0.0")):
            x, (ph, pw) = window
            return ScatterMax(step.target, step.g.buffer, step.argmax, step.forward.rows, tuple(x.shape), (ph, pw),
                              eq=f"{step.target} = {step.g.buffer} at each window's maximum, 0 elsewhere  "
                                 f"({step.eq})")
    if isinstance(step, IndexGather) and not step.accumulate:
        fwd = step.forward
        dense = _dense_shape(fwd)
        if dense is not None:
            x, p = dense
            read = fwd.operands[step.read]
            if read is x and step.per_sample:  # ∂C/∂x = δ · P
                return Gemm(step.target, step.g.buffer, p.buffer, False, False, step.alpha, step.beta,
                            eq=f"{step.target} = {step.g.buffer} · {p.buffer}  (the input gradient as a product: "
                               f"{step.eq})")
            if read is p and not step.per_sample:  # ∂C/∂P = δᵀ · x, or its SGD step
                return Gemm(step.target, step.g.buffer, x.buffer, True, False, step.alpha, step.beta,
                            eq=f"{step.target} = ({step.alpha})·{step.g.buffer}ᵀ · {x.buffer} + ({step.beta})·"
                               f"{step.target}  (as a product: {step.eq})")
        image = _map_bias_shape(fwd)
        if image is not None and not step.per_sample and step.factor == 1:
            return MapSums(step.target, step.g.buffer, fwd.rows, *image, step, step.alpha, step.beta,
                           eq=f"{step.target} = ({step.alpha})·Σ over each map of {step.g.buffer} + ({step.beta})·"
                              f"{step.target}  (the sums of a map's bias: {step.eq})")
        bias = _bias_shape(fwd)
        if bias is not None and not step.per_sample and step.factor == 1:
            return ColSum(step.target, step.g.buffer, fwd.rows, fwd.out_shape[0], step.alpha, step.beta,
                          eq=f"{step.target} = ({step.alpha})·Σ {step.g.buffer} + ({step.beta})·{step.target}  "
                             f"(a column sum: {step.eq})")
    return step


def _fuse_bias(out: list, step) -> bool:
    """Adds a per-map bias term z[f,i,j] += P[f] (unreplaced ``step``) to the forward correlation just before it
    that wrote the same z (``out[-1]``), as network3 does: each sample's maps get their bias after the product."""
    prev = out[-1] if out else None
    if not (isinstance(prev, Correlation) and prev.role == "forward" and prev.bias is None
            and isinstance(step, IndexReduce) and step.out == prev.out):
        return False
    image = _map_bias_shape(step)
    if image is None or image != (prev.out_shape[0], prev.out_shape[1] * prev.out_shape[2]):
        return False
    prev.bias, prev.bias_generic = step.operands[0].buffer, step
    prev.eq += f"; + {prev.bias}[f] after each sample's product ({step.eq})"
    return True


def _fuse_bias_sums(out: list, step) -> bool:
    """Makes a map's bias sums (``step``, a ``MapSums``) of the δ that the weights correlation just before it
    (``out[-1]``) multiplies part of that correlation's products: a row of ones below the patches gives each
    map's sum as the product's last column, so δ is not read again.  Not for grouped correlations (a group's
    patches have no row of their own below them)."""
    prev = out[-1] if out else None
    if not (isinstance(step, MapSums) and isinstance(prev, Correlation) and prev.role == "weights"
            and prev.bias is None and prev.groups == 1 and prev.rows == step.rows
            and getattr(prev.generic, "g", None) is not None and prev.generic.g.buffer == step.g
            and (step.maps, step.n) == (prev.out_shape[0], prev.out_shape[1] * prev.out_shape[2])):
        return False
    prev.bias, prev.bias_generic, prev.bias_alpha, prev.bias_beta = step.out, step, step.alpha, step.beta
    prev.eq += f"; {step.out} = ({step.alpha})·Σ over each map of {step.g} + ({step.beta})·{step.out} from the " \
               f"same products ({step.eq})"
    return True


def _walk(steps: list) -> list:
    out = []
    for s in steps:
        if isinstance(s, Block):
            out.append(Block(s.label, _walk(s.steps), s.eq))
        elif isinstance(s, Loop):
            out.append(Loop(_walk(s.body), s.eq))
        elif not _fuse_bias(out, s):
            r = _rewrite(s)
            if not _fuse_bias_sums(out, r):
                out.append(r)
    return out


#: A correlation's three products (W·col, Wᵀ·δ, Σ col·δᵀ) take several samples side by side (``Correlation.group``,
#: up to ``GROUP_COLUMNS`` columns) where a sample's maps have at most ``GROUP_MAP_SIZE`` positions and its product
#: at least ``GROUP_MIN_WORK`` multiply-adds: the forward pass writes each sample's patches into its block of
#: columns, and the samples' δ (and the forward's maps) go through a scratch of the group's columns.  Measured with
#: OpenBLAS (SkylakeX kernels), float32, mini-batch 10, µs per mini-batch, one product per sample against grouped:
#: dbl_conv's second layer (40 maps of 8×8, 500 patch rows, 1.28M multiply-adds a sample): Wᵀ·δ 162 → 129 (the
#: copy of δ included), and with NumPy W·col 165 → 140, Σ col·δᵀ 185 → 155; the modern net's 32 maps of 14×14
#: (144 rows) Wᵀ·δ 73 → 107 and of 7×7 (288 rows, 451k) 43 → 50, and with NumPy dbl_conv's first layer (20 maps
#: of 24×24, 25 rows) W·col 34 → 40 and Σ col·δᵀ 49–53 → 82–110, so those stay per sample (with Haswell kernels
#: the first three Wᵀ·δ went 254 → 229, 178 → 183, 101 → 83).  benchmarks/results/2026-12-07-conv-grouped-products.
GROUP_COLUMNS = 640
GROUP_MAP_SIZE = 64
GROUP_MIN_WORK = 1_000_000


def samples_per_product(maps: int, positions: int, patch_rows: int, groups: int = 1) -> int:
    """How many samples a correlation's products take at once (see ``GROUP_COLUMNS``): 1, or more where a
    sample's ``maps`` × ``patch_rows`` × ``positions`` product is large and its maps small (ungrouped
    correlations only)."""
    if groups > 1 or positions > GROUP_MAP_SIZE or maps * patch_rows * positions < GROUP_MIN_WORK:
        return 1
    return max(1, GROUP_COLUMNS // positions)


def _group(s: Correlation) -> int:
    return samples_per_product(s.out_shape[0], s.out_shape[1] * s.out_shape[2],
                               s.in_shape[0] * s.kernel[0] * s.kernel[1], s.groups)


def _correlation_buffers(steps: list) -> list[Buffer]:
    """The patches of every correlation (one matrix per sample where a weights step reads them again, else one;
    for a layer with ``group`` > 1 one matrix of patch rows × samples·positions, the mini-batch's samples side by
    side where they are kept, else a group's; with a last row of ones where the weights step makes the bias sums
    too) and the weights steps' sums, the input gradients' column buffers, the scratch of a grouped layer's
    maps or δ side by side (``GROUP_COLUMNS``), and the padded, phase-split copies of a sample
    (``Correlation.phases``)."""
    flat = []

    def visit(ss):
        for s in ss:
            inner = getattr(s, "steps", None) if isinstance(s, Block) else getattr(s, "body", None)
            if isinstance(s, (Block, Loop)):
                visit(inner)
            elif isinstance(s, Correlation):
                flat.append(s)
    visit(steps)
    kept = {s.cols for s in flat if s.role == "weights"}
    ones = {s.cols for s in flat if s.role == "weights" and s.bias}
    out: dict[str, Buffer] = {}
    for s in flat:
        ckk, n = s.in_shape[0] * s.kernel[0] * s.kernel[1], s.out_shape[1] * s.out_shape[2]
        s.ones_row = s.cols in ones
        s.group = _group(s)
        if s.group > 1:  # the maps (forward) or δ (backward) of a group of samples side by side
            out[s.dgroup] = Buffer(s.dgroup, (s.out_shape[0], s.group * n))
        if s.role == "forward":
            s.cols_per_sample = s.cols in kept
            if s.group > 1:  # patch rows × samples·positions: the mini-batch's samples (kept), or a group's
                out[s.cols] = Buffer(s.cols, (ckk + s.ones_row, f"{s.rows} * {n}" if s.cols_per_sample
                                              else s.group * n))
            else:
                out[s.cols] = Buffer(s.cols, (s.rows if s.cols_per_sample else 1, ckk + s.ones_row, n))
        if s.role == "weights" and s.groups == 1:  # Σ_r colᵣ·δ[r]ᵀ (patches × maps; the ones row's sums last)
            out[s.sums] = Buffer(s.sums, (ckk + bool(s.bias), s.out_shape[0]))
        if s.role == "input":
            out[s.dcol] = Buffer(s.dcol, (ckk, s.group * n))
        if s.phased:  # the padded, phase-split sample (its border stays zero)
            _, _, hp, sw, wq = s.phases()
            name = "xph_" + s.cols.removeprefix("cols_")
            out[name] = Buffer(name, (s.in_shape[0], hp, sw, wq))
    return list(out.values())


def optimise(program):
    """The program with every recognised declared-map step replaced by its fast form (and the buffers those
    need)."""
    steps = _walk(program.steps)
    extra = [b for b in _correlation_buffers(steps) if program.buffer(b.name) is None]
    return dataclasses.replace(program, steps=steps, buffers=list(program.buffers) + extra)


__all__ = ["optimise", "samples_per_product"]
