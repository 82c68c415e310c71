"""Evaluation of the log parser against ground truth, and the classification metrics.

Data layout (Loghub-2k): ``DIR/<System>/<System>_2k.log`` (raw lines),
``DIR/<System>/<System>_2k.log_structured_corrected.csv`` (``LineId``, ..., ``EventId``,
``EventTemplate``; the ``_structured.csv`` name is accepted too) and ``DIR/formats.json``
(``{"System": "<format string>"}``). Only the log format is given to the parser, never anything
else about a system; with ``log_format="auto"`` not even that: each system's format is detected
from its first lines (:mod:`mlctl.logs.autoformat`) and formats.json is not read.

Metrics, per system and averaged over systems:

* **grouping accuracy**: the share of lines whose predicted group (lines with the same
  ``EventId``) holds exactly the same lines as their true group. The true groups follow one of
  two conventions (``truth=``): ``"template"`` (default), lines with the same whitespace-normalised
  corrected template, or ``"event_id"``, lines with the same ground-truth ``EventId`` (some
  corrected files keep several EventIds for one template, e.g. Linux's split by user name, so
  this convention can be stricter; it is how published figures for the original files count);
* **parsing accuracy**: the share of lines whose predicted template equals the true template,
  whitespace normalised.

:func:`classification_metrics` gives precision, recall and F1 for one positive class (for BGL's
``Label`` column, ``'-'`` is normal and anything else an alert: see :func:`bgl_alert`).

>>> grouping_accuracy({1: "a", 2: "a", 3: "b"}, {1: "x", 2: "x", 3: "x"})
0.0
>>> grouping_accuracy({1: "a", 2: "a", 3: "b"}, {1: "x", 2: "x", 3: "y"})
1.0
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlctl.core.errors import ConfigError, NotFound, UsageError
from mlctl.logs.formats import LogFormat, read_lines
from mlctl.logs.miner import TemplateMiner
from mlctl.logs.parse import parse_lines

TRUTH_TEMPLATE = "template"
TRUTH_EVENT_ID = "event_id"
#: the conventions for true groups: by corrected template text, or by ground-truth EventId
TRUTH_CONVENTIONS = (TRUTH_TEMPLATE, TRUTH_EVENT_ID)


def check_truth(truth: str) -> str:
    """``truth`` if it names a grouping convention, else a UsageError."""
    if truth not in TRUTH_CONVENTIONS:
        raise UsageError(
            f"unknown ground-truth convention {truth!r}",
            hint="use 'template' (group by corrected template) or 'event_id' (group by EventId)",
        )
    return truth


def true_groups(rows: Iterable[Mapping[str, str]], truth: str = TRUTH_TEMPLATE) -> dict[int, str]:
    """Line id -> true group label of ground-truth rows, under the ``truth`` convention.

    >>> rows = [{"LineId": "1", "EventId": "E1", "EventTemplate": "a  <*>"},
    ...         {"LineId": "2", "EventId": "E2", "EventTemplate": "a <*>"}]
    >>> true_groups(rows), true_groups(rows, "event_id")
    ({1: 'a <*>', 2: 'a <*>'}, {1: 'E1', 2: 'E2'})
    """
    check_truth(truth)
    if truth == TRUTH_EVENT_ID:
        return {int(row["LineId"]): row["EventId"] for row in rows}
    return {int(row["LineId"]): normalise_template(row["EventTemplate"]) for row in rows}


def grouping_accuracy(predicted: Mapping[Any, Hashable], truth: Mapping[Any, Hashable]) -> float:
    """Share of lines whose predicted group equals their true group (line id -> group label maps).

    Lines missing from ``predicted`` count as wrong.
    """
    if not truth:
        return 0.0
    pred_groups: dict[Hashable, set[Hashable]] = {}
    for line, label in predicted.items():
        if line in truth:
            pred_groups.setdefault(label, set()).add(line)
    true_groups: dict[Hashable, frozenset[Hashable]] = {}
    members: dict[Hashable, set[Hashable]] = {}
    for line, label in truth.items():
        members.setdefault(label, set()).add(line)
    for label, lines in members.items():
        true_groups[label] = frozenset(lines)
    true_sets = set(true_groups.values())
    correct = sum(len(lines) for lines in pred_groups.values() if frozenset(lines) in true_sets)
    return correct / len(truth)


def normalise_template(template: str) -> str:
    """A template with runs of whitespace collapsed, for comparison."""
    return " ".join(str(template).split())


def parsing_accuracy(predicted: Mapping[Any, str], truth: Mapping[Any, str]) -> float:
    """Share of lines whose predicted template equals the true one (whitespace normalised)."""
    if not truth:
        return 0.0
    ok = sum(
        1
        for line, t in truth.items()
        if line in predicted and normalise_template(predicted[line]) == normalise_template(t)
    )
    return ok / len(truth)


@dataclass
class ClassificationMetrics:
    positive: str
    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    fn: int
    support: int  # true positives + false negatives


def classification_metrics(
    y_true: Sequence[Hashable], y_pred: Sequence[Hashable], *, positive: Hashable = "alert"
) -> ClassificationMetrics:
    """Precision, recall and F1 of ``positive`` (0.0 where undefined).

    >>> m = classification_metrics(["alert", "normal", "alert"], ["alert", "alert", "normal"])
    >>> (m.precision, m.recall, m.f1)
    (0.5, 0.5, 0.5)
    """
    if len(y_true) != len(y_pred):
        raise UsageError(f"{len(y_true)} true labels but {len(y_pred)} predictions", hint="pass one label per line")
    tp = sum(1 for t, p in zip(y_true, y_pred, strict=True) if t == positive and p == positive)
    fp = sum(1 for t, p in zip(y_true, y_pred, strict=True) if t != positive and p == positive)
    fn = sum(1 for t, p in zip(y_true, y_pred, strict=True) if t == positive and p != positive)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return ClassificationMetrics(str(positive), precision, recall, f1, tp, fp, fn, tp + fn)


def bgl_alert(label: str) -> str:
    """BGL's ``Label`` column as a class: ``'-'`` is ``normal``, anything else ``alert``."""
    return "normal" if label.strip() == "-" else "alert"


