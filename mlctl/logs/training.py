"""Train the log classifier from labelled lines (or weak labels), track it in MLflow, register it.

Training data is a CSV: either parsed lines (a ``Content`` column plus header columns, as
Loghub's structured files) or raw lines (a ``raw``/``line``/``message`` column split with the
log format), and a label column. Without labels (``weak=True``) the level-and-keyword weak
labeller provides them. Lines are parsed with the template miner, so the model reads the
same template features at training and at classification time.

Every run is an MLflow run (params, metrics, the model as an MLflow model with a
``text -> class`` signature, so `mlctl serve` can serve it too) and a row in mlctl's state;
with ``register`` the version gets alias ``challenger``. The fitted classifier also becomes
the project's current one (``logs.model_dir``), which ``classify`` and ``stream`` use.
"""

from __future__ import annotations

import csv
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlctl.core.config import LoadedConfig
from mlctl.core.errors import NotFound, UsageError
from mlctl.core.output import log
from mlctl.logs.classify import NORMAL, LogClassifier, features, is_alert, weak_label
from mlctl.logs.formats import LogFormat
from mlctl.logs.record import LogRecord

TEXT_COLUMNS = ("raw", "line", "message", "text", "log")
SKIP_COLUMNS = {"LineId", "EventId", "EventTemplate", "ParameterList", "Content"}
MODEL_ARTIFACT_DIR = "model"


@dataclass
class LogTrainResult:
    """What a training run produced (stable keys of ``-o json``)."""

    run_id: str | None
    lines: int
    classes: dict[str, int]
    metrics: dict[str, float]
    model_dir: str
    labels: str  # "column NAME" or "weak"
    registered: dict[str, str] | None = None
    templates: int = 0
    warnings: list[str] = field(default_factory=list)


def read_training_csv(
    path: Path, *, label_column: str | None, log_format: Any = None, normal_label: str | None = None, weak: bool = False
) -> tuple[list[LogRecord], list[str]]:
    """Records (parsed, templates mined) and their labels from a training CSV."""
    from mlctl.logs.miner import TemplateMiner
    from mlctl.logs.parse import parse_lines

    if not path.is_file():
        raise NotFound(f"no training data at {path}")
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        rows = list(reader)
    if not columns:
        raise UsageError(f"{path}: empty file")
    if not rows:
        raise UsageError(f"{path}: has a header but no rows")
    if not weak and (label_column is None or label_column not in columns):
        raise UsageError(
            f"{path}: no label column {label_column!r} (columns: {', '.join(columns)})",
            hint="pass --label-column, or --weak to train on weak labels from levels and keywords",
        )
    miner = TemplateMiner()
    if "Content" in columns:
        records = [
            LogRecord(
                line_id=i,
                raw=r.get("Content") or "",
                source=str(path),
                content=r.get("Content") or "",
                headers={
                    k: (v or "") for k, v in r.items() if k not in SKIP_COLUMNS and k != label_column and k is not None
                },
            )
            for i, r in enumerate(rows, start=1)
        ]
        for rec in records:
            miner.learn(rec.content)
        miner.consolidate()
        for rec in records:
            cid = miner.cluster_of(rec.content)
            if cid is None:
                cid = miner.learn(rec.content)
            m = miner.match(rec.content, cid)
            rec.event_id, rec.template, rec.params = m.event_id, m.template, m.params
    else:
        text_col = next((c for c in TEXT_COLUMNS if c in columns), None)
        if text_col is None:
            raise UsageError(
                f"{path}: no text column", hint=f"name it Content (parsed) or one of {', '.join(TEXT_COLUMNS)}"
            )
        records = list(
            parse_lines(
                ((i, r.get(text_col) or "") for i, r in enumerate(rows, start=1)),
                log_format,
                miner=miner,
                source=str(path),
            )
        )
    if weak or label_column not in columns:
        labels = [weak_label(r)[0] for r in records]
    else:
        labels = [(r.get(label_column) or "").strip() for r in rows]
        empty = [i for i, lab in enumerate(labels, start=2) if not lab]
        if empty:
            raise UsageError(f"{path}: line {empty[0]} has an empty label ({len(empty)} in all)")
        if normal_label is not None:
            labels = [NORMAL if lab == normal_label else lab for lab in labels]
    return records, labels


