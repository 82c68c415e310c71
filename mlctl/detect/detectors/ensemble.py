"""Several per-column models whose surprises are averaged."""

from __future__ import annotations

from typing import Any, ClassVar

from mlctl.core.errors import UsageError
from mlctl.core.params import Param
from mlctl.detect.base import register
from mlctl.detect.detectors._common import COMMON_PARAMS, ColumnModel, ColumnwiseDetector
from mlctl.detect.detectors.changepoint import LevelShift
from mlctl.detect.detectors.forecast import HoltResidual
from mlctl.detect.detectors.seasonal import SeasonalMedian
from mlctl.detect.detectors.zscore import RobustZScore

#: the detectors an ensemble can combine: those that model each column on its own
MEMBERS: dict[str, type[ColumnwiseDetector]] = {
    "seasonal": SeasonalMedian,
    "zscore": RobustZScore,
    "forecast": HoltResidual,
    "changepoint": LevelShift,
}


class _Model(ColumnModel):
    __slots__ = ("members", "combine")

    def __init__(self, members: list[ColumnModel], combine: str) -> None:
        self.members = members
        self.combine = combine

    def surprise(self, x: float) -> float:
        zs = [m.surprise(x) for m in self.members]
        if self.combine == "max":
            return max(zs)
        if self.combine == "min":
            return min(zs)
        return sum(zs) / len(zs)

    def learn(self, x: float) -> None:
        for m in self.members:
            m.learn(x)


@register
class Ensemble(ColumnwiseDetector):
    """Runs the ``members`` detectors (with their default parameters) on each metric and combines
    their surprises, each already in robust standard deviations, by ``combine`` (mean by default:
    a point must surprise the models on average, so one model's blind spot is covered by another
    and one model's false alarm is damped by the others). The largest combined surprise over the
    metrics is then suppressed and squashed to [0, 1] like every column-wise detector.

    The default members, the seasonal median and the robust z-score, gave the best NAB score of
    the combinations measured (see docs/benchmarks.md); ``forecast`` and ``changepoint`` can be added.
    The default detector is ``context``, which scores higher on NAB than any of these combinations.
    """

    name = "ensemble"
    summary = "mean surprise of the seasonal median and robust z-score"
    params: ClassVar[dict[str, Param]] = {
        "members": Param(str, "seasonal,zscore", f"comma-separated members, from: {', '.join(MEMBERS)}"),
        "combine": Param(str, "mean", "how member surprises are combined", choices=("mean", "max", "min")),
        **COMMON_PARAMS,
    }
    default_threshold = 0.51
    members: str
    combine: str

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.member_names_ = self._parse_members()

    def _parse_members(self) -> list[str]:
        names = [n.strip() for n in self.members.split(",") if n.strip()]
        unknown = [n for n in names if n not in MEMBERS]
        if not names or unknown:
            raise UsageError(
                f"detector 'ensemble': unknown member {unknown[0]!r}" if unknown else "detector 'ensemble': no members",
                hint=f"members are a comma-separated list of: {', '.join(MEMBERS)}",
            )
        if len(set(names)) != len(names):
            raise UsageError("detector 'ensemble': a member is listed twice")
        return names

    def _check_params(self) -> None:
        self._parse_members()

    def _new_model(self) -> ColumnModel:
        return _Model([MEMBERS[n]()._new_model() for n in self.member_names_], self.combine)
