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
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np

from mlctl.core.errors import NotFound, UsageError


@dataclass(frozen=True)
class Param:
    """One declared parameter: its type, default, bounds and meaning."""

    type: type
    default: Any
    doc: str
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None


class Detector(ABC):
    """A causal, online anomaly detector on a univariate or multivariate stream."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    params: ClassVar[dict[str, Param]] = {}
    default_threshold: ClassVar[float] = 0.5

    def __init__(self, **params: Any) -> None:
        self._params = validate_params(type(self), params)
        for key, value in self._params.items():
            setattr(self, key, value)

    def get_params(self) -> dict[str, Any]:
        return dict(self._params)

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

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params.items())
        return f"{type(self).__name__}({args})"


def validate_params(cls: type[Detector], given: dict[str, Any]) -> dict[str, Any]:
    """Check parameters against the class's declared table; fill in defaults."""
    unknown = sorted(set(given) - set(cls.params))
    if unknown:
        known = ", ".join(sorted(cls.params)) or "none"
        raise UsageError(f"detector {cls.name!r} has no parameter {unknown[0]!r}", hint=f"its parameters: {known}")
    out: dict[str, Any] = {}
    for key, spec in cls.params.items():
        value = given.get(key, spec.default)
        if value is not None and not isinstance(value, spec.type):
            try:
                value = spec.type(value)
            except (TypeError, ValueError):
                raise UsageError(f"detector {cls.name!r}: {key} must be {spec.type.__name__}, got {value!r}") from None
        if spec.choices is not None and value not in spec.choices:
            raise UsageError(f"detector {cls.name!r}: {key} must be one of {', '.join(map(str, spec.choices))}")
        if isinstance(value, int | float) and not isinstance(value, bool):
            if (spec.low is not None and value < spec.low) or (spec.high is not None and value > spec.high):
                raise UsageError(f"detector {cls.name!r}: {key}={value} is outside [{spec.low}, {spec.high}]")
        out[key] = value
    return out


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
