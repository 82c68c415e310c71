"""Building blocks shared by the built-in detectors: rolling robust statistics and per-column scoring.

Most detectors model each metric on its own. :class:`ColumnwiseDetector` holds one small
per-column model (a :class:`ColumnModel`) for each column of the input, asks each for its
*surprise* (a non-negative, z-score-like number: how many robust standard deviations the
point is away from what the model expected), takes the largest over the columns, and turns
it into a score in [0, 1].

Conventions kept by every detector built on it:

* non-finite input (NaN, +-inf) in a column is neither scored nor learned: that column's
  surprise is 0, so an all-NaN row scores 0 and leaves the state unchanged;
* a column whose recent history is constant has zero spread; a point equal to it scores 0 and
  a point away from it is maximally surprising (the spread floor keeps the division finite);
* values near the float limits (+-1e308) never overflow into inf or NaN: differences that
  would are taken in halves (:func:`gap`), quantiles interpolate without subtracting, and a
  spread too large for a float is capped at the largest one;
* *suppression*: once a point stands out, the same event keeps standing out for a while;
  only a surprise larger than every surprise of the last ``suppress`` points is reported at
  full strength, later ones are reduced by that recent maximum. One event then gives one
  high score, at its start, which is what alerting (and the NAB benchmark) rewards.
"""

from __future__ import annotations

import math
import sys
from abc import abstractmethod
from bisect import bisect_left, insort
from collections import deque
from typing import Any, ClassVar

import numpy as np

from mlctl.core.errors import UsageError
from mlctl.core.params import Param
from mlctl.detect.base import Detector

#: the surprise at which the score reaches 0.5; score = z / (z + Z_HALF)
Z_HALF = 4.0
#: surprises are capped here, so huge inputs give finite scores (and scores stay below 1)
Z_MAX = 1e6
#: floor of a robust spread, relative to the magnitude of the median, and absolute
REL_FLOOR = 1e-9
ABS_FLOOR = 1e-12
#: the largest float: values, differences and spreads saturate here instead of overflowing to inf
FLOAT_MAX = sys.float_info.max


def squash(z: float) -> float:
    """Map a surprise in [0, inf) to a score in [0, 1), monotonically."""
    if not z > 0.0:
        return 0.0
    z = min(z, Z_MAX)
    return z / (z + Z_HALF)


def spread_floor(center: float) -> float:
    return REL_FLOOR * abs(center) + ABS_FLOOR


def gap(x: float, center: float, spread: float) -> float:
    """``|x - center| / spread`` for finite inputs, also when ``x - center`` overflows (both near the
    float limits, of opposite signs): then it is computed in halves.

    >>> round(gap(-1.6e308, 3e307, 9e307), 6)  # 1.9e308 / 9e307, though 1.9e308 is no float
    2.111111
    """
    d = abs(x - center)
    if d == math.inf:
        return abs(x * 0.5 - center * 0.5) / (spread * 0.5)
    return d / spread


def saturate(x: float) -> float:
    """``x`` clipped to the finite floats (a difference that overflowed becomes +-FLOAT_MAX)."""
    return FLOAT_MAX if x > FLOAT_MAX else (-FLOAT_MAX if x < -FLOAT_MAX else x)


def per_column_row(detector: Any, x: Any) -> list[float]:
    """``x`` (a number, list or array) as a list of floats, creating ``detector.models_`` (one per column,
    from ``detector._new_model()``) at the first observation and checking the width afterwards."""
    if isinstance(x, float | int) and not isinstance(x, bool):
        row = [float(x)]
    elif isinstance(x, list):
        row = [float(v) for v in x]
    else:
        row = np.asarray(x, dtype=float).ravel().tolist()
    if detector.models_ is None:
        if not row:
            raise UsageError(f"detector {detector.name!r}: an observation needs at least one value")
        detector.models_ = [detector._new_model() for _ in row]
    elif len(row) != len(detector.models_):
        raise UsageError(
            f"detector {detector.name!r}: got {len(row)} values, expected {len(detector.models_)}",
            hint="every observation of a stream must have the same number of metrics",
        )
    return row


