"""Metric sources for ``mlctl detect``: CSV or Parquet files, JSON lines, and Prometheus history.

Every source yields a :class:`MetricFrame`: timestamps in time order, one column per metric,
and the warnings found on the way. Nothing is dropped silently: rows out of order are scored
in time order, duplicate timestamps are kept, missing, NaN and infinite values stay in the
output (scored 0, never learned), gaps are reported, and a value that is not a number, a
missing timestamp, an empty file or a file with only a header is an error naming the line.

A file with a single column that is not a timestamp (``value`` alone) is a series in file order:
its points are numbered 0, 1, 2... in place of timestamps, with a warning saying so.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from mlctl.core.errors import NotFound, UsageError

TIME_COLUMNS = ("timestamp", "time", "ts", "datetime", "date")
_MISSING = {"", "nan", "na", "n/a", "null", "none"}


@dataclass
class MetricFrame:
    """A multivariate metric series: ``values[i, j]`` is metric ``names[j]`` at ``times[i]``."""

    times: np.ndarray  # float seconds since the epoch, non-decreasing
    values: np.ndarray  # float, shape (n, d)
    names: list[str]
    labels: list[str]  # the timestamps as written in the input (kept verbatim for the output)
    source: str
    warnings: list[str] = field(default_factory=list)
    indexed: bool = False  # no timestamps in the input: times and labels are the row numbers 0, 1, 2...

    def __len__(self) -> int:
        return len(self.times)

    @property
    def univariate(self) -> bool:
        return self.values.shape[1] == 1


def _line_list(lines: Sequence[int], limit: int = 5) -> str:
    shown = ", ".join(str(n) for n in lines[:limit])
    return shown + (f" and {len(lines) - limit} more" if len(lines) > limit else "")


def parse_timestamp(raw: Any) -> float | None:
    """Seconds since the epoch from an ISO 8601 string, a datetime, or epoch seconds/milliseconds."""
    from datetime import UTC, datetime

    if raw is None:
        return None
    if isinstance(raw, datetime):
        return (raw if raw.tzinfo else raw.replace(tzinfo=UTC)).timestamp()
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        value = float(raw)
    else:
        text = str(raw).strip()
        if not text:
            return None
        try:
            value = float(text)
        except ValueError:
            try:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                return None
            return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    if not math.isfinite(value):
        return None
    seconds = value / 1000.0 if abs(value) >= 1e11 else value
    return seconds if _MIN_TIME <= seconds <= _MAX_TIME else None  # beyond years 1..9999: not a time


#: the range of datetime (years 1 to 9999) in seconds since the epoch
_MIN_TIME = -62135596800.0
_MAX_TIME = 253402300799.0


def _number(raw: Any) -> float | None:
    """A float from a cell; ``nan`` for missing or NaN/inf spellings; ``None`` when not a number."""
    if raw is None:
        return math.nan
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        return float(raw)
    text = str(raw).strip()
    if text.lower() in _MISSING:
        return math.nan
    try:
        return float(text)
    except ValueError:
        return None


def frame_from_rows(header: Sequence[str], rows: Iterable[tuple[int, Sequence[Any]]], *, source: str) -> MetricFrame:
    """Build a frame from ``(line number, cells)`` rows under ``header``; validate as described above."""
    header = [str(h).strip() for h in header]
    if not header or not any(header):
        raise UsageError(f"{source}: the header is empty")
    lowered = [h.lower() for h in header]
    named = next((lowered.index(c) for c in TIME_COLUMNS if c in lowered), None)
    # one column that is not a timestamp: a series in file order, numbered 0, 1, 2...
    t_col: int | None = None if named is None and len(header) == 1 else (named or 0)
    metric_cols = [i for i in range(len(header)) if i != t_col]
    if not metric_cols:
        raise UsageError(
            f"{source}: no value column: the only column, {header[0]!r}, holds timestamps",
            hint="give timestamp,value or one column per metric (a single value column is scored in file order)",
        )
    names = [header[i] or f"column{i + 1}" for i in metric_cols]
    if len(set(names)) != len(names):
        raise UsageError(f"{source}: duplicate column names in the header: {', '.join(names)}")
    times: list[float] = []
    labels: list[str] = []
    values: list[list[float]] = []
    bad_time: list[int] = []
    bad_value: list[tuple[int, str, Any]] = []
    short: list[int] = []
    for line, cells in rows:
        if len(cells) != len(header):
            short.append(line)
            continue
        t = float(len(times)) if t_col is None else parse_timestamp(cells[t_col])
        if t is None:
            bad_time.append(line)
            continue
        row = []
        for i, name in zip(metric_cols, names, strict=True):
            v = _number(cells[i])
            if v is None:
                bad_value.append((line, name, cells[i]))
                v = math.nan
            row.append(v)
        times.append(t)
        if t_col is None:
            labels.append(str(int(t)))
        else:
            labels.append(cells[t_col] if isinstance(cells[t_col], str) else _iso(t))
        values.append(row)
    if short:
        raise UsageError(
            f"{source}: line {_line_list(short)} has {'' if len(short) == 1 else 'a '}wrong number of "
            f"fields (expected {len(header)})",
            hint="every row needs a timestamp and each metric",
        )
    if bad_time:
        raise UsageError(
            f"{source}: missing or unreadable timestamp on line {_line_list(bad_time)}",
            hint="timestamps are ISO 8601 (2024-05-01T12:00:00Z) or epoch seconds (or milliseconds) "
            "between the years 1 and 9999",
        )
    if bad_value:
        line, name, raw = bad_value[0]
        more = f" ({len(bad_value)} cells in all)" if len(bad_value) > 1 else ""
        raise UsageError(
            f"{source}: line {line}, column {name!r}: {str(raw)[:40]!r} is not a number{more}",
            hint="leave a cell empty (or write NaN) for a missing value",
        )
    if not times:
        raise UsageError(f"{source}: has a header but no data rows")
    frame = _finish(
        np.asarray(times), np.asarray(values, dtype=float).reshape(len(times), len(names)), names, labels, source
    )
    if t_col is None:
        frame.indexed = True
        frame.warnings.insert(0, f"no timestamp column: the {len(times)} point(s) are numbered 0, 1, 2... "
                                 "in file order")  # fmt: skip
    return frame


def _iso(t: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _finish(times: np.ndarray, values: np.ndarray, names: list[str], labels: list[str], source: str) -> MetricFrame:
    warnings: list[str] = []
    diffs = np.diff(times)
    if (diffs < 0).any():
        order = np.argsort(times, kind="stable")
        warnings.append(f"{int((diffs < 0).sum())} row(s) out of time order: scored in time order")
        times, values, labels = times[order], values[order], [labels[i] for i in order]
        diffs = np.diff(times)
    dups = int((diffs == 0).sum())
    if dups:
        warnings.append(f"{dups} duplicate timestamp(s): kept and scored in input order")
    positive = diffs[diffs > 0]
    if len(positive) >= 2:
        step = float(np.median(positive))
        gaps = positive[positive > 2.5 * step]
        if len(gaps):
            from mlctl.core.durations import format_duration

            warnings.append(
                f"{len(gaps)} gap(s) longer than 2.5 steps of {format_duration(step)} "
                f"(largest {format_duration(float(gaps.max()))}): scored in sequence, nothing filled in"
            )
    missing = ~np.isfinite(values)
    if missing.any():
        warnings.append(f"{int(missing.sum())} missing, NaN or infinite value(s): kept, scored 0, not learned")
    for j, name in enumerate(names):
        col = values[:, j][np.isfinite(values[:, j])]
        if len(col) == 0:
            warnings.append(f"{name!r} has no finite value")
        elif len(values) > 1 and col.max() == col.min():  # not np.ptp: max - min overflows near 1e308
            warnings.append(f"{name!r} is constant: nothing can stand out")
    return MetricFrame(times=times, values=values, names=names, labels=labels, source=source, warnings=warnings)


def read_csv(handle: IO[str], *, source: str) -> MetricFrame:
    import csv

    reader = csv.reader(handle)
    try:
        header = next(reader)
    except StopIteration:
        raise UsageError(f"{source}: the file is empty", hint="expected a header such as timestamp,value") from None
    except csv.Error as exc:
        raise UsageError(f"{source}: not readable as CSV: {exc}") from None
    try:
        rows = [(n, cells) for n, cells in enumerate(reader, start=2) if cells and any(c.strip() for c in cells)]
    except csv.Error as exc:
        raise UsageError(f"{source}: line {reader.line_num}: {exc}") from None
    return frame_from_rows(header, rows, source=source)


def read_jsonl(handle: IO[str], *, source: str = "stdin") -> MetricFrame:
    """One JSON object per line: ``{"timestamp": ..., "value": ...}`` or one key per metric."""
    header: list[str] | None = None
    rows: list[tuple[int, list[Any]]] = []
    for n, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{source}: line {n} is not JSON: {exc.msg}") from None
        if not isinstance(doc, dict):
            raise UsageError(f"{source}: line {n} is not a JSON object")
        if header is None:
            header = list(doc)
        missing = [k for k in header if k not in doc]
        extra = [k for k in doc if k not in header]
        if missing or extra:
            raise UsageError(f"{source}: line {n} has keys {sorted(doc)}, the first line had {sorted(header)}")
        rows.append((n, [doc[k] for k in header]))
    if header is None:
        raise UsageError(
            f"{source}: no input", hint='send lines like {"timestamp": "2024-05-01T12:00:00Z", "value": 1}'
        )
    return frame_from_rows(header, rows, source=source)


def read_parquet(path: Path) -> MetricFrame:
    from mlctl.core.errors import require

    pd = require("pandas", "ml", feature="Parquet input")
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for a bad file
        raise UsageError(f"{path}: not readable as Parquet: {exc}") from None
    if df.columns.empty:
        raise UsageError(f"{path}: the file has no columns")
    rows = ((i + 1, list(r)) for i, r in enumerate(df.itertuples(index=False, name=None)))
    return frame_from_rows([str(c) for c in df.columns], rows, source=str(path))


def read_input(spec: str, *, stdin: IO[str] | None = None) -> MetricFrame:
    """Read ``spec``: a CSV or Parquet path, ``-`` for JSON lines (or CSV) on stdin."""
    import sys

    if spec == "-":
        text = (stdin or sys.stdin).read()
        first = text.lstrip()[:1]
        reader = read_jsonl if first == "{" else read_csv
        if not text.strip():
            raise UsageError("stdin: no input", hint="pipe JSON lines or CSV into `mlctl detect score -`")
        return reader(io.StringIO(text), source="stdin")
    path = Path(spec)
    if not path.exists():
        raise NotFound(f"no such file: {spec}")
    if path.is_dir():
        raise UsageError(f"{spec} is a folder", hint="give one CSV, Parquet or JSON-lines file")
    if path.suffix.lower() in (".parquet", ".pq"):
        return read_parquet(path)
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{spec}: not UTF-8 text (byte {exc.start})", hint="give a CSV, Parquet or JSON-lines file"
        ) from None
    if not text.strip():
        raise UsageError(f"{spec}: the file is empty", hint="expected a header such as timestamp,value")
    if path.suffix.lower() in (".jsonl", ".ndjson") or text.lstrip()[:1] == "{":
        return read_jsonl(io.StringIO(text), source=spec)
    return read_csv(io.StringIO(text), source=spec)


def frames_from_series(series: Sequence[Any], *, source: str) -> list[tuple[dict[str, str], MetricFrame]]:
    """One univariate frame per Prometheus series (objects with ``labels``, ``timestamps``, ``values``)."""
    out = []
    for s in series:
        times = np.asarray(s.timestamps, dtype=float)
        values = np.asarray(s.values, dtype=float).reshape(-1, 1)
        name = s.labels.get("__name__", "value")
        frame = _finish(times, values, [name], [_iso(t) for t in times], source)
        out.append((dict(s.labels), frame))
    return out


def read_prometheus(url: str, query: str, *, since_s: float, step_s: float,
                    now: float | None = None) -> list[tuple[dict[str, str], MetricFrame]]:
    """One frame per series of ``query`` over the last ``since_s`` seconds at ``step_s`` resolution
    (Prometheus ``query_range``): unreachable is exit 4, a PromQL error or no series exit 2."""
    import time

    from mlctl.connectors.prometheus import PrometheusClient, require_series

    end = time.time() if now is None else now
    series = require_series(PrometheusClient(url).query_range(query, end - since_s, end, step_s), query)
    return frames_from_series(series, source=url)
