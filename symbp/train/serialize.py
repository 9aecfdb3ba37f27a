"""Save and load models: the network as JSON, the parameters as ``.npz``.

Takes: a ``Model`` and a path.  Gives: ``<path>.json`` (layers, activation and cost expressions as text,
dtype, backend, the SHA-256 of the parameter file) and ``<path>.npz`` (W1, b1, …).  ``load`` re-parses
every expression with the whitelist parser and reads arrays with ``allow_pickle=False``: nothing in a model
file can run code.  A tampered, truncated, inconsistent or hostile file is a ``ValueError`` naming the file.

Loading validates before it reads, allocates or compiles:

1. ``path.json`` is opened without blocking and must be a regular file (a FIFO, a device such as
   ``/dev/zero`` behind a symlink, or a directory is refused unread) of at most 1 MiB; it is parsed and every
   field is type-checked (plain data: no expression is parsed yet).
2. The declared layer sizes give the exact arrays and their byte count; the size of the parameter file must
   be consistent with it (at most ``_MAX_INFLATE`` times smaller, at most the per-array header slack larger)
   before a byte of it is read, then its SHA-256 must match the manifest.
3. Every ``.npy`` member is checked from the zip directory and its header alone: names, real float dtype of
   the model's width, C order, the declared shape, and a stored size equal to header + shape × itemsize with a
   bounded inflation ratio (a zip bomb is refused without being decompressed).  Only then are the arrays read.
4. Only then are the expressions parsed, the ``Network`` built (each failure re-raised naming the file) and the
   kernels compiled.

Layer entries are decoded by ``_LAYER_KINDS``, one decoder per kind; an entry's ``"kind"`` defaults to
``"input"`` for the first entry and ``"dense"`` for the others (the format written by ``save``).  A kind
without a decoder here but registered in ``symbp.layers.LAYER_KINDS`` is built by its ``from_config`` at
decode time.  Parameter arrays are numbered by parameterised layer, as ``model.params``: W1, b1, W2, ….

Saving protocol: a reader sees the old model or the new one, never a mix.  ``path.json`` (the manifest,
which holds the SHA-256 of its parameters) is the commit point:

0. Finish or discard what an earlier, interrupted save left: a pending ``path.npz.new`` that the current
   manifest commits to (and ``path.npz`` does not match) is renamed over ``path.npz``, any other is removed;
   temporary files of this model name (``.<name>.json.tmp-<pid>-<hex>``, ``.<name>.npz.tmp-<pid>-<hex>``) whose
   process is gone are removed.
1. The new ``.npz`` is written to a temporary file, fsynced, and renamed to ``path.npz.new``.
2. The new manifest is written to a temporary file, fsynced, and renamed over ``path.json``: committed.
3. ``path.npz.new`` is renamed over ``path.npz``.

``load`` reads the manifest first and takes ``path.npz.new`` if it matches the manifest's SHA-256 (a save
stopped, or still running, between steps 2 and 3), else ``path.npz`` if that does; a kill before step 2
leaves the old manifest and the old ``path.npz``.  If neither matches and the manifest has changed meanwhile
(a save committed), it starts again with the new manifest.  The folder is fsynced after each rename.  An
exception or ``KeyboardInterrupt`` during a save removes what it wrote (all of it before the commit, only the
temporary files after it).  Files are created with mode 0o666 less the umask.  Saves in one process are serialised;
concurrent saves of the same path from several processes are not supported (the last one may need a resave).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import re
import secrets
import stat
import threading
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from symbp.activations import Activation
from symbp.compile.backends import BACKENDS
from symbp.costs import Cost
from symbp.layers import LAYER_KINDS, Dense, Input
from symbp.network import MAX_LAYERS as _MAX_LAYERS
from symbp.network import Network
from symbp.parsing import parse
from symbp.paths import open_regular

FORMAT = "symbp-model"
VERSION = 1
_MAX_JSON = 1 << 20  # bytes of model.json
_MAX_UNITS = (1 << 31) - 1  # units of one layer
_MAX_NPY_HEADER = 10000  # numpy's own default limit for an .npy header
_MEMBER_SLACK = _MAX_NPY_HEADER + 1024  # bytes per array beyond its data: .npy header, zip headers
_ARCHIVE_SLACK = 4096  # end-of-archive records
_MAX_INFLATE = 4  # a member may inflate to at most this many times its stored size (np.savez stores: 1)
_DTYPES = ("float64", "float32")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SAVE_LOCK = threading.Lock()


class _Invalid(ValueError):
    """A model file refused by a check of this module (passes unchanged through the archive error handler)."""


class _Mismatch(_Invalid):
    """No parameter file matches the manifest."""


# -- paths -------------------------------------------------------------------------------------------
def _paths(path) -> tuple[Path, Path]:
    p = Path(os.fspath(path))
    if p.suffix in (".json", ".npz"):
        p = p.with_suffix("")
    if not p.name or p.name in (".", ".."):
        raise ValueError(f"a model path must name a file (PATH gives PATH.json and PATH.npz), got {str(path)!r}")
    return p.with_name(p.name + ".json"), p.with_name(p.name + ".npz")


def _pending(npath: Path) -> Path:
    """Where step 1 of a save puts the new parameters until the manifest commits to them."""
    return npath.with_name(npath.name + ".new")


def _temp_pattern(base: str) -> re.Pattern:
    return re.compile(rf"\.{re.escape(base)}\.(?:json|npz)\.tmp-(\d+)-[0-9a-f]{{16}}")


# -- reading files safely ----------------------------------------------------------------------------
def _open_regular(path: Path, what: str) -> tuple[int, int]:
    """``symbp.paths.open_regular``, its refusals as this module's ``_Invalid``."""
    return open_regular(path, what, _Invalid)


