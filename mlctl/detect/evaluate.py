"""Evaluate a detector on a NAB-layout corpus: run it on every file, then score with NAB's rules.

The corpus layout is NAB's: ``DATA/<category>/<file>.csv`` with ``timestamp,value`` columns, and
a labels file keyed ``category/file.csv`` (``labels/combined_windows.json``). :func:`evaluate`
runs a fresh detector over each file, optionally writes the anomaly scores in NAB's results
layout (``RESULTS/<detector>/<category>/<detector>_<file>.csv`` with
``timestamp,value,anomaly_score,label``) so any NAB scorer can read them, and scores every
requested profile with :mod:`mlctl.detect.nab`. :func:`score_results` scores an existing
results folder, NAB's own published ones included, without running anything.

:func:`leave_one_group_out` scores held out: each group of files (a NAB category) at the
threshold, and optionally the detector configuration, chosen on the other groups only, summed
into one normalised figure; :func:`corpus_scores` gives it a detector's raw scores per file.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlctl.core.errors import ConfigError, NotFound, OperationFailed, UsageError
from mlctl.core.output import Result, Table, to_data
from mlctl.detect.nab import (
    PROFILES,
    Corpus,
    CorpusScore,
    PreparedCorpus,
    Window,
    get_profile,
    load_windows,
    prepare_corpus,
    score_corpus,
    window_labels,
)

if TYPE_CHECKING:
    from mlctl.detect.base import Detector

DEFAULT_PROFILES: tuple[str, ...] = tuple(PROFILES)
#: ``progress(file_key, done, total)``, called after each file
Progress = Callable[[str, int, int], None]


@dataclass
class EvaluationReport:
    """Per-profile NAB results (with per-file rows) for one detector on one corpus."""

    detector: str
    params: dict[str, Any]
    labels: str
    data_dir: str | None
    results_dir: str | None
    files: int
    rows: int
    profiles: dict[str, CorpusScore]
    skipped: list[str] = field(default_factory=list)  # data files with no entry in the labels
    missing: list[str] = field(default_factory=list)  # labelled files not found in the data
    warnings: list[str] = field(default_factory=list)
    detect_seconds: float = 0.0
    score_seconds: float = 0.0

    @property
    def scores(self) -> dict[str, float | None]:
        """The normalised NAB score of each profile."""
        return {name: result.score for name, result in self.profiles.items()}

    def table_rows(self) -> list[dict[str, Any]]:
        """One row per file (raw score per profile), then the thresholds and normalised scores."""
        names = list(self.profiles)
        if not names:
            return []
        lead = self.profiles[names[0]]
        out: list[dict[str, Any]] = []
        per_profile = {name: {f.file: f for f in result.files} for name, result in self.profiles.items()}
        for f in lead.files:
            row: dict[str, Any] = {"file": f.file, "windows": f.windows, "detected": f.detected_windows, "fp": f.fp}
            row.update({name: per_profile[name][f.file].score for name in names})
            out.append(row)
        blank = {"windows": None, "detected": None, "fp": None}
        out.append(
            {
                "file": "raw total",
                "windows": lead.windows,
                "detected": lead.detected_windows,
                "fp": lead.fp,
                **{name: r.raw for name, r in self.profiles.items()},
            }
        )
        out.append({"file": "threshold", **blank, **{name: r.threshold for name, r in self.profiles.items()}})
        out.append({"file": "NAB score", **blank, **{name: r.score for name, r in self.profiles.items()}})
        return out


class EvaluationResult(Result):
    """An :class:`EvaluationReport` to render: the document is every field of the report; csv,
    jsonl and the table write its :meth:`~EvaluationReport.table_rows` (per file, then totals)."""

    def __init__(self, report: EvaluationReport) -> None:
        self.report = report

    def document(self) -> dict[str, Any]:
        return to_data(self.report)

    def rows(self) -> list[dict[str, Any]]:
        return self.report.table_rows()

    def tables(self) -> list[Table]:
        return [Table(self.report.table_rows(), title=f"NAB scores of {self.report.detector}")]

    def notes(self) -> list[str]:
        r = self.report
        summary = ", ".join(f"{name} {score:.1f}" if score is not None else f"{name} n/a"
                            for name, score in r.scores.items())  # fmt: skip
        return [f"NAB score ({r.files} files, {r.rows} rows): {summary}"]


# --------------------------------------------------------------------------- reading and writing


@dataclass
class _Series:
    key: str
    timestamps: list[str]
    values: np.ndarray | None
    scores: np.ndarray | None = None


def _read_csv(path: Path, columns: Sequence[str], optional: Sequence[str] = ()) -> dict[str, list[str]]:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = [h.strip() for h in next(reader, [])]
            rows = [row for row in reader if row]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    missing = [c for c in columns if c not in header]
    if missing:
        raise ConfigError(f"{path}: no {missing[0]!r} column (columns: {', '.join(header) or 'none'})")
    if not rows:
        raise ConfigError(f"{path}: the file has no rows")
    wanted = list(columns) + [c for c in optional if c in header]
    width = max(header.index(c) for c in wanted) + 1
    short = next((n for n, row in enumerate(rows) if len(row) < width), None)
    if short is not None:
        raise ConfigError(f"{path}: data row {short + 1} has too few columns")
    out: dict[str, list[str]] = {}
    for c in wanted:
        i = header.index(c)
        out[c] = [row[i] for row in rows]
    return out


def _floats(path: Path, name: str, texts: list[str]) -> np.ndarray:
    try:
        return np.asarray(texts, dtype=float)  # fast path: every cell is a number
    except ValueError:
        pass
    try:
        return np.asarray([float(t) if t.strip() else math.nan for t in texts], dtype=float)
    except ValueError as exc:
        raise ConfigError(f"{path}: column {name!r} holds a value that is not a number ({exc})") from None


def read_series(path: str | Path) -> tuple[list[str], np.ndarray]:
    """A NAB data file's ``timestamp`` strings and ``value`` floats."""
    path = Path(path)
    cols = _read_csv(path, ["timestamp", "value"])
    return cols["timestamp"], _floats(path, "value", cols["value"])


