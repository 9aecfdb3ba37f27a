"""A finished trial as the results file keeps it, and as a sweep gives it back.

Takes: a ``Trial`` and what its worker returned (``run_trial``'s dict); a stored record and the results folder.
Gives: ``trial_record`` (the record appended to ``results.jsonl``: JSON values only, non-finite numbers as null,
the best epoch and its accuracy) and ``result_dict`` (a trial's dict for the caller: its grid values under their
own names, then the record's fields, the model's path in the folder).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from symbp.sweep.grid import RESULT_FIELDS, Trial
from symbp.sweep.store import MODELS, RECORD_FORMAT, RECORD_VERSION


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


def trial_record(trial: Trial, out: dict) -> dict:
    """The record of a finished trial, as ``results.jsonl`` keeps it."""
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
