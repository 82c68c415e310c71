"""``mlctl config``: show, get and set configuration values."""

from __future__ import annotations

from typing import Annotated

import typer

from mlctl.commands._common import DryRunOpt, OutputOpt, QuietOpt, VerboseOpt, cli_state, load
from mlctl.core.output import OutputFormat, render

app = typer.Typer(help="Show and edit configuration.\n\n"
                  "Precedence: flags > MLCTL_* env > mlctl.yaml > user file > defaults.",
                  no_args_is_help=True, rich_markup_mode=None, add_completion=False)


@app.command("show")
def show(
    origin: Annotated[bool, typer.Option("--origin", help="Show where each value came from.")] = False,
    output: OutputOpt = OutputFormat.table,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Print every effective value (and with --origin, its source).

    Example: mlctl config show --origin
    """
    from mlctl.core.config_view import show_config

    render(show_config(load(), origin=origin))


@app.command("get")
def get(
    key: Annotated[str, typer.Argument(help="Dotted key, e.g. tracking.uri.")],
    output: OutputOpt = OutputFormat.table,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Print one effective value.

    Example: mlctl config get deploy.port
    """
    from mlctl.core.config_view import get_config

    render(get_config(load(), key))


@app.command("set")
def set_(
    key: Annotated[str, typer.Argument(help="Dotted key, e.g. deploy.port.")],
    value: Annotated[str, typer.Argument(help="New value (parsed as a YAML scalar).")],
    dry_run: DryRunOpt = False,
    output: OutputOpt = OutputFormat.table,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Set a value in the project's mlctl.yaml, keeping its comments.

    The file is checked after the change, so a file with an invalid value can be repaired;
    a symbolic link is written through to its target. A read-only file is refused (exit 1).

    Example: mlctl config set deploy.port 9000
    """
    from mlctl.core.config import project_file_to_edit
    from mlctl.core.config_view import set_config

    render(set_config(project_file_to_edit(cli_state.config_path), key, value, dry_run=dry_run))
