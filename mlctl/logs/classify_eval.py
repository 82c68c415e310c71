"""Classification quality where ground-truth labels exist (Loghub's BGL ``Label`` column).

For every system whose structured file has a label column, the lines are parsed with the
system's format and scored twice, alert vs normal:

* ``weak``: the level-and-keyword weak labeller with no training at all (what a new project gets);
* ``trained``: the TF-IDF classifier, two-fold cross-validated on the labelled lines (what
  ``classify-logs train`` on such labels gives), folds stratified and seeded.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlctl.logs.classify import NORMAL, LogClassifier, classify, is_alert
from mlctl.logs.evaluate import bgl_alert, classification_metrics, find_files, load_formats
from mlctl.logs.record import LogRecord

if TYPE_CHECKING:
    from mlctl.logs.results import Document

LABEL_COLUMNS = ("Label", "label", "class")


@dataclass
class ClassificationResult:
    system: str
    lines: int
    alerts: int
    weak_precision: float
    weak_recall: float
    weak_f1: float
    trained_precision: float | None
    trained_recall: float | None
    trained_f1: float | None


def _labels(truth: Path) -> list[str] | None:
    with truth.open(newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.DictReader(fh)
        column = next((c for c in LABEL_COLUMNS if c in (reader.fieldnames or [])), None)
        if column is None:
            return None
        return [bgl_alert(row[column] or "-") for row in reader]


def _records(log: Path, fmt: str) -> list[LogRecord]:
    from mlctl.logs.formats import read_lines
    from mlctl.logs.parse import parse_lines

    return list(parse_lines(read_lines(log), fmt, source=str(log)))


def _cross_validated(records: list[LogRecord], truth: list[str], *, seed: int = 42) -> list[str] | None:
    from sklearn.model_selection import StratifiedKFold

    if min(truth.count("alert"), truth.count(NORMAL)) < 2:
        return None
    predicted = [NORMAL] * len(records)
    folds = StratifiedKFold(n_splits=2, shuffle=True, random_state=seed)
    for train_idx, test_idx in folds.split(records, truth):
        model = LogClassifier.fit([records[i] for i in train_idx], [truth[i] for i in train_idx], seed=seed)
        for i, (cls, _) in zip(test_idx, model.predict([records[i] for i in test_idx]), strict=True):
            predicted[i] = "alert" if is_alert(cls) else NORMAL
    return predicted


def evaluate_classification(data_dir: str | Path, *, systems: list[str] | None = None,
                            log_format: str | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """One row per system that has labels (systems without a label column are skipped).

    ``log_format`` (a format, a preset or ``"auto"``) replaces formats.json for every system.
    """
    from mlctl.logs.evaluate import system_folders

    data_dir = Path(data_dir)
    if log_format is not None:
        formats = {name: log_format for name in (systems or system_folders(data_dir))}
    else:
        formats = load_formats(data_dir)
    out = []
    for system in systems or sorted(formats):
        log, truth_file = find_files(data_dir, system)
        truth = _labels(truth_file)
        if truth is None:
            continue
        records = _records(log, formats[system])
        if len(records) != len(truth):
            truth = truth[: len(records)]
        weak = ["alert" if is_alert(r.cls) else NORMAL for r in classify(records)]
        w = classification_metrics(truth, weak, positive="alert")
        trained = _cross_validated(records, truth)
        t = classification_metrics(truth, trained, positive="alert") if trained is not None else None
        out.append(asdict(ClassificationResult(
            system=system, lines=len(records), alerts=truth.count("alert"),
            weak_precision=round(w.precision, 4), weak_recall=round(w.recall, 4), weak_f1=round(w.f1, 4),
            trained_precision=round(t.precision, 4) if t else None, trained_recall=round(t.recall, 4) if t else None,
            trained_f1=round(t.f1, 4) if t else None)))  # fmt: skip
    return out


def evaluation_result(data_dir: str | Path, *, systems: list[str] | None = None, truth: str = "template",
                      log_format: str | None = None) -> Document:  # fmt: skip
    """``classify-logs evaluate``: parsing accuracy per system and on average (``truth``: ``template`` or
    ``event-id``), with ``classification`` where labels exist; the table shows the systems, then the
    classification, and the averages on stderr."""
    from mlctl.core.output import Table
    from mlctl.logs.evaluate import evaluate_parsing
    from mlctl.logs.results import Document

    report = evaluate_parsing(data_dir, systems=systems, truth=truth.strip().lower().replace("-", "_"),
                              log_format=log_format)  # fmt: skip
    doc = report.to_dict()
    doc["classification"] = evaluate_classification(data_dir, systems=systems, log_format=log_format)
    tables = [Table(doc.get("systems"), "parsing accuracy")]
    if doc["classification"]:
        title = "alert vs normal, where labels exist (weak labels; trained, 2-fold)"
        tables.append(Table(doc["classification"], title))
    note = (f"average grouping accuracy {report.grouping_accuracy:.3f} (true groups by {truth}), "
            f"parsing accuracy {report.parsing_accuracy:.3f}")  # fmt: skip
    return Document(doc, title="parsing accuracy", tables=tables, notes=[note])
