"""``train()``: fit the project's model, track it in MLflow, gate it, register it.

One call does the whole job described by the ``train:`` spec (see :mod:`mlctl.lifecycle.spec`):

1. check the spec, the data file and its columns (:func:`plan_training`; ``--dry-run`` stops here);
2. check that the tracking store answers (a server that does not: exit 4);
3. load the data, fingerprint it (SHA-256 of the file, rows, schema), check the target's type;
4. open an MLflow run with the dataset fingerprint, git commit, environment and params;
5. with ``tune=N``, run an Optuna study (:mod:`mlctl.lifecycle.tune`), each trial a nested run;
6. fit the final model (best params when tuned) on the training data and evaluate it on the
   hold-out split, or by cross-validation (then refit on all rows);
7. save it as an MLflow model in skops format (explicit trusted types), or as a state_dict with
   its module reference for a ``torch:module:function`` model, and record the file's SHA-256 (run
   tag and version tag ``mlctl.artifact_sha256``) and its flavor (version tag ``mlctl.flavor``);
8. evaluate the gates; when all pass and a name is given, register a version with alias
   ``challenger``; when one fails, raise :class:`~mlctl.core.errors.CheckFailed` (exit 3)
   having registered nothing;
9. record the run in the project's state store (table ``runs``).
"""

from __future__ import annotations

import contextlib
import getpass
import math
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlctl.core.config import LoadedConfig
from mlctl.core.errors import CheckFailed, ConfigError, UsageError
from mlctl.core.locks import check_writable
from mlctl.core.output import Result, Table, log, message, progress, to_data
from mlctl.core.state import STATE_FILE, StateStore, utcnow
from mlctl.lifecycle import gates as gates_mod
from mlctl.lifecycle.data import DatasetFingerprint, check_columns, read_columns, resolve_data_path
from mlctl.lifecycle.estimators import BUILTINS, is_custom, is_torch
from mlctl.lifecycle.registry import CHALLENGER, TAG_FLAVOR, TAG_PATH, TAG_SHA256, RegisteredVersion
from mlctl.lifecycle.spec import CHAMPION_GATE, TrainSpec, check_model_name_syntax
from mlctl.lifecycle.tracking import redact, resolve_uri, sqlite_file
from mlctl.lifecycle.tune import DEFAULT_TUNE_FOLDS, OPTUNA_DB, TuningSummary, storage_url

MODEL_ARTIFACT_DIR = "model"


@dataclass
class TrainOptions:
    """Command-line choices layered over the ``train:`` spec."""

    params: dict[str, Any] = field(default_factory=dict)  # --param k=v (override train.params)
    tune: int | None = None  # --tune N
    timeout: float | None = None  # --timeout S (tuning)
    register: str | None = None  # --register NAME (else train.registered_model)
    experiment: str | None = None  # --experiment NAME (else train.experiment, tracking.experiment)
    tune_storage: str | None = None  # --tune-storage URL (else .mlctl/optuna.db)


@dataclass
class TrainPlan(Result):
    """What ``mlctl train --dry-run`` prints: the resolved spec and the steps a run would take."""

    spec: dict[str, Any]
    data: str
    features: list[str]
    estimator: str
    evaluation: str
    tracking_uri: str
    experiment: str
    register: str | None
    tuning: dict[str, Any] | None
    steps: list[str]
    dry_run: bool = True

    title = "mlctl train --dry-run (nothing was run)"

    def document(self) -> dict[str, Any]:
        return to_data(self)

    def table(self) -> dict[str, Any]:
        rows: dict[str, Any] = {"data": self.data, "target": self.spec["target"], "features": ", ".join(self.features),
                                "task": self.spec["task"], "model": f"{self.spec['model']} ({self.estimator})",
                                "params": self.spec["params"] or None, "evaluation": self.evaluation,
                                "gates": self.spec["gates"] or None, "tracking": self.tracking_uri,
                                "experiment": self.experiment, "register": self.register}
        if self.tuning:
            rows["tuning"] = {k: v for k, v in self.tuning.items() if k != "search_space"}
            rows["search space"] = self.tuning["search_space"]
        rows.update({f"step {i}": step for i, step in enumerate(self.steps, 1)})
        return rows


