"""The results folder of a sweep: ``DIR/results.jsonl`` and ``DIR/models/``.

Takes: a folder.  Gives: ``ResultStore(folder)``, which holds the folder's lock while a sweep writes to it,
reads the finished trials (``records``), appends one trial's record as it ends (``append``) and names where
its model goes (``model_path``); ``load_results(folder)``, the finished trials without taking the lock.

``results.jsonl`` holds one JSON object per line, one per finished trial.  A line is appended with a single
``os.write`` of the whole line to a file opened ``O_APPEND``, then ``fsync``: a kill leaves at most one partial
last line, never a mix of two.  Each record carries ``"check"``, the SHA-256 of its own canonical JSON without
that field, so a line that was cut short, edited or damaged on disk is found even when it is still valid JSON.
Such a line is *corrupt*: it is reported (a ``RuntimeWarning`` naming the file, the line number and, when the
text still shows it, the trial key), moved to ``results.corrupt.jsonl`` (appended there, kept for inspection),
and the file is rewritten without it (write-temporary-and-rename, fsynced); its trial counts as not finished and
is run again.  The other lines are kept as they are.  A record whose model file is missing is reported the same
way and its trial is run again.  The record for a key is the first valid line with that key.

Only one sweep writes to a folder at a time: ``DIR/.lock`` is locked (``fcntl.flock``) for as long as the store
is open; a second one is refused with a ``ValueError``.  Nothing here unpickles or evaluates: lines go through
``json.loads`` and type checks only.

``results.jsonl`` is read as model files are (``symbp.train.serialize``'s reader): opened without blocking,
refused with a one-line ``ValueError`` before any byte is read unless it is a regular file (a FIFO, a device such
as ``/dev/zero`` behind a symlink, a folder) of at most ``MAX_RESULTS`` bytes.  A record is valid only with every
field of the right type and in range, as the sweep writes it (accuracies in [0, 1], the best epoch an integer
>= 0, times >= 0, texts where texts go, ...); any other line is corrupt as above, even with a matching check (the
check finds damage, it is no signature).  Texts of a record may still hold anything (rich markup, terminal
escapes): the reports escape them (``symbp.sweep.report``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import warnings
from pathlib import Path

RECORD_FORMAT = "symbp-sweep-trial"
RECORD_VERSION = 1
RESULTS = "results.jsonl"
CORRUPT = "results.corrupt.jsonl"
MODELS = "models"
_KEY = re.compile(r"[0-9a-f]{20}")
_KEY_IN_TEXT = re.compile(r'"key"\s*:\s*"([0-9a-f]{20})"')
_MAX_LINE = 16 << 20  # bytes: a longer line is corrupt (a record is a few kB)
#: the largest results file read (bytes): 100,000 trials (a sweep's most) of records of a few kB each fit
MAX_RESULTS = 1 << 30


def canonical(doc) -> str:
    """JSON text with sorted keys and no spaces; NaN and inf refused (they are not JSON)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def seal(record: dict) -> dict:
    """``record`` with its ``"check"`` field: the SHA-256 of its canonical JSON without that field."""
    body = {k: v for k, v in record.items() if k != "check"}
    return {**body, "check": hashlib.sha256(canonical(body).encode()).hexdigest()}


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_record(doc) -> str | None:
    """Why ``doc`` is not a valid trial record, or None."""
    if not isinstance(doc, dict):
        return f"a JSON {type(doc).__name__}, not an object"
    if doc.get("format") != RECORD_FORMAT or doc.get("version") != RECORD_VERSION:
        return f"not a {RECORD_FORMAT} record of version {RECORD_VERSION}"
    check = doc.get("check")
    try:
        sealed = seal(doc)["check"]
    except (TypeError, ValueError) as exc:
        return f"cannot be re-encoded ({exc})"
    if check != sealed:
        return "its check (SHA-256 of the record) does not match: the line was changed or damaged"
    key = doc.get("key")
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        return "no valid trial key"
    if not isinstance(doc.get("params"), dict) or not isinstance(doc.get("history"), dict):
        return "no params or history"
    seed = doc.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        return "no valid seed"
    acc = doc.get("evaluation_accuracy")
    if not isinstance(acc, list) or not all(_is_fraction(v) for v in acc):
        return "no valid evaluation_accuracy list (numbers from 0 to 1)"
    best = doc.get("best_accuracy")
    if best is not None and not _is_fraction(best):
        return f"best_accuracy must be a number from 0 to 1, got {_short(best)}"
    v = doc.get("best_epoch")
    if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
        return f"best_epoch must be an integer >= 0, got {_short(v)}"
    for name in ("wall_seconds", "compile_seconds"):
        v = doc.get(name)
        if v is not None and not (_is_number(v) and v >= 0):
            return f"{name} must be a number >= 0, got {_short(v)}"
    for name in ("diverged", "worker", "finished"):
        if doc.get(name) is not None and not isinstance(doc[name], str):
            return f"{name} must be a text, got {_short(doc[name])}"
    if "values" in doc and not isinstance(doc["values"], dict):
        return f"values must be an object, got {_short(doc['values'])}"
    warned = doc.get("warnings", [])
    if not isinstance(warned, list) or not all(isinstance(w, str) for w in warned):
        return "warnings must be a list of texts"
    if not isinstance(doc.get("model"), str) or doc["model"] != f"{MODELS}/{key}":
        return "no valid model path"
    return None


