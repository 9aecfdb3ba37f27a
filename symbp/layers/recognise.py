"""Which built-in kind a declared map equals, whatever its names.

Takes: a ``Declared`` layer and its ``Geometry``.  Gives: ``as_dense`` — (``Dense``, weight name, bias name) for
z[j] = Σ_k P[j,k]·x[k] + B[j] over the whole (flattened) input: the compile stage lowers such a layer exactly
as ``Dense`` (its products, its bias added in the same pass), so it trains bit for bit like it.  Convolutions
and pools need no such recognition: they are declarations themselves, and the compile stage's passes
(``symbp.compile.passes``) find their fast forms in any declared map.
"""

from __future__ import annotations

from symbp.layers.dense import Dense
from symbp.layers.index_map import Affine, read_symbol


def _is_var(e: Affine, name: str) -> bool:
    return e == Affine.var(name)


def _bias_ok(layer, bias, var: str, weight: str, n: int) -> bool:
    """The bias term reads a parameter of its own, of shape (n,), at the output's first index."""
    b = bias.reads[0]
    return (len(b.index) == 1 and _is_var(b.index[0], var) and b.array != weight
            and dict(layer.params).get(b.array) == (n,))


def as_dense(layer, geo):
    """(Dense, weight name, bias name) when a declared map is z[j] = Σ_k P[j,k]·x[k] + B[j] over the whole
    (flattened) input, else None."""
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
