"""Epsilon-greedy: mostly the arm with the best mean reward so far, a fixed share spread over all arms.

With probability ``epsilon`` a request goes to an active arm drawn uniformly (exploration);
otherwise to the *greedy* arm (exploitation):

* an active arm without any outcome yet, if there is one (the first such arm in the order
  given), so every arm is tried;
* otherwise the arm with the highest mean reward (``reward_sum / trials``); ties go to the
  first in the order given, so the choice is deterministic.

Each arm's share is ``epsilon / active arms``, plus ``1 - epsilon`` for the greedy arm.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from mlctl.serving.experiments.strategies._base import Arm, Bandit, Param


def greedy_arm(arms: Sequence[Arm], active: Sequence[int]) -> int:
    """The index of the greedy arm among ``active`` (see the module's docstring).

    >>> greedy_arm([Arm("a", 50, 10, 2.0), Arm("b", 50, 10, 3.0), Arm("c", 50, 10, 3.0)], [0, 1, 2])
    1
    >>> greedy_arm([Arm("a", 50, 10, 2.0), Arm("b", 50, 0, 0.0)], [0, 1])
    1
    """
    for i in active:
        if arms[i].trials == 0:
            return i
    best = active[0]
    for i in active[1:]:
        if arms[i].reward_sum / arms[i].trials > arms[best].reward_sum / arms[best].trials:
            best = i
    return best


class EpsilonGreedy(Bandit):
    """Sends ``1 - epsilon`` of the traffic to the arm with the best mean reward so far and spreads
    ``epsilon`` evenly over the active arms."""

    name = "epsilon-greedy"
    summary = "epsilon-greedy: the best arm so far, with a fixed exploration share spread over all arms"
    params: ClassVar[dict[str, Param]] = {
        **Bandit.params,
        "epsilon": Param(float, 0.1, "share of the traffic spread evenly over the active arms", low=0.0, high=1.0),
    }
    epsilon: float

    def preference(self, arms: Sequence[Arm], active: Sequence[int]) -> list[float]:
        out = [0.0] * len(arms)
        for i in active:
            out[i] = self.epsilon / len(active)
        out[greedy_arm(arms, active)] += 1.0 - self.epsilon
        return out
