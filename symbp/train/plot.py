"""Training curves as a PNG (matplotlib, an optional extra: ``pip install symbp[plot]``).

Takes: a ``History`` from ``Model.fit``.  Gives: a PNG with accuracy and cost per epoch.
"""

from __future__ import annotations

from pathlib import Path


def plot_history(hist, path, title: str = "") -> Path:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError("--plot needs matplotlib: pip install 'symbp[plot]'") from None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ep = hist.epochs
    if hist.evaluation_accuracy:
        ax1.plot(ep, [100 * v for v in hist.evaluation_accuracy], "o-", ms=3, label="evaluation")
    if hist.training_accuracy:
        ax1.plot(ep, [100 * v for v in hist.training_accuracy], "s-", ms=3, label="training")
    ax1.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    if hist.evaluation_cost:
        ax2.plot(ep, hist.evaluation_cost, "o-", ms=3, label="evaluation")
    if hist.training_cost:
        ax2.plot(ep, hist.training_cost, "s-", ms=3, label="training")
    ax2.set(xlabel="epoch", ylabel="cost", title="Cost")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
