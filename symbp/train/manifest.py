"""The model-file manifest: a network as a JSON layer table and cost, and back.

Takes: a ``Network`` (and, to encode a whole manifest, the model's dtype, backend and the SHA-256 of its
parameter file), or the bytes of a manifest nobody vouches for.  Gives: ``encode_layer`` (``{"kind": ...,
**layer.config()}``), ``portable_config`` (``Network.config()``, refusing what no file can rebuild) and
``encode_manifest``, the document ``symbp.train.serialize.save`` writes;
``decode_manifest``, a ``Manifest`` of checked plain data (every field type-checked, the layer sizes giving the
exact parameter arrays; no expression is parsed yet); ``build_network``, the ``Network`` of a ``Manifest``,
every expression re-read by the whitelist parser and every refusal a ``ValueError`` naming the file; and
``network_from_config``, the ``Network`` of a bare declaration (``Network.config()``: sweeps, the bench's
probes) through the same decoder, and ``read_network``, the same from a file (``--network FILE``).

Layer entries are decoded by ``LAYER_DECODERS``, one decoder per kind; an entry's ``"kind"`` defaults to
``"input"`` for the first entry and ``"dense"`` for the others (the first format).  A kind without a decoder here
but registered in ``symbp.layers.LAYER_KINDS`` is built by its ``from_config`` at decode time.  Parameter arrays
are numbered by parameterised layer, as ``model.params``: W1, b1, W2, ….
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from symbp.activations import Activation
from symbp.compile.backends import BACKENDS
from symbp.costs import Cost
from symbp.layers import LAYER_KINDS, Dense, Input
from symbp.network import DECLARATION_FORMAT, DECLARATION_VERSION, MAX_LAYERS, Network
from symbp.parsing import parse
from symbp.paths import read_small_file
from symbp.train.safe_read import MAX_JSON, Invalid, short

FORMAT = "symbp-model"
VERSION = 1
_MAX_UNITS = (1 << 31) - 1  # units of one layer
_DTYPES = ("float64", "float32")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class LayerEntry:
    """A decoded layer entry: checked plain data.  ``shape`` is its output shape, ``params`` its parameter
    arrays in order as (name without the layer number, shape); ``build(sb)`` makes the symbp layer (this is
    where expressions are parsed)."""

    shape: tuple[int, ...]
    params: tuple[tuple[str, tuple[int, ...]], ...]
    build: Callable[[object], object]


def _fail(jpath: Path, msg: str):
    raise Invalid(f"{jpath}: not a valid symbp model file: {msg}")


def _field(d: dict, key: str, types, jpath: Path, where: str, default=...):
    """``d[key]`` if it is one of ``types`` (never a bool for int); ``default`` if missing and one is given."""
    if key not in d:
        if default is not ...:
            return default
        _fail(jpath, f"{where} has no {key!r}")
    v = d[key]
    if isinstance(v, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        _fail(jpath, f"{where}: {key!r} must be {_type_names(types)}, got {v!r}")
    if not isinstance(v, types):
        _fail(jpath, f"{where}: {key!r} must be {_type_names(types)}, got {type(v).__name__} {short(v)}")
    return v


def _type_names(types) -> str:
    names = {int: "an integer", str: "a string", bool: "true or false", dict: "an object", list: "a list"}
    return " or ".join(names.get(t, t.__name__) for t in (types if isinstance(types, tuple) else (types,)))


def _units(entry: dict, jpath: Path, where: str) -> int:
    n = _field(entry, "n", int, jpath, where)
    if not 1 <= n <= _MAX_UNITS:
        _fail(jpath, f"{where}: 'n' must be between 1 and {_MAX_UNITS}, got {short(n)}")
    return n


def _expression(d, jpath: Path, where: str) -> tuple[str, str]:
    if not isinstance(d, dict):
        _fail(jpath, f"{where} must be an object with name and expr, got {type(d).__name__} {short(d)}")
    return _field(d, "name", str, jpath, where), _field(d, "expr", str, jpath, where)


def _decode_input(entry: dict, in_shape, jpath: Path, where: str, cache: dict) -> LayerEntry:
    if isinstance(entry.get("n"), list):  # an image-shaped input: [channels, height, width]
        shape = entry["n"]
        if not (1 <= len(shape) <= 3 and all(type(k) is int and k >= 1 for k in shape)
                and math.prod(shape) <= _MAX_UNITS):
            _fail(jpath, f"{where}: 'n' must be a size or a list of 1 to 3 sizes of at most {_MAX_UNITS} units "
                         f"in all, got {short(shape)}")
        shape = tuple(shape)
        return LayerEntry(shape, (), lambda sb: sb.Input(shape))
    n = _units(entry, jpath, where)
    return LayerEntry((n,), (), lambda sb: sb.Input(n))


def _decode_dense(entry: dict, in_shape, jpath: Path, where: str, cache: dict) -> LayerEntry:
    n = _units(entry, jpath, where)
    act = _field(entry, "activation", dict, jpath, where)
    name, expr = _expression(act, jpath, f"{where} activation")
    vector = _field(act, "vector", bool, jpath, f"{where} activation", default=False)

    def build(sb):
        key = ("activation", name, expr, vector)
        if key not in cache:  # layers sharing an activation parse and differentiate it once
            cache[key] = sb.Activation(name, sb.parse(expr, allowed=("z",)), vector=vector)
        return sb.Dense(n, cache[key])

    return LayerEntry((n,), (("W", (n, math.prod(in_shape))), ("b", (n,))), build)


def _decode_registered(entry: dict, in_shape, jpath: Path, where: str, cache: dict) -> LayerEntry:
    """A kind without an entry here but registered in ``symbp.layers.LAYER_KINDS``: built at once by its
    ``from_config`` (which must check its own fields), shapes from the built layer."""
    cls = LAYER_KINDS[entry["kind"]]
    config = {k: v for k, v in entry.items() if k != "kind"}
    layer = named(jpath, f"{where}: ", lambda: cls.from_config(config, where))
    shape = named(jpath, f"{where}: ", lambda: tuple(layer.out_shape(in_shape)))
    specs = named(jpath, f"{where}: ", lambda: layer.param_specs(in_shape))
    return LayerEntry(shape, tuple((spec.name, tuple(spec.shape)) for spec in specs), lambda sb: layer)


#: One decoder per layer kind: ``(entry, in_shape, jpath, where, cache) -> LayerEntry``, ``in_shape`` being the
#: previous layer's output shape (None for the first).  Adding a kind is adding an entry.
LAYER_DECODERS: dict[str, Callable[..., LayerEntry]] = {"input": _decode_input, "dense": _decode_dense}


@dataclass(frozen=True)
class Manifest:
    layers: tuple[LayerEntry, ...]
    cost: tuple[str, str]
    dtype: np.dtype
    backend: str
    sha256: str
    arrays: dict[str, tuple[int, ...]]  # name → declared shape, in layer order
    velocities: bool = False  # the momentum velocities vW1, vb1, ... follow the parameters

    @property
    def data_bytes(self) -> int:
        return sum(math.prod(shape) for shape in self.arrays.values()) * self.dtype.itemsize


def decode_manifest(raw: bytes, jpath: Path) -> Manifest:
    try:
        doc = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise Invalid(f"{jpath}: not a valid symbp model file: JSON nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError, and integers of > 4300 digits
        raise Invalid(f"{jpath}: corrupt or truncated JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        _fail(jpath, "missing format marker")
    version = doc.get("version")
    if type(version) is not int or version != VERSION:
        _fail(jpath, f"unsupported version {short(version)}")
    layers_doc = _field(doc, "layers", list, jpath, "the model")
    if not 2 <= len(layers_doc) <= MAX_LAYERS:
        _fail(jpath, f"layers must be a list of 2 to {MAX_LAYERS} entries, got {len(layers_doc)}")
    cache: dict = {}
    layers: list[LayerEntry] = []
    registered = dict(LAYER_KINDS)
    for i, entry in enumerate(layers_doc):
        where = f"layer {i}"
        if not isinstance(entry, dict):
            _fail(jpath, f"{where} must be an object, got {type(entry).__name__} {short(entry)}")
        kind = _field(entry, "kind", str, jpath, where, default="input" if i == 0 else "dense")
        decode = LAYER_DECODERS.get(kind) or (_decode_registered if kind in registered else None)
        if decode is None:
            known = ", ".join(sorted(set(LAYER_DECODERS) | set(registered)))
            _fail(jpath, f"{where}: unknown layer kind {short(kind)}; known: {known}")
        if (kind == "input") != (i == 0):
            _fail(jpath, f"{where}: the first layer, and only the first, must be of kind 'input' (got {kind!r})")
        layers.append(decode(entry, layers[-1].shape if layers else None, jpath, where, cache))
    cost = _expression(doc.get("cost"), jpath, "cost")
    dtype = doc.get("dtype")
    if not isinstance(dtype, str) or dtype not in _DTYPES:
        _fail(jpath, f"bad dtype {short(dtype)}: must be one of {', '.join(_DTYPES)}")
    backend = _field(doc, "backend", str, jpath, "the model", default="numba")
    if backend not in BACKENDS:
        _fail(jpath, f"unknown backend {short(backend)}: must be one of {', '.join(BACKENDS)}")
    params = _field(doc, "params", dict, jpath, "the model")
    sha = _field(params, "sha256", str, jpath, "params")
    if not _SHA256.fullmatch(sha):
        _fail(jpath, f"params: 'sha256' must be 64 lowercase hex digits, got {short(sha)}")
    _field(params, "file", str, jpath, "params", default="")  # informative only: the file is always PATH.npz
    arrays: dict[str, tuple[int, ...]] = {}
    for l, layer in enumerate((layer for layer in layers if layer.params), start=1):
        for name, shape in layer.params:  # numbered by parameterised layer, as ``model.params``: W1, b1, W2, …
            arrays[f"{name}{l}"] = shape
    velocities = _field(doc, "velocities", bool, jpath, "the model", default=False)
    if velocities:  # momentum SGD's state, shaped as the parameters: vW1, vb1, …
        arrays.update({f"v{name}": shape for name, shape in list(arrays.items())})
    return Manifest(tuple(layers), cost, np.dtype(dtype), backend, sha, arrays, velocities)


def _portable(entry: dict) -> dict:
    """``entry`` (a layer's ``{"kind": ..., **config()}``) if a file can rebuild it; a layer declared with its own
    init functions is refused (no file can hold them)."""
    if "init" in entry:
        raise ValueError(f"layer {entry.get('name')!r}: a layer with its own init functions cannot be saved to a "
                         "model file or sent to a sweep's workers (the parameters are saved; declare it again "
                         "without init= to load it)")
    return entry


def encode_layer(layer) -> dict:
    """A layer entry: ``{"kind": ..., **config()}``, each kind describing itself (``Layer.config``).  Files
    without ``"kind"`` (the first format: the input, then dense layers) still load.  A layer declared with its
    own init functions is refused: no file can hold them."""
    return _portable({"kind": layer.kind, **layer.config()})


def portable_config(net) -> dict:
    """``net.config()`` for a file or another process (a sweep's workers): every layer as ``encode_layer``
    writes it, so a layer with its own init functions is refused."""
    doc = net.config()
    for entry in doc["layers"]:
        _portable(entry)
    return doc


def encode_manifest(model, params_file: str, sha256: str) -> dict:
    """The manifest of ``model`` (a compiled model: its network, dtype, backend and, when it has them, momentum
    velocities) whose parameter file ``params_file`` has the SHA-256 ``sha256``."""
    declaration = portable_config(model.network)
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "layers": declaration["layers"],
        "cost": declaration["cost"],
        "dtype": model.dtype.name,
        "backend": model.backend,
        "params": {"file": params_file, "sha256": sha256},
    }
    if getattr(model, "velocities", None) is not None:
        doc["velocities"] = True
    return doc


def named(jpath: Path, where: str, fn):
    """``fn()``; a refusal (or a crash on malformed input) becomes a ValueError naming the model file."""
    try:
        return fn()
    except ValueError as exc:
        raise Invalid(f"{jpath}: not a valid symbp model file: {where}{exc}") from None
    except (TypeError, LookupError, ArithmeticError, AttributeError, RecursionError) as exc:
        raise Invalid(f"{jpath}: not a valid symbp model file: {where}{type(exc).__name__}: {exc}") from exc


#: The declaration stage's constructors, as a layer entry's ``build(sb)`` takes them (not the top-level package:
#: no stage imports it).
DECLARATIONS = SimpleNamespace(Activation=Activation, Cost=Cost, Dense=Dense, Input=Input, Network=Network,
                               parse=parse)


def network_from_config(doc):
    """The ``Network`` of a declaration (``Network.config()``, as a dict or JSON text), read by this decoder:
    the same checks as for a model file, every expression re-read by the whitelist parser; anything else a
    ``ValueError`` saying what is wrong."""
    where = Path("<network declaration>")
    if isinstance(doc, (str, bytes)):
        try:
            doc = json.loads(doc)
        except (ValueError, RecursionError) as exc:
            raise ValueError(f"{where}: not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != DECLARATION_FORMAT \
            or doc.get("version") != DECLARATION_VERSION:
        raise ValueError(f"{where}: expected a dict with format {DECLARATION_FORMAT!r} and version "
                         f"{DECLARATION_VERSION}")
    # The manifest decoder wants a whole model file; the fields beyond the layers and the cost are fixed here
    # (a placeholder checksum: no parameter file is read).
    fields = {"format": FORMAT, "version": VERSION, "layers": doc.get("layers"), "cost": doc.get("cost"),
              "dtype": "float64", "backend": "numpy", "params": {"file": "", "sha256": "0" * 64}}
    raw = json.dumps(fields).encode()
    if len(raw) > MAX_JSON:
        raise ValueError(f"{where}: more than {MAX_JSON} bytes")
    return build_network(decode_manifest(raw, where), where)


def read_network(path) -> Network:
    """The network of a declaration file (``symbp show --config`` writes one; ``--network FILE``): a regular file
    of at most ``MAX_JSON`` bytes, decoded by ``network_from_config``; any problem a ``ValueError`` naming it."""
    path = Path(path)
    raw = read_small_file(path, "network declaration", MAX_JSON)
    try:
        return network_from_config(raw)
    except ValueError as exc:
        raise ValueError(str(exc).replace("<network declaration>", str(path), 1)) from None


def build_network(m: Manifest, jpath: Path):
    """The ``Network``: expressions parsed by the whitelist parser; any refusal names the model file."""
    sb = DECLARATIONS
    layers = [named(jpath, f"layer {i}: ", lambda layer=layer: layer.build(sb)) for i, layer in enumerate(m.layers)]
    name, expr = m.cost
    cost = named(jpath, "cost: ", lambda: sb.Cost(name, sb.parse(expr, allowed=("a", "y"))))
    return named(jpath, "", lambda: sb.Network(layers, cost=cost))
