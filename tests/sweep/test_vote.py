"""sb.vote: the plurality vote of several models (ties to the smallest class), and its report."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import sweep_kit as kit

import symbp as sb
from symbp.sweep.vote import plurality, vote_report


@pytest.fixture(scope="module")
def models():
    """Five models of the kit's network, trained a little from different seeds (they disagree on some rows)."""
    net = kit.network()
    out = []
    for seed in range(5):
        m = net.compile(seed=seed)
        m.fit(kit.TRAIN, epochs=1, batch_size=10, eta=0.5, seed=seed, progress=False)
        out.append(m)
    return out


def numpy_plurality(predictions: np.ndarray) -> np.ndarray:
    """An independent plurality vote: count per row, the most common class, the smallest among ties."""
    out = []
    for column in predictions.T:
        counts = Counter(column.tolist())
        top = max(counts.values())
        out.append(min(c for c, n in counts.items() if n == top))
    return np.array(out)


def test_vote_of_identical_models_is_each_model(models):
    X = kit.VALID[0]
    m = models[0]
    alone = m.feedforward(X).argmax(axis=1)
    assert np.array_equal(sb.vote([m], X), alone)
    assert np.array_equal(sb.vote([m, m, m], X), alone)
    twin = kit.network().compile(seed=0)
    twin.set_params(m.params)
    assert np.array_equal(sb.vote([m, twin], X), alone)


def test_vote_of_different_models_is_the_numpy_plurality(models):
    X = kit.VALID[0]
    preds = np.stack([m.feedforward(X).argmax(axis=1) for m in models])
    assert len({tuple(p) for p in preds}) > 1, "the models should disagree somewhere"
    for k in (2, 3, 4, 5):  # even counts have ties
        assert np.array_equal(sb.vote(models[:k], X), numpy_plurality(preds[:k]))
    assert np.array_equal(sb.vote(models[::-1], X), sb.vote(models, X))  # the order of the models does not matter


def test_ties_go_to_the_smallest_class():
    preds = np.array([[2, 0, 1, 1], [1, 2, 1, 0], [0, 1, 2, 2]])
    assert plurality(preds, 3).tolist() == [0, 0, 1, 0]
    assert plurality(preds[:2], 3).tolist() == [1, 0, 1, 0]


def test_report_gives_each_member_and_the_ensemble(models, tmp_path):
    X, y = kit.VALID
    paths = []
    for i, m in enumerate(models[:3]):
        m.save(tmp_path / f"m{i}")
        paths.append(tmp_path / f"m{i}")
    rep = vote_report(paths, (X, y))  # from files, through sb.load
    assert [name for name, _ in rep.members] == [str(p) for p in paths]
    for (_, acc), m in zip(rep.members, models):
        assert acc == m.evaluate((X, y))
    assert rep.accuracy == float(np.mean(sb.vote(models[:3], X) == y)) and rep.n == len(y)
    onehot = np.eye(kit.N_OUT)[y]
    assert vote_report(models[:3], (X, onehot)).accuracy == rep.accuracy
    assert "ensemble of 3" in str(rep)


def test_models_must_agree_on_inputs_and_classes(models):
    other = sb.Network([kit.N_IN, 4], activation=sb.sigmoid, cost=sb.quadratic).compile(seed=0, backend="numpy")
    with pytest.raises(ValueError, match="same inputs and classes"):
        sb.vote([models[0], other], kit.VALID[0])
    with pytest.raises(ValueError, match="at least one"):
        sb.vote([], kit.VALID[0])
    with pytest.raises(ValueError, match="Model or the path"):
        sb.vote([3], kit.VALID[0])
