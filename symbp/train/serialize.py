"""Save and load models: the network as JSON, the parameters as ``.npz``.

Takes: a ``Model`` and a path.  Gives: ``save``, which writes ``<path>.json`` (layers, activation and cost
expressions as text, dtype, backend, the SHA-256 of the parameter file: ``symbp.train.manifest``) and
``<path>.npz`` (W1, b1, …) by the protocol of ``symbp.train.atomic`` (a reader sees the old model or the new
one, never a mix), and ``load``.  ``load`` re-parses every expression with the whitelist parser and reads arrays
with ``allow_pickle=False``: nothing in a model file can run code.  A tampered, truncated, inconsistent or hostile
file is a ``ValueError`` naming the file.

Loading validates before it reads, allocates or compiles:

1. ``path.json`` is opened without blocking and must be a regular file (a FIFO, a device such as
   ``/dev/zero`` behind a symlink, or a directory is refused unread) of at most 1 MiB; it is parsed and every
   field is type-checked (plain data: no expression is parsed yet).
2. The declared layer sizes give the exact arrays and their byte count; the size of the parameter file must
   be consistent with it (at most ``MAX_INFLATE`` times smaller, at most the per-array header slack larger)
   before a byte of it is read, then its SHA-256 must match the manifest.
3. Every ``.npy`` member is checked from the zip directory and its header alone (``symbp.train.safe_read``).
   Only then are the arrays read.
4. Only then are the expressions parsed, the ``Network`` built (each failure re-raised naming the file) and the
   kernels compiled.

``load`` reads the manifest first and takes ``path.npz.new`` if it matches the manifest's SHA-256 (a save
stopped, or still running, between its commit and its last rename), else ``path.npz`` if that does; a save killed
before its commit leaves the old manifest and the old ``path.npz``.  If neither matches and the manifest has
changed meanwhile (a save committed), it starts again with the new manifest.

The reader's and the codec's helpers are also reachable here under the names they had when this module held
them all (``_paths``, ``_decode_manifest``, ``_encode_layer``, ``_build``, ``_read_arrays``, ``_MAX_JSON``).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from pathlib import Path

import numpy as np

from symbp.compile.backends import BACKENDS
from symbp.network import MAX_LAYERS
from symbp.train.atomic import model_paths, pending_path, write_model_files
from symbp.train.manifest import (
    FORMAT,
    VERSION,
    Manifest,
    build_network,
    decode_manifest,
    encode_layer,
    encode_manifest,
)
from symbp.train.safe_read import (
    ARCHIVE_SLACK,
    MAX_INFLATE,
    MAX_JSON,
    MEMBER_SLACK,
    Invalid,
    Mismatch,
    list_text,
    open_checked,
    read_arrays,
    read_exact,
    read_json,
)

__all__ = ["FORMAT", "VERSION", "load", "save"]

_paths = model_paths
_decode_manifest = decode_manifest
_encode_layer = encode_layer
_build = build_network
_read_arrays = read_arrays
_MAX_JSON = MAX_JSON
_MAX_LAYERS = MAX_LAYERS


def _committed_params(m: Manifest, npath: Path, jpath: Path) -> tuple[Path, bytes]:
    """The parameter file the manifest commits to and its bytes: the pending ``path.npz.new`` of a save
    stopped after its commit, else ``path.npz``.  Each is sized against the declared layers before it is read.

    The pending file is tried first: a save's last step renames it over ``path.npz`` in one step, so a reader
    racing that save finds the new parameters under one name or the other."""
    need = m.data_bytes
    most = need + len(m.arrays) * MEMBER_SLACK + ARCHIVE_SLACK
    sizes = list_text([math.prod(layer.shape) for layer in m.layers])
    problems: dict[Path, str] = {}
    for cand in (pending_path(npath), npath):
        try:
            fd, size = open_checked(cand, "parameter file")
        except FileNotFoundError:
            continue
        except Invalid as exc:
            problems[cand] = str(exc)
            continue
        try:
            if size * MAX_INFLATE < need or size > most:
                problems[cand] = (f"{cand}: {size} bytes cannot hold the {need // m.dtype.itemsize} {m.dtype.name} "
                                  f"parameters ({need} bytes) of the layer sizes {sizes} declared in {jpath.name}")
                continue
            blob = read_exact(fd, size, cand, "parameter file")
        finally:
            os.close(fd)
        if hashlib.sha256(blob).hexdigest() == m.sha256:
            return cand, blob
        problems[cand] = f"{cand}: checksum mismatch with {jpath.name}: the parameter file was modified or truncated"
    if not problems:
        raise FileNotFoundError(f"parameter file {npath} (named by {jpath}) is missing")
    raise Mismatch(problems.get(npath) or next(iter(problems.values())))


#: how many manifests a load tries while saves of the same path commit under it: each retry follows a save
#: that committed meanwhile, so only a reader racing this many saves in a row gives up (three were too few
#: for a reader racing a loop of saves on a loaded machine)
_READ_ATTEMPTS = 10


def _read_model_files(jpath: Path, npath: Path) -> tuple[Manifest, Path, bytes]:
    """The checked manifest, and the parameter file it commits to with its bytes."""
    raw = read_json(jpath)
    for attempt in range(_READ_ATTEMPTS):
        m = decode_manifest(raw, jpath)
        try:
            source, blob = _committed_params(m, npath, jpath)
            return m, source, blob
        except Mismatch:
            # A save of this path may have committed in between: retry with its manifest, else give up.
            again = read_json(jpath)
            if attempt == _READ_ATTEMPTS - 1 or again == raw:
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
    jpath, npath = model_paths(path)
    m, source, blob = _read_model_files(jpath, npath)
    arrays = read_arrays(blob, m, source, jpath)
    net = build_network(m, jpath)
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


def save(model, path) -> tuple[Path, Path]:
    """Write ``path.json`` and ``path.npz``; returns both paths.  A reader sees the old model or this one."""
    jpath, npath = model_paths(path)
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
    doc = encode_manifest(model, npath.name, hashlib.sha256(blob).hexdigest())
    text = (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()
    write_model_files(jpath, npath, blob, text)
    return jpath, npath
