"""The on-disk kernel cache.

Takes: generated module source.  Gives: an imported module whose numba functions were compiled (or loaded
from numba's cache) — and whether that was a cache hit.

Layout: ``<cache root>/kernels/<key>/symbp_<key>.py`` plus numba's own ``__pycache__`` beside it.  The key
is a SHA-256 of the source, the runtime helpers' source (``runtime.py``, ``masks.py``) and the versions of
symbp, numba, llvmlite and numpy, so any change to any of them gives a new entry.  The root is
``$SYMBP_CACHE_DIR`` or the user cache folder (platformdirs).  Files are written atomically (temporary file
+ ``os.replace``) and only when missing or different, because numba keys its own cache on the file's
modification time.  A corrupt or
half-written entry (source that does not match, numba index or data files that fail to load) is removed
and rebuilt once.  Two processes compiling the same kernel at once both succeed: each write is atomic.

Each kernel is a module of its own, compiled by numba when a model first calls it (``Kernels``).  The
declaration index (``kernels/index/<declaration key>.json``) lets a warm process skip derivation: a record
names, per kernel, the content key of its module and holds its source for display.  A record is used only
after verification: each module file it points to must exist and hash to its key, and each recorded source
must be part of its module; anything else is ignored and rewritten.  So an edited index can point a process
only at a module this code generator wrote and hashed, never inject source of its own.

Cache I/O errors are reported as what they are (``KernelCacheError``, an ``OSError`` naming the folder and
saying how to choose another); a stray file where a folder should be is removed and the entry rebuilt.  A
Ctrl-C during a cold numba compile (which runs inside LLVM callbacks, where Python drops the
``KeyboardInterrupt``) is recorded and raised as soon as the compile returns.

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
import signal
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

from symbp.network import declaration_text


class KernelCacheError(OSError):
    """The kernel cache folder cannot be used (not a folder, not writable, ...)."""


def _cache_error(path: Path, exc: OSError) -> KernelCacheError:
    why = exc.strerror or type(exc).__name__
    return KernelCacheError(f"kernel cache {path} cannot be used ({why}); set SYMBP_CACHE_DIR to a writable folder")


def cache_root() -> Path:
    env = os.environ.get("SYMBP_CACHE_DIR")
    if env:
        root = Path(env).expanduser()
        if root.exists() and not root.is_dir():
            raise KernelCacheError(f"SYMBP_CACHE_DIR={env} is not a folder; point it at a writable folder")
        return root
    import platformdirs

    return Path(platformdirs.user_cache_dir("symbp"))


def _versions() -> str:
    import llvmlite
    import numba
    import numpy

    from symbp._version import __version__

    return (f"symbp={__version__} numba={numba.__version__} llvmlite={llvmlite.__version__} "
            f"numpy={numpy.__version__}")


def cache_key(source: str) -> str:
    here = Path(__file__).resolve().parent
    runtime = (here / "runtime.py").read_bytes() + (here.parent / "masks.py").read_bytes()
    h = hashlib.sha256()
    for part in (source.encode(), runtime, _versions().encode(), sys.version.encode()):
        h.update(part)
        h.update(b"\0")
    return h.hexdigest()[:24]


def _make_folder(folder: Path) -> None:
    """``mkdir -p`` that repairs a stray file (a damaged entry) where a folder of the cache should be."""
    root = cache_root()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return
    except (FileExistsError, NotADirectoryError):
        pass
    except OSError as exc:
        raise _cache_error(folder, exc) from None
    # Some component below the root is a file: remove it (inside the cache only) and try once more.
    probe = folder
    while probe != root and root in probe.parents:
        if probe.exists() and not probe.is_dir():
            probe.unlink()
            break
        probe = probe.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _cache_error(folder, exc) from None


def _write_atomic(path: Path, text: str) -> None:
    _make_folder(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".py")
    except OSError as exc:
        raise _cache_error(path.parent, exc) from None
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


_CODEGEN_FILES = ("symbols.py", "activations.py", "costs.py", "layers", "network.py", "derive", "compile")


def _code_digest() -> bytes:
    """A digest of every symbp source file that influences generated code."""
    global _DIGEST
    if _DIGEST is None:
        root = Path(__file__).resolve().parents[3]  # symbp/
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
    """A key for a network *declaration* (``Network.config()``, the encoding model files and sweeps use): lets
    a warm process skip derivation and code generation."""
    h = hashlib.sha256("\0".join([backend, dtype, declaration_text(network.config())]).encode())
    h.update(_code_digest())
    h.update(_versions().encode())
    h.update(sys.version.encode())
    return h.hexdigest()[:24]


def _index_path(key: str) -> Path:
    return cache_root() / "kernels" / "index" / f"{key}.json"


def _module_path(key: str) -> Path:
    return cache_root() / "kernels" / key / f"symbp_{key}.py"


def lookup_declaration(key: str) -> dict | None:
    """The kernels recorded for a declaration key, verified, or None (missing, damaged or not matching).

    Returns ``{"modules": {kernel: module source}, "sources": {kernel: source}, "module_keys": {kernel: key}}``;
    each kernel's module source is read from its content-addressed module file, which must hash to the key the
    record names and contain the recorded kernel source.
    """
    try:
        doc = json.loads(_index_path(key).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if not (isinstance(doc, dict) and isinstance(doc.get("module_keys"), dict) and isinstance(doc.get("sources"), dict)
            and doc["sources"].keys() == doc["module_keys"].keys()
            and all(isinstance(k, str) and isinstance(v, str) for d in (doc["sources"], doc["module_keys"])
                    for k, v in d.items())):
        return None
    modules = {}
    for name, mkey in doc["module_keys"].items():
        if not (len(mkey) == 24 and all(c in "0123456789abcdef" for c in mkey)):
            return None
        try:
            module = _module_path(mkey).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        if cache_key(module) != mkey or doc["sources"][name] not in module:
            return None
        modules[name] = module
    return {"modules": modules, "sources": doc["sources"], "module_keys": doc["module_keys"]}


def write_module(source: str) -> bool:
    """Write a module's source to its content-addressed file if missing or different; True when it replaced a
    damaged entry (whose numba cache files are dropped with it)."""
    path = _module_path(cache_key(source))
    try:
        current = path.read_text(encoding="utf-8") if path.is_file() else None
    except (OSError, UnicodeDecodeError):
        current = None
    if current != source:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        damaged = current is not None or path.exists() or (path.parent / "__pycache__").exists()
        shutil.rmtree(path.parent / "__pycache__", ignore_errors=True)
        _write_atomic(path, source)
        return damaged
    return False


def record_declaration(key: str, modules: dict[str, str], sources: dict[str, str]) -> None:
    """Point the declaration ``key`` at the content-addressed modules of its kernels (written here if missing).
    Kernels are added as they are generated (a model's update-rule variants come later): the record is merged
    with what is there; a lost race between two processes only costs a later process the fast path."""
    try:
        for src in modules.values():
            write_module(src)
        keys = {name: cache_key(src) for name, src in modules.items()}
        known = lookup_declaration(key) or {"module_keys": {}, "sources": {}}
        doc = {"module_keys": {**known["module_keys"], **keys}, "sources": {**known["sources"], **sources}}
        _write_atomic(_index_path(key), json.dumps(doc))
    except OSError:  # a read-only index only costs the fast path
        pass


class CacheInfo(dict):
    """``{"hit": bool, "path": str, "key": str, "rebuilt": bool}``."""


@contextmanager
def _deferred_interrupt():
    """Make Ctrl-C during a numba compile interrupt it.  numba compiles inside LLVM callbacks (ctypes), where
    Python reports a ``KeyboardInterrupt`` as "Exception ignored" and carries on: the handler both raises
    (taking effect at once where it can) and records the interrupt, which is raised when the compile returns."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pressed = []
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        pressed.append(signum)
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGINT, handler)
    except ValueError:  # not in the main interpreter
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if pressed:  # also when the dropped interrupt made numba fail in some other way
            raise KeyboardInterrupt("interrupted during a numba compile")  # noqa: B012


