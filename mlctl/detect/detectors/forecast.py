"""Forecast residual: an online Holt (level + trend) forecast, scored by its residual."""

from __future__ import annotations

import math
from typing import ClassVar

from mlctl.core.params import Param
from mlctl.detect.base import register
from mlctl.detect.detectors._common import (
    COMMON_PARAMS,
    ColumnModel,
    ColumnwiseDetector,
    gap,
    saturate,
    spread_floor,
)


class _Model(ColumnModel):
    __slots__ = ("alpha", "beta", "gamma", "clip", "min_points", "n", "level", "trend", "mae")

    def __init__(self, alpha: float, beta: float, gamma: float, clip: float, min_points: int) -> None:
        self.alpha, self.beta, self.gamma, self.clip, self.min_points = alpha, beta, gamma, clip, min_points
        self.n = 0
        self.level = 0.0
        self.trend = 0.0
        self.mae = 0.0

    def surprise(self, x: float) -> float:
        if self.n < self.min_points:
            return 0.0
        pred = saturate(self.level + self.trend)
        spread = max(1.2533 * self.mae, spread_floor(pred))
        return gap(x, pred, spread)

    def learn(self, x: float) -> None:
        if self.n == 0:
            self.level = x
            self.n = 1
            return
        pred = self.level + self.trend
        err = abs(x - pred)
        if self.n >= self.min_points and self.mae > 0.0:
            err = min(err, self.clip * self.mae)  # one outlier moves the scale only so much
        # the scale learns fast at first (a running mean), then exponentially
        g = max(self.gamma, 1.0 / self.n)
        self.mae += g * (err - self.mae)
        level = self.alpha * x + (1.0 - self.alpha) * pred
        self.trend = self.beta * (level - self.level) + (1.0 - self.beta) * self.trend
        self.level = level
        self.n += 1
        if not (math.isfinite(self.level) and math.isfinite(self.trend) and math.isfinite(self.mae)):
            self.level, self.trend, self.mae, self.n = x, 0.0, 0.0, 1  # overflow on huge inputs: restart


@register
class HoltResidual(ColumnwiseDetector):
    """Holt's linear exponential smoothing, updated online; the surprise is the one-step-ahead
    residual over its exponentially weighted mean absolute size.

    A cheap online equivalent of a Holt-Winters forecaster without the seasonal term (the
    ``seasonal`` detector covers seasonality). Catches sudden jumps and spikes relative to the
    recent dynamics; adapts to slow drifts.
    """

    name = "forecast"
    summary = "one-step Holt forecast residual over its running mean absolute error"
    params: ClassVar[dict[str, Param]] = {
        "alpha": Param(float, 0.5, "level smoothing (1: the forecast is the last value)", low=1e-4, high=1.0),
        "beta": Param(float, 0.01, "trend smoothing (0: no trend)", low=0.0, high=1.0),
        "gamma": Param(float, 0.01, "smoothing of the residual scale", low=1e-5, high=1.0),
        "clip": Param(
            float, 5.0, "residuals above clip x scale count as clip x scale when learning the scale", low=1.0, high=1e6
        ),
        "min_points": Param(int, 30, "points learned before anything is scored", low=2, high=1_000_000),
        **COMMON_PARAMS,
    }
    default_threshold = 0.46
    alpha: float
    beta: float
    gamma: float
    clip: float
    min_points: int

    def _new_model(self) -> ColumnModel:
        return _Model(self.alpha, self.beta, self.gamma, self.clip, self.min_points)
