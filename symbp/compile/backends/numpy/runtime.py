"""The NumPy backend's runtime: what its generated code calls besides NumPy itself.

Gives: the dropout masks (``stream_key_np``, ``uniform_np``: ``symbp.compile.backends.masks`` on arrays, the
numba kernels' bits), ``np_softplus``, and the declared maps' steps.  Those take views of the kernel's buffers,
the map's body (a generated function of the operand values) and each operand's index function (generated from
its affine index): ``reduce`` (a term's sum or max, with the argmax of a max), ``scatter`` (an adjoint as a
scatter over the forward positions, summed with ``np.bincount`` in a fixed order) and ``scatter_max`` (a max's
adjoint at the recorded argmax).

Vectorised over the rows, the output positions and the innermost reduction variables (as many as keep a block
near ``BLOCK`` numbers); the outer reduction variables are Python loops.  Reads of a padded operand outside its
extents are 0, or left out of a max.  Only NumPy is imported: the backend needs no numba.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from symbp.compile.backends import masks


def stream_key_np(seed, epoch, layer):
    """``masks.stream_key`` (the same bits as the numba kernels')."""
    with np.errstate(over="ignore"):
        return masks.stream_key(seed, epoch, layer)


def uniform_np(key, samples, units):
    """``masks.uniform`` over broadcast arrays of sample ids and unit indices (the same bits)."""
    with np.errstate(over="ignore"):
        return masks.uniform(key, np.asarray(samples), np.asarray(units))


def np_softplus(x):
    """log(1 + eˣ) = max(x, 0) + log1p(e^−|x|), exact for large |x|."""
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


#: numbers per row in one vectorised block (output positions × vectorised reduction positions)
BLOCK = 1 << 15
#: numbers in one block over all its rows
ROWS_BLOCK = 1 << 21


def _split(out_shape, term_vars):
    """(Python-looped variables, vectorised variables): the innermost variables while the block stays small."""
    size, cut = math.prod(out_shape), len(term_vars)
    while cut > 0 and size * term_vars[cut - 1][1] <= BLOCK:
        size *= term_vars[cut - 1][1]
        cut -= 1
    return tuple(term_vars[:cut]), tuple(term_vars[cut:])


def _grids(out_vars, out_shape, vec):
    """Broadcast aranges, shape (O…, V…) in all: output positions first, then the vectorised variables."""
    names = list(out_vars) + [v for v, _ in vec]
    extents = list(out_shape) + [n for _, n in vec]
    k = len(names)
    return {v: np.arange(n).reshape([n if a == d else 1 for a in range(k)]) for d, (v, n) in
            enumerate(zip(names, extents))}, tuple(extents)


def _take(arr, per_row, shape, padded, idx, rows: slice, row_index=None):
    """arr at idx (broadcast arrays or ints, one per axis), for the rows ``rows`` when ``per_row``; with
    ``row_index`` (an array broadcasting against idx), one row per element.  Gives (values, inside-mask)."""
    idx = [np.asarray(i) for i in idx]
    mask = None
    if padded:
        mask = np.ones(np.broadcast_shapes(*(i.shape for i in idx)), bool)
        for i, n in zip(idx, shape):
            mask &= (i >= 0) & (i < n)
        idx = [np.clip(i, 0, n - 1) for i, n in zip(idx, shape)]
    if not per_row:
        val = arr[tuple(idx)]
    elif row_index is not None:
        val = arr[(row_index, *idx)]
    else:
        val = arr[rows][(slice(None), *idx)]
    if mask is not None:
        val = np.where(mask if row_index is not None or not per_row else mask[None], val, 0.0)
    return val, mask


def _row_blocks(n_rows, per_row_numbers):
    step = max(1, ROWS_BLOCK // max(1, per_row_numbers))
    for r0 in range(0, n_rows, step):
        yield slice(r0, min(n_rows, r0 + step))


def reduce(out, kind, body, operands, out_vars, out_shape, term_vars, accumulate=False, argmax=None):
    """out[r, o…] (+)= Σ or max over ``term_vars`` of body(operand values): ``operands`` are (array, per_row,
    shape, padded, index) with index(env) giving the index tuple from the variables' values."""
    loop, vec = _split(out_shape, term_vars)
    env0, full = _grids(out_vars, out_shape, vec)
    n_vec, vaxes = math.prod(n for _, n in vec), tuple(range(1 + len(out_shape), 1 + len(full)))
    for rows in _row_blocks(out.shape[0], math.prod(full)):
        count = rows.stop - rows.start
        acc = np.zeros((count, *out_shape)) if kind == "sum" else None
        best, at = None, None
        for k, values in enumerate(itertools.product(*(range(n) for _, n in loop))):
            env = env0 | dict(zip((v for v, _ in loop), values))
            vals, inside = [], None
            for arr, per_row, shape, padded, index in operands:
                val, mask = _take(arr, per_row, shape, padded, index(**env), rows)
                vals.append(val)
                if mask is not None and kind == "max":
                    inside = mask if inside is None else inside & mask
            v = np.broadcast_to(np.asarray(body(*vals), dtype=np.float64), (count, *full))
            if kind == "sum":
                acc += v.sum(axis=vaxes) if vaxes else v
                continue
            if inside is not None:
                v = np.where(inside[None], v, -np.inf)
            flat = v.reshape(count, *out_shape, n_vec)
            blk_at = flat.argmax(axis=-1)
            blk_best = np.take_along_axis(flat, blk_at[..., None], axis=-1)[..., 0]
            if best is None:
                best, at = blk_best, blk_at + k * n_vec
            else:
                better = blk_best > best  # strictly: the first maximum in generator order stays
                best, at = np.where(better, blk_best, best), np.where(better, blk_at + k * n_vec, at)
        result = acc if kind == "sum" else best
        if accumulate:
            out[rows] += result
        else:
            out[rows] = result
        if argmax is not None:
            argmax[rows] = at


def scatter(target, per_sample, body_grad, operands, g, g_index, read_index, read_shape, read_padded, out_vars,
            out_shape, term_vars, alpha=1.0, beta=0.0, accumulate=False):
    """An adjoint as a scatter over the forward positions: target[e(o, r)] += g[o]·∂body/∂read for every row,
    output position o and reduction position r (``body_grad`` of the operand values; ``read_index`` the
    differentiated read's index).  Per-sample targets (``per_sample``: the layer's input gradient) keep their
    rows; parameters sum them.  Then target = α·Σ + β·target (``accumulate``: target += α·Σ)."""
    loop, vec = _split(out_shape, term_vars)
    env0, full = _grids(out_vars, out_shape, vec)
    size = math.prod(read_shape)
    strides = [math.prod(read_shape[d + 1:]) for d in range(len(read_shape))]
    total = None if per_sample else np.zeros(size)
    n_rows = g.shape[0]
    for rows in _row_blocks(n_rows, math.prod(full)):
        count = rows.stop - rows.start
        acc = np.zeros(count * size) if per_sample else total
        row_off = (np.arange(count) * size).reshape([count] + [1] * len(full)) if per_sample else 0
        for values in itertools.product(*(range(n) for _, n in loop)):
            env = env0 | dict(zip((v for v, _ in loop), values))
            vals = [_take(arr, per_row, shape, padded, index(**env), rows)[0]
                    for arr, per_row, shape, padded, index in operands]
            gv = g[rows][(slice(None), *g_index(**env))]
            w = np.broadcast_to(gv * np.asarray(body_grad(*vals), dtype=np.float64), (count, *full))
            idx = [np.broadcast_to(np.asarray(i), full) for i in read_index(**env)]
            flat = sum(i * s for i, s in zip(idx, strides))
            if read_padded:
                ok = np.ones(full, bool)
                for i, n in zip(idx, read_shape):
                    ok &= (i >= 0) & (i < n)
                w = np.where(ok[None], w, 0.0)
                flat = np.where(ok, flat, 0)
            flat = np.broadcast_to(flat[None] + row_off, (count, *full))
            acc += np.bincount(flat.ravel(), weights=w.ravel(), minlength=acc.size)
        if per_sample:
            _store(target[rows], acc.reshape(count, size), alpha, beta, accumulate)
    if not per_sample:
        _store(target, total.reshape(target.shape), alpha, beta, accumulate)


def scatter_max(target, per_sample, body_grad, operands, g, argmax, read_index, read_shape, out_vars, out_shape,
                term_vars, alpha=1.0, beta=0.0, accumulate=False):
    """A max's adjoint: δ (times ∂body/∂read) to each window's recorded first maximum (``argmax``: the flat
    position in generator order), for every row and output position."""
    size = math.prod(read_shape)
    strides = [math.prod(read_shape[d + 1:]) for d in range(len(read_shape))]
    ext = [n for _, n in term_vars]
    n_rows = g.shape[0]
    grids, _ = _grids(out_vars, out_shape, ())
    total = None if per_sample else np.zeros(size)
    for rows in _row_blocks(n_rows, math.prod(out_shape)):
        count = rows.stop - rows.start
        at = argmax[rows].reshape(count, *out_shape)
        env = {v: grid[None] for v, grid in grids.items()}
        for d, (v, _) in enumerate(term_vars):
            env[v] = (at // math.prod(ext[d + 1:])) % ext[d]
        row_index = np.arange(rows.start, rows.stop).reshape([count] + [1] * len(out_shape))
        vals = [_take(arr, per_row, shape, padded, index(**env), rows, row_index)[0]
                for arr, per_row, shape, padded, index in operands]
        w = np.broadcast_to(g[rows] * np.asarray(body_grad(*vals), dtype=np.float64), (count, *out_shape))
        idx = [np.broadcast_to(np.asarray(i), (count, *out_shape)) for i in read_index(**env)]
        flat = sum(i * s for i, s in zip(idx, strides))
        if per_sample:
            flat = flat + (np.arange(count) * size).reshape([count] + [1] * len(out_shape))
            acc = np.bincount(flat.ravel(), weights=w.ravel(), minlength=count * size)
            _store(target[rows], acc.reshape(count, size), alpha, beta, accumulate)
        else:
            total += np.bincount(flat.ravel(), weights=w.ravel(), minlength=size)
    if not per_sample:
        _store(target, total.reshape(target.shape), alpha, beta, accumulate)


def _store(target, acc, alpha, beta, accumulate):
    if accumulate:
        target += alpha * acc
    elif beta == 0.0:
        target[...] = alpha * acc
    else:
        target[...] = alpha * acc + beta * target