def discover(data_dir: str | Path) -> dict[str, Path]:
    """Every CSV under ``data_dir``, keyed by its ``/``-separated path relative to it."""
    root = Path(data_dir)
    if not root.is_dir():
        raise NotFound(f"data folder not found: {root}", hint="pass the folder that holds <category>/<file>.csv")
    found = {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*.csv")) if p.is_file()}
    if not found:
        raise UsageError(f"no CSV files under {root}", hint="NAB's layout is DATA/<category>/<file>.csv")
    return found


def results_path(results_dir: str | Path, detector: str, key: str) -> Path:
    """Where NAB keeps a detector's results for a data file: ``<dir>/<det>/<category>/<det>_<file>``."""
    rel = Path(key)
    return Path(results_dir) / detector / rel.parent / f"{detector}_{rel.name}"


def _fmt(x: float) -> str:
    return "" if math.isnan(x) else repr(float(x))


def _write_results(results_dir: Path, detector: str, series: _Series, windows: Sequence[Window]) -> None:
    assert series.scores is not None
    path = results_path(results_dir, detector, series.key)
    labels = window_labels(series.timestamps, windows)
    values = series.values if series.values is not None else np.full(len(series.timestamps), math.nan)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["timestamp", "value", "anomaly_score", "label"])
            for row in zip(series.timestamps, values.tolist(), series.scores.tolist(), labels.tolist(), strict=True):
                w.writerow([row[0], _fmt(row[1]), _fmt(row[2]), row[3]])
    except OSError as exc:
        raise OperationFailed(f"cannot write results to {path}: {exc}") from None


