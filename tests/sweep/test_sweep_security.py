"""Who may use a sweep's cluster, and what answers as a scheduler: the local cluster speaks TLS with a certificate
made for it alone (a client without it is refused); ``--scheduler`` answered by something that is not dask is a
one-line error naming the address, within the connection timeout."""

from __future__ import annotations

import gc
import http.server
import os
import socket
import threading
import time

import pytest
import sweep_kit as kit

import symbp as sb
from symbp.cli import main
from symbp.sweep import engine

pytest.importorskip("distributed")


def _refused(address: str, **client_kwargs) -> str:
    """Try to run code on the cluster at ``address``; the error that stopped it (the test fails if it ran)."""
    from distributed import Client

    t0 = time.monotonic()
    refusal = None
    try:
        client = Client(address, timeout=5, set_as_default=False, **client_kwargs)
    except Exception as exc:  # noqa: BLE001 - any refusal will do: the point is that nothing ran
        refusal = f"{type(exc).__name__}: {exc}"
    if refusal is not None:
        assert time.monotonic() - t0 < 15, "refused, but only after a long wait"
        # the refused Client, kept alive by the traceback's cycles, is finalised here: its __del__ run by the
        # garbage collector inside the next Client's start waits for a lock that start holds (distributed's
        # LoopRunner), and the test hangs
        gc.collect()
        return refusal
    try:
        ran = client.run(os.getuid)
    finally:
        client.close()
    pytest.fail(f"a client without the cluster's certificate ran code on its workers: {ran}")


def test_a_client_without_the_clusters_certificate_is_refused(cluster):
    from distributed.security import Security

    lc, client = cluster
    address = lc.scheduler_address
    assert address.startswith("tls://127.0.0.1:") and lc.security.require_encryption
    assert client.run(os.getpid)  # the sweep's own client (it holds the credentials) runs code
    workers = list(client.scheduler_info(n_workers=-1)["workers"])
    # no credentials; plain TCP to the TLS port; credentials of another cluster (a certificate of its own);
    # and the same to a worker directly
    for target in (address, workers[0]):
        _refused(target)
        _refused(target.replace("tls://", "tcp://"))
        _refused(target, security=Security.temporary())
    # the probe says why, in one line
    with pytest.raises(ValueError, match="give the cluster's TLS credentials"):
        engine.probe_scheduler(address, None, timeout=5)
    with pytest.raises(ValueError, match="TLS handshake .* failed"):
        engine.probe_scheduler(address, Security.temporary(), timeout=5)
    engine.probe_scheduler(address, lc.security, timeout=5)  # and lets the right credentials through


_within = kit.within


