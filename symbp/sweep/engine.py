"""Hyper-parameter sweeps on dask.distributed: one training run per trial, fanned out over a cluster.

Takes: a ``Network``, a grid (``Model.fit`` keyword names and ``"seed"``, each mapped to a list of values), the
training data, optional evaluation data and a results folder ``out``; a ``distributed.Client`` or a scheduler
address, or nothing (then a ``LocalCluster`` of worker processes on 127.0.0.1, secured by TLS with a certificate
made for it, is started and closed).  Gives:
``sweep(...)``, a list with one dict per trial of the grid (finished now or in an earlier run), in grid order;
its ``.failed`` lists the trials that raised.

A trial with seed ``s`` and fit keywords ``kw`` is exactly::

    model = net.compile(backend=backend, dtype=dtype, seed=s, init=init)
    history = model.fit(train, epochs=epochs, evaluation_data=evaluation_data, seed=s, **kw)

so the same call in-process gives bit-identical histories and parameters.  Its dict holds the grid values under
their own names, ``"seed"``, ``"epochs"``, ``"best_epoch"``, ``"best_accuracy"`` (the evaluation accuracy at the
best epoch; the training accuracy when there is no evaluation data), ``"evaluation_accuracy"`` (one value per
epoch), ``"history"`` (``History.as_dict()``), ``"wall_seconds"`` (compile and training, on the worker),
``"model"`` (the path the trial's model was saved to with ``Model.save``: ``out/models/<key>``), ``"key"``,
``"params"`` (every fit keyword given), ``"diverged"`` (None, or fit's message when training diverged: the
history up to there is kept) and ``"worker"``.

How it runs:

- The network travels as its JSON declaration (``Network.config()``: the model-file layer table, read
  back on the worker by the model-file reader and its whitelist parser), not as pickled sympy objects.  The
  training and evaluation arrays are sent to the workers once (``client.scatter(..., broadcast=True)``); trials
  refer to them.
- The kernel cache is warmed before the trials fan out: for each host, one worker compiles every distinct network
  (and runs a one-epoch fit on a few rows of zeros with each distinct set of fit keywords, so every kernel a trial
  calls is compiled); only then do the trials start, and workers that share a host (and so its cache folder) only
  read numba's cache, never write it at the same time.
- Workers of the local cluster run one thread each, with OPENBLAS/OMP/MKL/NUMBA threads pinned to 1 (set in each
  worker process's environment as it starts; the caller's own environment is left alone) and BLAS pools limited
  again with threadpoolctl in every worker process.
- Nothing is lost: each trial's model is saved and its record appended to ``out/results.jsonl`` as soon as it ends
  (see ``symbp.sweep.store``); a trial is identified by a key, the SHA-256 of the network declaration, the compile
  options, the fit keywords (those equal to fit's defaults left out, numbers compared as numbers), the seed and the
  digests of the data, so running the same sweep again skips the finished trials.  A worker killed mid-trial has
  its trial re-run by dask (and ``retries`` covers errors raised by a trial); if the data held by the dead workers
  was lost with them, it is scattered again and the trial resubmitted.  Ctrl-C cancels the running trials and
  keeps what finished.
- A progress bar (rich, on a terminal) shows trials done / running / left.

Grid values are plain data (numbers, strings, true/false, None, lists): they go into trial keys and into
``results.jsonl``.  A symbp object that describes itself (``config()``, and ``from_config`` on its class, as
``sb.L1(5)`` and the other regularisers do) is a value too: it is written and shipped as
``{"$symbp": "module:Class", "config": ...}`` and rebuilt on the worker by ``from_config`` (the whitelist parser
reads its expressions; only classes of symbp's own modules are looked up).

A trial whose fit raises ``ValueError`` (a keyword value fit refuses) is not retried: it is in ``.failed``, with a
warning, and not recorded (the next run tries it again).  The trial key leaves out symbp's version: a results
folder stays valid across versions that train the same way.

The grid, its checks and the trial keys are in ``symbp.sweep.grid``; what runs on the workers (a trial, the
warming of the kernel cache) in ``symbp.sweep.trial``; a finished trial's record and dict in
``symbp.sweep.records``.  This module connects to or starts the cluster and runs the trials on it.
"""

from __future__ import annotations

import contextlib
import gc
import os
import secrets
import socket
import threading
import time
import warnings
from pathlib import Path

import numpy as np

