"""An experiment: which variants of a model share its traffic, how requests are assigned, and
where a shadow copy of the traffic goes.

A variant is a registry alias (``champion``) or a version number (``3``) of the experiment's
model. The first variant is the control the report compares the others against.

>>> exp = new_experiment("churn-ab", "churn", "champion:90,challenger:10", sticky_key="user_id")
>>> exp.strategy, exp.control, [v.weight for v in exp.variants]
('sticky', 'champion', [90.0, 10.0])
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from mlctl.core.durations import parse_duration
from mlctl.core.errors import UsageError
from mlctl.serving.experiments.strategies import STRATEGIES, Strategy, make_strategy, parse_shadow, parse_variants

STATUSES = ("running", "paused", "stopped")
REWARDS = ("binary", "continuous")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
#: parameters a strategy takes from the command line; the strategy validates the values
STRATEGY_PARAMS = {"epsilon-greedy": ("epsilon",), "thompson": (), "weighted": (), "sticky": ()}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def check_name(name: str, what: str = "experiment") -> str:
    """A name that is safe as a key in SQLite, Redis and metric labels."""
    if not _NAME.match(name or ""):
        raise UsageError(f"bad {what} name {name!r}: use letters, digits, '.', '_' or '-' (at most 64, "
                         "starting with a letter or digit)")
    return name


@dataclasses.dataclass(frozen=True)
class Variant:
    """One arm: a registry alias or version of the model, and its configured share in percent."""

    name: str
    weight: float


@dataclasses.dataclass(frozen=True)
class Shadow:
    """A fraction of requests also sent to ``target``; its answers are recorded, never returned."""

    target: str
    share: float


@dataclasses.dataclass(frozen=True)
class Experiment:
    """An experiment's definition and status (its counters live in the store)."""

    name: str
    model: str
    variants: tuple[Variant, ...]
    strategy: str = "weighted"
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    sticky_key: str | None = None
    shadow: Shadow | None = None
    reward: str = "binary"
    feedback_window_s: float = 86400.0
    status: str = "running"
    created_at: str = dataclasses.field(default_factory=_now)
    updated_at: str = dataclasses.field(default_factory=_now)

    @property
    def control(self) -> str:
        return self.variants[0].name

    @property
    def variant_names(self) -> list[str]:
        return [v.name for v in self.variants]

    def make_strategy(self) -> Strategy:
        """The assignment strategy with this experiment's parameters (sticky hashing salted by name)."""
        params = dict(self.params)
        if self.strategy == "sticky":
            params["salt"] = self.name
        if self.strategy in ("thompson", "epsilon-greedy"):
            params["reward_kind"] = self.reward
        return make_strategy(self.strategy, **params)

    def with_status(self, status: str) -> Experiment:
        if status not in STATUSES:
            raise UsageError(f"unknown status {status!r}: use one of {', '.join(STATUSES)}")
        return dataclasses.replace(self, status=status, updated_at=_now())

    def same_definition(self, other: Experiment) -> bool:
        """True when ``other`` defines the same experiment (status and timestamps aside)."""
        keys = ("name", "model", "variants", "strategy", "sticky_key", "shadow", "reward", "feedback_window_s")
        return all(getattr(self, k) == getattr(other, k) for k in keys) and dict(self.params) == dict(other.params)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model,
            "variants": [{"name": v.name, "weight": v.weight} for v in self.variants],
            "control": self.control,
            "strategy": self.strategy,
            "params": dict(self.params),
            "sticky_key": self.sticky_key,
            "shadow": None if self.shadow is None else {"target": self.shadow.target, "share": self.shadow.share},
            "reward": self.reward,
            "feedback_window_s": self.feedback_window_s,
            "status": self.status,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Experiment:
        shadow = data.get("shadow")
        return cls(
            name=data["name"],
            model=data["model"],
            variants=tuple(Variant(str(v["name"]), float(v["weight"])) for v in data["variants"]),
            strategy=data.get("strategy", "weighted"),
            params=dict(data.get("params") or {}),
            sticky_key=data.get("sticky_key"),
            shadow=None if not shadow else Shadow(str(shadow["target"]), float(shadow["share"])),
            reward=data.get("reward", "binary"),
            feedback_window_s=float(data.get("feedback_window_s", 86400.0)),
            status=data.get("status", "running"),
            created_at=data.get("created_at") or _now(),
            updated_at=data.get("updated_at") or _now(),
        )


def new_experiment(
    name: str,
    model: str,
    variants: str,
    *,
    strategy: str | None = None,
    sticky_key: str | None = None,
    shadow: str | None = None,
    params: Mapping[str, Any] | None = None,
    reward: str = "binary",
    feedback_window: str | float = "1d",
) -> Experiment:
    """Validate command-line values into an :class:`Experiment` (every bad value: :class:`UsageError`).

    ``strategy`` defaults to ``sticky`` when a ``sticky_key`` is given, else ``weighted``.
    """
    check_name(name)
    check_name(model, "model")
    arms = tuple(Variant(n, w) for n, w in parse_variants(variants))
    if strategy is None:
        strategy = "sticky" if sticky_key else "weighted"
    if strategy not in STRATEGIES:
        raise UsageError(f"unknown strategy {strategy!r}: use one of {', '.join(sorted(STRATEGIES))}")
    if strategy == "sticky" and not sticky_key:
        raise UsageError("the sticky strategy needs --sticky-key (the request field that identifies a user)")
    if sticky_key is not None and strategy != "sticky":
        raise UsageError(f"--sticky-key applies to the sticky strategy, not {strategy}")
    if sticky_key is not None and not re.match(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$", sticky_key):
        raise UsageError(f"bad --sticky-key {sticky_key!r}: a field name of the request")
    if reward not in REWARDS:
        raise UsageError(f"unknown reward {reward!r}: use one of {', '.join(REWARDS)}")
    given = dict(params or {})
    unknown = sorted(set(given) - set(STRATEGY_PARAMS.get(strategy, ())))
    if unknown:
        raise UsageError(f"{strategy} takes no {', '.join(unknown)}")
    shadow_arm = None
    if shadow:
        target, share = parse_shadow(shadow)
        if target in {v.name for v in arms}:
            raise UsageError(f"shadow {target!r} is already a variant: a shadow is a version outside the split")
        shadow_arm = Shadow(target, share)
    window = parse_duration(feedback_window, what="feedback window")
    if window <= 0:
        raise UsageError("the feedback window must be longer than 0 s")
    exp = Experiment(name=name, model=model, variants=arms, strategy=strategy, params=given,
                     sticky_key=sticky_key, shadow=shadow_arm, reward=reward, feedback_window_s=window)
    exp.make_strategy()  # the strategy validates its own parameters
    return exp
