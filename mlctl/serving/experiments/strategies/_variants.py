"""Parsing and checking the variants of an experiment as written on a command line or in a config file."""

from __future__ import annotations

import math

from mlctl.core.errors import UsageError

#: how far the weights may sum from 100 (float rounding of shares such as 33.333333)
WEIGHT_SUM_TOLERANCE = 1e-6
_FORMAT = "write NAME:PERCENT, e.g. champion:90"


def _split(item: str, what: str) -> tuple[str, str]:
    """``NAME:NUMBER`` -> (name, number text); a name may itself hold ':' (the last one separates)."""
    if ":" not in item:
        raise UsageError(f"{what} {item!r} has no ':' before its share", hint=_FORMAT)
    name, _, number = item.rpartition(":")
    name = name.strip()
    if not name:
        raise UsageError(f"{what} {item!r} has an empty name", hint=_FORMAT)
    return name, number.strip()


def _number(name: str, text: str, what: str) -> float:
    raw = text[:-1].rstrip() if text.endswith("%") else text
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"{what} of {name!r} is not a number: {text!r}", hint=_FORMAT) from None
    if not math.isfinite(value):
        raise UsageError(f"{what} of {name!r} must be a finite number, got {text!r}", hint=_FORMAT)
    return value


def parse_variants(spec: str) -> list[tuple[str, float]]:
    """``"champion:90,challenger:10"`` -> ``[("champion", 90.0), ("challenger", 10.0)]``.

    Weights are percentages (a trailing ``%`` is allowed) summing to 100; 0 pauses a variant.
    Raises :class:`UsageError` naming the problem: an entry without ``:``, an empty name, a
    weight that is not a number or is negative, a name listed twice, fewer than two variants,
    weights not summing to 100.

    >>> parse_variants("champion:90, challenger:10")
    [('champion', 90.0), ('challenger', 10.0)]
    >>> parse_variants("champion:90,challenger:20")
    Traceback (most recent call last):
    ...
    mlctl.core.errors.UsageError: variant weights sum to 110, not 100
    """
    if not isinstance(spec, str) or not spec.strip():
        raise UsageError("no variants given", hint="write NAME:PERCENT,NAME:PERCENT, e.g. champion:90,challenger:10")
    out: list[tuple[str, float]] = []
    seen: set[str] = set()
    for position, item in enumerate(spec.split(","), start=1):
        item = item.strip()
        if not item:
            raise UsageError(f"variant {position} of {spec!r} is empty (a stray ',')", hint=_FORMAT)
        name, text = _split(item, "variant")
        weight = _number(name, text, "weight")
        if weight < 0:
            raise UsageError(f"weight of {name!r} is negative ({text}); use 0 to pause a variant")
        if name in seen:
            raise UsageError(f"variant {name!r} is listed twice")
        seen.add(name)
        out.append((name, weight))
    if len(out) < 2:
        raise UsageError(f"an experiment needs at least two variants, got only {out[0][0]!r}",
                         hint="add the variant to compare with, e.g. champion:90,challenger:10")
    total = math.fsum(w for _, w in out)
    if abs(total - 100.0) > WEIGHT_SUM_TOLERANCE:
        raise UsageError(f"variant weights sum to {total:g}, not 100",
                         hint="weights are percentages of the traffic: make them add up to 100")
    return out


def parse_shadow(spec: str) -> tuple[str, float]:
    """``"candidate:5"`` -> ``("candidate", 5.0)``: a shadow variant and the percentage of requests
    mirrored to it, in (0, 100]. Raises :class:`UsageError` naming the problem.

    >>> parse_shadow("candidate:5")
    ('candidate', 5.0)
    """
    if not isinstance(spec, str) or not spec.strip():
        raise UsageError("no shadow variant given", hint="write NAME:PERCENT, e.g. candidate:5")
    item = spec.strip()
    if "," in item:
        raise UsageError(f"a shadow is one variant, got {spec!r}", hint="write NAME:PERCENT, e.g. candidate:5")
    name, text = _split(item, "shadow")
    share = _number(name, text, "shadow share")
    if not 0.0 < share <= 100.0:
        raise UsageError(f"shadow share of {name!r} must be above 0 and at most 100, got {text}")
    return name, share
