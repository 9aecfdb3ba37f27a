"""Shared pieces of the sweep tests: one small network (so each process compiles it once), synthetic data, and
the in-process reference of a trial (``net.compile(seed=s).fit(..., seed=s)``)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import symbp as sb

N_IN, N_HIDDEN, N_OUT = 12, 10, 3


def network():
    return sb.Network([N_IN, N_HIDDEN, N_OUT], activation=sb.sigmoid, cost=sb.cross_entropy)


def data(rows: int, seed: int = 0):
    """Three classes, learnable from the first two coordinates."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, N_IN))
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5)
    return X, y


TRAIN = data(240, seed=1)
VALID = data(120, seed=2)


def reference(net, trial: dict, train=TRAIN, evaluation=VALID):
    """The trial run in this process, exactly as the sweep defines it: (history dict, params)."""
    from symbp.sweep.engine import _decode

    model = net.compile(seed=trial["seed"])
    fit = {k: _decode(v) for k, v in trial["params"].items()}  # sb.L1(5) and the like travel as their config
    hist = model.fit(train, evaluation_data=evaluation, seed=trial["seed"], progress=False, **fit)
    return hist.as_dict(), model.params


def same_history(a: dict, b: dict) -> bool:
    """Bit-identical histories (timings aside)."""
    keys = (set(a) | set(b)) - {"epoch_seconds"}
    return all(a.get(k) == b.get(k) for k in keys)


def same_params(p, q) -> bool:
    return len(p) == len(q) and all(np.array_equal(x, y) and x.dtype == y.dtype
                                    for pair_p, pair_q in zip(p, q) for x, y in zip(pair_p, pair_q))


def within(seconds: float, fn):
    """``fn()`` in a daemon thread: its result, or its exception re-raised; the test fails (instead of hanging)
    when it has not returned within ``seconds``."""
    box = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        pytest.fail(f"no answer after {seconds} s: it hangs")
    if "error" in box:
        raise box["error"]
    return box.get("value")
