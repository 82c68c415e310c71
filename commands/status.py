"""``mlctl status``: the project at a glance."""

from __future__ import annotations

from mlctl.commands._common import OutputOpt, QuietOpt, VerboseOpt, load
from mlctl.core.output import OutputFormat, render


def status(output: OutputOpt = OutputFormat.table, verbose: VerboseOpt = False, quiet: QuietOpt = False) -> None:
    """Show the project: config file, tracking store, state counts.

    Example: mlctl status -o json
    """
    from mlctl.status import project_status

    result = project_status(load())
    render(result, table_data=result.table(), title=f"mlctl project {result.project}")
