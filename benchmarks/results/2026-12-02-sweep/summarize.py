"""The tables, plots and summary of run.sh (and timing.sh), from the results files.

Usage: python summarize.py [FOLDER]   (default: this file's folder).  Writes table.md, sweep.png (the η-λ sweep:
best validation accuracy against η per λ, and the curves of the 5 best trials), summary.json."""
import json
import sys
from pathlib import Path

from symbp.sweep import best_trial, load_results, markdown_table, plot_sweep

here = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent
w2, w1 = load_results(here / "sweep-w2"), load_results(here / "sweep-w1")
# the same trials (same keys) with the same per-epoch accuracies, whether run on 1 or 2 workers
same = {r["key"]: r["evaluation_accuracy"] for r in w2} == {r["key"]: r["evaluation_accuracy"] for r in w1}
etas = sorted({r["values"]["eta"] for r in w2})
lmbdas = sorted({r["values"]["lmbda"] for r in w2})
cell = {}
for r in w2:
    cell.setdefault((r["values"]["eta"], r["values"]["lmbda"]), []).append(r["best_accuracy"])
pivot = ["| η \\ λ | " + " | ".join(f"{l:g}" for l in lmbdas) + " |", "|---" * (len(lmbdas) + 1) + "|"]
for e in etas:
    pivot.append(f"| {e:g} | " + " | ".join(
        f"{100 * sum(cell[e, l]) / len(cell[e, l]):.2f}%" for l in lmbdas) + " |")
best = best_trial(w2)
text = ("Best validation accuracy (mean over seeds 0 and 1) of [784, 30, 10] sigmoid, cross-entropy, mini-batch 10, "
        "30 epochs:\n\n" + "\n".join(pivot) + "\n\nEvery trial, best first (validation accuracy):\n\n"
        + markdown_table(w2))
(here / "table.md").write_text(text)
plot = plot_sweep(w2, here / "sweep.png", title="MNIST, [784, 30, 10] sigmoid, cross-entropy, mini-batch 10, 30 epochs")


def wall(folder: Path) -> float | None:
    for line in (folder / "sweep.out").read_text().splitlines():
        if line.startswith("sweep wall time"):
            return float(line.split()[3])
    return None


def vote_numbers(path: Path) -> dict:
    members, ensemble = {}, None
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) == 2 and cells[1].endswith("%"):
            if "plurality vote" in cells[0]:
                ensemble = float(cells[1][:-1])
            else:
                members[cells[0]] = float(cells[1][:-1])
    return {"members_test_accuracy_pct": members, "ensemble_test_accuracy_pct": ensemble}


summary = {"best": {k: best[k] for k in ("values", "seed", "best_epoch", "best_accuracy", "key")},
           "trials": len(w2),
           "sweep_wall_seconds": {"2 workers": wall(here / "sweep-w2"), "1 worker": wall(here / "sweep-w1")},
           "1 and 2 workers give the same histories": same,
           "trial_seconds_sum": {"2 workers": round(sum(r["wall_seconds"] for r in w2), 1),
                                 "1 worker": round(sum(r["wall_seconds"] for r in w1), 1)},
           "vote": vote_numbers(here / "vote5" / "vote.out")}
timing = here / "timing"
if timing.is_dir():  # timing.sh: a smaller sweep, 2 and 1 workers alternately
    runs = []
    for folder in sorted(p for p in timing.iterdir() if p.is_dir()):
        recs = load_results(folder)
        runs.append({"run": folder.name, "sweep_wall_seconds": wall(folder),
                     "trial_seconds_sum": round(sum(r["wall_seconds"] for r in recs), 1), "trials": len(recs)})
    summary["interleaved_timing"] = runs
(here / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
print(text)
print(f"wrote {plot}")
print(json.dumps(summary, indent=2, ensure_ascii=False))