def evaluate_model(model: LogClassifier, records: Sequence[LogRecord], labels: Sequence[str]) -> dict[str, float]:
    """Accuracy, macro precision/recall/F1 over classes, and precision/recall/F1 of alert vs normal."""
    from mlctl.logs.evaluate import classification_metrics

    predicted = [c for c, _ in model.predict(records)]
    n = len(labels)
    out = {"accuracy": sum(p == t for p, t in zip(predicted, labels, strict=True)) / n if n else 0.0}
    classes = sorted(set(labels) | set(predicted))
    per = []
    for c in classes:
        tp = sum(p == c and t == c for p, t in zip(predicted, labels, strict=True))
        fp = sum(p == c and t != c for p, t in zip(predicted, labels, strict=True))
        fn = sum(p != c and t == c for p, t in zip(predicted, labels, strict=True))
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        per.append((prec, rec, 2 * prec * rec / (prec + rec) if prec + rec else 0.0))
    if per:
        out.update(
            {
                "macro_precision": sum(p for p, _, _ in per) / len(per),
                "macro_recall": sum(r for _, r, _ in per) / len(per),
                "macro_f1": sum(f for _, _, f in per) / len(per),
            }
        )
    alert = classification_metrics(
        ["alert" if is_alert(t) else NORMAL for t in labels],
        ["alert" if is_alert(p) else NORMAL for p in predicted],
        positive="alert",
    )
    out.update({"alert_precision": alert.precision, "alert_recall": alert.recall, "alert_f1": alert.f1})
    return {k: round(float(v), 6) for k, v in out.items()}


def _split(records: Sequence[LogRecord], labels: Sequence[str], *, test_size: float, seed: int) -> tuple[Any, ...]:
    from sklearn.model_selection import train_test_split

    counts: dict[str, int] = {}
    for lab in labels:
        counts[lab] = counts.get(lab, 0) + 1
    stratify = labels if min(counts.values()) >= 2 else None
    return tuple(
        train_test_split(list(records), list(labels), test_size=test_size, random_state=seed, stratify=stratify)
    )


def fit_and_score(
    records: Sequence[LogRecord], labels: Sequence[str], *, test_size: float = 0.2, seed: int = 42
) -> tuple[LogClassifier, dict[str, float]]:
    """Held-out metrics of a model fitted on the rest, then the model refitted on every line."""
    if len(records) >= 10 and 0 < test_size < 1:
        x_train, x_test, y_train, y_test = _split(records, labels, test_size=test_size, seed=seed)
        if len(set(y_train)) >= 2:
            metrics = evaluate_model(LogClassifier.fit(x_train, y_train, seed=seed), x_test, y_test)
        else:
            metrics = {}
    else:
        metrics = {}
    return LogClassifier.fit(records, labels, seed=seed), metrics


def train_classifier(
    loaded: LoadedConfig,
    data: str | Path,
    *,
    label_column: str | None = None,
    log_format: Any = None,
    normal_label: str | None = None,
    weak: bool = False,
    register: str | None = None,
    experiment: str | None = None,
    test_size: float = 0.2,
    seed: int = 42,
    track: bool = True,
) -> LogTrainResult:
    """Train, evaluate on a held-out split, save as the project's classifier, track and register."""
    spec = loaded.config.logs
    data = Path(data)
    label_column = label_column or spec.label_column
    normal_label = normal_label if normal_label is not None else spec.normal_label
    fmt = log_format if log_format is not None else spec.log_format or spec.preset or "auto"  # as classify does
    fmt = LogFormat.resolve(fmt)  # a bad format is refused even when the CSV is parsed already
    records, labels = read_training_csv(
        data, label_column=label_column, log_format=fmt, normal_label=normal_label, weak=weak
    )
    label_source = "weak" if weak or label_column is None else f"column {label_column}"
    model, metrics = fit_and_score(records, labels, test_size=test_size, seed=seed)
    counts: dict[str, int] = {}
    for lab in labels:
        counts[lab] = counts.get(lab, 0) + 1
    templates = len({r.template for r in records if r.template})
    model_dir = loaded.root / spec.model_dir
    result = LogTrainResult(
        run_id=None,
        lines=len(records),
        classes=dict(sorted(counts.items())),
        metrics=metrics,
        model_dir=str(model_dir),
        labels=label_source,
        templates=templates,
    )
    register = register or spec.registered_model
    if track:
        _track(loaded, model, records, result, register=register, experiment=experiment, data=data)
    model.save(
        model_dir,
        extra={"run_id": result.run_id, "registered": result.registered, "trained_on": str(data), "metrics": metrics},
    )
    return result


