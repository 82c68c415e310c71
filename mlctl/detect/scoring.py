"""Score a metric frame with a detector and threshold it: the library behind ``mlctl detect score``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlctl.core.output import Result, Table, message
from mlctl.detect.sources import MetricFrame

if TYPE_CHECKING:
    from mlctl.detect.spec import DetectSpec


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
        return list(self.iter_rows())

    def columns(self) -> list[str]:
        """The keys of every row, in order."""
        names = ["value"] if self.frame.univariate else self.frame.names
        return [*(["series"] if self.series else []), "timestamp", *names, "anomaly_score", "is_anomaly"]

    def iter_rows(self) -> Iterator[dict[str, Any]]:
        """:meth:`rows`, one at a time."""
        f = self.frame
        names = ["value"] if f.univariate else f.names
        series = _series_label(self.series) if self.series else None
        for i in range(len(f)):
            row: dict[str, Any] = {"series": series} if series is not None else {}
            row["timestamp"] = f.labels[i]
            for j, name in enumerate(names):
                v = float(f.values[i, j])
                row[name] = v if np.isfinite(v) else (None if np.isnan(v) else str(v))
            row["anomaly_score"] = round(float(self.scores[i]), 6)
            row["is_anomaly"] = bool(self.flags[i])
            yield row

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


class ScoreReport(Result):
    """``mlctl detect score``: the scored series (one per Prometheus series, or the one input).

    The document is ``{"summary": [...], "points": [...]}`` whatever the format and however many
    series: ``summary`` is always a list, one entry per series. ``-o csv``/``jsonl`` write each
    point as it is produced; the table shows each summary and the flagged points.
    """

    def __init__(self, results: Sequence[ScoreResult], *, anomalies_only: bool = False) -> None:
        self.results = list(results)
        self.anomalies_only = anomalies_only
        self.columns = self.results[0].columns() if self.results else None  # csv header, also with no point

    def summaries(self) -> list[dict[str, Any]]:
        return [res.summary() for res in self.results]

    def rows(self) -> Iterator[dict[str, Any]]:
        for res in self.results:
            for row in res.iter_rows():
                if row["is_anomaly"] or not self.anomalies_only:
                    yield row

    def document(self) -> dict[str, Any]:
        return {"summary": self.summaries(), "points": list(self.rows())}

    def tables(self) -> list[Table]:
        blocks = [Table({k: v for k, v in s.items() if k not in ("warnings", "params") and v is not None},
                        title="mlctl detect score") for s in self.summaries()]
        flagged = [r for res in self.results for r in res.iter_rows() if r["is_anomaly"]]
        blocks.append(Table(flagged, title=f"{len(flagged)} anomalous point(s)"))
        return blocks


def score(
    spec: DetectSpec,
    *,
    input: str | None = None,
    query: str | None = None,
    since: str = "6h",
    anomalies_only: bool = False,
    plot: str | Path | None = None,
) -> ScoreReport:
    """Score ``input`` (a file, or ``-`` for stdin) or the Prometheus ``query`` over the last ``since``
    with ``spec``'s detector, parameters and threshold (and its ``prometheus`` URL and step).

    Input warnings are told on stderr as they are found; ``plot`` also draws the series and scores.
    """
    from mlctl.core.errors import UsageError
    from mlctl.detect.sources import read_input, read_prometheus

    if (input is None) == (query is None):
        raise UsageError("give either INPUT or --query", hint="mlctl detect score cpu.csv, or --query 'up' --since 1h")
    if input is not None:
        frames: list[tuple[dict[str, str], MetricFrame]] = [({}, read_input(input))]
    else:
        from mlctl.core.durations import parse_duration

        assert query is not None and spec.prometheus is not None
        frames = read_prometheus(str(spec.prometheus), query, since_s=parse_duration(since, what="--since"),
                                 step_s=spec.step_s)
    results = [score_frame(f, detector=spec.detector, params=spec.params, threshold=spec.threshold, series=labels)
               for labels, f in frames]  # fmt: skip
    for res in results:
        for w in res.frame.warnings:
            message(f"warning: {res.frame.source}: {w}")
    if plot is not None:
        from mlctl.detect.plot import plot as draw

        message(f"plot: {draw(results, Path(plot))}")
    return ScoreReport(results, anomalies_only=anomalies_only)
