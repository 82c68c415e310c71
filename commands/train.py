"""``mlctl train``: train, track, gate and register the project's model."""

from __future__ import annotations

from typing import Annotated

import typer

from mlctl.commands._common import DryRunOpt, OutputOpt, QuietOpt, VerboseOpt, load
from mlctl.core.output import OutputFormat, render, ui

TrackingUriOpt = Annotated[str | None, typer.Option(
    "--tracking-uri", metavar="URI", help="MLflow tracking URI (overrides tracking.uri), e.g. http://127.0.0.1:5000.")]
ParamOpt = Annotated[list[str] | None, typer.Option(
    "--param", "-p", metavar="NAME=VALUE", help="Model parameter (repeatable; overrides train.params).")]
TuneOpt = Annotated[int | None, typer.Option("--tune", min=1, metavar="N", help="Tune with N Optuna trials first.")]
TimeoutOpt = Annotated[float | None, typer.Option(
    "--timeout", min=0.001, metavar="SECONDS", help="Stop tuning after this many seconds.")]
RegisterOpt = Annotated[str | None, typer.Option(
    "--register", metavar="NAME", help="Register a version of model NAME (alias challenger) when the gates pass.")]
ExperimentOpt = Annotated[str | None, typer.Option("--experiment", metavar="NAME", help="MLflow experiment name.")]
TuneStorageOpt = Annotated[str | None, typer.Option(
    "--tune-storage", metavar="URL",
    help="Optuna storage shared by workers, e.g. postgresql://user@host/db (default: .mlctl/optuna.db).")]


def train(
    param: ParamOpt = None,
    tune: TuneOpt = None,
    timeout: TimeoutOpt = None,
    register: RegisterOpt = None,
    experiment: ExperimentOpt = None,
    tracking_uri: TrackingUriOpt = None,
    tune_storage: TuneStorageOpt = None,
    dry_run: DryRunOpt = False,
    output: OutputOpt = OutputFormat.table,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train the project's model, track it in MLflow, gate and register it.

    Reads the train: section of mlctl.yaml (data, target, task, model, params, metrics, gates).
    Logs params, metrics, the dataset fingerprint, the git commit, the environment and the model
    (skops, SHA-256 recorded) to MLflow. Registers a version with alias challenger only when every
    gate passes; a failed gate exits 3.

    Example: mlctl train --tune 20 --register fraud -o json
    """
    from mlctl.core.config import parse_params
    from mlctl.lifecycle.train import TrainOptions, plan_training
    from mlctl.lifecycle.train import train as run_training

    loaded = load({"tracking.uri": tracking_uri})
    options = TrainOptions(params=parse_params(param or []), tune=tune, timeout=timeout, register=register,
                           experiment=experiment, tune_storage=tune_storage)
    if dry_run:
        render(plan_training(loaded, options))
        return
    render(run_training(loaded, options, verbose=ui.verbosity > 0))