@dataclass
class SystemResult:
    system: str
    lines: int
    templates_true: int
    templates_found: int
    grouping_accuracy: float
    parsing_accuracy: float
    unparsed: int
    seconds: float
    log_format: str = ""  # the format used: given, or detected when auto


@dataclass
class ParsingReport:
    systems: list[SystemResult] = field(default_factory=list)
    truth: str = TRUTH_TEMPLATE  # the grouping convention of every system's grouping accuracy

    @property
    def grouping_accuracy(self) -> float:
        return sum(s.grouping_accuracy for s in self.systems) / len(self.systems) if self.systems else 0.0

    @property
    def parsing_accuracy(self) -> float:
        return sum(s.parsing_accuracy for s in self.systems) / len(self.systems) if self.systems else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "truth": self.truth,
            "systems": [asdict(s) for s in self.systems],
            "average": {"grouping_accuracy": self.grouping_accuracy, "parsing_accuracy": self.parsing_accuracy},
        }


def load_formats(data_dir: str | Path) -> dict[str, str]:
    """``DIR/formats.json`` as ``{system: format string}``."""
    path = Path(data_dir) / "formats.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise NotFound(f"{path} does not exist", hint="the data folder needs a formats.json of log formats") from exc
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot read {path}: {exc}", hint="formats.json maps each system to a format string"
        ) from exc
    if not isinstance(doc, dict) or not all(isinstance(v, str) for v in doc.values()):
        raise ConfigError(f"{path} must map system names to format strings", hint='{"HDFS": "<Date> <Content>"}')
    return doc


def system_folders(data_dir: str | Path) -> list[str]:
    """The sub-folders of ``data_dir`` that hold a ``*.log`` and a structured ground-truth CSV, sorted."""
    out = []
    for folder in sorted(Path(data_dir).iterdir()):
        if folder.is_dir() and any(folder.glob("*.log")) and any(folder.glob("*_structured*.csv")):
            out.append(folder.name)
    if not out:
        raise NotFound(f"no system folders under {data_dir}", hint="expected <System>/<System>_2k.log and its CSV")
    return out


