"""What people look at after a sweep: the table, the best configuration, the plots.

Takes: the trials' dicts that ``sweep`` returns (or the records of ``load_results(folder)``).  Gives:

- ``ranked(results)``: the trials sorted by best accuracy, best first (ties: fewer epochs to the best, then
  grid order); trials without an accuracy last;
- ``best_trial(results)``: the first of them, or None;
- ``grid_names(results)``: the names the grid varied, in grid order;
- ``rich_table(results, top=None)`` and ``markdown_table(results, top=None)``: one row per trial, sorted (the
  varied names, seed, best accuracy and its epoch, final accuracy, wall time);
- ``plot_sweep(results, path)``: a figure of the book's kind (chapter 3), written where ``path`` says (PNG when it
  has no suffix; matplotlib, the ``plot`` extra): left, the best accuracy against η on a log axis, one line per λ
  (and per value of any other name the grid varied besides η and the seed), the mean over seeds with their range
  as error bars; right, the evaluation accuracy per epoch of the ``curves`` best trials.

A trial's texts (grid names and values, read back from a results file that anyone may have edited) are shown as
text, never interpreted: control characters (terminal escapes, ...) are written as ``\\x1b`` and the like, the
rich table takes them as ``Text`` (no ``[markup]``), the Markdown table escapes ``|``, and the plot's labels
escape ``$`` (no mathtext).
"""

from __future__ import annotations

import math
from collections import defaultdict

#: the fields of a trial that are not grid values
_FIELDS = ("seed", "epochs", "best_epoch", "best_accuracy", "evaluation_accuracy", "history", "wall_seconds",
           "compile_seconds", "model", "key", "params", "diverged", "worker", "warnings", "values", "format",
           "version", "check", "finished")


def _values(trial: dict) -> dict:
    if isinstance(trial.get("values"), dict):
        return trial["values"]
    return {k: v for k, v in trial.items() if k not in _FIELDS}


def grid_names(results) -> list[str]:
    """The names whose values differ between trials (seed excluded), in the order the trials give them."""
    names: list[str] = []
    for trial in results:
        for name in _values(trial):
            if name not in names:
                names.append(name)
    return [n for n in names if len({repr(_values(t).get(n)) for t in results}) > 1] or names


def ranked(results) -> list[dict]:
    """Sorted by best accuracy (highest first); ties by the earlier best epoch, then by grid order."""
    indexed = list(enumerate(results))

    def order(item):
        i, t = item
        acc = t.get("best_accuracy")
        return (acc is None, -(acc or 0.0), t.get("best_epoch") or 0, i)

    return [t for _, t in sorted(indexed, key=order)]


def best_trial(results) -> dict | None:
    """The trial with the highest best accuracy, or None when there is none."""
    top = ranked(results)
    return top[0] if top and top[0].get("best_accuracy") is not None else None


def safe_text(text) -> str:
    """``str(text)`` with every non-printable character (terminal escapes, other control and format characters)
    written as its Python escape (``\\x1b``, ``\\u202e``): safe to print on a terminal."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def _fmt(v) -> str:
    if isinstance(v, dict) and "$symbp" in v and isinstance(v.get("config"), dict):  # sb.L1(5) and the like
        config = v["config"]
        name = safe_text(config.get("name", str(v["$symbp"]).rpartition(":")[2]))
        rest = ", ".join(f"{safe_text(k)}={_fmt(x)}" for k, x in config.items() if k not in ("name", "expr"))
        return f"{name}({rest})" if rest else name
    return f"{v:g}" if isinstance(v, float) else safe_text(v)


def _rows(results, top):
    names = grid_names(results)
    header = [*(safe_text(n) for n in names), "seed", "best accuracy", "best epoch", "final", "wall s"]
    rows = []
    for t in ranked(results)[:top]:
        acc = t.get("evaluation_accuracy") or []
        final = _pct(acc[-1]) if acc else "-"
        if t.get("diverged"):
            final += " (diverged)"
        wall = t.get("wall_seconds")
        rows.append([*(_fmt(_values(t).get(n)) for n in names), safe_text(t.get("seed")),
                     _pct(t.get("best_accuracy")), safe_text(t.get("best_epoch") or "-"), final,
                     "-" if wall is None else f"{wall:.1f}"])
    return header, rows


def rich_table(results, top: int | None = None, title: str | None = None):
    """A ``rich.table.Table`` of the trials, best first (``top``: only that many rows)."""
    from rich.table import Table
    from rich.text import Text

    header, rows = _rows(results, top)
    table = Table(title=None if title is None else Text(safe_text(title)))
    for i, name in enumerate(header):
        table.add_column(Text(name), justify="left" if i < len(header) - 5 else "right")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # Text: taken as it is, no [markup]
    return table


def markdown_table(results, top: int | None = None) -> str:
    """The same table as Markdown."""
    header, rows = _rows(results, top)

    def cells(row):
        return " | ".join(c.replace("|", "\\|") for c in row)

    lines = ["| " + cells(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + cells(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def describe(trial: dict) -> str:
    """``eta=0.5, lmbda=5, seed=0``: a trial's grid values and seed."""
    return ", ".join([*(f"{safe_text(k)}={_fmt(v)}" for k, v in _values(trial).items()),
                      f"seed={safe_text(trial.get('seed'))}"])