def _write_summaries(results_dir: Path, detector: str, profiles: Mapping[str, CorpusScore]) -> None:
    """NAB's ``<det>_<profile>_scores.csv`` summary of each profile, with a Totals row."""
    for name, result in profiles.items():
        path = Path(results_dir) / detector / f"{detector}_{name}_scores.csv"
        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["Detector", "Profile", "File", "Threshold", "Score", "TP", "TN", "FP", "FN", "Total_Count"])
            for f in result.files:
                w.writerow([detector, name, f.file, result.threshold, f.score, f.tp, f.tn, f.fp, f.fn, f.rows])
            w.writerow(
                [
                    "Totals",
                    "",
                    "",
                    "",
                    result.raw,
                    result.tp,
                    result.tn,
                    result.fp,
                    result.fn,
                    sum(f.rows for f in result.files),
                ]
            )


# --------------------------------------------------------------------------- running and scoring


def _run_detector(job: tuple[type[Detector], dict[str, Any], np.ndarray | None]) -> np.ndarray:
    """A fresh detector over one file's values (the class travels to worker processes by reference)."""
    cls, params, values = job
    assert values is not None, "a series is read before it is scored"
    return np.asarray(cls(**params).score(values), dtype=float).reshape(-1)


def _match(found: Iterable[str], windows: Mapping[str, Sequence[Window]]) -> tuple[list[str], list[str], list[str]]:
    keys = sorted(found)
    labelled = [k for k in keys if k in windows]
    skipped = [k for k in keys if k not in windows]
    missing = sorted(set(windows) - set(keys))
    return labelled, skipped, missing


def _score_all(
    detector: str,
    params: dict[str, Any],
    series: Sequence[_Series],
    windows: Mapping[str, Sequence[Window]],
    profiles: Sequence[str],
    *,
    labels: Path,
    data_dir: Path | None,
    results_dir: Path | None,
    skipped: list[str],
    missing: list[str],
    warnings: list[str],
    detect_seconds: float,
) -> EvaluationReport:
    start = time.perf_counter()
    corpus = {s.key: (s.timestamps, s.scores) for s in series}
    prepared = prepare_corpus(corpus, windows)
    results = {name: score_corpus(prepared, profile=name) for name in profiles}
    score_seconds = time.perf_counter() - start
    if skipped:
        warnings.append(
            f"{len(skipped)} data file(s) have no labels and were not scored: {', '.join(skipped[:5])}"
            + (" ..." if len(skipped) > 5 else "")
        )
    if missing:
        warnings.append(
            f"{len(missing)} labelled file(s) are not in the data: {', '.join(missing[:5])}"
            + (" ..." if len(missing) > 5 else "")
        )
    return EvaluationReport(
        detector=detector,
        params=params,
        labels=str(labels),
        data_dir=str(data_dir) if data_dir else None,
        results_dir=str(results_dir) if results_dir else None,
        files=len(series),
        rows=sum(len(s.timestamps) for s in series),
        profiles=results,
        skipped=skipped,
        missing=missing,
        warnings=warnings,
        detect_seconds=detect_seconds,
        score_seconds=score_seconds,
    )


def _check_profiles(profiles: Sequence[str]) -> list[str]:
    names = list(dict.fromkeys(profiles))
    if not names:
        raise UsageError("no scoring profile given", hint=f"profiles: {', '.join(PROFILES)}")
    for name in names:
        get_profile(name)
    return names


