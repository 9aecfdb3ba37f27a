"""Test accuracy per epoch of every chapter-6 run in this folder (read from the NAME.log files, which every run
writes epoch by epoch, finished or not), one line each.  Usage: python plot.py; writes ch6.png beside it."""
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

here = Path(__file__).parent
LINE = re.compile(r"epoch (\d+): validation ([\d.]+)%, test ([\d.]+)%")
fig, ax = plt.subplots(figsize=(8, 4.5))
for log in sorted(here.glob("*.log")):
    rows = [tuple(map(float, m.groups())) for m in map(LINE.match, log.read_text().splitlines()) if m]
    if rows:
        epochs, _, test = zip(*rows)
        ax.plot(epochs, test, label=f"{log.stem} ({len(rows)} epochs)", lw=1.3)
ax.set(xlabel="epoch", ylabel="test accuracy (%)", ylim=(96.5, 99.75),
       title="Chapter 6 nets, symbp float32, mini-batch 10 (2026-12-02)")
ax.axhline(99.5, color="grey", ls=":", lw=1)
ax.grid(alpha=0.3)
ax.legend(fontsize=8, ncol=2, loc="lower right")
fig.tight_layout()
fig.savefig(here / "ch6.png", dpi=110)
