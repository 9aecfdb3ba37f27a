"""Checks of the paths a command will write, made before any work starts.

Takes: a folder path and a label for messages (``"argument --out"``).  Gives: ``check_writable_folder``, which
raises a one-line ``ValueError`` unless the folder exists, or can be created, inside a folder this process can
write in (probed with a temporary file that is removed; nothing else is created).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


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