def _detect(
    data_dir: str | Path,
    labels_path: str | Path,
    *,
    detector: str | None,
    params: Mapping[str, Any] | None,
    jobs: int,
    results_dir: str | Path | None = None,
    progress: Progress | None = None,
) -> tuple[str, dict[str, Any], list[_Series], dict[str, list[Window]], list[str], list[str], list[str], float]:
    """Run a fresh detector over every labelled file: (name, params, series with scores, windows,
    skipped, missing, warnings, seconds)."""
    from mlctl.detect.base import DEFAULT_DETECTOR, make_detector

    if jobs < 1:
        raise UsageError(f"jobs must be at least 1, got {jobs}")
    name = detector or DEFAULT_DETECTOR
    params = dict(params or {})
    cls = type(make_detector(name, **params))  # unknown detectors and bad parameters fail here, before any work
    windows = load_windows(labels_path)
    found = discover(data_dir)
    labelled, skipped, missing = _match(found, windows)
    if not labelled:
        raise UsageError(
            f"none of the {len(found)} CSV files under {data_dir} has labels in {labels_path}",
            hint="label keys look like 'category/file.csv', relative to the data folder",
        )
    series = []
    for key in labelled:
        ts, values = read_series(found[key])
        series.append(_Series(key=key, timestamps=ts, values=values))
    warnings: list[str] = []
    start = time.perf_counter()
    jobs_args = [(cls, params, s.values) for s in series]
    if jobs == 1 or len(series) == 1:
        outputs: Iterable[np.ndarray] = map(_run_detector, jobs_args)
        pool = None
    else:
        pool = ProcessPoolExecutor(max_workers=min(jobs, len(series)))
        outputs = pool.map(_run_detector, jobs_args)
    try:
        for done, (s, scores) in enumerate(zip(series, outputs, strict=True), start=1):
            if len(scores) != len(s.timestamps):
                raise OperationFailed(
                    f"detector {name!r} returned {len(scores)} scores for {len(s.timestamps)} rows of {s.key}"
                )
            nan = int(np.isnan(scores).sum())
            if nan:
                warnings.append(f"{s.key}: {nan} score(s) are NaN and never count as detections")
            s.scores = scores
            if results_dir is not None:
                _write_results(Path(results_dir), name, s, windows[s.key])
            if progress is not None:
                progress(s.key, done, len(series))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return name, params, series, windows, skipped, missing, warnings, time.perf_counter() - start


def evaluate(
    data_dir: str | Path,
    labels_path: str | Path,
    *,
    detector: str | None = None,
    params: Mapping[str, Any] | None = None,
    profiles: Sequence[str] = DEFAULT_PROFILES,
    results_dir: str | Path | None = None,
    jobs: int = 1,
    progress: Progress | None = None,
) -> EvaluationReport:
    """Run ``detector`` (fresh, per file) over a NAB-layout corpus and score it with NAB's rules.

    Files without labels are skipped and labelled files absent from ``data_dir`` are listed, both
    with a warning, so a subset of the corpus can be evaluated. ``jobs > 1`` runs files in parallel
    processes. With ``results_dir`` the scores are also written in NAB's results layout.
    """
    names = _check_profiles(profiles)
    name, params, series, windows, skipped, missing, warnings, detect_seconds = _detect(
        data_dir, labels_path, detector=detector, params=params, jobs=jobs, results_dir=results_dir, progress=progress
    )
    report = _score_all(
        name,
        params,
        series,
        windows,
        names,
        labels=Path(labels_path),
        data_dir=Path(data_dir),
        results_dir=Path(results_dir) if results_dir is not None else None,
        skipped=skipped,
        missing=missing,
        warnings=warnings,
        detect_seconds=detect_seconds,
    )
    if results_dir is not None:
        _write_summaries(Path(results_dir), name, report.profiles)
    return report


def corpus_scores(
    data_dir: str | Path,
    labels_path: str | Path,
    *,
    detector: str | None = None,
    params: Mapping[str, Any] | None = None,
    jobs: int = 1,
) -> tuple[dict[str, tuple[list[str], np.ndarray]], float]:
    """A fresh ``detector`` over every labelled file: ``({category/file.csv: (timestamps, scores)}, seconds)``,
    the corpus that :func:`leave_one_group_out` (or :func:`mlctl.detect.nab.score_corpus`) scores."""
    *_, series, _windows, _skipped, _missing, _warnings, seconds = _detect(
        data_dir, labels_path, detector=detector, params=params, jobs=jobs
    )
    return {s.key: (s.timestamps, s.scores) for s in series if s.scores is not None}, seconds


