"""``mlctl init``: scaffold a project from a template."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from mlctl.commands._common import DryRunOpt, OutputOpt, QuietOpt, VerboseOpt, YesOpt
from mlctl.core.errors import UsageError
from mlctl.core.output import OutputFormat, message, render, ui

DEFAULT_TEMPLATE = "service"


def init(
    template_or_dir: Annotated[str | None, typer.Argument(metavar="[TEMPLATE] DIR",
                                                          help="Template name (default: service), then the folder.",
                                                          show_default=False)] = None,
    directory: Annotated[str | None, typer.Argument(metavar="", hidden=True, show_default=False)] = None,
    name: Annotated[str | None, typer.Option("--name", "-n", help="Project name (default: folder name).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Write into a non-empty folder, overwriting template files.")] = False,  # noqa: E501
    list_: Annotated[bool, typer.Option("--list", help="List the templates and exit.")] = False,
    dry_run: DryRunOpt = False,
    yes: YesOpt = False,
    output: OutputOpt = OutputFormat.table,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Scaffold a new project from a template.

    Example: mlctl init service fraud-api --name fraud-api
    """
    from mlctl.scaffold import TemplateList, list_templates, render_template

    if list_:
        render(TemplateList(list_templates()))
        return
    if template_or_dir is None:
        raise UsageError("missing the project folder", hint="mlctl init [TEMPLATE] DIR, e.g. mlctl init service my-api")
    template, folder = (template_or_dir, directory) if directory is not None else (DEFAULT_TEMPLATE, template_or_dir)
    dest = Path(folder)
    if force and not dry_run and not yes and sys.stdin.isatty() and ui.format is OutputFormat.table:
        plan = render_template(template, dest, name=name, force=True, dry_run=True)
        if plan.overwritten and not typer.confirm(f"Overwrite {len(plan.overwritten)} file(s) in {plan.directory}?"):
            raise typer.Abort()
    render(render_template(template, dest, name=name, force=force, dry_run=dry_run, note=message))