def _is_fraction(v) -> bool:
    return _is_number(v) and 0 <= v <= 1


def _short(v, most: int = 40) -> str:
    """``repr(v)`` cut to ``most`` characters (escapes and all: safe to print)."""
    text = repr(v)
    return text if len(text) <= most else text[:most] + "..."


def read_results_file(path: Path) -> bytes | None:
    """The bytes of a results file, or None when there is none.  ``ValueError`` (one line naming it), before
    anything is read, unless it is a regular file of at most ``MAX_RESULTS`` bytes; opened without blocking, so a
    FIFO cannot hang this.  What a running sweep appends after the size is taken is read the next time."""
    from symbp.paths import open_regular

    try:
        fd, size = open_regular(path, "results file")
    except FileNotFoundError:
        return None
    except PermissionError as exc:
        raise ValueError(f"{path}: cannot read the results file ({exc.strerror or exc})") from None
    try:
        if size > MAX_RESULTS:
            raise ValueError(f"{path}: the results file has {size:,} bytes, more than {MAX_RESULTS:,} (the most "
                             "a sweep writes): not read")
        chunks, left = [], size
        while left:
            chunk = os.read(fd, min(left, 1 << 24))
            if not chunk:
                break  # cut short meanwhile: its last line is then cut, and found corrupt
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _parse_lines(raw: bytes, path: Path):
    """``(good, bad)``: good = [(line number, record, text)], bad = [(line number, text, why)]."""
    good, bad = [], []
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        why = None
        if len(line) > _MAX_LINE:
            why = f"longer than {_MAX_LINE} bytes"
        else:
            try:
                text = line.decode("utf-8")
                doc = json.loads(text)
            except RecursionError:
                why = "JSON nested too deeply"
            except (UnicodeDecodeError, ValueError) as exc:
                why = f"not valid JSON ({exc})"
            else:
                why = check_record(doc)
        if why is None:
            good.append((number, doc, text))
        else:
            bad.append((number, line.decode("utf-8", "replace"), why))
    return good, bad


def load_results(folder) -> list[dict]:
    """The valid records of ``folder/results.jsonl`` in file order (first per key); corrupt lines are skipped
    with a warning (nothing is moved or rewritten: that is done by a sweep, which holds the lock)."""
    path = Path(folder) / RESULTS
    raw = read_results_file(path)
    if raw is None:
        return []
    good, bad = _parse_lines(raw, path)
    for number, text, why in bad:
        warnings.warn(_corrupt_message(path, number, text, why, moved=False), RuntimeWarning, stacklevel=2)
    seen, out = set(), []
    for _, doc, _ in good:
        if doc["key"] not in seen:
            seen.add(doc["key"])
            out.append(doc)
    return out