class _Quiet(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802 - http.server's naming
        self.send_response(200)
        self.end_headers()


class _Server:
    """A server on a free port of 127.0.0.1, in a daemon thread, stopped on exit (and by itself after 60 s)."""

    def __init__(self, kind: str):
        self.kind = kind

    def __enter__(self) -> str:
        if self.kind == "http":  # waits for a request, as an HTTP server does
            self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
            self.server.daemon_threads = True
            self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1},
                                           daemon=True)
            port = self.server.server_address[1]
        else:  # answers every connection at once with HTTP 400 (as an HTTP server does to dask's first bytes)
            self.sock = socket.create_server(("127.0.0.1", 0))
            self.sock.settimeout(0.2)
            self.stop = threading.Event()
            self.thread = threading.Thread(target=self._answer_400, daemon=True)
            port = self.sock.getsockname()[1]
        self.thread.start()
        self.timer = threading.Timer(60, self.__exit__)
        self.timer.daemon = True
        self.timer.start()
        return f"tcp://127.0.0.1:{port}"

    def _answer_400(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    def __exit__(self, *exc):
        self.timer.cancel()
        if self.kind == "http":
            self.server.shutdown()
            self.server.server_close()
        else:
            self.stop.set()
            self.thread.join(5)
            self.sock.close()


@pytest.mark.parametrize("kind, why", [("http", "did not answer as a dask scheduler within 2 s"),
                                       ("http-400", r"is not a dask scheduler: it answered b'HTTP/1\.1")])
def test_a_scheduler_that_is_not_dask_is_named_within_the_timeout(tmp_path, monkeypatch, kind, why):
    monkeypatch.setattr(engine, "CONNECT_TIMEOUT", 2)
    with _Server(kind) as address:
        t0 = time.monotonic()
        with pytest.raises(ValueError, match=why) as info:
            _within(10, lambda: sb.sweep(kit.network(), {"eta": [0.5]}, kit.TRAIN, kit.VALID, epochs=1,
                                         out=tmp_path / "out", client=address, progress=False))
        assert time.monotonic() - t0 < 10 and address in str(info.value) and "\n" not in str(info.value)


def _cli(capsys, *args) -> tuple[int, str]:
    try:
        rc = main([str(a) for a in args])
    except SystemExit as exc:
        rc = exc.code
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("kind", ["http", "http-400"])
def test_the_command_line_says_it_in_one_line_before_loading_data(tmp_path, monkeypatch, capsys, kind):
    monkeypatch.setattr(engine, "CONNECT_TIMEOUT", 2)
    with _Server(kind) as address:
        t0 = time.monotonic()
        rc, err = _within(10, lambda: _cli(capsys, "sweep", "--layers", "784,10,10", "--out", tmp_path / "out",
                                           "--scheduler", address))
    assert rc == 2 and time.monotonic() - t0 < 10 and not (tmp_path / "out").exists()
    assert err.startswith("symbp sweep: error: argument --scheduler: ") and address in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_tls_options_for_a_named_scheduler(tmp_path, capsys):
    def error(*args):
        rc, err = _cli(capsys, "sweep", "--layers", "784,10,10", "--out", tmp_path / "out", *args)
        assert rc == 2 and err.count("\n") == 1 and "Traceback" not in err, err
        return err

    pem = tmp_path / "ca.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\n")
    assert "for a cluster named with --scheduler" in error("--tls-ca-file", pem, "--tls-cert", pem)
    assert "must be tls://HOST:PORT" in error("--scheduler", "tcp://127.0.0.1:9", "--tls-ca-file", pem,
                                              "--tls-cert", pem)
    assert "--tls-cert: needed" in error("--scheduler", "tls://127.0.0.1:9", "--tls-ca-file", pem)
    assert "cannot read" in error("--scheduler", "tls://127.0.0.1:9", "--tls-ca-file", tmp_path / "no.pem",
                                  "--tls-cert", pem)
    # a tls:// address with no credentials at all (and none in dask's configuration): said before connecting
    assert "give the cluster's TLS credentials" in error("--scheduler", "tls://127.0.0.1:9")
    assert "cannot use the TLS credentials" in error("--scheduler", "tls://127.0.0.1:9", "--tls-ca-file", pem,
                                                     "--tls-cert", pem)  # not a certificate


def test_the_tls_options_reach_a_cluster_with_those_credentials(cluster, tmp_path):
    """What --tls-ca-file/--tls-cert/--tls-key build (files of PEM) opens the cluster the probe and a Client."""
    import argparse

    from distributed import Client

    from symbp.sweep.cli import _tls_security

    lc, _ = cluster
    files = {}
    for name, text in (("ca", lc.security.tls_ca_file), ("cert", lc.security.tls_client_cert),
                       ("key", lc.security.tls_client_key)):
        files[name] = tmp_path / f"{name}.pem"
        files[name].write_text(text)
    args = argparse.Namespace(scheduler=lc.scheduler_address, tls_ca_file=str(files["ca"]),
                              tls_cert=str(files["cert"]), tls_key=str(files["key"]))
    security = _tls_security(args)
    engine.probe_scheduler(lc.scheduler_address, security, timeout=5)
    with Client(lc.scheduler_address, security=security, timeout=10, set_as_default=False) as client:
        assert set(client.run(os.getpid).values())


def test_a_refused_connection_leaves_no_client_behind(cluster, monkeypatch):
    """A Client that failed to connect is finalised at once: left to the garbage collector, its __del__ can run
    inside a later Client's start and wait for a lock that start holds (distributed's LoopRunner), a hang."""
    from distributed import Client
    from distributed.security import Security

    def clients() -> int:
        return sum(type(o) is Client for o in gc.get_objects())

    lc, _ = cluster
    monkeypatch.setattr(engine, "CONNECT_TIMEOUT", 5)
    gc.collect()
    before = clients()
    with pytest.raises(ValueError, match=f"cannot connect to the dask scheduler at {lc.scheduler_address}: "):
        _within(30, lambda: engine._connect(lc.scheduler_address, Security.temporary()))
    assert clients() == before
