"""The training curves' labels: the evaluation data named by what it is, epochs ticked on whole numbers (checked on
matplotlib's figure objects, not on images)."""

from __future__ import annotations

import pytest

pytest.importorskip("matplotlib")

from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from symbp.train.model import History  # noqa: E402
from symbp.train.plot import draw_history  # noqa: E402


def _history(epochs=5):
    ep = list(range(1, epochs + 1))
    return History(epochs=ep, evaluation_accuracy=[0.5 + 0.01 * e for e in ep], evaluation_cost=[1.0 / e for e in ep],
                   training_accuracy=[0.6 + 0.01 * e for e in ep], training_cost=[0.9 / e for e in ep])


def _legends(fig):
    return [[t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes]


@pytest.mark.parametrize(("label", "shown"), [("test", "test"), ("validation", "validation"),
                                              (None, "evaluation")])
def test_legend_names_the_evaluation_data(label, shown):
    fig = Figure()
    ax1, ax2 = fig.subplots(1, 2)
    draw_history(ax1, ax2, _history(), *([] if label is None else [label]))
    assert _legends(fig) == [[shown, "training"], [shown, "training"]]


@pytest.mark.parametrize("epochs", [2, 5, 7, 60])
def test_epoch_ticks_are_whole_numbers(epochs):
    fig = Figure()
    ax1, ax2 = fig.subplots(1, 2)
    draw_history(ax1, ax2, _history(epochs))
    fig.canvas.draw()  # Figure() has an Agg canvas: the ticks are placed
    for ax in (ax1, ax2):
        locator = ax.xaxis.get_major_locator()
        assert isinstance(locator, MaxNLocator) and locator._integer
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), ticks


def test_command_line_labels_the_curves_by_eval(tmp_path, data_dir, monkeypatch, capsys):
    """``symbp train --eval validation --plot`` draws curves labelled validation (test by default)."""
    from symbp import cli
    from symbp.train import plot

    figures = []
    save = plot.save_figure

    def keep(plt, fig, path, title=""):
        figures.append(_legends(fig))
        return save(plt, fig, path, title)

    monkeypatch.setattr(plot, "save_figure", keep)
    for argv, shown in (([], "test"), (["--eval", "validation"], "validation")):
        assert cli.main(["train", "--limit", "100", "--epochs", "2", "--layers", "784,10", "--backend", "numpy",
                         "--monitor-training", "--data-dir", str(data_dir), "--no-progress",
                         "--plot", str(tmp_path / f"{shown}.png"), *argv]) == 0
        assert figures.pop() == [[shown, "training"], [shown, "training"]]
    capsys.readouterr()
