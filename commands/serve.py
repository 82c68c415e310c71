"""``mlctl serve``: run model servers in the foreground."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mlctl.commands._common import DryRunOpt, OutputOpt, QuietOpt, VerboseOpt, load
from mlctl.core.output import OutputFormat, render, ui

app = typer.Typer(help="Serve one model over HTTP, or many behind a gateway with A/B tests.\n\n"
                  "For managed, restarted, rolled-back servers use `mlctl deploy`.",
                  no_args_is_help=True, rich_markup_mode=None, add_completion=False)


NameArg = Annotated[str, typer.Argument(metavar="NAME", help="Experiment name.")]
PortOpt = Annotated[int | None, typer.Option("--port", "-p", min=0, max=65535,
                                             help="Port to listen on (default: deploy.port; 0: any free port).",
                                             show_default=False)]
HostOpt = Annotated[str, typer.Option("--host", help="Address to bind.")]
MaxBatchOpt = Annotated[int, typer.Option("--max-batch", min=1, help="Most rows in one model call.")]
MaxWaitOpt = Annotated[float, typer.Option("--max-wait-ms", min=0.0,
                                           help="How long a partial batch may wait while another runs.")]
QueueOpt = Annotated[int, typer.Option("--queue-size", min=1,
                                       help="Most rows waiting for a model (per version); beyond it: 429.")]
WorkersOpt = Annotated[int, typer.Option("--workers", min=1,
                                         help="Model calls running at once (threads, per version).")]
NoFastPathOpt = Annotated[bool, typer.Option("--no-fast-path", help="Always call the estimator's own predict "
                                                                    "(no verified tree fast path).")]


@app.command("start")
def start(
    models: Annotated[str | None, typer.Option("--models", metavar="A,B,...",
                                               help="Registered models to serve, comma-separated.")] = None,
    all_models: Annotated[bool, typer.Option("--all", help="Serve every registered model.")] = False,
    replicas: Annotated[int, typer.Option("--replicas", min=1, max=64,
                                          help="Gateway processes on one socket, supervised (restarted if they "
                                               "crash).")] = 1,
    port: PortOpt = None,
    host: HostOpt = "127.0.0.1",
    max_batch: MaxBatchOpt = 64,
    max_wait_ms: MaxWaitOpt = 2.0,
    queue_size: QueueOpt = 1024,
    workers: WorkersOpt = 1,
    no_fast_path: NoFastPathOpt = False,
    output: OutputOpt = OutputFormat.table,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Serve many registered models behind one endpoint, with their A/B experiments, until Ctrl-C.

    Endpoints: GET /v1/models, POST /v1/models/NAME/predict (routed by the model's running
    experiment), POST /v1/models/NAME/versions/V/predict (pinned), POST /v1/feedback, GET /health,
    /ready, /metrics. Once ready it prints the endpoint and the models (-o json: one document).

    Example: mlctl serve start --models churn,fraud --port 8080
    """
    from mlctl.serving.gateway_start import GatewayReady

    names = [m.strip() for m in models.split(",") if m.strip()] if models else None
    loaded = load({"deploy.port": port} if port else None)
    chosen = port if port is not None else int(loaded.config.deploy.port)

    def announce(info: Any) -> None:
        render(GatewayReady(info))

    from mlctl.serving.gateway_start import serve_gateway, serve_replicas

    settings: dict[str, Any] = {"log_level": "info" if ui.verbosity > 0 else "warning", "fast_path": not no_fast_path,
                                "max_batch": max_batch, "max_wait_ms": max_wait_ms, "queue_size": queue_size,
                                "workers": workers}
    if replicas > 1:
        serve_replicas(loaded, replicas=replicas, models=names, all_models=all_models, host=host, port=chosen,
                       on_ready=announce, **settings)
    else:
        serve_gateway(loaded, models=names, all_models=all_models, host=host, port=chosen, on_ready=announce,
                      **settings)


