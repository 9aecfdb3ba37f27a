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


def test_models_must_agree_on_the_whole_input_shape(models):
    """Not only the flat width: a model of (4, 14, 14) inputs is not voted on 1×28×28 images."""
    from symbp.sweep.cli import IMAGE_SHAPE
    from symbp.sweep.vote import check_ensemble

    def image_model(shape):
        net = sb.Network([sb.Input(shape), sb.Dense(kit.N_OUT, sb.softmax)], cost=sb.cross_entropy)
        return net.compile(seed=0, backend="numpy")

    odd, mnist = image_model((4, 14, 14)), image_model((1, 28, 28))
    flat = sb.Network([784, kit.N_OUT], activation=sb.sigmoid, cost=sb.quadratic).compile(seed=0, backend="numpy")
    X = np.random.default_rng(0).random((6, 1, 28, 28))
    with pytest.raises(ValueError, match=r"model 1 takes 4×14×14, the images are 1×28×28"):
        sb.vote([odd], X)
    with pytest.raises(ValueError, match=r"model 2 takes 1×28×28, model 1 4×14×14: an ensemble needs the same"):
        sb.vote([odd, mnist], X.reshape(6, -1))  # the same 784 values per row, not the same inputs
    with pytest.raises(ValueError, match=r"model 1 takes 4×14×14, the images are 1×28×28"):
        check_ensemble([odd], ["model 1"], IMAGE_SHAPE)  # what symbp vote checks against MNIST
    assert sb.vote([mnist, flat], X).shape == (6,)  # an image model and a flat one of 784 inputs: the same rows
    check_ensemble([mnist, flat], ["a", "b"], IMAGE_SHAPE)


def test_a_refusal_names_the_models_by_their_paths(models, tmp_path):
    other = sb.Network([kit.N_IN, 4], activation=sb.sigmoid, cost=sb.quadratic).compile(seed=0, backend="numpy")
    models[0].save(tmp_path / "three")
    other.save(tmp_path / "four")
    with pytest.raises(ValueError) as info:
        vote_report([tmp_path / "three", tmp_path / "four"], kit.VALID)
    msg = str(info.value)
    assert f"{tmp_path / 'four'} gives 4 classes, {tmp_path / 'three'} 3" in msg and "model 2" not in msg


def _nan_model(net):
    m = net.compile(seed=9)
    m._params[0][0][0, 0] = np.nan  # as a diverged training leaves it (set_params itself refuses NaN)
    return m


def test_diverged_models_are_left_out_with_a_warning(models, tmp_path):
    from symbp.sweep import store

    X, y = kit.VALID
    with pytest.warns(RuntimeWarning, match=r"model 2 has NaN or infinite parameters .*: left out of the vote"):
        rep = vote_report([models[0], _nan_model(kit.network()), models[1]], (X, y))
    assert [name for name, _ in rep.members] == ["model 1", "model 3"]
    with pytest.raises(ValueError, match="no model to vote: all 1 diverged"), pytest.warns(RuntimeWarning):
        sb.vote([_nan_model(kit.network())], X)
    # a sweep's model recorded as diverged (its saved parameters are the last good ones)
    keys = [f"{i:020x}" for i in range(3)]
    with store.ResultStore(tmp_path) as s:
        for k, m, diverged in zip(keys, models, [None, "epoch 2 diverged: try a smaller eta", None]):
            m.save(s.model_path(k))
            s.append({"format": store.RECORD_FORMAT, "version": store.RECORD_VERSION, "key": k, "values": {},
                      "seed": 0, "params": {}, "history": {}, "evaluation_accuracy": [0.5], "best_epoch": 1,
                      "best_accuracy": 0.5, "model": f"models/{k}", "diverged": diverged})
    paths = [tmp_path / "models" / k for k in keys]
    with pytest.warns(RuntimeWarning, match=rf"{paths[1]} is a trial recorded as diverged in .*results.jsonl"):
        rep = vote_report(paths, (X, y))
    assert [name for name, _ in rep.members] == [str(paths[0]), str(paths[2])]


def test_the_number_of_models_is_bounded_before_loading(models, tmp_path, monkeypatch):
    import importlib

    vote_module = importlib.import_module("symbp.sweep.vote")  # the module (symbp.sweep.vote is the function)
    assert vote_module.MAX_MODELS == 50
    monkeypatch.setattr(vote_module, "MAX_MODELS", 2)
    with pytest.raises(ValueError, match="vote takes at most 2 models, got 3"):
        sb.vote([tmp_path / "a", tmp_path / "b", tmp_path / "c"], kit.VALID[0])  # none of them exists
