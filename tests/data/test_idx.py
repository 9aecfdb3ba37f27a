"""Tests of the IDX reader and writer: real MNIST files, synthetic files of every type, malformed files."""

from __future__ import annotations

import gzip
import struct
import time
import tracemalloc
import zlib

import numpy as np
import pytest

from symbp.data import read_idx, write_idx
from symbp.data.idx import DEFAULT_MAX_BYTES, IDX_TYPES

TYPES = [(0x08, "u1"), (0x09, "i1"), (0x0B, ">i2"), (0x0C, ">i4"), (0x0D, ">f4"), (0x0E, ">f8")]
SHAPES = [(5,), (3, 4), (2, 3, 4), (0, 7)]


def idx_bytes(arr: np.ndarray, code: int) -> bytes:
    """An IDX file written by hand (independently of ``write_idx``)."""
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + np.ascontiguousarray(arr, dtype=IDX_TYPES[code]).tobytes()


def sample(shape: tuple[int, ...], dtype: str) -> np.ndarray:
    rng = np.random.default_rng(0)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return rng.standard_normal(shape).astype(dt)
    info = np.iinfo(dt)
    return rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dt)


# --- the real files ---------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
@pytest.mark.parametrize(
    "filename, shape",
    [
        ("train-images-idx3-ubyte.gz", (60000, 28, 28)),
        ("train-labels-idx1-ubyte.gz", (60000,)),
        ("t10k-images-idx3-ubyte.gz", (10000, 28, 28)),
        ("t10k-labels-idx1-ubyte.gz", (10000,)),
    ],
)
def test_real_files(data_dir, dataset, filename, shape):
    path = data_dir / dataset / filename
    if not path.is_file():
        pytest.skip(f"{path} not found")
    arr = read_idx(path)
    assert arr.shape == shape
    assert arr.dtype == np.uint8
    if "labels" in filename:
        assert set(np.unique(arr)) == set(range(10))
    else:
        assert arr.min() == 0 and arr.max() == 255


# --- synthetic files --------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("code, dtype", TYPES, ids=[dt for _, dt in TYPES])
def test_synthetic_roundtrip(tmp_path, code, dtype, shape, compress):
    arr = sample(shape, dtype)
    data = idx_bytes(arr, code)
    # The name says the opposite of the content: detection must go by the magic bytes.
    path = tmp_path / ("data.idx" if compress else "data.gz")
    path.write_bytes(gzip.compress(data) if compress else data)
    got = read_idx(path)
    assert got.shape == shape
    assert got.dtype == np.dtype(dtype).newbyteorder("=")
    assert got.dtype.isnative
    assert got.flags.writeable
    np.testing.assert_array_equal(got, arr)


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("code, dtype", TYPES, ids=[dt for _, dt in TYPES])
def test_write_idx_roundtrip(tmp_path, code, dtype, compress):
    arr = sample((4, 3, 2), dtype).astype(np.dtype(dtype).newbyteorder("="))
    path = tmp_path / "x"
    write_idx(path, arr, compress=compress)
    raw = path.read_bytes()
    assert (raw[:2] == b"\x1f\x8b") == compress
    assert (gzip.decompress(raw) if compress else raw) == idx_bytes(arr, code)
    np.testing.assert_array_equal(read_idx(str(path)), arr)


def test_write_idx_rejects_unsupported_dtype(tmp_path):
    with pytest.raises(ValueError, match="int64"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))


# --- malformed files --------------------------------------------------------------------------

GOOD = idx_bytes(np.arange(24, dtype=np.uint8).reshape(2, 3, 4), 0x08)
GOOD_I32 = idx_bytes(np.arange(6, dtype=np.int32), 0x0C)


def corrupt_deflate(data: bytes) -> bytes:
    z = bytearray(gzip.compress(data * 50, mtime=0))
    for i in range(12, len(z) - 8, 7):
        z[i] ^= 0xFF
    return bytes(z)


