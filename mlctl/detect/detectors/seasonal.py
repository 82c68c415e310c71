"""Seasonal median: the value expected from the same phase of the last few cycles."""

from __future__ import annotations

from collections import deque
from typing import ClassVar

import numpy as np

from mlctl.core.errors import UsageError
from mlctl.core.params import Param
from mlctl.detect.base import register
from mlctl.detect.detectors._common import (
    COMMON_PARAMS,
    ColumnModel,
    ColumnwiseDetector,
    SortedWindow,
    gap,
    saturate,
    spread_floor,
)


def estimate_period(y: np.ndarray, *, min_period: int, max_period: int, min_acf: float) -> int:
    """The lag of the first local autocorrelation peak within 90% of the highest, in [min_period, max_period], or 0.

    Uses the detrended series; a peak counts only if its autocorrelation reaches ``min_acf`` and
    at least 2.5 cycles of data back it.
    """
    n = len(y)
    top = min(max_period, int(n / 2.5))
    if top < min_period + 1:
        return 0
    t = np.arange(n, dtype=float)
    with np.errstate(all="ignore"):
        y = y / max(float(np.max(np.abs(y))), 1e-300)  # scaled first: huge values must not overflow
        y = y - np.polyval(np.polyfit(t, y, 1), t)
        var = float(np.dot(y, y))
    if not var > 1e-12 * n or not np.isfinite(var):  # constant, up to rounding
        return 0
    size = 1 << int(np.ceil(np.log2(2 * n)))
    f = np.fft.rfft(y, size)
    acf = np.fft.irfft(f * np.conj(f), size)[: top + 2] / var
    acf = acf * n / (n - np.arange(len(acf)))  # unbiased: longer lags have fewer pairs
    lags = np.arange(max(min_period, 1), top + 1)
    peak = (acf[lags] >= acf[lags - 1]) & (acf[lags] >= acf[lags + 1]) & (acf[lags] >= min_acf)
    if not peak.any():
        return 0
    cand = lags[peak]
    best = float(acf[cand].max())
    return int(cand[np.argmax(acf[cand] >= 0.9 * best)])  # the shortest of the near-best (not a multiple)


class _Model(ColumnModel):
    __slots__ = ("det", "hist", "n", "period", "resid", "cache")

    def __init__(self, det: SeasonalMedian) -> None:
        self.det = det
        self.hist: deque[float] = deque(maxlen=det.cycles * det.max_period + 1 + det.history)
        self.n = 0
        self.period = 0
        self.resid = SortedWindow(det.window)
        self.cache = (-1, 0.0)  # (n, expected value) so that score then learn computes it once

    def _expected(self) -> float:
        if self.cache[0] == self.n:
            return self.cache[1]
        value = self._compute_expected()
        self.cache = (self.n, value)
        return value

    def _compute_expected(self) -> float:
        h, p = self.hist, self.period
        if p:
            n = len(h)
            vals = [
                h[n - k * p + j]
                for k in range(1, self.det.cycles + 1)
                for j in (-1, 0, 1)
                if k * p - j <= n and k * p - j >= 1
            ]
            if vals:
                vals.sort()
                return vals[len(vals) // 2]
        # no seasonality: the median of the last few points
        last = sorted(h[i] for i in range(max(0, len(h) - 3), len(h)))
        return last[len(last) // 2]

    def surprise(self, x: float) -> float:
        if self.n < self.det.min_points or len(self.resid) < 2:
            return 0.0
        r = saturate(x - self._expected())
        center = self.resid.median()
        spread = max(self.resid.robust_spread(), spread_floor(x))
        return gap(r, center, spread)

    def learn(self, x: float) -> None:
        det = self.det
        if self.n >= 1:
            self.resid.push(saturate(x - self._expected()))
        self.hist.append(x)
        self.n += 1
        if self.n >= det.min_points and (self.n - det.min_points) % det.refresh == 0:
            y = np.fromiter(self.hist, dtype=float, count=len(self.hist))[-det.history :]
            period = estimate_period(y, min_period=det.min_period, max_period=det.max_period, min_acf=det.min_acf)
            if period != self.period:
                self.period = period
                self.cache = (-1, 0.0)
                self.resid = SortedWindow(det.window)  # residuals of another model: start over


@register
class SeasonalMedian(ColumnwiseDetector):
    """Compares each point with the median of the same phase (+-1 point) in the last ``cycles``
    cycles; the surprise is that residual in robust standard deviations of recent residuals.

    The period is estimated from the autocorrelation of the last ``history`` points, again every
    ``refresh`` points; a metric without clear seasonality is compared with the median of its last
    three points instead. A repeated pattern is not flagged; a break in it is, even when its
    values stay in the usual range.
    """

    name = "seasonal"
    summary = "seasonal median of past cycles (period from the autocorrelation), residual z-score"
    params: ClassVar[dict[str, Param]] = {
        "min_period": Param(int, 4, "shortest period considered", low=2, high=100_000),
        "max_period": Param(int, 1000, "longest period considered", low=3, high=100_000),
        "min_acf": Param(float, 0.3, "autocorrelation a period needs to count", low=0.0, high=1.0),
        "cycles": Param(int, 3, "past cycles the expected value is the median of", low=1, high=100),
        "history": Param(int, 3000, "points used to estimate the period", low=20, high=1_000_000),
        "refresh": Param(int, 250, "points between period estimates", low=1, high=1_000_000),
        "window": Param(int, 1000, "residuals kept for their median and spread", low=10, high=1_000_000),
        "min_points": Param(int, 30, "points learned before anything is scored", low=4, high=1_000_000),
        **COMMON_PARAMS,
    }
    default_threshold = 0.58
    min_period: int
    max_period: int
    min_acf: float
    cycles: int
    history: int
    refresh: int
    window: int
    min_points: int

    def _check_params(self) -> None:
        if self.min_period >= self.max_period:
            raise UsageError(f"detector {self.name!r}: min_period must be below max_period")

    def _new_model(self) -> ColumnModel:
        return _Model(self)