def _track(
    loaded: LoadedConfig,
    model: LogClassifier,
    records: Sequence[LogRecord],
    result: LogTrainResult,
    *,
    register: str | None,
    experiment: str | None,
    data: Path,
) -> None:
    from mlctl.core.state import STATE_FILE, StateStore, utcnow
    from mlctl.lifecycle.registry import TAG_FLAVOR, TAG_PATH, TAG_SHA256, register_version
    from mlctl.lifecycle.serialize import save_mlflow_model
    from mlctl.lifecycle.tracking import connect, mlflow_errors

    tr = connect(loaded)
    params = {
        "model": "tfidf+logistic_regression",
        "labels": result.labels,
        "lines": result.lines,
        "classes": len(result.classes),
        "templates": result.templates,
        "data": str(data),
    }
    with mlflow_errors(tr.uri):
        exp_id = tr.experiment_id(experiment or "classify-logs")
        run = tr.client.create_run(
            exp_id,
            tags={
                "mlflow.runName": "classify-logs-train",
                "mlctl.kind": "logs",
                "mlflow.source.name": "mlctl classify-logs train",
            },
        )
        run_id = run.info.run_id
        result.run_id = run_id
        for key, value in params.items():
            tr.client.log_param(run_id, key, str(value))
        for key, value in result.metrics.items():
            tr.client.log_metric(run_id, key, value)
        tr.client.log_dict(run_id, result.classes, "classes.json")
        signature = {"inputs": [{"name": "text", "type": "string"}], "outputs": [{"name": "class", "type": "string"}]}
        import pandas as pd

        example = pd.DataFrame({"text": [features(r) for r in records[:5]]})
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / MODEL_ARTIFACT_DIR
            saved = save_mlflow_model(model.pipeline, folder, signature=signature, input_example=example)
            tr.client.log_artifacts(run_id, str(folder), MODEL_ARTIFACT_DIR)
        tr.client.set_tag(run_id, TAG_SHA256, saved.sha256)
        if register:
            reg = register_version(
                tr,
                register,
                run_id,
                f"{run.info.artifact_uri}/{MODEL_ARTIFACT_DIR}",
                {
                    TAG_SHA256: saved.sha256,
                    TAG_FLAVOR: saved.flavor,
                    TAG_PATH: saved.model_file.name,
                    "mlctl.task": "classification",
                    "mlctl.model": "log-classifier",
                    "mlctl.primary_metric": "macro_f1",
                },
            )
            result.registered = {"name": reg.name, "version": reg.version, "alias": reg.alias}
            log(f"registered {reg.name} version {reg.version} as @{reg.alias}")
        tr.client.set_terminated(run_id, "FINISHED")
    loaded.state_dir.mkdir(parents=True, exist_ok=True)
    with StateStore(loaded.state_dir / STATE_FILE) as store:
        now = utcnow()
        store.insert(
            "runs",
            {
                "id": run_id,
                "kind": "classify-logs",
                "status": "ok",
                "started_at": now,
                "finished_at": now,
                "name": register or "log-classifier",
                "params": params,
                "metrics": result.metrics,
            },
        )
