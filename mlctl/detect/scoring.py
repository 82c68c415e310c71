"""Score a metric frame with a detector and threshold it: the library behind ``mlctl detect score``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlctl.detect.sources import MetricFrame


@dataclass
class ScoreResult:
    """Per-point scores of one frame, and what was found."""

    frame: MetricFrame
    scores: np.ndarray
    flags: np.ndarray
    detector: str
    params: dict[str, Any]
    threshold: float
    series: dict[str, str] = field(default_factory=dict)  # Prometheus labels, when the frame came from there

    @property
    def anomalies(self) -> int:
        return int(self.flags.sum())

    def rows(self) -> list[dict[str, Any]]:
        """``timestamp, value, anomaly_score, is_anomaly`` per point (one column per metric when several)."""
        f = self.frame
        names = ["value"] if f.univariate else f.names
        series = _series_label(self.series) if self.series else None
        out = []
        for i in range(len(f)):
            row: dict[str, Any] = {"series": series} if series is not None else {}
            row["timestamp"] = f.labels[i]
            for j, name in enumerate(names):
                v = float(f.values[i, j])
                row[name] = v if np.isfinite(v) else (None if np.isnan(v) else str(v))
            row["anomaly_score"] = round(float(self.scores[i]), 6)
            row["is_anomaly"] = bool(self.flags[i])
            out.append(row)
        return out

    def summary(self) -> dict[str, Any]:
        f = self.frame
        first, last = (f.labels[0], f.labels[-1]) if len(f) else (None, None)
        return {
            "source": f.source,
            "series": self.series or None,
            "metrics": f.names,
            "points": len(f),
            "anomalies": self.anomalies,
            "detector": self.detector,
            "params": self.params,
            "threshold": self.threshold,
            "first": first,
            "last": last,
            "max_score": round(float(self.scores.max()), 6) if len(self.scores) else None,
            "warnings": list(f.warnings),
        }


def _series_label(labels: dict[str, str]) -> str:
    name = labels.get("__name__", "")
    rest = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{name}{{{rest}}}" if rest or not name else name


def score_frame(
    frame: MetricFrame,
    *,
    detector: str | None = None,
    params: dict[str, Any] | None = None,
    threshold: float | None = None,
    series: dict[str, str] | None = None,
) -> ScoreResult:
    """Run a fresh detector over the frame (multivariate when it has several metrics) and threshold it."""
    from mlctl.detect.base import DEFAULT_DETECTOR, make_detector

    name = detector or DEFAULT_DETECTOR
    det = make_detector(name, **(params or {}))
    values = frame.values[:, 0] if frame.univariate else frame.values
    scores = np.asarray(det.score(values), dtype=float)
    cut = det.default_threshold if threshold is None else float(threshold)
    return ScoreResult(frame=frame, scores=scores, flags=scores >= cut, detector=name, params=det.get_params(),
                       threshold=cut, series=dict(series or {}))  # fmt: skip