from symbp.sweep.grid import (  # noqa: F401  (re-exported: the engine's names)
    DEFAULT_EPOCHS,
    MAX_TRIALS,
    OBJECT,
    RESERVED,
    RESULT_FIELDS,
    Trial,
    data_digest,
    describe,
    expand_grid,
    fit_parameters,
    plain,
    trial_key,
)
from symbp.sweep.grid import decode as _decode  # noqa: F401  (re-exported)
from symbp.sweep.records import result_dict, trial_record  # noqa: F401  (result_dict re-exported)
from symbp.sweep.store import ResultStore, canonical
from symbp.sweep.trial import run_trial, warm_kernels  # noqa: F401  (warm_kernels re-exported)
from symbp.train.manifest import network_from_config, portable_config

#: environment of the local cluster's worker processes
WORKER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "NUMBA_NUM_THREADS": "1", "MALLOC_TRIM_THRESHOLD_": "65536"}
#: resubmissions of a trial after the engine gave up on it (its worker died more often than dask allows, or the
#: data it needed was lost with the workers that held it)
RESUBMITS = 2
#: seconds to wait for the first worker of an existing cluster, and to connect to its scheduler (the connection
#: and dask's opening handshake together: an address answered by something else is refused within this time)
WORKER_TIMEOUT = 120
CONNECT_TIMEOUT = 30
#: worker processes of a local cluster: at most this many per CPU core (each runs one thread)
MAX_WORKERS_PER_CORE = 2
#: the most bytes of dask's opening handshake (a scheduler sends about 60)
_MAX_HANDSHAKE = 1 << 16


class SweepResults(list):
    """The trials' dicts, in grid order; ``.failed``: ``{**grid values, "seed", "key", "error"}`` per failure."""

    failed: list[dict]

    def __init__(self, items=(), failed=()):
        super().__init__(items)
        self.failed = list(failed)


def _pair(data, name: str):
    try:
        X, Y = data
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an (X, labels) pair") from None
    X, Y = np.asarray(X), np.asarray(Y)
    if X.shape[:1] != Y.shape[:1]:
        raise ValueError(f"{name}: X and labels must have the same number of rows, got {X.shape} and {Y.shape}")
    if X.dtype.kind not in "biuf" or Y.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold real numbers, got dtypes {X.dtype} and {Y.dtype}")
    return np.ascontiguousarray(X), np.ascontiguousarray(Y)


class _Progress:
    """trials done / running / left, as a rich bar; off when stderr is not a terminal or when asked.  A trial is
    running from its worker's "start" event to its "end" event, then being saved until the client has written
    it (done)."""

    def __init__(self, enabled, total: int, before: int):
        import sys

        self.done, self.total, self.before = 0, total, before
        self.running: set[str] = set()
        self.saving: set[str] = set()
        self._finished: set[str] = set()
        self._lock = threading.Lock()
        self._p = None
        if enabled is False or (enabled is None and not sys.stderr.isatty()) or total == 0:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._p = Progress(TextColumn("trials"), MofNCompleteColumn(), BarColumn(), TextColumn("{task.description}"),
                           TimeElapsedColumn())
        self._p.start()
        self._task = self._p.add_task(self._text(), total=total)

    def _text(self) -> str:
        left = self.total - self.done - len(self.running) - len(self.saving)
        extra = f" (+{self.before} from before)" if self.before else ""
        saving = f" · saving {len(self.saving)}" if self.saving else ""
        return f"done {self.done}{extra} · running {len(self.running)}{saving} · left {max(left, 0)}"

    def event(self, event) -> None:
        msg = event[1] if isinstance(event, tuple) and len(event) == 2 else event
        if not isinstance(msg, dict):
            return
        key = msg.get("key")
        with self._lock:
            if key in self._finished:
                return
            if msg.get("event") == "start":
                self.saving.discard(key)  # a trial run again (its worker died): running again
                self.running.add(key)
            elif msg.get("event") == "end" and key in self.running:
                self.running.discard(key)
                self.saving.add(key)
        self._refresh()

    def finished(self, key: str) -> None:
        with self._lock:
            self._finished.add(key)
            self.running.discard(key)
            self.saving.discard(key)
            self.done += 1
        self._refresh()

    def _refresh(self) -> None:
        if self._p is not None:
            self._p.update(self._task, completed=self.done, description=self._text())

    def close(self) -> None:
        if self._p is not None:
            self._p.stop()


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def check_workers(workers) -> int:
    """``workers`` as the number of worker processes of a local cluster (None: one per CPU core this process may
    use); ``ValueError`` for anything but an integer from 1 to ``MAX_WORKERS_PER_CORE`` per core."""
    cores = _cores()
    if workers is None:
        return cores
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    most = MAX_WORKERS_PER_CORE * cores
    if workers > most:
        raise ValueError(f"workers must be at most {most} ({MAX_WORKERS_PER_CORE} per CPU core, {cores} "
                         f"core{'s' if cores > 1 else ''} here; each worker is a process with its own copy of the "
                         f"data), got {workers}")
    return workers


