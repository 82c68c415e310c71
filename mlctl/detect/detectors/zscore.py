"""Robust rolling z-score: distance from the rolling median in robust standard deviations."""

from __future__ import annotations

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
    __slots__ = ("win", "min_points")

    def __init__(self, window: int, min_points: int) -> None:
        self.win = SortedWindow(window)
        self.min_points = min_points

    def surprise(self, x: float) -> float:
        if len(self.win) < self.min_points:
            return 0.0
        med = self.win.median()
        spread = max(self.win.robust_spread(), spread_floor(med))
        return gap(x, med, spread)

    def learn(self, x: float) -> None:
        self.win.push(x)


@register
class RobustZScore(ColumnwiseDetector):
    """``|x - median| / robust spread`` over the last ``window`` points of each metric.

    The spread is the interquartile range / 1.349 (the standard deviation for Gaussian data),
    falling back to the mean absolute deviation when most values are equal. Catches points
    outside the recent range of values; blind to breaks in a pattern that stay inside it.
    """

    name = "zscore"
    summary = "robust rolling z-score (median and interquartile range of a sliding window)"
    params: ClassVar[dict[str, Param]] = {
        "window": Param(int, 1000, "points in the rolling window", low=10, high=1_000_000),
        "min_points": Param(int, 30, "points learned before anything is scored", low=2, high=1_000_000),
        **COMMON_PARAMS,
    }
    default_threshold = 0.5
    window: int
    min_points: int

    def _new_model(self) -> ColumnModel:
        return _Model(self.window, self.min_points)
