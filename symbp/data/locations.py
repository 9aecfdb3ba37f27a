"""Remembered dataset folders: where a dataset was found once, so that later commands find it again.

Takes: a folder that holds a dataset (found by ``--data-dir`` or ``$SYMBP_DATA_DIR`` during a ``symbp`` command,
or given to ``symbp data add DIR``).  Gives: ``remembered()``, dataset name -> absolute folder, read from one
small JSON file in the cache folder, ``locations_file()`` = ``<cache root>/datasets/locations.json``::

    {"version": 1, "datasets": {"mnist": "/abs/path/mnist", "fashion-mnist": "/abs/path/fashion-mnist"}}

One folder per dataset: the folder that holds its four ``.gz`` files.  ``remember``/``forget`` change the file;
it is written atomically (a temporary file in the same folder, then ``os.replace``), and removed when nothing is
left in it.  ``folder_problem(folder, spec)`` says why a folder does not hold a dataset (missing, a wrong size,
a wrong SHA-256), or None when it does.

The file is validated when read: a regular file of at most ``MAX_BYTES`` bytes, UTF-8 JSON of exactly the shape
above, known dataset names, absolute normalised paths.  Anything else -- a corrupt, truncated, oversized or
hostile file, a link, a FIFO -- gives a one-line warning and the file is ignored (as if nothing were
remembered), never an error.  A remembered folder is used only if it still holds the four files with the right
sizes and checksums; one that vanished or changed is passed over.

Remembering on its own is switched on only inside ``remembering()``, which the ``symbp`` command line enters:
a library call such as ``load_mnist(data_dir)`` reads the remembered folders but never writes the file.
``SYMBP_REMEMBER_DATA=0`` (or ``no``, ``false``, ``off``) switches it off for commands too; ``remember``
(``symbp data add DIR``) still works.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

from symbp.data.download import cache_root, sha256_file
from symbp.data.registry import DATASETS, DatasetSpec, get_spec

VERSION = 1
FILENAME = "locations.json"
MAX_BYTES = 16 * 1024  # a few absolute paths; anything larger is not a file symbp wrote
MAX_PATH = 4096
ENV_REMEMBER = "SYMBP_REMEMBER_DATA"

_auto = False  # True inside remembering(): a folder found by a flag or $SYMBP_DATA_DIR is remembered
_warned: set[tuple[str, str]] = set()


class LocationsWarning(UserWarning):
    """The remembered-folders file cannot be used; it is ignored."""


def locations_file() -> Path:
    """The file of remembered folders: ``<cache root>/datasets/locations.json``."""
    return cache_root() / "datasets" / FILENAME


# --- reading --------------------------------------------------------------------------------------


def _warn(path: Path, why: str) -> None:
    key = (str(path), why)
    if key in _warned:  # once per process: every dataset lookup reads the file
        return
    _warned.add(key)
    warnings.warn(f"ignoring the remembered data folders in {path}: {why} (`symbp data forget` removes the file, "
                  "`symbp data add DIR` writes a new one)", LocationsWarning, stacklevel=3)


def _parse(raw: bytes) -> dict[str, Path]:
    """The validated content of the file; ``ValueError`` saying what is wrong."""
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"not valid JSON ({type(exc).__name__})") from None
    if not isinstance(doc, dict) or set(doc) != {"version", "datasets"}:
        raise ValueError('expected an object with the keys "version" and "datasets"')
    if type(doc["version"]) is not int or doc["version"] != VERSION:
        raise ValueError(f"unknown version {doc['version']!r:.40} (expected {VERSION})")
    entries = doc["datasets"]
    if not isinstance(entries, dict):
        raise ValueError('"datasets" is not an object')
    out: dict[str, Path] = {}
    for name, folder in entries.items():
        if name not in DATASETS:
            raise ValueError(f"unknown dataset {name!r:.40}")
        if (not isinstance(folder, str) or not folder or len(folder) > MAX_PATH or "\x00" in folder
                or not os.path.isabs(folder) or os.path.normpath(folder) != folder):
            raise ValueError(f"the folder of {name} is not an absolute, normalised path")
        out[name] = Path(folder)
    return out


def remembered() -> dict[str, Path]:
    """Dataset name -> remembered folder, from ``locations_file()``; {} if there is none or it is unusable
    (then with a one-line ``LocationsWarning``).  The folders are not checked here (see ``folder_problem``)."""
    path = locations_file()
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    except OSError as exc:
        _warn(path, f"cannot read it ({exc.strerror or exc})")
        return {}
    if not stat.S_ISREG(st.st_mode):
        _warn(path, "it is a link" if stat.S_ISLNK(st.st_mode) else "it is not a regular file")
        return {}
    try:
        from symbp.paths import open_regular

        fd, size = open_regular(path, "remembered-folders file", ValueError)
        opened = os.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino):  # replaced (by a link?) since lstat
            os.close(fd)
            raise ValueError("it changed while being read")
        with os.fdopen(fd, "rb") as f:
            raw = f.read(MAX_BYTES + 1) if size <= MAX_BYTES else b""
        if size > MAX_BYTES or len(raw) > MAX_BYTES:
            raise ValueError(f"larger than {MAX_BYTES} bytes")
        return _parse(raw)
    except (OSError, ValueError) as exc:
        why = str(exc) if isinstance(exc, ValueError) else f"cannot read it ({exc.strerror or exc})"
        _warn(path, why.replace(f"{path}: ", ""))
        return {}


# --- checking a folder ----------------------------------------------------------------------------


def folder_problem(folder: Path, spec: str | DatasetSpec) -> str | None:
    """None if ``folder`` holds the dataset's four files with the right sizes and SHA-256; else why not, in a
    few words (``does not exist``, ``missing X, Y``, ``X has a wrong size``, ``X has a wrong checksum``)."""
    spec = get_spec(spec)
    if not folder.is_dir():
        return "not a folder" if folder.exists() else "does not exist"
    missing = [f.filename for f in spec.files if not (folder / f.filename).is_file()]
    if missing:
        return f"missing {', '.join(missing)}"
    for f in spec.files:  # sizes first: a wrong file is refused without reading it
        if (folder / f.filename).stat().st_size != f.size:
            return f"{f.filename} has a wrong size (not the original {spec.title} file)"
    for f in spec.files:
        if sha256_file(folder / f.filename) != f.sha256:
            return f"{f.filename} has a wrong checksum (not the original {spec.title} file)"
    return None


def find_in(base: str | os.PathLike[str], spec: str | DatasetSpec) -> tuple[Path | None, list[str]]:
    """The folder of ``spec`` in ``base`` -- ``base`` itself or ``base/<name>`` -- and the reasons the others
    were passed over (``folder: why``)."""
    spec = get_spec(spec)
    base = Path(os.path.abspath(Path(base).expanduser()))
    notes = []
    for folder in (base, base / spec.name):
        why = folder_problem(folder, spec)
        if why is None:
            return folder, notes
        notes.append(f"{folder}: {why}")
    return None, notes


# --- writing --------------------------------------------------------------------------------------


def _write(entries: dict[str, Path]) -> Path:
    """Replace the file by ``entries`` (atomically), or remove it when ``entries`` is empty."""
    path = locations_file()
    if not entries:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return path
    doc = {"version": VERSION, "datasets": {name: str(entries[name]) for name in sorted(entries)}}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".locations.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def _current() -> dict[str, Path]:
    with warnings.catch_warnings():  # an unusable file is replaced, not reported again
        warnings.simplefilter("ignore", LocationsWarning)
        return remembered()


def remember(spec: str | DatasetSpec, folder: str | os.PathLike[str]) -> bool:
    """Remember ``folder`` (made absolute) as the folder of dataset ``spec``; True if the file changed.  The
    caller checks that the folder holds the dataset.  Raises ``OSError`` if the file cannot be written."""
    spec = get_spec(spec)
    folder = Path(os.path.abspath(Path(folder).expanduser()))
    entries = _current()
    if entries.get(spec.name) == folder:
        return False
    entries[spec.name] = folder
    _write(entries)
    return True


def forget(target: str | os.PathLike[str] | None = None) -> list[tuple[str, Path]]:
    """Forget the remembered folders: all of them (``target`` None), those equal to the folder ``target`` or
    inside it (``DIR`` or ``DIR/<name>``), else, if ``target`` is a dataset name, that dataset's.  Returns the
    (dataset, folder) pairs forgotten."""
    entries = _current()
    if target is None:
        gone = sorted(entries.items())
    else:
        base = Path(os.path.abspath(Path(target).expanduser()))
        gone = [(n, f) for n, f in sorted(entries.items()) if f == base or f.parent == base]
        if not gone and str(target).strip().lower().replace("_", "-") in entries:
            name = get_spec(str(target)).name
            gone = [(name, entries[name])]
    if gone or (target is None and locations_file().exists()):
        _write({n: f for n, f in entries.items() if (n, f) not in gone})
    return gone


# --- remembering what a command found -------------------------------------------------------------


@contextlib.contextmanager
def remembering() -> Iterator[None]:
    """Within this block, a dataset found in a folder given by ``data_dir``/``--data-dir`` or
    ``$SYMBP_DATA_DIR`` is remembered (``found``).  The ``symbp`` command runs every command inside it."""
    global _auto
    before, _auto = _auto, True
    try:
        yield
    finally:
        _auto = before


def found(spec: DatasetSpec, folder: Path) -> None:
    """A lookup found ``spec`` in the user's ``folder`` (verified): remember it, if inside ``remembering()``
    and not already remembered, and say so on stderr in one line.  A file that cannot be written is a
    one-line warning: the command goes on."""
    if not _auto or os.environ.get(ENV_REMEMBER, "").strip().lower() in ("0", "no", "false", "off"):
        return
    try:
        changed = remember(spec, folder)
    except OSError as exc:
        warnings.warn(f"could not remember where {spec.title} is ({locations_file()}: {exc.strerror or exc})",
                      LocationsWarning, stacklevel=3)
        return
    if changed:
        print(f"symbp: remembered {os.path.abspath(folder)} as the {spec.title} folder for later commands "
              "(`symbp data` lists, `symbp data forget` undoes)", file=sys.stderr)
