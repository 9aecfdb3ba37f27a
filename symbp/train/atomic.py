"""Saving a model's two files so that a reader sees the old model or the new one, never a mix.

Takes: the two paths of a model (``model_paths(path)``: ``PATH.json`` and ``PATH.npz``), the bytes of the new
parameter archive and of the new manifest (which holds the SHA-256 of those parameters).  Gives:
``write_model_files``, which runs the protocol below, and ``pending_path``, the name under which new parameters wait
for their manifest (a reader tries it first).  ``path.json`` is the commit point:

0. Finish or discard what an earlier, interrupted save left: a pending ``path.npz.new`` that the current
   manifest commits to (and ``path.npz`` does not match) is renamed over ``path.npz``, any other is removed;
   temporary files of this model name (``.<name>.json.tmp-<pid>-<hex>``, ``.<name>.npz.tmp-<pid>-<hex>``) whose
   process is gone are removed.
1. The new ``.npz`` is written to a temporary file, fsynced, and renamed to ``path.npz.new``.
2. The new manifest is written to a temporary file, fsynced, and renamed over ``path.json``: committed.
3. ``path.npz.new`` is renamed over ``path.npz``.

The folder is fsynced after each rename.  An exception or ``KeyboardInterrupt`` during a save removes what it
wrote (all of it before the commit, only the temporary files after it).  Files are created with mode 0o666 less
the umask.  Saves in one process are serialised; concurrent saves of the same path from several processes are not
supported (the last one may need a resave).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import stat
import threading
from pathlib import Path

from symbp.train.safe_read import file_sha256, read_json

_SAVE_LOCK = threading.Lock()


def model_paths(path) -> tuple[Path, Path]:
    """``PATH.json`` and ``PATH.npz`` of a model path (given with or without either suffix)."""
    p = Path(os.fspath(path))
    if p.suffix in (".json", ".npz"):
        p = p.with_suffix("")
    if not p.name or p.name in (".", ".."):
        raise ValueError(f"a model path must name a file (PATH gives PATH.json and PATH.npz), got {str(path)!r}")
    return p.with_name(p.name + ".json"), p.with_name(p.name + ".npz")


def pending_path(npath: Path) -> Path:
    """Where step 1 of a save puts the new parameters until the manifest commits to them."""
    return npath.with_name(npath.name + ".new")


def _temp_pattern(base: str) -> re.Pattern:
    return re.compile(rf"\.{re.escape(base)}\.(?:json|npz)\.tmp-(\d+)-[0-9a-f]{{16}}")


def _save_error(exc: OSError, jpath: Path) -> OSError:
    """The same kind of OSError, with a one-line message naming the model."""
    msg = f"cannot save the model to {jpath}: {exc.strerror or exc}"
    return type(exc)(exc.errno, msg) if exc.errno else OSError(msg)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_temp(target: Path, data: bytes) -> Path:
    """``data`` in a new temporary sibling of ``target`` (mode 0o666 less the umask), fsynced."""
    while True:
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(8)}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # saves in this process are serialised by _SAVE_LOCK: its temporary files are stale
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _prepare(jpath: Path, npath: Path) -> None:
    """The folder exists and no target is a folder; errors are one line naming the path."""
    folder = jpath.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in [folder, *folder.parents] if p.exists() and not p.is_dir()), folder)
        raise ValueError(f"cannot save the model to {jpath}: {blocker} is a file, not a folder") from None
    except OSError as exc:
        raise _save_error(exc, jpath) from None
    for p in (jpath, npath, pending_path(npath)):
        try:
            mode = os.lstat(p).st_mode
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise _save_error(exc, jpath) from None
        if stat.S_ISDIR(mode):
            raise ValueError(f"cannot save the model to {jpath}: {p} is a folder")


def _recover(jpath: Path, npath: Path) -> None:
    """Step 0: finish a save stopped after its commit, discard one stopped before, remove stale temp files."""
    folder, base = jpath.parent, jpath.name[: -len(".json")]
    pattern = _temp_pattern(base)
    with os.scandir(folder) as entries:
        stale = [e.name for e in entries if (mt := pattern.fullmatch(e.name)) and not _alive(int(mt.group(1)))]
    for name in stale:
        (folder / name).unlink(missing_ok=True)
    pending = pending_path(npath)
    if not os.path.lexists(pending):
        return
    committed = None
    try:
        doc = json.loads(read_json(jpath))
        committed = doc["params"]["sha256"]
    except Exception:  # no readable manifest: nothing commits to the pending file
        pass
    if committed and file_sha256(pending) == committed and file_sha256(npath) != committed:
        os.replace(pending, npath)
    else:
        os.unlink(pending)
    _fsync_dir(folder)


def write_model_files(jpath: Path, npath: Path, blob: bytes, text: bytes) -> None:
    """Write the parameter archive ``blob`` to ``npath`` and the manifest ``text`` to ``jpath`` by the protocol
    of this module; an ``OSError`` is one line naming the model, a target that is a folder a ``ValueError``."""
    pending, folder = pending_path(npath), jpath.parent
    with _SAVE_LOCK:
        _prepare(jpath, npath)
        try:
            _recover(jpath, npath)  # after this no pending file exists: any found below is this save's
        except OSError as exc:
            raise _save_error(exc, jpath) from exc
        tmp_npz = tmp_json = None
        try:
            tmp_npz = _write_temp(npath, blob)
            os.replace(tmp_npz, pending)  # 1. the new parameters, complete, under their pending name
            _fsync_dir(folder)
            tmp_json = _write_temp(jpath, text)
            os.replace(tmp_json, jpath)  # 2. commit: the manifest names the new parameters' SHA-256
            _fsync_dir(folder)
            os.replace(pending, npath)  # 3. the parameters under their own name
            _fsync_dir(folder)
        except BaseException as exc:
            # Committed iff the manifest left its temporary name (judged from the disk, not from how far
            # this code got: an interrupt may land just after a rename).
            committed = tmp_json is not None and not os.path.lexists(tmp_json)
            for tmp in (tmp_npz, tmp_json):
                if tmp is not None:
                    tmp.unlink(missing_ok=True)
            if not committed:
                with contextlib.suppress(OSError):
                    pending.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise _save_error(exc, jpath) from exc
            raise
