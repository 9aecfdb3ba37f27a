"""Training curves as an image (matplotlib, an optional extra: ``pip install symbp[plot]``).

Takes: a ``History`` from ``Model.fit``, a file name and the name of the evaluation data (``"test"``,
``"validation"``: the legend's label).  Gives: a figure with accuracy and cost per epoch (ticks on whole epochs),
in the format the file name's suffix names (PNG if it has none: ``curves`` is written as ``curves.png``).
``plot_path`` gives the path that will really be written, or a ``ValueError``, without drawing anything;
``open_figure`` and ``save_figure`` are the opening and closing every plot of symbp shares.
"""

from __future__ import annotations

import os
from pathlib import Path

#: What is assumed writable when matplotlib cannot be imported to say (its own list is used when it can).
FALLBACK_FORMATS = ("png", "pdf", "svg")
DEFAULT_FORMAT = "png"


def supported_formats() -> tuple[str, ...]:
    """The file suffixes (without the dot, lower case) that matplotlib can write."""
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        return FALLBACK_FORMATS
    return tuple(FigureCanvasBase.get_supported_filetypes())


def plot_path(path: str | os.PathLike[str]) -> Path:
    """The path ``plot_history`` writes for ``path``: ``path`` itself if its suffix names a format matplotlib
    can write (any case), ``path`` + ``.png`` if it has no suffix.  ``ValueError`` for an empty path, one
    that ends in a separator (a folder) and a suffix that matplotlib cannot write."""
    text = os.fspath(path)
    if not text:
        raise ValueError("empty path: expected a file name such as curves.png")
    if text.endswith(os.sep) or (os.altsep and text.endswith(os.altsep)):
        raise ValueError(f"{text} names a folder: expected a file name such as {text}curves.png")
    p = Path(text)
    if p.name in ("", ".", ".."):
        raise ValueError(f"{text} names a folder: expected a file name such as {p / 'curves.png'}")
    if not p.suffix:
        return p.with_name(f"{p.name}.{DEFAULT_FORMAT}")
    fmt = p.suffix[1:].lower()
    formats = supported_formats()
    if fmt not in formats:
        raise ValueError(f"{text}: cannot write .{p.suffix[1:]} files; the suffix must be one of "
                         f"{', '.join('.' + f for f in formats)} (or none, for .{DEFAULT_FORMAT})")
    return p


def open_figure(path, nrows: int = 1, ncols: int = 1, size=(6.5, 4.2)):
    """(the path ``plot_path(path)``, pyplot, a figure, its axes as a flat list): matplotlib on its Agg backend,
    or a ``ValueError`` saying how to install it."""
    path = plot_path(path)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError("plots need matplotlib: pip install 'symbp[plot]'") from None
    fig, axes = plt.subplots(nrows, ncols, figsize=size, squeeze=False)
    return path, plt, fig, list(axes.ravel())


def save_figure(plt, fig, path: Path, title: str = "") -> Path:
    """Title, lay out and write ``fig`` to ``path`` in its suffix's format (parent folders created); always
    closes the figure.  Returns ``path``."""
    try:
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110, format=path.suffix[1:].lower())
    finally:
        plt.close(fig)
    return path


def integer_epochs(ax) -> None:
    """Ticks on whole numbers only on ``ax``'s x axis (epochs: no 2.5 on a run of 5 epochs)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def draw_history(ax_accuracy, ax_cost, hist, evaluation_label: str = "evaluation") -> None:
    """Draw ``hist``'s accuracy and cost per epoch on two axes; the evaluation data's curves are labelled
    ``evaluation_label`` (what that data is: ``"test"``, ``"validation"``), the training data's ``"training"``."""
    ep = hist.epochs
    if hist.evaluation_accuracy:
        ax_accuracy.plot(ep, [100 * v for v in hist.evaluation_accuracy], "o-", ms=3, label=evaluation_label)
    if hist.training_accuracy:
        ax_accuracy.plot(ep, [100 * v for v in hist.training_accuracy], "s-", ms=3, label="training")
    ax_accuracy.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    if hist.evaluation_cost:
        ax_cost.plot(ep, hist.evaluation_cost, "o-", ms=3, label=evaluation_label)
    if hist.training_cost:
        ax_cost.plot(ep, hist.training_cost, "s-", ms=3, label="training")
    ax_cost.set(xlabel="epoch", ylabel="cost", title="Cost")
    for ax in (ax_accuracy, ax_cost):
        ax.grid(alpha=0.3)
        integer_epochs(ax)
        if ax.lines:
            ax.legend()


def plot_history(hist, path, title: str = "", evaluation_label: str = "evaluation") -> Path:
    """Draw ``hist`` (see ``draw_history``) to ``plot_path(path)`` (its parent folders are created) and return
    that path."""
    path, plt, fig, (ax1, ax2) = open_figure(path, 1, 2, size=(11, 4))
    try:
        draw_history(ax1, ax2, hist, evaluation_label)
    except BaseException:
        plt.close(fig)
        raise
    return save_figure(plt, fig, path, title)
