"""The on-disk kernel cache.

Takes: generated module source.  Gives: an imported module whose numba functions were compiled (or loaded
from numba's cache) — and whether that was a cache hit.

Layout: ``<cache root>/kernels/<key>/symbp_<key>.py`` plus numba's own ``__pycache__`` beside it.  The key
is a SHA-256 of the source, the runtime helpers' source and the versions of symbp, numba, llvmlite and
numpy, so any change to any of them gives a new entry.  The root is ``$SYMBP_CACHE_DIR`` or the user cache
folder (platformdirs).  Files are written atomically (temporary file + ``os.replace``) and only when
missing or different, because numba keys its own cache on the file's modification time.  A corrupt or
half-written entry (source that does not match, numba index or data files that fail to load) is removed
and rebuilt once.  Two processes compiling the same kernel at once both succeed: each write is atomic.

Note: numba's cache files are numba's own (pickle-based) format; the cache folder is trusted local state,
like ``__pycache__``.  Nothing from a model file or the command line ever reaches it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import linecache
import os
import shutil
import sys
import tempfile
from pathlib import Path


def cache_root() -> Path:
    env = os.environ.get("SYMBP_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("symbp"))


def _versions() -> str:
    import llvmlite
    import numba
    import numpy

    import symbp

    return (f"symbp={symbp.__version__} numba={numba.__version__} llvmlite={llvmlite.__version__} "
            f"numpy={numpy.__version__}")


def cache_key(source: str) -> str:
    runtime = Path(__file__).with_name("runtime.py").read_bytes()
    h = hashlib.sha256()
    for part in (source.encode(), runtime, _versions().encode(), sys.version.encode()):
        h.update(part)
        h.update(b"\0")
    return h.hexdigest()[:24]


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".py")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _import(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


_CODEGEN_FILES = ("symbols.py", "activations.py", "costs.py", "layers.py", "network.py", "derive", "compile")


def _code_digest() -> bytes:
    """A digest of every symbp source file that influences generated code."""
    global _DIGEST
    if _DIGEST is None:
        root = Path(__file__).resolve().parent.parent
        h = hashlib.sha256()
        for name in _CODEGEN_FILES:
            p = root / name
            for f in sorted(p.rglob("*.py")) if p.is_dir() else [p]:
                h.update(f.name.encode())
                h.update(f.read_bytes())
        _DIGEST = h.digest()
    return _DIGEST


_DIGEST = None


def declaration_key(network, backend: str, dtype: str) -> str:
    """A key for a network *declaration*: lets a warm process skip derivation and code generation."""
    import sympy as sp

    parts = [backend, dtype, repr(network.sizes), sp.srepr(network.cost.expr), network.cost.name]
    for act in network.activations:
        parts += [act.name, sp.srepr(act.expr), str(act.vector)]
    h = hashlib.sha256("\0".join(parts).encode())
    h.update(_code_digest())
    h.update(_versions().encode())
    h.update(sys.version.encode())
    return h.hexdigest()[:24]


def lookup_declaration(key: str) -> dict | None:
    """The generated sources recorded for a declaration key, or None (also for a damaged record)."""
    path = cache_root() / "kernels" / "index" / f"{key}.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ok = (isinstance(doc, dict) and isinstance(doc.get("module"), str) and isinstance(doc.get("sources"), dict)
          and all(isinstance(k, str) and isinstance(v, str) for k, v in doc["sources"].items()))
    return doc if ok else None


def record_declaration(key: str, module_source: str, sources: dict[str, str]) -> None:
    path = cache_root() / "kernels" / "index" / f"{key}.json"
    try:
        _write_atomic(path, json.dumps({"module": module_source, "sources": sources}))
    except OSError:  # a read-only cache only costs the fast path
        pass


class CacheInfo(dict):
    """``{"hit": bool, "path": str, "key": str, "rebuilt": bool}``."""


def load_module(source: str, functions: list[str]):
    """Import ``source`` from the cache (writing it if needed); returns (module, CacheInfo)."""
    key = cache_key(source)
    folder = cache_root() / "kernels" / key
    path = folder / f"symbp_{key}.py"
    name = f"symbp_kernels_{key}"
    rebuilt = False
    if name in sys.modules:
        module = sys.modules[name]
        return module, CacheInfo(hit=True, path=str(path), key=key, rebuilt=False, in_process=True)
    for attempt in range(2):
        try:
            current = path.read_text(encoding="utf-8") if path.exists() else None
        except (OSError, UnicodeDecodeError):
            current = None
        if current != source:
            if current is not None:
                rebuilt = True  # corrupt or half-written: rewrite and drop numba's stale entries
                shutil.rmtree(folder / "__pycache__", ignore_errors=True)
            _write_atomic(path, source)
        linecache.cache[str(path)] = (len(source), None, source.splitlines(True), str(path))
        try:
            module = _import(path, name)
            break
        except Exception:
            if attempt:
                raise
            rebuilt = True
            shutil.rmtree(folder, ignore_errors=True)
    hits = sum(sum(getattr(module, f).stats.cache_hits.values()) for f in functions)
    misses = sum(sum(getattr(module, f).stats.cache_misses.values()) for f in functions)
    return module, CacheInfo(hit=hits > 0 and misses == 0, path=str(path), key=key, rebuilt=rebuilt,
                             in_process=False)
