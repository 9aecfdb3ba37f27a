"""Save and load models: the network as JSON, the parameters as ``.npz``.

Takes: a ``Model`` and a path.  Gives: ``<path>.json`` (layers, activation and cost expressions as text,
dtype, backend, the SHA-256 of the parameter file) and ``<path>.npz`` (W1, b1, …).  ``load`` re-parses
every expression with the whitelist parser and reads arrays with ``allow_pickle=False``: nothing in a model
file can run code.  A tampered, truncated or inconsistent file is a ``ValueError``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np

FORMAT = "symbp-model"
VERSION = 1
_MAX_JSON = 1 << 20


def _paths(path) -> tuple[Path, Path]:
    p = Path(path)
    if p.suffix in (".json", ".npz"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".json"), p.with_name(p.name + ".npz")


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(model, path) -> tuple[Path, Path]:
    """Write ``path.json`` and ``path.npz``; returns both paths."""
    jpath, npath = _paths(path)
    arrays = {}
    for l, (W, b) in enumerate(model.params, start=1):
        arrays[f"W{l}"], arrays[f"b{l}"] = W, b
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    blob = buf.getvalue()
    net = model.network
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "layers": [{"n": net.layers[0].n}] + [
            {"n": layer.n, "activation": {"name": layer.activation.name, "expr": layer.activation.text,
                                          "vector": layer.activation.vector}}
            for layer in net.layers[1:]
        ],
        "cost": {"name": net.cost.name, "expr": net.cost.text},
        "dtype": model.dtype.name,
        "backend": model.backend,
        "params": {"file": npath.name, "sha256": hashlib.sha256(blob).hexdigest()},
    }
    _atomic_write(npath, blob)
    _atomic_write(jpath, (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode())
    return jpath, npath


def _require(cond, msg, jpath):
    if not cond:
        raise ValueError(f"{jpath}: not a valid symbp model file: {msg}")


def load(path, backend: str | None = None):
    """Rebuild the network (expressions through the whitelist parser), compile it and load the parameters."""
    import symbp as sb

    jpath, npath = _paths(path)
    try:
        raw = jpath.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"no model file {jpath}") from None
    _require(len(raw) <= _MAX_JSON, "file too large", jpath)
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{jpath}: corrupt or truncated JSON ({exc})") from None
    _require(isinstance(doc, dict) and doc.get("format") == FORMAT, "missing format marker", jpath)
    _require(doc.get("version") == VERSION, f"unsupported version {doc.get('version')!r}", jpath)
    layers_doc = doc.get("layers")
    _require(isinstance(layers_doc, list) and len(layers_doc) >= 2, "layers must be a list of ≥ 2", jpath)
    layers = []
    for i, ld in enumerate(layers_doc):
        _require(isinstance(ld, dict) and isinstance(ld.get("n"), int) and not isinstance(ld.get("n"), bool),
                 f"layer {i} needs an integer n", jpath)
        if i == 0:
            layers.append(sb.Input(ld["n"]))
            continue
        act = ld.get("activation")
        _require(isinstance(act, dict) and isinstance(act.get("name"), str) and isinstance(act.get("expr"), str),
                 f"layer {i} needs an activation with name and expr", jpath)
        expr = sb.parse(act["expr"], allowed=("z",))
        layers.append(sb.Dense(ld["n"], sb.Activation(act["name"], expr, vector=bool(act.get("vector", False)))))
    cost = doc.get("cost")
    _require(isinstance(cost, dict) and isinstance(cost.get("name"), str) and isinstance(cost.get("expr"), str),
             "cost needs name and expr", jpath)
    net = sb.Network(layers, cost=sb.Cost(cost["name"], sb.parse(cost["expr"], allowed=("a", "y"))))
    dtype = doc.get("dtype")
    _require(dtype in ("float64", "float32"), f"bad dtype {dtype!r}", jpath)
    params = doc.get("params")
    _require(isinstance(params, dict) and isinstance(params.get("sha256"), str), "params entry missing", jpath)
    try:
        blob = npath.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"parameter file {npath} (named by {jpath}) is missing") from None
    if hashlib.sha256(blob).hexdigest() != params["sha256"]:
        raise ValueError(f"{npath}: checksum mismatch with {jpath.name}: the parameter file was modified or truncated")
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as exc:  # zipfile/format errors of a damaged archive
        raise ValueError(f"{npath}: unreadable parameter archive ({type(exc).__name__}: {exc})") from None
    L = len(layers) - 1
    expected = {f"{k}{l}" for l in range(1, L + 1) for k in ("W", "b")}
    _require(set(arrays) == expected, f"parameter arrays {sorted(arrays)} != {sorted(expected)}", jpath)
    model = net.compile(backend=backend or doc.get("backend", "numba"), dtype=dtype)
    model.set_params([(arrays[f"W{l}"], arrays[f"b{l}"]) for l in range(1, L + 1)])
    return model
