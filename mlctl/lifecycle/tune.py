"""Hyperparameter tuning with Optuna: TPE sampling, median pruning over cross-validation folds.

Each trial cross-validates one parameter set on the training data and reports the running mean of
the primary metric after every fold, so :class:`optuna.pruners.MedianPruner` stops trials that are
already worse than the median of earlier ones at the same fold. Each trial is a nested MLflow run
under the training run (tags ``mlflow.parentRunId``, ``mlctl.kind=trial``), with its params, the
per-fold metric (as steps) and the mean.

The study lives in embedded SQLite (``<project>/.mlctl/optuna.db``) by default, or in the database
given by ``--tune-storage`` (e.g. ``postgresql://user@host/db``), so several processes or machines
work on one study at the same time: the study name is derived from the experiment, the model, the
primary metric and the dataset's hash, and the study is opened with ``load_if_exists``. Each
process runs its own ``n_trials``; the best trial of the whole study wins. An SQLite storage is
created under an inter-process lock (:func:`mlctl.core.locks.store_lock`), so processes that
start together on a fresh file wait for the first one to create Optuna's tables.

>>> study_name("default", "random_forest", "f1", "ab" * 32)
'default.random_forest.f1.abababababab'
"""

from __future__ import annotations

import math
import os
import re
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlctl.core.errors import MlctlError, OperationFailed, StateError, UsageError
from mlctl.core.locks import check_writable, store_lock
from mlctl.lifecycle.estimators import default_search_space, is_custom
from mlctl.lifecycle.metrics import higher_is_better
from mlctl.lifecycle.spec import ParamSpace, TrainSpec
from mlctl.lifecycle.tracking import redact, sqlalchemy_url, sqlite_file

OPTUNA_DB = "optuna.db"
DEFAULT_TUNE_FOLDS = 3


@dataclass
class TuningSummary:
    """What ``--tune`` did (the ``tuning`` key of ``mlctl train -o json``)."""

    study: str
    storage: str  # password redacted
    direction: str  # "maximize" or "minimize"
    metric: str
    n_trials: int  # asked of this process
    trials_run: int  # run by this process
    complete: int  # ... of which completed
    pruned: int
    failed: int
    study_trials: int  # in the whole study, every process
    best_value: float
    best_params: dict[str, Any] = field(default_factory=dict)
    best_trial: int = 0
    timed_out: bool = False


def study_name(experiment: str, model: str, metric: str, dataset_sha256: str) -> str:
    """The shared study's name: experiment, model, primary metric and the dataset hash's prefix."""
    raw = f"{experiment}.{model}.{metric}.{dataset_sha256[:12]}"
    return re.sub(r"[^A-Za-z0-9_.:-]+", "_", raw)


def storage_url(root: Path, tune_storage: str | None) -> str:
    """The study storage: ``tune_storage`` (made loadable by SQLAlchemy) or embedded SQLite."""
    if tune_storage:
        if not re.match(r"^(sqlite|postgresql|postgres|mysql)(\+\w+)?://", tune_storage):
            raise UsageError(f"--tune-storage: unsupported storage URL '{redact(tune_storage)}'",
                             hint="use postgresql://USER@HOST:PORT/DB, mysql://... or sqlite:////abs/path.db")
        return sqlalchemy_url(tune_storage)
    folder = root / ".mlctl"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(folder / OPTUNA_DB).resolve()}"


def search_space(spec: TrainSpec, fixed: Iterable[str] = ()) -> dict[str, ParamSpace]:
    """The spec's search space, or the model's default, minus the parameters fixed by ``--param``."""
    if spec.search_space:
        space = dict(spec.search_space)
    else:
        default = default_search_space(spec.model)
        if default is None:
            what = "custom models have no default" if is_custom(spec.model) else f"'{spec.model}' has no default"
            raise UsageError(f"--tune: no search space for model '{spec.model}' ({what})",
                             hint="add train.search_space to mlctl.yaml, e.g. "
                                  "{alpha: {type: float, low: 0.001, high: 10, log: true}}")
        space = {k: ParamSpace.model_validate(v) for k, v in default.items()}
    space = {k: v for k, v in space.items() if k not in set(fixed)}
    if not space:
        raise UsageError("--tune: every parameter of the search space is fixed by --param")
    return space