def _security(security):
    """``security`` as a ``distributed.security.Security`` (None: dask's configuration, ``distributed.comm.tls.*``)."""
    from distributed.security import Security

    if security is None:
        return Security()
    if not isinstance(security, Security):
        raise ValueError(f"security must be a distributed.security.Security, got {type(security).__name__}")
    return security


def _recv(sock, n: int, address: str, deadline: float) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        sock.settimeout(left)
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ValueError(f"{address} closed the connection before dask's handshake: it is not a dask scheduler, "
                             "or it refused this client" + (" (wrong TLS credentials?)" if
                                                             address.startswith("tls://") else ""))
        buf += chunk
    return bytes(buf)


def probe_scheduler(address: str, security=None, timeout: float | None = None) -> None:
    """Check that ``address`` (``tcp://`` or ``tls://``) answers as a dask scheduler does: the connection opens,
    (for ``tls://``) the TLS handshake with ``security``'s client credentials succeeds, and within ``timeout``
    seconds (default ``CONNECT_TIMEOUT``) the peer sends dask's opening handshake: a small length-prefixed
    msgpack map.  Nothing is sent and nothing is unpickled.  ``ValueError`` naming the address otherwise (an HTTP
    server waits for a request, so it is refused when the time is up; one that answers at once, e.g. with
    ``HTTP/1.1 400``, is refused on its first bytes).  Other protocols (``ucx://``, ``ws://``) are left to dask."""
    import ssl
    import struct

    import msgpack
    from distributed.comm.addressing import parse_address, parse_host_port

    timeout = CONNECT_TIMEOUT if timeout is None else timeout
    try:
        scheme, loc = parse_address(address)
        host, port = parse_host_port(loc)
    except ValueError as exc:
        raise ValueError(f"{address!r} is not a scheduler address ({exc})") from None
    if scheme not in ("tcp", "tls"):
        return
    name = f"{scheme}://{loc}"
    ctx = None
    if scheme == "tls":
        try:
            ctx = _security(security).get_connection_args("client").get("ssl_context")
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot use the TLS credentials for {name}: {getattr(exc, 'reason', None) or exc}") \
                from None
        if ctx is None:
            raise ValueError(f"{name} is a TLS address: give the cluster's TLS credentials (--tls-ca-file, "
                             "--tls-cert, --tls-key; or security=; or dask's distributed.comm.tls configuration)")
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection((host.strip("[]"), port), timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise ValueError(f"cannot reach the dask scheduler at {name}: {getattr(exc, 'strerror', None) or exc}") \
            from None
    try:
        if ctx is not None:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                sock = ctx.wrap_socket(sock, server_hostname=host.strip("[]"))
            except ssl.SSLError as exc:
                raise ValueError(f"the TLS handshake with {name} failed: {exc.reason or exc} (is it a dask "
                                 "scheduler with TLS, and are these its credentials?)") from None
        head = _recv(sock, 8, name, deadline)
        (size,) = struct.unpack("Q", head)
        if not 0 < size <= _MAX_HANDSHAKE:
            raise ValueError(f"{name} is not a dask scheduler: it answered {head!r}..., not dask's handshake"
                             + (" (is it a tls:// address?)" if scheme == "tcp" and head[:1] == b"\x15" else ""))
        body = _recv(sock, size, name, deadline)
        ok = False
        with contextlib.suppress(Exception):
            n_frames = struct.unpack_from("Q", body)[0]
            lengths = struct.unpack_from(f"{n_frames}Q", body, 8) if 0 < n_frames <= 16 else ()
            first = 8 * (1 + n_frames)
            doc = msgpack.unpackb(body[first:first + lengths[0]], raw=False) if lengths else None
            ok = isinstance(doc, dict) and "python" in doc
        if not ok:
            raise ValueError(f"{name} is not a dask scheduler: its opening message is not dask's handshake")
    except TimeoutError:
        hint = "; a scheduler with TLS has a tls:// address" if scheme == "tcp" else ""
        raise ValueError(f"{name} did not answer as a dask scheduler within {timeout:g} s (a dask scheduler sends "
                         f"its handshake at once: is this the scheduler's address{hint}?)") from None
    except OSError as exc:
        raise ValueError(f"cannot reach the dask scheduler at {name}: {exc.strerror or exc}") from None
    finally:
        sock.close()


def _connect(address: str, security):
    """A ``Client`` connected to ``address``, or ``ValueError`` naming it."""
    from distributed import Client

    failure = None
    try:
        return Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False, security=security)
    except Exception as exc:  # noqa: BLE001 - whatever the connection raised: one line naming the address
        failure = f"cannot connect to the dask scheduler at {address}: {type(exc).__name__}: {exc}"
    # The half-built Client lives on in the traceback's cycles; finalised later, inside another Client's start, its
    # __del__ would wait for the lock that start holds (distributed's LoopRunner): a hang.  Finalise it now.
    gc.collect()
    raise ValueError(failure)


