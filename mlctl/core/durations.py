"""Durations as users (and Prometheus) write them: ``15s``, ``5m``, ``1h30m``, ``2d``, ``500ms`` or plain seconds.

>>> parse_duration("1h30m")
5400.0
>>> parse_duration("500ms")
0.5
>>> format_duration(5400)
'1h30m'
"""

from __future__ import annotations

import re

from mlctl.core.errors import UsageError

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")


def parse_duration(text: str | float | int, *, what: str = "duration") -> float:
    """Seconds in ``text``; a bad value raises :class:`UsageError` naming ``what``."""
    if isinstance(text, bool):
        raise UsageError(f"{what}: expected a duration such as 15s, 5m or 1h, got {text!r}")
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        raw = text.strip().lower()
        try:
            seconds = float(raw)
        except ValueError:
            parts = _PART.findall(raw)
            if not parts or "".join(n + u for n, u in parts) != raw:
                raise UsageError(
                    f"{what}: {text!r} is not a duration", hint="write e.g. 15s, 5m, 1h30m or 2d"
                ) from None
            seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        raise UsageError(f"{what}: {text!r} must be a positive, finite duration")
    return seconds


def format_duration(seconds: float) -> str:
    """A compact spelling of ``seconds`` (whole seconds; fractions as ms under 1 s)."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    out, rest = "", int(round(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            out += f"{rest // size}{unit}"
            rest %= size
    return out


def format_age(seconds: float | None) -> str:
    """An age as a table shows it: ``45s``, ``3m``, ``2h``, ``5d`` (``-`` when unknown).

    >>> format_age(150), format_age(None)
    ('2m', '-')
    """
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def seconds_since(stamp: str | None) -> float | None:
    """Seconds from an ISO-8601 time (with a zone) until now; None when missing or unreadable."""
    from datetime import UTC, datetime

    if not stamp:
        return None
    try:
        return max(0.0, (datetime.now(UTC) - datetime.fromisoformat(stamp)).total_seconds())
    except ValueError:
        return None


def age(stamp: str | None) -> str:
    """How long ago an ISO-8601 time was, as a table shows it (``45s``, ``3m``, ``2h``, ``5d``)."""
    return format_age(seconds_since(stamp))
