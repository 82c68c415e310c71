"""The strategy interface: :class:`Arm` (what a strategy reads about one variant), :class:`Strategy`
(the ABC every assignment strategy implements) and :class:`Bandit` (the shared part of the
strategies that move traffic toward the better reward).

A strategy holds only its parameters; it keeps no state between requests. The experiment
keeps the counters (:class:`Arm`) and hands them in on every call, so replicas that share
those counters assign alike, and a strategy can be swapped or re-created at any time.

Conventions kept by every strategy:

* an arm with weight 0 is *paused*: it gets probability 0 and is never chosen;
* :meth:`Strategy.probabilities` is pure and deterministic: the same arms give the same shares;
* :meth:`Strategy.choose` draws from ``rng`` only (no global random state), so a seeded
  ``random.Random`` gives a reproducible sequence; its empirical shares match
  :meth:`Strategy.probabilities`.
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from mlctl.core.errors import UsageError
from mlctl.core.params import Param, Parameterised

#: the reward kinds the bandits understand
REWARD_KINDS = ("binary", "continuous")


@dataclass(frozen=True)
class Arm:
    """The state of one variant, as a strategy reads it.

    ``weight`` is the configured share in percent (0 pauses the arm); ``trials`` counts the
    outcomes received, ``reward_sum`` and ``reward_sq_sum`` their sum and sum of squares
    (for binary rewards ``reward_sum`` is the number of successes); ``assigned`` counts the
    requests routed to the arm (for reporting; no strategy reads it).
    """

    name: str
    weight: float
    trials: int = 0
    reward_sum: float = 0.0
    reward_sq_sum: float = 0.0
    assigned: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise UsageError(f"an arm needs a non-empty name, got {self.name!r}")
        if not (isinstance(self.weight, int | float) and math.isfinite(self.weight) and self.weight >= 0):
            raise UsageError(f"arm {self.name!r}: weight must be a finite number >= 0, got {self.weight!r}")
        for field in ("trials", "assigned"):
            count = getattr(self, field)
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise UsageError(f"arm {self.name!r}: {field} must be an integer >= 0, got {count!r}")
        for field in ("reward_sum", "reward_sq_sum"):
            if not math.isfinite(getattr(self, field)):
                raise UsageError(f"arm {self.name!r}: {field} must be finite, got {getattr(self, field)!r}")
        if self.reward_sq_sum < 0:
            raise UsageError(f"arm {self.name!r}: reward_sq_sum must be >= 0, got {self.reward_sq_sum!r}")

    @property
    def active(self) -> bool:
        """Whether the arm takes traffic (its weight is above 0)."""
        return self.weight > 0

    @property
    def mean(self) -> float | None:
        """The mean reward so far, or None before the first outcome."""
        return self.reward_sum / self.trials if self.trials else None


def check_arms(arms: Sequence[Arm]) -> list[int]:
    """The indices of the active arms; :class:`UsageError` when there is none or a name repeats."""
    if not arms:
        raise UsageError("an experiment needs at least one arm")
    seen: set[str] = set()
    for arm in arms:
        if arm.name in seen:
            raise UsageError(f"arm {arm.name!r} is listed twice")
        seen.add(arm.name)
    active = [i for i, arm in enumerate(arms) if arm.active]
    if not active:
        raise UsageError("every arm is paused (weight 0): nothing can take the traffic")
    return active


def pick(probabilities: Sequence[float], u: float) -> int:
    """The index whose slice of the cumulative ``probabilities`` holds ``u`` in [0, 1).

    Slices of probability 0 are never picked, also when rounding leaves the cumulative sum
    a little under 1 (then the last positive slice takes the remainder).

    >>> pick([0.0, 0.25, 0.75], 0.1), pick([0.0, 0.25, 0.75], 0.5), pick([0.5, 0.5, 0.0], 0.99999999999)
    (1, 2, 1)
    """
    total = 0.0
    last = -1
    for i, p in enumerate(probabilities):
        if p > 0.0:
            total += p
            last = i
            if u < total:
                return i
    if last < 0:
        raise UsageError("no arm has a share of the traffic")
    return last


def even_over(n: int, indices: Sequence[int]) -> list[float]:
    """Shares of ``n`` arms: equal over ``indices``, 0 elsewhere."""
    out = [0.0] * n
    for i in indices:
        out[i] = 1.0 / len(indices)
    return out


class Strategy(Parameterised, ABC):
    """How the requests of one model are split between its variants.

    Subclasses declare ``name``, ``summary`` and their ``params`` table, and override
    :meth:`probabilities`; the default :meth:`choose` draws from those probabilities with ``rng``.
    Parameters are keyword-only, validated on construction (a bad value raises
    :class:`UsageError`) and stored as attributes of the same name.
    """

    kind: ClassVar[str] = "strategy"
    summary: ClassVar[str] = ""
    #: the reward the strategy learns from ("binary" or "continuous"), None when it reads no reward
    reward_kind: str | None = None

    @abstractmethod
    def probabilities(self, arms: Sequence[Arm]) -> list[float]:
        """Each arm's share of the traffic now, in the order of ``arms``: >= 0, summing to 1, 0 for a paused arm."""

    def choose(self, arms: Sequence[Arm], *, key: str | None = None, rng: random.Random) -> str:
        """The variant for one request. ``key`` (a user id, a session) is read by the sticky strategy only."""
        return arms[pick(self.probabilities(arms), rng.random())].name


