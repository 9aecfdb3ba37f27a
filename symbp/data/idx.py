"""Read and write IDX files, the format of the MNIST and Fashion-MNIST distribution files.

Takes: the path of an IDX file, raw or gzip-compressed (told apart by the gzip magic bytes ``1f 8b``,
never by the file name).  Gives: a fresh, writeable, native-endian numpy array of the stored shape.

An IDX file is a 4-byte magic number ``00 00 TT NN`` (``TT`` the type code, ``NN`` the number of
dimensions), then ``NN`` big-endian uint32 sizes, then the elements, big-endian, in C order.
Anything else -- a short or long file, a bad magic number, an unknown type code, damaged gzip data --
is a ``ValueError`` whose message names the file and says what was expected and what was found.
"""

from __future__ import annotations

import gzip
import math
import os
import stat
import struct
import zlib
from typing import BinaryIO

import numpy as np

#: IDX type code -> big-endian numpy dtype.
IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"
_MAX_NDIM = 32
_CHUNK = 1 << 20
#: The default bound on the data of one IDX file: 1 GiB (MNIST's largest file holds 47 MB).
DEFAULT_MAX_BYTES = 1 << 30


def _type_list() -> str:
    return ", ".join(f"0x{code:02X} ({dt.name})" for code, dt in IDX_TYPES.items())


def read_idx(path: str | os.PathLike[str], *, max_bytes: int | None = DEFAULT_MAX_BYTES) -> np.ndarray:
    """Read the IDX file at ``path`` (raw or gzip) into a native-endian numpy array.

    The array has the dimensions stored in the file and the dtype of its type code (uint8, int8,
    int16, int32, float32 or float64).  Raises ``ValueError`` naming the file on any malformed input,
    and ``OSError`` (e.g. ``FileNotFoundError``) if the file cannot be read.

    The size of the data is computed from the header and checked against ``max_bytes`` (default
    ``DEFAULT_MAX_BYTES``, 1 GiB; ``None``: no limit) before anything large is allocated; then exactly
    that many bytes are read (decompressed in bounded chunks for gzip), so a file whose data inflates
    beyond what its header declares is refused as trailing data without being decompressed in full.
    """
    where = os.fspath(path)
    with open(path, "rb") as f:
        if f.peek(2)[:2] != _GZIP_MAGIC:  # peek: nothing consumed, no seek (a pipe works too)
            st = os.fstat(f.fileno())
            return _read_stream(f, where, max_bytes, st.st_size if stat.S_ISREG(st.st_mode) else None)
        where += " (after gunzip)"
        try:
            with gzip.GzipFile(fileobj=f, mode="rb") as g:
                return _read_stream(g, where, max_bytes, None)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(
                f"{os.fspath(path)}: corrupt gzip data: expected a complete gzip stream holding an IDX file, "
                f"found an error while decompressing ({type(e).__name__}: {e})"
            ) from e


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    """Up to ``n`` bytes (fewer only at the end of the stream)."""
    parts, got = [], 0
    while got < n:
        chunk = stream.read(n - got)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _read_stream(stream: BinaryIO, where: str, max_bytes: int | None, size: int | None) -> np.ndarray:
    """Parse an IDX file from ``stream``; ``size``: the total size in bytes if known (a raw regular file)."""
    magic = _read_exact(stream, 4)
    if len(magic) < 4:
        raise ValueError(
            f"{where}: truncated header: expected at least 4 bytes (the IDX magic number), found {len(magic)}"
        )
    zero0, zero1, code, ndim = magic
    if zero0 or zero1:
        raise ValueError(
            f"{where}: bad magic number: expected 0x0000TTNN (two zero bytes, a type code, the number of "
            f"dimensions), found 0x{magic.hex()}; this is not an IDX file"
        )
    if code not in IDX_TYPES:
        raise ValueError(
            f"{where}: unknown IDX type code: expected one of {_type_list()}, found 0x{code:02X}"
        )
    if ndim > _MAX_NDIM:
        raise ValueError(f"{where}: bad number of dimensions: expected at most {_MAX_NDIM}, found {ndim}")
    header = 4 + 4 * ndim
    dims = _read_exact(stream, 4 * ndim)
    if len(dims) < 4 * ndim:
        raise ValueError(
            f"{where}: truncated header: expected {header} bytes for {ndim} dimension sizes, found {4 + len(dims)}"
        )
    shape = struct.unpack(f">{ndim}I", dims)
    dtype = IDX_TYPES[code]
    count = math.prod(shape)
    nbytes = count * dtype.itemsize
    expected = header + nbytes
    if max_bytes is not None and nbytes > max_bytes:
        raise ValueError(
            f"{where}: too large: the header declares shape {shape} of {dtype.name}, {nbytes} bytes of data, "
            f"expected at most max_bytes={max_bytes}; refused before reading it"
        )
    if size is not None and size < expected:  # a raw file: say so before allocating anything
        raise ValueError(
            f"{where}: truncated data: expected {nbytes} bytes of {dtype.name} for shape {shape}, "
            f"found {size - header}"
        )
    if size is not None and size > expected:
        raise ValueError(
            f"{where}: {size - expected} bytes of trailing data: expected {expected} bytes in all for shape "
            f"{shape} ({dtype.name}), found {size}"
        )
    arr = np.empty(count, dtype=dtype)
    view = memoryview(arr).cast("B") if count else memoryview(b"")
    got = 0
    while got < nbytes:
        n = stream.readinto(view[got: got + _CHUNK])
        if not n:
            raise ValueError(
                f"{where}: truncated data: expected {nbytes} bytes of {dtype.name} for shape {shape}, found {got}"
            )
        got += n
    view.release()
    if stream.read(1):
        raise ValueError(
            f"{where}: trailing data: expected {expected} bytes in all for shape {shape} ({dtype.name}), "
            "found more"
        )
    if not dtype.isnative and dtype.itemsize > 1:
        arr.byteswap(inplace=True)
    return arr.view(dtype.newbyteorder("=")).reshape(shape)  # fresh: writeable, native byte order


def write_idx(path: str | os.PathLike[str], array: np.ndarray, *, compress: bool = False) -> None:
    """Write ``array`` to ``path`` as an IDX file (gzip-compressed if ``compress``).

    The dtype must be one of those of ``IDX_TYPES`` (any byte order); ``ValueError`` otherwise.
    """
    arr = np.asarray(array)
    codes = {dt.newbyteorder("="): code for code, dt in IDX_TYPES.items()}
    native = arr.dtype.newbyteorder("=")
    if native not in codes:
        raise ValueError(f"cannot write dtype {arr.dtype} as IDX: expected one of {_type_list()}")
    if arr.ndim > _MAX_NDIM or any(n >= 2**32 for n in arr.shape):
        raise ValueError(f"cannot write shape {arr.shape} as IDX: at most {_MAX_NDIM} sizes below 2**32")
    big = IDX_TYPES[codes[native]]
    payload = bytes([0, 0, codes[native], arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    payload += np.ascontiguousarray(arr, dtype=big).tobytes()
    if compress:
        payload = gzip.compress(payload, compresslevel=6, mtime=0)
    with open(path, "wb") as f:
        f.write(payload)