def _results_files(root: Path, name: str) -> dict[str, Path]:
    """``{category/file.csv: path}`` for the ``<name>_<file>.csv`` results under ``root``."""
    prefix = f"{name}_"
    found: dict[str, Path] = {}
    for rel, path in discover(root).items():
        parent, _, base = rel.rpartition("/")
        if (not parent and base.endswith("_scores.csv")) or not base.startswith(prefix):
            continue
        found[f"{parent}/{base[len(prefix) :]}" if parent else base[len(prefix) :]] = path
    return found


def _detector_folder(root: Path, detector: str | None) -> tuple[Path, str]:
    """The folder holding one detector's results, and the detector's name."""
    if not root.is_dir():
        raise NotFound(f"results folder not found: {root}")
    if detector:
        nested = root / detector
        return (nested, detector) if nested.is_dir() and _has_results(nested, detector) else (root, detector)
    if _has_results(root, root.name):
        return root, root.name
    candidates = sorted(d.name for d in root.iterdir() if d.is_dir() and _has_results(d, d.name))
    if len(candidates) == 1:
        return root / candidates[0], candidates[0]
    if candidates:
        raise UsageError(
            f"{root} holds results of several detectors: {', '.join(candidates)}", hint="name the one to score"
        )
    return root, root.name


def _has_results(folder: Path, name: str) -> bool:
    return any(p.is_file() for p in folder.glob(f"*/{name}_*.csv")) or any(
        p.is_file() and not p.name.endswith("_scores.csv") for p in folder.glob(f"{name}_*.csv")
    )


def score_results(
    results_dir: str | Path,
    labels_path: str | Path,
    *,
    detector: str | None = None,
    profiles: Sequence[str] = DEFAULT_PROFILES,
    progress: Progress | None = None,
) -> EvaluationReport:
    """Score a detector's existing NAB results (``<det>/<category>/<det>_<file>.csv``).

    ``results_dir`` is either the detector's own folder (NAB's ``results/numenta``, say) or the
    folder above it that :func:`evaluate` wrote to (``results``, with ``detector`` naming the
    sub-folder, or the only sub-folder holding results). The detector name is the prefix stripped
    from each file name. Summary files at the top of the folder (``*_scores.csv``) are ignored.
    """
    names = _check_profiles(profiles)
    root, name = _detector_folder(Path(results_dir), detector)
    windows = load_windows(labels_path)
    found = _results_files(root, name)
    if not found:
        raise UsageError(
            f"no results files named '{name}_<file>.csv' under {root}",
            hint="pass the detector's results folder (or the one above it) and name the detector",
        )
    labelled, skipped, missing = _match(found, windows)
    if not labelled:
        raise UsageError(f"none of the {len(found)} results files under {root} has labels in {labels_path}")
    series = []
    warnings: list[str] = []
    for done, key in enumerate(labelled, start=1):
        path = found[key]
        cols = _read_csv(path, ["timestamp", "anomaly_score"], optional=["value"])
        values = _floats(path, "value", cols["value"]) if "value" in cols else None
        scores = _floats(path, "anomaly_score", cols["anomaly_score"])
        series.append(_Series(key=key, timestamps=cols["timestamp"], values=values, scores=scores))
        if progress is not None:
            progress(key, done, len(labelled))
    return _score_all(
        name,
        {},
        series,
        windows,
        names,
        labels=Path(labels_path),
        data_dir=None,
        results_dir=root,
        skipped=skipped,
        missing=missing,
        warnings=warnings,
        detect_seconds=0.0,
    )


# --------------------------------------------------------------------------- held-out scoring


def category(key: str) -> str:
    """The NAB category of a ``category/file.csv`` key (its first path part; ``""`` for a bare file)."""
    head, sep, _ = key.partition("/")
    return head if sep else ""