def _read_exact(fd: int, size: int, path: Path, what: str) -> bytes:
    """The ``size`` bytes of an open file; at most ``size + 1`` are read (a file that grew is refused)."""
    with os.fdopen(os.dup(fd), "rb", buffering=0) as f:
        data = f.read(size + 1)
    if len(data) != size:
        raise _Invalid(f"{path}: the {what} changed while it was read ({size} bytes, then {len(data)})")
    return data


def _read_json(jpath: Path) -> bytes:
    try:
        fd, size = _open_regular(jpath, "model file")
    except FileNotFoundError:
        raise FileNotFoundError(f"no model file {jpath}") from None
    try:
        if size > _MAX_JSON:
            raise _Invalid(f"{jpath}: not a valid symbp model file: {size} bytes, more than {_MAX_JSON}")
        return _read_exact(fd, size, jpath, "model file")
    finally:
        os.close(fd)


def _file_sha256(path: Path) -> str | None:
    """SHA-256 of a regular file, streamed; None if it is missing or not a regular file."""
    try:
        fd, _ = _open_regular(path, "file")
    except (OSError, ValueError):
        return None
    h = hashlib.sha256()
    with os.fdopen(fd, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# -- the manifest --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Layer:
    """A decoded layer entry: checked plain data.  ``shape`` is its output shape, ``params`` its parameter
    arrays in order as (name without the layer number, shape); ``build(sb)`` makes the symbp layer (this is
    where expressions are parsed)."""

    shape: tuple[int, ...]
    params: tuple[tuple[str, tuple[int, ...]], ...]
    build: Callable[[object], object]


def _fail(jpath: Path, msg: str):
    raise _Invalid(f"{jpath}: not a valid symbp model file: {msg}")


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
        _fail(jpath, f"{where}: {key!r} must be {_type_names(types)}, got {type(v).__name__} {_short(v)}")
    return v


def _type_names(types) -> str:
    names = {int: "an integer", str: "a string", bool: "true or false", dict: "an object", list: "a list"}
    return " or ".join(names.get(t, t.__name__) for t in (types if isinstance(types, tuple) else (types,)))


def _list_text(items: list, most: int = 8) -> str:
    """A list for a one-line message: its first and last entries when it is long."""
    if len(items) <= most:
        return str(items)
    head, tail = ", ".join(map(str, items[:most - 2])), ", ".join(map(str, items[-2:]))
    return f"[{head}, … ({len(items) - most} more) …, {tail}]"


def _short(v) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _units(entry: dict, jpath: Path, where: str) -> int:
    n = _field(entry, "n", int, jpath, where)
    if not 1 <= n <= _MAX_UNITS:
        _fail(jpath, f"{where}: 'n' must be between 1 and {_MAX_UNITS}, got {_short(n)}")
    return n


def _expression(d, jpath: Path, where: str) -> tuple[str, str]:
    if not isinstance(d, dict):
        _fail(jpath, f"{where} must be an object with name and expr, got {type(d).__name__} {_short(d)}")
    return _field(d, "name", str, jpath, where), _field(d, "expr", str, jpath, where)


def _decode_input(entry: dict, in_shape, jpath: Path, where: str, cache: dict) -> _Layer:
    if isinstance(entry.get("n"), list):  # an image-shaped input: [channels, height, width]
        shape = entry["n"]
        if not (1 <= len(shape) <= 3 and all(type(k) is int and k >= 1 for k in shape)
                and math.prod(shape) <= _MAX_UNITS):
            _fail(jpath, f"{where}: 'n' must be a size or a list of 1 to 3 sizes of at most {_MAX_UNITS} units "
                         f"in all, got {_short(shape)}")
        shape = tuple(shape)
        return _Layer(shape, (), lambda sb: sb.Input(shape))
    n = _units(entry, jpath, where)
    return _Layer((n,), (), lambda sb: sb.Input(n))


def _decode_dense(entry: dict, in_shape, jpath: Path, where: str, cache: dict) -> _Layer:
    n = _units(entry, jpath, where)
    act = _field(entry, "activation", dict, jpath, where)
    name, expr = _expression(act, jpath, f"{where} activation")
    vector = _field(act, "vector", bool, jpath, f"{where} activation", default=False)

    def build(sb):
        key = ("activation", name, expr, vector)
        if key not in cache:  # layers sharing an activation parse and differentiate it once
            cache[key] = sb.Activation(name, sb.parse(expr, allowed=("z",)), vector=vector)
        return sb.Dense(n, cache[key])

    return _Layer((n,), (("W", (n, math.prod(in_shape))), ("b", (n,))), build)


def _decode_registered(entry: dict, in_shape, jpath: Path, where: str, cache: dict) -> _Layer:
    """A kind without an entry here but registered in ``symbp.layers.LAYER_KINDS``: built at once by its
    ``from_config`` (which must check its own fields), shapes from the built layer."""
    cls = LAYER_KINDS[entry["kind"]]
    config = {k: v for k, v in entry.items() if k != "kind"}
    layer = _named(jpath, f"{where}: ", lambda: cls.from_config(config, where))
    shape = _named(jpath, f"{where}: ", lambda: tuple(layer.out_shape(in_shape)))
    specs = _named(jpath, f"{where}: ", lambda: layer.param_specs(in_shape))
    return _Layer(shape, tuple((spec.name, tuple(spec.shape)) for spec in specs), lambda sb: layer)


#: One decoder per layer kind: ``(entry, in_shape, jpath, where, cache) -> _Layer``, ``in_shape`` being the
#: previous layer's output shape (None for the first).  Adding a kind is adding an entry.
_LAYER_KINDS: dict[str, Callable[..., _Layer]] = {"input": _decode_input, "dense": _decode_dense}


@dataclass(frozen=True)
class _Manifest:
    layers: tuple[_Layer, ...]
    cost: tuple[str, str]
    dtype: np.dtype
    backend: str
    sha256: str
    arrays: dict[str, tuple[int, ...]]  # name → declared shape, in layer order
    velocities: bool = False  # the momentum velocities vW1, vb1, ... follow the parameters

    @property
    def data_bytes(self) -> int:
        return sum(math.prod(shape) for shape in self.arrays.values()) * self.dtype.itemsize


def _decode_manifest(raw: bytes, jpath: Path) -> _Manifest:
    try:
        doc = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise _Invalid(f"{jpath}: not a valid symbp model file: JSON nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError, and integers of > 4300 digits
        raise _Invalid(f"{jpath}: corrupt or truncated JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        _fail(jpath, "missing format marker")
    version = doc.get("version")
    if type(version) is not int or version != VERSION:
        _fail(jpath, f"unsupported version {_short(version)}")
    layers_doc = _field(doc, "layers", list, jpath, "the model")
    if not 2 <= len(layers_doc) <= _MAX_LAYERS:
        _fail(jpath, f"layers must be a list of 2 to {_MAX_LAYERS} entries, got {len(layers_doc)}")
    cache: dict = {}
    layers: list[_Layer] = []
    registered = dict(LAYER_KINDS)
    for i, entry in enumerate(layers_doc):
        where = f"layer {i}"
        if not isinstance(entry, dict):
            _fail(jpath, f"{where} must be an object, got {type(entry).__name__} {_short(entry)}")
        kind = _field(entry, "kind", str, jpath, where, default="input" if i == 0 else "dense")
        decode = _LAYER_KINDS.get(kind) or (_decode_registered if kind in registered else None)
        if decode is None:
            known = ", ".join(sorted(set(_LAYER_KINDS) | set(registered)))
            _fail(jpath, f"{where}: unknown layer kind {_short(kind)}; known: {known}")
        if (kind == "input") != (i == 0):
            _fail(jpath, f"{where}: the first layer, and only the first, must be of kind 'input' (got {kind!r})")
        layers.append(decode(entry, layers[-1].shape if layers else None, jpath, where, cache))
    cost = _expression(doc.get("cost"), jpath, "cost")
    dtype = doc.get("dtype")
    if not isinstance(dtype, str) or dtype not in _DTYPES:
        _fail(jpath, f"bad dtype {_short(dtype)}: must be one of {', '.join(_DTYPES)}")
    backend = _field(doc, "backend", str, jpath, "the model", default="numba")
    if backend not in BACKENDS:
        _fail(jpath, f"unknown backend {_short(backend)}: must be one of {', '.join(BACKENDS)}")
    params = _field(doc, "params", dict, jpath, "the model")
    sha = _field(params, "sha256", str, jpath, "params")
    if not _SHA256.fullmatch(sha):
        _fail(jpath, f"params: 'sha256' must be 64 lowercase hex digits, got {_short(sha)}")
    _field(params, "file", str, jpath, "params", default="")  # informative only: the file is always PATH.npz
    arrays: dict[str, tuple[int, ...]] = {}
    for l, layer in enumerate((layer for layer in layers if layer.params), start=1):
        for name, shape in layer.params:  # numbered by parameterised layer, as ``model.params``: W1, b1, W2, …
            arrays[f"{name}{l}"] = shape
    velocities = _field(doc, "velocities", bool, jpath, "the model", default=False)
    if velocities:  # momentum SGD's state, shaped as the parameters: vW1, vb1, …
        arrays.update({f"v{name}": shape for name, shape in list(arrays.items())})
    return _Manifest(tuple(layers), cost, np.dtype(dtype), backend, sha, arrays, velocities)


# -- the parameter file ------------------------------------------------------------------------------
def _committed_params(m: _Manifest, npath: Path, jpath: Path) -> tuple[Path, bytes]:
    """The parameter file the manifest commits to and its bytes: the pending ``path.npz.new`` of a save
    stopped after its commit, else ``path.npz``.  Each is sized against the declared layers before it is read.

    The pending file is tried first: a save's last step renames it over ``path.npz`` in one step, so a reader
    racing that save finds the new parameters under one name or the other."""
    need = m.data_bytes
    most = need + len(m.arrays) * _MEMBER_SLACK + _ARCHIVE_SLACK
    sizes = _list_text([math.prod(layer.shape) for layer in m.layers])
    problems: dict[Path, str] = {}
    for cand in (_pending(npath), npath):
        try:
            fd, size = _open_regular(cand, "parameter file")
        except FileNotFoundError:
            continue
        except _Invalid as exc:
            problems[cand] = str(exc)
            continue
        try:
            if size * _MAX_INFLATE < need or size > most:
                problems[cand] = (f"{cand}: {size} bytes cannot hold the {need // m.dtype.itemsize} {m.dtype.name} "
                                  f"parameters ({need} bytes) of the layer sizes {sizes} declared in {jpath.name}")
                continue
            blob = _read_exact(fd, size, cand, "parameter file")
        finally:
            os.close(fd)
        if hashlib.sha256(blob).hexdigest() == m.sha256:
            return cand, blob
        problems[cand] = f"{cand}: checksum mismatch with {jpath.name}: the parameter file was modified or truncated"
    if not problems:
        raise FileNotFoundError(f"parameter file {npath} (named by {jpath}) is missing")
    raise _Mismatch(problems.get(npath) or next(iter(problems.values())))


@contextlib.contextmanager
def _archive_errors(npath: Path):
    try:
        yield
    except _Invalid:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError, ValueError, KeyError,
            NotImplementedError, RuntimeError, SyntaxError, OverflowError, TypeError) as exc:
        raise _Invalid(f"{npath}: unreadable parameter archive ({type(exc).__name__}: {exc})") from None


def _member_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, shape, m: _Manifest, npath: Path,
                   jpath: Path) -> None:
    """Check one ``.npy`` member from its directory entry and header alone (nothing else is decompressed)."""
    where = f"{npath}: {info.filename}"
    data = math.prod(shape) * m.dtype.itemsize
    if info.flag_bits & 0x1:
        raise _Invalid(f"{where} is encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise _Invalid(f"{where}: unsupported compression method {info.compress_type}")
    if info.file_size > data + _MEMBER_SLACK or info.file_size < data:
        raise _Invalid(f"{where} holds {info.file_size} bytes, but {name} of shape {shape} needs {data} "
                       f"(layer sizes of {jpath.name})")
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
        raise _Invalid(f"{where}: stored member of {info.compress_size} bytes claims {info.file_size}")
    if info.file_size > _MAX_INFLATE * info.compress_size + _MEMBER_SLACK:
        raise _Invalid(f"{where} inflates {info.compress_size} bytes to {info.file_size}: refused (zip bomb?)")
    with zf.open(info) as f:
        prefix = f.read(min(info.file_size, 12 + _MAX_NPY_HEADER))  # magic, length field, header: bounded
    head = io.BytesIO(prefix)
    version = np.lib.format.read_magic(head)
    if version == (1, 0):
        file_shape, fortran, dtype = np.lib.format.read_array_header_1_0(head, max_header_size=_MAX_NPY_HEADER)
    elif version == (2, 0):
        file_shape, fortran, dtype = np.lib.format.read_array_header_2_0(head, max_header_size=_MAX_NPY_HEADER)
    else:
        raise _Invalid(f"{where}: unsupported .npy format version {version}")
    if dtype.kind != "f" or dtype.itemsize != m.dtype.itemsize:
        raise _Invalid(f"{where}: {name} has dtype {dtype}, the model is {m.dtype.name} ({jpath.name})")
    if fortran:
        raise _Invalid(f"{where}: {name} is stored in Fortran order (symbp writes C order)")
    if tuple(file_shape) != tuple(shape):
        raise _Invalid(f"{where}: {name} has shape {tuple(file_shape)}, the layer sizes in {jpath.name} "
                       f"declare {tuple(shape)}")
    if info.file_size != head.tell() + data:
        raise _Invalid(f"{where} holds {info.file_size} bytes, its header and shape give {head.tell() + data}")


def _read_arrays(blob: bytes, m: _Manifest, npath: Path, jpath: Path) -> dict[str, np.ndarray]:
    """The parameter arrays: every header is checked against the manifest before any array is read."""
    with _archive_errors(npath), zipfile.ZipFile(io.BytesIO(blob)) as zf:
        infos = zf.infolist()
        names = sorted(info.filename for info in infos)
        expected = {f"{name}.npy": name for name in m.arrays}
        if names != sorted(expected):
            found = [n[:-4] if n.endswith(".npy") else n for n in names]
            raise _Invalid(f"{jpath}: not a valid symbp model file: parameter arrays {_short(found)} != "
                           f"{_list_text(sorted(m.arrays))}")
        for info in infos:
            name = expected[info.filename]
            _member_header(zf, info, name, m.arrays[name], m, npath, jpath)
        arrays = {}
        for info in infos:
            with zf.open(info) as f:
                arrays[expected[info.filename]] = np.lib.format.read_array(
                    f, allow_pickle=False, max_header_size=_MAX_NPY_HEADER)
    for name, shape in m.arrays.items():
        if arrays[name].shape != shape:  # checked in the header; the data agrees
            raise _Invalid(f"{npath}: {name} has shape {arrays[name].shape}, expected {shape}")
    return arrays


# -- load ----------------------------------------------------------------------------------------------
def _named(jpath: Path, where: str, fn):
    """``fn()``; a refusal (or a crash on malformed input) becomes a ValueError naming the model file."""
    try:
        return fn()
    except ValueError as exc:
        raise _Invalid(f"{jpath}: not a valid symbp model file: {where}{exc}") from None
    except (TypeError, LookupError, ArithmeticError, AttributeError, RecursionError) as exc:
        raise _Invalid(f"{jpath}: not a valid symbp model file: {where}{type(exc).__name__}: {exc}") from exc


#: The declaration stage's constructors, as a layer entry's ``build(sb)`` takes them (not the top-level package:
#: no stage imports it).
_DECLARATIONS = SimpleNamespace(Activation=Activation, Cost=Cost, Dense=Dense, Input=Input, Network=Network,
                                parse=parse)


def _build(m: _Manifest, jpath: Path):
    """The ``Network``: expressions parsed by the whitelist parser; any refusal names the model file."""
    sb = _DECLARATIONS
    layers = [_named(jpath, f"layer {i}: ", lambda layer=layer: layer.build(sb)) for i, layer in enumerate(m.layers)]
    name, expr = m.cost
    cost = _named(jpath, "cost: ", lambda: sb.Cost(name, sb.parse(expr, allowed=("a", "y"))))
    return _named(jpath, "", lambda: sb.Network(layers, cost=cost))


def _read_model_files(jpath: Path, npath: Path) -> tuple[_Manifest, Path, bytes]:
    """The checked manifest, and the parameter file it commits to with its bytes."""
    raw = _read_json(jpath)
    for attempt in range(3):
        m = _decode_manifest(raw, jpath)
        try:
            source, blob = _committed_params(m, npath, jpath)
            return m, source, blob
        except _Mismatch:
            # A save of this path may have committed in between: retry with its manifest, else give up.
            again = _read_json(jpath)
            if attempt == 2 or again == raw:
                raise
            raw = again
    raise AssertionError("unreachable")


def load(path, backend: str | None = None):
    """Load a model saved with ``Model.save(path)``: rebuild the network (expressions through the whitelist
    parser), compile it for ``backend`` (a registered backend's name: "numba", "numpy" or one of your own; by
    default the one it was saved from) and load the parameters.

    Every check of the files comes first (see the module docstring); a malformed file is a ``ValueError``
    naming it, a missing one a ``FileNotFoundError``."""
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    jpath, npath = _paths(path)
    m, source, blob = _read_model_files(jpath, npath)
    arrays = _read_arrays(blob, m, source, jpath)
    net = _build(m, jpath)
    try:
        model = net.compile(backend=backend or m.backend, dtype=m.dtype.name)
    except ValueError as exc:
        raise ValueError(f"{jpath}: cannot compile the model: {exc}") from None
    names = [name for name in m.arrays if not (m.velocities and name.startswith("v"))]
    pairs, vpairs = [], []
    for layer in m.layers:
        if layer.params:
            group = [names.pop(0) for _ in layer.params]
            pairs.append(tuple(arrays[name] for name in group))
            vpairs.append(tuple(arrays[f"v{name}"] for name in group) if m.velocities else ())
    try:
        model.set_params(pairs)
        if m.velocities:
            model.set_velocities(vpairs)
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None
    return model


# -- save ----------------------------------------------------------------------------------------------
def _encode_layer(layer) -> dict:
    """A layer entry: ``{"kind": ..., **config()}``, each kind describing itself (``Layer.config``).  Files
    without ``"kind"`` (the first format: the input, then dense layers) still load."""
    return {"kind": layer.kind, **layer.config()}


def _save_error(exc: OSError, jpath: Path) -> OSError:
    """The same kind of OSError, with a one-line message naming the model."""
    msg = f"cannot save the model to {jpath}: {exc.strerror or exc}"
    return type(exc)(exc.errno, msg) if exc.errno else OSError(msg)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_temp(target: Path, data: bytes) -> Path:
    """``data`` in a new temporary sibling of ``target`` (mode 0o666 less the umask), fsynced."""
    while True:
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(8)}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # saves in this process are serialised by _SAVE_LOCK: its temporary files are stale
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _prepare(jpath: Path, npath: Path) -> None:
    """The folder exists and no target is a folder; errors are one line naming the path."""
    folder = jpath.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in [folder, *folder.parents] if p.exists() and not p.is_dir()), folder)
        raise ValueError(f"cannot save the model to {jpath}: {blocker} is a file, not a folder") from None
    except OSError as exc:
        raise _save_error(exc, jpath) from None
    for p in (jpath, npath, _pending(npath)):
        try:
            mode = os.lstat(p).st_mode
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise _save_error(exc, jpath) from None
        if stat.S_ISDIR(mode):
            raise ValueError(f"cannot save the model to {jpath}: {p} is a folder")


