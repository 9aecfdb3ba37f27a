"""Which built-in kind a declared map equals, whatever its names: the recognition passes over declared maps.

Takes: a ``Declared`` layer and its ``Geometry``.  Gives: ``as_correlation`` — (``Conv2D``, weight name, bias name)
for z[f,i,j] = Σ_{c,p,q} P[f,c,p,q]·x[c,i+p,j+q] + B[f] over the whole input (a valid stride-1 correlation);
``as_dense`` — (``Dense``, weight name, bias name) for z[j] = Σ_k P[j,k]·x[k] + B[j];
``as_window_max`` — ``MaxPool`` for z[c,i,j] = max(x[c,ph·i+p, pw·j+q] for p < ph, q < pw) with no activation
(non-overlapping windows, the remainder dropped).  The compile stage lowers such a layer exactly as that kind
(im2col + gemm, window max with argmax, pooling before a monotone σ), so it trains bit for bit like it.
"""

from __future__ import annotations

import sympy as sp

from symbp.layers.index_map import Affine, read_symbol


def _is_var(e: Affine, name: str) -> bool:
    return e == Affine.var(name)


def _bias_ok(layer, bias, var: str, weight: str, n: int) -> bool:
    """The bias term reads a parameter of its own, of shape (n,), at the output's first index."""
    b = bias.reads[0]
    return (len(b.index) == 1 and _is_var(b.index[0], var) and b.array != weight
            and dict(layer.params).get(b.array) == (n,))


def as_correlation(layer, geo):
    """(Conv2D, weight name, bias name) when a declared map is a valid stride-1 correlation plus a bias,
    z[f,i,j] = Σ_{c,p,q} P[f,c,p,q]·x[c,i+p,j+q] + B[f] with the extents of the whole input (whatever the
    names), else None: such a layer is lowered as im2col + gemm, exactly as ``sb.Conv2D``."""
    from symbp.layers.conv import Conv2D

    if getattr(layer, "index_map", None) is None:  # not a declared map
        return None
    imap = layer.index_map
    if len(imap.terms) != 2 or len(imap.out_vars) != 3 or len(geo.x_shape) != 3:
        return None
    conv, bias = imap.terms
    f, i, j = imap.out_vars
    if conv.kind != "sum" or len(conv.vars) != 3 or conv.body != read_symbol(0) * read_symbol(1):
        return None
    if bias.kind != "sum" or bias.vars or bias.body != read_symbol(0) or bias.reads[0].array == "x":
        return None
    (c, nc), (p, kh), (q, kw) = conv.vars
    xs = [r for r in conv.reads if r.array == "x"]
    ws = [r for r in conv.reads if r.array != "x"]
    if len(xs) != 1 or len(ws) != 1:
        return None
    x, w = xs[0], ws[0]
    if not all(_is_var(e, v) for e, v in zip(w.index, (f, c, p, q))):
        return None
    if not (_is_var(x.index[0], c) and x.index[1] == Affine.var(i) + Affine.var(p)
            and x.index[2] == Affine.var(j) + Affine.var(q)):
        return None
    if not _bias_ok(layer, bias, f, w.array, geo.out[0]):
        return None
    (cin, h, wd), (maps, ho, wo) = geo.x_shape, geo.out
    if (nc, ho, wo) != (cin, h - kh + 1, wd - kw + 1) or dict(layer.params)[w.array] != (maps, cin, kh, kw):
        return None
    if layer.activation.vector:
        return None
    return Conv2D(maps, (kh, kw), layer.activation), w.array, bias.reads[0].array


def as_window_max(layer, geo):
    """MaxPool when a declared map is z[c,i,j] = max(x[c,ph·i+p, pw·j+q] for p < ph, q < pw) over the whole
    input (non-overlapping windows, the remainder dropped) with no activation, else None."""
    from symbp.layers.pool import MaxPool

    if getattr(layer, "index_map", None) is None:  # not a declared map
        return None
    imap = layer.index_map
    if not imap.is_max or len(imap.out_vars) != 3 or len(geo.x_shape) != 3:
        return None
    term = imap.terms[0]
    c, i, j = imap.out_vars
    if len(term.vars) != 2 or term.body != read_symbol(0) or len(term.reads) != 1:
        return None
    (p, ph), (q, pw) = term.vars
    x = term.reads[0]
    if x.array != "x" or not _is_var(x.index[0], c):
        return None
    if x.index[1] != Affine.var(i).scale(ph) + Affine.var(p) or x.index[2] != Affine.var(j).scale(pw) + Affine.var(q):
        return None
    cin, h, w = geo.x_shape
    if geo.out != (cin, h // ph, w // pw) or layer.activation.expr != sp.Symbol("z", real=True):
        return None
    return MaxPool((ph, pw))


def as_dense(layer, geo):
    """(Dense, weight name, bias name) when a declared map is z[j] = Σ_k P[j,k]·x[k] + B[j] over the whole
    (flattened) input, else None."""
    from symbp.layers.dense import Dense

    if getattr(layer, "index_map", None) is None:
        return None
    imap = layer.index_map
    if len(imap.terms) != 2 or len(imap.out_vars) != 1 or len(geo.x_shape) != 1:
        return None
    prod, bias = imap.terms
    (j,) = imap.out_vars
    if prod.kind != "sum" or len(prod.vars) != 1 or prod.body != read_symbol(0) * read_symbol(1):
        return None
    if bias.kind != "sum" or bias.vars or bias.body != read_symbol(0) or bias.reads[0].array == "x":
        return None
    ((k, n_in),) = prod.vars
    xs = [r for r in prod.reads if r.array == "x"]
    ws = [r for r in prod.reads if r.array != "x"]
    if len(xs) != 1 or len(ws) != 1 or not _is_var(xs[0].index[0], k) or n_in != geo.x_shape[0]:
        return None
    w = ws[0]
    if len(w.index) != 2 or not (_is_var(w.index[0], j) and _is_var(w.index[1], k)):
        return None
    if not _bias_ok(layer, bias, j, w.array, geo.out[0]) or dict(layer.params)[w.array] != (geo.out[0], n_in):
        return None
    return Dense(geo.out[0], layer.activation), w.array, bias.reads[0].array