def find_files(data_dir: Path, system: str) -> tuple[Path, Path]:
    """The raw log and the ground-truth CSV of one system."""
    folder = data_dir / system
    logs = sorted(folder.glob("*.log"))
    truths = sorted(folder.glob("*_structured_corrected.csv")) or sorted(folder.glob("*_structured.csv"))
    if not logs or not truths:
        raise NotFound(
            f"no log and ground truth for {system} under {folder}",
            hint="expected <System>/<System>_2k.log and <System>_2k.log_structured_corrected.csv",
        )
    return logs[0], truths[0]


def read_truth(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        rows = list(csv.DictReader(fh))
    if rows and not {"LineId", "EventId", "EventTemplate"} <= set(rows[0]):
        raise ConfigError(f"{path} lacks LineId/EventId/EventTemplate columns", hint="use Loghub's structured CSV")
    return rows


def evaluate_system(
    data_dir: str | Path,
    system: str,
    log_format: str,
    *,
    miner: TemplateMiner | None = None,
    truth: str = TRUTH_TEMPLATE,
) -> SystemResult:
    """Parse one system's log and score it against its ground truth (true groups by ``truth``).

    ``log_format`` is a format string, a preset or ``auto`` (detected from the log's first lines).
    """
    from mlctl.logs.autoformat import resolve_format

    check_truth(truth)
    log, truth_csv = find_files(Path(data_dir), system)
    truth_rows = read_truth(truth_csv)
    start = time.perf_counter()
    fmt, _ = resolve_format(log_format, (text for _, text in read_lines(log)))
    records = list(parse_lines(read_lines(log), fmt, miner=miner, source=str(log)))
    seconds = time.perf_counter() - start
    pred_group = {r.line_id: r.event_id for r in records}
    pred_template = {r.line_id: r.template or "" for r in records}
    true_group = true_groups(truth_rows, truth)
    true_template = {int(row["LineId"]): row["EventTemplate"] for row in truth_rows}
    return SystemResult(
        system=system,
        lines=len(true_group),
        templates_true=len(set(true_group.values())),
        templates_found=len({pred_group[i] for i in true_group if i in pred_group}),
        grouping_accuracy=grouping_accuracy(pred_group, true_group),
        parsing_accuracy=parsing_accuracy(pred_template, true_template),
        unparsed=sum(1 for r in records if not r.parsed),
        seconds=seconds,
        log_format=fmt.name or fmt.spec,
    )


def evaluate_parsing(
    data_dir: str | Path,
    *,
    systems: Iterable[str] | None = None,
    formats: Mapping[str, str] | None = None,
    miner_params: Mapping[str, Any] | None = None,
    truth: str = TRUTH_TEMPLATE,
    log_format: str | None = None,
) -> ParsingReport:
    """Score the parser on every system of a Loghub-layout folder (a fresh miner per system).

    ``truth`` picks the grouping convention: ``"template"`` (true groups by corrected template)
    or ``"event_id"`` (by ground-truth EventId); see the module docstring. ``log_format`` (a
    format, a preset or ``"auto"``) is used for every system instead of formats.json, which is
    then not read: the systems are the folders holding a log and its ground truth.
    """
    check_truth(truth)
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise NotFound(f"data folder {data_dir} does not exist", hint="pass --data DIR (Loghub-2k layout)")
    if formats is None and log_format is not None:
        LogFormat.resolve(log_format)  # a bad format is refused before any work
        found = systems if systems is not None else system_folders(data_dir)
        formats = {name: log_format for name in found}
    formats = dict(formats) if formats is not None else load_formats(data_dir)
    names = list(systems) if systems is not None else sorted(formats)
    unknown = [s for s in names if s not in formats]
    if unknown:
        raise UsageError(f"no log format for {', '.join(unknown)}", hint=f"known: {', '.join(sorted(formats))}")
    report = ParsingReport(truth=truth)
    for system in names:
        miner = TemplateMiner(**dict(miner_params or {}))
        report.systems.append(evaluate_system(data_dir, system, formats[system], miner=miner, truth=truth))
    return report
