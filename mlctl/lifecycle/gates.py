"""Gates: the bars a trained model must clear before it is registered.

Pure functions over metric values; no MLflow here. A gate that fails makes ``mlctl train``
exit 3 (:class:`~mlctl.core.errors.CheckFailed`) and register nothing.

* ``min_<metric>: x`` passes when the metric is ``>= x``;
* ``max_<metric>: x`` passes when the metric is ``<= x`` (error metrics: ``max_rmse``);
* ``max_regression_vs_champion: d`` passes when the primary metric is at most ``d`` worse than the
  champion's (the version holding alias ``champion``); its value is how much worse it is
  (negative: better). It passes when there is no champion yet.

A metric that could not be computed (NaN) fails its gate.

>>> [g.passed for g in evaluate({"f1": 0.9}, {"min_f1": 0.8, "max_regression_vs_champion": 0.01},
...                              primary_metric="f1", champion={"f1": 0.95})]
[True, False]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from mlctl.lifecycle.metrics import higher_is_better
from mlctl.lifecycle.spec import CHAMPION_GATE, parse_gate


@dataclass(frozen=True)
class GateResult:
    """One gate: its name, the measured value, the threshold and whether it passed."""

    name: str
    value: float | None
    threshold: float
    passed: bool


def _finite(x: float | None) -> bool:
    return x is not None and not math.isnan(x)


def regression_vs(metric: str, value: float, champion_value: float) -> float:
    """How much worse ``value`` is than ``champion_value`` (positive: worse, negative: better).

    >>> regression_vs("rmse", 1.2, 1.0), regression_vs("r2", 0.7, 0.8)
    (0.19999999999999996, 0.10000000000000009)
    """
    return champion_value - value if higher_is_better(metric) else value - champion_value


def evaluate(metrics: Mapping[str, float], gates: Mapping[str, float], *, primary_metric: str,
             champion: Mapping[str, float] | None = None) -> list[GateResult]:
    """Check every gate against ``metrics`` (and the champion's metrics, when there is one)."""
    results: list[GateResult] = []
    for name, threshold in gates.items():
        kind, metric = parse_gate(name)
        if kind == "champion":
            current = metrics.get(primary_metric)
            theirs = None if champion is None else champion.get(primary_metric)
            if not _finite(theirs):
                results.append(GateResult(name, None, threshold, True))  # nothing to regress against
                continue
            if not _finite(current):
                results.append(GateResult(name, None, threshold, False))
                continue
            delta = regression_vs(primary_metric, float(current), float(theirs))  # type: ignore[arg-type]
            results.append(GateResult(name, delta, threshold, delta <= threshold + 1e-12))
            continue
        value = metrics.get(metric)
        if not _finite(value):
            results.append(GateResult(name, None, threshold, False))
            continue
        assert value is not None
        passed = value >= threshold if kind == "min" else value <= threshold
        results.append(GateResult(name, float(value), threshold, passed))
    return results


def summary(results: list[GateResult]) -> str:
    """One line naming the failed gates, e.g. ``min_f1: 0.71 < 0.8``."""
    parts = []
    for g in results:
        if g.passed:
            continue
        shown = "n/a" if g.value is None else f"{g.value:.4g}"
        if g.name == CHAMPION_GATE:
            parts.append(f"{g.name}: {shown} worse than the champion, allowed {g.threshold:g}")
        else:
            op = "<" if g.name.startswith("min_") else ">"
            parts.append(f"{g.name}: {shown} {op} {g.threshold:g}")
    return "; ".join(parts)
