"""The book's learning-rate schedule (chapter 3, "Variations on SGD"): halve η whenever the evaluation accuracy
has not improved for ``patience`` epochs, and stop once η would fall to η₀/128.

Takes: η₀, ``patience`` and, after every epoch, that epoch's score (evaluation accuracy; higher is better).
Gives: ``HalvingSchedule.step(score) → (eta for the next epoch, stop?)``, a plain object that ``fit`` drives and
tests can drive with a scripted history.
"""

from __future__ import annotations

import math

SCHEDULES = ("halve",)
#: training stops when η would reach η₀ / FLOOR
FLOOR = 128


class HalvingSchedule:
    """η = η₀ until ``patience`` epochs in a row bring no better score; then η/2 (the count starts again),
    and so on; ``stop`` is True when η would reach η₀/128, so the last epochs run at η₀/64."""

    def __init__(self, eta: float, patience: int = 10):
        if isinstance(patience, bool) or int(patience) != patience or patience < 1:
            raise ValueError(f"patience must be a positive integer, got {patience!r}")
        self.eta0 = self.eta = float(eta)
        self.patience = int(patience)
        self.best = -math.inf
        self.since_best = 0
        self.halvings = 0

    def step(self, score: float) -> tuple[float, bool]:
        """Record one epoch's score; the η for the next epoch, and whether to stop instead."""
        if score > self.best:
            self.best, self.since_best = score, 0
            return self.eta, False
        self.since_best += 1
        if self.since_best < self.patience:
            return self.eta, False
        self.since_best = 0
        self.halvings += 1
        if 2 ** self.halvings >= FLOOR:
            return self.eta, True
        self.eta = self.eta0 / 2 ** self.halvings
        return self.eta, False


def make_schedule(schedule, eta: float, patience: int):
    """None, or the schedule named ``schedule`` (``"halve"``)."""
    if schedule is None:
        return None
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)} or None, got {schedule!r}")
    return HalvingSchedule(eta, patience)