@contextlib.contextmanager
def _engine(client, workers, security=None):
    """The client to use: ``client`` itself, one connected to an address (with ``security``), or one of a new
    local cluster secured by TLS with a temporary certificate."""
    from distributed import Client

    if client is not None and not isinstance(client, str):
        yield client
        return
    if isinstance(client, str):
        security = _security(security)
        probe_scheduler(client, security)
        own = _connect(client, security)
        try:
            own.wait_for_workers(1, timeout=WORKER_TIMEOUT)
            yield own
        finally:
            own.close()
        return
    import dask

    # dask's nannies, which run in this process, write distributed.nanny.pre-spawn-environ (OMP_NUM_THREADS=1,
    # ...) into this process's environment before each worker process starts: undone once the cluster is closed
    names = [*(dask.config.get("distributed.nanny.pre-spawn-environ") or {}), "PYTHONHASHSEED"]
    saved = {name: os.environ.get(name) for name in names}
    try:
        cluster = local_cluster(workers)
        try:
            own = Client(cluster, set_as_default=False)  # with the cluster's credentials (cluster.security)
            try:
                yield own
            finally:
                own.close()
        finally:
            cluster.close()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def local_cluster(workers: int | None = None, **kwargs):
    """A ``LocalCluster`` of ``workers`` processes (default: one per CPU this process may use; at most
    ``MAX_WORKERS_PER_CORE`` per core) with one thread each, BLAS/OpenMP/numba threads pinned to one, scheduler
    and workers on 127.0.0.1, no dashboard (the scheduler's small HTTP server listens on a free port of
    127.0.0.1), worker processes that leave Ctrl-C to the client (``symbp.sweep.worker``).

    Every connection is TLS with mutual authentication, by a certificate and key made for this cluster alone
    (``Security.temporary()``, kept in memory; the ``cryptography`` package): loopback is no boundary between
    the users of one machine, and a client without the cluster's credentials (``cluster.security``; a
    ``Client(cluster)`` takes them) is refused at the TLS handshake.  ``security=`` (a ``Security``) replaces
    them; ``local_cluster(..., security=False, protocol="tcp://")`` is an unauthenticated one."""
    import logging

    import dask
    from distributed import LocalCluster

    workers = check_workers(workers)
    if "security" not in kwargs:
        try:
            from distributed.security import Security

            kwargs["security"] = Security.temporary()
        except ImportError:
            raise ValueError("the local cluster of a sweep is secured by TLS, which needs the cryptography "
                             "package: pip install 'symbp[sweep]'") from None
    elif kwargs["security"] is False:
        kwargs["security"] = None
    # symbp.sweep.worker: the worker processes ignore Ctrl-C (the client handles it) and pin their threads
    preload = [*(dask.config.get("distributed.worker.preload") or []), "symbp.sweep.worker"]
    options = {"n_workers": workers, "threads_per_worker": 1, "processes": True, "host": "127.0.0.1",
               "dashboard_address": None, "worker_dashboard_address": None, "silence_logs": logging.ERROR,
               "env": dict(WORKER_ENV), "preload": preload,
               # no dashboard; the scheduler's small HTTP server (health, metrics) on a free loopback port, not
               # on 8787, which another cluster may hold
               "scheduler_kwargs": {"dashboard": False, "dashboard_address": "127.0.0.1:0"}, **kwargs}
    # The thread variables go to the workers as env= (set in each worker process as it starts, before symbp and
    # numba are imported there), not as distributed.nanny.pre-spawn-environ: the nanny runs in this process and
    # would write those into this process's own os.environ for good (numba then refuses to compile here when
    # NUMBA_NUM_THREADS changes after its threads were started).  BLAS is limited again by threadpoolctl in each
    # worker (symbp.sweep.worker), whenever numpy was loaded.
    return LocalCluster(**options)


