"""Tests of the downloader against a local HTTP server on 127.0.0.1 serving the real dataset files.

Covers: a download into an empty cache (checksum verified, no second request), dead and 404 mirrors
before a working one, a corrupted file on the server, a stalled server (timeout), a server trickling its
headers or its data (the overall deadline), a wrong file in the cache (downloaded again), ``SYMBP_MIRRORS``,
the progress bar, and a fully offline ``load_mnist`` (``DatasetNotFoundError``).  Most tests fetch only
the small label files.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from symbp.data import (
    DATASETS,
    DatasetNotFoundError,
    DownloadError,
    dataset_cache_dir,
    fetch_file,
    load_mnist,
)
from symbp.data.download import resolve_mirrors

LABELS = "t10k-labels-idx1-ubyte.gz"


def closed_port_url() -> str:
    """A URL on a local port where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Server:
    root: Path  # served folder
    url: str  # http://127.0.0.1:PORT
    requests: list[str] = field(default_factory=list)  # paths of the GET requests, in order


@pytest.fixture
def server(tmp_path, data_dir) -> Iterator[Server]:
    """A ThreadingHTTPServer on 127.0.0.1 serving tmp_path/www, which links <dataset>/ to the real files."""
    root = tmp_path / "www"
    for name in DATASETS:
        src = data_dir / name
        if not src.is_dir():
            continue
        (root / name).mkdir(parents=True)
        for f in src.glob("*.gz"):
            try:
                os.symlink(f, root / name / f.name)
            except OSError:
                shutil.copy(f, root / name / f.name)
    if not (root / "mnist").is_dir():
        pytest.skip(f"mnist files not found in {data_dir}")
    requests: list[str] = []

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

        def log_message(self, format, *args):  # keep the test output quiet
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield Server(root, f"http://127.0.0.1:{httpd.server_address[1]}", requests)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No user data folder, a private cache root, and no reachable default mirror."""
    monkeypatch.delenv("SYMBP_DATA_DIR", raising=False)
    monkeypatch.setenv("SYMBP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("SYMBP_MIRRORS", closed_port_url())


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --- fetch_file -------------------------------------------------------------------------------


def test_download_into_empty_cache(server, tmp_path):
    cache = tmp_path / "c"
    path = fetch_file(LABELS, "mnist", cache, [server.url + "/mnist/"], progress=False)
    assert path == cache / LABELS
    assert sha256(path) == DATASETS["mnist"].file(LABELS).sha256
    assert server.requests == ["/mnist/" + LABELS]
    assert leftovers(cache) == [LABELS]  # no temporary file left behind
    # Second call: the verified copy is used, the server is not asked again.
    assert fetch_file(LABELS, "mnist", cache, [server.url + "/mnist/"], progress=False) == path
    assert fetch_file("test_labels", "mnist", cache, [closed_port_url()], progress=False) == path
    assert len(server.requests) == 1


def test_dead_and_missing_mirrors_then_a_working_one(server, tmp_path):
    cache = tmp_path / "c"
    mirrors = [closed_port_url(), server.url + "/no-such-folder", server.url + "/mnist"]
    path = fetch_file("train-labels-idx1-ubyte.gz", "mnist", cache, mirrors, progress=False)
    assert sha256(path) == DATASETS["mnist"].file("train_labels").sha256
    assert server.requests == [
        "/no-such-folder/train-labels-idx1-ubyte.gz",
        "/mnist/train-labels-idx1-ubyte.gz",
    ]


def test_corrupted_file_on_server(server, tmp_path):
    bad = server.root / "bad"
    bad.mkdir()
    content = bytearray((server.root / "mnist" / LABELS).read_bytes())
    content[100] ^= 0xFF
    (bad / LABELS).write_bytes(bytes(content))
    (bad / "t10k-images-idx3-ubyte.gz").write_bytes(b"x" * 2_000_000)  # bigger than the real file
    cache = tmp_path / "c"
    with pytest.raises(DownloadError) as info:
        fetch_file(LABELS, "mnist", cache, [server.url + "/bad/"], progress=False)
    msg = str(info.value)
    assert "checksum mismatch" in msg and DATASETS["mnist"].file(LABELS).sha256 in msg
    assert server.url + "/bad/" + LABELS in msg
    assert info.value.failures[0][0] == server.url + "/bad/" + LABELS
    assert leftovers(cache) == []  # nothing cached, no temporary file
    with pytest.raises(DownloadError, match="more than the expected 1648877 bytes"):
        fetch_file("t10k-images-idx3-ubyte.gz", "mnist", cache, [server.url + "/bad/"], progress=False)
    assert leftovers(cache) == []
    # The next mirror is tried after a bad file.
    path = fetch_file(LABELS, "mnist", cache, [server.url + "/bad/", server.url + "/mnist/"], progress=False)
    assert sha256(path) == DATASETS["mnist"].file(LABELS).sha256


def test_wrong_file_in_cache_is_downloaded_again(server, tmp_path):
    cache = dataset_cache_dir("mnist")
    cache.mkdir(parents=True)
    (cache / LABELS).write_bytes(b"stale")
    path = fetch_file(LABELS, "mnist", mirrors=server.url + "/mnist/", progress=False)
    assert path == cache / LABELS
    assert sha256(path) == DATASETS["mnist"].file(LABELS).sha256
    assert len(server.requests) == 1


def test_stalled_server_times_out(tmp_path):
    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
        with pytest.raises(DownloadError, match="timed out"):
            fetch_file(LABELS, "mnist", tmp_path / "c", [url], progress=False, timeout=0.3)
    assert leftovers(tmp_path / "c") == []


@pytest.fixture
def trickler() -> Iterator[str]:
    """A server on 127.0.0.1 that sends one byte every 20 ms: under /body/ a 200 response whose data trickles,
    under /headers/ a header line that never ends.  It gives up after 3 s, which bounds a test that fails."""
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            try:
                if self.path.startswith("/body/"):
                    self.send_response(200)
                    self.send_header("Content-Length", str(DATASETS["mnist"].file(LABELS).size))
                    self.end_headers()
                else:
                    self.wfile.write(b"HTTP/1.0 200 OK\r\nX-Slow: ")
                t_end = time.monotonic() + 3.0
                while not stop.is_set() and time.monotonic() < t_end:
                    self.wfile.write(b"a")
                    self.wfile.flush()
                    stop.wait(0.02)
            except OSError:  # the client hung up
                pass
            self.close_connection = True

        def log_message(self, format, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        stop.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.mark.parametrize("part", ["body", "headers"])
def test_trickling_server_hits_the_deadline(trickler, tmp_path, part):
    # Every read gets a byte well within the timeout; only an overall deadline ends this download.
    url = f"{trickler}/{part}/"
    t0 = time.monotonic()
    with pytest.raises(DownloadError) as info:
        fetch_file(LABELS, "mnist", tmp_path / "c", [url], progress=False, timeout=0.4)
    elapsed = time.monotonic() - t0
    assert elapsed < 1.5, f"the download went on for {elapsed:.2f} s with timeout=0.4"
    assert info.value.failures[0][0] == url + LABELS
    assert "0.4 s deadline" in info.value.failures[0][1] and "timed out" in str(info.value)
    assert leftovers(tmp_path / "c") == []


@pytest.mark.parametrize("timeout", [0, -1.0, float("nan"), float("inf"), "30"])
def test_bad_timeout(tmp_path, timeout):
    with pytest.raises(ValueError, match="timeout must be"):
        fetch_file(LABELS, "mnist", tmp_path / "c", [closed_port_url()], progress=False, timeout=timeout)


def test_no_mirrors(tmp_path):
    with pytest.raises(DownloadError, match="no mirrors"):
        fetch_file(LABELS, "mnist", tmp_path / "c", [], progress=False)


def test_unknown_file(tmp_path):
    with pytest.raises(ValueError, match="no file"):
        fetch_file("cifar.tar.gz", "mnist", tmp_path / "c", [closed_port_url()])


def test_mirrors_from_environment(server, tmp_path, monkeypatch):
    monkeypatch.setenv("SYMBP_MIRRORS", f"{closed_port_url()}, {server.url}/{{dataset}}/")
    assert resolve_mirrors("fashion-mnist")[1] == f"{server.url}/fashion-mnist/"
    path = fetch_file(LABELS, "mnist", tmp_path / "c", progress=False)
    assert sha256(path) == DATASETS["mnist"].file(LABELS).sha256
    if (server.root / "fashion-mnist").is_dir():
        path = fetch_file(LABELS, "fashion-mnist", tmp_path / "f", progress=False)
        assert sha256(path) == DATASETS["fashion-mnist"].file(LABELS).sha256
    monkeypatch.delenv("SYMBP_MIRRORS")
    assert resolve_mirrors("mnist") == list(DATASETS["mnist"].mirrors)
    assert resolve_mirrors("mnist", "http://a/, http://b") == ["http://a/", "http://b"]


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_terminal(server, tmp_path, monkeypatch):
    fake = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", fake)
    fetch_file(LABELS, "mnist", tmp_path / "a", [server.url + "/mnist/"], progress=True)
    assert LABELS in fake.getvalue()
    quiet = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    fetch_file(LABELS, "mnist", tmp_path / "b", [server.url + "/mnist/"], progress=False)
    assert quiet.getvalue() == ""


# --- load_mnist -------------------------------------------------------------------------------


def test_load_mnist_downloads_into_empty_cache(server, data_dir):
    cache = dataset_cache_dir("mnist")
    splits = load_mnist(download=True, mirrors=[closed_port_url(), server.url + "/mnist/"], progress=False)
    assert sorted(server.requests) == sorted("/mnist/" + f for f in DATASETS["mnist"].filenames)
    assert leftovers(cache) == sorted(DATASETS["mnist"].filenames)
    for fs in DATASETS["mnist"].files:
        assert sha256(cache / fs.filename) == fs.sha256
    reference = load_mnist(data_dir)
    for part, ref in zip(splits, reference, strict=True):
        np.testing.assert_array_equal(part.labels, ref.labels)
        assert np.array_equal(part.X[::7], ref.X[::7])
    # Everything is cached now: no more requests, even with the mirrors dead.
    assert load_mnist(download=True, mirrors=[closed_port_url()]) is splits
    assert len(server.requests) == 4


def test_offline(tmp_path):
    dead = [closed_port_url(), closed_port_url()]
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist(tmp_path / "mine", download=True, mirrors=dead, progress=False)
    assert isinstance(info.value, FileNotFoundError)
    msg = str(info.value)
    for expected in (
        str(tmp_path / "mine"),
        str(dataset_cache_dir("mnist")),
        "SYMBP_DATA_DIR",
        "data_dir",
        "Download failed",
        *(url + "train-images-idx3-ubyte.gz" for url in dead),
    ):
        assert expected in msg
    assert leftovers(dataset_cache_dir("mnist")) == []
