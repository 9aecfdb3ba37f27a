"""The grid of a sweep: its names and values checked against ``Model.fit``, expanded into trials, and each
trial's identity.

Takes: a grid (``Model.fit`` keyword names and ``"seed"``, each mapped to values), the fixed fit keywords and the
number of epochs; a trial's network declaration, compile options, fit keywords, seed and data digests.  Gives:
``expand_grid`` (the trials as ``(grid values, seed, fit keywords)``, in grid order), ``trial_key`` (a trial's
SHA-256 identity), ``data_digest`` (a data set's), ``plain`` (a value as plain JSON data, a symbp object as
``{"$symbp": "module:Class", "config": ...}``) and ``decode`` (such a value rebuilt by its class's
``from_config``), ``fit_parameters`` (the fit keywords a grid may name), ``Trial``, ``describe`` (a trial's values
as one line) and the limits ``MAX_TRIALS`` and ``DEFAULT_EPOCHS``.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import math
from dataclasses import dataclass

import numpy as np

from symbp.sweep.store import canonical

#: fit keywords a sweep sets itself (the data, the seed, the progress bar and its own per-epoch callback)
RESERVED = ("self", "training_data", "evaluation_data", "seed", "progress", "callback")
#: the marker of a symbp object (one with ``config()`` and ``from_config``) among plain values
OBJECT = "$symbp"
#: names of the fields of a trial's dict: a grid key may not be one of them
RESULT_FIELDS = ("seed", "epochs", "best_epoch", "best_accuracy", "evaluation_accuracy", "history", "wall_seconds",
                 "compile_seconds", "model", "key", "params", "diverged", "worker", "warnings")
DEFAULT_EPOCHS = 30
#: the most trials one sweep may have (refused before any trial is built): each is a training run, a line of
#: results.jsonl and a saved model
MAX_TRIALS = 100_000


@dataclass(frozen=True)
class Trial:
    key: str
    values: dict  # the grid values (seed excluded), by name, in grid order
    seed: int
    fit: dict  # every fit keyword of this trial (grid values and fixed ones), epochs included


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


def decode(value):
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


def data_digest(X: np.ndarray, Y: np.ndarray) -> str:
    """SHA-256 of two arrays' dtypes, shapes and bytes: the identity of a data set in trial keys."""
    h = hashlib.sha256()
    for arr in (X, Y):
        h.update(f"{arr.dtype.str}{arr.shape}".encode())
        h.update(memoryview(np.ascontiguousarray(arr)).cast("B"))
    return h.hexdigest()


def describe(values: dict) -> str:
    """A trial's values (or a failure's) as one line: ``name=value, ...``."""
    return ", ".join(f"{k}={v}" for k, v in values.items() if k not in ("key", "error"))
