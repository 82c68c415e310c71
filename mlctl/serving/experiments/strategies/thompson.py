"""Thompson sampling: each request goes to the arm whose posterior draw of the mean reward is highest.

Posteriors (one per active arm, independent):

* binary rewards: Beta(1 + successes, 1 + failures), the uniform prior updated by the outcomes
  (successes = ``reward_sum``, failures = ``trials - reward_sum``);
* continuous rewards: the mean has the prior Normal(``prior_mean``, ``prior_sd``**2); the reward's
  variance is estimated from the outcomes with one pseudo-outcome of variance ``prior_sd``**2,
  ``v = (sum of squared deviations + prior_sd**2) / (trials + 1)``, and the mean's posterior is
  the conjugate Normal update with that variance: precision ``1 / prior_sd**2 + trials / v``,
  mean ``(prior_mean / prior_sd**2 + reward_sum / v) / precision``.

:meth:`Thompson.choose` draws one sample from each posterior (with the caller's ``rng``) and takes
the highest; :meth:`Thompson.probabilities` gives the probability of that, each arm's chance of
being the best, computed deterministically by numerical integration (see :func:`probability_best`),
so what it reports is what ``choose`` does on average. Without outcomes all arms have the same
posterior and split the traffic evenly.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import ClassVar

from mlctl.serving.experiments.strategies._base import Arm, Bandit, Param
from mlctl.serving.experiments.strategies._posteriors import (
    BetaPosterior,
    NormalPosterior,
    Posterior,
    probability_best,
)


def beta_posterior(arm: Arm) -> BetaPosterior:
    """Beta(1 + successes, 1 + failures) for an arm with binary rewards."""
    successes = min(max(arm.reward_sum, 0.0), float(arm.trials))
    return BetaPosterior(1.0 + successes, 1.0 + arm.trials - successes)


def normal_posterior(arm: Arm, prior_mean: float, prior_sd: float) -> NormalPosterior:
    """The posterior of an arm's mean continuous reward (the module's docstring gives the model).

    >>> normal_posterior(Arm("a", 50), 0.0, 1.0)
    NormalPosterior(mean=0.0, sd=1.0)
    """
    n = arm.trials
    prior_var = prior_sd * prior_sd
    squares = max(arm.reward_sq_sum - arm.reward_sum * arm.reward_sum / n, 0.0) if n else 0.0
    noise_var = (squares + prior_var) / (n + 1)
    precision = 1.0 / prior_var + n / noise_var
    mean = (prior_mean / prior_var + arm.reward_sum / noise_var) / precision
    return NormalPosterior(mean, math.sqrt(1.0 / precision))


class Thompson(Bandit):
    """Thompson sampling on Beta (binary) or Normal (continuous) posteriors of each arm's mean reward.

    Traffic moves to the arm most likely to be the best, as fast as the evidence allows; an arm
    that is clearly worse gets almost nothing (keep some with ``min_share``).
    """

    name = "thompson"
    summary = "Thompson sampling: traffic follows each arm's posterior probability of being the best"
    params: ClassVar[dict[str, Param]] = {
        **Bandit.params,
        "prior_mean": Param(float, 0.0, "prior mean of a continuous reward (continuous rewards only)",
                            low=-1e12, high=1e12),
        "prior_sd": Param(float, 1.0, "prior standard deviation of a continuous reward, its scale",
                          low=1e-12, high=1e12),
    }
    prior_mean: float
    prior_sd: float

    def posterior(self, arm: Arm) -> Posterior:
        """The posterior of ``arm``'s mean reward."""
        if self.reward_kind == "binary":
            return beta_posterior(arm)
        return normal_posterior(arm, self.prior_mean, self.prior_sd)

    def preference(self, arms: Sequence[Arm], active: Sequence[int]) -> list[float]:
        best = probability_best([self.posterior(arms[i]) for i in active])
        out = [0.0] * len(arms)
        for i, p in zip(active, best, strict=True):
            out[i] = p
        return out

    def draw_preferred(self, arms: Sequence[Arm], active: Sequence[int], rng: random.Random) -> int:
        best, best_draw = active[0], -math.inf
        for i in active:
            draw = self.posterior(arms[i]).sample(rng)
            if draw > best_draw:
                best, best_draw = i, draw
        return best
