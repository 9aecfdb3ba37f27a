"""Ensembles: the plurality vote of several trained models (the book's last result, chapter 6).

Takes: models (``Model`` objects, or paths of models saved with ``Model.save``, loaded with ``sb.load``) with the
same input width and number of classes, and inputs ``X``.  Gives:

- ``vote(models, X)``: the class each row gets most votes for, each model voting for its largest output.  A tie
  goes to the smallest class index among the tied ones (``numpy.argmax`` of the vote counts), so the result is
  deterministic and does not depend on the order of the models.
- ``vote_report(models, data, names=None)``: a ``VoteReport`` with each member's accuracy on ``data`` (an
  ``(X, labels)`` pair; labels as integers or one-hot rows), the ensemble's, and the ensemble's predictions.

Models loaded from paths go through ``sb.load`` (every check of the model-file reader; nothing is unpickled).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np


def _as_models(models) -> tuple[list, list[str]]:
    if isinstance(models, (str, os.PathLike)) or hasattr(models, "feedforward"):
        models = [models]
    out, names = [], []
    for i, m in enumerate(models):
        if isinstance(m, (str, os.PathLike)):
            from symbp.train.serialize import load

            names.append(os.fspath(m))
            m = load(m)
        elif hasattr(m, "feedforward"):
            names.append(f"model {i + 1}")
        else:
            raise ValueError(f"models[{i}] must be a Model or the path of a saved model, got {type(m).__name__}")
        out.append(m)
    if not out:
        raise ValueError("vote needs at least one model")
    first = out[0]
    for i, m in enumerate(out[1:], start=2):
        if m.sizes[0] != first.sizes[0] or m.sizes[-1] != first.sizes[-1]:
            raise ValueError(f"{names[i - 1]} maps {m.sizes[0]} inputs to {m.sizes[-1]} classes, {names[0]} "
                             f"{first.sizes[0]} to {first.sizes[-1]}: an ensemble needs the same inputs and classes")
    return out, names


def _predictions(models, X) -> np.ndarray:
    """(k, n): each model's predicted class per row."""
    return np.stack([m.feedforward(X).argmax(axis=1) for m in models])


def plurality(predictions: np.ndarray, n_classes: int) -> np.ndarray:
    """The plurality vote of a (k models, n rows) array of class indices; ties to the smallest class index."""
    predictions = np.asarray(predictions)
    k, n = predictions.shape
    counts = np.zeros((n, n_classes), dtype=np.int64)
    rows = np.arange(n)
    for p in predictions:
        np.add.at(counts, (rows, p), 1)
    return counts.argmax(axis=1)


def vote(models, X) -> np.ndarray:
    """The plurality vote of ``models`` on the rows of ``X``: an int array of shape (n,) (see the module
    docstring for ties)."""
    models, _ = _as_models(models)
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
    """Accuracy of each member and of their plurality vote on ``data = (X, labels)``."""
    models, default_names = _as_models(models)
    names = list(names) if names is not None else default_names
    if len(names) != len(models):
        raise ValueError(f"{len(names)} names for {len(models)} models")
    try:
        X, Y = data
    except (TypeError, ValueError):
        raise ValueError("data must be an (X, labels) pair") from None
    preds = _predictions(models, X)
    labels = _labels(Y, models[0].sizes[-1], preds.shape[1])
    if preds.shape[1] == 0:
        raise ValueError("cannot vote on an empty set")
    ensemble = plurality(preds, models[0].sizes[-1])
    members = [(name, float(np.mean(p == labels))) for name, p in zip(names, preds)]
    return VoteReport(members, float(np.mean(ensemble == labels)), ensemble, int(preds.shape[1]))
