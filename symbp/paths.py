"""Checks of the paths a command reads or writes, made before any work starts.

Takes: a path and a label for messages (``"argument --out"``, ``"model file"``).  Gives: ``open_regular``, a
file descriptor and size of a regular file, opened so that a FIFO or a device cannot hang or flood the reader
(model files, sweep results, files of declarations); ``check_writable_folder``, which raises a one-line
``ValueError`` unless the folder exists, or can be created, inside a folder this process can write in (probed with
a temporary file that is removed; nothing else is created).
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


def _describe(mode: int) -> str:
    for test, what in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return what
    return "not a regular file"


def open_regular(path, what: str, error: type = ValueError) -> tuple[int, int]:
    """A file descriptor and the size of a regular file.  Opened with O_NONBLOCK, so a FIFO cannot hang the
    open, and refused (``error``, naming the file and ``what`` it is) before any read unless ``fstat`` says it is
    a regular file.  A missing or unreadable file raises ``FileNotFoundError``/``PermissionError`` as it is."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except (FileNotFoundError, PermissionError):
        raise
    except OSError as exc:
        raise error(f"{path}: cannot open the {what} ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{path}: the {what} must be a regular file, this is {_describe(st.st_mode)}")
    except BaseException:
        os.close(fd)
        raise
    return fd, st.st_size


def read_small_file(path, what: str, limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (``open_regular``'s checks; read to its end, never
    more than ``limit + 1`` bytes); any problem a ``ValueError`` naming the file and ``what`` it is."""
    try:
        fd, size = open_regular(path, what)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    try:
        if size > limit:
            raise ValueError(f"{path}: {size} bytes; a {what} holds at most {limit}")
        chunks, got = [], 0
        while got <= limit:  # a read may return less than asked: read to the end (or past the limit)
            chunk = os.read(fd, limit + 1 - got)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
    finally:
        os.close(fd)
    if got > limit:
        raise ValueError(f"{path}: more than {limit} bytes; a {what} holds at most {limit}")
    return b"".join(chunks)


def check_writable_folder(folder: Path, label: str) -> None:
    """``folder`` is, or can be created under, a folder this process can write in; else ValueError."""
    folder = folder if str(folder) else Path(".")
    existing = folder
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        kind = "a file" if existing.is_file() else "not a folder"
        raise ValueError(f"{label}: cannot write under {folder}: {existing} is {kind}")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise ValueError(f"{label}: cannot write in the folder {existing} ({exc.strerror or exc})") from None
