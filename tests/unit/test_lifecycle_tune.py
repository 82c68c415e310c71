"""Tuning: search spaces, suggestions, study naming and storage, and a real (SQLite) Optuna study."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlctl.core.errors import UsageError
from mlctl.lifecycle import tune
from mlctl.lifecycle.estimators import build_estimator
from mlctl.lifecycle.spec import ParamSpace, TrainSpec


def test_search_space_default_custom_and_fixed() -> None:
    spec = TrainSpec(task="classification", model="random_forest")
    assert set(tune.search_space(spec)) == {"n_estimators", "max_depth", "min_samples_leaf", "max_features"}
    assert "n_estimators" not in tune.search_space(spec, {"n_estimators": 10})
    own = TrainSpec(task="regression", model="ridge",
                    search_space={"alpha": ParamSpace(type="float", low=0.1, high=1.0)})
    assert tune.search_space(own)["alpha"].high == 1.0
    with pytest.raises(UsageError, match="no search space for model 'linear_regression'") as info:
        tune.search_space(TrainSpec(task="regression", model="linear_regression"))
    assert "train.search_space" in (info.value.hint or "")
    with pytest.raises(UsageError, match="custom models have no default"):
        tune.search_space(TrainSpec(task="regression", model="pkg:make"))
    with pytest.raises(UsageError, match="every parameter of the search space is fixed"):
        tune.search_space(own, ["alpha"])


def test_suggest_covers_every_kind() -> None:
    import optuna

    space = {"n": ParamSpace(type="int", low=2, high=10, step=2), "lr": ParamSpace(type="float", low=1e-3, high=1,
                                                                                    log=True),
             "kind": ParamSpace(type="categorical", choices=["a", "b", None])}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        params = tune.suggest(study.ask(), space)
        assert params["n"] in (2, 4, 6, 8, 10) and 1e-3 <= params["lr"] <= 1 and params["kind"] in ("a", "b", None)


def test_study_name_and_storage(tmp_path: Path) -> None:
    assert tune.study_name("my exp", "pkg.mod:make", "rmse", "f" * 64) == "my_exp.pkg.mod:make.rmse.ffffffffffff"
    assert tune.storage_url(tmp_path, None) == f"sqlite:///{tmp_path / '.mlctl' / 'optuna.db'}"
    assert tune.storage_url(tmp_path, "postgresql://u@h/db").startswith(("postgresql+psycopg://u@h/db",
                                                                          "postgresql://u@h/db"))  # by driver
    with pytest.raises(UsageError, match="unsupported storage URL 'redis://u:\\*\\*\\*@h'"):
        tune.storage_url(tmp_path, "redis://u:pw@h")


def _data() -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.RandomState(0)
    X = pd.DataFrame({"a": rng.rand(120), "b": rng.rand(120)})  # noqa: N806
    return X, (X["a"] + 0.2 * rng.rand(120) > 0.6).astype(int)


def test_tune_runs_a_study_with_per_fold_reports(tmp_path: Path) -> None:
    import optuna

    X, y = _data()  # noqa: N806
    spec = TrainSpec(task="classification", model="decision_tree", cv=3, metrics=["accuracy"])
    logged: list[tuple[int, dict[str, Any], list[float], str]] = []
    ticks: list[int] = []
    storage = tune.storage_url(tmp_path, None)

    def run(n: int) -> tune.TuningSummary:
        return tune.tune(spec, X, y, classes=[0, 1], make_model=lambda p: build_estimator(
            "decision_tree", "classification", p, seed=0), base_params={"min_samples_split": 2},
            fixed={"max_depth": 3} if n == 2 else {}, n_trials=n, timeout=None, storage=storage, name="s1",
            shared=False, log_trial=lambda *a: logged.append(a), on_trial=lambda: ticks.append(1))

    first = run(6)
    assert (first.trials_run, first.study_trials, first.direction, first.metric) == (6, 6, "maximize", "accuracy")
    assert first.complete + first.pruned + first.failed == 6 and first.complete >= 1
    assert 0.5 < first.best_value <= 1 and set(first.best_params) <= {"max_depth", "min_samples_leaf"}
    assert len(logged) == len(ticks) == 6
    for _number, params, folds, state in logged:
        assert state in ("FINISHED", "KILLED") and params["min_samples_split"] == 2
        assert 1 <= len(folds) <= 3 and all(not math.isnan(v) for v in folds)
    study = optuna.load_study(study_name="s1", storage=storage)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert all(set(t.intermediate_values) == {0, 1, 2} for t in complete)  # a report per fold
    second = run(2)  # the study continues; --param-fixed values win over sampled ones
    assert second.trials_run == 2 and second.study_trials == 8
    assert all(p["max_depth"] == 3 for _, p, _, _ in logged[-2:])


def test_a_trial_that_fails_does_not_stop_the_study(tmp_path: Path) -> None:
    X, y = _data()  # noqa: N806
    spec = TrainSpec(task="classification", model="decision_tree", search_space={
        "max_depth": ParamSpace(type="categorical", choices=[-1, 3])}, cv=2)
    result = tune.tune(spec, X, y, classes=[0, 1], make_model=lambda p: build_estimator(
        "decision_tree", "classification", p), base_params={}, fixed={}, n_trials=6, timeout=None,
        storage=tune.storage_url(tmp_path, None), name="s2", shared=False)
    assert result.failed >= 1 and result.complete >= 1 and result.best_params == {"max_depth": 3}


def test_open_study_retries_the_schema_creation_race(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loser of two workers creating a new storage's tables retries; other errors do not."""
    import optuna

    from mlctl.core.errors import ServiceUnavailable
    from mlctl.lifecycle import tune as tune_mod

    class IntegrityError(Exception):
        pass

    calls: list[int] = []
    real = optuna.create_study

    def racy(**kwargs: object) -> object:
        calls.append(1)
        if len(calls) < 3:
            raise IntegrityError('duplicate key value violates unique constraint "pg_type_typname_nsp_index"')
        return real(**kwargs)

    monkeypatch.setattr(optuna, "create_study", racy)
    study = tune_mod._open_study(optuna, "s", "sqlite:///:memory:", "maximize", None)
    assert study.study_name == "s" and len(calls) == 3

    def down(**kwargs: object) -> object:
        raise OSError("connection refused")

    monkeypatch.setattr(optuna, "create_study", down)
    with pytest.raises(ServiceUnavailable, match="connection refused"):
        tune_mod._open_study(optuna, "s", "postgresql://u:secret@127.0.0.1:1/db", "maximize", None)


