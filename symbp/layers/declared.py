"""A layer declared by its forward map in index notation.

Takes: a name, the map (text read by the index language of ``symbp.layers.index_map``, or sympy objects), the
output extents ``out`` (optional where they can be inferred), the parameters ``params`` (name → shape), an
activation (default linear) and optional initialisers.  Gives: ``Declared``, a layer kind like any other:
shapes, parameters, its part of the network's declaration (``config``: the map's text, re-read through the
whitelist parser; the kernel cache keys on it) and a plain NumPy reference of the forward map;
``geometry(in_shape)``, the map checked against a concrete input (every extent, every parameter read inside
its parameter, the buffers and the work bounded).

``x`` is the layer's input: read with as many indices as the input has axes (``x[c,i,j]`` after an image
layer), or with one (``x[k]``, the input flattened in (channel, row, column) order).  Reads of ``x`` outside its
extents are zero (zero padding), except inside ``max(...)``, where those window positions are left out.
Inferred extents: the largest such that no read of ``x`` passes the input's last row or column, and no read of
a parameter leaves it; give ``out`` for padding on the far side.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from symbp.activations import BUILTIN_ACTIVATIONS, Activation
from symbp.layers.base import (
    Layer,
    ParamSpec,
    activation_config,
    activation_from_config,
    as_activation,
    check_size,
    fan_in_weights,
    normal_biases,
    register_layer,
)
from symbp.layers.index_map import MAX_EXTENT, IndexMap, from_sympy, parse_map, positions, read_symbol
from symbp.paths import read_small_file
from symbp.symbols import numpy_function

#: Most output elements per sample, parameter elements per layer, and multiply-adds per sample.
MAX_OUT, MAX_PARAMS, MAX_WORK = 1 << 24, 1 << 28, 1 << 32
_NAME_OK = "a name of letters, digits and _ (not starting with a digit)"
_PARAM_NAME = re.compile(r"[A-Za-z][A-Za-z_]{0,15}")
#: names of the kernels' own buffers and functions (a parameter's buffer is its name + the layer number)
_RESERVED = frozenset({"x", "z", "a", "zp", "sp", "delta", "lse", "S", "argmax", "sum", "max", "range", "acc", "at",
                       "pos", "r", "out", "order", "np", "math"})


@dataclass(frozen=True)
class Geometry:
    """A declared map against a concrete input: ``x_shape`` (the input as the map reads it), ``out``, the extent of
    every index variable per term (``term_extents``), the parameters multiplying ``x`` (``weights``, with their
    ``fan_in``) and the others (biases)."""

    x_shape: tuple[int, ...]
    out: tuple[int, ...]
    term_extents: tuple[dict, ...]
    weights: frozenset
    fan_in: dict = field(hash=False)
    work: int = 0  # multiply-adds per sample of the forward map


@register_layer
@dataclass(frozen=True, eq=False)
class Declared(Layer):
    """z = the declared map of x and the parameters, then a = σ(z)."""

    name: str
    index_map: IndexMap
    params: tuple[tuple[str, tuple[int, ...]], ...]
    activation: Activation
    out: tuple[int, ...] | None = None
    inits: tuple[tuple[str, Callable], ...] = ()
    kind = "declared"

    # -- declaring ------------------------------------------------------------------------------------
    @classmethod
    def create(cls, name, text, out=None, params=None, activation=None, init=None, *, lhs=None) -> Declared:
        if not isinstance(name, str) or not name.isidentifier() or len(name) > 64:
            raise ValueError(f"a declared layer's name must be {_NAME_OK}, at most 64 characters; got {name!r}")
        where = f"layer {name!r}: "
        try:
            specs = _param_shapes(params)
            act = as_activation(activation if activation is not None else "linear", where)
            if act.vector:
                raise ValueError(f"{act.name} normalises over a whole layer; a declared layer takes an elementwise "
                                 "activation (sigmoid, relu, ...)")
            imap = (parse_map(text, tuple(n for n, _ in specs)) if lhs is None else
                    from_sympy(lhs, text, tuple(n for n, _ in specs)))
            read = imap.arrays()
            unused = [n for n, _ in specs if n not in read]
            if unused:
                raise ValueError(f"the parameter {unused[0]!r} is declared but the map never reads it")
            for n, shape in specs:
                for _, _, r in imap.reads_of(n):
                    if len(r.index) != len(shape):
                        raise ValueError(f"{r} reads {n} with {len(r.index)} indices, but {n} has shape {shape}")
            outs = _out_extents(out, imap)
            inits = _inits(init, specs)
        except ValueError as exc:
            raise ValueError(f"{where}{exc}") from None
        return cls(name, imap, specs, act, outs, inits)

    # -- the protocol -----------------------------------------------------------------------------------
    @property
    def text(self) -> str:
        return self.index_map.text

    @property
    def reads_image(self) -> bool:
        """Does the map read x with more than one index (an image-shaped input)?"""
        return any(len(r.index) > 1 for _, _, r in self.index_map.reads_of("x"))

    def geometry(self, in_shape: tuple[int, ...]) -> Geometry:
        try:
            return _geometry(self, tuple(in_shape))
        except ValueError as exc:
            raise ValueError(f"layer {self.name!r}: {exc}") from None

    def out_shape(self, in_shape):
        return self.geometry(in_shape).out

    def param_specs(self, in_shape):
        geo = self.geometry(in_shape)
        own = dict(self.inits)
        specs = []
        for n, shape in self.params:
            init = own.get(n) or (fan_in_weights(geo.fan_in[n]) if n in geo.weights else normal_biases)
            specs.append(ParamSpec(n, shape, init, weight=n in geo.weights))
        return specs

    def config(self) -> dict:
        doc = {"name": self.name, "map": self.text, "out": list(self.out) if self.out else None,
               "params": {n: list(s) for n, s in self.params}, "activation": activation_config(self.activation)}
        if self.inits:  # the functions themselves cannot be written down: their parameters are named
            doc["init"] = sorted(n for n, _ in self.inits)
        return doc

    @classmethod
    def from_config(cls, doc, where):
        if "init" in doc:
            raise ValueError(f"{where}: the layer was declared with its own init functions, which no file holds; "
                             "declare it again with init= instead")
        params = doc.get("params")
        if not isinstance(params, dict):
            raise ValueError(f"{where}: 'params' must be an object of name: shape")
        out = doc.get("out")
        return cls.create(doc.get("name"), doc.get("map"), tuple(out) if isinstance(out, list) else out,
                          {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()},
                          activation_from_config(doc["activation"]))

    def describe(self) -> str:
        return f"{self.name}:{self.activation.name}"

    def __eq__(self, other):
        # the parameters' order is compared too: dicts compare equal in any order, the kernels' arguments do not
        return isinstance(other, Declared) and self.params == other.params and self.config() == other.config() \
            and self.inits == other.inits

    def __hash__(self):
        return hash(json.dumps(self.config()))

    def __repr__(self):
        return (f"Layer.parse({self.name!r}, {self.text!r}, out={self.out}, params={dict(self.params)}, "
                f"activation={self.activation.name})")

    def reference(self, params, x):
        """The map evaluated directly (float64, rows = samples): one vectorised pass per position of each
        reduction, reads of x outside it zero (left out inside max)."""
        z = map_values(self, params, x)
        return np.broadcast_to(self.activation.numpy_function()(z), z.shape).astype(np.float64)


def map_values(layer: Declared, params, x) -> np.ndarray:
    """z for the rows of ``x`` (any shape with the rows first), straight from the map (see ``reference``)."""
    x = np.asarray(x, np.float64)
    geo = layer.geometry(tuple(x.shape[1:]) if x.ndim > 2 else (x.shape[1],))
    x = x.reshape((x.shape[0], *geo.x_shape))
    arrays = {n: np.asarray(p, np.float64) for (n, _), p in zip(layer.params, params)}
    rows, imap = x.shape[0], layer.index_map
    grids = np.meshgrid(*(np.arange(n) for n in geo.out), indexing="ij")
    env_out = dict(zip(imap.out_vars, grids))
    z = np.zeros((rows, *geo.out))
    for term in imap.terms:
        f = numpy_function([read_symbol(k) for k in range(len(term.reads))], term.body)
        best = None
        for pos in positions(term.vars):
            env = env_out | pos
            vals, ok = [], np.ones(geo.out, bool)
            for r in term.reads:
                idx = [np.broadcast_to(e.value(env), geo.out) for e in r.index]
                if r.array == "x":
                    inside = np.ones(geo.out, bool)
                    for d, i in enumerate(idx):
                        inside &= (i >= 0) & (i < geo.x_shape[d])
                    clipped = [np.clip(i, 0, geo.x_shape[d] - 1) for d, i in enumerate(idx)]
                    vals.append(np.where(inside, x[(slice(None), *clipped)], 0.0))
                    ok &= inside
                else:
                    vals.append(np.broadcast_to(arrays[r.array][tuple(idx)], (rows, *geo.out)))
            v = np.broadcast_to(np.asarray(f(*vals), np.float64), (rows, *geo.out))
            if term.kind == "sum":
                z += v
            else:  # max: positions reading outside x are left out; the first maximum wins
                v = np.where(ok, v, -np.inf)
                best = v if best is None else np.maximum(best, v)
        if term.kind == "max":
            z += best
    return z.reshape(rows, -1)


# ------------------------------------------------------------------------------------------------ helpers


def _param_shapes(params) -> tuple[tuple[str, tuple[int, ...]], ...]:
    if params is None:
        return ()
    if not isinstance(params, dict):
        raise ValueError(f"params must be a dict of name: shape, e.g. {{'W': (16, 3, 3, 3), 'b': (16,)}}; got "
                         f"{type(params).__name__}")
    out, total = [], 0
    for n, shape in params.items():
        if not isinstance(n, str) or not _PARAM_NAME.fullmatch(n) or n in _RESERVED or \
                n.startswith(("nabla_", "i_", "cols_", "dcol_")) or (n[0] in "vV" and len(n) > 1):
            raise ValueError(f"parameter name {n!r} must be 1 to 16 letters or _ (no digits: the kernels number the "
                             "layers), not starting with v (a momentum velocity is v + the name), i_, nabla_, cols_ "
                             "or dcol_, and "
                             f"not one of {', '.join(sorted(_RESERVED))}")
        if isinstance(shape, int) and not isinstance(shape, bool):
            shape = (shape,)
        if not isinstance(shape, (tuple, list)) or not 1 <= len(shape) <= 6:
            raise ValueError(f"the shape of {n} must be a tuple of 1 to 6 positive integers, got {shape!r}")
        shape = tuple(check_size(f"the shape of {n}", s) for s in shape)
        total += math.prod(shape)
        if total > MAX_PARAMS:
            raise ValueError(f"the parameters hold more than {MAX_PARAMS} numbers (a buffer too large for the "
                             "machine)")
        if any(n.lower() == m.lower() for m, _ in out):
            raise ValueError(f"parameter names must differ in more than case, got {n!r} twice")
        out.append((n, shape))
    return tuple(out)


def _out_extents(out, imap: IndexMap) -> tuple[int, ...] | None:
    if out is None:
        return None
    if isinstance(out, int) and not isinstance(out, bool):
        out = (out,)
    if not isinstance(out, (tuple, list)) or len(out) != len(imap.out_vars):
        raise ValueError(f"out must give one extent per output index ({', '.join(imap.out_vars)}), got {out!r}")
    out = tuple(check_size("out", n) for n in out)
    if any(n > MAX_EXTENT for n in out) or math.prod(out) > MAX_OUT:
        raise ValueError(f"the output {out} is too large (at most {MAX_EXTENT} per axis, {MAX_OUT} elements)")
    return out


def _inits(init, specs) -> tuple:
    if init is None:
        return ()
    if not isinstance(init, dict):
        raise ValueError("init must be a dict of parameter name: std (a number) or a function (rng, shape) -> array")
    names = dict(specs)
    out = []
    for n, how in init.items():
        if n not in names:
            raise ValueError(f"init names {n!r}, which is not a parameter ({', '.join(names) or 'none'})")
        if isinstance(how, (int, float)) and not isinstance(how, bool):
            if not math.isfinite(how) or how < 0:
                raise ValueError(f"init[{n!r}] must be a finite non-negative standard deviation, got {how!r}")
            std = float(how)
            out.append((n, lambda rng, scheme, shape, std=std: rng.standard_normal(shape) * std))
        elif callable(how):
            out.append((n, lambda rng, scheme, shape, fn=how, n=n: _checked_init(fn, rng, shape, n)))
        else:
            raise ValueError(f"init[{n!r}] must be a standard deviation or a function (rng, shape) -> array")
    return tuple(out)


def _checked_init(fn, rng, shape, name):
    arr = np.asarray(fn(rng, shape), dtype=np.float64)
    if arr.shape != tuple(shape) or not np.isfinite(arr).all():
        raise ValueError(f"init of {name} must return finite numbers of shape {tuple(shape)}, got {arr.shape}")
    return arr


@lru_cache(maxsize=256)
def _geometry(layer: Declared, in_shape: tuple[int, ...]) -> Geometry:
    imap = layer.index_map
    ranks = {len(r.index) for _, _, r in imap.reads_of("x")}
    if len(ranks) > 1:
        raise ValueError(f"x is read with {sorted(ranks)} indices; read it with one count throughout")
    rank = ranks.pop() if ranks else len(in_shape)
    if rank == len(in_shape):
        x_shape = in_shape
    elif rank == 1:
        x_shape = (math.prod(in_shape),)
    else:
        how = "1 index" if len(in_shape) == 1 else f"{len(in_shape)} indices (or 1, flattened)"
        raise ValueError(f"x is read with {rank} indices, but the layer's input has shape {in_shape}: read it with "
                         f"{how}")
    shapes = dict(layer.params) | {"x": x_shape}
    out = layer.out or _infer_out(imap, shapes)
    extents = []
    for term in imap.terms:
        ext = dict(zip(imap.out_vars, out)) | term.extents
        extents.append(ext)
        for r in term.reads:
            if r.array == "x":
                continue
            for d, e in enumerate(r.index):
                lo, hi = e.range(ext)
                if lo < 0 or hi >= shapes[r.array][d]:
                    raise ValueError(f"{r} reads outside {r.array} (shape {shapes[r.array]}): its index {d} runs "
                                     f"over {lo}..{hi} for the output {out}")
    work = sum(math.prod(out) * term.size * max(1, len(term.reads)) for term in imap.terms)
    if work > MAX_WORK:
        raise ValueError(f"the map costs {work:.3g} operations per sample for the output {out}; at most {MAX_WORK:.3g} "
                         "are allowed")
    if imap.is_max:
        _check_windows(imap, out, x_shape)
    weights, fan_in = set(), {}
    for term in imap.terms:
        arrays = {r.array for r in term.reads}
        if "x" in arrays:
            for n in arrays - {"x"}:
                weights.add(n)
                fan_in[n] = max(fan_in.get(n, 1), term.size)
    return Geometry(x_shape, tuple(out), tuple(extents), frozenset(weights), fan_in, work)


def _infer_out(imap: IndexMap, shapes: dict) -> tuple[int, ...]:
    out = []
    for v in imap.out_vars:
        candidates = []
        for term in imap.terms:
            ext = term.extents
            for r in term.reads:
                for d, e in enumerate(r.index):
                    a = e.coeff(v)
                    others = [u for u in e.vars if u != v]
                    if a <= 0 or any(u not in ext for u in others):
                        continue
                    _, top = e.without(v).range(ext)
                    candidates.append((shapes[r.array][d] - 1 - top) // a + 1)
        if not candidates:
            raise ValueError(f"cannot infer the extent of the output index {v!r} (no read bounds it): give out=(...)")
        n = min(candidates)
        if n < 1:
            raise ValueError(f"the map reads past the end of its input for every value of {v!r}: the input is too "
                             f"small ({shapes['x']}) for this map")
        out.append(n)
    out = tuple(out)
    if math.prod(out) > MAX_OUT:
        raise ValueError(f"the output {out} has more than {MAX_OUT} elements")
    return out


def _check_windows(imap: IndexMap, out: tuple[int, ...], x_shape: tuple[int, ...]) -> None:
    """Every output of a max must have at least one window position inside x (else its max would be −∞).
    Axis by axis where each window variable moves one axis of one read of x (pools: exact, in closed form),
    else position by position (small maps; a larger one is refused rather than left unchecked)."""
    term = imap.terms[0]
    xs = [r for r in term.reads if r.array == "x"]
    axes = [v for r in xs for e in r.index for v in e.vars if v in term.extents]
    if len(xs) == 1 and len(axes) == len(set(axes)) and all(
            sum(v in term.extents for v in e.vars) <= 1 for e in xs[0].index):
        return _check_windows_by_axis(imap, out, x_shape, xs[0], term.extents)
    if math.prod(out) * term.size > 1 << 16:
        raise ValueError("a max over more than one read of x, or over window variables shared by its axes, is "
                         f"checked position by position: at most {1 << 16} output × window positions")
    grids = np.meshgrid(*(np.arange(n) for n in out), indexing="ij")
    env_out = dict(zip(imap.out_vars, grids))
    any_ok = np.zeros(out, bool)
    for pos in positions(term.vars):
        ok = np.ones(out, bool)
        for r in term.reads:
            if r.array == "x":
                for d, e in enumerate(r.index):
                    i = e.value(env_out | pos)
                    ok &= (i >= 0) & (i < x_shape[d])
        any_ok |= ok
    if not any_ok.all():
        where = tuple(int(k[0]) for k in np.nonzero(~any_ok))
        raise ValueError(f"the window of z{list(where)} lies wholly outside x (shape {x_shape}): max over no "
                         "element; use less padding or a smaller output")


#: Largest file of declarations, in bytes; most declarations in one.
MAX_DECLARATIONS_FILE, MAX_DECLARATIONS = 1 << 18, 256


def read_declarations(path) -> dict[str, Declared]:
    """The layers of a JSON file of declarations (``symbp train --declare FILE``): an object of
    ``name: {"map": text, "params": {name: shape}, "out": [extents] (optional), "activation": name or
    expression in z (optional, default linear)}``.  Read as a regular file of bounded size; every map and
    activation goes through the whitelist parser; any problem is a ValueError naming the file and the entry."""
    path = os.fspath(path)
    raw = read_small_file(path, "file of declarations", MAX_DECLARATIONS_FILE)
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or not doc:
        raise ValueError(f"{path}: expected an object of name: {{\"map\": ..., \"params\": ...}}")
    if len(doc) > MAX_DECLARATIONS:
        raise ValueError(f"{path}: {len(doc)} declarations; at most {MAX_DECLARATIONS}")
    out = {}
    for name, entry in doc.items():
        where = f"{path}: {name!r}"
        if not isinstance(entry, dict) or not isinstance(entry.get("map"), str):
            raise ValueError(f"{where}: expected an object with \"map\" (text), \"params\", \"out\", "
                             "\"activation\"")
        unknown = set(entry) - {"map", "params", "out", "activation"}
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
        params = entry.get("params") or {}
        if not isinstance(params, dict) or not all(isinstance(v, list) for v in params.values()):
            raise ValueError(f"{where}: \"params\" must be an object of name: [extents]")
        act = entry.get("activation", "linear")
        if not isinstance(act, str):
            raise ValueError(f"{where}: \"activation\" must be a name or an expression in z")
        try:
            activation = BUILTIN_ACTIVATIONS.get(act) or Activation.parse(f"{name}_activation", act)
            extents = entry.get("out")
            out[name] = Declared.create(name, entry["map"], tuple(extents) if isinstance(extents, list) else extents,
                                        {k: tuple(v) for k, v in params.items()}, activation)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    return out


def _check_windows_by_axis(imap, out, x_shape, read, window: dict) -> None:
    """For each axis d of x: e_d = base(outputs) + b·r (one window variable r < n, or none): some r lands in
    0 ≤ e_d ≤ S_d − 1 for every output value, checked in closed form over that axis's output variables."""
    for d, e in enumerate(read.index):
        size = x_shape[d]
        outs = [v for v in e.vars if v not in window]
        grids = np.meshgrid(*(np.arange(out[imap.out_vars.index(v)]) for v in outs), indexing="ij") if outs else []
        base = e.const + sum(e.coeff(v) * g for v, g in zip(outs, grids))
        base = np.asarray(base)
        wv = [v for v in e.vars if v in window]
        if not wv:
            ok = (base >= 0) & (base < size)
        else:
            b, n = e.coeff(wv[0]), window[wv[0]]
            lo_v, hi_v = (-base, size - 1 - base) if b > 0 else (base - size + 1, base)  # b·r within these
            k = abs(b)
            lo_r = np.maximum(0, -((-lo_v) // k))
            hi_r = np.minimum(n - 1, hi_v // k)
            ok = lo_r <= hi_r
        if not np.all(ok):
            raise ValueError(f"a window of the max lies wholly outside x (shape {x_shape}) along its axis {d}: max "
                             "over no element; use less padding or a smaller output")