def _label(text: str) -> str:
    """A text as a matplotlib label shows it: ``$`` escaped (no mathtext)."""
    return safe_text(text).replace("$", "\\$")


def plot_sweep(results, path, curves: int = 5, title: str = "") -> object:
    """Draw the sweep (see the module docstring) to ``path`` and return the path written."""
    from symbp.train.plot import open_figure, plot_path, save_figure

    plot_path(path)  # a bad file name is refused before anything else
    results = list(results)
    if not results:
        raise ValueError("no trials to plot")
    names = grid_names(results)
    others = [n for n in names if n != "eta"]
    if "lmbda" in others:
        others.remove("lmbda")
        others.insert(0, "lmbda")
    lines: dict[tuple, dict] = defaultdict(lambda: defaultdict(list))
    for t in results:
        values = _values(t)
        eta = values.get("eta", (t.get("params") or {}).get("eta"))
        if eta is None or t.get("best_accuracy") is None or isinstance(eta, bool):
            continue
        try:
            eta = float(eta)
        except (TypeError, ValueError):
            continue  # not a learning rate: nothing to draw on the η axis
        if not (math.isfinite(eta) and eta > 0):
            continue
        label = tuple((n, values.get(n)) for n in others)
        lines[label][eta].append(100 * t["best_accuracy"])
    path, plt, fig, (ax1, ax2) = open_figure(path, 1, 2, size=(12, 4.5))
    try:
        greek = {"lmbda": "λ", "eta": "η"}
        for label, by_eta in sorted(lines.items(), key=lambda kv: repr(kv[0])):
            etas = sorted(by_eta)
            means = [sum(by_eta[e]) / len(by_eta[e]) for e in etas]
            low = [m - min(by_eta[e]) for m, e in zip(means, etas)]
            high = [max(by_eta[e]) - m for m, e in zip(means, etas)]
            text = ", ".join(f"{greek.get(n, n)} = {_fmt(v)}" for n, v in label) or "all trials"
            ax1.errorbar(etas, means, yerr=[low, high] if any(low) or any(high) else None, marker="o", ms=4,
                         capsize=3, label=_label(text))
        ax1.set_xscale("log")
        etas = sorted({e for by_eta in lines.values() for e in by_eta})
        if 1 < len(etas) <= 12:  # the values swept, as the axis's ticks
            ax1.set_xticks(etas, [f"{e:g}" for e in etas])
            ax1.minorticks_off()
        ax1.set(xlabel="learning rate η (log scale)", ylabel="best accuracy (%)",
                title="Best accuracy against η" + (" (mean over seeds, range as bars)" if any(
                    len(v) > 1 for d in lines.values() for v in d.values()) else ""))
        for t in [t for t in ranked(results) if t.get("evaluation_accuracy")][:curves]:
            acc = t["evaluation_accuracy"]
            ax2.plot(range(1, len(acc) + 1), [100 * v for v in acc], "o-", ms=3, label=_label(describe(t)))
        ax2.set(xlabel="epoch", ylabel="evaluation accuracy (%)", title=f"The {curves} best trials")
        for ax in (ax1, ax2):
            ax.grid(alpha=0.3)
            if ax.lines or ax.containers:
                ax.legend(fontsize=8)
    except BaseException:
        plt.close(fig)
        raise
    return save_figure(plt, fig, path, _label(title) if title else title)
