"""The registry of assignment strategies by name, and :func:`make_strategy`."""

from __future__ import annotations

from typing import Any

from mlctl.core.errors import UsageError
from mlctl.serving.experiments.strategies._base import Strategy
from mlctl.serving.experiments.strategies.epsilon_greedy import EpsilonGreedy
from mlctl.serving.experiments.strategies.sticky import Sticky
from mlctl.serving.experiments.strategies.thompson import Thompson
from mlctl.serving.experiments.strategies.weighted import Weighted

#: every built-in strategy by its name
STRATEGIES: dict[str, type[Strategy]] = {cls.name: cls for cls in (Weighted, Sticky, Thompson, EpsilonGreedy)}


def make_strategy(name: str, **params: Any) -> Strategy:
    """Build the strategy called ``name`` with its parameters (validated; defaults filled in).

    >>> make_strategy("epsilon-greedy", epsilon=0.2)
    EpsilonGreedy(reward_kind='binary', min_share=0.0, epsilon=0.2)
    >>> make_strategy("round-robin")
    Traceback (most recent call last):
    ...
    mlctl.core.errors.UsageError: no strategy named 'round-robin'; known: epsilon-greedy, sticky, thompson, weighted
    """
    cls = STRATEGIES.get(name)
    if cls is None:
        known = ", ".join(sorted(STRATEGIES))
        raise UsageError(f"no strategy named {name!r}; known: {known}", hint=f"choose one of: {known}")
    return cls(**params)
