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

With ``spread`` > 0 the same range is also cut into ``bins - spread`` .. ``bins + spread``
levels, each cut with its own transitions, and a point inside the range scores the mean of
their transition scores (an ensemble over level counts; checked leave-one-category-out on NAB,
it scores below the single count, so it is off by default).

The largest score over the metrics is reported; after a report (a score at or above
``suppress_from``, by default the detector's default threshold: best set to the threshold that
alerts), the next ``suppress`` points score 0 (the same event is reported once, at its start),
except a break of the range when the quiet period has not seen one yet: it is reported and
restarts the quiet period.
The memory is bounded: the last ``memory`` points are kept for rebuilding the levels.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from mlctl.core.errors import UsageError
from mlctl.core.params import Param
from mlctl.detect.base import Detector, register
from mlctl.detect.detectors._common import per_column_row


class LevelGrid:
    """The transitions between the ``bins`` levels of one cut of the range."""

    __slots__ = ("bins", "prev", "seen", "out", "succ")

    def __init__(self, bins: int) -> None:
        self.bins = bins
        self.prev = -1  # level of the last point
        self.seen: set[int] = set()  # transitions a * bins + b
        self.out = [0] * bins  # departures from each level
        self.succ = [0] * bins  # distinct successors of each level

    def level(self, f: float) -> int:
        """The level of a position ``f`` in [0, 1] of the range (outside: the end levels)."""
        b = int(f * self.bins)
        return 0 if b < 0 else (self.bins - 1 if b >= self.bins else b)

    def score(self, f: float) -> float:
        a = self.prev
        if a < 0:
            return 0.0
        if a * self.bins + self.level(f) in self.seen:
            return 0.0
        return 1.0 - (self.succ[a] + 1) / (self.out[a] + 1)

    def learn(self, f: float) -> None:
        b = self.level(f)
        a = self.prev
        if a >= 0:
            key = a * self.bins + b
            if key not in self.seen:
                self.seen.add(key)
                self.succ[a] += 1
            self.out[a] += 1
        self.prev = b

    def rebuild(self, f: np.ndarray) -> None:
        """Recount the transitions of the positions ``f`` (the kept history, oldest first)."""
        k = self.bins
        levels = np.clip(f * k, 0, k - 1).astype(np.int64)
        keys = levels[:-1] * k + levels[1:]
        uniq = np.unique(keys)
        self.seen = set(uniq.tolist())
        self.out = np.bincount(levels[:-1], minlength=k).tolist()
        self.succ = np.bincount(uniq // k, minlength=k).tolist()
        self.prev = int(levels[-1])


class ContextModel:
    """The known range of one metric and its level grids (one per level count). Inputs are finite floats."""

    __slots__ = ("grids", "tolerance", "min_points", "hist", "n", "lo", "hi", "half")

    def __init__(self, *, bins: Sequence[int], tolerance: float, min_points: int, memory: int) -> None:
        self.grids = [LevelGrid(k) for k in bins]
        self.tolerance = tolerance
        self.min_points = min_points
        self.hist: deque[float] = deque(maxlen=memory)
        self.n = 0  # points learned
        self.lo = 0.0
        self.hi = 0.0
        self.half = 0.0  # half the width of the range (halves keep huge values finite)

    def position(self, x: float) -> float:
        """Where ``x`` lies in the range: 0 at its low end, 1 at its high end."""
        if self.half <= 0.0:
            return 0.0
        return (x * 0.5 - self.lo * 0.5) / self.half

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
        f = self.position(x)
        grids = self.grids
        if len(grids) == 1:
            return grids[0].score(f)
        return math.fsum(g.score(f) for g in grids) / len(grids)

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
        f = self.position(x)
        for g in self.grids:
            g.learn(f)

    def _rebuild(self) -> None:
        """Re-level the kept history on the current range and recount its transitions."""
        h = np.fromiter(self.hist, dtype=float, count=len(self.hist))
        f = (h * 0.5 - self.lo * 0.5) / self.half if self.half > 0.0 else np.zeros(len(h))
        for g in self.grids:
            g.rebuild(f)


@register
class ContextNovelty(Detector):
    """Scores a point by how new its context is: a break out of the known range of values, or a
    move between quantised levels that has never happened before (weighted by how settled the
    previous level's successors were). Repeated patterns, however irregular, stop scoring once
    seen; a new kind of move is flagged even inside the usual range. Each metric has its own
    model; the row scores the largest; after a report (a score >= ``suppress_from``) the next
    ``suppress`` points score 0, but for a first break of the range. ``spread`` > 0 averages the
    transition scores of several level counts around ``bins``.
    """

    name = "context"
    summary = "novel transitions between quantised levels and breaks of the known range (default detector)"
    params: ClassVar[dict[str, Param]] = {
        "bins": Param(int, 7, "levels the known range of each metric is cut into", low=2, high=64),
        "spread": Param(int, 0, "also use bins-spread .. bins+spread levels, averaged (0: bins only)", low=0, high=16),
        "tolerance": Param(float, 0.1, "a value this far outside the range (in range widths) breaks it", low=0.0),
        "suppress": Param(int, 30, "points after a report (score >= suppress_from) scoring 0", low=0, high=100_000),
        "suppress_from": Param(float, 0.166, "a score this high is a report (starts the quiet)", low=0.0, high=1.0),
        "min_points": Param(int, 30, "points learned before anything is scored", low=2, high=1_000_000),
        "memory": Param(int, 20_000, "points kept to rebuild the levels when the range grows", low=10, high=10_000_000),
    }
    default_threshold = 0.166  # the corpus optimum is a novel move from a level with a 1/6 escape estimate
    bins: int
    spread: int
    tolerance: float
    suppress: int
    suppress_from: float
    min_points: int
    memory: int

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if self.bins - self.spread < 2:
            raise UsageError(
                f"detector {self.name!r}: bins - spread must be at least 2, got {self.bins} - {self.spread}",
                hint="lower spread or raise bins",
            )
        self.models_: list[ContextModel] | None = None
        self.quiet_ = 0  # points still to be suppressed
        self.quiet_level_ = 0.0  # the highest report of the quiet period (1: it has seen a break of the range)

    def _new_model(self) -> ContextModel:
        counts = [self.bins] + [k for d in range(1, self.spread + 1) for k in (self.bins - d, self.bins + d)]
        return ContextModel(bins=counts, tolerance=self.tolerance, min_points=self.min_points, memory=self.memory)

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
        raw = self._raw(row)
        return raw if self.quiet_ == 0 or raw >= 1.0 > self.quiet_level_ else 0.0

    def learn_one(self, x: Any) -> None:
        self.update(x)

    def update(self, x: Any) -> float:
        row = self._row(x)
        if not any(map(math.isfinite, row)):
            return 0.0  # nothing to score, nothing learned
        raw = self._raw(row)
        quiet = self.quiet_ > 0
        out = raw if not quiet or raw >= 1.0 > self.quiet_level_ else 0.0  # a first break of the range is news
        if quiet:
            self.quiet_ -= 1
        if raw >= self.suppress_from and self.suppress:
            self.quiet_level_ = max(self.quiet_level_, raw) if quiet else raw
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
