"""``mlctl serve``: run model servers in the foreground."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from mlctl.commands._common import OutputOpt, QuietOpt, VerboseOpt, load
from mlctl.core.output import OutputFormat, render, ui

app = typer.Typer(help="Serve models over HTTP in the foreground.\n\n"
                  "For managed, restarted, rolled-back servers use `mlctl deploy`.",
                  no_args_is_help=True, rich_markup_mode=None, add_completion=False)


@app.callback()
def _group() -> None:
    # A callback keeps `serve` a group while it has one subcommand (later issues add more).
    pass


@app.command("model")
def model(
    ref: Annotated[str, typer.Argument(metavar="NAME@ALIAS", help="Registered model: NAME@ALIAS or NAME:VERSION.")],
    port: Annotated[int | None, typer.Option("--port", "-p", min=0, max=65535,
                                             help="Port to listen on (default: deploy.port; 0: any free port).",
                                             show_default=False)] = None,
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    max_batch: Annotated[int, typer.Option("--max-batch", min=1, help="Most rows in one model call.")] = 64,
    max_wait_ms: Annotated[float, typer.Option("--max-wait-ms", min=0.0,
                                               help="How long a partial batch may wait while another runs.")] = 2.0,
    queue_size: Annotated[int, typer.Option("--queue-size", min=1,
                                            help="Most rows waiting for the model; beyond it: 429.")] = 1024,
    workers: Annotated[int, typer.Option("--workers", min=1,
                                         help="Model calls running at once (threads).")] = 1,
    no_fast_path: Annotated[bool, typer.Option("--no-fast-path",
                                               help="Always call the estimator's own predict (no verified "
                                                    "tree fast path).")] = False,
    output: OutputOpt = OutputFormat.table,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Serve a registered model over HTTP until Ctrl-C or SIGTERM.

    Endpoints: POST /v1/predict, GET /health, /ready, /metadata, /metrics. Once the server
    accepts connections it prints the model, version and endpoint (-o json: one document with
    model, version, alias, sha256, endpoint, pid).

    Example: mlctl serve model fraud@champion --port 8000
    """
    from mlctl.serving.ready import ServerReady
    from mlctl.serving.startup import starting

    loaded = load({"deploy.port": port} if port else None)
    chosen = port if port is not None else int(loaded.config.deploy.port)

    def announce(info: Any) -> None:
        render(ServerReady(info))

    with starting():  # the server's libraries load without garbage collections (until it serves)
        from mlctl.serving import serve_model

        serve_model(ref, loaded, host=host, port=chosen, on_ready=announce,
                    log_level="info" if ui.verbosity > 0 else "warning", fast_path=not no_fast_path,
                    max_batch=max_batch, max_wait_ms=max_wait_ms, queue_size=queue_size, workers=workers)