@dataclass
class TrainResult(Result):
    """Stable keys of ``mlctl train -o json``."""

    run_id: str
    experiment: str
    metrics: dict[str, float]
    params: dict[str, Any]
    dataset: DatasetFingerprint
    gates: list[gates_mod.GateResult]
    registered: RegisteredVersion | None
    artifact_sha256: str
    tuning: TuningSummary | None

    def document(self) -> dict[str, Any]:
        return to_data(self)

    def tables(self) -> list[Table]:
        return [Table(self.table(), title=f"run {self.run_id}")]

    def notes(self) -> list[str]:
        r = self.registered
        if r is None:
            return []
        return [f"Registered {r.name} version {r.version} as @{r.alias}. "
                f"Next: mlctl models promote {r.name} {r.version} --alias champion"]

    def table(self) -> dict[str, Any]:
        rows: dict[str, Any] = {"run id": self.run_id, "experiment": self.experiment}
        rows.update({f"metric {k}": v for k, v in self.metrics.items()})
        for g in self.gates:
            rows[f"gate {g.name}"] = f"{'pass' if g.passed else 'FAIL'} ({_num(g.value)} vs {g.threshold:g})"
        rows["dataset"] = f"{self.dataset.path} ({self.dataset.rows} rows, sha256 {self.dataset.sha256[:12]})"
        rows["artifact sha256"] = self.artifact_sha256
        if self.tuning is not None:
            t = self.tuning
            rows["tuning"] = (f"{t.trials_run} trials ({t.complete} complete, {t.pruned} pruned, {t.failed} failed), "
                              f"study {t.study} has {t.study_trials}; best {t.metric} {t.best_value:.4g}")
            rows["best params"] = t.best_params
        rows["registered"] = (f"{self.registered.name} v{self.registered.version} @{self.registered.alias}"
                              if self.registered else None)
        return rows


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


# --------------------------------------------------------------------------- planning


def effective_spec(loaded: LoadedConfig, options: TrainOptions) -> TrainSpec:
    """The project's ``train:`` spec with ``--param`` values applied, and ``task`` inferred from the
    target column when it is not set (see :func:`infer_spec_task`)."""
    spec = loaded.config.train
    if options.params:
        spec = spec.model_copy(update={"params": {**spec.params, **options.params}})
    return infer_spec_task(spec, loaded.root)[0]


def infer_spec_task(spec: TrainSpec, root: Path) -> tuple[TrainSpec, str | None]:
    """``spec`` with ``task`` set from the data when it is unset, and why (None when it was set).

    The spec is validated again with the inferred task, so a model or a metric that does not fit
    it is reported as for a task written in mlctl.yaml.
    """
    if spec.task is not None or spec.target is None or spec.data is None:
        return spec, None
    from pydantic import ValidationError

    from mlctl.lifecycle.data import infer_task

    task, why = infer_task(resolve_data_path(spec, root), spec.target)
    try:
        inferred = TrainSpec.model_validate({**spec.model_dump(), "task": task})
    except ValidationError as exc:
        problem = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"train.task is not set and was inferred as {task} ({why}), but: {problem}",
                          hint="set train.task in mlctl.yaml") from None
    return inferred, f"train.task not set: inferred {task} ({why}); set train.task to choose"


def _estimator_path(spec: TrainSpec) -> str:
    if is_custom(spec.model):
        return spec.model
    if is_torch(spec.model):
        return f"{spec.model} (mlctl.lifecycle.torch_model:TorchEstimator)"
    return BUILTINS[spec.model][spec.require("task")]


