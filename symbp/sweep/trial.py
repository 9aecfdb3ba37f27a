"""What runs on a sweep's workers: one trial, and the warming of the kernel cache before the trials.

Takes: a trial's spec (``{"key", "network"`` (the JSON declaration), ``"seed"``, ``"fit"`` (fit keywords, symbp
objects in ``plain``'s form), ``"backend"``, ``"dtype"``, ``"init"``, ``"topic"}``) or warming jobs, and the
training (and evaluation) arrays.  Gives: ``run_trial`` (what happened: ``status`` ok, diverged or error, the
history, the parameters, the timings, the warnings, the worker) and ``warm_kernels`` (what could not be warmed).
Networks are rebuilt from their declarations once per worker process and kept.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import warnings

from symbp.network import declaration_text
from symbp.sweep.grid import decode, describe, fit_parameters
from symbp.sweep.worker import pin_threads
from symbp.train.manifest import network_from_config

_NETWORKS: dict[str, object] = {}


def _network(declaration: dict):
    text = declaration_text(declaration)
    net = _NETWORKS.get(text)
    if net is None:
        net = _NETWORKS[text] = network_from_config(declaration)
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
                kw = {k: decode(v) for k, v in fit.items() if k not in ("epochs", "early_stopping", "batch_size")}
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    with contextlib.suppress(FloatingPointError):  # a huge eta: the kernels ran all the same
                        model.fit((X[:rows], Y[:rows]), epochs=1, batch_size=rows, evaluation_data=ev, seed=0,
                                  progress=False, **kw)
                for name in list(getattr(model.kernels, "sources", ())):
                    with contextlib.suppress(Exception):
                        model.kernels[name]
            except Exception as exc:  # noqa: BLE001 - reported by the client; the trial will say it again
                problems.append(f"{describe(fit)}: {type(exc).__name__}: {exc}")
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
                                 **{k: decode(v) for k, v in spec["fit"].items()})
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
