"""``mlctl status``: the project at a glance."""

from __future__ import annotations

from mlctl.commands._common import OutputOpt, QuietOpt, VerboseOpt, load
from mlctl.core.output import OutputFormat, render, ui


def status(output: OutputOpt = OutputFormat.table, verbose: VerboseOpt = False, quiet: QuietOpt = False) -> None:
    """Show the project: config file, tracking store, state counts.

    Lists deployments (target, model@alias, version, replicas ready/desired, endpoint, health,
    age) and the latest runs.

    Example: mlctl status -o json
    """
    from mlctl.status import project_status

    result = project_status(load())
    render(result, table_data=result.table(), title=f"mlctl project {result.project}")
    if ui.format is OutputFormat.table:
        if result.deployments:
            render(result.deployment_rows(), title="deployments")
        if result.latest_runs:
            render(result.run_rows(), title="latest runs")