def suggest(trial: Any, space: Mapping[str, ParamSpace]) -> dict[str, Any]:
    """One parameter set from ``space`` for an Optuna trial."""
    params: dict[str, Any] = {}
    for name, p in space.items():
        if p.type == "categorical":
            params[name] = trial.suggest_categorical(name, list(p.choices or []))
        elif p.type == "int":
            assert p.low is not None and p.high is not None
            params[name] = trial.suggest_int(name, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
        else:
            assert p.low is not None and p.high is not None
            params[name] = trial.suggest_float(name, float(p.low), float(p.high), step=p.step, log=p.log)
    return params


def _splitter(task: str, folds: int, seed: int, y: Any) -> Any:
    from sklearn.model_selection import KFold, StratifiedKFold

    if task == "classification" and int(y.value_counts().min()) >= folds:
        return StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return KFold(n_splits=folds, shuffle=True, random_state=seed)


def cross_validate(make_model: Callable[[], Any], X: Any, y: Any, *, task: str,  # noqa: N803
                   metrics: list[str], folds: int, seed: int, classes: list[Any] | None,
                   on_fold: Callable[[int, list[dict[str, float]]], None] | None = None) -> list[dict[str, float]]:
    """``metrics`` on each fold; ``on_fold(step, scores_so_far)`` after each (it may raise to prune)."""
    from mlctl.lifecycle.metrics import score

    scores: list[dict[str, float]] = []
    for step, (train_idx, test_idx) in enumerate(_splitter(task, folds, seed, y).split(X, y)):
        model = make_model().fit(X.iloc[train_idx], y.iloc[train_idx])
        scores.append(score(task, metrics, model, X.iloc[test_idx], y.iloc[test_idx], classes))
        if on_fold is not None:
            on_fold(step, scores)
    return scores


def mean_scores(scores: list[dict[str, float]]) -> dict[str, float]:
    """The mean of each metric over folds (NaN folds left out)."""
    names = list(scores[0]) if scores else []
    return {n: _mean([s[n] for s in scores]) for n in names}


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else float("nan")


#: Two workers starting on a new shared storage race to create Optuna's tables; the loser gets a
#: unique-key violation from the database and simply tries again once the winner is done.
_CREATE_ATTEMPTS = 6


def _creation_race(exc: Exception) -> bool:
    text = str(exc).lower()
    return type(exc).__name__ == "IntegrityError" or "duplicate key" in text or "already exists" in text


def _open_study(optuna: Any, name: str, storage: str, direction: str, pruner: Any) -> Any:
    """Create or load the study, retrying the schema-creation race of concurrent first starts.

    An SQLite file is created under a file lock instead: the race cannot happen there.
    """
    import time
    from contextlib import nullcontext

    from mlctl.core.errors import ServiceUnavailable

    db = sqlite_file(storage)
    for attempt in range(_CREATE_ATTEMPTS):
        try:
            with store_lock(db, what=f"the Optuna study store {db}") if db is not None else nullcontext():
                return optuna.create_study(study_name=name, storage=storage, direction=direction, pruner=pruner,
                                           load_if_exists=True)
        except MlctlError:  # the store's lock could not be taken
            raise
        except ImportError as exc:
            raise OperationFailed(f"--tune-storage {redact(storage)}: missing database driver: {exc}",
                                  hint="pip install 'mlctl[postgres]' for PostgreSQL") from exc
        except Exception as exc:  # SQLAlchemy connection errors and the like
            if _creation_race(exc) and attempt < _CREATE_ATTEMPTS - 1:
                time.sleep(0.2 * (attempt + 1))
                continue
            if db is not None and any(m in str(exc).lower() for m in ("readonly database", "unable to open")):
                check_writable(db, what="Optuna study store")  # names the file and the cause
                raise StateError(f"cannot write to the Optuna study store {db}: {str(exc).splitlines()[0]}",
                                 hint="check the permissions of the file and its folder") from None
            raise ServiceUnavailable(f"cannot open the Optuna study storage {redact(storage)}: "
                                     f"{str(exc).splitlines()[0]}",
                                     hint="check --tune-storage and that the database server runs") from None
    raise AssertionError("unreachable")  # pragma: no cover


def tune(spec: TrainSpec, X: Any, y: Any, *, classes: list[Any] | None,  # noqa: N803
         make_model: Callable[[dict[str, Any]], Any], base_params: Mapping[str, Any], fixed: Mapping[str, Any],
         n_trials: int, timeout: float | None, storage: str, name: str, shared: bool,
         log_trial: Callable[[int, dict[str, Any], list[float], str], None] | None = None,
         on_trial: Callable[[], None] | None = None) -> TuningSummary:
    """Run ``n_trials`` (or until ``timeout`` seconds) on the study ``name`` in ``storage``.

    ``make_model(params)`` builds an unfitted model; each trial uses ``base_params`` overridden by
    the sampled ones and then by ``fixed``. ``log_trial(number, params, fold_values, state)``
    records a finished trial (a nested MLflow run); ``on_trial()`` advances a progress bar.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    metric = spec.resolved_primary_metric()
    task = spec.require("task")
    direction = "maximize" if higher_is_better(metric) else "minimize"
    folds = spec.cv or DEFAULT_TUNE_FOLDS
    space = search_space(spec, fixed)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    study = _open_study(optuna, name, storage, direction, pruner)
    if study.direction.name.lower() != direction:
        raise UsageError(f"study '{name}' optimises in the other direction ({study.direction.name.lower()})")
    before = len(study.trials)
    # Seeded for reproducibility; offset by the study's history (and, for shared storage, by the
    # process) so resumed or parallel workers do not replay the same random start-up points.
    seed = spec.seed + before + (os.getpid() if shared else 0)
    study.sampler = optuna.samplers.TPESampler(seed=seed % (2**32), n_startup_trials=5)
    mine: list[int] = []

    worker = f"{socket.gethostname()}:{os.getpid()}"

    def objective(trial: Any) -> float:
        mine.append(trial.number)
        trial.set_user_attr("mlctl.worker", worker)  # which process ran it (shared studies)
        params = {**base_params, **suggest(trial, space), **fixed}
        seen: list[float] = []

        def report(step: int, scores: list[dict[str, float]]) -> None:
            seen[:] = [s[metric] for s in scores]
            running = _mean(seen)
            if math.isnan(running):
                return
            trial.report(running, step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at fold {step + 1}")

        state = "FAILED"
        try:
            cross_validate(lambda: make_model(params), X, y, task=task, metrics=[metric], folds=folds,
                           seed=spec.seed, classes=classes, on_fold=report)
            value = _mean(seen)
            if math.isnan(value):
                raise ValueError(f"{metric} could not be computed on any fold")
            state = "FINISHED"
            return value
        except optuna.TrialPruned:
            state = "KILLED"
            raise
        finally:
            if log_trial is not None:
                log_trial(trial.number, params, list(seen), state)
            if on_trial is not None:
                on_trial()

    started = time.monotonic()
    study.optimize(objective, n_trials=n_trials, timeout=timeout, catch=(ValueError, TypeError),
                   gc_after_trial=False)
    elapsed = time.monotonic() - started
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    states = [trials[n].state.name for n in mine if n in trials]
    try:
        best = study.best_trial
    except ValueError:
        raise OperationFailed(f"tuning finished without a completed trial ({len(mine)} run: "
                              f"{states.count('PRUNED')} pruned, {states.count('FAIL')} failed)",
                              hint="rerun with --verbose; check the search space and the data") from None
    return TuningSummary(
        study=name, storage=redact(storage), direction=direction, metric=metric, n_trials=n_trials,
        trials_run=len(mine), complete=states.count("COMPLETE"), pruned=states.count("PRUNED"),
        failed=states.count("FAIL"), study_trials=len(trials), best_value=float(best.value),
        best_params=dict(best.params), best_trial=best.number,
        timed_out=timeout is not None and elapsed >= timeout and len(mine) < n_trials)