def _hosts(client) -> dict[str, list[str]]:
    """Worker addresses by host."""
    info = client.scheduler_info(n_workers=-1)["workers"]
    hosts: dict[str, list[str]] = {}
    for address, w in sorted(info.items()):
        hosts.setdefault(w.get("host") or address.rsplit(":", 1)[0], []).append(address)
    return hosts


def sweep(net, grid: dict, train, evaluation_data=None, epochs: int | None = None, *, out, client=None,
          workers: int | None = None, security=None, backend: str = "numba", dtype: str = "float64",
          init: str = "default", retries: int = 1, progress: bool | None = None, **fit_kwargs) -> SweepResults:
    """Run every trial of ``grid`` (see the module docstring) and return their dicts, in grid order.

    ``grid``: ``{"eta": [0.1, 0.5, 3.0], "lmbda": [0, 5], "seed": [0, 1]}`` — any keyword of ``Model.fit`` (and
    ``"seed"``, default ``[0]``) to a list of values; ``fit_kwargs``: keywords of ``Model.fit`` fixed for every
    trial; ``epochs``: the number of epochs (default 30) unless the grid varies it.  ``out``: the results folder
    (``results.jsonl``, ``models/``).  ``client``: a ``distributed.Client`` or a scheduler address such as
    ``"tls://10.0.0.5:8786"`` (``security``: a ``distributed.security.Security`` with the credentials for it;
    default: dask's configuration); without one, a local cluster of ``workers`` processes (default: one per CPU;
    at most ``MAX_WORKERS_PER_CORE`` per core), secured by TLS with a temporary certificate, is started for the
    sweep and closed after it.  At most ``MAX_TRIALS`` trials.  ``backend``, ``dtype``, ``init``:
    ``net.compile``'s options.  ``retries``: how often dask re-runs a trial that raised.  ``progress``: the bar
    (default: on a terminal).
    """
    from symbp.train.model import DTYPES

    if out is None or (isinstance(out, str) and not out.strip()):
        raise ValueError("out= must name the folder for the results (results.jsonl) and the models, got "
                         f"{out!r}")
    if client is not None and workers is not None:
        raise ValueError("give client= (an existing cluster) or workers= (a local one), not both")
    if security is not None and not isinstance(client, str):
        raise ValueError("security= is for client= given as a scheduler address (the local cluster makes its own "
                         "credentials; a Client carries its own)")
    if client is None:
        check_workers(workers)
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be a non-negative integer, got {retries!r}")
    points, _ = expand_grid(grid, epochs, fit_kwargs)
    declaration = portable_config(net)
    network_from_config(declaration)  # what the workers will do, checked here first
    X, Y = _pair(train, "train")
    if X.shape[0] == 0:
        raise ValueError("train is empty")
    ev = _pair(evaluation_data, "evaluation_data") if evaluation_data is not None else None
    data = {"train": data_digest(X, Y), "evaluation": data_digest(*ev) if ev is not None else None}
    compile_options = {"backend": backend, "dtype": dtype, "init": init}
    trials, seen = [], set()
    for values, seed, fit in points:
        key = trial_key(declaration, compile_options, fit, seed, data)
        if key not in seen:
            seen.add(key)
            trials.append(Trial(key, values, seed, fit))
    folder = Path(out)
    failed: list[dict] = []
    with ResultStore(folder) as store:
        todo = [t for t in trials if t.key not in store.records]
        if todo:
            with _engine(client, workers, security) as cl:
                failed = _run(cl, net, declaration, compile_options, todo, (X, Y), ev, store, retries, progress,
                              before=len(trials) - len(todo))
        done = [result_dict(store.records[t.key], folder) for t in trials if t.key in store.records]
    return SweepResults(done, failed)


