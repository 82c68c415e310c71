"""``mlctl deploy``: run a registered model on a target; ``deploy stop|scale|logs``."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from mlctl.commands._common import DryRunOpt, OutputOpt, QuietOpt, VerboseOpt, load
from mlctl.core.output import OutputFormat, render


class _DefaultToUp(TyperGroup):
    """``mlctl deploy NAME ...`` means ``mlctl deploy up NAME ...``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["up", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(cls=_DefaultToUp, no_args_is_help=True, rich_markup_mode=None, add_completion=False,
                  help="Deploy a registered model: local processes, Docker or Kubernetes.\n\n"
                       "`mlctl deploy NAME@ALIAS` is short for `mlctl deploy up NAME@ALIAS`.")


@app.command("up")
def up(
    ref: Annotated[str, typer.Argument(help="Model: NAME, NAME@ALIAS or NAME:VERSION.")],
    target: Annotated[str | None, typer.Option("--target", "-t",
                                               help="local, docker or k8s://CONTEXT/NAMESPACE (default: config).")]
    = None,
    replicas: Annotated[int | None, typer.Option("--replicas", "-r", min=1, max=64, help="Server processes.")] = None,
    port: Annotated[int | None, typer.Option("--port", "-p", min=0, max=65535,
                                             help="Port (default: deploy.port; 0 picks a free one).")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Deployment name (default: the model name).")] = None,
    timeout: Annotated[float, typer.Option("--timeout", min=1, help="Seconds to wait until ready.")] = 60.0,
    dry_run: DryRunOpt = False,
    output: OutputOpt = OutputFormat.table,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Deploy a model version and wait until it serves; records a release.

    Example: mlctl deploy fraud@champion --target local --replicas 2 --port 8080
    """
    from mlctl.lifecycle.releases import deploy

    render(deploy(ref, load(), target=target, replicas=replicas, port=port, name=name, dry_run=dry_run,
                  timeout_s=timeout))


@app.command("stop")
def stop(
    name: Annotated[str, typer.Argument(help="Deployment name.")],
    dry_run: DryRunOpt = False,
    output: OutputOpt = OutputFormat.table,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Stop a deployment's servers (idempotent).

    Example: mlctl deploy stop fraud
    """
    from mlctl.lifecycle.releases import stop_deployment

    render(stop_deployment(name, load(), dry_run=dry_run))


@app.command("scale")
def scale(
    name: Annotated[str, typer.Argument(help="Deployment name.")],
    replicas: Annotated[int, typer.Option("--replicas", "-r", help="Servers to run (0 to 64; docker: 0 or 1).")],
    dry_run: DryRunOpt = False,
    output: OutputOpt = OutputFormat.table,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Run N servers of what a deployment serves now, without dropping requests.

    Example: mlctl deploy scale fraud --replicas 3
    """
    from mlctl.lifecycle.releases import scale as scale_deployment

    render(scale_deployment(name, load(), replicas, dry_run=dry_run))


@app.command("logs")
def logs(
    name: Annotated[str, typer.Argument(help="Deployment name.")],
    tail: Annotated[int, typer.Option("--tail", "-n", min=1, help="Lines per log file.")] = 100,
    output: OutputOpt = OutputFormat.table,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Print the last lines of a deployment's server logs.

    Example: mlctl deploy logs fraud --tail 20
    """
    from mlctl.lifecycle.releases import deployment_logs

    render(deployment_logs(name, load(), tail))
