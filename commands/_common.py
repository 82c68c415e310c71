"""Options shared by every command, defined once, and the small glue commands use."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mlctl.core.output import OutputFormat, ui


class CliState:
    """Values set by the root callback (``--config``) for the commands that follow."""

    config_path: Path | None = None


cli_state = CliState()


def _set_output(value: OutputFormat | None) -> OutputFormat | None:
    if value is not None:
        ui.format = value
    return value


def _set_verbose(value: bool) -> bool:
    if value:
        ui.verbosity = max(ui.verbosity, 1)
    return value


def _set_quiet(value: bool) -> bool:
    if value:
        ui.verbosity = -1
    return value


OutputOpt = Annotated[
    OutputFormat,
    typer.Option("--output", "-o", help="Output format: table, json, yaml, jsonl or csv.", callback=_set_output,
                 case_sensitive=False, show_default=True),
]
VerboseOpt = Annotated[
    bool, typer.Option("--verbose", "-v", help="Show detail lines and tracebacks.", callback=_set_verbose)
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only print results.", callback=_set_quiet)]
def _set_wide(value: bool) -> bool:
    if value:
        ui.wide = True
    return value


WideOpt = Annotated[
    bool, typer.Option("--wide", help="Tables: show every column and cut no cell short.", callback=_set_wide)
]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Print the plan and change nothing.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Answer yes to confirmation prompts.")]
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Project file to use instead of the nearest mlctl.yaml.",
                 dir_okay=False, envvar="MLCTL_CONFIG"),
]


def load(overrides: dict[str, Any] | None = None) -> Any:
    """The effective configuration for this invocation (flags given as dotted-key overrides)."""
    from mlctl.core.config import load_config

    return load_config(overrides, project_file=cli_state.config_path)
