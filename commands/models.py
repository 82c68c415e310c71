"""``mlctl models``: the model registry from the shell."""

from __future__ import annotations

from typing import Annotated

import typer

from mlctl.commands._common import DryRunOpt, OutputOpt, QuietOpt, VerboseOpt, load
from mlctl.commands.train import TrackingUriOpt
from mlctl.core.output import OutputFormat, render

app = typer.Typer(help="List, inspect, compare and promote registered models.\n\n"
                  "Models live in the MLflow registry at tracking.uri (or --tracking-uri).",
                  no_args_is_help=True, rich_markup_mode=None, add_completion=False)

NameArg = Annotated[str, typer.Argument(help="Registered model name.")]


@app.command("list")
def list_(
    tracking_uri: TrackingUriOpt = None,
    output: OutputOpt = OutputFormat.table,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """List registered models with their latest version and aliases.

    Example: mlctl models list -o json
    """
    from mlctl.lifecycle.registry import list_models

    render(list_models(load({"tracking.uri": tracking_uri})))


@app.command("show")
def show(
    name: NameArg,
    tracking_uri: TrackingUriOpt = None,
    output: OutputOpt = OutputFormat.table,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Show a model's versions with aliases, artifact hashes and metrics.

    Example: mlctl models show fraud
    """
    from mlctl.lifecycle.registry import show_model

    render(show_model(load({"tracking.uri": tracking_uri}), name))


@app.command("compare")
def compare(
    name: NameArg,
    v1: Annotated[str, typer.Argument(help="First version.")],
    v2: Annotated[str, typer.Argument(help="Second version.")],
    tracking_uri: TrackingUriOpt = None,
    output: OutputOpt = OutputFormat.table,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Put two versions' metrics and params side by side; * marks the better metric value.

    Example: mlctl models compare fraud 3 4
    """
    from mlctl.lifecycle.registry import compare as compare_versions

    render(compare_versions(load({"tracking.uri": tracking_uri}), name, v1, v2))


@app.command("promote")
def promote(
    name: NameArg,
    version: Annotated[str, typer.Argument(help="Version to point the alias at.")],
    alias: Annotated[str, typer.Option("--alias", metavar="ALIAS", help="Alias to move.")] = "champion",
    tracking_uri: TrackingUriOpt = None,
    dry_run: DryRunOpt = False,
    output: OutputOpt = OutputFormat.table,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Point an alias (default champion) at a version; repeating it changes nothing.

    Example: mlctl models promote fraud 4 --alias champion
    """
    from mlctl.lifecycle.registry import promote as promote_version

    render(promote_version(load({"tracking.uri": tracking_uri}), name, version, alias, dry_run=dry_run))