def _corrupt_message(path: Path, number: int, text: str, why: str, moved: bool) -> str:
    key = _KEY_IN_TEXT.search(text)
    trial = f" (trial {key.group(1)})" if key else ""
    then = f"; moved to {CORRUPT}, its trial will be run again" if moved else "; skipped"
    return f"{path} line {number}{trial} is corrupt: {why}{then}"


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    """One ``os.write`` of ``data`` (a regular file takes it whole); a short write is finished, not lost."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class ResultStore:
    """The results folder of one running sweep (a context manager: it holds the folder's lock)."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.path = self.folder / RESULTS
        self._lock_fd = self._fd = None
        self.records: dict[str, dict] = {}

    def __enter__(self) -> ResultStore:
        import fcntl

        try:
            (self.folder / MODELS).mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise ValueError(f"cannot use {self.folder} for sweep results: it, or a folder above it, is a "
                             "file") from None
        self._lock_fd = os.open(self.folder / ".lock", os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise ValueError(f"another sweep is writing to {self.folder} (it holds {self.folder / '.lock'}); "
                             "wait for it or choose another folder") from None
        try:
            self._read()
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0),
                               0o666)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        for name in ("_fd", "_lock_fd"):
            fd = getattr(self, name)
            if fd is not None:
                setattr(self, name, None)
                os.close(fd)

    def model_path(self, key: str) -> Path:
        """Where the model of trial ``key`` is saved (``Model.save`` adds ``.json`` and ``.npz``)."""
        return self.folder / MODELS / key

    def _read(self) -> None:
        """Load the finished trials; move corrupt lines (and those whose model is missing) out of the file."""
        raw = read_results_file(self.path)
        if raw is None:
            return
        good, bad = _parse_lines(raw, self.path)
        messages = [_corrupt_message(self.path, n, text, why, moved=True) for n, text, why in bad]
        keep = []
        for number, doc, text in good:
            if doc["key"] in self.records:
                continue  # a later copy of a finished trial (e.g. a second run of a trial that was re-run)
            if not self.model_path(doc["key"]).with_suffix(".json").is_file():
                bad.append((number, text, "its model file is missing"))
                messages.append(f"{self.path} line {number} (trial {doc['key']}): the model file "
                                f"{MODELS}/{doc['key']}.json is missing; moved to {CORRUPT}, its trial will be "
                                "run again")
                continue
            self.records[doc["key"]] = doc
            keep.append(text)
        if bad or not raw.endswith(b"\n"):
            self._rewrite(keep, [text for _, text, _ in sorted(bad)])
        for message in messages:
            warnings.warn(message, RuntimeWarning, stacklevel=3)

    def _rewrite(self, keep: list[str], bad: list[str]) -> None:
        """Append ``bad`` to the corrupt-lines file, then replace the results file by ``keep`` (atomically)."""
        if bad:
            fd = os.open(self.folder / CORRUPT, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                _write_all(fd, "".join(line.rstrip("\n") + "\n" for line in bad).encode())
                os.fsync(fd)
            finally:
                os.close(fd)
        tmp = self.folder / f".{RESULTS}.tmp-{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            _write_all(fd, "".join(line + "\n" for line in keep).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        _fsync_dir(self.folder)

    def append(self, record: dict) -> dict:
        """Seal ``record``, write it as one line (one ``os.write``, then ``fsync``) and return it."""
        record = seal(record)
        # The key first (a line cut short still names its trial), then the other fields sorted.
        ordered = {"key": record["key"], **{k: record[k] for k in sorted(record) if k != "key"}}
        line = (json.dumps(ordered, separators=(",", ":"), ensure_ascii=False, allow_nan=False) + "\n").encode()
        _write_all(self._fd, line)
        os.fsync(self._fd)
        self.records.setdefault(record["key"], record)
        return record