def test_an_sqlite_study_store_is_created_under_its_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import optuna

    from mlctl.core.locks import FileLock, lock_path
    from mlctl.lifecycle import tune as tune_mod

    db = tmp_path / ".mlctl" / "optuna.db"
    held: list[bool] = []
    real = optuna.create_study

    def spy(**kwargs: object) -> object:
        held.append(str(lock_path(db).resolve()) in FileLock._held)
        return real(**kwargs)

    monkeypatch.setattr(optuna, "create_study", spy)
    tune_mod._open_study(optuna, "s", tune_mod.storage_url(tmp_path, None), "maximize", None)
    assert held == [True] and lock_path(db).exists()


def test_concurrent_first_studies_on_one_new_sqlite_file(tmp_path: Path) -> None:
    """Four processes open the same study on a file that does not exist yet: all succeed, one study."""
    import subprocess
    import sys
    import textwrap

    import optuna

    storage = tune.storage_url(tmp_path, None)
    worker = textwrap.dedent(f"""
        import optuna
        from mlctl.lifecycle.tune import _open_study
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = _open_study(optuna, "shared", {storage!r}, "maximize", None)
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", worker], stderr=subprocess.PIPE, text=True) for _ in range(4)]
    errs = [p.communicate(timeout=240)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errs
    (summary,) = optuna.get_all_study_summaries(storage)
    assert summary.study_name == "shared" and summary.n_trials == 8