def plan_training(loaded: LoadedConfig, options: TrainOptions | None = None) -> TrainPlan:
    """Check everything that can be checked without training, and describe the run."""
    options = options or TrainOptions()
    loaded.require_project()
    spec = loaded.config.train
    if options.params:
        spec = spec.model_copy(update={"params": {**spec.params, **options.params}})
    spec.require("target")
    spec.require("data")
    spec, inferred = infer_spec_task(spec, loaded.root)
    if inferred:
        message(inferred)
    task = spec.require("task")
    data_path = resolve_data_path(spec, loaded.root)
    features = check_columns(read_columns(data_path), spec, data_path)
    from mlctl.lifecycle.estimators import build_estimator

    build_estimator(spec.model, task, spec.params, seed=spec.seed, root=loaded.root)  # checks params
    register = options.register or spec.registered_model
    if register is not None:
        try:
            check_model_name_syntax(register)
        except ValueError as exc:
            raise UsageError(f"--register: {exc}") from None
    if CHAMPION_GATE in spec.gates and register is None:
        raise UsageError(f"the {CHAMPION_GATE} gate needs a registered model name to find the champion",
                         hint="pass --register NAME or set train.registered_model")
    if options.tune is not None and options.tune < 1:
        raise UsageError("--tune: the number of trials must be at least 1")
    if options.timeout is not None and options.timeout <= 0:
        raise UsageError("--timeout: must be a positive number of seconds")
    experiment = options.experiment or spec.experiment or loaded.config.tracking.experiment
    evaluation = f"{spec.cv}-fold cross-validation" if spec.cv else f"hold-out split, test_size {spec.split.test_size}"
    tuning = None
    steps = [f"load {data_path} and fingerprint it", f"open an MLflow run in experiment '{experiment}'"]
    if options.tune:
        from mlctl.lifecycle.tune import search_space

        space = search_space(spec, options.params)
        tuning = {"trials": options.tune, "timeout": options.timeout,
                  "storage": redact(storage_url(loaded.root, options.tune_storage)) if options.tune_storage else
                  str(loaded.state_dir / OPTUNA_DB), "folds": spec.cv or DEFAULT_TUNE_FOLDS,
                  "metric": spec.resolved_primary_metric(), "search_space": {k: v.model_dump(exclude_none=True)
                                                                             for k, v in space.items()}}
        steps.append(f"tune: {options.tune} Optuna trials (TPE, median pruning), each a nested run")
    saving = "state_dict + module reference" if is_torch(spec.model) else "skops, trusted types"
    steps += [f"fit {_estimator_path(spec)} and evaluate ({evaluation})",
              f"save the model ({saving}) and record its SHA-256"]
    if spec.gates:
        steps.append("check gates: " + ", ".join(f"{k}={v:g}" for k, v in spec.gates.items()))
    steps.append(f"register '{register}' and set alias '{CHALLENGER}' if the gates pass" if register
                 else "register nothing (no --register NAME)")
    steps.append(f"record the run in {loaded.state_dir / STATE_FILE}")
    return TrainPlan(spec=spec.model_dump(mode="json"), data=str(data_path), features=features,
                     estimator=_estimator_path(spec), evaluation=evaluation,
                     tracking_uri=redact(resolve_uri(loaded.config.tracking.uri, loaded.root)),
                     experiment=experiment, register=register, tuning=tuning, steps=steps)


# --------------------------------------------------------------------------- helpers


def _signature(X: Any, y: Any, task: str, target: str) -> dict[str, Any]:  # noqa: N803
    from mlctl.lifecycle.estimators import column_kinds

    inputs = [{"name": n, "type": t} for n, t in column_kinds(X).items()]
    out_type = "double" if task == "regression" else column_kinds(y.to_frame(name=target))[target]
    return {"inputs": inputs, "outputs": [{"name": target, "type": out_type}]}


