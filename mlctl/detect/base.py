"""The detector interface and registry.

Every detector is a streaming estimator: :meth:`Detector.score_one` scores a point
against what was learned so far (a float in [0, 1], high means anomalous) and
:meth:`Detector.learn_one` adds the point. :meth:`Detector.update` does both, in that
order. :meth:`Detector.score` scores a whole series and must give exactly the numbers
that calling :meth:`update` point by point would give, leaving the detector in the
same state. Scores are strictly causal: the score at t depends on data up to t only.

Conventions of the built-in detectors: an observation is a float or a 1-D array of metrics
(one stream keeps its width); a row with no finite value scores 0 and is not learned; a
constant stream scores 0; huge values give finite scores. Each detector class carries a
``default_threshold``: the threshold that maximised its NAB score over the benchmark corpus.

Deciding "is anomaly" is a separate step: ``score >= threshold``.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import numpy as np

from mlctl.core.errors import NotFound
from mlctl.core.params import Parameterised


class Detector(Parameterised, ABC):
    """A causal, online anomaly detector on a univariate or multivariate stream."""

    kind: ClassVar[str] = "detector"
    summary: ClassVar[str] = ""
    default_threshold: ClassVar[float] = 0.5

    def clone(self) -> Detector:
        """A fresh, untrained detector with the same parameters."""
        return type(self)(**self._params)

    def copy(self) -> Detector:
        """A deep copy, learned state included."""
        return copy.deepcopy(self)

    @abstractmethod
    def learn_one(self, x: Any) -> None:
        """Add one observation (a float, or a 1-D array of metrics) to the model."""

    @abstractmethod
    def score_one(self, x: Any) -> float:
        """Score one observation against the past, in [0, 1]; it does not learn it."""

    def update(self, x: Any) -> float:
        score = self.score_one(x)
        self.learn_one(x)
        return score

    def score(self, values: np.ndarray) -> np.ndarray:
        """Score a series (shape (n,) or (n, d)), learning as it goes; same numbers as update()."""
        values = np.asarray(values, dtype=float)
        return np.fromiter((self.update(x) for x in values), dtype=float, count=len(values))


_REGISTRY: dict[str, type[Detector]] = {}
D = TypeVar("D", bound=type[Detector])
DEFAULT_DETECTOR = "context"


def register(cls: D) -> D:
    """Class decorator: make a detector available by its ``name``."""
    if not cls.name:
        raise TypeError(f"{cls.__name__} has no name")
    _REGISTRY[cls.name] = cls
    return cls


def _load_builtins() -> None:
    from mlctl.detect import detectors  # noqa: F401  (registers the built-in detectors)


def available_detectors() -> dict[str, type[Detector]]:
    _load_builtins()
    return dict(sorted(_REGISTRY.items()))


def make_detector(name: str | None = None, **params: Any) -> Detector:
    """Build a registered detector by name (default: :data:`DEFAULT_DETECTOR`)."""
    registry = available_detectors()
    name = name or DEFAULT_DETECTOR
    if name not in registry:
        raise NotFound(f"no detector named {name!r}", hint=f"available: {', '.join(registry)}")
    return registry[name](**params)


Factory = Callable[..., Detector]
