"""Level shift: the median of the last few points against the median of the window before them."""

from __future__ import annotations

import math
from collections import deque
from typing import ClassVar

from mlctl.core.params import Param
from mlctl.detect.base import register
from mlctl.detect.detectors._common import (
    COMMON_PARAMS,
    ColumnModel,
    ColumnwiseDetector,
    SortedWindow,
    gap,
    spread_floor,
)


class _Model(ColumnModel):
    __slots__ = ("recent", "ref", "short", "min_points", "norm")

    def __init__(self, short: int, long: int, min_points: int) -> None:
        self.short = short
        self.recent: deque[float] = deque()
        self.ref = SortedWindow(long)
        self.min_points = min_points
        # the spread of the median of `short` Gaussian points, in standard deviations
        self.norm = 1.2533 / short**0.5 if short > 1 else 1.0

    def surprise(self, x: float) -> float:
        if len(self.ref) < self.min_points:
            return 0.0
        last = sorted([*self.recent, x])
        m = len(last)
        now = last[m // 2] if m % 2 else 0.5 * (last[m // 2 - 1] + last[m // 2])
        if not math.isfinite(now):  # the sum overflowed
            now = 0.5 * last[m // 2 - 1] + 0.5 * last[m // 2]
        med = self.ref.median()
        spread = max(self.ref.robust_spread(), spread_floor(med))
        return gap(now, med, spread * self.norm)

    def learn(self, x: float) -> None:
        self.recent.append(x)
        if len(self.recent) >= self.short:
            self.ref.push(self.recent.popleft())


@register
class LevelShift(ColumnwiseDetector):
    """Compares the median of the last ``short`` points (the current one included) with the median
    of the ``long`` points before them, in robust standard deviations of that reference window
    (scaled to the spread of a median of ``short`` points).

    A single spike does not move a median of several points, so this fires on sustained shifts
    of level, ``short // 2 + 1`` points after they start, and adapts once the reference window
    has moved past the shift.
    """

    name = "changepoint"
    summary = "level shift: recent median against the reference window before it"
    params: ClassVar[dict[str, Param]] = {
        "short": Param(int, 5, "points in the recent median (current one included)", low=1, high=10_000),
        "long": Param(int, 500, "points in the reference window", low=10, high=1_000_000),
        "min_points": Param(int, 30, "reference points needed before anything is scored", low=2, high=1_000_000),
        **COMMON_PARAMS,
    }
    default_threshold = 0.19
    short: int
    long: int
    min_points: int

    def _new_model(self) -> ColumnModel:
        return _Model(self.short, self.long, self.min_points)