def _param_text(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 6000 else text[:5997] + "..."


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if callable(value) and hasattr(value, "__qualname__"):  # a torch model's function
        return f"{getattr(value, '__module__', '?')}:{value.__qualname__}"
    return str(value)


def _finite(metrics: Mapping[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if v is not None and not math.isnan(v)}


def _mlflow_batch(client: Any, run_id: str, *, params: Mapping[str, Any] | None = None,
                  metrics: Mapping[str, float] | None = None, tags: Mapping[str, Any] | None = None,
                  step: int = 0) -> None:
    import time

    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    ps = [Param(k, _param_text(v)) for k, v in (params or {}).items()]
    ms = [Metric(k, float(v), now, step) for k, v in _finite(metrics or {}).items()]
    ts = [RunTag(k, _param_text(v)) for k, v in (tags or {}).items()]
    for i in range(0, max(len(ps), len(ms), len(ts), 1), 100):
        client.log_batch(run_id, metrics=ms[i:i + 100], params=ps[i:i + 100], tags=ts[i:i + 100])


# --------------------------------------------------------------------------- training


def train(loaded: LoadedConfig, options: TrainOptions | None = None, *, verbose: bool = False) -> TrainResult:
    """Train, track, gate and (optionally) register the project's model. See the module docstring.

    Anything the libraries print to stdout while training goes to stderr: stdout is the caller's.
    """
    with contextlib.redirect_stdout(sys.stderr):
        return _train(loaded, options or TrainOptions(), verbose=verbose)


def _train(loaded: LoadedConfig, options: TrainOptions, *, verbose: bool) -> TrainResult:
    plan = plan_training(loaded, options)
    spec = effective_spec(loaded, options)
    task: str = spec.require("task")
    target: str = spec.require("target")

    from mlctl.lifecycle.tracking import connect, environment, git_commit, mlflow_errors

    # Every embedded store the run writes must be writable: say so now, naming the file, not
    # half-way through a run.
    check_writable(loaded.state_dir / STATE_FILE, what="state file")
    if options.tune:
        study_db = sqlite_file(options.tune_storage) if options.tune_storage else loaded.state_dir / OPTUNA_DB
        if study_db is not None:
            check_writable(study_db, what="Optuna study store")
    tr = connect(loaded, verbose=verbose)  # fails fast (exit 4) when a server does not answer

    from mlctl.lifecycle.data import fingerprint, load_table, prepare
    from mlctl.lifecycle.estimators import build_estimator, final_estimator, with_preprocessing

    data_path = Path(plan.data)
    df = load_table(data_path)
    dataset = fingerprint(data_path, df, shown_path=str(spec.data))
    data = prepare(df, spec, data_path)
    metric_names = spec.resolved_metrics()
    primary = spec.resolved_primary_metric()

    def make_model(params: Mapping[str, Any], X: Any = data.X) -> Any:  # noqa: N803
        est = build_estimator(spec.model, task, params, seed=spec.seed, root=loaded.root)
        return with_preprocessing(est, X)

    X_train, X_test, y_train, y_test = _split(spec, data)  # noqa: N806

    with mlflow_errors(tr.uri):
        experiment_id = tr.experiment_id(plan.experiment)
        assert experiment_id is not None, "created when missing"
        env = environment()
        commit = git_commit(loaded.root)
        tags = {
            "mlflow.runName": f"train-{spec.model}" + ("-tuned" if options.tune else ""),
            "mlflow.source.name": "mlctl train", "mlflow.source.type": "LOCAL", "mlflow.user": _user(),
            "mlctl.kind": "train", "mlctl.project": loaded.project_name, "mlctl.model": spec.model,
            "mlctl.task": task, "mlctl.target": target, "mlctl.primary_metric": primary,
            "mlctl.git_commit": commit, "mlctl.evaluation": plan.evaluation,
            **{f"mlctl.dataset.{k}": v for k, v in asdict(dataset).items() if k != "schema"},
            **{f"mlctl.env.{k}": v for k, v in env.items()},
        }
        if commit != "none":
            tags["mlflow.source.git.commit"] = commit.removesuffix("+dirty")
        run = tr.client.create_run(experiment_id, tags={k: _param_text(v) for k, v in tags.items()})
    run_id = run.info.run_id
    store = StateStore(loaded.state_dir / STATE_FILE)
    recorded = False
    status = "failed"
    metrics: dict[str, float] = {}
    results: list[gates_mod.GateResult] = []
    registered: RegisteredVersion | None = None
    tuning: TuningSummary | None = None
    passed = False
    try:
        store.insert("runs", {"id": run_id, "kind": "train", "status": "running", "started_at": utcnow(),
                              "name": plan.register or f"{plan.experiment}/{spec.model}", "params": spec.params})
        recorded = True
        with mlflow_errors(tr.uri):
            tr.client.log_dict(run_id, {**asdict(dataset), "features": data.features, "target": target},
                               "dataset.json")
            tr.client.log_dict(run_id, env, "environment.json")
            params = dict(spec.params)
            if options.tune:
                tuning = _tune(loaded, options, spec, tr, experiment_id, run_id, X_train, y_train, data.classes,
                               make_model, dataset.sha256, plan.experiment)
                params = {**spec.params, **tuning.best_params, **options.params}
            with progress("training", total=4) as bar:
                metrics, model = _fit_and_evaluate(spec, make_model, params, data, X_train, X_test, y_train,
                                                   y_test, metric_names)
                bar.advance()
                est_params = {k: _plain(v) for k, v in final_estimator(model).get_params(deep=False).items()}
                _mlflow_batch(tr.client, run_id, metrics=metrics,
                              params={**est_params, "model": spec.model, "seed": spec.seed})
                saved = _save_and_log(tr, run_id, model, _signature(X_train, y_train, task, target), X_train)
                bar.advance()
                champion = None
                if CHAMPION_GATE in spec.gates and plan.register:
                    from mlctl.lifecycle.registry import champion_metrics

                    champion = champion_metrics(tr, plan.register)
                results = gates_mod.evaluate(metrics, spec.gates, primary_metric=primary, champion=champion)
                passed = all(g.passed for g in results)
                tr.client.set_tag(run_id, "mlctl.gates", "passed" if passed else "failed")
                bar.advance()
                if passed and plan.register:
                    from mlctl.lifecycle.registry import register_version

                    registered = register_version(tr, plan.register, run_id,
                                                  f"{run.info.artifact_uri}/{MODEL_ARTIFACT_DIR}", {
                                                      TAG_SHA256: saved.sha256, TAG_FLAVOR: saved.flavor,
                                                      TAG_PATH: saved.model_file.name, "mlctl.task": task,
                                                      "mlctl.model": spec.model, "mlctl.primary_metric": primary,
                                                      "mlctl.dataset_sha256": dataset.sha256})
                    log(f"registered {registered.name} version {registered.version} as @{registered.alias}")
                bar.advance()
            tr.client.set_terminated(run_id, "FINISHED")
        status = "ok" if passed else "gate_failed"
    except BaseException:
        try:
            with mlflow_errors(tr.uri):
                tr.client.set_terminated(run_id, "FAILED")
        except Exception as exc:  # the original error matters more
            log(f"could not mark run {run_id} as failed: {exc}")
        raise
    finally:
        try:
            if recorded:
                store.update("runs", {"id": run_id}, {"status": status, "finished_at": utcnow(),
                                                      "metrics": _finite(metrics) if status != "failed" else {}})
        finally:
            store.close()
    result = TrainResult(run_id=run_id, experiment=plan.experiment, metrics=_finite(metrics),
                         params={k: _plain(v) for k, v in params.items()} | {"model": spec.model},
                         dataset=dataset, gates=results, registered=registered, artifact_sha256=saved.sha256,
                         tuning=tuning)
    if not passed:
        raise CheckFailed(f"gate failed: {gates_mod.summary(results)}; nothing was registered",
                          hint=f"the run {run_id} is in MLflow for inspection; improve the model or relax "
                               "train.gates",
                          details={"run_id": run_id, "gates": [asdict(g) for g in results],
                                   "metrics": result.metrics})
    return result


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _split(spec: TrainSpec, data: Any) -> tuple[Any, Any, Any, Any]:
    """Training and evaluation rows: a hold-out split, or all rows (cv: the test side is None)."""
    if spec.cv:
        return data.X, None, data.y, None
    from sklearn.model_selection import train_test_split

    stratify = None
    if data.task == "classification" and spec.split.stratify:
        counts = data.y.value_counts()
        n_test = math.ceil(len(data.y) * spec.split.test_size)
        if int(counts.min()) >= 2 and n_test >= len(counts):
            stratify = data.y
    X_train, X_test, y_train, y_test = train_test_split(  # noqa: N806
        data.X, data.y, test_size=spec.split.test_size, random_state=spec.seed, stratify=stratify)
    if len(X_train) < 2 or len(X_test) < 1:
        raise UsageError(f"train.data: {len(data.y)} rows are too few to split (test_size {spec.split.test_size})")
    if data.task == "classification" and y_train.nunique() < 2:
        raise UsageError("train.split: the training rows hold a single class; use more data or cv")
    return X_train, X_test, y_train, y_test


def _fit_and_evaluate(spec: TrainSpec, make_model: Any, params: Mapping[str, Any], data: Any, X_train: Any,  # noqa: N803
                      X_test: Any, y_train: Any, y_test: Any, metric_names: list[str]) -> tuple[dict[str, float], Any]:
    from mlctl.lifecycle.metrics import score
    from mlctl.lifecycle.tune import cross_validate, mean_scores

    task = spec.require("task")
    try:
        if spec.cv:
            folds = cross_validate(lambda: make_model(params), data.X, data.y, task=task, metrics=metric_names,
                                   folds=spec.cv, seed=spec.seed, classes=data.classes)
            model = make_model(params).fit(data.X, data.y)
            return mean_scores(folds), model
        model = make_model(params).fit(X_train, y_train)
        return score(task, metric_names, model, X_test, y_test, data.classes), model
    except (ValueError, TypeError) as exc:
        from mlctl.core.errors import ConfigError

        if type(exc).__name__ == "InvalidParameterError":
            raise ConfigError(f"train.params: {exc}") from None
        raise


def _save_and_log(tr: Any, run_id: str, model: Any, signature: dict[str, Any], X_train: Any) -> Any:  # noqa: N803
    from mlctl.lifecycle.serialize import save_mlflow_model

    with tempfile.TemporaryDirectory(prefix="mlctl-model-") as tmp:
        folder = Path(tmp) / MODEL_ARTIFACT_DIR
        saved = save_mlflow_model(model, folder, signature=signature, input_example=X_train.head(5))
        tr.client.log_artifacts(run_id, str(folder), MODEL_ARTIFACT_DIR)
    tr.client.set_tag(run_id, TAG_SHA256, saved.sha256)
    return saved


def _tune(loaded: LoadedConfig, options: TrainOptions, spec: TrainSpec, tr: Any, experiment_id: str, run_id: str,
          X: Any, y: Any, classes: Any, make_model: Any, dataset_sha: str, experiment: str) -> TuningSummary:  # noqa: N803
    from mlctl.lifecycle.tune import study_name, tune

    assert options.tune is not None
    storage = storage_url(loaded.root, options.tune_storage)
    name = study_name(experiment, spec.model, spec.resolved_primary_metric(), dataset_sha)
    metric = spec.resolved_primary_metric()
    tr.client.set_tag(run_id, "mlctl.optuna.study", name)

    def log_trial(number: int, params: dict[str, Any], folds: list[float], state: str) -> None:
        import time

        from mlflow.entities import Metric, Param

        child = tr.client.create_run(experiment_id, tags={
            "mlflow.parentRunId": run_id, "mlflow.runName": f"trial-{number}", "mlctl.kind": "trial",
            "mlctl.optuna.study": name, "mlctl.optuna.trial": str(number), "mlctl.optuna.state": state,
            "mlflow.user": _user()})
        now = int(time.time() * 1000)
        values = [Metric(f"{metric}_fold", v, now, step) for step, v in enumerate(folds) if not math.isnan(v)]
        finite = [m.value for m in values]
        if finite and state == "FINISHED":
            values.append(Metric(metric, sum(finite) / len(finite), now, 0))
        tr.client.log_batch(child.info.run_id, metrics=values,
                            params=[Param(k, _param_text(v)) for k, v in params.items()])
        tr.client.set_terminated(child.info.run_id, state)

    with progress("tuning", total=options.tune) as bar:
        summary = tune(spec, X, y, classes=classes, make_model=make_model, base_params=spec.params,
                       fixed=options.params, n_trials=options.tune, timeout=options.timeout, storage=storage,
                       name=name, shared=options.tune_storage is not None, log_trial=log_trial,
                       on_trial=bar.advance)
    _mlflow_batch(tr.client, run_id, metrics={f"tune_best_{metric}": summary.best_value},
                  tags={"mlctl.optuna.trials": summary.trials_run, "mlctl.optuna.best_trial": summary.best_trial})
    return summary
