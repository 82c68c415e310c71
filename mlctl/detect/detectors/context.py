"""Context novelty: a point is anomalous when it leaves the known range or makes a transition never seen before.

Each metric is quantised into ``bins`` equal levels between its lowest and highest value so
far. The model remembers which level followed which (the *contexts*: pairs of consecutive
levels) and how often each level was left. A point scores

* 1 when it falls outside the known range by more than ``tolerance`` of its width (the range
  then grows, and the memory is rebuilt from the kept history on the new levels);
* when it completes a pair of levels never seen before, the confidence that the previous level
  had a known set of successors: ``1 - (distinct successors + 1) / (departures + 1)``; a new
  successor of a level that has always gone to the same few places scores near 1, one of a
  level that keeps going somewhere new scores near 0;
* 0 otherwise.

The largest score over the metrics is reported; after a point scoring at least
:data:`TRIGGER`, the next ``suppress`` points score 0 (the same event is reported once, at its
start). The memory is bounded: the last ``memory`` points are kept for rebuilding the levels.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, ClassVar

import numpy as np

from mlctl.core.errors import UsageError
from mlctl.detect.base import Detector, Param, register
from mlctl.detect.detectors._common import per_column_row

#: a row score at or above this starts a quiet period of ``suppress`` points
TRIGGER = 0.5


class ContextModel:
    """Quantised levels of one metric and the transitions between them. Inputs are finite floats."""

    __slots__ = ("bins", "tolerance", "min_points", "hist", "n", "lo", "hi", "half", "prev", "seen", "out", "succ")

    def __init__(self, *, bins: int, tolerance: float, min_points: int, memory: int) -> None:
        self.bins = bins
        self.tolerance = tolerance
        self.min_points = min_points
        self.hist: deque[float] = deque(maxlen=memory)
        self.n = 0  # points learned
        self.lo = 0.0
        self.hi = 0.0
        self.half = 0.0  # half the width of the range (halves keep huge values finite)
        self.prev = -1  # level of the last point
        self.seen: set[int] = set()  # transitions a * bins + b
        self.out = [0] * bins  # departures from each level
        self.succ = [0] * bins  # distinct successors of each level

    def level(self, x: float) -> int:
        if self.half <= 0.0:
            return 0
        b = int((x * 0.5 - self.lo * 0.5) / self.half * self.bins)
        return 0 if b < 0 else (self.bins - 1 if b >= self.bins else b)

    def outside(self, x: float) -> bool:
        """Whether ``x`` breaks the known range (by more than the tolerance)."""
        if self.n == 0:
            return False
        if self.half <= 0.0:
            return x != self.lo
        margin = self.tolerance * self.half
        return x * 0.5 < self.lo * 0.5 - margin or x * 0.5 > self.hi * 0.5 + margin

    def score(self, x: float) -> float:
        if self.n < self.min_points:
            return 0.0
        if self.outside(x):
            return 1.0
        a = self.prev
        b = self.level(x)
        if a < 0 or a * self.bins + b in self.seen:
            return 0.0
        return 1.0 - (self.succ[a] + 1) / (self.out[a] + 1)

    def learn(self, x: float) -> None:
        regrid = self.outside(x) or self.n == 0
        self.hist.append(x)
        self.n += 1
        if regrid:
            self.lo = x if self.n == 1 else min(self.lo, x)
            self.hi = x if self.n == 1 else max(self.hi, x)
            self.half = self.hi * 0.5 - self.lo * 0.5
            self._rebuild()
            return
        b = self.level(x)
        a = self.prev
        if a >= 0:
            key = a * self.bins + b
            if key not in self.seen:
                self.seen.add(key)
                self.succ[a] += 1
            self.out[a] += 1
        self.prev = b

    def _rebuild(self) -> None:
        """Re-level the kept history on the current range and recount its transitions."""
        k = self.bins
        h = np.fromiter(self.hist, dtype=float, count=len(self.hist))
        if self.half > 0.0:
            f = (h * 0.5 - self.lo * 0.5) / self.half * k
            levels = np.clip(f, 0, k - 1).astype(np.int64)
        else:
            levels = np.zeros(len(h), dtype=np.int64)
        keys = levels[:-1] * k + levels[1:]
        uniq = np.unique(keys)
        self.seen = set(uniq.tolist())
        self.out = np.bincount(levels[:-1], minlength=k).tolist()
        self.succ = np.bincount(uniq // k, minlength=k).tolist()
        self.prev = int(levels[-1])


@register
class ContextNovelty(Detector):
    """Scores a point by how new its context is: a break out of the known range of values, or a
    move between quantised levels that has never happened before (weighted by how settled the
    previous level's successors were). Repeated patterns, however irregular, stop scoring once
    seen; a new kind of move is flagged even inside the usual range. Each metric has its own
    model; the row scores the largest; after a report the next ``suppress`` points score 0.
    """

    name = "context"
    summary = "novel transitions between quantised levels and breaks of the known range (default detector)"
    params: ClassVar[dict[str, Param]] = {
        "bins": Param(int, 7, "levels the known range of each metric is cut into", low=2, high=64),
        "tolerance": Param(float, 0.1, "a value this far outside the range (in range widths) breaks it", low=0.0),
        "suppress": Param(int, 30, "points after a report (score >= 0.5) that score 0 (0: none)", low=0, high=100_000),
        "min_points": Param(int, 30, "points learned before anything is scored", low=2, high=1_000_000),
        "memory": Param(int, 20_000, "points kept to rebuild the levels when the range grows", low=10, high=10_000_000),
    }
    default_threshold = 0.166  # the corpus optimum is a novel move from a level with a 1/6 escape estimate
    bins: int
    tolerance: float
    suppress: int
    min_points: int
    memory: int

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.models_: list[ContextModel] | None = None
        self.quiet_ = 0  # points still to be suppressed

    def _new_model(self) -> ContextModel:
        return ContextModel(bins=self.bins, tolerance=self.tolerance, min_points=self.min_points, memory=self.memory)

    def _row(self, x: Any) -> list[float]:
        return per_column_row(self, x)

    def _raw(self, row: list[float]) -> float:
        best = 0.0
        for model, v in zip(self.models_ or (), row, strict=True):
            if math.isfinite(v):
                s = model.score(v)
                if s > best:
                    best = s
        return best

    def score_one(self, x: Any) -> float:
        row = self._row(x)
        if self.quiet_ > 0:
            return 0.0
        return self._raw(row)

    def learn_one(self, x: Any) -> None:
        self.update(x)

    def update(self, x: Any) -> float:
        row = self._row(x)
        if not any(map(math.isfinite, row)):
            return 0.0  # nothing to score, nothing learned
        raw = self._raw(row)
        out = 0.0 if self.quiet_ > 0 else raw
        if self.quiet_ > 0:
            self.quiet_ -= 1
        if raw >= TRIGGER and self.suppress:
            self.quiet_ = self.suppress
        for model, v in zip(self.models_ or (), row, strict=True):
            if math.isfinite(v):
                model.learn(v)
        return out

    def score(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=float)
        if values.ndim not in (1, 2):
            raise UsageError(f"detector {self.name!r}: expected a 1-D or 2-D array, got {values.ndim}-D")
        update = self.update
        return np.array([update(r) for r in values.tolist()], dtype=float).reshape(len(values))
