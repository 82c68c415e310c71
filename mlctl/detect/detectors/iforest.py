"""IsolationForest on sliding-window features, refit periodically on past data only."""

from __future__ import annotations

from collections import deque
from typing import Any, ClassVar

import numpy as np

from mlctl.core.errors import UsageError, require
from mlctl.core.params import Param
from mlctl.detect.base import Detector, register

#: features are clipped here: the forest works in float32
_BIG = 1e37
_FLOAT_MAX = float(np.finfo(float).max)


def _float32_scale(X: np.ndarray) -> np.ndarray:
    """A power of two per feature column that brings its largest magnitude within +-_BIG (1 for
    ordinary data). Trees split between a column's min and max, so scaling a column by a power of
    two (exact in floating point) changes no split: values up to 1e308 are told apart like any."""
    big = np.abs(X).max(axis=0) if len(X) else np.zeros(X.shape[1:])
    with np.errstate(divide="ignore"):
        exp = np.where(big > _BIG, np.ceil(np.log2(big / _BIG)), 0.0)
    return np.exp2(-exp)


@register
class IsolationForestDetector(Detector):
    """scikit-learn's IsolationForest over joint sliding-window features of all metrics.

    Features of the point at t, per metric: its value, its change from the previous point, and
    its distance from the mean of the previous ``window`` points; all metrics together form one
    feature vector, so unusual combinations count. The forest is fitted on the last ``history``
    feature vectors once ``min_points`` points are learned, and refit every ``refit_every``
    points, always on past points only. The score is ``2 * (s - 0.5)`` clipped to [0, 1], where
    ``s`` is the forest's anomaly score (0.5: ordinary, 1: isolated at once). Rows with a
    non-finite value are scored 0 and not learned. Needs scikit-learn.
    """

    name = "iforest"
    summary = "IsolationForest on sliding-window features, refit on past data (scikit-learn)"
    params: ClassVar[dict[str, Param]] = {
        "window": Param(int, 12, "previous points whose mean a value is compared with", low=1, high=10_000),
        "history": Param(int, 2000, "most recent feature vectors the forest is fitted on", low=16, high=1_000_000),
        "refit_every": Param(int, 500, "points learned between refits", low=1, high=1_000_000),
        "min_points": Param(int, 200, "points learned before the first fit", low=16, high=1_000_000),
        "n_estimators": Param(int, 50, "trees in the forest", low=1, high=10_000),
        "seed": Param(int, 0, "random seed of the forest", low=0, high=2**31 - 1),
    }
    default_threshold = 0.63
    window: int
    history: int
    refit_every: int
    min_points: int
    n_estimators: int
    seed: int

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if self.min_points > self.history:
            raise UsageError("detector 'iforest': min_points must not exceed history")
        self.d_: int | None = None
        self.past_: deque[np.ndarray] = deque(maxlen=self.window + 1)
        self.feats_: deque[np.ndarray] = deque(maxlen=self.history)
        self.n_ = 0
        self.forest_: Any = None
        self.scale_: np.ndarray | None = None  # per-feature power of two applied before the forest

    def _row(self, x: Any) -> np.ndarray:
        row = np.asarray(x, dtype=float).ravel()
        if self.d_ is None:
            if row.size == 0:
                raise UsageError("detector 'iforest': an observation needs at least one value")
            self.d_ = row.size
        elif row.size != self.d_:
            raise UsageError(
                f"detector 'iforest': got {row.size} values, expected {self.d_}",
                hint="every observation of a stream must have the same number of metrics",
            )
        return row

    def _features(self, row: np.ndarray) -> np.ndarray | None:
        """Value, change and distance from the recent mean; near the float limits a change that
        overflows is +-inf, saturated at the largest float; columns are then scaled into float32's range."""
        if not np.isfinite(row).all() or len(self.past_) < 1:
            return None
        past = np.array(self.past_)
        prev = past[-1]
        recent = past[-self.window :]
        with np.errstate(over="ignore", invalid="ignore"):
            mean = recent.mean(axis=0)
            if not np.isfinite(mean).all():  # the sum overflowed: average the scaled values instead
                mean = (recent / len(recent)).sum(axis=0)
            return np.concatenate([row, row - prev, row - mean])

    @staticmethod
    def _to_score(raw: np.ndarray) -> np.ndarray:
        return np.clip(2.0 * (-raw - 0.5), 0.0, 1.0)

    def _learn(self, row: np.ndarray, feats: np.ndarray | None) -> bool:
        """Learn a finite row; True when the forest is to be refit now."""
        if feats is not None:
            self.feats_.append(feats)
        self.past_.append(row)
        self.n_ += 1
        due = self.n_ >= self.min_points and (self.n_ - self.min_points) % self.refit_every == 0
        return due and len(self.feats_) >= 16

    def _refit(self) -> None:
        ensemble = require("sklearn.ensemble", "detect", feature="the iforest detector", package="scikit-learn")
        X = np.nan_to_num(np.array(self.feats_), posinf=_FLOAT_MAX, neginf=-_FLOAT_MAX)
        self.scale_ = _float32_scale(X)
        X = np.clip(X * self.scale_, -_BIG, _BIG)
        self.forest_ = ensemble.IsolationForest(n_estimators=self.n_estimators, random_state=self.seed).fit(X)

    def _predict(self, feats: np.ndarray) -> np.ndarray:
        X = np.nan_to_num(np.atleast_2d(feats), posinf=_FLOAT_MAX, neginf=-_FLOAT_MAX)
        X = np.clip(X * (1.0 if self.scale_ is None else self.scale_), -_BIG, _BIG)
        return self._to_score(self.forest_.score_samples(X))

    def score_one(self, x: Any) -> float:
        row = self._row(x)
        feats = self._features(row)
        if feats is None or self.forest_ is None:
            return 0.0
        return float(self._predict(feats)[0])

    def learn_one(self, x: Any) -> None:
        row = self._row(x)
        if np.isfinite(row).all() and self._learn(row, self._features(row)):
            self._refit()

    def score(self, values: np.ndarray) -> np.ndarray:
        """Vectorised between refits: rows scored by the same forest are predicted together."""
        values = np.asarray(values, dtype=float)
        if values.ndim not in (1, 2):
            raise UsageError(f"detector 'iforest': expected a 1-D or 2-D array, got {values.ndim}-D")
        out = np.zeros(len(values))
        pending: list[int] = []
        pending_feats: list[np.ndarray] = []

        def flush() -> None:
            if pending:
                out[pending] = self._predict(np.array(pending_feats))
                pending.clear()
                pending_feats.clear()

        for i, x in enumerate(values):
            row = self._row(x)
            if not np.isfinite(row).all():
                continue
            feats = self._features(row)
            if feats is not None and self.forest_ is not None:
                pending.append(i)
                pending_feats.append(feats)
            if self._learn(row, feats):
                flush()
                self._refit()
        flush()
        return out
