"""Ensembles: the plurality vote of several trained models (the book's last result, chapter 6).

Takes: models (``Model`` objects, or paths of models saved with ``Model.save``, loaded with ``sb.load``) with the
same input width and number of classes, and inputs ``X``.  Gives:

- ``vote(models, X)``: the class each row gets most votes for, each model voting for its largest output.  A tie
  goes to the smallest class index among the tied ones (``numpy.argmax`` of the vote counts), so the result is
  deterministic and does not depend on the order of the models.
- ``vote_report(models, data, names=None)``: a ``VoteReport`` with each member's accuracy on ``data`` (an
  ``(X, labels)`` pair; labels as integers or one-hot rows), the ensemble's, and the ensemble's predictions.

Models loaded from paths go through ``sb.load`` (every check of the model-file reader; nothing is unpickled).

The members must take the same inputs and give the same classes: the same input shape (a flat input of width n
goes with any image shape of n values; two image shapes must be equal, so a (4, 14, 14) model is not voted on
1×28×28 images) and the same number of outputs; a refusal names the models (their paths, when loaded from
paths).  A model whose training diverged is left out of the vote with a ``RuntimeWarning`` naming it: one with
NaN or infinite parameters, or one of a sweep's models (``DIR/models/<key>`` beside ``DIR/results.jsonl``)
whose record says it diverged; when none is left the vote is refused.  At most ``MAX_MODELS`` models (each is
compiled, a few seconds apiece): more are refused before any is loaded.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: the most models one vote takes (each is compiled and run: a few seconds apiece)
MAX_MODELS = 50


def _as_models(models, image_shape=None, given_names=None) -> tuple[list, list[str]]:
    """The models (loaded when paths), and their names (``given_names``, else the paths or ``model i``), without
    the diverged ones; checked to form an ensemble."""
    if isinstance(models, (str, os.PathLike)) or hasattr(models, "feedforward"):
        models = [models]
    models = list(models)
    if len(models) > MAX_MODELS:
        raise ValueError(f"vote takes at most {MAX_MODELS} models, got {len(models)}")
    if given_names is not None:
        given_names = [str(n) for n in given_names]
        if len(given_names) != len(models):
            raise ValueError(f"{len(given_names)} names for {len(models)} models")
    out, names, paths = [], [], []
    for i, m in enumerate(models):
        if isinstance(m, (str, os.PathLike)):
            from symbp.train.serialize import load

            names.append(os.fspath(m))
            paths.append(Path(m))
            m = load(m)
        elif hasattr(m, "feedforward"):
            names.append(f"model {i + 1}")
            paths.append(None)
        else:
            raise ValueError(f"models[{i}] must be a Model or the path of a saved model, got {type(m).__name__}")
        out.append(m)
    if not out:
        raise ValueError("vote needs at least one model")
    if given_names is not None:
        names = given_names
    out, names = select_members(out, names, paths)
    check_ensemble(out, names, image_shape)
    return out, names


def _input_shape(model) -> tuple:
    network = getattr(model, "network", None)
    shape = tuple(network.shapes[0]) if network is not None else ()
    return shape or (model.sizes[0],)


def _shape_text(shape: tuple) -> str:
    return "×".join(map(str, shape)) if len(shape) > 1 else f"{shape[0]} inputs"


def _fits(shape: tuple, other: tuple) -> bool:
    """Two input shapes take the same rows: equal, or one flat with as many values as the other."""
    if len(shape) > 1 and len(other) > 1:
        return shape == other
    return int(np.prod(shape)) == int(np.prod(other))


def check_ensemble(models, names, image_shape=None) -> None:
    """``ValueError`` naming the models unless they all take the same inputs (and, with ``image_shape``, inputs
    of that shape) and give the same number of classes."""
    shapes = [_input_shape(m) for m in models]
    if image_shape is not None:
        image_shape = tuple(image_shape)
        for name, shape in zip(names, shapes):
            if not _fits(shape, image_shape):
                raise ValueError(f"{name} takes {_shape_text(shape)}, the images are {_shape_text(image_shape)}")
    # the first image shape, else the first flat one: every model must fit it
    ref = next((i for i, shape in enumerate(shapes) if len(shape) > 1), 0)
    for i, m in enumerate(models):
        if not _fits(shapes[i], shapes[ref]):
            raise ValueError(f"{names[i]} takes {_shape_text(shapes[i])}, {names[ref]} {_shape_text(shapes[ref])}: "
                             "an ensemble needs the same inputs and classes")
        if m.sizes[-1] != models[0].sizes[-1]:
            raise ValueError(f"{names[i]} gives {m.sizes[-1]} classes, {names[0]} {models[0].sizes[-1]}: an "
                             "ensemble needs the same inputs and classes")


def _finite(model) -> bool:
    return all(np.isfinite(a).all() for group in model.params for a in group)


def _sweep_records(paths) -> dict:
    """``{model path: record}`` for the paths that are a sweep's models (``DIR/models/<key>[.json]`` beside
    ``DIR/results.jsonl``); the results files are read with every check of ``load_results``."""
    from symbp.sweep.store import MODELS, RESULTS, load_results

    out, cache = {}, {}
    for p in paths:
        if p is None:
            continue
        p = Path(p)
        stem = p.stem if p.suffix in (".json", ".npz") else p.name
        folder = p.parent.parent
        if p.parent.name != MODELS or not (folder / RESULTS).is_file():
            continue
        if folder not in cache:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    cache[folder] = {r["key"]: r for r in load_results(folder)}
                except ValueError:
                    cache[folder] = {}
        if stem in cache[folder]:
            out[p] = cache[folder][stem]
    return out


def select_members(models, names, paths=None) -> tuple[list, list[str]]:
    """``models`` and ``names`` without the models whose training diverged (NaN or infinite parameters; or a
    sweep's model whose record says it diverged, when ``paths`` give where they were loaded from), each left
    out with a ``RuntimeWarning``; ``ValueError`` when none is left."""
    paths = list(paths) if paths is not None else [None] * len(models)
    records = _sweep_records(paths)
    kept, kept_names = [], []
    for m, name, p in zip(models, names, paths):
        record = records.get(Path(p)) if p is not None else None
        if not _finite(m):
            why = "has NaN or infinite parameters (its training diverged)"
        elif record is not None and record.get("diverged"):
            why = f"is a trial recorded as diverged in {Path(p).parent.parent / 'results.jsonl'}"
        else:
            kept.append(m)
            kept_names.append(name)
            continue
        warnings.warn(f"{name} {why}: left out of the vote", RuntimeWarning, stacklevel=3)
    if not kept:
        raise ValueError(f"no model to vote: all {len(models)} diverged (see the warnings)")
    return kept, kept_names


def _predictions(models, X) -> np.ndarray:
    """(k, n): each model's predicted class per row."""
    flat = np.reshape(X, (np.shape(X)[0], -1)) if np.ndim(X) > 2 else X  # images, for the models of flat inputs
    return np.stack([m.feedforward(flat if len(_input_shape(m)) == 1 else X).argmax(axis=1) for m in models])


def plurality(predictions: np.ndarray, n_classes: int) -> np.ndarray:
    """The plurality vote of a (k models, n rows) array of class indices; ties to the smallest class index."""
    predictions = np.asarray(predictions)
    k, n = predictions.shape
    counts = np.zeros((n, n_classes), dtype=np.int64)
    rows = np.arange(n)
    for p in predictions:
        np.add.at(counts, (rows, p), 1)
    return counts.argmax(axis=1)


def _image_shape(X):
    """The shape of one image of ``X`` when it holds images (n, C, H, W) or (n, H, W); None for flat rows."""
    shape = np.shape(X)
    return tuple(shape[1:]) if len(shape) > 2 else None


def vote(models, X) -> np.ndarray:
    """The plurality vote of ``models`` on the rows of ``X``: an int array of shape (n,) (see the module
    docstring for ties, diverged models and the limits)."""
    models, _ = _as_models(models, _image_shape(X))
    return plurality(_predictions(models, X), models[0].sizes[-1])


@dataclass
class VoteReport:
    """Each member's accuracy, the ensemble's, and its predictions."""

    members: list[tuple[str, float]]
    accuracy: float
    predictions: np.ndarray
    n: int

    @property
    def best_member(self) -> tuple[str, float]:
        return max(self.members, key=lambda m: m[1])

    def __str__(self) -> str:
        lines = [f"{name}: {acc:.2%}" for name, acc in self.members]
        lines.append(f"ensemble of {len(self.members)} (plurality vote): {self.accuracy:.2%} on {self.n} rows")
        return "\n".join(lines)


def _labels(Y, n_classes: int, n: int) -> np.ndarray:
    Y = np.asarray(Y)
    if Y.ndim == 2 and Y.shape[1] == n_classes:
        Y = Y.argmax(axis=1)
    if Y.ndim != 1 or Y.shape[0] != n:
        raise ValueError(f"labels must be {n} class indices or one-hot rows of {n_classes}, got shape {Y.shape}")
    return Y.astype(np.int64)


def vote_report(models, data, names=None) -> VoteReport:
    """Accuracy of each member and of their plurality vote on ``data = (X, labels)``; ``names``: one per model
    given (those of diverged models are left out with them)."""
    try:
        X, Y = data
    except (TypeError, ValueError):
        raise ValueError("data must be an (X, labels) pair") from None
    models, names = _as_models(models, _image_shape(X), names)
    preds = _predictions(models, X)
    labels = _labels(Y, models[0].sizes[-1], preds.shape[1])
    if preds.shape[1] == 0:
        raise ValueError("cannot vote on an empty set")
    ensemble = plurality(preds, models[0].sizes[-1])
    members = [(name, float(np.mean(p == labels))) for name, p in zip(names, preds)]
    return VoteReport(members, float(np.mean(ensemble == labels)), ensemble, int(preds.shape[1]))
