"""``mlctl status``: the project at a glance."""

from __future__ import annotations

from typing import Annotated

import typer

from mlctl.commands._common import OutputOpt, QuietOpt, VerboseOpt, WideOpt, load
from mlctl.core.output import OutputFormat, render


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

    render(project_status(load(), live=live))
