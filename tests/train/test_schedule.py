"""The book's learning-rate schedule: halve η after ``patience`` epochs without a better evaluation accuracy,
stop when η would reach η₀/128; and ``fit`` records η per epoch and monitors only what it is asked for."""

from __future__ import annotations

import numpy as np
import pytest

import symbp as sb
from symbp.train.schedule import HalvingSchedule


def _drive(scores, eta=1.0, patience=2):
    sched, etas = HalvingSchedule(eta, patience), []
    for s in scores:
        etas.append(sched.eta)
        _, stop = sched.step(s)
        if stop:
            return etas, True
    return etas, False


def test_halves_at_the_right_epochs_and_stops_at_eta0_over_128():
    # improves for 3 epochs, then never again: with patience 2, η halves after epochs 5, 7, 9, ... and the
    # 7th halving (to η₀/128) stops training instead
    scores = [0.1, 0.2, 0.3] + [0.3] * 40
    etas, stopped = _drive(scores)
    assert stopped
    assert etas[:5] == [1.0] * 5
    assert etas[5:7] == [0.5] * 2 and etas[7:9] == [0.25] * 2
    assert etas[-2:] == [1 / 64] * 2 and len(etas) == 3 + 2 * 7
    assert min(etas) == 1 / 64


def test_an_improvement_resets_the_count():
    etas, stopped = _drive([0.1, 0.1, 0.2, 0.1, 0.3, 0.3, 0.3, 0.4], patience=2)
    assert not stopped
    assert etas == [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5]


def test_bad_schedule_arguments():
    with pytest.raises(ValueError, match="patience"):
        HalvingSchedule(1.0, 0)
    X, Y = np.zeros((4, 2)), np.array([0, 1, 0, 1])
    model = sb.Network([2, 2], activation=sb.sigmoid, cost=sb.quadratic).compile(backend="numpy", seed=0)
    with pytest.raises(ValueError, match="schedule must be"):
        model.fit((X, Y), epochs=1, batch_size=2, schedule="cosine")


def test_fit_records_eta_and_stops_on_the_schedule():
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(30, 3)), rng.integers(0, 2, 30)
    model = sb.Network([3, 2], activation=sb.sigmoid, cost=sb.cross_entropy).compile(backend="numpy", seed=0)
    # η = 0 never changes the accuracy: every epoch after the first is "no better"
    hist = model.fit((X, Y), epochs=100, batch_size=5, eta=0.0, evaluation_data=(X, Y), schedule="halve",
                     patience=1)
    assert hist.stopped_early and len(hist.eta) == 8 and hist.eta == [0.0] * 8
    hist = model.fit((X, Y), epochs=100, batch_size=5, eta=1e-9, evaluation_data=(X, Y), schedule="halve",
                     patience=1)
    assert hist.eta[:4] == [1e-9, 1e-9, 1e-9 / 2, 1e-9 / 4] and hist.stopped_early  # epoch 1 is an improvement


def test_fit_without_evaluation_data_only_trains():
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(30, 3)), rng.integers(0, 2, 30)
    model = sb.Network([3, 2], activation=sb.sigmoid, cost=sb.cross_entropy).compile(backend="numpy", seed=0)
    hist = model.fit((X, Y), epochs=2, batch_size=5, eta=0.5)
    assert hist.training_cost == [] and hist.evaluation_accuracy == [] and hist.epochs == [1, 2]
    assert sorted(model.cache_info["compiled"]) == ["sgd_epoch"]  # no evaluation kernel was even compiled
    hist = model.fit((X, Y), epochs=2, batch_size=5, eta=0.5, monitor_training=True)
    assert len(hist.training_cost) == len(hist.training_accuracy) == 2
