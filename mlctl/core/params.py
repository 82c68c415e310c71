"""Declared parameters: the keyword-only, validated constructor arguments of detectors,
assignment strategies and the like (scikit-learn's convention: ``__init__`` only stores them).

A class lists its parameters in ``params`` (name -> :class:`Param`); :class:`Parameterised`
checks what it is given against that table on construction (a bad value raises
:class:`~mlctl.core.errors.UsageError` naming the class's ``kind`` and ``name``), fills in the
defaults and stores each value as an attribute of the same name.

>>> class Smoother(Parameterised):
...     kind, name = "smoother", "ewma"
...     params = {"alpha": Param(float, 0.3, "weight of the newest value", low=0.0, high=1.0)}
>>> Smoother(alpha="0.5").alpha
0.5
>>> Smoother().get_params()
{'alpha': 0.3}
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from mlctl.core.errors import UsageError


@dataclass(frozen=True)
class Param:
    """One declared parameter: its type, default, meaning, bounds or choices.

    ``required=True`` (with ``default=None``) means the caller must give it, and a string must
    not be empty.
    """

    type: type
    default: Any
    doc: str
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] | None = None
    required: bool = False


def validate_params(who: str, table: dict[str, Param], given: dict[str, Any]) -> dict[str, Any]:
    """Check ``given`` against ``table`` and fill in the defaults; ``who`` names the owner in errors."""
    unknown = sorted(set(given) - set(table))
    if unknown:
        known = ", ".join(sorted(table)) or "none"
        raise UsageError(f"{who} has no parameter {unknown[0]!r}", hint=f"its parameters: {known}")
    out: dict[str, Any] = {}
    for key, spec in table.items():
        value = given.get(key, spec.default)
        if value is None:
            if spec.required:
                raise UsageError(f"{who} needs the parameter {key!r} ({spec.doc})")
            out[key] = value
            continue
        if isinstance(value, bool) and spec.type is not bool:
            raise UsageError(f"{who}: {key} must be {spec.type.__name__}, got {value!r}")
        if not isinstance(value, spec.type):
            if spec.type is int and isinstance(value, float) and not value.is_integer():
                raise UsageError(f"{who}: {key} must be int, got {value!r}")
            try:
                value = spec.type(value)
            except (TypeError, ValueError):
                raise UsageError(f"{who}: {key} must be {spec.type.__name__}, got {value!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"{who}: {key} must be a finite number, got {value!r}")
        if spec.choices is not None and value not in spec.choices:
            raise UsageError(f"{who}: {key} must be one of {', '.join(map(str, spec.choices))}, got {value!r}")
        if isinstance(value, int | float) and not isinstance(value, bool):
            if (spec.low is not None and value < spec.low) or (spec.high is not None and value > spec.high):
                raise UsageError(f"{who}: {key}={value} is outside [{spec.low}, {spec.high}]")
        if spec.required and isinstance(value, str) and not value.strip():
            raise UsageError(f"{who}: {key} must not be empty ({spec.doc})")
        out[key] = value
    return out


class Parameterised:
    """Keyword-only parameters, validated against ``params`` and stored as attributes."""

    kind: ClassVar[str] = "component"
    name: ClassVar[str] = ""
    params: ClassVar[dict[str, Param]] = {}

    def __init__(self, **params: Any) -> None:
        self._params = validate_params(f"{self.kind} {self.name!r}", type(self).params, params)
        for key, value in self._params.items():
            setattr(self, key, value)

    def get_params(self) -> dict[str, Any]:
        """The parameters, defaults filled in."""
        return dict(self._params)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params.items())
        return f"{type(self).__name__}({args})"