@app.command("status")
def status(
    gateway: Annotated[str | None, typer.Option("--gateway", metavar="URL",
                                                help="The gateway to ask (default: http://127.0.0.1:DEPLOY_PORT).")]
    = None,
    output: OutputOpt = OutputFormat.table,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Show what a running gateway serves: models, versions, aliases, experiments, memory per version.

    Example: mlctl serve status --gateway http://127.0.0.1:8080
    """
    from mlctl.serving.status import gateway_status

    url = gateway or f"http://127.0.0.1:{int(load().config.deploy.port)}"
    render(gateway_status(url))


@app.command("rules")
def rules(
    out: Annotated[Path | None, typer.Option("--out", metavar="FILE", help="Write to FILE instead of stdout.")] = None,
    error_rate: Annotated[float, typer.Option("--error-rate", help="Alert above this share of 5xx answers "
                                                                   "per model and variant.")] = 0.05,
    p99_ms: Annotated[float, typer.Option("--p99-ms", help="Alert above this p99 latency per model and "
                                                           "variant.")] = 250.0,
    for_: Annotated[str, typer.Option("--for", help="How long a condition must hold before firing.")] = "5m",
    job: Annotated[str, typer.Option("--job", help="Prometheus job name of the gateway's scrape.")] = "mlctl-gateway",
    target: Annotated[str, typer.Option("--target", metavar="HOST:PORT",
                                        help="The gateway, in the scrape config printed.")] = "127.0.0.1:8000",
    output: OutputOpt = OutputFormat.table,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Write Prometheus alerting rules for the gateway: 5xx ratio, p99 latency, store down, alias
    move refused, shadow disagreement, gateway down. Check them with `promtool check rules FILE`;
    also prints the scrape config for the gateway's /metrics.

    Example: mlctl serve rules --out rules/mlctl-gateway.yml
    """
    from mlctl.serving.observability import gateway_rules

    render(gateway_rules(error_rate=error_rate, p99_ms=p99_ms, for_=for_, job=job, target=target, out=out))


@app.command("dashboard")
def dashboard(
    out: Annotated[Path | None, typer.Option("--out", metavar="FILE", help="Write to FILE instead of stdout.")] = None,
    title: Annotated[str | None, typer.Option("--title", help="Dashboard title.")] = None,
    job: Annotated[str, typer.Option("--job", help="Prometheus job name of the gateway's scrape.")] = "mlctl-gateway",
    output: OutputOpt = OutputFormat.table,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Write a Grafana dashboard for the gateway: traffic, errors and latency per model and variant,
    traffic shares, shadow agreement, feedback, store health, alias moves, batches and queues.

    The JSON imports as is (Dashboards > Import) and asks for the Prometheus data source.

    Example: mlctl serve dashboard --out grafana/gateway.json
    """
    from mlctl.serving.observability import gateway_dashboard

    render(gateway_dashboard(title=title, job=job, out=out))


@app.command("manifests")
def manifests(
    models: Annotated[str, typer.Option("--models", metavar="A,B,...", help="Registered models the gateway serves.")],
    image: Annotated[str, typer.Option("--image", help="Container image with mlctl installed "
                                                       "(pip install 'mlctl[serve,ml,redis]').")],
    name: Annotated[str, typer.Option("--name", help="Name of the Deployment and Service.")] = "gateway",
    namespace: Annotated[str, typer.Option("--namespace", "-n", help="Kubernetes namespace.")] = "default",
    replicas: Annotated[int, typer.Option("--replicas", min=1, help="Gateway pods (the HPA's start).")] = 2,
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Container port.")] = 8000,
    state: Annotated[str | None, typer.Option("--state", metavar="URL",
                                              help="Redis URL for experiment state (default: serve.state).")] = None,
    tracking_uri: Annotated[str | None, typer.Option("--tracking-uri", metavar="URL",
                                                     help="MLflow tracking server (default: tracking.uri).")] = None,
    state_secret: Annotated[str | None, typer.Option("--state-secret", metavar="SECRET:KEY",
                                                     help="Read the Redis URL from a Secret instead.")] = None,
    tracking_secret: Annotated[str | None, typer.Option("--tracking-secret", metavar="SECRET:KEY",
                                                        help="Read the tracking URI from a Secret instead.")] = None,
    cpu: Annotated[str | None, typer.Option("--cpu", help="CPU request and limit, e.g. 500m.")] = None,
    memory: Annotated[str | None, typer.Option("--memory", help="Memory request and limit, e.g. 1Gi.")] = None,
    hpa_max: Annotated[int | None, typer.Option("--hpa-max", min=1, help="Add an HPA scaling up to N pods.")] = None,
    hpa_min: Annotated[int | None, typer.Option("--hpa-min", min=1, help="The HPA's lower bound.")] = None,
    hpa_cpu: Annotated[int | None, typer.Option("--hpa-cpu", min=1, max=100,
                                                help="The HPA's CPU target in percent of the request.")] = None,
    out: Annotated[Path | None, typer.Option("--out", metavar="FILE", help="Write to FILE instead of stdout.")] = None,
    output: OutputOpt = OutputFormat.table,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Write Kubernetes manifests for the gateway: a Deployment running `mlctl serve start`, a
    Service and, with --hpa-max, a HorizontalPodAutoscaler. Replicas share experiment state in
    Redis; models come from the tracking server. Apply with `kubectl apply -f FILE`.

    Example: mlctl serve manifests --models churn --image mlctl:1 --state redis://redis:6379/0 --hpa-max 8 --cpu 1
    """
    from mlctl.serving.manifests import gateway_manifests

    names = [m.strip() for m in models.split(",") if m.strip()]
    render(gateway_manifests(load(), names, image=image, name=name, namespace=namespace, replicas=replicas,
                             port=port, state=state, tracking_uri=tracking_uri, state_secret=state_secret,
                             tracking_secret=tracking_secret, cpu=cpu, memory=memory, hpa_max=hpa_max,
                             hpa_min=hpa_min, hpa_cpu=hpa_cpu, out=out))


@app.command("report")
def report(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Experiment name.")],
    alpha: Annotated[float, typer.Option("--alpha", help="False-positive rate of the decision (split between "
                                                         "challengers).")] = 0.05,
    gateway: Annotated[str | None, typer.Option("--gateway", metavar="URL",
                                                help="Read per-variant latency from this gateway's /metrics.")] = None,
    promote: Annotated[bool, typer.Option("--promote", help="When significant, point the control's alias at the "
                                                            "winner and stop the experiment; exit 3 when not yet.")]
    = False,
    plot: Annotated[Path | None, typer.Option("--plot", metavar="FILE",
                                              help="Also draw the variants' rates (.png, .svg, .pdf).")] = None,
    dry_run: DryRunOpt = False,
    output: OutputOpt = OutputFormat.table,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Report an experiment: traffic, outcomes, latency, the tests against the control and the decision.

    The decision follows an always-valid sequential test (mSPRT): reading the report after every
    batch of requests does not inflate false positives. The z-test, the probability to beat the
    control and the minimum detectable effect are shown beside it.

    Example: mlctl serve report churn-ab --promote
    """
    from mlctl.serving.experiments.report import build_report, plot_report, promote_winner

    loaded = load()
    result = build_report(loaded, name, alpha=alpha, gateway=gateway)
    if plot is not None:
        plot_report(result, plot)
    if promote:
        from mlctl.core.errors import CheckFailed

        try:
            result = promote_winner(loaded, result, dry_run=dry_run)
        except CheckFailed:
            render(result)  # the report still shows why nothing was promoted (exit 3)
            raise
    render(result)


experiment_app = typer.Typer(
    help="A/B experiments between versions of a registered model: traffic split, sticky users, shadow "
         "traffic, bandits.\n\nState lives where serve.state says (the project's .mlctl/experiments.db, or "
         "redis://... shared by gateway replicas).",
    no_args_is_help=True, rich_markup_mode=None, add_completion=False)
app.add_typer(experiment_app, name="experiment")


@app.command("model")
def model(
    ref: Annotated[str, typer.Argument(metavar="NAME@ALIAS", help="Registered model: NAME@ALIAS or NAME:VERSION.")],
    port: PortOpt = None,
    host: HostOpt = "127.0.0.1",
    max_batch: MaxBatchOpt = 64,
    max_wait_ms: MaxWaitOpt = 2.0,
    queue_size: QueueOpt = 1024,
    workers: WorkersOpt = 1,
    no_fast_path: NoFastPathOpt = False,
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


@experiment_app.command("create")
def experiment_create(
    name: NameArg,
    model: Annotated[str, typer.Option("--model", "-m", help="Registered model the experiment splits.")],
    variants: Annotated[str, typer.Option("--variants", metavar="ALIAS:PCT,...",
                                          help="Aliases or versions and their traffic share in percent, summing "
                                               "to 100; the first is the control. E.g. champion:90,challenger:10")],
    strategy: Annotated[str | None, typer.Option("--strategy", metavar="NAME",
                                                 help="weighted, sticky, thompson or epsilon-greedy (default: "
                                                      "sticky with --sticky-key, else weighted).")] = None,
    sticky_key: Annotated[str | None, typer.Option("--sticky-key", metavar="FIELD",
                                                   help="Request field that keeps a user on one variant.")] = None,
    shadow: Annotated[str | None, typer.Option("--shadow", metavar="ALIAS:PCT",
                                               help="Also send this share of requests to another version; its "
                                                    "answers are recorded, never returned.")] = None,
    epsilon: Annotated[float | None, typer.Option("--epsilon", help="Exploration rate of epsilon-greedy.")] = None,
    reward: Annotated[str, typer.Option("--reward", help="Outcomes: binary (conversions, labels) or "
                                                        "continuous.")] = "binary",
    feedback_window: Annotated[str | None, typer.Option("--feedback-window", metavar="DURATION",
                                                        help="How long a request accepts feedback (default: "
                                                             "serve.feedback_window).")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="Replace a live experiment of that name; its "
                                                            "counters restart.")] = False,
    dry_run: DryRunOpt = False,
    output: OutputOpt = OutputFormat.table,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Create an experiment (the same definition again changes nothing).

    Example: mlctl serve experiment create churn-ab --model churn --variants champion:90,challenger:10
    """
    from mlctl.serving.experiments.manage import create_experiment

    params = {"epsilon": epsilon} if epsilon is not None else None
    render(create_experiment(load(), name, model=model, variants=variants, strategy=strategy,
                             sticky_key=sticky_key, shadow=shadow, params=params, reward=reward,
                             feedback_window=feedback_window, replace=replace, dry_run=dry_run))


@experiment_app.command("list")
def experiment_list(output: OutputOpt = OutputFormat.table, verbose: VerboseOpt = False,
                    quiet: QuietOpt = False) -> None:
    """List experiments and their status.

    Example: mlctl serve experiment list -o json
    """
    from mlctl.serving.experiments.manage import list_experiments

    render(list_experiments(load()))


@experiment_app.command("show")
def experiment_show(name: NameArg, output: OutputOpt = OutputFormat.table, verbose: VerboseOpt = False,
                    quiet: QuietOpt = False) -> None:
    """Show an experiment: its definition, counters per variant and each variant's traffic share now.

    Example: mlctl serve experiment show churn-ab
    """
    from mlctl.serving.experiments.manage import show_experiment

    render(show_experiment(load(), name))


def _set_status(name: str, action: str, dry_run: bool) -> None:
    from mlctl.serving.experiments.manage import set_status

    render(set_status(load(), name, action, dry_run=dry_run))


@experiment_app.command("pause")
def experiment_pause(name: NameArg, dry_run: DryRunOpt = False, output: OutputOpt = OutputFormat.table,
                     verbose: VerboseOpt = False, quiet: QuietOpt = False) -> None:
    """Pause an experiment: all traffic goes to the control; counters are kept.

    Example: mlctl serve experiment pause churn-ab
    """
    _set_status(name, "pause", dry_run)


@experiment_app.command("resume")
def experiment_resume(name: NameArg, dry_run: DryRunOpt = False, output: OutputOpt = OutputFormat.table,
                      verbose: VerboseOpt = False, quiet: QuietOpt = False) -> None:
    """Resume a paused experiment.

    Example: mlctl serve experiment resume churn-ab
    """
    _set_status(name, "resume", dry_run)


@experiment_app.command("stop")
def experiment_stop(name: NameArg, dry_run: DryRunOpt = False, output: OutputOpt = OutputFormat.table,
                    verbose: VerboseOpt = False, quiet: QuietOpt = False) -> None:
    """Stop an experiment for good: all traffic to the control; its counters stay for the report.

    Example: mlctl serve experiment stop churn-ab
    """
    _set_status(name, "stop", dry_run)