BAD = {
    "empty": (b"", "truncated header"),
    "three-bytes": (b"\x00\x00\x08", "truncated header"),
    "bad-magic": (b"\x01\x02\x08\x01" + GOOD[4:], "bad magic number"),
    "pickle-like": (b"\x80\x04\x95" + GOOD, "bad magic number"),
    "unknown-type": (b"\x00\x00\x0a\x03" + GOOD[4:], "unknown IDX type code"),
    "truncated-dims": (GOOD[:10], "truncated header"),
    "truncated-data": (GOOD[:-1], "truncated data"),
    "truncated-int32": (GOOD_I32[:-2], "truncated data"),
    "trailing": (GOOD + b"\x00", "trailing data"),
    "gzip-truncated-data": (gzip.compress(GOOD[:-5]), "truncated data"),
    "gzip-trailing": (gzip.compress(GOOD + b"xyz"), "trailing data"),
    "gzip-corrupt": (corrupt_deflate(GOOD), "corrupt gzip"),
    "gzip-cut": (gzip.compress(GOOD)[:-12], "corrupt gzip"),
    "gzip-garbage-after": (gzip.compress(GOOD) + b"garbage!", "corrupt gzip"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_malformed_file(tmp_path, case):
    content, what = BAD[case]
    path = tmp_path / f"{case}-idx3-ubyte.gz"
    path.write_bytes(content)
    with pytest.raises(ValueError) as info:
        read_idx(path)
    msg = str(info.value)
    assert str(path) in msg
    assert what in msg
    if case == "unknown-type":
        assert "found 0x0A" in msg
    assert "expected" in msg and "found" in msg


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope.gz")


# --- size bounds ------------------------------------------------------------------------------


def write_gzip_bomb(path, header: bytes, inflated_mib: int) -> int:
    """A gzip file holding ``header`` and then ``inflated_mib`` MiB of zeros, written in chunks (the deflate
    stream repeats one fully flushed block of 1 MiB of zeros), so neither this nor a bounded reader needs
    much memory.  Its CRC is wrong on purpose: a reader that inflated it all would call it corrupt instead of
    stopping early.  Returns the size of the file."""
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = co.compress(b"\0" * (1 << 20)) + co.flush(zlib.Z_FULL_FLUSH)  # independent of what came before
    with open(path, "wb") as f:
        f.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff")  # gzip header: deflate, no name, mtime 0
        f.write(co.compress(header) + co.flush(zlib.Z_FULL_FLUSH))
        for _ in range(inflated_mib):
            f.write(zeros)
        f.write(co.flush() + struct.pack("<II", 0, (len(header) + (inflated_mib << 20)) & 0xFFFFFFFF))
        return f.tell()


def test_gzip_inflating_beyond_its_header_is_refused_early(tmp_path):
    # The header declares 10 bytes of data; the body inflates to 4 GiB of zeros (a 4 MB file).
    path = tmp_path / "bomb-idx1-ubyte.gz"
    size = write_gzip_bomb(path, bytes([0, 0, 0x08, 1]) + struct.pack(">I", 10), 4096)
    assert size < 8 << 20
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(ValueError) as info:
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - t0 < 1.0
    assert peak < 16 << 20
    msg = str(info.value)
    assert str(path) in msg and "trailing data" in msg and "expected 18 bytes" in msg


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_header_declaring_a_huge_array_is_refused_before_allocating(tmp_path, compress):
    header = bytes([0, 0, 0x0E, 3]) + struct.pack(">3I", 2**32 - 1, 2**32 - 1, 1000)  # 1.5e23 bytes of float64
    path = tmp_path / "huge-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(header + b"\0" * 64) if compress else header + b"\0" * 64)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError) as info:
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
    msg = str(info.value)
    assert str(path) in msg and "too large" in msg and f"max_bytes={DEFAULT_MAX_BYTES}" in msg


def test_max_bytes(tmp_path):
    path = tmp_path / "x.gz"
    arr = np.arange(100, dtype=">i4")
    path.write_bytes(gzip.compress(idx_bytes(arr, 0x0C)))
    np.testing.assert_array_equal(read_idx(path, max_bytes=400), arr)
    np.testing.assert_array_equal(read_idx(path, max_bytes=None), arr)
    with pytest.raises(ValueError, match=r"400 bytes of data, expected at most max_bytes=399"):
        read_idx(path, max_bytes=399)
    # A raw file that declares more data than it holds is refused from its size, before reading.
    path.write_bytes(bytes([0, 0, 0x08, 1]) + struct.pack(">I", 512 << 20) + b"\0" * 10)
    with pytest.raises(ValueError, match="truncated data: expected 536870912 bytes of uint8 for shape"):
        read_idx(path)
