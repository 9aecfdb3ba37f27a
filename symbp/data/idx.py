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
import struct
import zlib

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


def _type_list() -> str:
    return ", ".join(f"0x{code:02X} ({dt.name})" for code, dt in IDX_TYPES.items())


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read the IDX file at ``path`` (raw or gzip) into a native-endian numpy array.

    The array has the dimensions stored in the file and the dtype of its type code (uint8, int8,
    int16, int32, float32 or float64).  Raises ``ValueError`` naming the file on any malformed input,
    and ``OSError`` (e.g. ``FileNotFoundError``) if the file cannot be read.
    """
    with open(path, "rb") as f:
        data = f.read()
    where = os.fspath(path)
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(
                f"{where}: corrupt gzip data: expected a complete gzip stream holding an IDX file, "
                f"found an error while decompressing ({type(e).__name__}: {e})"
            ) from e
        where += " (after gunzip)"
    return _parse_idx(data, where)


def _parse_idx(data: bytes, where: str) -> np.ndarray:
    size = len(data)
    if size < 4:
        raise ValueError(
            f"{where}: truncated header: expected at least 4 bytes (the IDX magic number), found {size}"
        )
    zero0, zero1, code, ndim = data[:4]
    if zero0 or zero1:
        raise ValueError(
            f"{where}: bad magic number: expected 0x0000TTNN (two zero bytes, a type code, the number of "
            f"dimensions), found 0x{data[:4].hex()}; this is not an IDX file"
        )
    if code not in IDX_TYPES:
        raise ValueError(
            f"{where}: unknown IDX type code: expected one of {_type_list()}, found 0x{code:02X}"
        )
    if ndim > _MAX_NDIM:
        raise ValueError(f"{where}: bad number of dimensions: expected at most {_MAX_NDIM}, found {ndim}")
    header = 4 + 4 * ndim
    if size < header:
        raise ValueError(
            f"{where}: truncated header: expected {header} bytes for {ndim} dimension sizes, found {size}"
        )
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = IDX_TYPES[code]
    count = math.prod(shape)
    expected = header + count * dtype.itemsize
    if size < expected:
        raise ValueError(
            f"{where}: truncated data: expected {expected - header} bytes of {dtype.name} for shape {shape}, "
            f"found {size - header}"
        )
    if size > expected:
        raise ValueError(
            f"{where}: {size - expected} bytes of trailing data: expected {expected} bytes in all for shape "
            f"{shape} ({dtype.name}), found {size}"
        )
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="))  # a copy: writeable, native byte order


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
