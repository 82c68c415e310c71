"""The ``train:`` section of ``mlctl.yaml``: what to train on, which model, how to judge it.

Validated with pydantic (``extra="forbid"``) as part of the whole configuration, so a mistake is
reported with the file, line and key like every other config error. :mod:`mlctl.sections`
registers :class:`TrainSpec` as the ``train`` section; importing this module is light (it is
imported whenever the configuration is loaded): no scikit-learn, pandas or MLflow.

.. code-block:: yaml

    train:
      data: data/train.csv          # CSV or Parquet, relative to the project root
      target: label
      features: [age, income]       # default: every other column
      task: classification          # or regression; unset: inferred from the target
      model: random_forest          # a built-in name, module:function, or torch:module:function
      params: {n_estimators: 200}
      metrics: [f1, accuracy]       # default per task
      primary_metric: f1            # default: the first metric
      split: {test_size: 0.2}       # or cv: 5
      seed: 42
      gates: {min_f1: 0.8, max_regression_vs_champion: 0.01}
      search_space:                 # for --tune; default per built-in model
        n_estimators: {type: int, low: 50, high: 400, step: 50}
      registered_model: fraud       # register a version when the gates pass (or --register NAME)

Gates: ``min_<metric>: x`` passes when the metric is at least ``x``; ``max_<metric>: x`` when it
is at most ``x`` (error metrics such as ``max_rmse``); ``max_regression_vs_champion: d`` when the
primary metric is no more than ``d`` (absolute) worse than that of the version holding alias
``champion`` (passes when there is no champion yet).

>>> TrainSpec(task="regression").resolved_metrics()
['rmse', 'mae', 'r2']
>>> TrainSpec(task="classification", metrics=["accuracy", "f1"]).resolved_primary_metric()
'accuracy'
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from mlctl.core.errors import ConfigError
from mlctl.lifecycle.estimators import BUILTINS, check_model_name, supports
from mlctl.lifecycle.metrics import METRICS, default_metrics

CHAMPION_GATE = "max_regression_vs_champion"


def _check_metric(name: str, task: str | None, prefix: str = "") -> None:
    if name not in METRICS:
        raise ValueError(f"{prefix}unknown metric '{name}' (known: {', '.join(METRICS)})")
    if task is not None and METRICS[name].task != task:
        raise ValueError(f"{prefix}metric '{name}' is not a {task} metric "
                         f"(use: {', '.join(n for n, i in METRICS.items() if i.task == task)})")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def parse_gate(name: str) -> tuple[str, str]:
    """``"min_f1"`` -> ``("min", "f1")``; ``max_regression_vs_champion`` -> ``("champion", "")``.

    >>> parse_gate("max_rmse")
    ('max', 'rmse')
    """
    if name == CHAMPION_GATE:
        return "champion", ""
    kind, _, metric = name.partition("_")
    if kind not in ("min", "max") or not metric:
        raise ValueError(f"gate '{name}' must be min_<metric>, max_<metric> or {CHAMPION_GATE}")
    if metric not in METRICS:
        raise ValueError(f"gate '{name}': unknown metric '{metric}' (known: {', '.join(METRICS)})")
    return kind, metric


class SplitSpec(_Strict):
    """``train.split``: a hold-out split of the data (used unless ``train.cv`` is set)."""

    test_size: float = Field(0.2, gt=0, lt=1, description="share of rows held out for evaluation")
    stratify: bool = Field(True, description="keep class proportions in the split (classification)")


class ParamSpace(_Strict):
    """One tunable parameter: ``int``/``float`` between ``low`` and ``high``, or ``categorical``."""

    type: Literal["int", "float", "categorical"]
    low: int | float | None = None
    high: int | float | None = None
    log: bool = False
    step: int | float | None = Field(None, gt=0)
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ParamSpace:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty 'choices' list")
            for c in self.choices:
                if not isinstance(c, (str, int, float, bool)) and c is not None:
                    raise ValueError(f"choices must be strings, numbers, booleans or null (got {c!r})")
        else:
            if self.low is None or self.high is None:
                raise ValueError(f"an {self.type} parameter needs 'low' and 'high'")
            if self.low >= self.high:
                raise ValueError(f"'low' ({self.low}) must be below 'high' ({self.high})")
            if self.log and self.low <= 0:
                raise ValueError("a log-scaled range needs 'low' > 0")
            if self.log and self.step is not None:
                raise ValueError("'step' and 'log' cannot be combined")
        return self


class TrainSpec(_Strict):
    """``train:`` the training job of this project."""

    data: str | None = Field(None, description="CSV or Parquet file, relative to the project root")
    target: str | None = Field(None, description="column to predict")
    features: list[str] | None = Field(None, description="input columns (default: all but the target)")
    task: Literal["classification", "regression"] | None = Field(
        None, description="classification or regression (unset: inferred from the target column, and said)")
    model: str = Field("random_forest", description="built-in model name, module:function (an estimator) "
                       "or torch:module:function (a torch.nn.Module)")
    params: dict[str, Any] = Field(default_factory=dict, description="model parameters")
    metrics: list[str] | None = Field(None, description="metrics to compute (default per task)")
    primary_metric: str | None = Field(None, description="metric for tuning and the champion gate (default: first)")
    split: SplitSpec = SplitSpec()
    cv: int | None = Field(None, ge=2, le=100, description="cross-validation folds (replaces split)")
    seed: int = Field(42, description="random seed for splits, models and tuning")
    gates: dict[str, float] = Field(default_factory=dict, description="min_<metric>, max_<metric>, "
                                    "max_regression_vs_champion")
    search_space: dict[str, ParamSpace] = Field(default_factory=dict, description="tuning search space")
    registered_model: str | None = Field(None, description="register a version of this model when gates pass")
    experiment: str | None = Field(None, description="MLflow experiment (default: tracking.experiment)")

    @field_validator("model")
    @classmethod
    def _model(cls, v: str, info: ValidationInfo) -> str:
        check_model_name(v)
        task = info.data.get("task")
        if task is not None and not supports(v, task):
            raise ValueError(f"model '{v}' does not support {task} (only {' or '.join(BUILTINS[v])})")
        return v

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, v: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("list at least one metric (or leave it out for the defaults)")
        for m in v:
            _check_metric(m, info.data.get("task"))
        return list(dict.fromkeys(v))

    @field_validator("primary_metric")
    @classmethod
    def _primary(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            return v
        _check_metric(v, info.data.get("task"))
        listed = info.data.get("metrics")
        if listed and v not in listed:
            raise ValueError(f"'{v}' is not in train.metrics {listed}")
        return v

    @field_validator("gates")
    @classmethod
    def _gates(cls, v: dict[str, float], info: ValidationInfo) -> dict[str, float]:
        for name, threshold in v.items():
            kind, metric = parse_gate(name)
            if kind == "champion":
                if threshold < 0:
                    raise ValueError(f"{CHAMPION_GATE} must be >= 0")
            else:
                _check_metric(metric, info.data.get("task"), f"gate '{name}': ")
        return v

    @field_validator("registered_model")
    @classmethod
    def _registered_model(cls, v: str | None) -> str | None:
        if v is not None:
            check_model_name_syntax(v)
        return v

    # -- resolved views ---------------------------------------------------------------------------
    def resolved_metrics(self) -> list[str]:
        """The metrics to compute: the spec's, or the task's defaults, plus any a gate needs."""
        task = self.require("task")
        names = list(self.metrics) if self.metrics else default_metrics(task)
        if self.primary_metric and self.primary_metric not in names:
            names.insert(0, self.primary_metric)
        for g in self.gates:
            if g != CHAMPION_GATE:
                metric = parse_gate(g)[1]
                if metric not in names:
                    names.append(metric)
        return names

    def resolved_primary_metric(self) -> str:
        """The metric used to rank tuning trials and compare with the champion."""
        return self.primary_metric or self.resolved_metrics()[0]

    def require(self, key: str) -> Any:
        """The value of ``key``, or :class:`ConfigError` saying it must be set."""
        value = getattr(self, key)
        if value is None:
            hints = {
                "data": "set train.data to a CSV or Parquet file, relative to the project root",
                "target": "set train.target to the column to predict",
                "task": "set train.task: classification or regression",
            }
            raise ConfigError(f"train.{key} is not set in mlctl.yaml", hint=hints.get(key))
        return value


_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def check_model_name_syntax(name: str) -> str:
    """A registered model name: letters, digits, ``-``, ``_``, ``.``; no ``@`` or ``:``.

    >>> check_model_name_syntax("fraud-model")
    'fraud-model'
    """
    if not name or not set(name) <= _NAME_CHARS or name[0] in "-.":
        raise ValueError(f"model name '{name}' may only hold letters, digits, '-', '_' and '.' "
                         "(and must not start with '-' or '.')")
    return name