@dataclass
class HeldOutGroup:
    """One fold: a group's files scored with the candidate and threshold chosen on the other groups."""

    group: str
    files: int
    candidate: str  # the candidate that scored best on the other groups
    threshold: float  # that candidate's best threshold on the other groups
    score: float | None  # the group's normalised score there; None when it has no scored window
    own_score: float | None  # the same candidate at the group's own best threshold (an in-sample reference)
    raw: float
    null: float
    perfect: float
    windows: int
    detected_windows: int
    fp: int


@dataclass
class HeldOutScore:
    """Leave-one-group-out NAB result: every file scored by the fold that held out its group.

    ``score`` is NAB's normalisation of the summed raw scores of all files, each at the threshold
    (and candidate) chosen without its group, so it reads like a corpus score that was never tuned
    on the data it is reported on.
    """

    profile: str
    score: float | None
    raw: float
    null: float
    perfect: float
    files: int
    windows: int
    detected_windows: int
    fp: int
    groups: list[HeldOutGroup] = field(default_factory=list)


def _normalized(raw: float, null: float, perfect: float) -> float | None:
    return None if perfect == null else 100.0 * (raw - null) / (perfect - null)


def leave_one_group_out(
    candidates: Mapping[str, Corpus | PreparedCorpus],
    windows: Mapping[str, Sequence[Window]] | None = None,
    *,
    profile: str = "standard",
    group: Callable[[str], str] = category,
) -> HeldOutScore:
    """Score each group of files (a NAB category, by default) with choices made on the others only.

    ``candidates`` maps a name to the scores of one detector configuration over the same files
    (``{key: (timestamps, scores)}``, or that corpus prepared once). For each group, the candidate
    and the threshold that maximise the NAB score of the *other* groups are chosen (ties: the first
    candidate, the highest threshold), and the group's files are scored with them. With one
    candidate only the threshold is chosen. The result aggregates every file's held-out raw score
    into one normalised figure.
    """
    if not candidates:
        raise UsageError("no candidate scores to evaluate")
    prof = get_profile(profile)
    prepared = {
        name: c if isinstance(c, PreparedCorpus) else prepare_corpus(c, windows or {}) for name, c in candidates.items()
    }
    keys = next(iter(prepared.values())).keys
    for name, p in prepared.items():
        if p.keys != keys:
            raise UsageError(f"candidate {name!r} does not cover the same files as the others")
    groups = sorted({group(k) for k in keys})
    if len(groups) < 2:
        raise UsageError(
            f"leave-one-group-out needs at least two groups of files, found {len(groups)}",
            hint="NAB's groups are its categories: DATA/<category>/<file>.csv",
        )
    folds: list[HeldOutGroup] = []
    for g in groups:
        best: tuple[float, str, float] | None = None
        for name, p in prepared.items():
            train = PreparedCorpus(f for f in p.files if group(f.key) != g)
            thresholds, totals = train.threshold_scores(prof)
            i = int(np.argmax(totals))
            if best is None or totals[i] > best[0]:
                best = (float(totals[i]), name, float(thresholds[i]))
        assert best is not None
        _, name, thr = best
        test = PreparedCorpus(f for f in prepared[name].files if group(f.key) == g)
        held = score_corpus(test, profile=prof, threshold=thr)
        own = score_corpus(test, profile=prof)
        folds.append(
            HeldOutGroup(
                group=g,
                files=len(test.files),
                candidate=name,
                threshold=thr,
                score=held.score,
                own_score=own.score,
                raw=held.raw,
                null=held.null,
                perfect=held.perfect,
                windows=held.windows,
                detected_windows=held.detected_windows,
                fp=held.fp,
            )
        )
    raw = math.fsum(f.raw for f in folds)
    null = math.fsum(f.null for f in folds) + 0.0
    perfect = math.fsum(f.perfect for f in folds)
    return HeldOutScore(
        profile=prof.name,
        score=_normalized(raw, null, perfect),
        raw=raw,
        null=null,
        perfect=perfect,
        files=len(keys),
        windows=sum(f.windows for f in folds),
        detected_windows=sum(f.detected_windows for f in folds),
        fp=sum(f.fp for f in folds),
        groups=folds,
    )