def _run(client, net, declaration, compile_options, todo, train, ev, store, retries, progress, before) -> list:
    """Warm the caches, fan the trials out, save each one as it ends.  Returns the failures."""
    from distributed import as_completed

    data_arrays = [*train, *(ev or ())]
    data = client.scatter(data_arrays, broadcast=True, hash=False)
    for problem in _warm(client, declaration, compile_options, todo, data):
        warnings.warn(f"the kernel cache could not be warmed for {problem} (those trials compile on their own, or "
                      "fail the same way)", RuntimeWarning, stacklevel=3)
    saver = {}

    def save_model(key: str, params) -> None:
        if "model" not in saver:  # compiled once, after the workers warmed the cache: it only reads it
            saver["model"] = net.compile(backend=compile_options["backend"], dtype=compile_options["dtype"], seed=0)
        model = saver["model"]
        model.set_params(params)
        model.save(store.model_path(key))

    topic = f"symbp-sweep-{secrets.token_hex(6)}"
    bar = _Progress(progress, len(todo), before)
    subscribed = False
    with contextlib.suppress(Exception):
        client.subscribe_topic(topic, bar.event)
        subscribed = True

    def submit(trial: Trial, attempt: int):
        spec = {"key": trial.key, "network": declaration, "seed": trial.seed, "fit": trial.fit,
                "topic": topic if subscribed else None, **compile_options}
        return client.submit(run_trial, spec, *data, key=f"symbp-trial-{trial.key}-{attempt}-{secrets.token_hex(4)}",
                             pure=False, retries=retries)

    pending = {}
    for trial in todo:
        pending[submit(trial, 0)] = (trial, 0)
    failed = []
    completed = as_completed(list(pending), loop=client.loop)
    try:
        for fut in completed:
            trial, attempt = pending.pop(fut)
            if fut.status == "finished":
                out = fut.result()
                fut.release()
                if out.get("status") == "error":
                    failed.append(_failure(trial, out.get("error", "failed")))
                else:
                    save_model(trial.key, out["params"])
                    store.append(trial_record(trial, out))
                bar.finished(trial.key)
                continue
            exc = _exception(fut)
            fut.release()
            if attempt < RESUBMITS and not isinstance(exc, (ValueError, TypeError)):
                if any(d.status != "finished" for d in data):  # lost with the workers that held it
                    data = client.scatter(data_arrays, broadcast=True, hash=False)
                new = submit(trial, attempt + 1)
                pending[new] = (trial, attempt + 1)
                completed.add(new)
                continue
            failed.append(_failure(trial, f"{type(exc).__name__}: {exc}"))
            bar.finished(trial.key)
    except BaseException:  # Ctrl-C (or an error saving): stop the trials still running; what finished is kept
        with contextlib.suppress(Exception):
            client.cancel(list(pending), force=True)
        raise
    finally:
        bar.close()
        if subscribed:
            with contextlib.suppress(Exception):
                client.unsubscribe_topic(topic)
        for d in data:  # the scattered arrays: released (not cancelled: the client may share their keys)
            d.release()
    for f in failed:
        warnings.warn(f"trial {f['key']} ({describe(f)}) failed: {f['error']}", RuntimeWarning, stacklevel=3)
    return failed


def _exception(fut) -> BaseException:
    try:
        return fut.exception() or RuntimeError(f"trial {fut.key} ended as {fut.status}")
    except BaseException as exc:  # a cancelled future raises here  # noqa: BLE001
        if isinstance(exc, KeyboardInterrupt):
            raise
        return exc


def _failure(trial: Trial, error: str) -> dict:
    return {**trial.values, "seed": trial.seed, "key": trial.key, "error": error}


def _warm(client, declaration, compile_options, todo, data) -> list[str]:
    """Compile the network once per host (on one worker of each) with every distinct set of fit keywords, on the
    scattered data, and wait for it: only then do the trials start, so workers sharing a host's cache folder
    only read numba's cache.  Returns what could not be warmed."""
    fits, seen = [], set()
    for trial in todo:
        fit = {k: v for k, v in trial.fit.items() if k != "epochs"}
        text = canonical(fit)
        if text not in seen:
            seen.add(text)
            fits.append(fit)
    job = {"network": declaration, "backend": compile_options["backend"], "dtype": compile_options["dtype"],
           "fits": fits}
    futures = [client.submit(warm_kernels, [job], *data, workers=addresses[:1], allow_other_workers=True, pure=False,
                             key=f"symbp-warm-{host}-{secrets.token_hex(4)}")
               for host, addresses in _hosts(client).items()]
    problems = []
    for fut in futures:
        try:
            problems.extend(p for p in fut.result() if p not in problems)
        except Exception as exc:  # noqa: BLE001 - a worker lost while warming: the trials compile on their own
            problems.append(f"warming on a worker failed: {type(exc).__name__}: {exc}")
    return problems
