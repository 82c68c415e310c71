"""``mlctl rollback``: return a deployment and its registry alias to an earlier release."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from mlctl.commands._common import DryRunOpt, OutputOpt, QuietOpt, VerboseOpt, WideOpt, YesOpt, load
from mlctl.core.output import OutputFormat, render, ui


def rollback(
    name: Annotated[str, typer.Argument(help="Deployment name.")],
    to: Annotated[int | None, typer.Option("--to", min=1, help="Revision to return to (default: previous).")]
    = None,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    output: OutputOpt = OutputFormat.table,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Roll a deployment back to the previous (or given) release, alias included.

    On a terminal it shows the changes and asks first; ``--yes`` (or a script: no terminal, or
    ``-o json``) does not ask.

    Example: mlctl rollback fraud --to 3
    """
    from mlctl.lifecycle.releases import rollback as do_rollback

    loaded = load()
    if not dry_run and not yes and sys.stdin.isatty() and ui.format is OutputFormat.table:
        plan = do_rollback(name, loaded, to=to, dry_run=True)
        render(plan)
        if not typer.confirm(f"Roll {name} back to version {plan.to_release.version}?"):
            raise typer.Abort()
    render(do_rollback(name, loaded, to=to, dry_run=dry_run))


def releases(
    name: Annotated[str, typer.Argument(help="Deployment name.")],
    output: OutputOpt = OutputFormat.table,
    wide: WideOpt = False,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """List a deployment's releases, oldest first.

    The table shows a short digest and each release's age; --wide adds the creation time, what it
    rolled back and the whole SHA-256.

    Example: mlctl releases fraud -o json
    """
    from mlctl.lifecycle.releases import list_releases

    render(list_releases(name, load()))
