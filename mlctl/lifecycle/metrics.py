"""Evaluation metrics: the names mlctl knows, which way is better, and how each is computed.

The table (:data:`METRICS`) is plain data, so the ``train:`` spec can be validated without
importing scikit-learn; :func:`score` imports it when metrics are actually computed.

Classification metrics handle binary and multiclass targets: ``f1``, ``precision`` and
``recall`` use the greater label (in sorted order) as the positive class for binary targets and
the macro average for multiclass ones; ``roc_auc`` uses the positive class' probability for
binary targets and one-vs-rest macro averaging for multiclass ones.

>>> higher_is_better("f1"), higher_is_better("rmse")
(True, False)
>>> default_metrics("regression")
['rmse', 'mae', 'r2']
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Task = Literal["classification", "regression"]
TASKS: tuple[Task, ...] = ("classification", "regression")


@dataclass(frozen=True)
class MetricInfo:
    """One metric: the task it applies to and whether a higher value is better."""

    name: str
    task: Task
    higher_is_better: bool
    needs_scores: bool = False  # computed from probabilities / decision scores
    description: str = ""


METRICS: dict[str, MetricInfo] = {m.name: m for m in (
    MetricInfo("f1", "classification", True, description="F1 (binary: positive class; multiclass: macro)"),
    MetricInfo("accuracy", "classification", True, description="share of correct predictions"),
    MetricInfo("roc_auc", "classification", True, True, "ROC AUC (multiclass: one-vs-rest, macro)"),
    MetricInfo("precision", "classification", True, description="precision (binary: positive; multiclass: macro)"),
    MetricInfo("recall", "classification", True, description="recall (binary: positive; multiclass: macro)"),
    MetricInfo("balanced_accuracy", "classification", True, description="mean recall per class"),
    MetricInfo("log_loss", "classification", False, True, "cross-entropy of the predicted probabilities"),
    MetricInfo("rmse", "regression", False, description="root mean squared error"),
    MetricInfo("mae", "regression", False, description="mean absolute error"),
    MetricInfo("mse", "regression", False, description="mean squared error"),
    MetricInfo("r2", "regression", True, description="coefficient of determination"),
    MetricInfo("mape", "regression", False, description="mean absolute percentage error"),
)}

DEFAULT_METRICS: dict[str, list[str]] = {
    "classification": ["f1", "accuracy", "roc_auc"],
    "regression": ["rmse", "mae", "r2"],
}


def default_metrics(task: str) -> list[str]:
    """The metrics computed when the spec names none."""
    return list(DEFAULT_METRICS[task])


def higher_is_better(name: str) -> bool:
    """True when a greater value of ``name`` is better; unknown metrics are assumed higher-better."""
    info = METRICS.get(name)
    return True if info is None else info.higher_is_better


def metrics_for(task: str) -> list[str]:
    """Every metric name that applies to ``task``."""
    return [m.name for m in METRICS.values() if m.task == task]


def better(name: str, a: float | None, b: float | None) -> int:
    """Which of two values of metric ``name`` is better: -1 (``a``), 1 (``b``) or 0 (tie/unknown).

    >>> better("rmse", 1.0, 2.0), better("r2", 0.5, 0.7), better("f1", None, 0.1)
    (-1, 1, 0)
    """
    if a is None or b is None or _nan(a) or _nan(b) or a == b:
        return 0
    a_wins = a > b if higher_is_better(name) else a < b
    return -1 if a_wins else 1


def _nan(x: float) -> bool:
    return isinstance(x, float) and math.isnan(x)


def _scores(model: Any, X: Any) -> tuple[Any, bool]:  # noqa: N803 - scikit-learn naming
    """Class probabilities (or decision scores) of a fitted classifier and whether they are
    probabilities; ``(None, False)`` when it has neither."""
    if hasattr(model, "predict_proba"):
        try:
            return model.predict_proba(X), True
        except (AttributeError, NotImplementedError):  # e.g. SVC(probability=False)
            pass
    if hasattr(model, "decision_function"):
        return model.decision_function(X), False
    return None, False


def score(task: str, names: Iterable[str], model: Any, X: Any, y_true: Any,  # noqa: N803
          classes: Sequence[Any] | None = None) -> dict[str, float]:
    """Compute ``names`` for a fitted ``model`` on ``(X, y_true)``.

    ``classes`` are all the labels of the training target (sorted); they fix the positive class
    and the columns of ``predict_proba``. A metric that cannot be computed on this data (ROC AUC
    with a single class present, say) comes back as NaN rather than failing the run.
    """
    import numpy as np
    from sklearn import metrics as skm

    names = list(names)
    y_pred = model.predict(X)
    out: dict[str, float] = {}
    if task == "regression":
        y = np.asarray(y_true, dtype=float)
        p = np.asarray(y_pred, dtype=float)
        funcs = {
            "rmse": lambda: math.sqrt(skm.mean_squared_error(y, p)),
            "mae": lambda: skm.mean_absolute_error(y, p),
            "mse": lambda: skm.mean_squared_error(y, p),
            "r2": lambda: skm.r2_score(y, p),
            "mape": lambda: skm.mean_absolute_percentage_error(y, p),
        }
        for n in names:
            out[n] = _safe(funcs[n])
        return out

    labels = list(classes) if classes is not None else sorted(set(np.asarray(y_true).tolist()))
    binary = len(labels) == 2
    avg: dict[str, Any] = {"average": "binary", "pos_label": labels[-1]} if binary else {"average": "macro"}
    scores, is_proba = _scores(model, X) if any(METRICS[n].needs_scores for n in names) else (None, False)

    def roc_auc() -> float:
        if scores is None:
            return float("nan")
        s = np.asarray(scores)
        if binary:
            col = s[:, -1] if s.ndim == 2 else s
            return skm.roc_auc_score(np.asarray(y_true) == labels[-1], col)
        if not is_proba:  # decision scores -> softmax, as one-vs-rest AUC wants probabilities
            e = np.exp(s - s.max(axis=1, keepdims=True))
            s = e / e.sum(axis=1, keepdims=True)
        return skm.roc_auc_score(y_true, s, multi_class="ovr", average="macro", labels=labels)

    def log_loss() -> float:
        if scores is None or not is_proba:
            return float("nan")
        return skm.log_loss(y_true, scores, labels=labels)

    funcs = {
        "f1": lambda: skm.f1_score(y_true, y_pred, labels=None if binary else labels, zero_division=0, **avg),
        "precision": lambda: skm.precision_score(y_true, y_pred, zero_division=0, **avg),
        "recall": lambda: skm.recall_score(y_true, y_pred, zero_division=0, **avg),
        "accuracy": lambda: skm.accuracy_score(y_true, y_pred),
        "balanced_accuracy": lambda: skm.balanced_accuracy_score(y_true, y_pred),
        "roc_auc": roc_auc,
        "log_loss": log_loss,
    }
    for n in names:
        out[n] = _safe(funcs[n])
    return out


def _safe(fn: Any) -> float:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return float(fn())
        except ValueError:
            return float("nan")