class SortedWindow:
    """The last ``size`` values, kept in arrival order and in sorted order (for quantiles)."""

    __slots__ = ("size", "buf", "sorted")

    def __init__(self, size: int) -> None:
        self.size = size
        self.buf: deque[float] = deque()
        self.sorted: list[float] = []

    def __len__(self) -> int:
        return len(self.buf)

    def push(self, x: float) -> None:
        if len(self.buf) == self.size:
            old = self.buf.popleft()
            del self.sorted[bisect_left(self.sorted, old)]
        self.buf.append(x)
        insort(self.sorted, x)

    def quantile(self, q: float) -> float:
        s = self.sorted
        pos = q * (len(s) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(s) - 1)
        frac = pos - lo
        q = s[lo] + (s[hi] - s[lo]) * frac
        if not math.isfinite(q):  # s[hi] - s[lo] overflowed: interpolate without subtracting
            q = s[lo] * (1.0 - frac) + s[hi] * frac
        return q

    def median(self) -> float:
        return self.quantile(0.5)

    def robust_spread(self) -> float:
        """A robust standard deviation: the interquartile range / 1.349, or the mean absolute
        deviation from the median when most values are equal (IQR 0)."""
        q1, q3 = self.quantile(0.25), self.quantile(0.75)
        iqr = q3 - q1
        if iqr == math.inf:  # the quartiles are near the float limits, of opposite signs
            return min((q3 * 0.5 - q1 * 0.5) / (1.349 * 0.5), FLOAT_MAX)
        if iqr > 0.0:
            return iqr / 1.349
        med = self.median()
        n = len(self.sorted)
        mad = sum(abs(v - med) for v in self.sorted) / n
        if mad == math.inf:
            mad = 2.0 * sum(abs(v * 0.5 - med * 0.5) / n for v in self.sorted)
        return min(1.2533 * mad, FLOAT_MAX)


class ColumnModel:
    """A per-column model: ``surprise`` reads the state, ``learn`` updates it. Inputs are finite floats."""

    @abstractmethod
    def surprise(self, x: float) -> float: ...

    @abstractmethod
    def learn(self, x: float) -> None: ...


COMMON_PARAMS: dict[str, Param] = {
    "suppress": Param(
        int,
        400,
        "points after a high surprise during which only a larger surprise is reported in full (0: no suppression)",
        low=0,
        high=100_000,
    ),
}


class ColumnwiseDetector(Detector):
    """One :class:`ColumnModel` per column; the row's surprise is the largest over its columns."""

    params: ClassVar[dict[str, Param]] = dict(COMMON_PARAMS)
    suppress: int

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._check_params()
        self.models_: list[ColumnModel] | None = None
        # running maximum of the last `suppress` surprises: a deque of (step, surprise), decreasing
        self.peaks_: deque[tuple[int, float]] = deque()
        self.steps_ = 0

    def _check_params(self) -> None:
        """Cross-parameter checks (raise UsageError); override when needed."""

    @abstractmethod
    def _new_model(self) -> ColumnModel: ...

    # ---------------------------------------------------------------- input handling

    def _row(self, x: Any) -> list[float]:
        return per_column_row(self, x)

    def _surprise(self, row: list[float]) -> float:
        best = 0.0
        for model, v in zip(self.models_ or (), row, strict=True):
            if math.isfinite(v):
                z = model.surprise(v)
                if z > best:
                    best = z
        return min(best, Z_MAX)

    def _learn(self, row: list[float]) -> None:
        for model, v in zip(self.models_ or (), row, strict=True):
            if math.isfinite(v):
                model.learn(v)

    def _suppressed(self, z: float) -> float:
        peaks = self.peaks_
        if self.suppress and peaks:
            return max(0.0, z - peaks[0][1])
        return z

    def _remember(self, z: float) -> None:
        peaks = self.peaks_
        while peaks and peaks[-1][1] <= z:
            peaks.pop()
        peaks.append((self.steps_, z))
        self.steps_ += 1
        if peaks[0][0] <= self.steps_ - 1 - self.suppress:
            peaks.popleft()

    # ---------------------------------------------------------------- the interface

    def score_one(self, x: Any) -> float:
        return squash(self._suppressed(self._surprise(self._row(x))))

    def learn_one(self, x: Any) -> None:
        self.update(x)

    def update(self, x: Any) -> float:
        row = self._row(x)
        if not any(map(math.isfinite, row)):
            return 0.0  # nothing to score, nothing learned
        z = self._surprise(row)
        out = squash(self._suppressed(z))
        self._learn(row)
        if self.suppress:
            self._remember(z)
        return out

    def score(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=float)
        if values.ndim not in (1, 2):
            raise UsageError(f"detector {self.name!r}: expected a 1-D or 2-D array, got {values.ndim}-D")
        rows = values.tolist()
        update = self.update
        return np.array([update(r) for r in rows], dtype=float).reshape(len(values))
