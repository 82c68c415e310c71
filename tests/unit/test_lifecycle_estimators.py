"""Estimators by name, preprocessing, and metric computation (binary, multiclass, regression)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlctl.core.errors import ConfigError
from mlctl.lifecycle import estimators, metrics


def _xy(task: str, n: int = 60, classes: int = 2) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.RandomState(1)
    X = pd.DataFrame({"a": rng.rand(n), "b": rng.rand(n)})  # noqa: N806
    if task == "regression":
        return X, pd.Series(X["a"] * 2 + rng.rand(n) * 0.1)
    return X, pd.Series(np.array(["cat", "dog", "eel"][:classes])[(X["a"] * classes).astype(int).clip(0, classes - 1)])


@pytest.mark.parametrize(("name", "task"), [(n, t) for n, ts in estimators.BUILTINS.items() for t in ts])
def test_every_builtin_builds_fits_and_takes_the_seed(name: str, task: str) -> None:
    est = estimators.build_estimator(name, task, {}, seed=7)
    if "random_state" in est.get_params():
        assert est.get_params()["random_state"] == 7
    X, y = _xy(task)  # noqa: N806
    assert len(est.fit(X, y).predict(X)) == len(X)


def test_params_are_applied_and_unknown_ones_listed() -> None:
    est = estimators.build_estimator("random_forest", "classification", {"n_estimators": 5, "random_state": 1},
                                     seed=7)
    assert est.n_estimators == 5 and est.random_state == 1 and est.n_jobs == 1
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) n_trees for model 'random_forest'") as info:
        estimators.build_estimator("random_forest", "classification", {"n_trees": 5})
    assert "n_estimators" in (info.value.hint or "")
    with pytest.raises(ConfigError, match="does not support regression"):
        estimators.build_estimator("logistic_regression", "regression")
    with pytest.raises(ConfigError, match="unknown model 'svm'"):
        estimators.build_estimator("svm", "classification")


def test_model_names() -> None:
    assert estimators.check_model_name("pkg.mod:make") == "pkg.mod:make"
    with pytest.raises(ValueError, match="did you mean 'ridge'"):
        estimators.check_model_name("rigde")
    assert estimators.default_search_space("ridge") == {"alpha": {"type": "float", "low": 1e-3, "high": 100.0,
                                                                  "log": True}}
    assert estimators.default_search_space("linear_regression") is None
    assert estimators.default_search_space("pkg:fn") is None


def test_custom_module_function_from_the_project_root(tmp_path: Path) -> None:
    (tmp_path / "my_models_for_test.py").write_text(
        "from sklearn.linear_model import Ridge\n"
        "def make():\n    return Ridge()\n"
        "def not_an_estimator():\n    return 42\n")
    try:
        est = estimators.build_estimator("my_models_for_test:make", "regression", {"alpha": 3.0}, root=tmp_path)
        assert type(est).__name__ == "Ridge" and est.alpha == 3.0
        assert str(tmp_path) not in sys.path
        with pytest.raises(ConfigError, match="returned int, not an estimator"):
            estimators.build_estimator("my_models_for_test:not_an_estimator", "regression", root=tmp_path)
        with pytest.raises(ConfigError, match="has no attribute 'missing'"):
            estimators.build_estimator("my_models_for_test:missing", "regression", root=tmp_path)
    finally:
        sys.modules.pop("my_models_for_test", None)
    with pytest.raises(ConfigError, match="cannot import module 'no_such_module_xyz'"):
        estimators.build_estimator("no_such_module_xyz:make", "regression", root=tmp_path)


def test_preprocessing_only_when_needed() -> None:
    X, y = _xy("classification")  # noqa: N806
    base = estimators.build_estimator("logistic_regression", "classification")
    assert estimators.with_preprocessing(base, X) is base
    mixed = X.assign(colour=["red", "blue", None] * 20)
    mixed.loc[3, "a"] = np.nan
    model = estimators.with_preprocessing(base, mixed).fit(mixed, y)
    assert estimators.final_estimator(model) is base
    unseen = mixed.head(2).assign(colour=["purple", "red"])
    assert len(model.predict(unseen)) == 2
    assert estimators.column_kinds(mixed.assign(ok=True, n=1)) == {
        "a": "double", "b": "double", "colour": "string", "ok": "boolean", "n": "long"}


def test_binary_metrics_use_the_greater_label_as_positive() -> None:
    X, y = _xy("classification")  # noqa: N806
    model = estimators.build_estimator("logistic_regression", "classification").fit(X, y)
    scores = metrics.score("classification", ["f1", "accuracy", "roc_auc", "precision", "recall", "log_loss",
                                              "balanced_accuracy"], model, X, y, ["cat", "dog"])
    from sklearn.metrics import f1_score

    assert scores["f1"] == pytest.approx(f1_score(y, model.predict(X), pos_label="dog"))
    assert 0.5 < scores["roc_auc"] <= 1.0 and scores["log_loss"] > 0


def test_multiclass_metrics_and_decision_function_models() -> None:
    X, y = _xy("classification", n=90, classes=3)  # noqa: N806
    for name in ("random_forest", "ridge"):  # ridge: RidgeClassifier has no predict_proba
        model = estimators.build_estimator(name, "classification").fit(X, y)
        scores = metrics.score("classification", ["f1", "roc_auc", "log_loss"], model, X, y, ["cat", "dog", "eel"])
        assert 0 < scores["f1"] <= 1 and 0.5 < scores["roc_auc"] <= 1
        assert np.isnan(scores["log_loss"]) == (name == "ridge")


def test_a_metric_that_cannot_be_computed_is_nan() -> None:
    X, y = _xy("classification")  # noqa: N806
    model = estimators.build_estimator("logistic_regression", "classification").fit(X, y)
    one_class = y == y.iloc[0]
    scores = metrics.score("classification", ["roc_auc", "accuracy"], model, X[one_class], y[one_class],
                           ["cat", "dog"])
    assert np.isnan(scores["roc_auc"]) and scores["accuracy"] >= 0


def test_regression_metrics() -> None:
    X, y = _xy("regression")  # noqa: N806
    model = estimators.build_estimator("linear_regression", "regression").fit(X, y)
    scores = metrics.score("regression", ["rmse", "mae", "mse", "r2", "mape"], model, X, y)
    assert scores["rmse"] == pytest.approx(scores["mse"] ** 0.5)
    assert scores["r2"] > 0.9 and scores["mae"] < scores["rmse"] * 2
