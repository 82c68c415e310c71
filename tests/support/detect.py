"""A tiny, predictable detector for tests: the score is |x - previous x| / scale, clipped to [0, 1]."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from mlctl.core.params import Param
from mlctl.detect.base import Detector, register


@register
class JumpDetector(Detector):
    name = "test-jump"
    summary = "absolute change from the previous point, over a fixed scale"
    params: ClassVar[dict[str, Param]] = {"scale": Param(float, 10.0, "change that scores 1", low=1e-9)}
    default_threshold = 0.5

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.previous: np.ndarray | None = None

    def score_one(self, x: Any) -> float:
        x = np.atleast_1d(np.asarray(x, dtype=float))
        if self.previous is None or not np.isfinite(x).all():
            return 0.0
        jump = float(np.max(np.abs(x - self.previous)))
        return 0.0 if math.isnan(jump) else min(1.0, jump / self.scale)

    def learn_one(self, x: Any) -> None:
        x = np.atleast_1d(np.asarray(x, dtype=float))
        if np.isfinite(x).all():
            self.previous = x
