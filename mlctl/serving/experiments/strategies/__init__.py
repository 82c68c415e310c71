"""Traffic assignment strategies for A/B experiments: how the requests of one model are split
between its variants.

* ``weighted`` -- every request draws a variant by the configured weights;
* ``sticky`` -- a request key (user id) keeps its variant across replicas and restarts
  (weighted rendezvous hashing, salted by the experiment's name);
* ``thompson`` -- Thompson sampling on Beta (binary) or Normal (continuous) posteriors;
* ``epsilon-greedy`` -- the best mean reward so far, ``epsilon`` spread over all arms.

A strategy is stateless: it reads the arms' counters (:class:`Arm`) on every call.
:meth:`Strategy.probabilities` gives each arm's share now, :meth:`Strategy.choose` the variant of
one request. :func:`parse_variants` and :func:`parse_shadow` check an experiment's variants.

Standard library only, so importing this package is cheap.

>>> import random
>>> arms = [Arm("champion", 90), Arm("challenger", 10)]
>>> make_strategy("weighted").probabilities(arms)
[0.9, 0.1]
>>> sticky = make_strategy("sticky", salt="exp-1")
>>> sticky.choose(arms, key="user-42", rng=random.Random(0)) == sticky.choose(arms, key="user-42", rng=random.Random(1))
True
"""

from mlctl.serving.experiments.strategies._base import Arm, Bandit, Param, Strategy
from mlctl.serving.experiments.strategies._posteriors import probability_best
from mlctl.serving.experiments.strategies._variants import parse_shadow, parse_variants
from mlctl.serving.experiments.strategies.epsilon_greedy import EpsilonGreedy
from mlctl.serving.experiments.strategies.registry import STRATEGIES, make_strategy
from mlctl.serving.experiments.strategies.sticky import Sticky
from mlctl.serving.experiments.strategies.thompson import Thompson
from mlctl.serving.experiments.strategies.weighted import Weighted

__all__ = [
    "STRATEGIES",
    "Arm",
    "Bandit",
    "EpsilonGreedy",
    "Param",
    "Sticky",
    "Strategy",
    "Thompson",
    "Weighted",
    "make_strategy",
    "parse_shadow",
    "parse_variants",
    "probability_best",
]