def _recover(jpath: Path, npath: Path) -> None:
    """Step 0: finish a save stopped after its commit, discard one stopped before, remove stale temp files."""
    folder, base = jpath.parent, jpath.name[: -len(".json")]
    pattern = _temp_pattern(base)
    with os.scandir(folder) as entries:
        stale = [e.name for e in entries if (mt := pattern.fullmatch(e.name)) and not _alive(int(mt.group(1)))]
    for name in stale:
        (folder / name).unlink(missing_ok=True)
    pending = _pending(npath)
    if not os.path.lexists(pending):
        return
    committed = None
    try:
        doc = json.loads(_read_json(jpath))
        committed = doc["params"]["sha256"]
    except Exception:  # no readable manifest: nothing commits to the pending file
        pass
    if committed and _file_sha256(pending) == committed and _file_sha256(npath) != committed:
        os.replace(pending, npath)
    else:
        os.unlink(pending)
    _fsync_dir(folder)


def save(model, path) -> tuple[Path, Path]:
    """Write ``path.json`` and ``path.npz``; returns both paths.  A reader sees the old model or this one."""
    jpath, npath = _paths(path)
    arrays = {}
    velocities = getattr(model, "velocities", None)
    net = model.network  # the arrays' names, as model.param_names: W1, b1, … by the layers' own parameter names
    specs = [s for s in (layer.param_specs(shape) for layer, shape in zip(net.layers[1:], net.shapes)) if s]
    names = [tuple(f"{spec.name}{k}" for spec in group) for k, group in enumerate(specs, start=1)]
    for group, pair in zip(names, model.params):
        for name, arr in zip(group, pair):
            if not np.isfinite(arr).all():
                raise ValueError(f"cannot save the model to {jpath}: {name} contains NaN or inf")
            arrays[name] = arr
    for group, pair in zip(names, velocities or ()):  # momentum SGD's state: training goes on where it was
        for name, arr in zip((f"v{n}" for n in group), pair):
            if not np.isfinite(arr).all():
                raise ValueError(f"cannot save the model to {jpath}: the momentum velocity {name} contains NaN or inf")
            arrays[name] = arr
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    blob = buf.getvalue()
    net = model.network
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "layers": [_encode_layer(layer) for layer in net.layers],
        "cost": {"name": net.cost.name, "expr": net.cost.text},
        "dtype": model.dtype.name,
        "backend": model.backend,
        "params": {"file": npath.name, "sha256": hashlib.sha256(blob).hexdigest()},
    }
    if velocities is not None:
        doc["velocities"] = True
    text = (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()
    pending, folder = _pending(npath), jpath.parent
    with _SAVE_LOCK:
        _prepare(jpath, npath)
        try:
            _recover(jpath, npath)  # after this no pending file exists: any found below is this save's
        except OSError as exc:
            raise _save_error(exc, jpath) from exc
        tmp_npz = tmp_json = None
        try:
            tmp_npz = _write_temp(npath, blob)
            os.replace(tmp_npz, pending)  # 1. the new parameters, complete, under their pending name
            _fsync_dir(folder)
            tmp_json = _write_temp(jpath, text)
            os.replace(tmp_json, jpath)  # 2. commit: the manifest names the new parameters' SHA-256
            _fsync_dir(folder)
            os.replace(pending, npath)  # 3. the parameters under their own name
            _fsync_dir(folder)
        except BaseException as exc:
            # Committed iff the manifest left its temporary name (judged from the disk, not from how far
            # this code got: an interrupt may land just after a rename).
            committed = tmp_json is not None and not os.path.lexists(tmp_json)
            for tmp in (tmp_npz, tmp_json):
                if tmp is not None:
                    tmp.unlink(missing_ok=True)
            if not committed:
                with contextlib.suppress(OSError):
                    pending.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise _save_error(exc, jpath) from exc
            raise
    return jpath, npath
