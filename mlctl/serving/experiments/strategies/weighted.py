"""Weighted random assignment: each request goes to a variant with probability proportional to its weight."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from mlctl.serving.experiments.strategies._base import Arm, Param, Strategy, check_arms


def weight_shares(arms: Sequence[Arm]) -> list[float]:
    """The configured weights as shares summing to 1 (paused arms 0, the others renormalised).

    >>> weight_shares([Arm("champion", 90), Arm("challenger", 10), Arm("old", 0)])
    [0.9, 0.1, 0.0]
    """
    check_arms(arms)
    total = sum(arm.weight for arm in arms)
    return [arm.weight / total for arm in arms]


class Weighted(Strategy):
    """Each request draws its variant independently, with the configured weights as probabilities.

    The same user may see different variants on different requests; use ``sticky`` when a user
    must keep one variant.
    """

    name = "weighted"
    summary = "weighted random: every request draws a variant with probability proportional to its weight"
    params: ClassVar[dict[str, Param]] = {}

    def probabilities(self, arms: Sequence[Arm]) -> list[float]:
        return weight_shares(arms)
