"""The train: spec: validation inside mlctl.yaml, resolved defaults, gates and metric directions."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlctl.core.config import load_config, parse_params
from mlctl.core.errors import ConfigError, UsageError
from mlctl.lifecycle import gates, metrics
from mlctl.lifecycle.registry import check_alias, parse_ref
from mlctl.lifecycle.spec import ParamSpace, TrainSpec, parse_gate


def _load(project: Path, train_yaml: str):  # noqa: ANN202
    (project / "mlctl.yaml").write_text("project:\n  name: demo\ntrain:\n" + train_yaml, encoding="utf-8")
    return load_config(start=project)


def test_default_train_section_is_empty_and_valid(project: Path) -> None:
    spec = load_config(start=project).config.train
    assert spec.data is None and spec.task is None and spec.model == "random_forest"
    assert spec.split.test_size == 0.2 and spec.cv is None and spec.seed == 42


def test_a_full_spec_loads(project: Path) -> None:
    spec = _load(project, "  data: d.csv\n  target: y\n  task: regression\n  model: ridge\n"
                          "  params: {alpha: 0.5}\n  gates: {max_rmse: 2.0, min_r2: 0.1}\n  cv: 3\n"
                          "  search_space:\n    alpha: {type: float, low: 0.01, high: 10, log: true}\n").config.train
    assert spec.params == {"alpha": 0.5}
    assert spec.resolved_metrics() == ["rmse", "mae", "r2"]
    assert spec.resolved_primary_metric() == "rmse"
    assert spec.search_space["alpha"].log is True


@pytest.mark.parametrize(("yaml_text", "fragment"), [
    ("  model: random_florest\n", "did you mean 'random_forest'"),
    ("  task: clustering\n", "train.task"),
    ("  task: regression\n  model: logistic_regression\n", "does not support regression"),
    ("  task: classification\n  metrics: [rmse]\n", "'rmse' is not a classification metric"),
    ("  metrics: [f2]\n", "unknown metric 'f2'"),
    ("  split: {test_size: 1.5}\n", "train.split.test_size"),
    ("  cv: 1\n", "train.cv"),
    ("  registered_model: 'bad name'\n", "may only hold"),
    ("  search_space: {alpha: {type: float, low: 2, high: 1}}\n", "must be below"),
    ("  search_space: {alpha: {type: categorical}}\n", "non-empty 'choices'"),
    ("  colour: red\n", "unknown key"),
])
def test_invalid_specs_name_the_file_line_and_key(project: Path, yaml_text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        _load(project, yaml_text)
    assert fragment in info.value.message + (info.value.hint or "")
    assert str(project / "mlctl.yaml") + ":" in info.value.message
    assert info.value.exit_code == 2


@pytest.mark.parametrize(("gates_yaml", "fragment"), [
    ("{min_f2: 0.5}", "gate 'min_f2': unknown metric 'f2'"),
    ("{above_f1: 0.5}", "gate 'above_f1' must be min_<metric>, max_<metric> or max_regression_vs_champion"),
    ("{max_regression_vs_champion: -1}", "max_regression_vs_champion must be >= 0"),
    ("{min_rmse: 0.5}", "gate 'min_rmse': metric 'rmse' is not a classification metric"),
])
def test_invalid_gates(project: Path, gates_yaml: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        _load(project, f"  task: classification\n  gates: {gates_yaml}\n")
    assert "train.gates: " in info.value.message and fragment in info.value.message


def test_unknown_key_suggests_the_close_one(project: Path) -> None:
    with pytest.raises(ConfigError) as info:
        _load(project, "  taret: y\n")
    assert info.value.hint == "did you mean 'target'?"
    assert ":4: train.taret: unknown key" in info.value.message


def test_env_overrides_train_keys(project: Path) -> None:
    loaded = load_config(start=project, env={"MLCTL_TRAIN_MODEL": "ridge", "MLCTL_TRAIN__SEED": "7"})
    assert loaded.config.train.model == "ridge" and loaded.config.train.seed == 7
    assert loaded.origins["train.model"] == "env: MLCTL_TRAIN_MODEL"


def test_require_names_the_missing_key() -> None:
    with pytest.raises(ConfigError, match=r"train\.task is not set") as info:
        TrainSpec().require("task")
    assert "classification or regression" in (info.value.hint or "")


def test_gate_metrics_are_computed_even_when_not_listed() -> None:
    spec = TrainSpec(task="classification", metrics=["accuracy"], gates={"min_f1": 0.5})
    assert spec.resolved_metrics() == ["accuracy", "f1"]
    assert TrainSpec(task="classification", primary_metric="roc_auc").resolved_primary_metric() == "roc_auc"
    assert TrainSpec(task="classification", primary_metric="log_loss").resolved_metrics() == [
        "log_loss", "f1", "accuracy", "roc_auc"]


def test_param_space_rules() -> None:
    assert ParamSpace(type="int", low=1, high=5).low == 1
    for bad in ({"type": "float", "low": 0, "high": 1, "log": True},
                {"type": "float", "low": 1, "high": 2, "log": True, "step": 0.1},
                {"type": "int", "low": 1}):
        with pytest.raises(ValueError):
            ParamSpace.model_validate(bad)


def test_metric_directions_and_better() -> None:
    assert metrics.higher_is_better("roc_auc") and not metrics.higher_is_better("mae")
    assert metrics.better("mae", 1.0, 0.5) == 1 and metrics.better("accuracy", 0.9, 0.8) == -1
    assert metrics.better("f1", 0.5, 0.5) == 0 and metrics.better("f1", float("nan"), 0.5) == 0
    assert set(metrics.metrics_for("regression")) == {"rmse", "mae", "mse", "r2", "mape"}


def test_gates_min_max_and_champion() -> None:
    results = gates.evaluate({"f1": 0.8, "rmse": 1.0}, {"min_f1": 0.85, "max_rmse": 1.5}, primary_metric="f1")
    assert [(g.name, g.passed) for g in results] == [("min_f1", False), ("max_rmse", True)]
    assert gates.summary(results) == "min_f1: 0.8 < 0.85"
    champ = gates.evaluate({"rmse": 1.02}, {"max_regression_vs_champion": 0.01}, primary_metric="rmse",
                           champion={"rmse": 1.0})[0]
    assert not champ.passed and champ.value == pytest.approx(0.02)
    better_than_champ = gates.evaluate({"f1": 0.9}, {"max_regression_vs_champion": 0.0}, primary_metric="f1",
                                       champion={"f1": 0.85})[0]
    assert better_than_champ.passed and better_than_champ.value == pytest.approx(-0.05)
    no_champion = gates.evaluate({"f1": 0.1}, {"max_regression_vs_champion": 0.0}, primary_metric="f1")[0]
    assert no_champion.passed and no_champion.value is None
    nan = gates.evaluate({"roc_auc": float("nan")}, {"min_roc_auc": 0.5}, primary_metric="roc_auc")[0]
    assert not nan.passed and "n/a" in gates.summary([nan])


def test_parse_gate() -> None:
    assert parse_gate("min_roc_auc") == ("min", "roc_auc")
    assert parse_gate("max_regression_vs_champion") == ("champion", "")


def test_parse_params() -> None:
    assert parse_params(["n=3", "rate=0.1", "flag=true", "depth=null", "name=a=b"]) == {
        "n": 3, "rate": 0.1, "flag": True, "depth": None, "name": "a=b"}
    for bad in ("noequals", "=3", "bad key=1"):
        with pytest.raises(UsageError, match="expected NAME=VALUE"):
            parse_params([bad])


def test_parse_ref() -> None:
    assert parse_ref("fraud@champion") == ("fraud", "champion", None)
    assert parse_ref(" fraud:007 ") == ("fraud", None, "7")
    assert parse_ref("my.model-2") == ("my.model-2", None, None)
    for bad in ("", "fraud@", "fraud:x", "fraud:0", "@champion", "fraud@latest", "a b"):
        with pytest.raises(UsageError) as info:
            parse_ref(bad)
        assert "NAME@ALIAS" in (info.value.hint or "")


def test_check_alias() -> None:
    assert check_alias("champion") == "champion"
    for bad in ("latest", "v3", "has space"):
        with pytest.raises(UsageError):
            check_alias(bad)