class Bandit(Strategy):
    """A strategy that moves traffic toward the arm with the better reward.

    Its traffic is a mixture: each active arm first gets the floor ``min_share`` (at most an
    equal split), the rest follows the strategy's :meth:`preference`. :meth:`choose` draws the
    same mixture: with probability ``active * floor`` a uniformly random active arm, otherwise
    :meth:`draw_preferred`. Only an arm's weight being 0 or not matters: the configured
    percentages are not read, the rewards decide.
    """

    params: ClassVar[dict[str, Param]] = {
        "reward_kind": Param(str, "binary", "binary (success 0/1) or continuous rewards", choices=REWARD_KINDS),
        "min_share": Param(float, 0.0, "share each active arm keeps whatever the rewards (at most an equal split)",
                           low=0.0, high=0.5),
    }
    reward_kind: str
    min_share: float

    @abstractmethod
    def preference(self, arms: Sequence[Arm], active: Sequence[int]) -> list[float]:
        """The shares the rewards alone call for (over the ``active`` indices; 0 elsewhere; summing to 1)."""

    def draw_preferred(self, arms: Sequence[Arm], active: Sequence[int], rng: random.Random) -> int:
        """One index drawn from :meth:`preference`; override with a cheaper exact draw where there is one."""
        return pick(self.preference(arms, active), rng.random())

    def check_rewards(self, arms: Sequence[Arm]) -> None:
        """Binary rewards need 0 <= reward_sum <= trials; raise :class:`UsageError` otherwise."""
        if self.reward_kind != "binary":
            return
        for arm in arms:
            if not -1e-9 <= arm.reward_sum <= arm.trials + 1e-9:
                raise UsageError(
                    f"arm {arm.name!r}: binary rewards need 0 <= reward_sum <= trials, "
                    f"got {arm.reward_sum} of {arm.trials}"
                )

    def _floor(self, active: Sequence[int]) -> float:
        return min(self.min_share, 1.0 / len(active))

    def probabilities(self, arms: Sequence[Arm]) -> list[float]:
        active = check_arms(arms)
        self.check_rewards(arms)
        floor = self._floor(active)
        rest = 1.0 - floor * len(active)
        pref = self.preference(arms, active) if rest > 0.0 else [0.0] * len(arms)
        out = [0.0] * len(arms)
        for i in active:
            out[i] = floor + rest * pref[i]
        total = math.fsum(out)
        return [p / total for p in out]

    def choose(self, arms: Sequence[Arm], *, key: str | None = None, rng: random.Random) -> str:
        active = check_arms(arms)
        self.check_rewards(arms)
        floor = self._floor(active)
        if floor > 0.0 and rng.random() < floor * len(active):
            return arms[active[rng.randrange(len(active))]].name
        return arms[self.draw_preferred(arms, active, rng)].name