def load_module(source: str, functions: list[str]):
    """Import ``source`` from the cache (writing it if needed); returns (module, CacheInfo)."""
    key = cache_key(source)
    folder = cache_root() / "kernels" / key
    path = folder / f"symbp_{key}.py"
    name = f"symbp_kernels_{key}"
    rebuilt = False
    if name in sys.modules:
        module = sys.modules[name]
        try:  # missing (another cache root) or damaged since: keep the entry on disk whole too
            if not path.is_file() or path.read_text(encoding="utf-8") != source:
                _write_atomic(path, source)
        except (OSError, UnicodeDecodeError):
            pass
        return module, CacheInfo(hit=True, path=str(path), key=key, rebuilt=False, in_process=True)
    for attempt in range(2):
        try:
            current = path.read_text(encoding="utf-8") if path.is_file() else None
        except (OSError, UnicodeDecodeError):
            current = None
        if current != source:
            if current is not None or path.exists():
                rebuilt = True  # corrupt or half-written: rewrite and drop numba's stale entries
                shutil.rmtree(folder / "__pycache__", ignore_errors=True)
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
            _write_atomic(path, source)
        linecache.cache[str(path)] = (len(source), None, source.splitlines(True), str(path))
        try:
            with _deferred_interrupt():
                module = _import(path, name)
            break
        except KeyboardInterrupt:
            sys.modules.pop(name, None)
            raise
        except OSError as exc:  # numba's own cache files beside the module could not be written
            sys.modules.pop(name, None)
            raise _cache_error(folder, exc) from None
        except Exception:
            sys.modules.pop(name, None)
            if attempt:
                raise
            rebuilt = True
            shutil.rmtree(folder, ignore_errors=True)
    hits = sum(sum(getattr(module, f).stats.cache_hits.values()) for f in functions)
    misses = sum(sum(getattr(module, f).stats.cache_misses.values()) for f in functions)
    return module, CacheInfo(hit=hits > 0 and misses == 0, path=str(path), key=key, rebuilt=rebuilt,
                             in_process=False)


def is_compiled(source: str, function: str) -> bool:
    """Does numba's cache hold ``function`` of the module of ``source`` (an index file for it)?  Beside the
    module, or where ``$NUMBA_CACHE_DIR`` puts it (numba's own sub-folder for the module's folder).  A cheap
    look before deciding to compile ahead; ``load_module`` still verifies everything."""
    key = cache_key(source)
    path = _module_path(key)
    folders = [path.parent / "__pycache__"]
    user = os.environ.get("NUMBA_CACHE_DIR")
    if user:
        from numba.core.caching import _CacheLocator

        folders.append(Path(user) / _CacheLocator.get_suitable_cache_subpath(str(path)))
    return any(any(folder.glob(f"symbp_{key}.{function}-*.nbi")) for folder in folders)


def module_path(source: str) -> Path:
    """The content-addressed file holding a module's source (written now if missing or different)."""
    write_module(source)
    return _module_path(cache_key(source))
