"""Fetch dataset files from public mirrors into the user cache folder, checking their SHA-256.

Takes: a file name of a known dataset (see ``registry``), a cache folder (default: the dataset's
folder in the user cache, see ``dataset_cache_dir``) and mirror base URLs (default: the
``mirrors=`` argument, else ``$SYMBP_MIRRORS``, else the dataset's own list).
Gives: the path of a copy in the cache folder whose SHA-256 is the expected one.

Mirrors are tried in turn.  Each download goes to a temporary file in the cache folder and is moved
into place with ``os.replace`` only once its checksum is right, so the cache never holds a partial or
wrong file.  If every mirror fails, ``DownloadError`` lists each URL with the reason it failed.

Each download from one mirror has an overall deadline, ``timeout`` (default ``DEFAULT_TIMEOUT``, 300 s),
from connecting to the last byte: a server that trickles its headers or its data is cut off when it
passes, and the next mirror is tried.  A server that sends nothing at all for ``STALL_TIMEOUT`` (30 s,
or ``timeout`` if shorter) fails sooner.

Environment:

* ``SYMBP_CACHE_DIR`` -- the cache root (default ``platformdirs.user_cache_dir("symbp")``); datasets
  live in ``<root>/datasets/<name>/``.
* ``SYMBP_MIRRORS`` -- comma-separated mirror base URLs used instead of the built-in lists.  A
  ``{dataset}`` in a URL is replaced by the dataset name, so one list can serve every dataset.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import socket
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import platformdirs

from symbp.data.registry import DatasetSpec, FileSpec, get_spec

ENV_CACHE_DIR = "SYMBP_CACHE_DIR"
ENV_MIRRORS = "SYMBP_MIRRORS"
DEFAULT_TIMEOUT = 300.0  # seconds: the deadline for each file download, from connecting to the last byte
STALL_TIMEOUT = 30.0  # seconds: at most this long without a byte from the server (connect, each read)
USER_AGENT = "symbp-data/0.1 (Python urllib)"
_CHUNK = 1 << 20


class DownloadError(OSError):
    """Every mirror failed for a file.  ``failures`` holds ``(url, reason)`` pairs, in the order tried."""

    def __init__(self, dataset_file: str, failures: Sequence[tuple[str, str]], note: str = ""):
        self.dataset_file = dataset_file
        self.failures = list(failures)
        lines = [f"could not download {dataset_file}{note}:"]
        lines += [f"  - {url}: {reason}" for url, reason in self.failures] or ["  (no mirrors to try)"]
        super().__init__("\n".join(lines))


class _MirrorFailure(Exception):
    """One mirror failed; the message is the reason."""


# --- cache folders ----------------------------------------------------------------------------


def cache_root() -> Path:
    """The symbp cache root: ``$SYMBP_CACHE_DIR`` if set, else ``platformdirs.user_cache_dir("symbp")``."""
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("symbp"))


def dataset_cache_dir(dataset: str | DatasetSpec) -> Path:
    """The cache folder of one dataset: ``cache_root()/datasets/<name>``."""
    return cache_root() / "datasets" / get_spec(dataset).name


# --- checksums --------------------------------------------------------------------------------

_DIGESTS: dict[tuple[str, int, int], str] = {}


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The hex SHA-256 of a file, remembered per (resolved path, size, mtime) within this process."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    digest = _DIGESTS.get(key)
    if digest is None:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        digest = _DIGESTS[key] = h.hexdigest()
    return digest


def clear_digest_cache() -> None:
    """Forget the remembered checksums (files are hashed again on their next use)."""
    _DIGESTS.clear()


# --- mirrors ----------------------------------------------------------------------------------


def resolve_mirrors(dataset: str | DatasetSpec, mirrors: str | Sequence[str] | None = None) -> list[str]:
    """The mirror base URLs to try, in order: ``mirrors`` if given (a sequence or a comma-separated
    string), else ``$SYMBP_MIRRORS`` if set and not empty, else the dataset's built-in list.
    ``{dataset}`` in a URL is replaced by the dataset name."""
    spec = get_spec(dataset)
    if mirrors is None:
        mirrors = os.environ.get(ENV_MIRRORS) or spec.mirrors
    if isinstance(mirrors, str):
        mirrors = mirrors.split(",")
    bases = [m.strip() for m in mirrors if m and m.strip()]
    return [b.replace("{dataset}", spec.name) for b in bases]


def file_url(base: str, filename: str) -> str:
    """The URL of ``filename`` under the mirror base URL ``base`` (with or without a final slash)."""
    return base.rstrip("/") + "/" + filename


# --- downloading ------------------------------------------------------------------------------


def _progress_enabled(progress: bool) -> bool:
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(progress and isatty is not None and isatty())


@contextlib.contextmanager
def _progress_bar(enabled: bool, description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """Yield an ``advance(nbytes)`` callback; a rich progress bar on stderr if ``enabled``."""
    if not enabled:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


class _Deadline:
    """An overall deadline for one download: when it passes, every socket opened for it is shut down, which
    ends any read blocked on it (a server trickling bytes cannot keep a download going past the deadline)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shutdown(sock)

    def watch(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._sockets.append(sock)
            expired = self.expired
        if expired:
            _shutdown(sock)
        return sock

    def connection_class(self, http_class):
        """``http_class`` (an ``http.client`` connection class) whose sockets are watched by this deadline."""

        def make(*args, **kwargs):
            conn = http_class(*args, **kwargs)
            create = conn._create_connection  # socket.create_connection, also under HTTPS (before TLS)
            conn._create_connection = lambda *a, **k: self.watch(create(*a, **k))
            return conn

        return make

    def opener(self) -> urllib.request.OpenerDirector:
        """A urllib opener (redirects, proxies, HTTPS as usual) whose connections this deadline cuts."""
        deadline = self

        class HTTP(urllib.request.HTTPHandler):
            def do_open(self, http_class, req, **kwargs):
                return super().do_open(deadline.connection_class(http_class), req, **kwargs)

        class HTTPS(urllib.request.HTTPSHandler):
            def do_open(self, http_class, req, **kwargs):
                return super().do_open(deadline.connection_class(http_class), req, **kwargs)

        return urllib.request.build_opener(HTTP, HTTPS)

    def failure(self) -> _MirrorFailure:
        return _MirrorFailure(f"timed out: not complete within the {self.seconds:g} s deadline (timeout)")


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _reason(e: BaseException, timeout: float) -> str:
    """A short text saying why one mirror failed."""
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        if isinstance(e.reason, TimeoutError):
            return f"timed out (no data for {min(timeout, STALL_TIMEOUT):g} s)"
        return str(e.reason)  # e.g. "[Errno 111] Connection refused"
    if isinstance(e, TimeoutError):
        return f"timed out (no data for {min(timeout, STALL_TIMEOUT):g} s)"
    if isinstance(e, _MirrorFailure):
        return str(e)
    return f"{type(e).__name__}: {e}"


def _download(url: str, target: Path, fs: FileSpec, progress: bool, timeout: float) -> None:
    """Download ``url`` to ``target`` via a temporary file; ``_MirrorFailure`` etc. on failure.

    ``timeout`` is the deadline for the whole download (connecting, the headers, every byte); a server
    silent for ``min(timeout, STALL_TIMEOUT)`` seconds fails sooner."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp: Path | None = Path(tmp_name)
    try:
        h = hashlib.sha256()
        received = 0
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        with os.fdopen(fd, "wb") as out, _Deadline(timeout) as deadline:
            try:
                with deadline.opener().open(request, timeout=min(timeout, STALL_TIMEOUT)) as response:
                    length = response.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else fs.size
                    with _progress_bar(_progress_enabled(progress), fs.filename, total) as advance:
                        while chunk := response.read(_CHUNK):
                            received += len(chunk)
                            if received > fs.size:
                                raise _MirrorFailure(f"the server sent more than the expected {fs.size} bytes")
                            h.update(chunk)
                            out.write(chunk)
                            advance(len(chunk))
            except (OSError, http.client.HTTPException, ValueError) as e:
                if deadline.expired:  # the deadline cut the connection: say so, not "incomplete read"
                    if isinstance(e, urllib.error.HTTPError):
                        e.close()
                    raise deadline.failure() from e
                raise
            digest = h.hexdigest()
            if digest != fs.sha256 and deadline.expired:
                raise deadline.failure()
            out.flush()
            os.fsync(out.fileno())
        if digest != fs.sha256:
            raise _MirrorFailure(
                f"checksum mismatch: expected sha256 {fs.sha256}, got {digest} ({received} bytes); not cached"
            )
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a cache file is ordinary data
        os.replace(tmp, target)
        tmp = None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()


def fetch_spec_file(
    fs: FileSpec,
    spec: DatasetSpec,
    cache_dir: Path,
    bases: Sequence[str],
    progress: bool,
    timeout: float,
) -> tuple[Path, str | None]:
    """Make sure ``cache_dir/fs.filename`` is verified; return it and the mirror used (None: cached).

    ``timeout`` is the deadline in seconds for each download from one mirror."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < float("inf"):
        raise ValueError(f"timeout must be a positive, finite number of seconds, got {timeout!r}")
    target = cache_dir / fs.filename
    if target.is_file() and sha256_file(target) == fs.sha256:
        return target, None
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(
            fs.filename, [], note=f" (cannot create the cache folder {cache_dir}: {e})"
        ) from e
    failures: list[tuple[str, str]] = []
    for base in bases:
        url = file_url(base, fs.filename)
        try:
            _download(url, target, fs, progress, timeout)
        except (_MirrorFailure, OSError, http.client.HTTPException, ValueError) as e:
            failures.append((url, _reason(e, timeout)))
            if isinstance(e, urllib.error.HTTPError):
                e.close()  # it holds the error response open
            continue
        return target, base
    raise DownloadError(fs.filename, failures, note=f" ({spec.title}) into {cache_dir}")


def fetch_file(
    filename: str,
    dataset: str | DatasetSpec = "mnist",
    cache_dir: str | os.PathLike[str] | None = None,
    mirrors: str | Sequence[str] | None = None,
    *,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
) -> Path:
    """Return the path of a verified copy of ``filename`` (a file of ``dataset``) in ``cache_dir``.

    A copy already there with the right SHA-256 is used without touching the network; otherwise the
    file is downloaded from each mirror in turn (see ``resolve_mirrors``) until one gives the right
    bytes.  ``filename`` may also be a role such as ``"test_labels"``.  ``progress`` shows a progress
    bar on stderr when stderr is a terminal.  ``timeout`` is the deadline in seconds for the download from
    each mirror (see the module docstring).  Raises ``DownloadError`` if every mirror fails.
    """
    spec = get_spec(dataset)
    fs = spec.file(filename)
    folder = Path(cache_dir).expanduser() if cache_dir is not None else dataset_cache_dir(spec)
    path, _ = fetch_spec_file(fs, spec, folder, resolve_mirrors(spec, mirrors), progress, timeout)
    return path
