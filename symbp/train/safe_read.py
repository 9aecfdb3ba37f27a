"""Reading model files that may be hostile: bounded, regular files only, archives checked before they inflate.

Takes: paths of files nobody vouches for, and the declared shapes and dtype a parameter archive must hold (a
``Manifest`` of ``symbp.train.manifest``, read through its ``arrays`` and ``dtype`` only).  Gives: ``Invalid``
(a ``ValueError`` for a file refused by a check here; ``Mismatch`` when no parameter file matches a manifest),
``open_checked``, ``read_exact``, ``read_json`` (at most ``MAX_JSON`` bytes), ``file_sha256``, and
``read_arrays``, the parameter arrays of an ``.npz`` whose every member is checked from the zip directory and its
``.npy`` header alone (names, a real float dtype of the model's width, C order, the declared shape, a stored size
equal to header + shape × itemsize with a bounded inflation ratio: a zip bomb is refused without being
decompressed) before any array is read, with ``allow_pickle=False``.  ``short`` and ``list_text`` shorten values
and lists for one-line messages.  The size bounds ``MEMBER_SLACK``, ``ARCHIVE_SLACK`` and ``MAX_INFLATE`` say how
far a parameter file may be from the byte count of its declared arrays.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from symbp.paths import open_regular

MAX_JSON = 1 << 20  # bytes of model.json
MAX_NPY_HEADER = 10000  # numpy's own default limit for an .npy header
MEMBER_SLACK = MAX_NPY_HEADER + 1024  # bytes per array beyond its data: .npy header, zip headers
ARCHIVE_SLACK = 4096  # end-of-archive records
MAX_INFLATE = 4  # a member may inflate to at most this many times its stored size (np.savez stores: 1)


class Invalid(ValueError):
    """A model file refused by a check of this module (passes unchanged through the archive error handler)."""


class Mismatch(Invalid):
    """No parameter file matches the manifest."""


def list_text(items: list, most: int = 8) -> str:
    """A list for a one-line message: its first and last entries when it is long."""
    if len(items) <= most:
        return str(items)
    head, tail = ", ".join(map(str, items[:most - 2])), ", ".join(map(str, items[-2:]))
    return f"[{head}, … ({len(items) - most} more) …, {tail}]"


def short(v) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def open_checked(path: Path, what: str) -> tuple[int, int]:
    """``symbp.paths.open_regular``, its refusals as ``Invalid``."""
    return open_regular(path, what, Invalid)


def read_exact(fd: int, size: int, path: Path, what: str) -> bytes:
    """The ``size`` bytes of an open file; at most ``size + 1`` are read (a file that grew is refused)."""
    with os.fdopen(os.dup(fd), "rb", buffering=0) as f:
        data = f.read(size + 1)
    if len(data) != size:
        raise Invalid(f"{path}: the {what} changed while it was read ({size} bytes, then {len(data)})")
    return data


def read_json(jpath: Path) -> bytes:
    try:
        fd, size = open_checked(jpath, "model file")
    except FileNotFoundError:
        raise FileNotFoundError(f"no model file {jpath}") from None
    try:
        if size > MAX_JSON:
            raise Invalid(f"{jpath}: not a valid symbp model file: {size} bytes, more than {MAX_JSON}")
        return read_exact(fd, size, jpath, "model file")
    finally:
        os.close(fd)


def file_sha256(path: Path) -> str | None:
    """SHA-256 of a regular file, streamed; None if it is missing or not a regular file."""
    try:
        fd, _ = open_checked(path, "file")
    except (OSError, ValueError):
        return None
    h = hashlib.sha256()
    with os.fdopen(fd, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def archive_errors(npath: Path):
    try:
        yield
    except Invalid:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, EOFError, ValueError, KeyError,
            NotImplementedError, RuntimeError, SyntaxError, OverflowError, TypeError) as exc:
        raise Invalid(f"{npath}: unreadable parameter archive ({type(exc).__name__}: {exc})") from None


def _member_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, shape, m, npath: Path,
                   jpath: Path) -> None:
    """Check one ``.npy`` member from its directory entry and header alone (nothing else is decompressed)."""
    where = f"{npath}: {info.filename}"
    data = math.prod(shape) * m.dtype.itemsize
    if info.flag_bits & 0x1:
        raise Invalid(f"{where} is encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise Invalid(f"{where}: unsupported compression method {info.compress_type}")
    if info.file_size > data + MEMBER_SLACK or info.file_size < data:
        raise Invalid(f"{where} holds {info.file_size} bytes, but {name} of shape {shape} needs {data} "
                      f"(layer sizes of {jpath.name})")
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
        raise Invalid(f"{where}: stored member of {info.compress_size} bytes claims {info.file_size}")
    if info.file_size > MAX_INFLATE * info.compress_size + MEMBER_SLACK:
        raise Invalid(f"{where} inflates {info.compress_size} bytes to {info.file_size}: refused (zip bomb?)")
    with zf.open(info) as f:
        prefix = f.read(min(info.file_size, 12 + MAX_NPY_HEADER))  # magic, length field, header: bounded
    head = io.BytesIO(prefix)
    version = np.lib.format.read_magic(head)
    if version == (1, 0):
        file_shape, fortran, dtype = np.lib.format.read_array_header_1_0(head, max_header_size=MAX_NPY_HEADER)
    elif version == (2, 0):
        file_shape, fortran, dtype = np.lib.format.read_array_header_2_0(head, max_header_size=MAX_NPY_HEADER)
    else:
        raise Invalid(f"{where}: unsupported .npy format version {version}")
    if dtype.kind != "f" or dtype.itemsize != m.dtype.itemsize:
        raise Invalid(f"{where}: {name} has dtype {dtype}, the model is {m.dtype.name} ({jpath.name})")
    if fortran:
        raise Invalid(f"{where}: {name} is stored in Fortran order (symbp writes C order)")
    if tuple(file_shape) != tuple(shape):
        raise Invalid(f"{where}: {name} has shape {tuple(file_shape)}, the layer sizes in {jpath.name} "
                      f"declare {tuple(shape)}")
    if info.file_size != head.tell() + data:
        raise Invalid(f"{where} holds {info.file_size} bytes, its header and shape give {head.tell() + data}")


def read_arrays(blob: bytes, m, npath: Path, jpath: Path) -> dict[str, np.ndarray]:
    """The parameter arrays: every header is checked against the manifest before any array is read."""
    with archive_errors(npath), zipfile.ZipFile(io.BytesIO(blob)) as zf:
        infos = zf.infolist()
        names = sorted(info.filename for info in infos)
        expected = {f"{name}.npy": name for name in m.arrays}
        if names != sorted(expected):
            found = [n[:-4] if n.endswith(".npy") else n for n in names]
            raise Invalid(f"{jpath}: not a valid symbp model file: parameter arrays {short(found)} != "
                          f"{list_text(sorted(m.arrays))}")
        for info in infos:
            name = expected[info.filename]
            _member_header(zf, info, name, m.arrays[name], m, npath, jpath)
        arrays = {}
        for info in infos:
            with zf.open(info) as f:
                arrays[expected[info.filename]] = np.lib.format.read_array(
                    f, allow_pickle=False, max_header_size=MAX_NPY_HEADER)
    for name, shape in m.arrays.items():
        if arrays[name].shape != shape:  # checked in the header; the data agrees
            raise Invalid(f"{npath}: {name} has shape {arrays[name].shape}, expected {shape}")
    return arrays
