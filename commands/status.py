"""``mlctl status``: the project at a glance."""

from __future__ import annotations

from typing import Annotated

import typer

from mlctl.commands._common import OutputOpt, QuietOpt, VerboseOpt, WideOpt, load
from mlctl.core.output import OutputFormat, render, ui


def status(
    live: Annotated[bool, typer.Option("--live", help="Also ask the Docker engine and clusters for their "
                                       "deployments' state (slower; needs them reachable).")] = False,  # fmt: skip
    output: OutputOpt = OutputFormat.table,
    wide: WideOpt = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Show the project: config file, tracking store, state counts.

    Lists deployments (model:version@alias, replicas ready/desired, health, endpoint, age; --wide
    adds the target and the whole URL) and the latest runs. Local deployments are always checked live and Docker ones by
    their endpoint; --live asks the Docker engine and Kubernetes clusters as well.

    Example: mlctl status -o json
    """
    from mlctl.status import project_status

    result = project_status(load(), live=live)
    render(result, table_data=result.table(), title=f"mlctl project {result.project}")
    if ui.format is OutputFormat.table:
        if result.deployments:
            rows = result.deployment_rows()
            render(rows, title="deployments", columns=[c for c in rows[0] if c not in result.DEPLOYMENT_WIDE],
                   wide_columns=result.DEPLOYMENT_WIDE)
        if result.latest_runs:
            render(result.run_rows(), title="latest runs", wide_columns=["started"],
                   columns=["run", "kind", "name", "status", "metrics"])
