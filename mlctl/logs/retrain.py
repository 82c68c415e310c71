"""Retraining the log classifier from the index: pull -> train -> evaluate -> register -> publish.

Each step is a function of the project and a work folder, so an orchestrator (the Airflow DAG
from ``mlctl classify-logs dag``) can run them as separate tasks, and ``mlctl classify-logs
retrain`` runs them in a row:

1. **pull** recent lines from the index into ``lines.jsonl``;
2. **train** a candidate on them: lines a rule classified and lines the current model was
   confident about (``min_confidence``) are labels, plus an optional labelled CSV;
3. **evaluate** the candidate and the current classifier on the same held-out lines (the
   labelled CSV when given, else a held-out part of the pulled lines);
4. **register** the candidate (MLflow, alias ``challenger``) only when it is better;
5. **publish** it as the project's classifier; a running ``stream`` notices the new model
   file and reloads it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlctl.core.config import LoadedConfig
from mlctl.core.errors import CheckFailed, NotFound, UsageError
from mlctl.logs.classify import META_FILE, LogClassifier, weak_label
from mlctl.logs.record import LogRecord

STEPS = ("pull", "train", "evaluate", "register", "publish")
LINES = "lines.jsonl"
CANDIDATE = "candidate"
EVALUATION = "evaluation.json"
METRIC = "macro_f1"


@dataclass
class RetrainReport:
    """What the steps did (stable keys of ``-o json``)."""

    workdir: str
    steps: list[str] = field(default_factory=list)
    lines: int = 0
    labelled: int = 0
    candidate: dict[str, float] = field(default_factory=dict)
    current: dict[str, float] | None = None
    better: bool | None = None
    registered: dict[str, str] | None = None
    published: bool = False


def _record(doc: dict[str, Any]) -> LogRecord:
    keep = {k: doc.get(k) for k in ("line_id", "raw", "source", "offset", "content", "event_id", "template",
                                    "confidence", "severity", "rule", "timestamp", "doc_id")}  # fmt: skip
    rec = LogRecord(**{k: v for k, v in keep.items() if v is not None})
    rec.headers = dict(doc.get("headers") or {})
    rec.params = list(doc.get("params") or [])
    rec.parsed = bool(doc.get("parsed", True))
    rec.cls = doc.get("class")
    return rec


def pull(loaded: LoadedConfig, workdir: Path, *, since: str = "7d", limit: int = 200_000,
         index: str | None = None) -> int:  # fmt: skip
    """Write the index's lines of the last ``since`` to ``workdir/lines.jsonl``; returns how many."""
    from mlctl.logs.search import search_index

    docs = search_index(loaded, "*", since=since, limit=limit, index=index)
    workdir.mkdir(parents=True, exist_ok=True)
    tmp = workdir / (LINES + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for doc in docs:
            fh.write(json.dumps(doc, default=str) + "\n")
    tmp.replace(workdir / LINES)
    return len(docs)


def _read_lines(workdir: Path) -> list[LogRecord]:
    path = workdir / LINES
    if not path.is_file():
        raise NotFound(f"no pulled lines at {path}", hint="run the pull step first")
    return [_record(json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def labelled(records: list[LogRecord], *, min_confidence: float) -> tuple[list[LogRecord], list[str]]:
    """The pulled lines usable as labels: rule-set, confident, or weakly labelled when never modelled."""
    xs, ys = [], []
    for r in records:
        if not r.parsed or not r.cls:
            continue
        if r.rule or r.confidence is None or r.confidence >= min_confidence:
            xs.append(r)
            ys.append(r.cls if r.cls else weak_label(r)[0])
    return xs, ys


def _holdout(loaded: LoadedConfig, data: str | Path | None, records: list[LogRecord], labels: list[str],
             seed: int) -> tuple[list[LogRecord], list[str], list[LogRecord], list[str]]:  # fmt: skip
    if data is not None:
        from mlctl.logs.training import read_training_csv

        spec = loaded.config.logs
        xs, ys = read_training_csv(Path(data), label_column=spec.label_column, normal_label=spec.normal_label,
                                   log_format=spec.log_format or spec.preset or "auto")  # fmt: skip
        return records, labels, xs, ys
    from mlctl.logs.training import _split

    if len(records) < 10:
        raise UsageError(f"only {len(records)} usable line(s) to retrain on", hint="pull a longer --since window")
    x_train, x_test, y_train, y_test = _split(records, labels, test_size=0.2, seed=seed)
    return list(x_train), list(y_train), list(x_test), list(y_test)


def train(loaded: LoadedConfig, workdir: Path, *, data: str | Path | None = None, min_confidence: float = 0.9,
          seed: int = 42) -> tuple[int, dict[str, float]]:  # fmt: skip
    """Fit a candidate into ``workdir/candidate`` and score it and the current model on held-out lines."""
    from mlctl.logs.training import evaluate_model

    records, labels = labelled(_read_lines(workdir), min_confidence=min_confidence)
    x_train, y_train, x_test, y_test = _holdout(loaded, data, records, labels, seed)
    if len(set(y_train)) < 2:
        raise UsageError(f"the pulled lines hold one class only ({', '.join(set(y_train)) or 'none'})",
                         hint="retraining needs at least two classes; add a labelled --data CSV")  # fmt: skip
    candidate = LogClassifier.fit(x_train, y_train, seed=seed)
    cand_metrics = evaluate_model(candidate, x_test, y_test)
    current_dir = loaded.root / loaded.config.logs.model_dir
    current = None
    if (current_dir / META_FILE).is_file():
        current = evaluate_model(LogClassifier.load(current_dir), x_test, y_test)
    candidate = LogClassifier.fit(x_train + x_test, y_train + y_test, seed=seed) if data is None else candidate
    candidate.save(workdir / CANDIDATE, extra={"metrics": cand_metrics, "trained_on": str(workdir / LINES)})
    doc = {"candidate": cand_metrics, "current": current, "held_out": len(x_test), "labelled": len(x_train)}
    (workdir / EVALUATION).write_text(json.dumps(doc, indent=2))
    return len(x_train), cand_metrics


def evaluate(workdir: Path, *, metric: str = METRIC, min_gain: float = 0.0) -> tuple[bool, dict[str, Any]]:
    """Is the candidate better than the current classifier (or is there none)?"""
    path = workdir / EVALUATION
    if not path.is_file():
        raise NotFound(f"no evaluation at {path}", hint="run the train step first")
    doc = json.loads(path.read_text())
    current = doc.get("current")
    better = current is None or doc["candidate"].get(metric, 0.0) > current.get(metric, 0.0) + min_gain
    doc["better"] = better
    path.write_text(json.dumps(doc, indent=2))
    return better, doc


def register(loaded: LoadedConfig, workdir: Path, *, name: str | None = None) -> dict[str, str] | None:
    """Track the candidate as an MLflow run and register it (only when the evaluation said better)."""
    better, doc = evaluate(workdir)
    if not better:
        return None
    name = name or loaded.config.logs.registered_model
    if not name:
        return None
    from mlctl.logs.training import LogTrainResult, _track

    model = LogClassifier.load(workdir / CANDIDATE)
    result = LogTrainResult(run_id=None, lines=doc.get("labelled", 0), classes={c: 0 for c in model.classes},
                            metrics=doc["candidate"], model_dir=str(workdir / CANDIDATE), labels="retrain")  # fmt: skip
    _track(loaded, model, _read_lines(workdir)[:5], result, register=name, experiment="classify-logs",
           data=workdir / LINES)  # fmt: skip
    (workdir / "registered.json").write_text(json.dumps(result.registered))
    return result.registered


def publish(loaded: LoadedConfig, workdir: Path) -> bool:
    """Make the candidate the project's classifier (atomically; running streams reload it)."""
    better, _ = evaluate(workdir)
    if not better:
        return False
    src = workdir / CANDIDATE
    dest = loaded.root / loaded.config.logs.model_dir
    staging = dest.with_name(dest.name + ".new")
    if staging.exists():
        shutil.rmtree(staging)
    shutil.copytree(src, staging)
    dest.mkdir(parents=True, exist_ok=True)
    for item in staging.iterdir():  # the model file first, the meta file (the reload signal) last
        if item.name != META_FILE:
            item.replace(dest / item.name)
    (staging / META_FILE).replace(dest / META_FILE)
    shutil.rmtree(staging, ignore_errors=True)
    return True


def retrain(loaded: LoadedConfig, workdir: Path, *, steps: tuple[str, ...] = STEPS, since: str = "7d",
            data: str | Path | None = None, min_confidence: float = 0.9, register_as: str | None = None,
            index: str | None = None, require_better: bool = False) -> RetrainReport:  # fmt: skip
    """Run ``steps`` in order (all by default); see the module docstring."""
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise UsageError(f"unknown retrain step {unknown[0]!r}", hint=f"steps: {', '.join(STEPS)}")
    report = RetrainReport(workdir=str(workdir))
    for step in STEPS:
        if step not in steps:
            continue
        if step == "pull":
            report.lines = pull(loaded, workdir, since=since, index=index)
        elif step == "train":
            report.labelled, report.candidate = train(loaded, workdir, data=data, min_confidence=min_confidence)
        elif step == "evaluate":
            report.better, doc = evaluate(workdir)
            report.candidate, report.current = doc["candidate"], doc.get("current")
        elif step == "register":
            report.registered = register(loaded, workdir, name=register_as)
        else:
            report.published = publish(loaded, workdir)
        report.steps.append(step)
    if require_better and report.better is False:
        raise CheckFailed(f"the candidate is not better than the current classifier on {METRIC}: "
                          f"{report.candidate.get(METRIC)} vs {(report.current or {}).get(METRIC)}")  # fmt: skip
    return report


def report_dict(report: RetrainReport) -> dict[str, Any]:
    return asdict(report)
