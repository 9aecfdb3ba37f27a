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

- The network travels as its JSON declaration (``symbp.sweep.declaration``: the model-file layer table, read
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
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import itertools
import math
import os
import secrets
import socket
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from symbp.sweep.declaration import declaration_text, network_declaration, network_from_declaration
from symbp.sweep.store import MODELS, RECORD_FORMAT, RECORD_VERSION, ResultStore, canonical
from symbp.sweep.worker import pin_threads

#: fit keywords a sweep sets itself (the data, the seed, the progress bar and its own per-epoch callback)
RESERVED = ("self", "training_data", "evaluation_data", "seed", "progress", "callback")
#: the marker of a symbp object (one with ``config()`` and ``from_config``) among plain values
OBJECT = "$symbp"
#: names of the fields of a trial's dict: a grid key may not be one of them
RESULT_FIELDS = ("seed", "epochs", "best_epoch", "best_accuracy", "evaluation_accuracy", "history", "wall_seconds",
                 "compile_seconds", "model", "key", "params", "diverged", "worker", "warnings")
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
DEFAULT_EPOCHS = 30
#: the most trials one sweep may have (refused before any trial is built): each is a training run, a line of
#: results.jsonl and a saved model
MAX_TRIALS = 100_000
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


@dataclass(frozen=True)
class Trial:
    key: str
    values: dict  # the grid values (seed excluded), by name, in grid order
    seed: int
    fit: dict  # every fit keyword of this trial (grid values and fixed ones), epochs included


# -- the grid ----------------------------------------------------------------------------------------------------
def fit_parameters() -> dict[str, inspect.Parameter]:
    """The keyword parameters of ``Model.fit`` a grid may name (read from its signature: new ones work at once)."""
    from symbp.train.model import Model

    params = inspect.signature(Model.fit).parameters
    return {name: p for name, p in params.items() if name not in RESERVED
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def plain(value, where: str):
    """``value`` as plain JSON data (NumPy scalars and arrays become numbers and lists); ``ValueError`` naming
    ``where`` for anything else (a sweep's values go into trial keys and into ``results.jsonl``)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: {value!r} is not a finite number")
        return value
    if isinstance(value, (list, tuple)):
        return [plain(v, where) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: plain(v, where) for k, v in value.items()}
    cls = type(value)
    if (cls.__module__.startswith("symbp.") and callable(getattr(value, "config", None))
            and callable(getattr(cls, "from_config", None))):
        return {OBJECT: f"{cls.__module__}:{cls.__qualname__}", "config": plain(value.config(), where)}
    raise ValueError(f"{where}: sweep values must be plain data (numbers, strings, true/false, None, lists) or "
                     f"symbp objects with config()/from_config (sb.L1(5), ...), got {type(value).__name__} "
                     f"{value!r}")


def _decode(value):
    """A value of a trial's fit keywords as fit takes it: ``{OBJECT: "symbp.module:Class", "config": ...}`` is
    rebuilt by that symbp class's ``from_config`` (which reads expressions with the whitelist parser); anything
    else is used as it is.  Only classes of symbp's own modules are looked up."""
    if not (isinstance(value, dict) and set(value) == {OBJECT, "config"} and isinstance(value[OBJECT], str)):
        return value
    import importlib

    module, _, name = value[OBJECT].partition(":")
    if not module.startswith("symbp.") or not name.isidentifier():
        raise ValueError(f"{value[OBJECT]!r} is not a symbp class")
    cls = getattr(importlib.import_module(module), name, None)
    if not isinstance(cls, type) or not callable(getattr(cls, "from_config", None)):
        raise ValueError(f"{value[OBJECT]!r} is not a symbp class with from_config")
    return cls.from_config(value["config"])


def _seed(value, where: str) -> int:
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise ValueError(f"{where}: a seed must be an integer in 0..2**63-1, got {value!r}")
    return value


def _values(grid_value, name: str) -> list:
    if isinstance(grid_value, (str, bytes, dict)) or not hasattr(grid_value, "__iter__"):
        grid_value = [grid_value]
    values = list(itertools.islice(grid_value, MAX_TRIALS + 1))  # a longer list (or an endless iterator): refused
    if not values:
        raise ValueError(f"grid[{name!r}] is empty: give at least one value")
    if len(values) > MAX_TRIALS:
        raise ValueError(f"grid[{name!r}] has more than {MAX_TRIALS:,} values, more trials than a sweep may have")
    return values


def _key_form(value):
    """Numbers as floats (fit treats 3 and 3.0 alike), recursively: the form of a value inside a trial key."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, list):
        return [_key_form(v) for v in value]
    if isinstance(value, dict):
        return {k: _key_form(v) for k, v in value.items()}
    return value


def expand_grid(grid: dict, epochs, fit_kwargs: dict) -> tuple[list[tuple[dict, int, dict]], list[str]]:
    """The trials of ``grid`` as ``(grid values, seed, fit keywords)`` in grid order (itertools.product over the
    keys as given; ``seed`` defaults to ``[0]``, last), and the grid's names.  Every name is checked against
    ``Model.fit``'s signature; every value must be plain data (or a self-describing symbp object, see ``plain``)."""
    if not isinstance(grid, dict):
        raise ValueError(f"grid must be a dict of fit keyword names (and 'seed') to lists of values, got "
                         f"{type(grid).__name__}")
    known = fit_parameters()
    for name in list(grid) + list(fit_kwargs):
        if not isinstance(name, str):
            raise ValueError(f"grid names must be strings, got {name!r}")
        if name != "seed" and name not in known:
            why = "is set by the sweep itself" if name in RESERVED else "is not a keyword of Model.fit"
            raise ValueError(f"{name!r} {why}; a grid may name 'seed' and the keywords of Model.fit: "
                             f"{', '.join(known)}")
        if name in RESULT_FIELDS and name not in ("seed", "epochs"):
            raise ValueError(f"{name!r} is also a field of a trial's result and cannot be a grid name")
    both = set(grid) & set(fit_kwargs)
    if both:
        raise ValueError(f"{', '.join(sorted(both))} given both in the grid and as a fixed keyword")
    if "seed" in fit_kwargs:
        raise ValueError("give the seeds in the grid: grid={'seed': [0, 1, ...]}")
    if "epochs" in grid and epochs is not None:
        raise ValueError("epochs given both in the grid and as epochs=: give one")
    fixed = {name: plain(v, name) for name, v in fit_kwargs.items()}
    if "epochs" not in grid:
        fixed["epochs"] = DEFAULT_EPOCHS if epochs is None else plain(epochs, "epochs")
    names = [n for n in grid if n != "seed"]
    order = list(grid) if "seed" in grid else [*names, "seed"]
    raw = {n: _values(grid[n], n) for n in names}
    raw["seed"] = _values(grid.get("seed", [0]), "seed")
    count = math.prod(len(v) for v in raw.values())
    if count > MAX_TRIALS:  # refused before any trial is built
        raise ValueError(f"the grid has {count:,} trials ({' × '.join(str(len(raw[n])) for n in order)}), more than "
                         f"a sweep may have ({MAX_TRIALS:,}): split it into several sweeps")
    lists = [[plain(v, f"grid[{n!r}]") for v in raw[n]] for n in names]
    seeds = [_seed(v, "grid['seed']") for v in raw["seed"]]
    axes = {**dict(zip(names, lists)), "seed": seeds}
    trials = []
    for combo in itertools.product(*(axes[n] for n in order)):
        point = dict(zip(order, combo))
        seed = point.pop("seed")
        values = {n: point[n] for n in names}
        trials.append((values, seed, {**fixed, **values}))
    return trials, names


def trial_key(declaration: dict, compile_options: dict, fit: dict, seed: int, data: dict) -> str:
    """The identity of a trial: SHA-256 (first 20 hex digits) of what determines its result."""
    defaults = {name: p.default for name, p in fit_parameters().items() if p.default is not p.empty}
    given = {}
    for name, value in fit.items():
        if name in defaults:
            try:
                if _key_form(plain(defaults[name], name)) == _key_form(value):
                    continue  # fit's own default: the same trial as leaving it out
            except ValueError:
                pass
        given[name] = _key_form(value)
    doc = {"network": declaration, "compile": compile_options, "fit": given, "seed": seed, "data": data}
    return hashlib.sha256(canonical(doc).encode()).hexdigest()[:20]


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


def data_digest(X: np.ndarray, Y: np.ndarray) -> str:
    """SHA-256 of two arrays' dtypes, shapes and bytes: the identity of a data set in trial keys."""
    h = hashlib.sha256()
    for arr in (X, Y):
        h.update(f"{arr.dtype.str}{arr.shape}".encode())
        h.update(memoryview(np.ascontiguousarray(arr)).cast("B"))
    return h.hexdigest()


# -- on the worker -----------------------------------------------------------------------------------------------
_NETWORKS: dict[str, object] = {}


def _network(declaration: dict):
    text = declaration_text(declaration)
    net = _NETWORKS.get(text)
    if net is None:
        net = _NETWORKS[text] = network_from_declaration(declaration)
    return net


def _where() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"{socket.gethostname()}:{os.getpid()}"


def warm_kernels(jobs: list[dict], X, Y, Xe=None, Ye=None) -> list[str]:
    """Compile each network of ``jobs`` (``{"network", "backend", "dtype", "fits": [fit keywords]}``) and run a
    one-epoch fit with each set of fit keywords on the first rows of the trials' own training data (one
    mini-batch; its evaluation on the first rows of the evaluation data), so that every kernel the trials call,
    for the data types they see, is in the kernel cache.  Returns, per set of fit keywords that could not be
    warmed, ``"values: error"`` (its trials compile on their own, or report the same error)."""
    pin_threads()
    defaults = fit_parameters()
    problems = []
    for job in jobs:
        net = _network(job["network"])
        for fit in job["fits"]:
            try:
                rows = fit.get("batch_size", defaults["batch_size"].default)
                rows = min(rows if isinstance(rows, int) and rows >= 1 else 1, X.shape[0])
                model = net.compile(backend=job["backend"], dtype=job["dtype"], seed=0)
                ev = (Xe[:rows], Ye[:rows]) if Xe is not None else None
                kw = {k: _decode(v) for k, v in fit.items() if k not in ("epochs", "early_stopping", "batch_size")}
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    with contextlib.suppress(FloatingPointError):  # a huge eta: the kernels ran all the same
                        model.fit((X[:rows], Y[:rows]), epochs=1, batch_size=rows, evaluation_data=ev, seed=0,
                                  progress=False, **kw)
                for name in list(getattr(model.kernels, "sources", ())):
                    with contextlib.suppress(Exception):
                        model.kernels[name]
            except Exception as exc:  # noqa: BLE001 - reported by the client; the trial will say it again
                problems.append(f"{_describe(fit)}: {type(exc).__name__}: {exc}")
    return problems


def run_trial(spec: dict, X, Y, Xe=None, Ye=None) -> dict:
    """One trial on a worker: compile the declared network with the trial's seed, fit, return what happened
    (``status`` ok, diverged or error; the history; the parameters, for the client to save)."""
    pin_threads()
    _tell(spec, "start")
    try:
        return _trial(spec, X, Y, Xe, Ye)
    finally:
        _tell(spec, "end")


def _tell(spec: dict, event: str) -> None:
    """Tell the client's progress bar that this trial starts or ends (an event on the sweep's topic)."""
    if spec.get("topic"):
        with contextlib.suppress(Exception):
            from distributed import get_worker

            get_worker().log_event(spec["topic"], {"key": spec["key"], "event": event})


def _trial(spec: dict, X, Y, Xe, Ye) -> dict:
    t0 = time.perf_counter()
    state: dict = {"history": None}

    def keep(epoch, hist):
        state["history"] = {k: list(v) if isinstance(v, list) else v for k, v in hist.as_dict().items()}

    out = {"worker": _where(), "warnings": []}
    seed = spec["seed"]
    try:
        net = _network(spec["network"])
        model = net.compile(backend=spec["backend"], dtype=spec["dtype"], seed=seed, init=spec["init"])
        compile_s = time.perf_counter() - t0
        evaluation = (Xe, Ye) if Xe is not None else None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                hist = model.fit((X, Y), evaluation_data=evaluation, seed=seed, progress=False, callback=keep,
                                 **{k: _decode(v) for k, v in spec["fit"].items()})
                out.update(status="ok", history=hist.as_dict(), diverged=None)
            except FloatingPointError as exc:
                out.update(status="diverged", history=state["history"] or {}, diverged=str(exc))
        out["warnings"] = [str(w.message) for w in caught]
        out["params"] = model.params
        out["compile_seconds"] = compile_s
    except ValueError as exc:  # a keyword value fit refuses: the same on every retry
        out.update(status="error", error=f"{type(exc).__name__}: {exc}")
    out["wall_seconds"] = time.perf_counter() - t0
    return out


# -- on the client -----------------------------------------------------------------------------------------------
def _json_value(v):
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (list, tuple)):
        return [_json_value(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _json_value(x) for k, x in v.items()}
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return repr(v)


def _best(history: dict) -> tuple[int | None, float | None]:
    acc = history.get("evaluation_accuracy") or history.get("training_accuracy") or []
    best = history.get("best_epoch")
    if not isinstance(best, int) or not 1 <= best <= len(acc):
        return (best if isinstance(best, int) else None), None
    return best, acc[best - 1]


def _record(trial: Trial, out: dict) -> dict:
    history = _json_value(out.get("history") or {})
    best_epoch, best_accuracy = _best(history)
    return {"format": RECORD_FORMAT, "version": RECORD_VERSION, "key": trial.key, "values": trial.values,
            "seed": trial.seed, "params": trial.fit, "epochs": trial.fit.get("epochs"), "best_epoch": best_epoch,
            "best_accuracy": best_accuracy,
            "evaluation_accuracy": [v for v in history.get("evaluation_accuracy", []) if v is not None],
            "history": history, "wall_seconds": out.get("wall_seconds"),
            "compile_seconds": out.get("compile_seconds"), "diverged": out.get("diverged"),
            "warnings": _json_value(out.get("warnings", [])), "worker": out.get("worker"),
            "model": f"{MODELS}/{trial.key}", "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def result_dict(record: dict, folder: Path) -> dict:
    """A trial's dict for the caller: its grid values under their own names, then the record's fields."""
    out = dict(record.get("values", {}))
    for name in RESULT_FIELDS:
        if name in record:
            out[name] = record[name]
    out["model"] = str(folder / record["model"])
    return out


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
        try:
            own = Client(client, timeout=CONNECT_TIMEOUT, set_as_default=False, security=security)
        except Exception as exc:  # noqa: BLE001 - whatever the connection raised: one line naming the address
            raise ValueError(f"cannot connect to the dask scheduler at {client}: {type(exc).__name__}: {exc}") \
                from None
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
    declaration = network_declaration(net)
    network_from_declaration(declaration)  # what the workers will do, checked here first
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
                    store.append(_record(trial, out))
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
        warnings.warn(f"trial {f['key']} ({_describe(f)}) failed: {f['error']}", RuntimeWarning, stacklevel=3)
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


def _describe(values: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items() if k not in ("key", "error"))


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
